/* Fuzz the framer (plugins/common/frame.c) in all three modes. The first
 * bytes choose the mode and its settings, the rest is the device's stream,
 * fed in chunks whose sizes come from the input too, so frames split across
 * reads are exercised. Every frame must keep its mode's invariants, and the
 * same stream fed in one piece must give the same frames. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

struct sink {
    const struct mtf_conf *c;
    uint64_t n;
    uint64_t hash; /* of every frame, in order */
};

static void on_frame(void *arg, const uint8_t *p, size_t len)
{
    struct sink *s = arg;
    const struct mtf_conf *c = s->c;

    if (c->mode == MTF_LINE) {
        if (len == 0 || len > c->max_len)
            abort();
        for (size_t i = 0; i + c->delimiter_len <= len; i++)
            if (memcmp(p + i, c->delimiter, c->delimiter_len) == 0)
                abort(); /* a delimiter inside a line */
    } else if (c->mode == MTF_STXETX) {
        if (len > c->max_len || memchr(p, c->stx, len) || memchr(p, c->etx, len))
            abort();
    } else {
        if (len != c->fixed_len || (c->sync_len && memcmp(p, c->sync, c->sync_len)))
            abort();
    }
    s->n++;
    s->hash = s->hash * 1099511628211ull ^ len;
    for (size_t i = 0; i < len; i++)
        s->hash = (s->hash ^ p[i]) * 1099511628211ull;
}

static void conf_from(const uint8_t *d, struct mtf_conf *c)
{
    memset(c, 0, sizeof(*c));
    c->mode = d[0] % 3;
    c->max_len = 1 + d[1] % 40;
    if (c->mode == MTF_LINE) {
        static const char *const delims[] = {"\n", "\r\n", ";;", "\x03", "ab"};
        const char *dl = delims[d[2] % 5];
        c->delimiter_len = strlen(dl);
        memcpy(c->delimiter, dl, c->delimiter_len);
    } else if (c->mode == MTF_STXETX) {
        c->stx = d[2] % 2 ? 0x02 : 'S';
        c->etx = d[2] % 4 < 2 ? 0x03 : 'E';
    } else {
        c->fixed_len = 1 + d[2] % 20;
        c->sync_len = d[3] % 3 < c->fixed_len ? d[3] % 3 : 0;
        c->sync[0] = 'P';
        c->sync[1] = 'C';
        c->max_len = 0;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mtf_conf c;
    struct mtf_framer *f, *g;
    struct sink a = {&c, 0, 0}, b = {&c, 0, 0};

    if (size < 5)
        return 0;
    conf_from(data, &c);
    unsigned chunk = 1 + data[4] % 16;
    data += 5;
    size -= 5;
    if (mtf_create(&f, &c) || mtf_create(&g, &c))
        abort();
    for (size_t off = 0; off < size; off += chunk)
        mtf_feed(f, data + off, size - off < chunk ? size - off : chunk, on_frame, &a);
    mtf_feed(g, data, size, on_frame, &b);
    if (a.n != b.n || a.hash != b.hash || mtf_stats(f)->overlong != mtf_stats(g)->overlong ||
        mtf_stats(f)->skipped_bytes != mtf_stats(g)->skipped_bytes || mtf_stats(f)->frames != a.n)
        abort(); /* how the stream was cut into reads changed the frames */
    mtf_reset(f);
    mtf_free(f);
    mtf_free(g);
    return 0;
}
