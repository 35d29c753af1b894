/*
 * pattern: POSIX regular expressions with named groups (pattern.h).
 */
#include <errno.h>
#include <regex.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"
#include "pattern.h"

struct mtp_pattern {
    regex_t re;
    char *text; /* the frame with a NUL after it, for regexec */
    size_t cap;
    size_t ngroups;
    char names[MTP_MAX_GROUPS][MTP_NAME_MAX];
};

/* ---- rewriting ---- */

struct rw {
    const char *s;
    size_t i;
    char *out;
    size_t n, cap;
    size_t depth;      /* open groups: a stray ')' would close our own ^( )$ */
    bool after_repeat; /* the last token was *, +, ? or {m,n} */
    bool full;
};

static void put(struct rw *w, const char *s, size_t len)
{
    if (w->n + len >= w->cap) {
        w->full = true;
        return;
    }
    memcpy(w->out + w->n, s, len);
    w->n += len;
    w->out[w->n] = 0;
}

/* A bracket expression from s[i] == '[': returns the index after its ']',
 * or 0 when it is not closed. */
static size_t bracket_end(const char *s, size_t i)
{
    i++;
    if (s[i] == '^')
        i++;
    if (s[i] == ']')
        i++; /* a ']' first is literal */
    while (s[i] && s[i] != ']') {
        if (s[i] == '[' && (s[i + 1] == ':' || s[i + 1] == '.' || s[i + 1] == '=')) {
            char kind = s[i + 1];
            const char *close = NULL;
            for (size_t j = i + 2; s[j] && s[j + 1]; j++)
                if (s[j] == kind && s[j + 1] == ']') {
                    close = s + j;
                    break;
                }
            if (!close)
                return 0;
            i = (size_t)(close - s) + 2;
        } else {
            i++;
        }
    }
    return s[i] == ']' ? i + 1 : 0;
}

static bool name_char(char c, bool first)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' ||
           (!first && c >= '0' && c <= '9');
}

/* At "(?<": reads the name up to '>' into name; the index after '>' or 0. */
static size_t group_name(const char *s, size_t i, char *name)
{
    size_t j = i + 3, k = 0;
    while (name_char(s[j], k == 0) && k < MTP_NAME_MAX - 1)
        name[k++] = s[j++];
    name[k] = 0;
    return k > 0 && s[j] == '>' ? j + 1 : 0;
}

static int open_group(struct rw *w, char names[][MTP_NAME_MAX], size_t *ng, char *err,
                      size_t errlen)
{
    const char *s = w->s;
    char name[MTP_NAME_MAX] = "";

    if (*ng >= MTP_MAX_GROUPS)
        return mtx_fail(err, errlen, -E2BIG, "more than %d capture groups", MTP_MAX_GROUPS);
    if (s[w->i + 1] == '?') {
        size_t next = s[w->i + 2] == '<' ? group_name(s, w->i, name) : 0;
        if (!next)
            return mtx_fail(err, errlen, -EINVAL,
                        "at offset %zu: only (?<name>...) groups are supported, names "
                        "[A-Za-z_][A-Za-z0-9_]*",
                        w->i);
        for (size_t g = 0; g < *ng; g++)
            if (strcmp(names[g], name) == 0)
                return mtx_fail(err, errlen, -EINVAL, "group name '%s' used twice", name);
        w->i = next;
    } else {
        w->i++;
    }
    snprintf(names[*ng], MTP_NAME_MAX, "%s", name);
    (*ng)++;
    w->depth++;
    put(w, "(", 1);
    return 0;
}

static bool is_repeat(char c)
{
    return c == '*' || c == '+' || c == '?' || c == '{';
}

/* A repetition: *, +, ? or a whole {m,n}. Stacked ones ("a++", "a*{2}")
 * mean nothing in POSIX and make glibc's regcomp copy the tree again for
 * each, exponentially: refused. */
static int repeat(struct rw *w, char *err, size_t errlen)
{
    const char *s = w->s;
    size_t end = w->i + 1;

    if (w->after_repeat)
        return mtx_fail(err, errlen, -EINVAL, "at offset %zu: a repetition of a repetition", w->i);
    if (s[w->i] == '{') {
        while (s[end] && s[end] != '}')
            end++;
        if (!s[end])
            return mtx_fail(err, errlen, -EINVAL, "unclosed { at offset %zu", w->i);
        end++;
    }
    put(w, s + w->i, end - w->i);
    w->i = end;
    w->after_repeat = true;
    return 0;
}

static int rewrite_one(struct rw *w, char names[][MTP_NAME_MAX], size_t *ng, char *err,
                       size_t errlen)
{
    const char *s = w->s;
    char c = s[w->i];

    if (is_repeat(c))
        return repeat(w, err, errlen);
    w->after_repeat = false;
    if (c == '\\') {
        char d = s[w->i + 1];
        if (d >= '1' && d <= '9')
            return mtx_fail(err, errlen, -EINVAL, "backreference \\%c is not allowed", d);
        if (!d)
            return mtx_fail(err, errlen, -EINVAL, "trailing backslash");
        put(w, s + w->i, 2);
        w->i += 2;
    } else if (c == '[') {
        size_t end = bracket_end(s, w->i);
        if (!end)
            return mtx_fail(err, errlen, -EINVAL, "unclosed [ at offset %zu", w->i);
        put(w, s + w->i, end - w->i);
        w->i = end;
    } else if (c == '(') {
        return open_group(w, names, ng, err, errlen);
    } else if (c == ')') {
        if (w->depth == 0)
            return mtx_fail(err, errlen, -EINVAL, "unmatched ) at offset %zu", w->i);
        w->depth--;
        put(w, ")", 1);
        w->i++;
    } else {
        put(w, s + w->i, 1);
        w->i++;
    }
    return 0;
}

int mtp_rewrite(const char *regex, char *out, size_t outlen, char names[][MTP_NAME_MAX],
                size_t *ngroups, char *err, size_t errlen)
{
    struct rw w = {.s = regex, .out = out, .cap = outlen};
    int rc = 0;

    *ngroups = 0;
    if (outlen)
        out[0] = 0;
    put(&w, "^(", 2);
    while (regex[w.i] && !rc && !w.full)
        rc = rewrite_one(&w, names, ngroups, err, errlen);
    put(&w, ")$", 2);
    if (!rc && w.depth)
        rc = mtx_fail(err, errlen, -EINVAL, "unmatched (");
    if (!rc && w.full)
        rc = mtx_fail(err, errlen, -E2BIG, "pattern too long");
    return rc;
}

/* ---- compile and match ---- */

int mtp_compile(struct mtp_pattern **out, const char *regex, char *err, size_t errlen)
{
    size_t cap = strlen(regex) + 8;
    char *text = malloc(cap);
    struct mtp_pattern *p = calloc(1, sizeof(*p));
    int rc = -ENOMEM;

    *out = NULL;
    if (!text || !p)
        goto out;
    rc = mtp_rewrite(regex, text, cap, p->names, &p->ngroups, err, errlen);
    if (rc)
        goto out;
    int r = regcomp(&p->re, text, REG_EXTENDED);
    if (r) {
        char msg[160];
        regerror(r, &p->re, msg, sizeof(msg));
        rc = mtx_fail(err, errlen, -EINVAL, "%s", msg);
        goto out;
    }
    if (p->re.re_nsub != p->ngroups + 1) {
        regfree(&p->re);
        rc = mtx_fail(err, errlen, -EINVAL, "cannot count the groups of this pattern");
        goto out;
    }
    *out = p;
    p = NULL;
out:
    if (rc == -ENOMEM)
        mtx_fail(err, errlen, rc, "out of memory");
    free(text);
    free(p);
    return rc;
}

void mtp_free(struct mtp_pattern *p)
{
    if (!p)
        return;
    regfree(&p->re);
    free(p->text);
    free(p);
}

size_t mtp_groups(const struct mtp_pattern *p)
{
    return p->ngroups;
}

const char *mtp_group_name(const struct mtp_pattern *p, size_t i)
{
    static const char *const numbers[] = {"0",  "1",  "2",  "3",  "4",  "5",  "6",  "7",
                                          "8",  "9",  "10", "11", "12", "13", "14", "15",
                                          "16", "17", "18", "19", "20", "21", "22", "23",
                                          "24", "25", "26", "27", "28", "29", "30", "31"};
    if (i < 1 || i > p->ngroups)
        return NULL;
    return p->names[i - 1][0] ? p->names[i - 1] : numbers[i];
}

/* A NUL-terminated copy of the frame. Not REG_STARTEND: sanitizers'
 * regexec interceptors read the string up to a NUL whatever the flags. */
static const char *terminated(struct mtp_pattern *p, const uint8_t *frame, size_t len)
{
    if (len + 1 > p->cap) {
        size_t cap = len + 1 < 256 ? 256 : len + 1;
        char *t = realloc(p->text, cap);
        if (!t)
            return NULL;
        p->text = t;
        p->cap = cap;
    }
    memcpy(p->text, frame, len);
    p->text[len] = 0;
    return p->text;
}

int mtp_match(struct mtp_pattern *p, const uint8_t *frame, size_t len, struct mtd_fields *out)
{
    regmatch_t m[MTP_MAX_GROUPS + 2];
    const char *s;

    out->n = 0;
    if (memchr(frame, 0, len))
        return -ENOENT; /* a NUL byte in a text frame is noise */
    s = terminated(p, frame, len);
    if (!s)
        return -ENOMEM;
    if (regexec(&p->re, s, p->ngroups + 2, m, 0) != 0)
        return -ENOENT;
    for (size_t g = 1; g <= p->ngroups; g++) {
        const regmatch_t *r = &m[g + 1]; /* m[1] is our own ^( )$ group */
        if (r->rm_so < 0)
            continue;
        const char *name = mtp_group_name(p, g);
        int rc = mtd_add(out, name, strlen(name), s + r->rm_so, (size_t)(r->rm_eo - r->rm_so));
        if (rc)
            return rc;
    }
    return (int)out->n;
}
