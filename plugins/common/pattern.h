/*
 * pattern: the field-pattern decoder. A POSIX extended regular expression
 * (regcomp REG_EXTENDED) must match the whole frame; its capture groups are
 * the fields: "1", "2", ... by number, or by name for a group written
 * (?<name>...) (an extension of ours: the name is removed before regcomp and
 * groups keep their numbers). Example for "C1:0012 C2:0003":
 *     ^C1:(?<in>[0-9]+) C2:(?<out>[0-9]+)$
 *
 * Backreferences (\1..\9) are refused: glibc matches them by backtracking,
 * and a frame from a device must never take exponential time. So is a
 * repetition of a repetition ("a++", "a*{2}"): meaningless in POSIX, and
 * glibc's regcomp copies the expression again for each.
 *
 * Owns the compiled expression and a buffer for the frame being matched.
 * Compile on the loop; match from any thread, one frame at a time per
 * pattern. Fuzzed (tests/fuzz/fuzz_pattern.c).
 */
#ifndef MTP_PATTERN_H
#define MTP_PATTERN_H

#include <stddef.h>
#include <stdint.h>

#include "fields.h"

#define MTP_MAX_GROUPS (MTD_MAX_FIELDS - 1)
#define MTP_NAME_MAX 32

struct mtp_pattern;

/* 0, or -EINVAL with a one-line message in err. */
int mtp_compile(struct mtp_pattern **out, const char *regex, char *err, size_t errlen);
void mtp_free(struct mtp_pattern *p);
/* The number of capture groups. */
size_t mtp_groups(const struct mtp_pattern *p);
/* The field name of group i (1-based): its name, or its number. */
const char *mtp_group_name(const struct mtp_pattern *p, size_t i);

/* Fills out (cleared first) with the groups that took part in the match.
 * The number of fields (0 for a pattern without groups), -ENOENT when the
 * frame does not match (a frame with a NUL byte never does), -E2BIG when a
 * group's text is longer than MTD_TEXT_MAX - 1, -ENOMEM. */
int mtp_match(struct mtp_pattern *p, const uint8_t *frame, size_t len, struct mtd_fields *out);

/* The preprocessing step alone, for tests and the fuzzer: writes
 * "^(" body ")$" to out (outlen bytes) and the group names (names[i] for
 * group i+1, "" when unnamed) and sets *ngroups. 0 or -EINVAL (message in
 * err), -E2BIG (out too small, or more than MTP_MAX_GROUPS groups). */
int mtp_rewrite(const char *regex, char *out, size_t outlen, char names[][MTP_NAME_MAX],
                size_t *ngroups, char *err, size_t errlen);

#endif
