/* The status endpoint's HTTP server (httpd.c): the request parser on good
 * and bad heads, query arguments, and a live server on 127.0.0.1: replies,
 * the connection limit, the per-connection deadline against a slow client,
 * and a stop while clients hang on and a handler is busy. */
#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "httpd.h"
#include "util.h"

static int parse(const char *text, struct mt_http_req *req, char **keep)
{
    *keep = strdup(text);
    return mt_http_parse(*keep, strlen(text), req);
}

static void parses_requests(void **state)
{
    (void)state;
    struct mt_http_req r;
    char *k;
    assert_int_equal(parse("GET /status?format=text HTTP/1.1\r\nHost: x\r\n"
                           "authorization:  Bearer abc \r\n\r\n",
                           &r, &k),
                     0);
    assert_string_equal(r.method, "GET");
    assert_string_equal(r.path, "/status");
    assert_string_equal(r.query, "format=text");
    assert_string_equal(r.authorization, "Bearer abc");
    assert_false(r.head);
    free(k);
    assert_int_equal(parse("HEAD / HTTP/1.0\n\n", &r, &k), 0); /* bare LF too */
    assert_true(r.head);
    assert_string_equal(r.query, "");
    assert_null(r.authorization);
    free(k);
    assert_int_equal(parse("GET /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n", &r, &k), 0);
    free(k);

    static const struct {
        const char *head;
        int code;
    } bad[] = {
        {"POST /health HTTP/1.1\r\n\r\n", 405},
        {"DELETE / HTTP/1.1\r\nX: y\r\n\r\n", 405},
        {"GET /health HTTP/2.0\r\n\r\n", 505},
        {"GET /health FTP/1.0\r\n\r\n", 400},
        {"GET health HTTP/1.1\r\n\r\n", 400},
        {"GET /he alth HTTP/1.1\r\n\r\n", 400},
        {"GET  /health HTTP/1.1\r\n\r\n", 400},
        {"G(T /health HTTP/1.1\r\n\r\n", 400},
        {"GET /health HTTP/1.1\r\nNo colon here\r\n\r\n", 400},
        {"GET /health HTTP/1.1\r\nBad Name: x\r\n\r\n", 400},
        {"GET /health HTTP/1.1\r\nX: a\r\n folded\r\n\r\n", 400},
        {"GET /health HTTP/1.1\r\nContent-Length: 5\r\n\r\n", 413},
        {"GET /health HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400},
        {"GET /health HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 413},
        {"GET /health HTTP/1.1\r\nAuthorization: a\r\nAuthorization: b\r\n\r\n", 400},
        {"GET /health HTTP/1.1\r\nX: a\x01b\r\n\r\n", 400},
        {"GET /health HTTP/1.1\r\n", 400}, /* no blank line */
        {"", 400},
        {NULL, 0},
    };
    for (size_t i = 0; bad[i].head; i++) {
        int rc = parse(bad[i].head, &r, &k);
        if (rc != bad[i].code)
            fail_msg("'%s': %d, expected %d", bad[i].head, rc, bad[i].code);
        free(k);
    }
    /* a NUL inside the head */
    char nul[] = "GET /a\0b HTTP/1.1\r\n\r\n";
    assert_int_equal(mt_http_parse(nul, sizeof(nul) - 1, &r), 400);
    /* a target over 4 KiB */
    struct mt_buf b = {0};
    mt_buf_adds(&b, "GET /");
    for (int i = 0; i < 4100; i++)
        mt_buf_addc(&b, 'a');
    mt_buf_adds(&b, " HTTP/1.1\r\n\r\n");
    assert_int_equal(mt_http_parse(b.p, b.len, &r), 414);
    mt_buf_free(&b);
}

static void query_arguments(void **state)
{
    (void)state;
    struct mt_http_req r = {.query = "day=2026-03-29&strict&x=a%20b+c%zz&long=0123456789"};
    char v[11];
    assert_true(mt_http_arg(&r, "day", v, sizeof(v)));
    assert_string_equal(v, "2026-03-29");
    assert_true(mt_http_arg(&r, "strict", v, sizeof(v)));
    assert_string_equal(v, "");
    assert_true(mt_http_arg(&r, "x", v, sizeof(v)));
    assert_string_equal(v, "a b c%zz");
    char small[10];
    assert_false(mt_http_arg(&r, "long", small, sizeof(small))); /* 10 bytes and a NUL */
    assert_false(mt_http_arg(&r, "da", v, sizeof(v)));
    assert_false(mt_http_arg(&r, "nope", v, sizeof(v)));
    char big[16];
    assert_true(mt_http_arg(&r, "long", big, sizeof(big)));
    assert_string_equal(big, "0123456789");
}

/* ---- a live server ---- */

struct srv {
    struct mt_httpd *h;
    int port;
    atomic_int calls;
    atomic_int in_handler;
    atomic_bool release; /* the slow handler returns once set */
};

static void handler(void *arg, const struct mt_http_req *req, struct mt_http_resp *r)
{
    struct srv *s = arg;
    atomic_fetch_add(&s->calls, 1);
    if (strcmp(req->path, "/slow") == 0) {
        atomic_fetch_add(&s->in_handler, 1);
        for (int i = 0; i < 500 && !atomic_load(&s->release); i++)
            usleep(10000);
        atomic_fetch_sub(&s->in_handler, 1);
    }
    r->code = strcmp(req->path, "/missing") == 0 ? 404 : 200;
    r->type = "text/plain";
    mt_buf_printf(&r->body, "path %s query %s\n", req->path, req->query);
    mt_http_header(r, "X-Test", "yes");
}

static void start(struct srv *s, unsigned max_conns, int64_t timeout_ms)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 16), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    s->port = ntohs(a.sin_port);
    struct mt_httpd_conf c = {max_conns, timeout_ms, handler, s};
    assert_int_equal(mt_httpd_start(&s->h, fd, &c), 0);
}

static int connect_to(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

/* Sends text (may be NULL) and reads until the server closes. */
static char *exchange(int fd, const char *text)
{
    struct mt_buf b = {0};
    char chunk[4096];
    ssize_t n;
    if (text)
        assert_int_equal(send(fd, text, strlen(text), MSG_NOSIGNAL), (ssize_t)strlen(text));
    while ((n = recv(fd, chunk, sizeof(chunk), 0)) > 0)
        mt_buf_add(&b, chunk, (size_t)n);
    close(fd);
    char *r = strdup(mt_buf_cstr(&b));
    mt_buf_free(&b);
    return r;
}

static void serves_and_refuses(void **state)
{
    (void)state;
    struct srv s = {0};
    start(&s, 4, 5000);
    char *r = exchange(connect_to(s.port), "GET /a?b=c HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_non_null(strstr(r, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(r, "Connection: close\r\n"));
    assert_non_null(strstr(r, "Content-Length: 18\r\n"));
    assert_non_null(strstr(r, "X-Test: yes\r\n"));
    assert_non_null(strstr(r, "\r\n\r\npath /a query b=c\n"));
    free(r);
    r = exchange(connect_to(s.port), "HEAD /a HTTP/1.1\r\n\r\n");
    assert_non_null(strstr(r, "Content-Length: 15\r\n"));
    assert_null(strstr(r, "path")); /* no body for HEAD */
    free(r);
    r = exchange(connect_to(s.port), "PUT /a HTTP/1.1\r\n\r\n");
    assert_non_null(strstr(r, "HTTP/1.1 405 "));
    assert_non_null(strstr(r, "Allow: GET, HEAD\r\n"));
    free(r);
    /* 20 KB of headers */
    struct mt_buf big = {0};
    mt_buf_adds(&big, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < 2000; i++)
        mt_buf_adds(&big, "X-Pad: 0123456\r\n");
    r = exchange(connect_to(s.port), big.p);
    assert_non_null(strstr(r, "HTTP/1.1 431 "));
    free(r);
    mt_buf_free(&big);
    assert_int_equal(atomic_load(&s.calls), 2); /* the refused never reached the handler */
    mt_httpd_stop(s.h);
}

/* Two connections that send nothing hold both slots: a third is answered
 * 503 at once; after the deadline (300 ms) the silent ones are cut off and
 * a request is served again. */
static void limits_and_deadline(void **state)
{
    (void)state;
    struct srv s = {0};
    start(&s, 2, 300);
    int a = connect_to(s.port), b = connect_to(s.port);
    usleep(100000); /* both accepted */
    int64_t t0 = mt_mono_us();
    char *r = exchange(connect_to(s.port), "GET / HTTP/1.1\r\n\r\n");
    assert_non_null(strstr(r, "HTTP/1.1 503 "));
    free(r);
    assert_true(mt_mono_us() - t0 < 250000);
    /* a slowloris: a byte every 100 ms never completes a head in time */
    int c = -1;
    r = exchange(a, NULL); /* closed by the server after its deadline */
    assert_string_equal(r, "");
    free(r);
    r = exchange(b, NULL);
    free(r);
    assert_true(mt_mono_us() - t0 < 2000000);
    c = connect_to(s.port);
    for (int i = 0; i < 6; i++) {
        if (send(c, "G", 1, MSG_NOSIGNAL) != 1)
            break;
        usleep(100000);
    }
    r = exchange(c, NULL);
    assert_null(strstr(r, "200 OK"));
    free(r);
    r = exchange(connect_to(s.port), "GET /again HTTP/1.1\r\n\r\n");
    assert_non_null(strstr(r, "200 OK"));
    free(r);
    assert_int_equal(atomic_load(&s.calls), 1);
    mt_httpd_stop(s.h);
}

struct client {
    int port;
    char *reply;
};

static void *slow_client(void *arg)
{
    struct client *c = arg;
    c->reply = exchange(connect_to(c->port), "GET /slow HTTP/1.1\r\n\r\n");
    return NULL;
}

/* stop with an idle client connected and a handler busy: the idle one is
 * cut off at once, stop waits for the handler, nothing runs after it */
static void stop_with_clients(void **state)
{
    (void)state;
    struct srv s = {0};
    start(&s, 8, 60000);
    int idle = connect_to(s.port);
    struct client c = {s.port, NULL};
    pthread_t t;
    pthread_create(&t, NULL, slow_client, &c);
    for (int i = 0; i < 500 && atomic_load(&s.in_handler) == 0; i++)
        usleep(10000);
    assert_int_equal(atomic_load(&s.in_handler), 1);
    atomic_store(&s.release, true);
    int64_t t0 = mt_mono_us();
    mt_httpd_stop(s.h);
    assert_true(mt_mono_us() - t0 < 3000000); /* not the 60 s deadline */
    assert_int_equal(atomic_load(&s.in_handler), 0);
    int calls = atomic_load(&s.calls);
    pthread_join(t, NULL);
    free(c.reply);
    char *r = exchange(idle, NULL);
    assert_string_equal(r, "");
    free(r);
    assert_int_equal(atomic_load(&s.calls), calls);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parses_requests),
        cmocka_unit_test(query_arguments),
        cmocka_unit_test(serves_and_refuses),
        cmocka_unit_test(limits_and_deadline),
        cmocka_unit_test(stop_with_clients),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
