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
 */
#ifndef MT_INPUT_H
#define MT_INPUT_H

#include <stdint.h>
#include <uv.h>

#include <mittari/mittari.h>

#include "config.h"
#include "pseudo.h"
#include "series.h"
#include "writer.h"

struct mt_input_env {
    uv_loop_t *loop;
    struct mt_writer *writer;
    struct mt_series_reg *series;
    struct mt_pseudo *pseudo;
};

struct mt_input_stats {
    uint64_t emitted, refused, invalid, polls_skipped;
    uint64_t conflicts; /* cumulative readings refused: a second counter for a series */
};

extern const struct mittari_host mt_host_api;

/* Takes ownership of ic, even on error. Calls the plugin's create(). */
int mt_input_create(struct mittari_ctx **out, const struct mt_input_env *env,
                    struct mt_inst_conf *ic, char *err, size_t errlen);
int mt_input_start(struct mittari_ctx *ctx);
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
