#!/bin/bash
# Card numbers never reach the disk or the logs, and one EM4100 card is one
# pseudonym whichever reader read it. Known cards are read through every
# serial form and the keyboard-wedge backend; then neither the database,
# its WAL, the output file nor the agent's logs (at debug level) may hold
# any of those numbers in any common encoding (decimal, hex either case,
# with or without separators, the card print, raw bytes): checked while the
# agent runs (the WAL holds the last commits) and after it stopped. The
# same card as RDM6300 frame, ID-12LA frame, printed decimal, typed decimal
# and typed hex must give one subject (the agent's canonical EM4100 form);
# different cards and key spaces must not.
. "$(dirname "$0")/lib.sh"
. "$SOURCE_DIR/plugins/cardreader/testdata/it.sh"

X=0100D507D0            # EM4100: version 01, id 0x00D507D0 = 0013961168, print "213,02000"
Y=1A9C3F5E71            # another EM4100 card
W=117,54321             # a Wiegand-26 card: facility 117, number 54321
U=04A2B3C4D5E680        # a 7-byte NFC UID
LEAK="$SOURCE_DIR/plugins/cardreader/testdata/leakcheck.py"
CARDS=(--card "em4100:$X" --card "em4100:$Y" --card "wiegand26:$W" --card "uid:$U")

# the checker itself must see a number where there is one
printf 'x 0013961168 y\n' >"$T/control"
python3 "$LEAK" "${CARDS[@]}" "$T/control" >/dev/null && fail "leakcheck misses a decimal card number"
printf 'x 00:d5:07:d0 y\n' >"$T/control"
python3 "$LEAK" "${CARDS[@]}" "$T/control" >/dev/null && fail "leakcheck misses a hex card number"

conf_base
mkfifo "$T/kbd-dec" "$T/kbd-hex"
serial() { # serial NAME FRAME ID_FORMAT
    cat <<YAML
  $1:
    plugin: cardreader
    backend: serial
    port: $T/tty-$1
    frame: $2
    id_format: $3
YAML
}
{
    echo "inputs:"
    serial rdm em4100 em4100-dec
    serial id12 em4100 em4100-dec
    serial printed line em4100-dec
    serial wiegand line wiegand26
    serial uid line uid-hex
    cat <<YAML
  wedge-dec:
    plugin: cardreader
    backend: hid
    evdev: $T/kbd-dec
    id_format: em4100-dec
  wedge-hex:
    plugin: cardreader
    backend: hid
    evdev: $T/kbd-hex
    id_format: em4100-hex
YAML
} >"$T/conf/20-in.yaml"

for s in rdm id12 printed wiegand uid; do
    sim_start "$s" pty "$T/tty-$s"
    sim_ready "$s"
done
start_agent "$T/conf"
sim_start wdec evdev "$T/kbd-dec"
sim_start whex evdev "$T/kbd-hex"
sim_ready wdec
sim_ready whex

sim rdm rdm6300 "$X"
sim rdm rdm6300 "$Y"
sim id12 id12la "$X"
sim printed line "0013961168 213,02000"
sim wiegand line "$W"
sim uid line "04:A2:B3:C4:D5:E6:80"
sim wdec type 0013961168
sim whex type "$X"
want_readings 8
for d in rdm id12 printed wiegand uid wedge-dec wedge-hex; do
    [ "$(nreadings "$d")" -ge 1 ] || fail "no reading from $d"
done
ok "8 check-ins through 7 readers"

# one card, one pseudonym, whichever reader
x=$(subjects rdm | sed -n 1p)
[ -n "$x" ] && [ "$x" != - ] || fail "no subject"
for d in id12 printed wedge-dec wedge-hex; do
    [ "$(subjects "$d")" = "$x" ] || fail "card X through $d: subject $(subjects "$d"), RDM6300 gave $x"
done
y=$(subjects rdm | sed -n 2p)
w=$(subjects wiegand)
u=$(subjects uid)
[ "$(printf '%s\n' "$x" "$y" "$w" "$u" | sort -u | wc -l)" = 4 ] || fail "different cards share a subject"
ok "one EM4100 card is one pseudonym as RDM6300, ID-12LA, printed, typed decimal and hex"

# nothing on disk or in the logs, while the WAL still holds the commits ...
ls "$T/data" | grep -q -- "-wal$" || fail "no WAL to check"
python3 "$LEAK" "${CARDS[@]}" "$T/data" "$T/out" "$T/agent.log" "$T/agent.out" ||
    fail "a card number is on disk or in a log (agent running)"
# ... and after the stop
stop_agent TERM
[ "$AGENT_STATUS" = 0 ] || fail "exit status $AGENT_STATUS"
python3 "$LEAK" "${CARDS[@]}" "$T/data" "$T/out" "$T/agent.log" "$T/agent.out" ||
    fail "a card number is on disk or in a log (agent stopped)"
check_file_matches_db "$T/data/mittari.db" "$T/out/r.jsonl" || fail "output and log differ"
ok "no card number on disk or in the logs"
