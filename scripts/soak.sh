#!/usr/bin/env bash
# The soak run: `tripline serve` against sfsim with people exporting, while faults are
# applied and cleared at random and serve is SIGKILLed now and then; at the end nothing
# may be lost or duplicated and every fault must have shown (and cleared) within 10 s.
# SOAK_SECONDS sets the length (default 1800, half an hour); SOAK_SEED replays a run.
# SERVE_LOG (a log filter, such as warn) and SERVE_LOG_FILE (a path) keep serve's logs.
# The test run (scripts/test.sh) runs the same test for 45 s.
set -euo pipefail
cd "$(dirname "$0")/.."
export SOAK_SECONDS="${SOAK_SECONDS:-1800}"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
cargo nextest run --locked -p tripline --test soak --no-capture 2>&1 \
  | grep -v "has been running for over"
