/*
 * series: the in-memory registry of series (site, device, metric, unit,
 * kind, counter width, tags, origin) -> small dense ids starting at 1. A
 * rule's derived readings are series of their own: same names, the rule as
 * origin.
 *
 * Owns the series strings. Interning takes an internal mutex and is safe
 * from any thread; lookups by id are lock-free (entries never move or change
 * once published). The writer persists entries [persisted, count) in the
 * same transaction as the first reading that uses them.
 *
 * Also who feeds each cumulative series (issue 8 §5): one counter of one
 * input instance at a time, so the normalizer never takes the values of two
 * counters for the steps of one. Under the same mutex; any thread.
 */
#ifndef MT_SERIES_H
#define MT_SERIES_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "util.h"

#define MT_SERIES_CHUNK 1024u
#define MT_SERIES_MAX_CHUNKS 4096u /* 4 M series */

struct mt_series_info {
    uint32_t id;
    int kind;      /* enum mittari_kind as emitted */
    unsigned bits; /* counter width for CUMULATIVE, else 0 */
    const char *site, *device, *metric, *unit;
    const char *tags; /* canonical JSON object text, "" = none */
    const char *origin; /* the rule that derived the series' readings; "" or NULL = raw */
    uint64_t hash;
};

struct mt_series_feed;

struct mt_series_reg {
    pthread_mutex_t lock;
    struct mt_series_info *chunks[MT_SERIES_MAX_CHUNKS];
    struct mt_series_feed *feeds[MT_SERIES_MAX_CHUNKS]; /* made on first use */
    _Atomic uint32_t count; /* ids 1..count are valid */
    uint32_t *table;        /* open addressing: id or 0 */
    size_t mask;
    struct mt_arena strings;
};

int mt_series_init(struct mt_series_reg *r);
void mt_series_free(struct mt_series_reg *r);

/* Finds or adds a series. *id receives its id. 0, -ENOMEM or -ENOSPC. */
int mt_series_intern(struct mt_series_reg *r, const struct mt_series_info *key, uint32_t *id);
/* For loading from the database: id must be count + 1. */
int mt_series_add_loaded(struct mt_series_reg *r, const struct mt_series_info *s);
/* NULL when id is not (yet) published. */
const struct mt_series_info *mt_series_get(const struct mt_series_reg *r, uint32_t id);
uint32_t mt_series_count(const struct mt_series_reg *r);

/* A cumulative reading of series id from owner (an input instance, named
 * owner_name, valid while it owns anything) with raw counter value raw at
 * ts; source says which counter of the device it is (NULL: not said).
 * -EEXIST, with why filled, when it would mix two counters in the series:
 * another instance feeds it, another source of this one does, or it had
 * another value at the very same ts (a counter has one value at a time).
 * Otherwise 0, and the series is this owner's. */
int mt_series_feed(struct mt_series_reg *r, uint32_t id, const void *owner,
                   const char *owner_name, const char *source, int64_t ts, uint64_t raw,
                   char *why, size_t len);
/* The owner is gone: the series it fed are free for another. */
void mt_series_release(struct mt_series_reg *r, const void *owner);

#endif
