#!/usr/bin/env bash
# Benchmarks: programs that print figures (not timed tests). Record them, with the
# machine, in BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
cargo build --release --locked -p sfsim --example bench -p tripline --example ingest_bench --example search_bench
echo "== sfsim: preload 1,000,000 retained events, drain with one Subscribe client"
./target/release/examples/bench "${SFSIM_BENCH_EVENTS:-1000000}"
echo "== connector: catch up 1,000,000 retained events from EARLIEST into SQLite"
./target/release/examples/ingest_bench "${INGEST_BENCH_EVENTS:-1000000}"
echo "== search: 10,000,000 stored file events; typical searches; 1,000,000 exported as CSV"
db="$(mktemp -d)/search-bench.db"
./target/release/examples/search_bench load "$db" "${SEARCH_BENCH_EVENTS:-10000000}"
./target/release/examples/search_bench query "$db"
./target/release/examples/search_bench export "$db" 1000000
rm -rf "$(dirname "$db")"
