#include "metrics.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

void mt_metrics_label(struct mt_buf *b, const char *v)
{
    mt_buf_addc(b, '"');
    for (; *v; v++) {
        if (*v == '\\')
            mt_buf_adds(b, "\\\\");
        else if (*v == '"')
            mt_buf_adds(b, "\\\"");
        else if (*v == '\n')
            mt_buf_adds(b, "\\n");
        else
            mt_buf_addc(b, *v);
    }
    mt_buf_addc(b, '"');
}

static void family(struct mt_buf *b, const char *name, const char *type, const char *help)
{
    mt_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{k1="v1",k2="v2"} value; labels: NULL-terminated pairs */
static void sample(struct mt_buf *b, const char *name, const char *const *labels, double v)
{
    mt_buf_adds(b, name);
    for (size_t i = 0; labels && labels[i]; i += 2) {
        mt_buf_addc(b, i ? ',' : '{');
        mt_buf_adds(b, labels[i]);
        mt_buf_addc(b, '=');
        mt_metrics_label(b, labels[i + 1]);
    }
    if (labels && labels[0])
        mt_buf_addc(b, '}');
    mt_buf_addc(b, ' ');
    if (v == (double)(int64_t)v && v < 9e15 && v > -9e15)
        mt_buf_printf(b, "%" PRId64, (int64_t)v);
    else
        mt_buf_printf(b, "%.17g", v);
    mt_buf_addc(b, '\n');
}

static void one(struct mt_buf *b, const char *name, const char *type, const char *help,
                double v)
{
    family(b, name, type, help);
    sample(b, name, NULL, v);
}

static void agent_metrics(struct mt_buf *b, const struct mt_snap *s, const struct mt_health *h)
{
    family(b, "mittari_build_info", "gauge", "Version of the running agent (always 1).");
    sample(b, "mittari_build_info", (const char *[]){"version", s->version, NULL}, 1);
    family(b, "mittari_health", "gauge",
           "1 for the agent's health now (ok, degraded or failing), 0 for the others.");
    for (int l = MT_HEALTH_OK; l <= MT_HEALTH_FAILING; l++)
        sample(b, "mittari_health", (const char *[]){"status", mt_health_name(l), NULL},
               h->level == l);
    one(b, "mittari_start_time_seconds", "gauge", "When the agent started (Unix time).",
        (double)s->started_us / 1e6);
}

static void input_metrics(struct mt_buf *b, const struct mt_snap *s)
{
    static const struct {
        const char *name, *help;
        size_t off;
    } fams[] = {
        {"mittari_input_readings_received_total", "Readings an input emitted that were accepted.",
         offsetof(struct mt_input_stats, emitted)},
        {"mittari_input_readings_refused_total",
         "Readings refused at intake (queue full, log at its cap): dropped at the input.",
         offsetof(struct mt_input_stats, refused)},
        {"mittari_input_readings_invalid_total",
         "Readings refused as malformed (bad name, value, tag or identifier).",
         offsetof(struct mt_input_stats, invalid)},
        {"mittari_input_polls_skipped_total",
         "Polls skipped because the previous one was still running.",
         offsetof(struct mt_input_stats, polls_skipped)},
    };
    for (size_t k = 0; k < sizeof(fams) / sizeof(fams[0]); k++) {
        family(b, fams[k].name, "counter", fams[k].help);
        for (size_t i = 0; i < s->ninputs; i++) {
            const struct mt_snap_input *in = &s->inputs[i];
            uint64_t v = *(const uint64_t *)((const char *)&in->st + fams[k].off);
            sample(b, fams[k].name,
                   (const char *[]){"input", in->name, "plugin", in->plugin, NULL}, (double)v);
        }
    }
    family(b, "mittari_input_counter_wraps_total", "counter",
           "An input's device counters that wrapped around (cumulative readings).");
    for (size_t i = 0; i < s->ninputs; i++)
        sample(b, "mittari_input_counter_wraps_total",
               (const char *[]){"input", s->inputs[i].name, NULL}, (double)s->inputs[i].wraps);
    family(b, "mittari_input_counter_resets_total", "counter",
           "An input's device counters that went back (reset, replaced, power cycled).");
    for (size_t i = 0; i < s->ninputs; i++)
        sample(b, "mittari_input_counter_resets_total",
               (const char *[]){"input", s->inputs[i].name, NULL}, (double)s->inputs[i].resets);
    family(b, "mittari_input_counter_conflicts_total", "counter",
           "Cumulative readings refused: a second counter for a series.");
    for (size_t i = 0; i < s->ninputs; i++)
        sample(b, "mittari_input_counter_conflicts_total",
               (const char *[]){"input", s->inputs[i].name, NULL},
               (double)s->inputs[i].st.conflicts);
    family(b, "mittari_input_decode_errors_total", "counter",
           "Bad frames and decoder errors of an input's devices (counters decoder_errors, "
           "bad_frames, crc_errors, overlong_frames).");
    for (size_t i = 0; i < s->ninputs; i++)
        sample(b, "mittari_input_decode_errors_total",
               (const char *[]){"input", s->inputs[i].name, NULL},
               (double)mt_report_decode_errors(&s->inputs[i]));
    family(b, "mittari_input_last_reading_timestamp_seconds", "gauge",
           "When an input's last reading was accepted (Unix time; 0 = none yet).");
    for (size_t i = 0; i < s->ninputs; i++)
        sample(b, "mittari_input_last_reading_timestamp_seconds",
               (const char *[]){"input", s->inputs[i].name, NULL},
               (double)s->inputs[i].last_reading_us / 1e6);
    family(b, "mittari_device_up", "gauge",
           "Health a plugin reported for a device (device \"\": the instance): 1 up, 0.5 "
           "degraded, 0 down.");
    for (size_t i = 0; i < s->ninputs; i++)
        for (size_t k = 0; k < s->inputs[i].ndevs; k++) {
            const struct mt_snap_device *d = &s->inputs[i].devs[k];
            sample(b, "mittari_device_up",
                   (const char *[]){"input", s->inputs[i].name, "device", d->name, NULL},
                   d->health == 0 ? 1 : d->health == 1 ? 0.5 : 0);
        }
    family(b, "mittari_device_events_total", "counter",
           "A plugin's own counters per device: timeouts, bad_frames, reconnects, ...");
    for (size_t i = 0; i < s->ninputs; i++)
        for (size_t k = 0; k < s->inputs[i].ndevs; k++) {
            const struct mt_snap_device *d = &s->inputs[i].devs[k];
            for (size_t j = 0; j < d->ncounters; j++)
                sample(b, "mittari_device_events_total",
                       (const char *[]){"input", s->inputs[i].name, "device", d->name, "event",
                                        d->counter_names[j], NULL},
                       (double)d->counter_values[j]);
        }
}

static void log_metrics(struct mt_buf *b, const struct mt_snap *s, const struct mt_facts *f)
{
    const struct mt_writer_figures *w = &s->w;
    one(b, "mittari_log_readings_stored_total", "counter",
        "Readings committed to the log (after the normalizer).", (double)w->stored);
    family(b, "mittari_log_readings_refused_total", "counter",
           "Readings the log refused at intake, by reason.");
    sample(b, "mittari_log_readings_refused_total",
           (const char *[]){"reason", "queue_full", NULL}, (double)w->refused_queue);
    sample(b, "mittari_log_readings_refused_total", (const char *[]){"reason", "cap", NULL},
           (double)w->refused_full);
    sample(b, "mittari_log_readings_refused_total", (const char *[]){"reason", "stopping", NULL},
           (double)w->refused_stopped);
    sample(b, "mittari_log_readings_refused_total", (const char *[]){"reason", "damaged", NULL},
           (double)w->refused_storage);
    one(b, "mittari_log_readings_dropped_total", "counter",
        "Undelivered readings deleted at the size cap (full_policy drop_oldest).",
        (double)w->dropped_cap);
    family(b, "mittari_log_readings_deleted_total", "counter",
           "Delivered readings deleted, by reason.");
    sample(b, "mittari_log_readings_deleted_total", (const char *[]){"reason", "retention", NULL},
           (double)w->deleted_retention);
    sample(b, "mittari_log_readings_deleted_total", (const char *[]){"reason", "cap", NULL},
           (double)w->deleted_cap_delivered);
    one(b, "mittari_log_readings_derived_total", "counter",
        "Derived readings committed for rules.", (double)w->derived);
    one(b, "mittari_log_commits_total", "counter", "Transactions committed.", (double)w->commits);
    one(b, "mittari_log_commit_errors_total", "counter",
        "Commits that failed (and were retried).", (double)w->commit_errors);
    one(b, "mittari_counter_wraps_total", "counter",
        "Device counters that wrapped around (cumulative readings).", (double)w->counter_wraps);
    one(b, "mittari_counter_resets_total", "counter",
        "Device counters that went back (device reset or replaced).", (double)w->counter_resets);
    one(b, "mittari_log_last_seq", "gauge", "Sequence number of the newest committed reading.",
        (double)s->committed);
    one(b, "mittari_log_write_error", "gauge", "1 while commits fail (disk full, I/O error).",
        s->writer_error != 0);
    if (f && !f->error) {
        one(b, "mittari_log_size_bytes", "gauge", "Pages of the log in use, in bytes.",
            (double)f->log_bytes);
        one(b, "mittari_log_readings", "gauge", "Readings in the log.", (double)f->rows);
    }
}

static void output_metrics(struct mt_buf *b, const struct mt_snap *s, const struct mt_facts *f,
                           int64_t now_us)
{
    static const struct {
        const char *name, *help;
        size_t off;
    } fams[] = {
        {"mittari_output_readings_forwarded_total", "Readings an output delivered (acknowledged).",
         offsetof(struct mt_output_stats, delivered)},
        {"mittari_output_batches_total", "Batches an output delivered.",
         offsetof(struct mt_output_stats, batches)},
        {"mittari_output_retries_total", "Deliveries that failed and are retried.",
         offsetof(struct mt_output_stats, retries)},
        {"mittari_output_parked_batches_total",
         "Batches parked after a permanent error (since start).",
         offsetof(struct mt_output_stats, parked_batches)},
        {"mittari_output_parked_readings_total",
         "Readings in batches parked after a permanent error (since start).",
         offsetof(struct mt_output_stats, parked_readings)},
        {"mittari_output_readings_lost_total",
         "Readings a destination reported it no longer has (it lost commits).",
         offsetof(struct mt_output_stats, lost)},
    };
    for (size_t k = 0; k < sizeof(fams) / sizeof(fams[0]); k++) {
        family(b, fams[k].name, "counter", fams[k].help);
        for (size_t i = 0; i < s->noutputs; i++) {
            const struct mt_snap_output *o = &s->outputs[i];
            uint64_t v = *(const uint64_t *)((const char *)&o->st + fams[k].off);
            sample(b, fams[k].name, (const char *[]){"output", o->name, "type", o->type, NULL},
                   (double)v);
        }
    }
    family(b, "mittari_output_cursor", "gauge", "Sequence number an output delivered through.");
    for (size_t i = 0; i < s->noutputs; i++)
        sample(b, "mittari_output_cursor", (const char *[]){"output", s->outputs[i].name, NULL},
               (double)s->outputs[i].cursor);
    family(b, "mittari_output_last_success_timestamp_seconds", "gauge",
           "An output's last acknowledged delivery (Unix time; 0 = never).");
    for (size_t i = 0; i < s->noutputs; i++)
        sample(b, "mittari_output_last_success_timestamp_seconds",
               (const char *[]){"output", s->outputs[i].name, NULL},
               (double)s->outputs[i].last_success_us / 1e6);
    family(b, "mittari_output_last_error_timestamp_seconds", "gauge",
           "An output's last failure (Unix time; 0 = never).");
    for (size_t i = 0; i < s->noutputs; i++)
        sample(b, "mittari_output_last_error_timestamp_seconds",
               (const char *[]){"output", s->outputs[i].name, NULL},
               (double)s->outputs[i].last_error_us / 1e6);
    family(b, "mittari_output_backlog_readings", "gauge",
           "Committed readings an output has not delivered yet.");
    for (size_t i = 0; i < s->noutputs; i++) {
        int64_t n = s->committed - s->outputs[i].cursor;
        sample(b, "mittari_output_backlog_readings",
               (const char *[]){"output", s->outputs[i].name, NULL}, (double)(n > 0 ? n : 0));
    }
    if (!f || f->error)
        return;
    family(b, "mittari_output_backlog_age_seconds", "gauge",
           "Age of an output's oldest undelivered reading (by its timestamp; 0 = none), as "
           "of the last read of the log.");
    for (size_t i = 0; i < s->noutputs; i++) {
        const struct mt_fact_output *fo = mt_facts_output(f, s->outputs[i].name);
        double age = fo && fo->oldest_us ? (double)(now_us - fo->oldest_us) / 1e6 : 0;
        sample(b, "mittari_output_backlog_age_seconds",
               (const char *[]){"output", s->outputs[i].name, NULL}, age > 0 ? age : 0);
    }
    family(b, "mittari_output_parked_batches", "gauge",
           "Batches parked in the log (all time, until removed).");
    for (size_t i = 0; i < s->noutputs; i++) {
        const struct mt_fact_parked *p = mt_facts_parked(f, s->outputs[i].name);
        sample(b, "mittari_output_parked_batches",
               (const char *[]){"output", s->outputs[i].name, NULL},
               p ? (double)p->batches : 0);
    }
}

static void lag_metrics(struct mt_buf *b, const struct mt_snap *s)
{
    char le[32];
    uint64_t cum = 0;
    family(b, "mittari_loop_lag_seconds", "histogram",
           "How long each turn of the agent's event loop kept it busy (a turn over the "
           "watchdog period is a stall).");
    for (size_t i = 0; i <= MT_LAG_BUCKETS; i++) {
        cum += s->lag.counts[i];
        if (i < MT_LAG_BUCKETS)
            snprintf(le, sizeof(le), "%g", mt_lag_bounds[i]);
        else
            snprintf(le, sizeof(le), "+Inf");
        sample(b, "mittari_loop_lag_seconds_bucket", (const char *[]){"le", le, NULL},
               (double)cum);
    }
    sample(b, "mittari_loop_lag_seconds_sum", NULL, s->lag.sum_s);
    sample(b, "mittari_loop_lag_seconds_count", NULL, (double)s->lag.n);
}

int mt_metrics_write(const struct mt_snap *s, const struct mt_facts *f, const struct mt_health *h,
                     int64_t now_us, struct mt_buf *out)
{
    agent_metrics(out, s, h);
    input_metrics(out, s);
    log_metrics(out, s, f);
    output_metrics(out, s, f, now_us);
    lag_metrics(out, s);
    /* rule errors: the rule engine is not in this version; its families
     * come with it (docs/operations.md) */
    return out->p ? 0 : -ENOMEM;
}
