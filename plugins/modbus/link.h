/*
 * link: the Modbus polling engine of one plugin instance. A link is one
 * connection: a serial port (an RTU bus with one or more unit ids) or one
 * TCP host:port (a device, or a gateway with several unit ids). The devices
 * of a link are polled one at a time, in one run of the link's
 * host->poll_start work; separate links run concurrently on the agent's
 * worker threads.
 *
 * Owns the libmodbus contexts and their sockets or tty descriptors, the
 * request plans, per-device health and backoff state.
 *
 * Threads: mb_links_build and mb_link_free on the loop thread (no I/O);
 * mb_link_run on a worker thread, never two runs of one link at once (the
 * host guarantees it), and it may block for up to the configured timeouts.
 * It calls host->emit, count, set_health and log, which any thread may call.
 * Never logs a host name, address or serial path (device names only).
 */
#ifndef MB_LINK_H
#define MB_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mittari/mittari.h>

/* One register map entry: an item of a device's `registers` list. */
struct mb_reg_conf {
    const char *metric;
    int function; /* enum mbd_function */
    int64_t address;
    int type;  /* enum mbd_type */
    int order; /* index into mb_reg_orders: 0 = the device's order, else enum mbd_order + 1 */
    double scale;
    double offset;
    const char *unit;
    int kind; /* enum mb_kind */
    bool reset_after_read;
    int reset_function; /* enum mb_reset_function */
    int64_t reset_address;
    int64_t reset_value;
};

enum mb_kind { MB_KIND_GAUGE, MB_KIND_CUMULATIVE, MB_KIND_DELTA };
enum mb_reset_function { MB_RESET_COIL, MB_RESET_HOLDING };
enum mb_parity { MB_PARITY_NONE, MB_PARITY_EVEN, MB_PARITY_ODD };

/* One item of the instance's `devices` list. */
struct mb_dev_conf {
    const char *name;
    const char *host;
    int64_t port;
    const char *serial;
    int64_t baud;
    int parity; /* enum mb_parity */
    int64_t data_bits;
    int64_t stop_bits;
    bool rs485;
    int64_t frame_delay_ms; /* 0 = t3.5 from the line settings */
    int64_t unit;
    int order; /* enum mbd_order - MBD_ABCD: the default of multi-word registers */
    int64_t poll_ms;
    int64_t response_timeout_ms;
    int64_t connect_timeout_ms;
    int64_t backoff_max_ms;
    int64_t down_after;
    int64_t max_registers;
    int64_t max_bits;
    int64_t merge_gap;
    struct mittari_list registers; /* struct mb_reg_conf */
};

struct mb_conf {
    struct mittari_list devices; /* struct mb_dev_conf */
};

struct mb_link;

/* Validates the configuration beyond what the option tables check (types
 * and orders, address ranges, names, devices sharing a serial port agree on
 * its settings) and groups the devices into links. Logs every problem with
 * host->log and returns MITTARI_ECONFIG; -ENOMEM. No I/O. */
/* Any thread, no I/O: every configuration problem through chk (the
 * agent's check, with file:line); returns how many. create() runs the same
 * checks and logs the first. */
int mb_check(const struct mb_conf *c, const struct mittari_checker *chk);

int mb_links_build(const struct mittari_host *h, struct mittari_ctx *ctx, const struct mb_conf *c,
                   struct mb_link ***links, size_t *nlinks);

/* Worker thread. Polls the devices that are due at now_us (CLOCK_MONOTONIC
 * microseconds), connecting first if needed. Returns 0; failures are
 * counted and reported as device health, never returned. */
int mb_link_run_at(struct mb_link *l, int64_t now_us);
int mb_link_run(void *link); /* mittari_work_cb: mb_link_run_at(now) */

/* How often the link's work must run: the greatest common divisor of its
 * devices' poll intervals (at least 100 ms or the shortest interval). */
uint64_t mb_link_tick_ms(const struct mb_link *l);

/* Loop thread; no run in flight. Closes the connection. */
void mb_link_free(struct mb_link *l);

/* For tests: the t3.5 silent interval in microseconds for a line. */
int64_t mb_frame_delay_us(int64_t baud, int64_t data_bits, int parity, int64_t stop_bits);

#endif
