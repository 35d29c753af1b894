/*
 * stall: a test plugin that holds what a badly behaved device plugin
 * holds: a poll that blocks its worker thread (a Modbus read waiting on a
 * dead line), then emits; optionally a stop() that blocks the loop. Every
 * emit's result is logged ("poll emit: rc N"), so a test sees what the
 * agent answered a poll that outlasted a stop.
 */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include <mittari/mittari.h>

struct conf {
    int64_t poll_ms;
    int64_t block_ms;
    int64_t stop_block_ms;
    const char *metric;
};

static const struct mittari_option opts[] = {
    {.name = "poll_interval", .type = MITTARI_OPT_DURATION, .def = "100ms", .min = 1,
     .max = 3600000, .offset = offsetof(struct conf, poll_ms), .help = "How often a poll runs."},
    {.name = "block", .type = MITTARI_OPT_DURATION, .def = "0", .min = 0, .max = 3600000,
     .offset = offsetof(struct conf, block_ms),
     .help = "How long each poll blocks its worker before it emits."},
    {.name = "stop_block", .type = MITTARI_OPT_DURATION, .def = "0", .min = 0, .max = 3600000,
     .offset = offsetof(struct conf, stop_block_ms),
     .help = "How long stop() blocks the loop."},
    {.name = "metric", .type = MITTARI_OPT_STRING, .def = "stalled",
     .offset = offsetof(struct conf, metric), .help = "Metric of the readings."},
    {0},
};

struct stall {
    const struct mittari_host *h;
    struct mittari_ctx *ctx;
    const struct conf *c;
};

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = ms % 1000 * 1000000};
    while (nanosleep(&ts, &ts) && errno == EINTR)
        ;
}

static int create(const struct mittari_host *h, struct mittari_ctx *ctx, const void *cf, void **s)
{
    struct stall *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->h = h;
    p->ctx = ctx;
    p->c = cf;
    *s = p;
    return 0;
}

static int work(void *arg)
{
    struct stall *p = arg;
    struct mittari_reading r = MITTARI_READING_INIT;
    sleep_ms(p->c->block_ms);
    r.metric = p->c->metric;
    r.kind = MITTARI_KIND_DELTA;
    r.value = 1;
    int rc = p->h->emit(p->ctx, &r);
    p->h->log(p->ctx, MITTARI_LOG_NOTICE, "poll emit: rc %d", rc);
    return rc;
}

static int start(void *s)
{
    struct stall *p = s;
    return p->h->poll_start(p->ctx, (uint64_t)p->c->poll_ms, work, NULL, p, NULL);
}

static void stop(void *s)
{
    struct stall *p = s;
    sleep_ms(p->c->stop_block_ms);
}

static void destroy(void *s)
{
    free(s);
}

static const struct mittari_plugin desc = {
    .abi_version = MITTARI_ABI_VERSION,
    .size = sizeof(struct mittari_plugin),
    .name = "stall",
    .version = "1",
    .description = "test plugin whose polls block a worker",
    .options = opts,
    .config_size = sizeof(struct conf),
    .create = create,
    .start = start,
    .stop = stop,
    .destroy = destroy,
};
MITTARI_PLUGIN_DEFINE(desc)
