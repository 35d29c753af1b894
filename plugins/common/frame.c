/*
 * frame: cuts a device's byte stream into frames (see frame.h).
 *
 * Owns one buffer of max_len (plus delimiter) bytes per framer, allocated at
 * create; feeding never allocates. Any thread, one at a time per framer.
 *
 * Byte by byte on purpose: devices send a few bytes per second, and the
 * state machine stays obvious for every split of a frame across reads.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"
#include "frame.h"

struct mtf_framer {
    struct mtf_conf c;
    bool strip_cr;   /* LINE with "\n": a trailing \r is not part of the line */
    bool in_frame;   /* STXETX: after an STX */
    bool discarding; /* dropping an over-long frame up to its end */
    size_t len, cap;
    size_t dirty;    /* buf[0..dirty) may hold bytes of the device: wiped by drop() */
    uint8_t tail[8]; /* LINE, discarding: the last bytes, to spot the delimiter */
    size_t ntail;
    struct mtf_stats st;
    uint8_t buf[];
};

static int check_conf(const struct mtf_conf *c)
{
    switch (c->mode) {
    case MTF_LINE:
        if (c->delimiter_len < 1 || c->delimiter_len > sizeof(c->delimiter))
            return -EINVAL;
        break;
    case MTF_STXETX:
        if (c->stx == c->etx)
            return -EINVAL;
        break;
    case MTF_FIXED:
        if (c->fixed_len < 1 || c->fixed_len > MTF_MAX_LEN || c->sync_len > sizeof(c->sync) ||
            c->sync_len > c->fixed_len || (c->max_len && c->fixed_len > c->max_len))
            return -EINVAL;
        return 0; /* max_len 0: fixed_len */
    default:
        return -EINVAL;
    }
    return c->max_len < 1 || c->max_len > MTF_MAX_LEN ? -EINVAL : 0;
}

int mtf_create(struct mtf_framer **out, const struct mtf_conf *c)
{
    struct mtf_framer *f;
    size_t cap;
    int rc = check_conf(c);

    *out = NULL;
    if (rc)
        return rc;
    if (c->mode == MTF_FIXED)
        cap = c->fixed_len;
    else if (c->mode == MTF_LINE)
        cap = c->max_len + c->delimiter_len + 1; /* + the \r that is stripped */
    else
        cap = c->max_len;
    f = calloc(1, sizeof(*f) + cap);
    if (!f)
        return -ENOMEM;
    f->c = *c;
    f->cap = cap;
    f->strip_cr = c->mode == MTF_LINE && c->delimiter_len == 1 && c->delimiter[0] == '\n';
    *out = f;
    return 0;
}

void mtf_free(struct mtf_framer *f)
{
    if (f)
        explicit_bzero(f->buf, f->cap);
    free(f);
}

/* Frames may hold raw card numbers (issue 15 item 12): whatever the buffer
 * held beyond keep bytes goes, on every discard and after every frame. */
static void drop(struct mtf_framer *f, size_t keep)
{
    if (f->dirty > keep)
        explicit_bzero(f->buf + keep, f->dirty - keep);
    f->dirty = keep;
    f->len = keep;
}

static void put(struct mtf_framer *f, uint8_t b)
{
    f->buf[f->len++] = b;
    if (f->len > f->dirty)
        f->dirty = f->len;
}

static void deliver(struct mtf_framer *f, size_t len, mtf_frame_cb cb, void *arg)
{
    f->st.frames++;
    cb(arg, f->buf, len);
    drop(f, 0); /* the frame, its delimiter and anything else */
}

/* ---- lines ---- */

static void drop_tail(struct mtf_framer *f)
{
    explicit_bzero(f->tail, sizeof(f->tail));
    f->ntail = 0;
}

static bool tail_has_delim(struct mtf_framer *f, uint8_t b)
{
    size_t d = f->c.delimiter_len;
    if (f->ntail < d) {
        f->tail[f->ntail++] = b;
    } else {
        memmove(f->tail, f->tail + 1, d - 1);
        f->tail[d - 1] = b;
    }
    return f->ntail == d && memcmp(f->tail, f->c.delimiter, d) == 0;
}

/* The buffer is full and holds no delimiter: drop it, but keep its last
 * bytes, which may be the start of the delimiter. */
static void start_discarding(struct mtf_framer *f)
{
    size_t keep = f->c.delimiter_len - 1;

    if (keep > f->len)
        keep = f->len;
    f->st.overlong++;
    f->discarding = true;
    f->ntail = 0;
    for (size_t i = f->len - keep; i < f->len; i++)
        f->tail[f->ntail++] = f->buf[i];
    drop(f, 0);
}

static void end_line(struct mtf_framer *f, mtf_frame_cb cb, void *arg)
{
    size_t n = f->len - f->c.delimiter_len;

    if (f->strip_cr && n > 0 && f->buf[n - 1] == '\r')
        n--;
    if (n > f->c.max_len)
        f->st.overlong++;
    if (n > 0 && n <= f->c.max_len)
        deliver(f, n, cb, arg);
    else
        drop(f, 0);
}

static void line_byte(struct mtf_framer *f, uint8_t b, mtf_frame_cb cb, void *arg)
{
    size_t d = f->c.delimiter_len;

    if (f->discarding) {
        if (tail_has_delim(f, b)) {
            f->discarding = false;
            drop_tail(f);
        }
        return;
    }
    put(f, b);
    if (f->len >= d && memcmp(f->buf + f->len - d, f->c.delimiter, d) == 0)
        end_line(f, cb, arg);
    else if (f->len == f->cap)
        start_discarding(f);
}

/* ---- STX ... ETX ---- */

static void stxetx_byte(struct mtf_framer *f, uint8_t b, mtf_frame_cb cb, void *arg)
{
    if (!f->in_frame) {
        if (b == f->c.stx) {
            f->in_frame = true;
            f->discarding = false;
            drop(f, 0);
        } else {
            f->st.skipped_bytes++;
        }
        return;
    }
    if (b == f->c.stx) {
        /* a frame cut short, then a new one: the partial one is a bad
         * frame (the reader was moved, a byte was lost), not noise */
        if (!f->discarding)
            f->st.cut++;
        f->discarding = false;
        drop(f, 0);
    } else if (b == f->c.etx) {
        if (!f->discarding)
            deliver(f, f->len, cb, arg);
        f->in_frame = false;
        f->discarding = false;
        drop(f, 0);
    } else if (!f->discarding) {
        if (f->len == f->cap) {
            f->st.overlong++;
            f->discarding = true;
            drop(f, 0);
        } else {
            put(f, b);
        }
    }
}

/* ---- fixed length ---- */

/* After a mismatch inside the sync pattern: keep the longest end of what is
 * buffered that is still a start of the pattern. */
static void resync(struct mtf_framer *f)
{
    size_t k = f->len - 1;

    while (k > 0 && memcmp(f->buf + f->len - k, f->c.sync, k) != 0)
        k--;
    f->st.skipped_bytes += f->len - k;
    memmove(f->buf, f->buf + f->len - k, k);
    drop(f, k);
}

static void fixed_byte(struct mtf_framer *f, uint8_t b, mtf_frame_cb cb, void *arg)
{
    put(f, b);
    if (f->len <= f->c.sync_len && b != f->c.sync[f->len - 1]) {
        resync(f);
        return;
    }
    if (f->len == f->c.fixed_len)
        deliver(f, f->len, cb, arg);
}

void mtf_feed(struct mtf_framer *f, const uint8_t *data, size_t len, mtf_frame_cb cb, void *arg)
{
    for (size_t i = 0; i < len; i++) {
        switch (f->c.mode) {
        case MTF_LINE:
            line_byte(f, data[i], cb, arg);
            break;
        case MTF_STXETX:
            stxetx_byte(f, data[i], cb, arg);
            break;
        default:
            fixed_byte(f, data[i], cb, arg);
            break;
        }
    }
}

void mtf_reset(struct mtf_framer *f)
{
    if (!f->discarding)
        f->st.skipped_bytes += f->len + (f->in_frame ? 1 : 0);
    drop(f, 0);
    drop_tail(f);
    f->in_frame = false;
    f->discarding = false;
}

const uint8_t *mtf_buffer(const struct mtf_framer *f, size_t *cap)
{
    *cap = f->cap;
    return f->buf;
}

const struct mtf_stats *mtf_stats(const struct mtf_framer *f)
{
    return &f->st;
}

/* ---- option text ---- */

static int escape(const char **s, uint8_t *b)
{
    const char *p = *s + 1;
    switch (*p) {
    case 'n':
        *b = '\n';
        break;
    case 'r':
        *b = '\r';
        break;
    case 't':
        *b = '\t';
        break;
    case 'e':
        *b = 0x1b;
        break;
    case '\\':
        *b = '\\';
        break;
    case 'x': {
        int hi = mtx_hexval(p[1]), lo = hi < 0 ? -1 : mtx_hexval(p[2]);
        if (lo < 0)
            return -EINVAL;
        *b = (uint8_t)(hi << 4 | lo);
        p += 2;
        break;
    }
    default:
        return -EINVAL;
    }
    *s = p + 1;
    return 0;
}

int mtf_unescape(const char *text, uint8_t *out, size_t cap)
{
    size_t n = 0;
    const char *s = text;

    while (*s) {
        uint8_t b;
        if (*s == '\\') {
            if (escape(&s, &b))
                return -EINVAL;
        } else {
            b = (uint8_t)*s++;
        }
        if (n == cap)
            return -EINVAL;
        out[n++] = b;
    }
    return (int)n;
}

void mtf_escape(const uint8_t *p, size_t len, char *out, size_t outlen)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;

    if (!outlen)
        return;
    for (size_t i = 0; i < len && i < 64; i++) {
        bool plain = p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\';
        if (o + (plain ? 1 : 4) >= outlen)
            break;
        if (plain) {
            out[o++] = (char)p[i];
        } else {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[p[i] >> 4];
            out[o++] = hex[p[i] & 15];
        }
    }
    out[o] = 0;
}
