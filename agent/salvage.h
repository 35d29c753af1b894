/*
 * salvage: `mittari salvage`, the way out of a damaged log (issue 8 §2).
 * Moves the damaged files aside (mittari.db, -wal, -shm → mittari.db.
 * damaged-TIME), reads every row SQLite can still read from them, and
 * writes a new mittari.db: series, counter states, cursors, consumer
 * states, parked batches and readings with their own sequence numbers, in
 * the same generation, so outputs go on where they were and no (generation,
 * seq) ever names two readings.
 *
 * The generation is kept only when the sequence space is known: the
 * highest seq of the damaged log could be read. Otherwise the new log gets
 * a generation of its own (its numbers may then repeat old ones, in another
 * generation, as after moving a log aside by hand).
 *
 * Where the readings table is damaged, the scan skips ahead to the next
 * row it can read (probing with growing steps, then narrowing down) and
 * reports the seq ranges it could not read. Series ids stay as they were: a
 * series row that cannot be read is kept as a placeholder (salvage/lost/
 * series_N) and its readings are left out, counted.
 *
 * The agent must not run: salvage takes the data dir's lock. CLI thread
 * only; reads the damaged file with SQLite directly and writes the new one
 * through log.h. Never writes into the damaged files.
 */
#ifndef MT_SALVAGE_H
#define MT_SALVAGE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define MT_SALVAGE_MAX_GAPS 16

struct mt_salvage_report {
    char moved_to[4096]; /* the damaged log's new name */
    bool opened;         /* SQLite could open the damaged file at all */
    int64_t generation;
    bool generation_kept;
    int64_t last_seq;    /* the new log numbers on from here */
    uint64_t readings, series, lost_series, counters, cursors, states, parked;
    uint64_t rows_left_out; /* readable but unusable: unknown series, bad fields */
    size_t ngaps;           /* seq ranges that could not be read */
    int64_t gap_first[MT_SALVAGE_MAX_GAPS], gap_last[MT_SALVAGE_MAX_GAPS]; /* -1: to the end */
    uint64_t more_gaps; /* beyond MT_SALVAGE_MAX_GAPS */
    bool tables_incomplete; /* some of series, counters, cursors, states, parked */
};

/* 0 and the report, or -EBUSY (the agent runs: err names its pid), -ENOENT
 * (no log in data_dir) or another -errno / MITTARI_ESTORAGE with err set.
 * progress (may be NULL) gets a line now and then. */
int mt_salvage(const char *data_dir, struct mt_salvage_report *r, FILE *progress, char *err,
               size_t errlen);
/* The report in words, for the command's output. */
void mt_salvage_print(const struct mt_salvage_report *r, FILE *out);

#endif
