/* plugins/common/kv.c and fields.c: key=value lines and the number syntax.
 * A line that is partly noise gives nothing, never a wrong value. */
#include "testutil.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include "kv.h"

static int parse(const char *s, struct mtd_fields *fs)
{
    return mtk_parse((const uint8_t *)s, strlen(s), fs);
}

static void test_counter_line(void **state)
{
    (void)state;
    struct mtd_fields fs;
    assert_int_equal(parse("IN=12 OUT=9", &fs), 2);
    assert_string_equal(fs.f[0].name, "IN");
    assert_true(fs.f[0].numeric && fs.f[0].num.is_uint);
    assert_int_equal(fs.f[0].num.counter, 12);
    assert_int_equal(mtd_find(&fs, "OUT")->num.counter, 9);
    assert_null(mtd_find(&fs, "out")); /* keys are case-sensitive */
}

static void test_separators(void **state)
{
    (void)state;
    struct mtd_fields fs;
    assert_int_equal(parse("  in=1;out=2,\tt=21.5 ;\r", &fs), 3);
    assert_true(fabs(mtd_find(&fs, "t")->num.value - 21.5) < 1e-12);
    assert_false(mtd_find(&fs, "t")->num.is_uint);
    assert_int_equal(parse("status=OK door.1-a=3", &fs), 2);
    assert_false(fs.f[0].numeric); /* kept as text; the plugin decides */
    assert_string_equal(fs.f[0].text, "OK");
}

static void test_bad_lines(void **state)
{
    (void)state;
    struct mtd_fields fs;
    const char *bad[] = {"IN",       "IN=",     "=3",       "IN==3",       "IN=1=2",   "I N=3",
                         "IN=1 OUT", "IN=\x01", "IN=1\x7f", "K\xc3\xa4=1", "IN=1 IN=2"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = parse(bad[i], &fs);
        assert_true(rc < 0);
    }
    assert_int_equal(parse("IN=1 IN=2", &fs), -EEXIST);
    assert_int_equal(parse("", &fs), -ENODATA);
    assert_int_equal(parse(" ,; ", &fs), -ENODATA);
    /* a NUL byte inside the line is noise */
    assert_true(mtk_parse((const uint8_t *)"IN=1\0 OUT=2", 11, &fs) < 0);
}

static void test_limits(void **state)
{
    (void)state;
    struct mtd_fields fs;
    char line[2048] = "";
    for (int i = 0; i < MTD_MAX_FIELDS; i++)
        snprintf(line + strlen(line), sizeof(line) - strlen(line), "k%d=%d ", i, i);
    assert_int_equal(parse(line, &fs), MTD_MAX_FIELDS);
    strcat(line, "one=more");
    assert_int_equal(parse(line, &fs), -E2BIG);
    char key[80];
    memset(key, 'k', 64);
    strcpy(key + 64, "=1");
    assert_int_equal(parse(key, &fs), -E2BIG);
}

static void test_numbers(void **state)
{
    (void)state;
    struct mtd_num n;
    const char *good[] = {"0", "007", "-3", "+4", "2.5", ".5", "5.", "1e3", "-1.5E-2", "0x1F"};
    double want[] = {0, 7, -3, 4, 2.5, 0.5, 5, 1000, -0.015, 31};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        assert_int_equal(mtd_number(good[i], strlen(good[i]), &n), 0);
        assert_true(fabs(n.value - want[i]) < 1e-12);
    }
    const char *bad[] = {"",
                         " 1",
                         "1 ",
                         "inf",
                         "nan",
                         "-",
                         ".",
                         "1e",
                         "1e+",
                         "0x",
                         "0x1p3",
                         "1,5",
                         "--1",
                         "1.2.3",
                         "0xG",
                         "1e999",
                         "18446744073709551616"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(mtd_number(bad[i], strlen(bad[i]), &n), -EINVAL);
    /* counters are exact to 64 bits; a double would not be */
    assert_int_equal(mtd_number("18446744073709551615", 20, &n), 0);
    assert_true(n.is_uint);
    assert_true(n.counter == UINT64_MAX);
    assert_int_equal(mtd_number("9007199254740993", 16, &n), 0);
    assert_true(n.counter == 9007199254740993ull);
    assert_int_equal(mtd_number("-1", 2, &n), 0);
    assert_false(n.is_uint);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_line), cmocka_unit_test(test_separators),
        cmocka_unit_test(test_bad_lines),    cmocka_unit_test(test_limits),
        cmocka_unit_test(test_numbers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
