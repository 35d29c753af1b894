#include "options.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "decoder.h"

#define SECRET_MAX 65536

const char *mt_opt_type_name(int type)
{
    switch (type) {
    case MITTARI_OPT_STRING: return "string";
    case MITTARI_OPT_INT: return "integer";
    case MITTARI_OPT_DOUBLE: return "number";
    case MITTARI_OPT_BOOL: return "boolean";
    case MITTARI_OPT_ENUM: return "choice";
    case MITTARI_OPT_DURATION: return "duration";
    case MITTARI_OPT_SIZE: return "size";
    case MITTARI_OPT_LIST: return "list";
    }
    return "?";
}

static const char *type_example(int type)
{
    switch (type) {
    case MITTARI_OPT_INT: return "a whole number such as 10";
    case MITTARI_OPT_DOUBLE: return "a number such as 2.5";
    case MITTARI_OPT_BOOL: return "true or false";
    case MITTARI_OPT_DURATION: return "a duration such as 250ms, 5s, 2m, 1h or 7d";
    case MITTARI_OPT_SIZE: return "a size such as 512KiB, 64MiB or 1GiB";
    }
    return NULL;
}

static bool has_range(const struct mittari_option *o)
{
    return o->min < o->max;
}

static void fmt_range_value(const struct mittari_option *o, double v, char *buf, size_t len)
{
    static const struct {
        double ms;
        const char *unit;
    } units[] = {{604800e3, "w"}, {86400e3, "d"}, {3600e3, "h"}, {60e3, "m"}, {1e3, "s"}};

    if (o->type == MITTARI_OPT_DURATION) {
        for (size_t i = 0; i < MT_ARRAY_SIZE(units); i++) {
            if (v >= units[i].ms && fmod(v, units[i].ms) == 0) {
                snprintf(buf, len, "%.0f%s", v / units[i].ms, units[i].unit);
                return;
            }
        }
        snprintf(buf, len, "%.0fms", v);
    } else if (o->type == MITTARI_OPT_INT || o->type == MITTARI_OPT_SIZE) {
        snprintf(buf, len, "%.0f", v);
    } else {
        snprintf(buf, len, "%.15g", v);
    }
}

/* A number too large for its type (2^64 for an integer) is out of range,
 * not "not a number" (issue 9). */
static int out_of_range(const struct mittari_option *o, const char *text, char *err, size_t errlen)
{
    char lo[32], hi[32];

    if (has_range(o)) {
        fmt_range_value(o, o->min, lo, sizeof(lo));
        fmt_range_value(o, o->max, hi, sizeof(hi));
        snprintf(err, errlen, "%s is out of range (%s to %s)", text, lo, hi);
    } else {
        snprintf(err, errlen, "%s is out of range (too large)", text);
    }
    return -ERANGE;
}

/* Parses text for option o and stores it. 0, or -EINVAL/-ERANGE with a
 * message (without the option name) in err. */
static int parse_value(const struct mittari_option *o, const char *text, void *conf,
                       struct mt_arena *arena, char *err, size_t errlen)
{
    unsigned char *dst = (unsigned char *)conf + o->offset;
    double num = 0;
    int r = 0;

    switch (o->type) {
    case MITTARI_OPT_STRING: {
        char *s = mt_arena_strdup(arena, text);
        if (!s)
            return -ENOMEM;
        memcpy(dst, &s, sizeof(s));
        return 0;
    }
    case MITTARI_OPT_INT: {
        int64_t v;
        r = mt_parse_i64(text, &v);
        if (r == -ERANGE)
            return out_of_range(o, text, err, errlen);
        if (r) {
            snprintf(err, errlen, "'%s' is not %s", text, type_example(o->type));
            return r;
        }
        num = (double)v;
        memcpy(dst, &v, sizeof(v));
        break;
    }
    case MITTARI_OPT_DOUBLE: {
        double v;
        if (mt_parse_double(text, &v)) {
            snprintf(err, errlen, "'%s' is not %s", text, type_example(o->type));
            return -EINVAL;
        }
        num = v;
        memcpy(dst, &v, sizeof(v));
        break;
    }
    case MITTARI_OPT_BOOL: {
        bool v;
        if (mt_parse_bool(text, &v)) {
            snprintf(err, errlen, "'%s' is not %s", text, type_example(o->type));
            return -EINVAL;
        }
        memcpy(dst, &v, sizeof(v));
        return 0;
    }
    case MITTARI_OPT_ENUM: {
        for (int i = 0; o->values && o->values[i]; i++) {
            if (strcmp(o->values[i], text) == 0) {
                memcpy(dst, &i, sizeof(i));
                return 0;
            }
        }
        struct mt_buf b = {0};
        for (int i = 0; o->values && o->values[i]; i++)
            mt_buf_printf(&b, "%s%s", i ? ", " : "", o->values[i]);
        snprintf(err, errlen, "'%s' is not one of: %s", text, mt_buf_cstr(&b));
        mt_buf_free(&b);
        return -EINVAL;
    }
    case MITTARI_OPT_DURATION: {
        int64_t v;
        r = mt_parse_duration_ms(text, &v);
        if (r == -ERANGE)
            return out_of_range(o, text, err, errlen);
        if (r) {
            snprintf(err, errlen, "'%s' is not %s", text, type_example(o->type));
            return -EINVAL;
        }
        num = (double)v;
        memcpy(dst, &v, sizeof(v));
        break;
    }
    case MITTARI_OPT_SIZE: {
        uint64_t v;
        r = mt_parse_size(text, &v);
        if (r == -ERANGE)
            return out_of_range(o, text, err, errlen);
        if (r) {
            snprintf(err, errlen, "'%s' is not %s", text, type_example(o->type));
            return -EINVAL;
        }
        num = (double)v;
        memcpy(dst, &v, sizeof(v));
        break;
    }
    default:
        snprintf(err, errlen, "unknown option type %d", o->type);
        return -EINVAL;
    }
    if (has_range(o) && (num < o->min || num > o->max))
        return out_of_range(o, text, err, errlen);
    return 0;
}

/* A path in the configuration is relative to the file that names it, not
 * to the cwd: secret files and Lua decoders alike. */
static void resolve_path(const struct mt_pos *pos, const char *given, char *path, size_t len)
{
    const char *slash = pos && pos->file ? strrchr(pos->file, '/') : NULL;
    if (given[0] != '/' && slash)
        snprintf(path, len, "%.*s/%s", (int)(slash - pos->file), pos->file, given);
    else
        snprintf(path, len, "%s", given);
}

static char *read_secret(const char *given, const struct mt_pos *pos, struct mt_arena *arena,
                         struct mt_diags *d)
{
    struct stat st;
    char buf[SECRET_MAX + 1];
    char hint[600];
    char path[4096];
    ssize_t n;

    /* symlinks are followed (systemd credentials, mounted secrets) and the
     * mode of the file they lead to is what counts */
    resolve_path(pos, given, path, sizeof(path));
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        mt_diags_add(d, pos, NULL, "cannot read secret file %s: %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        mt_diags_add(d, pos, NULL, "secret file %s is not a regular file", path);
        close(fd);
        return NULL;
    }
    if (st.st_mode & 077) {
        snprintf(hint, sizeof(hint), "chmod 600 %s", path);
        mt_diags_add(d, pos, hint, "secret file %s is readable by group or others (mode %04o)",
                     path, (unsigned)(st.st_mode & 07777));
        close(fd);
        return NULL;
    }
    n = read(fd, buf, SECRET_MAX + 1);
    close(fd);
    if (n < 0 || n > SECRET_MAX) {
        mt_diags_add(d, pos, NULL, "cannot read secret file %s: %s", path,
                     n < 0 ? strerror(errno) : "larger than 64 KiB");
        return NULL;
    }
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    if (n == 0) {
        mt_diags_add(d, pos, NULL, "secret file %s is empty", path);
        return NULL;
    }
    char *s = mt_arena_strndup(arena, buf, (size_t)n);
    memset(buf, 0, sizeof(buf));
    return s;
}

/* A Lua decoder (MITTARI_OPT_LUA_FILE): the plugin gets the resolved path,
 * and the file is compiled now, so `mittari check` reports a script that
 * does not compile or defines no decode at its file:line before any plugin
 * runs. */
static void lua_file(const struct mt_optset *os, const struct mittari_option *o, void *conf,
                     const struct mt_pos *pos, struct mt_arena *arena, struct mt_diags *d)
{
    unsigned char *dst = (unsigned char *)conf + o->offset;
    const char *given;
    char path[4096], err[512];

    memcpy(&given, dst, sizeof(given));
    resolve_path(pos, given, path, sizeof(path));
    char *s = mt_arena_strdup(arena, path);
    if (!s) {
        mt_diags_add(d, pos, NULL, "out of memory");
        return;
    }
    memcpy(dst, &s, sizeof(s));
    if (mt_decoder_check_file(path, err, sizeof(err)))
        mt_diags_add(d, pos, "docs/lua.md describes what a decoder file must define",
                     "option '%s' of %s: %s", o->name, os->what, err);
}

static const struct mittari_option *find_opt(const struct mittari_option *t, const char *name)
{
    for (; t && t->name; t++)
        if (strcmp(t->name, name) == 0)
            return t;
    return NULL;
}

/* "token_file" -> the SECRET option "token", or NULL */
static const struct mittari_option *secret_file_opt(const struct mittari_option *t,
                                                    const char *key)
{
    size_t n = strlen(key);
    char base[128];

    if (n <= 5 || n - 5 >= sizeof(base) || strcmp(key + n - 5, "_file") != 0)
        return NULL;
    memcpy(base, key, n - 5);
    base[n - 5] = 0;
    const struct mittari_option *o = find_opt(t, base);
    return o && (o->flags & MITTARI_OPT_SECRET) ? o : NULL;
}

static void unknown_key(const struct mt_optset *os, const struct mt_pair *p, struct mt_diags *d)
{
    const char *cands[256];
    size_t n = 0;
    char hint[160];
    const char *best;

    for (const struct mittari_option *o = os->table; o && o->name && n < 250; o++)
        cands[n++] = o->name;
    for (const char *const *r = os->reserved; r && *r && n < 256; r++)
        cands[n++] = *r;
    best = mt_did_you_mean(p->key, cands, n);
    if (best)
        snprintf(hint, sizeof(hint), "did you mean '%s'?", best);
    else if (os->table_name)
        snprintf(hint, sizeof(hint), "'mittari plugins %s' lists its options", os->table_name);
    else
        snprintf(hint, sizeof(hint), "'mittari plugins' lists the options of every plugin");
    mt_diags_add(d, &p->key_pos, hint, "unknown option '%s' for %s", p->key, os->what);
}

/* A hint for a value option o refused: the closest choice, or, for a device
 * path given to a number (modbus 'port' is the TCP port), the option of
 * the same table that takes device paths (its help names /dev/). */
static void value_hint(const struct mt_optset *os, const struct mittari_option *o, const char *text,
                       char *hint, size_t len)
{
    if (o->type == MITTARI_OPT_ENUM && o->values) {
        size_t nv = 0;
        while (o->values[nv])
            nv++;
        const char *best = mt_did_you_mean(text, (const char *const *)o->values, nv);
        if (best)
            snprintf(hint, len, "did you mean '%s'?", best);
        return;
    }
    if (text[0] != '/' || o->type == MITTARI_OPT_STRING)
        return;
    for (const struct mittari_option *t = os->table; t->name; t++) {
        if (t->type == MITTARI_OPT_STRING && t->help && strstr(t->help, "/dev/")) {
            snprintf(hint, len, "a device path goes in '%s' ('%s' takes %s)", t->name, o->name,
                     type_example(o->type));
            return;
        }
    }
}

static bool is_reserved(const struct mt_optset *os, const char *key)
{
    for (const char *const *r = os->reserved; r && *r; r++)
        if (strcmp(*r, key) == 0)
            return true;
    return false;
}

/* A YAML list of mappings: each item validated against o->sub into an
 * array of o->sub_size structs. */
static void apply_list(const struct mt_optset *os, const struct mittari_option *o, void *conf,
                       const struct mt_node *v, struct mt_arena *arena, struct mt_diags *d)
{
    struct mittari_list list = {0};
    char what[256];

    if (v->type == MT_NODE_NULL)
        goto store;
    if (v->type != MT_NODE_SEQ) {
        mt_diags_add(d, &v->pos, "write one '- key: value' item per entry",
                     "option '%s' of %s expects a list, found %s", o->name, os->what,
                     mt_node_type_name(v->type));
        return;
    }
    if (has_range(o) && ((double)v->nitems < o->min || (double)v->nitems > o->max)) {
        mt_diags_add(d, &v->pos, NULL, "option '%s' of %s: %zu items, allowed %.0f to %.0f",
                     o->name, os->what, v->nitems, o->min, o->max);
        return;
    }
    unsigned char *items = v->nitems ? mt_arena_alloc(arena, v->nitems * o->sub_size) : NULL;
    if (v->nitems && !items) {
        mt_diags_add(d, &v->pos, NULL, "out of memory");
        return;
    }
    for (size_t i = 0; i < v->nitems; i++) {
        const struct mt_node *item = v->items[i];
        snprintf(what, sizeof(what), "%s, %s item %zu", os->what, o->name, i + 1);
        if (item->type != MT_NODE_MAP) {
            mt_diags_add(d, &item->pos, "each item is a mapping: '- key: value'",
                         "%s: expected a mapping, found %s", what, mt_node_type_name(item->type));
            continue;
        }
        struct mt_optset sub = {o->sub, o->sub_size, what, NULL, false, os->table_name};
        mt_options_apply(&sub, items + i * o->sub_size, item, &item->pos, arena, d);
    }
    list.n = v->nitems;
    list.items = items;
store:
    memcpy((unsigned char *)conf + o->offset, &list, sizeof(list));
}

int mt_options_apply(const struct mt_optset *os, void *conf, const struct mt_node *map,
                     const struct mt_pos *owner, struct mt_arena *arena, struct mt_diags *d)
{
    size_t before = d->n;
    size_t nopts = 0;
    char err[512];

    for (const struct mittari_option *o = os->table; o && o->name; o++)
        nopts++;
    unsigned char *seen = calloc(nopts + 1, 1);
    if (!seen)
        return 1;

    if (map && map->type != MT_NODE_MAP && map->type != MT_NODE_NULL) {
        mt_diags_add(d, &map->pos, NULL, "%s: expected a mapping of options, found %s",
                     os->what, mt_node_type_name(map->type));
        goto out;
    }
    for (size_t i = 0; map && i < map->npairs; i++) {
        const struct mt_pair *p = &map->pairs[i];
        const struct mittari_option *o = find_opt(os->table, p->key);
        const struct mittari_option *sec = o ? NULL : secret_file_opt(os->table, p->key);
        const struct mt_node *v = p->value;
        const char *text;

        if (!o && !sec) {
            if (!is_reserved(os, p->key) && !os->quiet_unknown)
                unknown_key(os, p, d);
            continue;
        }
        if (o && o->type == MITTARI_OPT_LIST) {
            seen[o - os->table] = 1;
            apply_list(os, o, conf, v, arena, d);
            continue;
        }
        if (v->type != MT_NODE_SCALAR) {
            const char *ex = type_example((o ? o : sec)->type);
            mt_diags_add(d, &v->pos, ex, "option '%s' of %s expects a single value, found %s",
                         p->key, os->what, mt_node_type_name(v->type));
            continue;
        }
        size_t idx = (size_t)((o ? o : sec) - os->table);
        if (seen[idx]) {
            mt_diags_add(d, &p->key_pos, "keep one of them",
                         "option '%s' is set both directly and through %s_file", sec ? sec->name : o->name,
                         sec ? sec->name : o->name);
            continue;
        }
        seen[idx] = 1;
        if (sec) {
            text = read_secret(v->str, &v->pos, arena, d);
            if (!text)
                continue;
            o = sec;
        } else {
            text = v->str;
        }
        int r = parse_value(o, text, conf, arena, err, sizeof(err));
        if (r == -ENOMEM) {
            mt_diags_add(d, &v->pos, NULL, "out of memory");
        } else if (r) {
            char hint[160] = "";
            value_hint(os, o, text, hint, sizeof(hint));
            mt_diags_add(d, &v->pos, hint[0] ? hint : NULL, "option '%s' of %s: %s", o->name,
                         os->what, (o->flags & MITTARI_OPT_SECRET) ? "value is invalid" : err);
        } else if (o->flags & MITTARI_OPT_LUA_FILE) {
            lua_file(os, o, conf, &v->pos, arena, d);
        }
    }
    for (size_t i = 0; i < nopts; i++) {
        const struct mittari_option *o = &os->table[i];
        if (seen[i])
            continue;
        if (o->def) {
            if (parse_value(o, o->def, conf, arena, err, sizeof(err)))
                mt_diags_add(d, owner, NULL, "default of option '%s' of %s is invalid: %s",
                             o->name, os->what, err);
        } else if (o->flags & MITTARI_OPT_REQUIRED) {
            mt_diags_add(d, owner, o->help, "%s: missing required option '%s'%s", os->what,
                         o->name, (o->flags & MITTARI_OPT_SECRET) ? " (or its _file form)" : "");
        }
    }
out:
    free(seen);
    return (int)(d->n - before);
}

static size_t type_size(int type)
{
    switch (type) {
    case MITTARI_OPT_STRING: return sizeof(char *);
    case MITTARI_OPT_INT:
    case MITTARI_OPT_DURATION: return sizeof(int64_t);
    case MITTARI_OPT_DOUBLE: return sizeof(double);
    case MITTARI_OPT_BOOL: return sizeof(bool);
    case MITTARI_OPT_ENUM: return sizeof(int);
    case MITTARI_OPT_SIZE: return sizeof(uint64_t);
    case MITTARI_OPT_LIST: return sizeof(struct mittari_list);
    }
    return 0;
}

int mt_options_check_table(const struct mittari_option *table, size_t conf_size, char *err,
                           size_t errlen)
{
    char tmp[512];

    for (const struct mittari_option *o = table; o && o->name; o++) {
        size_t ts = type_size(o->type);
        if (!*o->name || strlen(o->name) > 63) {
            snprintf(err, errlen, "option name '%s' is empty or too long", o->name);
            return -EINVAL;
        }
        if (!ts) {
            snprintf(err, errlen, "option '%s' has unknown type %d", o->name, o->type);
            return -EINVAL;
        }
        if (o->offset > conf_size || ts > conf_size - o->offset) { /* no wrap-around */
            snprintf(err, errlen, "option '%s' lies outside the config struct", o->name);
            return -EINVAL;
        }
        if (o->type == MITTARI_OPT_ENUM && (!o->values || !o->values[0])) {
            snprintf(err, errlen, "choice option '%s' has no values", o->name);
            return -EINVAL;
        }
        if (o->type == MITTARI_OPT_LIST) {
            char sub[400];
            if (!o->sub || !o->sub_size || o->def) {
                snprintf(err, errlen, "list option '%s' needs sub and sub_size, and no default",
                         o->name);
                return -EINVAL;
            }
            if (mt_options_check_table(o->sub, o->sub_size, sub, sizeof(sub))) {
                snprintf(err, errlen, "list option '%s': %s", o->name, sub);
                return -EINVAL;
            }
        }
        if ((o->flags & MITTARI_OPT_SECRET) && o->type != MITTARI_OPT_STRING) {
            snprintf(err, errlen, "secret option '%s' must be a string", o->name);
            return -EINVAL;
        }
        if ((o->flags & MITTARI_OPT_LUA_FILE) && o->type != MITTARI_OPT_STRING) {
            snprintf(err, errlen, "Lua file option '%s' must be a string", o->name);
            return -EINVAL;
        }
        for (const struct mittari_option *p = table; p != o; p++) {
            if (strcmp(p->name, o->name) == 0) {
                snprintf(err, errlen, "option '%s' is declared twice", o->name);
                return -EINVAL;
            }
        }
        if (o->def) {
            unsigned char *scratch = calloc(1, conf_size);
            struct mt_arena a = {0};
            int r = scratch ? parse_value(o, o->def, scratch, &a, tmp, sizeof(tmp)) : -ENOMEM;
            free(scratch);
            mt_arena_free(&a);
            if (r) {
                snprintf(err, errlen, "default of option '%s' is invalid: %s", o->name, tmp);
                return -EINVAL;
            }
        }
    }
    return 0;
}

int mt_options_canonical(const struct mittari_option *table, const void *conf, struct mt_buf *out)
{
    const unsigned char *base = conf;
    int r = 0;

    for (const struct mittari_option *o = table; o && o->name && !r; o++) {
        const unsigned char *src = base + o->offset;
        r = mt_buf_printf(out, "%s=", o->name);
        switch (o->type) {
        case MITTARI_OPT_STRING: {
            const char *s;
            memcpy(&s, src, sizeof(s));
            if (s && (o->flags & MITTARI_OPT_SECRET)) /* compare secrets, never hold them */
                r = r ? r : mt_buf_printf(out, "#%016" PRIx64, mt_hash_bytes(MT_HASH_INIT, s, strlen(s)));
            else
                r = r ? r : mt_buf_adds(out, s ? s : "\x01(unset)");
            break;
        }
        case MITTARI_OPT_INT:
        case MITTARI_OPT_DURATION: {
            int64_t v;
            memcpy(&v, src, sizeof(v));
            r = r ? r : mt_buf_printf(out, "%" PRId64, v);
            break;
        }
        case MITTARI_OPT_SIZE: {
            uint64_t v;
            memcpy(&v, src, sizeof(v));
            r = r ? r : mt_buf_printf(out, "%" PRIu64, v);
            break;
        }
        case MITTARI_OPT_DOUBLE: {
            double v;
            memcpy(&v, src, sizeof(v));
            r = r ? r : mt_buf_printf(out, "%.17g", v);
            break;
        }
        case MITTARI_OPT_BOOL: {
            bool v;
            memcpy(&v, src, sizeof(v));
            r = r ? r : mt_buf_adds(out, v ? "true" : "false");
            break;
        }
        case MITTARI_OPT_ENUM: {
            int v;
            memcpy(&v, src, sizeof(v));
            r = r ? r : mt_buf_printf(out, "%d", v);
            break;
        }
        case MITTARI_OPT_LIST: {
            struct mittari_list l;
            memcpy(&l, src, sizeof(l));
            r = r ? r : mt_buf_printf(out, "[%zu\n", l.n);
            for (size_t i = 0; i < l.n && !r; i++) {
                r = mt_options_canonical(o->sub, (const unsigned char *)l.items + i * o->sub_size,
                                         out);
                r = r ? r : mt_buf_adds(out, "-\n");
            }
            r = r ? r : mt_buf_addc(out, ']');
            break;
        }
        }
        r = r ? r : mt_buf_addc(out, '\n');
    }
    return r;
}

static void constraint_text(const struct mittari_option *o, struct mt_buf *b)
{
    if (o->type == MITTARI_OPT_ENUM) {
        mt_buf_adds(b, "one of: ");
        for (int i = 0; o->values[i]; i++)
            mt_buf_printf(b, "%s%s", i ? ", " : "", o->values[i]);
    } else if (has_range(o) && o->type == MITTARI_OPT_LIST) {
        mt_buf_printf(b, "%.0f to %.0f items", o->min, o->max);
    } else if (has_range(o)) {
        char lo[32], hi[32];
        fmt_range_value(o, o->min, lo, sizeof(lo));
        fmt_range_value(o, o->max, hi, sizeof(hi));
        mt_buf_printf(b, "%s to %s", lo, hi);
    }
}

static void print_rows(FILE *f, const struct mittari_option *table, bool markdown,
                       const char *prefix)
{
    for (const struct mittari_option *o = table; o && o->name; o++) {
        struct mt_buf c = {0}, name = {0};
        constraint_text(o, &c);
        mt_buf_printf(&name, "%s%s", prefix, o->name);
        const char *req = (o->flags & MITTARI_OPT_REQUIRED) ? "required" : "";
        if (markdown) {
            fprintf(f, "| `%s`", mt_buf_cstr(&name));
            if (o->flags & MITTARI_OPT_SECRET)
                fprintf(f, " or `%s_file`", o->name);
            if (o->def)
                fprintf(f, " | %s | `%s` | ", mt_opt_type_name(o->type), o->def);
            else
                fprintf(f, " | %s | %s | ", mt_opt_type_name(o->type), *req ? "required" : "");
            fprintf(f, "%s | %s |\n", mt_buf_cstr(&c), o->help ? o->help : "");
        } else {
            struct mt_buf t = {0};
            if (o->def)
                mt_buf_printf(&t, "default %s", o->def);
            else if (*req)
                mt_buf_adds(&t, "required");
            if (c.len)
                mt_buf_printf(&t, "%s%s", t.len ? "; " : "", mt_buf_cstr(&c));
            if (o->flags & MITTARI_OPT_SECRET)
                mt_buf_printf(&t, "%ssecret (or %s_file: PATH, mode 0600)", t.len ? "; " : "",
                              o->name);
            fprintf(f, "  %-20s %-9s %s", mt_buf_cstr(&name), mt_opt_type_name(o->type),
                    mt_buf_cstr(&t));
            mt_buf_free(&t);
            fprintf(f, "\n      %s\n", o->help ? o->help : "");
        }
        if (o->type == MITTARI_OPT_LIST) {
            mt_buf_adds(&name, "[].");
            print_rows(f, o->sub, markdown, mt_buf_cstr(&name));
        }
        mt_buf_free(&name);
        mt_buf_free(&c);
    }
}

void mt_options_print(FILE *f, const struct mittari_option *table, bool markdown)
{
    if (markdown) {
        fprintf(f, "| option | type | default | allowed | description |\n");
        fprintf(f, "|---|---|---|---|---|\n");
    }
    print_rows(f, table, markdown, "");
}
