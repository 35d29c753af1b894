/*
 * statuscli: `mittari status`: the running agent's status for a person at
 * the console. Asks the agent's endpoint (status.listen, with the token if
 * one is set) for /status?format=text; when the agent is not running, or
 * its endpoint does not answer, reads what the log knows instead: each
 * output's cursor and backlog, parked batches, the log's size.
 *
 * CLI thread only; blocks (a connect and a read with a 5 s timeout).
 */
#ifndef MT_STATUSCLI_H
#define MT_STATUSCLI_H

#include <stdio.h>

#include "config.h"

/* Exit code: 0 health ok, 1 degraded or failing (or the agent is down),
 * 4 the log cannot be read (docs/cli.md). */
int mt_statuscli_run(const struct mt_config *c, FILE *out, FILE *err);

#endif
