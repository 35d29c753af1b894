/*
 * frame: cuts a byte stream from a device into frames: delimiter-terminated
 * lines, STX ... ETX frames, or fixed-length frames, each with a maximum
 * length. Pure (no I/O, no allocation after create), one framer per device,
 * any thread that owns it. Fuzzed (tests/fuzz/fuzz_frame.c).
 *
 * Bad input is counted, never turned into a frame: a frame longer than
 * max_len is dropped up to its end; bytes outside STX ... ETX are skipped;
 * a frame split across reads is put together.
 */
#ifndef MTF_FRAME_H
#define MTF_FRAME_H

#include <stddef.h>
#include <stdint.h>

enum mtf_mode { MTF_LINE, MTF_STXETX, MTF_FIXED };

struct mtf_conf {
    int mode;               /* enum mtf_mode */
    char delimiter[8];      /* LINE: e.g. "\n" or "\r\n"; a trailing \r is stripped for "\n" */
    size_t delimiter_len;
    uint8_t stx, etx;       /* STXETX: 0x02, 0x03 */
    size_t fixed_len;       /* FIXED */
    size_t max_len;         /* a longer frame is dropped and counted */
};

struct mtf_stats {
    uint64_t frames, overlong, skipped_bytes;
};

struct mtf_framer;

/* frame: the frame without delimiters or STX/ETX, borrowed for the call. */
typedef void (*mtf_frame_cb)(void *arg, const uint8_t *frame, size_t len);

int mtf_create(struct mtf_framer **out, const struct mtf_conf *c);
void mtf_free(struct mtf_framer *f);
/* Feeds bytes; calls cb for each complete frame, in order. */
void mtf_feed(struct mtf_framer *f, const uint8_t *data, size_t len, mtf_frame_cb cb, void *arg);
/* Drops a partial frame (the device went away). */
void mtf_reset(struct mtf_framer *f);
const struct mtf_stats *mtf_stats(const struct mtf_framer *f);

#endif
