/* Fuzz the feedback plugin's device paths with its own code
 * (plugins/feedback/feedback.c, built in as the plugin is): an instance
 * made by the plugin's create() with a button map the first bytes choose,
 * then the rest as what the terminal sent: characters of a serial box
 * (fb_on_bytes) or input_event records of a keyboard-like box, cut
 * anywhere and put together by the evdev reassembly (fb_on_event). Every
 * reading that reaches emit must be a press of a configured button with
 * its score; never a crash, a leak or undefined behaviour. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evdev.h"
#include "feedback.h"

#define NB 4

static struct button buttons[NB];
static size_t nbuttons;

static int fz_emit(struct mittari_ctx *ctx, const struct mittari_reading *r)
{
    (void)ctx;
    if (r->size != sizeof(*r) || r->kind != MITTARI_KIND_EVENT || !r->metric ||
        strcmp(r->metric, "feedback") != 0 || r->subject_id || r->ntags > 1)
        abort();
    bool known = false;
    for (size_t i = 0; i < nbuttons; i++)
        known |= r->value == (double)buttons[i].score;
    if (!nbuttons)
        known = r->value >= 1 && r->value <= 4; /* the default map */
    if (!known)
        abort();
    return 0;
}

static void fz_log(struct mittari_ctx *ctx, int level, const char *fmt, ...)
{
    (void)ctx, (void)level, (void)fmt;
}

static int64_t clock_us;

static int64_t fz_now(struct mittari_ctx *ctx)
{
    (void)ctx;
    return clock_us += 7000;
}

static void fz_count(struct mittari_ctx *ctx, const char *device, const char *counter, uint64_t n)
{
    (void)ctx, (void)device, (void)counter, (void)n;
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
    .instance_name = fz_name,
    .count = fz_count,
};

const struct mittari_plugin *mittari_plugin_entry(void);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char keys[NB][8];
    const struct mittari_plugin *p = mittari_plugin_entry();
    struct conf conf = {
        .line = {.port = "/dev/null", .reopen_ms = 2000}, .metric = "feedback", .log_ms = 60000};
    void *state = NULL;

    if (size < 2 + NB)
        return 0;
    conf.backend = data[0] & 1;
    conf.min_interval_ms = data[0] & 2 ? 10 : 0;
    nbuttons = data[1] % (NB + 1);
    for (size_t i = 0; i < nbuttons; i++) {
        uint8_t k = data[2 + i];
        if (conf.backend == BK_SERIAL)
            snprintf(keys[i], sizeof(keys[i]), "\\x%02x", k);
        else
            snprintf(keys[i], sizeof(keys[i]), "%u", k);
        buttons[i] = (struct button){keys[i], (int64_t)k - 128, i % 2 ? "b" : NULL};
    }
    conf.buttons = (struct mittari_list){nbuttons, buttons};
    data += 2 + NB;
    size -= 2 + NB;
    if (p->create(&host, (struct mittari_ctx *)&host, &conf, &state))
        return 0; /* two buttons on one key: refused, as check would */
    if (conf.backend == BK_SERIAL) {
        fb_on_bytes(state, data, size);
    } else {
        struct mte_reasm r = {0};
        mte_reasm_feed(&r, data, size, fb_on_event, state);
    }
    p->destroy(state);
    return 0;
}
