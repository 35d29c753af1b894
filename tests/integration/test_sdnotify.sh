#!/bin/bash
# systemd's notify protocol, spoken by the agent itself (agent/sdnotify.c, no
# libsystemd): with NOTIFY_SOCKET naming a datagram socket of this test (the
# abstract namespace, as systemd uses) and a watchdog of 1 s for this very
# process, the agent sends READY=1 when it runs, WATCHDOG=1 every half
# period, RELOADING=1 and READY=1 around a SIGHUP reload, STOPPING=1 on
# SIGTERM. And the agent's binary does not link libsystemd.
. "$(dirname "$0")/lib.sh"

if readelf -d "$MITTARI" | grep -q 'NEEDED.*libsystemd'; then
  fail "mittari links libsystemd: $(readelf -d "$MITTARI" | grep NEEDED)"
fi

mkdir -p "$T/conf"
cat >"$T/conf/10.yaml" <<YAML
agent:
  site: it-notify
  data_dir: $T/data
  stats_interval: 0
inputs:
  sim:
    plugin: sim
    rate: 5
    opening_hours: "00:00-24:00"
YAML

# the receiver: prints each datagram as one line (newlines inside as '|')
addr="@mittari-it-notify-$$"
python3 - "$addr" >"$T/notes" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\0" + sys.argv[1][1:])
s.settimeout(60)
while True:
    try:
        d = s.recv(4096)
    except socket.timeout:
        break
    print(d.decode().replace("\n", "|"), flush=True)
    if d == b"STOPPING=1":
        break
PY
RECV=$!
trap 'kill $RECV 2>/dev/null; cleanup' EXIT
wait_for 10 python3 -c "
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.connect('\0' + sys.argv[1][1:])" "$addr" 2>/dev/null || fail "the receiver did not start"

# WATCHDOG_PID: systemd names the main process; exec keeps the pid
bash -c 'export NOTIFY_SOCKET=$1 WATCHDOG_USEC=1000000 WATCHDOG_PID=$$; shift;
         exec "$@"' _ "$addr" "$MITTARI" run -c "$T/conf" --plugin-dir "$BUILD_DIR/plugins" \
  >"$T/agent.out" 2>>"$T/agent.log" &
AGENT_PID=$!

wait_for 20 grep -qx "READY=1" "$T/notes" || fail "no READY=1: $(cat "$T/notes")"
# 1 s watchdog: pings every 0.5 s
wait_for 20 bash -c "[ \$(grep -cx WATCHDOG=1 '$T/notes') -ge 3 ]" \
  || fail "fewer than 3 WATCHDOG=1: $(tr '\n' ' ' <"$T/notes")"
kill -HUP "$AGENT_PID"
wait_for 20 grep -qx "RELOADING=1" "$T/notes" || fail "no RELOADING=1 after SIGHUP"
wait_for 20 bash -c "sed -n '/^RELOADING=1\$/,\$p' '$T/notes' | grep -qx READY=1" \
  || fail "no READY=1 after the reload: $(tr '\n' ' ' <"$T/notes")"
stop_agent TERM
[ "$AGENT_STATUS" = 0 ] || fail "exit status $AGENT_STATUS"
wait "$RECV" 2>/dev/null
grep -qx "STOPPING=1" "$T/notes" || fail "no STOPPING=1: $(tr '\n' ' ' <"$T/notes")"
bad=$(grep -vxE 'READY=1|RELOADING=1|STOPPING=1|WATCHDOG=1|STATUS=(ok|degraded|failing).*' "$T/notes")
[ -z "$bad" ] || fail "unexpected notifications: $bad"
ok "READY, WATCHDOG ($(grep -cx WATCHDOG=1 "$T/notes")), RELOADING, READY, STOPPING over the notify socket; no libsystemd"

# WATCHDOG_PID of another process: no pings, but READY still sent
: >"$T/notes"
python3 - "$addr" >"$T/notes" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\0" + sys.argv[1][1:])
s.settimeout(30)
while True:
    try:
        d = s.recv(4096)
    except socket.timeout:
        break
    print(d.decode(), flush=True)
    if d == b"STOPPING=1":
        break
PY
RECV=$!
wait_for 10 python3 -c "
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.connect('\0' + sys.argv[1][1:])" "$addr" 2>/dev/null || fail "the receiver did not start"
NOTIFY_SOCKET=$addr WATCHDOG_USEC=1000000 WATCHDOG_PID=1 \
  "$MITTARI" run -c "$T/conf" --plugin-dir "$BUILD_DIR/plugins" >"$T/agent.out" 2>>"$T/agent.log" &
AGENT_PID=$!
wait_for 20 grep -qx "READY=1" "$T/notes" || fail "no READY=1 (second run)"
sleep 1.5
stop_agent TERM
wait "$RECV" 2>/dev/null
! grep -qx "WATCHDOG=1" "$T/notes" || fail "pinged a watchdog meant for pid 1"
ok "a watchdog meant for another process is not pinged"
