/*
 * http output: POSTs each batch as one JSON document (or NDJSON) to a URL,
 * with an Idempotency-Key header, optionally gzip'ed, over HTTP or HTTPS
 * (CA file, client certificate, bearer token or basic auth).
 *
 * Asynchronous type: encode() (JSON, gzip) runs on a worker while the
 * previous batch is on the wire; send() runs on the loop through libcurl's
 * multi-socket API: curl tells which sockets to watch (uv_poll) and when to
 * call back (uv_timer); no curl call blocks and no thread is started per
 * request (name resolution uses curl's own resolver thread). One easy
 * handle, reused: the connection is kept alive between batches.
 *
 * Answers: 2xx acknowledges; 408, 429 and 5xx are transient (Retry-After
 * honoured); other 4xx are permanent (the batch is parked); a network, TLS or
 * timeout error is transient and says so, naming the output.
 */
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "../diag.h"
#include "../encode.h"
#include "../output.h"
#include "../util.h"

#ifndef MITTARI_VERSION
#define MITTARI_VERSION "0"
#endif

struct http_header {
    const char *name, *value;
};

struct http_conf {
    const char *url;
    int format;
    bool gzip;
    struct mittari_list headers;
    const char *token;
    const char *username, *password;
    const char *ca_file, *cert_file, *key_file;
    bool tls_verify;
    int64_t connect_timeout_ms, timeout_ms;
};

static const char *const formats[] = {"json", "ndjson", NULL};

static const struct mittari_option header_options[] = {
    {.name = "name", .type = MITTARI_OPT_STRING, .flags = MITTARI_OPT_REQUIRED,
     .offset = offsetof(struct http_header, name), .help = "Header name, e.g. X-Site."},
    {.name = "value", .type = MITTARI_OPT_STRING, .flags = MITTARI_OPT_REQUIRED | MITTARI_OPT_SECRET,
     .offset = offsetof(struct http_header, value),
     .help = "Header value (value_file reads it from a file)."},
    {0},
};

static const struct mittari_option http_options[] = {
    {.name = "url", .type = MITTARI_OPT_STRING, .flags = MITTARI_OPT_REQUIRED,
     .offset = offsetof(struct http_conf, url),
     .help = "Where batches are POSTed: http://HOST[:PORT]/PATH or https://..."},
    {.name = "format", .type = MITTARI_OPT_ENUM, .def = "json", .values = formats,
     .offset = offsetof(struct http_conf, format),
     .help = "json: one document per batch with its key; ndjson: one reading per line."},
    {.name = "gzip", .type = MITTARI_OPT_BOOL, .def = "false",
     .offset = offsetof(struct http_conf, gzip),
     .help = "Compress the body (Content-Encoding: gzip)."},
    {.name = "headers", .type = MITTARI_OPT_LIST, .min = 0, .max = 32, .sub = header_options,
     .sub_size = sizeof(struct http_header), .offset = offsetof(struct http_conf, headers),
     .help = "Extra request headers: a list of {name, value}."},
    {.name = "token", .type = MITTARI_OPT_STRING, .flags = MITTARI_OPT_SECRET,
     .offset = offsetof(struct http_conf, token),
     .help = "Bearer token (Authorization: Bearer ...); use token_file."},
    {.name = "username", .type = MITTARI_OPT_STRING, .offset = offsetof(struct http_conf, username),
     .help = "Basic auth user name (with password)."},
    {.name = "password", .type = MITTARI_OPT_STRING, .flags = MITTARI_OPT_SECRET,
     .offset = offsetof(struct http_conf, password),
     .help = "Basic auth password; use password_file."},
    {.name = "ca_file", .type = MITTARI_OPT_STRING, .offset = offsetof(struct http_conf, ca_file),
     .help = "CA certificates (PEM) that the server's certificate must chain to (default: the "
             "system's)."},
    {.name = "cert_file", .type = MITTARI_OPT_STRING,
     .offset = offsetof(struct http_conf, cert_file),
     .help = "Client certificate (PEM) for mutual TLS."},
    {.name = "key_file", .type = MITTARI_OPT_STRING, .offset = offsetof(struct http_conf, key_file),
     .help = "Private key (PEM) of cert_file."},
    {.name = "tls_verify", .type = MITTARI_OPT_BOOL, .def = "true",
     .offset = offsetof(struct http_conf, tls_verify),
     .help = "Check the server's certificate and name; false is warned about at every start."},
    {.name = "connect_timeout", .type = MITTARI_OPT_DURATION, .def = "10s", .min = 100,
     .max = 600000, .offset = offsetof(struct http_conf, connect_timeout_ms),
     .help = "Longest a connection (with TLS) may take."},
    {.name = "timeout", .type = MITTARI_OPT_DURATION, .def = "60s", .min = 100, .max = 3600000,
     .offset = offsetof(struct http_conf, timeout_ms),
     .help = "Longest a whole request may take, answer included."},
    {0},
};

struct sock {
    uv_poll_t poll;
    curl_socket_t fd;
    struct http_out *h;
    struct sock *next, **prev;
};

struct http_out {
    const struct http_conf *conf;
    char module[96];
    uv_loop_t *loop;
    CURLM *multi;
    CURL *easy;
    uv_timer_t timer;
    struct sock *socks;
    struct curl_slist *base, *req;
    struct mt_send *inflight;
    char errbuf[CURL_ERROR_SIZE];
    char answer[256]; /* the start of the response body, for error messages */
    size_t answer_len;
    int handles; /* uv handles not yet closed */
    void (*closed)(void *arg);
    void *closed_arg;
    struct mt_encoder enc; /* worker only (encode) */
};

/* Filled again for the slot's next batch (output.h). */
struct payload {
    struct mt_buf body;
    struct mt_buf plain; /* gzip: the body before compression */
};

static int http_check(const void *conf, char *err, size_t errlen)
{
    const struct http_conf *c = conf;
    if (strncmp(c->url, "http://", 7) != 0 && strncmp(c->url, "https://", 8) != 0) {
        snprintf(err, errlen, "url must start with http:// or https://, got '%s'", c->url);
        return -EINVAL;
    }
    if (!!c->cert_file != !!c->key_file) {
        snprintf(err, errlen, "cert_file and key_file go together (mutual TLS)");
        return -EINVAL;
    }
    if (!!c->username != !!c->password) {
        snprintf(err, errlen, "username and password go together (basic auth)");
        return -EINVAL;
    }
    if (c->token && c->username) {
        snprintf(err, errlen, "give either token or username/password, not both");
        return -EINVAL;
    }
    for (size_t i = 0; i < c->headers.n; i++) {
        const struct http_header *hd = MITTARI_LIST_ITEM(&c->headers, struct http_header, i);
        if (!*hd->name || strpbrk(hd->name, ": \r\n") || strpbrk(hd->value, "\r\n")) {
            snprintf(err, errlen, "header %zu: a name without ':', spaces or line breaks, and a "
                     "value on one line", i + 1);
            return -EINVAL;
        }
    }
    return 0;
}

/* ---- curl <-> libuv ---- */

static void check_done(struct http_out *h);

static void sock_closed(uv_handle_t *hd)
{
    struct sock *s = hd->data;
    struct http_out *h = s->h;
    free(s);
    if (--h->handles == 0 && h->closed)
        h->closed(h->closed_arg);
}

static void sock_close(struct sock *s)
{
    *s->prev = s->next;
    if (s->next)
        s->next->prev = s->prev;
    uv_close((uv_handle_t *)&s->poll, sock_closed);
}

static void poll_cb(uv_poll_t *p, int status, int events)
{
    struct sock *s = p->data;
    struct http_out *h = s->h;
    int flags = 0, running = 0;

    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    curl_multi_socket_action(h->multi, s->fd, flags, &running);
    check_done(h);
}

static int socket_cb(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct http_out *h = userp;
    struct sock *s = socketp;

    (void)e;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            curl_multi_assign(h->multi, fd, NULL);
            uv_poll_stop(&s->poll);
            sock_close(s);
        }
        return 0;
    }
    if (!s) {
        s = calloc(1, sizeof(*s));
        if (!s)
            return -1;
        if (uv_poll_init_socket(h->loop, &s->poll, fd)) {
            free(s);
            return -1;
        }
        s->fd = fd;
        s->h = h;
        s->poll.data = s;
        s->next = h->socks;
        s->prev = &h->socks;
        if (h->socks)
            h->socks->prev = &s->next;
        h->socks = s;
        h->handles++;
        curl_multi_assign(h->multi, fd, s);
    }
    int ev = (what & CURL_POLL_IN ? UV_READABLE : 0) | (what & CURL_POLL_OUT ? UV_WRITABLE : 0);
    uv_poll_start(&s->poll, ev, poll_cb);
    return 0;
}

static void timeout_cb(uv_timer_t *t)
{
    struct http_out *h = t->data;
    int running = 0;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(h);
}

static int timer_cb(CURLM *m, long ms, void *userp)
{
    struct http_out *h = userp;
    (void)m;
    if (ms < 0)
        uv_timer_stop(&h->timer);
    else
        uv_timer_start(&h->timer, timeout_cb, (uint64_t)ms, 0);
    return 0;
}

static size_t answer_cb(char *p, size_t size, size_t n, void *arg)
{
    struct http_out *h = arg;
    size_t len = size * n, room = sizeof(h->answer) - 1 - h->answer_len;
    size_t take = len < room ? len : room;
    memcpy(h->answer + h->answer_len, p, take);
    h->answer_len += take;
    h->answer[h->answer_len] = 0;
    return len;
}

/* ---- create / destroy ---- */

static int add_header(struct curl_slist **l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int add_header(struct curl_slist **l, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    struct curl_slist *n = curl_slist_append(*l, line);
    if (!n)
        return -ENOMEM;
    *l = n;
    return 0;
}

static int setup_easy(struct http_out *h)
{
    const struct http_conf *c = h->conf;
    CURL *e = h->easy;
    int rc = 0;

    curl_easy_setopt(e, CURLOPT_URL, c->url);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)c->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)c->timeout_ms);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, h->errbuf);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, answer_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, h);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "mittari/" MITTARI_VERSION);
    curl_easy_setopt(e, CURLOPT_PRIVATE, h);
    if (c->ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file);
    if (c->cert_file) {
        curl_easy_setopt(e, CURLOPT_SSLCERT, c->cert_file);
        curl_easy_setopt(e, CURLOPT_SSLKEY, c->key_file);
    }
    if (!c->tls_verify) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (c->username) {
        curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(e, CURLOPT_USERNAME, c->username);
        curl_easy_setopt(e, CURLOPT_PASSWORD, c->password);
    }
    rc |= add_header(&h->base, "Content-Type: %s",
                     c->format == MT_BATCH_NDJSON ? "application/x-ndjson" : "application/json");
    if (c->gzip)
        rc |= add_header(&h->base, "Content-Encoding: gzip");
    if (c->token)
        rc |= add_header(&h->base, "Authorization: Bearer %s", c->token);
    rc |= add_header(&h->base, "Expect:"); /* no 100-continue round trip */
    for (size_t i = 0; i < c->headers.n; i++) {
        const struct http_header *hd = MITTARI_LIST_ITEM(&c->headers, struct http_header, i);
        rc |= add_header(&h->base, "%s: %s", hd->name, hd->value);
    }
    return rc ? -ENOMEM : 0;
}

static void http_destroy(void *state)
{
    struct http_out *h = state;
    if (h->easy)
        curl_easy_cleanup(h->easy);
    curl_slist_free_all(h->base);
    curl_slist_free_all(h->req);
    curl_global_cleanup();
    free(h);
}

static int http_create(const void *conf, const struct mt_output_ctx *ctx, void **state, char *err,
                       size_t errlen)
{
    const struct http_conf *c = conf;
    struct http_out *h = calloc(1, sizeof(*h));

    if (!h)
        return -ENOMEM;
    if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
        free(h);
        snprintf(err, errlen, "cannot initialise libcurl");
        return -ENOMEM;
    }
    h->conf = c;
    h->loop = ctx->loop;
    snprintf(h->module, sizeof(h->module), "%s", ctx->module);
    h->easy = curl_easy_init();
    h->multi = curl_multi_init();
    if (!h->easy || !h->multi || setup_easy(h)) {
        if (h->multi)
            curl_multi_cleanup(h->multi);
        http_destroy(h);
        snprintf(err, errlen, "cannot set up libcurl");
        return -ENOMEM;
    }
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    uv_timer_init(h->loop, &h->timer);
    h->timer.data = h;
    h->handles = 1;
    mt_encoder_init(&h->enc, MT_FMT_JSONL, 0);
    if (!c->tls_verify && strncmp(c->url, "https://", 8) == 0)
        mt_diag(MT_WARNING, h->module,
                "tls_verify is off: the server's certificate is not checked, anyone on the path "
                "can read and change what is sent");
    *state = h;
    return 0;
}

static void timer_closed(uv_handle_t *hd)
{
    struct http_out *h = hd->data;
    if (--h->handles == 0 && h->closed)
        h->closed(h->closed_arg);
}

static void http_close(void *state, void (*done)(void *arg), void *arg)
{
    struct http_out *h = state;
    h->closed = done;
    h->closed_arg = arg;
    /* closes the connections; curl removes their sockets through socket_cb */
    curl_multi_cleanup(h->multi);
    h->multi = NULL;
    while (h->socks) {
        uv_poll_stop(&h->socks->poll);
        sock_close(h->socks);
    }
    uv_close((uv_handle_t *)&h->timer, timer_closed);
}

/* ---- encode (worker) ---- */

static int gzip_body(struct mt_buf *in, struct mt_buf *out)
{
    z_stream z = {0};
    int rc = -ENOMEM;

    if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return -ENOMEM;
    uLong bound = deflateBound(&z, (uLong)in->len);
    if (mt_buf_reserve(out, bound + 1))
        goto out;
    z.next_in = (Bytef *)in->p;
    z.avail_in = (uInt)in->len;
    z.next_out = (Bytef *)out->p;
    z.avail_out = (uInt)bound;
    if (deflate(&z, Z_FINISH) != Z_STREAM_END)
        goto out;
    out->len = z.total_out;
    rc = 0;
out:
    deflateEnd(&z);
    return rc;
}

static void free_payload(struct payload *p)
{
    mt_buf_free(&p->body);
    mt_buf_free(&p->plain);
    free(p);
}

static int http_encode(void *state, const struct mt_batch *b, void **payload,
                       struct mt_deliver_result *res)
{
    struct http_out *h = state;
    struct payload *p = *payload ? *payload : calloc(1, sizeof(*p));
    struct mt_batch_head head = {b->agent_id, b->output, b->key, b->generation,
                                 b->first_seq, b->last_seq, b->n};
    size_t want = 512 + b->n * 192;
    int rc;

    *payload = NULL;
    if (!p)
        return -ENOMEM;
    mt_buf_refill(&p->body, want);
    if (h->conf->gzip) {
        mt_buf_refill(&p->plain, want);
        rc = mt_encode_batch(&h->enc, &p->plain, h->conf->format, &head, b->rows, b->n,
                             b->series);
        rc = rc ? rc : gzip_body(&p->plain, &p->body);
    } else {
        rc = mt_encode_batch(&h->enc, &p->body, h->conf->format, &head, b->rows, b->n, b->series);
    }
    if (rc) {
        snprintf(res->error, sizeof(res->error), "cannot encode the batch: out of memory");
        free_payload(p);
        return -ENOMEM;
    }
    *payload = p;
    return 0;
}

static void http_free_payload(void *state, void *payload)
{
    (void)state;
    free_payload(payload);
}

/* ---- send (loop) ---- */

static void finish(struct http_out *h, int rc)
{
    struct mt_send *s = h->inflight;
    h->inflight = NULL;
    curl_slist_free_all(h->req);
    h->req = NULL;
    s->done(s, rc);
}

static int classify(struct http_out *h, CURLcode cc, struct mt_deliver_result *res)
{
    long code = 0;
    curl_off_t retry_after = 0;

    if (cc != CURLE_OK) {
        snprintf(res->error, sizeof(res->error), "POST %s: %s%s%s", h->conf->url,
                 curl_easy_strerror(cc), h->errbuf[0] ? ": " : "", h->errbuf);
        return -EAGAIN;
    }
    curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &code);
    if (code >= 200 && code < 300)
        return 0;
    for (char *p = h->answer; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    snprintf(res->error, sizeof(res->error), "POST %s: HTTP %ld%s%.160s", h->conf->url, code,
             h->answer[0] ? ": " : "", h->answer);
    if (code == 408 || code == 429 || code >= 500) {
        if (curl_easy_getinfo(h->easy, CURLINFO_RETRY_AFTER, &retry_after) == CURLE_OK &&
            retry_after > 0)
            res->retry_after_ms = retry_after > 86400 ? 86400000 : (int64_t)retry_after * 1000;
        return -EAGAIN;
    }
    if (code >= 400)
        return -EPROTO; /* the server will not take this batch as it is */
    /* 1xx/3xx: no redirect is followed (a POST body would be lost or doubled) */
    return -EAGAIN;
}

static void check_done(struct http_out *h)
{
    CURLMsg *m;
    int left;

    while (h->multi && (m = curl_multi_info_read(h->multi, &left))) {
        if (m->msg != CURLMSG_DONE || m->easy_handle != h->easy || !h->inflight)
            continue;
        CURLcode cc = m->data.result;
        curl_multi_remove_handle(h->multi, h->easy);
        int rc = classify(h, cc, &h->inflight->res);
        finish(h, rc);
    }
}

static void http_send(void *state, struct mt_send *s)
{
    struct http_out *h = state;
    struct payload *p = s->payload;
    const struct mt_batch *b = s->batch;
    int rc = 0;

    h->inflight = s;
    h->errbuf[0] = 0;
    h->answer[0] = 0;
    h->answer_len = 0;
    for (struct curl_slist *l = h->base; l && !rc; l = l->next)
        rc = add_header(&h->req, "%s", l->data);
    rc |= add_header(&h->req, "Idempotency-Key: %s", b->key);
    rc |= add_header(&h->req, "X-Mittari-Agent: %s", b->agent_id);
    rc |= add_header(&h->req, "X-Mittari-Generation: %" PRId64, b->generation);
    rc |= add_header(&h->req, "X-Mittari-Seq: %" PRId64 "-%" PRId64, b->first_seq, b->last_seq);
    rc |= add_header(&h->req, "X-Mittari-Count: %zu", b->n);
    if (rc) {
        snprintf(s->res.error, sizeof(s->res.error), "out of memory");
        finish(h, -EAGAIN);
        return;
    }
    curl_easy_setopt(h->easy, CURLOPT_HTTPHEADER, h->req);
    curl_easy_setopt(h->easy, CURLOPT_POSTFIELDS, p->body.p ? p->body.p : "");
    curl_easy_setopt(h->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)p->body.len);
    CURLMcode mc = curl_multi_add_handle(h->multi, h->easy);
    if (mc != CURLM_OK) {
        snprintf(s->res.error, sizeof(s->res.error), "cannot start the request: %s",
                 curl_multi_strerror(mc));
        finish(h, -EAGAIN);
    }
}

static void http_abort(void *state)
{
    struct http_out *h = state;
    check_done(h); /* an answer that arrived counts */
    if (!h->inflight)
        return;
    curl_multi_remove_handle(h->multi, h->easy);
    snprintf(h->inflight->res.error, sizeof(h->inflight->res.error),
             "POST %s: stopped before the answer", h->conf->url);
    finish(h, -EAGAIN);
}

const struct mt_output_type mt_output_http = {
    .name = "http",
    .description = "POST batches as JSON to an HTTP(S) endpoint, with an idempotency key",
    .options = http_options,
    .config_size = sizeof(struct http_conf),
    .flags = MT_OUTPUT_ASYNC | MT_OUTPUT_STABLE_KEYS,
    .check = http_check,
    .create = http_create,
    .encode = http_encode,
    .free_payload = http_free_payload,
    .send = http_send,
    .abort = http_abort,
    .close = http_close,
    .destroy = http_destroy,
};
