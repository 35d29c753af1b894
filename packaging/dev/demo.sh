#!/bin/bash
# Installs what is missing, builds, and runs the agent on the demo
# configuration (conf.d/: simulated library traffic -> log -> CSV on
# standard output and a JSON Lines archive) until Ctrl-C.
#   --devices   also play a people counter, a smiley terminal and a card
#               reader on pseudo terminals (tests/devsim) for the real
#               serial, feedback and cardreader plugins
# Ends with "demo.sh: stopped" or names the step that failed.
set -euo pipefail
cd "$(dirname "$0")/../.."
. packaging/dev/status.sh
status_init demo.sh
step "install dependencies (packaging/dev/deps.sh)"
packaging/dev/deps.sh
step "configure build"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
step "build"
cmake --build build -j"$(nproc)" >/dev/null
export MITTARI_DATA_DIR="${MITTARI_DATA_DIR:-$PWD/build/demo-data}"
conf=conf.d
if [ "${1:-}" = "--devices" ]; then
  step "start the simulated devices"
  export DEMO_DEV=$(mktemp -d -t mittari-demo.XXXXXX)
  conf=$DEMO_DEV/conf.d
  mkdir -p "$conf"
  cp conf.d/*.yaml "$conf/" && cp -r conf.d/profiles "$conf/" && cp -r scripts "$DEMO_DEV/"
  cp packaging/dev/demo-devices.yaml "$conf/25-devices.yaml"
  tests/devsim/devsim.py counter --link "$DEMO_DEV/ttyDoor" --interval 2 >/dev/null &
  tests/devsim/devsim.py feedback --link "$DEMO_DEV/ttySmiley" --interval 5 >/dev/null &
  tests/devsim/devsim.py rdm6300 --link "$DEMO_DEV/ttyReader" --interval 7 \
    --cards 0C000621A5,0100D507D0,01004B1F22 >/dev/null &
  status_on_exit 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$DEMO_DEV"'
  sleep 0.5
fi
step "run the agent (mittari run -c $conf)"
echo "demo: log and archive in $MITTARI_DATA_DIR; readings below as CSV; Ctrl-C stops" >&2
echo "demo: status page on http://127.0.0.1:9465/ (mittari status -c conf.d at the console)" >&2
build/mittari run -c "$conf"
status_ok "stopped"
