/* Debouncing by keyed fingerprint (plugins/cardreader/debounce.c). */
#include "testutil.h"

#include <errno.h>
#include <string.h>

#include "debounce.h"

#define S 1000000LL

static bool rep(struct cr_debounce *d, const char *space, const char *id, int64_t t)
{
    return cr_debounce_repeat(d, space, id, strlen(id), t);
}

static void repeat_within_window_is_one_checkin(void **st)
{
    (void)st;
    struct cr_debounce *d;
    assert_int_equal(cr_debounce_create(&d, 3 * S, 16), 0);
    assert_false(rep(d, "em4100", "A", 10 * S));
    assert_true(rep(d, "em4100", "A", 10 * S + 100000));
    assert_true(rep(d, "em4100", "A", 12 * S));
    /* another card, another space: not repeats */
    assert_false(rep(d, "em4100", "B", 12 * S));
    assert_false(rep(d, "iso14443", "A", 12 * S));
    cr_debounce_free(d);
}

static void window_slides_while_the_card_is_held(void **st)
{
    (void)st;
    struct cr_debounce *d;
    assert_int_equal(cr_debounce_create(&d, 3 * S, 16), 0);
    assert_false(rep(d, "em4100", "A", 0));
    /* an RDM6300 repeats every ~100 ms for 10 s: still one check-in */
    for (int64_t t = 100000; t <= 10 * S; t += 100000)
        assert_true(rep(d, "em4100", "A", t));
    /* taken away, back after the window: a new check-in */
    assert_false(rep(d, "em4100", "A", 13 * S));
    cr_debounce_free(d);
}

static void zero_window_counts_every_read(void **st)
{
    (void)st;
    struct cr_debounce *d;
    assert_int_equal(cr_debounce_create(&d, 0, 16), 0);
    assert_false(rep(d, "em4100", "A", 0));
    assert_false(rep(d, "em4100", "A", 0));
    assert_int_equal(cr_debounce_size(d), 0); /* nothing kept at all */
    cr_debounce_free(d);
}

static void expire_forgets_old_fingerprints(void **st)
{
    (void)st;
    struct cr_debounce *d;
    assert_int_equal(cr_debounce_create(&d, 3 * S, 16), 0);
    rep(d, "em4100", "A", 0);
    rep(d, "em4100", "B", 2 * S);
    assert_int_equal(cr_debounce_size(d), 2);
    cr_debounce_expire(d, 3 * S);
    assert_int_equal(cr_debounce_size(d), 1);
    cr_debounce_expire(d, 5 * S);
    assert_int_equal(cr_debounce_size(d), 0);
    cr_debounce_free(d);
}

static void forget_lets_the_next_read_count(void **st)
{
    (void)st;
    struct cr_debounce *d;
    assert_int_equal(cr_debounce_create(&d, 3 * S, 16), 0);
    assert_false(rep(d, "em4100", "A", 0));
    cr_debounce_forget(d, "em4100", "A", 1);
    assert_false(rep(d, "em4100", "A", 100000));
    cr_debounce_forget(d, "em4100", "Z", 1); /* unknown: no harm */
    cr_debounce_free(d);
}

static void full_table_forgets_the_oldest(void **st)
{
    (void)st;
    struct cr_debounce *d;
    char id[8];
    assert_int_equal(cr_debounce_create(&d, 60 * S, 4), 0);
    for (int i = 0; i < 5; i++) {
        snprintf(id, sizeof(id), "%d", i);
        assert_false(rep(d, "card", id, i * S));
    }
    assert_int_equal(cr_debounce_size(d), 4);
    assert_int_equal(cr_debounce_take_evicted(d), 1);
    assert_int_equal(cr_debounce_take_evicted(d), 0);
    assert_false(rep(d, "card", "0", 10 * S)); /* evicted: counts again */
    assert_true(rep(d, "card", "4", 10 * S));
    cr_debounce_free(d);
}

static void space_and_id_are_separated(void **st)
{
    (void)st;
    struct cr_debounce *d;
    assert_int_equal(cr_debounce_create(&d, 60 * S, 16), 0);
    assert_false(rep(d, "em4100-dec", "123", 0));
    assert_false(rep(d, "em4100-de", "c123", 0));
    cr_debounce_free(d);
}

static void zero_capacity_is_refused(void **st)
{
    (void)st;
    struct cr_debounce *d = NULL;
    assert_int_equal(cr_debounce_create(&d, 60 * S, 0), -EINVAL);
    assert_null(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(repeat_within_window_is_one_checkin),
        cmocka_unit_test(window_slides_while_the_card_is_held),
        cmocka_unit_test(zero_window_counts_every_read),
        cmocka_unit_test(expire_forgets_old_fingerprints),
        cmocka_unit_test(forget_lets_the_next_read_count),
        cmocka_unit_test(full_table_forgets_the_oldest),
        cmocka_unit_test(space_and_id_are_separated),
        cmocka_unit_test(zero_capacity_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
