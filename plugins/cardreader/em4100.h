/*
 * em4100: decodes what 125 kHz EM4100 serial readers send between STX and
 * ETX, with checksum verification (../shared/DEVICES.md section 4):
 *
 *   RDM6300            10 ASCII hex (version byte + 32-bit id), 2 ASCII hex checksum
 *   ID-12LA, ID-20LA   the same, then CR LF
 *
 * The checksum is the XOR of the five data bytes ("0C000621A5" -> "8E").
 * Pure: no I/O, no allocation, no state; any thread. Never logs (the
 * result is a card number). Fuzzed (tests/fuzz/fuzz_em4100.c).
 */
#ifndef CR_EM4100_H
#define CR_EM4100_H

#include <stddef.h>
#include <stdint.h>

#define CR_EM4100_LEN 5 /* version byte + 32-bit id, big-endian */

/* frame: the bytes between STX and ETX (STX and ETX themselves excluded).
 * 0 and the five bytes in out; -EBADMSG when the checksum does not match;
 * -EINVAL when it is not an EM4100 frame at all (length, not hex). out is
 * written only on success. */
int cr_em4100_decode(const uint8_t *frame, size_t len, uint8_t out[CR_EM4100_LEN]);

/* The checksum of five data bytes: their XOR. */
uint8_t cr_em4100_checksum(const uint8_t data[CR_EM4100_LEN]);

#endif
