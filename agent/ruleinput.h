/*
 * ruleinput: the readings `mittari rule test` replays: a line of the CSV or
 * of the JSON Lines that `mittari query` writes (or a CSV by hand with at
 * least ts, metric and value), into a reading with the documented defaults
 * (site "site", device "device", kind delta); times in ISO 8601 with a
 * zone. Tags are brought to the agent's canonical JSON.
 *
 * Pure; any thread. Never reads past a line; a bad line is an error with a
 * reason, never a crash (tests/fuzz/fuzz_ruleinput.c).
 */
#ifndef MT_RULEINPUT_H
#define MT_RULEINPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
