#include "listen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_port(const char *s, unsigned *port)
{
    char *end;
    if (!*s || strlen(s) > 5)
        return -EINVAL;
    unsigned long v = strtoul(s, &end, 10);
    if (*end || v > 65535 || *s == '+' || *s == '-')
        return -EINVAL;
    *port = (unsigned)v;
    return 0;
}

static void set_text(struct mt_listen *l)
{
    char host[INET6_ADDRSTRLEN] = "";
    if (l->addr.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&l->addr;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
        snprintf(l->text, sizeof(l->text), "[%s]:%u", host, l->port);
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&l->addr;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
        snprintf(l->text, sizeof(l->text), "%s:%u", host, l->port);
    }
}

static void set_v4(struct mt_listen *l, const struct in_addr *ip)
{
    struct sockaddr_in *a = (struct sockaddr_in *)&l->addr;
    memset(&l->addr, 0, sizeof(l->addr));
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)l->port);
    a->sin_addr = *ip;
    l->addrlen = sizeof(*a);
    l->loopback = (ntohl(ip->s_addr) >> 24) == 127;
    set_text(l);
}

static void set_v6(struct mt_listen *l, const struct in6_addr *ip)
{
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&l->addr;
    memset(&l->addr, 0, sizeof(l->addr));
    a->sin6_family = AF_INET6;
    a->sin6_port = htons((uint16_t)l->port);
    a->sin6_addr = *ip;
    l->addrlen = sizeof(*a);
    l->loopback = IN6_IS_ADDR_LOOPBACK(ip);
    set_text(l);
}

int mt_listen_parse(const char *s, struct mt_listen *out, char *err, size_t errlen)
{
    char host[INET6_ADDRSTRLEN + 2];
    const char *port;
    struct in_addr v4;
    struct in6_addr v6;

    memset(out, 0, sizeof(*out));
    if (strcmp(s, "off") == 0) {
        out->off = true;
        snprintf(out->text, sizeof(out->text), "off");
        return 0;
    }
    if (!strchr(s, ':')) { /* a bare port: loopback */
        if (parse_port(s, &out->port))
            goto bad;
        inet_pton(AF_INET, "127.0.0.1", &v4);
        set_v4(out, &v4);
        return 0;
    }
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':' || (size_t)(close - s - 1) >= sizeof(host))
            goto bad;
        memcpy(host, s + 1, (size_t)(close - s - 1));
        host[close - s - 1] = 0;
        port = close + 2;
        if (inet_pton(AF_INET6, host, &v6) != 1 || parse_port(port, &out->port))
            goto bad;
        set_v6(out, &v6);
        return 0;
    }
    port = strrchr(s, ':');
    if ((size_t)(port - s) >= sizeof(host))
        goto bad;
    memcpy(host, s, (size_t)(port - s));
    host[port - s] = 0;
    if (inet_pton(AF_INET, host, &v4) != 1 || parse_port(port + 1, &out->port))
        goto bad;
    set_v4(out, &v4);
    return 0;
bad:
    snprintf(err, errlen,
             "'%s' is not ADDRESS:PORT (a numeric address: 127.0.0.1:9465, [::1]:9465, "
             "0.0.0.0:9465), a port (loopback) or off",
             s);
    return -EINVAL;
}

void mt_listen_client(const struct mt_listen *l, struct mt_listen *c)
{
    *c = *l;
    if (l->off)
        return;
    if (l->addr.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&l->addr;
        if (IN6_IS_ADDR_UNSPECIFIED(&a->sin6_addr))
            set_v6(c, &in6addr_loopback);
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&l->addr;
        if (a->sin_addr.s_addr == htonl(INADDR_ANY)) {
            struct in_addr lo = {htonl(INADDR_LOOPBACK)};
            set_v4(c, &lo);
        }
    }
}
