#!/usr/bin/python3
"""The D-Bus policy shipped for the ble plugin (packaging/dbus/mittari-ble.conf)
is enough and no more (tests/integration/test_ble_policy.sh). A private
dbus-daemon gets the system bus's default policy (method calls denied,
signals and requested replies allowed) plus, for the test's own driver,
only the mock's control interfaces and introspection; the shipped policy is included with its
user set to whoever runs the test (the agent's user in production).

- Without the policy the agent cannot ask BlueZ anything: down with
  org.freedesktop.DBus.Error.AccessDenied.
- With it: the filter is set, discovery starts, and a device BlueZ reports
  only by PropertiesChanged is looked up with GetAll (its address type
  arrives: the visit is tagged "resolvable", not "unknown").
- Calls the plugin never makes stay denied to the same user (RemoveDevice).
"""
import getpass
import os
import sys
import time

import dbus

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from blemock import DEVICE, Fail, MOCK, OBJMGR, dev_path, run, wait_for  # noqa: E402,F401

BUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <listen>unix:tmpdir=/tmp</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow own="org.bluez"/>
    <allow send_destination="org.bluez" send_interface="org.freedesktop.DBus.Mock"/>
    <allow send_destination="org.bluez" send_interface="org.bluez.Mock"/>
    <allow send_destination="org.bluez" send_interface="org.freedesktop.DBus.Introspectable"/>
  </policy>
%s
</busconfig>
"""

PHONE = "5A:00:00:00:00:41"


def start(tmp, bluez, agent, policy):
    conf = os.path.join(tmp, "bus-%s.conf" % ("with" if policy else "without"))
    include = ""
    if policy:
        text = open(os.path.join(os.environ["SOURCE_DIR"], "packaging/dbus/mittari-ble.conf")).read()
        assert 'user="mittari"' in text
        path = os.path.join(tmp, "mittari-ble.conf")
        open(path, "w").write(text.replace('user="mittari"', 'user="%s"' % getpass.getuser()))
        include = "<include>%s</include>" % path
    open(conf, "w").write(BUS_CONF % include)
    bluez.start_bus(conf)
    bluez.start_bluetoothd()
    bluez.add_adapter()
    agent.configure("""inputs:
  scan:
    plugin: ble
    bus: %s
    window: 1s
    gap_timeout: 1s
    rssi_threshold: -75
    retry_interval: 1s
""" % bluez.address)
    agent.start()


def without(tmp, bluez, agent):
    start(tmp, bluez, agent, False)
    wait_for("AccessDenied", lambda: "instance down: GetManagedObjects failed: "
             "org.freedesktop.DBus.Error.AccessDenied" in agent.log_text())
    assert bluez.calls("StartDiscovery") == 0
    print("ok: without the policy: down, AccessDenied")


def with_policy(tmp, bluez, agent):
    start(tmp, bluez, agent, True)
    wait_for("StartDiscovery", lambda: bluez.calls("StartDiscovery") >= 1)
    # a device BlueZ already had: no InterfacesAdded, only its advertisements
    path = dev_path("hci0", PHONE)
    bluez.root().AddObject(path, DEVICE, {
        "Address": dbus.String(PHONE, variant_level=1),
        "AddressType": dbus.String("random", variant_level=1),
        "RSSI": dbus.Int16(-60, variant_level=1)}, [])
    for k in range(4):
        bluez.advertise(PHONE, rssi=-60 - k % 2)
        time.sleep(0.3)
    wait_for("GetAll", lambda: "GetAll %s org.bluez.Device1" % path in bluez.log_text())
    visit = wait_for("the visit", lambda: [r for r in agent.readings() if r["metric"] == "ble.visit"])
    assert visit[0]["tags"]["address_type"] == "resolvable", visit
    assert "AccessDenied" not in agent.log_text(), agent.log_text()
    try:
        bluez.obj("/org/bluez/hci0").RemoveDevice(dbus.ObjectPath(path),
                                                   dbus_interface="org.bluez.Adapter1")
        raise Fail("RemoveDevice was allowed: the policy grants more than the plugin needs")
    except dbus.exceptions.DBusException as e:
        assert e.get_dbus_name() == "org.freedesktop.DBus.Error.AccessDenied", e
    rc = agent.stop()
    assert rc == 0, rc
    print("ok: with the policy: discovery started, GetAll answered, RemoveDevice still denied")


if __name__ == "__main__":
    tmp = os.environ["T"]
    for i, step in enumerate((without, with_policy)):
        os.environ["T"] = os.path.join(tmp, str(i))
        os.makedirs(os.environ["T"])
        if run(step):
            sys.exit(1)
    sys.exit(0)
