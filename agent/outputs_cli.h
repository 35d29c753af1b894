/*
 * outputs_cli: the `mittari outputs` and `mittari replay` commands.
 *
 * outputs: per configured output (and per cursor the log knows of an output
 * no longer configured): its cursor, its backlog (readings it still has to
 * deliver, and the age of the oldest), its last success and last error,
 * whether it stopped, and its parked batches. Everything is read from the
 * log (read-only), so it works with the agent down or running.
 *
 * replay: sends the readings of one output with since <= time < until again,
 * through the output's own type and configuration, in a process of its own
 * with its own loop; the agent (running or not) and its cursor are not
 * touched. Batches carry the usual keys (agent/generation/output/first-last);
 * receivers drop what they already hold by (agent, generation, seq).
 *
 * Main thread of the CLI process only.
 */
#ifndef MT_OUTPUTS_CLI_H
#define MT_OUTPUTS_CLI_H

#include <stdio.h>

/* Exit codes as enum in agent.h (0, 1, 2, 3, 4). */
int mt_cli_outputs(const char *conf, const char *plugin_dir, FILE *out);
int mt_cli_replay(const char *conf, const char *plugin_dir, const char *name, const char *since,
                  const char *until, FILE *out);

#endif
