/*
 * ruleagg: the windows of one rule: what `window{...}` declares in a script.
 * Readings are added to tumbling local-time windows per group; when rule
 * time passes a window's end its figures are emitted (a quiet group gets 0),
 * late additions within the window's lateness re-emit the changed figures as
 * corrections (revision n), and figures under the suppression threshold
 * leave as suppressed, never as the number.
 *
 * Owns every window, group, set and sketch of the rule, counted against a
 * memory cap, and their serialisation (the rule's saved state). Output goes
 * through a callback, in a deterministic order: windows by end (then by
 * declaration), groups by their key. Rule time moves only through
 * mt_aggs_advance: the same additions and advances give the same figures.
 *
 * Pure computation: no I/O, no locks, no clock. One thread at a time (the
 * rule's).
 */
#ifndef MT_RULEAGG_H
#define MT_RULEAGG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tz.h"
#include "util.h"

enum mt_agg_kind {
    MT_AGG_SUM = 1,
    MT_AGG_COUNT,
    MT_AGG_MEAN,
    MT_AGG_MIN,
    MT_AGG_MAX,
    MT_AGG_DISTINCT,
    MT_AGG_APPROX,
};

#define MT_AGG_MAX_BY 4
#define MT_AGG_MAX_TAGS 6
#define MT_AGG_MAX_DEFS 32
#define MT_AGG_FIX_US (60 * 1000000LL) /* at most one correction per window per minute */
#define MT_AGG_REV_MAX 127
#define MT_AGG_MAX_GROUPS 10000      /* per window declaration */
#define MT_AGG_FLOW_GROUPS 64        /* groups in a flow matrix (4032 cells) */
#define MT_AGG_PERIODS_PER_CALL 64  /* quiet periods closed per advance */
#define MT_AGG_FIGURES_PER_CALL 256 /* figures per advance (more wait for the next) */

struct mt_aggdef_conf {
    const char *metric; /* the figure's metric */
    const char *unit;   /* "" or NULL = none */
    int every;          /* MT_UNIT_* */
    int agg;            /* MT_AGG_* */
    const char *by[MT_AGG_MAX_BY]; /* "site", "device" or tag keys */
    size_t nby;
    const char *tag_keys[MT_AGG_MAX_TAGS], *tag_values[MT_AGG_MAX_TAGS];
    size_t ntags;
    unsigned suppress; /* 0 = off, else the threshold (2..255) */
    int64_t lateness_us;
    int64_t forget_us;
    const char *flows_metric; /* distinct only; NULL = no flow matrix */
    const char *flows_tag;    /* the tag naming the other group, default "also" */
    unsigned precision;       /* approx only: MT_HLL_PMIN..MT_HLL_PMAX */
};

/* One figure to emit. Strings are valid during the callback only. */
struct mt_figure {
    int64_t ts;         /* the window's start (UTC µs) */
    const char *site;   /* NULL: the rule's default site */
    const char *device; /* NULL: the rule's own name */
    const char *metric, *unit;
    int kind;              /* MITTARI_KIND_DELTA or _GAUGE */
    const char *tags_json; /* canonical JSON object */
    double value;          /* 0 when suppressed */
    unsigned min_count;    /* 0, or suppressed below this */
    unsigned revision;     /* 0 = first figure, n = nth correction */
    uint32_t *series;      /* the caller's cache of its series id (0 = not yet) */
};
typedef int (*mt_figure_cb)(void *arg, const struct mt_figure *f);

struct mt_aggs_stats {
    uint64_t figures, suppressed, corrections, late, overflow;
};

struct mt_aggs;

int mt_aggs_new(struct mt_aggs **out, const struct mt_tz *tz, size_t mem_cap, mt_figure_cb cb,
                void *arg);
void mt_aggs_free(struct mt_aggs *a);

/* Declares a window; *id gets its number. 0, or -EINVAL with a reason in
 * err (a bad name, a conflict of tags), -ENOSPC (too many windows). */
int mt_aggs_define(struct mt_aggs *a, const struct mt_aggdef_conf *c, int *id, char *err,
                   size_t errlen);
size_t mt_aggs_ndefs(const struct mt_aggs *a);
const struct mt_aggdef_conf *mt_aggs_def(const struct mt_aggs *a, int id);

/* Adds to window id at time ts, in the group given by the values of its
 * `by` (NULL = the reading has none): x for sum/mean/min/max, subject for
 * distinct counts. 0 added; 1 too late (counted); -ENOMEM (memory cap);
 * -EINVAL with a reason in err (a group value that cannot name a site,
 * device or tag). */
int mt_aggs_add(struct mt_aggs *a, int id, int64_t ts, const char *const *group, double x,
                const char *subject, size_t slen, char *err, size_t errlen);

/* Moves rule time to now (never back) and emits what is due: windows that
 * ended, corrections, and forgets finished windows. A call makes a bounded
 * amount (MT_AGG_*_PER_CALL), so a caller can hand over what it made:
 * returns 1 when more is due (call again before adding at the new time),
 * 0 when all is done, or what the callback returned (< 0 stops; what was
 * not emitted is emitted at the next call). */
int mt_aggs_advance(struct mt_aggs *a, int64_t now);
/* Closes every window, emits corrections, and ends all (a replay's end). */
int mt_aggs_finish(struct mt_aggs *a);
int64_t mt_aggs_now(const struct mt_aggs *a);
/* The earliest rule time at which an advance would emit something (a
 * window ending, a correction falling due, a quiet period closing), or
 * INT64_MAX: when a clock-driven caller next needs to tick. */
int64_t mt_aggs_next_due(const struct mt_aggs *a);
size_t mt_aggs_mem(const struct mt_aggs *a);
const struct mt_aggs_stats *mt_aggs_stats(const struct mt_aggs *a);

/* The state of every window, and restoring it into the windows declared
 * since (matched by metric, every, agg, by and zone; the rest start empty
 * and are named in note). 0, -ENOMEM, or -EINVAL for a damaged state
 * (then nothing was restored). */
int mt_aggs_save(const struct mt_aggs *a, struct mt_buf *b);
int mt_aggs_restore(struct mt_aggs *a, const void *p, size_t len, char *note, size_t notelen);

const char *mt_agg_name(int agg);
int mt_agg_parse(const char *s); /* 0 when unknown */

#endif
