/*
 * frame: cuts a byte stream from a device into frames: delimiter-terminated
 * lines, STX ... ETX frames, or fixed-length frames, each with a maximum
 * length. Pure (no I/O, no allocation after create), one framer per device,
 * any thread that owns it. Fuzzed (tests/fuzz/fuzz_frame.c).
 *
 * Bad input is counted, never turned into a frame: a frame longer than
 * max_len is dropped up to its end; bytes outside STX ... ETX are skipped;
 * an STX inside a frame cuts it (counted as cut: it was a frame, cut
 * short) and starts a new one; a frame split across reads is put
 * together. Empty lines are no frames (not counted either); an empty STX
 * ETX is a frame of length 0.
 *
 * Frames may hold raw card numbers: every byte of the device is wiped from
 * the framer's buffer as soon as it is no longer needed, after a frame was
 * handed over and on every discard (over-long, cut, resync, reset).
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
    /* Added (compatible): FIXED frames that start with a sync pattern, such
     * as "PC" of a Terabee counter. Bytes before it are skipped and counted,
     * so one lost byte does not misalign every frame after it. The pattern
     * stays in the frame. sync_len 0: no sync, every fixed_len bytes. */
    uint8_t sync[4];
    size_t sync_len;
};

#define MTF_MAX_LEN 65536 /* the largest max_len (and fixed_len) accepted */

struct mtf_stats {
    uint64_t frames, overlong, skipped_bytes;
    uint64_t cut; /* added: STXETX frames cut short by a new STX (bad frames, not noise) */
};

struct mtf_framer;

/* frame: the frame without delimiters or STX/ETX, borrowed for the call. */
typedef void (*mtf_frame_cb)(void *arg, const uint8_t *frame, size_t len);

/* 0, -EINVAL (a setting out of range) or -ENOMEM. */
int mtf_create(struct mtf_framer **out, const struct mtf_conf *c);
void mtf_free(struct mtf_framer *f);
/* Feeds bytes; calls cb for each complete frame, in order. */
void mtf_feed(struct mtf_framer *f, const uint8_t *data, size_t len, mtf_frame_cb cb, void *arg);
/* Drops a partial frame (the device went away); its bytes count as skipped. */
void mtf_reset(struct mtf_framer *f);
const struct mtf_stats *mtf_stats(const struct mtf_framer *f);
/* For tests: the framer's buffer and its size, to check that nothing of a
 * frame stays behind. */
const uint8_t *mtf_buffer(const struct mtf_framer *f, size_t *cap);

/* Added (compatible): decodes an option's text into bytes for delimiter
 * and sync: \n \r \t \\ \e, \xHH, anything else as written ("\r\n",
 * "\x03"). The number of bytes, or -EINVAL (a bad escape, more than cap
 * bytes). */
int mtf_unescape(const char *text, uint8_t *out, size_t cap);

/* Added (compatible): printable text of a frame for a log line (the serial
 * plugin's log_frames; never for card readers): bytes outside 0x20-0x7e
 * and the backslash as \xHH, at most the first 64 bytes; always
 * NUL-terminated when outlen > 0, never more than outlen bytes. */
void mtf_escape(const uint8_t *p, size_t len, char *out, size_t outlen);

#endif
