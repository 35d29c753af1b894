#!/bin/bash
# One agent forwarding to an HTTP receiver, PostgreSQL and mosquitto at once:
#  1. outage: all three are down while 100,000 readings arrive; when they
#     come back everything is delivered, PostgreSQL holds each reading once;
#  2. kill -9 at 30 random moments while forwarding: PostgreSQL holds every
#     committed reading exactly once; the HTTP receiver and the MQTT
#     subscriber got every reading at least once, and every duplicate came
#     under a key they had already seen;
#  3. flapping: all three up 2 s, down 2 s for a minute: nothing lost, the
#     agent's memory stays bounded.
# FLAP_SECONDS (default 60) and KILLS (default 30) make it longer or shorter.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/outputs_lib.sh"

R=$T/recv
http_receiver "$R"
pg_start
mqtt_start "$T/mq"
sed -i 's/^persistence false/persistence true\npersistence_location '"${T//\//\\/}"'\/mq\//' "$T/mq/mosquitto.conf"
# graceful broker stops keep the subscriber's session (persistence)
mqtt_down() { kill -TERM "$MQ_PID" 2>/dev/null; wait "$MQ_PID" 2>/dev/null; }
mqtt_down; mqtt_up
mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -c -i "faults-collector" -t 'mittari/#' -v \
  >>"$T/sub.txt" 2>>"$T/sub.err" &
SERVER_PIDS+=("$!")
sleep 0.3

mkdir -p "$T/conf"
write_conf() { # write_conf SIM_YAML
  cat >"$T/conf/10.yaml" <<YAML
agent:
  site: it-faults
  id: gw-faults
  data_dir: $T/data
  stats_interval: 0
  shutdown_timeout: 20s
inputs:
  sim:
    plugin: sim
    opening_hours: "00:00-24:00"
    poll_interval: 100ms
$1
outputs:
  web:
    type: http
    url: http://127.0.0.1:$HTTP_PORT/in
    batch_size: 1000
    retry_min: 100ms
    retry_max: 1s
    timeout: 3s
  db:
    type: postgresql
    conninfo: host=127.0.0.1 port=$PG_PORT user=test dbname=postgres
    batch_size: 1000
    retry_min: 100ms
    retry_max: 1s
    timeout: 5s
    connect_timeout: 2s
  broker:
    type: mqtt
    host: 127.0.0.1
    port: $MQTT_PORT
    batch_size: 1000
    readings_per_message: 250
    retry_min: 100ms
    retry_max: 1s
    timeout: 3s
YAML
}

check_all() { # check_all WHAT
  local db=$T/data/mittari.db
  check_at_least_once "$db" "$R/records.jsonl" || fail "$1: http"
  mqtt_records "$T/sub.txt" "$T/mq-records.jsonl"
  check_at_least_once "$db" "$T/mq-records.jsonl" || fail "$1: mqtt"
  psql -X -A -t -q "$PG_CONN" -c "select seq, generation from mittari_readings order by seq" >"$T/pg.txt" || fail "psql"
  python3 - "$db" "$T/pg.txt" <<'PY' || fail "$1: postgresql"
import sqlite3, sys
con = sqlite3.connect(sys.argv[1])
gen = con.execute("select value from meta where key='generation'").fetchone()[0]
rows = {r[0] for r in con.execute("select seq from readings")}
got = [tuple(map(int, l.split("|"))) for l in open(sys.argv[2]) if l.strip()]
seqs = [s for s, g in got]
assert all(g == gen for s, g in got), "another generation in the table"
dup = len(seqs) - len(set(seqs))
assert dup == 0, f"{dup} readings twice in the table"
missing = rows - set(seqs)
assert not missing, f"{len(missing)} of {len(rows)} missing, first {sorted(missing)[:5]}"
assert set(seqs) <= rows, "rows the log does not hold"
print(f"{len(rows)} readings in PostgreSQL, each exactly once")
PY
}
wait_drained() { # wait_drained SECONDS: every output's cursor at the log's last seq
  wait_for "$1" bash -c "\"$MITTARI\" outputs -c '$T/conf' | grep -c 'backlog:      none' | grep -q 3"
}

# 1. outage with 100,000 readings
set_mode "$R" down
pg_down
mqtt_down
write_conf "    rate: 0
    limit: 100000"
start_agent "$T/conf"
# (the gate's first cumulative reading is a baseline, not a reading: a few
# less than 100,000 are stored)
wait_for 120 bash -c "n=\$(sqlite3 '$T/data/mittari.db' 'select count(*) from readings' 2>/dev/null); [ \"\${n:-0}\" -ge 99900 ]" ||
  fail "100,000 readings were not stored: $(sqlite3 "$T/data/mittari.db" 'select count(*) from readings')"
sleep 1
n_outage=$(sqlite3 "$T/data/mittari.db" 'select count(*) from readings')
set_mode "$R" ok
pg_up
mqtt_up
wait_drained 120 || fail "not delivered after the outage: $("$MITTARI" outputs -c "$T/conf")"
stop_agent TERM
[ "$AGENT_STATUS" = 0 ] || fail "exit status $AGENT_STATUS"
check_all outage
ok "outage: $n_outage readings stored while all three were down, all delivered after; PostgreSQL exactly once"

# 2. kill -9 at random moments while forwarding
write_conf "    rate: 3000"
RANDOM=$$
for i in $(seq 1 "${KILLS:-30}"); do
  start_agent "$T/conf"
  sleep "0.$((2 + RANDOM % 8))$((RANDOM % 10))"
  kill -9 "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null; AGENT_PID=
done
write_conf "    rate: 0
    limit: 1"
start_agent "$T/conf"
wait_drained 60 || fail "not drained after the kills: $("$MITTARI" outputs -c "$T/conf")"
stop_agent TERM
[ "$(sqlite3 "$T/data/mittari.db" 'pragma integrity_check')" = ok ] || fail "log damaged"
check_all "kill -9"
ok "${KILLS:-30} kills while forwarding: PostgreSQL exactly once, HTTP and MQTT at least once with duplicates under seen keys"

# 3. flapping: up 2 s, down 2 s
write_conf "    rate: 1000"
set_mode "$R" flap:2
start_agent "$T/conf"
end=$((SECONDS + ${FLAP_SECONDS:-60}))
rss=()
up=1
while [ $SECONDS -lt $end ]; do
  sleep 2
  if [ $up = 1 ]; then pg_down; mqtt_down; up=0; else pg_up; mqtt_up; up=1; fi
  rss+=("$(awk '/VmRSS/ {print $2}' /proc/"$AGENT_PID"/status)")
done
[ $up = 1 ] || { pg_up; mqtt_up; }
set_mode "$R" ok
sleep 1
kill -TERM "$AGENT_PID"; wait "$AGENT_PID"; AGENT_PID=
write_conf "    rate: 0
    limit: 1"
start_agent "$T/conf"
wait_drained 60 || fail "not drained after flapping: $("$MITTARI" outputs -c "$T/conf")"
stop_agent TERM
check_all flapping
python3 - "${rss[@]}" <<'PY' || fail "memory grew while flapping"
import sys
kb = [int(x) for x in sys.argv[1:] if x]
half = len(kb) // 2
early, late = max(kb[:half]), max(kb[half:])
print(f"RSS kB: first half max {early}, second half max {late}, overall max {max(kb)}")
assert max(kb) < 96 * 1024, "more than 96 MB"
assert late < early + 8 * 1024, "grew by more than 8 MB in the second half"
PY
ok "flapping for ${FLAP_SECONDS:-60}s: nothing lost, memory bounded"
