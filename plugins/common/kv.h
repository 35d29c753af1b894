/*
 * kv: the key=value line decoder: "IN=12 OUT=9", "in=12;out=9,t=21.5".
 *
 * Pure, no allocation, any thread. Fuzzed (tests/fuzz/fuzz_kv.c).
 *
 * A line is pairs KEY=VALUE separated by spaces, tabs, commas or
 * semicolons (CR and LF count as spaces). KEY is [A-Za-z0-9_.-]{1,63};
 * VALUE is 1..63 printable ASCII bytes without separators or '=' (a number
 * or not: the plugin decides what it needs). Anything else makes the whole
 * line bad: a line that is partly noise gives no reading at all, rather
 * than a wrong one.
 */
#ifndef MTK_KV_H
#define MTK_KV_H

#include <stddef.h>
#include <stdint.h>

#include "fields.h"

/* Fills out (cleared first) with the line's pairs, in order. The number of
 * pairs (>= 1), or -ENODATA (nothing but separators), -EINVAL (not
 * KEY=VALUE, a bad byte), -EEXIST (a key twice), -E2BIG (more than
 * MTD_MAX_FIELDS pairs, or a key or value too long). */
int mtk_parse(const uint8_t *line, size_t len, struct mtd_fields *out);

#endif
