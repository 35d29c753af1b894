/*
 * adv: BLE advertisement decoders (adv.h).
 */
#include "adv.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "text.h" /* plugins/common */

/* 0000xxxx-0000-1000-8000-00805f9b34fb */
static const uint8_t base_uuid[16] = {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00,
                                      0x80, 0x00, 0x00, 0x80, 0x5f, 0x9b, 0x34, 0xfb};

static uint16_t be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Apple's manufacturer data is type, length, value; iBeacon is type 0x02,
 * length 0x15: UUID, major, minor, measured power (23 bytes in all). */
int ble_adv_manufacturer(uint16_t company, const uint8_t *d, size_t n, struct ble_frame *f)
{
    memset(f, 0, sizeof(*f));
    if (company != BLE_APPLE_COMPANY || n == 0 || d[0] != 0x02)
        return BLE_FRAME_NONE;
    if (n != 23 || d[1] != 0x15)
        return BLE_ADV_MALFORMED;
    f->kind = BLE_FRAME_IBEACON;
    memcpy(f->u.ibeacon.uuid, d + 2, 16);
    f->u.ibeacon.major = be16(d + 18);
    f->u.ibeacon.minor = be16(d + 20);
    f->u.ibeacon.power = (int8_t)d[22];
    return f->kind;
}

/* The expansion of an Eddystone-URL code, or NULL for a reserved code
 * (0x0e-0x20, 0x7f-0xff). Printable ASCII stands for itself. */
static const char *url_code(uint8_t c, char one[2])
{
    static const char *const codes[] = {".com/", ".org/", ".edu/", ".net/", ".info/",
                                        ".biz/", ".gov/", ".com",  ".org",  ".edu",
                                        ".net",  ".info", ".biz",  ".gov"};
    if (c <= 0x0d)
        return codes[c];
    if (c < 0x21 || c > 0x7e)
        return NULL;
    one[0] = (char)c;
    one[1] = 0;
    return one;
}

static int eddystone_url(const uint8_t *d, size_t n, struct ble_eddystone_url *u)
{
    static const char *const schemes[] = {"http://www.", "https://www.", "http://", "https://"};
    size_t len;

    /* frame type, tx power, scheme, then 0 to 17 encoded bytes */
    if (n < 3 || n > 20 || d[2] > 3)
        return BLE_ADV_MALFORMED;
    u->tx_power = (int8_t)d[1];
    len = strlen(schemes[d[2]]);
    memcpy(u->url, schemes[d[2]], len + 1);
    for (size_t i = 3; i < n; i++) {
        char one[2];
        const char *x = url_code(d[i], one);
        size_t xl;
        if (!x) {
            memset(u->url, 0, sizeof(u->url));
            return BLE_ADV_MALFORMED;
        }
        xl = strlen(x);
        memcpy(u->url + len, x, xl + 1); /* 12 + 17 * 6 < BLE_URL_MAX */
        len += xl;
    }
    return BLE_FRAME_EDDYSTONE_URL;
}

static int eddystone_tlm(const uint8_t *d, size_t n, struct ble_tlm *t)
{
    if (n < 2)
        return BLE_ADV_MALFORMED;
    if (d[1] != 0x00)
        return BLE_ADV_UNSUPPORTED; /* 0x01 is the encrypted eTLM */
    if (n != 14)
        return BLE_ADV_MALFORMED; /* fixed length, tlm-plain.md */
    uint16_t mv = be16(d + 2), temp = be16(d + 4);
    t->has_battery = mv != 0;
    t->battery_mv = mv;
    t->has_temperature = temp != 0x8000;
    t->temperature_raw = t->has_temperature ? (int16_t)temp : 0;
    t->adv_count = be32(d + 6);
    t->uptime_ds = be32(d + 10);
    return BLE_FRAME_EDDYSTONE_TLM;
}

int ble_adv_service(const uint8_t uuid[16], const uint8_t *d, size_t n, struct ble_frame *f)
{
    int rc;

    memset(f, 0, sizeof(*f));
    if (ble_uuid16(uuid) != BLE_EDDYSTONE_UUID16)
        return BLE_FRAME_NONE;
    if (n == 0)
        return BLE_ADV_MALFORMED;
    switch (d[0]) {
    case 0x00: /* UID: 20 bytes; 18 where the two RFU bytes are left out (the spec allows it) */
        if (n != 18 && n != 20)
            return BLE_ADV_MALFORMED;
        f->u.uid.tx_power = (int8_t)d[1];
        memcpy(f->u.uid.ns, d + 2, 10);
        memcpy(f->u.uid.instance, d + 12, 6);
        rc = BLE_FRAME_EDDYSTONE_UID;
        break;
    case 0x10:
        rc = eddystone_url(d, n, &f->u.url);
        break;
    case 0x20:
        rc = eddystone_tlm(d, n, &f->u.tlm);
        break;
    default: /* 0x30 EID (rotating, encrypted) and frame types after it */
        return BLE_ADV_UNSUPPORTED;
    }
    if (rc < 0)
        memset(f, 0, sizeof(*f));
    else
        f->kind = rc;
    return rc;
}

double ble_tlm_celsius(int16_t raw)
{
    return raw / 256.0;
}

int ble_hex_parse(const char *s, size_t len, uint8_t *out, size_t n)
{
    if (len != 2 * n)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        int hi = mtx_hexval(s[2 * i]), lo = mtx_hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -EINVAL;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

int ble_uuid_parse(const char *s, size_t len, uint8_t out[16])
{
    char hex[32];
    size_t k = 0;

    if (len == 32)
        return ble_hex_parse(s, len, out, 16);
    if (len != 36)
        return -EINVAL;
    for (size_t i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash != (s[i] == '-'))
            return -EINVAL;
        if (!dash)
            hex[k++] = s[i];
    }
    return ble_hex_parse(hex, 32, out, 16);
}

void ble_uuid_format(const uint8_t u[16], char out[37])
{
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0],
             u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13],
             u[14], u[15]);
}

int ble_uuid16(const uint8_t u[16])
{
    if (u[0] || u[1] || memcmp(u + 4, base_uuid + 4, 12) != 0)
        return -1;
    return u[2] << 8 | u[3];
}

/* ".../hci0/dev_AA_BB_CC_DD_EE_FF": BlueZ names device objects after the
 * address, most significant byte first (src/device.c). */
int ble_addr_from_path(const char *path, const char *adapter_path, uint8_t out[6])
{
    size_t al = strlen(adapter_path);
    const char *p;

    if (strncmp(path, adapter_path, al) != 0 || strncmp(path + al, "/dev_", 5) != 0)
        return -EINVAL;
    p = path + al + 5;
    if (strlen(p) != 17)
        return -EINVAL;
    for (size_t i = 0; i < 6; i++) {
        int hi = mtx_hexval(p[3 * i]), lo = mtx_hexval(p[3 * i + 1]);
        if (hi < 0 || lo < 0 || (i < 5 && p[3 * i + 2] != '_'))
            return -EINVAL;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

int ble_addr_kind(bool random, const uint8_t addr[6])
{
    if (!random)
        return BLE_ADDR_PUBLIC;
    switch (addr[0] >> 6) { /* the two most significant bits (Core spec Vol 6 Part B 1.3) */
    case 3:
        return BLE_ADDR_STATIC;
    case 1:
        return BLE_ADDR_RESOLVABLE;
    case 0:
        return BLE_ADDR_NONRESOLVABLE;
    default:
        return BLE_ADDR_RESERVED;
    }
}

const char *ble_addr_kind_name(int kind)
{
    switch (kind) {
    case BLE_ADDR_PUBLIC:
        return "public";
    case BLE_ADDR_STATIC:
        return "static";
    case BLE_ADDR_RESOLVABLE:
        return "resolvable";
    case BLE_ADDR_NONRESOLVABLE:
        return "nonresolvable";
    case BLE_ADDR_RESERVED:
        return "reserved";
    default:
        return "unknown";
    }
}

bool ble_addr_stable(int kind)
{
    return kind == BLE_ADDR_PUBLIC || kind == BLE_ADDR_STATIC;
}
