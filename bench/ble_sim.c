/*
 * bench_ble_sim: a stand-in for bluetoothd fast enough for the BLE
 * benchmark (python3-dbusmock, which the tests use, cannot send 1,000
 * signals a second without taking a core itself). Owns org.bluez on the
 * given bus, answers what the ble plugin asks (GetManagedObjects with one
 * powered adapter hci0, SetDiscoveryFilter, StartDiscovery, GetAll of a
 * device), and once discovery started announces N devices (InterfacesAdded)
 * and sends RATE advertisements a second round-robin over them, as BlueZ
 * does with DuplicateData: a PropertiesChanged of RSSI and the
 * advertisement data.
 *
 * The devices: the first 10 are allowlisted beacons (5 iBeacon, 5
 * Eddystone alternating UID and TLM frames), the rest phones and wearables
 * with resolvable private addresses, most with Apple or Microsoft
 * manufacturer data, some with none. RSSI wanders between -95 and -45.
 *
 * Usage: bench_ble_sim ADDRESS DEVICES RATE COUNT_FILE
 * On SIGTERM it writes the number of advertisements sent to COUNT_FILE.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>
#include <time.h>

#define TICK_US 10000 /* send what is due every 10 ms */
#define BEACONS 10

struct sim {
    sd_bus *bus;
    sd_event *ev;
    int ndev;
    double rate;
    const char *count_file;
    bool started;
    uint64_t t0, sent, next;
};

static void dev_addr(int i, uint8_t a[6])
{
    /* beacons static random (C4), others resolvable private (top bits 01) */
    uint32_t x = (uint32_t)i * 2654435761u;
    a[0] = i < BEACONS ? 0xC4 : (uint8_t)(0x40 | (x >> 26));
    a[1] = (uint8_t)(x >> 16);
    a[2] = (uint8_t)(x >> 8);
    a[3] = (uint8_t)x;
    a[4] = (uint8_t)(i >> 8);
    a[5] = (uint8_t)i;
}

static void dev_path(int i, char *out, size_t n)
{
    uint8_t a[6];
    dev_addr(i, a);
    snprintf(out, n, "/org/bluez/hci0/dev_%02X_%02X_%02X_%02X_%02X_%02X", a[0], a[1], a[2], a[3],
             a[4], a[5]);
}

static int append_ay(sd_bus_message *m, const uint8_t *d, size_t n)
{
    int r = sd_bus_message_open_container(m, 'v', "ay");
    if (r >= 0)
        r = sd_bus_message_append_array(m, 'y', d, n);
    if (r >= 0)
        r = sd_bus_message_close_container(m);
    return r;
}

/* The advertisement data of device i at its k-th advertisement, as one or
 * no {sv} entry. */
static int append_data(sd_bus_message *m, int i, uint64_t k)
{
    static const uint8_t ib_uuid[16] = {0xf7, 0x82, 0x6d, 0xa6, 0x4f, 0xa2, 0x4e, 0x98,
                                        0x80, 0x24, 0xbc, 0x5b, 0x71, 0xe0, 0x89, 0x3e};
    uint8_t d[32];
    size_t n;
    int r;

    if (i < BEACONS / 2 || (i >= BEACONS && i % 3 != 2)) {
        uint16_t company = 0x004C;
        if (i < BEACONS) {
            d[0] = 0x02;
            d[1] = 0x15;
            memcpy(d + 2, ib_uuid, 16);
            d[18] = 0;
            d[19] = 1;
            d[20] = (uint8_t)(i >> 8);
            d[21] = (uint8_t)i;
            d[22] = 0xC5;
            n = 23;
        } else if (i % 3 == 0) { /* Apple Nearby Info */
            const uint8_t x[] = {0x10, 0x05, 0x01, 0x18, 0x4a, 0x33, (uint8_t)k};
            memcpy(d, x, sizeof(x));
            n = sizeof(x);
        } else { /* Microsoft CDP beacon */
            company = 0x0006;
            for (n = 0; n < 27; n++)
                d[n] = (uint8_t)(n * 7 + k);
        }
        r = sd_bus_message_open_container(m, 'e', "sv");
        if (r >= 0)
            r = sd_bus_message_append(m, "s", "ManufacturerData");
        if (r >= 0)
            r = sd_bus_message_open_container(m, 'v', "a{qv}");
        if (r >= 0)
            r = sd_bus_message_open_container(m, 'a', "{qv}");
        if (r >= 0)
            r = sd_bus_message_open_container(m, 'e', "qv");
        if (r >= 0)
            r = sd_bus_message_append(m, "q", company);
        if (r >= 0)
            r = append_ay(m, d, n);
        for (int c = 0; c < 4 && r >= 0; c++)
            r = sd_bus_message_close_container(m);
        return r;
    }
    if (i >= BEACONS)
        return 0; /* no data: RSSI only */
    if (k % 2) {  /* Eddystone UID */
        const uint8_t x[20] = {0x00, 0xee, 0x8b, 0x0c, 0xa7, 0x50, 0x09, 0x54,       0x77, 0xcb,
                               0x3e, 0x77, 0,    0,    0,    0,    0,    (uint8_t)i, 0,    0};
        memcpy(d, x, sizeof(x));
        n = sizeof(x);
    } else { /* TLM */
        const uint8_t x[14] = {0x20,       0, 0x0b, 0xb8, 0xfa, 0xc0, 0, 0, (uint8_t)(k >> 8),
                               (uint8_t)k, 0, 0,    0x27, 0x10};
        memcpy(d, x, sizeof(x));
        n = sizeof(x);
    }
    r = sd_bus_message_open_container(m, 'e', "sv");
    if (r >= 0)
        r = sd_bus_message_append(m, "s", "ServiceData");
    if (r >= 0)
        r = sd_bus_message_open_container(m, 'v', "a{sv}");
    if (r >= 0)
        r = sd_bus_message_open_container(m, 'a', "{sv}");
    if (r >= 0)
        r = sd_bus_message_open_container(m, 'e', "sv");
    if (r >= 0)
        r = sd_bus_message_append(m, "s", "0000feaa-0000-1000-8000-00805f9b34fb");
    if (r >= 0)
        r = append_ay(m, d, n);
    for (int c = 0; c < 4 && r >= 0; c++)
        r = sd_bus_message_close_container(m);
    return r;
}

static int16_t rssi_of(int i, uint64_t k)
{
    return (int16_t)(-45 - (int)((uint32_t)(i * 31 + k * 7) % 51));
}

/* a{sv} of a device: everything for InterfacesAdded, RSSI and data for a
 * PropertiesChanged */
static int append_props(sd_bus_message *m, int i, uint64_t k, bool full)
{
    int r = sd_bus_message_open_container(m, 'a', "{sv}");
    if (r >= 0 && full) {
        uint8_t a[6];
        char addr[18];
        dev_addr(i, a);
        snprintf(addr, sizeof(addr), "%02X:%02X:%02X:%02X:%02X:%02X", a[0], a[1], a[2], a[3], a[4],
                 a[5]);
        r = sd_bus_message_append(m, "{sv}", "Address", "s", addr);
        if (r >= 0)
            r = sd_bus_message_append(m, "{sv}", "AddressType", "s", "random");
    }
    if (r >= 0)
        r = sd_bus_message_append(m, "{sv}", "RSSI", "n", rssi_of(i, k));
    if (r >= 0)
        r = append_data(m, i, k);
    if (r >= 0)
        r = sd_bus_message_close_container(m);
    return r;
}

static int send_added(struct sim *s, int i)
{
    sd_bus_message *m = NULL;
    char path[64];
    dev_path(i, path, sizeof(path));
    int r = sd_bus_message_new_signal(s->bus, &m, "/", "org.freedesktop.DBus.ObjectManager",
                                      "InterfacesAdded");
    if (r >= 0)
        r = sd_bus_message_append(m, "o", path);
    if (r >= 0)
        r = sd_bus_message_open_container(m, 'a', "{sa{sv}}");
    if (r >= 0)
        r = sd_bus_message_open_container(m, 'e', "sa{sv}");
    if (r >= 0)
        r = sd_bus_message_append(m, "s", "org.bluez.Device1");
    if (r >= 0)
        r = append_props(m, i, 0, true);
    if (r >= 0)
        r = sd_bus_message_close_container(m);
    if (r >= 0)
        r = sd_bus_message_close_container(m);
    if (r >= 0)
        r = sd_bus_send(s->bus, m, NULL);
    sd_bus_message_unref(m);
    return r;
}

static int send_advert(struct sim *s, int i, uint64_t k)
{
    sd_bus_message *m = NULL;
    char path[64];
    dev_path(i, path, sizeof(path));
    int r = sd_bus_message_new_signal(s->bus, &m, path, "org.freedesktop.DBus.Properties",
                                      "PropertiesChanged");
    if (r >= 0)
        r = sd_bus_message_append(m, "s", "org.bluez.Device1");
    if (r >= 0)
        r = append_props(m, i, k, false);
    if (r >= 0)
        r = sd_bus_message_append(m, "as", 0);
    if (r >= 0)
        r = sd_bus_send(s->bus, m, NULL);
    sd_bus_message_unref(m);
    return r;
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int on_tick(sd_event_source *src, uint64_t usec, void *arg)
{
    struct sim *s = arg;
    (void)usec;
    if (s->started && s->rate > 0) {
        uint64_t due = (uint64_t)((double)(now_us() - s->t0) * s->rate / 1e6);
        if (due > s->sent + (uint64_t)s->rate) /* fell behind a second: do not burst */
            s->sent = due - (uint64_t)s->rate;
        while (s->sent < due) {
            uint64_t k = s->sent++;
            if (send_advert(s, (int)(k % (uint64_t)s->ndev), k / (uint64_t)s->ndev) < 0)
                break;
        }
    }
    s->next += TICK_US;
    sd_event_source_set_time(src, s->next);
    sd_event_source_set_enabled(src, SD_EVENT_ONESHOT);
    return 0;
}

static int reply_managed(sd_bus_message *call)
{
    sd_bus_message *m = NULL;
    int r = sd_bus_message_new_method_return(call, &m);
    if (r >= 0)
        r = sd_bus_message_append(m, "a{oa{sa{sv}}}", 1, "/org/bluez/hci0", 1, "org.bluez.Adapter1",
                                  2, "Powered", "b", 1, "Discovering", "b", 0);
    if (r >= 0)
        r = sd_bus_send(NULL, m, NULL);
    sd_bus_message_unref(m);
    return r;
}

static int on_message(sd_bus_message *m, void *arg, sd_bus_error *e)
{
    struct sim *s = arg;
    (void)e;
    if (sd_bus_message_is_method_call(m, "org.freedesktop.DBus.ObjectManager", "GetManagedObjects"))
        return reply_managed(m) < 0 ? -EIO : 1;
    if (sd_bus_message_is_method_call(m, "org.bluez.Adapter1", "SetDiscoveryFilter"))
        return sd_bus_reply_method_return(m, "");
    if (sd_bus_message_is_method_call(m, "org.bluez.Adapter1", "StartDiscovery")) {
        int r = sd_bus_reply_method_return(m, "");
        if (!s->started) {
            s->started = true;
            for (int i = 0; i < s->ndev && s->rate > 0; i++)
                send_added(s, i);
            s->t0 = now_us();
        }
        return r;
    }
    if (sd_bus_message_is_method_call(m, "org.freedesktop.DBus.Properties", "GetAll"))
        return sd_bus_reply_method_return(m, "a{sv}", 2, "AddressType", "s", "random", "RSSI", "n",
                                          -60);
    return 0;
}

static int on_term(sd_event_source *src, const struct signalfd_siginfo *si, void *arg)
{
    struct sim *s = arg;
    (void)src;
    (void)si;
    FILE *f = fopen(s->count_file, "w");
    if (f) {
        fprintf(f, "%llu\n", (unsigned long long)s->sent);
        fclose(f);
    }
    return sd_event_exit(s->ev, 0);
}

int main(int argc, char **argv)
{
    struct sim s = {0};
    sigset_t set;
    int r;

    if (argc != 5) {
        fprintf(stderr, "usage: bench_ble_sim ADDRESS DEVICES RATE COUNT_FILE\n");
        return 2;
    }
    s.ndev = atoi(argv[2]);
    s.rate = atof(argv[3]);
    s.count_file = argv[4];
    if (s.ndev < 1)
        s.ndev = 1;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, NULL);
    r = sd_event_default(&s.ev);
    if (r >= 0)
        r = sd_bus_new(&s.bus);
    if (r >= 0)
        r = sd_bus_set_address(s.bus, argv[1]);
    if (r >= 0)
        r = sd_bus_set_bus_client(s.bus, 1);
    if (r >= 0)
        r = sd_bus_start(s.bus);
    if (r >= 0)
        r = sd_bus_add_filter(s.bus, NULL, on_message, &s);
    if (r >= 0)
        r = sd_bus_request_name(s.bus, "org.bluez", 0);
    if (r >= 0)
        r = sd_bus_attach_event(s.bus, s.ev, 0);
    s.next = now_us() + TICK_US;
    if (r >= 0)
        r = sd_event_add_time(s.ev, NULL, CLOCK_MONOTONIC, s.next, 1000, on_tick, &s);
    if (r >= 0)
        r = sd_event_add_signal(s.ev, NULL, SIGTERM, on_term, &s);
    if (r < 0) {
        fprintf(stderr, "bench_ble_sim: %s\n", strerror(-r));
        return 1;
    }
    fprintf(stderr, "bench_ble_sim: org.bluez on %s, %d devices, %.0f adverts/s\n", argv[1], s.ndev,
            s.rate);
    r = sd_event_loop(s.ev);
    sd_bus_flush_close_unref(s.bus);
    sd_event_unref(s.ev);
    return r < 0 ? 1 : 0;
}
