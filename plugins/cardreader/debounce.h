/*
 * debounce: "the same card again within the window is one check-in".
 * RDM6300 readers repeat a frame every ~100 ms while a card is held, and
 * people tap twice; each of those must not count as a visit.
 *
 * Keeps no card number: only a 64-bit keyed fingerprint (SipHash-2-4 under
 * a random key made at init and never written anywhere) and the time the
 * card was last seen, so the table cannot be turned back into numbers nor
 * linked across restarts or instances. An entry lives for the window after
 * its last read, then is forgotten (cr_debounce_expire). The window slides:
 * a card held on the reader for a minute is one check-in.
 *
 * Not thread-safe: one table per instance, used by the one thread that
 * reads that instance's device (the loop, or the PC/SC worker run).
 */
#ifndef CR_DEBOUNCE_H
#define CR_DEBOUNCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cr_debounce;

/* window_us 0: every read is a check-in. cap: fingerprints kept at most
 * (the oldest is forgotten when full). 0 or -ENOMEM. */
int cr_debounce_create(struct cr_debounce **out, int64_t window_us, size_t cap);
void cr_debounce_free(struct cr_debounce *d);

/* True when this card was seen less than the window ago: a repeat, not a
 * check-in. Either way the card's last-seen time becomes now_us. */
bool cr_debounce_repeat(struct cr_debounce *d, const char *space, const void *id, size_t len,
                        int64_t now_us);
/* Forgets a card (its check-in could not be stored: let the next read try). */
void cr_debounce_forget(struct cr_debounce *d, const char *space, const void *id, size_t len);
/* Drops fingerprints older than the window. */
void cr_debounce_expire(struct cr_debounce *d, int64_t now_us);
/* Fingerprints held (for the tests). */
size_t cr_debounce_size(const struct cr_debounce *d);
/* Fingerprints forgotten because the table was full (a repeat of one of
 * those counts again). Reset by reading. */
uint64_t cr_debounce_take_evicted(struct cr_debounce *d);

#endif
