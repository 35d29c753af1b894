/*
 * serial: one serial device for the plugins that read a tty (serial,
 * cardreader, feedback), linked into each of them (libmtserial.a).
 *
 * Real ports are opened through libserialport; pseudo terminals (socat,
 * ser2net, RFC 2217 bridges: real in the field) through plain termios,
 * behind the same calls, because libserialport 0.1.1 refuses ptys. ENOTTY
 * from modem-line or RS-485 ioctls means "not supported", not failure.
 *
 * Loop thread. Never blocks: the descriptor is non-blocking and the plugin
 * watches it with host->fd_watch. Never logs: errors come back as -errno
 * with a one-line message in err.
 */
#ifndef MTS_SERIAL_H
#define MTS_SERIAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <mittari/mittari.h>

enum mts_parity { MTS_PARITY_NONE, MTS_PARITY_ODD, MTS_PARITY_EVEN, MTS_PARITY_MARK,
                  MTS_PARITY_SPACE };
enum mts_flow { MTS_FLOW_NONE, MTS_FLOW_RTSCTS, MTS_FLOW_XONXOFF };

/* The line settings, filled from a plugin's option table (MTS_OPTIONS). */
struct mts_conf {
    const char *port; /* /dev/ttyUSB0, /dev/serial/by-id/..., or a pty path */
    int64_t baud;
    int64_t data_bits; /* 5..8 */
    int parity;        /* enum mts_parity */
    int64_t stop_bits; /* 1, 2 */
    int flow;          /* enum mts_flow */
    bool rs485;        /* switch the adapter to RS-485 mode (TIOCSRS485) */
    int64_t reopen_ms; /* wait between attempts to reopen a device that went away */
};

/* Option table entries for a struct mts_conf member named `field` of the
 * plugin's config struct `conf_type` (not named `type`: the macro writes
 * `.type =` designators): port, baud, data_bits, parity, stop_bits,
 * flow_control, rs485, reopen_interval. Put MTS_OPTIONS(struct conf, line)
 * inside the plugin's table. */
extern const char *const mts_parity_names[];
extern const char *const mts_flow_names[];
#define MTS_OPTIONS(conf_type, field)                                                              \
    {.name = "port", .type = MITTARI_OPT_STRING, .flags = MITTARI_OPT_REQUIRED,                    \
     .offset = offsetof(conf_type, field.port),                                                    \
     .help = "Serial device: /dev/serial/by-id/... (stable, see 'mittari ports'), /dev/ttyUSB0, "  \
             "or a pty"},                                                                          \
        MTS_LINE_OPTIONS(conf_type, field)

/* The same without `port`, for a plugin whose `port` may also be something
 * else than a tty (the feedback plugin's evdev node) and so declares its own
 * entry with its own help text. */
#define MTS_LINE_OPTIONS(conf_type, field)                                                         \
    {.name = "baud", .type = MITTARI_OPT_INT, .def = "9600", .min = 50, .max = 4000000,            \
     .offset = offsetof(conf_type, field.baud), .help = "Baud rate."},                             \
        {.name = "data_bits", .type = MITTARI_OPT_INT, .def = "8", .min = 5, .max = 8,             \
         .offset = offsetof(conf_type, field.data_bits), .help = "Data bits."},                    \
        {.name = "parity", .type = MITTARI_OPT_ENUM, .def = "none", .values = mts_parity_names,    \
         .offset = offsetof(conf_type, field.parity), .help = "Parity."},                          \
        {.name = "stop_bits", .type = MITTARI_OPT_INT, .def = "1", .min = 1, .max = 2,             \
         .offset = offsetof(conf_type, field.stop_bits), .help = "Stop bits."},                    \
        {.name = "flow_control", .type = MITTARI_OPT_ENUM, .def = "none",                          \
         .values = mts_flow_names, .offset = offsetof(conf_type, field.flow),                      \
         .help = "Flow control: none, rtscts, xonxoff."},                                          \
        {.name = "rs485", .type = MITTARI_OPT_BOOL, .def = "false",                                \
         .offset = offsetof(conf_type, field.rs485),                                               \
         .help = "Switch the adapter to RS-485 mode (ignored where not supported)."},              \
        {.name = "reopen_interval", .type = MITTARI_OPT_DURATION, .def = "2s", .min = 100,         \
         .max = 3600000, .offset = offsetof(conf_type, field.reopen_ms),                           \
         .help = "Wait between attempts to reopen a device that went away."}

struct mts_port;

/* Opens and configures the port, non-blocking. 0 or -errno. */
int mts_open(struct mts_port **out, const struct mts_conf *c, char *err, size_t errlen);
int mts_fd(const struct mts_port *p);
bool mts_is_pty(const struct mts_port *p);
/* > 0: bytes read; -EAGAIN: nothing now; 0, -EIO or -ENODEV: the device
 * went away or the other end of a pty closed (close it, reopen later). */
ssize_t mts_read(struct mts_port *p, void *buf, size_t len);
/* Writes what it can without blocking: bytes written or -errno. */
ssize_t mts_write(struct mts_port *p, const void *buf, size_t len);
void mts_close(struct mts_port *p);

/* Added after the first version of this header (compatible extensions): */

/* Whether the port has modem lines (TIOCMGET works): false on ptys and on
 * adapters without them (ENOTTY). */
bool mts_has_modem_lines(const struct mts_port *p);
/* NULL, or one line saying what was asked for but is not supported by this
 * port and was ignored ("RS-485 mode is not supported by this port"): the
 * plugin logs it once after a successful open. Valid until mts_close. */
const char *mts_note(const struct mts_port *p);
/* Opens a path that must be a pseudo terminal, or any tty, with termios,
 * bypassing libserialport (tests; bridges libserialport refuses). */
int mts_open_termios(struct mts_port **out, const struct mts_conf *c, char *err, size_t errlen);

#endif
