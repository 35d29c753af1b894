/*
 * ratelimit: when a repeating complaint may be logged (ratelimit.h).
 */
#include <stdarg.h>
#include <stdio.h>

#include "ratelimit.h"

bool mtr_allow(struct mtr_limit *r, int64_t now_us, uint64_t *held_back)
{
    if (r->last_us && now_us - r->last_us < r->interval_us && now_us >= r->last_us) {
        r->suppressed++;
        return false;
    }
    *held_back = r->suppressed;
    r->suppressed = 0;
    r->last_us = now_us ? now_us : 1;
    return true;
}

void mtr_log(struct mtr_limit *r, const struct mittari_host *h, struct mittari_ctx *ctx, int level,
             const char *fmt, ...)
{
    char msg[400], more[64] = "";
    uint64_t held = 0;
    va_list ap;

    if (!mtr_allow(r, h->now(ctx), &held))
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (held)
        snprintf(more, sizeof(more), " (%llu more since the last message)",
                 (unsigned long long)held);
    h->log(ctx, level, "%s%s", msg, more);
}
