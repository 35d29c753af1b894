#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int64_t mt_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t mt_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t mt_add_sat(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r))
        return b > 0 ? INT64_MAX : INT64_MIN;
    return r;
}

int64_t mt_mul_sat(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_mul_overflow(a, b, &r))
        return (a < 0) == (b < 0) ? INT64_MAX : INT64_MIN;
    return r;
}

size_t mt_fmt_utc(int64_t us, char *buf, size_t len, int frac_digits)
{
    int64_t sec = us / 1000000, frac = us % 1000000;
    struct tm tm;
    time_t t;
    int n;

    if (frac < 0) {
        frac += 1000000;
        sec--;
    }
    t = (time_t)sec;
    gmtime_r(&t, &tm);
    if (frac_digits == 6)
        n = snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)frac);
    else
        n = snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    return n < 0 ? 0 : (size_t)n;
}

/* ---- buffer ---- */

void mt_buf_free(struct mt_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

void mt_buf_refill(struct mt_buf *b, size_t want)
{
    if (b->cap > 2 * want + 4096)
        mt_buf_free(b);
    b->len = 0;
    if (b->p)
        b->p[0] = 0;
}

int mt_buf_reserve(struct mt_buf *b, size_t extra)
{
    size_t need = b->len + extra + 1, cap;
    char *p;

    if (need <= b->cap)
        return 0;
    cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    p = realloc(b->p, cap);
    if (!p)
        return -ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

int mt_buf_add(struct mt_buf *b, const void *data, size_t n)
{
    if (mt_buf_reserve(b, n))
        return -ENOMEM;
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = 0;
    return 0;
}

int mt_buf_adds(struct mt_buf *b, const char *s)
{
    return mt_buf_add(b, s, strlen(s));
}

int mt_buf_addc(struct mt_buf *b, char c)
{
    if (b->len + 2 > b->cap && mt_buf_reserve(b, 1))
        return -ENOMEM;
    b->p[b->len++] = c;
    b->p[b->len] = 0;
    return 0;
}

int mt_buf_printf(struct mt_buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || mt_buf_reserve(b, (size_t)n))
        return -ENOMEM;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

int mt_buf_json_str(struct mt_buf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = strlen(s);

    if (mt_buf_reserve(b, n * 6 + 2))
        return -ENOMEM;
    char *o = b->p + b->len;
    *o++ = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            *o++ = '\\';
            *o++ = (char)c;
        } else if (c < 0x20) {
            *o++ = '\\';
            switch (c) {
            case '\n': *o++ = 'n'; break;
            case '\r': *o++ = 'r'; break;
            case '\t': *o++ = 't'; break;
            default:
                *o++ = 'u';
                *o++ = '0';
                *o++ = '0';
                *o++ = hex[c >> 4];
                *o++ = hex[c & 15];
            }
        } else {
            *o++ = (char)c;
        }
    }
    *o++ = '"';
    b->len = (size_t)(o - b->p);
    b->p[b->len] = 0;
    return 0;
}

int mt_buf_csv_str(struct mt_buf *b, const char *s)
{
    if (!strpbrk(s, ",\"\r\n"))
        return mt_buf_adds(b, s);
    if (mt_buf_reserve(b, strlen(s) * 2 + 2))
        return -ENOMEM;
    mt_buf_addc(b, '"');
    for (; *s; s++) {
        if (*s == '"')
            mt_buf_addc(b, '"');
        mt_buf_addc(b, *s);
    }
    return mt_buf_addc(b, '"');
}

size_t mt_fmt_i64(char out[MT_FMT_I64], int64_t v)
{
    /* two digits at a time: an encoder writes two or three of these a reading */
    static const char pairs[] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                                "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                                "8081828384858687888990919293949596979899";
    char tmp[MT_FMT_I64];
    char *e = tmp + sizeof(tmp), *p = e;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;

    while (u >= 100) {
        unsigned d = (unsigned)(u % 100);
        u /= 100;
        p -= 2;
        memcpy(p, pairs + 2 * d, 2);
    }
    if (u >= 10) {
        p -= 2;
        memcpy(p, pairs + 2 * u, 2);
    } else {
        *--p = (char)('0' + u);
    }
    if (v < 0)
        *--p = '-';
    size_t n = (size_t)(e - p);
    memcpy(out, p, n);
    return n;
}

int mt_buf_i64(struct mt_buf *b, int64_t v)
{
    char tmp[MT_FMT_I64];
    return mt_buf_add(b, tmp, mt_fmt_i64(tmp, v));
}

size_t mt_fmt_double(char out[MT_FMT_DOUBLE], double v)
{
    int n;

    /* counts are integers: keep the hot path off printf */
    if (v == floor(v) && fabs(v) < 9007199254740992.0)
        return mt_fmt_i64(out, (int64_t)v);
    if (!isfinite(v)) {
        memcpy(out, "null", 4);
        return 4;
    }
    n = snprintf(out, MT_FMT_DOUBLE, "%.15g", v);
    if (strtod(out, NULL) != v)
        n = snprintf(out, MT_FMT_DOUBLE, "%.17g", v);
    return (size_t)n;
}

int mt_buf_double(struct mt_buf *b, double v)
{
    char tmp[MT_FMT_DOUBLE];
    return mt_buf_add(b, tmp, mt_fmt_double(tmp, v));
}

const char *mt_buf_cstr(struct mt_buf *b)
{
    return b->p ? b->p : "";
}

size_t mt_base64url(const uint8_t *in, size_t n, char *out, size_t outlen)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;

    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 6 && o + 1 < outlen) {
            bits -= 6;
            out[o++] = tab[(acc >> bits) & 63];
        }
    }
    if (bits > 0 && o + 1 < outlen)
        out[o++] = tab[(acc << (6 - bits)) & 63];
    if (outlen)
        out[o] = 0;
    return o;
}

uint64_t mt_hash_bytes(uint64_t h, const void *p, size_t n)
{
    /* a word at a time: series keys are hashed on every emit */
    const unsigned char *c = p;
    uint64_t w;

    while (n >= 8) {
        memcpy(&w, c, 8);
        h = (h ^ w) * 0x9e3779b97f4a7c15ull;
        h ^= h >> 29;
        c += 8;
        n -= 8;
    }
    w = (uint64_t)n << 56;
    for (size_t i = 0; i < n; i++)
        w |= (uint64_t)c[i] << (8 * i);
    h = (h ^ w) * 0x9e3779b97f4a7c15ull;
    return h ^ (h >> 32);
}

/* ---- arena ---- */

struct mt_arena_chunk {
    struct mt_arena_chunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

void *mt_arena_alloc(struct mt_arena *a, size_t n)
{
    struct mt_arena_chunk *c = a->head;

    n = (n + 15) & ~(size_t)15;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > 4000 ? n : 4000;
        c = malloc(sizeof(*c) + cap);
        if (!c)
            return NULL;
        c->cap = cap;
        c->used = 0;
        c->next = a->head;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += n;
    memset(p, 0, n);
    return p;
}

char *mt_arena_strndup(struct mt_arena *a, const char *s, size_t n)
{
    char *p = mt_arena_alloc(a, n + 1);
    if (p)
        memcpy(p, s, n);
    return p;
}

char *mt_arena_strdup(struct mt_arena *a, const char *s)
{
    return s ? mt_arena_strndup(a, s, strlen(s)) : NULL;
}

void mt_arena_free(struct mt_arena *a)
{
    while (a->head) {
        struct mt_arena_chunk *n = a->head->next;
        free(a->head);
        a->head = n;
    }
}

/* ---- did you mean ---- */

/* Optimal string alignment: insertions, deletions, substitutions and swaps
 * of two neighbours ("cuont" -> "count" is one edit). */
unsigned mt_edit_distance(const char *a, const char *b, unsigned max)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned rows[3][64], *prev2 = rows[0], *prev = rows[1], *row = rows[2];

    if (lb >= 64 || la >= 64)
        return max + 1;
    for (size_t j = 0; j <= lb; j++)
        prev[j] = (unsigned)j;
    for (size_t i = 1; i <= la; i++) {
        unsigned best = row[0] = (unsigned)i;
        for (size_t j = 1; j <= lb; j++) {
            unsigned v = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
            if (prev[j] + 1 < v)
                v = prev[j] + 1;
            if (row[j - 1] + 1 < v)
                v = row[j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                prev2[j - 2] + 1 < v)
                v = prev2[j - 2] + 1;
            row[j] = v;
            if (v < best)
                best = v;
        }
        if (best > max)
            return max + 1;
        unsigned *t = prev2;
        prev2 = prev;
        prev = row;
        row = t;
    }
    return prev[lb] > max ? max + 1 : prev[lb];
}

/* "word_order" ends in the part "order", "order_bytes" starts with it */
static bool is_part(const char *word, const char *cand)
{
    size_t lw = strlen(word), lc = strlen(cand);
    if (lc < 3 || lc >= lw)
        return false;
    return (strncmp(word, cand, lc) == 0 && word[lc] == '_') ||
           (strcmp(word + lw - lc, cand) == 0 && word[lw - lc - 1] == '_');
}

/* A suggestion must keep most of the candidate: two edits turn CBDA into BA
 * too, which is no help (issue 9), so at most half of the candidate may
 * change. When nothing is that close, a candidate that is a whole
 * _-separated part of the word (word_order -> order) is offered. */
const char *mt_did_you_mean(const char *word, const char *const *cands, size_t n)
{
    unsigned max = strlen(word) < 4 ? 1 : strlen(word) < 8 ? 2 : 3;
    const char *best = NULL, *part = NULL;
    unsigned best_d = max + 1;

    for (size_t i = 0; i < n; i++) {
        if (!cands[i])
            continue;
        unsigned d = mt_edit_distance(word, cands[i], max);
        if (strcasecmp(word, cands[i]) == 0)
            d = 0;
        if (d < best_d && 2 * d <= strlen(cands[i])) {
            best_d = d;
            best = cands[i];
        }
        if (!part && is_part(word, cands[i]))
            part = cands[i];
    }
    return best ? best : part;
}

/* ---- parsers ---- */

static const char *skip_ws(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

int mt_parse_double(const char *s, double *v)
{
    char *end;
    if (!*s)
        return -EINVAL;
    errno = 0;
    *v = strtod(s, &end);
    if (errno || *skip_ws(end) || end == s || !isfinite(*v))
        return -EINVAL;
    return 0;
}

int mt_parse_i64(const char *s, int64_t *v)
{
    char *end;
    long long x;

    if (!*s)
        return -EINVAL;
    errno = 0;
    x = strtoll(s, &end, 10);
    if (errno == ERANGE)
        return -ERANGE;
    if (errno || end == s || *skip_ws(end))
        return -EINVAL;
    *v = x;
    return 0;
}

int mt_parse_bool(const char *s, bool *v)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < MT_ARRAY_SIZE(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *v = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *v = false;
            return 0;
        }
    }
    return -EINVAL;
}

struct unit_mult {
    const char *suffix;
    double mult;
};

static int parse_with_units(const char *s, const struct unit_mult *u, size_t nu, double dflt,
                            double *out)
{
    char *end;
    double x;

    s = skip_ws(s);
    if (!*s || *s == '-' || *s == '+')
        return -EINVAL;
    errno = 0;
    x = strtod(s, &end);
    if (errno || end == s || !isfinite(x))
        return -EINVAL;
    end = (char *)skip_ws(end);
    if (!*end) {
        *out = x * dflt;
        return 0;
    }
    for (size_t i = 0; i < nu; i++) {
        if (strcmp(skip_ws(end), u[i].suffix) == 0) {
            *out = x * u[i].mult;
            return 0;
        }
    }
    return -EINVAL;
}

int mt_parse_duration_ms(const char *s, int64_t *ms)
{
    static const struct unit_mult u[] = {
        {"ms", 1}, {"s", 1e3}, {"m", 60e3}, {"min", 60e3}, {"h", 3600e3}, {"d", 86400e3},
        {"w", 604800e3}};
    double v;
    int r = parse_with_units(s, u, MT_ARRAY_SIZE(u), 1e3, &v);
    if (r)
        return r;
    if (v > 9.2e18)
        return -ERANGE;
    *ms = (int64_t)(v + 0.5);
    return 0;
}

int mt_parse_size(const char *s, uint64_t *bytes)
{
    static const struct unit_mult u[] = {
        {"B", 1},          {"K", 1024},          {"KB", 1024},         {"KiB", 1024},
        {"M", 1048576},    {"MB", 1048576},      {"MiB", 1048576},     {"G", 1073741824.0},
        {"GB", 1073741824.0}, {"GiB", 1073741824.0}, {"T", 1099511627776.0},
        {"TB", 1099511627776.0}, {"TiB", 1099511627776.0}};
    double v;
    int r = parse_with_units(s, u, MT_ARRAY_SIZE(u), 1, &v);
    if (r)
        return r;
    if (v > 1.8e19)
        return -ERANGE;
    *bytes = (uint64_t)(v + 0.5);
    return 0;
}

int mt_write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

int mt_mkdirs(const char *path, unsigned mode)
{
    char tmp[4096];
    size_t n = strlen(path);

    if (n == 0 || n >= sizeof(tmp))
        return -ENAMETOOLONG;
    memcpy(tmp, path, n + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(tmp, mode) && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(tmp, mode) && errno != EEXIST)
        return -errno;
    return 0;
}

int mt_lock_dir(const char *dir, int *fd, char *holder, size_t len)
{
    char path[4096], pid[32];

    snprintf(path, sizeof(path), "%s/mittari.lock", dir);
    *fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (*fd < 0)
        return -errno;
    if (flock(*fd, LOCK_EX | LOCK_NB)) {
        ssize_t n = pread(*fd, pid, sizeof(pid) - 1, 0);
        while (n > 0 && (pid[n - 1] == '\n' || pid[n - 1] == ' '))
            n--;
        pid[n > 0 ? n : 0] = 0;
        snprintf(holder, len, "%s", pid[0] ? pid : "?");
        close(*fd);
        *fd = -1;
        return -EBUSY;
    }
    int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(*fd, 0) == 0)
        mt_write_all(*fd, pid, (size_t)n);
    return 0;
}

void mt_thread_background(const char *name, int nicer)
{
    pthread_setname_np(pthread_self(), name);
    id_t self = (id_t)gettid();
    int nice = getpriority(PRIO_PROCESS, self) + nicer;
    setpriority(PRIO_PROCESS, self, nice < 19 ? nice : 19);
}

void mt_thread_idle(const char *name)
{
    struct sched_param sp = {0};
    pthread_setname_np(pthread_self(), name);
    pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp);
}
