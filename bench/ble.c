/*
 * bench_ble: what BLE scanning costs the agent (issue 12): decoding and
 * presence accounting for RATE advertisements a second (default 1,000) from
 * N distinct addresses (default 500), as CPU of one core and RSS.
 *
 * A private dbus-daemon carries the traffic; bench_ble_sim stands in for
 * bluetoothd (the mix: 10 allowlisted beacons, iBeacon and Eddystone UID /
 * TLM; the rest phones with rotating addresses, most with Apple or
 * Microsoft manufacturer data). Each run is its own `mittari run` process,
 * sampled over a WINDOW after SETTLE seconds (CPU of all threads from
 * /proc/PID/task/TID/schedstat; VmRSS and VmHWM at the end):
 *
 *   idle       the same agent with no inputs: the baseline
 *   ble quiet  the agent with the ble input scanning and no advertisements
 *   ble        the agent with the ble input at RATE adverts/s from N addresses
 *
 * Beside each, dbus-daemon's and the simulator's CPU over the same window:
 * the bus's own cost of the traffic, which no client avoids. Then, in this
 * process, the plugin's decoders and presence accounting alone (adv.c,
 * beacon.c, presence.c) on the same mix, in ns per advertisement: the part
 * of the agent's figure that is BLE work proper, the rest being D-Bus
 * message parsing, the loop and the log.
 *
 * Figures are printed, never asserted. The program fails only when a run
 * did not do what it measures: the agent counted fewer than 95 % of the
 * advertisements the simulator sent.
 *
 * Usage: bench_ble [-w WINDOW_SECONDS] [-r RATE] [-n ADDRESSES]
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "adv.h"
#include "beacon.h"
#include "common.h"
#include "presence.h"

#ifndef BENCH_MITTARI
#error "BENCH_MITTARI must name the built mittari binary"
#endif

#define SETTLE 5

static double cpu_seconds(pid_t pid)
{
    struct bench_thread t[256];
    int n = bench_threads((int)pid, t, 256);
    unsigned long long ns = 0;
    if (n <= 0)
        return -1;
    for (int i = 0; i < n; i++)
        ns += t[i].cpu_ns;
    return (double)ns / 1e9;
}

static long status_kb(pid_t pid, const char *key)
{
    char path[64], buf[4096];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    return bench_read_text(path, buf, sizeof(buf)) ? -1 : bench_field(buf, key);
}

static bool wait_path(const char *path, double secs)
{
    struct stat st;
    for (double end = bench_now() + secs; bench_now() < end; usleep(20000))
        if (stat(path, &st) == 0)
            return true;
    return false;
}

/* The last value of an instance counter in the agent's statistics lines. */
static long long last_counter(const char *log, const char *name)
{
    char *text = malloc(4 << 20);
    char key[64];
    long long v = -1;
    if (!text || bench_read_text(log, text, 4 << 20)) {
        free(text);
        return -1;
    }
    snprintf(key, sizeof(key), "; %s ", name);
    for (char *p = text; (p = strstr(p, key)); p += strlen(key))
        v = atoll(p + strlen(key));
    free(text);
    return v;
}

struct run {
    double agent, bus, sim, window; /* CPU seconds over window seconds */
    long rss, hwm;
    long long sent, counted;
};

static int write_conf(const char *dir, const char *bus, bool ble)
{
    char path[4200], y[2048];
    int n = snprintf(y, sizeof(y),
                     "agent:\n  site: bench\n  data_dir: %s/data\n  stats_interval: 1s\n", dir);
    if (ble)
        snprintf(y + n, sizeof(y) - (size_t)n,
                 "inputs:\n  scan:\n    plugin: ble\n    bus: %s\n    window: 10s\n"
                 "    gap_timeout: 30s\n    rssi_threshold: -80\n    allowlist:\n"
                 "      - {name: trail, ibeacon_uuid: f7826da6-4fa2-4e98-8024-bc5b71e0893e}\n"
                 "      - {name: hall, eddystone_namespace: 8b0ca750095477cb3e77}\n",
                 bus);
    snprintf(path, sizeof(path), "%s/conf.yaml", dir);
    return bench_write_file(path, y);
}

/* One agent run: mode 0 idle, 1 ble quiet, 2 ble at rate. */
static int measure(const char *dir, const char *bus, pid_t busd, int mode, int ndev, double rate,
                   double window, struct run *r)
{
    char conf[4200], log[4200], simlog[4200], count[4200], nd[16], rt[32];
    pid_t sim = 0, agent;
    int rc = 0;

    memset(r, 0, sizeof(*r));
    snprintf(conf, sizeof(conf), "%s/conf.yaml", dir);
    snprintf(log, sizeof(log), "%s/agent-%d.log", dir, mode);
    snprintf(simlog, sizeof(simlog), "%s/sim-%d.log", dir, mode);
    snprintf(count, sizeof(count), "%s/sent-%d", dir, mode);
    if (write_conf(dir, bus, mode > 0))
        return -1;
    if (mode > 0) {
        snprintf(nd, sizeof(nd), "%d", ndev);
        snprintf(rt, sizeof(rt), "%g", mode == 2 ? rate : 0.0);
        char *argv[] = {BENCH_BLESIM, (char *)bus, nd, rt, count, NULL};
        sim = bench_spawn(argv, simlog);
        usleep(300000); /* owns org.bluez before the agent asks */
    }
    char *argv[] = {BENCH_MITTARI, "run", "-c", conf, "--plugin-dir", BENCH_PLUGIN_DIR, NULL};
    agent = bench_spawn(argv, log);
    sleep(SETTLE);
    double a0 = cpu_seconds(agent), b0 = cpu_seconds(busd), s0 = sim ? cpu_seconds(sim) : 0;
    double t0 = bench_now();
    usleep((useconds_t)(window * 1e6));
    double a1 = cpu_seconds(agent), b1 = cpu_seconds(busd), s1 = sim ? cpu_seconds(sim) : 0;
    r->window = bench_now() - t0;
    r->rss = status_kb(agent, "\nVmRSS:");
    r->hwm = status_kb(agent, "\nVmHWM:");
    r->agent = a1 - a0;
    r->bus = b1 - b0;
    r->sim = s1 - s0;
    if (sim) {
        bench_stop(sim);
        FILE *f = wait_path(count, 5) ? fopen(count, "r") : NULL;
        if (!f || fscanf(f, "%lld", &r->sent) != 1)
            r->sent = -1;
        if (f)
            fclose(f);
        usleep(1500000); /* one more statistics line */
        r->counted = last_counter(log, "adverts");
    }
    bench_stop(agent);
    if (a0 < 0 || a1 < 0)
        rc = -1;
    if (mode == 2 && (r->sent <= 0 || r->counted < r->sent * 95 / 100)) {
        fprintf(stderr, "ble run: the agent counted %lld of %lld advertisements; see %s\n",
                r->counted, r->sent, log);
        rc = -1;
    }
    return rc;
}

/* ---- the plugin's own work, in process ---- */

static const uint8_t eddystone[16] = {0x00, 0x00, 0xfe, 0xaa, 0x00, 0x00, 0x10, 0x00,
                                      0x80, 0x00, 0x00, 0x80, 0x5f, 0x9b, 0x34, 0xfb};

struct work {
    struct ble_beacons beacons;
    struct ble_presence *presence;
    uint64_t windows, visits, frames;
};

static void on_visit(void *arg, const struct ble_dev *d, int64_t first, int64_t last)
{
    (void)d;
    (void)first;
    (void)last;
    ((struct work *)arg)->visits++;
}

static void on_beacon(void *arg, const struct ble_beacon *b)
{
    (void)arg;
    (void)b;
}

static void on_window(void *arg, const struct ble_window *w)
{
    struct work *k = arg;
    (void)w;
    k->windows++;
    ble_beacons_window(&k->beacons, on_beacon, NULL);
}

/* The simulator's mix for device i, advertisement k: manufacturer (1) or
 * service (2) data into d, or none (0). */
static int frame_of(int i, uint64_t k, uint16_t *company, uint8_t *d, size_t *n)
{
    static const uint8_t ib[23] = {0x02, 0x15, 0xf7, 0x82, 0x6d, 0xa6, 0x4f, 0xa2,
                                   0x4e, 0x98, 0x80, 0x24, 0xbc, 0x5b, 0x71, 0xe0,
                                   0x89, 0x3e, 0,    1,    0,    0,    0xc5};
    static const uint8_t nearby[7] = {0x10, 0x05, 0x01, 0x18, 0x4a, 0x33, 0};
    static const uint8_t uid[20] = {0x00, 0xee, 0x8b, 0x0c, 0xa7, 0x50, 0x09, 0x54, 0x77, 0xcb,
                                    0x3e, 0x77, 0,    0,    0,    0,    0,    0,    0,    0};
    static const uint8_t tlm[14] = {0x20, 0, 0x0b, 0xb8, 0xfa, 0xc0, 0, 0, 0, 0, 0, 0, 0x27, 0x10};
    if (i < 5 || (i >= 10 && i % 3 != 2)) {
        *company = 0x004C;
        if (i < 5) {
            memcpy(d, ib, 23);
            d[21] = (uint8_t)i;
            *n = 23;
        } else if (i % 3 == 0) {
            memcpy(d, nearby, 7);
            d[6] = (uint8_t)k;
            *n = 7;
        } else {
            *company = 0x0006;
            for (*n = 0; *n < 27; (*n)++)
                d[*n] = (uint8_t)(*n * 7 + k);
        }
        return 1;
    }
    if (i >= 10)
        return 0;
    if (k % 2) {
        memcpy(d, uid, 20);
        d[17] = (uint8_t)i;
        *n = 20;
    } else {
        memcpy(d, tlm, 14);
        *n = 14;
    }
    return 2;
}

/* What on_device does per advertisement, without D-Bus. */
static void one_advert(struct work *k, int i, uint64_t n, int64_t now)
{
    uint8_t addr[6] = {i < 10 ? 0xC4 : 0x5A, 1, 2, 3, (uint8_t)(i >> 8), (uint8_t)i};
    uint8_t d[32];
    uint16_t company = 0;
    size_t len = 0;
    struct ble_frame f;
    int rssi = -45 - (int)((uint32_t)(i * 31 + n * 7) % 51), rc = 0;

    now = ble_presence_advance(k->presence, now);
    struct ble_dev *dev = ble_presence_get(k->presence, addr, now);
    dev->kind = BLE_ADDR_RESOLVABLE;
    dev->rssi = (int16_t)rssi;
    dev->flags |= BLE_DEV_RSSI;
    switch (frame_of(i, n, &company, d, &len)) {
    case 1:
        rc = ble_adv_manufacturer(company, d, len, &f);
        break;
    case 2:
        rc = ble_adv_service(eddystone, d, len, &f);
        break;
    default:
        rc = BLE_FRAME_NONE;
        break;
    }
    if (rc > 0) {
        k->frames++;
        int b = rc == BLE_FRAME_EDDYSTONE_TLM ? dev->beacon : ble_beacons_match(&k->beacons, &f);
        if (b >= 0) {
            ble_beacons_record(&k->beacons, b, &f, true, rssi);
            dev->beacon = (int16_t)b;
            if (!(dev->flags & BLE_DEV_BEACON))
                ble_presence_exclude(k->presence, dev);
        }
    }
    if (!(dev->flags & BLE_DEV_BEACON))
        ble_presence_sighting(k->presence, dev, rssi, now);
}

/* ns per advertisement of decoding and presence accounting over total
 * advertisements, RATE a second of simulated time. */
static double plugin_work(int ndev, double rate, uint64_t total, struct work *k)
{
    static struct ble_allow allow[2];
    allow[0] = (struct ble_allow){.kind = BLE_ALLOW_IBEACON, .name = "trail"};
    ble_uuid_parse("f7826da6-4fa2-4e98-8024-bc5b71e0893e", 36, allow[0].id);
    allow[1] = (struct ble_allow){.kind = BLE_ALLOW_EDDYSTONE_NS, .name = "hall"};
    ble_hex_parse("8b0ca750095477cb3e77", 20, allow[1].id, 10);
    struct ble_presence_conf c = {
        .capacity = 4096, .window_us = 10000000, .gap_us = 30000000, .rssi_threshold = -80};
    struct ble_presence_ops ops = {.visit = on_visit, .window = on_window, .arg = k};
    memset(k, 0, sizeof(*k));
    if (ble_beacons_init(&k->beacons, allow, 2, 256) || ble_presence_create(&k->presence, &c, &ops))
        return -1;
    int64_t t = 1800000000LL * 1000000, step = (int64_t)(1e6 / rate);
    double t0 = bench_now();
    for (uint64_t n = 0; n < total; n++, t += step)
        one_advert(k, (int)(n % (uint64_t)ndev), n / (uint64_t)ndev, t);
    double secs = bench_now() - t0;
    ble_presence_destroy(k->presence);
    ble_beacons_free(&k->beacons);
    return secs * 1e9 / (double)total;
}

static void row(const char *name, const struct run *r, const struct run *idle)
{
    double a = r->agent / r->window * 100, b = r->bus / r->window * 100,
           s = r->sim / r->window * 100, base = idle->agent / idle->window * 100;
    printf("%-12s %9.2f%% %9.2f%% %9.1f %9.1f %9.2f%% %9.2f%%\n", name, a, a - base,
           (double)r->rss / 1024, (double)r->hwm / 1024, b, s);
}

int main(int argc, char **argv)
{
    double window = 20, rate = 1000;
    int ndev = 500, opt, rc = 1;
    pid_t busd = 0;
    struct run idle, quiet, ble;

    while ((opt = getopt(argc, argv, "w:r:n:")) != -1) {
        if (opt == 'w')
            window = atof(optarg);
        else if (opt == 'r')
            rate = atof(optarg);
        else if (opt == 'n')
            ndev = atoi(optarg);
        else
            return 2;
    }
    if (ndev < 20 || ndev > 4000 || rate <= 0)
        return 2;
    bench_print_machine();
    bench_print_load("before");
    char *dir = bench_tmpdir("ble");
    char sock[4200], address[4300], buslog[4200];
    if (!dir)
        return 1;
    snprintf(sock, sizeof(sock), "%s/bus", dir);
    snprintf(address, sizeof(address), "unix:path=%s", sock);
    snprintf(buslog, sizeof(buslog), "%s/dbus.log", dir);
    char addr_arg[4400];
    snprintf(addr_arg, sizeof(addr_arg), "--address=%s", address);
    char *dargv[] = {"dbus-daemon", "--config-file=/usr/share/dbus-1/session.conf",
                     addr_arg,      "--nofork",
                     "--nopidfile", NULL};
    busd = bench_spawn(dargv, buslog);
    if (!wait_path(sock, 10)) {
        fprintf(stderr, "dbus-daemon did not start; see %s\n", buslog);
        goto out;
    }
    if (measure(dir, address, busd, 0, ndev, rate, window, &idle) ||
        measure(dir, address, busd, 1, ndev, rate, window, &quiet) ||
        measure(dir, address, busd, 2, ndev, rate, window, &ble))
        goto out;
    printf("BLE: %.0f advertisements/s from %d addresses over a private dbus-daemon, "
           "%.0f s window after %d s settling\n",
           rate, ndev, window, SETTLE);
    printf("%-12s %10s %10s %9s %9s %10s %10s\n", "run", "agent CPU", "- idle", "RSS MB", "HWM MB",
           "dbus CPU", "sim CPU");
    row("idle", &idle, &idle);
    row("ble quiet", &quiet, &idle);
    row("ble", &ble, &idle);
    printf("ble: the agent counted %lld advertisements of %lld sent (%d addresses announced "
           "first)\n",
           ble.counted, ble.sent, ndev);
    /* agent CPU a second above idle, over advertisements a second */
    double per = (ble.agent / ble.window - idle.agent / idle.window) / rate * 1e9;
    printf("ble: %.1f µs of agent CPU per advertisement above idle; RSS %.1f MB above idle\n",
           per / 1000, (double)(ble.rss - idle.rss) / 1024);

    struct work k;
    uint64_t total = (uint64_t)(rate * 600); /* ten minutes of traffic */
    double ns = plugin_work(ndev, rate, total, &k);
    if (ns < 0)
        goto out;
    printf("in process, decoders and presence accounting alone: %.0f ns per advertisement "
           "(%.3f%% of a core at %.0f/s; %llu frames decoded, %llu windows, %llu visits); "
           "%.1f%% of the agent's CPU above idle\n",
           ns, ns * rate / 1e9 * 100, rate, (unsigned long long)k.frames,
           (unsigned long long)k.windows, (unsigned long long)k.visits,
           per > 0 ? ns / per * 100 : 0);
    rc = 0;
out:
    bench_stop(busd);
    bench_print_load("after");
    if (rc == 0)
        bench_rmtree(dir);
    else
        fprintf(stderr, "kept %s\n", dir);
    free(dir);
    return rc;
}
