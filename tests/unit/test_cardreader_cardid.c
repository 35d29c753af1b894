/* Text card numbers (plugins/cardreader/cardid.c): each id_format accepts
 * its forms, names the agent's subject space, and refuses the rest. */
#include "testutil.h"

#include <errno.h>
#include <string.h>

#include "cardid.h"

static int parse(int fmt, const char *text, struct cr_subject *out)
{
    return cr_cardid_parse(fmt, text, strlen(text), out);
}

static void expect_text(int fmt, const char *text, const char *id, const char *space)
{
    struct cr_subject s;
    assert_int_equal(parse(fmt, text, &s), 0);
    assert_int_equal(s.len, strlen(id));
    assert_memory_equal(s.id, id, s.len);
    assert_string_equal(s.space, space);
}

static void expect_bad(int fmt, const char *text)
{
    struct cr_subject s;
    memset(&s, 'x', sizeof(s));
    if (parse(fmt, text, &s) != -EINVAL)
        fail_msg("'%s' accepted as %s", text, cr_idfmt_names[fmt]);
    assert_int_equal(s.len, 0); /* wiped */
    assert_null(s.space);
}

static void em4100_dec(void **st)
{
    (void)st;
    expect_text(CR_ID_EM4100_DEC, "0013961168", "0013961168", "em4100-dec");
    expect_text(CR_ID_EM4100_DEC, "  0013961168\r\n", "0013961168", "em4100-dec");
    expect_text(CR_ID_EM4100_DEC, "4294967295", "4294967295", "em4100-dec");
    /* issue 9: 10 digits, as the help says; 8 are wiegand26's FFFCCCCC */
    expect_bad(CR_ID_EM4100_DEC, "7");
    expect_bad(CR_ID_EM4100_DEC, "13961168");
    expect_bad(CR_ID_EM4100_DEC, "013961168");
    expect_bad(CR_ID_EM4100_DEC, "13961168 213,02000");
    /* the card print: FC and CN must agree with the number (0x00D507D0) */
    expect_text(CR_ID_EM4100_DEC, "0013961168 213,02000", "0013961168 213,02000", "em4100-dec");
    expect_bad(CR_ID_EM4100_DEC, "0013961168 213,02001");
    expect_bad(CR_ID_EM4100_DEC, "0013961168 214,02000");
    expect_bad(CR_ID_EM4100_DEC, "4294967296");  /* over 32 bits */
    expect_bad(CR_ID_EM4100_DEC, "00013961168"); /* 11 digits */
    expect_bad(CR_ID_EM4100_DEC, "");
    expect_bad(CR_ID_EM4100_DEC, "12a4");
    expect_bad(CR_ID_EM4100_DEC, "0013961168,213,02000");
    expect_bad(CR_ID_EM4100_DEC, "0013961168 213,");
    expect_bad(CR_ID_EM4100_DEC, "-13961168");
}

static void em4100_hex(void **st)
{
    (void)st;
    expect_text(CR_ID_EM4100_HEX, "0100D507D0", "0100D507D0", "em4100-hex");
    expect_text(CR_ID_EM4100_HEX, "00d507d0", "00d507d0", "em4100-hex");
    expect_bad(CR_ID_EM4100_HEX, "0100D507D");    /* 9 */
    expect_bad(CR_ID_EM4100_HEX, "0100D507D003"); /* with checksum: not a bare id */
    expect_bad(CR_ID_EM4100_HEX, "0100D5O7D0");
}

static void wiegand26(void **st)
{
    (void)st;
    /* one written form whatever the reader typed: never four bytes the agent
     * could take for a binary frame */
    expect_text(CR_ID_WIEGAND26, "213,02000", "213,02000", "wiegand26");
    expect_text(CR_ID_WIEGAND26, "213,2000", "213,02000", "wiegand26");
    expect_text(CR_ID_WIEGAND26, "1,23", "001,00023", "wiegand26");
    expect_text(CR_ID_WIEGAND26, "21302000", "213,02000", "wiegand26");
    expect_bad(CR_ID_WIEGAND26, "256,1");
    expect_bad(CR_ID_WIEGAND26, "1,65536");
    expect_bad(CR_ID_WIEGAND26, "25665536"); /* 8 digits, FC 256 */
    expect_bad(CR_ID_WIEGAND26, "21365536"); /* 8 digits, CN 65536 */
    expect_bad(CR_ID_WIEGAND26, "2130200");
    expect_bad(CR_ID_WIEGAND26, "213 02000");
    expect_bad(CR_ID_WIEGAND26, ",1");
}

static void uid_hex(void **st)
{
    (void)st;
    struct cr_subject s;
    const uint8_t seven[] = {0x04, 0xA2, 0xB3, 0xC4, 0xD5, 0xE6, 0x80};

    assert_int_equal(parse(CR_ID_UID_HEX, "04A2B3C4D5E680", &s), 0);
    assert_int_equal(s.len, 7);
    assert_memory_equal(s.id, seven, 7);
    assert_string_equal(s.space, "iso14443");
    assert_int_equal(parse(CR_ID_UID_HEX, "04:a2:b3:c4:d5:e6:80", &s), 0);
    assert_memory_equal(s.id, seven, 7);
    assert_int_equal(parse(CR_ID_UID_HEX, "DE-AD-BE-EF", &s), 0);
    assert_int_equal(s.len, 4);
    assert_int_equal(parse(CR_ID_UID_HEX, "00 11 22 33 44 55 66 77 88 99", &s), 0);
    assert_int_equal(s.len, 10);
    expect_bad(CR_ID_UID_HEX, "DEADBE");       /* 3 bytes */
    expect_bad(CR_ID_UID_HEX, "DEADBEEF00");   /* 5 bytes */
    expect_bad(CR_ID_UID_HEX, "DEADBEEF0");    /* odd */
    expect_bad(CR_ID_UID_HEX, "DE::AD:BE:EF"); /* two separators */
    expect_bad(CR_ID_UID_HEX, "DE:AD:BE:EF:");
    expect_bad(CR_ID_UID_HEX, "D:EA:DB:EEF");
}

static void text(void **st)
{
    (void)st;
    char long_[66];
    expect_text(CR_ID_TEXT, "LIB-000123", "LIB-000123", "card");
    expect_text(CR_ID_TEXT, " a b \n", "a b", "card");
    memset(long_, 'A', 65);
    long_[65] = 0;
    expect_bad(CR_ID_TEXT, long_);
    long_[64] = 0;
    expect_text(CR_ID_TEXT, long_, long_, "card");
    expect_bad(CR_ID_TEXT, "abc\001");
    expect_bad(CR_ID_TEXT, "caf\xc3\xa9");
    expect_bad(CR_ID_TEXT, "   ");
}

static void unknown_format_and_null(void **st)
{
    (void)st;
    struct cr_subject s;
    assert_int_equal(cr_cardid_parse(99, "1234", 4, &s), -EINVAL);
    assert_int_equal(cr_cardid_parse(CR_ID_TEXT, NULL, 0, &s), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(em4100_dec), cmocka_unit_test(em4100_hex),
        cmocka_unit_test(wiegand26),  cmocka_unit_test(uid_hex),
        cmocka_unit_test(text),       cmocka_unit_test(unknown_format_and_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
