/*
 * luabox: a sandboxed Lua 5.4 state for the scripts the agent runs on its own
 * data: device decoders (decoder.c) now, analysts' rules later.
 *
 * Owns one lua_State, the accounting of every byte it allocates (a hard
 * memory cap) and the count hook that bounds each call. A box is used by one
 * thread at a time (any thread; callers serialize); boxes share nothing, so
 * each thread may own its own.
 *
 * What a script gets: an allow-listed base library (no dofile, loadfile,
 * load, print, require, warn; collectgarbage answers "count" only;
 * setmetatable refuses __gc), string (no dump), table, math, utf8. No io, os,
 * package, debug or coroutine. Chunks are text only: bytecode is refused.
 * C functions that could run unbounded without executing a Lua instruction
 * are guarded: string.find/match/gmatch/gsub refuse a pattern whose
 * worst-case cost on the subject exceeds MT_LUABOX_MATCH_STEPS, string.rep
 * refuses results larger than the memory cap, and the table functions refuse
 * tables with a metatable and spans longer than any array the cap can hold.
 *
 * Never: lets a Lua error, a memory failure or a runaway script escape a
 * call. Every entry point runs in protected mode and returns a code plus a
 * one-line "file:line: message"; it never aborts, exits or logs.
 */
#ifndef MT_LUABOX_H
#define MT_LUABOX_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

/* Defaults; a caller may pass its own limits. */
#define MT_LUABOX_MEM_DEFAULT (4u << 20) /* bytes of live Lua memory */
#define MT_LUABOX_MEM_MIN (64u << 10)    /* the libraries need ~30 KiB */
#define MT_LUABOX_INSN_DEFAULT 1000000u  /* VM instructions per call */
#define MT_LUABOX_TIME_MS_DEFAULT 100u   /* wall-clock backstop per call */
#define MT_LUABOX_MATCH_STEPS 20000000.0 /* worst-case steps of one match call */
#define MT_LUABOX_FILE_MAX (1u << 20)    /* a script file, bytes */

/* The budget is checked every MT_LUABOX_HOOK_STEP instructions, so a call
 * may run that many past it. */
#define MT_LUABOX_HOOK_STEP 256u

struct mt_luabox_limits {
    size_t mem_bytes;      /* cap on live memory of the state; 0 = default */
    uint64_t instructions; /* per call; 0 = default */
    uint32_t time_ms;      /* per call, wall clock: catches loops whose single
                              instructions are expensive C work (comparing
                              megabyte strings); 0 = default */
};

struct mt_luabox;

/* A typed argument for mt_luabox_call. */
enum mt_luaval_type { MT_LUAVAL_NIL, MT_LUAVAL_INT, MT_LUAVAL_NUM, MT_LUAVAL_STR, MT_LUAVAL_BOOL };
struct mt_luaval {
    int type;
    union {
        int64_t i;
        double d;
        int b;
        struct {
            const void *p;
            size_t len;
        } s;
    } u;
};

/* Return codes of the functions below (besides 0):
 *   -ENOMEM     the memory cap was reached (or the process is out of memory)
 *   -ETIMEDOUT  the instruction budget or the time limit ran out
 *   -ENOEXEC    the chunk does not compile, or is bytecode
 *   -EINVAL     the script raised an error, or the function to call is not one
 *   -EFBIG      a script file larger than MT_LUABOX_FILE_MAX
 *   -ECANCELED  the box was interrupted (mt_luabox_interrupt)
 *   -errno      a script file cannot be read
 * err (when errlen > 0) receives one line, control bytes escaped:
 * "file:line: message" whenever a Lua line is known. */

/* A fresh sandbox. lim NULL = defaults. 0, -ENOMEM or -EINVAL (cap below
 * MT_LUABOX_MEM_MIN). */
int mt_luabox_new(struct mt_luabox **out, const struct mt_luabox_limits *lim);
/* Closes the state; runs no Lua code (no finalizers can exist). NULL is ok. */
void mt_luabox_free(struct mt_luabox *b);

/* Compiles text (chunk name as Lua shows it: "@path" for files, "=name" for
 * a literal name) and runs it under the limits: the top level of a script
 * is bounded like any call. */
int mt_luabox_load_buffer(struct mt_luabox *b, const char *chunkname, const char *text, size_t len,
                          char *err, size_t errlen);
/* Reads a file (at most MT_LUABOX_FILE_MAX bytes) and loads it as above. */
int mt_luabox_load_file(struct mt_luabox *b, const char *path, char *err, size_t errlen);

/* Calls the global function name(args...) and leaves nres results on the
 * stack of mt_luabox_state(b) (the caller reads them with non-allocating
 * calls such as lua_type/lua_tointegerx/lua_tolstring on strings, then
 * lua_settop(L, 0)). On error the stack is empty. */
int mt_luabox_call(struct mt_luabox *b, const char *name, const struct mt_luaval *args, int nargs,
                   int nres, char *err, size_t errlen);

/* The primitive under both: runs fn(L) in protected mode with the limits
 * armed; fn finds ud as a light userdata at index 1, may call Lua with
 * lua_call and raise errors with lua_error, and leaves its nres results on
 * the stack. Anything that allocates in the state (pushing strings, creating
 * tables) must happen inside such a function: outside one, a failed
 * allocation would have nowhere to go. */
int mt_luabox_pcall(struct mt_luabox *b, lua_CFunction fn, void *ud, int nres, char *err,
                    size_t errlen);

/* The state, for reading results and for the functions passed to
 * mt_luabox_pcall. Never change its hook, allocator or globals' metatables. */
lua_State *mt_luabox_state(struct mt_luabox *b);

/* Added (compatible): any thread, while another may be inside a call on
 * the box. The call in progress stops at its next budget check (every
 * MT_LUABOX_HOOK_STEP instructions, and before each costly guarded C
 * function) with -ECANCELED, and so does every later call, at once: for
 * the owner of a box that runs on its own thread and must be told to let
 * go (a decoder being freed). The box itself stays the caller's to free,
 * on the thread that uses it. */
void mt_luabox_interrupt(struct mt_luabox *b);

/* Live bytes and the highest value seen. */
size_t mt_luabox_mem(const struct mt_luabox *b);
size_t mt_luabox_mem_peak(const struct mt_luabox *b);
/* Instructions counted in the last call (a multiple of the hook step: a
 * call shorter than one step counts 0). */
uint64_t mt_luabox_last_insns(const struct mt_luabox *b);

/* The line "where" of a function value at idx: "file:line" of its
 * definition, for messages about what it returned. */
void mt_luabox_funcwhere(lua_State *L, int idx, char *buf, size_t len);

#endif
