#include "plugin.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "diag.h"
#include "options.h"
#include "outmod.h"
#include "util.h"

#ifndef MITTARI_PLUGIN_DIR
#define MITTARI_PLUGIN_DIR "/usr/lib/mittari/plugins"
#endif

const char *mt_default_plugin_dir(void)
{
#ifdef MITTARI_BUILD_DIR
    static char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash)
            *slash = 0;
        if (strcmp(exe, MITTARI_BUILD_DIR) == 0 || strncmp(exe, MITTARI_BUILD_DIR "/", strlen(MITTARI_BUILD_DIR) + 1) == 0)
            return MITTARI_BUILD_DIR "/plugins";
    }
#endif
    return MITTARI_PLUGIN_DIR;
}

int mt_registry_init(struct mt_registry *r, const char *dir)
{
    memset(r, 0, sizeof(*r));
    r->dir = strdup(dir);
    return r->dir ? 0 : -ENOMEM;
}

int mt_registry_set_path(struct mt_registry *r, const char *path)
{
    for (const char *p = path; p && *p;) {
        size_t l = strcspn(p, ":");
        if (l > 0) {
            char **v = realloc(r->path, (r->npath + 1) * sizeof(*v));
            if (!v)
                return -ENOMEM;
            r->path = v;
            if (!(v[r->npath] = strndup(p, l)))
                return -ENOMEM;
            r->npath++;
        }
        p += l + (p[l] == ':');
    }
    return 0;
}

char *mt_registry_path_text(const struct mt_registry *r)
{
    size_t len = strlen(r->dir ? r->dir : "") + 1;
    for (size_t i = 0; i < r->npath; i++)
        len += strlen(r->path[i]) + 1;
    char *s = malloc(len);
    if (!s)
        return NULL;
    *s = 0;
    for (size_t i = 0; i < r->npath; i++) {
        strcat(s, r->path[i]);
        strcat(s, ":");
    }
    strcat(s, r->dir ? r->dir : "");
    return s;
}

void mt_registry_free(struct mt_registry *r)
{
    for (size_t i = 0; i < r->npath; i++)
        free(r->path[i]);
    free(r->path);
    for (size_t i = 0; i < r->n; i++) {
        if (r->v[i]->dl)
            dlclose(r->v[i]->dl);
        free(r->v[i]->name);
        free(r->v[i]->path);
        free(r->v[i]);
    }
    free(r->v);
    for (size_t i = 0; i < r->nom; i++) {
        dlclose(r->om[i]->dl); /* loaded RTLD_NODELETE: stays mapped */
        free(r->om[i]->name);
        free(r->om[i]->path);
        free(r->om[i]);
    }
    free(r->om);
    free(r->dir);
    memset(r, 0, sizeof(*r));
}

bool mt_plugin_valid_name(const char *n)
{
    if (!*n || strlen(n) > 63)
        return false;
    for (; *n; n++)
        if (!((*n >= 'a' && *n <= 'z') || (*n >= '0' && *n <= '9') || *n == '_'))
            return false;
    return true;
}

int mt_plugin_check_desc(const struct mittari_plugin *d, const char *expect_name, char *err,
                         size_t errlen)
{
    char tmp[400];

    if (!d) {
        snprintf(err, errlen, "entry point returned no descriptor");
        return MITTARI_EPLUGIN;
    }
    uint32_t maj = MITTARI_ABI_MAJOR_OF(d->abi_version), min = MITTARI_ABI_MINOR_OF(d->abi_version);
    if (maj != MITTARI_ABI_MAJOR) {
        snprintf(err, errlen,
                 "built for plugin ABI %u.%u, this agent speaks ABI %u.%u; rebuild the plugin "
                 "against this agent's SDK (pkg-config mittari)",
                 maj, min, MITTARI_ABI_MAJOR, MITTARI_ABI_MINOR);
        return MITTARI_EABI;
    }
    if (min > MITTARI_ABI_MINOR) {
        snprintf(err, errlen,
                 "needs plugin ABI %u.%u, this agent has %u.%u; upgrade the agent", maj, min,
                 MITTARI_ABI_MAJOR, MITTARI_ABI_MINOR);
        return MITTARI_EABI;
    }
    if (d->size < sizeof(struct mittari_plugin)) {
        snprintf(err, errlen, "descriptor is %u bytes, ABI %u.%u needs %zu", d->size, maj, min,
                 sizeof(struct mittari_plugin));
        return MITTARI_EABI;
    }
    if (!d->name || !mt_plugin_valid_name(d->name)) {
        snprintf(err, errlen, "plugin name is missing or not [a-z0-9_]+");
        return MITTARI_EPLUGIN;
    }
    if (expect_name && strcmp(d->name, expect_name) != 0) {
        snprintf(err, errlen, "file is named %s.so but the plugin calls itself '%s'", expect_name,
                 d->name);
        return MITTARI_EPLUGIN;
    }
    if (!d->create || !d->start || !d->stop || !d->destroy) {
        snprintf(err, errlen, "plugin '%s' lacks a lifecycle callback", d->name);
        return MITTARI_EPLUGIN;
    }
    if (mt_options_check_table(d->options, d->config_size, tmp, sizeof(tmp))) {
        snprintf(err, errlen, "plugin '%s' has a bad option table: %s", d->name, tmp);
        return MITTARI_EPLUGIN;
    }
    return 0;
}

static int load(struct mt_registry *r, const char *name, const char *path,
                const struct mt_plugin **out, char *err, size_t errlen)
{
    const struct mittari_plugin *(*entry)(void);
    const struct mittari_plugin *d;
    char msg[512];
    struct stat st;
    void *dl;
    int rc;

    if (stat(path, &st) != 0)
        memset(&st, 0, sizeof(st));
    /* RTLD_NODELETE: a plugin's code and its libraries stay mapped until the
     * process ends. libuv's worker threads, which ran its polls, outlive the
     * registry; after a dlclose their thread-local storage of the plugin's
     * libraries (libpcsclite's) points into unmapped memory, and whatever
     * walks it at exit (a TLS destructor, LeakSanitizer) crashes. */
    dl = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (!dl) {
        snprintf(err, errlen, "cannot load plugin %s: %s", path, dlerror());
        return -ENOENT;
    }
    *(void **)&entry = dlsym(dl, MITTARI_PLUGIN_ENTRY_SYMBOL);
    if (!entry) {
        snprintf(err, errlen, "%s is not a mittari plugin (no %s symbol)", path,
                 MITTARI_PLUGIN_ENTRY_SYMBOL);
        dlclose(dl);
        return MITTARI_EPLUGIN;
    }
    d = entry();
    rc = mt_plugin_check_desc(d, name, msg, sizeof(msg));
    if (rc) {
        snprintf(err, errlen, "plugin %s refused: %s", path, msg);
        dlclose(dl);
        return rc;
    }
    /* an array of pointers: growing it never moves a plugin that an
     * instance configuration already points at */
    struct mt_plugin **v = realloc(r->v, (r->n + 1) * sizeof(*v));
    struct mt_plugin *p = calloc(1, sizeof(*p));
    if (v)
        r->v = v;
    if (!v || !p) {
        free(p);
        dlclose(dl);
        return -ENOMEM;
    }
    p->name = strdup(name);
    p->path = strdup(path);
    if (!p->name || !p->path) {
        free(p->name);
        free(p->path);
        free(p);
        dlclose(dl);
        return -ENOMEM;
    }
    p->dl = dl;
    p->desc = d;
    p->st = st;
    r->v[r->n] = p;
    *out = p;
    r->n++;
    return 0;
}

/* dlopen gives the handle it has for a path it loaded, whatever the file
 * holds now, and instances run the loaded code: a new file needs a restart.
 * Said once per plugin, so a reload that does not pick it up explains why. */
static void warn_if_changed(struct mt_plugin *p)
{
    struct stat st;
    bool gone = stat(p->path, &st) != 0;

    if (p->warned || (!gone && st.st_dev == p->st.st_dev && st.st_ino == p->st.st_ino &&
                      st.st_size == p->st.st_size &&
                      st.st_mtim.tv_sec == p->st.st_mtim.tv_sec &&
                      st.st_mtim.tv_nsec == p->st.st_mtim.tv_nsec))
        return;
    p->warned = true;
    mt_diag(MT_WARNING, "plugin",
            "%s %s since it was loaded; the agent keeps running the loaded code: restart the "
            "agent (systemctl restart mittari) to load the file",
            p->path, gone ? "was removed" : "changed on disk");
}

int mt_registry_get(struct mt_registry *r, const char *name, const struct mt_plugin **out,
                    char *err, size_t errlen)
{
    char path[PATH_MAX];

    for (size_t i = 0; i < r->n; i++) {
        if (strcmp(r->v[i]->name, name) == 0) {
            warn_if_changed(r->v[i]);
            *out = r->v[i];
            return 0;
        }
    }
    if (!mt_plugin_valid_name(name)) {
        snprintf(err, errlen, "'%s' is not a plugin name (lower-case letters, digits, _)", name);
        return -EINVAL;
    }
    for (size_t i = 0; i <= r->npath; i++) {
        snprintf(path, sizeof(path), "%s/%s.so", i < r->npath ? r->path[i] : r->dir, name);
        if (access(path, F_OK) == 0)
            return load(r, name, path, out, err, errlen);
    }
    char *where = mt_registry_path_text(r);
    snprintf(err, errlen, "no plugin '%s' in %s", name, where ? where : r->dir);
    free(where);
    return -ENOENT;
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Adds the NAME of every NAME.so in dir to names (at most max), output
 * modules (output-TYPE.so, outmod.h) left out. -errno when dir cannot be
 * read. */
static int list_dir(const char *dir, char **names, size_t *n, size_t max)
{
    DIR *d = opendir(dir);
    struct dirent *de;

    if (!d)
        return -errno;
    while ((de = readdir(d)) && *n < max) {
        size_t l = strlen(de->d_name);
        if (l > 3 && strcmp(de->d_name + l - 3, ".so") == 0 &&
            strncmp(de->d_name, MT_OUTPUT_MODULE_PREFIX, strlen(MT_OUTPUT_MODULE_PREFIX)) != 0 &&
            (names[*n] = strndup(de->d_name, l - 3)))
            (*n)++;
    }
    closedir(d);
    return 0;
}

/* Every name once, sorted; the duplicates freed. */
static size_t sort_unique(char **names, size_t n)
{
    size_t k = 0;
    if (n)
        qsort(names, n, sizeof(*names), str_cmp);
    for (size_t i = 0; i < n; i++) {
        if (k > 0 && strcmp(names[i], names[k - 1]) == 0) {
            free(names[i]); /* a name in two directories: the first of the path has it */
            continue;
        }
        names[k++] = names[i];
    }
    return k;
}

size_t mt_registry_names(const struct mt_registry *r, char **names, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < r->npath; i++)
        list_dir(r->path[i], names, &n, max);
    if (r->dir)
        list_dir(r->dir, names, &n, max);
    return sort_unique(names, n);
}

size_t mt_registry_scan(struct mt_registry *r, void (*err_cb)(const char *path, const char *msg))
{
    char *names[512];
    size_t n = 0, problems = 0;

    for (size_t i = 0; i <= r->npath; i++) {
        const char *dir = i < r->npath ? r->path[i] : r->dir;
        int rc = list_dir(dir, names, &n, MT_ARRAY_SIZE(names));
        if (rc) {
            problems++;
            if (err_cb)
                err_cb(dir, strerror(-rc));
        }
    }
    n = sort_unique(names, n);
    for (size_t i = 0; i < n; i++) {
        const struct mt_plugin *p;
        char err[600];
        if (mt_registry_get(r, names[i], &p, err, sizeof(err)) != 0) {
            problems++;
            if (err_cb)
                err_cb(names[i], err);
        }
        free(names[i]);
    }
    return problems;
}
