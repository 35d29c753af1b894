/*
 * devloop: keeps one device descriptor (a serial port, an input event
 * device) open on the agent's loop for a plugin instance: opens it, watches
 * it with host->fd_watch, reads what is there without blocking and hands
 * the bytes to the plugin; when the device goes away (unplugged adapter,
 * the other end of a pty closed, read error) it closes it, reports the
 * device down with host->set_health, and reopens it on a timer, so an
 * adapter plugged back in works again without restarting the agent.
 *
 * A read hold (hold_ms > 0) saves wake-ups when data comes fast: after a
 * read that came less than hold_ms after the one before, the descriptor is
 * left unwatched and read again hold_ms later, for as long as each hold
 * finds data; a hold that finds none watches it again. A device that sends
 * now and then is read at once, as without a hold; one that sends many
 * lines a second is read once per hold instead of once per line, and its
 * bytes wait at most hold_ms in the kernel's buffer.
 *
 * Failing to open is not an error of the instance: the device is reported
 * down (the agent logs the change) and retried every reopen_ms; another
 * kind of failure while down is logged once, repeats are not. Each open
 * logs the open callback's note, if any.
 *
 * Owns the watch and the timer (through the host), not the descriptor: the
 * plugin's open and close callbacks do. Loop thread only; every callback
 * runs on the loop.
 */
#ifndef MTL_DEVLOOP_H
#define MTL_DEVLOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mittari/mittari.h>

#define MTL_DEGRADED 1

struct mtl_ops {
    /* Opens the device: 0 and *fd (non-blocking), or -errno and a one-line
     * message in err. note (notelen bytes, zeroed): optional line to log
     * once, e.g. what the device does not support. MTL_DEGRADED: open and
     * read, but not as it should be (note says why): health degraded. */
    int (*open)(void *arg, int *fd, char *note, size_t notelen, char *err, size_t errlen);
    /* Closes what open opened. */
    void (*close)(void *arg);
    /* Bytes read from the device, in order. */
    void (*data)(void *arg, const uint8_t *p, size_t n);
    /* Optional: the device went away; drop partial frames. */
    void (*lost)(void *arg);
};

struct mtl_conf {
    const char *device; /* health and counters of this device; NULL = the instance */
    const char *path;   /* for log lines */
    int64_t reopen_ms;
    int64_t hold_ms; /* read hold; 0 = none: every read as soon as there are bytes */
};

struct mtl;

/* Takes nothing over: host, ctx, conf strings and arg are borrowed until
 * mtl_free. 0 or -ENOMEM. */
int mtl_create(struct mtl **out, const struct mittari_host *host, struct mittari_ctx *ctx,
               const struct mtl_conf *c, const struct mtl_ops *ops, void *arg);
/* Tries the first open now; a failure is reported (down) and retried.
 * Always 0: a device that is not there is a state, not an error. */
int mtl_start(struct mtl *l);
/* Unwatches, stops the timer, closes the device. */
void mtl_stop(struct mtl *l);
void mtl_free(struct mtl *l);
bool mtl_is_open(const struct mtl *l);

#endif
