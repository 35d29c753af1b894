# Helpers for the Modbus integration tests (sourced after tests/integration/
# lib.sh): start tests/modbus/mbsim, send it commands, read its state.
# The simulator is killed on exit together with the agent.
SIM_PID=
MBSIM=${MBSIM:-$BUILD_DIR/tests/mbsim}
trap 'if [ -n "$SIM_PID" ]; then kill "$SIM_PID" 2>/dev/null; wait "$SIM_PID" 2>/dev/null; fi; cleanup' EXIT

# start_sim SPECFILE [TICK_MS]: the simulator, its state in $T/sim.json
start_sim() {
  mkfifo "$T/sim.ctl"
  "$MBSIM" --tick "${2:-100}" --seed 5 --state "$T/sim.json" --ctl "$T/sim.ctl" "$1" \
    >"$T/sim.out" 2>"$T/sim.err" &
  SIM_PID=$!
  exec 7>"$T/sim.ctl"
  wait_for 10 test -s "$T/sim.json" || fail "simulator did not start: $(cat "$T/sim.err")"
}

SIM_SEQ=0
# sim_cmd LINE...: each command, then a dump to $T/sim.json once all are applied
sim_cmd() {
  local l
  for l in "$@"; do echo "$l" >&7; done
  SIM_SEQ=$((SIM_SEQ + 1))
  echo "dump $T/sim.$SIM_SEQ.json" >&7
  wait_for 10 test -s "$T/sim.$SIM_SEQ.json" || fail "simulator did not answer: $(cat "$T/sim.err")"
  mv "$T/sim.$SIM_SEQ.json" "$T/sim.json"
}

# sim_get EXPR: a Python expression over d (the state); devices by name in dev
sim_get() {
  python3 - "$T/sim.json" "$1" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
dev = {x["name"]: x for x in d["devices"]}
print(eval(sys.argv[2]))
PY
}

# sim_until SECONDS EXPR: polls the state until EXPR is true
sim_until() {
  local end=$((SECONDS + $1))
  while :; do
    sim_cmd
    [ "$(sim_get "$2")" = True ] && return 0
    [ $SECONDS -ge $end ] && return 1
    sleep 0.2
  done
}

# check_exact DB: for every device of the simulator, the deltas of its
# counter series (cumulative, so stored with their width) in the log add up
# to the simulator's true increments of its counters: none lost, none
# counted twice. Every counter must have been read.
check_exact() {
  python3 - "$1" "$T/sim.json" <<'PY'
import json, sqlite3, sys
con = sqlite3.connect(sys.argv[1])
state = json.load(open(sys.argv[2]))
sums = dict(con.execute(
    "select s.device, sum(r.value) from readings r join series s on s.id = r.series"
    " where s.bits > 0 group by s.device"))
bad, checked, total = [], 0, 0
for d in state["devices"]:
    if not d["counters"]:
        continue
    unread = [c["addr"] for c in d["counters"] if not c["served"]]
    if unread:
        bad.append("%s: counters at %s never read by the agent" % (d["name"], unread))
        continue
    want = sum(c["total"] for c in d["counters"])
    got = sums.get(d["name"], 0)
    checked += 1
    total += want
    if got != want:
        bad.append("%s: log %s, device counted %d" % (d["name"], got, want))
if bad:
    sys.exit("\n".join(bad))
if checked == 0 or total == 0:
    sys.exit("nothing was counted: the test tested nothing")
print("%d devices, %d passes, each counted exactly once" % (checked, total))
PY
}
