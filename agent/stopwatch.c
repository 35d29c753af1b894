#include "stopwatch.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "diag.h"

struct mt_stopwatch {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int64_t deadline;
    int status;
    bool disarmed;
    char waiting_for[768];
};

static void *watch(void *arg)
{
    struct mt_stopwatch *s = arg;
    struct timespec ts = {.tv_sec = s->deadline / 1000000, .tv_nsec = s->deadline % 1000000 * 1000};

    pthread_mutex_lock(&s->lock);
    while (!s->disarmed) {
        if (pthread_cond_timedwait(&s->cond, &s->lock, &ts) == ETIMEDOUT && !s->disarmed) {
            mt_diag(MT_ERR, "agent",
                    "stop did not finish within shutdown_timeout + 15 s; still waiting for: %s; "
                    "exiting now with status %d",
                    s->waiting_for[0] ? s->waiting_for : "?", s->status);
            /* no destructors, no atexit: other threads may be stuck in a
             * plugin; every commit the log made is durable already */
            _exit(s->status);
        }
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

int mt_stopwatch_arm(struct mt_stopwatch **out, int64_t mono_deadline_us, int status)
{
    struct mt_stopwatch *s = calloc(1, sizeof(*s));
    pthread_condattr_t ca;
    int rc;

    *out = NULL;
    if (!s)
        return -ENOMEM;
    s->deadline = mono_deadline_us;
    s->status = status;
    pthread_mutex_init(&s->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cond, &ca);
    pthread_condattr_destroy(&ca);
    rc = pthread_create(&s->thread, NULL, watch, s);
    if (rc) {
        pthread_cond_destroy(&s->cond);
        pthread_mutex_destroy(&s->lock);
        free(s);
        return -rc;
    }
    *out = s;
    return 0;
}

void mt_stopwatch_note(struct mt_stopwatch *s, const char *waiting_for)
{
    pthread_mutex_lock(&s->lock);
    snprintf(s->waiting_for, sizeof(s->waiting_for), "%s", waiting_for);
    pthread_mutex_unlock(&s->lock);
}

void mt_stopwatch_set_status(struct mt_stopwatch *s, int status)
{
    pthread_mutex_lock(&s->lock);
    s->status = status;
    pthread_mutex_unlock(&s->lock);
}

void mt_stopwatch_free(struct mt_stopwatch *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->disarmed = true;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    free(s);
}
