#!/bin/bash
# A log moved aside (as docs/operations.md tells IT to do with a corrupt
# one) starts again at seq 1, as a new generation (issue 8). The file output
# still holds the old log's readings with higher numbers: it must append the
# new log's readings, not skip them as "already delivered", and no
# (generation, seq) may name two readings.
. "$(dirname "$0")/lib.sh"

mkdir -p "$T/conf"
cat >"$T/conf/a.yaml" <<YAML
agent: {site: it-newlog, data_dir: $T/data, stats_interval: 0}
inputs: {sim: {plugin: sim, rate: 2000, opening_hours: "00:00-24:00"}}
outputs: {archive: {type: file, path: $T/out/readings.jsonl}}
YAML
start_agent "$T/conf"; sleep 2; stop_agent TERM
[ "$AGENT_STATUS" = 0 ] || fail "first run: exit $AGENT_STATUS"
old=$(wc -l <"$T/out/readings.jsonl")
[ "$old" -gt 500 ] || fail "first run wrote only $old readings"

mkdir "$T/aside"; mv "$T/data"/mittari.db* "$T/aside/"
start_agent "$T/conf"; sleep 1; stop_agent TERM
[ "$AGENT_STATUS" = 0 ] || fail "second run: exit $AGENT_STATUS"
grep -q "not this log's" "$T/agent.log" || fail "no warning about the foreign readings"
new=$(sqlite3 "$T/data/mittari.db" "select count(*) from readings")
[ "$new" -gt 100 ] || fail "second run stored only $new"
total=$(wc -l <"$T/out/readings.jsonl")
[ "$total" = $((old + new)) ] || fail "file has $total lines, expected $old + $new"
tail -n "$new" "$T/out/readings.jsonl" >"$T/tail.jsonl"
check_file_matches_db "$T/data/mittari.db" "$T/tail.jsonl" || fail "new log's readings not appended exactly"
head -n "$old" "$T/out/readings.jsonl" >"$T/head.jsonl"
check_file_matches_db "$T/aside/mittari.db" "$T/head.jsonl" || fail "old log's readings changed"
python3 - "$T/out/readings.jsonl" <<'PY' || fail "a (generation, seq) names two readings"
import json, sys
seen, gens = set(), set()
for line in open(sys.argv[1]):
    r = json.loads(line)
    key = (r["gen"], r["seq"])
    if key in seen:
        sys.exit(f"{key} twice")
    seen.add(key)
    gens.add(r["gen"])
if len(gens) != 2:
    sys.exit(f"expected two generations, got {gens}")
print(f"{len(seen)} readings, two generations, every (gen, seq) once")
PY
ok "a new log's readings are appended after an old log's"
