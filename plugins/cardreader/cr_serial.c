/*
 * cr_serial: the serial backend. The shared device loop (devloop.h) keeps
 * the port open on the loop and reopens it when it comes back; the shared
 * serial module opens it (real ports via libserialport, ptys via termios);
 * the shared framer cuts the bytes into STX...ETX frames or lines, and
 * em4100.c / cardid.c decode each.
 *
 * Owns the port and the framer. Loop thread only. Bad frames, checksums
 * and noise are counted, logged with rate limiting, and never become
 * readings; half a frame from before an unplug is dropped.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardreader.h"
#include "devloop.h"
#include "em4100.h"
#include "frame.h"

#define EM4100_MAX 14 /* the longest valid frame body: ID-12LA, 12 + CR LF */
#define LINE_MAX_LEN 80

struct ser {
    struct cr *c;
    struct mts_port *port;
    struct mtl *loop;
    struct mtf_framer *framer;
    struct mtf_stats seen; /* framer statistics already counted */
};

static void on_frame(void *arg, const uint8_t *frame, size_t len)
{
    struct ser *s = arg;
    struct cr_subject subj = {0};
    int rc;

    if (s->c->conf->frame == CR_FRAME_EM4100) {
        rc = cr_em4100_decode(frame, len, subj.id);
        if (rc == -EBADMSG) {
            cr_bad(s->c, "bad_checksums", "EM4100 frame with a wrong checksum dropped");
            return;
        }
        subj.len = CR_EM4100_LEN;
        subj.space = "em4100";
    } else {
        rc = cr_cardid_parse(s->c->conf->id_format, (const char *)frame, len, &subj);
    }
    if (rc) {
        cr_bad(s->c, "bad_frames",
               "a frame that is not a card number of the configured form was dropped");
        return;
    }
    cr_card(s->c, &subj);
}

/* The framer's own counts: noise between frames, over-long frames, frames
 * cut short by the next STX (a card moved away mid-frame, a lost byte). */
static void count_framer(struct ser *s)
{
    const struct mtf_stats *st = mtf_stats(s->framer);
    struct cr *c = s->c;

    for (uint64_t i = s->seen.overlong; i < st->overlong; i++)
        cr_bad(c, "overlong_frames", "an over-long frame was dropped");
    for (uint64_t i = s->seen.cut; i < st->cut; i++)
        cr_bad(c, "bad_frames", "a frame cut short (no ETX before the next STX) was dropped");
    if (st->skipped_bytes > s->seen.skipped_bytes)
        c->host->count(c->ctx, NULL, "noise_bytes", st->skipped_bytes - s->seen.skipped_bytes);
    s->seen = *st;
}

static int ser_open(void *arg, int *fd, char *note, size_t notelen, char *err, size_t errlen)
{
    struct ser *s = arg;
    int rc = mts_open(&s->port, &s->c->conf->serial, err, errlen);

    if (rc)
        return rc;
    *fd = mts_fd(s->port);
    if (mts_note(s->port))
        snprintf(note, notelen, "%s", mts_note(s->port));
    return 0;
}

static void ser_close(void *arg)
{
    struct ser *s = arg;
    mts_close(s->port);
    s->port = NULL;
}

void cr_serial_data(void *bstate, const uint8_t *p, size_t n)
{
    struct ser *s = bstate;
    mtf_feed(s->framer, p, n, on_frame, s);
    count_framer(s);
}

static void ser_lost(void *arg)
{
    struct ser *s = arg;
    mtf_reset(s->framer); /* half a frame from before the unplug is no frame */
    count_framer(s);
}

static const struct mtl_ops ser_ops = {
    .open = ser_open, .close = ser_close, .data = cr_serial_data, .lost = ser_lost};

static int make_framer(struct ser *s)
{
    int frame = s->c->conf->frame;
    struct mtf_conf fc = {.mode = MTF_STXETX, .stx = 0x02, .etx = 0x03, .max_len = EM4100_MAX};

    if (frame != CR_FRAME_EM4100)
        /* "\r" also cuts CR LF lines: the LF that follows is trimmed as a blank */
        fc = (struct mtf_conf){.mode = MTF_LINE,
                               .delimiter = {frame == CR_FRAME_LINE_CR ? '\r' : '\n'},
                               .delimiter_len = 1,
                               .max_len = LINE_MAX_LEN};
    return mtf_create(&s->framer, &fc);
}

static void ser_destroy(void *state)
{
    struct ser *s = state;
    mtl_free(s->loop);
    mtf_free(s->framer);
    free(s);
}

static int ser_create(struct cr *c, void **state)
{
    const struct mtl_conf lc = {.path = c->conf->serial.port,
                                .reopen_ms = c->conf->serial.reopen_ms};
    struct ser *s = calloc(1, sizeof(*s));
    int rc;

    if (!s)
        return -ENOMEM;
    s->c = c;
    rc = make_framer(s);
    if (!rc)
        rc = mtl_create(&s->loop, c->host, c->ctx, &lc, &ser_ops, s);
    if (rc) {
        ser_destroy(s);
        return rc;
    }
    *state = s;
    return 0;
}

static int ser_start(void *state)
{
    struct ser *s = state;
    return mtl_start(s->loop);
}

static void ser_stop(void *state)
{
    struct ser *s = state;
    mtl_stop(s->loop);
}

const struct cr_backend cr_backend_serial = {
    .name = "serial",
    .create = ser_create,
    .start = ser_start,
    .stop = ser_stop,
    .destroy = ser_destroy,
};
