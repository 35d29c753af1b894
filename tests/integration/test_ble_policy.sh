#!/bin/bash
# The D-Bus policy shipped for the ble plugin is enough for it and grants
# nothing more, on a bus with the system bus's default-deny policy
# (plugins/ble/testdata/it_ble_policy.py).
. "$(dirname "$0")/lib.sh"
command -v dbus-daemon >/dev/null && /usr/bin/python3 -c 'import dbusmock, dbus' 2>/dev/null || {
    echo "dbus-daemon or python3-dbusmock missing (packaging/dev/deps.sh installs them)"; exit 77; }
T="$T" /usr/bin/python3 "$SOURCE_DIR/plugins/ble/testdata/it_ble_policy.py" || fail "see above"
