#!/bin/bash
# A fleet: AGENTS gateways (default 20) with distinct ids, each with its own
# data dir and a sim input at a low rate, forward at once into one
# PostgreSQL table and one mosquitto broker; the broker and the database are
# restarted mid-run. Afterwards every agent's rows are complete in the table,
# none collide, none is there twice; every agent's readings reached the
# broker's subscriber. SECONDS_RUN (default 24) sets the length.
# bench/fleet.sh is the same as a benchmark for more agents.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/outputs_lib.sh"

N=${AGENTS:-20}
RUN=${SECONDS_RUN:-24}
pg_start
mqtt_start "$T/mq"
sed -i 's/^persistence false/persistence true\npersistence_location '"${T//\//\\/}"'\/mq\//' "$T/mq/mosquitto.conf"
mqtt_down() { kill -TERM "$MQ_PID" 2>/dev/null; wait "$MQ_PID" 2>/dev/null; }
mqtt_down; mqtt_up
mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -c -i "fleet-collector" -t 'fleet/#' -v \
  >>"$T/sub.txt" 2>>"$T/sub.err" &
SERVER_PIDS+=("$!")
sleep 0.3

PIDS=()
stop_fleet() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; }
trap 'stop_fleet; stop_servers; cleanup' EXIT
for i in $(seq 1 "$N"); do
  mkdir -p "$T/c$i"
  cat >"$T/c$i/10.yaml" <<YAML
agent:
  site: site-$i
  id: gw-$i
  data_dir: $T/d$i
  stats_interval: 0
  shutdown_timeout: 20s
inputs:
  sim: {plugin: sim, rate: 40, opening_hours: "00:00-24:00", poll_interval: 1s, seed: $i}
outputs:
  warehouse:
    type: postgresql
    conninfo: host=127.0.0.1 port=$PG_PORT user=test dbname=postgres
    batch_wait: 1s
    retry_min: 200ms
    retry_max: 2s
    connect_timeout: 2s
  broker:
    type: mqtt
    host: 127.0.0.1
    port: $MQTT_PORT
    topic: "fleet/{agent}"
    batch_wait: 1s
    retry_min: 200ms
    retry_max: 2s
YAML
  "$MITTARI" run -c "$T/c$i" --plugin-dir "$BUILD_DIR/plugins" >>"$T/agent$i.out" 2>>"$T/agent$i.log" &
  PIDS+=("$!")
done

sleep $((RUN / 3))
mqtt_down; sleep 1; mqtt_up
sleep $((RUN / 3))
pg_down; sleep 1; pg_up
sleep $((RUN / 3))
for p in "${PIDS[@]}"; do kill -TERM "$p"; done
status=0
for p in "${PIDS[@]}"; do wait "$p" || status=$?; done
PIDS=()
[ "$status" = 0 ] || fail "an agent exited with $status: $(tail -3 "$T"/agent*.log | tail -20)"
sleep 1

psql -X -A -t -q "$PG_CONN" -c "select agent_id, generation, seq from mittari_readings" >"$T/pg.txt" || fail psql
mqtt_records "$T/sub.txt" "$T/mq.jsonl"
if ! python3 - "$T" "$N" <<'PY'; then
import json, sqlite3, sys, collections
T, N = sys.argv[1], int(sys.argv[2])
table = collections.defaultdict(list)
for l in open(f"{T}/pg.txt"):
    a, g, s = l.strip().split("|")
    table[a].append((int(g), int(s)))
mq = collections.defaultdict(set)
for l in open(f"{T}/mq.jsonl"):
    r = json.loads(l)
    agent = r["key"].split("/")[0]
    mq[agent].update((r["gen"], s) for s in r["seqs"])
total = 0
for i in range(1, N + 1):
    con = sqlite3.connect(f"{T}/d{i}/mittari.db")
    gen = con.execute("select value from meta where key='generation'").fetchone()[0]
    rows = {(gen, r[0]) for r in con.execute("select seq from readings")}
    got = table[f"gw-{i}"]
    if len(got) != len(set(got)):
        sys.exit(f"gw-{i}: {len(got) - len(set(got))} rows twice")
    if set(got) != rows:
        missing = sorted(s for g, s in rows - set(got))
        span = f" (seq {missing[0]}..{missing[-1]})" if missing else ""
        open(f"{T}/bad", "w").write(str(i))
        sys.exit(f"gw-{i}: table {len(set(got))} rows, log {len(rows)}; missing {len(missing)}{span}, "
                 f"extra {len(set(got) - rows)}")
    if not rows <= mq[f"gw-{i}"]:
        sys.exit(f"gw-{i}: {len(rows - mq[f'gw-{i}'])} readings never reached the broker's subscriber")
    if len(rows) < 100:
        sys.exit(f"gw-{i}: only {len(rows)} readings: nothing much was tested")
    total += len(rows)
extra = set(table) - {f"gw-{i}" for i in range(1, N + 1)}
if extra:
    sys.exit(f"rows of unknown agents: {extra}")
print(f"{N} agents, {total} readings: each exactly once in PostgreSQL, each at the broker")
PY
  # what the agent that fell short said about its outputs
  [ -f "$T/bad" ] && grep -v " debug " "$T/agent$(cat "$T/bad").log" | tail -40 >&2
  fail "the fleet's readings are not complete and exact"
fi
grep -l "connection lost\|cannot connect\|insert into .* failed" "$T"/agent*.log >/dev/null ||
  fail "the restarts were not noticed by any agent"
ok "fleet of $N agents through a broker and a database restart: complete, no collision, none twice"
