/*
 * logfacts: the figures of the status endpoint that only the log knows:
 * each output's backlog and the timestamp of its oldest undelivered
 * reading, parked batches, the log's size and bounds. Read on a reading
 * connection by the status worker (statusd.h) or by `mittari status` when
 * the agent is down; never on the loop thread.
 *
 * A struct mt_facts is immutable once read and reference-counted: any
 * thread may use it.
 */
#ifndef MT_LOGFACTS_H
#define MT_LOGFACTS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"
#include "snapshot.h"
#include "util.h"

/* The log's figures, read on a reading connection. Immutable and reference-counted like a snapshot. */
struct mt_fact_output {
    const char *name;
    int64_t cursor;    /* as the snapshot had it */
    int64_t backlog;   /* readings after the cursor */
    int64_t oldest_us; /* timestamp of the oldest of them; 0 = none */
};

struct mt_fact_parked {
    const char *output;
    int64_t batches, readings, last_at_us;
    const char *last_error;
};

struct mt_facts {
    _Atomic int refs;
    int64_t taken_us;
    int error;            /* 0, or why the log could not be read */
    const char *error_text;
    uint64_t log_bytes;   /* pages in use */
    int64_t min_seq, max_seq, rows;
    size_t noutputs, nparked;
    struct mt_fact_output *outputs;
    struct mt_fact_parked *parked;
    struct mt_arena arena;
};

struct mt_facts *mt_facts_ref(struct mt_facts *f);
void mt_facts_unref(struct mt_facts *f); /* NULL is fine */
const struct mt_fact_output *mt_facts_output(const struct mt_facts *f, const char *name);
const struct mt_fact_parked *mt_facts_parked(const struct mt_facts *f, const char *output);

/* Reads the figures. Cursors come from snap when given (the agent's
 * in-memory ones, fresher than the log's), else from the log (agent down).
 * *out is set also on a read error (its error says which); -ENOMEM only
 * leaves it NULL. */
int mt_facts_read(struct mt_logdb *db, const struct mt_snap *snap, int64_t now_us,
                  struct mt_facts **out);

#endif
