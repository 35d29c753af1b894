#!/bin/bash
# Under load, kill -9 the agent at 30 random moments and restart it. After
# the last (graceful) run the output holds every reading the log committed,
# seq 1..max without a gap or a duplicate, and the database is intact.
. "$(dirname "$0")/lib.sh"

mkdir -p "$T/conf"
cat >"$T/conf/10.yaml" <<YAML
agent:
  site: it-crash
  data_dir: $T/data
  stats_interval: 0
inputs:
  sim:
    plugin: sim
    rate: 20000
    opening_hours: "00:00-24:00"
    card_share: 0.1
    poll_interval: 20ms
outputs:
  archive:
    type: file
    path: $T/out/readings.jsonl
    max_size: 256KiB
    max_files: 1000
YAML

RANDOM=$$
for i in $(seq 1 30); do
  start_agent "$T/conf"
  # 0.2 .. 1.5 s: sometimes mid-start, mostly mid-commit and mid-write
  sleep "$(printf '0.%03d' $((RANDOM % 1000)))"
  sleep "0.$((2 + RANDOM % 5))"
  kill -9 "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null; AGENT_PID=
done
start_agent "$T/conf"
sleep 2
stop_agent TERM
[ "$AGENT_STATUS" = 0 ] || fail "last run: exit status $AGENT_STATUS"

integrity=$(sqlite3 "$T/data/mittari.db" "pragma integrity_check")
[ "$integrity" = ok ] || fail "integrity_check: $integrity"

python3 - "$T/data/mittari.db" "$T/out/readings.jsonl" <<'PY' || fail "output does not hold the log exactly"
import glob, json, sqlite3, sys
db, current = sys.argv[1], sys.argv[2]
# the rotated files (path.N, the highest N is the oldest), then the current one
rotated = sorted(glob.glob(current + ".*"), key=lambda p: int(p.rsplit(".", 1)[1]), reverse=True)
files = rotated + [current]
con = sqlite3.connect(db)
rows = {r[0]: r[1:] for r in con.execute("select seq, series, value from readings")}
last = con.execute("select max(seq) from readings").fetchone()[0]
seqs = []
for path in files:
    with open(path) as f:
        for line in f:
            if not line.endswith("\n"):
                sys.exit(f"partial line in {path}")
            rec = json.loads(line)
            seqs.append(rec["seq"])
            if rec["seq"] in rows and rows[rec["seq"]][1] != rec["value"]:
                sys.exit(f"seq {rec['seq']}: value differs")
if len(seqs) != len(set(seqs)):
    dup = [s for s in set(seqs) if seqs.count(s) > 1][:5]
    sys.exit(f"duplicates: {dup}")
if sorted(seqs) != list(range(1, last + 1)):
    missing = sorted(set(range(1, last + 1)) - set(seqs))
    sys.exit(f"gap: {len(missing)} of 1..{last} missing, first {missing[:5]}")
if seqs != sorted(seqs):
    sys.exit("out of order")
print(f"{last} readings over {len(files)} files, no gap, no duplicate")
PY
ok "30 kill -9 restarts: output complete and exact, database intact"
