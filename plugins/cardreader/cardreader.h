/*
 * cardreader: what the plugin's backends share. One instance reads one
 * reader: a serial EM4100/ASCII reader (cr_serial.c), a keyboard-wedge
 * reader through evdev (cr_hid.c), or a PC/SC reader (cr_pcsc.c).
 *
 * A card read goes through cr_card: debounced by a keyed fingerprint, then
 * emitted as an event reading whose subject is the raw number with its
 * subject space; the agent pseudonymises it inside emit. No backend stores,
 * logs or hashes a card number; buffers that held one are wiped after use.
 *
 * Threads: the serial and hid backends run on the loop; the pcsc backend's
 * reads run on a worker (host->poll_start), one run at a time, so the
 * debounce table and the complaint state are only ever used by one thread.
 */
#ifndef CR_CARDREADER_H
#define CR_CARDREADER_H

#include <stdbool.h>
#include <stdint.h>

#include <mittari/mittari.h>

#include "cardid.h"
#include "ratelimit.h"
#include "serial.h"

enum cr_backend_id { CR_BACKEND_SERIAL, CR_BACKEND_HID, CR_BACKEND_PCSC };
enum cr_frame { CR_FRAME_EM4100, CR_FRAME_LINE, CR_FRAME_LINE_CR };

struct cr_conf {
    int backend; /* enum cr_backend_id */
    const char *metric;
    const char *service;
    int64_t debounce_ms;
    int id_format; /* enum cr_idfmt: serial lines and hid */
    /* serial */
    struct mts_conf serial;
    int frame; /* enum cr_frame */
    /* hid */
    const char *evdev;
    bool grab;
    int64_t key_gap_ms;
    /* pcsc */
    const char *reader;
    int64_t pcsc_poll_ms;
    bool random_uids;
};

struct cr;

/* A backend: start opens the device (or schedules retries: a reader that is
 * not there yet is not an error of the instance); stop releases it. */
struct cr_backend {
    const char *name;
    int (*create)(struct cr *c, void **state);
    int (*start)(void *state);
    void (*stop)(void *state);
    void (*destroy)(void *state);
};

extern const struct cr_backend cr_backend_serial;
extern const struct cr_backend cr_backend_hid;
extern const struct cr_backend cr_backend_pcsc;

/* A repeating complaint (one counter and one message): logged once, then
 * at most every 10 minutes. */
struct cr_complaint {
    const char *counter;
    const char *what;
    struct mtr_limit limit;
    bool logged;
};

#define CR_COMPLAINTS 16

struct cr {
    const struct mittari_host *host;
    struct mittari_ctx *ctx;
    const struct cr_conf *conf;
    const struct cr_backend *backend;
    void *bstate;
    struct cr_debounce *debounce;
    struct mittari_timer *expire; /* serial, hid: forgets old fingerprints */
    struct mittari_tag tag;
    struct cr_complaint complaints[CR_COMPLAINTS];
};

/* A card was read, now: debounce, emit, wipe s. */
void cr_card(struct cr *c, struct cr_subject *s);
/* Something the reader sent was not a card: counts it under counter and
 * logs it the first time and then at most every 10 minutes with the count
 * (what: a static string of a few words, never bytes from the device; each
 * message is rate-limited on its own, so two kinds of bad frame are both
 * logged). */
void cr_bad(struct cr *c, const char *counter, const char *what);
void cr_health(struct cr *c, int health, const char *reason);
/* Drops old fingerprints (the owning thread, periodically). */
void cr_expire(struct cr *c);

#endif
