/*
 * query: reads the log for analysts (the `mittari query` command). Opens its
 * own read-only connection; safe while the agent runs. CLI thread only.
 */
#ifndef MT_QUERY_H
#define MT_QUERY_H

#include <stdint.h>
#include <stdio.h>

struct mt_query {
    const char *db_path;
    int64_t since, until;    /* µs, [since, until) */
    const char *series_glob; /* fnmatch over "site/device/metric"; NULL = all */
    const char *const *tags; /* "key=value" filters (aggquery.c), all must hold */
    size_t ntags;
    int format;              /* MT_FMT_* */
    uint64_t limit;          /* 0 = no limit */
};

int mt_parse_time(const char *s, int64_t now_us, int64_t *us);
int mt_query_run(const struct mt_query *q, FILE *out, char *err, size_t errlen);

#endif
