/* BLE advertisement decoders against the published formats
 * (../shared/DEVICES.md section 6; google/eddystone eddystone-uid,
 * eddystone-url, eddystone-tlm/tlm-plain.md): exact fields, "not supported"
 * as absent, and every truncated, overlong or reserved frame rejected
 * whole. */
#include "testutil.h"

#include <string.h>

#include "adv.h"

static const uint8_t eddystone_uuid[16] = {0x00, 0x00, 0xfe, 0xaa, 0x00, 0x00, 0x10, 0x00,
                                           0x80, 0x00, 0x00, 0x80, 0x5f, 0x9b, 0x34, 0xfb};

/* iBeacon manufacturer data after the company id 0x004C: 02 15, UUID
 * f7826da6-4fa2-4e98-8024-bc5b71e0893e, major 40000 (9C 40), minor 32768
 * (80 00), measured power 0xC5 = -59 dBm. */
static const uint8_t ibeacon[23] = {0x02, 0x15, 0xf7, 0x82, 0x6d, 0xa6, 0x4f, 0xa2,
                                    0x4e, 0x98, 0x80, 0x24, 0xbc, 0x5b, 0x71, 0xe0,
                                    0x89, 0x3e, 0x9c, 0x40, 0x80, 0x00, 0xc5};

static bool all_zero(const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return false;
    return true;
}

static void ibeacon_fields_exact(void **s)
{
    (void)s;
    struct ble_frame f;
    char uuid[37];
    assert_int_equal(ble_adv_manufacturer(0x004C, ibeacon, sizeof(ibeacon), &f), BLE_FRAME_IBEACON);
    assert_int_equal(f.kind, BLE_FRAME_IBEACON);
    ble_uuid_format(f.u.ibeacon.uuid, uuid);
    assert_string_equal(uuid, "f7826da6-4fa2-4e98-8024-bc5b71e0893e");
    assert_int_equal(f.u.ibeacon.major, 40000); /* unsigned 16-bit, above 32767 */
    assert_int_equal(f.u.ibeacon.minor, 32768);
    assert_int_equal(f.u.ibeacon.power, -59); /* signed 8-bit */

    uint8_t x[23];
    memcpy(x, ibeacon, sizeof(x));
    x[18] = x[19] = x[20] = x[21] = 0xff;
    x[22] = 0x7f;
    assert_int_equal(ble_adv_manufacturer(0x004C, x, sizeof(x), &f), BLE_FRAME_IBEACON);
    assert_int_equal(f.u.ibeacon.major, 65535);
    assert_int_equal(f.u.ibeacon.minor, 65535);
    assert_int_equal(f.u.ibeacon.power, 127);
    x[22] = 0x80;
    assert_int_equal(ble_adv_manufacturer(0x004C, x, sizeof(x), &f), BLE_FRAME_IBEACON);
    assert_int_equal(f.u.ibeacon.power, -128);
}

static void ibeacon_truncated_or_overlong_rejected(void **s)
{
    (void)s;
    struct ble_frame f;
    uint8_t x[24];
    memcpy(x, ibeacon, sizeof(ibeacon));
    x[23] = 0;
    for (size_t n = 1; n < 23; n++) {
        memset(&f, 0x55, sizeof(f));
        assert_int_equal(ble_adv_manufacturer(0x004C, x, n, &f), BLE_ADV_MALFORMED);
        assert_true(all_zero(&f, sizeof(f))); /* never half-decoded */
    }
    assert_int_equal(ble_adv_manufacturer(0x004C, x, 24, &f), BLE_ADV_MALFORMED);
    x[1] = 0x14; /* the iBeacon length byte must be 0x15 */
    assert_int_equal(ble_adv_manufacturer(0x004C, x, 23, &f), BLE_ADV_MALFORMED);
}

static void other_manufacturer_data_is_presence(void **s)
{
    (void)s;
    struct ble_frame f;
    /* the same bytes under another company id are not an iBeacon */
    assert_int_equal(ble_adv_manufacturer(0x0059, ibeacon, sizeof(ibeacon), &f), BLE_FRAME_NONE);
    /* Apple's other types (0x10 Nearby Info, 0x12 ...) are not iBeacons */
    const uint8_t nearby[] = {0x10, 0x05, 0x01, 0x18, 0x4a, 0x33, 0x2c};
    assert_int_equal(ble_adv_manufacturer(0x004C, nearby, sizeof(nearby), &f), BLE_FRAME_NONE);
    assert_int_equal(ble_adv_manufacturer(0x004C, nearby, 0, &f), BLE_FRAME_NONE);
    assert_int_equal(f.kind, BLE_FRAME_NONE);
}

/* UID: frame type 00, tx power at 0 m (0xEE = -18 dBm, the spec's example),
 * namespace 8b0ca750095477cb3e77 (the spec's elided UUID), instance, RFU. */
static const uint8_t uid[20] = {0x00, 0xee, 0x8b, 0x0c, 0xa7, 0x50, 0x09, 0x54, 0x77, 0xcb,
                                0x3e, 0x77, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2a, 0x00, 0x00};

static void eddystone_uid_exact(void **s)
{
    (void)s;
    struct ble_frame f;
    const uint8_t ns[10] = {0x8b, 0x0c, 0xa7, 0x50, 0x09, 0x54, 0x77, 0xcb, 0x3e, 0x77};
    const uint8_t inst[6] = {0, 0, 0, 0, 0, 0x2a};
    assert_int_equal(ble_adv_service(eddystone_uuid, uid, 20, &f), BLE_FRAME_EDDYSTONE_UID);
    assert_int_equal(f.kind, BLE_FRAME_EDDYSTONE_UID);
    assert_int_equal(f.u.uid.tx_power, -18);
    assert_memory_equal(f.u.uid.ns, ns, 10);
    assert_memory_equal(f.u.uid.instance, inst, 6);
    /* "implementations that truncate the frame to omit the RFU bytes" (18) */
    assert_int_equal(ble_adv_service(eddystone_uuid, uid, 18, &f), BLE_FRAME_EDDYSTONE_UID);
    assert_memory_equal(f.u.uid.instance, inst, 6);
    uint8_t x[21];
    memcpy(x, uid, 20);
    x[20] = 0;
    for (size_t n = 1; n <= 21; n++) {
        if (n == 18 || n == 20)
            continue;
        memset(&f, 0x55, sizeof(f));
        assert_int_equal(ble_adv_service(eddystone_uuid, x, n, &f), BLE_ADV_MALFORMED);
        assert_true(all_zero(&f, sizeof(f)));
    }
    assert_int_equal(ble_adv_service(eddystone_uuid, x, 0, &f), BLE_ADV_MALFORMED);
}

static int url(const uint8_t *d, size_t n, struct ble_frame *f)
{
    return ble_adv_service(eddystone_uuid, d, n, f);
}

static void eddystone_url_expansions(void **s)
{
    (void)s;
    struct ble_frame f;
    /* the spec's example https://goo.gl/S6zT6P, tx power 0x12 = +18 dBm */
    const uint8_t goo[] = {0x10, 0x12, 0x03, 'g', 'o', 'o', '.', 'g',
                           'l',  '/',  'S',  '6', 'z', 'T', '6', 'P'};
    assert_int_equal(url(goo, sizeof(goo), &f), BLE_FRAME_EDDYSTONE_URL);
    assert_int_equal(f.u.url.tx_power, 18);
    assert_string_equal(f.u.url.url, "https://goo.gl/S6zT6P");
    /* every scheme and every expansion code */
    const uint8_t all[] = {0x10, 0xe7, 0x00, 'a',  0x00, 'b',  0x01, 'c', 0x02,
                           'd',  0x03, 'e',  0x04, 'f',  0x05, 'g',  0x06};
    assert_int_equal(url(all, sizeof(all), &f), BLE_FRAME_EDDYSTONE_URL);
    assert_int_equal(f.u.url.tx_power, -25);
    assert_string_equal(f.u.url.url, "http://www.a.com/b.org/c.edu/d.net/e.info/f.biz/g.gov/");
    const uint8_t bare[] = {0x10, 0x00, 0x01, 'a',  0x07, 'b',  0x08, 'c', 0x09,
                            'd',  0x0a, 'e',  0x0b, 'f',  0x0c, 'g',  0x0d};
    assert_int_equal(url(bare, sizeof(bare), &f), BLE_FRAME_EDDYSTONE_URL);
    assert_string_equal(f.u.url.url, "https://www.a.comb.orgc.edud.nete.infof.bizg.gov");
    const uint8_t http[] = {0x10, 0x00, 0x02, 'x', 0x07};
    assert_int_equal(url(http, sizeof(http), &f), BLE_FRAME_EDDYSTONE_URL);
    assert_string_equal(f.u.url.url, "http://x.com");
    /* the longest: 17 codes of 6 characters each fit */
    uint8_t longest[20] = {0x10, 0x00, 0x01};
    memset(longest + 3, 0x04, 17);
    assert_int_equal(url(longest, 20, &f), BLE_FRAME_EDDYSTONE_URL);
    assert_int_equal(strlen(f.u.url.url), 12 + 17 * 6);
    /* the scheme alone (0 encoded bytes, "Length 0-17") */
    assert_int_equal(url(http, 3, &f), BLE_FRAME_EDDYSTONE_URL);
    assert_string_equal(f.u.url.url, "http://");
}

static void eddystone_url_reserved_rejected(void **s)
{
    (void)s;
    struct ble_frame f;
    const uint8_t reserved[] = {0x0e, 0x14, 0x20, 0x7f, 0x80, 0xff};
    uint8_t x[] = {0x10, 0x00, 0x03, 'a', 'b', 'c'};
    for (size_t i = 0; i < sizeof(reserved); i++) {
        x[4] = reserved[i];
        memset(&f, 0x55, sizeof(f));
        assert_int_equal(url(x, sizeof(x), &f), BLE_ADV_MALFORMED);
        assert_true(all_zero(&f, sizeof(f)));
    }
    x[4] = 'b';
    x[2] = 0x04; /* schemes are 0..3 */
    assert_int_equal(url(x, sizeof(x), &f), BLE_ADV_MALFORMED);
    x[2] = 0x03;
    assert_int_equal(url(x, 2, &f), BLE_ADV_MALFORMED); /* no scheme */
    uint8_t over[21] = {0x10, 0x00, 0x01};
    memset(over + 3, 'a', 18); /* 18 encoded bytes: one too many */
    assert_int_equal(url(over, 21, &f), BLE_ADV_MALFORMED);
}

/* TLM v0: 3000 mV, -5.25 °C (0xFAC0 in signed 8.8), 0x00010203 adverts,
 * 10000 * 0.1 s. */
static const uint8_t tlm[14] = {0x20, 0x00, 0x0b, 0xb8, 0xfa, 0xc0, 0x00,
                                0x01, 0x02, 0x03, 0x00, 0x00, 0x27, 0x10};

static void eddystone_tlm_exact(void **s)
{
    (void)s;
    struct ble_frame f;
    assert_int_equal(ble_adv_service(eddystone_uuid, tlm, 14, &f), BLE_FRAME_EDDYSTONE_TLM);
    assert_true(f.u.tlm.has_battery);
    assert_int_equal(f.u.tlm.battery_mv, 3000);
    assert_true(f.u.tlm.has_temperature);
    assert_true(ble_tlm_celsius(f.u.tlm.temperature_raw) == -5.25);
    assert_int_equal(f.u.tlm.adv_count, 0x00010203);
    assert_int_equal(f.u.tlm.uptime_ds, 10000);

    uint8_t x[15];
    memcpy(x, tlm, 14);
    x[4] = 0xff; /* 0xFF80: -0.5 °C */
    x[5] = 0x80;
    assert_int_equal(ble_adv_service(eddystone_uuid, x, 14, &f), BLE_FRAME_EDDYSTONE_TLM);
    assert_true(ble_tlm_celsius(f.u.tlm.temperature_raw) == -0.5);
    x[4] = 0x19; /* 25.5 °C */
    x[5] = 0x80;
    assert_int_equal(ble_adv_service(eddystone_uuid, x, 14, &f), BLE_FRAME_EDDYSTONE_TLM);
    assert_true(ble_tlm_celsius(f.u.tlm.temperature_raw) == 25.5);
    x[6] = x[7] = x[8] = x[9] = 0xff; /* counters are unsigned 32-bit */
    x[10] = x[11] = x[12] = x[13] = 0xff;
    assert_int_equal(ble_adv_service(eddystone_uuid, x, 14, &f), BLE_FRAME_EDDYSTONE_TLM);
    assert_int_equal(f.u.tlm.adv_count, 4294967295u);
    assert_int_equal(f.u.tlm.uptime_ds, 4294967295u);
}

static void eddystone_tlm_not_supported_is_absent(void **s)
{
    (void)s;
    struct ble_frame f;
    uint8_t x[14];
    memcpy(x, tlm, 14);
    x[2] = x[3] = 0x00; /* battery: "should be zeroed" when not supported */
    x[4] = 0x80;        /* temperature: 0x8000 when not supported */
    x[5] = 0x00;
    assert_int_equal(ble_adv_service(eddystone_uuid, x, 14, &f), BLE_FRAME_EDDYSTONE_TLM);
    assert_false(f.u.tlm.has_battery);
    assert_false(f.u.tlm.has_temperature);
    assert_int_equal(f.u.tlm.adv_count, 0x00010203);
    /* -128.0 °C other than 0x8000 cannot occur; 0x8001 is -127.996 °C and is a value */
    x[5] = 0x01;
    assert_int_equal(ble_adv_service(eddystone_uuid, x, 14, &f), BLE_FRAME_EDDYSTONE_TLM);
    assert_true(f.u.tlm.has_temperature);
    assert_int_equal(f.u.tlm.temperature_raw, -32767);
}

static void eddystone_tlm_truncated_and_unsupported(void **s)
{
    (void)s;
    struct ble_frame f;
    uint8_t x[18];
    memset(x, 0, sizeof(x));
    memcpy(x, tlm, 14);
    for (size_t n = 1; n <= 15; n++) {
        if (n == 14)
            continue;
        memset(&f, 0x55, sizeof(f));
        assert_int_equal(ble_adv_service(eddystone_uuid, x, n, &f), BLE_ADV_MALFORMED);
        assert_true(all_zero(&f, sizeof(f)));
    }
    x[1] = 0x01; /* encrypted TLM (eTLM), 18 bytes */
    assert_int_equal(ble_adv_service(eddystone_uuid, x, 18, &f), BLE_ADV_UNSUPPORTED);
    const uint8_t eid[] = {0x30, 0xe7, 1, 2, 3, 4, 5, 6, 7, 8};
    assert_int_equal(ble_adv_service(eddystone_uuid, eid, sizeof(eid), &f), BLE_ADV_UNSUPPORTED);
    const uint8_t other[] = {0x40, 0x00};
    assert_int_equal(ble_adv_service(eddystone_uuid, other, sizeof(other), &f),
                     BLE_ADV_UNSUPPORTED);
    /* other services' data is just presence */
    uint8_t battery_uuid[16];
    memcpy(battery_uuid, eddystone_uuid, 16);
    battery_uuid[2] = 0x18;
    battery_uuid[3] = 0x0f;
    assert_int_equal(ble_adv_service(battery_uuid, tlm, 14, &f), BLE_FRAME_NONE);
}

static void uuid_and_hex_forms(void **s)
{
    (void)s;
    uint8_t u[16], v[16];
    char out[37];
    const char *t = "0000FEAA-0000-1000-8000-00805F9B34FB";
    assert_int_equal(ble_uuid_parse(t, strlen(t), u), 0);
    assert_memory_equal(u, eddystone_uuid, 16);
    assert_int_equal(ble_uuid16(u), 0xFEAA);
    ble_uuid_format(u, out);
    assert_string_equal(out, "0000feaa-0000-1000-8000-00805f9b34fb");
    assert_int_equal(ble_uuid_parse("0000feaa00001000800000805f9b34fb", 32, v), 0);
    assert_memory_equal(u, v, 16);
    const char *bad[] = {
        "0000feaa-0000-1000-8000-00805f9b34f", "0000feaa-0000-1000-8000_00805f9b34fb",
        "0000feag-0000-1000-8000-00805f9b34fb", "0000feaa00001000-8000-00805f9b34fb0", ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(ble_uuid_parse(bad[i], strlen(bad[i]), v), -EINVAL);
    u[12] ^= 1; /* off the base UUID: no short form */
    assert_int_equal(ble_uuid16(u), -1);
    uint8_t ns[10];
    assert_int_equal(ble_hex_parse("8b0ca750095477cb3e77", 20, ns, 10), 0);
    assert_int_equal(ns[0], 0x8b);
    assert_int_equal(ns[9], 0x77);
    assert_int_equal(ble_hex_parse("8b0ca750095477cb3e7", 19, ns, 10), -EINVAL);
    assert_int_equal(ble_hex_parse("8b0ca750095477cb3e7z", 20, ns, 10), -EINVAL);
}

static void device_paths_and_address_kinds(void **s)
{
    (void)s;
    uint8_t a[6];
    const uint8_t want[6] = {0xC4, 0x7A, 0x0B, 0x11, 0x22, 0xF3};
    assert_int_equal(
        ble_addr_from_path("/org/bluez/hci0/dev_C4_7A_0B_11_22_F3", "/org/bluez/hci0", a), 0);
    assert_memory_equal(a, want, 6);
    assert_int_equal(
        ble_addr_from_path("/org/bluez/hci1/dev_C4_7A_0B_11_22_F3", "/org/bluez/hci0", a), -EINVAL);
    assert_int_equal(ble_addr_from_path("/org/bluez/hci0/dev_C4_7A_0B_11_22_F3/service0001",
                                        "/org/bluez/hci0", a),
                     -EINVAL);
    assert_int_equal(ble_addr_from_path("/org/bluez/hci0/dev_C4_7A_0B_11_22", "/org/bluez/hci0", a),
                     -EINVAL);
    assert_int_equal(
        ble_addr_from_path("/org/bluez/hci0/dev_C4-7A_0B_11_22_F3", "/org/bluez/hci0", a), -EINVAL);
    assert_int_equal(ble_addr_from_path("/org/bluez/hci0", "/org/bluez/hci0", a), -EINVAL);
    /* the two most significant bits of a random address say its kind */
    const uint8_t st[6] = {0xC4}, rpa[6] = {0x5A}, nrpa[6] = {0x3F}, rsv[6] = {0x80};
    assert_int_equal(ble_addr_kind(false, rpa), BLE_ADDR_PUBLIC);
    assert_int_equal(ble_addr_kind(true, st), BLE_ADDR_STATIC);
    assert_int_equal(ble_addr_kind(true, rpa), BLE_ADDR_RESOLVABLE);
    assert_int_equal(ble_addr_kind(true, nrpa), BLE_ADDR_NONRESOLVABLE);
    assert_int_equal(ble_addr_kind(true, rsv), BLE_ADDR_RESERVED);
    assert_true(ble_addr_stable(BLE_ADDR_PUBLIC));
    assert_true(ble_addr_stable(BLE_ADDR_STATIC));
    assert_false(ble_addr_stable(BLE_ADDR_RESOLVABLE));
    assert_false(ble_addr_stable(BLE_ADDR_NONRESOLVABLE));
    assert_false(ble_addr_stable(BLE_ADDR_UNKNOWN));
    assert_string_equal(ble_addr_kind_name(BLE_ADDR_RESOLVABLE), "resolvable");
    assert_string_equal(ble_addr_kind_name(BLE_ADDR_UNKNOWN), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ibeacon_fields_exact),
        cmocka_unit_test(ibeacon_truncated_or_overlong_rejected),
        cmocka_unit_test(other_manufacturer_data_is_presence),
        cmocka_unit_test(eddystone_uid_exact),
        cmocka_unit_test(eddystone_url_expansions),
        cmocka_unit_test(eddystone_url_reserved_rejected),
        cmocka_unit_test(eddystone_tlm_exact),
        cmocka_unit_test(eddystone_tlm_not_supported_is_absent),
        cmocka_unit_test(eddystone_tlm_truncated_and_unsupported),
        cmocka_unit_test(uuid_and_hex_forms),
        cmocka_unit_test(device_paths_and_address_kinds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
