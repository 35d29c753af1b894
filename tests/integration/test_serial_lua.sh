#!/bin/bash
# The serial plugin's Lua decoder in the real agent: binary people-counter
# frames (fixed length, sync "PC", CRC-8) from a pty played by tests/devsim,
# decoded by plugins/serial/decoders/terabee_evo.lua in the agent's sandbox.
# A bad CRC gives no reading; a decoder file that does not compile is
# refused by `mittari check` with its file and line.
. "$(dirname "$0")/lib.sh"
. "$SOURCE_DIR/tests/devsim/simlib.sh"

if ! nm "$MITTARI" 2>/dev/null | grep -q ' mt_decoder_load$'; then
  # the agent's host API gets decoder_load/run/free from agent/decoder.c
  echo "SKIP: this agent build has no Lua decoders (agent/decoder.c not linked)"
  exit 0
fi

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
  site: it-serial-lua
  data_dir: $T/data
  stats_interval: 1s
inputs:
  entrance:
    plugin: serial
    port: $T/ttyEvo
    baud: 115200
    framing: fixed
    frame_length: 11
    sync: PC
    decoder: lua
    lua: $SOURCE_DIR/plugins/serial/decoders/terabee_evo.lua
outputs:
  f:
    type: file
    path: $T/out/readings.jsonl
YAML
"$MITTARI" check -c "$T/conf" --plugin-dir "$BUILD_DIR/plugins" >/dev/null || fail "config does not check"

sim_start evo --link "$T/ttyEvo"
start_agent "$T/conf"
rows() { [ -f "$T/data/mittari.db" ] && [ "$(db_count "$T/data/mittari.db")" -ge "$1" ]; }
sim evo "hex $(frame 10 7)"     # baseline
sim evo "hex 00 13 50"          # noise, a lone 'P'
sim evo "hex $(frame 11 7 bad)" # CRC wrong: nothing
sim evo "hex $(frame 12 8)"
sim evo "hex $(frame 15 8)"
wait_for 10 rows 3 || fail "no readings from the Lua decoder"
wait_for 5 grep -q "bad_frames 1" "$T/agent.log" || fail "the bad CRC was not counted"
stop_agent TERM
[ "$AGENT_STATUS" = 0 ] || fail "agent exit $AGENT_STATUS"
sums=$(sqlite3 "$T/data/mittari.db" "select s.metric || '=' || sum(r.value) from readings r
  join series s on s.id = r.series group by s.metric order by s.metric" | tr '\n' ' ')
[ "$sums" = "visitors_in=5.0 visitors_out=1.0 " ] || fail "deltas: $sums"
grep -q "terabee_evo.lua:[0-9]*: CRC mismatch" "$T/agent.log" || fail "the script error has no file:line"

# a decoder that does not compile is a configuration error, with file:line
printf 'function decode(frame, ts)\n  return {\nend\n' >"$T/broken.lua"
sed -i "s|lua: .*|lua: $T/broken.lua|" "$T/conf/a.yaml"
"$MITTARI" check -c "$T/conf" --plugin-dir "$BUILD_DIR/plugins" >"$T/check.out" 2>&1
st=$?
[ $st = 3 ] || fail "broken decoder: check exit $st"
grep -q "broken.lua:[0-9]" "$T/check.out" || fail "broken decoder: no file:line: $(cat "$T/check.out")"
ok "serial Lua decoder: binary frames, bad CRC counted, broken script refused at check"
