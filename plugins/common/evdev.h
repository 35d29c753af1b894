/*
 * evdev: one Linux input event device (/dev/input/event*,
 * /dev/input/by-id/...-event-kbd) for the plugins that read keyboard-wedge
 * devices (feedback buttons, card readers), read as a stream of struct
 * input_event from a non-blocking descriptor the plugin watches with
 * host->fd_watch. Reading evdev rather than a tty gives layout-independent
 * key codes, and EVIOCGRAB keeps the keys from typing into a console.
 *
 * A FIFO (or any readable non-tty descriptor) stands in for the device
 * node in tests, where there is no uinput: EVIOCGRAB then fails with
 * ENOTTY, which is reported by mte_note, not as an error. Partial events
 * (a pipe may split one) are put together across reads.
 *
 * Owns the descriptor. Loop thread of the owning instance; never logs.
 */
#ifndef MTE_EVDEV_H
#define MTE_EVDEV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <linux/input.h>

struct mte_dev;

/* Opens path read-only, non-blocking; grabs it if asked and possible.
 * 0 or -errno with a one-line message in err. */
int mte_open(struct mte_dev **out, const char *path, bool grab, char *err, size_t errlen);
int mte_fd(const struct mte_dev *d);
bool mte_grabbed(const struct mte_dev *d);
/* NULL, or one line about a grab asked for but not done (not an evdev
 * device; grabbed by another program). Valid until mte_close. */
const char *mte_note(const struct mte_dev *d);
/* The device is an input device but the grab failed (another program holds
 * it, EBUSY): keys also reach that program; report the device degraded. */
bool mte_grab_refused(const struct mte_dev *d);

typedef void (*mte_event_cb)(void *arg, const struct input_event *ev);
/* One read: calls cb for each complete event. > 0 bytes read, -EAGAIN
 * nothing now, 0 (end of a pipe: its writer went), -ENODEV or -EIO (the
 * device was unplugged): close and reopen later. */
ssize_t mte_read(struct mte_dev *d, mte_event_cb cb, void *arg);
void mte_close(struct mte_dev *d);
/* Added (compatible): for bytes read by someone else (devloop): calls cb
 * for each complete event; a partial one waits for the next call. */
void mte_feed(struct mte_dev *d, const uint8_t *p, size_t n, mte_event_cb cb, void *arg);

/* The reassembly of mte_feed on its own, for a plugin that keeps its
 * partial record apart from the device (the card reader: it must outlive
 * nothing and be wiped when the device goes). Pure; zero it to start.
 * Fuzzed (tests/fuzz/fuzz_evdev.c). */
struct mte_reasm {
    size_t npart;
    uint8_t part[sizeof(struct input_event)];
};
void mte_reasm_feed(struct mte_reasm *r, const uint8_t *p, size_t n, mte_event_cb cb, void *arg);
/* Drops (and wipes) a partial record. */
void mte_reasm_clear(struct mte_reasm *r);

/* Key codes by name: "KEY_1", "KEY_KP1", "KEY_ENTER", "KEY_A"; or a number
 * ("2"). The code, or -1 when unknown. */
int mte_key_code(const char *name);
/* '0'..'9' for the digit keys of the main row and the keypad, else 0. */
char mte_key_digit(unsigned code);

#endif
