/*
 * stopwatch: the hard stop. A thread of its own, armed when a stop begins,
 * that ends the process with _exit() if the stop has not finished by its
 * deadline, after logging what the stop was still waiting for.
 *
 * Why a thread and not a loop timer: what holds a stop up may be the loop
 * itself (a plugin callback that blocks it), and a timer on a blocked loop
 * never fires. The thread touches nothing of the agent: the loop hands it a
 * line of text (what it waits for) and the exit status to use.
 *
 * Owns: its thread, a mutex and a condition. arm, note, set_status and free
 * are for the loop thread; the thread only reads what they set.
 */
#ifndef MT_STOPWATCH_H
#define MT_STOPWATCH_H

#include <stdint.h>

struct mt_stopwatch;

/* Starts the thread: at mono_deadline_us (CLOCK_MONOTONIC µs) it logs and
 * calls _exit(status). 0 or -errno. */
int mt_stopwatch_arm(struct mt_stopwatch **out, int64_t mono_deadline_us, int status);
/* What the stop waits for now, for the last message (copied). */
void mt_stopwatch_note(struct mt_stopwatch *s, const char *waiting_for);
void mt_stopwatch_set_status(struct mt_stopwatch *s, int status);
/* The stop finished: disarms, joins the thread, frees. NULL is fine. */
void mt_stopwatch_free(struct mt_stopwatch *s);

#endif
