/*
 * snapshot: what the status endpoint shows of the running agent, copied on
 * the loop thread into one immutable, reference-counted struct, so that the
 * HTTP thread formats pages from it without touching anything the loop
 * owns, and a slow client never holds a lock the loop needs.
 *
 * Also the loop-lag histogram the loop feeds (one observation per turn of
 * the loop).
 *
 * Two kinds: a detailed snapshot holds every device of every input (for
 * /status and /metrics, taken while someone reads them); a summary holds
 * each input's totals (its worst health, decode errors, number of devices)
 * and only its devices that are not up, at most MT_SNAP_NOT_UP of them:
 * all the health and systemd's STATUS= line need (report.h gives them
 * the first MT_HEALTH_MAX_REASONS reasons). A summary's size does not grow
 * with the number of devices that are up (issue 14: the detailed copy
 * every status.refresh cost the loop's heap ~220 kB at 500 devices).
 *
 * mt_snap_take runs on the loop thread; a snapshot is then read-only and
 * may be used from any thread; ref/unref are atomic. Nothing here blocks or
 * does I/O.
 */
#ifndef MT_SNAPSHOT_H
#define MT_SNAPSHOT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "input.h"
#include "output.h"
#include "util.h"
#include "writer.h"

struct mt_agent;

/* Loop lag per turn of the loop (seconds). The bounds are the histogram's
 * "le" labels; the last bucket is +Inf. */
#define MT_LAG_BUCKETS 13
extern const double mt_lag_bounds[MT_LAG_BUCKETS];

struct mt_lag_hist {
    uint64_t counts[MT_LAG_BUCKETS + 1]; /* not cumulative; [MT_LAG_BUCKETS] = above the last */
    uint64_t n;
    double sum_s;
    uint64_t max_ns; /* the longest turn since the previous periodic sample */
};

/* Loop thread: one turn that kept the loop busy for busy_ns. */
void mt_lag_observe(struct mt_lag_hist *h, uint64_t busy_ns);

struct mt_snap_device {
    const char *name; /* "" = the instance itself */
    int health;       /* MITTARI_HEALTH_* */
    const char *reason;
    size_t ncounters;
    const char **counter_names;
    uint64_t *counter_values;
};

/* devices not up a summary keeps per input: as many as the health has
 * reasons (report.h), so the verdict and its reasons are those of a
 * detailed snapshot */
#define MT_SNAP_NOT_UP 16

struct mt_snap_input {
    const char *name, *plugin, *site;
    struct mt_input_stats st;
    uint64_t wraps, resets;  /* what the normalizer met on its counters */
    int64_t last_reading_us; /* 0 = none */
    /* over every device, in both kinds (set by mt_snap_take) */
    size_t devices;          /* how many the input has */
    int worst;               /* the worst health of the instance and its devices */
    uint64_t decode_errors;  /* report.h: mt_report_is_decode_error counters, summed */
    size_t ndevs;            /* detailed: all of them; summary: those not up, in order */
    struct mt_snap_device *devs;
};

struct mt_snap_output {
    const char *name, *type;
    int64_t cursor;
    bool busy;
    struct mt_output_stats st;
    /* the output's own (mt_output_last); 0 = never */
    int64_t last_success_us, last_error_us;
    const char *last_error;
    const char *state; /* opening, running, retrying, stopped, ... */
};

struct mt_writer_figures {
    uint64_t queued, stored, refused_queue, refused_full, refused_stopped, refused_storage,
        dropped_cap, deleted_retention, deleted_cap_delivered, commits, commit_errors,
        counter_wraps, counter_resets, derived;
};

struct mt_snap {
    _Atomic int refs;
    int64_t taken_us;      /* wall clock */
    int64_t taken_mono_us; /* monotonic: a stale snapshot means a stalled loop */
    bool summary;          /* inputs' devs hold only devices not up (above) */
    const char *agent_id, *site, *timezone, *version, *phase;
    int64_t started_us;
    long pid;
    int64_t committed; /* highest committed seq */
    int writer_error;  /* 0, or the storage error that stops commits */
    struct mt_writer_figures w;
    struct mt_lag_hist lag;
    /* over the last minute (filled in by status.c, which keeps the history) */
    uint64_t recent_refused; /* readings refused at intake (queue full, cap) */
    uint64_t recent_dropped; /* undelivered readings dropped at the size cap */
    uint64_t recent_lag_max_ns;
    size_t ninputs, noutputs;
    struct mt_snap_input *inputs;
    struct mt_snap_output *outputs;
    struct mt_arena arena; /* everything above that is a pointer */
};

/* Loop thread. started_us: when the agent started; detail: every device
 * (else a summary). 0 or -ENOMEM. */
int mt_snap_take(struct mt_agent *a, const struct mt_lag_hist *lag, int64_t started_us,
                 bool detail, struct mt_snap **out);
struct mt_snap *mt_snap_ref(struct mt_snap *s);
void mt_snap_unref(struct mt_snap *s); /* NULL is fine */

#endif
