/*
 * loopstall: a test plugin that blocks the agent's loop on purpose. A timer
 * callback sleeps `for` once, `after` the start (a plugin gone wrong: a
 * blocking read on the loop). The watchdog test checks that systemd's
 * watchdog pings stop while it blocks and that /health says failing,
 * answered from the status server's own thread. It also emits one reading
 * a second and reports a device down, so the status shows it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <mittari/mittari.h>

struct conf {
    int64_t after_ms, for_ms, up;
};

static const struct mittari_option opts[] = {
    {.name = "after", .type = MITTARI_OPT_DURATION, .def = "1s",
     .offset = offsetof(struct conf, after_ms), .help = "Block the loop this long after start."},
    {.name = "for", .type = MITTARI_OPT_DURATION, .def = "5s",
     .offset = offsetof(struct conf, for_ms), .help = "How long the loop is blocked."},
    {.name = "up", .type = MITTARI_OPT_INT, .def = "0", .offset = offsetof(struct conf, up),
     .help = "Devices up to report besides stall-2 (up-1, up-2, ...), each with a counter; up-1 counts 5 bad_frames."},
    {0},
};

struct stall {
    const struct mittari_host *h;
    struct mittari_ctx *ctx;
    const struct conf *c;
    struct mittari_timer *t, *tick;
};

static void block(void *arg)
{
    struct stall *s = arg;
    struct timespec ts = {s->c->for_ms / 1000, (s->c->for_ms % 1000) * 1000000};
    s->h->log(s->ctx, MITTARI_LOG_WARNING, "blocking the loop for %lld ms",
              (long long)s->c->for_ms);
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
    s->h->log(s->ctx, MITTARI_LOG_NOTICE, "the loop runs again");
}

static void tick(void *arg)
{
    struct stall *s = arg;
    struct mittari_reading r = MITTARI_READING_INIT;
    r.device = "stall-1";
    r.metric = "ticks";
    r.kind = MITTARI_KIND_DELTA;
    r.value = 1;
    s->h->emit(s->ctx, &r);
}

static int create(const struct mittari_host *h, struct mittari_ctx *ctx, const void *config,
                  void **state)
{
    struct stall *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->h = h;
    s->ctx = ctx;
    s->c = config;
    *state = s;
    return 0;
}

static int start(void *state)
{
    struct stall *s = state;
    s->h->set_health(s->ctx, "stall-2", MITTARI_HEALTH_DOWN, "unplugged (on purpose)");
    for (int64_t i = 1; i <= s->c->up; i++) {
        char name[32];
        snprintf(name, sizeof(name), "up-%lld", (long long)i);
        s->h->set_health(s->ctx, name, MITTARI_HEALTH_UP, NULL);
        s->h->count(s->ctx, name, "polls", (uint64_t)i);
    }
    if (s->c->up) /* a decode error: an input's total over its devices */
        s->h->count(s->ctx, "up-1", "bad_frames", 5);
    int rc = s->h->timer_start(s->ctx, (uint64_t)s->c->after_ms, 0, block, s, &s->t);
    return rc ? rc : s->h->timer_start(s->ctx, 1000, 1000, tick, s, &s->tick);
}

static void stop(void *state)
{
    (void)state;
}

static void destroy(void *state)
{
    free(state);
}

static const struct mittari_plugin plugin = {
    .abi_version = MITTARI_ABI_VERSION,
    .size = sizeof(struct mittari_plugin),
    .name = "loopstall",
    .version = "1.0",
    .description = "Test plugin: blocks the loop once (watchdog test)",
    .options = opts,
    .config_size = sizeof(struct conf),
    .create = create,
    .start = start,
    .stop = stop,
    .destroy = destroy,
};

MITTARI_PLUGIN_DEFINE(plugin)
