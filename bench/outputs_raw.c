/*
 * bench_outputs_raw: the raw ceilings bench/outputs.sh compares the outputs
 * with, measured against the same servers in the same run:
 *
 *   bench_outputs_raw http URL BATCHES BATCH
 *       a pre-built JSON body of BATCH readings (the http output's format,
 *       made by the same encoder) POSTed BATCHES times with libcurl over one
 *       keep-alive connection, one request at a time
 *   bench_outputs_raw pg CONNINFO BATCHES BATCH
 *       a prepared multi-row INSERT ... VALUES (...),(...) ON CONFLICT DO
 *       NOTHING of BATCH rows into a table shaped like the output's, text
 *       parameters pre-built (only the seqs change per batch)
 *   bench_outputs_raw mqtt HOST PORT BATCHES BATCH PER_MESSAGE WINDOW
 *       BATCH readings per batch as PER_MESSAGE-reading pre-built messages,
 *       QoS 1, max_inflight WINDOW, libmosquitto's threaded loop; a batch
 *       is done when every PUBACK of it arrived (like the output)
 *
 * Prints "readings/s N" on the last line. Never asserts a timing.
 */
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <mosquitto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mittari/mittari.h>

#include "encode.h"
#include "series.h"
#include "util.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* The readings the bench uses: the first n of the log at $BENCH_LOG (the
 * backlog the outputs drain, so both sides send the same data), or
 * synthetic ones like the sim's. */
static struct mt_series_reg reg;
static struct mt_row *rows;

static int load_rows(size_t n)
{
    const char *log = getenv("BENCH_LOG");
    char err[256];
    size_t got = 0;

    rows = calloc(n, sizeof(*rows));
    if (!rows || mt_series_init(&reg))
        return -1;
    if (log && *log) {
        struct mt_logdb *db;
        if (mt_log_open(&db, log, MT_LOG_READONLY, err, sizeof(err)) ||
            mt_log_load_series(db, &reg) || mt_log_read(db, 0, INT64_MAX, n, rows, &got) ||
            got != n) {
            fprintf(stderr, "cannot read %zu readings from %s\n", n, log);
            return -1;
        }
        mt_log_close(db);
        return 0;
    }
    uint32_t ids[4];
    static const char *const dev[] = {"door-1", "door-2", "cardreader-1", "hall"};
    for (int i = 0; i < 4; i++) {
        struct mt_series_info k = {.site = "bench", .device = dev[i], .metric = "visitors_in",
                                   .unit = "1", .kind = MITTARI_KIND_DELTA, .tags = ""};
        mt_series_intern(&reg, &k, &ids[i]);
    }
    for (size_t i = 0; i < n; i++) {
        rows[i].seq = (int64_t)i + 1;
        rows[i].ts = 1764084344000000 + (int64_t)i * 1000;
        rows[i].series = ids[i % 4];
        rows[i].value = 1;
        if (i % 10 == 0)
            snprintf(rows[i].subject, sizeof(rows[i].subject), "c1.Y2FyZC0xMjM0NTY3ODkw%zu", i);
    }
    return 0;
}

/* n readings encoded as the outputs do */
static int make_body(size_t n, int how, struct mt_buf *body)
{
    struct mt_encoder enc;
    if (load_rows(n))
        return -1;
    mt_encoder_init(&enc, MT_FMT_JSONL, 1796174859616057);
    struct mt_batch_head h = {"mt-0123456789abcdef", "raw", "mt-0123456789abcdef/1/raw/1-1000",
                              1796174859616057, 1, (int64_t)n, n};
    return mt_encode_batch(&enc, body, how, &h, rows, n, &reg);
}

static size_t discard(char *p, size_t s, size_t n, void *a)
{
    (void)p;
    (void)a;
    return s * n;
}

static int raw_http(const char *url, long batches, long batch)
{
    struct mt_buf body = {0};
    struct curl_slist *hd = NULL;
    char count[64];
    long code = 0;

    if (make_body((size_t)batch, MT_BATCH_JSON, &body))
        return 1;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURL *e = curl_easy_init();
    snprintf(count, sizeof(count), "X-Mittari-Count: %ld", batch);
    hd = curl_slist_append(hd, "Content-Type: application/json");
    hd = curl_slist_append(hd, "Expect:");
    hd = curl_slist_append(hd, count);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body.p);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body.len);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    double t0 = now_s();
    for (long i = 0; i < batches; i++) {
        CURLcode cc = curl_easy_perform(e);
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
        if (cc != CURLE_OK || code != 200) {
            fprintf(stderr, "POST failed: %s, HTTP %ld\n", curl_easy_strerror(cc), code);
            return 1;
        }
    }
    double dt = now_s() - t0;
    printf("http raw: %ld POSTs of %ld readings (%zu bytes) in %.2f s\n", batches, batch, body.len,
           dt);
    printf("readings/s %.0f\n", (double)(batches * batch) / dt);
    curl_slist_free_all(hd);
    curl_easy_cleanup(e);
    mt_buf_free(&body);
    return 0;
}

static int raw_pg(const char *conninfo, long batches, long batch)
{
    enum { NP = 14 };
    PGconn *c = PQconnectdb(conninfo);
    struct mt_buf sql = {0};
    char **vals = calloc((size_t)batch * NP, sizeof(char *));
    char (*seqs)[24] = calloc((size_t)batch, 24);

    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "%s", PQerrorMessage(c));
        return 1;
    }
    PQclear(PQexec(c, "SET client_min_messages = warning"));
    PQclear(PQexec(c, "DROP TABLE IF EXISTS raw_bench"));
    PGresult *r = PQexec(c, "CREATE TABLE raw_bench (time timestamptz NOT NULL, site text NOT NULL,"
                            " device text NOT NULL, metric text NOT NULL, value double precision,"
                            " unit text, kind text NOT NULL, subject text, tags jsonb,"
                            " revision smallint NOT NULL DEFAULT 0, suppressed_below smallint,"
                            " agent_id text NOT NULL, generation bigint NOT NULL, seq bigint NOT NULL,"
                            " received_at timestamptz NOT NULL DEFAULT now(),"
                            " PRIMARY KEY (agent_id, generation, seq, time));"
                            "CREATE INDEX ON raw_bench (time)");
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, "%s", PQerrorMessage(c));
        return 1;
    }
    PQclear(r);
    mt_buf_adds(&sql, "INSERT INTO raw_bench (time, site, device, metric, value, unit, kind, "
                      "subject, tags, revision, suppressed_below, seq, agent_id, generation) VALUES ");
    for (long i = 0; i < batch; i++) {
        mt_buf_printf(&sql, "%s(", i ? "," : "");
        for (int k = 0; k < NP; k++)
            mt_buf_printf(&sql, "%s$%ld", k ? "," : "", i * NP + k + 1);
        mt_buf_addc(&sql, ')');
    }
    mt_buf_adds(&sql, " ON CONFLICT (agent_id, generation, seq, time) DO NOTHING");
    r = PQprepare(c, "ins", mt_buf_cstr(&sql), (int)(batch * NP), NULL);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, "prepare: %s", PQerrorMessage(c));
        return 1;
    }
    PQclear(r);
    if (load_rows((size_t)batch))
        return 1;
    char (*text)[5][400] = calloc((size_t)batch, sizeof(*text));
    for (long i = 0; i < batch; i++) {
        char **v = &vals[i * NP];
        const struct mt_row *rw = &rows[i];
        const struct mt_series_info *si = mt_series_get(&reg, rw->series);
        mt_fmt_utc(rw->ts, text[i][0], sizeof(text[i][0]), 6);
        snprintf(text[i][1], sizeof(text[i][1]), "%.17g", rw->value);
        v[0] = text[i][0];
        v[1] = (char *)si->site;
        v[2] = (char *)si->device;
        v[3] = (char *)si->metric;
        v[4] = text[i][1];
        v[5] = si->unit[0] ? (char *)si->unit : NULL;
        v[6] = (char *)mt_kind_name(si->kind);
        v[7] = rw->subject[0] ? strcpy(text[i][2], rw->subject) : NULL;
        v[8] = si->tags[0] ? (char *)si->tags : NULL;
        v[9] = "0";
        v[10] = NULL;
        v[11] = seqs[i];
        v[12] = "mt-0123456789abcdef";
        v[13] = "1796174859616057";
    }
    double t0 = now_s();
    for (long b = 0; b < batches; b++) {
        for (long i = 0; i < batch; i++)
            snprintf(seqs[i], 24, "%ld", b * batch + i + 1);
        r = PQexecPrepared(c, "ins", (int)(batch * NP), (const char *const *)vals, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            fprintf(stderr, "insert: %s", PQerrorMessage(c));
            return 1;
        }
        PQclear(r);
    }
    double dt = now_s() - t0;
    printf("postgresql raw: %ld prepared multi-row INSERT ... ON CONFLICT of %ld rows in %.2f s\n",
           batches, batch, dt);
    printf("readings/s %.0f\n", (double)(batches * batch) / dt);
    PQclear(PQexec(c, "DROP TABLE raw_bench"));
    PQfinish(c);
    mt_buf_free(&sql);
    free(vals);
    free(seqs);
    return 0;
}

struct mq {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    long acked;
    bool up;
};

static void mq_pub(struct mosquitto *m, void *a, int mid)
{
    struct mq *q = a;
    (void)m;
    (void)mid;
    pthread_mutex_lock(&q->lock);
    q->acked++;
    pthread_cond_signal(&q->cond);
    pthread_mutex_unlock(&q->lock);
}

static void mq_conn(struct mosquitto *m, void *a, int rc)
{
    struct mq *q = a;
    (void)m;
    pthread_mutex_lock(&q->lock);
    q->up = rc == 0;
    pthread_cond_signal(&q->cond);
    pthread_mutex_unlock(&q->lock);
}

static int raw_mqtt(const char *host, int port, long batches, long batch, long per, int window)
{
    struct mt_buf body = {0};
    struct mq q = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    long msgs_per_batch = (batch + per - 1) / per;

    if (make_body((size_t)per, MT_BATCH_JSON, &body))
        return 1;
    mosquitto_lib_init();
    struct mosquitto *m = mosquitto_new("bench-raw", true, &q);
    mosquitto_publish_callback_set(m, mq_pub);
    mosquitto_connect_callback_set(m, mq_conn);
    mosquitto_max_inflight_messages_set(m, (unsigned)window);
    mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
    if (mosquitto_connect(m, host, port, 60) || mosquitto_loop_start(m)) {
        fprintf(stderr, "cannot connect to %s:%d\n", host, port);
        return 1;
    }
    pthread_mutex_lock(&q.lock);
    while (!q.up)
        pthread_cond_wait(&q.cond, &q.lock);
    pthread_mutex_unlock(&q.lock);
    double t0 = now_s();
    for (long b = 0; b < batches; b++) {
        for (long i = 0; i < msgs_per_batch; i++)
            if (mosquitto_publish(m, NULL, "bench/raw", (int)body.len, body.p, 1, false)) {
                fprintf(stderr, "publish failed\n");
                return 1;
            }
        pthread_mutex_lock(&q.lock);
        while (q.acked < (b + 1) * msgs_per_batch)
            pthread_cond_wait(&q.cond, &q.lock);
        pthread_mutex_unlock(&q.lock);
    }
    double dt = now_s() - t0;
    printf("mqtt raw: %ld batches of %ld messages of %ld readings (%zu bytes), QoS 1, window %d, "
           "in %.2f s\n",
           batches, msgs_per_batch, per, body.len, window, dt);
    printf("readings/s %.0f\n", (double)(batches * msgs_per_batch * per) / dt);
    mosquitto_disconnect(m);
    mosquitto_loop_stop(m, false);
    mosquitto_destroy(m);
    mosquitto_lib_cleanup();
    mt_buf_free(&body);
    return 0;
}

/* The same rows through the statement the output uses (unnest of text
 * arrays), arrays pre-built: the server's share of the output's cost. */
static int raw_pg_unnest(const char *conninfo, long batches, long batch)
{
    PGconn *c = PQconnectdb(conninfo);
    struct mt_buf a[12] = {{0}};
    const char *vals[14];
    size_t seq_at;

    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "%s", PQerrorMessage(c));
        return 1;
    }
    PQclear(PQexec(c, "SET client_min_messages = warning"));
    PQclear(PQexec(c, "DROP TABLE IF EXISTS raw_bench2"));
    PQclear(PQexec(c, "CREATE TABLE raw_bench2 (time timestamptz NOT NULL, site text NOT NULL,"
                      " device text NOT NULL, metric text NOT NULL, value double precision,"
                      " unit text, kind text NOT NULL, subject text, tags jsonb,"
                      " revision smallint NOT NULL DEFAULT 0, suppressed_below smallint,"
                      " agent_id text NOT NULL, generation bigint NOT NULL, seq bigint NOT NULL,"
                      " received_at timestamptz NOT NULL DEFAULT now(),"
                      " PRIMARY KEY (agent_id, generation, seq, time));"
                      "CREATE INDEX ON raw_bench2 (time)"));
    PGresult *r = PQprepare(c, "ins2",
        "INSERT INTO raw_bench2 (time, site, device, metric, value, unit, kind, subject, tags,"
        " revision, suppressed_below, seq, agent_id, generation)"
        " SELECT u.*, $13::text, $14::bigint FROM unnest($1::timestamptz[], $2::text[], $3::text[],"
        " $4::text[], $5::float8[], $6::text[], $7::text[], $8::text[], $9::jsonb[], $10::int2[],"
        " $11::int2[], $12::int8[]) AS u ON CONFLICT (agent_id, generation, seq, time) DO NOTHING",
        14, NULL);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, "prepare: %s", PQerrorMessage(c));
        return 1;
    }
    PQclear(r);
    for (int k = 0; k < 11; k++)
        mt_buf_addc(&a[k], '{');
    for (long i = 0; i < batch; i++) {
        const char *sep = i ? "," : "";
        mt_buf_printf(&a[0], "%s\"2026-11-25T15:25:%02ld.%06ldZ\"", sep, (i / 1000) % 60, i % 1000000);
        mt_buf_printf(&a[1], "%s\"bench\"", sep);
        mt_buf_printf(&a[2], "%s\"%s\"", sep, i % 2 ? "door-1" : "door-2");
        mt_buf_printf(&a[3], "%s\"visitors_in\"", sep);
        mt_buf_printf(&a[4], "%s1", sep);
        mt_buf_printf(&a[5], "%s\"1\"", sep);
        mt_buf_printf(&a[6], "%s\"delta\"", sep);
        mt_buf_printf(&a[7], "%s%s", sep, i % 10 ? "NULL" : "\"c1.Y2FyZC0xMjM0NTY3ODkw\"");
        mt_buf_printf(&a[8], "%sNULL", sep);
        mt_buf_printf(&a[9], "%s0", sep);
        mt_buf_printf(&a[10], "%sNULL", sep);
    }
    for (int k = 0; k < 11; k++)
        mt_buf_addc(&a[k], '}');
    for (int k = 0; k < 11; k++)
        vals[k] = mt_buf_cstr(&a[k]);
    vals[12] = "mt-0123456789abcdef";
    vals[13] = "1796174859616057";
    double t0 = now_s();
    for (long b = 0; b < batches; b++) {
        a[11].len = 0;
        for (long i = 0; i < batch; i++)
            mt_buf_printf(&a[11], "%s%ld", i ? "," : "{", b * batch + i + 1);
        mt_buf_addc(&a[11], '}');
        seq_at = 0;
        (void)seq_at;
        vals[11] = mt_buf_cstr(&a[11]);
        r = PQexecPrepared(c, "ins2", 14, vals, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            fprintf(stderr, "insert: %s", PQerrorMessage(c));
            return 1;
        }
        PQclear(r);
    }
    double dt = now_s() - t0;
    printf("postgresql raw (unnest, the output's statement): %ld batches of %ld rows in %.2f s\n",
           batches, batch, dt);
    printf("readings/s %.0f\n", (double)(batches * batch) / dt);
    PQclear(PQexec(c, "DROP TABLE raw_bench2"));
    PQfinish(c);
    for (int k = 0; k < 12; k++)
        mt_buf_free(&a[k]);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "pg-unnest") == 0)
        return raw_pg_unnest(argv[2], atol(argv[3]), atol(argv[4]));
    if (argc == 5 && strcmp(argv[1], "http") == 0)
        return raw_http(argv[2], atol(argv[3]), atol(argv[4]));
    if (argc == 5 && strcmp(argv[1], "pg") == 0)
        return raw_pg(argv[2], atol(argv[3]), atol(argv[4]));
    if (argc == 8 && strcmp(argv[1], "mqtt") == 0)
        return raw_mqtt(argv[2], atoi(argv[3]), atol(argv[4]), atol(argv[5]), atol(argv[6]),
                        atoi(argv[7]));
    fprintf(stderr, "usage: see the top of bench/outputs_raw.c\n");
    return 2;
}
