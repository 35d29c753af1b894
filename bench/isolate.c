/*
 * bench_isolate: what `isolate: true` costs per reading (issue 13). The
 * same sim configuration (rate 0: as fast as the agent takes them, limit
 * N, card_share 0.1, so a tenth carry a card number to pseudonymise) runs
 * once in-process and once isolated, in the real agent (mt_agent_run from
 * mtcore; the isolated input's process is the built mittari), into the
 * SQLite log, without outputs.
 *
 * Timed from mt_agent_run until every accepted reading is committed (the
 * writer's committed seq covers them; the tail is flushed once the sim
 * reached its limit). CPU per reading from /proc schedstat at that moment:
 * the agent's threads by role (the loop: the sim in-process, or the
 * isolated input's messages; the writer; the others) and, isolated, every
 * thread of the input's process. Rounds alternate in-process and
 * isolated, each in its own forked child and temp dir; medians compared,
 * ratio isolated / in-process printed. It never asserts a timing; it fails
 * only when a run did not store what it should.
 *
 * Usage: bench_isolate [-n READINGS] [-r ROUNDS]
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "common.h"
#include "diag.h"

#ifndef BENCH_PLUGIN_DIR
#error "BENCH_PLUGIN_DIR must name the build's plugins dir"
#endif
#ifndef BENCH_MITTARI
#error "BENCH_MITTARI must name the built mittari"
#endif

#define MAX_ROUNDS 9

enum { CPU_LOOP, CPU_WRITER, CPU_CHILD };

struct run {
    struct mt_agent *a;
    uv_timer_t timer;
    long n;
    struct bench_stream stream;
    bool isolated, done;
    double t0, t_done;
    int64_t stored;
    double cpu[3];
    double child_rss; /* MB: peak RSS of the isolated process */
};

/* The agent's threads by role (main = the loop, then the writer, the rest
 * counted with the writer's: housekeeping and the log check are idle
 * here), and every thread of the processes this one started. */
static void cpu_now(double cpu[3], double *child_rss_mb)
{
    struct bench_thread t[64];
    char path[64], buf[4096], st[4096];
    int n = bench_threads((int)getpid(), t, 64);

    cpu[0] = cpu[1] = cpu[2] = 0;
    for (int i = 0; i < n; i++)
        cpu[i == 0 ? CPU_LOOP : CPU_WRITER] += (double)t[i].cpu_ns / 1e9;
    /* the isolated process is a child of the loop thread */
    snprintf(path, sizeof(path), "/proc/self/task/%d/children", (int)getpid());
    if (bench_read_text(path, buf, sizeof(buf)))
        return;
    for (char *p = buf, *end; *p; p = end) {
        long pid = strtol(p, &end, 10);
        if (end == p)
            break;
        int k = bench_threads((int)pid, t, 64);
        for (int i = 0; i < k; i++)
            cpu[CPU_CHILD] += (double)t[i].cpu_ns / 1e9;
        snprintf(path, sizeof(path), "/proc/%ld/status", pid);
        if (bench_read_text(path, st, sizeof(st)) == 0)
            *child_rss_mb += (double)bench_field(st, "\nVmHWM:") / 1024.0;
    }
}

static void check_cb(uv_timer_t *t)
{
    struct run *r = t->data;
    int64_t committed;

    if (!bench_stored(&r->stream, mt_agent_writer(r->a), &committed))
        return;
    r->t_done = bench_now();
    cpu_now(r->cpu, &r->child_rss);
    r->stored = committed;
    r->done = true;
    uv_close((uv_handle_t *)&r->timer, NULL);
    mt_agent_stop(r->a);
}

static int write_config(const char *dir, long n, bool isolated)
{
    char path[4096], *text;
    int rc;

    snprintf(path, sizeof(path), "%s/conf", dir);
    if (mkdir(path, 0700))
        return -errno;
    if (asprintf(&text,
                 "agent:\n  site: bench\n  data_dir: %s/data\n  log_level: warning\n"
                 "  stats_interval: 0\n"
                 "inputs:\n  sim:\n    plugin: sim\n    rate: 0\n    limit: %ld\n    seed: 42\n"
                 "    card_share: 0.1\n    isolate: %s\n",
                 dir, n, isolated ? "true" : "false") < 0)
        return -ENOMEM;
    snprintf(path, sizeof(path), "%s/conf/10-bench.yaml", dir);
    rc = bench_write_file(path, text);
    free(text);
    return rc;
}

static int run_agent(const char *dir, struct run *r, struct bench_result *res)
{
    char conf[4096];
    struct mt_diags d = {0};
    struct mt_agent *a = NULL;
    int rc = -1;

    snprintf(conf, sizeof(conf), "%s/conf", dir);
    struct mt_agent_opts opts = {conf, BENCH_PLUGIN_DIR, BENCH_MITTARI};
    int xc = mt_agent_init(&a, &opts, &d);
    if (d.n)
        mt_diags_print(&d, stderr);
    mt_diags_free(&d);
    if (xc != MT_EXIT_OK) {
        snprintf(res->note, sizeof(res->note), "mt_agent_init: exit code %d", xc);
        goto out;
    }
    r->a = a;
    uv_timer_init(mt_agent_loop(a), &r->timer);
    r->timer.data = r;
    uv_timer_start(&r->timer, check_cb, 1, 1);
    r->t0 = bench_now();
    xc = mt_agent_run(a);
    if (!r->done || xc != MT_EXIT_OK) {
        snprintf(res->note, sizeof(res->note), "the agent stopped early (exit %d)", xc);
        goto out;
    }
    if (r->stored < r->n - r->n / 100) {
        snprintf(res->note, sizeof(res->note), "only %" PRId64 " of %ld readings stored", r->stored,
                 r->n);
        goto out;
    }
    res->seconds = r->t_done - r->t0;
    res->items = (uint64_t)r->stored;
    res->seconds2 = r->child_rss;
    memcpy(res->cpu, r->cpu, sizeof(res->cpu));
    res->ok = 1;
    rc = 0;
out:
    mt_agent_free(a);
    return rc;
}

static int measure_child(void *arg, struct bench_result *res)
{
    struct run *r = arg;
    char *dir = bench_tmpdir("isolate");
    int rc = -1;

    if (!dir)
        return -1;
    if (write_config(dir, r->n, r->isolated))
        snprintf(res->note, sizeof(res->note), "cannot write the config in %s", dir);
    else
        rc = run_agent(dir, r, res);
    bench_rmtree(dir);
    free(dir);
    return rc;
}

struct series {
    double rate[MAX_ROUNDS], cpu[MAX_ROUNDS], part[3][MAX_ROUNDS];
    size_t n;
};

static int measure(bool isolated, long n, struct series *s, int round)
{
    struct run r = {.n = n, .stream = {.n = n}, .isolated = isolated};
    struct bench_result res;
    long rss;
    char g[32];

    sync();
    if (bench_fork(measure_child, &r, &res, &rss)) {
        fprintf(stderr, "bench_isolate: %s failed: %s\n", isolated ? "isolated" : "in-process",
                res.note[0] ? res.note : "see above");
        return -1;
    }
    double rate = (double)res.items / res.seconds, total = 0;
    for (int k = 0; k < 3; k++) {
        s->part[k][s->n] = res.cpu[k] * 1e6 / (double)res.items;
        total += s->part[k][s->n];
    }
    s->rate[s->n] = rate;
    s->cpu[s->n] = total;
    s->n++;
    printf("%5d  %-11s %12s/s %8.3f s   CPU %6.2f µs/reading (agent loop %.2f, writer %.2f, "
           "isolated process %.2f)   peak RSS %.1f MB",
           round, isolated ? "isolated" : "in-process", bench_group(rate, g, sizeof(g)),
           res.seconds, total, s->part[CPU_LOOP][s->n - 1], s->part[CPU_WRITER][s->n - 1],
           s->part[CPU_CHILD][s->n - 1], (double)rss / 1024.0);
    if (isolated)
        printf(" + isolated process %.1f MB", res.seconds2);
    printf("\n");
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    long n = 300000;
    int rounds = 3, opt;
    struct series s[2];
    char g[2][32];

    while ((opt = getopt(argc, argv, "n:r:")) != -1) {
        switch (opt) {
        case 'n':
            n = atol(optarg);
            break;
        case 'r':
            rounds = atoi(optarg);
            break;
        default:
            fprintf(stderr, "usage: bench_isolate [-n READINGS] [-r ROUNDS]\n");
            return 2;
        }
    }
    if (n < 1000 || rounds < 1 || rounds > MAX_ROUNDS) {
        fprintf(stderr, "bench_isolate: -n at least 1000, -r 1..%d\n", MAX_ROUNDS);
        return 2;
    }
    mt_diag_init();
    mt_diag_set_level(MT_WARNING);
    printf("# bench_isolate: sim (rate 0, limit %ld, card_share 0.1) into the log, in-process "
           "and with isolate: true\n",
           n);
    bench_print_machine();
    memset(s, 0, sizeof(s));
    for (int round = 1; round <= rounds; round++)
        for (int iso = 0; iso < 2; iso++)
            if (measure(iso, n, &s[iso], round))
                return 1;
    double rate[2], cpu[2], part[2][3];
    for (int iso = 0; iso < 2; iso++) {
        rate[iso] = bench_median(s[iso].rate, s[iso].n);
        cpu[iso] = bench_median(s[iso].cpu, s[iso].n);
        for (int k = 0; k < 3; k++)
            part[iso][k] = bench_median(s[iso].part[k], s[iso].n);
    }
    printf("\n# medians of %d rounds\n", rounds);
    printf("%-11s %14s %14s   %s\n", "run", "readings/s", "CPU µs/reading",
           "(agent loop, writer, isolated process)");
    for (int iso = 0; iso < 2; iso++)
        printf("%-11s %14s %14.2f   (%.2f, %.2f, %.2f)\n", iso ? "isolated" : "in-process",
               bench_group(rate[iso], g[iso], sizeof(g[iso])), cpu[iso], part[iso][0], part[iso][1],
               part[iso][2]);
    printf("\nisolated / in-process: readings/s x%.3f, CPU per reading x%.2f (+%.2f µs)\n",
           rate[1] / rate[0], cpu[1] / cpu[0], cpu[1] - cpu[0]);
    bench_print_load("at end");
    return 0;
}
