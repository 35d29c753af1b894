#include "decoder.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "crash.h"
#include "diag.h"
#include "input.h"
#include "util.h"

#define MAX_TAGS 8

/* A frame waiting for the decoder's thread: a copy, wiped when freed (it
 * may hold a card number). */
struct qframe {
    struct qframe *next;
    int64_t ts;
    mittari_decoded_cb done;
    void *arg;
    size_t len;
    uint8_t data[];
};

/* The circuit breaker (under lock). Closed: frames run. Open (until > 0):
 * frames are skipped until `until`; then the first frame is a trial, whose
 * result closes it or opens it again for twice as long. */
struct breaker {
    int64_t hits[MT_DECODER_TRIPS]; /* times of the last limit hits, a ring */
    size_t nhits;
    int64_t until;    /* open: skip frames before this (monotonic µs) */
    int64_t pause_us; /* the next pause */
    bool trial;       /* the frame running now decides */
    uint64_t skipped; /* frames skipped since it first opened */
};

struct mittari_decoder {
    const struct mittari_host *host;
    struct mittari_ctx *ctx;
    struct mt_luabox *box;
    struct mt_decoder_conf conf;
    int ref;                     /* registry reference to decode */
    char where[LUA_IDSIZE + 16]; /* "file:line" where decode is defined */
    char module[96];             /* log prefix */
    struct mt_complain complain; /* script failures: the thread that runs it */
    struct mt_complain qcomplain; /* full queue: the thread that submits */

    /* the frame of the run in progress */
    const void *frame;
    size_t len;
    int64_t ts;
    size_t n;
    struct mittari_reading out[MT_DECODER_MAX_READINGS];
    struct mittari_tag tags[MT_DECODER_MAX_READINGS][MAX_TAGS];

    /* lock: the queue, the breaker, the statistics, closing */
    pthread_mutex_t lock;
    pthread_cond_t cond; /* a frame was queued, or closing */
    struct qframe *head, *tail;
    size_t qn, qbytes;
    struct breaker br;
    struct mt_decoder_stats st;
    bool started; /* the thread exists (written by the submitting thread only) */
    bool in_hand; /* the thread took a frame and has not reported it yet
                     (set under lock; cleared under host_lock and lock) */
    bool closing; /* mt_decoder_free was called: written under both locks */

    /* host_lock: held by the decoder's thread whenever it calls the host
     * (emit, count, done) for a frame; mt_decoder_free takes it to set
     * closing, so no host call can follow its return */
    pthread_mutex_t host_lock;
    atomic_int refs; /* the owner's, and the thread's while it runs */
};

static const struct mt_decoder_conf default_conf = {
    .limits = {.mem_bytes = MT_DECODER_MEM,
               .instructions = MT_DECODER_INSNS,
               .time_ms = MT_DECODER_TIME_MS},
    .trips = MT_DECODER_TRIPS,
    .trip_window_us = MT_DECODER_TRIP_WINDOW_US,
    .pause_us = MT_DECODER_PAUSE_US,
    .pause_max_us = MT_DECODER_PAUSE_MAX_US,
    .queue_frames = MT_DECODER_QUEUE_FRAMES,
    .queue_bytes = MT_DECODER_QUEUE_BYTES,
};

/* ---- checking what decode returned (inside the protected call) ---- */

/* Raises "file:line: decode returned ...: reading #i: why", where file:line
 * is the definition of decode: the return statement is gone by now. */
static int bad(lua_State *L, struct mittari_decoder *d, size_t i, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int bad(lua_State *L, struct mittari_decoder *d, size_t i, const char *fmt, ...)
{
    char why[256], msg[LUA_IDSIZE + 320];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    if (i)
        snprintf(msg, sizeof(msg), "%s: decode returned a bad reading #%zu: %s", d->where, i, why);
    else
        snprintf(msg, sizeof(msg), "%s: decode returned %s", d->where, why);
    lua_pushstring(L, msg);
    return lua_error(L);
}

/* The string at idx, at most max bytes, no NUL inside. */
static const char *text_field(lua_State *L, struct mittari_decoder *d, size_t i, int idx,
                              const char *name, size_t max)
{
    size_t len;
    if (lua_type(L, idx) != LUA_TSTRING)
        bad(L, d, i, "'%s' must be a string, not a %s", name, luaL_typename(L, idx));
    const char *s = lua_tolstring(L, idx, &len);
    bool nul = strlen(s) != len;
    if (len > max || nul)
        bad(L, d, i, "'%s' is %zu bytes%s, at most %zu without NUL bytes", name, len,
            nul ? " with a NUL byte" : "", max);
    return s;
}

/* A non-negative integer (or an integral float) at idx. neg: a negative
 * Lua integer, kept as its two's complement (string.unpack("I8") gives
 * those for counters past 2^63). */
static uint64_t int_field(lua_State *L, struct mittari_decoder *d, size_t i, int idx,
                          const char *name, bool *neg)
{
    int isint;
    lua_Integer v = lua_tointegerx(L, idx, &isint);
    if (lua_type(L, idx) != LUA_TNUMBER || !isint) {
        double f = lua_type(L, idx) == LUA_TNUMBER ? lua_tonumber(L, idx) : NAN;
        if (!(f >= 0 && f < 18446744073709551616.0 && f == floor(f)))
            bad(L, d, i, "'%s' must be a whole number, not %s", name,
                lua_type(L, idx) == LUA_TNUMBER ? "a fraction or out of range"
                                                : luaL_typename(L, idx));
        *neg = false;
        return (uint64_t)f;
    }
    *neg = v < 0;
    return (uint64_t)v;
}

static int kind_of(const char *s)
{
    static const char *const names[] = {"delta", "gauge", "cumulative", "event"};
    for (int k = 0; k < 4; k++)
        if (strcmp(s, names[k]) == 0)
            return k + MITTARI_KIND_DELTA;
    return 0;
}

static void tags_field(lua_State *L, struct mittari_decoder *d, size_t i, int idx,
                       struct mittari_reading *r)
{
    struct mittari_tag *tags = d->tags[i - 1];
    size_t n = 0;

    if (lua_type(L, idx) != LUA_TTABLE)
        bad(L, d, i, "'tags' must be a table, not a %s", luaL_typename(L, idx));
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (n == MAX_TAGS)
            bad(L, d, i, "more than %d tags", MAX_TAGS);
        if (lua_type(L, -2) != LUA_TSTRING)
            bad(L, d, i, "a tag key must be a string, not a %s", luaL_typename(L, -2));
        tags[n].key = text_field(L, d, i, -2, "tag key", 32);
        tags[n].value = text_field(L, d, i, -1, "tag value", 128);
        n++;
        lua_pop(L, 1);
    }
    r->tags = n ? tags : NULL;
    r->ntags = n;
}

static const char *const fields[] = {"metric", "value",   "kind",  "unit", "device", "counter",
                                     "bits",   "subject", "space", "tags", "ts",     NULL};

struct seen {
    bool value, counter, neg, bits, space;
};

/* One key = value pair of reading #i; the value is on top. */
static void field(lua_State *L, struct mittari_decoder *d, size_t i, const char *k,
                  struct mittari_reading *r, struct seen *s)
{
    int top = lua_gettop(L);
    bool neg;

    if (strcmp(k, "metric") == 0) {
        r->metric = text_field(L, d, i, top, k, 63);
    } else if (strcmp(k, "value") == 0) {
        if (lua_type(L, top) != LUA_TNUMBER)
            bad(L, d, i, "'value' must be a number, not a %s", luaL_typename(L, top));
        r->value = lua_tonumber(L, top);
        if (!isfinite(r->value))
            bad(L, d, i, "'value' must be finite, not %g", r->value);
        s->value = true;
    } else if (strcmp(k, "kind") == 0) {
        r->kind = kind_of(text_field(L, d, i, top, k, 16));
        if (!r->kind)
            bad(L, d, i, "'kind' must be \"delta\", \"gauge\", \"cumulative\" or \"event\"");
    } else if (strcmp(k, "unit") == 0) {
        r->unit = text_field(L, d, i, top, k, 31);
    } else if (strcmp(k, "device") == 0) {
        r->device = text_field(L, d, i, top, k, 63);
    } else if (strcmp(k, "counter") == 0) {
        r->counter = int_field(L, d, i, top, k, &s->neg);
        s->counter = true;
    } else if (strcmp(k, "bits") == 0) {
        uint64_t b = int_field(L, d, i, top, k, &neg);
        if (neg || (b != 16 && b != 32 && b != 64))
            bad(L, d, i, "'bits' must be 16, 32 or 64");
        r->counter_bits = (unsigned)b;
        s->bits = true;
    } else if (strcmp(k, "subject") == 0) {
        if (lua_type(L, top) != LUA_TSTRING)
            bad(L, d, i, "'subject' must be a string, not a %s", luaL_typename(L, top));
        r->subject_id = lua_tolstring(L, top, &r->subject_id_len);
        if (r->subject_id_len == 0 || r->subject_id_len > 64)
            bad(L, d, i, "'subject' is %zu bytes, must be 1 to 64", r->subject_id_len);
    } else if (strcmp(k, "space") == 0) {
        r->subject_space = text_field(L, d, i, top, k, 32);
        s->space = true;
    } else if (strcmp(k, "tags") == 0) {
        tags_field(L, d, i, top, r);
    } else if (strcmp(k, "ts") == 0) {
        r->ts_us = (int64_t)int_field(L, d, i, top, k, &neg);
        if (neg || r->ts_us <= 0)
            bad(L, d, i, "'ts' must be positive microseconds since the epoch");
    } else {
        const char *best = mt_did_you_mean(k, fields, sizeof(fields) / sizeof(fields[0]) - 1);
        bad(L, d, i, "unknown field '%.40s'%s%s%s", k, best ? " (did you mean '" : "",
            best ? best : "", best ? "'?)" : "");
    }
}

/* What the fields must say together, by kind. */
static void reading_complete(lua_State *L, struct mittari_decoder *d, size_t i,
                             struct mittari_reading *r, const struct seen *s)
{
    if (!r->metric)
        bad(L, d, i, "'metric' is missing");
    if (!r->kind)
        bad(L, d, i, "'kind' is missing");
    if (r->kind == MITTARI_KIND_CUMULATIVE) {
        unsigned bits = r->counter_bits ? r->counter_bits : 64;
        if (!s->counter || s->value)
            bad(L, d, i,
                "a cumulative reading has 'counter' (the raw device counter), "
                "not 'value'");
        if ((s->neg && bits != 64) || (bits < 64 && r->counter >> bits))
            bad(L, d, i, "'counter' does not fit in %u bits", bits);
    } else {
        if (s->counter || s->bits)
            bad(L, d, i, "'counter' and 'bits' belong to cumulative readings");
        if (!s->value && r->kind != MITTARI_KIND_EVENT)
            bad(L, d, i, "'value' is missing");
        if (!s->value)
            r->value = 1; /* an event happened once */
    }
    if (s->space && !r->subject_id)
        bad(L, d, i, "'space' without 'subject'");
}

/* Reading #i (1-based) from the table at idx into d->out[i - 1]. Strings
 * are borrowed from the table, which stays on the stack until emitted; raw
 * access only, so no script code runs while the result is checked. */
static void reading(lua_State *L, struct mittari_decoder *d, int idx, size_t i)
{
    struct mittari_reading *r = &d->out[i - 1];
    struct seen s = {0};

    *r = (struct mittari_reading)MITTARI_READING_INIT;
    r->ts_us = d->ts;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            bad(L, d, i, "a field name is a %s, not a string", luaL_typename(L, -2));
        field(L, d, i, lua_tostring(L, -2), r, &s);
        lua_pop(L, 1);
    }
    reading_complete(L, d, i, r, &s);
}

static void convert(lua_State *L, struct mittari_decoder *d, int idx)
{
    int t = lua_type(L, idx);

    d->n = 0;
    if (t == LUA_TNIL)
        return;
    if (t != LUA_TTABLE)
        bad(L, d, 0, "a %s; return nil, a reading or a list of readings", luaL_typename(L, idx));
    lua_Unsigned n = lua_rawlen(L, idx);
    if (n == 0) {
        lua_pushnil(L);
        if (!lua_next(L, idx))
            return; /* {}: an empty list */
        lua_pop(L, 2);
        reading(L, d, idx, 1);
        d->n = 1;
        return;
    }
    if (n > MT_DECODER_MAX_READINGS)
        bad(L, d, 0, "%llu readings for one frame; at most %d", (unsigned long long)n,
            MT_DECODER_MAX_READINGS);
    for (lua_Unsigned i = 1; i <= n; i++) {
        if (lua_rawgeti(L, idx, (lua_Integer)i) != LUA_TTABLE)
            bad(L, d, (size_t)i, "it is a %s, not a table", luaL_typename(L, -1));
        reading(L, d, lua_gettop(L), (size_t)i);
        lua_pop(L, 1); /* the list keeps it alive */
    }
    d->n = (size_t)n;
}

/* Protected: decode(frame, ts), its result checked into d->out. Returns the
 * result so that it stays on the stack, and with it every string the
 * readings point into, until they are emitted. */
static int run_decode(lua_State *L)
{
    struct mittari_decoder *d = lua_touserdata(L, 1);

    lua_rawgeti(L, LUA_REGISTRYINDEX, d->ref);
    lua_pushlstring(L, d->frame, d->len);
    lua_pushinteger(L, d->ts);
    lua_call(L, 2, 1);
    convert(L, d, 2);
    return 1;
}

static int find_decode(lua_State *L)
{
    struct mittari_decoder *d = lua_touserdata(L, 1);

    lua_pushglobaltable(L);
    if (lua_getfield(L, -1, "decode") != LUA_TFUNCTION)
        return luaL_error(L, "defines no function decode(frame, ts) (found a %s)",
                          luaL_typename(L, -1));
    mt_luabox_funcwhere(L, -1, d->where, sizeof(d->where));
    d->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

/* A sandbox with the file loaded and decode found. 0 or a code with err. */
static int open_box(struct mittari_decoder *d, const char *path, const struct mt_luabox_limits *lim,
                    char *err, size_t errlen)
{
    int rc = mt_luabox_new(&d->box, lim ? lim : &default_conf.limits);
    if (rc) {
        snprintf(err, errlen, "%s: cannot create a Lua state: %s", path, strerror(-rc));
        return rc;
    }
    rc = mt_luabox_load_file(d->box, path, err, errlen);
    if (rc)
        return rc == -ENOEXEC || rc == -EINVAL || rc == -ETIMEDOUT || rc == -ENOMEM
                   ? MITTARI_ECONFIG
                   : rc;
    rc = mt_luabox_pcall(d->box, find_decode, d, 0, err, errlen);
    if (rc) {
        char why[256];
        snprintf(why, sizeof(why), "%s", err);
        snprintf(err, errlen, "%s: %s", path, why);
        return MITTARI_ECONFIG;
    }
    return 0;
}

static void free_box(struct mittari_decoder *d)
{
    mt_luabox_free(d->box);
    d->box = NULL;
}

/* The conf with every 0 replaced by its default. */
static struct mt_decoder_conf conf_or_default(const struct mt_decoder_conf *c)
{
    struct mt_decoder_conf r = c ? *c : default_conf;
    const struct mt_luabox_limits *dl = &default_conf.limits;

    if (!r.limits.mem_bytes)
        r.limits.mem_bytes = dl->mem_bytes;
    if (!r.limits.instructions)
        r.limits.instructions = dl->instructions;
    if (!r.limits.time_ms)
        r.limits.time_ms = dl->time_ms;
    if (!r.trips || r.trips > MT_DECODER_TRIPS)
        r.trips = MT_DECODER_TRIPS;
    if (r.trip_window_us <= 0)
        r.trip_window_us = default_conf.trip_window_us;
    if (r.pause_us <= 0)
        r.pause_us = default_conf.pause_us;
    if (r.pause_max_us < r.pause_us)
        r.pause_max_us =
            r.pause_us > default_conf.pause_max_us ? r.pause_us : default_conf.pause_max_us;
    if (!r.queue_frames)
        r.queue_frames = default_conf.queue_frames;
    if (!r.queue_bytes)
        r.queue_bytes = default_conf.queue_bytes;
    return r;
}

static void wipe_frame(struct qframe *f)
{
    explicit_bzero(f->data, f->len);
    free(f);
}

/* Frees a list of frames; how many there were. */
static size_t free_frames(struct qframe *f)
{
    size_t n = 0;
    while (f) {
        struct qframe *next = f->next;
        wipe_frame(f);
        f = next;
        n++;
    }
    return n;
}

/* Under lock: takes the queue out (the caller frees it outside). */
static struct qframe *take_queue(struct mittari_decoder *d)
{
    struct qframe *q = d->head;
    d->head = d->tail = NULL;
    d->qn = d->qbytes = 0;
    return q;
}

static void destroy(struct mittari_decoder *d)
{
    free_frames(take_queue(d));
    if (d->box)
        mt_luabox_free(d->box);
    pthread_mutex_destroy(&d->lock);
    pthread_mutex_destroy(&d->host_lock);
    pthread_cond_destroy(&d->cond);
    free(d);
}

static void unref(struct mittari_decoder *d)
{
    if (atomic_fetch_sub(&d->refs, 1) == 1)
        destroy(d);
}

int mt_decoder_open_conf(const struct mittari_host *host, struct mittari_ctx *ctx, const char *path,
                         const struct mt_decoder_conf *conf, struct mittari_decoder **out)
{
    struct mittari_decoder *d;
    char err[512];
    int rc;

    *out = NULL;
    if (!host || !path)
        return -EINVAL;
    d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->host = host;
    d->ctx = ctx;
    d->conf = conf_or_default(conf);
    d->br.pause_us = d->conf.pause_us;
    atomic_init(&d->refs, 1);
    pthread_mutex_init(&d->lock, NULL);
    pthread_mutex_init(&d->host_lock, NULL);
    pthread_cond_init(&d->cond, NULL);
    const char *name = host->instance_name ? host->instance_name(ctx) : NULL;
    snprintf(d->module, sizeof(d->module), "decoder %s", name ? name : "?");
    rc = open_box(d, path, &d->conf.limits, err, sizeof(err));
    if (rc) {
        if (host->log)
            host->log(ctx, MITTARI_LOG_ERR, "cannot load decoder: %s", err);
        destroy(d);
        return rc;
    }
    *out = d;
    return 0;
}

int mt_decoder_open(const struct mittari_host *host, struct mittari_ctx *ctx, const char *path,
                    const struct mt_luabox_limits *lim, struct mittari_decoder **out)
{
    struct mt_decoder_conf c = default_conf;
    if (lim)
        c.limits = *lim;
    return mt_decoder_open_conf(host, ctx, path, &c, out);
}

int mt_decoder_load(struct mittari_ctx *ctx, const char *path, struct mittari_decoder **out)
{
    return mt_decoder_open(&mt_host_api, ctx, path, NULL, out);
}

int mt_decoder_check_file(const char *path, char *err, size_t errlen)
{
    struct mittari_decoder *d = calloc(1, sizeof(*d));
    int rc;

    if (!d) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    rc = open_box(d, path, NULL, err, errlen);
    free_box(d);
    free(d);
    return rc;
}

/* ---- the circuit breaker ---- */

static int64_t now_us(const struct mittari_decoder *d)
{
    return d->conf.clock ? d->conf.clock(d->conf.clock_arg) : mt_mono_us();
}

enum br_event { BR_NONE, BR_PAUSED, BR_RESUMED };

/* Under lock, before a frame runs: true if it is to be skipped (paused).
 * The first frame after a pause is the trial. */
static bool paused(struct mittari_decoder *d, int64_t now)
{
    struct breaker *b = &d->br;

    if (!b->until)
        return false;
    if (now < b->until) {
        b->skipped++;
        d->st.skipped++;
        return true;
    }
    b->until = 0;
    b->trial = true;
    return false;
}

/* Under lock, after a frame ran with the script's result rc. A limit hit
 * (-ETIMEDOUT: the instruction budget or the time limit) that makes
 * `trips` within the window, or any during a trial, opens the breaker:
 * the frames queued are dropped into *flushed (freed by the caller). */
static int after_run(struct mittari_decoder *d, int rc, int64_t now, struct qframe **flushed)
{
    struct breaker *b = &d->br;
    size_t trips = d->conf.trips;

    if (rc != -ETIMEDOUT) {
        if (!b->trial)
            return BR_NONE;
        b->trial = false;
        b->pause_us = d->conf.pause_us;
        b->nhits = 0;
        return BR_RESUMED;
    }
    if (!b->trial) {
        b->hits[b->nhits % trips] = now;
        b->nhits++;
        /* hits[nhits % trips] is now the oldest of the last `trips` */
        if (b->nhits < trips || now - b->hits[b->nhits % trips] > d->conf.trip_window_us)
            return BR_NONE;
        b->skipped = 0; /* a new series of pauses */
    }
    b->trial = false;
    b->nhits = 0;
    b->until = now + b->pause_us;
    b->pause_us = b->pause_us > d->conf.pause_max_us / 2 ? d->conf.pause_max_us : 2 * b->pause_us;
    b->skipped += d->qn;
    d->st.skipped += d->qn;
    d->st.pauses++;
    *flushed = take_queue(d);
    return BR_PAUSED;
}

/* ---- running ---- */

static void complain(struct mittari_decoder *d, const char *msg)
{
    mt_complain(&d->complain, MT_WARNING, d->module, MT_DECODER_COMPLAIN_US, "%s", msg);
}

static void count(struct mittari_decoder *d, const char *counter, uint64_t n)
{
    if (n && d->host->count)
        d->host->count(d->ctx, NULL, counter, n);
}

/* Emits d->out[0..n); the result table is still on the stack. */
static int emit_all(struct mittari_decoder *d, uint64_t *emitted, uint64_t *refused)
{
    for (size_t i = 0; i < d->n; i++) {
        int rc = d->host->emit(d->ctx, &d->out[i]);
        if (rc == MITTARI_EREADING) {
            (*refused)++;
            continue;
        }
        if (rc)
            return rc; /* queue full or stopped: the rest would fail alike */
        (*emitted)++;
    }
    if (!*refused)
        return (int)*emitted;
    char msg[LUA_IDSIZE + 160];
    snprintf(msg, sizeof(msg),
             "%s: the agent refused %llu of the %zu readings decode returned "
             "(the reason is logged as 'reading refused')",
             d->where, (unsigned long long)*refused, d->n);
    complain(d, msg); /* emit counted them as invalid */
    return MITTARI_EREADING;
}

static void log_breaker(struct mittari_decoder *d, int ev, int64_t pause_us, uint64_t skipped,
                        const char *err)
{
    if (ev == BR_PAUSED)
        mt_diag(MT_WARNING, d->module,
                "paused for %lld s: its calls keep hitting a limit (the last: %s); frames are "
                "skipped and counted as decoder_skipped until then",
                (long long)(pause_us / 1000000), err);
    else if (ev == BR_RESUMED)
        mt_diag(MT_NOTICE, d->module, "resumed after a pause: %llu frames were skipped",
                (unsigned long long)skipped);
}

/* Runs decode on one frame, emits what it returned and accounts for it
 * (statistics, breaker, counters, done). The caller's thread runs the
 * script: the decoder's own thread, or decoder_run's caller. */
static int process(struct mittari_decoder *d, const void *frame, size_t len, int64_t ts,
                   mittari_decoded_cb done, void *arg)
{
    char err[512];
    uint64_t emitted = 0, refused = 0;
    struct qframe *flushed = NULL;
    int result = -ECANCELED;

    d->frame = frame ? frame : "";
    d->len = len;
    d->ts = ts;
    d->n = 0;
    int rc = mt_luabox_pcall(d->box, run_decode, d, 1, err, sizeof(err));

    /* From here to the end of the report nothing can slip in between:
     * mt_decoder_free either marked the decoder closing before (and
     * counted this frame) or waits until the report is done. */
    pthread_mutex_lock(&d->host_lock);
    pthread_mutex_lock(&d->lock);
    bool closing = d->closing;
    d->in_hand = false;
    d->st.runs++;
    d->st.errors += rc != 0;
    d->st.budget += rc == -ETIMEDOUT;
    d->st.memory += rc == -ENOMEM;
    int64_t now = now_us(d);
    int ev = closing ? BR_NONE : after_run(d, rc, now, &flushed);
    int64_t pause_us = d->br.until ? d->br.until - now : 0;
    uint64_t skipped = d->br.skipped;
    size_t nflushed = 0;
    for (struct qframe *f = flushed; f; f = f->next)
        nflushed++;
    pthread_mutex_unlock(&d->lock);
    if (!closing) {
        if (rc) {
            count(d, "decoder_errors", 1);
            complain(d, err);
            result = MITTARI_EREADING;
        } else {
            result = emit_all(d, &emitted, &refused);
        }
        if (done) { /* plugin code, on the decoder's thread */
            const struct mt_crash_who *who =
                d->host == &mt_host_api && d->ctx ? mt_input_who(d->ctx) : NULL;
            struct mt_crash_mark m = mt_crash_enter(who, "decoder done callback");
            done(arg, result);
            mt_crash_leave(m);
        }
        count(d, "decoder_pauses", ev == BR_PAUSED);
        count(d, "decoder_skipped", nflushed);
        if (ev != BR_NONE)
            log_breaker(d, ev, pause_us + 999999, skipped, err);
    }
    pthread_mutex_unlock(&d->host_lock);
    lua_settop(mt_luabox_state(d->box), 0); /* the readings' strings were on it */

    pthread_mutex_lock(&d->lock);
    d->st.readings += emitted;
    d->st.refused += refused;
    pthread_mutex_unlock(&d->lock);
    free_frames(flushed);
    return result;
}

int mt_decoder_run(struct mittari_decoder *d, const void *frame, size_t len, int64_t ts_us)
{
    if (!d || (!frame && len))
        return -EINVAL;
    pthread_mutex_lock(&d->lock);
    bool skip = paused(d, now_us(d));
    pthread_mutex_unlock(&d->lock);
    if (skip) {
        count(d, "decoder_skipped", 1);
        return MITTARI_EREADING;
    }
    return process(d, frame, len, ts_us, NULL, NULL);
}

/* ---- the decoder's own thread (decoder_submit) ---- */

static void *thread_main(void *arg)
{
    struct mittari_decoder *d = arg;

    pthread_setname_np(pthread_self(), "mt-decoder");
    pthread_mutex_lock(&d->lock);
    for (;;) {
        while (!d->closing && !d->head)
            pthread_cond_wait(&d->cond, &d->lock);
        if (d->closing)
            break;
        struct qframe *f = d->head;
        d->head = f->next;
        if (!d->head)
            d->tail = NULL;
        d->qn--;
        d->qbytes -= f->len;
        d->in_hand = true;
        pthread_mutex_unlock(&d->lock);
        process(d, f->data, f->len, f->ts, f->done, f->arg);
        wipe_frame(f);
        pthread_mutex_lock(&d->lock);
    }
    pthread_mutex_unlock(&d->lock);
    unref(d);
    return NULL;
}

/* Signals stay with the loop thread (libuv's handlers): the thread blocks
 * them all but the fatal ones its own faults raise, which must reach the
 * crash report (crash.h): a fault with its signal blocked kills the
 * process without a word. */
static int start_thread(struct mittari_decoder *d)
{
    sigset_t all, old;
    pthread_t t;

    sigfillset(&all);
    sigdelset(&all, SIGSEGV);
    sigdelset(&all, SIGBUS);
    sigdelset(&all, SIGFPE);
    sigdelset(&all, SIGILL);
    sigdelset(&all, SIGABRT);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    atomic_fetch_add(&d->refs, 1);
    int rc = pthread_create(&t, NULL, thread_main, d);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc) {
        atomic_fetch_sub(&d->refs, 1);
        return -rc;
    }
    pthread_detach(t);
    d->started = true;
    return 0;
}

static int refuse(struct mittari_decoder *d, int rc, const char *why)
{
    count(d, "decoder_skipped", 1);
    if (why)
        mt_complain(&d->qcomplain, MT_WARNING, d->module, MT_DECODER_COMPLAIN_US,
                    "frame skipped: %s (counted as decoder_skipped)", why);
    return rc;
}

int mt_decoder_submit(struct mittari_decoder *d, const void *frame, size_t len, int64_t ts_us,
                      mittari_decoded_cb done, void *arg)
{
    struct qframe *f;
    int rc = 0;

    if (!d || (!frame && len) || d->closing)
        return -EINVAL;
    f = malloc(sizeof(*f) + len);
    if (!f)
        return refuse(d, -ENOMEM, "out of memory");
    *f = (struct qframe){.ts = ts_us, .done = done, .arg = arg, .len = len};
    if (len)
        memcpy(f->data, frame, len);
    if (!d->started && (rc = start_thread(d)) != 0) {
        wipe_frame(f);
        return refuse(d, rc, "cannot start the decoder's thread");
    }
    pthread_mutex_lock(&d->lock);
    if (paused(d, now_us(d)))
        rc = -EBUSY;
    else if (d->qn >= d->conf.queue_frames || len > d->conf.queue_bytes - d->qbytes)
        rc = -ENOBUFS;
    if (rc == -ENOBUFS)
        d->st.skipped++;
    if (!rc) {
        if (d->tail)
            d->tail->next = f;
        else
            d->head = f;
        d->tail = f;
        d->qn++;
        d->qbytes += len;
        pthread_cond_signal(&d->cond);
    }
    size_t qn = d->qn;
    pthread_mutex_unlock(&d->lock);
    if (!rc)
        return 0;
    wipe_frame(f);
    if (rc == -EBUSY) /* the pause was logged when it began */
        return refuse(d, rc, NULL);
    char why[96];
    snprintf(why, sizeof(why),
             "the decoder's queue is full (%zu frames): it is slower than the "
             "device",
             qn);
    return refuse(d, rc, why);
}

void mt_decoder_free(struct mittari_decoder *d)
{
    if (!d)
        return;
    pthread_mutex_lock(&d->host_lock);
    pthread_mutex_lock(&d->lock);
    d->closing = true;
    /* a frame the thread holds will not be reported now: skipped too */
    size_t n = d->in_hand + d->qn;
    d->st.skipped += n;
    struct qframe *q = take_queue(d);
    pthread_cond_signal(&d->cond);
    pthread_mutex_unlock(&d->lock);
    pthread_mutex_unlock(&d->host_lock);
    free_frames(q);
    if (n) {
        count(d, "decoder_skipped", n);
        mt_diag(MT_WARNING, d->module,
                "%zu frames were still waiting for the decoder at stop: not decoded "
                "(counted as decoder_skipped)",
                n);
    }
    /* the thread (if any) lets go at its script's next budget check and
     * frees the decoder itself; nothing here waits for it */
    if (d->started)
        mt_luabox_interrupt(d->box);
    unref(d);
}

void mt_decoder_get_stats(struct mittari_decoder *d, struct mt_decoder_stats *st)
{
    pthread_mutex_lock(&d->lock);
    *st = d->st;
    pthread_mutex_unlock(&d->lock);
}
