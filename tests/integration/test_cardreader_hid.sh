#!/bin/bash
# cardreader, hid backend, with the real agent: a keyboard-wedge reader's
# evdev stream (struct input_event records, as a USB reader sends them)
# through a FIFO, which stands in for /dev/input/event* here: there is no
# uinput on these machines, and EVIOCGRAB fails on a FIFO (ENOTTY), so the
# plugin says it reads without the grab and goes on. Main-row and keypad
# digits, a card typed twice is one check-in, typing that is no card is
# counted, and a device that goes away is reopened.
. "$(dirname "$0")/lib.sh"
. "$SOURCE_DIR/plugins/cardreader/testdata/it.sh"

conf_base
mkfifo "$T/event-kbd"
cat >"$T/conf/20-in.yaml" <<YAML
inputs:
  museum-desk:
    plugin: cardreader
    backend: hid
    evdev: $T/event-kbd
    id_format: em4100-dec
    debounce: 3s
    reopen_interval: 200ms
    service: museum
YAML
start_agent "$T/conf"
sim_start kbd evdev "$T/event-kbd"
sim_ready kbd
wait_for 10 grep -q "not an evdev device.*not grabbed" "$T/agent.log" || fail "no notice about the grab"

sim kbd type 0013961168
want_readings 1
sim kbd typekp 0202116005
want_readings 2
ok "main-row and keypad digits"

sim kbd type 0013961168
sim kbd type hello
sim kbd type 0099112233
want_readings 3
stats_has "repeats 1"
stats_has "bad_frames 1"
ok "the same card again is one check-in; typing that is no card is counted"

sim kbd unplug
wait_for 10 grep -q "instance down: .*went away" "$T/agent.log" || fail "device gone not reported"
sim kbd plug
sim kbd type 0044556677
want_readings 4
ok "device gone and back"

stop_agent TERM
[ "$AGENT_STATUS" = 0 ] || fail "exit status $AGENT_STATUS"
check_file_matches_db "$T/data/mittari.db" "$T/out/r.jsonl" || fail "output and log differ"
[ "$(subjects museum-desk | sort -u | wc -l)" = 4 ] || fail "4 cards, not 4 subjects"
ok "hid backend"
