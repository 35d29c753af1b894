#include "cardid.h"
#include "text.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

const char *const cr_idfmt_names[] = {"em4100-dec", "em4100-hex", "wiegand26",
                                      "uid-hex",    "text",       NULL};

static bool blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool digit(char c)
{
    return c >= '0' && c <= '9';
}

static void trim(const char **s, size_t *n)
{
    while (*n && blank(**s)) {
        (*s)++;
        (*n)--;
    }
    while (*n && blank((*s)[*n - 1]))
        (*n)--;
}

/* The decimal number of the digits at *s (at least one, at most maxdigits,
 * at most max), advancing *s past them. */
static bool number(const char **s, const char *end, size_t maxdigits, uint64_t max, uint64_t *v)
{
    size_t n = 0;
    *v = 0;
    while (*s < end && digit(**s)) {
        if (++n > maxdigits)
            return false;
        *v = *v * 10 + (uint64_t)(**s - '0');
        (*s)++;
    }
    return n > 0 && *v <= max;
}

/* "FC,CN": facility code (8 bits) and card number (16 bits). */
static bool fc_cn(const char *s, const char *end, uint64_t *fc, uint64_t *cn)
{
    return number(&s, end, 3, 255, fc) && s < end && *s++ == ',' && number(&s, end, 5, 65535, cn) &&
           s == end;
}

static int copy_text(const char *s, size_t n, const char *space, struct cr_subject *out)
{
    if (n == 0 || n > CR_SUBJECT_MAX)
        return -EINVAL;
    memcpy(out->id, s, n);
    out->len = n;
    out->space = space;
    return 0;
}

/* "0013961168", or the card print "0013961168 213,02000", whose FC and CN
 * must be bits 16-23 and 0-15 of the same number (a misread print is not
 * some other card). Exactly 10 digits, as readers type and cards print the
 * low 32 bits (DEVICES.md section 5): 8 digits are the Wiegand "8-digit"
 * form FFFCCCCC of another id_format, not a shorter way of writing this one
 * (issue 9). */
static int em4100_dec(const char *s, size_t n, struct cr_subject *out)
{
    const char *p = s, *end = s + n;
    uint64_t v, fc, cn;

    if (!number(&p, end, 10, UINT32_MAX, &v) || p - s != 10)
        return -EINVAL;
    if (p < end) {
        if (!blank(*p))
            return -EINVAL;
        while (p < end && blank(*p))
            p++;
        if (!fc_cn(p, end, &fc, &cn) || fc != ((v >> 16) & 0xff) || cn != (v & 0xffff))
            return -EINVAL;
    }
    return copy_text(s, n, "em4100-dec", out);
}

static int em4100_hex(const char *s, size_t n, struct cr_subject *out)
{
    if (n != 8 && n != 10)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (mtx_hexval(s[i]) < 0)
            return -EINVAL;
    return copy_text(s, n, "em4100-hex", out);
}

/* Written out as "FFF,CCCCC" whatever the reader typed, so the agent reads
 * it as text, never as a 4-byte binary frame ("1,23" is four bytes too). */
static int wiegand26(const char *s, size_t n, struct cr_subject *out)
{
    const char *end = s + n, *p = s;
    uint64_t fc, cn;
    char text[16];

    if (memchr(s, ',', n)) {
        if (!fc_cn(s, end, &fc, &cn))
            return -EINVAL;
    } else if (n != 8 || !number(&p, s + 3, 3, 255, &fc) || p != s + 3 ||
               !number(&p, end, 5, 65535, &cn) || p != end) {
        return -EINVAL; /* not FFFCCCCC, the "8-digit card number" of wedge readers */
    }
    int len = snprintf(text, sizeof(text), "%03u,%05u", (unsigned)fc, (unsigned)cn);
    int rc = copy_text(text, (size_t)len, "wiegand26", out);
    explicit_bzero(text, sizeof(text));
    return rc;
}

/* Hex bytes, each pair optionally followed by one separator. */
static int uid_hex(const char *s, size_t n, struct cr_subject *out)
{
    size_t i = 0, nb = 0;

    while (i < n) {
        int hi = i + 1 < n ? mtx_hexval(s[i]) : -1, lo = hi >= 0 ? mtx_hexval(s[i + 1]) : -1;
        if (lo < 0 || nb == CR_SUBJECT_MAX)
            return -EINVAL;
        out->id[nb++] = (uint8_t)(hi << 4 | lo);
        i += 2;
        if (i < n && (s[i] == ':' || s[i] == '-' || s[i] == ' ') && i + 1 < n)
            i++;
    }
    if (nb != 4 && nb != 7 && nb != 10) /* single, double, triple size UIDs */
        return -EINVAL;
    out->len = nb;
    out->space = "iso14443";
    return 0;
}

static int text(const char *s, size_t n, struct cr_subject *out)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            return -EINVAL;
    return copy_text(s, n, "card", out);
}

int cr_cardid_parse(int fmt, const char *s, size_t n, struct cr_subject *out)
{
    int rc = -EINVAL;

    memset(out, 0, sizeof(*out));
    if (!s)
        return -EINVAL;
    trim(&s, &n);
    switch (fmt) {
    case CR_ID_EM4100_DEC:
        rc = em4100_dec(s, n, out);
        break;
    case CR_ID_EM4100_HEX:
        rc = em4100_hex(s, n, out);
        break;
    case CR_ID_WIEGAND26:
        rc = wiegand26(s, n, out);
        break;
    case CR_ID_UID_HEX:
        rc = uid_hex(s, n, out);
        break;
    case CR_ID_TEXT:
        rc = text(s, n, out);
        break;
    }
    if (rc)
        cr_subject_wipe(out);
    return rc;
}

void cr_subject_wipe(struct cr_subject *s)
{
    explicit_bzero(s, sizeof(*s));
}
