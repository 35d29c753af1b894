/* The rule runner (rules.c) against a real writer and log: rules read what
 * the log committed, their figures, state and cursor go back in steps;
 * quiet windows close by the (injected) clock; a restarted rule resumes
 * without counting twice; reloads keep the state for the same
 * state_version and start afresh otherwise; errors are contained, paused
 * on request; suppressed figures are stored nowhere as numbers; reloads
 * racing a running rule lose and double nothing. The clock is injected:
 * nothing here depends on the hour the test runs at. */
#include "testutil.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mittari/mittari.h>

#include "cfgtree.h"
#include "diag.h"
#include "log.h"
#include "ruleconf.h"
#include "rules.h"
#include "series.h"
#include "tz.h"
#include "writer.h"

#define US 1000000LL
/* 2026-11-25 00:00 in Helsinki (UTC+2) */
#define DAY0 (((int64_t)20417 * 86400 - 2 * 3600) * US)

struct fx {
    char *dir, *path;
    uv_loop_t loop;
    struct mt_series_reg reg;
    struct mt_writer *w;
    struct mt_rules *rs;
    _Atomic int64_t clock;
    uint32_t door[3], checkin;
    bool stopped;
};

static int64_t test_clock(void *arg)
{
    struct fx *f = arg;
    return atomic_load(&f->clock);
}

static void on_commit(void *arg, int64_t seq)
{
    struct fx *f = arg;
    if (f->rs)
        mt_rules_notify(f->rs, seq);
}

static void rules_start(struct fx *f)
{
    struct mt_rules_env env = {&f->loop, f->w, &f->reg, f->path, test_clock, f};
    assert_int_equal(mt_rules_create(&f->rs, &env), 0);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    struct mt_logdb *db;
    char err[256];
    struct mt_writer_conf wc = {.batch_size = 1000, .batch_interval_ms = 5, .queue_max = 100000,
                                .housekeeping_ms = 60000};
    f->dir = tu_tmpdir();
    f->path = tu_path(f->dir, "log.db");
    /* readings in the tests are at 08:00..12:00; the clock starts at 12:00
     * (a reading more than 10 minutes ahead of it would not count) */
    atomic_store(&f->clock, DAY0 + 12 * 3600 * US);
    if (uv_loop_init(&f->loop) || mt_series_init(&f->reg))
        return -1;
    if (mt_log_open(&db, f->path, MT_LOG_WRITER, err, sizeof(err)))
        return -1;
    if (mt_writer_start(&f->w, &f->loop, db, &f->reg, &wc, on_commit, f))
        return -1;
    for (int i = 0; i < 3; i++) {
        char dev[16];
        snprintf(dev, sizeof(dev), "door-%d", i + 1);
        struct mt_series_info k = {.site = "lib", .device = dev, .metric = "visitors_in",
                                   .unit = "persons", .kind = MITTARI_KIND_DELTA, .tags = ""};
        if (mt_series_intern(&f->reg, &k, &f->door[i]))
            return -1;
    }
    struct mt_series_info c = {.site = "lib", .device = "reader", .metric = "checkin", .unit = "",
                               .kind = MITTARI_KIND_EVENT, .tags = "{\"service\":\"library\"}"};
    if (mt_series_intern(&f->reg, &c, &f->checkin))
        return -1;
    rules_start(f);
    *state = f;
    return 0;
}

static void stopped_cb(void *arg)
{
    struct fx *f = arg;
    f->stopped = true;
}

static bool is_stopped(void *arg)
{
    return ((struct fx *)arg)->stopped;
}

static void rules_stop(struct fx *f)
{
    f->stopped = false;
    mt_rules_stop(f->rs, stopped_cb, f);
    assert_true(tu_run_until(&f->loop, is_stopped, f, 10000));
    mt_rules_free(f->rs);
    f->rs = NULL;
    uv_run(&f->loop, UV_RUN_NOWAIT);
}

static int teardown(void **state)
{
    struct fx *f = *state;
    if (f->rs)
        rules_stop(f);
    mt_writer_stop(f->w, 2000);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    mt_series_free(&f->reg);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    tu_rmtree(f->dir);
    free(f->dir);
    free(f->path);
    free(f);
    return 0;
}

/* The rules of YAML text (the real configuration code), scripts in dir. */
static void apply(struct fx *f, const char *yaml)
{
    struct mt_cfgdoc doc;
    struct mt_diags d = {0};
    struct mt_rule_spec **v;
    size_t n;
    char *conf = tu_path(f->dir, "rules.yaml");
    mt_cfgdoc_init(&doc);
    assert_int_equal(mt_cfg_load_file(&doc, conf, yaml, &d), 0);
    int rc = mt_ruleconf_load(mt_node_get(doc.root, "rules"), "Europe/Helsinki", &v, &n, &d);
    if (rc || d.n) {
        mt_diags_print(&d, stderr);
        fail_msg("rules configuration refused");
    }
    mt_rules_apply(f->rs, v, n, "lib", "Europe/Helsinki");
    free(v);
    mt_diags_free(&d);
    mt_cfgdoc_free(&doc);
    free(conf);
}

static void script(struct fx *f, const char *name, const char *text)
{
    free(tu_write(f->dir, name, text));
}

static void push(struct fx *f, uint32_t series, int64_t ts, double v, const char *subject)
{
    struct mt_rec r = {.ts = ts, .series = series, .kind = MITTARI_KIND_DELTA, .value = v};
    if (subject)
        snprintf(r.subject, sizeof(r.subject), "%s", subject);
    assert_int_equal(mt_writer_push(f->w, &r), 0);
    mt_writer_flush(f->w);
}

static bool idle(void *arg)
{
    struct fx *f = arg;
    if (mt_writer_idle(f->w) && mt_rules_idle(f->rs) && mt_writer_idle(f->w))
        return true;
    mt_rules_flush(f->rs); /* not a second's wait for each step */
    return false;
}

static void settle(struct fx *f)
{
    assert_true(tu_run_until(&f->loop, idle, f, 15000));
}

/* Derived readings as text lines "metric device ts value|<N rREV", in seq order. */
static char *figures(struct fx *f, const char *origin)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    struct mt_buf b = {0};
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(db,
                           "SELECT s.metric, s.device, r.ts, r.value, r.flags FROM readings r "
                           "JOIN series s ON s.id = r.series WHERE s.origin = ? ORDER BY r.seq",
                           -1, &st, NULL),
        SQLITE_OK);
    sqlite3_bind_text(st, 1, origin, -1, SQLITE_STATIC);
    while (sqlite3_step(st) == SQLITE_ROW) {
        int64_t flags = sqlite3_column_int64(st, 4);
        mt_buf_printf(&b, "%s %s %" PRId64 " ", sqlite3_column_text(st, 0),
                      sqlite3_column_text(st, 1), (int64_t)((sqlite3_column_int64(st, 2) - DAY0) / US));
        if (flags & MT_RF_SUPPRESSED)
            mt_buf_printf(&b, "<%d", (int)((flags >> 8) & 0xff));
        else
            mt_buf_double(&b, sqlite3_column_double(st, 3));
        if (MT_RF_REVISION(flags))
            mt_buf_printf(&b, " r%u", MT_RF_REVISION(flags));
        mt_buf_addc(&b, '\n');
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    char *s = strdup(mt_buf_cstr(&b));
    mt_buf_free(&b);
    return s;
}

static int64_t sql_int(struct fx *f, const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    int64_t v = -1;
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static const char hourly[] = "window { every = 'hour', metric = 'visitors_hourly', agg = 'sum' }\n";

static void figures_go_back_into_the_log(void **state)
{
    struct fx *f = *state;
    script(f, "hourly.lua", hourly);
    /* the clock moves with the readings, as it does live: each is read
     * before the clock passes it */
    atomic_store(&f->clock, DAY0 + 9 * 3600 * US + 6 * 60 * US);
    apply(f, "rules:\n  hourly:\n    script: hourly.lua\n    series: '*/door-*/visitors_in'\n");
    push(f, f->door[0], DAY0 + 9 * 3600 * US + 5 * 60 * US, 3, NULL);
    settle(f);
    atomic_store(&f->clock, DAY0 + 9 * 3600 * US + 41 * 60 * US);
    push(f, f->door[0], DAY0 + 9 * 3600 * US + 40 * 60 * US, 2, NULL);
    push(f, f->checkin, DAY0 + 9 * 3600 * US + 50 * 60 * US, 1, "S1"); /* not in series */
    settle(f);
    atomic_store(&f->clock, DAY0 + 10 * 3600 * US + 16 * 60 * US);
    push(f, f->door[1], DAY0 + 10 * 3600 * US + 15 * 60 * US, 1, NULL);
    settle(f);
    char *got = figures(f, "hourly");
    assert_string_equal(got, "visitors_hourly door-1 32400 5\n");
    free(got);
    /* the clock closes 10:00-11:00 with no reading: door-1 reports 0 */
    atomic_store(&f->clock, DAY0 + 11 * 3600 * US + 3 * US);
    mt_rules_notify(f->rs, 0);
    settle(f);
    got = figures(f, "hourly");
    assert_string_equal(got, "visitors_hourly door-1 32400 5\n"
                             "visitors_hourly door-1 36000 0\n"
                             "visitors_hourly door-2 36000 1\n");
    free(got);
    /* its cursor and state are in the log; the series carry the origin */
    assert_true(sql_int(f, "SELECT seq FROM cursors WHERE name = 'hourly'") >= 4);
    assert_true(sql_int(f, "SELECT length(state) FROM consumer_state WHERE name = 'hourly'") > 0);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM series WHERE origin = 'hourly'"), 2);
}

/* A late reading within the lateness gives a correction in the log (the
 * same ts and series, revision 1); one after it is counted as late and its
 * window's figure stays. */
static void late_readings_in_the_log(void **state)
{
    struct fx *f = *state;
    script(f, "hourly.lua", "window { every = 'hour', metric = 'visitors_hourly', agg = 'sum', "
                            "lateness = '30m' }\n");
    atomic_store(&f->clock, DAY0 + 9 * 3600 * US + 50 * 60 * US);
    apply(f, "rules:\n  hourly:\n    script: hourly.lua\n    close_delay: 0s\n");
    push(f, f->door[0], DAY0 + 9 * 3600 * US + 45 * 60 * US, 2, NULL);
    settle(f);
    atomic_store(&f->clock, DAY0 + 10 * 3600 * US + 5 * 60 * US); /* the hour closes: 2 */
    mt_rules_notify(f->rs, 0);
    settle(f);
    push(f, f->door[0], DAY0 + 9 * 3600 * US + 59 * 60 * US, 3, NULL); /* late, in time */
    settle(f);
    atomic_store(&f->clock, DAY0 + 10 * 3600 * US + 40 * 60 * US); /* lateness over */
    mt_rules_notify(f->rs, 0);
    settle(f);
    push(f, f->door[0], DAY0 + 9 * 3600 * US + 58 * 60 * US, 7, NULL); /* too late */
    settle(f);
    char *got = figures(f, "hourly");
    assert_string_equal(got, "visitors_hourly door-1 32400 2\n"
                             "visitors_hourly door-1 32400 5 r1\n");
    free(got);
    struct mt_rule_stats st;
    int64_t cursor;
    bool paused;
    assert_int_equal(mt_rules_stats(f->rs, "hourly", &st, &cursor, &paused), 0);
    assert_int_equal(st.late, 1);
    assert_int_equal(st.corrections, 1);
}

/* Stopped and started again (a restart): it resumes from its cursor and
 * state, counts nothing twice, loses nothing. */
static void restart_resumes(void **state)
{
    struct fx *f = *state;
    script(f, "hourly.lua", hourly);
    const char *conf = "rules:\n  hourly:\n    script: hourly.lua\n    series: '*/*/visitors_in'\n";
    atomic_store(&f->clock, DAY0 + 9 * 3600 * US + 30 * 60 * US);
    apply(f, conf);
    push(f, f->door[0], DAY0 + 9 * 3600 * US, 3, NULL);
    settle(f);
    rules_stop(f);
    push(f, f->door[0], DAY0 + 9 * 3600 * US + 60 * US, 4, NULL); /* while it is stopped */
    rules_start(f);
    apply(f, conf);
    atomic_store(&f->clock, DAY0 + 10 * 3600 * US + 1 * US);
    push(f, f->door[0], DAY0 + 10 * 3600 * US + 1, 1, NULL);
    settle(f);
    char *got = figures(f, "hourly");
    assert_string_equal(got, "visitors_hourly door-1 32400 7\n");
    free(got);
}

static void reload_keeps_state_of_same_version(void **state)
{
    struct fx *f = *state;
    const char *conf = "rules:\n  r:\n    script: r.lua\n    series: '*/*/visitors_in'\n";
    script(f, "r.lua", "state_version = 3\n" "window { every = 'day', metric = 'daily', "
                       "agg = 'sum', by = {'site'} }\n");
    apply(f, conf);
    push(f, f->door[0], DAY0 + 9 * 3600 * US, 5, NULL);
    settle(f);
    /* a changed script, the same state version: the day's sum goes on */
    script(f, "r.lua", "state_version = 3\n-- changed\n"
                       "window { every = 'day', metric = 'daily', agg = 'sum', by = {'site'} }\n");
    apply(f, conf);
    push(f, f->door[1], DAY0 + 10 * 3600 * US, 6, NULL);
    settle(f);
    /* another state version: afresh (logged) */
    tu_capture_start();
    script(f, "r.lua", "state_version = 4\n"
                       "window { every = 'day', metric = 'daily', agg = 'sum', by = {'site'} }\n");
    apply(f, conf);
    push(f, f->door[1], DAY0 + 11 * 3600 * US, 7, NULL);
    settle(f);
    tu_capture_stop();
    assert_true(tu_captured("starting afresh"));
    atomic_store(&f->clock, DAY0 + 24 * 3600 * US + 5 * US);
    push(f, f->door[1], DAY0 + 24 * 3600 * US + 1, 1, NULL);
    settle(f);
    char *got = figures(f, "r");
    assert_string_equal(got, "daily r 0 7\n"); /* 5 + 6 were dropped with the old state */
    free(got);
}

static void errors_are_contained_and_pause(void **state)
{
    struct fx *f = *state;
    script(f, "bad.lua", "function on_reading(r)\n  if r.value > 2 then error('too big') end\n"
                         "  emit { metric = 'ok', value = r.value }\nend\n");
    script(f, "loop.lua", "function on_reading(r) while true do end end\n");
    tu_capture_start();
    apply(f, "rules:\n  bad:\n    script: bad.lua\n  loop:\n    script: loop.lua\n"
             "    pause_after: 3\n");
    for (int i = 0; i < 6; i++)
        push(f, f->door[0], DAY0 + 9 * 3600 * US + i, i, NULL);
    settle(f);
    tu_capture_stop();
    struct mt_rule_stats st;
    int64_t cursor;
    bool paused;
    assert_int_equal(mt_rules_stats(f->rs, "bad", &st, &cursor, &paused), 0);
    assert_int_equal(st.errors, 3);
    assert_false(paused);
    assert_int_equal(cursor, 9); /* past its own 3 derived readings too */
    char *got = figures(f, "bad");
    assert_string_equal(got, "ok bad 32400 0\nok bad 32400 1\nok bad 32400 2\n");
    free(got);
    assert_true(tu_captured("bad.lua:2: too big"));
    assert_int_equal(mt_rules_stats(f->rs, "loop", &st, &cursor, &paused), 0);
    assert_true(paused);
    assert_int_equal(st.errors, 3);
    assert_int_equal(st.err_limit, 3);
    assert_int_equal(cursor, 3); /* it stopped reading at the third failure */
    assert_true(tu_captured("instruction budget"));
    struct mt_buf b = {0};
    mt_rules_summary(f->rs, &b);
    assert_non_null(strstr(mt_buf_cstr(&b), "rule loop: read 3"));
    assert_non_null(strstr(mt_buf_cstr(&b), "PAUSED"));
    mt_buf_free(&b);
}

/* A figure under the threshold is in the log as 0 with the flag, and no
 * log line of the agent carries it. */
static void suppressed_figures_stored_nowhere(void **state)
{
    struct fx *f = *state;
    script(f, "fam.lua", "window { every = 'day', metric = 'families', agg = 'distinct', "
                         "by = {'service'} }\n"
                         "function on_reading(r) print('x', r.subject) end\n");
    apply(f, "rules:\n  fam:\n    script: fam.lua\n    series: '*/reader/checkin'\n");
    tu_capture_start();
    /* fam.lua defines on_reading: it adds nothing. A second rule counts: */
    script(f, "fam2.lua", "window { every = 'day', metric = 'families', agg = 'distinct', "
                          "by = {'service'} }\n");
    apply(f, "rules:\n  fam:\n    script: fam2.lua\n    series: '*/reader/checkin'\n");
    settle(f); /* else the old script could still read them (and add nothing) */
    push(f, f->checkin, DAY0 + 9 * 3600 * US, 1, "AAAAAAAAAAAAAAAAAAAAA3");
    push(f, f->checkin, DAY0 + 9 * 3600 * US + 1, 1, "AAAAAAAAAAAAAAAAAAAAA4");
    push(f, f->checkin, DAY0 + 9 * 3600 * US + 2, 1, "AAAAAAAAAAAAAAAAAAAAA5");
    settle(f); /* read before the clock passes the day (and its lateness) */
    atomic_store(&f->clock, DAY0 + 25 * 3600 * US);
    mt_rules_notify(f->rs, 0);
    settle(f);
    struct mt_buf b = {0};
    mt_rules_summary(f->rs, &b);
    tu_capture_stop();
    char *got = figures(f, "fam");
    assert_string_equal(got, "families fam 0 <5\n");
    free(got);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM readings r JOIN series s ON s.id = r.series"
                                " WHERE s.origin = 'fam' AND r.value != 0"),
                     0);
    assert_null(strstr(tu_captured_all(), " 3"));
    assert_null(strstr(mt_buf_cstr(&b), " 3 "));
    mt_buf_free(&b);
}

/* Reloads racing the running rule: the script changes back and forth
 * (same state version) while readings flow; the day's sum is exact. */
static void reload_race(void **state)
{
    struct fx *f = *state;
    const char *conf = "rules:\n  race:\n    script: race.lua\n    series: '*/*/visitors_in'\n";
    const char *a = "window { every = 'day', metric = 'daily', agg = 'sum', by = {'site'} }\n";
    const char *b = "-- b\nlocal d = window { every = 'day', metric = 'daily', agg = 'sum', "
                    "by = {'site'} }\nfunction on_reading(r) d:add(r) end\n";
    script(f, "race.lua", a);
    apply(f, conf);
    double total = 0;
    for (int i = 0; i < 400; i++) {
        push(f, f->door[i % 3], DAY0 + 8 * 3600 * US + i * US, (double)(i % 7), NULL);
        total += i % 7;
        if (i % 20 == 7) {
            script(f, "race.lua", (i / 20) % 2 ? a : b);
            apply(f, conf);
        }
        uv_run(&f->loop, UV_RUN_NOWAIT);
    }
    settle(f);
    atomic_store(&f->clock, DAY0 + 25 * 3600 * US);
    mt_rules_notify(f->rs, 0);
    settle(f);
    char *got = figures(f, "race");
    char want[80];
    snprintf(want, sizeof(want), "daily race 0 %.0f\n", total);
    assert_string_equal(got, want);
    free(got);
}

static bool writer_failed(void *arg)
{
    struct fx *f = arg;
    return mt_writer_error(f->w) == MITTARI_ESTORAGE;
}

/* A rule that meets a damaged page of the log (SQLITE_CORRUPT on its own
 * reading connection) tells the writer, which stops writing into the file
 * (the agent then stops with exit 4), and the rule pauses instead of
 * retrying forever. The damage is a page of old readings, in the middle:
 * the writer itself never reads it. */
static void a_damaged_log_is_reported(void **state)
{
    struct fx *f = *state;
    for (int i = 0; i < 6000; i++) {
        struct mt_rec r = {.ts = DAY0 + 8 * 3600 * US + i * 1000, .series = f->door[i % 3],
                           .kind = MITTARI_KIND_DELTA, .value = 1};
        assert_int_equal(mt_writer_push(f->w, &r), 0);
    }
    mt_writer_flush(f->w);
    settle(f);
    /* into the main file (another connection's change drops the writer's
     * page cache), then garbage over a leaf in the middle of the readings */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    assert_int_equal(sqlite3_exec(db, "INSERT OR REPLACE INTO meta VALUES('poke', 1)", NULL, NULL,
                                  NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    int64_t n = sql_int(f, "SELECT count(*) FROM dbstat WHERE name = 'readings' AND pagetype = "
                           "'leaf'");
    assert_true(n >= 4);
    char sql[200];
    snprintf(sql, sizeof(sql), "SELECT pageno FROM dbstat WHERE name = 'readings' AND pagetype = "
                               "'leaf' ORDER BY path LIMIT 1 OFFSET %d", (int)(n / 2));
    int64_t page = sql_int(f, sql), psize = sql_int(f, "PRAGMA page_size");
    FILE *fp = fopen(f->path, "r+b");
    assert_non_null(fp);
    unsigned char junk[65536];
    for (int64_t i = 0; i < psize; i++)
        junk[i] = (unsigned char)(0x5a ^ (i * 131));
    assert_int_equal(fseek(fp, (long)((page - 1) * psize), SEEK_SET), 0);
    assert_int_equal(fwrite(junk, 1, (size_t)psize, fp), (size_t)psize);
    fclose(fp);

    script(f, "count.lua", "window { every = 'hour', metric = 'n', agg = 'count' }\n");
    apply(f, "rules:\n  count:\n    script: count.lua\n");
    assert_true(tu_run_until(&f->loop, writer_failed, f, 15000));
    char what[600];
    mt_writer_fault_text(f->w, what, sizeof(what));
    assert_non_null(strstr(what, "rule count: cannot read the log"));
    struct mt_rule_stats st;
    int64_t cursor;
    bool paused = false;
    for (int i = 0; i < 500 && !paused; i++) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        assert_int_equal(mt_rules_stats(f->rs, "count", &st, &cursor, &paused), 0);
        struct timespec ts = {0, 10 * 1000000};
        nanosleep(&ts, NULL);
    }
    assert_true(paused);
    assert_true(cursor < 6000); /* it stopped at the damage */
}

int main(void)
{
    mt_diag_init();
    mt_diag_set_level(MT_NOTICE);
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(figures_go_back_into_the_log),
        T(late_readings_in_the_log),
        T(restart_resumes),
        T(reload_keeps_state_of_same_version),
        T(errors_are_contained_and_pause),
        T(suppressed_figures_stored_nowhere),
        T(reload_race),
        T(a_damaged_log_is_reported),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
