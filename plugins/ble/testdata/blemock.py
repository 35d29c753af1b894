"""Helpers for the ble plugin's integration tests: a private dbus-daemon,
python3-dbusmock's bluez5 template standing in for bluetoothd, the real
agent, and reading what it wrote.

Where the template lacks something, the mock is extended from here with
dbusmock's own API (org.freedesktop.DBus.Mock):
- devices are made with AddObject + an InterfacesAdded signal instead of the
  template's AddDevice, which always says AddressType "public", RSSI -79, and
  types ManufacturerData/ServiceData as aa{qv}/aa{sv} (../shared/TESTING.md);
- advertisements are PropertiesChanged signals sent with EmitSignal, because
  Mock.UpdateProperties fails on dictionary values;
- the adapter's Powered is switched with UpdateProperties (a scalar: works);
- StartDiscovery is replaced with AddMethod to fail a few times
  (org.bluez.Error.NotReady), for the retry path.
Addresses used here must never show up in what the agent writes: the tests
check that (addrleak.py).
"""
import calendar
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time

import dbus

DEVICE = "org.bluez.Device1"
ADAPTER = "org.bluez.Adapter1"
MOCK = "org.freedesktop.DBus.Mock"
PROPS = "org.freedesktop.DBus.Properties"
OBJMGR = "org.freedesktop.DBus.ObjectManager"
EDDYSTONE = "0000feaa-0000-1000-8000-00805f9b34fb"

# dbus-python logs a failed call before raising it; the tests expect some
# (a device of a mock that was just restarted) and handle the exception
logging.getLogger("dbus").setLevel(logging.CRITICAL)


class Fail(Exception):
    pass


def wait_for(what, pred, timeout=20.0, step=0.05):
    """Polls pred() until it is true (returns its value) or fails the test."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise Fail("timed out waiting for " + what)
        time.sleep(step)


def ay(b):
    return dbus.Array([dbus.Byte(x) for x in b], signature="y")


def mfr(company, data):
    return dbus.Dictionary({dbus.UInt16(company): dbus.Array([dbus.Byte(x) for x in data],
                                                              signature="y", variant_level=1)},
                           signature="qv")


def svc(uuid, data):
    return dbus.Dictionary({dbus.String(uuid): dbus.Array([dbus.Byte(x) for x in data],
                                                           signature="y", variant_level=1)},
                           signature="sv")


def dev_path(adapter, addr):
    return "/org/bluez/%s/dev_%s" % (adapter, addr.replace(":", "_").upper())


class Bluez:
    """A private system bus with the bluez5 mock on it."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.sock = os.path.join(tmp, "bus")
        self.address = "unix:path=" + self.sock  # no guid: a restarted daemon has another
        self.daemon = None
        self.mock = None
        self.nmock = 0
        self.bus = None

    def start_bus(self, config="/usr/share/dbus-1/session.conf"):
        """config: a dbus-daemon configuration; its <listen> is replaced by
        this bus's socket."""
        log = open(os.path.join(self.tmp, "dbus.log"), "w")
        self.daemon = subprocess.Popen(
            ["dbus-daemon", "--config-file=" + config, "--address=" + self.address, "--nofork",
             "--nopidfile"], stdout=log, stderr=log)
        wait_for("the bus socket", lambda: os.path.exists(self.sock))
        self.bus = wait_for("a bus connection", self._connect)

    def _connect(self):
        try:
            return dbus.bus.BusConnection(self.address)
        except dbus.exceptions.DBusException:
            return None

    def start_bluetoothd(self):
        """Starts (or restarts) the mock as the owner of org.bluez."""
        self.nmock += 1
        self.mock_log = os.path.join(self.tmp, "mock%d.log" % self.nmock)
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.address)
        out = open(os.path.join(self.tmp, "mock%d.out" % self.nmock), "w")
        self.mock = subprocess.Popen(["/usr/bin/python3", "-m", "dbusmock", "-t", "bluez5",
                                      "-l", self.mock_log], env=env, stdout=out, stderr=out)
        wait_for("org.bluez on the bus", lambda: self.bus.name_has_owner("org.bluez"))

    def stop_bluetoothd(self):
        self.mock.terminate()
        self.mock.wait(10)
        self.mock = None
        wait_for("org.bluez gone", lambda: not self.bus.name_has_owner("org.bluez"))

    def stop(self):
        for p in (self.mock, self.daemon):
            if p and p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()

    def obj(self, path):
        return self.bus.get_object("org.bluez", path)

    def root(self):
        return dbus.Interface(self.obj("/"), MOCK)

    def log_text(self):
        try:
            return open(self.mock_log).read()
        except FileNotFoundError:
            return ""

    def calls(self, name):
        """How many times the agent called a method of this mock (its log)."""
        return sum(1 for line in self.log_text().splitlines() if line.split(" ")[1:2] == [name])

    # adapter

    def add_adapter(self, name="hci0"):
        self.obj("/").AddAdapter(name, "gateway", dbus_interface="org.bluez.Mock")

    def remove_adapter(self, name="hci0"):
        self.obj("/").RemoveAdapter(name, dbus_interface="org.bluez.Mock")

    def power(self, on, name="hci0"):
        dbus.Interface(self.obj("/org/bluez/" + name), MOCK).UpdateProperties(
            ADAPTER, {"Powered": dbus.Boolean(on, variant_level=1)})

    def discovery_filter(self, name="hci0"):
        return self.obj("/org/bluez/" + name).Get(ADAPTER, "DiscoveryFilter",
                                                   dbus_interface=PROPS)

    def fail_start_discovery(self, times, name="hci0"):
        code = ("self.ble_fails = getattr(self, 'ble_fails', 0) + 1\n"
                "if self.ble_fails <= %d:\n"
                "    raise dbus.exceptions.DBusException('not ready', "
                "name='org.bluez.Error.NotReady')\n" % times)
        dbus.Interface(self.obj("/org/bluez/" + name), MOCK).AddMethod(
            ADAPTER, "StartDiscovery", "", "", code)

    # devices

    def add_device(self, addr, addr_type="random", rssi=None, data=None, adapter="hci0"):
        """A device as BlueZ creates it from an advertisement."""
        path = dev_path(adapter, addr)
        props = {
            "Address": dbus.String(addr, variant_level=1),
            "AddressType": dbus.String(addr_type, variant_level=1),
            "Adapter": dbus.ObjectPath("/org/bluez/" + adapter, variant_level=1),
            "Paired": dbus.Boolean(False, variant_level=1),
            "Connected": dbus.Boolean(False, variant_level=1),
            "Alias": dbus.String(addr.replace(":", "-"), variant_level=1),
        }
        if rssi is not None:
            props["RSSI"] = dbus.Int16(rssi, variant_level=1)
        for k, v in (data or {}).items():
            props[k] = dbus.Dictionary(v, signature=v.signature, variant_level=1)
        self.root().AddObject(path, DEVICE, props, [])
        self.root().EmitSignal(OBJMGR, "InterfacesAdded", "oa{sa{sv}}",
                               [dbus.ObjectPath(path), {DEVICE: props}])
        return path

    def remove_device(self, addr, adapter="hci0"):
        """BlueZ forgetting an unpaired device (TemporaryTimeout)."""
        path = dev_path(adapter, addr)
        self.root().RemoveObject(path)
        self.root().EmitSignal(OBJMGR, "InterfacesRemoved", "oas",
                               [dbus.ObjectPath(path), dbus.Array([DEVICE], signature="s")])

    def advertise(self, addr, rssi=None, adapter="hci0", **data):
        """One advertisement as BlueZ reports it with DuplicateData: a
        PropertiesChanged of RSSI and the data in it."""
        changed = {}
        if rssi is not None:
            changed["RSSI"] = dbus.Int16(rssi, variant_level=1)
        for k, v in data.items():
            changed[k] = dbus.Dictionary(v, signature=v.signature, variant_level=1)
        dbus.Interface(self.obj(dev_path(adapter, addr)), MOCK).EmitSignal(
            PROPS, "PropertiesChanged", "sa{sv}as",
            [DEVICE, dbus.Dictionary(changed, signature="sv"), dbus.Array([], signature="s")])


class Agent:
    """The real agent with the ble plugin, a JSON Lines output and its log."""

    def __init__(self, tmp, mittari, plugin_dir):
        self.tmp = tmp
        self.mittari = mittari
        self.plugin_dir = plugin_dir
        self.conf = os.path.join(tmp, "conf")
        self.data = os.path.join(tmp, "data")
        self.out = os.path.join(tmp, "out", "r.jsonl")
        self.log = os.path.join(tmp, "agent.log")
        self.stdout = os.path.join(tmp, "agent.out")
        self.proc = None
        os.makedirs(self.conf, exist_ok=True)
        os.makedirs(os.path.dirname(self.out), exist_ok=True)

    def configure(self, inputs_yaml):
        with open(os.path.join(self.conf, "10-agent.yaml"), "w") as f:
            f.write("agent:\n  site: it-ble\n  data_dir: %s\n  stats_interval: 1s\n"
                    "  log_level: debug\noutputs:\n  out:\n    type: file\n    path: %s\n"
                    % (self.data, self.out))
        with open(os.path.join(self.conf, "20-inputs.yaml"), "w") as f:
            f.write(inputs_yaml)
        r = subprocess.run([self.mittari, "check", "-c", self.conf, "--plugin-dir",
                            self.plugin_dir], capture_output=True, text=True)
        if r.returncode != 0:
            raise Fail("mittari check: " + r.stdout + r.stderr)

    def start(self):
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        self.proc = subprocess.Popen([self.mittari, "run", "-c", self.conf, "--plugin-dir",
                                      self.plugin_dir], stdout=open(self.stdout, "a"),
                                     stderr=open(self.log, "a"), env=env)

    def stop(self, sig=signal.SIGTERM):
        if not self.proc:
            return None
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.proc = None
        return rc

    def log_text(self):
        try:
            return open(self.log).read()
        except FileNotFoundError:
            return ""

    def readings(self):
        out = []
        try:
            with open(self.out) as f:
                for line in f:
                    if line.endswith("\n"):
                        out.append(json.loads(line))
        except FileNotFoundError:
            pass
        return out

    def counter(self, name):
        """The instance's counter from the last statistics line."""
        last = 0
        for line in self.log_text().splitlines():
            if "stats:" in line and "ble[" in line:
                for part in line.split(";"):
                    part = part.strip()
                    if part.startswith(name + " "):
                        last = int(part.split()[1])
        return last

    def check_db_matches_output(self):
        con = sqlite3.connect(os.path.join(self.data, "mittari.db"))
        n = con.execute("select count(*) from readings").fetchone()[0]
        con.close()
        got = len(self.readings())
        if n != got or n == 0:
            raise Fail("the log holds %d readings, the output %d" % (n, got))


def ts_us(r):
    """A reading's timestamp in µs since the epoch (JSON Lines: RFC 3339 UTC)."""
    t = r["ts"]
    secs = calendar.timegm(time.strptime(t[:19], "%Y-%m-%dT%H:%M:%S"))
    frac = t[20:-1] if len(t) > 20 else "0"
    return int(secs) * 1000000 + int(frac.ljust(6, "0")[:6])


def run(main):
    """Runs main(tmp, bluez, agent) and reports; exit status for ctest."""
    tmp = os.environ["T"]
    bluez = Bluez(tmp)
    agent = Agent(tmp, os.environ["MITTARI"], os.path.join(os.environ["BUILD_DIR"], "plugins"))
    try:
        main(tmp, bluez, agent)
        return 0
    except (Fail, AssertionError) as e:
        print("FAIL:", e, file=sys.stderr)
        print("--- agent log (tail)", file=sys.stderr)
        print("\n".join(agent.log_text().splitlines()[-25:]), file=sys.stderr)
        return 1
    finally:
        agent.stop(signal.SIGKILL)
        bluez.stop()
