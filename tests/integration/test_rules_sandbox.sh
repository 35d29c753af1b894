#!/bin/bash
# Faulty and hostile rules are contained: an endless loop, a memory bomb, a
# runtime error, and attempts to reach io, os, debug, require, load and
# bytecode, in `mittari rule test` (each reported at its script line, the
# other readings still replayed) and in the running agent (it keeps
# running, a good rule beside them keeps producing, errors are counted in
# the statistics line, pause_after pauses). And a reload to another
# state_version starts the rule afresh, logged.
. "$(dirname "$0")/lib.sh"
mkdir -p "$T/conf" "$T/s"

cat >"$T/s/hostile.lua" <<'LUA'
local n = 0
function on_reading(r)
  n = n + 1
  if n == 1 then while true do end end
  if n == 2 then local s = "x" for i = 1, 64 do s = s .. s end end
  if n == 3 then return r.nothing.here end
  if n == 4 then return io.open("/etc/passwd") end
  if n == 5 then return os.execute("touch /tmp/mittari-pwned") end
  if n == 6 then return debug.getinfo(1) end
  if n == 7 then return require("io") end
  if n == 8 then return load("return 1") end
  if n == 9 then return string.dump(on_reading) end
  if n == 10 then return dofile("/etc/passwd") end
  if n == 11 then local co = coroutine.create(print) end
  if n == 12 then setmetatable({}, {__gc = function() while true do end end}) end
  emit { metric = "survived", value = n }
end
LUA
printf 'ts,metric,value\n' >"$T/in.csv"
for i in $(seq 1 14); do echo "2026-05-04T10:$(printf %02d $i):00Z,m,$i" >>"$T/in.csv"; done
"$MITTARI" rule test "$T/s/hostile.lua" --input "$T/in.csv" --format csv >"$T/out.csv" 2>"$T/err"; st=$?
[ $st = 1 ] || { cat "$T/err"; fail "rule test: exit $st, expected 1 (calls failed)"; }
for want in "hostile.lua:4: instruction budget of 1000000 exhausted" \
            "hostile.lua:5: not enough memory (memory cap 16384 KiB)" \
            "hostile.lua:6: attempt to index a nil value (field 'nothing')" \
            "hostile.lua:7: attempt to index a nil value (global 'io')" \
            "hostile.lua:8: attempt to index a nil value (global 'os')" \
            "hostile.lua:9: attempt to index a nil value (global 'debug')" \
            "hostile.lua:10: attempt to call a nil value (global 'require')" \
            "hostile.lua:11: attempt to call a nil value (global 'load')" \
            "hostile.lua:12: attempt to call a nil value (field 'dump')" \
            "hostile.lua:13: attempt to call a nil value (global 'dofile')" \
            "hostile.lua:14: attempt to index a nil value (global 'coroutine')" \
            "hostile.lua:15: __gc metamethods are not allowed"; do
    grep -qF "$want" "$T/err" || { cat "$T/err"; fail "rule test did not report: $want"; }
done
[ ! -e /tmp/mittari-pwned ] || fail "os.execute ran"
# the two readings after the attacks were replayed
[ "$(grep -c ',survived,' "$T/out.csv")" = 2 ] || fail "the replay did not go on after the errors"
grep -q "12 errors" "$T/err" || fail "summary: $(tail -1 "$T/err")"
# a compiled chunk is refused as a script
printf '\033LuaT\000' >"$T/s/bytecode.lua"
"$MITTARI" rule test "$T/s/bytecode.lua" --input "$T/in.csv" 2>"$T/err"; st=$?
[ $st = 3 ] && grep -q "bytecode is refused" "$T/err" || fail "bytecode: exit $st, $(cat "$T/err")"
ok "rule test contains and reports every attack at its line"

# in the agent: three hostile rules and a good one, under load
cat >"$T/s/loop.lua" <<'LUA'
function on_reading(r)
  while true do end
end
LUA
cat >"$T/s/bomb.lua" <<'LUA'
local hoard = {}
function on_reading(r)
  hoard[#hoard + 1] = ("y"):rep(65536) .. r.ts
end
LUA
cat >"$T/s/err.lua" <<'LUA'
function on_reading(r)
  local t = nil
  return t.x
end
LUA
cat >"$T/s/good.lua" <<'LUA'
state_version = 1
state.n = state.n or 0
function on_reading(r)
  state.n = state.n + 1
  emit { metric = "seen", value = state.n }
end
LUA
cat >"$T/conf/10.yaml" <<YAML
agent:
  site: it-rsand
  data_dir: $T/data
  stats_interval: 1s
inputs:
  sim:
    plugin: sim
    rate: 200
    opening_hours: "00:00-24:00"
rules:
  loop:
    script: ../s/loop.lua
    pause_after: 3
  bomb:
    script: ../s/bomb.lua
    memory: 1MiB
  err:
    script: ../s/err.lua
  good:
    script: ../s/good.lua
YAML
start_agent "$T/conf"
wait_for 20 grep -q "rule good: read [1-9]" "$T/agent.log" || fail "no statistics line with the rules"
sleep 1.5
kill -0 "$AGENT_PID" || fail "the agent died"
grep -q "loop.lua:2: instruction budget of 1000000 exhausted" "$T/agent.log" || fail "loop not reported"
grep -q "bomb.lua:3: not enough memory (memory cap 1024 KiB)" "$T/agent.log" || fail "bomb not reported"
grep -q "err.lua:3: attempt to index a nil value (local 't')" "$T/agent.log" || fail "error not reported"
grep -q "rule loop: 3 calls in a row failed .*paused" "$T/agent.log" || fail "loop not paused"
line=$(grep "stats:" "$T/agent.log" | tail -1)
echo "$line" | grep -q "rule loop: read 3, .*errors 3 (limits 3, memory 0), cursor [0-9]*, PAUSED" || fail "stats line: $line"
echo "$line" | grep -qE "rule err: read [0-9]+, .*errors [1-9]" || fail "stats line (err): $line"
echo "$line" | grep -qE "rule bomb: read [0-9]+, .*errors [1-9][0-9]* \(limits 0, memory [1-9]" || fail "stats line (bomb): $line"
# the error is logged once, then counted: not a line per reading
n=$(grep -c "err.lua:3" "$T/agent.log")
[ "$n" -le 3 ] || fail "the same error logged $n times"
seen=$(sqlite3 "$T/data/mittari.db" "select count(*) from readings r join series s on s.id = r.series where s.origin = 'good'")
[ "$seen" -gt 100 ] || fail "the good rule emitted only $seen readings"

# a new state_version: the good rule starts afresh (logged); the same
# version keeps its count
sed -i 's/^state_version = 1/state_version = 2/' "$T/s/good.lua"
kill -HUP "$AGENT_PID"
wait_for 20 grep -q "rule good: the script declares state_version 2, the saved state is version 1: starting afresh" "$T/agent.log" || fail "no afresh notice"
sleep 1
stop_agent TERM
[ "$AGENT_STATUS" = 0 ] || fail "exit status $AGENT_STATUS"
python3 - "$T/data/mittari.db" <<'PY' || fail "the good rule's numbering"
import sqlite3, sys
v = [int(r[0]) for r in sqlite3.connect(sys.argv[1]).execute(
    "select r.value from readings r join series s on s.id = r.series where s.origin = 'good' order by r.seq")]
# 1, 2, ..., k, then afresh 1, 2, ...: one restart of the count, no gap, no repeat
restarts = [i for i in range(1, len(v)) if v[i] != v[i - 1] + 1]
if len(restarts) != 1 or v[restarts[0]] != 1 or v[0] != 1:
    sys.exit(f"numbering restarts at {restarts[:5]}: {v[:3]}...")
print(f"{len(v)} readings, afresh once at {restarts[0]}")
PY
ok "the agent contains faulty rules, counts and pauses them, and keeps running"
