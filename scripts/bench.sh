#!/usr/bin/env bash
# Builds the release preset and runs the benchmarks; extra arguments go to the
# benchmark program (e.g. --benchmark_filter=Hit).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/deps.sh
if [[ ! -f bench/CMakeLists.txt ]]; then
  echo "bench.sh: bench/CMakeLists.txt is missing" >&2
  exit 1
fi
cmake --preset release
cmake --build --preset release -j 2 --target cacheaside_bench
bin=build/release/bench/cacheaside_bench
if [[ ! -x "$bin" ]]; then
  echo "bench.sh: $bin was not built" >&2
  exit 1
fi
exec "$bin" --benchmark_repetitions=5 --benchmark_report_aggregates_only=true "$@"
