/*
 * beacon: allowlist and per-beacon window figures (beacon.h).
 */
#include "beacon.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ble_beacons_init(struct ble_beacons *bs, const struct ble_allow *allow, size_t nallow,
                     size_t cap)
{
    memset(bs, 0, sizeof(*bs));
    bs->allow = allow;
    bs->nallow = nallow;
    bs->cap = cap;
    if (cap) {
        bs->b = calloc(cap, sizeof(*bs->b));
        if (!bs->b)
            return -ENOMEM;
    }
    return 0;
}

void ble_beacons_free(struct ble_beacons *bs)
{
    free(bs->b);
    memset(bs, 0, sizeof(*bs));
}

static bool takes(const struct ble_allow *a, const struct ble_frame *f)
{
    switch (f->kind) {
    case BLE_FRAME_IBEACON:
        return a->kind == BLE_ALLOW_IBEACON && memcmp(a->id, f->u.ibeacon.uuid, 16) == 0;
    case BLE_FRAME_EDDYSTONE_UID:
        return a->kind == BLE_ALLOW_EDDYSTONE_NS && memcmp(a->id, f->u.uid.ns, 10) == 0;
    case BLE_FRAME_EDDYSTONE_URL:
        return a->kind == BLE_ALLOW_EDDYSTONE_URL &&
               strncmp(f->u.url.url, a->url, strlen(a->url)) == 0;
    default:
        return false;
    }
}

/* The identity of the beacon behind f under entry a, and its device name. */
static void identity(const struct ble_allow *a, size_t ai, const struct ble_frame *f,
                     uint8_t ident[22], char device[64])
{
    memset(ident, 0, 22);
    switch (f->kind) {
    case BLE_FRAME_IBEACON: {
        const struct ble_ibeacon *b = &f->u.ibeacon;
        memcpy(ident, b->uuid, 16);
        ident[16] = (uint8_t)(b->major >> 8);
        ident[17] = (uint8_t)b->major;
        ident[18] = (uint8_t)(b->minor >> 8);
        ident[19] = (uint8_t)b->minor;
        snprintf(device, 64, "%s.%u.%u", a->name, (unsigned)b->major, (unsigned)b->minor);
        break;
    }
    case BLE_FRAME_EDDYSTONE_UID: {
        const uint8_t *n = f->u.uid.ns, *i = f->u.uid.instance;
        memcpy(ident, n, 10);
        memcpy(ident + 10, i, 6);
        snprintf(device, 64, "%s.%02x%02x%02x%02x%02x%02x", a->name, i[0], i[1], i[2], i[3], i[4],
                 i[5]);
        break;
    }
    default: /* URL: the allowlist entry is the identity */
        ident[0] = (uint8_t)(ai >> 8);
        ident[1] = (uint8_t)ai;
        snprintf(device, 64, "%s", a->name);
        break;
    }
}

int ble_beacons_match(struct ble_beacons *bs, const struct ble_frame *f)
{
    size_t ai = 0;
    uint8_t ident[22];
    char device[64];

    while (ai < bs->nallow && !takes(&bs->allow[ai], f))
        ai++;
    if (ai == bs->nallow)
        return -1;
    identity(&bs->allow[ai], ai, f, ident, device);
    for (size_t i = 0; i < bs->n; i++) {
        const struct ble_beacon *b = &bs->b[i];
        if (b->kind == f->kind && memcmp(b->ident, ident, sizeof(ident)) == 0 &&
            strcmp(b->device, device) == 0)
            return (int)i;
    }
    if (bs->n >= bs->cap)
        return -ENOSPC;
    struct ble_beacon *b = &bs->b[bs->n];
    memset(b, 0, sizeof(*b));
    b->kind = f->kind;
    memcpy(b->ident, ident, sizeof(ident));
    memcpy(b->device, device, sizeof(device));
    return (int)bs->n++;
}

void ble_beacons_record(struct ble_beacons *bs, int i, const struct ble_frame *f, bool has_rssi,
                        int rssi)
{
    struct ble_beacon *b;

    if (i < 0 || (size_t)i >= bs->n)
        return;
    b = &bs->b[i];
    b->adverts++;
    if (has_rssi) {
        b->rssi_sum += rssi;
        b->rssi_n++;
    }
    switch (f->kind) {
    case BLE_FRAME_IBEACON:
        b->has_power = true;
        b->power = f->u.ibeacon.power;
        break;
    case BLE_FRAME_EDDYSTONE_UID:
        b->has_power = true;
        b->power = f->u.uid.tx_power;
        break;
    case BLE_FRAME_EDDYSTONE_URL:
        b->has_power = true;
        b->power = f->u.url.tx_power;
        break;
    case BLE_FRAME_EDDYSTONE_TLM:
        b->has_tlm = true;
        b->tlm = f->u.tlm;
        break;
    default:
        break;
    }
}

void ble_beacons_window(struct ble_beacons *bs, void (*cb)(void *arg, const struct ble_beacon *b),
                        void *arg)
{
    for (size_t i = 0; i < bs->n; i++) {
        struct ble_beacon *b = &bs->b[i];
        cb(arg, b);
        b->adverts = 0;
        b->rssi_sum = 0;
        b->rssi_n = 0;
        b->has_power = false;
        b->has_tlm = false;
        memset(&b->tlm, 0, sizeof(b->tlm));
    }
}
