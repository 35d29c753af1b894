/*
 * sdloop: an sd-bus connection driven by the agent's loop. The bus fd is
 * watched through host->fd_watch for the events sd_bus_get_events() asks
 * for, sd_bus_get_timeout() becomes a host timer, and sd_bus_process()
 * runs when either fires, a bounded number of messages at a time so a
 * flood of signals never holds the loop (the rest follows at once, after
 * other handles had their turn).
 *
 * Owns the watch and the timers it starts; not the bus. Loop thread only.
 * Never blocks: nothing here calls sd_bus_call, sd_bus_wait or sd_bus_flush.
 */
#ifndef BLE_SDLOOP_H
#define BLE_SDLOOP_H

#include <systemd/sd-bus.h>

#include <mittari/mittari.h>

struct ble_sdloop;

/* Called on the loop when the connection failed (sd_bus_process returned
 * err < 0, or the fd reported an error): detach and close the bus. Never
 * called from inside a bus callback. */
typedef void (*ble_sdloop_error_cb)(void *arg, int err);

/* 0, -ENOMEM or the host's error. The bus must be started (sd_bus_start). */
int ble_sdloop_attach(struct ble_sdloop **out, const struct mittari_host *host,
                      struct mittari_ctx *ctx, sd_bus *bus, ble_sdloop_error_cb on_error,
                      void *arg);
/* After queueing messages (calls, matches) outside a bus callback: the
 * watch and the timer follow what sd-bus now waits for. */
void ble_sdloop_kick(struct ble_sdloop *l);
/* Stops the watch and timers and frees l; the bus stays the caller's.
 * Safe inside a bus callback (the processing loop notices). */
void ble_sdloop_detach(struct ble_sdloop *l);

#endif
