/*
 * diag: the agent's own log. One line per event on stderr; with a syslog
 * priority prefix ("<3>") when journald reads stderr (JOURNAL_STREAM set), with
 * a UTC timestamp and level name otherwise.
 *
 * Any thread. The sink and the level are process-wide (stderr is): they are
 * the one piece of global state and are set once at start-up. Never pass raw
 * card numbers or device addresses to these functions.
 */
#ifndef MT_DIAG_H
#define MT_DIAG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

enum { MT_ERR = 3, MT_WARNING = 4, MT_NOTICE = 5, MT_INFO = 6, MT_DEBUG = 7 };

typedef void (*mt_diag_sink)(int level, const char *line, void *arg);

void mt_diag_init(void);
/* Lines go to journald (JOURNAL_STREAM was set at mt_diag_init): they
 * start with a syslog priority, not a time (crash.c writes the same). */
bool mt_diag_journal(void);
void mt_diag_set_level(int max_level);
int mt_diag_level(void);
/* Tests capture lines; NULL restores stderr. */
void mt_diag_set_sink(mt_diag_sink sink, void *arg);
int mt_diag_level_parse(const char *name);

void mt_diag(int level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void mt_diagv(int level, const char *module, const char *fmt, va_list ap);

/* A repeating failure is logged once, then counted; while it persists a
 * reminder with the count is logged every interval_us. mt_complain_clear logs
 * that it recovered (only if a complaint was active). Not thread-safe: one
 * struct per thread-confined source. */
struct mt_complain {
    int64_t last_us;
    uint64_t suppressed;
    bool active;
};

void mt_complain(struct mt_complain *c, int level, const char *module, int64_t interval_us,
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));
void mt_complain_clear(struct mt_complain *c, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
