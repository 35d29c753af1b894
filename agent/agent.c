#include "agent.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "crash.h"
#include "diag.h"
#include "input.h"
#include "log.h"
#include "logcheck.h"
#include "plugin.h"
#include "pseudo.h"
#include "rules.h"
#include "sdnotify.h"
#include "series.h"
#include "status.h"
#include "stopwatch.h"
#include "util.h"

#define MOD "agent"

/* The agent's phases and the reload's states: see agent.h. */
enum phase {
    PH_INIT,
    PH_RUNNING,
    PH_STOP_INPUTS,
    PH_FLUSH,
    PH_DRAIN,
    PH_CLOSE_OUTPUTS,
    PH_END_WRITER,
    PH_WAIT,
    PH_DONE
};
static const char *const phase_names[] = {"init",  "running",       "stopping inputs",
                                          "flush", "draining",      "closing outputs",
                                          "ending the writer", "waiting", "done"};

enum reload { RL_NONE, RL_LOADING, RL_SWAPPING };

static const char *const kind_names[] = {"input", "output", "check"};

/* One instance alive: listed from creation until the callback that frees
 * it (agent.h, INSTANCES). */
struct inst {
    struct inst *prev, *next;
    struct mt_agent *a;
    enum mt_inst_kind kind;
    enum mt_inst_state state;
    char name[80];
    struct mittari_ctx *in;       /* input */
    struct mt_output *out;        /* output */
    struct mt_logcheck *check;    /* check */
    struct mt_inst_conf *ic;      /* output: its settings (an input's ctx owns its own) */
    struct mt_inst_conf *next_ic; /* RETIRING: the replacement's settings */
    int64_t since_us;             /* monotonic: entered its state */
};

struct mt_agent {
    uv_loop_t loop;
    struct mt_agent_opts opts;
    struct mt_config *conf;
    struct mt_registry reg;
    struct mt_series_reg series;
    struct mt_pseudo pseudo;
    struct mt_writer *writer;
    struct mt_rules *rules; /* rules.c: the rule threads */
    bool rules_stopped;
    char db_path[PATH_MAX];
    char agent_id[64]; /* outlives reloads: outputs keep a pointer to it */
    int lock_fd;

    struct inst insts; /* list head */

    uv_signal_t sigterm, sigint, sighup;
    uv_timer_t tick, watchdog, stats;
    /* loop lag: the longest stretch the loop was busy between two polls,
     * from libuv's idle-time metric; costs no wake-up of its own */
    uv_prepare_t lag;
    uint64_t lag_last_ns, lag_idle_ns, lag_max_ns, lag_busy_ns, lag_since_ns;
    bool lag_skip;
    bool handles_inited;

    enum phase phase;
    bool forced;
    int64_t deadline; /* monotonic µs: shutdown_timeout after the stop began */
    struct mt_stopwatch *stopwatch;
    int exit_code;
    bool damaged; /* the log is damaged: said once, exit 4 */

    enum reload reload;
    struct mt_config *pending; /* SWAPPING: the new configuration */
    bool reload_again;         /* a SIGHUP came during a reload: read the files once more */

    void (*commit_cb)(void *arg, int64_t seq);
    void *commit_arg;

    /* the last run ended in a plugin's crash: that input is held back at
     * start (hold_back) */
    char crash_path[PATH_MAX];
    struct mt_crash_record crashed;
    bool crash_hold;
    uv_timer_t calm; /* ends the hold-back's memory: see hold_back */
    struct mt_status *status; /* the local HTTP endpoint (status.h) */
};

#define FOR_INST(a, i)                                                                             \
    for (struct inst *i = (a)->insts.next, *i##_next = i->next; i != &(a)->insts;                  \
         i = i##_next, i##_next = i->next)

static void stop_step(struct mt_agent *a);
static void reload_check_done(struct mt_agent *a);
static bool hold_back(struct mt_agent *a, struct inst *i);
void mt_agent_stop(struct mt_agent *a);

static void set_exit(struct mt_agent *a, int code)
{
    /* the most telling one wins: storage (4) over failure (1) over ok */
    if (code == MT_EXIT_STORAGE || (code && a->exit_code == MT_EXIT_OK))
        a->exit_code = code;
    if (a->stopwatch && a->exit_code)
        mt_stopwatch_set_status(a->stopwatch, a->exit_code);
}

/* ---- the instance list ---- */

static struct inst *inst_new(struct mt_agent *a, enum mt_inst_kind kind, const char *name)
{
    struct inst *i = calloc(1, sizeof(*i));
    if (!i)
        return NULL;
    i->a = a;
    i->kind = kind;
    i->state = MT_INST_CREATED;
    i->since_us = mt_mono_us();
    snprintf(i->name, sizeof(i->name), "%s", name);
    i->prev = a->insts.prev;
    i->next = &a->insts;
    a->insts.prev->next = i;
    a->insts.prev = i;
    return i;
}

/* The loop hears of each commit only while something here reads the log
 * as it grows: a running output or rule, or the commit callback of a test
 * or a benchmark. Otherwise a commit costs the loop no wake-up (issue 14). */
static void update_listening(struct mt_agent *a)
{
    bool on = a->commit_cb != NULL;
    FOR_INST(a, i)
    on = on || (i->kind == MT_INST_OUTPUT && i->state == MT_INST_RUNNING);
    on = on || mt_rules_active(a->rules); /* rules read the log as it grows */
    if (a->writer)
        mt_writer_listen(a->writer, on);
}

static void inst_set(struct inst *i, enum mt_inst_state state)
{
    i->state = state;
    i->since_us = mt_mono_us();
    update_listening(i->a);
}

static void inst_free(struct inst *i)
{
    struct mt_agent *a = i->a;
    i->prev->next = i->next;
    i->next->prev = i->prev;
    mt_inst_conf_free(i->ic);
    mt_inst_conf_free(i->next_ic);
    free(i);
    update_listening(a);
}

/* Instances alive of a kind (-1: of any kind). */
static size_t alive(struct mt_agent *a, int kind)
{
    size_t n = 0;
    FOR_INST(a, i)
    if (kind < 0 || (int)i->kind == kind)
        n++;
    return n;
}

static const struct mt_inst_conf *inst_conf(const struct inst *i)
{
    return i->kind == MT_INST_INPUT ? mt_input_conf(i->in) : i->ic;
}

/* ---- creating, starting and stopping instances ---- */

static void on_inst_gone(struct inst *i, int64_t cursor);

static void input_gone(void *arg)
{
    on_inst_gone(arg, 0);
}

static void output_gone(void *arg, int64_t cursor)
{
    on_inst_gone(arg, cursor);
}

static void check_gone(void *arg, int rc)
{
    (void)rc; /* damage went to the writer, which tells on_commit */
    on_inst_gone(arg, 0);
}

/* How long a stop waits for an isolated input's process before SIGKILL:
 * within shutdown_timeout, so that the agent's own stop need not wait for
 * it beyond. */
static int64_t isolate_stop_ms(const struct mt_agent *a)
{
    int64_t t = a->conf->agent.shutdown_timeout_ms;
    return t > 1000 ? t - 500 : t / 2 + 1;
}

/* CREATED from ic (taken, even on error). */
static void add_input(struct mt_agent *a, struct mt_inst_conf *ic)
{
    struct mt_input_env env = {.loop = &a->loop,
                               .writer = a->writer,
                               .series = &a->series,
                               .pseudo = &a->pseudo,
                               .isolate_exe = a->opts.isolate_exe,
                               .isolate_stop_ms = isolate_stop_ms(a)};
    struct inst *i = inst_new(a, MT_INST_INPUT, ic->name);
    char err[512];

    if (!i) {
        mt_diag(MT_ERR, MOD, "input %s: out of memory; it stays off until the next reload",
                ic->name);
        mt_inst_conf_free(ic);
        return;
    }
    if (mt_input_create(&i->in, &env, ic, err, sizeof(err))) {
        mt_diag(MT_ERR, MOD, "input %s: %s; it stays off until the next reload", i->name, err);
        inst_free(i);
    }
}

/* CREATED from ic (taken, even on error); delivers after resume_after at
 * least (a replaced output hands over its cursor). */
static void add_output(struct mt_agent *a, struct mt_inst_conf *ic, int64_t resume_after)
{
    struct mt_output_env env = {.loop = &a->loop, .writer = a->writer, .series = &a->series,
                                .db_path = a->db_path, .agent_id = a->agent_id};
    struct inst *i = inst_new(a, MT_INST_OUTPUT, ic->name);
    char err[512];

    if (!i) {
        mt_inst_conf_free(ic);
        return;
    }
    i->ic = ic;
    if (mt_output_create(&i->out, &env, ic->name, ic->otype, ic->conf, &ic->common, err,
                         sizeof(err))) {
        mt_diag(MT_ERR, MOD, "output %s: %s; it stays off until the next reload", ic->name, err);
        inst_free(i);
        return;
    }
    mt_output_resume_after(i->out, resume_after);
}

/* Moves the enabled instance settings out of c into CREATED instances. */
static void instantiate(struct mt_agent *a, struct mt_config *c)
{
    for (size_t k = 0; k < 2; k++) {
        struct mt_inst_conf **v = k == 0 ? c->outputs : c->inputs;
        size_t n = k == 0 ? c->noutputs : c->ninputs;
        for (size_t j = 0; j < n; j++) {
            struct mt_inst_conf *ic = v[j];
            v[j] = NULL;
            if (ic && !ic->enabled)
                mt_inst_conf_free(ic);
            else if (ic && k == 0)
                add_output(a, ic, 0);
            else if (ic)
                add_input(a, ic);
        }
    }
}

/* ---- a crash loop (issue 13) ---- */

/* The last run ended in a crash of a plugin (crash.h's marker, at most
 * MT_AGENT_CRASH_MEMORY_S old): said, and that input is held back at this
 * start (hold_back). */
static void read_crash_marker(struct mt_agent *a)
{
    struct mt_crash_record *r = &a->crashed;

    snprintf(a->crash_path, sizeof(a->crash_path), "%s/%s", a->conf->agent.data_dir,
             MT_AGENT_CRASH_MARKER);
    int rc = mt_crash_read_marker(a->crash_path, r);
    int64_t age = mt_now_us() / 1000000 - r->time_s;
    if (rc || age < 0 || age >= MT_AGENT_CRASH_MEMORY_S) {
        mt_crash_set_marker(a->crash_path, NULL, 0);
        return;
    }
    a->crash_hold = true;
    mt_crash_set_marker(a->crash_path, r->name, r->count);
    mt_diag(MT_WARNING, MOD,
            "the last run ended %lld s ago in a crash of input %s (plugin %s: %s in its %s), "
            "%u in a row",
            (long long)age, r->name, r->plugin, r->signal, r->what, r->count);
}

static void calm_cb(uv_timer_t *t)
{
    struct mt_agent *a = t->data;
    if (a->crash_path[0] && unlink(a->crash_path) == 0) {
        /* it has started: a restart from now on does not hold it back;
         * the count of crashes in a row lasts until it ran a while */
        uv_timer_start(&a->calm, calm_cb, MT_AGENT_CRASH_CALM_MS, 0);
        return;
    }
    mt_crash_forget();
}

/* The input that crashed the last run starts after 10 s, 20 s, 40 s ...
 * (by its crashes in a row, at most 10 min): systemd restarts the agent
 * at once, so the other inputs lose seconds, not hours, to a crash loop,
 * and the loop is in the journal and the statistics line. An isolated
 * input needs none: its own process is restarted with a backoff. */
static bool hold_back(struct mt_agent *a, struct inst *i)
{
    if (!a->crash_hold || strcmp(i->name, a->crashed.name) != 0 || mt_input_isolated(i->in))
        return false;
    a->crash_hold = false;
    uint64_t ms = MT_AGENT_HOLD_MIN_MS;
    for (unsigned k = 1; k < a->crashed.count && ms < MT_AGENT_HOLD_MAX_MS; k++)
        ms *= 2;
    if (ms > MT_AGENT_HOLD_MAX_MS)
        ms = MT_AGENT_HOLD_MAX_MS;
    char reason[160];
    snprintf(reason, sizeof(reason),
             "held back for %llu s after %u crashes in a row (%s in its %s)",
             (unsigned long long)ms / 1000, a->crashed.count, a->crashed.signal, a->crashed.what);
    mt_diag(MT_WARNING, MOD,
            "input %s: %s; the other inputs start now; `isolate: true` keeps its "
            "crashes away from them",
            i->name, reason);
    if (mt_input_start_after(i->in, ms, reason))
        return false;
    uv_timer_start(&a->calm, calm_cb, ms, 0);
    return true;
}

/* Starts every CREATED instance: outputs first, so the first commit finds
 * them listening. */
static void start_created(struct mt_agent *a)
{
    FOR_INST(a, i)
    if (i->state == MT_INST_CREATED && i->kind == MT_INST_OUTPUT) {
        inst_set(i, MT_INST_RUNNING);
        mt_output_start(i->out);
    }
    FOR_INST(a, i)
    if (i->state == MT_INST_CREATED && i->kind == MT_INST_INPUT) {
        inst_set(i, MT_INST_RUNNING);
        if (!hold_back(a, i))
            mt_input_start(i->in);
    }
}

/* RETIRING or STOPPING; the instance is freed in its done callback, which
 * may come before this returns. */
static void stop_inst(struct inst *i, enum mt_inst_state state)
{
    inst_set(i, state);
    switch (i->kind) {
    case MT_INST_INPUT: mt_input_stop(i->in, input_gone, i); break;
    case MT_INST_OUTPUT: mt_output_close(i->out, output_gone, i); break;
    case MT_INST_CHECK: mt_logcheck_cancel(i->check); break;
    }
}

static void on_inst_gone(struct inst *i, int64_t cursor)
{
    struct mt_agent *a = i->a;
    enum mt_inst_kind kind = i->kind;
    bool retired = i->state == MT_INST_RETIRING;
    struct mt_inst_conf *next = i->next_ic;

    i->next_ic = NULL;
    inst_free(i);
    if (!retired)
        return;
    /* its replacement, made now that it released what it held (a serial
     * port); started when the reload finishes */
    if (next && a->phase == PH_RUNNING && a->reload != RL_NONE) {
        if (kind == MT_INST_INPUT)
            add_input(a, next);
        else
            add_output(a, next, cursor); /* what it delivered, also while closing */
    } else {
        mt_inst_conf_free(next);
    }
    reload_check_done(a);
}

static void start_check(struct mt_agent *a)
{
    struct inst *i = inst_new(a, MT_INST_CHECK, "log check");
    int rc = i ? mt_logcheck_start(&i->check, &a->loop, a->db_path, a->writer, check_gone, i)
               : -ENOMEM;
    if (rc) {
        mt_diag(MT_WARNING, MOD, "cannot check the log after start: %s", strerror(-rc));
        if (i)
            inst_free(i);
        return;
    }
    inst_set(i, MT_INST_RUNNING);
}

/* ---- the log ---- */

static void advise_damaged(struct mt_agent *a, const char *what)
{
    mt_diag(MT_ERR, MOD,
            "the log %s is damaged (%s). mittari stops with exit status 4 (the systemd unit does "
            "not restart on it) and writes nothing more into it. To go on: `mittari salvage -c "
            "%s` copies every reading it can still read into a new log, with the same generation "
            "and numbering, and moves the damaged files aside; then start mittari again",
            a->db_path, what, a->opts.conf_path);
}

static void on_commit(void *arg, int64_t seq)
{
    struct mt_agent *a = arg;

    if (a->writer && mt_writer_error(a->writer) == MITTARI_ESTORAGE && !a->damaged) {
        char what[256];
        a->damaged = true;
        mt_writer_fault_text(a->writer, what, sizeof(what));
        advise_damaged(a, what);
        set_exit(a, MT_EXIT_STORAGE);
        if (a->phase == PH_RUNNING)
            mt_agent_stop(a);
    }
    FOR_INST(a, i)
    if (i->kind == MT_INST_OUTPUT && i->state == MT_INST_RUNNING)
        mt_output_notify(i->out, seq);
    if (a->rules)
        mt_rules_notify(a->rules, seq);
    if (a->commit_cb)
        a->commit_cb(a->commit_arg, seq);
}

static struct mt_writer_conf writer_conf(const struct mt_agent_conf *c)
{
    struct mt_writer_conf w = {
        .batch_size = c->batch_size,
        .batch_interval_ms = c->batch_interval_ms,
        .queue_max = c->queue_max,
        .retention_ms = c->retention_ms,
        .max_size = c->max_size,
        .policy = c->full_policy == 1 ? MT_POLICY_BLOCK_INPUTS : MT_POLICY_DROP_OLDEST,
        .housekeeping_ms = c->housekeeping_ms,
    };
    return w;
}

/* Outputs in the configuration, enabled or not (one switched off for a
 * while still wants its readings), keep their cursors' hold on retention;
 * the cursors of removed outputs stop holding readings back. */
static void keep_configured_consumers(struct mt_agent *a, const struct mt_config *c)
{
    const char **names = calloc(c->noutputs + c->nrules + 1, sizeof(*names));
    size_t n = 0;
    if (!names)
        return;
    for (size_t i = 0; i < c->noutputs; i++)
        if (c->outputs[i])
            names[n++] = c->outputs[i]->name;
    for (size_t i = 0; i < c->nrules; i++) /* rules read the log like outputs */
        if (c->rules[i])
            names[n++] = c->rules[i]->name;
    mt_writer_keep_consumers(a->writer, names, n);
    free(names);
}

/* ---- init ---- */

static int lock_data_dir(struct mt_agent *a, const char *dir)
{
    char holder[32];
    int rc = mt_lock_dir(dir, &a->lock_fd, holder, sizeof(holder));

    if (rc == -EBUSY)
        mt_diag(MT_ERR, MOD, "data dir %s is in use by another mittari (pid %s)", dir, holder);
    else if (rc)
        mt_diag(MT_ERR, MOD, "cannot open %s/mittari.lock: %s", dir, strerror(-rc));
    return rc;
}

static int setup_pseudo(struct mt_agent *a)
{
    const struct mt_agent_conf *c = &a->conf->agent;
    char path[PATH_MAX];
    int created = 0, rc;

    if (c->secret)
        return mt_pseudo_init(&a->pseudo, c->secret);
    snprintf(path, sizeof(path), "%s/pseudonym.key", c->data_dir);
    rc = mt_pseudo_load_or_create(&a->pseudo, path, &created);
    if (rc == -EPERM)
        mt_diag(MT_ERR, MOD, "the pseudonymisation key %s is readable by group or others; "
                "chmod 600 it (and consider the key compromised)", path);
    else if (rc)
        mt_diag(MT_ERR, MOD, "cannot load or create the pseudonymisation key %s: %s", path,
                strerror(-rc));
    else if (created)
        mt_diag(MT_NOTICE, MOD,
                "generated a pseudonymisation key in %s: pseudonyms are comparable only on this "
                "gateway; set agent.secret_file to share one key between gateways",
                path);
    return rc;
}

static int open_storage(struct mt_agent *a)
{
    const struct mt_agent_conf *c = &a->conf->agent;
    struct mt_logdb *db;
    char err[600];
    int rc;

    rc = mt_mkdirs(c->data_dir, 0750);
    if (rc) {
        mt_diag(MT_ERR, MOD, "cannot create data dir %s: %s", c->data_dir, strerror(-rc));
        return rc;
    }
    rc = lock_data_dir(a, c->data_dir);
    if (rc)
        return rc;
    snprintf(a->db_path, sizeof(a->db_path), "%s/mittari.db", c->data_dir);
    rc = mt_log_open(&db, a->db_path,
                     MT_LOG_WRITER | (c->sync == 0 ? MT_LOG_SYNC_FULL : 0), err, sizeof(err));
    if (rc == MITTARI_ESTORAGE) {
        advise_damaged(a, err);
        return rc;
    }
    if (rc) {
        mt_diag(MT_ERR, MOD, "%s", err);
        return rc;
    }
    struct mt_writer_conf wc = writer_conf(c);
    /* reads the series, counter states, cursors and the newest seq: damage
     * there is met before anything is written */
    rc = mt_writer_start(&a->writer, &a->loop, db, &a->series, &wc, on_commit, a);
    if (!rc)
        update_listening(a);
    if (rc == MITTARI_ESTORAGE)
        advise_damaged(a, "its state cannot be read");
    else if (rc)
        mt_diag(MT_ERR, MOD, "cannot start the log writer: %s",
                mittari_strerror_own(rc) ? mittari_strerror_own(rc) : strerror(-rc));
    if (rc)
        return rc;
    struct mt_rules_env re = {&a->loop, a->writer, &a->series, a->db_path, NULL, NULL};
    rc = mt_rules_create(&a->rules, &re);
    if (rc)
        mt_diag(MT_ERR, MOD, "cannot set up the rules: %s", strerror(-rc));
    return rc;
}

int mt_agent_init(struct mt_agent **out, const struct mt_agent_opts *opts, struct mt_diags *d)
{
    struct mt_agent *a = calloc(1, sizeof(*a));
    char num[16];
    int rc;

    *out = a;
    if (!a)
        return MT_EXIT_FAILURE;
    a->opts = *opts;
    a->lock_fd = -1;
    a->insts.next = a->insts.prev = &a->insts;
    /* a closed pipe (stdout piped into head, stderr of a dead reader) is an
     * EPIPE where it is written, not the end of the agent (issue 15) */
    signal(SIGPIPE, SIG_IGN);
    mt_series_init(&a->series);
    if (mt_config_load(&a->conf, opts->conf_path, opts->plugin_dir, &a->reg, d))
        return MT_EXIT_CONFIG;
    mt_diag_set_level(a->conf->agent.log_level);
    snprintf(a->agent_id, sizeof(a->agent_id), "%s", a->conf->agent.id);
    /* libuv reads this once, at the first queued work */
    snprintf(num, sizeof(num), "%" PRId64, a->conf->agent.workers);
    setenv("UV_THREADPOOL_SIZE", num, 1);
    setenv("TZ", a->conf->agent.timezone, 1);
    tzset();
    rc = uv_loop_init(&a->loop);
    if (rc)
        return MT_EXIT_FAILURE;
    uv_loop_configure(&a->loop, UV_METRICS_IDLE_TIME);
    a->loop.data = a;
    rc = open_storage(a);
    if (rc)
        return rc == -ENOMEM ? MT_EXIT_FAILURE : MT_EXIT_STORAGE;
    if (setup_pseudo(a))
        return MT_EXIT_STORAGE;
    mt_pseudo_set_rotation(&a->pseudo, a->conf->agent.pseudonym_rotation); /* MT_ROTATE_* order */
    read_crash_marker(a);
    keep_configured_consumers(a, a->conf);
    instantiate(a, a->conf);
    return MT_EXIT_OK;
}

/* ---- statistics ---- */

static void log_stats(struct mt_agent *a, const char *when)
{
    const struct mt_writer_stats *s = mt_writer_stats(a->writer);
    struct mt_buf b = {0};

    mt_buf_printf(&b,
                  "%s: queued %" PRIu64 ", stored %" PRIu64 ", refused (queue full) %" PRIu64
                  ", refused (cap) %" PRIu64 ", dropped at cap %" PRIu64
                  ", retention deleted %" PRIu64 ", last seq %" PRId64,
                  when, (uint64_t)s->queued, (uint64_t)s->stored, (uint64_t)s->refused_queue,
                  (uint64_t)s->refused_full, (uint64_t)s->dropped_cap,
                  (uint64_t)s->deleted_retention, mt_writer_committed(a->writer));
    if (s->refused_stopped || s->refused_storage)
        mt_buf_printf(&b, ", refused (stopping) %" PRIu64 ", refused (log damaged) %" PRIu64,
                      (uint64_t)s->refused_stopped, (uint64_t)s->refused_storage);
    uint64_t span = uv_hrtime() - a->lag_since_ns;
    mt_buf_printf(&b, "; loop max lag %.3f ms, busy %.2f%%", (double)a->lag_max_ns / 1e6,
                  span ? 100.0 * (double)a->lag_busy_ns / (double)span : 0.0);
    a->lag_max_ns = a->lag_busy_ns = 0;
    a->lag_since_ns = uv_hrtime();
    FOR_INST(a, i)
    if (i->kind == MT_INST_INPUT) {
        mt_buf_adds(&b, "; ");
        mt_input_summary(i->in, &b);
    }
    if (a->rules)
        mt_rules_summary(a->rules, &b);
    FOR_INST(a, i)
    if (i->kind == MT_INST_OUTPUT) {
        const struct mt_output_stats *os = mt_output_stats(i->out);
        mt_buf_printf(&b, "; output %s delivered %" PRIu64 " (cursor %" PRId64 ", retries %" PRIu64
                      ", parked %" PRIu64 ")",
                      mt_output_name(i->out), os->delivered, mt_output_cursor(i->out), os->retries,
                      os->parked_readings);
    }
    mt_diag(MT_INFO, MOD, "%s", mt_buf_cstr(&b));
    mt_buf_free(&b);
}

static void stats_cb(uv_timer_t *t)
{
    log_stats(t->data, "stats");
}

static void lag_cb(uv_prepare_t *p)
{
    struct mt_agent *a = p->data;
    uint64_t now = uv_hrtime(), idle = uv_metrics_idle_time(&a->loop);
    /* a signal interrupts epoll_wait, and libuv then does not count that
     * wait as idle: skip the turn a signal arrived in */
    if (a->lag_last_ns && !a->lag_skip) {
        uint64_t busy = (now - a->lag_last_ns) - (idle - a->lag_idle_ns);
        if (busy > a->lag_max_ns)
            a->lag_max_ns = busy;
        a->lag_busy_ns += busy;
        mt_status_lag(a->status, busy);
    }
    a->lag_last_ns = now;
    a->lag_idle_ns = idle;
    a->lag_skip = false;
}

/* ---- stop ---- */

static void close_handles(struct mt_agent *a)
{
    mt_status_stop(a->status);
    a->status = NULL;
    /* the rules are stopped by now (or never started): their async handle
     * goes with the rest */
    mt_rules_free(a->rules);
    a->rules = NULL;
    uv_handle_t *hs[] = {(uv_handle_t *)&a->sigterm,  (uv_handle_t *)&a->sigint,
                         (uv_handle_t *)&a->sighup,   (uv_handle_t *)&a->tick,
                         (uv_handle_t *)&a->watchdog, (uv_handle_t *)&a->stats,
                         (uv_handle_t *)&a->lag,      (uv_handle_t *)&a->calm};
    for (size_t i = 0; i < MT_ARRAY_SIZE(hs); i++)
        if (!uv_is_closing(hs[i]))
            uv_close(hs[i], NULL);
}

/* One line on what the stop waits for, for the stopwatch's last word. */
static void describe_wait(struct mt_agent *a, struct mt_buf *b)
{
    int64_t now = mt_mono_us();
    mt_buf_printf(b, "phase %s", phase_names[a->phase]);
    FOR_INST(a, i)
    {
        mt_buf_printf(b, "; %s %s (%s for %.1f s", kind_names[i->kind], i->name,
                      i->state == MT_INST_RETIRING ? "retiring" : "stopping",
                      (double)(now - i->since_us) / 1e6);
        if (i->kind == MT_INST_INPUT && mt_input_polls_busy(i->in))
            mt_buf_printf(b, ", %d polls of its plugin still running", mt_input_polls_busy(i->in));
        mt_buf_adds(b, ")");
    }
    if (a->phase == PH_STOP_INPUTS && !a->rules_stopped)
        mt_buf_adds(b, "; rules handing over their last step");
    if (a->writer && a->phase < PH_WAIT)
        mt_buf_printf(b, "; %" PRIu64 " readings not yet stored", mt_writer_held(a->writer));
}

static void warn_stuck(struct mt_agent *a, enum mt_inst_kind kind)
{
    int64_t now = mt_mono_us();
    FOR_INST(a, i)
    if (i->kind == kind) {
        char busy[64] = "";
        if (kind == MT_INST_INPUT && mt_input_polls_busy(i->in))
            snprintf(busy, sizeof(busy), ", %d polls of its plugin still running",
                     mt_input_polls_busy(i->in));
        mt_diag(MT_WARNING, MOD,
                "%s %s did not stop within shutdown_timeout (%.1f s%s); the stop goes on without "
                "it, waits for it at most %d s more, and refuses what it emits meanwhile",
                kind_names[kind], i->name, (double)(now - i->since_us) / 1e6, busy,
                MT_AGENT_HARD_STOP_MARGIN_MS / 1000);
    }
}

static void writer_ended(void *arg, const struct mt_writer_end *end)
{
    struct mt_agent *a = arg;

    log_stats(a, "final"); /* after the last commit */
    if (end->error == MITTARI_ESTORAGE)
        set_exit(a, MT_EXIT_STORAGE);
    if (end->lost) {
        mt_diag(MT_ERR, MOD, "%" PRIu64 " readings accepted from inputs were not stored; exiting "
                "with status %d", end->lost, end->error == MITTARI_ESTORAGE ? 4 : 1);
        set_exit(a, MT_EXIT_FAILURE);
    }
    a->phase = PH_WAIT;
    stop_step(a);
}

static void finish_stop(struct mt_agent *a)
{
    mt_stopwatch_free(a->stopwatch);
    a->stopwatch = NULL;
    mt_writer_free(a->writer); /* nothing alive can call it any more */
    a->writer = NULL;
    a->phase = PH_DONE;
    close_handles(a);
}

static void close_outputs(struct mt_agent *a)
{
    FOR_INST(a, i)
    if (i->kind == MT_INST_OUTPUT &&
        (i->state == MT_INST_CREATED || i->state == MT_INST_RUNNING))
        stop_inst(i, MT_INST_STOPPING);
}

/* One step of the stop (agent.h): run by the tick every 10 ms, and when
 * the writer ended. */
static void stop_step(struct mt_agent *a)
{
    int64_t now = mt_mono_us();
    bool late = now > a->deadline;

    if (a->stopwatch) {
        struct mt_buf b = {0};
        describe_wait(a, &b);
        mt_stopwatch_note(a->stopwatch, mt_buf_cstr(&b));
        mt_buf_free(&b);
    }
    switch (a->phase) {
    case PH_STOP_INPUTS:
        /* rules are waited for even late: each hands the writer its last
         * step, which must reach it before the intake closes (a rule's
         * calls are bounded by its time limit, its last step by 5 s) */
        if (!a->rules_stopped || (alive(a, MT_INST_INPUT) && !late))
            return;
        warn_stuck(a, MT_INST_INPUT);
        mt_writer_close_intake(a->writer);
        mt_writer_flush(a->writer);
        a->phase = PH_FLUSH;
        return;
    case PH_FLUSH:
        if (!mt_writer_idle(a->writer) && !late)
            return;
        a->phase = PH_DRAIN;
        on_commit(a, mt_writer_committed(a->writer));
        FOR_INST(a, i) /* no batch_wait now */
        if (i->kind == MT_INST_OUTPUT && i->state == MT_INST_RUNNING)
            mt_output_flush(i->out);
        return;
    case PH_DRAIN: {
        size_t busy = 0;
        FOR_INST(a, i)
        if (i->kind == MT_INST_OUTPUT && i->state == MT_INST_RUNNING && !mt_output_drained(i->out))
            busy++;
        if (busy && !late && !a->forced)
            return;
        if (busy)
            mt_diag(MT_WARNING, MOD,
                    "%zu outputs have not delivered everything; the rest stays in the log for "
                    "the next start",
                    busy);
        close_outputs(a);
        a->phase = PH_CLOSE_OUTPUTS;
        return;
    }
    case PH_CLOSE_OUTPUTS: {
        if (alive(a, MT_INST_OUTPUT) && !late)
            return;
        warn_stuck(a, MT_INST_OUTPUT);
        int64_t left = (a->deadline - now) / 1000;
        a->phase = PH_END_WRITER;
        mt_writer_end(a->writer, left > 1000 ? left : 1000, writer_ended, a);
        return;
    }
    case PH_WAIT:
        if (alive(a, -1) == 0)
            finish_stop(a);
        return;
    default: return;
    }
}

static void tick_cb(uv_timer_t *t)
{
    stop_step(t->data);
}

static void rules_stopped(void *arg)
{
    struct mt_agent *a = arg;
    a->rules_stopped = true;
}

void mt_agent_stop(struct mt_agent *a)
{
    if (a->phase != PH_RUNNING) {
        if (a->phase > PH_RUNNING && a->phase < PH_DONE && !a->forced) {
            a->forced = true;
            mt_diag(MT_NOTICE, MOD, "second stop request: not waiting for outputs");
        }
        return;
    }
    mt_sdnotify("STOPPING=1");
    mt_diag(MT_INFO, MOD, "stopping");
    a->phase = PH_STOP_INPUTS;
    a->deadline = mt_add_sat(mt_mono_us(), mt_ms_to_us(a->conf->agent.shutdown_timeout_ms));
    int rc = mt_stopwatch_arm(&a->stopwatch,
                              mt_add_sat(a->deadline, mt_ms_to_us(MT_AGENT_HARD_STOP_MARGIN_MS)),
                              a->exit_code ? a->exit_code : MT_EXIT_FAILURE);
    if (rc)
        mt_diag(MT_WARNING, MOD, "cannot arm the hard stop: %s", strerror(-rc));
    uv_timer_stop(&a->stats);
    uv_timer_stop(&a->watchdog);
    FOR_INST(a, i)
    if (i->kind == MT_INST_INPUT) { /* their counters go with them */
        struct mt_buf b = {0};
        mt_input_summary(i->in, &b);
        mt_diag(MT_INFO, MOD, "at stop: %s", mt_buf_cstr(&b));
        mt_buf_free(&b);
    }
    /* every input alive, also one retiring for a reload, must be gone
     * before the writer is; the check too */
    FOR_INST(a, i)
    if (i->kind != MT_INST_OUTPUT &&
        (i->state == MT_INST_CREATED || i->state == MT_INST_RUNNING))
        stop_inst(i, MT_INST_STOPPING);
    a->rules_stopped = !a->rules;
    if (a->rules)
        mt_rules_stop(a->rules, rules_stopped, a);
    update_listening(a);
    uv_timer_start(&a->tick, tick_cb, 0, 10);
}

/* ---- reload ---- */

static struct mt_inst_conf *take_conf(struct mt_inst_conf **v, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (v[i] && strcmp(v[i]->name, name) == 0) {
            struct mt_inst_conf *ic = v[i];
            v[i] = NULL;
            return ic;
        }
    }
    return NULL;
}

/* The agent section: what can change live does. */
static void apply_agent_conf(struct mt_agent *a, struct mt_config *c)
{
    struct mt_agent_conf *old = &a->conf->agent, *new = &c->agent;
    const char *restart[5] = {0};
    size_t nr = 0;
    if (strcmp(old->data_dir, new->data_dir))
        restart[nr++] = "data_dir";
    if (strcmp(old->id, new->id))
        restart[nr++] = "id";
    if (old->workers != new->workers || old->sync != new->sync)
        restart[nr++] = "workers/sync";
    if ((old->secret == NULL) != (new->secret == NULL) ||
        (old->secret && strcmp(old->secret, new->secret)) ||
        old->pseudonym_rotation != new->pseudonym_rotation)
        restart[nr++] = "secret/pseudonym_rotation";
    for (size_t i = 0; i < nr; i++)
        mt_diag(MT_WARNING, MOD, "agent.%s changed: takes effect at the next restart", restart[i]);
    /* keep the values that need a restart as they are */
    new->data_dir = mt_arena_strdup(&c->arena, old->data_dir);
    new->id = mt_arena_strdup(&c->arena, old->id);
    new->workers = old->workers;
    new->sync = old->sync;
    new->secret = old->secret ? mt_arena_strdup(&c->arena, old->secret) : NULL;
    new->pseudonym_rotation = old->pseudonym_rotation;
    mt_diag_set_level(new->log_level);
    struct mt_writer_conf wc = writer_conf(new);
    mt_writer_set_conf(a->writer, &wc);
    if (strcmp(old->timezone, new->timezone)) {
        setenv("TZ", new->timezone, 1);
        tzset();
        /* periods cached in the old zone would pick the wrong key */
        mt_pseudo_tz_changed(&a->pseudo);
    }
    mt_config_free(a->conf);
    a->conf = c;
    uv_timer_stop(&a->stats);
    if (c->agent.stats_interval_ms > 0)
        uv_timer_start(&a->stats, stats_cb, (uint64_t)c->agent.stats_interval_ms,
                       (uint64_t)c->agent.stats_interval_ms);
    mt_status_reconfigure(a->status);
}

static void reload_done(struct mt_agent *a)
{
    a->reload = RL_NONE;
    mt_sdnotify("READY=1");
    if (a->reload_again) {
        a->reload_again = false;
        mt_agent_reload(a);
    }
}

/* SWAPPING → NONE once nothing is retiring any more. */
static void reload_check_done(struct mt_agent *a)
{
    if (a->reload != RL_SWAPPING)
        return;
    FOR_INST(a, i)
    if (i->state == MT_INST_RETIRING)
        return;
    struct mt_config *c = a->pending;
    a->pending = NULL;
    if (a->phase != PH_RUNNING) { /* stopped meanwhile: nothing new starts */
        mt_config_free(c);
        a->reload = RL_NONE;
        return;
    }
    instantiate(a, c); /* the new ones; replacements were made as their predecessors went */
    /* changed rules restart with their state once the old thread handed over */
    mt_rules_apply(a->rules, c->rules, c->nrules, c->agent.site, c->agent.timezone);
    update_listening(a);
    free(c->rules);
    c->rules = NULL;
    c->nrules = 0;
    apply_agent_conf(a, c);
    start_created(a);
    size_t nin = alive(a, MT_INST_INPUT), nout = alive(a, MT_INST_OUTPUT);
    mt_diag(MT_NOTICE, MOD, "configuration reloaded: %zu inputs, %zu outputs", nin, nout);
    reload_done(a);
}

/* Loop thread: the new configuration is valid; switch to it. */
static void reload_apply(struct mt_agent *a, struct mt_config *c)
{
    keep_configured_consumers(a, c);
    a->pending = c;
    /* unchanged instances keep running; changed and removed ones retire.
     * The state stays LOADING until each was told: an input with nothing
     * open is gone at once, and the swap must not look finished before
     * the last one was even asked (its replacement is made all the same) */
    FOR_INST(a, i)
    {
        if (i->state != MT_INST_RUNNING || i->kind == MT_INST_CHECK)
            continue;
        const struct mt_inst_conf *cur = inst_conf(i);
        struct mt_inst_conf *nic = i->kind == MT_INST_INPUT
                                       ? take_conf(c->inputs, c->ninputs, cur->name)
                                       : take_conf(c->outputs, c->noutputs, cur->name);
        if (nic && nic->enabled && strcmp(nic->canonical, cur->canonical) == 0) {
            mt_inst_conf_free(nic);
            continue;
        }
        if (nic && !nic->enabled) {
            mt_inst_conf_free(nic);
            nic = NULL;
        }
        i->next_ic = nic;
        stop_inst(i, MT_INST_RETIRING);
    }
    a->reload = RL_SWAPPING;
    reload_check_done(a);
}

/* The files are read, plugins loaded and decoders compiled on a worker:
 * a reload never blocks the loop. */
struct reload_load {
    uv_work_t work;
    struct mt_agent *a;
    struct mt_config *c;
    struct mt_diags d;
    int rc;
};

static void reload_load_work(uv_work_t *req)
{
    struct reload_load *r = req->data;
    struct mt_agent *a = r->a;
    /* the registry is the loop's otherwise, but nothing else touches it
     * while a reload is in progress */
    r->rc = mt_config_load(&r->c, a->opts.conf_path, a->opts.plugin_dir, &a->reg, &r->d);
}

static void reload_load_done(uv_work_t *req, int status)
{
    struct reload_load *r = req->data;
    struct mt_agent *a = r->a;
    struct mt_config *c = r->c;

    (void)status;
    if (a->phase != PH_RUNNING) {
        a->reload = RL_NONE;
        mt_config_free(c);
    } else if (r->rc) {
        for (size_t i = 0; i < r->d.n; i++) {
            const struct mt_diag_entry *e = &r->d.v[i];
            mt_diag(MT_ERR, MOD, "%s:%d:%d: %s%s%s%s", e->pos.file ? e->pos.file : "-",
                    e->pos.line, e->pos.col, e->msg, e->hint ? " (hint: " : "",
                    e->hint ? e->hint : "", e->hint ? ")" : "");
        }
        mt_diag(MT_ERR, MOD, "new configuration has %zu problems; keeping the running one",
                r->d.n);
        mt_config_free(c);
        reload_done(a);
    } else {
        reload_apply(a, c);
    }
    mt_diags_free(&r->d);
    free(r);
}

void mt_agent_reload(struct mt_agent *a)
{
    if (a->phase != PH_RUNNING)
        return;
    if (a->reload != RL_NONE) {
        a->reload_again = true; /* the files may have changed again since */
        return;
    }
    struct reload_load *r = calloc(1, sizeof(*r));
    if (!r) {
        mt_diag(MT_ERR, MOD, "reload: out of memory");
        return;
    }
    r->a = a;
    r->work.data = r;
    a->reload = RL_LOADING;
    mt_sdnotify("RELOADING=1");
    mt_diag(MT_INFO, MOD, "reloading %s", a->opts.conf_path);
    int rc = uv_queue_work(&a->loop, &r->work, reload_load_work, reload_load_done);
    if (rc) {
        mt_diag(MT_ERR, MOD, "reload: cannot queue work: %s", uv_strerror(rc));
        a->reload = RL_NONE;
        free(r);
    }
}

/* ---- run ---- */

static void signal_cb(uv_signal_t *s, int signum)
{
    struct mt_agent *a = s->data;
    a->lag_skip = true;
    if (signum == SIGHUP)
        mt_agent_reload(a);
    else
        mt_agent_stop(a);
}

static void watchdog_cb(uv_timer_t *t)
{
    struct mt_agent *a = t->data;
    int64_t since = mt_writer_busy_since(a->writer);
    /* a writer stuck in a commit for longer than the watchdog period is a
     * hang systemd should see; one idle, gathering a batch (batch_interval)
     * or backing off waits on purpose */
    if (!since || mt_mono_us() - since < (int64_t)uv_timer_get_repeat(t) * 2000)
        mt_sdnotify("WATCHDOG=1");
}

int mt_agent_run(struct mt_agent *a)
{
    uint64_t wd_usec = 0;

    uv_signal_init(&a->loop, &a->sigterm);
    uv_signal_init(&a->loop, &a->sigint);
    uv_signal_init(&a->loop, &a->sighup);
    uv_timer_init(&a->loop, &a->tick);
    uv_timer_init(&a->loop, &a->watchdog);
    uv_timer_init(&a->loop, &a->stats);
    uv_timer_init(&a->loop, &a->calm);
    a->sigterm.data = a->sigint.data = a->sighup.data = a;
    a->tick.data = a->watchdog.data = a->stats.data = a->calm.data = a;
    uv_prepare_init(&a->loop, &a->lag);
    a->lag.data = a;
    uv_prepare_start(&a->lag, lag_cb);
    uv_unref((uv_handle_t *)&a->lag);
    a->lag_since_ns = uv_hrtime();
    a->handles_inited = true;
    uv_signal_start(&a->sigterm, signal_cb, SIGTERM);
    uv_signal_start(&a->sigint, signal_cb, SIGINT);
    uv_signal_start(&a->sighup, signal_cb, SIGHUP);

    a->phase = PH_RUNNING;
    start_created(a);
    start_check(a);
    mt_rules_apply(a->rules, a->conf->rules, a->conf->nrules, a->conf->agent.site,
                   a->conf->agent.timezone);
    update_listening(a);
    free(a->conf->rules); /* the specs belong to the rules now */
    a->conf->rules = NULL;
    a->conf->nrules = 0;
    if (a->conf->agent.stats_interval_ms > 0)
        uv_timer_start(&a->stats, stats_cb, (uint64_t)a->conf->agent.stats_interval_ms,
                       (uint64_t)a->conf->agent.stats_interval_ms);
    if (mt_sdnotify_watchdog(&wd_usec) > 0 && wd_usec >= 2000)
        uv_timer_start(&a->watchdog, watchdog_cb, 0, wd_usec / 2000);
    mt_status_start(&a->status, &a->loop, a, a->db_path, &a->series);
    mt_diag(MT_INFO, MOD, "running: site %s, %zu inputs, %zu outputs, log %s (last seq %" PRId64 ")",
            a->conf->agent.site, alive(a, MT_INST_INPUT), alive(a, MT_INST_OUTPUT), a->db_path,
            mt_writer_committed(a->writer));
    mt_sdnotify("READY=1");
    uv_run(&a->loop, UV_RUN_DEFAULT);
    return a->exit_code;
}

/* Init failed after the writer started, or run never happened: every
 * instance stops (none was started, or the loop ran to its end), then the
 * writer, driven by the loop here. */
static void teardown(struct mt_agent *a)
{
    FOR_INST(a, i)
    if (i->state == MT_INST_CREATED || i->state == MT_INST_RUNNING)
        stop_inst(i, MT_INST_STOPPING);
    while (alive(a, -1) && uv_run(&a->loop, UV_RUN_ONCE))
        ;
    mt_writer_stop(a->writer, 1000);
    a->writer = NULL;
}

void mt_agent_free(struct mt_agent *a)
{
    if (!a)
        return;
    if (a->writer)
        teardown(a);
    mt_stopwatch_free(a->stopwatch);
    mt_rules_free(a->rules); /* stopped by now, or never started */
    a->rules = NULL;
    if (a->loop.data == a) {
        if (a->handles_inited)
            close_handles(a);
        uv_run(&a->loop, UV_RUN_DEFAULT);
        uv_loop_close(&a->loop);
    }
    FOR_INST(a, i)
    inst_free(i); /* only if the loop could not finish them: never in practice */
    mt_config_free(a->conf);
    mt_config_free(a->pending);
    mt_series_free(&a->series);
    mt_pseudo_free(&a->pseudo);
    mt_registry_free(&a->reg);
    if (a->lock_fd >= 0)
        close(a->lock_fd);
    free(a);
}

/* ---- for tests, benchmarks and a status page ---- */

uv_loop_t *mt_agent_loop(struct mt_agent *a)
{
    return &a->loop;
}

struct mt_writer *mt_agent_writer(struct mt_agent *a)
{
    return a->writer;
}

struct mt_rules *mt_agent_rules(struct mt_agent *a)
{
    return a->rules;
}

size_t mt_agent_noutputs(struct mt_agent *a)
{
    size_t n = 0;
    FOR_INST(a, i)
    if (i->kind == MT_INST_OUTPUT &&
        (i->state == MT_INST_CREATED || i->state == MT_INST_RUNNING))
        n++;
    return n;
}

struct mt_output *mt_agent_output(struct mt_agent *a, size_t k)
{
    FOR_INST(a, i)
    if (i->kind == MT_INST_OUTPUT &&
        (i->state == MT_INST_CREATED || i->state == MT_INST_RUNNING) && k-- == 0)
        return i->out;
    return NULL;
}

size_t mt_agent_ninputs(struct mt_agent *a)
{
    size_t n = 0;
    FOR_INST(a, i)
    if (i->kind == MT_INST_INPUT && (i->state == MT_INST_CREATED || i->state == MT_INST_RUNNING))
        n++;
    return n;
}

struct mittari_ctx *mt_agent_input(struct mt_agent *a, size_t k)
{
    FOR_INST(a, i)
    if (i->kind == MT_INST_INPUT &&
        (i->state == MT_INST_CREATED || i->state == MT_INST_RUNNING) && k-- == 0)
        return i->in;
    return NULL;
}

const char *mt_agent_output_type(struct mt_agent *a, size_t k)
{
    FOR_INST(a, i)
    if (i->kind == MT_INST_OUTPUT &&
        (i->state == MT_INST_CREATED || i->state == MT_INST_RUNNING) && k-- == 0)
        return i->ic ? i->ic->plugin : "";
    return NULL;
}

const struct mt_config *mt_agent_config(struct mt_agent *a)
{
    return a->conf;
}

void mt_agent_on_commit(struct mt_agent *a, void (*cb)(void *arg, int64_t seq), void *arg)
{
    a->commit_cb = cb;
    a->commit_arg = arg;
    update_listening(a);
}

size_t mt_agent_instances(struct mt_agent *a, struct mt_inst_info *v, size_t max)
{
    size_t n = 0;
    FOR_INST(a, i)
    {
        if (n < max)
            v[n] = (struct mt_inst_info){.kind = i->kind, .state = i->state, .name = i->name};
        n++;
    }
    return n;
}

const char *mt_agent_phase_name(struct mt_agent *a)
{
    return phase_names[a->phase];
}
