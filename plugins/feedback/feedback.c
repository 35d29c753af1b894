/*
 * feedback: smiley-button terminals ("how was your visit?"). Each press is
 * one `event` reading, metric `feedback`, whose value is the button's
 * score (by default 1 = very unhappy ... 4 = very happy).
 *
 * Two kinds of terminal (DEVICES.md section 7):
 *   serial  a box on a serial line that sends one character per press;
 *   evdev   a box that is a USB keyboard ("keyboard wedge"): its input event
 *           device is read as struct input_event records and grabbed
 *           (EVIOCGRAB) so presses do not type into a console. Key codes,
 *           not characters: they do not depend on the keyboard layout.
 * In tests a FIFO stands in for the event device (there is no uinput):
 * the grab is then not possible and a notice says so.
 *
 * Owns the device (through devloop: watched on the loop, reopened after an
 * unplug). Loop thread only. Unknown keys are counted and logged
 * rate-limited, never turned into a score.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mittari/mittari.h>

#include "devloop.h"
#include "evdev.h"
#include "feedback.h"
#include "frame.h"
#include "ratelimit.h"
#include "serial.h"

static const char *const backends[] = {"serial", "evdev", NULL};

static const struct mittari_option button_options[] = {
    {.name = "key",
     .type = MITTARI_OPT_STRING,
     .flags = MITTARI_OPT_REQUIRED,
     .offset = offsetof(struct button, key),
     .help = "serial: the character the button sends (\"1\", \"a\", \"\\x31\"); evdev: the key "
             "(KEY_1, KEY_KP1, KEY_A, ... or its code)."},
    {.name = "score",
     .type = MITTARI_OPT_INT,
     .flags = MITTARI_OPT_REQUIRED,
     .min = -1000,
     .max = 1000,
     .offset = offsetof(struct button, score),
     .help = "The value of the reading for this button."},
    {.name = "label",
     .type = MITTARI_OPT_STRING,
     .offset = offsetof(struct button, label),
     .help = "Tag `button` of the reading, e.g. very_happy."},
    {0},
};

static const struct mittari_option options[] = {
    {.name = "backend",
     .type = MITTARI_OPT_ENUM,
     .def = "serial",
     .values = backends,
     .offset = offsetof(struct conf, backend),
     .help = "serial (a character per press) or evdev (a USB keyboard-like terminal)."},
    {.name = "port",
     .type = MITTARI_OPT_STRING,
     .flags = MITTARI_OPT_REQUIRED,
     .offset = offsetof(struct conf, line.port),
     .help = "serial: the tty (/dev/serial/by-id/..., a pty); evdev: the input device "
             "(/dev/input/by-id/...-event-kbd)."},
    MTS_LINE_OPTIONS(struct conf, line),
    {.name = "grab",
     .type = MITTARI_OPT_BOOL,
     .def = "true",
     .offset = offsetof(struct conf, grab),
     .help = "evdev: take the device for this agent alone (EVIOCGRAB), so presses do not type "
             "into a console."},
    {.name = "buttons",
     .type = MITTARI_OPT_LIST,
     .min = 0,
     .max = MAX_BUTTONS,
     .offset = offsetof(struct conf, buttons),
     .sub = button_options,
     .sub_size = sizeof(struct button),
     .help = "Key to score; empty: 1-4 (serial \"1\"-\"4\"; evdev KEY_1-KEY_4 and KEY_KP1-KEY_KP4) "
             "score 1-4."},
    {.name = "metric",
     .type = MITTARI_OPT_STRING,
     .def = "feedback",
     .offset = offsetof(struct conf, metric),
     .help = "Metric of the readings."},
    {.name = "device",
     .type = MITTARI_OPT_STRING,
     .offset = offsetof(struct conf, device),
     .help = "Device name of the readings and the terminal's health; unset: the input's name."},
    {.name = "min_interval",
     .type = MITTARI_OPT_DURATION,
     .def = "0",
     .min = 0,
     .max = 60000,
     .offset = offsetof(struct conf, min_interval_ms),
     .help = "Presses sooner than this after the last counted one are ignored and counted "
             "(ignored_presses): contact bounce, a child drumming; 0 counts every press."},
    {.name = "log_interval",
     .type = MITTARI_OPT_DURATION,
     .def = "1m",
     .min = 1000,
     .max = 86400000,
     .offset = offsetof(struct conf, log_ms),
     .help = "Unknown keys are logged at most once per interval (all are counted)."},
    {0},
};

struct map {
    int code; /* a byte (serial) or an evdev key code */
    double score;
    const char *label;
};

struct fb {
    const struct mittari_host *h;
    struct mittari_ctx *ctx;
    const struct conf *c;
    struct map map[MAX_BUTTONS * 2];
    size_t nmap;
    struct mts_port *port;
    struct mte_dev *ev;
    struct mtl *loop;
    int64_t last_press_us;
    struct mtr_limit unknown_log, drop_log;
    const struct mittari_checker *chk; /* set when only checking the configuration */
};

/* ---- presses ---- */

static const struct map *lookup(const struct fb *f, int code)
{
    for (size_t i = 0; i < f->nmap; i++)
        if (f->map[i].code == code)
            return &f->map[i];
    return NULL;
}

static void unknown_key(struct fb *f, int code)
{
    f->h->count(f->ctx, f->c->device, "unknown_keys", 1);
    mtr_log(&f->unknown_log, f->h, f->ctx, MITTARI_LOG_WARNING, "%s %d is no button; ignored",
            f->c->backend == BK_SERIAL ? "character" : "key code", code);
}

static void press(struct fb *f, int code)
{
    const struct map *m = lookup(f, code);
    int64_t now = f->h->now(f->ctx);
    struct mittari_tag tag = {"button", m ? m->label : NULL};
    struct mittari_reading r = MITTARI_READING_INIT;

    if (!m) {
        unknown_key(f, code);
        return;
    }
    if (f->last_press_us && now - f->last_press_us < f->c->min_interval_ms * 1000) {
        f->h->count(f->ctx, f->c->device, "ignored_presses", 1);
        return;
    }
    f->last_press_us = now;
    r.ts_us = now;
    r.device = f->c->device;
    r.metric = f->c->metric;
    r.kind = MITTARI_KIND_EVENT;
    r.value = m->score;
    r.tags = m->label ? &tag : NULL;
    r.ntags = m->label ? 1 : 0;
    int rc = f->h->emit(f->ctx, &r);
    if (rc == -EAGAIN || rc == MITTARI_EFULL) {
        f->h->count(f->ctx, f->c->device, "dropped_readings", 1);
        mtr_log(&f->drop_log, f->h, f->ctx, MITTARI_LOG_WARNING,
                "press dropped: the agent's intake is full");
    }
}

void fb_on_event(void *arg, const struct input_event *ev)
{
    /* value 1 is a press; 0 release and 2 auto-repeat are not votes */
    if (ev->type == EV_KEY && ev->value == 1)
        press(arg, ev->code);
}

void fb_on_bytes(void *arg, const uint8_t *p, size_t n)
{
    struct fb *f = arg;
    for (size_t i = 0; i < n; i++) {
        /* boxes that end each press with a line end or a space */
        if ((p[i] == '\r' || p[i] == '\n' || p[i] == ' ') && !lookup(f, p[i]))
            continue;
        press(f, p[i]);
    }
}

/* ---- the device ---- */

static int dev_open(void *arg, int *fd, char *note, size_t notelen, char *err, size_t errlen)
{
    struct fb *f = arg;
    int rc;

    if (f->c->backend == BK_SERIAL) {
        rc = mts_open(&f->port, &f->c->line, err, errlen);
        if (rc)
            return rc;
        *fd = mts_fd(f->port);
        if (mts_note(f->port))
            snprintf(note, notelen, "%s", mts_note(f->port));
        return 0;
    }
    rc = mte_open(&f->ev, f->c->line.port, f->c->grab, err, errlen);
    if (rc)
        return rc;
    *fd = mte_fd(f->ev);
    if (mte_note(f->ev))
        snprintf(note, notelen, "%s", mte_note(f->ev));
    return mte_grab_refused(f->ev) ? MTL_DEGRADED : 0;
}

static void dev_close(void *arg)
{
    struct fb *f = arg;
    mts_close(f->port);
    mte_close(f->ev); /* also releases the grab */
    f->port = NULL;
    f->ev = NULL;
}

static void dev_data(void *arg, const uint8_t *p, size_t n)
{
    struct fb *f = arg;
    if (f->c->backend == BK_SERIAL)
        fb_on_bytes(f, p, n);
    else
        mte_feed(f->ev, p, n, fb_on_event, f);
}

static const struct mtl_ops dev_ops = {.open = dev_open, .close = dev_close, .data = dev_data};

/* ---- configuration ---- */

__attribute__((format(printf, 2, 3))) static int config_error(struct fb *f, const char *fmt, ...)
{
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (f->chk)
        f->chk->error(f->chk, NULL, "%s", msg);
    else
        f->h->log(f->ctx, MITTARI_LOG_ERR, "%s", msg);
    return MITTARI_ECONFIG;
}

static int key_code(const struct fb *f, const char *key)
{
    uint8_t b[2];
    if (f->c->backend == BK_EVDEV)
        return mte_key_code(key);
    return mtf_unescape(key, b, sizeof(b)) == 1 ? b[0] : -1;
}

static int add(struct fb *f, int code, double score, const char *label)
{
    if (lookup(f, code))
        return config_error(f, "buttons: key code %d twice", code);
    f->map[f->nmap++] = (struct map){.code = code, .score = score, .label = label};
    return 0;
}

static int default_buttons(struct fb *f)
{
    static const int keys[] = {KEY_1, KEY_2, KEY_3, KEY_4},
                     pad[] = {KEY_KP1, KEY_KP2, KEY_KP3, KEY_KP4};
    for (int i = 0; i < 4; i++) {
        if (f->c->backend == BK_SERIAL) {
            add(f, '1' + i, i + 1, NULL);
        } else {
            add(f, keys[i], i + 1, NULL);
            add(f, pad[i], i + 1, NULL);
        }
    }
    return 0;
}

static int make_map(struct fb *f)
{
    const struct mittari_list *l = &f->c->buttons;
    if (l->n == 0)
        return default_buttons(f);
    for (size_t i = 0; i < l->n; i++) {
        const struct button *b = MITTARI_LIST_ITEM(l, struct button, i);
        int code = key_code(f, b->key);
        if (code < 0)
            return config_error(f, "buttons[%zu]: key '%s' is not %s", i, b->key,
                                f->c->backend == BK_SERIAL ? "one character (escapes \\xHH)"
                                                           : "a key name (KEY_1) or code");
        if (add(f, code, (double)b->score, b->label))
            return MITTARI_ECONFIG;
    }
    return 0;
}

/* ---- lifecycle ---- */

static void fb_destroy(void *state)
{
    struct fb *f = state;
    if (!f)
        return;
    mtl_free(f->loop);
    free(f);
}

static int fb_create(const struct mittari_host *h, struct mittari_ctx *ctx, const void *config,
                     void **state)
{
    const struct conf *c = config;
    struct fb *f = calloc(1, sizeof(*f));
    int rc;

    if (!f)
        return -ENOMEM;
    f->h = h;
    f->ctx = ctx;
    f->c = c;
    f->unknown_log.interval_us = f->drop_log.interval_us = c->log_ms * 1000;
    struct mtl_conf lc = {
        .device = c->device, .path = c->line.port, .reopen_ms = c->line.reopen_ms};
    rc = make_map(f);
    if (!rc)
        rc = mtl_create(&f->loop, h, ctx, &lc, &dev_ops, f);
    if (rc) {
        fb_destroy(f);
        return rc;
    }
    *state = f;
    return 0;
}

/* mittari check: the button map, as create builds it */
static int fb_check(const void *config, const struct mittari_checker *chk)
{
    struct fb *f = calloc(1, sizeof(*f));
    if (!f)
        return 0; /* create will say */
    f->c = config;
    f->chk = chk;
    int rc = make_map(f);
    free(f);
    return rc ? 1 : 0;
}

static int fb_start(void *state)
{
    struct fb *f = state;
    return mtl_start(f->loop);
}

static void fb_stop(void *state)
{
    struct fb *f = state;
    mtl_stop(f->loop);
}

static const struct mittari_plugin feedback_plugin = {
    .abi_version = MITTARI_ABI_VERSION,
    .size = sizeof(struct mittari_plugin),
    .name = "feedback",
    .version = "1.0",
    .description = "Smiley-button feedback terminals on a serial line or as a USB keyboard "
                   "(evdev): a score per press",
    .options = options,
    .config_size = sizeof(struct conf),
    .create = fb_create,
    .start = fb_start,
    .stop = fb_stop,
    .destroy = fb_destroy,
    .check = fb_check,
};

MITTARI_PLUGIN_DEFINE(feedback_plugin)
