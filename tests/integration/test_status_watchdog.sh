#!/bin/bash
# A stalled loop is detected. systemd's watchdog is emulated: NOTIFY_SOCKET
# points at a datagram socket this test reads and WATCHDOG_USEC asks for a
# ping every 0.5 s (WatchdogSec=1s). The test plugin `loopstall` blocks the
# loop in a timer callback for 8 s: the pings stop for longer than
# WatchdogSec (systemd would kill and restart the agent), /health -- answered
# by the status server's own thread -- says failing with 503 meanwhile, the
# loop-lag histogram records the 8 s turn, and afterwards pings and a 200
# come back. The STATUS= line systemd shows carries health and backlog.
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3

mkdir -p "$T/conf"
cat >"$T/conf/10.yaml" <<YAML
agent:
  site: it-watchdog
  data_dir: $T/data
  stats_interval: 0
  plugin_path: $TEST_PLUGIN_DIR
inputs:
  stuck:
    plugin: loopstall
    after: 2s
    for: 8s
outputs:
  archive:
    type: file
    path: $T/out/readings.jsonl
status:
  listen: 127.0.0.1:0
  refresh: 1s
YAML

PYTHONPATH="$SOURCE_DIR/tests/integration" $PY - "$MITTARI" "$T" "$BUILD_DIR/plugins" <<'PY' || fail "watchdog"
import re, sys, time
from notified_agent import NotifiedAgent

mittari, T, plugins = sys.argv[1:4]
a = NotifiedAgent(mittari, T, plugins, watchdog_usec=1000000, http_timeout=5)
get, fail, msgs = a.get, a.fail, a.msgs

# poll /health through the stall and after it
health = []  # (monotonic, code, body)
t_end = time.monotonic() + 16
while time.monotonic() < t_end:
    code, body = get("/health")
    health.append((time.monotonic(), code, body))
    time.sleep(0.2)
metrics = get("/metrics")[1]
rc = a.stop()
if rc != 0:
    fail(f"exit status {rc}")

if not any(m == "READY=1" or "READY=1" in m.split("\n") for _, m in msgs):
    fail("no READY=1")
pings = [t for t, m in msgs if "WATCHDOG=1" in m.split("\n")]
if len(pings) < 10:
    fail(f"only {len(pings)} watchdog pings")
gaps = [b - a for a, b in zip(pings, pings[1:])]
longest = max(gaps)
# the stall: no ping for about 8 s, beyond WatchdogSec (1 s)
if longest < 6.5:
    fail(f"the longest gap between pings is {longest:.2f} s: the stall went unseen")
k = gaps.index(longest)
before, after = gaps[:k], gaps[k + 1:]
if not before or max(before) > 1.0:
    fail(f"pings before the stall came {max(before or [0]):.2f} s apart (WatchdogSec 1 s)")
if len(after) < 3:
    fail("the pings did not come back after the stall")
print(f"ok: watchdog pings every {sum(before)/len(before):.2f} s, then none for {longest:.1f} s "
      f"(> WatchdogSec 1 s: systemd kills), then {len(after)} more")

stall_start, stall_end = pings[k], pings[k + 1]
failing = [h for h in health if h[1] == 503 and "has not turned" in h[2]]
if not failing:
    fail("/health never said failing while the loop was blocked: %r" % health[-5:])
if not all(stall_start < t < stall_end for t, _, _ in failing):
    fail("/health said the loop was blocked outside the stall")
first_ok = [h for h in health if h[1] == 200 and h[0] < stall_start]
later = [h for h in health if h[0] > stall_end + 1.5]
if not first_ok:
    fail("/health was not 200 before the stall")
if not later or later[-1][1] != 200 or not later[-1][2].startswith("degraded"):
    fail("after the stall /health is %r" % (later[-1:],))
if "blocked for 8." not in later[-1][2] or "stall-2 down" not in later[-1][2]:
    fail("after the stall the reasons are %r" % later[-1][2])
print(f"ok: /health 503 failing {len(failing)} times during the stall, 200 before, "
      f"200 degraded after ('{later[-1][2].splitlines()[1]}')")

buckets = {m.group(1): float(m.group(2)) for m in
           re.finditer(r'mittari_loop_lag_seconds_bucket\{le="([^"]+)"\} (\S+)', metrics)}
if buckets["+Inf"] - buckets["5"] != 1:
    fail(f"the lag histogram has no turn over 5 s: {buckets}")
print("ok: the loop-lag histogram holds the 8 s turn")

status = [m for _, m in msgs if m.startswith("STATUS=")]
if not status or not re.match(r"STATUS=(ok|degraded|failing); inputs \d+/\d+ up; backlog \d+",
                              status[-1]):
    fail("STATUS= lines: %r" % status)
if not any("stall-2 down" in s for s in status):
    fail("no STATUS= line names the device down: %r" % status)
print("ok: STATUS=: " + status[-1])
PY
! grep -E " (err|crit|alert|emerg) " "$T/agent.log" || fail "errors logged"
ok "a stalled loop is detected by the watchdog and by /health"
