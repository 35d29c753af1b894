/*
 * cardreader: welfare-card check-ins from serial (EM4100 frames, ASCII
 * lines), keyboard-wedge (evdev) and PC/SC readers. The option table, the
 * lifecycle, and the one path every card read takes (cr_card). See
 * cardreader.h for what the backends share and docs/plugins/cardreader.md
 * for the behaviour.
 */
#include "cardreader.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "debounce.h"

#define DEBOUNCE_CAP 1024             /* distinct cards inside one window */
#define COMPLAIN_US (600 * 1000000LL) /* repeat a complaint at most every 10 min */

static const char *const backend_names[] = {"serial", "hid", "pcsc", NULL};
static const char *const frame_names[] = {"em4100", "line", "line-cr", NULL};
static const struct cr_backend *const backends[] = {&cr_backend_serial, &cr_backend_hid,
                                                    &cr_backend_pcsc};

static const struct mittari_option cr_options[] = {
    {.name = "backend",
     .type = MITTARI_OPT_ENUM,
     .flags = MITTARI_OPT_REQUIRED,
     .values = backend_names,
     .offset = offsetof(struct cr_conf, backend),
     .help = "How the reader is attached: serial (EM4100 frames or ASCII lines on a tty), hid "
             "(keyboard wedge, read through evdev), pcsc (NFC/contactless reader via pcscd)."},
    {.name = "metric",
     .type = MITTARI_OPT_STRING,
     .def = "checkin",
     .offset = offsetof(struct cr_conf, metric),
     .help = "Metric of the check-in events."},
    {.name = "service",
     .type = MITTARI_OPT_STRING,
     .offset = offsetof(struct cr_conf, service),
     .help = "Service this reader stands at (swimming_hall, museum, ...): tag 'service' of "
             "every check-in."},
    {.name = "debounce",
     .type = MITTARI_OPT_DURATION,
     .def = "3s",
     .min = 0,
     .max = 3600000,
     .offset = offsetof(struct cr_conf, debounce_ms),
     .help = "The same card again within this time of its last read is one check-in; 0 = "
             "every read counts."},
    {.name = "port",
     .type = MITTARI_OPT_STRING,
     .offset = offsetof(struct cr_conf, serial.port),
     .help = "serial: /dev/serial/by-id/... (stable, see 'mittari ports'), /dev/ttyUSB0, or a "
             "pty."},
    {.name = "frame",
     .type = MITTARI_OPT_ENUM,
     .def = "em4100",
     .values = frame_names,
     .offset = offsetof(struct cr_conf, frame),
     .help = "serial: em4100 (STX...ETX frames of RDM6300 and ID-12LA, checksum verified), "
             "line (ASCII, LF or CR LF), line-cr (ASCII, CR or CR LF)."},
    {.name = "id_format",
     .type = MITTARI_OPT_ENUM,
     .def = "em4100-dec",
     .values = cr_idfmt_names,
     .offset = offsetof(struct cr_conf, id_format),
     .help = "serial lines and hid: what the reader types: em4100-dec (10 digits), em4100-hex, "
             "wiegand26 (FC,CN), uid-hex (NFC UID bytes), text."},
    MTS_LINE_OPTIONS(struct cr_conf, serial),
    {.name = "evdev",
     .type = MITTARI_OPT_STRING,
     .offset = offsetof(struct cr_conf, evdev),
     .help = "hid: the reader's event device, /dev/input/by-id/...-event-kbd."},
    {.name = "grab",
     .type = MITTARI_OPT_BOOL,
     .def = "true",
     .offset = offsetof(struct cr_conf, grab),
     .help = "hid: take the device for this agent alone (EVIOCGRAB), so card numbers never "
             "type into a console or another program."},
    {.name = "key_timeout",
     .type = MITTARI_OPT_DURATION,
     .def = "500ms",
     .min = 0,
     .max = 60000,
     .offset = offsetof(struct cr_conf, key_gap_ms),
     .help = "hid: a longer pause between two keys drops the card typed so far; 0 = no limit."},
    {.name = "reader",
     .type = MITTARI_OPT_STRING,
     .offset = offsetof(struct cr_conf, reader),
     .help = "pcsc: a part of the reader's name (see pcsc_scan); unset = the first reader."},
    {.name = "poll_interval",
     .type = MITTARI_OPT_DURATION,
     .def = "250ms",
     .min = 20,
     .max = 10000,
     .offset = offsetof(struct cr_conf, pcsc_poll_ms),
     .help = "pcsc: how often pcscd is asked for card and reader changes."},
    {.name = "random_uids",
     .type = MITTARI_OPT_BOOL,
     .def = "false",
     .offset = offsetof(struct cr_conf, random_uids),
     .help = "pcsc: also count cards with a random UID (4 bytes starting 08: passports, some "
             "ID cards), each tap a new subject."},
    {0},
};

static bool valid_metric(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              strchr("_.:-", *s)))
            return false;
    return true;
}

/* Options that belong to another backend are a mistake worth stopping for:
 * the reader would silently not be read the way the file says. */
static const char *conf_problem(const struct cr_conf *f, const char **path)
{
    bool serial = f->backend == CR_BACKEND_SERIAL, hid = f->backend == CR_BACKEND_HID;

    *path = NULL;
    if (serial != (f->serial.port != NULL))
        return serial ? "backend serial needs 'port'"
                      : (*path = "port", "'port' is only for backend serial");
    if (hid != (f->evdev != NULL))
        return hid ? "backend hid needs 'evdev'" : (*path = "evdev", "'evdev' is only for backend hid");
    if (f->reader && f->backend != CR_BACKEND_PCSC)
        return *path = "reader", "'reader' is only for backend pcsc";
    if (!valid_metric(f->metric))
        return *path = "metric", "'metric' must be [A-Za-z0-9_.:-], at most 63 characters";
    if (f->service && (!*f->service || strlen(f->service) > 128))
        return *path = "service", "'service' must be 1 to 128 characters";
    return NULL;
}

/* mittari check reports these at the option they are about */
static int cr_check(const void *config, const struct mittari_checker *chk)
{
    const char *path;
    const char *problem = conf_problem(config, &path);
    if (!problem)
        return 0;
    chk->error(chk, path, "%s", problem);
    return 1;
}

static void cr_free(struct cr *c)
{
    cr_debounce_free(c->debounce);
    explicit_bzero(c, sizeof(*c));
    free(c);
}

static int cr_create(const struct mittari_host *host, struct mittari_ctx *ctx, const void *config,
                     void **state)
{
    const struct cr_conf *f = config;
    const char *path;
    const char *problem = conf_problem(f, &path);
    struct cr *c;
    int rc;

    if (problem) {
        host->log(ctx, MITTARI_LOG_ERR, "%s", problem);
        return MITTARI_ECONFIG;
    }
    c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    *c = (struct cr){.host = host, .ctx = ctx, .conf = f, .backend = backends[f->backend]};
    if (f->service)
        c->tag = (struct mittari_tag){.key = "service", .value = f->service};
    rc = cr_debounce_create(&c->debounce, f->debounce_ms * 1000, DEBOUNCE_CAP);
    if (!rc)
        rc = c->backend->create(c, &c->bstate);
    if (rc) {
        cr_free(c);
        return rc;
    }
    *state = c;
    return 0;
}

static void on_expire(void *arg)
{
    cr_expire(arg);
}

static int cr_start(void *state)
{
    struct cr *c = state;
    int64_t every = c->conf->debounce_ms < 1000 ? 1000 : c->conf->debounce_ms;

    /* fingerprints go one window after their card's last read; the pcsc
     * backend's worker runs do this themselves (its table is theirs) */
    if (c->conf->debounce_ms > 0 && c->conf->backend != CR_BACKEND_PCSC) {
        int rc = c->host->timer_start(c->ctx, (uint64_t)every, (uint64_t)every, on_expire, c,
                                      &c->expire);
        if (rc)
            return rc;
    }
    return c->backend->start(c->bstate);
}

static void cr_stop(void *state)
{
    struct cr *c = state;
    if (c->expire)
        c->host->timer_stop(c->expire);
    c->expire = NULL;
    c->backend->stop(c->bstate);
}

static void cr_destroy(void *state)
{
    struct cr *c = state;
    c->backend->destroy(c->bstate);
    cr_free(c);
}

void cr_card(struct cr *c, struct cr_subject *s)
{
    int64_t now = c->host->now(c->ctx);
    struct mittari_reading r = MITTARI_READING_INIT;
    uint64_t evicted;
    int rc;

    cr_debounce_expire(c->debounce, now);
    if (cr_debounce_repeat(c->debounce, s->space, s->id, s->len, now)) {
        c->host->count(c->ctx, NULL, "repeats", 1);
        goto out;
    }
    r.ts_us = now;
    r.metric = c->conf->metric;
    r.kind = MITTARI_KIND_EVENT;
    r.value = 1;
    r.subject_id = s->id;
    r.subject_id_len = s->len;
    r.subject_space = s->space;
    r.tags = c->tag.key ? &c->tag : NULL;
    r.ntags = c->tag.key ? 1 : 0;
    rc = c->host->emit(c->ctx, &r);
    if (rc == 0) {
        c->host->count(c->ctx, NULL, "checkins", 1);
        goto out;
    }
    /* not stored: let the next read of this card (readers repeat) try again */
    cr_debounce_forget(c->debounce, s->space, s->id, s->len);
    cr_bad(c, "refused",
           rc == -EAGAIN ? "check-in refused: the agent's intake queue is full"
           : rc == MITTARI_EREADING
               ? "check-in refused: the agent did not take the card number of this form"
               : "check-in refused by the agent");
out:
    evicted = cr_debounce_take_evicted(c->debounce);
    if (evicted)
        c->host->count(c->ctx, NULL, "debounce_evicted", evicted);
    cr_subject_wipe(s);
}

static struct cr_complaint *complaint(struct cr *c, const char *counter, const char *what)
{
    for (size_t i = 0; i < CR_COMPLAINTS; i++) {
        struct cr_complaint *k = &c->complaints[i];
        if (!k->counter)
            *k = (struct cr_complaint){
                .counter = counter, .what = what, .limit.interval_us = COMPLAIN_US};
        if (strcmp(k->counter, counter) == 0 && strcmp(k->what, what) == 0)
            return k;
    }
    return NULL;
}

void cr_bad(struct cr *c, const char *counter, const char *what)
{
    struct cr_complaint *k = complaint(c, counter, what);
    uint64_t held_back;

    c->host->count(c->ctx, NULL, counter, 1);
    if (!k || !mtr_allow(&k->limit, c->host->now(c->ctx), &held_back))
        return;
    if (k->logged)
        c->host->log(c->ctx, MITTARI_LOG_WARNING, "%s (and %llu more since the last report)", what,
                     (unsigned long long)held_back);
    else
        c->host->log(c->ctx, MITTARI_LOG_WARNING,
                     "%s; more are counted as '%s' and reported every 10 minutes", what, counter);
    k->logged = true;
}

void cr_health(struct cr *c, int health, const char *reason)
{
    c->host->set_health(c->ctx, NULL, health, reason);
}

void cr_expire(struct cr *c)
{
    cr_debounce_expire(c->debounce, c->host->now(c->ctx));
}

static const struct mittari_plugin cr_plugin = {
    .abi_version = MITTARI_ABI_VERSION,
    .size = sizeof(struct mittari_plugin),
    .name = "cardreader",
    .version = "1.0",
    .description = "Card check-ins from serial EM4100/ASCII, keyboard-wedge (evdev) and PC/SC "
                   "readers; the agent pseudonymises the card numbers",
    .options = cr_options,
    .config_size = sizeof(struct cr_conf),
    .create = cr_create,
    .start = cr_start,
    .stop = cr_stop,
    .destroy = cr_destroy,
    .check = cr_check,
};

MITTARI_PLUGIN_DEFINE(cr_plugin)
