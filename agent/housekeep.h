/*
 * housekeep: what the writer deletes from the log and when it refuses
 * readings: retention (rows every consumer has passed and older than
 * retention) and the size cap with its policy (drop_oldest, or
 * block_inputs: the writer's `full` flag), counted and logged, never
 * silent.
 *
 * Deletion takes a prefix of the log in chunks, each in its own
 * transaction with the high-water mark meta.last_seq, so a crash never
 * rewinds sequence numbers. Writer thread only, on the writer's
 * connection; never touches the writer's lock.
 */
#ifndef MT_HOUSEKEEP_H
#define MT_HOUSEKEEP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "diag.h"
#include "log.h"
#include "writer.h"

/* What a housekeeping round works with, from the writer. */
struct mt_housekeep_env {
    struct mt_logdb *db;
    int64_t last_seq;  /* the highest seq given */
    int64_t delivered; /* every consumer has passed this seq (no consumer: last_seq) */
    const struct mt_writer_conf *conf;
    _Atomic bool *full; /* block_inputs: emit refuses while set */
    struct mt_writer_stats *stats;
};

/* The complaints of one writer. Zeroed to start. */
struct mt_housekeep {
    struct mt_complain c_cap, c_full;
};

/* 0, or the storage error that stopped it (MITTARI_ESTORAGE: damaged). */
int mt_housekeep_retention(struct mt_housekeep *h, const struct mt_housekeep_env *e);
/* Above the cap, or above 90 % of it while inputs are blocked: first the
 * rows every consumer has passed, down to 90 %; then the policy. Blocked
 * inputs come back at or below 90 %, or at once when the cap is lifted or
 * the policy changed (issue 15). 0 or the storage error. */
int mt_housekeep_cap(struct mt_housekeep *h, const struct mt_housekeep_env *e);

#endif
