#include "encode.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <mittari/mittari.h>

const char *mt_kind_name(int kind)
{
    switch (kind) {
    case MITTARI_KIND_DELTA:
    case MITTARI_KIND_CUMULATIVE: return "delta"; /* counters are stored as deltas */
    case MITTARI_KIND_GAUGE: return "gauge";
    case MITTARI_KIND_EVENT: return "event";
    }
    return "unknown";
}

void mt_encoder_init(struct mt_encoder *e, int fmt, int64_t gen)
{
    memset(e, 0, sizeof(*e)); /* cache ids 0: empty */
    e->fmt = fmt;
    e->gen = gen;
    e->gen_of = INT64_MIN; /* gen_text not made yet */
    e->sec = INT64_MIN;
}

int mt_encode_header(struct mt_encoder *e, struct mt_buf *b)
{
    if (e->fmt != MT_FMT_CSV)
        return 0;
    return mt_buf_adds(
        b, "seq,gen,ts,site,device,metric,value,unit,kind,subject,tags,revision,suppressed_below,"
           "origin\n");
}

/* "2026-11-25T15:25:44.123456Z" (at most MAX_TS bytes) at w, with the date
 * part cached per second; returns the end. */
enum { MAX_TS = 64 + 8 };
static char *put_ts(struct mt_encoder *e, char *w, int64_t us)
{
    int64_t sec = us / 1000000, frac = us % 1000000;

    if (frac < 0) {
        frac += 1000000;
        sec--;
    }
    if (sec != e->sec) {
        struct tm tm;
        time_t t = (time_t)sec;
        gmtime_r(&t, &tm);
        int n = snprintf(e->sec_text, sizeof(e->sec_text), "%04d-%02d-%02dT%02d:%02d:%02d",
                         tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                         tm.tm_sec);
        e->sec_len = n < 0 ? 0 : (size_t)n < sizeof(e->sec_text) ? (size_t)n : sizeof(e->sec_text) - 1;
        e->sec = sec;
    }
    memcpy(w, e->sec_text, e->sec_len);
    w += e->sec_len;
    *w++ = '.';
    for (int i = 6; i >= 1; i--) {
        w[i - 1] = (char)('0' + frac % 10);
        frac /= 10;
    }
    w += 6;
    *w++ = 'Z';
    return w;
}

static int add_ts(struct mt_encoder *e, struct mt_buf *b, int64_t us)
{
    if (mt_buf_reserve(b, MAX_TS))
        return -ENOMEM;
    char *w = put_ts(e, b->p + b->len, us);
    b->len = (size_t)(w - b->p);
    b->p[b->len] = 0;
    return 0;
}

/* The generation's text, made when it changes. */
static void gen_text(struct mt_encoder *e)
{
    if (e->gen_of != e->gen) {
        e->gen_len = mt_fmt_i64(e->gen_text, e->gen);
        e->gen_of = e->gen;
    }
}

#define PUT_LIT(w, lit) (memcpy((w), (lit), sizeof(lit) - 1), (w) + sizeof(lit) - 1)

/* The series' constant text: the fields before the value (head) and
 * between value and subject (mid). */
static void make_series_text(int fmt, const struct mt_series_info *s, struct mt_buf *h,
                             struct mt_buf *m)
{
    if (fmt == MT_FMT_CSV) {
        mt_buf_addc(h, ',');
        mt_buf_csv_str(h, s->site);
        mt_buf_addc(h, ',');
        mt_buf_csv_str(h, s->device);
        mt_buf_addc(h, ',');
        mt_buf_csv_str(h, s->metric);
        mt_buf_addc(h, ',');
        mt_buf_addc(m, ',');
        mt_buf_csv_str(m, s->unit);
        mt_buf_addc(m, ',');
        mt_buf_adds(m, mt_kind_name(s->kind));
        mt_buf_addc(m, ',');
        return;
    }
    mt_buf_adds(h, "\",\"site\":");
    mt_buf_json_str(h, s->site);
    mt_buf_adds(h, ",\"device\":");
    mt_buf_json_str(h, s->device);
    mt_buf_adds(h, ",\"metric\":");
    mt_buf_json_str(h, s->metric);
    mt_buf_adds(h, ",\"value\":");
    if (s->unit[0]) {
        mt_buf_adds(m, ",\"unit\":");
        mt_buf_json_str(m, s->unit);
    }
    mt_buf_adds(m, ",\"kind\":\"");
    mt_buf_adds(m, mt_kind_name(s->kind));
    mt_buf_addc(m, '"');
}

/* From the cache, or made and cached; NULL when it does not fit. */
static const struct mt_encode_cached *series_text(struct mt_encoder *e,
                                                  const struct mt_series_info *s)
{
    struct mt_encode_cached *c = &e->cache[s->id % MT_ENCODE_CACHE];
    struct mt_buf h = {0}, m = {0};
    const struct mt_encode_cached *r = NULL;

    if (s->id == 0)
        return NULL; /* not a registered series: never cached */
    if (c->id == s->id)
        return c;
    make_series_text(e->fmt, s, &h, &m);
    if (h.p && m.p && h.len < sizeof(c->head) && m.len < sizeof(c->mid)) {
        memcpy(c->head, h.p, h.len);
        memcpy(c->mid, m.p, m.len);
        c->head_len = (uint16_t)h.len;
        c->mid_len = (uint16_t)m.len;
        c->id = s->id;
        r = c;
    }
    mt_buf_free(&h);
    mt_buf_free(&m);
    return r;
}

struct text {
    const char *head, *mid;
    size_t head_len, mid_len;
};

static const struct mt_series_info unknown = {.site = "", .device = "", .metric = "",
                                              .unit = "", .tags = "", .origin = ""};

static int jsonl(struct mt_encoder *e, struct mt_buf *b, const struct mt_row *r,
                 const struct mt_series_info *s, const struct text *c)
{
    bool suppressed = r->flags & MT_RF_SUPPRESSED;

    /* the fields every record has, written into room made once */
    gen_text(e);
    if (mt_buf_reserve(b, 32 + MT_FMT_I64 + e->gen_len + MAX_TS + c->head_len + MT_FMT_DOUBLE +
                              c->mid_len))
        return -ENOMEM;
    char *w = b->p + b->len;
    w = PUT_LIT(w, "{\"seq\":");
    w += mt_fmt_i64(w, r->seq);
    w = PUT_LIT(w, ",\"gen\":");
    memcpy(w, e->gen_text, e->gen_len);
    w += e->gen_len;
    w = PUT_LIT(w, ",\"ts\":\"");
    w = put_ts(e, w, r->ts);
    memcpy(w, c->head, c->head_len);
    w += c->head_len;
    if (suppressed)
        w = PUT_LIT(w, "null"); /* the figure never leaves the site */
    else
        w += mt_fmt_double(w, r->value);
    memcpy(w, c->mid, c->mid_len);
    w += c->mid_len;
    b->len = (size_t)(w - b->p);
    b->p[b->len] = 0;

    int rc = 0;
    if (r->subject[0]) {
        rc |= mt_buf_adds(b, ",\"subject\":");
        rc |= mt_buf_json_str(b, r->subject);
    }
    if (s->tags[0]) {
        rc |= mt_buf_adds(b, ",\"tags\":");
        rc |= mt_buf_adds(b, s->tags); /* canonical JSON object, built by the agent */
    }
    if (MT_RF_REVISION(r->flags)) {
        rc |= mt_buf_adds(b, ",\"revision\":");
        rc |= mt_buf_i64(b, MT_RF_REVISION(r->flags));
    }
    if (suppressed) {
        rc |= mt_buf_adds(b, ",\"suppressed_below\":");
        rc |= mt_buf_i64(b, r->min_count);
    }
    if (s->origin && s->origin[0]) {
        rc |= mt_buf_adds(b, ",\"origin\":");
        rc |= mt_buf_json_str(b, s->origin);
    }
    rc |= mt_buf_adds(b, "}\n");
    return rc ? -ENOMEM : 0;
}

static int csv(struct mt_encoder *e, struct mt_buf *b, const struct mt_row *r,
               const struct mt_series_info *s, const struct text *c)
{
    bool suppressed = r->flags & MT_RF_SUPPRESSED;
    gen_text(e);
    int rc = mt_buf_i64(b, r->seq);
    rc |= mt_buf_addc(b, ',');
    rc |= mt_buf_add(b, e->gen_text, e->gen_len);
    rc |= mt_buf_addc(b, ',');
    rc |= add_ts(e, b, r->ts);
    rc |= mt_buf_add(b, c->head, c->head_len);
    if (!suppressed)
        rc |= mt_buf_double(b, r->value);
    rc |= mt_buf_add(b, c->mid, c->mid_len);
    rc |= mt_buf_csv_str(b, r->subject);
    rc |= mt_buf_addc(b, ',');
    rc |= mt_buf_csv_str(b, s->tags);
    rc |= mt_buf_addc(b, ',');
    rc |= mt_buf_i64(b, MT_RF_REVISION(r->flags));
    rc |= mt_buf_addc(b, ',');
    if (suppressed)
        rc |= mt_buf_i64(b, r->min_count);
    rc |= mt_buf_addc(b, ',');
    rc |= mt_buf_csv_str(b, s->origin ? s->origin : "");
    rc |= mt_buf_addc(b, '\n');
    return rc ? -ENOMEM : 0;
}

int mt_encode_row(struct mt_encoder *e, struct mt_buf *b, const struct mt_row *r,
                  const struct mt_series_info *s)
{
    size_t len = b->len;
    struct mt_buf h = {0}, m = {0};
    struct text t;
    int rc;

    if (!s)
        s = &unknown;
    const struct mt_encode_cached *c = series_text(e, s);
    if (c) {
        t = (struct text){c->head, c->mid, c->head_len, c->mid_len};
    } else {
        /* unregistered, or longer than the cache holds: made for this row */
        make_series_text(e->fmt, s, &h, &m);
        if (!h.p || !m.p) {
            mt_buf_free(&h);
            mt_buf_free(&m);
            return -ENOMEM;
        }
        t = (struct text){h.p, m.p, h.len, m.len};
    }
    rc = e->fmt == MT_FMT_CSV ? csv(e, b, r, s, &t) : jsonl(e, b, r, s, &t);
    mt_buf_free(&h);
    mt_buf_free(&m);
    if (rc && b->p) {
        b->len = len; /* no half record */
        b->p[len] = 0;
    }
    return rc;
}

int mt_encode_batch(struct mt_encoder *e, struct mt_buf *b, int how,
                    const struct mt_batch_head *h, const struct mt_row *rows, size_t n,
                    const struct mt_series_reg *reg)
{
    int rc = 0;

    e->fmt = MT_FMT_JSONL;
    e->gen = h->generation;
    if (how == MT_BATCH_JSON) {
        rc |= mt_buf_adds(b, "{\"agent_id\":");
        rc |= mt_buf_json_str(b, h->agent_id);
        rc |= mt_buf_adds(b, ",\"generation\":");
        rc |= mt_buf_i64(b, h->generation);
        rc |= mt_buf_adds(b, ",\"output\":");
        rc |= mt_buf_json_str(b, h->output);
        rc |= mt_buf_adds(b, ",\"key\":");
        rc |= mt_buf_json_str(b, h->key);
        rc |= mt_buf_adds(b, ",\"first_seq\":");
        rc |= mt_buf_i64(b, h->first_seq);
        rc |= mt_buf_adds(b, ",\"last_seq\":");
        rc |= mt_buf_i64(b, h->last_seq);
        rc |= mt_buf_adds(b, ",\"count\":");
        rc |= mt_buf_i64(b, (int64_t)h->count);
        rc |= mt_buf_adds(b, ",\"readings\":[");
        if (rc)
            return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        if (mt_encode_row(e, b, &rows[i], mt_series_get(reg, rows[i].series)))
            return -ENOMEM;
        if (how == MT_BATCH_JSON)
            b->p[b->len - 1] = i + 1 < n ? ',' : ']'; /* the record's newline */
    }
    if (how == MT_BATCH_JSON) {
        if (n == 0)
            rc |= mt_buf_addc(b, ']');
        rc |= mt_buf_adds(b, "}");
    }
    return rc ? -ENOMEM : 0;
}
