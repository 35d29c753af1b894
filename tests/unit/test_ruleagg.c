/* The windows of a rule (ruleagg.c): sums per local hour with quiet groups
 * reporting 0, late readings giving corrections (at most one a minute) or
 * counted as late, suppression, distinct and approximate counts, the flow
 * matrix, memory cap, and the saved state: a run cut anywhere and restored
 * gives exactly the figures of an uncut run. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ruleagg.h"
#include "rulewin.h"
#include "tz.h"
#include "util.h"

#define US 1000000LL
/* UTC instant of a Helsinki winter wall-clock time (UTC+2) */
#define HKI(y, mo, d, h, mi) (((int64_t)mt_days_from_civil(y, mo, d) * 86400 + ((h) - 2) * 3600 + (mi) * 60) * US)

struct fx {
    struct mt_tz *tz;
    struct mt_aggs *a;
    struct mt_buf out;
    int nfig;
};

static int collect(void *arg, const struct mt_figure *f)
{
    struct fx *x = arg;
    char ts[40];
    mt_fmt_utc(f->ts, ts, sizeof(ts), 0);
    mt_buf_printf(&x->out, "%s %s %s %s %s ", ts, f->metric, f->site ? f->site : "-",
                  f->device ? f->device : "-", f->tags_json);
    if (f->min_count)
        mt_buf_printf(&x->out, "<%u", f->min_count);
    else
        mt_buf_double(&x->out, f->value);
    if (f->revision)
        mt_buf_printf(&x->out, " r%u", f->revision);
    mt_buf_addc(&x->out, '\n');
    x->nfig++;
    return 0;
}

static void fx_init(struct fx *x, size_t cap)
{
    char err[200];
    memset(x, 0, sizeof(*x));
    assert_int_equal(mt_tz_load(&x->tz, "Europe/Helsinki", err, sizeof(err)), 0);
    assert_int_equal(mt_aggs_new(&x->a, x->tz, cap, collect, x), 0);
}

static void fx_free(struct fx *x)
{
    mt_aggs_free(x->a);
    mt_tz_free(x->tz);
    mt_buf_free(&x->out);
}

static int define(struct fx *x, struct mt_aggdef_conf c)
{
    char err[200];
    int id = -1;
    if (!c.lateness_us)
        c.lateness_us = 15 * 60 * US;
    if (!c.forget_us)
        c.forget_us = 31 * 86400 * US;
    int rc = mt_aggs_define(x->a, &c, &id, err, sizeof(err));
    if (rc)
        fail_msg("define: %s", err);
    return id;
}

static int add(struct fx *x, int id, int64_t ts, const char *g0, const char *g1, double v,
               const char *subj)
{
    const char *g[4] = {g0, g1, NULL, NULL};
    char err[200];
    return mt_aggs_add(x->a, id, ts, g, v, subj, subj ? strlen(subj) : 0, err, sizeof(err));
}

/* Advances until everything due is done (what a rule does before it
 * adds at the new time). */
static void adv(struct fx *x, int64_t now)
{
    int rc;
    while ((rc = mt_aggs_advance(x->a, now)) == 1)
        ;
    assert_int_equal(rc, 0);
}

static const struct mt_aggdef_conf hourly = {
    .metric = "visitors_hourly", .every = MT_UNIT_HOUR, .agg = MT_AGG_SUM,
    .by = {"site", "device"}, .nby = 2};

static void quiet_hour_reports_zero(void **st)
{
    (void)st;
    struct fx x;
    fx_init(&x, 1 << 20);
    int id = define(&x, hourly);
    assert_int_equal(add(&x, id, HKI(2026, 11, 25, 9, 5), "lib", "door-1", 3, NULL), 0);
    assert_int_equal(add(&x, id, HKI(2026, 11, 25, 9, 40), "lib", "door-1", 2, NULL), 0);
    adv(&x, HKI(2026, 11, 25, 10, 15));
    assert_int_equal(add(&x, id, HKI(2026, 11, 25, 10, 15), "lib", "door-2", 1, NULL), 0);
    adv(&x, HKI(2026, 11, 25, 11, 0));
    assert_string_equal(mt_buf_cstr(&x.out),
                        "2026-11-25T07:00:00Z visitors_hourly lib door-1 {\"period\":\"hour\"} 5\n"
                        "2026-11-25T08:00:00Z visitors_hourly lib door-1 {\"period\":\"hour\"} 0\n"
                        "2026-11-25T08:00:00Z visitors_hourly lib door-2 {\"period\":\"hour\"} 1\n");
    /* with no reading at all, the clock alone closes the next hours */
    x.out.len = 0;
    adv(&x, HKI(2026, 11, 25, 13, 0));
    assert_string_equal(mt_buf_cstr(&x.out),
                        "2026-11-25T09:00:00Z visitors_hourly lib door-1 {\"period\":\"hour\"} 0\n"
                        "2026-11-25T09:00:00Z visitors_hourly lib door-2 {\"period\":\"hour\"} 0\n"
                        "2026-11-25T10:00:00Z visitors_hourly lib door-1 {\"period\":\"hour\"} 0\n"
                        "2026-11-25T10:00:00Z visitors_hourly lib door-2 {\"period\":\"hour\"} 0\n");
    fx_free(&x);
}

/* A group stops getting figures forget_after its last reading. */
static void forgotten_group_stops(void **st)
{
    (void)st;
    struct fx x;
    fx_init(&x, 1 << 20);
    struct mt_aggdef_conf c = hourly;
    c.forget_us = 2 * 3600 * US;
    int id = define(&x, c);
    add(&x, id, HKI(2026, 1, 5, 9, 30), "lib", "door-1", 1, NULL);
    adv(&x, HKI(2026, 1, 6, 9, 0));
    /* 09:00 with the reading, 10:00 and 11:00 within 2 h, then nothing */
    assert_int_equal(x.nfig, 3);
    assert_non_null(strstr(mt_buf_cstr(&x.out), "T09:00:00Z visitors_hourly lib door-1 {\"period\":\"hour\"} 0\n"));
    fx_free(&x);
}

static void late_readings_give_corrections(void **st)
{
    (void)st;
    struct fx x;
    fx_init(&x, 1 << 20);
    int id = define(&x, hourly);
    add(&x, id, HKI(2026, 11, 25, 9, 50), "lib", "door-1", 4, NULL);
    adv(&x, HKI(2026, 11, 25, 10, 0));
    assert_int_equal(x.nfig, 1);
    /* two late readings within a minute: one correction */
    adv(&x, HKI(2026, 11, 25, 10, 2));
    assert_int_equal(add(&x, id, HKI(2026, 11, 25, 9, 59), "lib", "door-1", 1, NULL), 0);
    adv(&x, HKI(2026, 11, 25, 10, 2));
    assert_int_equal(add(&x, id, HKI(2026, 11, 25, 9, 58), "lib", "door-1", 2, NULL), 0);
    adv(&x, HKI(2026, 11, 25, 10, 2) + 30 * US);
    assert_int_equal(x.nfig, 2);
    assert_non_null(strstr(mt_buf_cstr(&x.out), "lib door-1 {\"period\":\"hour\"} 5 r1\n"));
    /* the next correction waits a minute after the last */
    adv(&x, HKI(2026, 11, 25, 10, 3) + 1 * US);
    assert_int_equal(x.nfig, 3);
    assert_non_null(strstr(mt_buf_cstr(&x.out), "lib door-1 {\"period\":\"hour\"} 7 r2\n"));
    /* an unchanged figure is not re-sent; a late one after lateness is counted */
    assert_int_equal(add(&x, id, HKI(2026, 11, 25, 9, 30), "lib", "door-1", 0, NULL), 0);
    adv(&x, HKI(2026, 11, 25, 10, 14));
    assert_int_equal(x.nfig, 3);
    adv(&x, HKI(2026, 11, 25, 10, 15));
    assert_int_equal(add(&x, id, HKI(2026, 11, 25, 9, 59), "lib", "door-1", 1, NULL), 1);
    assert_int_equal(mt_aggs_stats(x.a)->late, 1);
    assert_int_equal(mt_aggs_stats(x.a)->corrections, 2);
    /* out of order within the open window is no correction */
    add(&x, id, HKI(2026, 11, 25, 10, 40), "lib", "door-1", 1, NULL);
    add(&x, id, HKI(2026, 11, 25, 10, 20), "lib", "door-1", 1, NULL);
    adv(&x, HKI(2026, 11, 25, 11, 0));
    assert_non_null(strstr(mt_buf_cstr(&x.out), "T08:00:00Z visitors_hourly lib door-1 {\"period\":\"hour\"} 2\n"));
    fx_free(&x);
}

static void distinct_suppressed_until_five(void **st)
{
    (void)st;
    struct fx x;
    fx_init(&x, 1 << 20);
    int id = define(&x, (struct mt_aggdef_conf){.metric = "families", .every = MT_UNIT_MONTH,
                                               .agg = MT_AGG_DISTINCT, .by = {"service"},
                                               .nby = 1, .suppress = 5,
                                               .lateness_us = 86400 * US});
    const char *fam[] = {"F1", "F2", "F3", "F1", "F2", "F3"};
    for (int i = 0; i < 6; i++)
        add(&x, id, HKI(2026, 7, 10 + i, 12, 0), "library", NULL, 1, fam[i]);
    add(&x, id, HKI(2026, 7, 20, 12, 0), "library", NULL, 1, NULL); /* no subject: nothing */
    adv(&x, HKI(2026, 8, 1, 0, 0) - 3600 * US);
    /* July in Helsinki starts at 2026-06-30T21:00Z (summer time) */
    assert_string_equal(mt_buf_cstr(&x.out),
                        "2026-06-30T21:00:00Z families - - {\"period\":\"month\",\"service\":\"library\"} <5\n");
    /* two more families late: still under 5, no correction; a third: 6 */
    add(&x, id, HKI(2026, 7, 31, 20, 0), "library", NULL, 1, "F4");
    add(&x, id, HKI(2026, 7, 31, 20, 0), "library", NULL, 1, "F5");
    adv(&x, HKI(2026, 8, 1, 3, 0));
    assert_non_null(strstr(mt_buf_cstr(&x.out), "} 5 r1\n"));
    add(&x, id, HKI(2026, 7, 31, 20, 0), "library", NULL, 1, "F6");
    adv(&x, HKI(2026, 8, 1, 4, 0));
    assert_non_null(strstr(mt_buf_cstr(&x.out), "} 6 r2\n"));
    assert_int_equal(mt_aggs_stats(x.a)->suppressed, 1);
    fx_free(&x);
}

static void suppressed_figure_is_never_passed(void **st)
{
    (void)st;
    struct fx x;
    fx_init(&x, 1 << 20);
    int id = define(&x, (struct mt_aggdef_conf){.metric = "score", .every = MT_UNIT_DAY,
                                               .agg = MT_AGG_MEAN, .by = {"area"}, .nby = 1,
                                               .suppress = 5});
    for (int i = 0; i < 4; i++)
        add(&x, id, HKI(2026, 3, 2, 10 + i, 0), "north", NULL, 3.5, NULL);
    assert_int_equal(mt_aggs_finish(x.a), 0);
    /* the figure callback saw value 0 and the threshold, never 3.5 */
    assert_non_null(strstr(mt_buf_cstr(&x.out), "<5\n"));
    assert_null(strstr(mt_buf_cstr(&x.out), "3.5"));
    fx_free(&x);
}

static void flow_matrix(void **st)
{
    (void)st;
    struct fx x;
    fx_init(&x, 1 << 20);
    int id = define(&x, (struct mt_aggdef_conf){.metric = "families", .every = MT_UNIT_MONTH,
                                               .agg = MT_AGG_DISTINCT, .by = {"service"},
                                               .nby = 1, .suppress = 5,
                                               .flows_metric = "families_also"});
    char s[16];
    for (int i = 0; i < 9; i++) { /* library: F0..F8; pool: F3..F11; museum: F0 */
        snprintf(s, sizeof(s), "F%d", i);
        add(&x, id, HKI(2026, 2, 3, 10, i), "library", NULL, 1, s);
        snprintf(s, sizeof(s), "F%d", i + 3);
        add(&x, id, HKI(2026, 2, 4, 10, i), "pool", NULL, 1, s);
    }
    add(&x, id, HKI(2026, 2, 5, 10, 0), "museum", NULL, 1, "F0");
    assert_int_equal(mt_aggs_finish(x.a), 0);
    const char *want =
        "2026-01-31T22:00:00Z families - - {\"period\":\"month\",\"service\":\"library\"} 9\n"
        "2026-01-31T22:00:00Z families - - {\"period\":\"month\",\"service\":\"museum\"} <5\n"
        "2026-01-31T22:00:00Z families - - {\"period\":\"month\",\"service\":\"pool\"} 9\n"
        "2026-01-31T22:00:00Z families_also - - {\"also\":\"museum\",\"period\":\"month\",\"service\":\"library\"} <5\n"
        "2026-01-31T22:00:00Z families_also - - {\"also\":\"pool\",\"period\":\"month\",\"service\":\"library\"} 6\n"
        "2026-01-31T22:00:00Z families_also - - {\"also\":\"library\",\"period\":\"month\",\"service\":\"museum\"} <5\n"
        "2026-01-31T22:00:00Z families_also - - {\"also\":\"pool\",\"period\":\"month\",\"service\":\"museum\"} <5\n"
        "2026-01-31T22:00:00Z families_also - - {\"also\":\"library\",\"period\":\"month\",\"service\":\"pool\"} 6\n"
        "2026-01-31T22:00:00Z families_also - - {\"also\":\"museum\",\"period\":\"month\",\"service\":\"pool\"} <5\n";
    assert_string_equal(mt_buf_cstr(&x.out), want);
    fx_free(&x);
}

static void approx_distinct_is_close(void **st)
{
    (void)st;
    struct fx x;
    fx_init(&x, 4 << 20);
    int ida = define(&x, (struct mt_aggdef_conf){.metric = "approx", .every = MT_UNIT_YEAR,
                                                .agg = MT_AGG_APPROX, .precision = 12,
                                                .suppress = 5});
    int ide = define(&x, (struct mt_aggdef_conf){.metric = "exact", .every = MT_UNIT_YEAR,
                                                .agg = MT_AGG_DISTINCT, .suppress = 5});
    char s[32];
    for (int i = 0; i < 60000; i++) {
        snprintf(s, sizeof(s), "subject-%d", i % 20000); /* each three times */
        add(&x, ida, HKI(2026, 5, 1, 0, 0) + i, NULL, NULL, 1, s);
        add(&x, ide, HKI(2026, 5, 1, 0, 0) + i, NULL, NULL, 1, s);
    }
    assert_int_equal(mt_aggs_finish(x.a), 0);
    double approx = 0, exact = 0;
    const char *e = strstr(mt_buf_cstr(&x.out), " exact ");
    const char *a = strstr(mt_buf_cstr(&x.out), " approx ");
    assert_non_null(e);
    assert_non_null(a);
    assert_int_equal(sscanf(strchr(e, '}') + 1, "%lf", &exact), 1);
    assert_int_equal(sscanf(strchr(a, '}') + 1, "%lf", &approx), 1);
    assert_true(exact == 20000);
    /* within 4 standard errors (1.04/64 = 1.6 %), and an estimate, not the set */
    if (fabs(approx - exact) / exact > 4 * 0.01625)
        fail_msg("approx %f vs exact %f", approx, exact);
    fx_free(&x);
}

/* The autumn day: 25 hourly figures for a quiet door, the repeated hour twice. */
static void dst_autumn_hours(void **st)
{
    (void)st;
    struct fx x;
    fx_init(&x, 1 << 20);
    int id = define(&x, hourly);
    int64_t day = ((int64_t)mt_days_from_civil(2026, 10, 24) * 86400 + 21 * 3600) * US;
    add(&x, id, day, "lib", "door-1", 1, NULL);
    adv(&x, day + 25 * 3600 * US);
    assert_int_equal(x.nfig, 25);
    fx_free(&x);
}

/* A long quiet gap is closed at most MT_AGG_PERIODS_PER_CALL periods a
 * call; a window with readings after the gap, emitted and finished before
 * the quiet periods caught up with it, must not come out twice. */
static void long_gap_no_duplicates(void **st)
{
    (void)st;
    struct fx x;
    fx_init(&x, 4 << 20);
    int id = define(&x, hourly);
    int64_t t0 = HKI(2026, 1, 5, 9, 30);
    add(&x, id, t0, "lib", "door-1", 1, NULL);
    /* a jump of 200 hours (the agent was off): 64 quiet hours close per
     * call; this caller adds without calling again until all is done */
    assert_true(mt_aggs_advance(x.a, t0 + 200 * 3600 * US) >= 0); /* 1: more to do */
    add(&x, id, t0 + 200 * 3600 * US, "lib", "door-1", 5, NULL);
    assert_true(mt_aggs_advance(x.a, t0 + 200 * 3600 * US + 60 * US) >= 0);
    /* its hour ends and is finished (lateness 15 min) before the quiet
     * hours have caught up */
    assert_true(mt_aggs_advance(x.a, t0 + 201 * 3600 * US) >= 0);
    for (int h = 0; h < 10; h++)
        assert_true(mt_aggs_advance(x.a, t0 + 201 * 3600 * US + h * US) >= 0);
    assert_true(mt_aggs_advance(x.a, t0 + 300 * 3600 * US) >= 0);
    assert_int_equal(mt_aggs_finish(x.a), 0);
    /* every hour once, the reported one too */
    int n = 0, fives = 0;
    for (const char *p = mt_buf_cstr(&x.out); (p = strchr(p, '\n')); p++)
        n++;
    for (const char *p = mt_buf_cstr(&x.out); (p = strstr(p, "} 5\n")); p++)
        fives++;
    assert_int_equal(fives, 1);
    assert_int_equal(n, 300); /* 09:00 .. the hour before the last advance */
    fx_free(&x);
}

/* A quiet group still owed figures when the figures of a long gap come in
 * pieces: it is not forgotten before its windows are out. */
static void gap_in_pieces_keeps_owed_groups(void **st)
{
    (void)st;
    struct fx x;
    fx_init(&x, 8 << 20);
    int ida = define(&x, hourly);
    int idb = define(&x, (struct mt_aggdef_conf){.metric = "daily", .every = MT_UNIT_DAY,
                                                .agg = MT_AGG_SUM, .by = {"site"}, .nby = 1,
                                                .forget_us = 3 * 86400 * US});
    int64_t t0 = HKI(2026, 1, 5, 9, 30);
    char dev[16];
    for (int i = 0; i < 10; i++) { /* ten doors: a gap's hours make many figures */
        snprintf(dev, sizeof(dev), "door-%d", i);
        add(&x, ida, t0, "lib", dev, 1, NULL);
    }
    add(&x, idb, t0, "lib", NULL, 7, NULL);
    adv(&x, t0 + 40 * 86400 * US);
    /* the day with the reading and three quiet days within forget_after */
    int days = 0;
    for (const char *p = mt_buf_cstr(&x.out); (p = strstr(p, " daily lib ")); p++)
        days++;
    assert_int_equal(days, 4);
    assert_non_null(strstr(mt_buf_cstr(&x.out), "daily lib - {\"period\":\"day\"} 7\n"));
    fx_free(&x);
}

static void memory_cap(void **st)
{
    (void)st;
    struct fx x;
    fx_init(&x, 64 << 10);
    int id = define(&x, (struct mt_aggdef_conf){.metric = "n", .every = MT_UNIT_DAY,
                                               .agg = MT_AGG_DISTINCT});
    char s[32];
    int rc = 0, i;
    for (i = 0; i < 100000 && rc == 0; i++) {
        snprintf(s, sizeof(s), "subject-%d", i);
        rc = add(&x, id, HKI(2026, 5, 1, 0, 0), NULL, NULL, 1, s);
    }
    assert_int_equal(rc, -ENOMEM);
    assert_true(mt_aggs_mem(x.a) <= 64 << 10);
    assert_true(i > 100);
    fx_free(&x);
}

/* ---- exactly once: save and restore anywhere ---- */

struct op {
    int def;
    int64_t ts;
    const char *g0, *g1;
    double v;
    const char *subj;
    int64_t advance; /* 0: an add */
};

static void declare_all(struct fx *x)
{
    define(x, hourly);
    define(x, (struct mt_aggdef_conf){.metric = "families", .every = MT_UNIT_DAY,
                                      .agg = MT_AGG_DISTINCT, .by = {"service"}, .nby = 1,
                                      .suppress = 3, .flows_metric = "also"});
    define(x, (struct mt_aggdef_conf){.metric = "peak", .every = MT_UNIT_DAY, .agg = MT_AGG_MAX,
                                      .by = {"site"}, .nby = 1});
    define(x, (struct mt_aggdef_conf){.metric = "approx", .every = MT_UNIT_WEEK,
                                      .agg = MT_AGG_APPROX, .precision = 6});
}

static size_t make_ops(struct op *ops, size_t max)
{
    static char subj[64][8];
    uint64_t r = 12345;
    size_t n = 0;
    int64_t t = HKI(2026, 10, 24, 20, 0);
    for (int i = 0; i < 64; i++)
        snprintf(subj[i], sizeof(subj[i]), "S%d", i);
    while (n + 2 < max) {
        r = r * 6364136223846793005ULL + 1442695040888963407ULL;
        int k = (int)(r >> 60);
        t += (int64_t)((r >> 20) % 900) * US;
        int64_t ts = t - ((k == 3) ? (int64_t)((r >> 8) % 1800) * US : 0); /* some late */
        const char *door = (r >> 40) & 1 ? "door-1" : "door-2";
        const char *svc = (r >> 41) % 3 == 0 ? "library" : (r >> 41) % 3 == 1 ? "pool" : "museum";
        ops[n++] = (struct op){0, ts, "lib", door, (double)((r >> 30) % 5), NULL, 0};
        ops[n++] = (struct op){1 + (int)((r >> 50) % 3), ts, svc, NULL, (double)((r >> 33) % 40),
                               subj[(r >> 44) % 64], 0};
        if (k >= 12)
            ops[n++] = (struct op){0, 0, NULL, NULL, 0, NULL, t};
    }
    return n;
}

static void run_ops(struct fx *x, const struct op *ops, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++) {
        const struct op *o = &ops[i];
        if (o->advance) {
            adv(x, o->advance);
            continue;
        }
        if (o->def == 2) /* peak per site: the op's service stands for a site name */
            add(x, 2, o->ts, "lib", NULL, o->v, NULL);
        else
            add(x, o->def, o->ts, o->g0, o->g1, o->v, o->subj);
        adv(x, o->ts > mt_aggs_now(x->a) ? o->ts : 0);
    }
}

static void restore_anywhere_gives_same_figures(void **st)
{
    (void)st;
    static struct op ops[1200];
    size_t n = make_ops(ops, sizeof(ops) / sizeof(ops[0]));
    struct fx whole;
    fx_init(&whole, 8 << 20);
    declare_all(&whole);
    run_ops(&whole, ops, 0, n);
    assert_int_equal(mt_aggs_finish(whole.a), 0);
    assert_true(whole.nfig > 300);
    assert_true(mt_aggs_stats(whole.a)->corrections > 0);
    assert_true(mt_aggs_stats(whole.a)->late > 0);

    for (size_t cut = 1; cut < n; cut += 37) {
        struct fx x, y;
        struct mt_buf state = {0};
        char note[200];
        fx_init(&x, 8 << 20);
        declare_all(&x);
        run_ops(&x, ops, 0, cut);
        assert_int_equal(mt_aggs_save(x.a, &state), 0);
        fx_init(&y, 8 << 20);
        declare_all(&y);
        assert_int_equal(mt_aggs_restore(y.a, state.p, state.len, note, sizeof(note)), 0);
        assert_string_equal(note, "");
        if (x.out.len)
            mt_buf_add(&y.out, x.out.p, x.out.len);
        run_ops(&y, ops, cut, n);
        assert_int_equal(mt_aggs_finish(y.a), 0);
        if (strcmp(mt_buf_cstr(&y.out), mt_buf_cstr(&whole.out)) != 0)
            fail_msg("cut at %zu: figures differ", cut);
        mt_buf_free(&state);
        fx_free(&x);
        fx_free(&y);
    }
    fx_free(&whole);
}

static void restore_matches_windows_by_signature(void **st)
{
    (void)st;
    struct fx x, y;
    struct mt_buf state = {0};
    char note[200];
    fx_init(&x, 1 << 20);
    int id = define(&x, hourly);
    define(&x, (struct mt_aggdef_conf){.metric = "daily", .every = MT_UNIT_DAY, .agg = MT_AGG_SUM});
    add(&x, id, HKI(2026, 1, 5, 9, 30), "lib", "door-1", 7, NULL);
    assert_int_equal(mt_aggs_save(x.a, &state), 0);
    /* the new script: the hourly window unchanged, the daily one now counts */
    fx_init(&y, 1 << 20);
    define(&y, (struct mt_aggdef_conf){.metric = "daily", .every = MT_UNIT_DAY, .agg = MT_AGG_COUNT});
    id = define(&y, hourly);
    assert_int_equal(mt_aggs_restore(y.a, state.p, state.len, note, sizeof(note)), 0);
    assert_string_equal(note, "daily");
    assert_int_equal(mt_aggs_finish(y.a), 0);
    assert_non_null(strstr(mt_buf_cstr(&y.out), "door-1 {\"period\":\"hour\"} 7\n"));
    /* damaged states are refused whole */
    for (size_t cut = 0; cut < state.len; cut += 3) {
        struct fx z;
        fx_init(&z, 1 << 20);
        define(&z, hourly);
        int rc = mt_aggs_restore(z.a, state.p, cut, note, sizeof(note));
        assert_true(rc == -EINVAL);
        assert_int_equal(mt_aggs_finish(z.a), 0);
        assert_int_equal(z.nfig, 0);
        fx_free(&z);
    }
    mt_buf_free(&state);
    fx_free(&x);
    fx_free(&y);
}

static void bad_definitions(void **st)
{
    (void)st;
    struct fx x;
    char err[200];
    int id;
    fx_init(&x, 1 << 20);
    struct mt_aggdef_conf c = hourly;
    c.by[0] = "metric";
    assert_int_equal(mt_aggs_define(x.a, &c, &id, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "metric"));
    c = hourly;
    c.flows_metric = "x";
    assert_int_equal(mt_aggs_define(x.a, &c, &id, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "distinct"));
    c = hourly;
    c.suppress = 1;
    assert_int_equal(mt_aggs_define(x.a, &c, &id, err, sizeof(err)), -EINVAL);
    define(&x, hourly);
    assert_int_equal(mt_aggs_define(x.a, &hourly, &id, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "already"));
    /* a group value that cannot be a device */
    const char *g[2] = {"lib", "door 1"};
    assert_int_equal(mt_aggs_add(x.a, 0, HKI(2026, 1, 1, 0, 0), g, 1, NULL, 0, err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "door 1"));
    fx_free(&x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(quiet_hour_reports_zero),
        cmocka_unit_test(forgotten_group_stops),
        cmocka_unit_test(late_readings_give_corrections),
        cmocka_unit_test(distinct_suppressed_until_five),
        cmocka_unit_test(suppressed_figure_is_never_passed),
        cmocka_unit_test(flow_matrix),
        cmocka_unit_test(approx_distinct_is_close),
        cmocka_unit_test(dst_autumn_hours),
        cmocka_unit_test(long_gap_no_duplicates),
        cmocka_unit_test(gap_in_pieces_keeps_owed_groups),
        cmocka_unit_test(memory_cap),
        cmocka_unit_test(restore_anywhere_gives_same_figures),
        cmocka_unit_test(restore_matches_windows_by_signature),
        cmocka_unit_test(bad_definitions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
