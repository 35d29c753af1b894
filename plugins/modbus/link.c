/*
 * link: see link.h. The connection, the poll of each device, decoding,
 * emitting, and what a failure does to health, counters and backoff.
 */
#include "link.h"

#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <modbus.h>

#include "decode.h"

struct mb_reg {
    const struct mb_reg_conf *c;
    int order;      /* resolved enum mbd_order */
    unsigned words; /* registers it occupies; 1 for a bit */
    size_t req;     /* index into the device's requests */
    uint32_t off;   /* position inside that request */
    uint64_t carry; /* reset_after_read: counted already, the clear failed */
    bool carry_valid;
};

struct mb_dev {
    const struct mb_dev_conf *c;
    struct mb_reg *regs;
    size_t nregs;
    struct mbd_request *reqs;
    size_t nreqs;
    int64_t next_due, retry_at, backoff_us; /* monotonic µs */
    int64_t fails;                          /* polls in a row that read nothing */
    int health;                             /* -1 until first reported */
    char reason[112];
};

struct mb_link {
    const struct mittari_host *h;
    struct mittari_ctx *ctx;
    modbus_t *mb;
    bool rtu, connected, ever_connected, rs485_warned;
    struct mb_dev *devs;
    size_t ndevs;
    int64_t retry_at, backoff_us, backoff_min_us, backoff_max_us;
    int64_t frame_delay_us;
    uint64_t tick_ms;
};

/* ---- helpers ---- */

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sleep_us(int64_t us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (us > 0 && nanosleep(&ts, &ts) && errno == EINTR)
        ;
}

static void set_timeout(modbus_t *mb, int64_t ms)
{
    modbus_set_response_timeout(mb, (uint32_t)(ms / 1000), (uint32_t)(ms % 1000) * 1000);
}

/* Modbus over Serial Line 1.02, 2.5.1.1: a frame ends after 3.5 character
 * times of silence; above 19200 baud a fixed 1.75 ms. */
int64_t mb_frame_delay_us(int64_t baud, int64_t data_bits, int parity, int64_t stop_bits)
{
    int64_t bits = 1 + data_bits + (parity != MB_PARITY_NONE) + stop_bits;
    if (baud <= 0 || baud > 19200)
        return 1750;
    return (bits * 3500000 + baud - 1) / baud;
}

static void report(struct mb_link *l, struct mb_dev *d, int health, const char *reason)
{
    if (health == d->health && strcmp(reason, d->reason) == 0)
        return;
    d->health = health;
    snprintf(d->reason, sizeof(d->reason), "%s", reason);
    l->h->set_health(l->ctx, d->c->name, health, reason);
}

static void count(struct mb_link *l, struct mb_dev *d, const char *what)
{
    l->h->count(l->ctx, d->c->name, what, 1);
}

/* ---- connection ---- */

static void link_close(struct mb_link *l)
{
    if (l->connected)
        modbus_close(l->mb);
    l->connected = false;
}

static int connect_wait(int fd, const struct addrinfo *ai, int64_t timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int soerr = 0, rc;
    socklen_t sl = sizeof(soerr);

    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
        return 0;
    if (errno != EINPROGRESS)
        return -errno;
    do
        rc = poll(&p, 1, (int)timeout_ms);
    while (rc < 0 && errno == EINTR);
    if (rc == 0)
        return -ETIMEDOUT;
    if (rc < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl))
        return -errno;
    return -soerr;
}

/* Our own connect, not modbus_connect: it takes host names and IPv6 and has
 * its own timeout (libmodbus 3.1.6 uses the response timeout for it). */
static int tcp_connect(struct mb_link *l, const struct mb_dev_conf *c)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res, *ai;
    char port[16];
    int fd = -1, err = -EHOSTUNREACH;

    snprintf(port, sizeof(port), "%d", (int)c->port);
    if (getaddrinfo(c->host, port, &hints, &res))
        return -ENOENT; /* the name did not resolve */
    for (ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            err = -errno;
            continue;
        }
        err = connect_wait(fd, ai, c->connect_timeout_ms);
        if (err) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0)
        return err;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    modbus_set_socket(l->mb, fd);
    return 0;
}

static int rtu_connect(struct mb_link *l, const struct mb_dev_conf *c)
{
    if (modbus_connect(l->mb) < 0)
        return -errno;
    if (c->rs485 && modbus_rtu_set_serial_mode(l->mb, MODBUS_RTU_RS485) < 0 && !l->rs485_warned) {
        /* ENOTTY: a pty or an adapter that switches by itself; keep going */
        l->rs485_warned = true;
        l->h->log(l->ctx, MITTARI_LOG_WARNING, "device %s: cannot switch the port to RS-485: %s",
                  c->name, strerror(errno));
    }
    return 0;
}

static int link_connect(struct mb_link *l)
{
    const struct mb_dev_conf *c = l->devs[0].c;
    int rc = l->rtu ? rtu_connect(l, c) : tcp_connect(l, c);
    if (rc)
        return rc;
    /* libmodbus waits with select(): a descriptor past FD_SETSIZE would
     * overflow its fd_set */
    if (modbus_get_socket(l->mb) >= FD_SETSIZE) {
        modbus_close(l->mb);
        return -EMFILE;
    }
    l->connected = true;
    return 0;
}

static void link_down(struct mb_link *l, int64_t now, int err)
{
    char why[112];
    snprintf(why, sizeof(why), "cannot connect: %s",
             err == -EMFILE   ? "too many open files for libmodbus (FD_SETSIZE)"
             : err == -ENOENT ? "the host name does not resolve"
                              : strerror(-err));
    for (size_t i = 0; i < l->ndevs; i++) {
        count(l, &l->devs[i], "connect_errors");
        report(l, &l->devs[i], MITTARI_HEALTH_DOWN, why);
    }
    l->retry_at = now + l->backoff_us;
    l->backoff_us = l->backoff_us * 2 > l->backoff_max_us ? l->backoff_max_us : l->backoff_us * 2;
}

/* 0 when connected, else -errno (the link is in backoff). */
static int ensure_connected(struct mb_link *l, int64_t now)
{
    if (l->connected)
        return 0;
    if (now < l->retry_at)
        return -EAGAIN;
    int rc = link_connect(l);
    if (rc) {
        link_down(l, now, rc);
        return rc;
    }
    if (l->ever_connected)
        for (size_t i = 0; i < l->ndevs; i++)
            count(l, &l->devs[i], "reconnects");
    l->ever_connected = true;
    l->backoff_us = l->backoff_min_us;
    return 0;
}

/* ---- one request ---- */

enum failure { F_NONE, F_EXCEPTION, F_CRC, F_TIMEOUT, F_BADDATA, F_LINK };

static int classify(int e)
{
    if (e > MODBUS_ENOBASE && e <= EMBXGTAR)
        return F_EXCEPTION;
    if (e == EMBBADCRC)
        return F_CRC;
    if (e == ETIMEDOUT)
        return F_TIMEOUT;
    if (e == EMBBADDATA || e == EMBBADEXC || e == EMBUNKEXC || e == EMBMDATA || e == EMBBADSLAVE)
        return F_BADDATA;
    return F_LINK;
}

static const char *const fn_names[] = {"holding", "input", "coil", "discrete"};

/* Counts a failed transaction and restores a usable line. Returns whether
 * the device's poll should go on with its next request. */
static bool failed(struct mb_link *l, struct mb_dev *d, int e, const char *what, char *why,
                   size_t len)
{
    int f = classify(e);
    static const char *const counters[] = {"", "exceptions", "crc_errors", "timeouts",
                                           "bad_responses", "connection_errors"};
    count(l, d, counters[f]);
    if (f == F_EXCEPTION)
        snprintf(why, len, "exception %d (%s) %s", e - MODBUS_ENOBASE, modbus_strerror(e), what);
    else
        snprintf(why, len, "%s %s", modbus_strerror(e), what);
    if (f == F_EXCEPTION)
        return true;
    if (l->rtu && f != F_LINK) {
        modbus_flush(l->mb); /* drop a late or broken answer; the bus stays open */
        return f == F_CRC;
    }
    /* TCP: a late answer would be taken for the next request's; start afresh */
    link_close(l);
    return false;
}

static int do_read(modbus_t *mb, const struct mbd_request *q, uint16_t *w, uint8_t *b)
{
    int a = (int)q->address, n = (int)q->count;
    switch (q->function) {
    case MBD_FN_HOLDING: return modbus_read_registers(mb, a, n, w);
    case MBD_FN_INPUT: return modbus_read_input_registers(mb, a, n, w);
    case MBD_FN_COIL: return modbus_read_bits(mb, a, n, b);
    default: return modbus_read_input_bits(mb, a, n, b);
    }
}

/* RTU: the bus must be silent t3.5 before the next frame; libmodbus does not
 * time it. */
static void pause_bus(struct mb_link *l)
{
    if (l->rtu)
        sleep_us(l->frame_delay_us);
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
        double x = c->kind == MB_KIND_DELTA && r->c->reset_after_read ? (double)delta_raw
                                                                      : mbd_to_double(v);
        rd.kind = c->kind == MB_KIND_DELTA ? MITTARI_KIND_DELTA : MITTARI_KIND_GAUGE;
        rd.value = x * c->scale + c->offset;
        if (!isfinite(rd.value)) {
            count(l, d, "bad_values");
            return -EINVAL;
        }
    }
    int rc = l->h->emit(l->ctx, &rd);
    if (rc)
        count(l, d, "refused");
    return rc;
}

static int write_reset(struct mb_link *l, const struct mb_reg_conf *c)
{
    int rc = c->reset_function == MB_RESET_COIL
                 ? modbus_write_bit(l->mb, (int)c->reset_address, c->reset_value != 0)
                 : modbus_write_register(l->mb, (int)c->reset_address, (uint16_t)c->reset_value);
    int e = errno;
    pause_bus(l);
    return rc < 0 ? -e : 0;
}

/* A counter cleared after each read: the value read is what came since the
 * last clear, less what an earlier, failed clear left counted already. */
static uint64_t since_clear(const struct mb_reg *r, uint64_t raw)
{
    return r->carry_valid && raw >= r->carry ? raw - r->carry : raw;
}

static void reset_after(struct mb_link *l, struct mb_dev *d, struct mb_reg *r, uint64_t raw)
{
    int e = l->connected ? write_reset(l, r->c) : -ENOTCONN;
    if (e == 0) {
        r->carry_valid = false;
        return;
    }
    /* the device still holds raw, all of it counted now */
    count(l, d, "reset_errors");
    r->carry = raw;
    r->carry_valid = true;
    if (e != -ENOTCONN) {
        char why[112];
        failed(l, d, -e, "clearing the counter", why, sizeof(why));
    }
}

static void emit_reg(struct mb_link *l, struct mb_dev *d, struct mb_reg *r, const uint16_t *w,
                     const uint8_t *b, int64_t ts)
{
    struct mbd_value v = {.cls = MBD_UNSIGNED};
    const struct mbd_request *q = &d->reqs[r->req];

    if (q->function == MBD_FN_COIL || q->function == MBD_FN_DISCRETE)
        v.u = b[r->off] != 0;
    else if (mbd_decode(w + r->off, q->count - r->off, r->c->type, r->order, &v))
        return; /* cannot happen: the plan was checked at create */
    uint64_t raw = v.cls == MBD_UNSIGNED ? v.u : (uint64_t)v.i;
    int rc = emit_value(l, d, r, ts, &v, since_clear(r, raw));
    if (rc == 0 && r->c->reset_after_read)
        reset_after(l, d, r, raw);
}

/* ---- one device ---- */

static bool poll_request(struct mb_link *l, struct mb_dev *d, size_t i, char *why, size_t len,
                         bool *ok)
{
    uint16_t words[MBD_MAX_READ_REGISTERS];
    uint8_t bits[MBD_MAX_READ_BITS];
    const struct mbd_request *q = &d->reqs[i];
    char what[64];

    int rc = do_read(l->mb, q, words, bits);
    int e = errno;
    int64_t ts = l->h->now(l->ctx); /* the moment the answer arrived */
    pause_bus(l);
    if (rc != (int)q->count) {
        snprintf(what, sizeof(what), "reading %s %u-%u", fn_names[q->function],
                 (unsigned)q->address, (unsigned)(q->address + q->count - 1));
        *ok = false;
        return failed(l, d, rc < 0 ? e : EMBBADDATA, what, why, len);
    }
    *ok = true;
    for (size_t k = 0; k < d->nregs; k++)
        if (d->regs[k].req == i)
            emit_reg(l, d, &d->regs[k], words, bits, ts);
    return l->connected;
}

static void judge(struct mb_link *l, struct mb_dev *d, size_t good, size_t bad, const char *why,
                  int64_t now)
{
    if (bad == 0) {
        d->fails = 0;
        d->backoff_us = d->c->poll_ms * 1000;
        report(l, d, MITTARI_HEALTH_UP, "");
    } else if (good > 0) {
        d->fails = 0;
        report(l, d, MITTARI_HEALTH_DEGRADED, why);
    } else if (++d->fails < d->c->down_after) {
        report(l, d, MITTARI_HEALTH_DEGRADED, why);
    } else {
        /* down: poll less often, doubling up to backoff_max */
        report(l, d, MITTARI_HEALTH_DOWN, why);
        d->retry_at = now + d->backoff_us;
        d->backoff_us = d->backoff_us * 2 > d->c->backoff_max_ms * 1000 ? d->c->backoff_max_ms * 1000
                                                                        : d->backoff_us * 2;
    }
}

static void poll_device(struct mb_link *l, struct mb_dev *d, int64_t now)
{
    char why[112] = "";
    size_t good = 0, bad = 0;

    modbus_set_slave(l->mb, (int)d->c->unit);
    set_timeout(l->mb, d->c->response_timeout_ms);
    for (size_t i = 0; i < d->nreqs; i++) {
        bool ok;
        bool more = poll_request(l, d, i, why, sizeof(why), &ok);
        ok ? good++ : bad++;
        if (!more) {
            bad += d->nreqs - i - 1; /* not asked: the device did not answer */
            break;
        }
    }
    judge(l, d, good, bad, why, now);
}

/* ---- scheduling ---- */

/* A run may start a little earlier after its timer than the one before
 * did (worker queue latency): a quarter tick of slack. */
static bool due(const struct mb_link *l, const struct mb_dev *d, int64_t now)
{
    return now + (int64_t)l->tick_ms * 250 >= d->next_due;
}

static void schedule_next(const struct mb_link *l, struct mb_dev *d, int64_t now)
{
    int64_t iv = d->c->poll_ms * 1000;
    d->next_due = (d->next_due ? d->next_due : now) + iv;
    if (d->next_due + (int64_t)l->tick_ms * 250 <= now)
        d->next_due = now + iv; /* fell behind (a slow run): no burst to catch up */
}

int mb_link_run_at(struct mb_link *l, int64_t now)
{
    for (size_t i = 0; i < l->ndevs; i++) {
        struct mb_dev *d = &l->devs[i];
        if (!due(l, d, now))
            continue;
        schedule_next(l, d, now);
        if (now < d->retry_at)
            continue;
        if (ensure_connected(l, now))
            break;
        poll_device(l, d, now);
    }
    return 0;
}

int mb_link_run(void *link)
{
    return mb_link_run_at(link, mono_us());
}

uint64_t mb_link_tick_ms(const struct mb_link *l)
{
    return l->tick_ms;
}

/* ---- building ---- */

static int reg_orders_resolve(int reg_order, int type, int dev_order)
{
    /* reg_order 0 = the device's order (ABCD...), else enum mbd_order + 1 */
    return reg_order ? reg_order - 1 : mbd_order_for(type, dev_order + MBD_ABCD);
}

/* Where configuration problems go: the agent's checker (file:line, at
 * `mittari check`) or, when building at create(), the instance's log. */
struct mb_report {
    const struct mittari_checker *chk;
    const struct mittari_host *h;
    struct mittari_ctx *ctx;
    int n;
};

static int cfg_error(struct mb_report *rp, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int cfg_error(struct mb_report *rp, const char *path, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (rp->chk)
        rp->chk->error(rp->chk, path, "%s", msg);
    else
        rp->h->log(rp->ctx, MITTARI_LOG_ERR, "%s", msg);
    rp->n++;
    return MITTARI_ECONFIG;
}

static bool valid_name(const char *s)
{
    size_t n = 0;
    for (; s && *s; s++, n++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '.' || *s == ':' || *s == '-'))
            return false;
    return n > 0 && n <= 63;
}

static int check_reg(struct mb_report *rp, const struct mb_dev_conf *d, size_t di, size_t i,
                     int order)
{
    const struct mb_reg_conf *r = MITTARI_LIST_ITEM(&d->registers, struct mb_reg_conf, i);
    char p[96], pk[112];
    snprintf(p, sizeof(p), "devices[%zu].registers[%zu]", di, i);
#define AT(key) (snprintf(pk, sizeof(pk), "%s.%s", p, key), pk)
    bool bitfn = r->function == MBD_FN_COIL || r->function == MBD_FN_DISCRETE;
    static const char *const tn[] = {"u16", "i16", "u32", "i32", "u64", "f32", "f64"};
    static const char *const on[] = {"AB", "BA", "ABCD", "CDAB", "BADC", "DCBA"};

    if (!valid_name(r->metric))
        return cfg_error(rp, AT("metric"), "device %s, register %zu: metric '%s' must be 1-63 of "
                         "A-Z a-z 0-9 _ . : -", d->name, i + 1, r->metric ? r->metric : "");
    if (bitfn && (r->type != MBD_U16 || r->kind != MB_KIND_GAUGE))
        return cfg_error(rp, AT("type"), "device %s, register %s: a %s is one bit: type u16, kind gauge",
                         d->name, r->metric, fn_names[r->function]);
    if (!bitfn && !mbd_order_fits(r->type, order))
        return cfg_error(rp, AT("order"), "device %s, register %s: order %s does not fit type %s (AB or BA "
                         "for 16-bit types, ABCD, CDAB, BADC or DCBA for 32- and 64-bit ones)",
                         d->name, r->metric, on[order], tn[r->type]);
    if (r->address + mbd_words(r->type) > 65536)
        return cfg_error(rp, AT("address"), "device %s, register %s: address %lld + %u registers is past 65535",
                         d->name, r->metric, (long long)r->address, mbd_words(r->type));
    if (r->kind == MB_KIND_CUMULATIVE && (!mbd_bits(r->type) || r->scale != 1 || r->offset != 0))
        return cfg_error(rp, AT("kind"), "device %s, register %s: a cumulative counter is u16, u32 or u64, "
                         "without scale or offset (the agent turns it into deltas)", d->name,
                         r->metric);
    if (r->reset_after_read && r->kind == MB_KIND_CUMULATIVE)
        return cfg_error(rp, AT("reset_after_read"), "device %s, register %s: a counter cleared after each read is "
                         "kind delta, not cumulative", d->name, r->metric);
    if (r->reset_after_read && r->kind == MB_KIND_DELTA && mbd_bits(r->type) == 0)
        return cfg_error(rp, AT("type"), "device %s, register %s: a cleared counter is u16, u32 or u64",
                         d->name, r->metric);
#undef AT
    return 0;
}

static int build_regs(struct mb_report *rp, struct mb_dev *dv, size_t di)
{
    const struct mb_dev_conf *d = dv->c;
    size_t n = d->registers.n;
    struct mbd_item *items = calloc(n, sizeof(*items));
    size_t *req_of = calloc(n, sizeof(*req_of));
    int rc = -ENOMEM;

    dv->regs = calloc(n, sizeof(*dv->regs));
    dv->reqs = calloc(n, sizeof(*dv->reqs));
    if (!items || !req_of || !dv->regs || !dv->reqs)
        goto out;
    for (size_t i = 0; i < n; i++) {
        const struct mb_reg_conf *r = MITTARI_LIST_ITEM(&d->registers, struct mb_reg_conf, i);
        bool bitfn = r->function == MBD_FN_COIL || r->function == MBD_FN_DISCRETE;
        dv->regs[i].c = r;
        dv->regs[i].order = reg_orders_resolve(r->order, r->type, d->order);
        dv->regs[i].words = bitfn ? 1 : mbd_words(r->type);
        if ((rc = check_reg(rp, d, di, i, dv->regs[i].order)))
            goto out;
        items[i] = (struct mbd_item){r->function, (uint32_t)r->address, dv->regs[i].words};
    }
    rc = mbd_plan(items, n, (unsigned)d->max_registers, (unsigned)d->max_bits,
                  (unsigned)d->merge_gap, dv->reqs, req_of);
    if (rc < 0) {
        char p[48];
        snprintf(p, sizeof(p), "devices[%zu].registers", di);
        rc = cfg_error(rp, p, "device %s: the register map does not fit in requests of "
                       "max_registers %lld", d->name, (long long)d->max_registers);
        goto out;
    }
    dv->nreqs = (size_t)rc;
    dv->nregs = n;
    for (size_t i = 0; i < n; i++) {
        dv->regs[i].req = req_of[i];
        dv->regs[i].off = items[i].address - dv->reqs[req_of[i]].address;
    }
    rc = 0;
out:
    free(items);
    free(req_of);
    return rc;
}

static int check_dev(struct mb_report *rp, const struct mb_dev_conf *d, size_t di)
{
    char p[48], pk[64];
    snprintf(p, sizeof(p), "devices[%zu]", di);
#define AT(key) (snprintf(pk, sizeof(pk), "%s.%s", p, key), pk)
    if (!valid_name(d->name))
        return cfg_error(rp, AT("name"), "device name '%s' must be 1-63 of A-Z a-z 0-9 _ . : -",
                         d->name ? d->name : "");
    if (!d->host == !d->serial)
        return cfg_error(rp, p, "device %s: give either host (Modbus TCP) or serial (Modbus RTU)",
                         d->name);
    if (d->serial && (d->unit < 1 || d->unit > 247))
        return cfg_error(rp, AT("unit"), "device %s: an RTU unit id is 1 to 247", d->name);
    if (d->registers.n == 0)
        return cfg_error(rp, p, "device %s: no registers (give registers or a profile)", d->name);
#undef AT
    return 0;
}

static bool same_link(const struct mb_dev_conf *a, const struct mb_dev_conf *b)
{
    if (a->serial || b->serial)
        return a->serial && b->serial && strcmp(a->serial, b->serial) == 0;
    return strcmp(a->host, b->host) == 0 && a->port == b->port;
}

/* b (devices[bi]) joins a's link */
static int check_bus(struct mb_report *rp, const struct mb_dev_conf *a, const struct mb_dev_conf *b,
                     size_t bi)
{
    char p[48];
    snprintf(p, sizeof(p), "devices[%zu]", bi);
    if (a->unit == b->unit)
        return cfg_error(rp, p, "devices %s and %s share a connection and unit id %lld", a->name,
                         b->name, (long long)a->unit);
    if (a->serial && (a->baud != b->baud || a->parity != b->parity || a->data_bits != b->data_bits ||
                      a->stop_bits != b->stop_bits || a->rs485 != b->rs485 ||
                      a->frame_delay_ms != b->frame_delay_ms))
        return cfg_error(rp, p, "devices %s and %s share a serial port but not its line settings "
                         "(baud, parity, data_bits, stop_bits, rs485, frame_delay)", a->name, b->name);
    return 0;
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

static modbus_t *new_context(const struct mb_dev_conf *c)
{
    static const char parity[] = {'N', 'E', 'O'};
    if (c->serial)
        return modbus_new_rtu(c->serial, (int)c->baud, parity[c->parity], (int)c->data_bits,
                              (int)c->stop_bits);
    /* the address is never used: tcp_connect makes the socket */
    return modbus_new_tcp("127.0.0.1", (int)c->port);
}

static void link_timing(struct mb_link *l)
{
    const struct mb_dev_conf *c = l->devs[0].c;
    uint64_t g = 0, lo = UINT64_MAX;
    int64_t bmax = 0;

    for (size_t i = 0; i < l->ndevs; i++) {
        const struct mb_dev_conf *d = l->devs[i].c;
        g = gcd(g, (uint64_t)d->poll_ms);
        lo = (uint64_t)d->poll_ms < lo ? (uint64_t)d->poll_ms : lo;
        bmax = d->backoff_max_ms > bmax ? d->backoff_max_ms : bmax;
        l->devs[i].backoff_us = d->poll_ms * 1000;
        l->devs[i].health = -1;
    }
    /* intervals without a useful common divisor: tick often enough, accept jitter */
    l->tick_ms = g >= 100 || g == lo ? g : (lo < 100 ? lo : 100);
    l->backoff_us = l->backoff_min_us = (int64_t)lo * 1000;
    l->backoff_max_us = bmax * 1000;
    l->rtu = c->serial != NULL;
    l->frame_delay_us = c->frame_delay_ms ? c->frame_delay_ms * 1000
                                          : mb_frame_delay_us(c->baud, c->data_bits, c->parity,
                                                              c->stop_bits);
}

/* The devices of link l: `first` and those after it that share its connection. */
static int fill_link(struct mb_report *rp, struct mb_link *l, const struct mb_conf *c, bool *taken,
                     size_t first)
{
    const struct mb_dev_conf *a = MITTARI_LIST_ITEM(&c->devices, struct mb_dev_conf, first);
    int rc;

    size_t n = 0;
    for (size_t j = first; j < c->devices.n; j++)
        n += !taken[j] && same_link(a, MITTARI_LIST_ITEM(&c->devices, struct mb_dev_conf, j));
    l->devs = calloc(n, sizeof(*l->devs)); /* exactly: 500 links of 500 slots would be 50 MB */
    if (!l->devs)
        return -ENOMEM;
    for (size_t j = first; j < c->devices.n; j++) {
        const struct mb_dev_conf *b = MITTARI_LIST_ITEM(&c->devices, struct mb_dev_conf, j);
        if (taken[j] || !same_link(a, b))
            continue;
        for (size_t k = 0; k < l->ndevs; k++)
            if ((rc = check_bus(rp, l->devs[k].c, b, j)))
                return rc;
        taken[j] = true;
        l->devs[l->ndevs].c = b;
        if ((rc = build_regs(rp, &l->devs[l->ndevs++], j)))
            return rc;
    }
    link_timing(l);
    l->mb = new_context(a);
    if (!l->mb) {
        char p[48];
        snprintf(p, sizeof(p), "devices[%zu]", first);
        return cfg_error(rp, p, "device %s: libmodbus refused the settings: %s", a->name,
                         strerror(errno));
    }
    return 0;
}

/* Every device on its own and the names across them; reports them all. */
static int check_devices(struct mb_report *rp, const struct mb_conf *c)
{
    int bad = 0;
    char p[48];
    for (size_t i = 0; i < c->devices.n; i++) {
        const struct mb_dev_conf *a = MITTARI_LIST_ITEM(&c->devices, struct mb_dev_conf, i);
        bad |= check_dev(rp, a, i) != 0;
        for (size_t j = 0; j < i; j++) {
            if (a->name && !strcmp(a->name, MITTARI_LIST_ITEM(&c->devices, struct mb_dev_conf, j)->name)) {
                snprintf(p, sizeof(p), "devices[%zu].name", i);
                bad |= cfg_error(rp, p, "device name %s is used twice", a->name) != 0;
            }
        }
    }
    return bad ? MITTARI_ECONFIG : 0;
}

int mb_check(const struct mb_conf *c, const struct mittari_checker *chk)
{
    struct mb_report rp = {.chk = chk};

    if (check_devices(&rp, c))
        return rp.n;
    for (size_t i = 0; i < c->devices.n; i++) {
        const struct mb_dev_conf *a = MITTARI_LIST_ITEM(&c->devices, struct mb_dev_conf, i);
        struct mb_dev dv = {.c = a};
        build_regs(&rp, &dv, i); /* the same checks and request planning as create() */
        free(dv.regs);
        free(dv.reqs);
        for (size_t j = 0; j < i; j++) {
            const struct mb_dev_conf *b = MITTARI_LIST_ITEM(&c->devices, struct mb_dev_conf, j);
            if (same_link(b, a))
                check_bus(&rp, b, a, i);
        }
    }
    return rp.n;
}

int mb_links_build(const struct mittari_host *h, struct mittari_ctx *ctx, const struct mb_conf *c,
                   struct mb_link ***out, size_t *nout)
{
    struct mb_report rp = {.h = h, .ctx = ctx};
    size_t n = c->devices.n, nl = 0;
    struct mb_link **links = calloc(n ? n : 1, sizeof(*links));
    bool *taken = calloc(n ? n : 1, sizeof(*taken));
    int rc = links && taken ? check_devices(&rp, c) : -ENOMEM;

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

void mb_link_free(struct mb_link *l)
{
    if (!l)
        return;
    if (l->mb) {
        link_close(l);
        modbus_free(l->mb);
    }
    for (size_t i = 0; l->devs && i < l->ndevs; i++) {
        free(l->devs[i].regs);
        free(l->devs[i].reqs);
    }
    free(l->devs);
    free(l);
}
