#include "log.h"

#include <errno.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <mittari/mittari.h>

enum {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_PUT_READING,
    ST_PUT_SERIES,
    ST_PUT_COUNTER,
    ST_PUT_CURSOR,
    ST_READ,
    ST_SCAN,
    ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_PUT_READING] = "INSERT INTO readings(seq, ts, series, value, subject, flags) "
                       "VALUES(?,?,?,?,?,?)",
    [ST_PUT_SERIES] = "INSERT INTO series(id, site, device, metric, unit, kind, bits, tags, origin) "
                      "VALUES(?,?,?,?,?,?,?,?,?)",
    [ST_PUT_COUNTER] = "INSERT OR REPLACE INTO counters(series, last, ts) VALUES(?,?,?)",
    [ST_PUT_CURSOR] = "INSERT OR REPLACE INTO cursors(name, seq, updated) VALUES(?,?,?)",
    [ST_READ] = "SELECT seq, ts, series, value, subject, flags FROM readings "
                "WHERE seq > ?1 AND seq <= ?2 ORDER BY seq LIMIT ?3",
    [ST_SCAN] = "SELECT seq, ts, series, value, subject, flags FROM readings "
                "WHERE seq > ?1 AND ts >= ?2 AND ts < ?3 ORDER BY seq LIMIT ?4",
};

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS series(id INTEGER PRIMARY KEY, site TEXT NOT NULL,"
    " device TEXT NOT NULL, metric TEXT NOT NULL, unit TEXT NOT NULL, kind INTEGER NOT NULL,"
    " bits INTEGER NOT NULL, tags TEXT NOT NULL, origin TEXT NOT NULL DEFAULT '');"
    "CREATE TABLE IF NOT EXISTS readings(seq INTEGER PRIMARY KEY, ts INTEGER NOT NULL,"
    " series INTEGER NOT NULL, value REAL NOT NULL, subject TEXT,"
    " flags INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS counters(series INTEGER PRIMARY KEY, last INTEGER NOT NULL,"
    " ts INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS cursors(name TEXT PRIMARY KEY, seq INTEGER NOT NULL,"
    " updated INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS parked(output TEXT NOT NULL, first_seq INTEGER NOT NULL,"
    " last_seq INTEGER NOT NULL, error TEXT NOT NULL, at INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS consumer_state(name TEXT PRIMARY KEY, version INTEGER NOT NULL,"
    " state BLOB, updated INTEGER NOT NULL);";

/* Schema 1 -> 2: derived readings' flags, consumer states, the generation. */
static const char upgrade1_sql[] =
    "ALTER TABLE readings ADD COLUMN flags INTEGER NOT NULL DEFAULT 0;"
    "CREATE TABLE IF NOT EXISTS consumer_state(name TEXT PRIMARY KEY, version INTEGER NOT NULL,"
    " state BLOB, updated INTEGER NOT NULL);";
/* Schema 2 -> 3: the rule a derived series comes from. */
static const char upgrade2_sql[] = "ALTER TABLE series ADD COLUMN origin TEXT NOT NULL DEFAULT '';";

struct mt_logdb {
    sqlite3 *db;
    sqlite3_stmt *st[ST_COUNT];
    int flags;
    int64_t schema; /* user_version as opened (a reader may see a schema 1 log) */
    char *path;
};

/* A reader of a schema 1 log that no writer upgraded (a copy given to
 * `mittari query`): the same rows, every flag 0. */
static const char *const stmt_sql_v1[ST_COUNT] = {
    [ST_READ] = "SELECT seq, ts, series, value, subject, 0 FROM readings "
                "WHERE seq > ?1 AND seq <= ?2 ORDER BY seq LIMIT ?3",
    [ST_SCAN] = "SELECT seq, ts, series, value, subject, 0 FROM readings "
                "WHERE seq > ?1 AND ts >= ?2 AND ts < ?3 ORDER BY seq LIMIT ?4",
};

static int map_rc(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_DONE:
    case SQLITE_ROW: return 0;
    case SQLITE_FULL: return -ENOSPC;
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return -EBUSY;
    case SQLITE_NOMEM: return -ENOMEM;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_FORMAT: return MITTARI_ESTORAGE;
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH: return -EACCES;
    case SQLITE_CANTOPEN: return -ENOENT;
    case SQLITE_CONSTRAINT: return -EEXIST;
    default: return -EIO;
    }
}

const char *mt_log_errmsg(struct mt_logdb *db)
{
    return db && db->db ? sqlite3_errmsg(db->db) : "no database";
}

const char *mt_log_path(struct mt_logdb *db)
{
    return db->path;
}

static int exec(struct mt_logdb *db, const char *sql)
{
    return map_rc(sqlite3_exec(db->db, sql, NULL, NULL, NULL));
}

static int pragma_int(struct mt_logdb *db, const char *sql, int64_t *v)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db->db, sql, -1, &st, NULL);
    if (rc)
        return map_rc(rc);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *v = sqlite3_column_int64(st, 0);
    rc = sqlite3_finalize(st);
    return map_rc(rc);
}

/* Before anything writes to the file (not even the switch to WAL): is it
 * ours, or empty? */
static int check_identity(struct mt_logdb *db, int64_t *app, int64_t *ver, char *err, size_t errlen)
{
    int64_t objects = 0;
    int rc;

    if ((rc = pragma_int(db, "PRAGMA application_id", app)) ||
        (rc = pragma_int(db, "PRAGMA user_version", ver)) ||
        (rc = pragma_int(db, "SELECT count(*) FROM sqlite_master", &objects))) {
        snprintf(err, errlen, "cannot read %s: %s", db->path, sqlite3_errmsg(db->db));
        return rc;
    }
    /* most SQLite files have application_id 0: one that holds tables of its
     * own is somebody else's database, not an empty file to make a log in */
    if ((*app != 0 && *app != MT_LOG_APP_ID) || (*app == 0 && objects > 0)) {
        snprintf(err, errlen, "%s is an SQLite database but not a mittari log", db->path);
        return MITTARI_ESTORAGE;
    }
    if (*ver > MT_LOG_SCHEMA) {
        snprintf(err, errlen, "%s has log schema %lld, newer than this agent's %d; upgrade mittari",
                 db->path, (long long)*ver, MT_LOG_SCHEMA);
        return MITTARI_ESTORAGE;
    }
    return 0;
}

/* Microseconds of now with 16 random low bits: increasing from one log to
 * the next on a gateway whose clock is right, and distinct even when two logs
 * are made in the same tick of a clock that is not. Always > 0. */
static int64_t new_generation(void)
{
    struct timespec t;
    uint16_t rnd = 0;

    clock_gettime(CLOCK_REALTIME, &t);
    if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
        rnd = (uint16_t)t.tv_nsec;
    int64_t us = (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
    int64_t gen = (us & ~(int64_t)0xffff) | rnd;
    return gen > 0xffff ? gen : ((int64_t)1 << 40) | rnd;
}

static int prepare_schema(struct mt_logdb *db, int64_t app, int64_t ver, char *err, size_t errlen)
{
    char sql[160];
    int rc;

    if (!(db->flags & MT_LOG_WRITER))
        return 0;
    if (ver == MT_LOG_SCHEMA && app == MT_LOG_APP_ID)
        return 0;
    bool upgrade = app == MT_LOG_APP_ID && ver >= 1;
    rc = exec(db, "BEGIN IMMEDIATE");
    if (!rc)
        rc = exec(db, !upgrade ? schema_sql : ver == 1 ? upgrade1_sql : "");
    if (!rc && upgrade && ver <= 2)
        rc = exec(db, upgrade2_sql);
    if (!rc) {
        /* a log upgraded from schema 1 gets its generation now: what it
         * delivered before carried none */
        snprintf(sql, sizeof(sql),
                 "INSERT OR IGNORE INTO meta(key, value) VALUES('generation', %lld)",
                 (long long)new_generation());
        rc = exec(db, sql);
    }
    if (!rc) {
        snprintf(sql, sizeof(sql), "PRAGMA application_id=%d; PRAGMA user_version=%d",
                 MT_LOG_APP_ID, MT_LOG_SCHEMA);
        rc = exec(db, sql);
    }
    if (!rc)
        rc = exec(db, "COMMIT");
    if (rc) {
        snprintf(err, errlen, "cannot %s the log schema in %s: %s", ver ? "upgrade" : "create",
                 db->path, sqlite3_errmsg(db->db));
        exec(db, "ROLLBACK");
    }
    return rc;
}

int mt_log_open(struct mt_logdb **out, const char *path, int flags, char *err, size_t errlen)
{
    struct mt_logdb *db = calloc(1, sizeof(*db));
    int oflags = SQLITE_OPEN_NOMUTEX;
    int64_t app = 0, ver = 0;
    int rc;

    *out = NULL;
    if (!db)
        return -ENOMEM;
    db->flags = flags;
    db->path = strdup(path);
    if (!db->path) {
        free(db);
        return -ENOMEM;
    }
    if (flags & MT_LOG_READONLY)
        oflags |= SQLITE_OPEN_READONLY;
    else if (flags & MT_LOG_WRITER)
        oflags |= SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    else
        oflags |= SQLITE_OPEN_READWRITE;
    rc = sqlite3_open_v2(path, &db->db, oflags, NULL);
    if (rc) {
        snprintf(err, errlen, "cannot open %s: %s", path,
                 db->db ? sqlite3_errmsg(db->db) : sqlite3_errstr(rc));
        rc = map_rc(rc);
        goto fail;
    }
    sqlite3_extended_result_codes(db->db, 0);
    sqlite3_busy_timeout(db->db, 5000);
    if (flags & MT_LOG_LEAN) /* before any statement: nothing holds lookaside yet */
        sqlite3_db_config(db->db, SQLITE_DBCONFIG_LOOKASIDE, NULL, 0, 0);
    rc = check_identity(db, &app, &ver, err, errlen);
    if (rc)
        goto fail;
    if (flags & MT_LOG_WRITER) {
        int64_t dummy;
        char sql[160];
        /* WAL: readers never block the writer, and a commit is one append.
         * FULL: a commit survives power loss, so an output can never hold a
         * reading the log forgot and whose number it would give again.
         * 512 KiB of page cache, as the readers: the writer appends, so its
         * cache filled with pages it never reads again, up to 2 MiB of RSS
         * after a few minutes at any rate; the smaller one costs no
         * measurable throughput (issue 14, docs/performance.md). */
        snprintf(sql, sizeof(sql),
                 "PRAGMA journal_mode=WAL; PRAGMA synchronous=%s; PRAGMA journal_size_limit=%d;"
                 " PRAGMA cache_size=-512",
                 (flags & MT_LOG_SYNC_FULL) ? "FULL" : "NORMAL", 16 << 20);
        rc = exec(db, sql);
        if (!rc)
            rc = pragma_int(db, "PRAGMA page_count", &dummy);
    } else {
        rc = exec(db, (flags & MT_LOG_LEAN) ? "PRAGMA cache_size=-64" : "PRAGMA cache_size=-512");
    }
    if (rc) {
        snprintf(err, errlen, "cannot use %s: %s", path, sqlite3_errmsg(db->db));
        goto fail;
    }
    rc = prepare_schema(db, app, ver, err, errlen);
    if (rc)
        goto fail;
    db->schema = (flags & MT_LOG_WRITER) ? MT_LOG_SCHEMA : ver;
    for (int i = 0; i < ST_COUNT; i++) {
        const char *sql = db->schema == 1 && stmt_sql_v1[i] ? stmt_sql_v1[i] : stmt_sql[i];
        if ((flags & MT_LOG_READONLY) && i >= ST_PUT_READING && i <= ST_PUT_CURSOR)
            continue;
        if ((db->schema == 1 && i == ST_PUT_READING) || (db->schema < 3 && i == ST_PUT_SERIES))
            continue; /* not a writer: nothing is put */
        rc = sqlite3_prepare_v3(db->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &db->st[i], NULL);
        if (rc) {
            snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(db->db));
            rc = map_rc(rc);
            goto fail;
        }
    }
    *out = db;
    return 0;
fail:
    mt_log_close(db);
    return rc ? rc : -EIO;
}

void mt_log_close(struct mt_logdb *db)
{
    if (!db)
        return;
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(db->st[i]);
    sqlite3_close(db->db);
    free(db->path);
    free(db);
}

static int step_done(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return map_rc(rc);
}

int mt_log_begin(struct mt_logdb *db)
{
    return step_done(db->st[ST_BEGIN]);
}

int mt_log_begin_read(struct mt_logdb *db)
{
    return map_rc(sqlite3_exec(db->db, "BEGIN DEFERRED", NULL, NULL, NULL));
}

void mt_log_end_read(struct mt_logdb *db)
{
    if (!sqlite3_get_autocommit(db->db))
        sqlite3_exec(db->db, "COMMIT", NULL, NULL, NULL);
}

int mt_log_commit(struct mt_logdb *db)
{
    return step_done(db->st[ST_COMMIT]);
}

void mt_log_rollback(struct mt_logdb *db)
{
    if (!sqlite3_get_autocommit(db->db))
        step_done(db->st[ST_ROLLBACK]);
}

int mt_log_put_series(struct mt_logdb *db, const struct mt_series_info *s)
{
    sqlite3_stmt *st = db->st[ST_PUT_SERIES];
    sqlite3_bind_int64(st, 1, s->id);
    sqlite3_bind_text(st, 2, s->site, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, s->device, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, s->metric, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, s->unit, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 6, s->kind);
    sqlite3_bind_int(st, 7, (int)s->bits);
    sqlite3_bind_text(st, 8, s->tags, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 9, s->origin ? s->origin : "", -1, SQLITE_STATIC);
    return step_done(st);
}

int mt_log_put_reading_flags(struct mt_logdb *db, int64_t seq, int64_t ts, uint32_t series,
                             double value, const char *subject, unsigned flags,
                             unsigned min_count)
{
    sqlite3_stmt *st = db->st[ST_PUT_READING];
    if (!st)
        return -EACCES;
    sqlite3_bind_int64(st, 1, seq);
    sqlite3_bind_int64(st, 2, ts);
    sqlite3_bind_int64(st, 3, series);
    sqlite3_bind_double(st, 4, value);
    if (subject && *subject)
        sqlite3_bind_text(st, 5, subject, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 5);
    sqlite3_bind_int64(st, 6, (int64_t)((flags & (0xffu | MT_LOG_DERIVED)) | (min_count & 0xffu) << 8));
    return step_done(st);
}

int mt_log_put_reading(struct mt_logdb *db, int64_t seq, int64_t ts, uint32_t series, double value,
                       const char *subject)
{
    return mt_log_put_reading_flags(db, seq, ts, series, value, subject, 0, 0);
}

int mt_log_put_counter(struct mt_logdb *db, uint32_t series, uint64_t last, int64_t ts)
{
    sqlite3_stmt *st = db->st[ST_PUT_COUNTER];
    sqlite3_bind_int64(st, 1, series);
    sqlite3_bind_int64(st, 2, (int64_t)last); /* bit pattern: 64-bit counters round-trip */
    sqlite3_bind_int64(st, 3, ts);
    return step_done(st);
}

int mt_log_put_cursor(struct mt_logdb *db, const char *name, int64_t seq, int64_t now)
{
    sqlite3_stmt *st = db->st[ST_PUT_CURSOR];
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, seq);
    sqlite3_bind_int64(st, 3, now);
    return step_done(st);
}

int mt_log_put_parked(struct mt_logdb *db, const char *output, int64_t first, int64_t last,
                      const char *error, int64_t now)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db->db,
                                "INSERT INTO parked(output, first_seq, last_seq, error, at) "
                                "VALUES(?,?,?,?,?)",
                                -1, &st, NULL);
    if (rc)
        return map_rc(rc);
    sqlite3_bind_text(st, 1, output, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, first);
    sqlite3_bind_int64(st, 3, last);
    sqlite3_bind_text(st, 4, error, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, now);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return map_rc(rc);
}

static const char *col_text(sqlite3_stmt *st, int i);

int mt_log_load_parked(struct mt_logdb *db, const char *output,
                       int (*cb)(void *arg, const char *output, int64_t first, int64_t last,
                                 const char *error, int64_t at),
                       void *arg)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db->db,
                                "SELECT output, first_seq, last_seq, error, at FROM parked "
                                "WHERE ?1 IS NULL OR output = ?1 ORDER BY at, first_seq",
                                -1, &st, NULL);
    if (rc)
        return map_rc(rc);
    sqlite3_bind_text(st, 1, output, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (cb(arg, col_text(st, 0), sqlite3_column_int64(st, 1), sqlite3_column_int64(st, 2),
               col_text(st, 3), sqlite3_column_int64(st, 4))) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_finalize(st);
    return map_rc(rc == SQLITE_DONE ? SQLITE_OK : rc);
}

int mt_log_put_state(struct mt_logdb *db, const char *name, int64_t version, const void *state,
                     size_t len, int64_t now)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db->db,
                                "INSERT OR REPLACE INTO consumer_state(name, version, state, updated)"
                                " VALUES(?,?,?,?)",
                                -1, &st, NULL);
    if (rc)
        return map_rc(rc);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, version);
    if (state && len)
        sqlite3_bind_blob64(st, 3, state, len, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 3);
    sqlite3_bind_int64(st, 4, now);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return map_rc(rc);
}

int mt_log_get_state(struct mt_logdb *db, const char *name, int64_t *version, void **state,
                     size_t *len)
{
    sqlite3_stmt *st;
    int rc;

    *state = NULL;
    *len = 0;
    *version = 0;
    if (db->schema < 2)
        return -ENOENT;
    rc = sqlite3_prepare_v2(db->db, "SELECT version, state FROM consumer_state WHERE name = ?",
                            -1, &st, NULL);
    if (rc)
        return map_rc(rc);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const void *b = sqlite3_column_blob(st, 1);
        int n = sqlite3_column_bytes(st, 1);
        *version = sqlite3_column_int64(st, 0);
        rc = 0;
        if (b && n > 0) {
            *state = malloc((size_t)n);
            if (*state) {
                memcpy(*state, b, (size_t)n);
                *len = (size_t)n;
            } else {
                rc = -ENOMEM;
            }
        }
    } else {
        rc = rc == SQLITE_DONE ? -ENOENT : map_rc(rc);
    }
    sqlite3_finalize(st);
    return rc;
}

int mt_log_generation(struct mt_logdb *db, int64_t *gen)
{
    int rc = mt_log_get_meta(db, "generation", gen);
    if (rc == -ENOENT) {
        *gen = 0; /* a schema 1 log no writer has opened since */
        return 0;
    }
    return rc;
}

int mt_log_put_meta(struct mt_logdb *db, const char *key, int64_t value)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db->db, "INSERT OR REPLACE INTO meta(key, value) VALUES(?,?)", -1,
                                &st, NULL);
    if (rc)
        return map_rc(rc);
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, value);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return map_rc(rc);
}

int mt_log_get_meta(struct mt_logdb *db, const char *key, int64_t *value)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db->db, "SELECT value FROM meta WHERE key = ?", -1, &st, NULL);
    if (rc)
        return map_rc(rc);
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *value = sqlite3_column_int64(st, 0);
        rc = 0;
    } else {
        rc = rc == SQLITE_DONE ? -ENOENT : map_rc(rc);
    }
    sqlite3_finalize(st);
    return rc;
}

static const char *col_text(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? (const char *)t : "";
}

int mt_log_load_series(struct mt_logdb *db, struct mt_series_reg *reg)
{
    sqlite3_stmt *st;
    /* a reader of an older log that no writer upgraded: no origins yet */
    int rc = sqlite3_prepare_v2(db->db,
                                db->schema >= 3 ? "SELECT id, site, device, metric, unit, kind, "
                                                  "bits, tags, origin FROM series ORDER BY id"
                                                : "SELECT id, site, device, metric, unit, kind, "
                                                  "bits, tags, '' FROM series ORDER BY id",
                                -1, &st, NULL);
    if (rc)
        return map_rc(rc);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct mt_series_info s = {
            .id = (uint32_t)sqlite3_column_int64(st, 0),
            .site = col_text(st, 1),
            .device = col_text(st, 2),
            .metric = col_text(st, 3),
            .unit = col_text(st, 4),
            .kind = sqlite3_column_int(st, 5),
            .bits = (unsigned)sqlite3_column_int(st, 6),
            .tags = col_text(st, 7),
            .origin = col_text(st, 8),
        };
        int r = mt_series_add_loaded(reg, &s);
        if (r) {
            sqlite3_finalize(st);
            return r == -EINVAL ? MITTARI_ESTORAGE : r;
        }
    }
    sqlite3_finalize(st);
    return map_rc(rc);
}

int mt_log_load_counters(struct mt_logdb *db,
                         int (*cb)(void *arg, uint32_t series, uint64_t last, int64_t ts),
                         void *arg)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db->db, "SELECT series, last, ts FROM counters", -1, &st, NULL);
    if (rc)
        return map_rc(rc);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int r = cb(arg, (uint32_t)sqlite3_column_int64(st, 0),
                   (uint64_t)sqlite3_column_int64(st, 1), sqlite3_column_int64(st, 2));
        if (r) {
            sqlite3_finalize(st);
            return r;
        }
    }
    sqlite3_finalize(st);
    return map_rc(rc);
}

int mt_log_load_cursors(struct mt_logdb *db,
                        int (*cb)(void *arg, const char *name, int64_t seq), void *arg)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db->db, "SELECT name, seq FROM cursors", -1, &st, NULL);
    if (rc)
        return map_rc(rc);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int r = cb(arg, col_text(st, 0), sqlite3_column_int64(st, 1));
        if (r) {
            sqlite3_finalize(st);
            return r;
        }
    }
    sqlite3_finalize(st);
    return map_rc(rc);
}

int mt_log_parked_summary(struct mt_logdb *db,
                          int (*cb)(void *arg, const struct mt_parked_summary *p), void *arg)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(
        db->db,
        "SELECT output, count(*), sum(last_seq - first_seq + 1), max(at),"
        " (SELECT error FROM parked q WHERE q.output = p.output ORDER BY at DESC LIMIT 1)"
        " FROM parked p GROUP BY output ORDER BY output",
        -1, &st, NULL);
    if (rc)
        return map_rc(rc);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct mt_parked_summary ps = {
            .output = col_text(st, 0),
            .batches = sqlite3_column_int64(st, 1),
            .readings = sqlite3_column_int64(st, 2),
            .last_at = sqlite3_column_int64(st, 3),
            .last_error = col_text(st, 4),
        };
        int r = cb(arg, &ps);
        if (r) {
            sqlite3_finalize(st);
            return r;
        }
    }
    sqlite3_finalize(st);
    return map_rc(rc);
}

int mt_log_get_cursor(struct mt_logdb *db, const char *name, int64_t *seq)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db->db, "SELECT seq FROM cursors WHERE name = ?", -1, &st, NULL);
    if (rc)
        return map_rc(rc);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    *seq = 0;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *seq = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? -ENOENT : map_rc(rc);
}

int mt_log_last_seq(struct mt_logdb *db, int64_t *seq)
{
    int64_t a = 0, b = 0;
    int rc = pragma_int(db, "SELECT coalesce(max(seq), 0) FROM readings", &a);
    if (rc)
        return rc;
    rc = mt_log_get_meta(db, "last_seq", &b);
    if (rc && rc != -ENOENT)
        return rc;
    *seq = a > b ? a : b;
    return 0;
}

int mt_log_used_bytes(struct mt_logdb *db, uint64_t *bytes)
{
    int64_t pages = 0, free_pages = 0, size = 0;
    int rc = pragma_int(db, "PRAGMA page_count", &pages);
    if (!rc)
        rc = pragma_int(db, "PRAGMA freelist_count", &free_pages);
    if (!rc)
        rc = pragma_int(db, "PRAGMA page_size", &size);
    if (!rc)
        *bytes = (uint64_t)(pages - free_pages) * (uint64_t)size;
    return rc;
}

int mt_log_bounds(struct mt_logdb *db, int64_t *min_seq, int64_t *max_seq, int64_t *rows)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(
        /* two subqueries: each reads one end of the rowid b-tree, while
         * min() and max() in one SELECT scan the whole table */
        db->db,
        "SELECT coalesce((SELECT min(seq) FROM readings), 0),"
        " coalesce((SELECT max(seq) FROM readings), 0)",
        -1, &st, NULL);
    if (rc)
        return map_rc(rc);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *min_seq = sqlite3_column_int64(st, 0);
        *max_seq = sqlite3_column_int64(st, 1);
        /* seq is dense except where rows were dropped: a cheap upper bound */
        *rows = *max_seq ? *max_seq - *min_seq + 1 : 0;
    }
    sqlite3_finalize(st);
    return map_rc(rc);
}

int mt_log_first_young(struct mt_logdb *db, int64_t cutoff_ts, int64_t upto, int64_t *seq)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(
        db->db, "SELECT seq FROM readings WHERE seq <= ?2 AND ts >= ?1 ORDER BY seq LIMIT 1", -1,
        &st, NULL);
    if (rc)
        return map_rc(rc);
    sqlite3_bind_int64(st, 1, cutoff_ts);
    sqlite3_bind_int64(st, 2, upto);
    rc = sqlite3_step(st);
    *seq = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : INT64_MAX;
    sqlite3_finalize(st);
    return map_rc(rc);
}

int mt_log_delete_upto(struct mt_logdb *db, int64_t upto, int64_t max_rows, int64_t *deleted)
{
    int64_t lo = 0, hi = 0, rows = 0;
    sqlite3_stmt *st;
    int rc = mt_log_bounds(db, &lo, &hi, &rows);

    *deleted = 0;
    if (rc || rows == 0 || upto < lo)
        return rc;
    if (upto - lo + 1 > max_rows)
        upto = lo + max_rows - 1;
    rc = sqlite3_prepare_v2(db->db, "DELETE FROM readings WHERE seq <= ?", -1, &st, NULL);
    if (rc)
        return map_rc(rc);
    sqlite3_bind_int64(st, 1, upto);
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
        *deleted = sqlite3_changes(db->db);
    sqlite3_finalize(st);
    return map_rc(rc);
}

int mt_log_integrity(struct mt_logdb *db, char *msg, size_t len)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db->db, "PRAGMA quick_check", -1, &st, NULL);
    if (rc) {
        snprintf(msg, len, "%s", sqlite3_errmsg(db->db));
        return map_rc(rc);
    }
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        /* "ok", or one row per problem found: the first says what */
        snprintf(msg, len, "%s", col_text(st, 0));
        rc = strcmp(col_text(st, 0), "ok") == 0 ? 0 : MITTARI_ESTORAGE;
    } else {
        snprintf(msg, len, "%s", sqlite3_errmsg(db->db));
        rc = (rc & 0xff) == SQLITE_INTERRUPT ? -EINTR : rc == SQLITE_DONE ? MITTARI_ESTORAGE : map_rc(rc);
    }
    sqlite3_finalize(st);
    return rc;
}

void mt_log_set_damaged(struct mt_logdb *db)
{
    mt_log_rollback(db);
    sqlite3_db_config(db->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, (int *)NULL);
    sqlite3_wal_autocheckpoint(db->db, 0);
    exec(db, "PRAGMA query_only=1");
}

void mt_log_interrupt(struct mt_logdb *db)
{
    sqlite3_interrupt(db->db);
}

void mt_log_progress(struct mt_logdb *db, int n, int (*cb)(void *arg), void *arg)
{
    sqlite3_progress_handler(db->db, n, cb, arg);
}

static int fetch_rows(sqlite3_stmt *st, size_t max, struct mt_row *rows, size_t *n)
{
    int rc = SQLITE_DONE;

    *n = 0;
    while (*n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct mt_row *r = &rows[(*n)++];
        r->seq = sqlite3_column_int64(st, 0);
        r->ts = sqlite3_column_int64(st, 1);
        r->series = (uint32_t)sqlite3_column_int64(st, 2);
        r->value = sqlite3_column_double(st, 3);
        int64_t f = sqlite3_column_int64(st, 5);
        r->flags = (uint8_t)(f & 0xff);
        r->min_count = (uint8_t)((f >> 8) & 0xff);
        r->derived = (f & MT_LOG_DERIVED) != 0;
        const unsigned char *s = sqlite3_column_text(st, 4);
        size_t len = s ? (size_t)sqlite3_column_bytes(st, 4) : 0;
        if (len >= sizeof(r->subject))
            len = sizeof(r->subject) - 1;
        memcpy(r->subject, s ? (const char *)s : "", len);
        r->subject[len] = 0;
    }
    if (*n == max)
        rc = SQLITE_DONE;
    sqlite3_reset(st);
    return map_rc(rc);
}

int mt_log_read(struct mt_logdb *db, int64_t after, int64_t upto, size_t max, struct mt_row *rows,
                size_t *n)
{
    sqlite3_stmt *st = db->st[ST_READ];
    sqlite3_bind_int64(st, 1, after);
    sqlite3_bind_int64(st, 2, upto);
    sqlite3_bind_int64(st, 3, (int64_t)max);
    return fetch_rows(st, max, rows, n);
}

int mt_log_scan(struct mt_logdb *db, int64_t since, int64_t until, int64_t after_seq, size_t max,
                struct mt_row *rows, size_t *n)
{
    sqlite3_stmt *st = db->st[ST_SCAN];
    sqlite3_bind_int64(st, 1, after_seq);
    sqlite3_bind_int64(st, 2, since);
    sqlite3_bind_int64(st, 3, until);
    sqlite3_bind_int64(st, 4, (int64_t)max);
    return fetch_rows(st, max, rows, n);
}
