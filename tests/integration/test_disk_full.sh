#!/bin/bash
# Issue 8 §3 on a real full file system (an 4 MiB tmpfs as the data dir):
# while commits fail, readings are refused at the input (counted), memory
# holds at most queue_max of them; a stop that cannot store what it
# accepted exits non-zero and says how many; the final statistics line
# comes after the last commit (the log holds what it says was stored).
. "$(dirname "$0")/lib.sh"

mkdir -p "$T/data" "$T/conf"
if ! mount -t tmpfs -o size=4m tmpfs "$T/data" 2>/dev/null; then
  echo "skip: cannot mount a tmpfs here (not root?)"
  exit 77
fi
trap 'umount "$T/data" 2>/dev/null; cleanup' EXIT

cat >"$T/conf/10.yaml" <<YAML
agent:
  site: it-full
  data_dir: $T/data
  stats_interval: 0
  shutdown_timeout: 1s
  queue_max: 20000
inputs:
  sim:
    plugin: sim
    rate: 0
    opening_hours: "00:00-24:00"
YAML

start_agent "$T/conf"
wait_for 30 grep -q "disk full" "$T/agent.log" || fail "the disk never got full"
sleep 2 # commits keep failing; the intake must not grow past queue_max
kill -0 "$AGENT_PID" || fail "agent died on a full disk"
stop_agent TERM
[ "$AGENT_STATUS" = 1 ] || fail "exit status $AGENT_STATUS after a stop that could not store everything"
lost=$(sed -n 's/.* \([0-9]*\) readings accepted from inputs could not be stored before exit.*/\1/p' "$T/agent.log")
[ -n "$lost" ] && [ "$lost" -gt 0 ] || fail "how many were not stored is not said"
[ "$lost" -le 20000 ] || fail "$lost readings held in memory, more than queue_max 20000"
grep -q "readings accepted from inputs were not stored; exiting with status 1" "$T/agent.log" ||
  fail "the exit status is not explained"
refused=$(sed -n 's/.*at stop: input sim\[sim\] emitted [0-9]*, refused \([0-9]*\).*/\1/p' "$T/agent.log")
[ -n "$refused" ] && [ "$refused" -gt 0 ] || fail "no reading refused at the input while full"
stored=$(sed -n 's/.*final: .*stored \([0-9]*\),.*/\1/p' "$T/agent.log")
rows=$(db_count "$T/data/mittari.db")
[ "$rows" = "$stored" ] || fail "final line says $stored stored, the log holds $rows"
queued=$(sed -n 's/.*final: queued \([0-9]*\),.*/\1/p' "$T/agent.log")
# accepted = stored + not stored (+ the counter samples that are no row)
[ $((queued - stored - lost)) -lt 2000 ] || fail "queued $queued, stored $stored, lost $lost: some went nowhere"
ok "full disk: $refused refused at the input, $lost held (<= queue_max) and reported, exit 1, $rows stored"
