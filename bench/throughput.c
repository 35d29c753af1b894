/*
 * bench_throughput: readings per second, mittari end to end against the raw
 * SQLite insert ceiling measured in the same run.
 *
 *   raw      a tight loop inserting rows shaped like the agent's (same
 *            readings table, same mix of series and subjects) with one
 *            prepared INSERT, 1000 rows per transaction, WAL,
 *            synchronous=NORMAL. Nothing else: no reading back, no output.
 *   mittari  the real agent in-process: sim (rate 0, limit N) -> emit ->
 *            normalizer -> writer thread -> SQLite log -> file output (JSON
 *            Lines, batch_size 10000) on a libuv worker. Timed from
 *            mt_agent_run until the output's cursor covers every stored
 *            reading (written and, with the default fsync: true,
 *            fdatasync'ed). Once with the agent's default sync: full, once
 *            with sync: normal (the raw loop's durability).
 *
 * Each measurement runs in its own forked child (peak RSS from wait4), in
 * its own temp dir, after sync(2) so one run's writeback does not land in
 * the next. Rounds alternate raw and mittari; the medians of the rounds are
 * compared. The output file is checked: one line per stored reading, last
 * line's seq = last stored seq; a mismatch fails the program.
 *
 * Usage: bench_throughput [-n READINGS] [-r ROUNDS] [-o raw,full,normal]
 *        [-A 'agent_key: value']... [-s LISTEN]
 * (-o runs only the named measurements, e.g. under perf record; -A adds a
 * line to the agent section, e.g. -A 'queue_max: 65536', to try a setting.
 * Without -A the agent runs with its defaults, apart from sync. -s sets
 * status.listen: the status endpoint (on by default, port 0 here so that
 * runs never meet) reads every committed row for its visitors figures; -s
 * off measures the agent without it.)
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "common.h"
#include "diag.h"

#ifndef BENCH_PLUGIN_DIR
#error "BENCH_PLUGIN_DIR must name the build's plugins dir"
#endif

#define MAX_ROUNDS 9
#define RAW_TXN 1000

struct job {
    long n;
    bool sync_full;
    const char *extra;  /* more lines for the agent section, or "" */
    const char *listen; /* status.listen */
};

/* ---- raw SQLite ceiling ---- */

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

/* 22-character pseudonyms like the agent's (base64url of 128 bits) */
static void make_subjects(char (*subj)[24], size_t n)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < n; i++) {
        for (int k = 0; k < 22; k++)
            subj[i][k] = b64[rng_next(&s) & 63];
        subj[i][22] = 0;
    }
}

static int raw_exec(sqlite3 *db, const char *sql, struct bench_result *res)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) == SQLITE_OK)
        return 0;
    snprintf(res->note, sizeof(res->note), "%s: %s", sql, err ? err : "?");
    sqlite3_free(err);
    return -1;
}

static int raw_step(sqlite3_stmt *st, struct bench_result *res)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_DONE)
        return 0;
    snprintf(res->note, sizeof(res->note), "step: %s", sqlite3_errstr(rc));
    return -1;
}

/* Same mix as the sim at rate 0: ~10 % check-ins with a subject, door
 * deltas, and every 100 readings a gate delta and an occupancy gauge. */
static void raw_row(uint64_t *rng, long i, int64_t *series, double *value, bool *has_subj)
{
    uint64_t r = rng_next(rng);
    *has_subj = false;
    *value = 1;
    if (i % 102 == 100) {
        *series = 6; /* gate */
        *value = 60;
    } else if (i % 102 == 101) {
        *series = 7; /* hall occupancy */
        *value = (double)(r % 500);
    } else if (r % 10 == 0) {
        *series = 5; /* card reader */
        *has_subj = true;
    } else {
        *series = 1 + (int64_t)(r >> 8) % 4; /* door-N in/out */
    }
}

static int raw_insert(sqlite3_stmt *ins, sqlite3_stmt *begin, sqlite3_stmt *commit, long n,
                      struct bench_result *res)
{
    static char subj[300][24];
    uint64_t rng = 42;
    int64_t ts0 = 1767225600000000LL; /* 2026-01-01 UTC */

    make_subjects(subj, 300);
    for (long i = 0; i < n; i++) {
        int64_t series;
        double value;
        bool has_subj;
        if (i % RAW_TXN == 0 && raw_step(begin, res))
            return -1;
        raw_row(&rng, i, &series, &value, &has_subj);
        sqlite3_bind_int64(ins, 1, i + 1);
        sqlite3_bind_int64(ins, 2, ts0 + i);
        sqlite3_bind_int64(ins, 3, series);
        sqlite3_bind_double(ins, 4, value);
        if (has_subj)
            sqlite3_bind_text(ins, 5, subj[rng % 300], -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(ins, 5);
        if (raw_step(ins, res))
            return -1;
        if ((i % RAW_TXN == RAW_TXN - 1 || i == n - 1) && raw_step(commit, res))
            return -1;
    }
    return 0;
}

static double thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int run_raw(void *arg, struct bench_result *res)
{
    const struct job *j = arg;
    char *dir = bench_tmpdir("raw");
    char path[4096];
    sqlite3 *db = NULL;
    sqlite3_stmt *ins = NULL, *begin = NULL, *commit = NULL;
    int rc = -1;

    if (!dir)
        return -1;
    snprintf(path, sizeof(path), "%s/raw.db", dir);
    if (sqlite3_open(path, &db) != SQLITE_OK) {
        snprintf(res->note, sizeof(res->note), "open %s", path);
        goto out;
    }
    /* the agent's readings table, as agent/log.c creates it */
    if (raw_exec(db,
                 "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                 "CREATE TABLE readings(seq INTEGER PRIMARY KEY, ts INTEGER NOT NULL,"
                 " series INTEGER NOT NULL, value REAL NOT NULL, subject TEXT)",
                 res))
        goto out;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO readings(seq, ts, series, value, subject) "
                           "VALUES(?,?,?,?,?)",
                           -1, &ins, NULL) ||
        sqlite3_prepare_v2(db, "BEGIN IMMEDIATE", -1, &begin, NULL) ||
        sqlite3_prepare_v2(db, "COMMIT", -1, &commit, NULL)) {
        snprintf(res->note, sizeof(res->note), "prepare: %s", sqlite3_errmsg(db));
        goto out;
    }
    double t0 = bench_now(), c0 = thread_cpu();
    if (raw_insert(ins, begin, commit, j->n, res))
        goto out;
    res->seconds = bench_now() - t0;
    res->items = (uint64_t)j->n;
    res->cpu[0] = thread_cpu() - c0;
    res->ok = 1;
    rc = 0;
out:
    sqlite3_finalize(ins);
    sqlite3_finalize(begin);
    sqlite3_finalize(commit);
    sqlite3_close(db);
    bench_rmtree(dir);
    free(dir);
    return rc;
}

/* ---- mittari end to end ---- */

struct e2e {
    struct mt_agent *a;
    struct mt_output *out;
    uv_timer_t timer;
    long n;
    double t0, t_stored, t_done;
    struct bench_stream stream;
    bool done;
    int64_t final_seq;
    uint64_t commits, batches, delivered;
    double cpu[3]; /* loop (sim, emit), log writer, libuv workers (output) */
};

enum { CPU_LOOP, CPU_WRITER, CPU_WORKERS };

/* CPU time of this process's threads so far, by role: the main thread runs
 * the loop, the writer is the first thread created (mt_agent_init), the
 * libuv pool threads come after it. */
static void cpu_by_role(double cpu[3])
{
    struct bench_thread t[64];
    int n = bench_threads((int)getpid(), t, 64);

    cpu[0] = cpu[1] = cpu[2] = 0;
    for (int i = 0; i < n; i++)
        cpu[i == 0 ? CPU_LOOP : i == 1 ? CPU_WRITER : CPU_WORKERS] += (double)t[i].cpu_ns / 1e9;
}

/* Every stored reading has been delivered: the writer's committed seq covers
 * all accepted readings, and the output's cursor (advanced only after the
 * file write and fdatasync returned) reached it. */
static void check_cb(uv_timer_t *t)
{
    struct e2e *e = t->data;
    struct mt_writer *w = mt_agent_writer(e->a);
    const struct mt_writer_stats *ws = mt_writer_stats(w);
    int64_t committed;

    if (!bench_stored(&e->stream, w, &committed))
        return;
    if (e->t_stored == 0)
        e->t_stored = bench_now();
    if (mt_output_cursor(e->out) < committed)
        return;
    e->t_done = bench_now();
    cpu_by_role(e->cpu);
    e->final_seq = committed;
    e->commits = (uint64_t)ws->commits;
    e->batches = mt_output_stats(e->out)->batches;
    e->delivered = mt_output_stats(e->out)->delivered;
    e->out = NULL; /* freed when the agent stops */
    e->done = true;
    uv_close((uv_handle_t *)&e->timer, NULL);
    mt_agent_stop(e->a);
}

static int write_config(const char *dir, const struct job *j)
{
    char path[4096], *text;
    int rc;

    snprintf(path, sizeof(path), "%s/conf", dir);
    if (mkdir(path, 0700))
        return -errno;
    if (asprintf(&text,
                 "agent:\n"
                 "  site: bench\n"
                 "  data_dir: %s/data\n"
                 "  sync: %s\n"
                 "  log_level: warning\n"
                 "  stats_interval: 0\n"
                 "%s"
                 "inputs:\n"
                 "  sim:\n"
                 "    plugin: sim\n"
                 "    rate: 0\n"
                 "    limit: %ld\n"
                 "    seed: 42\n"
                 "    card_share: 0.1\n"
                 "outputs:\n"
                 "  out:\n"
                 "    type: file\n"
                 "    path: %s/out.jsonl\n"
                 "    format: jsonl\n"
                 "    max_size: 0\n"
                 "    batch_size: 10000\n"
                 "status:\n"
                 "  listen: \"%s\"\n",
                 dir, j->sync_full ? "full" : "normal", j->extra, j->n, dir, j->listen) < 0)
        return -ENOMEM;
    snprintf(path, sizeof(path), "%s/conf/10-bench.yaml", dir);
    rc = bench_write_file(path, text);
    free(text);
    return rc;
}

/* Lines in the file and the seq of the last one. */
static int count_lines(const char *path, uint64_t *lines, int64_t *last_seq)
{
    static char buf[1 << 20];
    char last[64] = {0};
    size_t ln = 0;
    FILE *f = fopen(path, "r");
    size_t n;

    *lines = 0;
    *last_seq = -1;
    if (!f)
        return -errno;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
        const char *p = buf, *end = buf + n, *nl;
        while ((nl = memchr(p, '\n', (size_t)(end - p)))) {
            (*lines)++;
            size_t k = (size_t)(nl - p) < sizeof(last) - 1 ? (size_t)(nl - p) : sizeof(last) - 1;
            if (ln == 0) {
                memcpy(last, p, k);
                last[k] = 0;
            }
            ln = 0;
            p = nl + 1;
        }
        /* a line continuing into the next chunk: keep its start */
        size_t k = (size_t)(end - p) < sizeof(last) - 1 ? (size_t)(end - p) : sizeof(last) - 1;
        if (k && ln == 0) {
            memcpy(last, p, k);
            last[k] = 0;
            ln = k;
        }
    }
    fclose(f);
    if (sscanf(last, "{\"seq\":%" SCNd64, last_seq) != 1)
        *last_seq = -1;
    return 0;
}

static int verify(const char *dir, const struct e2e *e, struct bench_result *res)
{
    char path[4096];
    uint64_t lines;
    int64_t last;

    snprintf(path, sizeof(path), "%s/out.jsonl", dir);
    if (count_lines(path, &lines, &last)) {
        snprintf(res->note, sizeof(res->note), "cannot read %s", path);
        return -1;
    }
    if (lines != (uint64_t)e->final_seq || last != e->final_seq ||
        e->delivered != (uint64_t)e->final_seq) {
        snprintf(res->note, sizeof(res->note),
                 "output file has %" PRIu64 " lines (last seq %" PRId64 "), delivered %" PRIu64
                 ", expected %" PRId64,
                 lines, last, e->delivered, e->final_seq);
        return -1;
    }
    /* stored = emitted minus the gate counter's first reading (a baseline) */
    if (e->final_seq < e->n - e->n / 100) {
        snprintf(res->note, sizeof(res->note), "only %" PRId64 " of %ld readings stored",
                 e->final_seq, e->n);
        return -1;
    }
    return 0;
}

static int run_agent(const char *dir, const struct job *j, struct bench_result *res)
{
    char conf[4096];
    struct mt_diags d = {0};
    struct mt_agent *a = NULL;
    struct e2e e = {.n = j->n, .stream = {.n = j->n}};
    int rc = -1;

    snprintf(conf, sizeof(conf), "%s/conf", dir);
    struct mt_agent_opts opts = {.conf_path = conf, .plugin_dir = BENCH_PLUGIN_DIR};
    int xc = mt_agent_init(&a, &opts, &d);
    if (d.n)
        mt_diags_print(&d, stderr);
    mt_diags_free(&d);
    if (xc != MT_EXIT_OK || mt_agent_noutputs(a) != 1) {
        snprintf(res->note, sizeof(res->note), "mt_agent_init: exit code %d", xc);
        goto out;
    }
    e.a = a;
    e.out = mt_agent_output(a, 0);
    uv_timer_init(mt_agent_loop(a), &e.timer);
    e.timer.data = &e;
    uv_timer_start(&e.timer, check_cb, 1, 1);
    e.t0 = bench_now();
    xc = mt_agent_run(a);
    if (!e.done) {
        snprintf(res->note, sizeof(res->note), "agent stopped before delivering (exit %d)", xc);
        goto out;
    }
    if (verify(dir, &e, res))
        goto out;
    res->seconds = e.t_done - e.t0;
    res->seconds2 = e.t_stored - e.t0;
    res->items = (uint64_t)e.final_seq;
    res->items2 = (uint64_t)j->n;
    memcpy(res->cpu, e.cpu, sizeof(res->cpu));
    snprintf(res->note, sizeof(res->note), "%" PRIu64 " writer commits, %" PRIu64 " batches out",
             e.commits, e.batches);
    res->ok = 1;
    rc = 0;
out:
    mt_agent_free(a);
    return rc;
}

static int run_mittari(void *arg, struct bench_result *res)
{
    const struct job *j = arg;
    char *dir = bench_tmpdir("e2e");
    int rc = -1;

    if (!dir)
        return -1;
    if (write_config(dir, j))
        snprintf(res->note, sizeof(res->note), "cannot write the config in %s", dir);
    else
        rc = run_agent(dir, j, res);
    bench_rmtree(dir);
    free(dir);
    return rc;
}

/* ---- the rounds ---- */

enum { M_RAW, M_FULL, M_NORMAL, M_COUNT };

static const char *const mkey[M_COUNT] = {"raw", "full", "normal"};
static const char *const mname[M_COUNT] = {"raw sqlite (WAL, NORMAL)", "mittari sync=full",
                                           "mittari sync=normal"};

struct series {
    double rate[MAX_ROUNDS], rss[MAX_ROUNDS], secs[MAX_ROUNDS], stored_at[MAX_ROUNDS];
    double cpu[3][MAX_ROUNDS]; /* µs per reading by thread role */
    size_t n;
};

static char extra[1024];
static const char *status_listen = "127.0.0.1:0";

static int measure(int m, long n, struct series *s, int round)
{
    struct job j = {.n = n, .sync_full = m == M_FULL, .extra = extra, .listen = status_listen};
    struct bench_result res;
    long rss;
    char g[32];

    sync(); /* the previous run's writeback is not this run's cost */
    int rc = bench_fork(m == M_RAW ? run_raw : run_mittari, &j, &res, &rss);
    if (rc) {
        fprintf(stderr, "bench_throughput: %s failed: %s\n", mname[m],
                res.note[0] ? res.note : "see above");
        return -1;
    }
    double rate = (double)res.items / res.seconds;
    s->rate[s->n] = rate;
    s->rss[s->n] = (double)rss / 1024.0;
    s->secs[s->n] = res.seconds;
    s->stored_at[s->n] = res.seconds2;
    for (int k = 0; k < 3; k++)
        s->cpu[k][s->n] = res.cpu[k] * 1e6 / (double)res.items;
    s->n++;
    printf("%5d  %-26s %12s/s %8.3f s %8.1f MB", round, mname[m], bench_group(rate, g, sizeof(g)),
           res.seconds, (double)rss / 1024.0);
    if (m != M_RAW)
        printf("   all stored at %.3f s, %s", res.seconds2, res.note);
    printf("\n");
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    long n = 2000000;
    int rounds = 3, opt;
    bool want[M_COUNT] = {true, true, true};
    struct series s[M_COUNT];
    char g[3][32];

    while ((opt = getopt(argc, argv, "n:r:o:A:s:")) != -1) {
        switch (opt) {
        case 's':
            status_listen = optarg;
            break;
        case 'n':
            n = atol(optarg);
            break;
        case 'r':
            rounds = atoi(optarg);
            break;
        case 'A':
            if (strlen(extra) + strlen(optarg) + 4 < sizeof(extra)) {
                strcat(extra, "  ");
                strcat(extra, optarg);
                strcat(extra, "\n");
            }
            break;
        case 'o':
            for (int m = 0; m < M_COUNT; m++)
                want[m] = strstr(optarg, mkey[m]) != NULL;
            break;
        default:
            fprintf(stderr,
                    "usage: %s [-n READINGS] [-r ROUNDS (1-%d)] [-o raw,full,normal] [-A 'key: "
                    "value'] [-s LISTEN]\n",
                    argv[0], MAX_ROUNDS);
            return 2;
        }
    }
    if (n < 1000 || rounds < 1 || rounds > MAX_ROUNDS) {
        fprintf(stderr, "bench_throughput: need -n >= 1000 and -r 1..%d\n", MAX_ROUNDS);
        return 2;
    }
    memset(s, 0, sizeof(s));
    mt_diag_init();
    printf("# bench_throughput: %ld readings per run, %d rounds, medians compared\n", n, rounds);
    bench_print_machine();
    printf("# SQLite %s\n", sqlite3_libversion());
    if (extra[0])
        printf("# extra agent settings:\n%s", extra);
    printf("# status.listen: %s\n", status_listen);
    printf("%5s  %-26s %14s %10s %11s\n", "round", "what", "readings/s", "elapsed", "peak RSS");
    for (int r = 1; r <= rounds; r++)
        for (int m = 0; m < M_COUNT; m++)
            if (want[m] && measure(m, n, &s[m], r))
                return 1;

    double raw = bench_median(s[M_RAW].rate, s[M_RAW].n);
    printf("\nmedians of %d rounds:\n", rounds);
    for (int m = 0; m < M_COUNT; m++) {
        if (!s[m].n)
            continue;
        double rate = bench_median(s[m].rate, s[m].n);
        double rss = bench_median(s[m].rss, s[m].n);
        printf("  %-26s %12s readings/s  peak RSS %6.1f MB", mname[m],
               bench_group(rate, g[0], sizeof(g[0])), rss);
        if (m != M_RAW && raw > 0)
            printf("  ratio to raw %5.1f %%  (target >= 40 %%: %s)", 100.0 * rate / raw,
                   rate >= 0.4 * raw ? "met" : "NOT met");
        printf("\n");
    }
    printf("\nCPU time per reading (medians, µs; the loop thread runs the sim and emit, the "
           "writer commits to SQLite, libuv workers read the log and write the file):\n");
    if (s[M_RAW].n)
        printf("  %-26s %.3f (one thread: bind, step, commit)\n", mname[M_RAW],
               bench_median(s[M_RAW].cpu[0], s[M_RAW].n));
    for (int m = M_FULL; m < M_COUNT; m++) {
        if (!s[m].n)
            continue;
        double l = bench_median(s[m].cpu[CPU_LOOP], s[m].n);
        double w = bench_median(s[m].cpu[CPU_WRITER], s[m].n);
        double o = bench_median(s[m].cpu[CPU_WORKERS], s[m].n);
        printf("  %-26s loop %.3f + writer %.3f + output workers %.3f = %.3f\n", mname[m], l, w, o,
               l + w + o);
    }
    printf("\n");
    for (int m = M_FULL; m < M_COUNT; m++) {
        if (!s[m].n)
            continue;
        double st = bench_median(s[m].stored_at, s[m].n);
        double tot = bench_median(s[m].secs, s[m].n);
        printf("  %-26s all stored after %.3f s, all delivered after %.3f s (%s stored/s)\n",
               mname[m], st, tot, bench_group((double)n / st, g[1], sizeof(g[1])));
    }
    bench_print_load("at end");
    return 0;
}
