/* The status worker (statusd.c) on a real log: it reads the log's figures
 * on every turn, and holds its connection to the log between turns only
 * while a client asked within 3 × refresh (issue 14: the connection's
 * cache, schema and statements were held for the agent's whole life).
 * What it holds is seen from outside, as the descriptors of the log's
 * write-ahead log in /proc/self/fd. And the fresh snapshot a request waits for: a summary
 * does not do for one that needs every device. */
#include "testutil.h"

#include <dirent.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "series.h"
#include "statusd.h"
#include "util.h"

#define REFRESH_MS 1000

struct fx {
    char *dir, *path;
    struct mt_logdb *writer;
    struct mt_series_reg reg;
    struct mt_statusd *d;
};

static int setup(void **state)
{
    struct fx *x = calloc(1, sizeof(*x));
    char err[256];
    x->dir = tu_tmpdir();
    x->path = tu_path(x->dir, "log.db");
    assert_int_equal(mt_log_open(&x->writer, x->path, MT_LOG_WRITER, err, sizeof(err)), 0);
    assert_int_equal(mt_series_init(&x->reg), 0);
    *state = x;
    return 0;
}

static int teardown(void **state)
{
    struct fx *x = *state;
    mt_statusd_stop(x->d);
    mt_log_close(x->writer);
    mt_series_free(&x->reg);
    tu_rmtree(x->dir);
    free(x->dir);
    free(x->path);
    free(x);
    return 0;
}

static void start(struct fx *x)
{
    struct mt_statusd_conf c = {.db_path = x->path, .timezone = "UTC",
                                .visitors = "visitors_in", .refresh_ms = REFRESH_MS,
                                .count_visitors = true, .series = &x->reg};
    assert_int_equal(mt_statusd_start(&x->d, &c), 0);
}

/* descriptors this process holds on the log's write-ahead log: one per
 * open connection (SQLite keeps a closed connection's descriptor of the
 * database file itself for reuse while another connection of the process
 * holds a lock on it, so that one does not tell) */
static int log_fds(const char *db_path)
{
    DIR *dir = opendir("/proc/self/fd");
    struct dirent *e;
    char link[64], target[4096], path[4096];
    int n = 0;
    snprintf(path, sizeof(path), "%s-wal", db_path);
    assert_non_null(dir);
    while ((e = readdir(dir))) {
        snprintf(link, sizeof(link), "/proc/self/fd/%s", e->d_name);
        ssize_t k = readlink(link, target, sizeof(target) - 1);
        if (k <= 0)
            continue;
        target[k] = 0;
        n += strcmp(target, path) == 0;
    }
    closedir(dir);
    return n;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* waits for figures read after `after` (wall µs); returns their time */
static int64_t facts_after(struct mt_statusd *d, int64_t after)
{
    for (int i = 0; i < 2000; i++) { /* 20 s */
        struct mt_facts *f = mt_statusd_facts(d);
        int64_t at = f ? f->taken_us : 0;
        int err = f ? f->error : 0;
        mt_facts_unref(f);
        if (at > after) {
            assert_int_equal(err, 0);
            return at;
        }
        sleep_ms(10);
    }
    fail_msg("the worker read no figures");
    return 0;
}

static bool fds_become(const char *path, int want)
{
    for (int i = 0; i < 2000; i++) {
        if (log_fds(path) == want)
            return true;
        sleep_ms(10);
    }
    return false;
}

static void connection_only_while_a_client_is_near(void **state)
{
    struct fx *x = *state;
    int base = log_fds(x->path); /* the writer's */
    assert_int_equal(base, 1);

    /* the first turn, nobody asking: it reads, then lets the connection go */
    start(x);
    int64_t at = facts_after(x->d, 0);
    if (!fds_become(x->path, base))
        fail_msg("with no client the worker holds %d connections to the log after its turn",
                 log_fds(x->path) - base);

    /* a client asks: the next turn reads and keeps the connection */
    int64_t asked = mt_mono_us();
    mt_statusd_kick(x->d, true);
    at = facts_after(x->d, at);
    sleep_ms(200); /* a close would follow the figures at once */
    if (mt_mono_us() - asked < 3 * REFRESH_MS * 1000LL)
        assert_true(log_fds(x->path) > base);

    /* the client left 3 refresh periods ago: the next turn closes it */
    while (mt_mono_us() - asked < 3 * REFRESH_MS * 1000LL + 100000)
        sleep_ms(50);
    mt_statusd_kick(x->d, false);
    facts_after(x->d, at);
    if (!fds_become(x->path, base))
        fail_msg("after the client left the worker holds %d connections to the log",
                 log_fds(x->path) - base);
}

/* ---- the fresh snapshot a request waits for ---- */

struct asker {
    struct mt_statusd *d;
    bool summary; /* what the "loop" publishes when asked */
    int asked;
};

static struct mt_snap *snap(bool summary, int64_t age_us)
{
    struct mt_snap *s = calloc(1, sizeof(*s));
    atomic_init(&s->refs, 1);
    s->taken_mono_us = mt_mono_us() - age_us;
    s->summary = summary;
    return s;
}

/* the loop's side, at once (ask runs under the board's lock in the real
 * thing only as far as uv_async_send; a thread publishes here) */
static void *publish_later(void *arg)
{
    struct asker *a = arg;
    sleep_ms(50);
    mt_statusd_publish(a->d, snap(true, 0)); /* a periodic summary meanwhile */
    sleep_ms(50);
    mt_statusd_publish(a->d, snap(a->summary, 0));
    return NULL;
}

static pthread_t pub;

static void ask(void *arg)
{
    struct asker *a = arg;
    a->asked++;
    assert_int_equal(pthread_create(&pub, NULL, publish_later, a), 0);
}

static void detail_is_waited_for(void **state)
{
    struct fx *x = *state;
    start(x);
    struct asker a = {.d = x->d, .summary = false};

    /* a fresh summary: enough for /health, nothing asked */
    mt_statusd_publish(x->d, snap(true, 0));
    struct mt_snap *s = mt_statusd_fresh_snap(x->d, 1000000, false, 5000000, ask, &a);
    assert_int_equal(a.asked, 0);
    assert_true(s->summary);
    mt_snap_unref(s);

    /* /status: the loop is asked, and the summary published meanwhile is
     * passed over for the detailed one */
    s = mt_statusd_fresh_snap(x->d, 1000000, true, 5000000, ask, &a);
    pthread_join(pub, NULL);
    assert_int_equal(a.asked, 1);
    assert_false(s->summary);
    mt_snap_unref(s);

    /* a detailed one held and fresh: nothing asked */
    s = mt_statusd_fresh_snap(x->d, 1000000, true, 5000000, ask, &a);
    assert_int_equal(a.asked, 1);
    assert_false(s->summary);
    mt_snap_unref(s);

    /* a loop that answers with summaries only (blocked): the wait ends at
     * its deadline with the newest there is */
    mt_statusd_publish(x->d, snap(true, 0));
    a.summary = true;
    int64_t t0 = mt_mono_us();
    s = mt_statusd_fresh_snap(x->d, 1000000, true, 300000, ask, &a);
    pthread_join(pub, NULL);
    assert_int_equal(a.asked, 2);
    assert_true(s->summary);
    assert_true(mt_mono_us() - t0 >= 300000);
    mt_snap_unref(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(connection_only_while_a_client_is_near, setup, teardown),
        cmocka_unit_test_setup_teardown(detail_is_waited_for, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
