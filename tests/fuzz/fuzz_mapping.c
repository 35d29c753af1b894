/* Fuzz the serial plugin's frame-to-readings step with its own code: a
 * `values` list the first bytes choose (fields, constants, kinds, counter
 * widths, scales), checked by mtm_check as create does, then applied by
 * mtm_apply to the key=value fields of the rest of the input (kv.c); and
 * mtf_escape, which writes a frame's bytes into a log line, on the input
 * with an output size the input chooses. A reading must hold what the SDK
 * allows (a counter within its width, a finite value, a metric); the log
 * text must be printable and end inside its buffer. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "kv.h"
#include "mapping.h"

#define NV 4

static const char *const fields[] = {"IN", "OUT", "T", "X1", NULL};
static const char *const consts[] = {NULL, "1", "-2.5", "1e300", "0x10", "18446744073709551615"};
static const double scales[] = {1, 0.1, -1, 1e12, -1e12, 1e-12};

static void escape(const uint8_t *data, size_t size, size_t outlen)
{
    char out[300];
    memset(out, 'Z', sizeof(out));
    mtf_escape(data, size, out, outlen);
    if (!outlen)
        return;
    size_t n = strnlen(out, outlen);
    if (n >= outlen)
        abort(); /* no NUL inside the buffer */
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)out[i] < 0x20 || (unsigned char)out[i] > 0x7e)
            abort();
    if (outlen < sizeof(out) && out[outlen] != 'Z')
        abort(); /* wrote past it */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mtm_value v[NV];
    struct mtd_fields fs;
    struct mtm_out out;
    char err[200];

    if (size < 2 + 2 * NV)
        return 0;
    escape(data, size, data[0] % 300);
    size_t nv = 1 + data[1] % NV;
    for (size_t i = 0; i < nv; i++) {
        uint8_t a = data[2 + 2 * i], b = data[3 + 2 * i];
        v[i] = (struct mtm_value){
            .field = fields[a % 5],
            .value = consts[(a / 5) % 6],
            .metric = i % 2 ? "visitors_in" : "t",
            .kind = b % 4,
            .bits = (b / 4) % 3,
            .scale = scales[(b / 12) % 6],
            .device = b & 0x80 ? "dev-1" : NULL,
        };
    }
    data += 2 + 2 * NV;
    size -= 2 + 2 * NV;
    struct mittari_list values = {nv, v};
    if (mtm_check(&values, NULL, 0, err, sizeof(err)))
        return 0; /* create refuses it: never applied */
    if (mtk_parse(data, size, &fs) < 0)
        return 0;
    int n = mtm_apply(&values, &fs, "dev", 1700000000000000, &out, err, sizeof(err));
    if (n < 0) {
        if (out.n != 0 || !memchr(err, 0, sizeof(err)))
            abort(); /* all or nothing */
        return 0;
    }
    if ((size_t)n != out.n || out.n > nv)
        abort();
    for (size_t i = 0; i < out.n; i++) {
        const struct mittari_reading *r = &out.r[i];
        if (!r->metric || !r->device || r->ts_us != 1700000000000000)
            abort();
        if (r->kind == MITTARI_KIND_CUMULATIVE) {
            unsigned bits = r->counter_bits;
            if ((bits != 16 && bits != 32 && bits != 64) || (bits < 64 && r->counter >> bits))
                abort();
        } else if (!isfinite(r->value)) {
            abort();
        }
    }
    return 0;
}
