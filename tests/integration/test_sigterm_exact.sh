#!/bin/bash
# sim -> file: stopped with SIGTERM, the agent commits everything it received
# and the file output delivers it; the file then holds exactly the readings
# of the log, each once.
. "$(dirname "$0")/lib.sh"

mkdir -p "$T/conf"
cat >"$T/conf/10.yaml" <<YAML
agent:
  site: it-sigterm
  data_dir: $T/data
  stats_interval: 0
inputs:
  sim:
    plugin: sim
    rate: 3000
    opening_hours: "00:00-24:00"
    card_share: 0.2
    poll_interval: 50ms
outputs:
  archive:
    type: file
    path: $T/out/readings.jsonl
YAML

start_agent "$T/conf"
sleep 3
stop_agent TERM
[ "$AGENT_STATUS" = 0 ] || fail "exit status $AGENT_STATUS"
grep -q "final:" "$T/agent.log" || fail "no final statistics line"

emitted=$(sed -n 's/.*stopping after \([0-9]*\) readings.*/\1/p' "$T/agent.log")
queued=$(sed -n 's/.*final: queued \([0-9]*\),.*/\1/p' "$T/agent.log")
stored=$(sed -n 's/.*final: .*stored \([0-9]*\),.*/\1/p' "$T/agent.log")
[ -n "$emitted" ] && [ "$emitted" -gt 1000 ] || fail "sim emitted too little: '$emitted'"
[ "$emitted" = "$queued" ] || fail "sim emitted $emitted, agent queued $queued"
rows=$(db_count "$T/data/mittari.db")
[ "$rows" = "$stored" ] || fail "log has $rows rows, writer says it stored $stored"
# every cumulative sample but the first of the gate counter (and unchanged ones) is a row
[ $((queued - stored)) -lt 200 ] || fail "$((queued - stored)) readings queued but not stored"
lines=$(wc -l <"$T/out/readings.jsonl")
[ "$lines" = "$rows" ] || fail "file has $lines lines, log $rows rows"
check_file_matches_db "$T/data/mittari.db" "$T/out/readings.jsonl" || fail "file differs from log"
cursor=$(sqlite3 "$T/data/mittari.db" "select seq from cursors where name='archive'")
max=$(sqlite3 "$T/data/mittari.db" "select max(seq) from readings")
[ "$cursor" = "$max" ] || fail "cursor $cursor, last seq $max: the cursor was not committed"
! grep -E " (err|crit|alert|emerg) " "$T/agent.log" || fail "errors logged"
ok "SIGTERM: $emitted emitted, $rows stored and delivered exactly once"
