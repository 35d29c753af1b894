/* Keyboard-wedge key events to card text (plugins/cardreader/hidkeys.c). */
#include "testutil.h"

#include <linux/input-event-codes.h>
#include <string.h>

#include "hidkeys.h"

#define GAP_US 500000

/* A press and a release of code, SYN after each, like a reader sends. */
static int key(struct cr_keys *k, uint16_t code, int64_t *t)
{
    int r = cr_keys_feed(k, EV_MSC, MSC_SCAN, 0x7001e, *t);
    assert_int_equal(r, CR_KEYS_NONE); /* scan codes are not keys */
    r = cr_keys_feed(k, EV_KEY, code, 1, *t);
    assert_int_equal(cr_keys_feed(k, EV_SYN, SYN_REPORT, 0, *t), CR_KEYS_NONE);
    *t += 8000;
    assert_int_equal(cr_keys_feed(k, EV_KEY, code, 0, *t), CR_KEYS_NONE);
    *t += 8000;
    return r;
}

static uint16_t digit_code(char c)
{
    return c == '0' ? KEY_0 : (uint16_t)(KEY_1 + (c - '1'));
}

/* Types digits and Enter; returns the result of Enter. */
static int type_digits(struct cr_keys *k, const char *digits, int64_t *t)
{
    for (const char *p = digits; *p; p++)
        assert_int_equal(key(k, digit_code(*p), t), CR_KEYS_NONE);
    return key(k, KEY_ENTER, t);
}

static void ten_digits_and_enter(void **s)
{
    (void)s;
    struct cr_keys k;
    int64_t t = 1000000;
    cr_keys_init(&k, GAP_US);
    assert_int_equal(type_digits(&k, "0013961168", &t), CR_KEYS_CARD);
    assert_int_equal(k.len, 10);
    assert_string_equal(k.text, "0013961168");
    cr_keys_clear(&k);
    assert_int_equal(k.len, 0);
    assert_int_equal(k.text[0], 0);
    /* the next card starts clean */
    assert_int_equal(type_digits(&k, "42", &t), CR_KEYS_CARD);
    assert_string_equal(k.text, "42");
}

static void keypad_and_keypad_enter(void **s)
{
    (void)s;
    struct cr_keys k;
    int64_t t = 0;
    const uint16_t kp[] = {KEY_KP0, KEY_KP1, KEY_KP2, KEY_KP3, KEY_KP4,
                           KEY_KP5, KEY_KP6, KEY_KP7, KEY_KP8, KEY_KP9};
    cr_keys_init(&k, GAP_US);
    for (size_t i = 0; i < 10; i++)
        assert_int_equal(key(&k, kp[i], &t), CR_KEYS_NONE);
    assert_int_equal(key(&k, KEY_KPENTER, &t), CR_KEYS_CARD);
    assert_string_equal(k.text, "0123456789");
}

static void shift_gives_upper_case_letters_not_symbols(void **s)
{
    (void)s;
    struct cr_keys k;
    int64_t t = 0;
    cr_keys_init(&k, GAP_US);
    cr_keys_feed(&k, EV_KEY, KEY_LEFTSHIFT, 1, t);
    key(&k, KEY_A, &t);
    key(&k, KEY_1, &t); /* AZERTY-style readers shift digits */
    cr_keys_feed(&k, EV_KEY, KEY_LEFTSHIFT, 0, t);
    key(&k, KEY_F, &t);
    key(&k, KEY_COMMA, &t);
    cr_keys_feed(&k, EV_KEY, KEY_RIGHTSHIFT, 1, t);
    key(&k, KEY_SEMICOLON, &t);
    cr_keys_feed(&k, EV_KEY, KEY_RIGHTSHIFT, 0, t);
    assert_int_equal(key(&k, KEY_ENTER, &t), CR_KEYS_CARD);
    assert_string_equal(k.text, "A1f,:");
}

static void auto_repeat_and_releases_type_nothing(void **s)
{
    (void)s;
    struct cr_keys k;
    cr_keys_init(&k, GAP_US);
    assert_int_equal(cr_keys_feed(&k, EV_KEY, KEY_5, 1, 0), CR_KEYS_NONE);
    assert_int_equal(cr_keys_feed(&k, EV_KEY, KEY_5, 2, 1000), CR_KEYS_NONE);
    assert_int_equal(cr_keys_feed(&k, EV_KEY, KEY_5, 2, 2000), CR_KEYS_NONE);
    assert_int_equal(cr_keys_feed(&k, EV_KEY, KEY_5, 0, 3000), CR_KEYS_NONE);
    assert_int_equal(cr_keys_feed(&k, EV_KEY, KEY_NUMLOCK, 1, 3000), CR_KEYS_NONE);
    assert_int_equal(cr_keys_feed(&k, EV_KEY, KEY_ENTER, 1, 4000), CR_KEYS_CARD);
    assert_string_equal(k.text, "5");
}

static void lone_enter_is_nothing(void **s)
{
    (void)s;
    struct cr_keys k;
    int64_t t = 0;
    cr_keys_init(&k, GAP_US);
    assert_int_equal(key(&k, KEY_ENTER, &t), CR_KEYS_NONE);
    assert_int_equal(key(&k, KEY_KPENTER, &t), CR_KEYS_NONE);
}

static void unknown_key_drops_the_card_at_enter(void **s)
{
    (void)s;
    struct cr_keys k;
    int64_t t = 0;
    cr_keys_init(&k, GAP_US);
    key(&k, KEY_1, &t);
    assert_int_equal(key(&k, KEY_F1, &t), CR_KEYS_NONE);
    assert_int_equal(k.len, 0); /* wiped at once */
    key(&k, KEY_2, &t);
    assert_int_equal(key(&k, KEY_ENTER, &t), CR_KEYS_BAD);
    assert_int_equal(type_digits(&k, "77", &t), CR_KEYS_CARD);
    assert_string_equal(k.text, "77");
}

static void too_long_is_dropped(void **s)
{
    (void)s;
    struct cr_keys k;
    int64_t t = 0;
    cr_keys_init(&k, GAP_US);
    for (int i = 0; i < CR_KEYS_MAX; i++)
        key(&k, KEY_9, &t);
    assert_int_equal(k.len, CR_KEYS_MAX);
    key(&k, KEY_9, &t);
    assert_int_equal(key(&k, KEY_ENTER, &t), CR_KEYS_BAD);
    /* exactly the maximum is a card */
    for (int i = 0; i < CR_KEYS_MAX; i++)
        key(&k, KEY_8, &t);
    assert_int_equal(key(&k, KEY_ENTER, &t), CR_KEYS_CARD);
    assert_int_equal(strlen(k.text), CR_KEYS_MAX);
}

static void pause_inside_a_card_drops_what_came_before(void **s)
{
    (void)s;
    struct cr_keys k;
    int64_t t = 0;
    cr_keys_init(&k, GAP_US);
    key(&k, KEY_1, &t);
    key(&k, KEY_2, &t);
    t += GAP_US + 1;
    assert_int_equal(key(&k, KEY_3, &t), CR_KEYS_BAD);
    assert_int_equal(key(&k, KEY_ENTER, &t), CR_KEYS_CARD);
    assert_string_equal(k.text, "3");
    cr_keys_clear(&k);
    /* a pause before Enter too */
    key(&k, KEY_4, &t);
    t += GAP_US + 1;
    assert_int_equal(key(&k, KEY_ENTER, &t), CR_KEYS_BAD);
    /* a pause between cards is fine */
    t += 10 * GAP_US;
    assert_int_equal(type_digits(&k, "5", &t), CR_KEYS_CARD);
}

static void no_gap_limit(void **s)
{
    (void)s;
    struct cr_keys k;
    int64_t t = 0;
    cr_keys_init(&k, 0);
    key(&k, KEY_1, &t);
    t += 3600LL * 1000000;
    assert_int_equal(key(&k, KEY_ENTER, &t), CR_KEYS_CARD);
}

static void char_map(void **s)
{
    (void)s;
    assert_int_equal(cr_keys_char(KEY_1, false), '1');
    assert_int_equal(cr_keys_char(KEY_9, false), '9');
    assert_int_equal(cr_keys_char(KEY_0, false), '0');
    assert_int_equal(cr_keys_char(KEY_KP0, false), '0');
    assert_int_equal(cr_keys_char(KEY_KP7, false), '7');
    assert_int_equal(cr_keys_char(KEY_KP3, false), '3');
    assert_int_equal(cr_keys_char(KEY_Q, false), 'q');
    assert_int_equal(cr_keys_char(KEY_M, true), 'M');
    assert_int_equal(cr_keys_char(KEY_KPCOMMA, false), ',');
    assert_int_equal(cr_keys_char(KEY_ENTER, false), 0);
    assert_int_equal(cr_keys_char(KEY_ESC, false), 0);
    assert_int_equal(cr_keys_char(KEY_MAX, false), 0);
}

/* Issue 15 item 11: timestamps from crafted records overflowed in the µs
 * conversion and in the pause check (UBSan aborted; in release a key after
 * a huge gap did not count as a pause). Times saturate; the pause check is
 * exact whatever the values; a time before the last one is no pause. */
static void absurd_timestamps_do_not_overflow(void **s)
{
    (void)s;
    struct cr_keys k;
    assert_true(cr_keys_event_us(INT64_MAX, 999999) == INT64_MAX);
    assert_true(cr_keys_event_us(INT64_MIN, -1) == INT64_MIN);
    assert_true(cr_keys_event_us(9223372036854, 775807) == INT64_MAX);
    assert_true(cr_keys_event_us(9223372036854, 775808) == INT64_MAX); /* one past: saturated */
    assert_true(cr_keys_event_us(-9223372036854, -775808) == INT64_MIN);
    assert_true(cr_keys_event_us(1700000000, 250000) == 1700000000250000);

    /* a key at the earliest time, then one at an ordinary time: a gap of
     * more than 2^63 µs, which is a pause */
    cr_keys_init(&k, 500000);
    assert_int_equal(cr_keys_feed(&k, EV_KEY, KEY_1, 1, INT64_MIN + 10), CR_KEYS_NONE);
    assert_int_equal(cr_keys_feed(&k, EV_KEY, KEY_2, 1, 1000), CR_KEYS_BAD);
    assert_int_equal(cr_keys_feed(&k, EV_KEY, KEY_ENTER, 1, 1001), CR_KEYS_CARD);
    assert_string_equal(k.text, "2");
    cr_keys_clear(&k);
    /* the latest time, then the earliest: backwards, no pause */
    assert_int_equal(cr_keys_feed(&k, EV_KEY, KEY_3, 1, INT64_MAX), CR_KEYS_NONE);
    assert_int_equal(cr_keys_feed(&k, EV_KEY, KEY_4, 1, INT64_MIN), CR_KEYS_NONE);
    assert_int_equal(cr_keys_feed(&k, EV_KEY, KEY_ENTER, 1, INT64_MIN), CR_KEYS_CARD);
    assert_string_equal(k.text, "34");
    cr_keys_clear(&k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ten_digits_and_enter),
        cmocka_unit_test(keypad_and_keypad_enter),
        cmocka_unit_test(shift_gives_upper_case_letters_not_symbols),
        cmocka_unit_test(auto_repeat_and_releases_type_nothing),
        cmocka_unit_test(lone_enter_is_nothing),
        cmocka_unit_test(unknown_key_drops_the_card_at_enter),
        cmocka_unit_test(too_long_is_dropped),
        cmocka_unit_test(pause_inside_a_card_drops_what_came_before),
        cmocka_unit_test(no_gap_limit),
        cmocka_unit_test(char_map),
        cmocka_unit_test(absurd_timestamps_do_not_overflow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
