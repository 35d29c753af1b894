#include "salvage.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mittari/mittari.h>

#include "log.h"
#include "util.h"

#define BATCH 1000
#define COMMIT_EVERY 20000

/* ---- reading the damaged file ---- */

/* Opens path for reading only in effect: WAL recovery may touch -shm, but
 * nothing is ever written into the database or its WAL, not even the
 * checkpoint at close. */
static sqlite3 *open_damaged(const char *path)
{
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, (int *)NULL);
    /* writable_schema: SQLite then reads a file shorter than its header
     * says (truncated) instead of refusing it whole; query_only keeps it
     * from writing anything all the same */
    sqlite3_exec(db, "PRAGMA query_only=1; PRAGMA writable_schema=1", NULL, NULL, NULL);
    sqlite3_busy_timeout(db, 2000);
    return db;
}

/* 0 and *v, or -1 when it cannot be read (or is NULL: *v = 0, 0). */
static int one_int(sqlite3 *db, const char *sql, const char *arg, int64_t *v)
{
    sqlite3_stmt *st;
    int rc = -1;
    *v = 0;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return -1;
    if (arg)
        sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    if (s == SQLITE_DONE)
        rc = 0; /* no such row */
    if (s == SQLITE_ROW) {
        if (sqlite3_column_type(st, 0) == SQLITE_INTEGER)
            *v = sqlite3_column_int64(st, 0);
        rc = sqlite3_column_type(st, 0) == SQLITE_INTEGER ||
                     sqlite3_column_type(st, 0) == SQLITE_NULL
                 ? 0
                 : -1;
    }
    sqlite3_finalize(st);
    return rc;
}

/* A table read in key order, past damage. For each readable row cb(arg,
 * st) with the key in column 0; a row cb refuses is left out (counted by
 * cb). gap(arg, first, last) for each range of keys it could not read. */
struct scan {
    sqlite3 *db;
    const char *table, *key, *cols;
    int (*row)(void *arg, sqlite3_stmt *st); /* 0, or -errno to abort */
    void (*gap)(void *arg, int64_t first, int64_t last);
    void *arg;
    int64_t bound; /* keys are below it */
    bool damaged;
};

/* 1: a row with key > q could be read (*first its key); 0: there is none;
 * -1: the way to it is damaged. */
static int probe(struct scan *s, int64_t q, int64_t *first)
{
    char sql[256];
    sqlite3_stmt *st;
    snprintf(sql, sizeof(sql), "SELECT %s FROM %s WHERE %s > ?1 ORDER BY %s LIMIT 1", s->key,
             s->table, s->key, s->key);
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, q);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *first = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* After a read that failed past after: the smallest q whose "key > q"
 * reads again (growing steps, then halving) in *resume, and the first key
 * beyond it (0: none, the end). */
static int64_t skip(struct scan *s, int64_t after, int64_t *resume)
{
    int64_t lo = after, hi = 0, first = 0, step = 1;
    int rc;

    for (;;) {
        hi = mt_add_sat(after, step);
        if (hi >= s->bound) {
            *resume = s->bound - 1;
            return 0;
        }
        rc = probe(s, hi, &first);
        if (rc >= 0)
            break;
        lo = hi;
        step = mt_mul_sat(step, 2);
    }
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2, f2 = 0;
        int r2 = probe(s, mid, &f2);
        if (r2 >= 0) {
            hi = mid;
            rc = r2;
            first = f2;
        } else {
            lo = mid;
        }
    }
    *resume = hi;
    return rc == 1 ? first : 0;
}

/* The row with key exactly k, read on its own: the first row after a
 * damaged leaf sits where a "key > q" search cannot reach it without
 * touching the damage. 1 when there is one. */
static int read_one(struct scan *s, int64_t k, int *err)
{
    char sql[512];
    sqlite3_stmt *st;
    int found = 0;
    snprintf(sql, sizeof(sql), "SELECT %s, %s FROM %s WHERE %s = ?1", s->key, s->cols, s->table,
             s->key);
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_int64(st, 1, k);
    if (sqlite3_step(st) == SQLITE_ROW) {
        found = 1;
        *err = s->row(s->arg, st);
    }
    sqlite3_finalize(st);
    return found;
}

/* 0, or the row callback's error. */
static int scan_table(struct scan *s)
{
    char sql[512];
    sqlite3_stmt *st;
    int64_t after = INT64_MIN;

    snprintf(sql, sizeof(sql), "SELECT %s, %s FROM %s WHERE %s > ?1 ORDER BY %s LIMIT %d", s->key,
             s->cols, s->table, s->key, s->key, BATCH);
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
        s->damaged = true; /* the schema itself cannot be read */
        return 0;
    }
    for (;;) {
        int n = 0, rc;
        sqlite3_bind_int64(st, 1, after);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            after = sqlite3_column_int64(st, 0);
            n++;
            int e = s->row(s->arg, st);
            if (e) {
                sqlite3_finalize(st);
                return e;
            }
        }
        sqlite3_reset(st);
        if (rc == SQLITE_DONE && n < BATCH)
            break;
        if (rc == SQLITE_DONE)
            continue;
        s->damaged = true;
        int64_t from = after == INT64_MIN ? 0 : after, q = 0;
        int64_t first = skip(s, from, &q);
        int e = 0;
        bool at_q = q > from && read_one(s, q, &e);
        if (e) {
            sqlite3_finalize(st);
            return e;
        }
        /* unread: from + 1 up to the first row read again (or the end) */
        int64_t last = at_q ? q - 1 : first ? first - 1 : q;
        if (s->gap && last > from)
            s->gap(s->arg, from + 1, last);
        after = q;
        if (!first)
            break;
    }
    sqlite3_finalize(st);
    return 0;
}

/* ---- the copy ---- */

struct salvage {
    sqlite3 *src;
    struct mt_logdb *dst;
    struct mt_salvage_report *r;
    FILE *progress;
    int64_t schema;
    /* series ids read: 1 = a real series, 0 = lost (placeholder) */
    uint8_t *known;
    size_t nknown;
    uint64_t in_txn;
};

static int begin(struct salvage *v)
{
    return v->in_txn ? 0 : mt_log_begin(v->dst);
}

/* Commits every COMMIT_EVERY rows: a salvage of a big log keeps a small WAL. */
static int counted(struct salvage *v)
{
    if (++v->in_txn < COMMIT_EVERY)
        return 0;
    v->in_txn = 0;
    return mt_log_commit(v->dst);
}

static const char *text_or_null(sqlite3_stmt *st, int i)
{
    return sqlite3_column_type(st, i) == SQLITE_TEXT ? (const char *)sqlite3_column_text(st, i)
                                                     : NULL;
}

static bool is_int(sqlite3_stmt *st, int i)
{
    return sqlite3_column_type(st, i) == SQLITE_INTEGER;
}

struct series_row {
    int64_t id;
    int kind, bits;
    char *site, *device, *metric, *unit, *tags, *origin;
};

struct series_read {
    struct salvage *v;
    struct series_row *rows;
    size_t n, cap;
};

static int series_row(void *arg, sqlite3_stmt *st)
{
    struct series_read *sr = arg;
    const char *f[6];
    for (int i = 0; i < 6; i++)
        f[i] = text_or_null(st, 1 + (i < 4 ? i : i + 2));
    /* id, site, device, metric, unit, kind, bits, tags, origin (schema 3) */
    if (!is_int(st, 0) || sqlite3_column_int64(st, 0) < 1 ||
        sqlite3_column_int64(st, 0) > (int64_t)MT_SERIES_CHUNK * MT_SERIES_MAX_CHUNKS ||
        !f[0] || !f[1] || !f[2] || !f[3] || !f[4] || !f[5] || !is_int(st, 5) || !is_int(st, 6))
        return 0; /* unreadable: its id gets a placeholder */
    if (sr->n == sr->cap) {
        size_t c = sr->cap ? sr->cap * 2 : 256;
        struct series_row *p = realloc(sr->rows, c * sizeof(*p));
        if (!p)
            return -ENOMEM;
        sr->rows = p;
        sr->cap = c;
    }
    struct series_row *s = &sr->rows[sr->n];
    *s = (struct series_row){.id = sqlite3_column_int64(st, 0),
                             .kind = sqlite3_column_int(st, 5),
                             .bits = sqlite3_column_int(st, 6),
                             .site = strdup(f[0]),
                             .device = strdup(f[1]),
                             .metric = strdup(f[2]),
                             .unit = strdup(f[3]),
                             .tags = strdup(f[4]),
                             .origin = strdup(f[5])};
    sr->n++;
    if (!s->site || !s->device || !s->metric || !s->unit || !s->tags || !s->origin)
        return -ENOMEM;
    return 0;
}

static void free_series(struct series_read *sr)
{
    for (size_t i = 0; i < sr->n; i++) {
        free(sr->rows[i].site);
        free(sr->rows[i].device);
        free(sr->rows[i].metric);
        free(sr->rows[i].unit);
        free(sr->rows[i].tags);
        free(sr->rows[i].origin);
    }
    free(sr->rows);
}

/* Series ids are dense from 1 and readings refer to them: every id up to
 * the highest read is written, a placeholder where the row was lost. */
static int copy_series(struct salvage *v)
{
    struct series_read sr = {.v = v};
    /* origin (schema 3): asked of the table itself, as a damaged header may
     * hide user_version; without it every series is raw */
    sqlite3_stmt *probe_st = NULL;
    bool has_origin = sqlite3_prepare_v2(v->src, "SELECT origin FROM series LIMIT 0", -1,
                                         &probe_st, NULL) == SQLITE_OK;
    sqlite3_finalize(probe_st);
    struct scan s = {.db = v->src, .table = "series", .key = "id",
                     .cols = has_origin ? "site, device, metric, unit, kind, bits, tags, origin"
                                        : "site, device, metric, unit, kind, bits, tags, ''",
                     .row = series_row,
                     .arg = &sr, .bound = INT64_MAX / 4};
    int rc = scan_table(&s);
    if (s.damaged)
        v->r->tables_incomplete = true;
    int64_t max = sr.n ? sr.rows[sr.n - 1].id : 0;
    if (!rc && max > 0) {
        v->known = calloc((size_t)max + 1, 1);
        v->nknown = (size_t)max + 1;
        rc = v->known ? 0 : -ENOMEM;
    }
    size_t k = 0;
    char name[32];
    for (int64_t id = 1; !rc && id <= max; id++) {
        struct mt_series_info info = {.id = (uint32_t)id};
        if (k < sr.n && sr.rows[k].id == id) {
            const struct series_row *x = &sr.rows[k++];
            info = (struct mt_series_info){.id = (uint32_t)id, .kind = x->kind,
                                           .bits = (unsigned)x->bits, .site = x->site,
                                           .device = x->device, .metric = x->metric,
                                           .unit = x->unit, .tags = x->tags,
                                           .origin = x->origin};
            v->known[id] = 1;
            v->r->series++;
        } else {
            snprintf(name, sizeof(name), "series_%" PRId64, id);
            info = (struct mt_series_info){.id = (uint32_t)id, .kind = MITTARI_KIND_DELTA,
                                           .site = "salvage", .device = "lost", .metric = name,
                                           .unit = "", .tags = ""};
            v->r->lost_series++;
        }
        rc = begin(v);
        if (!rc)
            rc = mt_log_put_series(v->dst, &info);
        if (!rc)
            rc = counted(v);
    }
    free_series(&sr);
    return rc;
}

static bool known_series(struct salvage *v, int64_t id)
{
    return id > 0 && (size_t)id < v->nknown && v->known[id];
}

static int counter_row(void *arg, sqlite3_stmt *st)
{
    struct salvage *v = arg;
    if (!is_int(st, 0) || !is_int(st, 1) || !is_int(st, 2) ||
        !known_series(v, sqlite3_column_int64(st, 0)))
        return 0;
    int rc = begin(v);
    if (!rc)
        rc = mt_log_put_counter(v->dst, (uint32_t)sqlite3_column_int64(st, 0),
                                (uint64_t)sqlite3_column_int64(st, 1), sqlite3_column_int64(st, 2));
    v->r->counters += rc == 0;
    return rc ? rc : counted(v);
}

static int cursor_row(void *arg, sqlite3_stmt *st)
{
    struct salvage *v = arg;
    const char *name = text_or_null(st, 1);
    if (!name || !is_int(st, 2) || !is_int(st, 3))
        return 0;
    int rc = begin(v);
    if (!rc)
        rc = mt_log_put_cursor(v->dst, name, sqlite3_column_int64(st, 2),
                               sqlite3_column_int64(st, 3));
    v->r->cursors += rc == 0;
    /* numbering goes on above every cursor, or a consumer would take the
     * new readings up to it for delivered */
    if (sqlite3_column_int64(st, 2) > v->r->last_seq)
        v->r->last_seq = sqlite3_column_int64(st, 2);
    return rc ? rc : counted(v);
}

static int state_row(void *arg, sqlite3_stmt *st)
{
    struct salvage *v = arg;
    const char *name = text_or_null(st, 1);
    if (!name || !is_int(st, 2) || !is_int(st, 4))
        return 0;
    const void *blob = sqlite3_column_blob(st, 3);
    int len = sqlite3_column_bytes(st, 3);
    int rc = begin(v);
    if (!rc)
        rc = mt_log_put_state(v->dst, name, sqlite3_column_int64(st, 2), blob,
                              blob && len > 0 ? (size_t)len : 0, sqlite3_column_int64(st, 4));
    v->r->states += rc == 0;
    return rc ? rc : counted(v);
}

static int parked_row(void *arg, sqlite3_stmt *st)
{
    struct salvage *v = arg;
    const char *out = text_or_null(st, 1), *error = text_or_null(st, 4);
    if (!out || !error || !is_int(st, 2) || !is_int(st, 3) || !is_int(st, 5))
        return 0;
    int rc = begin(v);
    if (!rc)
        rc = mt_log_put_parked(v->dst, out, sqlite3_column_int64(st, 2),
                               sqlite3_column_int64(st, 3), error, sqlite3_column_int64(st, 5));
    v->r->parked += rc == 0;
    return rc ? rc : counted(v);
}

static int reading_row(void *arg, sqlite3_stmt *st)
{
    struct salvage *v = arg;
    /* seq, ts, series, value, subject, flags */
    const char *subject = text_or_null(st, 4);
    int vt = sqlite3_column_type(st, 3);
    if (!is_int(st, 0) || sqlite3_column_int64(st, 0) < 1 || !is_int(st, 1) ||
        !is_int(st, 2) || !known_series(v, sqlite3_column_int64(st, 2)) ||
        (vt != SQLITE_INTEGER && vt != SQLITE_FLOAT) || !is_int(st, 5) ||
        (sqlite3_column_type(st, 4) != SQLITE_NULL && !subject) ||
        (subject && strlen(subject) >= MT_SUBJECT_SIZE)) {
        v->r->rows_left_out++;
        return 0;
    }
    int64_t flags = sqlite3_column_int64(st, 5);
    int rc = begin(v);
    if (!rc)
        rc = mt_log_put_reading_flags(v->dst, sqlite3_column_int64(st, 0),
                                      sqlite3_column_int64(st, 1),
                                      (uint32_t)sqlite3_column_int64(st, 2),
                                      sqlite3_column_double(st, 3), subject,
                                      (unsigned)(flags & 0xff), (unsigned)((flags >> 8) & 0xff));
    if (rc)
        return rc;
    if (++v->r->readings % 1000000 == 0 && v->progress)
        fprintf(v->progress, "mittari: salvage: %" PRIu64 " readings so far\n", v->r->readings);
    if (sqlite3_column_int64(st, 0) > v->r->last_seq)
        v->r->last_seq = sqlite3_column_int64(st, 0);
    return counted(v);
}

static void reading_gap(void *arg, int64_t first, int64_t last)
{
    struct salvage *v = arg;
    struct mt_salvage_report *r = v->r;
    if (r->ngaps < MT_SALVAGE_MAX_GAPS) {
        r->gap_first[r->ngaps] = first;
        r->gap_last[r->ngaps] = last >= INT64_MAX / 8 ? -1 : last; /* -1: to the end */
        r->ngaps++;
    } else {
        r->more_gaps++;
    }
}

static int copy_small(struct salvage *v, const char *table, const char *key, const char *cols,
                      int (*row)(void *, sqlite3_stmt *))
{
    struct scan s = {.db = v->src, .table = table, .key = key, .cols = cols, .row = row,
                     .arg = v, .bound = INT64_MAX / 4};
    int rc = scan_table(&s);
    if (s.damaged)
        v->r->tables_incomplete = true;
    return rc;
}

static int copy_all(struct salvage *v, int64_t max_seq, bool max_known)
{
    int rc = copy_series(v);
    if (!rc)
        rc = copy_small(v, "counters", "series", "last, ts", counter_row);
    if (!rc)
        rc = copy_small(v, "cursors", "rowid", "name, seq, updated", cursor_row);
    if (!rc && v->schema >= 2)
        rc = copy_small(v, "consumer_state", "rowid", "name, version, state, updated", state_row);
    if (!rc)
        rc = copy_small(v, "parked", "rowid", "output, first_seq, last_seq, error, at", parked_row);
    if (rc)
        return rc;
    struct scan s = {.db = v->src, .table = "readings", .key = "seq",
                     .cols = v->schema >= 2 ? "ts, series, value, subject, flags"
                                            : "ts, series, value, subject, 0",
                     .row = reading_row, .gap = reading_gap, .arg = v,
                     .bound = max_known ? max_seq + 1 : INT64_MAX / 4};
    return scan_table(&s);
}

/* ---- files ---- */

static int move_set(const char *from, const char *to)
{
    static const char *const sfx[] = {"", "-wal", "-shm"};
    char a[4200], b[4200];
    for (size_t i = 0; i < 3; i++) {
        snprintf(a, sizeof(a), "%s%s", from, sfx[i]);
        snprintf(b, sizeof(b), "%s%s", to, sfx[i]);
        if (rename(a, b) && errno != ENOENT)
            return -errno;
    }
    return 0;
}

static void remove_set(const char *path)
{
    char a[4200];
    static const char *const sfx[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(a, sizeof(a), "%s%s", path, sfx[i]);
        unlink(a);
    }
}

static int sync_path(const char *path, int flags)
{
    int fd = open(path, flags | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) ? -errno : 0;
    close(fd);
    return rc;
}

/* Refuses what is not a mittari log (or a newer one) before anything is
 * moved; damage that hides the answer does not stop a salvage. */
static int check_identity(const char *path, int64_t *schema, char *err, size_t errlen)
{
    int64_t app = 0, objects = 0;
    sqlite3 *db = open_damaged(path);
    *schema = 2;
    if (!db)
        return 0;
    if (one_int(db, "PRAGMA application_id", NULL, &app) == 0 &&
        one_int(db, "SELECT count(*) FROM sqlite_master", NULL, &objects) == 0 &&
        ((app != 0 && app != MT_LOG_APP_ID) || (app == 0 && objects > 0))) {
        snprintf(err, errlen, "%s is an SQLite database but not a mittari log; nothing done", path);
        sqlite3_close(db);
        return -EINVAL;
    }
    if (one_int(db, "PRAGMA user_version", NULL, schema) == 0 && *schema > MT_LOG_SCHEMA) {
        snprintf(err, errlen, "%s has log schema %" PRId64 ", newer than this mittari's %d; use "
                 "a newer mittari", path, *schema, MT_LOG_SCHEMA);
        sqlite3_close(db);
        return -EINVAL;
    }
    if (*schema < 1)
        *schema = 2;
    sqlite3_close(db);
    return 0;
}

static int salvage_into(struct salvage *v, const char *tmp, char *err, size_t errlen)
{
    struct mt_salvage_report *r = v->r;
    int64_t gen = 0, meta_last = 0, max_seq = 0;
    bool max_known = false;
    char msg[600];
    int rc;

    rc = mt_log_open(&v->dst, tmp, MT_LOG_WRITER | MT_LOG_SYNC_FULL, msg, sizeof(msg));
    if (rc) {
        snprintf(err, errlen, "cannot create the new log: %s", msg);
        return rc;
    }
    int64_t objects = 0;
    if (v->src && one_int(v->src, "SELECT count(*) FROM sqlite_master", NULL, &objects) == 0) {
        r->opened = true;
        /* the sequence space is known when the newest seq can be read */
        max_known = one_int(v->src, "SELECT max(seq) FROM readings", NULL, &max_seq) == 0;
        bool meta_ok = one_int(v->src, "SELECT value FROM meta WHERE key = ?1", "last_seq",
                               &meta_last) == 0;
        bool gen_ok = one_int(v->src, "SELECT value FROM meta WHERE key = ?1", "generation",
                              &gen) == 0 && gen > 0;
        if (max_known && meta_ok && gen_ok) {
            r->generation_kept = true;
            r->last_seq = max_seq > meta_last ? max_seq : meta_last;
        } else if (meta_ok) {
            r->last_seq = meta_last;
        }
        rc = copy_all(v, max_seq, max_known);
    }
    if (!rc && v->in_txn == 0)
        rc = mt_log_begin(v->dst);
    if (!rc && r->generation_kept)
        rc = mt_log_put_meta(v->dst, "generation", gen);
    if (!rc)
        rc = mt_log_put_meta(v->dst, "last_seq", r->last_seq);
    if (!rc)
        rc = mt_log_commit(v->dst);
    v->in_txn = 0;
    if (!rc)
        rc = mt_log_generation(v->dst, &r->generation);
    if (!rc && mt_log_integrity(v->dst, msg, sizeof(msg)))
        rc = MITTARI_ESTORAGE;
    if (rc)
        snprintf(err, errlen, "cannot write the new log %s: %s", tmp, mt_log_errmsg(v->dst));
    mt_log_close(v->dst);
    v->dst = NULL;
    return rc;
}

int mt_salvage(const char *data_dir, struct mt_salvage_report *r, FILE *progress, char *err,
               size_t errlen)
{
    char db[4096], tmp[4200], stamp[32], holder[32];
    struct salvage v = {.r = r, .progress = progress};
    int lock_fd = -1, rc;
    time_t now = time(NULL);
    struct tm tm;

    memset(r, 0, sizeof(*r));
    rc = mt_lock_dir(data_dir, &lock_fd, holder, sizeof(holder));
    if (rc) {
        snprintf(err, errlen, rc == -EBUSY ? "%s is in use by a running mittari (pid %s); stop it "
                                             "first"
                                           : "cannot lock %s: %s",
                 data_dir, rc == -EBUSY ? holder : strerror(-rc));
        return rc;
    }
    snprintf(db, sizeof(db), "%s/mittari.db", data_dir);
    if (access(db, F_OK)) {
        snprintf(err, errlen, "%s: no log to salvage", db);
        rc = -ENOENT;
        goto out;
    }
    rc = check_identity(db, &v.schema, err, errlen);
    if (rc)
        goto out;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
    snprintf(r->moved_to, sizeof(r->moved_to), "%s.damaged-%s", db, stamp);
    rc = move_set(db, r->moved_to);
    if (rc) {
        snprintf(err, errlen, "cannot move %s aside: %s", db, strerror(-rc));
        goto out;
    }
    snprintf(tmp, sizeof(tmp), "%s.salvage", db);
    remove_set(tmp); /* what an interrupted salvage left */
    v.src = open_damaged(r->moved_to);
    rc = salvage_into(&v, tmp, err, errlen);
    sqlite3_close(v.src);
    if (!rc && ((rc = move_set(tmp, db)) || (rc = sync_path(data_dir, O_RDONLY | O_DIRECTORY))))
        snprintf(err, errlen, "cannot put the new log in place: %s", strerror(-rc));
    if (rc)
        remove_set(tmp); /* the damaged files stay aside; the next start makes a new log */
out:
    free(v.known);
    if (lock_fd >= 0)
        close(lock_fd);
    return rc;
}

void mt_salvage_print(const struct mt_salvage_report *r, FILE *out)
{
    fprintf(out, "the damaged log is now %s (and its -wal, -shm files)\n", r->moved_to);
    if (!r->opened) {
        fprintf(out, "nothing in it could be read: the new log is empty, generation %" PRId64 "\n",
                r->generation);
        return;
    }
    fprintf(out,
            "salvaged %" PRIu64 " readings, %" PRIu64 " series, %" PRIu64 " counter states, %" PRIu64
            " cursors, %" PRIu64 " rule states, %" PRIu64 " parked batches\n",
            r->readings, r->series, r->counters, r->cursors, r->states, r->parked);
    if (r->generation_kept)
        fprintf(out, "generation %" PRId64 " kept; numbering goes on after seq %" PRId64 "\n",
                r->generation, r->last_seq);
    else
        fprintf(out, "the newest seq of the damaged log could not be read: the new log has a "
                "generation of its own (%" PRId64 ") so its numbers name no old reading\n",
                r->generation);
    for (size_t i = 0; i < r->ngaps; i++) {
        if (r->gap_last[i] < 0)
            fprintf(out, "could not read: seq %" PRId64 " and after\n", r->gap_first[i]);
        else
            fprintf(out, "could not read: seq %" PRId64 "..%" PRId64 "\n", r->gap_first[i],
                    r->gap_last[i]);
    }
    if (r->more_gaps)
        fprintf(out, "could not read: %" PRIu64 " more ranges\n", r->more_gaps);
    if (r->lost_series)
        fprintf(out, "%" PRIu64 " series could not be read (kept as salvage/lost/series_N); their "
                "readings are left out\n", r->lost_series);
    if (r->rows_left_out)
        fprintf(out, "%" PRIu64 " readings were readable but unusable and left out\n",
                r->rows_left_out);
    if (r->tables_incomplete)
        fprintf(out, "some counter states, cursors, rule states or parked batches could not be "
                "read: a counter without its state starts from a new baseline, an output "
                "without its cursor from the oldest reading\n");
}
