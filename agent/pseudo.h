/*
 * pseudo: keyed-hash pseudonyms for raw identifiers (card numbers, device
 * addresses). HMAC-SHA256(key, space || 0x00 || id), first 128 bits,
 * base64url: 22 characters. The raw identifier is never copied or kept.
 *
 * Owns the key (locked in memory is not attempted; it lives in the agent's
 * heap and is wiped on free). Any thread once initialised.
 */
#ifndef MT_PSEUDO_H
#define MT_PSEUDO_H

#include <stddef.h>
#include <stdint.h>

#define MT_PSEUDO_LEN 22
#define MT_SUBJECT_SIZE 24 /* MT_PSEUDO_LEN + NUL, padded */

struct mt_pseudo {
    uint8_t key[64];
    size_t keylen;
};

/* key text: at least 16 bytes; used as given (hex or any text). */
int mt_pseudo_init(struct mt_pseudo *p, const char *key);
/* Reads PATH, or creates it (0600, 32 random bytes as hex) if missing.
 * created is set when a new key was written. */
int mt_pseudo_load_or_create(struct mt_pseudo *p, const char *path, int *created);
void mt_pseudo_free(struct mt_pseudo *p);
int mt_pseudo_make(const struct mt_pseudo *p, const char *space, const void *id, size_t len,
                   char out[MT_SUBJECT_SIZE]);

#endif
