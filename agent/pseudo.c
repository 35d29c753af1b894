#include "pseudo.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
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
    if (n > sizeof(p->key)) {
        /* HMAC replaces a key longer than the hash's block (64 bytes for
         * SHA-256) by its digest (RFC 2104, 2): do the same here, so the
         * whole key counts and the result equals HMAC with the full key. */
        unsigned dl = 0;
        if (!EVP_Digest(key, n, p->key, &dl, EVP_sha256(), NULL))
            return -EIO;
        p->keylen = dl;
        return 0;
    }
    memcpy(p->key, key, n);
    p->keylen = n;
    return 0;
}

void mt_pseudo_free(struct mt_pseudo *p)
{
    volatile uint8_t *k = p->key;
    for (size_t i = 0; i < sizeof(p->key); i++)
        k[i] = 0;
    p->keylen = 0;
}

int mt_pseudo_load_or_create(struct mt_pseudo *p, const char *path, int *created)
{
    char buf[130];
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
    uint8_t msg[64 + 64 + 1];
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned maclen = 0;
    size_t sl = strlen(space);

    if (sl > 63 || len > 64 || !p->keylen)
        return -EINVAL;
    memcpy(msg, space, sl);
    msg[sl] = 0;
    memcpy(msg + sl + 1, id, len);
    if (!HMAC(EVP_sha256(), p->key, (int)p->keylen, msg, sl + 1 + len, mac, &maclen)) {
        memset(msg, 0, sizeof(msg));
        return -EIO;
    }
    memset(msg, 0, sizeof(msg));
    mt_base64url(mac, 16, out, MT_SUBJECT_SIZE);
    return 0;
}
