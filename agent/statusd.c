#include "statusd.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "diag.h"
#include "log.h"
#include "util.h"

#define MOD "status"
/* rows read per query: the worker only adds them up, so a small buffer
 * (28 KiB) costs a few more queries and no resident memory to speak of */
#define CHUNK 512
/* rows read per turn before the figures are published again: the first
 * turn of a big log shows progress instead of nothing */
#define ROWS_PER_TURN (256 * 1024)
#define STATUS_NICE 10 /* the worker runs this much nicer than the agent */
/* a client asked within this many refresh periods: keep the connection */
#define IDLE_REFRESHES 3
#define OLD_DAYS 4                        /* results of old days kept */
#define OLD_DAY_TTL (300 * 1000000LL)      /* for so long */

struct old_day {
    char day[16]; /* "" = empty slot */
    int64_t at;   /* monotonic µs */
    char *json;
};

struct mt_statusd {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;      /* the worker waits on it */
    pthread_cond_t snap_cond; /* callers of mt_statusd_fresh_snap wait on it */
    bool stop, kick, started;
    int64_t last_turn; /* monotonic µs, under lock */
    int64_t client_at; /* monotonic µs of the last client's kick, under lock; 0 = none */

    char *db_path, *timezone;
    int64_t refresh_ms;
    const struct mt_series_reg *series;

    /* under lock */
    struct mt_snap *snap;
    struct mt_facts *facts;
    const struct mt_tz *tz_pub;

    /* the thread's */
    struct mt_tz *tz;
    struct mt_visitors *visitors;
    struct mt_logdb *db; /* NULL between turns while no client is near */
    int64_t mark; /* rows through this seq are in the aggregate */
    bool initial; /* the first read of the kept days is not done */
    struct mt_row *rows;
    struct mt_complain c_open, c_read;
    char *visitors_patterns;
    bool count_visitors; /* false: nobody can ask (the endpoint is off) */

    /* old days: one scan at a time (scan_lock), results under lock */
    pthread_mutex_t scan_lock;
    struct old_day old[OLD_DAYS];
    _Atomic bool stopping;
};

struct mt_snap *mt_statusd_snap(struct mt_statusd *d)
{
    pthread_mutex_lock(&d->lock);
    struct mt_snap *s = mt_snap_ref(d->snap);
    pthread_mutex_unlock(&d->lock);
    return s;
}

struct mt_facts *mt_statusd_facts(struct mt_statusd *d)
{
    pthread_mutex_lock(&d->lock);
    struct mt_facts *f = mt_facts_ref(d->facts);
    pthread_mutex_unlock(&d->lock);
    return f;
}

struct mt_visitors *mt_statusd_visitors(struct mt_statusd *d)
{
    return d->visitors;
}

const struct mt_tz *mt_statusd_tz(struct mt_statusd *d)
{
    pthread_mutex_lock(&d->lock);
    const struct mt_tz *tz = d->tz_pub;
    pthread_mutex_unlock(&d->lock);
    return tz;
}

void mt_statusd_publish(struct mt_statusd *d, struct mt_snap *s)
{
    pthread_mutex_lock(&d->lock);
    struct mt_snap *old = d->snap;
    d->snap = s;
    pthread_cond_broadcast(&d->snap_cond);
    pthread_mutex_unlock(&d->lock);
    mt_snap_unref(old);
}

static void deadline_in(struct timespec *ts, int64_t us)
{
    if (us < 0)
        us = 0;
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += us / 1000000;
    ts->tv_nsec += (us % 1000000) * 1000;
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
}

/* what the caller of mt_statusd_fresh_snap wants: recent enough, and
 * detailed if asked for */
static bool fresh_enough(const struct mt_snap *s, int64_t max_age_us, bool detail)
{
    return s && !(detail && s->summary) && mt_mono_us() - s->taken_mono_us <= max_age_us;
}

struct mt_snap *mt_statusd_fresh_snap(struct mt_statusd *d, int64_t max_age_us, bool detail,
                                      int64_t wait_us, void (*ask)(void *arg), void *arg)
{
    struct timespec until;
    pthread_mutex_lock(&d->lock);
    struct mt_snap *had = d->snap;
    if (!fresh_enough(had, max_age_us, detail)) {
        ask(arg);
        deadline_in(&until, wait_us);
        /* a periodic summary published meanwhile is not what was asked for */
        while ((d->snap == had || !fresh_enough(d->snap, max_age_us, detail)) &&
               !atomic_load(&d->stopping) &&
               pthread_cond_timedwait(&d->snap_cond, &d->lock, &until) != ETIMEDOUT)
            ;
    }
    struct mt_snap *s = mt_snap_ref(d->snap);
    pthread_mutex_unlock(&d->lock);
    return s;
}

void mt_statusd_kick(struct mt_statusd *d, bool client)
{
    pthread_mutex_lock(&d->lock);
    d->kick = true;
    if (client)
        d->client_at = mt_mono_us();
    pthread_cond_signal(&d->cond);
    pthread_mutex_unlock(&d->lock);
}

static bool stopping(struct mt_statusd *d)
{
    pthread_mutex_lock(&d->lock);
    bool s = d->stop;
    pthread_mutex_unlock(&d->lock);
    return s;
}

/* The thread: opens the log and loads the zone, 0 once both are there. */
static int prepare(struct mt_statusd *d)
{
    char err[512];
    int rc;

    if (!d->tz) {
        rc = mt_tz_load(&d->tz, d->timezone, err, sizeof(err));
        if (rc) {
            mt_complain(&d->c_open, MT_WARNING, MOD, 3600 * 1000000LL,
                        "time zone %s: %s; the page shows no visitors", d->timezone, err);
            return rc;
        }
        pthread_mutex_lock(&d->lock);
        d->tz_pub = d->tz;
        pthread_mutex_unlock(&d->lock);
    }
    if (d->db)
        return 0;
    /* lean: it reads the newest pages once, in order, for as long as it runs */
    rc = mt_log_open(&d->db, d->db_path, MT_LOG_READER | MT_LOG_LEAN, err, sizeof(err));
    if (rc) {
        mt_complain(&d->c_open, MT_WARNING, MOD, 3600 * 1000000LL, "%s", err);
        return rc;
    }
    mt_complain_clear(&d->c_open, MOD, "the log can be read again");
    return 0;
}

/* Where the first read starts: the first row of the kept days in seq order
 * (rows before it are all older; one scan of the log, on this thread). */
static int initial_mark(struct mt_statusd *d, int64_t keep_from)
{
    int64_t seq;
    int rc = mt_log_first_young(d->db, keep_from, INT64_MAX, &seq);
    if (rc)
        return rc;
    if (seq == INT64_MAX)
        return mt_log_last_seq(d->db, &d->mark);
    d->mark = seq - 1;
    return 0;
}

/* Reads committed rows after the mark into the aggregate; true when it
 * caught up. */
static bool read_rows(struct mt_statusd *d, int *rc)
{
    size_t n, total = 0;
    *rc = 0;
    while (total < ROWS_PER_TURN && !stopping(d)) {
        *rc = mt_log_read(d->db, d->mark, INT64_MAX, CHUNK, d->rows, &n);
        if (*rc || n == 0)
            return *rc == 0;
        mt_visitors_add(d->visitors, d->rows, n);
        d->mark = d->rows[n - 1].seq;
        total += n;
    }
    return false;
}

static void publish_facts(struct mt_statusd *d, struct mt_facts *f)
{
    pthread_mutex_lock(&d->lock);
    struct mt_facts *old = d->facts;
    d->facts = f;
    pthread_mutex_unlock(&d->lock);
    mt_facts_unref(old);
}

static bool client_near(struct mt_statusd *d)
{
    pthread_mutex_lock(&d->lock);
    bool near = d->client_at &&
                mt_mono_us() - d->client_at < IDLE_REFRESHES * d->refresh_ms * 1000;
    pthread_mutex_unlock(&d->lock);
    return near;
}

/* Nobody looks: the connection is not kept until the next turn; what its
 * cache, schema and statements held goes back to the system once the
 * turn's thread ended (turn_apart). */
static void let_go(struct mt_statusd *d)
{
    if (!d->db)
        return;
    mt_log_close(d->db);
    d->db = NULL;
}

static void turn(struct mt_statusd *d, bool *caught_up)
{
    int64_t now = mt_now_us();
    int rc;

    *caught_up = true;
    if (prepare(d))
        return;
    int64_t keep_from = mt_visitors_keep_from(d->tz, now);
    rc = 0;
    if (d->count_visitors) {
        mt_visitors_prune(d->visitors, keep_from);
        if (d->initial) {
            rc = initial_mark(d, keep_from);
            if (!rc)
                d->initial = false;
        }
    }
    if (!rc && d->count_visitors) {
        *caught_up = read_rows(d, &rc);
        mt_visitors_set_loaded(d->visitors, *caught_up && !rc);
    }
    if (rc)
        mt_complain(&d->c_read, MT_WARNING, MOD, 3600 * 1000000LL,
                    "cannot read the log for the page: %s", mt_log_errmsg(d->db));
    struct mt_snap *s = mt_statusd_snap(d);
    struct mt_facts *f = NULL;
    mt_facts_read(d->db, s, mt_now_us(), &f);
    mt_snap_unref(s);
    if (f)
        publish_facts(d, f);
    if (*caught_up && !client_near(d))
        let_go(d);
}

struct turn_arg {
    struct mt_statusd *d;
    bool caught_up;
};

static void *turn_main(void *arg)
{
    struct turn_arg *t = arg;
    turn(t->d, &t->caught_up);
    return NULL;
}

/* A turn on a thread of its own: what it allocates comes from a malloc
 * arena no thread holds between turns, and the small chunks its thread
 * cache keeps go back to that arena when the thread ends, so that
 * malloc_trim returns the pages a closed connection used, from that arena
 * and the others (the loop's freed detailed snapshots); it takes each
 * arena's lock for a moment. Issue 14, measured at 500 devices: the
 * worker's arena held ~200-250 kB for the agent's life; closing the
 * connection on the worker's own thread and trimming left ~170 kB
 * resident (in use 70 kB, mostly freed chunks its thread cache kept,
 * pinning pages); a turn apart leaves ~40 kB. A thread a turn costs tens
 * of microseconds, at most every refresh. */
static void turn_apart(struct mt_statusd *d, bool *caught_up)
{
    struct turn_arg t = {d, true};
    pthread_t th;
    if (pthread_create(&th, NULL, turn_main, &t) != 0) {
        turn(d, caught_up); /* no thread now: here, at the cost of memory */
        return;
    }
    pthread_join(th, NULL);
    *caught_up = t.caught_up;
    if (!d->db) /* let go: its arena holds nothing of it now */
        malloc_trim(0);
}

/* Sleeps until kicked (or, while the first read of a big log goes on, not
 * at all), then no sooner than refresh after the last turn. */
static void *thread_main(void *arg)
{
    struct mt_statusd *d = arg;
    bool caught_up = true;

    /* the charts can wait, the readings cannot: this worker's reading of
     * the log (all of today's rows at start) gives way to the writer, the
     * rules and the outputs when the CPU is short (Linux: per thread) */
    mt_thread_background("mt-status", STATUS_NICE);
    for (;;) {
        pthread_mutex_lock(&d->lock);
        while (caught_up && !d->stop && !d->kick)
            pthread_cond_wait(&d->cond, &d->lock);
        if (caught_up && !d->stop && d->last_turn) {
            struct timespec until;
            deadline_in(&until, d->last_turn + d->refresh_ms * 1000 - mt_mono_us());
            while (!d->stop && mt_mono_us() < d->last_turn + d->refresh_ms * 1000 &&
                   pthread_cond_timedwait(&d->cond, &d->lock, &until) != ETIMEDOUT)
                ;
        }
        bool stop = d->stop;
        d->kick = false;
        d->last_turn = mt_mono_us();
        pthread_mutex_unlock(&d->lock);
        if (stop)
            break;
        turn_apart(d, &caught_up);
    }
    return NULL;
}

static void free_board(struct mt_statusd *d)
{
    mt_log_close(d->db);
    mt_tz_free(d->tz);
    mt_visitors_free(d->visitors);
    mt_snap_unref(d->snap);
    mt_facts_unref(d->facts);
    free(d->rows);
    free(d->db_path);
    free(d->timezone);
    free(d->visitors_patterns);
    for (size_t i = 0; i < OLD_DAYS; i++)
        free(d->old[i].json);
    pthread_mutex_destroy(&d->scan_lock);
    pthread_cond_destroy(&d->snap_cond);
    pthread_cond_destroy(&d->cond);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

int mt_statusd_start(struct mt_statusd **out, const struct mt_statusd_conf *c)
{
    struct mt_statusd *d = calloc(1, sizeof(*d));
    pthread_condattr_t ca;
    int rc;

    *out = NULL;
    if (!d)
        return -ENOMEM;
    pthread_mutex_init(&d->lock, NULL);
    pthread_mutex_init(&d->scan_lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&d->cond, &ca);
    pthread_cond_init(&d->snap_cond, &ca);
    pthread_condattr_destroy(&ca);
    d->db_path = strdup(c->db_path);
    d->timezone = strdup(c->timezone);
    d->visitors_patterns = strdup(c->visitors);
    d->count_visitors = c->count_visitors;
    d->rows = calloc(CHUNK, sizeof(*d->rows));
    d->refresh_ms = c->refresh_ms;
    d->series = c->series;
    d->initial = true;
    d->kick = true; /* the first turn at once */
    rc = !d->db_path || !d->timezone || !d->rows || !d->visitors_patterns ? -ENOMEM : 0;
    if (!rc)
        rc = mt_visitors_new(&d->visitors, c->visitors, c->series);
    if (!rc)
        rc = -pthread_create(&d->thread, NULL, thread_main, d);
    if (rc) {
        free_board(d);
        return rc;
    }
    d->started = true;
    *out = d;
    return 0;
}

/* ---- old days ---- */

static bool old_get(struct mt_statusd *d, const char *day, struct mt_buf *out)
{
    bool hit = false;
    int64_t now = mt_mono_us();
    pthread_mutex_lock(&d->lock);
    for (size_t i = 0; i < OLD_DAYS && !hit; i++)
        if (d->old[i].json && strcmp(d->old[i].day, day) == 0 &&
            now - d->old[i].at < OLD_DAY_TTL)
            hit = mt_buf_adds(out, d->old[i].json) == 0;
    pthread_mutex_unlock(&d->lock);
    return hit;
}

static void old_put(struct mt_statusd *d, const char *day, const char *json)
{
    char *copy = strdup(json);
    if (!copy)
        return;
    pthread_mutex_lock(&d->lock);
    size_t k = 0; /* the oldest slot */
    for (size_t i = 1; i < OLD_DAYS; i++)
        if (d->old[i].at < d->old[k].at)
            k = i;
    free(d->old[k].json);
    snprintf(d->old[k].day, sizeof(d->old[k].day), "%s", day);
    d->old[k].json = copy;
    d->old[k].at = mt_mono_us();
    pthread_mutex_unlock(&d->lock);
}

/* Counts the log's rows of [from, to) into v, on a connection of its own. */
static int scan_span(struct mt_statusd *d, struct mt_visitors *v, int64_t from, int64_t to,
                     char *err, size_t errlen)
{
    struct mt_logdb *db;
    struct mt_row *rows = calloc(CHUNK, sizeof(*rows));
    int64_t after = 0;
    size_t n;
    int rc;

    if (!rows)
        return -ENOMEM;
    rc = mt_log_open(&db, d->db_path, MT_LOG_READER, err, errlen);
    if (rc) {
        free(rows);
        return rc;
    }
    do {
        rc = mt_log_scan(db, from, to, after, CHUNK, rows, &n);
        if (rc) {
            snprintf(err, errlen, "cannot read the log: %s", mt_log_errmsg(db));
            break;
        }
        mt_visitors_add(v, rows, n);
        if (n)
            after = rows[n - 1].seq;
        if (atomic_load(&d->stopping)) {
            snprintf(err, errlen, "the agent is stopping");
            rc = -ECANCELED;
        }
    } while (!rc && n == CHUNK);
    mt_log_close(db);
    free(rows);
    return rc;
}

static int old_day_json(struct mt_statusd *d, const struct mt_tz *tz, const char *day,
                        int64_t now_us, struct mt_buf *out, char *err, size_t errlen)
{
    struct mt_visitors *v;
    int64_t from, to;
    int rc = mt_visitors_span(tz, day, now_us, &from, &to);

    if (rc) {
        snprintf(err, errlen, "day '%s' is not a date YYYY-MM-DD", day);
        return rc;
    }
    rc = mt_visitors_new(&v, d->visitors_patterns, d->series);
    if (rc)
        return rc;
    mt_visitors_prune(v, from);
    rc = scan_span(d, v, from, to, err, errlen);
    if (!rc) {
        mt_visitors_set_loaded(v, true);
        rc = mt_visitors_day_json(v, tz, day, now_us, out, err, errlen);
    }
    mt_visitors_free(v);
    return rc;
}

int mt_statusd_day_json(struct mt_statusd *d, const char *day, int64_t now_us, struct mt_buf *out,
                        char *err, size_t errlen)
{
    const struct mt_tz *tz = mt_statusd_tz(d);
    if (!tz) {
        snprintf(err, errlen, "the time zone is not loaded yet");
        return -EBUSY;
    }
    int rc = mt_visitors_day_json(d->visitors, tz, day, now_us, out, err, errlen);
    if (rc != -EAGAIN || !day)
        return rc;
    mt_buf_free(out);
    if (old_get(d, day, out))
        return 0;
    pthread_mutex_lock(&d->scan_lock);
    if (old_get(d, day, out)) { /* another request scanned it meanwhile */
        pthread_mutex_unlock(&d->scan_lock);
        return 0;
    }
    rc = old_day_json(d, tz, day, now_us, out, err, errlen);
    if (!rc)
        old_put(d, day, mt_buf_cstr(out));
    pthread_mutex_unlock(&d->scan_lock);
    return rc;
}

void mt_statusd_quiesce(struct mt_statusd *d, bool quiet)
{
    if (!d)
        return;
    pthread_mutex_lock(&d->lock);
    atomic_store(&d->stopping, quiet);
    pthread_cond_broadcast(&d->snap_cond);
    pthread_mutex_unlock(&d->lock);
}

void mt_statusd_stop(struct mt_statusd *d)
{
    if (!d)
        return;
    pthread_mutex_lock(&d->lock);
    d->stop = true;
    atomic_store(&d->stopping, true);
    pthread_cond_signal(&d->cond);
    pthread_cond_broadcast(&d->snap_cond);
    pthread_mutex_unlock(&d->lock);
    pthread_join(d->thread, NULL);
    free_board(d);
}
