/*
 * Output modules (agent/outmod.c): the checks of a module's descriptor (its
 * interface id first, size, name, callbacks, option table), finding a type
 * (built in, not installed, unknown with a did-you-mean) and a real module
 * that cannot be loaded into an executable that does not export the agent's
 * functions. Loading into the real agent: tests/integration/
 * test_output_modules.sh.
 */
#include "testutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "outmod.h"

static char err[1000], hint[400];

static int check(const struct mt_output_module *m, const char *name)
{
    err[0] = 0;
    return mt_outmod_check(m, name, err, sizeof(err));
}

static void check_accepts_a_good_descriptor(void **s)
{
    (void)s;
    struct mt_output_module m = {mt_outmod_interface(), sizeof(m), &mt_output_file};
    assert_int_equal(check(&m, "file"), 0);
}

static void check_refuses_another_build_first(void **s)
{
    (void)s;
    /* a NULL type too: the id is read before anything else */
    struct mt_output_module m = {"0.0.9/0123456789abcdef", sizeof(m), NULL};
    assert_int_equal(check(&m, "http"), MITTARI_EABI);
    assert_non_null(strstr(err, "built for mittari 0.0.9/0123456789abcdef, this agent is "));
    assert_non_null(strstr(err, mt_outmod_interface()));
    m.interface = NULL;
    assert_int_equal(check(&m, "http"), MITTARI_EABI);
    assert_non_null(strstr(err, "(unknown)"));
    assert_int_equal(check(NULL, "http"), MITTARI_EPLUGIN);
}

static void check_refuses_a_short_descriptor(void **s)
{
    (void)s;
    struct mt_output_module m = {mt_outmod_interface(), 8, &mt_output_file};
    assert_int_equal(check(&m, "file"), MITTARI_EABI);
    assert_non_null(strstr(err, "descriptor is 8 bytes"));
}

static void check_refuses_a_misnamed_type(void **s)
{
    (void)s;
    struct mt_output_module m = {mt_outmod_interface(), sizeof(m), &mt_output_file};
    assert_int_equal(check(&m, "http"), MITTARI_EPLUGIN);
    assert_string_equal(err, "file is named output-http.so but its type is 'file'");
}

static void check_refuses_missing_callbacks(void **s)
{
    (void)s;
    struct mt_output_type t = mt_output_file;
    struct mt_output_module m = {mt_outmod_interface(), sizeof(m), &t};
    t.flags |= MT_OUTPUT_ASYNC; /* asynchronous without encode/send */
    assert_int_equal(check(&m, "file"), MITTARI_EPLUGIN);
    assert_non_null(strstr(err, "lacks a description or a callback"));
    t = mt_output_file;
    t.deliver = NULL;
    assert_int_equal(check(&m, "file"), MITTARI_EPLUGIN);
    t = mt_output_file;
    t.destroy = NULL;
    assert_int_equal(check(&m, "file"), MITTARI_EPLUGIN);
}

static void check_refuses_a_bad_option_table(void **s)
{
    (void)s;
    static const struct mittari_option bad[] = {
        {.name = "x", .type = MITTARI_OPT_INT, .offset = 4096},
        {0},
    };
    struct mt_output_type t = mt_output_file;
    struct mt_output_module m = {mt_outmod_interface(), sizeof(m), &t};
    t.options = bad;
    assert_int_equal(check(&m, "file"), MITTARI_EPLUGIN);
    assert_non_null(strstr(err, "bad option table"));
}

struct fx {
    char *tmp;
    struct mt_registry reg;
};

static int setup(void **s)
{
    struct fx *f = calloc(1, sizeof(*f));
    f->tmp = tu_tmpdir();
    assert_int_equal(mt_registry_init(&f->reg, f->tmp), 0);
    *s = f;
    return 0;
}

static int teardown(void **s)
{
    struct fx *f = *s;
    mt_registry_free(&f->reg);
    tu_rmtree(f->tmp);
    free(f->tmp);
    free(f);
    return 0;
}

static int find(struct fx *f, const char *name, const struct mt_output_type **t)
{
    err[0] = hint[0] = 0;
    return mt_outmod_find(&f->reg, name, t, err, sizeof(err), hint, sizeof(hint));
}

static void find_built_in_loads_nothing(void **s)
{
    struct fx *f = *s;
    const struct mt_output_type *t = NULL;
    /* a module file named like a built-in type is never looked at */
    free(tu_write(f->tmp, "output-file.so", "not a module"));
    assert_int_equal(find(f, "file", &t), 0);
    assert_ptr_equal(t, &mt_output_file);
    assert_int_equal(f->reg.nom, 0);
}

static void find_a_module_not_installed(void **s)
{
    struct fx *f = *s;
    const struct mt_output_type *t;
    char want[600];
    assert_int_equal(find(f, "mqtt", &t), -ENOENT);
    snprintf(want, sizeof(want), "output type mqtt: its module output-mqtt.so is in none of %s",
             f->tmp);
    assert_string_equal(err, want);
    assert_non_null(strstr(hint, "the mittari package installs it in"));
    assert_true(mt_outmod_is_type("mqtt"));
}

static void find_an_unknown_type_hints(void **s)
{
    struct fx *f = *s;
    const struct mt_output_type *t;
    assert_int_equal(find(f, "postgres", &t), -ENOENT);
    assert_string_equal(err, "unknown output type 'postgres'");
    assert_string_equal(hint, "did you mean 'postgresql'?");
    assert_int_equal(find(f, "../http", &t), -ENOENT); /* never a path */
    assert_false(mt_outmod_is_type("postgres"));
}

/* The real http module, in a test executable that exports none of the
 * agent's functions (only mittari does: host.syms): it cannot be loaded, and
 * the error says why and names the file. */
static void find_a_module_that_needs_unexported_functions(void **s)
{
    struct fx *f = *s;
    const struct mt_output_type *t;
    char cmd[2048], want[600];
    snprintf(cmd, sizeof(cmd), "install -m 0644 '%s/output-http.so' '%s/'", PLUGIN_DIR, f->tmp);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(find(f, "http", &t), -ELIBACC);
    snprintf(want, sizeof(want), "output type http: cannot load its module %s/output-http.so: ",
             f->tmp);
    assert_memory_equal(err, want, strlen(want));
    assert_non_null(strstr(err, "undefined symbol: mt_"));
    assert_non_null(strstr(hint, "another mittari build"));
    assert_int_equal(f->reg.nom, 0);
}

static void names_and_the_input_listing(void **s)
{
    struct fx *f = *s;
    char *names[32];
    free(tu_write(f->tmp, "output-extra.so", ""));
    free(tu_write(f->tmp, "sim.so", ""));
    size_t n = mt_outmod_names(&f->reg, names, 32);
    const char *want[] = {"extra", "file", "http", "mqtt", "postgresql"};
    assert_int_equal(n, 5);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(names[i], want[i]);
        free(names[i]);
    }
    /* the input plugins' names pass over output modules */
    n = mt_registry_names(&f->reg, names, 32);
    assert_int_equal(n, 1);
    assert_string_equal(names[0], "sim");
    free(names[0]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(check_accepts_a_good_descriptor),
        cmocka_unit_test(check_refuses_another_build_first),
        cmocka_unit_test(check_refuses_a_short_descriptor),
        cmocka_unit_test(check_refuses_a_misnamed_type),
        cmocka_unit_test(check_refuses_missing_callbacks),
        cmocka_unit_test(check_refuses_a_bad_option_table),
        cmocka_unit_test_setup_teardown(find_built_in_loads_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(find_a_module_not_installed, setup, teardown),
        cmocka_unit_test_setup_teardown(find_an_unknown_type_hints, setup, teardown),
        cmocka_unit_test_setup_teardown(find_a_module_that_needs_unexported_functions, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(names_and_the_input_listing, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
