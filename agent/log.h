/*
 * log: the SQLite time-series log under the data dir: readings, series,
 * counter states of the normalizer, consumer cursors and states, parked
 * batches, and the log's generation.
 *
 * One struct mt_logdb is one connection, used by one thread at a time: the
 * writer thread owns the only writing connection; each output owns a
 * reading connection used on worker threads; the query command opens its
 * own. WAL mode, so readers never wait for the writer. Nothing here touches
 * the event loop.
 *
 * Errors: 0 or a negative code: -ENOSPC (disk or cap full), -EBUSY,
 * -EIO, -ENOMEM, MITTARI_ESTORAGE (corrupt or not a mittari log);
 * mt_log_errmsg() has SQLite's words.
 */
#ifndef MT_LOG_H
#define MT_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pseudo.h"
#include "series.h"

#define MT_LOG_SCHEMA 3
#define MT_LOG_APP_ID 0x4d545249 /* "MTRI" */

/* What a rule said about a derived reading (mt_row.flags, mt_rec.flags);
 * raw readings have 0. Stored as flags | min_count << 8. */
#define MT_RF_SUPPRESSED 0x01u        /* value withheld: the count was below min_count */
#define MT_RF_REVISION_MASK 0xfeu     /* bits 1..7: 0 = first figure, n = nth correction */
#define MT_RF_REVISION(f) (((unsigned)(f)&MT_RF_REVISION_MASK) >> 1)
/* Stored with a reading a consumer step (a rule) emitted: bit 16 of the
 * flags column (mt_row.derived); outputs select raw or derived readings by it. */
#define MT_LOG_DERIVED (1u << 16)

struct mt_row {
    int64_t seq;
    int64_t ts;
    uint32_t series;
    uint8_t flags;     /* MT_RF_* */
    uint8_t min_count; /* suppression threshold when MT_RF_SUPPRESSED */
    bool derived;      /* emitted by a rule (a consumer step), not by an input */
    double value;      /* 0 when suppressed: the figure is stored nowhere */
    char subject[MT_SUBJECT_SIZE]; /* "" = none */
};

/* MT_LOG_LEAN: a reader that reads a few pages at a time, for a long time
 * (the status worker): 64 KiB of page cache instead of 512, no lookaside. */
enum { MT_LOG_WRITER = 1, MT_LOG_READER = 2, MT_LOG_READONLY = 4, MT_LOG_SYNC_FULL = 8,
       MT_LOG_LEAN = 16 };

struct mt_logdb;

/* err gets a one-line reason on failure. */
int mt_log_open(struct mt_logdb **out, const char *path, int flags, char *err, size_t errlen);
void mt_log_close(struct mt_logdb *db);
const char *mt_log_errmsg(struct mt_logdb *db);
const char *mt_log_path(struct mt_logdb *db);

int mt_log_begin(struct mt_logdb *db);
/* A reader's transaction: the reads until end_read see one state of the
 * log (WAL: the writer goes on meanwhile). */
int mt_log_begin_read(struct mt_logdb *db);
void mt_log_end_read(struct mt_logdb *db);
int mt_log_commit(struct mt_logdb *db);
void mt_log_rollback(struct mt_logdb *db);

int mt_log_put_series(struct mt_logdb *db, const struct mt_series_info *s);
int mt_log_put_reading(struct mt_logdb *db, int64_t seq, int64_t ts, uint32_t series, double value,
                       const char *subject);
/* The same with a derived reading's flags and suppression threshold. */
int mt_log_put_reading_flags(struct mt_logdb *db, int64_t seq, int64_t ts, uint32_t series,
                             double value, const char *subject, unsigned flags,
                             unsigned min_count);
int mt_log_put_counter(struct mt_logdb *db, uint32_t series, uint64_t last, int64_t ts);
int mt_log_put_cursor(struct mt_logdb *db, const char *name, int64_t seq, int64_t now);
int mt_log_put_parked(struct mt_logdb *db, const char *output, int64_t first, int64_t last,
                      const char *error, int64_t now);
/* Parked batches of one output (NULL: all), oldest first. cb returns 0 to go on. */
int mt_log_load_parked(struct mt_logdb *db, const char *output,
                       int (*cb)(void *arg, const char *output, int64_t first, int64_t last,
                                 const char *error, int64_t at),
                       void *arg);
/* A consumer's own state (a rule's windows), opaque to the log; written in
 * the same transaction as its cursor and its derived readings. */
int mt_log_put_state(struct mt_logdb *db, const char *name, int64_t version, const void *state,
                     size_t len, int64_t now);
/* -ENOENT when the consumer has no state. *state is malloc'ed (caller frees;
 * NULL for an empty state). */
int mt_log_get_state(struct mt_logdb *db, const char *name, int64_t *version, void **state,
                     size_t *len);
int mt_log_put_meta(struct mt_logdb *db, const char *key, int64_t value);
int mt_log_get_meta(struct mt_logdb *db, const char *key, int64_t *value); /* -ENOENT if unset */

/* Loading at start-up. Callbacks return 0 to go on. */
int mt_log_load_series(struct mt_logdb *db, struct mt_series_reg *reg);
int mt_log_load_counters(struct mt_logdb *db,
                         int (*cb)(void *arg, uint32_t series, uint64_t last, int64_t ts),
                         void *arg);
/* -ENOENT (and *seq = 0) when the consumer has no cursor in this log */
int mt_log_get_cursor(struct mt_logdb *db, const char *name, int64_t *seq);
int mt_log_load_cursors(struct mt_logdb *db,
                        int (*cb)(void *arg, const char *name, int64_t seq), void *arg);
/* Parked batches, per output: how many, the readings they span, when the
 * last was parked (µs) and why. cb returns 0 to go on. */
struct mt_parked_summary {
    const char *output;
    int64_t batches, readings, last_at;
    const char *last_error;
};
int mt_log_parked_summary(struct mt_logdb *db,
                          int (*cb)(void *arg, const struct mt_parked_summary *p), void *arg);
/* The log's generation: a number chosen when the log file was created
 * (microseconds of the creation time with random low bits), carried with
 * every reading it delivers. A log moved aside and started anew has another
 * one, so (generation, seq) never names two readings. */
int mt_log_generation(struct mt_logdb *db, int64_t *gen);
/* Highest sequence number ever given (survives deletion of every row). */
int mt_log_last_seq(struct mt_logdb *db, int64_t *seq);

/* Housekeeping */
int mt_log_used_bytes(struct mt_logdb *db, uint64_t *bytes);
/* Oldest, newest and an upper bound of the number of rows (seq is dense
 * except where rows were dropped); reads two pages, whatever the size. */
int mt_log_bounds(struct mt_logdb *db, int64_t *min_seq, int64_t *max_seq, int64_t *rows);
/* First seq <= upto whose ts >= cutoff, in seq order; *seq = INT64_MAX when
 * none. It reads the rows before it: upto bounds that work. */
int mt_log_first_young(struct mt_logdb *db, int64_t cutoff_ts, int64_t upto, int64_t *seq);
/* Deletes rows with seq <= upto, at most max_rows of the oldest. */
int mt_log_delete_upto(struct mt_logdb *db, int64_t upto, int64_t max_rows, int64_t *deleted);
int mt_log_integrity(struct mt_logdb *db, char *msg, size_t len); /* quick_check */
/* The file is known damaged: from now on this connection writes nothing
 * more into it, not even the checkpoint at close (the WAL keeps the last
 * commits for a salvage). Rolls back an open transaction. */
void mt_log_set_damaged(struct mt_logdb *db);
/* Any thread: makes a long statement on db (a quick_check) return soon. */
void mt_log_interrupt(struct mt_logdb *db);
/* Tests: cb(arg) every n virtual-machine steps of db's statements, to count
 * the work a call does (cb NULL: no more). cb returns 0. */
void mt_log_progress(struct mt_logdb *db, int n, int (*cb)(void *arg), void *arg);

/* Reading for consumers: rows with after < seq <= upto, in seq order. */
int mt_log_read(struct mt_logdb *db, int64_t after, int64_t upto, size_t max, struct mt_row *rows,
                size_t *n);

/* Query: rows in [since, until) of ts (µs) whose series passes match. */
int mt_log_scan(struct mt_logdb *db, int64_t since, int64_t until, int64_t after_seq, size_t max,
                struct mt_row *rows, size_t *n);

#endif
