#!/bin/bash
# The loop keeps per-device figures in its status snapshot only while
# someone reads /status or /metrics (issue 14: the copy of every device every
# status.refresh was what grew the loop's heap with the number of devices).
# The test plugin `loopstall` reports 40 devices up (one with 5 bad frames)
# and one down, then blocks the loop for 5 s. Checked:
# - /status and /metrics list every device at once, although the periodic
#   snapshots are summaries (the request asks the loop for a detailed one);
# - /health and systemd's STATUS= (an emulated NOTIFY_SOCKET) give the same
#   verdict and reasons from summaries: the device down, "inputs 0/1 up";
# - once nobody has asked for 3 × status.refresh, the loop takes summaries
#   only: a /status answered while the loop is blocked shows the last one,
#   which holds the device down and the input's totals (health, decode
#   errors) and says devices_complete false -- with a detailed snapshot
#   taken every refresh regardless, as before, it would say true;
# - after the stall /status lists every device again.
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3

mkdir -p "$T/conf"
cat >"$T/conf/10.yaml" <<YAML
agent:
  site: it-summary
  data_dir: $T/data
  stats_interval: 0
  plugin_path: $TEST_PLUGIN_DIR
inputs:
  stuck:
    plugin: loopstall
    up: 40
    after: 9s
    for: 5s
status:
  listen: 127.0.0.1:0
  refresh: 1s
YAML

PYTHONPATH="$SOURCE_DIR/tests/integration" $PY - "$MITTARI" "$T" "$BUILD_DIR/plugins" <<'PY' || fail "status summary"
import json, re, sys, time
from notified_agent import NotifiedAgent

mittari, T, plugins = sys.argv[1:4]
a = NotifiedAgent(mittari, T, plugins)
get, fail, agent_log, wait_log = a.get, a.fail, a.log, a.wait_log

def stuck(doc):
    return [i for i in doc["inputs"] if i["name"] == "stuck"][0]

names_all = {"", "stall-2"} | {f"up-{i}" for i in range(1, 41)}

# 1. every device at once, though nobody asked before
deadline = time.monotonic() + 20
while True: # the plugin reports its devices when it starts
    code, body = get("/status")
    if code != 200:
        fail(f"/status answered {code}")
    inp = stuck(json.loads(body))
    if {d["name"] for d in inp["devices"]} >= names_all or time.monotonic() > deadline:
        break
    time.sleep(0.1)
if {d["name"] for d in inp["devices"]} != names_all or inp["devices_complete"] is not True:
    fail("/status does not list every device: %r" % inp)
if inp["health"] != "down" or inp["decode_errors"] != 5:
    fail("/status input figures: %r" % inp)
up40 = [d for d in inp["devices"] if d["name"] == "up-40"][0]
if up40["counters"] != {"polls": 40}:
    fail("up-40's counters: %r" % up40)
metrics = get("/metrics")[1]
devs = set(re.findall(r'mittari_device_up\{input="stuck",device="([^"]*)"\}', metrics))
if devs != names_all:
    fail("/metrics lists %d of %d devices" % (len(devs), len(names_all)))
if 'mittari_device_events_total{input="stuck",device="up-40",event="polls"} 40' not in metrics:
    fail("/metrics has no counter of up-40")
last_detail = time.monotonic()
print(f"ok: /status and /metrics list all {len(names_all)} devices")

# 2. /health from summaries until the loop blocks
health = []
while "blocking the loop" not in agent_log():
    code, body = get("/health")
    health.append((code, body))
    if time.monotonic() > last_detail + 30:
        fail("the loop was not blocked")
    time.sleep(0.3)
stall_at = time.monotonic()
if stall_at - last_detail < 3.5:
    fail(f"the loop blocked {stall_at - last_detail:.1f} s after the last /status: too soon "
         "for this test (3 × refresh)")
if not health or any(c != 200 or not b.startswith("degraded\n") or
                     "input stuck: device stall-2 down: unplugged (on purpose)" not in b
                     for c, b in health):
    fail("/health before the stall: %r" % health[-3:])

# 3. the loop is blocked: /status shows the newest summary
code, body = get("/status")
doc = json.loads(body)
inp = stuck(doc)
if time.monotonic() - stall_at > 4.5:
    fail("the /status during the stall came too late to tell")
if inp["devices_complete"] is not False:
    fail("the loop took detailed snapshots although nobody read /status for %.1f s: %r"
         % (stall_at - last_detail, inp["devices_complete"]))
if [d["name"] for d in inp["devices"]] != ["stall-2"]:
    fail("the summary's devices: %r" % inp["devices"])
if inp["health"] != "down" or inp["decode_errors"] != 5:
    fail("the summary lost the input's totals: %r" % inp)
if not any("stall-2 down" in r for r in doc["health"]["reasons"]):
    fail("the health from a summary: %r" % doc["health"])
code, text = get("/status?format=text")
if "devices not up only" not in text or "stall-2" not in text:
    fail("the text during the stall: %r" % text)
print("ok: with nobody reading, the loop keeps a summary (%s)"
      % [l.strip() for l in text.splitlines() if "not up only" in l][0])

# 4. after the stall: every device again
wait_log("the loop runs again", 20)
inp = stuck(json.loads(get("/status")[1]))
if {d["name"] for d in inp["devices"]} != names_all or inp["devices_complete"] is not True:
    fail("after the stall /status lists %d devices" % len(inp["devices"]))
print("ok: after the stall /status lists every device again")

rc = a.stop()
if rc != 0:
    fail(f"exit status {rc}")
status = [m for m in a.texts() if m.startswith("STATUS=")]
if not status or not all(re.match(r"STATUS=\w+; inputs 0/1 up; backlog 0", s) for s in status):
    fail("STATUS= lines: %r" % status)
if not any("device stall-2 down" in s for s in status):
    fail("no STATUS= line names the device down: %r" % status)
print("ok: STATUS=: " + status[-1])
PY
! grep -E " (err|crit|alert|emerg) " "$T/agent.log" || fail "errors logged"
ok "the status snapshot holds per-device figures only while someone reads them"
