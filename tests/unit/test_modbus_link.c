/* The Modbus polling engine (plugins/modbus: link.c, tcp.c, rtu.c) against
 * the simulator (tests/modbus/simdev.c) in a thread of this process: TCP on
 * 127.0.0.1 (our framing against libmodbus's server) and RTU over a pty
 * (libmodbus on both ends). A fake host records what the engine emits,
 * counts and reports as health, and plays the agent's loop for the TCP
 * links: their fd watches are poll()ed here, and a host-name lookup runs on
 * a thread of its own as on a worker. The engine's clock is driven by the
 * test (a base it sets plus the real time since), so backoff is checked
 * without waiting for it while timeouts still take real time. */
#include "testutil.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mittari/mittari.h>

#include "decode.h"
#include "link.h"
#include "simdev.h"

const struct mittari_plugin *mittari_plugin_entry(void);

/* ---- a fake host ---- */

#define MAXR 4096
struct rec {
    char device[64], metric[64];
    int kind;
    double value;
    uint64_t counter;
    unsigned bits;
    int64_t ts;
};

struct fake {
    pthread_mutex_t mu;
    struct rec r[MAXR];
    size_t n;
    char hdev[8][64];
    int health[8];
    char reason[8][128];
    char cdev[32][64], cname[32][32];
    uint64_t cval[32];
    size_t nc;
    int logged_err;
};

static struct fake F;

static int64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int f_emit(struct mittari_ctx *ctx, const struct mittari_reading *r)
{
    (void)ctx;
    pthread_mutex_lock(&F.mu);
    if (F.n < MAXR) {
        struct rec *x = &F.r[F.n++];
        snprintf(x->device, sizeof(x->device), "%s", r->device);
        snprintf(x->metric, sizeof(x->metric), "%s", r->metric);
        x->kind = r->kind;
        x->value = r->value;
        x->counter = r->counter;
        x->bits = r->counter_bits;
        x->ts = r->ts_us;
    }
    pthread_mutex_unlock(&F.mu);
    return 0;
}

static void f_log(struct mittari_ctx *ctx, int level, const char *fmt, ...)
{
    va_list ap;
    (void)ctx;
    if (level <= MITTARI_LOG_ERR)
        F.logged_err++;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static int64_t f_now(struct mittari_ctx *ctx)
{
    (void)ctx;
    return wall_us();
}

static int dev_slot(char (*names)[64], size_t max, const char *d)
{
    for (size_t i = 0; i < max; i++) {
        if (!names[i][0])
            snprintf(names[i], 64, "%s", d);
        if (strcmp(names[i], d) == 0)
            return (int)i;
    }
    return -1;
}

static void f_health(struct mittari_ctx *ctx, const char *device, int health, const char *reason)
{
    (void)ctx;
    pthread_mutex_lock(&F.mu);
    int i = dev_slot(F.hdev, 8, device);
    F.health[i] = health;
    snprintf(F.reason[i], sizeof(F.reason[i]), "%s", reason);
    pthread_mutex_unlock(&F.mu);
}

static void f_count(struct mittari_ctx *ctx, const char *device, const char *counter, uint64_t n)
{
    (void)ctx;
    pthread_mutex_lock(&F.mu);
    size_t i = 0;
    while (i < F.nc && (strcmp(F.cdev[i], device) || strcmp(F.cname[i], counter)))
        i++;
    if (i == F.nc && F.nc < 32) {
        snprintf(F.cdev[i], 64, "%s", device);
        snprintf(F.cname[i], 32, "%s", counter);
        F.nc++;
    }
    if (i < 32)
        F.cval[i] += n;
    pthread_mutex_unlock(&F.mu);
}

/* fd watches: what the agent's loop would watch */
struct fwatch {
    bool on;
    int fd, ev;
    mittari_fd_cb cb;
    void *arg;
};
static struct fwatch W[64];

static int f_fd_watch(struct mittari_ctx *ctx, int fd, int events, mittari_fd_cb cb, void *arg,
                      struct mittari_watch **out)
{
    (void)ctx;
    for (int i = 0; i < 64; i++) {
        if (W[i].on)
            continue;
        W[i] = (struct fwatch){true, fd, events, cb, arg};
        *out = (struct mittari_watch *)&W[i];
        return 0;
    }
    return -ENOMEM;
}

static void f_fd_unwatch(struct mittari_watch *w)
{
    ((struct fwatch *)w)->on = false;
}

/* a poll (the engine uses one-shot polls for host-name lookups): its work on
 * a thread of its own, done from the test's loop */
struct fpoll {
    bool used, stopped, joined;
    pthread_t th;
    atomic_int finished;
    mittari_work_cb work;
    mittari_done_cb done;
    void *arg;
    int result;
};
static struct fpoll P[8];
static int polls_started;

static void *fpoll_main(void *arg)
{
    struct fpoll *p = arg;
    p->result = p->work(p->arg);
    atomic_store(&p->finished, 1);
    return NULL;
}

static int f_poll_start(struct mittari_ctx *ctx, uint64_t interval_ms, mittari_work_cb work,
                        mittari_done_cb done, void *arg, struct mittari_poll **out)
{
    (void)ctx;
    (void)interval_ms;
    for (int i = 0; i < 8; i++) {
        if (P[i].used)
            continue;
        P[i] = (struct fpoll){.used = true, .work = work, .done = done, .arg = arg};
        atomic_store(&P[i].finished, 0);
        polls_started++;
        *out = (struct mittari_poll *)&P[i];
        return pthread_create(&P[i].th, NULL, fpoll_main, &P[i]) ? -EAGAIN : 0;
    }
    return -ENOMEM;
}

static void f_poll_stop(struct mittari_poll *p)
{
    ((struct fpoll *)p)->stopped = true;
}

static const struct mittari_host host = {
    .abi_version = MITTARI_ABI_VERSION,
    .size = sizeof(struct mittari_host),
    .emit = f_emit,
    .log = f_log,
    .now = f_now,
    .fd_watch = f_fd_watch,
    .fd_unwatch = f_fd_unwatch,
    .poll_start = f_poll_start,
    .poll_stop = f_poll_stop,
    .set_health = f_health,
    .count = f_count,
};

static uint64_t counted(const char *dev, const char *name)
{
    for (size_t i = 0; i < F.nc; i++)
        if (!strcmp(F.cdev[i], dev) && !strcmp(F.cname[i], name))
            return F.cval[i];
    return 0;
}

static int health(const char *dev)
{
    for (int i = 0; i < 8; i++)
        if (!strcmp(F.hdev[i], dev))
            return F.health[i];
    return -1;
}

static const struct rec *last(const char *dev, const char *metric)
{
    for (size_t i = F.n; i-- > 0;)
        if (!strcmp(F.r[i].device, dev) && !strcmp(F.r[i].metric, metric))
            return &F.r[i];
    return NULL;
}

/* ---- the simulator in a thread ---- */

struct simrun {
    struct sim *s;
    pthread_t th;
    atomic_int stop;
};

static struct simrun SR;

static void *sim_thread(void *arg)
{
    (void)arg;
    while (!atomic_load(&SR.stop))
        sim_step(SR.s, 20);
    return NULL;
}

static void sim_do(const char *fmt, ...)
{
    char line[512], err[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    sim_lock(SR.s);
    int rc = sim_command(SR.s, line, err, sizeof(err));
    sim_unlock(SR.s);
    if (rc)
        fail_msg("sim: %s: %s", line, err);
}

static uint64_t sim_received(const char *dev)
{
    uint64_t rx, ans;
    bool pend;
    sim_lock(SR.s);
    assert_int_equal(sim_requests(SR.s, dev, &rx, &ans, &pend), 0);
    sim_unlock(SR.s);
    return rx;
}

static int setup(void **st)
{
    (void)st;
    memset(&F, 0, sizeof(F));
    memset(W, 0, sizeof(W));
    memset(P, 0, sizeof(P));
    polls_started = 0;
    pthread_mutex_init(&F.mu, NULL);
    SR.s = sim_new(7, 10000); /* counters only move when a test says so */
    atomic_store(&SR.stop, 0);
    return pthread_create(&SR.th, NULL, sim_thread, NULL);
}

static int teardown(void **st)
{
    (void)st;
    atomic_store(&SR.stop, 1);
    pthread_join(SR.th, NULL);
    sim_free(SR.s);
    pthread_mutex_destroy(&F.mu);
    return 0;
}

/* ---- building links from YAML through the real option machinery ---- */

#define SEC 1000000LL

struct built {
    void *conf;
    struct mb_link **links;
    size_t n;
    bool planned;
};

/* the engine's clock: the time a test says, plus the real time since */
static int64_t BASE, T0;

static int64_t mono(void)
{
    return mb_mono_us(NULL);
}

static int64_t test_clock(void *arg)
{
    (void)arg;
    return BASE + (mono() - T0);
}

static int build(struct built *b, const char *yaml)
{
    const struct mittari_plugin *p = mittari_plugin_entry();
    b->conf = tu_options(p->options, p->config_size, yaml);
    b->planned = false;
    int rc = mb_links_build(&host, NULL, b->conf, &b->links, &b->n);
    for (size_t i = 0; rc == 0 && i < b->n; i++)
        mb_link_set_clock(b->links[i], test_clock, NULL);
    return rc;
}

/* One round of the agent's loop: watched descriptors, finished lookups. */
static void loop_once(int timeout_ms)
{
    struct pollfd pf[64];
    int idx[64], n = 0;
    for (int i = 0; i < 64; i++) {
        if (!W[i].on)
            continue;
        pf[n] = (struct pollfd){.fd = W[i].fd,
                                .events = (short)((W[i].ev & MITTARI_FD_READ ? POLLIN : 0) |
                                                  (W[i].ev & MITTARI_FD_WRITE ? POLLOUT : 0))};
        idx[n++] = i;
    }
    int rc = poll(pf, (nfds_t)n, timeout_ms);
    for (int k = 0; rc > 0 && k < n; k++) {
        struct fwatch *w = &W[idx[k]];
        int ev = (pf[k].revents & POLLIN ? MITTARI_FD_READ : 0) |
                 (pf[k].revents & POLLOUT ? MITTARI_FD_WRITE : 0) |
                 (pf[k].revents & (POLLERR | POLLHUP) ? MITTARI_FD_ERROR : 0);
        if (ev && w->on && w->fd == pf[k].fd)
            w->cb(w->arg, w->fd, ev);
    }
    for (int i = 0; i < 8; i++) {
        if (!P[i].used || P[i].joined || !atomic_load(&P[i].finished))
            continue;
        pthread_join(P[i].th, NULL);
        P[i].joined = true;
        if (!P[i].stopped && P[i].done)
            P[i].done(P[i].arg, P[i].result);
        P[i].used = false;
    }
}

static bool lookups_running(void)
{
    for (int i = 0; i < 8; i++)
        if (P[i].used && !P[i].joined)
            return true;
    return false;
}

/* What the agent does at `now` (the engine's clock): RTU links run their
 * work; TCP links tick, and the loop runs until they are idle again. */
static void run_at(struct built *b, int64_t now)
{
    BASE = now;
    T0 = mono();
    if (!b->planned)
        mb_tcp_plan(b->links, b->n, now);
    b->planned = true;
    for (size_t i = 0; i < b->n; i++) {
        if (mb_link_is_rtu(b->links[i]))
            mb_link_run_at(b->links[i], now);
        else
            mb_tcp_tick(b->links[i], now);
    }
    for (int64_t end = mono() + 20 * SEC; mono() < end;) {
        bool busy = lookups_running();
        for (size_t i = 0; i < b->n; i++) {
            struct mb_link *l = b->links[i];
            if (mb_link_is_rtu(l) || mb_tcp_idle(l))
                continue;
            busy = true;
            if (mb_tcp_next(l) <= test_clock(NULL))
                mb_tcp_tick(l, test_clock(NULL));
        }
        if (!busy)
            return;
        loop_once(5);
    }
    fail_msg("the TCP links did not finish");
}

static void unbuild(struct built *b)
{
    for (size_t i = 0; i < b->n; i++)
        mb_link_free(b->links[i]);
    for (int i = 0; i < 64; i++)
        assert_false(W[i].on); /* every watch was let go before its close */
    free(b->links);
    tu_options_free(b->conf);
}

static int port_of(const char *dev)
{
    sim_lock(SR.s);
    int p = sim_port(SR.s, dev);
    sim_unlock(SR.s);
    return p;
}

/* ---- cases ---- */

static void tcp_counter_gauge_and_merge(void **st)
{
    (void)st;
    struct built b;
    char y[1024];
    sim_do("tcp d1");
    sim_do("counter d1 fn=holding addr=0 type=u32 order=CDAB start=4294967000 step=0");
    sim_do("counter d1 fn=holding addr=2 type=u16 order=AB start=7 step=0");
    sim_do("value d1 fn=input addr=10 type=f32 order=ABCD value=21.5");
    snprintf(y, sizeof(y),
             "{devices: [{name: d1, host: 127.0.0.1, port: %d, order: CDAB, registers: ["
             "{metric: visitors, address: 0, type: u32, kind: cumulative},"
             "{metric: small, address: 2, type: u16, kind: cumulative},"
             "{metric: temp, function: input, address: 10, type: f32, order: ABCD, scale: 2,"
             " offset: 1}]}]}",
             port_of("d1"));
    assert_int_equal(build(&b, y), 0);
    assert_int_equal(b.n, 1);
    int64_t before = wall_us();
    run_at(&b, 1 * SEC);
    int64_t after = wall_us();
    const struct rec *v = last("d1", "visitors"), *sm = last("d1", "small"), *t = last("d1", "temp");
    assert_non_null(v);
    assert_non_null(sm);
    assert_non_null(t);
    assert_int_equal(v->kind, MITTARI_KIND_CUMULATIVE);
    assert_true(v->counter == 4294967000ull);
    assert_int_equal(v->bits, 32);
    assert_int_equal(sm->counter, 7);
    assert_int_equal(sm->bits, 16);
    assert_int_equal(t->kind, MITTARI_KIND_GAUGE);
    assert_true(t->value == 21.5 * 2 + 1);
    assert_true(v->ts >= before && v->ts <= after); /* when the answer came */
    /* holding 0-2 in one read, input 10 in another */
    assert_int_equal(sim_received("d1"), 2);
    assert_int_equal(health("d1"), MITTARI_HEALTH_UP);
    /* not due again before its interval */
    run_at(&b, 1 * SEC + 200000);
    assert_int_equal(sim_received("d1"), 2);
    run_at(&b, 2 * SEC);
    assert_int_equal(sim_received("d1"), 4);
    unbuild(&b);
}

static void exceptions_degrade_then_down_then_recover(void **st)
{
    (void)st;
    struct built b;
    char y[512];
    sim_do("tcp d2");
    sim_do("counter d2 fn=holding addr=0 type=u16 start=5 step=0");
    snprintf(y, sizeof(y),
             "{devices: [{name: d2, host: 127.0.0.1, port: %d, down_after: 2, backoff_max: 4s,"
             " registers: [{metric: v, address: 0, kind: cumulative}]}]}",
             port_of("d2"));
    assert_int_equal(build(&b, y), 0);
    sim_do("exception d2 2");
    run_at(&b, 1 * SEC);
    assert_int_equal(counted("d2", "exceptions"), 1);
    assert_int_equal(health("d2"), MITTARI_HEALTH_DEGRADED);
    run_at(&b, 2 * SEC);
    assert_int_equal(health("d2"), MITTARI_HEALTH_DOWN);
    assert_non_null(strstr(F.reason[0], "exception 2"));
    /* down: asked again only after the backoff (1 s, then 2 s ...) */
    uint64_t rx = sim_received("d2");
    run_at(&b, 2 * SEC + 500000);
    assert_int_equal(sim_received("d2"), rx);
    sim_do("exception d2 off");
    run_at(&b, 3 * SEC + 100000);
    assert_int_equal(sim_received("d2"), rx + 1);
    assert_int_equal(health("d2"), MITTARI_HEALTH_UP);
    assert_int_equal(last("d2", "v")->counter, 5);
    unbuild(&b);
}

static void timeouts_counted_and_connection_renewed(void **st)
{
    (void)st;
    struct built b;
    char y[512];
    sim_do("tcp d3");
    sim_do("counter d3 fn=holding addr=0 type=u16 start=9 step=0");
    snprintf(y, sizeof(y),
             "{devices: [{name: d3, host: 127.0.0.1, port: %d, response_timeout: 100ms,"
             " registers: [{metric: v, address: 0, kind: cumulative}]}]}",
             port_of("d3"));
    assert_int_equal(build(&b, y), 0);
    run_at(&b, 1 * SEC);
    assert_int_equal(health("d3"), MITTARI_HEALTH_UP);
    sim_do("mute d3 on");
    run_at(&b, 2 * SEC);
    assert_int_equal(counted("d3", "timeouts"), 1);
    assert_int_equal(health("d3"), MITTARI_HEALTH_DEGRADED);
    sim_do("mute d3 off");
    run_at(&b, 3 * SEC);
    assert_int_equal(health("d3"), MITTARI_HEALTH_UP);
    /* a TCP timeout closes the connection: a late answer must not be
     * taken for the next request's */
    assert_int_equal(counted("d3", "reconnects"), 1);
    assert_int_equal(last("d3", "v")->counter, 9);
    unbuild(&b);
}

static void refused_then_available_with_backoff(void **st)
{
    (void)st;
    struct built b;
    char y[512];
    sim_do("tcp d4 down");
    sim_do("counter d4 fn=holding addr=0 type=u16 start=3 step=0");
    snprintf(y, sizeof(y),
             "{devices: [{name: d4, host: 127.0.0.1, port: %d, backoff_max: 8s,"
             " registers: [{metric: v, address: 0, kind: cumulative}]}]}",
             port_of("d4"));
    assert_int_equal(build(&b, y), 0);
    run_at(&b, 1 * SEC);
    assert_int_equal(counted("d4", "connect_errors"), 1);
    assert_int_equal(health("d4"), MITTARI_HEALTH_DOWN);
    assert_non_null(strstr(F.reason[0], "refused"));
    run_at(&b, 2 * SEC); /* due, but the link waits 1 s from 1 s: try */
    assert_int_equal(counted("d4", "connect_errors"), 2);
    run_at(&b, 3 * SEC); /* backoff now 2 s: not yet */
    assert_int_equal(counted("d4", "connect_errors"), 2);
    sim_do("up d4");
    run_at(&b, 4 * SEC);
    assert_int_equal(counted("d4", "connect_errors"), 2);
    assert_int_equal(health("d4"), MITTARI_HEALTH_UP);
    assert_int_equal(last("d4", "v")->counter, 3);
    unbuild(&b);
}

static void rtu_bus_two_units_and_a_bad_crc(void **st)
{
    (void)st;
    struct built b;
    char y[1024];
    sim_do("rtu u1 path=auto unit=1");
    sim_do("rtu u2 join=u1 unit=2");
    sim_do("counter u1 fn=input addr=0 type=u32 order=ABCD start=70000 step=0");
    sim_do("counter u2 fn=input addr=0 type=u32 order=ABCD start=80000 step=0");
    sim_lock(SR.s);
    char path[256];
    snprintf(path, sizeof(path), "%s", sim_path(SR.s, "u1"));
    sim_unlock(SR.s);
    snprintf(y, sizeof(y),
             "{devices: ["
             "{name: u1, serial: '%s', unit: 1, baud: 19200, response_timeout: 200ms,"
             " registers: [{metric: v, function: input, address: 0, type: u32, kind: cumulative}]},"
             "{name: u2, serial: '%s', unit: 2, baud: 19200, response_timeout: 200ms,"
             " registers: [{metric: v, function: input, address: 0, type: u32, kind: cumulative}]}"
             "]}",
             path, path);
    assert_int_equal(build(&b, y), 0);
    assert_int_equal(b.n, 1); /* one bus */
    run_at(&b, 1 * SEC);
    assert_int_equal(last("u1", "v")->counter, 70000);
    assert_int_equal(last("u2", "v")->counter, 80000);
    sim_do("crc u1 on");
    run_at(&b, 2 * SEC);
    assert_int_equal(counted("u1", "crc_errors"), 1);
    assert_int_equal(health("u1"), MITTARI_HEALTH_DEGRADED);
    assert_int_equal(health("u2"), MITTARI_HEALTH_UP); /* the other unit is fine */
    assert_int_equal(sim_received("u2"), 2);
    unbuild(&b);
}

static void reset_after_read_counts_each_pass_once(void **st)
{
    (void)st;
    struct built b;
    char y[512];
    sim_do("tcp d5");
    sim_do("counter d5 fn=holding addr=0 type=u16 start=4 step=0 clear_coil=7");
    snprintf(y, sizeof(y),
             "{devices: [{name: d5, host: 127.0.0.1, port: %d, registers: [{metric: v, address: 0,"
             " kind: delta, reset_after_read: true, reset_function: coil, reset_address: 7}]}]}",
             port_of("d5"));
    assert_int_equal(build(&b, y), 0);
    run_at(&b, 1 * SEC);
    assert_true(last("d5", "v")->value == 4);
    uint64_t value, total, rf;
    sim_lock(SR.s);
    sim_counter(SR.s, "d5", 0, &value, &total, &rf);
    sim_unlock(SR.s);
    assert_int_equal(value, 0); /* cleared */
    size_t n = F.n;
    run_at(&b, 2 * SEC);
    assert_int_equal(F.n, n + 1);
    assert_true(last("d5", "v")->value == 0);
    unbuild(&b);
}

static void bad_maps_are_refused(void **st)
{
    (void)st;
    struct built b;
    /* a 16-bit register in a 32-bit order */
    assert_int_equal(build(&b, "{devices: [{name: a, host: h, registers: [{metric: m, address: 0,"
                               " order: ABCD}]}]}"),
                     MITTARI_ECONFIG);
    tu_options_free(b.conf);
    /* a signed counter */
    assert_int_equal(build(&b, "{devices: [{name: a, host: h, registers: [{metric: m, address: 0,"
                               " type: i32, kind: cumulative}]}]}"),
                     MITTARI_ECONFIG);
    tu_options_free(b.conf);
    /* host and serial */
    assert_int_equal(build(&b, "{devices: [{name: a, host: h, serial: /dev/x, registers: ["
                               "{metric: m, address: 0}]}]}"),
                     MITTARI_ECONFIG);
    tu_options_free(b.conf);
    /* one bus, two baud rates */
    assert_int_equal(build(&b, "{devices: [{name: a, serial: /dev/x, unit: 1, registers: ["
                               "{metric: m, address: 0}]}, {name: b, serial: /dev/x, unit: 2,"
                               " baud: 19200, registers: [{metric: m, address: 0}]}]}"),
                     MITTARI_ECONFIG);
    tu_options_free(b.conf);
    /* a u64 on a device that reads 2 registers a request */
    assert_int_equal(build(&b, "{devices: [{name: a, host: h, max_registers: 2, registers: ["
                               "{metric: m, address: 0, type: u64}]}]}"),
                     MITTARI_ECONFIG);
    tu_options_free(b.conf);
    /* a u32 at 65535 */
    assert_int_equal(build(&b, "{devices: [{name: a, host: h, registers: [{metric: m, "
                               "address: 65535, type: u32}]}]}"),
                     MITTARI_ECONFIG);
    tu_options_free(b.conf);
    /* and a good one builds: two devices on one TCP gateway share a link */
    assert_int_equal(build(&b, "{devices: [{name: a, host: h, unit: 1, registers: [{metric: m, "
                               "address: 0}]}, {name: b, host: h, unit: 2, poll_interval: 1500ms,"
                               " registers: [{metric: m, address: 0}]}]}"),
                     0);
    assert_int_equal(b.n, 1);
    assert_int_equal(mb_link_tick_ms(b.links[0]), 500);
    unbuild(&b);
}

static const char *rtu_path(const char *dev)
{
    static char path[256];
    sim_lock(SR.s);
    snprintf(path, sizeof(path), "%s", sim_path(SR.s, dev));
    sim_unlock(SR.s);
    return path;
}

/* Issue 15, item 9: a device that drips its answer one byte every 100 ms
 * (a 40-register read: 89 bytes, ~9 s) is given up after response_timeout
 * (300 ms), not after the whole answer or a byte timeout per byte. */
static void tcp_answer_bounded_by_response_timeout(void **st)
{
    (void)st;
    struct built b;
    char y[512];
    sim_do("tcp slow");
    sim_do("counter slow fn=holding addr=0 type=u16 start=1 step=0");
    snprintf(y, sizeof(y),
             "{devices: [{name: slow, host: 127.0.0.1, port: %d, response_timeout: 300ms,"
             " merge_gap: 38, registers: [{metric: a, address: 0}, {metric: b, address: 39}]}]}",
             port_of("slow"));
    assert_int_equal(build(&b, y), 0);
    sim_do("drip slow 100");
    int64_t t = mono();
    run_at(&b, 1 * SEC);
    int64_t took = mono() - t;
    assert_int_equal(sim_received("slow"), 1); /* one read of 40 registers */
    assert_int_equal(counted("slow", "timeouts"), 1);
    assert_int_equal(health("slow"), MITTARI_HEALTH_DEGRADED);
    assert_true(took < 3 * SEC); /* the whole answer would take 8.9 s */
    unbuild(&b);
}

static void rtu_answer_bounded_by_response_timeout(void **st)
{
    (void)st;
    struct built b;
    char y[512];
    sim_do("rtu slow path=auto unit=3");
    sim_do("counter slow fn=holding addr=0 type=u16 start=1 step=0");
    snprintf(y, sizeof(y),
             "{devices: [{name: slow, serial: '%s', unit: 3, baud: 19200, response_timeout: 300ms,"
             " merge_gap: 38, registers: [{metric: a, address: 0}, {metric: b, address: 39}]}]}",
             rtu_path("slow"));
    assert_int_equal(build(&b, y), 0);
    sim_do("drip slow 100");
    int64_t t = mono();
    run_at(&b, 1 * SEC);
    int64_t took = mono() - t;
    assert_int_equal(counted("slow", "timeouts"), 1);
    assert_true(took < 3 * SEC); /* libmodbus's byte timeout restarts per byte: 8.9 s */
    unbuild(&b);
}

/* Issue 15, item 10: exception code 0 is an answer of the device, not a
 * broken connection: counted as an exception, the connection stays. */
static void tcp_exception_0_keeps_the_connection(void **st)
{
    (void)st;
    struct built b;
    char y[512];
    sim_do("tcp e0");
    sim_do("counter e0 fn=holding addr=0 type=u16 start=5 step=0");
    snprintf(y, sizeof(y),
             "{devices: [{name: e0, host: 127.0.0.1, port: %d, registers: [{metric: v, address: 0,"
             " kind: cumulative}]}]}",
             port_of("e0"));
    assert_int_equal(build(&b, y), 0);
    sim_do("exception e0 0");
    run_at(&b, 1 * SEC);
    run_at(&b, 2 * SEC);
    assert_int_equal(counted("e0", "exceptions"), 2);
    assert_int_equal(counted("e0", "connection_errors"), 0);
    assert_non_null(strstr(F.reason[0], "exception 0"));
    sim_do("exception e0 off");
    run_at(&b, 3 * SEC);
    assert_int_equal(health("e0"), MITTARI_HEALTH_UP);
    assert_int_equal(counted("e0", "reconnects"), 0); /* one connection all along */
    unbuild(&b);
}

static void rtu_exception_0_keeps_the_bus_open(void **st)
{
    (void)st;
    struct built b;
    char y[1024];
    sim_do("rtu r1 path=auto unit=1");
    sim_do("rtu r2 join=r1 unit=2");
    sim_do("counter r1 fn=holding addr=0 type=u16 start=1 step=0");
    sim_do("counter r2 fn=holding addr=0 type=u16 start=2 step=0");
    const char *path = rtu_path("r1");
    snprintf(y, sizeof(y),
             "{devices: ["
             "{name: r1, serial: '%s', unit: 1, baud: 19200, registers: [{metric: v, address: 0}]},"
             "{name: r2, serial: '%s', unit: 2, baud: 19200, registers: [{metric: v, address: 0}]}"
             "]}",
             path, path);
    assert_int_equal(build(&b, y), 0);
    sim_do("exception r1 0");
    run_at(&b, 1 * SEC);
    assert_int_equal(counted("r1", "exceptions"), 1);
    assert_int_equal(counted("r1", "connection_errors"), 0);
    assert_int_equal(health("r2"), MITTARI_HEALTH_UP);
    /* the port stayed open for the other unit on the bus */
    assert_int_equal(counted("r2", "reconnects"), 0);
    assert_true(last("r2", "v")->value == 2);
    unbuild(&b);
}

/* Units behind one TCP gateway: one connection, asked one after the other. */
static void tcp_gateway_units_share_a_connection(void **st)
{
    (void)st;
    struct built b;
    char y[1024];
    sim_do("tcp gw");
    sim_do("counter gw fn=holding addr=0 type=u16 start=7 step=0");
    int p = port_of("gw");
    snprintf(y, sizeof(y),
             "{devices: ["
             "{name: g1, host: 127.0.0.1, port: %d, unit: 1, registers: [{metric: v, address: 0}]},"
             "{name: g2, host: 127.0.0.1, port: %d, unit: 2, registers: [{metric: v, address: 0}]}"
             "]}",
             p, p);
    assert_int_equal(build(&b, y), 0);
    assert_int_equal(b.n, 1);
    run_at(&b, 1 * SEC); /* both due in one step: asked one after the other */
    assert_non_null(last("g1", "v"));
    assert_non_null(last("g2", "v"));
    assert_int_equal(sim_received("gw"), 2);
    run_at(&b, 2 * SEC);
    assert_int_equal(sim_received("gw"), 4);
    assert_int_equal(counted("g1", "reconnects") + counted("g2", "reconnects"), 0);
    unbuild(&b);
}

/* A host name is looked up on a worker (the loop never waits for DNS). */
static void host_name_looked_up_on_a_worker(void **st)
{
    (void)st;
    struct built b;
    char y[512];
    sim_do("tcp named");
    sim_do("counter named fn=holding addr=0 type=u16 start=11 step=0");
    snprintf(y, sizeof(y),
             "{devices: [{name: named, host: localhost, port: %d, registers: [{metric: v,"
             " address: 0}]}]}",
             port_of("named"));
    assert_int_equal(build(&b, y), 0);
    assert_int_equal(polls_started, 0);
    run_at(&b, 1 * SEC);
    assert_int_equal(polls_started, 1);
    assert_true(last("named", "v")->value == 11);
    assert_int_equal(health("named"), MITTARI_HEALTH_UP);
    unbuild(&b);
}

/* A stop while a lookup runs on a worker: the lookup's end must not revive
 * the link (the agent runs no done callback after poll_stop; the link must
 * have called it). */
static void stop_while_looking_up(void **st)
{
    (void)st;
    struct built b;
    char y[512];
    sim_do("tcp named2");
    sim_do("counter named2 fn=holding addr=0 type=u16 start=1 step=0");
    snprintf(y, sizeof(y),
             "{devices: [{name: named2, host: localhost, port: %d, registers: [{metric: v,"
             " address: 0}]}]}",
             port_of("named2"));
    assert_int_equal(build(&b, y), 0);
    BASE = 1 * SEC;
    T0 = mono();
    mb_tcp_plan(b.links, b.n, BASE);
    b.planned = true;
    mb_tcp_tick(b.links[0], BASE);
    assert_int_equal(polls_started, 1);
    mb_tcp_stop(b.links[0]);
    while (lookups_running())
        loop_once(5);
    assert_true(P[0].stopped);
    for (int i = 0; i < 64; i++)
        assert_false(W[i].on);
    assert_int_equal(sim_received("named2"), 0);
    assert_int_equal(F.n, 0);
    unbuild(&b);
}

/* A device still being asked when its next poll is due skips that poll. */
static void busy_device_skips_a_poll(void **st)
{
    (void)st;
    struct built b;
    char y[512];
    sim_do("tcp lag");
    sim_do("counter lag fn=holding addr=0 type=u16 start=1 step=0");
    snprintf(y, sizeof(y),
             "{devices: [{name: lag, host: 127.0.0.1, port: %d, response_timeout: 5s,"
             " registers: [{metric: v, address: 0}]}]}",
             port_of("lag"));
    assert_int_equal(build(&b, y), 0);
    sim_do("delay lag 600");
    BASE = 1 * SEC;
    T0 = mono();
    mb_tcp_plan(b.links, b.n, BASE);
    b.planned = true;
    mb_tcp_tick(b.links[0], BASE);
    for (int64_t end = mono() + 5 * SEC; sim_received("lag") == 0 && mono() < end;)
        loop_once(5); /* connected, the request went out */
    assert_false(mb_tcp_idle(b.links[0]));
    mb_tcp_tick(b.links[0], 2 * SEC); /* due again: the answer is not in */
    assert_int_equal(counted("lag", "polls_skipped"), 1);
    assert_int_equal(sim_received("lag"), 1);
    run_at(&b, 2 * SEC + 100000); /* the loop until the late answer came */
    assert_true(last("lag", "v")->value == 1);
    unbuild(&b);
}

static void build_n(struct built *b, int n, const char *extra)
{
    size_t cap = 200 + (size_t)n * 160, len = 0;
    char *y = malloc(cap);
    assert_non_null(y);
    len += (size_t)snprintf(y + len, cap - len, "{devices: [");
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(y + len, cap - len,
                                "%s{name: g%d, host: 127.0.0.1, port: %d, %s registers: [{metric: v,"
                                " address: 0}]}",
                                i ? "," : "", i, 1000 + i, i ? "" : extra);
    snprintf(y + len, cap - len, "]}");
    assert_int_equal(build(b, y), 0);
    free(y);
}

/* A poll that times out just as its device is due again ends first: the
 * next poll goes out, not counted as skipped. */
static void timeout_at_the_next_poll(void **st)
{
    (void)st;
    struct built b;
    char y[512];
    sim_do("tcp mute2");
    sim_do("counter mute2 fn=holding addr=0 type=u16 start=1 step=0");
    sim_do("mute mute2 on");
    snprintf(y, sizeof(y),
             "{devices: [{name: mute2, host: 127.0.0.1, port: %d, response_timeout: 1s,"
             " registers: [{metric: v, address: 0}]}]}",
             port_of("mute2"));
    assert_int_equal(build(&b, y), 0);
    BASE = 1 * SEC;
    T0 = mono();
    mb_tcp_plan(b.links, b.n, BASE);
    b.planned = true;
    mb_tcp_tick(b.links[0], BASE);
    for (int64_t end = mono() + 5 * SEC; sim_received("mute2") == 0 && mono() < end;)
        loop_once(5);
    mb_tcp_tick(b.links[0], 2 * SEC + 100000); /* past the deadline, and due */
    assert_int_equal(counted("mute2", "timeouts"), 1);
    assert_int_equal(counted("mute2", "polls_skipped"), 0);
    assert_false(mb_tcp_idle(b.links[0])); /* the next poll is on its way */
    mb_tcp_stop(b.links[0]);
    unbuild(&b);
}

/* The grid: wakes at most every quarter of the shortest interval (250 ms
 * for 1 s); devices spread over up to four phases, one per 32 devices, so a
 * few devices share one wake (and one commit) an interval. */
static void polls_share_grid_steps(void **st)
{
    (void)st;
    struct built b;
    build_n(&b, 8, "");
    mb_tcp_plan(b.links, b.n, 10 * SEC);
    assert_int_equal(mb_tcp_grid_us(b.links[0]), 250000);
    for (size_t i = 0; i < b.n; i++) /* 8 devices: one phase */
        assert_int_equal(mb_tcp_next(b.links[i]), 10 * SEC);
    unbuild(&b);
    build_n(&b, 40, ""); /* two phases: 0 and 500 ms */
    mb_tcp_plan(b.links, b.n, 10 * SEC);
    for (size_t i = 0; i < b.n; i++)
        assert_int_equal(mb_tcp_next(b.links[i]), 10 * SEC + (i < 20 ? 0 : 500000));
    unbuild(&b);
    build_n(&b, 200, ""); /* four phases of 50 */
    mb_tcp_plan(b.links, b.n, 10 * SEC);
    for (size_t i = 0; i < b.n; i++)
        assert_int_equal(mb_tcp_next(b.links[i]), 10 * SEC + (int64_t)(i / 50) * 250000);
    unbuild(&b);
    /* a device at 200 ms makes the grid finer for all */
    build_n(&b, 2, "poll_interval: 200ms,");
    mb_tcp_plan(b.links, b.n, 0);
    assert_int_equal(mb_tcp_grid_us(b.links[1]), 50000);
    unbuild(&b);
}

/* ---- configuration checks ---- */

struct seen {
    char path[8][96], msg[8][400];
    int n;
};

static void chk_error(const struct mittari_checker *chk, const char *path, const char *fmt, ...)
{
    struct seen *s = chk->ctx;
    va_list ap;
    if (s->n >= 8)
        return;
    snprintf(s->path[s->n], sizeof(s->path[0]), "%s", path ? path : "");
    va_start(ap, fmt);
    vsnprintf(s->msg[s->n], sizeof(s->msg[0]), fmt, ap);
    va_end(ap);
    s->n++;
}

static int checked(const char *yaml, struct seen *s)
{
    const struct mittari_plugin *p = mittari_plugin_entry();
    void *conf = tu_options(p->options, p->config_size, yaml);
    struct mittari_checker chk = {.ctx = s, .error = chk_error};
    memset(s, 0, sizeof(*s));
    int n = p->check(conf, &chk);
    tu_options_free(conf);
    return n;
}

/* Issue 8, section 5: two registers of one device with one metric would
 * feed one series; check names both, so each gets its file:line. */
static void one_metric_twice_is_refused_at_both(void **st)
{
    (void)st;
    struct seen s;
    assert_int_equal(checked("{devices: [{name: d, host: h, registers: ["
                             "{metric: a, address: 0, kind: cumulative},"
                             "{metric: b, address: 1},"
                             "{metric: a, address: 2, kind: cumulative}]}]}",
                             &s),
                     2);
    assert_string_equal(s.path[0], "devices[0].registers[0].metric");
    assert_string_equal(s.path[1], "devices[0].registers[2].metric");
    assert_non_null(strstr(s.msg[0], "registers 1 and 3 both give metric a"));
    /* the same metric on two devices is two series */
    assert_int_equal(checked("{devices: [{name: d, host: h, registers: [{metric: a, address: 0}]},"
                             " {name: e, host: h, unit: 2, registers: [{metric: a, address: 0}]}]}",
                             &s),
                     0);
    /* create refuses what check refuses */
    struct built b;
    assert_int_equal(build(&b, "{devices: [{name: d, host: h, registers: [{metric: a, address: 0},"
                               " {metric: a, address: 1}]}]}"),
                     MITTARI_ECONFIG);
    tu_options_free(b.conf);
}

/* Issue 8, section 7: an empty serial path made libmodbus refuse create()
 * while check passed. */
static void empty_serial_or_host_refused_by_check(void **st)
{
    (void)st;
    struct seen s;
    assert_int_equal(checked("{devices: [{name: d, serial: '', registers: [{metric: a, address: 0}]}]}",
                             &s),
                     1);
    assert_string_equal(s.path[0], "devices[0].serial");
    assert_int_equal(checked("{devices: [{name: d, host: '', registers: [{metric: a, address: 0}]}]}",
                             &s),
                     1);
    assert_string_equal(s.path[0], "devices[0].host");
}

static void frame_delay(void **st)
{
    (void)st;
    /* 3.5 characters of 11 bits at 9600 baud = 4.01 ms (DEVICES.md) */
    assert_int_equal(mb_frame_delay_us(9600, 8, MB_PARITY_EVEN, 1), 4011);
    assert_int_equal(mb_frame_delay_us(9600, 8, MB_PARITY_NONE, 2), 4011);
    assert_int_equal(mb_frame_delay_us(115200, 8, MB_PARITY_EVEN, 1), 1750);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(tcp_counter_gauge_and_merge, setup, teardown),
        cmocka_unit_test_setup_teardown(exceptions_degrade_then_down_then_recover, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(timeouts_counted_and_connection_renewed, setup, teardown),
        cmocka_unit_test_setup_teardown(refused_then_available_with_backoff, setup, teardown),
        cmocka_unit_test_setup_teardown(rtu_bus_two_units_and_a_bad_crc, setup, teardown),
        cmocka_unit_test_setup_teardown(reset_after_read_counts_each_pass_once, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_maps_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(tcp_answer_bounded_by_response_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(rtu_answer_bounded_by_response_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(tcp_exception_0_keeps_the_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(rtu_exception_0_keeps_the_bus_open, setup, teardown),
        cmocka_unit_test_setup_teardown(tcp_gateway_units_share_a_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(host_name_looked_up_on_a_worker, setup, teardown),
        cmocka_unit_test_setup_teardown(stop_while_looking_up, setup, teardown),
        cmocka_unit_test_setup_teardown(busy_device_skips_a_poll, setup, teardown),
        cmocka_unit_test_setup_teardown(timeout_at_the_next_poll, setup, teardown),
        cmocka_unit_test_setup_teardown(polls_share_grid_steps, setup, teardown),
        cmocka_unit_test(one_metric_twice_is_refused_at_both),
        cmocka_unit_test(empty_serial_or_host_refused_by_check),
        cmocka_unit_test(frame_delay),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
