/* The feedback plugin with a fake agent (plugins/common/testhost.c): a
 * serial terminal on a real pty, and an evdev terminal whose device node
 * is a FIFO fed with recorded struct input_event records (no uinput here:
 * ../shared/TESTING.md section 9), split across writes. */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <pty.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/input.h>

#include "testhost.h"

const struct mittari_plugin *mittari_plugin_entry(void);

struct fx {
    struct th t;
    const struct mittari_plugin *p;
    char *dir;
    char path[256];
    int wfd; /* pty master, or the FIFO's writing end */
    void *conf;
    void *state;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    f->p = mittari_plugin_entry();
    f->dir = tu_tmpdir();
    f->wfd = -1;
    th_init(&f->t, "lobby-smiley", false);
    f->t.quiet = true;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    if (f->state) {
        f->p->stop(f->state);
        th_close_all(&f->t);
        f->p->destroy(f->state);
    }
    tu_options_free(f->conf);
    th_free(&f->t);
    if (f->wfd >= 0)
        close(f->wfd);
    tu_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static void make_pty(struct fx *f)
{
    int slave;
    assert_int_equal(openpty(&f->wfd, &slave, f->path, NULL, NULL), 0);
    close(slave);
}

static void make_fifo(struct fx *f)
{
    snprintf(f->path, sizeof(f->path), "%s/event-kbd", f->dir);
    assert_int_equal(mkfifo(f->path, 0600), 0);
    /* O_RDWR: opening does not wait for a reader, and the FIFO stays open */
    f->wfd = open(f->path, O_RDWR | O_NONBLOCK);
    assert_true(f->wfd >= 0);
}

static int start(struct fx *f, const char *opts)
{
    char yaml[2048];
    snprintf(yaml, sizeof(yaml), "{port: '%s', reopen_interval: 100ms, %s}", f->path, opts);
    f->conf = tu_options(f->p->options, f->p->config_size, yaml);
    int rc = f->p->create(&f->t.host, (struct mittari_ctx *)&f->t, f->conf, &f->state);
    if (rc) {
        f->state = NULL;
        return rc;
    }
    return f->p->start(f->state);
}

static bool have_n(struct th *t, void *arg)
{
    return t->nr >= *(size_t *)arg;
}

static void wait_readings(struct fx *f, size_t n)
{
    assert_true(th_run_until(&f->t, have_n, &n, 5000));
    th_run_for(&f->t, 30); /* and nothing more comes */
    assert_int_equal(f->t.nr, n);
}

static void put(struct fx *f, const void *p, size_t n)
{
    assert_int_equal(write(f->wfd, p, n), (ssize_t)n);
}

static void check_score(const struct th_reading *r, double score)
{
    assert_string_equal(r->metric, "feedback");
    assert_int_equal(r->kind, MITTARI_KIND_EVENT);
    assert_true(r->value == score);
    assert_string_equal(r->device, "lobby-smiley");
}

static void test_serial_default_buttons(void **state)
{
    struct fx *f = *state;
    make_pty(f);
    assert_int_equal(start(f, "backend: serial"), 0);
    put(f, "12", 2);
    put(f, "34\r\n4x9", 7);
    wait_readings(f, 5);
    double want[] = {1, 2, 3, 4, 4};
    for (int i = 0; i < 5; i++)
        check_score(&f->t.r[i], want[i]);
    assert_int_equal(th_counter(&f->t, NULL, "unknown_keys"), 2);
    assert_int_equal(th_logs_with(&f->t, "is no button"), 1); /* rate-limited */
}

static void test_serial_own_buttons(void **state)
{
    struct fx *f = *state;
    make_pty(f);
    assert_int_equal(start(f, "buttons: [{key: a, score: -1, label: unhappy},"
                              " {key: '\\x42', score: 1, label: happy}], device: museum-exit"),
                     0);
    put(f, "aB1", 3);
    wait_readings(f, 2);
    assert_true(f->t.r[0].value == -1);
    assert_string_equal(f->t.r[0].tags, "button=unhappy");
    assert_string_equal(f->t.r[1].tags, "button=happy");
    assert_string_equal(f->t.r[1].device, "museum-exit");
    assert_int_equal(th_counter(&f->t, "museum-exit", "unknown_keys"), 1);
}

static void test_min_interval(void **state)
{
    struct fx *f = *state;
    make_pty(f);
    assert_int_equal(start(f, "min_interval: 10s"), 0);
    put(f, "4444", 4);
    wait_readings(f, 1);
    th_run_for(&f->t, 50);
    assert_int_equal(f->t.nr, 1);
    assert_int_equal(th_counter(&f->t, NULL, "ignored_presses"), 3);
}

static void ev(struct input_event *e, int type, int code, int value)
{
    memset(e, 0, sizeof(*e));
    e->type = (unsigned short)type;
    e->code = (unsigned short)code;
    e->value = value;
}

static void test_evdev_from_fifo(void **state)
{
    struct fx *f = *state;
    struct input_event e[10];
    make_fifo(f);
    assert_int_equal(start(f, "backend: evdev"), 0);
    /* a not-grabbable stand-in is noticed, not fatal */
    assert_int_equal(th_logs_with(&f->t, "not an evdev device"), 1);
    ev(&e[0], EV_MSC, MSC_SCAN, 0x7001f);
    ev(&e[1], EV_KEY, KEY_2, 1);
    ev(&e[2], EV_SYN, SYN_REPORT, 0);
    ev(&e[3], EV_KEY, KEY_2, 0); /* release: no vote */
    ev(&e[4], EV_KEY, KEY_KP4, 1);
    ev(&e[5], EV_KEY, KEY_KP4, 2); /* auto-repeat: no vote */
    ev(&e[6], EV_KEY, KEY_KP4, 0);
    ev(&e[7], EV_KEY, KEY_A, 1); /* not a button */
    ev(&e[8], EV_KEY, KEY_1, 1);
    ev(&e[9], EV_SYN, SYN_REPORT, 0);
    /* records split at odd places, as a pipe may deliver them */
    const uint8_t *b = (const uint8_t *)e;
    put(f, b, 10);
    th_run_for(&f->t, 20);
    put(f, b + 10, 50);
    th_run_for(&f->t, 20);
    put(f, b + 60, sizeof(e) - 60);
    wait_readings(f, 3);
    check_score(&f->t.r[0], 2);
    check_score(&f->t.r[1], 4);
    check_score(&f->t.r[2], 1);
    assert_int_equal(th_counter(&f->t, NULL, "unknown_keys"), 1);
}

static bool health_is(struct th *t, void *arg)
{
    return th_health(t, NULL) == *(int *)arg;
}

/* The writer going away is the device going away; it comes back. */
static void test_evdev_gone_and_back(void **state)
{
    struct fx *f = *state;
    struct input_event e;
    int down = MITTARI_HEALTH_DOWN, up = MITTARI_HEALTH_UP;
    make_fifo(f);
    assert_int_equal(start(f, "backend: evdev, buttons: [{key: KEY_ENTER, score: 5}]"), 0);
    ev(&e, EV_KEY, KEY_ENTER, 1);
    put(f, &e, sizeof(e));
    wait_readings(f, 1);
    close(f->wfd);
    f->wfd = -1;
    assert_true(th_run_until(&f->t, health_is, &down, 5000));
    assert_int_equal(th_counter(&f->t, NULL, "disconnects"), 1);
    assert_true(th_run_until(&f->t, health_is, &up, 5000));
    f->wfd = open(f->path, O_WRONLY | O_NONBLOCK);
    assert_true(f->wfd >= 0);
    put(f, &e, sizeof(e));
    wait_readings(f, 2);
    assert_true(f->t.r[1].value == 5);
}

static void test_config_errors(void **state)
{
    struct fx *f = *state;
    snprintf(f->path, sizeof(f->path), "/nonexistent");
    const char *bad[] = {"buttons: [{key: ab, score: 1}]",
                         "backend: evdev, buttons: [{key: KEY_NOPE, score: 1}]",
                         "buttons: [{key: '1', score: 1}, {key: '\\x31', score: 2}]"};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(start(f, bad[i]), MITTARI_ECONFIG);
        tu_options_free(f->conf);
        f->conf = NULL;
    }
    assert_int_equal(th_logs_with(&f->t, "buttons"), 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_serial_default_buttons, setup, teardown),
        cmocka_unit_test_setup_teardown(test_serial_own_buttons, setup, teardown),
        cmocka_unit_test_setup_teardown(test_min_interval, setup, teardown),
        cmocka_unit_test_setup_teardown(test_evdev_from_fifo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_evdev_gone_and_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
