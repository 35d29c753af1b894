/* The Prometheus text format (metrics.c): every line well formed, each
 * family declared once before its samples, label values escaped, the
 * loop-lag histogram cumulative. The integration test parses the real
 * endpoint's output with python3-prometheus-client as well. */
#include "testutil.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mittari/mittari.h>

#include "metrics.h"
#include "report.h"
#include "snapshot.h"

static bool name_ok(const char *s, size_t n)
{
    if (!n || !(isalpha((unsigned char)s[0]) || s[0] == '_' || s[0] == ':'))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == ':'))
            return false;
    return true;
}

/* Checks one sample line; returns the metric name's length. */
static size_t check_sample(const char *l)
{
    size_t n = strcspn(l, "{ ");
    assert_true(name_ok(l, n));
    const char *p = l + n;
    if (*p == '{') {
        p++;
        while (*p != '}') {
            size_t k = strcspn(p, "=");
            assert_true(name_ok(p, k));
            p += k;
            assert_int_equal(*p++, '=');
            assert_int_equal(*p++, '"');
            while (*p != '"') {
                assert_true(*p && *p != '\n');
                if (*p == '\\') {
                    p++;
                    assert_true(*p == '\\' || *p == '"' || *p == 'n');
                }
                p++;
            }
            p++;
            if (*p == ',')
                p++;
            else
                assert_int_equal(*p, '}');
        }
        p++;
    }
    assert_int_equal(*p++, ' ');
    char *end;
    if (strcmp(p, "+Inf") != 0) {
        strtod(p, &end);
        assert_true(end != p && *end == 0);
    }
    return n;
}

/* Every line is HELP, TYPE or a sample of the family last declared. */
static void check_exposition(const char *text)
{
    char *copy = strdup(text), *save = NULL, family[128] = "", seen[16384] = " ";
    assert_true(text[strlen(text) - 1] == '\n');
    for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        if (strncmp(l, "# HELP ", 7) == 0)
            continue;
        if (strncmp(l, "# TYPE ", 7) == 0) {
            char type[32];
            assert_int_equal(sscanf(l, "# TYPE %127s %31s", family, type), 2);
            assert_true(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0 ||
                        strcmp(type, "histogram") == 0);
            char key[140];
            snprintf(key, sizeof(key), " %s ", family);
            if (strstr(seen, key))
                fail_msg("family %s declared twice", family);
            strncat(seen, key + 1, sizeof(seen) - strlen(seen) - 1);
            continue;
        }
        size_t n = check_sample(l);
        size_t fl = strlen(family);
        assert_true(fl && n >= fl && strncmp(l, family, fl) == 0);
        const char *suffix = l + fl;
        assert_true(n == fl || strncmp(suffix, "_bucket", 7) == 0 ||
                    strncmp(suffix, "_sum", 4) == 0 || strncmp(suffix, "_count", 6) == 0);
    }
    free(copy);
}

static double value_of(const char *text, const char *sample)
{
    char line[512];
    snprintf(line, sizeof(line), "\n%s ", sample); /* a sample line, not a HELP */
    const char *p = strstr(text, line);
    if (!p)
        fail_msg("no sample %s in\n%s", sample, text);
    p += strlen(line) - 1;
    assert_int_equal(*p, ' ');
    return strtod(p + 1, NULL);
}

static void exposition_is_well_formed(void **state)
{
    (void)state;
    struct mt_snap_device dev = {.name = "door \"1\"\\\nx", .health = MITTARI_HEALTH_DEGRADED,
                                 .reason = "", .ncounters = 1,
                                 .counter_names = (const char *[]){"bad_frames"},
                                 .counter_values = (uint64_t[]){4}};
    struct mt_snap_input in = {.name = "lobby", .plugin = "serial", .site = "lib", .ndevs = 1,
                               .devs = &dev, .last_reading_us = 1790000000500000LL};
    in.st.emitted = 1234567;
    in.st.refused = 2;
    struct mt_snap_output out = {.name = "wh", .type = "http", .cursor = 90};
    out.st.delivered = 90;
    out.st.retries = 3;
    struct mt_snap s = {.taken_us = 1790000001000000LL, .version = "0.1.0", .phase = "running",
                        .agent_id = "gw", .site = "lib", .timezone = "UTC",
                        .started_us = 1790000000000000LL, .committed = 100, .ninputs = 1,
                        .inputs = &in, .noutputs = 1, .outputs = &out};
    s.w.stored = 100;
    s.w.counter_wraps = 2;
    mt_lag_observe(&s.lag, 300000);     /* 0.3 ms */
    mt_lag_observe(&s.lag, 3000000);    /* 3 ms */
    mt_lag_observe(&s.lag, 7000000000); /* 7 s: beyond the last bound */
    struct mt_fact_output fo = {.name = "wh", .cursor = 90, .backlog = 10,
                                .oldest_us = 1789999941000000LL};
    struct mt_facts f = {.log_bytes = 8192, .rows = 100, .noutputs = 1, .outputs = &fo};
    struct mt_health h = {.level = MT_HEALTH_DEGRADED};
    struct mt_buf b = {0};

    assert_int_equal(mt_metrics_write(&s, &f, &h, s.taken_us, &b), 0);
    const char *t = mt_buf_cstr(&b);
    check_exposition(t);
    assert_int_equal(
        value_of(t, "mittari_input_readings_received_total{input=\"lobby\",plugin=\"serial\"}"),
        1234567);
    assert_int_equal(value_of(t, "mittari_health{status=\"degraded\"}"), 1);
    assert_int_equal(value_of(t, "mittari_health{status=\"ok\"}"), 0);
    assert_int_equal(value_of(t, "mittari_input_decode_errors_total{input=\"lobby\"}"), 4);
    /* a device name with a quote, a backslash and a newline, escaped */
    assert_int_equal(
        value_of(t, "mittari_device_up{input=\"lobby\",device=\"door \\\"1\\\"\\\\\\nx\"}") * 2,
        1);
    assert_int_equal(value_of(t, "mittari_output_backlog_readings{output=\"wh\"}"), 10);
    assert_int_equal(value_of(t, "mittari_output_backlog_age_seconds{output=\"wh\"}"), 60);
    assert_int_equal(value_of(t, "mittari_output_retries_total{output=\"wh\",type=\"http\"}"), 3);
    assert_int_equal(value_of(t, "mittari_counter_wraps_total"), 2);
    assert_int_equal(value_of(t, "mittari_log_size_bytes"), 8192);
    /* cumulative buckets; +Inf equals the count */
    assert_int_equal(value_of(t, "mittari_loop_lag_seconds_bucket{le=\"0.0005\"}"), 1);
    assert_int_equal(value_of(t, "mittari_loop_lag_seconds_bucket{le=\"0.0025\"}"), 1);
    assert_int_equal(value_of(t, "mittari_loop_lag_seconds_bucket{le=\"0.005\"}"), 2);
    assert_int_equal(value_of(t, "mittari_loop_lag_seconds_bucket{le=\"5\"}"), 2);
    assert_int_equal(value_of(t, "mittari_loop_lag_seconds_bucket{le=\"+Inf\"}"), 3);
    assert_int_equal(value_of(t, "mittari_loop_lag_seconds_count"), 3);
    assert_true(value_of(t, "mittari_loop_lag_seconds_sum") > 7.003 &&
                value_of(t, "mittari_loop_lag_seconds_sum") < 7.0034);
    mt_buf_free(&b);

    /* without the log's figures the families that need them are left out */
    assert_int_equal(mt_metrics_write(&s, NULL, &h, s.taken_us, &b), 0);
    check_exposition(mt_buf_cstr(&b));
    assert_null(strstr(mt_buf_cstr(&b), "mittari_log_size_bytes"));
    mt_buf_free(&b);
}

static void lag_buckets(void **state)
{
    (void)state;
    struct mt_lag_hist h = {0};
    mt_lag_observe(&h, 500000); /* exactly 0.5 ms: le="0.0005" */
    mt_lag_observe(&h, 500001);
    mt_lag_observe(&h, 0);
    assert_int_equal(h.counts[0], 2);
    assert_int_equal(h.counts[1], 1);
    assert_int_equal(h.n, 3);
    assert_int_equal(h.max_ns, 500001);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(exposition_is_well_formed),
        cmocka_unit_test(lag_buckets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
