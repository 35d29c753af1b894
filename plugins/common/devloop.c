/*
 * devloop: a device descriptor kept open on the loop (devloop.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "devloop.h"

#define READ_SIZE 4096
#define READS_PER_WAKEUP 16 /* then let the loop run other work; it wakes us again */

struct mtl {
    const struct mittari_host *h;
    struct mittari_ctx *ctx;
    struct mtl_conf c;
    const struct mtl_ops *ops;
    void *arg;
    int fd;
    bool open, stopped, was_open;
    bool down;    /* reported down, not up again yet */
    int last_err; /* errno of the last failed open, to log a kind once */
    struct mittari_watch *watch;
    struct mittari_timer *timer;
    struct mittari_timer *hold; /* repeating every hold_ms while holding */
    int64_t last_data_us;       /* monotonic: the last read that gave bytes */
    uint8_t buf[READ_SIZE];
};

static void try_open(void *arg);
static void on_readable(void *arg, int fd, int events);

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int mtl_create(struct mtl **out, const struct mittari_host *host, struct mittari_ctx *ctx,
               const struct mtl_conf *c, const struct mtl_ops *ops, void *arg)
{
    struct mtl *l = calloc(1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    l->h = host;
    l->ctx = ctx;
    l->c = *c;
    l->ops = ops;
    l->arg = arg;
    l->fd = -1;
    *out = l;
    return 0;
}

/* Log lines are prefixed with the instance already; name a device only. */
static const char *dev_prefix(const struct mtl *l, char *buf, size_t len)
{
    if (!l->c.device)
        return "";
    snprintf(buf, len, "%s: ", l->c.device);
    return buf;
}

static int schedule_reopen(struct mtl *l)
{
    if (l->stopped)
        return 0;
    l->timer = NULL;
    return l->h->timer_start(l->ctx, (uint64_t)l->c.reopen_ms, 0, try_open, l, &l->timer);
}

static void end_hold(struct mtl *l)
{
    if (l->hold)
        l->h->timer_stop(l->hold);
    l->hold = NULL;
}

static void close_dev(struct mtl *l)
{
    end_hold(l);
    if (l->watch)
        l->h->fd_unwatch(l->watch);
    l->watch = NULL;
    if (l->open)
        l->ops->close(l->arg);
    l->open = false;
    l->fd = -1;
}

static void lost(struct mtl *l, int err)
{
    char reason[160];

    /* the agent logs the change of health: that is the one line for this */
    snprintf(reason, sizeof(reason), "%s went away (%s); reopening every %lld ms", l->c.path,
             err ? strerror(-err) : "hang-up", (long long)l->c.reopen_ms);
    close_dev(l);
    if (l->ops->lost)
        l->ops->lost(l->arg);
    l->h->count(l->ctx, l->c.device, "disconnects", 1);
    l->h->set_health(l->ctx, l->c.device, MITTARI_HEALTH_DOWN, reason);
    l->down = true;
    l->last_err = 0;
    schedule_reopen(l);
}

/* Reads what is there (at most READS_PER_WAKEUP buffers): the bytes read,
 * or -1 when the device went away. */
static ssize_t read_all(struct mtl *l, int events)
{
    ssize_t total = 0;

    for (int i = 0; i < READS_PER_WAKEUP && l->open; i++) {
        ssize_t n = read(l->fd, l->buf, sizeof(l->buf));
        if (n > 0) {
            l->ops->data(l->arg, l->buf, (size_t)n);
            /* card readers type raw card numbers: none stays in memory */
            explicit_bzero(l->buf, (size_t)n);
            total += n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            /* an error or hang-up with nothing to read would wake us forever */
            if (events & MITTARI_FD_ERROR) {
                lost(l, -EIO);
                return -1;
            }
            return total;
        }
        lost(l, n == 0 ? 0 : -errno);
        return -1;
    }
    return l->open ? total : -1;
}

static int watch(struct mtl *l)
{
    return l->h->fd_watch(l->ctx, l->fd, MITTARI_FD_READ, on_readable, l, &l->watch);
}

/* Every hold_ms while holding: what came meanwhile, in one go. A hold
 * that finds nothing ends it: the next bytes wake us at once again. */
static void hold_tick(void *arg)
{
    struct mtl *l = arg;
    ssize_t n = read_all(l, 0);

    if (n < 0 || !l->open) /* lost: close_dev ended the hold */
        return;
    if (n > 0) {
        l->last_data_us = mono_us();
        return;
    }
    end_hold(l);
    int rc = watch(l);
    if (rc) {
        l->watch = NULL;
        lost(l, rc < 0 && rc > -4096 ? rc : -EIO);
    }
}

/* Bytes came less than hold_ms after the last ones: stop watching, read
 * every hold_ms instead. Without a timer, simply go on watching. */
static void start_hold(struct mtl *l)
{
    if (l->h->timer_start(l->ctx, (uint64_t)l->c.hold_ms, (uint64_t)l->c.hold_ms, hold_tick, l,
                          &l->hold)) {
        l->hold = NULL;
        return;
    }
    l->h->fd_unwatch(l->watch);
    l->watch = NULL;
}

static void on_readable(void *arg, int fd, int events)
{
    struct mtl *l = arg;
    (void)fd;

    ssize_t n = read_all(l, events);
    if (n <= 0 || l->c.hold_ms <= 0)
        return;
    int64_t now = mono_us();
    bool fast = l->last_data_us && now - l->last_data_us < l->c.hold_ms * 1000;
    l->last_data_us = now;
    if (fast && !l->hold)
        start_hold(l);
}

static void open_failed(struct mtl *l, int rc, const char *err)
{
    char reason[160], pfx[80];

    snprintf(reason, sizeof(reason), "%s (retrying every %lld ms)", err, (long long)l->c.reopen_ms);
    l->h->set_health(l->ctx, l->c.device, MITTARI_HEALTH_DOWN, reason);
    /* going down is logged by the agent; a new kind of failure while down
     * is logged here, the same failure again is not */
    if (l->down && rc != l->last_err && l->last_err)
        l->h->log(l->ctx, MITTARI_LOG_WARNING, "%s%s", dev_prefix(l, pfx, sizeof(pfx)), reason);
    l->down = true;
    l->last_err = rc;
    schedule_reopen(l);
}

static void try_open(void *arg)
{
    struct mtl *l = arg;
    char note[200] = "", err[256] = "", pfx[80];
    int fd = -1, rc;

    if (l->stopped || l->open)
        return;
    if (l->timer) /* the one-shot timer that called us: release its handle */
        l->h->timer_stop(l->timer);
    l->timer = NULL;
    rc = l->ops->open(l->arg, &fd, note, sizeof(note), err, sizeof(err));
    bool degraded = rc == MTL_DEGRADED;
    if (degraded)
        rc = 0;
    if (rc) {
        open_failed(l, rc, err[0] ? err : strerror(-rc));
        return;
    }
    l->open = true;
    l->fd = fd;
    l->last_data_us = 0;
    rc = watch(l);
    if (rc) {
        l->watch = NULL;
        close_dev(l);
        snprintf(err, sizeof(err), "cannot watch %s: %s", l->c.path,
                 rc < 0 && rc > -4096 ? strerror(-rc) : "host refused");
        open_failed(l, rc, err);
        return;
    }
    if (note[0])
        l->h->log(l->ctx, MITTARI_LOG_NOTICE, "%s%s", dev_prefix(l, pfx, sizeof(pfx)), note);
    if (l->was_open) {
        l->h->count(l->ctx, l->c.device, "reconnects", 1);
        l->h->log(l->ctx, MITTARI_LOG_NOTICE, "%s%s open again", dev_prefix(l, pfx, sizeof(pfx)),
                  l->c.path);
    }
    l->was_open = true;
    l->last_err = 0;
    l->down = false;
    l->h->set_health(l->ctx, l->c.device, degraded ? MITTARI_HEALTH_DEGRADED : MITTARI_HEALTH_UP,
                     degraded ? note : NULL);
}

int mtl_start(struct mtl *l)
{
    l->stopped = false;
    try_open(l);
    return 0;
}

void mtl_stop(struct mtl *l)
{
    l->stopped = true;
    if (l->timer)
        l->h->timer_stop(l->timer);
    l->timer = NULL;
    close_dev(l);
}

void mtl_free(struct mtl *l)
{
    if (!l)
        return;
    if (l->open)
        l->ops->close(l->arg); /* the agent closed the watch after stop */
    free(l);
}

bool mtl_is_open(const struct mtl *l)
{
    return l && l->open;
}
