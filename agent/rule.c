#include "rule.h"

#include <errno.h>
#include <fnmatch.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <mittari/mittari.h>

#include "hll.h"
#include "jsonin.h"
#include "luabox.h"
#include "ruleagg.h"
#include "rulewin.h"

#define STATE_MAGIC 0x4c52544dU /* "MTRL" */
#define STATE_FORMAT 1
#define MAX_TAGS 8
#define STATE_DEPTH 32

/* What the rule knows of a series it has seen: its tags with the
 * configuration's added (the reading's own win), parsed once. */
struct sinfo {
    bool ready;
    size_t ntags;
    char *keys[MAX_TAGS + 8], *vals[MAX_TAGS + 8];
};

/* A derived reading made by emit{} or returned by on_reading, held until
 * its call succeeded. Strings live in the call's arena. */
struct pending {
    struct mt_series_info s;
    int64_t ts;
    double value;
    unsigned flags, min_count;
    const char *subject;
};

struct mt_rule {
    char *name, *site, *script;
    struct mt_rule_conf c;
    struct mt_luabox *box;
    struct mt_aggs *aggs;
    int ref_on_reading; /* LUA_NOREF: every reading goes to every window */
    int ref_window_mt;
    int ref_keys; /* registry: the K_* names */
    int64_t state_version;
    bool loading;
    /* per window, where each of its `by` comes from: BY_SITE, BY_DEVICE, or
     * a tag (decided once, not per reading) */
    uint8_t bykind[MT_AGG_MAX_DEFS][MT_AGG_MAX_BY];

    /* the call in progress */
    const struct mt_row *row;
    const struct mt_series_info *series;
    struct pending *pend;
    size_t npend, cappend;
    struct mt_arena arena;

    struct sinfo *si;
    size_t nsi;
    int *mtref; /* per series id: registry ref of its readings' metatable, 0 = none yet */
    size_t nmtref;

    struct mt_rec *out;
    size_t nout, capout;
    struct mt_rule_stats st;
};

static char tags_marker; /* its address marks the metatables of read-only tag tables */

enum { BY_TAG, BY_SITE, BY_DEVICE };

/* The field names a reading's table is built and read with, made Lua
 * strings once (lua_setfield would look each up by its C text per call). */
enum { K_TS = 1, K_VALUE, K_SUBJECT, K_SITE, K_DEVICE, K_TAGS, K_COUNT };
static const char *const key_names[K_COUNT] = {NULL,   "ts",     "value", "subject",
                                               "site", "device", "tags"};

/* luaL_error with the C library's format (lua_pushfstring knows few
 * conversions): "file:line: message" of the calling script line. */
static int lerr(lua_State *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int lerr(lua_State *L, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    luaL_where(L, 1);
    lua_pushstring(L, msg);
    lua_concat(L, 2);
    return lua_error(L);
}

static struct mt_rule *rule_of(lua_State *L)
{
    return lua_touserdata(L, lua_upvalueindex(1));
}

/* ---- output ---- */

static int push_out(struct mt_rule *r, const struct mt_rec *rec)
{
    if (r->nout == r->capout) {
        size_t n = r->capout ? r->capout * 2 : 64;
        struct mt_rec *v = realloc(r->out, n * sizeof(*v));
        if (!v)
            return -ENOMEM;
        r->out = v;
        r->capout = n;
    }
    r->out[r->nout++] = *rec;
    r->st.emitted++;
    return 0;
}

static int intern(struct mt_rule *r, struct mt_series_info *s, uint32_t *id)
{
    s->origin = r->name;
    s->bits = 0;
    return mt_series_intern(r->c.reg, s, id);
}

/* Figures of the windows: interned (the id cached by the window) and
 * buffered. */
static int on_figure(void *arg, const struct mt_figure *f)
{
    struct mt_rule *r = arg;
    if (!*f->series) {
        struct mt_series_info s = {.site = f->site ? f->site : r->site,
                                   .device = f->device ? f->device : r->name,
                                   .metric = f->metric,
                                   .unit = f->unit,
                                   .kind = f->kind,
                                   .tags = f->tags_json};
        int rc = intern(r, &s, f->series);
        if (rc)
            return rc;
    }
    struct mt_rec rec = {.ts = f->ts,
                         .series = *f->series,
                         .kind = (uint8_t)f->kind,
                         .flags = (uint8_t)((f->min_count ? MT_RF_SUPPRESSED : 0) |
                                            (f->revision << 1)),
                         .min_count = (uint8_t)f->min_count,
                         .value = f->value};
    return push_out(r, &rec);
}

const struct mt_rec *mt_rule_out(const struct mt_rule *r, size_t *n)
{
    *n = r->nout;
    return r->out;
}

void mt_rule_out_clear(struct mt_rule *r)
{
    r->nout = 0;
    if (r->capout > 65536) { /* a burst: give the memory back */
        free(r->out);
        r->out = NULL;
        r->capout = 0;
    }
}

/* ---- series the rule sees ---- */

static bool ident(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '.' || *s == ':' || *s == '-'))
            return false;
    return true;
}

static bool text(const char *s, size_t len, size_t max)
{
    if (len == 0 || len > max || strlen(s) != len)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

struct tagread {
    struct sinfo *si;
    bool bad;
};

static int tag_member(void *arg, const char *key, const struct mt_json_val *v)
{
    struct tagread *t = arg;
    if (v->type != MT_JSON_STR || t->si->ntags >= MAX_TAGS) {
        t->bad = true;
        return 0;
    }
    t->si->keys[t->si->ntags] = strdup(key);
    t->si->vals[t->si->ntags] = strdup(v->s);
    if (t->si->keys[t->si->ntags] && t->si->vals[t->si->ntags])
        t->si->ntags++;
    return 0;
}

static const char *si_get(const struct sinfo *si, const char *key)
{
    for (size_t i = 0; i < si->ntags; i++)
        if (strcmp(si->keys[i], key) == 0)
            return si->vals[i];
    return NULL;
}

static void si_add(struct sinfo *si, const char *k, const char *v)
{
    if (si_get(si, k) || si->ntags >= MAX_TAGS + 8)
        return; /* the reading's own tag wins */
    si->keys[si->ntags] = strdup(k);
    si->vals[si->ntags] = strdup(v);
    if (si->keys[si->ntags] && si->vals[si->ntags])
        si->ntags++;
}

static struct sinfo *series_info(struct mt_rule *r, const struct mt_series_info *s)
{
    if (s->id >= r->nsi) {
        size_t n = r->nsi ? r->nsi : 64;
        while (n <= s->id)
            n *= 2;
        struct sinfo *v = realloc(r->si, n * sizeof(*v));
        if (!v)
            return NULL;
        memset(v + r->nsi, 0, (n - r->nsi) * sizeof(*v));
        r->si = v;
        r->nsi = n;
    }
    struct sinfo *si = &r->si[s->id];
    if (si->ready)
        return si;
    if (s->tags && s->tags[0]) {
        struct tagread t = {si, false};
        char err[80];
        mt_json_object(s->tags, strlen(s->tags), tag_member, &t, err, sizeof(err));
    }
    char sd[160];
    snprintf(sd, sizeof(sd), "%s/%s", s->site, s->device);
    for (size_t i = 0; i < r->c.ntags; i++) {
        const struct mt_rule_tag *t = &r->c.tags[i];
        if (t->value) {
            si_add(si, t->key, t->value);
            continue;
        }
        for (size_t k = 0; k < t->n; k++)
            if (fnmatch(t->globs[k], sd, 0) == 0) {
                si_add(si, t->key, t->values[k]);
                break;
            }
    }
    si->ready = true;
    return si;
}

static void sinfo_free(struct sinfo *si)
{
    for (size_t i = 0; i < si->ntags; i++) {
        free(si->keys[i]);
        free(si->vals[i]);
    }
}

static const char *kind_name(int kind)
{
    switch (kind) {
    case MITTARI_KIND_GAUGE: return "gauge";
    case MITTARI_KIND_EVENT: return "event";
    default: return "delta";
    }
}

static int kind_parse(const char *s)
{
    if (strcmp(s, "delta") == 0)
        return MITTARI_KIND_DELTA;
    if (strcmp(s, "gauge") == 0)
        return MITTARI_KIND_GAUGE;
    if (strcmp(s, "event") == 0)
        return MITTARI_KIND_EVENT;
    return 0;
}

/* ---- readings as Lua tables ---- */

/* Read-only tag tables: writes are refused, pairs() walks the real table
 * without handing it out. */
static int tags_newindex(lua_State *L)
{
    return lerr(L, "the tags of a reading are read-only; give a new table: "
                         "r.tags = {service = \"library\"}");
}

static int tags_next(lua_State *L)
{
    lua_settop(L, 2);
    if (lua_next(L, lua_upvalueindex(1)))
        return 2;
    lua_pushnil(L);
    return 1;
}

static int tags_pairs(lua_State *L)
{
    lua_getmetatable(L, 1);
    lua_getfield(L, -1, "__index");
    lua_pushcclosure(L, tags_next, 1);
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}

/* Pushes a read-only table of the tags. */
static void push_tags(lua_State *L, const struct sinfo *si)
{
    lua_createtable(L, 0, 0);                     /* the proxy */
    lua_createtable(L, 0, 6);                     /* its metatable */
    lua_createtable(L, 0, (int)si->ntags);        /* the real tags */
    for (size_t i = 0; i < si->ntags; i++) {
        lua_pushstring(L, si->vals[i]);
        lua_setfield(L, -2, si->keys[i]);
    }
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, tags_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, tags_pairs);
    lua_setfield(L, -2, "__pairs");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pushlightuserdata(L, &tags_marker);
    lua_pushboolean(L, 1);
    lua_rawset(L, -3);
    lua_setmetatable(L, -2);
}

/* Pushes the metatable of s's readings: __index holds the series' fields,
 * so a reading table itself holds only ts, value and subject. */
static void push_series_mt(lua_State *L, struct mt_rule *r, const struct mt_series_info *s)
{
    if (s->id < r->nmtref && r->mtref[s->id]) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, r->mtref[s->id]);
        return;
    }
    if (s->id >= r->nmtref) {
        size_t n = r->nmtref ? r->nmtref : 64;
        while (n <= s->id)
            n *= 2;
        int *v = realloc(r->mtref, n * sizeof(*v));
        if (!v)
            lerr(L, "out of memory");
        memset(v + r->nmtref, 0, (n - r->nmtref) * sizeof(*v));
        r->mtref = v;
        r->nmtref = n;
    }
    struct sinfo *si = series_info(r, s);
    if (!si)
        lerr(L, "out of memory");
    lua_createtable(L, 0, 2);          /* the metatable */
    lua_createtable(L, 0, 7);          /* the series' fields */
    lua_pushstring(L, s->site);
    lua_setfield(L, -2, "site");
    lua_pushstring(L, s->device);
    lua_setfield(L, -2, "device");
    lua_pushstring(L, s->metric);
    lua_setfield(L, -2, "metric");
    lua_pushstring(L, s->unit ? s->unit : "");
    lua_setfield(L, -2, "unit");
    lua_pushstring(L, kind_name(s->kind));
    lua_setfield(L, -2, "kind");
    if (s->origin && s->origin[0]) {
        lua_pushstring(L, s->origin);
        lua_setfield(L, -2, "origin");
    }
    push_tags(L, si);
    lua_setfield(L, -2, "tags");
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pushvalue(L, -1);
    r->mtref[s->id] = luaL_ref(L, LUA_REGISTRYINDEX);
}

static void push_value(lua_State *L, double v)
{
    /* whole numbers as integers: `print(r.value)` shows 3, not 3.0 */
    if (v == floor(v) && fabs(v) < 9007199254740992.0)
        lua_pushinteger(L, (lua_Integer)v);
    else
        lua_pushnumber(L, v);
}

/* k: the stack index of the K_* names table */
static void push_reading(lua_State *L, struct mt_rule *r, int k, const struct mt_row *row,
                         const struct mt_series_info *s)
{
    lua_createtable(L, 0, 3);
    lua_rawgeti(L, k, K_TS);
    lua_pushinteger(L, row->ts);
    lua_rawset(L, -3);
    lua_rawgeti(L, k, K_VALUE);
    push_value(L, row->value);
    lua_rawset(L, -3);
    if (row->subject[0]) {
        lua_rawgeti(L, k, K_SUBJECT);
        lua_pushstring(L, row->subject);
        lua_rawset(L, -3);
    }
    push_series_mt(L, r, s);
    lua_setmetatable(L, -2);
}

/* ---- reading fields back (emit, returned readings, add) ---- */

static int64_t get_ts(lua_State *L, int idx, const char *what)
{
    int isint;
    lua_Integer ts = lua_tointegerx(L, idx, &isint);
    if (!isint || ts <= 0)
        lerr(L, "%s: 'ts' must be a positive integer (microseconds since 1970)", what);
    return ts;
}

/* The tag table at idx (a reading's read-only one or a plain one) ->
 * canonical JSON in the call's arena. */
static const char *tags_of(lua_State *L, struct mt_rule *r, int idx, const char *what)
{
    struct {
        const char *k, *v;
    } kv[MAX_TAGS];
    size_t n = 0;
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) != LUA_TTABLE)
        lerr(L, "%s: 'tags' must be a table, not a %s", what, luaL_typename(L, idx));
    if (lua_getmetatable(L, idx)) {
        lua_pushlightuserdata(L, &tags_marker);
        bool ours = lua_rawget(L, -2) == LUA_TBOOLEAN;
        lua_pop(L, 1);
        if (!ours)
            lerr(L, "%s: 'tags' must be a plain table", what);
        lua_getfield(L, -1, "__index");
        lua_replace(L, idx); /* read the real tags */
        lua_pop(L, 1);
    }
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (n == MAX_TAGS)
            lerr(L, "%s: more than %d tags", what, MAX_TAGS);
        size_t kl, vl;
        if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
            lerr(L, "%s: tags are string keys with string values", what);
        const char *k = lua_tolstring(L, -2, &kl), *v = lua_tolstring(L, -1, &vl);
        if (!ident(k, 32) || !text(v, vl, 128))
            lerr(L, "%s: tag '%.32s' must have a name of at most 32 of A-Z a-z 0-9 _ . : - "
                          "and a text value of 1 to 128 bytes", what, k);
        size_t i = n++;
        while (i > 0 && strcmp(kv[i - 1].k, k) > 0) {
            kv[i] = kv[i - 1];
            i--;
        }
        kv[i].k = k;
        kv[i].v = v;
        lua_pop(L, 1);
    }
    struct mt_buf b = {0};
    int rc = mt_buf_addc(&b, '{');
    for (size_t i = 0; i < n; i++) {
        if (i)
            rc |= mt_buf_addc(&b, ',');
        rc |= mt_buf_json_str(&b, kv[i].k) | mt_buf_addc(&b, ':') | mt_buf_json_str(&b, kv[i].v);
    }
    rc |= mt_buf_addc(&b, '}');
    const char *s = rc ? NULL : mt_arena_strdup(&r->arena, n ? mt_buf_cstr(&b) : "");
    mt_buf_free(&b);
    if (!s)
        lerr(L, "out of memory");
    return s;
}

static const char *str_field(lua_State *L, struct mt_rule *r, int idx, const char *name,
                             const char *what, size_t max, bool is_ident)
{
    size_t len;
    if (lua_type(L, idx) != LUA_TSTRING)
        lerr(L, "%s: '%s' must be a string, not a %s", what, name, luaL_typename(L, idx));
    const char *s = lua_tolstring(L, idx, &len);
    if (is_ident ? !ident(s, max) : (len > max || strlen(s) != len))
        lerr(L, "%s: '%s' must be %s", what, name,
                   is_ident ? "1 to 63 of A-Z a-z 0-9 _ . : -" : "shorter text");
    const char *c = mt_arena_strdup(&r->arena, s);
    if (!c)
        lerr(L, "out of memory");
    return c;
}

static const char *const emit_fields[] = {"metric", "value", "kind", "ts",      "site",
                                          "device", "unit",  "tags", "subject", "suppress"};

/* A reading table at idx (emit's argument, or what on_reading returned)
 * into a pending derived reading. */
static void read_emit(lua_State *L, struct mt_rule *r, int idx, const char *what)
{
    struct pending p = {0};
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) != LUA_TTABLE)
        lerr(L, "%s: a table expected, not a %s", what, luaL_typename(L, idx));
    /* its own fields must all be known; a reading's others come from its series */
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        bool known = false;
        const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?";
        for (size_t i = 0; i < MT_ARRAY_SIZE(emit_fields) && !known; i++)
            known = strcmp(k, emit_fields[i]) == 0;
        if (!known) {
            const char *best = mt_did_you_mean(k, emit_fields, MT_ARRAY_SIZE(emit_fields));
            lerr(L, "%s: unknown field '%.40s'%s%s%s", what, k, best ? " (did you mean '" : "",
                       best ? best : "", best ? "'?)" : "");
        }
    }
    lua_getfield(L, idx, "metric");
    if (lua_isnil(L, -1))
        lerr(L, "%s: 'metric' is required", what);
    p.s.metric = str_field(L, r, -1, "metric", what, 63, true);
    lua_getfield(L, idx, "value");
    if (lua_type(L, -1) != LUA_TNUMBER)
        lerr(L, "%s: 'value' must be a number, not a %s", what, luaL_typename(L, -1));
    p.value = lua_tonumber(L, -1);
    if (!isfinite(p.value))
        lerr(L, "%s: 'value' must be finite", what);
    lua_getfield(L, idx, "kind");
    p.s.kind = MITTARI_KIND_GAUGE;
    if (!lua_isnil(L, -1) && !(p.s.kind = kind_parse(str_field(L, r, -1, "kind", what, 16, true))))
        lerr(L, "%s: 'kind' must be \"delta\", \"gauge\" or \"event\"", what);
    lua_getfield(L, idx, "ts");
    if (!lua_isnil(L, -1))
        p.ts = get_ts(L, -1, what);
    else if (r->row)
        p.ts = r->row->ts;
    else
        lerr(L, "%s: 'ts' is required outside on_reading", what);
    lua_getfield(L, idx, "site");
    p.s.site = !lua_isnil(L, -1) ? str_field(L, r, -1, "site", what, 63, true)
               : r->series      ? r->series->site
                                : r->site;
    lua_getfield(L, idx, "device");
    p.s.device = !lua_isnil(L, -1) ? str_field(L, r, -1, "device", what, 63, true) : r->name;
    lua_getfield(L, idx, "unit");
    p.s.unit = !lua_isnil(L, -1) ? str_field(L, r, -1, "unit", what, 31, false) : "";
    lua_getfield(L, idx, "tags");
    p.s.tags = !lua_isnil(L, -1) ? tags_of(L, r, -1, what) : "";
    lua_getfield(L, idx, "subject");
    if (!lua_isnil(L, -1))
        p.subject = str_field(L, r, -1, "subject", what, MT_SUBJECT_SIZE - 1, false);
    lua_getfield(L, idx, "suppress");
    if (!lua_isnil(L, -1)) {
        int isint;
        lua_Integer t = lua_tointegerx(L, -1, &isint);
        if (!isint || t < 2 || t > 255)
            lerr(L, "%s: 'suppress' must be a whole number from 2 to 255", what);
        if (p.value < (double)t) {
            p.flags = MT_RF_SUPPRESSED;
            p.min_count = (unsigned)t;
            p.value = 0; /* the number itself goes no further */
        }
    }
    lua_settop(L, idx);
    if (r->npend >= MT_RULE_EMITS_MAX)
        lerr(L, "%s: more than %d readings in one call", what, MT_RULE_EMITS_MAX);
    if (r->npend == r->cappend) {
        size_t n = r->cappend ? r->cappend * 2 : 8;
        struct pending *v = realloc(r->pend, n * sizeof(*v));
        if (!v)
            lerr(L, "out of memory");
        r->pend = v;
        r->cappend = n;
    }
    r->pend[r->npend++] = p;
}

static int l_emit(lua_State *L)
{
    struct mt_rule *r = rule_of(L);
    if (r->loading)
        return lerr(L, "emit: call it from on_reading, not at the top level");
    read_emit(L, r, 1, "emit");
    return 0;
}

static int pend_cmp(const void *x, const void *y)
{
    const struct pending *a = x, *b = y;
    int c;
    if (a->ts != b->ts)
        return a->ts < b->ts ? -1 : 1;
    if ((c = strcmp(a->s.site, b->s.site)) || (c = strcmp(a->s.device, b->s.device)) ||
        (c = strcmp(a->s.metric, b->s.metric)) || (c = strcmp(a->s.tags, b->s.tags)))
        return c;
    if (a->value != b->value)
        return a->value < b->value ? -1 : 1;
    return strcmp(a->subject ? a->subject : "", b->subject ? b->subject : "");
}

/* The call succeeded: its readings leave, in an order that does not
 * depend on how the script iterated (pairs() order varies from run to
 * run). */
static int flush_pending(struct mt_rule *r)
{
    int rc = 0;
    if (r->npend > 1)
        qsort(r->pend, r->npend, sizeof(*r->pend), pend_cmp);
    for (size_t i = 0; !rc && i < r->npend; i++) {
        struct pending *p = &r->pend[i];
        uint32_t id;
        rc = intern(r, &p->s, &id);
        if (rc)
            break;
        struct mt_rec rec = {.ts = p->ts, .series = id, .kind = (uint8_t)p->s.kind,
                             .flags = (uint8_t)p->flags, .min_count = (uint8_t)p->min_count,
                             .value = p->value};
        if (p->subject)
            snprintf(rec.subject, sizeof(rec.subject), "%s", p->subject);
        rc = push_out(r, &rec);
    }
    r->npend = 0;
    return rc;
}

/* ---- windows ---- */

/* A window as Lua sees it. The sandbox makes no userdata of its own, so a
 * userdata of this size with the magic is a window. */
#define WUD_MAGIC 0x77696e64u
struct wud {
    uint32_t magic;
    int id;
};

static int l_add(lua_State *L)
{
    struct mt_rule *r = rule_of(L);
    const char *vals[MT_AGG_MAX_BY] = {0};
    char err[300];
    int nargs = lua_gettop(L);

    struct wud *w = lua_touserdata(L, 1);
    if (!w || lua_type(L, 1) != LUA_TUSERDATA || lua_rawlen(L, 1) != sizeof(*w) ||
        w->magic != WUD_MAGIC)
        return lerr(L, "add: call it as w:add(r), on a window");
    if (lua_type(L, 2) != LUA_TTABLE)
        return lerr(L, "add: a reading table expected, not a %s", luaL_typename(L, 2));
    const struct mt_aggdef_conf *d = mt_aggs_def(r->aggs, w->id);
    /* upvalue 3: the K_* names as Lua strings */
    lua_rawgeti(L, lua_upvalueindex(3), K_TS);
    lua_gettable(L, 2);
    int64_t ts = get_ts(L, -1, "add");
    int tags = 0;
    for (size_t i = 0; i < d->nby; i++) {
        const char *k = d->by[i];
        if (r->bykind[w->id][i] != BY_TAG) {
            lua_rawgeti(L, lua_upvalueindex(3), r->bykind[w->id][i] == BY_SITE ? K_SITE : K_DEVICE);
            lua_gettable(L, 2);
        } else {
            if (!tags) {
                lua_rawgeti(L, lua_upvalueindex(3), K_TAGS);
                lua_gettable(L, 2);
                tags = lua_gettop(L);
            }
            if (lua_type(L, tags) == LUA_TTABLE)
                lua_getfield(L, tags, k);
            else
                lua_pushnil(L);
        }
        int t = lua_type(L, -1);
        if (t != LUA_TNIL && t != LUA_TSTRING)
            return lerr(L, "add: '%s' must be a string, not a %s", k, luaL_typename(L, -1));
        vals[i] = lua_tostring(L, -1);
    }
    double x = 0;
    const char *subject = NULL;
    size_t slen = 0;
    bool distinct = d->agg == MT_AGG_DISTINCT || d->agg == MT_AGG_APPROX;
    if (nargs >= 3) {
        lua_pushvalue(L, 3);
    } else {
        lua_rawgeti(L, lua_upvalueindex(3), distinct ? K_SUBJECT : K_VALUE);
        lua_gettable(L, 2);
    }
    if (distinct) {
        if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
            return lerr(L, "add: a distinct count counts strings (subjects), not a %s",
                              luaL_typename(L, -1));
        subject = lua_tolstring(L, -1, &slen);
    } else if (d->agg != MT_AGG_COUNT) {
        if (lua_type(L, -1) != LUA_TNUMBER)
            return lerr(L, "add: the value must be a number, not a %s",
                              luaL_typename(L, -1));
        x = lua_tonumber(L, -1);
        if (!isfinite(x))
            return lerr(L, "add: the value must be finite");
    }
    int rc = mt_aggs_add(r->aggs, w->id, ts, vals, x, subject, slen, err, sizeof(err));
    if (rc == -ENOMEM)
        return lerr(L, "window memory cap of %d MiB reached",
                          (int)(r->c.window_mem >> 20));
    if (rc < 0)
        return lerr(L, "add: %s", err);
    lua_pushboolean(L, rc == 0);
    return 1;
}

static const char *const window_fields[] = {"every",    "metric",   "agg",          "by",
                                            "unit",     "tags",     "suppress",     "lateness",
                                            "forget_after", "flows", "precision"};

static int64_t duration_field(lua_State *L, int idx, const char *name)
{
    int64_t ms = 0;
    if (lua_type(L, idx) == LUA_TNUMBER) {
        double s = lua_tonumber(L, idx);
        if (!(s >= 0 && s < 1e10))
            lerr(L, "window: '%s' out of range", name);
        return (int64_t)(s * 1e6);
    }
    if (lua_type(L, idx) != LUA_TSTRING || mt_parse_duration_ms(lua_tostring(L, idx), &ms) ||
        ms < 0)
        lerr(L, "window: '%s' must be a duration such as \"15m\", \"2h\" or \"7d\"", name);
    return ms * 1000;
}

static const char *wstr(lua_State *L, int idx, const char *name)
{
    if (lua_type(L, idx) != LUA_TSTRING)
        lerr(L, "window: '%s' must be a string, not a %s", name, luaL_typename(L, idx));
    return lua_tostring(L, idx);
}

static void window_by(lua_State *L, int t, struct mt_aggdef_conf *c)
{
    if (lua_type(L, t) != LUA_TTABLE)
        lerr(L, "window: 'by' must be a list such as {\"site\", \"device\"}");
    lua_Integer n = (lua_Integer)lua_rawlen(L, t);
    if (n > MT_AGG_MAX_BY)
        lerr(L, "window: 'by' names at most %d fields", MT_AGG_MAX_BY);
    c->nby = 0;
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, t, i);
        c->by[c->nby++] = wstr(L, -1, "by");
    }
}

static void window_tags(lua_State *L, int t, struct mt_aggdef_conf *c)
{
    if (lua_type(L, t) != LUA_TTABLE)
        lerr(L, "window: 'tags' must be a table of strings");
    lua_pushnil(L);
    while (lua_next(L, t)) {
        if (c->ntags == MT_AGG_MAX_TAGS)
            lerr(L, "window: at most %d tags", MT_AGG_MAX_TAGS);
        if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
            lerr(L, "window: tags are string keys with string values");
        c->tag_keys[c->ntags] = lua_tostring(L, -2);
        c->tag_values[c->ntags++] = lua_tostring(L, -1);
        lua_pop(L, 1);
    }
}

static void window_flows(lua_State *L, int t, struct mt_aggdef_conf *c)
{
    if (lua_type(L, t) == LUA_TSTRING) {
        c->flows_metric = lua_tostring(L, t);
        return;
    }
    if (lua_type(L, t) != LUA_TTABLE)
        lerr(L, "window: 'flows' must be the matrix's metric, or {metric = ..., tag = ...}");
    lua_getfield(L, t, "metric");
    c->flows_metric = wstr(L, -1, "flows.metric");
    lua_getfield(L, t, "tag");
    if (!lua_isnil(L, -1))
        c->flows_tag = wstr(L, -1, "flows.tag");
}

static int l_window(lua_State *L)
{
    struct mt_rule *r = rule_of(L);
    struct mt_aggdef_conf c = {.by = {"site", "device"}, .nby = 2, .precision = 12,
                               .lateness_us = 15 * 60 * 1000000LL,
                               .forget_us = 31 * 86400 * 1000000LL};
    char err[300];
    int id;
    bool suppress_set = false;

    if (!r->loading)
        return lerr(L, "window: declare windows at the top level of the script");
    if (lua_type(L, 1) != LUA_TTABLE)
        return lerr(L, "window: a table expected: window { every = \"hour\", ... }");
    lua_settop(L, 1);
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
        int v = lua_gettop(L);
        if (strcmp(k, "every") == 0) {
            if (!(c.every = mt_unit_parse(wstr(L, v, k))) || strchr(lua_tostring(L, v), '1'))
                return lerr(L, "window: 'every' is \"minute\", \"hour\", \"day\", \"week\", "
                                     "\"month\" or \"year\"");
        } else if (strcmp(k, "metric") == 0) {
            c.metric = wstr(L, v, k);
        } else if (strcmp(k, "agg") == 0) {
            if (!(c.agg = mt_agg_parse(wstr(L, v, k))))
                return lerr(L, "window: 'agg' is \"sum\", \"count\", \"mean\", \"min\", "
                                     "\"max\", \"distinct\" or \"approx_distinct\"");
        } else if (strcmp(k, "by") == 0) {
            window_by(L, v, &c);
        } else if (strcmp(k, "unit") == 0) {
            c.unit = wstr(L, v, k);
        } else if (strcmp(k, "tags") == 0) {
            window_tags(L, v, &c);
        } else if (strcmp(k, "suppress") == 0) {
            int isint;
            lua_Integer t = lua_tointegerx(L, v, &isint);
            if (lua_type(L, v) == LUA_TBOOLEAN)
                c.suppress = lua_toboolean(L, v) ? 5 : 0;
            else if (isint && t >= 2 && t <= 255)
                c.suppress = (unsigned)t;
            else
                return lerr(L, "window: 'suppress' is a threshold from 2 to 255, or false");
            suppress_set = true;
        } else if (strcmp(k, "lateness") == 0) {
            c.lateness_us = duration_field(L, v, k);
        } else if (strcmp(k, "forget_after") == 0) {
            c.forget_us = duration_field(L, v, k);
        } else if (strcmp(k, "flows") == 0) {
            window_flows(L, v, &c);
        } else if (strcmp(k, "precision") == 0) {
            int isint;
            c.precision = (unsigned)lua_tointegerx(L, v, &isint);
            if (!isint)
                return lerr(L, "window: 'precision' must be a whole number");
        } else {
            const char *best = mt_did_you_mean(k, window_fields, MT_ARRAY_SIZE(window_fields));
            return lerr(L, "window: unknown field '%.40s'%s%s%s", k,
                              best ? " (did you mean '" : "", best ? best : "", best ? "'?)" : "");
        }
        lua_settop(L, v - 1); /* the key stays for lua_next */
    }
    if (!c.every || !c.metric || !c.agg)
        return lerr(L, "window: 'every', 'metric' and 'agg' are required");
    if (!suppress_set && (c.agg == MT_AGG_DISTINCT || c.agg == MT_AGG_APPROX))
        c.suppress = 5; /* counts of people: small cells are withheld unless said otherwise */
    if (mt_aggs_define(r->aggs, &c, &id, err, sizeof(err)))
        return lerr(L, "window %s: %s", c.metric, err);
    for (size_t i = 0; i < c.nby; i++)
        r->bykind[id][i] = strcmp(c.by[i], "site") == 0     ? BY_SITE
                           : strcmp(c.by[i], "device") == 0 ? BY_DEVICE
                                                            : BY_TAG;
    struct wud *w = lua_newuserdatauv(L, sizeof(*w), 0);
    w->magic = WUD_MAGIC;
    w->id = id;
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref_window_mt);
    lua_setmetatable(L, -2);
    return 1;
}

/* ---- time ---- */

static int l_period(lua_State *L)
{
    struct mt_rule *r = rule_of(L);
    int unit = mt_unit_parse(luaL_checkstring(L, 1));
    int64_t s, e;
    char label[64];
    if (!unit || strchr(lua_tostring(L, 1), '1'))
        return lerr(L, "period: \"minute\", \"hour\", \"day\", \"week\", \"month\" or "
                             "\"year\"");
    int64_t ts = get_ts(L, 2, "period");
    if (mt_win_of(r->c.tz, unit, ts, &s, &e))
        return lerr(L, "period: time out of range");
    mt_win_label(r->c.tz, unit, s, label, sizeof(label));
    lua_pushstring(L, label);
    lua_pushinteger(L, s);
    lua_pushinteger(L, e);
    return 3;
}

static int l_localtime(lua_State *L)
{
    struct mt_rule *r = rule_of(L);
    struct mt_localtime lt;
    int64_t ts = get_ts(L, 1, "localtime");
    mt_tz_localtime(r->c.tz, mt_floordiv(ts, 1000000), &lt);
    lua_createtable(L, 0, 11);
    const struct {
        const char *k;
        lua_Integer v;
    } f[] = {{"year", lt.year},       {"month", lt.month},       {"day", lt.day},
             {"hour", lt.hour},       {"min", lt.min},           {"sec", lt.sec},
             {"wday", lt.wday},       {"yday", lt.yday},         {"week", lt.iso_week},
             {"offset", lt.offset}};
    for (size_t i = 0; i < MT_ARRAY_SIZE(f); i++) {
        lua_pushinteger(L, f[i].v);
        lua_setfield(L, -2, f[i].k);
    }
    lua_pushboolean(L, lt.isdst);
    lua_setfield(L, -2, "isdst");
    return 1;
}

static int l_print(lua_State *L)
{
    struct mt_rule *r = rule_of(L);
    int n = lua_gettop(L);
    luaL_Buffer b;
    if (!r->c.print)
        return 0; /* in the agent: figures never go to the system log this way */
    /* a Lua buffer: a __tostring that fails leaves nothing allocated behind */
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        if (i > 1)
            luaL_addchar(&b, '\t');
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_addchar(&b, '\n');
    luaL_pushresult(&b);
    size_t len;
    const char *text = lua_tolstring(L, -1, &len);
    fwrite(text, 1, len, stderr);
    return 0;
}

/* ---- opening ---- */

static void set_fn(lua_State *L, struct mt_rule *r, const char *name, lua_CFunction f)
{
    lua_pushlightuserdata(L, r);
    lua_pushcclosure(L, f, 1);
    lua_setglobal(L, name);
}

static int setup_api(lua_State *L)
{
    struct mt_rule *r = lua_touserdata(L, 1);
    lua_createtable(L, K_COUNT, 0);
    for (int k = K_TS; k < K_COUNT; k++) {
        lua_pushstring(L, key_names[k]);
        lua_rawseti(L, -2, k);
    }
    lua_pushvalue(L, -1);
    r->ref_keys = luaL_ref(L, LUA_REGISTRYINDEX);
    int keys = lua_gettop(L);
    /* windows: a userdata whose metatable offers add */
    lua_createtable(L, 0, 2);
    lua_createtable(L, 0, 1);
    lua_pushlightuserdata(L, r);
    lua_pushvalue(L, -3);
    lua_pushvalue(L, keys);
    lua_pushcclosure(L, l_add, 3);
    lua_setfield(L, -2, "add");
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    r->ref_window_mt = luaL_ref(L, LUA_REGISTRYINDEX);
    set_fn(L, r, "window", l_window);
    set_fn(L, r, "emit", l_emit);
    set_fn(L, r, "period", l_period);
    set_fn(L, r, "localtime", l_localtime);
    set_fn(L, r, "print", l_print);
    lua_newtable(L);
    lua_setglobal(L, "state");
    return 0;
}

static int read_globals(lua_State *L)
{
    struct mt_rule *r = lua_touserdata(L, 1);
    int isint;

    lua_getglobal(L, "state_version");
    if (lua_isnil(L, -1)) {
        r->state_version = 1;
    } else {
        lua_Integer v = lua_tointegerx(L, -1, &isint);
        if (!isint || v < 1)
            return lerr(L, "%s: state_version must be a whole number of 1 or more",
                              r->script);
        r->state_version = v;
    }
    lua_getglobal(L, "on_reading");
    if (lua_isfunction(L, -1)) {
        r->ref_on_reading = luaL_ref(L, LUA_REGISTRYINDEX);
    } else if (!lua_isnil(L, -1)) {
        return lerr(L, "%s: on_reading must be a function, not a %s", r->script,
                          luaL_typename(L, -1));
    }
    lua_getglobal(L, "state");
    if (!lua_istable(L, -1))
        return lerr(L, "%s: state must be a table", r->script);
    return 0;
}

int mt_rule_open(struct mt_rule **out, const struct mt_rule_conf *c, char *err, size_t errlen)
{
    struct mt_rule *r = calloc(1, sizeof(*r));
    struct mt_luabox_limits lim;
    int rc;

    *out = NULL;
    if (errlen)
        err[0] = 0;
    if (!r)
        return -ENOMEM;
    r->c = *c;
    r->name = strdup(c->name);
    r->site = strdup(c->site ? c->site : "site");
    r->script = strdup(c->script);
    r->ref_on_reading = LUA_NOREF;
    r->c.lua_mem = c->lua_mem ? c->lua_mem : MT_RULE_MEM_DEFAULT;
    r->c.window_mem = c->window_mem ? c->window_mem : MT_RULE_WINDOW_MEM_DEFAULT;
    lim = (struct mt_luabox_limits){r->c.lua_mem, c->instructions, c->time_ms};
    if (!r->name || !r->site || !r->script) {
        rc = -ENOMEM;
        goto fail;
    }
    rc = mt_aggs_new(&r->aggs, c->tz, r->c.window_mem, on_figure, r);
    if (!rc)
        rc = mt_luabox_new(&r->box, &lim);
    if (!rc)
        rc = mt_luabox_pcall(r->box, setup_api, r, 0, err, errlen);
    if (rc)
        goto fail;
    r->loading = true;
    if (c->text) {
        /* what the configuration checked, not what the file holds by now */
        char *name = NULL, *t = malloc(c->textlen + 1);
        if (!t || asprintf(&name, "@%s", c->script) < 0) {
            free(t);
            rc = -ENOMEM;
            goto fail;
        }
        memcpy(t, c->text, c->textlen);
        if (c->textlen && t[0] == '#') /* #! line: blanked, as Lua's own loader skips it */
            for (size_t i = 0; i < c->textlen && t[i] != '\n'; i++)
                t[i] = ' ';
        rc = mt_luabox_load_buffer(r->box, name, t, c->textlen, err, errlen);
        free(name);
        free(t);
    } else {
        rc = mt_luabox_load_file(r->box, c->script, err, errlen);
    }
    r->loading = false;
    if (!rc)
        rc = mt_luabox_pcall(r->box, read_globals, r, 0, err, errlen);
    if (rc) {
        if (rc == -EINVAL)
            rc = -ENOEXEC; /* an error at the top level: the script does not load */
        goto fail;
    }
    *out = r;
    return 0;
fail:
    mt_rule_free(r);
    return rc;
}

void mt_rule_free(struct mt_rule *r)
{
    if (!r)
        return;
    mt_luabox_free(r->box);
    mt_aggs_free(r->aggs);
    for (size_t i = 0; i < r->nsi; i++)
        sinfo_free(&r->si[i]);
    free(r->si);
    free(r->mtref);
    free(r->pend);
    free(r->out);
    mt_arena_free(&r->arena);
    free(r->name);
    free(r->site);
    free(r->script);
    free(r);
}

int64_t mt_rule_state_version(const struct mt_rule *r)
{
    return r->state_version;
}

int64_t mt_rule_now(const struct mt_rule *r)
{
    return mt_aggs_now(r->aggs);
}

int64_t mt_rule_next_due(const struct mt_rule *r)
{
    return mt_aggs_next_due(r->aggs);
}

/* ---- feeding ---- */

static void count_error(struct mt_rule *r, int rc)
{
    r->st.errors++;
    r->st.err_limit += rc == -ETIMEDOUT;
    r->st.err_memory += rc == -ENOMEM;
}

static int call_reading(lua_State *L)
{
    struct mt_rule *r = lua_touserdata(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref_keys);
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref_on_reading);
    push_reading(L, r, 2, r->row, r->series);
    lua_call(L, 1, 1);
    if (!lua_isnil(L, -1))
        read_emit(L, r, -1, "on_reading returned a reading, but");
    return 0;
}

/* No on_reading: the reading goes to every window, grouped by its own
 * fields. */
static int add_everywhere(struct mt_rule *r, const struct mt_row *row,
                          const struct mt_series_info *s, char *err, size_t errlen)
{
    struct sinfo *si = series_info(r, s);
    char why[300];
    if (!si)
        return -ENOMEM;
    for (size_t k = 0; k < mt_aggs_ndefs(r->aggs); k++) {
        const struct mt_aggdef_conf *d = mt_aggs_def(r->aggs, (int)k);
        const char *vals[MT_AGG_MAX_BY] = {0};
        for (size_t i = 0; i < d->nby; i++)
            vals[i] = r->bykind[k][i] == BY_SITE     ? s->site
                      : r->bykind[k][i] == BY_DEVICE ? s->device
                                                     : si_get(si, d->by[i]);
        int rc = mt_aggs_add(r->aggs, (int)k, row->ts, vals, row->value,
                             row->subject[0] ? row->subject : NULL, strlen(row->subject), why,
                             sizeof(why));
        if (rc < 0) {
            if (rc == -ENOMEM)
                snprintf(why, sizeof(why), "window memory cap of %d MiB reached",
                         (int)(r->c.window_mem >> 20));
            snprintf(err, errlen, "%s: %s", r->script, why);
            return rc;
        }
    }
    return 0;
}

static void sync_stats(struct mt_rule *r)
{
    const struct mt_aggs_stats *a = mt_aggs_stats(r->aggs);
    r->st.figures = a->figures;
    r->st.suppressed = a->suppressed;
    r->st.corrections = a->corrections;
    r->st.late = a->late;
    r->st.overflow = a->overflow;
}

int mt_rule_feed(struct mt_rule *r, const struct mt_row *row, const struct mt_series_info *s,
                 char *err, size_t errlen)
{
    int rc;
    if (errlen)
        err[0] = 0;
    /* windows that this reading's time closes leave before it counts; a
     * long quiet stretch closes in pieces, each one handed over */
    int64_t now = mt_aggs_now(r->aggs);
    if ((rc = mt_aggs_advance(r->aggs, row->ts > now ? row->ts : now))) {
        sync_stats(r);
        return rc; /* 1: call again with the same reading */
    }
    r->st.readings++;
    if (r->ref_on_reading == LUA_NOREF) {
        rc = add_everywhere(r, row, s, err, errlen);
        if (rc)
            count_error(r, rc);
    } else {
        r->row = row;
        r->series = s;
        r->npend = 0;
        r->st.calls++;
        rc = mt_luabox_pcall(r->box, call_reading, r, 0, err, errlen);
        r->row = NULL;
        r->series = NULL;
        if (rc) {
            count_error(r, rc);
            r->npend = 0; /* a failed call emits nothing */
        } else if ((rc = flush_pending(r))) {
            snprintf(err, errlen, "%s: %s", r->script, strerror(-rc));
            count_error(r, rc);
        }
        mt_arena_free(&r->arena);
    }
    /* corrections the reading made due (more, if any, at the next call) */
    int rc2 = mt_aggs_advance(r->aggs, INT64_MIN);
    sync_stats(r);
    return rc ? rc : rc2 < 0 ? rc2 : 0;
}

int mt_rule_tick(struct mt_rule *r, int64_t clock)
{
    int rc = mt_aggs_advance(r->aggs, clock);
    sync_stats(r);
    return rc;
}

int mt_rule_finish(struct mt_rule *r)
{
    int rc = mt_aggs_finish(r->aggs);
    sync_stats(r);
    return rc;
}

void mt_rule_get_stats(const struct mt_rule *r, struct mt_rule_stats *st)
{
    *st = r->st;
    st->lua_mem = mt_luabox_mem(r->box);
    st->window_mem = mt_aggs_mem(r->aggs);
}

/* ---- state: `state` and the windows ---- */

struct ser {
    struct mt_buf *b;
    int rc;
};

struct keyref {
    int type;
    lua_Integer i;
    double d;
    const char *s;
    size_t len;
};

static int key_cmp(const void *x, const void *y)
{
    const struct keyref *a = x, *b = y;
    if (a->type != b->type)
        return a->type < b->type ? -1 : 1;
    if (a->type == 'i')
        return (a->i > b->i) - (a->i < b->i);
    if (a->type == 'f' || a->type == 'b')
        return (a->d > b->d) - (a->d < b->d);
    size_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->s, b->s, n);
    return c ? c : (a->len > b->len) - (a->len < b->len);
}

static void put_u32(struct mt_buf *b, uint32_t v, int *rc)
{
    unsigned char x[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    *rc |= mt_buf_add(b, x, 4);
}

static void put_u64(struct mt_buf *b, uint64_t v, int *rc)
{
    put_u32(b, (uint32_t)v, rc);
    put_u32(b, (uint32_t)(v >> 32), rc);
}

static void ser_value(lua_State *L, struct ser *s, int idx, int depth, const char *path);

static void ser_scalar(lua_State *L, struct ser *s, int idx, const char *path, bool key)
{
    struct mt_buf *b = s->b;
    switch (lua_type(L, idx)) {
    case LUA_TBOOLEAN:
        s->rc |= mt_buf_addc(b, 'b') | mt_buf_addc(b, (char)lua_toboolean(L, idx));
        return;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            s->rc |= mt_buf_addc(b, 'i');
            put_u64(b, (uint64_t)lua_tointeger(L, idx), &s->rc);
        } else {
            double d = lua_tonumber(L, idx);
            uint64_t u;
            memcpy(&u, &d, 8);
            s->rc |= mt_buf_addc(b, 'f');
            put_u64(b, u, &s->rc);
        }
        return;
    case LUA_TSTRING: {
        size_t len;
        const char *str = lua_tolstring(L, idx, &len);
        s->rc |= mt_buf_addc(b, 's');
        put_u32(b, (uint32_t)len, &s->rc);
        s->rc |= mt_buf_add(b, str, len);
        return;
    }
    default:
        lerr(L, "%s%s holds a %s: state keeps numbers, strings, booleans and tables%s",
                   path, key ? " has a key that" : "", luaL_typename(L, idx),
                   key ? " (keys: no tables)" : "");
    }
}

static void ser_table(lua_State *L, struct ser *s, int idx, int depth, const char *path)
{
    size_t n = 0, i = 0;
    char sub[200];

    if (depth > STATE_DEPTH)
        lerr(L, "%s: state is nested deeper than %d tables (or holds a cycle)", path,
             STATE_DEPTH);
    luaL_checkstack(L, 8, "state too deep");
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        n++;
    }
    /* the keys in a userdata, not malloc: an error below unwinds through
     * here, and the collector frees it then */
    struct keyref *keys = lua_newuserdatauv(L, (n ? n : 1) * sizeof(*keys), 0);
    int ud = lua_gettop(L);
    lua_pushnil(L);
    while (i < n && lua_next(L, idx)) {
        lua_pop(L, 1);
        struct keyref *k = &keys[i++];
        memset(k, 0, sizeof(*k));
        int t = lua_type(L, -1);
        if (t == LUA_TNUMBER && lua_isinteger(L, -1)) {
            k->type = 'i';
            k->i = lua_tointeger(L, -1);
        } else if (t == LUA_TNUMBER || t == LUA_TBOOLEAN) {
            k->type = t == LUA_TNUMBER ? 'f' : 'b';
            k->d = t == LUA_TNUMBER ? lua_tonumber(L, -1) : lua_toboolean(L, -1);
        } else if (t == LUA_TSTRING) {
            k->type = 's';
            k->s = lua_tolstring(L, -1, &k->len); /* the key stays in the table */
        } else {
            lerr(L, "%s has a %s as a key: state keeps keys that are strings, numbers or "
                    "booleans", path, luaL_typename(L, -1));
        }
    }
    lua_settop(L, ud);
    /* sorted: the same state gives the same bytes whatever pairs() order */
    if (n > 1)
        qsort(keys, n, sizeof(*keys), key_cmp);
    s->rc |= mt_buf_addc(s->b, 't');
    put_u32(s->b, (uint32_t)n, &s->rc);
    for (size_t j = 0; j < n; j++) {
        struct keyref *k = &keys[j];
        if (k->type == 'i')
            lua_pushinteger(L, k->i);
        else if (k->type == 'f')
            lua_pushnumber(L, k->d);
        else if (k->type == 'b')
            lua_pushboolean(L, k->d != 0);
        else
            lua_pushlstring(L, k->s, k->len);
        ser_scalar(L, s, -1, path, true);
        lua_rawget(L, idx);
        if (k->type == 's')
            snprintf(sub, sizeof(sub), "%s.%.*s", path, (int)(k->len > 40 ? 40 : k->len), k->s);
        else if (k->type == 'i')
            snprintf(sub, sizeof(sub), "%s[%lld]", path, (long long)k->i);
        else
            snprintf(sub, sizeof(sub), "%s[?]", path);
        ser_value(L, s, lua_gettop(L), depth + 1, sub);
        lua_pop(L, 1);
    }
    lua_settop(L, ud - 1);
}

static void ser_value(lua_State *L, struct ser *s, int idx, int depth, const char *path)
{
    if (lua_type(L, idx) == LUA_TTABLE)
        ser_table(L, s, idx, depth, path);
    else if (lua_isnil(L, idx))
        s->rc |= mt_buf_addc(s->b, 'n');
    else
        ser_scalar(L, s, idx, path, false);
}

static int save_state(lua_State *L)
{
    struct ser *s = lua_touserdata(L, 1);
    luaL_checkstack(L, STATE_DEPTH * 2 + 20, "state too deep");
    if (lua_getglobal(L, "state") != LUA_TTABLE)
        return lerr(L, "state must be a table, not a %s", luaL_typename(L, -1));
    ser_value(L, s, lua_gettop(L), 0, "state");
    return 0;
}

struct deser {
    const unsigned char *p, *end;
};

static uint32_t get_u32(lua_State *L, struct deser *d)
{
    if (d->end - d->p < 4)
        lerr(L, "saved state is damaged");
    uint32_t v = (uint32_t)d->p[0] | (uint32_t)d->p[1] << 8 | (uint32_t)d->p[2] << 16 |
                 (uint32_t)d->p[3] << 24;
    d->p += 4;
    return v;
}

static uint64_t get_u64(lua_State *L, struct deser *d)
{
    uint64_t lo = get_u32(L, d);
    return lo | (uint64_t)get_u32(L, d) << 32;
}

static void deser_value(lua_State *L, struct deser *d, int depth)
{
    if (d->p >= d->end || depth > STATE_DEPTH)
        lerr(L, "saved state is damaged");
    char t = (char)*d->p++;
    switch (t) {
    case 'n': lua_pushnil(L); return;
    case 'b':
        if (d->p >= d->end)
            lerr(L, "saved state is damaged");
        lua_pushboolean(L, *d->p++);
        return;
    case 'i': lua_pushinteger(L, (lua_Integer)get_u64(L, d)); return;
    case 'f': {
        uint64_t u = get_u64(L, d);
        double v;
        memcpy(&v, &u, 8);
        lua_pushnumber(L, v);
        return;
    }
    case 's': {
        uint32_t n = get_u32(L, d);
        if ((size_t)(d->end - d->p) < n)
            lerr(L, "saved state is damaged");
        lua_pushlstring(L, (const char *)d->p, n);
        d->p += n;
        return;
    }
    case 't': {
        uint32_t n = get_u32(L, d);
        if (n > (size_t)(d->end - d->p))
            lerr(L, "saved state is damaged");
        luaL_checkstack(L, 4, "state too deep");
        lua_createtable(L, 0, (int)(n < 1024 ? n : 1024));
        for (uint32_t i = 0; i < n; i++) {
            deser_value(L, d, depth + 1);
            deser_value(L, d, depth + 1);
            if (lua_isnil(L, -2))
                lerr(L, "saved state is damaged");
            lua_rawset(L, -3);
        }
        return;
    }
    }
    lerr(L, "saved state is damaged");
}

/* The saved `state` merged over the one the top level made: saved keys
 * win, keys the new script added keep their first values. */
static int restore_state(lua_State *L)
{
    struct deser *d = lua_touserdata(L, 1);
    deser_value(L, d, 0);
    if (!lua_istable(L, -1))
        return lerr(L, "saved state is damaged");
    if (lua_getglobal(L, "state") != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_pushvalue(L, -1);
        lua_setglobal(L, "state");
        return 0;
    }
    lua_pushnil(L);
    while (lua_next(L, -3)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, -4);
    }
    return 0;
}

int mt_rule_save(struct mt_rule *r, struct mt_buf *b, char *err, size_t errlen)
{
    int rc = 0;
    put_u32(b, STATE_MAGIC, &rc);
    put_u32(b, STATE_FORMAT, &rc);
    size_t at = b->len;
    put_u32(b, 0, &rc);
    if (rc)
        return -ENOMEM;
    struct ser s = {b, 0};
    rc = mt_luabox_pcall(r->box, save_state, &s, 0, err, errlen);
    if (rc)
        return rc == -ENOMEM ? -ENOMEM : -EINVAL;
    if (s.rc)
        return -ENOMEM;
    uint32_t n = (uint32_t)(b->len - at - 4);
    unsigned char x[4] = {(unsigned char)n, (unsigned char)(n >> 8), (unsigned char)(n >> 16),
                          (unsigned char)(n >> 24)};
    memcpy(b->p + at, x, 4);
    return mt_aggs_save(r->aggs, b);
}

int mt_rule_restore(struct mt_rule *r, const void *blob, size_t len, char *note, size_t notelen)
{
    const unsigned char *p = blob;
    char err[200];
    if (notelen)
        note[0] = 0;
    if (len < 12)
        return -EINVAL;
    uint32_t magic = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                     (uint32_t)p[3] << 24;
    uint32_t fmt = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 |
                   (uint32_t)p[7] << 24;
    uint32_t n = (uint32_t)p[8] | (uint32_t)p[9] << 8 | (uint32_t)p[10] << 16 |
                 (uint32_t)p[11] << 24;
    if (magic != STATE_MAGIC || fmt != STATE_FORMAT || n > len - 12)
        return -EINVAL;
    /* the windows first: a damaged window state leaves everything empty */
    int rc = mt_aggs_restore(r->aggs, p + 12 + n, len - 12 - n, note, notelen);
    if (rc)
        return rc;
    struct deser d = {p + 12, p + 12 + n};
    rc = mt_luabox_pcall(r->box, restore_state, &d, 0, err, sizeof(err));
    return rc == -ENOMEM ? -ENOMEM : rc ? -EINVAL : 0;
}

/* ---- check ---- */

int mt_rule_check_file(const char *path, const char *tzname, char *err, size_t errlen)
{
    return mt_rule_check_text(path, NULL, 0, tzname, err, errlen);
}

int mt_rule_check_text(const char *path, const char *text, size_t len, const char *tzname,
                       char *err, size_t errlen)
{
    struct mt_series_reg reg;
    struct mt_tz *tz = NULL;
    struct mt_rule *r = NULL;
    int rc = mt_tz_load(&tz, tzname, err, errlen);
    if (rc)
        return rc;
    if (mt_series_init(&reg)) {
        mt_tz_free(tz);
        return -ENOMEM;
    }
    struct mt_rule_conf c = {.name = "check", .script = path, .text = text, .textlen = len,
                             .site = "check", .tz = tz, .reg = &reg};
    rc = mt_rule_open(&r, &c, err, errlen);
    mt_rule_free(r);
    mt_series_free(&reg);
    mt_tz_free(tz);
    return rc;
}
