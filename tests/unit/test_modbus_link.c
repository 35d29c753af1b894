/* The Modbus polling engine (plugins/modbus/link.c) against the simulator
 * (tests/modbus/simdev.c) in a thread of this process: real libmodbus on
 * both ends, TCP on 127.0.0.1 and RTU over a pty. A fake host records what
 * the engine emits, counts and reports as health; the engine's clock is
 * driven by the test, so backoff is checked without waiting for it. */
#include "testutil.h"

#include <errno.h>
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

static const struct mittari_host host = {
    .abi_version = MITTARI_ABI_VERSION,
    .size = sizeof(struct mittari_host),
    .emit = f_emit,
    .log = f_log,
    .now = f_now,
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

struct built {
    void *conf;
    struct mb_link **links;
    size_t n;
};

static int build(struct built *b, const char *yaml)
{
    const struct mittari_plugin *p = mittari_plugin_entry();
    b->conf = tu_options(p->options, p->config_size, yaml);
    return mb_links_build(&host, NULL, b->conf, &b->links, &b->n);
}

static void unbuild(struct built *b)
{
    for (size_t i = 0; i < b->n; i++)
        mb_link_free(b->links[i]);
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

#define SEC 1000000LL

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
    mb_link_run_at(b.links[0], 1 * SEC);
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
    mb_link_run_at(b.links[0], 1 * SEC + 200000);
    assert_int_equal(sim_received("d1"), 2);
    mb_link_run_at(b.links[0], 2 * SEC);
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
    mb_link_run_at(b.links[0], 1 * SEC);
    assert_int_equal(counted("d2", "exceptions"), 1);
    assert_int_equal(health("d2"), MITTARI_HEALTH_DEGRADED);
    mb_link_run_at(b.links[0], 2 * SEC);
    assert_int_equal(health("d2"), MITTARI_HEALTH_DOWN);
    assert_non_null(strstr(F.reason[0], "exception 2"));
    /* down: asked again only after the backoff (1 s, then 2 s ...) */
    uint64_t rx = sim_received("d2");
    mb_link_run_at(b.links[0], 2 * SEC + 500000);
    assert_int_equal(sim_received("d2"), rx);
    sim_do("exception d2 off");
    mb_link_run_at(b.links[0], 3 * SEC + 100000);
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
    mb_link_run_at(b.links[0], 1 * SEC);
    assert_int_equal(health("d3"), MITTARI_HEALTH_UP);
    sim_do("mute d3 on");
    mb_link_run_at(b.links[0], 2 * SEC);
    assert_int_equal(counted("d3", "timeouts"), 1);
    assert_int_equal(health("d3"), MITTARI_HEALTH_DEGRADED);
    sim_do("mute d3 off");
    mb_link_run_at(b.links[0], 3 * SEC);
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
    mb_link_run_at(b.links[0], 1 * SEC);
    assert_int_equal(counted("d4", "connect_errors"), 1);
    assert_int_equal(health("d4"), MITTARI_HEALTH_DOWN);
    assert_non_null(strstr(F.reason[0], "refused"));
    mb_link_run_at(b.links[0], 2 * SEC); /* due, but the link waits 1 s from 1 s: try */
    assert_int_equal(counted("d4", "connect_errors"), 2);
    mb_link_run_at(b.links[0], 3 * SEC); /* backoff now 2 s: not yet */
    assert_int_equal(counted("d4", "connect_errors"), 2);
    sim_do("up d4");
    mb_link_run_at(b.links[0], 4 * SEC);
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
    mb_link_run_at(b.links[0], 1 * SEC);
    assert_int_equal(last("u1", "v")->counter, 70000);
    assert_int_equal(last("u2", "v")->counter, 80000);
    sim_do("crc u1 on");
    mb_link_run_at(b.links[0], 2 * SEC);
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
    mb_link_run_at(b.links[0], 1 * SEC);
    assert_true(last("d5", "v")->value == 4);
    uint64_t value, total, rf;
    sim_lock(SR.s);
    sim_counter(SR.s, "d5", 0, &value, &total, &rf);
    sim_unlock(SR.s);
    assert_int_equal(value, 0); /* cleared */
    size_t n = F.n;
    mb_link_run_at(b.links[0], 2 * SEC);
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
        cmocka_unit_test(frame_delay),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
