#include "pseudo.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

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
    p->ready = true;
    return 0;
}

void mt_pseudo_free(struct mt_pseudo *p)
{
    sodium_memzero(p, sizeof(*p));
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

int mt_pseudo_make(const struct mt_pseudo *p, const char *space, const void *id, size_t len,
                   char out[MT_SUBJECT_SIZE])
{
    crypto_auth_hmacsha256_state st;
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    size_t sl = strlen(space);

    if (sl > 63 || len > 64 || !p->ready)
        return -EINVAL;
    st = p->keyed; /* a copy: the keyed state is shared between threads */
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)space, sl + 1); /* with its NUL */
    crypto_auth_hmacsha256_update(&st, id, len);
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_memzero(&st, sizeof(st));
    mt_base64url(mac, 16, out, MT_SUBJECT_SIZE);
    return 0;
}
