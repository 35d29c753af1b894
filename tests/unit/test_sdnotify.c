/* sdnotify: the notify datagram against real AF_UNIX sockets (a path and
 * the abstract namespace), and the watchdog variables. */
#include "testutil.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sdnotify.h"

/* A datagram socket bound to addr as $NOTIFY_SOCKET spells it. */
static int listen_at(const char *addr)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strlen(addr);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    memcpy(sa.sun_path, addr, n);
    if (addr[0] == '@')
        sa.sun_path[0] = '\0';
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (addr[0] == '/'));
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, len), 0);
    return fd;
}

/* The next datagram (waits up to 5 s), NUL-terminated into buf; its length. */
static ssize_t receive(int fd, char *buf, size_t size)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 5000), 1);
    ssize_t n = recv(fd, buf, size - 1, 0);
    assert_true(n >= 0);
    buf[n] = '\0';
    return n;
}

static bool nothing_waiting(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 0) == 0;
}

static void path_socket_gets_the_exact_text(void **st)
{
    (void)st;
    char *dir = tu_tmpdir();
    char *path = tu_path(dir, "notify");
    char buf[256];
    int fd = listen_at(path);

    assert_int_equal(mt_sdnotify_to(path, "READY=1"), 1);
    /* no trailing NUL, no newline added: exactly the state */
    assert_int_equal(receive(fd, buf, sizeof(buf)), 7);
    assert_string_equal(buf, "READY=1");
    assert_int_equal(mt_sdnotify_to(path, "STATUS=polling 3 devices\nWATCHDOG=1"), 1);
    receive(fd, buf, sizeof(buf));
    assert_string_equal(buf, "STATUS=polling 3 devices\nWATCHDOG=1");
    close(fd);
    free(path);
    tu_rmtree(dir);
    free(dir);
}

static void abstract_socket(void **st)
{
    (void)st;
    char addr[64], buf[64];
    snprintf(addr, sizeof(addr), "@mittari-test-sdnotify-%d", (int)getpid());
    int fd = listen_at(addr);

    assert_int_equal(mt_sdnotify_to(addr, "STOPPING=1"), 1);
    receive(fd, buf, sizeof(buf));
    assert_string_equal(buf, "STOPPING=1");
    close(fd);
}

static void environment_names_the_socket(void **st)
{
    (void)st;
    char addr[64], buf[64];
    snprintf(addr, sizeof(addr), "@mittari-test-env-%d", (int)getpid());
    int fd = listen_at(addr);

    assert_int_equal(setenv("NOTIFY_SOCKET", addr, 1), 0);
    assert_int_equal(mt_sdnotify("RELOADING=1"), 1);
    receive(fd, buf, sizeof(buf));
    assert_string_equal(buf, "RELOADING=1");
    /* not run by systemd: nothing sent, no error */
    unsetenv("NOTIFY_SOCKET");
    assert_int_equal(mt_sdnotify("READY=1"), 0);
    assert_true(nothing_waiting(fd));
    close(fd);
}

static void bad_addresses_are_refused(void **st)
{
    (void)st;
    char longpath[200];
    memset(longpath, 'x', sizeof(longpath) - 1);
    longpath[0] = '/';
    longpath[sizeof(longpath) - 1] = '\0';

    assert_int_equal(mt_sdnotify_to(NULL, "READY=1"), 0);
    assert_int_equal(mt_sdnotify_to("", "READY=1"), 0);
    assert_int_equal(mt_sdnotify_to("relative/path", "READY=1"), -EINVAL);
    assert_int_equal(mt_sdnotify_to("@", "READY=1"), -EINVAL);
    assert_int_equal(mt_sdnotify_to(longpath, "READY=1"), -EINVAL);
    assert_int_equal(mt_sdnotify_to("/tmp/x", ""), -EINVAL);
}

static void nobody_listening_is_an_error_not_a_hang(void **st)
{
    (void)st;
    char *dir = tu_tmpdir();
    char *path = tu_path(dir, "gone");
    int fd = listen_at(path);
    close(fd); /* the file stays, nobody reads it */

    assert_int_equal(mt_sdnotify_to(path, "READY=1"), -ECONNREFUSED);
    unlink(path);
    assert_int_equal(mt_sdnotify_to(path, "READY=1"), -ENOENT);
    free(path);
    tu_rmtree(dir);
    free(dir);
}

/* A receiver that reads nothing: its queue fills and a send is refused at
 * once, never waits (the loop thread sends). */
static void full_queue_does_not_block(void **st)
{
    (void)st;
    char addr[64];
    snprintf(addr, sizeof(addr), "@mittari-test-full-%d", (int)getpid());
    int fd = listen_at(addr);
    int rc = 1;

    for (int i = 0; i < 100000 && rc == 1; i++)
        rc = mt_sdnotify_to(addr, "WATCHDOG=1");
    assert_int_equal(rc, -EAGAIN);
    close(fd);
}

static void watchdog_variables(void **st)
{
    (void)st;
    uint64_t us = 0;

    assert_int_equal(mt_sdnotify_watchdog_from(NULL, NULL, 42, &us), 0);
    assert_int_equal(mt_sdnotify_watchdog_from("", NULL, 42, &us), 0);
    assert_int_equal(mt_sdnotify_watchdog_from("30000000", NULL, 42, &us), 1);
    assert_int_equal(us, 30000000);
    us = 0;
    assert_int_equal(mt_sdnotify_watchdog_from("5000000", "42", 42, &us), 1);
    assert_int_equal(us, 5000000);
    /* meant for another process: off for us */
    us = 7;
    assert_int_equal(mt_sdnotify_watchdog_from("5000000", "43", 42, &us), 0);
    assert_int_equal(us, 7);
    assert_int_equal(mt_sdnotify_watchdog_from("0", NULL, 42, &us), -EINVAL);
    assert_int_equal(mt_sdnotify_watchdog_from("-5", NULL, 42, &us), -EINVAL);
    assert_int_equal(mt_sdnotify_watchdog_from("12s", NULL, 42, &us), -EINVAL);
    assert_int_equal(mt_sdnotify_watchdog_from(" 12", NULL, 42, &us), -EINVAL);
    assert_int_equal(mt_sdnotify_watchdog_from("99999999999999999999999", NULL, 42, &us),
                     -EINVAL);
    assert_int_equal(mt_sdnotify_watchdog_from("100", "pid", 42, &us), -EINVAL);

    assert_int_equal(setenv("WATCHDOG_USEC", "2000000", 1), 0);
    char pid[32];
    snprintf(pid, sizeof(pid), "%d", (int)getpid());
    assert_int_equal(setenv("WATCHDOG_PID", pid, 1), 0);
    assert_int_equal(mt_sdnotify_watchdog(&us), 1);
    assert_int_equal(us, 2000000);
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    assert_int_equal(mt_sdnotify_watchdog(&us), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(path_socket_gets_the_exact_text),
        cmocka_unit_test(abstract_socket),
        cmocka_unit_test(environment_names_the_socket),
        cmocka_unit_test(bad_addresses_are_refused),
        cmocka_unit_test(nobody_listening_is_an_error_not_a_hang),
        cmocka_unit_test(full_queue_does_not_block),
        cmocka_unit_test(watchdog_variables),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
