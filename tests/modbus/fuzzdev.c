/*
 * fuzzdev: see fuzzdev.h.
 */
#include "fuzzdev.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "decode.h"

int64_t fz_now;
static unsigned refuse_every, emits;

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

/* ---- the device ---- */

#define R(m, f, a, t, o, k)                                                                        \
    {                                                                                              \
        .metric = m, .function = f, .address = a, .type = t, .order = o, .scale = 1, .kind = k,    \
        .reset_value = 1                                                                           \
    }
static struct mb_reg_conf regs[] = {
    R("h0", MBD_FN_HOLDING, 0, MBD_U16, 0, MB_KIND_GAUGE),
    R("h1", MBD_FN_HOLDING, 1, MBD_U32, MBD_CDAB + 1, MB_KIND_CUMULATIVE),
    R("h3", MBD_FN_HOLDING, 3, MBD_I16, 0, MB_KIND_GAUGE),
    R("h4", MBD_FN_HOLDING, 4, MBD_F32, MBD_ABCD + 1, MB_KIND_GAUGE),
    R("h6", MBD_FN_HOLDING, 6, MBD_U64, MBD_DCBA + 1, MB_KIND_CUMULATIVE),
    R("h10", MBD_FN_HOLDING, 10, MBD_U16, 0, MB_KIND_DELTA),
    R("h11", MBD_FN_HOLDING, 11, MBD_U32, MBD_BADC + 1, MB_KIND_DELTA),
    R("i0", MBD_FN_INPUT, 0, MBD_F64, MBD_BADC + 1, MB_KIND_GAUGE),
    R("i4", MBD_FN_INPUT, 4, MBD_I32, MBD_DCBA + 1, MB_KIND_GAUGE),
    R("c0", MBD_FN_COIL, 0, MBD_U16, 0, MB_KIND_GAUGE),
    R("c9", MBD_FN_COIL, 9, MBD_U16, 0, MB_KIND_GAUGE),
    R("d3", MBD_FN_DISCRETE, 3, MBD_U16, 0, MB_KIND_GAUGE),
};
#undef R

static struct mb_dev_conf dev = {
    .name = "fz",
    .unit = 1,
    .baud = 921600,
    .parity = MB_PARITY_EVEN,
    .data_bits = 8,
    .stop_bits = 1,
    .poll_ms = 1000,
    .response_timeout_ms = 100,
    .connect_timeout_ms = 100,
    .backoff_max_ms = 1000,
    .down_after = 2,
    .max_registers = 125,
    .max_bits = 2000,
    .merge_gap = 8,
    .registers = {sizeof(regs) / sizeof(regs[0]), regs},
};
static const struct mb_conf conf = {.devices = {1, &dev}};

/* ---- the host ---- */

static const struct mb_reg_conf *reg_named(const char *metric)
{
    for (size_t i = 0; i < sizeof(regs) / sizeof(regs[0]); i++)
        if (strcmp(regs[i].metric, metric) == 0)
            return &regs[i];
    return NULL;
}

static int fz_emit(struct mittari_ctx *ctx, const struct mittari_reading *r)
{
    (void)ctx;
    CHECK(r && r->size == sizeof(*r) && r->device && strcmp(r->device, "fz") == 0);
    const struct mb_reg_conf *c = reg_named(r->metric);
    CHECK(c);
    if (c->kind == MB_KIND_CUMULATIVE) {
        CHECK(r->kind == MITTARI_KIND_CUMULATIVE && r->counter_bits == mbd_bits(c->type));
        CHECK(r->counter_bits == 64 || r->counter >> r->counter_bits == 0);
    } else {
        CHECK(r->kind == (c->kind == MB_KIND_DELTA ? MITTARI_KIND_DELTA : MITTARI_KIND_GAUGE));
        CHECK(isfinite(r->value));
        if (c->function == MBD_FN_COIL || c->function == MBD_FN_DISCRETE)
            CHECK(r->value == 0 || r->value == 1);
        if (c->reset_after_read) /* what came since the last clear: never negative */
            CHECK(r->value >= 0 && r->value <= (double)UINT32_MAX);
    }
    if (getenv("FZ_TRACE")) /* FZ_TRACE=1 fuzz_modbus_tcp FILE: what an input gives */
        fprintf(stderr, "reading %s %s %.17g\n", r->metric,
                r->kind == MITTARI_KIND_CUMULATIVE ? "counter" : "value",
                r->kind == MITTARI_KIND_CUMULATIVE ? (double)r->counter : r->value);
    if (refuse_every && ++emits % refuse_every == 0)
        return -EAGAIN;
    return 0;
}

static void fz_log(struct mittari_ctx *ctx, int level, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    (void)ctx;
    CHECK(level >= MITTARI_LOG_ERR && level <= MITTARI_LOG_DEBUG);
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
}

static int64_t fz_wall(struct mittari_ctx *ctx)
{
    (void)ctx;
    return 1700000000000000LL + fz_now;
}

static void fz_health(struct mittari_ctx *ctx, const char *device, int health, const char *reason)
{
    (void)ctx;
    CHECK(device && strcmp(device, "fz") == 0);
    CHECK(health >= MITTARI_HEALTH_UP && health <= MITTARI_HEALTH_DOWN);
    CHECK(reason && strlen(reason) < 112);
}

static void fz_count(struct mittari_ctx *ctx, const char *device, const char *counter, uint64_t n)
{
    static const char *const known[] = {
        "exceptions",        "crc_errors",     "timeouts",      "bad_responses",
        "connection_errors", "reconnects",     "reset_errors",  "bad_values",
        "refused",           "connect_errors", "polls_skipped",
    };
    size_t i = 0;
    (void)ctx;
    CHECK(device && strcmp(device, "fz") == 0 && n == 1);
    while (i < sizeof(known) / sizeof(known[0]) && strcmp(known[i], counter))
        i++;
    CHECK(i < sizeof(known) / sizeof(known[0]));
    if (getenv("FZ_TRACE"))
        fprintf(stderr, "count %s\n", counter);
}

struct watch {
    int on, fd, ev;
    mittari_fd_cb cb;
    void *arg;
};
static struct watch W[4];

static int fz_fd_watch(struct mittari_ctx *ctx, int fd, int events, mittari_fd_cb cb, void *arg,
                       struct mittari_watch **out)
{
    (void)ctx;
    CHECK(fd >= 0 && (events & (MITTARI_FD_READ | MITTARI_FD_WRITE)));
    for (int i = 0; i < 4; i++) {
        if (W[i].on)
            continue;
        W[i] = (struct watch){1, fd, events, cb, arg};
        *out = (struct mittari_watch *)&W[i];
        return 0;
    }
    abort(); /* a link watches one descriptor at a time */
}

static void fz_fd_unwatch(struct mittari_watch *w)
{
    struct watch *x = (struct watch *)w;
    CHECK(x->on);
    x->on = 0;
}

static int fz_poll_start(struct mittari_ctx *ctx, uint64_t ms, mittari_work_cb work,
                         mittari_done_cb done, void *arg, struct mittari_poll **out)
{
    (void)ctx, (void)ms, (void)work, (void)done, (void)arg, (void)out;
    abort(); /* the fuzz device has an address: no lookup */
}

static const struct mittari_host host = {
    .abi_version = MITTARI_ABI_VERSION,
    .size = sizeof(struct mittari_host),
    .emit = fz_emit,
    .log = fz_log,
    .now = fz_wall,
    .fd_watch = fz_fd_watch,
    .fd_unwatch = fz_fd_unwatch,
    .poll_start = fz_poll_start,
    .set_health = fz_health,
    .count = fz_count,
};

static int64_t fz_clock(void *arg)
{
    (void)arg;
    return fz_now;
}

struct mb_link *fz_build(int port, unsigned refuse)
{
    struct mb_link **links;
    size_t n;

    dev.host = port > 0 ? "127.0.0.1" : NULL;
    dev.port = port > 0 ? port : 502;
    dev.serial = port > 0 ? NULL : "/dev/null";
    regs[5].reset_after_read = true; /* h10: cleared with coil 5 */
    regs[5].reset_function = MB_RESET_COIL;
    regs[5].reset_address = 5;
    regs[6].reset_after_read = true; /* h11: cleared by writing 0 to holding 20 */
    regs[6].reset_function = MB_RESET_HOLDING;
    regs[6].reset_address = 20;
    regs[6].reset_value = 0;
    refuse_every = refuse;
    emits = 0;
    CHECK(mb_links_build(&host, NULL, &conf, &links, &n) == 0 && n == 1);
    struct mb_link *l = links[0];
    free(links);
    mb_link_set_clock(l, fz_clock, NULL);
    return l;
}

void fz_free(struct mb_link *l)
{
    mb_link_free(l);
}

int fz_deliver(int events)
{
    for (int i = 0; i < 4; i++) {
        if (W[i].on) {
            W[i].cb(W[i].arg, W[i].fd, events);
            return 1;
        }
    }
    return 0;
}

int fz_watches(void)
{
    int n = 0;
    for (int i = 0; i < 4; i++)
        n += W[i].on;
    return n;
}
