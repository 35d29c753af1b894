#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "config.h"
#include "diag.h"
#include "input.h"
#include "log.h"
#include "plugin.h"
#include "pseudo.h"
#include "series.h"
#include "status.h"
#include "util.h"

#define MOD "agent"

enum phase { PH_INIT, PH_RUNNING, PH_STOP_INPUTS, PH_FLUSH, PH_DRAIN, PH_CLOSE_OUTPUTS, PH_DONE };

struct out_slot {
    struct mt_output *o;
    struct mt_inst_conf *ic;
};

struct in_slot {
    struct mittari_ctx *ctx;
};

struct mt_agent {
    uv_loop_t loop;
    struct mt_agent_opts opts;
    struct mt_config *conf;
    struct mt_registry reg;
    struct mt_series_reg series;
    struct mt_pseudo pseudo;
    struct mt_writer *writer;
    char db_path[PATH_MAX];
    char agent_id[64]; /* outlives reloads: outputs keep a pointer to it */
    int lock_fd;

    struct in_slot *inputs;
    size_t ninputs;
    struct out_slot *outputs;
    size_t noutputs;
    int inputs_stopping;
    int outputs_closing;

    uv_signal_t sigterm, sigint, sighup;
    uv_timer_t tick, watchdog, stats, hard_stop;
    /* loop lag: the longest stretch the loop was busy between two polls,
     * from libuv's idle-time metric; costs no wake-up of its own */
    uv_prepare_t lag;
    uint64_t lag_last_ns, lag_idle_ns, lag_max_ns, lag_busy_ns, lag_since_ns;
    bool lag_skip;
    bool handles_inited;
    int phase;
    bool forced;
    int64_t deadline;
    int exit_code;

    /* reload in progress: instances to start once the old ones stopped */
    struct mt_config *pending;
    int reload_waiting;
    bool reloading;
    bool reload_again; /* a SIGHUP came during a reload: read the files once more */

    void (*commit_cb)(void *arg, int64_t seq);
    void *commit_arg;
    struct mt_status *status; /* the local HTTP endpoint (status.h) */
};

uv_loop_t *mt_agent_loop(struct mt_agent *a)
{
    return &a->loop;
}

struct mt_writer *mt_agent_writer(struct mt_agent *a)
{
    return a->writer;
}

size_t mt_agent_noutputs(struct mt_agent *a)
{
    return a->noutputs;
}

struct mt_output *mt_agent_output(struct mt_agent *a, size_t i)
{
    return i < a->noutputs ? a->outputs[i].o : NULL;
}

size_t mt_agent_ninputs(struct mt_agent *a)
{
    return a->ninputs;
}

struct mittari_ctx *mt_agent_input(struct mt_agent *a, size_t i)
{
    return i < a->ninputs ? a->inputs[i].ctx : NULL;
}

const char *mt_agent_output_type(struct mt_agent *a, size_t i)
{
    return i < a->noutputs ? a->outputs[i].ic->plugin : NULL;
}

const struct mt_config *mt_agent_config(struct mt_agent *a)
{
    return a->conf;
}

const char *mt_agent_phase_name(struct mt_agent *a)
{
    if (a->phase == PH_INIT)
        return "starting";
    if (a->phase == PH_RUNNING)
        return a->reloading ? "reloading" : "running";
    return "stopping";
}

void mt_agent_on_commit(struct mt_agent *a, void (*cb)(void *arg, int64_t seq), void *arg)
{
    a->commit_cb = cb;
    a->commit_arg = arg;
}

void mt_agent_stop(struct mt_agent *a);

static void on_commit(void *arg, int64_t seq)
{
    struct mt_agent *a = arg;
    if (a->writer && mt_writer_error(a->writer) == MITTARI_ESTORAGE && a->phase == PH_RUNNING) {
        /* a corrupt log cannot take readings: stop with a status systemd
         * does not restart on (RestartPreventExitStatus), no crash loop */
        mt_diag(MT_ERR, MOD, "the log database %s is corrupt; stopping. Move it (and its -wal, "
                "-shm files) aside to start a new one", a->db_path);
        a->exit_code = MT_EXIT_STORAGE;
        mt_agent_stop(a);
    }
    for (size_t i = 0; i < a->noutputs; i++)
        if (a->outputs[i].o)
            mt_output_notify(a->outputs[i].o, seq);
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

/* ---- instances ---- */

static int add_input(struct mt_agent *a, struct mt_inst_conf *ic)
{
    struct mt_input_env env = {&a->loop, a->writer, &a->series, &a->pseudo};
    struct mittari_ctx *ctx;
    char err[512];
    struct in_slot *v = realloc(a->inputs, (a->ninputs + 1) * sizeof(*v));

    if (!v) {
        mt_inst_conf_free(ic);
        return -ENOMEM;
    }
    a->inputs = v;
    char name[80];
    snprintf(name, sizeof(name), "%s", ic->name);
    int rc = mt_input_create(&ctx, &env, ic, err, sizeof(err));
    if (rc) {
        mt_diag(MT_ERR, MOD, "input %s: %s; it stays off until the next reload", name, err);
        return rc;
    }
    a->inputs[a->ninputs++].ctx = ctx;
    return 0;
}

static int add_output(struct mt_agent *a, struct mt_inst_conf *ic, int64_t resume_after)
{
    struct mt_output_env env = {&a->loop, a->writer, &a->series, a->db_path, a->agent_id};
    struct mt_output *o;
    char err[512];
    struct out_slot *v = realloc(a->outputs, (a->noutputs + 1) * sizeof(*v));

    if (!v) {
        mt_inst_conf_free(ic);
        return -ENOMEM;
    }
    a->outputs = v;
    int rc = mt_output_create(&o, &env, ic->name, ic->otype, ic->conf, &ic->common, err,
                              sizeof(err));
    if (rc) {
        mt_diag(MT_ERR, MOD, "output %s: %s; it stays off until the next reload", ic->name, err);
        mt_inst_conf_free(ic);
        return rc;
    }
    mt_output_resume_after(o, resume_after);
    a->outputs[a->noutputs].o = o;
    a->outputs[a->noutputs].ic = ic;
    a->noutputs++;
    return 0;
}

/* Moves enabled instance configs out of c into running instances. */
static void instantiate(struct mt_agent *a, struct mt_config *c, bool start)
{
    for (size_t i = 0; i < c->noutputs; i++) {
        struct mt_inst_conf *ic = c->outputs[i];
        if (!ic)
            continue;
        c->outputs[i] = NULL;
        if (!ic->enabled) {
            mt_inst_conf_free(ic);
            continue;
        }
        if (add_output(a, ic, 0) == 0 && start)
            mt_output_start(a->outputs[a->noutputs - 1].o);
    }
    for (size_t i = 0; i < c->ninputs; i++) {
        struct mt_inst_conf *ic = c->inputs[i];
        if (!ic)
            continue;
        c->inputs[i] = NULL;
        if (!ic->enabled) {
            mt_inst_conf_free(ic);
            continue;
        }
        if (add_input(a, ic) == 0 && start)
            mt_input_start(a->inputs[a->ninputs - 1].ctx);
    }
}

/* Outputs in the configuration, enabled or not (one switched off for a
 * while still wants its readings), keep their cursors' hold on retention;
 * the cursors of removed outputs stop holding readings back. */
static void keep_configured_consumers(struct mt_agent *a, const struct mt_config *c)
{
    const char **names = calloc(c->noutputs + 1, sizeof(*names));
    size_t n = 0;
    if (!names)
        return;
    for (size_t i = 0; i < c->noutputs; i++)
        if (c->outputs[i])
            names[n++] = c->outputs[i]->name;
    mt_writer_keep_consumers(a->writer, names, n);
    free(names);
}

/* ---- init ---- */

static int lock_data_dir(struct mt_agent *a, const char *dir)
{
    char path[PATH_MAX];
    char pid[32];

    snprintf(path, sizeof(path), "%s/mittari.lock", dir);
    a->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (a->lock_fd < 0) {
        mt_diag(MT_ERR, MOD, "cannot open %s: %s", path, strerror(errno));
        return -errno;
    }
    if (flock(a->lock_fd, LOCK_EX | LOCK_NB)) {
        ssize_t n = pread(a->lock_fd, pid, sizeof(pid) - 1, 0);
        while (n > 0 && (pid[n - 1] == '\n' || pid[n - 1] == ' '))
            n--;
        pid[n > 0 ? n : 0] = 0;
        mt_diag(MT_ERR, MOD, "data dir %s is in use by another mittari (pid %s)", dir,
                pid[0] ? pid : "?");
        return -EBUSY;
    }
    int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(a->lock_fd, 0) == 0)
        mt_write_all(a->lock_fd, pid, (size_t)n);
    return 0;
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
    if (rc) {
        mt_diag(MT_ERR, MOD, "%s", err);
        if (rc == MITTARI_ESTORAGE)
            mt_diag(MT_ERR, MOD,
                    "the log is unusable; move %s (and its -wal, -shm files) aside to start a "
                    "new one; nothing was changed",
                    a->db_path);
        return rc;
    }
    struct mt_writer_conf wc = writer_conf(c);
    rc = mt_writer_start(&a->writer, &a->loop, db, &a->series, &wc, on_commit, a);
    if (rc)
        mt_diag(MT_ERR, MOD, "cannot start the log writer: %s", strerror(-rc));
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
    keep_configured_consumers(a, a->conf);
    instantiate(a, a->conf, false);
    return MT_EXIT_OK;
}

/* ---- stop ---- */

static void close_handles(struct mt_agent *a)
{
    mt_status_stop(a->status);
    a->status = NULL;
    uv_handle_t *hs[] = {(uv_handle_t *)&a->sigterm, (uv_handle_t *)&a->sigint,
                         (uv_handle_t *)&a->sighup,  (uv_handle_t *)&a->tick,
                         (uv_handle_t *)&a->watchdog, (uv_handle_t *)&a->stats,
                         (uv_handle_t *)&a->hard_stop, (uv_handle_t *)&a->lag};
    for (size_t i = 0; i < MT_ARRAY_SIZE(hs); i++)
        if (!uv_is_closing(hs[i]))
            uv_close(hs[i], NULL);
}

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
    uint64_t span = uv_hrtime() - a->lag_since_ns;
    mt_buf_printf(&b, "; loop max lag %.3f ms, busy %.2f%%", (double)a->lag_max_ns / 1e6,
                  span ? 100.0 * (double)a->lag_busy_ns / (double)span : 0.0);
    a->lag_max_ns = a->lag_busy_ns = 0;
    a->lag_since_ns = uv_hrtime();
    for (size_t i = 0; i < a->ninputs; i++) {
        mt_buf_adds(&b, "; ");
        mt_input_summary(a->inputs[i].ctx, &b);
    }
    for (size_t i = 0; i < a->noutputs; i++) {
        const struct mt_output_stats *os = mt_output_stats(a->outputs[i].o);
        mt_buf_printf(&b, "; output %s delivered %" PRIu64 " (cursor %" PRId64 ", retries %" PRIu64
                      ", parked %" PRIu64 ")",
                      mt_output_name(a->outputs[i].o), os->delivered,
                      mt_output_cursor(a->outputs[i].o), os->retries, os->parked_readings);
    }
    mt_diag(MT_INFO, MOD, "%s", mt_buf_cstr(&b));
    mt_buf_free(&b);
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

static void input_stopped(void *arg)
{
    struct mt_agent *a = arg;
    a->inputs_stopping--;
}

static void output_freed(void *arg, int64_t cursor)
{
    struct mt_inst_conf *ic = arg;
    (void)cursor;
    mt_inst_conf_free(ic);
}

struct close_ctx {
    struct mt_agent *a;
    struct mt_inst_conf *ic;
};

static void output_close_done(void *arg, int64_t cursor)
{
    struct close_ctx *c = arg;
    (void)cursor;
    c->a->outputs_closing--;
    mt_inst_conf_free(c->ic);
    free(c);
}

static void close_output(struct mt_agent *a, struct out_slot *s)
{
    struct close_ctx *c = malloc(sizeof(*c));
    if (!c) {
        mt_output_close(s->o, output_freed, s->ic);
        return;
    }
    c->a = a;
    c->ic = s->ic;
    a->outputs_closing++;
    mt_output_close(s->o, output_close_done, c);
}

static void close_outputs(struct mt_agent *a)
{
    for (size_t i = 0; i < a->noutputs; i++)
        close_output(a, &a->outputs[i]);
    a->noutputs = 0;
}

static void tick_cb(uv_timer_t *t)
{
    struct mt_agent *a = t->data;
    int64_t now = mt_mono_us();
    bool late = now > a->deadline;

    switch (a->phase) {
    case PH_STOP_INPUTS:
        if (a->inputs_stopping > 0 && !late)
            return;
        if (a->inputs_stopping > 0)
            mt_diag(MT_WARNING, MOD, "%d inputs did not stop in time", a->inputs_stopping);
        mt_writer_flush(a->writer);
        a->phase = PH_FLUSH;
        return;
    case PH_FLUSH:
        if (!mt_writer_idle(a->writer) && !late)
            return;
        a->phase = PH_DRAIN;
        on_commit(a, mt_writer_committed(a->writer));
        return;
    case PH_DRAIN: {
        size_t busy = 0;
        for (size_t i = 0; i < a->noutputs; i++)
            if (!mt_output_drained(a->outputs[i].o))
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
    case PH_CLOSE_OUTPUTS:
        if (a->outputs_closing > 0 && !late)
            return;
        log_stats(a, "final");
        int64_t left = (a->deadline - now) / 1000;
        mt_writer_stop(a->writer, left > 1000 ? left : 1000);
        a->writer = NULL;
        a->phase = PH_DONE;
        close_handles(a);
        return;
    }
}

static void hard_stop_cb(uv_timer_t *t)
{
    struct mt_agent *a = t->data;
    mt_diag(MT_ERR, MOD, "stop is stuck (a plugin blocks a worker?); exiting anyway");
    if (a->writer) {
        mt_writer_stop(a->writer, 1000);
        a->writer = NULL;
    }
    a->exit_code = MT_EXIT_FAILURE;
    uv_stop(&a->loop);
}

void mt_agent_stop(struct mt_agent *a)
{
    if (a->phase != PH_RUNNING) {
        if (a->phase < PH_DONE && !a->forced) {
            a->forced = true;
            mt_diag(MT_NOTICE, MOD, "second stop request: not waiting for outputs");
        }
        return;
    }
    sd_notify(0, "STOPPING=1");
    mt_diag(MT_INFO, MOD, "stopping");
    a->phase = PH_STOP_INPUTS;
    a->deadline = mt_mono_us() + a->conf->agent.shutdown_timeout_ms * 1000;
    uv_timer_stop(&a->stats);
    uv_timer_stop(&a->watchdog);
    for (size_t i = 0; i < a->ninputs; i++) { /* their counters go with them */
        struct mt_buf b = {0};
        mt_input_summary(a->inputs[i].ctx, &b);
        mt_diag(MT_INFO, MOD, "at stop: %s", mt_buf_cstr(&b));
        mt_buf_free(&b);
    }
    a->inputs_stopping += (int)a->ninputs;
    for (size_t i = 0; i < a->ninputs; i++)
        mt_input_stop(a->inputs[i].ctx, input_stopped, a);
    a->ninputs = 0;
    uv_timer_start(&a->tick, tick_cb, 0, 10);
    /* the writer gets its own share after the deadline; then give up */
    uv_timer_start(&a->hard_stop, hard_stop_cb,
                   (uint64_t)a->conf->agent.shutdown_timeout_ms + 15000, 0);
    uv_unref((uv_handle_t *)&a->hard_stop);
}

static void stats_cb(uv_timer_t *t);

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

static void reload_finish(struct mt_agent *a)
{
    struct mt_config *c = a->pending;

    a->pending = NULL;
    instantiate(a, c, true);
    /* the agent section: what can change live does */
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
    }
    mt_config_free(a->conf);
    a->conf = c;
    uv_timer_stop(&a->stats);
    if (c->agent.stats_interval_ms > 0)
        uv_timer_start(&a->stats, stats_cb, (uint64_t)c->agent.stats_interval_ms,
                       (uint64_t)c->agent.stats_interval_ms);
    a->reloading = false;
    mt_status_reconfigure(a->status);
    mt_diag(MT_NOTICE, MOD, "configuration reloaded: %zu inputs, %zu outputs", a->ninputs,
            a->noutputs);
    sd_notify(0, "READY=1");
    if (a->reload_again) {
        a->reload_again = false;
        mt_agent_reload(a);
    }
}

static void reload_input_stopped(void *arg)
{
    struct mt_agent *a = arg;
    if (--a->reload_waiting == 0 && a->phase == PH_RUNNING)
        reload_finish(a);
}

struct reload_out {
    struct mt_agent *a;
    struct mt_inst_conf *old_ic;
    struct mt_inst_conf *new_ic;
    int64_t cursor;
};

static void reload_output_closed(void *arg, int64_t cursor)
{
    struct reload_out *r = arg;
    struct mt_agent *a = r->a;
    mt_inst_conf_free(r->old_ic);
    if (r->new_ic && a->phase == PH_RUNNING) {
        /* what the old instance delivered, also while it closed (issue 15) */
        if (add_output(a, r->new_ic, cursor > r->cursor ? cursor : r->cursor) == 0)
            mt_output_start(a->outputs[a->noutputs - 1].o);
    } else {
        mt_inst_conf_free(r->new_ic);
    }
    free(r);
    reload_input_stopped(a);
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

static void reload_apply(struct mt_agent *a, struct mt_config *c);

static void reload_load_done(uv_work_t *req, int status)
{
    struct reload_load *r = req->data;
    struct mt_agent *a = r->a;
    struct mt_config *c = r->c;

    (void)status;
    if (a->phase != PH_RUNNING) {
        a->reloading = false;
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
        a->reloading = false;
        sd_notify(0, "READY=1");
        if (a->reload_again) {
            a->reload_again = false;
            mt_agent_reload(a);
        }
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
    if (a->reloading) {
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
    a->reloading = true;
    sd_notify(0, "RELOADING=1");
    mt_diag(MT_INFO, MOD, "reloading %s", a->opts.conf_path);
    int rc = uv_queue_work(&a->loop, &r->work, reload_load_work, reload_load_done);
    if (rc) {
        mt_diag(MT_ERR, MOD, "reload: cannot queue work: %s", uv_strerror(rc));
        a->reloading = false;
        free(r);
    }
}

/* Loop thread: the new configuration is valid; switch to it. */
static void reload_apply(struct mt_agent *a, struct mt_config *c)
{
    keep_configured_consumers(a, c);
    a->pending = c;
    a->reload_waiting = 1; /* held until every stop below has been started */

    /* inputs: keep the unchanged, stop the changed and the removed */
    size_t kept = 0;
    for (size_t i = 0; i < a->ninputs; i++) {
        struct mittari_ctx *ctx = a->inputs[i].ctx;
        const struct mt_inst_conf *cur = mt_input_conf(ctx);
        struct mt_inst_conf *nic = take_conf(c->inputs, c->ninputs, cur->name);
        if (nic && nic->enabled && strcmp(nic->canonical, cur->canonical) == 0) {
            mt_inst_conf_free(nic);
            a->inputs[kept++] = a->inputs[i];
            continue;
        }
        /* put the new settings back: started once the old instance is gone */
        if (nic)
            for (size_t j = 0; j < c->ninputs; j++)
                if (!c->inputs[j]) {
                    c->inputs[j] = nic;
                    break;
                }
        a->reload_waiting++;
        mt_input_stop(ctx, reload_input_stopped, a);
    }
    a->ninputs = kept;

    kept = 0;
    for (size_t i = 0; i < a->noutputs; i++) {
        struct out_slot s = a->outputs[i];
        struct mt_inst_conf *nic = take_conf(c->outputs, c->noutputs, s.ic->name);
        if (nic && nic->enabled && strcmp(nic->canonical, s.ic->canonical) == 0) {
            mt_inst_conf_free(nic);
            a->outputs[kept++] = s;
            continue;
        }
        struct reload_out *r = calloc(1, sizeof(*r));
        if (!r) {
            mt_inst_conf_free(nic);
            a->outputs[kept++] = s;
            continue;
        }
        r->a = a;
        r->old_ic = s.ic;
        r->new_ic = nic && nic->enabled ? nic : NULL;
        if (nic && !nic->enabled)
            mt_inst_conf_free(nic);
        r->cursor = mt_output_cursor(s.o);
        a->reload_waiting++;
        mt_output_close(s.o, reload_output_closed, r);
    }
    a->noutputs = kept;
    reload_input_stopped(a); /* release the hold */
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
    int64_t stale = mt_mono_us() - mt_writer_heartbeat(a->writer);
    /* a writer stuck in a commit for longer than the watchdog period is a
     * hang systemd should see; an idle writer waits on purpose */
    if (mt_writer_idle(a->writer) || stale < (int64_t)uv_timer_get_repeat(t) * 2000)
        sd_notify(0, "WATCHDOG=1");
}

static void stats_cb(uv_timer_t *t)
{
    log_stats(t->data, "stats");
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
    uv_timer_init(&a->loop, &a->hard_stop);
    a->sigterm.data = a->sigint.data = a->sighup.data = a;
    a->tick.data = a->watchdog.data = a->stats.data = a->hard_stop.data = a;
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
    for (size_t i = 0; i < a->noutputs; i++)
        mt_output_start(a->outputs[i].o);
    for (size_t i = 0; i < a->ninputs; i++)
        mt_input_start(a->inputs[i].ctx);
    if (a->conf->agent.stats_interval_ms > 0)
        uv_timer_start(&a->stats, stats_cb, (uint64_t)a->conf->agent.stats_interval_ms,
                       (uint64_t)a->conf->agent.stats_interval_ms);
    if (sd_watchdog_enabled(0, &wd_usec) > 0 && wd_usec >= 2000)
        uv_timer_start(&a->watchdog, watchdog_cb, 0, wd_usec / 2000);
    mt_status_start(&a->status, &a->loop, a, a->db_path, &a->series);
    mt_diag(MT_INFO, MOD, "running: site %s, %zu inputs, %zu outputs, log %s (last seq %" PRId64 ")",
            a->conf->agent.site, a->ninputs, a->noutputs, a->db_path,
            mt_writer_committed(a->writer));
    sd_notify(0, "READY=1");
    uv_run(&a->loop, UV_RUN_DEFAULT);
    return a->exit_code;
}

void mt_agent_free(struct mt_agent *a)
{
    if (!a)
        return;
    if (a->writer) {
        /* init failed after the writer started, or run never happened */
        for (size_t i = 0; i < a->ninputs; i++)
            mt_input_stop(a->inputs[i].ctx, NULL, NULL);
        a->ninputs = 0;
        close_outputs(a);
        mt_writer_stop(a->writer, 1000);
        a->writer = NULL;
    }
    if (a->loop.data == a) {
        if (a->handles_inited)
            close_handles(a);
        uv_run(&a->loop, UV_RUN_DEFAULT);
        uv_loop_close(&a->loop);
    }
    free(a->inputs);
    free(a->outputs);
    mt_config_free(a->conf);
    mt_config_free(a->pending);
    mt_series_free(&a->series);
    mt_pseudo_free(&a->pseudo);
    mt_registry_free(&a->reg);
    if (a->lock_fd >= 0)
        close(a->lock_fd);
    free(a);
}
