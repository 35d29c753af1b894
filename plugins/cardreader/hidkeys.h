/*
 * hidkeys: turns the evdev key events of a keyboard-wedge reader into the
 * text of one card: key presses to characters (digits, letters, keypad,
 * a few punctuation keys; evdev codes are layout-independent, tty text is
 * not), Enter or keypad Enter ends the card. Shift gives upper case.
 *
 * A card longer than CR_KEYS_MAX characters, a key with no character, or a
 * pause longer than gap_us between two key presses of one card (someone
 * typing on a real keyboard, a reader that stopped mid-number) makes the
 * card bad: it is dropped and reported once, never half-emitted. Times are
 * the events' own timestamps, so a recorded stream replays the same; a
 * time that goes backwards (the clock was set) is no pause, and any
 * timestamp, however absurd, is compared without overflow.
 *
 * Pure: no I/O, no allocation; one instance per device, the thread that
 * owns it. Holds the digits typed so far of one card only until Enter or
 * the next bad key (then wiped). Fuzzed (tests/fuzz/fuzz_em4100.c).
 */
#ifndef CR_HIDKEYS_H
#define CR_HIDKEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CR_KEYS_MAX 64

struct cr_keys {
    int64_t gap_us; /* 0: no limit */
    int64_t last_us;
    bool shift_l, shift_r;
    bool bad; /* the card being typed is already bad: drop it at Enter */
    size_t len;
    char text[CR_KEYS_MAX + 1];
};

enum cr_keys_result {
    CR_KEYS_NONE = 0, /* nothing complete yet */
    CR_KEYS_CARD = 1, /* text[0..len) holds a card: use it, then call cr_keys_clear */
    CR_KEYS_BAD = 2,  /* a card was dropped (too long, unknown key, pause) */
};

void cr_keys_init(struct cr_keys *k, int64_t gap_us);
/* The time of an input_event, sec and usec as the record says, in µs:
 * saturated at INT64_MIN/MAX, so a crafted record cannot overflow (issue 15
 * item 11). */
int64_t cr_keys_event_us(int64_t sec, int64_t usec);
/* One event: type, code and value as in struct input_event, ts_us its time. */
int cr_keys_feed(struct cr_keys *k, uint16_t type, uint16_t code, int32_t value, int64_t ts_us);
/* Wipes the text typed so far (after a card was used, or the device went). */
void cr_keys_clear(struct cr_keys *k);
/* The character of a key code, or 0 (exposed for the tests). */
char cr_keys_char(uint16_t code, bool shift);

#endif
