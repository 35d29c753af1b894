# Shared helpers for the integration tests (sourced). ctest sets MITTARI,
# BUILD_DIR, SOURCE_DIR. Every test gets a private directory, removed on exit
# together with any agent it started.
set -u
: "${MITTARI:?run through ctest}" "${BUILD_DIR:?}" "${SOURCE_DIR:?}"

T=$(mktemp -d -t mittari-it.XXXXXX)
AGENT_PID=
cleanup() {
  if [ -n "$AGENT_PID" ] && kill -0 "$AGENT_PID" 2>/dev/null; then
    kill -9 "$AGENT_PID" 2>/dev/null
    wait "$AGENT_PID" 2>/dev/null
  fi
  [ -n "${KEEP_LOG:-}" ] && cp "$T/agent.log" "$KEEP_LOG" 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT
KEEP_LOG=${KEEP_LOG:-}

fail() { echo "FAIL: $*" >&2; [ -f "$T/agent.log" ] && tail -20 "$T/agent.log" >&2; exit 1; }
ok() { echo "ok: $*"; }

# start_agent CONFDIR [LOG]: runs the agent in the background
start_agent() {
  "$MITTARI" run -c "$1" --plugin-dir "$BUILD_DIR/plugins" >>"${2:-$T/agent.out}" 2>>"$T/agent.log" &
  AGENT_PID=$!
}

# stop_agent SIGNAL: signals the agent and waits; sets AGENT_STATUS
stop_agent() {
  kill -"$1" "$AGENT_PID"
  wait "$AGENT_PID"
  AGENT_STATUS=$?
  AGENT_PID=
}

# wait_for SECONDS CMD...: polls until CMD succeeds
wait_for() {
  local end=$((SECONDS + $1)); shift
  until "$@"; do
    [ $SECONDS -ge $end ] && return 1
    sleep 0.1
  done
}

# the number of readings in the log
db_count() { sqlite3 "$1" "select count(*) from readings"; }

# check_file_matches_db DB FILE: every row of the log is in the JSON Lines
# file exactly once with the same fields, and the file holds nothing else.
check_file_matches_db() {
  python3 - "$1" "$2" <<'PY'
import json, sqlite3, sys
db, path = sys.argv[1], sys.argv[2]
con = sqlite3.connect(db)
series = {r[0]: r[1:] for r in con.execute("select id, site, device, metric, unit from series")}
rows = {r[0]: r[1:] for r in con.execute("select seq, ts, series, value, subject from readings")}
gen = con.execute("select value from meta where key = 'generation'").fetchone()[0]
seen = {}
with open(path) as f:
    for n, line in enumerate(f, 1):
        rec = json.loads(line)
        s = rec["seq"]
        if rec.get("gen") != gen:
            sys.exit(f"seq {s}: generation {rec.get('gen')}, the log's is {gen}")
        if s in seen:
            sys.exit(f"seq {s} twice in {path} (lines {seen[s]} and {n})")
        seen[s] = n
        if s not in rows:
            sys.exit(f"seq {s} in the file but not in the log")
        ts, sid, value, subject = rows[s]
        site, device, metric, unit = series[sid]
        if (rec["site"], rec["device"], rec["metric"], rec.get("unit", "")) != (site, device, metric, unit):
            sys.exit(f"seq {s}: series differs: {rec} vs {series[sid]}")
        if rec["value"] != value:
            sys.exit(f"seq {s}: value {rec['value']} vs {value}")
        if rec.get("subject") != subject:
            sys.exit(f"seq {s}: subject differs")
missing = sorted(set(rows) - set(seen))
if missing:
    sys.exit(f"{len(missing)} readings of the log are not in the file, first {missing[:5]}")
if not rows:
    sys.exit("the log is empty: nothing was tested")
print(f"{len(rows)} readings, each exactly once")
PY
}
