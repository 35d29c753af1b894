#include "visitors.h"

#include <errno.h>
#include <fnmatch.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mittari/mittari.h>

#include "rulewin.h"

#define QUARTER_US (900LL * 1000000)
#define DAY_US (86400LL * 1000000)
#define MAX_PATTERNS 32

/* one quarter hour of one series */
struct cell {
    uint32_t series; /* 0 = empty slot */
    int64_t quarter;
    double sum;
};

struct mt_visitors {
    pthread_mutex_t lock;
    const struct mt_series_reg *reg;
    char *patterns_buf;
    const char *patterns[MAX_PATTERNS];
    size_t npatterns;
    uint8_t *kind; /* per series id: 0 unknown, 1 a visitor series, 2 not */
    size_t nkind;
    uint32_t *seen; /* visitor series met, in order */
    size_t nseen, capseen;
    struct cell *cells; /* open addressing */
    size_t mask, ncells;
    int64_t keep_from; /* µs */
    bool loaded;
};

int mt_visitors_new(struct mt_visitors **out, const char *patterns,
                    const struct mt_series_reg *reg)
{
    struct mt_visitors *v = calloc(1, sizeof(*v));
    char *save = NULL;

    *out = NULL;
    if (!v)
        return -ENOMEM;
    v->reg = reg;
    v->patterns_buf = strdup(patterns);
    v->mask = 1023;
    v->cells = calloc(v->mask + 1, sizeof(*v->cells));
    if (!v->patterns_buf || !v->cells) {
        mt_visitors_free(v);
        return -ENOMEM;
    }
    for (char *p = strtok_r(v->patterns_buf, " ,\t", &save);
         p && v->npatterns < MAX_PATTERNS; p = strtok_r(NULL, " ,\t", &save))
        v->patterns[v->npatterns++] = p;
    if (!v->npatterns) {
        mt_visitors_free(v);
        return -EINVAL;
    }
    pthread_mutex_init(&v->lock, NULL);
    *out = v;
    return 0;
}

void mt_visitors_free(struct mt_visitors *v)
{
    if (!v)
        return;
    if (v->npatterns)
        pthread_mutex_destroy(&v->lock);
    free(v->patterns_buf);
    free(v->kind);
    free(v->seen);
    free(v->cells);
    free(v);
}

static uint64_t cell_hash(uint32_t series, int64_t quarter)
{
    uint64_t h = mt_hash_bytes(MT_HASH_INIT, &series, sizeof(series));
    return mt_hash_bytes(h, &quarter, sizeof(quarter));
}

static struct cell *cell_find(struct mt_visitors *v, uint32_t series, int64_t quarter)
{
    for (size_t i = cell_hash(series, quarter) & v->mask;; i = (i + 1) & v->mask) {
        struct cell *c = &v->cells[i];
        if (!c->series || (c->series == series && c->quarter == quarter))
            return c;
    }
}

/* Rebuilds the table with room for twice as many cells, keeping those from
 * keep_from on. */
static int rehash(struct mt_visitors *v, size_t mask)
{
    struct cell *old = v->cells;
    size_t oldn = v->mask + 1;
    struct cell *nc = calloc(mask + 1, sizeof(*nc));
    if (!nc)
        return -ENOMEM;
    v->cells = nc;
    v->mask = mask;
    v->ncells = 0;
    int64_t q0 = mt_floordiv(v->keep_from, QUARTER_US);
    for (size_t i = 0; i < oldn; i++) {
        if (!old[i].series || old[i].quarter < q0)
            continue;
        *cell_find(v, old[i].series, old[i].quarter) = old[i];
        v->ncells++;
    }
    free(old);
    return 0;
}

static bool matches(const struct mt_visitors *v, const struct mt_series_info *si)
{
    if (si->kind == MITTARI_KIND_GAUGE)
        return false;
    for (size_t i = 0; i < v->npatterns; i++)
        if (fnmatch(v->patterns[i], si->metric, 0) == 0)
            return true;
    return false;
}

/* lock held */
static bool is_visitor(struct mt_visitors *v, uint32_t series)
{
    if (series >= v->nkind) {
        size_t n = v->nkind ? v->nkind : 256;
        while (n <= series)
            n *= 2;
        uint8_t *k = realloc(v->kind, n);
        if (!k)
            return false;
        memset(k + v->nkind, 0, n - v->nkind);
        v->kind = k;
        v->nkind = n;
    }
    if (!v->kind[series]) {
        const struct mt_series_info *si = mt_series_get(v->reg, series);
        if (!si)
            return false; /* not published yet: ask again next time */
        v->kind[series] = matches(v, si) ? 1 : 2;
        if (v->kind[series] == 1) {
            if (v->nseen == v->capseen) {
                size_t cap = v->capseen ? v->capseen * 2 : 16;
                uint32_t *s = realloc(v->seen, cap * sizeof(*s));
                if (!s) {
                    v->kind[series] = 0;
                    return false;
                }
                v->seen = s;
                v->capseen = cap;
            }
            v->seen[v->nseen++] = series;
        }
    }
    return v->kind[series] == 1;
}

void mt_visitors_add(struct mt_visitors *v, const struct mt_row *rows, size_t n)
{
    pthread_mutex_lock(&v->lock);
    for (size_t i = 0; i < n; i++) {
        const struct mt_row *r = &rows[i];
        /* a suppressed figure is a rule's, and carries no number */
        if (r->ts < v->keep_from || (r->flags & MT_RF_SUPPRESSED) || !is_visitor(v, r->series))
            continue;
        if ((v->ncells + 1) * 4 > (v->mask + 1) * 3 && rehash(v, v->mask * 2 + 1))
            break; /* out of memory: the figures stay short, the rest is skipped */
        struct cell *c = cell_find(v, r->series, mt_floordiv(r->ts, QUARTER_US));
        if (!c->series) {
            c->series = r->series;
            c->quarter = mt_floordiv(r->ts, QUARTER_US);
            c->sum = 0;
            v->ncells++;
        }
        c->sum += r->value;
    }
    pthread_mutex_unlock(&v->lock);
}

void mt_visitors_prune(struct mt_visitors *v, int64_t keep_from_us)
{
    pthread_mutex_lock(&v->lock);
    if (keep_from_us > v->keep_from) {
        v->keep_from = keep_from_us;
        rehash(v, v->mask); /* on failure the old cells stay: harmless */
    }
    pthread_mutex_unlock(&v->lock);
}

void mt_visitors_set_loaded(struct mt_visitors *v, bool loaded)
{
    pthread_mutex_lock(&v->lock);
    v->loaded = loaded;
    pthread_mutex_unlock(&v->lock);
}

/* ---- a day's figures ---- */

/* The local day (days since the epoch, civil) of instant us. */
static int64_t local_day(const struct mt_tz *tz, int64_t us)
{
    struct mt_localtime lt;
    mt_tz_localtime(tz, mt_floordiv(us, 1000000), &lt);
    return mt_days_from_civil(lt.year, lt.month, lt.day);
}

/* [start, end) of civil day `days` in tz: the window of a day holding its
 * noon (noon exists on every day a zone changes offset: changes happen at
 * night). */
static int day_window(const struct mt_tz *tz, int64_t days, int64_t *start, int64_t *end)
{
    int64_t noon = days * 86400 + 12 * 3600;
    noon -= mt_tz_offset(tz, noon);
    return mt_win_of(tz, MT_UNIT_DAY, noon * 1000000, start, end);
}

int64_t mt_visitors_keep_from(const struct mt_tz *tz, int64_t now_us)
{
    int64_t start = 0, end;
    if (day_window(tz, local_day(tz, now_us) - (MT_VISITORS_DAYS - 1), &start, &end))
        return now_us - (int64_t)MT_VISITORS_DAYS * DAY_US;
    return start;
}

#define MAX_HOURS 26

struct hour {
    int64_t start, end;
    unsigned hh, occ; /* wall-clock hour, and which time it shows (the repeated hour) */
    int32_t offset;
};

static size_t day_hours(const struct mt_tz *tz, int64_t start, int64_t end, struct hour *h)
{
    size_t n = 0;
    for (int64_t t = start; t < end && n < MAX_HOURS; n++) {
        struct mt_localtime lt;
        int64_t s, e;
        if (mt_win_of(tz, MT_UNIT_HOUR, t, &s, &e))
            break;
        mt_tz_localtime(tz, mt_floordiv(s, 1000000), &lt);
        h[n] = (struct hour){s, e < end ? e : end, lt.hour, 0, lt.offset};
        if (n && h[n - 1].hh == lt.hour)
            h[n].occ = h[n - 1].occ + 1;
        t = e;
    }
    return n;
}

/* A column of the chart: an hour of the day, of the week-ago day, or both
 * (-1 = that day has no such hour: the spring change). */
struct column {
    int a, b;
};

static size_t merge_columns(const struct hour *ha, size_t na, const struct hour *hb, size_t nb,
                            struct column *col)
{
    size_t i = 0, j = 0, n = 0;
    while (i < na || j < nb) {
        unsigned ka = i < na ? ha[i].hh * 8 + ha[i].occ : ~0u;
        unsigned kb = j < nb ? hb[j].hh * 8 + hb[j].occ : ~0u;
        col[n].a = ka <= kb ? (int)i++ : -1;
        col[n].b = kb <= ka ? (int)j++ : -1;
        n++;
    }
    return n;
}

/* lock held: the sum of a series over [s, e) */
static double series_sum(struct mt_visitors *v, uint32_t series, int64_t s, int64_t e)
{
    double sum = 0;
    for (int64_t q = mt_floordiv(s, QUARTER_US); q * QUARTER_US < e; q++) {
        struct cell *c = cell_find(v, series, q);
        if (c->series)
            sum += c->sum;
    }
    return sum;
}

struct group {
    const char *site, *door; /* door NULL: the site's total */
    double a[2 * MAX_HOURS], b[2 * MAX_HOURS];
    double ta, tb;
};

static int cmp_group(const void *x, const void *y)
{
    const struct group *g = x, *h = y;
    int c = strcmp(g->site, h->site);
    if (c)
        return c;
    if (!g->door || !h->door)
        return g->door ? 1 : h->door ? -1 : 0;
    return strcmp(g->door, h->door);
}

static struct group *group_find(struct group *g, size_t *n, const char *site, const char *door)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp(g[i].site, site) == 0 &&
            ((!door && !g[i].door) || (door && g[i].door && strcmp(g[i].door, door) == 0)))
            return &g[i];
    memset(&g[*n], 0, sizeof(g[*n]));
    g[*n].site = site;
    g[*n].door = door;
    return &g[(*n)++];
}

struct day {
    int64_t days, start, end;
    struct hour h[MAX_HOURS];
    size_t nh;
    bool kept;
};

static void add_values(struct mt_visitors *v, uint32_t series, const struct day *d,
                       const struct column *col, size_t ncol, bool first, int64_t now_us,
                       struct group *g, struct group *site)
{
    for (size_t k = 0; k < ncol; k++) {
        int idx = first ? col[k].a : col[k].b;
        if (idx < 0 || !d->kept || d->h[idx].start > now_us)
            continue;
        double s = series_sum(v, series, d->h[idx].start, d->h[idx].end);
        double *gv = first ? g->a : g->b, *sv = first ? site->a : site->b;
        gv[k] += s;
        sv[k] += s;
        if (first) {
            g->ta += s;
            site->ta += s;
        } else {
            g->tb += s;
            site->tb += s;
        }
    }
}

static void json_values(struct mt_buf *b, const char *key, const double *vals,
                        const struct day *d, const struct column *col, size_t ncol, bool first,
                        int64_t now_us)
{
    mt_buf_printf(b, "\"%s\":[", key);
    for (size_t k = 0; k < ncol; k++) {
        int idx = first ? col[k].a : col[k].b;
        if (k)
            mt_buf_addc(b, ',');
        if (idx < 0 || !d->kept || d->h[idx].start > now_us)
            mt_buf_adds(b, "null");
        else
            mt_buf_double(b, vals[k]);
    }
    mt_buf_addc(b, ']');
}

static void json_day(struct mt_buf *b, const char *key, const struct day *d)
{
    int64_t y;
    unsigned m, dd;
    mt_civil_from_days(d->days, &y, &m, &dd);
    mt_buf_printf(b, "\"%s\":{\"date\":\"%04lld-%02u-%02u\",\"hours\":%zu,\"kept\":%s,", key,
                  (long long)y, m, dd, d->nh, d->kept ? "true" : "false");
    char s[40], e[40];
    mt_fmt_utc(d->start, s, sizeof(s), 0);
    mt_fmt_utc(d->end, e, sizeof(e), 0);
    mt_buf_printf(b, "\"start\":\"%s\",\"end\":\"%s\"}", s, e);
}

static void json_columns(struct mt_buf *b, const struct day *da, const struct day *db,
                         const struct column *col, size_t ncol)
{
    mt_buf_adds(b, "\"columns\":[");
    for (size_t k = 0; k < ncol; k++) {
        const struct hour *h = col[k].a >= 0 ? &da->h[col[k].a] : &db->h[col[k].b];
        bool repeated = (col[k].a >= 0 && (da->h[col[k].a].occ ||
                                           (col[k].a + 1 < (int)da->nh &&
                                            da->h[col[k].a + 1].hh == h->hh))) ||
                        (col[k].b >= 0 && (db->h[col[k].b].occ ||
                                           (col[k].b + 1 < (int)db->nh &&
                                            db->h[col[k].b + 1].hh == h->hh)));
        mt_buf_printf(b, "%s{\"label\":\"%02u", k ? "," : "", h->hh);
        if (repeated) /* the autumn change shows 03 twice: say which */
            mt_buf_printf(b, "%+d", h->offset / 3600);
        mt_buf_adds(b, "\"");
        for (int w = 0; w < 2; w++) {
            int idx = w ? col[k].b : col[k].a;
            const struct day *d = w ? db : da;
            if (idx < 0) {
                mt_buf_printf(b, ",\"%s\":null", w ? "week_ago_start" : "start");
                continue;
            }
            char s[40];
            mt_fmt_utc(d->h[idx].start, s, sizeof(s), 0);
            mt_buf_printf(b, ",\"%s\":\"%s\"", w ? "week_ago_start" : "start", s);
        }
        mt_buf_addc(b, '}');
    }
    mt_buf_addc(b, ']');
}

static int parse_day(const char *s, int64_t *days)
{
    int y, m, d, n = 0;
    if (sscanf(s, "%4d-%2d-%2d%n", &y, &m, &d, &n) != 3 || s[n] || n != 10 || m < 1 || m > 12 ||
        d < 1 || d > 31 || y < 1970)
        return -EINVAL;
    *days = mt_days_from_civil(y, (unsigned)m, (unsigned)d);
    int64_t yy;
    unsigned mm, dd;
    mt_civil_from_days(*days, &yy, &mm, &dd);
    return mm == (unsigned)m ? 0 : -EINVAL; /* 2026-02-30 */
}

static int make_day(const struct mt_tz *tz, int64_t days, int64_t keep_from, struct day *d)
{
    d->days = days;
    if (day_window(tz, days, &d->start, &d->end))
        return -ERANGE;
    d->nh = day_hours(tz, d->start, d->end, d->h);
    d->kept = d->start >= keep_from;
    return 0;
}

/* lock held */
static int day_json(struct mt_visitors *v, const struct mt_tz *tz, const char *day,
                    int64_t now_us, struct mt_buf *out, char *err, size_t errlen)
{
    struct day da, db;
    struct column col[2 * MAX_HOURS];
    int64_t days;

    if (!day) {
        days = local_day(tz, now_us);
    } else if (parse_day(day, &days)) {
        snprintf(err, errlen, "day '%s' is not a date YYYY-MM-DD", day);
        return -EINVAL;
    }
    if (make_day(tz, days, v->keep_from, &da) || make_day(tz, days - 7, v->keep_from, &db)) {
        snprintf(err, errlen, "day '%s' is out of range", day ? day : "today");
        return -EINVAL;
    }
    if (da.start > now_us) {
        snprintf(err, errlen, "day %s has not begun", day ? day : "today");
        return -ERANGE;
    }
    if (!da.kept || !db.kept) {
        snprintf(err, errlen, "day %s is not in the aggregate", day ? day : "today");
        return -EAGAIN;
    }
    size_t ncol = merge_columns(da.h, da.nh, db.h, db.nh, col);
    struct group *g = calloc(2 * v->nseen + 1, sizeof(*g));
    size_t ng = 0;
    if (!g)
        return -ENOMEM;
    for (size_t i = 0; i < v->nseen; i++) {
        const struct mt_series_info *si = mt_series_get(v->reg, v->seen[i]);
        struct group *site = group_find(g, &ng, si->site, NULL);
        struct group *door = group_find(g, &ng, si->site, si->device);
        add_values(v, v->seen[i], &da, col, ncol, true, now_us, door, site);
        add_values(v, v->seen[i], &db, col, ncol, false, now_us, door, site);
    }
    qsort(g, ng, sizeof(*g), cmp_group);

    char now[40];
    mt_fmt_utc(now_us, now, sizeof(now), 0);
    mt_buf_printf(out, "{\"timezone\":\"%s\",\"now\":\"%s\",\"complete\":%s,",
                  mt_tz_name(tz), now, v->loaded ? "true" : "false");
    json_day(out, "day", &da);
    mt_buf_addc(out, ',');
    json_day(out, "week_ago", &db);
    mt_buf_addc(out, ',');
    json_columns(out, &da, &db, col, ncol);
    mt_buf_adds(out, ",\"sites\":[");
    for (size_t i = 0; i < ng; i++) {
        const struct group *x = &g[i];
        if (!x->door) {
            mt_buf_printf(out, "%s{\"site\":", i ? "]}," : "");
            mt_buf_json_str(out, x->site);
            mt_buf_adds(out, ",\"total\":{");
        } else {
            mt_buf_adds(out, g[i - 1].door ? ",{\"door\":" : "{\"door\":");
            mt_buf_json_str(out, x->door);
            mt_buf_addc(out, ',');
        }
        json_values(out, "day", x->a, &da, col, ncol, true, now_us);
        mt_buf_addc(out, ',');
        json_values(out, "week_ago", x->b, &db, col, ncol, false, now_us);
        mt_buf_adds(out, ",\"day_total\":");
        mt_buf_double(out, x->ta);
        mt_buf_adds(out, ",\"week_ago_total\":");
        if (db.kept)
            mt_buf_double(out, x->tb);
        else
            mt_buf_adds(out, "null");
        mt_buf_adds(out, x->door ? "}" : "},\"doors\":[");
    }
    mt_buf_adds(out, ng ? "]}]}" : "]}");
    free(g);
    return 0;
}

int mt_visitors_span(const struct mt_tz *tz, const char *day, int64_t now_us, int64_t *from,
                     int64_t *to)
{
    struct day da, db;
    int64_t days;

    if (!day)
        days = local_day(tz, now_us);
    else if (parse_day(day, &days))
        return -EINVAL;
    if (make_day(tz, days, 0, &da) || make_day(tz, days - 7, 0, &db))
        return -EINVAL;
    *from = db.start;
    *to = da.end;
    return 0;
}

int mt_visitors_day_json(struct mt_visitors *v, const struct mt_tz *tz, const char *day,
                         int64_t now_us, struct mt_buf *out, char *err, size_t errlen)
{
    pthread_mutex_lock(&v->lock);
    int rc = day_json(v, tz, day, now_us, out, err, errlen);
    pthread_mutex_unlock(&v->lock);
    return rc;
}
