/*
 * mittari plugin SDK: the one header an input plugin needs.
 *
 * Owns nothing at run time: it declares the ABI between the agent and a plugin
 * shared object. A plugin exports one symbol, mittari_plugin_entry (use
 * MITTARI_PLUGIN_DEFINE), that returns a descriptor. The agent reads
 * abi_version first and refuses the plugin when the major version differs or
 * the minor version is newer than its own, before trusting anything else in
 * the descriptor.
 *
 * Threads: create/start/stop/destroy, timer, fd and poll-done callbacks run on
 * the agent's event-loop thread and must never block. A poll "work" callback
 * runs on a worker thread and may block. host->emit and host->log are safe
 * from any thread.
 *
 * A plugin reports what the device said. It never writes to the database,
 * never formats output, never pseudonymises: raw identifiers go to emit in
 * subject_id and the agent replaces them with a keyed-hash pseudonym before
 * anything is stored, logged or sent.
 *
 * Compatibility rules: fields are only ever appended to the structs below;
 * structs that cross the ABI carry their own size. Error codes and enum
 * values are never renumbered.
 */
#ifndef MITTARI_MITTARI_H
#define MITTARI_MITTARI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MITTARI_ABI_MAJOR 1
#define MITTARI_ABI_MINOR 1
#define MITTARI_ABI_VERSION ((uint32_t)((MITTARI_ABI_MAJOR << 16) | MITTARI_ABI_MINOR))
#define MITTARI_ABI_MAJOR_OF(v) ((uint32_t)(v) >> 16)
#define MITTARI_ABI_MINOR_OF(v) ((uint32_t)(v)&0xffffu)

/* ---- errors ------------------------------------------------------------
 * Functions return 0 or a negative value: -errno for system errors, or one
 * of these. Codes are ABI: retired ones stay reserved, none is renumbered. */
#define MITTARI_EABI (-1000)     /* plugin built for an incompatible ABI */
#define MITTARI_ESTOPPED (-1001) /* instance is not running; reading refused */
#define MITTARI_EFULL (-1002)    /* log at its size cap, policy block_inputs */
#define MITTARI_EREADING (-1003) /* malformed reading (see the agent log) */
#define MITTARI_ECONFIG (-1004)  /* invalid configuration */
#define MITTARI_EPLUGIN (-1005)  /* plugin failed or broke the ABI contract */
#define MITTARI_ESTORAGE (-1006) /* log database unusable */

static inline const char *mittari_strerror_own(int code)
{
    switch (code) {
    case MITTARI_EABI: return "plugin built for an incompatible ABI";
    case MITTARI_ESTOPPED: return "instance is not running";
    case MITTARI_EFULL: return "log is full (policy block_inputs)";
    case MITTARI_EREADING: return "malformed reading";
    case MITTARI_ECONFIG: return "invalid configuration";
    case MITTARI_EPLUGIN: return "plugin error";
    case MITTARI_ESTORAGE: return "log database unusable";
    default: return NULL;
    }
}

/* ---- readings ---------------------------------------------------------- */

enum mittari_kind {
    MITTARI_KIND_DELTA = 1,      /* a count since the previous reading */
    MITTARI_KIND_GAUGE = 2,      /* a level: occupancy, temperature */
    MITTARI_KIND_CUMULATIVE = 3, /* a device counter; the agent turns it into deltas */
    MITTARI_KIND_EVENT = 4,      /* something happened once: a card read, a button */
};

struct mittari_tag {
    const char *key;
    const char *value;
};

/* All pointers are borrowed for the duration of the emit call only. */
struct mittari_reading {
    uint32_t size;        /* sizeof(struct mittari_reading): use MITTARI_READING_INIT */
    int64_t ts_us;        /* UTC microseconds since the epoch; 0 = now; else within
                             2000-01-01 .. 2099-12-31 (a unit mistake is refused) */
    const char *device;   /* NULL = the instance name */
    const char *metric;   /* required, [A-Za-z0-9_.:-], at most 63 bytes */
    const char *unit;     /* NULL or "" = dimensionless */
    int kind;             /* enum mittari_kind */
    double value;         /* DELTA, GAUGE, EVENT: the value (finite) */
    uint64_t counter;     /* CUMULATIVE: the raw device counter */
    unsigned counter_bits;/* CUMULATIVE: 16, 32 or 64 (0 = 64); where it wraps */
    const void *subject_id;   /* raw identifier bytes (card number), or NULL */
    size_t subject_id_len;    /* at most 64 */
    const char *subject_space;/* key space of subject_id ("card", "wiegand26"); NULL = "id" */
    const struct mittari_tag *tags; /* per-reading tags, or NULL */
    size_t ntags;                   /* at most 8 */

    /* ---- ABI 1.1 (a plugin built for 1.0 passes a smaller size) ---- */

    /* CUMULATIVE, optional: which counter of the device this is ("unit 3
     * holding 40001"), at most 47 bytes, no raw identifiers. One cumulative
     * series takes one counter: a reading of another source for a series
     * already fed is refused (MITTARI_EREADING), so the agent never turns
     * the values of two counters into the steps of one. Without it the
     * agent still refuses a second instance feeding the series, and a
     * second value at the same ts_us. */
    const char *source;
};

/* The size of struct mittari_reading in ABI 1.0, the smallest accepted. */
#define MITTARI_READING_SIZE_1_0 offsetof(struct mittari_reading, source)

#define MITTARI_READING_INIT {.size = sizeof(struct mittari_reading)}

/* ---- option tables -----------------------------------------------------
 * Declarative: the agent validates the configuration against the table and
 * fills the plugin's config struct (config_size bytes, zeroed) at offset
 * before create() is called. Strings and lists stay valid until destroy().
 *
 * Profiles: a mapping that holds `profile: NAME` (an instance, or an item of
 * a list) takes the keys of conf.d/profiles/NAME.yaml as defaults under its
 * own; the agent merges them before validation, so a plugin never sees the
 * key. Reusable device models (a people counter's register map) live there. */
enum mittari_opt_type {
    MITTARI_OPT_STRING = 1,   /* const char * (NULL when unset without default) */
    MITTARI_OPT_INT = 2,      /* int64_t */
    MITTARI_OPT_DOUBLE = 3,   /* double */
    MITTARI_OPT_BOOL = 4,     /* bool */
    MITTARI_OPT_ENUM = 5,     /* int: index into values */
    MITTARI_OPT_DURATION = 6, /* int64_t milliseconds; "250ms", "5s", "2m", "1h", "7d" */
    MITTARI_OPT_SIZE = 7,     /* uint64_t bytes; "512", "64KiB", "10MB", "1GiB" */
    MITTARI_OPT_LIST = 8,     /* struct mittari_list: a YAML list of mappings, each item
                                 filled from the option table `sub` (sub_size bytes);
                                 min/max bound the number of items */
};

/* The value of a MITTARI_OPT_LIST option. items is an array of n structs of
 * the option's sub_size bytes, each filled like a config struct. */
struct mittari_list {
    size_t n;
    const void *items;
};

#define MITTARI_LIST_ITEM(list, type, i) (&((const type *)(list)->items)[i])

#define MITTARI_OPT_REQUIRED 0x1u /* must be set in the configuration */
#define MITTARI_OPT_SECRET 0x2u   /* STRING; may come from NAME_file; never logged */
#define MITTARI_OPT_LUA_FILE 0x4u /* STRING: a Lua decoder file; compiled (syntax, a decode
                                     function) when the configuration is checked; a relative
                                     path is taken from the configuration file's directory */

struct mittari_option {
    const char *name;
    int type;                  /* enum mittari_opt_type */
    unsigned flags;            /* MITTARI_OPT_* flags */
    const char *def;           /* default, written as in the config; NULL = none */
    double min, max;           /* inclusive range, checked when min < max (DURATION: ms) */
    const char *const *values; /* ENUM: the allowed values, NULL-terminated */
    size_t offset;             /* offsetof(your config struct, field) */
    const char *help;          /* one line */
    const struct mittari_option *sub; /* LIST: the table of each item */
    size_t sub_size;                  /* LIST: sizeof the item struct */
    const void *reserved[2];          /* zero: room to grow without changing the stride */
};

/* ---- host API ---------------------------------------------------------- */

struct mittari_ctx;   /* one plugin instance, owned by the agent */
struct mittari_decoder; /* a Lua decoder script loaded by the agent */
struct mittari_timer; /* owned by the agent; freed by timer_stop or at stop */
struct mittari_watch;
struct mittari_poll;

enum mittari_level { MITTARI_LOG_ERR = 3, MITTARI_LOG_WARNING = 4, MITTARI_LOG_NOTICE = 5,
                     MITTARI_LOG_INFO = 6, MITTARI_LOG_DEBUG = 7 };

enum mittari_health { MITTARI_HEALTH_UP = 0, MITTARI_HEALTH_DEGRADED = 1, MITTARI_HEALTH_DOWN = 2 };

#define MITTARI_FD_READ 0x1
#define MITTARI_FD_WRITE 0x2
#define MITTARI_FD_ERROR 0x4 /* error or hang-up: unwatch, close, reopen later */

typedef void (*mittari_timer_cb)(void *arg);
typedef void (*mittari_fd_cb)(void *arg, int fd, int events);
typedef int (*mittari_work_cb)(void *arg);             /* worker thread; may block */
typedef void (*mittari_done_cb)(void *arg, int status); /* loop thread; status = work's result */
/* ABI 1.1: the result of one frame given to decoder_submit, on the
 * decoder's own thread (see decoder_submit). */
typedef void (*mittari_decoded_cb)(void *arg, int result);

struct mittari_host {
    uint32_t abi_version; /* the agent's MITTARI_ABI_VERSION */
    uint32_t size;        /* sizeof(struct mittari_host) of the agent */

    /* Any thread. Copies what it needs. 0, -EAGAIN (intake queue full: retry
     * later or drop and count), MITTARI_EFULL, MITTARI_ESTOPPED or
     * MITTARI_EREADING. */
    int (*emit)(struct mittari_ctx *ctx, const struct mittari_reading *r);

    /* Any thread. One line; prefixed with the plugin and instance name. Never
     * pass raw card numbers or device addresses. */
    void (*log)(struct mittari_ctx *ctx, int level, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

    /* Any thread. UTC microseconds since the epoch. */
    int64_t (*now)(struct mittari_ctx *ctx);

    /* Loop thread. repeat_ms 0 = one shot. The agent stops all of an
     * instance's timers, watches and polls itself after stop(). */
    int (*timer_start)(struct mittari_ctx *ctx, uint64_t timeout_ms, uint64_t repeat_ms,
                       mittari_timer_cb cb, void *arg, struct mittari_timer **out);
    void (*timer_stop)(struct mittari_timer *t);

    /* Loop thread. events: MITTARI_FD_READ | MITTARI_FD_WRITE. The fd stays
     * the plugin's: unwatch before closing it. */
    int (*fd_watch)(struct mittari_ctx *ctx, int fd, int events, mittari_fd_cb cb, void *arg,
                    struct mittari_watch **out);
    void (*fd_unwatch)(struct mittari_watch *w);

    /* Loop thread. Runs work(arg) on a worker thread every interval_ms (the
     * first at once), then done(arg, result) on the loop. A run still busy
     * when the next is due is skipped and counted, never queued twice. After
     * poll_stop, done is not called again; destroy() waits for a run in
     * flight. */
    int (*poll_start)(struct mittari_ctx *ctx, uint64_t interval_ms, mittari_work_cb work,
                      mittari_done_cb done, void *arg, struct mittari_poll **out);
    void (*poll_stop)(struct mittari_poll *p);

    /* Any thread. Health of one device of this instance (a Modbus unit, a
     * serial port, a reader), or of the instance itself with device NULL.
     * Changes are logged; the statistics show every device not up. reason
     * is copied; never put a card number or device address in it. */
    void (*set_health)(struct mittari_ctx *ctx, const char *device, int health,
                       const char *reason);

    /* Any thread. The instance name from the configuration. */
    const char *(*instance_name)(struct mittari_ctx *ctx);

    /* Any thread. Adds n to a named counter of a device (NULL: the
     * instance): "timeouts", "crc_errors", "exceptions", "bad_frames"... Shown
     * in the statistics line; never stored as readings. Names are
     * [a-z0-9_]{1,31}; at most 16 counters per device. */
    void (*count)(struct mittari_ctx *ctx, const char *device, const char *counter, uint64_t n);

    /* Decoders: a device protocol in a few lines of Lua instead of C.
     *
     * Loop thread. Loads a decoder file (from an option flagged
     * MITTARI_OPT_LUA_FILE, which holds the resolved path). Plain Lua 5.4 in
     * the agent's sandbox: no io, os, require, debug or loading of bytecode;
     * an instruction budget per call and a memory cap. The file defines
     *     function decode(frame, ts)   -- frame: string of bytes, ts: µs
     * returning nil, one reading or a list of readings, each a table with
     * metric, value, kind ("delta", "gauge", "cumulative", "event"), and
     * optionally unit, device, counter and bits (cumulative), subject and
     * space (a raw identifier: pseudonymised by emit), tags (a table), ts. */
    /* 0, MITTARI_ECONFIG (the script does not compile or defines no
     * decode; logged with file:line), -errno (the file) or -ENOMEM. */
    int (*decoder_load)(struct mittari_ctx *ctx, const char *path, struct mittari_decoder **out);
    /* Any one thread at a time: a poll's worker, or the loop for plugins
     * built for ABI 1.0 (from the loop use decoder_submit, below: a call
     * here holds the calling thread for as long as the script runs, up to
     * its 100 ms time limit). Runs decode on one frame and emits what it
     * returns (ts_us where a reading has no ts). Returns the number of
     * readings emitted; MITTARI_EREADING when the script failed, ran over
     * its budget (instructions, memory, 100 ms) or returned something
     * malformed, or the decoder is paused because its calls keep hitting a
     * limit: nothing of that frame is emitted, it is logged with file:line
     * (rate-limited) and counted, never fatal. An error of emit itself
     * (-EAGAIN, MITTARI_EFULL, MITTARI_ESTOPPED) is passed through; the
     * frame's readings before it were emitted, so do not run the frame
     * again. */
    int (*decoder_run)(struct mittari_decoder *d, const void *frame, size_t len, int64_t ts_us);
    /* Loop thread. Frees the decoder; NULL is ok. Never waits for a script:
     * frames still queued by decoder_submit are dropped and counted, and
     * no done callback runs once it has returned. */
    void (*decoder_free)(struct mittari_decoder *d);

    /* ---- ABI 1.1 (check size covers it before use) ---- */

    /* Loop thread (or any one thread at a time). Queues a copy of the frame
     * for the decoder's own thread and returns at once: the script never
     * runs on the caller's thread, so a slow decoder cannot hold the loop.
     * Frames are decoded in order. 0: queued; -EBUSY: the decoder is paused
     * (its calls kept hitting a limit; the agent logged it and resumes it
     * later); -ENOBUFS: its queue is full (the script is slower than the
     * device); -ENOMEM; -EINVAL. A frame not queued is counted by the agent
     * (decoder_skipped), nothing else to do. done (may be NULL) runs on the
     * decoder's thread once per frame decoded, with what decoder_run would
     * have returned for it; it may use only the host calls that are safe
     * from any thread (emit, log, count, set_health, now), must not call
     * decoder_* and never runs after decoder_free returned. Do not mix
     * decoder_run and decoder_submit on one decoder. */
    int (*decoder_submit)(struct mittari_decoder *d, const void *frame, size_t len, int64_t ts_us,
                          mittari_decoded_cb done, void *arg);
};

/* ---- configuration checks ------------------------------------------------
 * The checks an option table cannot express (one of two keys, items of a
 * list that must agree, a register map that must fit a request) go in the
 * plugin's check(): the agent runs it wherever the configuration is checked
 * (mittari check, start, reload) and reports each error at the file:line of
 * the option that path names. */
struct mittari_checker {
    void *ctx; /* the agent's */
    /* path: "key", "list[i]" or "list[i].key[j].key..." (i from 0); NULL or
     * "" = the instance. A path to an option left at its default points at
     * the mapping that would hold it. */
    void (*error)(const struct mittari_checker *chk, const char *path, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
};

/* ---- plugin descriptor ------------------------------------------------- */

struct mittari_plugin {
    uint32_t abi_version; /* MITTARI_ABI_VERSION the plugin was built with; keep first */
    uint32_t size;        /* sizeof(struct mittari_plugin) */
    const char *name;     /* [a-z0-9_]+, equal to the file name without .so */
    const char *version;
    const char *description; /* one line */
    const struct mittari_option *options; /* terminated by an entry with name NULL */
    size_t config_size;                   /* size of the struct options are written into */

    /* Loop thread. config is the filled struct, borrowed until destroy.
     * Allocate state; do not start I/O yet. */
    int (*create)(const struct mittari_host *host, struct mittari_ctx *ctx, const void *config,
                  void **state);
    /* Loop thread. Open devices, start timers/watches/polls. */
    int (*start)(void *state);
    /* Loop thread. Stop producing; the agent then cancels what is left. */
    void (*stop)(void *state);
    /* Loop thread. No callback of this instance runs after it starts. */
    void (*destroy)(void *state);
    /* Optional. Any thread; no I/O, no state: checks the filled config and
     * reports every problem through chk. Returns the number reported. */
    int (*check)(const void *config, const struct mittari_checker *chk);
};

#define MITTARI_PLUGIN_ENTRY_SYMBOL "mittari_plugin_entry"
#define MITTARI_PLUGIN_DEFINE(desc)                                                                \
    __attribute__((visibility("default"))) const struct mittari_plugin *mittari_plugin_entry(void) \
    {                                                                                              \
        return &(desc);                                                                            \
    }

#ifdef __cplusplus
}
#endif
#endif
