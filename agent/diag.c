#include "diag.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "util.h"

/* written on reload (loop), read by every thread that logs */
static _Atomic int max_level = MT_INFO;
static bool journal;
static mt_diag_sink sink_fn; /* under sink_lock */
static void *sink_arg;
static _Atomic bool sink_set; /* sink_fn != NULL, for the formatting outside the lock */
static pthread_mutex_t sink_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {"emerg", "alert", "crit", "err",
                                          "warning", "notice", "info", "debug"};

void mt_diag_init(void)
{
    journal = getenv("JOURNAL_STREAM") != NULL;
}

bool mt_diag_journal(void)
{
    return journal;
}

void mt_diag_set_level(int level)
{
    atomic_store_explicit(&max_level, level, memory_order_relaxed);
}

int mt_diag_level(void)
{
    return atomic_load_explicit(&max_level, memory_order_relaxed);
}

void mt_diag_set_sink(mt_diag_sink sink, void *arg)
{
    pthread_mutex_lock(&sink_lock);
    sink_fn = sink;
    sink_arg = arg;
    atomic_store(&sink_set, sink != NULL);
    pthread_mutex_unlock(&sink_lock);
}

int mt_diag_level_parse(const char *name)
{
    for (int i = 3; i < 8; i++)
        if (strcasecmp(name, level_names[i]) == 0)
            return i;
    if (strcasecmp(name, "error") == 0)
        return MT_ERR;
    if (strcasecmp(name, "warn") == 0)
        return MT_WARNING;
    return -1;
}

void mt_diagv(int level, const char *module, const char *fmt, va_list ap)
{
    char line[1024];
    size_t n = 0;

    if (level > atomic_load_explicit(&max_level, memory_order_relaxed))
        return;
    if (level < 0)
        level = 0;
    bool sink = atomic_load(&sink_set);
    if (!journal && !sink) {
        char ts[40];
        mt_fmt_utc(mt_now_us(), ts, sizeof(ts), 0);
        n = (size_t)snprintf(line, sizeof(line), "%s %s ", ts, level_names[level]);
    } else if (!sink) {
        n = (size_t)snprintf(line, sizeof(line), "<%d>", level);
    }
    if (module && n < sizeof(line))
        n += (size_t)snprintf(line + n, sizeof(line) - n, "%s: ", module);
    if (n < sizeof(line))
        n += (size_t)vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    if (n >= sizeof(line))
        n = sizeof(line) - 1;
    /* one event, one line: fold embedded newlines */
    for (size_t i = 0; i < n; i++)
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    pthread_mutex_lock(&sink_lock);
    if (sink_fn) {
        sink_fn(level, line, sink_arg);
    } else {
        line[n] = '\n';
        fwrite(line, 1, n + 1, stderr);
    }
    pthread_mutex_unlock(&sink_lock);
}

void mt_diag(int level, const char *module, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mt_diagv(level, module, fmt, ap);
    va_end(ap);
}

void mt_complain(struct mt_complain *c, int level, const char *module, int64_t interval_us,
                 const char *fmt, ...)
{
    int64_t now = mt_mono_us();
    char msg[768];
    va_list ap;

    if (c->active && now - c->last_us < interval_us) {
        c->suppressed++;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (c->active && c->suppressed)
        mt_diag(level, module, "%s (repeated %llu times since last report)", msg,
                (unsigned long long)c->suppressed);
    else
        mt_diag(level, module, "%s", msg);
    c->active = true;
    c->last_us = now;
    c->suppressed = 0;
}

void mt_complain_clear(struct mt_complain *c, const char *module, const char *fmt, ...)
{
    char msg[768];
    va_list ap;

    if (!c->active)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (c->suppressed)
        mt_diag(MT_NOTICE, module, "%s (after %llu more failures)", msg,
                (unsigned long long)c->suppressed);
    else
        mt_diag(MT_NOTICE, module, "%s", msg);
    c->active = false;
    c->suppressed = 0;
}
