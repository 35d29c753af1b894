/* mittari query --every/--agg (aggquery.c) on a real log: sums per local
 * hour and day across the DST changes (23 and 25 hour days), distinct
 * subjects, tag filters, suppressed figures left out; and the period words
 * today/yesterday/this-month/last-month at fixed instants (never the
 * machine's clock or zone). */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mittari/mittari.h>

#include "aggquery.h"
#include "encode.h"
#include "log.h"
#include "ruleagg.h"
#include "rulewin.h"
#include "series.h"
#include "tz.h"

#define US 1000000LL
#define UTC(y, mo, d, h, mi) (((int64_t)mt_days_from_civil(y, mo, d) * 86400 + (h) * 3600 + (mi) * 60) * US)

struct fx {
    char *dir, *path;
    struct mt_logdb *db;
    struct mt_tz *tz;
    int64_t seq;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    char err[256];
    f->dir = tu_tmpdir();
    f->path = tu_path(f->dir, "log.db");
    if (mt_log_open(&f->db, f->path, MT_LOG_WRITER, err, sizeof(err)) ||
        mt_tz_load(&f->tz, "Europe/Helsinki", err, sizeof(err)))
        return -1;
    struct mt_series_info s[] = {
        {.id = 1, .site = "lib", .device = "door-1", .metric = "visitors_in", .unit = "persons",
         .kind = MITTARI_KIND_DELTA, .tags = "{\"service\":\"library\"}"},
        {.id = 2, .site = "pool", .device = "door-1", .metric = "visitors_in", .unit = "persons",
         .kind = MITTARI_KIND_DELTA, .tags = "{\"service\":\"pool\"}"},
        {.id = 3, .site = "lib", .device = "fam", .metric = "families", .unit = "",
         .kind = MITTARI_KIND_GAUGE, .tags = "", .origin = "rule"},
    };
    mt_log_begin(f->db);
    for (size_t i = 0; i < 3; i++)
        if (mt_log_put_series(f->db, &s[i]))
            return -1;
    mt_log_commit(f->db);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    mt_log_close(f->db);
    mt_tz_free(f->tz);
    tu_rmtree(f->dir);
    free(f->dir);
    free(f->path);
    free(f);
    return 0;
}

static void put(struct fx *f, uint32_t series, int64_t ts, double v, const char *subj,
                unsigned flags)
{
    assert_int_equal(mt_log_begin(f->db), 0);
    assert_int_equal(mt_log_put_reading_flags(f->db, ++f->seq, ts, series, v, subj, flags,
                                              flags ? 5 : 0),
                     0);
    assert_int_equal(mt_log_commit(f->db), 0);
}

static char *run(struct fx *f, int every, int agg, const char *glob, const char *tag)
{
    const char *tags[1] = {tag};
    struct mt_aggquery q = {.db_path = f->path, .since = INT64_MIN, .until = INT64_MAX,
                            .series_glob = glob, .tags = tags, .ntags = tag ? 1 : 0,
                            .every = every, .agg = agg, .format = MT_FMT_CSV, .tz = f->tz};
    char err[256], *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    int rc = mt_aggquery_run(&q, out, err, sizeof(err));
    fclose(out);
    if (rc)
        fail_msg("aggquery: %s", err);
    return buf;
}

/* On 2026-10-25 (25 hours) one reading per UTC hour from 21:00 the day
 * before: the day's sum is 25, its hours 25 rows, two of them 03:00. */
static void autumn_day_has_25_hours(void **state)
{
    struct fx *f = *state;
    for (int h = 0; h < 25; h++)
        put(f, 1, UTC(2026, 10, 24, 21, 30) + h * 3600 * US, 1, NULL, 0);
    char *days = run(f, MT_UNIT_DAY, MT_AGG_SUM, "lib/*/*", NULL);
    assert_string_equal(days, "period,start,site,device,metric,unit,tags,origin,agg,value,readings\n"
                              "2026-10-25,2026-10-24T21:00:00Z,lib,door-1,visitors_in,persons,"
                              "\"{\"\"service\"\":\"\"library\"\"}\",,sum,25,25\n");
    free(days);
    char *hours = run(f, MT_UNIT_HOUR, MT_AGG_COUNT, NULL, NULL);
    assert_int_equal(strstr(hours, "2026-10-25T03:00+03:00,2026-10-25T00:00:00Z") != NULL, 1);
    assert_int_equal(strstr(hours, "2026-10-25T03:00+02:00,2026-10-25T01:00:00Z") != NULL, 1);
    int rows = 0;
    for (char *p = hours; (p = strchr(p, '\n')); p++)
        rows++;
    assert_int_equal(rows, 26); /* header + 25 hours */
    free(hours);
}

static void spring_day_has_23_hours(void **state)
{
    struct fx *f = *state;
    /* 2026-03-29: 00:00 EET = 22:00Z the day before, ends 21:00Z */
    put(f, 1, UTC(2026, 3, 28, 21, 59), 5, NULL, 0); /* the 28th */
    put(f, 1, UTC(2026, 3, 28, 22, 0), 1, NULL, 0);
    put(f, 1, UTC(2026, 3, 29, 20, 59), 2, NULL, 0);
    put(f, 1, UTC(2026, 3, 29, 21, 0), 7, NULL, 0); /* the 30th */
    char *days = run(f, MT_UNIT_DAY, MT_AGG_SUM, NULL, "service=library");
    assert_non_null(strstr(days, "2026-03-28,2026-03-27T22:00:00Z,lib,door-1,visitors_in,persons,"
                                 "\"{\"\"service\"\":\"\"library\"\"}\",,sum,5,1\n"));
    assert_non_null(strstr(days, "2026-03-29,2026-03-28T22:00:00Z,lib,door-1,visitors_in,persons,"
                                 "\"{\"\"service\"\":\"\"library\"\"}\",,sum,3,2\n"));
    assert_non_null(strstr(days, "2026-03-30,2026-03-29T21:00:00Z,"));
    free(days);
}

static void distinct_tags_and_suppressed(void **state)
{
    struct fx *f = *state;
    put(f, 1, UTC(2026, 7, 2, 10, 0), 1, "A", 0);
    put(f, 1, UTC(2026, 7, 3, 10, 0), 1, "B", 0);
    put(f, 1, UTC(2026, 7, 4, 10, 0), 1, "A", 0);
    put(f, 2, UTC(2026, 7, 4, 10, 0), 1, "A", 0);
    put(f, 3, UTC(2026, 7, 1, 0, 0), 0, NULL, MT_RF_SUPPRESSED); /* a suppressed figure */
    char *m = run(f, MT_UNIT_MONTH, MT_AGG_DISTINCT, NULL, "service=library");
    assert_string_equal(m, "period,start,site,device,metric,unit,tags,origin,agg,value,readings\n"
                           "2026-07,2026-06-30T21:00:00Z,lib,door-1,visitors_in,persons,"
                           "\"{\"\"service\"\":\"\"library\"\"}\",,distinct,2,3\n");
    free(m);
    m = run(f, MT_UNIT_MONTH, MT_AGG_COUNT, "lib/fam/*", NULL);
    assert_string_equal(m, "period,start,site,device,metric,unit,tags,origin,agg,value,readings\n");
    free(m);
    m = run(f, MT_UNIT_MONTH, MT_AGG_MAX, "pool/*/*", NULL);
    assert_non_null(strstr(m, ",max,1,1\n"));
    free(m);
}

/* The period words at fixed instants, in the site's zone. */
static void period_words(void **state)
{
    struct fx *f = *state;
    int64_t t;
    /* 23:30 UTC on Nov 25 is already Nov 26 in Helsinki: the bug of
     * `--since "$(date +%F)"` on a gateway whose clock is in UTC */
    int64_t now = UTC(2026, 11, 25, 23, 30);
    assert_int_equal(mt_query_period_word("today", f->tz, now, &t), 0);
    assert_int_equal(t, UTC(2026, 11, 25, 22, 0));
    assert_int_equal(mt_query_period_word("yesterday", f->tz, now, &t), 0);
    assert_int_equal(t, UTC(2026, 11, 24, 22, 0));
    assert_int_equal(mt_query_period_word("this-month", f->tz, now, &t), 0);
    assert_int_equal(t, UTC(2026, 10, 31, 22, 0));
    assert_int_equal(mt_query_period_word("last-month", f->tz, now, &t), 0);
    assert_int_equal(t, UTC(2026, 9, 30, 21, 0)); /* October began in summer time */
    /* yesterday across the autumn change: a 25-hour day */
    assert_int_equal(mt_query_period_word("yesterday", f->tz, UTC(2026, 10, 26, 12, 0), &t), 0);
    assert_int_equal(t, UTC(2026, 10, 24, 21, 0));
    assert_int_equal(mt_query_period_word("tomorrow", f->tz, now, &t), -EINVAL);
    /* mt_query_time (replay's --since): the words in the named zone, other
     * times as mt_parse_time reads them */
    assert_int_equal(mt_query_time("yesterday", "Europe/Helsinki", now, &t), 0);
    assert_int_equal(t, UTC(2026, 11, 24, 22, 0));
    assert_int_equal(mt_query_time("today", "UTC", now, &t), 0);
    assert_int_equal(t, UTC(2026, 11, 25, 0, 0));
    assert_int_equal(mt_query_time("2026-11-25T06:00Z", "Europe/Helsinki", now, &t), 0);
    assert_int_equal(t, UTC(2026, 11, 25, 6, 0));
    assert_int_equal(mt_query_time("-2h", "Europe/Helsinki", now, &t), 0);
    assert_int_equal(t, now - 2 * 3600 * 1000000LL);
    assert_int_equal(mt_query_time("someday", "Europe/Helsinki", now, &t), -EINVAL);
    assert_true(mt_query_tags_match("{\"a\":\"1\",\"b\":\"2\"}", (const char *[]){"b=2"}, 1));
    assert_false(mt_query_tags_match("{\"a\":\"1\"}", (const char *[]){"a=2"}, 1));
    assert_false(mt_query_tags_match("", (const char *[]){"a=1"}, 1));
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(autumn_day_has_25_hours),
        T(spring_day_has_23_hours),
        T(distinct_tags_and_suppressed),
        T(period_words),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
