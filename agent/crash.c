#include "crash.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "diag.h"

#define ALT_STACK_SIZE (64 * 1024)

static const int fatal_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};

/* Set once by mt_crash_install (main thread, before other threads), read
 * by the handler: the one process-wide state, as signal dispositions are. */
static struct mt_crash_conf conf = {.exit_status = 5, .packet_fd = -1};
static bool journal;
static _Atomic bool installed;
static struct sigaction old_actions[NSIG];
static char marker_path[PATH_MAX];
static char prev_name[64];
static _Atomic unsigned prev_count;

static _Thread_local struct mt_crash_mark tls_mark;
static _Thread_local const char *tls_host;
static _Thread_local bool tls_stack_done;

static pthread_key_t stack_key;
static pthread_once_t stack_once = PTHREAD_ONCE_INIT;

/* ---- async-signal-safe formatting ---- */

struct sbuf {
    char *p;
    size_t len, cap;
};

static void put(struct sbuf *b, const char *s)
{
    while (s && *s && b->len + 1 < b->cap)
        b->p[b->len++] = *s++;
    b->p[b->len] = 0;
}

static void put_uint(struct sbuf *b, uint64_t v, unsigned width)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v && n < sizeof(tmp));
    while (n < width && n < sizeof(tmp))
        tmp[n++] = '0';
    while (n && b->len + 1 < b->cap)
        b->p[b->len++] = tmp[--n];
    b->p[b->len] = 0;
}

static void put_hex(struct sbuf *b, uintptr_t v)
{
    static const char digits[] = "0123456789abcdef";
    char tmp[2 * sizeof(v)];
    size_t n = 0;
    do {
        tmp[n++] = digits[v & 15];
        v >>= 4;
    } while (v && n < sizeof(tmp));
    put(b, "0x");
    while (n && b->len + 1 < b->cap)
        b->p[b->len++] = tmp[--n];
    b->p[b->len] = 0;
}

/* "2026-11-25T15:25:44Z", as mt_fmt_utc writes it, without gmtime_r (which
 * may take a lock): days to a civil date by the proleptic Gregorian rule. */
static void put_utc(struct sbuf *b, int64_t sec)
{
    int64_t days = sec / 86400, rem = sec % 86400;
    if (rem < 0) {
        rem += 86400;
        days--;
    }
    days += 719468; /* from 1970-01-01 to 0000-03-01 */
    int64_t era = (days >= 0 ? days : days - 146096) / 146097;
    int64_t doe = days - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t d = doy - (153 * mp + 2) / 5 + 1;
    int64_t m = mp < 10 ? mp + 3 : mp - 9;
    int64_t y = yoe + era * 400 + (m <= 2);
    put_uint(b, (uint64_t)y, 4);
    put(b, "-");
    put_uint(b, (uint64_t)m, 2);
    put(b, "-");
    put_uint(b, (uint64_t)d, 2);
    put(b, "T");
    put_uint(b, (uint64_t)(rem / 3600), 2);
    put(b, ":");
    put_uint(b, (uint64_t)(rem / 60 % 60), 2);
    put(b, ":");
    put_uint(b, (uint64_t)(rem % 60), 2);
    put(b, "Z");
}

static const char *sig_name(int sig)
{
    switch (sig) {
    case SIGSEGV:
        return "SIGSEGV";
    case SIGBUS:
        return "SIGBUS";
    case SIGFPE:
        return "SIGFPE";
    case SIGILL:
        return "SIGILL";
    case SIGABRT:
        return "SIGABRT";
    default:
        return "a fatal signal";
    }
}

/* What si_code says, for the signals we handle; NULL if nothing useful. */
static const char *code_text(int sig, int code)
{
    switch (sig) {
    case SIGSEGV:
        return code == SEGV_MAPERR   ? "address not mapped"
               : code == SEGV_ACCERR ? "invalid permissions for the address"
                                     : "invalid memory reference";
    case SIGBUS:
        return code == BUS_ADRALN   ? "invalid address alignment"
               : code == BUS_ADRERR ? "nonexistent physical address"
               : code == BUS_OBJERR ? "object-specific hardware error (a mapped file shrank?)"
                                    : "bus error";
    case SIGFPE:
        return code == FPE_INTDIV   ? "integer divide by zero"
               : code == FPE_INTOVF ? "integer overflow"
                                    : "arithmetic exception";
    case SIGILL:
        return code == ILL_ILLOPC ? "illegal opcode" : "illegal instruction";
    case SIGABRT:
        return "abort() called";
    default:
        return NULL;
    }
}

/* A signal another process sent (kill) is not a crash of the code that
 * happened to run. */
static bool sent_by_other(int code, int pid)
{
    return code <= 0 && pid != (int)getpid();
}

size_t mt_crash_format(char *buf, size_t len, int sig, int code, const void *addr, int pid,
                       const struct mt_crash_mark *m, const char *host)
{
    struct sbuf b = {buf, 0, len};
    bool other = sent_by_other(code, pid);
    bool plugin = m && m->who && !other;

    if (!len)
        return 0;
    buf[0] = 0;
    put(&b, plugin ? m->who->module : "agent");
    put(&b, ": crashed: ");
    put(&b, sig_name(sig));
    put(&b, " (");
    if (other) {
        put(&b, "sent by process ");
        put_uint(&b, (uint64_t)(pid > 0 ? pid : 0), 0);
    } else {
        put(&b, code_text(sig, code));
        if ((sig == SIGSEGV || sig == SIGBUS) && code > 0) {
            put(&b, ", at ");
            put_hex(&b, (uintptr_t)addr);
        }
    }
    put(&b, ") ");
    if (plugin) {
        if (host) {
            put(&b, "in the agent's ");
            put(&b, host);
            put(&b, ", called from the plugin's ");
        } else {
            put(&b, "in the plugin's ");
        }
        put(&b, m->what ? m->what : "code");
        put(&b, " (plugin ");
        put(&b, m->who->plugin);
        if (m->who->path[0]) {
            put(&b, ", ");
            put(&b, m->who->path);
        }
        put(&b, "); ");
        put(&b, conf.then ? conf.then : "");
    } else {
        put(&b, other ? "while the agent" : "in the agent's own code");
        if (other)
            put(&b, " ran");
        if (host) {
            put(&b, " (its ");
            put(&b, host);
            put(&b, ")");
        }
        put(&b, ", not in a plugin; the signal takes its default course (a core dump where "
                "they are enabled); please report it with the lines before this one");
    }
    return b.len;
}

static void write_marker(const struct mt_crash_mark *m, int sig)
{
    char text[512];
    struct sbuf b = {text, 0, sizeof(text)};
    struct timespec ts;
    unsigned count = 1;

    if (!marker_path[0])
        return;
    if (strcmp(prev_name, m->who->name) == 0)
        count = atomic_load(&prev_count) + 1;
    clock_gettime(CLOCK_REALTIME, &ts);
    put(&b, "instance=");
    put(&b, m->who->name);
    put(&b, "\nplugin=");
    put(&b, m->who->plugin);
    put(&b, "\nsignal=");
    put(&b, sig_name(sig));
    put(&b, "\nwhat=");
    put(&b, m->what ? m->what : "code");
    put(&b, "\ncount=");
    put_uint(&b, count, 0);
    put(&b, "\ntime=");
    put_uint(&b, (uint64_t)ts.tv_sec, 0);
    put(&b, "\n");
    int fd = open(marker_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0)
        return;
    ssize_t w = write(fd, text, b.len);
    (void)w;
    close(fd);
}

/* The line to stderr in diag.c's format; to the packet socket first when
 * there is one. */
static void report(const char *body, size_t n)
{
    char line[1200];
    struct sbuf b = {line, 0, sizeof(line)};

    if (conf.packet_fd >= 0) {
        char pkt[1100];
        size_t k = n < sizeof(pkt) - 1 ? n : sizeof(pkt) - 1;
        pkt[0] = (char)conf.packet_type;
        memcpy(pkt + 1, body, k);
        if (send(conf.packet_fd, pkt, k + 1, MSG_NOSIGNAL | MSG_DONTWAIT) == (ssize_t)(k + 1))
            return;
    }
    if (journal) {
        put(&b, "<2>");
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        put_utc(&b, ts.tv_sec);
        put(&b, " crit ");
    }
    put(&b, body);
    put(&b, "\n");
    ssize_t w = write(STDERR_FILENO, line, b.len);
    (void)w;
}

static void on_fatal(int sig, siginfo_t *si, void *uc)
{
    int saved = errno;
    struct mt_crash_mark m = tls_mark;
    const char *host = tls_host;
    char body[1024];
    bool plugin = m.who && !sent_by_other(si->si_code, si->si_pid);

    (void)uc;
    size_t n =
        mt_crash_format(body, sizeof(body), sig, si->si_code, si->si_addr, si->si_pid, &m, host);
    report(body, n);
    if (plugin) {
        write_marker(&m, sig);
        _exit(conf.exit_status);
    }
    /* the agent's own: the handler before ours (the sanitizers' report,
     * or the default action) takes it from here. A fault returns to the
     * instruction, which faults again; a signal that was raised or sent
     * is raised again, delivered once this handler returns. */
    sigaction(sig, &old_actions[sig], NULL);
    if (si->si_code <= 0 || sig == SIGABRT)
        raise(sig);
    errno = saved;
}

/* ---- alternate stacks ---- */

static void stack_free(void *p)
{
    stack_t ss = {.ss_flags = SS_DISABLE};
    sigaltstack(&ss, NULL);
    free(p);
}

static void make_key(void)
{
    pthread_key_create(&stack_key, stack_free);
}

/* The thread's own alternate stack, unless it has one (the sanitizers
 * give threads theirs). */
static void ensure_altstack(void)
{
    stack_t cur, ss;

    tls_stack_done = true;
    if (sigaltstack(NULL, &cur) == 0 && !(cur.ss_flags & SS_DISABLE))
        return;
    pthread_once(&stack_once, make_key);
    ss.ss_sp = malloc(ALT_STACK_SIZE);
    ss.ss_size = ALT_STACK_SIZE;
    ss.ss_flags = 0;
    if (!ss.ss_sp)
        return;
    if (sigaltstack(&ss, NULL) != 0 || pthread_setspecific(stack_key, ss.ss_sp) != 0) {
        stack_t off = {.ss_flags = SS_DISABLE};
        sigaltstack(&off, NULL);
        free(ss.ss_sp);
    }
}

int mt_crash_install(const struct mt_crash_conf *c)
{
    struct sigaction sa;

    if (c)
        conf = *c;
    journal = mt_diag_journal();
    ensure_altstack();
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_fatal;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof(fatal_signals) / sizeof(fatal_signals[0]); i++) {
        int s = fatal_signals[i];
        if (sigaction(s, &sa, &old_actions[s]) != 0)
            return -errno;
    }
    atomic_store(&installed, true);
    return 0;
}

void mt_crash_set_marker(const char *path, const char *name, unsigned count)
{
    snprintf(marker_path, sizeof(marker_path), "%s", path ? path : "");
    snprintf(prev_name, sizeof(prev_name), "%s", name ? name : "");
    atomic_store(&prev_count, name ? count : 0);
}

void mt_crash_forget(void)
{
    atomic_store(&prev_count, 0);
}

int mt_crash_read_marker(const char *path, struct mt_crash_record *r)
{
    char text[1024], *save = NULL;
    unsigned seen = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    memset(r, 0, sizeof(*r));
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, text, sizeof(text) - 1);
    close(fd);
    if (n <= 0)
        return -EINVAL;
    text[n] = 0;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *eq = strchr(line, '=');
        if (!eq)
            return -EINVAL;
        *eq++ = 0;
        if (strcmp(line, "instance") == 0 && ++seen)
            snprintf(r->name, sizeof(r->name), "%s", eq);
        else if (strcmp(line, "plugin") == 0)
            snprintf(r->plugin, sizeof(r->plugin), "%s", eq);
        else if (strcmp(line, "signal") == 0)
            snprintf(r->signal, sizeof(r->signal), "%s", eq);
        else if (strcmp(line, "what") == 0)
            snprintf(r->what, sizeof(r->what), "%s", eq);
        else if (strcmp(line, "count") == 0 && ++seen)
            r->count = (unsigned)strtoul(eq, NULL, 10);
        else if (strcmp(line, "time") == 0 && ++seen)
            r->time_s = strtoll(eq, NULL, 10);
    }
    return seen == 3 && r->name[0] && r->count ? 0 : -EINVAL;
}

void mt_crash_who_init(struct mt_crash_who *w, const char *module, const char *name,
                       const char *plugin, const char *path)
{
    snprintf(w->module, sizeof(w->module), "%s", module ? module : "");
    snprintf(w->name, sizeof(w->name), "%s", name ? name : "");
    snprintf(w->plugin, sizeof(w->plugin), "%s", plugin ? plugin : "");
    snprintf(w->path, sizeof(w->path), "%s", path ? path : "");
}

struct mt_crash_mark mt_crash_enter(const struct mt_crash_who *who, const char *what)
{
    struct mt_crash_mark prev = tls_mark;
    if (!tls_stack_done && atomic_load_explicit(&installed, memory_order_relaxed))
        ensure_altstack();
    tls_mark.what = what;
    tls_mark.who = who;
    atomic_signal_fence(memory_order_seq_cst);
    return prev;
}

void mt_crash_leave(struct mt_crash_mark prev)
{
    atomic_signal_fence(memory_order_seq_cst);
    tls_mark = prev;
}

const char *mt_crash_host_enter(const char *call)
{
    const char *prev = tls_host;
    tls_host = call;
    atomic_signal_fence(memory_order_seq_cst);
    return prev;
}

void mt_crash_host_leave(const char *prev)
{
    atomic_signal_fence(memory_order_seq_cst);
    tls_host = prev;
}

struct mt_crash_mark mt_crash_current(void)
{
    return tls_mark;
}
