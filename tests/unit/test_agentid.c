/* The default agent id: stable for one machine id, different for another,
 * never the machine id itself, and the host name when there is none. */
#include "testutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agentid.h"

static char *write_file(const char *dir, const char *name, const char *text)
{
    char *p = tu_path(dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return p;
}

static void same_machine_same_id(void **s)
{
    (void)s;
    char *dir = tu_tmpdir();
    char *a = write_file(dir, "a", "3d1219c7c4c5404aaa1f6d2a48adfda4\n");
    char *b = write_file(dir, "b", "3d1219c7c4c5404aaa1f6d2a48adfda4\n");
    char *c = write_file(dir, "c", "0123456789abcdef0123456789abcdef\n");
    char ia[64], ib[64], ic[64];
    assert_int_equal(mt_agent_id_from(a, ia, sizeof(ia)), 0);
    assert_int_equal(mt_agent_id_from(b, ib, sizeof(ib)), 0);
    assert_int_equal(mt_agent_id_from(c, ic, sizeof(ic)), 0);
    assert_string_equal(ia, ib);
    assert_string_not_equal(ia, ic);
    /* "mt-" and 16 hex digits, not the machine id */
    assert_int_equal(strlen(ia), 19);
    assert_memory_equal(ia, "mt-", 3);
    assert_null(strstr("3d1219c7c4c5404aaa1f6d2a48adfda4", ia + 3));
    for (int i = 3; i < 19; i++)
        assert_non_null(strchr("0123456789abcdef", ia[i]));
    tu_rmtree(dir);
    free(a);
    free(b);
    free(c);
    free(dir);
}

static void no_machine_id(void **s)
{
    (void)s;
    char *dir = tu_tmpdir();
    char *bad = write_file(dir, "bad", "not a machine id\n");
    char *missing = tu_path(dir, "missing");
    char id[64];
    assert_int_equal(mt_agent_id_from(bad, id, sizeof(id)), -EINVAL);
    assert_int_equal(mt_agent_id_from(missing, id, sizeof(id)), -ENOENT);
    /* the default is always a valid agent id */
    mt_agent_default_id(id, sizeof(id));
    assert_true(strlen(id) > 0 && strlen(id) <= 63);
    assert_null(strchr(id, '/'));
    tu_rmtree(dir);
    free(bad);
    free(missing);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(same_machine_same_id),
        cmocka_unit_test(no_machine_id),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
