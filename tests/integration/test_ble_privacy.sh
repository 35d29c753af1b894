#!/bin/bash
# Raw Bluetooth addresses never reach the database, its WAL, the output or
# the agent's logs, in any encoding, whatever BlueZ does
# (plugins/ble/testdata/it_ble_privacy.py, addrleak.py).
. "$(dirname "$0")/lib.sh"
command -v dbus-daemon >/dev/null && /usr/bin/python3 -c 'import dbusmock, dbus' 2>/dev/null || {
    echo "dbus-daemon or python3-dbusmock missing (packaging/dev/deps.sh installs them)"; exit 77; }
T="$T" /usr/bin/python3 "$SOURCE_DIR/plugins/ble/testdata/it_ble_privacy.py" || fail "see above"
