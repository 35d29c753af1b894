#include "ruletest.h"

#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <mittari/mittari.h>

#include "encode.h"
#include "jsonin.h"
#include "rule.h"
#include "ruleinput.h"
#include "rulewin.h"
#include "series.h"
#include "tz.h"
#include "util.h"

#define MAX_ERRORS_SHOWN 20

/* ---- printing ---- */

struct printer {
    int fmt; /* 0 table, else MT_FMT_* + 1 */
    struct mt_encoder enc;
    struct mt_buf buf;
    const struct mt_tz *tz;
    struct mt_series_reg *reg;
    int64_t seq;
    char **rows; /* table: the cells, 7 per row */
    size_t nrows, cap;
};

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p) {
        fputs("mittari: out of memory\n", stderr);
        exit(1);
    }
    return p;
}

struct tagtext {
    struct mt_buf *b;
    int unit;
};

static int tag_text(void *arg, const char *key, const struct mt_json_val *v)
{
    struct tagtext *t = arg;
    if (strcmp(key, "period") == 0) {
        t->unit = mt_unit_parse(v->s ? v->s : "");
        return 0;
    }
    mt_buf_printf(t->b, "%s%s=%s", t->b->len ? " " : "", key, v->s ? v->s : "");
    return 0;
}

static void table_row(struct printer *p, const struct mt_rec *rec, const struct mt_series_info *s)
{
    struct mt_buf tags = {0};
    struct tagtext tt = {&tags, 0};
    char period[64], value[40], note[40], err[80];
    if (s->tags[0])
        mt_json_object(s->tags, strlen(s->tags), tag_text, &tt, err, sizeof(err));
    if (tt.unit) {
        mt_win_label(p->tz, tt.unit, rec->ts, period, sizeof(period));
    } else {
        struct mt_localtime lt;
        int32_t a;
        mt_tz_localtime(p->tz, mt_floordiv(rec->ts, 1000000), &lt);
        a = lt.offset < 0 ? -lt.offset : lt.offset;
        snprintf(period, sizeof(period), "%04lld-%02u-%02uT%02u:%02u:%02u%c%02d:%02d",
                 (long long)lt.year, lt.month, lt.day, lt.hour, lt.min, lt.sec,
                 lt.offset < 0 ? '-' : '+', a / 3600, a / 60 % 60);
    }
    if (rec->flags & MT_RF_SUPPRESSED) {
        snprintf(value, sizeof(value), "<%u", rec->min_count);
    } else {
        struct mt_buf v = {0};
        mt_buf_double(&v, rec->value);
        snprintf(value, sizeof(value), "%s", mt_buf_cstr(&v));
        mt_buf_free(&v);
    }
    note[0] = 0;
    if (MT_RF_REVISION(rec->flags))
        snprintf(note, sizeof(note), "correction %u", MT_RF_REVISION(rec->flags));
    if (p->nrows == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 64;
        p->rows = realloc(p->rows, p->cap * 7 * sizeof(char *));
        if (!p->rows) {
            fputs("mittari: out of memory\n", stderr);
            exit(1);
        }
    }
    char **c = &p->rows[p->nrows++ * 7];
    c[0] = xstrdup(period);
    c[1] = xstrdup(s->site);
    c[2] = xstrdup(s->device);
    c[3] = xstrdup(s->metric);
    c[4] = xstrdup(value);
    c[5] = xstrdup(mt_buf_cstr(&tags));
    c[6] = xstrdup(note);
    mt_buf_free(&tags);
}

static void table_print(struct printer *p, FILE *out)
{
    static const char *const head[7] = {"period", "site", "device", "metric",
                                        "value",  "tags", ""};
    size_t w[7];
    for (int k = 0; k < 7; k++) {
        w[k] = strlen(head[k]);
        for (size_t i = 0; i < p->nrows; i++) {
            size_t l = strlen(p->rows[i * 7 + k]);
            w[k] = l > w[k] ? l : w[k];
        }
    }
    for (size_t i = 0; i <= p->nrows; i++) {
        struct mt_buf b = {0};
        for (int k = 0; k < 7; k++) {
            const char *c = i == 0 ? head[k] : p->rows[(i - 1) * 7 + k];
            if (k == 4) /* numbers to the right */
                mt_buf_printf(&b, "%*s  ", (int)w[k], c);
            else
                mt_buf_printf(&b, "%-*s  ", (int)w[k], c);
        }
        while (b.len && b.p[b.len - 1] == ' ')
            b.len--;
        mt_buf_addc(&b, '\n');
        fwrite(b.p, 1, b.len, out);
        mt_buf_free(&b);
    }
    for (size_t i = 0; i < p->nrows * 7; i++)
        free(p->rows[i]);
    free(p->rows);
}

static void drain(struct mt_rule *rule, struct printer *p, FILE *out, uint64_t *figures)
{
    size_t n;
    const struct mt_rec *v = mt_rule_out(rule, &n);
    for (size_t i = 0; i < n; i++) {
        const struct mt_series_info *s = mt_series_get(p->reg, v[i].series);
        (*figures)++;
        if (p->fmt == 0) {
            table_row(p, &v[i], s);
            continue;
        }
        struct mt_row row = {.seq = ++p->seq, .ts = v[i].ts, .series = v[i].series,
                             .flags = v[i].flags, .min_count = v[i].min_count,
                             .value = v[i].value};
        memcpy(row.subject, v[i].subject, sizeof(row.subject));
        mt_encode_row(&p->enc, &p->buf, &row, s);
    }
    if (p->buf.len)
        fwrite(p->buf.p, 1, p->buf.len, out);
    p->buf.len = 0;
    mt_rule_out_clear(rule);
}

/* ---- the replay ---- */

/* The rule's name: the script's file name without .lua, as a name. */
static void rule_name(const char *script, char *buf, size_t len)
{
    const char *b = strrchr(script, '/');
    b = b ? b + 1 : script;
    snprintf(buf, len, "%s", b);
    char *dot = strrchr(buf, '.');
    if (dot && dot != buf)
        *dot = 0;
    for (char *c = buf; *c; c++)
        if (!(isalnum((unsigned char)*c) || *c == '_' || *c == '.' || *c == '-'))
            *c = '-';
    if (!buf[0] || strlen(buf) > 63)
        snprintf(buf, len, "rule");
}

struct replay {
    const struct mt_ruletest_opts *o;
    struct mt_rule *rule;
    struct mt_series_reg *reg;
    struct printer *pr;
    FILE *out, *err;
    uint64_t lines, readings, skipped, filtered, figures;
    uint64_t shown;
    char last_err[512];
    uint64_t repeats;
};

static void report(struct replay *x, const char *msg)
{
    if (strcmp(msg, x->last_err) == 0) {
        x->repeats++;
        return;
    }
    if (x->repeats)
        fprintf(x->err, "  (the same error %llu more times)\n", (unsigned long long)x->repeats);
    x->repeats = 0;
    snprintf(x->last_err, sizeof(x->last_err), "%s", msg);
    if (x->shown++ < MAX_ERRORS_SHOWN)
        fprintf(x->err, "%s\n", msg);
}

static int replay_one(struct replay *x, struct mt_test_reading *r)
{
    char err[600];
    if (r->origin || r->suppressed) {
        x->skipped++; /* a rule sees raw readings */
        return 0;
    }
    if (x->o->series) {
        char name[200];
        snprintf(name, sizeof(name), "%s/%s/%s", r->site, r->device, r->metric);
        if (fnmatch(x->o->series, name, 0) != 0) {
            x->filtered++;
            return 0;
        }
    }
    struct mt_series_info k = {.site = r->site, .device = r->device, .metric = r->metric,
                               .unit = r->unit, .kind = r->kind, .tags = r->tags};
    uint32_t id;
    if (mt_series_intern(x->reg, &k, &id))
        return -ENOMEM;
    struct mt_row row = {.seq = (int64_t)x->lines, .ts = r->ts, .series = id, .value = r->value};
    if (r->subject)
        snprintf(row.subject, sizeof(row.subject), "%s", r->subject);
    x->readings++;
    int rc;
    while ((rc = mt_rule_feed(x->rule, &row, mt_series_get(x->reg, id), err, sizeof(err))) == 1)
        drain(x->rule, x->pr, x->out, &x->figures);
    if (rc == -ENOMEM && !err[0])
        return rc;
    if (rc)
        report(x, err);
    drain(x->rule, x->pr, x->out, &x->figures);
    return 0;
}

/* Reads one logical line (a CSV line may continue after a quoted line
 * break). Returns its length, or -1 at the end. */
static ssize_t read_line(FILE *in, char **line, size_t *cap, bool csv)
{
    ssize_t n = getline(line, cap, in);
    if (n < 0 || !csv)
        return n;
    size_t quotes = 0;
    for (ssize_t i = 0; i < n; i++)
        quotes += (*line)[i] == '"';
    while (quotes % 2) {
        char *more = NULL;
        size_t mcap = 0;
        ssize_t m = getline(&more, &mcap, in);
        if (m < 0) {
            free(more);
            break;
        }
        for (ssize_t i = 0; i < m; i++)
            quotes += more[i] == '"';
        char *v = realloc(*line, (size_t)n + (size_t)m + 1);
        if (!v) {
            free(more);
            return -1;
        }
        memcpy(v + n, more, (size_t)m + 1);
        *line = v;
        *cap = (size_t)n + (size_t)m + 1;
        n += m;
        free(more);
    }
    return n;
}

static int replay_input(struct replay *x, FILE *in, const char *name)
{
    char *line = NULL, err[400];
    size_t cap = 0;
    ssize_t n;
    int kind = 0; /* 1 csv, 2 jsonl */
    struct mt_csv_cols cols;
    static char store[65536];
    int rc = 0;

    while ((n = read_line(in, &line, &cap, kind != 2)) >= 0) {
        struct mt_test_reading r;
        x->lines++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = 0;
        if (!kind) {
            if (!line[strspn(line, " \t")])
                continue;
            kind = line[strspn(line, " \t")] == '{' ? 2 : 1;
            if (kind == 1) {
                if (mt_csv_header(line, &cols, err, sizeof(err))) {
                    fprintf(x->err, "%s:%llu: %s\n", name, (unsigned long long)x->lines, err);
                    rc = 2;
                    break;
                }
                continue;
            }
        }
        int pr = kind == 1 ? mt_csv_reading(line, &cols, &r, store, sizeof(store), err, sizeof(err))
                           : mt_jsonl_reading(line, (size_t)n, &r, store, sizeof(store), err,
                                              sizeof(err));
        if (pr == 1)
            continue;
        if (pr) {
            fprintf(x->err, "%s:%llu: %s\n", name, (unsigned long long)x->lines, err);
            rc = 2;
            break;
        }
        if (replay_one(x, &r)) {
            fprintf(x->err, "mittari: out of memory\n");
            rc = 1;
            break;
        }
    }
    free(line);
    if (!kind && !rc) {
        fprintf(x->err, "%s: no readings (a CSV needs a header line with ts, metric, value)\n",
                name);
        rc = 2;
    }
    return rc;
}

int mt_ruletest_run(const struct mt_ruletest_opts *o, FILE *out, FILE *errf)
{
    struct mt_tz *tz = NULL;
    struct mt_series_reg reg;
    struct mt_rule *rule = NULL;
    struct printer pr = {0};
    struct replay x = {0};
    char err[600], name[80];
    int64_t until = 0;
    int status = 0;
    FILE *in = NULL;

    const char *zone = o->tz ? o->tz : getenv("MITTARI_TZ");
    if (!zone || !*zone)
        zone = "Europe/Helsinki";
    if (mt_tz_load(&tz, zone, err, sizeof(err))) {
        fprintf(errf, "mittari: %s\n", err);
        return 2;
    }
    if (!o->format || strcmp(o->format, "table") == 0) {
        pr.fmt = 0;
    } else if (strcmp(o->format, "csv") == 0 || strcmp(o->format, "jsonl") == 0) {
        pr.fmt = 1 + (strcmp(o->format, "csv") == 0 ? MT_FMT_CSV : MT_FMT_JSONL);
    } else {
        fprintf(errf, "mittari: --format is table, csv or jsonl\n");
        mt_tz_free(tz);
        return 2;
    }
    if (o->until && mt_parse_iso8601(o->until, &until)) {
        fprintf(errf, "mittari: --until: ISO 8601 with Z or an offset, e.g. "
                      "2026-12-01T00:00+02:00\n");
        mt_tz_free(tz);
        return 2;
    }
    mt_series_init(&reg);
    rule_name(o->script, name, sizeof(name));
    struct mt_rule_conf c = {.name = name, .script = o->script, .site = o->site ? o->site : "site",
                             .tz = tz, .reg = &reg, .print = true};
    int rc = mt_rule_open(&rule, &c, err, sizeof(err));
    if (rc) {
        fprintf(errf, "%s\n", err);
        status = 3;
        goto out;
    }
    in = strcmp(o->input, "-") == 0 ? stdin : fopen(o->input, "r");
    if (!in) {
        fprintf(errf, "mittari: cannot read %s: %s\n", o->input, strerror(errno));
        status = 2;
        goto out;
    }
    pr.tz = tz;
    pr.reg = &reg;
    if (pr.fmt) {
        mt_encoder_init(&pr.enc, pr.fmt - 1, 0);
        mt_encode_header(&pr.enc, &pr.buf);
    }
    x = (struct replay){.o = o, .rule = rule, .reg = &reg, .pr = &pr, .out = out, .err = errf};
    status = replay_input(&x, in, strcmp(o->input, "-") == 0 ? "stdin" : o->input);
    if (!status) {
        /* the virtual clock's end: every window closes, or the clock stops at --until */
        if (o->until)
            while ((rc = mt_rule_tick(rule, until)) == 1)
                drain(rule, &pr, out, &x.figures);
        else
            rc = mt_rule_finish(rule);
        if (rc)
            fprintf(errf, "mittari: %s\n", strerror(-rc));
        drain(rule, &pr, out, &x.figures);
    }
    if (x.repeats)
        fprintf(errf, "  (the same error %llu more times)\n", (unsigned long long)x.repeats);
    if (x.shown > MAX_ERRORS_SHOWN)
        fprintf(errf, "  (%llu more errors not shown)\n",
                (unsigned long long)(x.shown - MAX_ERRORS_SHOWN));
    if (pr.fmt == 0)
        table_print(&pr, out);
    fflush(out);
    struct mt_rule_stats st;
    mt_rule_get_stats(rule, &st);
    fprintf(errf,
            "# %llu readings, %llu figures (%llu suppressed, %llu corrections), %llu late, "
            "%llu errors",
            (unsigned long long)x.readings, (unsigned long long)x.figures,
            (unsigned long long)st.suppressed, (unsigned long long)st.corrections,
            (unsigned long long)st.late, (unsigned long long)st.errors);
    if (x.skipped)
        fprintf(errf, "; %llu derived or suppressed readings skipped",
                (unsigned long long)x.skipped);
    if (x.filtered)
        fprintf(errf, "; %llu not matching --series", (unsigned long long)x.filtered);
    fputc('\n', errf);
    if (!status && st.errors)
        status = 1;
out:
    if (in && in != stdin)
        fclose(in);
    mt_buf_free(&pr.buf);
    mt_rule_free(rule);
    mt_series_free(&reg);
    mt_tz_free(tz);
    return status;
}
