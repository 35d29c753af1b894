/*
 * beacon: the municipality's own beacons. The allowlist (iBeacon proximity
 * UUIDs, Eddystone namespaces, Eddystone URL prefixes) decides which
 * identifying frames are theirs; everything else is anonymous presence.
 * Per allowlisted beacon seen, what its advertisements said during the open
 * window: how many, their RSSI, its calibrated power, its last telemetry.
 *
 * A beacon is named by the allowlist entry and its own identity (major and
 * minor, or the Eddystone instance), never by its Bluetooth address. Pure,
 * one thread (the loop).
 */
#ifndef BLE_BEACON_H
#define BLE_BEACON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "adv.h"

enum ble_allow_kind { BLE_ALLOW_IBEACON, BLE_ALLOW_EDDYSTONE_NS, BLE_ALLOW_EDDYSTONE_URL };

struct ble_allow {
    int kind;         /* enum ble_allow_kind */
    uint8_t id[16];   /* UUID (16 bytes) or namespace (10 bytes) */
    const char *url;  /* EDDYSTONE_URL: the prefix, borrowed */
    const char *name; /* device name prefix, borrowed */
};

#define BLE_BEACON_NAME_MAX 40 /* an allowlist name; a device name is at most 63 */

struct ble_beacon {
    char device[64];
    int kind;          /* the identifying frame: enum ble_frame_kind */
    uint8_t ident[22]; /* kind-specific identity bytes */
    /* the open window */
    uint32_t adverts; /* frames received (identifying and telemetry) */
    int64_t rssi_sum;
    uint32_t rssi_n;
    bool has_power;
    int8_t power; /* iBeacon measured power (1 m) or Eddystone tx power (0 m), last */
    bool has_tlm;
    struct ble_tlm tlm; /* the last TLM */
};

struct ble_beacons {
    const struct ble_allow *allow;
    size_t nallow;
    struct ble_beacon *b;
    size_t n, cap;
};

/* allow is borrowed until free. 0 or -ENOMEM. */
int ble_beacons_init(struct ble_beacons *bs, const struct ble_allow *allow, size_t nallow,
                     size_t cap);
void ble_beacons_free(struct ble_beacons *bs);

/* The beacon an identifying frame (iBeacon, Eddystone UID or URL) comes
 * from: its index, made on first sight; -1 when no allowlist entry takes
 * it; -ENOSPC when cap beacons are known already. */
int ble_beacons_match(struct ble_beacons *bs, const struct ble_frame *f);

/* Frame f (identifying or TLM) of beacon i, with the sender's RSSI. */
void ble_beacons_record(struct ble_beacons *bs, int i, const struct ble_frame *f, bool has_rssi,
                        int rssi);

/* Calls cb for every beacon seen since start (with adverts 0 when it was
 * silent in this window), then clears the window's figures. */
void ble_beacons_window(struct ble_beacons *bs, void (*cb)(void *arg, const struct ble_beacon *b),
                        void *arg);

#endif
