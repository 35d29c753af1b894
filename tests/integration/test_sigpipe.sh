#!/bin/bash
# Issue 15 #3: SIGPIPE used to end the agent with status 141 and no stop
# sequence. A file output on standard output piped into `head -c 200`, and
# the agent's own log on a stderr whose reader went away: the agent keeps
# running, says so, and stops cleanly on SIGTERM with every reading in the
# log.
. "$(dirname "$0")/lib.sh"

mkdir -p "$T/conf"
cat >"$T/conf/10.yaml" <<YAML
agent:
  site: it-sigpipe
  data_dir: $T/data
  stats_interval: 200ms
  shutdown_timeout: 1s
inputs:
  sim:
    plugin: sim
    rate: 2000
    opening_hours: "00:00-24:00"
    poll_interval: 50ms
outputs:
  console:
    type: file
    path: "-"
    retry_min: 50ms
    retry_max: 200ms
YAML

# 1. standard output into head -c 200
mkfifo "$T/out.fifo"
head -c 200 <"$T/out.fifo" >"$T/head.out" &
HEAD=$!
start_agent "$T/conf" "$T/out.fifo"
wait "$HEAD"
[ "$(wc -c <"$T/head.out")" = 200 ] || fail "head did not get its 200 bytes"
wait_for 10 grep -q "standard output is closed" "$T/agent.log" || fail "no word of the closed standard output"
sleep 0.5
kill -0 "$AGENT_PID" 2>/dev/null || { wait "$AGENT_PID"; fail "agent died (status $?) when its standard output was closed"; }
stop_agent TERM
[ "$AGENT_STATUS" = 0 ] || fail "exit status $AGENT_STATUS after SIGTERM"
grep -q "final:" "$T/agent.log" || fail "no final statistics line"
stored=$(sed -n 's/.*final: .*stored \([0-9]*\),.*/\1/p' "$T/agent.log")
rows=$(db_count "$T/data/mittari.db")
[ -n "$stored" ] && [ "$stored" -gt 100 ] && [ "$rows" = "$stored" ] ||
  fail "log has $rows rows, the writer stored $stored"
ok "stdout closed: agent kept running, stopped with 0, $rows readings in the log"

# 2. the agent's own log on a stderr nobody reads any more
mkfifo "$T/err.fifo"
head -c 100 <"$T/err.fifo" >/dev/null &
HEAD=$!
"$MITTARI" run -c "$T/conf" --plugin-dir "$BUILD_DIR/plugins" >/dev/null 2>"$T/err.fifo" &
AGENT_PID=$!
wait "$HEAD"
sleep 1 # statistics lines every 200 ms meet the closed pipe
kill -0 "$AGENT_PID" 2>/dev/null || { wait "$AGENT_PID"; fail "agent died (status $?) when its stderr was closed"; }
# still storing: the log grows (polled: a stop right after a commit, before
# the next poll, would store nothing more, and that is no failure)
before=$(db_count "$T/data/mittari.db")
grows() { [ "$(db_count "$T/data/mittari.db")" -gt "$before" ]; }
wait_for 10 grows || fail "nothing stored after stderr closed ($before)"
stop_agent TERM
[ "$AGENT_STATUS" = 0 ] || fail "exit status $AGENT_STATUS with stderr closed"
ok "stderr closed: agent kept running and stopped with 0"
