/*
 * tcp: the Modbus TCP transport, on the agent's loop without blocking.
 *
 * A link is a state machine (enum mb_tcp_state):
 *
 *   DOWN --due, not backing off--> RESOLVING (a host name: getaddrinfo on a
 *   worker) --> CONNECTING (non-blocking connect, fd watched for writing,
 *   deadline connect_timeout; each address in turn) --> IDLE (fd watched
 *   for reading) --request sent--> BUSY (deadline response_timeout) --answer,
 *   exception--> IDLE; a bad answer, a timeout, a broken or closed
 *   connection --> DOWN. A connection that cannot be made --> DOWN with the
 *   link's backoff.
 *
 * Polls come from mb_tcp_tick (the plugin's one timer per instance, on a
 * grid: the polls due in one grid step share a wake) and are queued; the
 * link asks its queued devices one at a time, each device's transactions in
 * order (the device engine in link.c). Answers are read as they come
 * (on_fd); a device that is still being asked when its next poll is due
 * skips that poll (counted: polls_skipped).
 */
#include "linkint.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define NONE ((size_t)-1)
#define MB_GRID_MAX_US 250000
#define MB_PHASES_MAX 4
#define MB_PHASE_DEVICES 32

static int64_t now_of(const struct mb_link *l)
{
    return l->clock(l->clock_arg);
}

/* ---- addresses ---- */

static size_t copy_addrs(struct mb_addr *out, const struct addrinfo *res)
{
    size_t n = 0;
    for (const struct addrinfo *ai = res; ai && n < MB_MAX_ADDRS; ai = ai->ai_next) {
        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
            ai->ai_addrlen > sizeof(out[n].u))
            continue;
        memcpy(&out[n].u, ai->ai_addr, ai->ai_addrlen);
        out[n++].len = ai->ai_addrlen;
    }
    return n;
}

static int lookup(struct mb_link *l, int flags)
{
    const struct mb_dev_conf *c = l->devs[0].c;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = flags}, *res;
    char port[16];

    snprintf(port, sizeof(port), "%d", (int)c->port);
    if (getaddrinfo(c->host, port, &hints, &res))
        return -ENOENT;
    l->naddrs = copy_addrs(l->addrs, res);
    freeaddrinfo(res);
    return l->naddrs ? 0 : -ENOENT;
}

void mb_tcp_init(struct mb_link *l)
{
    l->state = MB_TCP_DOWN;
    l->fd = -1;
    l->dev = NONE;
    l->grid_us = MB_GRID_MAX_US;
    /* an address needs no lookup: the loop takes it as it is, once */
    l->numeric = lookup(l, AI_NUMERICHOST | AI_NUMERICSERV) == 0;
}

/* ---- the descriptor ---- */

static void on_fd(void *arg, int fd, int events);

static void unwatch(struct mb_link *l)
{
    if (l->watch)
        l->h->fd_unwatch(l->watch);
    l->watch = NULL;
    l->watch_ev = 0;
}

static int watch(struct mb_link *l, int ev)
{
    if (l->watch && l->watch_ev == ev)
        return 0;
    unwatch(l);
    int rc = l->h->fd_watch(l->ctx, l->fd, ev, on_fd, l, &l->watch);
    if (rc)
        l->watch = NULL;
    else
        l->watch_ev = ev;
    return rc;
}

static void tcp_close(struct mb_link *l)
{
    unwatch(l); /* before close: the agent must not watch a closed descriptor */
    if (l->fd >= 0)
        close(l->fd);
    l->fd = -1;
    l->connected = false;
    l->state = MB_TCP_DOWN;
    l->rxlen = 0;
}

static void clear_queue(struct mb_link *l)
{
    for (size_t i = 0; i < l->ndevs; i++)
        l->devs[i].queued = false;
}

/* ---- connecting ---- */

static void link_failed(struct mb_link *l, int err)
{
    tcp_close(l);
    mb_link_down(l, l->attempt_at, err);
    clear_queue(l);
}

static void connected(struct mb_link *l)
{
    int one = 1;
    setsockopt(l->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    l->state = MB_TCP_IDLE;
    mb_link_up(l);
}

/* The next address from addr_i on; err is why the one before failed. */
static void try_connect(struct mb_link *l, int64_t now, int err)
{
    for (; l->addr_i < l->naddrs; l->addr_i++) {
        const struct mb_addr *a = &l->addrs[l->addr_i];
        l->fd = socket(a->u.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (l->fd < 0) {
            err = -errno;
            continue;
        }
        int rc = connect(l->fd, &a->u.sa, a->len) == 0 ? 0 : -errno;
        if (rc == 0 && (rc = watch(l, MITTARI_FD_READ)) == 0) {
            connected(l);
            return;
        }
        if (rc == -EINPROGRESS && (rc = watch(l, MITTARI_FD_WRITE)) == 0) {
            l->state = MB_TCP_CONNECTING;
            l->deadline = now + l->devs[0].c->connect_timeout_ms * 1000;
            return;
        }
        err = rc;
        tcp_close(l);
    }
    link_failed(l, err);
}

static void finish_connect(struct mb_link *l, int64_t now)
{
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    if (getsockopt(l->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl))
        soerr = errno;
    if (soerr == EINPROGRESS)
        return;
    if (soerr == 0 && watch(l, MITTARI_FD_READ) == 0) {
        connected(l);
        return;
    }
    tcp_close(l);
    l->addr_i++;
    try_connect(l, now, soerr ? -soerr : -ENOMEM);
}

static void pump(struct mb_link *l, int64_t now);
static bool reached(const struct mb_link *l, int64_t t, int64_t now);

/* Worker thread: the one blocking step, while the link waits in RESOLVING. */
static int resolve_work(void *arg)
{
    struct mb_link *l = arg;
    l->resolve_rc = lookup(l, 0);
    return 0;
}

static void resolve_done(void *arg, int status)
{
    struct mb_link *l = arg;
    int64_t now = now_of(l);

    (void)status;
    l->h->poll_stop(l->resolver); /* one run is all it was for */
    l->resolver = NULL;
    if (l->state != MB_TCP_RESOLVING)
        return;
    l->state = MB_TCP_DOWN;
    if (l->resolve_rc) {
        link_failed(l, l->resolve_rc);
    } else {
        l->addr_i = 0;
        try_connect(l, now, -EHOSTUNREACH);
    }
    pump(l, now);
    if (l->resched)
        l->resched(l->resched_arg, mb_tcp_next(l));
}

static void start_connect(struct mb_link *l, int64_t now)
{
    l->attempt_at = now;
    if (l->numeric) {
        l->addr_i = 0;
        try_connect(l, now, -EHOSTUNREACH);
        return;
    }
    /* a host name: the lookup may wait for DNS, never on the loop */
    l->state = MB_TCP_RESOLVING;
    l->naddrs = 0;
    int rc = l->h->poll_start(l->ctx, 3600000, resolve_work, resolve_done, l, &l->resolver);
    if (rc) {
        l->resolver = NULL;
        link_failed(l, rc < 0 && rc > -4096 ? rc : -EAGAIN);
    }
}

/* ---- one transaction ---- */

static void send_txn(struct mb_link *l, struct mb_dev *d, const struct mb_txn *t, int64_t now)
{
    uint8_t buf[MBT_REQ_LEN];

    l->q = (struct mbt_req){
        .tid = ++l->tid, .unit = (uint8_t)d->c->unit, .fn = t->fn, .addr = t->addr, .arg = t->arg};
    mbt_build(&l->q, buf);
    ssize_t n = send(l->fd, buf, sizeof(buf), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n != (ssize_t)sizeof(buf)) {
        /* a 12-byte request that does not fit: the connection is stuck or gone */
        mb_poll_fail(l, d, MB_F_LINK, n < 0 ? errno : EIO, NULL);
        tcp_close(l);
        return;
    }
    l->state = MB_TCP_BUSY;
    l->rxlen = 0;
    l->deadline = now + d->c->response_timeout_ms * 1000;
}

/* What came in while a request is in flight (or, unasked, while idle). */
static void receive(struct mb_link *l)
{
    uint16_t words[MBD_MAX_READ_REGISTERS];
    uint8_t bits[MBD_MAX_READ_BITS];
    struct mbt_rsp r;
    char why[64];

    /* rxlen < sizeof(rx) here: mbt_parse ends an answer at 260 bytes */
    ssize_t n = recv(l->fd, l->rx + l->rxlen, sizeof(l->rx) - l->rxlen, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (l->state != MB_TCP_BUSY || n <= 0) {
        /* closed or broken, or bytes nobody asked for: start afresh */
        int e = n < 0 ? errno : n == 0 ? ECONNRESET : EPROTO;
        if (l->state == MB_TCP_BUSY)
            mb_poll_fail(l, &l->devs[l->dev], MB_F_LINK, e, NULL);
        tcp_close(l);
        return;
    }
    l->rxlen += (size_t)n;
    if (mbt_parse(&l->q, l->rx, l->rxlen, &r, words, bits) == MBT_MORE)
        return;
    struct mb_dev *d = &l->devs[l->dev];
    l->state = MB_TCP_IDLE;
    l->rxlen = 0;
    if (r.status == MBT_OK) {
        mb_poll_ok(l, d, words, bits, l->h->now(l->ctx)); /* the moment the answer came */
    } else if (r.status == MBT_EXCEPTION) {
        mb_poll_fail(l, d, MB_F_EXCEPTION, r.exception, NULL);
    } else {
        snprintf(why, sizeof(why), "bad response (%s)", r.bad);
        mb_poll_fail(l, d, MB_F_BADDATA, EPROTO, why);
        tcp_close(l);
    }
}

/* Sends what the link can send now: the next transaction of the device
 * being asked, else the next queued device's first. */
static void pump(struct mb_link *l, int64_t now)
{
    struct mb_txn t;
    for (;;) {
        if (l->dev != NONE) {
            struct mb_dev *d = &l->devs[l->dev];
            if (l->state == MB_TCP_BUSY)
                return;
            if (l->state == MB_TCP_IDLE && mb_poll_next(d, &t)) {
                send_txn(l, d, &t, now);
                continue;
            }
            mb_poll_end(l, d);
            l->dev = NONE;
            continue;
        }
        if (l->state != MB_TCP_IDLE && l->state != MB_TCP_DOWN)
            return; /* resolving or connecting */
        size_t i = 0;
        while (i < l->ndevs && !l->devs[i].queued)
            i++;
        if (i == l->ndevs)
            return;
        if (l->state == MB_TCP_DOWN) {
            if (!reached(l, l->retry_at, now)) { /* backing off: these polls are skipped */
                clear_queue(l);
                return;
            }
            start_connect(l, now);
            continue;
        }
        l->devs[i].queued = false;
        l->dev = i;
        mb_poll_begin(l, &l->devs[i], l->devs[i].started);
    }
}

static void on_fd(void *arg, int fd, int events)
{
    struct mb_link *l = arg;
    int64_t now = now_of(l);

    if (fd != l->fd)
        return;
    if (l->state == MB_TCP_CONNECTING)
        finish_connect(l, now);
    else if (events & (MITTARI_FD_READ | MITTARI_FD_ERROR))
        receive(l);
    pump(l, now);
    if (l->resched)
        l->resched(l->resched_arg, mb_tcp_next(l));
}

/* ---- scheduling ---- */

/* Whether t (a poll's due time, a backoff's end) belongs to the grid step
 * at now: each is taken at the step nearest to it, so a timer that fires a
 * little early or late, or a backoff that began a little after its step,
 * changes nothing. */
static bool reached(const struct mb_link *l, int64_t t, int64_t now)
{
    return t <= now + l->grid_us / 2;
}

/* The grid step that takes t: when the plugin's timer must look. */
static int64_t step_of(const struct mb_link *l, int64_t t)
{
    t -= l->grid_us / 2;
    if (t <= l->anchor)
        return l->anchor;
    return l->anchor + (t - l->anchor + l->grid_us - 1) / l->grid_us * l->grid_us;
}

static void schedule_next(const struct mb_link *l, struct mb_dev *d, int64_t now)
{
    int64_t iv = d->c->poll_ms * 1000;
    d->next_due = (d->next_due ? d->next_due : now) + iv;
    if (d->next_due + l->grid_us / 2 <= now)
        d->next_due = now + iv; /* fell behind (a stalled loop): no burst to catch up */
}

/* Backing off until t: the first poll at or after it, no wakes before. */
static void skip_to(struct mb_dev *d, int64_t t)
{
    int64_t iv = d->c->poll_ms * 1000;
    if (d->next_due < t)
        d->next_due += (t - d->next_due + iv - 1) / iv * iv;
}

void mb_tcp_tick(struct mb_link *l, int64_t now)
{
    if (l->state == MB_TCP_BUSY && now >= l->deadline) {
        mb_poll_fail(l, &l->devs[l->dev], MB_F_TIMEOUT, ETIMEDOUT, NULL);
        tcp_close(l);
    } else if (l->state == MB_TCP_CONNECTING && now >= l->deadline) {
        tcp_close(l);
        l->addr_i++;
        try_connect(l, now, -ETIMEDOUT);
    }
    pump(l, now); /* a poll that just timed out ends before its device is due again */
    for (size_t i = 0; i < l->ndevs; i++) {
        struct mb_dev *d = &l->devs[i];
        if (!reached(l, d->next_due, now))
            continue;
        bool busy = d->queued || l->dev == i;
        schedule_next(l, d, now);
        if (busy) {
            mb_count(l, d, "polls_skipped");
            continue;
        }
        int64_t wait = d->retry_at;
        if (l->state == MB_TCP_DOWN && l->retry_at > wait)
            wait = l->retry_at;
        if (!reached(l, wait, now)) {
            skip_to(d, wait);
            continue;
        }
        d->queued = true;
        d->started = now;
    }
    pump(l, now);
}

int64_t mb_tcp_next(const struct mb_link *l)
{
    int64_t t = INT64_MAX;
    if (l->state == MB_TCP_BUSY || l->state == MB_TCP_CONNECTING)
        t = l->deadline;
    for (size_t i = 0; i < l->ndevs; i++) {
        int64_t s = step_of(l, l->devs[i].next_due);
        t = s < t ? s : t;
    }
    return t;
}

bool mb_tcp_idle(const struct mb_link *l)
{
    if (l->dev != NONE || l->state == MB_TCP_CONNECTING || l->state == MB_TCP_RESOLVING)
        return false;
    for (size_t i = 0; i < l->ndevs; i++)
        if (l->devs[i].queued)
            return false;
    return true;
}

int64_t mb_tcp_grid_us(const struct mb_link *l)
{
    return l->grid_us;
}

void mb_tcp_set_resched(struct mb_link *l, void (*resched)(void *arg, int64_t at), void *arg)
{
    l->resched = resched;
    l->resched_arg = arg;
}

void mb_tcp_plan(struct mb_link **links, size_t n, int64_t now)
{
    int64_t lo = INT64_MAX, grid, phases;
    size_t total = 0, k = 0;

    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; !links[i]->rtu && j < links[i]->ndevs; j++, total++) {
            int64_t iv = links[i]->devs[j].c->poll_ms * 1000;
            lo = iv < lo ? iv : lo;
        }
    }
    /* a quarter of the shortest interval, at most 250 ms */
    grid = lo / 4 < MB_GRID_MAX_US ? lo / 4 : MB_GRID_MAX_US;
    grid = grid < 1000 ? 1000 : grid;
    /* Devices are spread over their interval in up to four phases, one for
     * every MB_PHASE_DEVICES (so many devices are not asked in one step),
     * but no more: every phase is a wake of the loop and a commit of the
     * writer each interval, which is what a gateway with a few devices pays
     * most for (docs/design.md, "Modbus polling"). */
    phases = ((int64_t)total + MB_PHASE_DEVICES - 1) / MB_PHASE_DEVICES;
    phases = phases < 1 ? 1 : phases > MB_PHASES_MAX ? MB_PHASES_MAX : phases;
    for (size_t i = 0; i < n; i++) {
        struct mb_link *l = links[i];
        if (l->rtu)
            continue;
        l->grid_us = grid;
        l->anchor = now;
        for (size_t j = 0; j < l->ndevs; j++, k++) {
            int64_t iv = l->devs[j].c->poll_ms * 1000;
            int64_t phase = (int64_t)k * phases / (int64_t)total;
            l->devs[j].next_due = now + iv / phases * phase / grid * grid;
        }
    }
}

void mb_tcp_stop(struct mb_link *l)
{
    if (l->resolver)
        l->h->poll_stop(l->resolver);
    l->resolver = NULL;
    tcp_close(l);
    clear_queue(l);
    l->dev = NONE;
}
