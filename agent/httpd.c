#include "httpd.h"

#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_TARGET 4096
#define STACK_SIZE (512 * 1024)

struct conn {
    struct conn *prev, *next;
    struct mt_httpd *h;
    int fd;
    int64_t deadline; /* monotonic µs */
};

struct mt_httpd {
    struct mt_httpd_conf conf;
    int listen_fd, wake_fd;
    pthread_t acceptor;
    pthread_mutex_t lock;
    pthread_cond_t idle; /* nconns reached 0 while stopping */
    struct conn conns;   /* list head */
    unsigned nconns;
    bool stopping;
};

/* ---- parsing (pure) ---- */

void mt_http_header(struct mt_http_resp *r, const char *name, const char *value)
{
    if (r->nheaders == MT_HTTP_MAX_HEADERS)
        return;
    r->headers[r->nheaders].name = name;
    snprintf(r->headers[r->nheaders].value, sizeof(r->headers[0].value), "%s", value);
    r->nheaders++;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

bool mt_http_arg(const struct mt_http_req *req, const char *name, char *buf, size_t len)
{
    size_t nl = strlen(name);
    for (const char *p = req->query; p && *p;) {
        const char *end = strchr(p, '&');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n >= nl && strncmp(p, name, nl) == 0 && (n == nl || p[nl] == '=')) {
            size_t o = 0;
            for (size_t i = nl + (n > nl); i < n; i++) {
                int c = (unsigned char)p[i];
                if (c == '%' && i + 2 < n && hexval(p[i + 1]) >= 0 && hexval(p[i + 2]) >= 0) {
                    c = hexval(p[i + 1]) * 16 + hexval(p[i + 2]);
                    i += 2;
                } else if (c == '+') {
                    c = ' ';
                }
                if (o + 1 >= len)
                    return false;
                buf[o++] = (char)c;
            }
            if (len == 0)
                return false;
            buf[o] = 0;
            return true;
        }
        p = end ? end + 1 : p + n;
    }
    return false;
}

static bool tchar(int c)
{
    return isalnum(c) || strchr("!#$%&'*+-.^_`|~", c);
}

/* Splits off one line (LF or CRLF) at *p, NUL-terminated; NULL at the end. */
static char *next_line(char **p, char *end)
{
    char *s = *p, *nl;
    if (s >= end)
        return NULL;
    nl = memchr(s, '\n', (size_t)(end - s));
    if (!nl)
        return NULL;
    *nl = 0;
    if (nl > s && nl[-1] == '\r')
        nl[-1] = 0;
    *p = nl + 1;
    return s;
}

static int parse_request_line(char *line, struct mt_http_req *req)
{
    char *sp1 = strchr(line, ' ');
    if (!sp1 || sp1 == line)
        return 400;
    *sp1 = 0;
    for (char *m = line; *m; m++)
        if (!tchar((unsigned char)*m))
            return 400;
    char *target = sp1 + 1, *sp2 = strchr(target, ' ');
    if (!sp2)
        return 400;
    *sp2 = 0;
    const char *version = sp2 + 1;
    if (strncmp(version, "HTTP/", 5) != 0)
        return 400;
    if (strcmp(version, "HTTP/1.1") != 0 && strcmp(version, "HTTP/1.0") != 0)
        return 505;
    size_t tl = strlen(target);
    if (tl > MAX_TARGET)
        return 414;
    if (target[0] != '/')
        return 400;
    for (size_t i = 0; i < tl; i++)
        if ((unsigned char)target[i] <= 0x20 || target[i] == 0x7f)
            return 400;
    req->method = line;
    char *q = strchr(target, '?');
    if (q)
        *q = 0;
    req->path = target;
    req->query = q ? q + 1 : "";
    if (strcmp(line, "GET") != 0 && strcmp(line, "HEAD") != 0)
        return 405;
    req->head = strcmp(line, "HEAD") == 0;
    return 0;
}

static int parse_header(char *line, struct mt_http_req *req)
{
    char *colon = strchr(line, ':');
    if (!colon || colon == line)
        return 400;
    for (char *c = line; c < colon; c++)
        if (!tchar((unsigned char)*c))
            return 400;
    *colon = 0;
    char *v = colon + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    size_t vl = strlen(v);
    while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
        v[--vl] = 0;
    for (size_t i = 0; i < vl; i++)
        if (((unsigned char)v[i] < 0x20 && v[i] != '\t') || v[i] == 0x7f)
            return 400;
    if (strcasecmp(line, "Authorization") == 0) {
        if (req->authorization)
            return 400; /* twice: which one would count? */
        req->authorization = v;
    } else if (strcasecmp(line, "Content-Length") == 0) {
        for (size_t i = 0; i < vl; i++)
            if (!isdigit((unsigned char)v[i]))
                return 400;
        if (!vl)
            return 400;
        for (size_t i = 0; i < vl; i++)
            if (v[i] != '0')
                return 413;
    } else if (strcasecmp(line, "Transfer-Encoding") == 0) {
        return 413;
    }
    return 0;
}

int mt_http_parse(char *head, size_t len, struct mt_http_req *req)
{
    char *p = head, *end = head + len, *line;
    int rc;

    memset(req, 0, sizeof(*req));
    if (memchr(head, 0, len))
        return 400;
    line = next_line(&p, end);
    if (!line)
        return 400;
    rc = parse_request_line(line, req);
    if (rc && rc != 405)
        return rc;
    int method_rc = rc;
    while ((line = next_line(&p, end)) != NULL) {
        if (!*line)
            return method_rc; /* the blank line: the head is complete */
        if (*line == ' ' || *line == '\t')
            return 400; /* obsolete line folding */
        rc = parse_header(line, req);
        if (rc)
            return rc;
    }
    return 400; /* no blank line */
}

/* ---- connections ---- */

static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - mt_mono_us();
        if (left <= 0)
            return -ETIMEDOUT;
        struct pollfd p = {fd, events, 0};
        int rc = poll(&p, 1, (int)((left + 999) / 1000));
        if (rc > 0)
            return (p.revents & (POLLERR | POLLNVAL)) ? -EPIPE : 0;
        if (rc == 0)
            return -ETIMEDOUT;
        if (errno != EINTR)
            return -errno;
    }
}

static int send_all(int fd, const char *p, size_t n, int64_t deadline)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            int rc = wait_fd(fd, POLLOUT, deadline);
            if (rc)
                return rc;
        } else {
            return w < 0 ? -errno : -EPIPE;
        }
    }
    return 0;
}

static const char *reason(unsigned code)
{
    switch (code) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Status";
    }
}

static void send_reply(int fd, struct mt_http_resp *r, bool head, int64_t deadline)
{
    struct mt_buf h = {0};
    mt_buf_printf(&h, "HTTP/1.1 %u %s\r\nConnection: close\r\nContent-Type: %s\r\n"
                      "Content-Length: %zu\r\n",
                  r->code, reason(r->code), r->type ? r->type : "text/plain; charset=utf-8",
                  r->body.len);
    for (size_t i = 0; i < r->nheaders; i++)
        mt_buf_printf(&h, "%s: %s\r\n", r->headers[i].name, r->headers[i].value);
    mt_buf_adds(&h, "\r\n");
    if (h.p && send_all(fd, h.p, h.len, deadline) == 0 && !head && r->body.len)
        send_all(fd, r->body.p, r->body.len, deadline);
    mt_buf_free(&h);
}

static void error_reply(int fd, unsigned code, int64_t deadline)
{
    struct mt_http_resp r = {.code = code};
    mt_buf_printf(&r.body, "%u %s\n", code, reason(code));
    if (code == 405)
        mt_http_header(&r, "Allow", "GET, HEAD");
    send_reply(fd, &r, false, deadline);
    mt_buf_free(&r.body);
}

/* Reads the request head; its length, or 0 (the client went away or was
 * too slow: nothing to answer) or the HTTP status of an error. */
static size_t read_head(int fd, char *buf, int64_t deadline, unsigned *code)
{
    size_t n = 0;
    *code = 0;
    for (;;) {
        if (n == MT_HTTP_MAX_HEAD) {
            /* a request line alone this long is a long target */
            *code = memchr(buf, '\n', n) ? 431 : 414;
            return 0;
        }
        ssize_t r = recv(fd, buf + n, MT_HTTP_MAX_HEAD - n, 0);
        if (r == 0)
            return 0;
        if (r < 0) {
            if (errno != EAGAIN && errno != EINTR)
                return 0;
            if (wait_fd(fd, POLLIN, deadline))
                return 0;
            continue;
        }
        size_t from = n > 3 ? n - 3 : 0;
        n += (size_t)r;
        for (size_t i = from; i + 1 < n; i++) {
            if (buf[i] == '\n' && (buf[i + 1] == '\n' ||
                                   (buf[i + 1] == '\r' && i + 2 < n && buf[i + 2] == '\n')))
                return i + (buf[i + 1] == '\n' ? 2 : 3);
        }
    }
}

static void serve(struct conn *c)
{
    struct mt_httpd *h = c->h;
    char *buf = malloc(MT_HTTP_MAX_HEAD + 1);
    struct mt_http_req req;
    unsigned code;

    if (!buf)
        return;
    size_t n = read_head(c->fd, buf, c->deadline, &code);
    if (!n) {
        if (code)
            error_reply(c->fd, code, c->deadline);
        free(buf);
        return;
    }
    int rc = mt_http_parse(buf, n, &req);
    if (rc) {
        error_reply(c->fd, (unsigned)rc, c->deadline);
        free(buf);
        return;
    }
    struct mt_http_resp resp = {.code = 500};
    h->conf.handler(h->conf.arg, &req, &resp);
    send_reply(c->fd, &resp, req.head, c->deadline);
    mt_buf_free(&resp.body);
    free(buf);
}

static void *conn_main(void *arg)
{
    struct conn *c = arg;
    struct mt_httpd *h = c->h;

    serve(c);
    shutdown(c->fd, SHUT_WR);
    pthread_mutex_lock(&h->lock);
    c->prev->next = c->next;
    c->next->prev = c->prev;
    close(c->fd);
    free(c);
    if (--h->nconns == 0 && h->stopping)
        pthread_cond_signal(&h->idle);
    pthread_mutex_unlock(&h->lock); /* nothing of h is touched after this */
    return NULL;
}

static void busy(int fd)
{
    static const char text[] = "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
                               "Content-Type: text/plain\r\nContent-Length: 33\r\n\r\n"
                               "too many connections; try again\r\n";
    /* best effort, never waits: the socket is non-blocking */
    ssize_t w = send(fd, text, sizeof(text) - 1, MSG_NOSIGNAL);
    (void)w;
    close(fd);
}

static void accept_one(struct mt_httpd *h, pthread_attr_t *attr)
{
    int fd = accept4(h->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
            usleep(100000); /* out of descriptors: do not spin on the ready listener */
        return;
    }
    struct conn *c = calloc(1, sizeof(*c));
    pthread_mutex_lock(&h->lock);
    if (!c || h->nconns >= h->conf.max_conns || h->stopping) {
        pthread_mutex_unlock(&h->lock);
        free(c);
        busy(fd);
        return;
    }
    c->h = h;
    c->fd = fd;
    c->deadline = mt_mono_us() + h->conf.timeout_ms * 1000;
    c->next = h->conns.next;
    c->prev = &h->conns;
    h->conns.next->prev = c;
    h->conns.next = c;
    h->nconns++;
    pthread_t t;
    if (pthread_create(&t, attr, conn_main, c) != 0) {
        c->prev->next = c->next;
        c->next->prev = c->prev;
        h->nconns--;
        pthread_mutex_unlock(&h->lock);
        free(c);
        busy(fd);
        return;
    }
    pthread_mutex_unlock(&h->lock);
}

static void *acceptor_main(void *arg)
{
    struct mt_httpd *h = arg;
    pthread_attr_t attr;

    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, STACK_SIZE);
    for (;;) {
        struct pollfd p[2] = {{h->listen_fd, POLLIN, 0}, {h->wake_fd, POLLIN, 0}};
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        if (p[1].revents)
            break;
        if (p[0].revents & POLLIN)
            accept_one(h, &attr);
    }
    pthread_attr_destroy(&attr);
    return NULL;
}

int mt_httpd_start(struct mt_httpd **out, int listen_fd, const struct mt_httpd_conf *conf)
{
    struct mt_httpd *h = calloc(1, sizeof(*h));
    int rc;

    *out = NULL;
    if (!h) {
        close(listen_fd);
        return -ENOMEM;
    }
    h->conf = *conf;
    h->listen_fd = listen_fd;
    h->conns.next = h->conns.prev = &h->conns;
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->idle, NULL);
    h->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    rc = h->wake_fd < 0 ? -errno : -pthread_create(&h->acceptor, NULL, acceptor_main, h);
    if (rc) {
        if (h->wake_fd >= 0)
            close(h->wake_fd);
        close(listen_fd);
        pthread_cond_destroy(&h->idle);
        pthread_mutex_destroy(&h->lock);
        free(h);
        return rc;
    }
    *out = h;
    return 0;
}

void mt_httpd_stop(struct mt_httpd *h)
{
    uint64_t one = 1;
    if (!h)
        return;
    pthread_mutex_lock(&h->lock);
    h->stopping = true;
    for (struct conn *c = h->conns.next; c != &h->conns; c = c->next)
        shutdown(c->fd, SHUT_RDWR); /* a read or write in progress ends now */
    pthread_mutex_unlock(&h->lock);
    if (write(h->wake_fd, &one, sizeof(one)) < 0) {
        /* an eventfd write fails only on overflow: it is readable anyway */
    }
    pthread_join(h->acceptor, NULL);
    close(h->listen_fd);
    pthread_mutex_lock(&h->lock);
    while (h->nconns)
        pthread_cond_wait(&h->idle, &h->lock);
    pthread_mutex_unlock(&h->lock);
    close(h->wake_fd);
    pthread_cond_destroy(&h->idle);
    pthread_mutex_destroy(&h->lock);
    free(h);
}
