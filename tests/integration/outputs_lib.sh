# Helpers for the output tests (sourced after lib.sh): the HTTP receiver,
# PostgreSQL in a temp dir, mosquitto with a test CA, and the checks that
# compare what a receiver got with what the log holds. Every server is
# started on a free loopback port or unix socket and stopped on exit.

SERVER_PIDS=()
PG_DIRS=()
stop_servers() {
  for p in "${SERVER_PIDS[@]}"; do
    kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null
  done
  SERVER_PIDS=()
  for d in "${PG_DIRS[@]}"; do
    $PG_AS "$PGBIN/pg_ctl" -D "$d/d" -m immediate -w stop >/dev/null 2>&1
    rm -rf "$d"
  done
  PG_DIRS=()
}
trap 'stop_servers; cleanup' EXIT

# a free TCP port on 127.0.0.1
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# http_receiver DIR [ARGS...]: starts it; HTTP_PORT is its port
http_receiver() {
  local dir=$1; shift
  mkdir -p "$dir"; rm -f "$dir/port"
  /usr/bin/python3 "$SOURCE_DIR/tests/integration/http_receiver.py" "$dir" "$@" \
    >"$dir/receiver.log" 2>&1 &
  HTTP_PID=$!
  SERVER_PIDS+=("$HTTP_PID")
  wait_for 10 test -s "$dir/port" || fail "the HTTP receiver did not start"
  HTTP_PORT=$(cat "$dir/port")
}
set_mode() { echo "$2" >"$1/mode.tmp" && mv "$1/mode.tmp" "$1/mode"; }

# make_ca DIR NAME: a CA and a server certificate for localhost/127.0.0.1 in DIR
make_ca() {
  local d=$1 n=$2
  mkdir -p "$d"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$n-ca" -keyout "$d/$n-ca.key" \
    -out "$d/$n-ca.crt" >/dev/null 2>&1 || fail "openssl: CA"
  openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout "$d/$n-srv.key" \
    -out "$d/$n-srv.csr" >/dev/null 2>&1 || fail "openssl: csr"
  echo "subjectAltName=DNS:localhost,IP:127.0.0.1" >"$d/san"
  openssl x509 -req -in "$d/$n-srv.csr" -CA "$d/$n-ca.crt" -CAkey "$d/$n-ca.key" \
    -CAcreateserial -days 2 -extfile "$d/san" -out "$d/$n-srv.crt" >/dev/null 2>&1 ||
    fail "openssl: sign"
}

# ---- PostgreSQL (TESTING.md §1) ----
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
PG_AS=
[ "$(id -u)" = 0 ] && PG_AS="runuser -u postgres --"

# pg_start: initdb + start in a new temp dir; sets PG_DIR, PG_PORT, PG_CONN
pg_start() {
  [ -n "$PGBIN" ] || { echo "SKIP: PostgreSQL is not installed"; exit 77; }
  PG_DIR=$(mktemp -d -t mtpg.XXXXXX)
  PG_DIRS+=("$PG_DIR")
  chmod 755 "$PG_DIR"
  [ -n "$PG_AS" ] && chown postgres: "$PG_DIR"
  PG_PORT=$(free_port)
  $PG_AS "$PGBIN/initdb" -D "$PG_DIR/d" -U test -A trust --no-locale --no-sync >"$PG_DIR/i.log" 2>&1 ||
    fail "initdb: $(tail -3 "$PG_DIR/i.log")"
  pg_up
  # synchronous_commit stays on: the tests stop the server with -m immediate,
  # and an acknowledged commit must survive that (fsync=off is fine: the
  # machine does not crash, the WAL is in the page cache)
  PG_CONN="host=$PG_DIR port=$PG_PORT user=test dbname=postgres"
}
pg_up() {
  $PG_AS "$PGBIN/pg_ctl" -D "$PG_DIR/d" -l "$PG_DIR/pg.log" -w -o \
    "-k $PG_DIR -p $PG_PORT -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=200" \
    start >/dev/null 2>&1 || fail "pg_ctl start: $(tail -3 "$PG_DIR/pg.log")"
}
pg_down() { $PG_AS "$PGBIN/pg_ctl" -D "$PG_DIR/d" -m immediate -w stop >/dev/null 2>&1; }
psql_q() { psql -X -A -t -q "$PG_CONN" -c "$1"; }

# ---- mosquitto (TESTING.md §2) ----
# mqtt_start DIR: plain listener MQTT_PORT, TLS listener MQTTS_PORT (CA in DIR)
mqtt_start() {
  command -v mosquitto >/dev/null || { echo "SKIP: mosquitto is not installed"; exit 77; }
  MQ_DIR=$1
  mkdir -p "$MQ_DIR"
  chmod 755 "$MQ_DIR"
  [ -f "$MQ_DIR/mq-ca.crt" ] || make_ca "$MQ_DIR" mq
  MQTT_PORT=${MQTT_PORT:-$(free_port)}
  MQTTS_PORT=${MQTTS_PORT:-$(free_port)}
  cat >"$MQ_DIR/mosquitto.conf" <<EOF
per_listener_settings true
user $(id -un)
persistence false
max_inflight_messages 100
max_queued_messages 100000
set_tcp_nodelay true
listener $MQTT_PORT 127.0.0.1
allow_anonymous true
listener $MQTTS_PORT 127.0.0.1
allow_anonymous true
cafile $MQ_DIR/mq-ca.crt
certfile $MQ_DIR/mq-srv.crt
keyfile $MQ_DIR/mq-srv.key
EOF
  mqtt_up
}
mqtt_up() {
  mosquitto -c "$MQ_DIR/mosquitto.conf" >>"$MQ_DIR/broker.log" 2>&1 &
  MQ_PID=$!
  SERVER_PIDS+=("$MQ_PID")
  wait_for 10 mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -t '$SYS/broker/version' -C 1 -W 1 \
    >/dev/null 2>&1 || fail "mosquitto did not start: $(tail -3 "$MQ_DIR/broker.log")"
}
mqtt_down() { kill -9 "$MQ_PID" 2>/dev/null; wait "$MQ_PID" 2>/dev/null; }

# mqtt_collect FILE TOPIC: a subscriber (QoS 1) writing "topic payload" lines
mqtt_collect() {
  mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -t "$2" -v -i "collector-$$-$RANDOM" \
    >>"$1" 2>>"$1.err" &
  SUB_PID=$!
  SERVER_PIDS+=("$SUB_PID")
  sleep 0.3
}

# check_at_least_once DB RECORDS [replayed]: every reading of the log arrived,
# with the log's generation; a reading that arrived twice came again in a
# batch whose key had been seen before (unless "replayed": `mittari replay`
# cuts its own batches, and receivers drop those readings by agent,
# generation and seq). RECORDS: JSON lines {key, gen, seqs}.
check_at_least_once() {
  python3 - "$1" "$2" "${3:-}" <<'PY'
import json, sqlite3, sys
db, path, replayed = sys.argv[1], sys.argv[2], sys.argv[3] == "replayed"
con = sqlite3.connect(db)
gen = con.execute("select value from meta where key = 'generation'").fetchone()[0]
rows = {r[0] for r in con.execute("select seq from readings")}
seen, keys, dups, dup_bad = {}, set(), 0, []
with open(path) as f:
    for line in f:
        r = json.loads(line)
        if r["gen"] != gen:
            sys.exit(f"generation {r['gen']}, the log's is {gen}")
        again = r["key"] in keys
        for s in r["seqs"]:
            if s in seen:
                dups += 1
                if not again:
                    dup_bad.append((s, r["key"]))
            seen[s] = seen.get(s, 0) + 1
        keys.add(r["key"])
missing = sorted(rows - set(seen))
extra = sorted(set(seen) - rows)
if extra:
    sys.exit(f"{len(extra)} readings received that the log does not hold, first {extra[:5]}")
if missing:
    sys.exit(f"{len(missing)} of {len(rows)} readings never arrived, first {missing[:5]}")
if dup_bad and not replayed:
    sys.exit(f"{len(dup_bad)} duplicates came under a key not seen before, first {dup_bad[:3]}")
if not rows:
    sys.exit("the log is empty: nothing was tested")
print(f"{len(rows)} readings, all arrived; {dups} duplicates, each under a key seen before")
PY
}

# mqtt_records SUBFILE OUT: the subscriber's "topic payload" lines of reading
# messages -> records {key, gen, seqs, topic} (status messages left out)
mqtt_records() {
  python3 - "$1" "$2" <<'PY'
import json, sys
with open(sys.argv[2], "w") as out:
    for line in open(sys.argv[1]):
        topic, _, payload = line.rstrip("\n").partition(" ")
        if topic.endswith("/status") or not payload.startswith("{"):
            continue
        d = json.loads(payload)
        out.write(json.dumps({"key": d["key"], "gen": d["generation"], "topic": topic,
                              "seqs": [r["seq"] for r in d["readings"]], "readings": d["readings"],
                              "first_seq": d["first_seq"], "last_seq": d["last_seq"],
                              "count": d["count"]}) + "\n")
PY
}
