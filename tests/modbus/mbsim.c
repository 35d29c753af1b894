/*
 * mbsim: Modbus device simulator for the integration tests and the
 * benchmark (simdev.h does the work).
 *
 *   mbsim [--tick MS] [--seed N] --state FILE [--ctl FIFO] SPEC
 *
 * SPEC has one line per device or register:
 *   tcp NAME [port=N] [down]                 TCP device on 127.0.0.1 (port 0: a free one)
 *   rtu NAME path=TTY|auto unit=N            RTU device on a tty; one bus per path;
 *                                            auto = a pty of our own (its name in the state)
 *   rtu NAME join=OTHER unit=N                another unit on OTHER's bus
 *   counter NAME fn=holding|input addr=N type=u16|u32|u64 order=AB|BA|ABCD|CDAB|BADC|DCBA
 *           start=V step=K [clear_coil=N]     grows by 0..K each tick
 *   value NAME fn=... addr=N type=... order=... value=X
 * The state (JSON: ports, requests, counters and their true increments) is
 * written to FILE once everything listens. Commands, one a line, come from
 * the FIFO (or stdin): freeze [NAME], resume [NAME], reboot NAME [V],
 * exception NAME CODE|off (CODE 0-11; 0 is sent as 0), mute NAME on|off,
 * delay NAME MS, drip NAME MS (register reads answered one byte every MS;
 * 0 = off), crc NAME on|off, down NAME, up NAME, dump FILE, quit.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "simdev.h"

struct ctl {
    struct sim *s;
    FILE *in;
    atomic_int quit;
};

static void *ctl_main(void *arg)
{
    struct ctl *c = arg;
    char line[1024], err[256];

    while (fgets(line, sizeof(line), c->in)) {
        if (strncmp(line, "quit", 4) == 0)
            break;
        sim_lock(c->s);
        int rc = sim_command(c->s, line, err, sizeof(err));
        sim_unlock(c->s);
        if (rc)
            fprintf(stderr, "mbsim: %s: %s\n", strtok(line, "\n"), err[0] ? err : strerror(-rc));
    }
    atomic_store(&c->quit, 1);
    return NULL;
}

static int load_spec(struct sim *s, const char *path)
{
    char line[1024], err[256];
    FILE *f = fopen(path, "r");
    int n = 0;

    if (!f) {
        fprintf(stderr, "mbsim: %s: %s\n", path, strerror(errno));
        return -1;
    }
    while (fgets(line, sizeof(line), f)) {
        n++;
        if (sim_command(s, line, err, sizeof(err))) {
            fprintf(stderr, "mbsim: %s:%d: %s\n", path, n, err);
            fclose(f);
            return -1;
        }
    }
    fclose(f);
    return 0;
}

static void more_files(void)
{
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
        r.rlim_cur = r.rlim_max; /* 500 devices: a listening socket and a connection each */
        setrlimit(RLIMIT_NOFILE, &r);
    }
}

int main(int argc, char **argv)
{
    const char *state = NULL, *ctl_path = NULL;
    int tick = 100, opt;
    unsigned long long seed = 1;
    pthread_t th;
    static const struct option lo[] = {{"tick", 1, 0, 't'}, {"seed", 1, 0, 's'},
                                       {"state", 1, 0, 'o'}, {"ctl", 1, 0, 'c'}, {0, 0, 0, 0}};

    while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (opt) {
        case 't': tick = atoi(optarg); break;
        case 's': seed = strtoull(optarg, NULL, 0); break;
        case 'o': state = optarg; break;
        case 'c': ctl_path = optarg; break;
        default: return 2;
        }
    }
    if (!state || optind != argc - 1) {
        fprintf(stderr, "usage: mbsim [--tick MS] [--seed N] --state FILE [--ctl FIFO] SPEC\n");
        return 2;
    }
    more_files();
    struct sim *s = sim_new(seed, tick);
    if (!s || load_spec(s, argv[optind]))
        return 1;
    char cmd[4200], err[256];
    snprintf(cmd, sizeof(cmd), "dump %s", state);
    if (sim_command(s, cmd, err, sizeof(err)))
        return 1;
    /* O_RDWR: the FIFO never reports end of file when a writer goes */
    struct ctl c = {.s = s, .in = ctl_path ? fdopen(open(ctl_path, O_RDWR), "r") : stdin};
    if (!c.in || pthread_create(&th, NULL, ctl_main, &c))
        return 1;
    while (!atomic_load(&c.quit))
        if (sim_step(s, 50))
            break;
    pthread_join(th, NULL);
    sim_free(s);
    return 0;
}
