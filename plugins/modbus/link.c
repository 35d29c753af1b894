/*
 * link: see link.h. Building links from the configuration, and the device
 * engine both transports share (linkint.h): the poll cursor, decoding and
 * emitting, and what a failure does to counters, health and backoff.
 */
#include "linkint.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t mb_mono_us(void *unused)
{
    struct timespec ts;
    (void)unused;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void report(struct mb_link *l, struct mb_dev *d, int health, const char *reason)
{
    if (health == d->health && strcmp(reason, d->reason) == 0)
        return;
    d->health = health;
    snprintf(d->reason, sizeof(d->reason), "%s", reason);
    l->h->set_health(l->ctx, d->c->name, health, reason);
}

void mb_count(struct mb_link *l, struct mb_dev *d, const char *what)
{
    l->h->count(l->ctx, d->c->name, what, 1);
}

/* ---- the connection ---- */

void mb_link_down(struct mb_link *l, int64_t since, int err)
{
    char why[112];
    snprintf(why, sizeof(why), "cannot connect: %s",
             err == -EMFILE   ? "too many open files for libmodbus (FD_SETSIZE)"
             : err == -ENOENT ? "the host name does not resolve"
                              : strerror(-err));
    for (size_t i = 0; i < l->ndevs; i++) {
        mb_count(l, &l->devs[i], "connect_errors");
        report(l, &l->devs[i], MITTARI_HEALTH_DOWN, why);
    }
    l->retry_at = since + l->backoff_us;
    l->backoff_us = l->backoff_us * 2 > l->backoff_max_us ? l->backoff_max_us : l->backoff_us * 2;
}

void mb_link_up(struct mb_link *l)
{
    if (l->ever_connected)
        for (size_t i = 0; i < l->ndevs; i++)
            mb_count(l, &l->devs[i], "reconnects");
    l->ever_connected = true;
    l->connected = true;
    l->backoff_us = l->backoff_min_us;
}

/* ---- emitting ---- */

static int emit_value(struct mb_link *l, struct mb_dev *d, const struct mb_reg *r, int64_t ts,
                      const struct mbd_value *v, uint64_t delta_raw)
{
    struct mittari_reading rd = MITTARI_READING_INIT;
    const struct mb_reg_conf *c = r->c;

    rd.ts_us = ts;
    rd.device = d->c->name;
    rd.metric = c->metric;
    rd.unit = c->unit;
    if (c->kind == MB_KIND_CUMULATIVE) {
        rd.kind = MITTARI_KIND_CUMULATIVE;
        rd.counter = v->u;
        rd.counter_bits = mbd_bits(c->type);
    } else {
        double x =
            c->kind == MB_KIND_DELTA && c->reset_after_read ? (double)delta_raw : mbd_to_double(v);
        rd.kind = c->kind == MB_KIND_DELTA ? MITTARI_KIND_DELTA : MITTARI_KIND_GAUGE;
        rd.value = x * c->scale + c->offset;
        if (!isfinite(rd.value)) {
            mb_count(l, d, "bad_values");
            return -EINVAL;
        }
    }
    int rc = l->h->emit(l->ctx, &rd);
    if (rc)
        mb_count(l, d, "refused");
    return rc;
}

/* A counter cleared after each read: the value read is what came since the
 * last clear, less what an earlier, failed clear left counted already. */
static uint64_t since_clear(const struct mb_reg *r, uint64_t raw)
{
    return r->carry_valid && raw >= r->carry ? raw - r->carry : raw;
}

/* One register of an answer: decoded, emitted, and if it is cleared after
 * reading, marked for its clear. */
static void emit_reg(struct mb_link *l, struct mb_dev *d, struct mb_reg *r, const uint16_t *w,
                     const uint8_t *b, int64_t ts)
{
    struct mbd_value v = {.cls = MBD_UNSIGNED};
    const struct mbd_request *q = &d->reqs[r->at.req];

    if (q->function == MBD_FN_COIL || q->function == MBD_FN_DISCRETE)
        v.u = b[r->at.off] != 0;
    else if (mbd_decode(w + r->at.off, q->count - r->at.off, r->c->type, r->order, &v))
        return; /* cannot happen: the plan was checked at create */
    r->raw = v.cls == MBD_UNSIGNED ? v.u : (uint64_t)v.i;
    int rc = emit_value(l, d, r, ts, &v, since_clear(r, r->raw));
    r->clear_due = rc == 0 && r->c->reset_after_read;
}

/* ---- the poll cursor ---- */

static const char *const fn_names[] = {"holding", "input", "coil", "discrete"};
static const uint8_t fn_codes[] = {3, 4, 1, 2};

void mb_poll_begin(struct mb_link *l, struct mb_dev *d, int64_t now)
{
    d->started = now;
    d->phase = MB_PH_READ;
    d->cur = d->ck = 0;
    d->good = d->bad = 0;
    l->why[0] = 0;
}

bool mb_poll_next(struct mb_dev *d, struct mb_txn *t)
{
    while (d->cur < d->nreqs) {
        if (d->phase == MB_PH_READ) {
            const struct mbd_request *q = &d->reqs[d->cur];
            *t = (struct mb_txn){fn_codes[q->function], (uint16_t)q->address, (uint16_t)q->count};
            return true;
        }
        for (; d->ck < d->nregs; d->ck++) {
            const struct mb_reg *r = &d->regs[d->ck];
            if (!r->clear_due)
                continue;
            bool coil = r->c->reset_function == MB_RESET_COIL;
            *t = (struct mb_txn){coil ? 5 : 6, (uint16_t)r->c->reset_address,
                                 coil ? (r->c->reset_value ? 0xFF00 : 0)
                                      : (uint16_t)r->c->reset_value};
            return true;
        }
        d->phase = MB_PH_READ;
        d->cur++;
    }
    return false;
}

void mb_poll_ok(struct mb_link *l, struct mb_dev *d, const uint16_t *words, const uint8_t *bits,
                int64_t ts)
{
    if (d->phase == MB_PH_CLEAR) {
        d->regs[d->ck].clear_due = false;
        d->regs[d->ck].carry_valid = false;
        d->ck++;
        return;
    }
    d->good++;
    for (size_t k = 0; k < d->nregs; k++)
        if (d->regs[k].at.req == d->cur)
            emit_reg(l, d, &d->regs[k], words, bits, ts);
    d->phase = MB_PH_CLEAR;
    d->ck = 0;
}

/* A clear that did not happen: the device still holds the value just
 * read, all of it counted now. */
static void clear_failed(struct mb_link *l, struct mb_dev *d, struct mb_reg *r)
{
    mb_count(l, d, "reset_errors");
    r->clear_due = false;
    r->carry = r->raw;
    r->carry_valid = true;
}

static int action_of(const struct mb_link *l, int f)
{
    if (f == MB_F_EXCEPTION)
        return MB_GO_ON;
    if (l->rtu && f != MB_F_LINK) /* a late or broken answer: the bus stays open */
        return f == MB_F_CRC ? MB_FLUSH_GO_ON : MB_FLUSH_STOP;
    /* TCP: a late answer would be taken for the next request's; start afresh */
    return MB_CLOSE;
}

int mb_poll_fail(struct mb_link *l, struct mb_dev *d, int f, int code, const char *detail)
{
    static const char *const counters[] = {"",         "exceptions",    "crc_errors",
                                           "timeouts", "bad_responses", "connection_errors"};
    char what[64];
    int act = action_of(l, f);

    mb_count(l, d, counters[f]);
    if (d->phase == MB_PH_CLEAR) {
        clear_failed(l, d, &d->regs[d->ck]);
        if (act != MB_CLOSE) {
            d->ck++;
            return act == MB_FLUSH_STOP ? MB_FLUSH_GO_ON : act;
        }
        for (size_t k = d->ck; k < d->nregs; k++) /* the connection is gone: no clears */
            if (d->regs[k].clear_due)
                clear_failed(l, d, &d->regs[k]);
    } else {
        const struct mbd_request *q = &d->reqs[d->cur];
        snprintf(what, sizeof(what), "reading %s %u-%u", fn_names[q->function],
                 (unsigned)q->address, (unsigned)(q->address + q->count - 1));
        if (f == MB_F_EXCEPTION)
            snprintf(l->why, sizeof(l->why), "exception %d (%s) %s", code,
                     mbt_exception_name((unsigned)code), what);
        else
            snprintf(l->why, sizeof(l->why), "%s %s", detail ? detail : strerror(code), what);
        d->bad++;
    }
    if (act == MB_GO_ON || act == MB_FLUSH_GO_ON) {
        d->phase = MB_PH_READ;
        d->cur++;
    } else {
        d->bad += d->nreqs - d->cur - 1; /* not asked: the device did not answer */
        d->cur = d->nreqs;
    }
    return act;
}

void mb_poll_end(struct mb_link *l, struct mb_dev *d)
{
    if (d->bad == 0) {
        d->fails = 0;
        d->backoff_us = d->c->poll_ms * 1000;
        report(l, d, MITTARI_HEALTH_UP, "");
    } else if (d->good > 0) {
        d->fails = 0;
        report(l, d, MITTARI_HEALTH_DEGRADED, l->why);
    } else if (++d->fails < d->c->down_after) {
        report(l, d, MITTARI_HEALTH_DEGRADED, l->why);
    } else {
        /* down: poll less often, doubling up to backoff_max */
        int64_t max = d->c->backoff_max_ms * 1000;
        report(l, d, MITTARI_HEALTH_DOWN, l->why);
        d->retry_at = d->started + d->backoff_us;
        d->backoff_us = d->backoff_us * 2 > max ? max : d->backoff_us * 2;
    }
}

/* ---- building ---- */

static int build_dev(struct mb_report *rp, struct mb_dev *dv, size_t di)
{
    const struct mb_dev_conf *d = dv->c;
    size_t n = d->registers.n;
    struct mb_slot *at = calloc(n, sizeof(*at));
    int rc = -ENOMEM;

    dv->regs = calloc(n, sizeof(*dv->regs));
    dv->reqs = calloc(n, sizeof(*dv->reqs));
    if (!at || !dv->regs || !dv->reqs)
        goto out;
    rc = mb_conf_plan(rp, d, di, at, dv->reqs);
    if (rc < 0)
        goto out;
    dv->nreqs = (size_t)rc;
    dv->nregs = n;
    for (size_t i = 0; i < n; i++) {
        const struct mb_reg_conf *r = MITTARI_LIST_ITEM(&d->registers, struct mb_reg_conf, i);
        dv->regs[i] = (struct mb_reg){.c = r, .order = mb_conf_order(d, r), .at = at[i]};
    }
    dv->health = -1;
    dv->backoff_us = d->poll_ms * 1000;
    rc = 0;
out:
    free(at);
    return rc;
}

static uint64_t gcd(uint64_t a, uint64_t b)
{
    while (b) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static void link_timing(struct mb_link *l)
{
    uint64_t g = 0, lo = UINT64_MAX;
    int64_t bmax = 0;

    for (size_t i = 0; i < l->ndevs; i++) {
        const struct mb_dev_conf *d = l->devs[i].c;
        g = gcd(g, (uint64_t)d->poll_ms);
        lo = (uint64_t)d->poll_ms < lo ? (uint64_t)d->poll_ms : lo;
        bmax = d->backoff_max_ms > bmax ? d->backoff_max_ms : bmax;
    }
    /* intervals without a useful common divisor: tick often enough, accept jitter */
    l->tick_ms = g >= 100 || g == lo ? g : (lo < 100 ? lo : 100);
    l->backoff_us = l->backoff_min_us = (int64_t)lo * 1000;
    l->backoff_max_us = bmax * 1000;
}

/* The devices of link l: `first` and those after it that share its connection. */
static int fill_link(struct mb_report *rp, struct mb_link *l, const struct mb_conf *c, bool *taken,
                     size_t first)
{
    const struct mb_dev_conf *a = MITTARI_LIST_ITEM(&c->devices, struct mb_dev_conf, first);
    size_t n = 0;
    int rc;

    for (size_t j = first; j < c->devices.n; j++)
        n += !taken[j] &&
             mb_conf_same_link(a, MITTARI_LIST_ITEM(&c->devices, struct mb_dev_conf, j));
    l->devs = calloc(n, sizeof(*l->devs)); /* exactly: 500 links of 500 slots would be 50 MB */
    if (!l->devs)
        return -ENOMEM;
    for (size_t j = first; j < c->devices.n; j++) {
        const struct mb_dev_conf *b = MITTARI_LIST_ITEM(&c->devices, struct mb_dev_conf, j);
        if (taken[j] || !mb_conf_same_link(a, b))
            continue;
        taken[j] = true;
        l->devs[l->ndevs].c = b;
        if ((rc = build_dev(rp, &l->devs[l->ndevs++], j)))
            return rc;
    }
    link_timing(l);
    l->rtu = a->serial != NULL;
    l->clock = mb_mono_us;
    if (!l->rtu) {
        mb_tcp_init(l);
        return 0;
    }
    rc = mb_rtu_init(l);
    if (rc == -ENOMEM)
        return rc;
    if (rc) {
        l->h->log(l->ctx, MITTARI_LOG_ERR, "device %s: libmodbus refused the line settings: %s",
                  a->name, strerror(-rc));
        return MITTARI_ECONFIG;
    }
    return 0;
}

int mb_links_build(const struct mittari_host *h, struct mittari_ctx *ctx, const struct mb_conf *c,
                   struct mb_link ***out, size_t *nout)
{
    struct mb_report rp = {.h = h, .ctx = ctx};
    size_t n = c->devices.n, nl = 0;
    struct mb_link **links = calloc(n ? n : 1, sizeof(*links));
    bool *taken = calloc(n ? n : 1, sizeof(*taken));
    int rc = links && taken ? mb_conf_check(&rp, c) : -ENOMEM;

    for (size_t i = 0; i < n && rc == 0; i++) {
        if (taken[i])
            continue;
        links[nl] = calloc(1, sizeof(**links));
        if (!links[nl]) {
            rc = -ENOMEM;
            break;
        }
        links[nl]->h = h;
        links[nl]->ctx = ctx;
        links[nl]->fd = -1;
        rc = fill_link(&rp, links[nl++], c, taken, i);
    }
    free(taken);
    if (rc) {
        for (size_t i = 0; i < nl; i++)
            mb_link_free(links[i]);
        free(links);
        return rc;
    }
    *out = links;
    *nout = nl;
    return 0;
}

bool mb_link_is_rtu(const struct mb_link *l)
{
    return l->rtu;
}

void mb_link_set_clock(struct mb_link *l, int64_t (*clock)(void *arg), void *arg)
{
    l->clock = clock;
    l->clock_arg = arg;
}

void mb_link_free(struct mb_link *l)
{
    if (!l)
        return;
    if (l->rtu)
        mb_rtu_free(l);
    else
        mb_tcp_stop(l);
    for (size_t i = 0; l->devs && i < l->ndevs; i++) {
        free(l->devs[i].regs);
        free(l->devs[i].reqs);
    }
    free(l->devs);
    free(l);
}
