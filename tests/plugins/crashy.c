/*
 * crashy: a test plugin that crashes (issue 13). It emits numbered
 * readings (metric `seq`, value 1, 2, 3 ..., device "p<pid>" so that
 * every process of an isolated instance numbers its own series), logs
 * "emitted N" after each emit that returned 0, and after `crash_after`
 * of them dereferences NULL (or aborts) in the callback `crash_in` names:
 * the poll's work (a worker thread) or a timer callback (the loop). A
 * poll can also block its worker (`block`) to keep the process busy.
 * Optionally each reading carries a raw card number (`card`), and the
 * instance reports its health and a counter, so a test sees them cross
 * from an isolated process.
 *
 * Built without sanitizers: its NULL dereference must be a real SIGSEGV,
 * as in an integrator's plugin, not a sanitizer's report.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mittari/mittari.h>

enum { IN_NONE, IN_POLL, IN_TIMER, IN_ABORT, IN_START, IN_CHECK };

struct conf {
    int crash_in;
    int64_t crash_after;
    int64_t interval_ms;
    int64_t block_ms;
    const char *card;
    bool report;
};

static const char *const places[] = {"none", "poll", "timer", "abort", "start", "check", NULL};

static const struct mittari_option opts[] = {
    {.name = "crash_in",
     .type = MITTARI_OPT_ENUM,
     .def = "poll",
     .values = places,
     .offset = offsetof(struct conf, crash_in),
     .help = "Where it crashes: poll work (NULL), a timer callback (NULL), abort() in a timer, "
             "start (NULL), check (NULL: when the configuration is checked), or none."},
    {.name = "crash_after",
     .type = MITTARI_OPT_INT,
     .def = "5",
     .min = 0,
     .max = 1e9,
     .offset = offsetof(struct conf, crash_after),
     .help = "Readings emitted before it crashes; 0 = it never does."},
    {.name = "interval",
     .type = MITTARI_OPT_DURATION,
     .def = "20ms",
     .min = 1,
     .max = 3600000,
     .offset = offsetof(struct conf, interval_ms),
     .help = "Time between two readings."},
    {.name = "block",
     .type = MITTARI_OPT_DURATION,
     .def = "0",
     .min = 0,
     .max = 3600000,
     .offset = offsetof(struct conf, block_ms),
     .help = "How long each poll blocks its worker before it emits."},
    {.name = "card",
     .type = MITTARI_OPT_STRING,
     .offset = offsetof(struct conf, card),
     .help = "A raw card number each reading carries as its subject (space em4100-dec)."},
    {.name = "report",
     .type = MITTARI_OPT_BOOL,
     .def = "false",
     .offset = offsetof(struct conf, report),
     .help = "Report the health of device 'probe' and count 'ticks'."},
    {0},
};

struct crashy {
    const struct mittari_host *h;
    struct mittari_ctx *ctx;
    const struct conf *c;
    int64_t n; /* readings emitted with 0 */
    char device[32];
};

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = ms % 1000 * 1000000};
    while (nanosleep(&ts, &ts) && errno == EINTR)
        ;
}

static void crash(struct crashy *s, int how)
{
    s->h->log(s->ctx, MITTARI_LOG_NOTICE, "crashing now after %lld readings", (long long)s->n);
    if (how == IN_ABORT)
        abort();
    volatile int *volatile p = NULL; /* opaque to the compiler: a real store to address 0 */
    *p = 1;
}

/* One numbered reading; then, after crash_after of them, the crash. */
static int step(struct crashy *s, int here)
{
    struct mittari_reading r = MITTARI_READING_INIT;
    int rc;

    r.device = s->device;
    r.metric = "seq";
    r.kind = MITTARI_KIND_GAUGE;
    r.value = (double)(s->n + 1);
    if (s->c->card) {
        r.subject_id = s->c->card;
        r.subject_id_len = strlen(s->c->card);
        r.subject_space = "em4100-dec";
    }
    rc = s->h->emit(s->ctx, &r);
    if (rc == 0) {
        s->n++;
        s->h->log(s->ctx, MITTARI_LOG_INFO, "emitted %lld", (long long)s->n);
        if (s->c->report)
            s->h->count(s->ctx, NULL, "ticks", 1);
    }
    int when = s->c->crash_in == IN_ABORT ? IN_TIMER : s->c->crash_in;
    if (s->c->crash_after && s->n >= s->c->crash_after && when == here)
        crash(s, s->c->crash_in);
    return rc;
}

static int work(void *arg)
{
    struct crashy *s = arg;
    sleep_ms(s->c->block_ms);
    return step(s, IN_POLL);
}

static void tick(void *arg)
{
    step(arg, IN_TIMER);
}

static int check(const void *cf, const struct mittari_checker *chk)
{
    const struct conf *c = cf;
    (void)chk;
    if (c->crash_in == IN_CHECK) {
        volatile int *volatile p = NULL;
        *p = 1;
    }
    return 0;
}

static int create(const struct mittari_host *h, struct mittari_ctx *ctx, const void *cf, void **st)
{
    struct crashy *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->h = h;
    s->ctx = ctx;
    s->c = cf;
    snprintf(s->device, sizeof(s->device), "p%d", (int)getpid());
    *st = s;
    return 0;
}

static int start(void *st)
{
    struct crashy *s = st;
    uint64_t every = (uint64_t)s->c->interval_ms;

    if (s->c->report)
        s->h->set_health(s->ctx, "probe", MITTARI_HEALTH_DEGRADED, "probe reports in");
    if (s->c->crash_in == IN_START)
        crash(s, IN_START);
    if (s->c->crash_in == IN_TIMER || s->c->crash_in == IN_ABORT)
        return s->h->timer_start(s->ctx, every, every, tick, s, NULL);
    return s->h->poll_start(s->ctx, every, work, NULL, s, NULL);
}

static void stop(void *st)
{
    (void)st;
}

static void destroy(void *st)
{
    free(st);
}

static const struct mittari_plugin desc = {
    .abi_version = MITTARI_ABI_VERSION,
    .size = sizeof(struct mittari_plugin),
    .name = "crashy",
    .version = "1",
    .description = "test plugin that emits numbered readings, then crashes",
    .options = opts,
    .config_size = sizeof(struct conf),
    .create = create,
    .start = start,
    .stop = stop,
    .destroy = destroy,
    .check = check,
};
MITTARI_PLUGIN_DEFINE(desc)
