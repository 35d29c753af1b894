/*
 * cfgtree: YAML configuration files -> one merged tree of nodes, each node
 * remembering file:line:column, plus the list of problems found (mt_diags).
 *
 * Owns an arena holding every node and string. Reads files; no other I/O.
 * Any thread, one document per thread at a time.
 *
 * Merging: files of a directory are read in byte order of their names
 * (*.yaml, *.yml). Mappings merge key by key, recursively; any other value
 * set again by a later file replaces the earlier one, except that an empty
 * value never replaces a mapping. A key twice in one
 * file is an error. ${NAME} and ${NAME:-default} in values are replaced
 * from the environment ($${ is a literal ${); an unset variable without a
 * default is an error.
 */
#ifndef MT_CFGTREE_H
#define MT_CFGTREE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "util.h"

struct mt_pos {
    const char *file; /* NULL = no position */
    int line, col;    /* 1-based */
};

enum mt_node_type { MT_NODE_NULL = 0, MT_NODE_SCALAR, MT_NODE_MAP, MT_NODE_SEQ };

struct mt_node;

struct mt_pair {
    const char *key;
    struct mt_pos key_pos;
    struct mt_node *value;
};

struct mt_node {
    int type;
    struct mt_pos pos;
    const char *str; /* SCALAR (and NULL: the original text) */
    bool quoted;
    struct mt_pair *pairs; /* MAP */
    size_t npairs;
    struct mt_node **items; /* SEQ */
    size_t nitems;
};

/* Problems, in the order found. */
struct mt_diag_entry {
    struct mt_pos pos;
    char *msg;
    char *hint; /* NULL or a suggestion */
};

struct mt_diags {
    struct mt_diag_entry *v;
    size_t n, cap;
    struct mt_arena arena;
};

void mt_diags_add(struct mt_diags *d, const struct mt_pos *pos, const char *hint,
                  const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void mt_diags_addv(struct mt_diags *d, const struct mt_pos *pos, const char *hint,
                   const char *fmt, va_list ap);
void mt_diags_print(const struct mt_diags *d, FILE *f);
void mt_diags_free(struct mt_diags *d);

struct mt_cfgdoc {
    struct mt_arena arena;
    struct mt_node *root; /* a MAP, possibly empty */
    size_t nfiles;
};

void mt_cfgdoc_init(struct mt_cfgdoc *doc);
void mt_cfgdoc_free(struct mt_cfgdoc *doc);
/* path: a directory (its *.yaml, *.yml files) or one file. Returns the
 * number of problems added to d (0 = fine). */
int mt_cfg_load(struct mt_cfgdoc *doc, const char *path, struct mt_diags *d);
/* One file (or an in-memory text when text != NULL; name is used in
 * positions), merged over what is loaded. */
int mt_cfg_load_file(struct mt_cfgdoc *doc, const char *name, const char *text,
                     struct mt_diags *d);

const struct mt_node *mt_node_get(const struct mt_node *map, const char *key);
const struct mt_pair *mt_node_pair(const struct mt_node *map, const char *key);
const char *mt_node_type_name(int type);

#endif
