/* Health and the status report (report.c) from hand-made snapshots and log
 * figures: each rule that makes the agent degraded or failing, and the
 * STATUS= line. Clocks are fixed numbers. */
#include "testutil.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <mittari/mittari.h>

#include "logfacts.h"
#include "report.h"
#include "snapshot.h"

#define US 1000000LL
#define NOW (1790000000LL * US)
#define MONO (5000LL * US)

static const struct mt_health_conf hc = {.stall_us = 5 * US, .backlog_warn_us = 3600 * US};

struct fx {
    struct mt_snap s;
    struct mt_snap_input in[1];
    struct mt_snap_device dev[2];
    struct mt_snap_output out[1];
    struct mt_facts f;
    struct mt_fact_output fo[1];
    struct mt_fact_parked fp[1];
    const char *cn[2];
    uint64_t cv[2];
};

static int setup(void **state)
{
    struct fx *x = calloc(1, sizeof(*x));
    x->s = (struct mt_snap){.taken_us = NOW, .taken_mono_us = MONO, .agent_id = "gw1",
                            .site = "lib", .timezone = "Europe/Helsinki", .version = "0.1.0",
                            .phase = "running", .started_us = NOW - 90 * US, .pid = 42,
                            .committed = 100, .ninputs = 1, .noutputs = 1, .inputs = x->in,
                            .outputs = x->out};
    x->cn[0] = "bad_frames";
    x->cn[1] = "timeouts";
    x->cv[0] = 3;
    x->cv[1] = 5;
    x->dev[0] = (struct mt_snap_device){.name = "", .health = MITTARI_HEALTH_UP, .reason = ""};
    x->dev[1] = (struct mt_snap_device){.name = "door-1", .health = MITTARI_HEALTH_UP,
                                        .reason = "", .ncounters = 2, .counter_names = x->cn,
                                        .counter_values = x->cv};
    x->in[0] = (struct mt_snap_input){.name = "lobby", .plugin = "serial", .site = "lib",
                                      .last_reading_us = NOW - 2 * US, .ndevs = 2,
                                      .devs = x->dev};
    x->in[0].st.emitted = 100;
    x->out[0] = (struct mt_snap_output){.name = "wh", .type = "http", .cursor = 100};
    x->fo[0] = (struct mt_fact_output){.name = "wh", .cursor = 100};
    x->f = (struct mt_facts){.taken_us = NOW, .log_bytes = 4096, .min_seq = 1, .max_seq = 100,
                             .rows = 100, .noutputs = 1, .outputs = x->fo};
    *state = x;
    return 0;
}

static int teardown(void **state)
{
    free(*state);
    return 0;
}

static void eval(struct fx *x, struct mt_health *h)
{
    mt_health_eval(&x->s, &x->f, &hc, NOW, MONO + US, h);
}

static bool has_reason(const struct mt_health *h, const char *needle)
{
    for (size_t i = 0; i < h->n; i++)
        if (strstr(h->reasons[i], needle))
            return true;
    return false;
}

static void all_well_is_ok(void **state)
{
    struct mt_health h;
    eval(*state, &h);
    assert_int_equal(h.level, MT_HEALTH_OK);
    assert_int_equal(h.n, 0);
    assert_string_equal(mt_health_name(h.level), "ok");
}

static void stalled_loop_is_failing(void **state)
{
    struct fx *x = *state;
    struct mt_health h;
    mt_health_eval(&x->s, &x->f, &hc, NOW, MONO + 6 * US, &h);
    assert_int_equal(h.level, MT_HEALTH_FAILING);
    assert_true(has_reason(&h, "has not turned for 6.0 s"));
    /* at the threshold it is not yet */
    mt_health_eval(&x->s, &x->f, &hc, NOW, MONO + 5 * US, &h);
    assert_int_equal(h.level, MT_HEALTH_OK);
}

static void no_agent_storage_and_stop_are_failing(void **state)
{
    struct fx *x = *state;
    struct mt_health h;
    mt_health_eval(NULL, &x->f, &hc, NOW, MONO, &h);
    assert_int_equal(h.level, MT_HEALTH_FAILING);
    assert_true(has_reason(&h, "not running"));

    x->s.writer_error = -ENOSPC;
    eval(x, &h);
    assert_int_equal(h.level, MT_HEALTH_FAILING);
    assert_true(has_reason(&h, "cannot be written"));
    assert_true(has_reason(&h, "disk or size cap full"));

    x->s.writer_error = 0;
    x->s.phase = "stopping";
    eval(x, &h);
    assert_int_equal(h.level, MT_HEALTH_FAILING);
    assert_true(has_reason(&h, "stopping"));
}

static void device_down_is_degraded(void **state)
{
    struct fx *x = *state;
    struct mt_health h;
    x->dev[1].health = MITTARI_HEALTH_DOWN;
    x->dev[1].reason = "no answer";
    eval(x, &h);
    assert_int_equal(h.level, MT_HEALTH_DEGRADED);
    assert_true(has_reason(&h, "input lobby: device door-1 down: no answer"));
}

static void old_backlog_and_parked_are_degraded(void **state)
{
    struct fx *x = *state;
    struct mt_health h;
    x->fo[0].backlog = 20;
    x->fo[0].oldest_us = NOW - 3599 * US;
    eval(x, &h);
    assert_int_equal(h.level, MT_HEALTH_OK); /* under backlog_warn */
    x->fo[0].oldest_us = NOW - 7300 * US;
    eval(x, &h);
    assert_int_equal(h.level, MT_HEALTH_DEGRADED);
    assert_true(has_reason(&h, "output wh: 20 readings wait for delivery, the oldest for 2 h 1 min"));

    x->fo[0].oldest_us = 0;
    x->out[0].st.parked_batches = 2;
    x->out[0].st.parked_readings = 70;
    eval(x, &h);
    assert_int_equal(h.level, MT_HEALTH_DEGRADED);
    assert_true(has_reason(&h, "2 batches (70 readings) parked"));
}

static void recent_trouble_is_degraded(void **state)
{
    struct fx *x = *state;
    struct mt_health h;
    x->s.recent_refused = 12;
    x->s.recent_lag_max_ns = 1500000000ull;
    eval(x, &h);
    assert_int_equal(h.level, MT_HEALTH_DEGRADED);
    assert_true(has_reason(&h, "12 readings refused at intake"));
    assert_true(has_reason(&h, "blocked for 1.5 s"));
    x->s.recent_refused = 0;
    x->s.recent_lag_max_ns = 0;
    x->s.recent_dropped = 3;
    eval(x, &h);
    assert_true(has_reason(&h, "3 undelivered readings dropped"));
    x->s.recent_dropped = 0;
    x->f.error = -EIO;
    x->f.error_text = "disk I/O error";
    eval(x, &h);
    assert_int_equal(h.level, MT_HEALTH_DEGRADED);
    assert_true(has_reason(&h, "cannot read the log: disk I/O error"));
}

static void json_and_text_carry_the_figures(void **state)
{
    struct fx *x = *state;
    struct mt_health h;
    struct mt_buf b = {0};
    x->fo[0].backlog = 20;
    x->fo[0].oldest_us = NOW - 30 * US;
    x->fp[0] = (struct mt_fact_parked){.output = "wh", .batches = 1, .readings = 10,
                                       .last_at_us = NOW - 60 * US,
                                       .last_error = "HTTP 400: \"bad\" field"};
    x->f.parked = x->fp;
    x->f.nparked = 1;
    eval(x, &h);
    mt_report_json(&x->s, &x->f, &h, NOW, &b);
    const char *j = mt_buf_cstr(&b);
    assert_non_null(strstr(j, "\"health\":{\"status\":\"ok\",\"reasons\":[]}"));
    assert_non_null(strstr(j, "\"uptime_s\":90.000"));
    assert_non_null(strstr(j, "\"decode_errors\":3,"));
    assert_non_null(strstr(j, "\"counters\":{\"bad_frames\":3,\"timeouts\":5}"));
    assert_non_null(strstr(j, "\"backlog\":20,\"backlog_oldest\":"));
    assert_non_null(strstr(j, "\"backlog_age_s\":30.000"));
    assert_non_null(strstr(j, "\"last_error\":\"HTTP 400: \\\"bad\\\" field\""));
    assert_non_null(strstr(j, "\"rules\":[]"));
    mt_buf_free(&b);

    mt_report_text(&x->s, &x->f, &h, NOW, &b);
    const char *t = mt_buf_cstr(&b);
    assert_non_null(strstr(t, "agent gw1, site lib, running (pid 42, up 90 s)"));
    assert_non_null(strstr(t, "backlog 20 (oldest 30 s)"));
    assert_non_null(strstr(t, "parked: 1 batches, 10 readings; the last 60 s ago: HTTP 400"));
    assert_non_null(strstr(t, "door-1               up; bad_frames 3, timeouts 5"));
    mt_buf_free(&b);

    /* the agent down: outputs come from the log's cursors */
    mt_report_text(NULL, &x->f, &h, NOW, &b);
    assert_non_null(strstr(mt_buf_cstr(&b), "figures from the log"));
    assert_non_null(strstr(mt_buf_cstr(&b), "wh"));
    mt_buf_free(&b);
}

/* an output whose failures grew after its last success is failing now */
static void failing_output_is_degraded(void **state)
{
    struct fx *x = *state;
    struct mt_health h;
    struct mt_buf b = {0};
    x->out[0].last_success_us = NOW - 300 * US;
    x->out[0].last_error_us = NOW - 20 * US;
    eval(x, &h);
    assert_int_equal(h.level, MT_HEALTH_DEGRADED);
    assert_true(has_reason(&h, "output wh: deliveries fail (retrying; the last failure 20 s ago)"));
    mt_report_json(&x->s, &x->f, &h, NOW, &b);
    assert_non_null(strstr(mt_buf_cstr(&b), "\"last_success\":\""));
    assert_non_null(strstr(mt_buf_cstr(&b), "\"last_error_at\":\""));
    assert_non_null(strstr(mt_buf_cstr(&b), "\"last_error\":null")); /* no text given */
    mt_buf_free(&b);
    x->out[0].last_error = "HTTP 503";
    eval(x, &h);
    assert_true(has_reason(&h, "the last failure 20 s ago: HTTP 503)"));
    mt_report_json(&x->s, &x->f, &h, NOW, &b);
    assert_non_null(strstr(mt_buf_cstr(&b), "\"last_error\":\"HTTP 503\""));
    mt_buf_free(&b);
    /* delivered again since: not failing */
    x->out[0].last_success_us = NOW - 5 * US;
    eval(x, &h);
    assert_int_equal(h.level, MT_HEALTH_OK);
}

static void status_line(void **state)
{
    struct fx *x = *state;
    struct mt_health h;
    char line[256];
    x->fo[0].backlog = 20;
    x->fo[0].oldest_us = NOW - 7300 * US;
    x->dev[1].health = MITTARI_HEALTH_DOWN;
    eval(x, &h);
    mt_report_status_line(&x->s, &x->f, &h, NOW, line, sizeof(line));
    assert_string_equal(line, "degraded; inputs 0/1 up; backlog 20 (oldest 2 h 1 min); input "
                              "lobby: device door-1 down");
    /* it fits whatever the reasons' length */
    char small[40];
    mt_report_status_line(&x->s, &x->f, &h, NOW, small, sizeof(small));
    assert_int_equal(strlen(small), sizeof(small) - 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(all_well_is_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(stalled_loop_is_failing, setup, teardown),
        cmocka_unit_test_setup_teardown(no_agent_storage_and_stop_are_failing, setup, teardown),
        cmocka_unit_test_setup_teardown(device_down_is_degraded, setup, teardown),
        cmocka_unit_test_setup_teardown(old_backlog_and_parked_are_degraded, setup, teardown),
        cmocka_unit_test_setup_teardown(recent_trouble_is_degraded, setup, teardown),
        cmocka_unit_test_setup_teardown(json_and_text_carry_the_figures, setup, teardown),
        cmocka_unit_test_setup_teardown(failing_output_is_degraded, setup, teardown),
        cmocka_unit_test_setup_teardown(status_line, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
