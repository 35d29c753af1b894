/* Modbus TCP framing (plugins/modbus/mbap.c): the requests the plugin
 * sends, byte for byte (Modbus Messaging on TCP/IP Implementation Guide
 * 1.0b, 3.1.3; Modbus Application Protocol 1.1b3, 6.1-6.6, 7), and every way
 * an answer can fail to match its request. libmodbus's server answers the
 * same framing in test_modbus_link. */
#include "testutil.h"

#include <string.h>

#include "mbap.h"

static const struct mbt_req read_hr = {.tid = 0x1234, .unit = 1, .fn = 3, .addr = 0x10, .arg = 2};

static void request_bytes(void **st)
{
    (void)st;
    uint8_t b[MBT_REQ_LEN];
    static const uint8_t want[] = {0x12, 0x34, 0, 0, 0, 6, 1, 3, 0, 0x10, 0, 2};
    mbt_build(&read_hr, b);
    assert_memory_equal(b, want, sizeof(want));
    struct mbt_req coil = {.tid = 7, .unit = 255, .fn = 5, .addr = 0xABCD, .arg = 0xFF00};
    static const uint8_t want5[] = {0, 7, 0, 0, 0, 6, 255, 5, 0xAB, 0xCD, 0xFF, 0};
    mbt_build(&coil, b);
    assert_memory_equal(b, want5, sizeof(want5));
}

static void registers_in_pieces(void **st)
{
    (void)st;
    static const uint8_t rsp[] = {0x12, 0x34, 0, 0, 0, 7, 1, 3, 4, 0xDE, 0xAD, 0xBE, 0xEF};
    uint16_t w[2];
    struct mbt_rsp r;
    /* any prefix is "more" */
    for (size_t n = 0; n < sizeof(rsp); n++)
        assert_int_equal(mbt_parse(&read_hr, rsp, n, &r, w, NULL), MBT_MORE);
    assert_int_equal(mbt_parse(&read_hr, rsp, sizeof(rsp), &r, w, NULL), MBT_OK);
    assert_int_equal(w[0], 0xDEAD);
    assert_int_equal(w[1], 0xBEEF);
    /* the unit id is not compared (devices answer 0, 1 or 255) */
    uint8_t other[sizeof(rsp)];
    memcpy(other, rsp, sizeof(rsp));
    other[6] = 255;
    assert_int_equal(mbt_parse(&read_hr, other, sizeof(other), &r, w, NULL), MBT_OK);
}

static void bits_unpacked(void **st)
{
    (void)st;
    struct mbt_req q = {.tid = 1, .unit = 1, .fn = 2, .addr = 0, .arg = 10};
    static const uint8_t rsp[] = {0, 1, 0, 0, 0, 5, 1, 2, 2, 0xA5, 0x02};
    uint8_t b[10];
    struct mbt_rsp r;
    assert_int_equal(mbt_parse(&q, rsp, sizeof(rsp), &r, NULL, b), MBT_OK);
    static const uint8_t want[] = {1, 0, 1, 0, 0, 1, 0, 1, 0, 1};
    assert_memory_equal(b, want, sizeof(want));
}

static void exceptions_any_code(void **st)
{
    (void)st;
    struct mbt_rsp r;
    uint8_t rsp[] = {0x12, 0x34, 0, 0, 0, 3, 1, 0x83, 2};
    assert_int_equal(mbt_parse(&read_hr, rsp, sizeof(rsp), &r, NULL, NULL), MBT_EXCEPTION);
    assert_int_equal(r.exception, 2);
    rsp[8] = 0; /* issue 15, item 10: code 0 is an exception like any other */
    assert_int_equal(mbt_parse(&read_hr, rsp, sizeof(rsp), &r, NULL, NULL), MBT_EXCEPTION);
    assert_int_equal(r.exception, 0);
    assert_string_equal(mbt_exception_name(0), "unknown");
    assert_string_equal(mbt_exception_name(2), "illegal data address");
    assert_string_equal(mbt_exception_name(200), "unknown");
}

static void writes_must_echo(void **st)
{
    (void)st;
    struct mbt_req q = {.tid = 9, .unit = 1, .fn = 6, .addr = 3, .arg = 0x0102};
    uint8_t rsp[MBT_REQ_LEN];
    struct mbt_rsp r;
    mbt_build(&q, rsp);
    assert_int_equal(mbt_parse(&q, rsp, sizeof(rsp), &r, NULL, NULL), MBT_OK);
    rsp[11] ^= 1;
    assert_int_equal(mbt_parse(&q, rsp, sizeof(rsp), &r, NULL, NULL), MBT_BAD);
    assert_string_equal(r.bad, "the write was not echoed");
}

/* each damage of a good answer, and what is said about it */
static void bad_answers(void **st)
{
    (void)st;
    static const uint8_t good[] = {0x12, 0x34, 0, 0, 0, 7, 1, 3, 4, 0, 1, 0, 2};
    static const struct {
        size_t at;
        uint8_t value;
        const char *why;
    } cases[] = {
        {1, 0x35, "wrong transaction id"},
        {3, 1, "not Modbus (protocol id)"},
        {5, 1, "bad length"},
        {5, 0, "bad length"},
        {4, 1, "bad length"}, /* 263 bytes would follow: more than an ADU */
        {7, 4, "wrong function code"},
        {8, 2, "wrong byte count"},
    };
    uint8_t b[sizeof(good) + 1];
    struct mbt_rsp r;
    uint16_t w[2];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memcpy(b, good, sizeof(good));
        b[cases[i].at] = cases[i].value;
        assert_int_equal(mbt_parse(&read_hr, b, sizeof(good), &r, w, NULL), MBT_BAD);
        assert_string_equal(r.bad, cases[i].why);
    }
    /* a byte more than one answer: nothing else may come with it */
    memcpy(b, good, sizeof(good));
    b[sizeof(good)] = 0;
    assert_int_equal(mbt_parse(&read_hr, b, sizeof(good) + 1, &r, w, NULL), MBT_BAD);
    /* an exception of the wrong length */
    static const uint8_t exc[] = {0x12, 0x34, 0, 0, 0, 4, 1, 0x83, 2, 0};
    assert_int_equal(mbt_parse(&read_hr, exc, sizeof(exc), &r, w, NULL), MBT_BAD);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(request_bytes),    cmocka_unit_test(registers_in_pieces),
        cmocka_unit_test(bits_unpacked),    cmocka_unit_test(exceptions_any_code),
        cmocka_unit_test(writes_must_echo), cmocka_unit_test(bad_answers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
