#include "logcheck.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mittari/mittari.h>

#include "diag.h"
#include "log.h"
#include "util.h"

#define MOD "log"

struct mt_logcheck {
    uv_async_t async;
    pthread_t thread;
    char *path;
    struct mt_writer *w;
    void (*done)(void *arg, int rc);
    void *arg;

    pthread_mutex_t lock; /* db, cancelled, finished */
    struct mt_logdb *db;
    bool cancelled, finished;
    int rc;
    int64_t took_us;
};

static void *check_main(void *arg)
{
    struct mt_logcheck *c = arg;
    struct mt_logdb *db = NULL;
    char msg[512], what[640];
    int64_t t0 = mt_mono_us();
    int rc;

    /* it reads every page of the log once (0.16 s a million readings):
     * ingest and outputs go first, an output draining a backlog at start
     * above all (issue 11: at nice +10 it still took ~10 % from the drain) */
    mt_thread_idle("mt-logcheck");

    pthread_mutex_lock(&c->lock);
    bool cancelled = c->cancelled;
    pthread_mutex_unlock(&c->lock);
    rc = cancelled ? -EINTR : mt_log_open(&db, c->path, MT_LOG_READER, msg, sizeof(msg));
    if (!rc) {
        pthread_mutex_lock(&c->lock);
        c->db = db;
        if (c->cancelled)
            mt_log_interrupt(db);
        pthread_mutex_unlock(&c->lock);
        rc = mt_log_integrity(db, msg, sizeof(msg));
        pthread_mutex_lock(&c->lock);
        c->db = NULL;
        if (c->cancelled)
            rc = -EINTR;
        pthread_mutex_unlock(&c->lock);
        mt_log_close(db);
    }
    if (rc == MITTARI_ESTORAGE) {
        snprintf(what, sizeof(what), "the check after start (quick_check): %s", msg);
        mt_writer_fault(c->w, rc, what);
    }
    pthread_mutex_lock(&c->lock);
    c->rc = rc;
    c->took_us = mt_mono_us() - t0;
    c->finished = true;
    pthread_mutex_unlock(&c->lock);
    uv_async_send(&c->async);
    return NULL;
}

static void closed(uv_handle_t *h)
{
    struct mt_logcheck *c = h->data;
    void (*done)(void *, int) = c->done;
    void *arg = c->arg;
    int rc = c->rc;

    pthread_mutex_destroy(&c->lock);
    free(c->path);
    free(c);
    done(arg, rc);
}

static void closed_quiet(uv_handle_t *h)
{
    struct mt_logcheck *c = h->data;
    pthread_mutex_destroy(&c->lock);
    free(c->path);
    free(c);
}

static void async_cb(uv_async_t *h)
{
    struct mt_logcheck *c = h->data;

    pthread_mutex_lock(&c->lock);
    bool finished = c->finished;
    pthread_mutex_unlock(&c->lock);
    if (!finished)
        return;
    pthread_join(c->thread, NULL);
    if (c->rc == 0)
        mt_diag(MT_INFO, MOD, "the log passed its check after start (quick_check, %.1f s)",
                (double)c->took_us / 1e6);
    else if (c->rc != -EINTR && c->rc != MITTARI_ESTORAGE)
        mt_diag(MT_WARNING, MOD, "could not check the log after start: %s",
                mittari_strerror_own(c->rc) ? mittari_strerror_own(c->rc) : strerror(-c->rc));
    uv_close((uv_handle_t *)&c->async, closed);
}

int mt_logcheck_start(struct mt_logcheck **out, uv_loop_t *loop, const char *db_path,
                      struct mt_writer *w, void (*done)(void *arg, int rc), void *arg)
{
    struct mt_logcheck *c = calloc(1, sizeof(*c));
    int rc;

    *out = NULL;
    if (!c || !(c->path = strdup(db_path))) {
        free(c);
        return -ENOMEM;
    }
    c->w = w;
    c->done = done;
    c->arg = arg;
    pthread_mutex_init(&c->lock, NULL);
    rc = uv_async_init(loop, &c->async, async_cb);
    if (rc) {
        pthread_mutex_destroy(&c->lock);
        free(c->path);
        free(c);
        return rc;
    }
    c->async.data = c;
    rc = pthread_create(&c->thread, NULL, check_main, c);
    if (rc) {
        uv_close((uv_handle_t *)&c->async, closed_quiet);
        return -rc;
    }
    *out = c;
    return 0;
}

void mt_logcheck_cancel(struct mt_logcheck *c)
{
    pthread_mutex_lock(&c->lock);
    c->cancelled = true;
    if (c->db)
        mt_log_interrupt(c->db);
    pthread_mutex_unlock(&c->lock);
}
