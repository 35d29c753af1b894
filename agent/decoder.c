#include "decoder.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "diag.h"
#include "input.h"
#include "util.h"

#define MAX_TAGS 8

struct mittari_decoder {
    const struct mittari_host *host;
    struct mittari_ctx *ctx;
    struct mt_luabox *box;
    int ref;                     /* registry reference to decode */
    char where[LUA_IDSIZE + 16]; /* "file:line" where decode is defined */
    char module[96];             /* log prefix */
    struct mt_complain complain;
    struct mt_decoder_stats st;

    /* the frame of the run in progress */
    const void *frame;
    size_t len;
    int64_t ts;
    size_t n;
    struct mittari_reading out[MT_DECODER_MAX_READINGS];
    struct mittari_tag tags[MT_DECODER_MAX_READINGS][MAX_TAGS];
};

static const struct mt_luabox_limits default_limits = {
    .mem_bytes = MT_DECODER_MEM,
    .instructions = MT_DECODER_INSNS,
    .time_ms = MT_DECODER_TIME_MS,
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

/* ---- loading ---- */

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
    int rc = mt_luabox_new(&d->box, lim ? lim : &default_limits);
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

int mt_decoder_open(const struct mittari_host *host, struct mittari_ctx *ctx, const char *path,
                    const struct mt_luabox_limits *lim, struct mittari_decoder **out)
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
    const char *name = host->instance_name ? host->instance_name(ctx) : NULL;
    snprintf(d->module, sizeof(d->module), "decoder %s", name ? name : "?");
    rc = open_box(d, path, lim, err, sizeof(err));
    if (rc) {
        if (host->log)
            host->log(ctx, MITTARI_LOG_ERR, "cannot load decoder: %s", err);
        free_box(d);
        free(d);
        return rc;
    }
    *out = d;
    return 0;
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

void mt_decoder_free(struct mittari_decoder *d)
{
    if (!d)
        return;
    free_box(d);
    free(d);
}

/* ---- running ---- */

static void complain(struct mittari_decoder *d, const char *msg)
{
    mt_complain(&d->complain, MT_WARNING, d->module, MT_DECODER_COMPLAIN_US, "%s", msg);
}

static void failed(struct mittari_decoder *d, int rc, const char *err)
{
    d->st.errors++;
    d->st.budget += rc == -ETIMEDOUT;
    d->st.memory += rc == -ENOMEM;
    if (d->host->count)
        d->host->count(d->ctx, NULL, "decoder_errors", 1);
    complain(d, err);
}

/* Emits d->out[0..n); the result table is still on the stack. */
static int emit_all(struct mittari_decoder *d)
{
    int emitted = 0, refused = 0;

    for (size_t i = 0; i < d->n; i++) {
        int rc = d->host->emit(d->ctx, &d->out[i]);
        if (rc == MITTARI_EREADING) {
            refused++;
            continue;
        }
        if (rc)
            return rc; /* queue full or stopped: the rest would fail alike */
        emitted++;
    }
    d->st.readings += (uint64_t)emitted;
    if (!refused)
        return emitted;
    d->st.refused += (uint64_t)refused;
    char msg[LUA_IDSIZE + 160];
    snprintf(msg, sizeof(msg),
             "%s: the agent refused %d of the %zu readings decode returned "
             "(the reason is logged as 'reading refused')",
             d->where, refused, d->n);
    complain(d, msg); /* emit counted them as invalid */
    return MITTARI_EREADING;
}

int mt_decoder_run(struct mittari_decoder *d, const void *frame, size_t len, int64_t ts_us)
{
    char err[512];
    int rc;

    if (!d || (!frame && len))
        return -EINVAL;
    d->frame = frame ? frame : "";
    d->len = len;
    d->ts = ts_us;
    d->n = 0;
    d->st.runs++;
    rc = mt_luabox_pcall(d->box, run_decode, d, 1, err, sizeof(err));
    if (rc) {
        failed(d, rc, err);
        return MITTARI_EREADING;
    }
    rc = emit_all(d);
    lua_settop(mt_luabox_state(d->box), 0);
    return rc;
}

void mt_decoder_get_stats(const struct mittari_decoder *d, struct mt_decoder_stats *st)
{
    *st = d->st;
}
