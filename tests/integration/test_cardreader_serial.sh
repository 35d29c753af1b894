#!/bin/bash
# cardreader, serial backend, with the real agent on real pseudo terminals:
# RDM6300 and ID-12LA frames become check-ins, a card held on the reader is
# one check-in (debounce), a frame split across reads is put together,
# garbage and bad checksums are counted and never become readings, and an
# unplugged reader is reported down and read again when it comes back.
. "$(dirname "$0")/lib.sh"
. "$SOURCE_DIR/plugins/cardreader/testdata/it.sh"

conf_base
cat >"$T/conf/20-in.yaml" <<YAML
inputs:
  hall-door:
    plugin: cardreader
    backend: serial
    port: $T/ttyCARD
    frame: em4100
    debounce: 2s
    reopen_interval: 200ms
    service: swimming_hall
YAML
sim_start rdr pty "$T/ttyCARD"
sim_ready rdr
start_agent "$T/conf"

# 1. frames of both reader families
sim rdr rdm6300 0100D507D0
want_readings 1
sim rdr id12la 1A9C3F5E71
want_readings 2
grep -q '"tags":{"service":"swimming_hall"}' "$T/out/r.jsonl" || fail "no service tag"
grep -q '"kind":"event"' "$T/out/r.jsonl" || fail "not an event"
ok "RDM6300 and ID-12LA frames are check-ins"

# 2. a card held on the reader repeats its frame: one check-in. The other
#    card afterwards is the barrier that shows the repeats were read.
sim rdr hold 0C000621A5 8
sim rdr rdm6300 0C000621A5
sim rdr id12la 2B00FF1234
want_readings 4
stats_has "repeats 8"
ok "a held card is one check-in"

# 3. a frame in three pieces, 150 ms apart
sim rdr split 3C11223344
want_readings 5
ok "a frame split across reads"

# 4. noise, a wrong checksum, a frame that is no EM4100 frame, an over-long
#    one, half a frame: nothing of it is a reading
sim rdr raw 00ff41424344fe0d0a
sim rdr badsum 4D55667788
sim rdr raw 02 414243 03
sim rdr raw 02 30313030443530374430303330313030443530374430303303
sim rdr raw 02 303130304435
sim rdr rdm6300 5E99887766
want_readings 6
stats_has "bad_checksums 1"
stats_has "bad_frames 2" # "ABC", and the half frame cut short by the next STX (issue 9)
stats_has "overlong_frames 1"
grep -q "wrong checksum dropped" "$T/agent.log" || fail "bad checksum not logged"
grep -q "frame cut short (no ETX before the next STX)" "$T/agent.log" || fail "cut frame not logged"
ok "garbage and bad checksums counted, not read"

# 5. unplugged: down; plugged back: read again without a restart
sim rdr unplug
wait_for 10 grep -q "instance down: .*went away" "$T/agent.log" || fail "unplug not reported"
sim rdr plug
wait_for 10 grep -q "open again" "$T/agent.log" || fail "replug not noticed"
sim rdr rdm6300 6F01020304
want_readings 7
stats_has "reconnects 1"
ok "unplug reported, replug read"

stop_agent TERM
[ "$AGENT_STATUS" = 0 ] || fail "exit status $AGENT_STATUS"
check_file_matches_db "$T/data/mittari.db" "$T/out/r.jsonl" || fail "output and log differ"
[ "$(subjects hall-door | sort -u | wc -l)" = 7 ] || fail "7 cards, not 7 subjects"
ok "serial backend"
