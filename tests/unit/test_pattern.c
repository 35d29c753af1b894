/* plugins/common/pattern.c: whole-frame POSIX patterns, numbered and named
 * groups, refused constructs. */
#include "testutil.h"

#include <errno.h>
#include <string.h>

#include "pattern.h"

static struct mtp_pattern *compile(const char *re)
{
    struct mtp_pattern *p;
    char err[200];
    int rc = mtp_compile(&p, re, err, sizeof(err));
    if (rc)
        fail_msg("%s: %s", re, err);
    return p;
}

static int match(struct mtp_pattern *p, const char *s, struct mtd_fields *fs)
{
    return mtp_match(p, (const uint8_t *)s, strlen(s), fs);
}

static void test_numbered_groups(void **state)
{
    (void)state;
    struct mtp_pattern *p = compile("C1:([0-9]+) C2:([0-9]+)");
    struct mtd_fields fs;
    assert_int_equal(mtp_groups(p), 2);
    assert_int_equal(match(p, "C1:0012 C2:0003", &fs), 2);
    assert_string_equal(fs.f[0].name, "1");
    assert_int_equal(fs.f[0].num.counter, 12);
    assert_int_equal(mtd_find(&fs, "2")->num.counter, 3);
    mtp_free(p);
}

static void test_whole_frame(void **state)
{
    (void)state;
    /* implicitly anchored, also with a top-level alternation */
    struct mtp_pattern *p = compile("IN|OUT");
    struct mtd_fields fs;
    assert_int_equal(match(p, "IN", &fs), 0);
    assert_int_equal(match(p, "OUT", &fs), 0);
    assert_int_equal(match(p, "INSIDE", &fs), -ENOENT);
    assert_int_equal(match(p, "XOUT", &fs), -ENOENT);
    assert_int_equal(match(p, "", &fs), -ENOENT);
    mtp_free(p);
}

static void test_named_groups(void **state)
{
    (void)state;
    struct mtp_pattern *p = compile("^(?<in>[0-9]+);(x)?(?<out>[0-9]+)$");
    struct mtd_fields fs;
    assert_int_equal(mtp_groups(p), 3);
    assert_string_equal(mtp_group_name(p, 1), "in");
    assert_string_equal(mtp_group_name(p, 2), "2");
    assert_string_equal(mtp_group_name(p, 3), "out");
    assert_null(mtp_group_name(p, 4));
    assert_int_equal(match(p, "12;9", &fs), 2); /* group 2 did not take part */
    assert_int_equal(mtd_find(&fs, "in")->num.counter, 12);
    assert_int_equal(mtd_find(&fs, "out")->num.counter, 9);
    assert_null(mtd_find(&fs, "2"));
    assert_int_equal(match(p, "12;x9", &fs), 3);
    mtp_free(p);
}

static void test_brackets_and_escapes(void **state)
{
    (void)state;
    /* parentheses inside a bracket expression or escaped are no groups */
    struct mtp_pattern *p = compile("[]()[:digit:]]+\\((?<v>[[:digit:].]+)\\)");
    struct mtd_fields fs;
    assert_int_equal(mtp_groups(p), 1);
    assert_int_equal(match(p, "]()1(2.5)", &fs), 1);
    assert_string_equal(fs.f[0].text, "2.5");
    mtp_free(p);
}

static void test_binary_frame(void **state)
{
    (void)state;
    struct mtp_pattern *p = compile("A(.*)B");
    struct mtd_fields fs;
    /* a NUL byte in a frame is noise: no match, also where it would end
     * a C string early */
    assert_int_equal(mtp_match(p, (const uint8_t *)"AxB\0", 4, &fs), -ENOENT);
    assert_int_equal(mtp_match(p, (const uint8_t *)"A\0B", 3, &fs), -ENOENT);
    assert_int_equal(mtp_match(p, (const uint8_t *)"AxB", 3, &fs), 1);
    /* the frame need not be NUL-terminated */
    assert_int_equal(mtp_match(p, (const uint8_t *)"AxBC", 3, &fs), 1);
    /* a group longer than a field can hold */
    char big[200];
    memset(big, 'x', sizeof(big));
    big[0] = 'A';
    big[199] = 'B';
    assert_int_equal(mtp_match(p, (const uint8_t *)big, sizeof(big), &fs), -E2BIG);
    mtp_free(p);
}

static void test_refused(void **state)
{
    (void)state;
    const char *bad[] = {"(a)\\1", "(?:a)",      "(?<1x>a)", "(?<a>x)(?<a>y)",
                         "(?<a",   "a)|(b",      "(a",       "[abc",
                         "a\\",    "[[:alpha:]", "a{2,1}",   "*a",
                         "a++",    "a*{2}",      "a{2}?",    "a{2"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct mtp_pattern *p = (void *)1;
        char err[200] = "";
        int rc = mtp_compile(&p, bad[i], err, sizeof(err));
        if (rc == 0)
            fail_msg("accepted: %s", bad[i]);
        assert_null(p);
        assert_true(err[0] != 0);
    }
    char many[200] = "";
    for (int i = 0; i <= MTP_MAX_GROUPS; i++)
        strcat(many, "(a)");
    struct mtp_pattern *p;
    char err[200];
    assert_int_equal(mtp_compile(&p, many, err, sizeof(err)), -E2BIG);
}

static void test_rewrite(void **state)
{
    (void)state;
    char out[100], names[MTP_MAX_GROUPS][MTP_NAME_MAX], err[100];
    size_t n;
    assert_int_equal(mtp_rewrite("(?<a>x)|y", out, sizeof(out), names, &n, err, sizeof(err)), 0);
    assert_string_equal(out, "^((x)|y)$");
    assert_int_equal(n, 1);
    assert_string_equal(names[0], "a");
    assert_int_equal(mtp_rewrite("abcdef", out, 8, names, &n, err, sizeof(err)), -E2BIG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_numbered_groups), cmocka_unit_test(test_whole_frame),
        cmocka_unit_test(test_named_groups),    cmocka_unit_test(test_brackets_and_escapes),
        cmocka_unit_test(test_binary_frame),    cmocka_unit_test(test_refused),
        cmocka_unit_test(test_rewrite),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
