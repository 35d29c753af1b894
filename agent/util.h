/*
 * util: small helpers with no state of their own: clocks, time formatting,
 * a growable byte buffer, JSON/CSV escaping, base64url, hashing, an arena,
 * did-you-mean, and parsers for durations and sizes.
 *
 * Any thread; nothing here blocks or logs.
 */
#ifndef MT_UTIL_H
#define MT_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MT_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

int64_t mt_now_us(void);  /* CLOCK_REALTIME, µs since the epoch */
int64_t mt_mono_us(void); /* CLOCK_MONOTONIC, µs */

/* The calling thread: named (top -H shows it) and `nicer` nicer than the
 * process (Linux: per thread), for work that may wait while readings may
 * not (the status worker). */
void mt_thread_background(const char *name, int nicer);
/* The calling thread: named, and run only when a CPU has nothing else to
 * do (SCHED_IDLE; Linux: per thread), for a long read that can wait (the
 * log check after start). */
void mt_thread_idle(const char *name);

/* Checked duration arithmetic (issue 15): every "ms * 1000" of a configured
 * duration goes through these, so a huge value clamps at the int64 range
 * instead of wrapping round to a negative time. */
int64_t mt_add_sat(int64_t a, int64_t b);
int64_t mt_mul_sat(int64_t a, int64_t b);
static inline int64_t mt_ms_to_us(int64_t ms)
{
    return mt_mul_sat(ms, 1000);
}

/* "2026-11-25T15:25:44.123456Z"; frac_digits 0 or 6. Returns length. */
size_t mt_fmt_utc(int64_t us, char *buf, size_t len, int frac_digits);

/* Growable buffer. Appends abort on allocation failure only via the return
 * value: every append returns 0 or -ENOMEM and leaves the buffer valid. */
struct mt_buf {
    char *p;
    size_t len, cap;
};

void mt_buf_free(struct mt_buf *b);
int mt_buf_reserve(struct mt_buf *b, size_t extra);
/* Empties b for a text of about want bytes, keeping its memory unless it
 * holds more than twice that: a buffer filled again batch after batch is
 * not kept at the size a drain grew it to. */
void mt_buf_refill(struct mt_buf *b, size_t want);
int mt_buf_add(struct mt_buf *b, const void *data, size_t n);
int mt_buf_adds(struct mt_buf *b, const char *s);
int mt_buf_addc(struct mt_buf *b, char c);
int mt_buf_printf(struct mt_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* JSON string with quotes; control characters escaped; bytes >= 0x80 are
 * copied (inputs are validated UTF-8 or ASCII). */
int mt_buf_json_str(struct mt_buf *b, const char *s);
/* RFC 4180 field: quoted only when it holds , " CR or LF. */
int mt_buf_csv_str(struct mt_buf *b, const char *s);
/* Shortest text that reads back as the same double; integers without ".0";
 * "null" for NaN and infinities. */
int mt_buf_double(struct mt_buf *b, double v);
int mt_buf_i64(struct mt_buf *b, int64_t v);
/* The same into out (not NUL-terminated); the length written. */
enum { MT_FMT_I64 = 24, MT_FMT_DOUBLE = 40 };
size_t mt_fmt_i64(char out[MT_FMT_I64], int64_t v);
size_t mt_fmt_double(char out[MT_FMT_DOUBLE], double v);
const char *mt_buf_cstr(struct mt_buf *b); /* NUL-terminated view ("" if empty) */

size_t mt_base64url(const uint8_t *in, size_t n, char *out, size_t outlen);

/* A fast 64-bit hash for in-memory tables (never stored): chainable. */
uint64_t mt_hash_bytes(uint64_t h, const void *p, size_t n);
#define MT_HASH_INIT 0xcbf29ce484222325ull

/* Arena: many small allocations freed at once. */
struct mt_arena_chunk;
struct mt_arena {
    struct mt_arena_chunk *head;
};
void *mt_arena_alloc(struct mt_arena *a, size_t n); /* zeroed, 16-byte aligned; NULL on ENOMEM */
char *mt_arena_strdup(struct mt_arena *a, const char *s);
char *mt_arena_strndup(struct mt_arena *a, const char *s, size_t n);
void mt_arena_free(struct mt_arena *a);

/* Edit distance with neighbour swaps (bounded: returns max+1 when larger). */
unsigned mt_edit_distance(const char *a, const char *b, unsigned max);
/* Closest candidate within a distance that scales with the word and keeps
 * at least half of the candidate, else one that is a _-separated part of
 * the word (word_order -> order), or NULL. */
const char *mt_did_you_mean(const char *word, const char *const *cands, size_t n);

/* "250ms", "5s", "2m", "1h", "7d", "1w"; a plain number is seconds. */
int mt_parse_duration_ms(const char *s, int64_t *ms);
/* "512", "64KiB", "64KB", "64K", "10MiB", "1GiB"; K=1024 (documented). */
int mt_parse_size(const char *s, uint64_t *bytes);
int mt_parse_i64(const char *s, int64_t *v);
int mt_parse_double(const char *s, double *v);
int mt_parse_bool(const char *s, bool *v);

/* Writes a whole buffer, retrying EINTR and short writes. 0 or -errno. */
int mt_write_all(int fd, const void *p, size_t n);
/* mkdir -p with mode for created components. 0 or -errno. */
int mt_mkdirs(const char *path, unsigned mode);
/* Locks DIR/mittari.lock (flock, held while *fd is open) and writes our pid
 * into it. -EBUSY when another process holds it: holder gets its pid text
 * ("?" if unknown). Other errors -errno; *fd is -1 then. */
int mt_lock_dir(const char *dir, int *fd, char *holder, size_t len);

#endif
