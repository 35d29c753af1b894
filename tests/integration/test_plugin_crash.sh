#!/bin/bash
# Issue 13: a plugin that crashes inside the agent is named. The crashy
# test plugin dereferences NULL in its poll work (a worker thread) and in a
# timer callback (the loop), and aborts: each time the journal gets one
# line in the agent's log format naming the instance, the plugin, its file,
# the signal and the callback, and the agent exits with status 5 (mittari
# check as well, for a crash in the plugin's check()). The next
# start holds that input back while the others run; a crash marker older
# than an hour holds nothing back. A fatal signal outside plugin code is
# reported as the agent's own and takes its default course.
#
# Under the sanitizers: their SEGV handler would turn the agent's own
# SIGSEGV (the last case) into their report and exit status; the test
# wants the default course, so ASan is told not to handle SIGSEGV here
# (handle_segv=0). A crash in plugin code is ours to report either way:
# our handler replaces theirs for it.
. "$(dirname "$0")/lib.sh"
: "${TEST_PLUGIN_DIR:?run through ctest}"
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}handle_segv=0"
unset JOURNAL_STREAM

conf() { # NAME LINES...: $T/NAME.yaml, with the test plugins on the path
  local name=$1
  shift
  {
    printf 'agent:\n  site: it-crash\n  data_dir: %s\n  stats_interval: 1s\n' "$T/data"
    printf '  plugin_path: %s\ninputs:\n' "$TEST_PLUGIN_DIR"
    printf '%s\n' "$@"
  } >"$T/$name.yaml"
}

run_until_exit() { # CONF LOG: runs the agent to its end (at most 60 s); sets STATUS
  timeout 60 "$MITTARI" run -c "$1" --plugin-dir "$BUILD_DIR/plugins" >/dev/null 2>"$2"
  STATUS=$?
}

# 1. NULL in the poll's work, on a worker thread: named, status 5, in the
#    format of every other line (a UTC time and the level)
conf c1 "  boom:" "    plugin: crashy" "    crash_in: poll" "    crash_after: 5"
run_until_exit "$T/c1.yaml" "$T/agent1.log"
[ "$STATUS" = 5 ] || fail "poll crash: exit status $STATUS, want 5"
line=$(grep "crashed:" "$T/agent1.log")
echo "$line" | grep -qE "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z crit input crashy\[boom\]: crashed: SIGSEGV \(address not mapped, at 0x0\) in the plugin's poll work \(plugin crashy, $TEST_PLUGIN_DIR/crashy.so\); mittari exits with status 5" ||
  fail "poll crash line: $line"
grep -q "emitted 5" "$T/agent1.log" || fail "the readings before the crash were not logged"
bad=$(grep -vcE "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z (crit|err|warning|notice|info|debug) " "$T/agent1.log")
[ "$bad" = 0 ] || fail "$bad lines are not in the log format"
grep -q "^instance=boom$" "$T/data/plugin-crash" && grep -q "^count=1$" "$T/data/plugin-crash" ||
  fail "no crash marker: $(cat "$T/data/plugin-crash" 2>&1)"
ok "a NULL dereference in poll work: named, exit 5"

# 2. the same in a timer callback (the loop thread), as journald reads it
rm -rf "$T/data"
conf c2 "  tick:" "    plugin: crashy" "    crash_in: timer" "    crash_after: 3"
JOURNAL_STREAM=8:1234 run_until_exit "$T/c2.yaml" "$T/agent2.log"
[ "$STATUS" = 5 ] || fail "timer crash: exit status $STATUS, want 5"
grep -qE "^<2>input crashy\[tick\]: crashed: SIGSEGV \(address not mapped, at 0x0\) in the plugin's timer callback \(plugin crashy, " \
  "$T/agent2.log" || fail "timer crash line: $(grep crashed "$T/agent2.log")"
bad=$(grep -vcE "^<[2-7]>[a-z]" "$T/agent2.log")
[ "$bad" = 0 ] || fail "$bad lines without a syslog priority"
ok "a NULL dereference in a timer callback: named with priority <2>, exit 5"

# 3. abort() in a timer callback
rm -rf "$T/data"
conf c3 "  ab:" "    plugin: crashy" "    crash_in: abort" "    crash_after: 2"
run_until_exit "$T/c3.yaml" "$T/agent3.log"
[ "$STATUS" = 5 ] || fail "abort: exit status $STATUS, want 5"
grep -q "input crashy\[ab\]: crashed: SIGABRT (abort() called) in the plugin's timer callback" \
  "$T/agent3.log" || fail "abort line: $(grep crashed "$T/agent3.log")"
ok "abort() in plugin code: named, exit 5"

# 3b. the plugin's check(), which runs wherever the configuration is
#     checked: mittari check names it too
rm -rf "$T/data"
conf c3b "  chk:" "    plugin: crashy" "    crash_in: check"
"$MITTARI" check -c "$T/c3b.yaml" --plugin-dir "$BUILD_DIR/plugins" 2>"$T/check.log"
st=$?
[ "$st" = 5 ] || fail "check with a crashing check(): status $st, want 5"
grep -q "crit input crashy\[chk\]: crashed: SIGSEGV (address not mapped, at 0x0) in the plugin's check (plugin crashy, .*); mittari check exits with status 5" \
  "$T/check.log" || fail "check's crash line: $(cat "$T/check.log")"
ok "a crash in the plugin's check(): mittari check names it, exit 5"

# 4. the next start after a crash: the crashed input waits, the others run;
#    after its hold-back it starts and the marker goes
rm -rf "$T/data"
run_until_exit "$T/c1.yaml" "$T/agent4a.log"
[ "$STATUS" = 5 ] || fail "second crash run: $STATUS"
conf c4 "  boom:" "    plugin: crashy" "    crash_after: 0" "    interval: 50ms" \
  "  lobby:" "    plugin: sim" "    rate: 200" '    opening_hours: "00:00-24:00"'
: >"$T/agent.log"
start_agent "$T/c4.yaml"
wait_for 10 grep -q "input boom: held back for 10 s after 1 crashes in a row (SIGSEGV in its poll work); the other inputs start now" \
  "$T/agent.log" || fail "no hold-back"
grep -q "the last run ended [0-9]* s ago in a crash of input boom (plugin crashy: SIGSEGV in its poll work), 1 in a row" \
  "$T/agent.log" || fail "the last crash was not said"
wait_for 10 grep -q "input crashy\[boom\] emitted 0; instance down (held back for 10 s after 1 crashes" \
  "$T/agent.log" || fail "the statistics line does not show it held back"
sims() { sqlite3 "$T/data/mittari.db" "select count(*) from readings r join series s on s.id = r.series where s.metric <> 'seq'"; }
sims_stored() { [ "$(sims)" -gt 0 ]; }
# (stored once the first batch is committed: agent.batch_interval after it)
wait_for 8 sims_stored || fail "the other input did not store while boom was held back"
sims=$(sims)
seqs=$(sqlite3 "$T/data/mittari.db" "select count(*) from readings r join series s on s.id = r.series where s.metric = 'seq'")
[ "$seqs" = 0 ] || fail "boom emitted $seqs readings while held back"
wait_for 15 grep -q "input crashy\[boom\]: hold-back over: starting" "$T/agent.log" || fail "never started"
wait_for 5 grep -q "input crashy\[boom\]: emitted 3" "$T/agent.log" || fail "no readings after the hold-back"
[ ! -e "$T/data/plugin-crash" ] || fail "the marker stayed after the input started"
stop_agent TERM
[ "$AGENT_STATUS" = 0 ] || fail "stop after the hold-back: status $AGENT_STATUS"
ok "the next start held the crashed input back 10 s while sim stored $sims readings"

# 5. three crashes in a row: 40 s; a stop during the hold-back is clean (no
#    start, no stop, only destroy); an hour-old marker holds nothing back
now=$(date +%s)
printf 'instance=boom\nplugin=crashy\nsignal=SIGBUS\nwhat=start\ncount=3\ntime=%s\n' "$now" \
  >"$T/data/plugin-crash"
: >"$T/agent.log"
start_agent "$T/c4.yaml"
wait_for 10 grep -q "input boom: held back for 40 s after 3 crashes in a row (SIGBUS in its start)" \
  "$T/agent.log" || fail "no 40 s hold-back"
stop_agent TERM
[ "$AGENT_STATUS" = 0 ] || fail "stop during the hold-back: status $AGENT_STATUS"
printf 'instance=boom\nplugin=crashy\nsignal=SIGBUS\nwhat=start\ncount=3\ntime=%s\n' "$((now - 3700))" \
  >"$T/data/plugin-crash"
: >"$T/agent.log"
start_agent "$T/c4.yaml"
wait_for 10 grep -q "input crashy\[boom\]: emitted 2" "$T/agent.log" || fail "an old marker held it back"
grep -q "held back" "$T/agent.log" && fail "an hour-old crash held the input back"
stop_agent TERM
ok "hold-back doubles per crash in a row; a stop during it is clean; an old crash is forgotten"

# 6. the agent's own: a SIGSEGV from outside, while no plugin code runs
conf c6 "  lobby:" "    plugin: sim" "    rate: 1" '    opening_hours: "00:00-24:00"'
rm -f "$T/data/plugin-crash"
: >"$T/agent.log"
start_agent "$T/c6.yaml"
wait_for 10 grep -q "running:" "$T/agent.log" || fail "agent did not start"
kill -SEGV "$AGENT_PID"
wait "$AGENT_PID"
st=$?
AGENT_PID=
[ "$st" = 139 ] || fail "the agent's own SIGSEGV: status $st, want 139 (killed by SIGSEGV)"
grep -q "crit agent: crashed: SIGSEGV (sent by process $$) while the agent ran, not in a plugin; the signal takes its default course" \
  "$T/agent.log" || fail "own crash line: $(grep crashed "$T/agent.log")"
[ ! -e "$T/data/plugin-crash" ] || fail "the agent's own crash left a plugin crash marker"
ok "a signal outside plugin code is the agent's own: default course, status 139"
