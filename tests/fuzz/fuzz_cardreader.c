/* Fuzz the cardreader plugin's device paths with the plugin's own code
 * (plugins/cardreader, built in as the plugin is): an instance made by the
 * plugin's create() for the backend and form the first bytes choose, then
 * the rest of the input as what the device sent:
 *   serial  bytes read from the port (EM4100 frames, ASCII lines): the
 *           framer, em4100.c or cardid.c, debounce, emit (cr_serial_data);
 *   hid     bytes read from the event device, as input_event records cut
 *           anywhere: reassembly, key timing, cardid.c (cr_hid_data);
 *   pcsc    an answer to GET DATA and, for a 6C xx, the second answer
 *           (cr_pcsc_answer, cr_pcsc_uid).
 * Never a crash, a leak or undefined behaviour; every reading that reaches
 * emit is a check-in with a subject of 1-64 bytes and a space; and no log
 * line holds a run of digits that could be a card number. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardreader.h"

static int64_t clock_us;

static int fz_emit(struct mittari_ctx *ctx, const struct mittari_reading *r)
{
    (void)ctx;
    if (r->size != sizeof(*r) || r->kind != MITTARI_KIND_EVENT || r->value != 1 || !r->metric ||
        !r->subject_id || r->subject_id_len < 1 || r->subject_id_len > 64 || !r->subject_space)
        abort();
    volatile uint8_t sum = 0; /* every subject byte, for ASan */
    for (size_t i = 0; i < r->subject_id_len; i++)
        sum += ((const uint8_t *)r->subject_id)[i];
    (void)sum;
    return 0;
}

/* A run of 6 or more hex digits with at least 2 decimal ones: a number. */
static void no_number(const char *line)
{
    size_t run = 0, digits = 0;
    for (const char *p = line;; p++) {
        bool hex = (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F');
        if (!hex) {
            if (run >= 6 && digits >= 2)
                abort();
            run = digits = 0;
            if (!*p)
                return;
            continue;
        }
        run++;
        digits += *p >= '0' && *p <= '9';
    }
}

static void fz_log(struct mittari_ctx *ctx, int level, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    (void)ctx, (void)level;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    no_number(line);
}

static int64_t fz_now(struct mittari_ctx *ctx)
{
    (void)ctx;
    return clock_us += 1000;
}

static void fz_count(struct mittari_ctx *ctx, const char *device, const char *counter, uint64_t n)
{
    (void)ctx, (void)device, (void)counter, (void)n;
}

static void fz_health(struct mittari_ctx *ctx, const char *device, int health, const char *reason)
{
    (void)ctx, (void)device, (void)health;
    if (reason)
        no_number(reason);
}

static const char *fz_name(struct mittari_ctx *ctx)
{
    (void)ctx;
    return "fuzz";
}

static const struct mittari_host host = {
    .abi_version = MITTARI_ABI_VERSION,
    .size = sizeof(struct mittari_host),
    .emit = fz_emit,
    .log = fz_log,
    .now = fz_now,
    .set_health = fz_health,
    .instance_name = fz_name,
    .count = fz_count,
};

const struct mittari_plugin *mittari_plugin_entry(void);

/* The second answer of a pcsc exchange: the rest of the input. */
struct again {
    const uint8_t *p;
    size_t n;
};

static long fz_again(void *arg, uint8_t le, uint8_t *resp, size_t size)
{
    struct again *a = arg;
    (void)le;
    if (a->n < 2 || a->n > size)
        return -1;
    memcpy(resp, a->p, a->n);
    return (long)a->n;
}

static void pcsc(struct cr *c, const uint8_t *data, size_t size)
{
    uint8_t resp[CR_PCSC_RESP_MAX];
    if (size < 1)
        return;
    size_t n = data[0] % (CR_PCSC_RESP_MAX + 1);
    data++;
    size--;
    if (n > size)
        n = size;
    memcpy(resp, data, n);
    struct again a = {data + n, size - n};
    cr_pcsc_answer(c, resp, (long)n, fz_again, &a);
    cr_pcsc_uid(c, data, size); /* any bytes as a UID, any length */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct mittari_plugin *p = mittari_plugin_entry();
    struct cr_conf conf = {.metric = "checkin",
                           .serial = {.port = "/dev/null", .reopen_ms = 2000},
                           .evdev = NULL,
                           .pcsc_poll_ms = 250};
    void *state = NULL;

    if (size < 3)
        return 0;
    conf.backend = data[0] % 3;
    conf.frame = (data[0] / 3) % 3;
    conf.id_format = data[1] % 5;
    conf.debounce_ms = data[1] & 0x80 ? 3000 : 0;
    conf.key_gap_ms = data[2] % 4 * 250; /* 0: no limit */
    conf.random_uids = data[2] & 0x80;
    conf.service = data[2] & 0x40 ? "library" : NULL;
    if (conf.backend == CR_BACKEND_HID) {
        conf.serial.port = NULL;
        conf.evdev = "/dev/null";
    } else if (conf.backend == CR_BACKEND_PCSC) {
        conf.serial.port = NULL;
    }
    data += 3;
    size -= 3;
    if (p->create(&host, (struct mittari_ctx *)&host, &conf, &state))
        abort(); /* a valid configuration */
    struct cr *c = state;
    if (conf.backend == CR_BACKEND_SERIAL)
        cr_serial_data(c->bstate, data, size);
    else if (conf.backend == CR_BACKEND_HID)
        cr_hid_data(c->bstate, data, size);
    else
        pcsc(c, data, size);
    p->destroy(state);
    return 0;
}
