/* sd-bus on the agent's loop (plugins/ble/sdloop.c) with a fake host whose
 * fd watches and timers are real libuv handles (plugins/common/testhost.c):
 * a peer-to-peer sd-bus pair over a socketpair, the client driven by
 * sdloop, the server by the test. Messages arrive through the host's fd
 * watch, at most 64 per turn of the loop (the rest on the next turns), a
 * call queued outside a callback goes out after a kick, a call's timeout
 * fires through a host timer, and a peer that hangs up is reported once. */
#include "testutil.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <systemd/sd-id128.h>
#include <unistd.h>

#include "sdloop.h"
#include "testhost.h"

struct fx {
    struct th t;
    sd_bus *client, *server;
    struct ble_sdloop *loop;
    int signals, replies, errors, timeouts;
    int bus_error; /* on_error's err; 0 = not called */
    int bus_errors;
};

static void on_error(void *arg, int err)
{
    struct fx *f = arg;
    f->bus_error = err;
    f->bus_errors++;
    ble_sdloop_detach(f->loop); /* as bluez.c does */
    f->loop = NULL;
}

static int count_signals(sd_bus_message *m, void *arg, sd_bus_error *e)
{
    struct fx *f = arg;
    (void)e;
    if (sd_bus_message_is_signal(m, "test.Ble", "Advert"))
        f->signals++;
    return 0;
}

/* the server answers Ping; Silent it never answers */
static int serve(sd_bus_message *m, void *arg, sd_bus_error *e)
{
    (void)arg;
    (void)e;
    if (sd_bus_message_is_method_call(m, "test.Ble", "Ping"))
        return sd_bus_reply_method_return(m, "s", "pong");
    return sd_bus_message_is_method_call(m, "test.Ble", "Silent") ? 1 : 0;
}

static void pump_server(struct fx *f)
{
    while (f->server && sd_bus_process(f->server, NULL) > 0)
        ;
}

static bool running(struct th *t, void *arg)
{
    struct fx *f = arg;
    (void)t;
    pump_server(f);
    return sd_bus_is_ready(f->client) > 0 && sd_bus_is_ready(f->server) > 0;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    int fds[2];
    sd_id128_t id;

    assert_non_null(f);
    th_init(&f->t, "scan", false);
    f->t.quiet = true;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds), 0);
    assert_true(sd_id128_randomize(&id) >= 0);
    assert_true(sd_bus_new(&f->server) >= 0);
    assert_true(sd_bus_set_fd(f->server, fds[1], fds[1]) >= 0);
    assert_true(sd_bus_set_server(f->server, 1, id) >= 0);
    assert_true(sd_bus_add_filter(f->server, NULL, serve, f) >= 0);
    assert_true(sd_bus_start(f->server) >= 0);
    assert_true(sd_bus_new(&f->client) >= 0);
    assert_true(sd_bus_set_fd(f->client, fds[0], fds[0]) >= 0);
    assert_true(sd_bus_add_filter(f->client, NULL, count_signals, f) >= 0);
    assert_true(sd_bus_start(f->client) >= 0);
    assert_int_equal(ble_sdloop_attach(&f->loop, &f->t.host, (struct mittari_ctx *)&f->t, f->client,
                                       on_error, f),
                     0);
    ble_sdloop_kick(f->loop);
    assert_true(th_run_until(&f->t, running, f, 5000)); /* the handshake, through the loop */
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    ble_sdloop_detach(f->loop);
    th_close_all(&f->t);
    sd_bus_close_unref(f->client);
    if (f->server)
        sd_bus_close_unref(f->server);
    th_free(&f->t);
    free(f);
    return 0;
}

static bool all_signals(struct th *t, void *arg)
{
    (void)t;
    return ((struct fx *)arg)->signals == 200;
}

static void at_most_64_messages_per_turn(void **state)
{
    struct fx *f = *state;
    for (int i = 0; i < 200; i++)
        assert_true(sd_bus_emit_signal(f->server, "/org/bluez/hci0", "test.Ble", "Advert", "u",
                                       (uint32_t)i) >= 0);
    assert_true(sd_bus_flush(f->server) >= 0); /* all 200 are in the client's socket */
    uv_run(&f->t.loop, UV_RUN_NOWAIT);         /* one turn: one fd callback */
    assert_int_equal(f->signals, 64);
    assert_true(th_run_until(&f->t, all_signals, f, 5000)); /* the rest on the next turns */
    assert_int_equal(f->bus_errors, 0);
}

static int on_reply(sd_bus_message *m, void *arg, sd_bus_error *e)
{
    struct fx *f = arg;
    (void)e;
    const sd_bus_error *err = sd_bus_message_get_error(m);
    if (!err)
        f->replies++;
    else if (sd_bus_error_has_name(err, SD_BUS_ERROR_NO_REPLY) ||
             sd_bus_error_has_name(err, SD_BUS_ERROR_TIMEOUT))
        f->timeouts++;
    else
        f->errors++;
    return 0;
}

static bool replied(struct th *t, void *arg)
{
    struct fx *f = arg;
    (void)t;
    pump_server(f);
    return f->replies + f->timeouts + f->errors > 0;
}

static void a_call_goes_out_after_a_kick(void **state)
{
    struct fx *f = *state;
    assert_true(sd_bus_call_method_async(f->client, NULL, NULL, "/", "test.Ble", "Ping", on_reply,
                                         f, "") >= 0);
    ble_sdloop_kick(f->loop);
    assert_true(th_run_until(&f->t, replied, f, 5000));
    assert_int_equal(f->replies, 1);
}

static void a_timeout_fires_through_a_host_timer(void **state)
{
    struct fx *f = *state;
    sd_bus_message *m = NULL;
    assert_true(sd_bus_message_new_method_call(f->client, &m, NULL, "/", "test.Ble", "Silent") >=
                0);
    assert_true(sd_bus_call_async(f->client, NULL, m, on_reply, f, 200000) >= 0); /* 200 ms */
    sd_bus_message_unref(m);
    ble_sdloop_kick(f->loop);
    assert_true(th_handles(&f->t, -1) >= 2); /* the watch and the timeout's timer */
    assert_true(th_run_until(&f->t, replied, f, 5000));
    assert_int_equal(f->timeouts, 1);
    assert_int_equal(f->replies, 0);
}

static bool hung_up(struct th *t, void *arg)
{
    (void)t;
    return ((struct fx *)arg)->bus_errors > 0;
}

static void a_hang_up_is_reported_once(void **state)
{
    struct fx *f = *state;
    f->server = sd_bus_close_unref(f->server);
    assert_true(th_run_until(&f->t, hung_up, f, 5000));
    th_run_for(&f->t, 50);
    assert_int_equal(f->bus_errors, 1);
    assert_true(f->bus_error < 0);
    assert_null(f->loop);
    assert_int_equal(th_handles(&f->t, -1), 0); /* the watch and timers are gone */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(at_most_64_messages_per_turn, setup, teardown),
        cmocka_unit_test_setup_teardown(a_call_goes_out_after_a_kick, setup, teardown),
        cmocka_unit_test_setup_teardown(a_timeout_fires_through_a_host_timer, setup, teardown),
        cmocka_unit_test_setup_teardown(a_hang_up_is_reported_once, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
