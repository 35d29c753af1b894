/*
 * rule: one analysts' rule, the deterministic core that the agent's rule
 * threads (rules.c) and `mittari rule test` (ruletest.c) both drive. A Lua
 * script in its own sandbox (luabox.c) with the rule API (window, emit,
 * state, period, localtime, print; docs/rules.md), its windows (ruleagg.c),
 * the readings it derives and its saved state.
 *
 * Time moves only through the readings fed and the clock values given:
 * the same readings and clock values give the same derived readings, byte
 * for byte. Owns the sandbox, the windows and the output buffer; borrows the
 * zone and the series registry (derived series are interned there, which
 * is thread-safe). One thread at a time; rules share nothing.
 *
 * Never aborts or logs: a failed call returns its code and "file:line:
 * message"; the caller counts and reports it, and may go on feeding.
 */
#ifndef MT_RULE_H
#define MT_RULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"
#include "series.h"
#include "tz.h"
#include "util.h"
#include "writer.h"

#define MT_RULE_MEM_DEFAULT (16u << 20)
#define MT_RULE_WINDOW_MEM_DEFAULT (64u << 20)
#define MT_RULE_EMITS_MAX 64 /* emits per call */

/* A tag the configuration adds to the readings a rule sees: a constant, or
 * looked up by "site/device" (the first matching glob wins; none: no tag). */
struct mt_rule_tag {
    const char *key;
    const char *value; /* the constant, or NULL */
    const char *const *globs, *const *values;
    size_t n;
};

struct mt_rule_conf {
    const char *name;   /* the origin of what it derives */
    const char *script; /* path */
    const char *text;   /* the script's text, already read (the configuration checked
                           exactly this); NULL = read the file */
    size_t textlen;
    const char *site;   /* site of figures that have none of their own */
    const struct mt_tz *tz;
    struct mt_series_reg *reg;
    size_t lua_mem, window_mem; /* 0 = defaults */
    uint64_t instructions;      /* per call; 0 = default */
    uint32_t time_ms;           /* per call; 0 = default */
    const struct mt_rule_tag *tags;
    size_t ntags;
    bool print; /* print() writes to stderr (rule test); else it is discarded */
};

struct mt_rule_stats {
    uint64_t readings;    /* fed */
    uint64_t calls;       /* on_reading calls */
    uint64_t errors;      /* failed calls (any reason) */
    uint64_t err_limit;   /* of those: instruction budget or time */
    uint64_t err_memory;  /* of those: Lua memory or window memory */
    uint64_t emitted;     /* derived readings made (figures, emits, passed readings) */
    uint64_t figures, suppressed, corrections, late;
    uint64_t overflow; /* corrections past revision 127, flow groups past the matrix */
    size_t lua_mem, window_mem;
};

struct mt_rule;

/* Compiles the script and runs its top level. 0; -ENOEXEC (does not
 * compile, fails at its top level, or declares a bad window), -ENOMEM,
 * -ETIMEDOUT, -errno reading the file; err gets "file:line: why". */
int mt_rule_open(struct mt_rule **out, const struct mt_rule_conf *c, char *err, size_t errlen);
void mt_rule_free(struct mt_rule *r);

/* The script's state_version (default 1). */
int64_t mt_rule_state_version(const struct mt_rule *r);
/* Restores a state saved by a script of the same state version. note gets
 * the windows that could not be restored (changed or gone). 0; -EINVAL (a
 * damaged state: the rule starts empty); -ENOMEM. */
int mt_rule_restore(struct mt_rule *r, const void *blob, size_t len, char *note, size_t notelen);
/* The whole state (windows, `state`, rule time). 0, or -EINVAL when `state`
 * holds something that cannot be kept (err says what), -ENOMEM. */
int mt_rule_save(struct mt_rule *r, struct mt_buf *b, char *err, size_t errlen);

/* Feeds one reading (s: its series). Figures that are due leave first, a
 * bounded number per call: 1 means the reading was not taken yet (hand
 * over what is in the output, then feed the same reading again). 0, or the
 * code of a failed call with err set (counted; the reading is done with,
 * the rule goes on). -ENOMEM only when the output could not be buffered. */
int mt_rule_feed(struct mt_rule *r, const struct mt_row *row, const struct mt_series_info *s,
                 char *err, size_t errlen);
/* Moves rule time to clock (µs; never back) and emits what is due; 1 when
 * more is due (call again), 0 when done. */
int mt_rule_tick(struct mt_rule *r, int64_t clock);
/* Closes every window (the end of a replay). */
int mt_rule_finish(struct mt_rule *r);
int64_t mt_rule_now(const struct mt_rule *r);
/* When the rule's windows next need a tick (INT64_MAX: nothing pending). */
int64_t mt_rule_next_due(const struct mt_rule *r);

/* The derived readings made since the last clear, in order. */
const struct mt_rec *mt_rule_out(const struct mt_rule *r, size_t *n);
void mt_rule_out_clear(struct mt_rule *r);

void mt_rule_get_stats(const struct mt_rule *r, struct mt_rule_stats *st);

/* For `mittari check`: compiles path and runs its top level in a fresh
 * rule with a private registry. 0 or the code of mt_rule_open. */
int mt_rule_check_file(const char *path, const char *tzname, char *err, size_t errlen);
/* The same for a text already read from path. */
int mt_rule_check_text(const char *path, const char *text, size_t len, const char *tzname,
                       char *err, size_t errlen);

#endif
