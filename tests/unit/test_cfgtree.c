/* cfgtree: YAML files -> one merged tree with positions; every load problem
 * with its message and file:line:column. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfgtree.h"

struct fx {
    struct mt_cfgdoc doc;
    struct mt_diags d;
    char *dir;
};

static int setup(void **s)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    mt_cfgdoc_init(&f->doc);
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
    tu_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* Asserts that problem i is at line:col (0:0 = no line) and its message
 * contains needle. */
static void expect_diag(const struct mt_diags *d, size_t i, int line, int col, const char *needle)
{
    assert_true(i < d->n);
    if (!strstr(d->v[i].msg, needle))
        fail_msg("diag %zu is '%s', expected it to contain '%s'", i, d->v[i].msg, needle);
    assert_int_equal(d->v[i].pos.line, line);
    assert_int_equal(d->v[i].pos.col, col);
}

static const char *str_at(const struct mt_node *map, const char *key)
{
    const struct mt_node *n = mt_node_get(map, key);
    assert_non_null(n);
    assert_int_equal(n->type, MT_NODE_SCALAR);
    return n->str;
}

/* Writes n bytes (may hold NUL) to dir/name; returns the path. */
static char *write_bytes(const char *dir, const char *name, const void *p, size_t n)
{
    char *path = tu_path(dir, name);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(p, 1, n, fp), n);
    fclose(fp);
    return path;
}

static void tree_has_types_values_and_positions(void **s)
{
    struct fx *f = *s;
    const char *text = "agent:\n"
                       "  site: lib\n"
                       "  id: \"quoted\"\n"
                       "  none:\n"
                       "  tilde: ~\n"
                       "  word_null: \"null\"\n"
                       "list: [a, b, c]\n";

    assert_int_equal(mt_cfg_load_file(&f->doc, "t.yaml", text, &f->d), 0);
    assert_int_equal(f->d.n, 0);
    assert_int_equal(f->doc.nfiles, 1);
    const struct mt_pair *ap = mt_node_pair(f->doc.root, "agent");
    assert_non_null(ap);
    assert_string_equal(ap->key_pos.file, "t.yaml");
    assert_int_equal(ap->key_pos.line, 1);
    assert_int_equal(ap->key_pos.col, 1);
    const struct mt_node *agent = ap->value;
    assert_int_equal(agent->type, MT_NODE_MAP);
    assert_int_equal(agent->npairs, 5);

    const struct mt_node *site = mt_node_get(agent, "site");
    assert_string_equal(site->str, "lib");
    assert_false(site->quoted);
    assert_int_equal(site->pos.line, 2);
    assert_int_equal(site->pos.col, 9);
    assert_int_equal(mt_node_pair(agent, "site")->key_pos.col, 3);

    const struct mt_node *id = mt_node_get(agent, "id");
    assert_string_equal(id->str, "quoted");
    assert_true(id->quoted);

    assert_int_equal(mt_node_get(agent, "none")->type, MT_NODE_NULL);
    assert_int_equal(mt_node_get(agent, "tilde")->type, MT_NODE_NULL);
    assert_int_equal(mt_node_get(agent, "word_null")->type, MT_NODE_SCALAR);
    assert_string_equal(str_at(agent, "word_null"), "null");

    const struct mt_node *list = mt_node_get(f->doc.root, "list");
    assert_int_equal(list->type, MT_NODE_SEQ);
    assert_int_equal(list->nitems, 3);
    assert_string_equal(list->items[2]->str, "c");
    assert_int_equal(list->items[2]->pos.line, 7);
    assert_int_equal(list->items[2]->pos.col, 14);
}

static void node_lookup_on_non_map_is_null(void **s)
{
    (void)s;
    struct mt_node scalar = {.type = MT_NODE_SCALAR, .str = "x"};
    assert_null(mt_node_get(&scalar, "x"));
    assert_null(mt_node_pair(NULL, "x"));
    assert_string_equal(mt_node_type_name(MT_NODE_SEQ), "a list");
    assert_string_equal(mt_node_type_name(MT_NODE_NULL), "nothing");
}

static void directory_files_merge_in_byte_order(void **s)
{
    struct fx *f = *s;
    /* byte order, not numeric: "10-" sorts before "9-" */
    free(tu_write(f->dir, "9-late.yaml",
                  "agent:\n"
                  "  site: from-9\n"
                  "  nested:\n"
                  "    b: 2\n"
                  "    deep: {y: late}\n"
                  "  list: [x]\n"
                  "  became_scalar: 5\n"));
    free(tu_write(f->dir, "10-early.yml",
                  "agent:\n"
                  "  site: from-10\n"
                  "  id: kept\n"
                  "  nested:\n"
                  "    a: 1\n"
                  "    b: 1\n"
                  "    deep: {x: early}\n"
                  "  list: [p, q, r]\n"
                  "  became_scalar: {m: 1}\n"
                  "outputs: {o: {type: file}}\n"));

    assert_int_equal(mt_cfg_load(&f->doc, f->dir, &f->d), 0);
    assert_int_equal(f->d.n, 0);
    assert_int_equal(f->doc.nfiles, 2);
    const struct mt_node *agent = mt_node_get(f->doc.root, "agent");
    assert_string_equal(str_at(agent, "site"), "from-9"); /* later scalar wins */
    assert_string_equal(str_at(agent, "id"), "kept");     /* untouched key stays */
    const struct mt_node *nested = mt_node_get(agent, "nested");
    assert_string_equal(str_at(nested, "a"), "1"); /* maps merge deeply */
    assert_string_equal(str_at(nested, "b"), "2");
    const struct mt_node *deep = mt_node_get(nested, "deep");
    assert_string_equal(str_at(deep, "x"), "early");
    assert_string_equal(str_at(deep, "y"), "late");
    const struct mt_node *list = mt_node_get(agent, "list");
    assert_int_equal(list->type, MT_NODE_SEQ); /* lists are replaced, not appended */
    assert_int_equal(list->nitems, 1);
    assert_string_equal(list->items[0]->str, "x");
    assert_string_equal(str_at(agent, "became_scalar"), "5");
    assert_non_null(mt_node_get(f->doc.root, "outputs"));
    /* the winning value remembers the file it came from */
    const struct mt_pair *sp = mt_node_pair(agent, "site");
    assert_non_null(strstr(sp->key_pos.file, "9-late.yaml"));
    assert_non_null(strstr(mt_node_get(agent, "id")->pos.file, "10-early.yml"));
}

static void empty_value_does_not_replace_a_mapping(void **s)
{
    struct fx *f = *s;
    /* a drop-in with "inputs:" and nothing under it keeps earlier inputs */
    free(tu_write(f->dir, "10.yaml", "inputs:\n  a: {plugin: sim}\n"));
    free(tu_write(f->dir, "20.yaml", "inputs:\n"));
    assert_int_equal(mt_cfg_load(&f->doc, f->dir, &f->d), 0);
    const struct mt_node *in = mt_node_get(f->doc.root, "inputs");
    assert_non_null(in);
    assert_int_equal(in->type, MT_NODE_MAP);
    assert_non_null(mt_node_get(in, "a"));
}

static void same_key_in_two_files_is_no_duplicate(void **s)
{
    struct fx *f = *s;
    assert_int_equal(mt_cfg_load_file(&f->doc, "a.yaml", "agent: {site: a}\n", &f->d), 0);
    assert_int_equal(mt_cfg_load_file(&f->doc, "b.yaml", "agent: {site: b}\n", &f->d), 0);
    assert_int_equal(f->d.n, 0);
    assert_string_equal(str_at(mt_node_get(f->doc.root, "agent"), "site"), "b");
    assert_int_equal(f->doc.nfiles, 2);
}

static void only_yaml_and_yml_names_are_read(void **s)
{
    struct fx *f = *s;
    free(tu_write(f->dir, "a.yaml", "a: 1\n"));
    free(tu_write(f->dir, "b.yml", "b: 1\n"));
    /* these would be syntax errors if they were read */
    free(tu_write(f->dir, "c.txt", "c: [\n"));
    free(tu_write(f->dir, "d.yaml~", "d: [\n"));
    free(tu_write(f->dir, "e.yaml.bak", "e: [\n"));
    free(tu_write(f->dir, "f.YAML", "f: [\n"));
    free(tu_write(f->dir, "yaml", "g: [\n"));

    assert_int_equal(mt_cfg_load(&f->doc, f->dir, &f->d), 0);
    assert_int_equal(f->d.n, 0);
    assert_int_equal(f->doc.nfiles, 2);
    assert_non_null(mt_node_get(f->doc.root, "a"));
    assert_non_null(mt_node_get(f->doc.root, "b"));
    assert_int_equal(f->doc.root->npairs, 2);
}

static void dotfiles_are_ignored(void **s)
{
    struct fx *f = *s;
    free(tu_write(f->dir, "a.yaml", "a: 1\n"));
    free(tu_write(f->dir, ".hidden.yaml", "a: 2\nbroken: [\n"));
    free(tu_write(f->dir, ".yaml", "a: 3\n"));

    assert_int_equal(mt_cfg_load(&f->doc, f->dir, &f->d), 0);
    assert_int_equal(f->d.n, 0);
    assert_int_equal(f->doc.nfiles, 1);
    assert_string_equal(str_at(f->doc.root, "a"), "1");
}

static void empty_and_comment_only_files_are_fine(void **s)
{
    struct fx *f = *s;
    free(tu_write(f->dir, "10-empty.yaml", ""));
    free(tu_write(f->dir, "20-comment.yaml", "# nothing here yet\n"));
    free(tu_write(f->dir, "30-doc.yaml", "---\n...\n"));

    assert_int_equal(mt_cfg_load(&f->doc, f->dir, &f->d), 0);
    assert_int_equal(f->d.n, 0);
    assert_int_equal(f->doc.nfiles, 3);
    assert_int_equal(f->doc.root->type, MT_NODE_MAP);
    assert_int_equal(f->doc.root->npairs, 0);
}

static void single_file_path_is_read(void **s)
{
    struct fx *f = *s;
    char *p = tu_write(f->dir, "only.conf", "agent: {site: x}\n");
    /* a file named on the command line is read whatever its extension */
    assert_int_equal(mt_cfg_load(&f->doc, p, &f->d), 0);
    assert_string_equal(str_at(mt_node_get(f->doc.root, "agent"), "site"), "x");
    assert_string_equal(mt_node_pair(f->doc.root, "agent")->key_pos.file, p);
    free(p);
}

static void duplicate_key_names_both_lines(void **s)
{
    struct fx *f = *s;
    const char *text = "agent:\n"
                       "  site: a\n"
                       "  id: x\n"
                       "  site: b\n";
    assert_int_equal(mt_cfg_load_file(&f->doc, "dup.yaml", text, &f->d), 1);
    assert_int_equal(f->d.n, 1);
    expect_diag(&f->d, 0, 4, 3, "duplicate key 'site'");
    assert_string_equal(f->d.v[0].pos.file, "dup.yaml");
    assert_non_null(f->d.v[0].hint);
    assert_non_null(strstr(f->d.v[0].hint, "first set at line 2"));
    /* a file with a problem is not merged */
    assert_null(mt_node_get(f->doc.root, "agent"));
}

static void duplicate_key_in_flow_mapping(void **s)
{
    struct fx *f = *s;
    assert_int_equal(mt_cfg_load_file(&f->doc, "f.yaml", "\n\nx: {a: 1, b: 2, a: 3}\n", &f->d), 1);
    expect_diag(&f->d, 0, 3, 17, "duplicate key 'a'");
    assert_non_null(strstr(f->d.v[0].hint, "line 3"));
}

static void syntax_error_has_file_line_col(void **s)
{
    struct fx *f = *s;
    /* a tab cannot indent YAML */
    char *p = tu_write(f->dir, "tab.yaml", "agent:\n  site: x\n\tid: y\n");
    assert_int_equal(mt_cfg_load(&f->doc, p, &f->d), 1);
    assert_int_equal(f->d.n, 1);
    expect_diag(&f->d, 0, 3, 1, "YAML syntax");
    assert_non_null(strstr(f->d.v[0].msg, "tab character"));
    assert_string_equal(f->d.v[0].pos.file, p);

    char *out = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&out, &len);
    mt_diags_print(&f->d, m);
    fclose(m);
    char want[600];
    snprintf(want, sizeof(want), "%s:3:1: error: YAML syntax:", p);
    if (strncmp(out, want, strlen(want)) != 0)
        fail_msg("printed '%s', expected it to start with '%s'", out, want);
    assert_non_null(strstr(out, "\n  hint: check indentation"));
    free(out);
    free(p);
}

static void syntax_error_missing_space_after_colon(void **s)
{
    struct fx *f = *s;
    const char *text = "agent:\n  site:lib\n  id: x\n";
    assert_int_equal(mt_cfg_load_file(&f->doc, "c.yaml", text, &f->d), 1);
    expect_diag(&f->d, 0, 3, 5, "YAML syntax: mapping values are not allowed");
}

static void syntax_error_unclosed_flow(void **s)
{
    struct fx *f = *s;
    assert_int_equal(mt_cfg_load_file(&f->doc, "u.yaml", "a: [1, 2\nb: 3\n", &f->d), 1);
    assert_int_equal(f->d.n, 1);
    assert_non_null(strstr(f->d.v[0].msg, "YAML syntax"));
    assert_int_equal(f->d.v[0].pos.line, 2);
    assert_true(f->d.v[0].pos.col >= 1);
}

static void aliases_are_refused(void **s)
{
    struct fx *f = *s;
    const char *text = "agent:\n  site: &s lib\n  id: *s\n";
    assert_int_equal(mt_cfg_load_file(&f->doc, "al.yaml", text, &f->d), 1);
    assert_int_equal(f->d.n, 1);
    expect_diag(&f->d, 0, 3, 7, "YAML aliases (*s) are not supported");
}

static void merge_key_alias_is_refused(void **s)
{
    struct fx *f = *s;
    const char *text = "base: &b {x: 1}\nother:\n  <<: *b\n";
    assert_int_equal(mt_cfg_load_file(&f->doc, "mk.yaml", text, &f->d), 1);
    expect_diag(&f->d, 0, 3, 7, "YAML aliases (*b)");
}

static void multiple_documents_are_refused(void **s)
{
    struct fx *f = *s;
    const char *text = "agent: {site: a}\n---\nagent: {site: b}\n";
    assert_int_equal(mt_cfg_load_file(&f->doc, "m.yaml", text, &f->d), 1);
    assert_int_equal(f->d.n, 1);
    expect_diag(&f->d, 0, 2, 1, "only one YAML document per file");
    assert_null(mt_node_get(f->doc.root, "agent"));
}

static void top_level_list_is_refused(void **s)
{
    struct fx *f = *s;
    assert_int_equal(mt_cfg_load_file(&f->doc, "l.yaml", "# c\n- agent\n- inputs\n", &f->d), 1);
    assert_int_equal(f->d.n, 1);
    expect_diag(&f->d, 0, 2, 1, "the top level must be a mapping of sections, found a list");
}

static void top_level_scalar_is_refused(void **s)
{
    struct fx *f = *s;
    assert_int_equal(mt_cfg_load_file(&f->doc, "v.yaml", "just words\n", &f->d), 1);
    expect_diag(&f->d, 0, 1, 1, "found a value");
}

static void keys_must_be_scalars(void **s)
{
    struct fx *f = *s;
    assert_int_equal(mt_cfg_load_file(&f->doc, "k.yaml", "a: 1\n? [x, y]\n: 2\n", &f->d), 1);
    expect_diag(&f->d, 0, 2, 3, "a key must be a plain value");
}

static void env_references_are_expanded(void **s)
{
    struct fx *f = *s;
    setenv("MT_TEST_A", "hello", 1);
    setenv("MT_TEST_EMPTY", "", 1);
    unsetenv("MT_TEST_UNSET");
    const char *text = "plain: ${MT_TEST_A}\n"
                       "inside: \"x-${MT_TEST_A}-${MT_TEST_A}/y\"\n"
                       "dflt: ${MT_TEST_UNSET:-fallback}\n"
                       "dflt_set: ${MT_TEST_A:-fallback}\n"
                       "empty_dflt: ${MT_TEST_EMPTY:-used}\n"
                       "empty: \"[${MT_TEST_EMPTY}]\"\n"
                       "empty_default_text: \"[${MT_TEST_UNSET:-}]\"\n"
                       "escaped: $${MT_TEST_A}\n"
                       "dollar: $MT_TEST_A and $$ and a$b\n"
                       "single_quoted: '${MT_TEST_A}'\n";
    assert_int_equal(mt_cfg_load_file(&f->doc, "e.yaml", text, &f->d), 0);
    assert_int_equal(f->d.n, 0);
    const struct mt_node *r = f->doc.root;
    assert_string_equal(str_at(r, "plain"), "hello");
    assert_string_equal(str_at(r, "inside"), "x-hello-hello/y");
    assert_string_equal(str_at(r, "dflt"), "fallback");
    assert_string_equal(str_at(r, "dflt_set"), "hello");
    assert_string_equal(str_at(r, "empty_dflt"), "used");
    assert_string_equal(str_at(r, "empty"), "[]");
    assert_string_equal(str_at(r, "empty_default_text"), "[]");
    assert_string_equal(str_at(r, "escaped"), "${MT_TEST_A}");
    assert_string_equal(str_at(r, "dollar"), "$MT_TEST_A and $$ and a$b");
    assert_string_equal(str_at(r, "single_quoted"), "hello");
}

static void env_long_default_is_kept_whole(void **s)
{
    struct fx *f = *s;
    char dflt[301], text[400];
    for (size_t i = 0; i < 300; i++)
        dflt[i] = (char)('a' + i % 26);
    dflt[300] = 0;
    unsetenv("MT_TEST_UNSET");
    snprintf(text, sizeof(text), "v: ${MT_TEST_UNSET:-%s}\n", dflt);
    assert_int_equal(mt_cfg_load_file(&f->doc, "ld.yaml", text, &f->d), 0);
    assert_string_equal(str_at(f->doc.root, "v"), dflt);
}

static void env_unset_variable_is_an_error(void **s)
{
    struct fx *f = *s;
    unsetenv("MT_TEST_UNSET");
    assert_int_equal(mt_cfg_load_file(&f->doc, "u.yaml", "a: 1\nb: x/${MT_TEST_UNSET}\n", &f->d),
                     1);
    assert_int_equal(f->d.n, 1);
    expect_diag(&f->d, 0, 2, 4, "environment variable MT_TEST_UNSET is not set");
    assert_non_null(strstr(f->d.v[0].hint, "${NAME:-value}"));
}

static void env_bad_name_is_an_error(void **s)
{
    struct fx *f = *s;
    const char *text = "a: ${bad-name}\nb: ${}\nc: \"${x y:-z}\"\n";
    assert_int_equal(mt_cfg_load_file(&f->doc, "b.yaml", text, &f->d), 3);
    assert_int_equal(f->d.n, 3);
    expect_diag(&f->d, 0, 1, 4, "bad environment reference '${bad-name}'");
    expect_diag(&f->d, 1, 2, 4, "bad environment reference '${}'");
    expect_diag(&f->d, 2, 3, 4, "bad environment reference '${x y}'");
}

static void env_unterminated_reference(void **s)
{
    struct fx *f = *s;
    assert_int_equal(mt_cfg_load_file(&f->doc, "t.yaml", "\na: \"${HOME\"\n", &f->d), 1);
    expect_diag(&f->d, 0, 2, 4, "unterminated ${ in '${HOME'");
}

/* "[[[...]]]" nested n deep as the value of key a */
static char *nested_text(int n)
{
    char *t = malloc((size_t)n * 2 + 8);
    assert_non_null(t);
    strcpy(t, "a: ");
    size_t k = 3;
    for (int i = 0; i < n; i++)
        t[k++] = '[';
    for (int i = 0; i < n; i++)
        t[k++] = ']';
    t[k++] = '\n';
    t[k] = 0;
    return t;
}

static void nesting_depth_is_limited(void **s)
{
    struct fx *f = *s;
    /* root map is level 0, the value of a level 1: 32 levels are allowed */
    char *ok = nested_text(32);
    assert_int_equal(mt_cfg_load_file(&f->doc, "ok.yaml", ok, &f->d), 0);
    assert_int_equal(f->d.n, 0);
    free(ok);

    char *deep = nested_text(33);
    assert_int_equal(mt_cfg_load_file(&f->doc, "deep.yaml", deep, &f->d), 1);
    assert_int_equal(f->d.n, 1);
    expect_diag(&f->d, 0, 1, 36, "configuration nested deeper than 32 levels");
    free(deep);

    /* far deeper: still one problem, no stack trouble */
    char *huge = nested_text(100000);
    assert_int_equal(mt_cfg_load_file(&f->doc, "huge.yaml", huge, &f->d), 1);
    assert_int_equal(f->d.n, 2);
    free(huge);
}

static void nul_byte_in_file_is_refused(void **s)
{
    struct fx *f = *s;
    static const char bytes[] = "agent:\n  site: a\0b\n";
    char *p = write_bytes(f->dir, "nul.yaml", bytes, sizeof(bytes) - 1);
    assert_int_equal(mt_cfg_load(&f->doc, p, &f->d), 1);
    assert_int_equal(f->d.n, 1);
    expect_diag(&f->d, 0, 0, 0, "file contains NUL bytes");
    assert_string_equal(f->d.v[0].pos.file, p);
    assert_null(mt_node_get(f->doc.root, "agent"));
    free(p);
}

/* n bytes of comment lines, then "k: v\n" (counted in n) */
static char *padded_text(size_t n)
{
    char *t = malloc(n + 1);
    assert_non_null(t);
    memset(t, '#', n);
    for (size_t i = 79; i < n; i += 80)
        t[i] = '\n';
    memcpy(t + n - 6, "\nk: v\n", 6);
    t[n] = 0;
    return t;
}

static void file_over_one_mib_is_refused(void **s)
{
    struct fx *f = *s;
    char *exact = padded_text(1 << 20);
    char *p = write_bytes(f->dir, "exact.yaml", exact, 1 << 20);
    assert_int_equal(mt_cfg_load(&f->doc, p, &f->d), 0);
    assert_int_equal(f->d.n, 0);
    assert_string_equal(str_at(f->doc.root, "k"), "v");
    free(p);
    free(exact);

    char *big = padded_text((1 << 20) + 1);
    p = write_bytes(f->dir, "big.yaml", big, (1 << 20) + 1);
    assert_int_equal(mt_cfg_load(&f->doc, p, &f->d), 1);
    assert_int_equal(f->d.n, 1);
    expect_diag(&f->d, 0, 0, 0, "file is larger than 1048576 bytes");
    assert_string_equal(f->d.v[0].pos.file, p);
    free(p);
    free(big);
}

static void missing_path_is_reported(void **s)
{
    struct fx *f = *s;
    char *p = tu_path(f->dir, "nope");
    assert_int_equal(mt_cfg_load(&f->doc, p, &f->d), 1);
    assert_int_equal(f->d.n, 1);
    expect_diag(&f->d, 0, 0, 0, "cannot open configuration: No such file or directory");
    assert_string_equal(f->d.v[0].pos.file, p);
    assert_non_null(strstr(f->d.v[0].hint, "-c DIR"));
    free(p);
}

static void directory_without_yaml_files(void **s)
{
    struct fx *f = *s;
    free(tu_write(f->dir, "README", "not config\n"));
    assert_int_equal(mt_cfg_load(&f->doc, f->dir, &f->d), 1);
    assert_int_equal(f->d.n, 1);
    expect_diag(&f->d, 0, 0, 0, "no configuration files in this directory");
    assert_string_equal(f->d.v[0].pos.file, f->dir);
    assert_int_equal(f->doc.nfiles, 0);
}

static void bad_file_in_directory_does_not_stop_the_others(void **s)
{
    struct fx *f = *s;
    free(tu_write(f->dir, "10-ok.yaml", "a: 1\n"));
    char *bad = tu_write(f->dir, "20-bad.yaml", "b: [\n");
    free(tu_write(f->dir, "30-ok.yaml", "c: 1\n"));
    assert_int_equal(mt_cfg_load(&f->doc, f->dir, &f->d), 1);
    assert_int_equal(f->d.n, 1);
    assert_string_equal(f->d.v[0].pos.file, bad);
    assert_non_null(strstr(f->d.v[0].msg, "YAML syntax"));
    assert_non_null(mt_node_get(f->doc.root, "a"));
    assert_null(mt_node_get(f->doc.root, "b"));
    assert_non_null(mt_node_get(f->doc.root, "c"));
    free(bad);
}

static void diags_print_formats(void **s)
{
    struct fx *f = *s;
    struct mt_pos full = {"x.yaml", 3, 7}, fileonly = {"y.yaml", 0, 0};
    mt_diags_add(&f->d, &full, "try this", "bad %s", "thing");
    mt_diags_add(&f->d, &fileonly, NULL, "whole file");
    mt_diags_add(&f->d, NULL, NULL, "no place %d", 42);

    char *out = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&out, &len);
    mt_diags_print(&f->d, m);
    fclose(m);
    assert_string_equal(out, "x.yaml:3:7: error: bad thing\n"
                             "  hint: try this\n"
                             "y.yaml: error: whole file\n"
                             "error: no place 42\n");
    free(out);
}

static void diags_copy_their_strings(void **s)
{
    struct fx *f = *s;
    char file[] = "gone.yaml", hint[] = "a hint";
    struct mt_pos pos = {file, 1, 2};
    mt_diags_add(&f->d, &pos, hint, "m");
    memset(file, 'X', sizeof(file) - 1);
    memset(hint, 'X', sizeof(hint) - 1);
    assert_string_equal(f->d.v[0].pos.file, "gone.yaml");
    assert_string_equal(f->d.v[0].hint, "a hint");
}

/* issue 9: the '}' of an inner reference ended the outer one, leaving
 * "${B}" as text; defaults nest now, and are expanded only when used */
static void env_defaults_nest(void **s)
{
    struct fx *f = *s;
    setenv("MT_TEST_A", "hello", 1);
    unsetenv("MT_TEST_UNSET");
    unsetenv("MT_TEST_UNSET2");
    const char *text = "one: ${MT_TEST_UNSET:-${MT_TEST_A}}\n"
                       "two: ${MT_TEST_UNSET:-${MT_TEST_UNSET2:-deep}}/x\n"
                       "set: ${MT_TEST_A:-${MT_TEST_UNSET}}\n"
                       "text: \"${MT_TEST_UNSET:-a}b}\"\n"
                       "lit: ${MT_TEST_UNSET:-$${MT_TEST_A}}\n";
    assert_int_equal(mt_cfg_load_file(&f->doc, "n.yaml", text, &f->d), 0);
    assert_int_equal(f->d.n, 0);
    const struct mt_node *r = f->doc.root;
    assert_string_equal(str_at(r, "one"), "hello");
    assert_string_equal(str_at(r, "two"), "deep/x");
    assert_string_equal(str_at(r, "set"), "hello"); /* the unused default needs nothing */
    assert_string_equal(str_at(r, "text"), "ab}");
    assert_string_equal(str_at(r, "lit"), "${MT_TEST_A}");
}

static void env_nested_default_unset_is_an_error(void **s)
{
    struct fx *f = *s;
    unsetenv("MT_TEST_UNSET");
    unsetenv("MT_TEST_UNSET2");
    assert_int_equal(
        mt_cfg_load_file(&f->doc, "n.yaml", "a: ${MT_TEST_UNSET:-${MT_TEST_UNSET2}}\n", &f->d), 1);
    expect_diag(&f->d, 0, 1, 4, "environment variable MT_TEST_UNSET2 is not set");
    mt_diags_free(&f->d);
    assert_int_equal(
        mt_cfg_load_file(&f->doc, "n.yaml", "a: ${MT_TEST_UNSET:-${MT_TEST_UNSET2:-x}\n", &f->d),
        1);
    expect_diag(&f->d, 0, 1, 4, "unterminated ${");
    /* nesting is bounded */
    mt_diags_free(&f->d);
    char text[512] = "a: ";
    for (int i = 0; i < 12; i++)
        strcat(text, "${MT_TEST_UNSET:-");
    strcat(text, "x");
    for (int i = 0; i < 12; i++)
        strcat(text, "}");
    strcat(text, "\n");
    assert_int_equal(mt_cfg_load_file(&f->doc, "n.yaml", text, &f->d), 1);
    expect_diag(&f->d, 0, 1, 4, "nested deeper than 8 levels");
}

/* issue 9: tags were silently dropped; another YAML reader would act on
 * them (!!python/object/apply runs a function) */
static void yaml_tags_are_refused(void **s)
{
    struct fx *f = *s;
    const char *text = "a: !!python/object/apply:os.system [\"ls\"]\n"
                       "b: !!str 0123\n"
                       "c: !local {x: 1}\n"
                       "!!str d: 1\n"
                       "e: plain\n";
    assert_int_equal(mt_cfg_load_file(&f->doc, "t.yaml", text, &f->d), 4);
    expect_diag(&f->d, 0, 1, 4, "YAML tags (!!python/object/apply:os.system) are not supported");
    expect_diag(&f->d, 1, 2, 4, "YAML tags (!!str) are not supported");
    expect_diag(&f->d, 2, 3, 4, "YAML tags (!local) are not supported");
    expect_diag(&f->d, 3, 4, 1, "YAML tags (!!str) are not supported");
    assert_non_null(strstr(f->d.v[0].hint, "quote"));
}

/* issue 9: a newline in a value quoted by a message was printed raw, so one
 * problem could look like two, the second at a forged place */
static void diags_escape_control_characters(void **s)
{
    struct fx *f = *s;
    struct mt_pos pos = {"x.yaml", 1, 2};
    mt_diags_add(&f->d, &pos, "hint\twith tab", "bad name '%s'",
                 "a\nx.yaml:9:9: error: b\r\x01\x7f");
    assert_string_equal(f->d.v[0].msg, "bad name 'a\\nx.yaml:9:9: error: b\\r\\x01\\x7f'");
    assert_string_equal(f->d.v[0].hint, "hint\\twith tab");
    char *out = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&out, &len);
    mt_diags_print(&f->d, m);
    fclose(m);
    assert_string_equal(out, "x.yaml:1:2: error: bad name 'a\\nx.yaml:9:9: error: b\\r\\x01\\x7f'\n"
                             "  hint: hint\\twith tab\n");
    free(out);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(tree_has_types_values_and_positions),
        T(node_lookup_on_non_map_is_null),
        T(directory_files_merge_in_byte_order),
        T(same_key_in_two_files_is_no_duplicate),
        T(empty_value_does_not_replace_a_mapping),
        T(only_yaml_and_yml_names_are_read),
        T(dotfiles_are_ignored),
        T(empty_and_comment_only_files_are_fine),
        T(single_file_path_is_read),
        T(duplicate_key_names_both_lines),
        T(duplicate_key_in_flow_mapping),
        T(syntax_error_has_file_line_col),
        T(syntax_error_missing_space_after_colon),
        T(syntax_error_unclosed_flow),
        T(aliases_are_refused),
        T(merge_key_alias_is_refused),
        T(multiple_documents_are_refused),
        T(top_level_list_is_refused),
        T(top_level_scalar_is_refused),
        T(keys_must_be_scalars),
        T(env_references_are_expanded),
        T(env_long_default_is_kept_whole),
        T(env_unset_variable_is_an_error),
        T(env_bad_name_is_an_error),
        T(env_unterminated_reference),
        T(env_defaults_nest),
        T(env_nested_default_unset_is_an_error),
        T(yaml_tags_are_refused),
        T(diags_escape_control_characters),
        T(nesting_depth_is_limited),
        T(nul_byte_in_file_is_refused),
        T(file_over_one_mib_is_refused),
        T(missing_path_is_reported),
        T(directory_without_yaml_files),
        T(bad_file_in_directory_does_not_stop_the_others),
        T(diags_print_formats),
        T(diags_copy_their_strings),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
