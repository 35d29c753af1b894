/*
 * simdev: simulated Modbus devices on libmodbus's server side, for the
 * plugin's unit tests (in-process) and for mbsim (the integration tests and
 * the benchmark). TCP devices listen on 127.0.0.1 (port 0 = a free one);
 * RTU devices answer on a tty (one side of a pty pair), several unit ids per
 * bus. Counter registers increase on a tick; faults are scripted:
 * exceptions, silence, slow answers, answers dripping one byte at a time,
 * bad CRCs, refused connections, reboots.
 *
 * Owns its sockets, tty descriptors and libmodbus contexts. One thread runs
 * sim_step; other threads take sim_lock around sim_command and reads of the
 * state. Frames are cut here (MBAP length, RTU function code + CRC) and
 * answered with modbus_reply/modbus_reply_exception, so the answers are
 * libmodbus's own; only a deliberately bad CRC is built by hand.
 */
#ifndef SIMDEV_H
#define SIMDEV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct sim;

struct sim *sim_new(uint64_t seed, int tick_ms);
void sim_free(struct sim *s);

/* Lines of the spec (see mbsim.c) or commands. 0 or -EINVAL/-errno; err
 * gets a message. The caller holds the lock (or runs the only thread). */
int sim_command(struct sim *s, const char *line, char *err, size_t errlen);

/* One round: waits up to timeout_ms for frames, connections, the tick or a
 * delayed answer, and handles them. Takes the lock itself. */
int sim_step(struct sim *s, int timeout_ms);

void sim_lock(struct sim *s);
void sim_unlock(struct sim *s);

/* State as one JSON object (devices, ports, request counts, counters with
 * their true increments since first read). Lock held. */
void sim_dump(struct sim *s, FILE *f);

/* Lock held. The TCP port of a device, or -1. */
int sim_port(struct sim *s, const char *dev);
/* Lock held. The tty path of an RTU device (path=auto: our pty), or NULL. */
const char *sim_path(struct sim *s, const char *dev);
/* Lock held. Counter at addr of dev: value, true increments since the first
 * read that saw it, reads answered since the last freeze. -ENOENT. */
int sim_counter(struct sim *s, const char *dev, unsigned addr, uint64_t *value, uint64_t *total,
                uint64_t *reads_frozen);
/* Lock held. Requests received, answered, and whether one waits (delay). */
int sim_requests(struct sim *s, const char *dev, uint64_t *received, uint64_t *answered,
                 bool *pending);

/* CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF); sent low byte first. */
uint16_t sim_crc16(const uint8_t *p, size_t n);

#endif
