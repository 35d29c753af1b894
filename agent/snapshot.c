#include "snapshot.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "config.h"
#include "report.h"

#ifndef MITTARI_VERSION
#define MITTARI_VERSION "0.0.0"
#endif

/* From half a millisecond (a quiet loop) to 5 s (a stall the watchdog
 * would see); the DESIGN target of "tens of milliseconds" sits in the
 * middle. */
const double mt_lag_bounds[MT_LAG_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                              0.1,    0.25,  0.5,    1,     2.5,   5};

void mt_lag_observe(struct mt_lag_hist *h, uint64_t busy_ns)
{
    double s = (double)busy_ns / 1e9;
    size_t i = 0;
    while (i < MT_LAG_BUCKETS && s > mt_lag_bounds[i])
        i++;
    h->counts[i]++;
    h->n++;
    h->sum_s += s;
    if (busy_ns > h->max_ns)
        h->max_ns = busy_ns;
}

_Static_assert(MT_SNAP_NOT_UP >= MT_HEALTH_MAX_REASONS,
               "a summary keeps as many devices not up as the health has reasons");

static const char *sdup(struct mt_arena *a, const char *s)
{
    return mt_arena_strdup(a, s ? s : "");
}

struct dev_copy {
    struct mt_snap *s;
    struct mt_snap_input *in;
    size_t cap;
    int rc;
};

static void copy_device(void *arg, const struct mt_input_device *d)
{
    struct dev_copy *c = arg;
    struct mt_arena *a = &c->s->arena;
    if (c->rc)
        return;
    c->in->devices++;
    if (d->health > c->in->worst)
        c->in->worst = d->health;
    for (size_t k = 0; k < d->ncounters; k++)
        if (mt_report_is_decode_error(d->counters[k].name))
            c->in->decode_errors += d->counters[k].value;
    if (c->s->summary && (d->health == MITTARI_HEALTH_UP || c->in->ndevs >= MT_SNAP_NOT_UP))
        return;
    if (c->in->ndevs == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 8;
        struct mt_snap_device *v = mt_arena_alloc(a, cap * sizeof(*v));
        if (!v) {
            c->rc = -ENOMEM;
            return;
        }
        if (c->in->ndevs)
            memcpy(v, c->in->devs, c->in->ndevs * sizeof(*v));
        c->in->devs = v;
        c->cap = cap;
    }
    struct mt_snap_device *o = &c->in->devs[c->in->ndevs];
    o->name = sdup(a, d->name);
    o->health = d->health;
    o->reason = sdup(a, d->reason);
    o->ncounters = d->ncounters;
    o->counter_names = mt_arena_alloc(a, (d->ncounters + 1) * sizeof(*o->counter_names));
    o->counter_values = mt_arena_alloc(a, (d->ncounters + 1) * sizeof(*o->counter_values));
    if (!o->name || !o->reason || !o->counter_names || !o->counter_values) {
        c->rc = -ENOMEM;
        return;
    }
    for (size_t k = 0; k < d->ncounters; k++) {
        o->counter_names[k] = sdup(a, d->counters[k].name);
        o->counter_values[k] = d->counters[k].value;
        if (!o->counter_names[k]) {
            c->rc = -ENOMEM;
            return;
        }
    }
    c->in->ndevs++;
}

static int take_inputs(struct mt_snap *s, struct mt_agent *a)
{
    s->ninputs = mt_agent_ninputs(a);
    s->inputs = mt_arena_alloc(&s->arena, (s->ninputs + 1) * sizeof(*s->inputs));
    if (!s->inputs)
        return -ENOMEM;
    for (size_t i = 0; i < s->ninputs; i++) {
        struct mittari_ctx *ctx = mt_agent_input(a, i);
        const struct mt_inst_conf *ic = mt_input_conf(ctx);
        struct mt_snap_input *in = &s->inputs[i];
        struct dev_copy c = {s, in, 0, 0};
        in->name = sdup(&s->arena, ic->name);
        in->plugin = sdup(&s->arena, ic->plugin);
        in->site = sdup(&s->arena, ic->site);
        mt_input_get_stats(ctx, &in->st);
        struct mt_writer *w = mt_agent_writer(a);
        if (w) {
            struct mt_origin_stats os = {0};
            mt_writer_origin_stats(w, mt_writer_origin(w, ic->name), &os);
            in->wraps = os.wraps;
            in->resets = os.resets;
        }
        in->last_reading_us = mt_input_last_reading(ctx);
        mt_input_devices(ctx, copy_device, &c);
        if (c.rc || !in->name || !in->plugin || !in->site)
            return -ENOMEM;
    }
    return 0;
}

static const char *state_name(const struct mt_output *o)
{
    switch (mt_output_state(o)) {
    case MT_OUT_NEW: return "new";
    case MT_OUT_OPENING: return "opening";
    case MT_OUT_OPEN_BACKOFF: return "retrying to open";
    case MT_OUT_RUNNING: return "running";
    case MT_OUT_STOPPED: return "stopped";
    case MT_OUT_CLOSING: return "closing";
    }
    return "?";
}

static int take_outputs(struct mt_snap *s, struct mt_agent *a)
{
    s->noutputs = mt_agent_noutputs(a);
    s->outputs = mt_arena_alloc(&s->arena, (s->noutputs + 1) * sizeof(*s->outputs));
    if (!s->outputs)
        return -ENOMEM;
    for (size_t i = 0; i < s->noutputs; i++) {
        const struct mt_output *o = mt_agent_output(a, i);
        struct mt_snap_output *so = &s->outputs[i];
        so->name = sdup(&s->arena, mt_output_name(o));
        so->type = sdup(&s->arena, mt_agent_output_type(a, i));
        so->cursor = mt_output_cursor(o);
        so->busy = mt_output_busy(o);
        so->st = *mt_output_stats(o);
        const struct mt_output_status *last = mt_output_last(o);
        so->last_success_us = last->ok_at;
        so->last_error_us = last->err_at;
        so->last_error = sdup(&s->arena, last->error);
        so->state = state_name(o);
        if (!so->name || !so->type || !so->last_error)
            return -ENOMEM;
    }
    return 0;
}

static void take_writer(struct mt_snap *s, struct mt_writer *w)
{
    const struct mt_writer_stats *ws = mt_writer_stats(w);
    s->committed = mt_writer_committed(w);
    s->writer_error = mt_writer_error(w);
    s->w = (struct mt_writer_figures){
        .queued = ws->queued,
        .stored = ws->stored,
        .refused_queue = ws->refused_queue,
        .refused_full = ws->refused_full,
        .refused_stopped = ws->refused_stopped,
        .refused_storage = ws->refused_storage,
        .dropped_cap = ws->dropped_cap,
        .deleted_retention = ws->deleted_retention,
        .deleted_cap_delivered = ws->deleted_cap_delivered,
        .commits = ws->commits,
        .commit_errors = ws->commit_errors,
        .counter_wraps = ws->counter_wraps,
        .counter_resets = ws->counter_resets,
        .derived = ws->derived,
    };
}

int mt_snap_take(struct mt_agent *a, const struct mt_lag_hist *lag, int64_t started_us,
                 bool detail, struct mt_snap **out)
{
    const struct mt_config *conf = mt_agent_config(a);
    struct mt_snap *s = calloc(1, sizeof(*s));
    int rc = -ENOMEM;

    *out = NULL;
    if (!s)
        return -ENOMEM;
    atomic_init(&s->refs, 1);
    s->taken_us = mt_now_us();
    s->taken_mono_us = mt_mono_us();
    s->summary = !detail;
    s->agent_id = sdup(&s->arena, conf->agent.id);
    s->site = sdup(&s->arena, conf->agent.site);
    s->timezone = sdup(&s->arena, conf->agent.timezone);
    s->version = MITTARI_VERSION;
    s->phase = mt_agent_phase_name(a);
    s->started_us = started_us;
    s->pid = (long)getpid();
    s->lag = *lag;
    if (!s->agent_id || !s->site || !s->timezone)
        goto fail;
    if (mt_agent_writer(a))
        take_writer(s, mt_agent_writer(a));
    rc = take_inputs(s, a);
    if (!rc)
        rc = take_outputs(s, a);
    if (rc)
        goto fail;
    *out = s;
    return 0;
fail:
    mt_snap_unref(s);
    return rc;
}

struct mt_snap *mt_snap_ref(struct mt_snap *s)
{
    if (s)
        atomic_fetch_add(&s->refs, 1);
    return s;
}

void mt_snap_unref(struct mt_snap *s)
{
    if (!s || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    mt_arena_free(&s->arena);
    free(s);
}
