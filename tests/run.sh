#!/bin/bash
# Installs what is missing, builds, and runs every test: unit tests (cmocka)
# and integration tests (the real agent binary against real files).
#   tests/run.sh              RelWithDebInfo build in build/, all tests
#   tests/run.sh --sanitize   ASan+UBSan build in build-asan/: unit tests, and the
#                             integration tests but the long crash loop
set -euo pipefail
cd "$(dirname "$0")/.."
packaging/dev/deps.sh

jobs=$(nproc)
if [ "${1:-}" = "--sanitize" ]; then
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DMITTARI_SANITIZE=ON -DMITTARI_BENCH=OFF >/dev/null
  cmake --build build-asan -j"$jobs"
  cd build-asan
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  ctest -L unit --output-on-failure -j"$jobs"
  ctest -L integration -E crash_durability --output-on-failure
  exit 0
fi

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"
cd build
ctest -L unit --output-on-failure -j"$jobs"
ctest -L integration --output-on-failure
