/*
 * subject: one canonical form of a raw identifier before it is hashed, so
 * that one card gives one pseudonym whichever reader read it. Readers print
 * the same EM4100 card differently (RDM6300 and ID-12LA send 10 hex digits:
 * a version byte and 32 bits; keyboard-wedge readers type the low 32 bits
 * in decimal; cards carry "0013961168 213,02000"): every EM4100 form comes
 * down to its low 32 bits, hashed in the key space "em4100". Wiegand-26
 * keeps 24 bits (facility code and card number) and is its own key space.
 * Facts: ../shared/DEVICES.md section 4.
 *
 *   space        subject_id                                  canonical
 *   em4100       4 or 5 bytes, big-endian                    low 32 bits (4 bytes), "em4100"
 *   em4100-hex   text: 8 or 10 hex digits                    low 32 bits, "em4100"
 *   em4100-dec   text: decimal low 32 bits, optionally       low 32 bits, "em4100"
 *                followed by the printed " FFF,CCCCC" (checked)
 *   wiegand26    4 bytes big-endian, 26 bits with parity     FC and CN (3 bytes), "wiegand26"
 *                (checked), or text "FC,CN"
 *   iso14443     4, 7 or 10 bytes (a PC/SC UID)              as is, "iso14443"
 *   ble          6 bytes, most significant first, or text    6 bytes, "ble"; the key
 *                "AA:BB:CC:DD:EE:FF" (':' or '-', any case)  changes every local day
 *   other        any bytes                                   as is, the space as given
 *
 * Pure, no allocation, any thread. Fuzzed (tests/fuzz/fuzz_subject.c).
 */
#ifndef MT_SUBJECT_H
#define MT_SUBJECT_H

#include <stddef.h>
#include <stdint.h>

#define MT_SUBJECT_MAX 64

/* 0, or -EINVAL when id is not a valid identifier of that space (the
 * reading is refused). *canon_space is a static string. */
int mt_subject_canonical(const char *space, const void *id, size_t len, const char **canon_space,
                         uint8_t out[MT_SUBJECT_MAX], size_t *outlen);

/* Device addresses (canonical space "ble") identify a person's phone: their
 * pseudonyms change every local day whatever agent.pseudonym_rotation says,
 * so one pseudonym never links a phone's visits across days (issue 12). */
int mt_subject_daily(const char *canon_space);

#endif
