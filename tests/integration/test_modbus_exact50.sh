#!/bin/bash
# Issue 5: 50 simulated Modbus TCP people counters polled at 1 s for 60 s.
# Counters are 16- and 32-bit in every word order and start near the top,
# so each wraps during the run. At the end the simulator freezes, the agent
# reads the final values and stops; the deltas in the log must add up, per
# device, to the simulator's true increments: none lost, none counted twice.
. "$(dirname "$0")/lib.sh"
. "$SOURCE_DIR/tests/modbus/simlib.sh"

N=50
RUN=${RUN_SECONDS:-60}
types=(u16 u16 u32 u32 u32 u32)
orders=(AB BA ABCD CDAB BADC DCBA)
fns=(holding input holding input holding input)
for i in $(seq 1 $N); do
  k=$((i % 6))
  top=$([ ${types[$k]} = u16 ] && echo 65535 || echo 4294967295)
  echo "tcp m$i"
  echo "counter m$i fn=${fns[$k]} addr=0 type=${types[$k]} order=${orders[$k]} start=$((top - 400)) step=3"
done >"$T/spec"
start_sim "$T/spec"

mkdir -p "$T/conf"
{
  cat <<YAML
agent:
  site: it-modbus
  data_dir: $T/data
  stats_interval: 10s
inputs:
  counters:
    plugin: modbus
    devices:
YAML
  # response_timeout 2s: a loaded CI machine must not turn into a timeout
  for i in $(seq 1 $N); do
    k=$((i % 6))
    port=$(sim_get "dev['m$i']['port']")
    echo "      - {name: m$i, host: 127.0.0.1, port: $port, response_timeout: 2s, registers: [{metric: c0, function: ${fns[$k]}, address: 0, type: ${types[$k]}, order: ${orders[$k]}, kind: cumulative, unit: persons}]}"
  done
} >"$T/conf/10.yaml"
"$MITTARI" check -c "$T/conf" --plugin-dir "$BUILD_DIR/plugins" >"$T/check.out" 2>&1 || fail "check: $(cat "$T/check.out")"

start_agent "$T/conf"
sleep "$RUN"
sim_cmd freeze
sim_until 30 "all(c['reads_frozen'] >= 2 for x in d['devices'] for c in x['counters'])" ||
  fail "the agent did not read every frozen counter twice"
stop_agent TERM
[ "$AGENT_STATUS" = 0 ] || fail "agent exit status $AGENT_STATUS"

[ "$(sim_get "all(c['total'] > 400 for x in d['devices'] for c in x['counters'])")" = True ] ||
  fail "not every counter wrapped: the test did not test wrap-around"
check_exact "$T/data/mittari.db" || fail "deltas differ from the devices' true increments"
rows=$(sqlite3 "$T/data/mittari.db" "select min(n) from (select count(*) n from readings group by series)")
series=$(sqlite3 "$T/data/mittari.db" "select count(*) from series where metric = 'c0'")
[ "$series" = "$N" ] || fail "$series series, expected $N"
[ "$rows" -ge 5 ] || fail "a device has only $rows readings"
neg=$(sqlite3 "$T/data/mittari.db" "select count(*) from readings where value <= 0")
[ "$neg" = 0 ] || fail "$neg readings are not positive deltas"
! grep -E "device m[0-9]+ (down|degraded)" "$T/agent.log" || fail "a device was reported unhealthy"
! grep -E " (err|crit|alert|emerg) " "$T/agent.log" || fail "errors logged"
ok "$N devices for ${RUN}s: every wrap-around in every word order counted exactly"
