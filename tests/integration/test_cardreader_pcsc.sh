#!/bin/bash
# cardreader, pcsc backend, with the real agent against a real pcscd and the
# vsmartcard-vpcd virtual reader, and a fake card of our own that speaks
# vpcd's socket protocol (tests/pcsc/fakecard.py; Debian's vicc is broken):
# card put on the reader and its UID read, card taken away and put back,
# a card held there is read once, a card that gives no UID (6A 81), a Le the
# card corrects (6C xx), a failed read (63 00), a random UID, and the reader
# gone (pcscd stopped) and back.
#
# pcscd's socket is fixed (/run/pcscd/pcscd.comm) and pcsclite clients follow
# PCSCLITE_CSOCK_NAME: so this test runs its own pcscd in a private mount
# namespace whose /run/pcscd is a directory of the test, with its own reader
# configuration and a free TCP port for vpcd. Skipped (exit 77) only when no
# pcscd can be started here.
. "$(dirname "$0")/lib.sh"
. "$SOURCE_DIR/plugins/cardreader/testdata/it.sh"

skip() {
    echo "SKIP: $*"
    exit 77
}

VPCD=/usr/lib/pcsc/drivers/serial/libifdvpcd.so
command -v pcscd >/dev/null || skip "no pcscd (apt-get install pcscd)"
[ -f "$VPCD" ] || skip "no vpcd driver (apt-get install vsmartcard-vpcd)"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$T/readers" "$T/run"
cat >"$T/readers/vpcd" <<CONF
FRIENDLYNAME "Virtual PCD"
DEVICENAME   /dev/null:$PORT
LIBPATH      $VPCD
CHANNELID    $PORT
CONF
PCSCD_PID=
SOCK="$T/run/pcscd.comm"

pcscd_start() {
    rm -f "$SOCK" "$T/run/pcscd.pid"
    unshare -m sh -c "mount -t tmpfs tmpfs /run && mkdir /run/pcscd &&
        mount --bind '$T/run' /run/pcscd && exec pcscd -f -a -d -c '$T/readers'" \
        >>"$T/pcscd.log" 2>&1 &
    PCSCD_PID=$!
    wait_for 10 test -S "$SOCK" && wait_for 10 grep -q "daemon ready" "$T/pcscd.log"
}

pcscd_stop() {
    [ -n "$PCSCD_PID" ] || return 0
    kill "$PCSCD_PID" 2>/dev/null
    wait "$PCSCD_PID" 2>/dev/null
    PCSCD_PID=
}

CARD_PID=
card_in() { # card_in UIDHEX [MODE]
    /usr/bin/python3 "$SOURCE_DIR/tests/pcsc/fakecard.py" "$PORT" "$@" >>"$T/card.log" 2>&1 &
    CARD_PID=$!
}

# card_out: takes the card away and waits until pcscd noticed. vpcd polls
# presence every ~0.4 s; a new card connecting before that would be taken
# for the old one still lying there (same ATR), which no real card swap is.
REMOVED=0
removed() { [ "$(grep -c "Card Removed From" "$T/pcscd.log")" -gt "$REMOVED" ]; }
card_out() {
    kill "$CARD_PID" 2>/dev/null
    wait "$CARD_PID" 2>/dev/null
    CARD_PID=
    wait_for 10 removed || fail "pcscd did not notice the card was taken away"
    REMOVED=$(grep -c "Card Removed From" "$T/pcscd.log")
}

pcsc_cleanup() {
    [ -n "$CARD_PID" ] && kill "$CARD_PID" 2>/dev/null
    pcscd_stop
    cardreader_cleanup
}
trap pcsc_cleanup EXIT

pcscd_start || skip "pcscd cannot start here (private mount namespace refused?): $(tail -3 "$T/pcscd.log")"

conf_base
cat >"$T/conf/20-in.yaml" <<YAML
inputs:
  library-desk:
    plugin: cardreader
    backend: pcsc
    reader: Virtual PCD
    poll_interval: 50ms
    debounce: 0
    service: library
YAML
export PCSCLITE_CSOCK_NAME="$SOCK"
start_agent "$T/conf"
wait_for 10 grep -q "following reader 'Virtual PCD 00 00'" "$T/agent.log" || fail "reader not found"

# 1. a card on the reader: its UID, once however long it lies there
card_in 04A2B3C4D5E680
want_readings 1
sleep 0.5 # ten polls with the card still there
want_readings 1
ok "card inserted, UID read once"

# 2. taken away, another card, the first one back
card_out
card_in DEADBEEF
want_readings 2
card_out
card_in 04A2B3C4D5E680
want_readings 3
card_out
[ "$(subjects library-desk | sort -u | wc -l)" = 2 ] || fail "2 cards, not 2 subjects"
[ "$(subjects library-desk | sed -n 1p)" = "$(subjects library-desk | sed -n 3p)" ] ||
    fail "the same card again gave another subject"
ok "card removed, others read"

# 3. cards that give no UID to count: nothing is read, each is counted
card_in 04112233445566 unsupported
stats_has "unsupported_cards 1"
card_out
card_in 04112233445566 fail
stats_has "read_errors 1"
card_out
card_in 08A1B2C3
stats_has "random_uids 1"
card_out
grep -q "gives no UID (6A 81)" "$T/agent.log" || fail "6A 81 not logged"
card_in 0411223344556677889900 le # a 10-byte UID after the card corrected Le
want_readings 4
card_out
ok "unsupported card, failed read, random UID; Le corrected"

# 4. the reader gone (pcscd stopped) and back
pcscd_stop
wait_for 10 grep -q "instance down: pcscd is not reachable" "$T/agent.log" || fail "reader gone not reported"
pcscd_start || fail "pcscd did not start again"
found_twice() { [ "$(grep -c "following reader 'Virtual PCD 00 00'" "$T/agent.log")" -ge 2 ]; }
wait_for 10 found_twice || fail "reader not found again"
card_in 04C0FFEE123456
want_readings 5
card_out
ok "reader gone and back"

stop_agent TERM
[ "$AGENT_STATUS" = 0 ] || fail "exit status $AGENT_STATUS"
check_file_matches_db "$T/data/mittari.db" "$T/out/r.jsonl" || fail "output and log differ"
python3 "$SOURCE_DIR/plugins/cardreader/testdata/leakcheck.py" --card uid:04A2B3C4D5E680 \
    --card uid:DEADBEEF --card uid:0411223344556677889900 --card uid:04C0FFEE123456 \
    "$T/data" "$T/out" "$T/agent.log" || fail "a UID reached the disk or the log"
ok "pcsc backend"
