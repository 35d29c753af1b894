/*
 * conf: the modbus plugin's configuration as the agent fills it from the
 * option tables (modbus.c), the checks the tables cannot express, and the
 * request plan of each device.
 *
 * Owns nothing at run time. No I/O, no globals; any thread. Every problem
 * create() would refuse is found here, so `mittari check` reports it first
 * (at its file:line, through the agent's checker).
 */
#ifndef MB_CONF_H
#define MB_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mittari/mittari.h>

#include "decode.h"

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

/* Where configuration problems go: the agent's checker (file:line, at
 * `mittari check`) or, when building at create(), the instance's log. */
struct mb_report {
    const struct mittari_checker *chk;
    const struct mittari_host *h;
    struct mittari_ctx *ctx;
    int n; /* problems reported */
};

/* Any thread, no I/O: every configuration problem through chk; returns how
 * many. create() runs the same checks (mb_conf_check) and logs them. */
int mb_check(const struct mb_conf *c, const struct mittari_checker *chk);

/* The same checks, reported to rp; 0 or MITTARI_ECONFIG. */
int mb_conf_check(struct mb_report *rp, const struct mb_conf *c);

/* Where register i of a device sits in its plan. */
struct mb_slot {
    size_t req;   /* index into the requests */
    uint32_t off; /* position inside that request */
};

/* The request plan of devices[di]: regs (d->registers.n entries) and reqs
 * (at most as many) are the caller's. Returns the number of requests, or
 * MITTARI_ECONFIG (reported to rp). Checks each register on the way. */
int mb_conf_plan(struct mb_report *rp, const struct mb_dev_conf *d, size_t di, struct mb_slot *regs,
                 struct mbd_request *reqs);

/* The byte order register r of device d is read in (enum mbd_order). */
int mb_conf_order(const struct mb_dev_conf *d, const struct mb_reg_conf *r);

/* Whether two devices share a connection (a serial port, or host and port). */
bool mb_conf_same_link(const struct mb_dev_conf *a, const struct mb_dev_conf *b);

/* The t3.5 silent interval in microseconds for a line (Modbus over Serial
 * Line 1.02, 2.5.1.1). */
int64_t mb_frame_delay_us(int64_t baud, int64_t data_bits, int parity, int64_t stop_bits);

#endif
