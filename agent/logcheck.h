/*
 * logcheck: the full check of the log after start. A thread of its own
 * runs PRAGMA quick_check on a reading connection of its own while the
 * agent already runs; damage found is reported to the writer
 * (mt_writer_fault), which stops writing, and the agent stops with exit
 * status 4.
 *
 * Why after start and not before: quick_check reads every page. On this
 * project's CI machine that is about 1 s per 160 MB with a warm page cache
 * and 5 s cold; on a Raspberry Pi class gateway reading an SD card at
 * 20-40 MB/s the 1 GiB default cap costs 25-50 s, every start. What the
 * start itself reads (the header and schema, series, counter states,
 * cursors, the newest rows) is checked before anything is written; the
 * rest is read within that time by this thread, not by the start.
 *
 * Owns: its thread, its connection, a uv_async to report back. start and
 * cancel run on the loop thread; done runs on the loop thread, once.
 */
#ifndef MT_LOGCHECK_H
#define MT_LOGCHECK_H

#include <uv.h>

#include "writer.h"

struct mt_logcheck;

/* done(arg, rc): 0 intact, MITTARI_ESTORAGE damaged (already reported to
 * w, with SQLite's words), -EINTR cancelled, other -errno: could not check.
 * The struct is freed after done returns. w must outlive the check. */
int mt_logcheck_start(struct mt_logcheck **out, uv_loop_t *loop, const char *db_path,
                      struct mt_writer *w, void (*done)(void *arg, int rc), void *arg);
/* Loop thread: interrupts the check; done still comes (with -EINTR). */
void mt_logcheck_cancel(struct mt_logcheck *c);

#endif
