/*
 * bench_rules: what a Lua rule costs per reading, in one run:
 *
 *   bare      a plain luaL_newstate and a two-line function
 *                 function on_reading(r)
 *                   n = n + r.value
 *                 end
 *             called with lua_pcall on a fresh table {ts = ..., value = 1}:
 *             the least a Lua function of a reading costs (the reading
 *             as a table, the call), as the decoders' bench measures its
 *             baseline with the table decode returns. The baseline.
 *   bare int  the same function on a number instead of a table (n = n + r),
 *             for information: the call alone.
 *   rule      mt_rule_feed of a simple counting rule:
 *                 local w = window { every = "minute", metric = "n", agg = "count" }
 *                 function on_reading(r) w:add(r) end
 *             the reading built as a Lua table, the call in the sandbox,
 *             the add into the minute window, windows closing (one figure
 *             a minute of readings 1 ms apart, interned and buffered).
 *   nolua     the same window with no on_reading: every reading goes to
 *             the window in C (for information).
 *
 * and end to end, the real agent in-process: sim (rate 0, limit N) ->
 * emit -> writer -> SQLite log -> file output, timed from mt_agent_run
 * until the output delivered every stored reading, without a rule and with
 * the counting rule (then also until the rule read every committed
 * reading and handed over its step). Each end-to-end run is a forked child
 * in its own temp dir; rounds alternate the two.
 *
 * Prints ns per reading (micro) and readings per second (end to end) with
 * the ratios to their baselines of the same run. Never asserts a timing.
 * Usage: bench_rules [-n READINGS] [-r ROUNDS] [-c CALLS]
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include <mittari/mittari.h>

#include "agent.h"
#include "common.h"
#include "diag.h"
#include "rule.h"
#include "rules.h"
#include "series.h"
#include "tz.h"

#ifndef BENCH_PLUGIN_DIR
#error "BENCH_PLUGIN_DIR must name the build's plugins dir"
#endif

#define MAX_ROUNDS 9
#define T0 1767225600000000LL /* 2026-01-01T00:00Z */

static const char bare_script[] = "n = 0\n"
                                  "function on_reading(r)\n"
                                  "  n = n + r.value\n"
                                  "end\n";
static const char bare_int_script[] = "n = 0\n"
                                      "function on_reading(r)\n"
                                      "  n = n + r\n"
                                      "end\n";
static const char rule_script[] =
    "local w = window { every = \"minute\", metric = \"n\", agg = \"count\" }\n"
    "function on_reading(r) w:add(r) end\n";
static const char nolua_script[] =
    "window { every = \"minute\", metric = \"n\", agg = \"count\" }\n";

/* ---- micro ---- */

static double bare_round(long calls, bool table)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    if (luaL_dostring(L, table ? bare_script : bare_int_script))
        return -1;
    lua_getglobal(L, "on_reading");
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    double t0 = bench_now();
    for (long i = 0; i < calls; i++) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
        if (table) {
            lua_createtable(L, 0, 2);
            lua_pushinteger(L, T0 + i * 1000);
            lua_setfield(L, -2, "ts");
            lua_pushinteger(L, 1);
            lua_setfield(L, -2, "value");
        } else {
            lua_pushinteger(L, 1);
        }
        if (lua_pcall(L, 1, 0, 0))
            return -1;
    }
    double t = bench_now() - t0;
    lua_getglobal(L, "n");
    long n = (long)lua_tointeger(L, -1);
    lua_close(L);
    return n == calls ? t : -1;
}

static double rule_round(long calls, const char *path, struct mt_tz *tz)
{
    struct mt_series_reg reg;
    struct mt_rule *r = NULL;
    char err[512];
    uint32_t id;
    double t = -1;

    mt_series_init(&reg);
    struct mt_series_info k = {.site = "bench", .device = "door-1", .metric = "visitors_in",
                               .unit = "persons", .kind = MITTARI_KIND_DELTA, .tags = ""};
    struct mt_rule_conf c = {.name = "bench", .script = path, .site = "bench", .tz = tz,
                             .reg = &reg};
    if (mt_series_intern(&reg, &k, &id) || mt_rule_open(&r, &c, err, sizeof(err))) {
        fprintf(stderr, "bench_rules: %s\n", err);
        goto out;
    }
    const struct mt_series_info *s = mt_series_get(&reg, id);
    struct mt_row row = {.series = id, .value = 1};
    double t0 = bench_now();
    for (long i = 0; i < calls; i++) {
        row.seq = i + 1;
        row.ts = T0 + i * 1000; /* 1 ms apart: a figure every 60,000 readings */
        int rc;
        while ((rc = mt_rule_feed(r, &row, s, err, sizeof(err))) == 1)
            mt_rule_out_clear(r);
        if (rc) {
            fprintf(stderr, "bench_rules: %s\n", err);
            goto out;
        }
        size_t n;
        mt_rule_out(r, &n);
        if (n > 1000)
            mt_rule_out_clear(r); /* the runner hands them to the writer */
    }
    t = bench_now() - t0;
    struct mt_rule_stats st;
    mt_rule_get_stats(r, &st);
    if (st.readings != (uint64_t)calls || st.errors)
        t = -1;
out:
    mt_rule_free(r);
    mt_series_free(&reg);
    return t;
}

static int micro(long calls, int rounds, const char *dir)
{
    double bare[MAX_ROUNDS], bint[MAX_ROUNDS], rule[MAX_ROUNDS], nolua[MAX_ROUNDS];
    char p1[4096], p2[4096], err[256];
    struct mt_tz *tz;

    snprintf(p1, sizeof(p1), "%s/count.lua", dir);
    snprintf(p2, sizeof(p2), "%s/nolua.lua", dir);
    if (bench_write_file(p1, rule_script) || bench_write_file(p2, nolua_script) ||
        mt_tz_load(&tz, "Europe/Helsinki", err, sizeof(err)))
        return -1;
    for (int r = 0; r < rounds; r++) { /* interleaved: a slow spell hits all of them */
        bare[r] = bare_round(calls, true);
        bint[r] = bare_round(calls, false);
        rule[r] = rule_round(calls, p1, tz);
        nolua[r] = rule_round(calls, p2, tz);
        if (bare[r] < 0 || bint[r] < 0 || rule[r] < 0 || nolua[r] < 0) {
            fprintf(stderr, "bench_rules: micro round %d failed\n", r);
            return -1;
        }
    }
    mt_tz_free(tz);
    double b = bench_median(bare, (size_t)rounds) / (double)calls * 1e9;
    double bi = bench_median(bint, (size_t)rounds) / (double)calls * 1e9;
    double x = bench_median(rule, (size_t)rounds) / (double)calls * 1e9;
    double y = bench_median(nolua, (size_t)rounds) / (double)calls * 1e9;
    printf("# per reading, %ld calls per round, median of %d rounds\n", calls, rounds);
    printf("%-34s %8.1f ns  1.00x\n", "bare lua_pcall, reading table", b);
    printf("%-34s %8.1f ns  %.2fx\n", "bare lua_pcall, a number", bi, bi / b);
    printf("%-34s %8.1f ns  %.2fx   (target <= 3x)\n", "counting rule (mt_rule_feed)", x, x / b);
    printf("%-34s %8.1f ns  %.2fx\n", "same window, no on_reading (C)", y, y / b);
    fflush(stdout);
    return 0;
}

/* ---- end to end ---- */

struct job {
    long n;
    bool rule;
};

struct e2e {
    struct mt_agent *a;
    struct mt_output *out;
    uv_timer_t timer;
    long n;
    bool rule, flushed;
    double t0, t_done;
    int64_t final_seq;
};

static void check_cb(uv_timer_t *t)
{
    struct e2e *e = t->data;
    struct mt_writer *w = mt_agent_writer(e->a);
    const struct mt_writer_stats *ws = mt_writer_stats(w);

    if (!e->flushed) {
        if ((long)ws->queued < e->n)
            return;
        mt_writer_flush(w); /* the finite stream's tail: no batch_interval wait */
        e->flushed = true;
    }
    if (!mt_writer_idle(w))
        return;
    int64_t committed = mt_writer_committed(w);
    if (mt_output_cursor(e->out) < committed)
        return;
    if (e->rule) {
        struct mt_rule_stats st;
        int64_t cursor;
        bool paused;
        struct mt_rules *rs = mt_agent_rules(e->a);
        /* its last step handed over and committed: figures and cursor */
        if (mt_rules_stats(rs, "count", &st, &cursor, &paused) || cursor < committed) {
            mt_rules_flush(rs);
            return;
        }
    }
    e->t_done = bench_now();
    e->final_seq = committed;
    e->out = NULL;
    uv_close((uv_handle_t *)&e->timer, NULL);
    mt_agent_stop(e->a);
}

static int run_agent(void *arg, struct bench_result *res)
{
    const struct job *j = arg;
    char *dir = bench_tmpdir("rules"), path[4096], conf[4096], *text = NULL;
    struct mt_diags d = {0};
    struct mt_agent *a = NULL;
    struct e2e e = {.n = j->n, .rule = j->rule};
    int rc = -1;

    if (!dir)
        return -1;
    snprintf(conf, sizeof(conf), "%s/conf", dir);
    snprintf(path, sizeof(path), "%s/count.lua", dir);
    if (mkdir(conf, 0700) || bench_write_file(path, rule_script))
        goto out;
    if (asprintf(&text,
                 "agent:\n  site: bench\n  data_dir: %s/data\n  log_level: warning\n"
                 "  stats_interval: 0\n"
                 "inputs:\n  sim:\n    plugin: sim\n    rate: 0\n    limit: %ld\n"
                 "    seed: 42\n    card_share: 0.1\n"
                 "outputs:\n  out:\n    type: file\n    path: %s/out.jsonl\n    format: jsonl\n"
                 "    max_size: 0\n    batch_size: 10000\n"
                 "%s%s%s",
                 dir, j->n, dir, j->rule ? "rules:\n  count:\n    script: " : "",
                 j->rule ? path : "", j->rule ? "\n" : "") < 0)
        goto out;
    snprintf(path, sizeof(path), "%s/10.yaml", conf);
    if (bench_write_file(path, text))
        goto out;
    struct mt_agent_opts opts = {.conf_path = conf, .plugin_dir = BENCH_PLUGIN_DIR};
    int xc = mt_agent_init(&a, &opts, &d);
    if (d.n)
        mt_diags_print(&d, stderr);
    mt_diags_free(&d);
    if (xc != MT_EXIT_OK) {
        snprintf(res->note, sizeof(res->note), "mt_agent_init: exit code %d", xc);
        goto out;
    }
    e.a = a;
    e.out = mt_agent_output(a, 0);
    uv_timer_init(mt_agent_loop(a), &e.timer);
    e.timer.data = &e;
    uv_timer_start(&e.timer, check_cb, 1, 1);
    e.t0 = bench_now();
    mt_agent_run(a);
    if (!e.t_done || e.final_seq < j->n - j->n / 100) {
        snprintf(res->note, sizeof(res->note), "the run did not finish (%" PRId64 " stored)",
                 e.final_seq);
        goto out;
    }
    res->seconds = e.t_done - e.t0;
    res->items = (uint64_t)e.final_seq;
    res->ok = 1;
    rc = 0;
out:
    mt_agent_free(a);
    free(text);
    bench_rmtree(dir);
    free(dir);
    return rc;
}

int main(int argc, char **argv)
{
    long n = 1000000, calls = 2000000;
    int rounds = 3, opt;
    double rate[2][MAX_ROUNDS];
    char g[2][32];

    while ((opt = getopt(argc, argv, "n:r:c:")) != -1) {
        switch (opt) {
        case 'n': n = atol(optarg); break;
        case 'r': rounds = atoi(optarg); break;
        case 'c': calls = atol(optarg); break;
        default:
            fprintf(stderr, "usage: %s [-n READINGS] [-r ROUNDS (1-%d)] [-c CALLS]\n", argv[0],
                    MAX_ROUNDS);
            return 2;
        }
    }
    if (n < 10000 || calls < 1000 || rounds < 1 || rounds > MAX_ROUNDS) {
        fprintf(stderr, "bench_rules: need -n >= 10000, -c >= 1000, -r 1..%d\n", MAX_ROUNDS);
        return 2;
    }
    mt_diag_init();
    mt_diag_set_level(MT_WARNING);
    char *dir = bench_tmpdir("rules-micro");
    if (!dir)
        return 1;
    printf("# bench_rules\n");
    bench_print_machine();
    bench_print_load("before");
    if (micro(calls, rounds, dir))
        return 1;
    bench_rmtree(dir);
    free(dir);

    printf("\n# end to end: sim (rate 0) -> writer -> log -> file output, %ld readings per run,"
           " %d rounds\n", n, rounds);
    for (int r = 0; r < rounds; r++) {
        for (int k = 0; k < 2; k++) {
            struct job j = {.n = n, .rule = k == 1};
            struct bench_result res;
            long rss;
            sync();
            if (bench_fork(run_agent, &j, &res, &rss)) {
                fprintf(stderr, "bench_rules: run failed: %s\n", res.note);
                return 1;
            }
            rate[k][r] = (double)res.items / res.seconds;
            printf("%5d  %-30s %12s/s %8.3f s %8.1f MB\n", r + 1,
                   k ? "with one counting rule" : "no rule",
                   bench_group(rate[k][r], g[0], sizeof(g[0])), res.seconds,
                   (double)rss / 1024.0);
            fflush(stdout);
        }
    }
    double base = bench_median(rate[0], (size_t)rounds), with = bench_median(rate[1], (size_t)rounds);
    printf("medians: no rule %s/s, with one counting rule %s/s: %.0f%% (target >= 70%%)\n",
           bench_group(base, g[0], sizeof(g[0])), bench_group(with, g[1], sizeof(g[1])),
           100.0 * with / base);
    bench_print_load("after");
    return 0;
}
