/* query (`mittari query`): the times --since and --until take, in the
 * agent's time zone, at fixed instants: local midnights around the DST
 * changes and in winter, where 22:30 UTC is already the next local day
 * (issue 9). "now" and relative times come from the injected now. */
#include "testutil.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "query.h"
#include "ruleinput.h"
#include "util.h"

#define S 1000000LL
/* an arbitrary fixed "now": 2026-12-01 22:30:00 UTC */
static const int64_t now = 1796164200LL * S;

static int64_t t(const char *s)
{
    int64_t us = 0;
    if (mt_parse_time(s, now, &us) != 0)
        fail_msg("'%s' was refused", s);
    return us;
}

static int setup(void **s)
{
    (void)s;
    setenv("TZ", "Europe/Helsinki", 1);
    tzset();
    return 0;
}

static void local_dates_are_local_midnights(void **s)
{
    (void)s;
    assert_int_equal(t("2026-03-29"), 1774735200LL * S); /* 2026-03-28T22:00Z, EET */
    assert_int_equal(t("2026-03-30"), 1774818000LL * S); /* 21:00Z, EEST: a 23-hour day */
    assert_int_equal(t("2026-10-25"), 1792875600LL * S); /* 2026-10-24T21:00Z, EEST */
    assert_int_equal(t("2026-10-26"), 1792965600LL * S); /* 22:00Z, EET: a 25-hour day */
    assert_int_equal(t("2026-12-02"), 1796162400LL * S); /* before "now", 22:30Z on the 1st */
    assert_int_equal(t("2026-12-02") - t("2026-12-01"), 86400 * S);
}

static void local_times_around_the_spring_gap(void **s)
{
    (void)s;
    assert_int_equal(t("2026-03-29T02:30"), 1774744200LL * S); /* EET */
    assert_int_equal(t("2026-03-29 04:30"), 1774747800LL * S); /* EEST */
    assert_int_equal(t("2026-03-29T04:30:00"), 1774747800LL * S);
}

static void zones_given_are_used(void **s)
{
    (void)s;
    assert_int_equal(t("2026-12-01T22:30Z"), 1796164200LL * S);
    assert_int_equal(t("2026-12-02T00:30+02:00"), 1796164200LL * S);
    assert_int_equal(t("2026-12-01T20:30-02:00"), 1796164200LL * S);
}

static void now_and_relative_come_from_the_given_now(void **s)
{
    (void)s;
    assert_int_equal(t("now"), now);
    assert_int_equal(t("-2h"), now - 7200 * S);
    assert_int_equal(t("-7d"), now - 7 * 86400 * S);
    int64_t other = 1774744200LL * S, us;
    assert_int_equal(mt_parse_time("-30m", other, &us), 0);
    assert_int_equal(us, other - 1800 * S);
}

static void bad_times_are_refused(void **s)
{
    (void)s;
    static const char *const bad[] = {"yesterday",        "2026-13-01",    "2026-12-32",
                                      "2026-12-01T25:00", "2026-12-01T10", "2026-12-01T10:00+2",
                                      "2026-12-01X",      "-2 fortnights", "",
                                      "26-12-01",         "2026-02-29",    "2026-02-31",
                                      "2026-04-31",       "2100-02-29",    "2026-00-10"};
    for (size_t i = 0; i < MT_ARRAY_SIZE(bad); i++) {
        int64_t us = 42;
        if (mt_parse_time(bad[i], now, &us) != -EINVAL)
            fail_msg("'%s' was accepted", bad[i]);
        assert_int_equal(us, 42);
    }
}

static void leap_days_are_days(void **s)
{
    (void)s;
    int64_t a, b;
    assert_int_equal(mt_parse_time("2028-02-29T12:00Z", now, &a), 0);
    assert_int_equal(mt_parse_time("2028-03-01T12:00Z", now, &b), 0);
    assert_int_equal(b - a, 86400LL * 1000000);
    assert_int_equal(mt_parse_time("2000-02-29", now, &a), 0);
    assert_int_equal(mt_parse_time("2026-12-31", now, &a), 0);
}

/* rule test's input (ruleinput.c) reads ts with its own parser: the same days */
static void iso8601_refuses_days_not_in_the_calendar(void **s)
{
    (void)s;
    int64_t us = 42;
    assert_int_equal(mt_parse_iso8601("2026-02-31T10:00:00Z", &us), -EINVAL);
    assert_int_equal(mt_parse_iso8601("2025-02-29T10:00:00+02:00", &us), -EINVAL);
    assert_int_equal(us, 42);
    assert_int_equal(mt_parse_iso8601("2024-02-29T10:00:00Z", &us), 0);
    assert_int_equal(us, 1709200800LL * 1000000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(local_dates_are_local_midnights),
        cmocka_unit_test(local_times_around_the_spring_gap),
        cmocka_unit_test(zones_given_are_used),
        cmocka_unit_test(now_and_relative_come_from_the_given_now),
        cmocka_unit_test(bad_times_are_refused),
        cmocka_unit_test(leap_days_are_days),
        cmocka_unit_test(iso8601_refuses_days_not_in_the_calendar),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
