#!/bin/bash
# Installs what is missing, builds, and runs every test: unit tests (cmocka)
# and integration tests (the real agent binary against real files).
#   tests/run.sh              RelWithDebInfo build in build/, all tests
#   tests/run.sh --release    Release build with GCC in build-release/ (what
#                             packagers build: -O3 finds other warnings), unit tests
#   tests/run.sh --sanitize   ASan+UBSan build in build-asan/: unit tests, and the
#                             integration tests that run the agent (not the kill -9
#                             loops, rate and latency bounds, packaging and docs)
#   tests/run.sh --tsan       ThreadSanitizer build in build-tsan/: unit tests (the
#                             outputs' pipeline, the writer, rules, reload, stop)
#   tests/run.sh --fuzz       clang libFuzzer build in build-fuzz/: every fuzz target
#                             for FUZZ_SECONDS (default 20; CI sets 10) from its corpus
# Ends with "run.sh: ..." saying what passed, or the step that failed.
set -euo pipefail
cd "$(dirname "$0")/.."
. packaging/dev/status.sh
status_init "run.sh${1:+ $1}"
step "install dependencies (packaging/dev/deps.sh)"
packaging/dev/deps.sh

jobs=$(nproc)
# sanitized_build DIR OPTION: a Debug build with the sanitizers OPTION turns on
sanitized_build() {
  step "configure $1"
  cmake -S . -B "$1" -DCMAKE_BUILD_TYPE=Debug -D"$2"=ON -DMITTARI_BENCH=OFF >/dev/null
  step "build $1"
  cmake --build "$1" -j"$jobs"
}

if [ "${1:-}" = "--sanitize" ]; then
  sanitized_build build-asan MITTARI_SANITIZE
  cd build-asan
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  step "unit tests (ASan+UBSan)"
  ctest -L unit --output-on-failure -j"$jobs"
  step "integration tests (ASan+UBSan)"
  # without the sanitizers only (CI time): the kill -9 loops and the fleet, the
  # tests that bound a rate or a latency (ASan's slowdown is not the agent's),
  # and those that check packaging and docs rather than run the agent
  ctest -L integration --output-on-failure -j2 -E \
    "crash_durability|rules_crash|output_faults|output_fleet|modbus_exact50|decoder_slow|test_deb|test_deps|install_docs|test_man|test_docs|test_packaging|status_page"
  status_ok "unit and integration tests passed under ASan+UBSan"
  exit 0
fi

if [ "${1:-}" = "--tsan" ]; then
  sanitized_build build-tsan MITTARI_TSAN
  cd build-tsan
  export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
  step "unit tests (ThreadSanitizer)"
  # not: test_agent forks children that start threads (TSan does not support
  # threads after a fork of a threaded process), and test_statusd bounds
  # waits in wall-clock time that TSan's slowdown breaks
  ctest -L unit --output-on-failure -j"$jobs" -E "unit\.(test_agent|test_statusd)$"
  status_ok "unit tests passed under ThreadSanitizer"
  exit 0
fi

if [ "${1:-}" = "--release" ]; then
  step "configure build-release (Release, gcc)"
  CC=gcc cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release >/dev/null
  step "build build-release"
  cmake --build build-release -j"$jobs"
  cd build-release
  step "unit tests (Release)"
  ctest -L unit --output-on-failure -j"$jobs"
  status_ok "Release build compiles; unit tests passed"
  exit 0
fi

if [ "${1:-}" = "--fuzz" ]; then
  step "configure build-fuzz (clang-14)"
  CC=clang-14 cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DMITTARI_FUZZ=ON \
    -DMITTARI_TESTS=OFF -DMITTARI_BENCH=OFF >/dev/null
  step "build the fuzz targets"
  cmake --build build-fuzz -j"$jobs" --target fuzzers
  secs=${FUZZ_SECONDS:-20}
  n=0
  for f in build-fuzz/fuzz/fuzz_*; do
    name=$(basename "$f")
    step "fuzz $name"
    new=$(mktemp -d)
    echo "fuzzing $name for ${secs}s"
    # new inputs go to a scratch dir; the checked-in corpus is only read
    "$f" -max_total_time="$secs" -timeout=10 -rss_limit_mb=1024 -print_final_stats=1 \
      -artifact_prefix=build-fuzz/ "$new" "tests/fuzz/corpus/${name#fuzz_}" >"$new.log" 2>&1 || {
      tail -40 "$new.log"; echo "FUZZ FAIL: $name (the input is in build-fuzz/)"; exit 1; }
    grep -E "stat::number_of_executed_units|Done" "$new.log" | tr '\n' ' '; echo
    rm -rf "$new" "$new.log"
    n=$((n + 1))
  done
  step "count the fuzz targets"
  [ "$n" -gt 0 ] || { echo "no fuzz targets built"; exit 1; }
  status_ok "$n fuzz targets ran ${secs}s each without a finding"
  exit 0
fi

[ -z "${1:-}" ] || { step "read the arguments"; echo "usage: tests/run.sh [--release|--sanitize|--tsan|--fuzz]" >&2; exit 2; }
step "configure build (RelWithDebInfo)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
step "build"
cmake --build build -j"$jobs"
cd build
step "unit tests"
ctest -L unit --output-on-failure -j"$jobs"
step "integration tests"
# two at a time; those that bound a latency or use something system-wide run
# alone (RUN_SERIAL in tests/CMakeLists.txt)
ctest -L integration --output-on-failure -j2
status_ok "unit and integration tests passed"
exit 0
