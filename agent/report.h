/*
 * report: health and the status report of the agent, from a snapshot
 * (snapshot.h, NULL when the agent is down) and the log's figures
 * (logfacts.h, NULL when not read yet): the health verdict with its
 * reasons, the /status JSON, the text `mittari status` prints, and the
 * one-line STATUS= systemd shows.
 *
 * Pure: formats into buffers; any thread.
 */
#ifndef MT_REPORT_H
#define MT_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include "logfacts.h"
#include "snapshot.h"
#include "util.h"

enum { MT_HEALTH_OK = 0, MT_HEALTH_DEGRADED = 1, MT_HEALTH_FAILING = 2 };

struct mt_health_conf {
    int64_t stall_us;        /* a snapshot older than this: the loop is stalled */
    int64_t backlog_warn_us; /* an undelivered reading older than this: degraded */
};

#define MT_HEALTH_MAX_REASONS 16

struct mt_health {
    int level;
    size_t n;
    char reasons[MT_HEALTH_MAX_REASONS][240];
};

const char *mt_health_name(int level); /* "ok", "degraded", "failing" */

/* snap NULL: the agent is not running (failing). */
void mt_health_eval(const struct mt_snap *s, const struct mt_facts *f,
                    const struct mt_health_conf *c, int64_t now_us, int64_t now_mono_us,
                    struct mt_health *h);

/* Device counters that count bad bytes from a device (summed as an input's
 * decode errors; docs/operations.md). */
bool mt_report_is_decode_error(const char *counter);
uint64_t mt_report_decode_errors(const struct mt_snap_input *in);

/* The /status document (docs/operations.md). s may be NULL. */
int mt_report_json(const struct mt_snap *s, const struct mt_facts *f, const struct mt_health *h,
                   int64_t now_us, struct mt_buf *out);
/* The same for a person at the console. */
int mt_report_text(const struct mt_snap *s, const struct mt_facts *f, const struct mt_health *h,
                   int64_t now_us, struct mt_buf *out);
/* One line for systemd's STATUS=: health, first reason, backlog. */
void mt_report_status_line(const struct mt_snap *s, const struct mt_facts *f,
                           const struct mt_health *h, int64_t now_us, char *buf, size_t len);

#endif
