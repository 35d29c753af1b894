/*
 * presence: windows, visits and the address table (presence.h).
 */
#include "presence.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "adv.h"

#define SWEEP_US 1000000LL     /* end visits and forget addresses about once a second */
#define KEEP_MIN_US 60000000LL /* an idle address is remembered this long at least */
#define MAX_CATCHUP 1000       /* windows closed one by one after a jump of time */
#define DWELL_MAX 65536        /* dwell times kept per window for the median */

struct ble_presence {
    struct ble_presence_conf c;
    struct ble_presence_ops ops;
    unsigned char key[crypto_shorthash_KEYBYTES];
    struct ble_dev *slots;
    size_t mask, used;
    bool started;
    int64_t now, win, next_sweep, keep_us;
    /* the open window's visits that ended */
    uint32_t visits;
    int64_t dwell_sum, dwell_max;
    int64_t *dwell;
    size_t ndwell;
    uint64_t skipped;
};

static int64_t floordiv(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static size_t home(const struct ble_presence *p, const uint8_t addr[6])
{
    uint64_t h;
    crypto_shorthash((unsigned char *)&h, addr, 6, p->key);
    return (size_t)h & p->mask;
}

int ble_presence_create(struct ble_presence **out, const struct ble_presence_conf *c,
                        const struct ble_presence_ops *ops)
{
    struct ble_presence *p;
    size_t n = 16;

    *out = NULL;
    if (!c->capacity || c->capacity > (1u << 24) || c->window_us <= 0 || c->gap_us < 0)
        return -EINVAL;
    if (sodium_init() < 0)
        return -EIO;
    while (n < 2 * c->capacity)
        n *= 2;
    p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->slots = calloc(n, sizeof(*p->slots));
    p->dwell = calloc(DWELL_MAX, sizeof(*p->dwell));
    if (!p->slots || !p->dwell) {
        free(p->slots);
        free(p->dwell);
        free(p);
        return -ENOMEM;
    }
    p->c = *c;
    p->ops = *ops;
    p->mask = n - 1;
    p->keep_us = c->gap_us > KEEP_MIN_US ? c->gap_us : KEEP_MIN_US;
    crypto_shorthash_keygen(p->key);
    *out = p;
    return 0;
}

void ble_presence_destroy(struct ble_presence *p)
{
    if (!p)
        return;
    sodium_memzero(p->slots, (p->mask + 1) * sizeof(*p->slots));
    free(p->slots);
    free(p->dwell);
    sodium_memzero(p, sizeof(*p));
    free(p);
}

static void end_visit(struct ble_presence *p, struct ble_dev *d, bool in_window)
{
    int64_t dwell = d->last_us - d->first_us;

    d->flags &= (uint8_t)~BLE_DEV_VISIT;
    if (in_window) {
        p->visits++;
        p->dwell_sum += dwell;
        if (dwell > p->dwell_max)
            p->dwell_max = dwell;
        if (p->ndwell < DWELL_MAX)
            p->dwell[p->ndwell++] = dwell;
    }
    if (p->ops.visit)
        p->ops.visit(p->ops.arg, d, d->first_us, d->last_us);
}

/* Backward-shift deletion: the entries after i that probed past it move up,
 * so lookups never meet a hole before their entry. */
static void delete_at(struct ble_presence *p, size_t i)
{
    size_t j = i;
    for (;;) {
        j = (j + 1) & p->mask;
        if (!(p->slots[j].flags & BLE_DEV_USED))
            break;
        size_t k = home(p, p->slots[j].addr);
        bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (stays)
            continue;
        p->slots[i] = p->slots[j];
        i = j;
    }
    sodium_memzero(&p->slots[i], sizeof(p->slots[i]));
    p->used--;
}

/* Ends the visits whose gap passed before t; with forget, also drops the
 * addresses idle for keep_us that hold nothing of the open window. */
static void sweep(struct ble_presence *p, int64_t t, bool forget)
{
    for (size_t i = 0; i <= p->mask; i++) {
        struct ble_dev *d = &p->slots[i];
        if (!(d->flags & BLE_DEV_USED))
            continue;
        if ((d->flags & BLE_DEV_VISIT) && t - d->last_us > p->c.gap_us)
            end_visit(p, d, true);
        if (forget && !(d->flags & (BLE_DEV_VISIT | BLE_DEV_PENDING)) && d->counted != p->win &&
            t - d->touched_us > p->keep_us) {
            delete_at(p, i);
            i--; /* an entry may have moved into i; size_t wraps and comes back to i */
        }
    }
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void reset_window(struct ble_presence *p)
{
    p->visits = 0;
    p->dwell_sum = p->dwell_max = 0;
    p->ndwell = 0;
}

static void close_window(struct ble_presence *p)
{
    struct ble_window w = {.start_us = p->win * p->c.window_us};

    w.end_us = w.start_us + p->c.window_us;
    /* a visit whose gap passes at or after the end belongs to a later window */
    for (size_t i = 0; i <= p->mask; i++) {
        struct ble_dev *d = &p->slots[i];
        if (!(d->flags & BLE_DEV_USED))
            continue;
        if ((d->flags & BLE_DEV_VISIT) && d->last_us + p->c.gap_us < w.end_us)
            end_visit(p, d, true);
        if (d->counted == p->win) {
            w.devices++;
            w.stable += ble_addr_stable(d->kind);
        }
    }
    w.visits = p->visits;
    if (p->visits) {
        w.dwell_mean_s = (double)p->dwell_sum / p->visits / 1e6;
        w.dwell_max_s = p->dwell_max / 1e6;
        qsort(p->dwell, p->ndwell, sizeof(*p->dwell), cmp64);
        size_t m = p->ndwell / 2;
        w.dwell_median_s = (p->ndwell % 2 ? (double)p->dwell[m]
                                          : ((double)p->dwell[m - 1] + (double)p->dwell[m]) / 2) /
                           1e6;
    }
    if (p->ops.window)
        p->ops.window(p->ops.arg, &w);
    reset_window(p);
    p->win++;
}

int64_t ble_presence_advance(struct ble_presence *p, int64_t now)
{
    if (!p->started) {
        p->started = true;
        p->now = now;
        p->win = floordiv(now, p->c.window_us);
        p->next_sweep = now + SWEEP_US;
        return now;
    }
    if (now < p->now)
        now = p->now;
    p->now = now;
    int64_t target = floordiv(now, p->c.window_us);
    if (target - p->win > MAX_CATCHUP) {
        /* time jumped: close the open window, pass over the rest, and end
         * the visits that ended meanwhile without giving them a window */
        close_window(p);
        p->skipped += (uint64_t)(target - p->win);
        p->win = target;
        sweep(p, target * p->c.window_us, false);
        reset_window(p);
    }
    while (p->win < target)
        close_window(p);
    if (now >= p->next_sweep) {
        sweep(p, now, true);
        p->next_sweep = now + SWEEP_US;
    }
    return now;
}

struct ble_dev *ble_presence_lookup(struct ble_presence *p, const uint8_t addr[6])
{
    for (size_t i = home(p, addr);; i = (i + 1) & p->mask) {
        struct ble_dev *d = &p->slots[i];
        if (!(d->flags & BLE_DEV_USED))
            return NULL;
        if (memcmp(d->addr, addr, 6) == 0)
            return d;
    }
}

struct ble_dev *ble_presence_get(struct ble_presence *p, const uint8_t addr[6], int64_t now)
{
    size_t i = home(p, addr);

    for (;; i = (i + 1) & p->mask) {
        struct ble_dev *d = &p->slots[i];
        if (!(d->flags & BLE_DEV_USED))
            break;
        if (memcmp(d->addr, addr, 6) == 0) {
            d->touched_us = now;
            return d;
        }
    }
    if (p->used >= p->c.capacity)
        return NULL;
    struct ble_dev *d = &p->slots[i];
    *d = (struct ble_dev){.flags = BLE_DEV_USED, .beacon = -1, .counted = -1, .touched_us = now};
    memcpy(d->addr, addr, 6);
    p->used++;
    return d;
}

bool ble_presence_sighting(struct ble_presence *p, struct ble_dev *d, int rssi, int64_t now)
{
    d->touched_us = now;
    if ((d->flags & BLE_DEV_BEACON) || rssi < p->c.rssi_threshold)
        return false;
    if ((d->flags & BLE_DEV_VISIT) && now - d->last_us > p->c.gap_us)
        end_visit(p, d, true);
    if (d->flags & BLE_DEV_VISIT) {
        if (now > d->last_us)
            d->last_us = now;
    } else {
        d->flags |= BLE_DEV_VISIT;
        d->first_us = d->last_us = now;
    }
    d->counted = p->win;
    return true;
}

void ble_presence_exclude(struct ble_presence *p, struct ble_dev *d)
{
    (void)p;
    d->flags = (uint8_t)((d->flags | BLE_DEV_BEACON) & ~BLE_DEV_VISIT);
    d->counted = -1;
}

void ble_presence_flush(struct ble_presence *p)
{
    for (size_t i = 0; i <= p->mask; i++) {
        struct ble_dev *d = &p->slots[i];
        if ((d->flags & BLE_DEV_USED) && (d->flags & BLE_DEV_VISIT))
            end_visit(p, d, false);
    }
}

size_t ble_presence_size(const struct ble_presence *p)
{
    return p->used;
}

uint64_t ble_presence_skipped(const struct ble_presence *p)
{
    return p->skipped;
}
