/* The cardreader plugin driven through its descriptor by a fake host that
 * records readings, logs, health and counters and lets the test fire the
 * plugin's watches and timers itself: the serial backend on real pseudo
 * terminals (frames split across reads, garbage, bad checksums, unplug and
 * replug), the hid backend from input_event records through a FIFO, the
 * pcsc backend without a pcscd, debouncing, tags and configuration
 * mistakes. The real agent runs these in tests/integration. */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/input.h>
#include <poll.h>
#include <pty.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mittari/mittari.h>

const struct mittari_plugin *mittari_plugin_entry(void);

#define SEC 1000000LL
#define MAXR 32

struct rd {
    char metric[64];
    int kind;
    double value;
    uint8_t id[64];
    size_t len;
    char space[40];
    size_t ntags;
    char tagk[40], tagv[140];
};

struct ftimer {
    bool active;
    uint64_t repeat;
    mittari_timer_cb cb;
    void *arg;
};

struct fwatch {
    bool active;
    int fd;
    mittari_fd_cb cb;
    void *arg;
};

struct fpoll {
    bool active;
    mittari_work_cb work;
    void *arg;
};

struct fake {
    int64_t now;
    int emit_rc; /* what emit answers; 0 records the reading */
    struct rd r[MAXR];
    size_t n;
    char log[32768];
    size_t loglen;
    int health;
    char reason[256];
    struct {
        char name[32];
        uint64_t v;
    } counters[32];
    struct ftimer timers[16];
    struct fwatch watches[8];
    struct fpoll polls[2];
};

#define F(ctx) ((struct fake *)(void *)(ctx))

static int f_emit(struct mittari_ctx *ctx, const struct mittari_reading *r)
{
    struct fake *f = F(ctx);
    if (f->emit_rc)
        return f->emit_rc;
    assert_true(f->n < MAXR);
    struct rd *d = &f->r[f->n++];
    assert_true(r->size >= sizeof(*r));
    snprintf(d->metric, sizeof(d->metric), "%s", r->metric);
    d->kind = r->kind;
    d->value = r->value;
    assert_true(r->subject_id_len <= sizeof(d->id));
    memcpy(d->id, r->subject_id, r->subject_id_len);
    d->len = r->subject_id_len;
    snprintf(d->space, sizeof(d->space), "%s", r->subject_space);
    d->ntags = r->ntags;
    if (r->ntags) {
        snprintf(d->tagk, sizeof(d->tagk), "%s", r->tags[0].key);
        snprintf(d->tagv, sizeof(d->tagv), "%s", r->tags[0].value);
    }
    return 0;
}

static void f_log(struct mittari_ctx *ctx, int level, const char *fmt, ...)
{
    struct fake *f = F(ctx);
    va_list ap;
    (void)level;
    va_start(ap, fmt);
    int n = vsnprintf(f->log + f->loglen, sizeof(f->log) - f->loglen - 1, fmt, ap);
    va_end(ap);
    if (n > 0)
        f->loglen +=
            (size_t)n < sizeof(f->log) - f->loglen - 1 ? (size_t)n : sizeof(f->log) - f->loglen - 2;
    f->log[f->loglen++] = '\n';
    f->log[f->loglen] = 0;
}

static int64_t f_now(struct mittari_ctx *ctx)
{
    return F(ctx)->now;
}

static int f_timer_start(struct mittari_ctx *ctx, uint64_t timeout_ms, uint64_t repeat_ms,
                         mittari_timer_cb cb, void *arg, struct mittari_timer **out)
{
    (void)timeout_ms;
    for (size_t i = 0; i < 16; i++) {
        struct ftimer *t = &F(ctx)->timers[i];
        if (!t->active) {
            *t = (struct ftimer){.active = true, .repeat = repeat_ms, .cb = cb, .arg = arg};
            if (out)
                *out = (struct mittari_timer *)(void *)t;
            return 0;
        }
    }
    fail_msg("too many timers");
    return -ENOMEM;
}

static void f_timer_stop(struct mittari_timer *t)
{
    ((struct ftimer *)(void *)t)->active = false;
}

static int f_fd_watch(struct mittari_ctx *ctx, int fd, int events, mittari_fd_cb cb, void *arg,
                      struct mittari_watch **out)
{
    assert_true(events & MITTARI_FD_READ);
    for (size_t i = 0; i < 8; i++) {
        struct fwatch *w = &F(ctx)->watches[i];
        if (!w->active) {
            *w = (struct fwatch){.active = true, .fd = fd, .cb = cb, .arg = arg};
            *out = (struct mittari_watch *)(void *)w;
            return 0;
        }
    }
    fail_msg("too many watches");
    return -ENOMEM;
}

static void f_fd_unwatch(struct mittari_watch *w)
{
    ((struct fwatch *)(void *)w)->active = false;
}

static int f_poll_start(struct mittari_ctx *ctx, uint64_t interval_ms, mittari_work_cb work,
                        mittari_done_cb done, void *arg, struct mittari_poll **out)
{
    (void)interval_ms, (void)done;
    struct fpoll *p = &F(ctx)->polls[0];
    *p = (struct fpoll){.active = true, .work = work, .arg = arg};
    *out = (struct mittari_poll *)(void *)p;
    return 0;
}

static void f_poll_stop(struct mittari_poll *p)
{
    ((struct fpoll *)(void *)p)->active = false;
}

static void f_set_health(struct mittari_ctx *ctx, const char *device, int health,
                         const char *reason)
{
    assert_null(device);
    F(ctx)->health = health;
    snprintf(F(ctx)->reason, sizeof(F(ctx)->reason), "%s", reason ? reason : "");
}

static const char *f_instance_name(struct mittari_ctx *ctx)
{
    (void)ctx;
    return "reader-1";
}

static void f_count(struct mittari_ctx *ctx, const char *device, const char *counter, uint64_t n)
{
    struct fake *f = F(ctx);
    assert_null(device);
    for (size_t i = 0; i < 32; i++) {
        if (!f->counters[i].name[0])
            snprintf(f->counters[i].name, sizeof(f->counters[i].name), "%s", counter);
        if (strcmp(f->counters[i].name, counter) == 0) {
            f->counters[i].v += n;
            return;
        }
    }
    fail_msg("too many counters");
}

static const struct mittari_host host = {
    .abi_version = MITTARI_ABI_VERSION,
    .size = sizeof(struct mittari_host),
    .emit = f_emit,
    .log = f_log,
    .now = f_now,
    .timer_start = f_timer_start,
    .timer_stop = f_timer_stop,
    .fd_watch = f_fd_watch,
    .fd_unwatch = f_fd_unwatch,
    .poll_start = f_poll_start,
    .poll_stop = f_poll_stop,
    .set_health = f_set_health,
    .instance_name = f_instance_name,
    .count = f_count,
};

static uint64_t counter(const struct fake *f, const char *name)
{
    for (size_t i = 0; i < 32; i++)
        if (strcmp(f->counters[i].name, name) == 0)
            return f->counters[i].v;
    return 0;
}

/* ---- one plugin instance ---- */

struct inst {
    struct fake f;
    const struct mittari_plugin *p;
    void *conf;
    void *state;
    char *dir;
};

static int inst_create(struct inst *in, const char *yaml)
{
    in->p = mittari_plugin_entry();
    in->f.now = 1700000000 * SEC;
    in->f.health = -1;
    in->conf = tu_options(in->p->options, in->p->config_size, yaml);
    return in->p->create(&host, (struct mittari_ctx *)(void *)&in->f, in->conf, &in->state);
}

static void inst_start(struct inst *in, const char *yaml)
{
    assert_int_equal(inst_create(in, yaml), 0);
    assert_int_equal(in->p->start(in->state), 0);
}

static void inst_end(struct inst *in)
{
    in->p->stop(in->state);
    for (size_t i = 0; i < 8; i++)
        assert_false(in->f.watches[i].active); /* stop unwatched what it watched */
    in->p->destroy(in->state);
    tu_options_free(in->conf);
}

/* Runs the watches until nothing is readable for quiet_ms. */
static void pump(struct inst *in, int quiet_ms)
{
    for (int rounds = 0; rounds < 1000; rounds++) {
        bool any = false;
        for (size_t i = 0; i < 8; i++) {
            struct fwatch *w = &in->f.watches[i];
            struct pollfd pfd = {.fd = w->fd, .events = POLLIN};
            if (!w->active || poll(&pfd, 1, quiet_ms) <= 0)
                continue;
            int ev = (pfd.revents & POLLIN ? MITTARI_FD_READ : 0) |
                     (pfd.revents & (POLLHUP | POLLERR) ? MITTARI_FD_ERROR : 0);
            w->cb(w->arg, w->fd, ev);
            any = true;
        }
        if (!any)
            return;
    }
    fail_msg("the device never went quiet");
}

/* Fires the one-shot timers due (all of them: the fake has no clock). */
static void fire_oneshots(struct inst *in)
{
    for (size_t i = 0; i < 16; i++) {
        struct ftimer *t = &in->f.timers[i];
        if (t->active && t->repeat == 0) {
            t->active = false;
            t->cb(t->arg);
        }
    }
}

static void fire_repeating(struct inst *in)
{
    for (size_t i = 0; i < 16; i++)
        if (in->f.timers[i].active && in->f.timers[i].repeat)
            in->f.timers[i].cb(in->f.timers[i].arg);
}

static size_t active_watches(const struct inst *in)
{
    size_t n = 0;
    for (size_t i = 0; i < 8; i++)
        n += in->f.watches[i].active;
    return n;
}

/* None of the card numbers the tests use may ever be in a log line. */
static void logs_hold_no_number(const struct inst *in)
{
    const char *numbers[] = {"0100D507D0", "0100d507d0", "00D507D0", "13961168", "0C000621A5",
                             "0C000621",   "202116005",  "04A2B3C4", "04a2b3c4", "213,02000"};
    for (size_t i = 0; i < sizeof(numbers) / sizeof(numbers[0]); i++)
        if (strcasestr(in->f.log, numbers[i]))
            fail_msg("a card number (%s) is in the log:\n%s", numbers[i], in->f.log);
}

/* ---- a pty standing in for a serial reader ---- */

struct pty {
    int master;
    char link[512];
};

/* A new pty; link (in dir) points at its slave, like a /dev/serial/by-id name. */
static void pty_plug(struct pty *t, const char *dir)
{
    int slave;
    char name[128];
    assert_int_equal(openpty(&t->master, &slave, name, NULL, NULL), 0);
    close(slave); /* the plugin opens it by name */
    snprintf(t->link, sizeof(t->link), "%s/ttyCARD", dir);
    unlink(t->link);
    assert_int_equal(symlink(name, t->link), 0);
}

static void pty_send(struct pty *t, const void *p, size_t n)
{
    assert_int_equal(write(t->master, p, n), (ssize_t)n);
}

static void pty_sends(struct pty *t, const char *s)
{
    pty_send(t, s, strlen(s));
}

static void serial_start(struct inst *in, struct pty *t, const char *extra)
{
    char yaml[1024];
    in->dir = tu_tmpdir();
    pty_plug(t, in->dir);
    snprintf(yaml, sizeof(yaml), "{backend: serial, port: %s%s}", t->link, extra);
    inst_start(in, yaml);
    assert_int_equal(in->f.health, MITTARI_HEALTH_UP);
    assert_int_equal(active_watches(in), 1);
}

static void serial_end(struct inst *in, struct pty *t)
{
    logs_hold_no_number(in);
    inst_end(in);
    if (t->master >= 0)
        close(t->master);
    tu_rmtree(in->dir);
    free(in->dir);
}

static const uint8_t CARD_A[5] = {0x01, 0x00, 0xD5, 0x07, 0xD0}; /* 0013961168 */
#define RDM_A                                                                                      \
    "\x02"                                                                                         \
    "0100D507D003"                                                                                 \
    "\x03"
#define ID12_B                                                                                     \
    "\x02"                                                                                         \
    "0C000621A58E\r\n"                                                                             \
    "\x03"

static void rdm6300_and_id12la_frames(void **st)
{
    (void)st;
    struct inst in = {0};
    struct pty t;
    const uint8_t card_b[5] = {0x0C, 0x00, 0x06, 0x21, 0xA5};

    serial_start(&in, &t, "");
    pty_sends(&t, RDM_A ID12_B);
    pump(&in, 200);
    assert_int_equal(in.f.n, 2);
    assert_string_equal(in.f.r[0].metric, "checkin");
    assert_int_equal(in.f.r[0].kind, MITTARI_KIND_EVENT);
    assert_true(in.f.r[0].value == 1);
    assert_string_equal(in.f.r[0].space, "em4100");
    assert_int_equal(in.f.r[0].len, 5);
    assert_memory_equal(in.f.r[0].id, CARD_A, 5);
    assert_memory_equal(in.f.r[1].id, card_b, 5);
    assert_int_equal(in.f.r[0].ntags, 0);
    assert_int_equal(counter(&in.f, "checkins"), 2);
    serial_end(&in, &t);
}

static void frame_split_across_reads(void **st)
{
    (void)st;
    struct inst in = {0};
    struct pty t;

    serial_start(&in, &t, "");
    pty_sends(&t, "\x02"
                  "0100D5");
    pump(&in, 200);
    assert_int_equal(in.f.n, 0);
    pty_sends(&t, "07D0");
    pump(&in, 200);
    pty_sends(&t, "03");
    pump(&in, 200);
    assert_int_equal(in.f.n, 0);
    pty_sends(&t, "\x03");
    pump(&in, 200);
    assert_int_equal(in.f.n, 1);
    assert_memory_equal(in.f.r[0].id, CARD_A, 5);
    serial_end(&in, &t);
}

static void garbage_and_bad_checksums_never_become_readings(void **st)
{
    (void)st;
    struct inst in = {0};
    struct pty t;
    uint8_t noise[300];

    serial_start(&in, &t, "");
    for (size_t i = 0; i < sizeof(noise); i++)
        noise[i] = (uint8_t)((i * 37 + 11) & 0xff) & ~0x02; /* binary noise without STX */
    pty_send(&t, noise, sizeof(noise));
    pty_sends(&t, "\x02"
                  "0100D507D004"
                  "\x03"); /* wrong checksum */
    pty_sends(&t, "\x02"
                  "0100D507D103"
                  "\x03"); /* one bit flipped in the data */
    pty_sends(&t, "\x02"
                  "0100D5G7D003"
                  "\x03"); /* not hex */
    pty_sends(&t, "\x02"
                  "0100D507D0"
                  "\x03"); /* too short */
    pty_sends(&t, "\x02"
                  "0100D507D0030100D507D003"
                  "\x03"); /* over-long */
    pty_sends(&t, "\x02"
                  "0100D5"
                  "\x02"
                  "0C000621A58E"
                  "\x03"); /* cut short, then whole */
    pump(&in, 300);
    assert_int_equal(in.f.n, 1); /* only the whole frame at the end */
    assert_int_equal(counter(&in.f, "bad_checksums"), 2);
    assert_int_equal(counter(&in.f, "bad_frames"), 3); /* not hex, too short, cut short */
    assert_int_equal(counter(&in.f, "overlong_frames"), 1);
    assert_true(counter(&in.f, "noise_bytes") >= sizeof(noise));
    /* logged once, then only counted */
    assert_non_null(strstr(in.f.log, "wrong checksum"));
    assert_null(strstr(strstr(in.f.log, "wrong checksum") + 1, "wrong checksum"));
    serial_end(&in, &t);
}

/* Issue 9: an RDM6300 frame cut short (STX and its 12 digits, no ETX: 13
 * bytes) and then a good one: the cut one is a bad frame, as the docs say,
 * not noise, and it is logged without its digits. */
static void cut_rdm6300_frame_is_a_bad_frame(void **st)
{
    (void)st;
    struct inst in = {0};
    struct pty t;

    serial_start(&in, &t, "");
    pty_sends(&t, "\x02"
                  "0C000621A58E" /* 13 bytes, no ETX */
              RDM_A);
    pump(&in, 300);
    assert_int_equal(in.f.n, 1);
    assert_memory_equal(in.f.r[0].id, CARD_A, 5);
    assert_int_equal(counter(&in.f, "bad_frames"), 1);
    assert_int_equal(counter(&in.f, "noise_bytes"), 0);
    assert_non_null(strstr(in.f.log, "a frame cut short (no ETX before the next STX) was dropped"));
    assert_null(strstr(in.f.log, "0C000621"));
    assert_null(strstr(in.f.log, "0c000621"));
    serial_end(&in, &t);
}

static void unplug_and_replug(void **st)
{
    (void)st;
    struct inst in = {0};
    struct pty t;

    serial_start(&in, &t, "");
    pty_sends(&t, RDM_A);
    pump(&in, 200);
    assert_int_equal(in.f.n, 1);
    pty_sends(&t, "\x02"
                  "0C0006"); /* half a frame, then the adapter goes */
    pump(&in, 200);
    close(t.master);
    t.master = -1;
    pump(&in, 200);
    assert_int_equal(in.f.health, MITTARI_HEALTH_DOWN);
    assert_int_equal(active_watches(&in), 0);
    fire_oneshots(&in); /* still unplugged: stays down, retries */
    assert_int_equal(in.f.health, MITTARI_HEALTH_DOWN);
    pty_plug(&t, in.dir);
    fire_oneshots(&in);
    assert_int_equal(in.f.health, MITTARI_HEALTH_UP);
    assert_int_equal(active_watches(&in), 1);
    /* the rest of the old frame is no card; the next whole one is */
    pty_sends(&t, "21A58E"
                  "\x03");
    pump(&in, 200);
    assert_int_equal(in.f.n, 1);
    pty_sends(&t, ID12_B);
    pump(&in, 200);
    assert_int_equal(in.f.n, 2);
    serial_end(&in, &t);
}

static void missing_port_at_start_is_down_not_fatal(void **st)
{
    (void)st;
    struct inst in = {0};
    struct pty t;
    char yaml[512], *dir = tu_tmpdir();

    snprintf(yaml, sizeof(yaml), "{backend: serial, port: %s/ttyCARD}", dir);
    inst_start(&in, yaml);
    assert_int_equal(in.f.health, MITTARI_HEALTH_DOWN);
    pty_plug(&t, dir);
    fire_oneshots(&in);
    assert_int_equal(in.f.health, MITTARI_HEALTH_UP);
    pty_sends(&t, RDM_A);
    pump(&in, 200);
    assert_int_equal(in.f.n, 1);
    in.dir = dir;
    serial_end(&in, &t);
}

static void debounce_by_window(void **st)
{
    (void)st;
    struct inst in = {0};
    struct pty t;

    serial_start(&in, &t, ", debounce: 3s");
    pty_sends(&t, RDM_A);
    pump(&in, 200);
    in.f.now += SEC / 10; /* the reader repeats while the card is held */
    pty_sends(&t, RDM_A);
    pump(&in, 200);
    in.f.now += 2 * SEC;
    pty_sends(&t, RDM_A ID12_B); /* and another card meanwhile */
    pump(&in, 200);
    assert_int_equal(in.f.n, 2);
    assert_int_equal(counter(&in.f, "repeats"), 2);
    in.f.now += 3 * SEC; /* a new visit */
    fire_repeating(&in);
    pty_sends(&t, RDM_A);
    pump(&in, 200);
    assert_int_equal(in.f.n, 3);
    assert_memory_equal(in.f.r[2].id, CARD_A, 5);
    serial_end(&in, &t);
}

static void refused_checkin_is_retried_by_the_next_read(void **st)
{
    (void)st;
    struct inst in = {0};
    struct pty t;

    serial_start(&in, &t, ", debounce: 3s");
    in.f.emit_rc = -EAGAIN;
    pty_sends(&t, RDM_A);
    pump(&in, 200);
    assert_int_equal(counter(&in.f, "refused"), 1);
    assert_non_null(strstr(in.f.log, "intake queue is full"));
    in.f.emit_rc = 0;
    in.f.now += SEC / 10;
    pty_sends(&t, RDM_A);
    pump(&in, 200);
    assert_int_equal(in.f.n, 1);
    serial_end(&in, &t);
}

static void ascii_lines_and_service_tag(void **st)
{
    (void)st;
    struct inst in = {0};
    struct pty t;

    serial_start(&in, &t,
                 ", frame: line, id_format: em4100-dec, service: swimming_hall, metric: visit");
    pty_sends(&t, "0013961168\r\n\r\nhello\n0013961168 213,02000\n");
    pump(&in, 200);
    assert_int_equal(in.f.n, 2);
    assert_string_equal(in.f.r[0].metric, "visit");
    assert_string_equal(in.f.r[0].space, "em4100-dec");
    assert_int_equal(in.f.r[0].len, 10);
    assert_memory_equal(in.f.r[0].id, "0013961168", 10);
    assert_int_equal(in.f.r[0].ntags, 1);
    assert_string_equal(in.f.r[0].tagk, "service");
    assert_string_equal(in.f.r[0].tagv, "swimming_hall");
    assert_memory_equal(in.f.r[1].id, "0013961168 213,02000", 20);
    assert_int_equal(counter(&in.f, "bad_frames"), 1);
    serial_end(&in, &t);
}

static void lines_ending_in_cr(void **st)
{
    (void)st;
    struct inst in = {0};
    struct pty t;

    serial_start(&in, &t, ", frame: line-cr, id_format: uid-hex");
    pty_sends(&t, "04A2B3C4D5E680\r04:A2:B3:C4\r\n");
    pump(&in, 200);
    assert_int_equal(in.f.n, 2);
    assert_string_equal(in.f.r[0].space, "iso14443");
    assert_int_equal(in.f.r[0].len, 7);
    assert_int_equal(in.f.r[1].len, 4);
    serial_end(&in, &t);
}

/* ---- hid: input_event records through a FIFO ---- */

struct evw {
    int fd;
    int64_t t;
};

static void ev_put(struct evw *w, uint16_t type, uint16_t code, int32_t value)
{
    struct input_event ev = {.type = type, .code = code, .value = value};
    ev.input_event_sec = (time_t)(w->t / SEC);
    ev.input_event_usec = (suseconds_t)(w->t % SEC);
    assert_int_equal(write(w->fd, &ev, sizeof(ev)), (ssize_t)sizeof(ev));
}

/* What a USB wedge reader sends for one key: scan code, press, sync,
 * release, sync, ~8 ms apart. */
static void ev_key(struct evw *w, uint16_t code)
{
    ev_put(w, EV_MSC, MSC_SCAN, 0x70000 + code);
    ev_put(w, EV_KEY, code, 1);
    ev_put(w, EV_SYN, SYN_REPORT, 0);
    w->t += 8000;
    ev_put(w, EV_KEY, code, 0);
    ev_put(w, EV_SYN, SYN_REPORT, 0);
    w->t += 8000;
}

static void ev_type(struct evw *w, const char *digits, bool keypad)
{
    static const uint16_t kp[] = {KEY_KP0, KEY_KP1, KEY_KP2, KEY_KP3, KEY_KP4,
                                  KEY_KP5, KEY_KP6, KEY_KP7, KEY_KP8, KEY_KP9};
    for (const char *p = digits; *p; p++) {
        int d = *p - '0';
        ev_key(w, keypad ? kp[d] : (uint16_t)(d == 0 ? KEY_0 : KEY_1 + d - 1));
    }
    ev_key(w, keypad ? KEY_KPENTER : KEY_ENTER);
}

static void hid_start(struct inst *in, char **fifo, const char *extra)
{
    char yaml[1024];
    in->dir = tu_tmpdir();
    *fifo = tu_path(in->dir, "event-kbd");
    assert_int_equal(mkfifo(*fifo, 0600), 0);
    snprintf(yaml, sizeof(yaml), "{backend: hid, evdev: %s%s}", *fifo, extra);
    inst_start(in, yaml);
    assert_int_equal(in->f.health, MITTARI_HEALTH_UP);
}

static void hid_end(struct inst *in, char *fifo)
{
    logs_hold_no_number(in);
    inst_end(in);
    free(fifo);
    tu_rmtree(in->dir);
    free(in->dir);
}

static void wedge_reader_through_a_fifo(void **st)
{
    (void)st;
    struct inst in = {0};
    char *fifo;

    hid_start(&in, &fifo, ", service: museum");
    /* a FIFO cannot be grabbed: said once, reading goes on */
    assert_non_null(strstr(in.f.log, "not grabbed"));
    struct evw w = {.fd = open(fifo, O_WRONLY | O_NONBLOCK), .t = 1000 * SEC};
    assert_true(w.fd >= 0);
    ev_type(&w, "0013961168", false);
    w.t += 5 * SEC;
    ev_type(&w, "0202116005", true); /* keypad digits and keypad Enter */
    pump(&in, 200);
    assert_int_equal(in.f.n, 2);
    assert_string_equal(in.f.r[0].space, "em4100-dec");
    assert_memory_equal(in.f.r[0].id, "0013961168", 10);
    assert_memory_equal(in.f.r[1].id, "0202116005", 10);
    assert_string_equal(in.f.r[1].tagv, "museum");
    close(w.fd);
    hid_end(&in, fifo);
}

static void records_split_across_writes(void **st)
{
    (void)st;
    struct inst in = {0};
    char *fifo;
    int pipefd[2];

    hid_start(&in, &fifo, "");
    /* build the records in a pipe, then feed the FIFO in odd pieces */
    assert_int_equal(pipe(pipefd), 0);
    struct evw w = {.fd = pipefd[1], .t = 50 * SEC};
    ev_type(&w, "0013961168", false);
    close(pipefd[1]);
    uint8_t buf[8192];
    ssize_t n = read(pipefd[0], buf, sizeof(buf));
    close(pipefd[0]);
    assert_true(n > 0 && (size_t)n % sizeof(struct input_event) == 0);
    int fd = open(fifo, O_WRONLY | O_NONBLOCK);
    for (ssize_t off = 0; off < n; off += 7) {
        size_t k = (size_t)(n - off < 7 ? n - off : 7);
        assert_int_equal(write(fd, buf + off, k), (ssize_t)k);
        pump(&in, 0);
    }
    pump(&in, 100);
    assert_int_equal(in.f.n, 1);
    assert_memory_equal(in.f.r[0].id, "0013961168", 10);
    close(fd);
    hid_end(&in, fifo);
}

static void typing_that_is_no_card(void **st)
{
    (void)st;
    struct inst in = {0};
    char *fifo;

    hid_start(&in, &fifo, "");
    struct evw w = {.fd = open(fifo, O_WRONLY | O_NONBLOCK), .t = 10 * SEC};
    ev_key(&w, KEY_H); /* letters: not an em4100-dec number */
    ev_key(&w, KEY_I);
    ev_key(&w, KEY_ENTER);
    ev_key(&w, KEY_1);
    ev_key(&w, KEY_F5); /* no character */
    ev_key(&w, KEY_ENTER);
    ev_key(&w, KEY_4);
    w.t += 2 * SEC; /* someone stopped typing halfway */
    ev_type(&w, "0013961168", false);
    pump(&in, 200);
    assert_int_equal(in.f.n, 1);
    assert_memory_equal(in.f.r[0].id, "0013961168", 10);
    assert_int_equal(counter(&in.f, "bad_frames"), 3);
    close(w.fd);
    hid_end(&in, fifo);
}

static void device_gone_and_back(void **st)
{
    (void)st;
    struct inst in = {0};
    char *fifo;

    hid_start(&in, &fifo, "");
    struct evw w = {.fd = open(fifo, O_WRONLY | O_NONBLOCK), .t = 10 * SEC};
    ev_key(&w, KEY_1); /* half a card, then unplugged */
    close(w.fd);
    pump(&in, 200);
    assert_int_equal(in.f.health, MITTARI_HEALTH_DOWN);
    fire_oneshots(&in);
    assert_int_equal(in.f.health, MITTARI_HEALTH_UP);
    w.fd = open(fifo, O_WRONLY | O_NONBLOCK);
    ev_type(&w, "0013961168", false);
    pump(&in, 200);
    assert_int_equal(in.f.n, 1);
    assert_memory_equal(in.f.r[0].id, "0013961168", 10); /* not "10013961168" */
    close(w.fd);
    hid_end(&in, fifo);
}

/* ---- pcsc without a pcscd ---- */

static void pcsc_without_pcscd_is_down(void **st)
{
    (void)st;
    struct inst in = {0};
    char *dir = tu_tmpdir(), *sock = tu_path(dir, "no-pcscd.comm");

    setenv("PCSCLITE_CSOCK_NAME", sock, 1);
    inst_start(&in, "{backend: pcsc}");
    assert_true(in.f.polls[0].active);
    assert_int_equal(in.f.polls[0].work(in.f.polls[0].arg), 0);
    assert_int_equal(in.f.health, MITTARI_HEALTH_DOWN);
    assert_non_null(strstr(in.f.reason, "pcscd"));
    in.f.now += 2 * SEC;
    assert_int_equal(in.f.polls[0].work(in.f.polls[0].arg), 0);
    assert_int_equal(in.f.n, 0);
    inst_end(&in);
    assert_false(in.f.polls[0].active);
    unsetenv("PCSCLITE_CSOCK_NAME");
    free(sock);
    tu_rmtree(dir);
    free(dir);
}

/* ---- configuration ---- */

static void refused(const char *yaml, const char *why)
{
    struct inst in = {0};
    assert_int_equal(inst_create(&in, yaml), MITTARI_ECONFIG);
    if (!strstr(in.f.log, why))
        fail_msg("'%s': expected '%s' in the log, got: %s", yaml, why, in.f.log);
    tu_options_free(in.conf);
}

static void options_of_another_backend_are_refused(void **st)
{
    (void)st;
    refused("{backend: serial}", "needs 'port'");
    refused("{backend: hid}", "needs 'evdev'");
    refused("{backend: hid, evdev: /dev/null, port: /dev/ttyS0}", "only for backend serial");
    refused("{backend: pcsc, evdev: /dev/null}", "only for backend hid");
    refused("{backend: serial, port: /dev/null, reader: ACS}", "only for backend pcsc");
    refused("{backend: pcsc, metric: 'check in'}", "'metric'");
    refused("{backend: pcsc, service: ''}", "'service'");
}

static void option_table_documents_every_option(void **st)
{
    (void)st;
    const struct mittari_plugin *p = mittari_plugin_entry();
    assert_string_equal(p->name, "cardreader");
    assert_int_equal(p->abi_version, MITTARI_ABI_VERSION);
    for (const struct mittari_option *o = p->options; o->name; o++) {
        assert_non_null(o->help);
        assert_true(o->help[0] != 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rdm6300_and_id12la_frames),
        cmocka_unit_test(cut_rdm6300_frame_is_a_bad_frame),
        cmocka_unit_test(frame_split_across_reads),
        cmocka_unit_test(garbage_and_bad_checksums_never_become_readings),
        cmocka_unit_test(unplug_and_replug),
        cmocka_unit_test(missing_port_at_start_is_down_not_fatal),
        cmocka_unit_test(debounce_by_window),
        cmocka_unit_test(refused_checkin_is_retried_by_the_next_read),
        cmocka_unit_test(ascii_lines_and_service_tag),
        cmocka_unit_test(lines_ending_in_cr),
        cmocka_unit_test(wedge_reader_through_a_fifo),
        cmocka_unit_test(records_split_across_writes),
        cmocka_unit_test(typing_that_is_no_card),
        cmocka_unit_test(device_gone_and_back),
        cmocka_unit_test(pcsc_without_pcscd_is_down),
        cmocka_unit_test(options_of_another_backend_are_refused),
        cmocka_unit_test(option_table_documents_every_option),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
