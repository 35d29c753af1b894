#include "normalize.h"

uint64_t mt_norm_mask(unsigned bits)
{
    if (bits == 0 || bits >= 64)
        return UINT64_MAX;
    return ((uint64_t)1 << bits) - 1;
}

int mt_norm_counter(struct mt_counter_state *st, uint64_t raw, unsigned bits, int64_t ts,
                    uint64_t *delta)
{
    uint64_t mask = mt_norm_mask(bits);
    int ev;

    if (raw > mask)
        return MT_NORM_INVALID;
    if (!st->have) {
        ev = MT_NORM_FIRST;
    } else if (raw == st->last) {
        ev = MT_NORM_SAME;
    } else if (raw > st->last) {
        *delta = raw - st->last;
        ev = MT_NORM_STEP;
    } else {
        uint64_t wrapped = (mask - st->last) + raw + 1;
        bool upper_half = st->last > mask / 2;
        if (mask != UINT64_MAX && upper_half && wrapped <= mask / 4) {
            *delta = wrapped;
            ev = MT_NORM_WRAP;
        } else {
            *delta = raw;
            ev = MT_NORM_RESET;
        }
    }
    st->last = raw;
    st->ts = ts;
    st->have = true;
    return ev;
}

const char *mt_norm_event_name(int ev)
{
    static const char *const n[] = {"first", "same", "step", "wrap", "reset", "invalid"};
    return ev >= 0 && ev <= MT_NORM_INVALID ? n[ev] : "?";
}
