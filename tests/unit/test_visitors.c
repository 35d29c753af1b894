/* The status page's visitors per local hour (visitors.c): which readings
 * count, the DST days of Europe/Helsinki (23 and 25 hours), the week-ago
 * alignment, the days kept. Every clock is fixed: nothing depends on when
 * the test runs. */
#include "testutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mittari/mittari.h>

#include "rulewin.h"
#include "series.h"
#include "tz.h"
#include "util.h"
#include "visitors.h"

#define US 1000000LL
/* UTC instant of y-mo-d h:mi */
#define UTC(y, mo, d, h, mi) \
    (((int64_t)mt_days_from_civil(y, mo, d) * 86400 + (h)*3600 + (mi)*60) * US)

struct fx {
    struct mt_series_reg reg;
    struct mt_tz *tz;
    uint32_t door1, door2, out1, gauge, gate, other_site;
};

static uint32_t add_series(struct mt_series_reg *r, const char *site, const char *dev,
                           const char *metric, int kind)
{
    struct mt_series_info k = {.kind = kind, .site = site, .device = dev, .metric = metric,
                               .unit = "persons", .tags = ""};
    uint32_t id = 0;
    assert_int_equal(mt_series_intern(r, &k, &id), 0);
    return id;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    char err[200];
    assert_non_null(f);
    assert_int_equal(mt_series_init(&f->reg), 0);
    assert_int_equal(mt_tz_load(&f->tz, "Europe/Helsinki", err, sizeof(err)), 0);
    f->door1 = add_series(&f->reg, "lib", "door-1", "visitors_in", MITTARI_KIND_DELTA);
    f->door2 = add_series(&f->reg, "lib", "door-2", "visitors_in", MITTARI_KIND_DELTA);
    f->out1 = add_series(&f->reg, "lib", "door-1", "visitors_out", MITTARI_KIND_DELTA);
    f->gauge = add_series(&f->reg, "lib", "hall", "visitors_in", MITTARI_KIND_GAUGE);
    f->gate = add_series(&f->reg, "pool", "gate", "visitors", MITTARI_KIND_CUMULATIVE);
    f->other_site = add_series(&f->reg, "pool", "door-a", "visitors_in", MITTARI_KIND_EVENT);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    mt_tz_free(f->tz);
    mt_series_free(&f->reg);
    free(f);
    return 0;
}

static void add(struct mt_visitors *v, uint32_t series, int64_t ts, double value)
{
    static int64_t seq;
    struct mt_row r = {.seq = ++seq, .ts = ts, .series = series, .value = value};
    mt_visitors_add(v, &r, 1);
}

static char *day_json(struct mt_visitors *v, const struct mt_tz *tz, const char *day,
                      int64_t now, int expect_rc)
{
    struct mt_buf b = {0};
    char err[200] = "";
    int rc = mt_visitors_day_json(v, tz, day, now, &b, err, sizeof(err));
    if (rc != expect_rc)
        fail_msg("day %s: rc %d (%s), expected %d", day ? day : "today", rc, err, expect_rc);
    if (rc) {
        mt_buf_free(&b);
        return strdup(err);
    }
    return b.p;
}

static void contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        fail_msg("expected\n  %s\nin\n  %s", needle, hay);
}

static struct mt_visitors *fresh(struct fx *f, const char *patterns, int64_t now)
{
    struct mt_visitors *v;
    assert_int_equal(mt_visitors_new(&v, patterns, &f->reg), 0);
    mt_visitors_prune(v, mt_visitors_keep_from(f->tz, now));
    mt_visitors_set_loaded(v, true);
    return v;
}

/* 2026-03-29: Helsinki goes from +2 to +3 at 03:00 local (01:00Z): the day
 * has 23 hours and no 03; the Sunday a week before has 24 and its 03
 * stands in a column of its own. The hours after now are null. */
static void spring_day_has_23_hours(void **state)
{
    struct fx *f = *state;
    int64_t now = UTC(2026, 3, 29, 11, 30); /* 14:30 local */
    struct mt_visitors *v = fresh(f, "visitors_in", now);

    add(v, f->door1, UTC(2026, 3, 28, 22, 10), 1);   /* 00:10 local */
    add(v, f->door1, UTC(2026, 3, 29, 0, 59) + 59 * US, 2); /* 02:59:59 */
    add(v, f->door1, UTC(2026, 3, 29, 1, 0), 3);     /* 04:00, just after the change */
    add(v, f->door1, UTC(2026, 3, 29, 11, 20), 5);   /* 14:20 */
    add(v, f->door1, UTC(2026, 3, 29, 12, 10), 9);   /* 15:10: after now, not shown */
    add(v, f->door2, UTC(2026, 3, 29, 7, 0), 4);     /* 10:00 */
    add(v, f->out1, UTC(2026, 3, 29, 7, 0), 100);    /* visitors_out: not a visitor */
    add(v, f->gauge, UTC(2026, 3, 29, 7, 0), 100);   /* a gauge never counts */
    add(v, f->door1, UTC(2026, 3, 22, 1, 30), 7);    /* 2026-03-22 03:30 local (+2) */
    add(v, f->door1, UTC(2026, 3, 22, 21, 59), 1);   /* 23:59 local */

    char *j = day_json(v, f->tz, NULL, now, 0);
    contains(j, "\"day\":{\"date\":\"2026-03-29\",\"hours\":23,");
    contains(j, "\"start\":\"2026-03-28T22:00:00Z\",\"end\":\"2026-03-29T21:00:00Z\"");
    contains(j, "\"week_ago\":{\"date\":\"2026-03-22\",\"hours\":24,");
    contains(j, "{\"label\":\"03\",\"start\":null,\"week_ago_start\":\"2026-03-22T01:00:00Z\"}");
    contains(j, "{\"label\":\"04\",\"start\":\"2026-03-29T01:00:00Z\","
                "\"week_ago_start\":\"2026-03-22T02:00:00Z\"}");
    contains(j, "{\"door\":\"door-1\",\"day\":[1,0,2,null,3,0,0,0,0,0,0,0,0,0,5,null,null,null,"
                "null,null,null,null,null,null],\"week_ago\":[0,0,0,7,0,0,0,0,0,0,0,0,0,0,0,0,0,"
                "0,0,0,0,0,0,1],\"day_total\":11,\"week_ago_total\":8}");
    contains(j, "{\"door\":\"door-2\",\"day\":[0,0,0,null,0,0,0,0,0,0,4,0,0,0,0,null");
    contains(j, "{\"site\":\"lib\",\"total\":{\"day\":[1,0,2,null,3,0,0,0,0,0,4,0,0,0,5,null");
    contains(j, "\"day_total\":15,\"week_ago_total\":8},\"doors\":[");
    assert_null(strstr(j, "hall"));
    assert_null(strstr(j, "\"pool\"")); /* no visitors_in there: its event series is "seen"
                                         * only when a reading of it comes */
    free(j);
    /* the same day asked by date gives the same document */
    char *k = day_json(v, f->tz, "2026-03-29", now, 0);
    j = day_json(v, f->tz, NULL, now, 0);
    assert_string_equal(j, k);
    free(j);
    free(k);
    mt_visitors_free(v);
}

/* 2026-10-25: 04:00 +3 becomes 03:00 +2: 25 hours, 03 twice (labelled with
 * the offset); the week-ago 03 lines up with the first. */
static void autumn_day_has_25_hours(void **state)
{
    struct fx *f = *state;
    int64_t now = UTC(2026, 10, 25, 21, 30); /* 23:30 local (+2) */
    struct mt_visitors *v = fresh(f, "visitors_in, visitors", now);

    add(v, f->door1, UTC(2026, 10, 25, 0, 30), 1); /* 03:30 +3 */
    add(v, f->door1, UTC(2026, 10, 25, 1, 30), 2); /* 03:30 +2 */
    add(v, f->door1, UTC(2026, 10, 18, 0, 30), 4); /* a week before, 03:30 +3 */
    add(v, f->gate, UTC(2026, 10, 25, 12, 0), 6);  /* pool's gate: "visitors", a cumulative */
    add(v, f->other_site, UTC(2026, 10, 25, 12, 5), 1);

    char *j = day_json(v, f->tz, NULL, now, 0);
    contains(j, "\"hours\":25,");
    contains(j, "{\"label\":\"03+3\",\"start\":\"2026-10-25T00:00:00Z\","
                "\"week_ago_start\":\"2026-10-18T00:00:00Z\"}");
    contains(j, "{\"label\":\"03+2\",\"start\":\"2026-10-25T01:00:00Z\",\"week_ago_start\":null}");
    contains(j, "{\"door\":\"door-1\",\"day\":[0,0,0,1,2,0,");
    contains(j, "\"week_ago\":[0,0,0,4,null,0,");
    /* two sites, in name order, each with its own doors */
    const char *lib = strstr(j, "{\"site\":\"lib\""), *pool = strstr(j, "{\"site\":\"pool\"");
    assert_non_null(lib);
    assert_non_null(pool);
    assert_true(lib < pool);
    contains(pool, "{\"door\":\"door-a\",");
    contains(pool, "{\"door\":\"gate\",");
    /* 12:00Z is 14:00 local, column 15 after the two 03s */
    contains(pool, "\"total\":{\"day\":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,7,0,");
    free(j);
    mt_visitors_free(v);
}

/* The aggregate keeps 15 local days; an older day (or one whose week-ago
 * day is older) must be counted from the log; a day to come is refused; a
 * bad date is a bad request. */
static void days_kept_and_refused(void **state)
{
    struct fx *f = *state;
    int64_t now = UTC(2026, 3, 29, 11, 30);
    struct mt_visitors *v = fresh(f, "visitors_in", now);
    int64_t from, to;

    /* 15 local days: 2026-03-15 00:00 (+2) is the first instant kept */
    assert_int_equal(mt_visitors_keep_from(f->tz, now), UTC(2026, 3, 14, 22, 0));
    add(v, f->door1, UTC(2026, 3, 14, 21, 59), 50); /* before it: not counted */
    add(v, f->door1, UTC(2026, 3, 14, 22, 0), 1);

    char *j = day_json(v, f->tz, "2026-03-22", now, 0); /* its week-ago is 03-15: kept */
    contains(j, "\"week_ago_total\":1}");
    free(j);
    free(day_json(v, f->tz, "2026-03-21", now, -EAGAIN)); /* 03-14 is not kept */
    free(day_json(v, f->tz, "2026-03-30", now, -ERANGE));
    free(day_json(v, f->tz, "2026-02-30", now, -EINVAL));
    free(day_json(v, f->tz, "29.3.2026", now, -EINVAL));

    assert_int_equal(mt_visitors_span(f->tz, "2026-03-29", now, &from, &to), 0);
    assert_int_equal(from, UTC(2026, 3, 21, 22, 0));
    assert_int_equal(to, UTC(2026, 3, 29, 21, 0));
    assert_int_equal(mt_visitors_span(f->tz, "2026-13-01", now, &from, &to), -EINVAL);

    /* a day later the first kept day moves on and its quarter-hours go */
    int64_t later = now + 86400 * US;
    mt_visitors_prune(v, mt_visitors_keep_from(f->tz, later));
    free(day_json(v, f->tz, "2026-03-22", later, -EAGAIN));
    mt_visitors_free(v);
}

/* An aggregate of its own for an old day (what the board does with the
 * log's rows) gives the same figures as the live one. */
static void old_day_from_rows(void **state)
{
    struct fx *f = *state;
    int64_t now = UTC(2026, 12, 2, 10, 0);
    int64_t from, to;
    struct mt_visitors *v;

    assert_int_equal(mt_visitors_span(f->tz, "2026-03-29", now, &from, &to), 0);
    assert_int_equal(mt_visitors_new(&v, "visitors_in", &f->reg), 0);
    mt_visitors_prune(v, from);
    add(v, f->door1, UTC(2026, 3, 29, 1, 0), 3);
    add(v, f->door1, UTC(2026, 3, 22, 1, 30), 7);
    add(v, f->door1, from - 1, 99); /* before the span */
    mt_visitors_set_loaded(v, true);
    char *j = day_json(v, f->tz, "2026-03-29", now, 0);
    contains(j, "\"complete\":true");
    contains(j, "\"day\":[0,0,0,null,3,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"
                "\"week_ago\":[0,0,0,7,0,");
    contains(j, "\"day_total\":3,\"week_ago_total\":7}");
    free(j);
    mt_visitors_free(v);
}

/* Many quarters: the table grows and keeps every sum. */
static void many_quarters_sum_right(void **state)
{
    struct fx *f = *state;
    int64_t now = UTC(2026, 6, 10, 20, 0);
    struct mt_visitors *v = fresh(f, "visitors_in", now);
    /* every minute of the last 8 days on two doors: 23040 readings, 1536 quarters */
    for (int64_t t = UTC(2026, 6, 2, 20, 0); t < now; t += 60 * US) {
        add(v, f->door1, t, 1);
        add(v, f->door2, t, 2);
    }
    char *j = day_json(v, f->tz, "2026-06-10", now, 0);
    /* 2026-06-10 local from 00:00 (+3) to 23:00 (now): 23 full hours, and the
     * hour that just began */
    contains(j, "{\"door\":\"door-1\",\"day\":[60,60,60,60,60,60,60,60,60,60,60,60,60,60,60,60,60,"
                "60,60,60,60,60,60,0],\"week_ago\":[60,");
    contains(j, "\"day_total\":1380,\"week_ago_total\":1440}");
    contains(j, "\"day_total\":2760,\"week_ago_total\":2880}");
    free(j);
    /* suppressed figures carry no number and are skipped */
    struct mt_row r = {.seq = 1, .ts = now - US, .series = f->door1, .value = 0,
                       .flags = MT_RF_SUPPRESSED};
    mt_visitors_add(v, &r, 1);
    mt_visitors_free(v);
}

static void patterns(void **state)
{
    struct fx *f = *state;
    struct mt_visitors *v;
    assert_int_equal(mt_visitors_new(&v, " , ", &f->reg), -EINVAL);
    int64_t now = UTC(2026, 6, 10, 12, 0);
    v = fresh(f, "visitors_*", now);
    add(v, f->door1, now - 60 * US, 1);
    add(v, f->out1, now - 60 * US, 2); /* visitors_out matches the glob */
    add(v, f->gate, now - 60 * US, 4); /* "visitors" does not */
    char *j = day_json(v, f->tz, NULL, now, 0);
    contains(j, "\"day_total\":3,");
    assert_null(strstr(j, "gate"));
    free(j);
    mt_visitors_free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(spring_day_has_23_hours, setup, teardown),
        cmocka_unit_test_setup_teardown(autumn_day_has_25_hours, setup, teardown),
        cmocka_unit_test_setup_teardown(days_kept_and_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(old_day_from_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(many_quarters_sum_right, setup, teardown),
        cmocka_unit_test_setup_teardown(patterns, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
