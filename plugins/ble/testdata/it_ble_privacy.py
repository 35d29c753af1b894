#!/usr/bin/python3
"""No raw Bluetooth address reaches the disk or the logs
(tests/integration/test_ble_privacy.sh). The agent (log level debug) sees
phones of every address type, the municipality's beacons, someone else's
iBeacon, a malformed frame, a device known only from PropertiesChanged
(looked up with GetAll), BlueZ forgetting a device, the adapter removed and
bluetoothd restarted; visits end, so addresses went to emit as subjects.
Then neither the database, its WAL, the output nor the agent's logs may
hold any of the addresses in any encoding (addrleak.py): checked while the
agent runs (the WAL holds the last commits) and after it stopped. The
checker itself is shown to find an address where there is one.
"""
import os
import sys
import time

import dbus

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import addrleak  # noqa: E402
from blemock import DEVICE, EDDYSTONE, Fail, dev_path, mfr, run, svc, wait_for  # noqa: E402

PHONES = {
    "5A:3C:91:E7:2B:41": "random",  # resolvable private
    "4E:B2:07:C8:95:D3": "random",  # resolvable private
    "1F:6D:A4:58:C0:77": "random",  # non-resolvable
    "E8:45:1B:9C:3A:62": "random",  # static
    "00:1A:7D:DA:71:13": "public",
}
IBEACON = "C7:19:5E:A2:84:0D"
EDDY = "D2:8B:36:F1:4C:E9"
LATE = "6C:E3:0A:75:B9:2F"  # BlueZ had it before: only PropertiesChanged
ALL = list(PHONES) + [IBEACON, EDDY, LATE]
UUID = bytes.fromhex("f7826da64fa24e988024bc5b71e0893e")


def check(tmp, agent, when):
    paths = [agent.data, os.path.dirname(agent.out), agent.log, agent.stdout]
    n, found = addrleak.scan(ALL, paths)
    if n < 4:
        raise Fail("only %d files to check %s" % (n, when))
    if found:
        raise Fail("an address on disk or in a log %s:\n%s" % (when, "\n".join(found[:10])))
    print("ok: no address in %d files %s" % (n, when))


def main(tmp, bluez, agent):
    # the checker finds what is there
    control = os.path.join(tmp, "control")
    for planted in ("x 5a-3c-91-e7-2b-41 y", "dev_00_1A_7D_DA_71_13", "x 99216192383809 y"):
        open(control, "w").write(planted)
        if not addrleak.scan(ALL, [control])[1]:
            raise Fail("addrleak misses %r" % planted)
    open(control, "wb").write(b"..." + bytes.fromhex("412be7913c5a") + b"...")  # raw, HCI order
    if not addrleak.scan(ALL, [control])[1]:
        raise Fail("addrleak misses raw bytes")
    os.unlink(control)

    bluez.start_bus()
    bluez.start_bluetoothd()
    bluez.add_adapter()
    agent.configure("""inputs:
  scan:
    plugin: ble
    bus: %s
    window: 1s
    gap_timeout: 1s
    rssi_threshold: -75
    retry_interval: 500ms
    allowlist:
      - name: trail
        ibeacon_uuid: f7826da6-4fa2-4e98-8024-bc5b71e0893e
      - name: hall
        eddystone_namespace: 8b0ca750095477cb3e77
""" % bluez.address)
    agent.start()
    wait_for("discovery", lambda: bluez.calls("StartDiscovery") >= 1)
    for a, t in PHONES.items():
        bluez.add_device(a, addr_type=t, rssi=-60,
                         data={"ManufacturerData": mfr(0x004C, bytes([2, 0x15]) + bytes(16) + b"\0\1\0\2\xc5")}
                         if t == "public" else None)
    bluez.add_device(IBEACON, rssi=-60, data={"ManufacturerData": mfr(0x004C, bytes([2, 0x15]) + UUID + b"\0\1\x9c\x40\xc5")})
    bluez.add_device(EDDY, rssi=-60, data={"ServiceData": svc(EDDYSTONE, bytes.fromhex("00ee8b0ca750095477cb3e770a0b0c0d0e0f0000"))})
    bluez.root().AddObject(dev_path("hci0", LATE), DEVICE, {
        "Address": dbus.String(LATE, variant_level=1),
        "AddressType": dbus.String("random", variant_level=1),
        "RSSI": dbus.Int16(-61, variant_level=1)}, [])
    for k in range(10):
        for a in PHONES:
            bluez.advertise(a, rssi=-60 - k % 2)
        bluez.advertise(LATE, rssi=-62 - k % 2)
        bluez.advertise(EDDY, rssi=-65, ServiceData=svc(EDDYSTONE, bytes.fromhex("20000bb8fac00001020300002710")))
        bluez.advertise("5A:3C:91:E7:2B:41", ManufacturerData=mfr(0x004C, bytes([2, 0x15, 1, 2])))  # malformed
        time.sleep(0.2)
    bluez.remove_device("1F:6D:A4:58:C0:77")  # BlueZ forgets it
    bluez.remove_adapter()
    wait_for("down", lambda: "adapter hci0 was removed" in agent.log_text())
    bluez.add_adapter()
    bluez.stop_bluetoothd()
    bluez.start_bluetoothd()
    bluez.add_adapter()
    wait_for("visits of every phone", lambda: len({r["subject"] for r in agent.readings()
                                                    if r["metric"] == "ble.visit"}) >= 6)
    wait_for("the malformed counter", lambda: agent.counter("malformed") > 0)
    assert any(r["device"] == "hall.0a0b0c0d0e0f" for r in agent.readings())
    if not [f for f in os.listdir(agent.data) if f.endswith("-wal")]:
        raise Fail("no WAL to check")
    check(tmp, agent, "while the agent runs")
    rc = agent.stop()
    assert rc == 0, rc
    check(tmp, agent, "after the agent stopped")
    agent.check_db_matches_output()


if __name__ == "__main__":
    sys.exit(run(main))
