/* EM4100 serial frames (plugins/cardreader/em4100.c): RDM6300 and ID-12LA
 * bodies, the datasheet checksum vector, and everything that must not
 * decode. */
#include "testutil.h"

#include <errno.h>
#include <string.h>

#include "em4100.h"

static int decode(const char *body, uint8_t out[CR_EM4100_LEN])
{
    return cr_em4100_decode((const uint8_t *)body, strlen(body), out);
}

/* ID-Innovations datasheet: "0C000621A5" has checksum "8E" (the prose
 * misprints 6E; DEVICES.md section 4). */
static void datasheet_vector(void **s)
{
    (void)s;
    const uint8_t data[CR_EM4100_LEN] = {0x0C, 0x00, 0x06, 0x21, 0xA5};
    uint8_t out[CR_EM4100_LEN] = {0};

    assert_int_equal(cr_em4100_checksum(data), 0x8E);
    assert_int_equal(decode("0C000621A58E", out), 0);
    assert_memory_equal(out, data, CR_EM4100_LEN);
    assert_int_equal(decode("0C000621A56E", out), -EBADMSG);
}

static void rdm6300_frame(void **s)
{
    (void)s;
    uint8_t out[CR_EM4100_LEN] = {0};
    const uint8_t want[CR_EM4100_LEN] = {0x01, 0x00, 0xD5, 0x07, 0xD0};

    /* 01^00^D5^07^D0 = 03 */
    assert_int_equal(decode("0100D507D003", out), 0);
    assert_memory_equal(out, want, CR_EM4100_LEN);
}

static void id12la_frame_ends_in_crlf(void **s)
{
    (void)s;
    uint8_t out[CR_EM4100_LEN] = {0};
    const uint8_t want[CR_EM4100_LEN] = {0x01, 0x00, 0xD5, 0x07, 0xD0};

    assert_int_equal(decode("0100D507D003\r\n", out), 0);
    assert_memory_equal(out, want, CR_EM4100_LEN);
    /* 14 bytes that do not end in CR LF are not an ID-12LA frame */
    assert_int_equal(decode("0100D507D003\n\r", out), -EINVAL);
    assert_int_equal(decode("0100D507D00300", out), -EINVAL);
}

static void lower_case_hex(void **s)
{
    (void)s;
    uint8_t out[CR_EM4100_LEN] = {0};
    assert_int_equal(decode("0c000621a58e", out), 0);
    assert_int_equal(out[4], 0xA5);
}

static void bad_checksum_leaves_out_alone(void **s)
{
    (void)s;
    uint8_t out[CR_EM4100_LEN] = {7, 7, 7, 7, 7};
    const uint8_t untouched[CR_EM4100_LEN] = {7, 7, 7, 7, 7};

    assert_int_equal(decode("0100D507D004", out), -EBADMSG);
    assert_memory_equal(out, untouched, CR_EM4100_LEN);
    /* one flipped bit anywhere in the data is caught */
    assert_int_equal(decode("0100D507D103", out), -EBADMSG);
}

static void not_frames(void **s)
{
    (void)s;
    uint8_t out[CR_EM4100_LEN];
    const char *bad[] = {"",
                         "0100D507D0",        /* no checksum */
                         "0100D507D0030",     /* 13 */
                         "0100D507D003\r\n0", /* 15 */
                         "0100D5G7D003",      /* not hex */
                         "0100D5 7D003",      /* a blank */
                         "+100D507D003",
                         "0100D507D003\r\r"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(decode(bad[i], out), -EINVAL);
    assert_int_equal(cr_em4100_decode(NULL, 12, out), -EINVAL);
    const uint8_t nul[12] = {0};
    assert_int_equal(cr_em4100_decode(nul, sizeof(nul), out), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(datasheet_vector),
        cmocka_unit_test(rdm6300_frame),
        cmocka_unit_test(id12la_frame_ends_in_crlf),
        cmocka_unit_test(lower_case_hex),
        cmocka_unit_test(bad_checksum_leaves_out_alone),
        cmocka_unit_test(not_frames),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
