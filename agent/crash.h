/*
 * crash: a fatal signal (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT) is
 * reported with the plugin instance and the callback that the thread that
 * got it was running, then the process ends (issue 13).
 *
 * Owns the process's handlers of those five signals (installed once, from
 * the main thread, before other threads exist) and one alternate signal
 * stack per thread that enters plugin code (made at its first entry, freed
 * when the thread ends), so a stack overflow is reported too.
 *
 * Marks: every call into plugin code (input.c, decoder.c, config.c's
 * check) runs between mt_crash_enter and mt_crash_leave, which set a
 * thread-local mark naming the instance (a struct mt_crash_who prepared
 * beforehand) and the callback ("poll work", "timer callback"). A host
 * call that takes the plugin's pointers (emit, decoder_run) sets a second
 * mark, so a crash there says "in the agent's emit, called from the
 * plugin's poll work". Marks cost two thread-local stores per call.
 *
 * The handler is async-signal-safe: no malloc, no stdio, no locks. It
 * formats one line into a stack buffer from the prepared strings and
 * writes it with write(2) in diag.c's format (a syslog priority when
 * journald reads stderr, else a UTC time and the level name):
 *
 *   <2>input boom[hall]: crashed: SIGSEGV (address not mapped, at 0x0) in the
 *   plugin's poll work (plugin crashy, /usr/lib/.../crashy.so); mittari exits with status 5 ...
 *
 * In plugin code the process then ends with _exit(status) (MT_EXIT_PLUGIN,
 * or what the isolated child's configuration says), after writing the
 * crash marker (below). Outside plugin code the line says "in the agent's
 * own code" and the signal takes its default course through the handler
 * that was installed before ours (the sanitizers', or the default: a core
 * dump where they are enabled).
 *
 * The crash marker (mt_crash_set_marker): a small file the handler writes
 * after a crash in plugin code, so that the next start can hold the
 * instance back (agent.c). It holds the instance, the plugin, the signal,
 * the callback, the number of crashes of that instance in a row and the
 * time.
 *
 * Process-wide by nature (signal dispositions are): the settings are set
 * once at start-up, before any thread runs plugin code; enter/leave and
 * the who helpers are safe from any thread.
 */
#ifndef MT_CRASH_H
#define MT_CRASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Who runs: prepared once per instance, read by the handler. */
struct mt_crash_who {
    char module[128]; /* "input boom[hall]": the log prefix */
    char name[64];    /* the instance name, for the marker */
    char plugin[64];
    char path[256]; /* the plugin file */
};

struct mt_crash_mark {
    const struct mt_crash_who *who;
    const char *what; /* the callback: a string literal */
};

struct mt_crash_conf {
    /* the exit status after a crash in plugin code */
    int exit_status;
    /* what the line says happens next, after "; " (a string literal) */
    const char *then;
    /* >= 0: the report (the line without its priority or time prefix)
     * is also sent as one packet, type byte first, to this socket (the
     * isolated child's link to the agent); stderr only if that fails */
    int packet_fd;
    unsigned char packet_type;
};

/* Installs the handlers (and the main thread's alternate stack). Call
 * once, from the main thread, after mt_diag_init. 0 or -errno. */
int mt_crash_install(const struct mt_crash_conf *c);

/* The crash marker: the file the handler writes after a crash in plugin
 * code. prev_name/prev_count: the last crash read from it at start (NULL,
 * 0: none), so that a second crash of the same instance counts 2. */
void mt_crash_set_marker(const char *path, const char *prev_name, unsigned prev_count);
/* The instance ran well for a while: a crash from now on counts 1. */
void mt_crash_forget(void);

/* What a marker file says; 0, -ENOENT, or -EINVAL for a file that is
 * not one. */
struct mt_crash_record {
    char name[64], plugin[64], signal[16], what[48];
    unsigned count;
    int64_t time_s; /* UTC seconds */
};
int mt_crash_read_marker(const char *path, struct mt_crash_record *r);

void mt_crash_who_init(struct mt_crash_who *w, const char *module, const char *name,
                       const char *plugin, const char *path);

/* Around every call into plugin code: the thread's mark is set to (who,
 * what) and the previous one returned, to be given back to leave. */
struct mt_crash_mark mt_crash_enter(const struct mt_crash_who *who, const char *what);
void mt_crash_leave(struct mt_crash_mark prev);
/* Around a host call that handles the plugin's pointers ("emit"). */
const char *mt_crash_host_enter(const char *call);
void mt_crash_host_leave(const char *prev);

/* The mark of the calling thread (tests). */
struct mt_crash_mark mt_crash_current(void);

/* The handler's line for a signal, formatted as the handler does (tests):
 * the length written into buf. */
size_t mt_crash_format(char *buf, size_t len, int sig, int code, const void *addr, int pid,
                       const struct mt_crash_mark *m, const char *host);

#endif
