/*
 * agent: struct mt_agent, the one object everything hangs off: the loop,
 * the running configuration, the plugin registry, the series registry, the
 * writer, input and output instances, signals, systemd notification and the
 * stop/reload state machines.
 *
 * Loop thread only. Start-up may block (opening the database, loading
 * plugins) before the loop runs; once it runs, nothing here blocks it.
 *
 * Stop (SIGTERM/SIGINT): inputs stop, everything received is committed,
 * outputs deliver what is committed (up to agent.shutdown_timeout), cursors
 * are committed, then the loop ends. A second signal skips the delivery.
 * Reload (SIGHUP): the new configuration is checked first and, if it has any
 * problem, the running one stays. Unchanged instances keep running; changed
 * ones are stopped, then started with the new settings; no reading that was
 * emitted is lost.
 */
#ifndef MT_AGENT_H
#define MT_AGENT_H

#include <stdint.h>
#include <uv.h>

#include "cfgtree.h"
#include "config.h"
#include "output.h"
#include "writer.h"

/* Exit codes (documented in docs/cli.md) */
enum {
    MT_EXIT_OK = 0,
    MT_EXIT_FAILURE = 1, /* runtime failure */
    MT_EXIT_USAGE = 2,   /* bad command line */
    MT_EXIT_CONFIG = 3,  /* configuration invalid */
    MT_EXIT_STORAGE = 4, /* log database unusable, or data dir in use */
};

struct mt_agent_opts {
    const char *conf_path;
    const char *plugin_dir; /* NULL = from the configuration */
};

struct mt_agent;

/* Loads and checks the configuration (problems go to d), opens the data
 * dir and the log, loads plugins, creates instances (not started).
 * Returns an MT_EXIT_* code. */
int mt_agent_init(struct mt_agent **out, const struct mt_agent_opts *opts, struct mt_diags *d);
/* Starts everything and runs the loop until stopped. Returns an exit code. */
int mt_agent_run(struct mt_agent *a);
void mt_agent_free(struct mt_agent *a);

/* For tests and benchmarks (loop thread). */
uv_loop_t *mt_agent_loop(struct mt_agent *a);
struct mt_writer *mt_agent_writer(struct mt_agent *a);
void mt_agent_stop(struct mt_agent *a);
void mt_agent_reload(struct mt_agent *a);
size_t mt_agent_noutputs(struct mt_agent *a);
struct mt_output *mt_agent_output(struct mt_agent *a, size_t i);
/* For the status endpoint (snapshot.h), loop thread. */
size_t mt_agent_ninputs(struct mt_agent *a);
struct mittari_ctx *mt_agent_input(struct mt_agent *a, size_t i);
const char *mt_agent_output_type(struct mt_agent *a, size_t i);
const struct mt_config *mt_agent_config(struct mt_agent *a);
/* "starting", "running", "reloading", "stopping" */
const char *mt_agent_phase_name(struct mt_agent *a);
/* Called on the loop thread every time the writer commits (after outputs
 * were notified). */
void mt_agent_on_commit(struct mt_agent *a, void (*cb)(void *arg, int64_t seq), void *arg);

#endif
