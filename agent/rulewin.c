#include "rulewin.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define MIN_SEC (-62135596800LL) /* 0001-01-01T00:00:00Z */
#define MAX_SEC 253402300799LL   /* 9999-12-31T23:59:59Z */

static const struct {
    const char *name;
    int unit;
} unit_names[] = {
    {"minute", MT_UNIT_MINUTE}, {"1min", MT_UNIT_MINUTE}, {"hour", MT_UNIT_HOUR},
    {"1h", MT_UNIT_HOUR},       {"day", MT_UNIT_DAY},     {"1d", MT_UNIT_DAY},
    {"week", MT_UNIT_WEEK},     {"1w", MT_UNIT_WEEK},     {"month", MT_UNIT_MONTH},
    {"1mo", MT_UNIT_MONTH},     {"year", MT_UNIT_YEAR},   {"1y", MT_UNIT_YEAR},
};

int mt_unit_parse(const char *s)
{
    for (size_t i = 0; i < sizeof(unit_names) / sizeof(unit_names[0]); i++)
        if (strcmp(s, unit_names[i].name) == 0)
            return unit_names[i].unit;
    return 0;
}

const char *mt_unit_name(int unit)
{
    static const char *const names[] = {"", "minute", "hour", "day", "week", "month", "year"};
    return unit >= MT_UNIT_MINUTE && unit <= MT_UNIT_YEAR ? names[unit] : "";
}

/* The start of the unit holding wall-clock second L (local seconds since
 * 1970-01-01T00:00 local). */
static int64_t trunc_local(int unit, int64_t L)
{
    int64_t days = mt_floordiv(L, 86400), y;
    unsigned m, d;

    switch (unit) {
    case MT_UNIT_MINUTE: return mt_floordiv(L, 60) * 60;
    case MT_UNIT_HOUR: return mt_floordiv(L, 3600) * 3600;
    case MT_UNIT_DAY: return days * 86400;
    case MT_UNIT_WEEK: return (days - mt_weekday(days)) * 86400;
    case MT_UNIT_MONTH:
        mt_civil_from_days(days, &y, &m, &d);
        return mt_days_from_civil(y, m, 1) * 86400;
    default:
        mt_civil_from_days(days, &y, &m, &d);
        return mt_days_from_civil(y, 1, 1) * 86400;
    }
}

/* The start of the next unit after the one starting at Ls. */
static int64_t next_local(int unit, int64_t Ls)
{
    int64_t y;
    unsigned m, d;

    switch (unit) {
    case MT_UNIT_MINUTE: return Ls + 60;
    case MT_UNIT_HOUR: return Ls + 3600;
    case MT_UNIT_DAY: return Ls + 86400;
    case MT_UNIT_WEEK: return Ls + 7 * 86400;
    case MT_UNIT_MONTH:
        mt_civil_from_days(mt_floordiv(Ls, 86400), &y, &m, &d);
        return mt_days_from_civil(m == 12 ? y + 1 : y, m == 12 ? 1 : m + 1, 1) * 86400;
    default:
        mt_civil_from_days(mt_floordiv(Ls, 86400), &y, &m, &d);
        return mt_days_from_civil(y + 1, 1, 1) * 86400;
    }
}

/* The earliest instant of the window holding t (seconds): walk back over
 * offset changes while the wall clock stays in the same unit and shows no
 * unit start. */
static int64_t win_start(const struct mt_tz *tz, int unit, int64_t t)
{
    int64_t P, N;
    int32_t off;

    mt_tz_segment(tz, t, &P, &N, &off, NULL);
    int64_t Ls = trunc_local(unit, t + off);
    for (int i = 0; i < 32; i++) {
        int64_t c = Ls - off;
        if (c >= P)
            return c; /* the wall clock shows the unit's start in this stretch */
        int64_t P2;
        int32_t off2;
        mt_tz_segment(tz, P - 1, &P2, &N, &off2, NULL);
        if (trunc_local(unit, P - 1 + off2) != Ls)
            return P; /* the change jumped the clock into this unit */
        off = off2;
        P = P2;
    }
    return P;
}

static int64_t win_end(const struct mt_tz *tz, int unit, int64_t t)
{
    int64_t P, N;
    int32_t off;

    mt_tz_segment(tz, t, &P, &N, &off, NULL);
    int64_t Ls = trunc_local(unit, t + off), Le = next_local(unit, Ls);
    for (int i = 0; i < 32; i++) {
        int64_t e = Le - off;
        if (N == INT64_MAX || e < N)
            return e;
        int64_t N2;
        int32_t off2;
        mt_tz_segment(tz, N, &P, &N2, &off2, NULL);
        int64_t L = N + off2, Lt = trunc_local(unit, L);
        if (Lt == L || Lt != Ls)
            return N; /* the clock shows a unit's start again, or jumped out */
        off = off2;
        N = N2;
    }
    return N;
}

int mt_win_of(const struct mt_tz *tz, int unit, int64_t ts, int64_t *start, int64_t *end)
{
    int64_t t = mt_floordiv(ts, 1000000);

    if (t < MIN_SEC + 2 * 86400 || t > MAX_SEC - 400 * 86400 || unit < MT_UNIT_MINUTE ||
        unit > MT_UNIT_YEAR)
        return -ERANGE;
    *start = win_start(tz, unit, t) * 1000000;
    *end = win_end(tz, unit, t) * 1000000;
    return 0;
}

void mt_win_label(const struct mt_tz *tz, int unit, int64_t start, char *buf, size_t len)
{
    int64_t t = mt_floordiv(start, 1000000);
    int32_t off = mt_tz_offset(tz, t);
    int64_t Ls = trunc_local(unit, t + off), days = mt_floordiv(Ls, 86400), y;
    unsigned m, d, week;

    mt_civil_from_days(days, &y, &m, &d);
    switch (unit) {
    case MT_UNIT_YEAR: snprintf(buf, len, "%04lld", (long long)y); return;
    case MT_UNIT_MONTH: snprintf(buf, len, "%04lld-%02u", (long long)y, m); return;
    case MT_UNIT_WEEK:
        mt_iso_week(days, &y, &week);
        snprintf(buf, len, "%04lld-W%02u", (long long)y, week);
        return;
    case MT_UNIT_DAY: snprintf(buf, len, "%04lld-%02u-%02u", (long long)y, m, d); return;
    default: break;
    }
    int64_t s = Ls - days * 86400;
    int32_t a = off < 0 ? -off : off;
    snprintf(buf, len, "%04lld-%02u-%02uT%02lld:%02lld%c%02d:%02d", (long long)y, m, d,
             (long long)(s / 3600), (long long)(s / 60 % 60), off < 0 ? '-' : '+', a / 3600,
             a / 60 % 60);
}
