/*
 * visitors: the status page's figures of visitors per local hour, per site
 * and door, for a day beside the same weekday a week before.
 *
 * Which readings are visitors is configured (status.visitors: metric names
 * or globs; default visitors_in): readings of a matching metric that count
 * (delta, cumulative -- already turned into deltas --, event), not gauges,
 * and not a rule's derived readings. The door is the reading's device.
 *
 * Owns an aggregate of the log: sums per series and quarter hour (every
 * time zone in use changes offset by whole quarters, so local hours are
 * unions of quarters), for the days kept (mt_visitors_prune). The status
 * worker feeds it rows as it reads the log; any thread may ask for a day
 * (mt_visitors_day_json); a mutex guards the aggregate, held only for the
 * time of one add or one day's sums. Nothing here does I/O.
 */
#ifndef MT_VISITORS_H
#define MT_VISITORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"
#include "series.h"
#include "tz.h"
#include "util.h"

/* Days the aggregate keeps, today included: the last week and the week
 * before it, so that any of the last 8 days can be shown beside its week-ago
 * day. */
#define MT_VISITORS_DAYS 15

struct mt_visitors;

/* patterns: as status.visitors (copied). reg: the agent's series, borrowed
 * (lookups by id are lock-free). 0, -EINVAL (an empty pattern list), -ENOMEM. */
int mt_visitors_new(struct mt_visitors **out, const char *patterns,
                    const struct mt_series_reg *reg);
void mt_visitors_free(struct mt_visitors *v);

/* Counts the visitor readings among rows (one thread at a time). */
void mt_visitors_add(struct mt_visitors *v, const struct mt_row *rows, size_t n);
/* Forgets quarters before keep_from (µs); readings older than it are not
 * counted from now on. */
void mt_visitors_prune(struct mt_visitors *v, int64_t keep_from_us);
/* The log was read up to now (the figures are complete). */
void mt_visitors_set_loaded(struct mt_visitors *v, bool loaded);

/* The first instant kept for `now`: the start of the local day
 * MT_VISITORS_DAYS - 1 days before today. */
int64_t mt_visitors_keep_from(const struct mt_tz *tz, int64_t now_us);

/* JSON of a day in tz beside the same weekday a week before. day: "YYYY-MM-DD"
 * or NULL for today (at now_us). 0; -EINVAL (day is not a date), -ERANGE (it
 * has not begun) or -EAGAIN (it or its week-ago day is not kept: count the
 * log's rows of mt_visitors_span into an aggregate of their own), with a
 * reason in err; -ENOMEM. Documented in docs/operations.md. */
int mt_visitors_day_json(struct mt_visitors *v, const struct mt_tz *tz, const char *day,
                         int64_t now_us, struct mt_buf *out, char *err, size_t errlen);

/* The stretch of time [*from, *to) a day's figures need: from the start of
 * the week-ago day to the end of the day. 0 or -EINVAL. */
int mt_visitors_span(const struct mt_tz *tz, const char *day, int64_t now_us, int64_t *from,
                     int64_t *to);

#endif
