/* One rule's Lua API (rule.c): the reading table, read-only tags, passing a
 * reading on, emit and its checks, suppression of emits, windows declared
 * only at the top level, the saved state (nested, sorted, what cannot be
 * kept), restoring it, period/localtime, tags from the configuration,
 * determinism against pairs() order. Everything at fixed times. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mittari/mittari.h>

#include "encode.h"
#include "rule.h"
#include "rulewin.h"
#include "series.h"
#include "tz.h"

#define US 1000000LL
#define T0 (((int64_t)mt_days_from_civil(2026, 11, 25) * 86400 + 7 * 3600) * US) /* 09:00 Helsinki */

struct fx {
    char *dir;
    struct mt_tz *tz;
    struct mt_series_reg reg;
    struct mt_rule *r;
    char err[600];
    uint32_t door, card;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    f->dir = tu_tmpdir();
    if (mt_tz_load(&f->tz, "Europe/Helsinki", f->err, sizeof(f->err)) || mt_series_init(&f->reg))
        return -1;
    struct mt_series_info d = {.site = "lib", .device = "door-1", .metric = "visitors_in",
                               .unit = "persons", .kind = MITTARI_KIND_DELTA,
                               .tags = "{\"service\":\"library\"}"};
    struct mt_series_info c = {.site = "lib", .device = "reader", .metric = "checkin",
                               .unit = "", .kind = MITTARI_KIND_EVENT, .tags = ""};
    if (mt_series_intern(&f->reg, &d, &f->door) || mt_series_intern(&f->reg, &c, &f->card))
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    mt_rule_free(f->r);
    mt_series_free(&f->reg);
    mt_tz_free(f->tz);
    tu_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static int open_rule(struct fx *f, const char *text, const struct mt_rule_tag *tags, size_t n)
{
    char *path = tu_write(f->dir, "r.lua", text);
    struct mt_rule_conf c = {.name = "r", .script = path, .site = "gw", .tz = f->tz,
                             .reg = &f->reg, .tags = tags, .ntags = n};
    mt_rule_free(f->r);
    f->r = NULL;
    int rc = mt_rule_open(&f->r, &c, f->err, sizeof(f->err));
    free(path);
    return rc;
}

static int feed(struct fx *f, uint32_t series, int64_t ts, double v, const char *subject)
{
    struct mt_row row = {.seq = 1, .ts = ts, .series = series, .value = v};
    if (subject)
        snprintf(row.subject, sizeof(row.subject), "%s", subject);
    int rc;
    while ((rc = mt_rule_feed(f->r, &row, mt_series_get(&f->reg, series), f->err,
                              sizeof(f->err))) == 1)
        ;
    return rc;
}

/* The output as JSON Lines (the formats' own encoder), then cleared. */
static char *out(struct fx *f)
{
    struct mt_encoder e;
    struct mt_buf b = {0};
    size_t n;
    const struct mt_rec *v = mt_rule_out(f->r, &n);
    mt_encoder_init(&e, MT_FMT_JSONL, 0);
    for (size_t i = 0; i < n; i++) {
        struct mt_row row = {.seq = (int64_t)i + 1, .ts = v[i].ts, .series = v[i].series,
                             .flags = v[i].flags, .min_count = v[i].min_count,
                             .value = v[i].value};
        memcpy(row.subject, v[i].subject, sizeof(row.subject));
        mt_encode_row(&e, &b, &row, mt_series_get(&f->reg, v[i].series));
    }
    mt_rule_out_clear(f->r);
    char *s = strdup(mt_buf_cstr(&b));
    mt_buf_free(&b);
    return s;
}

static void expect_out(struct fx *f, const char *want)
{
    char *got = out(f);
    assert_string_equal(got, want);
    free(got);
}

static void reading_table(void **state)
{
    struct fx *f = *state;
    assert_int_equal(open_rule(f, "function on_reading(r)\n"
                                  "  emit { metric = 'seen', value = r.value,\n"
                                  "         tags = { d = r.device, m = r.metric, u = r.unit,\n"
                                  "                  k = r.kind, s = r.tags.service,\n"
                                  "                  t = math.type(r.ts), v = math.type(r.value) } }\n"
                                  "end\n",
                             NULL, 0),
                     0);
    assert_int_equal(feed(f, f->door, T0, 3, NULL), 0);
    expect_out(f, "{\"seq\":1,\"gen\":0,\"ts\":\"2026-11-25T07:00:00.000000Z\",\"site\":\"lib\","
                  "\"device\":\"r\",\"metric\":\"seen\",\"value\":3,\"kind\":\"gauge\",\"tags\":"
                  "{\"d\":\"door-1\",\"k\":\"delta\",\"m\":\"visitors_in\",\"s\":\"library\","
                  "\"t\":\"integer\",\"u\":\"persons\",\"v\":\"integer\"},\"origin\":\"r\"}\n");
    assert_int_equal(feed(f, f->door, T0, 2.5, NULL), 0);
    char *o = out(f);
    assert_non_null(strstr(o, "\"value\":2.5"));
    assert_non_null(strstr(o, "\"v\":\"float\""));
    free(o);
}

static void tags_are_read_only_and_iterable(void **state)
{
    struct fx *f = *state;
    assert_int_equal(open_rule(f, "function on_reading(r)\n"
                                  "  local n = 0\n"
                                  "  for k, v in pairs(r.tags) do n = n + 1 end\n"
                                  "  local f, t = pairs(r.tags)\n"
                                  "  assert(t == r.tags, 'pairs hands out the proxy only')\n"
                                  "  if r.value > 1 then r.tags.service = 'x' end\n"
                                  "  emit { metric = 'n', value = n }\n"
                                  "end\n",
                             NULL, 0),
                     0);
    assert_int_equal(feed(f, f->door, T0, 1, NULL), 0);
    char *o = out(f);
    assert_non_null(strstr(o, "\"metric\":\"n\",\"value\":1"));
    free(o);
    assert_int_equal(feed(f, f->door, T0, 2, NULL), -EINVAL);
    assert_non_null(strstr(f->err, "r.lua:6: the tags of a reading are read-only"));
    /* the failed call emitted nothing; the series' tags are unchanged */
    expect_out(f, "");
    assert_int_equal(feed(f, f->door, T0, 1, NULL), 0);
    o = out(f);
    assert_non_null(strstr(o, "\"value\":1"));
    free(o);
}

static void pass_and_rewrite(void **state)
{
    struct fx *f = *state;
    assert_int_equal(open_rule(f, "function on_reading(r)\n"
                                  "  if r.value < 0 then return end  -- drop\n"
                                  "  r.value = r.value * 10\n"
                                  "  r.unit = 'dpersons'\n"
                                  "  return r\n"
                                  "end\n",
                             NULL, 0),
                     0);
    assert_int_equal(feed(f, f->door, T0, 3, NULL), 0);
    assert_int_equal(feed(f, f->door, T0, -1, NULL), 0);
    /* passed on: the reading's own site, device, metric, tags; the rule's origin */
    expect_out(f, "{\"seq\":1,\"gen\":0,\"ts\":\"2026-11-25T07:00:00.000000Z\",\"site\":\"lib\","
                  "\"device\":\"door-1\",\"metric\":\"visitors_in\",\"value\":30,\"unit\":\"dpersons\","
                  "\"kind\":\"delta\",\"tags\":{\"service\":\"library\"},\"origin\":\"r\"}\n");
}

static void emit_checks(void **state)
{
    struct fx *f = *state;
    const char *bad[][2] = {
        {"emit { value = 1 }", "'metric' is required"},
        {"emit { metric = 'a b', value = 1 }", "'metric' must be 1 to 63"},
        {"emit { metric = 'm', value = 0/0 }", "'value' must be finite"},
        {"emit { metric = 'm', value = 1, kind = 'cumulative' }", "'kind' must be"},
        {"emit { metric = 'm', valeu = 1 }", "unknown field 'valeu' (did you mean 'value'?)"},
        {"emit { metric = 'm', value = 1, suppress = 1 }", "'suppress' must be"},
        {"emit { metric = 'm', value = 1, tags = { x = 1 } }", "string keys with string values"},
        {"for i = 1, 65 do emit { metric = 'm', value = i } end", "more than 64 readings"},
        {"window { every = 'hour', metric = 'w', agg = 'sum' }", "at the top level"},
    };
    char text[300];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(text, sizeof(text), "function on_reading(r)\n  %s\nend\n", bad[i][0]);
        assert_int_equal(open_rule(f, text, NULL, 0), 0);
        assert_int_equal(feed(f, f->door, T0, 1, NULL), -EINVAL);
        if (!strstr(f->err, bad[i][1]) || !strstr(f->err, "r.lua:2:"))
            fail_msg("%s: '%s'", bad[i][0], f->err);
        expect_out(f, "");
    }
    /* outside on_reading emit has no reading to default to */
    assert_int_equal(open_rule(f, "emit { metric = 'm', value = 1 }\n", NULL, 0), -ENOEXEC);
    assert_non_null(strstr(f->err, "r.lua:1: emit: call it from on_reading"));
}

static void emit_suppressed(void **state)
{
    struct fx *f = *state;
    assert_int_equal(open_rule(f, "function on_reading(r)\n"
                                  "  emit { metric = 'm', value = r.value, suppress = 5 }\n"
                                  "end\n",
                             NULL, 0),
                     0);
    assert_int_equal(feed(f, f->door, T0, 4, NULL), 0);
    assert_int_equal(feed(f, f->door, T0, 5, NULL), 0);
    size_t n;
    const struct mt_rec *v = mt_rule_out(f->r, &n);
    assert_int_equal(n, 2);
    assert_int_equal(v[0].flags, MT_RF_SUPPRESSED);
    assert_int_equal(v[0].min_count, 5);
    assert_true(v[0].value == 0); /* 4 is nowhere */
    assert_int_equal(v[1].flags, 0);
    assert_true(v[1].value == 5);
    mt_rule_out_clear(f->r);
}

/* Emits of one call leave sorted: pairs() order (which varies from state
 * to state) does not reach the output. */
static void emits_in_a_fixed_order(void **state)
{
    struct fx *f = *state;
    const char *text = "local t = {}\nfor i = 1, 40 do t['k' .. i] = i end\n"
                       "function on_reading(r)\n"
                       "  for k, v in pairs(t) do emit { metric = 'm', value = v, device = k } end\n"
                       "end\n";
    char *first = NULL;
    for (int i = 0; i < 5; i++) {
        assert_int_equal(open_rule(f, text, NULL, 0), 0);
        assert_int_equal(feed(f, f->door, T0, 1, NULL), 0);
        char *o = out(f);
        if (!first)
            first = o;
        else {
            assert_string_equal(o, first);
            free(o);
        }
    }
    free(first);
}

static void state_saved_and_restored(void **state)
{
    struct fx *f = *state;
    const char *text = "state_version = 3\n"
                       "state.n = state.n or 0\n"
                       "state.per = state.per or {}\n"
                       "local hourly = window { every = 'hour', metric = 'h', agg = 'sum' }\n"
                       "function on_reading(r)\n"
                       "  state.n = state.n + 1\n"
                       "  state.per[r.device] = (state.per[r.device] or 0) + r.value\n"
                       "  state.f = 1.5; state.b = true; state[7] = 'seven'\n"
                       "  state.deep = { a = { b = { c = { 'x' } } } }\n"
                       "  hourly:add(r)\n"
                       "end\n";
    assert_int_equal(open_rule(f, text, NULL, 0), 0);
    assert_int_equal(mt_rule_state_version(f->r), 3);
    assert_int_equal(feed(f, f->door, T0, 3, NULL), 0);
    assert_int_equal(feed(f, f->door, T0 + 60 * US, 4, NULL), 0);
    struct mt_buf b1 = {0}, b2 = {0};
    assert_int_equal(mt_rule_save(f->r, &b1, f->err, sizeof(f->err)), 0);
    assert_int_equal(mt_rule_save(f->r, &b2, f->err, sizeof(f->err)), 0);
    assert_int_equal(b1.len, b2.len); /* the same state, the same bytes */
    assert_memory_equal(b1.p, b2.p, b1.len);
    /* a new instance of the script continues from it */
    assert_int_equal(open_rule(f, text, NULL, 0), 0);
    char note[200];
    assert_int_equal(mt_rule_restore(f->r, b1.p, b1.len, note, sizeof(note)), 0);
    assert_string_equal(note, "");
    assert_int_equal(feed(f, f->door, T0 + 3600 * US, 1, NULL), 0);
    char *o = out(f);
    assert_non_null(strstr(o, "\"metric\":\"h\",\"value\":7,")); /* 3 + 4 from before */
    free(o);
    assert_int_equal(open_rule(f, "function on_reading(r)\n"
                                  "  emit { metric = 'n', value = state.n + state.per['door-1'] }\n"
                                  "end\n",
                             NULL, 0),
                     0);
    assert_int_equal(mt_rule_restore(f->r, b1.p, b1.len, note, sizeof(note)), 0);
    assert_string_equal(note, "h"); /* the hourly window is no longer declared */
    assert_int_equal(feed(f, f->door, T0, 0, NULL), 0);
    o = out(f);
    assert_non_null(strstr(o, "\"value\":9,")); /* n = 2, per = 7 */
    free(o);
    /* damaged: refused, nothing restored */
    assert_int_equal(mt_rule_restore(f->r, b1.p, b1.len / 2, note, sizeof(note)), -EINVAL);
    mt_buf_free(&b1);
    mt_buf_free(&b2);
}

static void state_that_cannot_be_kept(void **state)
{
    struct fx *f = *state;
    struct mt_buf b = {0};
    assert_int_equal(open_rule(f, "state.f = function() end\n", NULL, 0), 0);
    assert_int_equal(mt_rule_save(f->r, &b, f->err, sizeof(f->err)), -EINVAL);
    assert_non_null(strstr(f->err, "state.f holds a function"));
    b.len = 0;
    assert_int_equal(open_rule(f, "state.a = {}\nstate.a.loop = state.a\n", NULL, 0), 0);
    assert_int_equal(mt_rule_save(f->r, &b, f->err, sizeof(f->err)), -EINVAL);
    assert_non_null(strstr(f->err, "cycle"));
    b.len = 0;
    assert_int_equal(open_rule(f, "state[{}] = 1\n", NULL, 0), 0);
    assert_int_equal(mt_rule_save(f->r, &b, f->err, sizeof(f->err)), -EINVAL);
    assert_non_null(strstr(f->err, "as a key"));
    mt_buf_free(&b);
    assert_int_equal(open_rule(f, "state_version = 'two'\n", NULL, 0), -ENOEXEC);
    assert_non_null(strstr(f->err, "state_version must be a whole number"));
    assert_int_equal(open_rule(f, "on_reading = 3\n", NULL, 0), -ENOEXEC);
    assert_non_null(strstr(f->err, "on_reading must be a function"));
}

static void period_and_localtime(void **state)
{
    struct fx *f = *state;
    assert_int_equal(open_rule(f, "function on_reading(r)\n"
                                  "  local d, s, e = period('day', r.ts)\n"
                                  "  local h = period('hour', r.ts)\n"
                                  "  local t = localtime(r.ts)\n"
                                  "  emit { metric = 'p', value = (e - s) // 3600000000,\n"
                                  "         tags = { d = d, h = h, w = tostring(t.wday),\n"
                                  "                  k = tostring(t.week), o = tostring(t.offset),\n"
                                  "                  x = tostring(t.isdst) } }\n"
                                  "end\n",
                             NULL, 0),
                     0);
    /* 01:30Z on the autumn Sunday: 03:30 EET, the second 03:00 hour of a 25-hour day */
    int64_t ts = ((int64_t)mt_days_from_civil(2026, 10, 25) * 86400 + 5400) * US;
    assert_int_equal(feed(f, f->door, ts, 1, NULL), 0);
    char *o = out(f);
    assert_non_null(strstr(o, "\"value\":25,"));
    assert_non_null(strstr(o, "\"d\":\"2026-10-25\",\"h\":\"2026-10-25T03:00+02:00\""));
    assert_non_null(strstr(o, "\"k\":\"43\",\"o\":\"7200\",\"w\":\"7\",\"x\":\"false\""));
    free(o);
}

static void tags_from_the_configuration(void **state)
{
    struct fx *f = *state;
    const char *globs[] = {"lib/reader", "lib/*"}, *vals[] = {"desk", "centre"};
    struct mt_rule_tag tags[] = {
        {.key = "theme", .value = "culture"},
        {.key = "area", .globs = globs, .values = vals, .n = 2},
        {.key = "service", .value = "ignored: the reading's own tag wins"},
    };
    assert_int_equal(open_rule(f, "window { every = 'day', metric = 'd', agg = 'count', "
                                  "by = {'area', 'theme', 'service'} }\n",
                             tags, 3),
                     0);
    assert_int_equal(feed(f, f->door, T0, 1, NULL), 0);
    assert_int_equal(feed(f, f->card, T0, 1, "AAAAAAAAAAAAAAAAAAAAAA"), 0);
    assert_int_equal(mt_rule_finish(f->r), 0);
    char *o = out(f);
    assert_non_null(strstr(o, "\"tags\":{\"area\":\"centre\",\"period\":\"day\","
                              "\"service\":\"library\",\"theme\":\"culture\"}"));
    assert_non_null(strstr(o, "\"tags\":{\"area\":\"desk\",\"period\":\"day\","
                              "\"service\":\"ignored: the reading's own tag wins\","
                              "\"theme\":\"culture\"}"));
    free(o);
}

static void window_declarations(void **state)
{
    struct fx *f = *state;
    const char *bad[][2] = {
        {"window { every = 'fortnight', metric = 'm', agg = 'sum' }", "'every' is"},
        {"window { every = '1h', metric = 'm', agg = 'sum' }", "'every' is"},
        {"window { every = 'hour', metric = 'm', agg = 'median' }", "'agg' is"},
        {"window { every = 'hour', metric = 'm' }", "are required"},
        {"window { every = 'hour', metric = 'm', agg = 'sum', latenes = '1h' }",
         "did you mean 'lateness'"},
        {"window { every = 'hour', metric = 'm', agg = 'sum', lateness = 'soon' }", "a duration"},
        {"window { every = 'hour', metric = 'm', agg = 'sum', flows = 'f' }", "distinct"},
        {"window { every = 'hour', metric = 'm', agg = 'sum', suppress = 1 }", "2 to 255"},
        {"window { every = 'hour', metric = 'm', agg = 'sum' }\n"
         "window { every = 'day', metric = 'm', agg = 'sum' }", "already"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(open_rule(f, bad[i][0], NULL, 0), -ENOEXEC);
        if (!strstr(f->err, bad[i][1]) || !strstr(f->err, "r.lua:"))
            fail_msg("%s: '%s'", bad[i][0], f->err);
    }
    /* a distinct count is suppressed under 5 unless said otherwise */
    assert_int_equal(open_rule(f, "window { every = 'day', metric = 'd', agg = 'distinct' }\n"
                                  "window { every = 'day', metric = 'e', agg = 'distinct', "
                                  "suppress = false }\n",
                             NULL, 0),
                     0);
    assert_int_equal(feed(f, f->card, T0, 1, "AAAAAAAAAAAAAAAAAAAAAA"), 0);
    assert_int_equal(mt_rule_finish(f->r), 0);
    char *o = out(f);
    assert_non_null(strstr(o, "\"metric\":\"d\",\"value\":null"));
    assert_non_null(strstr(o, "\"metric\":\"e\",\"value\":1,"));
    free(o);
}

static void print_goes_nowhere_in_the_agent(void **state)
{
    struct fx *f = *state;
    /* conf.print is false here: print must not fail, and writes nothing */
    assert_int_equal(open_rule(f, "function on_reading(r) print('figure', r.value) end\n", NULL,
                               0),
                     0);
    assert_int_equal(feed(f, f->door, T0, 3, NULL), 0);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(reading_table),
        T(tags_are_read_only_and_iterable),
        T(pass_and_rewrite),
        T(emit_checks),
        T(emit_suppressed),
        T(emits_in_a_fixed_order),
        T(state_saved_and_restored),
        T(state_that_cannot_be_kept),
        T(period_and_localtime),
        T(tags_from_the_configuration),
        T(window_declarations),
        T(print_goes_nowhere_in_the_agent),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
