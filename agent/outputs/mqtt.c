/*
 * mqtt output: publishes each batch as JSON messages with QoS 1, readings
 * grouped by topic (a template over agent/site/device/metric) and up to
 * readings_per_message per message. The batch is acknowledged (and the
 * cursor moves) only after the broker's PUBACK for every message of it.
 * A retained status topic says online/offline (with a last will).
 *
 * Threads. libmosquitto resolves the broker's name with a blocking
 * getaddrinfo and does the TLS handshake inside mosquitto_connect(), so the
 * connection lives on one thread of this output's own (not the loop, not
 * libuv's pool, which the log readers need): it connects, runs
 * mosquitto_loop() and reconnects with backoff. The loop thread publishes
 * (libmosquitto queues the packet under its own locks and wakes that
 * thread) and learns of CONNACKs, PUBACKs and disconnects through a
 * uv_async. Every connection gets a fresh client object, so nothing of a
 * batch that failed with a lost connection is re-sent behind our back and
 * memory stays at one batch: the retry publishes the batch again (same
 * keys: at least once, and a receiver drops what it has).
 *
 * libmosquitto 2.0.11 collapses with a large in-flight window
 * (/work/shared/PERFORMANCE.md): max_inflight is small by default.
 */
#include <errno.h>
#include <inttypes.h>
#include <mosquitto.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../diag.h"
#include "../encode.h"
#include "../output.h"
#include "../util.h"

struct mqtt_conf {
    const char *host;
    int64_t port;
    const char *client_id;
    const char *username, *password;
    bool tls;
    const char *ca_file, *cert_file, *key_file;
    bool tls_verify;
    const char *topic;
    const char *status_topic;
    int64_t readings_per_message;
    int64_t max_inflight;
    int64_t keepalive_ms;
    int64_t timeout_ms;
};

static const struct mittari_option mqtt_options[] = {
    {.name = "host", .type = MITTARI_OPT_STRING, .flags = MITTARI_OPT_REQUIRED,
     .offset = offsetof(struct mqtt_conf, host), .help = "Broker host name or address."},
    {.name = "port", .type = MITTARI_OPT_INT, .def = "0", .min = 0, .max = 65535,
     .offset = offsetof(struct mqtt_conf, port),
     .help = "Broker port; 0: 1883, or 8883 with TLS."},
    {.name = "client_id", .type = MITTARI_OPT_STRING, .offset = offsetof(struct mqtt_conf, client_id),
     .help = "MQTT client id (default: AGENT-OUTPUT)."},
    {.name = "username", .type = MITTARI_OPT_STRING, .offset = offsetof(struct mqtt_conf, username),
     .help = "User name (with password)."},
    {.name = "password", .type = MITTARI_OPT_STRING, .flags = MITTARI_OPT_SECRET,
     .offset = offsetof(struct mqtt_conf, password), .help = "Password; use password_file."},
    {.name = "tls", .type = MITTARI_OPT_BOOL, .def = "false", .offset = offsetof(struct mqtt_conf, tls),
     .help = "Use TLS (on by itself when ca_file is set)."},
    {.name = "ca_file", .type = MITTARI_OPT_STRING, .offset = offsetof(struct mqtt_conf, ca_file),
     .help = "CA certificates (PEM) the broker's certificate must chain to (default: the "
             "system's)."},
    {.name = "cert_file", .type = MITTARI_OPT_STRING, .offset = offsetof(struct mqtt_conf, cert_file),
     .help = "Client certificate (PEM) for mutual TLS."},
    {.name = "key_file", .type = MITTARI_OPT_STRING, .offset = offsetof(struct mqtt_conf, key_file),
     .help = "Private key (PEM) of cert_file."},
    {.name = "tls_verify", .type = MITTARI_OPT_BOOL, .def = "true",
     .offset = offsetof(struct mqtt_conf, tls_verify),
     .help = "Check the broker's certificate and name; false is warned about at every start."},
    {.name = "topic", .type = MITTARI_OPT_STRING, .def = "mittari/{agent}/{site}",
     .offset = offsetof(struct mqtt_conf, topic),
     .help = "Topic of the readings; {agent}, {output}, {site}, {device} and {metric} are "
             "filled in."},
    {.name = "status_topic", .type = MITTARI_OPT_STRING, .def = "mittari/{agent}/status",
     .offset = offsetof(struct mqtt_conf, status_topic),
     .help = "Retained online/offline status ({agent}, {output}); \"\" = none."},
    {.name = "readings_per_message", .type = MITTARI_OPT_INT, .def = "500", .min = 1,
     .max = 100000, .offset = offsetof(struct mqtt_conf, readings_per_message),
     .help = "Most readings in one message."},
    {.name = "max_inflight", .type = MITTARI_OPT_INT, .def = "20", .min = 1, .max = 1000,
     .offset = offsetof(struct mqtt_conf, max_inflight),
     .help = "Messages sent but not yet acknowledged by the broker (keep it small)."},
    {.name = "keepalive", .type = MITTARI_OPT_DURATION, .def = "60s", .min = 5000, .max = 3600000,
     .offset = offsetof(struct mqtt_conf, keepalive_ms), .help = "MQTT keepalive."},
    {.name = "timeout", .type = MITTARI_OPT_DURATION, .def = "60s", .min = 100, .max = 3600000,
     .offset = offsetof(struct mqtt_conf, timeout_ms),
     .help = "Longest a batch waits for its acknowledgements before it is sent again."},
    {0},
};

struct message {
    char topic[256];
    struct mt_buf body;
};

/* A batch's messages. The output hands a slot's payload back to encode()
 * for its next batch (output.h): its message buffers and encode()'s
 * scratch arrays are filled again. */
struct payload {
    struct message *m;
    size_t n, cap; /* messages in this batch; allocated */
    uint32_t *tix;     /* encode scratch: topic of each reading */
    struct mt_row *sub; /* encode scratch: one message's readings */
    size_t rows_cap;
    char (*topics)[256]; /* encode scratch: the batch's distinct topics */
    size_t topics_cap;
};

struct mq_out {
    const struct mqtt_conf *conf;
    char module[96];
    char client_id[200];
    char status_topic[256];
    char host[256];
    int port;
    uv_loop_t *loop;
    const char *agent_id, *output;

    pthread_t thread;
    bool thread_started;
    /* Lock order: client_lock is held around calls into libmosquitto from
     * the loop thread (publish) and while the thread sets or clears mosq;
     * lock and log_lock are leaves, taken by libmosquitto's callbacks and
     * never held across a libmosquitto call. */
    pthread_mutex_t client_lock;
    pthread_mutex_t log_lock;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uv_async_t async;

    /* under lock */
    struct mosquitto *mosq;    /* the current connection's client, or NULL */
    bool stop;
    uint64_t conn_no;          /* counts connections: stale events are told apart */
    bool ev_up, ev_down;
    bool connack; /* the current connection got its CONNACK */
    int down_rc;
    char down_why[256];
    int *acks;
    size_t nacks, capacks;
    uint64_t acks_conn;
    char last_log[256];        /* libmosquitto's last error line (TLS) */

    /* loop thread */
    bool up;
    uint64_t up_conn;
    char why[256];
    struct mt_send *inflight;
    bool nmids_set; /* the inflight batch was published */
    int *mids;
    size_t nmids, nacked;
    uv_timer_t timer;
    int handles;
    uv_work_t join;
    void (*closed)(void *arg);
    void *closed_arg;

    struct mt_encoder enc; /* worker only */
};

static int mqtt_check(const void *conf, char *err, size_t errlen)
{
    const struct mqtt_conf *c = conf;
    if (!*c->host) {
        snprintf(err, errlen, "host is empty");
        return -EINVAL;
    }
    if (!!c->cert_file != !!c->key_file) {
        snprintf(err, errlen, "cert_file and key_file go together (mutual TLS)");
        return -EINVAL;
    }
    if (c->password && !c->username) {
        snprintf(err, errlen, "password needs a username");
        return -EINVAL;
    }
    if (!*c->topic || strpbrk(c->topic, "+#")) {
        snprintf(err, errlen, "topic '%s': a topic to publish to has no + or # and is not empty",
                 c->topic);
        return -EINVAL;
    }
    if (strpbrk(c->status_topic, "+#")) {
        snprintf(err, errlen, "status_topic '%s' has + or #", c->status_topic);
        return -EINVAL;
    }
    return 0;
}

/* {agent}, {output}, {site}, {device}, {metric} -> text; MQTT wildcards and
 * separators in a value become '_' so a value never adds a level. */
static void render(const char *tpl, const char *agent, const char *output,
                   const struct mt_series_info *s, char *out, size_t len)
{
    size_t n = 0;
    for (const char *p = tpl; *p && n + 1 < len;) {
        const char *v = NULL;
        size_t skip = 0;
        if (*p == '{') {
            static const char *const names[] = {"{agent}", "{output}", "{site}", "{device}",
                                                "{metric}"};
            for (int i = 0; i < 5 && !v; i++) {
                size_t k = strlen(names[i]);
                if (strncmp(p, names[i], k) == 0) {
                    skip = k;
                    v = i == 0 ? agent : i == 1 ? output : !s ? "" : i == 2 ? s->site
                                                               : i == 3 ? s->device
                                                                        : s->metric;
                }
            }
        }
        if (!v) {
            out[n++] = *p++;
            continue;
        }
        for (; *v && n + 1 < len; v++)
            out[n++] = (*v == '/' || *v == '+' || *v == '#') ? '_' : *v;
        p += skip;
    }
    out[n] = 0;
}

/* ---- the connection thread ---- */

static void post(struct mq_out *q)
{
    uv_async_send(&q->async);
}

static void on_log(struct mosquitto *m, void *arg, int level, const char *str)
{
    struct mq_out *q = arg;
    (void)m;
    if (level != MOSQ_LOG_ERR)
        return;
    pthread_mutex_lock(&q->log_lock);
    snprintf(q->last_log, sizeof(q->last_log), "%s", str);
    pthread_mutex_unlock(&q->log_lock);
}

static void publish_status(struct mq_out *q, struct mosquitto *m, const char *state)
{
    char text[400];
    if (!q->status_topic[0])
        return;
    int n = snprintf(text, sizeof(text), "{\"agent_id\":\"%s\",\"output\":\"%s\",\"state\":\"%s\"}",
                     q->agent_id, q->output, state);
    mosquitto_publish(m, NULL, q->status_topic, n, text, 1, true);
}

static void on_connect(struct mosquitto *m, void *arg, int rc)
{
    struct mq_out *q = arg;
    pthread_mutex_lock(&q->lock);
    q->connack = true;
    if (rc == 0) {
        q->ev_up = true;
        q->acks_conn = q->conn_no;
    } else {
        q->ev_down = true;
        q->down_rc = rc;
        snprintf(q->down_why, sizeof(q->down_why), "broker refused the connection: %s",
                 mosquitto_connack_string(rc));
    }
    pthread_mutex_unlock(&q->lock);
    if (rc == 0)
        publish_status(q, m, "online");
    post(q);
}

static void on_publish(struct mosquitto *m, void *arg, int mid)
{
    struct mq_out *q = arg;
    (void)m;
    pthread_mutex_lock(&q->lock);
    if (q->nacks == q->capacks) {
        size_t n = q->capacks ? q->capacks * 2 : 64;
        int *a = realloc(q->acks, n * sizeof(*a));
        if (a) {
            q->acks = a;
            q->capacks = n;
        }
    }
    if (q->nacks < q->capacks)
        q->acks[q->nacks++] = mid;
    pthread_mutex_unlock(&q->lock);
    post(q);
}

static struct mosquitto *new_client(struct mq_out *q)
{
    const struct mqtt_conf *c = q->conf;
    struct mosquitto *m = mosquitto_new(q->client_id, true, q);
    char will[400];

    if (!m)
        return NULL;
    mosquitto_threaded_set(m, true);
    mosquitto_log_callback_set(m, on_log);
    mosquitto_connect_callback_set(m, on_connect);
    mosquitto_publish_callback_set(m, on_publish);
    mosquitto_max_inflight_messages_set(m, (unsigned)c->max_inflight);
    /* a batch waits for its last PUBACKs: Nagle would hold our last PUBLISH
     * (and the TCP ACK of the broker's answers) up to a delayed-ACK period */
    mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
    if (c->username)
        mosquitto_username_pw_set(m, c->username, c->password);
    if (q->status_topic[0]) {
        int n = snprintf(will, sizeof(will),
                         "{\"agent_id\":\"%s\",\"output\":\"%s\",\"state\":\"offline\"}",
                         q->agent_id, q->output);
        mosquitto_will_set(m, q->status_topic, n, will, 1, true);
    }
    if (c->tls || c->ca_file) {
        int r = mosquitto_tls_set(m, c->ca_file, c->ca_file ? NULL : "/etc/ssl/certs",
                                  c->cert_file, c->key_file, NULL);
        if (r == MOSQ_ERR_SUCCESS && !c->tls_verify) {
            mosquitto_tls_opts_set(m, 0 /* SSL_VERIFY_NONE */, NULL, NULL);
            mosquitto_tls_insecure_set(m, true);
        }
        if (r != MOSQ_ERR_SUCCESS) {
            pthread_mutex_lock(&q->log_lock);
            snprintf(q->last_log, sizeof(q->last_log), "TLS setup: %s", mosquitto_strerror(r));
            pthread_mutex_unlock(&q->log_lock);
            mosquitto_destroy(m);
            return NULL;
        }
    }
    return m;
}

/* Waits up to ms unless asked to stop; true when asked to stop. */
static bool pause_ms(struct mq_out *q, int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&q->lock);
    while (!q->stop && pthread_cond_timedwait(&q->cond, &q->lock, &ts) == 0)
        ;
    bool stop = q->stop;
    pthread_mutex_unlock(&q->lock);
    return stop;
}

static void went_down(struct mq_out *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void went_down(struct mq_out *q, const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&q->lock);
    va_start(ap, fmt);
    vsnprintf(q->down_why, sizeof(q->down_why), fmt, ap);
    va_end(ap);
    q->ev_down = true;
    pthread_mutex_unlock(&q->lock);
    post(q);
}

static void *thread_main(void *arg)
{
    struct mq_out *q = arg;
    int64_t backoff = 500;

    pthread_setname_np(pthread_self(), "mt-mqtt"); /* for top -H */

    for (;;) {
        pthread_mutex_lock(&q->lock);
        bool stop = q->stop;
        pthread_mutex_unlock(&q->lock);
        pthread_mutex_lock(&q->log_lock);
        q->last_log[0] = 0;
        pthread_mutex_unlock(&q->log_lock);
        if (stop)
            break;
        struct mosquitto *m = new_client(q);
        int rc = m ? mosquitto_connect(m, q->host, q->port, (int)(q->conf->keepalive_ms / 1000))
                   : MOSQ_ERR_NOMEM;
        if (rc == MOSQ_ERR_SUCCESS) {
            pthread_mutex_lock(&q->client_lock);
            pthread_mutex_lock(&q->lock);
            q->conn_no++;
            q->mosq = m;
            q->connack = false;
            pthread_mutex_unlock(&q->lock);
            pthread_mutex_unlock(&q->client_lock);
            while (rc == MOSQ_ERR_SUCCESS) {
                rc = mosquitto_loop(m, 200, 1);
                pthread_mutex_lock(&q->lock);
                stop = q->stop;
                pthread_mutex_unlock(&q->lock);
                if (stop)
                    break;
            }
            if (stop && rc == MOSQ_ERR_SUCCESS) {
                /* a clean goodbye: offline, then DISCONNECT (no will) */
                publish_status(q, m, "offline");
                for (int i = 0; i < 5 && mosquitto_want_write(m); i++)
                    mosquitto_loop(m, 100, 1);
                mosquitto_disconnect(m);
                mosquitto_loop(m, 100, 1);
            }
            char log[256];
            pthread_mutex_lock(&q->client_lock);
            pthread_mutex_lock(&q->lock);
            q->mosq = NULL;
            bool connack = q->connack;
            pthread_mutex_unlock(&q->lock);
            pthread_mutex_unlock(&q->client_lock);
            pthread_mutex_lock(&q->log_lock);
            snprintf(log, sizeof(log), "%s", q->last_log);
            pthread_mutex_unlock(&q->log_lock);
            if (!stop && connack) {
                went_down(q, "connection to %s:%d lost: %s", q->host, q->port,
                          rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
                backoff = 500;
            } else if (!stop) {
                /* the TLS handshake or the CONNECT failed: say why */
                went_down(q, "cannot connect to %s:%d: %s%s%s", q->host, q->port,
                          rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc),
                          log[0] ? ": " : "", log);
            }
        } else {
            char log[256];
            pthread_mutex_lock(&q->log_lock);
            snprintf(log, sizeof(log), "%s", q->last_log);
            pthread_mutex_unlock(&q->log_lock);
            went_down(q, "cannot connect to %s:%d: %s%s%s", q->host, q->port,
                      rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc),
                      log[0] ? ": " : "", log);
        }
        if (m)
            mosquitto_destroy(m);
        if (stop || pause_ms(q, backoff))
            break;
        backoff = backoff * 2 > 30000 ? 30000 : backoff * 2;
    }
    return NULL;
}

/* ---- loop side ---- */

static void publish(struct mq_out *q, struct mt_send *s);

static void finish(struct mq_out *q, int rc)
{
    struct mt_send *s = q->inflight;
    if (!s)
        return;
    q->inflight = NULL;
    q->nmids_set = false;
    uv_timer_stop(&q->timer);
    s->done(s, rc);
}

static void fail_inflight(struct mq_out *q, const char *why)
{
    if (!q->inflight)
        return;
    snprintf(q->inflight->res.error, sizeof(q->inflight->res.error), "%s", why);
    finish(q, -EAGAIN);
}

static void count_ack(struct mq_out *q, int mid)
{
    for (size_t i = 0; i < q->nmids; i++) {
        if (q->mids[i] == mid) {
            q->mids[i] = -1;
            q->nacked++;
            break;
        }
    }
}

static void async_cb(uv_async_t *h)
{
    struct mq_out *q = h->data;
    int acks[256];
    size_t nacks = 0;
    bool up, down;
    char why[256];
    uint64_t conn;

    for (;;) {
        pthread_mutex_lock(&q->lock);
        up = q->ev_up;
        down = q->ev_down;
        q->ev_up = q->ev_down = false;
        snprintf(why, sizeof(why), "%s", q->down_why);
        conn = q->acks_conn;
        nacks = q->nacks < 256 ? q->nacks : 256;
        if (nacks) {
            memcpy(acks, q->acks, nacks * sizeof(int));
            memmove(q->acks, q->acks + nacks, (q->nacks - nacks) * sizeof(int));
            q->nacks -= nacks;
        }
        bool more = q->nacks > 0;
        pthread_mutex_unlock(&q->lock);
        if (down) {
            /* a disconnect reported before a newer CONNACK is older than it */
            q->up = false;
            snprintf(q->why, sizeof(q->why), "%s", why);
            fail_inflight(q, why);
        }
        if (up) {
            q->up = true;
            q->up_conn = conn;
            q->why[0] = 0;
            mt_diag(MT_INFO, q->module, "connected to %s:%d", q->host, q->port);
            if (q->inflight && !q->nmids_set) {
                uv_timer_stop(&q->timer);
                publish(q, q->inflight);
            }
        }
        if (q->inflight && q->nmids_set && conn == q->up_conn)
            for (size_t i = 0; i < nacks; i++)
                count_ack(q, acks[i]);
        if (q->inflight && q->nmids_set && q->nacked == q->nmids)
            finish(q, 0);
        if (!more)
            break;
    }
}

static void timeout_cb(uv_timer_t *t)
{
    struct mq_out *q = t->data;
    char why[256];
    if (!q->nmids_set)
        snprintf(why, sizeof(why), "not connected to %s:%d within %" PRId64 " ms", q->host,
                 q->port, q->conf->timeout_ms);
    else
        snprintf(why, sizeof(why), "no acknowledgement from %s:%d for %zu of %zu messages "
                 "within %" PRId64 " ms", q->host, q->port, q->nmids - q->nacked, q->nmids,
                 q->conf->timeout_ms);
    fail_inflight(q, why);
}

static void mqtt_send(void *state, struct mt_send *s)
{
    struct mq_out *q = state;

    q->inflight = s;
    if (!q->up && !q->why[0]) {
        /* connecting for the first time: publish when it is up */
        uv_timer_start(&q->timer, timeout_cb, (uint64_t)q->conf->timeout_ms, 0);
        return;
    }
    if (!q->up) {
        fail_inflight(q, q->why);
        return;
    }
    publish(q, s);
}

static void publish(struct mq_out *q, struct mt_send *s)
{
    struct payload *p = s->payload;
    int rc = MOSQ_ERR_SUCCESS;

    if (p->n > q->nmids || !q->mids) {
        int *m = realloc(q->mids, (p->n ? p->n : 1) * sizeof(*m));
        if (!m) {
            fail_inflight(q, "out of memory");
            return;
        }
        q->mids = m;
    }
    q->nmids = p->n;
    q->nacked = 0;
    q->nmids_set = true;
    pthread_mutex_lock(&q->client_lock);
    pthread_mutex_lock(&q->lock);
    struct mosquitto *m = q->mosq && q->conn_no == q->up_conn ? q->mosq : NULL;
    pthread_mutex_unlock(&q->lock);
    if (!m)
        rc = MOSQ_ERR_NO_CONN;
    for (size_t i = 0; i < p->n && rc == MOSQ_ERR_SUCCESS; i++)
        rc = mosquitto_publish(m, &q->mids[i], p->m[i].topic, (int)p->m[i].body.len,
                               p->m[i].body.p, 1, false);
    pthread_mutex_unlock(&q->client_lock);
    if (rc != MOSQ_ERR_SUCCESS) {
        char why[200];
        snprintf(why, sizeof(why), "cannot publish to %s:%d: %s", q->host, q->port,
                 mosquitto_strerror(rc));
        fail_inflight(q, why);
        return;
    }
    uv_timer_start(&q->timer, timeout_cb, (uint64_t)q->conf->timeout_ms, 0);
    /* acknowledgements that came in already are applied by the async */
}

static void mqtt_abort(void *state)
{
    struct mq_out *q = state;
    async_cb(&q->async); /* acknowledgements that arrived count */
    fail_inflight(q, "stopped before the broker acknowledged the batch");
}

/* ---- encode (worker) ---- */

static void free_payload(struct payload *p)
{
    for (size_t i = 0; i < p->cap; i++)
        mt_buf_free(&p->m[i].body);
    free(p->m);
    free(p->tix);
    free(p->sub);
    free(p->topics);
    free(p);
}

/* Rough size of n readings' JSON: the body is allocated once. */
static size_t body_estimate(size_t n)
{
    return 512 + n * 192;
}

/* The payload to fill: the slot's last one, its buffers kept as far as
 * this batch of n readings uses them (mt_buf_refill), or a new one. */
static struct payload *reuse_payload(struct payload *p, size_t n, size_t per)
{
    if (!p)
        return calloc(1, sizeof(struct payload));
    size_t want = body_estimate(n < per ? n : per);
    for (size_t i = 0; i < p->cap; i++)
        mt_buf_refill(&p->m[i].body, want);
    if (p->rows_cap > 64 && p->rows_cap > 2 * n) {
        free(p->tix);
        free(p->sub);
        p->tix = NULL;
        p->sub = NULL;
        p->rows_cap = 0;
    }
    p->n = 0;
    return p;
}

/* The next message of p, its body empty. */
static struct message *next_message(struct payload *p)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 16;
        struct message *m = realloc(p->m, cap * sizeof(*m));
        if (!m)
            return NULL;
        memset(m + p->cap, 0, (cap - p->cap) * sizeof(*m));
        p->m = m;
        p->cap = cap;
    }
    struct message *msg = &p->m[p->n++];
    msg->body.len = 0;
    return msg;
}

static int mqtt_encode(void *state, const struct mt_batch *b, void **out,
                       struct mt_deliver_result *res)
{
    struct mq_out *q = state;
    size_t ntopics = 0, per = (size_t)q->conf->readings_per_message;
    struct payload *p = reuse_payload(*out, b->n, per);
    size_t rows = b->n ? b->n : 1;
    int rc = -ENOMEM;

    *out = NULL;
    if (!p)
        goto out;
    if (p->rows_cap < rows) {
        uint32_t *t = realloc(p->tix, rows * sizeof(*t));
        if (t)
            p->tix = t;
        struct mt_row *r = realloc(p->sub, rows * sizeof(*r));
        if (r)
            p->sub = r;
        if (!t || !r)
            goto out;
        p->rows_cap = rows;
    }
    uint32_t *tix = p->tix;
    struct mt_row *sub = p->sub;
    /* the topic of each reading, and the distinct topics in first-seen order;
     * a topic depends only on the series: made once per series of the batch */
    struct {
        uint32_t series, k;
    } seen[64] = {{0, 0}};
    for (size_t i = 0; i < b->n; i++) {
        char t[256];
        uint32_t sid = b->rows[i].series;
        if (sid && seen[sid % 64].series == sid) {
            tix[i] = seen[sid % 64].k;
            continue;
        }
        render(q->conf->topic, b->agent_id, b->output, mt_series_get(b->series, b->rows[i].series),
               t, sizeof(t));
        size_t k = 0;
        while (k < ntopics && strcmp(p->topics[k], t) != 0)
            k++;
        if (k == ntopics) {
            if (ntopics == p->topics_cap) {
                size_t cap = p->topics_cap ? 2 * p->topics_cap : 16;
                void *nt = realloc(p->topics, cap * sizeof(*p->topics));
                if (!nt)
                    goto out;
                p->topics = nt;
                p->topics_cap = cap;
            }
            memcpy(p->topics[ntopics++], t, sizeof(t));
        }
        tix[i] = (uint32_t)k;
        seen[sid % 64].series = sid;
        seen[sid % 64].k = (uint32_t)k;
    }
    for (size_t k = 0; k < ntopics; k++) {
        size_t n = 0;
        for (size_t i = 0; i <= b->n; i++) {
            if (i < b->n && tix[i] == k)
                sub[n++] = b->rows[i];
            if (n == 0 || (n < per && i < b->n))
                continue;
            struct message *msg = next_message(p);
            if (!msg || mt_buf_reserve(&msg->body, body_estimate(n)))
                goto out;
            char key[240];
            snprintf(key, sizeof(key), "%s#%zu", b->key, p->n - 1);
            struct mt_batch_head h = {b->agent_id, b->output, key, b->generation,
                                      sub[0].seq, sub[n - 1].seq, n};
            memcpy(msg->topic, p->topics[k], sizeof(msg->topic));
            if (mt_encode_batch(&q->enc, &msg->body, MT_BATCH_JSON, &h, sub, n, b->series))
                goto out;
            n = 0;
        }
    }
    for (size_t i = p->n; i < p->cap; i++)
        mt_buf_free(&p->m[i].body); /* messages a bigger batch had */
    *out = p;
    p = NULL;
    rc = 0;
out:
    if (rc)
        snprintf(res->error, sizeof(res->error), "cannot encode the batch: out of memory");
    if (p)
        free_payload(p);
    return rc;
}

static void mqtt_free_payload(void *state, void *payload)
{
    (void)state;
    free_payload(payload);
}

/* ---- create / close ---- */

static void abandoned(uv_handle_t *h)
{
    struct mq_out *q = h->data;
    if (--q->handles > 0)
        return;
    pthread_mutex_destroy(&q->client_lock);
    pthread_mutex_destroy(&q->log_lock);
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->cond);
    free(q);
    mosquitto_lib_cleanup();
}

/* create failed after the handles were made: they close, then q is freed */
static void abandon(struct mq_out *q)
{
    uv_close((uv_handle_t *)&q->async, abandoned);
    uv_close((uv_handle_t *)&q->timer, abandoned);
}

static int mqtt_create(const void *conf, const struct mt_output_ctx *ctx, void **state, char *err,
                       size_t errlen)
{
    const struct mqtt_conf *c = conf;
    struct mq_out *q = calloc(1, sizeof(*q));
    pthread_condattr_t ca;

    if (!q)
        return -ENOMEM;
    q->conf = c;
    q->loop = ctx->loop;
    q->agent_id = ctx->agent_id;
    q->output = ctx->instance;
    snprintf(q->module, sizeof(q->module), "%s", ctx->module);
    snprintf(q->host, sizeof(q->host), "%s", c->host);
    q->port = (int)(c->port ? c->port : (c->tls || c->ca_file) ? 8883 : 1883);
    if (c->client_id)
        snprintf(q->client_id, sizeof(q->client_id), "%s", c->client_id);
    else
        snprintf(q->client_id, sizeof(q->client_id), "%s-%s", ctx->agent_id, ctx->instance);
    render(c->status_topic, ctx->agent_id, ctx->instance, NULL, q->status_topic,
           sizeof(q->status_topic));
    mt_encoder_init(&q->enc, MT_FMT_JSONL, 0);
    mosquitto_lib_init();
    pthread_mutex_init(&q->client_lock, NULL);
    pthread_mutex_init(&q->log_lock, NULL);
    pthread_mutex_init(&q->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q->cond, &ca);
    pthread_condattr_destroy(&ca);
    uv_async_init(q->loop, &q->async, async_cb);
    q->async.data = q;
    uv_timer_init(q->loop, &q->timer);
    q->timer.data = q;
    q->handles = 2;
    int r = pthread_create(&q->thread, NULL, thread_main, q);
    if (r) {
        snprintf(err, errlen, "cannot start the connection thread: %s", strerror(r));
        abandon(q);
        return -r;
    }
    q->thread_started = true;
    if ((c->tls || c->ca_file) && !c->tls_verify)
        mt_diag(MT_WARNING, q->module,
                "tls_verify is off: the broker's certificate is not checked, anyone on the path "
                "can read and change what is sent");
    *state = q;
    return 0;
}

static void handle_closed(uv_handle_t *h)
{
    struct mq_out *q = h->data;
    if (--q->handles == 0 && q->closed)
        q->closed(q->closed_arg);
}

static void join_work(uv_work_t *w)
{
    struct mq_out *q = w->data;
    pthread_join(q->thread, NULL);
}

static void join_after(uv_work_t *w, int status)
{
    struct mq_out *q = w->data;
    (void)status;
    q->thread_started = false;
    uv_close((uv_handle_t *)&q->async, handle_closed);
    uv_close((uv_handle_t *)&q->timer, handle_closed);
}

static void mqtt_close(void *state, void (*done)(void *arg), void *arg)
{
    struct mq_out *q = state;
    q->closed = done;
    q->closed_arg = arg;
    pthread_mutex_lock(&q->lock);
    q->stop = true;
    pthread_cond_signal(&q->cond);
    pthread_mutex_unlock(&q->lock);
    if (!q->thread_started) {
        join_after(&q->join, 0);
        return;
    }
    /* the thread may sit in a connect for a while: join it off the loop */
    q->join.data = q;
    if (uv_queue_work(q->loop, &q->join, join_work, join_after)) {
        pthread_join(q->thread, NULL);
        join_after(&q->join, 0);
    }
}

static void mqtt_destroy(void *state)
{
    struct mq_out *q = state;
    pthread_mutex_destroy(&q->client_lock);
    pthread_mutex_destroy(&q->log_lock);
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->cond);
    free(q->acks);
    free(q->mids);
    free(q);
    mosquitto_lib_cleanup();
}

const struct mt_output_type mt_output_mqtt = {
    .name = "mqtt",
    .description = "Publish batches as JSON messages with QoS 1 to an MQTT broker",
    .options = mqtt_options,
    .config_size = sizeof(struct mqtt_conf),
    .flags = MT_OUTPUT_ASYNC | MT_OUTPUT_STABLE_KEYS,
    .check = mqtt_check,
    .create = mqtt_create,
    .encode = mqtt_encode,
    .free_payload = mqtt_free_payload,
    .send = mqtt_send,
    .abort = mqtt_abort,
    .close = mqtt_close,
    .destroy = mqtt_destroy,
};
