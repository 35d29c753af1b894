#include "statuscli.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent.h"
#include "listen.h"
#include "log.h"
#include "logfacts.h"
#include "report.h"
#include "util.h"

#define TIMEOUT_MS 5000
#define MAX_REPLY (8 * 1024 * 1024)

/* The agent holds an exclusive lock on data_dir/mittari.lock while it
 * runs. Returns its pid, 0 when none runs. */
static long agent_pid(const char *data_dir)
{
    char path[PATH_MAX], buf[32];
    snprintf(path, sizeof(path), "%s/mittari.lock", data_dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    long pid = 0;
    if (flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK) {
        ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
        buf[n > 0 ? n : 0] = 0;
        pid = strtol(buf, NULL, 10);
        if (pid <= 0)
            pid = -1; /* running, pid unknown */
    }
    close(fd);
    return pid;
}

static int wait_fd(int fd, short events)
{
    struct pollfd p = {fd, events, 0};
    int rc = poll(&p, 1, TIMEOUT_MS);
    return rc > 0 ? 0 : rc == 0 ? -ETIMEDOUT : -errno;
}

static int connect_to(const struct mt_listen *l)
{
    int fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (const struct sockaddr *)&l->addr, l->addrlen) != 0) {
        int rc = errno == EINPROGRESS ? wait_fd(fd, POLLOUT) : -errno;
        int soerr = 0;
        socklen_t len = sizeof(soerr);
        if (!rc && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 && soerr)
            rc = -soerr;
        if (rc) {
            close(fd);
            return rc;
        }
    }
    return fd;
}

/* GET path; *code and the body (in b) of the reply; health: the
 * X-Mittari-Health header ("" if none). 0 or -errno. */
static int http_get(const struct mt_listen *l, const char *token, const char *path, int *code,
                    struct mt_buf *b, char *health, size_t hlen)
{
    struct mt_buf req = {0};
    char chunk[16384];
    int fd = connect_to(l), rc = 0;

    if (fd < 0)
        return fd;
    mt_buf_printf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", path, l->text);
    if (token)
        mt_buf_printf(&req, "Authorization: Bearer %s\r\n", token);
    mt_buf_adds(&req, "\r\n");
    for (size_t off = 0; off < req.len && !rc;) {
        ssize_t n = send(fd, req.p + off, req.len - off, MSG_NOSIGNAL);
        if (n > 0)
            off += (size_t)n;
        else if (n < 0 && errno == EAGAIN)
            rc = wait_fd(fd, POLLOUT);
        else
            rc = n < 0 ? -errno : -EPIPE;
    }
    if (token)
        memset(req.p, 0, req.len);
    mt_buf_free(&req);
    while (!rc) {
        ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
        if (n > 0 && b->len + (size_t)n <= MAX_REPLY)
            mt_buf_add(b, chunk, (size_t)n);
        else if (n > 0)
            rc = -EMSGSIZE;
        else if (n == 0)
            break;
        else if (errno == EAGAIN)
            rc = wait_fd(fd, POLLIN);
        else if (errno != EINTR)
            rc = -errno;
    }
    close(fd);
    if (rc)
        return rc;
    const char *s = mt_buf_cstr(b);
    const char *body = strstr(s, "\r\n\r\n");
    if (sscanf(s, "HTTP/1.%*d %d", code) != 1 || !body)
        return -EPROTO;
    health[0] = 0;
    const char *hh = strcasestr(s, "\r\nX-Mittari-Health: ");
    if (hh && hh < body)
        snprintf(health, hlen, "%.*s", (int)strcspn(hh + 20, "\r\n"), hh + 20);
    body += 4;
    size_t blen = b->len - (size_t)(body - s);
    memmove(b->p, body, blen);
    b->len = blen;
    b->p[blen] = 0;
    return 0;
}

/* The agent's own answer; 1 when there was none. */
static int ask_agent(const struct mt_config *c, FILE *out, FILE *err, int *exit_code)
{
    struct mt_listen l, client;
    struct mt_buf b = {0};
    char msg[200], health[32];
    int code = 0;

    if (mt_listen_parse(c->status.listen, &l, msg, sizeof(msg)) || l.off) {
        fprintf(err, "mittari: the status endpoint is off (status.listen); figures from the "
                     "log:\n");
        return 1;
    }
    mt_listen_client(&l, &client);
    int rc = http_get(&client, c->status.token, "/status?format=text", &code, &b, health,
                      sizeof(health));
    if (rc || code != 200) {
        if (rc)
            fprintf(err, "mittari: the agent runs but its status endpoint %s does not answer: %s; "
                         "figures from the log:\n",
                    client.text, strerror(-rc));
        else
            fprintf(err, "mittari: the status endpoint %s answered %d: %s", client.text, code,
                    mt_buf_cstr(&b));
        mt_buf_free(&b);
        return 1;
    }
    fputs(mt_buf_cstr(&b), out);
    mt_buf_free(&b);
    *exit_code = strcmp(health, "ok") == 0 ? 0 : 1;
    return 0;
}

static int from_log(const struct mt_config *c, bool running, FILE *out, FILE *err)
{
    char path[PATH_MAX], msg[600];
    struct mt_logdb *db;
    struct mt_facts *f = NULL;
    struct mt_health h = {0};
    struct mt_buf b = {0};

    snprintf(path, sizeof(path), "%s/mittari.db", c->agent.data_dir);
    int rc = mt_log_open(&db, path, MT_LOG_READONLY, msg, sizeof(msg));
    if (rc) {
        fprintf(err, "mittari: %s\n", msg);
        return MT_EXIT_STORAGE;
    }
    mt_facts_read(db, NULL, mt_now_us(), &f);
    mt_log_close(db);
    if (!f) {
        fprintf(err, "mittari: out of memory\n");
        return MT_EXIT_FAILURE;
    }
    h.level = MT_HEALTH_FAILING;
    h.n = 1;
    snprintf(h.reasons[0], sizeof(h.reasons[0]), "%s",
             running ? "the agent runs, but its status endpoint does not answer"
                     : "the agent is not running");
    mt_report_text(NULL, f, &h, mt_now_us(), &b);
    fputs(mt_buf_cstr(&b), out);
    mt_buf_free(&b);
    rc = f->error ? MT_EXIT_STORAGE : 1;
    mt_facts_unref(f);
    return rc;
}

int mt_statuscli_run(const struct mt_config *c, FILE *out, FILE *err)
{
    long pid = agent_pid(c->agent.data_dir);
    int code = 1;

    if (pid != 0 && ask_agent(c, out, err, &code) == 0)
        return code;
    return from_log(c, pid != 0, out, err);
}
