/*
 * output: the consumer side of the log. An output instance owns a durable
 * cursor, a reading connection and one batch in flight at a time: it reads
 * the next rows after its cursor, hands them to its type's deliver(), and
 * advances the cursor (committed by the writer with its next batch) only
 * when deliver() acknowledged them. Transient failures retry with capped
 * exponential backoff and jitter (honouring a retry-after); permanent ones
 * park the batch (recorded in the log, reported) and move on, never spin.
 *
 * Types are built in (outputs/). Blocking types (file) run open() and
 * deliver() on a libuv worker thread; everything else here runs on the
 * loop thread and never blocks it.
 */
#ifndef MT_OUTPUT_H
#define MT_OUTPUT_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include <mittari/mittari.h>

#include "log.h"
#include "series.h"
#include "writer.h"

struct mt_batch {
    int64_t first_seq, last_seq;
    int64_t generation; /* of the log: (agent, generation, seq) names one reading */
    size_t n;
    const struct mt_row *rows;
    const struct mt_series_reg *series;
    const char *agent_id;
    const char *key; /* idempotency key: agent/generation/output/first-last */
};

/* What a destination already holds: its newest reading's seq, time and log
 * generation (0 = unknown), as read back by a type's open(). */
struct mt_have {
    int64_t seq, ts, gen;
};

struct mt_deliver_result {
    int64_t retry_after_ms; /* > 0: wait at least this long before retrying */
    char error[256];        /* why it failed, for the log */
};

struct mt_output_type {
    const char *name;
    const char *description;
    const struct mittari_option *options;
    size_t config_size;
    /* Loop thread. Allocates state; no I/O yet. */
    int (*create)(const void *conf, const char *instance, void **state, char *err, size_t errlen);
    /* Worker thread, once before the first batch: the newest reading the
     * destination already holds (zeros = none or unknown), so a restart
     * after a crash does not write a reading twice. The framework trusts it
     * only when it is this log's (same generation; for a destination written
     * before generations, the same seq and ts). NULL = unknown. 0, -EAGAIN
     * (try later) or another error. */
    int (*open)(void *state, struct mt_have *have, struct mt_deliver_result *res);
    /* Worker thread. 0 = acknowledged; -EAGAIN = transient; other negative =
     * permanent: the batch is parked. */
    int (*deliver)(void *state, const struct mt_batch *b, struct mt_deliver_result *res);
    /* Loop thread, no work in flight. */
    void (*destroy)(void *state);
};

extern const struct mt_output_type mt_output_file;
/* NULL-terminated list of built-in output types */
extern const struct mt_output_type *const mt_output_types[];
const struct mt_output_type *mt_output_type_find(const char *name);

/* Options every output has, whatever its type. */
struct mt_output_common {
    int64_t batch_size;
    int64_t retry_min_ms;
    int64_t retry_max_ms;
};
extern const struct mittari_option mt_output_common_options[];

struct mt_output_env {
    uv_loop_t *loop;
    struct mt_writer *writer;
    struct mt_series_reg *series;
    const char *db_path;
    const char *agent_id;
};

struct mt_output_stats {
    uint64_t delivered, batches, retries, parked_batches, parked_readings, lost;
};

struct mt_output;

/* Loop thread. conf and common are borrowed until destroy. */
int mt_output_create(struct mt_output **out, const struct mt_output_env *env, const char *name,
                     const struct mt_output_type *type, const void *conf,
                     const struct mt_output_common *common, char *err, size_t errlen);
/* Loop thread: starts delivering; the first work on a worker opens the
 * reading connection and loads the durable cursor (a failure there is
 * retried like a failed delivery). */
void mt_output_start(struct mt_output *o);
/* Loop thread: new readings are committed up to seq. */
void mt_output_notify(struct mt_output *o, int64_t committed);
/* Delivered everything committed so far, nothing in flight. */
bool mt_output_drained(const struct mt_output *o);
bool mt_output_busy(const struct mt_output *o);
int64_t mt_output_cursor(const struct mt_output *o);
const char *mt_output_name(const struct mt_output *o);
const struct mt_output_stats *mt_output_stats(const struct mt_output *o);
/* Loop thread: stops retrying; frees itself (and calls type destroy) once no
 * work is in flight and its handles are closed, then calls done(arg, cursor)
 * with the cursor it reached: a batch acknowledged while it was closing
 * counts, so a replacement never sends it again. */
void mt_output_close(struct mt_output *o, void (*done)(void *arg, int64_t cursor), void *arg);
/* Loop thread, before start: deliver from after seq if the durable cursor
 * is behind it (a reload hands over the in-memory cursor). */
void mt_output_resume_after(struct mt_output *o, int64_t seq);

#endif
