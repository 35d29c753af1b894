#include "agentid.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int mt_agent_id_from(const char *path, char *out, size_t len)
{
    static const char key[] = "mittari agent id";
    char buf[64];
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0)
        return -ENOENT;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n < 32)
        return -EINVAL;
    for (int i = 0; i < 32; i++)
        if (!((buf[i] >= '0' && buf[i] <= '9') || (buf[i] >= 'a' && buf[i] <= 'f')))
            return -EINVAL;
    if (sodium_init() < 0)
        return -EINVAL;
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, (const unsigned char *)key, sizeof(key) - 1);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)buf, 32);
    crypto_auth_hmacsha256_final(&st, mac);
    char hex[17];
    for (int i = 0; i < 8; i++)
        snprintf(hex + 2 * i, 3, "%02x", mac[i]);
    snprintf(out, len, "mt-%s", hex);
    return 0;
}

void mt_agent_default_id(char *out, size_t len)
{
    char host[256] = "";

    if (mt_agent_id_from("/etc/machine-id", out, len) == 0)
        return;
    if (gethostname(host, sizeof(host) - 1) || !host[0])
        snprintf(host, sizeof(host), "mittari");
    host[63] = 0;
    for (char *p = host; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_'))
            *p = '-';
    }
    snprintf(out, len, "%s", host);
}
