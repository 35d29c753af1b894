#include "config.h"
#include "ruleconf.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agentid.h"
#include "crash.h"
#include "diag.h"
#include "isowire.h"
#include "listen.h"
#include "options.h"
#include "outmod.h"

static const char *const log_levels[] = {"err", "warning", "notice", "info", "debug", NULL};
static const char *const policies[] = {"drop_oldest", "block_inputs", NULL};
static const char *const syncs[] = {"full", "normal", NULL};
static const char *const rotations[] = {"none", "weekly", "monthly", "yearly", NULL};

#define A(f) offsetof(struct mt_agent_conf, f)
const struct mittari_option mt_agent_options[] = {
    {.name = "id",
     .type = MITTARI_OPT_STRING,
     .offset = A(id),
     .help = "This agent's name in idempotency keys and logs (default: from /etc/machine-id, "
             "see docs/outputs/http.md)."},
    {.name = "site",
     .type = MITTARI_OPT_STRING,
     .flags = MITTARI_OPT_REQUIRED,
     .offset = A(site),
     .help = "Site of the readings, e.g. kuusamo-library (inputs may override)."},
    {.name = "data_dir",
     .type = MITTARI_OPT_STRING,
     .def = "/var/lib/mittari",
     .offset = A(data_dir),
     .help = "Directory of the log database and the generated pseudonym key."},
    {.name = "plugin_dir",
     .type = MITTARI_OPT_STRING,
     .offset = A(plugin_dir),
     .help = "Directory of input plugins (NAME.so); default: the installed one."},
    {.name = "plugin_path",
     .type = MITTARI_OPT_STRING,
     .offset = A(plugin_path),
     .help = "More plugin directories, ':'-separated, searched in order before plugin_dir "
             "(an integrator's plugins)."},
    {.name = "timezone",
     .type = MITTARI_OPT_STRING,
     .def = "Europe/Helsinki",
     .offset = A(timezone),
     .help = "Local time zone for reports and query times (IANA name)."},
    {.name = "secret",
     .type = MITTARI_OPT_STRING,
     .flags = MITTARI_OPT_SECRET,
     .offset = A(secret),
     .help = "Pseudonymisation key (>= 16 bytes); use secret_file. Default: a key generated in "
             "data_dir."},
    {.name = "log_level",
     .type = MITTARI_OPT_ENUM,
     .def = "info",
     .values = log_levels,
     .offset = A(log_level),
     .help = "Least important messages logged."},
    {.name = "batch_size",
     .type = MITTARI_OPT_INT,
     .def = "10000",
     .min = 1,
     .max = 1000000,
     .offset = A(batch_size),
     .help = "Most readings committed in one transaction."},
    {.name = "batch_interval",
     .type = MITTARI_OPT_DURATION,
     .def = "1s",
     .min = 1,
     .max = 10000,
     .offset = A(batch_interval_ms),
     .help = "Longest a reading waits in memory before it is committed (what a crash or a "
             "power cut can lose of readings not yet committed)."},
    {.name = "queue_max",
     .type = MITTARI_OPT_INT,
     .def = "65536",
     .min = 1000,
     .max = 100000000,
     .offset = A(queue_max),
     .help = "Readings waiting for the database before emit refuses more (-EAGAIN)."},
    {.name = "retention",
     .type = MITTARI_OPT_DURATION,
     .def = "30d",
     .min = 0,
     .max = 3153600000000.0, /* 36500d: beyond, "keep" is meant (issue 15) */
     .offset = A(retention_ms),
     .help = "Delivered readings older than this are deleted (at most 36500d); 0 = keep until "
             "the size cap."},
    {.name = "max_size",
     .type = MITTARI_OPT_SIZE,
     .def = "1GiB",
     .offset = A(max_size),
     .help = "Size cap of the log (database pages in use); 0 = no cap."},
    {.name = "full_policy",
     .type = MITTARI_OPT_ENUM,
     .def = "drop_oldest",
     .values = policies,
     .offset = A(full_policy),
     .help = "At the cap, after deleting delivered readings: drop the oldest undelivered ones, or "
             "refuse new readings."},
    {.name = "sync",
     .type = MITTARI_OPT_ENUM,
     .def = "full",
     .values = syncs,
     .offset = A(sync),
     .help = "full: a commit survives power loss; normal: faster, may lose the last commits."},
    {.name = "housekeeping_interval",
     .type = MITTARI_OPT_DURATION,
     .def = "1m",
     .min = 1000,
     .max = 86400000,
     .offset = A(housekeeping_ms),
     .help = "How often retention runs."},
    {.name = "shutdown_timeout",
     .type = MITTARI_OPT_DURATION,
     .def = "10s",
     .min = 100,
     .max = 600000,
     .offset = A(shutdown_timeout_ms),
     .help = "Longest a stop waits for outputs to deliver what is committed."},
    {.name = "stats_interval",
     .type = MITTARI_OPT_DURATION,
     .def = "1h",
     .offset = A(stats_interval_ms),
     .help = "How often a statistics line is logged; 0 = never."},
    {.name = "workers",
     .type = MITTARI_OPT_INT,
     .def = "4",
     .min = 1,
     .max = 128,
     .offset = A(workers),
     .help = "Worker threads for blocking polls and outputs (read at start only)."},
    {.name = "pseudonym_rotation",
     .type = MITTARI_OPT_ENUM,
     .def = "none",
     .values = rotations,
     .offset = A(pseudonym_rotation),
     .help = "Change the pseudonymisation key every local week, month or year: a family seen in "
             "two periods counts as two (see docs/design.md)."},
    {0},
};
#undef A

#define S(f) offsetof(struct mt_status_conf, f)
const struct mittari_option mt_status_options[] = {
    {.name = "listen",
     .type = MITTARI_OPT_STRING,
     .def = "127.0.0.1:9465",
     .offset = S(listen),
     .help = "Address of the status endpoint: ADDRESS:PORT ([::1]:PORT for IPv6), a port alone "
             "(loopback), or off."},
    {.name = "token",
     .type = MITTARI_OPT_STRING,
     .flags = MITTARI_OPT_SECRET,
     .offset = S(token),
     .help = "Bearer token clients must send (use token_file; >= 16 bytes). Required when listen "
             "is not a loopback address; honoured on loopback too when set."},
    {.name = "connections",
     .type = MITTARI_OPT_INT,
     .def = "16",
     .min = 1,
     .max = 1024,
     .offset = S(connections),
     .help = "Most clients connected at once; one more is answered 503 and closed."},
    {.name = "timeout",
     .type = MITTARI_OPT_DURATION,
     .def = "10s",
     .min = 100,
     .max = 600000,
     .offset = S(timeout_ms),
     .help = "Time a connection has to send its request and read the reply; a slow or stuck "
             "client is cut off."},
    {.name = "refresh",
     .type = MITTARI_OPT_DURATION,
     .def = "10s",
     .min = 1000,
     .max = 3600000,
     .offset = S(refresh_ms),
     .help = "How often the page reloads its figures, the log's figures (backlog age, log "
             "size, visitors) are read again when readings came, and the loop copies its "
             "snapshot (STATUS=)."},
    {.name = "backlog_warn",
     .type = MITTARI_OPT_DURATION,
     .def = "1h",
     .min = 1000,
     .offset = S(backlog_warn_ms),
     .help = "Health is degraded while an output's oldest undelivered reading is older than "
             "this."},
    {.name = "visitors",
     .type = MITTARI_OPT_STRING,
     .def = "visitors_in",
     .offset = S(visitors),
     .help = "Metrics the page charts as visitors: names or globs (visitors_*), separated by "
             "spaces or commas; counts, not gauges; derived readings are not counted."},
    {0},
};
#undef S

static const char *const sections[] = {"agent", "inputs", "outputs", "rules", "status"};
static const char *const input_reserved[] = {"plugin", "site", "tags", "enabled", "isolate", NULL};

static bool valid_ident(const char *s, bool dots)
{
    if (!*s || strlen(s) > 63)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '-' || (dots && *s == '.')))
            return false;
    return true;
}

void mt_inst_conf_free(struct mt_inst_conf *ic)
{
    if (!ic)
        return;
    mt_arena_free(&ic->arena);
    free(ic);
}

void mt_config_free(struct mt_config *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->ninputs; i++)
        mt_inst_conf_free(c->inputs[i]);
    for (size_t i = 0; i < c->noutputs; i++)
        mt_inst_conf_free(c->outputs[i]);
    free(c->inputs);
    free(c->outputs);
    mt_ruleconf_free(c->rules, c->nrules);
    mt_arena_free(&c->arena);
    free(c);
}

static const char *scalar(const struct mt_node *n, const char *what, struct mt_diags *d)
{
    if (n && n->type == MT_NODE_SCALAR)
        return n->str;
    mt_diags_add(d, n ? &n->pos : NULL, NULL, "%s must be a single value, found %s", what,
                 n ? mt_node_type_name(n->type) : "nothing");
    return NULL;
}

/* Static tags -> canonical JSON object text (keys sorted). */
static const char *tags_json(struct mt_inst_conf *ic, const struct mt_node *n, const char *what,
                             struct mt_diags *d)
{
    struct mt_arena *a = &ic->arena;
    struct mt_buf b = {0};
    const struct mt_pair *sorted[32];
    size_t k = 0;
    const char *out;

    if (!n || n->type == MT_NODE_NULL)
        return "";
    if (n->type != MT_NODE_MAP) {
        mt_diags_add(d, &n->pos, "write tags as key: value lines, e.g. theme: liikunta",
                     "tags of %s must be a mapping, found %s", what, mt_node_type_name(n->type));
        return NULL;
    }
    if (n->npairs > 16) {
        mt_diags_add(d, &n->pos, NULL, "%s has more than 16 tags", what);
        return NULL;
    }
    for (size_t i = 0; i < n->npairs; i++) {
        const struct mt_pair *p = &n->pairs[i];
        if (!valid_ident(p->key, false) || p->value->type != MT_NODE_SCALAR ||
            strlen(p->value->str) > 128) {
            mt_diags_add(d, &p->key_pos, "tag keys are letters, digits, _ and -; values short text",
                         "bad tag '%s' of %s", p->key, what);
            return NULL;
        }
        size_t j = k++;
        while (j > 0 && strcmp(sorted[j - 1]->key, p->key) > 0) {
            sorted[j] = sorted[j - 1];
            j--;
        }
        sorted[j] = p;
    }
    mt_buf_addc(&b, '{');
    for (size_t i = 0; i < k; i++) {
        ic->tags[i].key = mt_arena_strdup(a, sorted[i]->key);
        ic->tags[i].value = mt_arena_strdup(a, sorted[i]->value->str);
        ic->ntags = i + 1;
        if (i)
            mt_buf_addc(&b, ',');
        mt_buf_json_str(&b, sorted[i]->key);
        mt_buf_addc(&b, ':');
        mt_buf_json_str(&b, sorted[i]->value->str);
    }
    mt_buf_addc(&b, '}');
    out = mt_arena_strdup(a, mt_buf_cstr(&b));
    mt_buf_free(&b);
    return out;
}

/* A boolean key the agent handles for every instance ('enabled',
 * 'isolate'): def when absent. */
static int parse_flag(const struct mt_node *map, const char *key, bool def, bool *v,
                      const char *what, struct mt_diags *d)
{
    const struct mt_node *n = mt_node_get(map, key);
    *v = def;
    if (!n)
        return 0;
    const char *s = scalar(n, key, d);
    if (!s)
        return 1;
    if (mt_parse_bool(s, v)) {
        mt_diags_add(d, &n->pos, "true or false", "'%s' of %s: '%s' is not a boolean", key, what,
                     s);
        return 1;
    }
    return 0;
}

static int parse_enabled(const struct mt_node *map, bool *enabled, const char *what,
                         struct mt_diags *d)
{
    return parse_flag(map, "enabled", true, enabled, what, d);
}

static struct mt_inst_conf *new_inst(const struct mt_pair *p)
{
    struct mt_inst_conf *ic = calloc(1, sizeof(*ic));
    if (!ic)
        return NULL;
    ic->name = mt_arena_strdup(&ic->arena, p->key);
    ic->pos = p->key_pos;
    ic->pos.file = mt_arena_strdup(&ic->arena, p->key_pos.file);
    return ic;
}

static void finish_canonical(struct mt_inst_conf *ic, const struct mittari_option *table,
                             const char *prefix)
{
    struct mt_buf b = {0};
    mt_buf_adds(&b, prefix);
    mt_options_canonical(table, ic->conf, &b);
    ic->canonical = mt_arena_strdup(&ic->arena, mt_buf_cstr(&b));
    mt_buf_free(&b);
}

/* ---- profiles: conf.d/profiles/NAME.yaml, merged under `profile: NAME` ---- */

struct profiles {
    size_t n;
    char *names[256];
    struct mt_cfgdoc docs[256];
    struct mt_arena *arena; /* where merged nodes are made */
};

static void profiles_free(struct profiles *pr)
{
    for (size_t i = 0; i < pr->n; i++) {
        free(pr->names[i]);
        mt_cfgdoc_free(&pr->docs[i]);
    }
    pr->n = 0;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void profiles_load(struct profiles *pr, const char *confdir, struct mt_diags *d)
{
    char dir[4096], path[4200];
    struct stat st;
    DIR *dh;
    struct dirent *de;

    snprintf(dir, sizeof(dir), "%s/profiles", confdir);
    if (stat(dir, &st) || !S_ISDIR(st.st_mode) || !(dh = opendir(dir)))
        return;
    while ((de = readdir(dh)) && pr->n < MT_ARRAY_SIZE(pr->names)) {
        size_t l = strlen(de->d_name);
        if (de->d_name[0] == '.' || l <= 5 || strcmp(de->d_name + l - 5, ".yaml") != 0)
            continue;
        pr->names[pr->n++] = strndup(de->d_name, l - 5);
    }
    closedir(dh);
    qsort(pr->names, pr->n, sizeof(pr->names[0]), name_cmp);
    for (size_t i = 0; i < pr->n; i++) {
        snprintf(path, sizeof(path), "%s/%s.yaml", dir, pr->names[i]);
        mt_cfgdoc_init(&pr->docs[i]);
        if (!valid_ident(pr->names[i], true)) {
            struct mt_pos pos = {path, 1, 1};
            mt_diags_add(d, &pos, "letters, digits, _, - and .", "bad profile name '%s'",
                         pr->names[i]);
            continue;
        }
        mt_cfg_load_file(&pr->docs[i], path, NULL, d);
    }
}

static const struct mt_node *profile_find(const struct profiles *pr, const char *name)
{
    for (size_t i = 0; i < pr->n; i++)
        if (strcmp(pr->names[i], name) == 0)
            return pr->docs[i].root;
    return NULL;
}

/* A new mapping: base's keys, overridden by over's (mappings merged
 * recursively). Neither input is changed: a profile serves many devices. */
static struct mt_node *merge_copy(struct mt_arena *a, const struct mt_node *base,
                                  const struct mt_node *over)
{
    struct mt_node *m = mt_arena_alloc(a, sizeof(*m));
    size_t cap = base->npairs + over->npairs;
    if (!m)
        return NULL;
    *m = *over;
    m->pairs = cap ? mt_arena_alloc(a, cap * sizeof(*m->pairs)) : NULL;
    m->npairs = 0;
    if (cap && !m->pairs)
        return NULL;
    for (size_t i = 0; i < base->npairs; i++)
        if (!mt_node_pair(over, base->pairs[i].key))
            m->pairs[m->npairs++] = base->pairs[i];
    for (size_t i = 0; i < over->npairs; i++) {
        struct mt_pair p = over->pairs[i];
        const struct mt_node *b = mt_node_get(base, p.key);
        if (b && b->type == MT_NODE_MAP && p.value->type == MT_NODE_MAP)
            p.value = merge_copy(a, b, p.value);
        if (!p.value)
            return NULL;
        m->pairs[m->npairs++] = p;
    }
    return m;
}

/* Replaces every mapping holding `profile: NAME` (the instance itself and
 * list items, at any depth) by the profile merged under it. */
static const struct mt_node *expand(const struct profiles *pr, const struct mt_node *n,
                                    struct mt_diags *d, int depth)
{
    if (!n || depth > 8)
        return n;
    if (n->type == MT_NODE_SEQ) {
        struct mt_node *seq = NULL;
        for (size_t i = 0; i < n->nitems; i++) {
            const struct mt_node *e = expand(pr, n->items[i], d, depth + 1);
            if (e == n->items[i])
                continue;
            if (!seq) {
                seq = mt_arena_alloc(pr->arena, sizeof(*seq));
                if (!seq)
                    return n;
                *seq = *n;
                seq->items = mt_arena_alloc(pr->arena, n->nitems * sizeof(*seq->items));
                if (!seq->items)
                    return n;
                memcpy(seq->items, n->items, n->nitems * sizeof(*seq->items));
            }
            seq->items[i] = (struct mt_node *)e;
        }
        return seq ? seq : n;
    }
    if (n->type != MT_NODE_MAP)
        return n;
    const struct mt_pair *pp = mt_node_pair(n, "profile");
    const struct mt_node *cur = n;
    if (pp) {
        const struct mt_node *v = pp->value;
        const struct mt_node *prof = v->type == MT_NODE_SCALAR ? profile_find(pr, v->str) : NULL;
        if (!prof || prof->type != MT_NODE_MAP) {
            const char *best = v->type == MT_NODE_SCALAR
                                   ? mt_did_you_mean(v->str, (const char *const *)pr->names, pr->n)
                                   : NULL;
            char hint[200];
            snprintf(hint, sizeof(hint), best ? "did you mean '%s'?" : "profiles are the files of "
                                                                       "conf.d/profiles/ (NAME.yaml)%s",
                     best ? best : "");
            mt_diags_add(d, &v->pos, hint, "unknown profile '%s'",
                         v->type == MT_NODE_SCALAR ? v->str : "?");
            return n;
        }
        /* the mapping without its profile key, over the (expanded) profile */
        struct mt_node *own = mt_arena_alloc(pr->arena, sizeof(*own));
        if (!own)
            return n;
        *own = *n;
        own->pairs = mt_arena_alloc(pr->arena, n->npairs * sizeof(*own->pairs));
        if (!own->pairs)
            return n;
        own->npairs = 0;
        for (size_t i = 0; i < n->npairs; i++)
            if (&n->pairs[i] != pp)
                own->pairs[own->npairs++] = n->pairs[i];
        const struct mt_node *base = expand(pr, prof, d, depth + 1);
        cur = merge_copy(pr->arena, base, own);
        if (!cur)
            return n;
    }
    struct mt_node *copy = NULL;
    for (size_t i = 0; i < cur->npairs; i++) {
        const struct mt_node *e = expand(pr, cur->pairs[i].value, d, depth + 1);
        if (e == cur->pairs[i].value)
            continue;
        if (!copy) {
            copy = mt_arena_alloc(pr->arena, sizeof(*copy));
            if (!copy)
                return cur;
            *copy = *cur;
            copy->pairs = mt_arena_alloc(pr->arena, cur->npairs * sizeof(*copy->pairs));
            if (!copy->pairs)
                return cur;
            memcpy(copy->pairs, cur->pairs, cur->npairs * sizeof(*copy->pairs));
        }
        copy->pairs[i].value = (struct mt_node *)e;
    }
    return copy ? copy : cur;
}

/* ---- the plugin's own check ---- */

struct check_ctx {
    const struct mt_node *root; /* the instance's mapping, profiles merged */
    const char *what;
    struct mt_pos owner;
    struct mt_diags *d;
    int n;
};

/* The node a check path names ("devices[3].registers[0].order"), or the
 * deepest mapping or list on the way when the rest is missing (defaults). */
static const struct mt_node *node_at(const struct mt_node *n, const char *path)
{
    char key[64];

    while (path && *path && n) {
        size_t k = strcspn(path, ".[");
        if (k >= sizeof(key))
            return n;
        memcpy(key, path, k);
        key[k] = 0;
        path += k;
        if (k) {
            const struct mt_node *next = mt_node_get(n, key);
            if (!next)
                return n;
            n = next;
        }
        if (*path == '[') {
            char *end;
            unsigned long i = strtoul(path + 1, &end, 10);
            if (*end != ']' || n->type != MT_NODE_SEQ || i >= n->nitems)
                return n;
            n = n->items[i];
            path = end + 1;
        }
        if (*path == '.')
            path++;
    }
    return n;
}

static void check_error(const struct mittari_checker *chk, const char *path, const char *fmt, ...)
{
    struct check_ctx *cc = chk->ctx;
    char msg[600];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    const struct mt_node *n = node_at(cc->root, path);
    mt_diags_add(cc->d, n ? &n->pos : &cc->owner, NULL, "%s: %s", cc->what, msg);
    cc->n++;
}

static void plugin_check(const struct mt_plugin *pl, const char *name, const void *conf,
                         const struct mt_node *map, const char *what, const struct mt_pos *owner,
                         struct mt_diags *d)
{
    const struct mittari_plugin *desc = pl->desc;
    if (desc->size < offsetof(struct mittari_plugin, check) + sizeof(desc->check) || !desc->check)
        return;
    struct check_ctx cc = {map, what, *owner, d, 0};
    struct mittari_checker chk = {&cc, check_error};
    /* plugin code, also of an isolated input: a crash in it is named */
    struct mt_crash_who who;
    char module[128];
    snprintf(module, sizeof(module), "input %s[%s]", pl->name, name);
    mt_crash_who_init(&who, module, name, pl->name, pl->path);
    struct mt_crash_mark m = mt_crash_enter(&who, "check");
    int r = desc->check(conf, &chk);
    mt_crash_leave(m);
    if (r > 0 && cc.n == 0)
        mt_diags_add(d, owner, NULL, "%s: refused by the plugin's check", what);
}

/* What an isolated input's process is given must fit in one message
 * (isowire.h): said here, not when its process cannot be started. */
static void isolate_check(const struct mt_plugin *pl, const struct mt_inst_conf *ic,
                          const struct mt_node *map, const char *what, struct mt_diags *d)
{
    struct mt_buf b = {0};
    int rc = mt_isowire_put_init(&b, pl->path, &pl->st, pl->name, ic->name, "", 0,
                                 pl->desc->options, ic->conf);
    const struct mt_node *n = mt_node_get(map, "isolate");
    if (!rc && b.len > MT_ISOWIRE_INIT_MAX)
        mt_diags_add(d, n ? &n->pos : &ic->pos, "run it in the agent (isolate: false)",
                     "%s: its options take %zu bytes, more than an isolated process is given "
                     "(%d)",
                     what, b.len, MT_ISOWIRE_INIT_MAX);
    if (b.p)
        explicit_bzero(b.p, b.len); /* secrets */
    mt_buf_free(&b);
}

/* "did you mean 'sim'?" for a plugin name that has no file: among the
 * plugin files of the dir, and the output types (an output put under
 * inputs). */
static void plugin_hint(const struct mt_registry *reg, const char *name, char *hint, size_t len)
{
    char *names[256];
    size_t n = mt_registry_names(reg, names, MT_ARRAY_SIZE(names));
    const char *best = mt_did_you_mean(name, (const char *const *)names, n);

    if (best)
        snprintf(hint, len, "did you mean '%s'? ('mittari plugins' lists them)", best);
    else if (mt_outmod_is_type(name))
        snprintf(hint, len, "'%s' is an output type: put it under 'outputs:' as 'type: %s'", name,
                 name);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
}

static struct mt_inst_conf *load_input(const struct mt_config *c, const struct mt_pair *p,
                                       struct mt_registry *reg, struct mt_diags *d)
{
    char what[160], err[700];
    const struct mt_node *map = p->value;
    size_t before = d->n;
    struct mt_inst_conf *ic;

    snprintf(what, sizeof(what), "input '%s'", p->key);
    if (!valid_ident(p->key, true)) {
        mt_diags_add(d, &p->key_pos, "names are letters, digits, _, - and ., at most 63",
                     "bad input name '%s'", p->key);
        return NULL;
    }
    if (map->type != MT_NODE_MAP) {
        mt_diags_add(d, &map->pos, "give at least 'plugin: NAME' under the input name",
                     "%s must be a mapping of options, found %s", what,
                     mt_node_type_name(map->type));
        return NULL;
    }
    const struct mt_node *pn = mt_node_get(map, "plugin");
    if (!pn) {
        mt_diags_add(d, &p->key_pos, "add 'plugin: NAME'; 'mittari plugins' lists them",
                     "%s has no 'plugin'", what);
        return NULL;
    }
    const char *pname = scalar(pn, "plugin", d);
    if (!pname)
        return NULL;
    const struct mt_plugin *pl;
    int r = mt_registry_get(reg, pname, &pl, err, sizeof(err));
    if (r) {
        char hint[200] = "'mittari plugins' lists the installed plugins";
        if (r == -ENOENT || r == -EINVAL)
            plugin_hint(reg, pname, hint, sizeof(hint));
        mt_diags_add(d, &pn->pos, hint, "%s: %s", what, err);
        return NULL;
    }
    ic = new_inst(p);
    if (!ic)
        return NULL;
    ic->plugin = mt_arena_strdup(&ic->arena, pname);
    ic->plugin_ref = pl;
    snprintf(what, sizeof(what), "input '%s' (plugin %s)", p->key, pname);
    const struct mt_node *sn = mt_node_get(map, "site");
    ic->site = c->agent.site;
    if (sn) {
        const char *s = scalar(sn, "site", d);
        if (s && !valid_ident(s, true))
            mt_diags_add(d, &sn->pos, "letters, digits, _, - and .", "bad site name '%s'", s);
        else if (s)
            ic->site = s;
    }
    ic->site = mt_arena_strdup(&ic->arena, ic->site ? ic->site : "");
    ic->tags_json = tags_json(ic, mt_node_get(map, "tags"), what, d);
    parse_enabled(map, &ic->enabled, what, d);
    parse_flag(map, "isolate", false, &ic->isolate, what, d);
    ic->conf = mt_arena_alloc(&ic->arena, pl->desc->config_size ? pl->desc->config_size : 1);
    struct mt_optset os = {
        pl->desc->options, pl->desc->config_size, what, input_reserved, false, pname};
    mt_options_apply(&os, ic->conf, map, &ic->pos, &ic->arena, d);
    if (d->n == before && ic->conf)
        plugin_check(pl, ic->name, ic->conf, map, what, &ic->pos, d);
    if (d->n == before && ic->conf && ic->isolate)
        isolate_check(pl, ic, map, what, d);
    if (d->n != before || !ic->conf || !ic->tags_json) {
        mt_inst_conf_free(ic);
        return NULL;
    }
    /* a buffer, not a fixed array: 16 long tags must not be cut off, or a
     * reload would miss a change in the last of them */
    struct mt_buf b = {0};
    mt_buf_printf(&b, "plugin=%s\nsite=%s\ntags=%s\nenabled=%d\nisolate=%d\n", pname, ic->site,
                  ic->tags_json, ic->enabled, ic->isolate);
    finish_canonical(ic, pl->desc->options, mt_buf_cstr(&b));
    mt_buf_free(&b);
    return ic;
}

static struct mt_inst_conf *load_output(const struct mt_pair *p, struct mt_registry *reg,
                                        struct mt_diags *d)
{
    char what[160];
    const struct mt_node *map = p->value;
    size_t before = d->n;
    struct mt_inst_conf *ic;
    const char *reserved[64];
    size_t nr = 0;

    snprintf(what, sizeof(what), "output '%s'", p->key);
    if (!valid_ident(p->key, true)) {
        mt_diags_add(d, &p->key_pos, "names are letters, digits, _, - and ., at most 63",
                     "bad output name '%s'", p->key);
        return NULL;
    }
    if (map->type != MT_NODE_MAP) {
        mt_diags_add(d, &map->pos, "give at least 'type: file' under the output name",
                     "%s must be a mapping of options, found %s", what,
                     mt_node_type_name(map->type));
        return NULL;
    }
    const struct mt_node *tn = mt_node_get(map, "type");
    if (!tn) {
        mt_diags_add(d, &p->key_pos, "add 'type: file'", "%s has no 'type'", what);
        return NULL;
    }
    const char *tname = scalar(tn, "type", d);
    if (!tname)
        return NULL;
    const struct mt_output_type *t;
    char err[800], hint[300];
    if (mt_outmod_find(reg, tname, &t, err, sizeof(err), hint, sizeof(hint))) {
        mt_diags_add(d, &tn->pos, hint, "%s: %s", what, err);
        return NULL;
    }
    ic = new_inst(p);
    if (!ic)
        return NULL;
    ic->plugin = mt_arena_strdup(&ic->arena, tname);
    ic->otype = t;
    snprintf(what, sizeof(what), "output '%s' (type %s)", p->key, tname);
    parse_enabled(map, &ic->enabled, what, d);
    reserved[nr++] = "type";
    reserved[nr++] = "enabled";
    for (const struct mittari_option *o = mt_output_common_options; o->name && nr < 62; o++)
        reserved[nr++] = o->name;
    reserved[nr] = NULL;
    ic->conf = mt_arena_alloc(&ic->arena, t->config_size ? t->config_size : 1);
    struct mt_optset os = {t->options, t->config_size, what, reserved, false, tname};
    mt_options_apply(&os, ic->conf, map, &ic->pos, &ic->arena, d);
    /* the common options: unknown keys were reported above */
    struct mt_optset cs = {
        mt_output_common_options, sizeof(ic->common), what, NULL, true, "output"};
    mt_options_apply(&cs, &ic->common, map, &ic->pos, &ic->arena, d);
    if (d->n == before && ic->common.retry_min_ms > ic->common.retry_max_ms)
        mt_diags_add(d, &ic->pos, NULL, "%s: retry_min is longer than retry_max", what);
    char cerr[300];
    if (d->n == before && (mt_output_common_check(&ic->common, cerr, sizeof(cerr)) ||
                           (t->check && t->check(ic->conf, cerr, sizeof(cerr)))))
        mt_diags_add(d, &ic->pos, NULL, "%s: %s", what, cerr);
    if (d->n != before || !ic->conf) {
        mt_inst_conf_free(ic);
        return NULL;
    }
    struct mt_buf b = {0};
    mt_buf_printf(&b, "type=%s\nenabled=%d\n", tname, ic->enabled);
    mt_options_canonical(mt_output_common_options, &ic->common, &b);
    finish_canonical(ic, t->options, mt_buf_cstr(&b));
    mt_buf_free(&b);
    return ic;
}

static void load_instances(struct mt_config *c, const struct mt_pair *sec, bool inputs,
                           struct mt_registry *reg, const struct profiles *pr,
                           struct mt_diags *d)
{
    const struct mt_node *n = sec->value;

    if (n->type == MT_NODE_NULL)
        return;
    if (n->type != MT_NODE_MAP) {
        mt_diags_add(d, &n->pos, "name each instance: 'lobby: {plugin: sim}'",
                     "'%s' must be a mapping of named instances, found %s", sec->key,
                     mt_node_type_name(n->type));
        return;
    }
    struct mt_inst_conf ***v = inputs ? &c->inputs : &c->outputs;
    size_t *nv = inputs ? &c->ninputs : &c->noutputs;
    *v = calloc(n->npairs ? n->npairs : 1, sizeof(**v));
    if (!*v)
        return;
    for (size_t i = 0; i < n->npairs; i++) {
        struct mt_pair p = n->pairs[i];
        size_t before = d->n;
        p.value = (struct mt_node *)expand(pr, p.value, d, 0);
        if (d->n != before)
            continue;
        struct mt_inst_conf *ic = inputs ? load_input(c, &p, reg, d) : load_output(&p, reg, d);
        if (ic)
            (*v)[(*nv)++] = ic;
    }
}

static void check_agent(struct mt_config *c, const struct mt_node *an, struct mt_diags *d)
{
    struct mt_agent_conf *a = &c->agent;
    char path[512];

    if (a->site && !valid_ident(a->site, true)) {
        const struct mt_node *sn = mt_node_get(an, "site");
        mt_diags_add(d, sn ? &sn->pos : NULL, "letters, digits, _, - and ., at most 63",
                     "bad site name '%s'", a->site);
    }
    if (!a->id) {
        char id[64];
        mt_agent_default_id(id, sizeof(id));
        a->id = mt_arena_strdup(&c->arena, id);
    } else if (!valid_ident(a->id, true)) {
        const struct mt_node *n = mt_node_get(an, "id");
        mt_diags_add(d, n ? &n->pos : NULL, "letters, digits, _, - and ., at most 63",
                     "bad agent id '%s'", a->id);
    }
    /* a zone is a file: "" and "Europe" name directories of the database */
    struct stat st;
    snprintf(path, sizeof(path), "/usr/share/zoneinfo/%s", a->timezone);
    if (strstr(a->timezone, "..") || stat(path, &st) != 0 || !S_ISREG(st.st_mode) ||
        access(path, R_OK) != 0) {
        const struct mt_node *n = mt_node_get(an, "timezone");
        mt_diags_add(d, n ? &n->pos : NULL, "an IANA name such as Europe/Helsinki (package tzdata)",
                     "unknown time zone '%s'", a->timezone);
    }
    if (a->secret && strlen(a->secret) < 16) {
        const struct mt_node *n = mt_node_get(an, "secret");
        if (!n)
            n = mt_node_get(an, "secret_file");
        mt_diags_add(d, n ? &n->pos : NULL, "use 32 random bytes, e.g. openssl rand -hex 32",
                     "the pseudonymisation secret is shorter than 16 bytes");
    }
}

static void load_status(struct mt_config *c, const struct mt_node *root, struct mt_diags *d)
{
    const struct mt_pair *sp = mt_node_pair(root, "status");
    const struct mt_node *sn = sp ? sp->value : NULL;
    struct mt_status_conf *s = &c->status;
    struct mt_listen l;
    char err[200];

    if (sn && sn->type != MT_NODE_MAP && sn->type != MT_NODE_NULL) {
        mt_diags_add(d, &sn->pos, NULL, "'status' must be a mapping, found %s",
                     mt_node_type_name(sn->type));
        sn = NULL;
    }
    struct mt_optset os = {mt_status_options, sizeof(*s), "the status section", NULL, false,
                           "status"};
    struct mt_pos where = sp ? sp->key_pos : root ? root->pos : (struct mt_pos){NULL, 0, 0};
    mt_options_apply(&os, s, sn, &where, &c->arena, d);
    if (!s->listen)
        return; /* reported */
    const struct mt_node *ln = mt_node_get(sn, "listen");
    if (mt_listen_parse(s->listen, &l, err, sizeof(err))) {
        mt_diags_add(d, ln ? &ln->pos : &where, NULL, "status.listen: %s", err);
        return;
    }
    const struct mt_node *tn = mt_node_get(sn, "token");
    if (!tn)
        tn = mt_node_get(sn, "token_file");
    if (s->token && strlen(s->token) < 16)
        mt_diags_add(d, tn ? &tn->pos : &where, "e.g. openssl rand -hex 32 > FILE; chmod 600 FILE",
                     "the status token is shorter than 16 bytes");
    if (!l.off && !l.loopback && !s->token)
        mt_diags_add(d, ln ? &ln->pos : &where,
                     "set status.token_file, or listen on 127.0.0.1 and let a proxy add "
                     "authentication",
                     "status.listen %s is reachable from other machines: a token is required",
                     l.text);
}

/* plugin_path: absolute directories that exist (a typo would otherwise
 * only show as "no plugin" of some input) */
static void check_plugin_path(const char *path, const struct mt_node *an,
                              const struct mt_pos *where, struct mt_diags *d)
{
    const struct mt_node *n = an ? mt_node_get(an, "plugin_path") : NULL;
    const struct mt_pos *pos = n ? &n->pos : where;
    char dir[512];
    struct stat st;

    for (const char *p = path; p && *p;) {
        size_t l = strcspn(p, ":");
        snprintf(dir, sizeof(dir), "%.*s", (int)l, p);
        if (l > 0 && dir[0] != '/')
            mt_diags_add(d, pos, "give absolute directories separated by ':'",
                         "plugin_path: '%s' is not an absolute path", dir);
        else if (l > 0 && (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)))
            mt_diags_add(d, pos, "create it, or remove it from plugin_path",
                         "plugin_path: no directory %s", dir);
        p += l + (p[l] == ':');
    }
}

static void check_path_unchanged(const struct mt_registry *reg, const char *path,
                                 const struct mt_node *an, const struct mt_pos *where,
                                 struct mt_diags *d)
{
    struct mt_registry now = {0};
    char *was = mt_registry_path_text(reg), *will = NULL;

    now.dir = reg->dir;
    if (mt_registry_set_path(&now, path) == 0)
        will = mt_registry_path_text(&now);
    if (was && will && strcmp(was, will) != 0) {
        const struct mt_node *n = an ? mt_node_get(an, "plugin_path") : NULL;
        mt_diags_add(d, n ? &n->pos : where, "restart the agent to search other directories",
                     "plugin_path changed: plugins are searched in %s until a restart", was);
    }
    now.dir = NULL;
    mt_registry_free(&now);
    free(was);
    free(will);
}

int mt_config_load(struct mt_config **out, const char *path, const char *plugin_dir_override,
                   struct mt_registry *reg, struct mt_diags *d)
{
    struct mt_cfgdoc doc;
    struct mt_config *c = calloc(1, sizeof(*c));
    size_t before = d->n;

    *out = c;
    if (!c)
        return -ENOMEM;
    mt_cfgdoc_init(&doc);
    if (mt_cfg_load(&doc, path, d)) {
        /* a file that could not be read is missing from the tree: checking
         * the rest would only add follow-on errors ("missing site") */
        mt_cfgdoc_free(&doc);
        return MITTARI_ECONFIG;
    }
    const struct mt_node *root = doc.root;

    for (size_t i = 0; root && i < root->npairs; i++) {
        const struct mt_pair *p = &root->pairs[i];
        bool known = false;
        for (size_t j = 0; j < MT_ARRAY_SIZE(sections); j++)
            known |= strcmp(p->key, sections[j]) == 0;
        if (!known) {
            const char *best = mt_did_you_mean(p->key, sections, MT_ARRAY_SIZE(sections));
            char hint[120];
            snprintf(hint, sizeof(hint), best ? "did you mean '%s'?" : "sections are: %s",
                     best ? best : "agent, inputs, outputs, rules, status");
            mt_diags_add(d, &p->key_pos, hint, "unknown section '%s'", p->key);
        }
    }
    const struct mt_pair *ap = mt_node_pair(root, "agent");
    /* where "missing option" problems of a missing agent section point */
    struct mt_pos where = root && root->pos.file ? root->pos : (struct mt_pos){path, 1, 1};
    if (ap && ap->value->type != MT_NODE_MAP && ap->value->type != MT_NODE_NULL) {
        mt_diags_add(d, &ap->value->pos, NULL, "'agent' must be a mapping, found %s",
                     mt_node_type_name(ap->value->type));
    } else {
        struct mt_optset os = {mt_agent_options, sizeof(c->agent), "the agent section", NULL, false,
                               "agent"};
        if (ap)
            where = ap->key_pos;
        mt_options_apply(&os, &c->agent, ap ? ap->value : NULL, &where, &c->arena, d);
    }
    c->agent.log_level += MT_ERR; /* enum index -> syslog priority */
    if (c->agent.site)
        check_agent(c, ap ? ap->value : NULL, d);

    load_status(c, root, d);

    const char *pdir = plugin_dir_override   ? plugin_dir_override
                       : c->agent.plugin_dir ? c->agent.plugin_dir
                                             : mt_default_plugin_dir();
    c->agent.plugin_dir = mt_arena_strdup(&c->arena, pdir);
    check_plugin_path(c->agent.plugin_path, ap ? ap->value : NULL, &where, d);
    if (!reg->dir) {
        mt_registry_init(reg, pdir);
        mt_registry_set_path(reg, c->agent.plugin_path);
    } else if (strcmp(reg->dir, pdir) != 0) {
        mt_diags_add(d, &where, "restart the agent to load plugins from another directory",
                     "plugin_dir changed from %s to %s", reg->dir, pdir);
    } else {
        check_path_unchanged(reg, c->agent.plugin_path, ap ? ap->value : NULL, &where, d);
    }

    struct profiles *pr = calloc(1, sizeof(*pr));
    if (!pr) {
        mt_cfgdoc_free(&doc);
        return -ENOMEM;
    }
    pr->arena = &doc.arena;
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        profiles_load(pr, path, d);
    const struct mt_pair *ip = mt_node_pair(root, "inputs");
    if (ip)
        load_instances(c, ip, true, reg, pr, d);
    const struct mt_pair *op = mt_node_pair(root, "outputs");
    if (op)
        load_instances(c, op, false, reg, pr, d);
    profiles_free(pr);
    free(pr);
    const struct mt_pair *rp = mt_node_pair(root, "rules");
    if (rp)
        mt_ruleconf_load(rp->value, c->agent.timezone ? c->agent.timezone : "UTC", &c->rules,
                         &c->nrules, d);
    /* a rule and an output keep their cursors (and states) in the log under
     * their names: one name for both would mix them up */
    for (size_t i = 0; rp && i < c->nrules; i++) {
        const struct mt_pair *kp = c->rules[i] ? mt_node_pair(rp->value, c->rules[i]->name) : NULL;
        for (size_t k = 0; kp && k < c->noutputs; k++)
            if (c->outputs[k] && strcmp(c->outputs[k]->name, c->rules[i]->name) == 0)
                mt_diags_add(d, &kp->key_pos, "rename the rule or the output",
                             "rule '%s' has the name of an output: each keeps its cursor in the "
                             "log under its name", c->rules[i]->name);
    }
    mt_cfgdoc_free(&doc);
    return d->n == before ? 0 : MITTARI_ECONFIG;
}
