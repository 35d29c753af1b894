/*
 * ruletest: `mittari rule test SCRIPT --input FILE`: replays recorded
 * readings (the CSV or JSON Lines that `mittari query` writes, or a CSV by
 * hand with at least ts, metric and value) through a rule with a virtual
 * clock, and prints what it derives. The analysts' edit-run loop: no
 * gateway, no configuration, no log.
 *
 * Also the parsers of those inputs (for the fuzzer and the tests).
 *
 * CLI thread only; reads the input file, writes to the given streams.
 */
#ifndef MT_RULETEST_H
#define MT_RULETEST_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct mt_ruletest_opts {
    const char *script;
    const char *input;  /* a path, or "-" for standard input */
    const char *tz;     /* NULL: $MITTARI_TZ, else Europe/Helsinki */
    const char *format; /* "table" (default), "csv", "jsonl" */
    const char *until;  /* NULL: close every window at the end */
    const char *site;   /* NULL: "site" */
    const char *series; /* NULL: every reading */
};

/* Returns the exit status: 0, 1 (some calls failed), 2 (usage or input),
 * 3 (the script does not load). Figures go to out, errors and the summary
 * to err. */
int mt_ruletest_run(const struct mt_ruletest_opts *o, FILE *out, FILE *err);

/* One input reading, as parsed. Strings point into the parser's buffers. */
struct mt_test_reading {
    int64_t ts;
    const char *site, *device, *metric, *unit, *subject, *origin;
    char tags[1200]; /* canonical JSON object, "" = none */
    double value;
    int kind;        /* MITTARI_KIND_* */
    bool suppressed; /* a suppressed figure: no value to replay */
};

/* ISO 8601 with seconds optional, a fraction of up to 9 digits, and a
 * zone (Z, +hh:mm, +hhmm): 0, or -EINVAL. */
int mt_parse_iso8601(const char *s, int64_t *us);

/* Parsers of one line: CSV needs the header's column map first
 * (mt_csv_header). 0, 1 for a line to skip (blank), -EINVAL with a reason. */
struct mt_csv_cols {
    int idx[16]; /* column of each field, -1 = absent */
    int ncols;
};
int mt_csv_header(const char *line, struct mt_csv_cols *cols, char *err, size_t errlen);
int mt_csv_reading(const char *line, const struct mt_csv_cols *cols, struct mt_test_reading *r,
                   char *store, size_t storelen, char *err, size_t errlen);
int mt_jsonl_reading(const char *line, size_t len, struct mt_test_reading *r, char *store,
                     size_t storelen, char *err, size_t errlen);

#endif
