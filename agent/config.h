/*
 * config: the meaning of a configuration: the agent section, input and
 * output instances, each validated against its option table (plugins are
 * loaded through the registry to get theirs; no plugin code beyond the
 * entry point runs). Every problem is collected with file:line:column.
 *
 * Loop thread or CLI. Instance configs are allocated one by one so that a
 * reload can hand an unchanged, running instance's config to the new
 * configuration.
 */
#ifndef MT_CONFIG_H
#define MT_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "cfgtree.h"
#include "output.h"
#include "plugin.h"

struct mt_agent_conf {
    const char *id;
    const char *site;
    const char *data_dir;
    const char *plugin_dir;
    const char *plugin_path; /* more plugin dirs, ':'-separated, searched first; NULL = none */
    const char *timezone;
    const char *secret;
    int log_level;
    int64_t batch_size;
    int64_t batch_interval_ms;
    int64_t queue_max;
    int64_t retention_ms;
    uint64_t max_size;
    int full_policy;
    int sync;
    int64_t housekeeping_ms;
    int64_t shutdown_timeout_ms;
    int64_t stats_interval_ms;
    int64_t workers;
    int pseudonym_rotation;
};

/* The status section: the local HTTP endpoint (status.h). */
struct mt_status_conf {
    const char *listen; /* listen.h syntax; "off" */
    const char *token;  /* bearer token (token_file); NULL = none */
    int64_t connections;
    int64_t timeout_ms;
    int64_t refresh_ms;
    int64_t backlog_warn_ms;
    const char *visitors; /* metric names or globs, separated by spaces or commas */
};

struct mt_inst_conf {
    const char *name;
    const char *plugin;    /* input: plugin name; output: type name */
    const char *site;      /* input: effective site */
    const char *tags_json; /* input: canonical JSON object of static tags, "" = none */
    struct mittari_tag tags[16]; /* input: the same tags, sorted by key */
    size_t ntags;
    bool enabled;
    bool isolate;          /* input: its plugin runs in a child process (isolate.h) */
    struct mt_pos pos;
    const struct mt_plugin *plugin_ref;  /* input */
    const struct mt_output_type *otype;  /* output */
    void *conf;                          /* the filled option struct */
    struct mt_output_common common;      /* output */
    char *canonical;                     /* equal text = equal settings */
    struct mt_arena arena;               /* owns conf's strings */
};

struct mt_rule_spec;

struct mt_config {
    struct mt_arena arena;
    struct mt_agent_conf agent;
    struct mt_status_conf status;
    struct mt_inst_conf **inputs;
    size_t ninputs;
    struct mt_inst_conf **outputs;
    size_t noutputs;
    struct mt_rule_spec **rules; /* ruleconf.c; an entry taken by the agent is NULL */
    size_t nrules;
};

extern const struct mittari_option mt_agent_options[];
extern const struct mittari_option mt_status_options[];

/* reg: if reg->dir is NULL it is initialised with the effective plugin
 * dir (plugin_dir_override, else agent.plugin_dir, else the default) and
 * agent.plugin_path; either differing from reg's is a problem (a restart
 * changes them).
 * Returns 0 when there was no problem; *out is set either way (NULL only on
 * allocation failure) and must be freed. */
int mt_config_load(struct mt_config **out, const char *path, const char *plugin_dir_override,
                   struct mt_registry *reg, struct mt_diags *d);
void mt_config_free(struct mt_config *c);
void mt_inst_conf_free(struct mt_inst_conf *ic);

#endif
