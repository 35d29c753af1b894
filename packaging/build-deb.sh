#!/bin/bash
# Builds the Debian package: packaging/build-deb.sh [BUILD_DIR] [REVISION]
#   BUILD_DIR  default build-deb/ (a tree of its own: prefix /usr, no tests)
#   REVISION   the Debian revision, the N of VERSION-N (default 1)
# Prints the path of the .deb on its last line. Needs the build packages of
# packaging/dev/deps.sh (dpkg-dev for dpkg-shlibdeps, file, python3).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$src/build-deb}
rev=${2:-1}
mkdir -p "$dir"
log="$dir/build-deb.log"
# quiet when it works, the whole story when it does not
run() { "$@" >>"$log" 2>&1 || { cat "$log" >&2; echo "build-deb.sh: failed: $*" >&2; exit 1; }; }
: >"$log"
run cmake -S "$src" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=/usr \
  -DMITTARI_PACKAGE=ON -DMITTARI_DEB_REVISION="$rev" -DMITTARI_TESTS=OFF -DMITTARI_BENCH=OFF
run cmake --build "$dir" -j"$(nproc)"
rm -f "$dir"/mittari_*-"$rev"_*.deb
(cd "$dir" && run cpack -G DEB)
deb=$(ls "$dir"/mittari_*-"$rev"_*.deb)
echo "$deb"
