#!/bin/bash
# Installs the Debian 12 packages mittari needs to build, test and run, if
# any is missing (as root). Used by the demo, the test command and CI.
# Ends with "deps.sh: ok ..." or names the step that failed.
#   MITTARI_POLICY_RC_D   the policy-rc.d file (default /usr/sbin/policy-rc.d);
#                         tests point it elsewhere
set -euo pipefail
. "$(dirname "$0")/status.sh"
status_init deps.sh

# Three lists (docs/operations.md, "Installing the package"):
# build: compilers, headers, and what turns the build into man pages and a
# .deb (python3: packaging/manpage.py; dpkg-dev, file: CPack's dpkg-shlibdeps)
BUILD_PKGS=(
  build-essential cmake pkg-config python3 dpkg-dev file
  libuv1-dev libsqlite3-dev libyaml-dev libsystemd-dev libsodium-dev
  libmodbus-dev libserialport-dev liblua5.4-dev libpcsclite-dev
  libcurl4-openssl-dev libmosquitto-dev libpq-dev zlib1g-dev
)
# test: what the tests run, start or compare against; never on a gateway
# (libssl-dev: the reference HMAC; systemd: systemd-analyze; groff-base: the
# man page check; clang: the fuzz targets; chromium and a font: the status
# page in a headless browser; python3-prometheus-client: an independent
# parser of /metrics)
TEST_PKGS=(
  libcmocka-dev libssl-dev sqlite3 valgrind procps systemd groff-base
  socat pcscd vsmartcard-vpcd
  dbus-daemon dbus-session-bus-common python3-dbus python3-dbusmock
  clang-14 libclang-rt-14-dev
  faketime openssl util-linux
  mosquitto mosquitto-clients postgresql
  chromium fonts-dejavu-core python3-prometheus-client
)
# run: what the installed agent needs besides the libraries it links (the
# .deb gets those from dpkg-shlibdeps): the same as the non-library part of
# CPACK_DEBIAN_PACKAGE_DEPENDS in packaging/deb.cmake (test_deb checks)
RUN_PKGS=(
  tzdata passwd
)
PKGS=("${BUILD_PKGS[@]}" "${TEST_PKGS[@]}" "${RUN_PKGS[@]}")
policy=${MITTARI_POLICY_RC_D:-/usr/sbin/policy-rc.d}

step "look for missing packages (dpkg-query)"
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} = 0 ]; then
  status_ok "ok (all ${#PKGS[@]} packages installed)"
  exit 0
fi

step "check for root"
echo "deps.sh: installing: ${missing[*]}" >&2
if [ "$(id -u)" != 0 ]; then
  echo "deps.sh: run as root (or install these packages): ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# never let the packages start their daemons (pcscd, ...) on a systemd host:
# tests start their own on private sockets and ports. A policy-rc.d that is
# there already (Debian's container images ship one) is left as it is; one
# added here is removed on any exit, also a failed one.
if [ ! -e "$policy" ]; then
  step "add $policy"
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod +x "$policy"
  status_on_exit "rm -f '$policy'"
fi
step "apt-get update"
apt-get update -qq
step "apt-get install ${missing[*]}"
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
status_ok "ok (installed ${#missing[@]} packages: ${missing[*]})"
exit 0
