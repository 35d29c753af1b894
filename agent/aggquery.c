#include "aggquery.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

#include "encode.h"
#include "hll.h"
#include "jsonin.h"
#include "log.h"
#include "query.h"
#include "ruleagg.h"
#include "rulewin.h"
#include "series.h"
#include "util.h"

/* ---- period words ---- */

int mt_query_period_word(const char *s, const struct mt_tz *tz, int64_t now_us, int64_t *us)
{
    int64_t start, end;
    int unit;
    int back;
    if (strcmp(s, "today") == 0)
        unit = MT_UNIT_DAY, back = 0;
    else if (strcmp(s, "yesterday") == 0)
        unit = MT_UNIT_DAY, back = 1;
    else if (strcmp(s, "this-month") == 0)
        unit = MT_UNIT_MONTH, back = 0;
    else if (strcmp(s, "last-month") == 0)
        unit = MT_UNIT_MONTH, back = 1;
    else
        return -EINVAL;
    if (mt_win_of(tz, unit, now_us, &start, &end))
        return -EINVAL;
    /* the one before: the window holding the instant just before this one */
    if (back && mt_win_of(tz, unit, start - 1, &start, &end))
        return -EINVAL;
    *us = start;
    return 0;
}

int mt_query_time(const char *s, const char *tzname, int64_t now_us, int64_t *us)
{
    struct mt_tz *tz = NULL;
    char err[200];
    int rc = -EINVAL;
    if (mt_tz_load(&tz, tzname, err, sizeof(err)) == 0)
        rc = mt_query_period_word(s, tz, now_us, us);
    mt_tz_free(tz);
    return rc == 0 ? 0 : mt_parse_time(s, now_us, us) ? -EINVAL : 0;
}

/* ---- tags ---- */

struct tagwant {
    const char *key;
    size_t klen;
    const char *value;
    bool found;
};

static int tag_member(void *arg, const char *key, const struct mt_json_val *v)
{
    struct tagwant *t = arg;
    if (strlen(key) == t->klen && memcmp(key, t->key, t->klen) == 0 && v->type == MT_JSON_STR &&
        strcmp(v->s, t->value) == 0)
        t->found = true;
    return 0;
}

bool mt_query_tags_match(const char *tags_json, const char *const *want, size_t n)
{
    char err[80];
    for (size_t i = 0; i < n; i++) {
        const char *eq = strchr(want[i], '=');
        if (!eq || !tags_json || !tags_json[0])
            return false;
        struct tagwant t = {want[i], (size_t)(eq - want[i]), eq + 1, false};
        mt_json_object(tags_json, strlen(tags_json), tag_member, &t, err, sizeof(err));
        if (!t.found)
            return false;
    }
    return true;
}

/* ---- the aggregation ---- */

struct cell {
    uint32_t series;
    const struct mt_series_info *s;
    int64_t start;
    uint64_t n;
    double sum, max;
    /* distinct: a set of the subjects' 64-bit hashes (exact for any
     * practical number of families), open addressing, 0 = free */
    uint64_t *subj;
    size_t nsubj, mask;
};

struct table {
    struct cell *v;
    size_t n, cap;
    size_t *idx; /* open addressing: index + 1 */
    size_t mask;
};

static uint64_t key_hash(uint32_t series, int64_t start)
{
    return mt_hash64(&start, sizeof(start)) ^ ((uint64_t)series * 0x9e3779b97f4a7c15ULL);
}

static int table_grow(struct table *t)
{
    size_t slots = t->idx ? (t->mask + 1) * 2 : 1024;
    size_t *idx = calloc(slots, sizeof(*idx));
    if (!idx)
        return -ENOMEM;
    for (size_t i = 0; i < t->n; i++) {
        size_t j = key_hash(t->v[i].series, t->v[i].start) & (slots - 1);
        while (idx[j])
            j = (j + 1) & (slots - 1);
        idx[j] = i + 1;
    }
    free(t->idx);
    t->idx = idx;
    t->mask = slots - 1;
    return 0;
}

static struct cell *table_get(struct table *t, uint32_t series, int64_t start)
{
    if ((!t->idx || (t->n + 1) * 2 > t->mask + 1) && table_grow(t))
        return NULL;
    size_t j = key_hash(series, start) & t->mask;
    while (t->idx[j]) {
        struct cell *c = &t->v[t->idx[j] - 1];
        if (c->series == series && c->start == start)
            return c;
        j = (j + 1) & t->mask;
    }
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 1024;
        struct cell *v = realloc(t->v, cap * sizeof(*v));
        if (!v)
            return NULL;
        t->v = v;
        t->cap = cap;
    }
    struct cell *c = &t->v[t->n];
    memset(c, 0, sizeof(*c));
    c->series = series;
    c->start = start;
    t->idx[j] = ++t->n;
    return c;
}

static void set_put(uint64_t *v, size_t mask, uint64_t h)
{
    size_t j = h & mask;
    while (v[j] && v[j] != h)
        j = (j + 1) & mask;
    v[j] = h;
}

static int add_subject(struct cell *c, const char *s)
{
    uint64_t h = mt_hash64(s, strlen(s));
    h = h ? h : 1;
    if (!c->subj || (c->nsubj + 1) * 2 > c->mask + 1) {
        size_t slots = c->subj ? (c->mask + 1) * 2 : 16;
        uint64_t *v = calloc(slots, sizeof(*v));
        if (!v)
            return -ENOMEM;
        for (size_t i = 0; c->subj && i <= c->mask; i++)
            if (c->subj[i])
                set_put(v, slots - 1, c->subj[i]);
        free(c->subj);
        c->subj = v;
        c->mask = slots - 1;
    }
    size_t j = h & c->mask;
    while (c->subj[j] && c->subj[j] != h)
        j = (j + 1) & c->mask;
    if (!c->subj[j]) {
        c->subj[j] = h;
        c->nsubj++;
    }
    return 0;
}

static int cell_cmp(const void *x, const void *y)
{
    const struct cell *a = x, *b = y;
    if (a->start != b->start)
        return a->start < b->start ? -1 : 1;
    const struct mt_series_info *sa = a->s, *sb = b->s;
    int c;
    if ((c = strcmp(sa->site, sb->site)) || (c = strcmp(sa->device, sb->device)) ||
        (c = strcmp(sa->metric, sb->metric)) || (c = strcmp(sa->tags, sb->tags)) ||
        (c = strcmp(sa->origin, sb->origin)))
        return c;
    return (a->series > b->series) - (a->series < b->series);
}

static double value_of(const struct cell *c, int agg)
{
    switch (agg) {
    case MT_AGG_COUNT: return (double)c->n;
    case MT_AGG_MEAN: return c->n ? c->sum / (double)c->n : 0;
    case MT_AGG_MAX: return c->max;
    case MT_AGG_DISTINCT: return (double)c->nsubj;
    default: return c->sum;
    }
}

static void print_cell(const struct mt_aggquery *q, const struct cell *c,
                       const struct mt_series_info *s, struct mt_buf *b)
{
    char label[64], start[40];
    mt_win_label(q->tz, q->every, c->start, label, sizeof(label));
    mt_fmt_utc(c->start, start, sizeof(start), 0);
    double v = value_of(c, q->agg);
    if (q->format == MT_FMT_CSV) {
        mt_buf_printf(b, "%s,%s,", label, start);
        mt_buf_csv_str(b, s->site);
        mt_buf_addc(b, ',');
        mt_buf_csv_str(b, s->device);
        mt_buf_addc(b, ',');
        mt_buf_csv_str(b, s->metric);
        mt_buf_addc(b, ',');
        mt_buf_csv_str(b, s->unit);
        mt_buf_addc(b, ',');
        mt_buf_csv_str(b, s->tags);
        mt_buf_addc(b, ',');
        mt_buf_csv_str(b, s->origin);
        mt_buf_printf(b, ",%s,", mt_agg_name(q->agg));
        mt_buf_double(b, v);
        mt_buf_printf(b, ",%llu\n", (unsigned long long)c->n);
        return;
    }
    mt_buf_adds(b, "{\"period\":");
    mt_buf_json_str(b, label);
    mt_buf_adds(b, ",\"start\":");
    mt_buf_json_str(b, start);
    mt_buf_adds(b, ",\"site\":");
    mt_buf_json_str(b, s->site);
    mt_buf_adds(b, ",\"device\":");
    mt_buf_json_str(b, s->device);
    mt_buf_adds(b, ",\"metric\":");
    mt_buf_json_str(b, s->metric);
    if (s->unit[0]) {
        mt_buf_adds(b, ",\"unit\":");
        mt_buf_json_str(b, s->unit);
    }
    if (s->tags[0]) {
        mt_buf_adds(b, ",\"tags\":");
        mt_buf_adds(b, s->tags);
    }
    if (s->origin[0]) {
        mt_buf_adds(b, ",\"origin\":");
        mt_buf_json_str(b, s->origin);
    }
    mt_buf_printf(b, ",\"agg\":\"%s\",\"value\":", mt_agg_name(q->agg));
    mt_buf_double(b, v);
    mt_buf_printf(b, ",\"readings\":%llu}\n", (unsigned long long)c->n);
}

static int scan(const struct mt_aggquery *q, struct mt_logdb *db, const struct mt_series_reg *reg,
                const unsigned char *match, uint32_t nmatch, struct table *t, uint64_t *skipped,
                char *err, size_t errlen)
{
    struct mt_row *rows = calloc(4096, sizeof(*rows));
    int64_t after = 0;
    size_t n = 0;
    int rc = 0;
    int64_t cs = 0, ce = 0; /* the window of the last reading: the next is likely in it */
    if (!rows)
        return -ENOMEM;
    do {
        rc = mt_log_scan(db, q->since, q->until, after, 4096, rows, &n);
        if (rc) {
            snprintf(err, errlen, "cannot read the log: %s", mt_log_errmsg(db));
            break;
        }
        for (size_t i = 0; i < n && !rc; i++) {
            const struct mt_row *r = &rows[i];
            after = r->seq;
            if (r->series >= nmatch || !match[r->series])
                continue;
            if (r->flags & MT_RF_SUPPRESSED) {
                (*skipped)++; /* its value is stored nowhere */
                continue;
            }
            if (r->ts < cs || r->ts >= ce) {
                if (mt_win_of(q->tz, q->every, r->ts, &cs, &ce)) {
                    (*skipped)++;
                    cs = ce = 0;
                    continue;
                }
            }
            struct cell *c = table_get(t, r->series, cs);
            if (!c) {
                rc = -ENOMEM;
                break;
            }
            c->s = mt_series_get(reg, r->series);
            if (!c->n || r->value > c->max)
                c->max = r->value;
            c->n++;
            c->sum += r->value;
            if (q->agg == MT_AGG_DISTINCT && r->subject[0])
                rc = add_subject(c, r->subject);
        }
    } while (!rc && n == 4096);
    free(rows);
    if (rc == -ENOMEM)
        snprintf(err, errlen, "out of memory");
    return rc;
}

int mt_aggquery_run(const struct mt_aggquery *q, FILE *out, char *err, size_t errlen)
{
    struct mt_logdb *db = NULL;
    struct mt_series_reg reg;
    struct table t = {0};
    struct mt_buf b = {0};
    unsigned char *match = NULL;
    uint64_t skipped = 0;
    int rc;

    mt_series_init(&reg);
    rc = mt_log_open(&db, q->db_path, MT_LOG_READONLY, err, errlen);
    if (rc)
        goto out;
    rc = mt_log_load_series(db, &reg);
    if (rc) {
        snprintf(err, errlen, "cannot read series: %s", mt_log_errmsg(db));
        goto out;
    }
    uint32_t nmatch = mt_series_count(&reg) + 1;
    match = calloc(nmatch, 1);
    if (!match) {
        rc = -ENOMEM;
        goto out;
    }
    for (uint32_t id = 1; id < nmatch; id++) {
        const struct mt_series_info *s = mt_series_get(&reg, id);
        char name[256];
        snprintf(name, sizeof(name), "%s/%s/%s", s->site, s->device, s->metric);
        match[id] = (!q->series_glob || fnmatch(q->series_glob, name, 0) == 0) &&
                    mt_query_tags_match(s->tags, q->tags, q->ntags);
    }
    rc = scan(q, db, &reg, match, nmatch, &t, &skipped, err, errlen);
    if (rc)
        goto out;
    if (t.n > 1)
        qsort(t.v, t.n, sizeof(*t.v), cell_cmp);
    if (q->format == MT_FMT_CSV)
        mt_buf_adds(&b, "period,start,site,device,metric,unit,tags,origin,agg,value,readings\n");
    for (size_t i = 0; i < t.n; i++) {
        print_cell(q, &t.v[i], t.v[i].s, &b);
        if (b.len > 65536 || i + 1 == t.n) {
            if (fwrite(b.p, 1, b.len, out) != b.len) {
                snprintf(err, errlen, "cannot write output");
                rc = -EIO;
                goto out;
            }
            b.len = 0;
        }
    }
    if (b.len)
        fwrite(b.p, 1, b.len, out);
    if (fflush(out)) {
        snprintf(err, errlen, "cannot write output");
        rc = -EIO;
    }
    if (skipped)
        fprintf(stderr, "mittari: %llu suppressed or out-of-range readings not counted\n",
                (unsigned long long)skipped);
out:
    for (size_t i = 0; i < t.n; i++)
        free(t.v[i].subj);
    free(t.v);
    free(t.idx);
    mt_buf_free(&b);
    free(match);
    mt_log_close(db);
    mt_series_free(&reg);
    return rc;
}
