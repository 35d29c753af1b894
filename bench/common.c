#include "common.h"

#include "writer.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

bool bench_stored(struct bench_stream *s, struct mt_writer *w, int64_t *committed)
{
    const struct mt_writer_stats *ws = mt_writer_stats(w);

    *committed = 0;
    if (!s->flushed) {
        if ((long)ws->queued < s->n)
            return false;
        mt_writer_flush(w); /* the finite stream's tail: no batch_interval wait */
        s->flushed = true;
    }
    *committed = mt_writer_committed(w);
    if (!s->idle_seen && mt_writer_idle(w)) {
        s->idle_seen = true;
        *committed = mt_writer_committed(w);
    }
    uint64_t expect = (uint64_t)ws->queued - (uint64_t)ws->counter_first;
    return (uint64_t)*committed == expect || s->idle_seen;
}

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double bench_median(double *v, size_t n)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

char *bench_tmpdir(const char *tag)
{
    const char *base = getenv("TMPDIR");
    char *p;

    if (!base || !*base)
        base = "/tmp";
    if (asprintf(&p, "%s/mittari-bench-%s-XXXXXX", base, tag) < 0)
        return NULL;
    if (!mkdtemp(p)) {
        fprintf(stderr, "mkdtemp %s: %s\n", p, strerror(errno));
        free(p);
        return NULL;
    }
    return p;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void bench_rmtree(const char *path)
{
    if (path && *path)
        nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int bench_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -errno;
    int bad = fputs(text, f) < 0;
    bad |= fclose(f) != 0;
    return bad ? -EIO : 0;
}

int bench_fork(int (*fn)(void *arg, struct bench_result *res), void *arg, struct bench_result *res,
               long *maxrss_kib)
{
    int fds[2];
    struct rusage ru;
    int status = 0;

    memset(res, 0, sizeof(*res));
    *maxrss_kib = 0;
    fflush(stdout);
    fflush(stderr);
    if (pipe(fds))
        return -errno;
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -errno;
    }
    if (pid == 0) {
        struct bench_result r;
        memset(&r, 0, sizeof(r));
        close(fds[0]);
        int rc = fn(arg, &r);
        if (rc && r.ok)
            r.ok = 0;
        ssize_t w = write(fds[1], &r, sizeof(r));
        _exit(w == (ssize_t)sizeof(r) ? 0 : 1);
    }
    close(fds[1]);
    ssize_t n = read(fds[0], res, sizeof(*res));
    close(fds[0]);
    while (wait4(pid, &status, 0, &ru) < 0 && errno == EINTR)
        ;
    *maxrss_kib = ru.ru_maxrss;
    if (n != (ssize_t)sizeof(*res)) {
        memset(res, 0, sizeof(*res));
        snprintf(res->note, sizeof(res->note), "child died (status 0x%x)", status);
        return -1;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status))
        return -1;
    return res->ok ? 0 : -1;
}

const char *bench_group(double v, char *buf, size_t len)
{
    char raw[64];
    int n = snprintf(raw, sizeof(raw), "%.0f", v);
    size_t o = 0;

    for (int i = 0; i < n && o + 2 < len; i++) {
        if (i > 0 && raw[i - 1] != '-' && (n - i) % 3 == 0)
            buf[o++] = ',';
        buf[o++] = raw[i];
    }
    buf[o] = 0;
    return buf;
}

void bench_print_machine(void)
{
    struct utsname u;
    char when[64];
    time_t t = time(NULL);
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(when, sizeof(when), "%Y-%m-%d %H:%M UTC", &tm);
    uname(&u);
    printf("# %s, %s, %ld vCPU, Linux %s %s\n", when, u.nodename, sysconf(_SC_NPROCESSORS_ONLN),
           u.release, u.machine);
    bench_print_load("at start");
}

int bench_read_text(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, buf, len - 1);
    close(fd);
    if (n < 0)
        return -errno;
    buf[n] = 0;
    return 0;
}

long bench_field(const char *text, const char *key)
{
    const char *p = strstr(text, key);
    return p ? atol(p + strlen(key)) : -1;
}

static int read_thread(int pid, int tid, struct bench_thread *t)
{
    char path[96], buf[4096];

    t->tid = tid;
    snprintf(path, sizeof(path), "/proc/%d/task/%d/status", pid, tid);
    if (bench_read_text(path, buf, sizeof(buf)))
        return -1;
    t->vol = bench_field(buf, "\nvoluntary_ctxt_switches:");
    t->invol = bench_field(buf, "\nnonvoluntary_ctxt_switches:");
    snprintf(path, sizeof(path), "/proc/%d/task/%d/schedstat", pid, tid);
    t->cpu_ns = bench_read_text(path, buf, sizeof(buf)) ? 0 : strtoull(buf, NULL, 10);
    snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", pid, tid);
    if (bench_read_text(path, buf, sizeof(buf)))
        return -1;
    /* field 22 (starttime), counted after the ")" that ends comm */
    const char *p = strrchr(buf, ')');
    for (int f = 2; p && f < 22; f++)
        p = strchr(p + 1, ' ');
    t->start = p ? strtoull(p + 1, NULL, 10) : 0;
    return 0;
}

static int cmp_start(const void *a, const void *b)
{
    const struct bench_thread *x = a, *y = b;
    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    return x->tid - y->tid;
}

int bench_threads(int pid, struct bench_thread *v, size_t max)
{
    char path[64];
    struct dirent *de;
    size_t n = 0;

    snprintf(path, sizeof(path), "/proc/%d/task", pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    while ((de = readdir(d)) && n < max) {
        if (de->d_name[0] != '.' && read_thread(pid, atoi(de->d_name), &v[n]) == 0)
            n++;
    }
    closedir(d);
    qsort(v, n, sizeof(*v), cmp_start);
    return (int)n;
}

void bench_print_load(const char *when)
{
    double l[3];
    if (getloadavg(l, 3) == 3)
        printf("# load average %s: %.2f %.2f %.2f (other work on the machine skews every "
               "figure; compare ratios)\n",
               when, l[0], l[1], l[2]);
}

pid_t bench_spawn(char *const argv[], const char *log)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int out = open("/dev/null", O_WRONLY);
        int err = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (out < 0 || err < 0)
            _exit(127);
        dup2(out, STDOUT_FILENO);
        dup2(err, STDERR_FILENO);
        unsetenv("NOTIFY_SOCKET");
        unsetenv("WATCHDOG_USEC");
        execvp(argv[0], argv);
        _exit(127);
    }
    return pid;
}

void bench_stop(pid_t pid)
{
    int st;
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    for (int i = 0; i < 1500; i++) {
        if (waitpid(pid, &st, WNOHANG) == pid)
            return;
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
}
