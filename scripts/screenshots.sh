#!/usr/bin/env bash
# Regenerates the console screenshots in docs/screenshots from the browser tests
# (1440x900, against `tripline demo`), so they never go stale.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
npm ci --prefix e2e --no-audit --no-fund --silent
cargo build --locked -p tripline
rm -rf docs/screenshots
(cd e2e && SCREENSHOTS="$PWD/../docs/screenshots" node --test --test-concurrency=1 tests/)
ls docs/screenshots
