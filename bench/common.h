/*
 * common: helpers shared by the bench programs: temp dirs, forked
 * measurements with their own peak RSS, medians, number formatting.
 *
 * A bench program prints figures; it never asserts a timing. It fails (exit
 * 1) only when a run did not do what it measures (e.g. an output file with
 * the wrong number of lines).
 */
#ifndef MT_BENCH_COMMON_H
#define MT_BENCH_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct mt_writer;

/* A finite stream of n readings (the sim with a limit) into a writer,
 * watched from a timer on the agent's loop. Once all n are queued the tail
 * is flushed (not left for batch_interval). Stored means the committed seq
 * covers every queued reading but the cumulative counters' first samples
 * (a baseline, not stored); should a counter repeat (not stored either),
 * the writer going idle is the fallback. */
struct bench_stream {
    long n;
    bool flushed, idle_seen;
};
/* True once every reading of s is stored; *committed is the writer's
 * committed seq (when the tail has been flushed). */
bool bench_stored(struct bench_stream *s, struct mt_writer *w, int64_t *committed);

/* What a measuring child reports back through a pipe. */
struct bench_result {
    int ok;          /* 1 = the run did what it measures */
    double seconds;  /* timed part */
    double seconds2; /* a second mark inside it (e.g. all stored), 0 = none */
    uint64_t items;  /* readings measured */
    uint64_t items2; /* second count (e.g. emitted), 0 = none */
    double cpu[3];   /* CPU seconds by thread role, as the program defines */
    char note[256];  /* why it failed, or a remark */
};

/* Runs fn(arg, &res) in a forked child; the child's peak RSS (KiB) comes from
 * wait4's ru_maxrss, so figures of different runs never mix. Returns 0 when
 * the child exited normally and reported ok. */
int bench_fork(int (*fn)(void *arg, struct bench_result *res), void *arg, struct bench_result *res,
               long *maxrss_kib);

/* One thread of a process, from /proc/PID/task/TID/{stat,status,schedstat}. */
struct bench_thread {
    int tid;
    unsigned long long start;  /* clock ticks after boot: creation order */
    long vol, invol;           /* context switches */
    unsigned long long cpu_ns; /* time on a CPU */
};

/* Threads of pid in creation order (the main thread first); returns how many
 * (at most max), or -1. */
int bench_threads(int pid, struct bench_thread *v, size_t max);

/* Reads a small file (e.g. under /proc) into buf, NUL-terminated. */
int bench_read_text(const char *path, char *buf, size_t len);
/* The number after key in text ("\nVmRSS:"), or -1. */
long bench_field(const char *text, const char *key);

double bench_now(void);                   /* CLOCK_MONOTONIC seconds */
double bench_median(double *v, size_t n); /* sorts v */
/* mkdtemp under $TMPDIR (or /tmp); caller frees. */
char *bench_tmpdir(const char *tag);
void bench_rmtree(const char *path);
int bench_write_file(const char *path, const char *text);
/* "1,234,567" */
const char *bench_group(double v, char *buf, size_t len);
/* "2026-05-04 12:00 UTC, host, N vCPU, kernel" on one line */
void bench_print_machine(void);
/* "# load average WHEN: 1m 5m 15m" */
void bench_print_load(const char *when);
/* Starts argv (PATH searched) with stdout to /dev/null, stderr to log, and no
 * systemd notify variables; the pid, or -1. */
pid_t bench_spawn(char *const argv[], const char *log);
/* SIGTERM, then SIGKILL after 15 s; reaps it. pid <= 0: nothing. */
void bench_stop(pid_t pid);

#endif
