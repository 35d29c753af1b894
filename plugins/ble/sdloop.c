/*
 * sdloop: sd-bus on the agent's loop (sdloop.h).
 */
#include "sdloop.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

/* Messages handled per turn of the loop: at 1,000 adverts a second a turn
 * takes well under a millisecond, and a burst cannot hold the loop. */
#define BATCH 64

struct ble_sdloop {
    const struct mittari_host *h;
    struct mittari_ctx *ctx;
    sd_bus *bus;
    ble_sdloop_error_cb on_error;
    void *arg;
    struct mittari_watch *watch;
    int watch_events;
    struct mittari_timer *timer;
    uint64_t deadline; /* the timer's, CLOCK_MONOTONIC µs; UINT64_MAX = none */
    bool processing, dead;
};

static void rearm(struct ble_sdloop *l, bool more);

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void stop_handles(struct ble_sdloop *l)
{
    if (l->watch)
        l->h->fd_unwatch(l->watch);
    if (l->timer)
        l->h->timer_stop(l->timer);
    l->watch = NULL;
    l->timer = NULL;
    l->watch_events = 0;
    l->deadline = UINT64_MAX;
}

static void fail(struct ble_sdloop *l, int err)
{
    stop_handles(l);
    l->on_error(l->arg, err < 0 ? err : -ECONNRESET);
}

static void process(struct ble_sdloop *l, bool fd_error)
{
    int r = 0, n;

    l->processing = true;
    for (n = 0; n < BATCH; n++) {
        r = sd_bus_process(l->bus, NULL);
        if (r <= 0 || l->dead)
            break;
    }
    l->processing = false;
    if (l->dead) {
        free(l);
        return;
    }
    if (r < 0 || (fd_error && r == 0)) {
        fail(l, r);
        return;
    }
    rearm(l, n == BATCH);
}

static void on_fd(void *arg, int fd, int events)
{
    (void)fd;
    process(arg, (events & MITTARI_FD_ERROR) != 0);
}

static void on_timer(void *arg)
{
    struct ble_sdloop *l = arg;
    l->h->timer_stop(l->timer); /* one-shot: the host keeps it until stopped */
    l->timer = NULL;
    l->deadline = UINT64_MAX;
    process(l, false);
}

static void rearm(struct ble_sdloop *l, bool more)
{
    uint64_t usec = UINT64_MAX;
    int ev = sd_bus_get_events(l->bus), want, rc;

    if (ev < 0) {
        fail(l, ev);
        return;
    }
    /* always readable: a hang-up shows as an error of the read watch */
    want = MITTARI_FD_READ | ((ev & POLLOUT) ? MITTARI_FD_WRITE : 0);
    if (want != l->watch_events) {
        if (l->watch)
            l->h->fd_unwatch(l->watch);
        l->watch = NULL;
        rc = l->h->fd_watch(l->ctx, sd_bus_get_fd(l->bus), want, on_fd, l, &l->watch);
        if (rc) {
            fail(l, rc);
            return;
        }
        l->watch_events = want;
    }
    rc = sd_bus_get_timeout(l->bus, &usec);
    if (rc < 0) {
        fail(l, rc);
        return;
    }
    if (more)
        usec = 0; /* messages left over: the next turn of the loop */
    if (usec == l->deadline)
        return;
    if (l->timer)
        l->h->timer_stop(l->timer);
    l->timer = NULL;
    l->deadline = usec;
    if (usec == UINT64_MAX)
        return;
    uint64_t now = mono_us(), ms = usec > now ? (usec - now + 999) / 1000 : 0;
    rc = l->h->timer_start(l->ctx, ms, 0, on_timer, l, &l->timer);
    if (rc)
        fail(l, rc);
}

int ble_sdloop_attach(struct ble_sdloop **out, const struct mittari_host *host,
                      struct mittari_ctx *ctx, sd_bus *bus, ble_sdloop_error_cb on_error, void *arg)
{
    struct ble_sdloop *l = calloc(1, sizeof(*l));
    int rc;

    *out = NULL;
    if (!l)
        return -ENOMEM;
    *l = (struct ble_sdloop){.h = host,
                             .ctx = ctx,
                             .bus = bus,
                             .on_error = on_error,
                             .arg = arg,
                             .deadline = UINT64_MAX};
    rc = host->fd_watch(ctx, sd_bus_get_fd(bus), MITTARI_FD_READ, on_fd, l, &l->watch);
    if (rc) {
        free(l);
        return rc;
    }
    l->watch_events = MITTARI_FD_READ;
    *out = l;
    return 0;
}

void ble_sdloop_kick(struct ble_sdloop *l)
{
    if (l && !l->processing)
        rearm(l, false);
}

void ble_sdloop_detach(struct ble_sdloop *l)
{
    if (!l)
        return;
    stop_handles(l);
    if (l->processing)
        l->dead = true; /* process() frees it when sd_bus_process returns */
    else
        free(l);
}
