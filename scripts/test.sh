#!/usr/bin/env bash
# The one test command: formatting, lints, then every test in the workspace.
# Installs nothing it does not need; safe to run from a clean clone.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== third-party clients for sfsim's compatibility tests (from PyPI)"
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
  simple-salesforce grpcio grpcio-tools avro

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== tests"
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi
