#include "hidkeys.h"

#include <linux/input-event-codes.h>
#include <stdbool.h>
#include <string.h>

/* US-layout positions; a wedge reader sends these codes whatever layout the
 * console uses. Digits stay digits under Shift: readers set up for AZERTY
 * type Shift+1 for '1'. */
/* clang-format off: one row of keys a line */
static const char keymap[KEY_KPDOT + 1] = {
    [KEY_1] = '1',         [KEY_2] = '2',     [KEY_3] = '3',   [KEY_4] = '4',
    [KEY_5] = '5',         [KEY_6] = '6',     [KEY_7] = '7',   [KEY_8] = '8',
    [KEY_9] = '9',         [KEY_0] = '0',     [KEY_Q] = 'q',   [KEY_W] = 'w',
    [KEY_E] = 'e',         [KEY_R] = 'r',     [KEY_T] = 't',   [KEY_Y] = 'y',
    [KEY_U] = 'u',         [KEY_I] = 'i',     [KEY_O] = 'o',   [KEY_P] = 'p',
    [KEY_A] = 'a',         [KEY_S] = 's',     [KEY_D] = 'd',   [KEY_F] = 'f',
    [KEY_G] = 'g',         [KEY_H] = 'h',     [KEY_J] = 'j',   [KEY_K] = 'k',
    [KEY_L] = 'l',         [KEY_Z] = 'z',     [KEY_X] = 'x',   [KEY_C] = 'c',
    [KEY_V] = 'v',         [KEY_B] = 'b',     [KEY_N] = 'n',   [KEY_M] = 'm',
    [KEY_MINUS] = '-',     [KEY_COMMA] = ',', [KEY_DOT] = '.', [KEY_SPACE] = ' ',
    [KEY_SEMICOLON] = ';', [KEY_SLASH] = '/', [KEY_KP0] = '0', [KEY_KP1] = '1',
    [KEY_KP2] = '2',       [KEY_KP3] = '3',   [KEY_KP4] = '4', [KEY_KP5] = '5',
    [KEY_KP6] = '6',       [KEY_KP7] = '7',   [KEY_KP8] = '8', [KEY_KP9] = '9',
    [KEY_KPMINUS] = '-',   [KEY_KPDOT] = '.',
};
/* clang-format on */

char cr_keys_char(uint16_t code, bool shift)
{
    if (code >= sizeof(keymap))
        return code == KEY_KPCOMMA ? ',' : 0;
    char c = keymap[code];
    if (shift && c >= 'a' && c <= 'z')
        return (char)(c - 'a' + 'A');
    if (shift && c == ';')
        return ':';
    return c;
}

static bool modifier(uint16_t code)
{
    switch (code) {
    case KEY_LEFTCTRL:
    case KEY_RIGHTCTRL:
    case KEY_LEFTALT:
    case KEY_RIGHTALT:
    case KEY_LEFTMETA:
    case KEY_RIGHTMETA:
    case KEY_CAPSLOCK:
    case KEY_NUMLOCK:
    case KEY_LEFTSHIFT:
    case KEY_RIGHTSHIFT:
        return true;
    default:
        return false;
    }
}

int64_t cr_keys_event_us(int64_t sec, int64_t usec)
{
    int64_t us;
    if (__builtin_mul_overflow(sec, 1000000, &us))
        return sec < 0 ? INT64_MIN : INT64_MAX;
    if (__builtin_add_overflow(us, usec, &us))
        return usec < 0 ? INT64_MIN : INT64_MAX;
    return us;
}

/* now - last > gap, without overflow: a time before the last is no pause */
static bool long_pause(int64_t last, int64_t now, int64_t gap)
{
    int64_t d;
    if (__builtin_sub_overflow(now, last, &d))
        return now > last;
    return d > gap;
}

void cr_keys_init(struct cr_keys *k, int64_t gap_us)
{
    memset(k, 0, sizeof(*k));
    k->gap_us = gap_us;
}

void cr_keys_clear(struct cr_keys *k)
{
    explicit_bzero(k->text, sizeof(k->text));
    k->len = 0;
    k->bad = false;
}

/* Something was typed and now is dropped. */
static int drop(struct cr_keys *k)
{
    cr_keys_clear(k);
    return CR_KEYS_BAD;
}

static int enter(struct cr_keys *k)
{
    if (k->bad)
        return drop(k);
    if (k->len == 0)
        return CR_KEYS_NONE; /* a lone Enter types nothing */
    k->text[k->len] = 0;
    return CR_KEYS_CARD;
}

static void poison(struct cr_keys *k)
{
    explicit_bzero(k->text, sizeof(k->text));
    k->len = 0;
    k->bad = true;
}

static int press(struct cr_keys *k, uint16_t code, int64_t ts_us)
{
    int rc = CR_KEYS_NONE;

    /* a long pause inside a card: what came before is not part of this one */
    if ((k->len || k->bad) && k->gap_us > 0 && long_pause(k->last_us, ts_us, k->gap_us))
        rc = drop(k);
    k->last_us = ts_us;
    if (code == KEY_ENTER || code == KEY_KPENTER)
        return rc ? rc : enter(k);
    char c = cr_keys_char(code, k->shift_l || k->shift_r);
    if (!c || k->len == CR_KEYS_MAX)
        poison(k);
    else if (!k->bad)
        k->text[k->len++] = c;
    return rc;
}

int cr_keys_feed(struct cr_keys *k, uint16_t type, uint16_t code, int32_t value, int64_t ts_us)
{
    if (type != EV_KEY)
        return CR_KEYS_NONE; /* EV_SYN, EV_MSC scan codes, LEDs */
    if (code == KEY_LEFTSHIFT || code == KEY_RIGHTSHIFT) {
        *(code == KEY_LEFTSHIFT ? &k->shift_l : &k->shift_r) = value != 0;
        return CR_KEYS_NONE;
    }
    if (value != 1 || modifier(code))
        return CR_KEYS_NONE; /* releases, auto-repeat, Ctrl/Alt/locks */
    return press(k, code, ts_us);
}
