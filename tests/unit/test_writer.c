/* The log writer on a real loop and a real SQLite file: batching, dense
 * sequence numbers, counter normalization across restarts, cursors, the
 * intake limit, retention, the size cap and its policies, a full disk. */
#include "testutil.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mittari/mittari.h>

#include "log.h"
#include "series.h"
#include "util.h"
#include "writer.h"

/* ---- a disk that can be full: an SQLite VFS over the default one ----
 * max_page_count would do it too, but it is per connection and the writer's
 * connection is its own; a full disk is also what production meets. While
 * disk_full is set every write of every file returns SQLITE_FULL. */

static sqlite3_vfs *real_vfs;
static sqlite3_vfs full_vfs;
static atomic_bool disk_full;
static atomic_bool write_stalled; /* xWrite waits while set: a commit that hangs */

struct full_file {
    sqlite3_file base;
    sqlite3_file *real; /* right behind this struct */
};

#define REAL(f) (((struct full_file *)(f))->real)

static int ff_close(sqlite3_file *f)
{
    return REAL(f)->pMethods->xClose(REAL(f));
}

static int ff_read(sqlite3_file *f, void *p, int n, sqlite3_int64 off)
{
    return REAL(f)->pMethods->xRead(REAL(f), p, n, off);
}

static int ff_write(sqlite3_file *f, const void *p, int n, sqlite3_int64 off)
{
    while (atomic_load(&write_stalled))
        usleep(1000);
    if (atomic_load(&disk_full))
        return SQLITE_FULL;
    return REAL(f)->pMethods->xWrite(REAL(f), p, n, off);
}

static int ff_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    return REAL(f)->pMethods->xTruncate(REAL(f), size);
}

static int ff_sync(sqlite3_file *f, int flags)
{
    return REAL(f)->pMethods->xSync(REAL(f), flags);
}

static int ff_size(sqlite3_file *f, sqlite3_int64 *size)
{
    return REAL(f)->pMethods->xFileSize(REAL(f), size);
}

static int ff_lock(sqlite3_file *f, int l)
{
    return REAL(f)->pMethods->xLock(REAL(f), l);
}

static int ff_unlock(sqlite3_file *f, int l)
{
    return REAL(f)->pMethods->xUnlock(REAL(f), l);
}

static int ff_reserved(sqlite3_file *f, int *out)
{
    return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}

static int ff_fcntl(sqlite3_file *f, int op, void *arg)
{
    return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}

static int ff_sector(sqlite3_file *f)
{
    return REAL(f)->pMethods->xSectorSize(REAL(f));
}

static int ff_devchar(sqlite3_file *f)
{
    return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}

static int ff_shm_map(sqlite3_file *f, int pg, int sz, int extend, void volatile **pp)
{
    return REAL(f)->pMethods->xShmMap(REAL(f), pg, sz, extend, pp);
}

static int ff_shm_lock(sqlite3_file *f, int off, int n, int flags)
{
    return REAL(f)->pMethods->xShmLock(REAL(f), off, n, flags);
}

static void ff_shm_barrier(sqlite3_file *f)
{
    REAL(f)->pMethods->xShmBarrier(REAL(f));
}

static int ff_shm_unmap(sqlite3_file *f, int del)
{
    return REAL(f)->pMethods->xShmUnmap(REAL(f), del);
}

static int ff_fetch(sqlite3_file *f, sqlite3_int64 off, int amt, void **pp)
{
    return REAL(f)->pMethods->xFetch(REAL(f), off, amt, pp);
}

static int ff_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
    return REAL(f)->pMethods->xUnfetch(REAL(f), off, p);
}

static const sqlite3_io_methods ff_methods = {
    .iVersion = 3,
    .xClose = ff_close,
    .xRead = ff_read,
    .xWrite = ff_write,
    .xTruncate = ff_truncate,
    .xSync = ff_sync,
    .xFileSize = ff_size,
    .xLock = ff_lock,
    .xUnlock = ff_unlock,
    .xCheckReservedLock = ff_reserved,
    .xFileControl = ff_fcntl,
    .xSectorSize = ff_sector,
    .xDeviceCharacteristics = ff_devchar,
    .xShmMap = ff_shm_map,
    .xShmLock = ff_shm_lock,
    .xShmBarrier = ff_shm_barrier,
    .xShmUnmap = ff_shm_unmap,
    .xFetch = ff_fetch,
    .xUnfetch = ff_unfetch,
};

static int ff_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *file, int flags,
                   int *out_flags)
{
    struct full_file *ff = (struct full_file *)file;
    (void)vfs;
    ff->real = (sqlite3_file *)(ff + 1);
    int rc = real_vfs->xOpen(real_vfs, name, ff->real, flags, out_flags);
    file->pMethods = ff->real->pMethods ? &ff_methods : NULL;
    return rc;
}

static int install_full_vfs(void)
{
    real_vfs = sqlite3_vfs_find(NULL);
    if (!real_vfs || real_vfs->iVersion < 2)
        return -1;
    full_vfs = *real_vfs;
    full_vfs.zName = "mittari-test-full";
    full_vfs.szOsFile = (int)sizeof(struct full_file) + real_vfs->szOsFile;
    full_vfs.xOpen = ff_open;
    full_vfs.pNext = NULL;
    return sqlite3_vfs_register(&full_vfs, 1) == SQLITE_OK ? 0 : -1;
}

/* ---- fixture ---- */

struct fixture {
    char *dir;
    char *path;
    uv_loop_t loop;
    struct mt_series_reg reg;
    struct mt_writer *w;
    struct mt_logdb *rd;
    struct mt_writer_conf conf;
    int64_t cb_seq;
    int cb_calls;
    uint32_t gauge, c16, c32, c64;
};

static const struct mt_writer_conf default_conf = {
    .batch_size = 100,
    .batch_interval_ms = 20,
    .queue_max = 100000,
    .retention_ms = 0,
    .max_size = 0,
    .policy = MT_POLICY_DROP_OLDEST,
    .housekeeping_ms = 20,
};

static void on_commit(void *arg, int64_t seq)
{
    struct fixture *f = arg;
    f->cb_seq = seq;
    f->cb_calls++;
}

static uint32_t intern(struct fixture *f, const char *metric, int kind, unsigned bits)
{
    struct mt_series_info k = {.site = "hki",
                               .device = "dev",
                               .metric = metric,
                               .unit = "",
                               .kind = kind,
                               .bits = bits,
                               .tags = ""};
    uint32_t id = 0;
    assert_int_equal(mt_series_intern(&f->reg, &k, &id), 0);
    return id;
}

static void start(struct fixture *f)
{
    struct mt_logdb *db;
    char err[256];
    assert_int_equal(mt_log_open(&db, f->path, MT_LOG_WRITER, err, sizeof(err)), 0);
    assert_int_equal(mt_series_init(&f->reg), 0);
    int rc = mt_writer_start(&f->w, &f->loop, db, &f->reg, &f->conf, on_commit, f);
    assert_int_equal(rc, 0);
    /* the same keys give the same ids after a restart: loaded from the log */
    f->gauge = intern(f, "gauge", MITTARI_KIND_GAUGE, 0);
    f->c16 = intern(f, "c16", MITTARI_KIND_CUMULATIVE, 16);
    f->c32 = intern(f, "c32", MITTARI_KIND_CUMULATIVE, 32);
    f->c64 = intern(f, "c64", MITTARI_KIND_CUMULATIVE, 64);
    if (!f->rd)
        assert_int_equal(mt_log_open(&f->rd, f->path, MT_LOG_READER, err, sizeof(err)), 0);
}

static void stop(struct fixture *f)
{
    if (!f->w)
        return;
    mt_writer_stop(f->w, 2000);
    f->w = NULL;
    uv_run(&f->loop, UV_RUN_DEFAULT); /* closes the async handle, frees the writer */
    mt_series_free(&f->reg);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    f->dir = tu_tmpdir();
    f->path = tu_path(f->dir, "log.db");
    f->conf = default_conf;
    if (uv_loop_init(&f->loop))
        return -1;
    atomic_store(&disk_full, false);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    atomic_store(&write_stalled, false); /* a failed assertion must not hang the close */
    struct fixture *f = *state;
    atomic_store(&disk_full, false);
    tu_capture_stop();
    stop(f);
    mt_log_close(f->rd);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    tu_rmtree(f->dir);
    free(f->dir);
    free(f->path);
    free(f);
    return 0;
}

static int push(struct fixture *f, uint32_t series, int64_t ts, double value)
{
    const struct mt_series_info *s = mt_series_get(&f->reg, series);
    struct mt_rec r = {.ts = ts, .series = series, .kind = (uint8_t)s->kind, .value = value};
    return mt_writer_push(f->w, &r);
}

static int push_counter(struct fixture *f, uint32_t series, int64_t ts, uint64_t raw)
{
    const struct mt_series_info *s = mt_series_get(&f->reg, series);
    struct mt_rec r = {.ts = ts,
                       .series = series,
                       .kind = (uint8_t)s->kind,
                       .bits = (uint8_t)s->bits,
                       .counter = raw};
    return mt_writer_push(f->w, &r);
}

struct wait {
    struct fixture *f;
    int64_t seq;
    const char *text;
    const _Atomic uint64_t *stat;
    uint64_t min;
    int64_t lo;
};

static bool committed_reached(void *arg)
{
    struct wait *w = arg;
    return w->f->cb_seq >= w->seq;
}

static void wait_committed(struct fixture *f, int64_t seq)
{
    struct wait w = {.f = f, .seq = seq};
    if (!tu_run_until(&f->loop, committed_reached, &w, 5000))
        fail_msg("committed %lld, waited for %lld", (long long)f->cb_seq, (long long)seq);
    assert_int_equal(mt_writer_committed(f->w), f->cb_seq);
}

static bool never(void *arg)
{
    (void)arg;
    return false;
}

/* Runs the loop for ms: lets the writer do what it would do meanwhile. */
static void settle(struct fixture *f, int ms)
{
    tu_run_until(&f->loop, never, NULL, ms);
}

static bool stat_reached(void *arg)
{
    struct wait *w = arg;
    return atomic_load(w->stat) >= w->min;
}

static void wait_stat(struct fixture *f, const _Atomic uint64_t *stat, uint64_t min, int ms)
{
    struct wait w = {.f = f, .stat = stat, .min = min};
    if (!tu_run_until(&f->loop, stat_reached, &w, ms))
        fail_msg("stat is %llu, waited for %llu", (unsigned long long)atomic_load(stat),
                 (unsigned long long)min);
}

static bool log_says(void *arg)
{
    struct wait *w = arg;
    return tu_captured(w->text);
}

static void wait_log(struct fixture *f, const char *text, int ms)
{
    struct wait w = {.f = f, .text = text};
    if (!tu_run_until(&f->loop, log_says, &w, ms))
        fail_msg("no log line with \"%s\" in:\n%s", text, tu_captured_all());
}

static void bounds(struct fixture *f, int64_t *lo, int64_t *hi, int64_t *rows)
{
    assert_int_equal(mt_log_bounds(f->rd, lo, hi, rows), 0);
}

static bool oldest_reached(void *arg)
{
    struct wait *w = arg;
    int64_t lo, hi, n;
    return mt_log_bounds(w->f->rd, &lo, &hi, &n) == 0 && lo >= w->lo;
}

static void wait_oldest(struct fixture *f, int64_t lo)
{
    struct wait w = {.f = f, .lo = lo};
    if (!tu_run_until(&f->loop, oldest_reached, &w, 5000)) {
        int64_t l, h, n;
        bounds(f, &l, &h, &n);
        fail_msg("oldest row is %lld, waited for %lld", (long long)l, (long long)lo);
    }
}

static size_t read_rows(struct fixture *f, struct mt_row *rows, size_t max)
{
    size_t n = 0;
    assert_int_equal(mt_log_read(f->rd, 0, INT64_MAX, max, rows, &n), 0);
    return n;
}

static int64_t cursor_of(struct fixture *f, const char *name)
{
    int64_t v = -1;
    int rc = mt_log_get_cursor(f->rd, name, &v);
    assert_true(rc == 0 || rc == -ENOENT); /* none yet: 0 */
    return v;
}

struct cursor_wait {
    struct fixture *f;
    const char *name;
    int64_t seq;
};

static bool cursor_reached(void *arg)
{
    struct cursor_wait *c = arg;
    return cursor_of(c->f, c->name) == c->seq;
}

static void wait_cursor(struct fixture *f, const char *name, int64_t seq)
{
    struct cursor_wait c = {f, name, seq};
    if (!tu_run_until(&f->loop, cursor_reached, &c, 5000))
        fail_msg("cursor %s is %lld, waited for %lld", name, (long long)cursor_of(f, name),
                 (long long)seq);
}

#define STAT(f, field) atomic_load(&mt_writer_stats((f)->w)->field)
#define TS0 1764084344000000LL

/* ---- cases ---- */

static void commits_dense_seqs_and_notifies(void **state)
{
    struct fixture *f = *state;
    struct mt_row rows[32];
    start(f);
    for (int i = 1; i <= 10; i++) {
        struct mt_rec r = {
            .ts = TS0 + i, .series = f->gauge, .kind = MITTARI_KIND_GAUGE, .value = i * 1.5};
        if (i == 4)
            snprintf(r.subject, sizeof(r.subject), "AbCdEfGhIjKlMnOpQrStUv");
        assert_int_equal(mt_writer_push(f->w, &r), 0);
    }
    wait_committed(f, 10);
    assert_true(f->cb_calls >= 1);
    assert_int_equal(read_rows(f, rows, 32), 10);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(rows[i].seq, i + 1);
        assert_int_equal(rows[i].ts, TS0 + i + 1);
        assert_int_equal(rows[i].series, f->gauge);
        assert_true(rows[i].value == (i + 1) * 1.5);
        assert_string_equal(rows[i].subject, i == 3 ? "AbCdEfGhIjKlMnOpQrStUv" : "");
    }
    assert_int_equal(STAT(f, queued), 10);
    assert_int_equal(STAT(f, stored), 10);
    assert_int_equal(STAT(f, commit_errors), 0);
    assert_int_equal(mt_writer_error(f->w), 0);
    /* the series went into the log with the readings */
    struct mt_series_reg other;
    assert_int_equal(mt_series_init(&other), 0);
    assert_int_equal(mt_log_load_series(f->rd, &other), 0);
    assert_int_equal(mt_series_count(&other), 4);
    assert_string_equal(mt_series_get(&other, f->c16)->metric, "c16");
    assert_int_equal(mt_series_get(&other, f->c16)->bits, 16);
    mt_series_free(&other);
    /* more: the numbers go on */
    assert_int_equal(push(f, f->gauge, TS0, 99), 0);
    wait_committed(f, 11);
    assert_int_equal(read_rows(f, rows, 32), 11);
    assert_int_equal(rows[10].seq, 11);
}

static void batches_by_size(void **state)
{
    struct fixture *f = *state;
    f->conf.batch_size = 5;
    f->conf.batch_interval_ms = 60000;
    start(f);
    for (int i = 0; i < 5; i++)
        assert_int_equal(push(f, f->gauge, TS0, i), 0);
    wait_committed(f, 5);
    assert_int_equal(STAT(f, commits), 1);
    for (int i = 0; i < 3; i++)
        assert_int_equal(push(f, f->gauge, TS0, i), 0);
    settle(f, 200);
    assert_int_equal(mt_writer_committed(f->w), 5); /* 3 < batch_size: waits */
    assert_int_equal(STAT(f, commits), 1);
    assert_int_equal(push(f, f->gauge, TS0, 8), 0);
    assert_int_equal(push(f, f->gauge, TS0, 9), 0);
    wait_committed(f, 10);
    assert_int_equal(STAT(f, commits), 2);
    /* a flush does not wait for either */
    assert_int_equal(push(f, f->gauge, TS0, 10), 0);
    mt_writer_flush(f->w);
    wait_committed(f, 11);
    assert_int_equal(STAT(f, commits), 3);
}

static void batches_by_interval(void **state)
{
    struct fixture *f = *state;
    f->conf.batch_size = 1000;
    f->conf.batch_interval_ms = 150;
    start(f);
    int64_t t0 = mt_mono_us();
    for (int i = 0; i < 3; i++)
        assert_int_equal(push(f, f->gauge, TS0, i), 0);
    assert_int_equal(mt_writer_committed(f->w), 0);
    wait_committed(f, 3);
    int64_t waited = mt_mono_us() - t0;
    assert_true(waited >= 150000);
    assert_true(waited < 3000000);
    assert_int_equal(STAT(f, commits), 1); /* one batch, not three */
    assert_true(mt_writer_idle(f->w));
}

static void cumulative_counters_become_deltas(void **state)
{
    struct fixture *f = *state;
    struct mt_row rows[32];
    start(f);
    /* 16 bits: first, step, same, wrap, step, reset; a gauge in between */
    assert_int_equal(push_counter(f, f->c16, TS0 + 1, 65530), 0); /* baseline: no row */
    assert_int_equal(push_counter(f, f->c16, TS0 + 2, 65533), 0); /* +3 */
    assert_int_equal(push(f, f->gauge, TS0 + 3, 21.5), 0);
    assert_int_equal(push_counter(f, f->c16, TS0 + 4, 65533), 0); /* same: no row */
    assert_int_equal(push_counter(f, f->c16, TS0 + 5, 2), 0);     /* wrap: +5 */
    assert_int_equal(push_counter(f, f->c16, TS0 + 6, 10), 0);    /* +8 */
    assert_int_equal(push_counter(f, f->c16, TS0 + 7, 3), 0);     /* reset: +3 */
    assert_int_equal(push_counter(f, f->c16, TS0 + 8, 70000), 0); /* wider than 16 bits */
    /* 64 bits: values past INT64_MAX */
    assert_int_equal(push_counter(f, f->c64, TS0 + 9, (uint64_t)INT64_MAX + 10), 0);
    assert_int_equal(push_counter(f, f->c64, TS0 + 10, (uint64_t)INT64_MAX + 1010), 0);
    mt_writer_flush(f->w);
    wait_committed(f, 6);
    settle(f, 50);
    assert_int_equal(read_rows(f, rows, 32), 6);
    const double want[] = {3, 21.5, 5, 8, 3, 1000};
    const int64_t ts[] = {TS0 + 2, TS0 + 3, TS0 + 5, TS0 + 6, TS0 + 7, TS0 + 10};
    for (int i = 0; i < 6; i++) {
        assert_int_equal(rows[i].seq, i + 1);
        assert_true(rows[i].value == want[i]);
        assert_int_equal(rows[i].ts, ts[i]);
    }
    assert_int_equal(rows[1].series, f->gauge);
    assert_int_equal(rows[5].series, f->c64);
    assert_int_equal(STAT(f, counter_first), 2);
    assert_int_equal(STAT(f, counter_wraps), 1);
    assert_int_equal(STAT(f, counter_resets), 1);
    assert_int_equal(STAT(f, stored), 6);
    assert_int_equal(STAT(f, queued), 10);
}

struct counter_seen {
    uint32_t series;
    uint64_t last;
    bool found;
};

static int find_counter(void *arg, uint32_t series, uint64_t last, int64_t ts)
{
    struct counter_seen *c = arg;
    (void)ts;
    if (series == c->series) {
        c->last = last;
        c->found = true;
    }
    return 0;
}

static void counter_state_survives_restart(void **state)
{
    struct fixture *f = *state;
    struct mt_row rows[32];
    start(f);
    assert_int_equal(push_counter(f, f->c32, TS0 + 1, 1000), 0);
    assert_int_equal(push_counter(f, f->c32, TS0 + 2, 1100), 0);                    /* +100 */
    assert_int_equal(push_counter(f, f->c64, TS0 + 3, (uint64_t)INT64_MAX + 5), 0); /* baseline */
    wait_committed(f, 1);
    settle(f, 50);
    stop(f);
    /* the states are in the log, a 64-bit one bit for bit */
    struct counter_seen c = {.series = f->c64};
    assert_int_equal(mt_log_load_counters(f->rd, find_counter, &c), 0);
    assert_true(c.found);
    assert_true(c.last == (uint64_t)INT64_MAX + 5);

    start(f);
    assert_int_equal(mt_writer_committed(f->w), 1);
    assert_int_equal(push_counter(f, f->c32, TS0 + 4, 1150), 0); /* +50, not a new baseline */
    assert_int_equal(push_counter(f, f->c64, TS0 + 5, (uint64_t)INT64_MAX + 7), 0); /* +2 */
    wait_committed(f, 3);
    assert_int_equal(STAT(f, counter_first), 0);
    assert_int_equal(read_rows(f, rows, 32), 3);
    assert_int_equal(rows[0].seq, 1);
    assert_true(rows[0].value == 100);
    assert_int_equal(rows[1].seq, 2); /* numbering continues */
    assert_true(rows[1].value == 50);
    assert_int_equal(rows[1].series, f->c32);
    assert_int_equal(rows[2].seq, 3);
    assert_true(rows[2].value == 2);
    assert_int_equal(rows[2].series, f->c64);
    /* in all: what the device counted since its first sample, once */
    assert_true(rows[0].value + rows[1].value == 1150 - 1000);
}

static void cursors_are_committed(void **state)
{
    struct fixture *f = *state;
    start(f);
    assert_int_equal(cursor_of(f, "http"), 0);
    mt_writer_cursor(f->w, "http", 42);
    wait_cursor(f, "http", 42);
    mt_writer_cursor(f->w, "http", 50);
    mt_writer_cursor(f->w, "file", 7);
    wait_cursor(f, "file", 7);
    assert_int_equal(cursor_of(f, "http"), 50);
    /* with readings in the same batch */
    assert_int_equal(push(f, f->gauge, TS0, 1), 0);
    mt_writer_cursor(f->w, "file", 1);
    wait_committed(f, 1);
    wait_cursor(f, "file", 1);
}

static bool cursor_is(void *arg)
{
    struct cursor_wait *c = arg;
    return cursor_of(c->f, c->name) == c->seq;
}

static void cursor_alone_waits_up_to_a_second(void **state)
{
    struct fixture *f = *state;
    struct cursor_wait c = {f, "http", 42};
    start(f);
    uint64_t commits = STAT(f, commits);
    int64_t t0 = mt_mono_us();
    mt_writer_cursor(f->w, "http", 42);
    /* not an fsync'ed commit of its own at once ... */
    assert_false(tu_run_until(&f->loop, cursor_is, &c, 400));
    assert_int_equal(STAT(f, commits), commits);
    /* ... but within about a second */
    assert_true(tu_run_until(&f->loop, cursor_is, &c, 3000));
    assert_true(mt_mono_us() - t0 >= 900000);
    /* with a reading, it goes along within batch_interval */
    c.seq = 43;
    t0 = mt_mono_us();
    mt_writer_cursor(f->w, "http", 43);
    assert_int_equal(push(f, f->gauge, TS0, 1), 0);
    assert_true(tu_run_until(&f->loop, cursor_is, &c, 3000));
    assert_true(mt_mono_us() - t0 < 800000);
}

/* Issue 14: a batch costs the writer one wake-up, at its end. The first
 * reading only moves the thread's timer (it used to wake the thread to
 * start the clock, then the clock woke it again). */
static void one_wake_per_batch(void **state)
{
    struct fixture *f = *state;
    f->conf.batch_interval_ms = 300;
    f->conf.housekeeping_ms = 600000; /* nothing else wakes it */
    start(f);
    settle(f, 50); /* the thread has gone to sleep */
    uint64_t wakes = STAT(f, wakes), commits = STAT(f, commits);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(push(f, f->gauge, TS0 + i, i), 0);
        settle(f, 10);
    }
    wait_committed(f, 5);
    settle(f, 50);
    uint64_t nc = STAT(f, commits) - commits, nw = STAT(f, wakes) - wakes;
    assert_true(nc >= 1); /* one, unless the machine stalled the pushes */
    assert_int_equal(nw, nc);
    /* cursor advances alone: also one wake, at the end of their second */
    wakes = STAT(f, wakes);
    commits = STAT(f, commits);
    mt_writer_cursor(f->w, "http", 5);
    wait_cursor(f, "http", 5);
    settle(f, 50);
    assert_int_equal(STAT(f, commits) - commits, 1);
    assert_int_equal(STAT(f, wakes) - wakes, 1);
    /* batch_size readings still wake it at once */
    f->conf.batch_size = 3;
    f->conf.batch_interval_ms = 60000;
    mt_writer_set_conf(f->w, &f->conf);
    settle(f, 50);
    for (int i = 0; i < 3; i++)
        assert_int_equal(push(f, f->gauge, TS0 + 10 + i, i), 0);
    wait_committed(f, 8);
}

static bool calls_reached(void *arg)
{
    struct wait *w = arg;
    return w->f->cb_calls >= w->seq;
}

/* Issue 14: with nobody listening on the loop a commit does not wake it;
 * a listener that comes later hears where the log is. */
static void commits_wake_the_loop_only_for_listeners(void **state)
{
    struct fixture *f = *state;
    start(f);
    mt_writer_listen(f->w, false);
    int calls = f->cb_calls;
    assert_int_equal(push(f, f->gauge, TS0, 1), 0);
    assert_int_equal(push(f, f->gauge, TS0 + 1, 2), 0);
    mt_writer_flush(f->w);
    for (int i = 0; i < 500 && mt_writer_committed(f->w) < 2; i++)
        settle(f, 10);
    assert_int_equal(mt_writer_committed(f->w), 2);
    settle(f, 50);
    assert_int_equal(f->cb_calls, calls);
    mt_writer_listen(f->w, true);
    struct wait w = {.f = f, .seq = calls + 1};
    assert_true(tu_run_until(&f->loop, calls_reached, &w, 5000));
    assert_int_equal(f->cb_seq, 2);
    assert_int_equal(push(f, f->gauge, TS0 + 2, 3), 0);
    wait_committed(f, 3);
}

static void parked_batches_are_committed(void **state)
{
    struct fixture *f = *state;
    start(f);
    mt_writer_park(f->w, "http", 3, 9, "HTTP 400");
    mt_writer_flush(f->w);
    settle(f, 100);
    assert_true(mt_writer_idle(f->w));
    sqlite3 *db;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT output, first_seq, last_seq, error FROM parked",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "http");
    assert_int_equal(sqlite3_column_int64(st, 1), 3);
    assert_int_equal(sqlite3_column_int64(st, 2), 9);
    assert_string_equal((const char *)sqlite3_column_text(st, 3), "HTTP 400");
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static void queue_max_refuses(void **state)
{
    struct fixture *f = *state;
    f->conf.queue_max = 3;
    f->conf.batch_size = 1000;
    f->conf.batch_interval_ms = 60000;
    start(f);
    for (int i = 0; i < 3; i++)
        assert_int_equal(push(f, f->gauge, TS0, i), 0);
    assert_int_equal(push(f, f->gauge, TS0, 3), -EAGAIN);
    assert_int_equal(push(f, f->gauge, TS0, 4), -EAGAIN);
    assert_int_equal(STAT(f, refused_queue), 2);
    assert_int_equal(STAT(f, queued), 3);
    mt_writer_flush(f->w);
    wait_committed(f, 3);
    assert_int_equal(push(f, f->gauge, TS0, 5), 0); /* room again */
    mt_writer_flush(f->w);
    wait_committed(f, 4);
    assert_int_equal(STAT(f, refused_queue), 2);
    assert_int_equal(STAT(f, stored), 4);
}

static void retention_waits_for_every_consumer(void **state)
{
    struct fixture *f = *state;
    int64_t lo, hi, n, last;
    f->conf.retention_ms = 60000;
    start(f);
    /* registered before there is anything to delete */
    mt_writer_cursor(f->w, "a", 0);
    mt_writer_cursor(f->w, "b", 0);
    int64_t old = mt_now_us() - 3600 * 1000000LL, young = mt_now_us();
    for (int i = 1; i <= 10; i++)
        assert_int_equal(push(f, f->gauge, old + i, i), 0);
    assert_int_equal(push(f, f->gauge, young, 11), 0);
    assert_int_equal(push(f, f->gauge, young, 12), 0);
    wait_committed(f, 12);
    settle(f, 150); /* several housekeeping rounds */
    bounds(f, &lo, &hi, &n);
    assert_int_equal(lo, 1); /* nobody has passed anything */
    assert_int_equal(STAT(f, deleted_retention), 0);

    mt_writer_cursor(f->w, "a", 3);
    mt_writer_cursor(f->w, "b", 10);
    wait_oldest(f, 4);
    settle(f, 150);
    bounds(f, &lo, &hi, &n);
    assert_int_equal(lo, 4); /* a is behind: 4..10 are old but held back */
    assert_int_equal(STAT(f, deleted_retention), 3);

    const char *still[] = {"b"}; /* output a removed from the configuration */
    mt_writer_keep_consumers(f->w, still, 1);
    wait_oldest(f, 11);
    mt_writer_cursor(f->w, "b", 12);
    settle(f, 150);
    bounds(f, &lo, &hi, &n);
    assert_int_equal(lo, 11); /* passed, but young */
    assert_int_equal(hi, 12);
    assert_int_equal(STAT(f, deleted_retention), 10);
    assert_int_equal(mt_log_last_seq(f->rd, &last), 0);
    assert_int_equal(last, 12);
}

static void retention_keeps_the_numbering(void **state)
{
    struct fixture *f = *state;
    int64_t lo, hi, n;
    f->conf.retention_ms = 1000;
    start(f);
    int64_t old = mt_now_us() - 3600 * 1000000LL;
    for (int i = 1; i <= 5; i++)
        assert_int_equal(push(f, f->gauge, old, i), 0);
    wait_committed(f, 5);
    wait_stat(f, &mt_writer_stats(f->w)->deleted_retention, 5, 5000); /* no consumers */
    bounds(f, &lo, &hi, &n);
    assert_int_equal(n, 0);
    stop(f);
    start(f);
    assert_int_equal(push(f, f->gauge, mt_now_us(), 6), 0);
    wait_committed(f, 6); /* 6, not 1: numbers are never given twice */
    struct mt_row rows[4];
    assert_int_equal(read_rows(f, rows, 4), 1);
    assert_int_equal(rows[0].seq, 6);
}

static uint64_t used_bytes(struct fixture *f)
{
    uint64_t u = 0;
    assert_int_equal(mt_log_used_bytes(f->rd, &u), 0);
    return u;
}

static void fill(struct fixture *f, int n)
{
    for (int i = 1; i <= n; i++)
        assert_int_equal(push(f, f->gauge, TS0 + i, i + 0.5), 0);
}

static void cap_drop_oldest(void **state)
{
    struct fixture *f = *state;
    int64_t lo, hi, n;
    f->conf.batch_size = 1000;
    start(f);
    mt_writer_cursor(f->w, "out", 0);
    fill(f, 6000);
    wait_committed(f, 6000);
    uint64_t full = used_bytes(f);

    tu_capture_start();
    mt_writer_cursor(f->w, "out", 1000); /* delivered 1..1000 */
    f->conf.max_size = full / 2;
    mt_writer_set_conf(f->w, &f->conf);
    wait_stat(f, &mt_writer_stats(f->w)->dropped_cap, 1, 5000);
    settle(f, 150);
    uint64_t dropped = STAT(f, dropped_cap);
    assert_int_equal(STAT(f, deleted_cap_delivered), 1000); /* the delivered ones first */
    bounds(f, &lo, &hi, &n);
    assert_int_equal(lo, 1001 + (int64_t)dropped); /* then the oldest undelivered */
    assert_int_equal(hi, 6000);                    /* the newest are kept */
    assert_true(used_bytes(f) <= f->conf.max_size);
    assert_true(dropped < 5000);
    wait_log(f, "policy drop_oldest dropped", 1000); /* counted and said, never silent */
    settle(f, 150);
    assert_int_equal(STAT(f, dropped_cap), dropped); /* and then it stops */
    /* intake goes on */
    assert_int_equal(push(f, f->gauge, TS0, 1), 0);
    wait_committed(f, 6001);
    assert_int_equal(STAT(f, refused_full), 0);
}

static void cap_block_inputs(void **state)
{
    struct fixture *f = *state;
    int64_t lo, hi, n;
    f->conf.batch_size = 1000;
    /* only commits run the cap here: unblocking must not wait for a timer */
    f->conf.housekeeping_ms = 60000;
    start(f);
    mt_writer_cursor(f->w, "out", 0);
    fill(f, 6000);
    wait_committed(f, 6000);
    uint64_t full = used_bytes(f);

    tu_capture_start();
    f->conf.max_size = full / 2;
    f->conf.policy = MT_POLICY_BLOCK_INPUTS;
    mt_writer_set_conf(f->w, &f->conf); /* a new cap applies at once */
    wait_log(f, "policy block_inputs", 2000);
    assert_int_equal(push(f, f->gauge, TS0, 2), MITTARI_EFULL);
    assert_int_equal(push(f, f->gauge, TS0, 3), MITTARI_EFULL);
    assert_int_equal(STAT(f, refused_full), 2);
    assert_int_equal(STAT(f, dropped_cap), 0);
    bounds(f, &lo, &hi, &n);
    assert_int_equal(lo, 1); /* nothing undelivered was dropped */
    assert_int_equal(hi, 6000);

    mt_writer_cursor(f->w, "out", 3000); /* not enough to get under the cap */
    wait_stat(f, &mt_writer_stats(f->w)->deleted_cap_delivered, 3000, 3000);
    assert_int_equal(push(f, f->gauge, TS0, 4), MITTARI_EFULL);
    assert_int_equal(STAT(f, refused_full), 3);

    mt_writer_cursor(f->w, "out", 6000); /* the output caught up */
    wait_log(f, "inputs accepted", 3000);
    assert_int_equal(push(f, f->gauge, TS0, 5), 0);
    wait_committed(f, 6001);
    assert_int_equal(STAT(f, refused_full), 3);
    assert_int_equal(STAT(f, deleted_cap_delivered), 6000);
    assert_int_equal(STAT(f, dropped_cap), 0);
    bounds(f, &lo, &hi, &n);
    assert_int_equal(lo, 6001);
}

static void disk_full_is_retried_nothing_lost(void **state)
{
    struct fixture *f = *state;
    struct mt_row rows[32];
    start(f);
    for (int i = 1; i <= 5; i++)
        assert_int_equal(push(f, f->gauge, TS0 + i, i), 0);
    assert_int_equal(push_counter(f, f->c32, TS0, 100), 0);
    assert_int_equal(push_counter(f, f->c32, TS0, 110), 0); /* +10 */
    wait_committed(f, 6);

    tu_capture_start();
    atomic_store(&disk_full, true);
    for (int i = 6; i <= 8; i++)
        assert_int_equal(push(f, f->gauge, TS0 + i, i), 0);
    assert_int_equal(push_counter(f, f->c32, TS0, 130), 0);       /* +20 */
    assert_int_equal(push_counter(f, f->c32, TS0, 160), 0);       /* +30 */
    wait_stat(f, &mt_writer_stats(f->w)->commit_errors, 2, 5000); /* and a retry failed */
    assert_int_equal(mt_writer_error(f->w), -ENOSPC);
    assert_int_equal(mt_writer_committed(f->w), 6);
    assert_true(tu_captured("disk full"));
    assert_int_equal(push(f, f->gauge, TS0 + 9, 9), 0); /* still taken meanwhile */

    atomic_store(&disk_full, false);
    wait_committed(f, 12);
    settle(f, 50);
    assert_int_equal(mt_writer_error(f->w), 0);
    assert_true(tu_captured("work again"));
    assert_int_equal(read_rows(f, rows, 32), 12);
    const double want[] = {1, 2, 3, 4, 5, 10, 6, 7, 8, 20, 30, 9};
    for (int i = 0; i < 12; i++) {
        assert_int_equal(rows[i].seq, i + 1);
        assert_true(rows[i].value == want[i]);
    }
    assert_int_equal(STAT(f, stored), 12);
    assert_int_equal(STAT(f, counter_first), 1); /* counted once, not per attempt */
    char msg[64];
    assert_int_equal(mt_log_integrity(f->rd, msg, sizeof(msg)), 0);
}

static void stop_commits_what_is_queued(void **state)
{
    struct fixture *f = *state;
    struct mt_row rows[16];
    f->conf.batch_size = 1000;
    f->conf.batch_interval_ms = 60000;
    start(f);
    for (int i = 1; i <= 7; i++)
        assert_int_equal(push(f, f->gauge, TS0 + i, i), 0);
    mt_writer_cursor(f->w, "out", 3);
    mt_writer_park(f->w, "out", 1, 2, "refused");
    assert_int_equal(mt_writer_committed(f->w), 0);
    stop(f);
    assert_int_equal(read_rows(f, rows, 16), 7);
    assert_int_equal(rows[6].seq, 7);
    assert_int_equal(cursor_of(f, "out"), 3);
}

static void stop_gives_up_at_its_deadline(void **state)
{
    struct fixture *f = *state;
    f->conf.batch_interval_ms = 60000;
    start(f);
    tu_capture_start();
    atomic_store(&disk_full, true);
    for (int i = 1; i <= 3; i++)
        assert_int_equal(push(f, f->gauge, TS0 + i, i), 0);
    int64_t t0 = mt_mono_us();
    mt_writer_stop(f->w, 300);
    f->w = NULL;
    uv_run(&f->loop, UV_RUN_DEFAULT);
    mt_series_free(&f->reg);
    int64_t took = mt_mono_us() - t0;
    atomic_store(&disk_full, false);
    assert_true(took >= 250000);
    assert_true(took < 3000000);
    assert_true(tu_captured("3 readings accepted from inputs could not be stored"));
}

/* The watchdog's question (agent.c): a writer gathering a batch for its
 * batch_interval waits on purpose (not busy); one hanging in a commit is
 * busy since the commit began, for as long as it hangs. */
static void busy_only_while_committing(void **state)
{
    struct fixture *f = *state;
    f->conf.batch_interval_ms = 60000;
    start(f);
    assert_int_equal(mt_writer_busy_since(f->w), 0); /* idle */
    assert_int_equal(push(f, f->gauge, TS0 + 1, 1), 0);
    settle(f, 200);
    assert_int_equal(mt_writer_committed(f->w), 0); /* still gathering */
    assert_int_equal(mt_writer_busy_since(f->w), 0);

    atomic_store(&write_stalled, true);
    int64_t t0 = mt_mono_us();
    mt_writer_flush(f->w);
    int64_t since = 0;
    while (!since && mt_mono_us() - t0 < 5000000) {
        usleep(1000);
        since = mt_writer_busy_since(f->w);
    }
    assert_true(since >= t0);
    usleep(300000);
    assert_int_equal(mt_writer_busy_since(f->w), since); /* still that commit */
    assert_true(mt_mono_us() - since >= 300000);
    atomic_store(&write_stalled, false);
    wait_committed(f, 1);
    settle(f, 50);
    assert_int_equal(mt_writer_busy_since(f->w), 0);
}

/* ---- consumer steps (the rule engine's commits) ---- */

static int step(struct fixture *f, const char *name, int64_t cursor, const char *state,
                const struct mt_rec *recs, size_t n, int64_t *ticket)
{
    struct mt_consumer_step s = {.name = name,
                                 .cursor = cursor,
                                 .state_version = 3,
                                 .state = state,
                                 .state_len = state ? strlen(state) : 0,
                                 .keep_state = state == NULL,
                                 .recs = recs,
                                 .nrecs = n};
    return mt_writer_step(f->w, &s, ticket);
}

static void assert_state(struct fixture *f, const char *name, const char *want)
{
    void *blob = NULL;
    size_t len = 0;
    int64_t version = 0;
    int rc = mt_log_get_state(f->rd, name, &version, &blob, &len);
    if (!want) {
        assert_int_equal(rc, -ENOENT);
        return;
    }
    assert_int_equal(rc, 0);
    assert_int_equal(version, 3);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(blob, want, len);
    free(blob);
}

static bool ticket_reached(void *arg)
{
    struct wait *w = arg;
    return mt_writer_steps_committed(w->f->w) >= w->seq;
}

static void wait_ticket(struct fixture *f, int64_t ticket)
{
    struct wait w = {.f = f, .seq = ticket};
    if (!tu_run_until(&f->loop, ticket_reached, &w, 5000))
        fail_msg("steps committed %lld, waited for %lld",
                 (long long)mt_writer_steps_committed(f->w), (long long)ticket);
}

static void step_commits_readings_state_and_cursor(void **state)
{
    struct fixture *f = *state;
    struct mt_row rows[16];
    int64_t t1 = 0, t2 = 0;
    start(f);
    uint32_t hourly = intern(f, "visitors_hourly", MITTARI_KIND_DELTA, 0);
    for (int i = 1; i <= 4; i++)
        assert_int_equal(push(f, f->gauge, TS0 + i, i), 0);
    wait_committed(f, 4);
    struct mt_rec d[2] = {
        {.ts = TS0, .series = hourly, .kind = MITTARI_KIND_DELTA, .value = 42},
        {.ts = TS0 + 3600000000LL, .series = hourly, .kind = MITTARI_KIND_DELTA,
         .flags = MT_RF_SUPPRESSED | 1u << 1, .min_count = 5},
    };
    assert_int_equal(step(f, "rule:hourly", 4, "{w=1}", d, 2, &t1), 0);
    wait_ticket(f, t1);
    assert_int_equal(t1, 1);
    /* the derived readings follow the raw ones, with their flags */
    assert_int_equal(read_rows(f, rows, 16), 6);
    assert_int_equal(rows[4].seq, 5);
    assert_true(rows[4].value == 42);
    assert_int_equal(rows[4].flags, 0);
    assert_int_equal(rows[5].seq, 6);
    assert_int_equal(rows[5].flags & MT_RF_SUPPRESSED, MT_RF_SUPPRESSED);
    assert_int_equal(MT_RF_REVISION(rows[5].flags), 1);
    assert_int_equal(rows[5].min_count, 5);
    assert_true(rows[5].value == 0);
    assert_int_equal(cursor_of(f, "rule:hourly"), 4);
    assert_state(f, "rule:hourly", "{w=1}");
    assert_int_equal(STAT(f, derived), 2);
    assert_int_equal(STAT(f, stored), 4);
    /* a step without readings that keeps its state moves only the cursor */
    assert_int_equal(step(f, "rule:hourly", 6, NULL, NULL, 0, &t2), 0);
    wait_ticket(f, t2);
    assert_int_equal(cursor_of(f, "rule:hourly"), 6);
    assert_state(f, "rule:hourly", "{w=1}");
    /* a consumer that never stepped has no state */
    assert_state(f, "rule:other", NULL);
}

static void step_refuses_counters_and_bounds_the_queue(void **state)
{
    struct fixture *f = *state;
    f->conf.queue_max = 3;
    f->conf.batch_interval_ms = 60000; /* nothing commits on its own */
    f->conf.batch_size = 1000;
    start(f);
    struct mt_rec c = {.ts = TS0, .series = f->c32, .kind = MITTARI_KIND_CUMULATIVE, .bits = 32};
    assert_int_equal(step(f, "r", 0, "", &c, 1, NULL), -EINVAL);
    assert_int_equal(step(f, "", 0, "", NULL, 0, NULL), -EINVAL);
    struct mt_rec d[2] = {{.ts = TS0, .series = f->gauge, .kind = MITTARI_KIND_GAUGE, .value = 1},
                          {.ts = TS0, .series = f->gauge, .kind = MITTARI_KIND_GAUGE, .value = 2}};
    assert_int_equal(step(f, "r", 0, "a", d, 2, NULL), 0);
    assert_int_equal(step(f, "r", 0, "b", d, 2, NULL), -EAGAIN); /* 4 > queue_max waiting */
    mt_writer_flush(f->w);
    wait_committed(f, 2);
    wait_ticket(f, 1);
    assert_int_equal(step(f, "r", 0, "b", d, 2, NULL), 0); /* room again */
    mt_writer_flush(f->w);
    wait_committed(f, 4);
    assert_state(f, "r", "b");
}

/* A step is all or nothing: while the disk is full none of it is visible,
 * afterwards all of it, once. */
static void step_is_atomic_across_a_full_disk(void **state)
{
    struct fixture *f = *state;
    struct mt_row rows[16];
    int64_t t = 0;
    start(f);
    assert_int_equal(push(f, f->gauge, TS0, 1), 0);
    wait_committed(f, 1);
    tu_capture_start();
    atomic_store(&disk_full, true);
    struct mt_rec d = {.ts = TS0, .series = f->gauge, .kind = MITTARI_KIND_GAUGE, .value = 9};
    assert_int_equal(step(f, "r", 1, "s1", &d, 1, &t), 0);
    assert_int_equal(push(f, f->gauge, TS0 + 1, 2), 0);
    wait_stat(f, &mt_writer_stats(f->w)->commit_errors, 2, 5000);
    assert_int_equal(mt_writer_steps_committed(f->w), 0);
    assert_int_equal(read_rows(f, rows, 16), 1);
    assert_state(f, "r", NULL);
    assert_int_equal(cursor_of(f, "r"), 0); /* none yet */
    atomic_store(&disk_full, false);
    wait_ticket(f, t);
    assert_int_equal(read_rows(f, rows, 16), 3);
    assert_true(rows[1].value == 2); /* the raw reading, then the step's */
    assert_true(rows[2].value == 9);
    assert_state(f, "r", "s1");
    assert_int_equal(cursor_of(f, "r"), 1);
    assert_int_equal(STAT(f, derived), 1);
}


/* ---- issue 15: block_inputs, retention overflow, the queue bound ---- */

/* Fills n rows and returns the bytes in use. */
static uint64_t fill_measured(struct fixture *f, int n)
{
    fill(f, n);
    wait_committed(f, n);
    return used_bytes(f);
}

/* The output catches up while the log sits between 90 and 100 % of its cap:
 * the delivered rows are deleted and inputs come back (before, nothing
 * deleted there until retention, so they never did). */
static void block_inputs_unblocks_between_90_and_100(void **state)
{
    struct fixture *f = *state;
    const int n = 30000;
    f->conf.batch_size = 5000;
    f->conf.housekeeping_ms = 60000; /* only commits run the cap */
    start(f);
    mt_writer_cursor(f->w, "out", 0);
    uint64_t full = fill_measured(f, n);

    tu_capture_start();
    f->conf.max_size = full / 2;
    f->conf.policy = MT_POLICY_BLOCK_INPUTS;
    mt_writer_set_conf(f->w, &f->conf);
    push(f, f->gauge, TS0, 0); /* refused, or (before issue 15) the commit that ran the cap */
    wait_log(f, "policy block_inputs", 2000);
    /* the output delivers in steps of 1 % until the log is just under its
     * cap: between 90 and 100 % of it */
    uint64_t used = used_bytes(f);
    int part = 0;
    while (used > f->conf.max_size) {
        part += n / 100;
        mt_writer_cursor(f->w, "out", part);
        mt_writer_flush(f->w); /* a cursor alone would wait up to a second */
        wait_stat(f, &mt_writer_stats(f->w)->deleted_cap_delivered, (uint64_t)part, 3000);
        used = used_bytes(f);
    }
    assert_true(used > f->conf.max_size / 10 * 9);
    assert_int_equal(push(f, f->gauge, TS0, 1), MITTARI_EFULL); /* still above 90 % */

    int64_t last = mt_writer_committed(f->w);
    mt_writer_cursor(f->w, "out", last); /* caught up */
    wait_log(f, "inputs accepted", 3000);
    assert_int_equal(push(f, f->gauge, TS0, 2), 0);
    wait_committed(f, last + 1);
    assert_int_equal(STAT(f, deleted_cap_delivered), (uint64_t)last);
    assert_int_equal(STAT(f, dropped_cap), 0);
}

/* A reload that lifts the cap (max_size 0), or changes the policy, while
 * inputs are blocked lets them in at once. */
static void block_inputs_lifted_by_reload(void **state)
{
    struct fixture *f = *state;
    f->conf.batch_size = 1000;
    f->conf.housekeeping_ms = 60000;
    start(f);
    mt_writer_cursor(f->w, "out", 0);
    uint64_t full = fill_measured(f, 6000);
    tu_capture_start();
    f->conf.max_size = full / 2;
    f->conf.policy = MT_POLICY_BLOCK_INPUTS;
    mt_writer_set_conf(f->w, &f->conf);
    push(f, f->gauge, TS0, 0); /* refused, or (before issue 15) the commit that ran the cap */
    wait_log(f, "policy block_inputs", 2000);
    assert_int_equal(push(f, f->gauge, TS0, 1), MITTARI_EFULL);
    int64_t last = mt_writer_committed(f->w);
    f->conf.max_size = 0;
    mt_writer_set_conf(f->w, &f->conf);
    wait_log(f, "no size cap any more", 2000);
    assert_int_equal(push(f, f->gauge, TS0, 2), 0);
    wait_committed(f, last + 1);

    /* blocked again, then the policy changes to drop_oldest */
    f->conf.max_size = full / 2;
    mt_writer_set_conf(f->w, &f->conf);
    settle(f, 200);
    assert_int_equal(push(f, f->gauge, TS0, 3), MITTARI_EFULL);
    f->conf.policy = MT_POLICY_DROP_OLDEST;
    mt_writer_set_conf(f->w, &f->conf);
    wait_log(f, "no longer block_inputs", 2000);
    assert_int_equal(push(f, f->gauge, TS0, 4), 0);
    wait_stat(f, &mt_writer_stats(f->w)->dropped_cap, 1, 3000);
}

/* No consumer at all: nobody waits for a reading, so the cap deletes the
 * oldest as delivered (as retention does) and block_inputs never blocks. */
static void block_inputs_without_consumers(void **state)
{
    struct fixture *f = *state;
    int64_t lo, hi, n;
    f->conf.batch_size = 1000;
    start(f);
    uint64_t full = fill_measured(f, 6000);
    f->conf.max_size = full / 2;
    f->conf.policy = MT_POLICY_BLOCK_INPUTS;
    mt_writer_set_conf(f->w, &f->conf);
    wait_stat(f, &mt_writer_stats(f->w)->deleted_cap_delivered, 1, 3000);
    settle(f, 100);
    assert_int_equal(push(f, f->gauge, TS0, 1), 0);
    wait_committed(f, 6001);
    assert_int_equal(STAT(f, refused_full), 0);
    assert_int_equal(STAT(f, dropped_cap), 0);
    bounds(f, &lo, &hi, &n);
    assert_true(lo > 1);
    assert_int_equal(hi, 6001);
    assert_true(used_bytes(f) <= f->conf.max_size);
}

/* retention: 1000000000d overflowed retention_ms * 1000 and deleted
 * delivered rows of any age; a huge retention keeps everything. */
static void retention_huge_keeps_everything(void **state)
{
    struct fixture *f = *state;
    int64_t lo, hi, n;
    f->conf.retention_ms = 1000000000LL * 86400000LL;
    start(f);
    mt_writer_cursor(f->w, "out", 0);
    int64_t old = mt_now_us() - 3600 * 1000000LL;
    for (int i = 1; i <= 20; i++)
        assert_int_equal(push(f, f->gauge, old - i * 86400000000LL, i), 0);
    wait_committed(f, 20);
    mt_writer_cursor(f->w, "out", 20); /* all delivered */
    wait_cursor(f, "out", 20);
    settle(f, 200); /* many housekeeping rounds */
    bounds(f, &lo, &hi, &n);
    assert_int_equal(lo, 1);
    assert_int_equal(hi, 20);
    assert_int_equal(STAT(f, deleted_retention), 0);
}

/* While commits fail, the readings held in memory (queued and pending
 * together) never exceed queue_max: the rest is refused at the input. */
static void queue_max_holds_while_commits_fail(void **state)
{
    struct fixture *f = *state;
    f->conf.queue_max = 500;
    f->conf.batch_size = 100;
    f->conf.batch_interval_ms = 1;
    start(f);
    tu_capture_start();
    atomic_store(&disk_full, true);
    uint64_t accepted = 0;
    int64_t until = mt_mono_us() + 1500000; /* several failed commits and takes */
    while (mt_mono_us() < until) {
        for (int i = 0; i < 200; i++)
            if (push(f, f->gauge, TS0 + i, i) == 0)
                accepted++;
        assert_true(mt_writer_held(f->w) <= 500);
        settle(f, 20);
    }
    assert_true(STAT(f, commit_errors) >= 2);
    assert_int_equal(accepted, 500);
    assert_int_equal(mt_writer_held(f->w), 500);
    assert_true(STAT(f, refused_queue) > 0);
    atomic_store(&disk_full, false);
    wait_committed(f, 500); /* every accepted one stored, nothing else */
    settle(f, 50);
    assert_int_equal(STAT(f, stored), 500);
    assert_int_equal(mt_writer_held(f->w), 0);
}

struct ended {
    int calls;
    struct mt_writer_end end;
    int64_t committed_at_end;
    struct mt_writer *w;
};

static void on_ended(void *arg, const struct mt_writer_end *e)
{
    struct ended *x = arg;
    x->calls++;
    x->end = *e;
    x->committed_at_end = mt_writer_committed(x->w);
}

static bool has_ended(void *arg)
{
    return ((struct ended *)arg)->calls > 0;
}

/* Issue 8 §3: a stop that cannot store what it accepted says how many;
 * the struct outlives the thread and refuses what comes later. */
static void stop_reports_what_it_could_not_store(void **state)
{
    struct fixture *f = *state;
    struct ended x = {.w = NULL};
    start(f);
    x.w = f->w;
    assert_int_equal(push(f, f->gauge, TS0, 1), 0);
    wait_committed(f, 1);
    tu_capture_start();
    atomic_store(&disk_full, true);
    for (int i = 0; i < 4; i++)
        assert_int_equal(push(f, f->gauge, TS0, i), 0);
    mt_writer_end(f->w, 300, on_ended, &x);
    assert_int_equal(push(f, f->gauge, TS0, 9), MITTARI_ESTOPPED); /* intake closed */
    assert_true(tu_run_until(&f->loop, has_ended, &x, 5000));
    assert_int_equal(x.calls, 1);
    assert_int_equal(x.end.lost, 4);
    assert_int_equal(x.end.error, -ENOSPC);
    assert_int_equal(x.committed_at_end, 1);
    /* after the thread: still safe to call, refused and counted */
    assert_int_equal(push(f, f->gauge, TS0, 10), MITTARI_ESTOPPED);
    mt_writer_cursor(f->w, "late", 1);
    assert_int_equal(STAT(f, refused_stopped), 2);
    atomic_store(&disk_full, false);
    mt_writer_free(f->w);
    f->w = NULL;
    uv_run(&f->loop, UV_RUN_DEFAULT);
    mt_series_free(&f->reg);
    struct mt_row rows[8];
    assert_int_equal(read_rows(f, rows, 8), 1);
}

/* ---- issue 8 §2: a damaged log ---- */

/* Overwrites page pageno of path with garbage. */
static void garble_page(const char *path, int64_t pageno, int64_t page_size)
{
    FILE *fp = fopen(path, "r+b");
    assert_non_null(fp);
    unsigned char junk[65536];
    for (int64_t i = 0; i < page_size; i++)
        junk[i] = (unsigned char)(0x5a ^ (i * 131));
    assert_int_equal(fseek(fp, (long)((pageno - 1) * page_size), SEEK_SET), 0);
    assert_int_equal(fwrite(junk, 1, (size_t)page_size, fp), (size_t)page_size);
    fclose(fp);
}

static int64_t sql_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    int64_t v = -1;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* The page the next insert goes to is damaged under the running writer:
 * another connection changes the log (so the writer's page cache is
 * dropped) and checkpoints it into the file, then the last leaf of the
 * readings table is overwritten. */
static void damage_last_leaf(struct fixture *f)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    int64_t leaf = sql_int(db, "SELECT pageno FROM dbstat WHERE name = 'readings' AND "
                               "pagetype = 'leaf' ORDER BY path DESC LIMIT 1");
    int64_t psize = sql_int(db, "PRAGMA page_size");
    assert_true(leaf > 1);
    assert_int_equal(sqlite3_exec(db, "INSERT OR REPLACE INTO meta VALUES('poke', 1)", NULL, NULL,
                                  NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    garble_page(f->path, leaf, psize);
}

static char *file_digest(const char *path)
{
    size_t len = 0;
    char *p = tu_read(path, &len);
    assert_non_null(p);
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    free(p);
    char *out = malloc(40);
    snprintf(out, 40, "%zu/%016llx", len, (unsigned long long)h);
    return out;
}

static bool writer_failed(void *arg)
{
    return mt_writer_error(((struct fixture *)arg)->w) == MITTARI_ESTORAGE;
}

/* SQLITE_CORRUPT met by a commit: FAILED, not retried; intake refused; not
 * one more byte into the file, not even at close; what it held is lost and
 * counted. */
static void corrupt_commit_fails_for_good(void **state)
{
    struct fixture *f = *state;
    struct ended x = {0};
    f->conf.batch_size = 1000;
    start(f);
    x.w = f->w;
    fill(f, 3000);
    wait_committed(f, 3000);
    settle(f, 50);
    damage_last_leaf(f);
    char *before = file_digest(f->path);
    tu_capture_start();
    assert_int_equal(push(f, f->gauge, TS0, 1), 0);
    mt_writer_flush(f->w);
    assert_true(tu_run_until(&f->loop, writer_failed, f, 5000));
    wait_log(f, "writing nothing more", 1000);
    assert_int_equal(STAT(f, commit_errors), 1); /* not retried */
    settle(f, 400);
    assert_int_equal(STAT(f, commit_errors), 1);
    assert_int_equal(push(f, f->gauge, TS0, 2), MITTARI_ESTORAGE);
    assert_int_equal(STAT(f, refused_storage), 1);
    char what[256];
    mt_writer_fault_text(f->w, what, sizeof(what));
    assert_non_null(strstr(what, "committing"));
    mt_writer_end(f->w, 1000, on_ended, &x);
    assert_true(tu_run_until(&f->loop, has_ended, &x, 5000));
    assert_int_equal(x.end.error, MITTARI_ESTORAGE);
    assert_int_equal(x.end.lost, 1);
    mt_writer_free(f->w);
    f->w = NULL;
    uv_run(&f->loop, UV_RUN_DEFAULT);
    mt_series_free(&f->reg);
    mt_log_close(f->rd); /* the last connection: nothing checkpoints either */
    f->rd = NULL;
    char *after = file_digest(f->path);
    assert_string_equal(before, after);
    free(before);
    free(after);
}


/* SQLITE_CORRUPT met by housekeeping (retention deleting the oldest rows,
 * pages no commit reads): FAILED the same way. */
static void corrupt_housekeeping_fails_for_good(void **state)
{
    struct fixture *f = *state;
    f->conf.batch_size = 5000;
    f->conf.retention_ms = 1000;
    f->conf.housekeeping_ms = 60000; /* not before the damage is there */
    start(f);
    int64_t old = mt_now_us() - 3600 * 1000000LL;
    for (int i = 1; i <= 20000; i++)
        assert_int_equal(push(f, f->gauge, old + i, i), 0);
    wait_committed(f, 20000);
    mt_writer_cursor(f->w, "out", 20000);
    wait_cursor(f, "out", 20000);
    /* the first leaf, under the writer: its cache dropped by another
     * connection's change, the page overwritten in the file */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    int64_t first = sql_int(db, "SELECT pageno FROM dbstat WHERE name = 'readings' AND "
                                "pagetype = 'leaf' ORDER BY path LIMIT 1");
    int64_t psize = sql_int(db, "PRAGMA page_size");
    assert_int_equal(sqlite3_exec(db, "INSERT OR REPLACE INTO meta VALUES('poke', 1)", NULL, NULL,
                                  NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    garble_page(f->path, first, psize);
    tu_capture_start();
    f->conf.housekeeping_ms = 20;
    mt_writer_set_conf(f->w, &f->conf);
    assert_true(tu_run_until(&f->loop, writer_failed, f, 5000));
    char what[256];
    mt_writer_fault_text(f->w, what, sizeof(what));
    assert_non_null(strstr(what, "housekeeping"));
    assert_int_equal(push(f, f->gauge, mt_now_us(), 1), MITTARI_ESTORAGE);
}

/* A reader (an output, a rule, the start check) reports the damage: the
 * writer stops writing the same way. */
static void fault_from_a_reader(void **state)
{
    struct fixture *f = *state;
    start(f);
    fill(f, 10);
    wait_committed(f, 10);
    tu_capture_start();
    mt_writer_fault(f->w, -EIO, "not a storage fault"); /* ignored */
    settle(f, 50);
    assert_int_equal(mt_writer_error(f->w), 0);
    mt_writer_fault(f->w, MITTARI_ESTORAGE, "output x: reading the log: malformed");
    assert_true(tu_run_until(&f->loop, writer_failed, f, 3000));
    assert_int_equal(push(f, f->gauge, TS0, 1), MITTARI_ESTORAGE);
    mt_writer_cursor(f->w, "x", 5); /* dropped, not written */
    settle(f, 1500);
    assert_int_equal(cursor_of(f, "x"), -1 + 1); /* no cursor: -ENOENT gives 0 */
    char what[256];
    mt_writer_fault_text(f->w, what, sizeof(what));
    assert_string_equal(what, "output x: reading the log: malformed");
}

/* ---- issue 8 §6: resets said, wraps and resets per input ---- */

static void resets_logged_and_counted_per_input(void **state)
{
    struct fixture *f = *state;
    start(f);
    uint16_t a = mt_writer_origin(f->w, "door");
    uint16_t b = mt_writer_origin(f->w, "gate");
    assert_true(a > 0 && b > 0 && a != b);
    assert_int_equal(mt_writer_origin(f->w, "door"), a); /* the same name, the same number */
    tu_capture_start();
    const uint64_t seq[] = {70000, 3, 10, 2, 65530, 5, 1};
    for (size_t i = 0; i < MT_ARRAY_SIZE(seq); i++) {
        struct mt_rec r = {.ts = TS0 + (int64_t)i, .series = f->c32, .kind = MITTARI_KIND_CUMULATIVE,
                           .bits = 32, .counter = seq[i], .origin = a};
        assert_int_equal(mt_writer_push(f->w, &r), 0);
        mt_writer_flush(f->w);
        settle(f, 30);
    }
    struct mt_rec r16 = {.ts = TS0, .series = f->c16, .kind = MITTARI_KIND_CUMULATIVE, .bits = 16,
                         .counter = 65000, .origin = b};
    assert_int_equal(mt_writer_push(f->w, &r16), 0);
    r16.counter = 100; /* wrapped */
    assert_int_equal(mt_writer_push(f->w, &r16), 0);
    mt_writer_flush(f->w);
    settle(f, 100);
    /* 70000 -> 3, 10 -> 2, 65530 -> 5, 5 -> 1: four resets of a 32-bit counter */
    assert_int_equal(STAT(f, counter_resets), 4);
    assert_true(tu_captured("counter hki/dev/c32 went back from 70000 to 3"));
    /* the others of that series within 10 minutes are counted, not said */
    assert_false(tu_captured("went back from 10 to 2"));
    struct mt_origin_stats st;
    mt_writer_origin_stats(f->w, a, &st);
    assert_int_equal(st.resets, 4);
    assert_int_equal(st.wraps, 0);
    mt_writer_origin_stats(f->w, b, &st);
    assert_int_equal(st.resets, 0);
    assert_int_equal(st.wraps, 1);
}

/* At stop the intake closes: no more readings, also no derived ones; but an
 * output draining the log still moves its cursor and plan (a step without
 * readings), or its last batches could never be sent. */
static void closed_intake_takes_steps_without_readings(void **state)
{
    struct fixture *f = *state;
    int64_t t = 0;
    start(f);
    mt_writer_close_intake(f->w);
    assert_int_equal(push(f, f->gauge, TS0, 1), MITTARI_ESTOPPED);
    struct mt_rec d = {.ts = TS0, .series = f->gauge, .kind = MITTARI_KIND_GAUGE, .value = 9};
    assert_int_equal(step(f, "rule", 0, "s", &d, 1, NULL), MITTARI_ESTOPPED);
    assert_int_equal(step(f, "out", 0, "plan", NULL, 0, &t), 0);
    mt_writer_flush(f->w);
    wait_ticket(f, t);
    assert_state(f, "out", "plan");
}

int main(void)
{
    if (install_full_vfs()) {
        fprintf(stderr, "cannot install the test VFS\n");
        return 1;
    }
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(commits_dense_seqs_and_notifies),
        T(batches_by_size),
        T(batches_by_interval),
        T(cumulative_counters_become_deltas),
        T(counter_state_survives_restart),
        T(cursors_are_committed),
        T(cursor_alone_waits_up_to_a_second),
        T(one_wake_per_batch),
        T(commits_wake_the_loop_only_for_listeners),
        T(parked_batches_are_committed),
        T(queue_max_refuses),
        T(retention_waits_for_every_consumer),
        T(retention_keeps_the_numbering),
        T(cap_drop_oldest),
        T(cap_block_inputs),
        T(disk_full_is_retried_nothing_lost),
        T(stop_commits_what_is_queued),
        T(stop_gives_up_at_its_deadline),
        T(busy_only_while_committing),
        T(step_commits_readings_state_and_cursor),
        T(step_refuses_counters_and_bounds_the_queue),
        T(step_is_atomic_across_a_full_disk),
        T(closed_intake_takes_steps_without_readings),
        T(block_inputs_unblocks_between_90_and_100),
        T(block_inputs_lifted_by_reload),
        T(block_inputs_without_consumers),
        T(retention_huge_keeps_everything),
        T(queue_max_holds_while_commits_fail),
        T(stop_reports_what_it_could_not_store),
        T(corrupt_commit_fails_for_good),
        T(corrupt_housekeeping_fails_for_good),
        T(fault_from_a_reader),
        T(resets_logged_and_counted_per_input),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
