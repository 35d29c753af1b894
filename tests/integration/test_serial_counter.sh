#!/bin/bash
# The serial plugin in the real agent, on a pty played by tests/devsim: a
# people counter's cumulative IN/OUT lines become deltas; garbage, binary
# noise, an over-long line and a line split across reads are handled (bad
# ones counted and logged once, none turned into a reading); the adapter is
# unplugged and plugged back in while the agent runs.
. "$(dirname "$0")/lib.sh"
. "$SOURCE_DIR/tests/devsim/simlib.sh"

mkdir -p "$T/conf"
cat >"$T/conf/a.yaml" <<YAML
agent:
  site: it-serial
  data_dir: $T/data
  stats_interval: 1s
inputs:
  door:
    plugin: serial
    port: $T/ttyDoor
    reopen_interval: 200ms
    max_frame_length: 40
    values:
      - {field: IN, metric: visitors_in, kind: cumulative, unit: persons}
      - {field: OUT, metric: visitors_out, kind: cumulative, unit: persons}
outputs:
  f:
    type: file
    path: $T/out/readings.jsonl
YAML
"$MITTARI" check -c "$T/conf" --plugin-dir "$BUILD_DIR/plugins" >/dev/null || fail "config does not check"

sim_start door --link "$T/ttyDoor"
start_agent "$T/conf"
rows() { [ -f "$T/data/mittari.db" ] && [ "$(db_count "$T/data/mittari.db")" -ge "$1" ]; }

# the first sample of a counter is its baseline; the second gives deltas
sim door 'send IN=100 OUT=90\r\n'
sim door 'send IN=103 OUT=91\r\n'
wait_for 10 rows 2 || fail "no readings from the counter"

# garbage, noise, an over-long line, then a line cut in two reads
sim door 'send IN=1x OUT=2\r\n'
sim door 'send hello\r\n'
sim door 'noise 400'
sim door 'send \r\n'
sim door "send $(printf 'A%.0s' $(seq 100))\\r\\n"
sim door 'send IN=10'
sim_sync door
sleep 0.3
sim door 'send 5 OUT=95\r\n'
wait_for 10 rows 4 || fail "the split line was not read"

# unplug: the device is reported down, and up again when it is back
sim door unplug
wait_for 10 grep -q "down: .*ttyDoor went away" "$T/agent.log" || fail "unplug not reported"
sleep 0.5
kill -0 "$AGENT_PID" || fail "agent died on unplug"
sim door plug
wait_for 10 grep -q "instance up" "$T/agent.log" || fail "replug not reported"
sim door 'send IN=110 OUT=99\r\n'
wait_for 10 rows 6 || fail "no readings after the replug"
wait_for 5 grep -q "reconnects 1" "$T/agent.log" || fail "replug not in the statistics"
stop_agent TERM
[ "$AGENT_STATUS" = 0 ] || fail "agent exit $AGENT_STATUS"

sums=$(sqlite3 "$T/data/mittari.db" "select s.metric || '=' || sum(r.value) from readings r
  join series s on s.id = r.series group by s.metric order by s.metric" | tr '\n' ' ')
[ "$sums" = "visitors_in=10.0 visitors_out=9.0 " ] || fail "deltas: $sums (want in 3+2+5, out 1+4+4)"
n=$(db_count "$T/data/mittari.db")
[ "$n" = 6 ] || fail "$n readings, want 6: something was invented"
check_file_matches_db "$T/data/mittari.db" "$T/out/readings.jsonl" >/dev/null || fail "file output"

# complaints: counted in the statistics line, logged once (rate-limited)
last=$(grep "reconnects 1" "$T/agent.log" | tail -1)
bad=$(sed -E 's/.*bad_frames ([0-9]+).*/\1/' <<<"$last")
# "IN=1x OUT=2", "hello", and whatever lines of the noise are not too long
[ "$bad" -ge 2 ] || fail "bad_frames $bad: $last"
grep -qE "overlong_frames [1-9]" <<<"$last" || fail "overlong not counted: $last"
grep -q "disconnects 1" <<<"$last" && grep -q "reconnects 1" <<<"$last" || fail "unplug not counted: $last"
[ "$(grep -c 'bad frame (' "$T/agent.log")" = 1 ] || fail "bad frames logged more than once"
[ "$(grep -c 'longer than 40 bytes' "$T/agent.log")" = 1 ] || fail "over-long frame not logged once"
grep -q "hello" "$T/agent.log" && fail "a frame's bytes reached the log without log_frames"
ok "serial counter: deltas, garbage counted, unplug and replug"
