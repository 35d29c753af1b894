/*
 * postgresql output: inserts each batch into a table with
 *   INSERT ... SELECT ... FROM unnest(arrays) ON CONFLICT (agent_id,
 *   generation, seq, time) DO NOTHING
 * in one statement (one transaction): a batch sent again after a crash, a
 * timeout or a replay changes nothing, so every reading is in the table
 * exactly once. Creates the table if allowed (docs/outputs/postgresql.md).
 *
 * Asynchronous type on the loop with libpq's non-blocking API: the host name
 * is resolved with uv_getaddrinfo (on libuv's threads) and handed to libpq
 * as hostaddr, the connection is made with PQconnectStartParams /
 * PQconnectPoll, queries go out with PQsendQueryPrepared / PQflush and
 * results come back with PQconsumeInput / PQgetResult, all driven by a
 * uv_poll on the connection's socket. encode() builds the arrays' text on a
 * worker while the previous batch is inserted.
 *
 * Errors: a data or constraint error (SQLSTATE classes 22 and 23) refuses
 * the batch for good (it is parked); anything else (connection lost, server
 * restarting, table missing, permissions) is transient: the connection is
 * dropped and made again on the retry.
 */
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../diag.h"
#include "../encode.h"
#include "../output.h"
#include "../util.h"

#define NPARAMS 14

struct pg_conf {
    const char *conninfo;
    const char *password;
    const char *table;
    bool create_table;
    int64_t connect_timeout_ms, timeout_ms;
};

static const struct mittari_option pg_options[] = {
    {.name = "conninfo", .type = MITTARI_OPT_STRING, .flags = MITTARI_OPT_REQUIRED,
     .offset = offsetof(struct pg_conf, conninfo),
     .help = "libpq connection string, e.g. 'host=db.example port=5432 dbname=hyte user=mittari "
             "sslmode=verify-full sslrootcert=/etc/mittari/ca.pem' (no password here)."},
    {.name = "password", .type = MITTARI_OPT_STRING, .flags = MITTARI_OPT_SECRET,
     .offset = offsetof(struct pg_conf, password), .help = "Password; use password_file."},
    {.name = "table", .type = MITTARI_OPT_STRING, .def = "mittari_readings",
     .offset = offsetof(struct pg_conf, table),
     .help = "Table (optionally schema.table) the readings go into."},
    {.name = "create_table", .type = MITTARI_OPT_BOOL, .def = "true",
     .offset = offsetof(struct pg_conf, create_table),
     .help = "Create the table and its time index if they do not exist."},
    {.name = "connect_timeout", .type = MITTARI_OPT_DURATION, .def = "10s", .min = 100,
     .max = 600000, .offset = offsetof(struct pg_conf, connect_timeout_ms),
     .help = "Longest connecting (with TLS and setup) may take."},
    {.name = "timeout", .type = MITTARI_OPT_DURATION, .def = "60s", .min = 100, .max = 3600000,
     .offset = offsetof(struct pg_conf, timeout_ms),
     .help = "Longest one batch's insert may take; then the connection is dropped and the batch "
             "retried."},
    {0},
};

enum cstate { C_DOWN, C_RESOLVING, C_CONNECTING, C_SETUP, C_READY, C_BUSY };

struct pollh {
    uv_poll_t poll;
    struct pg_out *pg;
};

struct pg_out {
    const struct pg_conf *conf;
    char module[96];
    uv_loop_t *loop;
    enum cstate cs;
    PGconn *conn;
    struct pollh *ph;
    int ph_fd;
    bool flushing;
    uv_timer_t timer;
    uv_getaddrinfo_t gai;
    bool gai_busy;
    char hostaddr[64];
    int setup_step; /* SETUP_* */
    PGresult *last;
    struct mt_send *inflight;
    char error[256]; /* the last connection problem, kept for the send that waits */
    char *sql_setup, *sql_insert;
    char *index_name; /* [schema.]table_time_idx, as the setup names it */
    int handles;
    void (*closed)(void *arg);
    void *closed_arg;
    bool closing;
};


static bool valid_ident(const char *s, size_t n)
{
    if (n == 0 || n > 63 || (s[0] >= '0' && s[0] <= '9'))
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return false;
    }
    return true;
}

static int pg_check(const void *conf, char *err, size_t errlen)
{
    const struct pg_conf *c = conf;
    const char *dot = strchr(c->table, '.');
    char *perr = NULL;

    if (dot ? !valid_ident(c->table, (size_t)(dot - c->table)) ||
                  !valid_ident(dot + 1, strlen(dot + 1))
            : !valid_ident(c->table, strlen(c->table))) {
        snprintf(err, errlen, "table '%s': letters, digits and _ (schema.table allowed)",
                 c->table);
        return -EINVAL;
    }
    PQconninfoOption *opts = PQconninfoParse(c->conninfo, &perr);
    if (!opts) {
        snprintf(err, errlen, "conninfo: %s", perr ? perr : "out of memory");
        for (char *p = err; *p; p++)
            if (*p == '\n')
                *p = ' ';
        PQfreemem(perr);
        return -EINVAL;
    }
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (strcmp(o->keyword, "password") == 0 && o->val && *o->val) {
            PQconninfoFree(opts);
            snprintf(err, errlen, "conninfo holds a password: give it with password_file");
            return -EINVAL;
        }
    }
    PQconninfoFree(opts);
    return 0;
}

/* ---- SQL ---- */

static char *make_sql(const char *fmt, const char *table, const char *short_name)
{
    struct mt_buf b = {0};
    if (mt_buf_printf(&b, fmt, table, short_name, table)) {
        mt_buf_free(&b);
        return NULL;
    }
    return b.p;
}

/* TimescaleDB: the unique index holds time (a hypertable's unique indexes
 * must); a (agent_id, generation, seq) names one reading, whose time never
 * changes, so a re-sent reading still conflicts and is not inserted again. */
static const char setup_fmt[] =
    "CREATE TABLE IF NOT EXISTS %1$s ("
    " time timestamptz NOT NULL,"
    " site text NOT NULL,"
    " device text NOT NULL,"
    " metric text NOT NULL,"
    " value double precision,"
    " unit text,"
    " kind text NOT NULL,"
    " subject text,"
    " tags jsonb,"
    " revision smallint NOT NULL DEFAULT 0,"
    " suppressed_below smallint,"
    " agent_id text NOT NULL,"
    " generation bigint NOT NULL,"
    " seq bigint NOT NULL,"
    " received_at timestamptz NOT NULL DEFAULT now(),"
    " PRIMARY KEY (agent_id, generation, seq, time));"
    "CREATE INDEX IF NOT EXISTS %2$s_time_idx ON %1$s (time);";

/* Asked before the setup: DDL takes locks even when there is nothing to do
 * (CREATE INDEX IF NOT EXISTS waits for a SHARE lock on the table, behind
 * every insert in progress and ahead of every new one: a fleet reconnecting
 * after a database restart would queue on its own table). to_regclass only
 * looks the names up. */
static const char check_sql[] =
    "SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL";

static const char insert_fmt[] =
    "INSERT INTO %1$s (time, site, device, metric, value, unit, kind, subject, tags, revision,"
    " suppressed_below, seq, agent_id, generation)"
    " SELECT u.*, $13::text, $14::bigint FROM unnest($1::timestamptz[], $2::text[], $3::text[],"
    " $4::text[], $5::float8[], $6::text[], $7::text[], $8::text[], $9::jsonb[], $10::int2[],"
    " $11::int2[], $12::int8[]) AS u"
    " ON CONFLICT (agent_id, generation, seq, time) DO NOTHING";

/* ---- encode (worker) ---- */

static int arr_str(struct mt_buf *b, const char *s)
{
    if (!s)
        return mt_buf_adds(b, "NULL");
    int rc = mt_buf_addc(b, '"');
    while (*s && !rc) {
        size_t n = strcspn(s, "\"\\");
        rc = mt_buf_add(b, s, n); /* the usual case: nothing to escape */
        s += n;
        if (*s) {
            rc |= mt_buf_addc(b, '\\');
            rc |= mt_buf_addc(b, *s++);
        }
    }
    return rc | mt_buf_addc(b, '"');
}

/* "2026-11-25T15:25:44.123456Z", the date part made once per second */
struct tscache {
    int64_t sec;
    char text[24];
};

static void fmt_ts(struct tscache *c, int64_t us, char out[32])
{
    int64_t sec = us / 1000000, frac = us % 1000000;
    if (frac < 0) {
        frac += 1000000;
        sec--;
    }
    if (sec != c->sec) {
        mt_fmt_utc(sec * 1000000, c->text, sizeof(c->text), 0); /* ...:44Z */
        c->text[19] = 0;
        c->sec = sec;
    }
    memcpy(out, c->text, 19);
    out[19] = '.';
    for (int i = 25; i >= 20; i--) {
        out[i] = (char)('0' + frac % 10);
        frac /= 10;
    }
    out[26] = 'Z';
    out[27] = 0;
}

enum { A_TIME, A_SITE, A_DEVICE, A_METRIC, A_VALUE, A_UNIT, A_KIND, A_SUBJECT, A_TAGS, A_REV,
       A_SUPP, A_SEQ, NARR };

/* Filled again for the slot's next batch (output.h). */
struct payload {
    struct mt_buf text;      /* NPARAMS NUL-terminated values */
    const char *values[NPARAMS];
    struct mt_buf a[NARR];   /* encode scratch: the arrays' text */
};

static int add_row(struct mt_buf *a, struct tscache *tc, const struct mt_row *r,
                   const struct mt_series_info *s, bool first)
{
    bool supp = r->flags & MT_RF_SUPPRESSED;
    char ts[32];
    int rc = 0;

    if (!first)
        for (int k = 0; k < NARR; k++)
            rc |= mt_buf_addc(&a[k], ',');
    fmt_ts(tc, r->ts, ts);
    rc |= arr_str(&a[A_TIME], ts);
    rc |= arr_str(&a[A_SITE], s ? s->site : "");
    rc |= arr_str(&a[A_DEVICE], s ? s->device : "");
    rc |= arr_str(&a[A_METRIC], s ? s->metric : "");
    rc |= supp ? mt_buf_adds(&a[A_VALUE], "NULL") : mt_buf_double(&a[A_VALUE], r->value);
    rc |= arr_str(&a[A_UNIT], s && s->unit[0] ? s->unit : NULL);
    rc |= arr_str(&a[A_KIND], mt_kind_name(s ? s->kind : -1));
    rc |= arr_str(&a[A_SUBJECT], r->subject[0] ? r->subject : NULL);
    rc |= arr_str(&a[A_TAGS], s && s->tags[0] ? s->tags : NULL);
    rc |= mt_buf_i64(&a[A_REV], MT_RF_REVISION(r->flags));
    rc |= supp ? mt_buf_i64(&a[A_SUPP], r->min_count) : mt_buf_adds(&a[A_SUPP], "NULL");
    rc |= mt_buf_i64(&a[A_SEQ], r->seq);
    return rc;
}

static void free_payload(struct payload *p)
{
    mt_buf_free(&p->text);
    for (int k = 0; k < NARR; k++)
        mt_buf_free(&p->a[k]);
    free(p);
}

static int pg_encode(void *state, const struct mt_batch *b, void **payload,
                     struct mt_deliver_result *res)
{
    struct payload *p = *payload ? *payload : calloc(1, sizeof(*p));
    struct mt_buf *a;
    struct tscache tc = {.sec = INT64_MIN};
    size_t off[NPARAMS], want = 0;
    int rc = 0;

    (void)state;
    *payload = NULL;
    if (!p)
        return -ENOMEM;
    a = p->a;
    for (int k = 0; k < NARR; k++) {
        size_t w = b->n * (k == A_TIME ? 32 : 16) + 2;
        mt_buf_refill(&a[k], w);
        want += w;
        rc |= mt_buf_reserve(&a[k], w) | mt_buf_addc(&a[k], '{');
    }
    mt_buf_refill(&p->text, want);
    for (size_t i = 0; i < b->n && !rc; i++)
        rc = add_row(a, &tc, &b->rows[i], mt_series_get(b->series, b->rows[i].series), i == 0);
    for (int k = 0; k < NARR && !rc; k++) {
        rc = mt_buf_addc(&a[k], '}');
        off[k] = p->text.len;
        rc = rc ? rc : mt_buf_add(&p->text, a[k].p, a[k].len + 1); /* with its NUL */
    }
    off[NARR] = p->text.len;
    rc = rc ? rc : mt_buf_add(&p->text, b->agent_id, strlen(b->agent_id) + 1);
    off[NARR + 1] = p->text.len;
    rc = rc ? rc : mt_buf_printf(&p->text, "%" PRId64, b->generation);
    rc = rc ? rc : mt_buf_addc(&p->text, 0);
    if (rc) {
        snprintf(res->error, sizeof(res->error), "cannot encode the batch: out of memory");
        free_payload(p);
        return -ENOMEM;
    }
    for (int k = 0; k < NPARAMS; k++)
        p->values[k] = p->text.p + off[k];
    *payload = p;
    return 0;
}

static void pg_free_payload(void *state, void *payload)
{
    (void)state;
    free_payload(payload);
}

/* ---- the connection (loop) ---- */

static void on_io(uv_poll_t *h, int status, int events);

static void poll_closed(uv_handle_t *h)
{
    struct pollh *ph = h->data;
    struct pg_out *pg = ph->pg;
    free(ph);
    if (--pg->handles == 0 && pg->closed)
        pg->closed(pg->closed_arg);
}

static void drop_poll(struct pg_out *pg)
{
    if (!pg->ph)
        return;
    uv_poll_stop(&pg->ph->poll);
    uv_close((uv_handle_t *)&pg->ph->poll, poll_closed);
    pg->ph = NULL;
}

/* Watch the connection's socket (it may change while connecting). */
static int watch(struct pg_out *pg, int events)
{
    int fd = PQsocket(pg->conn);
    if (fd < 0)
        return -EIO;
    if (pg->ph && pg->ph_fd != fd)
        drop_poll(pg);
    if (!pg->ph) {
        struct pollh *ph = calloc(1, sizeof(*ph));
        if (!ph)
            return -ENOMEM;
        if (uv_poll_init_socket(pg->loop, &ph->poll, fd)) {
            free(ph);
            return -EIO;
        }
        ph->pg = pg;
        ph->poll.data = ph;
        pg->ph = ph;
        pg->ph_fd = fd;
        pg->handles++;
    }
    return uv_poll_start(&pg->ph->poll, events, on_io) ? -EIO : 0;
}

static void one_line(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == ' '))
        s[--n] = 0;
    for (char *p = s; *p; p++)
        if (*p == '\n' || *p == '\t')
            *p = ' ';
}

/* Ends the connection; a send waiting on it fails (transient) with why. */
static void fail(struct pg_out *pg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct pg_out *pg, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pg->error, sizeof(pg->error), fmt, ap);
    va_end(ap);
    one_line(pg->error);
    uv_timer_stop(&pg->timer);
    drop_poll(pg); /* before the socket is closed */
    if (pg->last) {
        PQclear(pg->last);
        pg->last = NULL;
    }
    if (pg->conn) {
        PQfinish(pg->conn);
        pg->conn = NULL;
    }
    pg->cs = C_DOWN;
    struct mt_send *s = pg->inflight;
    if (s) {
        pg->inflight = NULL;
        snprintf(s->res.error, sizeof(s->res.error), "%s", pg->error);
        s->done(s, -EAGAIN);
    }
}

static void timeout_cb(uv_timer_t *t)
{
    struct pg_out *pg = t->data;
    if (pg->cs == C_BUSY)
        fail(pg, "insert took longer than %" PRId64 " ms; reconnecting", pg->conf->timeout_ms);
    else if (pg->cs != C_DOWN && pg->cs != C_READY)
        fail(pg, "cannot connect within %" PRId64 " ms", pg->conf->connect_timeout_ms);
}

static void notice_cb(void *arg, const char *msg)
{
    struct pg_out *pg = arg;
    mt_diag(MT_DEBUG, pg->module, "server: %.*s", (int)strcspn(msg, "\n"), msg);
}

/* Sends what libpq has buffered; watches for what comes next. */
static void flush_and_watch(struct pg_out *pg)
{
    int f = PQflush(pg->conn);
    if (f < 0) {
        fail(pg, "cannot send to the server: %s", PQerrorMessage(pg->conn));
        return;
    }
    pg->flushing = f == 1;
    if (watch(pg, UV_READABLE | (pg->flushing ? UV_WRITABLE : 0)))
        fail(pg, "cannot watch the connection");
}

static void start_connect(struct pg_out *pg)
{
    const char *kw[64], *val[64];
    char *perr = NULL;
    size_t n = 0;

    PQconninfoOption *opts = PQconninfoParse(pg->conf->conninfo, &perr);
    if (!opts) {
        PQfreemem(perr);
        fail(pg, "bad conninfo");
        return;
    }
    for (PQconninfoOption *o = opts; o->keyword && n < 60; o++) {
        if (!o->val || !*o->val)
            continue;
        if (strcmp(o->keyword, "hostaddr") == 0 && pg->hostaddr[0])
            continue;
        kw[n] = o->keyword;
        val[n++] = o->val;
    }
    if (pg->hostaddr[0]) {
        kw[n] = "hostaddr";
        val[n++] = pg->hostaddr;
    }
    if (pg->conf->password) {
        kw[n] = "password";
        val[n++] = pg->conf->password;
    }
    kw[n] = val[n] = NULL;
    pg->conn = PQconnectStartParams(kw, val, 0);
    PQconninfoFree(opts);
    if (!pg->conn || PQstatus(pg->conn) == CONNECTION_BAD) {
        fail(pg, "cannot connect: %s", pg->conn ? PQerrorMessage(pg->conn) : "out of memory");
        return;
    }
    PQsetNoticeProcessor(pg->conn, notice_cb, pg);
    pg->cs = C_CONNECTING;
    if (watch(pg, UV_WRITABLE)) /* as if PQconnectPoll had said "writing" */
        fail(pg, "cannot watch the connection");
}

static void resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *ai)
{
    struct pg_out *pg = req->data;
    pg->gai_busy = false;
    if (pg->closing) {
        uv_freeaddrinfo(ai);
        if (--pg->handles == 0 && pg->closed)
            pg->closed(pg->closed_arg);
        return;
    }
    pg->handles--;
    if (pg->cs != C_RESOLVING) { /* given up on (a timeout) meanwhile */
        uv_freeaddrinfo(ai);
        return;
    }
    if (status || !ai) {
        fail(pg, "cannot resolve the database host: %s", uv_strerror(status));
        uv_freeaddrinfo(ai);
        return;
    }
    pg->hostaddr[0] = 0;
    if (ai->ai_family == AF_INET)
        uv_ip4_name((struct sockaddr_in *)ai->ai_addr, pg->hostaddr, sizeof(pg->hostaddr));
    else if (ai->ai_family == AF_INET6)
        uv_ip6_name((struct sockaddr_in6 *)ai->ai_addr, pg->hostaddr, sizeof(pg->hostaddr));
    uv_freeaddrinfo(ai);
    start_connect(pg);
}

/* DOWN -> RESOLVING -> CONNECTING: libpq would resolve a host name itself,
 * blocking; libuv resolves it on its threads instead. */
static void connect_db(struct pg_out *pg)
{
    char *perr = NULL, host[256] = "";
    bool has_addr = false;

    uv_timer_start(&pg->timer, timeout_cb, (uint64_t)pg->conf->connect_timeout_ms, 0);
    if (pg->gai_busy) {
        pg->cs = C_RESOLVING; /* the resolution already on its way goes on */
        return;
    }
    pg->hostaddr[0] = 0;
    PQconninfoOption *opts = PQconninfoParse(pg->conf->conninfo, &perr);
    if (!opts) {
        PQfreemem(perr);
        fail(pg, "bad conninfo");
        return;
    }
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (strcmp(o->keyword, "host") == 0 && o->val)
            snprintf(host, sizeof(host), "%s", o->val);
        if (strcmp(o->keyword, "hostaddr") == 0 && o->val && *o->val)
            has_addr = true;
    }
    PQconninfoFree(opts);
    struct in6_addr a6;
    bool needs_dns = host[0] && host[0] != '/' && host[0] != '@' && !has_addr &&
                     !strchr(host, ',') && uv_inet_pton(AF_INET, host, &a6) != 0 &&
                     uv_inet_pton(AF_INET6, host, &a6) != 0;
    if (!needs_dns) {
        start_connect(pg);
        return;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
    pg->cs = C_RESOLVING;
    pg->gai.data = pg;
    if (uv_getaddrinfo(pg->loop, &pg->gai, resolved, host, NULL, &hints)) {
        fail(pg, "cannot resolve %s", host);
        return;
    }
    pg->gai_busy = true;
    pg->handles++;
}

static void start_insert(struct pg_out *pg)
{
    struct payload *p = pg->inflight->payload;
    if (!PQsendQueryPrepared(pg->conn, "mt_insert", NPARAMS, p->values, NULL, NULL, 0)) {
        fail(pg, "cannot send the insert: %s", PQerrorMessage(pg->conn));
        return;
    }
    pg->cs = C_BUSY;
    uv_timer_start(&pg->timer, timeout_cb, (uint64_t)pg->conf->timeout_ms, 0);
    flush_and_watch(pg);
}

/* SETUP: look whether the table and its index are there; create them if
 * not (and allowed); prepare the insert. */
enum { SETUP_CHECK, SETUP_CREATE, SETUP_PREPARE, SETUP_DONE };

static void setup_next(struct pg_out *pg)
{
    int ok = 1;
    if (pg->setup_step == SETUP_CHECK && !pg->conf->create_table)
        pg->setup_step = SETUP_PREPARE;
    if (pg->setup_step == SETUP_CHECK) {
        const char *params[2] = {pg->conf->table, pg->index_name};
        ok = PQsendQueryParams(pg->conn, check_sql, 2, NULL, params, NULL, NULL, 0);
    } else if (pg->setup_step == SETUP_CREATE) {
        ok = PQsendQuery(pg->conn, pg->sql_setup);
    } else if (pg->setup_step == SETUP_PREPARE) {
        ok = PQsendPrepare(pg->conn, "mt_insert", pg->sql_insert, NPARAMS, NULL);
    }
    if (pg->setup_step >= SETUP_DONE) {
        uv_timer_stop(&pg->timer);
        pg->cs = C_READY;
        if (pg->inflight)
            start_insert(pg);
        else if (watch(pg, UV_READABLE)) /* to see the server go away */
            fail(pg, "cannot watch the connection");
        return;
    }
    if (!ok) {
        fail(pg, "cannot send the setup: %s", PQerrorMessage(pg->conn));
        return;
    }
    flush_and_watch(pg);
}

static bool permanent_state(const char *sqlstate)
{
    /* 22: data exception (a value the column cannot hold); 23: integrity
     * constraint (a check or foreign key of the warehouse refuses the row) */
    return sqlstate && (strncmp(sqlstate, "22", 2) == 0 || strncmp(sqlstate, "23", 2) == 0);
}

/* A command finished; last is its final result (owned here). */
static void command_done(struct pg_out *pg, PGresult *last)
{
    ExecStatusType st = last ? PQresultStatus(last) : PGRES_FATAL_ERROR;
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    const char *field = last ? PQresultErrorField(last, PG_DIAG_SQLSTATE) : NULL;
    char msg[200], state[8] = "";
    const char *sqlstate = NULL;

    if (field) { /* the result is cleared below: keep a copy */
        snprintf(state, sizeof(state), "%s", field);
        sqlstate = state;
    }
    snprintf(msg, sizeof(msg), "%s", last ? PQresultErrorMessage(last) : "no result");
    one_line(msg);
    if (pg->cs == C_SETUP) {
        static const char *const what[] = {"look up the table", "create the table",
                                           "prepare the insert into"};
        bool there = ok && pg->setup_step == SETUP_CHECK && PQntuples(last) == 1 &&
                     strcmp(PQgetvalue(last, 0, 0), "t") == 0;
        PQclear(last);
        if (!ok) {
            fail(pg, "cannot %s %s: %s (SQLSTATE %s)", what[pg->setup_step], pg->conf->table,
                 msg, sqlstate ? sqlstate : "?");
            return;
        }
        pg->setup_step = there ? SETUP_PREPARE : pg->setup_step + 1;
        setup_next(pg);
        return;
    }
    if (pg->cs != C_BUSY) {
        PQclear(last);
        return;
    }
    uv_timer_stop(&pg->timer);
    struct mt_send *s = pg->inflight;
    if (ok) {
        const char *n = PQcmdTuples(last);
        if (s && atoll(n) < (long long)s->batch->n)
            mt_diag(MT_DEBUG, pg->module, "batch %s: %s of %zu rows new (the rest were there)",
                    s->batch->key, n, s->batch->n);
        PQclear(last);
        pg->cs = C_READY;
        if (watch(pg, UV_READABLE)) {
            fail(pg, "cannot watch the connection");
            return;
        }
        pg->inflight = NULL;
        s->done(s, 0);
        return;
    }
    PQclear(last);
    if (permanent_state(sqlstate)) {
        pg->cs = C_READY;
        pg->inflight = NULL;
        snprintf(s->res.error, sizeof(s->res.error), "insert into %s refused: %s (SQLSTATE %s)",
                 pg->conf->table, msg, sqlstate);
        s->done(s, -EPROTO);
        return;
    }
    fail(pg, "insert into %s failed: %s (SQLSTATE %s)", pg->conf->table, msg,
         sqlstate ? sqlstate : "?");
}

static void read_results(struct pg_out *pg)
{
    if (!PQconsumeInput(pg->conn)) {
        fail(pg, "connection lost: %s", PQerrorMessage(pg->conn));
        return;
    }
    while (pg->conn && !PQisBusy(pg->conn)) {
        PGresult *r = PQgetResult(pg->conn);
        if (!r) {
            PGresult *last = pg->last;
            pg->last = NULL;
            if (pg->cs == C_READY) {
                PQclear(last);
                return;
            }
            command_done(pg, last);
            return;
        }
        if (pg->last)
            PQclear(pg->last);
        pg->last = r;
    }
}

static void connect_step(struct pg_out *pg)
{
    switch (PQconnectPoll(pg->conn)) {
    case PGRES_POLLING_READING:
        if (watch(pg, UV_READABLE))
            fail(pg, "cannot watch the connection");
        return;
    case PGRES_POLLING_WRITING:
        if (watch(pg, UV_WRITABLE))
            fail(pg, "cannot watch the connection");
        return;
    case PGRES_POLLING_OK:
        if (PQsetnonblocking(pg->conn, 1)) {
            fail(pg, "cannot make the connection non-blocking");
            return;
        }
        pg->cs = C_SETUP;
        pg->setup_step = SETUP_CHECK;
        setup_next(pg);
        return;
    default:
        fail(pg, "cannot connect: %s", PQerrorMessage(pg->conn));
        return;
    }
}

static void on_io(uv_poll_t *h, int status, int events)
{
    struct pollh *ph = h->data;
    struct pg_out *pg = ph->pg;

    (void)status;
    if (!pg->conn || pg->ph != ph)
        return;
    if (pg->cs == C_CONNECTING) {
        connect_step(pg);
        return;
    }
    if ((events & UV_WRITABLE) && pg->flushing) {
        flush_and_watch(pg);
        if (!pg->conn)
            return;
    }
    if ((events & UV_READABLE) || status < 0)
        read_results(pg);
}

/* ---- the type ---- */

static void pg_send(void *state, struct mt_send *s)
{
    struct pg_out *pg = state;
    pg->inflight = s;
    switch (pg->cs) {
    case C_DOWN: connect_db(pg); return;
    case C_READY: start_insert(pg); return;
    default: return; /* connecting: the insert follows the setup */
    }
}

static void pg_abort(void *state)
{
    struct pg_out *pg = state;
    if (pg->inflight)
        fail(pg, "stopped before the database answered");
}

static void timer_closed(uv_handle_t *h)
{
    struct pg_out *pg = h->data;
    if (--pg->handles == 0 && pg->closed)
        pg->closed(pg->closed_arg);
}

static void pg_close(void *state, void (*done)(void *arg), void *arg)
{
    struct pg_out *pg = state;
    pg->closed = done;
    pg->closed_arg = arg;
    pg->closing = true;
    drop_poll(pg);
    if (pg->conn) {
        PQfinish(pg->conn);
        pg->conn = NULL;
    }
    if (pg->gai_busy)
        uv_cancel((uv_req_t *)&pg->gai);
    uv_close((uv_handle_t *)&pg->timer, timer_closed);
}

static void pg_destroy(void *state)
{
    struct pg_out *pg = state;
    if (pg->last)
        PQclear(pg->last);
    if (pg->conn)
        PQfinish(pg->conn);
    free(pg->sql_setup);
    free(pg->sql_insert);
    free(pg->index_name);
    free(pg);
}

static int pg_create(const void *conf, const struct mt_output_ctx *ctx, void **state, char *err,
                     size_t errlen)
{
    const struct pg_conf *c = conf;
    struct pg_out *pg = calloc(1, sizeof(*pg));
    char *perr = NULL;

    if (!pg)
        return -ENOMEM;
    pg->conf = c;
    pg->loop = ctx->loop;
    snprintf(pg->module, sizeof(pg->module), "%s", ctx->module);
    const char *dot = strchr(c->table, '.');
    pg->sql_setup = make_sql(setup_fmt, c->table, dot ? dot + 1 : c->table);
    pg->sql_insert = make_sql(insert_fmt, c->table, "");
    pg->index_name = make_sql("%1$s_time_idx", c->table, ""); /* in the table's schema */
    if (!pg->sql_setup || !pg->sql_insert || !pg->index_name) {
        pg_destroy(pg);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    uv_timer_init(pg->loop, &pg->timer);
    pg->timer.data = pg;
    pg->handles = 1;
    /* the server's certificate is checked only with verify-ca/verify-full */
    PQconninfoOption *opts = PQconninfoParse(c->conninfo, &perr);
    PQfreemem(perr);
    const char *mode = "prefer", *host = "";
    for (PQconninfoOption *o = opts; o && o->keyword; o++) {
        if (strcmp(o->keyword, "sslmode") == 0 && o->val && *o->val)
            mode = o->val;
        if (strcmp(o->keyword, "host") == 0 && o->val)
            host = o->val;
    }
    if (host[0] != '/' && strcmp(mode, "verify-full") != 0 && strcmp(mode, "verify-ca") != 0)
        mt_diag(MT_WARNING, pg->module,
                "sslmode is %s: the database server's certificate is not checked; use "
                "sslmode=verify-full with sslrootcert for a server across a network",
                mode);
    PQconninfoFree(opts);
    *state = pg;
    return 0;
}

const struct mt_output_type mt_output_postgresql = {
    .name = "postgresql",
    .description = "INSERT into a PostgreSQL/TimescaleDB table, each reading exactly once",
    .options = pg_options,
    .config_size = sizeof(struct pg_conf),
    .flags = MT_OUTPUT_ASYNC,
    .check = pg_check,
    .create = pg_create,
    .encode = pg_encode,
    .free_payload = pg_free_payload,
    .send = pg_send,
    .abort = pg_abort,
    .close = pg_close,
    .destroy = pg_destroy,
};
