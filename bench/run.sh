#!/bin/sh
# Builds the benchmarks in Release (in their own build dir) and runs them all.
# Figures go to stdout; each program prints its ratio to a baseline measured
# in the same run. Nothing here asserts a timing.
#
#   bench/run.sh                 build-bench/, 2 M readings, 3 rounds, 20 s windows
#   BUILD=dir N=500000 ROUNDS=1 WINDOW=10 bench/run.sh
#   MODBUS_N=10,100 bench/run.sh   devices polled by bench_modbus (default 10,100,500)
#   PEER=0 bench/run.sh            skip the comparison with collectd (it installs
#                                  collectd-core with apt-get when missing)
#   BEFORE=dir bench/run.sh        the collectd comparison also runs the mittari built
#                                  in dir (e.g. the branch point), for before/after
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$src/build-bench}
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DMITTARI_TESTS=OFF -DMITTARI_BENCH=ON >/dev/null
cmake --build "$build" -j"$(nproc)" --target bench_throughput bench_idle bench_modbus bench_decoder bench_ble bench_serial \
  bench_isolate bench_rules >/dev/null
"$build/bench/bench_throughput" -n "${N:-2000000}" -r "${ROUNDS:-3}"
echo
"$build/bench/bench_idle" -w "${WINDOW:-20}"
echo
"$build/bench/bench_modbus" -w "${WINDOW:-20}" -n "${MODBUS_N:-10,100,500}"
echo
"$build/bench/bench_decoder"
echo
"$build/bench/bench_serial" -w "${WINDOW:-20}"
echo
"$build/bench/bench_ble" -w "${WINDOW:-20}"
echo
"$build/bench/bench_isolate" -n "${ISOLATE_N:-300000}" -r "${ROUNDS:-3}"
"$build/bench/bench_rules" -r "${ROUNDS:-3}"
if [ "${PEER:-1}" != 0 ]; then
  echo
  BUILD="$build" "$src/bench/modbus_vs_collectd.sh"
fi
