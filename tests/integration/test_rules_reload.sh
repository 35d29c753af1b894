#!/bin/bash
# SIGHUP reloads racing a running rule: while the sim feeds the agent, the
# rule's script is changed back and forth 25 times (the same state_version,
# so its state is kept) with a reload after each change, at random moments.
# The rule's figures must equal a clean replay of the log: no reading
# counted twice or lost across the restarts.
. "$(dirname "$0")/lib.sh"
mkdir -p "$T/conf" "$T/s"

write_a() {
    cat >"$T/s/r.lua.new" <<'LUA'
state_version = 7
local v = window { every = "minute", metric = "visitors_minute", agg = "sum", lateness = "1h" }
state.n = state.n or 0
function on_reading(r)
  if r.metric == "visitors_in" then v:add(r) end
  state.n = state.n + 1
  if state.n % 50 == 0 then emit { metric = "nth", value = state.n } end
end
LUA
    mv "$T/s/r.lua.new" "$T/s/r.lua" # as editors save: whole
}
write_b() {
    cat >"$T/s/r.lua.new" <<'LUA'
-- the same figures, written otherwise
state_version = 7
local visitors = window { every = "minute", metric = "visitors_minute", agg = "sum",
                          lateness = "1h" }
state.n = state.n or 0
function on_reading(r)
  state.n = state.n + 1
  if r.metric == "visitors_in" then visitors:add(r, r.value) end
  if state.n % 50 == 0 then emit { value = state.n, metric = "nth" } end
end
LUA
    mv "$T/s/r.lua.new" "$T/s/r.lua"
}
write_a
cat >"$T/conf/10.yaml" <<YAML
agent:
  site: it-rreload
  data_dir: $T/data
  timezone: Europe/Helsinki
  stats_interval: 0
inputs:
  sim:
    plugin: sim
    rate: 2000
    opening_hours: "00:00-24:00"
    poll_interval: 20ms
rules:
  r:
    script: ../s/r.lua
YAML
# the run (about 10 s) must cross a minute boundary, so that some minute
# windows close and are compared: start at second 55 or later
s=$(date +%-S)
if [ "$s" -lt 55 ]; then sleep $((55 - s)); elif [ "$s" -gt 57 ]; then sleep $((115 - s)); fi
start_agent "$T/conf"
wait_for 20 grep -q "rule r: running" "$T/agent.log" || fail "the rule did not start"
RANDOM=$$
for i in $(seq 1 25); do
    if [ $((i % 2)) = 1 ]; then write_b; else write_a; fi
    kill -HUP "$AGENT_PID"
    sleep "0.$((RANDOM % 4))$((RANDOM % 10))"
done
sleep 1
stop_agent TERM
[ "$AGENT_STATUS" = 0 ] || fail "exit status $AGENT_STATUS"
n=$(grep -c "rule r changed: restarting it with its state" "$T/agent.log")
[ "$n" -ge 10 ] || fail "only $n restarts of the rule"
grep -q "starting afresh" "$T/agent.log" && fail "a reload with the same state_version started afresh"
# without input: the rule reads to the end, its clock closes what ended
sed -i 's/^    plugin: sim/    plugin: sim\n    enabled: false/' "$T/conf/10.yaml"
start_agent "$T/conf"
sleep 4
stop_agent TERM
cutoff=$(date -u -d "-3 seconds" +%FT%T.%NZ)
"$MITTARI" query -c "$T/conf" --plugin-dir "$BUILD_DIR/plugins" --format csv >"$T/raw.csv" || fail "query"
"$MITTARI" rule test "$T/s/r.lua" --input "$T/raw.csv" --site it-rreload --format csv \
    >"$T/replay.csv" 2>"$T/replay.err" || { cat "$T/replay.err"; fail "replay"; }
python3 "$SOURCE_DIR/tests/integration/rules_compare.py" "$T/data/mittari.db" r \
    "$T/replay.csv" "$cutoff" || fail "figures after $n reloads differ from a clean replay"
ok "$n reloads racing the rule: figures equal a clean replay"
