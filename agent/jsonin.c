#include "jsonin.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 16
#define MAX_STR 4096

struct js {
    const char *p, *start, *end;
    char *err;
    size_t errlen;
    char key[MAX_STR + 1], str[MAX_STR + 1];
};

static int fail(struct js *j, const char *why)
{
    if (j->errlen)
        snprintf(j->err, j->errlen, "column %zu: %s", (size_t)(j->p - j->start) + 1, why);
    return -EINVAL;
}

static void ws(struct js *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int hex4(struct js *j, unsigned *v)
{
    *v = 0;
    if (j->end - j->p < 4)
        return fail(j, "short \\u escape");
    for (int i = 0; i < 4; i++) {
        char c = *j->p++;
        *v <<= 4;
        if (c >= '0' && c <= '9')
            *v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            *v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            *v |= (unsigned)(c - 'A' + 10);
        else
            return fail(j, "bad \\u escape");
    }
    return 0;
}

static size_t utf8(unsigned cp, char *o)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | cp >> 12);
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | cp >> 18);
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* A string at p (after its opening quote) into out; *n its length. */
static int string(struct js *j, char *out, size_t *n)
{
    size_t o = 0;
    for (;;) {
        if (j->p >= j->end)
            return fail(j, "unterminated string");
        unsigned char c = (unsigned char)*j->p++;
        if (c == '"')
            break;
        if (c < 0x20)
            return fail(j, "control character in a string");
        if (o + 4 > MAX_STR)
            return fail(j, "string longer than 4096 bytes");
        if (c != '\\') {
            out[o++] = (char)c;
            continue;
        }
        if (j->p >= j->end)
            return fail(j, "unterminated string");
        char e = *j->p++, d = 0;
        switch (e) {
        case '"': d = '"'; break;
        case '\\': d = '\\'; break;
        case '/': d = '/'; break;
        case 'b': d = '\b'; break;
        case 'f': d = '\f'; break;
        case 'n': d = '\n'; break;
        case 'r': d = '\r'; break;
        case 't': d = '\t'; break;
        }
        if (d) {
            out[o++] = d;
        } else if (e == 'u') {
            unsigned cp, lo;
            if (hex4(j, &cp))
                return -EINVAL;
            if (cp >= 0xd800 && cp < 0xdc00) {
                if (j->end - j->p < 6 || j->p[0] != '\\' || j->p[1] != 'u')
                    return fail(j, "lone surrogate");
                j->p += 2;
                if (hex4(j, &lo) || lo < 0xdc00 || lo >= 0xe000)
                    return fail(j, "bad surrogate pair");
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            } else if (cp >= 0xdc00 && cp < 0xe000) {
                return fail(j, "lone surrogate");
            }
            o += utf8(cp, out + o);
        } else {
            return fail(j, "bad escape");
        }
    }
    out[o] = 0;
    *n = o;
    return 0;
}

static int number(struct js *j, struct mt_json_val *v)
{
    const char *s = j->p;
    char buf[64];
    if (j->p < j->end && *j->p == '-')
        j->p++;
    if (j->p >= j->end || *j->p < '0' || *j->p > '9')
        return fail(j, "bad value");
    if (*j->p == '0' && j->p + 1 < j->end && j->p[1] >= '0' && j->p[1] <= '9')
        return fail(j, "leading zero");
    v->integral = true;
    while (j->p < j->end && ((*j->p >= '0' && *j->p <= '9') || *j->p == '.' || *j->p == 'e' ||
                             *j->p == 'E' || *j->p == '+' || *j->p == '-')) {
        if (*j->p == '.' || *j->p == 'e' || *j->p == 'E')
            v->integral = false;
        j->p++;
    }
    size_t n = (size_t)(j->p - s);
    if (n >= sizeof(buf))
        return fail(j, "number too long");
    memcpy(buf, s, n);
    buf[n] = 0;
    char *e;
    v->num = strtod(buf, &e);
    if (*e)
        return fail(j, "bad number");
    v->type = MT_JSON_NUM;
    return 0;
}

/* Skips a nested object or array (its opening bracket at p). */
static int skip_nested(struct js *j)
{
    char stack[MAX_DEPTH];
    int depth = 0;
    size_t n;
    do {
        if (j->p >= j->end)
            return fail(j, "unterminated object or array");
        char c = *j->p++;
        if (c == '{' || c == '[') {
            if (depth == MAX_DEPTH)
                return fail(j, "nested too deep");
            stack[depth++] = c == '{' ? '}' : ']';
        } else if (c == '}' || c == ']') {
            if (!depth || stack[depth - 1] != c)
                return fail(j, "mismatched bracket");
            depth--;
        } else if (c == '"') {
            if (string(j, j->str, &n))
                return -EINVAL;
        }
    } while (depth);
    return 0;
}

static int value(struct js *j, struct mt_json_val *v)
{
    memset(v, 0, sizeof(*v));
    if (j->p >= j->end)
        return fail(j, "value expected");
    char c = *j->p;
    if (c == '"') {
        j->p++;
        v->type = MT_JSON_STR;
        v->s = j->str;
        return string(j, j->str, &v->len);
    }
    if (c == '{' || c == '[') {
        const char *s = j->p;
        if (skip_nested(j))
            return -EINVAL;
        v->type = c == '{' ? MT_JSON_OBJ : MT_JSON_ARR;
        v->s = s;
        v->len = (size_t)(j->p - s);
        return 0;
    }
    static const struct {
        const char *w;
        int type;
        bool b;
    } lits[] = {{"true", MT_JSON_BOOL, true}, {"false", MT_JSON_BOOL, false}, {"null", MT_JSON_NULL, false}};
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(lits[i].w);
        if ((size_t)(j->end - j->p) >= n && memcmp(j->p, lits[i].w, n) == 0) {
            j->p += n;
            v->type = lits[i].type;
            v->b = lits[i].b;
            return 0;
        }
    }
    return number(j, v);
}

int mt_json_object(const char *text, size_t len,
                   int (*cb)(void *arg, const char *key, const struct mt_json_val *v), void *arg,
                   char *err, size_t errlen)
{
    struct js *j = malloc(sizeof(*j));
    struct mt_json_val v;
    size_t n;
    int rc = 0;

    if (!j)
        return -ENOMEM;
    j->p = j->start = text;
    j->end = text + len;
    j->err = err;
    j->errlen = errlen;
    ws(j);
    if (j->p >= j->end || *j->p != '{') {
        rc = fail(j, "an object {...} expected");
        goto out;
    }
    j->p++;
    ws(j);
    if (j->p < j->end && *j->p == '}') {
        j->p++;
        goto tail;
    }
    for (;;) {
        ws(j);
        if (j->p >= j->end || *j->p != '"') {
            rc = fail(j, "a member name in quotes expected");
            goto out;
        }
        j->p++;
        if ((rc = string(j, j->key, &n)))
            goto out;
        ws(j);
        if (j->p >= j->end || *j->p != ':') {
            rc = fail(j, "':' expected");
            goto out;
        }
        j->p++;
        ws(j);
        if ((rc = value(j, &v)))
            goto out;
        if ((rc = cb(arg, j->key, &v)))
            goto out;
        ws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }
        if (j->p < j->end && *j->p == '}') {
            j->p++;
            break;
        }
        rc = fail(j, "',' or '}' expected");
        goto out;
    }
tail:
    ws(j);
    if (j->p != j->end)
        rc = fail(j, "text after the object");
out:
    free(j);
    return rc;
}
