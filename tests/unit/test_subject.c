/* Canonical forms of raw identifiers: one EM4100 card, one pseudonym,
 * whichever reader read it (../shared/DEVICES.md section 4). */
#include "testutil.h"

#include <errno.h>
#include <string.h>

#include "pseudo.h"
#include "subject.h"

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
    assert_int_equal(mt_subject_canonical("ble", S("AA:BB"), &cs, out, &n), 0);
    assert_int_equal(n, 5);
    char big[65];
    memset(big, 'x', sizeof(big));
    assert_int_equal(refused("ble", big, 65), -EINVAL);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(em4100_forms_agree),
        cmocka_unit_test(em4100_bad_forms_are_refused),
        cmocka_unit_test(wiegand26_vector_and_parity),
        cmocka_unit_test(other_spaces_pass_through),
        cmocka_unit_test(one_card_one_pseudonym),
        cmocka_unit_test(rotation_changes_the_key_per_local_period),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
