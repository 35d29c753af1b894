/*
 * rules: the agent's running rules. Each configured rule runs on a thread
 * of its own with its own reading connection to the log: it reads the
 * readings after its cursor, feeds the ones it sees to its script
 * (rule.c), and hands the writer a step (mt_writer_step) holding the
 * derived readings, the rule's saved state and its cursor, committed in
 * one transaction: after kill -9 a rule resumes from a state that matches
 * its cursor and the figures already in the log, so nothing is counted
 * twice or lost. Lua never runs on the loop.
 *
 * Rule time comes from the readings and, once a rule has read everything
 * committed, from the clock (close_delay behind), so quiet windows close on
 * time. A failing call is logged with its script line (once, then counted)
 * and the rule goes on; with pause_after it pauses instead.
 *
 * Owns the rule threads, their connections, and one uv_async handle to
 * report threads that ended to the loop. All functions: loop thread only.
 * Never blocks the loop: threads start and end asynchronously; a changed
 * rule is restarted once its old thread has handed over its state.
 */
#ifndef MT_RULES_H
#define MT_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "rule.h"
#include "series.h"
#include "util.h"
#include "writer.h"

/* A rule as configured (ruleconf.c makes them). */
struct mt_rule_spec {
    char *name;
    char *script; /* resolved path */
    char *text;   /* its content as checked when the configuration was loaded */
    size_t textlen;
    char **series; /* site/device/metric globs, NULL-terminated; none = all */
    char **where_keys, **where_globs; /* tag KEY must match GLOB */
    size_t nwhere;
    char **from; /* origins seen besides raw readings, NULL-terminated */
    struct mt_rule_tag *tags;
    size_t ntags;
    size_t lua_mem, window_mem;
    uint64_t instructions;
    uint32_t time_ms;
    int64_t pause_after;
    int64_t close_delay_us;
    bool enabled;
    char *canonical;       /* equal text = equal settings, the script's content included */
    struct mt_arena arena; /* owns everything above */
};

void mt_rule_spec_free(struct mt_rule_spec *s);
/* Does a rule with spec s see readings of series si? (Not its own.) */
bool mt_rule_spec_sees(const struct mt_rule_spec *s, const struct mt_series_info *si);

struct mt_rules_env {
    uv_loop_t *loop;
    struct mt_writer *writer;
    struct mt_series_reg *reg;
    const char *db_path;
    /* the clock (µs since the epoch) the rules' time follows once they are
     * caught up; NULL = the real clock. For tests: any thread calls it. */
    int64_t (*clock)(void *arg);
    void *clock_arg;
};

struct mt_rules;

int mt_rules_create(struct mt_rules **out, const struct mt_rules_env *env);
/* Makes the running rules those of specs (taking ownership of the specs,
 * the array stays the caller's): unchanged ones keep running, changed ones
 * restart with their state once the old thread has stopped (kept when the
 * script declares the same state_version), removed ones stop, new ones
 * start where their cursor in the log is (the log's start if none).
 * site and tz apply to rules (re)started from now on. */
void mt_rules_apply(struct mt_rules *rs, struct mt_rule_spec **specs, size_t n, const char *site,
                    const char *tz);
/* The writer committed through seq: wake the rules. */
void mt_rules_notify(struct mt_rules *rs, int64_t seq);
/* Every rule hands the writer what it has at once (tests; a step is
 * otherwise made at most once a second). */
void mt_rules_flush(struct mt_rules *rs);
/* Stops every rule: each thread finishes its reading, hands the writer its
 * last step and ends; done runs (on the loop) once all have. */
void mt_rules_stop(struct mt_rules *rs, void (*done)(void *arg), void *arg);
/* Frees everything once stopped; the struct itself goes in the async
 * handle's close callback (run the loop afterwards). NULL is ok. */
void mt_rules_free(struct mt_rules *rs);

/* Loop thread: does a rule run, or wait to start (so the loop must hear
 * of commits: mt_writer_listen)? */
bool mt_rules_active(struct mt_rules *rs);
/* Names of the configured rules (for the writer's consumers); valid until
 * the next apply. */
size_t mt_rules_names(struct mt_rules *rs, const char **names, size_t max);
/* "; rule NAME: read ..., emitted ..." for each rule, for the stats line. */
void mt_rules_summary(struct mt_rules *rs, struct mt_buf *b);
/* For tests: a rule's counters (0 when running, -ENOENT). */
int mt_rules_stats(struct mt_rules *rs, const char *name, struct mt_rule_stats *st,
                   int64_t *cursor, bool *paused);
/* For tests: every running rule has read everything committed and handed
 * it to the writer. */
bool mt_rules_idle(struct mt_rules *rs);

#endif
