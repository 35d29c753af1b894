# Shell helpers for integration tests that drive tests/devsim/devsim.py in
# script mode (sourced after tests/integration/lib.sh, which provides $T,
# wait_for, fail and the EXIT trap this extends).
#   sim_start NAME ARGS...   devsim script ARGS..., commands through a FIFO
#   sim NAME COMMAND...      one script command ("send IN=1\r\n", "unplug")
#   sim_sync NAME            waits until every command so far was carried out
DEVSIM="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/devsim.py"
SIM_PIDS=()

sim_stop_all() {
  local p
  for p in "${SIM_PIDS[@]}"; do
    kill "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  SIM_PIDS=()
}
trap 'sim_stop_all; cleanup' EXIT

sim_start() {
  local name=$1 fd
  shift
  mkfifo "$T/$name.cmd"
  /usr/bin/python3 "$DEVSIM" script "$@" <"$T/$name.cmd" >"$T/$name.out" 2>"$T/$name.err" &
  SIM_PIDS+=($!)
  exec {fd}>"$T/$name.cmd"
  printf -v "SIMFD_$name" %s "$fd"
  wait_for 5 grep -q '^ready' "$T/$name.out" || fail "devsim $name did not start: $(cat "$T/$name.err")"
}

sim() {
  local name=$1 var="SIMFD_$1"
  shift
  echo "$*" >&"${!var}"
}

SIM_SYNC_N=0
sim_sync() {
  SIM_SYNC_N=$((SIM_SYNC_N + 1))
  sim "$1" "sync $SIM_SYNC_N"
  wait_for 10 grep -q "^sync $SIM_SYNC_N\$" "$T/$1.out" || fail "devsim $1 stuck: $(cat "$T/$1.err")"
}
