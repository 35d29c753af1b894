#include "encode.h"

#include <errno.h>
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

void mt_encoder_init(struct mt_encoder *e, int fmt)
{
    memset(e, 0, sizeof(*e));
    e->fmt = fmt;
    e->sec = INT64_MIN;
}

int mt_encode_header(struct mt_encoder *e, struct mt_buf *b)
{
    if (e->fmt != MT_FMT_CSV)
        return 0;
    return mt_buf_adds(b, "seq,ts,site,device,metric,value,unit,kind,subject,tags\n");
}

/* "2026-11-25T15:25:44.123456Z" with the date part cached per second */
static int add_ts(struct mt_encoder *e, struct mt_buf *b, int64_t us)
{
    int64_t sec = us / 1000000, frac = us % 1000000;
    char tail[10];

    if (frac < 0) {
        frac += 1000000;
        sec--;
    }
    if (sec != e->sec) {
        struct tm tm;
        time_t t = (time_t)sec;
        gmtime_r(&t, &tm);
        snprintf(e->sec_text, sizeof(e->sec_text), "%04d-%02d-%02dT%02d:%02d:%02d",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        e->sec = sec;
    }
    tail[0] = '.';
    for (int i = 6; i >= 1; i--) {
        tail[i] = (char)('0' + frac % 10);
        frac /= 10;
    }
    tail[7] = 'Z';
    mt_buf_adds(b, e->sec_text);
    return mt_buf_add(b, tail, 8);
}

static int jsonl(struct mt_encoder *e, struct mt_buf *b, const struct mt_row *r,
                 const struct mt_series_info *s)
{
    mt_buf_adds(b, "{\"seq\":");
    mt_buf_i64(b, r->seq);
    mt_buf_adds(b, ",\"ts\":\"");
    add_ts(e, b, r->ts);
    mt_buf_adds(b, "\",\"site\":");
    mt_buf_json_str(b, s ? s->site : "");
    mt_buf_adds(b, ",\"device\":");
    mt_buf_json_str(b, s ? s->device : "");
    mt_buf_adds(b, ",\"metric\":");
    mt_buf_json_str(b, s ? s->metric : "");
    mt_buf_adds(b, ",\"value\":");
    mt_buf_double(b, r->value);
    if (s && s->unit[0]) {
        mt_buf_adds(b, ",\"unit\":");
        mt_buf_json_str(b, s->unit);
    }
    mt_buf_adds(b, ",\"kind\":\"");
    mt_buf_adds(b, mt_kind_name(s ? s->kind : 0));
    mt_buf_addc(b, '"');
    if (r->subject[0]) {
        mt_buf_adds(b, ",\"subject\":");
        mt_buf_json_str(b, r->subject);
    }
    if (s && s->tags[0]) {
        mt_buf_adds(b, ",\"tags\":");
        mt_buf_adds(b, s->tags); /* canonical JSON object, built by the agent */
    }
    return mt_buf_adds(b, "}\n");
}

static int csv(struct mt_encoder *e, struct mt_buf *b, const struct mt_row *r,
               const struct mt_series_info *s)
{
    mt_buf_i64(b, r->seq);
    mt_buf_addc(b, ',');
    add_ts(e, b, r->ts);
    mt_buf_addc(b, ',');
    mt_buf_csv_str(b, s ? s->site : "");
    mt_buf_addc(b, ',');
    mt_buf_csv_str(b, s ? s->device : "");
    mt_buf_addc(b, ',');
    mt_buf_csv_str(b, s ? s->metric : "");
    mt_buf_addc(b, ',');
    mt_buf_double(b, r->value);
    mt_buf_addc(b, ',');
    mt_buf_csv_str(b, s ? s->unit : "");
    mt_buf_addc(b, ',');
    mt_buf_adds(b, mt_kind_name(s ? s->kind : 0));
    mt_buf_addc(b, ',');
    mt_buf_csv_str(b, r->subject);
    mt_buf_addc(b, ',');
    mt_buf_csv_str(b, s ? s->tags : "");
    return mt_buf_addc(b, '\n');
}

int mt_encode_row(struct mt_encoder *e, struct mt_buf *b, const struct mt_row *r,
                  const struct mt_series_info *s)
{
    if (mt_buf_reserve(b, 256))
        return -ENOMEM;
    return e->fmt == MT_FMT_CSV ? csv(e, b, r, s) : jsonl(e, b, r, s);
}
