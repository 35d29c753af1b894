/*
 * decoder: Lua decoders for input plugins, the decoder_load / decoder_run /
 * decoder_submit / decoder_free calls of struct mittari_host. A device
 * protocol in a few lines of Lua: the file defines decode(frame, ts)
 * returning nil, one reading or a list of readings (tables); the agent
 * checks each field and emits them through the host's emit, which
 * pseudonymises subjects.
 *
 * Owns one sandbox (luabox.h) per decoder, so scripts never share globals;
 * a decoder's own globals persist from one frame to the next. With
 * decoder_submit it also owns a thread and a bounded queue of frame copies:
 * the script runs on that thread, never on the loop (issue 8: Lua never
 * holds the loop). The thread is started by the first submit and ends by
 * itself after mt_decoder_free.
 *
 * Threads: load and free on the thread that owns the instance (the loop);
 * submit from that thread; run from one thread at a time (a poll's worker;
 * the loop only for plugins built for ABI 1.0). Do not mix run and submit
 * on one decoder. Life of a decoder with a thread:
 *   loaded -> (first submit) running -> (free) closing -> freed
 * In "closing" the thread finishes or abandons the frame in hand (the
 * sandbox is interrupted, so within one budget check), calls nothing of the
 * host any more, and frees the decoder when it lets go of it: free never
 * waits for a script.
 *
 * Circuit breaker (both paths): when `trips` calls within trip_window_us
 * hit a limit (instruction budget or time limit), the decoder is paused
 * for pause_us: its frames are skipped and counted (decoder_skipped),
 * the pause is logged and counted (decoder_pauses). The first frame after
 * the pause is a trial: a limit hit pauses it again for twice as long (up
 * to pause_max_us), anything else resumes it (logged with the number of
 * frames skipped).
 *
 * A decoder never blocks its caller beyond the script it runs, never
 * aborts and never logs a frame's bytes: script failures and malformed
 * results are logged rate-limited with file:line, counted
 * ("decoder_errors") and returned as MITTARI_EREADING.
 *
 * Limits per decoder: MT_DECODER_MEM bytes of Lua memory, MT_DECODER_INSNS
 * instructions and MT_DECODER_TIME_MS per call (load included), at most
 * MT_DECODER_MAX_READINGS readings per frame; a queue of at most
 * MT_DECODER_QUEUE_FRAMES frames and MT_DECODER_QUEUE_BYTES bytes.
 */
#ifndef MT_DECODER_H
#define MT_DECODER_H

#include <stddef.h>
#include <stdint.h>

#include <mittari/mittari.h>

#include "luabox.h"

#define MT_DECODER_MEM (2u << 20)
#define MT_DECODER_INSNS 1000000u
#define MT_DECODER_TIME_MS 100u
#define MT_DECODER_MAX_READINGS 64
#define MT_DECODER_COMPLAIN_US (60 * 1000000LL) /* reminder period of a repeating failure */
#define MT_DECODER_TRIPS 5                      /* limit hits within the window pause the decoder */
#define MT_DECODER_TRIP_WINDOW_US (10 * 1000000LL)
#define MT_DECODER_PAUSE_US (10 * 1000000LL) /* the first pause; doubles while it fails */
#define MT_DECODER_PAUSE_MAX_US (600 * 1000000LL)
#define MT_DECODER_QUEUE_FRAMES 1024
#define MT_DECODER_QUEUE_BYTES (1u << 20)

struct mt_decoder_stats {
    uint64_t runs;     /* decoder_run calls */
    uint64_t readings; /* readings emitted */
    uint64_t errors;   /* runs that failed: script error, limit, malformed result */
    uint64_t budget;   /* of those: instruction budget or time limit */
    uint64_t memory;   /* of those: memory cap */
    uint64_t refused;  /* readings emit refused (MITTARI_EREADING) */
    uint64_t skipped;  /* frames not decoded: paused, queue full, at free */
    uint64_t pauses;   /* times the breaker paused the decoder */
};

/* Limits and breaker settings; 0 = the MT_DECODER_* default. */
struct mt_decoder_conf {
    struct mt_luabox_limits limits;
    size_t trips; /* at most MT_DECODER_TRIPS */
    int64_t trip_window_us;
    int64_t pause_us, pause_max_us;
    size_t queue_frames, queue_bytes;
    /* the breaker's clock, monotonic µs, any thread; NULL = mt_mono_us
     * (tests inject their own) */
    int64_t (*clock)(void *arg);
    void *clock_arg;
};

/* The host calls (wire into mt_host_api as decoder_load/run/free).
 * load: 0; MITTARI_ECONFIG when the script does not compile, fails at its
 * top level or defines no decode function (logged with file:line through
 * the host's log); -errno when the file cannot be read; -ENOMEM.
 * run: the number of readings emitted; MITTARI_EREADING when the script
 * failed or returned something malformed (then nothing is emitted) or emit
 * refused a reading (the others are still emitted), or the decoder is
 * paused (the frame was skipped); -EAGAIN, MITTARI_EFULL or
 * MITTARI_ESTOPPED from emit as they come (readings before it were
 * emitted, the rest are dropped).
 * submit: 0 (queued), -EBUSY (paused), -ENOBUFS (queue full), -ENOMEM, or
 * -EAGAIN and the like when the thread cannot be started; a frame not
 * queued is counted (decoder_skipped). done(arg, what run would have
 * returned) on the decoder's thread for each frame decoded, under the
 * decoder's host lock: it must not call mt_decoder_* itself.
 * free: NULL is ok; returns at once (see above); queued frames are
 * counted as skipped and logged. */
int mt_decoder_load(struct mittari_ctx *ctx, const char *path, struct mittari_decoder **out);
int mt_decoder_run(struct mittari_decoder *d, const void *frame, size_t len, int64_t ts_us);
int mt_decoder_submit(struct mittari_decoder *d, const void *frame, size_t len, int64_t ts_us,
                      mittari_decoded_cb done, void *arg);
void mt_decoder_free(struct mittari_decoder *d);

/* For configuration checks: compiles path in a fresh sandbox, runs its top
 * level and checks that it defines decode. 0, or the code of
 * mt_decoder_load with a one-line reason in err. Any thread. */
int mt_decoder_check_file(const char *path, char *err, size_t errlen);

/* mt_decoder_load with an explicit host (its emit, log, count and
 * instance_name are used) and limits (NULL = the MT_DECODER_* defaults).
 * For tests, benchmarks and the fuzzer. host is borrowed for the decoder's
 * life. */
int mt_decoder_open(const struct mittari_host *host, struct mittari_ctx *ctx, const char *path,
                    const struct mt_luabox_limits *lim, struct mittari_decoder **out);
/* The same with breaker and queue settings too (conf NULL = defaults). */
int mt_decoder_open_conf(const struct mittari_host *host, struct mittari_ctx *ctx, const char *path,
                         const struct mt_decoder_conf *conf, struct mittari_decoder **out);
/* A consistent copy; any thread. */
void mt_decoder_get_stats(struct mittari_decoder *d, struct mt_decoder_stats *st);

#endif
