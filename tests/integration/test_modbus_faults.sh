#!/bin/bash
# Issue 5: the Modbus plugin against a simulator that misbehaves, in one
# agent run: exception responses, a device that stops answering, one that
# refuses connections and then comes up, device reboots (to 0 and to a lower
# value), a bad CRC on an RTU bus beside a healthy unit, and a slow device
# beside fast ones. Devices use the repo's profiles (ADAM-6051 CDAB, Banner
# DX80 ABCD); one is named by a host name (looked up on a worker). Each failure must be counted and reported as health, the
# others keep polling, and in the end every pass the devices counted is in
# the log exactly once, across an agent restart too.
. "$(dirname "$0")/lib.sh"
. "$SOURCE_DIR/tests/modbus/simlib.sh"

cat >"$T/spec" <<'SPEC'
tcp adam
counter adam fn=holding addr=0 type=u32 order=CDAB start=4294967100 step=4
tcp reboot0
counter reboot0 fn=holding addr=0 type=u16 order=AB start=100 step=2
tcp reboot5
counter reboot5 fn=input addr=3 type=u32 order=ABCD start=1000 step=2
tcp exc
counter exc fn=holding addr=0 type=u16 order=AB start=65000 step=3
tcp mute
counter mute fn=holding addr=0 type=u32 order=DCBA start=4294967000 step=3
tcp refused down
counter refused fn=holding addr=0 type=u16 order=BA start=10 step=2
tcp slow
counter slow fn=holding addr=0 type=u16 order=AB start=0 step=1
tcp f1
counter f1 fn=holding addr=0 type=u16 order=AB start=0 step=1
tcp f2
counter f2 fn=holding addr=0 type=u16 order=AB start=0 step=1
tcp f3
counter f3 fn=holding addr=0 type=u16 order=AB start=0 step=1
rtu dx80 path=auto unit=1
counter dx80 fn=holding addr=2 type=u32 order=ABCD start=65530 step=2
counter dx80 fn=holding addr=4 type=u32 order=ABCD start=0 step=1
rtu rtu2 join=dx80 unit=2
counter rtu2 fn=input addr=0 type=u16 order=AB start=65500 step=2
SPEC
start_sim "$T/spec"
port() { sim_get "dev['$1']['port']"; }
tty=$(sim_get "dev['dx80']['path']")

mkdir -p "$T/conf/profiles"
cp "$SOURCE_DIR"/conf.d/profiles/*.yaml "$T/conf/profiles/"
tcp() { # NAME [extra options]: a device with one counter at 0
  echo "      - {name: $1, host: ${HOST:-127.0.0.1}, port: $(port "$1"), ${2:-} registers: [{metric: c, address: ${3:-0}, ${4:-type: u16}, kind: cumulative}]}"
}
cat >"$T/conf/10.yaml" <<YAML
agent:
  site: it-modbus-faults
  data_dir: $T/data
  stats_interval: 1s
inputs:
  mb:
    plugin: modbus
    devices:
      - {name: adam, host: 127.0.0.1, port: $(port adam), profile: adam-6051}
$(tcp reboot0)
$(tcp reboot5 "" 3 "function: input, type: u32")
$(tcp exc "down_after: 2, backoff_max: 1s,")
$(tcp mute "response_timeout: 300ms, down_after: 2, backoff_max: 1s," 0 "type: u32, order: DCBA")
$(tcp refused "backoff_max: 1s," 0 "order: BA")
$(tcp slow "response_timeout: 20s,")
$(HOST=localhost tcp f1)
$(tcp f2)
$(tcp f3)
      - {name: dx80, serial: '$tty', unit: 1, baud: 19200, frame_delay: 20ms, response_timeout: 300ms, profile: banner-dx80}
      - {name: rtu2, serial: '$tty', unit: 2, baud: 19200, frame_delay: 20ms, response_timeout: 300ms, down_after: 2, backoff_max: 1s,
         registers: [{metric: c, function: input, address: 0, kind: cumulative}]}
YAML
"$MITTARI" check -c "$T/conf" --plugin-dir "$BUILD_DIR/plugins" >"$T/check.out" 2>&1 || fail "check: $(cat "$T/check.out")"
start_agent "$T/conf"
sim_until 20 "all(c['served'] for x in d['devices'] if x['name'] != 'refused' for c in x['counters'])" ||
  fail "the agent did not read every device"
logged() { grep -q "$1" "$T/agent.log"; }

# faults on
sim_cmd "exception exc 2" "mute mute on" "crc rtu2 on" "delay slow 15000"
# the slow device's one request stays unanswered while the fast ones go on
sim_until 10 "dev['slow']['pending']" || fail "the slow device was not asked"
base=$(sim_get "[dev[n]['received'] for n in ('f1', 'f2', 'f3')] + [dev['slow']['answered']]")
sim_until 20 "all(dev[n]['received'] >= b + 3 for n, b in zip(('f1', 'f2', 'f3'), $base)) and dev['slow']['pending'] and dev['slow']['answered'] == $base[3]" ||
  fail "fast devices did not keep polling while a slow one kept a worker busy"
sim_cmd "up refused" "delay slow 0"
wait_for 20 logged "device exc down: exception 2" || fail "exceptions: device not reported down"
wait_for 20 logged "device mute down: " || fail "silence: device not reported down"
wait_for 20 logged "device rtu2 down: " || fail "bad CRC: device not reported down"
logged "device refused down: cannot connect: Connection refused" || fail "refused connection not reported"
wait_for 20 logged "device refused up" || fail "refused device did not come up"
! logged "device dx80 d" || fail "a bad CRC from one unit made its neighbour on the bus unhealthy"

# reboots: once the last value before is read, to 0 and to a lower value
sim_cmd "exception exc off" "mute mute off" "crc rtu2 off" "freeze reboot0" "freeze reboot5"
sim_until 15 "all(c['reads_frozen'] >= 2 for n in ('reboot0', 'reboot5') for c in dev[n]['counters'])" ||
  fail "frozen counters not read"
sim_cmd "reboot reboot0 0" "reboot reboot5 5" "resume reboot0" "resume reboot5"
for d in exc mute rtu2; do
  wait_for 20 logged "device $d up" || fail "$d did not recover"
done
sleep 2

# an agent restart: what the devices counted meanwhile comes with the first
# read after it, from the stored last values (nothing twice, nothing lost)
stop_agent TERM
[ "$AGENT_STATUS" = 0 ] || fail "agent exit status $AGENT_STATUS at the restart"
sleep 2
start_agent "$T/conf"
sleep 2

# the end: freeze, let the agent read the final values, stop
sim_cmd freeze
sim_until 30 "all(c['reads_frozen'] >= 2 for x in d['devices'] for c in x['counters'])" ||
  fail "the agent did not read every frozen counter twice"
stop_agent TERM
[ "$AGENT_STATUS" = 0 ] || fail "agent exit status $AGENT_STATUS"

stats=$(grep " stats: " "$T/agent.log")
for c in "exc exceptions" "mute timeouts" "rtu2 crc_errors" "refused connect_errors" "mute reconnects"; do
  grep -q "; $c [1-9]" <<<"$stats" || fail "counter '$c' not in the statistics"
done
[ "$(sim_get "dev['dx80']['bus_min_gap_us'] >= 20000")" = True ] ||
  fail "RTU frames closer than frame_delay: $(sim_get "dev['dx80']['bus_min_gap_us']") us"
[ "$(sim_get "dev['adam']['counters'][0]['value'] < 1000 and dev['rtu2']['counters'][0]['value'] < 1000")" = True ] ||
  fail "the ADAM and RTU counters did not wrap"
reset=$(sqlite3 "$T/data/mittari.db" "select count(*) from series where device in ('reboot0','reboot5')")
[ "$reset" = 2 ] || fail "reboot series: $reset"
check_exact "$T/data/mittari.db" || fail "deltas differ from the devices' true increments"
! grep -E " (err|crit|alert|emerg) " "$T/agent.log" || fail "errors logged"
ok "exceptions, silence, refusal, reboots, bad CRC, a slow device: counted, reported, nothing lost"
