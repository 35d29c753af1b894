/* Issue 8 §7: whatever a plugin's create() refuses, `mittari check` must
 * refuse first. A table of cases per plugin, each run two ways:
 *
 *   - as the agent runs a configuration (mt_config_load: the option table
 *     and the plugin's check(), what both `mittari check` and `mittari run`
 *     do before any instance is created): must be refused, with a message;
 *   - straight into the plugin's create() with the options filled, as if
 *     check had let it through: must be refused too (so the case really is
 *     a create refusal, not a made-up one).
 *
 * Valid cases go through both and are accepted, so a check that refuses
 * everything fails here too. Each plugin is loaded from the build's plugin
 * directory as the agent loads it. To add a plugin's cases, add rows. */
#include "testutil.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfgtree.h"
#include "config.h"
#include "options.h"
#include "plugin.h"
#include "util.h"

enum want { VALID, INVALID };

struct pcase {
    const char *plugin;
    const char *yaml; /* the instance's options, a YAML flow mapping body */
    enum want want;
    const char *why; /* a piece of check's message (INVALID) */
};

#define LUA "LUAFILE" /* replaced by the path of a decoder that compiles */

static const struct pcase cases[] = {
    /* sim */
    {"sim", "rate: 5", VALID, NULL},
    {"sim", "opening_hours: '00:00-24:00'", VALID, NULL},
    {"sim", "opening_hours: '25:99-99:00'", INVALID, "opening_hours"},
    {"sim", "opening_hours: '08:00-07:00'", INVALID, "opening_hours"},
    {"sim", "opening_hours: '08:00-08:00'", INVALID, "opening_hours"},
    {"sim", "opening_hours: '8-20'", INVALID, "opening_hours"},
    {"sim", "opening_hours: '08:00-20:00 '", INVALID, "opening_hours"},
    {"sim", "opening_hours: '08:00-24:30'", INVALID, "opening_hours"},
    {"sim", "opening_hours: '99999999999:00-20:00'", INVALID, "opening_hours"},
    {"sim", "opening_hours: '-1:00-20:00'", INVALID, "opening_hours"},
    /* serial */
    {"serial", "port: /dev/null, values: [{field: IN, metric: visitors_in, kind: cumulative}]",
     VALID, NULL},
    {"serial", "port: /dev/null, decoder: lua, lua: " LUA, VALID, NULL},
    {"serial", "port: /dev/null, delimiter: '', values: [{field: IN, metric: a, kind: gauge}]",
     INVALID, "delimiter"},
    {"serial", "port: /dev/null, delimiter: '\\q', values: [{field: IN, metric: a, kind: gauge}]",
     INVALID, "delimiter"},
    {"serial",
     "port: /dev/null, delimiter: '123456789', values: [{field: IN, metric: a, kind: gauge}]",
     INVALID, "delimiter"},
    {"serial", "port: /dev/null, framing: fixed, values: [{field: IN, metric: a, kind: gauge}]",
     INVALID, "frame_length"},
    {"serial",
     "port: /dev/null, framing: fixed, frame_length: 3, sync: ABCD, values: [{field: IN, "
     "metric: a, kind: gauge}]",
     INVALID, "sync"},
    {"serial",
     "port: /dev/null, framing: fixed, frame_length: 8, sync: ABCDE, values: [{field: IN, "
     "metric: a, kind: gauge}]",
     INVALID, "sync"},
    {"serial",
     "port: /dev/null, framing: stxetx, stx: 7, etx: 7, values: [{field: IN, metric: a, kind: "
     "gauge}]",
     INVALID, "stx and etx"},
    {"serial", "port: /dev/null, decoder: pattern, values: [{field: '1', metric: a, kind: gauge}]",
     INVALID, "needs pattern"},
    {"serial",
     "port: /dev/null, decoder: pattern, pattern: '(', values: [{field: '1', metric: a, kind: "
     "gauge}]",
     INVALID, "pattern"},
    {"serial",
     "port: /dev/null, decoder: pattern, pattern: 'IN=([0-9]+)', values: [{field: '2', "
     "metric: a, kind: gauge}]",
     INVALID, "2"},
    {"serial", "port: /dev/null, decoder: lua", INVALID, "needs lua"},
    {"serial",
     "port: /dev/null, decoder: lua, lua: " LUA ", values: [{field: IN, metric: a, kind: gauge}]",
     INVALID, "values"},
    {"serial", "port: /dev/null, lua: " LUA ", values: [{field: IN, metric: a, kind: gauge}]",
     INVALID, "lua is for decoder"},
    {"serial", "port: /dev/null", INVALID, "values"},
    {"serial", "port: /dev/null, pattern: 'x', values: [{field: IN, metric: a, kind: gauge}]",
     INVALID, "pattern is for"},
    {"serial", "port: /dev/null, command: '\\xZZ', values: [{field: IN, metric: a, kind: gauge}]",
     INVALID, "command"},
    {"serial", "port: /dev/null, values: [{value: '1e300', scale: 1e12, metric: a, kind: gauge}]",
     INVALID, "not a finite number"},
    /* feedback */
    {"feedback", "port: /dev/null", VALID, NULL},
    {"feedback", "port: /dev/null, buttons: [{key: '1', score: 1}, {key: '2', score: 5}]", VALID,
     NULL},
    {"feedback", "port: /dev/null, buttons: [{key: ab, score: 1}]", INVALID, "key"},
    {"feedback", "port: /dev/null, buttons: [{key: '1', score: 1}, {key: '\\x31', score: 2}]",
     INVALID, "twice"},
    {"feedback", "port: /dev/null, backend: evdev, buttons: [{key: KEY_NOPE, score: 1}]", INVALID,
     "key"},
    /* cardreader */
    {"cardreader", "backend: serial, port: /dev/null", VALID, NULL},
    {"cardreader", "backend: hid, evdev: /dev/null", VALID, NULL},
    {"cardreader", "backend: pcsc", VALID, NULL},
    {"cardreader", "backend: serial", INVALID, "needs 'port'"},
    {"cardreader", "backend: hid", INVALID, "needs 'evdev'"},
    {"cardreader", "backend: pcsc, port: /dev/null", INVALID, "only for backend serial"},
    {"cardreader", "backend: serial, port: /dev/null, evdev: /dev/null", INVALID,
     "only for backend hid"},
    {"cardreader", "backend: serial, port: /dev/null, reader: ACS", INVALID,
     "only for backend pcsc"},
    {"cardreader", "backend: pcsc, metric: 'no spaces'", INVALID, "metric"},
    {"cardreader", "backend: pcsc, service: ''", INVALID, "service"},
};

struct fx {
    char *dir;
    char *lua;
    struct mt_registry reg;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    f->dir = tu_tmpdir();
    f->lua = tu_write(f->dir, "dec.lua", "function decode(frame, ts) return nil end\n");
    mt_registry_init(&f->reg, PLUGIN_DIR);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    mt_registry_free(&f->reg);
    tu_rmtree(f->dir);
    free(f->lua);
    free(f->dir);
    free(f);
    return 0;
}

/* The case's YAML with LUAFILE replaced. */
static char *options_of(const struct fx *f, const struct pcase *c)
{
    const char *at = strstr(c->yaml, LUA);
    char *s = NULL;
    if (!at)
        return strdup(c->yaml);
    assert_true(asprintf(&s, "%.*s'%s'%s", (int)(at - c->yaml), c->yaml, f->lua, at + strlen(LUA)) >
                0);
    return s;
}

/* ---- the way `mittari check` and `mittari run` take a configuration ---- */

/* 0 when the agent's loader accepts it; else the problems, one line. */
static int agent_loads(struct fx *f, const char *plugin, const char *opts, char *msg, size_t len)
{
    char text[1024];
    struct mt_config *conf = NULL;
    struct mt_diags d = {0};

    snprintf(text, sizeof(text),
             "agent:\n  site: s\n  data_dir: %s\ninputs:\n  x: {plugin: %s, %s}\n", f->dir, plugin,
             opts);
    char *path = tu_write(f->dir, "c.yaml", text);
    int rc = mt_config_load(&conf, path, PLUGIN_DIR, &f->reg, &d);
    msg[0] = 0;
    size_t o = 0;
    for (size_t i = 0; i < d.n && o < len; i++)
        o += (size_t)snprintf(msg + o, len - o, "%s; ", d.v[i].msg);
    mt_diags_free(&d);
    mt_config_free(conf);
    free(path);
    return rc;
}

/* ---- straight into create() ---- */

struct stub {
    int logs;
    char last[300];
};

static void stub_log(struct mittari_ctx *ctx, int level, const char *fmt, ...)
{
    struct stub *s = (struct stub *)ctx;
    va_list ap;
    (void)level;
    va_start(ap, fmt);
    vsnprintf(s->last, sizeof(s->last), fmt, ap);
    va_end(ap);
    s->logs++;
}

static int64_t stub_now(struct mittari_ctx *ctx)
{
    (void)ctx;
    return 1700000000000000;
}

static const char *stub_name(struct mittari_ctx *ctx)
{
    (void)ctx;
    return "x";
}

static int stub_decoder_load(struct mittari_ctx *ctx, const char *path,
                             struct mittari_decoder **out)
{
    (void)ctx, (void)path;
    *out = (struct mittari_decoder *)1; /* create only stores it */
    return 0;
}

static void stub_decoder_free(struct mittari_decoder *d)
{
    (void)d;
}

static int stub_decoder_run(struct mittari_decoder *d, const void *frame, size_t len, int64_t ts)
{
    (void)d, (void)frame, (void)len, (void)ts;
    return 0;
}

static const struct mittari_host stub_host = {
    .abi_version = MITTARI_ABI_VERSION,
    .size = sizeof(struct mittari_host),
    .log = stub_log,
    .now = stub_now,
    .instance_name = stub_name,
    .decoder_load = stub_decoder_load,
    .decoder_run = stub_decoder_run,
    .decoder_free = stub_decoder_free,
};

/* create()'s answer for the options, filled by the option table only (no
 * check: what create would get if check let the case through). */
static int create_with(const struct mittari_plugin *p, const char *opts, bool *table_refused)
{
    struct mt_arena arena = {0};
    struct mt_cfgdoc doc;
    struct mt_diags d = {0};
    struct mt_pos pos = {"test", 1, 1};
    unsigned char *conf = calloc(1, p->config_size + 16);
    char *text = NULL;
    struct stub s = {0};
    void *state = NULL;
    int rc;

    assert_true(asprintf(&text, "o: {%s}\n", opts) > 0);
    mt_cfgdoc_init(&doc);
    mt_cfg_load_file(&doc, "test", text, &d);
    struct mt_optset os = {p->options, p->config_size, "test", NULL, false, p->name};
    *table_refused = mt_options_apply(&os, conf, mt_node_get(doc.root, "o"), &pos, &arena, &d) > 0;
    rc = *table_refused ? MITTARI_ECONFIG
                        : p->create(&stub_host, (struct mittari_ctx *)&s, conf, &state);
    if (rc == 0)
        p->destroy(state);
    mt_diags_free(&d);
    mt_cfgdoc_free(&doc);
    mt_arena_free(&arena);
    free(text);
    free(conf);
    return rc;
}

static void check_refuses_whatever_create_refuses(void **state)
{
    struct fx *f = *state;
    char msg[2048], err[256];
    int failures = 0;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct pcase *c = &cases[i];
        const struct mt_plugin *p;
        bool table_refused;

        if (mt_registry_get(&f->reg, c->plugin, &p, err, sizeof(err)))
            fail_msg("plugin %s: %s", c->plugin, err);
        char *opts = options_of(f, c);
        int created = create_with(p->desc, opts, &table_refused);
        int loaded = agent_loads(f, c->plugin, opts, msg, sizeof(msg));
        const char *problem = NULL;
        if (c->want == INVALID && table_refused)
            problem = "the option table refuses it already: not a case of this test";
        else if (c->want == VALID && created)
            problem = "create refuses a valid case";
        else if (c->want == VALID && loaded)
            problem = "check refuses a valid case";
        else if (c->want == INVALID && !created)
            problem = "create accepts it: not a case of this test";
        else if (c->want == INVALID && !loaded)
            problem = "check accepts what create refuses";
        else if (c->want == INVALID && !strstr(msg, c->why))
            problem = "check's message does not say why";
        if (problem) {
            print_error("%s {%s}: %s (check: %s)\n", c->plugin, opts, problem, loaded ? msg : "ok");
            failures++;
        }
        free(opts);
    }
    assert_int_equal(failures, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(check_refuses_whatever_create_refuses, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
