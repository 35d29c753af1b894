/*
 * presence: anonymous presence from sightings of BLE addresses. Per window,
 * the number of distinct addresses seen at or above an RSSI threshold (and
 * how many of them do not rotate); per address, visits: first to last
 * sighting, ended by a gap longer than gap_timeout, with their dwell times.
 * Also the plugin's memory of each address: last RSSI, address kind, the
 * allowlisted beacon it belongs to.
 *
 * Owns a bounded open-addressing table keyed by the 6-byte address, hashed
 * with SipHash under a random key made at create (addresses are chosen by
 * whoever transmits). Raw addresses live only in this table, in memory;
 * they leave it only through the visit callback (the plugin passes them to
 * emit as subject_id), and destroy wipes them.
 *
 * Time is given, never read: µs UTC from the caller, so tests drive it
 * exactly. Windows are [k * window, (k + 1) * window) of UTC time. A time
 * before the last one given counts as the last one (a wall clock stepping
 * back). One thread (the agent's loop); callbacks run inside the call that
 * causes them.
 */
#ifndef BLE_PRESENCE_H
#define BLE_PRESENCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BLE_DEV_USED 0x01
#define BLE_DEV_RSSI 0x02    /* rssi holds the last RSSI BlueZ reported */
#define BLE_DEV_VISIT 0x04   /* first_us..last_us is a visit in progress */
#define BLE_DEV_BEACON 0x08  /* an allowlisted beacon: never presence */
#define BLE_DEV_PENDING 0x10 /* its properties were asked for */
#define BLE_DEV_ASKED 0x20   /* and answered: not asked again */

struct ble_dev {
    uint8_t addr[6];
    uint8_t kind;  /* enum ble_addr_kind */
    uint8_t flags; /* BLE_DEV_* */
    int16_t rssi;
    int16_t beacon;     /* the allowlisted beacon this address sends, or -1 */
    int64_t counted;    /* the window it was last counted in, or -1 */
    int64_t first_us;   /* visit */
    int64_t last_us;    /* visit: the last sighting at or above the threshold */
    int64_t touched_us; /* the last message about it */
};

struct ble_window {
    int64_t start_us, end_us;
    uint32_t devices; /* distinct addresses at or above the threshold */
    uint32_t stable;  /* of these, public or static (not rotating) */
    uint32_t visits;  /* visits that ended in the window (gap passed) */
    double dwell_mean_s, dwell_median_s, dwell_max_s; /* of those visits; 0 without */
};

struct ble_presence_ops {
    /* A visit ended (its gap passed, or flush). d->addr is the raw address. */
    void (*visit)(void *arg, const struct ble_dev *d, int64_t first_us, int64_t last_us);
    /* A window closed. */
    void (*window)(void *arg, const struct ble_window *w);
    void *arg;
};

struct ble_presence_conf {
    size_t capacity;    /* addresses remembered at most */
    int64_t window_us;  /* > 0 */
    int64_t gap_us;     /* >= 0 */
    int rssi_threshold; /* dBm; sightings below it are not presence */
};

struct ble_presence;

/* 0, -EINVAL or -ENOMEM. */
int ble_presence_create(struct ble_presence **out, const struct ble_presence_conf *c,
                        const struct ble_presence_ops *ops);
/* Wipes the table. No callbacks. */
void ble_presence_destroy(struct ble_presence *p);

/* Moves time to now: closes the windows that ended (ending the visits
 * whose gap passed inside each first), and about once a second ends the
 * visits whose gap has passed and forgets idle addresses. Returns now, or
 * the last time given if now is earlier. Call before lookup/get/sighting
 * with the same time: pointers to entries are valid until the next
 * advance or flush. */
int64_t ble_presence_advance(struct ble_presence *p, int64_t now);

struct ble_dev *ble_presence_lookup(struct ble_presence *p, const uint8_t addr[6]);
/* The entry of addr, made (kind unknown, no RSSI, no beacon) if new; NULL
 * when the table is full. */
struct ble_dev *ble_presence_get(struct ble_presence *p, const uint8_t addr[6], int64_t now);

/* A sighting of d at now with its RSSI: counts d in the window and starts
 * or extends its visit, unless rssi is below the threshold or d is a
 * beacon. A visit whose gap passed before now ends first. true if it
 * counted. */
bool ble_presence_sighting(struct ble_presence *p, struct ble_dev *d, int rssi, int64_t now);

/* d turned out to be an allowlisted beacon: it leaves the window's count
 * and its visit is dropped without a callback; it never counts again. */
void ble_presence_exclude(struct ble_presence *p, struct ble_dev *d);

/* Ends every visit in progress (the instance stops): visit callbacks with
 * the dwell so far. The open window is not closed. */
void ble_presence_flush(struct ble_presence *p);

size_t ble_presence_size(const struct ble_presence *p); /* addresses remembered */
/* Windows passed over without a callback because time jumped more than
 * 1000 windows ahead. */
uint64_t ble_presence_skipped(const struct ble_presence *p);

#endif
