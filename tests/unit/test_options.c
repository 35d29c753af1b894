/* options: option tables applied to configuration mappings, secret files,
 * table checks, canonical text, help output; and the util parsers behind
 * them. */
#include "testutil.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cfgtree.h"
#include "options.h"

struct tconf {
    const char *name;
    int64_t count;
    double ratio;
    bool flag;
    int mode;
    int64_t wait_ms;
    uint64_t cap;
    const char *token;
    const char *host;
};

static const char *const modes[] = {"fast", "slow", "auto", NULL};

#define O(f) offsetof(struct tconf, f)
static const struct mittari_option topts[] = {
    {.name = "name", .type = MITTARI_OPT_STRING, .def = "unnamed", .offset = O(name), .help = "A name."},
    {.name = "count", .type = MITTARI_OPT_INT, .def = "5", .min = 1, .max = 100, .offset = O(count), .help = "How many."},
    {.name = "ratio", .type = MITTARI_OPT_DOUBLE, .def = "0.5", .max = 1, .offset = O(ratio), .help = "A share."},
    {.name = "flag", .type = MITTARI_OPT_BOOL, .def = "false", .offset = O(flag), .help = "On or off."},
    {.name = "mode", .type = MITTARI_OPT_ENUM, .def = "auto", .values = modes, .offset = O(mode), .help = "Which way."},
    {.name = "wait", .type = MITTARI_OPT_DURATION, .def = "5s", .min = 100, .max = 60000, .offset = O(wait_ms), .help = "How long."},
    {.name = "cap", .type = MITTARI_OPT_SIZE, .def = "1MiB", .min = 1024, .max = 1073741824.0, .offset = O(cap), .help = "How big."},
    {.name = "token", .type = MITTARI_OPT_STRING, .flags = MITTARI_OPT_SECRET, .offset = O(token), .help = "A secret."},
    {.name = "host", .type = MITTARI_OPT_STRING, .flags = MITTARI_OPT_REQUIRED, .offset = O(host), .help = "Where to."},
    {0},
};
#undef O

static const char *const reserved[] = {"plugin", "enabled", NULL};

struct fx {
    struct mt_cfgdoc doc;
    struct mt_diags d;
    struct mt_arena arena;
    struct tconf c;
    struct mt_optset os;
    char *dir;
    int nfile;
};

static int setup(void **s)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    mt_cfgdoc_init(&f->doc);
    f->os = (struct mt_optset){topts, sizeof(struct tconf), "test", reserved, false, NULL};
    f->dir = tu_tmpdir();
    assert_non_null(f->dir);
    *s = f;
    return 0;
}

static int teardown(void **s)
{
    struct fx *f = *s;
    mt_cfgdoc_free(&f->doc);
    mt_diags_free(&f->d);
    mt_arena_free(&f->arena);
    tu_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static const struct mt_pos owner = {"owner.yaml", 9, 2};

/* Parses text (a mapping under key "opts") into a fresh document and
 * applies the test table. */
static int apply(struct fx *f, const char *text)
{
    char name[32];
    mt_cfgdoc_free(&f->doc);
    mt_cfgdoc_init(&f->doc);
    snprintf(name, sizeof(name), "t%d.yaml", f->nfile++);
    size_t before = f->d.n;
    assert_int_equal(mt_cfg_load_file(&f->doc, name, text, &f->d), 0);
    assert_int_equal(f->d.n, before);
    memset(&f->c, 0, sizeof(f->c));
    return mt_options_apply(&f->os, &f->c, mt_node_get(f->doc.root, "opts"), &owner, &f->arena,
                            &f->d);
}

static void expect_diag(const struct mt_diags *d, size_t i, int line, int col, const char *needle)
{
    assert_true(i < d->n);
    if (!strstr(d->v[i].msg, needle))
        fail_msg("diag %zu is '%s', expected it to contain '%s'", i, d->v[i].msg, needle);
    assert_int_equal(d->v[i].pos.line, line);
    assert_int_equal(d->v[i].pos.col, col);
}

static void expect_hint(const struct mt_diags *d, size_t i, const char *needle)
{
    assert_true(i < d->n);
    if (!d->v[i].hint || !strstr(d->v[i].hint, needle))
        fail_msg("hint %zu is '%s', expected it to contain '%s'", i,
                 d->v[i].hint ? d->v[i].hint : "(none)", needle);
}

/* Writes a secret file with mode; returns its path. */
static char *secret_file(struct fx *f, const char *name, const char *text, mode_t mode)
{
    char *p = tu_write(f->dir, name, text);
    assert_int_equal(chmod(p, mode), 0);
    return p;
}

/* ---- mt_options_apply ---- */

static void defaults_fill_unset_options(void **s)
{
    struct fx *f = *s;
    assert_int_equal(apply(f, "opts:\n  host: h1\n"), 0);
    assert_string_equal(f->c.host, "h1");
    assert_string_equal(f->c.name, "unnamed");
    assert_int_equal(f->c.count, 5);
    assert_true(f->c.ratio == 0.5);
    assert_false(f->c.flag);
    assert_int_equal(f->c.mode, 2);
    assert_int_equal(f->c.wait_ms, 5000);
    assert_int_equal(f->c.cap, 1048576);
    assert_null(f->c.token); /* no default: stays NULL */
}

static void every_type_is_parsed(void **s)
{
    struct fx *f = *s;
    const char *text = "opts:\n"
                       "  name: \"  spaced  \"\n"
                       "  count: 100\n"
                       "  ratio: 0.25\n"
                       "  flag: yes\n"
                       "  mode: slow\n"
                       "  wait: 1.5s\n"
                       "  cap: 64KiB\n"
                       "  token: abc\n"
                       "  host: example.org\n"
                       "  plugin: ignored\n";
    assert_int_equal(apply(f, text), 0);
    assert_string_equal(f->c.name, "  spaced  ");
    assert_int_equal(f->c.count, 100);
    assert_true(f->c.ratio == 0.25);
    assert_true(f->c.flag);
    assert_int_equal(f->c.mode, 1);
    assert_int_equal(f->c.wait_ms, 1500);
    assert_int_equal(f->c.cap, 65536);
    assert_string_equal(f->c.token, "abc");
    assert_string_equal(f->c.host, "example.org");
}

static void strings_live_in_the_arena(void **s)
{
    struct fx *f = *s;
    assert_int_equal(apply(f, "opts: {host: kept}\n"), 0);
    /* the document may go away; the config struct's strings stay */
    mt_cfgdoc_free(&f->doc);
    mt_cfgdoc_init(&f->doc);
    assert_string_equal(f->c.host, "kept");
}

static void null_map_gives_defaults_only(void **s)
{
    struct fx *f = *s;
    struct mittari_option t[] = {topts[0], topts[1], {0}};
    struct mt_optset os = {t, sizeof(struct tconf), "test", NULL, false, NULL};
    assert_int_equal(mt_options_apply(&os, &f->c, NULL, &owner, &f->arena, &f->d), 0);
    assert_string_equal(f->c.name, "unnamed");
    assert_int_equal(f->c.count, 5);
}

static void empty_section_gives_defaults(void **s)
{
    struct fx *f = *s;
    /* "opts:" with nothing under it: the required option is missing */
    assert_int_equal(apply(f, "opts:\n"), 1);
    assert_int_equal(f->c.count, 5);
    expect_diag(&f->d, 0, 9, 2, "test: missing required option 'host'");
}

static void required_option_missing(void **s)
{
    struct fx *f = *s;
    assert_int_equal(apply(f, "opts:\n  name: x\n"), 1);
    assert_int_equal(f->d.n, 1);
    expect_diag(&f->d, 0, 9, 2, "test: missing required option 'host'");
    assert_string_equal(f->d.v[0].pos.file, "owner.yaml");
    expect_hint(&f->d, 0, "Where to.");
    assert_null(strstr(f->d.v[0].msg, "_file"));
}

static void required_secret_mentions_file_form(void **s)
{
    struct fx *f = *s;
    struct mittari_option t[] = {
        {.name = "key", .type = MITTARI_OPT_STRING, .flags = MITTARI_OPT_REQUIRED | MITTARI_OPT_SECRET, .offset = 0, .help = "k"},
        {0},
    };
    f->os.table = t;
    assert_int_equal(apply(f, "opts: {}\n"), 1);
    expect_diag(&f->d, 0, 9, 2, "missing required option 'key' (or its _file form)");
}

static void int_out_of_range(void **s)
{
    struct fx *f = *s;
    assert_int_equal(apply(f, "opts:\n  host: h\n  count: 101\n"), 1);
    expect_diag(&f->d, 0, 3, 10, "option 'count' of test: 101 is out of range (1 to 100)");
    assert_int_equal(apply(f, "opts:\n  host: h\n  count: 0\n"), 1);
    expect_diag(&f->d, 1, 3, 10, "0 is out of range (1 to 100)");
    /* the bounds themselves are allowed */
    assert_int_equal(apply(f, "opts:\n  host: h\n  count: 1\n"), 0);
    assert_int_equal(f->c.count, 1);
}

static void int_not_a_number(void **s)
{
    struct fx *f = *s;
    assert_int_equal(apply(f, "opts:\n  host: h\n  count: many\n"), 1);
    expect_diag(&f->d, 0, 3, 10, "option 'count' of test: 'many' is not a whole number such as 10");
    assert_int_equal(apply(f, "opts:\n  host: h\n  count: 2.5\n"), 1);
    expect_diag(&f->d, 1, 3, 10, "'2.5' is not a whole number");
    /* issue 9: too large for 64 bits is out of range, not "not a number" */
    assert_int_equal(apply(f, "opts:\n  host: h\n  count: 18446744073709551616\n"), 1);
    expect_diag(&f->d, 2, 3, 10, "18446744073709551616 is out of range (1 to 100)");
    assert_int_equal(apply(f, "opts:\n  host: h\n  count: -99999999999999999999\n"), 1);
    expect_diag(&f->d, 3, 3, 10, "-99999999999999999999 is out of range (1 to 100)");
}

static void double_range_and_syntax(void **s)
{
    struct fx *f = *s;
    assert_int_equal(apply(f, "opts:\n  host: h\n  ratio: 1.5\n"), 1);
    expect_diag(&f->d, 0, 3, 10, "option 'ratio' of test: 1.5 is out of range (0 to 1)");
    assert_int_equal(apply(f, "opts:\n  host: h\n  ratio: half\n"), 1);
    expect_diag(&f->d, 1, 3, 10, "'half' is not a number such as 2.5");
    assert_int_equal(apply(f, "opts:\n  host: h\n  ratio: .nan\n"), 1);
    expect_diag(&f->d, 2, 3, 10, "'.nan' is not a number");
}

static void bool_invalid(void **s)
{
    struct fx *f = *s;
    assert_int_equal(apply(f, "opts:\n  host: h\n  flag: maybe\n"), 1);
    expect_diag(&f->d, 0, 3, 9, "option 'flag' of test: 'maybe' is not true or false");
}

static void duration_and_size_errors(void **s)
{
    struct fx *f = *s;
    assert_int_equal(apply(f, "opts:\n  host: h\n  wait: 5 fortnights\n"), 1);
    expect_diag(&f->d, 0, 3, 9, "option 'wait' of test: '5 fortnights' is not a duration");
    assert_int_equal(apply(f, "opts:\n  host: h\n  wait: 2m\n"), 1);
    expect_diag(&f->d, 1, 3, 9, "2m is out of range (100ms to 1m)");
    assert_int_equal(apply(f, "opts:\n  host: h\n  cap: 10 parsecs\n"), 1);
    expect_diag(&f->d, 2, 3, 8, "option 'cap' of test: '10 parsecs' is not a size");
    assert_int_equal(apply(f, "opts:\n  host: h\n  cap: 2GiB\n"), 1);
    expect_diag(&f->d, 3, 3, 8, "2GiB is out of range (1024 to 1073741824)");
    assert_int_equal(apply(f, "opts:\n  host: h\n  cap: 18446744073709551616\n"), 1);
    expect_diag(&f->d, 4, 3, 8, "18446744073709551616 is out of range (1024 to 1073741824)");
    assert_int_equal(apply(f, "opts:\n  host: h\n  wait: 99999999999999999999d\n"), 1);
    expect_diag(&f->d, 5, 3, 9, "99999999999999999999d is out of range (100ms to 1m)");
}

/* Out of range for the type itself, with no declared range. */
static void out_of_range_without_a_range(void **s)
{
    (void)s;
    struct big {
        int64_t n;
        uint64_t sz;
    } b = {0};
    static const struct mittari_option t[] = {
        {.name = "n", .type = MITTARI_OPT_INT, .offset = offsetof(struct big, n), .help = "n"},
        {.name = "sz", .type = MITTARI_OPT_SIZE, .offset = offsetof(struct big, sz), .help = "s"},
        {0},
    };
    struct mt_cfgdoc doc;
    struct mt_diags d = {0};
    struct mt_arena a = {0};
    mt_cfgdoc_init(&doc);
    assert_int_equal(mt_cfg_load_file(&doc, "b.yaml",
                                      "o: {n: 9223372036854775808, sz: 18446744073709551616}\n",
                                      &d),
                     0);
    struct mt_optset os = {t, sizeof(b), "big", NULL, false, NULL};
    assert_int_equal(mt_options_apply(&os, &b, mt_node_get(doc.root, "o"), NULL, &a, &d), 2);
    expect_diag(&d, 0, 1, 8, "option 'n' of big: 9223372036854775808 is out of range (too large)");
    expect_diag(&d, 1, 1, 33,
                "option 'sz' of big: 18446744073709551616 is out of range (too large)");
    mt_diags_free(&d);
    mt_arena_free(&a);
    mt_cfgdoc_free(&doc);
}

/* A device path given to a number option: the hint names the option of
 * the same table that takes device paths (modbus: 'port' is the TCP port,
 * the path goes in 'serial'). */
static void device_path_in_a_number_names_the_path_option(void **s)
{
    (void)s;
    struct dev {
        int64_t port;
        const char *serial;
    } v = {0};
    static const struct mittari_option t[] = {
        {.name = "port",
         .type = MITTARI_OPT_INT,
         .def = "502",
         .min = 1,
         .max = 65535,
         .offset = offsetof(struct dev, port),
         .help = "TCP port."},
        {.name = "serial",
         .type = MITTARI_OPT_STRING,
         .offset = offsetof(struct dev, serial),
         .help = "Serial device (/dev/serial/by-id/...)."},
        {0},
    };
    struct mt_cfgdoc doc;
    struct mt_diags d = {0};
    struct mt_arena a = {0};
    mt_cfgdoc_init(&doc);
    assert_int_equal(
        mt_cfg_load_file(&doc, "p.yaml", "o: {port: /dev/ttyUSB0}\no2: {port: x}\n", &d), 0);
    struct mt_optset os = {t, sizeof(v), "dev", NULL, false, "modbus"};
    assert_int_equal(mt_options_apply(&os, &v, mt_node_get(doc.root, "o"), NULL, &a, &d), 1);
    expect_diag(&d, 0, 1, 11, "'/dev/ttyUSB0' is not a whole number");
    expect_hint(&d, 0, "a device path goes in 'serial' ('port' takes a whole number such as 10)");
    /* not a path: no such hint */
    assert_int_equal(mt_options_apply(&os, &v, mt_node_get(doc.root, "o2"), NULL, &a, &d), 1);
    assert_null(d.v[1].hint);
    mt_diags_free(&d);
    mt_arena_free(&a);
    mt_cfgdoc_free(&doc);
}

static void enum_error_suggests_the_closest(void **s)
{
    struct fx *f = *s;
    assert_int_equal(apply(f, "opts:\n  host: h\n  mode: fsat\n"), 1);
    expect_diag(&f->d, 0, 3, 9, "option 'mode' of test: 'fsat' is not one of: fast, slow, auto");
    expect_hint(&f->d, 0, "did you mean 'fast'?");
    assert_int_equal(apply(f, "opts:\n  host: h\n  mode: quantum\n"), 1);
    expect_diag(&f->d, 1, 3, 9, "'quantum' is not one of: fast, slow, auto");
    assert_null(f->d.v[1].hint);
}

static void unknown_key_suggests_the_closest(void **s)
{
    struct fx *f = *s;
    assert_int_equal(apply(f, "opts:\n  host: h\n  cuont: 3\n"), 1);
    expect_diag(&f->d, 0, 3, 3, "unknown option 'cuont' for test");
    expect_hint(&f->d, 0, "did you mean 'count'?");
    assert_int_equal(f->c.count, 5); /* the default still applies */
    assert_int_equal(apply(f, "opts:\n  host: h\n  xyzzyplugh: 3\n"), 1);
    expect_diag(&f->d, 1, 3, 3, "unknown option 'xyzzyplugh' for test");
    expect_hint(&f->d, 1, "'mittari plugins' lists the options");
    /* a table with a name points at its own listing */
    f->os.table_name = "sim";
    assert_int_equal(apply(f, "opts:\n  host: h\n  xyzzyplugh: 3\n"), 1);
    expect_hint(&f->d, 2, "'mittari plugins sim' lists its options");
    /* issue 9: a key that ends in one of the table's keys */
    assert_int_equal(apply(f, "opts:\n  host: h\n  max_count: 3\n"), 1);
    expect_hint(&f->d, 3, "did you mean 'count'?");
}

static void reserved_keys_are_skipped_and_suggested(void **s)
{
    struct fx *f = *s;
    assert_int_equal(apply(f, "opts:\n  host: h\n  plugin: x\n  enabled: 7\n"), 0);
    assert_int_equal(apply(f, "opts:\n  host: h\n  plugn: x\n"), 1);
    expect_diag(&f->d, 0, 3, 3, "unknown option 'plugn'");
    expect_hint(&f->d, 0, "did you mean 'plugin'?");
}

static void quiet_unknown_reports_no_unknown_keys(void **s)
{
    struct fx *f = *s;
    f->os.quiet_unknown = true;
    assert_int_equal(apply(f, "opts:\n  host: h\n  cuont: 3\n  count: 7\n"), 0);
    assert_int_equal(f->c.count, 7);
    /* but the values of its own keys are still checked */
    assert_int_equal(apply(f, "opts:\n  host: h\n  count: 700\n"), 1);
    expect_diag(&f->d, 0, 3, 10, "out of range");
}

static void non_scalar_value_is_refused(void **s)
{
    struct fx *f = *s;
    assert_int_equal(apply(f, "opts:\n  host: h\n  count: [1, 2]\n"), 1);
    expect_diag(&f->d, 0, 3, 10, "option 'count' of test expects a single value, found a list");
    expect_hint(&f->d, 0, "a whole number such as 10");
    assert_int_equal(f->c.count, 5);
    assert_int_equal(apply(f, "opts:\n  host: h\n  name: {a: 1}\n"), 1);
    expect_diag(&f->d, 1, 3, 9, "option 'name' of test expects a single value, found a mapping");
    assert_int_equal(apply(f, "opts:\n  host:\n"), 2);
    expect_diag(&f->d, 2, 2, 8, "option 'host' of test expects a single value, found nothing");
}

static void options_must_be_a_mapping(void **s)
{
    struct fx *f = *s;
    assert_int_equal(apply(f, "opts:\n  - host\n"), 1);
    assert_int_equal(f->d.n, 1);
    expect_diag(&f->d, 0, 2, 3, "test: expected a mapping of options, found a list");
}

static void secret_from_file(void **s)
{
    struct fx *f = *s;
    char *p = secret_file(f, "tok", "s3cret value\r\n\n", 0600);
    char text[600];
    snprintf(text, sizeof(text), "opts:\n  host: h\n  token_file: %s\n", p);
    assert_int_equal(apply(f, text), 0);
    assert_string_equal(f->c.token, "s3cret value");
    free(p);
}

static int apply_file(struct fx *f, const char *name, const char *text)
{
    char *path = tu_write(f->dir, name, text);
    mt_cfgdoc_free(&f->doc);
    mt_cfgdoc_init(&f->doc);
    assert_int_equal(mt_cfg_load_file(&f->doc, path, NULL, &f->d), 0);
    free(path);
    memset(&f->c, 0, sizeof(f->c));
    return mt_options_apply(&f->os, &f->c, mt_node_get(f->doc.root, "opts"), &owner, &f->arena,
                            &f->d);
}

static void secret_relative_path_is_from_the_config_file(void **s)
{
    struct fx *f = *s;
    char cwd[4096];
    free(secret_file(f, "tok", "relative s3cret\n", 0600));
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir("/"), 0); /* not where the secret is */
    int rc = apply_file(f, "c.yaml", "opts:\n  host: h\n  token_file: tok\n");
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(rc, 0);
    assert_string_equal(f->c.token, "relative s3cret");
}

static void secret_symlink_is_followed_and_its_target_checked(void **s)
{
    struct fx *f = *s;
    char *ok = secret_file(f, "real", "via link\n", 0600);
    char *open_ = secret_file(f, "open", "world readable\n", 0644);
    char *l1 = tu_path(f->dir, "link-ok"), *l2 = tu_path(f->dir, "link-open");
    assert_int_equal(symlink(ok, l1), 0);
    assert_int_equal(symlink(open_, l2), 0);
    assert_int_equal(apply_file(f, "a.yaml", "opts:\n  host: h\n  token_file: link-ok\n"), 0);
    assert_string_equal(f->c.token, "via link");
    assert_int_equal(apply_file(f, "b.yaml", "opts:\n  host: h\n  token_file: link-open\n"), 1);
    expect_diag(&f->d, 0, 3, 15, "is readable by group or others (mode 0644)");
    free(ok);
    free(open_);
    free(l1);
    free(l2);
}

static void canonical_holds_no_secret(void **s)
{
    struct fx *f = *s;
    struct mt_buf a = {0}, b = {0};
    assert_int_equal(apply(f, "opts: {host: h, token: hunter2hunter2}\n"), 0);
    assert_int_equal(mt_options_canonical(topts, &f->c, &a), 0);
    assert_int_equal(apply(f, "opts: {host: h, token: hunter2hunter3}\n"), 0);
    assert_int_equal(mt_options_canonical(topts, &f->c, &b), 0);
    assert_null(strstr(mt_buf_cstr(&a), "hunter2"));
    assert_null(strstr(mt_buf_cstr(&b), "hunter2"));
    assert_string_not_equal(mt_buf_cstr(&a), mt_buf_cstr(&b)); /* a changed secret still shows */
    mt_buf_free(&a);
    mt_buf_free(&b);
}

/* MITTARI_OPT_LUA_FILE: the plugin gets the path resolved from the config
 * file's directory, and a file that does not compile is refused now, at
 * its line in the configuration. */
static void lua_file_is_resolved_and_compiled(void **s)
{
    struct fx *f = *s;
    struct lconf {
        const char *lua;
    };
    static const struct mittari_option lopts[] = {
        {.name = "lua", .type = MITTARI_OPT_STRING, .flags = MITTARI_OPT_LUA_FILE,
         .offset = offsetof(struct lconf, lua), .help = "decoder"},
        {0},
    };
    struct mt_optset os = {lopts, sizeof(struct lconf), "test", NULL, false, NULL};
    struct lconf c = {0};
    char cwd[4096];

    free(tu_write(f->dir, "good.lua", "function decode(frame, ts) return nil end\n"));
    free(tu_write(f->dir, "bad.lua", "function decode(frame, ts)\n  return {\nend\n"));
    free(tu_write(f->dir, "none.lua", "x = 1\n"));
    char *cfg = tu_write(f->dir, "c.yaml", "a: {lua: good.lua}\nb: {lua: bad.lua}\nc: {lua: none.lua}\n");
    assert_int_equal(mt_cfg_load_file(&f->doc, cfg, NULL, &f->d), 0);
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir("/"), 0); /* not where the files are */
    int ra = mt_options_apply(&os, &c, mt_node_get(f->doc.root, "a"), &owner, &f->arena, &f->d);
    char want[4200];
    snprintf(want, sizeof(want), "%s/good.lua", f->dir);
    assert_int_equal(ra, 0);
    assert_string_equal(c.lua, want);
    int rb = mt_options_apply(&os, &c, mt_node_get(f->doc.root, "b"), &owner, &f->arena, &f->d);
    int rc = mt_options_apply(&os, &c, mt_node_get(f->doc.root, "c"), &owner, &f->arena, &f->d);
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(rb, 1);
    assert_int_equal(rc, 1);
    expect_diag(&f->d, 0, 2, 10, "bad.lua:3:");
    assert_non_null(strstr(f->d.v[1].msg, "decode"));
    free(cfg);
}

static void secret_file_readable_by_others_is_refused(void **s)
{
    struct fx *f = *s;
    char *p = secret_file(f, "tok", "s3cret\n", 0644);
    char text[600], want[600];
    snprintf(text, sizeof(text), "opts:\n  host: h\n  token_file: %s\n", p);
    assert_int_equal(apply(f, text), 1);
    snprintf(want, sizeof(want), "secret file %s is readable by group or others (mode 0644)", p);
    expect_diag(&f->d, 0, 3, 15, want);
    snprintf(want, sizeof(want), "chmod 600 %s", p);
    expect_hint(&f->d, 0, want);
    assert_null(f->c.token);
    assert_null(strstr(f->d.v[0].msg, "s3cret"));
    free(p);

    p = secret_file(f, "tok2", "s3cret\n", 0640);
    snprintf(text, sizeof(text), "opts:\n  host: h\n  token_file: %s\n", p);
    assert_int_equal(apply(f, text), 1);
    expect_diag(&f->d, 1, 3, 15, "(mode 0640)");
    free(p);
}

static void secret_set_twice_is_refused(void **s)
{
    struct fx *f = *s;
    char *p = secret_file(f, "tok", "s3cret\n", 0600);
    char text[600];
    snprintf(text, sizeof(text), "opts:\n  host: h\n  token: inline\n  token_file: %s\n", p);
    assert_int_equal(apply(f, text), 1);
    expect_diag(&f->d, 0, 4, 3, "option 'token' is set both directly and through token_file");
    expect_hint(&f->d, 0, "keep one of them");
    /* the other order */
    snprintf(text, sizeof(text), "opts:\n  host: h\n  token_file: %s\n  token: inline\n", p);
    assert_int_equal(apply(f, text), 1);
    expect_diag(&f->d, 1, 4, 3, "option 'token' is set both directly and through token_file");
    free(p);
}

static void secret_file_missing(void **s)
{
    struct fx *f = *s;
    char *p = tu_path(f->dir, "absent");
    char text[600], want[600];
    snprintf(text, sizeof(text), "opts:\n  host: h\n  token_file: %s\n", p);
    assert_int_equal(apply(f, text), 1);
    snprintf(want, sizeof(want), "cannot read secret file %s: No such file or directory", p);
    expect_diag(&f->d, 0, 3, 15, want);
    free(p);
}

static void secret_file_empty(void **s)
{
    struct fx *f = *s;
    char *p = secret_file(f, "empty", "\n", 0600);
    char text[600], want[600];
    snprintf(text, sizeof(text), "opts:\n  host: h\n  token_file: %s\n", p);
    assert_int_equal(apply(f, text), 1);
    snprintf(want, sizeof(want), "secret file %s is empty", p);
    expect_diag(&f->d, 0, 3, 15, want);
    free(p);
}

static void secret_file_must_be_regular(void **s)
{
    struct fx *f = *s;
    char text[600];
    snprintf(text, sizeof(text), "opts:\n  host: h\n  token_file: %s\n", f->dir);
    assert_int_equal(apply(f, text), 1);
    expect_diag(&f->d, 0, 3, 15, "is not a regular file");
}

static void file_form_only_for_secret_options(void **s)
{
    struct fx *f = *s;
    assert_int_equal(apply(f, "opts:\n  host: h\n  name_file: /etc/hostname\n"), 1);
    expect_diag(&f->d, 0, 3, 3, "unknown option 'name_file' for test");
    assert_string_equal(f->c.name, "unnamed");
}

static void all_problems_are_collected(void **s)
{
    struct fx *f = *s;
    assert_int_equal(apply(f, "opts:\n  count: x\n  ratio: 9\n  bogus: 1\n"), 4);
    expect_diag(&f->d, 0, 2, 10, "'count'");
    expect_diag(&f->d, 1, 3, 10, "'ratio'");
    expect_diag(&f->d, 2, 4, 3, "'bogus'");
    expect_diag(&f->d, 3, 9, 2, "'host'");
}

/* ---- mt_options_check_table ---- */

static int check(const struct mittari_option *t, size_t size, char *err)
{
    err[0] = 0;
    return mt_options_check_table(t, size, err, 256);
}

static void check_table_accepts_a_good_table(void **s)
{
    (void)s;
    char err[256];
    assert_int_equal(check(topts, sizeof(struct tconf), err), 0);
    assert_int_equal(check(NULL, 0, err), 0);
    struct mittari_option empty[] = {{0}};
    assert_int_equal(check(empty, 0, err), 0);
}

static void check_table_bad_offset(void **s)
{
    (void)s;
    char err[256];
    struct mittari_option t[] = {
        {.name = "x", .type = MITTARI_OPT_INT, .offset = 4, .help = "x"},
        {0},
    };
    /* 4 + 8 bytes do not fit in 8 */
    assert_int_equal(check(t, 8, err), -EINVAL);
    assert_string_equal(err, "option 'x' lies outside the config struct");
    assert_int_equal(check(t, 12, err), 0);
    /* an offset so large that offset + size wraps around */
    t[0].offset = SIZE_MAX - 3;
    assert_int_equal(check(t, 64, err), -EINVAL);
    assert_string_equal(err, "option 'x' lies outside the config struct");
}

static void check_table_duplicate_name(void **s)
{
    (void)s;
    char err[256];
    struct mittari_option t[] = {
        {.name = "x", .type = MITTARI_OPT_INT, .offset = 0, .help = "x"},
        {.name = "y", .type = MITTARI_OPT_INT, .offset = 8, .help = "y"},
        {.name = "x", .type = MITTARI_OPT_BOOL, .offset = 16, .help = "x again"},
        {0},
    };
    assert_int_equal(check(t, 24, err), -EINVAL);
    assert_string_equal(err, "option 'x' is declared twice");
}

static void check_table_enum_without_values(void **s)
{
    (void)s;
    char err[256];
    static const char *const none[] = {NULL};
    struct mittari_option t[] = {
        {.name = "e", .type = MITTARI_OPT_ENUM, .offset = 0, .help = "e"},
        {0},
    };
    assert_int_equal(check(t, sizeof(int), err), -EINVAL);
    assert_string_equal(err, "choice option 'e' has no values");
    t[0].values = none;
    assert_int_equal(check(t, sizeof(int), err), -EINVAL);
    assert_string_equal(err, "choice option 'e' has no values");
}

static void check_table_secret_must_be_string(void **s)
{
    (void)s;
    char err[256];
    struct mittari_option t[] = {
        {.name = "pin", .type = MITTARI_OPT_INT, .flags = MITTARI_OPT_SECRET, .offset = 0, .help = "p"},
        {0},
    };
    assert_int_equal(check(t, 8, err), -EINVAL);
    assert_string_equal(err, "secret option 'pin' must be a string");
}

static void check_table_bad_defaults(void **s)
{
    (void)s;
    char err[256];
    struct mittari_option t[] = {
        {.name = "n", .type = MITTARI_OPT_INT, .def = "ten", .offset = 0, .help = "n"},
        {0},
    };
    assert_int_equal(check(t, 8, err), -EINVAL);
    assert_string_equal(err, "default of option 'n' is invalid: 'ten' is not a whole number such "
                             "as 10");
    t[0].def = "50";
    t[0].min = 1;
    t[0].max = 10;
    assert_int_equal(check(t, 8, err), -EINVAL);
    assert_string_equal(err, "default of option 'n' is invalid: 50 is out of range (1 to 10)");
    t[0].def = "10";
    assert_int_equal(check(t, 8, err), 0);

    struct mittari_option e[] = {
        {.name = "m", .type = MITTARI_OPT_ENUM, .def = "medium", .values = modes, .offset = 0, .help = "m"},
        {0},
    };
    assert_int_equal(check(e, sizeof(int), err), -EINVAL);
    assert_non_null(strstr(err, "default of option 'm' is invalid: 'medium' is not one of"));
}

static void check_table_list_needs_a_sub_table(void **s)
{
    (void)s;
    char err[256];
    struct item {
        int64_t x;
    };
    static const struct mittari_option sub_bad[] = {
        {.name = "x", .type = MITTARI_OPT_INT, .offset = 64, .help = "x"},
        {0},
    };
    struct mittari_option t[] = {
        {.name = "items", .type = MITTARI_OPT_LIST, .offset = 0, .help = "l"},
        {0},
    };
    assert_int_equal(check(t, 64, err), -EINVAL);
    assert_non_null(strstr(err, "list option 'items' needs sub and sub_size"));
    t[0].sub = sub_bad;
    t[0].sub_size = sizeof(struct item);
    assert_int_equal(check(t, 64, err), -EINVAL);
    assert_non_null(strstr(err, "list option 'items': option 'x' lies outside"));
}

static void check_table_unknown_type_and_bad_name(void **s)
{
    (void)s;
    char err[256];
    struct mittari_option t[] = {
        {.name = "t", .type = 42, .help = "t"},
        {0},
    };
    assert_int_equal(check(t, 64, err), -EINVAL);
    assert_string_equal(err, "option 't' has unknown type 42");
    struct mittari_option n[] = {
        {.name = "", .type = MITTARI_OPT_INT, .help = "n"},
        {0},
    };
    assert_int_equal(check(n, 64, err), -EINVAL);
    assert_non_null(strstr(err, "is empty or too long"));
}

/* ---- mt_options_canonical ---- */

static char *canonical_of(struct fx *f, const char *text)
{
    struct mt_buf b = {0};
    apply(f, text);
    assert_int_equal(mt_options_canonical(topts, &f->c, &b), 0);
    char *r = strdup(mt_buf_cstr(&b));
    mt_buf_free(&b);
    return r;
}

static void canonical_text_lists_every_option(void **s)
{
    struct fx *f = *s;
    char *c = canonical_of(f, "opts: {host: h, flag: on}\n");
    assert_string_equal(c, "name=unnamed\ncount=5\nratio=0.5\nflag=true\nmode=2\nwait=5000\n"
                           "cap=1048576\ntoken=\x01(unset)\nhost=h\n");
    free(c);
}

static void canonical_equal_for_equal_settings(void **s)
{
    struct fx *f = *s;
    /* written differently, meaning the same */
    char *a = canonical_of(f, "opts: {host: h, wait: 5s, cap: 1MiB, count: 5}\n");
    char *b = canonical_of(f, "opts: {count: \"5\", host: h, wait: 5000ms, cap: 1024KiB}\n");
    assert_string_equal(a, b);
    free(a);
    free(b);
}

static void canonical_differs_when_an_option_changes(void **s)
{
    struct fx *f = *s;
    char *base = canonical_of(f, "opts: {host: h}\n");
    const char *changed[] = {
        "opts: {host: h2}\n",
        "opts: {host: h, count: 6}\n",
        "opts: {host: h, ratio: 0.50000001}\n",
        "opts: {host: h, flag: true}\n",
        "opts: {host: h, mode: fast}\n",
        "opts: {host: h, wait: 5001ms}\n",
        "opts: {host: h, cap: 1048577}\n",
        "opts: {host: h, token: \"\"}\n",
    };
    for (size_t i = 0; i < MT_ARRAY_SIZE(changed); i++) {
        char *c = canonical_of(f, changed[i]);
        if (strcmp(base, c) == 0)
            fail_msg("'%s' gave the same canonical text as the defaults", changed[i]);
        free(c);
    }
    free(base);
}

/* ---- mt_options_print ---- */

static char *printed(bool markdown)
{
    char *out = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&out, &len);
    mt_options_print(m, topts, markdown);
    fclose(m);
    return out;
}

static void expect_in(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        fail_msg("expected '%s' in:\n%s", needle, hay);
}

static void print_text_lists_names_and_defaults(void **s)
{
    (void)s;
    char *t = printed(false);
    for (const struct mittari_option *o = topts; o->name; o++) {
        char line[200];
        snprintf(line, sizeof(line), "  %-20s %-9s", o->name, mt_opt_type_name(o->type));
        expect_in(t, line);
        expect_in(t, o->help);
    }
    expect_in(t, "count                integer   default 5; 1 to 100\n");
    expect_in(t, "mode                 choice    default auto; one of: fast, slow, auto\n");
    expect_in(t, "wait                 duration  default 5s; 100ms to 1m\n");
    expect_in(t, "host                 string    required\n");
    expect_in(t, "secret (or token_file: PATH, mode 0600)");
    free(t);
}

static void print_markdown_table(void **s)
{
    (void)s;
    char *t = printed(true);
    assert_int_equal(strncmp(t,
                             "| option | type | default | allowed | description |\n"
                             "|---|---|---|---|---|\n",
                             strlen("| option | type | default | allowed | description |\n"
                                    "|---|---|---|---|---|\n")),
                     0);
    expect_in(t, "| `count` | integer | `5` | 1 to 100 | How many. |\n");
    expect_in(t, "| `mode` | choice | `auto` | one of: fast, slow, auto | Which way. |\n");
    expect_in(t, "| `token` or `token_file` | string |  |  | A secret. |\n");
    expect_in(t, "| `host` | string | required |  | Where to. |\n");
    free(t);
}

static void type_names(void **s)
{
    (void)s;
    assert_string_equal(mt_opt_type_name(MITTARI_OPT_SIZE), "size");
    assert_string_equal(mt_opt_type_name(MITTARI_OPT_ENUM), "choice");
    assert_string_equal(mt_opt_type_name(0), "?");
}

/* ---- util parsers ---- */

static void parse_durations(void **s)
{
    (void)s;
    static const struct {
        const char *in;
        int64_t ms;
    } ok[] = {
        {"250ms", 250},    {"5s", 5000},          {"2m", 120000},
        {"2min", 120000},  {"1h", 3600000},       {"7d", 604800000},
        {"1w", 604800000}, {"5", 5000},           {"1.5s", 1500},
        {"0", 0},          {"0.4ms", 0},          {"0.5ms", 1},
        {" 5 s", 5000},    {"30d", 2592000000LL},
    };
    for (size_t i = 0; i < MT_ARRAY_SIZE(ok); i++) {
        int64_t ms = -1;
        if (mt_parse_duration_ms(ok[i].in, &ms) != 0 || ms != ok[i].ms)
            fail_msg("'%s' -> %lld, expected %lld", ok[i].in, (long long)ms, (long long)ok[i].ms);
    }
    static const char *const bad[] = {"",      "-1s", "+1s", "5x", "s",   "abc",
                                      "5 s s", "nan", "inf", "5S", "1ms1"};
    for (size_t i = 0; i < MT_ARRAY_SIZE(bad); i++) {
        int64_t ms = 77;
        if (mt_parse_duration_ms(bad[i], &ms) != -EINVAL)
            fail_msg("'%s' was accepted", bad[i]);
        assert_int_equal(ms, 77);
    }
    int64_t ms;
    assert_int_equal(mt_parse_duration_ms("1e30d", &ms), -ERANGE);
}

static void parse_sizes(void **s)
{
    (void)s;
    static const struct {
        const char *in;
        uint64_t bytes;
    } ok[] = {
        {"512", 512},
        {"0", 0},
        {"64KiB", 65536},
        {"64KB", 65536},
        {"64K", 65536},
        {"10MiB", 10485760},
        {"10MB", 10485760},
        {"1GiB", 1073741824},
        {"1.5GiB", 1610612736},
        {"1TB", 1099511627776ULL},
        {"12B", 12},
        {"4 KiB", 4096},
    };
    for (size_t i = 0; i < MT_ARRAY_SIZE(ok); i++) {
        uint64_t b = 1;
        if (mt_parse_size(ok[i].in, &b) != 0 || b != ok[i].bytes)
            fail_msg("'%s' -> %llu, expected %llu", ok[i].in, (unsigned long long)b,
                     (unsigned long long)ok[i].bytes);
    }
    static const char *const bad[] = {"", "-1", "10 parsecs", "5b", "KiB", "1kib", "1 GiB x"};
    for (size_t i = 0; i < MT_ARRAY_SIZE(bad); i++) {
        uint64_t b = 77;
        if (mt_parse_size(bad[i], &b) != -EINVAL)
            fail_msg("'%s' was accepted", bad[i]);
        assert_int_equal(b, 77);
    }
    uint64_t b;
    assert_int_equal(mt_parse_size("1e30TiB", &b), -ERANGE);
}

static void parse_bools(void **s)
{
    (void)s;
    static const char *const yes[] = {"true", "yes", "on", "1", "TRUE", "Yes"};
    static const char *const no[] = {"false", "no", "off", "0", "False", "OFF"};
    static const char *const bad[] = {"maybe", "", "2", "y", "truee", " true"};
    for (size_t i = 0; i < MT_ARRAY_SIZE(yes); i++) {
        bool v = false;
        assert_int_equal(mt_parse_bool(yes[i], &v), 0);
        assert_true(v);
    }
    for (size_t i = 0; i < MT_ARRAY_SIZE(no); i++) {
        bool v = true;
        assert_int_equal(mt_parse_bool(no[i], &v), 0);
        assert_false(v);
    }
    for (size_t i = 0; i < MT_ARRAY_SIZE(bad); i++) {
        bool v = true;
        if (mt_parse_bool(bad[i], &v) != -EINVAL)
            fail_msg("'%s' was accepted", bad[i]);
        assert_true(v);
    }
}

static void did_you_mean(void **s)
{
    (void)s;
    static const char *const cands[] = {"count", "poll_interval", "site", NULL, "batch_size"};
    size_t n = MT_ARRAY_SIZE(cands);
    assert_string_equal(mt_did_you_mean("cuont", cands, n), "count");
    assert_string_equal(mt_did_you_mean("COUNT", cands, n), "count");
    assert_string_equal(mt_did_you_mean("poll_intervall", cands, n), "poll_interval");
    assert_string_equal(mt_did_you_mean("batchsize", cands, n), "batch_size");
    assert_string_equal(mt_did_you_mean("sit", cands, n), "site");
    /* short words allow one edit only */
    assert_null(mt_did_you_mean("st", cands, n));
    assert_null(mt_did_you_mean("xyzzy", cands, n));
    assert_null(mt_did_you_mean("count", cands, 0));
    /* neighbour swaps are one edit */
    assert_int_equal(mt_edit_distance("cuont", "count", 5), 1);
    assert_int_equal(mt_edit_distance("ab", "ba", 5), 1);
    assert_int_equal(mt_edit_distance("CBDA", "CDAB", 5), 2);
    assert_int_equal(mt_edit_distance("CBDA", "BA", 5), 2);
    /* issue 9: no distant suggestion: two edits also make BA of CBDA, but
     * that keeps nothing of BA; CDAB keeps half */
    static const char *const orders[] = {"device", "AB", "BA", "ABCD", "CDAB", "BADC", "DCBA"};
    assert_string_equal(mt_did_you_mean("CBDA", orders, MT_ARRAY_SIZE(orders)), "CDAB");
    assert_null(mt_did_you_mean("XYZA", orders, MT_ARRAY_SIZE(orders)));
    assert_string_equal(mt_did_you_mean("BADD", orders, MT_ARRAY_SIZE(orders)), "BADC");
    /* a whole _-separated part of the word: word_order -> order */
    static const char *const keys[] = {"name", "host", "unit", "order", "poll_interval"};
    assert_string_equal(mt_did_you_mean("word_order", keys, MT_ARRAY_SIZE(keys)), "order");
    assert_string_equal(mt_did_you_mean("unit_id", keys, MT_ARRAY_SIZE(keys)), "unit");
    assert_string_equal(mt_did_you_mean("poll_intervall", keys, MT_ARRAY_SIZE(keys)),
                        "poll_interval");
    assert_null(mt_did_you_mean("ordering", keys, MT_ARRAY_SIZE(keys))); /* not a whole part */
    assert_null(mt_did_you_mean("or", keys, MT_ARRAY_SIZE(keys)));
    assert_int_equal(mt_edit_distance("kitten", "sitting", 10), 3);
    assert_int_equal(mt_edit_distance("kitten", "sitting", 2), 3); /* bounded: max + 1 */
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(defaults_fill_unset_options),
        T(every_type_is_parsed),
        T(strings_live_in_the_arena),
        T(null_map_gives_defaults_only),
        T(empty_section_gives_defaults),
        T(required_option_missing),
        T(required_secret_mentions_file_form),
        T(int_out_of_range),
        T(int_not_a_number),
        T(double_range_and_syntax),
        T(bool_invalid),
        T(duration_and_size_errors),
        T(out_of_range_without_a_range),
        T(device_path_in_a_number_names_the_path_option),
        T(enum_error_suggests_the_closest),
        T(unknown_key_suggests_the_closest),
        T(reserved_keys_are_skipped_and_suggested),
        T(quiet_unknown_reports_no_unknown_keys),
        T(non_scalar_value_is_refused),
        T(options_must_be_a_mapping),
        T(secret_from_file),
        T(lua_file_is_resolved_and_compiled),
        T(secret_relative_path_is_from_the_config_file),
        T(secret_symlink_is_followed_and_its_target_checked),
        T(canonical_holds_no_secret),
        T(secret_file_readable_by_others_is_refused),
        T(secret_set_twice_is_refused),
        T(secret_file_missing),
        T(secret_file_empty),
        T(secret_file_must_be_regular),
        T(file_form_only_for_secret_options),
        T(all_problems_are_collected),
        T(check_table_accepts_a_good_table),
        T(check_table_bad_offset),
        T(check_table_duplicate_name),
        T(check_table_enum_without_values),
        T(check_table_secret_must_be_string),
        T(check_table_list_needs_a_sub_table),
        T(check_table_bad_defaults),
        T(check_table_unknown_type_and_bad_name),
        T(canonical_text_lists_every_option),
        T(canonical_equal_for_equal_settings),
        T(canonical_differs_when_an_option_changes),
        T(print_text_lists_names_and_defaults),
        T(print_markdown_table),
        T(type_names),
        T(parse_durations),
        T(parse_sizes),
        T(parse_bools),
        T(did_you_mean),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
