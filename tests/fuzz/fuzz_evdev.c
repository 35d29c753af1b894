/* Fuzz the evdev record reassembly (plugins/common/evdev.c): the bytes a
 * keyboard-wedge device or a pipe standing in for it gives, cut into reads
 * whose sizes come from the input, through mte_feed on a real device
 * handle (/dev/null) and through mte_reasm_feed in one piece. Every record
 * must come out whole, in order, byte for byte what was fed, however the
 * stream was cut; nothing else may come out. */
#include <linux/input.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "evdev.h"

#define EV sizeof(struct input_event)

struct sink {
    const uint8_t *data; /* the stream: record k is data[k * EV ...] */
    size_t n;            /* records seen */
    size_t max;          /* records the stream holds */
};

static void on_event(void *arg, const struct input_event *ev)
{
    struct sink *s = arg;
    if (s->n >= s->max || memcmp(ev, s->data + s->n * EV, EV) != 0)
        abort(); /* a record too many, out of order, or garbled */
    s->n++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mte_dev *d;
    struct mte_reasm r = {0};
    char err[200];

    if (size < 1)
        return 0;
    size_t chunk = 1 + data[0] % (2 * EV + 3);
    data++;
    size--;
    if (mte_open(&d, "/dev/null", false, err, sizeof(err)))
        abort();
    struct sink a = {data, 0, size / EV}, b = a;
    for (size_t off = 0; off < size; off += chunk)
        mte_feed(d, data + off, size - off < chunk ? size - off : chunk, on_event, &a);
    mte_reasm_feed(&r, data, size, on_event, &b);
    if (a.n != size / EV || b.n != a.n || r.npart != size % EV)
        abort(); /* a whole record lost, or a partial one miscounted */
    mte_reasm_clear(&r);
    if (r.npart)
        abort();
    mte_close(d);
    return 0;
}
