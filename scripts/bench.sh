#!/usr/bin/env bash
# The benchmarks, end to end: builds the release preset, runs the micro-benchmarks
# (cacheaside vs raw libmemcached in the same run) RUNS times, the async benchmark
# (AsyncCacheAside vs raw libmemcached, the blocking cache, a plain pipelined client and
# Asio's own cost, median of RUNS) and the example service's load test (beside the
# lesson's FastAPI service), writes the figures as CSV into docs/bench/, the docs' tables
# from them (bench/figures.py docs) and the charts into docs/img/ (gnuplot), then prints
# one summary table.
#   scripts/bench.sh                      everything (RUNS=3, DURATION=5s: ~10 minutes)
#   RUNS=1 DURATION=2s scripts/bench.sh   a quick look
#   SKIP_SERVICE=1 scripts/bench.sh       micro-benchmarks only (the service charts stay)
#   scripts/bench.sh --benchmark_filter=Hit   extra arguments go to cacheaside_bench
#                                             (charts need every charted benchmark)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/lib/steps.sh

runs=${RUNS:-3}
duration=${DURATION:-5s}
[[ $runs =~ ^[1-9][0-9]?$ ]] || { echo "bench.sh: RUNS must be 1..99" >&2; exit 2; }
service=1
[[ -n ${SKIP_SERVICE:-} ]] && service=0
data=docs/bench img=docs/img
work=build/release/bench/runs
steps_total $((5 + runs + service))

fail() {
  step_done FAILED "$1"
  steps_table
  echo "FAILED: $_step_title: $1" >&2
  exit 1
}

step "Debian packages"
scripts/deps.sh || fail "scripts/deps.sh"
step_done ok

step "build (release preset)"
cmake --preset release >/dev/null || fail "cmake --preset release"
cmake --build --preset release -j 2 --target cacheaside_bench cacheaside_async_bench user_service \
  http_ceiling || fail "cmake --build"
step_done ok "cacheaside_bench, cacheaside_async_bench, user_service, http_ceiling"

mkdir -p "$work" "$data" "$img"
rm -f "$work"/micro-*.csv
for ((r = 1; r <= runs; r++)); do
  step "micro-benchmarks, run $r of $runs"
  build/release/bench/cacheaside_bench --csv="$work/micro-$r.csv" \
    --summary="$work/micro-$r.md" "$@" || fail "cacheaside_bench"
  step_done ok "$(($(wc -l <"$work/micro-$r.csv") - 1)) benchmarks"
done

step "async benchmark (median of $runs runs, memcached on the other core)"
build/release/bench/cacheaside_async_bench --runs="$runs" --placement=split >"$work/async.md" ||
  fail "cacheaside_async_bench"
step_done ok

if ((service)); then
  step "service load test (wrk; RUNS=$runs, DURATION=$duration per cell)"
  RUNS=$runs DURATION=$duration CSV="$work/service.csv" bench/load.sh >"$work/service.md" ||
    fail "bench/load.sh"
  cat "$work/service.md"
  step_done ok "median of $runs runs per cell"
fi

step "figures as CSV (docs/bench/), and the docs' tables from them"
python3 bench/figures.py micro "$data" "$work"/micro-*.csv >"$work/summary-micro.md" ||
  fail "figures.py micro"
python3 bench/figures.py async "$data" "$work/async.md" || fail "figures.py async"
if ((service)); then
  cp "$work/service.csv" "$data/service.csv"
  python3 bench/figures.py service "$data" "$work/service.csv" >"$work/summary-service.md" ||
    fail "figures.py service"
fi
python3 bench/figures.py docs "$data" || fail "figures.py docs"
step_done ok "$(ls "$data" | tr '\n' ' ')"

step "charts (docs/img/, gnuplot)"
[[ -f $data/service_rps.csv ]] || fail "no service figures yet: run once without SKIP_SERVICE"
stamp="$(date +%Y-%m-%d), $(nproc) cores, memcached $(memcached -V | awk '{print $2}'), median of $runs runs"
gnuplot -e "data='$data'; img='$img'; stamp='$stamp'" bench/charts.gp || fail "gnuplot"
step_done ok "$(cd "$img" && ls *.svg | tr '\n' ' ')"

steps_table
echo
echo "Micro-benchmarks ($stamp):"
cat "$work/summary-micro.md"
echo
echo "AsyncCacheAside:"
cat "$work/async.md"
if ((service)); then
  echo
  echo "Example service:"
  cat "$work/summary-service.md"
fi
