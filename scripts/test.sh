#!/usr/bin/env bash
# The one test command: formatting, lints, then every test in the workspace.
# Installs nothing it does not need; safe to run from a clean clone.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== third-party clients for sfsim's compatibility tests (pinned, from PyPI, into target/pyenv)"
if [ ! -x target/pyenv/bin/python ]; then
  python3 -m venv target/pyenv
fi
target/pyenv/bin/pip install --quiet --disable-pip-version-check -r scripts/python-requirements.txt
export TRIPLINE_PYTHON="$PWD/target/pyenv/bin/python"

echo "== PostgreSQL server binaries for the PostgreSQL store tests (Debian's package; tests start private servers)"
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
fi
# The tests start the server as this unprivileged user when they run as root.
if [ "$(id -u)" = 0 ] && ! getent passwd postgres >/dev/null; then
  useradd --system --home-dir /var/lib/postgresql --shell /usr/sbin/nologin postgres
fi

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

echo "== the console in a real browser (Debian's Chromium; playwright-core pinned in e2e/)"
if ! command -v chromium >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
npm ci --prefix e2e --no-audit --no-fund --silent
cargo build --locked -p tripline
(cd e2e && node --test --test-concurrency=1 tests/)
