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
    mt_writer_set_conf(f->w, &f->conf);
    assert_int_equal(push(f, f->gauge, TS0, 1), 0); /* a commit runs the cap */
    wait_committed(f, 6001);
    wait_log(f, "policy block_inputs", 2000);
    assert_int_equal(push(f, f->gauge, TS0, 2), MITTARI_EFULL);
    assert_int_equal(push(f, f->gauge, TS0, 3), MITTARI_EFULL);
    assert_int_equal(STAT(f, refused_full), 2);
    assert_int_equal(STAT(f, dropped_cap), 0);
    bounds(f, &lo, &hi, &n);
    assert_int_equal(lo, 1); /* nothing undelivered was dropped */
    assert_int_equal(hi, 6001);

    mt_writer_cursor(f->w, "out", 3000); /* not enough to get under the cap */
    wait_stat(f, &mt_writer_stats(f->w)->deleted_cap_delivered, 3000, 3000);
    assert_int_equal(push(f, f->gauge, TS0, 4), MITTARI_EFULL);
    assert_int_equal(STAT(f, refused_full), 3);

    mt_writer_cursor(f->w, "out", 6001); /* the output caught up */
    wait_log(f, "inputs accepted", 3000);
    assert_int_equal(push(f, f->gauge, TS0, 5), 0);
    wait_committed(f, 6002);
    assert_int_equal(STAT(f, refused_full), 3);
    assert_int_equal(STAT(f, deleted_cap_delivered), 6001);
    assert_int_equal(STAT(f, dropped_cap), 0);
    bounds(f, &lo, &hi, &n);
    assert_int_equal(lo, 6002);
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
    assert_true(tu_captured("3 readings could not be stored"));
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
        T(parked_batches_are_committed),
        T(queue_max_refuses),
        T(retention_waits_for_every_consumer),
        T(retention_keeps_the_numbering),
        T(cap_drop_oldest),
        T(cap_block_inputs),
        T(disk_full_is_retried_nothing_lost),
        T(stop_commits_what_is_queued),
        T(stop_gives_up_at_its_deadline),
        T(step_commits_readings_state_and_cursor),
        T(step_refuses_counters_and_bounds_the_queue),
        T(step_is_atomic_across_a_full_disk),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
