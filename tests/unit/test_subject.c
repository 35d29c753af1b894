/* Canonical forms of raw identifiers: one EM4100 card, one pseudonym,
 * whichever reader read it (../shared/DEVICES.md section 4). */
#include "testutil.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

#include "pseudo.h"
#include "subject.h"
#include "util.h"

static uint32_t canon32(const char *space, const void *id, size_t len)
{
    uint8_t out[MT_SUBJECT_MAX];
    const char *cs = NULL;
    size_t n = 0;
    assert_int_equal(mt_subject_canonical(space, id, len, &cs, out, &n), 0);
    assert_string_equal(cs, "em4100");
    assert_int_equal(n, 4);
    return (uint32_t)out[0] << 24 | (uint32_t)out[1] << 16 | (uint32_t)out[2] << 8 | out[3];
}

static int refused(const char *space, const void *id, size_t len)
{
    uint8_t out[MT_SUBJECT_MAX];
    const char *cs;
    size_t n;
    return mt_subject_canonical(space, id, len, &cs, out, &n);
}

#define S(x) (x), strlen(x)

static void em4100_forms_agree(void **s)
{
    (void)s;
    /* the card printed "0013961168 213,02000": low 32 bits 0x00D507D0 */
    const uint8_t bin5[] = {0x1f, 0x00, 0xd5, 0x07, 0xd0}, bin4[] = {0x00, 0xd5, 0x07, 0xd0};
    uint32_t want = 0x00D507D0;
    assert_int_equal(canon32("em4100-dec", S("0013961168")), want);
    assert_int_equal(canon32("em4100-dec", S("0013961168 213,02000")), want);
    assert_int_equal(canon32("em4100-dec", S(" 13961168\r\n")), want);
    assert_int_equal(canon32("em4100-hex", S("1F00D507D0")), want); /* RDM6300: version + id */
    assert_int_equal(canon32("em4100-hex", S("1f00d507d0")), want);
    assert_int_equal(canon32("em4100-hex", S("00D507D0")), want);
    assert_int_equal(canon32("em4100", bin5, 5), want);
    assert_int_equal(canon32("em4100", bin4, 4), want);
    /* DEVICES.md: ID-12LA example card 0C000621A5 */
    assert_int_equal(canon32("em4100-hex", S("0C000621A5")), 0x000621A5u);
}

static void em4100_bad_forms_are_refused(void **s)
{
    (void)s;
    assert_int_equal(refused("em4100-dec", S("0013961168 213,02001")), -EINVAL); /* CN differs */
    assert_int_equal(refused("em4100-dec", S("0013961168 212,02000")), -EINVAL); /* FC differs */
    assert_int_equal(refused("em4100-dec", S("4294967296")), -EINVAL);           /* > 32 bits */
    assert_int_equal(refused("em4100-dec", S("12a4")), -EINVAL);
    assert_int_equal(refused("em4100-dec", S("")), -EINVAL);
    assert_int_equal(refused("em4100-hex", S("0C000621A")), -EINVAL); /* 9 digits */
    assert_int_equal(refused("em4100-hex", S("0C000621AG")), -EINVAL);
    const uint8_t three[] = {1, 2, 3};
    assert_int_equal(refused("em4100", three, 3), -EINVAL);
}

static void wiegand26_vector_and_parity(void **s)
{
    (void)s;
    /* FC 99, CN 999 -> 00110001100000011111001111 = 0x0C607CF */
    const uint8_t w[] = {0x00, 0xc6, 0x07, 0xcf};
    uint8_t out[MT_SUBJECT_MAX];
    const char *cs;
    size_t n;
    assert_int_equal(mt_subject_canonical("wiegand26", w, 4, &cs, out, &n), 0);
    assert_string_equal(cs, "wiegand26");
    assert_int_equal(n, 3);
    assert_int_equal(out[0], 99);
    assert_int_equal(out[1] << 8 | out[2], 999);
    uint8_t text[MT_SUBJECT_MAX];
    size_t tn;
    assert_int_equal(mt_subject_canonical("wiegand26", S("99,999"), &cs, text, &tn), 0);
    assert_int_equal(tn, 3);
    assert_memory_equal(out, text, 3); /* frame and printed form agree */
    const uint8_t even_broken[] = {0x02, 0xc6, 0x07, 0xcf}; /* first parity bit flipped */
    const uint8_t odd_broken[] = {0x00, 0xc6, 0x07, 0xce};  /* last parity bit flipped */
    const uint8_t too_wide[] = {0x04, 0xc6, 0x07, 0xcf};
    assert_int_equal(refused("wiegand26", even_broken, 4), -EINVAL);
    assert_int_equal(refused("wiegand26", odd_broken, 4), -EINVAL);
    assert_int_equal(refused("wiegand26", too_wide, 4), -EINVAL);
    assert_int_equal(refused("wiegand26", S("256,1")), -EINVAL);
    /* text of four bytes is text, not a frame */
    assert_int_equal(mt_subject_canonical("wiegand26", S("1,23"), &cs, text, &tn), 0);
    assert_int_equal(text[0], 1);
    assert_int_equal(text[1] << 8 | text[2], 23);
    assert_int_equal(refused("wiegand26", S("1,65536")), -EINVAL);
}

static void other_spaces_pass_through(void **s)
{
    (void)s;
    uint8_t out[MT_SUBJECT_MAX];
    const char *cs = "x";
    size_t n;
    const uint8_t uid7[] = {4, 1, 2, 3, 4, 5, 6};
    assert_int_equal(mt_subject_canonical("iso14443", uid7, 7, &cs, out, &n), 0);
    assert_null(cs);
    assert_int_equal(n, 7);
    assert_memory_equal(out, uid7, 7);
    assert_int_equal(refused("iso14443", uid7, 5), -EINVAL);
    assert_int_equal(mt_subject_canonical("badge", S("AA:BB"), &cs, out, &n), 0);
    assert_int_equal(n, 5);
    char big[65];
    memset(big, 'x', sizeof(big));
    assert_int_equal(refused("badge", big, 65), -EINVAL);
}

/* The point of it all: the same card read three ways is one pseudonym, and
 * a Wiegand number with the same digits is another. */
static void one_card_one_pseudonym(void **s)
{
    (void)s;
    struct mt_pseudo p;
    char a[MT_SUBJECT_SIZE], b[MT_SUBJECT_SIZE], c[MT_SUBJECT_SIZE], w[MT_SUBJECT_SIZE];
    assert_int_equal(mt_pseudo_init(&p, "0123456789abcdef0123456789abcdef"), 0);
    assert_int_equal(mt_pseudo_subject(&p, "em4100-hex", S("1F00D507D0"), 0, a), 0);
    assert_int_equal(mt_pseudo_subject(&p, "em4100-dec", S("0013961168"), 0, b), 0);
    assert_int_equal(mt_pseudo_subject(&p, "em4100-dec", S("0013961168 213,02000"), 0, c), 0);
    assert_int_equal(mt_pseudo_subject(&p, "wiegand26", S("213,2000"), 0, w), 0);
    assert_string_equal(a, b);
    assert_string_equal(a, c);
    assert_string_not_equal(a, w);
    assert_int_equal(mt_pseudo_subject(&p, "em4100-hex", S("nonsense"), 0, a), -EINVAL);
    mt_pseudo_free(&p);
}

static void rotation_changes_the_key_per_local_period(void **s)
{
    (void)s;
    struct mt_pseudo p;
    char a[MT_SUBJECT_SIZE], b[MT_SUBJECT_SIZE], c[MT_SUBJECT_SIZE], n0[MT_SUBJECT_SIZE];
    setenv("TZ", "Europe/Helsinki", 1);
    tzset();
    /* 2026-10-31 23:30 and 2026-11-01 00:30 Helsinki (UTC+2 after 25.10) */
    int64_t oct31 = 1793482200LL * 1000000, nov1 = 1793485800LL * 1000000;
    int64_t nov29 = 1795903200LL * 1000000;
    assert_int_equal(mt_pseudo_init(&p, "0123456789abcdef0123456789abcdef"), 0);
    assert_int_equal(mt_pseudo_subject(&p, "em4100-dec", S("42"), oct31, n0), 0);
    mt_pseudo_set_rotation(&p, MT_ROTATE_MONTHLY);
    assert_int_equal(mt_pseudo_subject(&p, "em4100-dec", S("42"), oct31, a), 0);
    assert_int_equal(mt_pseudo_subject(&p, "em4100-dec", S("42"), nov1, b), 0);
    assert_int_equal(mt_pseudo_subject(&p, "em4100-dec", S("42"), nov29, c), 0);
    assert_string_not_equal(a, b); /* an hour apart, but in two local months */
    assert_string_equal(b, c);     /* the same month */
    assert_string_not_equal(a, n0); /* a period key is not the master key */
    /* back and forth between periods uses the cached states consistently */
    char again[MT_SUBJECT_SIZE];
    assert_int_equal(mt_pseudo_subject(&p, "em4100-dec", S("42"), oct31, again), 0);
    assert_string_equal(again, a);
    mt_pseudo_set_rotation(&p, MT_ROTATE_NONE);
    assert_int_equal(mt_pseudo_subject(&p, "em4100-dec", S("42"), nov29, c), 0);
    assert_string_equal(c, n0);
    mt_pseudo_free(&p);
}

/* A Bluetooth address as 6 bytes or as BlueZ's text, either case or
 * separator, is one identifier in space "ble" (issue 12). */
static void ble_address_forms_agree(void **s)
{
    (void)s;
    const uint8_t raw[6] = {0xC4, 0x7A, 0x0B, 0x11, 0x22, 0xF3};
    const char *texts[] = {"C4:7A:0B:11:22:F3", "c4:7a:0b:11:22:f3", "C4-7A-0B-11-22-F3"};
    uint8_t out[MT_SUBJECT_MAX];
    const char *cs = NULL;
    size_t n = 0;
    assert_int_equal(mt_subject_canonical("ble", raw, 6, &cs, out, &n), 0);
    assert_string_equal(cs, "ble");
    assert_int_equal(n, 6);
    assert_memory_equal(out, raw, 6);
    for (size_t i = 0; i < MT_ARRAY_SIZE(texts); i++) {
        memset(out, 0, sizeof(out));
        assert_int_equal(mt_subject_canonical("ble", S(texts[i]), &cs, out, &n), 0);
        assert_string_equal(cs, "ble");
        assert_int_equal(n, 6);
        assert_memory_equal(out, raw, 6);
    }
    const char *bad[] = {"C4:7A:0B:11:22:F", "C4:7A:0B:11:22:F3:", "C4:7A-0B:11:22:F3",
                         "C4:7A:0B:11:22:G3", "C4.7A.0B.11.22.F3", "C47A0B1122F3"};
    for (size_t i = 0; i < MT_ARRAY_SIZE(bad); i++)
        assert_int_equal(refused("ble", S(bad[i])), -EINVAL);
    assert_int_equal(refused("ble", raw, 5), -EINVAL);
    assert_int_equal(refused("ble", raw, 0), -EINVAL);
    assert_true(mt_subject_daily("ble"));
    assert_false(mt_subject_daily("em4100"));
    assert_false(mt_subject_daily(NULL));
}

/* HMAC(HMAC(key, "mittari-period" 0 day), "ble" 0 address): the documented
 * construction, computed with OpenSSL. */
static void ble_reference(const char *key, const char *day, const uint8_t addr[6],
                          char out[MT_SUBJECT_SIZE])
{
    uint8_t msg[64], pkey[EVP_MAX_MD_SIZE], mac[EVP_MAX_MD_SIZE];
    unsigned plen = 0, maclen = 0;
    memcpy(msg, "mittari-period", 15); /* with its NUL */
    memcpy(msg + 15, day, strlen(day));
    assert_non_null(HMAC(EVP_sha256(), key, (int)strlen(key), msg, 15 + strlen(day), pkey, &plen));
    memcpy(msg, "ble", 4);
    memcpy(msg + 4, addr, 6);
    assert_non_null(HMAC(EVP_sha256(), pkey, (int)plen, msg, 10, mac, &maclen));
    mt_base64url(mac, 16, out, MT_SUBJECT_SIZE);
}

/* Device addresses get the local day's key whatever the configured
 * rotation: across midnight and across the 23-hour day DST begins on
 * (Helsinki, 2026-03-29), and the card spaces keep their own rotation
 * while the two share the period cache. */
static void ble_pseudonyms_change_every_local_day(void **s)
{
    (void)s;
    const char *key = "0123456789abcdef0123456789abcdef";
    const uint8_t addr[6] = {0x5A, 0x01, 0x02, 0x03, 0x04, 0x05};
    int64_t sat2330 = 1774733400LL * 1000000, sun0030 = 1774737000LL * 1000000;
    int64_t sun0259 = 1774745940LL * 1000000, sun0400 = 1774746000LL * 1000000;
    int64_t sun2330 = 1774816200LL * 1000000, mon0010 = 1774818600LL * 1000000;
    char a[MT_SUBJECT_SIZE], b[MT_SUBJECT_SIZE], c[MT_SUBJECT_SIZE], d[MT_SUBJECT_SIZE];
    char e[MT_SUBJECT_SIZE], want[MT_SUBJECT_SIZE], card1[MT_SUBJECT_SIZE], card2[MT_SUBJECT_SIZE];
    struct mt_pseudo p;

    setenv("TZ", "Europe/Helsinki", 1);
    tzset();
    assert_int_equal(mt_pseudo_init(&p, key), 0);
    for (int rot = MT_ROTATE_NONE; rot <= MT_ROTATE_YEARLY; rot++) {
        mt_pseudo_set_rotation(&p, rot);
        assert_int_equal(mt_pseudo_subject(&p, "ble", addr, 6, sat2330, a), 0);
        assert_int_equal(mt_pseudo_subject(&p, "em4100-dec", S("42"), sat2330, card1), 0);
        assert_int_equal(mt_pseudo_subject(&p, "ble", S("5a:01:02:03:04:05"), sun0030, b), 0);
        assert_int_equal(mt_pseudo_subject(&p, "ble", addr, 6, sun0259, c), 0);
        assert_int_equal(mt_pseudo_subject(&p, "em4100-dec", S("42"), sun0030, card2), 0);
        assert_int_equal(mt_pseudo_subject(&p, "ble", addr, 6, sun2330, d), 0);
        assert_int_equal(mt_pseudo_subject(&p, "ble", addr, 6, mon0010, e), 0);
        assert_string_not_equal(a, b); /* an hour apart, two local days */
        assert_string_equal(b, c);
        assert_string_equal(b, d); /* the whole 23-hour day */
        assert_string_not_equal(d, e);
        ble_reference(key, "2026-03-28", addr, want);
        assert_string_equal(a, want);
        ble_reference(key, "2026-03-29", addr, want);
        assert_string_equal(b, want);
        ble_reference(key, "2026-03-30", addr, want);
        assert_string_equal(e, want);
        /* cards keep the configured rotation: none, weekly (Sat and Sun are one
         * ISO week), monthly, yearly all keep one pseudonym over this midnight */
        assert_string_equal(card1, card2);
        assert_int_equal(mt_pseudo_subject(&p, "ble", addr, 6, sun0400, c), 0);
        assert_string_equal(b, c);
    }
    mt_pseudo_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(em4100_forms_agree),
        cmocka_unit_test(em4100_bad_forms_are_refused),
        cmocka_unit_test(wiegand26_vector_and_parity),
        cmocka_unit_test(other_spaces_pass_through),
        cmocka_unit_test(one_card_one_pseudonym),
        cmocka_unit_test(rotation_changes_the_key_per_local_period),
        cmocka_unit_test(ble_address_forms_agree),
        cmocka_unit_test(ble_pseudonyms_change_every_local_day),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
