#include "report.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <mittari/mittari.h>

static const char *const health_names[] = {"ok", "degraded", "failing"};
static const char *const dev_health_names[] = {"up", "degraded", "down"};

const char *mt_health_name(int level)
{
    return level >= 0 && level <= MT_HEALTH_FAILING ? health_names[level] : "?";
}

static const char *err_text(int rc)
{
    const char *own = mittari_strerror_own(rc);
    return own ? own : strerror(-rc);
}

static const char *dev_health(int h)
{
    return h >= MITTARI_HEALTH_UP && h <= MITTARI_HEALTH_DOWN ? dev_health_names[h] : "?";
}

static void reason(struct mt_health *h, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void reason(struct mt_health *h, int level, const char *fmt, ...)
{
    va_list ap;
    if (level > h->level)
        h->level = level;
    if (h->n == MT_HEALTH_MAX_REASONS)
        return;
    va_start(ap, fmt);
    vsnprintf(h->reasons[h->n++], sizeof(h->reasons[0]), fmt, ap);
    va_end(ap);
}

/* "45 s", "12 min", "3 h 5 min", "2 d 4 h" */
static void fmt_age(int64_t us, char *buf, size_t len)
{
    int64_t s = us / 1000000;
    if (s < 0)
        s = 0;
    if (s < 120)
        snprintf(buf, len, "%" PRId64 " s", s);
    else if (s < 3600)
        snprintf(buf, len, "%" PRId64 " min", s / 60);
    else if (s < 86400)
        snprintf(buf, len, "%" PRId64 " h %" PRId64 " min", s / 3600, s / 60 % 60);
    else
        snprintf(buf, len, "%" PRId64 " d %" PRId64 " h", s / 86400, s / 3600 % 24);
}

static void eval_inputs(const struct mt_snap *s, struct mt_health *h)
{
    for (size_t i = 0; i < s->ninputs; i++) {
        const struct mt_snap_input *in = &s->inputs[i];
        for (size_t k = 0; k < in->ndevs; k++) {
            const struct mt_snap_device *d = &in->devs[k];
            if (d->health == MITTARI_HEALTH_UP)
                continue;
            reason(h, MT_HEALTH_DEGRADED, "input %s: %s%s %s%s%s", in->name,
                   d->name[0] ? "device " : "instance", d->name, dev_health(d->health),
                   d->reason[0] ? ": " : "", d->reason);
        }
    }
}

static void eval_outputs(const struct mt_snap *s, const struct mt_facts *f,
                         const struct mt_health_conf *c, int64_t now_us, struct mt_health *h)
{
    char age[40];
    for (size_t i = 0; i < s->noutputs; i++) {
        const struct mt_snap_output *o = &s->outputs[i];
        const struct mt_fact_output *fo = mt_facts_output(f, o->name);
        if (fo && fo->oldest_us && now_us - fo->oldest_us > c->backlog_warn_us) {
            fmt_age(now_us - fo->oldest_us, age, sizeof(age));
            reason(h, MT_HEALTH_DEGRADED,
                   "output %s: %" PRId64 " readings wait for delivery, the oldest for %s",
                   o->name, fo->backlog, age);
        }
        if (o->last_error_us > o->last_success_us &&
            now_us - o->last_error_us < 2 * c->backlog_warn_us) {
            fmt_age(now_us - o->last_error_us, age, sizeof(age));
            reason(h, MT_HEALTH_DEGRADED,
                   "output %s: deliveries fail (retrying; the last failure %s ago%s%s)", o->name,
                   age, o->last_error && o->last_error[0] ? ": " : "",
                   o->last_error ? o->last_error : "");
        }
        if (o->st.parked_batches)
            reason(h, MT_HEALTH_DEGRADED,
                   "output %s: %" PRIu64 " batches (%" PRIu64
                   " readings) parked since start after permanent errors",
                   o->name, o->st.parked_batches, o->st.parked_readings);
    }
}

void mt_health_eval(const struct mt_snap *s, const struct mt_facts *f,
                    const struct mt_health_conf *c, int64_t now_us, int64_t now_mono_us,
                    struct mt_health *h)
{
    memset(h, 0, sizeof(*h));
    if (!s) {
        reason(h, MT_HEALTH_FAILING, "the agent is not running");
        return;
    }
    int64_t stale = now_mono_us - s->taken_mono_us;
    if (stale > c->stall_us)
        reason(h, MT_HEALTH_FAILING,
               "the agent's loop has not turned for %.1f s (a callback blocks it?)",
               (double)stale / 1e6);
    if (strcmp(s->phase, "running") != 0)
        reason(h, MT_HEALTH_FAILING, "the agent is stopping (%s)", s->phase);
    if (s->writer_error)
        reason(h, MT_HEALTH_FAILING, "the log cannot be written: %s%s",
               err_text(s->writer_error),
               s->writer_error == -ENOSPC           ? " (disk or size cap full)"
               : s->writer_error == MITTARI_ESTORAGE ? " (damaged: see mittari salvage)"
                                                     : "");
    if (s->recent_lag_max_ns > 1000000000ull)
        reason(h, MT_HEALTH_DEGRADED, "the loop was blocked for %.1f s in the last minute",
               (double)s->recent_lag_max_ns / 1e9);
    if (s->recent_refused)
        reason(h, MT_HEALTH_DEGRADED,
               "%" PRIu64 " readings refused at intake in the last minute (queue full or log "
               "at its cap)",
               s->recent_refused);
    if (s->recent_dropped)
        reason(h, MT_HEALTH_DEGRADED,
               "%" PRIu64 " undelivered readings dropped at the size cap in the last minute",
               s->recent_dropped);
    if (!s->ninputs)
        reason(h, MT_HEALTH_DEGRADED, "no input is running");
    eval_inputs(s, h);
    if (f && f->error)
        reason(h, MT_HEALTH_DEGRADED, "the status cannot read the log: %s", f->error_text);
    eval_outputs(s, f, c, now_us, h);
}

static const char *const decode_counters[] = {"decoder_errors", "bad_frames", "crc_errors",
                                              "overlong_frames", NULL};

bool mt_report_is_decode_error(const char *counter)
{
    for (size_t i = 0; decode_counters[i]; i++)
        if (strcmp(counter, decode_counters[i]) == 0)
            return true;
    return false;
}

/* Both figures are over every device: the totals mt_snap_take keeps, or
 * what the devices held say, whichever is more (a summary holds only some
 * devices; a snapshot made by hand, as in the tests, has no totals). */
uint64_t mt_report_decode_errors(const struct mt_snap_input *in)
{
    uint64_t n = 0;
    for (size_t k = 0; k < in->ndevs; k++)
        for (size_t j = 0; j < in->devs[k].ncounters; j++)
            if (mt_report_is_decode_error(in->devs[k].counter_names[j]))
                n += in->devs[k].counter_values[j];
    return n > in->decode_errors ? n : in->decode_errors;
}

/* The instance's own health, or the worst of its devices' */
static int input_health(const struct mt_snap_input *in)
{
    int w = in->worst > MITTARI_HEALTH_UP ? in->worst : MITTARI_HEALTH_UP;
    for (size_t k = 0; k < in->ndevs; k++)
        if (in->devs[k].health > w)
            w = in->devs[k].health;
    return w;
}

/* ---- JSON ---- */

static void j_key(struct mt_buf *b, bool *first, const char *key)
{
    if (!*first)
        mt_buf_addc(b, ',');
    *first = false;
    mt_buf_json_str(b, key);
    mt_buf_addc(b, ':');
}

static void j_str(struct mt_buf *b, bool *first, const char *key, const char *v)
{
    j_key(b, first, key);
    if (v)
        mt_buf_json_str(b, v);
    else
        mt_buf_adds(b, "null");
}

static void j_u64(struct mt_buf *b, bool *first, const char *key, uint64_t v)
{
    j_key(b, first, key);
    mt_buf_printf(b, "%" PRIu64, v);
}

static void j_i64(struct mt_buf *b, bool *first, const char *key, int64_t v)
{
    j_key(b, first, key);
    mt_buf_i64(b, v);
}

static void j_time(struct mt_buf *b, bool *first, const char *key, int64_t us)
{
    char t[40];
    j_key(b, first, key);
    if (!us) {
        mt_buf_adds(b, "null");
        return;
    }
    mt_fmt_utc(us, t, sizeof(t), 0);
    mt_buf_json_str(b, t);
}

static void j_secs(struct mt_buf *b, bool *first, const char *key, int64_t us)
{
    j_key(b, first, key);
    mt_buf_printf(b, "%.3f", (double)us / 1e6);
}

static void json_health(struct mt_buf *b, const struct mt_health *h)
{
    bool first = true;
    mt_buf_adds(b, "\"health\":{");
    j_str(b, &first, "status", mt_health_name(h->level));
    j_key(b, &first, "reasons");
    mt_buf_addc(b, '[');
    for (size_t i = 0; i < h->n; i++) {
        if (i)
            mt_buf_addc(b, ',');
        mt_buf_json_str(b, h->reasons[i]);
    }
    mt_buf_adds(b, "]}");
}

static void json_agent(struct mt_buf *b, const struct mt_snap *s, int64_t now_us)
{
    bool first = true;
    mt_buf_adds(b, ",\"agent\":{");
    j_time(b, &first, "time", now_us);
    if (!s) {
        j_str(b, &first, "phase", "not running");
        mt_buf_addc(b, '}');
        return;
    }
    j_str(b, &first, "id", s->agent_id);
    j_str(b, &first, "site", s->site);
    j_str(b, &first, "version", s->version);
    j_i64(b, &first, "pid", s->pid);
    j_str(b, &first, "phase", s->phase);
    j_str(b, &first, "timezone", s->timezone);
    j_time(b, &first, "started", s->started_us);
    j_secs(b, &first, "uptime_s", s->taken_us - s->started_us);
    j_time(b, &first, "snapshot", s->taken_us);
    mt_buf_addc(b, '}');
}

static void json_log(struct mt_buf *b, const struct mt_snap *s, const struct mt_facts *f)
{
    bool first = true;
    mt_buf_adds(b, ",\"log\":{");
    if (f) {
        j_u64(b, &first, "size_bytes", f->log_bytes);
        j_i64(b, &first, "rows", f->rows);
        j_i64(b, &first, "first_seq", f->min_seq);
        j_i64(b, &first, "last_seq", s ? s->committed : f->max_seq);
        j_str(b, &first, "read_error", f->error ? f->error_text : NULL);
        j_time(b, &first, "read_at", f->taken_us);
    }
    if (s) {
        const struct mt_writer_figures *w = &s->w;
        if (!f)
            j_i64(b, &first, "last_seq", s->committed);
        j_str(b, &first, "write_error", s->writer_error ? err_text(s->writer_error) : NULL);
        j_u64(b, &first, "queued", w->queued);
        j_u64(b, &first, "stored", w->stored);
        j_u64(b, &first, "refused_queue_full", w->refused_queue);
        j_u64(b, &first, "refused_cap", w->refused_full);
        j_u64(b, &first, "refused_stopping", w->refused_stopped);
        j_u64(b, &first, "refused_damaged", w->refused_storage);
        j_u64(b, &first, "dropped_cap", w->dropped_cap);
        j_u64(b, &first, "deleted_retention", w->deleted_retention);
        j_u64(b, &first, "deleted_cap_delivered", w->deleted_cap_delivered);
        j_u64(b, &first, "commits", w->commits);
        j_u64(b, &first, "commit_errors", w->commit_errors);
        j_u64(b, &first, "counter_wraps", w->counter_wraps);
        j_u64(b, &first, "counter_resets", w->counter_resets);
        j_u64(b, &first, "derived", w->derived);
    }
    mt_buf_addc(b, '}');
}

static void json_device(struct mt_buf *b, const struct mt_snap_device *d)
{
    bool first = true;
    mt_buf_addc(b, '{');
    j_str(b, &first, "name", d->name);
    j_str(b, &first, "health", dev_health(d->health));
    j_str(b, &first, "reason", d->reason);
    j_key(b, &first, "counters");
    mt_buf_addc(b, '{');
    for (size_t j = 0; j < d->ncounters; j++) {
        bool f1 = j == 0;
        j_u64(b, &f1, d->counter_names[j], d->counter_values[j]);
    }
    mt_buf_adds(b, "}}");
}

static void json_inputs(struct mt_buf *b, const struct mt_snap *s)
{
    mt_buf_adds(b, ",\"inputs\":[");
    for (size_t i = 0; s && i < s->ninputs; i++) {
        const struct mt_snap_input *in = &s->inputs[i];
        bool first = true;
        mt_buf_adds(b, i ? ",{" : "{");
        j_str(b, &first, "name", in->name);
        j_str(b, &first, "plugin", in->plugin);
        j_str(b, &first, "site", in->site);
        j_str(b, &first, "health", dev_health(input_health(in)));
        j_time(b, &first, "last_reading", in->last_reading_us);
        j_key(b, &first, "last_reading_age_s");
        if (in->last_reading_us)
            mt_buf_printf(b, "%.3f", (double)(s->taken_us - in->last_reading_us) / 1e6);
        else
            mt_buf_adds(b, "null");
        j_u64(b, &first, "received", in->st.emitted);
        j_u64(b, &first, "refused", in->st.refused);
        j_u64(b, &first, "invalid", in->st.invalid);
        j_u64(b, &first, "decode_errors", mt_report_decode_errors(in));
        j_u64(b, &first, "counter_wraps", in->wraps);
        j_u64(b, &first, "counter_resets", in->resets);
        j_u64(b, &first, "counter_conflicts", in->st.conflicts);
        j_u64(b, &first, "polls_skipped", in->st.polls_skipped);
        /* false only when the loop did not answer a request in time and
         * its last summary was shown (snapshot.h): devices not up only */
        j_key(b, &first, "devices_complete");
        mt_buf_adds(b, s->summary ? "false" : "true");
        j_key(b, &first, "devices");
        mt_buf_addc(b, '[');
        for (size_t k = 0; k < in->ndevs; k++) {
            if (k)
                mt_buf_addc(b, ',');
            json_device(b, &in->devs[k]);
        }
        mt_buf_adds(b, "]}");
    }
    mt_buf_addc(b, ']');
}

static void json_parked(struct mt_buf *b, bool *first, const struct mt_fact_parked *p)
{
    j_key(b, first, "parked");
    if (!p) {
        mt_buf_adds(b, "{\"batches\":0,\"readings\":0,\"last_at\":null,\"last_error\":null}");
        return;
    }
    bool f1 = true;
    mt_buf_addc(b, '{');
    j_i64(b, &f1, "batches", p->batches);
    j_i64(b, &f1, "readings", p->readings);
    j_time(b, &f1, "last_at", p->last_at_us);
    j_str(b, &f1, "last_error", p->last_error);
    mt_buf_addc(b, '}');
}

static void json_output_facts(struct mt_buf *b, bool *first, const struct mt_fact_output *fo,
                              int64_t now_us)
{
    j_key(b, first, "backlog");
    if (fo)
        mt_buf_i64(b, fo->backlog);
    else
        mt_buf_adds(b, "null");
    j_time(b, first, "backlog_oldest", fo ? fo->oldest_us : 0);
    j_key(b, first, "backlog_age_s");
    if (fo && fo->oldest_us)
        mt_buf_printf(b, "%.3f", (double)(now_us - fo->oldest_us) / 1e6);
    else
        mt_buf_adds(b, fo ? "0" : "null");
}

static void json_outputs(struct mt_buf *b, const struct mt_snap *s, const struct mt_facts *f,
                         int64_t now_us)
{
    mt_buf_adds(b, ",\"outputs\":[");
    size_t n = s ? s->noutputs : f ? f->noutputs : 0;
    for (size_t i = 0; i < n; i++) {
        bool first = true;
        const char *name = s ? s->outputs[i].name : f->outputs[i].name;
        const struct mt_fact_output *fo = mt_facts_output(f, name);
        mt_buf_adds(b, i ? ",{" : "{");
        j_str(b, &first, "name", name);
        if (s) {
            const struct mt_snap_output *o = &s->outputs[i];
            j_str(b, &first, "type", o->type);
            j_i64(b, &first, "cursor", o->cursor);
            json_output_facts(b, &first, fo, now_us);
            j_u64(b, &first, "delivered", o->st.delivered);
            j_u64(b, &first, "batches", o->st.batches);
            j_u64(b, &first, "retries", o->st.retries);
            j_u64(b, &first, "parked_batches", o->st.parked_batches);
            j_u64(b, &first, "parked_readings", o->st.parked_readings);
            j_u64(b, &first, "lost", o->st.lost);
            j_str(b, &first, "busy", o->busy ? "sending" : "idle");
            j_str(b, &first, "state", o->state);
            j_time(b, &first, "last_success", o->last_success_us);
            j_time(b, &first, "last_error_at", o->last_error_us);
            j_str(b, &first, "last_error",
                  o->last_error_us && o->last_error && o->last_error[0] ? o->last_error : NULL);
        } else {
            j_i64(b, &first, "cursor", fo->cursor);
            json_output_facts(b, &first, fo, now_us);
        }
        json_parked(b, &first, mt_facts_parked(f, name));
        mt_buf_addc(b, '}');
    }
    mt_buf_addc(b, ']');
}

int mt_report_json(const struct mt_snap *s, const struct mt_facts *f, const struct mt_health *h,
                   int64_t now_us, struct mt_buf *out)
{
    mt_buf_addc(out, '{');
    json_health(out, h);
    json_agent(out, s, now_us);
    json_log(out, s, f);
    json_inputs(out, s);
    /* the rule engine is not in this version: an empty list, not a guess */
    mt_buf_adds(out, ",\"rules\":[]");
    json_outputs(out, s, f, now_us);
    return mt_buf_adds(out, "}\n");
}

/* ---- text ---- */

static void fmt_bytes(uint64_t n, char *buf, size_t len)
{
    if (n >= 1024ull * 1024 * 1024)
        snprintf(buf, len, "%.1f GiB", (double)n / (1024.0 * 1024 * 1024));
    else if (n >= 1024ull * 1024)
        snprintf(buf, len, "%.1f MiB", (double)n / (1024.0 * 1024));
    else
        snprintf(buf, len, "%.1f KiB", (double)n / 1024.0);
}

static void text_inputs(struct mt_buf *b, const struct mt_snap *s)
{
    char age[40];
    mt_buf_printf(b, "inputs (%zu):\n", s->ninputs);
    for (size_t i = 0; i < s->ninputs; i++) {
        const struct mt_snap_input *in = &s->inputs[i];
        mt_buf_printf(b, "  %-16s %-10s %-8s", in->name, in->plugin,
                      dev_health(input_health(in)));
        if (in->last_reading_us) {
            fmt_age(s->taken_us - in->last_reading_us, age, sizeof(age));
            mt_buf_printf(b, " last reading %s ago", age);
        } else {
            mt_buf_adds(b, " no reading yet");
        }
        mt_buf_printf(b, "; received %" PRIu64, in->st.emitted);
        if (in->st.refused)
            mt_buf_printf(b, ", refused %" PRIu64, in->st.refused);
        if (in->st.invalid)
            mt_buf_printf(b, ", invalid %" PRIu64, in->st.invalid);
        uint64_t de = mt_report_decode_errors(in);
        if (de)
            mt_buf_printf(b, ", decode errors %" PRIu64, de);
        if (in->wraps || in->resets)
            mt_buf_printf(b, ", counter wraps %" PRIu64 ", resets %" PRIu64, in->wraps,
                          in->resets);
        mt_buf_addc(b, '\n');
        if (s->summary && in->ndevs < in->devices)
            mt_buf_adds(b, "    (devices not up only: the loop did not answer in time)\n");
        for (size_t k = 0; k < in->ndevs; k++) {
            const struct mt_snap_device *d = &in->devs[k];
            if (d->health == MITTARI_HEALTH_UP && !d->ncounters)
                continue;
            mt_buf_printf(b, "    %-20s %s%s%s", d->name[0] ? d->name : "(instance)",
                          dev_health(d->health), d->reason[0] ? ": " : "", d->reason);
            for (size_t j = 0; j < d->ncounters; j++)
                mt_buf_printf(b, "%s%s %" PRIu64, j ? ", " : "; ", d->counter_names[j],
                              d->counter_values[j]);
            mt_buf_addc(b, '\n');
        }
    }
}

static void text_output(struct mt_buf *b, const char *name, const char *type, int64_t cursor,
                        const struct mt_fact_output *fo, const struct mt_fact_parked *p,
                        int64_t now_us)
{
    char age[40];
    mt_buf_printf(b, "  %-16s %-10s cursor %" PRId64, name, type, cursor);
    if (fo && fo->backlog) {
        mt_buf_printf(b, ", backlog %" PRId64, fo->backlog);
        if (fo->oldest_us) {
            fmt_age(now_us - fo->oldest_us, age, sizeof(age));
            mt_buf_printf(b, " (oldest %s)", age);
        }
    } else if (fo) {
        mt_buf_adds(b, ", backlog 0");
    }
    mt_buf_addc(b, '\n');
    if (p && p->batches) {
        fmt_age(now_us - p->last_at_us, age, sizeof(age));
        mt_buf_printf(b, "    parked: %" PRId64 " batches, %" PRId64
                         " readings; the last %s ago: %s\n",
                      p->batches, p->readings, age, p->last_error);
    }
}

int mt_report_text(const struct mt_snap *s, const struct mt_facts *f, const struct mt_health *h,
                   int64_t now_us, struct mt_buf *b)
{
    char age[40], size[40];
    if (s) {
        fmt_age(s->taken_us - s->started_us, age, sizeof(age));
        mt_buf_printf(b, "mittari %s: agent %s, site %s, %s (pid %ld, up %s)\n", s->version,
                      s->agent_id, s->site, s->phase, s->pid, age);
    } else {
        mt_buf_adds(b, "mittari: figures from the log\n");
    }
    mt_buf_printf(b, "health: %s\n", mt_health_name(h->level));
    for (size_t i = 0; i < h->n; i++)
        mt_buf_printf(b, "  - %s\n", h->reasons[i]);
    if (s)
        text_inputs(b, s);
    size_t n = s ? s->noutputs : f ? f->noutputs : 0;
    mt_buf_printf(b, "outputs (%zu):\n", n);
    for (size_t i = 0; i < n; i++) {
        const char *name = s ? s->outputs[i].name : f->outputs[i].name;
        const struct mt_fact_output *fo = mt_facts_output(f, name);
        if (s) {
            const struct mt_snap_output *o = &s->outputs[i];
            text_output(b, name, o->type, o->cursor, fo, mt_facts_parked(f, name), now_us);
            mt_buf_printf(b, "    delivered %" PRIu64 ", retries %" PRIu64 ", parked %" PRIu64
                             " since start",
                          o->st.delivered, o->st.retries, o->st.parked_batches);
            if (o->last_success_us) {
                fmt_age(now_us - o->last_success_us, age, sizeof(age));
                mt_buf_printf(b, "; last success %s ago", age);
            }
            if (o->last_error_us) {
                fmt_age(now_us - o->last_error_us, age, sizeof(age));
                mt_buf_printf(b, "; last failure %s ago", age);
                if (o->last_error && o->last_error[0])
                    mt_buf_printf(b, ": %s", o->last_error);
            }
            mt_buf_addc(b, '\n');
        } else {
            text_output(b, name, "", fo->cursor, fo, mt_facts_parked(f, name), now_us);
        }
    }
    if (f && !f->error) {
        fmt_bytes(f->log_bytes, size, sizeof(size));
        mt_buf_printf(b, "log: %s, %" PRId64 " readings (seq %" PRId64 "..%" PRId64 ")\n", size,
                      f->rows, f->min_seq, f->max_seq);
    } else if (f) {
        mt_buf_printf(b, "log: cannot be read: %s\n", f->error_text);
    }
    if (s) {
        mt_buf_printf(b, "stored %" PRIu64 ", refused %" PRIu64 ", dropped at the cap %" PRIu64
                         ", counter wraps %" PRIu64 ", resets %" PRIu64 "\n",
                      s->w.stored, s->w.refused_queue + s->w.refused_full, s->w.dropped_cap,
                      s->w.counter_wraps, s->w.counter_resets);
    }
    return 0;
}

void mt_report_status_line(const struct mt_snap *s, const struct mt_facts *f,
                           const struct mt_health *h, int64_t now_us, char *buf, size_t len)
{
    int64_t backlog = 0, oldest = 0;
    size_t up = 0, n = s ? s->ninputs : 0;
    char age[40];
    int w;

    for (size_t i = 0; i < n; i++)
        up += input_health(&s->inputs[i]) == MITTARI_HEALTH_UP;
    for (size_t i = 0; f && i < f->noutputs; i++) {
        backlog += f->outputs[i].backlog;
        if (f->outputs[i].oldest_us && (!oldest || f->outputs[i].oldest_us < oldest))
            oldest = f->outputs[i].oldest_us;
    }
    w = snprintf(buf, len, "%s; inputs %zu/%zu up; backlog %" PRId64, mt_health_name(h->level),
                 up, n, backlog);
    if (oldest && w > 0 && (size_t)w < len) {
        fmt_age(now_us - oldest, age, sizeof(age));
        w += snprintf(buf + w, len - (size_t)w, " (oldest %s)", age);
    }
    if (h->n && w > 0 && (size_t)w < len)
        snprintf(buf + w, len - (size_t)w, "; %s", h->reasons[0]);
}
