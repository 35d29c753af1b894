/* The Lua sandbox: what a script can reach (and what it cannot), the memory
 * cap, the instruction budget and time limit, the guards on C functions the
 * budget cannot see into, and errors as "file:line: message". */
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "luabox.h"
#include "util.h"

static char err[1024];

static struct mt_luabox *box_lim(size_t mem, uint64_t insns, uint32_t ms)
{
    struct mt_luabox *b = NULL;
    /* a generous time limit unless a test is about it: valgrind is slow */
    struct mt_luabox_limits lim = {mem, insns, ms ? ms : 10000};
    assert_int_equal(mt_luabox_new(&b, &lim), 0);
    return b;
}

static struct mt_luabox *box(void)
{
    return box_lim(0, 0, 0);
}

/* Runs code as chunk "t.lua"; the code and err are left for asserts. */
static int run(struct mt_luabox *b, const char *code)
{
    return mt_luabox_load_buffer(b, "=t.lua", code, strlen(code), err, sizeof(err));
}

/* Runs code that sets global `r` to a string; returns a copy of it. */
static char *result_of(struct mt_luabox *b, const char *code)
{
    int rc = run(b, code);
    if (rc)
        fail_msg("'%s' failed: %s", code, err);
    lua_State *L = mt_luabox_state(b);
    assert_int_equal(run(b, "function get_r() return r end"), 0);
    assert_int_equal(mt_luabox_call(b, "get_r", NULL, 0, 1, err, sizeof(err)), 0);
    assert_int_equal(lua_type(L, -1), LUA_TSTRING);
    char *s = strdup(lua_tostring(L, -1));
    lua_settop(L, 0);
    assert_int_equal(run(b, "get_r = nil"), 0);
    return s;
}

static void expect_fail(struct mt_luabox *b, const char *code, int want, const char *needle)
{
    int rc = run(b, code);
    if (rc != want || !strstr(err, needle))
        fail_msg("'%s': got %d '%s', want %d with '%s'", code, rc, err, want, needle);
}

static const char *names_of(const char *table)
{
    static char buf[1024];
    struct mt_luabox *b = box();
    char code[256];
    snprintf(code, sizeof(code),
             "local n = {} for k in pairs(%s) do n[#n + 1] = tostring(k) end "
             "table.sort(n) r = table.concat(n, ' ')",
             table);
    char *s = result_of(b, code);
    snprintf(buf, sizeof(buf), "%s", s);
    free(s);
    mt_luabox_free(b);
    return buf;
}

static void only_allow_listed_globals_and_functions(void **state)
{
    (void)state;
    assert_string_equal(names_of("_G"),
                        "_G _VERSION assert collectgarbage error getmetatable ipairs math next "
                        "pairs pcall rawequal rawget rawlen rawset select setmetatable string "
                        "table tonumber tostring type utf8 xpcall");
    assert_string_equal(names_of("string"), "byte char find format gmatch gsub len lower match "
                                            "pack packsize rep reverse sub unpack upper");
    assert_string_equal(names_of("table"), "concat insert move pack remove sort unpack");
    assert_string_equal(names_of("utf8"), "char charpattern codepoint codes len offset");
    assert_string_equal(names_of("math"),
                        "abs acos asin atan ceil cos exp floor fmod huge log max maxinteger min "
                        "mininteger modf pi random randomseed sin sqrt tan tointeger type ult");
}

static void escapes_are_refused(void **state)
{
    static const char *const tries[] = {
        "os.execute('touch /tmp/mittari-escaped')",
        "io.open('/etc/passwd')",
        "require('os')",
        "dofile('/etc/passwd')",
        "loadfile('/etc/passwd')",
        "load('return 1')",
        "package.loadlib('libc.so.6', 'system')",
        "debug.getregistry()",
        "coroutine.create(print)",
        "print('x')",
        "string.dump(function() end)",
        "('').dump(function() end)",
        "warn('@on')",
        "getmetatable('').__index.dump(print)",
        "rawget(_G, 'os').exit()",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
        struct mt_luabox *b = box();
        expect_fail(b, tries[i], -EINVAL, "t.lua:1:");
        assert_true(strstr(err, "nil value") || strstr(err, "boolean value"));
        mt_luabox_free(b);
    }
    assert_int_equal(access("/tmp/mittari-escaped", F_OK), -1);
}

static void garbage_collector_is_out_of_reach(void **state)
{
    struct mt_luabox *b = box();
    (void)state;
    expect_fail(b, "collectgarbage('collect')", -EINVAL, "only \"count\"");
    expect_fail(b, "collectgarbage('stop')", -EINVAL, "only \"count\"");
    char *kib = result_of(b, "r = tostring(collectgarbage('count') > 1)");
    assert_string_equal(kib, "true");
    free(kib);
    mt_luabox_free(b);
}

static void string_metatable_is_hidden(void **state)
{
    struct mt_luabox *b = box();
    (void)state;
    char *s = result_of(b, "r = tostring(getmetatable('')) .. (('x'):rep(3))");
    assert_string_equal(s, "falsexxx");
    free(s);
    expect_fail(b, "setmetatable('', {})", -EINVAL, "bad argument #1");
    mt_luabox_free(b);
}

/* A __gc metamethod runs inside the collector with hooks off: an endless
 * one must never get there. */
static void gc_metamethods_are_refused(void **state)
{
    struct mt_luabox *b = box();
    (void)state;
    expect_fail(b, "setmetatable({}, {__gc = function() while true do end end})", -EINVAL,
                "__gc metamethods are not allowed");
    /* adding __gc afterwards does not mark the object for finalisation */
    assert_int_equal(run(b, "local mt = {} keep = setmetatable({}, mt) "
                            "mt.__gc = function() while true do end end keep = nil "
                            "for i = 1, 2000 do local t = {i, {}, tostring(i)} end"),
                     0);
    mt_luabox_free(b); /* would hang here if the finaliser ran */
}

/* Lua's bytecode loader trusts its input: a crafted chunk is a memory
 * corruption primitive. Only source text is accepted. */
static int dump_writer(lua_State *L, const void *p, size_t sz, void *ud)
{
    (void)L;
    mt_buf_add(ud, p, sz);
    return 0;
}

static void bytecode_is_refused(void **state)
{
    struct mt_luabox *b = box();
    struct mt_buf code = {0};
    (void)state;
    lua_State *plain = luaL_newstate();
    assert_int_equal(luaL_loadstring(plain, "x = 1"), 0);
    assert_int_equal(lua_dump(plain, dump_writer, &code, 0), 0);
    lua_close(plain);
    assert_true(code.len > 4 && code.p[0] == 0x1b);
    int rc = mt_luabox_load_buffer(b, "@chunk.luac", code.p, code.len, err, sizeof(err));
    assert_int_equal(rc, -ENOEXEC);
    assert_non_null(strstr(err, "chunk.luac: bytecode is refused"));
    mt_buf_free(&code);
    mt_luabox_free(b);
}

static void syntax_errors_have_file_and_line(void **state)
{
    struct mt_luabox *b = box();
    (void)state;
    expect_fail(b, "x = 1\ny = = 2", -ENOEXEC, "t.lua:2:");
    mt_luabox_free(b);
}

static void runtime_errors_have_file_and_line(void **state)
{
    struct mt_luabox *b = box();
    (void)state;
    expect_fail(b, "error('boom')", -EINVAL, "t.lua:1: boom");
    expect_fail(b, "local x\nlocal y = x.field", -EINVAL, "t.lua:2: attempt to index a nil");
    expect_fail(b, "\n\nerror('level zero', 0)", -EINVAL, "t.lua:3: level zero");
    expect_fail(b, "local function f() error('up', 2) end\nf()", -EINVAL, "t.lua:2: up");
    expect_fail(b, "error(42)", -EINVAL, "t.lua:1: 42");
    expect_fail(b, "string.rep()", -EINVAL, "t.lua:1: bad argument #1 to 'rep'");
    mt_luabox_free(b);
}

static void non_string_errors_are_described(void **state)
{
    struct mt_luabox *b = box();
    (void)state;
    expect_fail(b, "error({code = 1})", -EINVAL, "t.lua:1: (error object is a table value)");
    expect_fail(b, "\nerror(nil)", -EINVAL, "t.lua:2: (error object is a nil value)");
    expect_fail(b, "error(true)", -EINVAL, "(error object is a boolean value)");
    /* __tostring is never called: it would run script code inside the
     * error handler */
    expect_fail(b, "error(setmetatable({}, {__tostring = function() while true do end end}))",
                -EINVAL, "(error object is a table value)");
    mt_luabox_free(b);
}

static void control_bytes_in_messages_are_escaped(void **state)
{
    struct mt_luabox *b = box();
    (void)state;
    expect_fail(b, "error('a\\nb\\27[31m')", -EINVAL, "a\\x0ab\\x1b[31m");
    assert_null(strchr(err, '\n'));
    mt_luabox_free(b);
}

static void endless_loop_hits_the_budget(void **state)
{
    struct mt_luabox *b = box_lim(0, 100000, 60000);
    (void)state;
    int64_t t0 = mt_mono_us();
    expect_fail(b, "local i = 0\nwhile true do i = i + 1 end", -ETIMEDOUT,
                "t.lua:2: instruction budget of 100000 exhausted");
    assert_true(mt_luabox_last_insns(b) >= 100000);
    assert_true(mt_luabox_last_insns(b) < 100000 + 2 * MT_LUABOX_HOOK_STEP);
    assert_true(mt_mono_us() - t0 < 2000000);
    /* the box is usable again, with a fresh budget */
    assert_int_equal(run(b, "for i = 1, 1000 do end"), 0);
    mt_luabox_free(b);
}

/* A script that catches the budget error must not win a new budget. */
static void budget_cannot_be_caught(void **state)
{
    static const char *const tries[] = {
        "while true do pcall(function() while true do end end) end",
        "while true do pcall(error) end",
        "local function h() while true do end end\n"
        "while true do xpcall(function() while true do end end, h) end",
        "while true do local ok = pcall(function() local x <close> = setmetatable({}, "
        "{__close = function() while true do end end}) while true do end end) end",
        "local function f() return f() end f()",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
        struct mt_luabox *b = box_lim(0, 50000, 60000);
        int64_t t0 = mt_mono_us();
        expect_fail(b, tries[i], -ETIMEDOUT, "instruction budget");
        assert_true(mt_mono_us() - t0 < 2000000);
        mt_luabox_free(b);
    }
}

static void top_level_of_a_chunk_is_bounded(void **state)
{
    struct mt_luabox *b = box_lim(0, 10000, 60000);
    (void)state;
    expect_fail(b, "for i = 1, 1e9 do end", -ETIMEDOUT, "instruction budget");
    mt_luabox_free(b);
}

/* Comparing two long strings is one instruction but megabytes of memcmp:
 * the instruction budget alone would allow minutes. */
static void expensive_instructions_hit_the_time_limit(void **state)
{
    struct mt_luabox *b = box_lim(8u << 20, UINT64_C(1) << 40, 50);
    (void)state;
    int64_t t0 = mt_mono_us();
    expect_fail(b,
                "local s, t = ('a'):rep(1 << 21) .. 'b', ('a'):rep(1 << 21) .. 'c'\n"
                "local n = 0 while true do if s == t then n = n + 1 end end",
                -ETIMEDOUT, "time limit of 50 ms exceeded");
    assert_true(mt_mono_us() - t0 < 2000000);
    mt_luabox_free(b);
}

static void memory_cap_stops_string_blowups(void **state)
{
    struct mt_luabox *b = box_lim(1u << 20, 0, 0);
    (void)state;
    expect_fail(b, "local s = string.rep('x', 1e9)", -ENOMEM, "t.lua:1: not enough memory");
    expect_fail(b, "local s = ('x'):rep(1 << 19, ('y'):rep(1 << 10))", -ENOMEM, "memory cap 1024");
    expect_fail(b, "local s = 'x' while true do s = s .. s end", -ENOMEM, "not enough memory");
    expect_fail(b, "local s = ('x'):rep(400000) local t = string.format('%s%s%s', s, s, s)",
                -ENOMEM, "not enough memory");
    expect_fail(b, "local s = ('x'):rep(300000) local t = s:gsub('x', '%0%0%0%0')", -ENOMEM,
                "not enough memory");
    /* within the cap all of these work */
    assert_int_equal(run(b, "local s = string.rep('x', 100000) assert(#s == 100000)"), 0);
    assert_true(mt_luabox_mem(b) < (1u << 20));
    assert_true(mt_luabox_mem_peak(b) <= (1u << 20));
    mt_luabox_free(b);
}

static void memory_cap_stops_table_growth(void **state)
{
    struct mt_luabox *b = box_lim(1u << 20, 0, 0);
    (void)state;
    expect_fail(b, "\nlocal t = {} for i = 1, 1e7 do t[i] = i end", -ENOMEM, "memory cap");
    expect_fail(b, "keep = {} for i = 1, 1e7 do keep[#keep + 1] = {i} end", -ENOMEM, "memory cap");
    /* a global holds what it filled: the next calls fail cleanly too */
    expect_fail(b, "local t = {} for i = 1, 1e5 do t[i] = tostring(i) end", -ENOMEM, "memory");
    assert_int_equal(run(b, "keep = nil"), 0);
    assert_int_equal(run(b, "local t = {} for i = 1, 1e4 do t[i] = tostring(i) end"), 0);
    mt_luabox_free(b);
}

/* Arguments are pushed inside the protected call: an argument larger than
 * the cap is an error, never an abort. */
static void call_arguments_respect_the_cap(void **state)
{
    struct mt_luabox *b = box_lim(MT_LUABOX_MEM_MIN, 0, 0);
    char *big = malloc(1u << 20);
    (void)state;
    memset(big, 'x', 1u << 20);
    assert_int_equal(run(b, "function len(s) return #s end"), 0);
    struct mt_luaval arg = {.type = MT_LUAVAL_STR, .u.s = {big, 1u << 20}};
    assert_int_equal(mt_luabox_call(b, "len", &arg, 1, 1, err, sizeof(err)), -ENOMEM);
    arg.u.s.len = 1000;
    assert_int_equal(mt_luabox_call(b, "len", &arg, 1, 1, err, sizeof(err)), 0);
    assert_int_equal(lua_tointeger(mt_luabox_state(b), -1), 1000);
    free(big);
    mt_luabox_free(b);
}

static void deep_recursion_is_an_error(void **state)
{
    struct mt_luabox *b = box();
    (void)state;
    int rc = run(b, "local function f(n) return 1 + f(n + 1) end\nf(1)");
    assert_true(rc == -EINVAL || rc == -ENOMEM);
    assert_non_null(strstr(err, "t.lua:1:"));
    expect_fail(b,
                "local t = setmetatable({}, {__index = function(t, k) return t[k] end})\n"
                "return t.x",
                -EINVAL, "stack overflow");
    expect_fail(b,
                "local s = setmetatable({}, {__tostring = function(x) return tostring(x) end})"
                "\nreturn tostring(s)",
                -EINVAL, "stack overflow");
    assert_int_equal(run(b, "assert(1 + 1 == 2)"), 0);
    mt_luabox_free(b);
}

/* Lua's matcher backtracks in C: one call can take hours without running
 * a single instruction. Patterns whose worst case on the subject is too
 * large are refused up front; ordinary ones still work. */
static void pathological_patterns_are_refused(void **state)
{
    static const char *const tries[] = {
        "string.find(('a'):rep(40), ('a-'):rep(40) .. 'b')",
        "string.match(('a'):rep(40), ('a*'):rep(40) .. 'b')",
        "for x in string.gmatch(('a'):rep(40), ('a?'):rep(40) .. 'b') do end",
        "string.gsub(('a'):rep(40), ('.-'):rep(20) .. 'b', '')",
        "string.find(('a'):rep(100000), ('a'):rep(1000) .. 'b', 1, true)",
        "string.find(('a'):rep(100000), ('(a*)'):rep(3) .. 'b')",
    };
    struct mt_luabox *b = box();
    (void)state;
    for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
        int64_t t0 = mt_mono_us();
        expect_fail(b, tries[i], -EINVAL, "pattern too complex");
        assert_true(mt_mono_us() - t0 < 1000000);
    }
    mt_luabox_free(b);
}

/* A pattern under the bound can still take milliseconds: a loop of them
 * must stop at the limits, not run 256 calls between two hooks. */
static void pattern_calls_count_against_the_limits(void **state)
{
    const char *loop = "local s = ('a'):rep(200)\nwhile true do s:find('a*a*b') end";
    struct mt_luabox *b = box_lim(0, UINT64_C(1) << 40, 100);
    (void)state;
    int64_t t0 = mt_mono_us();
    expect_fail(b, loop, -ETIMEDOUT, "t.lua:2: time limit of 100 ms exceeded");
    assert_true(mt_mono_us() - t0 < 5000000);
    mt_luabox_free(b);
    b = box_lim(0, 1000000, 60000);
    t0 = mt_mono_us();
    expect_fail(b, loop, -ETIMEDOUT, "t.lua:2: instruction budget of 1000000 exhausted");
    assert_true(mt_mono_us() - t0 < 5000000);
    mt_luabox_free(b);
}

static void ordinary_patterns_work(void **state)
{
    struct mt_luabox *b = box();
    (void)state;
    char *s = result_of(
        b, "local o = {}\n"
           "for k, v in ('IN=12 OUT=9'):gmatch('(%u+)=(%d+)') do o[#o + 1] = k .. v end\n"
           "local a, b2, c = ('x,y,z'):match('^(.-),(.-),(.-)$')\n"
           "local line = ('f1;f2;f3;'):rep(200)\n"
           "local n = select(2, line:gsub('[^;]+;', ''))\n"
           "local p = line:find('f3;f1', 1, true)\n"
           "local w = ('  a  b  '):gsub('%s+', ' ')\n"
           "local q = ('[x]'):match('%b[]')\n"
           "local big = ('word '):rep(20000)\n"
           "local words = select(2, big:gsub('%a+', ''))\n"
           "r = table.concat(o, ',') .. ' ' .. a .. b2 .. c .. ' ' .. n .. ' ' .. p .. ' ' .."
           " w .. q .. ' ' .. words");
    assert_string_equal(s, "IN12,OUT9 xyz 600 7  a b [x] 20000");
    free(s);
    expect_fail(b, "string.find('abc', 'x[')", -EINVAL, "malformed pattern (missing ']')");
    expect_fail(b, "string.find('abc', '%')", -EINVAL, "malformed pattern (ends with '%')");
    expect_fail(b, "string.find('abc', '%b')", -EINVAL, "missing arguments to '%b'");
    mt_luabox_free(b);
}

/* ("").rep("", 2^60) loops 2^60 times copying nothing. */
static void empty_string_rep_returns_at_once(void **state)
{
    struct mt_luabox *b = box();
    (void)state;
    int64_t t0 = mt_mono_us();
    char *s = result_of(b, "r = ('x'):sub(2):rep(1 << 60) .. (''):rep(1 << 60, '') .. 'end'");
    assert_true(mt_mono_us() - t0 < 1000000);
    assert_string_equal(s, "end");
    free(s);
    mt_luabox_free(b);
}

/* The table functions loop in C over a length __len may invent. */
static void table_functions_refuse_unbounded_loops(void **state)
{
    static const char *const tries[] = {
        "local t = setmetatable({}, {__len = function() return 1 << 50 end})\n"
        "table.insert(t, 1, 'x')",
        "local t = setmetatable({}, {__len = function() return 1 << 50 end})\n"
        "table.remove(t, 1)",
        "table.move({}, 1, 1 << 50, 2)",
        "table.move({1}, 1, 1 << 50, 2, setmetatable({}, {}))",
    };
    struct mt_luabox *b = box();
    (void)state;
    for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
        int64_t t0 = mt_mono_us();
        int rc = run(b, tries[i]);
        if (rc != -EINVAL || !strstr(err, "table."))
            fail_msg("'%s': %d %s", tries[i], rc, err);
        assert_true(mt_mono_us() - t0 < 1000000);
    }
    char *s = result_of(b, "local t = {1, 2, 3} table.insert(t, 1, 0) table.insert(t, 4)\n"
                           "table.remove(t, 2) table.move(t, 1, 2, 5) table.sort(t)\n"
                           "r = table.concat(t, ',') .. ' ' .. select('#', table.unpack(t))");
    assert_string_equal(s, "0,0,2,2,3,4 6");
    free(s);
    mt_luabox_free(b);
}

static void globals_persist_within_a_box_only(void **state)
{
    struct mt_luabox *a = box(), *b = box();
    (void)state;
    assert_int_equal(run(a, "counter = 41"), 0);
    assert_int_equal(run(a, "counter = counter + 1 function get() return counter end"), 0);
    assert_int_equal(mt_luabox_call(a, "get", NULL, 0, 1, err, sizeof(err)), 0);
    assert_int_equal(lua_tointeger(mt_luabox_state(a), -1), 42);
    expect_fail(b, "counter = counter + 1", -EINVAL, "global 'counter'");
    /* a script may replace a library function in its own box only */
    assert_int_equal(run(a, "string.upper = nil"), 0);
    char *s = result_of(b, "r = string.upper('ok')");
    assert_string_equal(s, "OK");
    free(s);
    mt_luabox_free(a);
    mt_luabox_free(b);
}

static void call_passes_typed_arguments(void **state)
{
    struct mt_luabox *b = box();
    (void)state;
    assert_int_equal(run(b, "function f(i, d, s, t, n) return math.type(i), d * 2, #s, t, n end"),
                     0);
    struct mt_luaval args[] = {
        {.type = MT_LUAVAL_INT, .u.i = 7},
        {.type = MT_LUAVAL_NUM, .u.d = 1.25},
        {.type = MT_LUAVAL_STR, .u.s = {"a\0b", 3}},
        {.type = MT_LUAVAL_BOOL, .u.b = 1},
        {.type = MT_LUAVAL_NIL},
    };
    assert_int_equal(mt_luabox_call(b, "f", args, 5, 5, err, sizeof(err)), 0);
    lua_State *L = mt_luabox_state(b);
    assert_int_equal(lua_gettop(L), 5);
    assert_string_equal(lua_tostring(L, 1), "integer");
    assert_true(lua_tonumber(L, 2) == 2.5);
    assert_int_equal(lua_tointeger(L, 3), 3);
    assert_true(lua_toboolean(L, 4));
    assert_true(lua_isnil(L, 5));
    lua_settop(L, 0);
    assert_int_equal(mt_luabox_call(b, "nope", NULL, 0, 0, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "'nope' is not a function"));
    assert_int_equal(lua_gettop(L), 0);
    mt_luabox_free(b);
}

static void files_load_with_their_path(void **state)
{
    char *dir = tu_tmpdir();
    struct mt_luabox *b = box();
    (void)state;
    char *ok = tu_write(dir, "ok.lua", "#!/usr/bin/env lua\nx = 1\n");
    char *bad = tu_write(dir, "bad.lua", "x = 1\n\nfunction (\n");
    char *missing = tu_path(dir, "missing.lua");
    char *big = tu_path(dir, "big.lua");
    FILE *f = fopen(big, "w");
    for (int i = 0; i < 90000; i++)
        fputs("x = 1 -- pad\n", f);
    fclose(f);
    /* a '#' first line is Lua's own shebang convention: still text */
    assert_int_equal(mt_luabox_load_file(b, ok, err, sizeof(err)), 0);
    assert_int_equal(mt_luabox_load_file(b, bad, err, sizeof(err)), -ENOEXEC);
    assert_non_null(strstr(err, "bad.lua:3:"));
    assert_int_equal(mt_luabox_load_file(b, missing, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "missing.lua: No such file"));
    assert_int_equal(mt_luabox_load_file(b, dir, err, sizeof(err)), -EINVAL);
    assert_int_equal(mt_luabox_load_file(b, big, err, sizeof(err)), -EFBIG);
    mt_luabox_free(b);
    tu_rmtree(dir);
    free(ok);
    free(bad);
    free(missing);
    free(big);
    free(dir);
}

static void limits_are_checked(void **state)
{
    struct mt_luabox *b = NULL;
    struct mt_luabox_limits tiny = {.mem_bytes = 1024};
    (void)state;
    assert_int_equal(mt_luabox_new(&b, &tiny), -EINVAL);
    assert_null(b);
    assert_int_equal(mt_luabox_new(&b, NULL), 0);
    assert_true(mt_luabox_mem(b) > 0 && mt_luabox_mem(b) < MT_LUABOX_MEM_MIN);
    mt_luabox_free(b);
    mt_luabox_free(NULL);
}

/* mt_luabox_interrupt from another thread stops a call that no limit
 * would stop for a minute, and every call after it. */
struct spin {
    struct mt_luabox *b;
    int rc;
    char err[256];
};

static void *spin_thread(void *arg)
{
    struct spin *sp = arg;
    const char *code = "while true do end";
    sp->rc =
        mt_luabox_load_buffer(sp->b, "=spin.lua", code, strlen(code), sp->err, sizeof(sp->err));
    return NULL;
}

static void interrupt_stops_a_running_call(void **state)
{
    (void)state;
    struct spin sp = {.b = box_lim(0, UINT64_MAX / 2, 60000)};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, spin_thread, &sp), 0);
    usleep(20000);
    int64_t t0 = mt_mono_us();
    mt_luabox_interrupt(sp.b);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_true(mt_mono_us() - t0 < 10000000); /* not the minute of its limits */
    assert_int_equal(sp.rc, -ECANCELED);
    assert_non_null(strstr(sp.err, "interrupted")); /* "spin.lua:1: " once it ran */
    assert_int_equal(run(sp.b, "x = 1"), -ECANCELED);
    mt_luabox_free(sp.b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(only_allow_listed_globals_and_functions),
        cmocka_unit_test(escapes_are_refused),
        cmocka_unit_test(garbage_collector_is_out_of_reach),
        cmocka_unit_test(string_metatable_is_hidden),
        cmocka_unit_test(gc_metamethods_are_refused),
        cmocka_unit_test(bytecode_is_refused),
        cmocka_unit_test(syntax_errors_have_file_and_line),
        cmocka_unit_test(runtime_errors_have_file_and_line),
        cmocka_unit_test(non_string_errors_are_described),
        cmocka_unit_test(control_bytes_in_messages_are_escaped),
        cmocka_unit_test(endless_loop_hits_the_budget),
        cmocka_unit_test(budget_cannot_be_caught),
        cmocka_unit_test(top_level_of_a_chunk_is_bounded),
        cmocka_unit_test(expensive_instructions_hit_the_time_limit),
        cmocka_unit_test(memory_cap_stops_string_blowups),
        cmocka_unit_test(memory_cap_stops_table_growth),
        cmocka_unit_test(call_arguments_respect_the_cap),
        cmocka_unit_test(deep_recursion_is_an_error),
        cmocka_unit_test(pathological_patterns_are_refused),
        cmocka_unit_test(pattern_calls_count_against_the_limits),
        cmocka_unit_test(ordinary_patterns_work),
        cmocka_unit_test(empty_string_rep_returns_at_once),
        cmocka_unit_test(table_functions_refuse_unbounded_loops),
        cmocka_unit_test(globals_persist_within_a_box_only),
        cmocka_unit_test(call_passes_typed_arguments),
        cmocka_unit_test(files_load_with_their_path),
        cmocka_unit_test(limits_are_checked),
        cmocka_unit_test(interrupt_stops_a_running_call),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
