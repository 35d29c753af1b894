/*
 * linkint: what link.c (building, the device engine), rtu.c and tcp.c (the
 * two transports) share. Private to the plugin; see link.h for the API.
 *
 * The device engine is transport-neutral: a device's poll is a cursor over
 * transactions (each planned read, then the clears of the registers it
 * read that are cleared after reading). A transport asks mb_poll_next for
 * the next transaction, performs it its own way (libmodbus on a worker, or
 * non-blocking TCP on the loop) and reports mb_poll_ok or mb_poll_fail;
 * the engine emits readings, counts failures and judges health, so both
 * transports behave the same.
 *
 * Threads: all of a link's state is used by one thread at a time: an RTU
 * link's by the worker that runs it (never two runs at once), a TCP link's
 * by the loop (its resolver work touches only the address fields, while the
 * link waits for it).
 */
#ifndef MB_LINKINT_H
#define MB_LINKINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include <mittari/mittari.h>

#include "conf.h"
#include "decode.h"
#include "link.h"
#include "mbap.h"

struct mb_reg {
    const struct mb_reg_conf *c;
    int order;         /* resolved enum mbd_order */
    struct mb_slot at; /* request and offset */
    uint64_t raw;      /* reset_after_read: the value just read */
    bool clear_due;    /* reset_after_read: read and accepted, clear it now */
    uint64_t carry;    /* reset_after_read: counted already, the clear failed */
    bool carry_valid;
};

enum mb_phase { MB_PH_READ, MB_PH_CLEAR };

struct mb_dev {
    const struct mb_dev_conf *c;
    struct mb_reg *regs;
    size_t nregs;
    struct mbd_request *reqs;
    size_t nreqs;
    int64_t next_due, retry_at, backoff_us; /* link clock, µs */
    int64_t fails;                          /* polls in a row that read nothing */
    int health;                             /* -1 until first reported */
    char reason[112];
    /* the poll in progress */
    bool queued;     /* TCP: due, waits for the link */
    int64_t started; /* when it was due: backoff counts from there */
    int phase;       /* enum mb_phase */
    size_t cur;      /* the request read, or whose registers are being cleared */
    size_t ck;       /* MB_PH_CLEAR: the register being cleared */
    size_t good, bad;
};

/* One transaction of a poll. */
struct mb_txn {
    uint8_t fn;    /* Modbus function code: 1-4 read, 5 write coil, 6 write register */
    uint16_t addr; /* 0-based */
    uint16_t arg;  /* reads: how many; 5: 0xFF00 or 0; 6: the value */
};

enum mb_failure { MB_F_EXCEPTION = 1, MB_F_CRC, MB_F_TIMEOUT, MB_F_BADDATA, MB_F_LINK };

/* What a transport does after a failed transaction. */
enum mb_action {
    MB_GO_ON,       /* the next transaction */
    MB_FLUSH_GO_ON, /* RTU: drop what is on the line, then the next */
    MB_FLUSH_STOP,  /* RTU: drop what is on the line; this device's poll is over */
    MB_CLOSE,       /* close the connection; this device's poll is over */
};

enum mb_tcp_state { MB_TCP_DOWN, MB_TCP_RESOLVING, MB_TCP_CONNECTING, MB_TCP_IDLE, MB_TCP_BUSY };

#define MB_MAX_ADDRS 4

struct mb_addr {
    socklen_t len;
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } u;
};

struct mb_link {
    const struct mittari_host *h;
    struct mittari_ctx *ctx;
    bool rtu;
    struct mb_dev *devs;
    size_t ndevs;
    int64_t (*clock)(void *arg); /* monotonic µs */
    void *clock_arg;
    /* the connection and its backoff */
    bool connected, ever_connected;
    int64_t retry_at, backoff_us, backoff_min_us, backoff_max_us;

    /* RTU (rtu.c) */
    void *mb; /* modbus_t */
    bool rs485_warned;
    int64_t frame_delay_us, quiet_at; /* the bus is silent since quiet_at */
    uint64_t tick_ms;

    /* TCP (tcp.c) */
    int state; /* enum mb_tcp_state */
    int fd;
    bool numeric; /* the host is an address: no resolver needed */
    struct mittari_watch *watch;
    int watch_ev;
    struct mittari_poll *resolver;
    int resolve_rc;                     /* written by the resolver's work */
    struct mb_addr addrs[MB_MAX_ADDRS]; /* written by the resolver's work */
    size_t naddrs, addr_i;
    char why[112];      /* the last failure of the poll in progress (one at a time a link) */
    int64_t deadline;   /* of the connect or the answer in flight */
    int64_t attempt_at; /* when the connection attempt began */
    int64_t grid_us, anchor;
    size_t dev; /* whose poll is in progress; SIZE_MAX = none */
    uint16_t tid;
    struct mbt_req q; /* in flight */
    void (*resched)(void *arg, int64_t at);
    void *resched_arg;
    size_t rxlen;
    uint8_t rx[MBT_ADU_MAX];
};

/* ---- the device engine (link.c) ---- */

/* now: when the poll was due (its backoff counts from there). */
void mb_poll_begin(struct mb_link *l, struct mb_dev *d, int64_t now);
/* The next transaction of d's poll; false when it is over (then mb_poll_end). */
bool mb_poll_next(struct mb_dev *d, struct mb_txn *t);
/* The transaction succeeded: a read's words (fn 3, 4) or bits (1, 2). ts:
 * when the answer came (UTC µs). Emits the registers it holds. */
void mb_poll_ok(struct mb_link *l, struct mb_dev *d, const uint16_t *words, const uint8_t *bits,
                int64_t ts);
/* The transaction failed: failure (enum mb_failure) and code (the exception
 * code, or an errno); detail, when not NULL, says it instead of
 * strerror(code). Counts and remembers it; returns enum mb_action. */
int mb_poll_fail(struct mb_link *l, struct mb_dev *d, int failure, int code, const char *detail);
/* The poll is over: health, backoff. */
void mb_poll_end(struct mb_link *l, struct mb_dev *d);

void mb_count(struct mb_link *l, struct mb_dev *d, const char *what);
/* The connection could not be made (err: -errno, -ENOENT = name did not
 * resolve, -EMFILE): every device down, the link backs off from `since`
 * (when the attempt began). */
void mb_link_down(struct mb_link *l, int64_t since, int err);
/* The connection was made. */
void mb_link_up(struct mb_link *l);

/* ---- transports ---- */

int mb_rtu_init(struct mb_link *l);  /* the libmodbus context; 0 or -errno */
void mb_rtu_free(struct mb_link *l); /* closes the port, frees the context */
void mb_tcp_init(struct mb_link *l);

#endif
