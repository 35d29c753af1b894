/*
 * link: the Modbus polling engine of one plugin instance. A link is one
 * connection: a serial port (an RTU bus with one or more unit ids) or one
 * TCP host:port (a device, or a gateway with several unit ids). The devices
 * of a link are asked one at a time; links poll independently.
 *
 * Two transports (docs/design.md, "Modbus polling"):
 * - TCP links run on the agent's loop without blocking (tcp.c): one
 *   non-blocking socket each, watched with host->fd_watch; the plugin wakes
 *   them from one timer per instance, at most once per grid step, so many
 *   devices' polls share a wake. Framing is mbap.c's. A host name is
 *   resolved on a worker (a one-shot host->poll_start).
 * - RTU links (serial lines) keep libmodbus, which blocks: each is a
 *   host->poll_start work on a worker thread (rtu.c).
 *
 * Owns the libmodbus contexts, sockets and tty descriptors, the request
 * plans, per-device health and backoff state.
 *
 * Threads: build, free, and everything mb_tcp_* on the loop thread;
 * mb_link_run on a worker, never two runs of one link at once (the host
 * guarantees it). Both call host->emit, count, set_health and log. Never
 * logs a host name, address or serial path (device names only).
 */
#ifndef MB_LINK_H
#define MB_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mittari/mittari.h>

#include "conf.h"

struct mb_link;

/* Loop thread, no I/O. Checks the configuration (mb_conf_check, problems
 * logged with host->log) and groups the devices into links. 0,
 * MITTARI_ECONFIG or -ENOMEM. */
int mb_links_build(const struct mittari_host *h, struct mittari_ctx *ctx, const struct mb_conf *c,
                   struct mb_link ***links, size_t *nlinks);

/* Loop thread; nothing in flight (after mb_tcp_stop and the host's stop).
 * Closes the connection. */
void mb_link_free(struct mb_link *l);

bool mb_link_is_rtu(const struct mb_link *l);

/* CLOCK_MONOTONIC in µs: the clock links schedule by. */
int64_t mb_mono_us(void *unused);

/* For tests: the monotonic clock (µs) a link schedules by; the default is
 * CLOCK_MONOTONIC. */
void mb_link_set_clock(struct mb_link *l, int64_t (*clock)(void *arg), void *arg);

/* ---- RTU links ---- */

/* Worker thread. Polls the devices that are due at now (the link's clock),
 * opening the port first if needed. Returns 0; failures are counted and
 * reported as device health, never returned. */
int mb_link_run_at(struct mb_link *l, int64_t now_us);
int mb_link_run(void *link); /* mittari_work_cb: mb_link_run_at(now) */

/* How often an RTU link's work must run: the greatest common divisor of its
 * devices' poll intervals (at least 100 ms or the shortest interval). */
uint64_t mb_link_tick_ms(const struct mb_link *l);

/* ---- TCP links (loop thread) ---- */

/* Before the first tick: the grid of the instance's TCP links (the due
 * polls of one grid step share a wake; a quarter of the shortest interval,
 * at most 250 ms) and each device's first poll, spread over its interval
 * in grid steps. */
void mb_tcp_plan(struct mb_link **links, size_t n, int64_t now);

/* The grid step of the instance's TCP links, µs (after mb_tcp_plan). */
int64_t mb_tcp_grid_us(const struct mb_link *l);

/* The link calls resched(arg, at) when it needs a tick before the time
 * mb_tcp_next said last (e.g. a request went out with its deadline). */
void mb_tcp_set_resched(struct mb_link *l, void (*resched)(void *arg, int64_t at), void *arg);

/* Does what is due at now: answers not in by their deadline, polls whose
 * time has come (queued, then sent one at a time), connection attempts. */
void mb_tcp_tick(struct mb_link *l, int64_t now);

/* When the link next needs mb_tcp_tick (a grid step or a deadline);
 * INT64_MAX = never. */
int64_t mb_tcp_next(const struct mb_link *l);

/* Whether nothing is queued, in flight or connecting. */
bool mb_tcp_idle(const struct mb_link *l);

/* Stops watching and resolving and closes the connection; a poll in
 * progress ends there (nothing more is emitted). */
void mb_tcp_stop(struct mb_link *l);

#endif
