/*
 * bench_serial: what a serial device sending many lines a second costs the
 * agent (issue 14: per-reading and per-wake overhead at gateway rates).
 *
 * A pty stands in for the device: this program holds its master and writes
 * one "in=N" line per reading at a steady rate (absolute-time sleeps, N
 * counting up); the built `mittari run` reads the slave with the `serial`
 * plugin, decodes each line (the `kv` decoder, or a four-line Lua decoder on
 * the agent's decoder thread) into one cumulative reading, and commits it to
 * its SQLite log (no outputs; agent defaults, so `sync: full`).
 *
 * For each rate (default 10, 100, 1000 lines/s) and decoder, after SETTLE
 * seconds, CPU time and context switches of every agent thread
 * (/proc/PID/task/TID/{schedstat,status}) over a window, by role: the loop
 * (main thread), the writer ("mt-writer"), the decoder ("mt-decoder"), the
 * rest (libuv workers). Rows stored over the window are counted in the log,
 * so a run that lost lines shows it.
 *
 * Baseline in the same run: the same agent with `read_hold: 0`, which reads
 * each line as it comes (one loop wake-up per line, as before issue 14);
 * the ratio held/baseline is printed. With -b DIR also the agent built in
 * DIR (its mittari and plugins/, e.g. a build of the branch point), which
 * knows no read_hold and wakes its writer twice per commit. Nothing here
 * asserts a timing: the program fails only when a run stored nothing.
 *
 * -a 'batch_interval: 1s' adds an agent setting to every run (to weigh one).
 *
 * Usage: bench_serial [-w WINDOW_S] [-r 10,100,1000] [-d kv,lua] [-b DIR] [-a SETTING]
 */
#include <errno.h>
#include <fcntl.h>
#include <pty.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

#ifndef BENCH_MITTARI
#error "BENCH_MITTARI must name the built mittari binary"
#endif

#define SETTLE 3.0

enum role { R_LOOP, R_WRITER, R_DECODER, R_OTHER, R_N };

struct sample {
    unsigned long long ns[R_N];
    long cs[R_N];
};

struct result {
    double cpu[R_N];   /* % of one core */
    double wakes[R_N]; /* context switches per second */
    double stored;     /* rows per second */
    double written;    /* bytes the agent had written to storage, KiB per second */
    double total;
    long rss;
};

static enum role role_of(pid_t pid, const struct bench_thread *t)
{
    char path[96], comm[64] = "";
    if (t->tid == pid)
        return R_LOOP;
    snprintf(path, sizeof(path), "/proc/%d/task/%d/comm", (int)pid, t->tid);
    bench_read_text(path, comm, sizeof(comm));
    if (strncmp(comm, "mt-writer", 9) == 0)
        return R_WRITER;
    if (strncmp(comm, "mt-decoder", 10) == 0)
        return R_DECODER;
    return R_OTHER;
}

static int sample(pid_t pid, bool old_agent, struct sample *s)
{
    struct bench_thread t[64];
    int n = bench_threads((int)pid, t, 64);
    memset(s, 0, sizeof(*s));
    if (n <= 0)
        return -1;
    for (int i = 0; i < n; i++) {
        enum role r = role_of(pid, &t[i]);
        /* an agent from before names no writer: its second thread is it */
        if (old_agent && r == R_OTHER && i == 1)
            r = R_WRITER;
        s->ns[r] += t[i].cpu_ns;
        s->cs[r] += t[i].vol + t[i].invol;
    }
    return 0;
}

static long rows(const char *db_path)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    long n = -1;
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return -1;
    }
    sqlite3_busy_timeout(db, 5000);
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM readings", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        n = (long)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

/* Bytes the process caused to be written to storage (/proc/PID/io), or -1. */
static long long write_bytes(pid_t pid)
{
    char path[64], buf[2048];
    snprintf(path, sizeof(path), "/proc/%d/io", (int)pid);
    if (bench_read_text(path, buf, sizeof(buf)))
        return -1;
    const char *p = strstr(buf, "\nwrite_bytes:");
    return p ? atoll(p + 13) : -1;
}

static long status_kb(pid_t pid, const char *key)
{
    char path[64], buf[4096];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    return bench_read_text(path, buf, sizeof(buf)) ? -1 : bench_field(buf, key);
}

/* Writes "in=N\n" lines at rate per second until the monotonic time end. */
static void feed(int master, double rate, double end, unsigned long *n)
{
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    long step_ns = (long)(1e9 / rate);
    while (bench_now() < end) {
        char line[32];
        int len = snprintf(line, sizeof(line), "in=%lu\n", ++*n);
        if (write(master, line, (size_t)len) != len) {
            /* the agent is behind and the pty full: not this bench's point */
        }
        next.tv_nsec += step_ns;
        while (next.tv_nsec >= 1000000000L) {
            next.tv_nsec -= 1000000000L;
            next.tv_sec++;
        }
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
    }
}

struct variant {
    const char *label;
    const char *binary;
    const char *plugins;
    const char *hold; /* NULL: the option is not given (an agent that has none) */
    bool old_agent;
};

static const char *agent_extra = ""; /* -a: more agent settings for every run */

static int run(const struct variant *v, const char *decoder, double rate, double window,
               struct result *out)
{
    char *dir = bench_tmpdir("serial");
    char conf[4300], lua[4300], slave[128], log[4300], db[4300], y[8192];
    int master = -1, sl = -1, rc = -1;
    pid_t pid = -1;
    unsigned long n = 0;

    memset(out, 0, sizeof(*out));
    if (!dir || openpty(&master, &sl, slave, NULL, NULL))
        goto done;
    /* raw until the agent sets the line up itself: no echo into our writes */
    struct termios tio;
    if (tcgetattr(sl, &tio) == 0) {
        cfmakeraw(&tio);
        tcsetattr(sl, TCSANOW, &tio);
    }
    fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
    snprintf(lua, sizeof(lua), "%s/decode.lua", dir);
    bench_write_file(lua, "function decode(frame, ts)\n"
                          "  local n = frame:match(\"^in=(%d+)$\")\n"
                          "  if not n then return nil end\n"
                          "  return {metric = \"visitors\", kind = \"cumulative\", "
                          "counter = math.tointeger(n), unit = \"persons\"}\n"
                          "end\n");
    int len = snprintf(y, sizeof(y),
                       "agent:\n  site: bench\n  data_dir: %s/data\n  stats_interval: 0\n%s%s"
                       "inputs:\n  door:\n    plugin: serial\n    port: %s\n    baud: 115200\n",
                       dir, agent_extra[0] ? "  " : "", agent_extra[0] ? agent_extra : "", slave);
    if (v->hold)
        len += snprintf(y + len, sizeof(y) - (size_t)len, "    read_hold: %s\n", v->hold);
    if (strcmp(decoder, "lua") == 0)
        snprintf(y + len, sizeof(y) - (size_t)len, "    decoder: lua\n    lua: %s\n", lua);
    else
        snprintf(y + len, sizeof(y) - (size_t)len,
                 "    values: [{field: in, metric: visitors, kind: cumulative, unit: persons}]\n");
    snprintf(conf, sizeof(conf), "%s/mittari.yaml", dir);
    snprintf(log, sizeof(log), "%s/agent.log", dir);
    snprintf(db, sizeof(db), "%s/data/mittari.db", dir);
    if (bench_write_file(conf, y))
        goto done;
    char *argv[] = {(char *)v->binary, "run",         "-c", conf, "--plugin-dir",
                    (char *)v->plugins, NULL};
    pid = bench_spawn(argv, log);
    if (pid < 0)
        goto done;
    struct sample s0, s1;
    feed(master, rate, bench_now() + SETTLE, &n);
    long r0 = rows(db);
    long long wb0 = write_bytes(pid);
    if (sample(pid, v->old_agent, &s0))
        goto done;
    double t0 = bench_now();
    feed(master, rate, t0 + window, &n);
    double wall = bench_now() - t0;
    if (sample(pid, v->old_agent, &s1))
        goto done;
    out->rss = status_kb(pid, "\nVmRSS:");
    long long wb1 = write_bytes(pid);
    out->written = wb0 >= 0 && wb1 >= 0 ? (double)(wb1 - wb0) / 1024 / wall : -1;
    usleep(300000); /* the last batch commits */
    long r1 = rows(db);
    for (int r = 0; r < R_N; r++) {
        out->cpu[r] = (double)(s1.ns[r] - s0.ns[r]) / 1e9 / wall * 100;
        out->wakes[r] = (double)(s1.cs[r] - s0.cs[r]) / wall;
        out->total += out->cpu[r];
    }
    out->stored = r0 >= 0 && r1 >= 0 ? (double)(r1 - r0) / wall : -1;
    rc = out->stored > 0 ? 0 : -1;
    if (rc)
        fprintf(stderr, "# %s %s %.0f/s stored nothing; see %s\n", v->label, decoder, rate, log);
done:
    if (pid > 0)
        bench_stop(pid);
    if (master >= 0)
        close(master);
    if (sl >= 0)
        close(sl);
    if (dir && rc == 0)
        bench_rmtree(dir);
    free(dir);
    return rc;
}

static void print_row(const char *label, const char *decoder, double rate, const struct result *r)
{
    printf("%6.0f  %-4s %-14s %7.3f %7.3f %7.3f %7.3f %7.3f  %6.0f %6.0f %6.0f %6.0f  %8.1f %7.1f "
           "%6.1f\n",
           rate, decoder, label, r->total, r->cpu[R_LOOP], r->cpu[R_WRITER], r->cpu[R_DECODER],
           r->cpu[R_OTHER], r->wakes[R_LOOP], r->wakes[R_WRITER], r->wakes[R_DECODER],
           r->wakes[R_OTHER], r->stored, r->written, (double)r->rss / 1024);
}

int main(int argc, char **argv)
{
    double window = 15;
    char rates_s[128] = "10,100,1000", decs_s[64] = "kv,lua", before[4096] = "", extra[256] = "";
    int opt, fails = 0;

    while ((opt = getopt(argc, argv, "w:r:d:b:a:")) != -1) {
        switch (opt) {
        case 'w': window = atof(optarg); break;
        case 'r': snprintf(rates_s, sizeof(rates_s), "%s", optarg); break;
        case 'd': snprintf(decs_s, sizeof(decs_s), "%s", optarg); break;
        case 'b': snprintf(before, sizeof(before), "%s", optarg); break;
        case 'a':
            snprintf(extra, sizeof(extra), "%s\n", optarg);
            agent_extra = extra;
            break;
        default:
            fprintf(stderr,
                    "usage: %s [-w WINDOW_S] [-r 10,100,1000] [-d kv,lua] [-b DIR] "
                    "[-a 'agent_key: value']\n",
                    argv[0]);
            return 2;
        }
    }
    char before_bin[4200], before_plugins[4200];
    snprintf(before_bin, sizeof(before_bin), "%s/mittari", before);
    snprintf(before_plugins, sizeof(before_plugins), "%s/plugins", before);
    const struct variant vs[] = {
        {"read_hold 0", BENCH_MITTARI, BENCH_PLUGIN_DIR, "0", false},
        {"read_hold 50ms", BENCH_MITTARI, BENCH_PLUGIN_DIR, "50ms", false},
        {"before", before_bin, before_plugins, NULL, true},
    };
    size_t nv = before[0] ? 3 : 2;

    bench_print_machine();
    printf("# serial lines: one \"in=N\" line per reading from a pty, the serial plugin, the "
           "SQLite log (sync: full), %.0f s window after %.0f s%s%s\n",
           window, SETTLE, extra[0] ? "; agent setting: " : "", extra);
    printf("# CPU: %% of one core by thread; w.*: context switches per second by thread; "
           "stored: rows per second; written: KiB/s to storage (/proc/PID/io)\n");
    printf("%6s  %-4s %-14s %7s %7s %7s %7s %7s  %6s %6s %6s %6s  %8s %7s %6s\n", "lines",
           "dec", "agent", "CPU", "loop", "writer", "decoder", "other", "w.loop", "w.wrt",
           "w.dec", "w.oth", "stored/s", "written", "RSS MB");
    for (char *rp = strtok(rates_s, ","); rp; rp = strtok(NULL, ",")) {
        double rate = atof(rp);
        char decs[64];
        snprintf(decs, sizeof(decs), "%s", decs_s);
        char *save = NULL;
        for (char *dp = strtok_r(decs, ",", &save); dp; dp = strtok_r(NULL, ",", &save)) {
            struct result res[3];
            for (size_t i = 0; i < nv; i++) {
                if (run(&vs[i], dp, rate, window, &res[i]))
                    fails++;
                print_row(vs[i].label, dp, rate, &res[i]);
            }
            printf("%6.0f  %-4s %-14s %7.2f  (CPU ratio, read_hold 50ms / 0); loop wakes "
                   "%.2f\n",
                   rate, dp, "ratio", res[1].total / (res[0].total > 0 ? res[0].total : 1e-9),
                   res[1].wakes[R_LOOP] / (res[0].wakes[R_LOOP] > 0 ? res[0].wakes[R_LOOP] : 1));
            if (nv == 3)
                printf("%6.0f  %-4s %-14s %7.2f  (CPU ratio, read_hold 50ms / before); writer "
                       "wakes %.2f\n",
                       rate, dp, "ratio", res[1].total / (res[2].total > 0 ? res[2].total : 1e-9),
                       res[1].wakes[R_WRITER] /
                           (res[2].wakes[R_WRITER] > 0 ? res[2].wakes[R_WRITER] : 1));
            fflush(stdout);
        }
    }
    bench_print_load("at end");
    return fails ? 1 : 0;
}
