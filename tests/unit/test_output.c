/* The output framework end to end: a real writer and log, outputs reading
 * their batches after a durable cursor, the file type and in-test types that
 * fail transiently or permanently. */
#include "testutil.h"

#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mittari/mittari.h>

#include "log.h"
#include "output.h"
#include "series.h"
#include "util.h"
#include "writer.h"

#define MAXOUT 2
#define MAXSEEN 256

/* An in-test output type: records what it is given, fails as told. */
struct sink {
    int slow_ms;        /* each delivery takes this long (on the worker) */
    int fail_first;     /* this many deliveries return -EAGAIN first */
    int64_t refuse_seq; /* a batch holding this seq is refused permanently */
    int calls;
    int64_t seen[MAXSEEN]; /* seqs of acknowledged batches, in order */
    int nseen;
    char keys[8][160];
    int nkeys;
    bool destroyed;
};

static int sink_create(const void *conf, const struct mt_output_ctx *ctx, void **state,
                       char *err, size_t errlen)
{
    (void)ctx;
    (void)err;
    (void)errlen;
    *state = (void *)conf;
    return 0;
}

static int sink_deliver(void *state, const struct mt_batch *b, struct mt_deliver_result *res)
{
    struct sink *s = state;
    if (s->slow_ms)
        usleep((useconds_t)s->slow_ms * 1000);
    if (s->nkeys < 8)
        snprintf(s->keys[s->nkeys++], sizeof(s->keys[0]), "%s", b->key);
    s->calls++;
    if (b->n == 0 || b->rows[0].seq != b->first_seq || b->rows[b->n - 1].seq != b->last_seq ||
        !b->series)
        return -EINVAL; /* a malformed batch: the test sees it parked */
    if (s->calls <= s->fail_first) {
        snprintf(res->error, sizeof(res->error), "busy, try later");
        return -EAGAIN;
    }
    if (s->refuse_seq >= b->first_seq && s->refuse_seq <= b->last_seq) {
        snprintf(res->error, sizeof(res->error), "rejected: bad payload");
        return -EPROTO;
    }
    for (size_t i = 0; i < b->n && s->nseen < MAXSEEN; i++)
        s->seen[s->nseen++] = b->rows[i].seq;
    return 0;
}

static void sink_destroy(void *state)
{
    struct sink *s = state;
    s->destroyed = true;
}

static const struct mt_output_type sink_type = {
    .name = "sink",
    .description = "test sink",
    .create = sink_create,
    .deliver = sink_deliver,
    .destroy = sink_destroy,
};

/* An in-test asynchronous type: encode() on the worker notes the batch,
 * send() answers from a timer on the loop (or holds the answer). */
struct asink {
    int fail_first;     /* this many sends fail transiently */
    int64_t refuse_seq; /* a batch holding this seq is refused permanently */
    bool hold;          /* never answer; abort answers */
    bool ack_on_abort;  /* the abort finds the answer was a success */
    int encode_ms;      /* each encode() takes this long (on a worker) */
    atomic_int encoding; /* an encode() runs now */
    /* seen on a worker, asserted on the loop (close_output): two encode()s
     * at once; the slot's payload changed under a running encode() */
    atomic_int overlap, payload_moved;
    bool refuse_while_encoding; /* a refusal is answered while an encode() runs */
    int waits;
    int sends, refills;
    atomic_int encodes; /* the worker counts, the loop looks */
    char keys[16][160];
    int nkeys;
    int64_t seen[MAXSEEN];
    int nseen;
    uv_timer_t timer;
    struct mt_send *pending;
    int pending_rc;
    bool closed;
};

static int asink_create(const void *conf, const struct mt_output_ctx *ctx, void **state,
                        char *err, size_t errlen)
{
    struct asink *a = (void *)conf;
    (void)err;
    (void)errlen;
    uv_timer_init(ctx->loop, &a->timer);
    a->timer.data = a;
    *state = a;
    return 0;
}

static int asink_encode(void *state, const struct mt_batch *b, void **payload,
                        struct mt_deliver_result *res)
{
    struct asink *a = state;
    void *given = *payload;
    (void)res;
    if (atomic_fetch_add(&a->encoding, 1) != 0)
        atomic_store(&a->overlap, 1);
    if (a->encode_ms)
        usleep((useconds_t)a->encode_ms * 1000);
    if (*payload != given) /* the loop released the slot meanwhile */
        atomic_store(&a->payload_moved, 1);
    atomic_fetch_sub(&a->encoding, 1);
    a->encodes++; /* one batch at a time: no race with the loop's fields */
    /* the slot's payload of its batch before, done with: filled again */
    char *p = *payload ? *payload : malloc(200);
    if (*payload)
        a->refills++;
    *payload = p;
    if (!p)
        return -ENOMEM;
    snprintf(p, 200, "%s", b->key);
    return 0;
}

static void asink_free_payload(void *state, void *payload)
{
    (void)state;
    free(payload);
}

static void asink_answer(uv_timer_t *t)
{
    struct asink *a = t->data;
    if (a->refuse_while_encoding && a->pending && a->pending_rc == -EPROTO &&
        atomic_load(&a->encoding) == 0 && a->waits++ < 3000) {
        uv_timer_start(&a->timer, asink_answer, 1, 0); /* until an encode runs */
        return;
    }
    struct mt_send *s = a->pending;
    a->pending = NULL;
    if (s)
        s->done(s, a->pending_rc);
}

static void asink_send(void *state, struct mt_send *s)
{
    struct asink *a = state;
    const struct mt_batch *b = s->batch;
    assert_string_equal(s->payload, b->key); /* what encode made for this batch */
    if (a->nkeys < 16)
        snprintf(a->keys[a->nkeys++], sizeof(a->keys[0]), "%s", b->key);
    a->sends++;
    a->pending = s;
    if (a->hold)
        return;
    a->pending_rc = 0;
    if (a->sends <= a->fail_first) {
        snprintf(s->res.error, sizeof(s->res.error), "busy");
        a->pending_rc = -EAGAIN;
    } else if (a->refuse_seq >= b->first_seq && a->refuse_seq <= b->last_seq) {
        snprintf(s->res.error, sizeof(s->res.error), "bad batch");
        a->pending_rc = -EPROTO;
    } else {
        for (size_t i = 0; i < b->n && a->nseen < MAXSEEN; i++)
            a->seen[a->nseen++] = b->rows[i].seq;
    }
    uv_timer_start(&a->timer, asink_answer, 2, 0);
}

static void asink_abort(void *state)
{
    struct asink *a = state;
    if (!a->pending)
        return;
    a->pending_rc = a->ack_on_abort ? 0 : -EAGAIN;
    if (a->ack_on_abort)
        for (size_t i = 0; i < a->pending->batch->n && a->nseen < MAXSEEN; i++)
            a->seen[a->nseen++] = a->pending->batch->rows[i].seq;
    asink_answer(&a->timer);
}

static void asink_timer_closed(uv_handle_t *h)
{
    struct asink *a = h->data;
    void (**cb)(void *) = (void *)&a->timer.data; /* unused */
    (void)cb;
    a->closed = true;
}

static void (*asink_done)(void *);
static void *asink_done_arg;

static void asink_closed(uv_handle_t *h)
{
    asink_timer_closed(h);
    asink_done(asink_done_arg);
}

static void asink_close(void *state, void (*done)(void *arg), void *arg)
{
    struct asink *a = state;
    asink_done = done;
    asink_done_arg = arg;
    uv_close((uv_handle_t *)&a->timer, asink_closed);
}

static void asink_destroy(void *state)
{
    (void)state;
}

static const struct mt_output_type asink_type = {
    .name = "asink",
    .description = "test async sink",
    .flags = MT_OUTPUT_ASYNC | MT_OUTPUT_STABLE_KEYS,
    .create = asink_create,
    .encode = asink_encode,
    .free_payload = asink_free_payload,
    .send = asink_send,
    .abort = asink_abort,
    .close = asink_close,
    .destroy = asink_destroy,
};

struct fixture {
    char *dir;
    char *path;
    uv_loop_t loop;
    struct mt_series_reg reg;
    struct mt_writer *w;
    struct mt_logdb *rd;
    uint32_t gauge;
    struct mt_output_common common;
    struct mt_output *out[MAXOUT];
    void *fconf[MAXOUT];
    char *fpath[MAXOUT];
    struct sink sink[MAXOUT]; /* live until teardown has closed the outputs */
    struct asink asink[MAXOUT];
    void *match_conf;         /* owns common.match's items; freed at teardown */
    uint32_t other;           /* a second series: hki/door-2/people_in */
    int closed;
    int64_t closed_cursor; /* what the last closed output reported */
};

/* The idempotency key the framework gives a batch: agent/generation/output/range */
static void assert_key(struct fixture *f, const char *key, const char *output, const char *range)
{
    int64_t gen = 0;
    char want[200];
    assert_int_equal(mt_log_generation(f->rd, &gen), 0);
    assert_true(gen > 0);
    snprintf(want, sizeof(want), "agent1/%" PRId64 "/%s/%s", gen, output, range);
    assert_string_equal(key, want);
}

static void on_commit(void *arg, int64_t seq)
{
    struct fixture *f = arg;
    for (int i = 0; i < MAXOUT; i++)
        if (f->out[i])
            mt_output_notify(f->out[i], seq);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct mt_logdb *db;
    char err[256];
    struct mt_writer_conf wc = {
        .batch_size = 100, .batch_interval_ms = 10, .queue_max = 10000, .housekeeping_ms = 50};
    if (!f)
        return -1;
    f->dir = tu_tmpdir();
    f->path = tu_path(f->dir, "log.db");
    f->common = (struct mt_output_common){.batch_size = 4, .retry_min_ms = 10, .retry_max_ms = 20};
    if (uv_loop_init(&f->loop) || mt_series_init(&f->reg))
        return -1;
    if (mt_log_open(&db, f->path, MT_LOG_WRITER, err, sizeof(err)))
        return -1;
    if (mt_writer_start(&f->w, &f->loop, db, &f->reg, &wc, on_commit, f))
        return -1;
    if (mt_log_open(&f->rd, f->path, MT_LOG_READER, err, sizeof(err)))
        return -1;
    struct mt_series_info k = {.site = "hki",
                               .device = "door-1",
                               .metric = "people_in",
                               .unit = "1",
                               .kind = MITTARI_KIND_DELTA,
                               .tags = ""};
    if (mt_series_intern(&f->reg, &k, &f->gauge))
        return -1;
    k.device = "door-2";
    k.tags = "{\"theme\":\"culture\"}";
    if (mt_series_intern(&f->reg, &k, &f->other))
        return -1;
    *state = f;
    return 0;
}

static void closed_cb(void *arg, int64_t cursor)
{
    struct fixture *f = arg;
    f->closed++;
    f->closed_cursor = cursor;
}

static bool all_closed(void *arg)
{
    struct fixture *f = arg;
    return f->closed == 0;
}

/* Closes output i and waits until its close callback ran. */
static void close_only(struct fixture *f, int i)
{
    struct mt_output *o = f->out[i];
    f->out[i] = NULL;
    f->closed = -1;
    mt_output_close(o, closed_cb, f);
    assert_true(tu_run_until(&f->loop, all_closed, f, 5000));
}

/* ... and frees what the test made for it. */
static void close_output(struct fixture *f, int i)
{
    if (!f->out[i])
        return;
    close_only(f, i);
    tu_options_free(f->fconf[i]);
    free(f->fpath[i]);
    f->fconf[i] = NULL;
    f->fpath[i] = NULL;
    assert_int_equal(atomic_load(&f->asink[i].overlap), 0);
    assert_int_equal(atomic_load(&f->asink[i].payload_moved), 0);
    memset(&f->asink[i], 0, sizeof(f->asink[i]));
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < MAXOUT; i++)
        close_output(f, i);
    tu_options_free(f->match_conf);
    mt_writer_stop(f->w, 2000);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    mt_log_close(f->rd);
    mt_series_free(&f->reg);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    tu_rmtree(f->dir);
    free(f->dir);
    free(f->path);
    free(f);
    return 0;
}


static struct mt_output *add(struct fixture *f, int i, const char *name,
                             const struct mt_output_type *type, const void *conf)
{
    struct mt_output_env env = {.loop = &f->loop, .writer = f->w, .series = &f->reg,
                                .db_path = f->path, .agent_id = "agent1"};
    char err[256] = "";
    assert_null(f->out[i]);
    int rc = mt_output_create(&f->out[i], &env, name, type, conf, &f->common, err, sizeof(err));
    if (rc)
        fail_msg("mt_output_create: %d %s", rc, err);
    mt_output_start(f->out[i]);
    return f->out[i];
}

static struct mt_output *add_file(struct fixture *f, int i, const char *name, const char *file)
{
    char text[600];
    /* conf and path are borrowed by the output until it is closed */
    f->fpath[i] = tu_path(f->dir, file);
    snprintf(text, sizeof(text), "{path: %s, format: jsonl, max_size: 0, max_files: 2, fsync: false}",
             f->fpath[i]);
    f->fconf[i] = tu_options(mt_output_file.options, mt_output_file.config_size, text);
    return add(f, i, name, &mt_output_file, f->fconf[i]);
}

static void push_series(struct fixture *f, uint32_t series, int n)
{
    for (int i = 0; i < n; i++) {
        struct mt_rec r = {
            .ts = 1764084344000000 + i, .series = series, .kind = MITTARI_KIND_DELTA, .value = 1};
        assert_int_equal(mt_writer_push(f->w, &r), 0);
    }
}

static void push_n(struct fixture *f, int n)
{
    for (int i = 0; i < n; i++) {
        struct mt_rec r = {
            .ts = 1764084344000000 + i, .series = f->gauge, .kind = MITTARI_KIND_DELTA, .value = 1};
        assert_int_equal(mt_writer_push(f->w, &r), 0);
    }
}

struct until {
    struct fixture *f;
    struct mt_output *o;
    int64_t seq;
    const char *name;
};

static bool committed_reached(void *arg)
{
    struct until *u = arg;
    return mt_writer_committed(u->f->w) >= u->seq;
}

static void wait_committed(struct fixture *f, int64_t seq)
{
    struct until u = {.f = f, .seq = seq};
    assert_true(tu_run_until(&f->loop, committed_reached, &u, 5000));
}

static bool sending_now(void *arg)
{
    struct until *u = arg;
    return mt_output_sending(u->o);
}

static bool delivered_through(void *arg)
{
    struct until *u = arg;
    return mt_output_cursor(u->o) >= u->seq && mt_output_drained(u->o);
}

static void wait_delivered(struct fixture *f, struct mt_output *o, int64_t seq)
{
    struct until u = {.f = f, .o = o, .seq = seq};
    if (!tu_run_until(&f->loop, delivered_through, &u, 5000))
        fail_msg("output %s at %" PRId64 ", waited for %" PRId64, mt_output_name(o),
                 mt_output_cursor(o), seq);
}

static bool durable_cursor(void *arg)
{
    struct until *u = arg;
    int64_t v = -1;
    return mt_log_get_cursor(u->f->rd, u->name, &v) == 0 && v == u->seq;
}

static void wait_durable_cursor(struct fixture *f, const char *name, int64_t seq)
{
    struct until u = {.f = f, .seq = seq, .name = name};
    int64_t v = -1;
    if (!tu_run_until(&f->loop, durable_cursor, &u, 5000)) {
        mt_log_get_cursor(f->rd, name, &v);
        fail_msg("cursor %s in the log is %" PRId64 ", waited for %" PRId64, name, v, seq);
    }
}

/* seqs of the records in a JSON Lines file */
static int file_seqs(struct fixture *f, const char *file, int64_t *out, int max)
{
    char *path = tu_path(f->dir, file);
    char *t = tu_read(path, NULL);
    int n = 0;
    free(path);
    if (!t)
        return 0;
    for (char *line = t; *line;) {
        char *nl = strchr(line, '\n');
        assert_non_null(nl);
        long long s;
        assert_int_equal(sscanf(line, "{\"seq\":%lld,", &s), 1);
        assert_true(n < max);
        out[n++] = s;
        line = nl + 1;
    }
    free(t);
    return n;
}

static void assert_run(const int64_t *seqs, int n, int64_t first, int64_t last)
{
    assert_int_equal(n, last - first + 1);
    for (int i = 0; i < n; i++)
        assert_int_equal(seqs[i], first + i);
}

/* ---- cases ---- */

static void file_output_delivers_everything(void **state)
{
    struct fixture *f = *state;
    int64_t seqs[64];
    push_n(f, 10);
    wait_committed(f, 10);
    struct mt_output *o = add_file(f, 0, "analysts", "out.jsonl");
    wait_delivered(f, o, 10);
    /* and what comes later, through the committed notification */
    push_n(f, 5);
    wait_delivered(f, o, 15);
    assert_run(seqs, file_seqs(f, "out.jsonl", seqs, 64), 1, 15);
    const struct mt_output_stats *st = mt_output_stats(o);
    assert_int_equal(st->delivered, 15);
    assert_true(st->batches >= 4); /* batch_size 4 */
    assert_int_equal(st->retries, 0);
    assert_int_equal(st->lost, 0);
    assert_int_equal(st->parked_batches, 0);
    wait_durable_cursor(f, "analysts", 15);
}

static void restart_resumes_after_the_cursor(void **state)
{
    struct fixture *f = *state;
    int64_t seqs[64];
    push_n(f, 10);
    wait_committed(f, 10);
    struct mt_output *o = add_file(f, 0, "analysts", "a.jsonl");
    wait_delivered(f, o, 10);
    wait_durable_cursor(f, "analysts", 10);
    close_output(f, 0);

    push_n(f, 5); /* while the output is away */
    wait_committed(f, 15);
    /* same name, another file: only the cursor can tell where to go on */
    o = add_file(f, 0, "analysts", "b.jsonl");
    wait_delivered(f, o, 15);
    assert_run(seqs, file_seqs(f, "a.jsonl", seqs, 64), 1, 10);
    assert_run(seqs, file_seqs(f, "b.jsonl", seqs, 64), 11, 15);
    assert_int_equal(mt_output_stats(o)->delivered, 5);
    wait_durable_cursor(f, "analysts", 15);
}

/* The cursor in the log is behind what the file holds (a crash between the
 * write and the cursor's commit): the file's own last seq wins. */
static void restart_does_not_write_twice(void **state)
{
    struct fixture *f = *state;
    int64_t seqs[64];
    push_n(f, 10);
    wait_committed(f, 10);
    struct mt_output *o = add_file(f, 0, "analysts", "c.jsonl");
    wait_delivered(f, o, 10);
    close_output(f, 0);
    mt_writer_cursor(f->w, "analysts", 4); /* as if 5..10 had not been acknowledged */
    wait_durable_cursor(f, "analysts", 4);

    push_n(f, 2);
    wait_committed(f, 12);
    o = add_file(f, 0, "analysts", "c.jsonl");
    wait_delivered(f, o, 12);
    assert_run(seqs, file_seqs(f, "c.jsonl", seqs, 64), 1, 12);
    assert_int_equal(mt_output_stats(o)->delivered, 2);
    wait_durable_cursor(f, "analysts", 12);
}

static void two_outputs_have_their_own_cursors(void **state)
{
    struct fixture *f = *state;
    struct sink *a = &f->sink[0], *b = &f->sink[1];
    b->fail_first = 3;
    push_n(f, 9);
    wait_committed(f, 9);
    struct mt_output *oa = add(f, 0, "a", &sink_type, a);
    struct mt_output *ob = add(f, 1, "b", &sink_type, b);
    wait_delivered(f, oa, 9);
    wait_delivered(f, ob, 9);
    assert_int_equal(a->nseen, 9);
    assert_int_equal(b->nseen, 9);
    assert_int_equal(mt_output_stats(oa)->retries, 0);
    assert_int_equal(mt_output_stats(ob)->retries, 3);
    wait_durable_cursor(f, "a", 9);
    wait_durable_cursor(f, "b", 9);
}

static void transient_errors_are_retried(void **state)
{
    struct fixture *f = *state;
    struct sink *s = &f->sink[0];
    s->fail_first = 2;
    push_n(f, 10);
    wait_committed(f, 10);
    struct mt_output *o = add(f, 0, "flaky", &sink_type, s);
    wait_delivered(f, o, 10);
    const struct mt_output_stats *st = mt_output_stats(o);
    assert_int_equal(st->retries, 2);
    assert_int_equal(st->delivered, 10);
    assert_int_equal(st->parked_batches, 0);
    assert_int_equal(st->lost, 0);
    /* each reading acknowledged once, in order */
    assert_run(s->seen, s->nseen, 1, 10);
    /* the retried batch is the same batch, with the same idempotency key */
    assert_key(f, s->keys[0], "flaky", "1-4");
    assert_key(f, s->keys[1], "flaky", "1-4");
    assert_key(f, s->keys[2], "flaky", "1-4");
    assert_key(f, s->keys[3], "flaky", "5-8");
    wait_durable_cursor(f, "flaky", 10);
    close_output(f, 0);
    assert_true(s->destroyed);
}

static int64_t sql_int(const char *path, const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    int64_t v = -1;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void permanent_error_parks_the_batch(void **state)
{
    struct fixture *f = *state;
    struct sink *s = &f->sink[0];
    s->refuse_seq = 6;
    push_n(f, 12);
    wait_committed(f, 12);
    struct mt_output *o = add(f, 0, "picky", &sink_type, s);
    wait_delivered(f, o, 12);
    const struct mt_output_stats *st = mt_output_stats(o);
    assert_int_equal(st->parked_batches, 1);
    assert_int_equal(st->parked_readings, 4);
    assert_int_equal(st->delivered, 8);
    assert_int_equal(st->retries, 0); /* never spins on it */
    assert_int_equal(s->nseen, 8);
    int64_t want[] = {1, 2, 3, 4, 9, 10, 11, 12};
    assert_memory_equal(s->seen, want, sizeof(want));
    wait_durable_cursor(f, "picky", 12);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM parked"), 1);
    assert_int_equal(sql_int(f->path, "SELECT first_seq FROM parked WHERE output='picky' AND "
                                      "error='rejected: bad payload'"),
                     5);
    assert_int_equal(sql_int(f->path, "SELECT last_seq FROM parked"), 8);
}

/* Readings gone from the log before delivery (the cap's drop_oldest deletes
 * the oldest, as here) are counted as lost, not waited for. */
static void dropped_readings_are_counted_lost(void **state)
{
    struct fixture *f = *state;
    struct sink *s = &f->sink[0];
    push_n(f, 10);
    wait_committed(f, 10);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    assert_int_equal(sqlite3_exec(db, "DELETE FROM readings WHERE seq <= 3", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    struct mt_output *o = add(f, 0, "gappy", &sink_type, s);
    wait_delivered(f, o, 10);
    assert_int_equal(mt_output_stats(o)->lost, 3);
    assert_int_equal(mt_output_stats(o)->delivered, 7);
    assert_run(s->seen, s->nseen, 4, 10);
    assert_key(f, s->keys[0], "gappy", "4-7");
}

/* Issue 15: a batch the destination acknowledged while its output was being
 * closed (a reload replacing it) counts: the close hands the cursor on, so
 * the replacement does not send it again. */
static void ack_during_close_is_kept(void **state)
{
    struct fixture *f = *state;
    struct sink *s = &f->sink[0];
    s->slow_ms = 300;
    push_n(f, 4);
    wait_committed(f, 4);
    struct mt_output *o = add(f, 0, "slow", &sink_type, s);
    struct until u = {.f = f, .o = o};
    /* in flight: the opening read the cursor, the sender delivers 1..4 */
    assert_true(tu_run_until(&f->loop, sending_now, &u, 5000));
    close_only(f, 0); /* its test type's counters stay to be looked at */
    assert_int_equal(s->nseen, 4); /* the destination has them */
    assert_int_equal(f->closed_cursor, 4);
    /* and the writer was told: its durable cursor follows */
    wait_durable_cursor(f, "slow", 4);
}

/* ---- the asynchronous interface, match, batch_wait, stop, stable keys ---- */

static void set_match(struct fixture *f, const char *yaml)
{
    struct mt_output_common *c = tu_options(mt_output_common_options, sizeof(*c), yaml);
    f->common.match = c->match;
    f->match_conf = c; /* the items live in it */
}

static void async_type_delivers_in_order(void **state)
{
    struct fixture *f = *state;
    struct asink *a = &f->asink[0];
    a->fail_first = 1;
    push_n(f, 30);
    wait_committed(f, 30);
    struct mt_output *o = add(f, 0, "web", &asink_type, a);
    wait_delivered(f, o, 30);
    assert_run(a->seen, a->nseen, 1, 30);
    assert_int_equal(mt_output_stats(o)->retries, 1);
    assert_int_equal(mt_output_stats(o)->delivered, 30);
    /* every batch encoded once, the failed one sent twice with its key */
    assert_int_equal(a->sends, 30 / 4 + 1 + 1);
    assert_string_equal(a->keys[0], a->keys[1]);
    assert_int_equal(a->encodes, 30 / 4 + 1);
    /* three slots: every batch after the first three fills a payload again */
    assert_true(a->refills >= 30 / 4 + 1 - 3);
    wait_durable_cursor(f, "web", 30);
}

static void match_selects_series_and_passes_the_rest(void **state)
{
    struct fixture *f = *state;
    struct sink *s = &f->sink[0];
    set_match(f, "{match: [{series: 'hki/door-2/*', tags: 'theme=cult*'}]}");
    push_n(f, 5);                /* door-1: 1..5 */
    push_series(f, f->other, 3); /* door-2: 6..8 */
    push_n(f, 5);                /* door-1: 9..13 */
    wait_committed(f, 13);
    struct mt_output *o = add(f, 0, "culture", &sink_type, s);
    wait_delivered(f, o, 13);
    int64_t want[] = {6, 7, 8};
    assert_int_equal(s->nseen, 3);
    assert_memory_equal(s->seen, want, sizeof(want));
    assert_int_equal(mt_output_stats(o)->lost, 0);
    wait_durable_cursor(f, "culture", 13); /* passed what it does not take */
}

static void match_raw_or_derived(void **state)
{
    struct fixture *f = *state;
    struct sink *s = &f->sink[0];
    set_match(f, "{match: [{readings: derived}]}");
    push_n(f, 3);
    wait_committed(f, 3);
    struct mt_rec d = {.ts = 1764084344000000, .series = f->gauge, .kind = MITTARI_KIND_DELTA,
                       .value = 7, .flags = MT_RF_SUPPRESSED, .min_count = 5};
    struct mt_consumer_step st = {.name = "rule-x", .cursor = 3, .recs = &d, .nrecs = 1};
    assert_int_equal(mt_writer_step(f->w, &st, NULL), 0);
    push_n(f, 2);
    wait_committed(f, 6);
    struct mt_output *o = add(f, 0, "figures", &sink_type, s);
    wait_delivered(f, o, 6);
    assert_int_equal(s->nseen, 1);
    /* the derived one, committed with the step (the flags column says so) */
    assert_int_equal(s->seen[0], sql_int(f->path, "SELECT seq FROM readings WHERE flags & 65536"));
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM readings WHERE flags & 65536"), 1);
}

static void batch_wait_waits_for_more(void **state)
{
    struct fixture *f = *state;
    struct sink *s = &f->sink[0];
    f->common.batch_wait_ms = 400;
    struct mt_output *o = add(f, 0, "patient", &sink_type, s);
    push_n(f, 2);
    wait_committed(f, 2);
    uint64_t t0 = uv_now(&f->loop);
    tu_run_until(&f->loop, all_closed, f, 150); /* just runs the loop for 150 ms */
    assert_int_equal(s->calls, 0);              /* two readings wait for more */
    wait_delivered(f, o, 2);
    assert_true(uv_now(&f->loop) - t0 >= 350);
    assert_int_equal(s->calls, 1);
    /* a full batch goes at once */
    push_n(f, 4);
    wait_committed(f, 6);
    t0 = uv_now(&f->loop);
    wait_delivered(f, o, 6);
    assert_true(uv_now(&f->loop) - t0 < 350);
    /* and a flush (a stop) sends what waits */
    push_n(f, 1);
    wait_committed(f, 7);
    mt_output_flush(o);
    t0 = uv_now(&f->loop);
    wait_delivered(f, o, 7);
    assert_true(uv_now(&f->loop) - t0 < 350);
}

static void stop_on_permanent_error(void **state)
{
    struct fixture *f = *state;
    struct sink *s = &f->sink[0];
    s->refuse_seq = 6;
    f->common.on_permanent_error = MT_PERMANENT_STOP;
    push_n(f, 12);
    wait_committed(f, 12);
    struct mt_output *o = add(f, 0, "strict", &sink_type, s);
    struct until u = {.f = f, .o = o, .seq = 4};
    assert_true(tu_run_until(&f->loop, delivered_through, &u, 5000));
    assert_int_equal(mt_output_state(o), MT_OUT_STOPPED);
    assert_int_equal(mt_output_cursor(o), 4); /* stays before the refused batch */
    assert_true(mt_output_drained(o));        /* a stop does not wait for it */
    int calls = s->calls;
    tu_run_until(&f->loop, all_closed, f, 200);
    assert_int_equal(s->calls, calls); /* never spins */
    assert_int_equal(mt_output_stats(o)->parked_batches, 1);
    wait_durable_cursor(f, "strict", 4);
    close_output(f, 0);
    assert_int_equal(sql_int(f->path, "SELECT first_seq FROM parked WHERE output='strict'"), 5);
    /* the next start tries the batch again */
    s->refuse_seq = 0;
    s->nseen = 0;
    o = add(f, 0, "strict", &sink_type, s);
    wait_delivered(f, o, 12);
    assert_run(s->seen, s->nseen, 5, 12);
}

/* Issue 11: a batch re-sent after a crash carries the key it had. The plan
 * (its end, committed before the batch was sent) makes the boundaries the
 * same although more readings are there by then. */
static void stable_keys_survive_a_restart(void **state)
{
    struct fixture *f = *state;
    struct asink *a = &f->asink[0];
    a->fail_first = 1000; /* the destination never answers yes */
    push_n(f, 3);
    wait_committed(f, 3);
    struct mt_output *o = add(f, 0, "keyed", &asink_type, a);
    struct until u = {.f = f, .o = o};
    assert_true(tu_run_until(&f->loop, sending_now, &u, 5000));
    char first[160];
    snprintf(first, sizeof(first), "%s", a->keys[0]);
    assert_key(f, first, "keyed", "1-3");
    close_output(f, 0); /* as if killed: nothing was acknowledged */
    push_n(f, 5);
    wait_committed(f, 8);
    o = add(f, 0, "keyed", &asink_type, &f->asink[1]);
    wait_delivered(f, o, 8);
    assert_string_equal(f->asink[1].keys[0], first); /* 1-3 again, not 1-4 */
    assert_key(f, f->asink[1].keys[1], "keyed", "4-7");
    assert_key(f, f->asink[1].keys[2], "keyed", "8-8");
}

static void async_ack_during_close_is_kept(void **state)
{
    struct fixture *f = *state;
    struct asink *a = &f->asink[0];
    a->hold = true;
    a->ack_on_abort = true;
    push_n(f, 4);
    wait_committed(f, 4);
    struct mt_output *o = add(f, 0, "racy", &asink_type, a);
    struct until u = {.f = f, .o = o};
    assert_true(tu_run_until(&f->loop, sending_now, &u, 5000));
    close_only(f, 0); /* its test type's counters stay to be looked at */
    assert_int_equal(f->closed_cursor, 4);
    assert_true(a->closed);
    wait_durable_cursor(f, "racy", 4);
}

static bool encoding_now(void *arg)
{
    struct asink *a = arg;
    return atomic_load(&a->encoding) > 0;
}

static bool encoded_three(void *arg)
{
    struct asink *a = arg;
    return a->encodes >= 3;
}

static bool never(void *arg)
{
    (void)arg;
    return false;
}

static bool stopped_and_idle(void *arg)
{
    struct mt_output *o = arg;
    return mt_output_state(o) == MT_OUT_STOPPED && !mt_output_busy(o);
}

/* Three slots: while the destination holds the first batch, the next two
 * are read and encoded (the reader and the encoder work ahead of the
 * sender), and no more: memory stays at three batches. */
static void three_batches_in_the_pipeline(void **state)
{
    struct fixture *f = *state;
    struct asink *a = &f->asink[0];
    a->hold = true;
    a->encode_ms = 20;
    push_n(f, 20);
    wait_committed(f, 20);
    struct mt_output *o = add(f, 0, "ahead", &asink_type, a);
    assert_true(tu_run_until(&f->loop, encoded_three, a, 5000));
    tu_run_until(&f->loop, never, NULL, 200);
    assert_int_equal(a->encodes, 3);
    assert_int_equal(a->sends, 1);
    assert_key(f, a->keys[0], "ahead", "1-4");
    close_output(f, 0); /* the held batch comes back unacknowledged */
    assert_int_equal(f->closed_cursor, 0);
    a = &f->asink[0];
    o = add(f, 0, "ahead", &asink_type, a);
    wait_delivered(f, o, 20);
    assert_run(a->seen, a->nseen, 1, 20);
    wait_durable_cursor(f, "ahead", 20);
}

/* Close while a worker encodes the first batch: the close waits for the
 * encode, the slot it filled is released on the loop (ASan and valgrind
 * see a payload freed under the worker, or never freed) and nothing of it
 * is sent. */
static void close_while_encoding(void **state)
{
    struct fixture *f = *state;
    struct asink *a = &f->asink[0];
    a->encode_ms = 200;
    push_n(f, 20);
    wait_committed(f, 20);
    add(f, 0, "enc", &asink_type, a);
    assert_true(tu_run_until(&f->loop, encoding_now, a, 5000));
    close_only(f, 0); /* its test type's counters stay to be looked at */
    assert_int_equal(atomic_load(&a->encoding), 0); /* closed only after the encode */
    assert_int_equal(a->encodes, 1);
    assert_int_equal(a->sends, 0);
    assert_true(a->closed);
    assert_int_equal(f->closed_cursor, 0);
}

/* on_permanent_error: stop, refused while the next batch is being
 * encoded: the output stops before the refused batch, the slot being
 * encoded is left to its worker (its payload is not taken from under
 * encode(): payload_moved) and dropped on the loop when the encode is
 * done, and the next start sends from the refused batch on. A later batch
 * is refused, so that the slots hold payloads of batches before. */
static void stop_while_encoding(void **state)
{
    struct fixture *f = *state;
    struct asink *a = &f->asink[0];
    a->refuse_seq = 17; /* the fifth batch */
    a->encode_ms = 60;
    a->refuse_while_encoding = true;
    f->common.on_permanent_error = MT_PERMANENT_STOP;
    push_n(f, 40);
    wait_committed(f, 40);
    struct mt_output *o = add(f, 0, "strict", &asink_type, a);
    assert_true(tu_run_until(&f->loop, stopped_and_idle, o, 5000));
    assert_int_equal(mt_output_cursor(o), 16);
    assert_int_equal(atomic_load(&a->encoding), 0);
    assert_true(a->encodes >= 6); /* the sixth was encoded while the fifth was refused */
    assert_int_equal(a->sends, 5); /* nothing after the refused batch */
    assert_int_equal(atomic_load(&a->payload_moved), 0);
    assert_int_equal(mt_output_stats(o)->parked_batches, 1);
    wait_durable_cursor(f, "strict", 16);
    close_output(f, 0);
    a = &f->asink[0];
    o = add(f, 0, "strict", &asink_type, a);
    wait_delivered(f, o, 40);
    assert_run(a->seen, a->nseen, 17, 40);
}

static bool parked_once(void *arg)
{
    struct fixture *f = arg;
    return sql_int(f->path, "SELECT count(*) FROM parked") == 1;
}

/* A permanent refusal that arrives while the output closes, with
 * on_permanent_error: stop: the batch is parked, the cursor stays before
 * it, and the close finishes (it used to wait for ever in STOPPED). */
static void refusal_during_close(void **state)
{
    struct fixture *f = *state;
    struct sink *s = &f->sink[0];
    s->refuse_seq = 1;
    s->slow_ms = 300;
    f->common.on_permanent_error = MT_PERMANENT_STOP;
    push_n(f, 8);
    wait_committed(f, 8);
    struct mt_output *o = add(f, 0, "closing", &sink_type, s);
    struct until u = {.f = f, .o = o};
    assert_true(tu_run_until(&f->loop, sending_now, &u, 5000));
    close_only(f, 0); /* its test type's counters stay to be looked at */
    assert_int_equal(f->closed_cursor, 0);
    assert_true(tu_run_until(&f->loop, parked_once, f, 5000)); /* the writer records it */
    assert_int_equal(sql_int(f->path, "SELECT first_seq FROM parked WHERE output='closing'"), 1);
    s->refuse_seq = 0;
    s->slow_ms = 0;
    s->nseen = 0;
    o = add(f, 0, "closing", &sink_type, s);
    wait_delivered(f, o, 8);
    assert_run(s->seen, s->nseen, 1, 8);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(file_output_delivers_everything),   T(restart_resumes_after_the_cursor),
        T(restart_does_not_write_twice),      T(two_outputs_have_their_own_cursors),
        T(transient_errors_are_retried),      T(permanent_error_parks_the_batch),
        T(dropped_readings_are_counted_lost),
        T(ack_during_close_is_kept),
        T(async_type_delivers_in_order),
        T(match_selects_series_and_passes_the_rest),
        T(match_raw_or_derived),
        T(batch_wait_waits_for_more),
        T(stop_on_permanent_error),
        T(stable_keys_survive_a_restart),
        T(async_ack_during_close_is_kept),
        T(three_batches_in_the_pipeline),
        T(close_while_encoding),
        T(stop_while_encoding),
        T(refusal_during_close),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
