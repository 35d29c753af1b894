#include "writer.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mittari/mittari.h>

#include "diag.h"
#include "normalize.h"
#include "util.h"

#define MOD "log"
#define DELETE_CHUNK 50000
#define DELETE_ROUNDS 40
#define COMPLAIN_US (600 * 1000000LL)

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

struct undo {
    uint32_t series;
    struct mt_counter_state st;
};

struct mt_writer {
    struct mt_writer_conf conf;  /* under lock: set_conf may change it */
    struct mt_writer_conf tconf; /* the thread's copy, taken under the lock */
    struct mt_logdb *db;
    struct mt_series_reg *reg;
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t lock;
    pthread_cond_t cond;

    /* under lock */
    struct mt_rec *q;
    size_t qlen, qcap;
    int64_t q_first;
    struct op *ops;
    size_t nops, capops;
    int64_t ops_first;
    struct consumer *cons;
    size_t ncons;
    size_t nderived; /* derived readings in ops not yet committed */
    int64_t next_ticket;
    bool flush_req, stop_req, waiting;
    int64_t stop_deadline;

    /* writer thread only */
    struct mt_rec *pend;
    size_t npend, cappend;
    struct op *pops;
    size_t npops, cappops;
    struct mt_counter_state *cst;
    uint32_t *mark;
    size_t ncst;
    uint32_t gen;
    struct undo *undo;
    size_t nundo, capundo;
    uint32_t *dirty;
    size_t ndirty, capdirty;
    int64_t next_seq;
    uint32_t persisted;
    int64_t next_housekeeping;
    int64_t retry_at;
    unsigned attempts;
    struct mt_complain c_commit, c_cap, c_full;

    _Atomic int64_t committed;
    _Atomic int64_t steps_committed;
    _Atomic bool full;
    _Atomic int64_t heartbeat;
    _Atomic int error;
    struct mt_writer_stats stats;

    uv_async_t async;
    mt_committed_cb cb;
    void *cb_arg;
};

#define INC(f) atomic_fetch_add_explicit(&w->stats.f, 1, memory_order_relaxed)
#define ADD(f, n) atomic_fetch_add_explicit(&w->stats.f, (uint64_t)(n), memory_order_relaxed)

static void abstime(int64_t mono_us, struct timespec *ts)
{
    ts->tv_sec = mono_us / 1000000;
    ts->tv_nsec = (mono_us % 1000000) * 1000;
}

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

/* ---- intake (any thread) ---- */

int mt_writer_push(struct mt_writer *w, const struct mt_rec *r)
{
    pthread_mutex_lock(&w->lock);
    if (atomic_load_explicit(&w->full, memory_order_relaxed)) {
        pthread_mutex_unlock(&w->lock);
        INC(refused_full);
        return MITTARI_EFULL;
    }
    if ((int64_t)w->qlen >= w->conf.queue_max ||
        grow((void **)&w->q, &w->qcap, w->qlen + 1, sizeof(*w->q))) {
        pthread_mutex_unlock(&w->lock);
        INC(refused_queue);
        return -EAGAIN;
    }
    if (w->qlen == 0)
        w->q_first = mt_mono_us();
    w->q[w->qlen++] = *r;
    if (w->waiting && (w->qlen == 1 || (int64_t)w->qlen == w->conf.batch_size))
        pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    INC(queued);
    return 0;
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
    if (grow((void **)&w->ops, &w->capops, w->nops + 1, sizeof(*w->ops)))
        return -ENOMEM;
    if (w->nops == 0)
        w->ops_first = mt_mono_us();
    w->ops[w->nops++] = *op;
    if (w->waiting)
        pthread_cond_signal(&w->cond);
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
    pthread_mutex_unlock(&w->lock);
    push_op(w, &op);
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
    op.ticket = ++w->next_ticket;
    rc = push_op_locked(w, &op);
    if (rc) {
        w->next_ticket--;
        pthread_mutex_unlock(&w->lock);
        goto fail;
    }
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

void mt_writer_flush(struct mt_writer *w)
{
    pthread_mutex_lock(&w->lock);
    w->flush_req = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

bool mt_writer_idle(struct mt_writer *w)
{
    pthread_mutex_lock(&w->lock);
    bool idle = w->qlen == 0 && w->nops == 0 && !w->flush_req && w->waiting && w->npend == 0 &&
                w->npops == 0;
    pthread_mutex_unlock(&w->lock);
    return idle;
}

int64_t mt_writer_committed(struct mt_writer *w)
{
    return atomic_load(&w->committed);
}

int mt_writer_error(struct mt_writer *w)
{
    return atomic_load(&w->error);
}

int64_t mt_writer_heartbeat(struct mt_writer *w)
{
    return atomic_load(&w->heartbeat);
}

const struct mt_writer_stats *mt_writer_stats(struct mt_writer *w)
{
    return &w->stats;
}

void mt_writer_set_conf(struct mt_writer *w, const struct mt_writer_conf *conf)
{
    pthread_mutex_lock(&w->lock);
    w->conf = *conf;
    pthread_cond_signal(&w->cond);
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
    struct mt_counter_state *c = realloc(w->cst, n * sizeof(*c));
    if (!c)
        return -ENOMEM;
    w->cst = c;
    uint32_t *m = realloc(w->mark, n * sizeof(*m));
    if (!m)
        return -ENOMEM;
    w->mark = m;
    memset(w->cst + w->ncst, 0, (n - w->ncst) * sizeof(*c));
    memset(w->mark + w->ncst, 0, (n - w->ncst) * sizeof(*m));
    w->ncst = n;
    return 0;
}

static int touch_counter(struct mt_writer *w, uint32_t series)
{
    if (w->mark[series] == w->gen)
        return 0;
    if (grow((void **)&w->undo, &w->capundo, w->nundo + 1, sizeof(*w->undo)) ||
        grow((void **)&w->dirty, &w->capdirty, w->ndirty + 1, sizeof(*w->dirty)))
        return -ENOMEM;
    w->mark[series] = w->gen;
    w->undo[w->nundo].series = series;
    w->undo[w->nundo++].st = w->cst[series];
    w->dirty[w->ndirty++] = series;
    return 0;
}

struct counts {
    uint64_t first, wraps, resets, stored, derived, steps;
    int64_t ticket;
};

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
        int ev = mt_norm_counter(&w->cst[r->series], r->counter, r->bits, r->ts, &delta);
        switch (ev) {
        case MT_NORM_FIRST: c->first++; return 0;
        case MT_NORM_SAME:
        case MT_NORM_INVALID: return 0;
        case MT_NORM_WRAP: c->wraps++; break;
        case MT_NORM_RESET: c->resets++; break;
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
        const struct mt_counter_state *s = &w->cst[w->dirty[i]];
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

/* Writer thread, lock not held. Returns 0, or the backoff (µs) before the
 * next attempt; the caller updates the shared state under the lock. */
static int64_t commit_round(struct mt_writer *w)
{
    struct counts c = {0};
    int64_t seq0 = w->next_seq;
    int rc;

    w->gen++;
    w->nundo = w->ndirty = 0;
    rc = commit_pending(w, &c);
    if (rc) {
        mt_log_rollback(w->db);
        for (size_t i = w->nundo; i-- > 0;)
            w->cst[w->undo[i].series] = w->undo[i].st;
        w->next_seq = seq0;
        INC(commit_errors);
        w->attempts++;
        int64_t backoff = 100000LL << (w->attempts < 6 ? w->attempts : 6);
        atomic_store(&w->error, rc);
        uv_async_send(&w->async); /* let the loop see the error */
        mt_complain(&w->c_commit, MT_ERR, MOD, COMPLAIN_US,
                    "cannot commit %zu readings to %s: %s (%s); keeping them and retrying",
                    w->npend, mt_log_path(w->db), mt_log_errmsg(w->db),
                    rc == -ENOSPC ? "disk full" : rc == MITTARI_ESTORAGE ? "database corrupt"
                                                                         : "storage error");
        return backoff;
    }
    w->attempts = 0;
    atomic_store(&w->error, 0);
    mt_complain_clear(&w->c_commit, MOD, "commits to %s work again", mt_log_path(w->db));
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
    if (tell)
        uv_async_send(&w->async);
    return 0;
}

/* ---- housekeeping (writer thread) ---- */

static int64_t min_consumer(struct mt_writer *w)
{
    int64_t m = INT64_MAX;
    pthread_mutex_lock(&w->lock);
    for (size_t i = 0; i < w->ncons; i++)
        if (w->cons[i].seq < m)
            m = w->cons[i].seq;
    pthread_mutex_unlock(&w->lock);
    return m;
}

/* Deletes rows with seq <= upto in chunks, each in its own transaction with
 * the high-water mark, so a crash never rewinds sequence numbers. */
static int64_t delete_upto(struct mt_writer *w, int64_t upto, uint64_t stop_below)
{
    int64_t total = 0;

    for (int round = 0; round < DELETE_ROUNDS; round++) {
        int64_t n = 0;
        int rc = mt_log_begin(w->db);
        if (!rc)
            rc = mt_log_put_meta(w->db, "last_seq", w->next_seq - 1);
        if (!rc)
            rc = mt_log_delete_upto(w->db, upto, DELETE_CHUNK, &n);
        if (!rc)
            rc = mt_log_commit(w->db);
        if (rc) {
            mt_log_rollback(w->db);
            mt_complain(&w->c_cap, MT_ERR, MOD, COMPLAIN_US, "cannot delete old readings: %s",
                        mt_log_errmsg(w->db));
            break;
        }
        total += n;
        if (n < DELETE_CHUNK)
            break;
        uint64_t used;
        if (stop_below && mt_log_used_bytes(w->db, &used) == 0 && used <= stop_below)
            break;
    }
    return total;
}

static void retention(struct mt_writer *w)
{
    int64_t young;

    if (w->tconf.retention_ms <= 0)
        return;
    if (mt_log_first_young(w->db, mt_now_us() - w->tconf.retention_ms * 1000, &young))
        return;
    int64_t upto = young == INT64_MAX ? w->next_seq - 1 : young - 1;
    int64_t minc = min_consumer(w);
    if (minc < upto)
        upto = minc;
    if (upto <= 0)
        return;
    int64_t n = delete_upto(w, upto, 0);
    if (n > 0) {
        ADD(deleted_retention, n);
        mt_diag(MT_DEBUG, MOD, "retention removed %" PRId64 " delivered readings", n);
    }
}

/* block_inputs: accept readings again once the log is back under 90 % of its cap */
static void unblock(struct mt_writer *w, uint64_t used, uint64_t target)
{
    if (atomic_load(&w->full) && used <= target) {
        atomic_store(&w->full, false);
        mt_complain_clear(&w->c_full, MOD, "log below its size cap again; inputs accepted");
    }
}

static void cap(struct mt_writer *w)
{
    uint64_t used, target;

    if (!w->tconf.max_size || mt_log_used_bytes(w->db, &used))
        return;
    target = w->tconf.max_size / 10 * 9;
    if (used <= w->tconf.max_size) {
        unblock(w, used, target);
        return;
    }
    /* 1. what every consumer has already passed, whatever its age */
    int64_t minc = min_consumer(w);
    int64_t upto = minc == INT64_MAX ? 0 : minc;
    if (upto > 0) {
        int64_t n = delete_upto(w, upto, target);
        ADD(deleted_cap_delivered, n);
        if (mt_log_used_bytes(w->db, &used))
            return;
        if (used <= w->tconf.max_size) {
            /* now, not at the next housekeeping: inputs wait for nothing else */
            unblock(w, used, target);
            return;
        }
    }
    /* 2. the policy */
    if (w->tconf.policy == MT_POLICY_BLOCK_INPUTS) {
        atomic_store(&w->full, true);
        mt_complain(&w->c_full, MT_WARNING, MOD, COMPLAIN_US,
                    "log reached its size cap (%" PRIu64 " bytes in use, cap %" PRIu64
                    "); policy block_inputs: refusing new readings until outputs catch up",
                    used, w->tconf.max_size);
        return;
    }
    int64_t lo, hi, rows;
    if (mt_log_bounds(w->db, &lo, &hi, &rows) || rows <= 0)
        return;
    uint64_t per_row = used / (uint64_t)rows + 1;
    int64_t drop = (int64_t)((used - target) / per_row) + 1;
    int64_t n = delete_upto(w, lo + drop - 1, target);
    ADD(dropped_cap, n);
    mt_complain(&w->c_cap, MT_WARNING, MOD, COMPLAIN_US,
                "log reached its size cap (cap %" PRIu64 " bytes); policy drop_oldest dropped %" PRId64
                " undelivered readings (seq %" PRId64 "..%" PRId64 ")",
                w->tconf.max_size, n, lo, lo + n - 1);
}

static void housekeeping(struct mt_writer *w, bool timed)
{
    if (timed) {
        retention(w);
        w->next_housekeeping = mt_mono_us() + w->tconf.housekeeping_ms * 1000;
    }
    cap(w);
}

/* ---- the thread ---- */

/* lock held: a burst grew the intake queue; give the memory back once it is
 * drained */
static void shrink_queue(struct mt_writer *w)
{
    if (w->qlen == 0 && w->qcap > 65536) {
        free(w->q);
        w->q = NULL;
        w->qcap = 0;
    }
}

static void take(struct mt_writer *w)
{
    if (w->qlen && w->npend == 0) {
        /* the usual case: swap the buffers, no copy */
        struct mt_rec *p = w->pend;
        size_t cap = w->cappend;
        w->pend = w->q;
        w->cappend = w->qcap;
        w->npend = w->qlen;
        w->q = p;
        w->qcap = cap;
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

static void *thread_main(void *arg)
{
    struct mt_writer *w = arg;
    struct timespec ts;

    pthread_mutex_lock(&w->lock);
    for (;;) {
        int64_t now = mt_mono_us();
        atomic_store(&w->heartbeat, now);
        bool queued = w->qlen || w->nops;
        bool pending = w->npend || w->npops;

        if (w->stop_req && !queued && !pending)
            break;
        if (w->stop_req && pending && now > w->stop_deadline)
            break;
        if (!queued && !pending) {
            w->flush_req = false; /* nothing to flush */
            if (now >= w->next_housekeeping) {
                w->tconf = w->conf;
                pthread_mutex_unlock(&w->lock);
                housekeeping(w, true);
                pthread_mutex_lock(&w->lock);
                continue;
            }
            w->waiting = true;
            abstime(w->next_housekeeping, &ts);
            pthread_cond_timedwait(&w->cond, &w->lock, &ts);
            w->waiting = false;
            continue;
        }
        if (pending && now < w->retry_at) {
            /* backing off after a failed commit; new readings wait with it */
            int64_t until = w->retry_at;
            if (w->stop_req && w->stop_deadline < until)
                until = w->stop_deadline;
            w->waiting = true;
            abstime(until, &ts);
            pthread_cond_timedwait(&w->cond, &w->lock, &ts);
            w->waiting = false;
            continue;
        }
        if (!pending && !w->flush_req && !w->stop_req &&
            (int64_t)w->qlen < w->conf.batch_size) {
            /* readings wait at most batch_interval; cursor advances alone
             * wait up to a second, so an output's acknowledgements do not
             * cost an fsync'ed commit each (a crash replays them at most) */
            int64_t deadline = w->qlen ? w->q_first + w->conf.batch_interval_ms * 1000
                                       : w->ops_first + (w->conf.batch_interval_ms > 1000
                                                             ? w->conf.batch_interval_ms
                                                             : 1000) * 1000;
            if (now < deadline) {
                w->waiting = true;
                abstime(deadline, &ts);
                pthread_cond_timedwait(&w->cond, &w->lock, &ts);
                w->waiting = false;
                continue;
            }
        }
        if (!pending || (int64_t)w->npend < w->conf.queue_max)
            take(w);
        else
            w->flush_req = false;
        w->tconf = w->conf;
        pthread_mutex_unlock(&w->lock);
        int64_t backoff = commit_round(w);
        if (!backoff)
            housekeeping(w, mt_mono_us() >= w->next_housekeeping);
        pthread_mutex_lock(&w->lock);
        if (backoff) {
            w->retry_at = mt_mono_us() + backoff;
        } else {
            w->npend = 0;
            for (size_t i = 0; i < w->npops; i++)
                w->nderived -= w->pops[i].nrecs;
            clear_ops(w->pops, &w->npops);
        }
    }
    w->waiting = true;
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

static void async_cb(uv_async_t *h)
{
    struct mt_writer *w = h->data;
    if (w->cb)
        w->cb(w->cb_arg, atomic_load(&w->committed));
}

static void free_writer(uv_handle_t *h);

static int load_counter(void *arg, uint32_t series, uint64_t last, int64_t ts)
{
    struct mt_writer *w = arg;
    if (ensure_states(w, series))
        return -ENOMEM;
    w->cst[series].last = last;
    w->cst[series].ts = ts;
    w->cst[series].have = true;
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

int mt_writer_start(struct mt_writer **out, uv_loop_t *loop, struct mt_logdb *db,
                    struct mt_series_reg *reg, const struct mt_writer_conf *conf,
                    mt_committed_cb cb, void *arg)
{
    struct mt_writer *w = calloc(1, sizeof(*w));
    pthread_condattr_t ca;
    int64_t last = 0;
    int rc;

    *out = NULL;
    if (!w) {
        mt_log_close(db);
        return -ENOMEM;
    }
    w->db = db;
    w->reg = reg;
    w->conf = w->tconf = *conf;
    w->cb = cb;
    w->cb_arg = arg;
    pthread_mutex_init(&w->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cond, &ca);
    pthread_condattr_destroy(&ca);

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
        mt_diag(MT_ERR, MOD, "cannot load the log state from %s: %s", mt_log_path(db),
                mt_log_errmsg(db));
        goto fail;
    }
    w->persisted = mt_series_count(reg);
    w->next_seq = last + 1;
    atomic_store(&w->committed, last);
    w->next_housekeeping = mt_mono_us() + (conf->housekeeping_ms > 0 ? conf->housekeeping_ms : 60000) * 1000;
    atomic_store(&w->heartbeat, mt_mono_us());
    rc = uv_async_init(loop, &w->async, async_cb);
    if (rc)
        goto fail;
    w->async.data = w;
    rc = pthread_create(&w->thread, NULL, thread_main, w);
    if (rc) {
        /* the async handle is closed asynchronously: free the writer in its
         * close callback, not here */
        mt_diag(MT_ERR, MOD, "cannot start the writer thread: %s", strerror(rc));
        mt_log_close(w->db);
        w->db = NULL;
        uv_close((uv_handle_t *)&w->async, free_writer);
        return -rc;
    }
    w->thread_started = true;
    *out = w;
    return 0;
fail:
    mt_log_close(db);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
    for (size_t i = 0; i < w->ncons; i++)
        free(w->cons[i].name);
    free(w->cons);
    free(w->cst);
    free(w->mark);
    free(w);
    return rc;
}

static void free_writer(uv_handle_t *h)
{
    struct mt_writer *w = h->data;

    clear_ops(w->ops, &w->nops);
    clear_ops(w->pops, &w->npops);
    for (size_t i = 0; i < w->ncons; i++)
        free(w->cons[i].name);
    free(w->cons);
    free(w->ops);
    free(w->pops);
    free(w->q);
    free(w->pend);
    free(w->cst);
    free(w->mark);
    free(w->undo);
    free(w->dirty);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
    free(w);
}

void mt_writer_stop(struct mt_writer *w, int64_t deadline_ms)
{
    pthread_mutex_lock(&w->lock);
    w->stop_req = true;
    w->stop_deadline = mt_mono_us() + deadline_ms * 1000;
    w->retry_at = 0;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    size_t lost = w->qlen + w->npend;
    if (lost)
        mt_diag(MT_ERR, MOD, "%zu readings could not be stored before exit: %s", lost,
                mt_log_errmsg(w->db));
    mt_log_close(w->db);
    w->db = NULL;
    uv_close((uv_handle_t *)&w->async, free_writer);
}
