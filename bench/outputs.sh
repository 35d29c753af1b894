#!/bin/bash
# Issue 11: a backlog of N readings (default 1,000,000) drained by the http,
# postgresql and mqtt outputs, each beside its raw ceiling measured in the
# same run against the same server:
#   http        pre-built body of the same batch size, libcurl keep-alive
#   postgresql  prepared multi-row INSERT ... ON CONFLICT of the same batch size
#   mqtt        batched QoS 1 publishes with the same messages and window
# While an output drains, a sim input keeps emitting (INGEST readings/s):
# the figures show that ingest continues, and the agent's peak RSS.
# Each output: ROUNDS (default 3) drains, each between two raw runs; the
# median ratio is the figure. Prints figures and ratios; asserts nothing
# about time.
#
#   bench/outputs.sh                      Release build in build-bench/
#   N=200000 INGEST=500 bench/outputs.sh  smaller
#   STATUS_LISTEN=127.0.0.1:0 bench/...   with the status endpoint (default: off;
#                                         see docs/performance.md)
#   ONLY=mqtt bench/outputs.sh            one output (http, postgresql or mqtt)
#   ROUNDS=5 bench/outputs.sh             more rounds
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$src/build-bench}
N=${N:-1000000}
INGEST=${INGEST:-1000}
BATCH=${BATCH:-1000}
PER=${PER:-500}
MQTT_BATCH=${MQTT_BATCH:-5000} # 10 messages a batch, for the output and its raw ceiling alike
WINDOW=${WINDOW:-20}
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DMITTARI_TESTS=OFF -DMITTARI_BENCH=ON >/dev/null
cmake --build "$build" -j"$(nproc)" --target mittari sim bench_outputs_raw >/dev/null
MITTARI=$build/mittari
RAW=$build/bench/bench_outputs_raw

# the tests' server helpers (they need these names)
BUILD_DIR=$build SOURCE_DIR=$src
. "$src/tests/integration/lib.sh"
. "$src/tests/integration/outputs_lib.sh"
set +u

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)"
R=$T/recv
http_receiver "$R"
set_mode "$R" count
pg_start
mqtt_start "$T/mq"

# the backlog, made once with no output
mkdir -p "$T/conf"
cat >"$T/conf/10.yaml" <<YAML
agent: {site: bench, id: gw-bench, data_dir: $T/data, stats_interval: 0, sync: normal}
inputs:
  sim: {plugin: sim, rate: 0, limit: $N, opening_hours: "00:00-24:00", poll_interval: 1s}
YAML
t0=$(date +%s.%N)
start_agent "$T/conf"
until [ "$(sqlite3 "$T/data/mittari.db" 'select count(*) from readings' 2>/dev/null || echo 0)" -ge $((N - 100)) ]; do sleep 0.5; done
stop_agent TERM
backlog=$(sqlite3 "$T/data/mittari.db" 'select count(*) from readings')
last=$(sqlite3 "$T/data/mittari.db" 'select max(seq) from readings')
GEN=$(sqlite3 "$T/data/mittari.db" "select value from meta where key='generation'")
export BENCH_LOG=$T/data/mittari.db # the raw ceilings send the backlog's first batch
echo "backlog: $backlog readings ($(du -m "$T/data/mittari.db" | cut -f1) MB log, made in $(echo "$(date +%s.%N) - $t0" | bc) s)"
echo

# drain NAME YAML COUNTCMD: run the agent with one output and the ingest
# input, until COUNTCMD (readings the server has) reaches the backlog
drain() {
  local name=$1 yaml=$2 count=$3
  cat >"$T/conf/10.yaml" <<YAML
agent: {site: bench, id: gw-bench, data_dir: $T/data, stats_interval: 0, sync: normal}
status: {listen: ${STATUS_LISTEN:-off}}
inputs:
  sim: {plugin: sim, rate: $INGEST, opening_hours: "00:00-24:00", poll_interval: 100ms}
outputs:
  $name:
$yaml
    batch_size: ${DRAIN_BATCH:-$BATCH}
YAML
  local s0 t0 t1 tf= cf=0 rss=0 r base c
  base=$(eval "$count")
  s0=$(sqlite3 "$T/data/mittari.db" 'select max(seq) from readings')
  t0=$(date +%s.%N)
  start_agent "$T/conf"
  while :; do
    r=$(awk '/VmRSS/ {print $2}' /proc/"$AGENT_PID"/status 2>/dev/null || echo 0)
    [ "${r:-0}" -gt "$rss" ] && rss=$r
    c=$(($(eval "$count") - base))
    if [ -z "$tf" ] && [ "$c" -gt 0 ]; then tf=$(date +%s.%N); cf=$c; fi
    [ "$c" -ge "$backlog" ] && break
    sleep "${POLL:-0.02}"
  done
  t1=$(date +%s.%N)
  local s1 cpu
  s1=$(sqlite3 "$T/data/mittari.db" 'select max(seq) from readings')
  cpu=$(awk '{print ($14+$15)/100}' /proc/"$AGENT_PID"/stat)
  # where it went: CPU seconds of each thread that used any (by its name)
  THREADS=$(for t in /proc/"$AGENT_PID"/task/*; do
    n=$(cat "$t/comm"); [ "${t##*/}" = "$AGENT_PID" ] && n=loop
    [ "$n" = mittari ] && n=worker # libuv's pool
    awk -v n="$n" '{c = ($14 + $15) / 100; if (c > 0) printf "%s %.2f\n", n, c}' "$t/stat"
  done | sort -k2 -rn | awk '{printf "%s%s %s", (NR > 1 ? ", " : ""), $1, $2}')
  stop_agent TERM
  DRAIN_S=$(echo "$t1 - $t0" | bc)
  # the rate while draining: from the first batch at the server to the last
  # (the raw ceilings are timed from a connected client on, too)
  DRAIN_RATE=$(echo "($backlog - $cf) / ($t1 - $tf)" | bc)
  echo "  $name output: $DRAIN_RATE readings/s while draining; $backlog readings in $DRAIN_S s from the agent's start; agent CPU ${cpu}s, peak RSS $((rss / 1024)) MB; ingest during the drain: $((s1 - s0)) readings ($(echo "($s1 - $s0) / $DRAIN_S" | bc)/s, sim at $INGEST/s)"
  echo "    agent threads (CPU s): $THREADS"
}
raw_rate() { "$@" | awk '/^readings\/s/ {print $2}'; }
# the machine is shared: the ceiling is measured just before and just after
# the output's drain, and the mean is the baseline
mean() { echo "($1 + $2) / 2" | bc; }
ratio() { echo "scale=1; 100 * $1 / $2" | bc; }

want() { [ -z "${ONLY:-}" ] || [ "$ONLY" = "$1" ]; }

# The machine is shared and its speed drifts from one second to the next:
# each output is measured in ROUNDS rounds, raw and output interleaved
# (raw, drain, raw, drain, ... raw). A round's ratio is its drain against
# the mean of the raw runs just before and just after it; every round is
# printed, and the median is the figure.
ROUNDS=${ROUNDS:-3}
cp -a "$T/data" "$T/backlog" # every drain starts from the same backlog, cursor at 0
restore() { rm -rf "$T/data" && cp -a "$T/backlog" "$T/data" && sync; } # written back before the drain
median() { tr ' ' '\n' | grep . | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
# rounds NAME TARGET RAWFN DRAINFN: RAWFN sets RAW_NOW, DRAINFN sets OUT_NOW
rounds() {
  local name=$1 target=$2 rawfn=$3 drainfn=$4 r before ratios= rr
  $rawfn
  before=$RAW_NOW
  for r in $(seq "$ROUNDS"); do
    restore
    $drainfn
    $rawfn
    rr=$(ratio "$OUT_NOW" "$(mean "$before" "$RAW_NOW")")
    echo "  round $r: $OUT_NOW readings/s against raw $before and $RAW_NOW: $rr %"
    ratios="$ratios $rr"
    before=$RAW_NOW
  done
  echo "  $name ratio: $(echo "$ratios" | median) % of the raw ceiling (median of$ratios; target >= $target)"
  echo
}

if want http; then
  echo "== http (receiver: tests/integration/http_receiver.py, count mode) =="
  raw_http() {
    RAW_NOW=$(raw_rate "$RAW" http "http://127.0.0.1:$HTTP_PORT/in" $((backlog / BATCH)) "$BATCH")
    echo "  raw ceiling: $RAW_NOW readings/s (pre-built body, libcurl keep-alive)"
  }
  drain_http() {
    drain web "    type: http
    url: http://127.0.0.1:$HTTP_PORT/in" "awk '{print \$1}' '$R/count' 2>/dev/null || echo 0"
    OUT_NOW=$DRAIN_RATE
  }
  rounds http "25 %, JSON encoding included" raw_http drain_http
fi

if want postgresql; then
  echo "== postgresql (unix socket; fsync=off) =="
  # as many rows as the backlog: the server slows down as the table grows;
  # every raw run and every drain starts from an empty table
  raw_pg() {
    RAW_NOW=$(raw_rate "$RAW" pg "host=$PG_DIR port=$PG_PORT user=test dbname=postgres" $((backlog / BATCH)) "$BATCH")
    echo "  raw ceiling: $RAW_NOW readings/s (prepared multi-row INSERT ... ON CONFLICT, $BATCH rows)"
  }
  drain_pg() {
    # psql is a new connection (a server process) each time: look seldom
    POLL=0.5 drain db "    type: postgresql
    conninfo: host=$PG_DIR port=$PG_PORT user=test dbname=postgres" \
      "psql -X -A -t -q '$PG_CONN' -c \"select coalesce(max(seq),0) from mittari_readings where agent_id='gw-bench' and generation=$GEN\" 2>/dev/null || echo 0"
    psql_q "drop table mittari_readings"
    OUT_NOW=$DRAIN_RATE
  }
  rounds postgresql "80 %" raw_pg drain_pg
fi

if want mqtt; then
  echo "== mqtt (mosquitto 2.0, QoS 1, $PER readings a message, window $WINDOW, batches of $MQTT_BATCH) =="
  # The subscriber stamps every message as it arrives (%U): the raw ceiling
  # and the output are both timed there, from the first message to the
  # last, the same way (the raw client's own figure, timed from its
  # connection to its last PUBACK, is printed beside it).
  mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -t 'bench/#' -t 'mittari/gw-bench/bench' -F '%U %l' >"$T/mq.count" 2>/dev/null &
  SERVER_PIDS+=("$!")
  sleep 0.3
  # sub_rate FROM TO: readings/s at the subscriber over lines FROM+1..TO
  sub_rate() {
    awk -v from="$1" -v to="$2" -v per="$PER" 'NR > from && NR <= to {
        if (!t0) t0 = $1; t1 = $1; n++ }
      END { if (n > 1 && t1 > t0) printf "%d\n", (n - 1) * per / (t1 - t0); else print 0 }' "$T/mq.count"
  }
  lines() { wc -l <"$T/mq.count"; }
  raw_mqtt() {
    local l0 own
    l0=$(lines)
    own=$(raw_rate "$RAW" mqtt 127.0.0.1 "$MQTT_PORT" $((backlog / MQTT_BATCH)) "$MQTT_BATCH" "$PER" "$WINDOW")
    sleep 0.3 # the last messages reach the subscriber
    RAW_NOW=$(sub_rate "$l0" "$(lines)")
    echo "  raw ceiling: $RAW_NOW readings/s at the subscriber ($own by the client; pre-built messages, threaded libmosquitto)"
  }
  drain_mqtt() {
    local l0
    l0=$(lines)
    DRAIN_BATCH=$MQTT_BATCH drain broker "    type: mqtt
    host: 127.0.0.1
    port: $MQTT_PORT
    readings_per_message: $PER
    max_inflight: $WINDOW" "echo \$(( (\$(wc -l <'$T/mq.count') - $l0) * $PER ))"
    OUT_NOW=$(sub_rate "$l0" $((l0 + (backlog + PER - 1) / PER))) # the backlog's messages only
    echo "  the output at the subscriber: $OUT_NOW readings/s"
  }
  rounds mqtt "50 %" raw_mqtt drain_mqtt
fi

echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
set +e
exit 0
