/*
 * kv: key=value lines (kv.h).
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "kv.h"

static bool is_sep(uint8_t c)
{
    return c == ' ' || c == '\t' || c == ',' || c == ';' || c == '\r' || c == '\n';
}

static bool is_key_char(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

static bool is_value_char(uint8_t c)
{
    return c > ' ' && c < 0x7f && c != '=' && !is_sep(c);
}

/* One token s[0..len): KEY=VALUE. */
static int pair(const uint8_t *s, size_t len, struct mtd_fields *out)
{
    size_t k = 0;

    while (k < len && is_key_char(s[k]))
        k++;
    if (k == 0 || k == len || s[k] != '=' || k + 1 == len)
        return -EINVAL;
    for (size_t i = k + 1; i < len; i++)
        if (!is_value_char(s[i]))
            return -EINVAL;
    return mtd_add(out, (const char *)s, k, (const char *)s + k + 1, len - k - 1);
}

int mtk_parse(const uint8_t *line, size_t len, struct mtd_fields *out)
{
    size_t i = 0;

    out->n = 0;
    while (i < len) {
        size_t start;
        while (i < len && is_sep(line[i]))
            i++;
        if (i == len)
            break;
        start = i;
        while (i < len && !is_sep(line[i]))
            i++;
        int r = pair(line + start, i - start, out);
        if (r)
            return r;
    }
    return out->n ? (int)out->n : -ENODATA;
}
