/* libFuzzer: Modbus register words -> typed values (plugins/modbus/decode.c)
 * and the request plan. Input: byte 0 picks type and order, byte 1 the plan
 * limits, then register words (big-endian pairs, as on the wire). Checks the
 * properties, not only "no crash": integer decoding inverts, a plan covers
 * every item once within the protocol limits. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"

/* not CHECK(): the fuzz build is RelWithDebInfo, NDEBUG would drop it */
#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

static void check_decode(const uint16_t *w, size_t n, int type, int order)
{
    struct mbd_value v;
    int rc = mbd_decode(w, n, type, order, &v);
    if (!mbd_order_fits(type, order) || type >= MBD_NTYPES) {
        CHECK(rc == -EINVAL);
        return;
    }
    if (n < mbd_words(type)) {
        CHECK(rc == -ERANGE);
        return;
    }
    CHECK(rc == 0);
    (void)mbd_to_double(&v);
    uint16_t back[4];
    mbd_disassemble(mbd_assemble(w, mbd_words(type), order), mbd_words(type), order, back);
    CHECK(memcmp(back, w, mbd_words(type) * 2) == 0);
    if (v.cls == MBD_UNSIGNED)
        CHECK(v.u == mbd_assemble(w, mbd_words(type), order));
}

static void check_plan(const uint16_t *w, size_t n, uint8_t lim)
{
    struct mbd_item items[64];
    struct mbd_request req[64];
    size_t of[64], k = n / 2 < 64 ? n / 2 : 64;
    unsigned max_regs = 1 + lim % 125, max_bits = 1 + (unsigned)lim * 8, gap = lim % 7;

    for (size_t i = 0; i < k; i++)
        items[i] = (struct mbd_item){w[2 * i] & 3, w[2 * i + 1], 1 + (w[2 * i] >> 2) % 4};
    int r = mbd_plan(items, k, max_regs, max_bits, gap, req, of);
    if (r < 0)
        return;
    CHECK((size_t)r <= k);
    for (size_t i = 0; i < k; i++) {
        const struct mbd_request *q = &req[of[i]];
        CHECK(of[i] < (size_t)r);
        CHECK(q->function == items[i].function);
        CHECK(items[i].address >= q->address);
        CHECK(items[i].address + items[i].count <= q->address + q->count);
    }
    for (int i = 0; i < r; i++) {
        bool bits = req[i].function >= MBD_FN_COIL;
        CHECK(req[i].count >= 1 && req[i].count <= (bits ? max_bits : max_regs));
        CHECK(req[i].address + req[i].count <= 65536);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint16_t w[256];
    size_t n = 0;

    if (size < 2)
        return 0;
    for (size_t i = 2; i + 1 < size && n < 256; i += 2)
        w[n++] = (uint16_t)(data[i] << 8 | data[i + 1]);
    int type = data[0] & 7, order = (data[0] >> 3) % (MBD_NORDERS + 1);
    check_decode(w, n, type, order);
    for (size_t i = 0; i + 4 <= n; i += 4)
        for (int t = 0; t < MBD_NTYPES; t++)
            check_decode(w + i, 4, t, mbd_order_for(t, MBD_ABCD + (data[1] & 3)));
    check_plan(w, n, data[1]);
    return 0;
}
