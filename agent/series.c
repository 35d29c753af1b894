#include "series.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mt_series_feed {
    const void *owner; /* NULL: nobody feeds it now */
    const char *owner_name;
    uint64_t source; /* hash of the source text, 0: none said */
    char source_text[48];
    int64_t last_ts;
    uint64_t last_raw;
    bool have;
};

static uint64_t hash_key(const struct mt_series_info *s)
{
    uint64_t h = MT_HASH_INIT;
    const char *f[] = {s->site, s->device, s->metric, s->unit ? s->unit : "", s->tags ? s->tags : "",
                       s->origin ? s->origin : ""};
    for (size_t i = 0; i < MT_ARRAY_SIZE(f); i++)
        h = mt_hash_bytes(h, f[i], strlen(f[i]) + 1);
    h = mt_hash_bytes(h, &s->kind, sizeof(s->kind));
    h = mt_hash_bytes(h, &s->bits, sizeof(s->bits));
    return h ? h : 1;
}

static bool same(const struct mt_series_info *a, const struct mt_series_info *b)
{
    return a->hash == b->hash && a->kind == b->kind && a->bits == b->bits &&
           !strcmp(a->metric, b->metric) && !strcmp(a->device, b->device) &&
           !strcmp(a->site, b->site) && !strcmp(a->unit ? a->unit : "", b->unit ? b->unit : "") &&
           !strcmp(a->tags ? a->tags : "", b->tags ? b->tags : "") &&
           !strcmp(a->origin ? a->origin : "", b->origin ? b->origin : "");
}

int mt_series_init(struct mt_series_reg *r)
{
    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->lock, NULL);
    r->mask = 255;
    r->table = calloc(r->mask + 1, sizeof(*r->table));
    return r->table ? 0 : -ENOMEM;
}

void mt_series_free(struct mt_series_reg *r)
{
    for (size_t i = 0; i < MT_SERIES_MAX_CHUNKS && r->chunks[i]; i++) {
        free(r->chunks[i]);
        free(r->feeds[i]);
    }
    free(r->table);
    mt_arena_free(&r->strings);
    pthread_mutex_destroy(&r->lock);
}

static struct mt_series_info *slot(const struct mt_series_reg *r, uint32_t id)
{
    uint32_t i = id - 1;
    return &r->chunks[i / MT_SERIES_CHUNK][i % MT_SERIES_CHUNK];
}

const struct mt_series_info *mt_series_get(const struct mt_series_reg *r, uint32_t id)
{
    uint32_t n = atomic_load_explicit(&((struct mt_series_reg *)r)->count, memory_order_acquire);
    if (id == 0 || id > n)
        return NULL;
    return slot(r, id);
}

uint32_t mt_series_count(const struct mt_series_reg *r)
{
    return atomic_load_explicit(&((struct mt_series_reg *)r)->count, memory_order_acquire);
}

static int grow_table(struct mt_series_reg *r)
{
    size_t mask = r->mask * 2 + 1;
    uint32_t *t = calloc(mask + 1, sizeof(*t));
    uint32_t n = atomic_load_explicit(&r->count, memory_order_relaxed);

    if (!t)
        return -ENOMEM;
    for (uint32_t id = 1; id <= n; id++) {
        size_t i = slot(r, id)->hash & mask;
        while (t[i])
            i = (i + 1) & mask;
        t[i] = id;
    }
    free(r->table);
    r->table = t;
    r->mask = mask;
    return 0;
}

/* lock held */
static int add(struct mt_series_reg *r, const struct mt_series_info *key, size_t tslot,
               uint32_t *id)
{
    uint32_t n = atomic_load_explicit(&r->count, memory_order_relaxed);
    uint32_t c = n / MT_SERIES_CHUNK;

    if (c >= MT_SERIES_MAX_CHUNKS)
        return -ENOSPC;
    if (!r->chunks[c]) {
        r->chunks[c] = calloc(MT_SERIES_CHUNK, sizeof(struct mt_series_info));
        if (!r->chunks[c])
            return -ENOMEM;
    }
    struct mt_series_info *s = slot(r, n + 1);
    *s = *key;
    s->id = n + 1;
    s->site = mt_arena_strdup(&r->strings, key->site);
    s->device = mt_arena_strdup(&r->strings, key->device);
    s->metric = mt_arena_strdup(&r->strings, key->metric);
    s->unit = mt_arena_strdup(&r->strings, key->unit ? key->unit : "");
    s->tags = mt_arena_strdup(&r->strings, key->tags ? key->tags : "");
    s->origin = mt_arena_strdup(&r->strings, key->origin ? key->origin : "");
    if (!s->site || !s->device || !s->metric || !s->unit || !s->tags || !s->origin)
        return -ENOMEM;
    r->table[tslot] = s->id;
    atomic_store_explicit(&r->count, n + 1, memory_order_release);
    *id = s->id;
    if ((size_t)(n + 1) * 2 > r->mask)
        grow_table(r); /* on failure the table stays valid, just fuller */
    return 0;
}

int mt_series_intern(struct mt_series_reg *r, const struct mt_series_info *key, uint32_t *id)
{
    struct mt_series_info k = *key;
    int rc;

    k.hash = hash_key(key);
    pthread_mutex_lock(&r->lock);
    size_t i = k.hash & r->mask;
    while (r->table[i]) {
        const struct mt_series_info *s = slot(r, r->table[i]);
        if (same(s, &k)) {
            *id = s->id;
            pthread_mutex_unlock(&r->lock);
            return 0;
        }
        i = (i + 1) & r->mask;
    }
    rc = add(r, &k, i, id);
    pthread_mutex_unlock(&r->lock);
    return rc;
}

int mt_series_add_loaded(struct mt_series_reg *r, const struct mt_series_info *s)
{
    uint32_t id;
    int rc;

    if (s->id != mt_series_count(r) + 1)
        return -EINVAL;
    struct mt_series_info k = *s;
    k.hash = hash_key(s);
    pthread_mutex_lock(&r->lock);
    size_t i = k.hash & r->mask;
    while (r->table[i])
        i = (i + 1) & r->mask;
    rc = add(r, &k, i, &id);
    pthread_mutex_unlock(&r->lock);
    return rc;
}

/* lock held */
static struct mt_series_feed *feed_of(struct mt_series_reg *r, uint32_t id)
{
    uint32_t i = id - 1, c = i / MT_SERIES_CHUNK;
    if (!r->feeds[c]) {
        r->feeds[c] = calloc(MT_SERIES_CHUNK, sizeof(struct mt_series_feed));
        if (!r->feeds[c])
            return NULL;
    }
    return &r->feeds[c][i % MT_SERIES_CHUNK];
}

int mt_series_feed(struct mt_series_reg *r, uint32_t id, const void *owner,
                   const char *owner_name, const char *source, int64_t ts, uint64_t raw,
                   char *why, size_t len)
{
    const struct mt_series_info *s = mt_series_get(r, id);
    uint64_t src = source && *source ? mt_hash_bytes(MT_HASH_INIT, source, strlen(source)) | 1 : 0;
    int rc = 0;

    if (!s)
        return -EINVAL;
    pthread_mutex_lock(&r->lock);
    struct mt_series_feed *f = feed_of(r, id);
    if (!f) {
        pthread_mutex_unlock(&r->lock);
        return 0; /* out of memory: unchecked, as before */
    }
    if (f->owner && f->owner != owner) {
        snprintf(why, len, "series %s/%s/%s is fed by input %s already", s->site, s->device,
                 s->metric, f->owner_name);
        rc = -EEXIST;
    } else if (f->owner && src && f->source && src != f->source) {
        snprintf(why, len, "series %s/%s/%s is fed by two counters, %s and %s", s->site, s->device,
                 s->metric, f->source_text, source);
        rc = -EEXIST;
    } else if (f->owner && f->have && ts == f->last_ts && raw != f->last_raw) {
        snprintf(why, len,
                 "series %s/%s/%s got two counter values (%" PRIu64 " and %" PRIu64
                 ") for one time: two counters feed it",
                 s->site, s->device, s->metric, f->last_raw, raw);
        rc = -EEXIST;
    }
    if (!rc) {
        if (f->owner != owner) {
            f->owner = owner;
            f->owner_name = owner_name;
            f->source = 0;
        }
        if (src && !f->source) {
            f->source = src;
            snprintf(f->source_text, sizeof(f->source_text), "%s", source);
        }
        f->last_ts = ts;
        f->last_raw = raw;
        f->have = true;
    }
    pthread_mutex_unlock(&r->lock);
    return rc;
}

void mt_series_release(struct mt_series_reg *r, const void *owner)
{
    pthread_mutex_lock(&r->lock);
    for (size_t c = 0; c < MT_SERIES_MAX_CHUNKS && r->chunks[c]; c++)
        for (size_t i = 0; r->feeds[c] && i < MT_SERIES_CHUNK; i++)
            if (r->feeds[c][i].owner == owner)
                memset(&r->feeds[c][i], 0, sizeof(r->feeds[c][i]));
    pthread_mutex_unlock(&r->lock);
}
