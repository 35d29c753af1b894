#!/bin/bash
# The ble plugin in the real agent against python3-dbusmock's BlueZ template
# on a private dbus-daemon: discovery filter, beacons decoded exactly,
# presence counts and dwell times, adapter removal / power / bluetoothd
# restart (plugins/ble/testdata/it_ble.py says what each step proves).
. "$(dirname "$0")/lib.sh"
command -v dbus-daemon >/dev/null && /usr/bin/python3 -c 'import dbusmock, dbus' 2>/dev/null || {
    echo "dbus-daemon or python3-dbusmock missing (packaging/dev/deps.sh installs them)"; exit 77; }
# the shipped example is a valid configuration
mkdir "$T/example"
cp "$SOURCE_DIR/conf.d/10-agent.yaml" "$SOURCE_DIR/conf.d/examples/25-ble.yaml" "$T/example/"
MITTARI_DATA_DIR="$T/example-data" "$MITTARI" check -c "$T/example" --plugin-dir "$BUILD_DIR/plugins" |
    grep -q ": ok" || fail "conf.d/examples/25-ble.yaml does not pass mittari check"
ok "conf.d/examples/25-ble.yaml passes mittari check"
T="$T" /usr/bin/python3 "$SOURCE_DIR/plugins/ble/testdata/it_ble.py" || fail "see above"
