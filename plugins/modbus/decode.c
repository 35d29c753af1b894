/*
 * decode: see decode.h. Pure functions of their arguments.
 */
#include "decode.h"

#include <errno.h>
#include <string.h>

static const unsigned words_of[MBD_NTYPES] = {1, 1, 2, 2, 4, 2, 4};

unsigned mbd_words(int type)
{
    return type >= 0 && type < MBD_NTYPES ? words_of[type] : 0;
}

unsigned mbd_bits(int type)
{
    switch (type) {
    case MBD_U16: return 16;
    case MBD_U32: return 32;
    case MBD_U64: return 64;
    default: return 0;
    }
}

bool mbd_order_fits(int type, int order)
{
    unsigned w = mbd_words(type);
    if (w == 1)
        return order == MBD_AB || order == MBD_BA;
    if (w == 2 || w == 4)
        return order >= MBD_ABCD && order <= MBD_DCBA;
    return false;
}

int mbd_order_for(int type, int device_order)
{
    if (mbd_words(type) != 1)
        return device_order;
    return device_order == MBD_BADC || device_order == MBD_DCBA || device_order == MBD_BA ? MBD_BA
                                                                                          : MBD_AB;
}

static uint16_t swap16(uint16_t w)
{
    return (uint16_t)((w << 8) | (w >> 8));
}

/* Word order and byte order are independent: CDAB swaps the words, BADC the
 * bytes inside each word, DCBA both. */
static void swaps(int order, bool *words, bool *bytes)
{
    *words = order == MBD_CDAB || order == MBD_DCBA;
    *bytes = order == MBD_BA || order == MBD_BADC || order == MBD_DCBA;
}

uint64_t mbd_assemble(const uint16_t *words, unsigned nwords, int order)
{
    bool wswap, bswap;
    uint64_t v = 0;

    swaps(order, &wswap, &bswap);
    for (unsigned i = 0; i < nwords; i++) {
        uint16_t w = words[wswap ? nwords - 1 - i : i];
        v = (v << 16) | (bswap ? swap16(w) : w);
    }
    return v;
}

void mbd_disassemble(uint64_t raw, unsigned nwords, int order, uint16_t *words)
{
    bool wswap, bswap;

    swaps(order, &wswap, &bswap);
    for (unsigned i = 0; i < nwords; i++) {
        uint16_t w = (uint16_t)(raw >> (16 * (nwords - 1 - i)));
        words[wswap ? nwords - 1 - i : i] = bswap ? swap16(w) : w;
    }
}

int mbd_decode(const uint16_t *words, size_t n, int type, int order, struct mbd_value *out)
{
    unsigned w = mbd_words(type);

    if (!w || !mbd_order_fits(type, order))
        return -EINVAL;
    if (n < w)
        return -ERANGE;
    uint64_t raw = mbd_assemble(words, w, order);
    memset(out, 0, sizeof(*out));
    switch (type) {
    case MBD_I16: out->cls = MBD_SIGNED; out->i = (int16_t)raw; break;
    case MBD_I32: out->cls = MBD_SIGNED; out->i = (int32_t)raw; break;
    case MBD_F32: {
        uint32_t bits = (uint32_t)raw;
        float f;
        memcpy(&f, &bits, sizeof(f)); /* IEEE 754 binary32 on every target we build for */
        out->cls = MBD_FLOAT;
        out->f = f;
        break;
    }
    case MBD_F64:
        out->cls = MBD_FLOAT;
        memcpy(&out->f, &raw, sizeof(out->f));
        break;
    default: out->cls = MBD_UNSIGNED; out->u = raw; break;
    }
    return 0;
}

double mbd_to_double(const struct mbd_value *v)
{
    switch (v->cls) {
    case MBD_SIGNED: return (double)v->i;
    case MBD_FLOAT: return v->f;
    default: return (double)v->u;
    }
}

/* ---- request plan ---- */

static bool is_bits(int function)
{
    return function == MBD_FN_COIL || function == MBD_FN_DISCRETE;
}

static bool before(const struct mbd_item *a, const struct mbd_item *b)
{
    return a->function != b->function ? a->function < b->function : a->address < b->address;
}

/* The unplanned item that comes first by function and address; n if none. */
static size_t first_unplanned(const struct mbd_item *items, size_t n, const size_t *req_of,
                              int function)
{
    size_t best = n;
    for (size_t i = 0; i < n; i++) {
        if (req_of[i] != SIZE_MAX || (function >= 0 && items[i].function != function))
            continue;
        if (best == n || before(&items[i], &items[best]))
            best = i;
    }
    return best;
}

static int check_items(const struct mbd_item *items, size_t n, unsigned max_regs,
                       unsigned max_bits)
{
    for (size_t i = 0; i < n; i++) {
        unsigned limit = is_bits(items[i].function) ? max_bits : max_regs;
        if (items[i].function < MBD_FN_HOLDING || items[i].function > MBD_FN_DISCRETE ||
            items[i].count == 0 || items[i].count > limit || items[i].address > 65535 ||
            items[i].address + items[i].count > 65536)
            return -EINVAL;
    }
    return 0;
}

int mbd_plan(const struct mbd_item *items, size_t n, unsigned max_regs, unsigned max_bits,
             unsigned gap, struct mbd_request *requests, size_t *req_of)
{
    size_t nreq = 0;

    if (max_regs == 0 || max_regs > MBD_MAX_READ_REGISTERS || max_bits == 0 ||
        max_bits > MBD_MAX_READ_BITS || check_items(items, n, max_regs, max_bits))
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        req_of[i] = SIZE_MAX;
    for (size_t m; (m = first_unplanned(items, n, req_of, -1)) < n; nreq++) {
        struct mbd_request *r = &requests[nreq];
        unsigned limit = is_bits(items[m].function) ? max_bits : max_regs;
        uint32_t end = items[m].address + items[m].count;

        r->function = items[m].function;
        r->address = items[m].address;
        req_of[m] = nreq;
        for (size_t k; (k = first_unplanned(items, n, req_of, r->function)) < n;) {
            uint32_t kend = items[k].address + items[k].count;
            uint32_t nend = kend > end ? kend : end;
            if (items[k].address > end + gap || nend - r->address > limit)
                break;
            req_of[k] = nreq;
            end = nend;
        }
        r->count = end - r->address;
    }
    return (int)nreq;
}
