/*
 * cr_hid: the keyboard-wedge backend. Reads the reader's evdev node as a
 * stream of struct input_event (the shared evdev module opens and grabs
 * it; the shared device loop keeps it open and reopens it after an
 * unplug), turns key presses into the text of a card (hidkeys.c) and
 * checks it against id_format (cardid.c).
 *
 * EVIOCGRAB takes the device for this process alone, so the numbers a
 * reader "types" never reach a console, a login prompt or another program.
 * Where the ioctl is not possible (ENOTTY/EINVAL: a FIFO standing in for
 * the device in tests, where there is no uinput) reading continues without
 * the grab and the open logs a notice saying so.
 *
 * Plain read(2) of the records, not libevdev: libevdev refuses anything
 * that is not an evdev node (-ENOTTY on a pipe).
 *
 * Owns the device and the key state. Loop thread only.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardreader.h"
#include "devloop.h"
#include "evdev.h"
#include "hidkeys.h"

struct hid {
    struct cr *c;
    struct mte_dev *dev;
    struct mtl *loop;
    struct cr_keys keys;
    struct mte_reasm partial; /* a record split across reads (pipes) */
};

static void card_typed(struct hid *h)
{
    struct cr_subject subj;

    if (cr_cardid_parse(h->c->conf->id_format, h->keys.text, h->keys.len, &subj) == 0)
        cr_card(h->c, &subj);
    else
        cr_bad(h->c, "bad_frames",
               "typed text that is not a card number of the configured form was dropped");
    cr_keys_clear(&h->keys);
}

static void on_event(void *arg, const struct input_event *ev)
{
    struct hid *h = arg;
    int64_t ts = cr_keys_event_us(ev->input_event_sec, ev->input_event_usec);

    switch (cr_keys_feed(&h->keys, ev->type, ev->code, ev->value, ts)) {
    case CR_KEYS_CARD:
        card_typed(h);
        break;
    case CR_KEYS_BAD:
        cr_bad(h->c, "bad_frames",
               "keys that do not make a card (unknown key, too long, or a "
               "pause inside the number) were dropped");
        break;
    default:
        break;
    }
}

/* Whole records from the bytes read, with what was left over last time. */
void cr_hid_data(void *state, const uint8_t *buf, size_t n)
{
    struct hid *h = state;
    mte_reasm_feed(&h->partial, buf, n, on_event, h);
}

static int hid_open(void *arg, int *fd, char *note, size_t notelen, char *err, size_t errlen)
{
    struct hid *h = arg;
    int rc = mte_open(&h->dev, h->c->conf->evdev, h->c->conf->grab, err, errlen);

    if (rc)
        return rc;
    *fd = mte_fd(h->dev);
    if (mte_note(h->dev))
        snprintf(note, notelen, "%s", mte_note(h->dev));
    return mte_grab_refused(h->dev) ? MTL_DEGRADED : 0;
}

static void hid_close(void *arg)
{
    struct hid *h = arg;
    mte_close(h->dev); /* also releases the grab */
    h->dev = NULL;
}

static void hid_lost(void *arg)
{
    struct hid *h = arg;
    mte_reasm_clear(&h->partial);
    cr_keys_clear(&h->keys); /* half a number from before the unplug is no card */
}

static const struct mtl_ops hid_ops = {
    .open = hid_open, .close = hid_close, .data = cr_hid_data, .lost = hid_lost};

static void hid_destroy(void *state)
{
    struct hid *h = state;
    mtl_free(h->loop);
    explicit_bzero(h, sizeof(*h));
    free(h);
}

static int hid_create(struct cr *c, void **state)
{
    const struct mtl_conf lc = {.path = c->conf->evdev, .reopen_ms = c->conf->serial.reopen_ms};
    struct hid *h = calloc(1, sizeof(*h));
    int rc;

    if (!h)
        return -ENOMEM;
    h->c = c;
    cr_keys_init(&h->keys, c->conf->key_gap_ms * 1000);
    rc = mtl_create(&h->loop, c->host, c->ctx, &lc, &hid_ops, h);
    if (rc) {
        hid_destroy(h);
        return rc;
    }
    *state = h;
    return 0;
}

static int hid_start(void *state)
{
    struct hid *h = state;
    return mtl_start(h->loop);
}

static void hid_stop(void *state)
{
    struct hid *h = state;
    mtl_stop(h->loop);
}

const struct cr_backend cr_backend_hid = {
    .name = "hid",
    .create = hid_create,
    .start = hid_start,
    .stop = hid_stop,
    .destroy = hid_destroy,
};
