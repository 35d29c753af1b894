/*
 * fuzzdev: what the Modbus fuzz targets (tests/fuzz/fuzz_modbus_tcp.c,
 * fuzz_modbus_rtu.c) share: one device with a register map that uses every
 * function, type, order and kind (and both kinds of clear after reading),
 * built through the plugin's own mb_links_build, and a host that checks
 * every call the engine makes against the contract of mittari.h (a reading
 * of a known metric with a finite value or a counter within its width,
 * counters and health with valid names). A breach aborts, so the fuzzer
 * reports it.
 *
 * Single-threaded; one fuzz input at a time.
 */
#ifndef FUZZDEV_H
#define FUZZDEV_H

#include <stddef.h>
#include <stdint.h>

#include <mittari/mittari.h>

#include "link.h"

/* The fake clock the links schedule by (µs); the harness moves it. */
extern int64_t fz_now;

/* Builds the fuzz device's link: over TCP to 127.0.0.1:port (port > 0), or
 * RTU (port 0; the serial path is never opened by the harness). refuse_every:
 * every Nth emit is refused with -EAGAIN (0 = none). Aborts on failure. */
struct mb_link *fz_build(int port, unsigned refuse_every);
void fz_free(struct mb_link *l);

/* The host's fd watch of the link (it watches one descriptor at a time),
 * as the agent's loop would call it: delivers events to it, if there is
 * one. Returns whether there was. */
int fz_deliver(int events);
/* Watches still open (after fz_free: none, or the link leaked one). */
int fz_watches(void);

#endif
