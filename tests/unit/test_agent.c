/* The agent's lifetimes on a real loop, a real log and real plugins (the
 * stall and probe test plugins): a stop that meets an input still stopping
 * for a reload, a poll that outlasts shutdown_timeout, reloads racing
 * stops, a damaged log, and the hard stop's thread. Issue 15 #1, #2. */
#include "testutil.h"

#include <errno.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mittari/mittari.h>

#include "agent.h"
#include "diag.h"
#include "query.h"
#include "stopwatch.h"
#include "util.h"

struct fx {
    char *dir;
    char *conf;
    struct mt_agent *a;
    uv_timer_t t1, t2, t3;
    const char *yaml2; /* the configuration a reload switches to */
    size_t listed_at_stop;
    int retiring_at_stop;
    int64_t stop_at_us;
    bool listening[4];
    int nlistening;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    f->dir = tu_tmpdir();
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    tu_capture_stop();
    tu_rmtree(f->dir);
    free(f->dir);
    free(f->conf);
    free(f);
    return 0;
}

static void write_conf(struct fx *f, const char *agent_extra, const char *inputs)
{
    char text[4096];
    snprintf(text, sizeof(text),
             "agent:\n  site: t\n  data_dir: %s/data\n  stats_interval: 0\n%s"
             "inputs:\n%s",
             f->dir, agent_extra, inputs);
    free(f->conf);
    f->conf = tu_write(f->dir, "mittari.yaml", text);
}

static int init(struct fx *f)
{
    struct mt_diags d = {0};
    struct mt_agent_opts o = {f->conf, TEST_PLUGIN_DIR, BUILD_DIR "/mittari"};
    int rc = mt_agent_init(&f->a, &o, &d);
    if (d.n)
        mt_diags_print(&d, stderr);
    mt_diags_free(&d);
    return rc;
}

static int64_t rows(struct fx *f, const char *where)
{
    char path[1024], sql[256];
    sqlite3 *db;
    sqlite3_stmt *st;
    int64_t n = -1;
    snprintf(path, sizeof(path), "%s/data/mittari.db", f->dir);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM readings r JOIN series s ON s.id = r.series%s",
             where);
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static void after(struct fx *f, uv_timer_t *t, uint64_t ms, uv_timer_cb cb)
{
    uv_timer_init(mt_agent_loop(f->a), t);
    t->data = f;
    uv_timer_start(t, cb, ms, 0);
}

static void reload_cb(uv_timer_t *t)
{
    struct fx *f = t->data;
    char *p = tu_write(f->dir, "mittari.yaml", f->yaml2);
    free(p);
    mt_agent_reload(f->a);
    uv_close((uv_handle_t *)t, NULL);
}

static void stop_cb(uv_timer_t *t)
{
    struct fx *f = t->data;
    struct mt_inst_info v[8];
    f->listed_at_stop = mt_agent_instances(f->a, v, 8);
    for (size_t i = 0; i < f->listed_at_stop && i < 8; i++)
        if (v[i].kind == MT_INST_INPUT && v[i].state == MT_INST_RETIRING)
            f->retiring_at_stop++;
    f->stop_at_us = mt_mono_us();
    mt_agent_stop(f->a);
    uv_close((uv_handle_t *)t, NULL);
}

/* Issue 15 #1: a poll blocks 1.5 s; the input's settings change and a
 * reload retires it; the agent is stopped while it still retires. The
 * stop used to see only listed inputs, free the writer, and the poll's
 * emit then wrote into freed memory. Now the retiring input is listed, the
 * stop waits for it, and its reading is stored. */
static void stop_during_reload_waits_for_the_retiring_input(void **state)
{
    struct fx *f = *state;
    char yaml2[1024];
    write_conf(f, "  shutdown_timeout: 5s\n",
               "  slow:\n    plugin: stall\n    block: 1500ms\n    poll_interval: 50ms\n");
    snprintf(yaml2, sizeof(yaml2),
             "agent:\n  site: t\n  data_dir: %s/data\n  stats_interval: 0\n"
             "  shutdown_timeout: 5s\ninputs:\n  slow:\n    plugin: stall\n    block: 1500ms\n"
             "    poll_interval: 50ms\n    metric: changed\n",
             f->dir);
    f->yaml2 = yaml2;
    assert_int_equal(init(f), MT_EXIT_OK);
    tu_capture_start();
    after(f, &f->t1, 200, reload_cb);
    after(f, &f->t2, 600, stop_cb);
    int64_t t0 = mt_mono_us();
    int rc = mt_agent_run(f->a);
    int64_t took = mt_mono_us() - t0;
    mt_agent_free(f->a);
    assert_int_equal(rc, MT_EXIT_OK);
    assert_int_equal(f->retiring_at_stop, 1); /* reachable from the agent while alive */
    assert_true(took >= 1400000);             /* the stop waited for the poll */
    assert_true(tu_captured("poll emit: rc 0"));
    assert_false(tu_captured("did not stop within"));
    assert_int_equal(rows(f, " WHERE s.metric = 'stalled'"), 1); /* its reading, stored */
    assert_int_equal(rows(f, " WHERE s.metric = 'changed'"), 0); /* no replacement started */
}

/* Issue 15 #1, second form: a poll outlasts shutdown_timeout. The stop
 * goes on without it (final line, writer ended), refuses its late reading,
 * and frees the writer only after it. */
static void poll_outlasting_the_stop_is_refused_not_freed_under(void **state)
{
    struct fx *f = *state;
    write_conf(f, "  shutdown_timeout: 200ms\n",
               "  slow:\n    plugin: stall\n    block: 1500ms\n    poll_interval: 50ms\n");
    assert_int_equal(init(f), MT_EXIT_OK);
    tu_capture_start();
    after(f, &f->t1, 300, stop_cb);
    int64_t t0 = mt_mono_us();
    int rc = mt_agent_run(f->a);
    int64_t took = mt_mono_us() - t0;
    mt_agent_free(f->a);
    assert_int_equal(rc, MT_EXIT_OK);
    assert_true(took >= 1400000); /* the writer outlived the poll */
    assert_true(tu_captured("input slow did not stop within shutdown_timeout"));
    assert_true(tu_captured("final: queued 0"));
    char want[64];
    snprintf(want, sizeof(want), "poll emit: rc %d", MITTARI_ESTOPPED);
    assert_true(tu_captured(want));
    /* the final line came before the late emit: after the last commit */
    const char *all = tu_captured_all();
    assert_true(strstr(all, "final:") < strstr(all, want));
    assert_int_equal(rows(f, ""), 0);
}

static void reload_now(uv_timer_t *t)
{
    struct fx *f = t->data;
    char *p = tu_write(f->dir, "mittari.yaml", f->yaml2);
    free(p);
    mt_agent_reload(f->a);
    uv_close((uv_handle_t *)t, NULL);
}

static void stop_now(uv_timer_t *t)
{
    struct fx *f = t->data;
    mt_agent_stop(f->a);
    uv_close((uv_handle_t *)t, NULL);
}

/* Reloads and stops racing, with polls in flight on workers: at every
 * interleaving the stop ends cleanly with every instance gone (the
 * sanitizer run checks there is no use after free and no leak). */
static void reload_and_stop_race(void **state)
{
    struct fx *f = *state;
    char yaml2[1024];
    unsigned seed = 12345;
    for (int round = 0; round < 24; round++) {
        /* polls of 30..150 ms on the input a reload retires; the stop comes
         * 0..80 ms after the reload: before it was read, while a retires,
         * or after its replacement started */
        int block = 30 + (int)(rand_r(&seed) % 120);
        write_conf(f, "  shutdown_timeout: 2s\n",
                   "  a:\n    plugin: stall\n    block: 100ms\n    poll_interval: 5ms\n"
                   "  b:\n    plugin: probe\n    count: 50\n    poll_interval: 5ms\n");
        snprintf(yaml2, sizeof(yaml2),
                 "agent:\n  site: t\n  data_dir: %s/data\n  stats_interval: 0\n"
                 "  shutdown_timeout: 2s\ninputs:\n  a:\n    plugin: stall\n    block: %dms\n"
                 "    poll_interval: 5ms\n  c:\n    plugin: stall\n    block: 5ms\n"
                 "    poll_interval: 3ms\n",
                 f->dir, block);
        f->yaml2 = yaml2;
        assert_int_equal(init(f), MT_EXIT_OK);
        uint64_t r = 20 + rand_r(&seed) % 40, s = r + rand_r(&seed) % 80;
        after(f, &f->t1, r, reload_now);
        after(f, &f->t2, s, stop_now);
        if (round % 3 == 0)
            after(f, &f->t3, s + rand_r(&seed) % 10, stop_now); /* a second signal */
        assert_int_equal(mt_agent_run(f->a), MT_EXIT_OK);
        assert_int_equal(mt_agent_instances(f->a, NULL, 0), 0);
        mt_agent_free(f->a);
    }
}

static void note_listening(uv_timer_t *t)
{
    struct fx *f = t->data;
    f->listening[f->nlistening++] = mt_writer_listening(mt_agent_writer(f->a));
    if (f->nlistening == 2)
        mt_agent_stop(f->a);
    uv_close((uv_handle_t *)t, NULL);
}

/* Issue 14: commits wake the loop only while something there reads the
 * log as it grows. Without outputs the writer does not tell the loop of
 * its commits; a reload that adds an output turns that on, one that
 * removes it off again. */
static void commits_told_to_the_loop_only_with_outputs(void **state)
{
    struct fx *f = *state;
    char yaml2[1024];
    write_conf(f, "", "  b:\n    plugin: probe\n    count: 1000000\n    poll_interval: 5ms\n");
    snprintf(yaml2, sizeof(yaml2),
             "agent:\n  site: t\n  data_dir: %s/data\n  stats_interval: 0\ninputs:\n"
             "  b:\n    plugin: probe\n    count: 1000000\n    poll_interval: 5ms\n"
             "outputs:\n  f:\n    type: file\n    path: %s/out.jsonl\n",
             f->dir, f->dir);
    f->yaml2 = yaml2;
    assert_int_equal(init(f), MT_EXIT_OK);
    after(f, &f->t1, 300, note_listening);
    after(f, &f->t2, 400, reload_now);
    after(f, &f->t3, 1500, note_listening);
    assert_int_equal(mt_agent_run(f->a), MT_EXIT_OK); /* the second note stops it */
    mt_agent_free(f->a);
    assert_int_equal(f->nlistening, 2);
    assert_false(f->listening[0]);
    assert_true(f->listening[1]);
    assert_true(rows(f, "") > 0);
}

/* The same for rules: a rule reads the log as it grows, so a reload that
 * adds one (and no output) turns the writer's commit notices on; without
 * them the rule would never hear of a commit. */
static void commits_told_to_the_loop_with_rules(void **state)
{
    struct fx *f = *state;
    char yaml2[1024];
    free(tu_write(f->dir, "count.lua", "window { every = 'hour', metric = 'n', agg = 'count' }\n"));
    write_conf(f, "", "  b:\n    plugin: probe\n    count: 1000000\n    poll_interval: 5ms\n");
    snprintf(yaml2, sizeof(yaml2),
             "agent:\n  site: t\n  data_dir: %s/data\n  stats_interval: 0\ninputs:\n"
             "  b:\n    plugin: probe\n    count: 1000000\n    poll_interval: 5ms\n"
             "rules:\n  count:\n    script: %s/count.lua\n",
             f->dir, f->dir);
    f->yaml2 = yaml2;
    assert_int_equal(init(f), MT_EXIT_OK);
    after(f, &f->t1, 300, note_listening);
    after(f, &f->t2, 400, reload_now);
    after(f, &f->t3, 1500, note_listening);
    assert_int_equal(mt_agent_run(f->a), MT_EXIT_OK);
    mt_agent_free(f->a);
    assert_int_equal(f->nlistening, 2);
    assert_false(f->listening[0]);
    assert_true(f->listening[1]);
}

/* A damaged log at start: exit status 4 and the way out named. */
static void damaged_log_at_start(void **state)
{
    struct fx *f = *state;
    char path[1024];
    write_conf(f, "", "  p:\n    plugin: probe\n    count: 3\n");
    snprintf(path, sizeof(path), "%s/data", f->dir);
    assert_int_equal(mt_mkdirs(path, 0750), 0);
    snprintf(path, sizeof(path), "%s/data/mittari.db", f->dir);
    FILE *fp = fopen(path, "w");
    fputs("SQLite format 3", fp);
    fputc(0, fp);
    for (int i = 0; i < 8192; i++)
        fputc(i * 7, fp);
    fclose(fp);
    tu_capture_start();
    assert_int_equal(init(f), MT_EXIT_STORAGE);
    mt_agent_free(f->a);
    assert_true(tu_captured("mittari salvage -c"));
    assert_false(tu_captured("Unknown error"));
}


/* Issue 15 #5: retention had no maximum and retention_ms * 1000 wrapped
 * round (1000000000d deleted delivered rows of any age). The option is
 * bounded, and a query's relative time is checked arithmetic too. */
static void huge_durations_are_refused_or_clamped(void **state)
{
    struct fx *f = *state;
    write_conf(f, "  retention: 1000000000d\n", "  p:\n    plugin: probe\n");
    struct mt_diags d = {0};
    struct mt_agent_opts o = {f->conf, TEST_PLUGIN_DIR, BUILD_DIR "/mittari"};
    assert_int_equal(mt_agent_init(&f->a, &o, &d), MT_EXIT_CONFIG);
    bool said = false;
    for (size_t i = 0; i < d.n; i++)
        said |= strstr(d.v[i].msg, "retention") != NULL;
    assert_true(said);
    mt_diags_free(&d);
    mt_agent_free(f->a);
    write_conf(f, "  retention: 36500d\n", "  p:\n    plugin: probe\n");
    assert_int_equal(init(f), MT_EXIT_OK);
    mt_agent_free(f->a);

    int64_t us = 0, now = 1764084344000000LL;
    assert_int_equal(mt_parse_time("-100000000000d", now, &us), 0);
    assert_true(us < 0); /* long before the epoch: no wrap into the future */
    assert_int_equal(mt_parse_time("-2h", now, &us), 0);
    assert_int_equal(us, now - 7200000000LL);
}

/* The hard stop's thread ends a process whose loop is stuck, with the
 * status and a line naming what it waited for. */
static void stopwatch_ends_a_stuck_process(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    int64_t t0 = mt_mono_us();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct mt_stopwatch *s;
        dup2(fds[1], 2);
        close(fds[0]);
        mt_diag_init();
        if (mt_stopwatch_arm(&s, mt_mono_us() + 200000, MT_EXIT_FAILURE))
            _exit(99);
        mt_stopwatch_note(s, "input x (a poll of its plugin still running)");
        mt_stopwatch_set_status(s, MT_EXIT_STORAGE);
        for (;;)
            pause(); /* a loop that never comes back */
    }
    close(fds[1]);
    char buf[2048] = "";
    size_t n = 0;
    ssize_t r;
    while ((r = read(fds[0], buf + n, sizeof(buf) - 1 - n)) > 0)
        n += (size_t)r;
    close(fds[0]);
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    int64_t took = mt_mono_us() - t0;
    assert_true(WIFEXITED(st));
    if (WEXITSTATUS(st) != MT_EXIT_STORAGE)
        fprintf(stderr, "child said: %s\n", buf);
    assert_int_equal(WEXITSTATUS(st), MT_EXIT_STORAGE);
    assert_true(took >= 150000 && took < 5000000);
    assert_non_null(strstr(buf, "still waiting for: input x (a poll of its plugin still running)"));

    /* disarmed in time: nothing happens */
    struct mt_stopwatch *s;
    assert_int_equal(mt_stopwatch_arm(&s, mt_mono_us() + 100000, 1), 0);
    mt_stopwatch_free(s);
    usleep(200000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(stop_during_reload_waits_for_the_retiring_input, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(poll_outlasting_the_stop_is_refused_not_freed_under, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(reload_and_stop_race, setup, teardown),
        cmocka_unit_test_setup_teardown(damaged_log_at_start, setup, teardown),
        cmocka_unit_test_setup_teardown(commits_told_to_the_loop_only_with_outputs, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(commits_told_to_the_loop_with_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(stopwatch_ends_a_stuck_process, setup, teardown),
        cmocka_unit_test_setup_teardown(huge_durations_are_refused_or_clamped, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
