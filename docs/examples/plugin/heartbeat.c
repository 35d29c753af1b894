/*
 * heartbeat: a complete minimal mittari input plugin. Every `interval` it
 * emits the gauge `metric` (default "uptime"): seconds since the instance
 * started, so a dashboard can tell that the gateway is alive and when the
 * agent restarted. Build it with the Makefile beside this file.
 */
#include <errno.h>
#include <stdlib.h>

#include <mittari/mittari.h>

/* The options, filled by the agent from the configuration before create(). */
struct conf {
    const char *metric;
    int64_t interval_ms;
};

static const struct mittari_option options[] = {
    {.name = "metric",
     .type = MITTARI_OPT_STRING,
     .def = "uptime",
     .offset = offsetof(struct conf, metric),
     .help = "Metric name of the readings."},
    {.name = "interval",
     .type = MITTARI_OPT_DURATION,
     .def = "1m",
     .min = 100,
     .max = 86400000,
     .offset = offsetof(struct conf, interval_ms),
     .help = "Time between two readings."},
    {0},
};

/* Everything of one instance: a plugin configured twice runs twice. */
struct state {
    const struct mittari_host *host;
    struct mittari_ctx *ctx;
    const struct conf *conf;
    struct mittari_timer *timer;
    int64_t started_us;
};

/* Loop thread, every interval. */
static void tick(void *arg)
{
    struct state *s = arg;
    struct mittari_reading r = MITTARI_READING_INIT;

    r.metric = s->conf->metric;
    r.unit = "s";
    r.kind = MITTARI_KIND_GAUGE;
    r.value = (double)(s->host->now(s->ctx) - s->started_us) / 1e6;
    /* refused (queue full, log at its cap): counted, not logged every time */
    if (s->host->emit(s->ctx, &r) < 0)
        s->host->count(s->ctx, NULL, "refused", 1);
}

static int create(const struct mittari_host *host, struct mittari_ctx *ctx, const void *config,
                  void **state)
{
    struct state *s = calloc(1, sizeof(*s));

    if (!s)
        return -ENOMEM;
    s->host = host;
    s->ctx = ctx;
    s->conf = config;
    *state = s;
    return 0;
}

static int start(void *state)
{
    struct state *s = state;
    uint64_t every = (uint64_t)s->conf->interval_ms;

    s->started_us = s->host->now(s->ctx);
    s->host->log(s->ctx, MITTARI_LOG_INFO, "a reading every %llu ms",
                 (unsigned long long)every);
    return s->host->timer_start(s->ctx, every, every, tick, s, &s->timer);
}

static void stop(void *state)
{
    struct state *s = state;

    s->host->timer_stop(s->timer);
    s->timer = NULL;
}

static void destroy(void *state)
{
    free(state);
}

static const struct mittari_plugin plugin = {
    .abi_version = MITTARI_ABI_VERSION,
    .size = sizeof(struct mittari_plugin),
    .name = "heartbeat", /* the file is heartbeat.so */
    .version = "1.0",
    .description = "A gauge of seconds since start, every interval: the gateway is alive",
    .options = options,
    .config_size = sizeof(struct conf),
    .create = create,
    .start = start,
    .stop = stop,
    .destroy = destroy,
};
MITTARI_PLUGIN_DEFINE(plugin)
