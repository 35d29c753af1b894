/* plugins/common/frame.c: lines, STX/ETX and fixed frames, split across
 * reads at every position, over-long frames, garbage and binary noise. */
#include "testutil.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

#define MAXF 64

struct got {
    size_t n;
    char f[MAXF][300];
    size_t len[MAXF];
};

static void on_frame(void *arg, const uint8_t *p, size_t len)
{
    struct got *g = arg;
    assert_true(g->n < MAXF);
    assert_true(len < sizeof(g->f[0]));
    memcpy(g->f[g->n], p, len);
    g->f[g->n][len] = 0;
    g->len[g->n] = len;
    g->n++;
}

static struct mtf_framer *make(struct mtf_conf c)
{
    struct mtf_framer *f;
    assert_int_equal(mtf_create(&f, &c), 0);
    return f;
}

static struct mtf_conf line_conf(const char *delim, size_t max)
{
    struct mtf_conf c = {.mode = MTF_LINE, .delimiter_len = strlen(delim), .max_len = max};
    memcpy(c.delimiter, delim, strlen(delim));
    return c;
}

static void feed_str(struct mtf_framer *f, const char *s, struct got *g)
{
    mtf_feed(f, (const uint8_t *)s, strlen(s), on_frame, g);
}

static void test_lines_basic(void **state)
{
    (void)state;
    struct mtf_framer *f = make(line_conf("\n", 64));
    struct got g = {0};
    feed_str(f, "IN=1 OUT=2\nIN=3 OUT=4\r\n\n\r\nlast", &g);
    assert_int_equal(g.n, 2);
    assert_string_equal(g.f[0], "IN=1 OUT=2");
    assert_string_equal(g.f[1], "IN=3 OUT=4"); /* \r stripped for "\n" */
    assert_int_equal(mtf_stats(f)->frames, 2);
    feed_str(f, "\n", &g); /* the partial "last" completes in the next read */
    assert_int_equal(g.n, 3);
    assert_string_equal(g.f[2], "last");
    mtf_free(f);
}

/* The same stream cut into two reads at every position, and byte by byte,
 * gives the same frames and stats. */
static void check_all_splits(struct mtf_conf c, const char *stream, size_t slen)
{
    struct got whole = {0};
    struct mtf_framer *f = make(c);
    mtf_feed(f, (const uint8_t *)stream, slen, on_frame, &whole);
    struct mtf_stats ref = *mtf_stats(f);
    mtf_free(f);
    assert_true(whole.n > 0);

    for (size_t cut = 0; cut <= slen; cut++) {
        struct got g = {0};
        f = make(c);
        mtf_feed(f, (const uint8_t *)stream, cut, on_frame, &g);
        mtf_feed(f, (const uint8_t *)stream + cut, slen - cut, on_frame, &g);
        assert_int_equal(g.n, whole.n);
        for (size_t i = 0; i < g.n; i++) {
            assert_int_equal(g.len[i], whole.len[i]);
            assert_memory_equal(g.f[i], whole.f[i], g.len[i]);
        }
        assert_int_equal(mtf_stats(f)->overlong, ref.overlong);
        assert_int_equal(mtf_stats(f)->skipped_bytes, ref.skipped_bytes);
        assert_int_equal(mtf_stats(f)->cut, ref.cut);
        mtf_free(f);
    }
    struct got g = {0};
    f = make(c);
    for (size_t i = 0; i < slen; i++)
        mtf_feed(f, (const uint8_t *)stream + i, 1, on_frame, &g);
    assert_int_equal(g.n, whole.n);
    mtf_free(f);
}

static void test_lines_split_everywhere(void **state)
{
    (void)state;
    const char *s = "IN=12 OUT=9\r\nIN=13 OUT=9\r\nthis line is far too long for it\r\nOK\r\n";
    check_all_splits(line_conf("\r\n", 16), s, strlen(s));
    check_all_splits(line_conf("\n", 16), s, strlen(s));
    const char *t = "a;;b;;;c;x;;"; /* overlapping delimiter prefixes */
    check_all_splits(line_conf(";;", 4), t, strlen(t));
}

static void test_multibyte_delimiter(void **state)
{
    (void)state;
    struct mtf_framer *f = make(line_conf("\r\n", 64));
    struct got g = {0};
    feed_str(f, "one\r", &g);
    assert_int_equal(g.n, 0);
    feed_str(f, "\ntwo\rstill two\r\n", &g);
    assert_int_equal(g.n, 2);
    assert_string_equal(g.f[0], "one");
    assert_string_equal(g.f[1], "two\rstill two"); /* a lone \r is data */
    mtf_free(f);
}

static void test_line_overlong(void **state)
{
    (void)state;
    struct mtf_framer *f = make(line_conf("\n", 8));
    struct got g = {0};
    feed_str(f, "12345678\n123456789\nabc\n12345678\r\n", &g);
    assert_int_equal(g.n, 3);
    assert_string_equal(g.f[0], "12345678"); /* exactly max_len */
    assert_string_equal(g.f[1], "abc");
    assert_string_equal(g.f[2], "12345678"); /* max_len plus the stripped \r */
    assert_int_equal(mtf_stats(f)->overlong, 1);
    /* a very long line is one over-long frame, not many */
    char big[1000];
    memset(big, 'x', sizeof(big) - 2);
    big[sizeof(big) - 2] = '\n';
    big[sizeof(big) - 1] = 0;
    feed_str(f, big, &g);
    feed_str(f, "ok\n", &g);
    assert_int_equal(mtf_stats(f)->overlong, 2);
    assert_int_equal(g.n, 4);
    assert_string_equal(g.f[3], "ok");
    mtf_free(f);
}

/* The delimiter straddles the point where the buffer overflowed. */
static void test_overlong_delimiter_at_edge(void **state)
{
    (void)state;
    struct mtf_framer *f = make(line_conf("\r\n", 4));
    struct got g = {0};
    /* cap = 4 + 2 + 1 = 7: "abcdef\r" fills it, "\n" ends the dropped line */
    feed_str(f, "abcdef\r\nnext\r\n", &g);
    assert_int_equal(mtf_stats(f)->overlong, 1);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.f[0], "next");
    mtf_free(f);
}

static struct mtf_conf stx_conf(size_t max)
{
    return (struct mtf_conf){.mode = MTF_STXETX, .stx = 0x02, .etx = 0x03, .max_len = max};
}

static void test_stxetx(void **state)
{
    (void)state;
    struct mtf_framer *f = make(stx_conf(14));
    struct got g = {0};
    const char s[] = "noise\x02"
                     "0C000621A58E\x03"
                     "\r\n\x02"
                     "cut\x02"
                     "0C000621A58E\x03";
    mtf_feed(f, (const uint8_t *)s, sizeof(s) - 1, on_frame, &g);
    assert_int_equal(g.n, 2);
    assert_string_equal(g.f[0], "0C000621A58E");
    assert_string_equal(g.f[1], "0C000621A58E");
    /* "noise" 5, "\r\n" 2; STX + "cut" is a cut frame, not noise */
    assert_int_equal(mtf_stats(f)->skipped_bytes, 7);
    assert_int_equal(mtf_stats(f)->cut, 1);
    mtf_free(f);
    check_all_splits(stx_conf(14), s, sizeof(s) - 1);
}

static void test_stxetx_overlong_and_empty(void **state)
{
    (void)state;
    struct mtf_framer *f = make(stx_conf(4));
    struct got g = {0};
    const char s[] = "\x02"
                     "123456789\x03"
                     "\x02\x03"
                     "\x02"
                     "abcd\x03";
    mtf_feed(f, (const uint8_t *)s, sizeof(s) - 1, on_frame, &g);
    assert_int_equal(mtf_stats(f)->overlong, 1);
    assert_int_equal(g.n, 2);
    assert_int_equal(g.len[0], 0); /* empty frame: the decoder refuses it */
    assert_string_equal(g.f[1], "abcd");
    /* an over-long frame cut by a new STX: the new frame still counts */
    const char t[] = "\x02"
                     "123456\x02"
                     "xy\x03";
    mtf_feed(f, (const uint8_t *)t, sizeof(t) - 1, on_frame, &g);
    assert_int_equal(g.n, 3);
    assert_string_equal(g.f[2], "xy");
    mtf_free(f);
}

static void test_fixed(void **state)
{
    (void)state;
    struct mtf_framer *f = make((struct mtf_conf){.mode = MTF_FIXED, .fixed_len = 3});
    struct got g = {0};
    feed_str(f, "abcdefg", &g);
    assert_int_equal(g.n, 2);
    assert_string_equal(g.f[1], "def");
    mtf_reset(f);
    assert_int_equal(mtf_stats(f)->skipped_bytes, 1);
    feed_str(f, "xyz", &g);
    assert_string_equal(g.f[2], "xyz");
    mtf_free(f);
}

static void test_fixed_sync(void **state)
{
    (void)state;
    struct mtf_conf c = {.mode = MTF_FIXED, .fixed_len = 5, .sync = {'P', 'C'}, .sync_len = 2};
    struct mtf_framer *f = make(c);
    struct got g = {0};
    /* noise, a frame, then a frame missing a byte: a fixed framer only
     * looks for the sync where a frame starts, so the short frame takes
     * the next one's first byte, and the rest resynchronises */
    feed_str(f, "xxPPC123PC12PC456PCPC789", &g);
    assert_int_equal(g.n, 3);
    assert_string_equal(g.f[0], "PC123");
    assert_string_equal(g.f[1], "PC12P");
    assert_string_equal(g.f[2], "PCPC7");
    assert_int_equal(mtf_stats(f)->skipped_bytes, 9);
    mtf_free(f);

    /* what sync is for: the stream after a lost byte aligns again */
    f = make(c);
    struct got h = {0};
    feed_str(f, "C123PC456PC789", &h); /* the first frame lost its 'P' */
    assert_int_equal(h.n, 2);
    assert_string_equal(h.f[0], "PC456");
    assert_string_equal(h.f[1], "PC789");
    assert_int_equal(mtf_stats(f)->skipped_bytes, 4);
    mtf_free(f);
    check_all_splits(c, "xxPPC123PC12PC456PCPC789", 24);
}

static void test_create_rejects(void **state)
{
    (void)state;
    struct mtf_framer *f;
    struct mtf_conf bad[] = {
        {.mode = 9, .max_len = 10},
        {.mode = MTF_LINE, .delimiter_len = 0, .max_len = 10},
        {.mode = MTF_LINE, .delimiter_len = 9, .max_len = 10},
        {.mode = MTF_LINE, .delimiter = "\n", .delimiter_len = 1, .max_len = 0},
        {.mode = MTF_LINE, .delimiter = "\n", .delimiter_len = 1, .max_len = MTF_MAX_LEN + 1},
        {.mode = MTF_STXETX, .stx = 2, .etx = 2, .max_len = 10},
        {.mode = MTF_FIXED, .fixed_len = 0},
        {.mode = MTF_FIXED, .fixed_len = 4, .max_len = 3},
        {.mode = MTF_FIXED, .fixed_len = 2, .sync_len = 3},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(mtf_create(&f, &bad[i]), -EINVAL);
        assert_null(f);
    }
}

struct noise_check {
    struct mtf_conf c;
    size_t frames;
};

static void check_noise_frame(void *arg, const uint8_t *p, size_t len)
{
    struct noise_check *n = arg;
    n->frames++;
    if (n->c.mode == MTF_LINE) {
        assert_true(len > 0 && len <= n->c.max_len);
        assert_null(memchr(p, '\n', len));
    } else if (n->c.mode == MTF_STXETX) {
        assert_true(len <= n->c.max_len);
        assert_null(memchr(p, n->c.stx, len));
        assert_null(memchr(p, n->c.etx, len));
    } else {
        assert_int_equal(len, n->c.fixed_len);
    }
}

/* Binary noise in random-sized reads: frames keep their invariants. */
static void test_binary_noise(void **state)
{
    (void)state;
    uint64_t x = 88172645463325252ull;
    uint8_t buf[4096];
    struct noise_check modes[] = {
        {.c = line_conf("\n", 16)},
        {.c = stx_conf(14)},
        {.c = {.mode = MTF_FIXED, .fixed_len = 7, .sync = {0xAA}, .sync_len = 1}},
    };
    for (size_t m = 0; m < 3; m++) {
        struct mtf_framer *f = make(modes[m].c);
        for (int round = 0; round < 200; round++) {
            size_t n = 0;
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            n = x % sizeof(buf);
            for (size_t i = 0; i < n; i++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                buf[i] = (uint8_t)x;
            }
            mtf_feed(f, buf, n, check_noise_frame, &modes[m]);
        }
        assert_true(modes[m].frames > 0);
        mtf_free(f);
    }
}

/* Issue 15 item 12: card digits never stay in the framer's buffer, after a
 * frame was handed over or when bytes are discarded: an over-long line, an
 * over-long or cut STX frame, a fixed frame resynchronised, a reset. Only
 * the frame being received may be there. */
static size_t residue(const struct mtf_framer *f, size_t partial)
{
    size_t cap, n = 0;
    const uint8_t *b = mtf_buffer(f, &cap);
    for (size_t i = partial; i < cap; i++)
        n += b[i] != 0;
    return n;
}

static void test_no_digits_stay_behind(void **state)
{
    (void)state;
    struct got g = {0};
    struct mtf_framer *f = make(line_conf("\r\n", 8));
    feed_str(f, "0013961168", &g); /* could still be a line: kept */
    assert_int_equal(residue(f, 10), 0);
    feed_str(f, "77", &g); /* over-long now: discarded */
    assert_int_equal(residue(f, 0), 0);
    feed_str(f, "99\r\n12", &g); /* the rest of it, then a partial line */
    assert_int_equal(residue(f, 2), 0);
    feed_str(f, "34\r\n", &g);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.f[0], "1234");
    assert_int_equal(residue(f, 0), 0); /* the frame and its delimiter */
    feed_str(f, "123456789\r", &g);     /* over-long, half a delimiter kept aside */
    mtf_reset(f);
    assert_int_equal(residue(f, 0), 0);
    mtf_free(f);

    f = make(stx_conf(12));
    feed_str(f,
             "\x02"
             "0C000621A5",
             &g); /* cut by the next STX */
    feed_str(f,
             "\x02"
             "0C000621A58E99",
             &g); /* over-long */
    assert_int_equal(residue(f, 0), 0);
    feed_str(f,
             "\x03\x02"
             "0C00",
             &g);
    assert_int_equal(residue(f, 4), 0);
    mtf_reset(f); /* unplugged */
    assert_int_equal(residue(f, 0), 0);
    assert_int_equal(mtf_stats(f)->cut, 1);
    assert_int_equal(mtf_stats(f)->overlong, 1);
    mtf_free(f);

    struct mtf_conf fc = {.mode = MTF_FIXED, .fixed_len = 8, .sync = {'P', 'C'}, .sync_len = 2};
    f = make(fc);
    feed_str(f, "P1234PC1", &g); /* "P1" is no sync: resynchronised at "PC" */
    assert_int_equal(residue(f, 3), 0);
    mtf_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines_basic),
        cmocka_unit_test(test_lines_split_everywhere),
        cmocka_unit_test(test_multibyte_delimiter),
        cmocka_unit_test(test_line_overlong),
        cmocka_unit_test(test_overlong_delimiter_at_edge),
        cmocka_unit_test(test_stxetx),
        cmocka_unit_test(test_stxetx_overlong_and_empty),
        cmocka_unit_test(test_fixed),
        cmocka_unit_test(test_fixed_sync),
        cmocka_unit_test(test_create_rejects),
        cmocka_unit_test(test_binary_noise),
        cmocka_unit_test(test_no_digits_stay_behind),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
