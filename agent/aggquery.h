/*
 * aggquery: `mittari query --every 1h|1d|1w|1mo --agg sum|count|mean|max|distinct`:
 * the log's readings summed (counted, averaged, ...) per series and local
 * window of agent.timezone, cut by the same window code as the rules
 * (rulewin.c), so a query's days and a rule's days are the same days. Also
 * the query's local period words (--since today, yesterday, this-month,
 * last-month) and its tag filter (--tag key=value).
 *
 * CLI thread only. Opens its own read-only connection; the agent may be
 * running.
 */
#ifndef MT_AGGQUERY_H
#define MT_AGGQUERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tz.h"

#define MT_QUERY_MAX_TAGS 8

struct mt_aggquery {
    const char *db_path;
    int64_t since, until;    /* µs, [since, until) of the readings' times */
    const char *series_glob; /* NULL = all */
    const char *const *tags; /* "key=value" each, all must hold */
    size_t ntags;
    int every;       /* MT_UNIT_* */
    int agg;         /* MT_AGG_SUM, COUNT, MEAN, MAX or DISTINCT */
    int format;      /* MT_FMT_* */
    const struct mt_tz *tz;
};

int mt_aggquery_run(const struct mt_aggquery *q, FILE *out, char *err, size_t errlen);

/* "today", "yesterday", "this-month", "last-month": the start of that local
 * day or month. 0, or -EINVAL for another word. */
int mt_query_period_word(const char *s, const struct mt_tz *tz, int64_t now_us, int64_t *us);

/* A command line's time T: a period word in the zone named tzname, else
 * mt_parse_time (local times in the process's TZ). 0 or -EINVAL. */
int mt_query_time(const char *s, const char *tzname, int64_t now_us, int64_t *us);

/* Does the canonical tags JSON hold every key=value of want? */
bool mt_query_tags_match(const char *tags_json, const char *const *want, size_t n);

#endif
