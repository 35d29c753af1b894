/*
 * normalize: turns a device's cumulative counter into deltas, once, for
 * every plugin: first sample, steady steps, wrap-around at 16/32/64 bits,
 * and device resets (counter back to 0 or lower after a reboot or a
 * "clear counter"). Pure functions on a caller-owned state; no I/O, any
 * thread (the writer thread owns the states).
 *
 * Wrap or reset? A counter that went down is taken as wrapped when it was in
 * the upper half of its range and the wrapped distance is under a quarter of
 * the range (a plausible step); otherwise the device was reset and counted
 * the new value since zero. A 64-bit counter practically never wraps, so a
 * drop there is always a reset.
 */
#ifndef MT_NORMALIZE_H
#define MT_NORMALIZE_H

#include <stdbool.h>
#include <stdint.h>

struct mt_counter_state {
    uint64_t last;
    int64_t ts;
    bool have;
};

enum mt_norm_event {
    MT_NORM_FIRST = 0, /* baseline only: no delta */
    MT_NORM_SAME,      /* unchanged: delta 0, nothing stored */
    MT_NORM_STEP,
    MT_NORM_WRAP,
    MT_NORM_RESET,
    MT_NORM_INVALID, /* raw value wider than the counter */
};

uint64_t mt_norm_mask(unsigned bits);
/* Updates st; *delta is set for STEP, WRAP and RESET. */
int mt_norm_counter(struct mt_counter_state *st, uint64_t raw, unsigned bits, int64_t ts,
                    uint64_t *delta);
const char *mt_norm_event_name(int ev);

#endif
