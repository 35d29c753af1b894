/* The output framework end to end: a real writer and log, outputs reading
 * their batches after a durable cursor, the file type and in-test types that
 * fail transiently or permanently. */
#include "testutil.h"

#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
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

static void close_output(struct fixture *f, int i)
{
    if (!f->out[i])
        return;
    struct mt_output *o = f->out[i];
    f->out[i] = NULL;
    f->closed = -1;
    mt_output_close(o, closed_cb, f);
    assert_true(tu_run_until(&f->loop, all_closed, f, 5000));
    tu_options_free(f->fconf[i]);
    free(f->fpath[i]);
    f->fconf[i] = NULL;
    f->fpath[i] = NULL;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < MAXOUT; i++)
        close_output(f, i);
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
    f->out[0] = NULL;
    f->closed = -1;
    mt_output_close(o, closed_cb, f);
    assert_true(tu_run_until(&f->loop, all_closed, f, 5000));
    assert_int_equal(s->nseen, 4); /* the destination has them */
    assert_int_equal(f->closed_cursor, 4);
    /* and the writer was told: its durable cursor follows */
    wait_durable_cursor(f, "slow", 4);
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
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
