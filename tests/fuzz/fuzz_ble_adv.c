/* Fuzz the ble plugin's advertisement decoders with the real functions:
 * the first byte picks manufacturer data (Apple's company id or another)
 * or Eddystone service data, the rest is the payload. Never a crash, a
 * leak or undefined behaviour; a rejected frame leaves nothing decoded;
 * what is accepted holds what adv.h promises (lengths, a URL of printable
 * characters within its buffer), and the allowlist takes it or not without
 * harm. Also the text forms: UUIDs, hex, BlueZ device paths. */
#include <stdlib.h>
#include <string.h>

#include "adv.h"
#include "beacon.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x))                                                                                  \
            abort();                                                                               \
    } while (0)

static const uint8_t eddystone_uuid[16] = {0x00, 0x00, 0xfe, 0xaa, 0x00, 0x00, 0x10, 0x00,
                                           0x80, 0x00, 0x00, 0x80, 0x5f, 0x9b, 0x34, 0xfb};

static bool zero(const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return false;
    return true;
}

static void check_frame(int rc, const struct ble_frame *f, size_t n)
{
    if (rc < 0 || rc == BLE_FRAME_NONE) {
        CHECK(zero(f, sizeof(*f))); /* never half-decoded */
        return;
    }
    CHECK(f->kind == rc);
    switch (rc) {
    case BLE_FRAME_IBEACON:
        CHECK(n == 23);
        break;
    case BLE_FRAME_EDDYSTONE_UID:
        CHECK(n == 18 || n == 20);
        break;
    case BLE_FRAME_EDDYSTONE_TLM:
        CHECK(n == 14);
        CHECK(f->u.tlm.has_temperature || f->u.tlm.temperature_raw == 0);
        CHECK(!f->u.tlm.has_battery || f->u.tlm.battery_mv != 0);
        break;
    case BLE_FRAME_EDDYSTONE_URL: {
        size_t len = strnlen(f->u.url.url, BLE_URL_MAX);
        CHECK(n >= 3 && n <= 20);
        CHECK(len < BLE_URL_MAX && len >= 7);
        for (size_t i = 0; i < len; i++)
            CHECK(f->u.url.url[i] > 0x20 && f->u.url.url[i] < 0x7f);
        break;
    }
    default:
        abort();
    }
}

static void allowlist(const struct ble_frame *f)
{
    static struct ble_allow allow[3];
    struct ble_beacons bs;
    allow[0] = (struct ble_allow){.kind = BLE_ALLOW_IBEACON, .name = "a"};
    allow[1] = (struct ble_allow){.kind = BLE_ALLOW_EDDYSTONE_NS, .name = "b"};
    allow[2] = (struct ble_allow){.kind = BLE_ALLOW_EDDYSTONE_URL, .url = "http", .name = "c"};
    if (f->kind == BLE_FRAME_IBEACON)
        memcpy(allow[0].id, f->u.ibeacon.uuid, 16);
    if (f->kind == BLE_FRAME_EDDYSTONE_UID)
        memcpy(allow[1].id, f->u.uid.ns, 10);
    CHECK(ble_beacons_init(&bs, allow, 3, 1) == 0);
    int i = ble_beacons_match(&bs, f);
    if (f->kind == BLE_FRAME_IBEACON || f->kind == BLE_FRAME_EDDYSTONE_UID ||
        f->kind == BLE_FRAME_EDDYSTONE_URL)
        CHECK(i == 0); /* every URL starts with http */
    else
        CHECK(i == -1);
    ble_beacons_record(&bs, i, f, true, -60);
    ble_beacons_free(&bs);
}

static void text_forms(const uint8_t *data, size_t size)
{
    uint8_t u[16], a[6];
    char s[37], path[128];
    if (ble_uuid_parse((const char *)data, size, u) == 0) {
        ble_uuid_format(u, s);
        uint8_t v[16];
        CHECK(ble_uuid_parse(s, 36, v) == 0 && memcmp(u, v, 16) == 0);
    }
    if (size < sizeof(path)) {
        memcpy(path, data, size);
        path[size] = 0;
        if (ble_addr_from_path(path, "/org/bluez/hci0", a) == 0)
            CHECK(strlen(path) == strlen("/org/bluez/hci0/dev_AA_BB_CC_DD_EE_FF"));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ble_frame f;
    int rc;

    if (size < 1)
        return 0;
    const uint8_t *d = data + 1;
    size_t n = size - 1;
    switch (data[0] % 3) {
    case 0:
        rc = ble_adv_manufacturer(BLE_APPLE_COMPANY, d, n, &f);
        break;
    case 1:
        rc = ble_adv_manufacturer((uint16_t)(data[0] << 8 | 0x59), d, n, &f);
        break;
    default:
        rc = ble_adv_service(eddystone_uuid, d, n, &f);
        break;
    }
    check_frame(rc, &f, n);
    if (rc > 0)
        allowlist(&f);
    text_forms(d, n);
    return 0;
}
