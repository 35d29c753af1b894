/*
 * simdev: see simdev.h.
 */
#include "simdev.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <pty.h>
#include <termios.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <modbus.h>

#include "decode.h"

#define SIM_REGS 1024
#define MAX_CONN 4
#define FRAME_MAX 300

struct counter {
    int fn; /* MBD_FN_HOLDING or MBD_FN_INPUT */
    unsigned addr;
    int type, order;
    uint64_t value, total, step, reads_frozen;
    int clear_coil; /* -1 = none */
    bool served;
};

struct pending {
    bool on;
    int64_t due;
    uint8_t req[FRAME_MAX];
    int len;
};

/* An answer sent one byte at a time (the slow-drip fault, issue 15 item 9). */
struct drip {
    bool on;
    uint8_t buf[FRAME_MAX];
    size_t len, pos;
    int64_t next, every; /* ms */
};

struct conn {
    int fd;
    uint8_t buf[FRAME_MAX * 2];
    size_t len;
    struct pending p;
    struct drip dr;
};

struct bus {
    char path[256];
    modbus_t *mb;
    int fd;
    uint8_t buf[FRAME_MAX * 2];
    size_t len;
    int64_t last_byte;
    struct pending p;
    struct drip dr;
    struct dev *pdev; /* whose answer is pending */
    int slave_fd;     /* path=auto: our own pty's device side */
    int64_t answered_us; /* when the last answer was written */
    int64_t min_gap_us;  /* shortest silence from an answer to the next request */
};

struct dev {
    char name[64];
    bool rtu, down, mute, crc, frozen;
    int unit, exception, delay_ms, drip_ms, port, lfd; /* exception -1: off */
    struct bus *bus;
    modbus_t *mb; /* TCP: the device's own context */
    struct conn conns[MAX_CONN];
    modbus_mapping_t *map;
    struct counter *ctr;
    size_t nctr;
    uint64_t received, answered, rng;
};

struct sim {
    pthread_mutex_t lock;
    struct dev **devs;
    size_t ndevs;
    struct bus **buses;
    size_t nbuses;
    int tick_ms;
    int64_t next_tick;
    uint64_t seed;
    struct pollfd *pfd;
    void **pobj;
    int *ptype;
    size_t pcap;
};

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint16_t sim_crc16(const uint8_t *p, size_t n)
{
    uint16_t crc = 0xFFFF;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int b = 0; b < 8; b++)
            crc = (crc & 1) ? (uint16_t)((crc >> 1) ^ 0xA001) : (uint16_t)(crc >> 1);
    }
    return crc;
}

static uint64_t next_rand(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

struct sim *sim_new(uint64_t seed, int tick_ms)
{
    struct sim *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    pthread_mutex_init(&s->lock, NULL);
    s->seed = seed ? seed : 1;
    s->tick_ms = tick_ms > 0 ? tick_ms : 100;
    s->next_tick = now_ms() + s->tick_ms;
    return s;
}

/* shutdown first: the loop thread may be inside poll() on the descriptor,
 * which keeps the socket alive past close() */
static void conn_close(struct conn *c)
{
    if (c->fd >= 0) {
        shutdown(c->fd, SHUT_RDWR);
        close(c->fd);
    }
    c->fd = -1;
    c->len = 0;
    c->p.on = false;
    c->dr.on = false;
}

static void dev_unlisten(struct dev *d)
{
    for (int i = 0; i < MAX_CONN; i++)
        conn_close(&d->conns[i]);
    if (d->lfd >= 0) {
        shutdown(d->lfd, SHUT_RDWR); /* stops listening now: connections are refused */
        close(d->lfd);
    }
    d->lfd = -1;
}

void sim_free(struct sim *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->ndevs; i++) {
        struct dev *d = s->devs[i];
        if (!d->rtu) {
            dev_unlisten(d);
            modbus_free(d->mb);
        }
        modbus_mapping_free(d->map);
        free(d->ctr);
        free(d);
    }
    for (size_t i = 0; i < s->nbuses; i++) {
        struct bus *b = s->buses[i];
        if (b->mb) {
            modbus_close(b->mb); /* closes fd */
            modbus_free(b->mb);
        } else if (b->fd >= 0) {
            close(b->fd);
        }
        if (b->slave_fd >= 0)
            close(b->slave_fd);
        free(b);
    }
    free(s->devs);
    free(s->buses);
    free(s->pfd);
    free(s->pobj);
    free(s->ptype);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

void sim_lock(struct sim *s)
{
    pthread_mutex_lock(&s->lock);
}

void sim_unlock(struct sim *s)
{
    pthread_mutex_unlock(&s->lock);
}

static struct dev *find_dev(struct sim *s, const char *name)
{
    for (size_t i = 0; i < s->ndevs; i++)
        if (strcmp(s->devs[i]->name, name) == 0)
            return s->devs[i];
    return NULL;
}

/* ---- registers ---- */

static uint64_t mask_of(int type)
{
    unsigned b = mbd_words(type) * 16;
    return b >= 64 ? UINT64_MAX : ((uint64_t)1 << b) - 1;
}

static uint16_t *table(struct dev *d, int fn)
{
    return fn == MBD_FN_INPUT ? d->map->tab_input_registers : d->map->tab_registers;
}

static void store(struct dev *d, struct counter *c)
{
    c->value &= mask_of(c->type);
    mbd_disassemble(c->value, mbd_words(c->type), c->order, table(d, c->fn) + c->addr);
}

static void tick(struct sim *s)
{
    for (size_t i = 0; i < s->ndevs; i++) {
        struct dev *d = s->devs[i];
        for (size_t k = 0; k < d->nctr && !d->frozen; k++) {
            struct counter *c = &d->ctr[k];
            uint64_t inc = c->step ? next_rand(&d->rng) % (c->step + 1) : 0;
            c->value += inc;
            if (c->served)
                c->total += inc;
            store(d, c);
        }
    }
}

/* A read that covered a counter: from its first one on, increments count. */
static void mark_served(struct dev *d, const uint8_t *pdu)
{
    int fn = pdu[0] == 3 ? MBD_FN_HOLDING : pdu[0] == 4 ? MBD_FN_INPUT : -1;
    unsigned addr = (unsigned)(pdu[1] << 8 | pdu[2]), nb = (unsigned)(pdu[3] << 8 | pdu[4]);

    for (size_t k = 0; k < d->nctr; k++) {
        struct counter *c = &d->ctr[k];
        if (c->fn != fn || c->addr < addr || c->addr + mbd_words(c->type) > addr + nb)
            continue;
        if (!c->served)
            c->total = c->clear_coil >= 0 ? c->value : 0; /* cleared counters: all of it */
        c->served = true;
        if (d->frozen)
            c->reads_frozen++;
    }
}

/* After a write: a clearing coil set to on clears its counters. */
static void apply_clear(struct dev *d)
{
    for (size_t k = 0; k < d->nctr; k++) {
        struct counter *c = &d->ctr[k];
        if (c->clear_coil < 0 || !d->map->tab_bits[c->clear_coil])
            continue;
        d->map->tab_bits[c->clear_coil] = 0;
        c->value = 0;
        store(d, c);
    }
}

/* ---- answering ---- */

/* The answer to a read of holding or input registers, built here (not by
 * libmodbus) for the faults that need its bytes: a TCP answer (MBAP header
 * from the request) or an RTU one with its CRC, spoiled when bad_crc.
 * Returns its length, 0 when the request is not such a read. */
static size_t build_read_answer(struct dev *d, const uint8_t *req, bool bad_crc, uint8_t *rsp)
{
    int hdr = d->rtu ? 1 : 7;
    const uint8_t *pdu = req + hdr;
    unsigned addr = (unsigned)(pdu[1] << 8 | pdu[2]), nb = (unsigned)(pdu[3] << 8 | pdu[4]);
    size_t n = 0;
    uint16_t *t = table(d, pdu[0] == 4 ? MBD_FN_INPUT : MBD_FN_HOLDING);

    if ((pdu[0] != 3 && pdu[0] != 4) || nb < 1 || nb > 125 || addr + nb > SIM_REGS)
        return 0;
    if (!d->rtu) {
        memcpy(rsp, req, 4); /* transaction and protocol id */
        rsp[4] = 0;
        rsp[5] = (uint8_t)(3 + nb * 2);
        n = 6;
    }
    rsp[n++] = req[hdr - 1]; /* unit id */
    rsp[n++] = pdu[0];
    rsp[n++] = (uint8_t)(nb * 2);
    for (unsigned i = 0; i < nb; i++) {
        rsp[n++] = (uint8_t)(t[addr + i] >> 8);
        rsp[n++] = (uint8_t)t[addr + i];
    }
    if (d->rtu) {
        uint16_t crc = sim_crc16(rsp, n) ^ (bad_crc ? 0x5555 : 0); /* wrong on purpose */
        rsp[n++] = (uint8_t)crc;
        rsp[n++] = (uint8_t)(crc >> 8);
    }
    return n;
}

static void send_bad_crc(struct dev *d, int fd, const uint8_t *req)
{
    uint8_t rsp[FRAME_MAX];
    size_t n = build_read_answer(d, req, true, rsp);
    if (n && write(fd, rsp, n) < 0)
        return;
}

static void start_drip(struct dev *d, struct drip *dr, const uint8_t *req)
{
    dr->len = build_read_answer(d, req, false, dr->buf);
    dr->pos = 0;
    dr->every = d->drip_ms;
    dr->next = now_ms() + d->drip_ms;
    dr->on = dr->len > 0;
}

static struct drip *conn_of(struct dev *d, int fd)
{
    for (int i = 0; i < MAX_CONN; i++)
        if (d->conns[i].fd == fd)
            return &d->conns[i].dr;
    return &d->conns[0].dr; /* cannot happen: the request came on fd */
}

static void answer(struct dev *d, modbus_t *mb, int fd, const uint8_t *req, int len)
{
    int hdr = d->rtu ? 1 : 7;
    const uint8_t *pdu = req + hdr;

    d->answered++;
    if (d->exception >= 0) {
        modbus_reply_exception(mb, req, (unsigned)d->exception);
        return;
    }
    if (d->drip_ms > 0 && (pdu[0] == 3 || pdu[0] == 4)) {
        mark_served(d, pdu);
        start_drip(d, d->rtu ? &d->bus->dr : conn_of(d, fd), req);
        return;
    }
    if (d->crc && d->rtu && (pdu[0] == 3 || pdu[0] == 4)) {
        send_bad_crc(d, fd, req);
        return;
    }
    mark_served(d, pdu);
    /* stamped before the write: a stamp after it could come after the master
     * already read the answer (this thread preempted), and shorten the gap */
    int64_t answering = now_us();
    modbus_reply(mb, req, len, d->map);
    if (d->rtu)
        d->bus->answered_us = answering;
    if (pdu[0] == 5 || pdu[0] == 15)
        apply_clear(d);
}

static void take(struct dev *d, modbus_t *mb, int fd, struct pending *p, const uint8_t *req,
                 int len)
{
    d->received++;
    if (d->mute)
        return;
    if (d->delay_ms > 0) {
        memcpy(p->req, req, (size_t)len);
        p->len = len;
        p->due = now_ms() + d->delay_ms;
        p->on = true;
        return;
    }
    answer(d, mb, fd, req, len);
}

/* ---- TCP ---- */

static int dev_listen(struct dev *d)
{
    struct sockaddr_in a;
    socklen_t al = sizeof(a);

    if (d->mb)
        modbus_free(d->mb);
    d->mb = modbus_new_tcp("127.0.0.1", d->port);
    if (!d->mb)
        return -errno;
    d->lfd = modbus_tcp_listen(d->mb, 16);
    if (d->lfd < 0)
        return -errno;
    fcntl(d->lfd, F_SETFL, O_NONBLOCK);
    if (getsockname(d->lfd, (struct sockaddr *)&a, &al) == 0)
        d->port = ntohs(a.sin_port);
    return 0;
}

static void tcp_accept(struct dev *d)
{
    int fd = accept4(d->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    int slot = 0;
    for (int i = 0; i < MAX_CONN; i++)
        if (d->conns[i].fd < 0) {
            slot = i;
            break;
        }
    conn_close(&d->conns[slot]); /* all busy: the oldest goes */
    d->conns[slot].fd = fd;
}

static void tcp_frames(struct dev *d, struct conn *c)
{
    while (c->len >= 7) {
        size_t total = 6 + (size_t)(c->buf[4] << 8 | c->buf[5]);
        if (total > FRAME_MAX || total < 8) {
            conn_close(c);
            return;
        }
        if (c->len < total)
            return;
        modbus_set_socket(d->mb, c->fd);
        if (!c->p.on)
            take(d, d->mb, c->fd, &c->p, c->buf, (int)total);
        memmove(c->buf, c->buf + total, c->len - total);
        c->len -= total;
    }
}

static void tcp_read(struct dev *d, struct conn *c)
{
    ssize_t n = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
    if (n <= 0) {
        if (n == 0 || (errno != EAGAIN && errno != EINTR))
            conn_close(c);
        return;
    }
    c->len += (size_t)n;
    tcp_frames(d, c);
}

/* ---- RTU ---- */

static size_t rtu_len(const uint8_t *b, size_t have)
{
    if (have < 2)
        return 0;
    if (b[1] >= 1 && b[1] <= 6)
        return 8;
    if (b[1] == 15 || b[1] == 16)
        return have >= 7 ? 9 + (size_t)b[6] : 0;
    return SIZE_MAX; /* not a request we know: drop what we have */
}

static struct dev *bus_dev(struct sim *s, struct bus *b, int unit)
{
    for (size_t i = 0; i < s->ndevs; i++)
        if (s->devs[i]->bus == b && s->devs[i]->unit == unit)
            return s->devs[i];
    return NULL;
}

static void rtu_frames(struct sim *s, struct bus *b)
{
    for (;;) {
        size_t n = rtu_len(b->buf, b->len);
        if (n == SIZE_MAX || n > sizeof(b->buf)) {
            b->len = 0;
            return;
        }
        if (n == 0 || b->len < n)
            return;
        uint16_t crc = (uint16_t)(b->buf[n - 2] | b->buf[n - 1] << 8);
        struct dev *d = bus_dev(s, b, b->buf[0]);
        if (crc == sim_crc16(b->buf, n - 2) && d && !b->p.on) {
            modbus_set_slave(b->mb, d->unit);
            b->pdev = d;
            take(d, b->mb, b->fd, &b->p, b->buf, (int)n);
        }
        memmove(b->buf, b->buf + n, b->len - n);
        b->len -= n;
    }
}

static void rtu_read(struct sim *s, struct bus *b)
{
    ssize_t n = read(b->fd, b->buf + b->len, sizeof(b->buf) - b->len);
    if (n <= 0)
        return;
    if (b->len && now_ms() - b->last_byte > 200)
        b->len = 0; /* a silence ended the old partial frame */
    if (b->len == 0 && b->answered_us) {
        /* at least the master's pause: it read our answer after we began to
         * write it, and wrote this request before we read it */
        int64_t gap = now_us() - b->answered_us;
        if (b->min_gap_us == 0 || gap < b->min_gap_us)
            b->min_gap_us = gap;
        b->answered_us = 0;
    }
    b->len += (size_t)n;
    b->last_byte = now_ms();
    rtu_frames(s, b);
}

/* path=auto: a pty of our own; the device side is the slave's name (kept
 * open here too, so the master never sees a hang-up between clients). */
static int open_auto(struct bus *b)
{
    int m, sl;
    if (openpty(&m, &sl, b->path, NULL, NULL) < 0)
        return -errno;
    struct termios t;
    if (tcgetattr(sl, &t) == 0) {
        cfmakeraw(&t);
        tcsetattr(sl, TCSANOW, &t);
    }
    fcntl(m, F_SETFL, O_NONBLOCK);
    fcntl(m, F_SETFD, FD_CLOEXEC);
    fcntl(sl, F_SETFD, FD_CLOEXEC);
    b->fd = m;
    b->slave_fd = sl;
    b->mb = modbus_new_rtu(b->path, 9600, 'N', 8, 1);
    if (!b->mb)
        return -errno;
    modbus_set_socket(b->mb, m);
    return 0;
}

static int open_path(struct bus *b, const char *path)
{
    snprintf(b->path, sizeof(b->path), "%s", path);
    b->slave_fd = -1;
    b->mb = modbus_new_rtu(path, 9600, 'N', 8, 1);
    if (!b->mb)
        return -errno;
    if (modbus_connect(b->mb) < 0)
        return -errno;
    b->fd = modbus_get_socket(b->mb);
    return 0;
}

static struct bus *get_bus(struct sim *s, const char *path, char *err, size_t errlen)
{
    for (size_t i = 0; strcmp(path, "auto") && i < s->nbuses; i++)
        if (strcmp(s->buses[i]->path, path) == 0)
            return s->buses[i];
    struct bus *b = calloc(1, sizeof(*b));
    void *v = realloc(s->buses, (s->nbuses + 1) * sizeof(*s->buses));
    if (!b || !v) {
        free(b);
        return NULL;
    }
    s->buses = v;
    s->buses[s->nbuses++] = b; /* freed with the sim, also when opening failed */
    b->fd = b->slave_fd = -1;
    int rc = strcmp(path, "auto") == 0 ? open_auto(b) : open_path(b, path);
    if (rc) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(-rc));
        return NULL;
    }
    return b;
}

/* ---- spec lines and commands ---- */

struct args {
    char *v[16];
    int n;
};

static void split(char *line, struct args *a)
{
    a->n = 0;
    for (char *t = strtok(line, " \t\r\n"); t && a->n < 16; t = strtok(NULL, " \t\r\n"))
        a->v[a->n++] = t;
}

static const char *arg(const struct args *a, const char *key)
{
    size_t kl = strlen(key);
    for (int i = 2; i < a->n; i++)
        if (strncmp(a->v[i], key, kl) == 0 && a->v[i][kl] == '=')
            return a->v[i] + kl + 1;
    return NULL;
}

static int index_of(const char *v, const char *const *names)
{
    for (int i = 0; v && names[i]; i++)
        if (strcmp(v, names[i]) == 0)
            return i;
    return -1;
}

static const char *const type_names[] = {"u16", "i16", "u32", "i32", "u64", "f32", "f64", NULL};
static const char *const order_names[] = {"AB", "BA", "ABCD", "CDAB", "BADC", "DCBA", NULL};

static struct dev *new_dev(struct sim *s, const char *name)
{
    struct dev *d = calloc(1, sizeof(*d));
    void *v = realloc(s->devs, (s->ndevs + 1) * sizeof(*s->devs));
    if (!d || !v) {
        free(d);
        return NULL;
    }
    s->devs = v;
    snprintf(d->name, sizeof(d->name), "%s", name);
    d->lfd = -1;
    for (int i = 0; i < MAX_CONN; i++)
        d->conns[i].fd = -1;
    d->exception = -1;
    d->map = modbus_mapping_new(SIM_REGS, SIM_REGS, SIM_REGS, SIM_REGS);
    d->rng = s->seed + 0x9E3779B97F4A7C15ull * (s->ndevs + 1);
    if (!d->map) {
        free(d);
        return NULL;
    }
    s->devs[s->ndevs++] = d;
    return d;
}

static int add_register(struct dev *d, const struct args *a, bool counter, char *err, size_t el)
{
    int type = index_of(arg(a, "type") ? arg(a, "type") : "u16", type_names);
    int order = index_of(arg(a, "order") ? arg(a, "order") : "AB", order_names);
    const char *fn = arg(a, "fn") ? arg(a, "fn") : "holding";
    long addr = arg(a, "addr") ? strtol(arg(a, "addr"), NULL, 0) : 0;
    struct counter c = {.fn = strcmp(fn, "input") == 0 ? MBD_FN_INPUT : MBD_FN_HOLDING,
                        .addr = (unsigned)addr, .type = type, .order = order, .clear_coil = -1};

    if (type < 0 || order < 0 || !mbd_order_fits(type, order) || addr < 0 ||
        addr + (long)mbd_words(type) > SIM_REGS) {
        snprintf(err, el, "bad type, order or address");
        return -EINVAL;
    }
    if (!counter) { /* a fixed value: integers or floats */
        double x = arg(a, "value") ? strtod(arg(a, "value"), NULL) : 0;
        float f = (float)x;
        uint32_t b32;
        memcpy(&b32, &f, 4);
        c.value = type == MBD_F32 ? b32 : type == MBD_F64 ? 0 : (uint64_t)(int64_t)x;
        if (type == MBD_F64)
            memcpy(&c.value, &x, 8);
        c.value &= mask_of(type);
        mbd_disassemble(c.value, mbd_words(type), order, table(d, c.fn) + c.addr);
        return 0;
    }
    c.value = arg(a, "start") ? strtoull(arg(a, "start"), NULL, 0) : 0;
    c.step = arg(a, "step") ? strtoull(arg(a, "step"), NULL, 0) : 1;
    c.clear_coil = arg(a, "clear_coil") ? atoi(arg(a, "clear_coil")) : -1;
    void *v = realloc(d->ctr, (d->nctr + 1) * sizeof(*d->ctr));
    if (!v)
        return -ENOMEM;
    d->ctr = v;
    d->ctr[d->nctr] = c;
    store(d, &d->ctr[d->nctr++]);
    return 0;
}

static int cmd_device(struct sim *s, const struct args *a, char *err, size_t el)
{
    struct dev *d = find_dev(s, a->v[1]) ? NULL : new_dev(s, a->v[1]);
    if (!d) {
        snprintf(err, el, "device %s: exists already or out of memory", a->v[1]);
        return -EINVAL;
    }
    if (strcmp(a->v[0], "rtu") == 0) {
        d->rtu = true;
        d->unit = arg(a, "unit") ? atoi(arg(a, "unit")) : 1;
        /* join=OTHER: on the bus of another RTU device (e.g. one made with path=auto) */
        struct dev *o = arg(a, "join") ? find_dev(s, arg(a, "join")) : NULL;
        d->bus = o ? o->bus : arg(a, "path") ? get_bus(s, arg(a, "path"), err, el) : NULL;
        return d->bus ? 0 : -EIO;
    }
    d->port = arg(a, "port") ? atoi(arg(a, "port")) : 0;
    int rc = dev_listen(d);
    if (rc) {
        snprintf(err, el, "cannot listen: %s", strerror(-rc));
        return rc;
    }
    for (int i = 2; i < a->n; i++)
        if (strcmp(a->v[i], "down") == 0)
            dev_unlisten(d);
    d->down = d->lfd < 0;
    return 0;
}

static void set_frozen(struct dev *d, bool on)
{
    d->frozen = on;
    for (size_t k = 0; on && k < d->nctr; k++)
        d->ctr[k].reads_frozen = 0;
}

static void reboot(struct dev *d, uint64_t v)
{
    for (size_t k = 0; k < d->nctr; k++) {
        struct counter *c = &d->ctr[k];
        c->value = v;
        if (c->served)
            c->total += v & mask_of(c->type); /* counted since the restart */
        store(d, c);
    }
    for (int i = 0; !d->rtu && i < MAX_CONN; i++)
        conn_close(&d->conns[i]); /* a reboot drops its connections */
}

/* off, or a code libmodbus's server sends: 0-11 (0 too, issue 15 item 10) */
static int set_exception(struct dev *d, const char *v, char *err, size_t el)
{
    char *end;
    long code = strtol(v, &end, 10);
    if (!strcmp(v, "off")) {
        d->exception = -1;
        return 0;
    }
    if (!*v || *end || code < 0 || code > 11) {
        snprintf(err, el, "exception: off or a code 0-11");
        return -EINVAL;
    }
    d->exception = (int)code;
    return 0;
}

static int cmd_fault(struct sim *s, const struct args *a, char *err, size_t el)
{
    struct dev *d = a->n > 1 ? find_dev(s, a->v[1]) : NULL;
    const char *v = a->n > 2 ? a->v[2] : "";
    bool on = strcmp(v, "on") == 0;
    const char *c = a->v[0];

    if (!d) {
        snprintf(err, el, "%s: no such device", c);
        return -ENOENT;
    }
    if (!strcmp(c, "reboot"))
        reboot(d, strtoull(v, NULL, 0));
    else if (!strcmp(c, "exception"))
        return set_exception(d, v, err, el);
    else if (!strcmp(c, "drip"))
        d->drip_ms = atoi(v);
    else if (!strcmp(c, "mute"))
        d->mute = on;
    else if (!strcmp(c, "crc"))
        d->crc = on;
    else if (!strcmp(c, "delay"))
        d->delay_ms = atoi(v);
    else if (!strcmp(c, "down") && !d->rtu)
        dev_unlisten(d);
    else if (!strcmp(c, "up") && !d->rtu && d->lfd < 0)
        return dev_listen(d);
    return 0;
}

static int cmd_dump(struct sim *s, const char *path)
{
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -errno;
    sim_dump(s, f);
    if (fclose(f) || rename(tmp, path))
        return -errno;
    return 0;
}

int sim_command(struct sim *s, const char *line, char *err, size_t errlen)
{
    char buf[1024];
    struct args a;

    snprintf(buf, sizeof(buf), "%s", line);
    split(buf, &a);
    err[0] = 0;
    if (a.n == 0 || a.v[0][0] == '#')
        return 0;
    const char *c = a.v[0];
    if ((!strcmp(c, "tcp") || !strcmp(c, "rtu")) && a.n >= 2)
        return cmd_device(s, &a, err, errlen);
    if ((!strcmp(c, "counter") || !strcmp(c, "value")) && a.n >= 2) {
        struct dev *d = find_dev(s, a.v[1]);
        if (!d) {
            snprintf(err, errlen, "no device %s", a.v[1]);
            return -ENOENT;
        }
        return add_register(d, &a, c[0] == 'c', err, errlen);
    }
    if (!strcmp(c, "freeze") || !strcmp(c, "resume")) {
        for (size_t i = 0; i < s->ndevs; i++)
            if (a.n < 2 || !strcmp(s->devs[i]->name, a.v[1]))
                set_frozen(s->devs[i], c[0] == 'f');
        return 0;
    }
    if (!strcmp(c, "dump") && a.n == 2)
        return cmd_dump(s, a.v[1]);
    if (!strcmp(c, "reboot") || !strcmp(c, "exception") || !strcmp(c, "mute") ||
        !strcmp(c, "crc") || !strcmp(c, "delay") || !strcmp(c, "drip") || !strcmp(c, "down") ||
        !strcmp(c, "up"))
        return cmd_fault(s, &a, err, errlen);
    snprintf(err, errlen, "unknown command '%s'", c);
    return -EINVAL;
}

/* ---- the loop ---- */

enum { P_LISTEN, P_CONN, P_BUS };

static int add_pfd(struct sim *s, size_t *n, int fd, int type, void *obj)
{
    if (*n == s->pcap) {
        size_t cap = s->pcap ? s->pcap * 2 : 64;
        struct pollfd *p = realloc(s->pfd, cap * sizeof(*p));
        if (p)
            s->pfd = p;
        void **o = realloc(s->pobj, cap * sizeof(*o));
        if (o)
            s->pobj = o;
        int *t = realloc(s->ptype, cap * sizeof(*t));
        if (t)
            s->ptype = t;
        if (!p || !o || !t)
            return -ENOMEM;
        s->pcap = cap;
    }
    s->pfd[*n] = (struct pollfd){.fd = fd, .events = POLLIN};
    s->pobj[*n] = obj;
    s->ptype[*n] = type;
    (*n)++;
    return 0;
}

static size_t collect(struct sim *s, int64_t *wake)
{
    size_t n = 0;
    for (size_t i = 0; i < s->ndevs; i++) {
        struct dev *d = s->devs[i];
        if (d->rtu)
            continue;
        if (d->lfd >= 0)
            add_pfd(s, &n, d->lfd, P_LISTEN, d);
        for (int k = 0; k < MAX_CONN; k++) {
            struct conn *c = &d->conns[k];
            if (c->fd >= 0)
                add_pfd(s, &n, c->fd, P_CONN, c);
            if (c->fd >= 0 && c->p.on && c->p.due < *wake)
                *wake = c->p.due;
            if (c->fd >= 0 && c->dr.on && c->dr.next < *wake)
                *wake = c->dr.next;
        }
    }
    for (size_t i = 0; i < s->nbuses; i++) {
        add_pfd(s, &n, s->buses[i]->fd, P_BUS, s->buses[i]);
        if (s->buses[i]->p.on && s->buses[i]->p.due < *wake)
            *wake = s->buses[i]->p.due;
        if (s->buses[i]->dr.on && s->buses[i]->dr.next < *wake)
            *wake = s->buses[i]->dr.next;
    }
    return n;
}

static struct dev *conn_dev(struct sim *s, struct conn *c)
{
    for (size_t i = 0; i < s->ndevs; i++)
        if (c >= s->devs[i]->conns && c < s->devs[i]->conns + MAX_CONN)
            return s->devs[i];
    return NULL;
}

/* One byte of a dripping answer when its time has come. */
static void drip_step(struct drip *dr, int fd, int64_t now)
{
    if (!dr->on || dr->next > now)
        return;
    if (write(fd, dr->buf + dr->pos, 1) == 1)
        dr->pos++;
    dr->next = now + dr->every;
    dr->on = dr->pos < dr->len;
}

static void due_answers(struct sim *s, int64_t now)
{
    for (size_t i = 0; i < s->ndevs; i++) {
        struct dev *d = s->devs[i];
        for (int k = 0; !d->rtu && k < MAX_CONN; k++) {
            struct conn *c = &d->conns[k];
            if (c->fd >= 0)
                drip_step(&c->dr, c->fd, now);
            if (c->fd >= 0 && c->p.on && c->p.due <= now) {
                c->p.on = false;
                modbus_set_socket(d->mb, c->fd);
                answer(d, d->mb, c->fd, c->p.req, c->p.len);
                tcp_frames(d, c); /* what came meanwhile */
            }
        }
    }
    for (size_t i = 0; i < s->nbuses; i++) {
        struct bus *b = s->buses[i];
        drip_step(&b->dr, b->fd, now);
        if (b->p.on && b->p.due <= now) {
            b->p.on = false;
            modbus_set_slave(b->mb, b->pdev->unit);
            answer(b->pdev, b->mb, b->fd, b->p.req, b->p.len);
        }
    }
}

int sim_step(struct sim *s, int timeout_ms)
{
    sim_lock(s);
    int64_t now = now_ms(), wake = now + timeout_ms;
    if (s->next_tick < wake)
        wake = s->next_tick;
    size_t n = collect(s, &wake);
    sim_unlock(s);

    int rc = poll(s->pfd, n, wake > now ? (int)(wake - now) : 0);
    sim_lock(s);
    now = now_ms();
    if (now >= s->next_tick) {
        tick(s);
        s->next_tick += s->tick_ms;
        if (s->next_tick <= now)
            s->next_tick = now + s->tick_ms;
    }
    for (size_t i = 0; rc > 0 && i < n; i++) {
        if (!s->pfd[i].revents)
            continue;
        if (s->ptype[i] == P_LISTEN && ((struct dev *)s->pobj[i])->lfd == s->pfd[i].fd)
            tcp_accept(s->pobj[i]);
        else if (s->ptype[i] == P_CONN && ((struct conn *)s->pobj[i])->fd == s->pfd[i].fd)
            tcp_read(conn_dev(s, s->pobj[i]), s->pobj[i]);
        else if (s->ptype[i] == P_BUS)
            rtu_read(s, s->pobj[i]);
    }
    due_answers(s, now);
    sim_unlock(s);
    return rc < 0 && errno != EINTR ? -errno : 0;
}

/* ---- state ---- */

void sim_dump(struct sim *s, FILE *f)
{
    fprintf(f, "{\"devices\": [");
    for (size_t i = 0; i < s->ndevs; i++) {
        struct dev *d = s->devs[i];
        bool pending = false;
        for (int k = 0; k < MAX_CONN; k++)
            pending |= d->conns[k].fd >= 0 && (d->conns[k].p.on || d->conns[k].dr.on);
        pending |= d->rtu && (d->bus->p.on || d->bus->dr.on) && d->bus->pdev == d;
        fprintf(f, "%s\n {\"name\": \"%s\", \"port\": %d, \"path\": \"%s\", \"received\": %llu, "
                   "\"answered\": %llu, \"pending\": %s, \"counters\": [",
                i ? "," : "", d->name, d->rtu ? -1 : d->port, d->rtu ? d->bus->path : "",
                (unsigned long long)d->received,
                (unsigned long long)d->answered, pending ? "true" : "false");
        for (size_t k = 0; k < d->nctr; k++) {
            struct counter *c = &d->ctr[k];
            fprintf(f, "%s{\"addr\": %u, \"value\": %llu, \"total\": %llu, \"served\": %s, "
                       "\"reads_frozen\": %llu}",
                    k ? ", " : "", c->addr, (unsigned long long)c->value,
                    (unsigned long long)c->total, c->served ? "true" : "false",
                    (unsigned long long)c->reads_frozen);
        }
        fprintf(f, "], \"bus_min_gap_us\": %lld}", d->rtu ? (long long)d->bus->min_gap_us : -1LL);
    }
    fprintf(f, "\n]}\n");
}

int sim_port(struct sim *s, const char *dev)
{
    struct dev *d = find_dev(s, dev);
    return d && !d->rtu ? d->port : -1;
}

const char *sim_path(struct sim *s, const char *dev)
{
    struct dev *d = find_dev(s, dev);
    return d && d->rtu ? d->bus->path : NULL;
}

int sim_counter(struct sim *s, const char *dev, unsigned addr, uint64_t *value, uint64_t *total,
                uint64_t *reads_frozen)
{
    struct dev *d = find_dev(s, dev);
    for (size_t k = 0; d && k < d->nctr; k++) {
        if (d->ctr[k].addr != addr)
            continue;
        *value = d->ctr[k].value;
        *total = d->ctr[k].total;
        *reads_frozen = d->ctr[k].reads_frozen;
        return 0;
    }
    return -ENOENT;
}

int sim_requests(struct sim *s, const char *dev, uint64_t *received, uint64_t *answered,
                 bool *pending)
{
    struct dev *d = find_dev(s, dev);
    if (!d)
        return -ENOENT;
    *received = d->received;
    *answered = d->answered;
    *pending = false;
    for (int k = 0; k < MAX_CONN; k++)
        *pending |= d->conns[k].fd >= 0 && (d->conns[k].p.on || d->conns[k].dr.on);
    *pending |= d->rtu && (d->bus->p.on || d->bus->dr.on) && d->bus->pdev == d;
    return 0;
}
