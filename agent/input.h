/*
 * input: one running input plugin instance (struct mittari_ctx) and the host
 * API it is given: timers, fd watches, polls on worker threads, emit, log,
 * health.
 *
 * Owns the instance's config (struct mt_inst_conf), the plugin state and
 * every handle the plugin opened through the host, which it closes itself
 * when the instance stops, so a plugin never has to get libuv's asynchronous
 * close right. Lifecycle functions run on the loop thread; emit, log, now,
 * set_health, count and instance_name are safe from any thread.
 *
 * Emit validates the reading, pseudonymises subject_id (the raw identifier
 * goes no further than the keyed hash), merges the instance's static tags,
 * interns the series and queues the reading for the writer. It never
 * blocks on I/O.
 *
 * Every call into plugin code runs under a crash mark (crash.h) naming the
 * instance and the callback, on whichever thread makes it.
 *
 * Two more shapes of the same instance (issue 13):
 * - isolated (`isolate: true`, the agent's side): the plugin runs in a
 *   child process (isolate.h); this struct keeps everything else as for
 *   an in-process instance (emit, health, counters, statistics), fed by
 *   what the child sends.
 * - in the child (env->sink set): the plugin runs here with its timers,
 *   fd watches, polls and decoders on the child's loop, and emit,
 *   set_health and count go to the sink (the link to the agent) instead
 *   of the writer.
 */
#ifndef MT_INPUT_H
#define MT_INPUT_H

#include <stdint.h>
#include <uv.h>

#include <mittari/mittari.h>

#include "config.h"
#include "crash.h"
#include "pseudo.h"
#include "series.h"
#include "writer.h"

/* In the child of an isolated input: where emit, set_health and count go
 * (any thread, as the host calls). */
struct mt_input_sink {
    int (*emit)(void *arg, const struct mittari_reading *r);
    void (*set_health)(void *arg, const char *device, int health, const char *reason);
    void (*count)(void *arg, const char *device, const char *counter, uint64_t n);
    void *arg;
};

struct mt_input_env {
    uv_loop_t *loop;
    struct mt_writer *writer;         /* NULL with a sink */
    struct mt_series_reg *series;     /* NULL with a sink */
    struct mt_pseudo *pseudo;         /* NULL with a sink */
    const struct mt_input_sink *sink; /* the child's; NULL in the agent */
    /* isolated instances: the binary run as the child (NULL =
     * /proc/self/exe) and how long a stop waits before SIGKILL */
    const char *isolate_exe;
    int64_t isolate_stop_ms;
};

struct mt_input_stats {
    uint64_t emitted, refused, invalid, polls_skipped;
    uint64_t conflicts; /* cumulative readings refused: a second counter for a series */
};

extern const struct mittari_host mt_host_api;

/* Takes ownership of ic, even on error. Calls the plugin's create(); an
 * isolated instance (ic->isolate, no sink) makes its child's supervisor
 * instead, and the child calls create(). */
int mt_input_create(struct mittari_ctx **out, const struct mt_input_env *env,
                    struct mt_inst_conf *ic, char *err, size_t errlen);
int mt_input_start(struct mittari_ctx *ctx);
/* Starts it after delay_ms instead (a crash loop's hold-back, agent.c);
 * meanwhile its health is down with reason. A stop before then calls
 * neither start() nor stop(), only destroy(). */
int mt_input_start_after(struct mittari_ctx *ctx, uint64_t delay_ms, const char *reason);
/* True for an isolated instance (the agent's side). */
bool mt_input_isolated(const struct mittari_ctx *ctx);
/* The instance's log prefix, "input sim[lobby]". */
const char *mt_input_module(const struct mittari_ctx *ctx);
/* What the crash handler says of this instance (decoder.c marks its
 * threads' calls of plugin code with it). */
const struct mt_crash_who *mt_input_who(const struct mittari_ctx *ctx);
/* Calls the plugin's stop(), closes what it left open, waits for polls in
 * flight, calls destroy() and frees the instance; then done(arg). */
void mt_input_stop(struct mittari_ctx *ctx, void (*done)(void *arg), void *arg);
const struct mt_inst_conf *mt_input_conf(const struct mittari_ctx *ctx);
/* Loop thread: polls of the plugin running on workers now. */
int mt_input_polls_busy(const struct mittari_ctx *ctx);
void mt_input_get_stats(struct mittari_ctx *ctx, struct mt_input_stats *st);
/* Health of a device (NULL: the instance); -1 if unknown. */
int mt_input_health(struct mittari_ctx *ctx, const char *device, char *reason, size_t len);
uint64_t mt_input_counter(struct mittari_ctx *ctx, const char *device, const char *counter);
/* Wall-clock time (µs) the last reading was accepted; 0 = none yet. Any thread. */
int64_t mt_input_last_reading(struct mittari_ctx *ctx);
/* What the plugin reported of a device (name "" = the instance itself):
 * health (MITTARI_HEALTH_*), reason and its counters. */
struct mt_input_device {
    const char *name;
    int health;
    const char *reason;
    size_t ncounters;
    struct {
        const char *name;
        uint64_t value;
    } counters[16];
};
/* Any thread: calls cb for every device, in the order first reported,
 * under the instance's lock: cb copies what it keeps and calls nothing of
 * the input. */
void mt_input_devices(struct mittari_ctx *ctx,
                      void (*cb)(void *arg, const struct mt_input_device *d), void *arg);
/* One part of the statistics line: emitted, refused, devices not up, counters. */
void mt_input_summary(struct mittari_ctx *ctx, struct mt_buf *b);

#endif
