#!/bin/bash
# A rule's figures survive kill -9 exactly once. Under load (the sim at 3000
# readings/s), the agent with one rule is killed at 30 random moments and
# restarted; then it runs to a graceful stop. The rule's figures in the log
# (per-minute sums and distinct families, and a reading it emits every 100
# readings numbered from its saved state) must equal those of a clean replay
# of the log's raw readings through the same script: no window counted twice
# or lost, no emitted reading doubled or missing, no figure twice.
. "$(dirname "$0")/lib.sh"

mkdir -p "$T/conf" "$T/scripts"
cat >"$T/scripts/count.lua" <<'LUA'
local visitors = window { every = "minute", metric = "visitors_minute", agg = "sum", lateness = "1h" }
local families = window { every = "minute", metric = "families_minute", agg = "distinct",
                          by = {"site"}, lateness = "1h", suppress = false }
state.n = state.n or 0
function on_reading(r)
  if r.metric == "visitors_in" then visitors:add(r) end
  if r.subject then families:add(r) end
  state.n = state.n + 1
  if state.n % 100 == 0 then emit { metric = "nth", value = state.n } end
end
LUA
# small cells: per minute, the first 3 check-ins (suppressed: under 5) and
# all of them; the minute's count kept in state across the kills
cat >"$T/scripts/fam.lua" <<'LUA'
local few = window { every = "minute", metric = "first_checkins", agg = "count",
                     by = {"site"}, lateness = "1h", suppress = 5 }
local all = window { every = "minute", metric = "checkins", agg = "count",
                     by = {"site"}, lateness = "1h", suppress = 5 }
function on_reading(r)
  local m = period("minute", r.ts)
  if state.minute ~= m then state.minute, state.k = m, 0 end
  state.k = state.k + 1
  if state.k <= 3 then few:add(r) end
  all:add(r)
end
LUA
cat >"$T/conf/10.yaml" <<YAML
agent:
  site: it-rcrash
  data_dir: $T/data
  timezone: Europe/Helsinki
  stats_interval: 0
inputs:
  sim:
    plugin: sim
    rate: 3000
    opening_hours: "00:00-24:00"
    card_share: 0.2
    poll_interval: 20ms
rules:
  count:
    script: ../scripts/count.lua
  fam:
    script: ../scripts/fam.lua
    series: "*/*/checkin"
outputs:
  archive:
    type: file
    path: $T/out/readings.jsonl
    max_size: 0
YAML

# the kills (25 s or more) must cross a minute boundary, so that minute
# windows close while the agent is being killed: start at second 35..50
s=$(date +%-S)
if [ "$s" -lt 35 ]; then sleep $((35 - s)); elif [ "$s" -gt 50 ]; then sleep $((95 - s)); fi
RANDOM=$$
for i in $(seq 1 30); do
  start_agent "$T/conf"
  # 0.2 .. 1.5 s: mid-start, mid-read, mid-step, mid-commit
  sleep "0.$((2 + RANDOM % 8))$((RANDOM % 10))"
  sleep "0.$((RANDOM % 6))"
  kill -9 "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null; AGENT_PID=
done
start_agent "$T/conf"
sleep 2
stop_agent TERM
[ "$AGENT_STATUS" = 0 ] || fail "last run: exit status $AGENT_STATUS"
# once more without input: the rule reads to the end and its clock closes
# what has ended
sed -i 's/^    plugin: sim/    plugin: sim\n    enabled: false/' "$T/conf/10.yaml"
start_agent "$T/conf"
sleep 4
stop_agent TERM
[ "$AGENT_STATUS" = 0 ] || fail "final run: exit status $AGENT_STATUS"
# windows that ended 3 s before the stop were closed by the rule's clock
cutoff=$(date -u -d "-3 seconds" +%FT%T.%NZ)

integrity=$(sqlite3 "$T/data/mittari.db" "pragma integrity_check")
[ "$integrity" = ok ] || fail "integrity_check: $integrity"
last=$(sqlite3 "$T/data/mittari.db" "select max(seq) from readings")
cursor=$(sqlite3 "$T/data/mittari.db" "select seq from cursors where name = 'count'")
[ "$cursor" = "$last" ] || fail "the rule's cursor $cursor is not at the end $last"

"$MITTARI" query -c "$T/conf" --plugin-dir "$BUILD_DIR/plugins" --format csv >"$T/raw.csv" || fail "query"
"$MITTARI" rule test "$T/scripts/count.lua" --input "$T/raw.csv" --tz Europe/Helsinki \
    --site it-rcrash --format csv >"$T/replay.csv" 2>"$T/replay.err" || { cat "$T/replay.err"; fail "replay"; }
python3 "$SOURCE_DIR/tests/integration/rules_compare.py" "$T/data/mittari.db" count \
    "$T/replay.csv" "$cutoff" || fail "figures after 30 kill -9 differ from a clean replay"
"$MITTARI" rule test "$T/scripts/fam.lua" --input "$T/raw.csv" --series '*/*/checkin' \
    --site it-rcrash --format csv >"$T/fam.csv" 2>"$T/fam.err" || { cat "$T/fam.err"; fail "replay fam"; }
python3 "$SOURCE_DIR/tests/integration/rules_compare.py" "$T/data/mittari.db" fam \
    "$T/fam.csv" "$cutoff" || fail "suppressed figures after 30 kill -9 differ from a clean replay"
ok "30 kill -9 restarts: the rules' figures equal a clean replay"

# small cells: no figure under 5 in the log, the output or the agent's log
python3 - "$T/data/mittari.db" "$T/out/readings.jsonl" <<'PY' || fail "a figure under the threshold got out"
import json, sqlite3, sys
con = sqlite3.connect(sys.argv[1])
rows = con.execute("SELECT r.value, r.flags FROM readings r JOIN series s ON s.id = r.series "
                   "WHERE s.origin = 'fam'").fetchall()
supp = [v for v, f in rows if f & 1]
if not supp or len(supp) == len(rows):
    sys.exit(f"the test needs both: {len(supp)} suppressed of {len(rows)}")
if any(v != 0 for v in supp) or any(v < 5 for v, f in rows if not f & 1):
    sys.exit("the log holds a number under 5")
seen = 0
for line in open(sys.argv[2]):
    r = json.loads(line)
    if r.get("origin") != "fam":
        continue
    seen += 1
    if "suppressed_below" in r:
        if r["value"] is not None or r["suppressed_below"] != 5:
            sys.exit("output: %s" % r)
    elif r["value"] < 5:
        sys.exit("output: %s" % r)
if not seen:
    sys.exit("the output has no figure of the rule")
print(f"{len(supp)} of {len(rows)} figures suppressed, none shown")
PY
! grep -q "first_checkins" "$T/agent.log" || fail "the agent's log mentions the figures"
ok "small cells: stored and delivered as suppressed, never as the number"
