#!/bin/bash
# The status endpoint of the real agent on a free port of 127.0.0.1: every
# route with the right token (Bearer and Basic), without one and with a bad
# one; methods, unknown paths, bad arguments, oversized headers; /metrics
# parsed by an independent parser (python3-prometheus-client) and checked
# against /status; idle and slow clients that take every connection never
# stall the agent's loop (its file output keeps growing) and are dropped
# after status.timeout; reloads that restart the server while clients
# hammer it, then a stop in the middle of it. The worker that reads the log
# runs nicer than the rest of the agent.
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3 # Debian's, with python3-prometheus-client
$PY -c "import prometheus_client.parser" 2>/dev/null || { echo "no python3-prometheus-client"; exit 77; }

mkdir -p "$T/conf"
printf '%s' "0123456789abcdef0123456789abcdef" >"$T/token"
chmod 600 "$T/token"
write_conf() { # $1: refresh (a change restarts the server on reload)
  cat >"$T/conf/10.yaml" <<YAML
agent:
  site: it-status
  data_dir: $T/data
  stats_interval: 0
  batch_interval: 100ms # the output's progress is watched over 1.5 s below
inputs:
  lobby:
    plugin: sim
    rate: 40
    opening_hours: "00:00-24:00"
    poll_interval: 200ms
outputs:
  archive:
    type: file
    path: $T/out/readings.jsonl
status:
  listen: 127.0.0.1:0
  token_file: $T/token
  connections: 4
  timeout: 1s
  refresh: $1
YAML
}
write_conf 1s
start_agent "$T/conf"
port() { sed -n 's|.*status endpoint on http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$T/agent.log" | tail -1; }
has_port() { [ -n "$(port)" ]; }
wait_for 20 has_port || fail "the status endpoint did not start"
PORT=$(port)
wait_for 20 test -s "$T/out/readings.jsonl" || fail "no reading delivered"

# the worker that reads the log for the charts runs 10 nicer than the agent
# (the readings go first when the CPU is short)
nice_of() { awk '{print $19}' "$1/stat"; }
st=; for t in /proc/"$AGENT_PID"/task/*; do [ "$(cat "$t/comm")" = mt-status ] && st=$t; done
[ -n "$st" ] || fail "no mt-status thread"
[ "$(nice_of "$st")" = $(($(nice_of /proc/"$AGENT_PID") + 10)) ] ||
  fail "the status worker's nice is $(nice_of "$st"), the agent's $(nice_of /proc/"$AGENT_PID")"

$PY - "$PORT" "$T/out/readings.jsonl" <<'PY' || fail "endpoint checks"
import base64, http.client, json, socket, sys, threading, time
from prometheus_client.parser import text_string_to_metric_families

port, out = int(sys.argv[1]), sys.argv[2]
TOKEN = "0123456789abcdef0123456789abcdef"

def req(path, auth="bearer", method="GET", headers=None, timeout=10):
    h = dict(headers or {})
    if auth == "bearer":
        h["Authorization"] = "Bearer " + TOKEN
    elif auth == "basic":
        h["Authorization"] = "Basic " + base64.b64encode(b"admin:" + TOKEN.encode()).decode()
    elif auth:
        h["Authorization"] = auth
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request(method, path, headers=h)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, body

def check(cond, what):
    if not cond:
        sys.exit("FAIL: " + what)

routes = {"/": "text/html", "/health": "text/plain", "/status": "application/json",
          "/metrics": "text/plain; version=0.0.4", "/visitors": "application/json"}
bad = [None, "Bearer nope", "Bearer " + TOKEN[:-1], "Bearer " + TOKEN + "x",
       "Basic " + base64.b64encode(b"admin:wrong").decode(), "Basic !!!notbase64",
       "Basic " + base64.b64encode(TOKEN.encode()).decode(),  # no user: part
       "Token " + TOKEN]
for path, ctype in routes.items():
    for a in bad:
        code, hdr, body = req(path, auth=a)
        check(code == 401, f"{path} with {a!r}: {code}, expected 401")
        check("basic" in hdr.get("www-authenticate", "").lower(), f"{path}: no challenge")
        check(TOKEN.encode() not in body, "the token is echoed")
    for a in ("bearer", "basic"):
        code, hdr, body = req(path, auth=a)
        check(code == 200, f"{path} ({a}): {code} {body[:200]!r}")
        check(hdr["content-type"].startswith(ctype), f"{path}: content type {hdr['content-type']}")
        check(hdr.get("cache-control") == "no-store", f"{path}: cacheable")
    code, hdr, _ = req(path, auth="bearer", method="HEAD")
    check(code == 200, f"HEAD {path}: {code}")
print("ok: every route refuses no, bad and malformed tokens, takes Bearer and Basic")

code, hdr, body = req("/", auth="bearer")
csp = hdr.get("content-security-policy", "")
check("default-src 'none'" in csp and "connect-src 'self'" in csp, "the page's CSP: " + csp)
page = body.decode()
for ext in ("http://", "https://", "//cdn", "src=\"/"):
    check(ext not in page.replace("http://www.w3.org/2000/svg", ""), f"the page refers to {ext}")
print("ok: the page is self-contained (no external script, font or style)")

check(req("/health", method="POST")[0] == 405, "POST /health")
check(req("/health", method="DELETE")[0] == 405, "DELETE /health")
check(req("/nope")[0] == 404, "an unknown path")
check(req("/visitors?day=2026-13-40")[0] == 400, "a bad day")
check(req("/visitors?day=2999-01-01")[0] == 404, "a day to come")
check(req("/status?format=xml")[0] == 400, "a bad format")
code, _, body = req("/status?format=text")
check(code == 200 and b"health: ok" in body and b"lobby" in body, "text status: %r" % body[:300])
code, _, _ = req("/health", headers={"X-Big": "x" * 20000})
check(code in (413, 414, 431), f"a 20 KB header: {code}")
print("ok: methods, unknown paths, bad arguments and oversized headers refused")

# health and status agree; the figures are the agent's
code, hdr, body = req("/health")
check(code == 200 and body.startswith(b"ok\n") and hdr["x-mittari-health"] == "ok",
      f"health {code} {body!r}")
# the snapshot is renewed every second: wait for one with readings in it
deadline = time.monotonic() + 20
while True:
    st = json.loads(req("/status")[2])
    if st["inputs"] and st["inputs"][0]["received"] > 0 and st["outputs"][0]["delivered"] > 0:
        break
    check(time.monotonic() < deadline, "no readings in the status: %r" % st)
    time.sleep(0.2)
check(st["health"]["status"] == "ok", "status health")
check(st["agent"]["site"] == "it-status" and st["agent"]["phase"] == "running", "agent")
lobby = {i["name"]: i for i in st["inputs"]}["lobby"]
check(lobby["plugin"] == "sim" and lobby["received"] > 0 and lobby["last_reading"], "input")
arch = {o["name"]: o for o in st["outputs"]}["archive"]
check(arch["type"] == "file" and arch["delivered"] > 0 and arch["parked"]["batches"] == 0,
      "output %r" % arch)
check(st["log"]["size_bytes"] > 0 and st["log"]["stored"] > 0, "log")

# the loop-lag histogram counts the loop's turns: a young agent has made few
# (a /status that needs every device asks the loop for a snapshot at once,
# so the loop above may end after a handful of turns)
deadline = time.monotonic() + 20
while True:
    fams = {f.name: f for f in text_string_to_metric_families(req("/metrics")[2].decode())}
    lag = fams.get("mittari_loop_lag_seconds")
    turns = [s.value for s in lag.samples if s.name.endswith("_count")] if lag else []
    if (turns and turns[0] > 10) or time.monotonic() > deadline:
        break
    time.sleep(0.2)
need = ["mittari_input_readings_received", "mittari_input_readings_refused",
        "mittari_input_readings_invalid", "mittari_input_decode_errors",
        "mittari_log_readings_stored", "mittari_log_readings_refused",
        "mittari_log_readings_dropped", "mittari_output_readings_forwarded",
        "mittari_output_retries", "mittari_output_backlog_readings",
        "mittari_output_backlog_age_seconds", "mittari_output_parked_batches",
        "mittari_counter_wraps", "mittari_counter_resets", "mittari_log_size_bytes",
        "mittari_loop_lag_seconds", "mittari_health"]
for n in need:
    check(n in fams, "no metric family " + n)
check(fams["mittari_loop_lag_seconds"].type == "histogram", "lag is not a histogram")
def value(fam, suffix="", **labels):
    for s in fams[fam].samples:
        if s.name == fam + suffix and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    sys.exit(f"FAIL: no sample {fam}{suffix} {labels}")
recv = value("mittari_input_readings_received", "_total", input="lobby")
check(recv >= lobby["received"], f"received went back: {recv} < {lobby['received']}")
check(value("mittari_health", status="ok") == 1, "health metric")
check(value("mittari_loop_lag_seconds", "_count") > 10, "the lag histogram is empty")
# the sim's 16-bit gate counter starts at 65000 and wraps soon: seen in both
print("ok: /metrics parses (prometheus_client) and agrees with /status")

# idle and slow clients take every connection: the loop goes on delivering
def lines():
    with open(out) as f:
        return sum(1 for _ in f)
idle = []
for i in range(10):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    idle.append(s)
slow = socket.create_connection(("127.0.0.1", port), timeout=5)
before, t0 = lines(), time.monotonic()
for i in range(6):  # one header byte every 0.25 s: a slowloris
    try:
        slow.send(b"G")
    except OSError:
        break
    time.sleep(0.25)
check(lines() > before, "the file output stalled while clients held the endpoint")
# held connections are closed after status.timeout (1 s); then it answers again
deadline = time.monotonic() + 15
while True:
    try:
        code = req("/health", timeout=3)[0]
        if code == 200:
            break
    except OSError:
        pass
    check(time.monotonic() < deadline, "the endpoint did not recover from idle clients")
    time.sleep(0.2)
for s in idle + [slow]:
    s.close()
print("ok: idle and slow clients never stall the loop and are dropped after the timeout")
PY

# reloads that restart the server while clients hammer it, then a stop
$PY - "$PORT" "$T" "$AGENT_PID" <<'PY' || fail "reload race"
import http.client, os, re, signal, sys, threading, time
port, T, pid = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
TOKEN = "0123456789abcdef0123456789abcdef"
stop = False
answered = [0]
def cur_port():
    ports = re.findall(r"status endpoint on http://127.0.0.1:(\d+)/", open(T + "/agent.log").read())
    return int(ports[-1]) if ports else port
def hammer():
    paths = ["/status", "/metrics", "/health", "/visitors", "/visitors?day=2020-01-01"]
    i = 0
    while not stop:
        try:
            c = http.client.HTTPConnection("127.0.0.1", cur_port(), timeout=5)
            c.request("GET", paths[i % len(paths)], headers={"Authorization": "Bearer " + TOKEN})
            r = c.getresponse()
            r.read()
            if r.status in (200, 404):
                answered[0] += 1
            c.close()
        except OSError:
            pass  # the server restarting: refused or reset
        i += 1
ths = [threading.Thread(target=hammer) for _ in range(3)]
for t in ths:
    t.start()
conf = open(T + "/conf/10.yaml").read()
for k in range(6):
    time.sleep(0.4)
    conf = re.sub(r"refresh: \S+", "refresh: %ds" % (2 + k % 2), conf)
    open(T + "/conf/10.yaml", "w").write(conf)
    os.kill(pid, signal.SIGHUP)
time.sleep(0.5)
os.kill(pid, signal.SIGTERM)  # stop while the clients go on
time.sleep(1)
stop = True
for t in ths:
    t.join()
if answered[0] < 20:
    sys.exit(f"FAIL: only {answered[0]} answers during the reloads")
print(f"ok: {answered[0]} answers while the server restarted 6 times, then a stop")
PY
wait "$AGENT_PID"
AGENT_STATUS=$?
AGENT_PID=
[ "$AGENT_STATUS" = 0 ] || fail "exit status $AGENT_STATUS after the reloads and stop"
[ "$(grep -c 'status endpoint on' "$T/agent.log")" -ge 4 ] || fail "the reloads did not restart the server"
! grep -E " (err|crit|alert|emerg) " "$T/agent.log" || fail "errors logged"
ok "status endpoint: routes, auth, limits, reload and stop"
