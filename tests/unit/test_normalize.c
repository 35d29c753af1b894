/* The counter normalizer: first sample, steps, wrap at 16/32 bits, resets. */
#include "testutil.h"

#include "normalize.h"

static void first_sample_is_baseline_only(void **s)
{
    (void)s;
    struct mt_counter_state st = {0};
    uint64_t d = 99;
    assert_int_equal(mt_norm_counter(&st, 1234, 16, 1, &d), MT_NORM_FIRST);
    assert_int_equal(d, 99); /* untouched: no delta */
    assert_true(st.have);
    assert_int_equal(st.last, 1234);
}

static void steps_give_differences(void **s)
{
    (void)s;
    struct mt_counter_state st = {0};
    uint64_t d = 0;
    mt_norm_counter(&st, 10, 32, 1, &d);
    assert_int_equal(mt_norm_counter(&st, 17, 32, 2, &d), MT_NORM_STEP);
    assert_int_equal(d, 7);
    assert_int_equal(mt_norm_counter(&st, 17, 32, 3, &d), MT_NORM_SAME);
}

static void wrap16(void **s)
{
    (void)s;
    struct mt_counter_state st = {0};
    uint64_t d = 0;
    mt_norm_counter(&st, 65530, 16, 1, &d);
    assert_int_equal(mt_norm_counter(&st, 4, 16, 2, &d), MT_NORM_WRAP);
    assert_int_equal(d, 10); /* 65530 -> 65535 is 5, -> 0 is 6, -> 4 is 10 */
}

static void wrap32(void **s)
{
    (void)s;
    struct mt_counter_state st = {0};
    uint64_t d = 0;
    mt_norm_counter(&st, 0xfffffff0u, 32, 1, &d);
    assert_int_equal(mt_norm_counter(&st, 0x10, 32, 2, &d), MT_NORM_WRAP);
    assert_int_equal(d, 0x20);
}

static void wrap64_is_a_reset(void **s)
{
    (void)s;
    struct mt_counter_state st = {0};
    uint64_t d = 0;
    mt_norm_counter(&st, UINT64_MAX - 1, 64, 1, &d);
    assert_int_equal(mt_norm_counter(&st, 5, 64, 2, &d), MT_NORM_RESET);
    assert_int_equal(d, 5);
}

static void drop_from_low_half_is_reset(void **s)
{
    (void)s;
    /* a device rebooted: 1000 -> 3 means it counted 3 since it came back */
    struct mt_counter_state st = {0};
    uint64_t d = 0;
    mt_norm_counter(&st, 1000, 16, 1, &d);
    assert_int_equal(mt_norm_counter(&st, 3, 16, 2, &d), MT_NORM_RESET);
    assert_int_equal(d, 3);
}

static void implausible_wrap_is_reset(void **s)
{
    (void)s;
    /* upper half, but the wrapped distance is over a quarter of the range */
    struct mt_counter_state st = {0};
    uint64_t d = 0;
    mt_norm_counter(&st, 40000, 16, 1, &d);
    assert_int_equal(mt_norm_counter(&st, 30000, 16, 2, &d), MT_NORM_RESET);
    assert_int_equal(d, 30000);
}

static void too_wide_is_invalid(void **s)
{
    (void)s;
    struct mt_counter_state st = {0};
    uint64_t d = 0;
    assert_int_equal(mt_norm_counter(&st, 70000, 16, 1, &d), MT_NORM_INVALID);
    assert_false(st.have);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(first_sample_is_baseline_only),
        cmocka_unit_test(steps_give_differences),
        cmocka_unit_test(wrap16),
        cmocka_unit_test(wrap32),
        cmocka_unit_test(wrap64_is_a_reset),
        cmocka_unit_test(drop_from_low_half_is_reset),
        cmocka_unit_test(implausible_wrap_is_reset),
        cmocka_unit_test(too_wide_is_invalid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
