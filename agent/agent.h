/*
 * agent: struct mt_agent, the one object everything hangs off: the loop,
 * the running configuration, the plugin registry, the series registry, the
 * writer, the instances, signals, systemd notification, and the stop and
 * reload state machines.
 *
 * Loop thread only. Start-up may block (opening the database, loading
 * plugins) before the loop runs; once it runs, nothing here blocks it.
 * The process ignores SIGPIPE (mt_agent_init): a closed pipe is an error
 * where it is written, never the end of the agent.
 *
 * INSTANCES. Everything with a lifetime of its own that reads or writes
 * through the agent is an instance, held in one list from its creation
 * until the callback that frees it, whatever it is doing meanwhile: stop,
 * reload and the statistics see every instance alive, and the writer is
 * freed only once the list is empty (every emitter and reader is gone).
 *
 *   kind    what                                  stopped with
 *   input   an input plugin instance (input.h)    mt_input_stop(done)
 *   output  an output instance (output.h)         mt_output_close(done, cursor)
 *   check   the log's check after start           mt_logcheck_cancel(done)
 *           (logcheck.h)
 *
 *   state      meaning                                  next
 *   CREATED    made from its settings, not started     RUNNING (run, reload finish),
 *              (start-up, or a reload's replacement     STOPPING (agent stop)
 *              waiting for the reload to finish)
 *   RUNNING    started                                  RETIRING (reload changed or
 *                                                       removed it), STOPPING (agent stop)
 *   RETIRING   stopping for a reload; its replacement   freed (and the replacement is
 *              settings (if any) wait with it           CREATED, if the agent still runs)
 *   STOPPING   stopping because the agent stops         freed
 *
 * A rule instance (a consumer that writes back with mt_writer_step) is
 * meant to be one more kind with the same four states.
 *
 * THE AGENT. phase:
 *
 *   INIT → RUNNING → STOP_INPUTS → FLUSH → DRAIN → CLOSE_OUTPUTS → END_WRITER → WAIT → DONE
 *
 *   RUNNING        SIGTERM/SIGINT, a damaged log, or the writer's fatal error → STOP_INPUTS
 *   STOP_INPUTS    every input (also one retiring for a reload) stops: plugin stop,
 *                  its handles closed, its polls in flight waited for. Until none is
 *                  alive, or agent.shutdown_timeout passed (the inputs still alive are
 *                  named; what they emit from then on is refused and counted).
 *   FLUSH          the writer's intake is closed; it commits everything it holds.
 *   DRAIN          outputs deliver through the last committed seq (until the deadline,
 *                  or a second signal).
 *   CLOSE_OUTPUTS  every output closes; its last acknowledged batch counts.
 *   END_WRITER     the writer commits the last cursors and its thread ends; then the
 *                  final statistics line (after the last commit) and how many
 *                  accepted readings could not be stored.
 *   WAIT           waits for instances that outlived the deadline (a poll stuck in a
 *                  plugin): the writer is freed only after them.
 *   DONE           handles closed; the loop ends.
 *
 * Crashes (crash.h): a fatal signal in plugin code is reported with the
 * instance and callback and ends the process with MT_EXIT_PLUGIN; the
 * next start holds that input back (MT_AGENT_HOLD_*). An isolated input
 * (isolate.h) is an input instance like the others here: its plugin runs
 * in a child process, whose crash ends only the child.
 *
 * Hard stop: when a stop begins, a stopwatch (stopwatch.h) is armed for
 * shutdown_timeout + 15 s; if the stop has not finished by then it logs what
 * is stuck and ends the process with _exit (status 1, or 4 for a damaged
 * log). Exit status of a finished stop: 4 if the log is damaged, 1 if
 * readings accepted from inputs could not be stored (the count is logged),
 * else 0.
 *
 * reload (independent of the phase, only while RUNNING):
 *
 *   NONE → LOADING (SIGHUP: the files are read on a worker) → NONE (a problem: the
 *   running configuration stays) | SWAPPING (unchanged instances keep running;
 *   changed and removed ones are RETIRING) → NONE (none is retiring any more: new and
 *   replacement instances are started, agent settings applied). A SIGHUP during
 *   LOADING or SWAPPING reads the files once more afterwards. A stop during
 *   SWAPPING lets the retiring instances finish and starts no replacement.
 */
#ifndef MT_AGENT_H
#define MT_AGENT_H

#include <stdint.h>
#include <uv.h>

#include "cfgtree.h"
#include "config.h"
#include "output.h"
#include "rules.h"
#include "writer.h"

/* Exit codes (documented in docs/cli.md) */
enum {
    MT_EXIT_OK = 0,
    MT_EXIT_FAILURE = 1, /* runtime failure */
    MT_EXIT_USAGE = 2,   /* bad command line */
    MT_EXIT_CONFIG = 3,  /* configuration invalid */
    MT_EXIT_STORAGE = 4, /* log database unusable, or data dir in use */
    MT_EXIT_PLUGIN = 5,  /* a plugin crashed (a fatal signal in its code): crash.h */
};

/* The margin of the hard stop after agent.shutdown_timeout. */
#define MT_AGENT_HARD_STOP_MARGIN_MS 15000

/* A crash loop (issue 13): the input whose plugin crashed the last run
 * (crash.h's marker DATA_DIR/plugin-crash, if at most an hour old) starts
 * MT_AGENT_HOLD_MIN_MS after the others, doubled for each crash in a row,
 * at most MT_AGENT_HOLD_MAX_MS. The marker is removed once it started, and
 * the count of crashes in a row forgotten once it then ran calm for
 * MT_AGENT_CRASH_CALM_MS. */
#define MT_AGENT_CRASH_MARKER "plugin-crash"
#define MT_AGENT_CRASH_MEMORY_S 3600
#define MT_AGENT_HOLD_MIN_MS 10000
#define MT_AGENT_HOLD_MAX_MS 600000
#define MT_AGENT_CRASH_CALM_MS 600000

struct mt_agent_opts {
    const char *conf_path;
    const char *plugin_dir; /* NULL = from the configuration */
    /* the binary an isolated input runs as its process (`mittari
     * __isolate`); NULL = this program (/proc/self/exe). Tests and
     * benchmarks, whose program is not mittari, name it. */
    const char *isolate_exe;
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
/* Outputs created or running (not those closing). */
size_t mt_agent_noutputs(struct mt_agent *a);
struct mt_output *mt_agent_output(struct mt_agent *a, size_t i);
/* For the status endpoint (snapshot.h), loop thread. */
size_t mt_agent_ninputs(struct mt_agent *a);
struct mittari_ctx *mt_agent_input(struct mt_agent *a, size_t i);
const char *mt_agent_output_type(struct mt_agent *a, size_t i);
const struct mt_config *mt_agent_config(struct mt_agent *a);
struct mt_rules *mt_agent_rules(struct mt_agent *a); /* NULL once stopped */
/* Called on the loop thread every time the writer commits (after outputs
 * were notified). */
void mt_agent_on_commit(struct mt_agent *a, void (*cb)(void *arg, int64_t seq), void *arg);

/* What a status page shows of each instance alive (loop thread). */
enum mt_inst_kind { MT_INST_INPUT, MT_INST_OUTPUT, MT_INST_CHECK };
enum mt_inst_state { MT_INST_CREATED, MT_INST_RUNNING, MT_INST_RETIRING, MT_INST_STOPPING };
struct mt_inst_info {
    int kind;  /* enum mt_inst_kind */
    int state; /* enum mt_inst_state */
    const char *name; /* valid until the next turn of the loop */
};
/* Fills up to max entries; returns how many instances are alive. */
size_t mt_agent_instances(struct mt_agent *a, struct mt_inst_info *v, size_t max);
const char *mt_agent_phase_name(struct mt_agent *a);

#endif
