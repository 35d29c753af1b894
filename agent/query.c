/*
 * query: `mittari query` reads the log for analysts: a time range in local
 * time (agent.timezone) or UTC, a glob over site/device/metric, CSV or JSON
 * Lines on standard output. Opens its own read-only connection; the agent
 * may be running.
 */
#include "query.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "aggquery.h"
#include "encode.h"
#include "log.h"
#include "series.h"
#include "tz.h"
#include "util.h"

/* "2026-11-25", "2026-11-25T10:00[:05]", "2026-11-25 10:00", optional "Z"
 * or "+02:00"; "now"; "-2h" (relative to now). Without a zone: local time
 * of the process TZ (the agent's time zone). */
int mt_parse_time(const char *s, int64_t now_us, int64_t *us)
{
    struct tm tm;
    int y, mo, d, h = 0, mi = 0, sec = 0, n = 0;
    const char *p;

    if (strcmp(s, "now") == 0) {
        *us = now_us;
        return 0;
    }
    if (s[0] == '-') {
        int64_t ms;
        if (mt_parse_duration_ms(s + 1, &ms))
            return -EINVAL;
        *us = mt_add_sat(now_us, -mt_ms_to_us(ms)); /* checked: -1000000000d is long ago */
        return 0;
    }
    if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3 || n != 10)
        return -EINVAL;
    p = s + n;
    if (*p == 'T' || *p == ' ') {
        int m = 0;
        if (sscanf(p + 1, "%2d:%2d%n", &h, &mi, &m) != 2 || m != 5)
            return -EINVAL;
        p += 1 + m;
        if (*p == ':') {
            if (sscanf(p + 1, "%2d%n", &sec, &m) != 1 || m != 2)
                return -EINVAL;
            p += 3;
        }
    }
    if (!mt_civil_valid(y, mo, d) || h > 23 || mi > 59 || sec > 60)
        return -EINVAL;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    time_t t;
    if (*p == 0) {
        tm.tm_isdst = -1;
        t = mktime(&tm);
    } else if (strcmp(p, "Z") == 0) {
        t = timegm(&tm);
    } else if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
        int oh, om;
        if (sscanf(p + 1, "%2d:%2d", &oh, &om) != 2 || oh > 14 || om > 59)
            return -EINVAL;
        t = timegm(&tm) - (*p == '+' ? 1 : -1) * (oh * 3600 + om * 60);
    } else {
        return -EINVAL;
    }
    if (t == (time_t)-1 && !(y == 1969 || y == 1970))
        return -EINVAL;
    *us = (int64_t)t * 1000000;
    return 0;
}

int mt_query_run(const struct mt_query *q, FILE *out, char *err, size_t errlen)
{
    struct mt_logdb *db = NULL;
    struct mt_series_reg reg;
    struct mt_encoder enc;
    struct mt_buf b = {0};
    struct mt_row *rows = NULL;
    unsigned char *match = NULL;
    size_t nmatch = 0, n = 0;
    int64_t after = 0;
    uint64_t printed = 0;
    int rc;

    mt_series_init(&reg);
    rc = mt_log_open(&db, q->db_path, MT_LOG_READONLY, err, errlen);
    if (rc)
        goto out;
    rc = mt_log_load_series(db, &reg);
    if (rc) {
        snprintf(err, errlen, "cannot read series: %s", mt_log_errmsg(db));
        goto out;
    }
    nmatch = mt_series_count(&reg) + 1;
    match = calloc(nmatch, 1);
    rows = calloc(4096, sizeof(*rows));
    if (!match || !rows) {
        rc = -ENOMEM;
        goto out;
    }
    for (uint32_t id = 1; id < nmatch; id++) {
        const struct mt_series_info *s = mt_series_get(&reg, id);
        char name[256];
        snprintf(name, sizeof(name), "%s/%s/%s", s->site, s->device, s->metric);
        match[id] = (!q->series_glob || fnmatch(q->series_glob, name, 0) == 0) &&
                    mt_query_tags_match(s->tags, q->tags, q->ntags);
    }
    int64_t gen = 0;
    mt_log_generation(db, &gen);
    mt_encoder_init(&enc, q->format, gen);
    mt_encode_header(&enc, &b);
    do {
        rc = mt_log_scan(db, q->since, q->until, after, 4096, rows, &n);
        if (rc) {
            snprintf(err, errlen, "cannot read the log: %s", mt_log_errmsg(db));
            goto out;
        }
        for (size_t i = 0; i < n; i++) {
            const struct mt_row *r = &rows[i];
            after = r->seq;
            if (r->series >= nmatch || !match[r->series])
                continue;
            if (q->limit && printed >= q->limit) {
                n = 0;
                break;
            }
            mt_encode_row(&enc, &b, r, mt_series_get(&reg, r->series));
            printed++;
        }
        if (b.len && fwrite(b.p, 1, b.len, out) != b.len) {
            snprintf(err, errlen, "cannot write output: %s", strerror(errno));
            rc = -EIO;
            goto out;
        }
        b.len = 0;
    } while (n == 4096);
    if (fflush(out)) {
        snprintf(err, errlen, "cannot write output: %s", strerror(errno));
        rc = -EIO;
    }
out:
    mt_buf_free(&b);
    free(rows);
    free(match);
    mt_log_close(db);
    mt_series_free(&reg);
    return rc;
}
