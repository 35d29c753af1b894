#include "cfgtree.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

#define MAX_FILE_SIZE (1 << 20)
#define MAX_DEPTH 32

/* ---- diagnostics ---- */

/* Control characters of a value quoted in a message are written as \n,
 * \t, \r or \xNN: a message stays one line and a newline in a value
 * cannot forge a second "FILE:LINE:COL: error:" line (issue 9). */
static char *escaped_dup(struct mt_arena *a, const char *s)
{
    struct mt_buf b = {0};
    char *out;

    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '\n')
            mt_buf_adds(&b, "\\n");
        else if (*c == '\t')
            mt_buf_adds(&b, "\\t");
        else if (*c == '\r')
            mt_buf_adds(&b, "\\r");
        else if (*c < 0x20 || *c == 0x7f)
            mt_buf_printf(&b, "\\x%02x", *c);
        else
            mt_buf_addc(&b, (char)*c);
    }
    out = mt_arena_strdup(a, mt_buf_cstr(&b));
    mt_buf_free(&b);
    return out;
}

void mt_diags_addv(struct mt_diags *d, const struct mt_pos *pos, const char *hint,
                   const char *fmt, va_list ap)
{
    char msg[1024];

    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 16;
        struct mt_diag_entry *v = realloc(d->v, cap * sizeof(*v));
        if (!v)
            return;
        d->v = v;
        d->cap = cap;
    }
    vsnprintf(msg, sizeof(msg), fmt, ap);
    struct mt_diag_entry *e = &d->v[d->n];
    memset(e, 0, sizeof(*e));
    if (pos)
        e->pos = *pos;
    if (e->pos.file)
        e->pos.file = mt_arena_strdup(&d->arena, e->pos.file);
    e->msg = escaped_dup(&d->arena, msg);
    e->hint = hint ? escaped_dup(&d->arena, hint) : NULL;
    if (e->msg)
        d->n++;
}

void mt_diags_add(struct mt_diags *d, const struct mt_pos *pos, const char *hint,
                  const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mt_diags_addv(d, pos, hint, fmt, ap);
    va_end(ap);
}

void mt_diags_print(const struct mt_diags *d, FILE *f)
{
    for (size_t i = 0; i < d->n; i++) {
        const struct mt_diag_entry *e = &d->v[i];
        if (e->pos.file && e->pos.line > 0)
            fprintf(f, "%s:%d:%d: error: %s\n", e->pos.file, e->pos.line, e->pos.col, e->msg);
        else if (e->pos.file)
            fprintf(f, "%s: error: %s\n", e->pos.file, e->msg);
        else
            fprintf(f, "error: %s\n", e->msg);
        if (e->hint)
            fprintf(f, "  hint: %s\n", e->hint);
    }
}

void mt_diags_free(struct mt_diags *d)
{
    free(d->v);
    mt_arena_free(&d->arena);
    memset(d, 0, sizeof(*d));
}

/* ---- document ---- */

void mt_cfgdoc_init(struct mt_cfgdoc *doc)
{
    memset(doc, 0, sizeof(*doc));
    doc->root = mt_arena_alloc(&doc->arena, sizeof(*doc->root));
    if (doc->root)
        doc->root->type = MT_NODE_MAP;
}

void mt_cfgdoc_free(struct mt_cfgdoc *doc)
{
    mt_arena_free(&doc->arena);
    memset(doc, 0, sizeof(*doc));
}

const char *mt_node_type_name(int type)
{
    switch (type) {
    case MT_NODE_NULL: return "nothing";
    case MT_NODE_SCALAR: return "a value";
    case MT_NODE_MAP: return "a mapping (key: value lines)";
    case MT_NODE_SEQ: return "a list";
    }
    return "?";
}

const struct mt_pair *mt_node_pair(const struct mt_node *map, const char *key)
{
    if (!map || map->type != MT_NODE_MAP)
        return NULL;
    for (size_t i = 0; i < map->npairs; i++)
        if (strcmp(map->pairs[i].key, key) == 0)
            return &map->pairs[i];
    return NULL;
}

const struct mt_node *mt_node_get(const struct mt_node *map, const char *key)
{
    const struct mt_pair *p = mt_node_pair(map, key);
    return p ? p->value : NULL;
}

/* ---- parsing ---- */

struct parser {
    yaml_parser_t yp;
    struct mt_cfgdoc *doc;
    struct mt_diags *d;
    const char *file; /* arena copy */
    int errors;
    bool abort; /* syntax error or too deep: stop reading this file */
};

static struct mt_pos mark_pos(struct parser *p, yaml_mark_t m)
{
    struct mt_pos pos = {p->file, (int)m.line + 1, (int)m.column + 1};
    return pos;
}

static void perr(struct parser *p, struct mt_pos pos, const char *hint, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void perr(struct parser *p, struct mt_pos pos, const char *hint, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mt_diags_addv(p->d, &pos, hint, fmt, ap);
    va_end(ap);
    p->errors++;
}

static bool next_event(struct parser *p, yaml_event_t *ev)
{
    if (p->abort)
        return false;
    if (yaml_parser_parse(&p->yp, ev)) {
        if (ev->type != YAML_NO_EVENT)
            return true;
        p->abort = true;
        return false;
    }
    p->abort = true;
    struct mt_pos pos = mark_pos(p, p->yp.problem_mark);
    if (p->yp.context)
        perr(p, pos, "check indentation and that every 'key: value' has a space after ':'",
             "YAML syntax: %s %s", p->yp.problem ? p->yp.problem : "error", p->yp.context);
    else
        perr(p, pos, "check indentation and that every 'key: value' has a space after ':'",
             "YAML syntax: %s", p->yp.problem ? p->yp.problem : "error");
    return false;
}

/* The '}' that closes the reference starting at s ("${"); references in its
 * default nest, $${ is literal text. NULL when it is not closed. */
static const char *ref_end(const char *s)
{
    int depth = 0;

    for (const char *c = s; *c; c++) {
        if (c[0] == '$' && c[1] == '$' && c[2] == '{') {
            c += 2;
        } else if (c[0] == '$' && c[1] == '{') {
            depth++;
            c++;
        } else if (*c == '}' && --depth == 0) {
            return c;
        }
    }
    return NULL;
}

#define MAX_ENV_NESTING 8

/* ${NAME}, ${NAME:-default}, $${ -> ${; a default may hold references
 * itself: ${A:-${B:-x}} (issue 9: the inner '}' used to end the outer one). */
static char *expand_env(struct parser *p, const char *s, struct mt_pos pos, int depth)
{
    struct mt_buf b = {0};
    char *out = NULL;

    if (depth > MAX_ENV_NESTING) {
        perr(p, pos, NULL, "environment references nested deeper than %d levels", MAX_ENV_NESTING);
        return NULL;
    }
    for (const char *c = s; *c;) {
        if (c[0] == '$' && c[1] == '$' && c[2] == '{') {
            mt_buf_adds(&b, "${");
            c += 3;
            continue;
        }
        if (!(c[0] == '$' && c[1] == '{')) {
            mt_buf_addc(&b, *c++);
            continue;
        }
        const char *end = ref_end(c);
        if (!end) {
            perr(p, pos, "write ${NAME}, or $${ for a literal ${", "unterminated ${ in '%s'", s);
            goto out;
        }
        /* the whole reference: a fixed buffer would cut long defaults */
        const char *dflt = NULL;
        char *name = mt_arena_strndup(&p->doc->arena, c + 2, (size_t)(end - (c + 2)));
        if (!name) {
            perr(p, pos, NULL, "out of memory");
            goto out;
        }
        char *colon = strstr(name, ":-");
        if (colon) {
            *colon = 0;
            dflt = colon + 2;
        }
        bool ok = name[0] != 0;
        for (char *q = name; *q; q++)
            if (!((*q >= 'A' && *q <= 'Z') || (*q >= 'a' && *q <= 'z') ||
                  (*q >= '0' && *q <= '9') || *q == '_'))
                ok = false;
        if (!ok) {
            perr(p, pos, "names are letters, digits and _; a default follows ':-'",
                 "bad environment reference '${%s}'", name);
            goto out;
        }
        const char *v = getenv(name);
        if (!v || (!*v && dflt)) {
            /* the default is expanded only when it is used */
            v = dflt ? expand_env(p, dflt, pos, depth + 1) : NULL;
            if (dflt && !v)
                goto out;
        }
        if (!v) {
            perr(p, pos, "export it, or give a default: ${NAME:-value}",
                 "environment variable %s is not set", name);
            goto out;
        }
        mt_buf_adds(&b, v);
        c = end + 1;
    }
    out = mt_arena_strdup(&p->doc->arena, mt_buf_cstr(&b));
out:
    mt_buf_free(&b);
    return out;
}

static struct mt_node *new_node(struct parser *p, int type, struct mt_pos pos)
{
    struct mt_node *n = mt_arena_alloc(&p->doc->arena, sizeof(*n));
    if (n) {
        n->type = type;
        n->pos = pos;
    }
    return n;
}

static bool is_null_scalar(const yaml_event_t *ev)
{
    const char *v = (const char *)ev->data.scalar.value;
    if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    return !*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") ||
           !strcmp(v, "NULL");
}

/* An explicit tag (!!python/object:..., !!str, !custom) would make another
 * YAML reader build something else from the same text: refused, never
 * silently dropped (issue 9). */
static void refuse_tag(struct parser *p, struct mt_pos pos, const yaml_char_t *tag)
{
    static const char core[] = "tag:yaml.org,2002:";
    const char *t = (const char *)tag;

    if (!t)
        return;
    if (strncmp(t, core, sizeof(core) - 1) == 0)
        perr(p, pos, "write the value without it; quote a value to keep it text",
             "YAML tags (!!%s) are not supported", t + sizeof(core) - 1);
    else
        perr(p, pos, "write the value without it; quote a value to keep it text",
             "YAML tags (%s) are not supported", t);
}

static struct mt_node *parse_node(struct parser *p, yaml_event_t *ev, int depth);

static bool push_pair(struct parser *p, struct mt_node *map, const char *key, struct mt_pos kpos,
                      struct mt_node *val)
{
    if (map->npairs % 8 == 0) {
        struct mt_pair *v = mt_arena_alloc(&p->doc->arena, (map->npairs + 8) * sizeof(*v));
        if (!v)
            return false;
        if (map->npairs)
            memcpy(v, map->pairs, map->npairs * sizeof(*v));
        map->pairs = v;
    }
    map->pairs[map->npairs].key = key;
    map->pairs[map->npairs].key_pos = kpos;
    map->pairs[map->npairs].value = val;
    map->npairs++;
    return true;
}

static struct mt_node *parse_map(struct parser *p, struct mt_pos pos, int depth)
{
    struct mt_node *map = new_node(p, MT_NODE_MAP, pos);
    yaml_event_t ev;

    for (;;) {
        if (!next_event(p, &ev))
            return NULL;
        if (ev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&ev);
            return map;
        }
        struct mt_pos kpos = mark_pos(p, ev.start_mark);
        if (ev.type != YAML_SCALAR_EVENT) {
            perr(p, kpos, "keys are plain words such as 'site'", "a key must be a plain value");
            parse_node(p, &ev, depth + 1);
            if (p->abort || !next_event(p, &ev))
                return NULL;
            parse_node(p, &ev, depth + 1);
            if (p->abort)
                return NULL;
            continue;
        }
        refuse_tag(p, kpos, ev.data.scalar.tag);
        char *key = mt_arena_strdup(&p->doc->arena, (const char *)ev.data.scalar.value);
        yaml_event_delete(&ev);
        if (!next_event(p, &ev))
            return NULL;
        struct mt_node *val = parse_node(p, &ev, depth + 1);
        if (!val && p->abort)
            return NULL;
        const struct mt_pair *dup = mt_node_pair(map, key);
        if (dup) {
            char hint[96];
            snprintf(hint, sizeof(hint), "first set at line %d; remove one of them",
                     dup->key_pos.line);
            perr(p, kpos, hint, "duplicate key '%s'", key);
            continue;
        }
        if (map && val)
            push_pair(p, map, key, kpos, val);
    }
}

static struct mt_node *parse_seq(struct parser *p, struct mt_pos pos, int depth)
{
    struct mt_node *seq = new_node(p, MT_NODE_SEQ, pos);
    yaml_event_t ev;

    for (;;) {
        if (!next_event(p, &ev))
            return NULL;
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            return seq;
        }
        struct mt_node *item = parse_node(p, &ev, depth + 1);
        if (!item && p->abort)
            return NULL;
        if (!item || !seq)
            continue;
        if (seq->nitems % 8 == 0) {
            struct mt_node **v =
                mt_arena_alloc(&p->doc->arena, (seq->nitems + 8) * sizeof(*v));
            if (!v)
                return NULL;
            if (seq->nitems)
                memcpy(v, seq->items, seq->nitems * sizeof(*v));
            seq->items = v;
        }
        seq->items[seq->nitems++] = item;
    }
}

/* Consumes ev (and, for collections, everything up to the matching end). */
static struct mt_node *parse_node(struct parser *p, yaml_event_t *ev, int depth)
{
    struct mt_pos pos = mark_pos(p, ev->start_mark);
    struct mt_node *n = NULL;

    if (ev->type == YAML_SCALAR_EVENT)
        refuse_tag(p, pos, ev->data.scalar.tag);
    else if (ev->type == YAML_MAPPING_START_EVENT)
        refuse_tag(p, pos, ev->data.mapping_start.tag);
    else if (ev->type == YAML_SEQUENCE_START_EVENT)
        refuse_tag(p, pos, ev->data.sequence_start.tag);

    if (depth > MAX_DEPTH) {
        perr(p, pos, NULL, "configuration nested deeper than %d levels", MAX_DEPTH);
        yaml_event_delete(ev);
        p->abort = true;
        return NULL;
    }
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        if (is_null_scalar(ev)) {
            n = new_node(p, MT_NODE_NULL, pos);
            if (n)
                n->str = "";
        } else {
            n = new_node(p, MT_NODE_SCALAR, pos);
            if (n) {
                n->quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
                n->str = expand_env(p, (const char *)ev->data.scalar.value, pos, 0);
                if (!n->str)
                    n->type = MT_NODE_NULL, n->str = "";
            }
        }
        yaml_event_delete(ev);
        return n;
    case YAML_ALIAS_EVENT:
        perr(p, pos, "write the values out; conf.d files may override each other instead",
             "YAML aliases (*%s) are not supported", (const char *)ev->data.alias.anchor);
        yaml_event_delete(ev);
        return new_node(p, MT_NODE_NULL, pos);
    case YAML_MAPPING_START_EVENT:
        yaml_event_delete(ev);
        return parse_map(p, pos, depth);
    case YAML_SEQUENCE_START_EVENT:
        yaml_event_delete(ev);
        return parse_seq(p, pos, depth);
    default:
        yaml_event_delete(ev);
        return NULL;
    }
}

/* ---- merge ---- */

static struct mt_node *merge(struct mt_cfgdoc *doc, struct mt_node *old, struct mt_node *new)
{
    /* "inputs:" with nothing under it in a drop-in must not wipe out the
     * inputs of earlier files: an empty value adds nothing */
    if (old && old->type == MT_NODE_MAP && new->type == MT_NODE_NULL)
        return old;
    if (!old || old->type != MT_NODE_MAP || new->type != MT_NODE_MAP)
        return new;
    for (size_t i = 0; i < new->npairs; i++) {
        struct mt_pair *np = &new->pairs[i];
        struct mt_pair *op = (struct mt_pair *)mt_node_pair(old, np->key);
        if (op) {
            op->value = merge(doc, op->value, np->value);
            op->key_pos = np->key_pos;
            continue;
        }
        struct parser p = {.doc = doc};
        push_pair(&p, old, np->key, np->key_pos, np->value);
    }
    return old;
}

static char *read_text(const char *path, struct mt_diags *d)
{
    struct mt_pos pos = {path, 0, 0};
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;

    if (!f) {
        mt_diags_add(d, &pos, NULL, "cannot read: %s", strerror(errno));
        return NULL;
    }
    if (fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)) {
        mt_diags_add(d, &pos, NULL, "cannot read: %s", strerror(errno));
        goto out;
    }
    if (n > MAX_FILE_SIZE) {
        mt_diags_add(d, &pos, NULL, "file is larger than %d bytes", MAX_FILE_SIZE);
        goto out;
    }
    buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        mt_diags_add(d, &pos, NULL, "cannot read: %s", buf ? "short read" : "out of memory");
        free(buf);
        buf = NULL;
        goto out;
    }
    buf[n] = 0;
    if (memchr(buf, 0, (size_t)n)) {
        mt_diags_add(d, &pos, "configuration files are UTF-8 text", "file contains NUL bytes");
        free(buf);
        buf = NULL;
    }
out:
    fclose(f);
    return buf;
}

static int parse_stream(struct parser *p, struct mt_node **out)
{
    yaml_event_t ev;
    int docs = 0;

    *out = NULL;
    for (;;) {
        if (!next_event(p, &ev))
            return -1;
        int type = ev.type;
        if (type == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            return 0;
        }
        if (type == YAML_DOCUMENT_START_EVENT) {
            if (++docs > 1) {
                perr(p, mark_pos(p, ev.start_mark), "put each document in its own file",
                     "only one YAML document per file");
                yaml_event_delete(&ev);
                return -1;
            }
            yaml_event_delete(&ev);
            continue;
        }
        if (type == YAML_STREAM_START_EVENT || type == YAML_DOCUMENT_END_EVENT) {
            yaml_event_delete(&ev);
            continue;
        }
        struct mt_node *n = parse_node(p, &ev, 0);
        if (!n && p->abort)
            return -1;
        *out = n;
    }
}

int mt_cfg_load_file(struct mt_cfgdoc *doc, const char *name, const char *text,
                     struct mt_diags *d)
{
    struct parser p = {.doc = doc, .d = d};
    char *owned = NULL;
    struct mt_node *root = NULL;

    p.file = mt_arena_strdup(&doc->arena, name);
    if (!text) {
        owned = read_text(name, d);
        if (!owned)
            return 1;
        text = owned;
    }
    if (!yaml_parser_initialize(&p.yp)) {
        free(owned);
        mt_diags_add(d, NULL, NULL, "out of memory");
        return 1;
    }
    yaml_parser_set_input_string(&p.yp, (const unsigned char *)text, strlen(text));
    parse_stream(&p, &root);
    yaml_parser_delete(&p.yp);
    free(owned);
    doc->nfiles++;
    if (p.errors)
        return p.errors;
    if (!root || root->type == MT_NODE_NULL)
        return 0; /* empty file: nothing to merge */
    if (root->type != MT_NODE_MAP) {
        mt_diags_add(d, &root->pos, "start with a section such as 'agent:' or 'inputs:'",
                     "the top level must be a mapping of sections, found %s",
                     mt_node_type_name(root->type));
        return 1;
    }
    doc->root = merge(doc, doc->root, root);
    return 0;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool yaml_name(const char *n)
{
    size_t l = strlen(n);
    if (n[0] == '.')
        return false;
    return (l > 5 && strcmp(n + l - 5, ".yaml") == 0) || (l > 4 && strcmp(n + l - 4, ".yml") == 0);
}

int mt_cfg_load(struct mt_cfgdoc *doc, const char *path, struct mt_diags *d)
{
    struct mt_pos pos = {path, 0, 0};
    struct stat st;
    DIR *dir;
    struct dirent *de;
    char **names = NULL;
    size_t n = 0, cap = 0;
    int errors = 0;

    if (stat(path, &st)) {
        mt_diags_add(d, &pos, "pass the configuration directory with -c DIR",
                     "cannot open configuration: %s", strerror(errno));
        return 1;
    }
    if (!S_ISDIR(st.st_mode))
        return mt_cfg_load_file(doc, path, NULL, d);
    dir = opendir(path);
    if (!dir) {
        mt_diags_add(d, &pos, NULL, "cannot open directory: %s", strerror(errno));
        return 1;
    }
    while ((de = readdir(dir))) {
        if (!yaml_name(de->d_name))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **v = realloc(names, cap * sizeof(*v));
            if (!v)
                break;
            names = v;
        }
        if (asprintf(&names[n], "%s/%s", path, de->d_name) < 0)
            break;
        n++;
    }
    closedir(dir);
    if (n == 0) {
        mt_diags_add(d, &pos, "configuration files end in .yaml or .yml",
                     "no configuration files in this directory");
        errors = 1;
    }
    if (n) /* names is NULL then, and qsort's pointer must not be */
        qsort(names, n, sizeof(*names), name_cmp);
    for (size_t i = 0; i < n; i++) {
        errors += mt_cfg_load_file(doc, names[i], NULL, d);
        free(names[i]);
    }
    free(names);
    return errors;
}
