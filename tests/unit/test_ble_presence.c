/* Anonymous presence with an injected clock: distinct devices per window
 * above the RSSI threshold, visits and their dwell times with a gap
 * timeout, beacons left out, bounded memory, time going back or jumping. */
#include "testutil.h"

#include <string.h>

#include "adv.h"
#include "presence.h"

#define S_ 1000000LL
#define T0 (1800000000LL * S_) /* a multiple of the window */
#define W (60 * S_)
#define GAP (30 * S_)

struct rec {
    struct ble_window w[64];
    size_t nw;
    struct {
        uint8_t addr[6];
        int64_t first, last;
    } v[64];
    size_t nv;
};

static void on_window(void *arg, const struct ble_window *w)
{
    struct rec *r = arg;
    assert_true(r->nw < 64);
    r->w[r->nw++] = *w;
}

static void on_visit(void *arg, const struct ble_dev *d, int64_t first, int64_t last)
{
    struct rec *r = arg;
    assert_true(r->nv < 64);
    memcpy(r->v[r->nv].addr, d->addr, 6);
    r->v[r->nv].first = first;
    r->v[r->nv++].last = last;
}

static struct ble_presence *make(struct rec *r, size_t cap)
{
    struct ble_presence *p;
    struct ble_presence_conf c = {
        .capacity = cap, .window_us = W, .gap_us = GAP, .rssi_threshold = -80};
    struct ble_presence_ops ops = {.visit = on_visit, .window = on_window, .arg = r};
    memset(r, 0, sizeof(*r));
    assert_int_equal(ble_presence_create(&p, &c, &ops), 0);
    return p;
}

/* A sighting of address (n, kind) at t with rssi; returns whether it counted. */
static bool see(struct ble_presence *p, uint8_t n, int kind, int rssi, int64_t t)
{
    const uint8_t a[6] = {0x5a, 0, 0, 0, 0, n};
    int64_t now = ble_presence_advance(p, t);
    struct ble_dev *d = ble_presence_get(p, a, now);
    assert_non_null(d);
    d->kind = (uint8_t)kind;
    return ble_presence_sighting(p, d, rssi, now);
}

static void distinct_devices_per_window(void **s)
{
    (void)s;
    struct rec r;
    struct ble_presence *p = make(&r, 64);
    ble_presence_advance(p, T0);
    assert_true(see(p, 1, BLE_ADDR_RESOLVABLE, -60, T0 + 1 * S_));
    assert_true(see(p, 1, BLE_ADDR_RESOLVABLE, -62, T0 + 5 * S_)); /* again: one device */
    assert_true(see(p, 2, BLE_ADDR_PUBLIC, -80, T0 + 6 * S_));     /* at the threshold */
    assert_false(see(p, 3, BLE_ADDR_STATIC, -81, T0 + 7 * S_));    /* below: not counted */
    assert_true(see(p, 4, BLE_ADDR_STATIC, -40, T0 + W - 1));      /* the last µs */
    assert_int_equal(r.nw, 0);
    assert_true(see(p, 5, BLE_ADDR_RESOLVABLE, -50, T0 + W)); /* the next window's first µs */
    assert_int_equal(r.nw, 1);
    assert_int_equal(r.w[0].start_us, T0);
    assert_int_equal(r.w[0].end_us, T0 + W);
    assert_int_equal(r.w[0].devices, 3);
    assert_int_equal(r.w[0].stable, 2); /* public 2 and static 4; 1 rotates */
    assert_int_equal(r.w[0].visits, 2); /* 1 (4 s) and 2 (0 s) left before the end */
    assert_true(r.w[0].dwell_mean_s == 2.0);
    /* 1 comes back in the second window: a new visit, counted there */
    assert_true(see(p, 1, BLE_ADDR_RESOLVABLE, -60, T0 + W + 10 * S_));
    ble_presence_advance(p, T0 + 2 * W);
    assert_int_equal(r.nw, 2);
    assert_int_equal(r.w[1].devices, 2); /* 5 and 1 */
    assert_int_equal(r.w[1].stable, 0);
    ble_presence_destroy(p);
}

static void visits_and_dwell_times(void **s)
{
    (void)s;
    struct rec r;
    struct ble_presence *p = make(&r, 64);
    ble_presence_advance(p, T0);
    /* device 1: 0 s, 20 s, 45 s (gaps of 20 and 25 s, under 30): one visit of 45 s;
     * device 2: a single sighting at 10 s, a visit of 0 s; device 3: 5 s and 14 s, 9 s */
    see(p, 1, BLE_ADDR_PUBLIC, -60, T0);
    see(p, 3, BLE_ADDR_PUBLIC, -60, T0 + 5 * S_);
    see(p, 2, BLE_ADDR_PUBLIC, -60, T0 + 10 * S_);
    see(p, 3, BLE_ADDR_PUBLIC, -60, T0 + 14 * S_);
    see(p, 1, BLE_ADDR_PUBLIC, -60, T0 + 20 * S_);
    /* a sighting below the threshold does not extend a visit */
    assert_false(see(p, 3, BLE_ADDR_PUBLIC, -90, T0 + 40 * S_));
    see(p, 1, BLE_ADDR_PUBLIC, -60, T0 + 45 * S_);
    /* 2 ended at 40 s, 3 at 44 s, 1 at 75 s (gap passed after the last sighting) */
    ble_presence_advance(p, T0 + W);
    assert_int_equal(r.nw, 1);
    assert_int_equal(r.w[0].visits, 2);
    assert_true(r.w[0].dwell_mean_s == 4.5);
    assert_true(r.w[0].dwell_median_s == 4.5);
    assert_true(r.w[0].dwell_max_s == 9.0);
    assert_int_equal(r.nv, 2);
    ble_presence_advance(p, T0 + 75 * S_); /* exactly the gap: not yet over */
    ble_presence_advance(p, T0 + 76 * S_); /* (the sweep runs once a second) */
    assert_int_equal(r.nv, 3);
    assert_int_equal(r.v[2].addr[5], 1);
    assert_int_equal(r.v[2].first, T0);
    assert_int_equal(r.v[2].last, T0 + 45 * S_);
    ble_presence_advance(p, T0 + 2 * W);
    assert_int_equal(r.nw, 2);
    assert_int_equal(r.w[1].visits, 1);
    assert_true(r.w[1].dwell_mean_s == 45.0);
    assert_true(r.w[1].dwell_median_s == 45.0);
    assert_int_equal(r.w[1].devices, 0); /* no sighting in the second window */
    ble_presence_destroy(p);
}

static void a_gap_longer_than_the_timeout_is_two_visits(void **s)
{
    (void)s;
    struct rec r;
    struct ble_presence *p = make(&r, 64);
    ble_presence_advance(p, T0);
    see(p, 7, BLE_ADDR_STATIC, -60, T0 + 1 * S_);
    see(p, 7, BLE_ADDR_STATIC, -60, T0 + 3 * S_);
    /* 30 s + 1 µs later: the first visit (2 s) ended, a new one begins */
    see(p, 7, BLE_ADDR_STATIC, -60, T0 + 33 * S_ + 1);
    assert_int_equal(r.nv, 1);
    assert_int_equal(r.v[0].last - r.v[0].first, 2 * S_);
    see(p, 7, BLE_ADDR_STATIC, -60, T0 + 50 * S_);
    ble_presence_advance(p, T0 + W);
    assert_int_equal(r.w[0].devices, 1); /* one device, two visits */
    assert_int_equal(r.w[0].visits, 1);  /* the second ends after the window */
    ble_presence_flush(p);               /* the instance stops: dwell so far */
    assert_int_equal(r.nv, 2);
    assert_int_equal(r.v[1].first, T0 + 33 * S_ + 1);
    assert_int_equal(r.v[1].last, T0 + 50 * S_);
    ble_presence_flush(p);
    assert_int_equal(r.nv, 2); /* ended once */
    ble_presence_destroy(p);
}

static void beacons_are_not_presence(void **s)
{
    (void)s;
    struct rec r;
    struct ble_presence *p = make(&r, 64);
    const uint8_t a[6] = {0xc0, 1, 2, 3, 4, 5};
    ble_presence_advance(p, T0);
    see(p, 1, BLE_ADDR_PUBLIC, -60, T0 + S_);
    struct ble_dev *d = ble_presence_get(p, a, T0 + 2 * S_);
    assert_true(ble_presence_sighting(p, d, -50, T0 + 2 * S_)); /* a TLM before its UID */
    ble_presence_exclude(p, d); /* then the UID frame: an allowlisted beacon */
    assert_false(ble_presence_sighting(p, d, -50, T0 + 3 * S_));
    ble_presence_advance(p, T0 + W);
    assert_int_equal(r.w[0].devices, 1);
    ble_presence_flush(p);
    assert_int_equal(r.nv, 1); /* device 1 only: the beacon's visit was dropped */
    assert_int_equal(r.v[0].addr[5], 1);
    ble_presence_destroy(p);
}

static void memory_is_bounded_and_idle_addresses_forgotten(void **s)
{
    (void)s;
    struct rec r;
    struct ble_presence *p = make(&r, 16);
    ble_presence_advance(p, T0);
    for (uint8_t i = 0; i < 16; i++)
        assert_true(see(p, i, BLE_ADDR_RESOLVABLE, -60, T0 + S_));
    const uint8_t extra[6] = {0x5a, 0, 0, 0, 1, 0};
    assert_null(ble_presence_get(p, extra, T0 + S_));
    assert_int_equal(ble_presence_size(p), 16);
    /* all visits end at 31 s; the addresses stay until their window closed
     * and they were idle a minute */
    ble_presence_advance(p, T0 + 40 * S_);
    assert_int_equal(r.nv, 16);
    assert_int_equal(ble_presence_size(p), 16);
    /* seen again in the same window: still one device each */
    for (uint8_t i = 0; i < 4; i++)
        see(p, i, BLE_ADDR_RESOLVABLE, -60, T0 + 50 * S_);
    ble_presence_advance(p, T0 + W);
    assert_int_equal(r.w[0].devices, 16);
    ble_presence_advance(p, T0 + 62 * S_ + 1); /* 12 idle > 60 s, 4 not yet */
    assert_int_equal(ble_presence_size(p), 4);
    assert_non_null(ble_presence_get(p, extra, T0 + 63 * S_));
    for (uint8_t i = 0; i < 4; i++) {
        const uint8_t a[6] = {0x5a, 0, 0, 0, 0, i};
        assert_non_null(ble_presence_lookup(p, a)); /* found past any moved entries */
    }
    ble_presence_advance(p, T0 + 300 * S_);
    assert_int_equal(ble_presence_size(p), 0);
    ble_presence_destroy(p);
}

static void clock_back_and_jumps(void **s)
{
    (void)s;
    struct rec r;
    struct ble_presence *p = make(&r, 64);
    ble_presence_advance(p, T0 + 10 * S_);
    see(p, 1, BLE_ADDR_PUBLIC, -60, T0 + 20 * S_);
    /* the wall clock steps back a day: taken as the last time */
    assert_int_equal(ble_presence_advance(p, T0 - 86400 * S_), T0 + 20 * S_);
    see(p, 1, BLE_ADDR_PUBLIC, -60, T0 - 86400 * S_);
    assert_int_equal(r.nw, 0);
    /* a jump of two windows closes both */
    ble_presence_advance(p, T0 + 2 * W + S_);
    assert_int_equal(r.nw, 2);
    assert_int_equal(r.w[0].devices, 1);
    assert_int_equal(r.w[1].devices, 0);
    assert_int_equal(r.nv, 1);
    assert_int_equal(r.v[0].last - r.v[0].first, 0);
    /* a jump of a year closes the open window and passes over the rest */
    see(p, 2, BLE_ADDR_PUBLIC, -60, T0 + 2 * W + 2 * S_);
    ble_presence_advance(p, T0 + 2 * W + 365 * 86400 * S_);
    assert_int_equal(r.nw, 3);
    assert_int_equal(r.w[2].devices, 1);
    assert_int_equal(ble_presence_skipped(p), 365 * 86400 / 60 - 1);
    assert_int_equal(r.nv, 2); /* the visit still ended */
    ble_presence_advance(p, T0 + 3 * W + 365 * 86400 * S_);
    assert_int_equal(r.nw, 4);
    ble_presence_destroy(p);
}

static void bad_configuration_refused(void **s)
{
    (void)s;
    struct ble_presence *p;
    struct ble_presence_ops ops = {0};
    struct ble_presence_conf c = {.capacity = 0, .window_us = W, .gap_us = GAP};
    assert_int_equal(ble_presence_create(&p, &c, &ops), -EINVAL);
    c.capacity = 4;
    c.window_us = 0;
    assert_int_equal(ble_presence_create(&p, &c, &ops), -EINVAL);
    assert_null(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(distinct_devices_per_window),
        cmocka_unit_test(visits_and_dwell_times),
        cmocka_unit_test(a_gap_longer_than_the_timeout_is_two_visits),
        cmocka_unit_test(beacons_are_not_presence),
        cmocka_unit_test(memory_is_bounded_and_idle_addresses_forgotten),
        cmocka_unit_test(clock_back_and_jumps),
        cmocka_unit_test(bad_configuration_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
