/* Fuzz the Lua sandbox and the decoder glue, two ways by the first byte:
 *   '-'   the input is a decoder script (Lua text, tight limits), run on a
 *         few fixed frames and on its own bytes;
 *   other the input is a frame for a fixed decoder that parses a line
 *         protocol and a binary one, as real devices send.
 * Whatever a script or a frame does, a call must return (limits), never
 * crash, leak or hit undefined behaviour, and every reading that reaches
 * emit must be one the SDK allows. The decoder is linked as the agent has
 * it; this file stands in for the host API (mt_host_api) it emits to. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "decoder.h"
#include "diag.h"
#include "input.h"

static const char fixed_decoder[] =
    "-- line protocol (IN=12 OUT=9, CARD 0a1b, TAG=x) or STX binary frames\n"
    "function decode(frame, ts)\n"
    "  if frame:byte(1) == 2 then\n"
    "    local id, counter, temp = string.unpack('>I2I4i2', frame, 2)\n"
    "    return {\n"
    "      {metric = 'count', kind = 'cumulative', counter = counter, bits = 32,\n"
    "       device = 'dev' .. id},\n"
    "      {metric = 'temp', kind = 'gauge', value = temp / 10, unit = 'Cel', ts = ts + 1},\n"
    "    }\n"
    "  end\n"
    "  local out = {}\n"
    "  for k, v in frame:gmatch('(%u+)=(%-?%d+%.?%d*)') do\n"
    "    out[#out + 1] = {metric = k:lower(), kind = 'gauge', value = tonumber(v)}\n"
    "  end\n"
    "  local card = frame:match('CARD%s+(%x+)')\n"
    "  if card then\n"
    "    out[#out + 1] = {metric = 'checkin', kind = 'event', subject = card, space = 'card'}\n"
    "  end\n"
    "  local tag = frame:match('TAG=(%w+)')\n"
    "  if tag then for _, r in ipairs(out) do r.tags = {t = tag} end end\n"
    "  local n = frame:match('^N(%d%d?%d?)$')\n"
    "  if n then for i = 1, tonumber(n) do out[i] = {metric = 'n', kind = 'delta', value = i} "
    "end end\n"
    "  return out\n"
    "end\n";

static bool text_ok(const char *s, size_t max)
{
    return s && strlen(s) <= max;
}

/* The SDK's promises about a reading, checked on everything the decoder
 * hands to emit. */
static int fuzz_emit(struct mittari_ctx *ctx, const struct mittari_reading *r)
{
    (void)ctx;
    if (r->size != sizeof(*r) || !text_ok(r->metric, 63) || !*r->metric)
        abort();
    if (r->kind < MITTARI_KIND_DELTA || r->kind > MITTARI_KIND_EVENT)
        abort();
    if ((r->unit && !text_ok(r->unit, 31)) || (r->device && !text_ok(r->device, 63)))
        abort();
    if (r->kind == MITTARI_KIND_CUMULATIVE) {
        unsigned bits = r->counter_bits ? r->counter_bits : 64;
        if ((bits != 16 && bits != 32 && bits != 64) || (bits < 64 && r->counter >> bits))
            abort();
    } else if (!isfinite(r->value)) {
        abort();
    }
    if (r->subject_id && (r->subject_id_len < 1 || r->subject_id_len > 64))
        abort();
    if (r->subject_space && (!r->subject_id || !text_ok(r->subject_space, 32)))
        abort();
    if (r->ntags > 8 || (r->ntags && !r->tags) || r->ts_us < 0)
        abort();
    for (size_t i = 0; i < r->ntags; i++)
        if (!text_ok(r->tags[i].key, 32) || !text_ok(r->tags[i].value, 128))
            abort();
    /* read every subject byte, so ASan sees a dangling pointer */
    volatile unsigned char sum = 0;
    for (size_t i = 0; r->subject_id && i < r->subject_id_len; i++)
        sum += ((const unsigned char *)r->subject_id)[i];
    (void)sum;
    return strcmp(r->metric, "refuse") == 0 ? MITTARI_EREADING : 0;
}

static void fuzz_log(struct mittari_ctx *ctx, int level, const char *fmt, ...)
{
    (void)ctx, (void)level, (void)fmt;
}

static void fuzz_count(struct mittari_ctx *ctx, const char *device, const char *counter, uint64_t n)
{
    (void)ctx, (void)device, (void)counter, (void)n;
}

static const char *fuzz_name(struct mittari_ctx *ctx)
{
    (void)ctx;
    return "fuzz";
}

const struct mittari_host mt_host_api = {
    .abi_version = MITTARI_ABI_VERSION,
    .size = sizeof(struct mittari_host),
    .emit = fuzz_emit,
    .log = fuzz_log,
    .count = fuzz_count,
    .instance_name = fuzz_name,
};

/* input.c's: which instance a plugin callback runs for, for the crash
 * handler (crash.c); the decoders here belong to no instance */
const struct mt_crash_who *mt_input_who(const struct mittari_ctx *ctx)
{
    (void)ctx;
    return NULL;
}

static struct mittari_decoder *fixed;
static char script_path[64];

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n)
        abort();
    fclose(f);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char path[64];
    (void)argc, (void)argv;
    mt_diag_set_level(0); /* the complaints are expected */
    snprintf(path, sizeof(path), "/tmp/fuzz_luabox.%d.fixed.lua", (int)getpid());
    snprintf(script_path, sizeof(script_path), "/tmp/fuzz_luabox.%d.lua", (int)getpid());
    write_file(path, fixed_decoder, sizeof(fixed_decoder) - 1);
    if (mt_decoder_load(NULL, path, &fixed))
        abort();
    unlink(path);
    return 0;
}

static void run_script(const uint8_t *data, size_t size)
{
    static const struct mt_luabox_limits lim = {
        .mem_bytes = 256 << 10, .instructions = 20000, .time_ms = 200};
    static const char binary[] = "\x02\x00\x07\x00\x00\x01\x00\xff\x9c";
    struct mittari_decoder *d = NULL;

    write_file(script_path, data, size);
    if (mt_decoder_open(&mt_host_api, NULL, script_path, &lim, &d) == 0) {
        mt_decoder_run(d, "IN=12 OUT=9", 11, 1700000000000000);
        mt_decoder_run(d, binary, sizeof(binary) - 1, 0);
        mt_decoder_run(d, NULL, 0, 1);
        mt_decoder_run(d, data, size, 2);
        mt_decoder_free(d);
    }
    unlink(script_path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size && data[0] == '-') {
        run_script(data, size);
        return 0;
    }
    int rc = mt_decoder_run(fixed, data, size, 1700000000000000);
    if (rc < 0 && rc != MITTARI_EREADING)
        abort(); /* the stand-in emit never fails otherwise */
    if (rc > MT_DECODER_MAX_READINGS)
        abort();
    return 0;
}
