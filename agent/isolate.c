#include "isolate.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "diag.h"
#include "input.h"
#include "isowire.h"

#define DEFAULT_STOP_MS 5000
#define PACKETS_PER_TURN 256 /* then the loop does other work before reading on */

enum state { ST_IDLE, ST_STARTING, ST_RUNNING, ST_BACKOFF, ST_FAILED, ST_STOPPING, ST_DONE };

/* One child process with its sockets: outlives its successor's start
 * until its handles are closed. */
struct child {
    struct mt_isolate *iso;
    uv_process_t proc;
    uv_poll_t poll;
    int data_fd, ctl_fd;
    int pid;
    int level; /* the log level it was last given */
    int open;  /* handles not yet closed: proc, poll */
    bool polling, exited, killed, stopped_msg;
    char crash[160]; /* what its crash report said, short */
};

struct mt_isolate {
    struct mittari_ctx *ctx;
    const struct mt_inst_conf *ic;
    struct mt_isolate_env env;
    char exe[4096];
    enum state state;
    struct child *child; /* the live one, or NULL */
    int children;        /* children whose handles are not closed yet */
    uv_timer_t restart, kill;
    int timers_open;
    bool timers_closing;
    int64_t started_us; /* monotonic: the live child reported STARTED */
    unsigned in_row;    /* deaths in a row, for the backoff */
    uint64_t restarts;
    bool we_set_down; /* the instance's health is down because the child died */
    void (*done)(void *arg);
    void *done_arg;
    uint8_t buf[MT_ISOWIRE_MSG_MAX];
};

static void check_done(struct mt_isolate *iso);

static const char *module(struct mt_isolate *iso)
{
    return mt_input_module(iso->ctx);
}

/* ---- closing a child ---- */

/* The last of a child: its descriptors and its struct. */
static void child_free(struct child *c)
{
    if (c->data_fd >= 0)
        close(c->data_fd);
    if (c->ctl_fd >= 0)
        close(c->ctl_fd);
    c->iso->children--;
    free(c);
}

static void child_closed(uv_handle_t *h)
{
    struct child *c = h->data;
    if (--c->open > 0)
        return;
    struct mt_isolate *iso = c->iso;
    child_free(c);
    check_done(iso);
}

static void child_close(struct child *c)
{
    if (c->polling) {
        uv_poll_stop(&c->poll);
        c->polling = false;
    }
    uv_close((uv_handle_t *)&c->poll, child_closed);
    uv_close((uv_handle_t *)&c->proc, child_closed);
}

/* ---- what the child says ---- */

static void reply(struct child *c, int rc)
{
    uint8_t msg[1 + sizeof(int32_t)];
    int32_t v = rc;
    msg[0] = MT_ISOWIRE_REPLY;
    memcpy(msg + 1, &v, sizeof(v));
    if (c->exited)
        return; /* nobody waits for it any more */
    /* one answer per request, and the child sends the next only after
     * reading it: the socket always has room, short of a child that
     * breaks the protocol, which then waits for nothing */
    ssize_t n = send(c->data_fd, msg, sizeof(msg), MSG_DONTWAIT | MSG_NOSIGNAL);
    (void)n;
}

/* A line the child logged, under the instance's name: the child's lines
 * start with it already (its host log, input.c's), or with a module of the
 * instance's own (its decoder's), which then goes after it. */
static void child_log(struct mt_isolate *iso, int level, const char *line)
{
    const char *m = module(iso);
    size_t ml = strlen(m);

    if (level < MT_ERR)
        level = MT_ERR;
    if (level > MT_DEBUG)
        level = MT_DEBUG;
    if (strncmp(line, m, ml) == 0 && line[ml] == ':' && line[ml + 1] == ' ')
        mt_diag(level, m, "%s", line + ml + 2);
    else
        mt_diag(level, m, "%s", line);
}

/* The crash report's gist for the health reason: "SIGSEGV (...) in the
 * plugin's poll work". */
static void crash_gist(struct child *c, const char *text, size_t n)
{
    char tmp[1100];
    size_t k = n < sizeof(tmp) - 1 ? n : sizeof(tmp) - 1;
    memcpy(tmp, text, k);
    tmp[k] = 0;
    const char *from = strstr(tmp, "crashed: ");
    from = from ? from + strlen("crashed: ") : tmp;
    char *end = strstr(from, " (plugin ");
    if (end)
        *end = 0;
    snprintf(c->crash, sizeof(c->crash), "%s", from);
}

static void on_started(struct mt_isolate *iso, struct child *c, int rc)
{
    if (c != iso->child || iso->state != ST_STARTING)
        return;
    iso->state = ST_RUNNING;
    iso->started_us = mt_mono_us();
    if (rc)
        mt_diag(MT_ERR, module(iso), "start failed: %s",
                mittari_strerror_own(rc) ? mittari_strerror_own(rc) : strerror(-rc));
}

static void on_failed(struct mt_isolate *iso, struct child *c, int rc, const char *text)
{
    mt_diag(MT_ERR, module(iso), "%s; it stays off until the next reload",
            text ? text : "the plugin could not be created");
    mt_host_api.set_health(iso->ctx, NULL, MITTARI_HEALTH_DOWN,
                           rc == MITTARI_EABI || rc == MITTARI_EPLUGIN ? "plugin refused"
                                                                       : "create failed");
    if (c == iso->child && iso->state == ST_STARTING)
        iso->state = ST_FAILED;
}

/* One packet from the child. -EBADMSG: it broke the protocol. */
static int handle(struct mt_isolate *iso, struct child *c, const uint8_t *p, size_t n)
{
    struct mt_isowire_rd rd;
    uint8_t type;

    mt_isowire_rd_init(&rd, p, n);
    type = mt_isowire_get_u8(&rd);
    switch (type) {
    case MT_ISOWIRE_EMIT: {
        struct mt_isowire_reading r;
        if (mt_isowire_get_reading(&rd, &r))
            return -EBADMSG;
        reply(c, mt_host_api.emit(iso->ctx, &r.r));
        return 0;
    }
    case MT_ISOWIRE_LOG: {
        int level = mt_isowire_get_i32(&rd);
        const char *line = mt_isowire_get_str(&rd);
        if (rd.bad || !line)
            return -EBADMSG;
        child_log(iso, level, line);
        return 0;
    }
    case MT_ISOWIRE_HEALTH: {
        const char *dev = mt_isowire_get_str(&rd);
        int health = mt_isowire_get_i32(&rd);
        const char *reason = mt_isowire_get_str(&rd);
        if (rd.bad)
            return -EBADMSG;
        mt_host_api.set_health(iso->ctx, dev, health, reason);
        return 0;
    }
    case MT_ISOWIRE_COUNT: {
        const char *dev = mt_isowire_get_str(&rd);
        const char *counter = mt_isowire_get_str(&rd);
        uint64_t v = mt_isowire_get_u64(&rd);
        if (rd.bad || !counter)
            return -EBADMSG;
        mt_host_api.count(iso->ctx, dev, counter, v);
        return 0;
    }
    case MT_ISOWIRE_STARTING:
        /* the plugin's own health reports follow in order: clear what the
         * agent said of the last child first */
        if (iso->we_set_down) {
            iso->we_set_down = false;
            mt_host_api.set_health(iso->ctx, NULL, MITTARI_HEALTH_UP, "");
        }
        return 0;
    case MT_ISOWIRE_STARTED: {
        int rc = mt_isowire_get_i32(&rd);
        if (rd.bad)
            return -EBADMSG;
        on_started(iso, c, rc);
        return 0;
    }
    case MT_ISOWIRE_FAILED: {
        int rc = mt_isowire_get_i32(&rd);
        const char *text = mt_isowire_get_str(&rd);
        if (rd.bad)
            return -EBADMSG;
        on_failed(iso, c, rc, text);
        return 0;
    }
    case MT_ISOWIRE_STOPPED:
        c->stopped_msg = true;
        return 0;
    case MT_ISOWIRE_CRASH: {
        char line[1100];
        size_t k = n - 1 < sizeof(line) - 1 ? n - 1 : sizeof(line) - 1;
        memcpy(line, p + 1, k);
        line[k] = 0;
        for (size_t i = 0; i < k; i++)
            if (line[i] == '\n' || line[i] == '\r' || line[i] == 0)
                line[i] = ' ';
        crash_gist(c, line, k);
        child_log(iso, MT_ERR, line);
        return 0;
    }
    default:
        return -EBADMSG;
    }
}

/* Reads and applies up to max packets (0 = until none is left). Returns
 * the number read, or -1 when the socket is at its end or broken. */
static int read_packets(struct mt_isolate *iso, struct child *c, int max)
{
    int got = 0;

    while (max == 0 || got < max) {
        ssize_t n = recv(c->data_fd, iso->buf, sizeof(iso->buf), MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return got;
        if (n <= 0)
            return -1;
        got++;
        unsigned type = iso->buf[0];
        int rc = handle(iso, c, iso->buf, (size_t)n);
        /* a reading may hold a raw identifier */
        explicit_bzero(iso->buf, (size_t)n);
        if (rc && !c->exited && !c->killed) {
            mt_diag(MT_ERR, module(iso),
                    "its process (pid %d) broke the protocol (a malformed message of type %u); "
                    "ending it",
                    c->pid, type);
            c->killed = true;
            kill(-c->pid, SIGKILL);
            uv_process_kill(&c->proc, SIGKILL);
        }
    }
    return got;
}

/* A reload may have changed the agent's log level: the child filters its
 * lines by the level it was given (the agent filters again). Told when it
 * next says something, which is when it matters. */
static void tell_level(struct child *c)
{
    int level = mt_diag_level();
    uint8_t msg[1 + sizeof(int32_t)];
    int32_t v = level;
    if (level == c->level || c->exited)
        return;
    msg[0] = MT_ISOWIRE_LEVEL;
    memcpy(msg + 1, &v, sizeof(v));
    if (send(c->ctl_fd, msg, sizeof(msg), MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)sizeof(msg))
        c->level = level;
}

static void on_readable(uv_poll_t *h, int status, int events)
{
    struct child *c = h->data;
    (void)events;
    tell_level(c);
    if (status < 0 || read_packets(c->iso, c, PACKETS_PER_TURN) < 0) {
        /* its end is closed: it is ending, the exit callback follows */
        uv_poll_stop(&c->poll);
        c->polling = false;
    }
}

/* ---- the child's end ---- */

static void spawn(struct mt_isolate *iso);

static void describe_exit(struct child *c, int64_t status, int sig, char *why, size_t len)
{
    if (c->crash[0])
        snprintf(why, len, "crashed: %s", c->crash);
    else if (sig)
        snprintf(why, len, "killed by signal %d (%s)", sig, strsignal(sig));
    else
        snprintf(why, len, "exited with status %lld", (long long)status);
}

static void restart_cb(uv_timer_t *t)
{
    struct mt_isolate *iso = t->data;
    if (iso->state == ST_BACKOFF)
        spawn(iso);
}

/* It died while it should run: logged, counted, health down, a new one
 * after the backoff. */
static void died(struct mt_isolate *iso, struct child *c, const char *why)
{
    if (iso->state == ST_RUNNING &&
        mt_mono_us() - iso->started_us >= (int64_t)MT_ISOLATE_BACKOFF_MAX_MS * 1000)
        iso->in_row = 0; /* it ran well for a while: start over at 1 s */
    uint64_t delay = MT_ISOLATE_BACKOFF_MIN_MS;
    for (unsigned i = 0; i < iso->in_row && delay < MT_ISOLATE_BACKOFF_MAX_MS; i++)
        delay *= 2;
    if (delay > MT_ISOLATE_BACKOFF_MAX_MS)
        delay = MT_ISOLATE_BACKOFF_MAX_MS;
    iso->in_row++;
    iso->restarts++;
    iso->state = ST_BACKOFF;
    mt_host_api.count(iso->ctx, NULL, "crashes", 1);
    char which[32] = "";
    if (c->pid)
        snprintf(which, sizeof(which), " (pid %d)", c->pid);
    mt_diag(MT_WARNING, module(iso), "its process%s %s; a new process in %.0f s (restart %llu)",
            which, why, (double)delay / 1000, (unsigned long long)iso->restarts);
    char reason[160];
    snprintf(reason, sizeof(reason), "process %s; restart %llu in %.0f s", why,
             (unsigned long long)iso->restarts, (double)delay / 1000);
    mt_host_api.set_health(iso->ctx, NULL, MITTARI_HEALTH_DOWN, reason);
    iso->we_set_down = true;
    uv_timer_start(&iso->restart, restart_cb, delay, 0);
}

static void child_exited(uv_process_t *p, int64_t status, int sig)
{
    struct child *c = p->data;
    struct mt_isolate *iso = c->iso;
    char why[200];

    c->exited = true;
    /* everything it sent before it ended is in the socket: apply it all */
    read_packets(iso, c, 0);
    describe_exit(c, status, sig, why, sizeof(why));
    if (c == iso->child) {
        iso->child = NULL;
        if (iso->state == ST_STOPPING) {
            if (c->killed)
                mt_diag(MT_WARNING, module(iso),
                        "its process (pid %d) did not stop within %.1f s: killed", c->pid,
                        (double)iso->env.stop_ms / 1000);
            else if (status || sig || !c->stopped_msg)
                mt_diag(MT_WARNING, module(iso), "its process (pid %d) %s while stopping", c->pid,
                        why);
            uv_timer_stop(&iso->kill);
        } else if (iso->state == ST_STARTING || iso->state == ST_RUNNING) {
            died(iso, c, why);
        } else if (iso->state == ST_FAILED && (status || sig)) {
            mt_diag(MT_WARNING, module(iso), "its process (pid %d) %s", c->pid, why);
        }
    }
    child_close(c);
}

/* ---- starting a child ---- */

static int send_init(struct mt_isolate *iso, struct child *c)
{
    struct mt_buf b = {0};
    const struct mt_plugin *pl = iso->ic->plugin_ref;
    int rc = mt_isowire_put_init(&b, pl->path, &pl->st, pl->name, iso->ic->name, module(iso),
                                 mt_diag_level(), pl->desc->options, iso->ic->conf);
    if (!rc && b.len > MT_ISOWIRE_INIT_MAX) /* mittari check refused it already */
        rc = -EMSGSIZE;
    if (!rc && send(c->ctl_fd, b.p, b.len, MSG_DONTWAIT | MSG_NOSIGNAL) != (ssize_t)b.len)
        rc = -errno;
    if (b.p)
        explicit_bzero(b.p, b.len); /* its options may hold a secret */
    mt_buf_free(&b);
    return rc;
}

static int socketpairs(int dfd[2], int cfd[2])
{
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, dfd))
        return -errno;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, cfd)) {
        int rc = -errno;
        close(dfd[0]);
        close(dfd[1]);
        return rc;
    }
    /* the agent's ends never block its loop; the child's block its
     * caller, as an emit waits for its answer */
    fcntl(dfd[0], F_SETFL, fcntl(dfd[0], F_GETFL) | O_NONBLOCK);
    fcntl(cfd[0], F_SETFL, fcntl(cfd[0], F_GETFL) | O_NONBLOCK);
    /* room for INIT in one packet, whatever the system's default */
    int sz = 2 * MT_ISOWIRE_INIT_MAX;
    setsockopt(cfd[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    return 0;
}

static int spawn_child(struct mt_isolate *iso, struct child *c)
{
    int dfd[2], cfd[2];
    char *args[] = {iso->exe, "__isolate", (char *)iso->ic->name, NULL};
    uv_stdio_container_t stdio[5];
    uv_process_options_t o;
    int rc = socketpairs(dfd, cfd);

    if (rc)
        return rc;
    c->data_fd = dfd[0];
    c->ctl_fd = cfd[0];
    memset(&o, 0, sizeof(o));
    stdio[0].flags = UV_IGNORE;
    stdio[1].flags = UV_IGNORE; /* stdout is the agent's (a console output) */
    stdio[2].flags = UV_INHERIT_FD;
    stdio[2].data.fd = STDERR_FILENO; /* what it says before the link is up */
    stdio[3].flags = UV_INHERIT_FD;
    stdio[3].data.fd = dfd[1];
    stdio[4].flags = UV_INHERIT_FD;
    stdio[4].data.fd = cfd[1];
    o.file = iso->exe;
    o.args = args;
    o.exit_cb = child_exited;
    o.stdio = stdio;
    o.stdio_count = 5;
    /* its own process group, so that a kill reaches what it started, and
     * a terminal's ^C reaches only the agent, which stops it */
    o.flags = UV_PROCESS_DETACHED;
    c->proc.data = c;
    rc = uv_spawn(iso->env.loop, &c->proc, &o);
    close(dfd[1]);
    close(cfd[1]);
    c->open = 1;
    if (rc)
        return rc;
    c->pid = c->proc.pid;
    return 0;
}

static void spawn(struct mt_isolate *iso)
{
    struct child *c = calloc(1, sizeof(*c));
    int rc;

    if (!c) {
        struct child none = {.pid = 0};
        iso->state = ST_STARTING;
        died(iso, &none, "could not be started (out of memory)");
        return;
    }
    c->iso = iso;
    c->data_fd = c->ctl_fd = -1;
    c->level = mt_diag_level(); /* what INIT says */
    iso->children++;
    iso->state = ST_STARTING;
    rc = spawn_child(iso, c);
    if (rc) {
        char why[160];
        snprintf(why, sizeof(why), "could not be started (%s: %s)", iso->exe,
                 rc < 0 ? uv_strerror(rc) : "?");
        died(iso, c, why);
        if (c->open)
            uv_close((uv_handle_t *)&c->proc, child_closed);
        else
            child_free(c);
        return;
    }
    uv_poll_init(iso->env.loop, &c->poll, c->data_fd);
    c->poll.data = c;
    c->open = 2;
    c->polling = true;
    uv_poll_start(&c->poll, UV_READABLE | UV_DISCONNECT, on_readable);
    iso->child = c;
    rc = send_init(iso, c);
    if (rc) {
        mt_diag(MT_ERR, module(iso), "cannot give its process (pid %d) its settings: %s", c->pid,
                strerror(-rc));
        c->killed = true;
        kill(-c->pid, SIGKILL);
        uv_process_kill(&c->proc, SIGKILL);
        return; /* the exit callback restarts it */
    }
    mt_diag(MT_INFO, module(iso), "isolated: its plugin runs in process %d", c->pid);
}

/* ---- lifecycle ---- */

int mt_isolate_create(struct mt_isolate **out, struct mittari_ctx *ctx,
                      const struct mt_isolate_env *env, const struct mt_inst_conf *ic)
{
    struct mt_isolate *iso = calloc(1, sizeof(*iso));

    *out = NULL;
    if (!iso)
        return -ENOMEM;
    iso->ctx = ctx;
    iso->ic = ic;
    iso->env = *env;
    if (iso->env.stop_ms <= 0)
        iso->env.stop_ms = DEFAULT_STOP_MS;
    snprintf(iso->exe, sizeof(iso->exe), "%s", env->exe ? env->exe : "/proc/self/exe");
    uv_timer_init(env->loop, &iso->restart);
    uv_timer_init(env->loop, &iso->kill);
    iso->restart.data = iso->kill.data = iso;
    iso->timers_open = 2;
    *out = iso;
    return 0;
}

int mt_isolate_start(struct mt_isolate *iso)
{
    if (iso->state == ST_IDLE)
        spawn(iso);
    return 0;
}

static void timer_closed(uv_handle_t *h)
{
    struct mt_isolate *iso = h->data;
    iso->timers_open--;
    check_done(iso);
}

/* DONE once the stop was asked, no child runs and every handle is closed. */
static void check_done(struct mt_isolate *iso)
{
    if (iso->state != ST_STOPPING || iso->child)
        return;
    if (!iso->timers_closing) {
        iso->timers_closing = true;
        uv_close((uv_handle_t *)&iso->restart, timer_closed);
        uv_close((uv_handle_t *)&iso->kill, timer_closed);
    }
    if (iso->timers_open || iso->children)
        return;
    iso->state = ST_DONE;
    if (iso->done)
        iso->done(iso->done_arg); /* may free iso: nothing after this */
}

static void kill_cb(uv_timer_t *t)
{
    struct mt_isolate *iso = t->data;
    struct child *c = iso->child;
    if (!c || c->exited)
        return;
    c->killed = true;
    kill(-c->pid, SIGKILL); /* its process group: what the plugin started too */
    uv_process_kill(&c->proc, SIGKILL);
}

void mt_isolate_stop(struct mt_isolate *iso, void (*done)(void *arg), void *arg)
{
    struct child *c = iso->child;

    iso->done = done;
    iso->done_arg = arg;
    uv_timer_stop(&iso->restart);
    iso->state = ST_STOPPING;
    if (c && !c->exited) {
        uint8_t stop = MT_ISOWIRE_STOP;
        if (send(c->ctl_fd, &stop, 1, MSG_DONTWAIT | MSG_NOSIGNAL) != 1)
            kill_cb(&iso->kill); /* it cannot hear it: dying already, or stuck */
        else
            uv_timer_start(&iso->kill, kill_cb, (uint64_t)iso->env.stop_ms, 0);
        return;
    }
    check_done(iso);
}

void mt_isolate_free(struct mt_isolate *iso)
{
    free(iso);
}

void mt_isolate_summary(struct mt_isolate *iso, struct mt_buf *b)
{
    switch (iso->state) {
    case ST_STARTING:
    case ST_RUNNING:
        mt_buf_printf(b, "; isolated (pid %d", iso->child ? iso->child->pid : 0);
        break;
    case ST_BACKOFF:
        mt_buf_adds(b, "; isolated (waiting to restart");
        break;
    case ST_FAILED:
        mt_buf_adds(b, "; isolated (failed");
        break;
    default:
        mt_buf_adds(b, "; isolated (stopping");
        break;
    }
    if (iso->restarts)
        mt_buf_printf(b, ", %llu restarts", (unsigned long long)iso->restarts);
    mt_buf_adds(b, ")");
}
