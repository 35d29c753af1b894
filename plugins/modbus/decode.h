/*
 * decode: Modbus register words -> typed values, and the request plan that
 * merges a device's registers into as few reads as the protocol allows.
 *
 * Pure: no I/O, no allocation, no globals; any thread. Fuzzed by
 * tests/fuzz/fuzz_modbus_decode.c, tested with the vectors of DEVICES.md
 * (tests/unit/test_modbus_decode.c).
 *
 * Why our own decoding: Debian 12's libmodbus 3.1.6 names its float helpers
 * with swapped byte orders (fixed upstream in 3.1.8), and has no helper for
 * 64-bit or word-swapped integers at all. Order names follow what integrators
 * know from other tools (Telegraf, Node-RED): the letters are the value's
 * bytes from the most significant (A) down, written in the order they travel
 * on the wire. 123456.0f = 0x47F12000 travels as 47 F1 20 00 in ABCD,
 * 20 00 47 F1 in CDAB, F1 47 00 20 in BADC, 00 20 F1 47 in DCBA.
 *
 * 64-bit generalisation (as Telegraf): ABCD = all big-endian (ABCDEFGH),
 * CDAB = words low first, bytes big-endian in each word (GHEFCDAB),
 * BADC = words high first, bytes swapped in each word (BADCFEHG),
 * DCBA = all little-endian (HGFEDCBA). 16-bit values use AB (big-endian, the
 * Modbus default) or BA (bytes swapped).
 */
#ifndef MB_DECODE_H
#define MB_DECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum mbd_type { MBD_U16, MBD_I16, MBD_U32, MBD_I32, MBD_U64, MBD_F32, MBD_F64, MBD_NTYPES };
enum mbd_order { MBD_AB, MBD_BA, MBD_ABCD, MBD_CDAB, MBD_BADC, MBD_DCBA, MBD_NORDERS };

/* What kind of number a decoded value is. */
enum mbd_class { MBD_UNSIGNED, MBD_SIGNED, MBD_FLOAT };

struct mbd_value {
    int cls;    /* enum mbd_class */
    uint64_t u; /* MBD_UNSIGNED */
    int64_t i;  /* MBD_SIGNED */
    double f;   /* MBD_FLOAT (may be NaN or infinite: the device said so) */
};

/* Registers a type occupies: 1, 2 or 4; 0 for an unknown type. */
unsigned mbd_words(int type);

/* Bits of an unsigned type (16, 32, 64), 0 for the others. */
unsigned mbd_bits(int type);

/* Whether order applies to type: AB/BA for 16-bit types, ABCD/CDAB/BADC/
 * DCBA for 32- and 64-bit ones. */
bool mbd_order_fits(int type, int order);

/* The order a 16-bit register takes from a 32-bit device default: the byte
 * order inside a word (ABCD, CDAB -> AB; BADC, DCBA -> BA). */
int mbd_order_for(int type, int device_order);

/* The value's bytes, most significant first, as an integer of
 * 16 * nwords bits. words: nwords registers as received (nwords 1, 2 or 4). */
uint64_t mbd_assemble(const uint16_t *words, unsigned nwords, int order);

/* Decodes one value from n available words. 0, or -EINVAL (unknown type,
 * order that does not fit the type) or -ERANGE (fewer words than the type
 * needs). */
int mbd_decode(const uint16_t *words, size_t n, int type, int order, struct mbd_value *out);

/* The value as a double (a u64 above 2^53 rounds). */
double mbd_to_double(const struct mbd_value *v);

/* The inverse of mbd_assemble for tests and the simulator: the words a
 * device with that order sends for the big-endian value raw. */
void mbd_disassemble(uint64_t raw, unsigned nwords, int order, uint16_t *words);

/* ---- request plan ---- */

/* Modbus limits per read request (Modbus Application Protocol 1.1b3,
 * 6.1-6.4; libmodbus MODBUS_MAX_READ_REGISTERS / _BITS). */
#define MBD_MAX_READ_REGISTERS 125
#define MBD_MAX_READ_BITS 2000

enum mbd_function { MBD_FN_HOLDING, MBD_FN_INPUT, MBD_FN_COIL, MBD_FN_DISCRETE };

struct mbd_item {
    int function;     /* enum mbd_function */
    uint32_t address; /* 0-based protocol address */
    uint32_t count;   /* registers (or bits) the item occupies */
};

struct mbd_request {
    int function;
    uint32_t address;
    uint32_t count;
};

/* Merges items into requests: items of one function whose ranges touch or
 * overlap (or are at most `gap` apart) share a request while it stays within
 * max_regs registers or max_bits bits. requests has room for n entries (a
 * plan never needs more); req_of[i] receives the request that holds item i.
 * Requests come out ordered by function, then address. Returns the number of
 * requests, or -EINVAL when an item is empty, larger than a request may be,
 * or reaches past address 65535. */
int mbd_plan(const struct mbd_item *items, size_t n, unsigned max_regs, unsigned max_bits,
             unsigned gap, struct mbd_request *requests, size_t *req_of);

#endif
