#include "outmod.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mt_interface.h"
#include "options.h"
#include "util.h"

/* The module types this build makes and the Debian packages of the
 * libraries each needs (CMakeLists.txt, mittari_output_module). */
static const struct {
    const char *name;
    const char *packages;
} module_types[] = {
#include "mt_output_modules.h"
};

const char *mt_outmod_interface(void)
{
    return MT_OUTPUT_INTERFACE;
}

static const char *packages_of(const char *name)
{
    for (size_t i = 0; i < MT_ARRAY_SIZE(module_types); i++)
        if (strcmp(module_types[i].name, name) == 0)
            return module_types[i].packages;
    return NULL;
}

bool mt_outmod_is_type(const char *name)
{
    return mt_output_type_find(name) || packages_of(name);
}

int mt_outmod_check(const struct mt_output_module *m, const char *expect_name, char *err,
                    size_t errlen)
{
    char tmp[400];

    if (!m) {
        snprintf(err, errlen, "no module descriptor");
        return MITTARI_EPLUGIN;
    }
    /* the id first: nothing else of a module of another build is read */
    if (!m->interface || strcmp(m->interface, MT_OUTPUT_INTERFACE) != 0) {
        snprintf(err, errlen,
                 "built for mittari %.80s, this agent is %s: an output module is loaded only "
                 "by the agent it was built with (install both from the same build or package)",
                 m->interface ? m->interface : "(unknown)", MT_OUTPUT_INTERFACE);
        return MITTARI_EABI;
    }
    if (m->size < sizeof(*m)) {
        snprintf(err, errlen, "descriptor is %u bytes, expected %zu", m->size, sizeof(*m));
        return MITTARI_EABI;
    }
    const struct mt_output_type *t = m->type;
    if (!t || !t->name || !mt_plugin_valid_name(t->name)) {
        snprintf(err, errlen, "no output type, or its name is not [a-z0-9_]+");
        return MITTARI_EPLUGIN;
    }
    if (expect_name && strcmp(t->name, expect_name) != 0) {
        snprintf(err, errlen, "file is named %s%s.so but its type is '%s'",
                 MT_OUTPUT_MODULE_PREFIX, expect_name, t->name);
        return MITTARI_EPLUGIN;
    }
    bool async = t->flags & MT_OUTPUT_ASYNC;
    if (!t->description || !t->create || !t->destroy ||
        (async ? !t->encode || !t->free_payload || !t->send || !t->abort : !t->deliver)) {
        snprintf(err, errlen, "output type '%s' lacks a description or a callback", t->name);
        return MITTARI_EPLUGIN;
    }
    if (mt_options_check_table(t->options, t->config_size, tmp, sizeof(tmp))) {
        snprintf(err, errlen, "output type '%s' has a bad option table: %s", t->name, tmp);
        return MITTARI_EPLUGIN;
    }
    return 0;
}

static void hint_packages(const char *name, char *hint, size_t hintlen)
{
    const char *pk = packages_of(name);
    if (pk && *pk)
        snprintf(hint, hintlen,
                 "the %s output needs %s, which the mittari package recommends: apt-get install %s",
                 name, pk, pk);
    else
        snprintf(hint, hintlen, "install the libraries it names");
}

static int load(struct mt_registry *r, const char *name, const char *path,
                const struct mt_output_type **out, char *err, size_t errlen, char *hint,
                size_t hintlen)
{
    const struct mt_output_module *m;
    char msg[512];
    void *dl;
    int rc;

    /* RTLD_NOW: a symbol the executable does not export (a module of
     * another build) fails here, not at its first call */
    dl = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (!dl) {
        const char *why = dlerror();
        snprintf(err, errlen, "output type %s: cannot load its module %s: %s", name, path,
                 why ? why : "?");
        /* an agent function this executable does not export (a module of
         * another build) or a library that is missing or too old */
        if (why && strstr(why, "undefined symbol: mt_"))
            snprintf(hint, hintlen,
                     "a module of another mittari build? install the agent and its modules "
                     "from the same build or package");
        else
            hint_packages(name, hint, hintlen);
        return -ELIBACC;
    }
    m = dlsym(dl, MT_OUTPUT_MODULE_SYMBOL);
    rc = mt_outmod_check(m, name, msg, sizeof(msg));
    if (rc) {
        snprintf(err, errlen, "output type %s: module %s refused: %s", name, path,
                 m ? msg : "not an output module (no " MT_OUTPUT_MODULE_SYMBOL " symbol)");
        snprintf(hint, hintlen, "remove it, or install the module of this agent's build");
        dlclose(dl);
        return rc;
    }
    struct mt_outmod **v = realloc(r->om, (r->nom + 1) * sizeof(*v));
    struct mt_outmod *om = calloc(1, sizeof(*om));
    if (v)
        r->om = v;
    if (!v || !om || !(om->name = strdup(name)) || !(om->path = strdup(path))) {
        if (om) {
            free(om->name);
            free(om);
        }
        dlclose(dl);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    om->dl = dl;
    om->type = m->type;
    r->om[r->nom++] = om;
    *out = m->type;
    return 0;
}

static void unknown_hint(const struct mt_registry *r, const char *name, char *hint,
                         size_t hintlen)
{
    char *names[128];
    size_t n = mt_outmod_names(r, names, MT_ARRAY_SIZE(names));
    const char *best = mt_did_you_mean(name, (const char *const *)names, n);

    if (best)
        snprintf(hint, hintlen, "did you mean '%s'?", best);
    else
        snprintf(hint, hintlen, "'mittari plugins' lists the output types");
    for (size_t i = 0; i < n; i++)
        free(names[i]);
}

int mt_outmod_find(struct mt_registry *r, const char *name, const struct mt_output_type **out,
                   char *err, size_t errlen, char *hint, size_t hintlen)
{
    char path[PATH_MAX];

    *hint = 0;
    if ((*out = mt_output_type_find(name)))
        return 0;
    for (size_t i = 0; i < r->nom; i++) {
        if (strcmp(r->om[i]->name, name) == 0) {
            *out = r->om[i]->type;
            return 0;
        }
    }
    if (mt_plugin_valid_name(name)) {
        for (size_t i = 0; i <= r->npath; i++) {
            snprintf(path, sizeof(path), "%s/" MT_OUTPUT_MODULE_PREFIX "%s.so",
                     i < r->npath ? r->path[i] : r->dir, name);
            if (access(path, F_OK) == 0)
                return load(r, name, path, out, err, errlen, hint, hintlen);
        }
    }
    if (packages_of(name)) {
        char *where = mt_registry_path_text(r);
        snprintf(err, errlen, "output type %s: its module " MT_OUTPUT_MODULE_PREFIX
                 "%s.so is in none of %s", name, name, where ? where : r->dir);
        free(where);
        snprintf(hint, hintlen,
                 "the mittari package installs it in %s; with --plugin-dir or plugin_dir, "
                 "that directory must hold it", mt_default_plugin_dir());
    } else {
        snprintf(err, errlen, "unknown output type '%s'", name);
        unknown_hint(r, name, hint, hintlen);
    }
    return -ENOENT;
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Adds the TYPE of every output-TYPE.so in dir (at most max). */
static void list_dir(const char *dir, char **names, size_t *n, size_t max)
{
    const size_t pl = strlen(MT_OUTPUT_MODULE_PREFIX);
    DIR *d = opendir(dir);
    struct dirent *de;

    if (!d)
        return; /* the input plugins' listing reports a directory it cannot read */
    while ((de = readdir(d)) && *n < max) {
        size_t l = strlen(de->d_name);
        if (l > pl + 3 && strncmp(de->d_name, MT_OUTPUT_MODULE_PREFIX, pl) == 0 &&
            strcmp(de->d_name + l - 3, ".so") == 0 &&
            (names[*n] = strndup(de->d_name + pl, l - pl - 3)))
            (*n)++;
    }
    closedir(d);
}

static void add_name(char **names, size_t *n, size_t max, const char *name)
{
    if (*n < max && (names[*n] = strdup(name)))
        (*n)++;
}

size_t mt_outmod_names(const struct mt_registry *r, char **names, size_t max)
{
    size_t n = 0, k = 0;

    for (size_t i = 0; mt_output_types[i]; i++)
        add_name(names, &n, max, mt_output_types[i]->name);
    for (size_t i = 0; i < MT_ARRAY_SIZE(module_types); i++)
        add_name(names, &n, max, module_types[i].name);
    for (size_t i = 0; i < r->npath; i++)
        list_dir(r->path[i], names, &n, max);
    if (r->dir)
        list_dir(r->dir, names, &n, max);
    if (n)
        qsort(names, n, sizeof(*names), str_cmp);
    for (size_t i = 0; i < n; i++) {
        if (k > 0 && strcmp(names[i], names[k - 1]) == 0)
            free(names[i]);
        else
            names[k++] = names[i];
    }
    return k;
}

static int om_cmp(const void *a, const void *b)
{
    return strcmp((*(struct mt_outmod *const *)a)->name, (*(struct mt_outmod *const *)b)->name);
}

size_t mt_outmod_scan(struct mt_registry *r, void (*err_cb)(const char *what, const char *msg))
{
    char *names[128];
    size_t n = mt_outmod_names(r, names, MT_ARRAY_SIZE(names)), problems = 0;

    for (size_t i = 0; i < n; i++) {
        const struct mt_output_type *t;
        char err[700], hint[300];
        if (!mt_output_type_find(names[i]) &&
            mt_outmod_find(r, names[i], &t, err, sizeof(err), hint, sizeof(hint)) != 0) {
            problems++;
            if (err_cb) {
                char both[1000];
                snprintf(both, sizeof(both), "%s (%s)", err, hint);
                err_cb(names[i], both);
            }
        }
        free(names[i]);
    }
    if (r->nom)
        qsort(r->om, r->nom, sizeof(*r->om), om_cmp);
    return problems;
}
