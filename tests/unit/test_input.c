/* The input host API, driven through the probe test plugin and directly:
 * emit from the loop and from worker threads, validation, pseudonymised
 * subjects, tags, counters, queue limits, lifecycle. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "input.h"
#include "log.h"
#include "plugin.h"
#include "pseudo.h"
#include "series.h"
#include "writer.h"

struct fx {
    char *dir;
    char *db;
    uv_loop_t loop;
    struct mt_series_reg series;
    struct mt_pseudo pseudo;
    struct mt_writer *w;
    struct mt_registry reg;
    struct mt_config *conf;
    struct mittari_ctx *ctx;
    int stopped;
    int64_t want;
};

static int setup_queue(void **state, int64_t queue_max, int64_t interval_ms)
{
    struct fx *f = calloc(1, sizeof(*f));
    char err[256];
    struct mt_logdb *db;

    f->dir = tu_tmpdir();
    f->db = tu_path(f->dir, "log.db");
    uv_loop_init(&f->loop);
    mt_series_init(&f->series);
    assert_int_equal(mt_pseudo_init(&f->pseudo, "0123456789abcdef0123456789abcdef"), 0);
    assert_int_equal(mt_log_open(&db, f->db, MT_LOG_WRITER, err, sizeof(err)), 0);
    struct mt_writer_conf wc = {.batch_size = 1000, .batch_interval_ms = interval_ms,
                                .queue_max = queue_max, .housekeeping_ms = 60000};
    assert_int_equal(mt_writer_start(&f->w, &f->loop, db, &f->series, &wc, NULL, NULL), 0);
    mt_registry_init(&f->reg, TEST_PLUGIN_DIR);
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return setup_queue(state, 100000, 5);
}

static int teardown(void **state)
{
    struct fx *f = *state;
    mt_writer_stop(f->w, 1000);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    uv_loop_close(&f->loop);
    mt_config_free(f->conf);
    mt_registry_free(&f->reg);
    mt_series_free(&f->series);
    mt_pseudo_free(&f->pseudo);
    tu_rmtree(f->dir);
    free(f->db);
    free(f->dir);
    free(f);
    tu_capture_stop();
    return 0;
}

/* Loads one probe input named name from YAML option lines and creates it. */
static int make_named(struct fx *f, const char *name, const char *opts, char *err, size_t errlen)
{
    char text[2048];
    struct mt_diags d = {0};
    snprintf(text, sizeof(text),
             "agent:\n  site: test-site\n  data_dir: %s\ninputs:\n  %s:\n    plugin: probe\n%s",
             f->dir, name, opts);
    char *path = tu_write(f->dir, "c.yaml", text);
    mt_config_free(f->conf);
    int rc = mt_config_load(&f->conf, path, TEST_PLUGIN_DIR, &f->reg, &d);
    if (rc)
        mt_diags_print(&d, stderr);
    assert_int_equal(rc, 0);
    mt_diags_free(&d);
    free(path);
    struct mt_input_env env = {.loop = &f->loop, .writer = f->w, .series = &f->series, .pseudo = &f->pseudo};
    struct mt_inst_conf *ic = f->conf->inputs[0];
    f->conf->inputs[0] = NULL;
    return mt_input_create(&f->ctx, &env, ic, err, errlen);
}

static int make_input(struct fx *f, const char *opts, char *err, size_t errlen)
{
    return make_named(f, "p1", opts, err, errlen);
}

static bool committed_enough(void *arg)
{
    struct fx *f = arg;
    return mt_writer_committed(f->w) >= f->want;
}

static void on_stopped(void *arg)
{
    ((struct fx *)arg)->stopped++;
}

static bool is_stopped(void *arg)
{
    return ((struct fx *)arg)->stopped > 0;
}

static void stop_input(struct fx *f)
{
    mt_input_stop(f->ctx, on_stopped, f);
    assert_true(tu_run_until(&f->loop, is_stopped, f, 5000));
    f->ctx = NULL;
}

static size_t read_all(struct fx *f, struct mt_row *rows, size_t max)
{
    struct mt_logdb *r;
    char err[256];
    size_t n = 0;
    mt_writer_flush(f->w);
    assert_int_equal(mt_log_open(&r, f->db, MT_LOG_READER, err, sizeof(err)), 0);
    assert_int_equal(mt_log_read(r, 0, INT64_MAX, max, rows, &n), 0);
    mt_log_close(r);
    return n;
}

static void emits_at_start_are_committed(void **state)
{
    struct fx *f = *state;
    char err[256];
    struct mt_row rows[64];

    assert_int_equal(make_input(f, "    count: 25\n    metric: door_in\n", err, sizeof(err)), 0);
    assert_int_equal(mt_input_start(f->ctx), 0);
    f->want = 25;
    assert_true(tu_run_until(&f->loop, committed_enough, f, 5000));
    size_t n = read_all(f, rows, 64);
    assert_int_equal(n, 25);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(rows[i].seq, (int64_t)i + 1);
        assert_true(rows[i].value == 1.0);
        const struct mt_series_info *s = mt_series_get(&f->series, rows[i].series);
        assert_string_equal(s->metric, "door_in");
        assert_string_equal(s->device, "p1"); /* defaults to the instance name */
        assert_string_equal(s->site, "test-site");
    }
    struct mt_input_stats st;
    mt_input_get_stats(f->ctx, &st);
    assert_int_equal(st.emitted, 25);
    stop_input(f);
}

static void polls_emit_from_worker_threads(void **state)
{
    struct fx *f = *state;
    char err[256];
    struct mt_row rows[64];

    assert_int_equal(
        make_input(f, "    poll_interval: 10ms\n    poll_runs: 5\n", err, sizeof(err)), 0);
    assert_int_equal(mt_input_start(f->ctx), 0);
    f->want = 5;
    assert_true(tu_run_until(&f->loop, committed_enough, f, 5000));
    /* the poll stopped itself after 5 runs: no sixth reading comes */
    f->want = 6;
    assert_false(tu_run_until(&f->loop, committed_enough, f, 200));
    assert_int_equal(read_all(f, rows, 64), 5);
    assert_string_equal(mt_series_get(&f->series, rows[0].series)->metric, "polled");
    stop_input(f);
}

static void subject_is_pseudonymised(void **state)
{
    struct fx *f = *state;
    char err[256], expect[MT_SUBJECT_SIZE];
    struct mt_row rows[4];
    const char *raw = "0013961168";

    assert_int_equal(make_input(f, "    subject: \"0013961168\"\n", err, sizeof(err)), 0);
    assert_int_equal(mt_input_start(f->ctx), 0);
    f->want = 1;
    assert_true(tu_run_until(&f->loop, committed_enough, f, 5000));
    assert_int_equal(read_all(f, rows, 4), 1);
    assert_int_equal(mt_pseudo_make(&f->pseudo, "card", raw, strlen(raw), expect), 0);
    assert_string_equal(rows[0].subject, expect);
    assert_null(strstr(rows[0].subject, raw));
    stop_input(f);
    mt_writer_flush(f->w);
    /* nowhere in the database file or its WAL */
    const char *files[] = {"log.db", "log.db-wal"};
    for (size_t i = 0; i < 2; i++) {
        char *p = tu_path(f->dir, files[i]);
        size_t len = 0;
        char *data = tu_read(p, &len);
        if (data)
            assert_null(memmem(data, len, raw, strlen(raw)));
        free(data);
        free(p);
    }
}

static void counters_become_deltas(void **state)
{
    struct fx *f = *state;
    char err[256];
    struct mt_row rows[8];

    /* 65530 baseline; +5; wrap at 16 bits: 65535 -> 3 is 4 */
    assert_int_equal(make_input(f, "    counters: \"65530,65535,3,3\"\n    bits: 16\n", err,
                                sizeof(err)),
                     0);
    assert_int_equal(mt_input_start(f->ctx), 0);
    f->want = 2;
    assert_true(tu_run_until(&f->loop, committed_enough, f, 5000));
    assert_int_equal(read_all(f, rows, 8), 2);
    assert_true(rows[0].value == 5.0);
    assert_true(rows[1].value == 4.0);
    const struct mt_writer_stats *st = mt_writer_stats(f->w);
    assert_int_equal(st->counter_first, 1);
    assert_int_equal(st->counter_wraps, 1);
    stop_input(f);
}

static int emit_one(struct fx *f, struct mittari_reading *r)
{
    return mt_host_api.emit(f->ctx, r);
}

static void invalid_readings_are_refused(void **state)
{
    struct fx *f = *state;
    char err[256], long_id[80];
    struct mittari_tag tags[9];

    tu_capture_start();
    assert_int_equal(make_input(f, "", err, sizeof(err)), 0);
    assert_int_equal(mt_input_start(f->ctx), 0);
    memset(long_id, 'x', sizeof(long_id));
    for (int i = 0; i < 9; i++)
        tags[i] = (struct mittari_tag){"k", "v"};

    struct mittari_reading ok = MITTARI_READING_INIT;
    ok.metric = "m";
    ok.kind = MITTARI_KIND_GAUGE;
    ok.value = 2.5;
    assert_int_equal(emit_one(f, &ok), 0);

    struct mittari_reading r;
    r = ok, r.size = 8;
    assert_int_equal(emit_one(f, &r), MITTARI_EREADING);
    r = ok, r.metric = NULL;
    assert_int_equal(emit_one(f, &r), MITTARI_EREADING);
    r = ok, r.metric = "has space";
    assert_int_equal(emit_one(f, &r), MITTARI_EREADING);
    r = ok, r.device = "dev/ice";
    assert_int_equal(emit_one(f, &r), MITTARI_EREADING);
    r = ok, r.unit = "bad\nunit";
    assert_int_equal(emit_one(f, &r), MITTARI_EREADING);
    r = ok, r.kind = 0;
    assert_int_equal(emit_one(f, &r), MITTARI_EREADING);
    r = ok, r.value = NAN;
    assert_int_equal(emit_one(f, &r), MITTARI_EREADING);
    r = ok, r.value = INFINITY;
    assert_int_equal(emit_one(f, &r), MITTARI_EREADING);
    r = ok, r.kind = MITTARI_KIND_CUMULATIVE, r.counter = 70000, r.counter_bits = 16;
    assert_int_equal(emit_one(f, &r), MITTARI_EREADING);
    r = ok, r.tags = tags, r.ntags = 9;
    assert_int_equal(emit_one(f, &r), MITTARI_EREADING);
    r = ok, r.tags = tags, r.ntags = 2; /* the same key twice */
    assert_int_equal(emit_one(f, &r), MITTARI_EREADING);
    r = ok, r.subject_id = long_id, r.subject_id_len = sizeof(long_id);
    assert_int_equal(emit_one(f, &r), MITTARI_EREADING);
    r = ok, r.subject_id = long_id, r.subject_id_len = 4, r.subject_space = "no space";
    assert_int_equal(emit_one(f, &r), MITTARI_EREADING);

    struct mt_input_stats st;
    mt_input_get_stats(f->ctx, &st);
    assert_int_equal(st.invalid, 13);
    assert_int_equal(st.emitted, 1);
    /* logged once, then counted */
    assert_true(tu_captured("input probe[p1]: reading refused: struct mittari_reading too small"));
    assert_false(tu_captured("metric missing"));
    stop_input(f);
}

static void tags_merge_with_static_ones(void **state)
{
    struct fx *f = *state;
    char err[256];

    assert_int_equal(
        make_input(f, "    tags:\n      theme: sport\n      zone: north\n", err, sizeof(err)), 0);
    assert_int_equal(mt_input_start(f->ctx), 0);
    struct mittari_tag t[2] = {{"zone", "south"}, {"area", "a1"}};
    struct mittari_reading r = MITTARI_READING_INIT;
    r.metric = "m";
    r.kind = MITTARI_KIND_EVENT;
    r.value = 1;
    r.tags = t;
    r.ntags = 2;
    assert_int_equal(emit_one(f, &r), 0);
    r.ntags = 0;
    assert_int_equal(emit_one(f, &r), 0);
    assert_int_equal(mt_series_count(&f->series), 2);
    /* sorted keys; the reading's zone wins over the instance's */
    assert_string_equal(mt_series_get(&f->series, 1)->tags,
                        "{\"area\":\"a1\",\"theme\":\"sport\",\"zone\":\"south\"}");
    assert_string_equal(mt_series_get(&f->series, 2)->tags,
                        "{\"theme\":\"sport\",\"zone\":\"north\"}");
    stop_input(f);
}

static void failing_create_is_reported(void **state)
{
    struct fx *f = *state;
    char err[256] = "";
    assert_int_equal(make_input(f, "    fail_create: true\n", err, sizeof(err)), -EIO);
    assert_non_null(strstr(err, "create failed"));
    assert_null(f->ctx);
}

static void stopped_instance_frees_everything(void **state)
{
    struct fx *f = *state;
    char err[256];
    assert_int_equal(make_input(f, "    poll_interval: 5ms\n", err, sizeof(err)), 0);
    assert_int_equal(mt_input_start(f->ctx), 0);
    f->want = 3;
    assert_true(tu_run_until(&f->loop, committed_enough, f, 5000));
    stop_input(f);
    assert_int_equal(f->stopped, 1);
    /* the loop has no handle of the instance left */
    assert_int_equal(uv_run(&f->loop, UV_RUN_NOWAIT), 1); /* only the writer's async */
}

static void device_health_and_counters(void **state)
{
    struct fx *f = *state;
    char err[256], reason[200];
    struct mt_buf b = {0};

    tu_capture_start();
    assert_int_equal(make_input(f, "", err, sizeof(err)), 0);
    assert_int_equal(mt_input_health(f->ctx, "gate-1", reason, sizeof(reason)), MITTARI_HEALTH_UP);
    mt_host_api.set_health(f->ctx, "gate-1", MITTARI_HEALTH_DOWN, "connection refused");
    mt_host_api.set_health(f->ctx, "gate-2", MITTARI_HEALTH_UP, NULL);
    mt_host_api.set_health(f->ctx, "bad name", MITTARI_HEALTH_DOWN, "x"); /* ignored */
    mt_host_api.set_health(f->ctx, "gate-1", 7, "x");                     /* ignored */
    assert_int_equal(mt_input_health(f->ctx, "gate-1", reason, sizeof(reason)),
                     MITTARI_HEALTH_DOWN);
    assert_string_equal(reason, "connection refused");
    assert_true(tu_captured("input probe[p1]: device gate-1 down: connection refused"));
    mt_host_api.count(f->ctx, "gate-1", "timeouts", 2);
    mt_host_api.count(f->ctx, "gate-1", "timeouts", 3);
    mt_host_api.count(f->ctx, NULL, "bad_frames", 1);
    mt_host_api.count(f->ctx, "gate-1", "Not-A-Name", 1); /* ignored */
    assert_int_equal(mt_input_counter(f->ctx, "gate-1", "timeouts"), 5);
    assert_int_equal(mt_input_counter(f->ctx, NULL, "bad_frames"), 1);
    assert_int_equal(mt_input_counter(f->ctx, "gate-1", "Not-A-Name"), 0);
    mt_input_summary(f->ctx, &b);
    const char *t = mt_buf_cstr(&b);
    assert_non_null(strstr(t, "gate-1 down (connection refused)"));
    assert_non_null(strstr(t, "gate-1 timeouts 5"));
    assert_non_null(strstr(t, "bad_frames 1"));
    assert_non_null(strstr(t, "1 devices up"));
    mt_host_api.set_health(f->ctx, "gate-1", MITTARI_HEALTH_UP, NULL);
    assert_true(tu_captured("device gate-1 up"));
    /* up again: no reason left over */
    assert_int_equal(mt_input_health(f->ctx, "gate-1", reason, sizeof(reason)), MITTARI_HEALTH_UP);
    assert_string_equal(reason, "");
    /* a reason is kept to 159 bytes; a new one replaces it */
    char longr[300];
    memset(longr, 'r', sizeof(longr) - 1);
    longr[sizeof(longr) - 1] = '\0';
    mt_host_api.set_health(f->ctx, "gate-1", MITTARI_HEALTH_DEGRADED, longr);
    mt_input_health(f->ctx, "gate-1", reason, sizeof(reason));
    assert_int_equal(strlen(reason), 159);
    mt_host_api.set_health(f->ctx, "gate-1", MITTARI_HEALTH_DEGRADED, "slow");
    mt_input_health(f->ctx, "gate-1", reason, sizeof(reason));
    assert_string_equal(reason, "slow");
    /* at most 16 counters a device, each kept */
    for (int i = 0; i < 20; i++) {
        char name[16];
        snprintf(name, sizeof(name), "c%d", i);
        mt_host_api.count(f->ctx, "gate-3", name, (uint64_t)i + 1);
    }
    for (int i = 0; i < 20; i++) {
        char name[16];
        snprintf(name, sizeof(name), "c%d", i);
        assert_int_equal(mt_input_counter(f->ctx, "gate-3", name), i < 16 ? i + 1 : 0);
    }
    /* many devices: each found again with its own state */
    for (int i = 0; i < 600; i++) {
        char dev[16];
        snprintf(dev, sizeof(dev), "d%d", i);
        mt_host_api.count(f->ctx, dev, "polls", (uint64_t)i);
    }
    for (int i = 0; i < 600; i += 37) {
        char dev[16];
        snprintf(dev, sizeof(dev), "d%d", i);
        assert_int_equal(mt_input_counter(f->ctx, dev, "polls"), i);
    }
    mt_buf_free(&b);
    stop_input(f);
}

static int setup_small_queue(void **state)
{
    return setup_queue(state, 100, 10000);
}

static void full_queue_refuses_with_eagain(void **state)
{
    struct fx *f = *state;
    char err[256];
    assert_int_equal(make_input(f, "", err, sizeof(err)), 0);
    assert_int_equal(mt_input_start(f->ctx), 0);
    struct mittari_reading r = MITTARI_READING_INIT;
    r.metric = "m";
    r.kind = MITTARI_KIND_DELTA;
    r.value = 1;
    int ok = 0, again = 0;
    for (int i = 0; i < 150; i++) {
        int rc = emit_one(f, &r);
        ok += rc == 0;
        again += rc == -EAGAIN;
    }
    assert_int_equal(ok, 100);
    assert_int_equal(again, 50);
    assert_int_equal(mt_writer_stats(f->w)->refused_queue, 50);
    struct mt_input_stats st;
    mt_input_get_stats(f->ctx, &st);
    assert_int_equal(st.refused, 50);
    stop_input(f);
}


/* Issue 15 #7: a timestamp in the wrong unit is refused at emit, counted,
 * and said with the instance's name; before, nanoseconds went into the log
 * as a five-digit year the file output could not read back. */
static void timestamps_out_of_range_are_refused(void **state)
{
    struct fx *f = *state;
    char err[256];
    tu_capture_start();
    assert_int_equal(make_input(f, "", err, sizeof(err)), 0);
    assert_int_equal(mt_input_start(f->ctx), 0);
    struct mittari_reading r = MITTARI_READING_INIT;
    r.metric = "m";
    r.kind = MITTARI_KIND_DELTA;
    r.value = 1;
    r.ts_us = 1764084344000000000LL; /* nanoseconds */
    assert_int_equal(emit_one(f, &r), MITTARI_EREADING);
    r.ts_us = 1764084344000LL; /* milliseconds: 1970 */
    assert_int_equal(emit_one(f, &r), MITTARI_EREADING);
    r.ts_us = -5;
    assert_int_equal(emit_one(f, &r), MITTARI_EREADING);
    r.ts_us = 4102444800000000LL; /* 2100-01-01: the first refused */
    assert_int_equal(emit_one(f, &r), MITTARI_EREADING);
    r.ts_us = 4102444799999999LL;
    assert_int_equal(emit_one(f, &r), 0);
    r.ts_us = 946684800000000LL; /* 2000-01-01: the first accepted */
    assert_int_equal(emit_one(f, &r), 0);
    r.ts_us = 0; /* now */
    assert_int_equal(emit_one(f, &r), 0);
    struct mt_input_stats st;
    mt_input_get_stats(f->ctx, &st);
    assert_int_equal(st.invalid, 4);
    assert_int_equal(st.emitted, 3);
    assert_true(tu_captured("input probe[p1]: reading refused: ts_us 1764084344000000000 is not a "
                            "time in 2000..2099"));
    stop_input(f);
}

static int emit_counter(struct fx *f, struct mittari_ctx *ctx, int64_t ts, uint64_t raw,
                        const char *source)
{
    struct mittari_reading r = MITTARI_READING_INIT;
    r.metric = "visitors_in";
    r.device = "door";
    r.kind = MITTARI_KIND_CUMULATIVE;
    r.counter = raw;
    r.counter_bits = 32;
    r.ts_us = ts;
    r.source = source;
    (void)f;
    return mt_host_api.emit(ctx, &r);
}

#define TS 1764084344000000LL

/* Issue 8 §5: two registers named alike fed one series, and the
 * normalizer took their alternating values for resets: 5 increments
 * became 40,026. Whatever the plugin, a second counter is refused. */
static void two_counters_never_feed_one_series(void **state)
{
    struct fx *f = *state;
    char err[256];
    struct mt_row rows[16];
    tu_capture_start();
    assert_int_equal(make_input(f, "", err, sizeof(err)), 0);
    assert_int_equal(mt_input_start(f->ctx), 0);
    /* two registers in one Modbus answer: one time, two values */
    assert_int_equal(emit_counter(f, f->ctx, TS, 5, NULL), 0);
    assert_int_equal(emit_counter(f, f->ctx, TS, 70000, NULL), MITTARI_EREADING);
    assert_int_equal(emit_counter(f, f->ctx, TS, 5, NULL), 0); /* the same value again: fine */
    assert_int_equal(emit_counter(f, f->ctx, TS + 1000, 6, NULL), 0);
    assert_int_equal(emit_counter(f, f->ctx, TS + 1000, 70001, NULL), MITTARI_EREADING);
    assert_true(tu_captured("counter reading refused: series test-site/door/visitors_in got two "
                            "counter values (5 and 70000) for one time"));
    /* a plugin that says which counter: the second source is refused */
    assert_int_equal(emit_counter(f, f->ctx, TS + 2000, 7, "unit 1 holding 10"), 0);
    assert_int_equal(emit_counter(f, f->ctx, TS + 3000, 70002, "unit 1 holding 12"),
                     MITTARI_EREADING);
    assert_int_equal(emit_counter(f, f->ctx, TS + 4000, 8, "unit 1 holding 10"), 0);
    /* a second instance with the same site, device and metric */
    struct mittari_ctx *first = f->ctx;
    assert_int_equal(make_named(f, "p2", "", err, sizeof(err)), 0);
    assert_int_equal(mt_input_start(f->ctx), 0);
    struct mittari_ctx *second = f->ctx;
    assert_int_equal(emit_counter(f, second, TS + 5000, 90000, NULL), MITTARI_EREADING);
    assert_true(tu_captured("series test-site/door/visitors_in is fed by input p1 already"));
    struct mt_input_stats st;
    mt_input_get_stats(first, &st);
    assert_int_equal(st.conflicts, 3);
    mt_input_get_stats(second, &st);
    assert_int_equal(st.conflicts, 1);
    /* stored: the first counter's steps only, 5 -> 6 -> 7 -> 8 */
    f->want = 3;
    assert_true(tu_run_until(&f->loop, committed_enough, f, 5000));
    assert_int_equal(read_all(f, rows, 16), 3);
    for (int i = 0; i < 3; i++)
        assert_true(rows[i].value == 1.0);
    assert_int_equal(mt_writer_stats(f->w)->counter_resets, 0);
    /* once the first instance is gone the series is free for the other */
    f->ctx = first;
    stop_input(f);
    f->ctx = second;
    assert_int_equal(emit_counter(f, second, TS + 6000, 90000, NULL), 0);
    stop_input(f);
}

/* A plugin built for ABI 1.0 passes the old, shorter struct: accepted,
 * and the field it does not have is never read. */
static void abi_1_0_readings_are_accepted(void **state)
{
    struct fx *f = *state;
    char err[256];
    assert_int_equal(make_input(f, "", err, sizeof(err)), 0);
    assert_int_equal(mt_input_start(f->ctx), 0);
    unsigned char *mem = malloc(MITTARI_READING_SIZE_1_0);
    struct mittari_reading r = MITTARI_READING_INIT;
    r.size = (uint32_t)MITTARI_READING_SIZE_1_0;
    r.metric = "c";
    r.kind = MITTARI_KIND_CUMULATIVE;
    r.counter = 3;
    r.counter_bits = 16;
    memcpy(mem, &r, MITTARI_READING_SIZE_1_0); /* the source field lies beyond: ASan sees a read */
    assert_int_equal(mt_host_api.emit(f->ctx, (const struct mittari_reading *)mem), 0);
    free(mem);
    stop_input(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(emits_at_start_are_committed, setup, teardown),
        cmocka_unit_test_setup_teardown(polls_emit_from_worker_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(subject_is_pseudonymised, setup, teardown),
        cmocka_unit_test_setup_teardown(counters_become_deltas, setup, teardown),
        cmocka_unit_test_setup_teardown(invalid_readings_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(tags_merge_with_static_ones, setup, teardown),
        cmocka_unit_test_setup_teardown(failing_create_is_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(stopped_instance_frees_everything, setup, teardown),
        cmocka_unit_test_setup_teardown(device_health_and_counters, setup, teardown),
        cmocka_unit_test_setup_teardown(full_queue_refuses_with_eagain, setup_small_queue,
                                        teardown),
        cmocka_unit_test_setup_teardown(timestamps_out_of_range_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(two_counters_never_feed_one_series, setup, teardown),
        cmocka_unit_test_setup_teardown(abi_1_0_readings_are_accepted, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
