#include "outputs_cli.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "agent.h"
#include "aggquery.h"
#include "config.h"
#include "diag.h"
#include "log.h"
#include "output.h"
#include "query.h"
#include "series.h"
#include "util.h"

#define CHUNK 4096

struct ctx {
    struct mt_diags d;
    struct mt_registry reg;
    struct mt_config *conf;
    struct mt_logdb *db;
    struct mt_series_reg series;
    bool series_ok;
    char path[4096];
};

static void ctx_free(struct ctx *c)
{
    mt_log_close(c->db);
    if (c->series_ok)
        mt_series_free(&c->series);
    mt_diags_free(&c->d);
    mt_config_free(c->conf);
    mt_registry_free(&c->reg);
}

/* The configuration, the log (read-only) and its series. */
static int ctx_open(struct ctx *c, const char *conf, const char *plugin_dir, int flags)
{
    char err[600];

    memset(c, 0, sizeof(*c));
    if (mt_config_load(&c->conf, conf, plugin_dir, &c->reg, &c->d)) {
        mt_diags_print(&c->d, stderr);
        return MT_EXIT_CONFIG;
    }
    setenv("TZ", c->conf->agent.timezone, 1);
    tzset();
    snprintf(c->path, sizeof(c->path), "%s/mittari.db", c->conf->agent.data_dir);
    if (mt_log_open(&c->db, c->path, flags, err, sizeof(err))) {
        fprintf(stderr, "mittari: %s\n", err);
        return MT_EXIT_STORAGE;
    }
    if (mt_series_init(&c->series))
        return MT_EXIT_FAILURE;
    c->series_ok = true;
    if (mt_log_load_series(c->db, &c->series)) {
        fprintf(stderr, "mittari: cannot read series: %s\n", mt_log_errmsg(c->db));
        return MT_EXIT_STORAGE;
    }
    return MT_EXIT_OK;
}

/* "2026-12-02 08:15:03 (5m 2s ago)" in local time; "never" for 0 */
static void when(int64_t us, int64_t now, char *out, size_t len)
{
    struct tm tm;
    time_t t = (time_t)(us / 1000000);
    char date[40], ago[40];
    int64_t s = (now - us) / 1000000;

    if (!us) {
        snprintf(out, len, "never");
        return;
    }
    localtime_r(&t, &tm);
    strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", &tm);
    if (s < 0)
        snprintf(ago, sizeof(ago), "in the future");
    else if (s < 120)
        snprintf(ago, sizeof(ago), "%" PRId64 "s ago", s);
    else if (s < 7200)
        snprintf(ago, sizeof(ago), "%" PRId64 "m %" PRId64 "s ago", s / 60, s % 60);
    else if (s < 172800)
        snprintf(ago, sizeof(ago), "%" PRId64 "h %" PRId64 "m ago", s / 3600, s / 60 % 60);
    else
        snprintf(ago, sizeof(ago), "%" PRId64 " days ago", s / 86400);
    snprintf(out, len, "%s %s (%s)", date, tm.tm_zone, ago);
}

/* Readings after cursor that the output takes, and the oldest one's time. */
static int backlog(struct ctx *c, const struct mt_output_common *common, int64_t cursor,
                   uint64_t *n, int64_t *oldest)
{
    struct mt_matcher *m = NULL;
    struct mt_row *rows = calloc(CHUNK, sizeof(*rows));
    int64_t last = 0, after = cursor;
    int rc = -ENOMEM;

    *n = 0;
    *oldest = 0;
    if (!rows || mt_matcher_new(&m, &common->match))
        goto out;
    rc = mt_log_last_seq(c->db, &last);
    while (!rc && after < last) {
        size_t got = 0;
        rc = mt_log_read(c->db, after, last, CHUNK, rows, &got);
        if (rc || got == 0)
            break;
        for (size_t i = 0; i < got; i++) {
            if (!mt_matcher_row(m, &c->series, &rows[i]))
                continue;
            if (!*oldest || rows[i].ts < *oldest)
                *oldest = rows[i].ts;
            (*n)++;
        }
        after = rows[got - 1].seq;
    }
out:
    mt_matcher_free(m);
    free(rows);
    return rc;
}

struct parked_sum {
    FILE *out;
    uint64_t batches, readings;
    int64_t now;
    int shown;
};

static int parked_cb(void *arg, const char *output, int64_t first, int64_t last, const char *error,
                     int64_t at)
{
    struct parked_sum *p = arg;
    (void)output;
    (void)error;
    (void)at;
    p->batches++;
    p->readings += (uint64_t)(last - first + 1);
    return 0;
}

static int parked_print(void *arg, const char *output, int64_t first, int64_t last,
                        const char *error, int64_t at)
{
    struct parked_sum *p = arg;
    char w[120];
    (void)output;
    if (p->batches-- > 5)
        return 0; /* the newest five */
    when(at, p->now, w, sizeof(w));
    fprintf(p->out, "    seq %" PRId64 "..%" PRId64 " at %s: %s\n", first, last, w, error);
    return 0;
}

static void show_one(struct ctx *c, FILE *out, const char *name, const struct mt_inst_conf *ic,
                     int64_t last_seq, int64_t now)
{
    int64_t cursor = 0;
    struct mt_output_status st = {0};
    void *blob = NULL;
    size_t len = 0;
    int64_t version = 0;
    char w[160];

    fprintf(out, "%s (%s%s)\n", name, ic ? ic->plugin : "no longer configured",
            ic && !ic->enabled ? ", disabled" : "");
    int rc = mt_log_get_cursor(c->db, name, &cursor);
    if (rc == -ENOENT)
        fprintf(out, "  cursor:       none yet (never started with this log)\n");
    else
        fprintf(out, "  cursor:       seq %" PRId64 " of %" PRId64 "\n", cursor, last_seq);
    if (mt_log_get_state(c->db, name, &version, &blob, &len) == 0 &&
        version == MT_OUTPUT_STATUS_VERSION && blob)
        mt_output_status_parse(blob, len, &st);
    free(blob);
    if (ic) {
        uint64_t n = 0;
        int64_t oldest = 0;
        if (backlog(c, &ic->common, cursor, &n, &oldest) == 0) {
            when(oldest, now, w, sizeof(w));
            if (n)
                fprintf(out, "  backlog:      %" PRIu64 " readings, oldest %s\n", n, w);
            else
                fprintf(out, "  backlog:      none\n");
        } else {
            fprintf(out, "  backlog:      cannot read the log: %s\n", mt_log_errmsg(c->db));
        }
    }
    when(st.ok_at, now, w, sizeof(w));
    fprintf(out, "  last success: %s\n", w);
    if (st.err_at) {
        when(st.err_at, now, w, sizeof(w));
        fprintf(out, "  last error:   %s: %s\n", w, st.error);
    } else {
        fprintf(out, "  last error:   none\n");
    }
    if (st.stopped)
        fprintf(out, "  state:        stopped after a permanent error (on_permanent_error: stop); "
                     "it tries the batch again at the next start or reload\n");
    struct parked_sum p = {.out = out, .now = now};
    mt_log_load_parked(c->db, name, parked_cb, &p);
    if (p.batches) {
        fprintf(out, "  parked:       %" PRIu64 " batch%s, %" PRIu64
                     " readings (mittari replay re-sends them)\n",
                p.batches, p.batches == 1 ? "" : "es", p.readings);
        mt_log_load_parked(c->db, name, parked_print, &p);
    } else {
        fprintf(out, "  parked:       none\n");
    }
}

struct names {
    struct ctx *c;
    FILE *out;
    int64_t last, now;
};

static int unconfigured_cb(void *arg, const char *name, int64_t seq)
{
    struct names *n = arg;
    (void)seq;
    for (size_t i = 0; i < n->c->conf->noutputs; i++)
        if (strcmp(n->c->conf->outputs[i]->name, name) == 0)
            return 0;
    show_one(n->c, n->out, name, NULL, n->last, n->now);
    return 0;
}

int mt_cli_outputs(const char *conf, const char *plugin_dir, FILE *out)
{
    struct ctx c;
    int64_t last = 0, now = mt_now_us();
    int rc = ctx_open(&c, conf, plugin_dir, MT_LOG_READONLY);

    if (rc)
        goto out;
    mt_log_last_seq(c.db, &last);
    for (size_t i = 0; i < c.conf->noutputs; i++)
        show_one(&c, out, c.conf->outputs[i]->name, c.conf->outputs[i], last, now);
    struct names n = {&c, out, last, now};
    mt_log_load_cursors(c.db, unconfigured_cb, &n);
    if (!c.conf->noutputs)
        fprintf(out, "no outputs configured\n");
out:
    ctx_free(&c);
    return rc;
}

/* ---- replay ---- */

struct replay {
    uv_loop_t loop;
    uv_signal_t sigint, sigterm;
    uv_prepare_t check;
    struct mt_output *o;
    bool closing, interrupted;
    struct mt_output_stats stats;
};

static void replay_closed(void *arg, int64_t cursor)
{
    struct replay *r = arg;
    (void)cursor;
    r->o = NULL;
    uv_close((uv_handle_t *)&r->sigint, NULL);
    uv_close((uv_handle_t *)&r->sigterm, NULL);
    uv_close((uv_handle_t *)&r->check, NULL);
}

static void finish_replay(struct replay *r)
{
    r->stats = *mt_output_stats(r->o);
    r->closing = true;
    uv_prepare_stop(&r->check);
    mt_output_close(r->o, replay_closed, r);
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct replay *r = s->data;
    (void)signum;
    if (r->o && !r->closing) {
        r->interrupted = true;
        finish_replay(r);
    }
}

/* Each loop turn: done when the output delivered the whole range. */
static void check_cb(uv_prepare_t *p)
{
    struct replay *r = p->data;
    if (!r->o || r->closing)
        return;
    if (mt_output_state(r->o) == MT_OUT_RUNNING && mt_output_drained(r->o))
        finish_replay(r);
}

int mt_cli_replay(const char *conf, const char *plugin_dir, const char *name, const char *since,
                  const char *until, FILE *out)
{
    struct ctx c;
    struct replay r = {0};
    char err[600] = "";
    int64_t now = mt_now_us(), from = 0, to = now;
    int rc = ctx_open(&c, conf, plugin_dir, MT_LOG_READONLY);
    const struct mt_inst_conf *ic = NULL;

    if (rc)
        goto out;
    for (size_t i = 0; i < c.conf->noutputs; i++)
        if (strcmp(c.conf->outputs[i]->name, name) == 0)
            ic = c.conf->outputs[i];
    if (!ic) {
        fprintf(stderr, "mittari: no output '%s' in %s\n", name, conf);
        rc = MT_EXIT_USAGE;
        goto out;
    }
    const char *tz = c.conf->agent.timezone;
    if (!since || mt_query_time(since, tz, now, &from) ||
        (until && mt_query_time(until, tz, now, &to))) {
        fprintf(stderr, "mittari: replay needs --since T (and takes --until T): 2026-11-25, "
                        "2026-11-25T08:00, ...Z, now, -2h, today, yesterday, this-month or "
                        "last-month\n");
        rc = MT_EXIT_USAGE;
        goto out;
    }
    mt_log_close(c.db); /* the output opens its own connection */
    c.db = NULL;
    mt_diag_set_level(c.conf->agent.log_level);
    uv_loop_init(&r.loop);
    struct mt_output_env env = {.loop = &r.loop, .series = &c.series, .db_path = c.path,
                                .agent_id = c.conf->agent.id, .replay_since = from,
                                .replay_until = to};
    rc = mt_output_create(&r.o, &env, ic->name, ic->otype, ic->conf, &ic->common, err,
                          sizeof(err));
    if (rc) {
        fprintf(stderr, "mittari: output %s: %s\n", name, err);
        uv_run(&r.loop, UV_RUN_DEFAULT);
        uv_loop_close(&r.loop);
        rc = MT_EXIT_FAILURE;
        goto out;
    }
    uv_signal_init(&r.loop, &r.sigint);
    uv_signal_init(&r.loop, &r.sigterm);
    uv_prepare_init(&r.loop, &r.check);
    r.sigint.data = r.sigterm.data = r.check.data = &r;
    uv_signal_start(&r.sigint, on_signal, SIGINT);
    uv_signal_start(&r.sigterm, on_signal, SIGTERM);
    uv_prepare_start(&r.check, check_cb);
    mt_output_start(r.o);
    mt_output_flush(r.o);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    uv_loop_close(&r.loop);
    fprintf(out, "%s: re-sent %" PRIu64 " readings in %" PRIu64 " batches; %" PRIu64
                 " readings refused (parked)%s\n",
            name, r.stats.delivered, r.stats.batches, r.stats.parked_readings,
            r.interrupted ? "; interrupted before the end" : "");
    rc = r.interrupted || r.stats.parked_readings ? MT_EXIT_FAILURE : MT_EXIT_OK;
out:
    ctx_free(&c);
    return rc;
}
