/*
 * testhost: a fake agent for unit tests of the tty plugins (serial,
 * feedback, cardreader): a struct mittari_host on a private libuv loop
 * whose timers and fd watches are real, and whose emit, log, set_health
 * and count record what the plugin did, for the test to check. Optional
 * fake Lua decoder calls (decoder_* NULL unless enabled), so a plugin's
 * decoder plumbing is testable without the agent's sandbox.
 *
 * Test code only (linked into unit tests, never into a plugin). One test
 * thread; emit and log also take a mutex, as plugins may call them from a
 * worker.
 */
#ifndef MT_TESTHOST_H
#define MT_TESTHOST_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include <mittari/mittari.h>

struct th_reading {
    char device[64], metric[64], unit[32];
    int kind;
    double value;
    uint64_t counter;
    unsigned bits;
    int64_t ts_us;
    size_t subject_len; /* raw subject bytes were given (never kept here) */
    char tags[256];     /* "k=v,k=v" */
};

struct th_health {
    char device[64]; /* "" = the instance */
    int health;
    char reason[160];
    unsigned changes;
};

struct th_counter {
    char device[64];
    char name[32];
    uint64_t v;
};

struct th_handle;

struct th {
    uv_loop_t loop;
    struct mittari_host host;
    const char *instance;
    pthread_mutex_t lock;
    struct th_reading *r;
    size_t nr, rcap;
    int emit_rc; /* what emit returns (readings are recorded only when 0) */
    char **logs;
    size_t nlogs, lcap;
    struct th_health health[32];
    size_t nhealth;
    struct th_counter counters[128];
    size_t ncounters;
    struct th_handle *handles;
    size_t decoder_frames; /* frames given to the fake decoder */
    bool quiet;            /* do not echo log lines to stderr */
};

/* decoders: install the fake decoder_* calls: load needs an existing file;
 * run emits one gauge "frame_length" with the frame's length, or fails
 * with MITTARI_EREADING when the frame starts with "bad". */
void th_init(struct th *t, const char *instance, bool decoders);
/* Closes what the plugin left open through the host (as the agent does
 * after stop) and runs the loop until the handles are gone. */
void th_close_all(struct th *t);
void th_free(struct th *t);

/* Runs the loop until pred(t, arg) or timeout_ms; true if pred held. */
bool th_run_until(struct th *t, bool (*pred)(struct th *t, void *arg), void *arg, int timeout_ms);
/* Runs the loop for ms milliseconds. */
void th_run_for(struct th *t, int ms);

uint64_t th_counter(const struct th *t, const char *device, const char *name);
/* The device's health, or -1 if never set. device NULL = the instance. */
int th_health(const struct th *t, const char *device);
const struct th_health *th_health_of(const struct th *t, const char *device);
size_t th_logs_with(const struct th *t, const char *needle);
/* Timers (TH_TIMER) and fd watches (TH_WATCH) the plugin holds through the
 * host now; -1 = all. */
enum { TH_TIMER = 0, TH_WATCH = 1 };
size_t th_handles(const struct th *t, int kind);

#endif
