/* Time zones (tz.c) and local-time windows (rulewin.c). The reference for
 * offsets is glibc's own zone code (localtime_r under TZ), an independent
 * reader of the same files; DST days are checked against hand-written
 * figures. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rulewin.h"
#include "tz.h"

static struct mt_tz *load(const char *name)
{
    struct mt_tz *tz = NULL;
    char err[256];
    int rc = mt_tz_load(&tz, name, err, sizeof(err));
    if (rc)
        fail_msg("%s: %s", name, err);
    return tz;
}

/* 2026-03-29 and 2026-10-25 in Helsinki, as UTC seconds */
#define H(y, mo, d, h, mi) ((int64_t)mt_days_from_civil(y, mo, d) * 86400 + (h) * 3600 + (mi) * 60)
#define US 1000000LL

static void test_civil(void **st)
{
    (void)st;
    int64_t y;
    unsigned m, d;
    assert_int_equal(mt_days_from_civil(1970, 1, 1), 0);
    assert_int_equal(mt_days_from_civil(2000, 3, 1), 11017);
    assert_int_equal(mt_days_from_civil(1969, 12, 31), -1);
    for (int64_t z = -800000; z < 800000; z += 97) {
        mt_civil_from_days(z, &y, &m, &d);
        assert_int_equal(mt_days_from_civil(y, m, d), z);
    }
    assert_int_equal(mt_weekday(0), 3);                             /* Thursday */
    assert_int_equal(mt_weekday(mt_days_from_civil(2026, 3, 30)), 0); /* Monday */
    assert_int_equal(mt_weekday(-1), 2);
    unsigned w;
    mt_iso_week(mt_days_from_civil(2021, 1, 3), &y, &w); /* a Sunday of 2020-W53 */
    assert_int_equal(y, 2020);
    assert_int_equal(w, 53);
    mt_iso_week(mt_days_from_civil(2024, 12, 30), &y, &w); /* Monday of 2025-W01 */
    assert_int_equal(y, 2025);
    assert_int_equal(w, 1);
}

/* Offsets equal glibc's for every 6 hours from 1950 to 2080 (the far end
 * uses the zone's POSIX rule), and at each second around transitions. */
static void compare_glibc(const char *zone)
{
    struct mt_tz *tz = load(zone);
    setenv("TZ", zone, 1);
    tzset();
    for (int64_t t = -631152000; t < 3471292800LL; t += 6 * 3600 + 17) {
        struct tm tm;
        time_t tt = (time_t)t;
        localtime_r(&tt, &tm);
        int32_t off = mt_tz_offset(tz, t);
        if (off != tm.tm_gmtoff)
            fail_msg("%s at %lld: offset %d, glibc %ld", zone, (long long)t, off, tm.tm_gmtoff);
        /* the segment holds t and the offset at its edges changes */
        int64_t s, e;
        int32_t o;
        mt_tz_segment(tz, t, &s, &e, &o, NULL);
        assert_true(s <= t && t < e);
        if (e != INT64_MAX) {
            time_t te = (time_t)e, tb = (time_t)(e - 1);
            struct tm a, b;
            localtime_r(&te, &a);
            localtime_r(&tb, &b);
            assert_int_equal(b.tm_gmtoff, o);
            (void)a;
        }
    }
    mt_tz_free(tz);
}

static void test_offsets_match_glibc(void **st)
{
    (void)st;
    const char *zones[] = {"Europe/Helsinki", "UTC", "America/New_York", "Australia/Lord_Howe",
                           "America/Santiago", "Asia/Kolkata", "Pacific/Chatham"};
    for (size_t i = 0; i < sizeof(zones) / sizeof(zones[0]); i++)
        compare_glibc(zones[i]);
}

/* A "slim" file (zic -b slim) holds few transitions and leaves the rest to
 * its POSIX footer: the footer's rules must give the same offsets. */
static void test_slim_file(void **st)
{
    (void)st;
    char *dir = tu_tmpdir(), cmd[1024];
    char *src = tu_write(dir, "src.zi",
                         "Rule EU 1981 max - Mar lastSun 1:00u 1:00 S\n"
                         "Rule EU 1996 max - Oct lastSun 1:00u 0 -\n"
                         "Zone Test/Slim 2:00 EU EE%sT\n"
                         "Rule CL 2023 max - Apr Sun>=2 3:00u 0 -\n"
                         "Rule CL 2023 max - Sep Sun>=2 4:00u 1:00 -\n"
                         "Zone Test/South -4:00 CL -04/-03\n");
    snprintf(cmd, sizeof(cmd), "zic -b slim -d %s %s 2>/dev/null", dir, src);
    if (system(cmd) != 0) {
        tu_rmtree(dir);
        skip();
    }
    setenv("TZDIR", dir, 1);
    compare_glibc("Test/Slim");
    compare_glibc("Test/South");
    unsetenv("TZDIR");
    free(src);
    tu_rmtree(dir);
    free(dir);
}

static void test_bad_zone(void **st)
{
    (void)st;
    struct mt_tz *tz;
    char err[256];
    assert_int_equal(mt_tz_load(&tz, "Europe/Nowhere", err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "Europe/Nowhere"));
    assert_int_equal(mt_tz_load(&tz, "../etc/passwd", err, sizeof(err)), -EINVAL);
    assert_int_equal(mt_tz_load(&tz, "/etc/passwd", err, sizeof(err)), -EINVAL);
    /* a directory, and a file that is not TZif */
    assert_int_equal(mt_tz_load(&tz, "Europe", err, sizeof(err)), -EINVAL);
    assert_int_equal(mt_tz_load(&tz, "tzdata.zi", err, sizeof(err)), -EINVAL);
}

static void win(struct mt_tz *tz, int unit, int64_t t, int64_t *s, int64_t *e)
{
    assert_int_equal(mt_win_of(tz, unit, t * US, s, e), 0);
    *s /= US;
    *e /= US;
}

static void label(struct mt_tz *tz, int unit, int64_t start, const char *want)
{
    char buf[64];
    mt_win_label(tz, unit, start * US, buf, sizeof(buf));
    assert_string_equal(buf, want);
}

/* Spring forward: 2026-03-29 03:00 EET -> 04:00 EEST (01:00 UTC). */
static void test_helsinki_spring(void **st)
{
    (void)st;
    struct mt_tz *tz = load("Europe/Helsinki");
    int64_t s, e;

    win(tz, MT_UNIT_DAY, H(2026, 3, 29, 12, 0), &s, &e);
    assert_int_equal(s, H(2026, 3, 28, 22, 0)); /* 00:00 EET */
    assert_int_equal(e, H(2026, 3, 29, 21, 0)); /* 00:00 EEST */
    assert_int_equal(e - s, 23 * 3600);
    label(tz, MT_UNIT_DAY, s, "2026-03-29");
    /* the hour before the change is 02:00-03:00 EET, the next one 04:00 EEST */
    win(tz, MT_UNIT_HOUR, H(2026, 3, 29, 0, 30), &s, &e);
    assert_int_equal(s, H(2026, 3, 29, 0, 0));
    assert_int_equal(e, H(2026, 3, 29, 1, 0));
    label(tz, MT_UNIT_HOUR, s, "2026-03-29T02:00+02:00");
    win(tz, MT_UNIT_HOUR, H(2026, 3, 29, 1, 0), &s, &e);
    assert_int_equal(s, H(2026, 3, 29, 1, 0));
    assert_int_equal(e, H(2026, 3, 29, 2, 0));
    label(tz, MT_UNIT_HOUR, s, "2026-03-29T04:00+03:00");
    /* 23 hourly windows tile the day */
    int n = 0;
    for (int64_t t = H(2026, 3, 28, 22, 0); t < H(2026, 3, 29, 21, 0); t = e, n++) {
        win(tz, MT_UNIT_HOUR, t, &s, &e);
        assert_int_equal(s, t);
        assert_int_equal(e - s, 3600);
    }
    assert_int_equal(n, 23);
    mt_tz_free(tz);
}

/* Fall back: 2026-10-25 04:00 EEST -> 03:00 EET (01:00 UTC). */
static void test_helsinki_autumn(void **st)
{
    (void)st;
    struct mt_tz *tz = load("Europe/Helsinki");
    int64_t s, e;

    win(tz, MT_UNIT_DAY, H(2026, 10, 25, 1, 30), &s, &e);
    assert_int_equal(s, H(2026, 10, 24, 21, 0));
    assert_int_equal(e, H(2026, 10, 25, 22, 0));
    assert_int_equal(e - s, 25 * 3600);
    /* the repeated hour: two windows with the same wall-clock hour */
    win(tz, MT_UNIT_HOUR, H(2026, 10, 25, 0, 30), &s, &e);
    assert_int_equal(s, H(2026, 10, 25, 0, 0));
    assert_int_equal(e, H(2026, 10, 25, 1, 0));
    label(tz, MT_UNIT_HOUR, s, "2026-10-25T03:00+03:00");
    win(tz, MT_UNIT_HOUR, H(2026, 10, 25, 1, 30), &s, &e);
    assert_int_equal(s, H(2026, 10, 25, 1, 0));
    assert_int_equal(e, H(2026, 10, 25, 2, 0));
    label(tz, MT_UNIT_HOUR, s, "2026-10-25T03:00+02:00");
    int n = 0;
    for (int64_t t = H(2026, 10, 24, 21, 0); t < H(2026, 10, 25, 22, 0); t = e, n++) {
        win(tz, MT_UNIT_HOUR, t, &s, &e);
        assert_int_equal(s, t);
        assert_int_equal(e - s, 3600);
    }
    assert_int_equal(n, 25);
    /* minutes tile the repeated hour twice */
    win(tz, MT_UNIT_MINUTE, H(2026, 10, 25, 0, 59) + 30, &s, &e);
    assert_int_equal(e, H(2026, 10, 25, 1, 0));
    win(tz, MT_UNIT_MINUTE, H(2026, 10, 25, 1, 0), &s, &e);
    assert_int_equal(s, H(2026, 10, 25, 1, 0));
    label(tz, MT_UNIT_MINUTE, s, "2026-10-25T03:00+02:00");
    mt_tz_free(tz);
}

static void test_week_month_year(void **st)
{
    (void)st;
    struct mt_tz *tz = load("Europe/Helsinki");
    int64_t s, e;

    /* the ISO week holding the spring change: Mon 2026-03-23 .. Mon 03-30 */
    win(tz, MT_UNIT_WEEK, H(2026, 3, 29, 10, 0), &s, &e);
    assert_int_equal(s, H(2026, 3, 22, 22, 0));
    assert_int_equal(e, H(2026, 3, 29, 21, 0));
    label(tz, MT_UNIT_WEEK, s, "2026-W13");
    win(tz, MT_UNIT_MONTH, H(2026, 10, 31, 22, 30), &s, &e); /* Nov 1 00:30 local */
    assert_int_equal(s, H(2026, 10, 31, 22, 0));
    label(tz, MT_UNIT_MONTH, s, "2026-11");
    win(tz, MT_UNIT_MONTH, H(2026, 10, 15, 0, 0), &s, &e);
    assert_int_equal(s, H(2026, 9, 30, 21, 0));
    assert_int_equal(e, H(2026, 10, 31, 22, 0));
    win(tz, MT_UNIT_YEAR, H(2026, 6, 1, 0, 0), &s, &e);
    assert_int_equal(s, H(2025, 12, 31, 22, 0));
    assert_int_equal(e, H(2026, 12, 31, 22, 0));
    label(tz, MT_UNIT_YEAR, s, "2026");
    /* a week across the new year: 2020-W53 runs Mon Dec 28 .. Mon Jan 4 */
    win(tz, MT_UNIT_WEEK, H(2021, 1, 2, 12, 0), &s, &e);
    label(tz, MT_UNIT_WEEK, s, "2020-W53");
    mt_tz_free(tz);
}

/* Every window of every unit holds its instant, and windows tile time:
 * the end of one is the start of the next, across ten years. */
static void tile(const char *zone)
{
    struct mt_tz *tz = load(zone);
    for (int unit = MT_UNIT_HOUR; unit <= MT_UNIT_MONTH; unit++) {
        int64_t s, e, prev_end = 0;
        int64_t step = unit == MT_UNIT_HOUR ? 3600 : 86400;
        for (int64_t t = H(2020, 1, 1, 0, 0); t < H(2030, 1, 1, 0, 0); t += step / 3 + 7) {
            win(tz, unit, t, &s, &e);
            assert_true(s <= t && t < e);
            if (prev_end && s != prev_end && s > prev_end)
                fail_msg("%s unit %d: gap before %lld", zone, unit, (long long)s);
            if (s >= prev_end)
                prev_end = e;
        }
    }
    mt_tz_free(tz);
}

static void test_tiling(void **st)
{
    (void)st;
    tile("Europe/Helsinki");
    tile("Australia/Lord_Howe"); /* half-hour changes */
    tile("America/Santiago");    /* changes at midnight */
}

/* A zone whose change skips local midnight: the day starts at the change. */
static void test_midnight_change(void **st)
{
    (void)st;
    struct mt_tz *tz = load("America/Santiago");
    /* 2026-09-06 00:00 -04 -> 01:00 -03 (04:00 UTC) */
    int64_t s, e;
    win(tz, MT_UNIT_DAY, H(2026, 9, 6, 12, 0), &s, &e);
    assert_int_equal(s, H(2026, 9, 6, 4, 0));
    assert_int_equal(e, H(2026, 9, 7, 3, 0));
    label(tz, MT_UNIT_DAY, s, "2026-09-06");
    mt_tz_free(tz);
}

static void test_localtime(void **st)
{
    (void)st;
    struct mt_tz *tz = load("Europe/Helsinki");
    struct mt_localtime lt;
    mt_tz_localtime(tz, H(2026, 10, 25, 1, 30), &lt);
    assert_int_equal(lt.hour, 3);
    assert_int_equal(lt.min, 30);
    assert_int_equal(lt.offset, 7200);
    assert_false(lt.isdst);
    assert_int_equal(lt.wday, 7);
    assert_int_equal(lt.iso_week, 43);
    mt_tz_localtime(tz, H(2026, 10, 25, 0, 30), &lt);
    assert_int_equal(lt.hour, 3);
    assert_true(lt.isdst);
    assert_int_equal(lt.yday, 298);
    mt_tz_free(tz);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_civil),
        cmocka_unit_test(test_offsets_match_glibc),
        cmocka_unit_test(test_slim_file),
        cmocka_unit_test(test_bad_zone),
        cmocka_unit_test(test_helsinki_spring),
        cmocka_unit_test(test_helsinki_autumn),
        cmocka_unit_test(test_week_month_year),
        cmocka_unit_test(test_tiling),
        cmocka_unit_test(test_midnight_change),
        cmocka_unit_test(test_localtime),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
