#include "ruleinput.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mittari/mittari.h>

#include "jsonin.h"
#include "tz.h"
#include "util.h"

#define MAX_INPUT_TAGS 16

enum { F_TS, F_SITE, F_DEVICE, F_METRIC, F_VALUE, F_UNIT, F_KIND, F_SUBJECT, F_TAGS, F_ORIGIN,
       F_SUPPRESSED, F_COUNT };
static const char *const field_names[F_COUNT] = {
    "ts", "site", "device", "metric", "value", "unit", "kind", "subject", "tags", "origin",
    "suppressed_below"};

/* ---- time ---- */

static int digits(const char **p, int n, int *v)
{
    *v = 0;
    for (int i = 0; i < n; i++, (*p)++) {
        if (!isdigit((unsigned char)**p))
            return -EINVAL;
        *v = *v * 10 + (**p - '0');
    }
    return 0;
}

int mt_parse_iso8601(const char *s, int64_t *us)
{
    int y, mo, d, h, mi, sec = 0, oh = 0, om = 0;
    int64_t frac = 0;
    const char *p = s;

    if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) || *p++ != '-' ||
        digits(&p, 2, &d) || (*p != 'T' && *p != 't' && *p != ' '))
        return -EINVAL;
    p++;
    if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi))
        return -EINVAL;
    if (*p == ':') {
        p++;
        if (digits(&p, 2, &sec))
            return -EINVAL;
        if (*p == '.' || *p == ',') {
            int n = 0;
            p++;
            while (isdigit((unsigned char)*p)) {
                if (n < 6)
                    frac = frac * 10 + (*p - '0');
                n++;
                p++;
            }
            if (n == 0 || n > 9)
                return -EINVAL;
            for (; n < 6; n++)
                frac *= 10;
        }
    }
    int sign = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        sign = *p++ == '-' ? -1 : 1;
        if (digits(&p, 2, &oh))
            return -EINVAL;
        if (*p == ':')
            p++;
        if (digits(&p, 2, &om))
            return -EINVAL;
    } else {
        return -EINVAL; /* a time without a zone means nothing here */
    }
    if (*p || !mt_civil_valid(y, mo, d) || h > 23 || mi > 59 || sec > 60 ||
        oh > 23 || om > 59)
        return -EINVAL;
    int64_t days = mt_days_from_civil(y, (unsigned)mo, (unsigned)d);
    int64_t t = days * 86400 + h * 3600 + mi * 60 + sec - sign * (oh * 3600 + om * 60);
    *us = t * 1000000 + frac;
    return 0;
}

/* ---- fields ---- */

static bool ident(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return false;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '_' || *s == '.' || *s == ':' || *s == '-'))
            return false;
    return true;
}

struct kv {
    char k[40], v[130];
};

static int kv_cmp(const void *a, const void *b)
{
    return strcmp(((const struct kv *)a)->k, ((const struct kv *)b)->k);
}

struct tagsink {
    struct kv kv[MAX_INPUT_TAGS];
    size_t n;
    char *err;
    size_t errlen;
};

static int tag_member(void *arg, const char *key, const struct mt_json_val *v)
{
    struct tagsink *t = arg;
    if (v->type != MT_JSON_STR || !ident(key, 32) || v->len == 0 || v->len > 128 ||
        strlen(v->s) != v->len) {
        snprintf(t->err, t->errlen, "tag '%.32s' must be a name of at most 32 of A-Z a-z 0-9 "
                 "_ . : - with a text of 1 to 128 bytes", key);
        return -EINVAL;
    }
    if (t->n == MAX_INPUT_TAGS) {
        snprintf(t->err, t->errlen, "more than %d tags", MAX_INPUT_TAGS);
        return -EINVAL;
    }
    snprintf(t->kv[t->n].k, sizeof(t->kv[0].k), "%s", key);
    snprintf(t->kv[t->n].v, sizeof(t->kv[0].v), "%s", v->s);
    t->n++;
    return 0;
}

/* A JSON object of tags -> the canonical text the agent stores. */
static int canon_tags(const char *text, size_t len, char *out, size_t outlen, char *err,
                      size_t errlen)
{
    struct tagsink t = {.err = err, .errlen = errlen};
    char why[200];
    struct mt_buf b = {0};

    out[0] = 0;
    if (len == 0)
        return 0;
    int rc = mt_json_object(text, len, tag_member, &t, why, sizeof(why));
    if (rc) {
        if (rc == -EINVAL && !t.err[0])
            snprintf(err, errlen, "tags: %s", why);
        return -EINVAL;
    }
    if (t.n == 0)
        return 0;
    qsort(t.kv, t.n, sizeof(t.kv[0]), kv_cmp);
    rc = mt_buf_addc(&b, '{');
    for (size_t i = 0; i < t.n; i++) {
        if (i && !strcmp(t.kv[i].k, t.kv[i - 1].k)) {
            snprintf(err, errlen, "tag '%s' twice", t.kv[i].k);
            mt_buf_free(&b);
            return -EINVAL;
        }
        rc |= (i ? mt_buf_addc(&b, ',') : 0) | mt_buf_json_str(&b, t.kv[i].k) |
              mt_buf_addc(&b, ':') | mt_buf_json_str(&b, t.kv[i].v);
    }
    rc |= mt_buf_addc(&b, '}');
    if (rc || b.len >= outlen) {
        snprintf(err, errlen, "tags too long");
        mt_buf_free(&b);
        return -EINVAL;
    }
    memcpy(out, b.p, b.len + 1);
    mt_buf_free(&b);
    return 0;
}

static int kind_of(const char *s)
{
    if (!s || !*s || strcmp(s, "delta") == 0)
        return MITTARI_KIND_DELTA;
    if (strcmp(s, "gauge") == 0)
        return MITTARI_KIND_GAUGE;
    if (strcmp(s, "event") == 0)
        return MITTARI_KIND_EVENT;
    return 0;
}

/* Field values (NULL = absent) -> a reading, with the documented defaults. */
static int make_reading(const char *const *f, struct mt_test_reading *r, char *err, size_t errlen)
{
    memset(r, 0, sizeof(*r));
    if (!f[F_TS] || !*f[F_TS])
        return snprintf(err, errlen, "no ts"), -EINVAL;
    if (mt_parse_iso8601(f[F_TS], &r->ts))
        return snprintf(err, errlen, "ts '%.40s' is not ISO 8601 with Z or an offset "
                        "(2026-11-25T09:05:00+02:00)", f[F_TS]),
               -EINVAL;
    r->site = f[F_SITE] && *f[F_SITE] ? f[F_SITE] : "site";
    r->device = f[F_DEVICE] && *f[F_DEVICE] ? f[F_DEVICE] : "device";
    r->metric = f[F_METRIC];
    r->unit = f[F_UNIT] ? f[F_UNIT] : "";
    r->subject = f[F_SUBJECT] && *f[F_SUBJECT] ? f[F_SUBJECT] : NULL;
    r->origin = f[F_ORIGIN] && *f[F_ORIGIN] ? f[F_ORIGIN] : NULL;
    r->suppressed = f[F_SUPPRESSED] && *f[F_SUPPRESSED];
    if (!r->metric || !ident(r->metric, 63))
        return snprintf(err, errlen, "metric '%.40s' must be 1 to 63 of A-Z a-z 0-9 _ . : -",
                        r->metric ? r->metric : ""),
               -EINVAL;
    if (!ident(r->site, 63) || !ident(r->device, 63))
        return snprintf(err, errlen, "site and device must be 1 to 63 of A-Z a-z 0-9 _ . : -"),
               -EINVAL;
    if (strlen(r->unit) > 31)
        return snprintf(err, errlen, "unit longer than 31 bytes"), -EINVAL;
    if (r->subject && strlen(r->subject) >= 24)
        return snprintf(err, errlen, "subject longer than 23 bytes (pseudonyms have 22)"),
               -EINVAL;
    if (!(r->kind = kind_of(f[F_KIND])))
        return snprintf(err, errlen, "kind '%.20s' is not delta, gauge or event", f[F_KIND]),
               -EINVAL;
    if (!r->suppressed) {
        char *e;
        if (!f[F_VALUE] || !*f[F_VALUE])
            return snprintf(err, errlen, "no value"), -EINVAL;
        r->value = strtod(f[F_VALUE], &e);
        if (*e || !isfinite(r->value))
            return snprintf(err, errlen, "value '%.40s' is not a number", f[F_VALUE]), -EINVAL;
    }
    if (f[F_TAGS] && canon_tags(f[F_TAGS], strlen(f[F_TAGS]), r->tags, sizeof(r->tags), err,
                                errlen))
        return -EINVAL;
    return 0;
}

/* ---- CSV ---- */

/* Splits an RFC 4180 line into fields, unquoted, into store. Returns the
 * number of fields or -EINVAL. */
static int csv_split(const char *line, const char **fields, int max, char *store, size_t len)
{
    size_t o = 0;
    int n = 0;
    const char *p = line;
    for (;;) {
        if (n == max || o >= len)
            return -EINVAL;
        fields[n++] = store + o;
        if (*p == '"') {
            p++;
            for (;;) {
                if (!*p)
                    return -EINVAL;
                if (*p == '"' && p[1] == '"') {
                    p += 2;
                    store[o++] = '"';
                } else if (*p == '"') {
                    p++;
                    break;
                } else {
                    store[o++] = *p++;
                }
                if (o >= len)
                    return -EINVAL;
            }
            if (*p && *p != ',' && *p != '\r' && *p != '\n')
                return -EINVAL;
        } else {
            while (*p && *p != ',' && *p != '\r' && *p != '\n') {
                store[o++] = *p++;
                if (o >= len)
                    return -EINVAL;
            }
        }
        store[o++] = 0;
        if (*p != ',')
            return n;
        p++;
    }
}

int mt_csv_header(const char *line, struct mt_csv_cols *cols, char *err, size_t errlen)
{
    const char *f[64];
    char store[2048];
    int n = csv_split(line, f, 64, store, sizeof(store));
    if (n < 0)
        return snprintf(err, errlen, "the header line is not CSV"), -EINVAL;
    for (int i = 0; i < F_COUNT; i++)
        cols->idx[i] = -1;
    for (int c = 0; c < n; c++)
        for (int i = 0; i < F_COUNT; i++)
            if (strcmp(f[c], field_names[i]) == 0)
                cols->idx[i] = c;
    cols->ncols = n;
    if (cols->idx[F_TS] < 0 || cols->idx[F_METRIC] < 0 || cols->idx[F_VALUE] < 0)
        return snprintf(err, errlen, "the header must name at least ts, metric and value"),
               -EINVAL;
    return 0;
}

int mt_csv_reading(const char *line, const struct mt_csv_cols *cols, struct mt_test_reading *r,
                   char *store, size_t storelen, char *err, size_t errlen)
{
    const char *f[64], *v[F_COUNT];
    if (!line[strspn(line, " \t\r\n")])
        return 1;
    int n = csv_split(line, f, 64, store, storelen);
    if (n < 0)
        return snprintf(err, errlen, "not a CSV line (a quote not closed?)"), -EINVAL;
    if (n != cols->ncols)
        return snprintf(err, errlen, "%d fields, the header has %d", n, cols->ncols), -EINVAL;
    for (int i = 0; i < F_COUNT; i++)
        v[i] = cols->idx[i] >= 0 ? f[cols->idx[i]] : NULL;
    return make_reading(v, r, err, errlen);
}

/* ---- JSON Lines ---- */

struct jline {
    const char *v[F_COUNT];
    char *store;
    size_t len, used;
    char *err;
    size_t errlen;
};

static int jl_member(void *arg, const char *key, const struct mt_json_val *val)
{
    struct jline *j = arg;
    int i = 0;
    char num[40];
    const char *s = NULL;
    size_t n = 0;
    while (i < F_COUNT && strcmp(key, field_names[i]) != 0)
        i++;
    if (i == F_COUNT || val->type == MT_JSON_NULL)
        return 0; /* other keys (seq, gen, revision) do not matter here */
    switch (val->type) {
    case MT_JSON_STR: s = val->s; n = val->len; break;
    case MT_JSON_NUM:
        n = (size_t)snprintf(num, sizeof(num), "%.17g", val->num);
        s = num;
        break;
    case MT_JSON_OBJ:
        if (i == F_TAGS) {
            s = val->s;
            n = val->len;
            break;
        }
        /* fall through */
    default:
        snprintf(j->err, j->errlen, "'%s' has the wrong type", key);
        return -EINVAL;
    }
    if (j->used + n + 1 > j->len) {
        snprintf(j->err, j->errlen, "line too long");
        return -EINVAL;
    }
    memcpy(j->store + j->used, s, n);
    j->store[j->used + n] = 0;
    j->v[i] = j->store + j->used;
    j->used += n + 1;
    return 0;
}

int mt_jsonl_reading(const char *line, size_t len, struct mt_test_reading *r, char *store,
                     size_t storelen, char *err, size_t errlen)
{
    struct jline j = {.store = store, .len = storelen, .err = err, .errlen = errlen};
    char why[200];
    size_t k = 0;
    while (k < len && isspace((unsigned char)line[k]))
        k++;
    if (k == len)
        return 1;
    err[0] = 0;
    int rc = mt_json_object(line, len, jl_member, &j, why, sizeof(why));
    if (rc) {
        if (!err[0])
            snprintf(err, errlen, "%s", why);
        return -EINVAL;
    }
    return make_reading(j.v, r, err, errlen);
}

