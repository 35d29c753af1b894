/* evdev record reassembly (plugins/common/evdev.c): records cut anywhere
 * across reads come out whole and in order, through a device handle
 * (mte_feed) and on their own (mte_reasm_feed); a partial record is kept
 * for the next read and wiped when dropped (it holds a typed card digit). */
#include "testutil.h"

#include <linux/input.h>
#include <string.h>

#include "evdev.h"

#define EV sizeof(struct input_event)

struct got {
    int n;
    struct input_event ev[16];
};

static void on_event(void *arg, const struct input_event *ev)
{
    struct got *g = arg;
    g->ev[g->n++] = *ev;
}

static void records(uint8_t *buf, int n)
{
    for (int i = 0; i < n; i++) {
        struct input_event ev = {.type = EV_KEY, .code = (uint16_t)(KEY_1 + i), .value = 1};
        ev.input_event_sec = 1700000000 + i;
        memcpy(buf + (size_t)i * EV, &ev, EV);
    }
}

static void records_cut_anywhere_come_out_whole(void **state)
{
    (void)state;
    uint8_t buf[4 * EV];
    records(buf, 4);
    for (size_t cut1 = 0; cut1 <= sizeof(buf); cut1 += 5) {
        for (size_t cut2 = cut1; cut2 <= sizeof(buf); cut2 += 7) {
            struct mte_reasm r = {0};
            struct got g = {0};
            mte_reasm_feed(&r, buf, cut1, on_event, &g);
            mte_reasm_feed(&r, buf + cut1, cut2 - cut1, on_event, &g);
            mte_reasm_feed(&r, buf + cut2, sizeof(buf) - cut2, on_event, &g);
            assert_int_equal(g.n, 4);
            for (int i = 0; i < 4; i++) {
                assert_int_equal(g.ev[i].code, KEY_1 + i);
                assert_int_equal(g.ev[i].input_event_sec, 1700000000 + i);
            }
            assert_int_equal(r.npart, 0);
        }
    }
}

static void partial_record_waits_and_is_wiped_when_dropped(void **state)
{
    (void)state;
    uint8_t buf[2 * EV];
    struct mte_reasm r = {0};
    struct got g = {0};
    records(buf, 2);
    mte_reasm_feed(&r, buf, EV + 10, on_event, &g);
    assert_int_equal(g.n, 1);
    assert_int_equal(r.npart, 10);
    mte_reasm_clear(&r);
    assert_int_equal(r.npart, 0);
    for (size_t i = 0; i < EV; i++)
        assert_int_equal(r.part[i], 0);

    /* the same through a device handle */
    struct mte_dev *d;
    char err[200];
    assert_int_equal(mte_open(&d, "/dev/null", false, err, sizeof(err)), 0);
    mte_feed(d, buf, 7, on_event, &g);
    mte_feed(d, buf + 7, sizeof(buf) - 7, on_event, &g);
    assert_int_equal(g.n, 3);
    assert_int_equal(g.ev[2].code, KEY_2);
    mte_close(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(records_cut_anywhere_come_out_whole),
        cmocka_unit_test(partial_record_waits_and_is_wiped_when_dropped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
