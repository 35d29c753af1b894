#!/bin/bash
# Peer comparison (issue 14): the same Modbus TCP layout polled by mittari and
# by collectd's modbus plugin, CPU and memory measured over the same window.
#
#   bench/modbus_vs_collectd.sh                    N = 100 and 500, 2 rounds
#   NS="100" ROUNDS=1 SETTLE=10 WINDOW=20 bench/modbus_vs_collectd.sh
#   BUILD=dir MITTARI=... PLUGIN_DIR=... MBSIM=...  use an existing build
#   BEFORE=dir   also run the mittari built in dir (its mittari and plugins/),
#                e.g. a build of the branch point: before/after in the same run
#   STATUS_LISTEN=off  the agents' status.listen (default: the agent's default)
#   SMAPS=1      print each agent's resident memory by mapping at the end of
#                the window (/proc/PID/smaps: libraries, heap, stacks)
#
# Each agent gets its own tests/modbus mbsim (the same layout: N TCP devices on
# 127.0.0.1, one port each, a u32 CDAB counter at holding 0 that grows every
# 100 ms), so the requests each one made are counted at its own simulator.
#   mittari: `mittari run`, the modbus plugin at 1 s, the SQLite log only (no
#            outputs; agent defaults, i.e. sync: full).
#   collectd: Debian's collectd-core 5.12 (installed here with apt-get if
#            missing), modbus plugin (Uint32LE = CDAB, ReadHolding) with
#            Interval 1 per host, 5 read threads, the csv writer.
# Both run at the same time (so both see the same load on a shared machine);
# after SETTLE seconds, CPU time (utime + stime of the whole process, from
# /proc/PID/stat) is sampled over WINDOW seconds, then VmRSS, RssAnon, RssFile,
# and each simulator's request counts. Rounds repeat the pair with fresh
# processes; each line says the load average. Nothing here asserts a timing:
# the script fails only when a run did not poll (a device that got fewer than
# half its requests in the window) or stored nothing.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$src/build-bench}
NS=${NS:-"100 500"}
ROUNDS=${ROUNDS:-2}
SETTLE=${SETTLE:-30}
WINDOW=${WINDOW:-60}

if [ -z "${MITTARI:-}" ]; then
  cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DMITTARI_TESTS=OFF \
    -DMITTARI_BENCH=ON >/dev/null
  cmake --build "$build" -j"$(nproc)" --target mittari modbus mbsim >/dev/null
  MITTARI=$build/mittari
  PLUGIN_DIR=$build/plugins
  MBSIM=$build/tests/mbsim
fi
: "${PLUGIN_DIR:?}" "${MBSIM:?}"

# collectd is a bench-only dependency: installed here, not by packaging/dev/deps.sh
if ! dpkg-query -W -f='${Status}' collectd-core 2>/dev/null | grep -q "ok installed"; then
  [ "$(id -u)" = 0 ] || { echo "install collectd-core (as root) first" >&2; exit 1; }
  echo "installing collectd-core" >&2
  added_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then # never start the packaged daemon
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    added_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends collectd-core >/dev/null
  if [ -n "$added_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
fi
COLLECTD=/usr/sbin/collectd
[ -x "$COLLECTD" ] || { echo "no $COLLECTD" >&2; exit 1; }

exec python3 - "$MITTARI" "$PLUGIN_DIR" "$MBSIM" "$COLLECTD" "$NS" "$ROUNDS" "$SETTLE" \
  "$WINDOW" "${BEFORE:-}" "${SMAPS:-0}" <<'PY'
import json, os, shutil, signal, sqlite3, subprocess, sys, tempfile, time

mittari, plugin_dir, mbsim, collectd = sys.argv[1:5]
ns = [int(x) for x in sys.argv[5].split()]
rounds, settle, window = int(sys.argv[6]), float(sys.argv[7]), float(sys.argv[8])
before, want_smaps = sys.argv[9], sys.argv[10] == "1"
HZ = os.sysconf("SC_CLK_TCK")

def load():
    return open("/proc/loadavg").read().split()[:3]

def cpu_s(pid):
    # utime + stime of the whole process, live and reaped threads alike
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / HZ

def status(pid):
    out = {}
    for line in open("/proc/%d/status" % pid):
        k, _, v = line.partition(":")
        if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "Threads"):
            out[k] = int(v.split()[0])
    return out

def smaps(pid):
    """Rss (kB) by mapping: a library's file name, or [heap], [stack], [anon]."""
    by, name = {}, None
    for line in open("/proc/%d/smaps" % pid):
        f = line.split()
        if "-" in f[0] and len(f) >= 5 and not f[0].endswith(":"):
            path = f[5] if len(f) > 5 else "[anon]"
            name = os.path.basename(path) if path.startswith("/") else path
        elif f[0] == "Rss:":
            by[name] = by.get(name, 0) + int(f[1])
    return by

def start_sim(d, n):
    spec = os.path.join(d, "spec")
    with open(spec, "w") as f:
        for i in range(n):
            f.write("tcp d%d\ncounter d%d fn=holding addr=0 type=u32 order=CDAB start=0 step=3\n"
                    % (i, i))
    ctl, state = os.path.join(d, "ctl"), os.path.join(d, "state.json")
    os.mkfifo(ctl)
    p = subprocess.Popen([mbsim, "--tick", "100", "--state", state, "--ctl", ctl, spec],
                         stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "sim.err"), "w"))
    fd = os.open(ctl, os.O_RDWR)
    for _ in range(600):
        if os.path.exists(state) and os.path.getsize(state):
            break
        time.sleep(0.05)
    else:
        sys.exit("simulator did not start: " + open(os.path.join(d, "sim.err")).read())
    ports = [x["port"] for x in json.load(open(state))["devices"]]
    return p, fd, ports

seq = [0]
def sim_received(d, fd):
    seq[0] += 1
    path = os.path.join(d, "dump%d.json" % seq[0])
    os.write(fd, ("dump %s\n" % path).encode())
    for _ in range(400):
        if os.path.exists(path):
            try:
                return [x["received"] for x in json.load(open(path))["devices"]]
            except ValueError:
                pass
        time.sleep(0.05)
    sys.exit("simulator did not dump its state")

def mittari_conf(d, ports, binary=mittari, plugins=plugin_dir):
    lines = ["agent:", "  site: bench", "  data_dir: %s/data" % d, "  stats_interval: 0",
             "inputs:", "  mb:", "    plugin: modbus", "    devices:"]
    for i, p in enumerate(ports):
        lines.append("      - {name: d%d, host: 127.0.0.1, port: %d, order: CDAB, registers: "
                     "[{metric: visitors, address: 0, type: u32, kind: cumulative}]}" % (i, p))
    if os.environ.get("STATUS_LISTEN"):  # e.g. off: the agent without its status endpoint
        lines += ["status:", "  listen: %s" % os.environ["STATUS_LISTEN"]]
    path = os.path.join(d, "mittari.yaml")
    open(path, "w").write("\n".join(lines) + "\n")
    return [binary, "run", "-c", path, "--plugin-dir", plugins]

def before_conf(d, ports):
    return mittari_conf(d, ports, os.path.join(before, "mittari"), os.path.join(before, "plugins"))

def collectd_conf(d, ports):
    c = ['BaseDir "%s"' % d, 'PIDFile "%s/collectd.pid"' % d, 'PluginDir "/usr/lib/collectd"',
         'TypesDB "/usr/share/collectd/types.db"', "Interval 1", "ReadThreads 5",
         "WriteThreads 1", "FQDNLookup false", "LoadPlugin csv", "LoadPlugin modbus",
         '<Plugin csv>\n  DataDir "%s/csv"\n  StoreRates false\n</Plugin>' % d, "<Plugin modbus>",
         '  <Data "visitors">\n    RegisterBase 0\n    RegisterType Uint32LE\n'
         '    RegisterCmd ReadHolding\n    Type "derive"\n    Instance "visitors"\n  </Data>']
    for i, p in enumerate(ports):
        c.append('  <Host "d%d">\n    Address "127.0.0.1"\n    Port "%d"\n    Interval 1\n'
                 '    <Slave 1>\n      Instance "d%d"\n      Collect "visitors"\n    </Slave>\n'
                 '  </Host>' % (i, p, i))
    c.append("</Plugin>")
    path = os.path.join(d, "collectd.conf")
    open(path, "w").write("\n".join(c) + "\n")
    return [collectd, "-f", "-C", path]

def stored_mittari(d):
    try:
        con = sqlite3.connect("file:%s/data/mittari.db?mode=ro" % d, uri=True, timeout=10)
        n = con.execute("select count(*) from readings").fetchone()[0]
        con.close()
        return n
    except sqlite3.Error:
        return -1

def stored_collectd(d):
    n = 0
    for root, _, files in os.walk(os.path.join(d, "csv")):
        for f in files:
            n += sum(1 for _ in open(os.path.join(root, f))) - 1  # the header line
    return n

def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

def one_round(n):
    dirs, sims, agents = {}, {}, {}
    env = dict(os.environ)
    env.pop("NOTIFY_SOCKET", None)
    env.pop("WATCHDOG_USEC", None)
    try:
        kinds = [("mittari", mittari_conf)] + ([("before", before_conf)] if before else []) + \
            [("collectd", collectd_conf)]
        for name, conf in kinds:
            d = tempfile.mkdtemp(prefix="mbpeer-%s-" % name)
            dirs[name] = d
            sims[name] = start_sim(d, n)
            argv = conf(d, sims[name][2])
            agents[name] = subprocess.Popen(argv, stdout=subprocess.DEVNULL, env=env,
                                            stderr=open(os.path.join(d, "agent.log"), "w"))
        time.sleep(settle)
        for name, p in agents.items():
            if p.poll() is not None:
                sys.exit("%s exited with %s: see %s/agent.log" % (name, p.returncode, dirs[name]))
        la0 = load()
        rx0 = {k: sim_received(dirs[k], sims[k][1]) for k in agents}
        stored = lambda k: stored_collectd(dirs[k]) if k == "collectd" else stored_mittari(dirs[k])
        st0 = {k: stored(k) for k in agents}
        c0 = {k: cpu_s(p.pid) for k, p in agents.items()}
        s0 = {k: cpu_s(sims[k][0].pid) for k in agents}
        t0 = time.monotonic()
        time.sleep(window)
        c1 = {k: cpu_s(p.pid) for k, p in agents.items()}
        s1 = {k: cpu_s(sims[k][0].pid) for k in agents}
        wall = time.monotonic() - t0
        mem = {k: status(p.pid) for k, p in agents.items()}
        maps = {k: smaps(p.pid) for k, p in agents.items()} if want_smaps else {}
        rx1 = {k: sim_received(dirs[k], sims[k][1]) for k in agents}
        st1 = {k: stored(k) for k in agents}
        la1 = load()
        res = {}
        for k in agents:
            per = [b - a for a, b in zip(rx0[k], rx1[k])]
            res[k] = dict(cpu=(c1[k] - c0[k]) / wall * 100, sim=(s1[k] - s0[k]) / wall * 100,
                          req=sum(per) / wall, low=sum(1 for x in per if x < wall / 2),
                          stored=(st1[k] - st0[k]) / wall, **mem[k])
        ok = all(r["low"] == 0 and r["stored"] > 0 for r in res.values())
        return res, la0, la1, ok, dirs, maps
    finally:
        for p in agents.values():
            stop(p)
        for k, (p, fd, _) in sims.items():
            os.write(fd, b"quit\n")
            stop(p)
            os.close(fd)

print("# %s UTC, %s, %d vCPU, %s" % (time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
      os.uname().nodename, os.cpu_count(), os.uname().release))
print("# Modbus TCP at 1 s: mittari vs collectd %s, same window (%.0f s after %.0f s settling),"
      " each with its own simulator" % (
          subprocess.run(["dpkg-query", "-W", "-f=${Version}", "collectd-core"],
                         capture_output=True, text=True).stdout, window, settle))
print("# CPU: % of one core (utime+stime); req/s and stored/s: requests at the simulator and "
      "rows stored, over the window")
hdr = "%5s %5s %-9s %7s %8s %8s %8s %8s %9s %9s %8s" % (
    "N", "round", "agent", "CPU %", "req/s", "stored/s", "RSS MB", "anon MB", "file MB",
    "sim CPU %", "load")
print(hdr)
fails = 0
summary = {}
for n in ns:
    for r in range(1, rounds + 1):
        res, la0, la1, ok, dirs, maps = one_round(n)
        for k in [k for k in ("mittari", "before", "collectd") if k in res]:
            x = res[k]
            print("%5d %5d %-9s %7.2f %8.1f %8.1f %8.1f %8.1f %9.1f %9.1f %8s" % (
                n, r, k, x["cpu"], x["req"], x["stored"], x["VmRSS"] / 1024,
                x["RssAnon"] / 1024, x["RssFile"] / 1024, x["sim"], "/".join(la0[:1] + la1[:1])))
        print("%5d %5d %-9s %7.2f %8s %8s %8.2f %8.2f %9.2f" % (
            n, r, "ratio", res["mittari"]["cpu"] / max(res["collectd"]["cpu"], 1e-9), "", "",
            res["mittari"]["VmRSS"] / res["collectd"]["VmRSS"],
            res["mittari"]["RssAnon"] / max(res["collectd"]["RssAnon"], 1),
            res["mittari"]["RssFile"] / max(res["collectd"]["RssFile"], 1)))
        if "before" in res:
            print("%5d %5d %-9s %7.2f %8s %8s %8.2f %8.2f %9.2f" % (
                n, r, "/before", res["mittari"]["cpu"] / max(res["before"]["cpu"], 1e-9), "", "",
                res["mittari"]["VmRSS"] / res["before"]["VmRSS"],
                res["mittari"]["RssAnon"] / max(res["before"]["RssAnon"], 1),
                res["mittari"]["RssFile"] / max(res["before"]["RssFile"], 1)))
        for k, by in maps.items():
            top = sorted(by.items(), key=lambda x: -x[1])
            print("#   %s Rss by mapping (kB): %s" % (k, ", ".join(
                "%s %d" % (name, kb) for name, kb in top if kb >= 32)))
        sys.stdout.flush()
        summary.setdefault(n, []).append(res)
        if not ok:
            fails += 1
            print("# N=%d round %d did not poll every device or stored nothing; kept: %s" % (
                n, r, " ".join(dirs.values())))
        else:
            for d in dirs.values():
                shutil.rmtree(d, ignore_errors=True)
print("# summary: mittari/collectd ratios per N (each round); issue 14 asks CPU <= 1, "
      "VmRSS <= 1.5")
for n, rs in summary.items():
    print("#   N=%d: CPU %s; VmRSS %s" % (n, ", ".join(
        "%.2f" % (x["mittari"]["cpu"] / max(x["collectd"]["cpu"], 1e-9)) for x in rs), ", ".join(
        "%.2f" % (x["mittari"]["VmRSS"] / x["collectd"]["VmRSS"]) for x in rs)))
sys.exit(1 if fails else 0)
PY
