#!/bin/bash
# SIGHUP: a broken configuration keeps the running one; a valid one starts a
# new output (which delivers the whole log), restarts only the changed input,
# and no reading is lost across the reloads.
. "$(dirname "$0")/lib.sh"

mkdir -p "$T/conf"
cat >"$T/conf/10-agent.yaml" <<YAML
agent:
  site: it-reload
  data_dir: $T/data
  stats_interval: 0
YAML
cat >"$T/conf/20-in.yaml" <<YAML
inputs:
  steady:
    plugin: sim
    rate: 500
    opening_hours: "00:00-24:00"
  changing:
    plugin: sim
    rate: 300
    opening_hours: "00:00-24:00"
YAML
cat >"$T/conf/30-out.yaml" <<YAML
outputs:
  first:
    type: file
    path: $T/out/first.jsonl
YAML

start_agent "$T/conf"
sleep 1.5

# 1. a broken file: the running configuration stays
cat >"$T/conf/40-bad.yaml" <<YAML
outputs:
  second:
    type: fiel
    path: $T/out/second.jsonl
YAML
kill -HUP "$AGENT_PID"
wait_for 5 grep -q "keeping the running one" "$T/agent.log" || fail "broken reload not reported"
grep -q "40-bad.yaml:3:11: output 'second': unknown output type 'fiel'" "$T/agent.log" || fail "no file:line:col in the reload error"
kill -0 "$AGENT_PID" || fail "agent died on a broken reload"
before=$(db_count "$T/data/mittari.db")
sleep 1
after=$(db_count "$T/data/mittari.db")
[ "$after" -gt "$before" ] || fail "no readings after the broken reload ($before -> $after)"

# 2. fixed: a new output, one input changed
sed -i 's/type: fiel/type: file/' "$T/conf/40-bad.yaml"
sed -i 's/rate: 300/rate: 400/' "$T/conf/20-in.yaml"
kill -HUP "$AGENT_PID"
wait_for 5 grep -q "configuration reloaded: 2 inputs, 2 outputs" "$T/agent.log" || fail "valid reload not applied"
stops=$(grep -c "input sim\[changing\]: stopping" "$T/agent.log")
steady_stops=$(grep -c "input sim\[steady\]: stopping" "$T/agent.log" || true)
[ "$stops" = 1 ] || fail "changed input stopped $stops times"
[ "$steady_stops" = 0 ] || fail "unchanged input was restarted"
sleep 1.5
stop_agent TERM
[ "$AGENT_STATUS" = 0 ] || fail "exit status $AGENT_STATUS"

check_file_matches_db "$T/data/mittari.db" "$T/out/first.jsonl" || fail "first output lost or doubled readings"
check_file_matches_db "$T/data/mittari.db" "$T/out/second.jsonl" || fail "new output did not deliver the whole log"
ok "reload: broken kept, valid applied, nothing lost"
