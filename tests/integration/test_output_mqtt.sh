#!/bin/bash
# The mqtt output against a real mosquitto: QoS 1 messages of batched
# readings on templated topics, each message keyed; a retained status topic
# (online, offline at a stop, offline through the will after kill -9); the
# broker restarting is survived without loss; TLS with a test CA works, a
# wrong CA is a clear error naming the output, tls_verify: false warns.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/outputs_lib.sh"

mqtt_start "$T/mq"
mkdir -p "$T/conf"
conf() { # conf PORT EXTRA
  cat >"$T/conf/10.yaml" <<YAML
agent:
  site: it-mqtt
  id: gw-mqtt
  data_dir: $T/data
  stats_interval: 0
inputs:
  sim:
    plugin: sim
    rate: 300
    opening_hours: "00:00-24:00"
    poll_interval: 50ms
outputs:
  broker:
    type: mqtt
    host: 127.0.0.1
    port: $1
    topic: "mittari/{agent}/{site}/{device}"
    batch_size: 100
    readings_per_message: 40
    max_inflight: 5
    retry_min: 100ms
    retry_max: 500ms
    timeout: 2s
${2:-}
YAML
}
status() { mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -t mittari/gw-mqtt/status -C 1 -W 2 2>/dev/null; }

mqtt_collect "$T/sub.txt" 'mittari/#'
conf "$MQTT_PORT"
start_agent "$T/conf"
wait_for 10 bash -c "mosquitto_sub -h 127.0.0.1 -p $MQTT_PORT -t mittari/gw-mqtt/status -C 1 -W 1 | grep -q online" ||
  fail "no retained online status"
sleep 2
# 1. the broker restarts under it: nothing is lost
mqtt_down
sleep 1
mqtt_up
# (the subscriber reconnects by itself; what it missed meanwhile is replayed below)
sleep 2.5
stop_agent TERM
[ "$AGENT_STATUS" = 0 ] || fail "exit status $AGENT_STATUS"
status | grep -q '"state":"offline"' || fail "no retained offline status after a stop: $(status)"
grep -q "connection to 127.0.0.1:$MQTT_PORT lost" "$T/agent.log" || fail "the broker restart was not noticed"
# readings sent while the subscriber was away reached nobody: replay them
"$MITTARI" replay -c "$T/conf" broker --since 2000-01-01 >"$T/replay.txt" 2>&1 || fail "replay: $(cat "$T/replay.txt")"
sleep 0.5
mqtt_records "$T/sub.txt" "$T/records.jsonl"
check_at_least_once "$T/data/mittari.db" "$T/records.jsonl" replayed || fail "readings missing"
python3 - "$T/records.jsonl" <<'PY' || fail "messages are not as documented"
import json, sys
parts = {}  # batch key -> {message number: seqs}
for line in open(sys.argv[1]):
    r = json.loads(line)
    base, part = r["key"].split("#")
    a, g, o, rng = base.split("/")
    lo, hi = map(int, rng.split("-"))
    assert (a, o) == ("gw-mqtt", "broker") and len(r["seqs"]) <= 40, r["key"]
    # a message describes its own readings (payload buffers are reused)
    assert r["seqs"] and r["count"] == len(r["seqs"]), r["key"]
    assert (r["first_seq"], r["last_seq"]) == (r["seqs"][0], r["seqs"][-1]), r["key"]
    assert r["seqs"] == sorted(r["seqs"]) and lo <= r["seqs"][0] and r["seqs"][-1] <= hi, r["key"]
    for rd in r["readings"]:
        assert r["topic"] == f"mittari/gw-mqtt/it-mqtt/{rd['device']}", (r["topic"], rd["device"])
        assert rd["gen"] == r["gen"], r["key"]
    seen = parts.setdefault(base, {})
    assert seen.get(part, r["seqs"]) == r["seqs"], ("a re-sent message changed", r["key"])
    seen[part] = r["seqs"]
for base, ps in parts.items():
    # the messages of a batch share none of its readings
    all_seqs = [s for seqs in ps.values() for s in seqs]
    assert len(all_seqs) == len(set(all_seqs)), ("a reading in two messages of", base)
print("ok")
PY
ok "QoS 1 batched messages, one topic per device, keyed; broker restart survived; online/offline retained"

# 2. kill -9: the broker publishes the will
start_agent "$T/conf"
wait_for 10 bash -c "mosquitto_sub -h 127.0.0.1 -p $MQTT_PORT -t mittari/gw-mqtt/status -C 1 -W 1 | grep -q online" ||
  fail "not online again"
kill -9 "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null; AGENT_PID=
wait_for 10 bash -c "mosquitto_sub -h 127.0.0.1 -p $MQTT_PORT -t mittari/gw-mqtt/status -C 1 -W 1 | grep -q offline" ||
  fail "no last will after kill -9"
ok "kill -9: the last will says offline"

# 3. TLS: the right CA; a wrong CA is named; tls_verify: false warns at every start
make_ca "$T/tls" other
conf "$MQTTS_PORT" "    ca_file: $T/mq/mq-ca.crt"
sed -i 's/host: 127.0.0.1/host: localhost/' "$T/conf/10.yaml"
: >"$T/agent.log"
start_agent "$T/conf"
wait_for 10 grep -q "output mqtt\[broker\]: connected to localhost:$MQTTS_PORT" "$T/agent.log" ||
  fail "TLS: not connected: $(tail -3 "$T/agent.log")"
stop_agent TERM
conf "$MQTTS_PORT" "    ca_file: $T/tls/other-ca.crt"
sed -i 's/host: 127.0.0.1/host: localhost/' "$T/conf/10.yaml"
start_agent "$T/conf"
wait_for 10 grep -q "output mqtt\[broker\]: .*cannot connect to localhost:$MQTTS_PORT" "$T/agent.log" ||
  fail "wrong CA: no error naming the output: $(tail -3 "$T/agent.log")"
stop_agent TERM
grep "output mqtt\[broker\].*cannot connect" "$T/agent.log" | grep -qi "certificate verify failed" ||
  fail "wrong CA: the error does not say why: $(grep 'cannot connect' "$T/agent.log" | tail -1)"
echo "    tls_verify: false" >>"$T/conf/10.yaml"
for i in 1 2; do
  : >"$T/agent.log"
  start_agent "$T/conf"
  wait_for 10 grep -q "connected to localhost" "$T/agent.log" || fail "tls_verify false: not connected"
  stop_agent TERM
  grep -q "output mqtt\[broker\]: tls_verify is off" "$T/agent.log" || fail "start $i: no warning"
done
ok "TLS: right CA connects, wrong CA names the output and the failed verification, tls_verify false warns at every start"
