#!/bin/bash
# The feedback plugin in the real agent: a serial smiley terminal on a pty
# and a keyboard-wedge one read as evdev records from a FIFO (no uinput
# here; the FIFO stands in for /dev/input/event*), both played by
# tests/devsim. Every press is one event reading with its score; unknown
# keys are counted, never scored; the serial one survives an unplug.
. "$(dirname "$0")/lib.sh"
. "$SOURCE_DIR/tests/devsim/simlib.sh"

mkdir -p "$T/conf"
cat >"$T/conf/a.yaml" <<YAML
agent:
  site: it-feedback
  data_dir: $T/data
  stats_interval: 1s
inputs:
  lobby:
    plugin: feedback
    port: $T/ttySmiley
    reopen_interval: 200ms
    buttons:
      - {key: '1', score: 1, label: very_unhappy}
      - {key: '2', score: 2}
      - {key: '3', score: 3}
      - {key: '4', score: 4, label: very_happy}
  exit:
    plugin: feedback
    backend: evdev
    port: $T/event-kbd
    reopen_interval: 200ms
outputs:
  f:
    type: file
    path: $T/out/readings.jsonl
YAML
"$MITTARI" check -c "$T/conf" --plugin-dir "$BUILD_DIR/plugins" >/dev/null || fail "config does not check"

sim_start smiley --link "$T/ttySmiley"
sim_start keypad --fifo "$T/event-kbd"
start_agent "$T/conf"
rows() { [ -f "$T/data/mittari.db" ] && [ "$(db_count "$T/data/mittari.db")" -ge "$1" ]; }

sim smiley 'send 4\r\n4312x'
sim keypad 'keys 3'
sim keypad 'keys 4'
wait_for 10 rows 7 || fail "presses missing"
sim smiley unplug
wait_for 10 grep -q "input feedback\[lobby\]: instance down" "$T/agent.log" || fail "unplug not reported"
sim smiley plug
wait_for 10 grep -q "input feedback\[lobby\]: instance up" "$T/agent.log" || fail "replug not reported"
sim smiley 'send 1'
wait_for 10 rows 8 || fail "no press after the replug"
wait_for 5 grep -q "unknown_keys 1" "$T/agent.log" || fail "unknown key not counted"
stop_agent TERM
[ "$AGENT_STATUS" = 0 ] || fail "agent exit $AGENT_STATUS"

got=$(sqlite3 "$T/data/mittari.db" "select s.device || ':' || s.metric || ':' || s.kind || ':' ||
  group_concat(cast(r.value as int), ',') from readings r join series s on s.id = r.series
  group by s.device, s.metric, s.kind order by s.device" | tr '\n' ' ')
# kind 4 = event; lobby's scores in press order, exit's from KEY_3, KEY_4
want="exit:feedback:4:3,4 lobby:feedback:4:4,4,3,1,2,1 "
[ "$got" = "$want" ] || fail "readings: $got, want $want"
tags=$(sqlite3 "$T/data/mittari.db" "select count(*) from series where tags like '%very_happy%'")
[ "$tags" = 1 ] || fail "button label tag missing"
grep -q "input feedback\[exit\]: not an evdev device" "$T/agent.log" || fail "no notice that the FIFO cannot be grabbed"
check_file_matches_db "$T/data/mittari.db" "$T/out/readings.jsonl" >/dev/null || fail "file output"
ok "feedback terminals: serial and evdev presses scored, unknown keys counted, replug"
