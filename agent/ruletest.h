/*
 * ruletest: `mittari rule test SCRIPT --input FILE`: replays recorded
 * readings (the CSV or JSON Lines that `mittari query` writes, or a CSV by
 * hand with at least ts, metric and value) through a rule with a virtual
 * clock, and prints what it derives. The analysts' edit-run loop: no
 * gateway, no configuration, no log.

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

#endif
