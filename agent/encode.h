/*
 * encode: one reading -> one JSON Lines record or one CSV row; a batch ->
 * one JSON document or NDJSON lines. Shared by the file, http and mqtt
 * outputs and the query command so all speak the same documented format
 * (docs/formats.md, docs/outputs/http.md). Pure; any thread; one encoder
 * per thread.
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
    int64_t gen_of;     /* cache: the generation gen_text is of */
    char gen_text[24];
    size_t gen_len;
    int64_t sec;        /* cache: the second last formatted */
    char sec_text[64];  /* "2026-11-25T15:25:44" */
    size_t sec_len;
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

/* A batch's description, written before its readings. */
struct mt_batch_head {
    const char *agent_id, *output, *key;
    int64_t generation, first_seq, last_seq;
    size_t count;
};
/* JSON: {"agent_id":..,"generation":..,"output":..,"key":..,"first_seq":..,
 * "last_seq":..,"count":N,"readings":[record,...]}; NDJSON: the records, one
 * per line (the description goes in headers). rows[i] of series reg; each
 * row passes keep (NULL: all). Appends to b. */
enum { MT_BATCH_JSON = 0, MT_BATCH_NDJSON = 1 };
int mt_encode_batch(struct mt_encoder *e, struct mt_buf *b, int how,
                    const struct mt_batch_head *h, const struct mt_row *rows, size_t n,
                    const struct mt_series_reg *reg);

#endif
