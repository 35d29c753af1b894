#!/bin/bash
# Issue 15 #2: the documented hard stop. A plugin's poll blocks its worker
# for 40 s; with shutdown_timeout 100ms the stop goes on without it (final
# line, writer ended), waits at most 15 s more, then the process ends with
# status 1 and a line naming what it was still waiting for. Before, the
# agent said "final" at once and exited 0 only when the poll returned.
. "$(dirname "$0")/lib.sh"
: "${TEST_PLUGIN_DIR:?run through ctest}"

mkdir -p "$T/conf"
cat >"$T/conf/10.yaml" <<YAML
agent:
  site: it-hard-stop
  data_dir: $T/data
  stats_interval: 0
  shutdown_timeout: 100ms
inputs:
  slow:
    plugin: stall
    block: 40s
YAML

"$MITTARI" run -c "$T/conf" --plugin-dir "$TEST_PLUGIN_DIR" 2>"$T/agent.log" &
AGENT_PID=$!
wait_for 10 grep -q "running:" "$T/agent.log" || fail "agent did not start"
sleep 0.3 # the first poll is blocked now
t0=$(date +%s%3N)
stop_agent TERM
took=$(($(date +%s%3N) - t0))
[ "$AGENT_STATUS" = 1 ] || fail "exit status $AGENT_STATUS, want 1"
[ "$took" -lt 16500 ] || fail "took $took ms, more than shutdown_timeout + 15 s"
[ "$took" -gt 14000 ] || fail "took only $took ms: did it wait for the poll at all?"
grep -q "input slow did not stop within shutdown_timeout" "$T/agent.log" || fail "stuck input not named"
grep -q "final:" "$T/agent.log" || fail "no final statistics line"
grep -q "still waiting for: .*input slow (stopping for .*polls of its plugin still running" \
  "$T/agent.log" || fail "the hard stop did not say what it waited for"
ok "hard stop after $took ms with status 1"
