#!/bin/bash
# Issue 13: a real device plugin isolated. The serial plugin with the Lua
# decoder of a binary people counter (test_serial_lua.sh's device, on a pty
# played by tests/devsim), with `isolate: true`: its fd watch on the pty,
# its decoder (the script runs on a thread of the isolated process) and its
# counters all live in the process; the readings, the decoder's file:line
# error for a bad CRC and the bad_frames counter reach the agent under the
# input's name. The same deltas as in-process.
. "$(dirname "$0")/lib.sh"
. "$SOURCE_DIR/tests/devsim/simlib.sh"

frame() { # frame IN OUT [bad]: the hex of one frame
  /usr/bin/python3 - "$@" <<'PY'
import struct, sys
n_in, n_out = int(sys.argv[1]), int(sys.argv[2])
b = b"PC" + struct.pack(">iHH", n_in - n_out, n_in, n_out)
c = 0
for x in b:
    c ^= x
    for _ in range(8):
        c = ((c << 1) ^ 0x07) & 0xFF if c & 0x80 else (c << 1) & 0xFF
if len(sys.argv) > 3:
    c ^= 0x55
print((b + bytes([c])).hex())
PY
}

mkdir -p "$T/conf"
cat >"$T/conf/a.yaml" <<YAML
agent:
  site: it-isolate-serial
  data_dir: $T/data
  stats_interval: 1s
inputs:
  entrance:
    plugin: serial
    isolate: true
    port: $T/ttyEvo
    baud: 115200
    framing: fixed
    frame_length: 11
    sync: PC
    decoder: lua
    lua: $SOURCE_DIR/plugins/serial/decoders/terabee_evo.lua
YAML
"$MITTARI" check -c "$T/conf" --plugin-dir "$BUILD_DIR/plugins" >/dev/null || fail "config does not check"

sim_start evo --link "$T/ttyEvo"
start_agent "$T/conf"
wait_for 10 grep -q "input serial\[entrance\]: isolated: its plugin runs in process" "$T/agent.log" ||
  fail "no isolated process"
pid=$(grep -o "its plugin runs in process [0-9]*" "$T/agent.log" | head -1 | grep -o "[0-9]*$")
# the pty is the process's, not the agent's
wait_for 10 bash -c "ls -l /proc/$pid/fd 2>/dev/null | grep -q pts" || fail "the process did not open the port"
ls -l "/proc/$AGENT_PID/fd" | grep -q pts && fail "the agent holds the port too"
rows() { [ -f "$T/data/mittari.db" ] && [ "$(db_count "$T/data/mittari.db")" -ge "$1" ]; }
sim evo "hex $(frame 10 7)"     # baseline
sim evo "hex 00 13 50"          # noise, a lone 'P'
sim evo "hex $(frame 11 7 bad)" # CRC wrong: nothing
sim evo "hex $(frame 12 8)"
sim evo "hex $(frame 15 8)"
wait_for 10 rows 3 || fail "no readings from the isolated Lua decoder"
wait_for 5 grep -q "input serial\[entrance\] emitted .*bad_frames 1" "$T/agent.log" ||
  fail "the bad CRC was not counted in the agent's statistics"
stop_agent TERM
[ "$AGENT_STATUS" = 0 ] || fail "agent exit $AGENT_STATUS"
sums=$(sqlite3 "$T/data/mittari.db" "select s.metric || '=' || sum(r.value) from readings r
  join series s on s.id = r.series group by s.metric order by s.metric" | tr '\n' ' ')
[ "$sums" = "visitors_in=5.0 visitors_out=1.0 " ] || fail "deltas: $sums"
grep -q "input serial\[entrance\]: .*terabee_evo.lua:[0-9]*: CRC mismatch" "$T/agent.log" ||
  fail "the decoder's error did not reach the log under the input's name"
grep -q "its process (pid $pid) .* while stopping" "$T/agent.log" && fail "the process did not stop cleanly"
ok "serial with a Lua decoder, isolated: fd watch, decoder and counters in its process, same deltas"
