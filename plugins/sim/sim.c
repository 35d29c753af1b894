/*
 * sim: simulated visitor traffic for one site, for the demo, tests and
 * benchmarks. Uses only the SDK header: it is also the reference plugin.
 *
 *   door-N        visitors_in / visitors_out   delta 1 per person passing
 *   cardreader-1  checkin                      event, subject = the family's
 *                                              welfare card (pseudonymised by
 *                                              the agent), tag service
 *   gate          visitors                     cumulative counter of a
 *                                              Modbus-style gate that wraps
 *                                              at 16 or 32 bits
 *   hall          occupancy                    gauge, persons inside
 *
 * Traffic follows a two-peak daily curve inside the opening hours (local
 * time), as a Poisson process with `rate` readings per second at the peak.
 * rate 0 emits up to 4096 readings a millisecond, as fast as the agent takes
 * them (benchmarks), backing off when emit says the intake queue is full.
 *
 * replay_from/replay_until simulate the past instead: the traffic of that
 * stretch of local time, with those timestamps, emitted as fast as the
 * agent takes it (a reading refused with -EAGAIN is offered again), then
 * nothing more: a log with known days for the demo and for tests whose
 * figures must not depend on the hour they run at.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mittari/mittari.h>

struct sim_conf {
    double rate;
    int64_t limit;
    int64_t doors;
    const char *opening_hours;
    int64_t families;
    double card_share;
    int gate_bits; /* index into gate_bits_values */
    int64_t gate_start;
    int64_t poll_ms;
    const char *service;
    int64_t seed;
    const char *replay_from, *replay_until;
};

static const char *const gate_bits_values[] = {"16", "32", NULL};

#define HOURS_HELP                                                                                 \
    "must be HH:MM-HH:MM, local time, opening before closing (00:00-23:59, closing up to "         \
    "24:00)"

static const struct mittari_option sim_options[] = {
    {.name = "rate",
     .type = MITTARI_OPT_DOUBLE,
     .def = "5",
     .max = 10000000,
     .offset = offsetof(struct sim_conf, rate),
     .help = "Readings per second at the daily peak; 0 = as fast as the agent takes them."},
    {.name = "limit",
     .type = MITTARI_OPT_INT,
     .def = "0",
     .max = 1e15,
     .offset = offsetof(struct sim_conf, limit),
     .help = "Stop after this many readings; 0 = never."},
    {.name = "doors",
     .type = MITTARI_OPT_INT,
     .def = "2",
     .min = 1,
     .max = 64,
     .offset = offsetof(struct sim_conf, doors),
     .help = "Door counters (devices door-1 ... door-N)."},
    {.name = "opening_hours",
     .type = MITTARI_OPT_STRING,
     .def = "08:00-20:00",
     .offset = offsetof(struct sim_conf, opening_hours),
     .help = "Local opening hours HH:MM-HH:MM; 00:00-24:00 = always open."},
    {.name = "families",
     .type = MITTARI_OPT_INT,
     .def = "300",
     .min = 1,
     .max = 1000000,
     .offset = offsetof(struct sim_conf, families),
     .help = "Welfare-card families in the simulated town."},
    {.name = "card_share",
     .type = MITTARI_OPT_DOUBLE,
     .def = "0.1",
     .max = 1,
     .offset = offsetof(struct sim_conf, card_share),
     .help = "Share of readings that are welfare-card check-ins."},
    {.name = "gate_bits",
     .type = MITTARI_OPT_ENUM,
     .def = "16",
     .values = gate_bits_values,
     .offset = offsetof(struct sim_conf, gate_bits),
     .help = "Width of the gate's cumulative counter."},
    {.name = "gate_start",
     .type = MITTARI_OPT_INT,
     .def = "65000",
     .max = 4294967295.0,
     .offset = offsetof(struct sim_conf, gate_start),
     .help = "Gate counter at start (near the top, so it wraps soon)."},
    {.name = "poll_interval",
     .type = MITTARI_OPT_DURATION,
     .def = "1s",
     .min = 10,
     .max = 3600000,
     .offset = offsetof(struct sim_conf, poll_ms),
     .help = "How often the gate counter and occupancy are read."},
    {.name = "service",
     .type = MITTARI_OPT_STRING,
     .def = "library",
     .offset = offsetof(struct sim_conf, service),
     .help = "Service tag of welfare-card check-ins (library, swimming_hall, museum, ...)."},
    {.name = "seed",
     .type = MITTARI_OPT_INT,
     .def = "0",
     .offset = offsetof(struct sim_conf, seed),
     .help = "Random seed; 0 = different every start."},
    {.name = "replay_from",
     .type = MITTARI_OPT_STRING,
     .offset = offsetof(struct sim_conf, replay_from),
     .help = "Simulate the past from this local time (YYYY-MM-DDTHH:MM) to replay_until, as fast "
             "as the agent takes it, then stop; rate is per simulated second."},
    {.name = "replay_until",
     .type = MITTARI_OPT_STRING,
     .offset = offsetof(struct sim_conf, replay_until),
     .help = "End of the replayed stretch (local YYYY-MM-DDTHH:MM, exclusive)."},
    {0},
};

struct sim {
    const struct mittari_host *host;
    struct mittari_ctx *ctx;
    const struct sim_conf *c;
    int open_min, close_min;
    uint64_t rng;
    uint64_t emitted;
    uint64_t gate;
    uint64_t gate_mask;
    int64_t occupancy;
    uint64_t gate_sent; /* the gate value last emitted in fast mode */
    struct mittari_timer *tick;
    struct mittari_timer *poll;
    int64_t last_tick_us;
    bool done;
    /* replay: the simulated clock, the end, and the step being emitted */
    int64_t replay_t, replay_end, next_gate;
    uint64_t step_left;
    bool replaying;
};

static uint64_t next_rand(struct sim *s)
{
    /* xorshift64*: plenty for traffic, no global state */
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return s->rng * 0x2545F4914F6CDD1Dull;
}

static double uniform(struct sim *s)
{
    return (double)(next_rand(s) >> 11) / 9007199254740992.0;
}

static uint64_t poisson(struct sim *s, double lambda)
{
    if (lambda <= 0)
        return 0;
    if (lambda > 30) {
        /* normal approximation; Box-Muller */
        double u1 = uniform(s), u2 = uniform(s);
        double z = sqrt(-2 * log(u1 > 0 ? u1 : 1e-300)) * cos(2 * M_PI * u2);
        double v = lambda + sqrt(lambda) * z + 0.5;
        return v < 0 ? 0 : (uint64_t)v;
    }
    double l = exp(-lambda), p = 1;
    uint64_t k = 0;
    do {
        k++;
        p *= uniform(s);
    } while (p > l);
    return k - 1;
}

/* "HH:MM" at s into minutes since midnight; -1 if it is not one (24:00
 * only as a closing time). */
static int hhmm(const char *s, bool closing)
{
    for (int i = 0; i < 5; i++)
        if (i == 2 ? s[i] != ':' : s[i] < '0' || s[i] > '9')
            return -1;
    int h = (s[0] - '0') * 10 + (s[1] - '0'), m = (s[3] - '0') * 10 + (s[4] - '0');
    if (m > 59 || h > 24 || (h == 24 && (m || !closing)))
        return -1;
    return h * 60 + m;
}

/* "HH:MM-HH:MM", opening before closing. */
static int parse_hours(const char *s, int *open_min, int *close_min)
{
    if (!s || strlen(s) != 11 || s[5] != '-')
        return -EINVAL;
    *open_min = hhmm(s, false);
    *close_min = hhmm(s + 6, true);
    return *open_min >= 0 && *close_min > *open_min ? 0 : -EINVAL;
}

/* 0..1: share of the peak rate at this local time */
static double curve(const struct sim *s, int64_t now_us)
{
    time_t t = (time_t)(now_us / 1000000);
    struct tm tm;
    localtime_r(&t, &tm);
    double minute = tm.tm_hour * 60 + tm.tm_min + tm.tm_sec / 60.0;
    if (minute < s->open_min || minute >= s->close_min)
        return 0;
    if (s->open_min == 0 && s->close_min == 1440)
        return 1; /* always open: a flat profile, readings all day */
    double f = (minute - s->open_min) / (s->close_min - s->open_min);
    double a = (f - 0.3) / 0.12, b = (f - 0.75) / 0.12;
    double v = 0.25 + 0.75 * exp(-a * a) + 0.6 * exp(-b * b);
    return v > 1 ? 1 : v;
}

static int emit(struct sim *s, struct mittari_reading *r)
{
    int rc = s->host->emit(s->ctx, r);
    if (rc == 0)
        s->emitted++;
    return rc;
}

static int emit_gate(struct sim *s, int64_t ts)
{
    struct mittari_reading r = MITTARI_READING_INIT;
    r.ts_us = ts;
    r.device = "gate";
    r.metric = "visitors";
    r.unit = "persons";
    r.kind = MITTARI_KIND_CUMULATIVE;
    r.counter = s->gate;
    r.counter_bits = s->c->gate_bits == 0 ? 16 : 32;
    int rc = emit(s, &r);
    if (rc)
        return rc;
    struct mittari_reading o = MITTARI_READING_INIT;
    o.ts_us = ts;
    o.device = "hall";
    o.metric = "occupancy";
    o.unit = "persons";
    o.kind = MITTARI_KIND_GAUGE;
    o.value = (double)s->occupancy;
    return emit(s, &o);
}

/* One simulated happening: a door pass or a card check-in. */
static int one(struct sim *s, int64_t ts, double day_frac)
{
    char dev[16];
    struct mittari_reading r = MITTARI_READING_INIT;
    r.ts_us = ts;

    if (uniform(s) < s->c->card_share) {
        /* some families come often, most rarely */
        double u = uniform(s);
        uint32_t family = (uint32_t)((double)s->c->families * u * u);
        uint32_t card = 0x00D50000u + family * 7919u; /* synthetic EM4100-like ids */
        unsigned char id[4] = {card >> 24, card >> 16, card >> 8, card};
        struct mittari_tag tag = {"service", s->c->service};
        r.device = "cardreader-1";
        r.metric = "checkin";
        r.kind = MITTARI_KIND_EVENT;
        r.value = 1;
        r.subject_id = id;
        r.subject_id_len = sizeof(id);
        r.subject_space = "card";
        r.tags = &tag;
        r.ntags = 1;
        return emit(s, &r);
    }
    bool in = s->occupancy <= 0 || uniform(s) < (day_frac < 0.6 ? 0.6 : 0.4);
    snprintf(dev, sizeof(dev), "door-%u", (unsigned)(next_rand(s) % (uint64_t)s->c->doors) + 1);
    r.device = dev;
    r.metric = in ? "visitors_in" : "visitors_out";
    r.unit = "persons";
    r.kind = MITTARI_KIND_DELTA;
    r.value = 1;
    int rc = emit(s, &r);
    if (rc)
        return rc;
    s->occupancy += in ? 1 : -1;
    if (in)
        s->gate = (s->gate + 1) & s->gate_mask;
    return 0;
}

/* "YYYY-MM-DDTHH:MM" -> 0 and its fields, or -EINVAL */
static int parse_local(const char *txt, struct tm *tm)
{
    int n = 0;
    memset(tm, 0, sizeof(*tm));
    if (sscanf(txt, "%4d-%2d-%2dT%2d:%2d%n", &tm->tm_year, &tm->tm_mon, &tm->tm_mday,
               &tm->tm_hour, &tm->tm_min, &n) != 5 ||
        txt[n] || n != 16 || tm->tm_mon < 1 || tm->tm_mon > 12 || tm->tm_mday < 1 ||
        tm->tm_mday > 31 || tm->tm_hour > 23 || tm->tm_min > 59 || tm->tm_year < 1970)
        return -EINVAL;
    tm->tm_year -= 1900;
    tm->tm_mon -= 1;
    tm->tm_isdst = -1;
    return 0;
}

/* Local time (the agent's TZ, agent.timezone) to µs since the epoch */
static int64_t local_us(const char *txt)
{
    struct tm tm;
    if (parse_local(txt, &tm))
        return -1;
    return (int64_t)mktime(&tm) * 1000000;
}

static bool limit_reached(struct sim *s)
{
    if (s->c->limit && s->emitted >= (uint64_t)s->c->limit) {
        if (!s->done)
            s->host->log(s->ctx, MITTARI_LOG_NOTICE, "limit of %lld readings reached; idle now",
                         (long long)s->c->limit);
        s->done = true;
        return true;
    }
    return false;
}

static void tick_paced(void *arg)
{
    struct sim *s = arg;
    int64_t now = s->host->now(s->ctx);
    double dt = (double)(now - s->last_tick_us) / 1e6;
    double k = curve(s, now);

    s->last_tick_us = now;
    if (dt <= 0 || dt > 10 || k == 0 || limit_reached(s))
        return;
    uint64_t n = poisson(s, s->c->rate * k * dt);
    for (uint64_t i = 0; i < n && !limit_reached(s); i++)
        if (one(s, now, k) == -EAGAIN)
            break; /* the agent is behind: drop this tick's rest, as a device would */
}

static void tick_fast(void *arg)
{
    struct sim *s = arg;
    int64_t now = s->host->now(s->ctx);
    int rc = 0;

    for (int i = 0; i < 4096 && rc == 0 && !limit_reached(s); i++)
        rc = one(s, now, 0.5);
    /* the gate counter once per tick: a counter has one value at one time
     * (the agent refuses a second value with the same timestamp) */
    if (rc == 0 && s->gate != s->gate_sent && !limit_reached(s) && emit_gate(s, now) == 0)
        s->gate_sent = s->gate;
    /* -EAGAIN: the intake queue is full; the next tick (1 ms) tries again */
}

#define REPLAY_STEP_US (60 * 1000000LL)

/* Replay: walks the simulated clock a minute at a time, emitting that
 * minute's traffic; a refused reading is offered again at the next tick. */
static void tick_replay(void *arg)
{
    struct sim *s = arg;
    int budget = 4096;

    while (s->replaying && budget > 0 && !limit_reached(s)) {
        if (s->next_gate <= s->replay_t) {
            if (emit_gate(s, s->next_gate) == -EAGAIN)
                return;
            s->next_gate += s->c->poll_ms * 1000;
            continue;
        }
        if (s->step_left) {
            int64_t ts = s->replay_t + (int64_t)(uniform(s) * (double)REPLAY_STEP_US);
            if (one(s, ts, curve(s, s->replay_t)) == -EAGAIN)
                return;
            s->step_left--;
            budget--;
            continue;
        }
        s->replay_t += REPLAY_STEP_US;
        if (s->replay_t >= s->replay_end) {
            s->replaying = false;
            s->host->log(s->ctx, MITTARI_LOG_NOTICE, "replayed %s to %s: %llu readings",
                         s->c->replay_from, s->c->replay_until,
                         (unsigned long long)s->emitted);
            break;
        }
        s->step_left = poisson(s, s->c->rate * curve(s, s->replay_t) * 60);
    }
}

static void poll_gate(void *arg)
{
    struct sim *s = arg;
    if (!limit_reached(s))
        emit_gate(s, s->host->now(s->ctx));
}

static int sim_create(const struct mittari_host *host, struct mittari_ctx *ctx, const void *config,
                      void **state)
{
    const struct sim_conf *c = config;
    struct sim *s = calloc(1, sizeof(*s));

    if (!s)
        return -ENOMEM;
    s->host = host;
    s->ctx = ctx;
    s->c = c;
    if (parse_hours(c->opening_hours, &s->open_min, &s->close_min)) {
        /* sim_check refuses it first; a host that did not run it gets this */
        host->log(ctx, MITTARI_LOG_ERR, "opening_hours: %s", HOURS_HELP);
        free(s);
        return MITTARI_ECONFIG;
    }
    s->gate_mask = c->gate_bits == 0 ? 0xffffu : 0xffffffffu;
    s->gate = (uint64_t)c->gate_start & s->gate_mask;
    s->rng = c->seed ? (uint64_t)c->seed : (uint64_t)host->now(ctx) ^ (uint64_t)(uintptr_t)s;
    if (!s->rng)
        s->rng = 1;
    *state = s;
    return 0;
}

/* mittari check: what create would refuse, and a replay that cannot run */
static int check_replay(const struct sim_conf *c, const struct mittari_checker *chk)
{
    struct tm a, b;
    int n = 0;

    if (!c->replay_from != !c->replay_until) {
        chk->error(chk, c->replay_from ? "replay_from" : "replay_until",
                   "replay_from and replay_until go together");
        return 1;
    }
    if (!c->replay_from)
        return 0;
    if (parse_local(c->replay_from, &a)) {
        chk->error(chk, "replay_from", "'%s' is not a local time YYYY-MM-DDTHH:MM",
                   c->replay_from);
        n++;
    }
    if (parse_local(c->replay_until, &b)) {
        chk->error(chk, "replay_until", "'%s' is not a local time YYYY-MM-DDTHH:MM",
                   c->replay_until);
        n++;
    }
    /* the same fixed-width form: text order is time order */
    if (!n && strcmp(c->replay_from, c->replay_until) >= 0) {
        chk->error(chk, "replay_until", "is not after replay_from");
        n++;
    }
    if (!n && c->rate == 0) {
        chk->error(chk, "rate", "a replay needs a rate (readings per simulated second)");
        n++;
    }
    return n;
}

static int sim_check(const void *config, const struct mittari_checker *chk)
{
    const struct sim_conf *c = config;
    int open_min, close_min, n = 0;

    if (parse_hours(c->opening_hours, &open_min, &close_min)) {
        chk->error(chk, "opening_hours", "opening_hours '%s' %s", c->opening_hours, HOURS_HELP);
        n++;
    }
    return n + check_replay(c, chk);
}

static int sim_start(void *state)
{
    struct sim *s = state;
    int rc;

    s->last_tick_us = s->host->now(s->ctx);
    if (s->c->replay_from) {
        s->replay_t = local_us(s->c->replay_from);
        s->replay_end = local_us(s->c->replay_until);
        s->next_gate = s->replay_t;
        s->step_left = poisson(s, s->c->rate * curve(s, s->replay_t) * 60);
        s->replaying = s->replay_t < s->replay_end;
        return s->host->timer_start(s->ctx, 0, 1, tick_replay, s, &s->tick);
    }
    if (s->c->rate == 0)
        return s->host->timer_start(s->ctx, 0, 1, tick_fast, s, &s->tick);
    rc = s->host->timer_start(s->ctx, 100, 100, tick_paced, s, &s->tick);
    if (!rc)
        rc = s->host->timer_start(s->ctx, (uint64_t)s->c->poll_ms, (uint64_t)s->c->poll_ms,
                                  poll_gate, s, &s->poll);
    return rc;
}

static void sim_stop(void *state)
{
    struct sim *s = state;
    s->host->log(s->ctx, MITTARI_LOG_INFO, "stopping after %llu readings",
                 (unsigned long long)s->emitted);
}

static void sim_destroy(void *state)
{
    free(state);
}

static const struct mittari_plugin sim_plugin = {
    .abi_version = MITTARI_ABI_VERSION,
    .size = sizeof(struct mittari_plugin),
    .name = "sim",
    .version = "1.0",
    .description = "Simulated visitor traffic: door counters, welfare-card check-ins, a gate "
                   "counter that wraps",
    .options = sim_options,
    .config_size = sizeof(struct sim_conf),
    .create = sim_create,
    .start = sim_start,
    .stop = sim_stop,
    .destroy = sim_destroy,
    .check = sim_check,
};

MITTARI_PLUGIN_DEFINE(sim_plugin)
