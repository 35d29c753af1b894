#!/bin/bash
# `mittari status`: asks the running agent (with the configured token) and
# prints its report; with the agent stopped, prints what the log knows:
# each output's cursor and backlog, parked batches, the log's size; with
# the endpoint off, says so and falls back to the log as well.
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3

PORT=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
printf "%s" "fedcba9876543210fedcba9876543210" >"$T/token"
chmod 600 "$T/token"
mkdir -p "$T/conf"
write_conf() { # $1: status.listen
  cat >"$T/conf/10.yaml" <<YAML
agent:
  site: it-cli
  data_dir: $T/data
  stats_interval: 0
inputs:
  lobby:
    plugin: sim
    rate: 30
    opening_hours: "00:00-24:00"
outputs:
  archive:
    type: file
    path: $T/out/readings.jsonl
status:
  listen: $1
  token_file: $T/token
YAML
}
write_conf "127.0.0.1:$PORT"
st() { "$MITTARI" status -c "$T/conf" --plugin-dir "$BUILD_DIR/plugins" >"$T/st.out" 2>"$T/st.err"; }
start_agent "$T/conf"
has_readings() { st && grep -q "lobby .*received [1-9]" "$T/st.out"; }
wait_for 20 has_readings || fail "mittari status: $(cat "$T/st.out" "$T/st.err")"
grep -q "^health: ok" "$T/st.out" || fail "health: $(cat "$T/st.out")"
grep -q "agent .*, site it-cli, running (pid $AGENT_PID" "$T/st.out" || fail "agent line"
grep -Eq "^  archive +file +cursor [0-9]+" "$T/st.out" || fail "output line: $(cat "$T/st.out")"
grep -q "^log: .*readings" "$T/st.out" || fail "log line"
ok "running: the agent's report, exit 0"

stop_agent TERM
[ "$AGENT_STATUS" = 0 ] || fail "exit status $AGENT_STATUS"
DB=$T/data/mittari.db
cursor=$(sqlite3 "$DB" "select seq from cursors where name = 'archive'")
sqlite3 "$DB" "insert into parked(output, first_seq, last_seq, error, at)
               values('archive', 5, 9, 'HTTP 400: bad field \"x\"', $(date +%s)000000)"
st && fail "exit 0 with the agent down"
grep -q "figures from the log" "$T/st.out" || fail "down: $(cat "$T/st.out")"
grep -q "^  - the agent is not running" "$T/st.out" || fail "no reason"
grep -Eq "^  archive +cursor $cursor, backlog 0" "$T/st.out" || fail "cursor $cursor: $(cat "$T/st.out")"
grep -q "parked: 1 batches, 5 readings; the last .* ago: HTTP 400: bad field \"x\"" "$T/st.out" ||
  fail "parked: $(cat "$T/st.out")"
ok "down: cursors, backlog and parked batches from the log, exit 1"

write_conf off
start_agent "$T/conf"
# the second start's line (the first agent's is in the same log)
running() { [ "$(grep -c "running:" "$T/agent.log")" = 2 ]; }
wait_for 20 running || fail "the agent did not start again"
st && fail "exit 0 with the endpoint off"
grep -q "status endpoint is off" "$T/st.err" || fail "endpoint off: $(cat "$T/st.err")"
grep -q "the agent runs, but its status endpoint does not answer" "$T/st.out" ||
  fail "off: $(cat "$T/st.out")"
stop_agent TERM
ok "mittari status"
