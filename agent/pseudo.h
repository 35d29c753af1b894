/*
 * pseudo: keyed-hash pseudonyms for raw identifiers (card numbers, device
 * addresses). HMAC-SHA256(key, space || 0x00 || id), first 128 bits,
 * base64url: 22 characters. The raw identifier is never copied or kept.
 *
 * Owns the keyed HMAC state (computed once from the key; the key text is
 * wiped). libsodium, not OpenSSL: it is small (the demo agent's RSS) and the
 * precomputed state makes a pseudonym a copy and two SHA-256 blocks. Any
 * thread once initialised; a pseudonym costs no allocation.
 */
#ifndef MT_PSEUDO_H
#define MT_PSEUDO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <pthread.h>
#include <sodium.h>

#define MT_PSEUDO_LEN 22
#define MT_SUBJECT_SIZE 24 /* MT_PSEUDO_LEN + NUL, padded */

enum { MT_ROTATE_NONE = 0, MT_ROTATE_WEEKLY, MT_ROTATE_MONTHLY, MT_ROTATE_YEARLY,
       MT_ROTATE_DAILY /* not configurable: the subject spaces of mt_subject_daily() */ };

/* The keyed state of one rotation period [start, end) in µs. */
struct mt_pseudo_period {
    int64_t start, end;
    crypto_auth_hmacsha256_state keyed;
    int rotation; /* MT_ROTATE_* the period is of */
};

struct mt_pseudo {
    crypto_auth_hmacsha256_state keyed; /* after the key, before the message */
    bool ready;
    int rotation;            /* MT_ROTATE_*: the key changes per local period */
    pthread_mutex_t lock;    /* the period cache */
    struct mt_pseudo_period periods[2];
    int next;
};

/* key text: at least 16 bytes, used as given (hex or any text); a key
 * longer than SHA-256's block is hashed first, as HMAC does (RFC 2104). */
int mt_pseudo_init(struct mt_pseudo *p, const char *key);
/* Reads PATH, or creates it (0600, 32 random bytes as hex) if missing.
 * created is set when a new key was written. An existing key file readable
 * by group or others is refused (-EPERM). */
int mt_pseudo_load_or_create(struct mt_pseudo *p, const char *path, int *created);
void mt_pseudo_free(struct mt_pseudo *p);
/* The bare keyed hash of (space, id), without rotation or canonical forms. */
int mt_pseudo_make(const struct mt_pseudo *p, const char *space, const void *id, size_t len,
                   char out[MT_SUBJECT_SIZE]);
/* What emit uses: the identifier in its canonical form (subject.h), hashed
 * with the key of the rotation period (local time, TZ) that ts_us falls in.
 * With rotation, the period key is HMAC(key, "mittari-period" || 0 || label)
 * for labels like 2026-W48, 2026-11, 2026. Spaces that mt_subject_daily()
 * names (device addresses) always use the local day's key, label
 * 2026-11-28, whatever the rotation. -EINVAL for an invalid id. */
int mt_pseudo_subject(struct mt_pseudo *p, const char *space, const void *id, size_t len,
                      int64_t ts_us, char out[MT_SUBJECT_SIZE]);
void mt_pseudo_set_rotation(struct mt_pseudo *p, int rotation);
/* After the local time zone (TZ) changed: forgets the periods computed in
 * the old zone (issue 15). Any thread. */
void mt_pseudo_tz_changed(struct mt_pseudo *p);

#endif
