/* Lua decoders: decode(frame, ts) results checked and emitted, through the
 * real host (a probe input, the writer and the log database) and through a
 * recording host for the exact fields; malformed results, script failures
 * and limits refused, logged with file:line and counted. decoder_submit
 * (issue 8): the script runs on the decoder's own thread, a decoder whose
 * calls keep hitting a limit is paused and tried again (a test clock), a
 * full queue and frames left at free are counted, and free races the
 * thread without waiting for the script or calling the host after it. */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "decoder.h"
#include "input.h"
#include "log.h"
#include "plugin.h"
#include "pseudo.h"
#include "series.h"
#include "writer.h"

struct fx {
    char *dir;
    char *db;
    uv_loop_t loop;
    struct mt_series_reg series;
    struct mt_pseudo pseudo;
    struct mt_writer *w;
    struct mt_registry reg;
    struct mt_config *conf;
    struct mittari_ctx *ctx;
    int stopped;
    int64_t want;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    char err[256], text[1024];
    struct mt_logdb *db;
    struct mt_diags d = {0};

    f->dir = tu_tmpdir();
    f->db = tu_path(f->dir, "log.db");
    uv_loop_init(&f->loop);
    mt_series_init(&f->series);
    assert_int_equal(mt_pseudo_init(&f->pseudo, "0123456789abcdef0123456789abcdef"), 0);
    assert_int_equal(mt_log_open(&db, f->db, MT_LOG_WRITER, err, sizeof(err)), 0);
    struct mt_writer_conf wc = {
        .batch_size = 1000, .batch_interval_ms = 5, .queue_max = 100000, .housekeeping_ms = 60000};
    assert_int_equal(mt_writer_start(&f->w, &f->loop, db, &f->series, &wc, NULL, NULL), 0);
    mt_registry_init(&f->reg, TEST_PLUGIN_DIR);
    snprintf(text, sizeof(text),
             "agent:\n  site: test-site\n  data_dir: %s\ninputs:\n  gate:\n    plugin: probe\n",
             f->dir);
    char *path = tu_write(f->dir, "c.yaml", text);
    int rc = mt_config_load(&f->conf, path, TEST_PLUGIN_DIR, &f->reg, &d);
    if (rc)
        mt_diags_print(&d, stderr);
    assert_int_equal(rc, 0);
    mt_diags_free(&d);
    free(path);
    struct mt_input_env env = {.loop = &f->loop, .writer = f->w, .series = &f->series, .pseudo = &f->pseudo};
    struct mt_inst_conf *ic = f->conf->inputs[0];
    f->conf->inputs[0] = NULL;
    assert_int_equal(mt_input_create(&f->ctx, &env, ic, err, sizeof(err)), 0);
    assert_int_equal(mt_input_start(f->ctx), 0);
    tu_capture_start();
    *state = f;
    return 0;
}

static void on_stopped(void *arg)
{
    ((struct fx *)arg)->stopped++;
}

static bool is_stopped(void *arg)
{
    return ((struct fx *)arg)->stopped > 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    tu_capture_stop();
    mt_input_stop(f->ctx, on_stopped, f);
    assert_true(tu_run_until(&f->loop, is_stopped, f, 5000));
    mt_writer_stop(f->w, 1000);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    uv_loop_close(&f->loop);
    mt_config_free(f->conf);
    mt_registry_free(&f->reg);
    mt_series_free(&f->series);
    mt_pseudo_free(&f->pseudo);
    tu_rmtree(f->dir);
    free(f->db);
    free(f->dir);
    free(f);
    return 0;
}

static bool committed_enough(void *arg)
{
    struct fx *f = arg;
    return mt_writer_committed(f->w) >= f->want;
}

static size_t read_rows(struct fx *f, int64_t want, struct mt_row *rows, size_t max)
{
    struct mt_logdb *r;
    char err[256];
    size_t n = 0;
    f->want = want;
    assert_true(tu_run_until(&f->loop, committed_enough, f, 5000));
    mt_writer_flush(f->w);
    assert_int_equal(mt_log_open(&r, f->db, MT_LOG_READER, err, sizeof(err)), 0);
    assert_int_equal(mt_log_read(r, 0, INT64_MAX, max, rows, &n), 0);
    mt_log_close(r);
    return n;
}

static const struct mt_series_info *series_of(struct fx *f, const struct mt_row *row)
{
    return mt_series_get(&f->series, row->series);
}

/* A decoder from Lua text, through the real host API. */
static struct mittari_decoder *load(struct fx *f, const char *code)
{
    struct mittari_decoder *d = NULL;
    char *path = tu_write(f->dir, "dec.lua", code);
    int rc = mt_decoder_load(f->ctx, path, &d);
    if (rc)
        fail_msg("decoder did not load (%d): %s", rc, tu_captured_all());
    free(path);
    return d;
}

static int run(struct mittari_decoder *d, const char *frame)
{
    return mt_decoder_run(d, frame, strlen(frame), 1700000000000000);
}

static const char in_out[] = "-- IN=12 OUT=9: two door counters of a people counter\n"
                             "function decode(frame, ts)\n"
                             "  local out = {}\n"
                             "  for k, v in frame:gmatch('(%u+)=(%d+)') do\n"
                             "    out[#out + 1] = {metric = 'door_' .. k:lower(),\n"
                             "                     kind = 'cumulative', counter = tonumber(v),\n"
                             "                     bits = 32}\n"
                             "  end\n"
                             "  return out\n"
                             "end\n";

static void door_counters_become_deltas(void **state)
{
    struct fx *f = *state;
    struct mt_row rows[8];
    struct mittari_decoder *d = load(f, in_out);

    assert_int_equal(run(d, "IN=12 OUT=9"), 2);
    /* a second later: a counter has one value at one time (emit refuses a
     * second value with the same timestamp, issue 8 §5) */
    const char *second = "IN=15 OUT=11\r\n";
    assert_int_equal(mt_decoder_run(d, second, strlen(second), 1700000001000000), 2);
    size_t n = read_rows(f, 2, rows, 8); /* the first frame is the baseline */
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n; i++) {
        const struct mt_series_info *s = series_of(f, &rows[i]);
        assert_int_equal(s->kind, MITTARI_KIND_CUMULATIVE);
        assert_int_equal(s->bits, 32);
        assert_string_equal(s->device, "gate");
        assert_int_equal(rows[i].ts, 1700000001000000);
        if (strcmp(s->metric, "door_in") == 0)
            assert_true(rows[i].value == 3);
        else
            assert_true(strcmp(s->metric, "door_out") == 0 && rows[i].value == 2);
    }
    struct mt_decoder_stats st;
    mt_decoder_get_stats(d, &st);
    assert_int_equal(st.runs, 2);
    assert_int_equal(st.readings, 4);
    assert_int_equal(st.errors, 0);
    assert_int_equal(run(d, "no counters here"), 0);
    mt_decoder_free(d);
}

static void subject_is_pseudonymised_by_emit(void **state)
{
    struct fx *f = *state;
    struct mt_row rows[4];
    char expect[MT_SUBJECT_SIZE];
    struct mittari_decoder *d =
        load(f, "function decode(frame, ts)\n"
                "  local card = frame:match('^CARD (%d+)$')\n"
                "  if card then return {metric = 'checkin', kind = 'event', subject = card,\n"
                "                       space = 'card'} end\n"
                "end\n");

    assert_int_equal(run(d, "CARD 0013961168"), 1);
    assert_int_equal(run(d, "noise"), 0);
    assert_int_equal(read_rows(f, 1, rows, 4), 1);
    assert_int_equal(mt_pseudo_make(&f->pseudo, "card", "0013961168", 10, expect), 0);
    assert_string_equal(rows[0].subject, expect);
    assert_null(strstr(rows[0].subject, "0013961168"));
    assert_true(rows[0].value == 1); /* an event without a value happened once */
    assert_false(tu_captured("0013961168"));
    mt_decoder_free(d);
}

static void fields_reach_the_series(void **state)
{
    struct fx *f = *state;
    struct mt_row rows[4];
    struct mittari_decoder *d =
        load(f, "function decode(frame, ts)\n"
                "  return {{metric = 'temp', kind = 'gauge', value = 21.5, unit = 'Cel',\n"
                "           device = 'hall-2', tags = {floor = '2'}, ts = ts + 5},\n"
                "          {metric = 'visits', kind = 'delta', value = 3}}\n"
                "end\n");

    assert_int_equal(run(d, "x"), 2);
    assert_int_equal(read_rows(f, 2, rows, 4), 2);
    const struct mt_series_info *s = series_of(f, &rows[0]);
    assert_string_equal(s->metric, "temp");
    assert_string_equal(s->unit, "Cel");
    assert_string_equal(s->device, "hall-2");
    assert_string_equal(s->tags, "{\"floor\":\"2\"}");
    assert_int_equal(rows[0].ts, 1700000000000005);
    assert_true(rows[0].value == 21.5);
    assert_string_equal(series_of(f, &rows[1])->metric, "visits");
    assert_int_equal(rows[1].ts, 1700000000000000);
    mt_decoder_free(d);
}

/* Each returns something decode must not: refused whole, nothing emitted,
 * logged with the decoder's file:line and the reason, counted. */
static void malformed_results_are_refused(void **state)
{
    static const struct {
        const char *ret, *why;
    } cases[] = {
        {"42", "decode returned a number; return nil"},
        {"'IN=1'", "decode returned a string"},
        {"{metric = 'm', kind = 'gauge', value = 0/0}", "'value' must be finite"},
        {"{metric = 'm', kind = 'gauge', value = math.huge}", "'value' must be finite"},
        {"{metric = 'm', kind = 'gauge', value = '1'}", "'value' must be a number, not a string"},
        {"{metric = 'm', kind = 'gauge'}", "'value' is missing"},
        {"{kind = 'gauge', value = 1}", "'metric' is missing"},
        {"{metric = 'm', value = 1}", "'kind' is missing"},
        {"{metric = 'm', kind = 'sum', value = 1}", "'kind' must be"},
        {"{metric = 'm', kind = 'cumulative', value = 1}", "has 'counter'"},
        {"{metric = 'm', kind = 'cumulative', counter = 1.5}", "'counter' must be a whole"},
        {"{metric = 'm', kind = 'cumulative', counter = 70000, bits = 16}", "fit in 16 bits"},
        {"{metric = 'm', kind = 'cumulative', counter = -1, bits = 32}", "fit in 32 bits"},
        {"{metric = 'm', kind = 'cumulative', counter = 1, bits = 24}", "16, 32 or 64"},
        {"{metric = 'm', kind = 'gauge', value = 1, bits = 16}", "belong to cumulative"},
        {"{metric = 'm', kind = 'gauge', valeu = 1}",
         "unknown field 'valeu' (did you mean 'value'?)"},
        {"{metric = ('x'):rep(100), kind = 'gauge', value = 1}", "'metric' is 100 bytes"},
        {"{metric = 'm\\0x', kind = 'gauge', value = 1}", "with a NUL byte"},
        {"{metric = 'm', kind = 'event', subject = ('7'):rep(65)}", "'subject' is 65 bytes"},
        {"{metric = 'm', kind = 'event', subject = ''}", "'subject' is 0 bytes"},
        {"{metric = 'm', kind = 'event', subject = 5}", "'subject' must be a string"},
        {"{metric = 'm', kind = 'event', space = 'card'}", "'space' without 'subject'"},
        {"{metric = 'm', kind = 'gauge', value = 1, tags = {1, 2}}", "tag key must be a string"},
        {"{metric = 'm', kind = 'gauge', value = 1, tags = {k = 5}}",
         "'tag value' must be a string"},
        {"{metric = 'm', kind = 'gauge', value = 1, tags = {a='',b='',c='',d='',e='',f='',g='',"
         "h='',i=''}}",
         "more than 8 tags"},
        {"{metric = 'm', kind = 'gauge', value = 1, tags = 'x'}", "'tags' must be a table"},
        {"{metric = 'm', kind = 'gauge', value = 1, ts = -5}", "'ts' must be positive"},
        {"{metric = 'm', kind = 'gauge', value = 1, [true] = 1}", "field name is a boolean"},
        {"{5}", "reading #1: it is a number, not a table"},
        {"{{metric = 'ok', kind = 'gauge', value = 1}, {metric = 'm'}}", "reading #2: 'kind'"},
    };
    struct fx *f = *state;
    char code[512];
    const size_t n = sizeof(cases) / sizeof(cases[0]);
    for (size_t i = 0; i < n; i++) {
        snprintf(code, sizeof(code), "function decode(frame, ts)\n  return %s\nend\n",
                 cases[i].ret);
        struct mittari_decoder *d = load(f, code);
        tu_capture_start();
        int rc = run(d, "frame");
        if (rc != MITTARI_EREADING || !tu_captured(cases[i].why) || !tu_captured("dec.lua:1:"))
            fail_msg("return %s: rc %d, log: %s", cases[i].ret, rc, tu_captured_all());
        struct mt_decoder_stats st;
        mt_decoder_get_stats(d, &st);
        assert_int_equal(st.errors, 1);
        assert_int_equal(st.readings, 0);
        mt_decoder_free(d);
    }
    struct mt_input_stats ist;
    mt_input_get_stats(f->ctx, &ist);
    assert_int_equal(ist.emitted, 0); /* not even the good first reading of the last case */
    assert_int_equal(mt_input_counter(f->ctx, NULL, "decoder_errors"), n);
}

static void nil_and_empty_list_emit_nothing(void **state)
{
    struct fx *f = *state;
    struct mittari_decoder *d =
        load(f, "function decode(frame)\n"
                "  if frame == 'nil' then return nil end\n"
                "  if frame == 'meta' then return setmetatable({}, {__index = function() "
                "return 'gauge' end}) end\n"
                "  return {}\n"
                "end\n");
    assert_int_equal(run(d, "nil"), 0);
    assert_int_equal(run(d, "list"), 0);
    assert_int_equal(run(d, "meta"), 0); /* raw access: __index is never consulted */
    assert_int_equal(mt_decoder_run(d, NULL, 0, 0), 0);
    struct mt_decoder_stats st;
    mt_decoder_get_stats(d, &st);
    assert_int_equal(st.errors, 0);
    assert_int_equal(st.runs, 4);
    mt_decoder_free(d);
}

static void script_errors_are_logged_with_file_and_line(void **state)
{
    static const struct {
        const char *line2, *log;
    } cases[] = {
        {"  local x = nil; return x.field", "dec.lua:2: attempt to index a nil value"},
        {"  error({code = 7})", "dec.lua:2: (error object is a table value)"},
        {"  error()", "dec.lua:2: (error object is a nil value)"},
        {"  error('bad frame')", "dec.lua:2: bad frame"},
        {"  error('bad frame', 0)", "dec.lua:2: bad frame"},
        {"  return string.rep('x', -1, {})", "dec.lua:2: bad argument #3 to 'rep'"},
    };
    struct fx *f = *state;
    char code[256];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(code, sizeof(code), "function decode(frame)\n%s\nend\n", cases[i].line2);
        struct mittari_decoder *d = load(f, code);
        tu_capture_start();
        assert_int_equal(run(d, "a"), MITTARI_EREADING);
        if (!tu_captured(cases[i].log) || !tu_captured("decoder gate: "))
            fail_msg("%s: log: %s", cases[i].line2, tu_captured_all());
        mt_decoder_free(d);
    }
    assert_int_equal(mt_input_counter(f->ctx, NULL, "decoder_errors"), 6);
}

static size_t count_lines(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

/* A decoder that fails on every frame must not flood the log. */
static void repeated_failures_are_logged_once_and_counted(void **state)
{
    struct fx *f = *state;
    struct mittari_decoder *d = load(f, "function decode(frame) error('broken') end\n");
    for (int i = 0; i < 100; i++)
        assert_int_equal(run(d, "x"), MITTARI_EREADING);
    assert_int_equal(count_lines(tu_captured_all(), "dec.lua:1: broken"), 1);
    assert_int_equal(mt_input_counter(f->ctx, NULL, "decoder_errors"), 100);
    struct mt_decoder_stats st;
    mt_decoder_get_stats(d, &st);
    assert_int_equal(st.errors, 100);
    mt_decoder_free(d);
}

static const char limits_script[] =
    "function decode(frame)\n"
    "  if frame == 'loop' then while true do end end\n"
    "  if frame == 'hog' then local t = {} for i = 1, 1e8 do t[i] = i end end\n"
    "  if frame == 'pattern' then return ('a'):rep(40):find(('a-'):rep(40) .. 'b') end\n"
    "  if frame == 'catch' then while true do pcall(function() while true do end end) end end\n"
    "  return {metric = 'ok', kind = 'gauge', value = #frame}\n"
    "end\n";

static void limits_fail_one_frame_not_the_decoder(void **state)
{
    static const char *const frames[] = {"loop", "hog", "pattern", "catch"};
    /* the budget, or under valgrind the time limit first */
    static const char *const why[] = {
        "dec.lua:2: ", "dec.lua:3: not enough memory (memory cap 2048 KiB)",
        "dec.lua:4: pattern too complex", "dec.lua:5: "};
    static const char *const why2[] = {"instruction budget of 1000000 exhausted", "", "",
                                       "instruction budget of 1000000 exhausted"};
    struct fx *f = *state;
    struct mittari_decoder *d = load(f, limits_script);
    for (size_t i = 0; i < 4; i++) {
        int64_t t0 = mt_mono_us();
        tu_capture_start();
        assert_int_equal(run(d, frames[i]), MITTARI_EREADING);
        assert_true(mt_mono_us() - t0 < 2000000);
        bool limit = tu_captured(why2[i]) || (why2[i][0] && tu_captured("time limit of 100 ms"));
        if (!tu_captured(why[i]) || !limit)
            fail_msg("%s: log: %s", frames[i], tu_captured_all());
        mt_decoder_free(d); /* a fresh one, so the log is not rate-limited */
        d = load(f, limits_script);
        assert_int_equal(run(d, "fine"), 1);
    }
    assert_int_equal(run(d, "loop"), MITTARI_EREADING);
    assert_int_equal(run(d, "hog"), MITTARI_EREADING);
    assert_int_equal(run(d, "fine"), 1);
    struct mt_decoder_stats st;
    mt_decoder_get_stats(d, &st);
    assert_int_equal(st.errors, 2);
    assert_int_equal(st.budget, 1);
    assert_int_equal(st.memory, 1);
    mt_decoder_free(d);
}

static void huge_frame_is_an_error_not_a_crash(void **state)
{
    struct fx *f = *state;
    size_t len = 4u << 20;
    char *frame = malloc(len);
    memset(frame, 'x', len);
    struct mittari_decoder *d = load(
        f, "function decode(frame) return {metric = 'len', kind = 'gauge', value = #frame} end\n");
    assert_int_equal(mt_decoder_run(d, frame, len, 0), MITTARI_EREADING);
    assert_true(tu_captured("not enough memory"));
    assert_int_equal(mt_decoder_run(d, frame, 100000, 0), 1);
    free(frame);
    mt_decoder_free(d);
}

/* MT_DECODER_MAX_READINGS per frame: a bigger list is a bug in the script
 * (or a frame that should have been split), not 10,000 readings. */
static void readings_per_frame_are_capped(void **state)
{
    struct fx *f = *state;
    struct mittari_decoder *d =
        load(f, "function decode(frame)\n"
                "  local out = {}\n"
                "  for i = 1, tonumber(frame) do out[i] = {metric = 'm' .. i, kind = 'delta', "
                "value = 1} end\n"
                "  return out\n"
                "end\n");
    assert_int_equal(run(d, "64"), MT_DECODER_MAX_READINGS);
    assert_int_equal(run(d, "65"), MITTARI_EREADING);
    assert_true(tu_captured("65 readings for one frame; at most 64"));
    assert_int_equal(run(d, "100000"), MITTARI_EREADING);
    mt_decoder_free(d);
}

/* The agent's own checks (name syntax) still apply; the good readings of
 * the frame are emitted. */
static void refused_reading_does_not_drop_the_others(void **state)
{
    struct fx *f = *state;
    struct mittari_decoder *d =
        load(f, "function decode(frame)\n"
                "  return {{metric = 'bad name!', kind = 'gauge', value = 1},\n"
                "          {metric = 'good', kind = 'gauge', value = 2}}\n"
                "end\n");
    assert_int_equal(run(d, "x"), MITTARI_EREADING);
    struct mt_decoder_stats st;
    mt_decoder_get_stats(d, &st);
    assert_int_equal(st.readings, 1);
    assert_int_equal(st.refused, 1);
    struct mt_input_stats ist;
    mt_input_get_stats(f->ctx, &ist);
    assert_int_equal(ist.emitted, 1);
    assert_int_equal(ist.invalid, 1);
    assert_true(tu_captured("reading refused: metric"));
    assert_true(tu_captured("dec.lua:1: the agent refused 1 of the 2 readings"));
    mt_decoder_free(d);
}

static void globals_persist_per_decoder(void **state)
{
    struct fx *f = *state;
    const char *code = "function decode(frame)\n"
                       "  seen = (seen or 0) + 1\n"
                       "  return {metric = 'seen', kind = 'gauge', value = seen}\n"
                       "end\n";
    struct mittari_decoder *a = load(f, code), *b = load(f, code);
    struct mt_row rows[4];
    assert_int_equal(run(a, "x"), 1);
    assert_int_equal(run(a, "x"), 1);
    assert_int_equal(run(b, "x"), 1);
    assert_int_equal(read_rows(f, 3, rows, 4), 3);
    assert_true(rows[0].value == 1 && rows[1].value == 2 && rows[2].value == 1);
    mt_decoder_free(a);
    mt_decoder_free(b);
}

static void bad_files_are_refused_at_load(void **state)
{
    static const struct {
        const char *code;
        int rc;
        const char *log;
    } cases[] = {
        {"function decode(frame)\n  return = 1\nend\n", MITTARI_ECONFIG, "dec.lua:2:"},
        {"function decoder(frame) end\n", MITTARI_ECONFIG,
         "defines no function decode(frame, ts) (found a nil)"},
        {"decode = 5\n", MITTARI_ECONFIG, "(found a number)"},
        {"while true do end\nfunction decode() end\n", MITTARI_ECONFIG, "dec.lua:1: "},
        {"big = ('x'):rep(1 << 30)\n", MITTARI_ECONFIG, "not enough memory"},
        {"\x1bLua\x54\x00junk", MITTARI_ECONFIG, "bytecode is refused"},
        {"os.exit(1)\n", MITTARI_ECONFIG, "dec.lua:1: attempt to index a nil value (global 'os')"},
    };
    struct fx *f = *state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct mittari_decoder *d = (void *)1;
        char *path = tu_write(f->dir, "dec.lua", cases[i].code);
        tu_capture_start();
        assert_int_equal(mt_decoder_load(f->ctx, path, &d), cases[i].rc);
        assert_null(d);
        if (!tu_captured(cases[i].log) || !tu_captured("cannot load decoder"))
            fail_msg("%s: log: %s", cases[i].code, tu_captured_all());
        char err[512];
        assert_int_equal(mt_decoder_check_file(path, err, sizeof(err)), cases[i].rc);
        if (!strstr(err, cases[i].log))
            fail_msg("check_file: %s", err);
        free(path);
    }
    struct mittari_decoder *d = NULL;
    char *missing = tu_path(f->dir, "missing.lua");
    assert_int_equal(mt_decoder_load(f->ctx, missing, &d), -ENOENT);
    char err[512];
    assert_int_equal(mt_decoder_check_file(missing, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "missing.lua: No such file or directory"));
    free(missing);
    char *ok = tu_write(f->dir, "ok.lua", in_out);
    assert_int_equal(mt_decoder_check_file(ok, err, sizeof(err)), 0);
    free(ok);
}

/* ---- a recording host: the exact struct each emit received ---- */

struct rec_reading {
    struct mittari_reading r;
    char metric[64], unit[32], device[64], space[33], tags[256];
    unsigned char subject[64];
};

struct rec {
    int n, counted, logged;
    struct rec_reading v[80];
    char log[512];
};

static int rec_emit(struct mittari_ctx *ctx, const struct mittari_reading *r)
{
    struct rec *rc = (struct rec *)ctx;
    struct rec_reading *o = &rc->v[rc->n++];
    o->r = *r;
    snprintf(o->metric, sizeof(o->metric), "%s", r->metric);
    snprintf(o->unit, sizeof(o->unit), "%s", r->unit ? r->unit : "-");
    snprintf(o->device, sizeof(o->device), "%s", r->device ? r->device : "-");
    snprintf(o->space, sizeof(o->space), "%s", r->subject_space ? r->subject_space : "-");
    if (r->subject_id)
        memcpy(o->subject, r->subject_id, r->subject_id_len);
    size_t len = 0;
    for (size_t i = 0; i < r->ntags; i++)
        len += (size_t)snprintf(o->tags + len, sizeof(o->tags) - len, "%s=%s;", r->tags[i].key,
                                r->tags[i].value);
    return 0;
}

static void rec_log(struct mittari_ctx *ctx, int level, const char *fmt, ...)
{
    struct rec *rc = (struct rec *)ctx;
    va_list ap;
    (void)level;
    va_start(ap, fmt);
    vsnprintf(rc->log, sizeof(rc->log), fmt, ap);
    va_end(ap);
    rc->logged++;
}

static void rec_log_quiet(struct mittari_ctx *ctx, int level, const char *fmt, ...)
{
    (void)ctx, (void)level, (void)fmt;
}

static void rec_count(struct mittari_ctx *ctx, const char *device, const char *counter, uint64_t n)
{
    (void)device;
    assert_string_equal(counter, "decoder_errors");
    ((struct rec *)ctx)->counted += (int)n;
}

static const char *rec_name(struct mittari_ctx *ctx)
{
    (void)ctx;
    return "rec";
}

static const struct mittari_host rec_host = {
    .abi_version = MITTARI_ABI_VERSION,
    .size = sizeof(struct mittari_host),
    .emit = rec_emit,
    .log = rec_log,
    .count = rec_count,
    .instance_name = rec_name,
};

static struct mittari_decoder *rec_load(struct rec *rc, const char *dir, const char *code)
{
    struct mittari_decoder *d = NULL;
    char *path = tu_write(dir, "rec.lua", code);
    assert_int_equal(mt_decoder_open(&rec_host, (struct mittari_ctx *)rc, path, NULL, &d), 0);
    free(path);
    return d;
}

static void exact_fields_reach_emit(void **state)
{
    struct fx *f = *state;
    struct rec *rc = calloc(1, sizeof(*rc));
    struct mittari_decoder *d = rec_load(
        rc, f->dir,
        "function decode(frame, ts)\n"
        "  local a, b = frame:byte(1, 2)\n"
        "  return {\n"
        "    {metric = 'c64', kind = 'cumulative', counter = -1, bits = 64},\n"
        "    {metric = 'c16', kind = 'cumulative', counter = 65535, bits = 16},\n"
        "    {metric = 'cf', kind = 'cumulative', counter = 2^53},\n"
        "    {metric = 'e', kind = 'event', subject = frame, space = 'wiegand26'},\n"
        "    {metric = 'g', kind = 'gauge', value = -0.5, unit = '%', device = 'd-1',\n"
        "     tags = {a = '1'}},\n"
        "    {metric = 'len', kind = 'delta', value = #frame * 1000 + a + b, ts = ts + 1},\n"
        "  }\n"
        "end\n");
    const unsigned char frame[] = {0, 7, 255, 10};
    assert_int_equal(mt_decoder_run(d, frame, sizeof(frame), 0), 6);
    assert_int_equal(rc->n, 6);
    assert_true(rc->v[0].r.counter == UINT64_MAX && rc->v[0].r.counter_bits == 64);
    assert_true(rc->v[1].r.counter == 65535 && rc->v[1].r.counter_bits == 16);
    assert_true(rc->v[2].r.counter == (UINT64_C(1) << 53) && rc->v[2].r.counter_bits == 0);
    assert_int_equal(rc->v[2].r.kind, MITTARI_KIND_CUMULATIVE);
    assert_int_equal(rc->v[3].r.kind, MITTARI_KIND_EVENT);
    assert_int_equal(rc->v[3].r.subject_id_len, 4);
    assert_memory_equal(rc->v[3].subject, frame, 4); /* raw bytes, NUL included */
    assert_string_equal(rc->v[3].space, "wiegand26");
    assert_true(rc->v[3].r.value == 1);
    assert_true(rc->v[4].r.value == -0.5);
    assert_string_equal(rc->v[4].unit, "%");
    assert_string_equal(rc->v[4].device, "d-1");
    assert_string_equal(rc->v[4].tags, "a=1;");
    assert_int_equal(rc->v[4].r.kind, MITTARI_KIND_GAUGE);
    assert_true(rc->v[5].r.value == 4007);
    assert_int_equal(rc->v[5].r.ts_us, 1);
    assert_int_equal(rc->v[4].r.ts_us, 0); /* 0 = now, decided by emit */
    for (int i = 0; i < 6; i++)
        assert_int_equal(rc->v[i].r.size, sizeof(struct mittari_reading));
    assert_int_equal(rc->counted, 0);
    mt_decoder_free(d);
    free(rc);
}

static void load_failure_goes_to_the_host_log(void **state)
{
    struct fx *f = *state;
    struct rec *rc = calloc(1, sizeof(*rc));
    struct mittari_decoder *d = NULL;
    char *path = tu_write(f->dir, "rec.lua", "x = \n");
    assert_int_equal(mt_decoder_open(&rec_host, (struct mittari_ctx *)rc, path, NULL, &d),
                     MITTARI_ECONFIG);
    assert_int_equal(rc->logged, 1);
    assert_non_null(strstr(rc->log, "cannot load decoder: "));
    assert_non_null(strstr(rc->log, "rec.lua:2:"));
    free(path);
    free(rc);
}

/* ---- decoder_submit: the decoder's own thread ---- */

/* A host whose calls come from the decoder's thread: everything under a
 * lock, and a flag set when the test freed the decoder, so a late call is
 * caught. */
struct arec {
    pthread_mutex_t lock;
    pthread_t test_thread;
    int emitted, done, on_test_thread;
    double values[64];
    int results[64];
    uint64_t errors, skipped, pauses;
    atomic_bool freed;
    atomic_int after_free;
};

static void arec_late(struct arec *a)
{
    if (atomic_load(&a->freed))
        atomic_fetch_add(&a->after_free, 1);
}

static int arec_emit(struct mittari_ctx *ctx, const struct mittari_reading *r)
{
    struct arec *a = (struct arec *)ctx;
    arec_late(a);
    pthread_mutex_lock(&a->lock);
    if (a->emitted < 64)
        a->values[a->emitted] = r->value;
    a->emitted++;
    a->on_test_thread += pthread_equal(pthread_self(), a->test_thread) != 0;
    pthread_mutex_unlock(&a->lock);
    return 0;
}

static void arec_count(struct mittari_ctx *ctx, const char *device, const char *counter, uint64_t n)
{
    struct arec *a = (struct arec *)ctx;
    (void)device;
    arec_late(a);
    pthread_mutex_lock(&a->lock);
    if (strcmp(counter, "decoder_errors") == 0)
        a->errors += n;
    else if (strcmp(counter, "decoder_skipped") == 0)
        a->skipped += n;
    else if (strcmp(counter, "decoder_pauses") == 0)
        a->pauses += n;
    else
        fail_msg("unexpected counter %s", counter);
    pthread_mutex_unlock(&a->lock);
}

static void arec_done(void *arg, int result)
{
    struct arec *a = arg;
    arec_late(a);
    pthread_mutex_lock(&a->lock);
    if (a->done < 64)
        a->results[a->done] = result;
    a->done++;
    pthread_mutex_unlock(&a->lock);
}

static const struct mittari_host arec_host = {
    .abi_version = MITTARI_ABI_VERSION,
    .size = sizeof(struct mittari_host),
    .emit = arec_emit,
    .log = rec_log_quiet,
    .count = arec_count,
    .instance_name = rec_name,
};

static struct arec *arec_new(void)
{
    struct arec *a = calloc(1, sizeof(*a));
    pthread_mutex_init(&a->lock, NULL);
    a->test_thread = pthread_self();
    atomic_init(&a->freed, false);
    atomic_init(&a->after_free, 0);
    return a;
}

static void arec_free(struct arec *a)
{
    pthread_mutex_destroy(&a->lock);
    free(a);
}

/* a->field read under its lock */
static uint64_t arec_get(struct arec *a, const uint64_t *field)
{
    pthread_mutex_lock(&a->lock);
    uint64_t v = *field;
    pthread_mutex_unlock(&a->lock);
    return v;
}

static int arec_done_n(struct arec *a)
{
    pthread_mutex_lock(&a->lock);
    int v = a->done;
    pthread_mutex_unlock(&a->lock);
    return v;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Polls cond(arg) every millisecond for up to ms; true once it holds. */
static bool eventually(bool (*cond)(void *), void *arg, int ms)
{
    int64_t end = mt_mono_us() + (int64_t)ms * 1000;
    while (!cond(arg)) {
        if (mt_mono_us() > end)
            return false;
        sleep_ms(1);
    }
    return true;
}

struct want {
    struct arec *a;
    struct mittari_decoder *d;
    int n;
};

static bool done_reached(void *arg)
{
    struct want *w = arg;
    return arec_done_n(w->a) >= w->n;
}

/* The decoder's thread counts, then logs: a test that saw the count waits
 * for the line. */
static bool captured(void *needle)
{
    return tu_captured(needle);
}

static bool pauses_reached(void *arg)
{
    struct want *w = arg;
    struct mt_decoder_stats st;
    mt_decoder_get_stats(w->d, &st);
    return st.pauses >= (uint64_t)w->n;
}

/* The threads of this process. */
static int thread_count(void)
{
    DIR *dir = opendir("/proc/self/task");
    struct dirent *e;
    int n = 0;
    assert_non_null(dir);
    while ((e = readdir(dir)))
        n += e->d_name[0] != '.';
    closedir(dir);
    return n;
}

static bool threads_back_to(void *arg)
{
    return thread_count() <= *(int *)arg;
}

static struct mittari_decoder *arec_load(struct arec *a, const char *dir, const char *code,
                                         const struct mt_decoder_conf *conf)
{
    struct mittari_decoder *d = NULL;
    char *path = tu_write(dir, "async.lua", code);
    assert_int_equal(mt_decoder_open_conf(&arec_host, (struct mittari_ctx *)a, path, conf, &d), 0);
    free(path);
    return d;
}

static int submit(struct mittari_decoder *d, struct arec *a, const char *frame)
{
    return mt_decoder_submit(d, frame, strlen(frame), 1700000000000000, arec_done, a);
}

/* 'slow' compares two 600 KB strings until the time limit: few
 * instructions, each one a long memcmp (the case of issue 8). Built on
 * the first slow call, so that loading stays quick under sanitizers. */
static const char slow_or_value[] =
    "local a, b\n"
    "function decode(frame)\n"
    "  if frame == 'slow' then\n"
    "    a = a or string.rep('x', 600000) .. 'a'\n"
    "    b = b or string.rep('x', 600000) .. 'b'\n"
    "    while true do if a == b then end end\n"
    "  end\n"
    "  return {metric = 'n', kind = 'gauge', value = tonumber(frame)}\n"
    "end\n";

static void submit_runs_the_script_on_its_own_thread(void **state)
{
    struct fx *f = *state;
    struct arec *a = arec_new();
    struct mittari_decoder *d = arec_load(a, f->dir, slow_or_value, NULL);
    char frame[8];

    for (int i = 0; i < 20; i++) {
        snprintf(frame, sizeof(frame), "%d", i);
        assert_int_equal(submit(d, a, frame), 0);
    }
    struct want w = {a, d, 20};
    assert_true(eventually(done_reached, &w, 10000));
    pthread_mutex_lock(&a->lock);
    assert_int_equal(a->emitted, 20);
    assert_int_equal(a->on_test_thread, 0); /* the script ran elsewhere */
    for (int i = 0; i < 20; i++) {
        assert_true(a->values[i] == i); /* in order */
        assert_int_equal(a->results[i], 1);
    }
    pthread_mutex_unlock(&a->lock);
    struct mt_decoder_stats st;
    mt_decoder_get_stats(d, &st);
    assert_int_equal(st.runs, 20);
    assert_int_equal(st.skipped, 0);
    mt_decoder_free(d);
    arec_free(a);
}

static atomic_llong test_clock;

static int64_t fake_clock(void *arg)
{
    (void)arg;
    return atomic_load(&test_clock);
}

/* Issue 8: calls that keep running to the time limit pause the decoder
 * (logged, counted); frames are skipped while it is paused; the first
 * frame after the pause is a trial that pauses it again for twice as long
 * or resumes it. The breaker reads a test clock; the scripts' own time
 * limit is real (20 ms). */
static void decoder_hitting_its_limit_is_paused_and_tried_again(void **state)
{
    struct fx *f = *state;
    struct arec *a = arec_new();
    struct mt_decoder_conf c = {.limits = {.time_ms = 20},
                                .trips = 3,
                                .trip_window_us = 10000000,
                                .pause_us = 300000,
                                .pause_max_us = 1000000,
                                .clock = fake_clock};
    atomic_store(&test_clock, 1000000);
    struct mittari_decoder *d = arec_load(a, f->dir, slow_or_value, &c);
    struct want w = {a, d, 1};
    struct mt_decoder_stats st;

    tu_capture_start();
    assert_int_equal(submit(d, a, "1"), 0);
    assert_int_equal(submit(d, a, "slow"), 0);
    assert_int_equal(submit(d, a, "slow"), 0);
    w.n = 3;
    assert_true(eventually(done_reached, &w, 10000));
    mt_decoder_get_stats(d, &st);
    assert_int_equal(st.pauses, 0); /* two hits: not yet */
    assert_int_equal(submit(d, a, "slow"), 0);
    w.n = 1;
    assert_true(eventually(pauses_reached, &w, 10000));
    assert_true(eventually(captured, "decoder rec: paused for 1 s: its calls keep hitting a limit "
                                     "(the last: ", 10000));
    assert_true(tu_captured("async.lua:") && tu_captured("time limit of 20 ms exceeded"));
    /* paused: refused at once, counted */
    assert_int_equal(submit(d, a, "2"), -EBUSY);
    assert_int_equal(submit(d, a, "3"), -EBUSY);
    atomic_fetch_add(&test_clock, 299999);
    assert_int_equal(submit(d, a, "4"), -EBUSY);
    assert_int_equal(arec_get(a, &a->skipped), 3);
    assert_int_equal(arec_get(a, &a->pauses), 1);
    assert_int_equal(arec_get(a, &a->errors), 3);
    /* the pause is over: the next frame is a trial; it fails, so the
     * decoder pauses again at once, for twice as long */
    atomic_fetch_add(&test_clock, 1);
    assert_int_equal(submit(d, a, "slow"), 0);
    w.n = 2;
    assert_true(eventually(pauses_reached, &w, 10000));
    atomic_fetch_add(&test_clock, 300000);
    assert_int_equal(submit(d, a, "5"), -EBUSY);
    atomic_fetch_add(&test_clock, 300000);
    /* a trial that does not hit the limit resumes it */
    assert_int_equal(submit(d, a, "6"), 0);
    assert_int_equal(submit(d, a, "7"), 0);
    w.n = 7;
    assert_true(eventually(done_reached, &w, 10000));
    assert_true(eventually(captured, "decoder rec: resumed after a pause: 4 frames were skipped",
                           10000));
    mt_decoder_get_stats(d, &st);
    assert_int_equal(st.pauses, 2);
    assert_int_equal(st.skipped, 4);
    assert_int_equal(st.budget, 4);
    pthread_mutex_lock(&a->lock);
    assert_int_equal(a->emitted, 3);
    assert_true(a->values[0] == 1 && a->values[1] == 6 && a->values[2] == 7);
    assert_int_equal(a->results[1], MITTARI_EREADING);
    assert_int_equal(a->pauses, 2);
    assert_int_equal(a->skipped, 4);
    pthread_mutex_unlock(&a->lock);
    /* closed again: after one more hit there is no pause (the count of
     * hits started over) */
    assert_int_equal(submit(d, a, "slow"), 0);
    w.n = 8;
    assert_true(eventually(done_reached, &w, 10000));
    assert_int_equal(submit(d, a, "8"), 0);
    mt_decoder_get_stats(d, &st);
    assert_int_equal(st.pauses, 2);
    tu_capture_stop();
    mt_decoder_free(d);
    arec_free(a);
}

/* The same breaker on decoder_run: a paused decoder does not run the
 * frame and says MITTARI_EREADING, as for any frame that gave nothing. */
static void decoder_run_is_paused_too(void **state)
{
    struct fx *f = *state;
    struct arec *a = arec_new();
    struct mt_decoder_conf c = {
        .limits = {.time_ms = 10}, .trips = 2, .pause_us = 5000000, .clock = fake_clock};
    atomic_store(&test_clock, 1000000);
    struct mittari_decoder *d = arec_load(a, f->dir, slow_or_value, &c);
    struct mt_decoder_stats st;

    tu_capture_start();
    assert_int_equal(mt_decoder_run(d, "slow", 4, 0), MITTARI_EREADING);
    assert_int_equal(mt_decoder_run(d, "slow", 4, 0), MITTARI_EREADING);
    assert_int_equal(mt_decoder_run(d, "1", 1, 0), MITTARI_EREADING); /* paused */
    mt_decoder_get_stats(d, &st);
    assert_int_equal(st.runs, 2);
    assert_int_equal(st.pauses, 1);
    assert_int_equal(st.skipped, 1);
    atomic_fetch_add(&test_clock, 5000000);
    assert_int_equal(mt_decoder_run(d, "1", 1, 0), 1);
    assert_true(tu_captured("resumed after a pause: 1 frames were skipped"));
    tu_capture_stop();
    assert_int_equal(a->skipped, 1);
    mt_decoder_free(d);
    arec_free(a);
}

/* A script slower than its device: the queue is bounded; what does not
 * fit is refused, counted and logged, and every frame is accounted for. */
static void full_queue_refuses_and_counts(void **state)
{
    struct fx *f = *state;
    struct arec *a = arec_new();
    /* a window of 1 µs: the hits never make a pause here */
    struct mt_decoder_conf c = {
        .limits = {.time_ms = 20}, .trips = 5, .trip_window_us = 1, .queue_frames = 4};
    struct mittari_decoder *d = arec_load(a, f->dir, slow_or_value, &c);
    int queued = 0, refused = 0;

    tu_capture_start();
    for (int i = 0; i < 20; i++) {
        int rc = submit(d, a, "slow");
        if (rc == 0)
            queued++;
        else if (rc == -ENOBUFS)
            refused++;
        else
            fail_msg("submit: %d", rc);
    }
    assert_true(refused >= 20 - 5); /* at most one running and four waiting */
    struct want w = {a, d, queued};
    assert_true(eventually(done_reached, &w, 10000));
    assert_int_equal(arec_get(a, &a->skipped), (uint64_t)refused);
    assert_int_equal(arec_get(a, &a->errors), (uint64_t)queued);
    assert_true(tu_captured("frame skipped: the decoder's queue is full (4 frames)"));
    tu_capture_stop();
    struct mt_decoder_stats st;
    mt_decoder_get_stats(d, &st);
    assert_int_equal(st.runs + st.skipped, 20);
    assert_int_equal(st.pauses, 0);
    mt_decoder_free(d);
    arec_free(a);
}

/* free while the script runs (its own limit: a minute): it returns at
 * once, counts the frames still waiting, calls nothing of the host after
 * it returned, and the thread lets go of the script promptly. */
static void free_does_not_wait_for_the_script(void **state)
{
    struct fx *f = *state;
    struct arec *a = arec_new();
    struct mt_decoder_conf c = {.limits = {.time_ms = 60000, .instructions = UINT64_MAX / 2}};
    int before = thread_count();
    struct mittari_decoder *d = arec_load(a, f->dir, slow_or_value, &c);

    tu_capture_start();
    assert_int_equal(submit(d, a, "1"), 0);
    struct want w = {a, d, 1};
    assert_true(eventually(done_reached, &w, 10000));
    assert_int_equal(submit(d, a, "slow"), 0);
    assert_int_equal(submit(d, a, "2"), 0);
    assert_int_equal(submit(d, a, "3"), 0);
    sleep_ms(20); /* let it get into the script */
    int64_t t0 = mt_mono_us();
    mt_decoder_free(d);
    int64_t took = mt_mono_us() - t0;
    atomic_store(&a->freed, true);
    assert_true(took < 5000000); /* not the script's minute */
    uint64_t skipped = arec_get(a, &a->skipped);
    assert_int_equal(skipped, 3); /* "slow" (in hand or waiting), "2" and "3" */
    assert_true(tu_captured("frames were still waiting for the decoder at stop"));
    assert_true(eventually(threads_back_to, &before, 10000)); /* interrupted, not a minute */
    assert_int_equal(atomic_load(&a->after_free), 0);
    assert_int_equal(arec_done_n(a), 1);
    tu_capture_stop();
    arec_free(a);
}

/* Free races the thread at every point of its work: frames of varying
 * cost, freed right away or after a little while. Nothing of the host is
 * called after free returns (ASan: nothing is used after it is freed). */
static void free_races_the_thread(void **state)
{
    struct fx *f = *state;
    enum { N = 60 };
    struct arec *as[N];
    struct mt_decoder_conf c = {.limits = {.time_ms = 5}};
    int before = thread_count();
    char *path = tu_write(f->dir, "race.lua",
                          "function decode(frame)\n"
                          "  local n = 0\n"
                          "  for i = 1, tonumber(frame) * 1000 do n = n + i end\n"
                          "  return {metric = 'n', kind = 'gauge', value = n}\n"
                          "end\n");
    for (int i = 0; i < N; i++) {
        struct mittari_decoder *d = NULL;
        as[i] = arec_new();
        assert_int_equal(
            mt_decoder_open_conf(&arec_host, (struct mittari_ctx *)as[i], path, &c, &d), 0);
        for (int k = 0; k < i % 6; k++) {
            char frame[8];
            snprintf(frame, sizeof(frame), "%d", (i * 7 + k * 13) % 50);
            assert_int_equal(submit(d, as[i], frame), 0);
        }
        if (i % 3 == 1)
            sleep_ms(i % 4);
        mt_decoder_free(d);
        atomic_store(&as[i]->freed, true);
    }
    assert_true(eventually(threads_back_to, &before, 20000));
    for (int i = 0; i < N; i++) {
        assert_int_equal(atomic_load(&as[i]->after_free), 0);
        /* every frame was decoded before free or counted as skipped */
        assert_int_equal((uint64_t)arec_done_n(as[i]) + arec_get(as[i], &as[i]->skipped),
                         (uint64_t)(i % 6));
        arec_free(as[i]);
    }
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(door_counters_become_deltas, setup, teardown),
        cmocka_unit_test_setup_teardown(subject_is_pseudonymised_by_emit, setup, teardown),
        cmocka_unit_test_setup_teardown(fields_reach_the_series, setup, teardown),
        cmocka_unit_test_setup_teardown(malformed_results_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(nil_and_empty_list_emit_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(script_errors_are_logged_with_file_and_line, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(repeated_failures_are_logged_once_and_counted, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(limits_fail_one_frame_not_the_decoder, setup, teardown),
        cmocka_unit_test_setup_teardown(huge_frame_is_an_error_not_a_crash, setup, teardown),
        cmocka_unit_test_setup_teardown(readings_per_frame_are_capped, setup, teardown),
        cmocka_unit_test_setup_teardown(refused_reading_does_not_drop_the_others, setup, teardown),
        cmocka_unit_test_setup_teardown(globals_persist_per_decoder, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_files_are_refused_at_load, setup, teardown),
        cmocka_unit_test_setup_teardown(exact_fields_reach_emit, setup, teardown),
        cmocka_unit_test_setup_teardown(load_failure_goes_to_the_host_log, setup, teardown),
        cmocka_unit_test_setup_teardown(submit_runs_the_script_on_its_own_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(decoder_hitting_its_limit_is_paused_and_tried_again, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(decoder_run_is_paused_too, setup, teardown),
        cmocka_unit_test_setup_teardown(full_queue_refuses_and_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(free_does_not_wait_for_the_script, setup, teardown),
        cmocka_unit_test_setup_teardown(free_races_the_thread, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
