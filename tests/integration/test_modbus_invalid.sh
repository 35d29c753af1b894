#!/bin/bash
# Issue 8, section 7: whatever the modbus plugin's create() would refuse,
# `mittari check` refuses first, and `mittari run` and a reload refuse the
# same way. Table-driven: each file of tests/modbus/invalid/ is one invalid
# case, its first line "# expect: TEXT" (the corpus format of
# tests/configs/broken/, so the cases can join a harness for every plugin).
# For each:
#   check  exit 3, a FILE:LINE:COL: error line with TEXT;
#   run    exit 3 before starting anything (no log database), TEXT on stderr;
#   reload an agent running a good configuration gets the case on SIGHUP:
#          it logs TEXT, keeps the running configuration (its device keeps
#          being polled) and stops cleanly.
. "$(dirname "$0")/lib.sh"
. "$SOURCE_DIR/tests/modbus/simlib.sh"

CASES="$SOURCE_DIR/tests/modbus/invalid"
n=0
for f in "$CASES"/*.yaml; do
  name=$(basename "$f" .yaml)
  expect=$(head -1 "$f" | sed -n 's/^# expect: //p')
  [ -n "$expect" ] || fail "$name: first line is not '# expect: TEXT'"

  "$MITTARI" check -c "$f" --plugin-dir "$BUILD_DIR/plugins" >"$T/out" 2>"$T/err"
  rc=$?
  [ $rc = 3 ] || fail "$name: check exit $rc, expected 3: $(cat "$T/err")"
  grep -E "^$f:[0-9]+:[0-9]+: error: " "$T/err" | grep -qF -- "$expect" ||
    fail "$name: check did not say '$expect' at a file:line: $(cat "$T/err")"

  # the case's agent section has no data_dir: a file before it gives one
  # (files merge in name order), so a run that wrongly starts leaves a
  # database behind
  mkdir -p "$T/run-$name"
  printf 'agent:\n  data_dir: %s\n' "$T/run-$name/data" >"$T/run-$name/00.yaml"
  cp "$f" "$T/run-$name/10.yaml"
  timeout 20 "$MITTARI" run -c "$T/run-$name" --plugin-dir "$BUILD_DIR/plugins" >"$T/out" 2>"$T/err"
  rc=$?
  [ $rc = 3 ] || fail "$name: run exit $rc, expected 3: $(cat "$T/err")"
  grep -qF -- "$expect" "$T/err" || fail "$name: run did not say '$expect': $(cat "$T/err")"
  [ ! -e "$T/run-$name/data/mittari.db" ] || fail "$name: run started before refusing"
  n=$((n + 1))
done
[ $n -ge 20 ] || fail "only $n cases in $CASES"

# a reload to each case: refused, the running configuration keeps polling
cat >"$T/spec" <<'SPEC'
tcp live
counter live fn=holding addr=0 type=u16 start=0 step=1
SPEC
start_sim "$T/spec"
mkdir -p "$T/conf"
printf 'agent:\n  data_dir: %s\n' "$T/data" >"$T/conf/00.yaml"
good() {
  cat >"$T/conf/10.yaml" <<YAML
agent:
  site: kuusamo-library
inputs:
  doors:
    plugin: modbus
    devices:
      - {name: live, host: 127.0.0.1, port: $(sim_get "dev['live']['port']"), poll_interval: 200ms,
         registers: [{metric: visitors, address: 0, kind: cumulative}]}
YAML
}
# the log from line $1 on says a reload was refused
refused_since() { tail -n +"$1" "$T/agent.log" | grep -q "keeping the running one"; }
good
start_agent "$T/conf"
sim_until 10 "dev['live']['received'] > 0" || fail "the good configuration did not poll"
for f in "$CASES"/*.yaml; do
  name=$(basename "$f" .yaml)
  expect=$(head -1 "$f" | sed -n 's/^# expect: //p')
  cp "$f" "$T/conf/10.yaml"
  from=$(($(wc -l <"$T/agent.log") + 1))
  kill -HUP "$AGENT_PID"
  wait_for 10 refused_since "$from" || fail "$name: reload not refused"
  tail -n +"$from" "$T/agent.log" | grep -qF -- "$expect" ||
    fail "$name: the reload did not say '$expect'"
done
rx=$(sim_get "dev['live']['received']")
sim_until 10 "dev['live']['received'] > $rx + 3" || fail "polling stopped after refused reloads"
stop_agent TERM
[ "$AGENT_STATUS" = 0 ] || fail "agent exit status $AGENT_STATUS"
ok "$n invalid Modbus configurations refused by check, run and reload alike"
