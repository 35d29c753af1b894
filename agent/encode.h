/*
 * encode: one reading -> one JSON Lines record or one CSV row. Shared by the
 * file output and the query command so both speak the same documented
 * format (docs/formats.md). Pure; any thread; one encoder per thread.
 */
#ifndef MT_ENCODE_H
#define MT_ENCODE_H

#include "log.h"
#include "series.h"
#include "util.h"

enum { MT_FMT_JSONL = 0, MT_FMT_CSV = 1 };

/* The text of a series' fields is the same on every row: kept per series
 * id (direct-mapped), so a row costs its seq, time, value and subject. */
#define MT_ENCODE_CACHE 64
struct mt_encode_cached {
    uint32_t id; /* 0 = empty */
    uint16_t head_len, mid_len;
    char head[400]; /* JSONL: ,"site":..,"device":..,"metric":..,"value":   CSV: ,site,device,metric, */
    char mid[120];  /* JSONL: ,"unit":..,"kind":".."                         CSV: ,unit,kind, */
};

struct mt_encoder {
    int fmt;
    int64_t gen;        /* the log's generation, written with every row */
    int64_t sec;        /* cache: the second last formatted */
    char sec_text[64];  /* "2026-11-25T15:25:44" */
    struct mt_encode_cached cache[MT_ENCODE_CACHE];
};

/* gen: the generation of the log the rows come from (mt_log_generation). */
void mt_encoder_init(struct mt_encoder *e, int fmt, int64_t gen);
/* CSV header line ("" for JSON Lines). */
int mt_encode_header(struct mt_encoder *e, struct mt_buf *b);
/* s may be NULL (unknown series): fields are then empty. */
int mt_encode_row(struct mt_encoder *e, struct mt_buf *b, const struct mt_row *r,
                  const struct mt_series_info *s);
const char *mt_kind_name(int kind);

#endif
