#include "writer.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>

#include <mittari/mittari.h>

#include "diag.h"
#include "housekeep.h"
#include "normalize.h"
#include "util.h"

#define MOD "log"
#define COMPLAIN_US (600 * 1000000LL)
#define MAX_ORIGINS 65535

/* The thread's states: see the table in writer.h. */
enum wstate { WS_IDLE, WS_GATHER, WS_COMMIT, WS_BACKOFF, WS_HOUSEKEEP, WS_FAILED, WS_ENDED };

enum op_type { OP_CURSOR, OP_PARK, OP_STEP };

struct op {
    int type;
    char *name;
    int64_t first, last;
    char *error;
    /* OP_STEP: last is the cursor */
    int64_t ticket, version;
    bool keep_state;
    void *state;
    size_t state_len;
    struct mt_rec *recs;
    size_t nrecs;
};

struct consumer {
    char *name;
    int64_t seq;
};

struct origin {
    char *name;
    _Atomic uint64_t wraps, resets;
};

/* The normalizer's state of one cumulative series, and when its last reset
 * was logged (a reset is logged once per series per COMPLAIN_US, the others
 * in between counted into the next line). */
struct cstate {
    struct mt_counter_state st;
    uint32_t mark; /* == gen: already saved in undo this round */
    int64_t reset_logged_us;
    uint64_t resets_quiet;
};

struct undo {
    uint32_t series;
    struct mt_counter_state st;
};

/* A wrap or reset met in the transaction being built; reported (logged,
 * counted per origin) only once it committed. */
struct norm_event {
    uint32_t series;
    uint16_t origin;
    int ev;
    uint64_t from, to;
};

struct mt_writer {
    /* set at start, read-only afterwards */
    struct mt_series_reg *reg;
    pthread_t thread;
    pthread_mutex_t lock;
    int efd; /* eventfd: wakes the thread now (flush, stop, a full batch, ...) */
    int tfd; /* timerfd: wakes the thread at its deadline; pushers may move it earlier */
    uv_async_t async;
    mt_committed_cb cb;
    void *cb_arg;

    /* under lock */
    struct mt_writer_conf conf; /* set_conf may change it */
    struct mt_rec *q;
    size_t qlen, qcap;
    int64_t q_first;
    struct op *ops;
    size_t nops, capops;
    int64_t ops_first;
    struct consumer *cons;
    size_t ncons;
    struct origin **origins; /* [0] unused: origin 0 is "none" */
    size_t norigins;
    size_t held;     /* readings accepted and not committed: queued + pending */
    size_t nderived; /* derived readings in ops not yet committed */
    int64_t next_ticket;
    bool flush_req, housekeep_req, stop_req, stop_retried, intake_closed, sleeping;
    int64_t armed; /* while sleeping: when tfd fires (INT64_MAX: never) */
    int64_t stop_deadline;
    int fault; /* MITTARI_ESTORAGE once the log is known damaged */
    char fault_what[256];
    enum wstate state;
    struct mt_writer_end end;

    /* writer thread only */
    struct mt_logdb *db;
    struct mt_writer_conf tconf; /* its copy, taken under the lock */
    struct mt_rec *pend;
    size_t npend, cappend;
    struct op *pops;
    size_t npops, cappops;
    struct cstate *cst;
    size_t ncst;
    uint32_t gen;
    struct undo *undo;
    size_t nundo, capundo;
    uint32_t *dirty;
    size_t ndirty, capdirty;
    struct norm_event *events;
    size_t nevents, capevents;
    int64_t next_seq;
    uint32_t persisted;
    int64_t next_housekeeping;
    int64_t retry_at;
    unsigned attempts;
    bool failed_entered;
    struct mt_complain c_commit;
    struct mt_housekeep hk;

    /* loop thread only */
    bool joined, thread_started, free_when_ended;
    mt_writer_ended_cb ended_cb;
    void *ended_arg;

    _Atomic int64_t committed;
    _Atomic int64_t steps_committed;
    _Atomic bool full;
    _Atomic bool listening; /* someone on the loop wants each commit (mt_writer_listen) */
    _Atomic int64_t heartbeat;
    _Atomic int error;
    struct mt_writer_stats stats;
};

#define INC(f) atomic_fetch_add_explicit(&w->stats.f, 1, memory_order_relaxed)
#define ADD(f, n) atomic_fetch_add_explicit(&w->stats.f, (uint64_t)(n), memory_order_relaxed)

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 64;
    while (n < need)
        n *= 2;
    void *v = realloc(*p, n * elem);
    if (!v)
        return -ENOMEM;
    *p = v;
    *cap = n;
    return 0;
}

/* ---- waking the thread (lock held) ---- */

/* Its timer fires at mono_us (absolute, CLOCK_MONOTONIC; INT64_MAX: never). */
static void arm(struct mt_writer *w, int64_t mono_us)
{
    struct itimerspec its = {{0, 0}, {0, 0}}; /* all zero: disarmed */

    if (mono_us != INT64_MAX) {
        int64_t at = mono_us > 0 ? mono_us : 1; /* zero would disarm it */
        its.it_value.tv_sec = at / 1000000;
        its.it_value.tv_nsec = (at % 1000000) * 1000;
    }
    timerfd_settime(w->tfd, TFD_TIMER_ABSTIME, &its, NULL);
    w->armed = mono_us;
}

/* Now: something the thread must see at once (flush, stop, a full batch). */
static void wake(struct mt_writer *w)
{
    uint64_t one = 1;
    (void)!write(w->efd, &one, sizeof(one));
}

/* A batch's clock starts: the thread, asleep in IDLE or GATHER, must be up
 * by deadline. Moving its timer earlier costs the pushing thread one
 * syscall and the writer nothing: it then wakes once per batch, at the
 * batch's end, not also at its first reading (issue 14). */
static void start_clock(struct mt_writer *w, int64_t deadline)
{
    if (w->sleeping && (w->state == WS_IDLE || w->state == WS_GATHER) && deadline < w->armed)
        arm(w, deadline);
}

/* How long cursor advances and steps wait on their own: a second at least,
 * so an output's acknowledgements do not cost an fsync'ed commit each (a
 * crash replays them at most). */
static int64_t ops_wait_us(const struct mt_writer_conf *c)
{
    return mt_ms_to_us(c->batch_interval_ms > 1000 ? c->batch_interval_ms : 1000);
}

static const char *err_text(int rc)
{
    const char *own = mittari_strerror_own(rc);
    return own ? own : strerror(-rc);
}

/* ---- intake (any thread) ---- */

int mt_writer_push(struct mt_writer *w, const struct mt_rec *r)
{
    int rc = 0;

    pthread_mutex_lock(&w->lock);
    if (w->intake_closed) {
        rc = MITTARI_ESTOPPED;
        INC(refused_stopped);
    } else if (w->fault) {
        rc = MITTARI_ESTORAGE;
        INC(refused_storage);
    } else if (atomic_load_explicit(&w->full, memory_order_relaxed)) {
        rc = MITTARI_EFULL;
        INC(refused_full);
    } else if ((int64_t)w->held >= w->conf.queue_max ||
               grow((void **)&w->q, &w->qcap, w->qlen + 1, sizeof(*w->q))) {
        /* queued and pending together: memory stays within queue_max also
         * while commits fail (issue 15) */
        rc = -EAGAIN;
        INC(refused_queue);
    }
    if (rc) {
        pthread_mutex_unlock(&w->lock);
        return rc;
    }
    if (w->qlen == 0) {
        w->q_first = mt_mono_us();
        start_clock(w, mt_add_sat(w->q_first, mt_ms_to_us(w->conf.batch_interval_ms)));
    }
    w->q[w->qlen++] = *r;
    w->held++;
    if (w->sleeping && (int64_t)w->qlen == w->conf.batch_size)
        wake(w);
    pthread_mutex_unlock(&w->lock);
    INC(queued);
    return 0;
}

uint16_t mt_writer_origin(struct mt_writer *w, const char *name)
{
    uint16_t id = 0;

    pthread_mutex_lock(&w->lock);
    for (size_t i = 1; i < w->norigins; i++)
        if (strcmp(w->origins[i]->name, name) == 0)
            id = (uint16_t)i;
    if (!id && w->norigins <= MAX_ORIGINS) {
        size_t n = w->norigins ? w->norigins : 1;
        struct origin **v = realloc(w->origins, (n + 1) * sizeof(*v));
        struct origin *o = calloc(1, sizeof(*o));
        if (v)
            w->origins = v;
        if (v && o && (o->name = strdup(name))) {
            w->origins[0] = NULL;
            w->origins[n] = o;
            w->norigins = n + 1;
            id = (uint16_t)n;
        } else {
            free(o);
        }
    }
    pthread_mutex_unlock(&w->lock);
    return id;
}

void mt_writer_origin_stats(struct mt_writer *w, uint16_t origin, struct mt_origin_stats *out)
{
    *out = (struct mt_origin_stats){0};
    pthread_mutex_lock(&w->lock);
    if (origin && origin < w->norigins) {
        out->wraps = atomic_load(&w->origins[origin]->wraps);
        out->resets = atomic_load(&w->origins[origin]->resets);
    }
    pthread_mutex_unlock(&w->lock);
}

static void free_op(struct op *op)
{
    free(op->name);
    free(op->error);
    free(op->state);
    free(op->recs);
}

/* lock held */
static int push_op_locked(struct mt_writer *w, struct op *op)
{
    /* after the inputs stopped no new readings come in, also not derived
     * ones; a step that only moves a consumer's cursor or state (an
     * output's plan while it drains) still does */
    if (w->intake_closed && op->type == OP_STEP && op->nrecs)
        return MITTARI_ESTOPPED;
    if (w->fault)
        return MITTARI_ESTORAGE;
    if (grow((void **)&w->ops, &w->capops, w->nops + 1, sizeof(*w->ops)))
        return -ENOMEM;
    if (w->nops == 0) {
        w->ops_first = mt_mono_us();
        start_clock(w, mt_add_sat(w->ops_first, ops_wait_us(&w->conf)));
    }
    w->ops[w->nops++] = *op;
    return 0;
}

static void push_op(struct mt_writer *w, struct op *op)
{
    pthread_mutex_lock(&w->lock);
    if (push_op_locked(w, op))
        free_op(op);
    pthread_mutex_unlock(&w->lock);
}

/* lock held: the consumer holds back retention from seq on */
static void note_consumer(struct mt_writer *w, const char *name, int64_t seq)
{
    for (size_t i = 0; i < w->ncons; i++) {
        if (strcmp(w->cons[i].name, name) == 0) {
            w->cons[i].seq = seq;
            return;
        }
    }
    struct consumer *c = realloc(w->cons, (w->ncons + 1) * sizeof(*c));
    if (!c)
        return;
    w->cons = c;
    c[w->ncons].name = strdup(name);
    c[w->ncons].seq = seq;
    if (c[w->ncons].name)
        w->ncons++;
}

void mt_writer_cursor(struct mt_writer *w, const char *name, int64_t seq)
{
    struct op op = {.type = OP_CURSOR, .name = strdup(name), .last = seq};

    if (!op.name)
        return;
    pthread_mutex_lock(&w->lock);
    note_consumer(w, name, seq);
    if (push_op_locked(w, &op))
        free_op(&op);
    pthread_mutex_unlock(&w->lock);
}

int mt_writer_step(struct mt_writer *w, const struct mt_consumer_step *s, int64_t *ticket)
{
    struct op op = {.type = OP_STEP, .last = s->cursor, .version = s->state_version,
                    .keep_state = s->keep_state, .nrecs = s->nrecs};
    int rc = -ENOMEM;

    if (!s->name || !*s->name)
        return -EINVAL;
    for (size_t i = 0; i < s->nrecs; i++)
        if (s->recs[i].kind == MITTARI_KIND_CUMULATIVE)
            return -EINVAL;
    op.name = strdup(s->name);
    if (!op.name)
        goto fail;
    if (!s->keep_state && s->state_len) {
        op.state = malloc(s->state_len);
        if (!op.state)
            goto fail;
        memcpy(op.state, s->state, s->state_len);
        op.state_len = s->state_len;
    }
    if (s->nrecs) {
        op.recs = malloc(s->nrecs * sizeof(*op.recs));
        if (!op.recs)
            goto fail;
        memcpy(op.recs, s->recs, s->nrecs * sizeof(*op.recs));
    }
    pthread_mutex_lock(&w->lock);
    if (s->nrecs && (int64_t)(w->nderived + s->nrecs) > w->conf.queue_max) {
        pthread_mutex_unlock(&w->lock);
        rc = -EAGAIN;
        goto fail;
    }
    op.ticket = w->next_ticket + 1;
    rc = push_op_locked(w, &op);
    if (rc) {
        pthread_mutex_unlock(&w->lock);
        goto fail;
    }
    w->next_ticket++;
    w->nderived += s->nrecs;
    note_consumer(w, s->name, s->cursor);
    if (ticket)
        *ticket = op.ticket;
    pthread_mutex_unlock(&w->lock);
    return 0;
fail:
    free_op(&op);
    return rc;
}

int64_t mt_writer_steps_committed(struct mt_writer *w)
{
    return atomic_load(&w->steps_committed);
}

void mt_writer_keep_consumers(struct mt_writer *w, const char *const *names, size_t n)
{
    pthread_mutex_lock(&w->lock);
    for (size_t i = 0; i < w->ncons;) {
        bool keep = false;
        for (size_t j = 0; j < n && !keep; j++)
            keep = strcmp(w->cons[i].name, names[j]) == 0;
        if (keep) {
            i++;
            continue;
        }
        mt_diag(MT_INFO, MOD, "output %s is no longer configured: its cursor no longer holds "
                "readings back", w->cons[i].name);
        free(w->cons[i].name);
        w->cons[i] = w->cons[--w->ncons];
    }
    pthread_mutex_unlock(&w->lock);
}

void mt_writer_park(struct mt_writer *w, const char *output, int64_t first, int64_t last,
                    const char *error)
{
    struct op op = {.type = OP_PARK, .name = strdup(output), .first = first, .last = last,
                    .error = strdup(error)};
    if (op.name && op.error)
        push_op(w, &op);
    else
        free_op(&op);
}

void mt_writer_fault(struct mt_writer *w, int err, const char *what)
{
    if (err != MITTARI_ESTORAGE)
        return;
    pthread_mutex_lock(&w->lock);
    if (!w->fault) {
        w->fault = err;
        snprintf(w->fault_what, sizeof(w->fault_what), "%s", what ? what : "");
    }
    wake(w);
    pthread_mutex_unlock(&w->lock);
    /* the thread tells the loop once it stopped writing */
}

void mt_writer_flush(struct mt_writer *w)
{
    pthread_mutex_lock(&w->lock);
    w->flush_req = true;
    wake(w);
    pthread_mutex_unlock(&w->lock);
}

bool mt_writer_idle(struct mt_writer *w)
{
    bool idle;
    pthread_mutex_lock(&w->lock);
    if (w->state == WS_FAILED || w->state == WS_ENDED)
        idle = true; /* nothing more will be committed */
    else
        idle = w->state == WS_IDLE && w->held == 0 && w->nops == 0 && !w->flush_req;
    pthread_mutex_unlock(&w->lock);
    return idle;
}

uint64_t mt_writer_held(struct mt_writer *w)
{
    pthread_mutex_lock(&w->lock);
    uint64_t n = w->held;
    pthread_mutex_unlock(&w->lock);
    return n;
}

int64_t mt_writer_committed(struct mt_writer *w)
{
    return atomic_load(&w->committed);
}

int mt_writer_error(struct mt_writer *w)
{
    return atomic_load(&w->error);
}

void mt_writer_fault_text(struct mt_writer *w, char *buf, size_t len)
{
    pthread_mutex_lock(&w->lock);
    snprintf(buf, len, "%s", w->fault_what);
    pthread_mutex_unlock(&w->lock);
}

int64_t mt_writer_busy_since(struct mt_writer *w)
{
    pthread_mutex_lock(&w->lock);
    bool busy = w->state == WS_COMMIT || w->state == WS_HOUSEKEEP;
    pthread_mutex_unlock(&w->lock);
    return busy ? atomic_load(&w->heartbeat) : 0;
}

const struct mt_writer_stats *mt_writer_stats(struct mt_writer *w)
{
    return &w->stats;
}

void mt_writer_set_conf(struct mt_writer *w, const struct mt_writer_conf *conf)
{
    pthread_mutex_lock(&w->lock);
    w->conf = *conf;
    w->housekeep_req = true; /* a new cap or policy applies now, also while blocked */
    wake(w);
    pthread_mutex_unlock(&w->lock);
}

void mt_writer_close_intake(struct mt_writer *w)
{
    pthread_mutex_lock(&w->lock);
    w->intake_closed = true;
    pthread_mutex_unlock(&w->lock);
}

/* ---- the commit (writer thread) ---- */

static int ensure_states(struct mt_writer *w, uint32_t series)
{
    if (series < w->ncst)
        return 0;
    size_t n = w->ncst ? w->ncst : 256;
    while (n <= series)
        n *= 2;
    struct cstate *c = realloc(w->cst, n * sizeof(*c));
    if (!c)
        return -ENOMEM;
    memset(c + w->ncst, 0, (n - w->ncst) * sizeof(*c));
    w->cst = c;
    w->ncst = n;
    return 0;
}

static int touch_counter(struct mt_writer *w, uint32_t series)
{
    if (w->cst[series].mark == w->gen)
        return 0;
    if (grow((void **)&w->undo, &w->capundo, w->nundo + 1, sizeof(*w->undo)) ||
        grow((void **)&w->dirty, &w->capdirty, w->ndirty + 1, sizeof(*w->dirty)))
        return -ENOMEM;
    w->cst[series].mark = w->gen;
    w->undo[w->nundo].series = series;
    w->undo[w->nundo++].st = w->cst[series].st;
    w->dirty[w->ndirty++] = series;
    return 0;
}

struct counts {
    uint64_t first, wraps, resets, stored, derived, steps;
    int64_t ticket;
};

static void note_event(struct mt_writer *w, const struct mt_rec *r, int ev, uint64_t from)
{
    if (grow((void **)&w->events, &w->capevents, w->nevents + 1, sizeof(*w->events)))
        return; /* still counted in the totals; only the report is lost */
    w->events[w->nevents++] =
        (struct norm_event){.series = r->series, .origin = r->origin, .ev = ev, .from = from,
                            .to = r->counter};
}

/* extra: MT_LOG_DERIVED for a consumer step's readings, else 0 */
static int put_rec(struct mt_writer *w, const struct mt_rec *r, unsigned extra, struct counts *c)
{
    double value = r->value;

    if (r->kind == MITTARI_KIND_CUMULATIVE) {
        uint64_t delta = 0;
        int rc = ensure_states(w, r->series);
        if (!rc)
            rc = touch_counter(w, r->series);
        if (rc)
            return rc;
        uint64_t from = w->cst[r->series].st.last;
        int ev = mt_norm_counter(&w->cst[r->series].st, r->counter, r->bits, r->ts, &delta);
        switch (ev) {
        case MT_NORM_FIRST: c->first++; return 0;
        case MT_NORM_SAME:
        case MT_NORM_INVALID: return 0;
        case MT_NORM_WRAP:
            c->wraps++;
            note_event(w, r, ev, from);
            break;
        case MT_NORM_RESET:
            c->resets++;
            note_event(w, r, ev, from);
            break;
        }
        value = (double)delta;
    }
    int rc = mt_log_put_reading_flags(w->db, w->next_seq, r->ts, r->series, value, r->subject,
                                      r->flags | extra, r->min_count);
    if (!rc) {
        w->next_seq++;
        c->stored++;
    }
    return rc;
}

/* A consumer's step: its derived readings, state and cursor together. */
static int put_step(struct mt_writer *w, struct op *op, struct counts *c)
{
    int rc = 0;
    uint64_t stored = c->stored;

    for (size_t i = 0; !rc && i < op->nrecs; i++)
        rc = put_rec(w, &op->recs[i], MT_LOG_DERIVED, c);
    c->derived += c->stored - stored;
    c->stored = stored; /* stored counts what inputs gave */
    if (!rc && !op->keep_state)
        rc = mt_log_put_state(w->db, op->name, op->version, op->state, op->state_len,
                              mt_now_us());
    if (!rc)
        rc = mt_log_put_cursor(w->db, op->name, op->last, mt_now_us());
    if (!rc) {
        c->steps++;
        if (op->ticket > c->ticket)
            c->ticket = op->ticket;
    }
    return rc;
}

static int commit_pending(struct mt_writer *w, struct counts *c)
{
    uint32_t nseries = mt_series_count(w->reg);
    int rc = mt_log_begin(w->db);

    if (rc)
        return rc;
    for (uint32_t id = w->persisted + 1; !rc && id <= nseries; id++)
        rc = mt_log_put_series(w->db, mt_series_get(w->reg, id));
    for (size_t i = 0; !rc && i < w->npend; i++)
        rc = put_rec(w, &w->pend[i], 0, c);
    for (size_t i = 0; !rc && i < w->ndirty; i++) {
        const struct mt_counter_state *s = &w->cst[w->dirty[i]].st;
        rc = mt_log_put_counter(w->db, w->dirty[i], s->last, s->ts);
    }
    for (size_t i = 0; !rc && i < w->npops; i++) {
        struct op *op = &w->pops[i];
        if (op->type == OP_CURSOR)
            rc = mt_log_put_cursor(w->db, op->name, op->last, mt_now_us());
        else if (op->type == OP_PARK)
            rc = mt_log_put_parked(w->db, op->name, op->first, op->last, op->error, mt_now_us());
        else
            rc = put_step(w, op, c);
    }
    if (!rc)
        rc = mt_log_commit(w->db);
    if (!rc)
        w->persisted = nseries;
    return rc;
}

static void clear_ops(struct op *ops, size_t *n)
{
    for (size_t i = 0; i < *n; i++)
        free_op(&ops[i]);
    *n = 0;
}

/* After a commit, lock not held: each reset is logged with its old and new
 * value, once per series per COMPLAIN_US (issue 8 §6). */
static void log_resets(struct mt_writer *w)
{
    for (size_t i = 0; i < w->nevents; i++) {
        const struct norm_event *e = &w->events[i];
        if (e->ev != MT_NORM_RESET)
            continue;
        struct cstate *cs = &w->cst[e->series];
        int64_t now = mt_mono_us();
        if (cs->reset_logged_us && now - cs->reset_logged_us < COMPLAIN_US) {
            cs->resets_quiet++;
            continue;
        }
        const struct mt_series_info *s = mt_series_get(w->reg, e->series);
        char more[64] = "";
        if (cs->resets_quiet)
            snprintf(more, sizeof(more), " (%" PRIu64 " more resets since the last report)",
                     cs->resets_quiet);
        mt_diag(MT_NOTICE, MOD,
                "counter %s/%s/%s went back from %" PRIu64 " to %" PRIu64
                ": taken as a device reset, counted %" PRIu64 " since zero%s",
                s ? s->site : "?", s ? s->device : "?", s ? s->metric : "?", e->from, e->to,
                e->to, more);
        cs->reset_logged_us = now;
        cs->resets_quiet = 0;
    }
}

/* After a commit, lock held: wraps and resets per input. */
static void count_events(struct mt_writer *w)
{
    for (size_t i = 0; i < w->nevents; i++) {
        const struct norm_event *e = &w->events[i];
        if (e->origin && e->origin < w->norigins)
            atomic_fetch_add(e->ev == MT_NORM_WRAP ? &w->origins[e->origin]->wraps
                                                   : &w->origins[e->origin]->resets,
                             1);
    }
    w->nevents = 0;
}

/* Lock not held. 0, or the error; a failed round is rolled back whole,
 * the normalizer states too. */
static int commit_round(struct mt_writer *w)
{
    struct counts c = {0};
    int64_t seq0 = w->next_seq;
    int rc;

    w->gen++;
    w->nundo = w->ndirty = w->nevents = 0;
    rc = commit_pending(w, &c);
    if (rc) {
        mt_log_rollback(w->db);
        for (size_t i = w->nundo; i-- > 0;)
            w->cst[w->undo[i].series].st = w->undo[i].st;
        w->next_seq = seq0;
        w->nevents = 0;
        INC(commit_errors);
        return rc;
    }
    ADD(stored, c.stored);
    ADD(counter_first, c.first);
    ADD(counter_wraps, c.wraps);
    ADD(counter_resets, c.resets);
    ADD(derived, c.derived);
    ADD(steps, c.steps);
    INC(commits);
    bool tell = false;
    if (c.ticket > atomic_load(&w->steps_committed)) {
        atomic_store(&w->steps_committed, c.ticket);
        tell = true; /* a consumer may wait for its step (an output's plan) */
    }
    if (w->next_seq - 1 > atomic_load(&w->committed)) {
        atomic_store(&w->committed, w->next_seq - 1);
        tell = true;
    }
    /* a wake of the loop only for someone who reads the log there */
    if (tell && atomic_load(&w->listening))
        uv_async_send(&w->async);
    return 0;
}

/* ---- housekeeping (writer thread, lock not held) ---- */

/* The lowest cursor of every consumer. With no consumer at all, everything
 * committed counts as delivered: retention and the cap agree that nobody is
 * waiting for a reading (issue 15), so block_inputs never blocks for them. */
static int64_t min_consumer(struct mt_writer *w)
{
    int64_t m = INT64_MAX;
    pthread_mutex_lock(&w->lock);
    for (size_t i = 0; i < w->ncons; i++)
        if (w->cons[i].seq < m)
            m = w->cons[i].seq;
    pthread_mutex_unlock(&w->lock);
    return m == INT64_MAX ? w->next_seq - 1 : m;
}

static int housekeeping(struct mt_writer *w, bool timed)
{
    struct mt_housekeep_env e = {.db = w->db,
                                 .last_seq = w->next_seq - 1,
                                 .delivered = min_consumer(w),
                                 .conf = &w->tconf,
                                 .full = &w->full,
                                 .stats = &w->stats};
    int rc = 0;
    if (timed) {
        rc = mt_housekeep_retention(&w->hk, &e);
        w->next_housekeeping = mt_add_sat(mt_mono_us(), mt_ms_to_us(w->tconf.housekeeping_ms));
    }
    int rc2 = mt_housekeep_cap(&w->hk, &e);
    return rc ? rc : rc2;
}

/* ---- the thread: one function per state, lock held on entry and exit ---- */

/* The one wait of the thread: until its timer (armed here for mono_us, or
 * moved earlier by a push meanwhile) or its eventfd. Both are level
 * triggered, so nothing said between the unlock and the poll is lost; the
 * caller looks at the state again under the lock. */
static void sleep_until(struct mt_writer *w, int64_t mono_us)
{
    struct pollfd p[2] = {{.fd = w->efd, .events = POLLIN}, {.fd = w->tfd, .events = POLLIN}};
    uint64_t v;
    int n;

    arm(w, mono_us);
    w->sleeping = true;
    pthread_mutex_unlock(&w->lock);
    while ((n = poll(p, 2, -1)) < 0 && errno == EINTR)
        ;
    if (n < 0)
        nanosleep(&(struct timespec){0, 10 * 1000000}, NULL); /* never spin */
    (void)!read(w->efd, &v, sizeof(v));
    (void)!read(w->tfd, &v, sizeof(v));
    pthread_mutex_lock(&w->lock);
    w->sleeping = false;
    INC(wakes);
}

/* A burst grew the intake queue: give the memory back once it is drained. */
static void shrink_queue(struct mt_writer *w)
{
    if (w->qlen == 0 && w->qcap > 65536) {
        free(w->q);
        w->q = NULL;
        w->qcap = 0;
    }
}

/* Everything queued becomes pending: bounded, since held counts both. */
static void take(struct mt_writer *w)
{
    if (w->qlen && w->npend == 0) {
        /* the usual case: swap the buffers, no copy */
        struct mt_rec *p = w->pend;
        size_t c = w->cappend;
        w->pend = w->q;
        w->cappend = w->qcap;
        w->npend = w->qlen;
        w->q = p;
        w->qcap = c;
        w->qlen = 0;
    } else if (w->qlen &&
               grow((void **)&w->pend, &w->cappend, w->npend + w->qlen, sizeof(*w->pend)) == 0) {
        memcpy(w->pend + w->npend, w->q, w->qlen * sizeof(*w->q));
        w->npend += w->qlen;
        w->qlen = 0;
    }
    shrink_queue(w);
    if (w->nops && grow((void **)&w->pops, &w->cappops, w->npops + w->nops, sizeof(*w->pops)) == 0) {
        memcpy(w->pops + w->npops, w->ops, w->nops * sizeof(*w->ops));
        w->npops += w->nops;
        w->nops = 0;
    }
    w->flush_req = false;
}

static enum wstate st_idle(struct mt_writer *w)
{
    if (w->fault)
        return WS_FAILED;
    if (w->qlen || w->nops)
        return WS_GATHER;
    if (w->stop_req)
        return WS_ENDED;
    if (w->housekeep_req || mt_mono_us() >= w->next_housekeeping)
        return WS_HOUSEKEEP;
    w->flush_req = false; /* nothing to flush */
    sleep_until(w, w->next_housekeeping);
    return WS_IDLE;
}

static enum wstate st_gather(struct mt_writer *w)
{
    if (w->fault)
        return WS_FAILED;
    if (!w->qlen && !w->nops)
        return WS_IDLE;
    if (w->flush_req || w->stop_req || (int64_t)w->qlen >= w->conf.batch_size)
        return WS_COMMIT;
    /* readings wait at most batch_interval; cursor advances alone wait up
     * to a second (ops_wait_us) */
    int64_t deadline = w->qlen ? mt_add_sat(w->q_first, mt_ms_to_us(w->conf.batch_interval_ms))
                               : mt_add_sat(w->ops_first, ops_wait_us(&w->conf));
    if (mt_mono_us() >= deadline)
        return WS_COMMIT;
    sleep_until(w, deadline);
    return WS_GATHER;
}

static enum wstate enter_failed(struct mt_writer *w, const char *what)
{
    if (!w->fault) {
        w->fault = MITTARI_ESTORAGE;
        snprintf(w->fault_what, sizeof(w->fault_what), "%s", what);
    }
    return WS_FAILED;
}

static enum wstate st_commit(struct mt_writer *w)
{
    char what[200];

    if (w->fault)
        return WS_FAILED;
    take(w);
    w->tconf = w->conf;
    size_t nrec = w->npend;
    pthread_mutex_unlock(&w->lock);
    int rc = commit_round(w);
    if (rc) {
        snprintf(what, sizeof(what), "committing %zu readings: %s", nrec, mt_log_errmsg(w->db));
        if (rc != MITTARI_ESTORAGE)
            mt_complain(&w->c_commit, MT_ERR, MOD, COMPLAIN_US,
                        "cannot commit %zu readings to %s: %s (%s); keeping them and retrying",
                        nrec, mt_log_path(w->db), mt_log_errmsg(w->db),
                        rc == -ENOSPC ? "disk full" : "storage error");
    } else {
        mt_complain_clear(&w->c_commit, MOD, "commits to %s work again", mt_log_path(w->db));
        log_resets(w);
    }
    pthread_mutex_lock(&w->lock);
    if (rc == MITTARI_ESTORAGE)
        return enter_failed(w, what);
    if (rc) {
        w->attempts++;
        w->retry_at = mt_mono_us() + (100000LL << (w->attempts < 6 ? w->attempts : 6));
        atomic_store(&w->error, rc);
        uv_async_send(&w->async); /* let the loop see the error */
        return WS_BACKOFF;
    }
    w->attempts = 0;
    if (atomic_exchange(&w->error, 0))
        uv_async_send(&w->async);
    w->held -= w->npend;
    w->npend = 0;
    for (size_t i = 0; i < w->npops; i++)
        w->nderived -= w->pops[i].nrecs;
    clear_ops(w->pops, &w->npops);
    count_events(w);
    if (w->fault)
        return WS_FAILED;
    if (w->stop_req)
        return w->qlen || w->nops ? WS_GATHER : WS_ENDED;
    return WS_HOUSEKEEP;
}

static enum wstate st_backoff(struct mt_writer *w)
{
    int64_t now = mt_mono_us();

    if (w->fault)
        return WS_FAILED;
    if (w->stop_req && !w->stop_retried) {
        w->stop_retried = true; /* a stop tries once more at once */
        return WS_COMMIT;
    }
    if (w->stop_req && now >= w->stop_deadline)
        return WS_ENDED;
    if (now >= w->retry_at)
        return WS_COMMIT;
    int64_t until = w->retry_at;
    if (w->stop_req && w->stop_deadline < until)
        until = w->stop_deadline;
    sleep_until(w, until);
    return WS_BACKOFF;
}

static enum wstate st_housekeep(struct mt_writer *w)
{
    char what[200];
    int64_t now = mt_mono_us();
    bool timed = now >= w->next_housekeeping; /* else the cap alone */

    if (w->housekeep_req) {
        /* new settings: a shorter interval counts from now */
        int64_t next = mt_add_sat(now, mt_ms_to_us(w->conf.housekeeping_ms));
        if (next < w->next_housekeeping)
            w->next_housekeeping = next;
    }
    w->housekeep_req = false;
    w->tconf = w->conf;
    pthread_mutex_unlock(&w->lock);
    int rc = housekeeping(w, timed);
    snprintf(what, sizeof(what), "housekeeping: %s", mt_log_errmsg(w->db));
    pthread_mutex_lock(&w->lock);
    if (rc == MITTARI_ESTORAGE)
        return enter_failed(w, what);
    if (w->fault)
        return WS_FAILED;
    return w->qlen || w->nops ? WS_GATHER : WS_IDLE;
}

static enum wstate st_failed(struct mt_writer *w)
{
    if (!w->failed_entered) {
        w->failed_entered = true;
        pthread_mutex_unlock(&w->lock);
        /* not one more page into the damaged file, not even a checkpoint */
        mt_log_set_damaged(w->db);
        mt_diag(MT_ERR, MOD, "the log %s is damaged; writing nothing more to it",
                mt_log_path(w->db));
        pthread_mutex_lock(&w->lock);
        atomic_store(&w->full, false);
        atomic_store(&w->error, MITTARI_ESTORAGE);
        uv_async_send(&w->async);
    }
    if (w->stop_req)
        return WS_ENDED;
    sleep_until(w, INT64_MAX);
    return WS_FAILED;
}

/* The last turn: count what could not be stored, close the database on
 * this thread (a checkpoint may take a while; the loop never waits for it). */
static void finish(struct mt_writer *w)
{
    w->end.lost = w->held;
    w->end.error = w->fault ? w->fault : atomic_load(&w->error);
    w->intake_closed = true;
    pthread_mutex_unlock(&w->lock);
    if (w->end.lost)
        mt_diag(MT_ERR, MOD, "%" PRIu64 " readings accepted from inputs could not be stored before "
                "exit: %s", w->end.lost,
                w->fault ? w->fault_what : mt_log_errmsg(w->db));
    mt_log_close(w->db);
    w->db = NULL;
    pthread_mutex_lock(&w->lock);
    w->state = WS_ENDED;
    pthread_mutex_unlock(&w->lock);
    uv_async_send(&w->async);
}

static void *thread_main(void *arg)
{
    struct mt_writer *w = arg;
    enum wstate s = WS_IDLE;

    pthread_setname_np(pthread_self(), "mt-writer"); /* for top -H, and bench_serial */
    pthread_mutex_lock(&w->lock);
    while (s != WS_ENDED) {
        w->state = s;
        atomic_store(&w->heartbeat, mt_mono_us());
        switch (s) {
        case WS_IDLE: s = st_idle(w); break;
        case WS_GATHER: s = st_gather(w); break;
        case WS_COMMIT: s = st_commit(w); break;
        case WS_BACKOFF: s = st_backoff(w); break;
        case WS_HOUSEKEEP: s = st_housekeep(w); break;
        case WS_FAILED: s = st_failed(w); break;
        case WS_ENDED: break;
        }
    }
    finish(w);
    return NULL;
}

/* ---- loop thread ---- */

static void free_writer(uv_handle_t *h);

static void async_cb(uv_async_t *h)
{
    struct mt_writer *w = h->data;

    if (w->cb)
        w->cb(w->cb_arg, atomic_load(&w->committed));
    pthread_mutex_lock(&w->lock);
    bool ended = w->state == WS_ENDED;
    pthread_mutex_unlock(&w->lock);
    if (!ended || w->joined || !w->thread_started)
        return;
    pthread_join(w->thread, NULL); /* it has returned or is returning */
    w->joined = true;
    if (w->ended_cb)
        w->ended_cb(w->ended_arg, &w->end);
    if (w->free_when_ended)
        mt_writer_free(w);
}

static int load_counter(void *arg, uint32_t series, uint64_t last, int64_t ts)
{
    struct mt_writer *w = arg;
    if (ensure_states(w, series))
        return -ENOMEM;
    w->cst[series].st.last = last;
    w->cst[series].st.ts = ts;
    w->cst[series].st.have = true;
    return 0;
}

static int load_consumer(void *arg, const char *name, int64_t seq)
{
    struct mt_writer *w = arg;
    struct consumer *c = realloc(w->cons, (w->ncons + 1) * sizeof(*c));
    if (!c)
        return -ENOMEM;
    w->cons = c;
    c[w->ncons].name = strdup(name);
    c[w->ncons].seq = seq;
    if (!c[w->ncons].name)
        return -ENOMEM;
    w->ncons++;
    return 0;
}

static void release(struct mt_writer *w)
{
    clear_ops(w->ops, &w->nops);
    clear_ops(w->pops, &w->npops);
    for (size_t i = 0; i < w->ncons; i++)
        free(w->cons[i].name);
    for (size_t i = 1; i < w->norigins; i++) {
        free(w->origins[i]->name);
        free(w->origins[i]);
    }
    free(w->origins);
    free(w->cons);
    free(w->ops);
    free(w->pops);
    free(w->q);
    free(w->pend);
    free(w->cst);
    free(w->undo);
    free(w->dirty);
    free(w->events);
    mt_log_close(w->db);
    pthread_mutex_destroy(&w->lock);
    if (w->efd >= 0)
        close(w->efd);
    if (w->tfd >= 0)
        close(w->tfd);
    free(w);
}

static void free_writer(uv_handle_t *h)
{
    release(h->data);
}

int mt_writer_start(struct mt_writer **out, uv_loop_t *loop, struct mt_logdb *db,
                    struct mt_series_reg *reg, const struct mt_writer_conf *conf,
                    mt_committed_cb cb, void *arg)
{
    struct mt_writer *w = calloc(1, sizeof(*w));
    int64_t last = 0;
    int rc;

    *out = NULL;
    if (!w) {
        mt_log_close(db);
        return -ENOMEM;
    }
    w->efd = w->tfd = -1;
    w->db = db;
    w->reg = reg;
    w->conf = w->tconf = *conf;
    w->cb = cb;
    w->cb_arg = arg;
    pthread_mutex_init(&w->lock, NULL);
    w->armed = INT64_MAX;
    atomic_store(&w->listening, true);
    w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    w->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (w->efd < 0 || w->tfd < 0) {
        rc = -errno;
        mt_diag(MT_ERR, MOD, "cannot make the writer's wake-up descriptors: %s", strerror(-rc));
        release(w);
        return rc;
    }

    rc = mt_log_load_series(db, reg);
    if (!rc)
        rc = mt_log_load_counters(db, load_counter, w);
    if (!rc)
        rc = mt_log_last_seq(db, &last);
    /* every consumer the log knows holds back retention from the start,
     * also one that then fails to start; the agent forgets the ones no
     * longer configured */
    if (!rc)
        rc = mt_log_load_cursors(db, load_consumer, w);
    if (rc) {
        mt_diag(MT_ERR, MOD, "cannot load the log state from %s: %s (%s)", mt_log_path(db),
                mt_log_errmsg(db), err_text(rc));
        release(w);
        return rc;
    }
    w->persisted = mt_series_count(reg);
    w->next_seq = last + 1;
    atomic_store(&w->committed, last);
    w->next_housekeeping = mt_add_sat(
        mt_mono_us(), mt_ms_to_us(conf->housekeeping_ms > 0 ? conf->housekeeping_ms : 60000));
    atomic_store(&w->heartbeat, mt_mono_us());
    rc = uv_async_init(loop, &w->async, async_cb);
    if (rc) {
        release(w);
        return rc;
    }
    w->async.data = w;
    rc = pthread_create(&w->thread, NULL, thread_main, w);
    if (rc) {
        /* the async handle is closed asynchronously: free the writer in its
         * close callback, not here */
        mt_diag(MT_ERR, MOD, "cannot start the writer thread: %s", strerror(rc));
        uv_close((uv_handle_t *)&w->async, free_writer);
        return -rc;
    }
    w->thread_started = true;
    *out = w;
    return 0;
}

void mt_writer_end(struct mt_writer *w, int64_t deadline_ms, mt_writer_ended_cb ended, void *arg)
{
    w->ended_cb = ended;
    w->ended_arg = arg;
    pthread_mutex_lock(&w->lock);
    w->intake_closed = true;
    w->stop_req = true;
    w->stop_deadline = mt_add_sat(mt_mono_us(), mt_ms_to_us(deadline_ms));
    wake(w);
    pthread_mutex_unlock(&w->lock);
}

void mt_writer_listen(struct mt_writer *w, bool on)
{
    /* a listener that comes late hears where the log is now */
    if (!atomic_exchange(&w->listening, on) && on)
        uv_async_send(&w->async);
}

bool mt_writer_listening(struct mt_writer *w)
{
    return atomic_load(&w->listening);
}

void mt_writer_free(struct mt_writer *w)
{
    if (!uv_is_closing((uv_handle_t *)&w->async))
        uv_close((uv_handle_t *)&w->async, free_writer);
}

void mt_writer_stop(struct mt_writer *w, int64_t deadline_ms)
{
    w->free_when_ended = true;
    mt_writer_end(w, deadline_ms, NULL, NULL);
}
