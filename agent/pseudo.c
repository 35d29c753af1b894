#include "pseudo.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "subject.h"
#include "util.h"

int mt_pseudo_init(struct mt_pseudo *p, const char *key)
{
    size_t n = strlen(key);

    memset(p, 0, sizeof(*p));
    if (n < 16)
        return -EINVAL;
    if (sodium_init() < 0)
        return -EIO;
    /* libsodium hashes a key longer than the block first, like RFC 2104 */
    crypto_auth_hmacsha256_init(&p->keyed, (const unsigned char *)key, n);
    pthread_mutex_init(&p->lock, NULL);
    p->ready = true;
    return 0;
}

void mt_pseudo_free(struct mt_pseudo *p)
{
    if (p->ready)
        pthread_mutex_destroy(&p->lock);
    sodium_memzero(p, sizeof(*p));
}

void mt_pseudo_set_rotation(struct mt_pseudo *p, int rotation)
{
    pthread_mutex_lock(&p->lock);
    p->rotation = rotation;
    memset(p->periods, 0, sizeof(p->periods)); /* start == end: empty */
    pthread_mutex_unlock(&p->lock);
}

void mt_pseudo_tz_changed(struct mt_pseudo *p)
{
    pthread_mutex_lock(&p->lock);
    sodium_memzero(p->periods, sizeof(p->periods)); /* start == end: empty */
    pthread_mutex_unlock(&p->lock);
}

int mt_pseudo_load_or_create(struct mt_pseudo *p, const char *path, int *created)
{
    char buf[4097];
    ssize_t n;
    int fd, rc;

    *created = 0;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 && errno == ENOENT) {
        uint8_t raw[32];
        static const char hex[] = "0123456789abcdef";
        if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
            return -EIO;
        for (size_t i = 0; i < sizeof(raw); i++) {
            buf[2 * i] = hex[raw[i] >> 4];
            buf[2 * i + 1] = hex[raw[i] & 15];
        }
        buf[64] = '\n';
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0)
            return -errno;
        rc = mt_write_all(fd, buf, 65);
        if (!rc && fsync(fd))
            rc = -errno;
        close(fd);
        memset(raw, 0, sizeof(raw));
        if (rc)
            return rc;
        *created = 1;
        buf[64] = 0;
        rc = mt_pseudo_init(p, buf);
        memset(buf, 0, sizeof(buf));
        return rc;
    }
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode) || (st.st_mode & 077)) {
        close(fd);
        return -EPERM; /* a key others can read is no secret */
    }
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n < 0)
        return -errno;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    buf[n] = 0;
    rc = mt_pseudo_init(p, buf);
    memset(buf, 0, sizeof(buf));
    return rc;
}

static int hash_with(const crypto_auth_hmacsha256_state *keyed, const char *space, const void *id,
                     size_t len, char out[MT_SUBJECT_SIZE])
{
    crypto_auth_hmacsha256_state st;
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    size_t sl = strlen(space);

    if (sl > 63 || len > 64)
        return -EINVAL;
    st = *keyed; /* a copy: the keyed state is shared between threads */
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)space, sl + 1); /* with its NUL */
    crypto_auth_hmacsha256_update(&st, id, len);
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_memzero(&st, sizeof(st));
    mt_base64url(mac, 16, out, MT_SUBJECT_SIZE);
    return 0;
}

int mt_pseudo_make(const struct mt_pseudo *p, const char *space, const void *id, size_t len,
                   char out[MT_SUBJECT_SIZE])
{
    if (!p->ready)
        return -EINVAL;
    return hash_with(&p->keyed, space, id, len, out);
}

/* The local period ts falls in: [start, end) and its label. */
static int period_of(int rotation, int64_t ts_us, int64_t *start, int64_t *end, char label[24])
{
    time_t t = (time_t)(ts_us / 1000000);
    struct tm tm, b;

    if (!localtime_r(&t, &tm))
        return -EINVAL;
    b = tm;
    b.tm_hour = b.tm_min = b.tm_sec = 0;
    b.tm_isdst = -1;
    switch (rotation) {
    case MT_ROTATE_DAILY:
        break;
    case MT_ROTATE_WEEKLY:
        b.tm_mday -= (tm.tm_wday + 6) % 7; /* back to Monday */
        break;
    case MT_ROTATE_MONTHLY:
        b.tm_mday = 1;
        break;
    case MT_ROTATE_YEARLY:
        b.tm_mday = 1;
        b.tm_mon = 0;
        break;
    default:
        return -EINVAL;
    }
    time_t s = mktime(&b); /* normalises b */
    strftime(label, 24, rotation == MT_ROTATE_DAILY ? "%Y-%m-%d" : rotation == MT_ROTATE_WEEKLY ? "%G-W%V" : rotation == MT_ROTATE_MONTHLY ? "%Y-%m" : "%Y", &b);
    if (rotation == MT_ROTATE_DAILY)
        b.tm_mday += 1;
    else if (rotation == MT_ROTATE_WEEKLY)
        b.tm_mday += 7;
    else if (rotation == MT_ROTATE_MONTHLY)
        b.tm_mon += 1;
    else
        b.tm_year += 1;
    b.tm_hour = b.tm_min = b.tm_sec = 0;
    b.tm_isdst = -1;
    time_t e = mktime(&b);
    if (s == (time_t)-1 || e == (time_t)-1)
        return -EINVAL;
    *start = (int64_t)s * 1000000;
    *end = (int64_t)e * 1000000;
    return 0;
}

/* lock held: the keyed state of ts's period, made on first use. */
static const crypto_auth_hmacsha256_state *period_state(struct mt_pseudo *p, int rotation,
                                                        int64_t ts)
{
    static const char tag[] = "mittari-period";
    unsigned char key[crypto_auth_hmacsha256_BYTES];
    char label[24];
    int64_t start, end;

    for (int i = 0; i < 2; i++)
        if (ts >= p->periods[i].start && ts < p->periods[i].end &&
            p->periods[i].rotation == rotation)
            return &p->periods[i].keyed;
    if (period_of(rotation, ts, &start, &end, label))
        return NULL;
    crypto_auth_hmacsha256_state st = p->keyed;
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)tag, sizeof(tag)); /* with NUL */
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)label, strlen(label));
    crypto_auth_hmacsha256_final(&st, key);
    struct mt_pseudo_period *slot = &p->periods[p->next];
    p->next ^= 1;
    crypto_auth_hmacsha256_init(&slot->keyed, key, sizeof(key));
    slot->start = start;
    slot->end = end;
    slot->rotation = rotation;
    sodium_memzero(key, sizeof(key));
    sodium_memzero(&st, sizeof(st));
    return &slot->keyed;
}

int mt_pseudo_subject(struct mt_pseudo *p, const char *space, const void *id, size_t len,
                      int64_t ts_us, char out[MT_SUBJECT_SIZE])
{
    uint8_t canon[MT_SUBJECT_MAX];
    const char *cs = NULL;
    size_t n = 0;
    int rc;

    if (!p->ready)
        return -EINVAL;
    rc = mt_subject_canonical(space, id, len, &cs, canon, &n);
    if (rc)
        return rc;
    if (!cs)
        cs = space;
    int rotation = mt_subject_daily(cs) ? MT_ROTATE_DAILY : p->rotation;
    if (rotation == MT_ROTATE_NONE) {
        rc = hash_with(&p->keyed, cs, canon, n, out);
    } else {
        pthread_mutex_lock(&p->lock);
        const crypto_auth_hmacsha256_state *k = period_state(p, rotation, ts_us);
        crypto_auth_hmacsha256_state st;
        if (k)
            st = *k;
        pthread_mutex_unlock(&p->lock);
        rc = k ? hash_with(&st, cs, canon, n, out) : -EINVAL;
        sodium_memzero(&st, sizeof(st));
    }
    sodium_memzero(canon, sizeof(canon));
    return rc;
}
