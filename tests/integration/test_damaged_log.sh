#!/bin/bash
# Issue 8 §2: every SQLITE_CORRUPT/NOTADB ends the same way: a clear message
# naming `mittari salvage`, exit status 4 (the unit does not restart on it),
# nothing more written into the damaged file. Real damage: garbage in the
# middle, in the last pages, a truncated file, at start and met by an
# output while running. Then `mittari salvage` and a restart: the output
# file holds every salvaged reading once, no (generation, seq) twice.
. "$(dirname "$0")/lib.sh"
P=(--plugin-dir "$BUILD_DIR/plugins")

grep -q "^RestartPreventExitStatus=.*\b4\b" "$SOURCE_DIR/packaging/systemd/mittari.service" ||
  fail "the unit restarts on status 4"

conf() { # conf DIR [output path]
  mkdir -p "$1"
  cat >"$1/10.yaml" <<YAML
agent:
  site: it-damage
  data_dir: $T/data
  stats_interval: 0
  shutdown_timeout: 2s
inputs:
  sim:
    plugin: sim
    rate: 100000
    opening_hours: "00:00-24:00"
    poll_interval: 20ms
YAML
  if [ -n "${2:-}" ]; then
    cat >>"$1/10.yaml" <<YAML
outputs:
  archive:
    type: file
    path: $2
    fsync: false
    retry_min: 50ms
    retry_max: 200ms
YAML
  fi
}

# garble DB PAGE...: overwrites pages with garbage
garble() {
  python3 - "$@" <<'PY'
import sys
path = sys.argv[1]
with open(path, "r+b") as f:
    for p in sys.argv[2:]:
        f.seek((int(p) - 1) * 4096)
        f.write(bytes((i * 37 + 11) & 255 for i in range(4096)))
PY
}

# a log of a few hundred thousand readings, all in the main file
make_log() {
  rm -rf "$T/data"
  start_agent "$T/plain"
  sleep 2
  stop_agent TERM
  [ "$AGENT_STATUS" = 0 ] || fail "making the log: exit $AGENT_STATUS"
  sqlite3 "$T/data/mittari.db" "PRAGMA wal_checkpoint(TRUNCATE)" >/dev/null
}

leaf() { # leaf N-from-the-end: a leaf page of the readings
  sqlite3 "$T/data/mittari.db" "SELECT pageno FROM dbstat WHERE name='readings' AND \
    pagetype='leaf' ORDER BY path DESC LIMIT 1 OFFSET $1"
}

expect_damage_exit() { # what: runs the agent, wants status 4 and the advice, file unchanged
  cp "$T/data/mittari.db" "$T/before.db"
  "$MITTARI" run -c "$T/plain" "${P[@]}" 2>"$T/agent.log"; st=$?
  [ "$st" = 4 ] || fail "$1: exit $st, want 4"
  grep -q "is damaged.*mittari salvage -c $T/plain" "$T/agent.log" || fail "$1: no advice"
  ! grep -q "Unknown error" "$T/agent.log" || fail "$1: Unknown error"
  cmp -s "$T/data/mittari.db" "$T/before.db" || fail "$1: the damaged file was written"
  ok "$1: exit 4 with the advice, file unchanged"
}

conf "$T/plain"
make_log
n=$(sqlite3 "$T/data/mittari.db" "SELECT count(*) FROM dbstat WHERE name='readings' AND pagetype='leaf'")
[ "$n" -gt 100 ] || fail "log too small: $n leaves"
gen=$(sqlite3 "$T/data/mittari.db" "SELECT value FROM meta WHERE key='generation'")

# 1. garbage in the middle, at start: noticed by the check after start
garble "$T/data/mittari.db" "$(leaf $((n / 2)))" "$(leaf $((n / 3)))"
expect_damage_exit "garbage in the middle"
grep -q "quick_check" "$T/agent.log" || fail "middle damage not from the check after start"
# what it committed (into the WAL) before the check was through counts too
last=$(sqlite3 "$T/data/mittari.db" "SELECT max(seq) FROM readings")

# 2. salvage, then run again with a file output: every reading once
"$MITTARI" salvage -c "$T/plain" "${P[@]}" >"$T/salvage.out" 2>&1 || fail "salvage: exit $?"
cat "$T/salvage.out"
grep -q "generation $gen kept; numbering goes on after seq $last" "$T/salvage.out" ||
  fail "salvage did not keep the numbering"
[ "$(grep -c "could not read: seq" "$T/salvage.out")" = 2 ] || fail "salvage: not two gaps"
ls "$T"/data/mittari.db.damaged-* >/dev/null || fail "damaged files not moved aside"
conf "$T/out" "$T/out/readings.jsonl"
start_agent "$T/out"
wait_for 20 grep -q "the log passed its check" "$T/agent.log" || fail "salvaged log not intact"
sleep 1
stop_agent TERM
[ "$AGENT_STATUS" = 0 ] || fail "after salvage: exit $AGENT_STATUS"
check_file_matches_db "$T/data/mittari.db" "$T/out/readings.jsonl" || fail "output after salvage"
python3 - "$T/out/readings.jsonl" "$gen" "$last" <<'PY' || fail "numbering after salvage"
import json, sys
path, gen, last = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
seen = set()
newer = 0
for line in open(path):
    r = json.loads(line)
    key = (r["gen"], r["seq"])
    if key in seen:
        sys.exit(f"{key} twice")
    seen.add(key)
    if r["gen"] != gen:
        sys.exit(f"generation {r['gen']}, want {gen}")
    newer += r["seq"] > last
if not newer:
    sys.exit("no reading after the salvage")
print(f"{len(seen)} readings, generation kept, {newer} numbered after {last}")
PY
ok "salvage: numbering and generation kept, every reading once"

# 3. garbage in the last pages, at start: met when the writer loads
conf "$T/plain"
make_log
garble "$T/data/mittari.db" "$(leaf 0)" "$(leaf 1)"
expect_damage_exit "garbage in the last pages"

# 4. a truncated file
make_log
pages=$(sqlite3 "$T/data/mittari.db" "PRAGMA page_count")
truncate -s $((pages / 2 * 4096)) "$T/data/mittari.db"
expect_damage_exit "truncated file"
"$MITTARI" salvage -c "$T/plain" "${P[@]}" >"$T/salvage.out" 2>&1 || fail "salvage truncated: exit $?"
grep -q "generation of its own" "$T/salvage.out" || fail "truncated: generation kept without its numbering"

# 5. while running: an output reads old rows through damage made after the
#    check after start; the agent stops with 4 instead of retrying forever
make_log
# a file where the output's directory should be: the output waits, retrying
touch "$T/late-out"
conf "$T/late" "$T/late-out/readings.jsonl"
start_agent "$T/late"
wait_for 20 grep -q "the log passed its check" "$T/agent.log" || fail "running: check"
sleep 1
garble "$T/data/mittari.db" "$(leaf $((n / 2)))"
rm "$T/late-out" # now the output can open its file and read from seq 1
wait_for 30 sh -c "! kill -0 $AGENT_PID 2>/dev/null" || fail "running: the agent went on"
wait "$AGENT_PID"; st=$?; AGENT_PID=
[ "$st" = 4 ] || fail "running: exit $st, want 4"
grep -q "output archive: cannot read the log" "$T/agent.log" || fail "running: not met by the output"
grep -q "mittari salvage -c $T/late" "$T/agent.log" || fail "running: no advice"
ok "damage met by an output while running: exit 4"
