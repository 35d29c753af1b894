/*
 * bench_modbus: what polling N Modbus TCP devices at 1 s costs the agent
 * (issue 5: target for 100 devices < 2% of one core, < 10 MB RSS).
 *
 * For each N (default 10, 100, 500): tests/modbus mbsim serves N devices on
 * 127.0.0.1, each with a 32-bit counter (CDAB) that grows every 100 ms; the
 * built `mittari run` polls them with the modbus plugin at 1 s and logs the
 * readings to its SQLite log (no outputs). After SETTLE seconds the agent's
 * and the simulator's CPU time (all threads, /proc/PID/task/TID/schedstat)
 * are sampled over a window; the agent's VmRSS and VmHWM are read at its end.
 *
 * Baselines measured in the same run: the same agent with no inputs (idle)
 * over the same window, and the simulator's own CPU for the same N (the
 * server side of every request: a floor no client can go below by much).
 * Figures are printed, never asserted; the program fails only when a run
 * did not poll (a device the simulator never heard from).
 *
 * Usage: bench_modbus [-w WINDOW_SECONDS] [-n 10,100,500]
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"

#ifndef BENCH_MITTARI
#error "BENCH_MITTARI must name the built mittari binary"
#endif

#define SETTLE 5

/* CPU time of a process in seconds (every thread's time on a CPU, in ns
 * from schedstat: clock ticks are too coarse for an idle agent), or -1 */
static double cpu_seconds(pid_t pid)
{
    struct bench_thread t[256];
    int n = bench_threads((int)pid, t, 256);
    unsigned long long ns = 0;
    if (n <= 0)
        return -1;
    for (int i = 0; i < n; i++)
        ns += t[i].cpu_ns;
    return (double)ns / 1e9;
}

static long status_kb(pid_t pid, const char *key)
{
    char path[64], buf[4096];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    return bench_read_text(path, buf, sizeof(buf)) ? -1 : bench_field(buf, key);
}

/* The TCP ports in mbsim's state JSON, in device order. */
static int read_ports(const char *state, int *ports, int n)
{
    char *buf = malloc(1 << 20);
    int k = 0;
    if (!buf || bench_read_text(state, buf, 1 << 20)) {
        free(buf);
        return -1;
    }
    for (char *p = buf; k < n && (p = strstr(p, "\"port\": ")); p += 8)
        ports[k++] = atoi(p + 8);
    free(buf);
    return k;
}

static bool wait_file(const char *path, double secs)
{
    struct stat st;
    for (double end = bench_now() + secs; bench_now() < end; usleep(20000))
        if (stat(path, &st) == 0 && st.st_size > 0)
            return true;
    return false;
}

struct run {
    double agent_cpu, sim_cpu, window;
    long rss, hwm;
    int silent; /* devices the simulator never heard from */
};

static int write_agent_conf(const char *dir, const int *ports, int n)
{
    char path[4200];
    size_t cap = 512 + (size_t)n * 200;
    char *y = malloc(cap);
    size_t len = 0;
    if (!y)
        return -ENOMEM;
    len += (size_t)snprintf(y + len, cap - len,
                            "agent:\n  site: bench\n  data_dir: %s/data\n  stats_interval: 0\n", dir);
    if (n > 0)
        len += (size_t)snprintf(y + len, cap - len, "inputs:\n  mb:\n    plugin: modbus\n"
                                                    "    devices:\n");
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(y + len, cap - len,
                                "      - {name: d%d, host: 127.0.0.1, port: %d, order: CDAB, "
                                "registers: [{metric: visitors, address: 0, type: u32, kind: "
                                "cumulative}]}\n",
                                i, ports[i]);
    snprintf(path, sizeof(path), "%s/conf.yaml", dir);
    int rc = bench_write_file(path, y);
    free(y);
    return rc;
}

static int start_sim(const char *dir, int n, pid_t *pid)
{
    char spec[4200], state[4200], log[4200], ctl[4200];
    snprintf(ctl, sizeof(ctl), "%s/ctl", dir);
    snprintf(spec, sizeof(spec), "%s/spec", dir);
    snprintf(state, sizeof(state), "%s/state.json", dir);
    snprintf(log, sizeof(log), "%s/sim.log", dir);
    FILE *f = fopen(spec, "w");
    if (!f)
        return -errno;
    for (int i = 0; i < n; i++)
        fprintf(f, "tcp d%d\ncounter d%d fn=holding addr=0 type=u32 order=CDAB start=0 step=3\n", i, i);
    fclose(f);
    char *argv[] = {BENCH_MBSIM, "--tick", "100", "--state", state, "--ctl", ctl, spec, NULL};
    *pid = bench_spawn(argv, log);
    return wait_file(state, 30) ? 0 : -ETIMEDOUT;
}

/* Devices that never got a request, from the simulator's fresh dump. */
static int silent_devices(const char *dir, pid_t sim)
{
    char path[4200], buf[128];
    (void)sim;
    snprintf(path, sizeof(path), "%s/ctl", dir);
    snprintf(buf, sizeof(buf), "dump %s/final.json\n", dir);
    int fd = open(path, O_WRONLY | O_NONBLOCK);
    if (fd < 0 || write(fd, buf, strlen(buf)) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    snprintf(path, sizeof(path), "%s/final.json", dir);
    if (!wait_file(path, 10))
        return -1;
    char *text = malloc(1 << 20);
    int silent = 0;
    if (!text || bench_read_text(path, text, 1 << 20)) {
        free(text);
        return -1;
    }
    for (char *p = text; (p = strstr(p, "\"received\": ")); p += 12)
        silent += atoi(p + 12) == 0;
    free(text);
    return silent;
}

static int measure(int n, double window, struct run *r)
{
    char *dir = bench_tmpdir("modbus");
    char conf[4200], log[4200], ctl[4200], state[4200];
    pid_t sim = 0, agent;
    int ports[1024], rc = -1;

    memset(r, 0, sizeof(*r));
    if (!dir)
        return -1;
    snprintf(ctl, sizeof(ctl), "%s/ctl", dir);
    snprintf(state, sizeof(state), "%s/state.json", dir);
    /* the simulator takes commands (a dump at the end) from a FIFO */
    if (n > 0 && (mkfifo(ctl, 0600) || start_sim(dir, n, &sim) || read_ports(state, ports, n) != n))
        goto out;
    if (write_agent_conf(dir, ports, n))
        goto out;
    snprintf(conf, sizeof(conf), "%s/conf.yaml", dir);
    snprintf(log, sizeof(log), "%s/agent.log", dir);
    char *argv[] = {BENCH_MITTARI, "run", "-c", conf, "--plugin-dir", BENCH_PLUGIN_DIR, NULL};
    agent = bench_spawn(argv, log);
    sleep(SETTLE);
    double a0 = cpu_seconds(agent), s0 = n ? cpu_seconds(sim) : 0, t0 = bench_now();
    usleep((useconds_t)(window * 1e6));
    double a1 = cpu_seconds(agent), s1 = n ? cpu_seconds(sim) : 0;
    r->window = bench_now() - t0;
    r->rss = status_kb(agent, "\nVmRSS:");
    r->hwm = status_kb(agent, "\nVmHWM:");
    r->agent_cpu = a1 - a0;
    r->sim_cpu = s1 - s0;
    r->silent = n ? silent_devices(dir, sim) : 0;
    bench_stop(agent);
    rc = a0 < 0 || a1 < 0 || r->silent != 0 ? -1 : 0;
    if (rc)
        fprintf(stderr, "N=%d: the run did not poll every device (silent %d); see %s\n", n,
                r->silent, log);
out:
    if (sim > 0)
        bench_stop(sim);
    if (rc == 0)
        bench_rmtree(dir);
    free(dir);
    return rc;
}

int main(int argc, char **argv)
{
    double window = 20;
    const char *list = "10,100,500";
    int opt, fails = 0;

    while ((opt = getopt(argc, argv, "w:n:")) != -1) {
        if (opt == 'w')
            window = atof(optarg);
        else if (opt == 'n')
            list = optarg;
        else
            return 2;
    }
    bench_print_machine();
    bench_print_load("before");
    struct run idle;
    if (measure(0, window, &idle))
        return 1;
    double idle_min = idle.agent_cpu * 60 / idle.window;
    printf("modbus polling at 1 s, %.0f s window after %d s settling; CPU as seconds per minute\n",
           window, SETTLE);
    printf("baseline idle agent (no inputs): %.4f CPU s/min, VmRSS %.1f MB\n", idle_min,
           (double)idle.rss / 1024);
    printf("%6s %12s %10s %9s %9s %12s %12s %10s\n", "N", "agent s/min", "% of core", "RSS MB",
           "HWM MB", "idle s/min", "sim s/min", "agent/sim");
    char *copy = strdup(list);
    for (char *t = strtok(copy, ","); t; t = strtok(NULL, ",")) {
        int n = atoi(t);
        struct run r;
        if (n < 1 || n > 1000 || measure(n, window, &r)) {
            fails++;
            continue;
        }
        double a = r.agent_cpu * 60 / r.window, s = r.sim_cpu * 60 / r.window;
        printf("%6d %12.3f %9.2f%% %9.1f %9.1f %12.4f %12.3f %10.2f\n", n, a, a / 60 * 100,
               (double)r.rss / 1024, (double)r.hwm / 1024, idle_min, s, s > 0 ? a / s : 0);
        fflush(stdout);
    }
    free(copy);
    bench_print_load("after");
    return fails ? 1 : 0;
}
