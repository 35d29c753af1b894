/*
 * The plugin registry's search path (agent.plugin_path, issue 13): the
 * directories in order, then the plugin dir; a name in two directories
 * comes from the first; a file replaced on disk after loading is warned
 * about once and not loaded again. Plugins: the test plugin "probe" and the
 * build's "sim", copied into private directories.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "plugin.h"

struct fx {
    char *tmp, *a, *b, *base;
    struct mt_registry reg;
};

static char *mkdir_in(const char *tmp, const char *name)
{
    char *p = tu_path(tmp, name);
    assert_int_equal(mkdir(p, 0755), 0);
    return p;
}

/* copies SRC_DIR/name.so to dir/name.so */
static void put(const char *src_dir, const char *name, const char *dir)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "install -m 0644 '%s/%s.so' '%s/%s.so'", src_dir, name, dir, name);
    assert_int_equal(system(cmd), 0);
}

static int setup(void **s)
{
    struct fx *f = calloc(1, sizeof(*f));
    f->tmp = tu_tmpdir();
    f->a = mkdir_in(f->tmp, "a");
    f->b = mkdir_in(f->tmp, "b");
    f->base = mkdir_in(f->tmp, "base");
    *s = f;
    return 0;
}

static int teardown(void **s)
{
    struct fx *f = *s;
    mt_registry_free(&f->reg);
    tu_rmtree(f->tmp);
    free(f->tmp);
    free(f->a);
    free(f->b);
    free(f->base);
    free(f);
    return 0;
}

static void path_parsing(void **s)
{
    struct fx *f = *s;
    assert_int_equal(mt_registry_init(&f->reg, "/base"), 0);
    assert_int_equal(mt_registry_set_path(&f->reg, "/x::/y/z:"), 0);
    assert_int_equal(f->reg.npath, 2); /* empty entries skipped */
    assert_string_equal(f->reg.path[0], "/x");
    assert_string_equal(f->reg.path[1], "/y/z");
    char *t = mt_registry_path_text(&f->reg);
    assert_string_equal(t, "/x:/y/z:/base");
    free(t);
    mt_registry_free(&f->reg);
    assert_int_equal(mt_registry_init(&f->reg, "/base"), 0);
    assert_int_equal(mt_registry_set_path(&f->reg, NULL), 0);
    assert_int_equal(mt_registry_set_path(&f->reg, ""), 0);
    assert_int_equal(f->reg.npath, 0);
    t = mt_registry_path_text(&f->reg);
    assert_string_equal(t, "/base");
    free(t);
}

static void path_before_plugin_dir(void **s)
{
    struct fx *f = *s;
    const struct mt_plugin *p;
    char err[600], want[1024];

    put(TEST_PLUGIN_DIR, "probe", f->b);
    put(PLUGIN_DIR, "sim", f->base);
    put(PLUGIN_DIR, "sim", f->a); /* the same name earlier in the path */
    assert_int_equal(mt_registry_init(&f->reg, f->base), 0);
    char path[1024];
    snprintf(path, sizeof(path), "%s:%s", f->a, f->b);
    assert_int_equal(mt_registry_set_path(&f->reg, path), 0);

    assert_int_equal(mt_registry_get(&f->reg, "probe", &p, err, sizeof(err)), 0);
    snprintf(want, sizeof(want), "%s/probe.so", f->b);
    assert_string_equal(p->path, want);
    assert_int_equal(mt_registry_get(&f->reg, "sim", &p, err, sizeof(err)), 0);
    snprintf(want, sizeof(want), "%s/sim.so", f->a);
    assert_string_equal(p->path, want);

    assert_int_not_equal(mt_registry_get(&f->reg, "nope", &p, err, sizeof(err)), 0);
    snprintf(want, sizeof(want), "no plugin 'nope' in %s:%s:%s", f->a, f->b, f->base);
    assert_string_equal(err, want);
}

static void scan_takes_each_name_once(void **s)
{
    struct fx *f = *s;
    put(PLUGIN_DIR, "sim", f->a);
    put(PLUGIN_DIR, "sim", f->base);
    put(TEST_PLUGIN_DIR, "probe", f->base);
    assert_int_equal(mt_registry_init(&f->reg, f->base), 0);
    assert_int_equal(mt_registry_set_path(&f->reg, f->a), 0);
    assert_int_equal(mt_registry_scan(&f->reg, NULL), 0); /* no problems */
    assert_int_equal(f->reg.n, 2);
    for (size_t i = 0; i < f->reg.n; i++)
        if (strcmp(f->reg.v[i]->name, "sim") == 0)
            assert_non_null(strstr(f->reg.v[i]->path, "/a/sim.so"));
}

static void replaced_file_is_warned_once_and_kept(void **s)
{
    struct fx *f = *s;
    const struct mt_plugin *p, *again;
    char err[600];

    put(PLUGIN_DIR, "sim", f->base);
    assert_int_equal(mt_registry_init(&f->reg, f->base), 0);
    assert_int_equal(mt_registry_get(&f->reg, "sim", &p, err, sizeof(err)), 0);

    tu_capture_start();
    assert_int_equal(mt_registry_get(&f->reg, "sim", &again, err, sizeof(err)), 0);
    assert_false(tu_captured("changed on disk")); /* unchanged: nothing said */
    usleep(20000);
    put(PLUGIN_DIR, "sim", f->base); /* install: a new file */
    assert_int_equal(mt_registry_get(&f->reg, "sim", &again, err, sizeof(err)), 0);
    assert_ptr_equal(again, p); /* the loaded plugin stays */
    assert_true(tu_captured("sim.so changed on disk since it was loaded"));
    assert_true(tu_captured("restart the agent"));
    tu_capture_stop();

    tu_capture_start();
    assert_int_equal(mt_registry_get(&f->reg, "sim", &again, err, sizeof(err)), 0);
    assert_false(tu_captured("changed on disk")); /* once */
    tu_capture_stop();
}

static void removed_file_is_warned(void **s)
{
    struct fx *f = *s;
    const struct mt_plugin *p;
    char err[600], so[1024];

    put(PLUGIN_DIR, "sim", f->base);
    assert_int_equal(mt_registry_init(&f->reg, f->base), 0);
    assert_int_equal(mt_registry_get(&f->reg, "sim", &p, err, sizeof(err)), 0);
    snprintf(so, sizeof(so), "%s/sim.so", f->base);
    assert_int_equal(unlink(so), 0);
    tu_capture_start();
    assert_int_equal(mt_registry_get(&f->reg, "sim", &p, err, sizeof(err)), 0);
    assert_true(tu_captured("sim.so was removed since it was loaded"));
    tu_capture_stop();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(path_parsing, setup, teardown),
        cmocka_unit_test_setup_teardown(path_before_plugin_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(scan_takes_each_name_once, setup, teardown),
        cmocka_unit_test_setup_teardown(replaced_file_is_warned_once_and_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(removed_file_is_warned, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
