/*
 * bench_idle: what the agent costs when there is little or nothing to do.
 *
 *   RSS      the built `mittari run -c conf.d` (the demo config, data dir in
 *            a temp dir via MITTARI_DATA_DIR) as a child process; after
 *            RSS_WAIT seconds VmRSS, RssAnon, RssFile from /proc/PID/status.
 *            Baseline in the same run: this program re-executed as a minimal
 *            idle process with the same libraries (libuv loop + one SQLite
 *            WAL database open), measured the same way. Target: <= 8 MB.
 *   wakeups  voluntary + involuntary context switches of every thread
 *            (/proc/PID/task/TID/status) over a window, after the agent has
 *            settled. (1) an agent with no inputs, one file output,
 *            housekeeping_interval 10s, stats_interval 0 and the status
 *            endpoint with refresh 10s: the timers are the writer's
 *            housekeeping and the status snapshot, so 2 x window/10s
 *            wakeups are expected, and nothing else should wake. (2) the demo config
 *            (sim at rate 4, two file outputs), for information.
 *
 * Usage: bench_idle [-w WINDOW_SECONDS]
 * (bench_idle --baseline DIR is the baseline child; not for direct use.)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "common.h"

#ifndef BENCH_MITTARI
#error "BENCH_MITTARI must name the built mittari binary"
#endif

#define RSS_WAIT 5
#define SETTLE 3
#define MAX_THREADS 64
#define HOUSEKEEPING_S 10
#define MT_BENCH_ARRAY(a) (sizeof(a) / sizeof((a)[0]))
#define STATUS_REFRESH_S 10 /* status.refresh: the status snapshot timer */

/* ---- the baseline child ---- */

static void idle_timer(uv_timer_t *t)
{
    (void)t;
}

static int baseline_main(const char *dir)
{
    char path[4096];
    sqlite3 *db;
    uv_loop_t loop;
    uv_timer_t t;

    snprintf(path, sizeof(path), "%s/baseline.db", dir);
    if (sqlite3_open(path, &db) != SQLITE_OK ||
        sqlite3_exec(db,
                     "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                     "CREATE TABLE IF NOT EXISTS readings(seq INTEGER PRIMARY KEY,"
                     " ts INTEGER NOT NULL, series INTEGER NOT NULL, value REAL NOT NULL,"
                     " subject TEXT); INSERT INTO readings VALUES(1, 0, 1, 1.0, NULL)",
                     NULL, NULL, NULL) != SQLITE_OK)
        return 1;
    uv_loop_init(&loop);
    uv_timer_init(&loop, &t);
    uv_timer_start(&t, idle_timer, 3600 * 1000, 3600 * 1000);
    uv_run(&loop, UV_RUN_DEFAULT); /* until SIGTERM */
    return 0;
}

/* ---- the http receiver child ---- */

/* One connection: reads requests (headers, then Content-Length bytes of
 * body), answers each with 200 and counts it in DIR/count. */
struct receiver {
    const char *dir;
    unsigned long count;
};

struct rconn {
    uv_tcp_t tcp;
    char buf[1 << 16];
    size_t len;  /* bytes in buf */
    size_t skip; /* body bytes still to discard */
    struct receiver *rx;
};

static void rconn_closed(uv_handle_t *h)
{
    free(h->data);
}

static void rconn_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    struct rconn *c = h->data;
    (void)hint;
    *b = uv_buf_init(c->buf + c->len, (unsigned)(sizeof(c->buf) - c->len));
}

static void answered(uv_write_t *w, int status)
{
    (void)status;
    free(w);
}

static void answer(struct rconn *c)
{
    static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    uv_write_t *w = malloc(sizeof(*w));
    uv_buf_t b = uv_buf_init((char *)ok, sizeof(ok) - 1);
    char path[4096], n[32];

    if (w && uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, answered) != 0)
        free(w);
    c->rx->count++;
    snprintf(path, sizeof(path), "%s/count", c->rx->dir);
    snprintf(n, sizeof(n), "%lu\n", c->rx->count);
    bench_write_file(path, n);
}

static void rconn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct rconn *c = s->data;
    (void)b;
    if (nread < 0) {
        uv_close((uv_handle_t *)s, rconn_closed);
        return;
    }
    c->len += (size_t)nread;
    for (;;) {
        if (c->skip) { /* a body: dropped */
            size_t k = c->skip < c->len ? c->skip : c->len;
            memmove(c->buf, c->buf + k, c->len - k);
            c->len -= k;
            c->skip -= k;
            if (c->skip)
                return;
            answer(c);
        }
        char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (!end) {
            if (c->len == sizeof(c->buf)) /* headers too long: not ours */
                uv_close((uv_handle_t *)s, rconn_closed);
            return;
        }
        size_t head = (size_t)(end - c->buf) + 4;
        long body = 0;
        for (char *p = c->buf; p < end; p++)
            if ((p == c->buf || p[-1] == '\n') && strncasecmp(p, "content-length:", 15) == 0)
                body = strtol(p + 15, NULL, 10);
        memmove(c->buf, c->buf + head, c->len - head);
        c->len -= head;
        c->skip = body > 0 ? (size_t)body : 0;
        if (!c->skip)
            answer(c);
    }
}

static void receiver_accept(uv_stream_t *server, int status)
{
    struct rconn *c;
    if (status < 0 || !(c = calloc(1, sizeof(*c))))
        return;
    c->rx = server->data;
    uv_tcp_init(server->loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) == 0)
        uv_read_start((uv_stream_t *)&c->tcp, rconn_alloc, rconn_read);
    else
        uv_close((uv_handle_t *)&c->tcp, rconn_closed);
}

static int receiver_main(const char *dir)
{
    uv_loop_t loop;
    uv_tcp_t server;
    struct sockaddr_in addr;
    struct sockaddr_storage got;
    int len = sizeof(got);
    char path[4096], port[32];
    struct receiver rx = {dir, 0};

    uv_loop_init(&loop);
    uv_tcp_init(&loop, &server);
    server.data = &rx;
    uv_ip4_addr("127.0.0.1", 0, &addr);
    if (uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0) ||
        uv_listen((uv_stream_t *)&server, 16, receiver_accept) ||
        uv_tcp_getsockname(&server, (struct sockaddr *)&got, &len))
        return 1;
    snprintf(port, sizeof(port), "%d\n", ntohs(((struct sockaddr_in *)&got)->sin_port));
    snprintf(path, sizeof(path), "%s/port", dir);
    if (bench_write_file(path, port))
        return 1;
    uv_run(&loop, UV_RUN_DEFAULT); /* until SIGTERM */
    return 0;
}

/* ---- child processes ---- */

struct child {
    pid_t pid;
    const char *what;
    char log[4096];
};

static int spawn(struct child *c, char *const argv[], const char *data_dir, const char *logdir)
{
    snprintf(c->log, sizeof(c->log), "%s/stderr.log", logdir);
    fflush(stdout);
    c->pid = fork();
    if (c->pid < 0)
        return -errno;
    if (c->pid == 0) {
        int out = open("/dev/null", O_WRONLY);
        int err = open(c->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (out < 0 || err < 0)
            _exit(127);
        dup2(out, STDOUT_FILENO);
        dup2(err, STDERR_FILENO);
        if (data_dir)
            setenv("MITTARI_DATA_DIR", data_dir, 1);
        unsetenv("NOTIFY_SOCKET");
        unsetenv("WATCHDOG_USEC");
        execv(argv[0], argv);
        _exit(127);
    }
    return 0;
}

static bool alive(const struct child *c)
{
    int st;
    return waitpid(c->pid, &st, WNOHANG) == 0;
}

/* SIGTERM, wait up to 15 s, then SIGKILL. Returns the exit status. */
static int stop_child(struct child *c)
{
    int st = 0;
    kill(c->pid, SIGTERM);
    for (int i = 0; i < 1500; i++) {
        pid_t r = waitpid(c->pid, &st, WNOHANG);
        if (r == c->pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (r < 0)
            return -1;
        usleep(10000);
    }
    kill(c->pid, SIGKILL);
    waitpid(c->pid, &st, 0);
    return 137;
}

static void show_log(const struct child *c)
{
    char line[512];
    FILE *f = fopen(c->log, "r");
    if (!f)
        return;
    fprintf(stderr, "--- %s stderr ---\n", c->what);
    while (fgets(line, sizeof(line), f))
        fputs(line, stderr);
    fclose(f);
}

/* ---- /proc ---- */

struct mem {
    long rss, anon, file, shmem, hwm, threads; /* kB; threads a count */
    long libs;                                 /* shared objects mapped */
};

/* The shared objects pid has mapped: distinct paths with ".so" in their
 * name in /proc/PID/maps. */
static long count_libs(pid_t pid)
{
    char path[64], line[4608], seen[256][256];
    long n = 0;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
    if (!(f = fopen(path, "r")))
        return -1;
    while (fgets(line, sizeof(line), f)) {
        char *name = strchr(line, '/');
        if (!name || !strstr(name, ".so"))
            continue;
        name[strcspn(name, "\n")] = 0;
        bool dup = false;
        for (long i = 0; i < n && !dup; i++)
            dup = strncmp(seen[i], name, sizeof(seen[i]) - 1) == 0;
        if (!dup && n < (long)MT_BENCH_ARRAY(seen))
            snprintf(seen[n++], sizeof(seen[0]), "%s", name);
    }
    fclose(f);
    return n;
}

static int read_mem(pid_t pid, struct mem *m)
{
    char path[64], buf[4096];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    if (bench_read_text(path, buf, sizeof(buf)))
        return -1;
    m->rss = bench_field(buf, "\nVmRSS:");
    m->anon = bench_field(buf, "\nRssAnon:");
    m->file = bench_field(buf, "\nRssFile:");
    m->shmem = bench_field(buf, "\nRssShmem:");
    m->hwm = bench_field(buf, "\nVmHWM:");
    m->threads = bench_field(buf, "\nThreads:");
    m->libs = count_libs(pid);
    return 0;
}

struct snapshot {
    struct bench_thread t[MAX_THREADS];
    size_t n;
};

static int snapshot(pid_t pid, struct snapshot *s)
{
    int n = bench_threads((int)pid, s->t, MAX_THREADS);
    s->n = n > 0 ? (size_t)n : 0;
    return n > 0 ? 0 : -1;
}

static const struct bench_thread *find(const struct snapshot *s, int tid)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->t[i].tid == tid)
            return &s->t[i];
    return NULL;
}

/* Thread roles by creation order: the loop is the main thread, the log
 * writer is started by mt_agent_init before any libuv work is queued, the
 * libuv pool threads come after. */
static const char *role(const struct snapshot *s, size_t i, pid_t pid)
{
    if (s->t[i].tid == pid)
        return "loop (main)";
    return i == 1 ? "log writer" : "libuv worker";
}

/* Context switches of all threads between a and b; per-thread lines when
 * verbose. */
static long wakeups(pid_t pid, const struct snapshot *a, const struct snapshot *b, double secs,
                    bool verbose)
{
    long total = 0;
    for (size_t i = 0; i < b->n; i++) {
        const struct bench_thread *t1 = &b->t[i], *t0 = find(a, t1->tid);
        long v = t1->vol - (t0 ? t0->vol : 0), iv = t1->invol - (t0 ? t0->invol : 0);
        total += v + iv;
        if (verbose)
            printf("    tid %-7d %-13s %5ld voluntary + %3ld involuntary = %5.2f/s%s\n", t1->tid,
                   role(b, i, pid), v, iv, (double)(v + iv) / secs, t0 ? "" : " (new thread)");
    }
    return total;
}

/* ---- the measurements ---- */

static void print_mem(const char *what, const struct mem *m)
{
    printf("  %-34s VmRSS %6.2f MB  (RssAnon %5.2f, RssFile %5.2f, RssShmem %5.2f MB; "
           "VmHWM %5.2f MB; %ld threads; %ld libraries)\n",
           what, m->rss / 1024.0, m->anon / 1024.0, m->file / 1024.0, m->shmem / 1024.0,
           m->hwm / 1024.0, m->threads, m->libs);
}

static int measure_rss_baseline(const char *self, struct mem *base)
{
    char *dir = bench_tmpdir("idle-base");
    struct child c = {.what = "baseline"};
    int rc = -1;

    if (!dir)
        return -1;
    char *argv[] = {(char *)self, "--baseline", dir, NULL};
    if (spawn(&c, argv, NULL, dir) == 0) {
        sleep(RSS_WAIT);
        if (alive(&c) && read_mem(c.pid, base) == 0)
            rc = 0;
        stop_child(&c);
        if (rc)
            show_log(&c);
    }
    bench_rmtree(dir);
    free(dir);
    return rc;
}

/* Samples the agent's threads over window seconds after it settled. */
static int measure_wakeups(const struct child *c, int window, long *total, bool verbose)
{
    struct snapshot a, b;
    if (snapshot(c->pid, &a))
        return -1;
    double t0 = bench_now();
    sleep((unsigned)window);
    if (!alive(c) || snapshot(c->pid, &b))
        return -1;
    *total = wakeups(c->pid, &a, &b, bench_now() - t0, verbose);
    return 0;
}

static int demo_agent(int window, const struct mem *base)
{
    char *dir = bench_tmpdir("idle-demo");
    char conf[4096];
    struct child c = {.what = "mittari (demo config)"};
    struct mem m;
    long total;
    int rc = -1;

    if (!dir)
        return -1;
    snprintf(conf, sizeof(conf), "%s/conf.d", BENCH_SOURCE_DIR);
    char *argv[] = {BENCH_MITTARI, "run", "-c", conf, "-P", BENCH_PLUGIN_DIR, NULL};
    if (spawn(&c, argv, dir, dir))
        goto out;
    sleep(RSS_WAIT);
    if (!alive(&c) || read_mem(c.pid, &m)) {
        fprintf(stderr, "bench_idle: the demo agent is not running\n");
        goto stop;
    }
    printf("idle RSS after %d s (demo config conf.d, sim at rate 4, two file outputs):\n",
           RSS_WAIT);
    print_mem("baseline (libuv + SQLite WAL db)", base);
    print_mem("mittari run -c conf.d", &m);
    printf("  ratio to baseline %.2fx VmRSS, %.2fx RssAnon; target VmRSS <= 8 MB: %s\n",
           (double)m.rss / (double)base->rss, (double)m.anon / (double)base->anon,
           m.rss <= 8 * 1024 ? "met" : "NOT met");
    printf("\nwakeups with the demo config (for information), %d s window:\n", window);
    if (measure_wakeups(&c, window, &total, true)) {
        fprintf(stderr, "bench_idle: the demo agent died\n");
        goto stop;
    }
    printf("  total %ld context switches = %.1f wakeups/s\n", total, (double)total / window);
    rc = 0;
stop:
    if (stop_child(&c) != 0 || rc)
        show_log(&c);
out:
    bench_rmtree(dir);
    free(dir);
    return rc;
}

static int quiet_agent(int window)
{
    char *dir = bench_tmpdir("idle-quiet");
    char path[4096], *text = NULL;
    struct child c = {.what = "mittari (no inputs)"};
    struct mem m;
    long total;
    int rc = -1;

    if (!dir)
        return -1;
    snprintf(path, sizeof(path), "%s/conf", dir);
    mkdir(path, 0700);
    if (asprintf(&text,
                 "agent:\n"
                 "  site: bench\n"
                 "  data_dir: %s/data\n"
                 "  housekeeping_interval: %ds\n"
                 "  stats_interval: 0\n"
                 "outputs:\n"
                 "  archive:\n"
                 "    type: file\n"
                 "    path: %s/out.jsonl\n"
                 "status:\n"
                 "  listen: \"127.0.0.1:0\"\n"
                 "  refresh: %ds\n",
                 dir, HOUSEKEEPING_S, dir, STATUS_REFRESH_S) < 0)
        goto out;
    snprintf(path, sizeof(path), "%s/conf/10-quiet.yaml", dir);
    if (bench_write_file(path, text))
        goto out;
    snprintf(path, sizeof(path), "%s/conf", dir);
    char *argv[] = {BENCH_MITTARI, "run", "-c", path, "-P", BENCH_PLUGIN_DIR, NULL};
    if (spawn(&c, argv, NULL, dir))
        goto out;
    sleep(SETTLE);
    if (!alive(&c) || read_mem(c.pid, &m)) {
        fprintf(stderr, "bench_idle: the quiet agent is not running\n");
        goto stop;
    }
    printf("\nidle wakeups, no inputs, one file output, housekeeping_interval %ds, "
           "stats_interval 0, status refresh %ds; %d s window after %d s settling:\n",
           HOUSEKEEPING_S, STATUS_REFRESH_S, window, SETTLE);
    print_mem("mittari (no inputs)", &m);
    if (measure_wakeups(&c, window, &total, true)) {
        fprintf(stderr, "bench_idle: the quiet agent died\n");
        goto stop;
    }
    /* the writer's housekeeping timer and the status snapshot, nothing else */
    double expected = (double)window / HOUSEKEEPING_S + (double)window / STATUS_REFRESH_S;
    bool ok = total <= (long)expected + 1;
    printf("  measured %ld wakeups, expected %.0f (housekeeping every %d s on the writer "
           "thread, the status snapshot every %d s on the loop); ratio %.2f: %s\n",
           total, expected, HOUSEKEEPING_S, STATUS_REFRESH_S,
           expected > 0 ? total / expected : 0.0,
           ok ? "as expected: only the configured timer wakes the agent"
              : "MORE wakeups than the configured timers imply");
    rc = 0;
stop:
    if (stop_child(&c) != 0 || rc)
        show_log(&c);
out:
    free(text);
    bench_rmtree(dir);
    free(dir);
    return rc;
}

/* ---- builds and the http output module ---- */

struct build {
    const char *label;
    char mittari[4096];
    char plugins[4096];
};

/* The demo configuration in dir/conf (links to conf.d's files), with an
 * http output to 127.0.0.1:port when port > 0. */
static int demo_conf(const char *dir, int port)
{
    static const char *const files[] = {"10-agent.yaml", "20-inputs.yaml", "30-outputs.yaml",
                                        "profiles"};
    char from[4096], to[4096], text[512];

    snprintf(to, sizeof(to), "%s/conf", dir);
    if (mkdir(to, 0700))
        return -1;
    for (size_t i = 0; i < MT_BENCH_ARRAY(files); i++) {
        snprintf(from, sizeof(from), "%s/conf.d/%s", BENCH_SOURCE_DIR, files[i]);
        snprintf(to, sizeof(to), "%s/conf/%s", dir, files[i]);
        if (symlink(from, to))
            return -1;
    }
    if (port <= 0)
        return 0;
    snprintf(text, sizeof(text),
             "outputs:\n  warehouse:\n    type: http\n    url: http://127.0.0.1:%d/ingest\n",
             port);
    snprintf(to, sizeof(to), "%s/conf/40-http.yaml", dir);
    return bench_write_file(to, text);
}

static long read_count(const char *dir)
{
    char path[4096], buf[64];
    snprintf(path, sizeof(path), "%s/count", dir);
    return bench_read_text(path, buf, sizeof(buf)) ? 0 : strtol(buf, NULL, 10);
}

/* b's agent on the demo config (+ http to port): its memory after RSS_WAIT
 * s; with http, the receiver in recv_dir must have got a batch. */
static int demo_rss(const struct build *b, int port, const char *recv_dir, struct mem *m)
{
    char *dir = bench_tmpdir("idle-rss");
    char conf[4096];
    struct child c = {.what = b->label};
    int rc = -1;

    if (!dir)
        return -1;
    snprintf(conf, sizeof(conf), "%s/conf", dir);
    char *argv[] = {(char *)b->mittari, "run", "-c", conf, "-P", (char *)b->plugins, NULL};
    if (demo_conf(dir, port) || spawn(&c, argv, dir, dir))
        goto out;
    long before = port > 0 ? read_count(recv_dir) : 0;
    sleep(RSS_WAIT);
    if (!alive(&c) || read_mem(c.pid, m))
        fprintf(stderr, "bench_idle: %s is not running\n", b->label);
    else if (port > 0 && read_count(recv_dir) <= before)
        fprintf(stderr, "bench_idle: %s: the http output delivered nothing\n", b->label);
    else
        rc = 0;
    if (stop_child(&c) != 0 || rc)
        show_log(&c);
out:
    bench_rmtree(dir);
    free(dir);
    return rc;
}

static void print_diff(const char *what, const struct mem *a, const struct mem *b)
{
    printf("  %-34s %+6.2f MB VmRSS, %+5.2f MB RssAnon, %+5.2f MB RssFile, %+ld libraries\n",
           what, (b->rss - a->rss) / 1024.0, (b->anon - a->anon) / 1024.0,
           (b->file - a->file) / 1024.0, b->libs - a->libs);
}

/* The demo config with and without an http output, for each build. */
static int http_module(const struct build *builds, size_t n, const char *self)
{
    char *dir = bench_tmpdir("idle-recv"), path[4096], buf[32];
    struct child r = {.what = "http receiver"};
    struct mem m[2][2];
    int rc = -1, port = 0;

    if (!dir)
        return -1;
    char *argv[] = {(char *)self, "--receiver", dir, NULL};
    if (spawn(&r, argv, NULL, dir))
        goto out;
    snprintf(path, sizeof(path), "%s/port", dir);
    for (int i = 0; i < 500 && bench_read_text(path, buf, sizeof(buf)); i++)
        usleep(10000);
    port = atoi(buf);
    if (port <= 0) {
        fprintf(stderr, "bench_idle: the http receiver did not start\n");
        goto stop;
    }
    printf("\nRSS after %d s, the demo config alone and with one http output delivering to a "
           "receiver on 127.0.0.1:\n", RSS_WAIT);
    for (size_t i = 0; i < n; i++) {
        char what[128];
        if (demo_rss(&builds[i], 0, dir, &m[i][0]) || demo_rss(&builds[i], port, dir, &m[i][1]))
            goto stop;
        snprintf(what, sizeof(what), "%s, demo", builds[i].label);
        print_mem(what, &m[i][0]);
        snprintf(what, sizeof(what), "%s, demo + http", builds[i].label);
        print_mem(what, &m[i][1]);
    }
    printf("  the http output's cost (demo + http minus demo):\n");
    for (size_t i = 0; i < n; i++)
        print_diff(builds[i].label, &m[i][0], &m[i][1]);
    if (n == 2)
        printf("  %s / %s: demo %.2fx VmRSS (%ld / %ld libraries), demo + http %.2fx VmRSS\n",
               builds[0].label, builds[1].label, (double)m[0][0].rss / (double)m[1][0].rss,
               m[0][0].libs, m[1][0].libs, (double)m[0][1].rss / (double)m[1][1].rss);
    printf("  the receiver got %ld batches\n", read_count(dir));
    rc = 0;
stop:
    stop_child(&r);
out:
    bench_rmtree(dir);
    free(dir);
    return rc;
}

int main(int argc, char **argv)
{
    int window = 20, opt;
    struct mem base;
    struct build builds[2] = {{.label = "this build", .mittari = BENCH_MITTARI,
                               .plugins = BENCH_PLUGIN_DIR}};
    size_t nbuilds = 1;

    if (argc == 3 && strcmp(argv[1], "--baseline") == 0)
        return baseline_main(argv[2]);
    if (argc == 3 && strcmp(argv[1], "--receiver") == 0)
        return receiver_main(argv[2]);
    while ((opt = getopt(argc, argv, "w:B:")) != -1) {
        switch (opt) {
        case 'w':
            window = atoi(optarg);
            break;
        case 'B':
            builds[1].label = "before";
            snprintf(builds[1].mittari, sizeof(builds[1].mittari), "%s/mittari", optarg);
            snprintf(builds[1].plugins, sizeof(builds[1].plugins), "%s/plugins", optarg);
            nbuilds = 2;
            break;
        default:
            fprintf(stderr, "usage: %s [-w WINDOW_SECONDS] [-B BUILD_DIR]\n", argv[0]);
            return 2;
        }
    }
    if (window < 1) {
        fprintf(stderr, "bench_idle: -w must be >= 1\n");
        return 2;
    }
    printf("# bench_idle: %s\n", BENCH_MITTARI);
    bench_print_machine();
    if (measure_rss_baseline("/proc/self/exe", &base)) {
        fprintf(stderr, "bench_idle: the baseline child failed\n");
        return 1;
    }
    if (demo_agent(window, &base))
        return 1;
    if (quiet_agent(window))
        return 1;
    if (nbuilds == 2)
        printf("\nbefore: %s\n", builds[1].mittari);
    if (http_module(builds, nbuilds, "/proc/self/exe"))
        return 1;
    bench_print_load("at end");
    return 0;
}
