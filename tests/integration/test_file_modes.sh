#!/bin/bash
# Files the agent creates have one mode, 0640 (directories 0750), whatever
# umask it is started with; a stricter umask is kept. The generated
# pseudonym key is 0600. Issue 9: the log and its -wal/-shm were 0644 under
# umask 022 while the lock and the outputs were 0640.
. "$(dirname "$0")/lib.sh"

mode() { stat -c %a "$1"; }

# run_with_umask MASK DIR: runs an agent with the umask until its log,
# -wal, -shm and output exist, then stops it
run_with_umask() {
  local mask=$1 d=$2
  mkdir -p "$T/conf-$mask"
  cat >"$T/conf-$mask/a.yaml" <<YAML
agent: {site: it-modes, data_dir: $d/data}
inputs: {sim: {plugin: sim, rate: 200, opening_hours: "00:00-24:00"}}
outputs: {archive: {type: file, path: $d/out/readings.jsonl}}
YAML
  mkdir -p "$d/out"
  (umask "$mask" && exec "$MITTARI" run -c "$T/conf-$mask" --plugin-dir "$BUILD_DIR/plugins") \
    2>>"$T/agent.log" &
  AGENT_PID=$!
  wait_for 20 test -s "$d/out/readings.jsonl" -a -e "$d/data/mittari.db-wal" -a -e "$d/data/mittari.db-shm" ||
    fail "umask $mask: log, -wal, -shm or output missing"
  for f in mittari.db mittari.db-wal mittari.db-shm mittari.lock; do
    MODES[$f]=$(mode "$d/data/$f")
  done
  MODES[output]=$(mode "$d/out/readings.jsonl")
  MODES[data_dir]=$(mode "$d/data")
  MODES[key]=$(find "$d/data" -maxdepth 1 -type f ! -name 'mittari.*' -printf '%m %f\n')
  stop_agent TERM
  [ "$AGENT_STATUS" = 0 ] || fail "umask $mask: exit $AGENT_STATUS"
}

declare -A MODES
run_with_umask 022 "$T/u022"
for f in mittari.db mittari.db-wal mittari.db-shm mittari.lock output; do
  [ "${MODES[$f]}" = 640 ] || fail "umask 022: $f has mode ${MODES[$f]}, expected 640"
done
[ "${MODES[data_dir]}" = 750 ] || fail "umask 022: data dir has mode ${MODES[data_dir]}, expected 750"
[[ ${MODES[key]} == "600 pseudonym.key" ]] || fail "umask 022: generated key: ${MODES[key]}"

run_with_umask 077 "$T/u077"
for f in mittari.db mittari.db-wal mittari.db-shm mittari.lock output; do
  [ "${MODES[$f]}" = 600 ] || fail "umask 077: $f has mode ${MODES[$f]}, expected 600 (stricter umask kept)"
done
[ "${MODES[data_dir]}" = 700 ] || fail "umask 077: data dir has mode ${MODES[data_dir]}"
ok "files the agent creates: 0640 (dirs 0750) under umask 022, the umask when stricter"
