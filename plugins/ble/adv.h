/*
 * adv: decoders of the BLE advertisement payloads BlueZ hands over (the
 * value of one ManufacturerData company id, or of one ServiceData UUID):
 * iBeacon, Eddystone UID, URL and TLM, exact to the published formats
 * (../shared/DEVICES.md section 6; google/eddystone eddystone-uid,
 * eddystone-url, eddystone-tlm/tlm-plain.md). Plus the small text forms the
 * plugin needs: UUIDs, hex identifiers, BlueZ device paths, address kinds.
 *
 * A payload is decoded whole or rejected (BLE_ADV_MALFORMED): a truncated
 * or overlong frame, a reserved URL code or scheme never gives half a
 * reading. Pure: no allocation, no state, any thread. Fuzzed
 * (tests/fuzz/fuzz_ble_adv.c).
 */
#ifndef BLE_ADV_H
#define BLE_ADV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BLE_APPLE_COMPANY 0x004C
#define BLE_EDDYSTONE_UUID16 0xFEAA
#define BLE_URL_MAX 128 /* "https://www." + 17 codes of at most 6 characters, NUL */

enum ble_frame_kind {
    BLE_FRAME_NONE = 0, /* not a beacon frame: anonymous presence only */
    BLE_FRAME_IBEACON,
    BLE_FRAME_EDDYSTONE_UID,
    BLE_FRAME_EDDYSTONE_URL,
    BLE_FRAME_EDDYSTONE_TLM,
};

/* What a decoder returns besides a kind. */
#define BLE_ADV_MALFORMED (-1)   /* a frame of a known format that breaks it */
#define BLE_ADV_UNSUPPORTED (-2) /* a format we know of and do not decode (eTLM, EID) */

struct ble_ibeacon {
    uint8_t uuid[16];
    uint16_t major, minor; /* unsigned 16-bit, big-endian on air */
    int8_t power;          /* measured power, dBm at 1 m */
};

struct ble_eddystone_uid {
    int8_t tx_power; /* dBm at 0 m */
    uint8_t ns[10];
    uint8_t instance[6];
};

struct ble_eddystone_url {
    int8_t tx_power;
    char url[BLE_URL_MAX]; /* expanded */
};

/* TLM v0. "Not supported" values are absent (has_* false), never 0 or -128. */
struct ble_tlm {
    bool has_battery;
    uint16_t battery_mv; /* 0 on air = not supported */
    bool has_temperature;
    int16_t temperature_raw; /* signed 8.8 fixed point; 0x8000 on air = not supported */
    uint32_t adv_count;      /* advertising PDUs since power-up */
    uint32_t uptime_ds;      /* 0.1 s since power-up */
};

struct ble_frame {
    int kind; /* enum ble_frame_kind */
    union {
        struct ble_ibeacon ibeacon;
        struct ble_eddystone_uid uid;
        struct ble_eddystone_url url;
        struct ble_tlm tlm;
    } u;
};

/* One ManufacturerData entry. Returns BLE_FRAME_IBEACON (Apple company id,
 * 02 15, exactly 23 bytes), BLE_FRAME_NONE (anything else), or
 * BLE_ADV_MALFORMED (Apple 02 with a wrong length). */
int ble_adv_manufacturer(uint16_t company, const uint8_t *d, size_t n, struct ble_frame *f);

/* One ServiceData entry for a 128-bit service UUID. Returns an Eddystone
 * kind for UUID 0xFEAA, BLE_FRAME_NONE for other services,
 * BLE_ADV_MALFORMED or BLE_ADV_UNSUPPORTED (EID, encrypted TLM, unknown
 * frame types and TLM versions). */
int ble_adv_service(const uint8_t uuid[16], const uint8_t *d, size_t n, struct ble_frame *f);

/* °C of a TLM temperature (signed 8.8). */
double ble_tlm_celsius(int16_t raw);

/* UUID text: 36 characters with hyphens at 8, 13, 18, 23, or 32 hex digits;
 * either case. 0 or -EINVAL. */
int ble_uuid_parse(const char *s, size_t len, uint8_t out[16]);
void ble_uuid_format(const uint8_t u[16], char out[37]); /* lower case, hyphens */
/* The 16-bit short form of a UUID on the Bluetooth base UUID, or -1. */
int ble_uuid16(const uint8_t u[16]);
/* Exactly 2n hex digits into n bytes. 0 or -EINVAL. */
int ble_hex_parse(const char *s, size_t len, uint8_t *out, size_t n);

/* The address of a BlueZ device object ADAPTER_PATH/dev_AA_BB_CC_DD_EE_FF
 * (out[0] = AA, the most significant byte). 0, or -EINVAL for a path that
 * is not a device of that adapter. */
int ble_addr_from_path(const char *path, const char *adapter_path, uint8_t out[6]);

enum ble_addr_kind {
    BLE_ADDR_UNKNOWN = 0,   /* AddressType not known (yet) */
    BLE_ADDR_PUBLIC,        /* IEEE-assigned, fixed */
    BLE_ADDR_STATIC,        /* random static (top bits 11): fixed until power cycle */
    BLE_ADDR_RESOLVABLE,    /* resolvable private (01): rotates, typically every ~15 min */
    BLE_ADDR_NONRESOLVABLE, /* non-resolvable private (00): rotates */
    BLE_ADDR_RESERVED,      /* random with top bits 10: reserved by the specification */
};

/* From BlueZ's AddressType ("public" or "random") and the address. */
int ble_addr_kind(bool random, const uint8_t addr[6]);
/* "public", "static", "resolvable", "nonresolvable", "reserved", "unknown" */
const char *ble_addr_kind_name(int kind);
/* public and static addresses do not rotate */
bool ble_addr_stable(int kind);

#endif
