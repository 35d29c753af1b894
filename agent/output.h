/*
 * output: the consumer side of the log. An output instance owns a durable
 * cursor, a reading connection and a pipeline of three slots (batches): a
 * reader that reads the next batch on a libuv worker, for asynchronous types
 * an encoder that makes the payload of the batch before it on another
 * worker, and a sender that hands one batch at a time, in seq order, to its
 * type. The cursor advances
 * (committed by the writer with its next batch) only when the type
 * acknowledged the batch. Transient failures retry with capped exponential
 * backoff and jitter (honouring a retry-after); permanent ones park the batch
 * (recorded in the log, reported) and, as configured, skip it or stop the
 * output. Nothing spins and nothing is dropped silently.
 *
 * Two kinds of types (outputs/; file is built in, the others are modules
 * loaded when configured: outmod.h):
 *  - blocking (file): open() and deliver() run on a libuv worker;
 *  - asynchronous (http, mqtt, postgresql): encode() runs on a worker (one
 *    call at a time) while the next batch is read and the previous one is
 *    being sent, send() runs on the loop and reports through a completion
 *    callback on the loop.
 * Everything else here runs on the loop thread and never blocks it.
 *
 * Life of an instance (enum mt_output_state; transitions in output.c):
 *
 *   NEW --start--> OPENING --opened--> RUNNING --close--> CLOSING --> freed
 *                     |  ^               |   ^
 *              failed |  | retry timer   |   | reload/restart only
 *                     v  |               v   |
 *                  OPEN_BACKOFF        STOPPED (on_permanent_error: stop)
 *
 *   OPENING      a worker opens the reading connection, loads the durable
 *                cursor and the output's state (its batch plan, its last
 *                error), then, for a blocking type, runs open() to learn
 *                what the destination already holds.
 *   RUNNING      the reader and the sender below work.
 *   STOPPED      a batch was refused permanently with on_permanent_error:
 *                stop; it is parked, the cursor stays before it, nothing
 *                more is read or sent until a restart or reload.
 *   CLOSING      close() was called: no new work starts; the reader's,
 *                the encoder's and the sender's work in flight finish (an
 *                acknowledgement that arrives now still counts; a
 *                permanent refusal parks the batch, and with stop the
 *                cursor stays before it), the type closes its handles,
 *                then the close callback gets the reached cursor.
 *
 * While RUNNING, the reader (enum mt_reader_state):
 *   R_IDLE       nothing to read (caught up), or the next slot is full;
 *   R_WAIT       batch_wait: fewer than batch_size readings wait; a timer
 *                (or batch_size readings, or a stop) ends the wait;
 *   R_PLAN       a new plan (the end of the next run of batches) is being
 *                committed to the log; reading starts when it is durable;
 *   R_BUSY       a worker reads the next batch;
 * the encoder (asynchronous types): idle, or a worker encodes the oldest
 * batch read (its slot waits for it, then is ready); and the sender (enum
 * mt_sender_state):
 *   S_IDLE       the oldest batch is not ready, or it is and is sent at once;
 *   S_BUSY       a batch is with the type (worker deliver() or loop send());
 *   S_BACKOFF    the last attempt failed transiently: the retry timer runs,
 *                then the same batch (same rows, same key) is sent again.
 *
 * Stable keys. A batch's idempotency key is AGENT/GENERATION/OUTPUT/FIRST-LAST.
 * For receivers that drop replays by key (http, mqtt), a batch re-sent after
 * a crash must have the boundaries it had before: before sending past the
 * end of its current plan, the output commits a new plan (end seq, batch
 * size, a hash of its match list) to the log and waits until it is durable;
 * batches are then cut deterministically: batch_size matching readings each,
 * the last one ending at the plan's end. After kill -9 the output re-cuts
 * the same batches from its cursor.
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
    const char *output; /* the output's name */
    const char *key;    /* idempotency key: agent/generation/output/first-last */
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

/* What an instance of a type is told at create (borrowed until destroy). */
struct mt_output_ctx {
    uv_loop_t *loop;
    const char *instance; /* the output's name */
    const char *agent_id;
    const char *module;   /* "output TYPE[NAME]", for log lines */
};

/* One asynchronous send. The type calls done(s, rc) exactly once, on the
 * loop thread, possibly from within send(): rc 0 = acknowledged, -EAGAIN =
 * transient (s->res says why and may carry retry_after_ms), another
 * negative = permanent. */
struct mt_send {
    const struct mt_batch *batch;
    void *payload; /* what encode() made */
    struct mt_deliver_result res;
    void (*done)(struct mt_send *s, int rc);
    void *owner; /* the framework's */
};

enum {
    MT_OUTPUT_ASYNC = 0x1,       /* encode()/send() instead of open()/deliver() */
    MT_OUTPUT_STABLE_KEYS = 0x2, /* receivers drop replays by key: plan batches durably */
};

struct mt_output_type {
    const char *name;
    const char *description;
    const struct mittari_option *options;
    size_t config_size;
    unsigned flags; /* MT_OUTPUT_* */
    /* Configuration check (also run by `mittari check`): what the option
     * table cannot say. NULL = none. 0 or -EINVAL with err. */
    int (*check)(const void *conf, char *err, size_t errlen);
    /* Loop thread. Allocates state; no blocking I/O. */
    int (*create)(const void *conf, const struct mt_output_ctx *ctx, void **state, char *err,
                  size_t errlen);

    /* Blocking types. */
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

    /* Asynchronous types. */
    /* Worker thread, one batch at a time: builds what send() transmits. It
     * may use only the parts of state no loop callback touches (its
     * encoder). On entry *payload is the payload of the batch before in the
     * same slot, done with (NULL at first): encode() fills it again, keeping
     * its buffers (a drain encodes megabytes a second; fresh buffers cost
     * page faults), or frees it and makes another. On return *payload is
     * the batch's, or on failure NULL or something free_payload takes.
     * *payload is freed with free_payload. 0, or -ENOMEM/-EINVAL
     * (permanent: the batch cannot be encoded). */
    int (*encode)(void *state, const struct mt_batch *b, void **payload,
                  struct mt_deliver_result *res);
    void (*free_payload)(void *state, void *payload);
    /* Loop thread: start sending s->payload; report through s->done. */
    void (*send)(void *state, struct mt_send *s);
    /* Loop thread: end the send in flight soon (a close); it still reports
     * through done (an acknowledgement that raced the abort counts). */
    void (*abort)(void *state);
    /* Loop thread, no send in flight: close handles, then done(arg) (may be
     * called from within). NULL: destroy() is enough. */
    void (*close)(void *state, void (*done)(void *arg), void *arg);

    /* Loop thread, no work in flight (after close, if any). */
    void (*destroy)(void *state);
};

/* built in */
extern const struct mt_output_type mt_output_file;
/* modules (outmod.h): each defined in its own output-TYPE.so */
extern const struct mt_output_type mt_output_http;
extern const struct mt_output_type mt_output_mqtt;
extern const struct mt_output_type mt_output_postgresql;
/* NULL-terminated list of built-in output types */
extern const struct mt_output_type *const mt_output_types[];
/* A built-in type; modules: mt_outmod_find (outmod.h). */
const struct mt_output_type *mt_output_type_find(const char *name);

enum { MT_PERMANENT_SKIP = 0, MT_PERMANENT_STOP = 1 };
enum { MT_MATCH_ALL = 0, MT_MATCH_RAW = 1, MT_MATCH_DERIVED = 2 };

/* One item of the `match` list: a reading passes when it passes any item. */
struct mt_match_item {
    const char *series;   /* glob over site/device/metric; NULL = any */
    const char *tags;     /* "key=glob,key=glob": each must match; NULL = any */
    int readings;         /* MT_MATCH_* */
};

/* Options every output has, whatever its type. */
struct mt_output_common {
    int64_t batch_size;
    int64_t batch_wait_ms;
    int64_t retry_min_ms;
    int64_t retry_max_ms;
    int on_permanent_error; /* MT_PERMANENT_* */
    struct mittari_list match; /* of struct mt_match_item; empty = every reading */
};
extern const struct mittari_option mt_output_common_options[];
/* What the option table cannot say (globs, tag lists). 0 or -EINVAL. */
int mt_output_common_check(const struct mt_output_common *c, char *err, size_t errlen);

/* The compiled match list: one byte per series id. Any thread once built. */
struct mt_matcher;
int mt_matcher_new(struct mt_matcher **out, const struct mittari_list *match);
void mt_matcher_free(struct mt_matcher *m);
/* Loads series up to the registry's count; a series matches when it passes
 * an item; flags decide raw/derived per reading. */
bool mt_matcher_row(struct mt_matcher *m, const struct mt_series_reg *reg, const struct mt_row *r);
/* A number that changes when the match list changes (for the plan). */
uint64_t mt_matcher_hash(const struct mt_matcher *m);

struct mt_output_env {
    uv_loop_t *loop;
    struct mt_writer *writer; /* NULL: replay mode (no cursor, no plan, no park records) */
    struct mt_series_reg *series;
    const char *db_path;
    const char *agent_id;
    /* replay mode: readings with since <= ts < until, seq order */
    int64_t replay_since, replay_until;
};

struct mt_output_stats {
    uint64_t delivered, batches, retries, parked_batches, parked_readings, lost;
};

enum mt_output_state {
    MT_OUT_NEW,
    MT_OUT_OPENING,
    MT_OUT_OPEN_BACKOFF,
    MT_OUT_RUNNING,
    MT_OUT_STOPPED,
    MT_OUT_CLOSING,
};
enum mt_reader_state { MT_R_IDLE, MT_R_WAIT, MT_R_PLAN, MT_R_BUSY };
enum mt_sender_state { MT_S_IDLE, MT_S_BUSY, MT_S_BACKOFF };

struct mt_output;
struct mt_output_status;

/* Loop thread. conf and common are borrowed until destroy. */
int mt_output_create(struct mt_output **out, const struct mt_output_env *env, const char *name,
                     const struct mt_output_type *type, const void *conf,
                     const struct mt_output_common *common, char *err, size_t errlen);
/* Loop thread: NEW -> OPENING. */
void mt_output_start(struct mt_output *o);
/* Loop thread: new readings are committed up to seq (also: a plan step may
 * have become durable). */
void mt_output_notify(struct mt_output *o, int64_t committed);
/* Loop thread: send what waits now, without waiting for batch_wait (a stop). */
void mt_output_flush(struct mt_output *o);
/* Delivered everything committed so far (or stopped), nothing in flight. */
bool mt_output_drained(const struct mt_output *o);
/* Work in flight (a worker job or a send). */
bool mt_output_busy(const struct mt_output *o);
/* A batch is with the type (S_BUSY). */
bool mt_output_sending(const struct mt_output *o);
int64_t mt_output_cursor(const struct mt_output *o);
const char *mt_output_name(const struct mt_output *o);
enum mt_output_state mt_output_state(const struct mt_output *o);
const struct mt_output_stats *mt_output_stats(const struct mt_output *o);
/* Loop thread: the output's last success and last error as it keeps them
 * (struct mt_output_status below; the status endpoint shows them). */
const struct mt_output_status *mt_output_last(const struct mt_output *o);
/* Loop thread: stops retrying; frees itself (and calls type destroy) once no
 * work is in flight and its handles are closed, then calls done(arg, cursor)
 * with the cursor it reached: a batch acknowledged while it was closing
 * counts, so a replacement never sends it again. */
void mt_output_close(struct mt_output *o, void (*done)(void *arg, int64_t cursor), void *arg);
/* Loop thread, before start: deliver from after seq if the durable cursor
 * is behind it (a reload hands over the in-memory cursor). */
void mt_output_resume_after(struct mt_output *o, int64_t seq);

/* The output's record in the log (consumer state), as `mittari outputs`
 * reads it. Times in µs since the epoch, 0 = never. */
struct mt_output_status {
    int64_t plan_start, plan_end, plan_size;
    uint64_t plan_match;
    int64_t ok_at, err_at;
    bool stopped;
    char error[256];
};
#define MT_OUTPUT_STATUS_VERSION 1
int mt_output_status_parse(const void *blob, size_t len, struct mt_output_status *st);
/* malloc'ed text; caller frees */
char *mt_output_status_format(const struct mt_output_status *st, size_t *len);

#endif
