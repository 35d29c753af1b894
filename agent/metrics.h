/*
 * metrics: the agent's figures in the Prometheus text exposition format
 * (version 0.0.4), for /metrics. Every family is listed with its meaning
 * in docs/operations.md.
 *
 * Pure: formats into a buffer; any thread.
 */
#ifndef MT_METRICS_H
#define MT_METRICS_H

#include "logfacts.h"
#include "report.h"
#include "snapshot.h"
#include "util.h"

#define MT_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Label values escaped as the format wants (\\, \", \n). */
void mt_metrics_label(struct mt_buf *b, const char *v);

/* s must not be NULL; f may be. */
int mt_metrics_write(const struct mt_snap *s, const struct mt_facts *f, const struct mt_health *h,
                     int64_t now_us, struct mt_buf *out);

#endif
