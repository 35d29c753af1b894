/* Encoding of log rows as JSON Lines and CSV (docs/formats.md). */
#include "testutil.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <mittari/mittari.h>

#include "encode.h"
#include "series.h"

struct fixture {
    struct mt_series_reg reg;
    struct mt_encoder enc;
    struct mt_buf buf;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f || mt_series_init(&f->reg))
        return -1;
    mt_encoder_init(&f->enc, MT_FMT_JSONL, 7);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    mt_series_free(&f->reg);
    mt_buf_free(&f->buf);
    free(f);
    return 0;
}

static const struct mt_series_info *series(struct fixture *f, const char *site, const char *device,
                                           const char *metric, const char *unit, int kind,
                                           const char *tags)
{
    struct mt_series_info k = {
        .site = site, .device = device, .metric = metric, .unit = unit, .kind = kind, .tags = tags};
    uint32_t id = 0;
    assert_int_equal(mt_series_intern(&f->reg, &k, &id), 0);
    return mt_series_get(&f->reg, id);
}

static struct mt_row row(int64_t seq, int64_t ts, double value, const char *subject)
{
    struct mt_row r = {.seq = seq, .ts = ts, .value = value};
    snprintf(r.subject, sizeof(r.subject), "%s", subject);
    return r;
}

/* Encodes one row with a fresh buffer; returns its text. */
static const char *enc(struct fixture *f, int fmt, const struct mt_row *r,
                       const struct mt_series_info *s)
{
    if (f->enc.fmt != fmt)
        mt_encoder_init(&f->enc, fmt, 7);
    f->buf.len = 0;
    assert_int_equal(mt_encode_row(&f->enc, &f->buf, r, s), 0);
    return mt_buf_cstr(&f->buf);
}

static void jsonl_all_fields(void **state)
{
    struct fixture *f = *state;
    mt_encoder_init(&f->enc, MT_FMT_JSONL, 7);
    const struct mt_series_info *s =
        series(f, "hki", "door-1", "people_in", "1", MITTARI_KIND_DELTA, "{\"theme\":\"art\"}");
    struct mt_row r = row(42, 1764084344123456, 3, "AbCdEfGhIjKlMnOpQrStUv");
    r.series = s->id;
    assert_string_equal(enc(f, MT_FMT_JSONL, &r, s),
                        "{\"seq\":42,\"gen\":7,\"ts\":\"2025-11-25T15:25:44.123456Z\",\"site\":\"hki\","
                        "\"device\":\"door-1\",\"metric\":\"people_in\",\"value\":3,\"unit\":\"1\","
                        "\"kind\":\"delta\",\"subject\":\"AbCdEfGhIjKlMnOpQrStUv\","
                        "\"tags\":{\"theme\":\"art\"}}\n");
}

static void jsonl_omits_empty_unit_subject_tags(void **state)
{
    struct fixture *f = *state;
    const struct mt_series_info *s = series(f, "hki", "t1", "temp", "", MITTARI_KIND_GAUGE, "");
    struct mt_row r = row(1, 0, 21.5, "");
    assert_string_equal(
        enc(f, MT_FMT_JSONL, &r, s),
        "{\"seq\":1,\"gen\":7,\"ts\":\"1970-01-01T00:00:00.000000Z\",\"site\":\"hki\","
        "\"device\":\"t1\",\"metric\":\"temp\",\"value\":21.5,\"kind\":\"gauge\"}\n");
    /* NULL unit and tags at intern time are stored as "" and omitted too */
    const struct mt_series_info *n = series(f, "hki", "t2", "temp", NULL, MITTARI_KIND_GAUGE, NULL);
    const char *t = enc(f, MT_FMT_JSONL, &r, n);
    assert_null(strstr(t, "unit"));
    assert_null(strstr(t, "tags"));
    assert_null(strstr(t, "subject"));
}

static void jsonl_escapes_strings(void **state)
{
    struct fixture *f = *state;
    const struct mt_series_info *s =
        series(f, "a\"b\\c", "d\ne\tf\rg", "m\x01\x1f", "°C", MITTARI_KIND_EVENT, "");
    struct mt_row r = row(7, 0, 1, "");
    assert_string_equal(
        enc(f, MT_FMT_JSONL, &r, s),
        "{\"seq\":7,\"gen\":7,\"ts\":\"1970-01-01T00:00:00.000000Z\",\"site\":\"a\\\"b\\\\c\","
        "\"device\":\"d\\ne\\tf\\rg\",\"metric\":\"m\\u0001\\u001f\",\"value\":1,"
        "\"unit\":\"°C\",\"kind\":\"event\"}\n");
}

static void kinds_are_named(void **state)
{
    struct fixture *f = *state;
    struct mt_row r = row(1, 0, 1, "");
    struct {
        int kind;
        const char *want;
    } k[] = {{MITTARI_KIND_DELTA, "\"kind\":\"delta\""},
             {MITTARI_KIND_CUMULATIVE, "\"kind\":\"delta\""}, /* stored as deltas */
             {MITTARI_KIND_GAUGE, "\"kind\":\"gauge\""},
             {MITTARI_KIND_EVENT, "\"kind\":\"event\""}};
    for (size_t i = 0; i < MT_ARRAY_SIZE(k); i++) {
        const struct mt_series_info *s = series(f, "s", "d", "m", "", k[i].kind, "");
        assert_non_null(strstr(enc(f, MT_FMT_JSONL, &r, s), k[i].want));
    }
    assert_string_equal(mt_kind_name(0), "unknown");
    assert_string_equal(mt_kind_name(99), "unknown");
}

static void unknown_series_gives_empty_fields(void **state)
{
    struct fixture *f = *state;
    struct mt_row r = row(5, 0, 2, "");
    assert_string_equal(enc(f, MT_FMT_JSONL, &r, NULL),
                        "{\"seq\":5,\"gen\":7,\"ts\":\"1970-01-01T00:00:00.000000Z\",\"site\":\"\","
                        "\"device\":\"\",\"metric\":\"\",\"value\":2,\"kind\":\"unknown\"}\n");
    assert_string_equal(enc(f, MT_FMT_CSV, &r, NULL),
                        "5,7,1970-01-01T00:00:00.000000Z,,,,2,,unknown,,,0,,\n");
}

/* the text between "value": and the next comma */
static const char *value_text(const char *line, char *out, size_t len)
{
    const char *p = strstr(line, "\"value\":");
    assert_non_null(p);
    p += 8;
    size_t n = strcspn(p, ",}");
    assert_true(n < len);
    memcpy(out, p, n);
    out[n] = 0;
    return out;
}

static void integral_values_have_no_fraction(void **state)
{
    struct fixture *f = *state;
    const struct mt_series_info *s = series(f, "s", "d", "m", "", MITTARI_KIND_DELTA, "");
    struct {
        double v;
        const char *want;
    } c[] = {{0, "0"},
             {1, "1"},
             {-3, "-3"},
             {1e6, "1000000"},
             {-0.0, "0"},
             {4294967296.0, "4294967296"},
             {9007199254740991.0, "9007199254740991"}};
    char text[64];
    for (size_t i = 0; i < MT_ARRAY_SIZE(c); i++) {
        struct mt_row r = row(1, 0, c[i].v, "");
        assert_string_equal(value_text(enc(f, MT_FMT_JSONL, &r, s), text, sizeof(text)), c[i].want);
    }
}

static void non_integral_values_round_trip(void **state)
{
    struct fixture *f = *state;
    const struct mt_series_info *s = series(f, "s", "d", "m", "", MITTARI_KIND_GAUGE, "");
    double v[] = {0.1,
                  -0.1,
                  1.0 / 3.0,
                  2.0 / 3.0,
                  21.5,
                  1e-300,
                  -4.9e-324,
                  123456.789,
                  0.30000000000000004,
                  1.7976931348623157e308,
                  9007199254740993.0 + 0.5,
                  M_PI};
    char text[64];
    for (size_t i = 0; i < MT_ARRAY_SIZE(v); i++) {
        struct mt_row r = row(1, 0, v[i], "");
        value_text(enc(f, MT_FMT_JSONL, &r, s), text, sizeof(text));
        char *end;
        double back = strtod(text, &end);
        assert_int_equal(*end, 0);
        assert_memory_equal(&back, &v[i], sizeof(double));
        assert_null(strchr(text, ' '));
    }
    struct mt_row r = row(1, 0, 0.1, "");
    assert_string_equal(value_text(enc(f, MT_FMT_JSONL, &r, s), text, sizeof(text)), "0.1");
    r.value = 21.5;
    assert_string_equal(value_text(enc(f, MT_FMT_JSONL, &r, s), text, sizeof(text)), "21.5");
    /* pseudo-random doubles: every one reads back bit for bit */
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < 2000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        double d;
        memcpy(&d, &x, sizeof(d));
        if (!isfinite(d))
            continue;
        r.value = d;
        value_text(enc(f, MT_FMT_JSONL, &r, s), text, sizeof(text));
        double back = strtod(text, NULL);
        assert_memory_equal(&back, &d, sizeof(double));
    }
}

static const char *ts_text(struct fixture *f, int64_t us, char *out)
{
    struct mt_row r = row(1, us, 0, "");
    const char *t = enc(f, MT_FMT_CSV, &r, NULL);
    const char *c = strchr(t, ',');
    assert_non_null(c);
    c = strchr(c + 1, ','); /* after seq and gen */
    assert_non_null(c);
    memcpy(out, c + 1, 27);
    out[27] = 0;
    assert_int_equal(c[28], ',');
    return out;
}

static void timestamps_with_microseconds(void **state)
{
    struct fixture *f = *state;
    char t[32];
    mt_encoder_init(&f->enc, MT_FMT_CSV, 7);
    assert_string_equal(ts_text(f, 0, t), "1970-01-01T00:00:00.000000Z");
    assert_string_equal(ts_text(f, 1, t), "1970-01-01T00:00:00.000001Z");
    assert_string_equal(ts_text(f, 999999, t), "1970-01-01T00:00:00.999999Z");
    assert_string_equal(ts_text(f, 1000000, t), "1970-01-01T00:00:01.000000Z");
    assert_string_equal(ts_text(f, 1709164800000000 + 50, t), "2024-02-29T00:00:00.000050Z");
    assert_string_equal(ts_text(f, 1764084344123456, t), "2025-11-25T15:25:44.123456Z");
    /* same second again, then the next: the per-second cache follows */
    assert_string_equal(ts_text(f, 1764084344999999, t), "2025-11-25T15:25:44.999999Z");
    assert_string_equal(ts_text(f, 1764084345000000, t), "2025-11-25T15:25:45.000000Z");
    assert_string_equal(ts_text(f, 1764084344000001, t), "2025-11-25T15:25:44.000001Z");
    assert_string_equal(ts_text(f, 253402300799999999, t), "9999-12-31T23:59:59.999999Z");
}

static void timestamps_before_the_epoch(void **state)
{
    struct fixture *f = *state;
    char t[32];
    mt_encoder_init(&f->enc, MT_FMT_CSV, 7);
    /* a negative fraction borrows from the second: -1 µs is 23:59:59.999999 */
    assert_string_equal(ts_text(f, -1, t), "1969-12-31T23:59:59.999999Z");
    assert_string_equal(ts_text(f, -999999, t), "1969-12-31T23:59:59.000001Z");
    assert_string_equal(ts_text(f, -1000000, t), "1969-12-31T23:59:59.000000Z");
    assert_string_equal(ts_text(f, -1000001, t), "1969-12-31T23:59:58.999999Z");
    assert_string_equal(ts_text(f, -1500000, t), "1969-12-31T23:59:58.500000Z");
    assert_string_equal(ts_text(f, 0, t), "1970-01-01T00:00:00.000000Z");
    assert_string_equal(ts_text(f, -1, t), "1969-12-31T23:59:59.999999Z");
}

static void csv_header_and_row(void **state)
{
    struct fixture *f = *state;
    struct mt_buf h = {0};
    mt_encoder_init(&f->enc, MT_FMT_CSV, 7);
    assert_int_equal(mt_encode_header(&f->enc, &h), 0);
    assert_string_equal(mt_buf_cstr(&h),
                        "seq,gen,ts,site,device,metric,value,unit,kind,subject,tags,revision,"
                        "suppressed_below,origin\n");
    mt_buf_free(&h);
    const struct mt_series_info *s =
        series(f, "hki", "door-1", "people_in", "1", MITTARI_KIND_DELTA, "");
    struct mt_row r = row(42, 1764084344123456, 3, "AbCdEfGhIjKlMnOpQrStUv");
    assert_string_equal(enc(f, MT_FMT_CSV, &r, s),
                        "42,7,2025-11-25T15:25:44.123456Z,hki,door-1,people_in,3,1,delta,"
                        "AbCdEfGhIjKlMnOpQrStUv,,0,,\n");
    r.value = 0.25;
    r.subject[0] = 0;
    assert_string_equal(enc(f, MT_FMT_CSV, &r, s),
                        "42,7,2025-11-25T15:25:44.123456Z,hki,door-1,people_in,0.25,1,delta,,,0,,\n");
}

/* A rule's derived figures: origin, correction and suppression in both
 * formats; a suppressed figure's value is never written. */
static void derived_reading_fields(void **state)
{
    struct fixture *f = *state;
    struct mt_series_info k = {.site = "lib", .device = "fam", .metric = "families", .unit = "",
                               .kind = MITTARI_KIND_GAUGE, .tags = "{\"period\":\"month\"}",
                               .origin = "families-monthly"};
    uint32_t id = 0;
    assert_int_equal(mt_series_intern(&f->reg, &k, &id), 0);
    const struct mt_series_info *s = mt_series_get(&f->reg, id);
    struct mt_row r = row(9, 0, 0, "");
    r.flags = MT_RF_SUPPRESSED | 2u << 1;
    r.min_count = 5;
    assert_string_equal(enc(f, MT_FMT_JSONL, &r, s),
                        "{\"seq\":9,\"gen\":7,\"ts\":\"1970-01-01T00:00:00.000000Z\",\"site\":\"lib\","
                        "\"device\":\"fam\",\"metric\":\"families\",\"value\":null,\"kind\":\"gauge\","
                        "\"tags\":{\"period\":\"month\"},\"revision\":2,\"suppressed_below\":5,"
                        "\"origin\":\"families-monthly\"}\n");
    assert_string_equal(enc(f, MT_FMT_CSV, &r, s),
                        "9,7,1970-01-01T00:00:00.000000Z,lib,fam,families,,,gauge,,"
                        "\"{\"\"period\"\":\"\"month\"\"}\",2,5,families-monthly\n");
    r.flags = 0;
    r.value = 12;
    assert_string_equal(enc(f, MT_FMT_CSV, &r, s),
                        "9,7,1970-01-01T00:00:00.000000Z,lib,fam,families,12,,gauge,,"
                        "\"{\"\"period\"\":\"\"month\"\"}\",0,,families-monthly\n");
}

static void jsonl_has_no_header(void **state)
{
    struct fixture *f = *state;
    struct mt_buf h = {0};
    mt_encoder_init(&f->enc, MT_FMT_JSONL, 7);
    assert_int_equal(mt_encode_header(&f->enc, &h), 0);
    assert_int_equal(h.len, 0);
    mt_buf_free(&h);
}

static void csv_quotes_when_needed(void **state)
{
    struct fixture *f = *state;
    const struct mt_series_info *s = series(f, "a,b", "say \"hi\"", "line\nbreak", "cr\rx",
                                            MITTARI_KIND_GAUGE, "{\"theme\":\"a\",\"x\":1}");
    struct mt_row r = row(3, 0, 1, "");
    assert_string_equal(
        enc(f, MT_FMT_CSV, &r, s),
        "3,7,1970-01-01T00:00:00.000000Z,\"a,b\",\"say \"\"hi\"\"\","
        "\"line\nbreak\",1,\"cr\rx\",gauge,,\"{\"\"theme\"\":\"\"a\"\",\"\"x\"\":1}\",0,,\n");
    /* plain fields stay unquoted, spaces and semicolons included */
    const struct mt_series_info *p =
        series(f, "my site", "d;1", "m", "kWh", MITTARI_KIND_GAUGE, "");
    assert_string_equal(enc(f, MT_FMT_CSV, &r, p),
                        "3,7,1970-01-01T00:00:00.000000Z,my site,d;1,m,1,kWh,gauge,,,0,,\n");
}

static void rows_append_to_the_buffer(void **state)
{
    struct fixture *f = *state;
    const struct mt_series_info *s = series(f, "s", "d", "m", "", MITTARI_KIND_GAUGE, "");
    mt_encoder_init(&f->enc, MT_FMT_JSONL, 7);
    f->buf.len = 0;
    for (int i = 1; i <= 3; i++) {
        struct mt_row r = row(i, i * 1000000LL, i, "");
        assert_int_equal(mt_encode_row(&f->enc, &f->buf, &r, s), 0);
    }
    const char *t = mt_buf_cstr(&f->buf);
    int lines = 0;
    for (const char *p = t; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 3);
    assert_true(strncmp(t, "{\"seq\":1,", 9) == 0);
    assert_non_null(strstr(t, "}\n{\"seq\":2,"));
    assert_non_null(strstr(t, "}\n{\"seq\":3,\"gen\":7,\"ts\":\"1970-01-01T00:00:03.000000Z\""));
}

/* Series text is cached per id, direct-mapped: ids 1 and 1 + MT_ENCODE_CACHE
 * share a slot and must still each come out right, in both formats. */
static void cached_series_text_survives_collisions(void **state)
{
    struct fixture *f = *state;
    const struct mt_series_info *first = NULL, *clash = NULL;
    char name[32];
    for (int i = 0; i <= MT_ENCODE_CACHE; i++) {
        snprintf(name, sizeof(name), "dev-%d", i);
        const struct mt_series_info *s = series(f, "site", name, "m", "u", MITTARI_KIND_GAUGE, "");
        if (i == 0)
            first = s;
        clash = s;
    }
    assert_int_equal(clash->id % MT_ENCODE_CACHE, first->id % MT_ENCODE_CACHE);
    int fmts[] = {MT_FMT_JSONL, MT_FMT_CSV};
    for (int k = 0; k < 2; k++) {
        mt_encoder_init(&f->enc, fmts[k], 7);
        struct mt_row r = row(1, 0, 2, "");
        for (int round = 0; round < 3; round++) {
            f->buf.len = 0;
            assert_int_equal(mt_encode_row(&f->enc, &f->buf, &r, first), 0);
            assert_non_null(strstr(mt_buf_cstr(&f->buf), "dev-0"));
            assert_null(strstr(mt_buf_cstr(&f->buf), "dev-64"));
            f->buf.len = 0;
            assert_int_equal(mt_encode_row(&f->enc, &f->buf, &r, clash), 0);
            assert_non_null(strstr(mt_buf_cstr(&f->buf), "dev-64"));
        }
    }
}

/* The http/mqtt batch document (docs/outputs/http.md): the description,
 * then the records as in JSON Lines; a suppressed figure has no value. */
static void batch_json_document(void **state)
{
    struct fixture *f = *state;
    const struct mt_series_info *s = series(f, "hki", "door-1", "people_in", "1",
                                            MITTARI_KIND_DELTA, "");
    struct mt_row rows[2] = {row(5, 1764084344000000, 3, ""), row(6, 1764084345000000, 9, "")};
    rows[0].series = rows[1].series = s->id;
    rows[1].flags = MT_RF_SUPPRESSED | (2 << 1);
    rows[1].min_count = 5;
    struct mt_batch_head h = {"gw-1", "web", "gw-1/42/web/5-6", 42, 5, 6, 2};
    assert_int_equal(mt_encode_batch(&f->enc, &f->buf, MT_BATCH_JSON, &h, rows, 2, &f->reg), 0);
    assert_string_equal(
        mt_buf_cstr(&f->buf),
        "{\"agent_id\":\"gw-1\",\"generation\":42,\"output\":\"web\",\"key\":\"gw-1/42/web/5-6\","
        "\"first_seq\":5,\"last_seq\":6,\"count\":2,\"readings\":["
        "{\"seq\":5,\"gen\":42,\"ts\":\"2025-11-25T15:25:44.000000Z\",\"site\":\"hki\","
        "\"device\":\"door-1\",\"metric\":\"people_in\",\"value\":3,\"unit\":\"1\",\"kind\":\"delta\"},"
        "{\"seq\":6,\"gen\":42,\"ts\":\"2025-11-25T15:25:45.000000Z\",\"site\":\"hki\","
        "\"device\":\"door-1\",\"metric\":\"people_in\",\"value\":null,\"unit\":\"1\",\"kind\":\"delta\","
        "\"revision\":2,\"suppressed_below\":5}]}");
    f->buf.len = 0;
    assert_int_equal(mt_encode_batch(&f->enc, &f->buf, MT_BATCH_NDJSON, &h, rows, 2, &f->reg), 0);
    const char *t = mt_buf_cstr(&f->buf);
    assert_non_null(strstr(t, "\"seq\":5,\"gen\":42,"));
    assert_int_equal(t[strlen(t) - 1], '\n');
    assert_null(strstr(t, "agent_id")); /* NDJSON: the description goes in headers */
    assert_null(strstr(t, "\"value\":9"));
}

/* Integers are written by hand (two digits at a time): the same text as
 * printf for every length, sign and the extremes. */
static void integers_as_printf_writes_them(void **state)
{
    (void)state;
    int64_t v[] = {0, 1, 9, 10, 11, 99, 100, 101, 999, 1000, 12345, 99999, 100000,
                   1796174859616057, INT64_MAX, INT64_MAX - 1, INT64_MIN, INT64_MIN + 1, -1,
                   -9, -10, -99, -100, -12345};
    char got[MT_FMT_I64 + 1], want[32];
    uint64_t x = 0x9e3779b97f4a7c15u;
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]) + 20000; i++) {
        int64_t n;
        if (i < sizeof(v) / sizeof(v[0])) {
            n = v[i];
        } else {
            x ^= x << 13; /* xorshift: every magnitude, both signs */
            x ^= x >> 7;
            x ^= x << 17;
            n = (int64_t)(x >> (x % 64));
            if (x & 1)
                n = -n;
        }
        size_t len = mt_fmt_i64(got, n);
        got[len] = 0;
        snprintf(want, sizeof(want), "%" PRId64, n);
        assert_string_equal(got, want);
    }
}

/* One encoder writes batches of several log generations: each record
 * carries its own batch's generation, never a cached one. */
static void generation_follows_each_batch(void **state)
{
    struct fixture *f = *state;
    const struct mt_series_info *s = series(f, "hki", "door-1", "people_in", "1",
                                            MITTARI_KIND_DELTA, "");
    struct mt_row r = row(5, 1764084344000000, 3, "");
    r.series = s->id;
    int64_t gens[] = {42, 1796174859616057, 42, -3, 0};
    for (size_t i = 0; i < sizeof(gens) / sizeof(gens[0]); i++) {
        char want[64];
        struct mt_batch_head h = {"gw-1", "web", "k", gens[i], 5, 5, 1};
        f->buf.len = 0;
        assert_int_equal(mt_encode_batch(&f->enc, &f->buf, MT_BATCH_NDJSON, &h, &r, 1, &f->reg), 0);
        snprintf(want, sizeof(want), "{\"seq\":5,\"gen\":%" PRId64 ",\"ts\":", gens[i]);
        assert_non_null(strstr(mt_buf_cstr(&f->buf), want));
        f->buf.len = 0;
        mt_encoder_init(&f->enc, MT_FMT_CSV, gens[i]);
        assert_int_equal(mt_encode_row(&f->enc, &f->buf, &r, s), 0);
        snprintf(want, sizeof(want), "5,%" PRId64 ",2025-11-25T15:25:44.000000Z,", gens[i]);
        assert_memory_equal(mt_buf_cstr(&f->buf), want, strlen(want));
        mt_encoder_init(&f->enc, MT_FMT_JSONL, 7);
    }
}

/* A record is written into room made once: rows with every optional field
 * and long text grow the buffer correctly from empty, one at a time. */
static void records_grow_the_buffer_from_empty(void **state)
{
    struct fixture *f = *state;
    char site[300];
    memset(site, 's', sizeof(site) - 1);
    site[sizeof(site) - 1] = 0; /* longer than the series text cache holds */
    const struct mt_series_info *s = series(f, site, "door-1", "people_in", "1",
                                            MITTARI_KIND_DELTA, "{\"theme\":\"art\"}");
    struct mt_row r = row(INT64_MAX, INT64_MAX, -1.2345678901234567e-300, "AbCdEfGhIjKlMnOpQrStUv");
    r.series = s->id;
    r.flags = MT_RF_SUPPRESSED | (3 << 1);
    r.min_count = 5;
    struct mt_buf one = {0};
    assert_int_equal(mt_encode_row(&f->enc, &one, &r, s), 0);
    size_t len = one.len;
    assert_int_equal(strlen(mt_buf_cstr(&one)), len);
    for (int i = 0; i < 50; i++) {
        struct mt_buf b = {0};
        for (int k = 0; k <= i; k++)
            assert_int_equal(mt_encode_row(&f->enc, &b, &r, s), 0);
        assert_int_equal(b.len, len * (size_t)(i + 1));
        assert_memory_equal(b.p + len * (size_t)i, one.p, len);
        mt_buf_free(&b);
    }
    assert_non_null(strstr(mt_buf_cstr(&one), "\"seq\":9223372036854775807,"));
    assert_non_null(strstr(mt_buf_cstr(&one), "\"value\":null,"));
    mt_buf_free(&one);
}

/* A buffer filled again batch after batch keeps its memory for a batch of
 * the same size, and gives back what a much bigger one grew it to. */
static void refilled_buffers_keep_what_they_need(void **state)
{
    (void)state;
    struct mt_buf b = {0};
    assert_int_equal(mt_buf_reserve(&b, 100000), 0);
    mt_buf_adds(&b, "a drain's batch");
    char *p = b.p;
    size_t cap = b.cap;
    mt_buf_refill(&b, 90000); /* the same size again: kept */
    assert_ptr_equal(b.p, p);
    assert_int_equal(b.cap, cap);
    assert_int_equal(b.len, 0);
    assert_string_equal(mt_buf_cstr(&b), "");
    mt_buf_refill(&b, 100); /* caught up: a few readings */
    assert_null(b.p);
    assert_int_equal(b.cap, 0);
    assert_int_equal(mt_buf_adds(&b, "x"), 0);
    mt_buf_refill(&b, 100);
    assert_non_null(b.p); /* small: kept */
    mt_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(cached_series_text_survives_collisions, setup, teardown),
        cmocka_unit_test_setup_teardown(jsonl_all_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(jsonl_omits_empty_unit_subject_tags, setup, teardown),
        cmocka_unit_test_setup_teardown(jsonl_escapes_strings, setup, teardown),
        cmocka_unit_test_setup_teardown(kinds_are_named, setup, teardown),
        cmocka_unit_test_setup_teardown(unknown_series_gives_empty_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(integral_values_have_no_fraction, setup, teardown),
        cmocka_unit_test_setup_teardown(non_integral_values_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(timestamps_with_microseconds, setup, teardown),
        cmocka_unit_test_setup_teardown(timestamps_before_the_epoch, setup, teardown),
        cmocka_unit_test_setup_teardown(csv_header_and_row, setup, teardown),
        cmocka_unit_test_setup_teardown(derived_reading_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(jsonl_has_no_header, setup, teardown),
        cmocka_unit_test_setup_teardown(csv_quotes_when_needed, setup, teardown),
        cmocka_unit_test_setup_teardown(rows_append_to_the_buffer, setup, teardown),
        cmocka_unit_test_setup_teardown(batch_json_document, setup, teardown),
        cmocka_unit_test_setup_teardown(integers_as_printf_writes_them, setup, teardown),
        cmocka_unit_test_setup_teardown(generation_follows_each_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(records_grow_the_buffer_from_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(refilled_buffers_keep_what_they_need, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
