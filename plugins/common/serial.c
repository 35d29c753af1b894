/*
 * serial: opens one serial device for a tty plugin (see serial.h).
 *
 * Owns the port's descriptor (and libserialport's handle for real ports).
 * Loop thread of the owning plugin instance; no globals, no logging.
 *
 * Two ways in, one descriptor out: real ports through libserialport (it
 * knows adapters' quirks and the non-standard rates), pseudo terminals and
 * anything libserialport does not recognise through plain termios, because
 * libserialport 0.1.1 refuses ptys ("Device not found" from sysfs, then
 * ENOTTY from TIOCMGET). Either way the descriptor ends up non-blocking and
 * the plugin reads it with read(2) when the loop says it is readable.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <unistd.h>

#include <linux/serial.h>

#include <libserialport.h>

#include "text.h"
#include "serial.h"

const char *const mts_parity_names[] = {"none", "odd", "even", "mark", "space", NULL};
const char *const mts_flow_names[] = {"none", "rtscts", "xonxoff", NULL};

/* Unix98 pty slaves: majors 136..143 (Documentation/admin-guide/devices.txt);
 * legacy BSD pty slaves: major 3. */
#define PTY_SLAVE_MAJOR_FIRST 136
#define PTY_SLAVE_MAJOR_LAST 143
#define LEGACY_PTY_SLAVE_MAJOR 3

struct mts_port {
    int fd;
    bool pty;
    bool modem_lines;
    struct sp_port *sp; /* NULL when opened with termios */
    char note[160];
};

/* ---- settings common to both ways ---- */

static bool not_supported(int e)
{
    /* ptys and many USB adapters: the ioctl does not exist for the driver */
    return e == ENOTTY || e == EOPNOTSUPP;
}

static int set_rs485(struct mts_port *p)
{
    struct serial_rs485 rs = {.flags = SER_RS485_ENABLED | SER_RS485_RTS_ON_SEND};

    if (ioctl(p->fd, TIOCSRS485, &rs) == 0)
        return 0;
    if (!not_supported(errno))
        return -errno;
    snprintf(p->note, sizeof(p->note), "RS-485 mode is not supported by this port; ignored");
    return 0;
}

/* Modem lines: raise DTR and RTS (some readers take power from them), or
 * learn that there are none. */
static int probe_modem_lines(struct mts_port *p, const struct mts_conf *c)
{
    int bits;

    if (ioctl(p->fd, TIOCMGET, &bits) < 0) {
        if (!not_supported(errno) && errno != EINVAL)
            return -errno;
        p->modem_lines = false;
        return 0;
    }
    p->modem_lines = true;
    bits = TIOCM_DTR | (c->flow == MTS_FLOW_RTSCTS ? 0 : TIOCM_RTS);
    if (ioctl(p->fd, TIOCMBIS, &bits) < 0 && !not_supported(errno))
        return -errno;
    return 0;
}

static int set_nonblocking(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    return 0;
}

/* ---- termios ---- */

static const struct {
    int64_t baud;
    speed_t speed;
} rates[] = {
    {50, B50},           {75, B75},           {110, B110},         {134, B134},
    {150, B150},         {200, B200},         {300, B300},         {600, B600},
    {1200, B1200},       {1800, B1800},       {2400, B2400},       {4800, B4800},
    {9600, B9600},       {19200, B19200},     {38400, B38400},     {57600, B57600},
    {115200, B115200},   {230400, B230400},   {460800, B460800},   {500000, B500000},
    {576000, B576000},   {921600, B921600},   {1000000, B1000000}, {1152000, B1152000},
    {1500000, B1500000}, {2000000, B2000000}, {2500000, B2500000}, {3000000, B3000000},
    {3500000, B3500000}, {4000000, B4000000},
};

static int speed_of(int64_t baud, speed_t *out)
{
    for (size_t i = 0; i < sizeof(rates) / sizeof(rates[0]); i++)
        if (rates[i].baud == baud) {
            *out = rates[i].speed;
            return 0;
        }
    return -EINVAL;
}

static void set_frame_bits(struct termios *t, const struct mts_conf *c)
{
    static const tcflag_t sizes[] = {CS5, CS6, CS7, CS8};
    int64_t bits = c->data_bits < 5 || c->data_bits > 8 ? 8 : c->data_bits;

    t->c_cflag &= ~(tcflag_t)(CSIZE | PARENB | PARODD | CMSPAR | CSTOPB | CRTSCTS);
    t->c_cflag |= sizes[bits - 5] | CLOCAL | CREAD;
    switch (c->parity) {
    case MTS_PARITY_ODD:
        t->c_cflag |= PARENB | PARODD;
        break;
    case MTS_PARITY_EVEN:
        t->c_cflag |= PARENB;
        break;
    case MTS_PARITY_MARK:
        t->c_cflag |= PARENB | CMSPAR | PARODD;
        break;
    case MTS_PARITY_SPACE:
        t->c_cflag |= PARENB | CMSPAR;
        break;
    default:
        break;
    }
    if (c->stop_bits == 2)
        t->c_cflag |= CSTOPB;
    t->c_iflag &= ~(tcflag_t)(IXON | IXOFF | IXANY);
    if (c->flow == MTS_FLOW_RTSCTS)
        t->c_cflag |= CRTSCTS;
    else if (c->flow == MTS_FLOW_XONXOFF)
        t->c_iflag |= IXON | IXOFF;
}

static int configure_termios(int fd, const struct mts_conf *c, char *err, size_t errlen)
{
    struct termios t;
    speed_t sp;

    if (speed_of(c->baud, &sp))
        return mtx_fail(err, errlen, -EINVAL, "%s: baud %lld is not a standard rate", c->port,
                    (long long)c->baud);
    if (tcgetattr(fd, &t) < 0)
        return mtx_fail(err, errlen, -errno, "%s: not a terminal: %s", c->port, strerror(errno));
    cfmakeraw(&t);
    set_frame_bits(&t, c);
    t.c_cc[VMIN] = 1;
    t.c_cc[VTIME] = 0;
    cfsetispeed(&t, sp);
    cfsetospeed(&t, sp);
    if (tcsetattr(fd, TCSANOW, &t) < 0)
        return mtx_fail(err, errlen, -errno, "%s: cannot set line settings: %s", c->port,
                    strerror(errno));
    return 0;
}

static int finish_open(struct mts_port *p, const struct mts_conf *c, char *err, size_t errlen)
{
    int rc = probe_modem_lines(p, c);
    if (rc)
        return mtx_fail(err, errlen, rc, "%s: modem lines: %s", c->port, strerror(-rc));
    if (c->rs485 && (rc = set_rs485(p)))
        return mtx_fail(err, errlen, rc, "%s: cannot switch to RS-485: %s", c->port, strerror(-rc));
    return 0;
}

static bool is_pty_dev(dev_t rdev)
{
    unsigned maj = major(rdev);
    return (maj >= PTY_SLAVE_MAJOR_FIRST && maj <= PTY_SLAVE_MAJOR_LAST) ||
           maj == LEGACY_PTY_SLAVE_MAJOR;
}

int mts_open_termios(struct mts_port **out, const struct mts_conf *c, char *err, size_t errlen)
{
    struct mts_port *p;
    struct stat st;
    int rc;

    *out = NULL;
    p = calloc(1, sizeof(*p));
    if (!p)
        return mtx_fail(err, errlen, -ENOMEM, "%s: %s", c->port, strerror(ENOMEM));
    p->fd = open(c->port, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (p->fd < 0) {
        rc = mtx_fail(err, errlen, -errno, "%s: %s", c->port, strerror(errno));
        free(p);
        return rc;
    }
    p->pty = fstat(p->fd, &st) == 0 && S_ISCHR(st.st_mode) && is_pty_dev(st.st_rdev);
    rc = configure_termios(p->fd, c, err, errlen);
    if (!rc)
        rc = finish_open(p, c, err, errlen);
    if (rc) {
        close(p->fd);
        free(p);
        return rc;
    }
    *out = p;
    return 0;
}

/* ---- libserialport ---- */

static int sp_errno(enum sp_return r)
{
    switch (r) {
    case SP_ERR_ARG:
        return -ENODEV; /* "not found": not a port sysfs knows */
    case SP_ERR_MEM:
        return -ENOMEM;
    case SP_ERR_SUPP:
        return -ENOTSUP;
    case SP_ERR_FAIL:
        return sp_last_error_code() > 0 ? -sp_last_error_code() : -EIO;
    default:
        return -EIO;
    }
}

static int sp_fail(char *err, size_t errlen, enum sp_return r, const char *port, const char *what)
{
    int rc = sp_errno(r);
    char *msg = r == SP_ERR_FAIL ? sp_last_error_message() : NULL;
    char text[200];

    snprintf(text, sizeof(text), "%s: %s", what, msg ? msg : strerror(-rc));
    if (msg)
        sp_free_error_message(msg);
    return mtx_fail(err, errlen, rc, "%s: %s", port, text);
}

static enum sp_return sp_configure(struct sp_port *sp, const struct mts_conf *c)
{
    static const enum sp_parity par[] = {SP_PARITY_NONE, SP_PARITY_ODD, SP_PARITY_EVEN,
                                         SP_PARITY_MARK, SP_PARITY_SPACE};
    static const enum sp_flowcontrol flow[] = {SP_FLOWCONTROL_NONE, SP_FLOWCONTROL_RTSCTS,
                                               SP_FLOWCONTROL_XONXOFF};
    enum sp_return r;

    if ((r = sp_set_baudrate(sp, (int)c->baud)) != SP_OK ||
        (r = sp_set_bits(sp, (int)c->data_bits)) != SP_OK ||
        (r = sp_set_parity(sp, par[c->parity >= 0 && c->parity <= 4 ? c->parity : 0])) != SP_OK ||
        (r = sp_set_stopbits(sp, (int)c->stop_bits)) != SP_OK)
        return r;
    return sp_set_flowcontrol(sp, flow[c->flow >= 0 && c->flow <= 2 ? c->flow : 0]);
}

/* 0, or -ENODEV/-ENOTTY when libserialport does not take this path (the
 * caller then tries termios), or another -errno. */
static int open_sp(struct mts_port *p, const char *real, const struct mts_conf *c, char *err,
                   size_t errlen)
{
    enum sp_return r = sp_get_port_by_name(real, &p->sp);

    if (r != SP_OK)
        return sp_fail(err, errlen, r, c->port, "libserialport");
    if ((r = sp_open(p->sp, SP_MODE_READ_WRITE)) != SP_OK) {
        int rc = sp_fail(err, errlen, r, c->port, "cannot open");
        sp_free_port(p->sp);
        p->sp = NULL;
        return rc;
    }
    int rc = 0;
    if ((r = sp_configure(p->sp, c)) != SP_OK)
        rc = sp_fail(err, errlen, r, c->port, "cannot set line settings");
    else if (sp_get_port_handle(p->sp, &p->fd) != SP_OK)
        rc = mtx_fail(err, errlen, -EIO, "%s: no descriptor from libserialport", c->port);
    else if ((rc = set_nonblocking(p->fd)))
        mtx_fail(err, errlen, rc, "%s: %s", c->port, strerror(-rc));
    else
        rc = finish_open(p, c, err, errlen);
    if (rc) {
        sp_close(p->sp);
        sp_free_port(p->sp);
        p->sp = NULL;
    }
    return rc;
}

int mts_open(struct mts_port **out, const struct mts_conf *c, char *err, size_t errlen)
{
    char real[PATH_MAX];
    struct stat st;
    struct mts_port *p;
    int rc;

    *out = NULL;
    if (!c->port || !*c->port)
        return mtx_fail(err, errlen, -EINVAL, "no port given");
    /* a by-id link points at the port sysfs knows; libserialport wants that */
    if (!realpath(c->port, real) || stat(real, &st) < 0)
        return mtx_fail(err, errlen, -errno, "%s: %s", c->port, strerror(errno));
    if (!S_ISCHR(st.st_mode))
        return mtx_fail(err, errlen, -ENOTTY, "%s: not a character device", c->port);
    if (is_pty_dev(st.st_rdev))
        return mts_open_termios(out, c, err, errlen);
    p = calloc(1, sizeof(*p));
    if (!p)
        return mtx_fail(err, errlen, -ENOMEM, "%s: %s", c->port, strerror(ENOMEM));
    p->fd = -1;
    rc = open_sp(p, real, c, err, errlen);
    if (rc == 0) {
        *out = p;
        return 0;
    }
    free(p);
    if (rc == -ENODEV || rc == -ENOTTY) /* a tty libserialport does not know: a bridge */
        return mts_open_termios(out, c, err, errlen);
    return rc;
}

int mts_fd(const struct mts_port *p)
{
    return p ? p->fd : -1;
}

bool mts_is_pty(const struct mts_port *p)
{
    return p && p->pty;
}

bool mts_has_modem_lines(const struct mts_port *p)
{
    return p && p->modem_lines;
}

const char *mts_note(const struct mts_port *p)
{
    return p && p->note[0] ? p->note : NULL;
}

ssize_t mts_read(struct mts_port *p, void *buf, size_t len)
{
    ssize_t n = read(p->fd, buf, len);

    if (n >= 0)
        return n;
    switch (errno) {
    case EAGAIN:
    case EINTR:
        return -EAGAIN;
    case ENXIO:
    case ENODEV:
        return -ENODEV;
    default:
        return -errno; /* EIO: the other end of a pty closed, or the adapter went */
    }
}

ssize_t mts_write(struct mts_port *p, const void *buf, size_t len)
{
    ssize_t n = write(p->fd, buf, len);
    if (n >= 0)
        return n;
    return errno == EINTR ? -EAGAIN : -errno;
}

void mts_close(struct mts_port *p)
{
    if (!p)
        return;
    if (p->sp) {
        sp_close(p->sp);
        sp_free_port(p->sp);
    } else if (p->fd >= 0) {
        close(p->fd);
    }
    free(p);
}
