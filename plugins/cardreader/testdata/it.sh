# Helpers for tests/integration/test_cardreader_*.sh, sourced after
# tests/integration/lib.sh: simulated readers (cardsim.py) driven
# through a FIFO each, the agent's configuration, and reading the output.
CARDSIM="$SOURCE_DIR/plugins/cardreader/testdata/cardsim.py"
SIM_PIDS=
SIM_N=0

cardreader_cleanup() {
    local p
    for p in $SIM_PIDS; do
        kill "$p" 2>/dev/null
    done
    for p in $SIM_PIDS; do
        wait "$p" 2>/dev/null
    done
    cleanup # lib.sh: the agent and $T
}
trap cardreader_cleanup EXIT

# sim_start NAME pty|evdev PATH: a simulated reader; send it commands with
# `sim NAME CMD...` (see cardsim.py). A pty reader is ready at once; an
# evdev one once the agent opened its FIFO (mkfifo PATH first).
sim_start() {
    local name=$1 fd
    mkfifo "$T/$name.cmd"
    /usr/bin/python3 "$CARDSIM" "$2" "$3" <"$T/$name.cmd" >"$T/$name.out" 2>&1 &
    SIM_PIDS="$SIM_PIDS $!"
    exec {fd}>"$T/$name.cmd"
    eval "SIM_FD_$name=$fd"
}

sim() {
    local v="SIM_FD_$1"
    shift
    echo "$*" >&"${!v}"
}

# sim_sync NAME: waits until the simulator has done everything sent so far
sim_sync() {
    SIM_N=$((SIM_N + 1))
    sim "$1" echo "sync$SIM_N"
    wait_for 20 grep -qx "sync$SIM_N" "$T/$1.out" || fail "simulator $1 stuck: $(cat "$T/$1.out")"
}

sim_ready() {
    wait_for 20 grep -qx ready "$T/$1.out" || fail "simulator $1 did not start: $(cat "$T/$1.out")"
}

# conf_base: the agent section and a JSON Lines output in $T/out/r.jsonl
conf_base() {
    mkdir -p "$T/conf" "$T/out"
    cat >"$T/conf/10-agent.yaml" <<YAML
agent:
  site: it-cardreader
  data_dir: $T/data
  stats_interval: 1s
  log_level: debug
outputs:
  out:
    type: file
    path: $T/out/r.jsonl
YAML
}

# nreadings [DEVICE]: readings delivered to the output so far
nreadings() {
    [ -f "$T/out/r.jsonl" ] || { echo 0; return; }
    if [ -n "${1:-}" ]; then
        grep -c "\"device\":\"$1\"" "$T/out/r.jsonl" || true
    else
        wc -l <"$T/out/r.jsonl"
    fi
}

have_readings() {
    [ "$(nreadings "${2:-}")" -ge "$1" ]
}

# want_readings N [DEVICE]: waits until N readings are delivered; fails on more
want_readings() {
    wait_for 20 have_readings "$1" "${2:-}" ||
        fail "expected $1 readings${2:+ of $2}, have $(nreadings "${2:-}")"
    local n
    n=$(nreadings "${2:-}")
    [ "$n" -eq "$1" ] || fail "expected $1 readings${2:+ of $2}, have $n"
}

# subjects DEVICE: the subjects of a device's readings, one a line
subjects() {
    python3 -c '
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["device"] == sys.argv[2]:
        print(r.get("subject", "-"))' "$T/out/r.jsonl" "$1"
}

# stats_has TEXT: waits for a statistics line of the agent holding TEXT
stats_has() {
    wait_for 20 grep -q "stats: .*$1" "$T/agent.log" || fail "no '$1' in the statistics"
}
