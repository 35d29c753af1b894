#!/bin/bash
# Installs the Debian 12 packages mittari needs to build, run and test, if
# any is missing (as root). Used by the demo, the test command and CI.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config
  libuv1-dev libsqlite3-dev libyaml-dev libsystemd-dev libsodium-dev libssl-dev
  libmodbus-dev libserialport-dev liblua5.4-dev libpcsclite-dev
  libcmocka-dev tzdata sqlite3 python3 valgrind procps systemd
  socat pcscd vsmartcard-vpcd
  libcurl4-openssl-dev libmosquitto-dev libpq-dev zlib1g-dev
  mosquitto mosquitto-clients postgresql openssl
  clang-14 libclang-rt-14-dev
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  if [ "$(id -u)" != 0 ]; then
    echo "deps.sh: run as root (or install these packages): ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  # never let the packages start their daemons (pcscd, ...) on a systemd host:
  # tests start their own on private sockets and ports
  added_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    added_policy=1
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ -n "$added_policy" ] && rm -f /usr/sbin/policy-rc.d
fi
