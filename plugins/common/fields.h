/*
 * fields: what a text decoder (kv, pattern) found in one frame: named
 * values with their text and, when the text is a number, its value. Shared
 * by the decoders and the plugins that map fields to readings.
 *
 * Plain data and pure functions: no allocation, any thread.
 */
#ifndef MTD_FIELDS_H
#define MTD_FIELDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MTD_MAX_FIELDS 32
#define MTD_NAME_MAX 64 /* with the NUL */
#define MTD_TEXT_MAX 64 /* with the NUL */

struct mtd_num {
    double value;     /* finite */
    uint64_t counter; /* is_uint: the exact value, for cumulative counters */
    bool is_uint;     /* written as an unsigned whole number (no sign, point, exponent) */
};

struct mtd_field {
    char name[MTD_NAME_MAX];
    char text[MTD_TEXT_MAX];
    bool numeric; /* num is valid */
    struct mtd_num num;
};

struct mtd_fields {
    size_t n;
    struct mtd_field f[MTD_MAX_FIELDS];
};

/* Parses a whole number or a decimal (optional sign, digits, optional
 * fraction and exponent; hex as 0x...). Nothing else: no spaces, no inf or
 * nan, no trailing text. 0 or -EINVAL (also for a value that overflows). */
int mtd_number(const char *s, size_t len, struct mtd_num *out);

/* The field named name, or NULL. */
const struct mtd_field *mtd_find(const struct mtd_fields *fs, const char *name);

/* Appends a field (name and text copied, truncation refused); the text is
 * parsed as a number when it is one. 0, -E2BIG (too many fields or a name
 * or text too long), -EEXIST (the name is there already), -EINVAL (a NUL
 * byte in the name). */
int mtd_add(struct mtd_fields *fs, const char *name, size_t name_len, const char *text,
            size_t text_len);

#endif
