/*
 * sdnotify: the systemd notification protocol (READY=1, RELOADING=1,
 * STOPPING=1, WATCHDOG=1) without libsystemd. The protocol is one datagram
 * of "KEY=VALUE\n..." text, no trailing NUL, sent on an AF_UNIX SOCK_DGRAM
 * socket to the address in $NOTIFY_SOCKET: a path when it starts with '/',
 * the abstract namespace when it starts with '@' (the '@' stands for the
 * leading NUL byte). The watchdog is on when $WATCHDOG_USEC holds a positive
 * number and $WATCHDOG_PID, if set, is this process.
 *
 * Linking libsystemd for these few lines mapped about 1 MB of library pages
 * into the agent (libsystemd, libgcrypt, libzstd, liblzma, liblz4, libcap;
 * docs/performance.md); the ble plugin still links it for sd-bus.
 *
 * Owns nothing: each send opens a socket, sends and closes it. Any thread.
 * Never blocks (MSG_DONTWAIT: a full queue at the receiver drops the
 * message, -EAGAIN), never changes the environment.
 */
#ifndef MT_SDNOTIFY_H
#define MT_SDNOTIFY_H

#include <stdint.h>
#include <sys/types.h>

/* Sends state to the socket named by addr (as $NOTIFY_SOCKET spells it).
 * 1 = sent, 0 = addr is NULL or empty (not run by systemd), -EINVAL (addr
 * not a path or an abstract name, too long, or empty state), or the -errno
 * of socket/sendto. */
int mt_sdnotify_to(const char *addr, const char *state);
/* mt_sdnotify_to($NOTIFY_SOCKET, state). */
int mt_sdnotify(const char *state);
/* The watchdog from the two variables' values (either may be NULL): 1 and
 * *usec when it is on for pid self, 0 when off, -EINVAL when usec is not a
 * positive decimal number or pid not a number. */
int mt_sdnotify_watchdog_from(const char *usec, const char *pid, pid_t self, uint64_t *out_usec);
/* mt_sdnotify_watchdog_from($WATCHDOG_USEC, $WATCHDOG_PID, getpid(), ...). */
int mt_sdnotify_watchdog(uint64_t *out_usec);

#endif
