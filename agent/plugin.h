/*
 * plugin: finds, loads and checks input plugin shared objects.
 *
 * Owns the dlopen handles of loaded plugins (never unloaded while the
 * registry lives: instances may still run their code). Loop thread or the
 * CLI; not thread-safe.
 *
 * A plugin NAME is the file DIR/NAME.so exporting mittari_plugin_entry. The
 * descriptor is checked before anything else in it is used: ABI major equal,
 * minor not newer than ours, struct size, name equal to the file name,
 * lifecycle callbacks present, option table well-formed.
 */
#ifndef MT_PLUGIN_H
#define MT_PLUGIN_H

#include <stddef.h>

#include <mittari/mittari.h>

struct mt_plugin {
    char *name;
    char *path;
    void *dl;
    const struct mittari_plugin *desc;
};

struct mt_registry {
    char *dir;
    struct mt_plugin **v; /* each its own allocation: configs keep pointers to them */
    size_t n;
};

int mt_registry_init(struct mt_registry *r, const char *dir);
void mt_registry_free(struct mt_registry *r);
/* Loads DIR/NAME.so once. 0, or a negative code with a message in err. */
int mt_registry_get(struct mt_registry *r, const char *name, const struct mt_plugin **out,
                    char *err, size_t errlen);
/* Loads every .so in DIR; problems (a dir that cannot be read, a plugin
 * refused) go to err_cb, loading goes on. Returns the number of problems;
 * the loaded plugins are in r->v. */
size_t mt_registry_scan(struct mt_registry *r, void (*err_cb)(const char *path, const char *msg));

/* The names of the plugin files in the registry's dir (NAME of NAME.so),
 * sorted, without loading them: for did-you-mean hints. Up to max names
 * into names (caller frees each); returns how many. */
size_t mt_registry_names(const struct mt_registry *r, char **names, size_t max);

/* The checks, on a descriptor already in memory (tests use it directly). */
int mt_plugin_check_desc(const struct mittari_plugin *d, const char *expect_name, char *err,
                         size_t errlen);

/* The directory next to the running binary when it runs from the build
 * tree, else the installed one. */
const char *mt_default_plugin_dir(void);

#endif
