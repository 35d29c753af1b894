#!/bin/bash
# Installs what is missing, builds, and runs the agent on the demo
# configuration (conf.d/: simulated library traffic -> log -> CSV on
# standard output and a JSON Lines archive) until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/../.."
packaging/dev/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
export MITTARI_DATA_DIR="${MITTARI_DATA_DIR:-$PWD/build/demo-data}"
echo "demo: log and archive in $MITTARI_DATA_DIR; readings below as CSV; Ctrl-C stops" >&2
exec build/mittari run -c conf.d
