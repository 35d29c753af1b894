/*
 * httpd: the small HTTP/1.1 server of the status endpoint: GET and HEAD,
 * one request per connection (Connection: close), no bodies, no TLS.
 *
 * Why not libmicrohttpd: Debian's links GnuTLS, whose libraries alone map
 * 2.3 MB into every agent, status endpoint on or off, and the idle agent
 * must stay under 8 MB on a Raspberry Pi-class gateway
 * (docs/performance.md). What the endpoint needs is a few hundred lines.
 *
 * Owns: the listening socket (given), an acceptor thread and one thread per
 * connection, at most max_conns; a connection beyond that is answered 503
 * and closed at once. Every connection has one deadline, timeout_ms from
 * its accept, for reading the request and writing the reply: a slow or
 * stuck client is cut off, never waited for. The request line and headers
 * are at most MT_HTTP_MAX_HEAD bytes (431/414 beyond).
 *
 * The handler runs on the connection's thread and may block (it is never
 * the agent's loop). start and stop from one thread; stop shuts every open
 * connection down and returns once every thread has ended, so nothing
 * calls the handler after it.
 */
#ifndef MT_HTTPD_H
#define MT_HTTPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define MT_HTTP_MAX_HEAD (16 * 1024)
#define MT_HTTP_MAX_HEADERS 8 /* of a reply */

struct mt_http_req {
    const char *method; /* "GET" or "HEAD" once parsed; anything else is refused */
    const char *path;   /* "/status", without the query */
    const char *query;  /* "day=2026-03-29&x=1", "" when none */
    const char *authorization; /* the header's value, NULL when none */
    bool head;
};

struct mt_http_resp {
    unsigned code;
    const char *type; /* Content-Type */
    struct mt_buf body;
    size_t nheaders;
    struct {
        const char *name; /* static */
        char value[160];
    } headers[MT_HTTP_MAX_HEADERS];
};

/* Adds a header to a reply (ignored beyond MT_HTTP_MAX_HEADERS). */
void mt_http_header(struct mt_http_resp *r, const char *name, const char *value);
/* The value of query argument name, percent-decoded, into buf; false when
 * absent (or longer than len - 1). */
bool mt_http_arg(const struct mt_http_req *req, const char *name, char *buf, size_t len);

/* Parses a request head (the bytes up to and including the blank line) in
 * place. 0; or the HTTP status to answer: 400 malformed, 405 a method
 * other than GET/HEAD (allowed ones are listed with Allow), 413 a body
 * announced, 414 a request target over 4 KiB, 505 not HTTP/1.x. */
int mt_http_parse(char *head, size_t len, struct mt_http_req *req);

typedef void (*mt_http_handler)(void *arg, const struct mt_http_req *req,
                                struct mt_http_resp *resp);

struct mt_httpd_conf {
    unsigned max_conns;
    int64_t timeout_ms;
    mt_http_handler handler;
    void *arg;
};

struct mt_httpd;

/* Takes the listening socket (closed by stop, or here on error). 0 or a
 * negative errno. */
int mt_httpd_start(struct mt_httpd **out, int listen_fd, const struct mt_httpd_conf *conf);
void mt_httpd_stop(struct mt_httpd *h); /* NULL is fine */

#endif
