/* The SQLite log: schema, refusals, readings, series, counters, cursors,
 * housekeeping queries. Every case works on a real file in its own
 * temporary directory. */
#include "testutil.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <mittari/mittari.h>

#include "log.h"
#include "logfacts.h"
#include "series.h"
#include "util.h"

struct fixture {
    char *dir;
    char *path;
    struct mt_logdb *db;
    char err[512];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    f->dir = tu_tmpdir();
    f->path = tu_path(f->dir, "log.db");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    mt_log_close(f->db);
    tu_rmtree(f->dir);
    free(f->dir);
    free(f->path);
    free(f);
    return 0;
}

static struct mt_logdb *open_writer(struct fixture *f)
{
    f->err[0] = 0;
    int rc = mt_log_open(&f->db, f->path, MT_LOG_WRITER, f->err, sizeof(f->err));
    if (rc)
        fail_msg("mt_log_open: %d %s", rc, f->err);
    return f->db;
}

/* Plain SQLite on the side, to look at or prepare a file. */
static int64_t sql_int(const char *path, const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    int64_t v = -1;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static bool journal_is_wal(const char *path)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    bool wal = false;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        wal = strcmp((const char *)sqlite3_column_text(st, 0), "wal") == 0;
    sqlite3_finalize(st);
    sqlite3_close(db);
    return wal;
}

static void sql_exec(const char *path, const char *sql)
{
    sqlite3 *db;
    char *msg = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL),
                     SQLITE_OK);
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg);
    sqlite3_close(db);
}

static void put_rows(struct mt_logdb *db, int64_t from, int64_t to, int64_t ts0)
{
    assert_int_equal(mt_log_begin(db), 0);
    for (int64_t s = from; s <= to; s++)
        assert_int_equal(mt_log_put_reading(db, s, ts0 + s, 1, (double)s, NULL), 0);
    assert_int_equal(mt_log_commit(db), 0);
}

static int64_t count_rows(struct mt_logdb *db)
{
    int64_t lo, hi, n;
    assert_int_equal(mt_log_bounds(db, &lo, &hi, &n), 0);
    return n;
}

/* ---- opening ---- */

static void creates_schema(void **state)
{
    struct fixture *f = *state;
    open_writer(f);
    assert_string_equal(mt_log_path(f->db), f->path);
    mt_log_close(f->db);
    f->db = NULL;
    assert_int_equal(sql_int(f->path, "PRAGMA application_id"), MT_LOG_APP_ID);
    assert_int_equal(sql_int(f->path, "PRAGMA user_version"), MT_LOG_SCHEMA);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM sqlite_master WHERE type='table' AND "
                                      "name IN ('meta','series','readings','counters','cursors',"
                                      "'parked')"),
                     6);
    assert_true(journal_is_wal(f->path));
    /* opening again keeps what is there */
    open_writer(f);
    assert_int_equal(mt_log_put_meta(f->db, "k", 1), 0);
    mt_log_close(f->db);
    f->db = NULL;
    open_writer(f);
    int64_t v = 0;
    assert_int_equal(mt_log_get_meta(f->db, "k", &v), 0);
    assert_int_equal(v, 1);
}

static void refuses_foreign_application_id(void **state)
{
    struct fixture *f = *state;
    sql_exec(f->path, "PRAGMA application_id=1234; CREATE TABLE t(x); INSERT INTO t VALUES(1);");
    assert_int_equal(mt_log_open(&f->db, f->path, MT_LOG_WRITER, f->err, sizeof(f->err)),
                     MITTARI_ESTORAGE);
    assert_null(f->db);
    assert_non_null(strstr(f->err, "not a mittari log"));
    assert_non_null(strstr(f->err, f->path));
    assert_int_equal(mt_log_open(&f->db, f->path, MT_LOG_READER, f->err, sizeof(f->err)),
                     MITTARI_ESTORAGE);
    /* untouched, not even switched to WAL */
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM sqlite_master"), 1);
    assert_int_equal(sql_int(f->path, "PRAGMA application_id"), 1234);
    assert_false(journal_is_wal(f->path));
}

/* Most SQLite files have application_id 0: one with tables of its own is not
 * an empty file to make a log in. */
static void refuses_foreign_db_without_application_id(void **state)
{
    struct fixture *f = *state;
    sql_exec(f->path, "CREATE TABLE readings(x); INSERT INTO readings VALUES(1);");
    assert_int_equal(mt_log_open(&f->db, f->path, MT_LOG_WRITER, f->err, sizeof(f->err)),
                     MITTARI_ESTORAGE);
    assert_null(f->db);
    assert_non_null(strstr(f->err, "not a mittari log"));
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM sqlite_master"), 1);
    assert_int_equal(sql_int(f->path, "PRAGMA application_id"), 0);
    assert_int_equal(sql_int(f->path, "PRAGMA user_version"), 0);
    assert_false(journal_is_wal(f->path));
}

static void refuses_newer_schema(void **state)
{
    struct fixture *f = *state;
    open_writer(f);
    mt_log_close(f->db);
    f->db = NULL;
    sql_exec(f->path, "PRAGMA user_version=4");
    assert_int_equal(mt_log_open(&f->db, f->path, MT_LOG_WRITER, f->err, sizeof(f->err)),
                     MITTARI_ESTORAGE);
    assert_null(f->db);
    assert_non_null(strstr(f->err, "newer"));
    assert_non_null(strstr(f->err, "schema 4"));
    f->err[0] = 0;
    assert_int_equal(mt_log_open(&f->db, f->path, MT_LOG_READER, f->err, sizeof(f->err)),
                     MITTARI_ESTORAGE);
    assert_non_null(strstr(f->err, "newer"));
    assert_int_equal(sql_int(f->path, "PRAGMA user_version"), 4);
}

static void refuses_garbage_file(void **state)
{
    struct fixture *f = *state;
    char junk[8192];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (char)('a' + i % 26);
    junk[sizeof(junk) - 1] = 0;
    free(tu_write(f->dir, "log.db", junk));
    int flags[] = {MT_LOG_WRITER, MT_LOG_READER, MT_LOG_READONLY};
    for (size_t i = 0; i < MT_ARRAY_SIZE(flags); i++) {
        f->err[0] = 0;
        assert_int_equal(mt_log_open(&f->db, f->path, flags[i], f->err, sizeof(f->err)),
                         MITTARI_ESTORAGE);
        assert_null(f->db);
        assert_non_null(strstr(f->err, f->path));
        assert_non_null(strstr(f->err, "not a database"));
    }
    size_t len = 0;
    char *back = tu_read(f->path, &len);
    assert_int_equal(len, sizeof(junk) - 1);
    assert_memory_equal(back, junk, len);
    free(back);
}

static void missing_file_for_reader(void **state)
{
    struct fixture *f = *state;
    struct stat st;
    assert_int_equal(mt_log_open(&f->db, f->path, MT_LOG_READER, f->err, sizeof(f->err)), -ENOENT);
    assert_null(f->db);
    assert_int_equal(mt_log_open(&f->db, f->path, MT_LOG_READONLY, f->err, sizeof(f->err)),
                     -ENOENT);
    assert_non_null(strstr(f->err, f->path));
    assert_int_equal(stat(f->path, &st), -1); /* not created */
}

static void readonly_open(void **state)
{
    struct fixture *f = *state;
    struct mt_logdb *ro;
    struct mt_row rows[8];
    size_t n = 0;
    int64_t v = 0;

    open_writer(f);
    put_rows(f->db, 1, 5, 1000);
    assert_int_equal(mt_log_put_cursor(f->db, "out", 3, 1), 0);
    mt_log_close(f->db);
    f->db = NULL;
    assert_int_equal(mt_log_open(&ro, f->path, MT_LOG_READONLY, f->err, sizeof(f->err)), 0);
    assert_int_equal(mt_log_read(ro, 0, INT64_MAX, 8, rows, &n), 0);
    assert_int_equal(n, 5);
    assert_int_equal(mt_log_get_cursor(ro, "out", &v), 0);
    assert_int_equal(v, 3);
    assert_int_equal(mt_log_last_seq(ro, &v), 0);
    assert_int_equal(v, 5);
    assert_int_equal(mt_log_put_meta(ro, "x", 1), -EACCES);
    assert_int_equal(mt_log_get_meta(ro, "x", &v), -ENOENT);
    mt_log_close(ro);
}

/* ---- readings ---- */

static void readings_in_seq_order(void **state)
{
    struct fixture *f = *state;
    struct mt_row rows[16];
    size_t n = 99;
    const int64_t order[] = {5, 1, 9, 3, 7, 2, 10, 4, 8, 6};

    open_writer(f);
    assert_int_equal(mt_log_read(f->db, 0, INT64_MAX, 16, rows, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(mt_log_begin(f->db), 0);
    for (size_t i = 0; i < MT_ARRAY_SIZE(order); i++) {
        int64_t s = order[i];
        assert_int_equal(mt_log_put_reading(f->db, s, 1000 * s, (uint32_t)(s % 3 + 1), s + 0.25,
                                            s == 4 ? "SubjectPseudonym4xxxxx" : ""),
                         0);
    }
    assert_int_equal(mt_log_commit(f->db), 0);

    assert_int_equal(mt_log_read(f->db, 0, INT64_MAX, 16, rows, &n), 0);
    assert_int_equal(n, 10);
    for (size_t i = 0; i < n; i++) {
        int64_t s = (int64_t)i + 1;
        assert_int_equal(rows[i].seq, s);
        assert_int_equal(rows[i].ts, 1000 * s);
        assert_int_equal(rows[i].series, s % 3 + 1);
        assert_true(rows[i].value == s + 0.25);
        assert_string_equal(rows[i].subject, s == 4 ? "SubjectPseudonym4xxxxx" : "");
    }
    /* after < seq <= upto */
    assert_int_equal(mt_log_read(f->db, 3, 7, 16, rows, &n), 0);
    assert_int_equal(n, 4);
    assert_int_equal(rows[0].seq, 4);
    assert_int_equal(rows[3].seq, 7);
    /* at most max */
    assert_int_equal(mt_log_read(f->db, 3, 7, 2, rows, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(rows[0].seq, 4);
    assert_int_equal(rows[1].seq, 5);
    /* and the statement is reusable after stopping early */
    assert_int_equal(mt_log_read(f->db, 8, 100, 16, rows, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(rows[1].seq, 10);
    assert_int_equal(mt_log_read(f->db, 10, 100, 16, rows, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(mt_log_read(f->db, 5, 5, 16, rows, &n), 0);
    assert_int_equal(n, 0);
}

static void duplicate_seq_refused(void **state)
{
    struct fixture *f = *state;
    open_writer(f);
    put_rows(f->db, 1, 3, 0);
    assert_int_equal(mt_log_begin(f->db), 0);
    assert_int_equal(mt_log_put_reading(f->db, 2, 0, 1, 1, NULL), -EEXIST);
    mt_log_rollback(f->db);
    assert_int_equal(count_rows(f->db), 3);
}

static void rollback_discards(void **state)
{
    struct fixture *f = *state;
    int64_t v;
    open_writer(f);
    assert_int_equal(mt_log_begin(f->db), 0);
    assert_int_equal(mt_log_put_reading(f->db, 1, 0, 1, 1, NULL), 0);
    assert_int_equal(mt_log_put_cursor(f->db, "a", 1, 0), 0);
    mt_log_rollback(f->db);
    mt_log_rollback(f->db); /* harmless outside a transaction */
    assert_int_equal(count_rows(f->db), 0);
    assert_int_equal(mt_log_get_cursor(f->db, "a", &v), -ENOENT);
    assert_int_equal(v, 0);
}

/* A reader sees what the writer committed, not what it has in flight. */
static void reader_sees_committed_only(void **state)
{
    struct fixture *f = *state;
    struct mt_logdb *rd;
    struct mt_row rows[8];
    size_t n;

    open_writer(f);
    assert_int_equal(mt_log_open(&rd, f->path, MT_LOG_READER, f->err, sizeof(f->err)), 0);
    put_rows(f->db, 1, 2, 0);
    assert_int_equal(mt_log_begin(f->db), 0);
    assert_int_equal(mt_log_put_reading(f->db, 3, 0, 1, 3, NULL), 0);
    assert_int_equal(mt_log_read(rd, 0, INT64_MAX, 8, rows, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(mt_log_commit(f->db), 0);
    assert_int_equal(mt_log_read(rd, 0, INT64_MAX, 8, rows, &n), 0);
    assert_int_equal(n, 3);
    mt_log_close(rd);
}

/* SQLite's heap while a reader that has read every row is open */
static int64_t reader_cost(struct fixture *f, int flags)
{
    struct mt_logdb *rd;
    static struct mt_row rows[512];
    size_t n;
    int64_t after = 0, m0 = sqlite3_memory_used();
    assert_int_equal(mt_log_open(&rd, f->path, flags, f->err, sizeof(f->err)), 0);
    do {
        assert_int_equal(mt_log_read(rd, after, INT64_MAX, 512, rows, &n), 0);
        if (n)
            after = rows[n - 1].seq;
    } while (n);
    assert_int_equal(after, 40000);
    int64_t cost = sqlite3_memory_used() - m0;
    mt_log_close(rd);
    return cost;
}

/* the status worker's reader (statusd.c) reads every row for as long as the
 * agent runs: a small page cache and no lookaside */
static void lean_reader_keeps_little(void **state)
{
    struct fixture *f = *state;
    open_writer(f);
    put_rows(f->db, 1, 40000, 0); /* about 1.5 MB of pages */
    int64_t normal = reader_cost(f, MT_LOG_READER);
    int64_t lean = reader_cost(f, MT_LOG_READER | MT_LOG_LEAN);
    if (lean > normal - 400 * 1024 || lean > 300 * 1024)
        fail_msg("a lean reader holds %lld bytes, a normal one %lld", (long long)lean,
                 (long long)normal);
}

/* ---- series, counters, cursors, parked, meta ---- */

static void series_round_trip(void **state)
{
    struct fixture *f = *state;
    struct mt_series_reg a, b;
    struct mt_series_info k[3] = {
        {.site = "hki",
         .device = "door-1",
         .metric = "people_in",
         .unit = "1",
         .kind = MITTARI_KIND_DELTA,
         .tags = ""},
        {.site = "hki",
         .device = "plc",
         .metric = "energy",
         .unit = "Wh",
         .kind = MITTARI_KIND_CUMULATIVE,
         .bits = 32,
         .tags = "{\"line\":\"a\"}"},
        {.site = "tku",
         .device = "btn \"7\"",
         .metric = "feedback",
         .unit = "",
         .kind = MITTARI_KIND_EVENT,
         .tags = "{\"theme\":\"Hyte, 2\"}"},
    };

    open_writer(f);
    assert_int_equal(mt_series_init(&a), 0);
    assert_int_equal(mt_log_begin(f->db), 0);
    for (int i = 0; i < 3; i++) {
        uint32_t id;
        assert_int_equal(mt_series_intern(&a, &k[i], &id), 0);
        assert_int_equal(mt_log_put_series(f->db, mt_series_get(&a, id)), 0);
    }
    assert_int_equal(mt_log_commit(f->db), 0);
    mt_log_close(f->db);
    f->db = NULL;

    open_writer(f);
    assert_int_equal(mt_series_init(&b), 0);
    assert_int_equal(mt_log_load_series(f->db, &b), 0);
    assert_int_equal(mt_series_count(&b), 3);
    for (uint32_t id = 1; id <= 3; id++) {
        const struct mt_series_info *x = mt_series_get(&a, id), *y = mt_series_get(&b, id);
        assert_non_null(y);
        assert_int_equal(y->id, id);
        assert_string_equal(y->site, x->site);
        assert_string_equal(y->device, x->device);
        assert_string_equal(y->metric, x->metric);
        assert_string_equal(y->unit, x->unit);
        assert_int_equal(y->kind, x->kind);
        assert_int_equal(y->bits, x->bits);
        assert_string_equal(y->tags, x->tags);
        /* and interning the same key finds the loaded id */
        uint32_t again = 0;
        assert_int_equal(mt_series_intern(&b, &k[id - 1], &again), 0);
        assert_int_equal(again, id);
    }
    mt_series_free(&b);

    /* a registry that already holds other series cannot take them */
    assert_int_equal(mt_series_init(&b), 0);
    uint32_t id;
    struct mt_series_info other = {.site = "x", .device = "y", .metric = "z"};
    assert_int_equal(mt_series_intern(&b, &other, &id), 0);
    assert_int_equal(mt_log_load_series(f->db, &b), MITTARI_ESTORAGE);
    mt_series_free(&b);
    mt_series_free(&a);
}

static void series_with_a_gap_is_corrupt(void **state)
{
    struct fixture *f = *state;
    struct mt_series_reg r;
    struct mt_series_info s = {
        .id = 2, .site = "a", .device = "b", .metric = "c", .unit = "", .tags = ""};
    open_writer(f);
    assert_int_equal(mt_log_put_series(f->db, &s), 0);
    assert_int_equal(mt_series_init(&r), 0);
    assert_int_equal(mt_log_load_series(f->db, &r), MITTARI_ESTORAGE);
    mt_series_free(&r);
}

struct seen_counter {
    uint32_t series;
    uint64_t last;
    int64_t ts;
};

struct seen {
    struct seen_counter c[8];
    int n;
    int stop_after;
};

static int collect(void *arg, uint32_t series, uint64_t last, int64_t ts)
{
    struct seen *s = arg;
    if (s->n >= 8)
        return -1;
    s->c[s->n++] = (struct seen_counter){series, last, ts};
    return s->n == s->stop_after ? -ECANCELED : 0;
}

static const struct seen_counter *find_counter(const struct seen *s, uint32_t series)
{
    for (int i = 0; i < s->n; i++)
        if (s->c[i].series == series)
            return &s->c[i];
    return NULL;
}

static void counters_round_trip(void **state)
{
    struct fixture *f = *state;
    struct seen s = {0};
    const uint64_t big = (uint64_t)INT64_MAX + 12345;

    open_writer(f);
    assert_int_equal(mt_log_load_counters(f->db, collect, &s), 0);
    assert_int_equal(s.n, 0);
    assert_int_equal(mt_log_begin(f->db), 0);
    assert_int_equal(mt_log_put_counter(f->db, 1, 42, 100), 0);
    assert_int_equal(mt_log_put_counter(f->db, 2, big, -5), 0);
    assert_int_equal(mt_log_put_counter(f->db, 3, UINT64_MAX, 7), 0);
    assert_int_equal(mt_log_put_counter(f->db, 1, 43, 101), 0); /* replaces */
    assert_int_equal(mt_log_commit(f->db), 0);
    mt_log_close(f->db);
    f->db = NULL;

    open_writer(f);
    assert_int_equal(mt_log_load_counters(f->db, collect, &s), 0);
    assert_int_equal(s.n, 3);
    const struct seen_counter *c = find_counter(&s, 1);
    assert_non_null(c);
    assert_int_equal(c->last, 43);
    assert_int_equal(c->ts, 101);
    c = find_counter(&s, 2);
    assert_non_null(c);
    assert_true(c->last == big);
    assert_int_equal(c->ts, -5);
    c = find_counter(&s, 3);
    assert_non_null(c);
    assert_true(c->last == UINT64_MAX);

    /* a callback's error stops the walk and is returned */
    struct seen t = {.stop_after = 1};
    assert_int_equal(mt_log_load_counters(f->db, collect, &t), -ECANCELED);
    assert_int_equal(t.n, 1);
}

struct seen_cursors {
    int n;
    int64_t sum;
};

static int collect_cursor(void *arg, const char *name, int64_t seq)
{
    struct seen_cursors *sc = arg;
    assert_true(strcmp(name, "http") == 0 || strcmp(name, "file") == 0);
    sc->n++;
    sc->sum += seq;
    return 0;
}

static void cursors(void **state)
{
    struct fixture *f = *state;
    int64_t v = 99;
    open_writer(f);
    assert_int_equal(mt_log_get_cursor(f->db, "http", &v), -ENOENT);
    assert_int_equal(v, 0); /* none yet */
    assert_int_equal(mt_log_put_cursor(f->db, "http", 5, 1), 0);
    assert_int_equal(mt_log_put_cursor(f->db, "file", 2, 1), 0);
    assert_int_equal(mt_log_put_cursor(f->db, "http", 9, 2), 0);
    assert_int_equal(mt_log_get_cursor(f->db, "http", &v), 0);
    assert_int_equal(v, 9);
    assert_int_equal(mt_log_get_cursor(f->db, "file", &v), 0);
    assert_int_equal(v, 2);
    assert_int_equal(mt_log_get_cursor(f->db, "HTTP", &v), -ENOENT); /* names are exact */
    assert_int_equal(v, 0);
    struct seen_cursors sc = {0};
    assert_int_equal(mt_log_load_cursors(f->db, collect_cursor, &sc), 0);
    assert_int_equal(sc.n, 2);
    assert_int_equal(sc.sum, 11); /* http 9 + file 2 */
    mt_log_close(f->db);
    f->db = NULL;
    open_writer(f);
    assert_int_equal(mt_log_get_cursor(f->db, "http", &v), 0);
    assert_int_equal(v, 9);
    assert_int_equal(sql_int(f->path, "SELECT updated FROM cursors WHERE name='http'"), 2);
}

static void parked(void **state)
{
    struct fixture *f = *state;
    open_writer(f);
    assert_int_equal(mt_log_put_parked(f->db, "http", 10, 20, "HTTP 400: bad \"payload\"", 77), 0);
    assert_int_equal(mt_log_put_parked(f->db, "http", 21, 30, "HTTP 413", 78), 0);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM parked"), 2);
    assert_int_equal(sql_int(f->path, "SELECT first_seq FROM parked WHERE output='http' AND "
                                      "error='HTTP 400: bad \"payload\"'"),
                     10);
    assert_int_equal(sql_int(f->path, "SELECT last_seq FROM parked WHERE first_seq=10"), 20);
    assert_int_equal(sql_int(f->path, "SELECT at FROM parked WHERE first_seq=21"), 78);
}

static void meta(void **state)
{
    struct fixture *f = *state;
    int64_t v = 5;
    open_writer(f);
    assert_int_equal(mt_log_get_meta(f->db, "last_seq", &v), -ENOENT);
    assert_int_equal(v, 5); /* untouched */
    assert_int_equal(mt_log_put_meta(f->db, "last_seq", 17), 0);
    assert_int_equal(mt_log_put_meta(f->db, "other", INT64_MIN), 0);
    assert_int_equal(mt_log_get_meta(f->db, "last_seq", &v), 0);
    assert_int_equal(v, 17);
    assert_int_equal(mt_log_put_meta(f->db, "last_seq", 18), 0);
    assert_int_equal(mt_log_get_meta(f->db, "last_seq", &v), 0);
    assert_int_equal(v, 18);
    assert_int_equal(mt_log_get_meta(f->db, "other", &v), 0);
    assert_true(v == INT64_MIN);
}

/* ---- sequence numbers and housekeeping ---- */

static void last_seq_survives_deleting_every_row(void **state)
{
    struct fixture *f = *state;
    int64_t v = -1, del = 0;

    open_writer(f);
    assert_int_equal(mt_log_last_seq(f->db, &v), 0);
    assert_int_equal(v, 0);
    put_rows(f->db, 1, 5, 0);
    assert_int_equal(mt_log_last_seq(f->db, &v), 0);
    assert_int_equal(v, 5);
    /* what the writer does: record the high-water mark with the delete */
    assert_int_equal(mt_log_begin(f->db), 0);
    assert_int_equal(mt_log_put_meta(f->db, "last_seq", 5), 0);
    assert_int_equal(mt_log_delete_upto(f->db, 5, 100, &del), 0);
    assert_int_equal(mt_log_commit(f->db), 0);
    assert_int_equal(del, 5);
    assert_int_equal(count_rows(f->db), 0);
    mt_log_close(f->db);
    f->db = NULL;
    open_writer(f);
    assert_int_equal(mt_log_last_seq(f->db, &v), 0);
    assert_int_equal(v, 5);
    /* rows above the mark win over it */
    put_rows(f->db, 6, 8, 0);
    assert_int_equal(mt_log_last_seq(f->db, &v), 0);
    assert_int_equal(v, 8);
}

static void used_bytes_follows_rows(void **state)
{
    struct fixture *f = *state;
    uint64_t empty = 0, full = 0, after = 0;
    int64_t del = 0;

    open_writer(f);
    assert_int_equal(mt_log_used_bytes(f->db, &empty), 0);
    assert_true(empty > 0);
    put_rows(f->db, 1, 20000, 1700000000000000);
    assert_int_equal(mt_log_used_bytes(f->db, &full), 0);
    assert_true(full > empty + 200 * 1024); /* ~20 bytes a row at the very least */
    assert_int_equal(mt_log_begin(f->db), 0);
    assert_int_equal(mt_log_delete_upto(f->db, 20000, 100000, &del), 0);
    assert_int_equal(mt_log_commit(f->db), 0);
    assert_int_equal(del, 20000);
    assert_int_equal(mt_log_used_bytes(f->db, &after), 0);
    /* the pages went to the freelist: the file did not shrink, the use did */
    assert_true(sql_int(f->path, "PRAGMA freelist_count") > 0);
    assert_true(after < full);
    assert_true(after <= empty + 2 * 4096);
    /* and freed pages are reused before the file grows */
    int64_t pages = sql_int(f->path, "PRAGMA page_count");
    put_rows(f->db, 20001, 25000, 1700000000000000);
    assert_int_equal(sql_int(f->path, "PRAGMA page_count"), pages);
}

static void delete_upto_in_chunks(void **state)
{
    struct fixture *f = *state;
    int64_t del = -1, lo, hi, n;

    open_writer(f);
    assert_int_equal(mt_log_delete_upto(f->db, 10, 5, &del), 0); /* empty log */
    assert_int_equal(del, 0);
    put_rows(f->db, 1, 100, 0);
    assert_int_equal(mt_log_delete_upto(f->db, 50, 20, &del), 0);
    assert_int_equal(del, 20);
    assert_int_equal(mt_log_bounds(f->db, &lo, &hi, &n), 0);
    assert_int_equal(lo, 21);
    assert_int_equal(hi, 100);
    assert_int_equal(n, 80);
    assert_int_equal(mt_log_delete_upto(f->db, 50, 20, &del), 0);
    assert_int_equal(del, 20);
    assert_int_equal(mt_log_delete_upto(f->db, 50, 20, &del), 0);
    assert_int_equal(del, 10); /* 41..50: never past upto */
    assert_int_equal(mt_log_delete_upto(f->db, 50, 20, &del), 0);
    assert_int_equal(del, 0);
    assert_int_equal(mt_log_delete_upto(f->db, 10, 20, &del), 0); /* below the oldest */
    assert_int_equal(del, 0);
    assert_int_equal(mt_log_bounds(f->db, &lo, &hi, &n), 0);
    assert_int_equal(lo, 51);
    assert_int_equal(n, 50);
    assert_int_equal(mt_log_delete_upto(f->db, INT64_MAX, INT64_MAX, &del), 0);
    assert_int_equal(del, 50);
    assert_int_equal(mt_log_bounds(f->db, &lo, &hi, &n), 0);
    assert_int_equal(n, 0);
}

static void first_young(void **state)
{
    struct fixture *f = *state;
    int64_t seq = 0;
    /* ts out of order in seq order (a device clock stepped back) */
    const int64_t ts[] = {100, 200, 50, 300};

    open_writer(f);
    assert_int_equal(mt_log_first_young(f->db, 0, INT64_MAX, &seq), 0);
    assert_true(seq == INT64_MAX); /* empty */
    assert_int_equal(mt_log_begin(f->db), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(mt_log_put_reading(f->db, i + 1, ts[i], 1, 0, NULL), 0);
    assert_int_equal(mt_log_commit(f->db), 0);
    assert_int_equal(mt_log_first_young(f->db, 0, INT64_MAX, &seq), 0);
    assert_int_equal(seq, 1);
    assert_int_equal(mt_log_first_young(f->db, 100, INT64_MAX, &seq), 0);
    assert_int_equal(seq, 1);
    assert_int_equal(mt_log_first_young(f->db, 101, INT64_MAX, &seq), 0);
    assert_int_equal(seq, 2);
    assert_int_equal(mt_log_first_young(f->db, 250, INT64_MAX, &seq), 0);
    assert_int_equal(seq, 4);
    assert_int_equal(mt_log_first_young(f->db, 301, INT64_MAX, &seq), 0);
    assert_true(seq == INT64_MAX);
}

/* Work a call does, in units of 100 VM steps of SQLite. */
static int count_step(void *arg)
{
    (*(int64_t *)arg)++;
    return 0;
}

/* Housekeeping and the status page ask these every few seconds of a log
 * that holds weeks: each must read a few pages, not the table (min() and
 * max() in one SELECT scanned all of it). A scan of the same log is
 * measured beside them, so that the counter is known to count. */
static void housekeeping_queries_do_not_scan(void **state)
{
    struct fixture *f = *state;
    const int64_t rows = 100000;
    int64_t work = 0, lo, hi, n, seq, del;
    uint64_t bytes;
    struct mt_facts *facts = NULL;

    open_writer(f);
    put_rows(f->db, 1, rows, 1000);
    mt_log_progress(f->db, 100, count_step, &work);

    assert_int_equal(mt_log_first_young(f->db, INT64_MAX, INT64_MAX, &seq), 0);
    assert_true(seq == INT64_MAX);
    int64_t scan = work;
    assert_true(scan > rows / 100); /* more than a step a row */

#define CHEAP(call)                                                                                \
    do {                                                                                           \
        work = 0;                                                                                  \
        assert_int_equal(call, 0);                                                                 \
        if (work > 10)                                                                             \
            fail_msg("%s: %" PRId64 " x 100 steps (a scan: %" PRId64 ")", #call, work, scan);    \
    } while (0)
    CHEAP(mt_log_bounds(f->db, &lo, &hi, &n));
    assert_int_equal(lo, 1);
    assert_int_equal(hi, rows);
    assert_int_equal(n, rows);
    CHEAP(mt_log_last_seq(f->db, &seq));
    assert_int_equal(seq, rows);
    CHEAP(mt_log_used_bytes(f->db, &bytes));
    /* the search stops at upto, young rows or not */
    CHEAP(mt_log_first_young(f->db, INT64_MAX, 50, &seq));
    assert_true(seq == INT64_MAX);
    CHEAP(mt_log_first_young(f->db, 1000 + 40, 50, &seq));
    assert_int_equal(seq, 40);
    CHEAP(mt_log_delete_upto(f->db, 10, 5, &del));
    assert_int_equal(del, 5);
    assert_int_equal(mt_log_begin(f->db), 0);
    assert_int_equal(mt_log_put_cursor(f->db, "out", rows / 2, 0), 0);
    assert_int_equal(mt_log_commit(f->db), 0);
    CHEAP(mt_facts_read(f->db, NULL, 0, &facts));
    assert_non_null(facts);
    assert_int_equal(facts->rows, rows - 5);
    assert_int_equal(facts->noutputs, 1);
    assert_int_equal(facts->outputs[0].backlog, rows - rows / 2);
    assert_int_equal(facts->outputs[0].oldest_us, 1000 + rows / 2 + 1);
    mt_facts_unref(facts);
#undef CHEAP
    mt_log_progress(f->db, 0, NULL, NULL);
}

static void scan_time_range(void **state)
{
    struct fixture *f = *state;
    struct mt_row rows[16];
    size_t n = 0;

    open_writer(f);
    assert_int_equal(mt_log_begin(f->db), 0);
    for (int s = 1; s <= 10; s++)
        assert_int_equal(mt_log_put_reading(f->db, s, 10 * s, 1, s, NULL), 0);
    assert_int_equal(mt_log_commit(f->db), 0);
    /* [since, until) */
    assert_int_equal(mt_log_scan(f->db, 30, 70, 0, 16, rows, &n), 0);
    assert_int_equal(n, 4);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(rows[i].seq, (int64_t)i + 3);
        assert_int_equal(rows[i].ts, 10 * ((int64_t)i + 3));
    }
    /* paging with after_seq */
    assert_int_equal(mt_log_scan(f->db, 30, 70, 0, 3, rows, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(rows[2].seq, 5);
    assert_int_equal(mt_log_scan(f->db, 30, 70, rows[2].seq, 3, rows, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(rows[0].seq, 6);
    assert_int_equal(mt_log_scan(f->db, 30, 70, 6, 3, rows, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(mt_log_scan(f->db, 1000, 2000, 0, 16, rows, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(mt_log_scan(f->db, INT64_MIN, INT64_MAX, 0, 16, rows, &n), 0);
    assert_int_equal(n, 10);
}

static void integrity_ok(void **state)
{
    struct fixture *f = *state;
    char msg[256] = "";
    open_writer(f);
    put_rows(f->db, 1, 1000, 0);
    assert_int_equal(mt_log_integrity(f->db, msg, sizeof(msg)), 0);
    assert_string_equal(msg, "ok");
}

static void integrity_finds_damage(void **state)
{
    struct fixture *f = *state;
    char msg[256] = "";

    open_writer(f);
    put_rows(f->db, 1, 20000, 0);
    mt_log_close(f->db); /* checkpoints: everything is in the main file now */
    f->db = NULL;
    int64_t psize = sql_int(f->path, "PRAGMA page_size");
    assert_true(sql_int(f->path, "PRAGMA page_count") > 60);
    /* scribble over a page in the middle of the readings' b-tree */
    FILE *fp = fopen(f->path, "r+b");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, 40 * psize + 8, SEEK_SET), 0);
    char junk[256];
    memset(junk, 0xa5, sizeof(junk));
    assert_int_equal(fwrite(junk, 1, sizeof(junk), fp), sizeof(junk));
    fclose(fp);
    open_writer(f);
    assert_int_equal(mt_log_integrity(f->db, msg, sizeof(msg)), MITTARI_ESTORAGE);
    assert_string_not_equal(msg, "ok");
    assert_true(msg[0] != 0);
}

/* ---- schema 2: generations, flags, consumer states ---- */

static int64_t generation_of(struct fixture *f)
{
    int64_t gen = -1;
    assert_int_equal(mt_log_generation(f->db, &gen), 0);
    return gen;
}

static void generation_is_chosen_once_per_log(void **state)
{
    struct fixture *f = *state;
    open_writer(f);
    int64_t g1 = generation_of(f);
    int64_t now = mt_now_us();
    /* microseconds of the creation time, with random low bits */
    assert_true(g1 > now - 60000000 && g1 < now + 60000000);
    mt_log_close(f->db);
    open_writer(f);
    assert_int_equal(generation_of(f), g1); /* reopening keeps it */
    mt_log_close(f->db);
    f->db = NULL;
    /* the log moved aside: the new one is another generation */
    char *aside = tu_path(f->dir, "aside.db");
    assert_int_equal(rename(f->path, aside), 0);
    open_writer(f);
    int64_t g2 = generation_of(f);
    assert_true(g2 > 0);
    assert_true(g2 != g1);
    free(aside);
}

/* A log made by a schema 1 agent: upgraded in place by the writer, its rows
 * kept; a reader of one that no writer upgraded still reads it. */
static void schema_1_log_is_upgraded(void **state)
{
    struct fixture *f = *state;
    struct mt_row rows[4];
    size_t n = 0;
    sql_exec(f->path,
             "CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
             "CREATE TABLE series(id INTEGER PRIMARY KEY, site TEXT NOT NULL, device TEXT NOT NULL,"
             " metric TEXT NOT NULL, unit TEXT NOT NULL, kind INTEGER NOT NULL, bits INTEGER NOT"
             " NULL, tags TEXT NOT NULL);"
             "CREATE TABLE readings(seq INTEGER PRIMARY KEY, ts INTEGER NOT NULL, series INTEGER NOT"
             " NULL, value REAL NOT NULL, subject TEXT);"
             "CREATE TABLE counters(series INTEGER PRIMARY KEY, last INTEGER NOT NULL, ts INTEGER"
             " NOT NULL);"
             "CREATE TABLE cursors(name TEXT PRIMARY KEY, seq INTEGER NOT NULL, updated INTEGER"
             " NOT NULL);"
             "CREATE TABLE parked(output TEXT NOT NULL, first_seq INTEGER NOT NULL, last_seq"
             " INTEGER NOT NULL, error TEXT NOT NULL, at INTEGER NOT NULL);"
             "INSERT INTO readings VALUES(1, 100, 1, 7.5, NULL), (2, 200, 1, 8, 'abc');"
             "PRAGMA application_id=1297371721; PRAGMA user_version=1;");
    /* a reader first (query on a copy): flags read as 0, no generation yet */
    assert_int_equal(mt_log_open(&f->db, f->path, MT_LOG_READONLY, f->err, sizeof(f->err)), 0);
    assert_int_equal(mt_log_read(f->db, 0, INT64_MAX, 4, rows, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(rows[1].flags, 0);
    assert_int_equal(generation_of(f), 0);
    void *blob;
    size_t len;
    int64_t ver;
    assert_int_equal(mt_log_get_state(f->db, "r", &ver, &blob, &len), -ENOENT);
    mt_log_close(f->db);
    f->db = NULL;
    assert_int_equal(sql_int(f->path, "PRAGMA user_version"), 1); /* a reader changes nothing */
    /* the writer upgrades */
    open_writer(f);
    assert_int_equal(sql_int(f->path, "PRAGMA user_version"), MT_LOG_SCHEMA);
    assert_true(generation_of(f) > 0);
    assert_int_equal(mt_log_read(f->db, 0, INT64_MAX, 4, rows, &n), 0);
    assert_int_equal(n, 2);
    assert_true(rows[0].value == 7.5);
    assert_string_equal(rows[1].subject, "abc");
    assert_int_equal(rows[0].flags, 0);
    assert_int_equal(mt_log_begin(f->db), 0);
    assert_int_equal(mt_log_put_reading_flags(f->db, 3, 300, 1, 0, NULL, MT_RF_SUPPRESSED, 5), 0);
    assert_int_equal(mt_log_put_state(f->db, "r", 2, "xy", 2, 1), 0);
    assert_int_equal(mt_log_commit(f->db), 0);
    assert_int_equal(mt_log_read(f->db, 2, INT64_MAX, 4, rows, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(rows[0].flags, MT_RF_SUPPRESSED);
    assert_int_equal(rows[0].min_count, 5);
    assert_int_equal(mt_log_get_state(f->db, "r", &ver, &blob, &len), 0);
    assert_int_equal(ver, 2);
    assert_int_equal(len, 2);
    assert_memory_equal(blob, "xy", 2);
    free(blob);
}

/* Schema 3: a series' origin (the rule of a derived series). A schema 2 log
 * is upgraded in place, its series keep "" (raw); a reader of one that no
 * writer upgraded reads origins as "". */
static void schema_2_log_gets_origins(void **state)
{
    struct fixture *f = *state;
    struct mt_series_reg reg;
    open_writer(f);
    mt_log_close(f->db);
    f->db = NULL;
    sql_exec(f->path, "ALTER TABLE series DROP COLUMN origin;"
                      "INSERT INTO series VALUES(1, 's', 'd', 'm', '', 1, 0, '');"
                      "PRAGMA user_version=2;");
    assert_int_equal(mt_log_open(&f->db, f->path, MT_LOG_READONLY, f->err, sizeof(f->err)), 0);
    mt_series_init(&reg);
    assert_int_equal(mt_log_load_series(f->db, &reg), 0);
    assert_string_equal(mt_series_get(&reg, 1)->origin, "");
    mt_series_free(&reg);
    mt_log_close(f->db);
    f->db = NULL;
    assert_int_equal(sql_int(f->path, "PRAGMA user_version"), 2);
    open_writer(f);
    assert_int_equal(sql_int(f->path, "PRAGMA user_version"), 3);
    struct mt_series_info k = {.id = 2, .site = "s", .device = "d", .metric = "m", .unit = "",
                               .kind = 1, .tags = "", .origin = "door-visitors"};
    assert_int_equal(mt_log_begin(f->db), 0);
    assert_int_equal(mt_log_put_series(f->db, &k), 0);
    assert_int_equal(mt_log_commit(f->db), 0);
    mt_series_init(&reg);
    assert_int_equal(mt_log_load_series(f->db, &reg), 0);
    assert_string_equal(mt_series_get(&reg, 1)->origin, "");
    assert_string_equal(mt_series_get(&reg, 2)->origin, "door-visitors");
    /* the same names with another origin are another series */
    uint32_t id = 0;
    struct mt_series_info raw = k;
    raw.origin = NULL;
    assert_int_equal(mt_series_intern(&reg, &raw, &id), 0);
    assert_int_equal(id, 1);
    assert_int_equal(mt_series_intern(&reg, &k, &id), 0);
    assert_int_equal(id, 2);
    mt_series_free(&reg);
}

static void consumer_state_round_trip(void **state)
{
    struct fixture *f = *state;
    void *blob = (void *)1;
    size_t len = 9;
    int64_t ver = 9;
    open_writer(f);
    assert_int_equal(mt_log_get_state(f->db, "rule", &ver, &blob, &len), -ENOENT);
    assert_null(blob);
    assert_int_equal(mt_log_begin(f->db), 0);
    assert_int_equal(mt_log_put_state(f->db, "rule", 1, "\0\1\2", 3, 5), 0);
    assert_int_equal(mt_log_commit(f->db), 0);
    assert_int_equal(mt_log_get_state(f->db, "rule", &ver, &blob, &len), 0);
    assert_int_equal(len, 3);
    assert_memory_equal(blob, "\0\1\2", 3);
    free(blob);
    /* an empty state is a state */
    assert_int_equal(mt_log_begin(f->db), 0);
    assert_int_equal(mt_log_put_state(f->db, "rule", 4, NULL, 0, 6), 0);
    assert_int_equal(mt_log_commit(f->db), 0);
    assert_int_equal(mt_log_get_state(f->db, "rule", &ver, &blob, &len), 0);
    assert_int_equal(ver, 4);
    assert_null(blob);
    assert_int_equal(len, 0);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(creates_schema),
        T(refuses_foreign_application_id),
        T(refuses_foreign_db_without_application_id),
        T(refuses_newer_schema),
        T(refuses_garbage_file),
        T(missing_file_for_reader),
        T(readonly_open),
        T(readings_in_seq_order),
        T(duplicate_seq_refused),
        T(rollback_discards),
        T(reader_sees_committed_only),
        T(series_round_trip),
        T(series_with_a_gap_is_corrupt),
        T(counters_round_trip),
        T(cursors),
        T(parked),
        T(meta),
        T(last_seq_survives_deleting_every_row),
        T(used_bytes_follows_rows),
        T(delete_upto_in_chunks),
        T(first_young),
        T(housekeeping_queries_do_not_scan),
        T(scan_time_range),
        T(integrity_ok),
        T(integrity_finds_damage),
        T(generation_is_chosen_once_per_log),
        T(schema_1_log_is_upgraded),
        T(schema_2_log_gets_origins),
        T(consumer_state_round_trip),
        T(lean_reader_keeps_little),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
