#!/bin/bash
# Issue 11: a fleet of N agents (default 50), each with its own data dir, a
# sim input at RATE readings/s and two outputs, postgresql and mqtt, into one
# PostgreSQL table and one mosquitto broker, for SECONDS (default 60).
# Prints rows/s arriving at the warehouse (and at the broker's subscriber),
# the agents' total CPU and RSS, and /proc/loadavg. Asserts nothing.
#
#   bench/fleet.sh 50            RATE=200 SECONDS_RUN=60 bench/fleet.sh 20
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$src/build-bench}
N=${1:-50}
RATE=${RATE:-200}
RUN=${SECONDS_RUN:-60}
WAIT=${BATCH_WAIT:-2s}
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DMITTARI_TESTS=OFF -DMITTARI_BENCH=ON >/dev/null
cmake --build "$build" -j"$(nproc)" --target mittari sim >/dev/null
MITTARI=$build/mittari BUILD_DIR=$build SOURCE_DIR=$src
. "$src/tests/integration/lib.sh"
. "$src/tests/integration/outputs_lib.sh"
set +u

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)"
pg_start
mqtt_start "$T/mq"
mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -t 'fleet/#' -F '%l' >"$T/mq.count" 2>/dev/null &
SERVER_PIDS+=("$!")
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; stop_servers; cleanup' EXIT
for i in $(seq 1 "$N"); do
  mkdir -p "$T/c$i"
  cat >"$T/c$i/10.yaml" <<YAML
agent: {site: site-$i, id: gw-$i, data_dir: $T/d$i, stats_interval: 0}
inputs:
  sim: {plugin: sim, rate: $RATE, opening_hours: "00:00-24:00", poll_interval: 1s, seed: $i}
outputs:
  warehouse:
    type: postgresql
    conninfo: host=127.0.0.1 port=$PG_PORT user=test dbname=postgres
    batch_wait: $WAIT
  broker:
    type: mqtt
    host: 127.0.0.1
    port: $MQTT_PORT
    topic: "fleet/{agent}"
    readings_per_message: 500
    batch_wait: $WAIT
YAML
  "$MITTARI" run -c "$T/c$i" --plugin-dir "$build/plugins" >/dev/null 2>>"$T/agent$i.log" &
  PIDS+=("$!")
done
sleep 5 # started, table made
rows0=$(psql_q "select count(*) from mittari_readings")
msgs0=$(wc -l <"$T/mq.count")
cpu0=$(for p in "${PIDS[@]}"; do awk '{print $14+$15}' /proc/"$p"/stat; done | paste -sd+ | bc)
t0=$(date +%s.%N)
sleep "$RUN"
t1=$(date +%s.%N)
rows1=$(psql_q "select count(*) from mittari_readings")
msgs1=$(wc -l <"$T/mq.count")
cpu1=$(for p in "${PIDS[@]}"; do awk '{print $14+$15}' /proc/"$p"/stat; done | paste -sd+ | bc)
rss=$(for p in "${PIDS[@]}"; do awk '/VmRSS/ {print $2}' /proc/"$p"/status; done | paste -sd+ | bc)
load=$(cut -d' ' -f1-3 /proc/loadavg)
dt=$(echo "$t1 - $t0" | bc)
echo "fleet: $N agents, sim $RATE readings/s each ($((N * RATE))/s offered), batch_wait $WAIT, ${RUN}s"
echo "  warehouse (PostgreSQL): $(echo "($rows1 - $rows0) / $dt" | bc) rows/s"
echo "  broker: $(echo "($msgs1 - $msgs0) / $dt" | bc) messages/s"
echo "  agents: CPU $(echo "scale=1; 100 * ($cpu1 - $cpu0) / 100 / $dt" | bc) % of one core in total, RSS $((rss / 1024)) MB in total ($((rss / N / 1024)) MB each)"
echo "  load during: $load"
for p in "${PIDS[@]}"; do kill -TERM "$p"; done
for p in "${PIDS[@]}"; do wait "$p" || true; done
PIDS=()
set +e
exit 0
