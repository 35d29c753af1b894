/* mittari salvage on real logs with real damage (pages overwritten with
 * garbage, a truncated file): what can be read is copied with its numbers,
 * the generation is kept only when the sequence space is known, the gaps
 * are said, the damaged files are moved aside untouched. Issue 8 §2. */
#include "testutil.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include <mittari/mittari.h>

#include "log.h"
#include "salvage.h"
#include "series.h"
#include "util.h"
#include "writer.h"

#define TS0 1764084344000000LL

struct fx {
    char *dir;
    char *db;
    uv_loop_t loop;
    struct mt_series_reg reg;
    struct mt_writer *w;
    int64_t gen;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    f->dir = tu_tmpdir();
    f->db = tu_path(f->dir, "mittari.db");
    uv_loop_init(&f->loop);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    uv_loop_close(&f->loop);
    tu_rmtree(f->dir);
    free(f->dir);
    free(f->db);
    free(f);
    return 0;
}

static bool committed(void *arg)
{
    struct fx *f = arg;
    return mt_writer_idle(f->w);
}

/* A log of n readings over nseries series (gauges with long tags, so the
 * series table spans pages), a cumulative counter, a cursor, a rule's
 * state and its series (origin), and a parked batch. */
static void make_log(struct fx *f, int n, int nseries)
{
    struct mt_logdb *db;
    char err[256], tags[160];
    struct mt_writer_conf wc = {.batch_size = 5000, .batch_interval_ms = 5, .queue_max = 1000000,
                                .housekeeping_ms = 60000};
    assert_int_equal(mt_log_open(&db, f->db, MT_LOG_WRITER, err, sizeof(err)), 0);
    assert_int_equal(mt_log_generation(db, &f->gen), 0);
    mt_series_init(&f->reg);
    assert_int_equal(mt_writer_start(&f->w, &f->loop, db, &f->reg, &wc, NULL, NULL), 0);
    uint32_t counter;
    struct mt_series_info c = {.site = "s", .device = "d", .metric = "c", .unit = "",
                               .kind = MITTARI_KIND_CUMULATIVE, .bits = 32, .tags = ""};
    assert_int_equal(mt_series_intern(&f->reg, &c, &counter), 0);
    uint32_t *ids = calloc((size_t)nseries, sizeof(*ids));
    for (int i = 0; i < nseries; i++) {
        char metric[32];
        snprintf(metric, sizeof(metric), "m%d", i);
        snprintf(tags, sizeof(tags), "{\"theme\":\"%0120d\"}", i);
        struct mt_series_info k = {.site = "s", .device = "d", .metric = metric, .unit = "",
                                   .kind = MITTARI_KIND_GAUGE, .tags = tags};
        assert_int_equal(mt_series_intern(&f->reg, &k, &ids[i]), 0);
    }
    struct mt_rec r = {.kind = MITTARI_KIND_CUMULATIVE, .bits = 32, .series = counter,
                       .ts = TS0, .counter = 1000};
    assert_int_equal(mt_writer_push(f->w, &r), 0); /* a baseline: the counter state */
    for (int i = 0; i < n; i++) {
        struct mt_rec g = {.ts = TS0 + i, .series = ids[i % nseries],
                           .kind = MITTARI_KIND_GAUGE, .value = i + 0.5};
        if (i % 7 == 0)
            snprintf(g.subject, sizeof(g.subject), "AbCdEfGhIjKlMnOpQrStUv");
        assert_int_equal(mt_writer_push(f->w, &g), 0);
    }
    mt_writer_cursor(f->w, "archive", n / 2);
    mt_writer_park(f->w, "archive", 3, 4, "HTTP 400");
    /* the rule's figure has the same names as a raw series: only origin
     * tells them apart */
    snprintf(tags, sizeof(tags), "{\"theme\":\"%0120d\"}", 0);
    struct mt_series_info dv = {.site = "s", .device = "d", .metric = "m0", .unit = "",
                                .kind = MITTARI_KIND_GAUGE, .tags = tags, .origin = "daily"};
    uint32_t derived;
    assert_int_equal(mt_series_intern(&f->reg, &dv, &derived), 0);
    struct mt_consumer_step st = {.name = "rule:daily", .cursor = 10, .state_version = 3,
                                  .state = "{x=1}", .state_len = 5};
    assert_int_equal(mt_writer_step(f->w, &st, NULL), 0);
    mt_writer_flush(f->w);
    assert_true(tu_run_until(&f->loop, committed, f, 20000));
    mt_writer_stop(f->w, 2000);
    f->w = NULL;
    uv_run(&f->loop, UV_RUN_DEFAULT);
    mt_series_free(&f->reg);
    free(ids);
    /* everything in the main file, as after a clean stop */
    sqlite3 *x;
    assert_int_equal(sqlite3_open(f->db, &x), SQLITE_OK);
    assert_int_equal(sqlite3_exec(x, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(x);
}

static int64_t q(const char *path, const char *sql)
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

static void garble(const char *path, int64_t page)
{
    FILE *fp = fopen(path, "r+b");
    unsigned char junk[4096];
    for (int i = 0; i < 4096; i++)
        junk[i] = (unsigned char)(i * 37 + 11);
    assert_int_equal(fseek(fp, (long)((page - 1) * 4096), SEEK_SET), 0);
    assert_int_equal(fwrite(junk, 1, sizeof(junk), fp), sizeof(junk));
    fclose(fp);
}

/* The pages of table's leaves, in key order. */
static int64_t leaf(const char *path, const char *table, int which_from_end)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT pageno FROM dbstat WHERE name = '%s' AND pagetype = 'leaf' ORDER BY path "
             "DESC LIMIT 1 OFFSET %d",
             table, which_from_end);
    return q(path, sql);
}

static int64_t nleaves(const char *path, const char *table)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM dbstat WHERE name = '%s' AND pagetype = 'leaf'", table);
    return q(path, sql);
}

static char *digest(const char *path)
{
    size_t len = 0;
    char *p = tu_read(path, &len);
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; p && i < len; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    free(p);
    char *out = malloc(40);
    snprintf(out, 40, "%zu/%016llx", len, (unsigned long long)h);
    return out;
}

/* The salvaged log opens for a writer, which numbers on after last. */
static void numbering_goes_on(struct fx *f, int64_t last)
{
    struct mt_logdb *db;
    char err[256];
    int64_t seq = 0;
    assert_int_equal(mt_log_open(&db, f->db, MT_LOG_WRITER, err, sizeof(err)), 0);
    mt_series_init(&f->reg);
    struct mt_writer_conf wc = {.batch_size = 10, .batch_interval_ms = 5, .queue_max = 100,
                                .housekeeping_ms = 60000};
    assert_int_equal(mt_writer_start(&f->w, &f->loop, db, &f->reg, &wc, NULL, NULL), 0);
    assert_int_equal(mt_writer_committed(f->w), last);
    mt_writer_stop(f->w, 1000);
    f->w = NULL;
    uv_run(&f->loop, UV_RUN_DEFAULT);
    mt_series_free(&f->reg);
    assert_int_equal(mt_log_open(&db, f->db, MT_LOG_READER, err, sizeof(err)), 0);
    assert_int_equal(mt_log_last_seq(db, &seq), 0);
    assert_int_equal(seq, last);
    mt_log_close(db);
}

static void intact_log_is_copied_whole(void **state)
{
    struct fx *f = *state;
    struct mt_salvage_report r;
    char err[512];
    make_log(f, 20000, 50);
    char *before = digest(f->db);
    assert_int_equal(mt_salvage(f->dir, &r, NULL, err, sizeof(err)), 0);
    char *moved = digest(r.moved_to);
    assert_string_equal(before, moved); /* the old file, untouched */
    assert_true(r.opened);
    assert_true(r.generation_kept);
    assert_int_equal(r.generation, f->gen);
    assert_int_equal(r.readings, 20000);
    assert_int_equal(r.last_seq, 20000);
    assert_int_equal(r.series, 52);
    assert_int_equal(r.lost_series, 0);
    assert_int_equal(r.counters, 1);
    assert_int_equal(r.cursors, 2); /* archive and the rule */
    assert_int_equal(r.states, 1);
    assert_int_equal(r.parked, 1);
    assert_int_equal(r.ngaps, 0);
    assert_false(r.tables_incomplete);
    /* the same rows, bit for bit */
    char sql[512];
    snprintf(sql, sizeof(sql), "ATTACH '%s' AS o", r.moved_to);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT (SELECT count(*) FROM (SELECT * FROM main.readings "
                                        "EXCEPT SELECT * FROM o.readings)) + (SELECT count(*) FROM "
                                        "(SELECT * FROM main.series EXCEPT SELECT * FROM "
                                        "o.series)) + (SELECT count(*) FROM (SELECT * FROM "
                                        "main.consumer_state EXCEPT SELECT * FROM "
                                        "o.consumer_state))",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int64(st, 0), 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    assert_int_equal(q(f->db, "SELECT seq FROM cursors WHERE name = 'archive'"), 10000);
    assert_int_equal(q(f->db, "SELECT count(*) FROM series WHERE origin = 'daily' AND metric = "
                              "'m0'"), 1);
    numbering_goes_on(f, 20000);
    free(before);
    free(moved);
}

/* Garbage over pages in the middle of the readings: the rest is copied,
 * and exactly the seqs on the lost pages are reported. */
static void garbage_in_the_middle(void **state)
{
    struct fx *f = *state;
    struct mt_salvage_report r;
    char err[512];
    make_log(f, 60000, 20);
    int64_t n = nleaves(f->db, "readings");
    int64_t p1 = leaf(f->db, "readings", (int)(n / 3)), p2 = leaf(f->db, "readings", (int)(n / 2));
    char sql[160];
    /* what the pages held, from the intact file */
    int64_t lost = 0;
    sqlite3 *db;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT ncell FROM dbstat WHERE pageno IN (?1, ?2)",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_int64(st, 1, p1);
    sqlite3_bind_int64(st, 2, p2);
    while (sqlite3_step(st) == SQLITE_ROW)
        lost += sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    garble(f->db, p1);
    garble(f->db, p2);
    assert_int_equal(mt_salvage(f->dir, &r, NULL, err, sizeof(err)), 0);
    assert_true(r.generation_kept); /* the newest seq was readable */
    assert_int_equal(r.last_seq, 60000);
    assert_int_equal(r.readings, 60000 - lost);
    assert_int_equal(r.ngaps, 2);
    assert_int_equal((r.gap_last[0] - r.gap_first[0] + 1) + (r.gap_last[1] - r.gap_first[1] + 1),
                     lost);
    /* nothing outside the gaps is missing */
    assert_int_equal(q(f->db, "SELECT count(*) FROM readings"), 60000 - lost);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM readings WHERE seq BETWEEN %lld AND %lld",
             (long long)r.gap_first[0], (long long)r.gap_last[0]);
    assert_int_equal(q(f->db, sql), 0);
    numbering_goes_on(f, 60000);
}

/* The last leaf is garbage: the newest seq cannot be read, so the old
 * numbering cannot safely go on: a new generation. */
static void garbage_in_the_last_pages(void **state)
{
    struct fx *f = *state;
    struct mt_salvage_report r;
    char err[512];
    make_log(f, 30000, 10);
    int64_t last = leaf(f->db, "readings", 0);
    int64_t held = q(f->db, "SELECT count(*) FROM readings WHERE seq > 29000");
    assert_true(held > 0);
    garble(f->db, last);
    assert_int_equal(mt_salvage(f->dir, &r, NULL, err, sizeof(err)), 0);
    assert_false(r.generation_kept);
    assert_true(r.generation != f->gen);
    assert_true(r.readings > 29000 && r.readings < 30000);
    assert_int_equal(r.ngaps, 1);
    assert_int_equal(q(f->db, "SELECT value FROM meta WHERE key = 'generation'"), r.generation);
    numbering_goes_on(f, r.last_seq);
    assert_true(r.last_seq >= (int64_t)r.readings);
}

/* Half the file is gone: what the first half holds is copied. */
static void truncated_file(void **state)
{
    struct fx *f = *state;
    struct mt_salvage_report r;
    char err[512];
    make_log(f, 40000, 10);
    int64_t pages = q(f->db, "PRAGMA page_count");
    assert_int_equal(truncate(f->db, pages / 2 * 4096), 0);
    /* an output that had delivered further than what survives */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA writable_schema=1; UPDATE cursors SET seq = 39990 "
                                      "WHERE name = 'archive'",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(mt_salvage(f->dir, &r, NULL, err, sizeof(err)), 0);
    assert_true(r.opened);
    assert_false(r.generation_kept);
    assert_true(r.readings > 10000);
    assert_true(r.readings < 40000);
    /* the new generation numbers above every cursor: no new reading is
     * taken for one delivered */
    assert_int_equal(r.last_seq, 39990);
    numbering_goes_on(f, 39990);
    assert_int_equal(q(f->db, "PRAGMA quick_check") == -1, 0);
}

/* A lost page of the series table: its ids are kept as placeholders (ids
 * must stay dense and keep their meaning), their readings are left out. */
static void lost_series_keep_their_ids(void **state)
{
    struct fx *f = *state;
    struct mt_salvage_report r;
    char err[512];
    make_log(f, 8000, 400);
    int64_t n = nleaves(f->db, "series");
    assert_true(n >= 3);
    garble(f->db, leaf(f->db, "series", (int)(n / 2)));
    assert_int_equal(mt_salvage(f->dir, &r, NULL, err, sizeof(err)), 0);
    assert_true(r.lost_series > 0);
    assert_true(r.tables_incomplete);
    assert_int_equal(r.series + r.lost_series, 402);
    assert_true(r.rows_left_out > 0);
    assert_int_equal(r.readings + r.rows_left_out, 8000);
    /* dense ids: the writer loads them */
    assert_int_equal(q(f->db, "SELECT count(*) FROM series"), 402);
    assert_int_equal(q(f->db, "SELECT max(id) FROM series"), 402);
    assert_true(q(f->db, "SELECT count(*) FROM series WHERE device = 'lost'") > 0);
    numbering_goes_on(f, 8000);
}

static void refuses_what_it_must_not_touch(void **state)
{
    struct fx *f = *state;
    struct mt_salvage_report r;
    char err[512];
    /* nothing there */
    assert_int_equal(mt_salvage(f->dir, &r, NULL, err, sizeof(err)), -ENOENT);
    /* somebody else's database */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE t(x); INSERT INTO t VALUES(1)", NULL, NULL,
                                  NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(mt_salvage(f->dir, &r, NULL, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "not a mittari log"));
    assert_int_equal(q(f->db, "SELECT x FROM t"), 1); /* not moved */
    unlink(f->db);
    /* a running agent holds the lock */
    make_log(f, 10, 1);
    int fd = -1;
    char holder[32];
    assert_int_equal(mt_lock_dir(f->dir, &fd, holder, sizeof(holder)), 0);
    /* flock is per open file: a second open in this process conflicts too */
    assert_int_equal(mt_salvage(f->dir, &r, NULL, err, sizeof(err)), -EBUSY);
    assert_non_null(strstr(err, "in use by a running mittari"));
    close(fd);
    assert_int_equal(q(f->db, "SELECT count(*) FROM readings"), 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(intact_log_is_copied_whole, setup, teardown),
        cmocka_unit_test_setup_teardown(garbage_in_the_middle, setup, teardown),
        cmocka_unit_test_setup_teardown(garbage_in_the_last_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(truncated_file, setup, teardown),
        cmocka_unit_test_setup_teardown(lost_series_keep_their_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(refuses_what_it_must_not_touch, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
