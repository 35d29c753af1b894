/* config: whole configurations with the real sim plugin, the test plugins
 * and the file output; every problem with its place. */
#include "testutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agentid.h"
#include "config.h"
#include "rules.h"
#include "diag.h"

struct fx {
    char *dir;
    struct mt_registry reg;
    struct mt_diags d;
    struct mt_config *c;
    int rc;
};

static int setup(void **s)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->dir = tu_tmpdir();
    assert_non_null(f->dir);
    *s = f;
    return 0;
}

static void reset(struct fx *f)
{
    mt_config_free(f->c);
    f->c = NULL;
    mt_diags_free(&f->d);
}

static int teardown(void **s)
{
    struct fx *f = *s;
    reset(f);
    mt_registry_free(&f->reg);
    tu_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* Writes text to DIR/name and loads it with plugins from pdir. */
static char *load_in(struct fx *f, const char *name, const char *text, const char *pdir)
{
    char *p = tu_write(f->dir, name, text);
    reset(f);
    f->rc = mt_config_load(&f->c, p, pdir, &f->reg, &f->d);
    assert_non_null(f->c);
    return p;
}

static void load(struct fx *f, const char *text)
{
    free(load_in(f, "c.yaml", text, PLUGIN_DIR));
}

static void load_probe(struct fx *f, const char *text)
{
    free(load_in(f, "p.yaml", text, TEST_PLUGIN_DIR));
}

static void dump(const struct fx *f)
{
    mt_diags_print(&f->d, stderr);
}

static void expect_ok(struct fx *f)
{
    if (f->rc != 0 || f->d.n != 0) {
        dump(f);
        fail_msg("configuration refused (rc %d, %zu problems)", f->rc, f->d.n);
    }
}

/* Exactly one problem, at line:col, whose message contains needle. */
static void expect_one(struct fx *f, int line, int col, const char *needle)
{
    if (f->d.n != 1) {
        dump(f);
        fail_msg("expected 1 problem, got %zu", f->d.n);
    }
    assert_int_equal(f->rc, MITTARI_ECONFIG);
    if (!strstr(f->d.v[0].msg, needle))
        fail_msg("problem is '%s', expected it to contain '%s'", f->d.v[0].msg, needle);
    assert_int_equal(f->d.v[0].pos.line, line);
    assert_int_equal(f->d.v[0].pos.col, col);
}

static void expect_hint(const struct fx *f, size_t i, const char *needle)
{
    assert_true(i < f->d.n);
    if (!f->d.v[i].hint || !strstr(f->d.v[i].hint, needle))
        fail_msg("hint is '%s', expected it to contain '%s'",
                 f->d.v[i].hint ? f->d.v[i].hint : "(none)", needle);
}

/* The value of option name in an instance's filled struct. */
static const void *field(const struct mittari_option *table, const void *conf, const char *name)
{
    for (const struct mittari_option *o = table; o && o->name; o++)
        if (strcmp(o->name, name) == 0)
            return (const unsigned char *)conf + o->offset;
    fail_msg("no option '%s'", name);
    return NULL;
}

static int64_t in_i64(const struct mt_inst_conf *ic, const char *name)
{
    int64_t v;
    memcpy(&v, field(ic->plugin_ref->desc->options, ic->conf, name), sizeof(v));
    return v;
}

static const char *in_str(const struct mt_inst_conf *ic, const char *name)
{
    const char *v;
    memcpy(&v, field(ic->plugin_ref->desc->options, ic->conf, name), sizeof(v));
    return v;
}

static const char *out_str(const struct mt_inst_conf *ic, const char *name)
{
    const char *v;
    memcpy(&v, field(ic->otype->options, ic->conf, name), sizeof(v));
    return v;
}

#define AGENT "agent:\n  site: lib\n"

static const char *valid = AGENT "inputs:\n"
                                 "  lobby:\n"
                                 "    plugin: sim\n"
                                 "    doors: 3\n"
                                 "    rate: 4\n"
                                 "  side:\n"
                                 "    plugin: sim\n"
                                 "    site: other-site\n"
                                 "outputs:\n"
                                 "  archive:\n"
                                 "    type: file\n"
                                 "    path: /tmp/readings.jsonl\n"
                                 "    batch_size: 50\n";

/* ---- whole configurations ---- */

static void valid_config_loads_with_defaults(void **s)
{
    struct fx *f = *s;
    load(f, valid);
    expect_ok(f);
    const struct mt_agent_conf *a = &f->c->agent;
    char id[64] = "";
    mt_agent_default_id(id, sizeof(id));
    assert_string_equal(a->site, "lib");
    assert_string_equal(a->id, id);
    assert_string_equal(a->data_dir, "/var/lib/mittari");
    assert_string_equal(a->plugin_dir, PLUGIN_DIR);
    assert_string_equal(a->timezone, "Europe/Helsinki");
    assert_null(a->secret);
    assert_int_equal(a->log_level, MT_INFO);
    assert_int_equal(a->batch_size, 10000);
    assert_int_equal(a->batch_interval_ms, 1000);
    assert_int_equal(a->queue_max, 65536);
    assert_int_equal(a->retention_ms, 30LL * 86400 * 1000);
    assert_int_equal(a->max_size, 1ULL << 30);
    assert_int_equal(a->full_policy, 0);
    assert_int_equal(a->sync, 0);
    assert_int_equal(a->housekeeping_ms, 60000);
    assert_int_equal(a->shutdown_timeout_ms, 10000);
    assert_int_equal(a->stats_interval_ms, 3600000);
    assert_int_equal(a->workers, 4);
    assert_string_equal(f->reg.dir, PLUGIN_DIR);

    assert_int_equal(f->c->ninputs, 2);
    const struct mt_inst_conf *lobby = f->c->inputs[0];
    assert_string_equal(lobby->name, "lobby");
    assert_string_equal(lobby->plugin, "sim");
    assert_string_equal(lobby->plugin_ref->desc->name, "sim");
    assert_string_equal(lobby->site, "lib");
    assert_string_equal(lobby->tags_json, "");
    assert_int_equal(lobby->ntags, 0);
    assert_true(lobby->enabled);
    assert_int_equal(lobby->pos.line, 4);
    assert_int_equal(lobby->pos.col, 3);
    assert_int_equal(in_i64(lobby, "doors"), 3);
    assert_string_equal(in_str(lobby, "opening_hours"), "08:00-20:00"); /* default */
    assert_non_null(strstr(lobby->canonical, "plugin=sim\nsite=lib\n"));
    assert_non_null(strstr(lobby->canonical, "doors=3\n"));
    assert_string_equal(f->c->inputs[1]->site, "other-site");

    assert_int_equal(f->c->noutputs, 1);
    const struct mt_inst_conf *arch = f->c->outputs[0];
    assert_string_equal(arch->name, "archive");
    assert_string_equal(arch->plugin, "file");
    assert_ptr_equal(arch->otype, &mt_output_file);
    assert_string_equal(out_str(arch, "path"), "/tmp/readings.jsonl");
    assert_int_equal(arch->common.batch_size, 50);
    assert_int_equal(arch->common.retry_min_ms, 1000);
    assert_int_equal(arch->common.retry_max_ms, 300000);
    assert_non_null(strstr(arch->canonical, "type=file\n"));
    assert_non_null(strstr(arch->canonical, "batch_size=50\n"));
    assert_non_null(strstr(arch->canonical, "path=/tmp/readings.jsonl\n"));
}

static void agent_options_are_applied(void **s)
{
    struct fx *f = *s;
    load(f, "agent:\n"
            "  site: lib\n"
            "  id: gw-1\n"
            "  timezone: UTC\n"
            "  log_level: debug\n"
            "  batch_interval: 250ms\n"
            "  max_size: 0\n"
            "  full_policy: block_inputs\n"
            "  sync: normal\n"
            "  secret: 0123456789abcdef\n");
    expect_ok(f);
    const struct mt_agent_conf *a = &f->c->agent;
    assert_string_equal(a->id, "gw-1");
    assert_string_equal(a->timezone, "UTC");
    assert_int_equal(a->log_level, MT_DEBUG);
    assert_int_equal(a->batch_interval_ms, 250);
    assert_int_equal(a->max_size, 0);
    assert_int_equal(a->full_policy, 1);
    assert_int_equal(a->sync, 1);
    assert_string_equal(a->secret, "0123456789abcdef");
    assert_int_equal(f->c->ninputs, 0);
    assert_int_equal(f->c->noutputs, 0);
}

static char *canonical_input(struct fx *f, const char *text)
{
    load(f, text);
    expect_ok(f);
    assert_int_equal(f->c->ninputs, 1);
    return strdup(f->c->inputs[0]->canonical);
}

static char *canonical_output(struct fx *f, const char *text)
{
    load(f, text);
    expect_ok(f);
    assert_int_equal(f->c->noutputs, 1);
    return strdup(f->c->outputs[0]->canonical);
}

static void canonical_equal_for_equal_settings(void **s)
{
    struct fx *f = *s;
    char *a = canonical_input(f, AGENT "inputs: {x: {plugin: sim, doors: 2, rate: 5}}\n");
    /* defaults spelled out, keys in another order: the same settings */
    char *b = canonical_input(f, AGENT "inputs:\n  x:\n    rate: 5.0\n    plugin: sim\n");
    assert_string_equal(a, b);
    char *o1 = canonical_output(f, AGENT "outputs: {o: {type: file, path: p}}\n");
    char *o2 = canonical_output(f, AGENT "outputs: {o: {path: p, type: file, retry_min: 1s, "
                                         "format: jsonl}}\n");
    assert_string_equal(o1, o2);
    free(a);
    free(b);
    free(o1);
    free(o2);
}

static void canonical_differs_when_a_setting_changes(void **s)
{
    struct fx *f = *s;
    char *base = canonical_input(f, AGENT "inputs: {x: {plugin: sim}}\n");
    static const char *const inputs[] = {
        AGENT "inputs: {x: {plugin: sim, rate: 6}}\n",
        AGENT "inputs: {x: {plugin: sim, gate_bits: 32}}\n",
        AGENT "inputs: {x: {plugin: sim, site: elsewhere}}\n",
        AGENT "inputs: {x: {plugin: sim, tags: {a: b}}}\n",
        AGENT "inputs: {x: {plugin: sim, enabled: false}}\n",
        "agent: {site: lib2}\ninputs: {x: {plugin: sim}}\n",
    };
    for (size_t i = 0; i < MT_ARRAY_SIZE(inputs); i++) {
        char *c = canonical_input(f, inputs[i]);
        if (strcmp(c, base) == 0)
            fail_msg("same canonical text for:\n%s", inputs[i]);
        free(c);
    }
    free(base);

    base = canonical_output(f, AGENT "outputs: {o: {type: file, path: p}}\n");
    static const char *const outputs[] = {
        AGENT "outputs: {o: {type: file, path: q}}\n",
        AGENT "outputs: {o: {type: file, path: p, format: csv}}\n",
        AGENT "outputs: {o: {type: file, path: p, batch_size: 999}}\n",
        AGENT "outputs: {o: {type: file, path: p, retry_max: 6m}}\n",
        AGENT "outputs: {o: {type: file, path: p, enabled: off}}\n",
    };
    for (size_t i = 0; i < MT_ARRAY_SIZE(outputs); i++) {
        char *c = canonical_output(f, outputs[i]);
        if (strcmp(c, base) == 0)
            fail_msg("same canonical text for:\n%s", outputs[i]);
        free(c);
    }
    free(base);
}

/* 16 tags with long values, the last one (in key order) different */
static char *many_tags(char last)
{
    struct mt_buf b = {0};
    mt_buf_adds(&b, AGENT "inputs:\n  x:\n    plugin: sim\n    tags:\n");
    for (int i = 0; i < 16; i++) {
        mt_buf_printf(&b, "      k%02d: ", i);
        for (int j = 0; j < 120; j++)
            mt_buf_addc(&b, i == 15 && j == 119 ? last : 'v');
        mt_buf_addc(&b, '\n');
    }
    return b.p;
}

static void canonical_sees_every_tag(void **s)
{
    struct fx *f = *s;
    char *t1 = many_tags('a'), *t2 = many_tags('b');
    char *a = canonical_input(f, t1);
    assert_int_equal(f->c->inputs[0]->ntags, 16);
    char *b = canonical_input(f, t2);
    if (strcmp(a, b) == 0)
        fail_msg("a change in the 16th tag left the canonical text unchanged");
    assert_non_null(strstr(b, "vb\"}\n"));
    free(a);
    free(b);
    free(t1);
    free(t2);
}

static void agent_keys_merge_across_files(void **s)
{
    struct fx *f = *s;
    free(tu_write(f->dir, "10-agent.yaml", "agent:\n  site: first\n  batch_size: 5\n"));
    free(tu_write(f->dir, "20-inputs.yaml", "inputs:\n  x: {plugin: sim}\n"));
    free(tu_write(f->dir, "50-local.yaml", "agent:\n  site: second\n"));
    f->rc = mt_config_load(&f->c, f->dir, PLUGIN_DIR, &f->reg, &f->d);
    expect_ok(f);
    assert_string_equal(f->c->agent.site, "second");
    assert_int_equal(f->c->agent.batch_size, 5);
    assert_int_equal(f->c->ninputs, 1);
    assert_string_equal(f->c->inputs[0]->site, "second");
    assert_non_null(strstr(f->c->inputs[0]->pos.file, "20-inputs.yaml"));
}

static void load_errors_stop_before_meaning(void **s)
{
    struct fx *f = *s;
    /* the broken file is not merged; its absent agent section must not
     * bring a second, misleading "missing site" */
    load(f, "agent:\n\tsite: lib\n");
    expect_one(f, 2, 1, "YAML syntax");
}

static void missing_path_is_one_problem(void **s)
{
    struct fx *f = *s;
    char *p = tu_path(f->dir, "absent");
    f->rc = mt_config_load(&f->c, p, PLUGIN_DIR, &f->reg, &f->d);
    assert_non_null(f->c);
    expect_one(f, 0, 0, "cannot open configuration");
    free(p);
}

static void unknown_section_suggests(void **s)
{
    struct fx *f = *s;
    load(f, AGENT "iputs:\n  x: {plugin: sim}\n");
    expect_one(f, 3, 1, "unknown section 'iputs'");
    expect_hint(f, 0, "did you mean 'inputs'?");
    load(f, AGENT "zebra: 1\n");
    expect_one(f, 3, 1, "unknown section 'zebra'");
    expect_hint(f, 0, "sections are: agent, inputs, outputs, rules");
}

static void unknown_agent_key(void **s)
{
    struct fx *f = *s;
    load(f, AGENT "  batchsize: 3\n");
    expect_one(f, 3, 3, "unknown option 'batchsize' for the agent section");
    expect_hint(f, 0, "did you mean 'batch_size'?");
}

static void agent_section_must_be_a_mapping(void **s)
{
    struct fx *f = *s;
    load(f, "agent: [site, lib]\n");
    expect_one(f, 1, 8, "'agent' must be a mapping, found a list");
}

static void agent_site_is_required(void **s)
{
    struct fx *f = *s;
    load(f, "\nagent:\n  id: x\n");
    expect_one(f, 2, 1, "the agent section: missing required option 'site'");
    /* no agent section at all: the problem points at the file */
    char *p = load_in(f, "noagent.yaml", "inputs:\n", PLUGIN_DIR);
    expect_one(f, 1, 1, "the agent section: missing required option 'site'");
    assert_string_equal(f->d.v[0].pos.file, p);
    free(p);
}

static void bad_site_and_id_names(void **s)
{
    struct fx *f = *s;
    load(f, "agent:\n  site: \"kuusamo library\"\n");
    expect_one(f, 2, 9, "bad site name 'kuusamo library'");
    load(f, "agent:\n  site: lib\n  id: gw/1\n");
    expect_one(f, 3, 7, "bad agent id 'gw/1'");
    load(f, AGENT "inputs:\n  x:\n    plugin: sim\n    site: \"a b\"\n");
    expect_one(f, 6, 11, "bad site name 'a b'");
    /* dots, dashes, underscores and 63 characters are fine */
    load(f, "agent:\n  site: a.b-c_d\n  id: "
            "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijk\n");
    expect_ok(f);
    load(f, "agent:\n  site: a\n  id: "
            "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijkl\n");
    expect_one(f, 3, 7, "bad agent id");
}

static void unknown_timezone(void **s)
{
    struct fx *f = *s;
    load(f, AGENT "  timezone: Mars/Olympus_Mons\n");
    expect_one(f, 3, 13, "unknown time zone 'Mars/Olympus_Mons'");
    expect_hint(f, 0, "Europe/Helsinki");
    load(f, AGENT "  timezone: ../zoneinfo/Europe/Helsinki\n");
    expect_one(f, 3, 13, "unknown time zone");
}

static void timezone_must_name_a_zone_file(void **s)
{
    struct fx *f = *s;
    /* directories of the zone database are not zones */
    load(f, AGENT "  timezone: \"\"\n");
    expect_one(f, 3, 13, "unknown time zone ''");
    load(f, AGENT "  timezone: Europe\n");
    expect_one(f, 3, 13, "unknown time zone 'Europe'");
}

static void short_secret(void **s)
{
    struct fx *f = *s;
    load(f, AGENT "  secret: fifteen-bytes!\n");
    expect_one(f, 3, 11, "the pseudonymisation secret is shorter than 16 bytes");
    expect_hint(f, 0, "openssl rand");

    char *key = tu_write(f->dir, "key", "short\n");
    assert_int_equal(chmod(key, 0600), 0);
    char text[600];
    snprintf(text, sizeof(text), AGENT "  secret_file: %s\n", key);
    load(f, text);
    expect_one(f, 3, 16, "shorter than 16 bytes");

    FILE *fp = fopen(key, "w");
    fputs("0123456789abcdef0123456789abcdef\n", fp);
    fclose(fp);
    load(f, text);
    expect_ok(f);
    assert_string_equal(f->c->agent.secret, "0123456789abcdef0123456789abcdef");
    free(key);
}

static void input_without_plugin(void **s)
{
    struct fx *f = *s;
    load(f, AGENT "inputs:\n  lobby:\n    rate: 4\n");
    expect_one(f, 4, 3, "input 'lobby' has no 'plugin'");
    expect_hint(f, 0, "plugin: NAME");
}

static void unknown_plugin(void **s)
{
    struct fx *f = *s;
    load(f, AGENT "inputs:\n  lobby:\n    plugin: simm\n");
    expect_one(f, 5, 13, "input 'lobby': no plugin 'simm' in " PLUGIN_DIR);
    load(f, AGENT "inputs:\n  lobby:\n    plugin: ../sim\n");
    expect_one(f, 5, 13, "'../sim' is not a plugin name");
}

/* issue 9: a misspelled plugin name gets a did-you-mean among the plugin
 * files of the dir; an output type under inputs is named as one */
static void misspelled_plugin_suggests(void **s)
{
    struct fx *f = *s;
    load(f, AGENT "inputs:\n  lobby:\n    plugin: simm\n");
    expect_one(f, 5, 13, "no plugin 'simm'");
    expect_hint(f, 0, "did you mean 'sim'?");
    load(f, AGENT "inputs:\n  lobby:\n    plugin: Sim\n");
    expect_one(f, 5, 13, "'Sim' is not a plugin name");
    expect_hint(f, 0, "did you mean 'sim'?");
    load(f, AGENT "inputs:\n  lobby:\n    plugin: file\n");
    expect_one(f, 5, 13, "no plugin 'file'");
    expect_hint(f, 0, "'file' is an output type: put it under 'outputs:'");
    load(f, AGENT "inputs:\n  lobby:\n    plugin: zzzzzz\n");
    expect_hint(f, 0, "'mittari plugins' lists the installed plugins");
}

/* The names of the plugin files, without loading them. */
static void registry_names_lists_plugin_files(void **s)
{
    (void)s;
    struct mt_registry r;
    char *names[64];
    assert_int_equal(mt_registry_init(&r, TEST_PLUGIN_DIR), 0);
    size_t n = mt_registry_names(&r, names, 64);
    assert_true(n >= 6);
    bool probe = false;
    for (size_t i = 0; i < n; i++) {
        if (i)
            assert_true(strcmp(names[i - 1], names[i]) < 0);
        probe |= strcmp(names[i], "probe") == 0;
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    assert_true(probe);
    assert_int_equal(r.n, 0); /* nothing loaded */
    assert_int_equal(mt_registry_names(&r, names, 2), 2);
    free(names[0]);
    free(names[1]);
    mt_registry_free(&r);
    assert_int_equal(mt_registry_init(&r, "/nonexistent"), 0);
    assert_int_equal(mt_registry_names(&r, names, 64), 0);
    mt_registry_free(&r);
}

/* issue 9: `mittari plugins -P DIR` exited 0 on a dir it could not read;
 * the scan reports each problem and returns their number */
static int scan_problems;
static void count_problem(const char *path, const char *msg)
{
    (void)path;
    (void)msg;
    scan_problems++;
}

static void registry_scan_counts_problems(void **s)
{
    (void)s;
    struct mt_registry r;
    scan_problems = 0;
    assert_int_equal(mt_registry_init(&r, "/nonexistent"), 0);
    assert_int_equal(mt_registry_scan(&r, count_problem), 1);
    assert_int_equal(scan_problems, 1);
    mt_registry_free(&r);
    /* five deliberately broken plugins next to the probe, stall, loopstall and crashy */
    scan_problems = 0;
    assert_int_equal(mt_registry_init(&r, TEST_PLUGIN_DIR), 0);
    assert_int_equal(mt_registry_scan(&r, count_problem), 5);
    assert_int_equal(scan_problems, 5);
    assert_int_equal(r.n, 4);
    mt_registry_free(&r);
    scan_problems = 0;
    assert_int_equal(mt_registry_init(&r, PLUGIN_DIR), 0);
    assert_int_equal(mt_registry_scan(&r, count_problem), 0);
    assert_int_equal(scan_problems, 0);
    assert_true(r.n >= 1);
    mt_registry_free(&r);
}

static void plugin_must_be_a_value(void **s)
{
    struct fx *f = *s;
    load(f, AGENT "inputs:\n  lobby:\n    plugin: [sim]\n");
    expect_one(f, 5, 13, "plugin must be a single value, found a list");
}

static void input_must_be_a_mapping(void **s)
{
    struct fx *f = *s;
    load(f, AGENT "inputs:\n  lobby: sim\n");
    expect_one(f, 4, 10, "input 'lobby' must be a mapping of options, found a value");
    load(f, AGENT "inputs:\n  - lobby\n");
    expect_one(f, 4, 3, "'inputs' must be a mapping of named instances, found a list");
    load(f, AGENT "inputs:\n  \"lob by\": {plugin: sim}\n");
    expect_one(f, 4, 3, "bad input name 'lob by'");
}

static void unknown_plugin_option_suggests(void **s)
{
    struct fx *f = *s;
    load(f, AGENT "inputs:\n  lobby:\n    plugin: sim\n    dors: 3\n");
    expect_one(f, 6, 5, "unknown option 'dors' for input 'lobby' (plugin sim)");
    expect_hint(f, 0, "did you mean 'doors'?");
    /* the reserved keys are candidates too */
    load(f, AGENT "inputs:\n  lobby:\n    plugin: sim\n    enabeld: true\n");
    expect_one(f, 6, 5, "unknown option 'enabeld'");
    expect_hint(f, 0, "did you mean 'enabled'?");
}

static void plugin_option_values_are_checked(void **s)
{
    struct fx *f = *s;
    load(f, AGENT "inputs:\n  lobby:\n    plugin: sim\n    doors: 65\n");
    expect_one(f, 6, 12, "option 'doors' of input 'lobby' (plugin sim): 65 is out of range");
    load(f, AGENT "inputs:\n  lobby:\n    plugin: sim\n    gate_bits: 24\n");
    expect_one(f, 6, 16, "'24' is not one of: 16, 32");
}

static void output_without_type(void **s)
{
    struct fx *f = *s;
    load(f, AGENT "outputs:\n  archive:\n    path: x\n");
    expect_one(f, 4, 3, "output 'archive' has no 'type'");
    expect_hint(f, 0, "type: file");
}

static void unknown_output_type_suggests(void **s)
{
    struct fx *f = *s;
    load(f, AGENT "outputs:\n  archive:\n    type: fiel\n    path: x\n");
    expect_one(f, 5, 11, "output 'archive': unknown output type 'fiel'");
    expect_hint(f, 0, "did you mean 'file'?");
    load(f, AGENT "outputs:\n  archive:\n    type: kafka\n");
    expect_one(f, 5, 11, "unknown output type 'kafka'");
    expect_hint(f, 0, "'mittari plugins' lists the output types");
}

static void file_output_needs_a_path(void **s)
{
    struct fx *f = *s;
    load(f, AGENT "outputs:\n  archive:\n    type: file\n");
    expect_one(f, 4, 3, "output 'archive' (type file): missing required option 'path'");
}

static void unknown_output_option_suggests(void **s)
{
    struct fx *f = *s;
    load(f, AGENT "outputs:\n  a:\n    type: file\n    path: p\n    batch_sise: 3\n");
    expect_one(f, 7, 5, "unknown option 'batch_sise' for output 'a' (type file)");
    expect_hint(f, 0, "did you mean 'batch_size'?");
}

static void common_output_options(void **s)
{
    struct fx *f = *s;
    load(f, AGENT "outputs:\n  a:\n    type: file\n    path: p\n    batch_size: 0\n");
    expect_one(f, 7, 17,
               "option 'batch_size' of output 'a' (type file): 0 is out of range "
               "(1 to 100000)");
    load(f, AGENT "outputs:\n  a:\n    type: file\n    path: p\n    batch_size: 100001\n");
    expect_one(f, 7, 17, "100001 is out of range");
    load(f, AGENT "outputs:\n  a:\n    type: file\n    path: p\n    retry_min: 10m\n"
                  "    retry_max: 1m\n");
    expect_one(f, 4, 3, "output 'a' (type file): retry_min is longer than retry_max");
    load(f, AGENT "outputs:\n  a:\n    type: file\n    path: p\n    retry_min: 1m\n"
                  "    retry_max: 1m\n");
    expect_ok(f);
    assert_int_equal(f->c->outputs[0]->common.retry_min_ms, 60000);
}

static void tags_become_sorted_json(void **s)
{
    struct fx *f = *s;
    load(f, AGENT "inputs:\n  x:\n    plugin: sim\n    tags:\n      zone: north\n"
                  "      theme: \"culture \\\"and\\\" more\"\n      a-b_1: \"1\"\n");
    expect_ok(f);
    const struct mt_inst_conf *ic = f->c->inputs[0];
    assert_string_equal(
        ic->tags_json,
        "{\"a-b_1\":\"1\",\"theme\":\"culture \\\"and\\\" more\",\"zone\":\"north\"}");
    assert_int_equal(ic->ntags, 3);
    assert_string_equal(ic->tags[0].key, "a-b_1");
    assert_string_equal(ic->tags[1].key, "theme");
    assert_string_equal(ic->tags[1].value, "culture \"and\" more");
    assert_string_equal(ic->tags[2].key, "zone");
    assert_string_equal(ic->tags[2].value, "north");
    assert_non_null(strstr(ic->canonical, "tags={\"a-b_1\""));
}

static void tags_must_be_a_mapping(void **s)
{
    struct fx *f = *s;
    load(f, AGENT "inputs:\n  x:\n    plugin: sim\n    tags: [a, b]\n");
    expect_one(f, 6, 11, "tags of input 'x' (plugin sim) must be a mapping, found a list");
}

static void bad_tags(void **s)
{
    struct fx *f = *s;
    load(f, AGENT "inputs:\n  x:\n    plugin: sim\n    tags:\n      \"bad key\": v\n");
    expect_one(f, 7, 7, "bad tag 'bad key' of input 'x' (plugin sim)");
    load(f, AGENT "inputs:\n  x:\n    plugin: sim\n    tags:\n      k: [v]\n");
    expect_one(f, 7, 7, "bad tag 'k'");
    struct mt_buf b = {0};
    mt_buf_adds(&b, AGENT "inputs:\n  x:\n    plugin: sim\n    tags:\n");
    for (int i = 0; i < 17; i++)
        mt_buf_printf(&b, "      k%d: v\n", i);
    load(f, b.p);
    expect_one(f, 7, 7, "has more than 16 tags");
    mt_buf_free(&b);
}

static void enabled_false_still_instantiates(void **s)
{
    struct fx *f = *s;
    load(f, AGENT "inputs:\n  x: {plugin: sim, enabled: false}\n"
                  "outputs:\n  o: {type: file, path: p, enabled: no}\n");
    expect_ok(f);
    assert_int_equal(f->c->ninputs, 1);
    assert_false(f->c->inputs[0]->enabled);
    assert_non_null(strstr(f->c->inputs[0]->canonical, "enabled=0\n"));
    assert_int_equal(f->c->noutputs, 1);
    assert_false(f->c->outputs[0]->enabled);
    load(f, AGENT "inputs:\n  x: {plugin: sim, enabled: maybe}\n");
    expect_one(f, 4, 29, "'enabled' of input 'x' (plugin sim): 'maybe' is not a boolean");
}

/* The rules section: options from the rule table, scripts compiled with
 * their top level run (errors at the script's own line), tags, from. */
static void rules_section(void **s)
{
    struct fx *f = *s;
    free(tu_write(f->dir, "ok.lua", "window { every = 'hour', metric = 'v', agg = 'sum' }\n"));
    free(tu_write(f->dir, "syntax.lua", "window {\n  every = 'hour'\n  metric = 'v' }\n"));
    free(tu_write(f->dir, "badwin.lua", "\nwindow { every = 'fortnight', metric = 'v', agg = 'sum' }\n"));
    load(f, AGENT "rules:\n");
    expect_ok(f);
    load(f, AGENT "rules: {}\n");
    expect_ok(f);
    load(f, AGENT "rules: [x]\n");
    expect_one(f, 3, 8, "'rules' must be a mapping of named rules");
    load(f, AGENT "rules:\n  r1: {script: ok.lua, when: x}\n");
    expect_one(f, 4, 24, "unknown option 'when' for rule 'r1'");
    load(f, AGENT "rules:\n  r1: {memory: 1MiB}\n");
    expect_one(f, 4, 3, "script");
    load(f, AGENT "rules:\n  r1:\n    script: syntax.lua\n");
    expect_one(f, 5, 13, "syntax.lua:3: '}' expected");
    load(f, AGENT "rules:\n  r1:\n    script: badwin.lua\n");
    expect_one(f, 5, 13, "badwin.lua:2: window: 'every' is");
    load(f, AGENT "rules:\n  r1:\n    script: nosuch.lua\n");
    expect_one(f, 5, 13, "nosuch.lua");
    load(f, AGENT "rules:\n  r1: {script: ok.lua, from: r2}\n  r2: {script: ok.lua, from: [r1]}\n");
    expect_one(f, 4, 30, "leads back to itself");
    load(f, AGENT "rules:\n  r1: {script: ok.lua, from: r3}\n");
    expect_one(f, 4, 30, "from names no rule 'r3'");
    load(f, AGENT "rules:\n  r1: {script: ok.lua, tags: {'bad key': x}}\n");
    expect_one(f, 4, 31, "bad tag name 'bad key'");
    load(f, AGENT "rules:\n  r1:\n    script: ok.lua\n    series: [\"*/door-*/visitors_in\"]\n"
                  "    tags:\n      theme: culture\n      area: {\"lib/*\": centre, \"*\": other}\n"
                  "    pause_after: 3\n");
    expect_ok(f);
    assert_int_equal(f->c->nrules, 1);
    const struct mt_rule_spec *r = f->c->rules[0];
    assert_string_equal(r->name, "r1");
    assert_non_null(strstr(r->script, "/ok.lua"));
    assert_string_equal(r->series[0], "*/door-*/visitors_in");
    assert_int_equal(r->ntags, 2);
    assert_string_equal(r->tags[0].value, "culture");
    assert_int_equal(r->tags[1].n, 2);
    assert_int_equal(r->pause_after, 3);
    assert_int_equal(r->close_delay_us, 2000000);
    assert_int_equal(r->lua_mem, 16u << 20);
}

static void plugin_dir_from_config(void **s)
{
    struct fx *f = *s;
    free(load_in(f, "c.yaml", "agent:\n  site: lib\n  plugin_dir: " TEST_PLUGIN_DIR "\n", NULL));
    expect_ok(f);
    assert_string_equal(f->reg.dir, TEST_PLUGIN_DIR);
    assert_string_equal(f->c->agent.plugin_dir, TEST_PLUGIN_DIR);
}

static void plugin_dir_cannot_change_once_loaded(void **s)
{
    struct fx *f = *s;
    assert_int_equal(mt_registry_init(&f->reg, PLUGIN_DIR), 0);
    load(f, valid); /* same dir: fine */
    expect_ok(f);
    load_probe(f, AGENT); /* another dir against the same registry */
    expect_one(f, 1, 1, "plugin_dir changed from " PLUGIN_DIR " to " TEST_PLUGIN_DIR);
    expect_hint(f, 0, "restart the agent");
    assert_string_equal(f->reg.dir, PLUGIN_DIR);
}

static void every_problem_is_reported(void **s)
{
    struct fx *f = *s;
    load(f, "agent:\n  site: lib\n  workers: 0\n"
            "inputs:\n  a: {plugin: nope}\n  b: {plugin: sim, doors: 0}\n  c: {plugin: sim}\n"
            "outputs:\n  o: {type: file}\n");
    assert_int_equal(f->rc, MITTARI_ECONFIG);
    assert_int_equal(f->d.n, 4);
    assert_int_equal(f->d.v[0].pos.line, 3);
    assert_int_equal(f->d.v[1].pos.line, 5);
    assert_int_equal(f->d.v[2].pos.line, 6);
    assert_int_equal(f->d.v[3].pos.line, 9);
    /* the good instance is still there */
    assert_int_equal(f->c->ninputs, 1);
    assert_string_equal(f->c->inputs[0]->name, "c");
}

/* ---- test plugins ---- */

static void plugin_with_other_abi_major(void **s)
{
    struct fx *f = *s;
    load_probe(f, AGENT "inputs:\n  x: {plugin: badabi}\n");
    expect_one(f, 4, 15, "built for plugin ABI 9.0, this agent speaks ABI 1.1");
    assert_non_null(strstr(f->d.v[0].msg, "input 'x': plugin " TEST_PLUGIN_DIR "/badabi.so"));
}

static void plugin_with_newer_minor(void **s)
{
    struct fx *f = *s;
    load_probe(f, AGENT "inputs:\n  x: {plugin: newminor}\n");
    expect_one(f, 4, 15, "needs plugin ABI 1.99, this agent has 1.1; upgrade the agent");
}

static void shared_object_without_entry(void **s)
{
    struct fx *f = *s;
    load_probe(f, AGENT "inputs:\n  x: {plugin: noentry}\n");
    expect_one(f, 4, 15, "noentry.so is not a mittari plugin (no mittari_plugin_entry symbol)");
}

static void plugin_with_bad_table(void **s)
{
    struct fx *f = *s;
    load_probe(f, AGENT "inputs:\n  x: {plugin: badtable}\n");
    expect_one(f, 4, 15,
               "plugin 'badtable' has a bad option table: option 'x' lies outside the "
               "config struct");
}

static void plugin_named_unlike_its_file(void **s)
{
    struct fx *f = *s;
    load_probe(f, AGENT "inputs:\n  x: {plugin: misnamed}\n");
    expect_one(f, 4, 15, "file is named misnamed.so but the plugin calls itself 'other'");
}

static void probe_plugin_options(void **s)
{
    struct fx *f = *s;
    char *subj = tu_write(f->dir, "subject", "card-1234\n");
    assert_int_equal(chmod(subj, 0600), 0);
    char text[800];
    snprintf(text, sizeof(text),
             AGENT "inputs:\n  p:\n    plugin: probe\n    count: 3\n    poll_interval: 20ms\n"
                   "    counters: \"65530,3\"\n    bits: 16\n    subject_file: %s\n"
                   "    fail_create: true\n    metric: m1\n",
             subj);
    load_probe(f, text);
    expect_ok(f);
    const struct mt_inst_conf *ic = f->c->inputs[0];
    assert_string_equal(ic->plugin_ref->desc->name, "probe");
    assert_int_equal(in_i64(ic, "count"), 3);
    assert_int_equal(in_i64(ic, "poll_interval"), 20);
    assert_string_equal(in_str(ic, "counters"), "65530,3");
    assert_int_equal(in_i64(ic, "bits"), 16);
    assert_string_equal(in_str(ic, "subject"), "card-1234");
    assert_string_equal(in_str(ic, "metric"), "m1");
    bool fc;
    memcpy(&fc, field(ic->plugin_ref->desc->options, ic->conf, "fail_create"), sizeof(fc));
    assert_true(fc);
    free(subj);

    load_probe(f, AGENT "inputs:\n  p:\n    plugin: probe\n    bits: 65\n");
    expect_one(f, 6, 11, "option 'bits' of input 'p' (plugin probe): 65 is out of range (1 to 64)");
    load_probe(f, AGENT "inputs:\n  p:\n    plugin: probe\n    subject: a\n    subject_file: /x\n");
    expect_one(f, 7, 5, "option 'subject' is set both directly and through subject_file");
}

/* ---- mt_plugin_check_desc ---- */

static int create_cb(const struct mittari_host *h, struct mittari_ctx *c, const void *cf, void **s)
{
    (void)h, (void)c, (void)cf, (void)s;
    return 0;
}
static int start_cb(void *s)
{
    (void)s;
    return 0;
}
static void stop_cb(void *s)
{
    (void)s;
}

static struct mittari_plugin good_desc(void)
{
    return (struct mittari_plugin){
        .abi_version = MITTARI_ABI_VERSION,
        .size = sizeof(struct mittari_plugin),
        .name = "good_1",
        .version = "1",
        .description = "d",
        .create = create_cb,
        .start = start_cb,
        .stop = stop_cb,
        .destroy = stop_cb,
    };
}

static void check_desc(const struct mittari_plugin *d, const char *name, int want_rc,
                       const char *want_msg)
{
    char err[512] = "";
    int rc = mt_plugin_check_desc(d, name, err, sizeof(err));
    assert_int_equal(rc, want_rc);
    if (want_msg && !strstr(err, want_msg))
        fail_msg("message '%s', expected it to contain '%s'", err, want_msg);
}

static void desc_good_is_accepted(void **s)
{
    (void)s;
    struct mittari_plugin d = good_desc();
    check_desc(&d, "good_1", 0, NULL);
    check_desc(&d, NULL, 0, NULL);
    /* an older minor of the same major, and a larger struct from it, are fine */
    d.size = sizeof(d) + 64;
    check_desc(&d, "good_1", 0, NULL);
}

static void desc_null(void **s)
{
    (void)s;
    check_desc(NULL, "x", MITTARI_EPLUGIN, "entry point returned no descriptor");
}

static void desc_wrong_major(void **s)
{
    (void)s;
    struct mittari_plugin d = good_desc();
    d.abi_version = (2u << 16) | 3u;
    check_desc(&d, "good_1", MITTARI_EABI, "built for plugin ABI 2.3, this agent speaks ABI 1.1");
    d.abi_version = 0;
    check_desc(&d, "good_1", MITTARI_EABI, "built for plugin ABI 0.0");
}

static void desc_newer_minor(void **s)
{
    (void)s;
    struct mittari_plugin d = good_desc();
    d.abi_version = ((uint32_t)MITTARI_ABI_MAJOR << 16) | (MITTARI_ABI_MINOR + 1);
    check_desc(&d, "good_1", MITTARI_EABI, "upgrade the agent");
}

static void desc_too_small(void **s)
{
    (void)s;
    struct mittari_plugin d = good_desc();
    d.size = 8;
    char want[100];
    snprintf(want, sizeof(want), "descriptor is 8 bytes, ABI 1.1 needs %zu", sizeof(d));
    check_desc(&d, "good_1", MITTARI_EABI, want);
}

static void desc_bad_name(void **s)
{
    (void)s;
    struct mittari_plugin d = good_desc();
    static const char *const bad[] = {
        "Sim", "",     "a-b",
        "a.b", "../x", "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz0123456789ab"};
    for (size_t i = 0; i < MT_ARRAY_SIZE(bad); i++) {
        d.name = bad[i];
        check_desc(&d, NULL, MITTARI_EPLUGIN, "plugin name is missing or not [a-z0-9_]+");
    }
    d.name = NULL;
    check_desc(&d, NULL, MITTARI_EPLUGIN, "plugin name is missing");
    d.name = "good_1";
    check_desc(&d, "good_2", MITTARI_EPLUGIN,
               "file is named good_2.so but the plugin calls itself 'good_1'");
}

static void desc_missing_callback(void **s)
{
    (void)s;
    for (int i = 0; i < 4; i++) {
        struct mittari_plugin d = good_desc();
        if (i == 0)
            d.create = NULL;
        if (i == 1)
            d.start = NULL;
        if (i == 2)
            d.stop = NULL;
        if (i == 3)
            d.destroy = NULL;
        check_desc(&d, "good_1", MITTARI_EPLUGIN, "plugin 'good_1' lacks a lifecycle callback");
    }
}

static void desc_bad_option_table(void **s)
{
    (void)s;
    static const struct mittari_option opts[] = {
        {.name = "n", .type = MITTARI_OPT_INT, .def = "x", .offset = 0, .help = "n"},
        {0},
    };
    struct mittari_plugin d = good_desc();
    d.options = opts;
    d.config_size = 8;
    check_desc(&d, "good_1", MITTARI_EPLUGIN,
               "plugin 'good_1' has a bad option table: default of option 'n' is invalid");
}

/* ---- lists and profiles ---- */

struct pdev {
    const char *name;
    int64_t unit;
    int order;
};

static const struct mittari_list *devices_of(struct fx *f)
{
    assert_int_equal(f->c->ninputs, 1);
    const struct mt_inst_conf *ic = f->c->inputs[0];
    return field(ic->plugin_ref->desc->options, ic->conf, "devices");
}

static void list_items_are_validated_and_filled(void **s)
{
    struct fx *f = *s;
    load_probe(f, "agent: {site: s}\n"
                  "inputs:\n"
                  "  p:\n"
                  "    plugin: probe\n"
                  "    devices:\n"
                  "      - {name: a, unit: 3, order: CDAB}\n"
                  "      - name: b\n");
    expect_ok(f);
    const struct mittari_list *l = devices_of(f);
    assert_int_equal(l->n, 2);
    const struct pdev *a = MITTARI_LIST_ITEM(l, struct pdev, 0);
    const struct pdev *b = MITTARI_LIST_ITEM(l, struct pdev, 1);
    assert_string_equal(a->name, "a");
    assert_int_equal(a->unit, 3);
    assert_int_equal(a->order, 1);
    assert_string_equal(b->name, "b");
    assert_int_equal(b->unit, 1); /* default */
    assert_int_equal(b->order, 0);
}

static void list_item_errors_name_the_item(void **s)
{
    struct fx *f = *s;
    load_probe(f, "agent: {site: s}\n"
                  "inputs:\n"
                  "  p:\n"
                  "    plugin: probe\n"
                  "    devices:\n"
                  "      - {name: a}\n"
                  "      - {name: b, unti: 3}\n");
    expect_one(f, 7, 19, "unknown option 'unti' for input 'p' (plugin probe), devices item 2");
    expect_hint(f, 0, "did you mean 'unit'?");
    load_probe(f, "agent: {site: s}\ninputs:\n  p:\n    plugin: probe\n    devices: {name: a}\n");
    expect_one(f, 5, 14, "option 'devices' of input 'p' (plugin probe) expects a list");
    load_probe(f, "agent: {site: s}\ninputs:\n  p:\n    plugin: probe\n    devices:\n      - a\n");
    expect_one(f, 6, 9, "devices item 1: expected a mapping, found a value");
    load_probe(f, "agent: {site: s}\ninputs:\n  p:\n    plugin: probe\n    devices:\n      - {unit: 2}\n");
    expect_one(f, 6, 9, "missing required option 'name'");
}

static void profiles_are_merged_under_their_users(void **s)
{
    struct fx *f = *s;
    char *pdir = tu_path(f->dir, "profiles");
    assert_int_equal(mkdir(pdir, 0755), 0);
    free(tu_write(pdir, "counter-x.yaml", "unit: 7\norder: CDAB\n"));
    free(tu_write(f->dir, "10.yaml",
                  "agent: {site: s}\n"
                  "inputs:\n"
                  "  p:\n"
                  "    plugin: probe\n"
                  "    devices:\n"
                  "      - {name: a, profile: counter-x}\n"
                  "      - {name: b, profile: counter-x, unit: 9}\n"));
    reset(f);
    f->rc = mt_config_load(&f->c, f->dir, TEST_PLUGIN_DIR, &f->reg, &f->d);
    expect_ok(f);
    const struct mittari_list *l = devices_of(f);
    const struct pdev *a = MITTARI_LIST_ITEM(l, struct pdev, 0);
    const struct pdev *b = MITTARI_LIST_ITEM(l, struct pdev, 1);
    assert_int_equal(a->unit, 7);
    assert_int_equal(a->order, 1);
    assert_int_equal(b->unit, 9); /* the device's own key wins */
    assert_int_equal(b->order, 1);

    /* an error inside a profile points into the profile file */
    free(tu_write(pdir, "counter-x.yaml", "unit: 700\n"));
    reset(f);
    f->rc = mt_config_load(&f->c, f->dir, TEST_PLUGIN_DIR, &f->reg, &f->d);
    assert_true(f->d.n >= 1);
    assert_non_null(strstr(f->d.v[0].pos.file, "profiles/counter-x.yaml"));
    assert_int_equal(f->d.v[0].pos.line, 1);
    assert_non_null(strstr(f->d.v[0].msg, "700 is out of range"));

    /* an unknown profile, with a suggestion */
    free(tu_write(pdir, "counter-x.yaml", "unit: 7\n"));
    free(tu_write(f->dir, "10.yaml",
                  "agent: {site: s}\n"
                  "inputs:\n"
                  "  p:\n"
                  "    plugin: probe\n"
                  "    devices:\n"
                  "      - {name: a, profile: counter-y}\n"));
    reset(f);
    f->rc = mt_config_load(&f->c, f->dir, TEST_PLUGIN_DIR, &f->reg, &f->d);
    expect_one(f, 6, 28, "unknown profile 'counter-y'");
    expect_hint(f, 0, "did you mean 'counter-x'?");

    /* issue 9: configuration.md's example said word_order; the key is
     * order, and the hint names it, from the device's own keys */
    free(tu_write(pdir, "counter-x.yaml", "word_order: CDAB\nzzzzzz: 1\n"));
    free(tu_write(f->dir, "10.yaml",
                  "agent: {site: s}\n"
                  "inputs:\n"
                  "  p:\n"
                  "    plugin: probe\n"
                  "    devices:\n"
                  "      - {name: a, profile: counter-x}\n"));
    reset(f);
    f->rc = mt_config_load(&f->c, f->dir, TEST_PLUGIN_DIR, &f->reg, &f->d);
    assert_int_equal(f->d.n, 2);
    assert_non_null(strstr(f->d.v[0].pos.file, "profiles/counter-x.yaml"));
    assert_non_null(strstr(
        f->d.v[0].msg, "unknown option 'word_order' for input 'p' (plugin probe), devices item 1"));
    expect_hint(f, 0, "did you mean 'order'?");
    expect_hint(f, 1, "'mittari plugins probe' lists its options");
    free(pdir);
}

static void profile_on_an_instance(void **s)
{
    struct fx *f = *s;
    char *pdir = tu_path(f->dir, "profiles");
    assert_int_equal(mkdir(pdir, 0755), 0);
    free(tu_write(pdir, "busy.yaml", "plugin: sim\nrate: 50\ndoors: 4\n"));
    free(tu_write(f->dir, "10.yaml",
                  "agent: {site: s}\ninputs:\n  lobby: {profile: busy, doors: 2}\n"));
    reset(f);
    f->rc = mt_config_load(&f->c, f->dir, PLUGIN_DIR, &f->reg, &f->d);
    expect_ok(f);
    const struct mt_inst_conf *ic = f->c->inputs[0];
    assert_string_equal(ic->plugin, "sim");
    assert_true(*(const double *)field(ic->plugin_ref->desc->options, ic->conf, "rate") == 50);
    assert_int_equal(*(const int64_t *)field(ic->plugin_ref->desc->options, ic->conf, "doors"), 2);
    free(pdir);
}

static void list_canonical_follows_items(void **s)
{
    struct fx *f = *s;
    load_probe(f, "agent: {site: s}\ninputs: {p: {plugin: probe, devices: [{name: a}]}}\n");
    expect_ok(f);
    char *one = strdup(f->c->inputs[0]->canonical);
    load_probe(f, "agent: {site: s}\ninputs: {p: {plugin: probe, devices: [{name: a, unit: 2}]}}\n");
    expect_ok(f);
    assert_string_not_equal(one, f->c->inputs[0]->canonical);
    load_probe(f, "agent: {site: s}\ninputs: {p: {plugin: probe, devices: [{name: a, unit: 1}]}}\n");
    expect_ok(f);
    assert_string_equal(one, f->c->inputs[0]->canonical);
    free(one);
}

static void plugin_check_reports_at_the_option(void **s)
{
    struct fx *f = *s;
    load_probe(f, "agent: {site: s}\n"
                  "inputs:\n"
                  "  p:\n"
                  "    plugin: probe\n"
                  "    devices:\n"
                  "      - {name: a}\n"
                  "      - {name: b}\n"
                  "      - {name: a, unit: 3}\n");
    expect_one(f, 8, 16, "input 'p' (plugin probe): device name a is used twice");
    /* an option left at its default: the instance's mapping */
    load_probe(f, "agent: {site: s}\ninputs:\n  p:\n    plugin: probe\n    counters: \"1,2\"\n"
                  "    bits: 40\n");
    expect_one(f, 6, 11, "counters are at most 32 bits here");
    load_probe(f, "agent: {site: s}\ninputs: {p: {plugin: probe, devices: [{name: a}, {name: b}]}}\n");
    expect_ok(f);
}

/* Regression: the registry grew an array of plugins by realloc, so the
 * inputs loaded before a new plugin pointed into freed memory (the demo with
 * serial devices crashed at start). */
static void plugins_of_many_kinds_stay_valid(void **s)
{
    struct fx *f = *s;
    load(f, "agent: {site: s}\n"
            "inputs:\n"
            "  a: {plugin: sim}\n"
            "  b: {plugin: feedback, port: /dev/null}\n"
            "  c: {plugin: serial, port: /dev/null,\n"
            "      values: [{field: IN, metric: visitors_in, kind: cumulative}]}\n"
            "  d: {plugin: cardreader, backend: pcsc}\n"
            "  e: {plugin: sim}\n");
    expect_ok(f);
    assert_int_equal(f->c->ninputs, 5);
    assert_true(f->reg.n >= 4);
    for (size_t i = 0; i < f->c->ninputs; i++) {
        const struct mt_inst_conf *ic = f->c->inputs[i];
        assert_string_equal(ic->plugin_ref->desc->name, ic->plugin);
    }
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(list_items_are_validated_and_filled),
        T(plugins_of_many_kinds_stay_valid),
        T(plugin_check_reports_at_the_option),
        T(list_item_errors_name_the_item),
        T(profiles_are_merged_under_their_users),
        T(profile_on_an_instance),
        T(list_canonical_follows_items),
        T(valid_config_loads_with_defaults),
        T(agent_options_are_applied),
        T(canonical_equal_for_equal_settings),
        T(canonical_differs_when_a_setting_changes),
        T(canonical_sees_every_tag),
        T(agent_keys_merge_across_files),
        T(load_errors_stop_before_meaning),
        T(missing_path_is_one_problem),
        T(unknown_section_suggests),
        T(unknown_agent_key),
        T(agent_section_must_be_a_mapping),
        T(agent_site_is_required),
        T(bad_site_and_id_names),
        T(unknown_timezone),
        T(timezone_must_name_a_zone_file),
        T(short_secret),
        T(input_without_plugin),
        T(unknown_plugin),
        T(misspelled_plugin_suggests),
        T(registry_names_lists_plugin_files),
        T(registry_scan_counts_problems),
        T(plugin_must_be_a_value),
        T(input_must_be_a_mapping),
        T(unknown_plugin_option_suggests),
        T(plugin_option_values_are_checked),
        T(output_without_type),
        T(unknown_output_type_suggests),
        T(file_output_needs_a_path),
        T(unknown_output_option_suggests),
        T(common_output_options),
        T(tags_become_sorted_json),
        T(tags_must_be_a_mapping),
        T(bad_tags),
        T(enabled_false_still_instantiates),
        T(rules_section),
        T(plugin_dir_from_config),
        T(plugin_dir_cannot_change_once_loaded),
        T(every_problem_is_reported),
        T(plugin_with_other_abi_major),
        T(plugin_with_newer_minor),
        T(shared_object_without_entry),
        T(plugin_with_bad_table),
        T(plugin_named_unlike_its_file),
        T(probe_plugin_options),
        T(desc_good_is_accepted),
        T(desc_null),
        T(desc_wrong_major),
        T(desc_newer_minor),
        T(desc_too_small),
        T(desc_bad_name),
        T(desc_missing_callback),
        T(desc_bad_option_table),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
