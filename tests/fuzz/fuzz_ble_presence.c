/* Fuzz the ble plugin's presence accounting (its address table, windows
 * and visits) with the real functions: the input is a script of
 * operations (sightings of a few addresses at moving times, lookups,
 * beacons excluded, flushes, time jumps both ways) on a small table.
 * Never a crash, a leak or undefined behaviour, and the invariants hold:
 * the table never holds more than its capacity, every address is found
 * where it was put, a window never counts more devices than were seen, a
 * visit never ends twice or with a negative dwell. */
#include <stdlib.h>
#include <string.h>

#include "adv.h"
#include "presence.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x))                                                                                  \
            abort();                                                                               \
    } while (0)

#define CAP 8

struct state {
    uint64_t visits, windows;
};

static void on_visit(void *arg, const struct ble_dev *d, int64_t first, int64_t last)
{
    struct state *s = arg;
    CHECK(last >= first);
    CHECK(!(d->flags & BLE_DEV_VISIT)); /* cleared before the callback: ends once */
    s->visits++;
}

static void on_window(void *arg, const struct ble_window *w)
{
    struct state *s = arg;
    CHECK(w->end_us > w->start_us);
    CHECK(w->stable <= w->devices);
    CHECK(w->devices <= CAP);
    CHECK(w->dwell_max_s >= w->dwell_median_s || w->visits == 0);
    CHECK(w->dwell_mean_s <= w->dwell_max_s + 1e-9);
    s->windows++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct state st = {0};
    struct ble_presence *p;
    struct ble_presence_conf c = {
        .capacity = CAP, .window_us = 10000000, .gap_us = 3000000, .rssi_threshold = -80};
    struct ble_presence_ops ops = {.visit = on_visit, .window = on_window, .arg = &st};
    int64_t t = 1800000000LL * 1000000;

    CHECK(ble_presence_create(&p, &c, &ops) == 0);
    ble_presence_advance(p, t);
    for (size_t i = 0; i + 2 < size; i += 3) {
        uint8_t op = data[i] >> 5, who = data[i] & 0x1f, arg = data[i + 1], arg2 = data[i + 2];
        uint8_t a[6] = {(uint8_t)(arg2 & 0xc0), 0, 0, 0, (uint8_t)(who >> 3), who};
        switch (op) {
        case 0: /* time moves on by up to 25.5 s */
            t += (int64_t)arg * 100000;
            t = ble_presence_advance(p, t);
            break;
        case 1: /* back in time (the engine holds it) */
            CHECK(ble_presence_advance(p, t - (int64_t)arg * 1000000) == t);
            break;
        case 2: { /* a sighting */
            struct ble_dev *d = ble_presence_get(p, a, t);
            CHECK(d || ble_presence_size(p) == CAP);
            if (d) {
                CHECK(memcmp(d->addr, a, 6) == 0);
                d->kind = (uint8_t)(arg2 % 6);
                ble_presence_sighting(p, d, -(int)arg / 2, t);
                CHECK(ble_presence_lookup(p, a) == d);
            }
            break;
        }
        case 3: { /* an address turns out to be a beacon */
            struct ble_dev *d = ble_presence_lookup(p, a);
            if (d) {
                ble_presence_exclude(p, d);
                CHECK(!ble_presence_sighting(p, d, 0, t));
            }
            break;
        }
        case 4:
            ble_presence_flush(p);
            break;
        case 5: /* a jump of many windows */
            t += (int64_t)arg * 100 * 10000000LL;
            ble_presence_advance(p, t);
            break;
        default: /* lookups of everything put there so far */
            for (uint8_t w = 0; w < 32; w++) {
                uint8_t b[6] = {(uint8_t)(arg2 & 0xc0), 0, 0, 0, (uint8_t)(w >> 3), w};
                struct ble_dev *d = ble_presence_lookup(p, b);
                CHECK(!d || memcmp(d->addr, b, 6) == 0);
            }
            break;
        }
        CHECK(ble_presence_size(p) <= CAP);
    }
    ble_presence_flush(p);
    ble_presence_destroy(p);
    return 0;
}
