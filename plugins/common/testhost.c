/*
 * testhost: the fake agent of the tty plugins' unit tests (testhost.h).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>

#include "testhost.h"

enum { H_TIMER = TH_TIMER, H_WATCH = TH_WATCH };

struct th_handle {
    struct th_handle *next, **prev;
    struct th *t;
    int kind;
    union {
        uv_timer_t timer;
        uv_poll_t poll;
    } u;
    mittari_timer_cb tcb;
    mittari_fd_cb fcb;
    void *arg;
    int fd;
};

struct mittari_decoder {
    struct th *t;
};

static struct th *of(struct mittari_ctx *ctx)
{
    return (struct th *)ctx;
}

static void copy(char *dst, size_t n, const char *src)
{
    snprintf(dst, n, "%s", src ? src : "");
}

static int h_emit(struct mittari_ctx *ctx, const struct mittari_reading *r)
{
    struct th *t = of(ctx);
    struct th_reading x = {.kind = r->kind,
                           .value = r->value,
                           .counter = r->counter,
                           .bits = r->counter_bits,
                           .ts_us = r->ts_us,
                           .subject_len = r->subject_id ? r->subject_id_len : 0};
    if (t->emit_rc)
        return t->emit_rc;
    if (!r->metric || !*r->metric || r->kind < MITTARI_KIND_DELTA || r->kind > MITTARI_KIND_EVENT)
        return MITTARI_EREADING;
    copy(x.device, sizeof(x.device), r->device ? r->device : t->instance);
    copy(x.metric, sizeof(x.metric), r->metric);
    copy(x.unit, sizeof(x.unit), r->unit);
    for (size_t i = 0; i < r->ntags; i++)
        snprintf(x.tags + strlen(x.tags), sizeof(x.tags) - strlen(x.tags), "%s%s=%s", i ? "," : "",
                 r->tags[i].key, r->tags[i].value);
    pthread_mutex_lock(&t->lock);
    if (t->nr == t->rcap) {
        t->rcap = t->rcap ? t->rcap * 2 : 64;
        t->r = realloc(t->r, t->rcap * sizeof(*t->r));
    }
    t->r[t->nr++] = x;
    pthread_mutex_unlock(&t->lock);
    return 0;
}

static void h_log(struct mittari_ctx *ctx, int level, const char *fmt, ...)
{
    struct th *t = of(ctx);
    char *line = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&line, fmt, ap) < 0)
        line = NULL;
    va_end(ap);
    if (!line)
        return;
    if (!t->quiet)
        fprintf(stderr, "  [plugin %d] %s\n", level, line);
    pthread_mutex_lock(&t->lock);
    if (t->nlogs == t->lcap) {
        t->lcap = t->lcap ? t->lcap * 2 : 32;
        t->logs = realloc(t->logs, t->lcap * sizeof(*t->logs));
    }
    t->logs[t->nlogs++] = line;
    pthread_mutex_unlock(&t->lock);
}

static int64_t h_now(struct mittari_ctx *ctx)
{
    struct timeval tv;
    (void)ctx;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
}

static void link_handle(struct th *t, struct th_handle *h)
{
    h->t = t;
    h->next = t->handles;
    if (h->next)
        h->next->prev = &h->next;
    h->prev = &t->handles;
    t->handles = h;
}

static void closed(uv_handle_t *uh)
{
    free(uh->data);
}

static void close_handle(struct th_handle *h)
{
    *h->prev = h->next;
    if (h->next)
        h->next->prev = h->prev;
    if (h->kind == H_WATCH)
        uv_poll_stop(&h->u.poll);
    h->u.timer.data = h; /* same offset for both members of the union */
    uv_close((uv_handle_t *)&h->u, closed);
}

static void timer_fire(uv_timer_t *ut)
{
    struct th_handle *h = ut->data;
    h->tcb(h->arg);
}

static int h_timer_start(struct mittari_ctx *ctx, uint64_t timeout_ms, uint64_t repeat_ms,
                         mittari_timer_cb cb, void *arg, struct mittari_timer **out)
{
    struct th *t = of(ctx);
    struct th_handle *h = calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    h->kind = H_TIMER;
    h->tcb = cb;
    h->arg = arg;
    uv_timer_init(&t->loop, &h->u.timer);
    h->u.timer.data = h;
    link_handle(t, h);
    uv_timer_start(&h->u.timer, timer_fire, timeout_ms, repeat_ms);
    if (out)
        *out = (struct mittari_timer *)h;
    return 0;
}

static void h_timer_stop(struct mittari_timer *tm)
{
    if (tm)
        close_handle((struct th_handle *)tm);
}

static void poll_fire(uv_poll_t *p, int status, int events)
{
    struct th_handle *h = p->data;
    int ev = 0;
    if (status < 0 || (events & UV_DISCONNECT))
        ev |= MITTARI_FD_ERROR;
    if (events & UV_READABLE)
        ev |= MITTARI_FD_READ;
    if (events & UV_WRITABLE)
        ev |= MITTARI_FD_WRITE;
    h->fcb(h->arg, h->fd, ev);
}

static int h_fd_watch(struct mittari_ctx *ctx, int fd, int events, mittari_fd_cb cb, void *arg,
                      struct mittari_watch **out)
{
    struct th *t = of(ctx);
    struct th_handle *h = calloc(1, sizeof(*h));
    int uvev = 0, rc;
    if (!h)
        return -ENOMEM;
    rc = uv_poll_init(&t->loop, &h->u.poll, fd);
    if (rc) {
        free(h);
        return rc;
    }
    h->kind = H_WATCH;
    h->fcb = cb;
    h->arg = arg;
    h->fd = fd;
    h->u.poll.data = h;
    link_handle(t, h);
    if (events & MITTARI_FD_READ)
        uvev |= UV_READABLE | UV_DISCONNECT;
    if (events & MITTARI_FD_WRITE)
        uvev |= UV_WRITABLE;
    uv_poll_start(&h->u.poll, uvev, poll_fire);
    if (out)
        *out = (struct mittari_watch *)h;
    return 0;
}

static void h_fd_unwatch(struct mittari_watch *w)
{
    if (w)
        close_handle((struct th_handle *)w);
}

static struct th_health *health_slot(struct th *t, const char *device)
{
    const char *d = device ? device : "";
    for (size_t i = 0; i < t->nhealth; i++)
        if (strcmp(t->health[i].device, d) == 0)
            return &t->health[i];
    if (t->nhealth == sizeof(t->health) / sizeof(t->health[0]))
        return NULL;
    struct th_health *h = &t->health[t->nhealth++];
    copy(h->device, sizeof(h->device), d);
    h->health = -1;
    return h;
}

static void h_set_health(struct mittari_ctx *ctx, const char *device, int health,
                         const char *reason)
{
    struct th *t = of(ctx);
    pthread_mutex_lock(&t->lock);
    struct th_health *h = health_slot(t, device);
    if (h) {
        if (h->health != health)
            h->changes++;
        h->health = health;
        copy(h->reason, sizeof(h->reason), reason);
    }
    pthread_mutex_unlock(&t->lock);
}

static const char *h_instance_name(struct mittari_ctx *ctx)
{
    return of(ctx)->instance;
}

static void h_count(struct mittari_ctx *ctx, const char *device, const char *counter, uint64_t n)
{
    struct th *t = of(ctx);
    const char *d = device ? device : "";
    pthread_mutex_lock(&t->lock);
    size_t i;
    for (i = 0; i < t->ncounters; i++)
        if (strcmp(t->counters[i].device, d) == 0 && strcmp(t->counters[i].name, counter) == 0)
            break;
    if (i == t->ncounters && i < sizeof(t->counters) / sizeof(t->counters[0])) {
        copy(t->counters[i].device, sizeof(t->counters[i].device), d);
        copy(t->counters[i].name, sizeof(t->counters[i].name), counter);
        t->ncounters++;
    }
    if (i < t->ncounters)
        t->counters[i].v += n;
    pthread_mutex_unlock(&t->lock);
}

static int h_decoder_load(struct mittari_ctx *ctx, const char *path, struct mittari_decoder **out)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return -errno;
    *out = calloc(1, sizeof(**out));
    if (!*out)
        return -ENOMEM;
    (*out)->t = of(ctx);
    return 0;
}

static int h_decoder_run(struct mittari_decoder *d, const void *frame, size_t len, int64_t ts_us)
{
    struct mittari_reading r = MITTARI_READING_INIT;
    d->t->decoder_frames++;
    if (len >= 3 && memcmp(frame, "bad", 3) == 0)
        return MITTARI_EREADING;
    r.metric = "frame_length";
    r.kind = MITTARI_KIND_GAUGE;
    r.value = (double)len;
    r.ts_us = ts_us;
    return h_emit((struct mittari_ctx *)d->t, &r) == 0 ? 1 : MITTARI_EREADING;
}

static void h_decoder_free(struct mittari_decoder *d)
{
    free(d);
}

void th_init(struct th *t, const char *instance, bool decoders)
{
    memset(t, 0, sizeof(*t));
    uv_loop_init(&t->loop);
    pthread_mutex_init(&t->lock, NULL);
    t->instance = instance;
    t->host = (struct mittari_host){
        .abi_version = MITTARI_ABI_VERSION,
        .size = sizeof(struct mittari_host),
        .emit = h_emit,
        .log = h_log,
        .now = h_now,
        .timer_start = h_timer_start,
        .timer_stop = h_timer_stop,
        .fd_watch = h_fd_watch,
        .fd_unwatch = h_fd_unwatch,
        .set_health = h_set_health,
        .instance_name = h_instance_name,
        .count = h_count,
    };
    if (decoders) {
        t->host.decoder_load = h_decoder_load;
        t->host.decoder_run = h_decoder_run;
        t->host.decoder_free = h_decoder_free;
    }
}

void th_close_all(struct th *t)
{
    while (t->handles)
        close_handle(t->handles);
    uv_run(&t->loop, UV_RUN_NOWAIT);
    uv_run(&t->loop, UV_RUN_NOWAIT);
}

void th_free(struct th *t)
{
    th_close_all(t);
    uv_loop_close(&t->loop);
    for (size_t i = 0; i < t->nlogs; i++)
        free(t->logs[i]);
    free(t->logs);
    free(t->r);
    pthread_mutex_destroy(&t->lock);
}

static void stop_loop(uv_timer_t *tm)
{
    uv_stop(tm->loop);
}

void th_run_for(struct th *t, int ms)
{
    uv_timer_t tm;
    uv_timer_init(&t->loop, &tm);
    uv_timer_start(&tm, stop_loop, (uint64_t)ms, 0);
    uv_run(&t->loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&tm, NULL);
    uv_run(&t->loop, UV_RUN_NOWAIT);
}

bool th_run_until(struct th *t, bool (*pred)(struct th *t, void *arg), void *arg, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 10) {
        if (pred(t, arg))
            return true;
        th_run_for(t, 10);
    }
    return pred(t, arg);
}

uint64_t th_counter(const struct th *t, const char *device, const char *name)
{
    const char *d = device ? device : "";
    uint64_t v = 0;
    /* count may come from another thread (a decoder's) */
    pthread_mutex_lock((pthread_mutex_t *)&t->lock);
    for (size_t i = 0; i < t->ncounters; i++)
        if (strcmp(t->counters[i].device, d) == 0 && strcmp(t->counters[i].name, name) == 0)
            v = t->counters[i].v;
    pthread_mutex_unlock((pthread_mutex_t *)&t->lock);
    return v;
}

const struct th_health *th_health_of(const struct th *t, const char *device)
{
    const char *d = device ? device : "";
    for (size_t i = 0; i < t->nhealth; i++)
        if (strcmp(t->health[i].device, d) == 0)
            return &t->health[i];
    return NULL;
}

int th_health(const struct th *t, const char *device)
{
    const struct th_health *h = th_health_of(t, device);
    return h ? h->health : -1;
}

size_t th_logs_with(const struct th *t, const char *needle)
{
    size_t n = 0;
    for (size_t i = 0; i < t->nlogs; i++)
        if (strstr(t->logs[i], needle))
            n++;
    return n;
}

size_t th_handles(const struct th *t, int kind)
{
    size_t n = 0;
    for (const struct th_handle *h = t->handles; h; h = h->next)
        n += kind < 0 || h->kind == kind;
    return n;
}
