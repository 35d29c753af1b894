/*
 * plugin: finds, loads and checks input plugin shared objects.
 *
 * Owns the dlopen handles of loaded plugins (never unloaded while the
 * registry lives: instances may still run their code). Loop thread or the
 * CLI; not thread-safe.
 *
 * A plugin NAME is the file DIR/NAME.so exporting mittari_plugin_entry, DIR
 * the first of the search path that has it: the directories of
 * agent.plugin_path in order, then the plugin dir (the packaged one unless
 * plugin_dir or --plugin-dir names another). The descriptor is checked
 * before anything else in it is used: ABI major equal, minor not newer than ours, struct size, name equal to the file name,
 * lifecycle callbacks present, option table well-formed.
 *
 * A loaded plugin stays loaded: a file replaced on disk is not loaded again
 * (a reload logs a warning naming it; the agent must be restarted).
 *
 * The registry also owns the output modules loaded from the same search path
 * (output-TYPE.so: outmod.h); they are never input plugins, and the input
 * plugins' listing and scan pass over them.
 */
#ifndef MT_PLUGIN_H
#define MT_PLUGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>

#include <mittari/mittari.h>

struct mt_plugin {
    char *name;
    char *path;
    void *dl;
    const struct mittari_plugin *desc;
    struct stat st; /* of the file when it was loaded: a replaced file is noticed */
    bool warned;    /* its change on disk was logged */
};

struct mt_output_type;
/* an output module loaded (outmod.c) */
struct mt_outmod {
    char *name;
    char *path;
    void *dl;
    const struct mt_output_type *type;
};

struct mt_registry {
    char *dir;   /* the plugin dir, searched last */
    char **path; /* agent.plugin_path: searched first, in order */
    size_t npath;
    struct mt_plugin **v; /* each its own allocation: configs keep pointers to them */
    size_t n;
    struct mt_outmod **om; /* configs keep pointers to their types */
    size_t nom;
};

int mt_registry_init(struct mt_registry *r, const char *dir);
void mt_registry_free(struct mt_registry *r);
/* The directories searched before dir: a ':'-separated list (NULL or "" =
 * none). Before the first load only. 0 or -ENOMEM. */
int mt_registry_set_path(struct mt_registry *r, const char *path);
/* The search path as text, "DIR1:DIR2:dir" (caller frees), or NULL. */
char *mt_registry_path_text(const struct mt_registry *r);
/* Loads NAME.so from the first directory of the search path that has it,
 * once; a plugin already loaded whose file changed on disk since is logged
 * (once) and kept. 0, or a negative code with a message in err. */
int mt_registry_get(struct mt_registry *r, const char *name, const struct mt_plugin **out,
                    char *err, size_t errlen);
/* Loads every .so of the search path; problems (a dir that cannot be read,
 * a plugin refused) go to err_cb, loading goes on. Returns the number of
 * problems; the loaded plugins are in r->v. */
size_t mt_registry_scan(struct mt_registry *r, void (*err_cb)(const char *path, const char *msg));

/* The names of the plugin files in the registry's search path and dir (NAME
 * of NAME.so), sorted, each once, without loading them: for did-you-mean
 * hints. Up to max names
 * into names (caller frees each); returns how many. */
size_t mt_registry_names(const struct mt_registry *r, char **names, size_t max);

/* The checks, on a descriptor already in memory (tests use it directly). */
/* A plugin's or output module's name: [a-z0-9_]{1,63} (it becomes a file name). */
bool mt_plugin_valid_name(const char *n);
int mt_plugin_check_desc(const struct mittari_plugin *d, const char *expect_name, char *err,
                         size_t errlen);

/* The directory next to the running binary when it runs from the build
 * tree, else the installed one. */
const char *mt_default_plugin_dir(void);

#endif
