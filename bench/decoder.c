/*
 * bench_decoder: what one mt_decoder_run costs, for a two-line decode
 * function that returns one reading:
 *
 *     function decode(frame, ts)
 *       local n = #frame
 *       return {metric = 'door_in', kind = 'delta', value = n}
 *     end
 *
 *   baseline  bare Lua: a plain luaL_newstate, the same function called
 *             with lua_pcall (frame string and ts pushed, the table
 *             returned and dropped): what PERFORMANCE.md calls a Lua call
 *             per reading.
 *   luabox    the same call through the sandbox (mt_luabox_call: protected
 *             entry, message handler, count hook armed), result dropped.
 *   decoder   mt_decoder_run: the above plus checking the returned table
 *             field by field into a struct mittari_reading and one emit
 *             (a counting stand-in, so the agent's queue is not measured).
 *   submit    mt_decoder_submit, the way the serial plugin decodes: the
 *             frame copied into the decoder's queue, decoded and emitted
 *             on the decoder's own thread; per frame from the first submit
 *             to the last frame's done callback, at most 1000 in flight
 *             (the queue holds 1024). On the 2 vCPUs the submitting and
 *             the decoding thread run in parallel.
 *
 * Prints ns per call (median of ROUNDS rounds of CALLS calls) and the
 * ratio to the baseline of the same run.
 * Usage: bench_decoder [CALLS]
 */
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "common.h"
#include "decoder.h"
#include "luabox.h"

#define ROUNDS 5

static const char script[] = "function decode(frame, ts)\n"
                             "  local n = #frame\n"
                             "  return {metric = 'door_in', kind = 'delta', value = n}\n"
                             "end\n";
static const char frame[] = "IN=12 OUT=9";
#define TS 1700000000000000LL

static long emitted;       /* decoder round: the calling thread's */
static atomic_long done_n; /* submit round: the decoder thread's */

static int count_emit(struct mittari_ctx *ctx, const struct mittari_reading *r)
{
    (void)ctx;
    emitted += r->value == (double)(sizeof(frame) - 1);
    return 0;
}

static const char *name(struct mittari_ctx *ctx)
{
    (void)ctx;
    return "bench";
}

static const struct mittari_host host = {
    .abi_version = MITTARI_ABI_VERSION,
    .size = sizeof(struct mittari_host),
    .emit = count_emit,
    .instance_name = name,
};

static double bare_round(long calls)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    if (luaL_dostring(L, script))
        return -1;
    lua_getglobal(L, "decode");
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    double t0 = bench_now();
    for (long i = 0; i < calls; i++) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
        lua_pushlstring(L, frame, sizeof(frame) - 1);
        lua_pushinteger(L, TS);
        if (lua_pcall(L, 2, 1, 0))
            return -1;
        lua_settop(L, 0);
    }
    double t = bench_now() - t0;
    lua_close(L);
    return t;
}

static double luabox_round(long calls)
{
    struct mt_luabox *b;
    char err[256];
    struct mt_luaval args[2] = {{.type = MT_LUAVAL_STR, .u.s = {frame, sizeof(frame) - 1}},
                                {.type = MT_LUAVAL_INT, .u.i = TS}};
    if (mt_luabox_new(&b, NULL) ||
        mt_luabox_load_buffer(b, "=bench", script, strlen(script), err, sizeof(err)))
        return -1;
    lua_State *L = mt_luabox_state(b);
    double t0 = bench_now();
    for (long i = 0; i < calls; i++) {
        if (mt_luabox_call(b, "decode", args, 2, 1, err, sizeof(err)))
            return -1;
        lua_settop(L, 0);
    }
    double t = bench_now() - t0;
    mt_luabox_free(b);
    return t;
}

static double decoder_round(long calls, const char *path)
{
    struct mittari_decoder *d;
    if (mt_decoder_open(&host, NULL, path, NULL, &d))
        return -1;
    emitted = 0;
    double t0 = bench_now();
    for (long i = 0; i < calls; i++)
        if (mt_decoder_run(d, frame, sizeof(frame) - 1, TS) != 1)
            return -1;
    double t = bench_now() - t0;
    mt_decoder_free(d);
    return emitted == calls ? t : -1;
}

static void on_done(void *arg, int result)
{
    (void)arg;
    if (result == 1)
        atomic_fetch_add_explicit(&done_n, 1, memory_order_release);
}

static double submit_round(long calls, const char *path)
{
    struct mittari_decoder *d;
    if (mt_decoder_open(&host, NULL, path, NULL, &d))
        return -1;
    atomic_store(&done_n, 0);
    double t0 = bench_now();
    for (long i = 0; i < calls; i++) {
        while (i - atomic_load_explicit(&done_n, memory_order_acquire) >= 1000)
            sched_yield();
        if (mt_decoder_submit(d, frame, sizeof(frame) - 1, TS, on_done, NULL))
            return -1;
    }
    while (atomic_load_explicit(&done_n, memory_order_acquire) < calls)
        sched_yield();
    double t = bench_now() - t0;
    mt_decoder_free(d);
    return t;
}

int main(int argc, char **argv)
{
    long calls = argc > 1 ? atol(argv[1]) : 1000000;
    double bare[ROUNDS], box[ROUNDS], dec[ROUNDS], sub[ROUNDS];
    char *dir = bench_tmpdir("decoder"), path[4096];

    snprintf(path, sizeof(path), "%s/bench.lua", dir ? dir : "/nonexistent");
    if (!dir || bench_write_file(path, script)) {
        fprintf(stderr, "bench_decoder: cannot write %s\n", path);
        return 1;
    }
    bench_print_machine();
    bench_print_load("before");
    /* interleaved rounds, so a slow spell of the machine hits all three */
    for (int r = 0; r < ROUNDS; r++) {
        bare[r] = bare_round(calls);
        box[r] = luabox_round(calls);
        dec[r] = decoder_round(calls, path);
        sub[r] = submit_round(calls, path);
        if (bare[r] < 0 || box[r] < 0 || dec[r] < 0 || sub[r] < 0) {
            fprintf(stderr, "bench_decoder: round %d failed\n", r);
            return 1;
        }
    }
    double b = bench_median(bare, ROUNDS) / (double)calls * 1e9;
    double x = bench_median(box, ROUNDS) / (double)calls * 1e9;
    double d = bench_median(dec, ROUNDS) / (double)calls * 1e9;
    double q = bench_median(sub, ROUNDS) / (double)calls * 1e9;
    printf("# %ld calls per round, median of %d rounds\n", calls, ROUNDS);
    printf("%-10s %8.1f ns/call  1.00x\n", "baseline", b);
    printf("%-10s %8.1f ns/call  %.2fx\n", "luabox", x, x / b);
    printf("%-10s %8.1f ns/call  %.2fx\n", "decoder", d, d / b);
    printf("%-10s %8.1f ns/frame %.2fx\n", "submit", q, q / b);
    bench_print_load("after");
    bench_rmtree(dir);
    free(dir);
    return 0;
}
