#include "rules.h"

#include <errno.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mittari/mittari.h>

#include "diag.h"
#include "jsonin.h"
#include "log.h"
#include "tz.h"

#define BATCH 512               /* readings read from the log at a time */
#define STEP_RECS 512           /* derived readings that make a step at once */
#define STEP_US 1000000LL       /* otherwise a step at most every second */
#define IDLE_WAIT_US 60000000LL /* longest sleep with nothing due */
#define FUTURE_US (10 * 60 * 1000000LL) /* readings this far ahead of the clock are refused */
#define STOP_STEP_US 5000000LL  /* how long a stopping rule waits for the writer to take its step */
#define COMPLAIN_US (60 * 1000000LL)

/* What one instance hands the next (a reload): the last step the writer
 * took, so the next one continues exactly there, committed or not yet. */
struct handover {
    int64_t cursor;
    bool has_state;
    int64_t version;
    void *state;
    size_t len;
};

struct slot;

struct inst {
    struct mt_rules *rs;
    struct slot *slot;
    struct mt_rule_spec *spec;
    char *site, *tz;
    char module[96];
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct handover ho; /* in: where to start (if has_ho); out: the last step taken */
    bool has_ho;

    /* under lock */
    bool stop_req, wake, flush;
    struct mt_rule_stats snap;
    int64_t snap_cursor;
    uint64_t snap_future;
    int64_t snap_clock; /* the clock of the last tick */
    bool paused, failed, idle;
    char fail_msg[300];

    /* the thread's own */
    struct mt_logdb *db;
    struct mt_rule *rule;
    struct mt_tz *zone;
    int64_t cursor;
    int64_t last_step_us;
    uint64_t stepped_readings, stepped_emitted; /* counters at the last full step */
    uint64_t future, consecutive;
    bool pausing; /* the thread's own view of paused */
    uint8_t *sees; /* per series id: 0 unknown, 1 yes, 2 no */
    size_t nsees;
    struct mt_complain c_err, c_future;
    struct inst *next_done;
};

struct slot {
    char *name;
    bool configured;
    struct inst *run;      /* running, not asked to stop */
    struct inst *stopping; /* asked to stop, thread not yet ended */
    struct mt_rule_spec *want; /* to start once stopping has ended */
    struct handover ho;        /* what the last ended instance handed over */
    bool has_ho;
    char fail_msg[300];
    struct mt_rule_stats last; /* of the instance that ended last */
    int64_t last_cursor;
    bool has_last;
};

struct mt_rules {
    struct mt_rules_env env;
    uv_async_t async;
    pthread_mutex_t lock; /* the done list */
    struct inst *done;
    struct slot **slots;
    size_t nslots;
    char *site, *tz;
    int nthreads;
    bool stopping;
    void (*stop_cb)(void *arg);
    void *stop_arg;
    const char **names;
};

#define MOD "rules"

static int64_t clock_now(const struct mt_rules *rs)
{
    return rs->env.clock ? rs->env.clock(rs->env.clock_arg) : mt_now_us();
}

static void ho_free(struct handover *h)
{
    free(h->state);
    memset(h, 0, sizeof(*h));
}

/* ---- specs ---- */

void mt_rule_spec_free(struct mt_rule_spec *s)
{
    if (!s)
        return;
    mt_arena_free(&s->arena);
    free(s);
}

struct tagfind {
    const char *key, *glob;
    bool match;
};

static int where_member(void *arg, const char *key, const struct mt_json_val *v)
{
    struct tagfind *t = arg;
    if (strcmp(key, t->key) == 0 && v->type == MT_JSON_STR)
        t->match = fnmatch(t->glob, v->s, 0) == 0;
    return 0;
}

bool mt_rule_spec_sees(const struct mt_rule_spec *s, const struct mt_series_info *si)
{
    if (si->origin && si->origin[0]) {
        if (strcmp(si->origin, s->name) == 0)
            return false; /* never its own */
        bool from = false;
        for (char **f = s->from; f && *f && !from; f++)
            from = strcmp(*f, si->origin) == 0;
        if (!from)
            return false;
    }
    if (s->series && s->series[0]) {
        char name[200];
        bool any = false;
        snprintf(name, sizeof(name), "%s/%s/%s", si->site, si->device, si->metric);
        for (char **g = s->series; *g && !any; g++)
            any = fnmatch(*g, name, 0) == 0;
        if (!any)
            return false;
    }
    for (size_t i = 0; i < s->nwhere; i++) {
        struct tagfind t = {s->where_keys[i], s->where_globs[i], false};
        char err[80];
        if (si->tags && si->tags[0])
            mt_json_object(si->tags, strlen(si->tags), where_member, &t, err, sizeof(err));
        if (!t.match)
            return false;
    }
    return true;
}

static bool sees(struct inst *in, const struct mt_series_info *s)
{
    if (s->id >= in->nsees) {
        size_t n = in->nsees ? in->nsees : 256;
        while (n <= s->id)
            n *= 2;
        uint8_t *v = realloc(in->sees, n);
        if (!v)
            return mt_rule_spec_sees(in->spec, s);
        memset(v + in->nsees, 0, n - in->nsees);
        in->sees = v;
        in->nsees = n;
    }
    if (!in->sees[s->id])
        in->sees[s->id] = mt_rule_spec_sees(in->spec, s) ? 1 : 2;
    return in->sees[s->id] == 1;
}

/* ---- the thread ---- */

static bool stop_asked(struct inst *in)
{
    pthread_mutex_lock(&in->lock);
    bool s = in->stop_req;
    pthread_mutex_unlock(&in->lock);
    return s;
}

static void publish(struct inst *in, bool idle, int64_t clock)
{
    struct mt_rule_stats st = {0};
    if (in->rule)
        mt_rule_get_stats(in->rule, &st);
    pthread_mutex_lock(&in->lock);
    in->snap = st;
    in->snap_cursor = in->cursor;
    in->snap_future = in->future;
    in->idle = idle;
    in->paused = in->pausing;
    if (clock)
        in->snap_clock = clock;
    pthread_mutex_unlock(&in->lock);
}

/* Waits until woken, stopped, or deadline (µs of the real clock). */
static void nap(struct inst *in, int64_t deadline)
{
    struct timespec ts;
    pthread_mutex_lock(&in->lock);
    if (!in->stop_req && !in->wake) {
        int64_t d = deadline - mt_now_us();
        if (d > IDLE_WAIT_US)
            d = IDLE_WAIT_US;
        if (d > 0) {
            clock_gettime(CLOCK_REALTIME, &ts);
            int64_t ns = ts.tv_nsec + (d % 1000000) * 1000;
            ts.tv_sec += (time_t)(d / 1000000 + ns / 1000000000);
            ts.tv_nsec = (long)(ns % 1000000000);
            pthread_cond_timedwait(&in->cond, &in->lock, &ts);
        }
    }
    in->wake = false;
    pthread_mutex_unlock(&in->lock);
}

/* Hands the writer a step: the derived readings made since the last one,
 * the rule's state when it changed (else the stored one stays) and the
 * cursor. Returns 0 (also when there was nothing to hand over or it is not
 * time yet), -EAGAIN (the writer is full: try again), or -EINVAL (the
 * state cannot be saved; logged). */
static int step(struct inst *in, bool force)
{
    struct mt_rule_stats st;
    size_t nrecs;
    const struct mt_rec *recs = mt_rule_out(in->rule, &nrecs);
    char err[400];

    mt_rule_get_stats(in->rule, &st);
    bool material = nrecs || st.readings != in->stepped_readings;
    bool moved = in->cursor != in->ho.cursor;
    if (!material && !moved)
        return 0;
    int64_t now = mt_now_us();
    if (!force && nrecs < STEP_RECS && now - in->last_step_us < STEP_US)
        return 0;
    struct mt_buf blob = {0};
    if (material) {
        int rc = mt_rule_save(in->rule, &blob, err, sizeof(err));
        if (rc) {
            mt_buf_free(&blob);
            mt_diag(MT_ERR, in->module, "cannot save the rule's state: %s; paused until the "
                    "configuration is reloaded", rc == -ENOMEM ? "out of memory" : err);
            return -EINVAL;
        }
    }
    struct mt_consumer_step s = {.name = in->spec->name,
                                 .cursor = in->cursor,
                                 .keep_state = !material,
                                 .state_version = mt_rule_state_version(in->rule),
                                 .state = blob.p,
                                 .state_len = blob.len,
                                 .recs = recs,
                                 .nrecs = nrecs};
    int rc = mt_writer_step(in->rs->env.writer, &s, NULL);
    if (rc) {
        mt_buf_free(&blob);
        return rc == -EAGAIN ? -EAGAIN : rc;
    }
    /* what the next instance continues from, should this one stop now */
    in->ho.cursor = in->cursor;
    if (material) {
        free(in->ho.state);
        in->ho.state = blob.p;
        in->ho.len = blob.len;
        in->ho.has_state = true;
        in->ho.version = s.state_version;
    }
    in->stepped_readings = st.readings;
    in->stepped_emitted = st.emitted;
    in->last_step_us = now;
    mt_rule_out_clear(in->rule);
    if (force) /* asked for now: the writer does not wait its second either */
        mt_writer_flush(in->rs->env.writer);
    return 0;
}

/* A step, retrying while the writer is full; gives up when stopped past
 * the deadline (the last step taken stays valid: nothing is lost, the
 * rest is done again at the next start). */
static int step_retry(struct inst *in, bool force, int64_t deadline)
{
    for (;;) {
        int rc = step(in, force);
        if (rc != -EAGAIN)
            return rc;
        if (deadline && mt_now_us() > deadline)
            return rc;
        if (!deadline && stop_asked(in))
            return rc;
        struct timespec ts = {0, 20 * 1000000};
        nanosleep(&ts, NULL);
    }
}

/* The thread stops reading; the loop sees it paused at the next publish,
 * together with the counters and cursor it paused at. */
static void pause_rule(struct inst *in, const char *why)
{
    in->pausing = true;
    pthread_mutex_lock(&in->lock);
    snprintf(in->fail_msg, sizeof(in->fail_msg), "%s", why);
    pthread_mutex_unlock(&in->lock);
}

/* A step (step_retry) that cannot go on: a state the agent cannot save
 * pauses the rule, and so does a writer that takes no more steps (the log
 * is damaged, or the agent stops): the rule would only pile up figures.
 * Returns true when the rule paused. */
static bool step_or_pause(struct inst *in, bool force)
{
    int rc = step_retry(in, force, 0);
    if (rc == -EINVAL)
        pause_rule(in, "its state cannot be saved");
    else if (rc == MITTARI_ESTORAGE || rc == MITTARI_ESTOPPED)
        pause_rule(in, rc == MITTARI_ESTORAGE ? "the log is damaged" : "the agent is stopping");
    return in->pausing;
}

/* A reading connection that met a damaged log (SQLITE_CORRUPT/NOTADB) tells
 * the writer, which stops writing into it; the agent stops with exit 4. */
static void report_damage(struct inst *in, int rc, const char *what)
{
    char msg[600];
    if (rc != MITTARI_ESTORAGE)
        return;
    snprintf(msg, sizeof(msg), "%s: %s", in->module, what);
    mt_writer_fault(in->rs->env.writer, rc, msg);
    pause_rule(in, "the log is damaged");
}

static void feed(struct inst *in, const struct mt_row *row, const struct mt_series_info *s,
                 int64_t clock)
{
    char err[600];
    if (row->ts > clock + FUTURE_US) {
        /* a device clock far ahead would close every window at once */
        in->future++;
        mt_complain(&in->c_future, MT_WARNING, in->module, COMPLAIN_US,
                    "a reading of %s/%s/%s is more than 10 minutes ahead of the clock; not "
                    "counted (check the device's clock)",
                    s->site, s->device, s->metric);
        return;
    }
    int rc;
    /* a long quiet stretch closes in pieces: each handed to the writer with
     * the cursor before this reading, so a step stays small and whole */
    while ((rc = mt_rule_feed(in->rule, row, s, err, sizeof(err))) == 1)
        if (step_or_pause(in, false))
            return;
    if (!rc) {
        in->consecutive = 0;
        return;
    }
    in->consecutive++;
    mt_complain(&in->c_err, MT_WARNING, in->module, COMPLAIN_US, "%s", err);
    if (in->spec->pause_after > 0 && in->consecutive >= (uint64_t)in->spec->pause_after) {
        char why[400];
        snprintf(why, sizeof(why), "%" PRIu64 " calls in a row failed", in->consecutive);
        mt_diag(MT_ERR, in->module, "%s (the last: %s); paused until the configuration is "
                "reloaded or the agent restarts", why, err);
        pause_rule(in, why);
    }
}

/* Reads and feeds what the log committed after the cursor. Returns true
 * when it got to the end. */
static bool read_log(struct inst *in, struct mt_row *rows, int64_t *committed)
{
    struct mt_series_reg *reg = in->rs->env.reg;
    *committed = mt_writer_committed(in->rs->env.writer);
    while (in->cursor < *committed) {
        size_t n = 0;
        int rc = mt_log_read(in->db, in->cursor, *committed, BATCH, rows, &n);
        if (rc) {
            char what[400];
            snprintf(what, sizeof(what), "cannot read the log: %s", mt_log_errmsg(in->db));
            mt_complain(&in->c_err, MT_ERR, in->module, COMPLAIN_US, "%s", what);
            report_damage(in, rc, what);
            return false;
        }
        int64_t clock = clock_now(in->rs);
        for (size_t i = 0; i < n && !in->pausing; i++) {
            const struct mt_series_info *s = mt_series_get(reg, rows[i].series);
            if (s && sees(in, s))
                feed(in, &rows[i], s, clock);
            in->cursor = rows[i].seq;
        }
        if (n == 0)
            in->cursor = *committed; /* rows gone (the size cap dropped them) */
        /* a rule that just paused hands over what it did up to there */
        if (!in->pausing && step_or_pause(in, false))
            return false;
        if (in->pausing) /* it just paused: hand over what it did up to there */
            step_retry(in, true, 0);
        publish(in, false, 0);
        if (in->pausing || stop_asked(in))
            return false;
    }
    return true;
}

static int open_rule(struct inst *in, char *err, size_t errlen)
{
    struct mt_rule_conf c = {.name = in->spec->name,
                             .script = in->spec->script,
                             .text = in->spec->text,
                             .textlen = in->spec->textlen,
                             .site = in->site,
                             .reg = in->rs->env.reg,
                             .lua_mem = in->spec->lua_mem,
                             .window_mem = in->spec->window_mem,
                             .instructions = in->spec->instructions,
                             .time_ms = in->spec->time_ms,
                             .tags = in->spec->tags,
                             .ntags = in->spec->ntags};
    int rc = mt_tz_load(&in->zone, in->tz, err, errlen);
    if (rc)
        return rc;
    c.tz = in->zone;
    return mt_rule_open(&in->rule, &c, err, errlen);
}

/* Where to start: the previous instance's hand-over, else the log. */
static int load_start(struct inst *in, char *err, size_t errlen)
{
    int rc = mt_log_open(&in->db, in->rs->env.db_path, MT_LOG_READER, err, errlen);
    if (rc)
        return rc;
    if (in->has_ho)
        return 0;
    rc = mt_log_get_cursor(in->db, in->spec->name, &in->ho.cursor);
    if (rc && rc != -ENOENT) {
        snprintf(err, errlen, "cannot read its cursor: %s", mt_log_errmsg(in->db));
        return rc;
    }
    rc = mt_log_get_state(in->db, in->spec->name, &in->ho.version, &in->ho.state, &in->ho.len);
    if (rc && rc != -ENOENT) {
        snprintf(err, errlen, "cannot read its state: %s", mt_log_errmsg(in->db));
        return rc;
    }
    in->ho.has_state = rc == 0;
    return 0;
}

static void restore(struct inst *in)
{
    char note[300];
    int64_t v = mt_rule_state_version(in->rule);
    if (!in->ho.has_state)
        return;
    if (in->ho.version != v) {
        mt_diag(MT_NOTICE, in->module, "the script declares state_version %" PRId64 ", the saved "
                "state is version %" PRId64 ": starting afresh from seq %" PRId64
                " (open windows start empty)", v, in->ho.version, in->cursor);
        return;
    }
    if (!in->ho.state) /* an empty state */
        return;
    int rc = mt_rule_restore(in->rule, in->ho.state, in->ho.len, note, sizeof(note));
    if (rc)
        mt_diag(MT_WARNING, in->module, "the saved state cannot be read (%s): starting afresh",
                rc == -ENOMEM ? "out of memory" : "damaged");
    else if (note[0])
        mt_diag(MT_NOTICE, in->module, "windows no longer declared as before start afresh: %s",
                note);
}

static void *inst_main(void *arg)
{
    struct inst *in = arg;
    struct mt_row *rows = calloc(BATCH, sizeof(*rows));
    char err[600] = "";
    int rc = rows ? load_start(in, err, sizeof(err)) : -ENOMEM;

    if (!rc)
        rc = open_rule(in, err, sizeof(err));
    if (rc) {
        if (rc == -ENOMEM && !err[0])
            snprintf(err, sizeof(err), "out of memory");
        mt_diag(MT_ERR, in->module, "%s; it stays off until the next reload", err);
        report_damage(in, rc, err);
        pthread_mutex_lock(&in->lock);
        in->failed = true;
        snprintf(in->fail_msg, sizeof(in->fail_msg), "%s", err);
        pthread_mutex_unlock(&in->lock);
        goto out;
    }
    in->cursor = in->ho.cursor;
    restore(in);
    in->last_step_us = mt_now_us();
    mt_diag(MT_INFO, in->module, "running %s from seq %" PRId64, in->spec->script, in->cursor);
    for (;;) {
        int64_t committed = 0;
        if (stop_asked(in))
            break;
        bool caught_up = !in->pausing && read_log(in, rows, &committed);
        int64_t clock = clock_now(in->rs);
        if (caught_up) {
            /* everything committed is read: the clock moves rule time */
            while (!in->pausing && mt_rule_tick(in->rule, clock - in->spec->close_delay_us) == 1)
                step_or_pause(in, false);
        }
        pthread_mutex_lock(&in->lock);
        bool flush = in->flush;
        in->flush = false;
        pthread_mutex_unlock(&in->lock);
        if (!in->pausing)
            step_or_pause(in, flush);
        size_t nrecs;
        mt_rule_out(in->rule, &nrecs);
        bool pending = nrecs || in->cursor != in->ho.cursor;
        publish(in, caught_up && !pending, caught_up ? clock : 0);
        if (stop_asked(in))
            break;
        /* sleep until a commit wakes us, a window is due, or a step is */
        int64_t due = mt_rule_next_due(in->rule);
        int64_t wake = INT64_MAX;
        if (due != INT64_MAX && caught_up)
            wake = mt_now_us() + (due + in->spec->close_delay_us - clock);
        if (pending)
            wake = wake < in->last_step_us + STEP_US ? wake : in->last_step_us + STEP_US;
        int64_t floor = mt_now_us() + 1000; /* never a busy loop */
        nap(in, wake == INT64_MAX ? mt_now_us() + IDLE_WAIT_US : wake < floor ? floor : wake);
    }
    step_retry(in, true, mt_now_us() + STOP_STEP_US);
    publish(in, false, 0);
out:
    free(rows);
    free(in->sees);
    mt_rule_free(in->rule);
    in->rule = NULL;
    mt_tz_free(in->zone);
    mt_log_close(in->db);
    pthread_mutex_lock(&in->rs->lock);
    in->next_done = in->rs->done;
    in->rs->done = in;
    pthread_mutex_unlock(&in->rs->lock);
    uv_async_send(&in->rs->async);
    return NULL;
}

/* ---- the loop's side ---- */

static struct inst *inst_start(struct mt_rules *rs, struct slot *sl, struct mt_rule_spec *spec)
{
    struct inst *in = calloc(1, sizeof(*in));
    if (!in) {
        mt_diag(MT_ERR, MOD, "rule %s: out of memory", spec->name);
        mt_rule_spec_free(spec);
        return NULL;
    }
    in->rs = rs;
    in->slot = sl;
    in->spec = spec;
    in->site = strdup(rs->site ? rs->site : "site");
    in->tz = strdup(rs->tz ? rs->tz : "Europe/Helsinki");
    snprintf(in->module, sizeof(in->module), "rule %s", spec->name);
    if (sl->has_ho) { /* the previous instance's last step: continue exactly there */
        in->ho = sl->ho;
        in->has_ho = true;
        memset(&sl->ho, 0, sizeof(sl->ho));
        sl->has_ho = false;
    }
    pthread_mutex_init(&in->lock, NULL);
    pthread_cond_init(&in->cond, NULL);
    sl->fail_msg[0] = 0;
    if (!in->site || !in->tz || pthread_create(&in->thread, NULL, inst_main, in)) {
        mt_diag(MT_ERR, MOD, "rule %s: cannot start its thread", spec->name);
        sl->ho = in->ho; /* keep what it was given */
        sl->has_ho = in->has_ho;
        pthread_mutex_destroy(&in->lock);
        pthread_cond_destroy(&in->cond);
        free(in->site);
        free(in->tz);
        mt_rule_spec_free(spec);
        free(in);
        return NULL;
    }
    rs->nthreads++;
    return in;
}

static void inst_ask_stop(struct inst *in)
{
    pthread_mutex_lock(&in->lock);
    in->stop_req = true;
    pthread_cond_signal(&in->cond);
    pthread_mutex_unlock(&in->lock);
}

static void inst_free(struct inst *in)
{
    ho_free(&in->ho);
    pthread_mutex_destroy(&in->lock);
    pthread_cond_destroy(&in->cond);
    mt_rule_spec_free(in->spec);
    free(in->site);
    free(in->tz);
    free(in);
}

static void check_stopped(struct mt_rules *rs)
{
    if (rs->stopping && rs->nthreads == 0 && rs->stop_cb) {
        void (*cb)(void *) = rs->stop_cb;
        rs->stop_cb = NULL;
        cb(rs->stop_arg);
    }
}

/* A thread ended: keep what it handed over; start what waited for it. */
static void inst_ended(struct mt_rules *rs, struct inst *in)
{
    struct slot *sl = in->slot;
    pthread_join(in->thread, NULL);
    rs->nthreads--;
    if (sl->run == in)
        sl->run = NULL; /* it failed on its own */
    if (sl->stopping == in)
        sl->stopping = NULL;
    if (in->failed)
        snprintf(sl->fail_msg, sizeof(sl->fail_msg), "%s", in->fail_msg);
    sl->last = in->snap;
    sl->last_cursor = in->snap_cursor;
    sl->has_last = !in->failed;
    ho_free(&sl->ho);
    sl->ho = in->ho;
    sl->has_ho = true;
    memset(&in->ho, 0, sizeof(in->ho));
    inst_free(in);
    if (sl->want && !sl->run && !sl->stopping && !rs->stopping) {
        struct mt_rule_spec *w = sl->want;
        sl->want = NULL;
        sl->run = inst_start(rs, sl, w);
    }
}

static void async_cb(uv_async_t *h)
{
    struct mt_rules *rs = h->data;
    pthread_mutex_lock(&rs->lock);
    struct inst *list = rs->done;
    rs->done = NULL;
    pthread_mutex_unlock(&rs->lock);
    while (list) {
        struct inst *next = list->next_done;
        inst_ended(rs, list);
        list = next;
    }
    check_stopped(rs);
}

int mt_rules_create(struct mt_rules **out, const struct mt_rules_env *env)
{
    struct mt_rules *rs = calloc(1, sizeof(*rs));
    *out = NULL;
    if (!rs)
        return -ENOMEM;
    rs->env = *env;
    pthread_mutex_init(&rs->lock, NULL);
    int rc = uv_async_init(env->loop, &rs->async, async_cb);
    if (rc) {
        pthread_mutex_destroy(&rs->lock);
        free(rs);
        return rc;
    }
    rs->async.data = rs;
    *out = rs;
    return 0;
}

static struct slot *slot_get(struct mt_rules *rs, const char *name, bool create)
{
    for (size_t i = 0; i < rs->nslots; i++)
        if (strcmp(rs->slots[i]->name, name) == 0)
            return rs->slots[i];
    if (!create)
        return NULL;
    struct slot **v = realloc(rs->slots, (rs->nslots + 1) * sizeof(*v));
    struct slot *sl = calloc(1, sizeof(*sl));
    if (v)
        rs->slots = v;
    if (!v || !sl || !(sl->name = strdup(name))) {
        free(sl);
        return NULL;
    }
    rs->slots[rs->nslots++] = sl;
    return sl;
}

static void slot_stop(struct slot *sl)
{
    if (!sl->run)
        return;
    inst_ask_stop(sl->run);
    sl->stopping = sl->run;
    sl->run = NULL;
}

void mt_rules_apply(struct mt_rules *rs, struct mt_rule_spec **specs, size_t n, const char *site,
                    const char *tz)
{
    char *s = strdup(site ? site : "site"), *z = strdup(tz ? tz : "Europe/Helsinki");
    /* figures of every rule depend on these: all restart (state kept) */
    bool zone_changed = rs->tz && z && s && (strcmp(rs->tz, z) != 0 || strcmp(rs->site, s) != 0);
    if (s && z) {
        free(rs->site);
        free(rs->tz);
        rs->site = s;
        rs->tz = z;
    } else {
        free(s);
        free(z);
    }
    for (size_t i = 0; i < rs->nslots; i++) {
        struct slot *sl = rs->slots[i];
        bool keep = false;
        for (size_t k = 0; k < n && !keep; k++)
            keep = strcmp(specs[k]->name, sl->name) == 0;
        if (keep)
            continue;
        sl->configured = false;
        mt_rule_spec_free(sl->want);
        sl->want = NULL;
        slot_stop(sl);
    }
    for (size_t k = 0; k < n; k++) {
        struct mt_rule_spec *spec = specs[k];
        struct slot *sl = slot_get(rs, spec->name, true);
        if (!sl) {
            mt_diag(MT_ERR, MOD, "rule %s: out of memory", spec->name);
            mt_rule_spec_free(spec);
            continue;
        }
        sl->configured = true;
        if (sl->run && !zone_changed && strcmp(sl->run->spec->canonical, spec->canonical) == 0) {
            mt_rule_spec_free(spec); /* unchanged: keeps running untouched */
            continue;
        }
        mt_rule_spec_free(sl->want);
        sl->want = NULL;
        if (sl->run)
            mt_diag(MT_INFO, MOD, "rule %s changed: restarting it with its state", spec->name);
        slot_stop(sl);
        if (!spec->enabled) {
            mt_rule_spec_free(spec);
            continue;
        }
        if (sl->stopping || rs->stopping)
            sl->want = spec; /* once the old thread handed over */
        else
            sl->run = inst_start(rs, sl, spec);
    }
    free(rs->names);
    rs->names = NULL;
}

void mt_rules_notify(struct mt_rules *rs, int64_t seq)
{
    (void)seq;
    for (size_t i = 0; i < rs->nslots; i++) {
        struct inst *in = rs->slots[i]->run;
        if (!in)
            continue;
        pthread_mutex_lock(&in->lock);
        in->wake = true;
        pthread_cond_signal(&in->cond);
        pthread_mutex_unlock(&in->lock);
    }
}

void mt_rules_flush(struct mt_rules *rs)
{
    for (size_t i = 0; i < rs->nslots; i++) {
        struct inst *in = rs->slots[i]->run;
        if (!in)
            continue;
        pthread_mutex_lock(&in->lock);
        in->wake = in->flush = true;
        pthread_cond_signal(&in->cond);
        pthread_mutex_unlock(&in->lock);
    }
}

void mt_rules_stop(struct mt_rules *rs, void (*done)(void *arg), void *arg)
{
    rs->stopping = true;
    rs->stop_cb = done;
    rs->stop_arg = arg;
    for (size_t i = 0; i < rs->nslots; i++) {
        struct slot *sl = rs->slots[i];
        mt_rule_spec_free(sl->want);
        sl->want = NULL;
        slot_stop(sl);
    }
    check_stopped(rs);
}

static void close_cb(uv_handle_t *h)
{
    struct mt_rules *rs = h->data;
    pthread_mutex_destroy(&rs->lock);
    free(rs);
}

void mt_rules_free(struct mt_rules *rs)
{
    if (!rs)
        return;
    /* a thread still running (a stop that timed out) is joined here */
    for (size_t i = 0; i < rs->nslots; i++) {
        struct slot *sl = rs->slots[i];
        struct inst *v[2] = {sl->run, sl->stopping};
        for (int k = 0; k < 2; k++)
            if (v[k])
                inst_ask_stop(v[k]);
    }
    while (rs->nthreads > 0) {
        pthread_mutex_lock(&rs->lock);
        struct inst *list = rs->done;
        rs->done = NULL;
        pthread_mutex_unlock(&rs->lock);
        if (!list) {
            struct timespec ts = {0, 5 * 1000000};
            nanosleep(&ts, NULL);
            continue;
        }
        rs->stopping = true;
        while (list) {
            struct inst *next = list->next_done;
            inst_ended(rs, list);
            list = next;
        }
    }
    for (size_t i = 0; i < rs->nslots; i++) {
        struct slot *sl = rs->slots[i];
        mt_rule_spec_free(sl->want);
        ho_free(&sl->ho);
        free(sl->name);
        free(sl);
    }
    free(rs->slots);
    free(rs->names);
    free(rs->site);
    free(rs->tz);
    uv_close((uv_handle_t *)&rs->async, close_cb);
}

bool mt_rules_active(struct mt_rules *rs)
{
    for (size_t i = 0; rs && !rs->stopping && i < rs->nslots; i++)
        if (rs->slots[i]->run || rs->slots[i]->want)
            return true;
    return false;
}

size_t mt_rules_names(struct mt_rules *rs, const char **names, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < rs->nslots && n < max; i++)
        if (rs->slots[i]->configured)
            names[n++] = rs->slots[i]->name;
    return n;
}

void mt_rules_summary(struct mt_rules *rs, struct mt_buf *b)
{
    for (size_t i = 0; i < rs->nslots; i++) {
        struct slot *sl = rs->slots[i];
        struct inst *in = sl->run;
        if (!sl->configured && !sl->has_last)
            continue;
        struct mt_rule_stats st = sl->last;
        int64_t cursor = sl->last_cursor;
        uint64_t future = 0;
        bool paused = false;
        if (!in && (sl->fail_msg[0] || !sl->has_last)) {
            mt_buf_printf(b, "; rule %s: %s", sl->name,
                          sl->fail_msg[0] ? "off (failed to start)" : "off");
            continue;
        }
        if (in) {
            pthread_mutex_lock(&in->lock);
            st = in->snap;
            cursor = in->snap_cursor;
            future = in->snap_future;
            paused = in->paused;
            pthread_mutex_unlock(&in->lock);
        }
        mt_buf_printf(b,
                      "; rule %s: read %" PRIu64 ", emitted %" PRIu64 " (%" PRIu64
                      " suppressed, %" PRIu64 " corrections), late %" PRIu64 ", errors %" PRIu64,
                      sl->name, st.readings, st.emitted, st.suppressed, st.corrections, st.late,
                      st.errors);
        if (st.err_limit || st.err_memory)
            mt_buf_printf(b, " (limits %" PRIu64 ", memory %" PRIu64 ")", st.err_limit,
                          st.err_memory);
        if (future)
            mt_buf_printf(b, ", ahead of the clock %" PRIu64, future);
        mt_buf_printf(b, ", cursor %" PRId64 "%s", cursor, paused ? ", PAUSED" : "");
    }
}

int mt_rules_stats(struct mt_rules *rs, const char *name, struct mt_rule_stats *st,
                   int64_t *cursor, bool *paused)
{
    struct slot *sl = slot_get(rs, name, false);
    struct inst *in = sl ? sl->run : NULL;
    if (!in)
        return -ENOENT;
    pthread_mutex_lock(&in->lock);
    *st = in->snap;
    *cursor = in->snap_cursor;
    *paused = in->paused;
    pthread_mutex_unlock(&in->lock);
    return 0;
}

bool mt_rules_idle(struct mt_rules *rs)
{
    int64_t committed = mt_writer_committed(rs->env.writer);
    for (size_t i = 0; i < rs->nslots; i++) {
        struct slot *sl = rs->slots[i];
        if (sl->stopping || sl->want)
            return false;
        struct inst *in = sl->run;
        if (!in)
            continue;
        pthread_mutex_lock(&in->lock);
        /* and it has seen the clock: a test moves it by hours */
        bool idle = in->paused || in->failed ||
                    (in->idle && in->snap_cursor >= committed &&
                     in->snap_clock >= clock_now(rs) - STEP_US);
        pthread_mutex_unlock(&in->lock);
        if (!idle)
            return false;
    }
    return true;
}
