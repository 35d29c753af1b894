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

/* The paths the bytes of a device take in each backend, as functions of
 * their own, so that tests/fuzz/fuzz_cardreader.c calls the real code.
 * serial, hid: the bytes read, on the backend's state (struct cr.bstate),
 * as the device loop hands them over (loop thread). */
void cr_serial_data(void *bstate, const uint8_t *p, size_t n);
void cr_hid_data(void *bstate, const uint8_t *p, size_t n);
/* pcsc (its worker): an answer to GET DATA, resp[0..n) with SW1 SW2 last,
 * in a buffer of CR_PCSC_RESP_MAX bytes; again(arg, le, resp, size) asks
 * once more with the Le a 6C xx answer gave and returns the new length or
 * -1. A UID goes to cr_pcsc_uid, anything else is counted. */
#define CR_PCSC_RESP_MAX 258 /* the longest short APDU answer: 256 bytes and SW1 SW2 */
typedef long (*cr_pcsc_again_fn)(void *arg, uint8_t le, uint8_t *resp, size_t size);
void cr_pcsc_answer(struct cr *c, uint8_t *resp, long n, cr_pcsc_again_fn again, void *arg);
void cr_pcsc_uid(struct cr *c, const uint8_t *uid, size_t len);
/* Drops old fingerprints (the owning thread, periodically). */
void cr_expire(struct cr *c);

#endif
