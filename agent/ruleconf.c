/*
 * ruleconf: the `rules:` section of the configuration -> struct
 * mt_rule_spec (rules.h). Every problem goes to the diagnostics with its
 * file:line:column: unknown options (did-you-mean), a script that does not
 * compile or fails at its top level (its own file:line), bad globs and
 * tags, `from` naming no rule or closing a cycle.
 *
 * Any thread (a reload loads the configuration on a worker). Reads and
 * runs the scripts' top levels in throw-away sandboxes; never logs.
 */
#include "ruleconf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hll.h"
#include "luabox.h"
#include "options.h"
#include "rule.h"

struct rule_opts {
    const char *script;
    uint64_t memory, window_memory;
    int64_t instructions, time_limit_ms, pause_after, close_delay_ms;
};

#define R(f) offsetof(struct rule_opts, f)
const struct mittari_option mt_rule_options[] = {
    {.name = "script",
     .type = MITTARI_OPT_STRING,
     .flags = MITTARI_OPT_REQUIRED,
     .offset = R(script),
     .help = "The rule's Lua file (docs/rules.md); a relative path is taken from the directory "
             "of the configuration file that names it."},
    {.name = "memory",
     .type = MITTARI_OPT_SIZE,
     .def = "16MiB",
     .min = 65536,
     .max = 1073741824,
     .offset = R(memory),
     .help = "Cap on the Lua memory of the rule (its state table included)."},
    {.name = "window_memory",
     .type = MITTARI_OPT_SIZE,
     .def = "64MiB",
     .min = 65536,
     .max = 4294967296.0,
     .offset = R(window_memory),
     .help = "Cap on what the rule's windows hold: the subjects of distinct counts, sums, "
             "sketches."},
    {.name = "instructions",
     .type = MITTARI_OPT_INT,
     .def = "1000000",
     .min = 1000,
     .max = 1000000000,
     .offset = R(instructions),
     .help = "Lua instructions per call (the top level, each on_reading)."},
    {.name = "time_limit",
     .type = MITTARI_OPT_DURATION,
     .def = "100ms",
     .min = 1,
     .max = 10000,
     .offset = R(time_limit_ms),
     .help = "Wall clock per call."},
    {.name = "pause_after",
     .type = MITTARI_OPT_INT,
     .def = "0",
     .min = 0,
     .max = 1000000000,
     .offset = R(pause_after),
     .help = "Pause the rule after this many failed calls in a row, until a reload (0 = never "
             "pause: count and go on)."},
    {.name = "close_delay",
     .type = MITTARI_OPT_DURATION,
     .def = "2s",
     .min = 0,
     .max = 3600000,
     .offset = R(close_delay_ms),
     .help = "The rule's clock runs this far behind the wall clock, so readings still on their "
             "way into the log are in their window when it closes."},
    {0},
};
#undef R

static const char *const reserved[] = {"series", "where", "from", "tags", "enabled", NULL};

static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '-' || *s == '.'))
            return false;
    return true;
}

static bool tag_key(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 32)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '-' || *s == '.' || *s == ':'))
            return false;
    return true;
}

static bool tag_value(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 128)
        return false;
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    return true;
}

static void resolve(const struct mt_pos *pos, const char *given, char *out, size_t len)
{
    const char *slash = pos && pos->file ? strrchr(pos->file, '/') : NULL;
    if (given[0] == '/' || !slash)
        snprintf(out, len, "%s", given);
    else
        snprintf(out, len, "%.*s/%s", (int)(slash - pos->file), pos->file, given);
}

/* The script, read once: the rule runs exactly the text that was checked,
 * whatever happens to the file later. */
static int read_script(struct mt_arena *a, const char *path, char **text, size_t *len, char *err,
                       size_t errlen)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return -errno;
    }
    if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size > (off_t)MT_LUABOX_FILE_MAX) {
        snprintf(err, errlen, "%s: %s", path,
                 S_ISREG(st.st_mode) ? "larger than 1 MiB" : "not a regular file");
        close(fd);
        return -EINVAL;
    }
    *text = mt_arena_alloc(a, (size_t)st.st_size + 1);
    *len = 0;
    ssize_t k = 0;
    while (*text && *len < (size_t)st.st_size &&
           (k = read(fd, *text + *len, (size_t)st.st_size - *len)) > 0)
        *len += (size_t)k;
    close(fd);
    if (!*text || k < 0) {
        snprintf(err, errlen, "cannot read %s", path);
        return -EIO;
    }
    return 0;
}

/* A scalar or a list of scalars -> a NULL-terminated array. */
static char **str_list(struct mt_arena *a, const struct mt_node *n, const char *what,
                       struct mt_diags *d)
{
    size_t k = n->type == MT_NODE_SEQ ? n->nitems : 1;
    char **v = mt_arena_alloc(a, (k + 1) * sizeof(*v));
    if (!v)
        return NULL;
    for (size_t i = 0; i < k; i++) {
        const struct mt_node *e = n->type == MT_NODE_SEQ ? n->items[i] : n;
        if (e->type != MT_NODE_SCALAR || !e->str[0]) {
            mt_diags_add(d, &e->pos, NULL, "%s: a name or glob, or a list of them", what);
            return NULL;
        }
        v[i] = mt_arena_strdup(a, e->str);
    }
    return v;
}

static bool load_tags(struct mt_rule_spec *s, const struct mt_node *n, const char *what,
                      struct mt_diags *d)
{
    struct mt_arena *a = &s->arena;
    if (n->type != MT_NODE_MAP) {
        mt_diags_add(d, &n->pos, "e.g. tags: {theme: culture, area: {\"library/*\": centre}}",
                     "%s: tags must be a mapping", what);
        return false;
    }
    s->tags = mt_arena_alloc(a, (n->npairs ? n->npairs : 1) * sizeof(*s->tags));
    if (!s->tags)
        return false;
    for (size_t i = 0; i < n->npairs; i++) {
        const struct mt_pair *p = &n->pairs[i];
        struct mt_rule_tag *t = &s->tags[s->ntags++];
        if (!tag_key(p->key)) {
            mt_diags_add(d, &p->key_pos, "at most 32 of A-Z a-z 0-9 _ . : -",
                         "%s: bad tag name '%s'", what, p->key);
            return false;
        }
        t->key = mt_arena_strdup(a, p->key);
        if (p->value->type == MT_NODE_SCALAR) {
            if (!tag_value(p->value->str)) {
                mt_diags_add(d, &p->value->pos, "1 to 128 bytes without control characters",
                             "%s: bad value of tag '%s'", what, p->key);
                return false;
            }
            t->value = mt_arena_strdup(a, p->value->str);
            continue;
        }
        if (p->value->type != MT_NODE_MAP || !p->value->npairs) {
            mt_diags_add(d, &p->value->pos, "a value, or a mapping of \"site/device\" globs to "
                         "values", "%s: tag '%s' has no value", what, p->key);
            return false;
        }
        const struct mt_node *m = p->value;
        const char **globs = mt_arena_alloc(a, m->npairs * sizeof(*globs));
        const char **vals = mt_arena_alloc(a, m->npairs * sizeof(*vals));
        if (!globs || !vals)
            return false;
        for (size_t k = 0; k < m->npairs; k++) {
            const struct mt_node *v = m->pairs[k].value;
            if (v->type != MT_NODE_SCALAR || !tag_value(v->str)) {
                mt_diags_add(d, &v->pos, "1 to 128 bytes without control characters",
                             "%s: tag '%s': '%s' needs a text value", what, p->key,
                             m->pairs[k].key);
                return false;
            }
            globs[k] = mt_arena_strdup(a, m->pairs[k].key);
            vals[k] = mt_arena_strdup(a, v->str);
        }
        t->globs = globs;
        t->values = vals;
        t->n = m->npairs;
    }
    return true;
}

static bool load_where(struct mt_rule_spec *s, const struct mt_node *n, const char *what,
                       struct mt_diags *d)
{
    if (n->type != MT_NODE_MAP) {
        mt_diags_add(d, &n->pos, "e.g. where: {service: library}",
                     "%s: where must be a mapping of tag: glob", what);
        return false;
    }
    s->where_keys = mt_arena_alloc(&s->arena, (n->npairs + 1) * sizeof(char *));
    s->where_globs = mt_arena_alloc(&s->arena, (n->npairs + 1) * sizeof(char *));
    if (!s->where_keys || !s->where_globs)
        return false;
    for (size_t i = 0; i < n->npairs; i++) {
        const struct mt_node *v = n->pairs[i].value;
        if (v->type != MT_NODE_SCALAR || !v->str[0]) {
            mt_diags_add(d, &v->pos, NULL, "%s: where: '%s' needs a glob", what, n->pairs[i].key);
            return false;
        }
        s->where_keys[s->nwhere] = mt_arena_strdup(&s->arena, n->pairs[i].key);
        s->where_globs[s->nwhere++] = mt_arena_strdup(&s->arena, v->str);
    }
    return true;
}

static void canonical(struct mt_rule_spec *s, const struct rule_opts *o)
{
    struct mt_buf b = {0};
    mt_buf_printf(&b, "script=%s\ncontent=%016" PRIx64 "\n", s->script,
                  mt_hash64(s->text, s->textlen));
    mt_options_canonical(mt_rule_options, o, &b);
    for (char **g = s->series; g && *g; g++)
        mt_buf_printf(&b, "series=%s\n", *g);
    for (size_t i = 0; i < s->nwhere; i++)
        mt_buf_printf(&b, "where=%s:%s\n", s->where_keys[i], s->where_globs[i]);
    for (char **f = s->from; f && *f; f++)
        mt_buf_printf(&b, "from=%s\n", *f);
    for (size_t i = 0; i < s->ntags; i++) {
        const struct mt_rule_tag *t = &s->tags[i];
        mt_buf_printf(&b, "tag=%s:%s\n", t->key, t->value ? t->value : "");
        for (size_t k = 0; k < t->n; k++)
            mt_buf_printf(&b, " %s=%s\n", t->globs[k], t->values[k]);
    }
    mt_buf_printf(&b, "enabled=%d\n", s->enabled);
    s->canonical = mt_arena_strdup(&s->arena, mt_buf_cstr(&b));
    mt_buf_free(&b);
}

static struct mt_rule_spec *load_rule(const struct mt_pair *p, const char *tz,
                                      struct mt_diags *d)
{
    char what[120], path[4096], err[700];
    const struct mt_node *map = p->value;
    size_t before = d->n;

    snprintf(what, sizeof(what), "rule '%s'", p->key);
    if (!valid_name(p->key)) {
        mt_diags_add(d, &p->key_pos, "names are letters, digits, _, - and ., at most 63",
                     "bad rule name '%s'", p->key);
        return NULL;
    }
    if (map->type != MT_NODE_MAP) {
        mt_diags_add(d, &map->pos, "give at least 'script: FILE.lua' under the rule's name",
                     "%s must be a mapping, found %s", what, mt_node_type_name(map->type));
        return NULL;
    }
    struct mt_rule_spec *s = calloc(1, sizeof(*s));
    struct rule_opts o = {0};
    if (!s)
        return NULL;
    struct mt_optset os = {mt_rule_options, sizeof(o), what, reserved, false, "rules"};
    mt_options_apply(&os, &o, map, &p->key_pos, &s->arena, d);
    s->name = mt_arena_strdup(&s->arena, p->key);
    s->enabled = true;
    const struct mt_node *n;
    if ((n = mt_node_get(map, "enabled"))) {
        if (n->type != MT_NODE_SCALAR || mt_parse_bool(n->str, &s->enabled))
            mt_diags_add(d, &n->pos, "true or false", "%s: enabled must be true or false", what);
    }
    if ((n = mt_node_get(map, "series")))
        s->series = str_list(&s->arena, n, "series", d);
    if ((n = mt_node_get(map, "from")))
        s->from = str_list(&s->arena, n, "from", d);
    if ((n = mt_node_get(map, "where")))
        load_where(s, n, what, d);
    if ((n = mt_node_get(map, "tags")))
        load_tags(s, n, what, d);
    if (d->n == before && o.script) {
        const struct mt_node *sn = mt_node_get(map, "script");
        resolve(sn ? &sn->pos : &p->key_pos, o.script, path, sizeof(path));
        s->script = mt_arena_strdup(&s->arena, path);
        /* compiled and its top level run now: a typo is found before the agent starts */
        if (read_script(&s->arena, path, &s->text, &s->textlen, err, sizeof(err)) ||
            mt_rule_check_text(path, s->text, s->textlen, tz, err, sizeof(err)))
            mt_diags_add(d, sn ? &sn->pos : &p->key_pos, "docs/rules.md describes the rule API",
                         "%s: %s", what, err);
    }
    s->lua_mem = (size_t)o.memory;
    s->window_mem = (size_t)o.window_memory;
    s->instructions = (uint64_t)o.instructions;
    s->time_ms = (uint32_t)o.time_limit_ms;
    s->pause_after = o.pause_after;
    s->close_delay_us = o.close_delay_ms * 1000;
    if (d->n != before || !s->name || !s->script || !s->text) {
        mt_rule_spec_free(s);
        return NULL;
    }
    canonical(s, &o);
    return s;
}

static bool on_cycle(struct mt_rule_spec **v, const char **names, size_t n, size_t i,
                     unsigned char *mark)
{
    mark[i] = 1;
    for (char **f = v[i]->from; f && *f; f++)
        for (size_t k = 0; k < n; k++)
            if (strcmp(names[k], *f) == 0 &&
                (mark[k] == 1 || (mark[k] == 0 && on_cycle(v, names, n, k, mark))))
                return true;
    mark[i] = 2;
    return false;
}

/* from: names a configured rule, and no chain of rules loops back. */
static void check_from(struct mt_rule_spec **v, size_t n, const struct mt_node *sec,
                       struct mt_diags *d)
{
    const char **names = calloc(n + 1, sizeof(*names));
    if (!names)
        return;
    for (size_t i = 0; i < n; i++)
        names[i] = v[i]->name;
    for (size_t i = 0; i < n; i++) {
        for (char **f = v[i]->from; f && *f; f++) {
            size_t k = 0;
            while (k < n && strcmp(names[k], *f) != 0)
                k++;
            if (k < n)
                continue;
            const struct mt_node *m = mt_node_get(sec, v[i]->name);
            const struct mt_node *fn = m ? mt_node_get(m, "from") : NULL;
            const char *best = mt_did_you_mean(*f, names, n);
            char hint[120];
            snprintf(hint, sizeof(hint), best ? "did you mean '%s'?" : "from names other rules%s",
                     best ? best : "");
            mt_diags_add(d, fn ? &fn->pos : NULL, hint, "rule '%s': from names no rule '%s'",
                         v[i]->name, *f);
        }
    }
    /* a cycle: a depth-first walk along from-links, 1 = on the path */
    unsigned char *mark = calloc(n ? n : 1, 1);
    for (size_t i = 0; mark && i < n; i++)
        if (!mark[i] && on_cycle(v, names, n, i, mark)) {
            const struct mt_node *m = mt_node_get(sec, v[i]->name);
            const struct mt_node *fn = m ? mt_node_get(m, "from") : NULL;
            mt_diags_add(d, fn ? &fn->pos : NULL,
                         "a rule may build on another's figures, not on its own",
                         "rule '%s': its 'from' leads back to itself", v[i]->name);
            break;
        }
    free(mark);
    free(names);
}

int mt_ruleconf_load(const struct mt_node *sec, const char *tz, struct mt_rule_spec ***out,
                     size_t *nout, struct mt_diags *d)
{
    size_t before = d->n;
    *out = NULL;
    *nout = 0;
    if (!sec || sec->type == MT_NODE_NULL)
        return 0;
    if (sec->type != MT_NODE_MAP) {
        mt_diags_add(d, &sec->pos, "name each rule: 'door-visitors: {script: ...}'",
                     "'rules' must be a mapping of named rules, found %s",
                     mt_node_type_name(sec->type));
        return MITTARI_ECONFIG;
    }
    struct mt_rule_spec **v = calloc(sec->npairs ? sec->npairs : 1, sizeof(*v));
    if (!v)
        return -ENOMEM;
    for (size_t i = 0; i < sec->npairs; i++) {
        struct mt_rule_spec *s = load_rule(&sec->pairs[i], tz, d);
        if (s)
            v[(*nout)++] = s;
    }
    check_from(v, *nout, sec, d);
    *out = v;
    return d->n == before ? 0 : MITTARI_ECONFIG;
}

void mt_ruleconf_free(struct mt_rule_spec **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        mt_rule_spec_free(v[i]);
    free(v);
}
