#include "ruleagg.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mittari/mittari.h>

#include "hll.h"
#include "rulewin.h"

#define STATE_MAGIC 0x5352544dU /* "MTRS" */
#define STATE_FORMAT 1
#define SUBJECT_MAX 64

/* ---- memory, counted against the cap ---- */

struct mt_aggs;
static int charge(struct mt_aggs *a, size_t n);
static void uncharge(struct mt_aggs *a, size_t n);

/* A map from 64-bit keys to 32-bit values, open addressing; key + 1 is
 * stored so that 0 marks a free slot. */
struct u64map {
    uint64_t *keys;
    uint32_t *vals;
    size_t mask, n;
};

/* An exact set of subjects: hashes (never 0) and the strings (in the
 * window's arena). */
struct sset {
    uint64_t *hash;
    const char **s;
    size_t mask, n;
};

struct group {
    uint32_t id;
    uint64_t hash;
    char *key; /* the by-values, each "\1value\0" or "\0" when absent: sorts and compares */
    size_t keylen;
    char *vals[MT_AGG_MAX_BY];
    const char *site, *device; /* into vals, or NULL */
    char *tags_json;
    int64_t first_seen, last_seen;
    uint32_t series;
};

struct cell {
    struct group *g;
    uint64_t n;
    double sum, v;
    struct sset set;
    uint8_t *hll;
    bool sent, sent_supp;
    uint8_t rev;
    double sent_value;
};

struct pairinfo {
    uint32_t a, b;
    char *tags_json;
    uint32_t series;
};

struct pairsent {
    uint32_t a, b;
    bool supp;
    uint8_t rev;
    double value;
};

struct window {
    int64_t start, end;
    bool emitted, dirty;
    int64_t next_fix;
    struct cell **cells;
    size_t ncells, capcells;
    struct u64map cidx; /* group id -> cell index */
    struct pairsent *pairs;
    size_t npairs, cappairs;
    struct u64map pidx; /* (a, b) -> pair index */
    struct mt_arena strings;
};

struct def {
    struct mt_aggdef_conf c;
    struct mt_arena arena; /* c's strings */
    char sig[400];
    struct group **groups;
    size_t ngroups, capgroups;
    struct u64map gidx; /* key hash -> group index (collisions probe on) */
    uint32_t next_gid;
    int64_t cursor; /* every period ending at or before it was closed; INT64_MIN = none yet */
    int64_t forgot_at; /* the cursor when groups were last forgotten */
    struct window **wins; /* sorted by start */
    size_t nwins, capwins;
    struct window *last; /* the window of the last add */
    struct group *last_g; /* the group of the last add */
    struct pairinfo *pinfo;
    size_t npinfo, cappinfo;
    struct u64map pimap;
};

struct mt_aggs {
    const struct mt_tz *tz;
    size_t cap, mem;
    mt_figure_cb cb;
    void *arg;
    int64_t now;
    /* nothing can fall due before due_at unless something changed since it
     * was computed (stale): an advance before then does nothing */
    int64_t due_at;
    bool stale;
    struct def *defs[MT_AGG_MAX_DEFS];
    size_t ndefs;
    struct mt_aggs_stats st;
};

static int charge(struct mt_aggs *a, size_t n)
{
    if (n > a->cap - a->mem)
        return -ENOMEM;
    a->mem += n;
    return 0;
}

static void uncharge(struct mt_aggs *a, size_t n)
{
    a->mem = n > a->mem ? 0 : a->mem - n;
}

static void *xcalloc(struct mt_aggs *a, size_t n, size_t size)
{
    if (charge(a, n * size))
        return NULL;
    void *p = calloc(n ? n : 1, size);
    if (!p)
        uncharge(a, n * size);
    return p;
}

static void xfree(struct mt_aggs *a, void *p, size_t bytes)
{
    if (p)
        uncharge(a, bytes);
    free(p);
}

/* Grows *v (elements of size) to hold need. */
static int xgrow(struct mt_aggs *a, void **v, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap * 2 : 8;
    while (n < need)
        n *= 2;
    if (charge(a, (n - *cap) * size))
        return -ENOMEM;
    void *p = realloc(*v, n * size);
    if (!p) {
        uncharge(a, (n - *cap) * size);
        return -ENOMEM;
    }
    *v = p;
    *cap = n;
    return 0;
}

static char *xstrdup(struct mt_aggs *a, const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = xcalloc(a, n, 1);
    if (p)
        memcpy(p, s, n);
    return p;
}

static void xstrfree(struct mt_aggs *a, char *s)
{
    if (s)
        xfree(a, s, strlen(s) + 1);
}

/* ---- u64map ---- */

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 31;
    x *= 0x7fb5d329728ea185ULL;
    x ^= x >> 27;
    x *= 0x81dadef4bc2dd44dULL;
    return x ^ (x >> 33);
}

static size_t map_bytes(size_t slots)
{
    return slots * (sizeof(uint64_t) + sizeof(uint32_t));
}

static void map_free(struct mt_aggs *a, struct u64map *m)
{
    if (m->keys)
        uncharge(a, map_bytes(m->mask + 1));
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof(*m));
}

/* The slot of key, or of the free slot where it would go. */
static size_t map_slot(const struct u64map *m, uint64_t key)
{
    size_t i = (size_t)mix64(key) & m->mask;
    while (m->keys[i] && m->keys[i] != key + 1)
        i = (i + 1) & m->mask;
    return i;
}

static bool map_get(const struct u64map *m, uint64_t key, uint32_t *val)
{
    if (!m->keys)
        return false;
    size_t i = map_slot(m, key);
    if (!m->keys[i])
        return false;
    *val = m->vals[i];
    return true;
}

static int map_resize(struct mt_aggs *a, struct u64map *m, size_t slots)
{
    struct u64map n = {0};
    if (charge(a, map_bytes(slots)))
        return -ENOMEM;
    n.keys = calloc(slots, sizeof(*n.keys));
    n.vals = calloc(slots, sizeof(*n.vals));
    if (!n.keys || !n.vals) {
        free(n.keys);
        free(n.vals);
        uncharge(a, map_bytes(slots));
        return -ENOMEM;
    }
    n.mask = slots - 1;
    for (size_t i = 0; m->keys && i <= m->mask; i++) {
        if (!m->keys[i])
            continue;
        size_t j = map_slot(&n, m->keys[i] - 1);
        n.keys[j] = m->keys[i];
        n.vals[j] = m->vals[i];
    }
    n.n = m->n;
    map_free(a, m);
    *m = n;
    return 0;
}

/* Sets key -> val (a key already there is replaced). */
static int map_put(struct mt_aggs *a, struct u64map *m, uint64_t key, uint32_t val)
{
    if (!m->keys || (m->n + 1) * 2 > m->mask + 1) {
        int rc = map_resize(a, m, m->keys ? (m->mask + 1) * 2 : 16);
        if (rc)
            return rc;
    }
    size_t i = map_slot(m, key);
    if (!m->keys[i])
        m->n++;
    m->keys[i] = key + 1;
    m->vals[i] = val;
    return 0;
}

/* ---- subject sets ---- */

static size_t set_bytes(size_t slots)
{
    return slots * (sizeof(uint64_t) + sizeof(char *));
}

static void set_free(struct mt_aggs *a, struct sset *s)
{
    if (s->hash)
        uncharge(a, set_bytes(s->mask + 1));
    free(s->hash);
    free(s->s);
    memset(s, 0, sizeof(*s));
}

static size_t set_slot(const struct sset *s, uint64_t h, const char *str, size_t len)
{
    size_t i = (size_t)h & s->mask;
    while (s->hash[i] && !(s->hash[i] == h && strlen(s->s[i]) == len && !memcmp(s->s[i], str, len)))
        i = (i + 1) & s->mask;
    return i;
}

static bool set_has(const struct sset *s, uint64_t h, const char *str, size_t len)
{
    return s->hash && s->hash[set_slot(s, h, str, len)];
}

static int set_resize(struct mt_aggs *a, struct sset *s, size_t slots)
{
    struct sset n = {0};
    if (charge(a, set_bytes(slots)))
        return -ENOMEM;
    n.hash = calloc(slots, sizeof(*n.hash));
    n.s = calloc(slots, sizeof(*n.s));
    if (!n.hash || !n.s) {
        free(n.hash);
        free(n.s);
        uncharge(a, set_bytes(slots));
        return -ENOMEM;
    }
    n.mask = slots - 1;
    for (size_t i = 0; s->hash && i <= s->mask; i++) {
        if (!s->hash[i])
            continue;
        size_t j = (size_t)s->hash[i] & n.mask;
        while (n.hash[j])
            j = (j + 1) & n.mask;
        n.hash[j] = s->hash[i];
        n.s[j] = s->s[i];
    }
    n.n = s->n;
    set_free(a, s);
    *s = n;
    return 0;
}

static uint64_t subject_hash(const char *s, size_t len)
{
    uint64_t h = mt_hash64(s, len);
    return h ? h : 1;
}

/* 1 when added, 0 when there already, -ENOMEM. */
static int set_add(struct mt_aggs *a, struct sset *s, struct mt_arena *strings, const char *str,
                   size_t len)
{
    uint64_t h = subject_hash(str, len);
    if (s->hash && s->hash[set_slot(s, h, str, len)])
        return 0;
    if (!s->hash || (s->n + 1) * 2 > s->mask + 1) {
        int rc = set_resize(a, s, s->hash ? (s->mask + 1) * 2 : 8);
        if (rc)
            return rc;
    }
    if (charge(a, len + 17))
        return -ENOMEM;
    char *copy = mt_arena_strndup(strings, str, len);
    if (!copy) {
        uncharge(a, len + 17);
        return -ENOMEM;
    }
    size_t i = set_slot(s, h, str, len);
    s->hash[i] = h;
    s->s[i] = copy;
    s->n++;
    return 1;
}

static size_t set_common(const struct sset *x, const struct sset *y)
{
    if (x->n > y->n) {
        const struct sset *t = x;
        x = y;
        y = t;
    }
    size_t k = 0;
    for (size_t i = 0; x->hash && i <= x->mask; i++)
        if (x->hash[i] && set_has(y, x->hash[i], x->s[i], strlen(x->s[i])))
            k++;
    return k;
}

/* ---- names ---- */

static const char *const agg_names[] = {"",    "sum", "count", "mean",
                                        "min", "max", "distinct", "approx_distinct"};

const char *mt_agg_name(int agg)
{
    return agg >= MT_AGG_SUM && agg <= MT_AGG_APPROX ? agg_names[agg] : "";
}

int mt_agg_parse(const char *s)
{
    for (int i = MT_AGG_SUM; i <= MT_AGG_APPROX; i++)
        if (strcmp(s, agg_names[i]) == 0)
            return i;
    return 0;
}

static bool ident(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '.' || *s == ':' || *s == '-'))
            return false;
    return true;
}

/* A tag value: 1..128 bytes without control bytes. */
static bool tag_text(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return false;
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    return true;
}

static bool is_dim(const char *k)
{
    return strcmp(k, "site") == 0 || strcmp(k, "device") == 0;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (!errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- life ---- */

int mt_aggs_new(struct mt_aggs **out, const struct mt_tz *tz, size_t mem_cap, mt_figure_cb cb,
                void *arg)
{
    struct mt_aggs *a = calloc(1, sizeof(*a));
    *out = a;
    if (!a)
        return -ENOMEM;
    a->tz = tz;
    a->cap = mem_cap;
    a->cb = cb;
    a->arg = arg;
    a->now = INT64_MIN;
    a->stale = true;
    return 0;
}

static void cell_free(struct mt_aggs *a, const struct def *d, struct cell *c)
{
    set_free(a, &c->set);
    if (c->hll)
        xfree(a, c->hll, mt_hll_bytes(d->c.precision));
    xfree(a, c, sizeof(*c));
}

static void window_free(struct mt_aggs *a, struct def *d, struct window *w)
{
    for (size_t i = 0; i < w->ncells; i++)
        cell_free(a, d, w->cells[i]);
    xfree(a, w->cells, w->capcells * sizeof(*w->cells));
    xfree(a, w->pairs, w->cappairs * sizeof(*w->pairs));
    map_free(a, &w->cidx);
    map_free(a, &w->pidx);
    mt_arena_free(&w->strings);
    xfree(a, w, sizeof(*w));
    if (d->last == w)
        d->last = NULL;
}

static void group_free(struct mt_aggs *a, struct group *g)
{
    for (int i = 0; i < MT_AGG_MAX_BY; i++)
        xstrfree(a, g->vals[i]);
    xfree(a, g->key, g->keylen + 1);
    xstrfree(a, g->tags_json);
    xfree(a, g, sizeof(*g));
}

static void def_free(struct mt_aggs *a, struct def *d)
{
    for (size_t i = 0; i < d->nwins; i++)
        window_free(a, d, d->wins[i]);
    xfree(a, d->wins, d->capwins * sizeof(*d->wins));
    for (size_t i = 0; i < d->ngroups; i++)
        group_free(a, d->groups[i]);
    xfree(a, d->groups, d->capgroups * sizeof(*d->groups));
    map_free(a, &d->gidx);
    for (size_t i = 0; i < d->npinfo; i++)
        xstrfree(a, d->pinfo[i].tags_json);
    xfree(a, d->pinfo, d->cappinfo * sizeof(*d->pinfo));
    map_free(a, &d->pimap);
    mt_arena_free(&d->arena);
    free(d);
}

void mt_aggs_free(struct mt_aggs *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->ndefs; i++)
        def_free(a, a->defs[i]);
    free(a);
}

size_t mt_aggs_ndefs(const struct mt_aggs *a)
{
    return a->ndefs;
}

const struct mt_aggdef_conf *mt_aggs_def(const struct mt_aggs *a, int id)
{
    return id >= 0 && (size_t)id < a->ndefs ? &a->defs[id]->c : NULL;
}

int64_t mt_aggs_now(const struct mt_aggs *a)
{
    return a->now;
}

int64_t mt_aggs_next_due(const struct mt_aggs *a)
{
    int64_t due = INT64_MAX;
    for (size_t k = 0; k < a->ndefs; k++) {
        const struct def *d = a->defs[k];
        for (size_t i = 0; i < d->nwins; i++) {
            const struct window *w = d->wins[i];
            if (!w->emitted && w->end < due)
                due = w->end;
            if (w->emitted && w->dirty && w->next_fix < due)
                due = w->next_fix;
        }
        /* the next quiet period, if some group is still owed figures */
        if (d->cursor != INT64_MIN && d->ngroups) {
            int64_t s, e;
            bool alive = false;
            for (size_t i = 0; i < d->ngroups && !alive; i++)
                alive = d->groups[i]->last_seen >= d->cursor - d->c.forget_us;
            if (alive && mt_win_of(a->tz, d->c.every, d->cursor, &s, &e) == 0 && e < due)
                due = e;
        }
    }
    return due;
}

size_t mt_aggs_mem(const struct mt_aggs *a)
{
    return a->mem;
}

const struct mt_aggs_stats *mt_aggs_stats(const struct mt_aggs *a)
{
    return &a->st;
}

/* ---- declaring ---- */

static int check_def(const struct mt_aggs *a, const struct mt_aggdef_conf *c, char *err,
                     size_t errlen)
{
    if (!c->metric || !ident(c->metric, 63))
        return set_err(err, errlen, "metric must be 1 to 63 of A-Z a-z 0-9 _ . : -"), -EINVAL;
    if (c->unit && strlen(c->unit) > 31)
        return set_err(err, errlen, "unit is longer than 31 bytes"), -EINVAL;
    if (c->every < MT_UNIT_MINUTE || c->every > MT_UNIT_YEAR)
        return set_err(err, errlen, "bad every"), -EINVAL;
    if (c->agg < MT_AGG_SUM || c->agg > MT_AGG_APPROX)
        return set_err(err, errlen, "bad agg"), -EINVAL;
    if (c->suppress == 1 || c->suppress > 255)
        return set_err(err, errlen, "suppress must be 2 to 255 (or false)"), -EINVAL;
    if (c->lateness_us < 0 || c->forget_us < 0)
        return set_err(err, errlen, "durations must not be negative"), -EINVAL;
    if (c->agg == MT_AGG_APPROX && (c->precision < MT_HLL_PMIN || c->precision > MT_HLL_PMAX))
        return set_err(err, errlen, "precision must be %d to %d", MT_HLL_PMIN, MT_HLL_PMAX),
               -EINVAL;
    if (c->nby > MT_AGG_MAX_BY || c->ntags > MT_AGG_MAX_TAGS)
        return set_err(err, errlen, "at most %d by and %d tags", MT_AGG_MAX_BY, MT_AGG_MAX_TAGS),
               -EINVAL;
    size_t ntag_keys = 1 + c->ntags + (c->flows_metric ? 1 : 0); /* period, ... */
    for (size_t i = 0; i < c->nby; i++) {
        if (!ident(c->by[i], 32))
            return set_err(err, errlen, "by: '%s' is not a field or tag name", c->by[i]), -EINVAL;
        if (strcmp(c->by[i], "metric") == 0 || strcmp(c->by[i], "period") == 0)
            return set_err(err, errlen, "by: '%s' cannot group: the window sets it", c->by[i]),
                   -EINVAL;
        for (size_t j = 0; j < i; j++)
            if (strcmp(c->by[i], c->by[j]) == 0)
                return set_err(err, errlen, "by names '%s' twice", c->by[i]), -EINVAL;
        for (size_t j = 0; j < c->ntags; j++)
            if (strcmp(c->by[i], c->tag_keys[j]) == 0)
                return set_err(err, errlen, "'%s' is in both by and tags", c->by[i]), -EINVAL;
        ntag_keys += !is_dim(c->by[i]);
    }
    for (size_t j = 0; j < c->ntags; j++) {
        if (!ident(c->tag_keys[j], 32) || !tag_text(c->tag_values[j], 128))
            return set_err(err, errlen, "tags: '%s' is not a tag (key: 1 to 32 name characters, "
                           "value: 1 to 128 bytes of text)", c->tag_keys[j]),
                   -EINVAL;
        if (strcmp(c->tag_keys[j], "period") == 0)
            return set_err(err, errlen, "tags: 'period' is the window's own tag"), -EINVAL;
        for (size_t k = 0; k < j; k++)
            if (strcmp(c->tag_keys[j], c->tag_keys[k]) == 0)
                return set_err(err, errlen, "tags name '%s' twice", c->tag_keys[j]), -EINVAL;
    }
    if (ntag_keys > 8)
        return set_err(err, errlen, "a figure would carry more than 8 tags"), -EINVAL;
    if (c->flows_metric) {
        if (c->agg != MT_AGG_DISTINCT)
            return set_err(err, errlen, "flows need agg = \"distinct\""), -EINVAL;
        if (c->nby != 1)
            return set_err(err, errlen, "flows need exactly one 'by' (the service)"), -EINVAL;
        if (!ident(c->flows_metric, 63) || !ident(c->flows_tag, 32))
            return set_err(err, errlen, "flows: a bad metric or tag name"), -EINVAL;
        if (strcmp(c->flows_metric, c->metric) == 0)
            return set_err(err, errlen, "flows: the matrix needs a metric of its own"), -EINVAL;
        if (strcmp(c->flows_tag, c->by[0]) == 0 || strcmp(c->flows_tag, "period") == 0)
            return set_err(err, errlen, "flows: the tag '%s' is taken", c->flows_tag), -EINVAL;
        for (size_t j = 0; j < c->ntags; j++)
            if (strcmp(c->flows_tag, c->tag_keys[j]) == 0)
                return set_err(err, errlen, "flows: the tag '%s' is taken", c->flows_tag), -EINVAL;
    }
    for (size_t i = 0; i < a->ndefs; i++) {
        const struct mt_aggdef_conf *o = &a->defs[i]->c;
        if (strcmp(o->metric, c->metric) == 0 ||
            (o->flows_metric && strcmp(o->flows_metric, c->metric) == 0) ||
            (c->flows_metric && (strcmp(c->flows_metric, o->metric) == 0 ||
                                 (o->flows_metric && !strcmp(c->flows_metric, o->flows_metric)))))
            return set_err(err, errlen, "another window already makes the metric '%s'", c->metric),
                   -EINVAL;
    }
    return 0;
}

int mt_aggs_define(struct mt_aggs *a, const struct mt_aggdef_conf *c, int *id, char *err,
                   size_t errlen)
{
    struct mt_aggdef_conf k = *c;
    if (!k.flows_tag)
        k.flows_tag = "also";
    if (!k.unit)
        k.unit = "";
    int rc = check_def(a, &k, err, errlen);
    if (rc)
        return rc;
    if (a->ndefs >= MT_AGG_MAX_DEFS)
        return set_err(err, errlen, "at most %d windows per rule", MT_AGG_MAX_DEFS), -ENOSPC;
    struct def *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    struct mt_arena *ar = &d->arena;
    d->c = k;
    d->c.metric = mt_arena_strdup(ar, k.metric);
    d->c.unit = mt_arena_strdup(ar, k.unit);
    bool ok = d->c.metric && d->c.unit;
    for (size_t i = 0; i < k.nby; i++)
        ok &= (d->c.by[i] = mt_arena_strdup(ar, k.by[i])) != NULL;
    for (size_t i = 0; i < k.ntags; i++) {
        ok &= (d->c.tag_keys[i] = mt_arena_strdup(ar, k.tag_keys[i])) != NULL;
        ok &= (d->c.tag_values[i] = mt_arena_strdup(ar, k.tag_values[i])) != NULL;
    }
    if (k.flows_metric) {
        ok &= (d->c.flows_metric = mt_arena_strdup(ar, k.flows_metric)) != NULL;
        ok &= (d->c.flows_tag = mt_arena_strdup(ar, k.flows_tag)) != NULL;
    } else {
        d->c.flows_tag = NULL;
    }
    if (!ok) {
        def_free(a, d);
        return -ENOMEM;
    }
    /* what must match for a saved window to be restored into this one */
    int n = snprintf(d->sig, sizeof(d->sig), "%s|%s|%s|%s|%u|", d->c.metric,
                     mt_unit_name(d->c.every), mt_agg_name(d->c.agg), mt_tz_name(a->tz),
                     d->c.precision);
    for (size_t i = 0; i < d->c.nby && n > 0 && (size_t)n < sizeof(d->sig); i++)
        n += snprintf(d->sig + n, sizeof(d->sig) - (size_t)n, "%s,", d->c.by[i]);
    d->cursor = INT64_MIN;
    d->next_gid = 1;
    *id = (int)a->ndefs;
    a->defs[a->ndefs++] = d;
    a->stale = true;
    return 0;
}

/* ---- groups ---- */

struct kv {
    const char *k, *v;
};

static int kv_cmp(const void *x, const void *y)
{
    return strcmp(((const struct kv *)x)->k, ((const struct kv *)y)->k);
}

/* The canonical JSON object of the window's tags, its period, the group's
 * tag values and one extra pair (flows), keys sorted. */
static char *make_tags(struct mt_aggs *a, const struct def *d, const struct group *g,
                       const char *xk, const char *xv)
{
    struct kv kv[16];
    size_t n = 0;
    struct mt_buf b = {0};

    kv[n++] = (struct kv){"period", mt_unit_name(d->c.every)};
    for (size_t i = 0; i < d->c.ntags; i++)
        kv[n++] = (struct kv){d->c.tag_keys[i], d->c.tag_values[i]};
    for (size_t i = 0; i < d->c.nby; i++)
        if (!is_dim(d->c.by[i]) && g->vals[i])
            kv[n++] = (struct kv){d->c.by[i], g->vals[i]};
    if (xk)
        kv[n++] = (struct kv){xk, xv};
    qsort(kv, n, sizeof(kv[0]), kv_cmp);
    int rc = mt_buf_addc(&b, '{');
    for (size_t i = 0; i < n; i++) {
        if (i)
            rc |= mt_buf_addc(&b, ',');
        rc |= mt_buf_json_str(&b, kv[i].k);
        rc |= mt_buf_addc(&b, ':');
        rc |= mt_buf_json_str(&b, kv[i].v);
    }
    rc |= mt_buf_addc(&b, '}');
    char *s = rc ? NULL : xstrdup(a, mt_buf_cstr(&b));
    mt_buf_free(&b);
    return s;
}

static void make_key(const struct def *d, const char *const *vals, struct mt_buf *b, int *rc)
{
    for (size_t i = 0; i < d->c.nby; i++) {
        if (vals[i]) {
            *rc |= mt_buf_addc(b, 1);
            *rc |= mt_buf_adds(b, vals[i]);
        }
        *rc |= mt_buf_add(b, "", 1);
    }
}

static struct group *group_find(const struct def *d, uint64_t h, const char *key, size_t keylen)
{
    if (!d->gidx.keys) { /* no index (memory ran out while rebuilding it) */
        for (size_t i = 0; i < d->ngroups; i++) {
            struct group *g = d->groups[i];
            if (g->hash == h && g->keylen == keylen && memcmp(g->key, key, keylen) == 0)
                return g;
        }
        return NULL;
    }
    for (size_t i = (size_t)mix64(h) & d->gidx.mask; d->gidx.keys[i];
         i = (i + 1) & d->gidx.mask) {
        struct group *g = d->groups[d->gidx.vals[i]];
        if (g->hash == h && g->keylen == keylen && memcmp(g->key, key, keylen) == 0)
            return g;
    }
    return NULL;
}

/* The group index is keyed by the key's hash with collisions probing on:
 * entries are added with distinct pseudo-keys (hash, then hash+1, ...). */
static int group_index(struct mt_aggs *a, struct def *d, struct group *g, uint32_t idx)
{
    if (!d->gidx.keys || (d->gidx.n + 1) * 2 > d->gidx.mask + 1) {
        /* rebuild: every group at its first free probe position */
        struct u64map m = {0};
        size_t slots = d->gidx.keys ? (d->gidx.mask + 1) * 2 : 16;
        if (charge(a, map_bytes(slots)))
            return -ENOMEM;
        m.keys = calloc(slots, sizeof(*m.keys));
        m.vals = calloc(slots, sizeof(*m.vals));
        if (!m.keys || !m.vals) {
            free(m.keys);
            free(m.vals);
            uncharge(a, map_bytes(slots));
            return -ENOMEM;
        }
        m.mask = slots - 1;
        map_free(a, &d->gidx);
        d->gidx = m;
        for (uint32_t k = 0; k < idx; k++) {
            size_t i = (size_t)mix64(d->groups[k]->hash) & m.mask;
            while (d->gidx.keys[i])
                i = (i + 1) & m.mask;
            d->gidx.keys[i] = 1;
            d->gidx.vals[i] = k;
            d->gidx.n++;
        }
    }
    size_t i = (size_t)mix64(g->hash) & d->gidx.mask;
    while (d->gidx.keys[i])
        i = (i + 1) & d->gidx.mask;
    d->gidx.keys[i] = 1;
    d->gidx.vals[i] = idx;
    d->gidx.n++;
    return 0;
}

static struct group *group_new(struct mt_aggs *a, struct def *d, const char *const *vals,
                               uint64_t h, const char *key, size_t keylen, uint32_t id)
{
    struct group *g = xcalloc(a, 1, sizeof(*g));
    if (!g)
        return NULL;
    g->id = id;
    g->hash = h;
    g->keylen = keylen;
    g->key = xcalloc(a, keylen + 1, 1);
    bool ok = g->key != NULL;
    if (ok)
        memcpy(g->key, key, keylen);
    for (size_t i = 0; ok && i < d->c.nby; i++) {
        if (!vals[i])
            continue;
        ok = (g->vals[i] = xstrdup(a, vals[i])) != NULL;
        if (ok && strcmp(d->c.by[i], "site") == 0)
            g->site = g->vals[i];
        else if (ok && strcmp(d->c.by[i], "device") == 0)
            g->device = g->vals[i];
    }
    if (ok)
        ok = (g->tags_json = make_tags(a, d, g, NULL, NULL)) != NULL;
    g->first_seen = INT64_MAX;
    g->last_seen = INT64_MIN;
    if (ok && xgrow(a, (void **)&d->groups, &d->capgroups, d->ngroups + 1, sizeof(*d->groups)))
        ok = false;
    if (ok && group_index(a, d, g, (uint32_t)d->ngroups))
        ok = false;
    if (!ok) {
        group_free(a, g);
        return NULL;
    }
    d->groups[d->ngroups++] = g;
    if (id >= d->next_gid)
        d->next_gid = id + 1;
    return g;
}

static int check_group(const struct def *d, const char *const *vals, char *err, size_t errlen)
{
    for (size_t i = 0; i < d->c.nby; i++) {
        if (!vals[i])
            continue;
        bool dim = is_dim(d->c.by[i]);
        if (dim ? !ident(vals[i], 63) : !tag_text(vals[i], 128))
            return set_err(err, errlen, "window %s: the %s '%.40s' cannot name a %s (%s)",
                           d->c.metric, d->c.by[i], vals[i], dim ? d->c.by[i] : "tag",
                           dim ? "1 to 63 of A-Z a-z 0-9 _ . : -"
                               : "1 to 128 bytes without control characters"),
                   -EINVAL;
    }
    return 0;
}

static struct group *group_get(struct mt_aggs *a, struct def *d, const char *const *vals,
                               int *rc)
{
    struct mt_buf b = {0};
    *rc = 0;
    make_key(d, vals, &b, rc);
    if (*rc) {
        mt_buf_free(&b);
        *rc = -ENOMEM;
        return NULL;
    }
    uint64_t h = mt_hash64(b.p ? b.p : "", b.len);
    struct group *g = group_find(d, h, b.p ? b.p : "", b.len);
    if (!g && d->ngroups >= MT_AGG_MAX_GROUPS) {
        *rc = -E2BIG;
    } else if (!g) {
        g = group_new(a, d, vals, h, b.p ? b.p : "", b.len, d->next_gid);
        if (!g)
            *rc = -ENOMEM;
    }
    mt_buf_free(&b);
    return g;
}

static struct group *group_by_id(const struct def *d, uint32_t id)
{
    for (size_t i = 0; i < d->ngroups; i++) /* restore and flows only */
        if (d->groups[i]->id == id)
            return d->groups[i];
    return NULL;
}

/* ---- windows and cells ---- */

static struct window *window_find(const struct def *d, int64_t start)
{
    size_t lo = 0, hi = d->nwins;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (d->wins[mid]->start < start)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < d->nwins && d->wins[lo]->start == start ? d->wins[lo] : NULL;
}

static struct window *window_new(struct mt_aggs *a, struct def *d, int64_t start, int64_t end)
{
    if (xgrow(a, (void **)&d->wins, &d->capwins, d->nwins + 1, sizeof(*d->wins)))
        return NULL;
    struct window *w = xcalloc(a, 1, sizeof(*w));
    if (!w)
        return NULL;
    w->start = start;
    w->end = end;
    size_t i = d->nwins;
    while (i > 0 && d->wins[i - 1]->start > start) {
        d->wins[i] = d->wins[i - 1];
        i--;
    }
    d->wins[i] = w;
    d->nwins++;
    return w;
}

static void window_remove(struct mt_aggs *a, struct def *d, size_t i)
{
    window_free(a, d, d->wins[i]);
    memmove(d->wins + i, d->wins + i + 1, (d->nwins - i - 1) * sizeof(*d->wins));
    d->nwins--;
}

static struct cell *cell_find(const struct window *w, const struct group *g)
{
    uint32_t i;
    return map_get(&w->cidx, g->id, &i) ? w->cells[i] : NULL;
}

static struct cell *cell_get(struct mt_aggs *a, const struct def *d, struct window *w,
                             struct group *g)
{
    struct cell *c = cell_find(w, g);
    if (c)
        return c;
    if (xgrow(a, (void **)&w->cells, &w->capcells, w->ncells + 1, sizeof(*w->cells)))
        return NULL;
    c = xcalloc(a, 1, sizeof(*c));
    if (!c)
        return NULL;
    if (d->c.agg == MT_AGG_APPROX && !(c->hll = xcalloc(a, mt_hll_bytes(d->c.precision), 1))) {
        xfree(a, c, sizeof(*c));
        return NULL;
    }
    if (map_put(a, &w->cidx, g->id, (uint32_t)w->ncells)) {
        cell_free(a, d, c);
        return NULL;
    }
    c->g = g;
    w->cells[w->ncells++] = c;
    return c;
}

/* ---- adding ---- */

int mt_aggs_add(struct mt_aggs *a, int id, int64_t ts, const char *const *group, double x,
                const char *subject, size_t slen, char *err, size_t errlen)
{
    struct def *d = a->defs[id];
    struct window *w = d->last;
    int rc;

    if (!w || ts < w->start || ts >= w->end) {
        int64_t s, e;
        if (mt_win_of(a->tz, d->c.every, ts, &s, &e))
            return set_err(err, errlen, "window %s: time %lld is out of range", d->c.metric,
                           (long long)ts),
                   -EINVAL;
        /* finished windows are gone: a reading for one is late */
        if (a->now != INT64_MIN && e <= a->now - d->c.lateness_us) {
            a->st.late++;
            return 1;
        }
        w = window_find(d, s);
        if (!w) {
            if (!(w = window_new(a, d, s, e)))
                return -ENOMEM;
            a->stale = true; /* a window that may fall due */
        }
        d->last = w;
    } else if (a->now != INT64_MIN && w->end <= a->now - d->c.lateness_us) {
        a->st.late++;
        return 1;
    }
    struct group *g = d->last_g;
    for (size_t i = 0; g && i < d->c.nby; i++) /* most readings are in the last one's group */
        if ((group[i] == NULL) != (g->vals[i] == NULL) || (group[i] && strcmp(group[i], g->vals[i])))
            g = NULL;
    if (!g) {
        if ((rc = check_group(d, group, err, errlen)))
            return rc;
        g = group_get(a, d, group, &rc);
        if (g) {
            d->last_g = g;
            a->stale = true; /* maybe a new group, owed figures */
        }
    }
    if (!g && rc == -E2BIG)
        return set_err(err, errlen, "window %s: more than %d groups; group by fewer values",
                       d->c.metric, MT_AGG_MAX_GROUPS),
               -EINVAL;
    if (!g)
        return rc;
    struct cell *c = cell_get(a, d, w, g);
    if (!c)
        return -ENOMEM;
    bool changed = true;
    switch (d->c.agg) {
    case MT_AGG_DISTINCT:
        if (!subject || !slen)
            return 0;
        rc = set_add(a, &c->set, &w->strings, subject, slen > SUBJECT_MAX ? SUBJECT_MAX : slen);
        if (rc < 0)
            return rc;
        changed = rc == 1;
        break;
    case MT_AGG_APPROX:
        if (!subject || !slen)
            return 0;
        changed = mt_hll_add(c->hll, d->c.precision, subject_hash(subject, slen)) == 1;
        c->n++;
        break;
    case MT_AGG_MIN:
        if (!c->n || x < c->v)
            c->v = x;
        c->n++;
        break;
    case MT_AGG_MAX:
        if (!c->n || x > c->v)
            c->v = x;
        c->n++;
        break;
    default:
        c->sum += x;
        c->n++;
        break;
    }
    if (ts < g->first_seen)
        g->first_seen = ts;
    if (ts > g->last_seen)
        g->last_seen = ts;
    if (changed && w->emitted) {
        w->dirty = true;
        a->stale = true;
    }
    return 0;
}

/* ---- emitting ---- */

/* The figure of a cell as it would leave now. false: there is none (the
 * mean, min or max of nothing). */
static bool cell_form(const struct def *d, const struct cell *c, double *value, bool *supp)
{
    double basis;
    switch (d->c.agg) {
    case MT_AGG_SUM: *value = basis = c->sum; break;
    case MT_AGG_COUNT: *value = basis = (double)c->n; break;
    case MT_AGG_MEAN:
    case MT_AGG_MIN:
    case MT_AGG_MAX:
        if (!c->n)
            return false;
        *value = d->c.agg == MT_AGG_MEAN ? c->sum / (double)c->n : c->v;
        basis = (double)c->n;
        break;
    case MT_AGG_DISTINCT: *value = basis = (double)c->set.n; break;
    default:
        *value = basis = c->n ? round(mt_hll_estimate(c->hll, d->c.precision)) : 0;
        break;
    }
    *supp = d->c.suppress && basis < d->c.suppress;
    if (*supp)
        *value = 0; /* the number goes no further than this */
    return true;
}

static int kind_of(const struct def *d)
{
    return d->c.agg == MT_AGG_SUM || d->c.agg == MT_AGG_COUNT ? MITTARI_KIND_DELTA
                                                             : MITTARI_KIND_GAUGE;
}

/* Emits value (with supp) for a key last sent as sent, rev; updates them.
 * Returns 0 also when nothing changed or the revision cap was reached. */
static int send(struct mt_aggs *a, const struct def *d, const struct window *w, const char *metric,
                const char *site, const char *device, const char *tags, uint32_t *series,
                bool *sent, uint8_t *rev, bool *sent_supp, double *sent_value, double value,
                bool supp)
{
    unsigned r = 0;
    if (*sent) {
        if (*sent_supp == supp && *sent_value == value)
            return 0;
        if (*rev >= MT_AGG_REV_MAX) {
            a->st.overflow++;
            return 0;
        }
        r = *rev + 1u;
    }
    struct mt_figure f = {.ts = w->start, .site = site, .device = device, .metric = metric,
                          .unit = d->c.unit, .kind = kind_of(d), .tags_json = tags,
                          .value = supp ? 0 : value, .min_count = supp ? d->c.suppress : 0,
                          .revision = r, .series = series};
    int rc = a->cb ? a->cb(a->arg, &f) : 0;
    if (rc)
        return rc;
    *sent = true;
    *rev = (uint8_t)r;
    *sent_supp = supp;
    *sent_value = value;
    a->st.figures++;
    a->st.suppressed += supp;
    a->st.corrections += r > 0;
    return 0;
}

static int cell_cmp(const void *x, const void *y)
{
    const struct group *a = (*(struct cell *const *)x)->g, *b = (*(struct cell *const *)y)->g;
    size_t n = a->keylen < b->keylen ? a->keylen : b->keylen;
    int c = memcmp(a->key, b->key, n);
    return c ? c : (a->keylen > b->keylen) - (a->keylen < b->keylen);
}

static struct pairinfo *pair_info(struct mt_aggs *a, struct def *d, const struct group *ga,
                                  const struct group *gb)
{
    uint64_t key = (uint64_t)ga->id << 32 | gb->id;
    uint32_t i;
    if (map_get(&d->pimap, key, &i))
        return &d->pinfo[i];
    if (xgrow(a, (void **)&d->pinfo, &d->cappinfo, d->npinfo + 1, sizeof(*d->pinfo)))
        return NULL;
    char *tags = make_tags(a, d, ga, d->c.flows_tag, gb->vals[0]);
    if (!tags)
        return NULL;
    if (map_put(a, &d->pimap, key, (uint32_t)d->npinfo)) {
        xstrfree(a, tags);
        return NULL;
    }
    d->pinfo[d->npinfo] = (struct pairinfo){ga->id, gb->id, tags, 0};
    return &d->pinfo[d->npinfo++];
}

static struct pairsent *pair_sent(struct mt_aggs *a, struct window *w, uint32_t ida, uint32_t idb,
                                  bool *fresh)
{
    uint64_t key = (uint64_t)ida << 32 | idb;
    uint32_t i;
    *fresh = false;
    if (map_get(&w->pidx, key, &i))
        return &w->pairs[i];
    if (xgrow(a, (void **)&w->pairs, &w->cappairs, w->npairs + 1, sizeof(*w->pairs)) ||
        map_put(a, &w->pidx, key, (uint32_t)w->npairs))
        return NULL;
    *fresh = true;
    w->pairs[w->npairs] = (struct pairsent){.a = ida, .b = idb};
    return &w->pairs[w->npairs++];
}

/* The user-flow matrix: for every ordered pair of the window's groups
 * (A, B), the subjects A and B have in common. */
static int emit_flows(struct mt_aggs *a, struct def *d, struct window *w, struct cell **v,
                      size_t n)
{
    if (n > MT_AGG_FLOW_GROUPS) {
        a->st.overflow += n - MT_AGG_FLOW_GROUPS;
        n = MT_AGG_FLOW_GROUPS; /* the first ones by key; the matrix stays bounded */
    }
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < n; j++) {
            const struct group *ga = v[i]->g, *gb = v[j]->g;
            if (i == j || !ga->vals[0] || !gb->vals[0])
                continue;
            struct pairinfo *pi = pair_info(a, d, ga, gb);
            bool fresh;
            struct pairsent *ps = pi ? pair_sent(a, w, ga->id, gb->id, &fresh) : NULL;
            if (!ps)
                return -ENOMEM;
            double value = (double)set_common(&v[i]->set, &v[j]->set);
            bool supp = d->c.suppress && value < d->c.suppress;
            bool sent = !fresh;
            int rc = send(a, d, w, d->c.flows_metric, ga->site, ga->device, pi->tags_json,
                          &pi->series, &sent, &ps->rev, &ps->supp, &ps->value, value, supp);
            if (rc)
                return rc;
        }
    }
    return 0;
}

static bool group_alive(const struct def *d, const struct group *g, int64_t start, int64_t end)
{
    return g->first_seen < end && g->last_seen != INT64_MIN &&
           g->last_seen >= start - d->c.forget_us;
}

/* A window's figures: all of them the first time, the changed ones later.
 * Groups that had no reading but are alive get their (empty) cell first. */
static int emit_window(struct mt_aggs *a, struct def *d, struct window *w)
{
    if (!w->emitted) {
        for (size_t i = 0; i < d->ngroups; i++)
            if (group_alive(d, d->groups[i], w->start, w->end) && !cell_get(a, d, w, d->groups[i]))
                return -ENOMEM;
    }
    struct cell **v = malloc((w->ncells ? w->ncells : 1) * sizeof(*v));
    if (!v)
        return -ENOMEM;
    memcpy(v, w->cells, w->ncells * sizeof(*v));
    qsort(v, w->ncells, sizeof(*v), cell_cmp);
    int rc = 0;
    for (size_t i = 0; !rc && i < w->ncells; i++) {
        struct cell *c = v[i];
        double value;
        bool supp;
        if (!cell_form(d, c, &value, &supp))
            continue;
        rc = send(a, d, w, d->c.metric, c->g->site, c->g->device, c->g->tags_json,
                  &c->g->series, &c->sent, &c->rev, &c->sent_supp, &c->sent_value, value, supp);
    }
    if (!rc && d->c.flows_metric)
        rc = emit_flows(a, d, w, v, w->ncells);
    free(v);
    if (!rc) {
        w->emitted = true;
        w->dirty = false;
        w->next_fix = a->now + MT_AGG_FIX_US;
    }
    return rc;
}

/* Periods that ended with no window: a window (of zeros) when some group
 * is alive in it, so that a quiet group still gets its figure. Returns how
 * many windows it made, or -ENOMEM. */
static int close_periods(struct mt_aggs *a, struct def *d, int64_t now)
{
    int made = 0;
    while (made < MT_AGG_PERIODS_PER_CALL) {
        int64_t p = d->cursor;
        if (p == INT64_MIN) {
            if (!d->nwins)
                return made;
            p = d->wins[0]->start;
        }
        int64_t s, e;
        if (mt_win_of(a->tz, d->c.every, p, &s, &e))
            return made;
        if (e > now)
            return made;
        if (!window_find(d, s)) {
            bool alive = false;
            for (size_t i = 0; i < d->ngroups && !alive; i++)
                alive = group_alive(d, d->groups[i], s, e);
            if (alive) {
                struct window *w = window_new(a, d, s, e);
                if (!w)
                    return -ENOMEM;
                /* the groups it reports on, now: they may be forgotten before
                 * it is emitted */
                for (size_t i = 0; i < d->ngroups; i++)
                    if (group_alive(d, d->groups[i], s, e) && !cell_get(a, d, w, d->groups[i]))
                        return -ENOMEM;
                made++;
            } else {
                /* nobody to report on until the next window with readings,
                 * or the present */
                int64_t next = INT64_MAX;
                for (size_t i = 0; i < d->nwins; i++)
                    if (d->wins[i]->start > s) {
                        next = d->wins[i]->start;
                        break;
                    }
                int64_t ns, ne;
                if (next == INT64_MAX && mt_win_of(a->tz, d->c.every, now, &ns, &ne) == 0)
                    next = ns;
                if (next == INT64_MAX || next <= s)
                    return made;
                /* groups may come alive again before next only by an add,
                 * which makes a window; so nothing in between is owed */
                bool revive = false;
                for (size_t i = 0; i < d->ngroups && !revive; i++)
                    revive = d->groups[i]->first_seen < next &&
                             d->groups[i]->last_seen >= s - d->c.forget_us;
                if (!revive) {
                    d->cursor = next;
                    continue;
                }
            }
        }
        d->cursor = e;
    }
    return made;
}

static void reindex(struct mt_aggs *a, struct def *d)
{
    map_free(a, &d->gidx);
    for (size_t i = 0; i < d->ngroups; i++)
        if (group_index(a, d, d->groups[i], (uint32_t)i)) {
            /* out of memory: a smaller index still finds every group */
            map_free(a, &d->gidx);
            return;
        }
}

/* Groups that will get no more figures (not seen for forget_after) and are
 * in no window are forgotten, with their pairs of the flow matrix. */
static void forget_groups(struct mt_aggs *a, struct def *d)
{
    if (d->cursor == INT64_MIN || d->forgot_at == d->cursor)
        return;
    d->forgot_at = d->cursor;
    bool removed = false;
    for (size_t i = 0; i < d->ngroups;) {
        struct group *g = d->groups[i];
        bool keep = g->last_seen >= d->cursor - d->c.forget_us;
        for (size_t k = 0; !keep && k < d->nwins; k++)
            keep = cell_find(d->wins[k], g) != NULL;
        if (keep) {
            i++;
            continue;
        }
        uint32_t id = g->id;
        if (d->last_g == g)
            d->last_g = NULL;
        group_free(a, g);
        d->groups[i] = d->groups[--d->ngroups];
        removed = true;
        for (size_t k = 0; k < d->npinfo;) {
            if (d->pinfo[k].a == id || d->pinfo[k].b == id) {
                xstrfree(a, d->pinfo[k].tags_json);
                d->pinfo[k] = d->pinfo[--d->npinfo];
            } else {
                k++;
            }
        }
    }
    if (!removed)
        return;
    reindex(a, d);
    map_free(a, &d->pimap);
    for (size_t k = 0; k < d->npinfo; k++)
        if (map_put(a, &d->pimap, (uint64_t)d->pinfo[k].a << 32 | d->pinfo[k].b, (uint32_t)k))
            break; /* a pair not found is made again */
}

struct due {
    int64_t end;
    size_t def;
    struct window *w;
};

static int due_cmp(const void *x, const void *y)
{
    const struct due *a = x, *b = y;
    if (a->end != b->end)
        return a->end < b->end ? -1 : 1;
    if (a->def != b->def)
        return a->def < b->def ? -1 : 1;
    return (a->w->start > b->w->start) - (a->w->start < b->w->start);
}

/* Emits, in order of end, the windows that ended and have not been
 * emitted, and due corrections; then drops finished windows. final: every
 * window counts as finished (a replay's end). */
static int run_due(struct mt_aggs *a, bool final, bool limit)
{
    struct due *v = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;

    for (size_t k = 0; k < a->ndefs; k++) {
        struct def *d = a->defs[k];
        for (size_t i = 0; i < d->nwins; i++) {
            struct window *w = d->wins[i];
            bool done = final || w->end <= a->now - d->c.lateness_us;
            bool first = !w->emitted && (final || w->end <= a->now);
            bool fix = w->emitted && w->dirty && (done || a->now >= w->next_fix);
            if (!first && !fix)
                continue;
            if (n == cap) {
                size_t nc = cap ? cap * 2 : 16;
                struct due *nv = realloc(v, nc * sizeof(*v));
                if (!nv) {
                    free(v);
                    return -ENOMEM;
                }
                v = nv;
                cap = nc;
            }
            v[n++] = (struct due){w->end, k, w};
        }
    }
    if (n > 1)
        qsort(v, n, sizeof(*v), due_cmp);
    uint64_t before = a->st.figures;
    bool more = false;
    for (size_t i = 0; !rc && i < n; i++) {
        if (limit && a->st.figures - before >= MT_AGG_FIGURES_PER_CALL) {
            more = true; /* the rest at the next call: a step stays small */
            break;
        }
        rc = emit_window(a, a->defs[v[i].def], v[i].w);
    }
    free(v);
    if (rc)
        return rc;
    for (size_t k = 0; k < a->ndefs; k++) {
        struct def *d = a->defs[k];
        for (size_t i = 0; i < d->nwins;) {
            struct window *w = d->wins[i];
            /* only once the quiet-period cursor has passed it too: else a
             * later pass would make the period's window again */
            if (w->emitted && !w->dirty && (final || w->end <= a->now - d->c.lateness_us) &&
                (final || (d->cursor != INT64_MIN && w->end <= d->cursor)))
                window_remove(a, d, i);
            else
                i++;
        }
        forget_groups(a, d);
    }
    return more ? 1 : 0;
}

/* Closes quiet periods up to rule time; returns how many windows that made. */
static int close_all(struct mt_aggs *a)
{
    int made = 0;
    for (size_t k = 0; k < a->ndefs; k++) {
        int rc = close_periods(a, a->defs[k], a->now);
        if (rc < 0)
            return rc;
        made += rc;
    }
    return made;
}

int mt_aggs_advance(struct mt_aggs *a, int64_t now)
{
    if (now > a->now)
        a->now = now;
    if (!a->stale && a->now < a->due_at)
        return 0; /* nothing has ended, nothing changed: most readings */
    int made = close_all(a);
    if (made < 0)
        return made;
    int rc = run_due(a, false, true);
    if (rc < 0)
        return rc;
    /* more quiet periods, or figures, than one call makes: call again */
    if (rc == 1 || made >= MT_AGG_PERIODS_PER_CALL)
        return 1;
    a->due_at = mt_aggs_next_due(a);
    a->stale = false;
    return 0;
}

int mt_aggs_finish(struct mt_aggs *a)
{
    int64_t last = a->now;
    for (size_t k = 0; k < a->ndefs; k++) {
        struct def *d = a->defs[k];
        if (d->nwins && d->wins[d->nwins - 1]->end > last)
            last = d->wins[d->nwins - 1]->end;
    }
    if (last > a->now)
        a->now = last;
    for (;;) {
        int made = close_all(a);
        if (made < 0)
            return made;
        int rc = run_due(a, false, false);
        if (rc < 0)
            return rc;
        if (!made)
            break;
    }
    return run_due(a, true, false);
}

/* ---- state ---- */

static int put_u8(struct mt_buf *b, unsigned v)
{
    return mt_buf_addc(b, (char)(v & 0xff));
}

static int put_u32(struct mt_buf *b, uint32_t v)
{
    unsigned char x[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    return mt_buf_add(b, x, 4);
}

static int put_u64(struct mt_buf *b, uint64_t v)
{
    return put_u32(b, (uint32_t)v) | put_u32(b, (uint32_t)(v >> 32));
}

static int put_f64(struct mt_buf *b, double v)
{
    uint64_t u;
    memcpy(&u, &v, 8);
    return put_u64(b, u);
}

static int put_str(struct mt_buf *b, const char *s, size_t n)
{
    return put_u32(b, (uint32_t)n) | mt_buf_add(b, s, n);
}

static int save_window(const struct def *d, const struct window *w, struct mt_buf *b)
{
    int rc = put_u64(b, (uint64_t)w->start) | put_u64(b, (uint64_t)w->end);
    rc |= put_u8(b, w->emitted) | put_u8(b, w->dirty) | put_u64(b, (uint64_t)w->next_fix);
    rc |= put_u32(b, (uint32_t)w->ncells);
    for (size_t i = 0; i < w->ncells; i++) {
        const struct cell *c = w->cells[i];
        rc |= put_u32(b, c->g->id) | put_u64(b, c->n) | put_f64(b, c->sum) | put_f64(b, c->v);
        rc |= put_u8(b, c->sent) | put_u8(b, c->sent_supp) | put_u8(b, c->rev);
        rc |= put_f64(b, c->sent_value);
        if (d->c.agg == MT_AGG_DISTINCT) {
            rc |= put_u32(b, (uint32_t)c->set.n);
            for (size_t k = 0; c->set.hash && k <= c->set.mask; k++)
                if (c->set.hash[k])
                    rc |= put_str(b, c->set.s[k], strlen(c->set.s[k]));
        } else if (d->c.agg == MT_AGG_APPROX) {
            rc |= mt_buf_add(b, c->hll, mt_hll_bytes(d->c.precision));
        }
    }
    rc |= put_u32(b, (uint32_t)w->npairs);
    for (size_t i = 0; i < w->npairs; i++) {
        const struct pairsent *p = &w->pairs[i];
        rc |= put_u32(b, p->a) | put_u32(b, p->b) | put_u8(b, p->supp) | put_u8(b, p->rev);
        rc |= put_f64(b, p->value);
    }
    return rc;
}

static int save_def(const struct def *d, struct mt_buf *b)
{
    int rc = put_str(b, d->sig, strlen(d->sig));
    rc |= put_u64(b, (uint64_t)d->cursor) | put_u32(b, d->next_gid);
    rc |= put_u32(b, (uint32_t)d->ngroups);
    for (size_t i = 0; i < d->ngroups; i++) {
        const struct group *g = d->groups[i];
        rc |= put_u32(b, g->id) | put_u64(b, (uint64_t)g->first_seen);
        rc |= put_u64(b, (uint64_t)g->last_seen);
        for (size_t k = 0; k < d->c.nby; k++) {
            rc |= put_u8(b, g->vals[k] != NULL);
            if (g->vals[k])
                rc |= put_str(b, g->vals[k], strlen(g->vals[k]));
        }
    }
    rc |= put_u32(b, (uint32_t)d->nwins);
    for (size_t i = 0; i < d->nwins; i++)
        rc |= save_window(d, d->wins[i], b);
    return rc;
}

int mt_aggs_save(const struct mt_aggs *a, struct mt_buf *b)
{
    int rc = put_u32(b, STATE_MAGIC) | put_u32(b, STATE_FORMAT) | put_u64(b, (uint64_t)a->now);
    rc |= put_u32(b, (uint32_t)a->ndefs);
    for (size_t i = 0; i < a->ndefs; i++) {
        size_t at = b->len;
        rc |= put_u32(b, 0); /* the block's length, filled in below: a reader can skip it */
        rc |= save_def(a->defs[i], b);
        if (!rc) {
            uint32_t n = (uint32_t)(b->len - at - 4);
            unsigned char x[4] = {(unsigned char)n, (unsigned char)(n >> 8),
                                  (unsigned char)(n >> 16), (unsigned char)(n >> 24)};
            memcpy(b->p + at, x, 4);
        }
    }
    return rc ? -ENOMEM : 0;
}

struct rd {
    const unsigned char *p, *end;
    bool bad;
};

static const unsigned char *take(struct rd *r, size_t n)
{
    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = true;
        return NULL;
    }
    const unsigned char *q = r->p;
    r->p += n;
    return q;
}

static uint32_t get_u32(struct rd *r)
{
    const unsigned char *q = take(r, 4);
    return q ? (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24
             : 0;
}

static uint64_t get_u64(struct rd *r)
{
    uint64_t lo = get_u32(r);
    return lo | (uint64_t)get_u32(r) << 32;
}

static unsigned get_u8(struct rd *r)
{
    const unsigned char *q = take(r, 1);
    return q ? *q : 0;
}

static double get_f64(struct rd *r)
{
    uint64_t u = get_u64(r);
    double v;
    memcpy(&v, &u, 8);
    return v;
}

/* A string of at most max bytes into buf (NUL-terminated). */
static const char *get_str(struct rd *r, char *buf, size_t max)
{
    uint32_t n = get_u32(r);
    const unsigned char *q = n <= max ? take(r, n) : NULL;
    if (!q) {
        r->bad = true;
        return NULL;
    }
    memcpy(buf, q, n);
    buf[n] = 0;
    if (strlen(buf) != n)
        r->bad = true;
    return buf;
}

/* Empties a declared window: what a damaged state leaves behind. */
static void def_clear(struct mt_aggs *a, struct def *d)
{
    while (d->nwins)
        window_remove(a, d, d->nwins - 1);
    for (size_t i = 0; i < d->ngroups; i++)
        group_free(a, d->groups[i]);
    d->ngroups = 0;
    d->last_g = NULL;
    map_free(a, &d->gidx);
    for (size_t i = 0; i < d->npinfo; i++)
        xstrfree(a, d->pinfo[i].tags_json);
    d->npinfo = 0;
    map_free(a, &d->pimap);
    d->cursor = INT64_MIN;
    d->next_gid = 1;
    d->last = NULL;
}

static int load_cell(struct mt_aggs *a, struct def *d, struct window *w, struct rd *r)
{
    char buf[SUBJECT_MAX + 1];
    struct group *g = group_by_id(d, get_u32(r));
    if (!g || r->bad)
        return -EINVAL;
    struct cell *c = cell_get(a, d, w, g);
    if (!c)
        return -ENOMEM;
    c->n = get_u64(r);
    c->sum = get_f64(r);
    c->v = get_f64(r);
    c->sent = get_u8(r);
    c->sent_supp = get_u8(r);
    c->rev = (uint8_t)get_u8(r);
    c->sent_value = get_f64(r);
    if (d->c.agg == MT_AGG_DISTINCT) {
        uint32_t n = get_u32(r);
        for (uint32_t k = 0; k < n && !r->bad; k++) {
            const char *s = get_str(r, buf, SUBJECT_MAX);
            if (s && set_add(a, &c->set, &w->strings, s, strlen(s)) < 0)
                return -ENOMEM;
        }
    } else if (d->c.agg == MT_AGG_APPROX) {
        const unsigned char *q = take(r, mt_hll_bytes(d->c.precision));
        if (q)
            memcpy(c->hll, q, mt_hll_bytes(d->c.precision));
    }
    return r->bad ? -EINVAL : 0;
}

static int load_window(struct mt_aggs *a, struct def *d, struct rd *r)
{
    int64_t start = (int64_t)get_u64(r), end = (int64_t)get_u64(r);
    if (r->bad || end <= start || window_find(d, start))
        return -EINVAL;
    struct window *w = window_new(a, d, start, end);
    if (!w)
        return -ENOMEM;
    w->emitted = get_u8(r);
    w->dirty = get_u8(r);
    w->next_fix = (int64_t)get_u64(r);
    uint32_t n = get_u32(r);
    for (uint32_t i = 0; i < n; i++) {
        int rc = load_cell(a, d, w, r);
        if (rc)
            return rc;
    }
    n = get_u32(r);
    for (uint32_t i = 0; i < n && !r->bad; i++) {
        bool fresh;
        uint32_t ida = get_u32(r), idb = get_u32(r);
        struct pairsent *p = pair_sent(a, w, ida, idb, &fresh);
        if (!p)
            return -ENOMEM;
        p->supp = get_u8(r);
        p->rev = (uint8_t)get_u8(r);
        p->value = get_f64(r);
    }
    return r->bad ? -EINVAL : 0;
}

static int load_def(struct mt_aggs *a, struct def *d, struct rd *r)
{
    d->cursor = (int64_t)get_u64(r);
    uint32_t next_gid = get_u32(r), n = get_u32(r);
    for (uint32_t i = 0; i < n && !r->bad; i++) {
        const char *vals[MT_AGG_MAX_BY] = {0};
        char store[MT_AGG_MAX_BY][130];
        struct mt_buf key = {0};
        int rc = 0;
        uint32_t id = get_u32(r);
        int64_t first = (int64_t)get_u64(r), last = (int64_t)get_u64(r);
        for (size_t k = 0; k < d->c.nby; k++)
            if (get_u8(r))
                vals[k] = get_str(r, store[k], 128);
        if (r->bad || id == 0 || group_by_id(d, id))
            return -EINVAL;
        make_key(d, vals, &key, &rc);
        struct group *g = rc ? NULL
                             : group_new(a, d, vals, mt_hash64(key.p ? key.p : "", key.len),
                                         key.p ? key.p : "", key.len, id);
        mt_buf_free(&key);
        if (!g)
            return -ENOMEM;
        g->first_seen = first;
        g->last_seen = last;
    }
    if (next_gid > d->next_gid)
        d->next_gid = next_gid;
    n = get_u32(r);
    for (uint32_t i = 0; i < n; i++) {
        int rc = load_window(a, d, r);
        if (rc)
            return rc;
    }
    return r->bad ? -EINVAL : 0;
}

int mt_aggs_restore(struct mt_aggs *a, const void *p, size_t len, char *note, size_t notelen)
{
    struct rd r = {p, (const unsigned char *)p + len, false};
    bool done[MT_AGG_MAX_DEFS] = {false};
    char sig[400];
    size_t nlen = 0;
    int rc = 0;

    if (notelen)
        note[0] = 0;
    if (get_u32(&r) != STATE_MAGIC || get_u32(&r) != STATE_FORMAT)
        return -EINVAL;
    int64_t now = (int64_t)get_u64(&r);
    uint32_t n = get_u32(&r);
    for (uint32_t i = 0; i < n && !rc && !r.bad; i++) {
        uint32_t blen = get_u32(&r);
        const unsigned char *block = take(&r, blen);
        if (!block)
            break;
        struct rd br = {block, block + blen, false};
        if (!get_str(&br, sig, sizeof(sig) - 1)) {
            rc = -EINVAL;
            break;
        }
        size_t k = 0;
        while (k < a->ndefs && (done[k] || strcmp(a->defs[k]->sig, sig) != 0))
            k++;
        if (k == a->ndefs) {
            /* a window the script no longer declares, or declares otherwise */
            const char *bar = strchr(sig, '|');
            if (notelen && nlen < notelen)
                nlen += (size_t)snprintf(note + nlen, notelen - nlen, "%s%.*s", nlen ? ", " : "",
                                         bar ? (int)(bar - sig) : 40, sig);
            continue;
        }
        done[k] = true;
        rc = load_def(a, a->defs[k], &br);
    }
    if (r.bad && !rc)
        rc = -EINVAL;
    if (rc) {
        for (size_t k = 0; k < a->ndefs; k++)
            def_clear(a, a->defs[k]);
        return rc == -ENOMEM ? -ENOMEM : -EINVAL;
    }
    a->now = now;
    a->stale = true;
    return 0;
}
