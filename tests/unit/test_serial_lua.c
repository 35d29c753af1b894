/* The serial plugin's Lua decoder path with the agent's real sandbox
 * (agent/decoder.c) behind a fake host: binary frames from a pty, fixed
 * framing with sync, the example decoder plugins/serial/decoders/
 * terabee_evo.lua; a frame with a bad CRC and a broken script give no
 * reading, are counted, and never stop the plugin. */
#include "testutil.h"

#include <errno.h>
#include <pty.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "decoder.h"
#include "testhost.h"

const struct mittari_plugin *mittari_plugin_entry(void);

struct fx {
    struct th t;
    const struct mittari_plugin *p;
    char path[128];
    int master;
    void *conf;
    void *state;
};

static int load(struct mittari_ctx *ctx, const char *path, struct mittari_decoder **out)
{
    struct th *t = (struct th *)ctx;
    return mt_decoder_open(&t->host, ctx, path, NULL, out);
}

/* The host of an agent with decoder_submit (ABI 1.1): the script runs on
 * the decoder's thread; or without it (ABI 1.0): on the loop. */
static int setup_host(void **state, bool submit)
{
    struct fx *f = calloc(1, sizeof(*f));
    int slave;
    f->p = mittari_plugin_entry();
    th_init(&f->t, "entrance", false);
    f->t.quiet = true;
    f->t.host.decoder_load = load;
    f->t.host.decoder_run = mt_decoder_run;
    f->t.host.decoder_free = mt_decoder_free;
    f->t.host.decoder_submit = submit ? mt_decoder_submit : NULL;
    assert_int_equal(openpty(&f->master, &slave, f->path, NULL, NULL), 0);
    close(slave);
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return setup_host(state, true);
}

static int setup_abi10(void **state)
{
    return setup_host(state, false);
}

static int teardown(void **state)
{
    struct fx *f = *state;
    if (f->state) {
        f->p->stop(f->state);
        th_close_all(&f->t);
        f->p->destroy(f->state);
    }
    tu_options_free(f->conf);
    th_free(&f->t);
    close(f->master);
    free(f);
    return 0;
}

/* The config is checked with the decoder file as it is now (the agent
 * compiles it); replace, when given, is written over it afterwards, before
 * create: what a file changed between check and start looks like. */
static int start_replaced(struct fx *f, const char *lua, const char *replace)
{
    char yaml[1024];
    snprintf(yaml, sizeof(yaml),
             "{port: '%s', framing: fixed, frame_length: 11, sync: PC, decoder: lua, lua: '%s'}",
             f->path, lua);
    f->conf = tu_options(f->p->options, f->p->config_size, yaml);
    if (replace) {
        FILE *w = fopen(lua, "w");
        assert_non_null(w);
        fputs(replace, w);
        fclose(w);
    }
    int rc = f->p->create(&f->t.host, (struct mittari_ctx *)&f->t, f->conf, &f->state);
    if (rc) {
        f->state = NULL;
        return rc;
    }
    return f->p->start(f->state);
}

static int start(struct fx *f, const char *lua)
{
    return start_replaced(f, lua, NULL);
}

static uint8_t crc8(const uint8_t *p, size_t n)
{
    uint8_t c = 0;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int b = 0; b < 8; b++)
            c = (uint8_t)(c & 0x80 ? (c << 1) ^ 0x07 : c << 1);
    }
    return c;
}

/* "PC", in minus out (int32), in, out (uint16), CRC-8; big-endian */
static void frame(struct fx *f, unsigned in, unsigned out, bool good)
{
    int32_t diff = (int32_t)in - (int32_t)out;
    uint8_t b[11] = {'P', 'C', (uint8_t)(diff >> 24), (uint8_t)(diff >> 16), (uint8_t)(diff >> 8),
                     (uint8_t)diff, (uint8_t)(in >> 8), (uint8_t)in, (uint8_t)(out >> 8),
                     (uint8_t)out};
    b[10] = crc8(b, 10) ^ (good ? 0 : 0x55);
    assert_int_equal(write(f->master, b, sizeof(b)), 11);
}

static bool have_n(struct th *t, void *arg)
{
    pthread_mutex_lock(&t->lock); /* the decoder's thread emits */
    bool ok = t->nr >= *(size_t *)arg;
    pthread_mutex_unlock(&t->lock);
    return ok;
}

static bool bad_frames(struct th *t, void *arg)
{
    return th_counter(t, NULL, "bad_frames") >= *(uint64_t *)arg;
}

static void test_terabee_frames(void **state)
{
    struct fx *f = *state;
    tu_capture_start(); /* the decoder logs through the agent's log */
    assert_int_equal(start(f, SOURCE_DIR "/plugins/serial/decoders/terabee_evo.lua"), 0);
    frame(f, 10, 7, true);
    assert_int_equal(write(f->master, "\x00\x13noise", 7), 7); /* noise before a frame */
    frame(f, 11, 7, false);                                   /* CRC wrong */
    frame(f, 12, 8, true);
    size_t n = 4;
    uint64_t one = 1;
    assert_true(th_run_until(&f->t, have_n, &n, 5000));
    assert_true(th_run_until(&f->t, bad_frames, &one, 5000));
    th_run_for(&f->t, 50);
    assert_int_equal(f->t.nr, 4);
    assert_string_equal(f->t.r[0].metric, "visitors_in");
    assert_int_equal(f->t.r[0].kind, MITTARI_KIND_CUMULATIVE);
    assert_int_equal(f->t.r[0].counter, 10);
    assert_int_equal(f->t.r[0].bits, 16);
    assert_int_equal(f->t.r[1].counter, 7);
    assert_int_equal(f->t.r[2].counter, 12);
    assert_int_equal(f->t.r[3].counter, 8);
    assert_int_equal(th_counter(&f->t, NULL, "bad_frames"), 1);
    assert_true(th_counter(&f->t, NULL, "skipped_bytes") >= 7);
    /* the script's error is logged with its file and line */
    assert_true(tu_captured("terabee_evo.lua:26: CRC mismatch"));
    tu_capture_stop();
}

static void test_broken_script_refused(void **state)
{
    struct fx *f = *state;
    char *dir = tu_tmpdir();
    char *lua = tu_write(dir, "broken.lua", "function decode(frame, ts) return nil end\n");
    /* a broken file is refused when the configuration is checked ... */
    char err[300];
    assert_int_equal(mt_decoder_check_file(lua, err, sizeof(err)), 0);
    FILE *w = fopen(lua, "w");
    fputs("function decode(frame, ts)\n  return {\nend\n", w);
    fclose(w);
    assert_int_not_equal(mt_decoder_check_file(lua, err, sizeof(err)), 0);
    assert_non_null(strstr(err, "broken.lua:"));
    /* ... and one broken after the check is refused when the plugin loads it */
    free(lua);
    lua = tu_write(dir, "broken.lua", "function decode(frame, ts) return nil end\n");
    assert_int_equal(start_replaced(f, lua, "function decode(frame, ts)\n  return {\nend\n"),
                     MITTARI_ECONFIG);
    assert_true(th_logs_with(&f->t, "broken.lua") >= 1);
    tu_rmtree(dir);
    free(lua);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_terabee_frames, setup, teardown),
        cmocka_unit_test_setup_teardown(test_terabee_frames, setup_abi10, teardown),
        cmocka_unit_test_setup_teardown(test_broken_script_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
