/*
 * mbap: see mbap.h.
 */
#include "mbap.h"

#include <stdbool.h>

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

void mbt_build(const struct mbt_req *q, uint8_t out[MBT_REQ_LEN])
{
    put16(out, q->tid);
    put16(out + 2, 0); /* protocol id: Modbus */
    put16(out + 4, 6); /* unit id and the 5-byte PDU */
    out[6] = q->unit;
    out[7] = q->fn;
    put16(out + 8, q->addr);
    put16(out + 10, q->arg);
}

static int bad(struct mbt_rsp *r, const char *why)
{
    r->status = MBT_BAD;
    r->bad = why;
    return MBT_BAD;
}

/* The PDU of a read answer: byte count, then the values. */
static int read_values(const struct mbt_req *q, const uint8_t *pdu, size_t n, struct mbt_rsp *r,
                       uint16_t *words, uint8_t *bits)
{
    bool regs = q->fn == 3 || q->fn == 4;
    size_t want = regs ? 2u * q->arg : (q->arg + 7u) / 8u;

    if (n < 2 || pdu[1] != want || n != 2 + want)
        return bad(r, "wrong byte count");
    for (size_t i = 0; i < q->arg; i++) {
        if (regs && words)
            words[i] = get16(pdu + 2 + 2 * i);
        else if (!regs && bits)
            bits[i] = (uint8_t)((pdu[2 + i / 8] >> (i % 8)) & 1);
    }
    r->status = MBT_OK;
    return MBT_OK;
}

int mbt_parse(const struct mbt_req *q, const uint8_t *buf, size_t len, struct mbt_rsp *r,
              uint16_t *words, uint8_t *bits)
{
    r->status = MBT_MORE;
    r->exception = 0;
    r->bad = NULL;
    if (len < 7)
        return MBT_MORE;
    size_t follow = get16(buf + 4); /* unit id + PDU */
    if (get16(buf + 2) != 0)
        return bad(r, "not Modbus (protocol id)");
    if (follow < 2 || follow > MBT_ADU_MAX - 6)
        return bad(r, "bad length");
    if (len < 6 + follow)
        return MBT_MORE;
    if (len > 6 + follow)
        return bad(r, "more bytes than one answer");
    if (get16(buf) != q->tid)
        return bad(r, "wrong transaction id");
    /* the unit id is not compared: many TCP devices answer with their own
     * (0, 1 or 255) whatever was asked, and libmodbus does not compare it */
    const uint8_t *pdu = buf + 7;
    size_t n = follow - 1;
    if (pdu[0] == (q->fn | 0x80)) {
        if (n != 2)
            return bad(r, "bad exception response");
        r->status = MBT_EXCEPTION;
        r->exception = pdu[1];
        return MBT_EXCEPTION;
    }
    if (pdu[0] != q->fn)
        return bad(r, "wrong function code");
    if (q->fn >= 1 && q->fn <= 4)
        return read_values(q, pdu, n, r, words, bits);
    /* 5 and 6 echo the request */
    if (n != 5 || get16(pdu + 1) != q->addr || get16(pdu + 3) != q->arg)
        return bad(r, "the write was not echoed");
    r->status = MBT_OK;
    return MBT_OK;
}

const char *mbt_exception_name(unsigned code)
{
    /* Modbus Application Protocol 1.1b3, 7 */
    // clang-format off
    static const char *const names[] = {
        "unknown", "illegal function", "illegal data address", "illegal data value",
        "server device failure", "acknowledge", "server device busy", "unknown",
        "memory parity error", "unknown", "gateway path unavailable",
        "gateway target device failed to respond",
    };
    // clang-format on
    return code < sizeof(names) / sizeof(names[0]) ? names[code] : "unknown";
}
