/*
 * writer: the one thread that writes the log. Takes readings from a bounded
 * intake queue (filled by emit from any thread), normalizes cumulative
 * counters, assigns sequence numbers and commits in batches (by size, or
 * batch_interval after the first queued reading), together with the counter
 * states, new series and consumer cursors, in one transaction. Then tells
 * the loop (uv_async) the highest committed seq.
 *
 * Also owns housekeeping: retention (rows every consumer has passed and
 * older than retention) and the size cap with its policy (drop_oldest or
 * block_inputs), counted and logged, never silent.
 *
 * Owns: its thread, the writing mt_logdb, the normalizer states. A failed
 * commit (disk full, I/O error) is rolled back, kept and retried with
 * backoff; the intake queue then fills and emit refuses with -EAGAIN.
 */
#ifndef MT_WRITER_H
#define MT_WRITER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "log.h"
#include "pseudo.h"
#include "series.h"

enum { MT_POLICY_DROP_OLDEST = 0, MT_POLICY_BLOCK_INPUTS = 1 };

struct mt_writer_conf {
    int64_t batch_size;
    int64_t batch_interval_ms;
    int64_t queue_max;
    int64_t retention_ms; /* 0 = no time limit */
    uint64_t max_size;    /* 0 = no cap */
    int policy;
    int64_t housekeeping_ms;
};

/* One queued reading (already validated and pseudonymised). */
struct mt_rec {
    int64_t ts;
    uint32_t series;
    uint8_t kind;
    uint8_t bits;
    uint8_t flags;     /* MT_RF_* of a derived reading; 0 for a raw one */
    uint8_t min_count; /* its suppression threshold */
    double value;
    uint64_t counter;
    char subject[MT_SUBJECT_SIZE];
};

struct mt_writer_stats {
    _Atomic uint64_t queued, stored, refused_queue, refused_full, dropped_cap,
        deleted_retention, deleted_cap_delivered, commits, commit_errors, counter_first,
        counter_wraps, counter_resets, derived, steps;
};

/* A consumer's step (a rule's batch of work), committed whole in one
 * transaction with the next batch: the derived readings it emitted (they
 * get the next sequence numbers), its state and its cursor. After a crash
 * the log holds all of a step or none of it, which is what makes a rule's
 * effects exactly-once. */
struct mt_consumer_step {
    const char *name;
    int64_t cursor;        /* consumed the log through this seq */
    bool keep_state;       /* true: leave the stored state as it is */
    int64_t state_version; /* the consumer's own format number */
    const void *state;     /* NULL with state_len 0: an empty state */
    size_t state_len;
    const struct mt_rec *recs; /* derived readings; never CUMULATIVE */
    size_t nrecs;
};

struct mt_writer;

typedef void (*mt_committed_cb)(void *arg, int64_t committed_seq);

/* Loads series, counter states and the last seq from db, then starts the
 * thread. Takes ownership of db, even on error. Loop thread. */
int mt_writer_start(struct mt_writer **out, uv_loop_t *loop, struct mt_logdb *db,
                    struct mt_series_reg *reg, const struct mt_writer_conf *conf,
                    mt_committed_cb cb, void *arg);
/* Any thread. 0, -EAGAIN (queue full), MITTARI_EFULL (cap, block_inputs). */
int mt_writer_push(struct mt_writer *w, const struct mt_rec *r);
/* Any thread. Records that consumer name has delivered through seq; it is
 * committed with the next batch. A consumer is registered by its first call
 * and holds back retention from then on. */
void mt_writer_cursor(struct mt_writer *w, const char *name, int64_t seq);
/* Forgets every consumer not named (outputs no longer configured). */
void mt_writer_keep_consumers(struct mt_writer *w, const char *const *names, size_t n);
/* Any thread; copies everything. 0, -EINVAL (a cumulative reading, or no
 * name), -EAGAIN (more than queue_max derived readings wait already: try
 * again after the next commit) or -ENOMEM. *ticket (may be NULL) numbers the
 * step: it is durable once mt_writer_steps_committed() reaches it. */
int mt_writer_step(struct mt_writer *w, const struct mt_consumer_step *s, int64_t *ticket);
int64_t mt_writer_steps_committed(struct mt_writer *w);
void mt_writer_park(struct mt_writer *w, const char *output, int64_t first, int64_t last,
                    const char *error);
/* Any thread: commit what is queued now, without waiting for the interval. */
void mt_writer_flush(struct mt_writer *w);
/* Any thread: nothing queued, nothing pending. */
bool mt_writer_idle(struct mt_writer *w);
int64_t mt_writer_committed(struct mt_writer *w);
/* Last storage error that stops commits (0 = none); set by the thread. */
int mt_writer_error(struct mt_writer *w);
/* Loop thread: liveness for the watchdog (monotonic µs of the last turn). */
int64_t mt_writer_heartbeat(struct mt_writer *w);
const struct mt_writer_stats *mt_writer_stats(struct mt_writer *w);
void mt_writer_set_conf(struct mt_writer *w, const struct mt_writer_conf *conf);
/* Loop thread. Commits what is queued (retrying until deadline_ms from
 * now), joins the thread, closes the database. The loop must run afterwards
 * for the async handle to close; the struct is freed in its close callback. */
void mt_writer_stop(struct mt_writer *w, int64_t deadline_ms);

#endif
