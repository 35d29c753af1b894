/*
 * fields: numbers and named fields found by the text decoders (fields.h).
 *
 * The number syntax is checked by hand before strtod sees it: strtod alone
 * takes " 12", "inf", "nan", "0x1p3" and the locale's decimal point, and a
 * device line that is half noise must not turn into a reading.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"
#include "fields.h"

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int parse_uint(const char *s, size_t len, unsigned base, struct mtd_num *out)
{
    uint64_t v = 0;

    if (len == 0)
        return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        int d = base == 16 ? mtx_hexval(s[i]) : (is_digit(s[i]) ? s[i] - '0' : -1);
        if (d < 0 || v > (UINT64_MAX - (uint64_t)d) / base)
            return -EINVAL;
        v = v * base + (uint64_t)d;
    }
    out->counter = v;
    out->value = (double)v;
    out->is_uint = true;
    return 0;
}

static size_t digits(const char *s, size_t i, size_t len)
{
    size_t n = 0;
    while (i + n < len && is_digit(s[i + n]))
        n++;
    return n;
}

/* [+-]? (D+ (. D*)? | . D+) ([eE] [+-]? D+)? */
static bool decimal_syntax(const char *s, size_t len)
{
    size_t i = 0, n;

    if (i < len && (s[i] == '+' || s[i] == '-'))
        i++;
    n = digits(s, i, len);
    i += n;
    if (i < len && s[i] == '.') {
        size_t m = digits(s, i + 1, len);
        if (n == 0 && m == 0)
            return false;
        i += 1 + m;
    } else if (n == 0) {
        return false;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            i++;
        n = digits(s, i, len);
        if (n == 0)
            return false;
        i += n;
    }
    return i == len;
}

int mtd_number(const char *s, size_t len, struct mtd_num *out)
{
    char buf[MTD_TEXT_MAX];
    char *end;

    memset(out, 0, sizeof(*out));
    if (len >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
        return parse_uint(s + 2, len - 2, 16, out);
    if (digits(s, 0, len) == len)
        return parse_uint(s, len, 10, out);
    if (len >= sizeof(buf) || !decimal_syntax(s, len))
        return -EINVAL;
    memcpy(buf, s, len);
    buf[len] = 0;
    errno = 0;
    out->value = strtod(buf, &end);
    if (end != buf + len || !isfinite(out->value) || errno == ERANGE) {
        out->value = 0;
        return -EINVAL;
    }
    return 0;
}

const struct mtd_field *mtd_find(const struct mtd_fields *fs, const char *name)
{
    for (size_t i = 0; i < fs->n; i++)
        if (strcmp(fs->f[i].name, name) == 0)
            return &fs->f[i];
    return NULL;
}

int mtd_add(struct mtd_fields *fs, const char *name, size_t name_len, const char *text,
            size_t text_len)
{
    struct mtd_field *f;

    if (fs->n >= MTD_MAX_FIELDS || name_len >= MTD_NAME_MAX || text_len >= MTD_TEXT_MAX)
        return -E2BIG;
    f = &fs->f[fs->n];
    memcpy(f->name, name, name_len);
    f->name[name_len] = 0;
    if (memchr(f->name, 0, name_len) || mtd_find(fs, f->name))
        return memchr(f->name, 0, name_len) ? -EINVAL : -EEXIST;
    memcpy(f->text, text, text_len);
    f->text[text_len] = 0;
    f->numeric = mtd_number(text, text_len, &f->num) == 0;
    fs->n++;
    return 0;
}
