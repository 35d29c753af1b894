/*
 * ratelimit: "log once, then at most once per interval, with a count of
 * what was held back", for the tty plugins' repeating complaints (bad
 * frames, unknown keys). The counts themselves go to host->count; this only
 * decides when a log line is due.
 *
 * Plain data, no clock of its own (the caller passes host->now), one owner
 * thread.
 */
#ifndef MTR_RATELIMIT_H
#define MTR_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

#include <mittari/mittari.h>

struct mtr_limit {
    int64_t interval_us;
    int64_t last_us;     /* when the last line was logged; 0 = never */
    uint64_t suppressed; /* events held back since */
};

/* true: log now; *held_back says how many were suppressed since the last
 * logged one. false: suppressed (counted). */
bool mtr_allow(struct mtr_limit *r, int64_t now_us, uint64_t *held_back);

/* The usual use, one line per event: logs the message through host->log
 * when mtr_allow says so, with " (N more since the last message)" when
 * some were held back. */
void mtr_log(struct mtr_limit *r, const struct mittari_host *h, struct mittari_ctx *ctx, int level,
             const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#endif
