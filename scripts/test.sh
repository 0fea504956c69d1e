#!/usr/bin/env bash
# The test command: installs missing Debian packages, then configures, builds and runs
# every test under the dev, asan and tsan presets, then the libFuzzer targets for a
# bounded time each (fuzz preset, clang), stopping at the first failure.
# (the sanitizer presets check the library, its async component and their tests; neither
# builds the example service, so both leave out its e2e and soak tests, which dev runs:
# the service's Beast build and its e2e run would cost a tenth of the command's time in
# each for code the dev e2e and soak tests already cover. Both leave the packaging tests
# to dev: they check installs, not memory. The benchmarks compile in the release preset,
# bench.sh's.)
#   scripts/test.sh            all four presets
#   scripts/test.sh dev        one preset (dev, asan, tsan, fuzz or release)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

presets=("$@")
((${#presets[@]})) || presets=(dev asan tsan fuzz)
for p in "${presets[@]}"; do
  case "$p" in
    dev | asan | tsan | fuzz | release) ;;
    *) echo "test.sh: unknown preset '$p' (dev, asan, tsan, fuzz, release)" >&2; exit 2 ;;
  esac
done

. scripts/lib/steps.sh
# deps, then per preset configure, build, test; dev also checks that every public header
# compiles on its own, and runs the packaging tests apart (several at once: they compile,
# nothing in them is timed).
n=1
for p in "${presets[@]}"; do n=$((n + 3)); [[ $p == dev ]] && n=$((n + 2)); done
steps_total "$n"

passed=0 failed=0 total=0

# The step table, then the totals in ctest's own summary format.
report() {
  steps_table
  if ((total > 0)); then
    awk -v p="$passed" -v f="$failed" -v t="$total" 'BEGIN {
      pct = p * 100 / t; if (f > 0 && pct > 99) pct = 99
      printf "%d%% tests passed, %d tests failed out of %d\n", int(pct + 0.5), f, t }'
  fi
}

# Stops at the first failing step, with the summary so far.
fail() {
  step_done FAILED "$1"
  report
  echo "FAILED: $_step_title: $1"
  exit 1
}

# One ctest preset as one step (title, log file); its counts go into the totals.
run_ctest() {
  local preset=$1 log=$3 rc=0 line p_failed p_total
  step "$2"
  ctest --preset "$preset" 2>&1 | tee "$log" || rc=$?
  line=$(grep -E '^[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1 || true)
  if [[ -n "$line" ]]; then
    read -r p_failed p_total < <(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1 \2/' <<<"$line")
    failed=$((failed + p_failed))
    total=$((total + p_total))
    passed=$((passed + p_total - p_failed))
  fi
  ((rc == 0)) || fail "${line:-ctest did not run} (log: $log)"
  step_done ok "$line"
}

step "Debian packages"
scripts/deps.sh || fail "scripts/deps.sh"
step_done ok "$(bash -c '. scripts/deps.sh; echo ${#CACHEASIDE_DEB_PACKAGES[@]}') packages present"

for p in "${presets[@]}"; do
  step "[$p] configure"
  cmake --preset "$p" || fail "cmake --preset $p"
  step_done ok
  step "[$p] build"
  cmake --build --preset "$p" -j 2 || fail "cmake --build --preset $p"
  step_done ok
  if [[ $p == dev ]]; then
    step "[$p] every public header compiles on its own"
    cmake --build --preset "$p" -j 2 --target all_verify_interface_header_sets ||
      fail "all_verify_interface_header_sets"
    step_done ok
  fi
  run_ctest "$p" "[$p] test" "build/$p/ctest.log"
  # The deterministic simulation's own summary line, from ctest's full log.
  grep -h '^simulation: ' "build/$p/Testing/Temporary/LastTest.log" || true
  if [[ $p == dev ]]; then
    run_ctest packaging "[$p] packaging tests (3 at a time)" "build/dev/ctest-packaging.log"
  fi
done

report
