#!/usr/bin/env bash
# Benchmarks: programs that print figures (not timed tests). Record them, with the
# machine, in BENCHMARKS.md. INGEST_BENCH_RUNS sets how many runs of each catch-up
# pipeline (default 3); the Python peer is installed into target/bench-pyenv.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
if [[ ! -x target/bench-pyenv/bin/python ]] || ! cmp -s bench/python-requirements.txt target/bench-pyenv/requirements.txt; then
  python3 -m venv target/bench-pyenv
  target/bench-pyenv/bin/pip install --quiet --disable-pip-version-check -r bench/python-requirements.txt
  cp bench/python-requirements.txt target/bench-pyenv/requirements.txt
fi
cargo build --release --locked -p sfsim --example bench -p tripline --example ingest_bench --example live_bench --example search_bench \
  --example console_bench --example alert_bench
echo "== sfsim: preload 1,000,000 retained events, drain with one Subscribe client"
./target/release/examples/bench "${SFSIM_BENCH_EVENTS:-1000000}"
echo "== catch-up: 1,000,000 retained events from EARLIEST into SQLite, Tripline and the Python peer (bench/peer.py) alternating"
./target/release/examples/ingest_bench --events "${INGEST_BENCH_EVENTS:-1000000}" --runs "${INGEST_BENCH_RUNS:-3}" \
  --python target/bench-pyenv/bin/python
echo "== catch-up into PostgreSQL (a private durable server from the machine's PostgreSQL binaries): one connection, then two at once"
./target/release/examples/ingest_bench --events "${INGEST_BENCH_EVENTS:-1000000}" --runs "${INGEST_BENCH_RUNS:-3}" --store postgres
./target/release/examples/ingest_bench --events "${INGEST_BENCH_EVENTS:-1000000}" --runs 1 --store postgres --connections 2
echo "== live: one export among ~1,000 events/s of background, publish to searchable"
./target/release/examples/live_bench
echo "== alerts: one export among ~1,000 events/s of background, publish to the webhook receiver holding its alert"
./target/release/examples/alert_bench latency
echo "== alerts: catch-up of 1,000,000 events without rules and with 20 enabled rules, alternating"
./target/release/examples/alert_bench catchup --events "${INGEST_BENCH_EVENTS:-1000000}" --runs "${INGEST_BENCH_RUNS:-3}"
echo "== search: 10,000,000 stored file events; typical searches; 1,000,000 exported as CSV"
db="$(mktemp -d)/search-bench.db"
./target/release/examples/search_bench load "$db" "${SEARCH_BENCH_EVENTS:-10000000}"
./target/release/examples/search_bench query "$db"
./target/release/examples/search_bench export "$db" 1000000
echo "== search on PostgreSQL: the same 10,000,000 events moved by tripline migrate's copy (timed), the same searches and export"
./target/release/examples/search_bench postgres "$db"
echo "== alerts: back-tests over the same 10,000,000 events"
./target/release/examples/alert_bench backtest "$db"
echo "== console: every page's server time on the same 10,000,000 events (the dashboard's counts built first)"
./target/release/examples/console_bench pages "$db" --requests 30
rm -rf "$(dirname "$db")"
echo "== console: catch-up of 1,000,000 events alone, then while 20 signed-in people search and browse"
./target/release/examples/console_bench ingest --events 1000000 --people 20
