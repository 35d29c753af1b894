/*
 * feedback: the plugin's configuration and the two paths a terminal's bytes
 * take, for its unit test and tests/fuzz/fuzz_feedback.c, which call the
 * real code. Internal to the plugin (not installed, not part of the SDK).
 *
 * The state they take is what the plugin's create() returned; loop thread
 * of the instance, as everything in the plugin.
 */
#ifndef FB_FEEDBACK_H
#define FB_FEEDBACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/input.h>

#include <mittari/mittari.h>

#include "serial.h"

enum fb_backend { BK_SERIAL, BK_EVDEV };
#define MAX_BUTTONS 32

/* An item of `buttons` (filled by the option table). */
struct button {
    const char *key;
    int64_t score;
    const char *label;
};

/* The instance's options (filled by the option table). */
struct conf {
    int backend; /* enum fb_backend */
    struct mts_conf line;
    bool grab;
    struct mittari_list buttons;
    const char *metric;
    const char *device;
    int64_t min_interval_ms;
    int64_t log_ms;
};

/* serial: bytes read from the terminal, one character per press. */
void fb_on_bytes(void *state, const uint8_t *p, size_t n);
/* evdev: one input event, put together from the bytes read. */
void fb_on_event(void *state, const struct input_event *ev);

#endif
