/* Fuzz the field-pattern decoder (plugins/common/pattern.c). First byte
 * even: the input is matched as a frame against one of a few patterns of
 * the kind integrators write (the match must be whole-frame and its fields
 * must be substrings of the frame); odd: the input is a pattern for the
 * rewriting step (named groups, brackets, escapes), which must keep the
 * group count regcomp will see. glibc's regcomp itself is not fuzzed: a
 * pattern comes from the configuration, a frame from the device. */
#include <regex.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pattern.h"

static const char *const patterns[] = {
    "C1:(?<in>[0-9]+) C2:(?<out>[0-9]+)",
    "(?<in>IN)|(?<out>OUT)",
    "([A-Z]+)=([-+]?[0-9]*\\.?[0-9]+)(;([A-Z]+)=([0-9]+))*",
    "\x02([0-9A-F]{10})([0-9A-F]{2})\r?\n?\x03?",
    "PC(....)(..)(..)(.)",
    "[^;]*;([^;]*);(.*)",
};
#define NPAT (sizeof(patterns) / sizeof(patterns[0]))

static struct mtp_pattern *compiled[NPAT];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char err[200];
    (void)argc, (void)argv;
    for (size_t i = 0; i < NPAT; i++)
        if (mtp_compile(&compiled[i], patterns[i], err, sizeof(err)))
            abort();
    return 0;
}

static void match_frame(const uint8_t *frame, size_t len, unsigned which)
{
    struct mtd_fields fs;
    int rc = mtp_match(compiled[which], frame, len, &fs);
    if (rc == -2 || rc == -7) /* ENOENT E2BIG */
        return;
    if (rc < 0 || (size_t)rc != fs.n || fs.n > mtp_groups(compiled[which]))
        abort();
    for (size_t i = 0; i < fs.n; i++) {
        size_t tl = strlen(fs.f[i].text);
        if (tl > len || (tl && !memmem(frame, len, fs.f[i].text, tl)))
            abort(); /* a field is a piece of the frame */
    }
}

static void rewrite(const uint8_t *data, size_t size)
{
    char *re = malloc(size + 1), out[600], names[MTP_MAX_GROUPS][MTP_NAME_MAX], err[200];
    size_t n;
    regex_t r;

    if (!re)
        return;
    memcpy(re, data, size);
    re[size] = 0;
    if (size < 300 && mtp_rewrite(re, out, sizeof(out), names, &n, err, sizeof(err)) == 0) {
        if (n > MTP_MAX_GROUPS || strncmp(out, "^(", 2) || strlen(out) > size + 4)
            abort();
        /* where regcomp accepts the result, it sees our group and the user's */
        if (strlen(out) < 64 && !strchr(re, '{') && regcomp(&r, out, REG_EXTENDED) == 0) {
            if (r.re_nsub != n + 1)
                abort();
            regfree(&r);
        }
    }
    free(re);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] % 2 == 0)
        match_frame(data + 1, size - 1, (data[0] / 2) % NPAT);
    else
        rewrite(data + 1, size - 1);
    return 0;
}
