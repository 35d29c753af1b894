/* The series registry: interning, dense ids, lock-free lookups, growth. */
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <mittari/mittari.h>

#include "series.h"

static struct mt_series_info key(const char *metric)
{
    struct mt_series_info k = {
        .site = "hki",
        .device = "door-1",
        .metric = metric,
        .unit = "1",
        .kind = MITTARI_KIND_GAUGE,
        .bits = 0,
        .tags = "",
    };
    return k;
}

static uint32_t intern(struct mt_series_reg *r, const struct mt_series_info *k)
{
    uint32_t id = 0;
    assert_int_equal(mt_series_intern(r, k, &id), 0);
    return id;
}

static void same_key_same_id(void **s)
{
    (void)s;
    struct mt_series_reg r;
    assert_int_equal(mt_series_init(&r), 0);
    struct mt_series_info k = key("people_in");
    uint32_t a = intern(&r, &k);
    /* an equal key in other buffers: compared by content, not by pointer */
    char metric[] = "people_in";
    struct mt_series_info k2 = key(metric);
    uint32_t b = intern(&r, &k2);
    assert_int_equal(a, 1);
    assert_int_equal(b, a);
    assert_int_equal(mt_series_count(&r), 1);
    mt_series_free(&r);
}

static void any_field_makes_a_new_series(void **s)
{
    (void)s;
    struct mt_series_reg r;
    assert_int_equal(mt_series_init(&r), 0);
    struct mt_series_info base = key("m");
    struct mt_series_info v[8];
    for (int i = 0; i < 8; i++)
        v[i] = base;
    v[1].site = "tku";
    v[2].device = "door-2";
    v[3].metric = "m2";
    v[4].unit = "W";
    v[5].kind = MITTARI_KIND_CUMULATIVE;
    v[6].bits = 16;
    v[7].tags = "{\"theme\":\"a\"}";
    for (int i = 0; i < 8; i++)
        assert_int_equal(intern(&r, &v[i]), (uint32_t)i + 1);
    /* and each one is found again */
    for (int i = 0; i < 8; i++)
        assert_int_equal(intern(&r, &v[i]), (uint32_t)i + 1);
    assert_int_equal(mt_series_count(&r), 8);
    mt_series_free(&r);
}

static void null_unit_and_tags_equal_empty(void **s)
{
    (void)s;
    struct mt_series_reg r;
    assert_int_equal(mt_series_init(&r), 0);
    struct mt_series_info a = key("m");
    a.unit = "";
    struct mt_series_info b = a;
    b.unit = NULL;
    b.tags = NULL;
    assert_int_equal(intern(&r, &a), intern(&r, &b));
    const struct mt_series_info *g = mt_series_get(&r, 1);
    assert_non_null(g);
    assert_string_equal(g->unit, "");
    assert_string_equal(g->tags, "");
    mt_series_free(&r);
}

static void get_returns_copies_of_the_fields(void **s)
{
    (void)s;
    struct mt_series_reg r;
    char metric[16] = "temp";
    assert_int_equal(mt_series_init(&r), 0);
    struct mt_series_info k = key(metric);
    k.kind = MITTARI_KIND_CUMULATIVE;
    k.bits = 32;
    k.tags = "{\"a\":1}";
    uint32_t id = intern(&r, &k);
    strcpy(metric, "XXXX"); /* the registry owns its strings */
    const struct mt_series_info *g = mt_series_get(&r, id);
    assert_non_null(g);
    assert_int_equal(g->id, id);
    assert_string_equal(g->site, "hki");
    assert_string_equal(g->device, "door-1");
    assert_string_equal(g->metric, "temp");
    assert_string_equal(g->unit, "1");
    assert_int_equal(g->kind, MITTARI_KIND_CUMULATIVE);
    assert_int_equal(g->bits, 32);
    assert_string_equal(g->tags, "{\"a\":1}");
    mt_series_free(&r);
}

static void get_unknown_is_null(void **s)
{
    (void)s;
    struct mt_series_reg r;
    assert_int_equal(mt_series_init(&r), 0);
    assert_null(mt_series_get(&r, 0));
    assert_null(mt_series_get(&r, 1));
    struct mt_series_info k = key("m");
    intern(&r, &k);
    assert_non_null(mt_series_get(&r, 1));
    assert_null(mt_series_get(&r, 0));
    assert_null(mt_series_get(&r, 2));
    assert_null(mt_series_get(&r, UINT32_MAX));
    mt_series_free(&r);
}

static void add_loaded_requires_sequential_ids(void **s)
{
    (void)s;
    struct mt_series_reg r;
    assert_int_equal(mt_series_init(&r), 0);
    struct mt_series_info k = key("a");
    k.id = 2;
    assert_int_equal(mt_series_add_loaded(&r, &k), -EINVAL);
    k.id = 0;
    assert_int_equal(mt_series_add_loaded(&r, &k), -EINVAL);
    k.id = 1;
    assert_int_equal(mt_series_add_loaded(&r, &k), 0);
    k.id = 1;
    k.metric = "b";
    assert_int_equal(mt_series_add_loaded(&r, &k), -EINVAL);
    k.id = 2;
    assert_int_equal(mt_series_add_loaded(&r, &k), 0);
    assert_int_equal(mt_series_count(&r), 2);
    /* loaded entries are found by intern, and new ones continue after them */
    struct mt_series_info a = key("a");
    struct mt_series_info c = key("c");
    assert_int_equal(intern(&r, &a), 1);
    assert_int_equal(intern(&r, &c), 3);
    mt_series_free(&r);
}

#define NTHREADS 4
#define NKEYS 3000

struct worker {
    struct mt_series_reg *r;
    int offset;
    uint32_t ids[NKEYS];
    int rc;
};

static void *intern_many(void *arg)
{
    struct worker *w = arg;
    char metric[32];
    /* each thread walks the same keys from a different start, so they race */
    for (int n = 0; n < NKEYS; n++) {
        int i = (n + w->offset) % NKEYS;
        snprintf(metric, sizeof(metric), "m%d", i);
        struct mt_series_info k = key(metric);
        if (mt_series_intern(w->r, &k, &w->ids[i])) {
            w->rc = -1;
            break;
        }
        const struct mt_series_info *g = mt_series_get(w->r, w->ids[i]);
        if (!g || strcmp(g->metric, metric) != 0) {
            w->rc = -2;
            break;
        }
    }
    return NULL;
}

static void concurrent_intern_is_consistent(void **s)
{
    (void)s;
    struct mt_series_reg r;
    static struct worker w[NTHREADS];
    pthread_t t[NTHREADS];

    assert_int_equal(mt_series_init(&r), 0);
    for (int i = 0; i < NTHREADS; i++) {
        memset(&w[i], 0, sizeof(w[i]));
        w[i].r = &r;
        w[i].offset = i * (NKEYS / NTHREADS) / 2;
        assert_int_equal(pthread_create(&t[i], NULL, intern_many, &w[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(mt_series_count(&r), NKEYS);
    static bool seen[NKEYS + 1];
    memset(seen, 0, sizeof(seen));
    for (int k = 0; k < NKEYS; k++) {
        for (int i = 0; i < NTHREADS; i++) {
            assert_int_equal(w[i].rc, 0);
            assert_int_equal(w[i].ids[k], w[0].ids[k]);
        }
        uint32_t id = w[0].ids[k];
        assert_true(id >= 1 && id <= NKEYS);
        assert_false(seen[id]); /* one id per key */
        seen[id] = true;
    }
    mt_series_free(&r);
}

static void grows_past_many_chunks(void **s)
{
    (void)s;
    struct mt_series_reg r;
    char metric[32];
    const uint32_t n = 5 * MT_SERIES_CHUNK + 7;

    assert_int_equal(mt_series_init(&r), 0);
    for (uint32_t i = 0; i < n; i++) {
        snprintf(metric, sizeof(metric), "metric_%u", i);
        struct mt_series_info k = key(metric);
        assert_int_equal(intern(&r, &k), i + 1);
    }
    assert_int_equal(mt_series_count(&r), n);
    for (uint32_t i = 0; i < n; i++) {
        snprintf(metric, sizeof(metric), "metric_%u", i);
        const struct mt_series_info *g = mt_series_get(&r, i + 1);
        assert_non_null(g);
        assert_int_equal(g->id, i + 1);
        assert_string_equal(g->metric, metric);
        struct mt_series_info k = key(metric);
        assert_int_equal(intern(&r, &k), i + 1);
    }
    assert_null(mt_series_get(&r, n + 1));
    mt_series_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(same_key_same_id),
        cmocka_unit_test(any_field_makes_a_new_series),
        cmocka_unit_test(null_unit_and_tags_equal_empty),
        cmocka_unit_test(get_returns_copies_of_the_fields),
        cmocka_unit_test(get_unknown_is_null),
        cmocka_unit_test(add_loaded_requires_sequential_ids),
        cmocka_unit_test(concurrent_intern_is_consistent),
        cmocka_unit_test(grows_past_many_chunks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
