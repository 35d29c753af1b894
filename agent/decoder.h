/*
 * decoder: Lua decoders for input plugins, the decoder_load / decoder_run /
 * decoder_free calls of struct mittari_host. A device protocol in a few lines
 * of Lua: the file defines decode(frame, ts) returning nil, one reading or a
 * list of readings (tables); the agent checks each field and emits them
 * through the host's emit, which pseudonymises subjects.
 *
 * Owns one sandbox (luabox.h) per decoder, so scripts never share globals;
 * a decoder's own globals persist from one frame to the next. Load and free
 * on the thread that owns the instance; run from one thread at a time (the
 * SDK says: the thread that loaded it). A decoder never blocks, never aborts
 * and never logs a frame's bytes: script failures and malformed results are
 * logged rate-limited with file:line, counted ("decoder_errors") and
 * returned as MITTARI_EREADING.
 *
 * Limits per decoder: MT_DECODER_MEM bytes of Lua memory, MT_DECODER_INSNS
 * instructions and MT_DECODER_TIME_MS per call (load included), at most
 * MT_DECODER_MAX_READINGS readings per frame.
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

struct mt_decoder_stats {
    uint64_t runs;     /* decoder_run calls */
    uint64_t readings; /* readings emitted */
    uint64_t errors;   /* runs that failed: script error, limit, malformed result */
    uint64_t budget;   /* of those: instruction budget or time limit */
    uint64_t memory;   /* of those: memory cap */
    uint64_t refused;  /* readings emit refused (MITTARI_EREADING) */
};

/* The host calls (wire into mt_host_api as decoder_load/run/free).
 * load: 0; MITTARI_ECONFIG when the script does not compile, fails at its
 * top level or defines no decode function (logged with file:line through
 * the host's log); -errno when the file cannot be read; -ENOMEM.
 * run: the number of readings emitted; MITTARI_EREADING when the script
 * failed or returned something malformed (then nothing is emitted) or emit
 * refused a reading (the others are still emitted); -EAGAIN, MITTARI_EFULL
 * or MITTARI_ESTOPPED from emit as they come (readings before it were
 * emitted, the rest are dropped). free: NULL is ok. */
int mt_decoder_load(struct mittari_ctx *ctx, const char *path, struct mittari_decoder **out);
int mt_decoder_run(struct mittari_decoder *d, const void *frame, size_t len, int64_t ts_us);
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
void mt_decoder_get_stats(const struct mittari_decoder *d, struct mt_decoder_stats *st);

#endif
