/* plugins/serial/mapping.c: fields to readings, all or nothing per frame;
 * counters exact and within their width; constants; checks at create. */
#include "testutil.h"

#include <errno.h>
#include <string.h>

#include "kv.h"
#include "mapping.h"

static struct mittari_list list_of(const struct mtm_value *v, size_t n)
{
    return (struct mittari_list){.n = n, .items = v};
}

static int apply(const struct mittari_list *l, const char *line, struct mtm_out *out)
{
    struct mtd_fields fs;
    char err[200];
    assert_true(mtk_parse((const uint8_t *)line, strlen(line), &fs) > 0);
    return mtm_apply(l, &fs, "dev", 42, out, err, sizeof(err));
}

static void test_counters(void **state)
{
    (void)state;
    struct mtm_value v[] = {
        {.field = "A", .metric = "a", .kind = MTM_CUMULATIVE, .bits = 0, .scale = 1},
        {.field = "B", .metric = "b", .kind = MTM_CUMULATIVE, .bits = 2, .scale = 1},
    };
    struct mittari_list l = list_of(v, 2);
    struct mtm_out out;
    assert_int_equal(apply(&l, "A=65535 B=18446744073709551615", &out), 2);
    assert_int_equal(out.r[0].counter, 65535);
    assert_int_equal(out.r[0].counter_bits, 16);
    assert_true(out.r[1].counter == UINT64_MAX);
    assert_int_equal(out.r[1].kind, MITTARI_KIND_CUMULATIVE);
    assert_string_equal(out.r[0].device, "dev");
    assert_int_equal(out.r[0].ts_us, 42);
    /* one bad field spoils the frame: no reading at all */
    assert_int_equal(apply(&l, "A=65536 B=1", &out), -EINVAL);
    assert_int_equal(out.n, 0);
    assert_int_equal(apply(&l, "A=1 B=-1", &out), -EINVAL);
    assert_int_equal(apply(&l, "A=1 B=2.0", &out), -EINVAL);
    assert_int_equal(apply(&l, "A=x", &out), -EINVAL);
    assert_int_equal(apply(&l, "C=1", &out), 0); /* nothing mapped in it */
}

static void test_gauge_event_constant(void **state)
{
    (void)state;
    struct mtm_value v[] = {
        {.field = "T", .metric = "temp", .kind = MTM_GAUGE, .scale = 0.1, .unit = "C"},
        {.value = "1", .metric = "frames", .kind = MTM_EVENT, .scale = 1, .device = "other"},
        {.field = "S", .value = "3", .metric = "score", .kind = MTM_EVENT, .scale = 1},
    };
    struct mittari_list l = list_of(v, 3);
    struct mtm_out out;
    assert_int_equal(apply(&l, "T=215", &out), 2);
    assert_true(out.r[0].value > 21.49 && out.r[0].value < 21.51);
    assert_string_equal(out.r[0].unit, "C");
    assert_int_equal(out.r[1].kind, MITTARI_KIND_EVENT);
    assert_string_equal(out.r[1].device, "other");
    /* a constant is given when its field is present, whatever its text */
    assert_int_equal(apply(&l, "S=pressed", &out), 2);
    assert_true(out.r[1].value == 3);
}

static void test_check(void **state)
{
    (void)state;
    char err[200];
    const char *groups[] = {"1", "in"};
    struct mtm_value ok[] = {{.field = "in", .metric = "a", .kind = MTM_DELTA, .scale = 1}};
    struct mittari_list l = list_of(ok, 1);
    assert_int_equal(mtm_check(&l, groups, 2, err, sizeof(err)), 0);
    assert_int_equal(mtm_check(&l, groups, 1, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "values[0]"));
    struct mtm_value bad[] = {
        {.field = "x", .metric = "", .kind = MTM_GAUGE, .scale = 1},
        {.field = "x",
         .metric = "way_too_long_metric_name_that_goes_on_and_on_past_sixty_three_"
                   "bytes",
         .kind = MTM_GAUGE,
         .scale = 1},
        {.metric = "a", .kind = MTM_GAUGE, .scale = 1},
        {.value = "1", .metric = "a", .kind = MTM_CUMULATIVE, .scale = 1},
        {.field = "x", .metric = "a", .kind = MTM_CUMULATIVE, .scale = 10},
        {.field = "x", .value = "1e", .metric = "a", .kind = MTM_EVENT, .scale = 1},
        {.field = "x", .metric = "a", .kind = MTM_GAUGE, .scale = 1, .device = "a/b"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        l = list_of(&bad[i], 1);
        assert_int_equal(mtm_check(&l, NULL, 0, err, sizeof(err)), -EINVAL);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counters),
        cmocka_unit_test(test_gauge_event_constant),
        cmocka_unit_test(test_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
