/*
 * isolate: the agent's side of an isolated input (`isolate: true`, issue
 * 13). The instance's plugin runs in a child process of its own: the same
 * mittari binary re-executed (`mittari __isolate NAME`, fork+exec through
 * uv_spawn, so nothing of the agent's threads or locks is inherited),
 * which loads the same plugin file, gets the option values the agent
 * validated (mittari check and the agent validate as for any input) and
 * runs the plugin with input.c and decoder.c on a libuv loop of its own
 * (isolate_child.h). What the plugin does through the host API comes back
 * over a socketpair (isowire.h) and is applied here to the instance
 * (input.c) as for an in-process plugin: emit, log, set_health, count. A
 * crash of the plugin ends the child, never the agent.
 *
 * Owns the child: its process handle, the agent's ends of its two sockets,
 * a restart timer and a kill timer. Loop thread only; it never blocks the
 * loop (the sockets are non-blocking on this side).
 *
 * Emit is a round trip: the child sends the reading and waits for the
 * agent's answer, which is what emit returned here. So an emit that
 * returned 0 in the child was queued for the writer exactly once, and one
 * that never returned (the child died waiting) was queued once or not at
 * all, never twice. What the child sent before it died (logs, counters,
 * health, a last reading) is still read and applied once its death is
 * seen: the socket holds it.
 *
 * Raw identifiers: the child sends subject_id as the plugin gave it, over
 * the socketpair, in memory, and the agent pseudonymises it as for any
 * input. So the pseudonymisation key never enters a process that runs
 * the plugin's code, and key rotation and time zones stay in one place.
 * Buffers that held a reading are wiped after use on both sides, and the
 * child is not dumpable (no core file of it holds a raw identifier).
 *
 * States:
 *   IDLE      made, not started                      STARTING (start), DONE (stop)
 *   STARTING  the child runs, INIT sent, until it    RUNNING (STARTED), FAILED (FAILED),
 *             reports STARTED                        BACKOFF (died), STOPPING (stop)
 *   RUNNING   the plugin runs                        BACKOFF (died), STOPPING (stop)
 *   BACKOFF   it died: logged, counted ("crashes"),  STARTING (timer), DONE (stop)
 *             the instance's health down with the
 *             reason; a new child after 1, 2, 4 ...
 *             60 s (1 s again once one ran 60 s)
 *   FAILED    the plugin could not be loaded or      DONE (stop)
 *             created: off until a reload changes it
 *   STOPPING  STOP sent; SIGKILL (to its process     DONE (its exit seen)
 *             group) when stop_ms passed
 *   DONE      no child, every handle closed: done(arg) has been called
 */
#ifndef MT_ISOLATE_H
#define MT_ISOLATE_H

#include <stdint.h>
#include <uv.h>

#include <mittari/mittari.h>

#include "config.h"
#include "util.h"

#define MT_ISOLATE_BACKOFF_MIN_MS 1000
#define MT_ISOLATE_BACKOFF_MAX_MS 60000

struct mt_isolate;

struct mt_isolate_env {
    uv_loop_t *loop;
    const char *exe; /* the mittari binary; NULL = /proc/self/exe */
    int64_t stop_ms; /* a stop waits this long before SIGKILL; 0 = 5 s */
};

/* For the instance ctx (input.c), whose settings ic stay valid until
 * mt_isolate_free. Starts nothing. 0 or -ENOMEM. */
int mt_isolate_create(struct mt_isolate **out, struct mittari_ctx *ctx,
                      const struct mt_isolate_env *env, const struct mt_inst_conf *ic);
/* Starts the first child. 0; a child that cannot be started is retried
 * with the backoff (logged), as one that died. */
int mt_isolate_start(struct mt_isolate *iso);
/* Stops the child (STOP, then SIGKILL after stop_ms), closes everything
 * and calls done(arg), possibly before it returns. Once. */
void mt_isolate_stop(struct mt_isolate *iso, void (*done)(void *arg), void *arg);
/* After done: frees the memory. */
void mt_isolate_free(struct mt_isolate *iso);
/* "; isolated (pid N)" or the like, for the statistics line. */
void mt_isolate_summary(struct mt_isolate *iso, struct mt_buf *b);

#endif
