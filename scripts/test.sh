#!/usr/bin/env bash
# The test command: installs missing Debian packages, then configures, builds and runs
# every test under the dev, asan and tsan presets, then the libFuzzer targets for a
# bounded time each (fuzz preset, clang), stopping at the first failure.
# (tsan does not build the example service, so leaves out its e2e and soak tests: Debian's
# cpp-httplib is a prebuilt, uninstrumented library, and TSan reports races inside it it
# cannot see through; asan leaves out the soak tests, whose memory slopes its allocator
# distorts; both leave the packaging tests to dev: they check installs, not memory.)
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
# compiles on its own.
n=1
for p in "${presets[@]}"; do n=$((n + 3)); [[ $p == dev ]] && n=$((n + 1)); done
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
  step "[$p] test"
  log="build/$p/ctest.log"
  rc=0
  ctest --preset "$p" 2>&1 | tee "$log" || rc=$?
  line=$(grep -E '^[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1 || true)
  if [[ -n "$line" ]]; then
    read -r p_failed p_total < <(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1 \2/' <<<"$line")
    failed=$((failed + p_failed))
    total=$((total + p_total))
    passed=$((passed + p_total - p_failed))
  fi
  if ((rc != 0)); then
    fail "${line:-ctest did not run} (log: $log)"
  fi
  step_done ok "$line"
done

report
