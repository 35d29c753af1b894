/*
 * cardid: checks a card number that a reader sent as text (a serial ASCII
 * line, or the keys a keyboard-wedge reader typed) against the form the
 * reader is configured for, and names its subject space for the agent:
 *
 *   id_format    accepted text                              subject, space
 *   em4100-dec   10 digits (the low 32 bits, zero-padded),  the text, "em4100-dec"
 *                or the card print "0013961168 213,02000"
 *   em4100-hex   8 or 10 hex digits                         the text, "em4100-hex"
 *   wiegand26    "FC,CN" (213,2000) or 8 digits FFFCCCCC    "FFF,CCCCC", "wiegand26"
 *   uid-hex      4, 7 or 10 hex bytes, optionally split by  the bytes, "iso14443"
 *                ':', '-' or ' ' (04:A2:...)
 *   text         1-64 printable ASCII characters            the text, "card"
 *
 * The agent brings every EM4100 form to one canonical number before
 * hashing; this module only refuses what is not a card number of the form,
 * so garbage is counted as a bad frame and never becomes a reading.
 * Surrounding blanks (space, tab, CR, LF) are ignored.
 *
 * Pure: no I/O, no allocation, no state; any thread. Never logs. Fuzzed
 * (tests/fuzz/fuzz_em4100.c).
 */
#ifndef CR_CARDID_H
#define CR_CARDID_H

#include <stddef.h>
#include <stdint.h>

enum cr_idfmt { CR_ID_EM4100_DEC, CR_ID_EM4100_HEX, CR_ID_WIEGAND26, CR_ID_UID_HEX, CR_ID_TEXT };

/* The option values, in enum order, NULL-terminated. */
extern const char *const cr_idfmt_names[];

#define CR_SUBJECT_MAX 64

/* A raw card number on its way to emit. Wipe it (cr_subject_wipe) as soon
 * as it has been handed over. */
struct cr_subject {
    uint8_t id[CR_SUBJECT_MAX];
    size_t len;
    const char *space; /* static string */
};

/* 0, or -EINVAL when text is not a card number of that form (out is then
 * wiped). */
int cr_cardid_parse(int fmt, const char *text, size_t len, struct cr_subject *out);

void cr_subject_wipe(struct cr_subject *s);

#endif
