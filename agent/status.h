/*
 * status: the agent's local HTTP endpoint (httpd.h) and its systemd
 * STATUS= line.
 *
 *   /          a self-contained page for the person on site (page.html)
 *   /health    ok | degraded | failing with reasons; 200, or 503 when failing
 *              (?strict=1: 503 unless ok)
 *   /status    JSON (?format=text: what `mittari status` prints)
 *   /metrics   Prometheus text format
 *   /visitors  JSON of visitors per local hour (?day=YYYY-MM-DD)
 *
 * Threads: the server runs on its own threads (one per connection,
 * at most status.connections), the log is read on the board's worker
 * (statusd.h) or, for an old day's visitors, on the asking connection's
 * thread; the loop thread only copies a snapshot (a few locks, no I/O)
 * every status.refresh and when a request asks for a fresher one (through
 * a uv_async): a summary, or every device while /status or /metrics were
 * asked for lately (snapshot.h); and it feeds the loop-lag histogram. A
 * slow or hostile client therefore never stalls the loop: connections are bounded
 * (status.connections), idle ones closed (status.timeout), request headers
 * limited to 16 KiB, bodies refused. A snapshot the loop does not renew
 * when asked shows as "failing: the loop has not turned" on /health,
 * answered by the server's own thread.
 *
 * Auth: when status.token is set, every request must carry it, as
 * "Authorization: Bearer TOKEN" or HTTP Basic with TOKEN as the password
 * (a browser's login prompt); compared in constant time.
 *
 * Loop thread: start, lag, reconfigure, stop. Never blocks the loop but in
 * start/reconfigure/stop, which join the server's and the worker's threads.
 */
#ifndef MT_STATUS_H
#define MT_STATUS_H

#include <stdint.h>
#include <uv.h>

#include "config.h"

struct mt_agent;
struct mt_status;

/* A failure to listen (address in use) is logged and leaves the endpoint
 * off until the next reload; the agent runs on. 0 or -ENOMEM. */
int mt_status_start(struct mt_status **out, uv_loop_t *loop, struct mt_agent *agent,
                    const char *db_path, const struct mt_series_reg *series);
/* One turn of the loop kept it busy for busy_ns. */
void mt_status_lag(struct mt_status *st, uint64_t busy_ns);
/* After a reload: restarts the server or the worker if their settings
 * (the status section, agent.timezone) changed. */
void mt_status_reconfigure(struct mt_status *st);
/* Stops the threads; the struct is freed once its timer closed (run the
 * loop). NULL is fine. */
void mt_status_stop(struct mt_status *st);

#endif
