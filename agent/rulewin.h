/*
 * rulewin: tumbling windows aligned to local time (minute, hour, day, ISO
 * week, month, year) in a time zone: which window an instant falls in, where
 * it starts and ends (UTC), and its label. Shared by the rule engine and
 * `mittari query --every`, so both cut time the same way.
 *
 * A window boundary is an instant at which the zone's wall clock shows the
 * start of a unit (the hour 10:00, the day's 00:00), or at which a change of
 * offset jumps the wall clock into another unit. So a Helsinki day has 23
 * hours in March and 25 in October, and the repeated hour 03:00-04:00 of the
 * October change gives two hourly windows, labelled with their offsets.
 *
 * Pure; any thread. Times are microseconds since the epoch (UTC).
 */
#ifndef MT_RULEWIN_H
#define MT_RULEWIN_H

#include <stddef.h>
#include <stdint.h>

#include "tz.h"

enum mt_unit { MT_UNIT_MINUTE = 1, MT_UNIT_HOUR, MT_UNIT_DAY, MT_UNIT_WEEK, MT_UNIT_MONTH,
               MT_UNIT_YEAR };

/* "minute" "hour" "day" "week" "month" "year", or the query's short
 * forms "1min" "1h" "1d" "1w" "1mo" "1y". 0 when unknown. */
int mt_unit_parse(const char *s);
const char *mt_unit_name(int unit);

/* The window of unit containing ts: [*start, *end). 0, or -ERANGE for an
 * instant outside the years 1..9999. */
int mt_win_of(const struct mt_tz *tz, int unit, int64_t ts, int64_t *start, int64_t *end);

/* The label of the window that starts at start (from mt_win_of): "2026" (year),
 * "2026-03" (month), "2026-W13" (week), "2026-03-29" (day),
 * "2026-03-29T04:00+03:00" (hour), "2026-03-29T04:05+03:00" (minute). */
void mt_win_label(const struct mt_tz *tz, int unit, int64_t start, char *buf, size_t len);

#endif
