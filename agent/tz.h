/*
 * tz: time zones from the system's TZif files (RFC 8536, package tzdata),
 * for the rule engine's local-time windows and the query command's local
 * periods, independent of the process's TZ: a rule thread and `rule test
 * --tz` each hold their own zone, and a reload that changes agent.timezone
 * never races a thread calling localtime.
 *
 * A struct mt_tz is immutable once loaded: any thread may use it, any number
 * at once. Loading reads one file (TZDIR or /usr/share/zoneinfo); nothing
 * else here does I/O. Times are seconds since the epoch (UTC); offsets are
 * seconds east of UTC. Beyond the file's last transition the zone's POSIX
 * rule (the file's footer, e.g. "EET-2EEST,M3.5.0/3,M10.5.0/4") applies.
 *
 * Also the civil-calendar arithmetic the windows need (proleptic Gregorian,
 * days since 1970-01-01), pure and valid for years -9999..9999 and more.
 */
#ifndef MT_TZ_H
#define MT_TZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mt_tz;

/* Loads zone name ("Europe/Helsinki", "UTC"). 0; -ENOENT (no such zone),
 * -EINVAL (a bad name or not a TZif file), -ENOMEM. err gets one line. */
int mt_tz_load(struct mt_tz **out, const char *name, char *err, size_t errlen);
void mt_tz_free(struct mt_tz *tz);
const char *mt_tz_name(const struct mt_tz *tz);

/* The stretch of time [*start, *end) around t during which the zone's
 * offset is *off (seconds east) with no change; *start may be INT64_MIN and
 * *end INT64_MAX. Two neighbouring stretches may have the same offset (a
 * change of name only). isdst may be NULL. */
void mt_tz_segment(const struct mt_tz *tz, int64_t t, int64_t *start, int64_t *end, int32_t *off,
                   bool *isdst);
int32_t mt_tz_offset(const struct mt_tz *tz, int64_t t);

/* Civil calendar. */
int64_t mt_days_from_civil(int64_t y, unsigned m, unsigned d);
/* Whether y-m-d is a day of the calendar (no 2026-02-31, no 2025-02-29). */
bool mt_civil_valid(int64_t y, int m, int d);
void mt_civil_from_days(int64_t days, int64_t *y, unsigned *m, unsigned *d);
/* 0 = Monday .. 6 = Sunday */
unsigned mt_weekday(int64_t days);
/* floor division and modulo for negative numbers */
int64_t mt_floordiv(int64_t a, int64_t b);

struct mt_localtime {
    int64_t year;
    unsigned month, day, hour, min, sec;
    unsigned wday;      /* 1 = Monday .. 7 = Sunday (ISO) */
    unsigned yday;      /* 1 .. 366 */
    int64_t iso_year;   /* the year the ISO week belongs to */
    unsigned iso_week;  /* 1 .. 53 */
    int32_t offset;     /* seconds east of UTC */
    bool isdst;
};

void mt_tz_localtime(const struct mt_tz *tz, int64_t t, struct mt_localtime *lt);
/* ISO week of a civil day (days since the epoch). */
void mt_iso_week(int64_t days, int64_t *iso_year, unsigned *week);

#endif
