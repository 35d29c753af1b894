#include "input.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decoder.h"
#include "diag.h"
#include "isolate.h"
#include "normalize.h"
#include "util.h"

#define COMPLAIN_US (600 * 1000000LL)
#define MAX_TAGS 8
#define MT_TS_MIN 946684800000000LL  /* 2000-01-01T00:00:00Z */
#define MT_TS_MAX 4102444800000000LL /* 2100-01-01T00:00:00Z */

enum handle_kind { H_TIMER, H_WATCH, H_POLL };

struct hlink {
    struct hlink *prev, *next;
    int kind;
};

struct mittari_timer {
    struct hlink link; /* first: the list holds hlink pointers */
    uv_timer_t t;
    struct mittari_ctx *ctx;
    mittari_timer_cb cb;
    void *arg;
    bool agent; /* the agent's own (a hold-back), not the plugin's */
};

struct mittari_watch {
    struct hlink link;
    uv_poll_t p;
    struct mittari_ctx *ctx;
    mittari_fd_cb cb;
    void *arg;
    int fd;
};

struct mittari_poll {
    struct hlink link;
    uv_timer_t t;
    uv_work_t work;
    struct mittari_ctx *ctx;
    mittari_work_cb work_cb;
    mittari_done_cb done_cb;
    void *arg;
    int result;
    bool busy, stopped, timer_closed;
};

struct mittari_ctx {
    struct mt_input_env env;
    struct mt_inst_conf *ic;
    const struct mittari_plugin *desc;
    void *state;
    char module[128];
    struct mt_crash_who who; /* for the crash handler: read while plugin code runs */
    struct mt_isolate *iso;  /* isolated: the child's supervisor (the plugin runs there) */
    bool iso_stopped;        /* its child is gone and its handles closed */
    bool held;               /* started with a hold-back that has not ended */
    _Atomic int running;
    uint16_t origin; /* the writer's number for this instance's name */
    struct hlink handles; /* list head */
    int pending_close;    /* handles whose close callback has not run */
    int polls_busy;
    bool stopping;
    void (*stopped_cb)(void *arg);
    void *stopped_arg;

    pthread_mutex_t lock; /* devices, complaints */
    struct dev_status *devs; /* [0] is the instance itself (name "") */
    size_t ndevs;
    struct mt_complain c_invalid, c_refused, c_conflict;
    _Atomic uint64_t emitted, refused, invalid, polls_skipped, conflicts;
    _Atomic int64_t last_reading; /* wall clock µs of the last accepted reading */
};

#define MAX_DEVICES 4096
#define MAX_COUNTERS 16

struct dev_counter {
    char name[32];
    uint64_t v;
};

/* Kept small (issue 14): 88 bytes a device, the reason and the counters
 * only when there are any (it was 0.9 KB a device, 0.44 MB at 500). */
struct dev_status {
    char name[64]; /* "" = the instance */
    int health;
    uint16_t ncounters, capcounters;
    char *reason;                 /* NULL = none */
    struct dev_counter *counters; /* at most MAX_COUNTERS */
};

#define MAX_REASON 159

static const char *reason_of(const struct dev_status *d)
{
    return d->reason ? d->reason : "";
}

static void link_add(struct mittari_ctx *ctx, struct hlink *l, int kind)
{
    l->kind = kind;
    l->next = ctx->handles.next;
    l->prev = &ctx->handles;
    ctx->handles.next->prev = l;
    ctx->handles.next = l;
}

static void link_del(struct hlink *l)
{
    if (!l->next)
        return;
    l->prev->next = l->next;
    l->next->prev = l->prev;
    l->next = l->prev = NULL;
}

static void maybe_finish_stop(struct mittari_ctx *ctx);

/* Every call into plugin code goes through these, so a fatal signal names
 * the instance and the callback (crash.h). */
#define PLUGIN_CALL(ctx, what, call)                                                               \
    do {                                                                                           \
        struct mt_crash_mark m_ = mt_crash_enter(&(ctx)->who, what);                               \
        call;                                                                                      \
        mt_crash_leave(m_);                                                                        \
    } while (0)

/* ---- emit (any thread) ---- */

static bool valid_name(const char *s, size_t max)
{
    size_t n = 0;
    if (!s || !*s)
        return false;
    for (; *s; s++, n++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '.' || *s == ':' || *s == '-'))
            return false;
    return n <= max;
}

static bool valid_text(const char *s, size_t max)
{
    size_t n = 0;
    for (; *s; s++, n++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    return n <= max;
}

static void invalid(struct mittari_ctx *ctx, const char *why)
{
    atomic_fetch_add(&ctx->invalid, 1);
    pthread_mutex_lock(&ctx->lock);
    mt_complain(&ctx->c_invalid, MT_WARNING, ctx->module, COMPLAIN_US, "reading refused: %s",
                why);
    pthread_mutex_unlock(&ctx->lock);
}

/* Static tags merged with the reading's (the reading's win), as canonical
 * JSON. 0 or -EINVAL. */
static int merge_tags(struct mittari_ctx *ctx, const struct mittari_reading *r, char *out,
                      size_t len)
{
    struct mittari_tag all[16 + MAX_TAGS];
    size_t n = 0;
    struct mt_buf b = {0};

    for (size_t i = 0; i < r->ntags; i++) {
        const struct mittari_tag *t = &r->tags[i];
        if (!t->key || !t->value || !valid_name(t->key, 32) || !valid_text(t->value, 128))
            return -EINVAL;
        all[n++] = *t;
    }
    for (size_t i = 0; i < ctx->ic->ntags; i++) {
        bool over = false;
        for (size_t j = 0; j < r->ntags; j++)
            over |= strcmp(r->tags[j].key, ctx->ic->tags[i].key) == 0;
        if (!over)
            all[n++] = ctx->ic->tags[i];
    }
    for (size_t i = 1; i < n; i++) {
        struct mittari_tag t = all[i];
        size_t j = i;
        while (j > 0 && strcmp(all[j - 1].key, t.key) > 0) {
            all[j] = all[j - 1];
            j--;
        }
        if (j > 0 && strcmp(all[j - 1].key, t.key) == 0)
            return -EINVAL; /* the same key twice in one reading */
        all[j] = t;
    }
    mt_buf_addc(&b, '{');
    for (size_t i = 0; i < n; i++) {
        if (i)
            mt_buf_addc(&b, ',');
        mt_buf_json_str(&b, all[i].key);
        mt_buf_addc(&b, ':');
        mt_buf_json_str(&b, all[i].value);
    }
    mt_buf_addc(&b, '}');
    int rc = b.len < len ? 0 : -EINVAL;
    if (!rc)
        memcpy(out, b.p, b.len + 1);
    mt_buf_free(&b);
    return rc;
}

/* Issue 8 §5: one cumulative series, one counter. A reading that would
 * mix a second counter in is refused and counted; said once per 10 min. */
static int feed(struct mittari_ctx *ctx, const struct mittari_reading *r, const struct mt_rec *rec)
{
    const char *source = r->size >= MITTARI_READING_SIZE_1_0 + sizeof(r->source) ? r->source : NULL;
    char why[320];

    if (source && !valid_text(source, 47)) {
        invalid(ctx, "source longer than 47 bytes or with control characters");
        return MITTARI_EREADING;
    }
    if (mt_series_feed(ctx->env.series, rec->series, ctx, ctx->ic->name, source, rec->ts,
                       rec->counter, why, sizeof(why)) == 0)
        return 0;
    atomic_fetch_add(&ctx->conflicts, 1);
    pthread_mutex_lock(&ctx->lock);
    mt_complain(&ctx->c_conflict, MT_WARNING, ctx->module, COMPLAIN_US,
                "counter reading refused: %s; give each counter its own metric, device or tags",
                why);
    pthread_mutex_unlock(&ctx->lock);
    return MITTARI_EREADING;
}

static int emit(struct mittari_ctx *ctx, const struct mittari_reading *r)
{
    struct mt_rec rec;
    char tags[2048];
    struct mt_series_info key;
    int rc;

    if (!atomic_load_explicit(&ctx->running, memory_order_acquire))
        return MITTARI_ESTOPPED;
    if (!r || r->size < MITTARI_READING_SIZE_1_0) {
        invalid(ctx, "struct mittari_reading too small (use MITTARI_READING_INIT)");
        return MITTARI_EREADING;
    }
    if (!valid_name(r->metric, 63)) {
        invalid(ctx, "metric missing or not [A-Za-z0-9_.:-]{1,63}");
        return MITTARI_EREADING;
    }
    if (r->device && !valid_name(r->device, 63)) {
        invalid(ctx, "device not [A-Za-z0-9_.:-]{1,63}");
        return MITTARI_EREADING;
    }
    if (r->unit && !valid_text(r->unit, 31)) {
        invalid(ctx, "unit longer than 31 bytes or with control characters");
        return MITTARI_EREADING;
    }
    if (r->kind < MITTARI_KIND_DELTA || r->kind > MITTARI_KIND_EVENT) {
        invalid(ctx, "unknown kind");
        return MITTARI_EREADING;
    }
    memset(&rec, 0, sizeof(rec));
    rec.kind = (uint8_t)r->kind;
    if (r->kind == MITTARI_KIND_CUMULATIVE) {
        unsigned bits = r->counter_bits ? r->counter_bits : 64;
        if (bits > 64 || r->counter > mt_norm_mask(bits)) {
            invalid(ctx, "counter wider than counter_bits");
            return MITTARI_EREADING;
        }
        rec.bits = (uint8_t)bits;
        rec.counter = r->counter;
    } else if (!isfinite(r->value)) {
        invalid(ctx, "value is not a finite number");
        return MITTARI_EREADING;
    } else {
        rec.value = r->value;
    }
    if (r->ntags > MAX_TAGS || (r->ntags && !r->tags)) {
        invalid(ctx, "more than 8 tags");
        return MITTARI_EREADING;
    }
    if (r->ts_us && (r->ts_us < MT_TS_MIN || r->ts_us >= MT_TS_MAX)) {
        /* nanoseconds or milliseconds by mistake: a year no output could
         * write back, or 1970 (issue 15 #7) */
        char why[160];
        snprintf(why, sizeof(why),
                 "ts_us %" PRId64 " is not a time in 2000..2099 in microseconds since the epoch "
                 "(milliseconds or nanoseconds?)",
                 r->ts_us);
        invalid(ctx, why);
        return MITTARI_EREADING;
    }
    rec.ts = r->ts_us ? r->ts_us : mt_now_us();
    if (r->subject_id) {
        const char *space = r->subject_space ? r->subject_space : "id";
        if (!r->subject_id_len || r->subject_id_len > 64 || !valid_name(space, 32)) {
            invalid(ctx, "subject_id empty or longer than 64 bytes, or bad subject_space");
            return MITTARI_EREADING;
        }
        if (mt_pseudo_subject(ctx->env.pseudo, space, r->subject_id, r->subject_id_len, rec.ts,
                              rec.subject)) {
            /* never says which number: it is the raw identifier */
            invalid(ctx, "subject_id is not a valid identifier of its subject_space");
            return MITTARI_EREADING;
        }
    }
    key = (struct mt_series_info){
        .kind = r->kind,
        .bits = rec.bits,
        .site = ctx->ic->site,
        .device = r->device ? r->device : ctx->ic->name,
        .metric = r->metric,
        .unit = r->unit ? r->unit : "",
        .tags = ctx->ic->tags_json,
    };
    if (r->ntags) {
        if (merge_tags(ctx, r, tags, sizeof(tags))) {
            invalid(ctx, "bad tag (key [A-Za-z0-9_.:-]{1,32}, value <= 128 bytes, keys unique)");
            return MITTARI_EREADING;
        }
        key.tags = tags;
    }
    rc = mt_series_intern(ctx->env.series, &key, &rec.series);
    if (rc) {
        invalid(ctx, rc == -ENOSPC ? "too many series" : "out of memory");
        return rc;
    }
    if (r->kind == MITTARI_KIND_CUMULATIVE && (rc = feed(ctx, r, &rec)))
        return rc;
    rec.origin = ctx->origin;
    rc = mt_writer_push(ctx->env.writer, &rec);
    if (rc) {
        atomic_fetch_add_explicit(&ctx->refused, 1, memory_order_relaxed);
        return rc;
    }
    atomic_fetch_add_explicit(&ctx->emitted, 1, memory_order_relaxed);
    atomic_store_explicit(&ctx->last_reading, mt_now_us(), memory_order_relaxed);
    return 0;
}

static int host_emit(struct mittari_ctx *ctx, const struct mittari_reading *r)
{
    const char *h = mt_crash_host_enter("emit");
    int rc;
    if (ctx->env.sink) /* in an isolated input's child: to the agent */
        rc = atomic_load_explicit(&ctx->running, memory_order_acquire)
                 ? ctx->env.sink->emit(ctx->env.sink->arg, r)
                 : MITTARI_ESTOPPED;
    else
        rc = emit(ctx, r);
    mt_crash_host_leave(h);
    return rc;
}

static void host_log(struct mittari_ctx *ctx, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mt_diagv(level, ctx->module, fmt, ap);
    va_end(ap);
}

static int64_t host_now(struct mittari_ctx *ctx)
{
    (void)ctx;
    return mt_now_us();
}

static const char *host_instance_name(struct mittari_ctx *ctx)
{
    return ctx->ic->name;
}

/* lock held. The status of a device, made on first use; NULL when the
 * name is bad or there are too many. */
static struct dev_status *dev_find(struct mittari_ctx *ctx, const char *device)
{
    const char *name = device ? device : "";
    if (device && !valid_name(device, 63))
        return NULL;
    for (size_t i = 0; i < ctx->ndevs; i++)
        if (strcmp(ctx->devs[i].name, name) == 0)
            return &ctx->devs[i];
    if (ctx->ndevs >= MAX_DEVICES)
        return NULL;
    if (ctx->ndevs % 16 == 0) {
        struct dev_status *v = realloc(ctx->devs, (ctx->ndevs + 16) * sizeof(*v));
        if (!v)
            return NULL;
        ctx->devs = v;
    }
    struct dev_status *d = &ctx->devs[ctx->ndevs++];
    memset(d, 0, sizeof(*d));
    snprintf(d->name, sizeof(d->name), "%s", name);
    return d;
}

static void host_set_health(struct mittari_ctx *ctx, const char *device, int health,
                            const char *reason)
{
    static const char *const names[] = {"up", "degraded", "down"};
    if (health < MITTARI_HEALTH_UP || health > MITTARI_HEALTH_DOWN)
        return;
    if (ctx->env.sink) { /* the agent keeps and logs it */
        ctx->env.sink->set_health(ctx->env.sink->arg, device, health, reason);
        return;
    }
    pthread_mutex_lock(&ctx->lock);
    struct dev_status *d = dev_find(ctx, device);
    if (!d) {
        pthread_mutex_unlock(&ctx->lock);
        return;
    }
    int old = d->health;
    d->health = health;
    if (!reason || strncmp(reason_of(d), reason, MAX_REASON) != 0) {
        free(d->reason);
        d->reason = reason && *reason ? strndup(reason, MAX_REASON) : NULL;
    }
    pthread_mutex_unlock(&ctx->lock);
    if (old != health)
        mt_diag(health == MITTARI_HEALTH_UP ? MT_NOTICE : MT_WARNING, ctx->module, "%s%s %s%s%s",
                device ? "device " : "instance", device ? device : "", names[health],
                reason && *reason ? ": " : "", reason ? reason : "");
}

static bool valid_counter(const char *s)
{
    size_t n = 0;
    for (; *s; s++, n++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return false;
    return n > 0 && n <= 31;
}

static void host_count(struct mittari_ctx *ctx, const char *device, const char *counter,
                       uint64_t n)
{
    if (!counter || !valid_counter(counter))
        return;
    if (ctx->env.sink) {
        ctx->env.sink->count(ctx->env.sink->arg, device, counter, n);
        return;
    }
    pthread_mutex_lock(&ctx->lock);
    struct dev_status *d = dev_find(ctx, device);
    for (size_t i = 0; d && i <= d->ncounters && i < MAX_COUNTERS; i++) {
        if (i == d->ncounters) {
            if (d->ncounters == d->capcounters) {
                uint16_t cap = d->capcounters ? d->capcounters * 2 : 4;
                struct dev_counter *v = realloc(d->counters, cap * sizeof(*v));
                if (!v)
                    break;
                d->counters = v;
                d->capcounters = cap;
            }
            snprintf(d->counters[i].name, sizeof(d->counters[i].name), "%s", counter);
            d->counters[i].v = 0;
            d->ncounters++;
        }
        if (strcmp(d->counters[i].name, counter) == 0) {
            d->counters[i].v += n;
            break;
        }
    }
    pthread_mutex_unlock(&ctx->lock);
}

/* ---- timers ---- */

static void timer_fire(uv_timer_t *t)
{
    struct mittari_timer *tm = t->data;
    if (tm->agent)
        tm->cb(tm->arg);
    else
        PLUGIN_CALL(tm->ctx, "timer callback", tm->cb(tm->arg));
}

static void handle_closed(uv_handle_t *h)
{
    struct hlink *l = h->data;
    struct mittari_ctx *ctx = NULL;
    switch (l->kind) {
    case H_TIMER: ctx = ((struct mittari_timer *)l)->ctx; break;
    case H_WATCH: ctx = ((struct mittari_watch *)l)->ctx; break;
    case H_POLL: ctx = ((struct mittari_poll *)l)->ctx; break;
    }
    free(l);
    ctx->pending_close--;
    maybe_finish_stop(ctx);
}

static int host_timer_start(struct mittari_ctx *ctx, uint64_t timeout_ms, uint64_t repeat_ms,
                            mittari_timer_cb cb, void *arg, struct mittari_timer **out)
{
    struct mittari_timer *tm;

    if (ctx->stopping || !cb)
        return ctx->stopping ? MITTARI_ESTOPPED : -EINVAL;
    tm = calloc(1, sizeof(*tm));
    if (!tm)
        return -ENOMEM;
    tm->ctx = ctx;
    tm->cb = cb;
    tm->arg = arg;
    uv_timer_init(ctx->env.loop, &tm->t);
    tm->t.data = tm;
    link_add(ctx, &tm->link, H_TIMER);
    uv_timer_start(&tm->t, timer_fire, timeout_ms, repeat_ms);
    if (out)
        *out = tm;
    return 0;
}

static void close_timer(struct mittari_timer *tm)
{
    link_del(&tm->link);
    tm->t.data = &tm->link;
    tm->ctx->pending_close++;
    uv_close((uv_handle_t *)&tm->t, handle_closed);
}

static void host_timer_stop(struct mittari_timer *tm)
{
    if (tm && tm->link.next)
        close_timer(tm);
}

/* ---- fd watches ---- */

static void watch_fire(uv_poll_t *p, int status, int events)
{
    struct mittari_watch *w = p->data;
    int ev = 0;
    if (status < 0 || (events & UV_DISCONNECT))
        ev |= MITTARI_FD_ERROR;
    if (events & UV_READABLE)
        ev |= MITTARI_FD_READ;
    if (events & UV_WRITABLE)
        ev |= MITTARI_FD_WRITE;
    PLUGIN_CALL(w->ctx, "fd callback", w->cb(w->arg, w->fd, ev));
}

static int host_fd_watch(struct mittari_ctx *ctx, int fd, int events, mittari_fd_cb cb, void *arg,
                         struct mittari_watch **out)
{
    struct mittari_watch *w;
    int uvev = 0, rc;

    if (ctx->stopping)
        return MITTARI_ESTOPPED;
    if (fd < 0 || !cb || !(events & (MITTARI_FD_READ | MITTARI_FD_WRITE)))
        return -EINVAL;
    w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    rc = uv_poll_init(ctx->env.loop, &w->p, fd);
    if (rc) {
        free(w);
        return rc;
    }
    w->ctx = ctx;
    w->cb = cb;
    w->arg = arg;
    w->fd = fd;
    w->p.data = w;
    link_add(ctx, &w->link, H_WATCH);
    if (events & MITTARI_FD_READ)
        uvev |= UV_READABLE | UV_DISCONNECT;
    if (events & MITTARI_FD_WRITE)
        uvev |= UV_WRITABLE;
    uv_poll_start(&w->p, uvev, watch_fire);
    if (out)
        *out = w;
    return 0;
}

static void close_watch(struct mittari_watch *w)
{
    link_del(&w->link);
    uv_poll_stop(&w->p);
    w->p.data = &w->link;
    w->ctx->pending_close++;
    uv_close((uv_handle_t *)&w->p, handle_closed);
}

static void host_fd_unwatch(struct mittari_watch *w)
{
    if (w && w->link.next)
        close_watch(w);
}

/* ---- polls on workers ---- */

static void poll_work(uv_work_t *req)
{
    struct mittari_poll *p = req->data;
    PLUGIN_CALL(p->ctx, "poll work", p->result = p->work_cb(p->arg));
}

static void close_poll_timer(struct mittari_poll *p)
{
    if (p->timer_closed)
        return;
    p->timer_closed = true;
    p->t.data = &p->link;
    p->ctx->pending_close++;
    uv_close((uv_handle_t *)&p->t, handle_closed);
}

static void poll_after(uv_work_t *req, int status)
{
    struct mittari_poll *p = req->data;
    struct mittari_ctx *ctx = p->ctx;

    (void)status;
    p->busy = false;
    ctx->polls_busy--;
    if (p->stopped) {
        close_poll_timer(p);
        return;
    }
    if (p->done_cb)
        PLUGIN_CALL(ctx, "poll done callback", p->done_cb(p->arg, p->result));
}

static void poll_fire(uv_timer_t *t)
{
    struct mittari_poll *p = t->data;
    if (p->busy) {
        atomic_fetch_add(&p->ctx->polls_skipped, 1);
        if (p->ctx->env.sink) /* the agent's statistics show it */
            p->ctx->env.sink->count(p->ctx->env.sink->arg, NULL, "polls_skipped", 1);
        return;
    }
    p->busy = true;
    p->ctx->polls_busy++;
    p->work.data = p;
    int rc = uv_queue_work(p->ctx->env.loop, &p->work, poll_work, poll_after);
    if (rc) {
        p->busy = false;
        p->ctx->polls_busy--;
        mt_diag(MT_ERR, p->ctx->module, "cannot queue poll: %s", uv_strerror(rc));
    }
}

static int host_poll_start(struct mittari_ctx *ctx, uint64_t interval_ms, mittari_work_cb work,
                           mittari_done_cb done, void *arg, struct mittari_poll **out)
{
    struct mittari_poll *p;

    if (ctx->stopping)
        return MITTARI_ESTOPPED;
    if (!work || interval_ms == 0)
        return -EINVAL;
    p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->ctx = ctx;
    p->work_cb = work;
    p->done_cb = done;
    p->arg = arg;
    uv_timer_init(ctx->env.loop, &p->t);
    p->t.data = p;
    link_add(ctx, &p->link, H_POLL);
    uv_timer_start(&p->t, poll_fire, 0, interval_ms);
    if (out)
        *out = p;
    return 0;
}

static void stop_poll(struct mittari_poll *p)
{
    link_del(&p->link);
    p->stopped = true;
    uv_timer_stop(&p->t);
    if (!p->busy)
        close_poll_timer(p);
}

static void host_poll_stop(struct mittari_poll *p)
{
    if (p && p->link.next)
        stop_poll(p);
}

static int host_decoder_run(struct mittari_decoder *d, const void *frame, size_t len, int64_t ts_us)
{
    const char *h = mt_crash_host_enter("decoder_run");
    int rc = mt_decoder_run(d, frame, len, ts_us);
    mt_crash_host_leave(h);
    return rc;
}

const struct mittari_host mt_host_api = {
    .abi_version = MITTARI_ABI_VERSION,
    .size = sizeof(struct mittari_host),
    .emit = host_emit,
    .log = host_log,
    .now = host_now,
    .timer_start = host_timer_start,
    .timer_stop = host_timer_stop,
    .fd_watch = host_fd_watch,
    .fd_unwatch = host_fd_unwatch,
    .poll_start = host_poll_start,
    .poll_stop = host_poll_stop,
    .set_health = host_set_health,
    .instance_name = host_instance_name,
    .count = host_count,
    .decoder_load = mt_decoder_load,
    .decoder_run = host_decoder_run,
    .decoder_free = mt_decoder_free,
    .decoder_submit = mt_decoder_submit,
};

/* ---- lifecycle (loop thread) ---- */

static void free_ctx(struct mittari_ctx *ctx)
{
    pthread_mutex_destroy(&ctx->lock);
    for (size_t i = 0; i < ctx->ndevs; i++) {
        free(ctx->devs[i].reason);
        free(ctx->devs[i].counters);
    }
    free(ctx->devs);
    mt_inst_conf_free(ctx->ic);
    free(ctx);
}

static const char *err_text(int rc)
{
    return mittari_strerror_own(rc) ? mittari_strerror_own(rc) : strerror(-rc);
}

int mt_input_create(struct mittari_ctx **out, const struct mt_input_env *env,
                    struct mt_inst_conf *ic, char *err, size_t errlen)
{
    struct mittari_ctx *ctx = calloc(1, sizeof(*ctx));
    int rc;

    *out = NULL;
    if (!ctx) {
        mt_inst_conf_free(ic);
        return -ENOMEM;
    }
    ctx->env = *env;
    ctx->ic = ic;
    ctx->desc = ic->plugin_ref->desc;
    ctx->handles.next = ctx->handles.prev = &ctx->handles;
    pthread_mutex_init(&ctx->lock, NULL);
    pthread_mutex_lock(&ctx->lock);
    dev_find(ctx, NULL); /* the instance's own status is entry 0 */
    pthread_mutex_unlock(&ctx->lock);
    snprintf(ctx->module, sizeof(ctx->module), "input %s[%s]", ic->plugin, ic->name);
    mt_crash_who_init(&ctx->who, ctx->module, ic->name, ic->plugin, ic->plugin_ref->path);
    if (env->writer)
        ctx->origin = mt_writer_origin(env->writer, ic->name);
    if (ic->isolate && !env->sink) {
        /* the plugin is created in the child, once it runs */
        struct mt_isolate_env ie = {env->loop, env->isolate_exe, env->isolate_stop_ms};
        rc = mt_isolate_create(&ctx->iso, ctx, &ie, ic);
        if (rc)
            snprintf(err, errlen, "cannot prepare its process: %s", strerror(-rc));
    } else {
        PLUGIN_CALL(ctx, "create",
                    rc = ctx->desc->create(&mt_host_api, ctx, ic->conf, &ctx->state));
        if (rc)
            snprintf(err, errlen, "create failed: %s", err_text(rc));
    }
    if (rc) {
        free_ctx(ctx);
        return rc;
    }
    *out = ctx;
    return 0;
}

int mt_input_start(struct mittari_ctx *ctx)
{
    int rc;

    if (ctx->held) {
        ctx->held = false;
        mt_host_api.set_health(ctx, NULL, MITTARI_HEALTH_UP, "");
    }
    atomic_store(&ctx->running, 1);
    if (ctx->iso)
        return mt_isolate_start(ctx->iso);
    PLUGIN_CALL(ctx, "start", rc = ctx->desc->start(ctx->state));
    if (rc)
        mt_diag(MT_ERR, ctx->module, "start failed: %s", err_text(rc));
    return rc;
}

static void held_start(void *arg)
{
    struct mittari_ctx *ctx = arg;
    mt_diag(MT_NOTICE, ctx->module, "hold-back over: starting");
    mt_input_start(ctx);
}

int mt_input_start_after(struct mittari_ctx *ctx, uint64_t delay_ms, const char *reason)
{
    struct mittari_timer *tm;
    int rc = host_timer_start(ctx, delay_ms, 0, held_start, ctx, &tm);
    if (rc)
        return mt_input_start(ctx);
    tm->agent = true; /* agent code, not the plugin's timer */
    ctx->held = true;
    mt_host_api.set_health(ctx, NULL, MITTARI_HEALTH_DOWN, reason);
    return 0;
}

static void maybe_finish_stop(struct mittari_ctx *ctx)
{
    if (!ctx->stopping || ctx->pending_close || ctx->polls_busy ||
        ctx->handles.next != &ctx->handles || (ctx->iso && !ctx->iso_stopped))
        return;
    atomic_store(&ctx->running, 0);
    if (ctx->iso)
        mt_isolate_free(ctx->iso);
    else if (ctx->state)
        PLUGIN_CALL(ctx, "destroy", ctx->desc->destroy(ctx->state));
    if (ctx->env.series)
        mt_series_release(ctx->env.series, ctx); /* its counters may go to a replacement */
    ctx->state = NULL;
    ctx->iso = NULL;
    void (*cb)(void *) = ctx->stopped_cb;
    void *arg = ctx->stopped_arg;
    free_ctx(ctx);
    if (cb)
        cb(arg);
}

static void iso_gone(void *arg)
{
    struct mittari_ctx *ctx = arg;
    ctx->iso_stopped = true;
    maybe_finish_stop(ctx);
}

void mt_input_stop(struct mittari_ctx *ctx, void (*done)(void *arg), void *arg)
{
    ctx->stopped_cb = done;
    ctx->stopped_arg = arg;
    if (atomic_load(&ctx->running) && !ctx->iso)
        PLUGIN_CALL(ctx, "stop", ctx->desc->stop(ctx->state));
    ctx->stopping = true;
    while (ctx->handles.next != &ctx->handles) {
        struct hlink *l = ctx->handles.next;
        switch (l->kind) {
        case H_TIMER: close_timer((struct mittari_timer *)l); break;
        case H_WATCH: close_watch((struct mittari_watch *)l); break;
        case H_POLL: stop_poll((struct mittari_poll *)l); break;
        }
    }
    if (ctx->iso) {
        /* a clean stop message, then the deadline and SIGKILL; the
         * readings it still sends are taken until it is gone */
        mt_isolate_stop(ctx->iso, iso_gone, ctx);
        return;
    }
    maybe_finish_stop(ctx);
}

bool mt_input_isolated(const struct mittari_ctx *ctx)
{
    return ctx->iso != NULL;
}

const char *mt_input_module(const struct mittari_ctx *ctx)
{
    return ctx->module;
}

const struct mt_crash_who *mt_input_who(const struct mittari_ctx *ctx)
{
    return &ctx->who;
}

int mt_input_polls_busy(const struct mittari_ctx *ctx)
{
    return ctx->polls_busy;
}

const struct mt_inst_conf *mt_input_conf(const struct mittari_ctx *ctx)
{
    return ctx->ic;
}

void mt_input_get_stats(struct mittari_ctx *ctx, struct mt_input_stats *st)
{
    st->emitted = atomic_load(&ctx->emitted);
    st->refused = atomic_load(&ctx->refused);
    st->invalid = atomic_load(&ctx->invalid);
    st->polls_skipped = atomic_load(&ctx->polls_skipped);
    st->conflicts = atomic_load(&ctx->conflicts);
}

int mt_input_health(struct mittari_ctx *ctx, const char *device, char *reason, size_t len)
{
    pthread_mutex_lock(&ctx->lock);
    struct dev_status *d = dev_find(ctx, device);
    int h = d ? d->health : -1;
    snprintf(reason, len, "%s", d ? reason_of(d) : "");
    pthread_mutex_unlock(&ctx->lock);
    return h;
}

uint64_t mt_input_counter(struct mittari_ctx *ctx, const char *device, const char *counter)
{
    uint64_t v = 0;
    pthread_mutex_lock(&ctx->lock);
    struct dev_status *d = dev_find(ctx, device);
    for (size_t i = 0; d && i < d->ncounters; i++)
        if (strcmp(d->counters[i].name, counter) == 0)
            v = d->counters[i].v;
    pthread_mutex_unlock(&ctx->lock);
    return v;
}

int64_t mt_input_last_reading(struct mittari_ctx *ctx)
{
    return atomic_load_explicit(&ctx->last_reading, memory_order_relaxed);
}

void mt_input_devices(struct mittari_ctx *ctx,
                      void (*cb)(void *arg, const struct mt_input_device *d), void *arg)
{
    struct mt_input_device out;

    pthread_mutex_lock(&ctx->lock);
    for (size_t i = 0; i < ctx->ndevs; i++) {
        const struct dev_status *d = &ctx->devs[i];
        out.name = d->name;
        out.health = d->health;
        out.reason = reason_of(d);
        out.ncounters = d->ncounters < MT_ARRAY_SIZE(out.counters) ? d->ncounters
                                                                  : MT_ARRAY_SIZE(out.counters);
        for (size_t k = 0; k < out.ncounters; k++) {
            out.counters[k].name = d->counters[k].name;
            out.counters[k].value = d->counters[k].v;
        }
        cb(arg, &out);
    }
    pthread_mutex_unlock(&ctx->lock);
}

void mt_input_summary(struct mittari_ctx *ctx, struct mt_buf *b)
{
    static const char *const names[] = {"up", "degraded", "down"};
    struct mt_input_stats st;
    size_t up = 0;

    mt_input_get_stats(ctx, &st);
    mt_buf_printf(b, "%s emitted %" PRIu64, ctx->module, st.emitted);
    if (st.refused)
        mt_buf_printf(b, ", refused %" PRIu64, st.refused);
    if (st.invalid)
        mt_buf_printf(b, ", invalid %" PRIu64, st.invalid);
    if (st.conflicts)
        mt_buf_printf(b, ", counter conflicts %" PRIu64, st.conflicts);
    if (st.polls_skipped)
        mt_buf_printf(b, ", polls skipped %" PRIu64, st.polls_skipped);
    struct mt_origin_stats os;
    mt_writer_origin_stats(ctx->env.writer, ctx->origin, &os);
    if (os.wraps || os.resets) /* issue 8 §6: what the normalizer met on its counters */
        mt_buf_printf(b, ", counter wraps %" PRIu64 ", resets %" PRIu64, os.wraps, os.resets);
    pthread_mutex_lock(&ctx->lock);
    for (size_t i = 0; i < ctx->ndevs; i++) {
        const struct dev_status *d = &ctx->devs[i];
        if (d->health == MITTARI_HEALTH_UP) {
            up += d->name[0] != 0;
        } else {
            mt_buf_printf(b, "; %s %s", d->name[0] ? d->name : "instance", names[d->health]);
            if (d->reason)
                mt_buf_printf(b, " (%s)", d->reason);
        }
        for (size_t k = 0; k < d->ncounters; k++)
            if (d->counters[k].v)
                mt_buf_printf(b, "; %s%s%s %" PRIu64, d->name, d->name[0] ? " " : "",
                              d->counters[k].name, d->counters[k].v);
    }
    if (up)
        mt_buf_printf(b, "; %zu devices up", up);
    pthread_mutex_unlock(&ctx->lock);
    if (ctx->iso)
        mt_isolate_summary(ctx->iso, b);
}
