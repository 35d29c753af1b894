#include "tz.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TZ_FILE_MAX (256u << 10)
#define MAX_TYPES 256

/* The POSIX TZ rule of a footer: std[offset][dst[offset][,start[/time],end[/time]]] */
struct rule_date {
    char kind; /* 'J' (1..365, no Feb 29), 'n' (0..365), 'M' */
    int n, m, w, d;
    int32_t time; /* seconds after local midnight, may be negative or > 24 h */
};

struct posix_rule {
    bool valid, has_dst;
    int32_t std_off, dst_off; /* seconds east */
    struct rule_date start, end;
};

struct ttype {
    int32_t off;
    bool isdst;
};

struct mt_tz {
    char *name;
    int64_t *trans; /* transition times, ascending */
    uint8_t *idx;   /* type after each transition */
    size_t ntrans;
    struct ttype types[MAX_TYPES];
    size_t ntypes;
    struct posix_rule rule;
};

/* ---- calendar ---- */

int64_t mt_floordiv(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

/* Days from 1970-01-01 to y-m-d, counting in 400-year eras of 146097 days
 * with the year starting in March (so the leap day is the era's last). */
bool mt_civil_valid(int64_t y, int m, int d)
{
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m < 1 || m > 12 || d < 1)
        return false;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return d <= mdays[m - 1] + (m == 2 && leap);
}

int64_t mt_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = mt_floordiv(y, 400);
    int64_t yoe = y - era * 400;                                   /* 0..399 */
    int64_t doy = (153 * (int64_t)(m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1; /* 0..365 */
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;           /* 0..146096 */
    return era * 146097 + doe - 719468;
}

void mt_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = mt_floordiv(z, 146097);
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
    *m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

unsigned mt_weekday(int64_t days)
{
    /* 1970-01-01 was a Thursday (3 with Monday = 0) */
    return (unsigned)((days % 7 + 7 + 3) % 7);
}

static bool leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

void mt_iso_week(int64_t days, int64_t *iso_year, unsigned *week)
{
    /* the ISO year of a day is the year of the Thursday of its week */
    int64_t thursday = days - mt_weekday(days) + 3;
    int64_t y;
    unsigned m, d;
    mt_civil_from_days(thursday, &y, &m, &d);
    *iso_year = y;
    *week = (unsigned)((thursday - mt_days_from_civil(y, 1, 1)) / 7 + 1);
}

/* ---- POSIX rules ---- */

static const char *parse_name(const char *p)
{
    if (*p == '<') {
        const char *e = strchr(p, '>');
        return e && e - p >= 4 ? e + 1 : NULL;
    }
    const char *s = p;
    while (isalpha((unsigned char)*p))
        p++;
    return p - s >= 3 ? p : NULL;
}

/* [+-]hh[:mm[:ss]], hours up to 167 */
static const char *parse_hms(const char *p, int32_t *secs)
{
    int sign = 1, v[3] = {0, 0, 0}, n = 0;

    if (*p == '+' || *p == '-')
        sign = *p++ == '-' ? -1 : 1;
    while (n < 3) {
        if (!isdigit((unsigned char)*p))
            return NULL;
        int x = 0, k = 0;
        while (isdigit((unsigned char)*p) && k < 3)
            x = x * 10 + (*p++ - '0'), k++;
        v[n++] = x;
        if (*p != ':')
            break;
        p++;
    }
    if (v[0] > 167 || v[1] > 59 || v[2] > 59)
        return NULL;
    *secs = sign * (v[0] * 3600 + v[1] * 60 + v[2]);
    return p;
}

static const char *parse_date(const char *p, struct rule_date *r)
{
    char *e;
    r->time = 7200;
    if (*p == 'J') {
        r->kind = 'J';
        r->n = (int)strtol(p + 1, &e, 10);
        if (e == p + 1 || r->n < 1 || r->n > 365)
            return NULL;
        p = e;
    } else if (*p == 'M') {
        r->kind = 'M';
        if (sscanf(p + 1, "%d.%d.%d", &r->m, &r->w, &r->d) != 3 || r->m < 1 || r->m > 12 ||
            r->w < 1 || r->w > 5 || r->d < 0 || r->d > 6)
            return NULL;
        p++;
        for (int dots = 0; *p && (isdigit((unsigned char)*p) || (*p == '.' && dots < 2)); p++)
            dots += *p == '.';
    } else if (isdigit((unsigned char)*p)) {
        r->kind = 'n';
        r->n = (int)strtol(p, &e, 10);
        if (r->n > 365)
            return NULL;
        p = e;
    } else {
        return NULL;
    }
    if (*p == '/')
        p = parse_hms(p + 1, &r->time);
    return p;
}

static bool parse_rule(const char *s, struct posix_rule *r)
{
    const char *p = parse_name(s);
    int32_t v;

    memset(r, 0, sizeof(*r));
    if (!p || !(p = parse_hms(p, &v)))
        return false;
    r->std_off = -v; /* POSIX counts west */
    if (*p == 0) {
        r->valid = true;
        return true;
    }
    if (!(p = parse_name(p)))
        return false;
    r->dst_off = r->std_off + 3600;
    if (*p && *p != ',') {
        if (!(p = parse_hms(p, &v)))
            return false;
        r->dst_off = -v;
    }
    if (*p != ',' || !(p = parse_date(p + 1, &r->start)) || *p != ',' ||
        !(p = parse_date(p + 1, &r->end)) || *p)
        return false;
    r->has_dst = r->valid = true;
    return true;
}

/* Local seconds of the rule date in year y (at local midnight + time). */
static int64_t rule_local(const struct rule_date *r, int64_t y)
{
    int64_t day;
    if (r->kind == 'J') {
        day = mt_days_from_civil(y, 1, 1) + r->n - 1;
        if (leap(y) && r->n >= 60)
            day++;
    } else if (r->kind == 'n') {
        day = mt_days_from_civil(y, 1, 1) + r->n;
    } else {
        int64_t first = mt_days_from_civil(y, (unsigned)r->m, 1);
        /* POSIX d: 0 = Sunday; mt_weekday: 0 = Monday */
        int wd0 = (int)(mt_weekday(first) + 1) % 7;
        int64_t d = first + (r->d - wd0 + 7) % 7 + (int64_t)(r->w - 1) * 7;
        unsigned mdays = r->m == 2 ? (leap(y) ? 29 : 28)
                         : (r->m == 4 || r->m == 6 || r->m == 9 || r->m == 11) ? 30
                                                                               : 31;
        while (d >= first + mdays)
            d -= 7;
        day = d;
    }
    return day * 86400 + r->time;
}

/* The rule's transitions in years y-1..y+1 (UTC), ascending, with the
 * offset that follows each. */
static size_t rule_transitions(const struct posix_rule *r, int64_t y, int64_t *t, int32_t *off)
{
    size_t n = 0;
    for (int64_t yy = y - 1; yy <= y + 1; yy++) {
        /* the start is in standard time, the end in daylight time */
        t[n] = rule_local(&r->start, yy) - r->std_off;
        off[n++] = r->dst_off;
        t[n] = rule_local(&r->end, yy) - r->dst_off;
        off[n++] = r->std_off;
    }
    for (size_t i = 1; i < n; i++) /* insertion sort of six */
        for (size_t j = i; j > 0 && t[j] < t[j - 1]; j--) {
            int64_t a = t[j];
            t[j] = t[j - 1];
            t[j - 1] = a;
            int32_t b = off[j];
            off[j] = off[j - 1];
            off[j - 1] = b;
        }
    return n;
}

/* ---- loading ---- */

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const unsigned char *p)
{
    return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

struct hdr {
    uint32_t isut, isstd, leap, time, type, chars;
};

static bool read_hdr(const unsigned char *p, size_t len, struct hdr *h)
{
    if (len < 44 || memcmp(p, "TZif", 4) != 0)
        return false;
    h->isut = be32(p + 20);
    h->isstd = be32(p + 24);
    h->leap = be32(p + 28);
    h->time = be32(p + 32);
    h->type = be32(p + 36);
    h->chars = be32(p + 40);
    return h->type >= 1 && h->type <= MAX_TYPES && h->time < 100000 && h->leap < 100000;
}

static size_t block_len(const struct hdr *h, int tsize)
{
    return (size_t)h->time * (size_t)(tsize + 1) + (size_t)h->type * 6 + h->chars +
           (size_t)h->leap * (size_t)(tsize + 4) + h->isstd + h->isut;
}

static int parse_tzif(struct mt_tz *tz, const unsigned char *p, size_t len)
{
    struct hdr h;
    int tsize = 4;

    if (!read_hdr(p, len, &h))
        return -EINVAL;
    size_t v1 = 44 + block_len(&h, 4);
    if (p[4] >= '2') {
        if (len < v1 || !read_hdr(p + v1, len - v1, &h))
            return -EINVAL;
        p += v1;
        len -= v1;
        tsize = 8;
    }
    size_t need = 44 + block_len(&h, tsize);
    if (len < need)
        return -EINVAL;
    const unsigned char *q = p + 44;
    tz->ntrans = h.time;
    tz->trans = calloc(h.time ? h.time : 1, sizeof(*tz->trans));
    tz->idx = calloc(h.time ? h.time : 1, 1);
    if (!tz->trans || !tz->idx)
        return -ENOMEM;
    for (uint32_t i = 0; i < h.time; i++, q += tsize)
        tz->trans[i] = tsize == 8 ? be64(q) : (int32_t)be32(q);
    for (uint32_t i = 0; i < h.time; i++) {
        tz->idx[i] = *q++;
        if (tz->idx[i] >= h.type)
            return -EINVAL;
        if (i && tz->trans[i] <= tz->trans[i - 1])
            return -EINVAL;
    }
    tz->ntypes = h.type;
    for (uint32_t i = 0; i < h.type; i++, q += 6) {
        tz->types[i].off = (int32_t)be32(q);
        tz->types[i].isdst = q[4] != 0;
        if (tz->types[i].off < -25 * 3600 || tz->types[i].off > 26 * 3600)
            return -EINVAL;
    }
    if (tsize == 8 && len > need + 1 && p[need] == '\n') {
        const char *f = (const char *)p + need + 1;
        const char *nl = memchr(f, '\n', len - need - 1);
        char buf[128];
        if (nl && (size_t)(nl - f) < sizeof(buf)) {
            memcpy(buf, f, (size_t)(nl - f));
            buf[nl - f] = 0;
            if (buf[0] && !parse_rule(buf, &tz->rule))
                memset(&tz->rule, 0, sizeof(tz->rule)); /* unusable: the table rules alone */
        }
    }
    return 0;
}

static int read_file(const char *path, unsigned char **buf, size_t *len)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int rc = 0;

    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
        (size_t)st.st_size > TZ_FILE_MAX) {
        close(fd);
        return -EINVAL;
    }
    *buf = malloc((size_t)st.st_size);
    *len = 0;
    if (!*buf) {
        close(fd);
        return -ENOMEM;
    }
    while (*len < (size_t)st.st_size) {
        ssize_t n = read(fd, *buf + *len, (size_t)st.st_size - *len);
        if (n <= 0) {
            rc = n < 0 ? -errno : -EIO;
            break;
        }
        *len += (size_t)n;
    }
    close(fd);
    return rc;
}

static bool valid_name(const char *name)
{
    if (!*name || name[0] == '/' || strlen(name) > 200 || strstr(name, ".."))
        return false;
    for (const char *p = name; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("/_-+.", *p))
            return false;
    return true;
}

int mt_tz_load(struct mt_tz **out, const char *name, char *err, size_t errlen)
{
    struct mt_tz *tz;
    unsigned char *buf = NULL;
    size_t len = 0;
    char path[512];
    int rc;

    *out = NULL;
    if (!valid_name(name)) {
        snprintf(err, errlen, "'%s' is not a time zone name (e.g. Europe/Helsinki)", name);
        return -EINVAL;
    }
    tz = calloc(1, sizeof(*tz));
    if (!tz || !(tz->name = strdup(name))) {
        free(tz);
        return -ENOMEM;
    }
    const char *dir = getenv("TZDIR");
    snprintf(path, sizeof(path), "%s/%s", dir && *dir ? dir : "/usr/share/zoneinfo", name);
    rc = read_file(path, &buf, &len);
    if (rc == -ENOENT && (strcmp(name, "UTC") == 0 || strcmp(name, "Etc/UTC") == 0)) {
        tz->ntypes = 1; /* a machine without tzdata still knows UTC */
        *out = tz;
        return 0;
    }
    if (!rc)
        rc = parse_tzif(tz, buf, len);
    free(buf);
    if (rc) {
        snprintf(err, errlen, "unknown time zone '%s' (%s: %s)", name, path,
                 rc == -EINVAL ? "not a TZif file" : strerror(-rc));
        mt_tz_free(tz);
        return rc == -ENOMEM ? -ENOMEM : rc == -EINVAL ? -EINVAL : -ENOENT;
    }
    *out = tz;
    return 0;
}

void mt_tz_free(struct mt_tz *tz)
{
    if (!tz)
        return;
    free(tz->trans);
    free(tz->idx);
    free(tz->name);
    free(tz);
}

const char *mt_tz_name(const struct mt_tz *tz)
{
    return tz->name;
}

/* ---- lookup ---- */

/* Before the first transition: the first standard-time type (RFC 8536
 * says type 0; zic writes type 0 to be that). */
static struct ttype first_type(const struct mt_tz *tz)
{
    return tz->types[0];
}

static void table_segment(const struct mt_tz *tz, int64_t t, int64_t *start, int64_t *end,
                          int32_t *off, bool *isdst)
{
    size_t n = tz->ntrans, lo = 0, hi = n; /* lo: the first transition > t */

    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (tz->trans[mid] <= t)
            lo = mid + 1;
        else
            hi = mid;
    }
    struct ttype ty = lo == 0 ? first_type(tz) : tz->types[tz->idx[lo - 1]];
    *start = lo == 0 ? INT64_MIN : tz->trans[lo - 1];
    *end = lo < n ? tz->trans[lo] : INT64_MAX;
    *off = ty.off;
    *isdst = ty.isdst;
}

/* After the table's last transition: the footer's rule. */
static void rule_segment(const struct mt_tz *tz, int64_t t, int64_t *start, int64_t *end,
                         int32_t *off, bool *isdst)
{
    const struct posix_rule *r = &tz->rule;
    int64_t floor_t = tz->ntrans ? tz->trans[tz->ntrans - 1] : INT64_MIN;

    if (!r->has_dst) {
        *start = floor_t;
        *end = INT64_MAX;
        *off = r->std_off;
        *isdst = false;
        return;
    }
    int64_t y, tt[6];
    int32_t oo[6];
    unsigned m, d;
    mt_civil_from_days(mt_floordiv(t, 86400), &y, &m, &d);
    size_t k = rule_transitions(r, y, tt, oo), i = 0;
    while (i < k && tt[i] <= t) /* years y-1..y+1 always hold one before t */
        i++;
    *off = i ? oo[i - 1] : (oo[0] == r->dst_off ? r->std_off : r->dst_off);
    *start = i && tt[i - 1] > floor_t ? tt[i - 1] : floor_t;
    *end = i < k ? tt[i] : INT64_MAX;
    *isdst = *off == r->dst_off && r->dst_off != r->std_off;
}

void mt_tz_segment(const struct mt_tz *tz, int64_t t, int64_t *start, int64_t *end, int32_t *off,
                   bool *isdst)
{
    bool dst;
    if (tz->rule.valid && (tz->ntrans == 0 || t >= tz->trans[tz->ntrans - 1]))
        rule_segment(tz, t, start, end, off, &dst);
    else
        table_segment(tz, t, start, end, off, &dst);
    if (isdst)
        *isdst = dst;
}

int32_t mt_tz_offset(const struct mt_tz *tz, int64_t t)
{
    int64_t s, e;
    int32_t off;
    mt_tz_segment(tz, t, &s, &e, &off, NULL);
    return off;
}

void mt_tz_localtime(const struct mt_tz *tz, int64_t t, struct mt_localtime *lt)
{
    int64_t s, e;
    int32_t off;
    bool dst;
    mt_tz_segment(tz, t, &s, &e, &off, &dst);
    int64_t local = t + off;
    int64_t days = mt_floordiv(local, 86400);
    int64_t secs = local - days * 86400;
    mt_civil_from_days(days, &lt->year, &lt->month, &lt->day);
    lt->hour = (unsigned)(secs / 3600);
    lt->min = (unsigned)(secs / 60 % 60);
    lt->sec = (unsigned)(secs % 60);
    lt->wday = mt_weekday(days) + 1;
    lt->yday = (unsigned)(days - mt_days_from_civil(lt->year, 1, 1) + 1);
    mt_iso_week(days, &lt->iso_year, &lt->iso_week);
    lt->offset = off;
    lt->isdst = dst;
}
