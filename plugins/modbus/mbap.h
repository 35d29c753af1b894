/*
 * mbap: Modbus TCP framing for the plugin's non-blocking TCP links (tcp.c).
 * Builds the request ADUs the plugin sends (read coils, discrete inputs,
 * holding and input registers; write one coil, one register) and checks an
 * answer against its request.
 *
 * Sources: Modbus Messaging on TCP/IP Implementation Guide 1.0b, 3.1.3 (the
 * MBAP header: transaction id, protocol id 0, length of what follows, unit
 * id) and Modbus Application Protocol 1.1b3, 6.1-6.6 and 7 (the PDUs and
 * exception responses).
 *
 * Pure: no I/O, no allocation, no globals; any thread. Fuzzed through the
 * TCP link by tests/fuzz/fuzz_modbus_tcp.c; libmodbus's server answers it in
 * the unit and integration tests.
 */
#ifndef MB_MBAP_H
#define MB_MBAP_H

#include <stddef.h>
#include <stdint.h>

/* The largest ADU: 7 header bytes and a 253-byte PDU. */
#define MBT_ADU_MAX 260
/* Every request the plugin sends is 12 bytes. */
#define MBT_REQ_LEN 12

struct mbt_req {
    uint16_t tid;  /* transaction id */
    uint8_t unit;  /* unit id */
    uint8_t fn;    /* function code: 1-4 (reads), 5 (write coil), 6 (write register) */
    uint16_t addr; /* 0-based address */
    uint16_t arg;  /* reads: how many; 5: 0xFF00 on or 0x0000 off; 6: the value */
};

/* Writes the request's 12 bytes to out. */
void mbt_build(const struct mbt_req *q, uint8_t out[MBT_REQ_LEN]);

enum mbt_status {
    MBT_MORE,      /* the answer is not complete yet: read more */
    MBT_OK,        /* a good answer: values (reads) filled */
    MBT_EXCEPTION, /* an exception response: code in exception */
    MBT_BAD,       /* not an answer to this request: why in bad */
};

struct mbt_rsp {
    int status;        /* enum mbt_status */
    uint8_t exception; /* MBT_EXCEPTION: the code (any 0-255 the device sent) */
    const char *bad;   /* MBT_BAD: what was wrong (static text) */
};

/* Checks the len bytes received so far (buf) as the answer to q. On MBT_OK,
 * reads fill words (fn 3, 4: q->arg registers, host order) or bits (fn 1,
 * 2: q->arg values of 0 or 1); either may be NULL for the other kind, and
 * both must have room for q->arg entries. Bytes after a complete answer
 * make it MBT_BAD (there is one request in flight; nothing else may come).
 * Returns r->status. */
int mbt_parse(const struct mbt_req *q, const uint8_t *buf, size_t len, struct mbt_rsp *r,
              uint16_t *words, uint8_t *bits);

/* "illegal data address" for 2; "unknown" for a code the standard does not
 * define (0, 9, 12-255). */
const char *mbt_exception_name(unsigned code);

#endif
