/*
 * writer: the one thread that writes the log. Takes readings from a bounded
 * intake (filled by emit from any thread), normalizes cumulative counters,
 * assigns sequence numbers and commits in batches (by size, or
 * batch_interval after the first queued reading), together with the counter
 * states, new series and consumer cursors, in one transaction. Then tells
 * the loop (uv_async) the highest committed seq, if anyone there listens
 * (mt_writer_listen; errors and the end are always told).
 *
 * Also runs housekeeping on its thread (housekeep.h): retention and the size
 * cap with its policy (drop_oldest or block_inputs), counted and logged,
 * never silent.
 *
 * Owns: its thread, the writing mt_logdb, the normalizer states, the intake.
 * Push, cursor, step, park, flush, fault and the getters are safe from any
 * thread; start, set_conf, stop and free run on the loop thread.
 *
 * The intake bound: at most queue_max readings are held in memory, from
 * the moment emit hands one over until it is committed (queued and pending
 * together, also while commits fail); beyond that emit refuses (-EAGAIN).
 * A reading is thus either refused at the input, counted there, or stored;
 * if a stop must give up (its deadline passed while commits failed, or the
 * log is damaged) the readings it held are counted as lost and reported.
 *
 * The thread is a state machine; its state is only ever changed by the
 * thread, under the lock, and every wait is the one wait of sleep_until:
 * until the thread's timerfd fires (armed for the state's deadline) or its
 * eventfd is written (flush, stop, fault, new settings, batch_size
 * readings queued). A push that starts a batch (the first reading, or the
 * first op) does not wake the thread: it moves the timer to the batch's
 * end if that is earlier, so a batch costs the thread one wake-up.
 *
 *   state      does / waits for                          next
 *   IDLE       nothing held: sleeps until a reading or    GATHER (something queued)
 *              an op comes, housekeeping is due or        HOUSEKEEP (due or asked)
 *              stop is asked                              ENDED (stop)
 *   GATHER     a batch fills: batch_size readings, or     COMMIT
 *              batch_interval after its first reading
 *              (a second for cursor advances alone),
 *              or flush/stop is asked
 *   COMMIT     takes everything queued and commits it in  HOUSEKEEP (ok), GATHER/ENDED
 *              one transaction, lock released             (ok while stopping), BACKOFF
 *                                                         (error), FAILED (damaged)
 *   BACKOFF    a failed batch is kept (rolled back, the   COMMIT (time to retry, or the
 *              normalizer states too) and retried after   stop's one immediate retry),
 *              0.2 .. 6.4 s; new readings queue meanwhile ENDED (stop deadline passed)
 *   HOUSEKEEP  retention (when due) and the size cap      IDLE / GATHER; FAILED (damaged)
 *   FAILED     the log is damaged (SQLITE_CORRUPT/NOTADB  ENDED (stop)
 *              met here or reported by a reader through
 *              mt_writer_fault): writes nothing more,
 *              refuses intake, tells the loop
 *   ENDED      closes the database (no checkpoint into a  (the thread returns; the
 *              damaged file), counts what it could not    loop joins it and calls the
 *              store, tells the loop                      ended callback)
 *
 * Lifetime: start → stop (asks the thread to commit what it holds and end;
 * intake closes) → ended callback on the loop → free. The struct outlives
 * its thread: an emit or cursor call that comes after stop (a poll that
 * outlasted the stop) is refused safely, so the owner frees the writer only
 * once nothing that can call it is alive.
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
    uint16_t origin; /* mt_writer_origin() of the input that emitted it; 0 = none */
};

struct mt_writer_stats {
    _Atomic uint64_t queued, stored, refused_queue, refused_full, refused_stopped,
        refused_storage, dropped_cap, deleted_retention, deleted_cap_delivered, commits,
        commit_errors, counter_first, counter_wraps, counter_resets, derived, steps,
        wakes; /* the thread's returns from its wait */
};

/* Per origin (input instance name): what the normalizer met on its series. */
struct mt_origin_stats {
    uint64_t wraps, resets;
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

/* What the thread left behind when it ended. */
struct mt_writer_end {
    uint64_t lost; /* readings accepted from inputs but never stored */
    int error;     /* the storage error that stopped commits, 0 = none */
};

struct mt_writer;

typedef void (*mt_committed_cb)(void *arg, int64_t committed_seq);
typedef void (*mt_writer_ended_cb)(void *arg, const struct mt_writer_end *end);

/* Loads series, counter states and the last seq from db, then starts the
 * thread. Takes ownership of db, even on error. Loop thread. cb runs on the
 * loop after commits, and when the writer's error changes. */
int mt_writer_start(struct mt_writer **out, uv_loop_t *loop, struct mt_logdb *db,
                    struct mt_series_reg *reg, const struct mt_writer_conf *conf,
                    mt_committed_cb cb, void *arg);
/* Any thread. 0, -EAGAIN (queue_max readings held), MITTARI_EFULL (cap,
 * block_inputs), MITTARI_ESTOPPED (stopping) or MITTARI_ESTORAGE (the log is
 * damaged). Each refusal is counted. */
int mt_writer_push(struct mt_writer *w, const struct mt_rec *r);
/* Any thread: the origin number of an input instance (by name; the same
 * name gets the same number, also after a reload). 0 when there is no room
 * or memory: its readings are then counted under no input. */
uint16_t mt_writer_origin(struct mt_writer *w, const char *name);
void mt_writer_origin_stats(struct mt_writer *w, uint16_t origin, struct mt_origin_stats *out);
/* Any thread. Records that consumer name has delivered through seq; it is
 * committed with the next batch. A consumer is registered by its first call
 * and holds back retention from then on. */
void mt_writer_cursor(struct mt_writer *w, const char *name, int64_t seq);
/* Forgets every consumer not named (outputs no longer configured). */
void mt_writer_keep_consumers(struct mt_writer *w, const char *const *names, size_t n);
/* Any thread; copies everything. 0, -EINVAL (a cumulative reading, or no
 * name), -EAGAIN (more than queue_max derived readings wait already: try
 * again after the next commit), MITTARI_ESTOPPED, MITTARI_ESTORAGE or
 * -ENOMEM. *ticket (may be NULL) numbers the step: it is durable once
 * mt_writer_steps_committed() reaches it. */
int mt_writer_step(struct mt_writer *w, const struct mt_consumer_step *s, int64_t *ticket);
int64_t mt_writer_steps_committed(struct mt_writer *w);
void mt_writer_park(struct mt_writer *w, const char *output, int64_t first, int64_t last,
                    const char *error);
/* Any thread: a reader of the log (an output, a rule, the start check) met
 * a storage error. MITTARI_ESTORAGE (SQLITE_CORRUPT/NOTADB) puts the writer
 * in FAILED: it writes nothing more into the damaged file and the loop is
 * told (mt_writer_error). Other errors are ignored here. what says where
 * (copied; shown in the message). */
void mt_writer_fault(struct mt_writer *w, int err, const char *what);
/* Any thread: commit what is queued now, without waiting for the interval. */
void mt_writer_flush(struct mt_writer *w);
/* Any thread: nothing queued, nothing pending. */
bool mt_writer_idle(struct mt_writer *w);
/* Any thread: readings accepted and not yet committed. */
uint64_t mt_writer_held(struct mt_writer *w);
int64_t mt_writer_committed(struct mt_writer *w);
/* Last storage error that stops commits (0 = none); MITTARI_ESTORAGE once
 * FAILED, for good. */
int mt_writer_error(struct mt_writer *w);
/* Where the damage was met, for the message ("" = none). */
void mt_writer_fault_text(struct mt_writer *w, char *buf, size_t len);
/* Liveness for the watchdog: since when (monotonic µs) the thread has been in
 * its current commit or housekeeping step; 0 while it waits on purpose (idle,
 * gathering a batch, backing off). Any thread. */
int64_t mt_writer_busy_since(struct mt_writer *w);
const struct mt_writer_stats *mt_writer_stats(struct mt_writer *w);
/* Loop thread. Takes effect at the thread's next turn; a changed cap or
 * policy is applied at once (a housekeeping round). */
void mt_writer_set_conf(struct mt_writer *w, const struct mt_writer_conf *conf);
/* Loop thread. Closes the intake (push, and a step with derived readings,
 * refuse with MITTARI_ESTOPPED, counted): at stop, once the inputs stopped
 * or were given up on. A step without readings (an output's plan) is still
 * taken. */
void mt_writer_close_intake(struct mt_writer *w);
/* Loop thread. Closes the intake and asks the thread to commit what it
 * holds, retrying a failing commit until deadline_ms from now, then end.
 * Never waits: ended(arg, end) runs on the loop once the thread has ended
 * (after the last commit's callback). The struct stays valid until
 * mt_writer_free. */
void mt_writer_end(struct mt_writer *w, int64_t deadline_ms, mt_writer_ended_cb ended,
                   void *arg);
/* Loop thread. Whether cb runs after each commit that stored readings
 * (default: yes). Off, a commit costs the loop no wake-up: for an agent with
 * nothing that reads the log as it grows (no output, no rule). Errors and
 * the end are told either way. Turning it on runs cb once with where the
 * log is now. */
void mt_writer_listen(struct mt_writer *w, bool on);
bool mt_writer_listening(struct mt_writer *w);
/* Loop thread, after the ended callback: closes the async handle; the
 * struct is freed in its close callback (the loop must run). */
void mt_writer_free(struct mt_writer *w);
/* mt_writer_end without a callback, freeing itself once ended: for owners
 * that know nothing else can call the writer any more. Run the loop. */
void mt_writer_stop(struct mt_writer *w, int64_t deadline_ms);

#endif
