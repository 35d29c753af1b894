#include "output.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "diag.h"
#include "util.h"

#define COMPLAIN_US (300 * 1000000LL)

const struct mittari_option mt_output_common_options[] = {
    {.name = "batch_size", .type = MITTARI_OPT_INT, .def = "1000", .min = 1, .max = 100000,
     .offset = offsetof(struct mt_output_common, batch_size),
     .help = "Most readings sent in one batch."},
    {.name = "retry_min", .type = MITTARI_OPT_DURATION, .def = "1s", .min = 10, .max = 3600000,
     .offset = offsetof(struct mt_output_common, retry_min_ms),
     .help = "First wait after a failed delivery; doubles on each failure."},
    {.name = "retry_max", .type = MITTARI_OPT_DURATION, .def = "5m", .min = 10, .max = 86400000,
     .offset = offsetof(struct mt_output_common, retry_max_ms),
     .help = "Longest wait between retries."},
    {0},
};

const struct mt_output_type *const mt_output_types[] = {&mt_output_file, NULL};

const struct mt_output_type *mt_output_type_find(const char *name)
{
    for (size_t i = 0; mt_output_types[i]; i++)
        if (strcmp(mt_output_types[i]->name, name) == 0)
            return mt_output_types[i];
    return NULL;
}

struct mt_output {
    struct mt_output_env env;
    char *name;
    char module[80];
    const struct mt_output_type *type;
    const struct mt_output_common *common;
    void *state;
    struct mt_logdb *rdb;

    int64_t cursor;    /* delivered through (in memory) */
    int64_t committed; /* highest seq committed to the log */
    bool opened;
    bool busy;
    bool closing;
    bool retry_wait;
    unsigned attempts;
    uv_work_t work;
    uv_timer_t retry_timer;

    /* the batch in flight: written by the worker, read after it */
    int64_t target;
    struct mt_row *rows;
    size_t nrows;
    int64_t gen;      /* the log's generation, read with the cursor */
    int64_t have_seq;
    int64_t have_raw; /* what open() reported, before the checks */
    bool cursor_read;     /* the worker read the durable cursor into start_cursor */
    bool started;         /* the loop applied it */
    int64_t start_cursor;
    bool known; /* this log has a cursor for the output: it delivered from it before */
    int rc;
    bool read_failed;
    struct mt_deliver_result res;
    char key[160];

    struct mt_output_stats stats;
    struct mt_complain c_fail, c_lost;
    int64_t resume_after;
    void (*closed_cb)(void *arg, int64_t cursor);
    void *closed_arg;
};

static void kick(struct mt_output *o);

const char *mt_output_name(const struct mt_output *o)
{
    return o->name;
}

int64_t mt_output_cursor(const struct mt_output *o)
{
    return o->cursor;
}

const struct mt_output_stats *mt_output_stats(const struct mt_output *o)
{
    return &o->stats;
}

bool mt_output_busy(const struct mt_output *o)
{
    return o->busy;
}

bool mt_output_drained(const struct mt_output *o)
{
    return !o->busy && o->cursor >= o->committed;
}

int mt_output_create(struct mt_output **out, const struct mt_output_env *env, const char *name,
                     const struct mt_output_type *type, const void *conf,
                     const struct mt_output_common *common, char *err, size_t errlen)
{
    struct mt_output *o = calloc(1, sizeof(*o));
    int rc;

    *out = NULL;
    if (!o)
        return -ENOMEM;
    o->env = *env;
    o->name = strdup(name);
    o->type = type;
    o->common = common;
    o->rows = calloc((size_t)common->batch_size, sizeof(*o->rows));
    snprintf(o->module, sizeof(o->module), "output %s[%s]", type->name, name);
    if (!o->name || !o->rows) {
        rc = -ENOMEM;
        goto fail;
    }
    rc = type->create(conf, name, &o->state, err, errlen);
    if (rc)
        goto fail;
    uv_timer_init(env->loop, &o->retry_timer);
    o->retry_timer.data = o;
    o->work.data = o;
    *out = o;
    return 0;
fail:
    free(o->rows);
    free(o->name);
    free(o);
    return rc;
}

void mt_output_start(struct mt_output *o)
{
    /* the database is opened and the cursor read by the first work on a
     * worker: the loop does no file I/O, also not at a reload */
    o->committed = mt_writer_committed(o->env.writer);
    kick(o);
}

/* Worker: a damaged log (SQLITE_CORRUPT/NOTADB) is the writer's to act on:
 * it stops writing and the agent stops with exit 4 (issue 8 §2), instead
 * of this output retrying forever. */
static void report_damage(struct mt_output *o, int rc)
{
    char what[400];
    if (rc != MITTARI_ESTORAGE)
        return;
    snprintf(what, sizeof(what), "output %s: %s", o->name, o->res.error);
    mt_writer_fault(o->env.writer, rc, what);
}

/* Worker: the reading connection and the durable cursor, once. */
static int load_cursor(struct mt_output *o)
{
    char err[sizeof(o->res.error)];
    int64_t seq = 0;

    int rc = o->rdb ? 0 : mt_log_open(&o->rdb, o->env.db_path, MT_LOG_READER, err, sizeof(err));
    if (rc) {
        snprintf(o->res.error, sizeof(o->res.error), "%s", err);
        report_damage(o, rc);
        return -EAGAIN;
    }
    rc = mt_log_get_cursor(o->rdb, o->name, &seq);
    if (rc && rc != -ENOENT) {
        snprintf(o->res.error, sizeof(o->res.error), "cannot read the cursor: %s",
                 mt_log_errmsg(o->rdb));
        report_damage(o, rc);
        return -EAGAIN;
    }
    o->known = rc == 0;
    if (mt_log_generation(o->rdb, &o->gen)) {
        snprintf(o->res.error, sizeof(o->res.error), "cannot read the log's generation: %s",
                 mt_log_errmsg(o->rdb));
        return -EAGAIN;
    }
    o->start_cursor = seq > o->resume_after ? seq : o->resume_after;
    o->cursor_read = true;
    return 0;
}

/* ---- worker thread ---- */

/* What the destination holds counts only if it came from this log: a log
 * moved aside and started anew numbers from 1 again (with another
 * generation), and one that lost its last commits (sync: normal, power cut)
 * gives their numbers again. A destination written before generations
 * existed is checked by the reading's time: the reading with that seq must be
 * in this log with the same time, or, when retention already deleted it, the
 * log must know this output. */
static bool have_from_this_log(struct mt_output *o, const struct mt_have *have)
{
    struct mt_row row;
    size_t n = 0;

    if (o->have_seq > o->target)
        return false;
    if (have->gen)
        return have->gen == o->gen;
    if (mt_log_read(o->rdb, o->have_seq - 1, o->have_seq, 1, &row, &n) == 0 && n == 1)
        return have->ts != 0 && row.seq == o->have_seq && row.ts == have->ts;
    return o->known;
}

static void work_cb(uv_work_t *req)
{
    struct mt_output *o = req->data;
    size_t n = 0;

    o->rc = 0;
    o->nrows = 0;
    o->read_failed = false;
    memset(&o->res, 0, sizeof(o->res));
    if (!o->cursor_read && (o->rc = load_cursor(o)))
        return;
    if (!o->opened) {
        struct mt_have have = {0};
        if (o->type->open)
            o->rc = o->type->open(o->state, &have, &o->res);
        if (o->rc)
            return;
        o->opened = true;
        o->have_seq = o->have_raw = have.seq;
        if (o->have_seq > 0 && !have_from_this_log(o, &have))
            o->have_seq = 0;
    }
    /* the loop applies start_cursor after this first run */
    int64_t cursor = o->started ? o->cursor : o->start_cursor;
    int64_t after = cursor > o->have_seq ? cursor : o->have_seq;
    if (after >= o->target)
        return;
    int rc = mt_log_read(o->rdb, after, o->target, (size_t)o->common->batch_size, o->rows, &n);
    if (rc) {
        o->rc = -EAGAIN;
        o->read_failed = true;
        snprintf(o->res.error, sizeof(o->res.error), "cannot read the log: %s",
                 mt_log_errmsg(o->rdb));
        report_damage(o, rc);
        return;
    }
    o->nrows = n;
    if (n == 0)
        return;
    snprintf(o->key, sizeof(o->key), "%s/%" PRId64 "/%s/%" PRId64 "-%" PRId64, o->env.agent_id,
             o->gen, o->name, o->rows[0].seq, o->rows[n - 1].seq);
    struct mt_batch b = {
        .first_seq = o->rows[0].seq,
        .last_seq = o->rows[n - 1].seq,
        .generation = o->gen,
        .n = n,
        .rows = o->rows,
        .series = o->env.series,
        .agent_id = o->env.agent_id,
        .key = o->key,
    };
    o->rc = o->type->deliver(o->state, &b, &o->res);
}

/* ---- loop thread ---- */

static void advance(struct mt_output *o, int64_t seq)
{
    if (seq <= o->cursor)
        return;
    o->cursor = seq;
    mt_writer_cursor(o->env.writer, o->name, seq);
}

static void retry_cb(uv_timer_t *t)
{
    struct mt_output *o = t->data;
    o->retry_wait = false;
    kick(o);
}

static void schedule_retry(struct mt_output *o)
{
    int64_t delay = o->common->retry_min_ms;
    uint32_t rnd = 0;

    for (unsigned i = 0; i < o->attempts && delay < o->common->retry_max_ms; i++)
        delay *= 2;
    if (delay > o->common->retry_max_ms)
        delay = o->common->retry_max_ms;
    /* jitter: somewhere in [delay/2, delay], so many gateways do not retry in step */
    if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd))
        rnd = (uint32_t)mt_mono_us();
    delay = delay / 2 + (int64_t)(rnd % (uint32_t)(delay / 2 + 1));
    if (o->res.retry_after_ms > delay)
        delay = o->res.retry_after_ms;
    o->attempts++;
    o->stats.retries++;
    o->retry_wait = true;
    uv_timer_start(&o->retry_timer, retry_cb, (uint64_t)delay, 0);
}

static void finish_close(struct mt_output *o);

/* The first run on a worker read the durable cursor: apply it. */
static void apply_start(struct mt_output *o)
{
    if (!o->cursor_read || o->started)
        return;
    o->started = true;
    o->cursor = o->start_cursor;
    /* registers the consumer so retention keeps what it has not delivered */
    mt_writer_cursor(o->env.writer, o->name, o->cursor);
    mt_diag(MT_INFO, o->module, "starting after seq %" PRId64 " (%" PRId64 " readings waiting)",
            o->cursor, o->committed > o->cursor ? o->committed - o->cursor : 0);
}

/* What open() found at the destination. */
static void apply_have(struct mt_output *o)
{
    if (o->opened && o->have_raw && o->have_raw != o->have_seq) {
        mt_diag(MT_WARNING, o->module,
                "destination holds readings through seq %" PRId64 " that are not this log's "
                "(a new log, or one that lost commits); appending this log's readings after them",
                o->have_raw);
        o->have_raw = 0;
    }
    if (o->opened && o->have_seq > o->cursor) {
        mt_diag(MT_NOTICE, o->module,
                "destination already holds readings through seq %" PRId64
                " (cursor was %" PRId64 "); not writing them again",
                o->have_seq, o->cursor);
        advance(o, o->have_seq);
    }
}

/* The batch's outcome; true when the next step is a retry. Runs also while
 * the output is closing: a batch the destination acknowledged is never
 * forgotten, or a replacement would send it again. */
static bool apply_result(struct mt_output *o)
{
    if (o->rc == 0) {
        if (o->nrows == 0) {
            /* nothing left below target: rows there were dropped at the cap */
            if (o->target > o->cursor) {
                o->stats.lost += (uint64_t)(o->target - o->cursor);
                advance(o, o->target);
            }
        } else {
            int64_t first = o->rows[0].seq;
            if (first > o->cursor + 1) {
                o->stats.lost += (uint64_t)(first - o->cursor - 1);
                mt_complain(&o->c_lost, MT_WARNING, o->module, COMPLAIN_US,
                            "readings %" PRId64 "..%" PRId64
                            " were dropped at the log's size cap before delivery",
                            o->cursor + 1, first - 1);
            }
            o->stats.delivered += o->nrows;
            o->stats.batches++;
            advance(o, o->rows[o->nrows - 1].seq);
        }
        o->attempts = 0;
        mt_complain_clear(&o->c_fail, o->module, "delivering again");
        return false;
    }
    if (o->rc == -EAGAIN || o->nrows == 0) {
        mt_complain(&o->c_fail, MT_WARNING, o->module, COMPLAIN_US,
                    "delivery failed, will retry: %s",
                    o->res.error[0] ? o->res.error : mittari_strerror_own(o->rc) ? mittari_strerror_own(o->rc) : strerror(-o->rc));
        return true;
    }
    /* permanent: park the batch, say so, go on */
    int64_t first = o->rows[0].seq, last = o->rows[o->nrows - 1].seq;
    mt_diag(MT_ERR, o->module,
            "batch %" PRId64 "..%" PRId64 " refused permanently (%s); parked, moving on", first,
            last, o->res.error[0] ? o->res.error : "error");
    mt_writer_park(o->env.writer, o->name, first, last, o->res.error[0] ? o->res.error : "error");
    o->stats.parked_batches++;
    o->stats.parked_readings += o->nrows;
    advance(o, last);
    o->attempts = 0;
    return false;
}

static void after_cb(uv_work_t *req, int status)
{
    struct mt_output *o = req->data;

    (void)status;
    o->busy = false;
    apply_start(o);
    apply_have(o);
    bool retry = apply_result(o);
    if (o->closing) {
        finish_close(o);
        return;
    }
    if (retry)
        schedule_retry(o);
    else
        kick(o);
}

static void kick(struct mt_output *o)
{
    if (o->busy || o->closing || o->retry_wait)
        return;
    if (o->opened && o->cursor >= o->committed)
        return;
    o->target = o->committed;
    o->busy = true;
    int rc = uv_queue_work(o->env.loop, &o->work, work_cb, after_cb);
    if (rc) {
        o->busy = false;
        mt_diag(MT_ERR, o->module, "cannot queue work: %s", uv_strerror(rc));
    }
}

void mt_output_notify(struct mt_output *o, int64_t committed)
{
    if (committed > o->committed)
        o->committed = committed;
    kick(o);
}

static void timer_closed(uv_handle_t *h)
{
    struct mt_output *o = h->data;
    void (*cb)(void *, int64_t) = o->closed_cb;
    void *arg = o->closed_arg;
    int64_t cursor = o->cursor;

    if (o->type->destroy && o->state)
        o->type->destroy(o->state);
    mt_log_close(o->rdb);
    free(o->rows);
    free(o->name);
    free(o);
    if (cb)
        cb(arg, cursor);
}

static void finish_close(struct mt_output *o)
{
    uv_close((uv_handle_t *)&o->retry_timer, timer_closed);
}

void mt_output_resume_after(struct mt_output *o, int64_t seq)
{
    o->resume_after = seq;
}

void mt_output_close(struct mt_output *o, void (*done)(void *arg, int64_t cursor), void *arg)
{
    o->closed_cb = done;
    o->closed_arg = arg;
    o->closing = true;
    uv_timer_stop(&o->retry_timer);
    if (!o->busy)
        finish_close(o);
}
