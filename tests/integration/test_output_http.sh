#!/bin/bash
# The http output against a receiver in the harness: JSON and NDJSON, gzip,
# headers and the idempotency key; 500 and a reset connection are retried,
# 429 waits for Retry-After, a hanging server times out, 400 parks the batch
# (skip goes on, stop stops); `mittari outputs` shows all of it with the agent
# down; TLS with the right CA works, a wrong CA gives a clear error naming
# the output, a disabled check warns at every start.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/outputs_lib.sh"

R=$T/recv
http_receiver "$R"
mkdir -p "$T/conf" "$T/secrets"
printf 's3cret-token' >"$T/secrets/token"; chmod 600 "$T/secrets/token"

conf() { # conf EXTRA_OUTPUT_YAML: sim at 200/s into one http output "wh"
  cat >"$T/conf/10.yaml" <<YAML
agent:
  site: it-http
  id: gw-http
  data_dir: $T/data
  stats_interval: 0
  shutdown_timeout: 2s # a stop with the receiver failing need not wait 10 s
inputs:
  sim:
    plugin: sim
    rate: 200
    opening_hours: "00:00-24:00"
    poll_interval: 50ms
    seed: 7
outputs:
  wh:
    type: http
    url: http://127.0.0.1:$HTTP_PORT/ingest
    batch_size: 50
    retry_min: 100ms
    retry_max: 400ms
    timeout: 1s
    token_file: $T/secrets/token
    headers:
      - {name: X-Site, value: it-http}
$1
YAML
}

records() { [ -f "$R/records.jsonl" ] && wc -l <"$R/records.jsonl" || echo 0; }
statuses() { [ -f "$R/requests.log" ] && awk '{print $2}' "$R/requests.log" | sort | uniq -c | tr '\n' ' '; }

# 1. JSON with gzip; every reading once, in order, with the key in body and header
conf "    gzip: true"
touch "$R/keep_readings"
start_agent "$T/conf"
wait_for 20 bash -c "[ \$(cat '$R/records.jsonl' 2>/dev/null | wc -l) -ge 10 ]" || fail "no batches arrived"
stop_agent TERM
[ "$AGENT_STATUS" = 0 ] || fail "exit status $AGENT_STATUS"
check_at_least_once "$T/data/mittari.db" "$R/records.jsonl" || fail "json: not every reading arrived"
python3 - "$R/records.jsonl" <<'PY' || fail "json batches are not as documented"
import json, sys
prev = 0
for line in open(sys.argv[1]):
    r = json.loads(line)
    a, g, o, rng = r["key"].split("/")
    first, last = map(int, rng.split("-"))
    assert (a, o) == ("gw-http", "wh") and int(g) == r["gen"], r["key"]
    assert r["seqs"] == sorted(r["seqs"]) and r["seqs"][0] == first and r["seqs"][-1] == last
    assert first > prev, "out of order or twice"
    prev = last
    for rd in r["readings"]:
        assert rd["gen"] == r["gen"] and rd["site"] == "it-http" and "ts" in rd and "kind" in rd
print("ok")
PY
ok "json+gzip: every reading once, in order, keyed agent/generation/output/first-last"

# 2. NDJSON; the token and the custom header reach the server (the receiver
# answers 400 to a key that differs from the body's, so the key is checked too)
rm -f "$R/keep_readings"
conf "    format: ndjson"
start_agent "$T/conf"
wait_for 20 bash -c "[ -s '$R/records.jsonl' ]" || fail "ndjson: nothing arrived"
stop_agent TERM
check_at_least_once "$T/data/mittari.db" "$R/records.jsonl" || fail "ndjson: not every reading arrived"
ok "ndjson: every reading arrived"

# 3. transient failures: 500, a reset connection, a hanging server, down;
# then it delivers everything, and `mittari outputs` (agent down) shows the error
for m in 500 reset hang down; do
  set_mode "$R" "$m"
  start_agent "$T/conf"
  sleep 1.5
  stop_agent TERM
  "$MITTARI" outputs -c "$T/conf" >"$T/outputs.txt" || fail "mittari outputs failed"
  grep -q "last error" "$T/outputs.txt" || fail "$m: outputs shows no error: $(cat "$T/outputs.txt")"
  set_mode "$R" ok
done
grep -q "HTTP 500" "$T/agent.log" || fail "no HTTP 500 in the log"
grep -Eq "output http\[wh\]: delivery failed, will retry: .*(timed out|Timeout)" "$T/agent.log" ||
  fail "the hanging server did not time out"
start_agent "$T/conf"
sleep 2
stop_agent TERM
check_at_least_once "$T/data/mittari.db" "$R/records.jsonl" || fail "after failures: readings missing"
ok "500, reset, hang, down: retried, nothing lost ($(statuses))"

# 4. 429 with Retry-After: 2 -> the next attempt waits at least 2 s
: >"$R/requests.log"
set_mode "$R" 429:2
start_agent "$T/conf"
wait_for 10 grep -q " 429 " "$R/requests.log" || fail "no 429 answered"
sleep 0.3
set_mode "$R" ok
wait_for 10 grep -q " 200 " "$R/requests.log" || fail "nothing delivered after 429"
stop_agent TERM
python3 - "$R/requests.log" <<'PY' || fail "Retry-After was not honoured"
import sys
lines = [l.split() for l in open(sys.argv[1])]
t429 = max(float(t) for t, s, *_ in lines if s == "429")
t200 = min(float(t) for t, s, *_ in lines if s == "200")
assert t200 - t429 >= 1.9, (t429, t200)
print(f"waited {t200 - t429:.2f}s after 429")
PY
ok "429: Retry-After honoured"

# 5. 400 parks the batch; skip goes on
set_mode "$R" 400
start_agent "$T/conf"
wait_for 10 grep -q "refused permanently" "$T/agent.log" || fail "400 did not park a batch"
set_mode "$R" ok
sleep 1.5
stop_agent TERM
"$MITTARI" outputs -c "$T/conf" >"$T/outputs.txt"
grep -Eq "parked: +[1-9][0-9]* batch" "$T/outputs.txt" || fail "outputs shows no parked batch: $(cat "$T/outputs.txt")"
grep -q "HTTP 400" "$T/outputs.txt" || fail "outputs does not say why it was parked"
parked=$(sqlite3 "$T/data/mittari.db" "select count(*) from parked where output='wh'")
[ "$parked" -ge 1 ] || fail "no parked record in the log"
# the parked readings are the only ones missing, and `mittari replay` sends them
"$MITTARI" replay -c "$T/conf" wh --since 2000-01-01 --until now >"$T/replay.txt" 2>&1 ||
  fail "replay failed: $(cat "$T/replay.txt")"
grep -q "re-sent [1-9][0-9]* readings" "$T/replay.txt" || fail "replay says: $(cat "$T/replay.txt")"
check_at_least_once "$T/data/mittari.db" "$R/records.jsonl" replayed || fail "after replay: readings missing"
ok "400: batch parked and skipped, shown by mittari outputs, re-sent by mittari replay"

# 6. on_permanent_error: stop -> the output stops, the cursor stays before the batch
conf "    on_permanent_error: stop"
set_mode "$R" 400
start_agent "$T/conf"
wait_for 10 grep -q "output stopped until a restart or reload" "$T/agent.log" || fail "stop did not stop"
n1=$(grep -c " 400 " "$R/requests.log")
sleep 1.5
n2=$(grep -c " 400 " "$R/requests.log")
[ "$n1" = "$n2" ] || fail "a stopped output kept sending ($n1 -> $n2)"
stop_agent TERM
"$MITTARI" outputs -c "$T/conf" | grep -q "stopped" || fail "outputs does not show it stopped"
set_mode "$R" ok
start_agent "$T/conf"
sleep 2
stop_agent TERM
check_at_least_once "$T/data/mittari.db" "$R/records.jsonl" replayed || fail "after stop+restart: missing"
ok "on_permanent_error stop: stopped, resumed from the refused batch at the next start"

# 7. TLS: right CA works; a wrong CA is a clear error naming the output; tls_verify: false warns
make_ca "$T/tls" good
make_ca "$T/tls" other
kill -9 "$HTTP_PID"; wait "$HTTP_PID" 2>/dev/null
http_receiver "$R" --cert "$T/tls/good-srv.crt" --key "$T/tls/good-srv.key"
cat >"$T/conf/10.yaml" <<YAML
agent:
  site: it-http
  id: gw-http
  data_dir: $T/data
  stats_interval: 0
  shutdown_timeout: 2s # a stop with the receiver failing need not wait 10 s
inputs:
  sim: {plugin: sim, rate: 100, opening_hours: "00:00-24:00", seed: 7}
outputs:
  wh:
    type: http
    url: https://localhost:$HTTP_PORT/ingest
    ca_file: $T/tls/good-ca.crt
    retry_min: 100ms
    retry_max: 300ms
YAML
: >"$T/agent.log"
start_agent "$T/conf"
sleep 2
stop_agent TERM
check_at_least_once "$T/data/mittari.db" "$R/records.jsonl" replayed || fail "https: readings missing"
sed -i "s|good-ca.crt|other-ca.crt|" "$T/conf/10.yaml"
start_agent "$T/conf"
wait_for 10 grep -q "output http\[wh\]: delivery failed" "$T/agent.log" || fail "wrong CA: no error"
stop_agent TERM
grep "output http\[wh\]" "$T/agent.log" | grep -Eiq "certificate|SSL" ||
  fail "wrong CA: the error does not say it is the certificate: $(grep 'http\[wh\]' "$T/agent.log" | tail -2)"
echo "    tls_verify: false" >>"$T/conf/10.yaml"
for i in 1 2; do
  : >"$T/agent.log"
  start_agent "$T/conf"
  sleep 1
  stop_agent TERM
  grep -q "output http\[wh\]: tls_verify is off" "$T/agent.log" || fail "start $i: no warning for tls_verify: false"
done
check_at_least_once "$T/data/mittari.db" "$R/records.jsonl" replayed || fail "tls_verify false: readings missing"
ok "TLS: right CA delivers, wrong CA names the output and the certificate, tls_verify false warns at every start"
