/*
 * listen: the status endpoint's address as written in the configuration
 * (status.listen): "127.0.0.1:9465", "[::1]:9465", "0.0.0.0:9465",
 * "[::]:9465", a bare port "9465" (loopback), or "off"; port 0 lets the
 * kernel choose a free one (tests; the agent logs which). Numeric addresses
 * only: a host name would need a resolver at start-up.
 *
 * Pure; any thread. Owns nothing.
 */
#ifndef MT_LISTEN_H
#define MT_LISTEN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct mt_listen {
    bool off;
    bool loopback; /* 127.0.0.0/8 or ::1: reachable from this machine only */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    unsigned port;
    char text[64]; /* normalised "127.0.0.1:9465", "[::1]:9465" */
};

/* 0, or -EINVAL with a reason in err. */
int mt_listen_parse(const char *s, struct mt_listen *out, char *err, size_t errlen);
/* The address a client on this machine connects to: the same, except that
 * a wildcard (0.0.0.0, ::) becomes the loopback address of its family. */
void mt_listen_client(const struct mt_listen *l, struct mt_listen *client);

#endif
