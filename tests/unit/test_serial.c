/* plugins/common/serial.c on real pseudo terminals (openpty): line
 * settings, non-blocking reads and writes, the other end closing, what a
 * pty does not support, and the errors for paths that are no port. */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <pty.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "serial.h"

struct pty {
    int master;
    char path[128];
};

static void pty_open(struct pty *p)
{
    int slave;
    assert_int_equal(openpty(&p->master, &slave, p->path, NULL, NULL), 0);
    close(slave); /* the port under test opens it by path, like the plugin */
}

static struct mts_conf conf(const char *port)
{
    return (struct mts_conf){
        .port = port, .baud = 9600, .data_bits = 8, .stop_bits = 1, .reopen_ms = 1000};
}

static void test_pty_settings(void **state)
{
    (void)state;
    struct pty t;
    struct mts_port *p;
    struct termios tio;
    char err[256];
    pty_open(&t);
    struct mts_conf c = conf(t.path);
    c.baud = 19200;
    c.data_bits = 7;
    c.parity = MTS_PARITY_EVEN;
    c.stop_bits = 2;
    assert_int_equal(mts_open(&p, &c, err, sizeof(err)), 0);
    assert_true(mts_is_pty(p));
    assert_false(mts_has_modem_lines(p)); /* TIOCMGET: ENOTTY on a pty */
    assert_null(mts_note(p));
    assert_true(fcntl(mts_fd(p), F_GETFL) & O_NONBLOCK);
    assert_int_equal(tcgetattr(mts_fd(p), &tio), 0);
    assert_int_equal(cfgetispeed(&tio), B19200);
    /* the pty driver forces CS8 without parity (pty_set_termios), so only
     * what it keeps can be checked here */
    assert_true(tio.c_cflag & CSTOPB);
    assert_true(tio.c_cflag & CLOCAL);
    assert_false(tio.c_lflag & (ICANON | ECHO)); /* raw */
    mts_close(p);
    close(t.master);
}

static void test_pty_read_write(void **state)
{
    (void)state;
    struct pty t;
    struct mts_port *p;
    char err[256], buf[64];
    pty_open(&t);
    struct mts_conf c = conf(t.path);
    assert_int_equal(mts_open(&p, &c, err, sizeof(err)), 0);
    assert_int_equal(mts_read(p, buf, sizeof(buf)), -EAGAIN);
    assert_int_equal(write(t.master, "IN=1\r\n", 6), 6);
    ssize_t n = -EAGAIN;
    for (int i = 0; i < 200 && n == -EAGAIN; i++) {
        n = mts_read(p, buf, sizeof(buf));
        if (n == -EAGAIN)
            usleep(5000);
    }
    assert_int_equal(n, 6);
    assert_memory_equal(buf, "IN=1\r\n", 6); /* raw: no CR/LF translation */
    assert_int_equal(mts_write(p, "ok", 2), 2);
    assert_int_equal(read(t.master, buf, sizeof(buf)), 2);
    mts_close(p);
    close(t.master);
}

/* Unplugging a pty: the master closes; reads then say the device went. */
static void test_pty_hangup(void **state)
{
    (void)state;
    struct pty t;
    struct mts_port *p;
    char err[256], buf[16];
    pty_open(&t);
    struct mts_conf c = conf(t.path);
    assert_int_equal(mts_open(&p, &c, err, sizeof(err)), 0);
    close(t.master);
    ssize_t n = mts_read(p, buf, sizeof(buf));
    assert_true(n == 0 || n == -EIO || n == -ENODEV);
    mts_close(p);
    /* and the path is gone: reopening fails cleanly */
    assert_true(mts_open(&p, &c, err, sizeof(err)) < 0);
    assert_null(p);
}

static void test_pty_rs485_not_supported(void **state)
{
    (void)state;
    struct pty t;
    struct mts_port *p;
    char err[256];
    pty_open(&t);
    struct mts_conf c = conf(t.path);
    c.rs485 = true;
    c.flow = MTS_FLOW_RTSCTS;
    assert_int_equal(mts_open(&p, &c, err, sizeof(err)), 0);
    assert_non_null(mts_note(p));
    assert_non_null(strstr(mts_note(p), "RS-485"));
    mts_close(p);
    close(t.master);
}

/* A stable name (a /dev/serial/by-id/ link) pointing at the port. */
static void test_symlink(void **state)
{
    (void)state;
    struct pty t;
    struct mts_port *p;
    char err[256];
    char *dir = tu_tmpdir();
    char *link = tu_path(dir, "usb-Acme_Counter_1234-if00-port0");
    pty_open(&t);
    assert_int_equal(symlink(t.path, link), 0);
    struct mts_conf c = conf(link);
    assert_int_equal(mts_open(&p, &c, err, sizeof(err)), 0);
    assert_true(mts_is_pty(p));
    mts_close(p);
    struct mts_port *q;
    assert_int_equal(mts_open_termios(&q, &c, err, sizeof(err)), 0);
    mts_close(q);
    close(t.master);
    tu_rmtree(dir);
    free(link);
    free(dir);
}

static void test_errors(void **state)
{
    (void)state;
    struct mts_port *p;
    char err[256];
    char *dir = tu_tmpdir();
    char *file = tu_write(dir, "plain", "not a tty\n");
    struct mts_conf c = conf("/nonexistent/ttyUSB9");

    assert_int_equal(mts_open(&p, &c, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "/nonexistent/ttyUSB9"));
    c.port = file;
    assert_int_equal(mts_open(&p, &c, err, sizeof(err)), -ENOTTY);
    c.port = "/dev/null"; /* a character device, but no terminal */
    assert_int_equal(mts_open(&p, &c, err, sizeof(err)), -ENOTTY);
    c.port = "";
    assert_int_equal(mts_open(&p, &c, err, sizeof(err)), -EINVAL);

    struct pty t;
    pty_open(&t);
    c = conf(t.path);
    c.baud = 12345; /* termios has no such rate */
    assert_int_equal(mts_open(&p, &c, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "12345"));
    assert_null(p);
    close(t.master);
    tu_rmtree(dir);
    free(file);
    free(dir);
}

static void test_option_names(void **state)
{
    (void)state;
    /* the tables index the enums */
    assert_string_equal(mts_parity_names[MTS_PARITY_ODD], "odd");
    assert_string_equal(mts_parity_names[MTS_PARITY_SPACE], "space");
    assert_null(mts_parity_names[MTS_PARITY_SPACE + 1]);
    assert_string_equal(mts_flow_names[MTS_FLOW_XONXOFF], "xonxoff");
    assert_null(mts_flow_names[MTS_FLOW_XONXOFF + 1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pty_settings), cmocka_unit_test(test_pty_read_write),
        cmocka_unit_test(test_pty_hangup),   cmocka_unit_test(test_pty_rs485_not_supported),
        cmocka_unit_test(test_symlink),      cmocka_unit_test(test_errors),
        cmocka_unit_test(test_option_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
