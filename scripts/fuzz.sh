#!/usr/bin/env bash
# Longer fuzzing than the test run does: the proptest properties over API query bodies,
# page cursors, the scope CSV reader and Avro payloads, with many more cases each.
# CASES=N sets how many (default 20000). Failures print the smallest failing input.
set -euo pipefail
cd "$(dirname "$0")/.."
export PROPTEST_CASES="${CASES:-20000}"
echo "== fuzzing with $PROPTEST_CASES cases per property (release build)"
cargo test --release --locked -p tripline --test fuzz
cargo test --release --locked -p tripline --lib paging_by_any_field
cargo test --release --locked -p salesforce --lib pubsub::tests
