#include "luabox.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "util.h"

enum trip { TRIP_NONE, TRIP_BUDGET, TRIP_TIME, TRIP_INTERRUPT };

struct mt_luabox {
    lua_State *L;
    size_t used, peak, cap;
    uint64_t budget;  /* instructions per call */
    uint32_t time_ms; /* wall clock per call */
    int step;         /* hook period in instructions */
    /* per call */
    bool in_call, oom, compiling;
    int tripped;       /* enum trip */
    uint64_t executed; /* instructions counted so far */
    uint64_t last_insns;
    int64_t deadline_us; /* 0 until the first hook of the call */
    char trip_where[LUA_IDSIZE + 16];
    char oom_where[LUA_IDSIZE + 16];
    atomic_bool interrupted; /* mt_luabox_interrupt: from any thread */
};

static struct mt_luabox *box_of(lua_State *L)
{
    void *ud = NULL;
    lua_getallocf(L, &ud);
    return ud;
}

/* "file:line:" of the innermost Lua function at or above level, or "".
 * Reads the call chain only: safe from the allocator and the hook. */
static void where_at(lua_State *L, int level, char *buf, size_t len, char *src, size_t srclen)
{
    lua_Debug ar;

    buf[0] = 0;
    if (src)
        src[0] = 0;
    for (int lv = level; lv < level + 64 && lua_getstack(L, lv, &ar); lv++) {
        if (lua_getinfo(L, "Sl", &ar) && ar.currentline > 0) {
            snprintf(buf, len, "%s:%d:", ar.short_src, ar.currentline);
            if (src)
                snprintf(src, srclen, "%s", ar.short_src);
            return;
        }
    }
}

/* ---- memory ---- */

/* Every byte Lua holds is counted; growth past the cap is refused, which
 * Lua turns into a "not enough memory" error after an emergency collection
 * (shrinking never fails, as Lua requires). */
static void *box_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct mt_luabox *b = ud;
    size_t old = ptr ? osize : 0;

    if (nsize == 0) {
        free(ptr);
        b->used -= old;
        return NULL;
    }
    if (nsize > old && nsize - old > b->cap - b->used) {
        b->oom = true;
        if (b->in_call && b->L) /* the last refusal is the one that failed */
            where_at(b->L, 0, b->oom_where, sizeof(b->oom_where), NULL, 0);
        return NULL;
    }
    void *p = realloc(ptr, nsize);
    if (!p) {
        if (nsize <= old)
            return ptr; /* keep the larger block: a shrink must not fail */
        b->oom = true;
        return NULL;
    }
    b->used = b->used - old + nsize;
    if (b->used > b->peak)
        b->peak = b->used;
    return p;
}

/* ---- the budget ---- */

static void box_hook(lua_State *L, lua_Debug *ar);

/* Counts n instructions' worth of work against the budget and looks at the
 * clock; true once a limit is hit. The deadline starts at the first look,
 * so a call too short to reach the hook never reads the clock. */
static bool over_limits(struct mt_luabox *b, uint64_t n)
{
    int64_t now = mt_mono_us();

    b->executed += n;
    if (atomic_load_explicit(&b->interrupted, memory_order_relaxed))
        b->tripped = TRIP_INTERRUPT;
    else if (!b->in_call || b->executed >= b->budget)
        b->tripped = TRIP_BUDGET;
    else if (!b->deadline_us)
        b->deadline_us = now + (int64_t)b->time_ms * 1000;
    else if (now > b->deadline_us)
        b->tripped = TRIP_TIME;
    return b->tripped != TRIP_NONE;
}

/* Raises the limit error. From now on every instruction raises it again,
 * so a script that catches it with pcall cannot keep running: each frame
 * it returns to fails at its next instruction. */
static int trip(struct mt_luabox *b, lua_State *L)
{
    if (!b->trip_where[0])
        where_at(L, 0, b->trip_where, sizeof(b->trip_where), NULL, 0);
    lua_sethook(L, box_hook, LUA_MASKCOUNT, 1);
    lua_pushliteral(L, "sandbox limit reached");
    return lua_error(L);
}

static void box_hook(lua_State *L, lua_Debug *ar)
{
    struct mt_luabox *b = box_of(L);

    (void)ar;
    if (b->tripped || over_limits(b, (uint64_t)b->step))
        trip(b, L);
}

/* A guarded C function about to do `cost` steps of work inside one
 * instruction charges them (a step is taken as 1/16 instruction) and sees
 * the clock, so a loop of such calls stops at the limits, not 256 calls
 * later. Cheap calls are left to the hook. */
static void charge(lua_State *L, double cost)
{
    struct mt_luabox *b = box_of(L);
    if (cost >= 4096 && over_limits(b, (uint64_t)(cost / 16)))
        trip(b, L);
}

/* ---- errors ---- */

static bool starts_with_src(const char *m, size_t len, const char *src)
{
    size_t n = strlen(src);
    return n && len > n && memcmp(m, src, n) == 0 && m[n] == ':';
}

/* Message handler: every error leaves as a string with the position of the
 * innermost Lua line ("file:line: message"). Error objects that are not
 * strings are described by type only: calling their __tostring would run
 * script code while an error is already being handled. */
static int box_msgh(lua_State *L)
{
    char where[LUA_IDSIZE + 16], src[LUA_IDSIZE];
    int t = lua_type(L, 1);

    where_at(L, 1, where, sizeof(where), src, sizeof(src));
    if (t == LUA_TSTRING || t == LUA_TNUMBER) {
        size_t len;
        const char *m = lua_tolstring(L, 1, &len);
        if (!where[0] || starts_with_src(m, len, src))
            return 1;
        lua_pushfstring(L, "%s %s", where, m);
        return 1;
    }
    lua_pushfstring(L, "%s%s(error object is a %s value)", where, where[0] ? " " : "",
                    luaL_typename(L, 1));
    return 1;
}

/* One line into err: control bytes escaped, so neither a newline nor a
 * terminal escape from a script reaches the log. */
static void copy_line(char *err, size_t errlen, const char *m, size_t len)
{
    size_t o = 0;

    if (!errlen)
        return;
    for (size_t i = 0; i < len && o + 1 < errlen; i++) {
        unsigned char c = (unsigned char)m[i];
        if (c < 0x20 || c == 0x7f) {
            if (o + 5 >= errlen)
                break;
            o += (size_t)snprintf(err + o, errlen - o, "\\x%02x", c);
        } else {
            err[o++] = (char)c;
        }
    }
    err[o] = 0;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    copy_line(err, errlen, tmp, n < 0 ? 0 : (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

static bool ends_with(const char *m, size_t len, const char *tail)
{
    size_t n = strlen(tail);
    return len >= n && memcmp(m + len - n, tail, n) == 0;
}

/* The code and the line for a failed call; the error object is on top. */
static int classify(struct mt_luabox *b, int status, char *err, size_t errlen)
{
    lua_State *L = b->L;
    size_t len = 0;
    const char *m = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : "";
    const char *sep = b->trip_where[0] ? " " : "";

    if (b->tripped == TRIP_BUDGET) {
        set_err(err, errlen, "%s%sinstruction budget of %llu exhausted", b->trip_where, sep,
                (unsigned long long)b->budget);
        return -ETIMEDOUT;
    }
    if (b->tripped == TRIP_TIME) {
        set_err(err, errlen, "%s%stime limit of %u ms exceeded", b->trip_where, sep,
                (unsigned)b->time_ms);
        return -ETIMEDOUT;
    }
    if (b->tripped == TRIP_INTERRUPT) {
        set_err(err, errlen, "%s%sinterrupted", b->trip_where, sep);
        return -ECANCELED;
    }
    if (status == LUA_ERRMEM ||
        (b->oom && (status == LUA_ERRERR || ends_with(m, len, "not enough memory")))) {
        if (status == LUA_ERRRUN)
            set_err(err, errlen, "%.*s (memory cap %zu KiB)", (int)len, m, b->cap >> 10);
        else
            set_err(err, errlen, "%s%snot enough memory (memory cap %zu KiB)", b->oom_where,
                    b->oom_where[0] ? " " : "", b->cap >> 10);
        return -ENOMEM;
    }
    copy_line(err, errlen, m, len);
    return b->compiling ? -ENOEXEC : -EINVAL;
}

int mt_luabox_pcall(struct mt_luabox *b, lua_CFunction fn, void *ud, int nres, char *err,
                    size_t errlen)
{
    lua_State *L = b->L;
    int status, rc = 0;

    if (errlen)
        err[0] = 0;
    if (atomic_load_explicit(&b->interrupted, memory_order_relaxed)) {
        set_err(err, errlen, "interrupted");
        return -ECANCELED;
    }
    /* None of these allocate: outside a protected call nothing may. */
    lua_settop(L, 0);
    lua_pushcfunction(L, box_msgh);
    lua_pushcfunction(L, fn);
    lua_pushlightuserdata(L, ud);
    b->in_call = true;
    b->oom = false;
    b->tripped = TRIP_NONE;
    b->executed = 0;
    b->deadline_us = 0;
    b->trip_where[0] = b->oom_where[0] = 0;
    lua_sethook(L, box_hook, LUA_MASKCOUNT, b->step);
    status = lua_pcall(L, 1, nres, 1);
    b->in_call = false;
    b->last_insns = b->executed;
    if (status == LUA_OK) {
        lua_remove(L, 1); /* the message handler; results stay */
        return 0;
    }
    rc = classify(b, status, err, errlen);
    lua_settop(L, 0);
    return rc;
}

/* ---- guarded library functions ----
 * A count hook only sees VM instructions. These C functions could run for
 * hours inside one instruction, so each gets a bound checked before the
 * original runs (the original is upvalue 1). */

/* luaL_error with the C library's format (lua_pushfstring knows few). */
static int raise(lua_State *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int raise(lua_State *L, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return luaL_error(L, "%s", msg);
}

static int call_orig(lua_State *L)
{
    return lua_tocfunction(L, lua_upvalueindex(1))(L);
}

/* Lua pattern classes: %a %c %d %g %l %p %s %u %w %x, upper case negates. */
static bool class_has(int c, int cl)
{
    bool r;
    switch (tolower(cl)) {
    case 'a':
        r = isalpha(c);
        break;
    case 'c':
        r = iscntrl(c);
        break;
    case 'd':
        r = isdigit(c);
        break;
    case 'g':
        r = isgraph(c);
        break;
    case 'l':
        r = islower(c);
        break;
    case 'p':
        r = ispunct(c);
        break;
    case 's':
        r = isspace(c);
        break;
    case 'u':
        r = isupper(c);
        break;
    case 'w':
        r = isalnum(c);
        break;
    case 'x':
        r = isxdigit(c);
        break;
    default:
        return cl == c;
    }
    return isupper(cl) ? !r : r;
}

/* c against a set "[...]" spanning p (at '[') to ec (at its ']'). */
static bool set_has(int c, const char *p, const char *ec)
{
    bool in = true;
    if (p[1] == '^') {
        in = false;
        p++;
    }
    for (p++; p < ec; p++) {
        if (*p == '%' && p + 1 < ec) {
            p++;
            if (class_has(c, (unsigned char)*p))
                return in;
        } else if (p + 2 < ec && p[1] == '-') {
            if ((unsigned char)p[0] <= c && c <= (unsigned char)p[2])
                return in;
            p += 2;
        } else if ((unsigned char)*p == c) {
            return in;
        }
    }
    return !in;
}

/* A single-character class p..ep against byte c. */
static bool item_has(int c, const char *p, const char *ep)
{
    switch (*p) {
    case '.':
        return true;
    case '%':
        return class_has(c, (unsigned char)p[1]);
    case '[':
        return set_has(c, p, ep - 1);
    default:
        return (unsigned char)*p == c;
    }
}

/* End of the single-character class at p, or NULL when malformed. */
static const char *class_end(const char *p, const char *pe)
{
    if (p >= pe)
        return NULL;
    char c = *p++;
    if (c == '%')
        return p < pe ? p + 1 : NULL;
    if (c != '[')
        return p;
    if (p < pe && *p == '^')
        p++;
    do { /* the first character may be ']' itself */
        if (p >= pe)
            return NULL;
        if (*p++ == '%' && p < pe)
            p++;
    } while (p >= pe || *p != ']');
    return p + 1;
}

struct subj {
    const unsigned char *s;
    size_t n;
};

static size_t longest_run(const struct subj *su, const char *p, const char *ep)
{
    size_t best = 0, cur = 0;
    for (size_t i = 0; i < su->n; i++) {
        cur = item_has(su->s[i], p, ep) ? cur + 1 : 0;
        best = cur > best ? cur : best;
    }
    return best;
}

static size_t count_in(const struct subj *su, const char *p, const char *ep)
{
    size_t k = 0;
    for (size_t i = 0; i < su->n; i++)
        k += item_has(su->s[i], p, ep);
    return k;
}

/* How many of the a ways a repetition can end let the match go on: the
 * item after it (captures skipped) must match there, or the pattern ends. */
static double viable_ends(const struct subj *su, const char *q, const char *pe, double a)
{
    while (q < pe && (*q == '(' || *q == ')'))
        q++;
    if (q == pe || (*q == '$' && q + 1 == pe))
        return 1;
    if (*q == '%' && q + 1 < pe && (q[1] == 'b' || q[1] == 'f' || isdigit((unsigned char)q[1])))
        return a;
    const char *ep = class_end(q, pe);
    if (!ep || (ep < pe && (*ep == '*' || *ep == '-' || *ep == '?')))
        return a;
    double k = (double)count_in(su, q, ep) + 1;
    return k < a ? k : a;
}

/* An upper bound on the steps of Lua's backtracking matcher for pattern
 * p on subject su: each item costs alpha and multiplies the work of the
 * rest by beta (the ways it can match); summed left to right. Returns -1
 * with *why set when the pattern is malformed. */
static double match_bound(const struct subj *su, const char *p, size_t plen, bool anchor_ok,
                          const char **why)
{
    const char *pe = p + plen;
    double n = (double)su->n, sum = 0, prod = 1, scans = 0;
    bool anchored = anchor_ok && plen && *p == '^';

    /* scans (this guard's own work) count too, so the guard stays cheap */
    for (p += anchored; p < pe && sum + scans <= MT_LUABOX_MATCH_STEPS;) {
        double alpha = 1, beta = 1;
        if (*p == '(' || *p == ')' || (*p == '$' && p + 1 == pe)) {
            p++;
        } else if (*p == '%' && p + 1 < pe && p[1] == 'b') {
            if (pe - p < 4)
                return *why = "missing arguments to '%b'", -1;
            alpha = n + 1, p += 4;
        } else if (*p == '%' && p + 1 < pe && p[1] == 'f') {
            p += 2;
            if (p >= pe || *p != '[')
                return *why = "missing '[' after '%f' in pattern", -1;
            if (!(p = class_end(p, pe)))
                return *why = "malformed pattern (missing ']')", -1;
        } else if (*p == '%' && p + 1 < pe && isdigit((unsigned char)p[1])) {
            alpha = n + 1, p += 2;
        } else {
            const char *ep = class_end(p, pe);
            if (!ep)
                return *why = *p == '%' ? "malformed pattern (ends with '%')"
                                        : "malformed pattern (missing ']')",
                       -1;
            char q = ep < pe ? *ep : 0;
            if (q == '?') {
                alpha = 2, beta = 2, ep++;
            } else if (q == '*' || q == '+' || q == '-') {
                double a = (double)longest_run(su, p, ep) + 1;
                scans += 2 * n;
                alpha = 2 * a, beta = viable_ends(su, ep + 1, pe, a), ep++;
            }
            p = ep;
        }
        sum += prod * alpha;
        prod *= beta;
    }
    sum += prod;
    return (anchored ? 1 : n + 1) * sum + scans;
}

/* string.find/match/gmatch/gsub. Upvalue 2: 1 = find (plain flag at 4),
 * 2 = gmatch ('^' is no anchor there), 3 = gsub. */
static int guarded_match(lua_State *L)
{
    int what = (int)lua_tointeger(L, lua_upvalueindex(2));
    struct subj su;
    size_t plen;
    const char *why = NULL;
    double cost;

    if (!lua_isstring(L, 1) || !lua_isstring(L, 2))
        return call_orig(L); /* let the original report the bad argument */
    su.s = (const unsigned char *)lua_tolstring(L, 1, &su.n);
    const char *p = lua_tolstring(L, 2, &plen);
    if (what == 1 && lua_toboolean(L, 4))
        cost = ((double)su.n + 1) * ((double)plen + 1); /* plain search */
    else
        cost = match_bound(&su, p, plen, what != 2, &why);
    if (why)
        return luaL_error(L, "%s", why);
    if (cost > MT_LUABOX_MATCH_STEPS)
        return raise(L,
                     "pattern too complex for a subject of %zu bytes (worst case at least %.2g "
                     "steps, limit %.2g): anchor it or use fewer repetitions",
                     su.n, cost, MT_LUABOX_MATCH_STEPS);
    /* a replacement table's __index would be consulted once per match */
    if (what == 3 && lua_type(L, 3) == LUA_TTABLE && lua_getmetatable(L, 3)) {
        lua_pop(L, 1);
        return luaL_error(L, "gsub: a replacement table with a metatable is not supported");
    }
    charge(L, cost);
    return call_orig(L);
}

/* string.rep("", n) loops n times copying nothing: refuse what the memory
 * cap could never hold before the original starts. */
static int guarded_rep(lua_State *L)
{
    struct mt_luabox *b = box_of(L);
    size_t l, lsep;
    luaL_checklstring(L, 1, &l);
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_optlstring(L, 3, "", &lsep);

    if (n <= 0 || l + lsep == 0) {
        lua_pushliteral(L, "");
        return 1;
    }
    if ((double)l * (double)n + (double)lsep * (double)(n - 1) > (double)b->cap) {
        b->oom = true; /* reported like any allocation past the cap */
        return luaL_error(L, "not enough memory");
    }
    charge(L, ((double)l * (double)n + (double)lsep * (double)(n - 1)) / 4);
    return call_orig(L);
}

/* The table library reads elements through __index and its length through
 * __len, in C loops the hook never sees; a table with a metatable could
 * make one call walk a 2000-deep __index chain per element or claim a
 * length of 2^50. Plain tables only, and spans no larger than an array the
 * memory cap can hold. */
static void plain_table(lua_State *L, int arg, const char *fn)
{
    luaL_checktype(L, arg, LUA_TTABLE);
    if (lua_getmetatable(L, arg))
        luaL_error(L, "table.%s: tables with a metatable are not supported in the sandbox", fn);
}

static lua_Unsigned max_span(lua_State *L)
{
    return box_of(L)->cap / sizeof(lua_Number) / 2; /* an array slot is 16 bytes */
}

static int guarded_table(lua_State *L)
{
    const char *fn = lua_tostring(L, lua_upvalueindex(2));
    lua_Unsigned span = 0;

    plain_table(L, 1, fn);
    if (strcmp(fn, "move") == 0) {
        lua_Integer f = luaL_checkinteger(L, 2), e = luaL_checkinteger(L, 3);
        luaL_checkinteger(L, 4);
        if (!lua_isnoneornil(L, 5))
            plain_table(L, 5, fn);
        span = e >= f ? (lua_Unsigned)e - (lua_Unsigned)f : 0;
    } else if ((strcmp(fn, "insert") == 0 && lua_gettop(L) == 3) ||
               (strcmp(fn, "remove") == 0 && lua_isinteger(L, 2))) {
        /* the elements from pos to the end move by one */
        lua_Unsigned len = lua_rawlen(L, 1); /* what the original sees: no __len */
        lua_Integer pos = lua_tointeger(L, 2);
        span = pos >= 1 && (lua_Unsigned)pos <= len ? len - (lua_Unsigned)pos : 0;
    }
    if (span > max_span(L))
        return raise(L, "table.%s: span of %llu elements is larger than the memory cap allows", fn,
                     (unsigned long long)span);
    charge(L, (double)span * 4);
    return call_orig(L);
}

/* A __gc metamethod runs inside the collector with hooks off: an endless
 * one would hang the agent where no budget reaches. */
static int guarded_setmetatable(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        if (lua_rawget(L, 2) != LUA_TNIL)
            return luaL_error(L, "__gc metamethods are not allowed in the sandbox");
        lua_pop(L, 1);
    }
    return call_orig(L);
}

/* An error raised from the count hook reaches the message handler while
 * Lua still has hooks switched off for the hook itself: a script's xpcall
 * handler that loops would run unbounded. Once the budget has tripped, the
 * error passes through without calling the script's handler. */
static int xpcall_handler(lua_State *L)
{
    if (box_of(L)->tripped)
        return 1;
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

static int guarded_xpcall(lua_State *L)
{
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, xpcall_handler, 1);
    lua_replace(L, 2);
    return call_orig(L);
}

static int gc_count(lua_State *L)
{
    const char *opt = luaL_optstring(L, 1, "collect");
    if (strcmp(opt, "count") != 0)
        return luaL_error(L, "collectgarbage: only \"count\" is available in the sandbox");
    lua_pushnumber(L, (lua_Number)box_of(L)->used / 1024.0);
    return 1;
}

/* ---- set-up ---- */

static const char *const keep_base[] = {
    "_G",           "_VERSION", "assert",         "error",  "getmetatable", "ipairs", "next",
    "pairs",        "pcall",    "rawequal",       "rawget", "rawlen",       "rawset", "select",
    "setmetatable", "tonumber", "tostring",       "type",   "xpcall",       "string", "table",
    "math",         "utf8",     "collectgarbage", NULL};
static const char *const keep_string[] = {
    "byte", "char",     "find", "format",  "gmatch", "gsub",   "len",   "lower", "match",
    "pack", "packsize", "rep",  "reverse", "sub",    "unpack", "upper", NULL};
static const char *const keep_table[] = {"concat", "insert", "move",   "pack",
                                         "remove", "sort",   "unpack", NULL};
static const char *const keep_math[] = {
    "abs",        "acos",      "asin", "atan",   "ceil",       "cos",        "exp",
    "floor",      "fmod",      "huge", "log",    "max",        "maxinteger", "min",
    "mininteger", "modf",      "pi",   "random", "randomseed", "sin",        "sqrt",
    "tan",        "tointeger", "type", "ult",    NULL};
static const char *const keep_utf8[] = {"char", "charpattern", "codepoint", "codes",
                                        "len",  "offset",      NULL};

static bool listed(const char *s, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(s, *list) == 0)
            return true;
    return false;
}

/* Allow-list: whatever a library has that is not named here goes, so a
 * newer Lua cannot slip a function in. t is an absolute index. */
static void prune(lua_State *L, int t, const char *const *keep)
{
    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING || !listed(lua_tostring(L, -1), keep)) {
            lua_pushvalue(L, -1);
            lua_pushnil(L);
            lua_rawset(L, t); /* clearing a present field while traversing is allowed */
        }
    }
}

/* Replaces t[name] by fn with the original as upvalue 1 and tag as 2. */
static void wrap(lua_State *L, int t, const char *name, lua_CFunction fn, int tag)
{
    lua_getfield(L, t, name);
    if (tag >= 0)
        lua_pushinteger(L, tag);
    else
        lua_pushstring(L, name);
    lua_pushcclosure(L, fn, 2);
    lua_setfield(L, t, name);
}

static void open_lib(lua_State *L, const char *name, lua_CFunction open, const char *const *keep)
{
    luaL_requiref(L, name, open, 1);
    prune(L, lua_gettop(L), keep);
    lua_pop(L, 1);
}

static int setup(lua_State *L)
{
    open_lib(L, LUA_GNAME, luaopen_base, keep_base);
    open_lib(L, LUA_STRLIBNAME, luaopen_string, keep_string);
    open_lib(L, LUA_TABLIBNAME, luaopen_table, keep_table);
    open_lib(L, LUA_MATHLIBNAME, luaopen_math, keep_math);
    open_lib(L, LUA_UTF8LIBNAME, luaopen_utf8, keep_utf8);

    lua_getglobal(L, LUA_STRLIBNAME);
    int s = lua_gettop(L);
    wrap(L, s, "find", guarded_match, 1);
    wrap(L, s, "match", guarded_match, 0);
    wrap(L, s, "gmatch", guarded_match, 2);
    wrap(L, s, "gsub", guarded_match, 3);
    wrap(L, s, "rep", guarded_rep, 0);
    lua_getglobal(L, LUA_TABLIBNAME);
    int t = lua_gettop(L);
    static const char *const tabfns[] = {"concat", "insert", "move", "remove", "sort", "unpack"};
    for (size_t i = 0; i < sizeof(tabfns) / sizeof(tabfns[0]); i++)
        wrap(L, t, tabfns[i], guarded_table, -1);
    lua_pushglobaltable(L);
    int g = lua_gettop(L);
    wrap(L, g, "setmetatable", guarded_setmetatable, 0);
    wrap(L, g, "xpcall", guarded_xpcall, 0);
    lua_pushcfunction(L, gc_count);
    lua_setfield(L, g, "collectgarbage");
    /* getmetatable("") answers false: the shared string metatable (and
     * through it every string method) stays out of reach */
    lua_pushliteral(L, "");
    lua_getmetatable(L, -1);
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_settop(L, 0);
    lua_gc(L, LUA_GCCOLLECT); /* start from what the libraries hold */
    return 0;
}

static int setup_entry(lua_State *L)
{
    lua_settop(L, 0);
    return setup(L);
}

int mt_luabox_new(struct mt_luabox **out, const struct mt_luabox_limits *lim)
{
    struct mt_luabox *b;
    char err[256];

    *out = NULL;
    b = calloc(1, sizeof(*b));
    if (!b)
        return -ENOMEM;
    atomic_init(&b->interrupted, false);
    b->cap = lim && lim->mem_bytes ? lim->mem_bytes : MT_LUABOX_MEM_DEFAULT;
    b->budget = lim && lim->instructions ? lim->instructions : MT_LUABOX_INSN_DEFAULT;
    b->time_ms = lim && lim->time_ms ? lim->time_ms : MT_LUABOX_TIME_MS_DEFAULT;
    b->step = b->budget < MT_LUABOX_HOOK_STEP ? (int)b->budget : (int)MT_LUABOX_HOOK_STEP;
    if (b->cap < MT_LUABOX_MEM_MIN) {
        free(b);
        return -EINVAL;
    }
    b->L = lua_newstate(box_alloc, b);
    if (!b->L) {
        free(b);
        return -ENOMEM;
    }
    int rc = mt_luabox_pcall(b, setup_entry, NULL, 0, err, sizeof(err));
    if (rc) {
        mt_luabox_free(b);
        return rc == -ENOMEM ? -ENOMEM : -EINVAL;
    }
    *out = b;
    return 0;
}

void mt_luabox_free(struct mt_luabox *b)
{
    if (!b)
        return;
    lua_close(b->L);
    free(b);
}

lua_State *mt_luabox_state(struct mt_luabox *b)
{
    return b->L;
}

size_t mt_luabox_mem(const struct mt_luabox *b)
{
    return b->used;
}

size_t mt_luabox_mem_peak(const struct mt_luabox *b)
{
    return b->peak;
}

void mt_luabox_interrupt(struct mt_luabox *b)
{
    atomic_store_explicit(&b->interrupted, true, memory_order_relaxed);
}

uint64_t mt_luabox_last_insns(const struct mt_luabox *b)
{
    return b->last_insns;
}

void mt_luabox_funcwhere(lua_State *L, int idx, char *buf, size_t len)
{
    lua_Debug ar;
    lua_pushvalue(L, idx);
    if (lua_type(L, -1) != LUA_TFUNCTION || !lua_getinfo(L, ">S", &ar)) {
        lua_pop(L, lua_type(L, -1) == LUA_TFUNCTION ? 0 : 1);
        snprintf(buf, len, "?");
        return;
    }
    snprintf(buf, len, "%s:%d", ar.short_src, ar.linedefined);
}

/* ---- loading and calling ---- */

struct load_args {
    struct mt_luabox *b;
    const char *name, *text;
    size_t len;
};

static int do_load(lua_State *L)
{
    struct load_args *a = lua_touserdata(L, 1);

    a->b->compiling = true;
    if (a->len && a->text[0] == LUA_SIGNATURE[0]) {
        const char *n = a->name[0] == '@' || a->name[0] == '=' ? a->name + 1 : a->name;
        return luaL_error(L, "%s: bytecode is refused; load the Lua source text", n);
    }
    if (luaL_loadbufferx(L, a->text, a->len, a->name, "t") != LUA_OK)
        return lua_error(L);
    a->b->compiling = false;
    lua_call(L, 0, 0);
    return 0;
}

int mt_luabox_load_buffer(struct mt_luabox *b, const char *chunkname, const char *text, size_t len,
                          char *err, size_t errlen)
{
    struct load_args a = {b, chunkname, text, len};
    int rc = mt_luabox_pcall(b, do_load, &a, 0, err, errlen);
    b->compiling = false;
    return rc;
}

/* The whole file, at most MT_LUABOX_FILE_MAX bytes; caller frees. */
static int read_script(const char *path, char **text, size_t *len)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        return -EINVAL;
    }
    *text = malloc(MT_LUABOX_FILE_MAX + 1);
    if (!*text) {
        close(fd);
        return -ENOMEM;
    }
    *len = 0;
    while ((n = read(fd, *text + *len, MT_LUABOX_FILE_MAX + 1 - *len)) > 0)
        *len += (size_t)n;
    int rc = n < 0 ? -errno : *len > MT_LUABOX_FILE_MAX ? -EFBIG : 0;
    close(fd);
    if (rc) {
        free(*text);
        *text = NULL;
    }
    return rc;
}

int mt_luabox_load_file(struct mt_luabox *b, const char *path, char *err, size_t errlen)
{
    char *text = NULL, *name = NULL;
    size_t len = 0;
    int rc = read_script(path, &text, &len);

    if (rc) {
        set_err(err, errlen, "%s: %s", path,
                rc == -EFBIG    ? "larger than 1 MiB"
                : rc == -EINVAL ? "not a regular file"
                                : strerror(-rc));
        return rc;
    }
    if (asprintf(&name, "@%s", path) < 0) {
        free(text);
        set_err(err, errlen, "%s: out of memory", path);
        return -ENOMEM;
    }
    /* a first line starting with '#' (#!/usr/bin/lua) is skipped as Lua's
     * own loader does; blanking it keeps the line numbers */
    if (len && text[0] == '#')
        for (size_t i = 0; i < len && text[i] != '\n'; i++)
            text[i] = ' ';
    rc = mt_luabox_load_buffer(b, name, text, len, err, errlen);
    free(name);
    free(text);
    return rc;
}

struct call_args {
    const char *name;
    const struct mt_luaval *args;
    int nargs, nres;
};

static int do_call(lua_State *L)
{
    struct call_args *a = lua_touserdata(L, 1);

    lua_pushglobaltable(L);
    if (lua_getfield(L, -1, a->name) != LUA_TFUNCTION)
        return luaL_error(L, "'%s' is not a function", a->name);
    lua_remove(L, 2);
    luaL_checkstack(L, a->nargs, "too many arguments");
    for (int i = 0; i < a->nargs; i++) {
        const struct mt_luaval *v = &a->args[i];
        switch (v->type) {
        case MT_LUAVAL_INT:
            lua_pushinteger(L, v->u.i);
            break;
        case MT_LUAVAL_NUM:
            lua_pushnumber(L, v->u.d);
            break;
        case MT_LUAVAL_STR:
            lua_pushlstring(L, v->u.s.p, v->u.s.len);
            break;
        case MT_LUAVAL_BOOL:
            lua_pushboolean(L, v->u.b);
            break;
        default:
            lua_pushnil(L);
            break;
        }
    }
    lua_call(L, a->nargs, a->nres);
    return lua_gettop(L) - 1;
}

int mt_luabox_call(struct mt_luabox *b, const char *name, const struct mt_luaval *args, int nargs,
                   int nres, char *err, size_t errlen)
{
    struct call_args a = {name, args, nargs, nres};
    return mt_luabox_pcall(b, do_call, &a, nres, err, errlen);
}
