/* The serial plugin on real pseudo terminals, with a fake agent
 * (plugins/common/testhost.c): counters, frames split across reads,
 * garbage, binary noise and over-long frames (counted, logged rate-limited,
 * never a reading), unplug and re-plug, a port missing at start, the
 * pattern and Lua decoders, configuration errors. */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <pty.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testhost.h"

const struct mittari_plugin *mittari_plugin_entry(void);

struct fx {
    struct th t;
    const struct mittari_plugin *p;
    char *dir;
    char *link; /* the configured port: a symlink to the current pty, like by-id */
    int master;
    void *conf;
    void *state;
};

static void plug(struct fx *f)
{
    char path[128], tmp[300];
    int slave;
    assert_int_equal(openpty(&f->master, &slave, path, NULL, NULL), 0);
    close(slave);
    snprintf(tmp, sizeof(tmp), "%s.new", f->link);
    unlink(tmp);
    assert_int_equal(symlink(path, tmp), 0);
    assert_int_equal(rename(tmp, f->link), 0); /* atomic, as udev does */
}

static void unplug(struct fx *f)
{
    close(f->master);
    f->master = -1;
    unlink(f->link);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    f->p = mittari_plugin_entry();
    f->dir = tu_tmpdir();
    f->link = tu_path(f->dir, "usb-Acme_Counter_42-if00-port0");
    f->master = -1;
    th_init(&f->t, "door", true);
    f->t.quiet = true;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    if (f->state) {
        f->p->stop(f->state);
        th_close_all(&f->t);
        f->p->destroy(f->state);
    }
    tu_options_free(f->conf);
    th_free(&f->t);
    if (f->master >= 0)
        close(f->master);
    tu_rmtree(f->dir);
    free(f->link);
    free(f->dir);
    free(f);
    return 0;
}

/* Creates the instance from option text (the port is added) and starts it. */
static int start(struct fx *f, const char *opts)
{
    char yaml[2048];
    snprintf(yaml, sizeof(yaml), "{port: '%s', reopen_interval: 100ms, %s}", f->link, opts);
    f->conf = tu_options(f->p->options, f->p->config_size, yaml);
    int rc = f->p->create(&f->t.host, (struct mittari_ctx *)&f->t, f->conf, &f->state);
    if (rc) {
        f->state = NULL;
        return rc;
    }
    return f->p->start(f->state);
}

static void put(struct fx *f, const char *s, size_t len)
{
    assert_int_equal(write(f->master, s, len), (ssize_t)len);
}

static void sends(struct fx *f, const char *s)
{
    put(f, s, strlen(s));
}

static bool have_n(struct th *t, void *arg)
{
    return t->nr >= *(size_t *)arg;
}

static void wait_readings(struct fx *f, size_t n)
{
    assert_true(th_run_until(&f->t, have_n, &n, 5000));
}

struct cnt {
    const char *name;
    uint64_t want;
};

static bool counter_reached(struct th *t, void *arg)
{
    struct cnt *c = arg;
    return th_counter(t, NULL, c->name) >= c->want;
}

static void wait_counter(struct fx *f, const char *name, uint64_t want)
{
    struct cnt c = {name, want};
    assert_true(th_run_until(&f->t, counter_reached, &c, 5000));
}

static bool health_is(struct th *t, void *arg)
{
    return th_health(t, NULL) == *(int *)arg;
}

static void wait_health(struct fx *f, int h)
{
    assert_true(th_run_until(&f->t, health_is, &h, 5000));
}

#define KV_COUNTERS                                                                                \
    "values: [{field: IN, metric: visitors_in, kind: cumulative, unit: persons},"                  \
    " {field: OUT, metric: visitors_out, kind: cumulative, unit: persons, bits: '16'}]"

static void check_counter(const struct th_reading *r, const char *metric, uint64_t v, unsigned bits)
{
    assert_string_equal(r->metric, metric);
    assert_int_equal(r->kind, MITTARI_KIND_CUMULATIVE);
    assert_int_equal(r->counter, v);
    assert_int_equal(r->bits, bits);
    assert_string_equal(r->device, "door");
    assert_string_equal(r->unit, "persons");
}

static void test_counter_lines(void **state)
{
    struct fx *f = *state;
    plug(f);
    assert_int_equal(start(f, KV_COUNTERS), 0);
    assert_int_equal(th_health(&f->t, NULL), MITTARI_HEALTH_UP);
    sends(f, "IN=12 OUT=9\r\nIN=13 O");
    wait_readings(f, 2);
    th_run_for(&f->t, 50); /* the half line gives nothing yet */
    assert_int_equal(f->t.nr, 2);
    sends(f, "UT=9\r\n");
    wait_readings(f, 4);
    check_counter(&f->t.r[0], "visitors_in", 12, 32);
    check_counter(&f->t.r[1], "visitors_out", 9, 16);
    check_counter(&f->t.r[2], "visitors_in", 13, 32);
    check_counter(&f->t.r[3], "visitors_out", 9, 16);
    assert_int_equal(th_counter(&f->t, NULL, "bad_frames"), 0);
}

/* A line that carries only some of the mapped keys gives those. */
static void test_partial_keys(void **state)
{
    struct fx *f = *state;
    plug(f);
    assert_int_equal(start(f, KV_COUNTERS), 0);
    sends(f, "IN=5\nT=21.5\n");
    wait_counter(f, "ignored_frames", 1);
    assert_int_equal(f->t.nr, 1);
    assert_string_equal(f->t.r[0].metric, "visitors_in");
}

static void test_garbage_counted_never_a_reading(void **state)
{
    struct fx *f = *state;
    plug(f);
    assert_int_equal(start(f, KV_COUNTERS), 0);
    const char *bad[] = {"IN=1x OUT=2\n", "hello\n",  "IN=3 IN=4\n", "IN=70000 OUT=70000\n",
                         "IN=-1\n",       "IN=1.5\n", "IN OUT\n"};
    for (int round = 0; round < 10; round++)
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
            sends(f, bad[i]);
    /* binary noise, with NUL bytes and line ends inside */
    uint8_t noise[512];
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < sizeof(noise); i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        noise[i] = (uint8_t)x;
        if (noise[i] == '=') /* noise that happens to be KEY=VALUE is a frame */
            noise[i] = '#';
    }
    put(f, (const char *)noise, sizeof(noise));
    sends(f, "\nIN=20 OUT=10\n");
    wait_readings(f, 2);
    th_run_for(&f->t, 50);
    /* 70 bad lines; IN=70000 passes 32 bits but OUT=70000 not 16: the whole
     * line is refused, IN included */
    assert_int_equal(f->t.nr, 2);
    check_counter(&f->t.r[0], "visitors_in", 20, 32);
    assert_true(th_counter(&f->t, NULL, "bad_frames") >= 71);
    /* logged once in the interval, without the frame's bytes */
    assert_int_equal(th_logs_with(&f->t, "bad frame"), 1);
    assert_int_equal(th_logs_with(&f->t, "hello"), 0);
}

/* Logged once per log_interval, and the next line says how many were held back. */
static void test_bad_frames_rate_limited(void **state)
{
    struct fx *f = *state;
    plug(f);
    assert_int_equal(start(f, KV_COUNTERS ", log_interval: 1s"), 0);
    sends(f, "a\nb\nc\nd\ne\n");
    wait_counter(f, "bad_frames", 5);
    assert_int_equal(th_logs_with(&f->t, "bad frame"), 1);
    th_run_for(&f->t, 1100);
    sends(f, "f\n");
    wait_counter(f, "bad_frames", 6);
    assert_int_equal(th_logs_with(&f->t, "bad frame"), 2);
    assert_int_equal(th_logs_with(&f->t, "(4 more since the last message)"), 1);
}

static void test_log_frames_option(void **state)
{
    struct fx *f = *state;
    plug(f);
    assert_int_equal(start(f, KV_COUNTERS ", log_frames: true"), 0);
    sends(f, "he\x01llo\n");
    wait_counter(f, "bad_frames", 1);
    assert_int_equal(th_logs_with(&f->t, "\"he\\x01llo\""), 1);
}

static void test_overlong(void **state)
{
    struct fx *f = *state;
    plug(f);
    assert_int_equal(start(f, KV_COUNTERS ", max_frame_length: 16"), 0);
    char big[300];
    memset(big, 'A', sizeof(big));
    put(f, big, sizeof(big));
    put(f, big, sizeof(big)); /* still the same frame */
    sends(f, "\nIN=1 OUT=1\n");
    wait_readings(f, 2);
    assert_int_equal(th_counter(&f->t, NULL, "overlong_frames"), 1);
    assert_int_equal(th_logs_with(&f->t, "longer than 16 bytes"), 1);
    assert_int_equal(th_counter(&f->t, NULL, "bad_frames"), 0);
}

static void test_unplug_and_replug(void **state)
{
    struct fx *f = *state;
    plug(f);
    assert_int_equal(start(f, KV_COUNTERS), 0);
    sends(f, "IN=1 OUT=0\n");
    wait_readings(f, 2);
    sends(f, "IN=2"); /* cut off by the unplug: never a reading */
    th_run_for(&f->t, 50);
    unplug(f);
    wait_health(f, MITTARI_HEALTH_DOWN);
    assert_int_equal(th_counter(&f->t, NULL, "disconnects"), 1);
    assert_non_null(strstr(th_health_of(&f->t, NULL)->reason, "went away"));
    th_run_for(&f->t, 300); /* reopen attempts fail quietly while it is away */
    assert_int_equal(th_health(&f->t, NULL), MITTARI_HEALTH_DOWN);
    plug(f);
    wait_health(f, MITTARI_HEALTH_UP);
    assert_int_equal(th_counter(&f->t, NULL, "reconnects"), 1);
    /* had the fragment been kept, this would read IN=25 */
    sends(f, "5 OUT=1\nIN=3 OUT=1\n");
    wait_readings(f, 4);
    th_run_for(&f->t, 50);
    assert_int_equal(f->t.nr, 4);
    check_counter(&f->t.r[2], "visitors_in", 3, 32);
    assert_int_equal(th_counter(&f->t, NULL, "bad_frames"), 1);
    /* and again */
    unplug(f);
    wait_health(f, MITTARI_HEALTH_DOWN);
    plug(f);
    wait_health(f, MITTARI_HEALTH_UP);
    assert_int_equal(th_counter(&f->t, NULL, "reconnects"), 2);
}

static void test_missing_at_start(void **state)
{
    struct fx *f = *state;
    assert_int_equal(start(f, KV_COUNTERS), 0); /* not an error: a state */
    assert_int_equal(th_health(&f->t, NULL), MITTARI_HEALTH_DOWN);
    assert_non_null(strstr(th_health_of(&f->t, NULL)->reason, "No such file"));
    th_run_for(&f->t, 450); /* four reopen attempts at 100 ms */
    /* each attempt's one-shot timer is released: one pending, not four */
    assert_true(th_handles(&f->t, -1) <= 1);
    plug(f);
    wait_health(f, MITTARI_HEALTH_UP);
    sends(f, "IN=7 OUT=7\n");
    wait_readings(f, 2);
}

static void test_pattern_decoder(void **state)
{
    struct fx *f = *state;
    plug(f);
    assert_int_equal(start(f, "decoder: pattern, pattern: 'C1:(?<in>[0-9]+) C2:([0-9]+)', "
                              "values: [{field: in, metric: visitors_in, kind: cumulative},"
                              " {field: '2', metric: temp, kind: gauge, scale: 0.1}]"),
                     0);
    sends(f, "C1:0012 C2:215\nC1:12 C2:x\nC1:13 C2:216\n");
    wait_readings(f, 4);
    assert_int_equal(f->t.r[0].counter, 12);
    assert_int_equal(f->t.r[1].kind, MITTARI_KIND_GAUGE);
    assert_true(f->t.r[1].value > 21.49 && f->t.r[1].value < 21.51);
    assert_int_equal(f->t.r[2].counter, 13);
    assert_int_equal(th_counter(&f->t, NULL, "bad_frames"), 1);
}

/* A pulse line per person: constants, per alternative of the pattern. */
static void test_pattern_constants(void **state)
{
    struct fx *f = *state;
    plug(f);
    assert_int_equal(start(f, "decoder: pattern, pattern: '(?<in>IN)|(?<out>OUT)', device: gate,"
                              " values: [{field: in, value: '1', metric: visitors_in, kind: delta},"
                              " {field: out, value: '1', metric: visitors_out, kind: delta}]"),
                     0);
    sends(f, "IN\nIN\nOUT\nINOUT\n");
    wait_readings(f, 3);
    th_run_for(&f->t, 50);
    assert_int_equal(f->t.nr, 3);
    assert_string_equal(f->t.r[2].metric, "visitors_out");
    assert_string_equal(f->t.r[2].device, "gate");
    assert_true(f->t.r[2].value == 1);
    assert_int_equal(th_counter(&f->t, "gate", "bad_frames"), 1);
    assert_int_equal(th_health(&f->t, "gate"), MITTARI_HEALTH_UP);
}

static void test_stxetx_framing(void **state)
{
    struct fx *f = *state;
    plug(f);
    assert_int_equal(start(f, "framing: stxetx, " KV_COUNTERS), 0);
    sends(f, "junk\x02IN=1 OUT=2\x03\r\n\x02IN=3 OU");
    sends(f, "T=4\x03");
    wait_readings(f, 4);
    assert_int_equal(f->t.r[3].counter, 4);
    wait_counter(f, "skipped_bytes", 6);
    /* issue 9: a frame cut short by the next STX is a bad frame, logged */
    sends(f, "\x02IN=5 OUT\x02IN=7 OUT=8\x03");
    wait_readings(f, 6);
    assert_int_equal(f->t.r[4].counter, 7);
    wait_counter(f, "bad_frames", 1);
    assert_int_equal(th_counter(&f->t, NULL, "skipped_bytes"), 6);
    assert_true(th_logs_with(&f->t, "cut short by the next start byte") == 1);
}

static void test_fixed_framing(void **state)
{
    struct fx *f = *state;
    plug(f);
    assert_int_equal(start(f, "framing: fixed, frame_length: 8, sync: 'IN', "
                              "decoder: pattern, pattern: 'IN=([0-9]{5})', "
                              "values: [{field: '1', metric: visitors_in, kind: cumulative}]"),
                     0);
    sends(f, "xIN=00042IN=000");
    sends(f, "43");
    wait_readings(f, 2);
    assert_int_equal(f->t.r[1].counter, 43);
    assert_int_equal(th_counter(&f->t, NULL, "skipped_bytes"), 1);
}

static void test_lua_decoder(void **state)
{
    struct fx *f = *state;
    char *lua = tu_write(f->dir, "dec.lua",
                         "function decode(frame, ts)\n"
                         "  return {metric = 'frame_length', kind = 'gauge', value = #frame}\n"
                         "end\n");
    char opts[512];
    snprintf(opts, sizeof(opts), "decoder: lua, lua: '%s'", lua);
    plug(f);
    assert_int_equal(start(f, opts), 0);
    sends(f, "abc\nbad one\nabcdef\n");
    wait_readings(f, 2);
    wait_counter(f, "bad_frames", 1);
    assert_int_equal(f->t.decoder_frames, 3);
    assert_true(f->t.r[1].value == 6);
    free(lua);
}

int64_t mtser_hold_ms(int64_t hold_ms, int64_t baud);

/* Sends "IN=n+1\n", "IN=n+2\n", ... one at a time, each read before the
 * next is sent, until the port is held (two lines less than read_hold
 * apart; more only if the machine stalled the test for longer than that).
 * Returns the last n sent. */
static size_t line(struct fx *f, size_t n)
{
    char text[32];
    snprintf(text, sizeof(text), "IN=%zu\n", n);
    sends(f, text);
    wait_readings(f, n);
    return n;
}

static size_t until_held(struct fx *f, size_t n)
{
    size_t first = n + 1;
    while (th_handles(&f->t, TH_WATCH) == 1 && n < first + 20)
        n = line(f, n + 1);
    assert_int_equal(th_handles(&f->t, TH_WATCH), 0);
    assert_true(n >= first + 1); /* the first line after a quiet time never holds */
    return n;
}

/* Issue 14: lines that come faster than read_hold are read once per hold,
 * the port unwatched meanwhile; a hold that finds nothing watches it again,
 * and every byte is read, in order, also across the hold's edges. */
static void test_read_hold(void **state)
{
    struct fx *f = *state;
    plug(f);
    assert_int_equal(start(f, "read_hold: 1s, " KV_COUNTERS), 0);
    assert_int_equal(th_handles(&f->t, TH_WATCH), 1);
    size_t n = until_held(f, 0);
    assert_int_equal(th_handles(&f->t, TH_TIMER), 1);
    char text[64];
    snprintf(text, sizeof(text), "IN=%zu\nIN=%zu\nIN", n + 1, n + 2);
    sends(f, text);
    snprintf(text, sizeof(text), "=%zu\nIN=", n + 3);
    sends(f, text);
    n += 3;
    wait_readings(f, n); /* at the hold's tick, together */
    assert_int_equal(th_handles(&f->t, TH_WATCH), 0); /* it found data: holds on */
    snprintf(text, sizeof(text), "%zu\n", n + 1); /* ends the "IN=" above */
    sends(f, text);
    wait_readings(f, ++n);
    for (size_t i = 0; i < f->t.nr; i++)
        assert_int_equal(f->t.r[i].counter, i + 1);
    /* a tick that finds nothing ends the hold: watched again */
    for (int i = 0; i < 100 && th_handles(&f->t, TH_WATCH) == 0; i++)
        th_run_for(&f->t, 50);
    assert_int_equal(th_handles(&f->t, TH_WATCH), 1);
    assert_int_equal(th_handles(&f->t, TH_TIMER), 0);
    /* an unplug while holding: the hold ends with the port, a replug reads again */
    n = until_held(f, f->t.nr);
    unplug(f);
    wait_health(f, MITTARI_HEALTH_DOWN);
    assert_int_equal(th_handles(&f->t, TH_WATCH), 0);
    plug(f);
    wait_health(f, MITTARI_HEALTH_UP);
    line(f, n + 1);
    assert_int_equal(f->t.r[n].counter, n + 1);
    assert_int_equal(th_counter(&f->t, NULL, "bad_frames"), 0);
}

/* Frames read together get distinct times in their order: several values
 * of one counter at the very same microsecond were refused by the agent as
 * a second counter feeding the series (186 of 514 lines at 100 lines/s
 * with a read hold, bench_serial). */
static void test_frames_read_together_get_increasing_times(void **state)
{
    struct fx *f = *state;
    plug(f);
    assert_int_equal(start(f, "read_hold: 0, " KV_COUNTERS), 0);
    char text[1024] = "";
    size_t len = 0;
    for (int i = 1; i <= 40; i++)
        len += (size_t)snprintf(text + len, sizeof(text) - len, "IN=%d\n", i);
    sends(f, text); /* one write: read in one go */
    wait_readings(f, 40);
    for (size_t i = 1; i < 40; i++) {
        assert_int_equal(f->t.r[i].counter, i + 1);
        assert_true(f->t.r[i].ts_us > f->t.r[i - 1].ts_us);
    }
}

/* read_hold: 0 reads every line as it comes: the port is never unwatched. */
static void test_read_hold_off(void **state)
{
    struct fx *f = *state;
    plug(f);
    assert_int_equal(start(f, "read_hold: 0, " KV_COUNTERS), 0);
    for (int i = 1; i <= 20; i++) {
        char line[32];
        snprintf(line, sizeof(line), "IN=%d\n", i);
        sends(f, line);
        wait_readings(f, (size_t)i);
        assert_int_equal(th_handles(&f->t, TH_WATCH), 1);
    }
}

/* The hold is short enough at high baud rates that at most 1 KiB piles up
 * in the kernel's 4 KiB tty buffer meanwhile. */
static void test_read_hold_capped_by_baud(void **state)
{
    (void)state;
    assert_int_equal(mtser_hold_ms(50, 9600), 50);
    assert_int_equal(mtser_hold_ms(50, 115200), 50);
    assert_int_equal(mtser_hold_ms(1000, 115200), 88); /* 1024 bytes at 11520 bytes/s */
    assert_int_equal(mtser_hold_ms(50, 921600), 11);
    assert_int_equal(mtser_hold_ms(50, 4000000), 2);
    assert_int_equal(mtser_hold_ms(0, 9600), 0);
}

static void test_emit_full_is_counted(void **state)
{
    struct fx *f = *state;
    plug(f);
    assert_int_equal(start(f, KV_COUNTERS), 0);
    f->t.emit_rc = -EAGAIN;
    sends(f, "IN=1 OUT=1\nIN=2 OUT=2\n");
    wait_counter(f, "dropped_readings", 4);
    assert_int_equal(th_logs_with(&f->t, "reading dropped"), 1);
}

static void test_command(void **state)
{
    struct fx *f = *state;
    char buf[64];
    plug(f);
    assert_int_equal(start(f, KV_COUNTERS ", command: 'gcounters\\r', command_interval: 100ms"), 0);
    th_run_for(&f->t, 250);
    fcntl(f->master, F_SETFL, O_NONBLOCK);
    ssize_t n = read(f->master, buf, sizeof(buf));
    assert_true(n >= 10);
    assert_memory_equal(buf, "gcounters\r", 10);
}

static void expect_config_error(struct fx *f, const char *opts, const char *msg)
{
    assert_int_equal(start(f, opts), MITTARI_ECONFIG);
    if (th_logs_with(&f->t, msg) != 1)
        fail_msg("'%s': no log line with '%s'", opts, msg);
    tu_options_free(f->conf);
    f->conf = NULL;
}

static void test_config_errors(void **state)
{
    struct fx *f = *state;
    expect_config_error(f, "decoder: kv", "at least one item");
    expect_config_error(f, "decoder: pattern, " KV_COUNTERS, "needs pattern");
    expect_config_error(f, "decoder: pattern, pattern: '(?<a>[0-9]+)', " KV_COUNTERS,
                        "field 'IN' is not a group");
    expect_config_error(f, "decoder: pattern, pattern: '(a', " KV_COUNTERS, "pattern:");
    expect_config_error(f, "decoder: lua", "needs lua");
    expect_config_error(f, "delimiter: '\\q', " KV_COUNTERS, "delimiter");
    expect_config_error(f, "framing: fixed, " KV_COUNTERS, "frame_length");
    expect_config_error(f, "framing: fixed, frame_length: 2, sync: 'abc', " KV_COUNTERS, "sync");
    expect_config_error(f, "values: [{field: IN, metric: 'a b', kind: gauge}]", "metric 'a b'");
    expect_config_error(f, "values: [{metric: x, kind: gauge}]", "a field, a value");
    expect_config_error(f, "values: [{field: IN, metric: x, kind: cumulative, scale: 2}]",
                        "cannot be scaled");
    expect_config_error(f, "values: [{field: IN, value: 'one', metric: x, kind: event}]",
                        "not a number");
    expect_config_error(f, "pattern: 'x', " KV_COUNTERS, "pattern is for");
}

static void test_lua_needs_host_support(void **state)
{
    struct fx *f = *state;
    char *lua = tu_write(f->dir, "dec.lua", "function decode(f, ts) return nil end\n");
    char opts[512];
    snprintf(opts, sizeof(opts), "decoder: lua, lua: '%s'", lua);
    f->t.host.decoder_load = NULL; /* an agent without the sandbox */
    expect_config_error(f, opts, "cannot run Lua decoders");
    free(lua);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_counter_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_partial_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_counted_never_a_reading, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_frames_rate_limited, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_frames_option, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overlong, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unplug_and_replug, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_at_start, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pattern_decoder, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pattern_constants, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stxetx_framing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fixed_framing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lua_decoder, setup, teardown),
        cmocka_unit_test_setup_teardown(test_emit_full_is_counted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_hold, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_hold_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_frames_read_together_get_increasing_times, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_read_hold_capped_by_baud, setup, teardown),
        cmocka_unit_test_setup_teardown(test_command, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lua_needs_host_support, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
