/*
 * rtu: the serial transport. libmodbus frames, checks CRCs and sets the
 * line up; its calls block, so an RTU link runs on a worker thread
 * (host->poll_start, see modbus.c), its devices one at a time.
 */
#include "linkint.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>

#include <modbus.h>

static void sleep_us(int64_t us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (us > 0 && nanosleep(&ts, &ts) && errno == EINTR)
        ;
}

int mb_rtu_init(struct mb_link *l)
{
    static const char parity[] = {'N', 'E', 'O'};
    const struct mb_dev_conf *c = l->devs[0].c;
    modbus_t *mb = modbus_new_rtu(c->serial, (int)c->baud, parity[c->parity], (int)c->data_bits,
                                  (int)c->stop_bits);
    if (!mb)
        return errno == ENOMEM ? -ENOMEM : -EINVAL;
    /* Issue 15, item 9: libmodbus restarts its byte timeout after every
     * byte, so a device dripping one byte at a time held a worker for
     * minutes. Without it, the response timeout bounds the whole answer
     * (libmodbus keeps one timeval across its select() calls, and Linux
     * counts it down). */
    modbus_set_byte_timeout(mb, 0, 0);
    l->mb = mb;
    l->frame_delay_us = c->frame_delay_ms
                            ? c->frame_delay_ms * 1000
                            : mb_frame_delay_us(c->baud, c->data_bits, c->parity, c->stop_bits);
    return 0;
}

static void rtu_close(struct mb_link *l)
{
    if (l->connected)
        modbus_close(l->mb);
    l->connected = false;
}

void mb_rtu_free(struct mb_link *l)
{
    if (!l->mb)
        return;
    rtu_close(l);
    modbus_free(l->mb);
    l->mb = NULL;
}

static int rtu_open(struct mb_link *l)
{
    const struct mb_dev_conf *c = l->devs[0].c;
    if (modbus_connect(l->mb) < 0)
        return -errno;
    if (c->rs485 && modbus_rtu_set_serial_mode(l->mb, MODBUS_RTU_RS485) < 0 && !l->rs485_warned) {
        /* ENOTTY: a pty or an adapter that switches by itself; keep going */
        l->rs485_warned = true;
        l->h->log(l->ctx, MITTARI_LOG_WARNING, "device %s: cannot switch the port to RS-485: %s",
                  c->name, strerror(errno));
    }
    /* libmodbus waits with select(): a descriptor past FD_SETSIZE would
     * overflow its fd_set */
    if (modbus_get_socket(l->mb) >= FD_SETSIZE) {
        modbus_close(l->mb);
        return -EMFILE;
    }
    return 0;
}

/* 0 when the port is open, else -errno (the link is in backoff). */
static int ensure_open(struct mb_link *l, int64_t now)
{
    if (l->connected)
        return 0;
    if (now < l->retry_at)
        return -EAGAIN;
    int rc = rtu_open(l);
    if (rc) {
        mb_link_down(l, now, rc);
        return rc;
    }
    mb_link_up(l);
    return 0;
}

/* Modbus over Serial Line 1.02, 2.5.1.1: the bus is silent t3.5 between
 * frames; libmodbus does not time it. Waits what is left of it since the
 * last frame ended (real time, whatever clock the link schedules by). */
static void quiet_bus(struct mb_link *l)
{
    int64_t left = l->quiet_at + l->frame_delay_us - mb_mono_us(NULL);
    if (l->quiet_at && left > 0)
        sleep_us(left);
}

static int classify(int e)
{
    /* Issue 15, item 10: an exception response with code 0 is errno
     * MODBUS_ENOBASE itself; it is the device's answer, not a broken line */
    if (e >= MODBUS_ENOBASE && e <= EMBXGTAR)
        return MB_F_EXCEPTION;
    if (e == EMBBADCRC)
        return MB_F_CRC;
    if (e == ETIMEDOUT)
        return MB_F_TIMEOUT;
    if (e == EMBBADDATA || e == EMBBADEXC || e == EMBUNKEXC || e == EMBMDATA || e == EMBBADSLAVE)
        return MB_F_BADDATA;
    return MB_F_LINK;
}

static int transact(modbus_t *mb, const struct mb_txn *t, uint16_t *w, uint8_t *b)
{
    switch (t->fn) {
    case 1:
        return modbus_read_bits(mb, t->addr, t->arg, b);
    case 2:
        return modbus_read_input_bits(mb, t->addr, t->arg, b);
    case 3:
        return modbus_read_registers(mb, t->addr, t->arg, w);
    case 4:
        return modbus_read_input_registers(mb, t->addr, t->arg, w);
    case 5:
        return modbus_write_bit(mb, t->addr, t->arg != 0);
    default:
        return modbus_write_register(mb, t->addr, t->arg);
    }
}

/* One transaction of d's poll, through libmodbus; the engine is told how it
 * went. */
static void poll_request(struct mb_link *l, struct mb_dev *d, const struct mb_txn *t)
{
    uint16_t words[MBD_MAX_READ_REGISTERS];
    uint8_t bits[MBD_MAX_READ_BITS];

    quiet_bus(l);
    int rc = transact(l->mb, t, words, bits);
    int e = rc < 0 ? errno : EMBBADDATA;
    int64_t ts = l->h->now(l->ctx); /* the moment the answer arrived */
    l->quiet_at = mb_mono_us(NULL);
    if (rc == (t->fn <= 4 ? t->arg : 1)) {
        mb_poll_ok(l, d, words, bits, ts);
        return;
    }
    int f = classify(e);
    int act = f == MB_F_EXCEPTION ? mb_poll_fail(l, d, f, e - MODBUS_ENOBASE, NULL)
                                  : mb_poll_fail(l, d, f, e, modbus_strerror(e));
    if (act == MB_FLUSH_GO_ON || act == MB_FLUSH_STOP)
        modbus_flush(l->mb); /* drop a late or broken answer; the bus stays open */
    else if (act == MB_CLOSE)
        rtu_close(l);
}

static void poll_device(struct mb_link *l, struct mb_dev *d, int64_t now)
{
    struct mb_txn t;
    int64_t ms = d->c->response_timeout_ms;

    modbus_set_slave(l->mb, (int)d->c->unit);
    modbus_set_response_timeout(l->mb, (uint32_t)(ms / 1000), (uint32_t)(ms % 1000) * 1000);
    mb_poll_begin(l, d, now);
    while (mb_poll_next(d, &t))
        poll_request(l, d, &t);
    mb_poll_end(l, d);
}

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
        if (ensure_open(l, now))
            break;
        poll_device(l, d, now);
    }
    return 0;
}

int mb_link_run(void *link)
{
    struct mb_link *l = link;
    return mb_link_run_at(l, l->clock(l->clock_arg));
}

uint64_t mb_link_tick_ms(const struct mb_link *l)
{
    return l->tick_ms;
}
