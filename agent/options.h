/*
 * options: validate a configuration mapping against a declarative option
 * table (include/mittari/mittari.h) and write the values into a config
 * struct; check a table itself; render it as help text or Markdown.
 *
 * Any thread. Reads secret files (NAME_file for MITTARI_OPT_SECRET options);
 * never logs a secret. Strings written into the struct live in the arena.
 */
#ifndef MT_OPTIONS_H
#define MT_OPTIONS_H

#include <stdio.h>

#include <mittari/mittari.h>

#include "cfgtree.h"

struct mt_optset {
    const struct mittari_option *table;
    size_t conf_size;
    const char *what;             /* "input 'lobby' (plugin sim)", for messages */
    const char *const *reserved;  /* keys handled by the caller, NULL-terminated, or NULL */
    bool quiet_unknown;           /* another table reports unknown keys of this map */
    const char *table_name;       /* NAME in 'mittari plugins NAME' (hints), or NULL */
};

/* Fills conf (conf_size bytes, zeroed by the caller) from map; map may be
 * NULL (defaults only). owner: where to point "missing option" errors.
 * Returns the number of problems added to d. */
int mt_options_apply(const struct mt_optset *os, void *conf, const struct mt_node *map,
                     const struct mt_pos *owner, struct mt_arena *arena, struct mt_diags *d);

/* A plugin's table is checked before use: names, types, offsets inside
 * conf_size, defaults that parse and fit the range. 0, or -EINVAL with a
 * message in err. */
int mt_options_check_table(const struct mittari_option *table, size_t conf_size, char *err,
                           size_t errlen);

/* "name=value\n" for every option, in table order: equal text = equal
 * settings (used to see which instances a reload changes). */
int mt_options_canonical(const struct mittari_option *table, const void *conf, struct mt_buf *out);

void mt_options_print(FILE *f, const struct mittari_option *table, bool markdown);
const char *mt_opt_type_name(int type);

#endif
