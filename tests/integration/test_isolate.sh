#!/bin/bash
# Issue 13: `isolate: true`. Two isolated crashy inputs, one crashing in
# its poll work (with a raw card number on every reading), one in a timer
# callback, beside an in-process sim. The agent keeps running; each crash
# is logged with the instance, counted and shown in the statistics line as
# the instance down with the reason; the processes are restarted after
# 1, 2, 4 s; sim keeps storing every second; every reading a crashy
# process emitted (its log says "emitted N" after each emit that returned
# 0, then it crashes) is in the log exactly once, numbers 1..N per process
# with no gap and no double; the raw card number is in no file and no log
# line. Then: mittari check of the option, a reload that replaces a
# process, a stop that leaves none, and a killed agent whose processes
# follow it.
. "$(dirname "$0")/lib.sh"
: "${TEST_PLUGIN_DIR:?run through ctest}"
CARD=0013961168

write_conf() { # extra lines for boom
  mkdir -p "$T/conf"
  cat >"$T/conf/10.yaml" <<YAML
agent:
  site: it-isolate
  data_dir: $T/data
  stats_interval: 1s
  shutdown_timeout: 3s
  plugin_path: $TEST_PLUGIN_DIR
inputs:
  boom:
    plugin: crashy
    crash_in: poll
    crash_after: 5
    card: "$CARD"
    report: true
    isolate: true
$1
  tick:
    plugin: crashy
    crash_in: timer
    crash_after: 3
    interval: 30ms
    isolate: true
  lobby:
    plugin: sim
    rate: 100
    opening_hours: "00:00-24:00"
YAML
}

write_conf ""
out=$("$MITTARI" check -c "$T/conf" --plugin-dir "$BUILD_DIR/plugins") || fail "check: $out"
echo "$out" | grep -q "ok (site it-isolate, 3 inputs" || fail "check said: $out"
sed 's/    isolate: true/    isolate: maybe/' "$T/conf/10.yaml" >"$T/bad.yaml"
"$MITTARI" check -c "$T/bad.yaml" --plugin-dir "$BUILD_DIR/plugins" 2>"$T/check.err" &&
  fail "check took isolate: maybe"
grep -q "bad.yaml:[0-9]*:[0-9]*: error: 'isolate' of input 'boom' (plugin crashy): 'maybe' is not a boolean" \
  "$T/check.err" || fail "check's message: $(cat "$T/check.err")"
ok "mittari check: isolate is an option of every input, a boolean"

start_agent "$T/conf"
t0=$(date +%s)
wait_for 20 grep -q "input crashy\[boom\]: its process (pid [0-9]*) crashed: SIGSEGV (address not mapped, at 0x0) in the plugin's poll work; a new process in 4 s (restart 3)" \
  "$T/agent.log" || fail "boom did not crash three times"
t_crash3=$(date +%s.%N)
restarted() { grep -A1000 "input crashy\[boom\]: .*(restart 3)" "$T/agent.log" | grep -q "input crashy\[boom\]: isolated: its plugin runs in process"; }
wait_for 10 restarted || fail "boom was not restarted a third time"
t_spawn4=$(date +%s.%N)
waited=$(awk "BEGIN { printf \"%.1f\", $t_spawn4 - $t_crash3 }")
awk "BEGIN { exit !($waited > 3.5) }" || fail "the third restart came after $waited s, not 4 s"
kill -0 "$AGENT_PID" || fail "the agent died"
for d in 1 2; do
  grep -q "input crashy\[boom\]: its process (pid [0-9]*) crashed: .*; a new process in $d s (restart $d)" \
    "$T/agent.log" || fail "no restart $d after $d s"
done
grep -q "input crashy\[tick\]: its process (pid [0-9]*) crashed: SIGSEGV (address not mapped, at 0x0) in the plugin's timer callback; a new process in 1 s (restart 1)" \
  "$T/agent.log" || fail "tick's crash in its timer callback"
grep -q "input crashy\[boom\]: crashed: SIGSEGV (address not mapped, at 0x0) in the plugin's poll work (plugin crashy, $TEST_PLUGIN_DIR/crashy.so); its process ends" \
  "$T/agent.log" || fail "the process's own crash report did not reach the log"
wait_for 5 grep -qE "stats: .*input crashy\[boom\] emitted [0-9]+; instance down \(process crashed: SIGSEGV \(address not mapped, at 0x0\) in the plugin's poll work; restart [0-9]+ in [0-9]+ s\); ticks [0-9]+; crashes [0-9]+; probe degraded \(probe reports in\); isolated \(" \
  "$T/agent.log" || fail "the statistics line does not show boom down with the reason and counters"
ok "crashes logged, counted and shown; restarts after 1, 2, 4 s ($waited s)"

# a reload that changes boom replaces its process; tick and lobby go on
old=$(grep -o "input crashy\[boom\]: isolated: its plugin runs in process [0-9]*" "$T/agent.log" | tail -1 | grep -o "[0-9]*$")
write_conf "    interval: 25ms"
kill -HUP "$AGENT_PID"
wait_for 10 grep -q "configuration reloaded: 3 inputs" "$T/agent.log" || fail "no reload"
wait_for 10 bash -c "! kill -0 $old 2>/dev/null" || fail "the replaced process $old is still there"
sleep 1.2
stop_agent TERM
t1=$(date +%s)
[ "$AGENT_STATUS" = 0 ] || fail "stop: status $AGENT_STATUS"
ok "a reload replaced boom's process $old; the agent stopped with status 0"

# nothing emitted is lost or doubled: per process 1..N, N = its last "emitted"
python3 - "$T/agent.log" "$T/data/mittari.db" <<'PY' || fail "crashy readings lost or doubled"
import re, sqlite3, sys
log, db = sys.argv[1], sys.argv[2]
pid = {}        # instance -> its current process
last = {}       # process -> last "emitted N"
for line in open(log):
    m = re.search(r"input crashy\[(\w+)\]: isolated: its plugin runs in process (\d+)", line)
    if m:
        pid[m.group(1)] = m.group(2)
        last.setdefault(m.group(2), 0)
        continue
    m = re.search(r"input crashy\[(\w+)\]: emitted (\d+)$", line)
    if m:
        last[pid[m.group(1)]] = int(m.group(2))
con = sqlite3.connect(db)
got = {}
for dev, v in con.execute("select s.device, r.value from readings r join series s on s.id = r.series where s.metric = 'seq'"):
    got.setdefault(dev[1:], []).append(int(v))
crashed = 0
for p, n in last.items():
    vals = sorted(got.get(p, []))
    if vals != list(range(1, n + 1)):
        sys.exit(f"process {p}: logged up to {n}, stored {vals}")
    crashed += n in (3, 5)
extra = set(got) - set(last)
if extra:
    sys.exit(f"readings of processes the log never named: {extra}")
if crashed < 5:
    sys.exit(f"only {crashed} processes emitted up to their crash")
print(f"{len(last)} processes, {sum(last.values())} numbered readings, each exactly once")
PY
ok "every reading a crashy process emitted is stored exactly once"

# sim stored in every second the crashes went on
gaps=$(sqlite3 "$T/data/mittari.db" "with s(sec) as (select distinct r.ts / 1000000 from readings r join series s on s.id = r.series where s.metric in ('visitors_in', 'visitors_out', 'checkin')) select count(*) from s where sec between $((t0 + 1)) and $((t1 - 2))")
[ "$gaps" -ge $((t1 - 2 - t0)) ] || fail "sim stored in only $gaps of the $((t1 - 2 - t0)) seconds"
ok "sim stored in each of the $gaps seconds"

# the raw card number: pseudonymised by the agent, in no file, no line
subj=$(sqlite3 "$T/data/mittari.db" "select count(distinct r.subject) from readings r join series s on s.id = r.series where s.metric = 'seq'")
[ "$subj" = 1 ] || fail "seq readings carry $subj pseudonyms, want 1"
grep -rqa "$CARD" "$T/data" "$T/agent.log" "$T/agent.out" && fail "the raw card number reached a file"
ok "the raw card number reached no file"

# every process gone after the stop
for p in $(grep -o "its plugin runs in process [0-9]*" "$T/agent.log" | grep -o "[0-9]*$"); do
  kill -0 "$p" 2>/dev/null && fail "process $p outlived the agent's stop"
done
ok "no isolated process outlived the stop"

# a killed agent takes its processes along (PR_SET_PDEATHSIG)
: >"$T/agent.log"
start_agent "$T/conf"
wait_for 10 grep -q "input crashy\[tick\]: isolated: its plugin runs in process" "$T/agent.log" || fail "no start"
p=$(grep -o "input crashy\[tick\]: isolated: its plugin runs in process [0-9]*" "$T/agent.log" | head -1 | grep -o "[0-9]*$")
kill -9 "$AGENT_PID"
wait "$AGENT_PID" 2>/dev/null
AGENT_PID=
wait_for 5 bash -c "! kill -0 $p 2>/dev/null" || fail "process $p outlived a killed agent"
ok "a killed agent's isolated process ends with it"
