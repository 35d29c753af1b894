/* Issue 13: plugins that cannot take the agent down. The wire between the
 * agent and an isolated input's process (isowire.c), the crash report
 * (crash.c) in forked processes that really fault, and isolated inputs in
 * a real agent (isolate.c, isolate_child.c with the built mittari as the
 * child): the same readings as in-process, a failed create, and stops and
 * reloads racing a child that is busy, starting or dying. */
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <mittari/mittari.h>

#include "agent.h"
#include "crash.h"
#include "diag.h"
#include "isowire.h"
#include "options.h"
#include "util.h"

/* ---- the wire ---- */

static void put_emit(struct mt_buf *b, const struct mittari_reading *r)
{
    b->len = 0;
    assert_int_equal(mt_isowire_put_u8(b, MT_ISOWIRE_EMIT), 0);
    assert_int_equal(mt_isowire_put_reading(b, r), 0);
}

static int get_emit(const struct mt_buf *b, size_t len, struct mt_isowire_reading *out)
{
    struct mt_isowire_rd rd;
    mt_isowire_rd_init(&rd, b->p, len);
    if (mt_isowire_get_u8(&rd) != MT_ISOWIRE_EMIT)
        return -EBADMSG;
    return mt_isowire_get_reading(&rd, out);
}

static void reading_round_trip(void **state)
{
    (void)state;
    static const uint8_t card[] = {0x00, 0x13, 0xd0, 0x5c, 0x7a};
    struct mittari_tag tags[] = {{"service", "library"}, {"door", "north"}};
    struct mittari_reading r = MITTARI_READING_INIT;
    struct mt_buf b = {0};
    struct mt_isowire_reading got;

    r.ts_us = 1767225600123456LL;
    r.device = "door-1";
    r.metric = "visitors_in";
    r.unit = "persons";
    r.kind = MITTARI_KIND_CUMULATIVE;
    r.value = 2.5;
    r.counter = 65535;
    r.counter_bits = 16;
    r.subject_id = card;
    r.subject_id_len = sizeof(card);
    r.subject_space = "em4100";
    r.tags = tags;
    r.ntags = 2;
    r.source = "unit 3 holding 40001";
    put_emit(&b, &r);
    assert_int_equal(get_emit(&b, b.len, &got), 0);
    assert_int_equal(got.r.size, sizeof(struct mittari_reading));
    assert_true(got.r.ts_us == r.ts_us);
    assert_string_equal(got.r.device, "door-1");
    assert_string_equal(got.r.metric, "visitors_in");
    assert_string_equal(got.r.unit, "persons");
    assert_int_equal(got.r.kind, MITTARI_KIND_CUMULATIVE);
    assert_true(got.r.value == 2.5);
    assert_true(got.r.counter == 65535);
    assert_int_equal(got.r.counter_bits, 16);
    assert_int_equal(got.r.subject_id_len, sizeof(card));
    assert_memory_equal(got.r.subject_id, card, sizeof(card));
    assert_string_equal(got.r.subject_space, "em4100");
    assert_int_equal(got.r.ntags, 2);
    assert_string_equal(got.r.tags[1].key, "door");
    assert_string_equal(got.r.tags[1].value, "north");
    assert_string_equal(got.r.source, "unit 3 holding 40001");

    /* NULLs stay NULL, not "" */
    struct mittari_reading m = MITTARI_READING_INIT;
    m.metric = "x";
    m.kind = MITTARI_KIND_EVENT;
    put_emit(&b, &m);
    assert_int_equal(get_emit(&b, b.len, &got), 0);
    assert_null(got.r.device);
    assert_null(got.r.unit);
    assert_null(got.r.subject_id);
    assert_null(got.r.tags);
    assert_null(got.r.source);
    mt_buf_free(&b);
}

/* What the agent refuses on a declared number alone crosses the wire with
 * that number, so it is refused for the same reason as in-process. */
static void refused_readings_keep_their_reason(void **state)
{
    (void)state;
    struct mittari_tag tags[9] = {{"a", "1"}};
    char subject[80];
    struct mt_buf b = {0};
    struct mt_isowire_reading got;

    /* a reading of ABI 1.0: no source, even if the bytes after it say one */
    struct {
        struct mittari_reading r;
    } old = {MITTARI_READING_INIT};
    old.r.size = MITTARI_READING_SIZE_1_0;
    old.r.metric = "m";
    old.r.kind = MITTARI_KIND_GAUGE;
    old.r.source = "not read";
    put_emit(&b, &old.r);
    assert_int_equal(get_emit(&b, b.len, &got), 0);
    assert_null(got.r.source);

    /* too small: only the size crosses */
    struct mittari_reading small = {.size = 8};
    put_emit(&b, &small);
    assert_int_equal(get_emit(&b, b.len, &got), 0);
    assert_true(got.r.size < MITTARI_READING_SIZE_1_0);

    /* nine tags, a 65-byte subject: the numbers, not the contents */
    struct mittari_reading r = MITTARI_READING_INIT;
    r.metric = "m";
    r.kind = MITTARI_KIND_GAUGE;
    r.tags = tags;
    r.ntags = 9;
    memset(subject, '7', sizeof(subject));
    r.subject_id = subject;
    r.subject_id_len = 65;
    put_emit(&b, &r);
    assert_int_equal(get_emit(&b, b.len, &got), 0);
    assert_int_equal(got.r.ntags, 9);
    assert_non_null(got.r.tags);
    assert_int_equal(got.r.subject_id_len, 65);
    assert_non_null(got.r.subject_id);
    assert_null(memchr(b.p, '7', b.len)); /* its bytes were not sent */

    /* a metric longer than the wire carries is cut, still far too long */
    char longname[3000];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = 0;
    r.ntags = 0;
    r.subject_id = NULL;
    r.metric = longname;
    put_emit(&b, &r);
    assert_int_equal(get_emit(&b, b.len, &got), 0);
    assert_int_equal(strlen(got.r.metric), MT_ISOWIRE_TEXT_MAX);
    mt_buf_free(&b);
}

/* The agent reads what a plugin's process wrote: every truncation of a
 * valid packet, a byte too many and a string without its NUL are refused,
 * none read out of bounds (the sanitizer run checks). */
static void malformed_packets_are_refused(void **state)
{
    (void)state;
    struct mittari_tag tags[] = {{"k", "v"}};
    struct mittari_reading r = MITTARI_READING_INIT;
    struct mt_buf b = {0};
    struct mt_isowire_reading got;

    r.metric = "m";
    r.device = "d";
    r.kind = MITTARI_KIND_EVENT;
    r.subject_id = "12345";
    r.subject_id_len = 5;
    r.tags = tags;
    r.ntags = 1;
    put_emit(&b, &r);
    for (size_t len = 0; len < b.len; len++) {
        /* a copy of exactly len bytes, so ASan sees a read past it */
        uint8_t *cut = malloc(len ? len : 1);
        memcpy(cut, b.p, len);
        struct mt_isowire_rd rd;
        mt_isowire_rd_init(&rd, cut, len);
        int rc = mt_isowire_get_u8(&rd) == MT_ISOWIRE_EMIT ? mt_isowire_get_reading(&rd, &got)
                                                           : -EBADMSG;
        assert_int_equal(rc, -EBADMSG);
        free(cut);
    }
    mt_buf_addc(&b, 0);
    assert_int_equal(get_emit(&b, b.len, &got), -EBADMSG);
    b.len--;
    /* the metric's NUL replaced */
    char *m = memmem(b.p, b.len, "m\0", 2);
    assert_non_null(m);
    m[1] = 'x';
    assert_int_equal(get_emit(&b, b.len, &got), -EBADMSG);
    mt_buf_free(&b);
}

struct item {
    const char *name;
    int64_t unit;
    int order;
};
struct conf {
    const char *s, *unset;
    int64_t i, dur;
    double d;
    bool b;
    int e;
    uint64_t size;
    struct mittari_list items;
};
static const char *const orders[] = {"ABCD", "DCBA", NULL};
static const struct mittari_option item_opts[] = {
    {.name = "name", .type = MITTARI_OPT_STRING, .offset = offsetof(struct item, name)},
    {.name = "unit", .type = MITTARI_OPT_INT, .def = "1", .offset = offsetof(struct item, unit)},
    {.name = "order",
     .type = MITTARI_OPT_ENUM,
     .def = "ABCD",
     .values = orders,
     .offset = offsetof(struct item, order)},
    {0},
};
static const struct mittari_option conf_opts[] = {
    {.name = "s",
     .type = MITTARI_OPT_STRING,
     .flags = MITTARI_OPT_SECRET,
     .offset = offsetof(struct conf, s)},
    {.name = "unset", .type = MITTARI_OPT_STRING, .offset = offsetof(struct conf, unset)},
    {.name = "i", .type = MITTARI_OPT_INT, .offset = offsetof(struct conf, i)},
    {.name = "dur", .type = MITTARI_OPT_DURATION, .offset = offsetof(struct conf, dur)},
    {.name = "d", .type = MITTARI_OPT_DOUBLE, .offset = offsetof(struct conf, d)},
    {.name = "b", .type = MITTARI_OPT_BOOL, .offset = offsetof(struct conf, b)},
    {.name = "e", .type = MITTARI_OPT_ENUM, .values = orders, .offset = offsetof(struct conf, e)},
    {.name = "size", .type = MITTARI_OPT_SIZE, .offset = offsetof(struct conf, size)},
    {.name = "items",
     .type = MITTARI_OPT_LIST,
     .sub = item_opts,
     .sub_size = sizeof(struct item),
     .offset = offsetof(struct conf, items)},
    {0},
};

/* The child gets the values the agent validated: every type, lists of
 * structs, a secret, an unset string, equal after the trip. */
static void option_values_cross_unchanged(void **state)
{
    (void)state;
    struct conf *c =
        tu_options(conf_opts, sizeof(struct conf),
                   "{s: hunter2, i: -42, dur: 2m, d: 0.1, b: true, e: DCBA, "
                   "size: 64KiB, items: [{name: a, unit: 7, order: DCBA}, {name: b}]}");
    struct mt_buf b = {0}, before = {0}, after = {0};
    struct mt_arena arena = {0};
    struct conf got;
    struct mt_isowire_rd rd;

    assert_int_equal(mt_isowire_put_conf(&b, conf_opts, c), 0);
    memset(&got, 0, sizeof(got));
    mt_isowire_rd_init(&rd, b.p, b.len);
    assert_int_equal(mt_isowire_get_conf(&rd, conf_opts, &got, &arena), 0);
    assert_int_equal(rd.off, b.len);
    assert_string_equal(got.s, "hunter2");
    assert_null(got.unset);
    assert_int_equal(got.items.n, 2);
    assert_int_equal(MITTARI_LIST_ITEM(&got.items, struct item, 0)->unit, 7);
    assert_int_equal(MITTARI_LIST_ITEM(&got.items, struct item, 1)->order, 0);
    mt_options_canonical(conf_opts, c, &before);
    mt_options_canonical(conf_opts, &got, &after);
    assert_string_equal(mt_buf_cstr(&before), mt_buf_cstr(&after));
    /* cut short anywhere: refused */
    for (size_t len = 0; len < b.len; len++) {
        struct mt_arena a2 = {0};
        struct conf g2;
        memset(&g2, 0, sizeof(g2));
        mt_isowire_rd_init(&rd, b.p, len);
        assert_int_equal(mt_isowire_get_conf(&rd, conf_opts, &g2, &a2), -EBADMSG);
        mt_arena_free(&a2);
    }
    mt_arena_free(&arena);
    mt_buf_free(&b);
    mt_buf_free(&before);
    mt_buf_free(&after);
    tu_options_free(c);
}

/* ---- the crash report ---- */

static void report_says_who_and_where(void **state)
{
    (void)state;
    struct mt_crash_who who;
    char line[1024];
    mt_crash_who_init(&who, "input crashy[boom]", "boom", "crashy", "/x/crashy.so");
    struct mt_crash_mark m = {&who, "poll work"};

    mt_crash_format(line, sizeof(line), SIGSEGV, SEGV_MAPERR, NULL, 0, &m, NULL);
    assert_non_null(strstr(line, "input crashy[boom]: crashed: SIGSEGV (address not mapped, at "
                                 "0x0) in the plugin's poll work (plugin crashy, /x/crashy.so); "));
    mt_crash_format(line, sizeof(line), SIGSEGV, SEGV_MAPERR, (void *)0x10, 0, &m, "emit");
    assert_non_null(
        strstr(line, "at 0x10) in the agent's emit, called from the plugin's poll work"));
    /* abort() in plugin code: raised by the process itself */
    mt_crash_format(line, sizeof(line), SIGABRT, SI_TKILL, NULL, getpid(), &m, NULL);
    assert_non_null(strstr(line, "SIGABRT (abort() called) in the plugin's poll work"));
    /* no mark: the agent's own */
    mt_crash_format(line, sizeof(line), SIGFPE, FPE_INTDIV, NULL, 0, NULL, NULL);
    assert_non_null(strstr(line, "agent: crashed: SIGFPE (integer divide by zero) in the agent's "
                                 "own code, not in a plugin"));
    /* sent by another process while plugin code ran: not the plugin's */
    mt_crash_format(line, sizeof(line), SIGSEGV, SI_USER, NULL, 4242, &m, NULL);
    assert_non_null(strstr(line, "agent: crashed: SIGSEGV (sent by process 4242)"));
    /* a small buffer is cut, never overrun */
    char tiny[16];
    assert_int_equal(mt_crash_format(tiny, sizeof(tiny), SIGSEGV, 1, NULL, 0, &m, NULL), 15);
    assert_int_equal(strlen(tiny), 15);
}

struct fault {
    struct mt_crash_who who;
    bool marked;
};

/* A real fault, as in a plugin built without sanitizers: under them the
 * NULL store would be their report, not a SIGSEGV. */
__attribute__((no_sanitize_address, no_sanitize_undefined)) static void *fault_thread(void *arg)
{
    struct fault *f = arg;
    struct mt_crash_mark m = {0};
    if (f->marked)
        m = mt_crash_enter(&f->who, "poll work");
    volatile int *volatile p = NULL;
    *p = 1;
    mt_crash_leave(m);
    return NULL;
}

/* Forks a process that installs the handler and faults in a thread
 * (marked as plugin code or not); returns its wait status, with what it
 * wrote to stderr and sent as a packet. */
static int fault_in_child(bool marked, const char *marker, const char *prev, unsigned prev_count,
                          char *err, size_t errlen, char *pkt, size_t pktlen)
{
    int ep[2], sp[2];
    assert_int_equal(pipe(ep), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct fault f = {.marked = marked};
        pthread_t t;
        dup2(ep[1], 2);
        unsetenv("JOURNAL_STREAM");
        mt_diag_init();
        /* whatever the sanitizers installed: the default comes after ours */
        signal(SIGSEGV, SIG_DFL);
        mt_crash_who_init(&f.who, "input crashy[boom]", "boom", "crashy", "/x/crashy.so");
        struct mt_crash_conf c = {
            .exit_status = 5, .then = "then", .packet_fd = sp[1], .packet_type = 18};
        if (mt_crash_install(&c))
            _exit(99);
        mt_crash_set_marker(marker, prev, prev_count);
        pthread_create(&t, NULL, fault_thread, &f);
        pthread_join(t, NULL);
        _exit(98);
    }
    close(ep[1]);
    close(sp[1]);
    size_t n = 0;
    ssize_t r;
    while ((r = read(ep[0], err + n, errlen - 1 - n)) > 0)
        n += (size_t)r;
    err[n] = 0;
    close(ep[0]);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    r = recv(sp[0], pkt, pktlen - 1, MSG_DONTWAIT);
    pkt[r > 0 ? r : 0] = 0;
    close(sp[0]);
    return st;
}

static void crash_in_plugin_code_ends_with_its_status(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    char *marker = tu_path(dir, "plugin-crash");
    char err[2048], pkt[1200];
    struct mt_crash_record rec;

    int st = fault_in_child(true, marker, NULL, 0, err, sizeof(err), pkt, sizeof(pkt));
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 5);
    /* the packet: its type byte, then the line without a prefix */
    assert_int_equal((unsigned char)pkt[0], 18);
    assert_non_null(strstr(pkt + 1, "input crashy[boom]: crashed: SIGSEGV (address not mapped, at "
                                    "0x0) in the plugin's poll work (plugin crashy, "
                                    "/x/crashy.so); then"));
    assert_string_equal(err, ""); /* sent, so not written to stderr too */
    assert_int_equal(mt_crash_read_marker(marker, &rec), 0);
    assert_string_equal(rec.name, "boom");
    assert_string_equal(rec.plugin, "crashy");
    assert_string_equal(rec.signal, "SIGSEGV");
    assert_string_equal(rec.what, "poll work");
    assert_int_equal(rec.count, 1);
    assert_true(llabs(rec.time_s - time(NULL)) < 60);
    /* the same instance again: two in a row; another one: one */
    fault_in_child(true, marker, "boom", 1, err, sizeof(err), pkt, sizeof(pkt));
    assert_int_equal(mt_crash_read_marker(marker, &rec), 0);
    assert_int_equal(rec.count, 2);
    fault_in_child(true, marker, "other", 4, err, sizeof(err), pkt, sizeof(pkt));
    assert_int_equal(mt_crash_read_marker(marker, &rec), 0);
    assert_int_equal(rec.count, 1);
    tu_rmtree(dir);
    free(marker);
    free(dir);
}

/* Outside plugin code: the agent's own, with diag's time and level, and
 * the signal's default course (death by SIGSEGV, no marker). */
static void crash_outside_plugin_code_is_the_agents_own(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    char *marker = tu_path(dir, "plugin-crash");
    char err[2048], pkt[1200], want[64];
    struct mt_crash_record rec;

    time_t before = time(NULL);
    int st = fault_in_child(false, marker, NULL, 0, err, sizeof(err), pkt, sizeof(pkt));
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGSEGV);
    assert_non_null(strstr(pkt + 1, "agent: crashed: SIGSEGV (address not mapped, at 0x0) in the "
                                    "agent's own code, not in a plugin"));
    assert_int_equal(mt_crash_read_marker(marker, &rec), -ENOENT);
    /* no packet socket: stderr, in diag's format, with the time of now
     * (the handler's own date arithmetic against gmtime_r) */
    int ep[2];
    assert_int_equal(pipe(ep), 0);
    pid_t pid = fork();
    if (pid == 0) {
        struct fault f = {.marked = true};
        pthread_t t;
        dup2(ep[1], 2);
        unsetenv("JOURNAL_STREAM");
        mt_diag_init();
        mt_crash_who_init(&f.who, "input x[y]", "y", "x", "");
        struct mt_crash_conf c = {.exit_status = 5, .then = "bye", .packet_fd = -1};
        mt_crash_install(&c);
        pthread_create(&t, NULL, fault_thread, &f);
        pthread_join(t, NULL);
        _exit(98);
    }
    close(ep[1]);
    ssize_t n = read(ep[0], err, sizeof(err) - 1);
    err[n > 0 ? n : 0] = 0;
    close(ep[0]);
    waitpid(pid, &st, 0);
    assert_int_equal(WEXITSTATUS(st), 5);
    bool match = false;
    for (time_t t = before; t <= time(NULL) && !match; t++) {
        mt_fmt_utc((int64_t)t * 1000000, want, sizeof(want), 0);
        strcat(want, " crit input x[y]: crashed: SIGSEGV");
        match = strncmp(err, want, strlen(want)) == 0;
    }
    if (!match)
        fprintf(stderr, "got: %s\n", err);
    assert_true(match);
    assert_non_null(strstr(err, "(plugin x); bye\n"));
    tu_rmtree(dir);
    free(marker);
    free(dir);
}

static void crash_marker_files(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    struct mt_crash_record rec;
    char *p =
        tu_write(dir, "m", "instance=a\nplugin=b\nsignal=SIGBUS\nwhat=start\ncount=3\ntime=5\n");
    assert_int_equal(mt_crash_read_marker(p, &rec), 0);
    assert_int_equal(rec.count, 3);
    assert_int_equal(rec.time_s, 5);
    free(p);
    p = tu_write(dir, "m", "garbage without equals\n");
    assert_int_equal(mt_crash_read_marker(p, &rec), -EINVAL);
    free(p);
    p = tu_write(dir, "m", "instance=a\ncount=0\ntime=5\n");
    assert_int_equal(mt_crash_read_marker(p, &rec), -EINVAL);
    free(p);
    p = tu_path(dir, "none");
    assert_int_equal(mt_crash_read_marker(p, &rec), -ENOENT);
    free(p);
    tu_rmtree(dir);
    free(dir);
}

/* ---- isolated inputs in a real agent ---- */

struct fx {
    char *dir;
    char *conf;
    struct mt_agent *a;
    uv_timer_t t1, t2, t3;
    char yaml2[4096];
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

static void conf_text(struct fx *f, char *out, size_t len, const char *agent_extra,
                      const char *inputs)
{
    snprintf(out, len,
             "agent:\n  site: t\n  data_dir: %s/data\n  stats_interval: 0\n"
             "  secret: 0123456789abcdef0123456789abcdef\n%sinputs:\n%s",
             f->dir, agent_extra, inputs);
}

static void write_conf(struct fx *f, const char *agent_extra, const char *inputs)
{
    size_t len = strlen(inputs) + 4096;
    char *text = malloc(len);
    conf_text(f, text, len, agent_extra, inputs);
    free(f->conf);
    f->conf = tu_write(f->dir, "mittari.yaml", text);
    free(text);
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

static void after(struct fx *f, uv_timer_t *t, uint64_t ms, uv_timer_cb cb)
{
    uv_timer_init(mt_agent_loop(f->a), t);
    t->data = f;
    uv_timer_start(t, cb, ms, 0);
}

static void stop_now(uv_timer_t *t)
{
    struct fx *f = t->data;
    mt_agent_stop(f->a);
    uv_close((uv_handle_t *)t, NULL);
}

static void reload_now(uv_timer_t *t)
{
    struct fx *f = t->data;
    free(tu_write(f->dir, "mittari.yaml", f->yaml2));
    mt_agent_reload(f->a);
    uv_close((uv_handle_t *)t, NULL);
}

/* The readings of the log as text lines "device metric value subject",
 * sorted, for comparing two runs. */
static char *log_rows(struct fx *f)
{
    char path[1024];
    sqlite3 *db;
    sqlite3_stmt *st;
    struct mt_buf b = {0};
    snprintf(path, sizeof(path), "%s/data/mittari.db", f->dir);
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT s.device, s.metric, s.tags, r.value, "
                                        "coalesce(r.subject, '-') FROM readings r JOIN series s "
                                        "ON s.id = r.series ORDER BY 1, 2, 3, 4, 5",
                                        -1, &st, NULL),
                     SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW)
        mt_buf_printf(&b, "%s %s %s %g %s\n", sqlite3_column_text(st, 0),
                      sqlite3_column_text(st, 1), sqlite3_column_text(st, 2),
                      sqlite3_column_double(st, 3), sqlite3_column_text(st, 4));
    sqlite3_finalize(st);
    sqlite3_close(db);
    char *s = strdup(mt_buf_cstr(&b));
    mt_buf_free(&b);
    return s;
}

/* crashy's numbered readings: per process (device p<pid>) 1..n, each
 * once. Returns how many processes emitted. */
static int seq_exact(struct fx *f)
{
    char path[1024];
    sqlite3 *db;
    sqlite3_stmt *st;
    int procs = 0;
    snprintf(path, sizeof(path), "%s/data/mittari.db", f->dir);
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT s.device, count(*), count(DISTINCT r.value), "
                                        "min(r.value), max(r.value) FROM readings r JOIN series s "
                                        "ON s.id = r.series WHERE s.metric = 'seq' GROUP BY 1",
                                        -1, &st, NULL),
                     SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW) {
        int64_t n = sqlite3_column_int64(st, 1), distinct = sqlite3_column_int64(st, 2);
        double lo = sqlite3_column_double(st, 3), hi = sqlite3_column_double(st, 4);
        if (n != distinct || lo != 1 || hi != (double)n)
            fail_msg("%s: %lld readings, %lld distinct, %g..%g", sqlite3_column_text(st, 0),
                     (long long)n, (long long)distinct, lo, hi);
        procs++;
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return procs;
}

/* The pids of the isolated processes the log named. */
static size_t child_pids(int *pids, size_t max)
{
    const char *p = tu_captured_all();
    size_t n = 0;
    while (n < max && (p = strstr(p, "its plugin runs in process "))) {
        p += strlen("its plugin runs in process ");
        pids[n++] = atoi(p);
    }
    return n;
}

/* Every process the agent started is gone (reaped: its exit was seen). */
static void assert_no_children_left(void)
{
    int pids[256];
    size_t n = child_pids(pids, 256);
    for (size_t i = 0; i < n; i++) {
        errno = 0;
        if (!(kill(pids[i], 0) == -1 && errno == ESRCH))
            fail_msg("isolated process %d is still there", pids[i]);
    }
}

/* The same plugin, options and host calls give the same readings in a
 * process of their own: a list option, an enum, a secret (the raw card
 * number of a check-in, pseudonymised by the agent), static tags, polls on
 * the child's workers. (No cumulative counter here: probe emits its
 * samples at start in one tight loop, where in-process two can share a
 * microsecond and be refused as a second value at one time.) */
static void isolated_plugin_stores_what_it_would_in_process(void **state)
{
    struct fx *f = *state;
    static const char *inputs =
        "  p:\n    plugin: probe\n%s    count: 3\n    poll_interval: 10ms\n    poll_runs: 4\n"
        "    subject: \"0013961168\"\n"
        "    tags: {theme: liikunta}\n"
        "    devices:\n      - {name: a, unit: 7, order: DCBA}\n      - {name: b, unit: 2}\n";
    char in[1024];
    char *rows[2];

    for (int iso = 0; iso < 2; iso++) {
        snprintf(in, sizeof(in), inputs, iso ? "    isolate: true\n" : "");
        tu_rmtree(f->dir);
        free(f->dir);
        f->dir = tu_tmpdir();
        write_conf(f, "", in);
        assert_int_equal(init(f), MT_EXIT_OK);
        tu_capture_start();
        after(f, &f->t1, 1500, stop_now);
        assert_int_equal(mt_agent_run(f->a), MT_EXIT_OK);
        mt_agent_free(f->a);
        rows[iso] = log_rows(f);
        assert_true(tu_captured("its plugin runs in process") == (iso == 1));
        assert_no_children_left();
    }
    assert_non_null(strstr(rows[0], "polled"));
    assert_non_null(strstr(rows[0], "checkin"));
    assert_null(strstr(rows[0], "0013961168"));
    assert_string_equal(rows[0], rows[1]);
    free(rows[0]);
    free(rows[1]);
}

/* create() fails in the child: said as in-process, the instance stays off,
 * no restart loop; the other input runs. */
static void failed_create_is_not_restarted(void **state)
{
    struct fx *f = *state;
    write_conf(f, "",
               "  bad:\n    plugin: probe\n    fail_create: true\n    isolate: true\n"
               "  good:\n    plugin: probe\n    count: 2\n");
    assert_int_equal(init(f), MT_EXIT_OK);
    tu_capture_start();
    after(f, &f->t1, 2500, stop_now);
    assert_int_equal(mt_agent_run(f->a), MT_EXIT_OK);
    mt_agent_free(f->a);
    assert_true(tu_captured("input probe[bad]: create failed: Input/output error; it stays off "
                            "until the next reload"));
    assert_true(tu_captured("instance down: create failed"));
    assert_false(tu_captured("restart 1"));
    assert_int_equal(child_pids((int[8]){0}, 8), 1);
    char *rows = log_rows(f);
    assert_non_null(strstr(rows, "good probe"));
    free(rows);
    assert_no_children_left();
}

/* A reload that changes only agent.log_level keeps the process and tells
 * it: its info lines, filtered at warning before, come through after. */
static void reload_tells_the_process_a_new_log_level(void **state)
{
    struct fx *f = *state;
    static const char *in = "  quiet:\n    plugin: crashy\n    crash_after: 0\n"
                            "    interval: 10ms\n    isolate: true\n";
    write_conf(f, "  log_level: warning\n", in);
    conf_text(f, f->yaml2, sizeof(f->yaml2), "  log_level: info\n", in);
    tu_capture_start(); /* before init, which sets the level to warning */
    assert_int_equal(init(f), MT_EXIT_OK);
    after(f, &f->t1, 600, reload_now);
    after(f, &f->t2, 1500, stop_now);
    assert_int_equal(mt_agent_run(f->a), MT_EXIT_OK);
    mt_agent_free(f->a);
    const char *all = tu_captured_all();
    const char *reloaded = strstr(all, "configuration reloaded");
    assert_non_null(reloaded);
    /* not before the reload ... */
    assert_true(strstr(all, "input crashy[quiet]: emitted") > reloaded);
    assert_non_null(strstr(reloaded, "input crashy[quiet]: emitted")); /* ... but after */
    assert_int_equal(seq_exact(f), 1);                                 /* one process throughout */
}

/* What the process is given must fit in one message: mittari check says
 * so, not the process that could not be started (whatever run refuses,
 * check refuses first). In-process the same options are fine. */
static void options_too_large_for_a_process_are_refused_by_check(void **state)
{
    struct fx *f = *state;
    size_t n = MT_ISOWIRE_INIT_MAX + 100;
    char *big = malloc(n + 1), *in = malloc(n + 256);
    memset(big, 'a', n);
    big[n] = 0;
    for (int iso = 0; iso < 2; iso++) {
        snprintf(in, n + 256, "  p:\n    plugin: probe\n    metric: %s\n    isolate: %s\n", big,
                 iso ? "true" : "false");
        write_conf(f, "", in);
        struct mt_diags d = {0};
        struct mt_agent_opts o = {f->conf, TEST_PLUGIN_DIR, BUILD_DIR "/mittari"};
        int rc = mt_agent_init(&f->a, &o, &d);
        bool said = false;
        for (size_t i = 0; i < d.n; i++)
            said |= strstr(d.v[i].msg, "more than an isolated process is given (131072)") != NULL &&
                    d.v[i].pos.line == 10; /* at isolate: */
        assert_int_equal(rc, iso ? MT_EXIT_CONFIG : MT_EXIT_OK);
        assert_true(said == (iso == 1));
        mt_diags_free(&d);
        mt_agent_free(f->a);
    }
    free(big);
    free(in);
}

/* A stop while the plugin's poll blocks for 40 s: the clean stop message
 * cannot be heard in time, so the process is killed at the deadline, well
 * within shutdown_timeout, and the agent stops cleanly. */
static void stop_kills_a_busy_child_at_the_deadline(void **state)
{
    struct fx *f = *state;
    write_conf(f, "  shutdown_timeout: 1s\n",
               "  busy:\n    plugin: crashy\n    crash_after: 0\n    block: 40s\n"
               "    isolate: true\n");
    assert_int_equal(init(f), MT_EXIT_OK);
    tu_capture_start();
    after(f, &f->t1, 400, stop_now);
    int64_t t0 = mt_mono_us();
    assert_int_equal(mt_agent_run(f->a), MT_EXIT_OK);
    int64_t took = mt_mono_us() - t0;
    mt_agent_free(f->a);
    assert_true(tu_captured("did not stop within 0.5 s: killed"));
    assert_false(tu_captured("did not stop within shutdown_timeout"));
    assert_true(took < 3000000);
    assert_no_children_left();
}

/* Stops at every moment of a child's short life: starting, emitting,
 * crashing, dead and waiting for its restart, restarting. Each stop ends
 * cleanly, every instance gone, no process left, and no reading of the
 * crashing plugin lost or doubled (its numbers 1..n per process). */
static void stop_racing_a_dying_child(void **state)
{
    struct fx *f = *state;
    unsigned seed = 4242;
    int crashes = 0;
    for (int round = 0; round < 12; round++) {
        write_conf(f, "  shutdown_timeout: 2s\n",
                   "  boom:\n    plugin: crashy\n    crash_after: 2\n    interval: 5ms\n"
                   "    isolate: true\n"
                   "  tick:\n    plugin: crashy\n    crash_in: timer\n    crash_after: 1\n"
                   "    interval: 7ms\n    isolate: true\n"
                   "  other:\n    plugin: probe\n    poll_interval: 5ms\n");
        assert_int_equal(init(f), MT_EXIT_OK);
        tu_capture_start();
        after(f, &f->t1, (uint64_t)(rand_r(&seed) % 1600), stop_now);
        assert_int_equal(mt_agent_run(f->a), MT_EXIT_OK);
        assert_int_equal(mt_agent_instances(f->a, NULL, 0), 0);
        mt_agent_free(f->a);
        assert_no_children_left();
        assert_false(tu_captured("broke the protocol"));
        crashes += tu_captured("crashed: SIGSEGV");
    }
    /* most stops came after a crash or two */
    assert_true(crashes >= 6);
    assert_true(seq_exact(f) >= 6);
}

/* A reload replaces a busy child (killed at its deadline) and one that is
 * dying or waiting for its restart; then a stop races the replacement. */
static void reload_replaces_busy_and_dying_children(void **state)
{
    struct fx *f = *state;
    unsigned seed = 99;
    for (int round = 0; round < 8; round++) {
        write_conf(f, "  shutdown_timeout: 1s\n",
                   "  busy:\n    plugin: crashy\n    crash_after: 0\n    block: 40s\n"
                   "    isolate: true\n"
                   "  boom:\n    plugin: crashy\n    crash_after: 1\n    interval: 5ms\n"
                   "    isolate: true\n");
        conf_text(f, f->yaml2, sizeof(f->yaml2), "  shutdown_timeout: 1s\n",
                  "  busy:\n    plugin: crashy\n    crash_after: 0\n    block: 40s\n"
                  "    interval: 30ms\n    isolate: true\n"
                  "  boom:\n    plugin: crashy\n    crash_after: 3\n    interval: 5ms\n"
                  "    isolate: true\n");
        assert_int_equal(init(f), MT_EXIT_OK);
        tu_capture_start();
        uint64_t r = 50 + rand_r(&seed) % 500;
        after(f, &f->t1, r, reload_now);
        after(f, &f->t2, round % 2 ? r + 1600 : r + rand_r(&seed) % 300, stop_now);
        assert_int_equal(mt_agent_run(f->a), MT_EXIT_OK);
        assert_int_equal(mt_agent_instances(f->a, NULL, 0), 0);
        mt_agent_free(f->a);
        assert_no_children_left();
        seq_exact(f);
        if (round % 2) { /* the reload finished before the stop: replaced */
            assert_true(tu_captured("configuration reloaded: 2 inputs"));
            assert_true(tu_captured("did not stop within 0.5 s: killed"));
            int pids[64];
            assert_true(child_pids(pids, 64) >= 3); /* busy twice, boom at least once */
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(reading_round_trip),
        cmocka_unit_test(refused_readings_keep_their_reason),
        cmocka_unit_test(malformed_packets_are_refused),
        cmocka_unit_test(option_values_cross_unchanged),
        cmocka_unit_test(report_says_who_and_where),
        cmocka_unit_test(crash_in_plugin_code_ends_with_its_status),
        cmocka_unit_test(crash_outside_plugin_code_is_the_agents_own),
        cmocka_unit_test(crash_marker_files),
        cmocka_unit_test_setup_teardown(isolated_plugin_stores_what_it_would_in_process, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(failed_create_is_not_restarted, setup, teardown),
        cmocka_unit_test_setup_teardown(reload_tells_the_process_a_new_log_level, setup, teardown),
        cmocka_unit_test_setup_teardown(options_too_large_for_a_process_are_refused_by_check, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(stop_kills_a_busy_child_at_the_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(stop_racing_a_dying_child, setup, teardown),
        cmocka_unit_test_setup_teardown(reload_replaces_busy_and_dying_children, setup, teardown),
    };
    mt_diag_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
