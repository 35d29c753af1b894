#include "sdnotify.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* addr as $NOTIFY_SOCKET spells it into a sockaddr_un; its length, or
 * -EINVAL. */
static int make_addr(const char *addr, struct sockaddr_un *sa, socklen_t *len)
{
    size_t n = strlen(addr);

    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    if (n < 2 || (addr[0] != '/' && addr[0] != '@'))
        return -EINVAL;
    /* a path needs its NUL inside sun_path; an abstract name does not */
    if (n > sizeof(sa->sun_path) - (addr[0] == '/' ? 1 : 0))
        return -EINVAL;
    memcpy(sa->sun_path, addr, n);
    if (addr[0] == '@')
        sa->sun_path[0] = '\0';
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (addr[0] == '/' ? 1 : 0));
    return 0;
}

int mt_sdnotify_to(const char *addr, const char *state)
{
    struct sockaddr_un sa;
    socklen_t salen;
    int rc, fd;

    if (!addr || !*addr)
        return 0;
    if (!state || !*state)
        return -EINVAL;
    rc = make_addr(addr, &sa, &salen);
    if (rc)
        return rc;
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* the kernel adds our credentials, which systemd checks (NotifyAccess) */
    ssize_t n = sendto(fd, state, strlen(state), MSG_DONTWAIT | MSG_NOSIGNAL,
                       (struct sockaddr *)&sa, salen);
    rc = n < 0 ? -errno : 1;
    close(fd);
    return rc;
}

int mt_sdnotify(const char *state)
{
    return mt_sdnotify_to(getenv("NOTIFY_SOCKET"), state);
}

/* A decimal number without sign, spaces or trailing text. */
static int parse_u64(const char *s, uint64_t *out)
{
    char *end;

    if (!s || *s < '0' || *s > '9')
        return -EINVAL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return -EINVAL;
    *out = v;
    return 0;
}

int mt_sdnotify_watchdog_from(const char *usec, const char *pid, pid_t self, uint64_t *out_usec)
{
    uint64_t u, p;

    if (!usec || !*usec)
        return 0;
    if (parse_u64(usec, &u) || u == 0)
        return -EINVAL;
    if (pid && *pid) {
        if (parse_u64(pid, &p) || p == 0)
            return -EINVAL;
        if (p != (uint64_t)self)
            return 0; /* meant for another process (we were forked or exec'd by it) */
    }
    *out_usec = u;
    return 1;
}

int mt_sdnotify_watchdog(uint64_t *out_usec)
{
    return mt_sdnotify_watchdog_from(getenv("WATCHDOG_USEC"), getenv("WATCHDOG_PID"), getpid(),
                                     out_usec);
}
