/*
 * evdev: keyboard-wedge input devices read as event streams (evdev.h).
 */
#include <errno.h>
#include <stdint.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "evdev.h"

#define EV_SIZE sizeof(struct input_event)
#define READ_EVENTS 64

struct mte_dev {
    int fd;
    bool grabbed;
    bool grab_refused; /* an input device another program holds */
    struct mte_reasm ra; /* a partial event carried over to the next read */
    char note[160];
    uint8_t buf[READ_EVENTS * sizeof(struct input_event)];
};

int mte_open(struct mte_dev **out, const char *path, bool grab, char *err, size_t errlen)
{
    struct mte_dev *d = calloc(1, sizeof(*d));
    int rc;

    *out = NULL;
    if (!d) {
        snprintf(err, errlen, "%s: out of memory", path);
        return -ENOMEM;
    }
    d->fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (d->fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        free(d);
        return rc;
    }
    if (grab && ioctl(d->fd, EVIOCGRAB, (void *)1) == 0)
        d->grabbed = true;
    else if (grab && (errno == ENOTTY || errno == EINVAL))
        snprintf(d->note, sizeof(d->note), "not an evdev device (a pipe or file?): not grabbed");
    else if (grab && (d->grab_refused = true))
        snprintf(d->note, sizeof(d->note),
                 "cannot grab the device (%s): keys also reach the "
                 "console or another program",
                 strerror(errno));
    *out = d;
    return 0;
}

int mte_fd(const struct mte_dev *d)
{
    return d ? d->fd : -1;
}

bool mte_grab_refused(const struct mte_dev *d)
{
    return d && d->grab_refused;
}

bool mte_grabbed(const struct mte_dev *d)
{
    return d && d->grabbed;
}

const char *mte_note(const struct mte_dev *d)
{
    return d && d->note[0] ? d->note : NULL;
}

void mte_reasm_feed(struct mte_reasm *r, const uint8_t *p, size_t n, mte_event_cb cb, void *arg)
{
    struct input_event ev;

    while (n > 0) {
        size_t take = EV_SIZE - r->npart < n ? EV_SIZE - r->npart : n;
        memcpy(r->part + r->npart, p, take);
        r->npart += take;
        p += take;
        n -= take;
        if (r->npart == EV_SIZE) {
            memcpy(&ev, r->part, EV_SIZE); /* the bytes are not aligned for it */
            r->npart = 0;
            cb(arg, &ev);
        }
    }
    /* keys typed on a card reader are card digits */
    explicit_bzero(&ev, sizeof(ev));
    explicit_bzero(r->part + r->npart, EV_SIZE - r->npart);
}

void mte_reasm_clear(struct mte_reasm *r)
{
    explicit_bzero(r, sizeof(*r));
}

void mte_feed(struct mte_dev *d, const uint8_t *p, size_t n, mte_event_cb cb, void *arg)
{
    mte_reasm_feed(&d->ra, p, n, cb, arg);
}

ssize_t mte_read(struct mte_dev *d, mte_event_cb cb, void *arg)
{
    ssize_t n = read(d->fd, d->buf, sizeof(d->buf));

    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? -EAGAIN : -errno;
    mte_feed(d, d->buf, (size_t)n, cb, arg);
    return n;
}

void mte_close(struct mte_dev *d)
{
    if (!d)
        return;
    if (d->grabbed)
        ioctl(d->fd, EVIOCGRAB, (void *)0);
    close(d->fd);
    explicit_bzero(d, sizeof(*d)); /* the read buffer held key presses */
    free(d);
}

/* ---- key names ---- */

#define K(name)                                                                                    \
    {                                                                                              \
#name, name                                                                                \
    }
static const struct {
    const char *name;
    int code;
} keys[] = {
    K(KEY_0),     K(KEY_1),      K(KEY_2),        K(KEY_3),        K(KEY_4),          K(KEY_5),
    K(KEY_6),     K(KEY_7),      K(KEY_8),        K(KEY_9),        K(KEY_KP0),        K(KEY_KP1),
    K(KEY_KP2),   K(KEY_KP3),    K(KEY_KP4),      K(KEY_KP5),      K(KEY_KP6),        K(KEY_KP7),
    K(KEY_KP8),   K(KEY_KP9),    K(KEY_ENTER),    K(KEY_KPENTER),  K(KEY_SPACE),      K(KEY_TAB),
    K(KEY_ESC),   K(KEY_A),      K(KEY_B),        K(KEY_C),        K(KEY_D),          K(KEY_E),
    K(KEY_F),     K(KEY_G),      K(KEY_H),        K(KEY_I),        K(KEY_J),          K(KEY_K),
    K(KEY_L),     K(KEY_M),      K(KEY_N),        K(KEY_O),        K(KEY_P),          K(KEY_Q),
    K(KEY_R),     K(KEY_S),      K(KEY_T),        K(KEY_U),        K(KEY_V),          K(KEY_W),
    K(KEY_X),     K(KEY_Y),      K(KEY_Z),        K(KEY_F1),       K(KEY_F2),         K(KEY_F3),
    K(KEY_F4),    K(KEY_F5),     K(KEY_F6),       K(KEY_F7),       K(KEY_F8),         K(KEY_F9),
    K(KEY_F10),   K(KEY_F11),    K(KEY_F12),      K(KEY_UP),       K(KEY_DOWN),       K(KEY_LEFT),
    K(KEY_RIGHT), K(KEY_PAGEUP), K(KEY_PAGEDOWN), K(KEY_VOLUMEUP), K(KEY_VOLUMEDOWN),
};
#undef K

int mte_key_code(const char *name)
{
    char *end;
    long v;

    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (strcmp(keys[i].name, name) == 0)
            return keys[i].code;
    if (name[0] < '0' || name[0] > '9')
        return -1;
    v = strtol(name, &end, 10);
    return *end || v < 0 || v > KEY_MAX ? -1 : (int)v;
}

char mte_key_digit(unsigned code)
{
    switch (code) {
    case KEY_1 ... KEY_9:
        return (char)('1' + (code - KEY_1));
    case KEY_0:
    case KEY_KP0:
        return '0';
    case KEY_KP1:
        return '1';
    case KEY_KP2:
        return '2';
    case KEY_KP3:
        return '3';
    case KEY_KP4:
        return '4';
    case KEY_KP5:
        return '5';
    case KEY_KP6:
        return '6';
    case KEY_KP7:
        return '7';
    case KEY_KP8:
        return '8';
    case KEY_KP9:
        return '9';
    default:
        return 0;
    }
}
