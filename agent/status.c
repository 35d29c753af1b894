#include "status.h"

#include <errno.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent.h"
#include "diag.h"
#include "httpd.h"
#include "listen.h"
#include "metrics.h"
#include "report.h"
#include "sdnotify.h"
#include "snapshot.h"
#include "statusd.h"
#include "util.h"

#define MOD "status"
/* The loop copies a snapshot every status.refresh (for STATUS=, the
 * figures of the last minute and to tell the worker of new readings), and
 * whenever a request finds the one held older than FRESH_US: an idle agent
 * is not woken every second for nobody. */
#define HISTORY 64               /* periodic samples kept: a minute at refresh 1 s */
#define RECENT_US (60 * 1000000LL)
#define FRESH_US (1000000LL)
#define WAIT_US (1000000LL)      /* how long a request waits for the loop's snapshot */
#define STALL_US (3 * 1000000LL) /* a snapshot older than this: the loop is stalled */
#define NOTIFY_US (10 * 1000000LL)
/* After a request for /status or /metrics, the loop's snapshots are
 * detailed (every device) for DETAIL_REFRESHES periods of status.refresh;
 * else it takes summaries, whose size does not grow with the number of
 * devices (snapshot.h). The page, which asks every refresh, finds a
 * detailed one waiting, as before; a rarer scraper waits for one turn of
 * the loop. */
#define DETAIL_REFRESHES 3

extern const char mt_page_html[];
extern const size_t mt_page_html_len;

struct sample {
    int64_t at; /* monotonic µs */
    uint64_t refused, dropped, lag_max_ns;
};

/* What the server thread reads: fixed while the server runs (a change
 * restarts the server). */
struct server_conf {
    char *token;
    size_t token_len;
    struct mt_health_conf health;
    int64_t refresh_ms;
};

struct mt_status {
    uv_loop_t *loop;
    struct mt_agent *agent;
    const char *db_path;
    const struct mt_series_reg *series;
    uv_timer_t timer;
    uv_async_t async; /* a request wants a fresh snapshot */
    bool async_inited;
    int closing;      /* handles whose close callback is due */
    uint64_t snap_ms; /* the periodic snapshot: status.refresh */
    int64_t started_us;
    int64_t kicked_committed, kicked_cursors; /* what the worker last read */
    _Atomic int64_t detail_until; /* monotonic µs: set by the server's threads */

    struct mt_httpd *httpd;
    struct mt_statusd *board;
    struct server_conf sc;
    /* the settings the server and the board run with, to see what a reload changed */
    char *canon_server, *canon_board;

    struct mt_lag_hist lag;
    struct sample hist[HISTORY];
    size_t nhist, ihist;
    char line[256];
    int line_level;
    int64_t line_at;
};

void mt_status_lag(struct mt_status *st, uint64_t busy_ns)
{
    if (st)
        mt_lag_observe(&st->lag, busy_ns);
}

/* ---- HTTP (the connections' threads) ---- */

/* takes the body */
static void reply(const struct mt_status *st, struct mt_http_resp *r, unsigned code,
                  const char *type, struct mt_buf *body)
{
    char refresh[24];
    r->code = code;
    r->type = type;
    mt_buf_free(&r->body);
    r->body = *body;
    *body = (struct mt_buf){0};
    mt_http_header(r, "Cache-Control", "no-store");
    mt_http_header(r, "X-Content-Type-Options", "nosniff");
    /* the page is static: its refresh period comes in a header its script
     * reads back (no templating of the HTML) */
    snprintf(refresh, sizeof(refresh), "%lld", (long long)st->sc.refresh_ms);
    mt_http_header(r, "X-Mittari-Refresh-Ms", refresh);
}

static void reply_text(const struct mt_status *st, struct mt_http_resp *r, unsigned code,
                       const char *text)
{
    struct mt_buf b = {0};
    mt_buf_adds(&b, text);
    reply(st, r, code, "text/plain; charset=utf-8", &b);
}

/* "Bearer TOKEN", or "Basic base64(user:TOKEN)" (any user) */
static bool authorized(const struct mt_status *st, const struct mt_http_req *req)
{
    if (!st->sc.token)
        return true;
    const char *h = req->authorization;
    unsigned char buf[512];
    const unsigned char *given = NULL;
    size_t len = 0;
    if (!h)
        return false;
    if (strncasecmp(h, "Bearer ", 7) == 0) {
        given = (const unsigned char *)h + 7;
        len = strlen(h + 7);
    } else if (strncasecmp(h, "Basic ", 6) == 0) {
        size_t n;
        if (sodium_base642bin(buf, sizeof(buf) - 1, h + 6, strlen(h + 6), NULL, &n, NULL,
                              sodium_base64_VARIANT_ORIGINAL))
            return false;
        unsigned char *colon = memchr(buf, ':', n);
        if (!colon)
            return false;
        given = colon + 1;
        len = n - (size_t)(given - buf);
    }
    /* the length is no secret worth hiding; the bytes are compared in
     * constant time */
    bool ok = given && len == st->sc.token_len && sodium_memcmp(given, st->sc.token, len) == 0;
    sodium_memzero(buf, sizeof(buf));
    return ok;
}

static void ask_snapshot(void *arg)
{
    struct mt_status *st = arg;
    uv_async_send(&st->async);
}

/* detail: the request shows every device (/status, /metrics); /health and
 * STATUS= need only a summary */
static struct mt_snap *fresh_snap(struct mt_status *st, bool detail)
{
    if (detail)
        atomic_store(&st->detail_until,
                     mt_mono_us() + DETAIL_REFRESHES * st->sc.refresh_ms * 1000);
    return mt_statusd_fresh_snap(st->board, FRESH_US, detail, WAIT_US, ask_snapshot, st);
}

static void health_now(struct mt_status *st, const struct mt_snap *s, const struct mt_facts *f,
                       struct mt_health *h)
{
    mt_health_eval(s, f, &st->sc.health, mt_now_us(), mt_mono_us(), h);
}

static bool arg_on(const struct mt_http_req *req, const char *name)
{
    char v[8];
    return mt_http_arg(req, name, v, sizeof(v)) && strcmp(v, "0") != 0;
}

static void route_health(struct mt_status *st, const struct mt_http_req *req,
                         struct mt_http_resp *r, const struct mt_snap *s,
                         const struct mt_facts *f)
{
    struct mt_health h;
    struct mt_buf b = {0};

    health_now(st, s, f, &h);
    mt_buf_printf(&b, "%s\n", mt_health_name(h.level));
    for (size_t i = 0; i < h.n; i++)
        mt_buf_printf(&b, "%s\n", h.reasons[i]);
    bool strict = arg_on(req, "strict");
    unsigned code = h.level == MT_HEALTH_FAILING || (strict && h.level != MT_HEALTH_OK) ? 503 : 200;
    reply(st, r, code, "text/plain; charset=utf-8", &b);
    mt_http_header(r, "X-Mittari-Health", mt_health_name(h.level));
}

static void route_status(struct mt_status *st, const struct mt_http_req *req,
                         struct mt_http_resp *r, const struct mt_snap *s,
                         const struct mt_facts *f)
{
    struct mt_health h;
    struct mt_buf b = {0};
    char fmt[8] = "json";

    if (mt_http_arg(req, "format", fmt, sizeof(fmt)) && strcmp(fmt, "json") != 0 &&
        strcmp(fmt, "text") != 0) {
        reply_text(st, r, 400, "format is json or text\n");
        return;
    }
    health_now(st, s, f, &h);
    if (strcmp(fmt, "text") == 0) {
        mt_report_text(s, f, &h, mt_now_us(), &b);
        reply(st, r, 200, "text/plain; charset=utf-8", &b);
    } else {
        mt_report_json(s, f, &h, mt_now_us(), &b);
        reply(st, r, 200, "application/json", &b);
    }
    mt_http_header(r, "X-Mittari-Health", mt_health_name(h.level));
}

static void route_metrics(struct mt_status *st, struct mt_http_resp *r, const struct mt_snap *s,
                          const struct mt_facts *f)
{
    struct mt_health h;
    struct mt_buf b = {0};

    if (!s) {
        reply_text(st, r, 503, "starting\n");
        return;
    }
    health_now(st, s, f, &h);
    mt_metrics_write(s, f, &h, mt_now_us(), &b);
    reply(st, r, 200, MT_METRICS_CONTENT_TYPE, &b);
}

static void route_visitors(struct mt_status *st, const struct mt_http_req *req,
                           struct mt_http_resp *r)
{
    char day[16];
    struct mt_buf b = {0};
    char err[200];
    bool has = mt_http_arg(req, "day", day, sizeof(day));

    if (!has && strstr(req->query, "day=")) { /* a value too long to be a date */
        reply_text(st, r, 400, "day is a date YYYY-MM-DD\n");
        return;
    }
    mt_statusd_kick(st->board, true);
    int rc = mt_statusd_day_json(st->board, has && day[0] ? day : NULL, mt_now_us(), &b, err,
                                 sizeof(err));
    if (rc) {
        mt_buf_free(&b);
        mt_buf_printf(&b, "%s\n", rc == -ENOMEM ? "out of memory" : err);
        unsigned code = rc == -ERANGE                      ? 404
                        : rc == -EINVAL                    ? 400
                        : rc == -EBUSY || rc == -ECANCELED ? 503
                                                           : 500;
        reply(st, r, code, "text/plain; charset=utf-8", &b);
        return;
    }
    reply(st, r, 200, "application/json", &b);
}

static void route_page(struct mt_status *st, struct mt_http_resp *r)
{
    struct mt_buf b = {0};
    mt_buf_add(&b, mt_page_html, mt_page_html_len);
    reply(st, r, 200, "text/html; charset=utf-8", &b);
    mt_http_header(r, "Content-Security-Policy",
                   "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                   "connect-src 'self'; img-src 'self' data:; base-uri 'none'; "
                   "form-action 'none'; frame-ancestors 'none'");
    mt_http_header(r, "X-Frame-Options", "DENY");
    mt_http_header(r, "Referrer-Policy", "no-referrer");
}

static void handle(void *arg, const struct mt_http_req *req, struct mt_http_resp *r)
{
    struct mt_status *st = arg;

    if (!authorized(st, req)) {
        reply_text(st, r, 401, "a token is required: Authorization: Bearer TOKEN\n");
        mt_http_header(r, "WWW-Authenticate", "Basic realm=\"mittari\", charset=\"UTF-8\"");
        return;
    }
    if (strcmp(req->path, "/") == 0) {
        route_page(st, r);
        return;
    }
    if (strcmp(req->path, "/visitors") == 0) {
        route_visitors(st, req, r);
        return;
    }
    bool health = strcmp(req->path, "/health") == 0, status = strcmp(req->path, "/status") == 0;
    if (!health && !status && strcmp(req->path, "/metrics") != 0) {
        reply_text(st, r, 404, "not found; routes: / /health /status /metrics /visitors\n");
        return;
    }
    struct mt_snap *s = fresh_snap(st, !health);
    struct mt_facts *f = mt_statusd_facts(st->board);
    mt_statusd_kick(st->board, true); /* the log's figures, as fresh as refresh allows */
    if (health)
        route_health(st, req, r, s, f);
    else if (status)
        route_status(st, req, r, s, f);
    else
        route_metrics(st, r, s, f);
    mt_facts_unref(f);
    mt_snap_unref(s);
}

/* ---- the loop's side ---- */

static int open_socket(const struct mt_listen *l, struct mt_listen *bound)
{
    int one = 1;
    int fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&l->addr, l->addrlen) || listen(fd, 32)) {
        int e = -errno;
        close(fd);
        return e;
    }
    /* the port the kernel chose for port 0 */
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    *bound = *l;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0) {
        unsigned port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                       : ((struct sockaddr_in *)&ss)->sin_port);
        char text[80];
        char *colon = strrchr(bound->text, ':');
        if (colon) {
            snprintf(text, sizeof(text), "%.*s:%u", (int)(colon - bound->text), bound->text,
                     port);
            snprintf(bound->text, sizeof(bound->text), "%s", text);
        }
        bound->port = port;
    }
    return fd;
}

static char *server_canon(const struct mt_status_conf *c)
{
    struct mt_buf b = {0};
    mt_buf_printf(&b, "%s|%s|%lld|%lld|%lld|%lld", c->listen, c->token ? c->token : "",
                  (long long)c->connections, (long long)c->timeout_ms, (long long)c->refresh_ms,
                  (long long)c->backlog_warn_ms);
    return b.p;
}

static char *board_canon(const struct mt_config *c)
{
    struct mt_buf b = {0};
    mt_buf_printf(&b, "%s|%s|%lld|%d", c->agent.timezone, c->status.visitors,
                  (long long)c->status.refresh_ms, strcmp(c->status.listen, "off") != 0);
    return b.p;
}

static void server_stop(struct mt_status *st)
{
    /* a request waiting for the loop, or scanning an old day, ends now:
     * joining its thread must not hold the loop */
    mt_statusd_quiesce(st->board, true);
    mt_httpd_stop(st->httpd);
    st->httpd = NULL;
    mt_statusd_quiesce(st->board, false);
    if (st->sc.token)
        sodium_memzero(st->sc.token, st->sc.token_len);
    free(st->sc.token);
    st->sc.token = NULL;
    free(st->canon_server);
    st->canon_server = NULL;
}

static void server_start(struct mt_status *st, const struct mt_status_conf *c)
{
    struct mt_listen l, bound;
    char err[200];

    st->canon_server = server_canon(c);
    st->sc.health.stall_us = STALL_US;
    st->sc.health.backlog_warn_us = c->backlog_warn_ms * 1000;
    st->sc.refresh_ms = c->refresh_ms;
    if (mt_listen_parse(c->listen, &l, err, sizeof(err)) || l.off)
        return; /* check refused a bad one; off is off */
    if (c->token) {
        st->sc.token = strdup(c->token);
        st->sc.token_len = strlen(c->token);
    }
    int fd = open_socket(&l, &bound);
    if (fd < 0) {
        mt_diag(MT_WARNING, MOD,
                "cannot listen on %s: %s; the status endpoint is off until the next reload",
                l.text, strerror(-fd));
        return;
    }
    struct mt_httpd_conf hc = {
        .max_conns = (unsigned)c->connections,
        .timeout_ms = c->timeout_ms,
        .handler = handle,
        .arg = st,
    };
    int rc = mt_httpd_start(&st->httpd, fd, &hc);
    if (rc) {
        mt_diag(MT_WARNING, MOD, "cannot start the status endpoint on %s: %s", bound.text,
                strerror(-rc));
        return;
    }
    mt_diag(MT_INFO, MOD, "status endpoint on http://%s/%s", bound.text,
            c->token ? " (token required)" : "");
}

static void board_start(struct mt_status *st, const struct mt_config *c)
{
    struct mt_statusd_conf bc = {
        .db_path = st->db_path,
        .timezone = c->agent.timezone,
        .visitors = c->status.visitors,
        .refresh_ms = c->status.refresh_ms,
        .count_visitors = strcmp(c->status.listen, "off") != 0,
        .series = st->series,
    };
    st->canon_board = board_canon(c);
    int rc = mt_statusd_start(&st->board, &bc);
    if (rc)
        mt_diag(MT_ERR, MOD, "cannot start the status worker: %s", strerror(-rc));
}

static void board_stop(struct mt_status *st)
{
    mt_statusd_stop(st->board);
    st->board = NULL;
    free(st->canon_board);
    st->canon_board = NULL;
}

/* figures over the last minute: against the newest periodic sample at
 * least a minute old (with a refresh longer than a minute, the last one);
 * the loop's longest turn since then */
static void fill_recent(struct mt_status *st, struct mt_snap *s)
{
    uint64_t refused = s->w.refused_queue + s->w.refused_full;
    const struct sample *base = NULL;
    s->recent_lag_max_ns = st->lag.max_ns;
    for (size_t k = 0; k < st->nhist; k++) { /* newest first */
        const struct sample *x = &st->hist[(st->ihist + HISTORY - 1 - k) % HISTORY];
        base = x;
        if (s->taken_mono_us - x->at >= RECENT_US)
            break;
        if (x->lag_max_ns > s->recent_lag_max_ns)
            s->recent_lag_max_ns = x->lag_max_ns;
    }
    s->recent_refused = base ? refused - base->refused : 0;
    s->recent_dropped = base ? s->w.dropped_cap - base->dropped : 0;
}

/* a periodic snapshot: one sample of the history */
static void record_sample(struct mt_status *st, const struct mt_snap *s)
{
    st->hist[st->ihist] = (struct sample){s->taken_mono_us, s->w.refused_queue + s->w.refused_full,
                                          s->w.dropped_cap, st->lag.max_ns};
    st->lag.max_ns = 0; /* the maximum is per sample */
    st->ihist = (st->ihist + 1) % HISTORY;
    if (st->nhist < HISTORY)
        st->nhist++;
}

/* the worker reads the log again when something in it changed */
static void kick_if_changed(struct mt_status *st, const struct mt_snap *s)
{
    int64_t cursors = 0;
    for (size_t i = 0; i < s->noutputs; i++)
        cursors += s->outputs[i].cursor;
    if (s->committed == st->kicked_committed && cursors == st->kicked_cursors)
        return;
    st->kicked_committed = s->committed;
    st->kicked_cursors = cursors;
    mt_statusd_kick(st->board, false);
}

/* systemd's STATUS=: when the health changes, else at most every 10 s */
static void notify(struct mt_status *st, const struct mt_snap *s)
{
    struct mt_facts *f = st->board ? mt_statusd_facts(st->board) : NULL;
    struct mt_health h;
    char line[sizeof(st->line)];
    int64_t now = mt_mono_us();

    mt_health_eval(s, f, &st->sc.health, s->taken_us, s->taken_mono_us, &h);
    mt_report_status_line(s, f, &h, s->taken_us, line, sizeof(line));
    mt_facts_unref(f);
    if (h.level == st->line_level && (now - st->line_at < NOTIFY_US || !strcmp(line, st->line)))
        return;
    if (h.level != st->line_level && st->line_at)
        mt_diag(h.level == MT_HEALTH_OK ? MT_NOTICE : MT_WARNING, MOD, "health %s", line);
    st->line_level = h.level;
    st->line_at = now;
    snprintf(st->line, sizeof(st->line), "%s", line);
    char msg[sizeof(line) + 8];
    snprintf(msg, sizeof(msg), "STATUS=%s", line);
    mt_sdnotify(msg);
}

static void snapshot(struct mt_status *st, bool periodic)
{
    struct mt_snap *s;
    bool detail = mt_mono_us() < atomic_load(&st->detail_until);
    if (mt_snap_take(st->agent, &st->lag, st->started_us, detail, &s))
        return;
    fill_recent(st, s);
    if (periodic)
        record_sample(st, s);
    if (st->board) {
        mt_statusd_publish(st->board, mt_snap_ref(s));
        if (periodic)
            kick_if_changed(st, s);
    }
    notify(st, s);
    mt_snap_unref(s);
}

static void timer_cb(uv_timer_t *t)
{
    snapshot(t->data, true);
}

static void async_cb(uv_async_t *a)
{
    snapshot(a->data, false);
}

int mt_status_start(struct mt_status **out, uv_loop_t *loop, struct mt_agent *agent,
                    const char *db_path, const struct mt_series_reg *series)
{
    const struct mt_config *c = mt_agent_config(agent);
    struct mt_status *st = calloc(1, sizeof(*st));

    *out = NULL;
    if (!st)
        return -ENOMEM;
    st->loop = loop;
    st->agent = agent;
    st->db_path = db_path;
    st->series = series;
    st->started_us = mt_now_us();
    st->line_level = -1;
    atomic_init(&st->detail_until, 0);
    board_start(st, c);
    snapshot(st, true); /* /health answers from the first request on */
    uv_timer_init(loop, &st->timer);
    st->timer.data = st;
    st->snap_ms = (uint64_t)c->status.refresh_ms;
    uv_timer_start(&st->timer, timer_cb, st->snap_ms, st->snap_ms);
    uv_unref((uv_handle_t *)&st->timer);
    if (uv_async_init(loop, &st->async, async_cb) == 0) {
        st->async.data = st;
        st->async_inited = true;
        uv_unref((uv_handle_t *)&st->async);
        server_start(st, &c->status); /* its threads send to the async handle */
    }
    *out = st;
    return 0;
}

void mt_status_reconfigure(struct mt_status *st)
{
    const struct mt_config *c = mt_agent_config(st->agent);
    char *sc = server_canon(&c->status), *bc = board_canon(c);
    bool server = !sc || !st->canon_server || strcmp(sc, st->canon_server) != 0;
    bool board = !bc || !st->canon_board || strcmp(bc, st->canon_board) != 0;

    free(sc);
    free(bc);
    if (st->snap_ms != (uint64_t)c->status.refresh_ms) {
        st->snap_ms = (uint64_t)c->status.refresh_ms;
        uv_timer_start(&st->timer, timer_cb, st->snap_ms, st->snap_ms);
    }
    if (!server && !board)
        return;
    /* the server's thread reads the board: stop it first, start it last */
    server_stop(st);
    if (board) {
        board_stop(st);
        board_start(st, c);
        snapshot(st, false);
    }
    if (st->async_inited)
        server_start(st, &c->status);
}

static void closed(uv_handle_t *h)
{
    struct mt_status *st = h->data;
    if (--st->closing == 0) {
        free(st);
    }
}

void mt_status_stop(struct mt_status *st)
{
    if (!st)
        return;
    server_stop(st); /* no thread sends to the async handle any more */
    board_stop(st);
    st->closing = 1;
    uv_close((uv_handle_t *)&st->timer, closed);
    if (st->async_inited) {
        st->closing++;
        uv_close((uv_handle_t *)&st->async, closed);
    }
}
