/* status.listen (listen.c): the forms accepted, loopback or not, and the
 * address a local client uses. */
#include "testutil.h"

#include <errno.h>
#include <string.h>

#include "listen.h"

static void parse(const char *s, const char *text, bool loopback)
{
    struct mt_listen l;
    char err[200];
    if (mt_listen_parse(s, &l, err, sizeof(err)))
        fail_msg("%s: %s", s, err);
    assert_string_equal(l.text, text);
    assert_int_equal(l.loopback, loopback);
    assert_false(l.off);
}

static void forms(void **state)
{
    (void)state;
    parse("127.0.0.1:9465", "127.0.0.1:9465", true);
    parse("9465", "127.0.0.1:9465", true);
    parse("127.1.2.3:80", "127.1.2.3:80", true);
    parse("[::1]:9465", "[::1]:9465", true);
    parse("0.0.0.0:9465", "0.0.0.0:9465", false);
    parse("[::]:9465", "[::]:9465", false);
    parse("192.0.2.7:8080", "192.0.2.7:8080", false);
    parse("127.0.0.1:0", "127.0.0.1:0", true);

    struct mt_listen l;
    char err[200];
    assert_int_equal(mt_listen_parse("off", &l, err, sizeof(err)), 0);
    assert_true(l.off);
    const char *bad[] = {"", "localhost:9465", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536",
                         "127.0.0.1:-1", "::1:9465", "[::1]9465", "[::1]:x", "1.2.3:80",
                         "127.0.0.1:94a5", NULL};
    for (size_t i = 0; bad[i]; i++) {
        err[0] = 0;
        if (mt_listen_parse(bad[i], &l, err, sizeof(err)) != -EINVAL)
            fail_msg("'%s' was accepted", bad[i]);
        assert_non_null(strstr(err, "ADDRESS:PORT"));
    }
}

static void client_address(void **state)
{
    (void)state;
    struct mt_listen l, c;
    char err[200];
    assert_int_equal(mt_listen_parse("0.0.0.0:9465", &l, err, sizeof(err)), 0);
    mt_listen_client(&l, &c);
    assert_string_equal(c.text, "127.0.0.1:9465");
    assert_int_equal(mt_listen_parse("[::]:9000", &l, err, sizeof(err)), 0);
    mt_listen_client(&l, &c);
    assert_string_equal(c.text, "[::1]:9000");
    assert_int_equal(mt_listen_parse("192.0.2.7:9000", &l, err, sizeof(err)), 0);
    mt_listen_client(&l, &c);
    assert_string_equal(c.text, "192.0.2.7:9000");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(forms),
        cmocka_unit_test(client_address),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
