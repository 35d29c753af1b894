#include "subject.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

static void be32(uint32_t v, uint8_t *out)
{
    out[0] = (uint8_t)(v >> 24);
    out[1] = (uint8_t)(v >> 16);
    out[2] = (uint8_t)(v >> 8);
    out[3] = (uint8_t)v;
}

/* Text without surrounding blanks: [*s, *s + *n). */
static void trim(const char **s, size_t *n)
{
    while (*n && (**s == ' ' || **s == '\t' || **s == '\r' || **s == '\n')) {
        (*s)++;
        (*n)--;
    }
    while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t' || (*s)[*n - 1] == '\r' ||
                  (*s)[*n - 1] == '\n'))
        (*n)--;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decimal digits [s, s+n) into *v, at most max. */
static bool decimal(const char *s, size_t n, uint64_t max, uint64_t *v)
{
    *v = 0;
    if (n == 0 || n > 20)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        *v = *v * 10 + (uint64_t)(s[i] - '0');
        if (*v > max)
            return false;
    }
    return true;
}

static int em4100_hex(const char *s, size_t n, uint8_t *out)
{
    uint64_t v = 0;

    trim(&s, &n);
    if (n != 8 && n != 10)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        int h = hexval(s[i]);
        if (h < 0)
            return -EINVAL;
        v = v << 4 | (uint64_t)h;
    }
    be32((uint32_t)v, out); /* the low 32 bits; the version byte is dropped */
    return 0;
}

/* "0013961168" or "0013961168 213,02000": the printed facility code and
 * card number must be the low 24 bits of the same number. */
static int em4100_dec(const char *s, size_t n, uint8_t *out)
{
    uint64_t v, fc, cn;
    size_t i = 0;

    trim(&s, &n);
    while (i < n && s[i] >= '0' && s[i] <= '9')
        i++;
    if (i > 10 || !decimal(s, i, UINT32_MAX, &v))
        return -EINVAL;
    if (i < n) {
        const char *rest = s + i;
        size_t rn = n - i;
        trim(&rest, &rn);
        const char *comma = memchr(rest, ',', rn);
        if (!comma || !decimal(rest, (size_t)(comma - rest), 255, &fc) ||
            !decimal(comma + 1, rn - (size_t)(comma + 1 - rest), 65535, &cn))
            return -EINVAL;
        if (fc != ((v >> 16) & 0xff) || cn != (v & 0xffff))
            return -EINVAL;
    }
    be32((uint32_t)v, out);
    return 0;
}

static int parity(uint32_t v)
{
    return __builtin_popcount(v) & 1;
}

/* 26 bits, MSB first: even parity over bits 2-13, FC bits 2-9, CN bits
 * 10-25, odd parity over bits 14-25 (bit 1 is the leftmost). */
static int wiegand26_bits(uint32_t w, uint8_t *out)
{
    if (w >> 26)
        return -EINVAL;
    uint32_t first12 = (w >> 13) & 0xfff, last12 = (w >> 1) & 0xfff;
    if ((parity(first12) ^ (int)((w >> 25) & 1)) != 0) /* even */
        return -EINVAL;
    if ((parity(last12) ^ (int)(w & 1)) != 1) /* odd */
        return -EINVAL;
    uint32_t fc = (w >> 17) & 0xff, cn = (w >> 1) & 0xffff;
    out[0] = (uint8_t)fc;
    out[1] = (uint8_t)(cn >> 8);
    out[2] = (uint8_t)cn;
    return 0;
}

static int wiegand26(const uint8_t *id, size_t len, uint8_t *out)
{
    /* a frame holds 26 bits, so its first byte is 0..3: never a digit of
     * the text form "FC,CN" (which may be 4 bytes too, "1,23") */
    if (len == 4 && id[0] <= 3)
        return wiegand26_bits((uint32_t)id[0] << 24 | (uint32_t)id[1] << 16 |
                                  (uint32_t)id[2] << 8 | id[3],
                              out);
    /* text "FC,CN" */
    const char *s = (const char *)id;
    size_t n = len;
    uint64_t fc, cn;
    trim(&s, &n);
    const char *comma = memchr(s, ',', n);
    if (!comma || !decimal(s, (size_t)(comma - s), 255, &fc) ||
        !decimal(comma + 1, n - (size_t)(comma + 1 - s), 65535, &cn))
        return -EINVAL;
    out[0] = (uint8_t)fc;
    out[1] = (uint8_t)(cn >> 8);
    out[2] = (uint8_t)cn;
    return 0;
}

/* A Bluetooth device address: 6 bytes as BlueZ orders the text form (the
 * most significant byte first), or that text with ':' or '-'. */
static int bdaddr(const uint8_t *id, size_t len, uint8_t *out)
{
    if (len == 6) {
        memcpy(out, id, 6);
        return 0;
    }
    if (len != 17)
        return -EINVAL;
    for (size_t i = 0; i < 6; i++) {
        const char *s = (const char *)id + 3 * i;
        int hi = hexval(s[0]), lo = hexval(s[1]);
        if (hi < 0 || lo < 0 || (i < 5 && s[2] != ':' && s[2] != '-') ||
            (i < 5 && s[2] != ((const char *)id)[2]))
            return -EINVAL;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

int mt_subject_daily(const char *canon_space)
{
    return canon_space && strcmp(canon_space, "ble") == 0;
}

int mt_subject_canonical(const char *space, const void *id, size_t len, const char **canon_space,
                         uint8_t out[MT_SUBJECT_MAX], size_t *outlen)
{
    const uint8_t *b = id;

    if (!id || len == 0 || len > MT_SUBJECT_MAX)
        return -EINVAL;
    if (strcmp(space, "em4100") == 0) {
        if (len != 4 && len != 5)
            return -EINVAL;
        memcpy(out, b + len - 4, 4);
        *canon_space = "em4100";
        *outlen = 4;
        return 0;
    }
    if (strcmp(space, "em4100-hex") == 0 || strcmp(space, "em4100-dec") == 0) {
        *canon_space = "em4100";
        *outlen = 4;
        return space[7] == 'h' ? em4100_hex((const char *)b, len, out)
                               : em4100_dec((const char *)b, len, out);
    }
    if (strcmp(space, "wiegand26") == 0) {
        *canon_space = "wiegand26";
        *outlen = 3;
        return wiegand26(b, len, out);
    }
    if (strcmp(space, "ble") == 0) {
        *canon_space = "ble";
        *outlen = 6;
        return bdaddr(b, len, out);
    }
    if (strcmp(space, "iso14443") == 0 && len != 4 && len != 7 && len != 10)
        return -EINVAL;
    memcpy(out, b, len);
    *canon_space = NULL; /* the space as given */
    *outlen = len;
    return 0;
}
