/*
 * statusd: the status endpoint's board and its worker thread.
 *
 * The board holds the newest snapshot (published by the loop thread), the
 * newest figures of the log (struct mt_facts) and the visitors aggregate;
 * the HTTP thread takes references to them and formats pages without ever
 * waiting for the loop or the log.
 *
 * The worker thread owns a reading connection to the log (opened, and the
 * time zone loaded, off the loop: the loop does no file I/O for it); each
 * of its turns runs on a short-lived thread of its own (statusd.c:
 * turn_apart), one at a time. When
 * kicked (readings were committed or cursors moved, or a client asks for
 * figures), at most once every `refresh`, it reads the rows committed since
 * its last turn into the visitors aggregate (in chunks; the first turn
 * reads the days the page keeps) and the log's figures for the newest
 * snapshot's cursors. An idle agent's worker sleeps; with no client
 * around it holds no connection between turns (mt_statusd_kick).
 *
 * start, publish and stop run on the loop thread; the getters on any
 * thread. stop joins the worker: it ends within one chunk's read; a scan
 * of an old day (mt_statusd_day_json) ends at its next chunk once stop is
 * asked, and the caller must not call in after stop returned (the server
 * is stopped first).
 */
#ifndef MT_STATUSD_H
#define MT_STATUSD_H

#include <stdbool.h>
#include <stdint.h>

#include "logfacts.h"
#include "series.h"
#include "snapshot.h"
#include "tz.h"
#include "visitors.h"

struct mt_statusd_conf {
    const char *db_path;
    const char *timezone;
    const char *visitors; /* status.visitors */
    int64_t refresh_ms;
    bool count_visitors; /* read every committed row for the visitors (the endpoint is on) */
    const struct mt_series_reg *series; /* borrowed: outlives the board */
};

struct mt_statusd;

/* Copies what it keeps. 0, -EINVAL (visitors has no pattern), -ENOMEM, or a
 * pthread error. */
int mt_statusd_start(struct mt_statusd **out, const struct mt_statusd_conf *conf);
/* Takes the caller's reference; wakes the callers of mt_statusd_fresh_snap. */
void mt_statusd_publish(struct mt_statusd *d, struct mt_snap *s);
/* Asks the worker for a turn: at once if the last one is refresh_ms old,
 * else once it is (new readings committed, or client: a request for
 * figures). While no client asked within IDLE_REFRESHES × refresh_ms the
 * worker closes its connection after each turn and returns the memory
 * freed to the system (malloc_trim): it turns at most every refresh, so
 * reopening costs little, and the connection's cache, schema and
 * statements (~0.2 MB at 500 devices, issue 14) are not held between. */
void mt_statusd_kick(struct mt_statusd *d, bool client);
/* New references (NULL when none yet); the caller unrefs. */
struct mt_snap *mt_statusd_snap(struct mt_statusd *d);
/* Any thread but the loop: a snapshot at most max_age_us old, and with
 * detail a detailed one (snapshot.h). When the one held is older or a
 * summary, ask(arg) asks the loop for a new one (uv_async_send; the caller
 * has told the loop which kind) and this waits up to wait_us for it; a
 * loop that does not answer leaves the old one (its age then tells the
 * health: the loop is stalled). */
struct mt_snap *mt_statusd_fresh_snap(struct mt_statusd *d, int64_t max_age_us, bool detail,
                                      int64_t wait_us, void (*ask)(void *arg), void *arg);
struct mt_facts *mt_statusd_facts(struct mt_statusd *d);
/* The aggregate (valid until stop) and the zone (NULL until loaded). */
struct mt_visitors *mt_statusd_visitors(struct mt_statusd *d);
const struct mt_tz *mt_statusd_tz(struct mt_statusd *d);
/* Any thread but the loop (it may read the log): the JSON of a local day
 * beside its week-ago day (visitors.h). Days the aggregate keeps come from
 * it; older ones from a scan of the log on the caller's thread and its own
 * connection (one scan at a time; the last few results are kept for
 * OLD_DAY_TTL). 0, or the codes of mt_visitors_day_json but -EAGAIN, or a
 * storage error, with a reason in err. */
int mt_statusd_day_json(struct mt_statusd *d, const char *day, int64_t now_us, struct mt_buf *out,
                        char *err, size_t errlen);
/* Loop thread, before the server's threads are joined (reload, stop):
 * callers of mt_statusd_fresh_snap stop waiting for the loop and a scan of
 * an old day ends at its next chunk; false lets them wait again. */
void mt_statusd_quiesce(struct mt_statusd *d, bool quiet);
void mt_statusd_stop(struct mt_statusd *d);

#endif
