/* The allowlist of the municipality's own beacons and what a window of
 * their advertisements says: names from the allowlist and the beacon's own
 * identity (never its address), telemetry attributed, windows reset. */
#include "testutil.h"

#include <errno.h>
#include <string.h>

#include "adv.h"
#include "beacon.h"

static const uint8_t eddystone_uuid[16] = {0x00, 0x00, 0xfe, 0xaa, 0x00, 0x00, 0x10, 0x00,
                                           0x80, 0x00, 0x00, 0x80, 0x5f, 0x9b, 0x34, 0xfb};

static struct ble_frame ibeacon(uint8_t first, uint16_t major, uint16_t minor, int8_t power)
{
    uint8_t d[23] = {0x02, 0x15, first, 0x82, 0x6d, 0xa6, 0x4f, 0xa2, 0x4e,
                     0x98, 0x80, 0x24,  0xbc, 0x5b, 0x71, 0xe0, 0x89, 0x3e};
    struct ble_frame f;
    d[18] = (uint8_t)(major >> 8);
    d[19] = (uint8_t)major;
    d[20] = (uint8_t)(minor >> 8);
    d[21] = (uint8_t)minor;
    d[22] = (uint8_t)power;
    assert_int_equal(ble_adv_manufacturer(0x004C, d, sizeof(d), &f), BLE_FRAME_IBEACON);
    return f;
}

static struct ble_frame service(const uint8_t *d, size_t n, int kind)
{
    struct ble_frame f;
    assert_int_equal(ble_adv_service(eddystone_uuid, d, n, &f), kind);
    return f;
}

struct seen {
    char device[8][64];
    struct ble_beacon b[8];
    size_t n;
};

static void collect(void *arg, const struct ble_beacon *b)
{
    struct seen *s = arg;
    assert_true(s->n < 8);
    snprintf(s->device[s->n], 64, "%s", b->device);
    s->b[s->n++] = *b;
}

static struct ble_allow allow[3];

static void setup_allow(void)
{
    memset(allow, 0, sizeof(allow));
    allow[0].kind = BLE_ALLOW_IBEACON;
    assert_int_equal(ble_uuid_parse("f7826da6-4fa2-4e98-8024-bc5b71e0893e", 36, allow[0].id), 0);
    allow[0].name = "trail";
    allow[1].kind = BLE_ALLOW_EDDYSTONE_NS;
    assert_int_equal(ble_hex_parse("8b0ca750095477cb3e77", 20, allow[1].id, 10), 0);
    allow[1].name = "hall";
    allow[2].kind = BLE_ALLOW_EDDYSTONE_URL;
    allow[2].url = "https://kunta.example/";
    allow[2].name = "museum";
}

static void allowlist_selects_and_names(void **s)
{
    (void)s;
    struct ble_beacons bs;
    struct seen seen = {0};
    setup_allow();
    assert_int_equal(ble_beacons_init(&bs, allow, 3, 8), 0);

    struct ble_frame a = ibeacon(0xf7, 1, 40000, -59), a2 = ibeacon(0xf7, 1, 40000, -58);
    struct ble_frame other = ibeacon(0x01, 1, 40000, -59); /* someone else's UUID */
    int ia = ble_beacons_match(&bs, &a);
    assert_true(ia >= 0);
    assert_int_equal(ble_beacons_match(&bs, &a2), ia); /* the same beacon */
    assert_int_equal(ble_beacons_match(&bs, &other), -1);
    struct ble_frame b = ibeacon(0xf7, 1, 2, -59);
    int ib = ble_beacons_match(&bs, &b);
    assert_true(ib >= 0 && ib != ia);

    const uint8_t uid[20] = {0x00, 0xee, 0x8b, 0x0c, 0xa7, 0x50, 0x09, 0x54, 0x77,
                             0xcb, 0x3e, 0x77, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f};
    struct ble_frame u = service(uid, 20, BLE_FRAME_EDDYSTONE_UID);
    int iu = ble_beacons_match(&bs, &u);
    assert_true(iu >= 0);
    uint8_t uid2[20];
    memcpy(uid2, uid, 20);
    uid2[2] = 0x8c; /* another namespace */
    struct ble_frame u2 = service(uid2, 20, BLE_FRAME_EDDYSTONE_UID);
    assert_int_equal(ble_beacons_match(&bs, &u2), -1);

    const uint8_t url[] = {0x10, 0xf0, 0x03, 'k', 'u', 'n', 't', 'a', '.', 'e',
                           'x',  'a',  'm',  'p', 'l', 'e', '/', 'm', '1'};
    struct ble_frame l = service(url, sizeof(url), BLE_FRAME_EDDYSTONE_URL);
    int il = ble_beacons_match(&bs, &l);
    assert_true(il >= 0);
    const uint8_t url2[] = {0x10, 0xf0, 0x03, 'k', 'u', 'n', 't', 'a', 0x07};
    struct ble_frame l2 = service(url2, sizeof(url2), BLE_FRAME_EDDYSTONE_URL);
    assert_int_equal(ble_beacons_match(&bs, &l2), -1); /* https://kunta.com */

    ble_beacons_record(&bs, ia, &a, true, -70);
    ble_beacons_record(&bs, ia, &a2, true, -60);
    ble_beacons_record(&bs, iu, &u, false, 0);
    ble_beacons_window(&bs, collect, &seen);
    assert_int_equal(seen.n, 4);
    assert_string_equal(seen.b[ia].device, "trail.1.40000"); /* minor unsigned */
    assert_string_equal(seen.b[ib].device, "trail.1.2");
    assert_string_equal(seen.b[iu].device, "hall.0a0b0c0d0e0f");
    assert_string_equal(seen.b[il].device, "museum");
    assert_int_equal(seen.b[ia].adverts, 2);
    assert_int_equal(seen.b[ia].rssi_n, 2);
    assert_int_equal(seen.b[ia].rssi_sum, -130);
    assert_true(seen.b[ia].has_power);
    assert_int_equal(seen.b[ia].power, -58); /* the last */
    assert_int_equal(seen.b[iu].power, -18);
    assert_int_equal(seen.b[iu].rssi_n, 0);
    assert_int_equal(seen.b[ib].adverts, 0); /* matched but nothing recorded */
    ble_beacons_free(&bs);
}

static void telemetry_and_windows(void **s)
{
    (void)s;
    struct ble_beacons bs;
    struct seen seen = {0};
    setup_allow();
    assert_int_equal(ble_beacons_init(&bs, allow, 3, 8), 0);
    const uint8_t uid[18] = {0x00, 0xee, 0x8b, 0x0c, 0xa7, 0x50, 0x09, 0x54, 0x77,
                             0xcb, 0x3e, 0x77, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01};
    const uint8_t tlm[14] = {0x20, 0x00, 0x00, 0x00, 0xfa, 0xc0, 0, 0, 0, 9, 0, 0, 0, 50};
    struct ble_frame u = service(uid, 18, BLE_FRAME_EDDYSTONE_UID);
    struct ble_frame t = service(tlm, 14, BLE_FRAME_EDDYSTONE_TLM);
    int i = ble_beacons_match(&bs, &u);
    assert_int_equal(i, 0);
    assert_int_equal(ble_beacons_match(&bs, &t), -1); /* a TLM names no beacon */
    ble_beacons_record(&bs, i, &u, true, -65);
    ble_beacons_record(&bs, i, &t, true, -67);
    ble_beacons_window(&bs, collect, &seen);
    assert_int_equal(seen.n, 1);
    assert_int_equal(seen.b[0].adverts, 2);
    assert_true(seen.b[0].has_tlm);
    assert_false(seen.b[0].tlm.has_battery); /* 0 mV = not supported */
    assert_int_equal(seen.b[0].tlm.temperature_raw, -1344);
    assert_int_equal(seen.b[0].tlm.adv_count, 9);
    assert_int_equal(seen.b[0].tlm.uptime_ds, 50);
    /* the next window starts empty; the beacon is still reported, silent */
    seen.n = 0;
    ble_beacons_window(&bs, collect, &seen);
    assert_int_equal(seen.n, 1);
    assert_int_equal(seen.b[0].adverts, 0);
    assert_false(seen.b[0].has_tlm);
    assert_false(seen.b[0].has_power);
    assert_int_equal(seen.b[0].rssi_n, 0);
    ble_beacons_record(&bs, 7, &u, true, 0); /* an index never given: ignored */
    ble_beacons_free(&bs);
}

static void capacity_is_bounded(void **s)
{
    (void)s;
    struct ble_beacons bs;
    setup_allow();
    assert_int_equal(ble_beacons_init(&bs, allow, 1, 2), 0);
    struct ble_frame a = ibeacon(0xf7, 1, 1, 0), b = ibeacon(0xf7, 1, 2, 0),
                     c = ibeacon(0xf7, 1, 3, 0);
    assert_int_equal(ble_beacons_match(&bs, &a), 0);
    assert_int_equal(ble_beacons_match(&bs, &b), 1);
    assert_int_equal(ble_beacons_match(&bs, &c), -ENOSPC);
    assert_int_equal(ble_beacons_match(&bs, &a), 0);
    ble_beacons_free(&bs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(allowlist_selects_and_names),
        cmocka_unit_test(telemetry_and_windows),
        cmocka_unit_test(capacity_is_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
