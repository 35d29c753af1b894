/*
 * main: the mittari command line: run, check, plugins, query, rule test, ports,
 * salvage, outputs, replay. Exit codes:
 * docs/cli.md and enum in agent.h.
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <mittari/mittari.h>

#include "agent.h"
#include "aggquery.h"
#include "config.h"
#include "crash.h"
#include "diag.h"
#include "encode.h"
#include "isolate_child.h"
#include "options.h"
#include "outmod.h"
#include "output.h"
#include "outputs_cli.h"
#include "plugin.h"
#include "ports.h"
#include "query.h"
#include "ruleagg.h"
#include "ruleconf.h"
#include "ruletest.h"
#include "rulewin.h"
#include "salvage.h"
#include "statuscli.h"
#include "util.h"

#ifndef MITTARI_VERSION
#define MITTARI_VERSION "0.0.0"
#endif
#define DEFAULT_CONF "/etc/mittari/conf.d"

static const char usage_text[] =
    "usage: mittari COMMAND [OPTIONS]\n"
    "\n"
    "commands:\n"
    "  run -c DIR                 run the agent on the configuration in DIR\n"
    "  check -c DIR               check the configuration, report its problems\n"
    "  plugins [NAME]             list input plugins and output types, or one's options\n"
    "                             (NAME agent, status: those sections; output: every output;\n"
    "                             rules: every rule)\n"
    "  query -c DIR [--since T] [--until T] [--series GLOB] [--tag KEY=VALUE]...\n"
    "        [--every 1h|1d|1w|1mo --agg sum|count|mean|max|distinct] [--format csv|jsonl]\n"
    "        [--limit N]          print readings from the log, or their sums (counts, ...)\n"
    "                             per series and local hour, day, ISO week or month\n"
    "  query --data-dir DIR [...] the same from DIR/mittari.db, without a configuration\n"
    "                             (a copied log; local times in Europe/Helsinki)\n"
    "  rule test SCRIPT --input FILE [--tz ZONE] [--format table|csv|jsonl] [--until T]\n"
    "            [--site NAME] [--series GLOB]\n"
    "                             replay readings (CSV or JSON Lines, as query writes them)\n"
    "                             through a rule and print what it derives (docs/rules.md)\n"
    "  ports                      list serial ports: USB ids, serial numbers, stable by-id paths\n"
    "  salvage -c DIR             the agent stopped: copy what can be read of a damaged log\n"
    "                             into a new one (same numbering), move the damaged files aside\n"
    "  outputs -c DIR             each output's cursor, backlog, last success and error, parked\n"
    "                             batches (read from the log: works with the agent down)\n"
    "  replay -c DIR OUTPUT --since T [--until T]\n"
    "                             send OUTPUT's readings of that time range again\n"
    "  status -c DIR              the running agent's health, inputs, outputs and backlog\n"
    "                             (from the log when the agent is down)\n"
    "\n"
    "options:\n"
    "  -c, --config DIR           configuration directory or file (default " DEFAULT_CONF ")\n"
    "  -P, --plugin-dir DIR       load input plugins from DIR\n"
    "  -m, --markdown             plugins NAME: print the option table as Markdown\n"
    "  -h, --help                 this text\n"
    "  -V, --version              version and plugin ABI\n"
    "\n"
    "Times (T) are local in agent.timezone unless they end in Z or +hh:mm:\n"
    "  2026-11-25, 2026-11-25T08:00, 2026-11-25T06:00Z, now, -2h, -7d,\n"
    "  today, yesterday, this-month, last-month (the start of that local day or month)\n"
    "GLOB matches site/device/metric, e.g. 'kuusamo-*/*/visitors_in'.\n"
    "\n"
    "exit status: 0 ok, 1 runtime failure, 2 usage, 3 configuration invalid,\n"
    "             4 log database unusable or data dir in use, 5 a plugin crashed\n";

struct cli {
    const char *cmd;
    const char *conf;
    bool conf_given; /* -c on the command line, not the default */
    const char *plugin_dir;
    const char *data_dir;
    const char *since, *until, *series, *format, *limit;
    const char *input, *tz, *site;
    const char *every, *agg;
    const char *tags[MT_QUERY_MAX_TAGS];
    size_t ntags;
    const char *name, *arg;
    bool markdown;
};

static int usage_error(const char *msg)
{
    fprintf(stderr, "mittari: %s\n(see mittari --help)\n", msg);
    return MT_EXIT_USAGE;
}

/* A fatal signal in a plugin's code names it, and the status says so
 * (issue 13; docs/operations.md, "A plugin crashed"). then: what the line
 * says happens next. */
static void install_crash_report(const char *then)
{
    struct mt_crash_conf cc = {.exit_status = MT_EXIT_PLUGIN, .then = then, .packet_fd = -1};
    int rc = mt_crash_install(&cc);
    if (rc)
        mt_diag(MT_WARNING, "agent", "cannot install the crash report: %s", strerror(-rc));
}

static int cmd_check(const struct cli *c)
{
    struct mt_diags d = {0};
    struct mt_registry reg = {0};
    struct mt_config *conf = NULL;
    install_crash_report("mittari check exits with status 5");
    int rc = mt_config_load(&conf, c->conf, c->plugin_dir, &reg, &d);

    mt_diags_print(&d, stderr);
    if (rc)
        fprintf(stderr, "%s: %zu problem%s\n", c->conf, d.n, d.n == 1 ? "" : "s");
    else
        printf("%s: ok (site %s, %zu inputs, %zu outputs, %zu rules)\n", c->conf,
               conf->agent.site, conf->ninputs, conf->noutputs, conf->nrules);
    mt_diags_free(&d);
    mt_config_free(conf);
    mt_registry_free(&reg);
    return rc ? MT_EXIT_CONFIG : MT_EXIT_OK;
}

static void scan_err(const char *path, const char *msg)
{
    fprintf(stderr, "mittari: %s: %s\n", path, msg);
}

static int plugin_cmp(const void *a, const void *b)
{
    return strcmp((*(struct mt_plugin *const *)a)->name, (*(struct mt_plugin *const *)b)->name);
}

static int cmd_plugins(const struct cli *c)
{
    struct mt_registry reg = {0};
    struct mt_diags d = {0};
    struct mt_config *conf = NULL;
    int rc = MT_EXIT_OK;

    /* the configuration's plugin_path and plugin_dir, when it can be read:
     * its problems are check's to report */
    mt_config_load(&conf, c->conf, c->plugin_dir, &reg, &d);
    mt_diags_free(&d);
    mt_config_free(conf);
    if (!reg.dir)
        mt_registry_init(&reg, c->plugin_dir ? c->plugin_dir : mt_default_plugin_dir());
    if (!c->name) {
        char *where = mt_registry_path_text(&reg);
        /* a plugin dir that cannot be read, or a plugin in it that is
         * refused, is an error (exit 1) after the listing (issue 9) */
        if (mt_registry_scan(&reg, scan_err))
            rc = MT_EXIT_FAILURE;
        qsort(reg.v, reg.n, sizeof(*reg.v), plugin_cmp);
        printf("input plugins (%s):\n", where ? where : reg.dir);
        free(where);
        for (size_t i = 0; i < reg.n; i++)
            printf("  %-14s %-8s %s%s%s\n", reg.v[i]->desc->name, reg.v[i]->desc->version,
                   reg.v[i]->desc->description, reg.npath ? "  " : "",
                   reg.npath ? reg.v[i]->path : "");
        /* modules: loaded to be listed; one that cannot be is an error */
        if (mt_outmod_scan(&reg, scan_err))
            rc = MT_EXIT_FAILURE;
        printf("output types:\n");
        for (size_t i = 0; mt_output_types[i]; i++)
            printf("  %-14s %-8s %s\n", mt_output_types[i]->name, "builtin",
                   mt_output_types[i]->description);
        for (size_t i = 0; i < reg.nom; i++)
            printf("  %-14s %-8s %s%s%s\n", reg.om[i]->name, "module",
                   reg.om[i]->type->description, reg.npath ? "  " : "",
                   reg.npath ? reg.om[i]->path : "");
        printf("\n'mittari plugins NAME' prints the options of one.\n");
        goto out;
    }
    const struct mt_output_type *ot = NULL;
    const struct mt_plugin *p = NULL;
    char err[800], hint[300];
    int orc = mt_outmod_find(&reg, c->name, &ot, err, sizeof(err), hint, sizeof(hint));
    if (strcmp(c->name, "agent") == 0) {
        if (!c->markdown)
            printf("the agent section:\n\noptions:\n");
        mt_options_print(stdout, mt_agent_options, c->markdown);
    } else if (strcmp(c->name, "status") == 0) {
        if (!c->markdown)
            printf("the status section (the local HTTP endpoint):\n\noptions:\n");
        mt_options_print(stdout, mt_status_options, c->markdown);
    } else if (strcmp(c->name, "rules") == 0) {
        if (!c->markdown)
            printf("options of every rule (besides series, where, from, tags, enabled; "
                   "docs/rules.md):\n\n");
        mt_options_print(stdout, mt_rule_options, c->markdown);
    } else if (strcmp(c->name, "output") == 0) {
        if (!c->markdown)
            printf("options of every output:\n\n");
        mt_options_print(stdout, mt_output_common_options, c->markdown);
    } else if (orc == 0) {
        if (!c->markdown)
            printf("output %s: %s\n\noptions:\n", ot->name, ot->description);
        mt_options_print(stdout, ot->options, c->markdown);
        if (!c->markdown)
            printf("\noptions of every output: type, enabled, and 'mittari plugins output'\n");
    } else if (orc != -ENOENT || mt_outmod_is_type(c->name)) {
        /* an output type whose module is missing or cannot be loaded */
        fprintf(stderr, "mittari: %s\n  hint: %s\n", err, hint);
        rc = MT_EXIT_FAILURE;
    } else if (mt_registry_get(&reg, c->name, &p, err, sizeof(err)) == 0) {
        if (!c->markdown)
            printf("input plugin %s %s (ABI %u.%u): %s\n\noptions:\n", p->desc->name,
                   p->desc->version, MITTARI_ABI_MAJOR_OF(p->desc->abi_version),
                   MITTARI_ABI_MINOR_OF(p->desc->abi_version), p->desc->description);
        mt_options_print(stdout, p->desc->options, c->markdown);
        if (!c->markdown)
            printf("\noptions of every input: plugin, site, tags (key: value), enabled, "
                   "isolate\n");
    } else {
        fprintf(stderr, "mittari: %s\n", err);
        rc = MT_EXIT_FAILURE;
    }
out:
    mt_registry_free(&reg);
    return rc;
}

/* The agent section's default time zone, from its option table. */
static const char *default_timezone(void)
{
    for (const struct mittari_option *o = mt_agent_options; o->name; o++)
        if (strcmp(o->name, "timezone") == 0)
            return o->def;
    return "UTC";
}

static int cmd_query(const struct cli *c)
{
    struct mt_diags d = {0};
    struct mt_registry reg = {0};
    struct mt_config *conf = NULL;
    struct mt_query q = {.since = INT64_MIN, .until = INT64_MAX, .series_glob = c->series};
    char path[4096], err[600];
    int64_t now = mt_now_us();
    const char *tz = default_timezone(), *data_dir = c->data_dir;
    struct mt_tz *tzobj = NULL;
    int rc;

    /* --data-dir alone reads a log without a configuration (an analyst's
     * copy); with -c it only replaces agent.data_dir */
    if (!data_dir || c->conf_given) {
        if (mt_config_load(&conf, c->conf, c->plugin_dir, &reg, &d)) {
            mt_diags_print(&d, stderr);
            rc = MT_EXIT_CONFIG;
            goto out;
        }
        tz = conf->agent.timezone;
        if (!data_dir)
            data_dir = conf->agent.data_dir;
    }
    setenv("TZ", tz, 1);
    tzset();
    if (mt_tz_load(&tzobj, tz, err, sizeof(err))) {
        fprintf(stderr, "mittari: %s\n", err);
        rc = MT_EXIT_CONFIG;
        goto out;
    }
    /* today, yesterday, this-month, last-month: the site's local day or
     * month (agent.timezone), not the machine's */
    if ((c->since && mt_query_period_word(c->since, tzobj, now, &q.since) &&
         mt_parse_time(c->since, now, &q.since)) ||
        (c->until && mt_query_period_word(c->until, tzobj, now, &q.until) &&
         mt_parse_time(c->until, now, &q.until))) {
        rc = usage_error("bad time; use 2026-11-25, 2026-11-25T08:00, ...Z, now, -2h, today, "
                         "yesterday, this-month or last-month");
        goto out;
    }
    for (size_t i = 0; i < c->ntags; i++) {
        const char *eq = strchr(c->tags[i], '=');
        if (!eq || eq == c->tags[i]) {
            rc = usage_error("--tag takes KEY=VALUE, e.g. --tag service=library");
            goto out;
        }
    }
    q.tags = c->tags;
    q.ntags = c->ntags;
    if (c->format && strcmp(c->format, "csv") == 0)
        q.format = MT_FMT_CSV;
    else if (!c->format || strcmp(c->format, "jsonl") == 0)
        q.format = MT_FMT_JSONL;
    else {
        rc = usage_error("--format is csv or jsonl");
        goto out;
    }
    if (c->limit) {
        int64_t l;
        if (mt_parse_i64(c->limit, &l) || l < 0) {
            rc = usage_error("--limit takes a number");
            goto out;
        }
        q.limit = (uint64_t)l;
    }
    snprintf(path, sizeof(path), "%s/mittari.db", data_dir);
    q.db_path = path;
    if (c->every || c->agg) {
        struct mt_aggquery aq = {.db_path = path, .since = q.since, .until = q.until,
                                 .series_glob = q.series_glob, .tags = q.tags, .ntags = q.ntags,
                                 .every = c->every ? mt_unit_parse(c->every) : 0,
                                 .agg = c->agg ? mt_agg_parse(c->agg) : MT_AGG_SUM,
                                 .format = q.format, .tz = tzobj};
        if (!aq.every || strcmp(c->every, "minute") == 0 || strcmp(c->every, "1min") == 0) {
            rc = usage_error("--every is 1h, 1d, 1w, 1mo (or hour, day, week, month, year)");
            goto out;
        }
        if (aq.agg != MT_AGG_SUM && aq.agg != MT_AGG_COUNT && aq.agg != MT_AGG_MEAN &&
            aq.agg != MT_AGG_MAX && aq.agg != MT_AGG_DISTINCT) {
            rc = usage_error("--agg is sum, count, mean, max or distinct");
            goto out;
        }
        rc = mt_aggquery_run(&aq, stdout, err, sizeof(err));
    } else {
        rc = mt_query_run(&q, stdout, err, sizeof(err));
    }
    if (rc) {
        fprintf(stderr, "mittari: %s\n", err);
        rc = MT_EXIT_STORAGE;
    }
out:
    mt_tz_free(tzobj);
    mt_diags_free(&d);
    mt_config_free(conf);
    mt_registry_free(&reg);
    return rc;
}

static int cmd_status(const struct cli *c)
{
    struct mt_diags d = {0};
    struct mt_registry reg = {0};
    struct mt_config *conf = NULL;
    int rc;

    if (mt_config_load(&conf, c->conf, c->plugin_dir, &reg, &d)) {
        mt_diags_print(&d, stderr);
        rc = MT_EXIT_CONFIG;
    } else {
        rc = mt_statuscli_run(conf, stdout, stderr);
    }
    mt_diags_free(&d);
    mt_config_free(conf);
    mt_registry_free(&reg);
    return rc;
}

static int cmd_rule(const struct cli *c)
{
    if (!c->name || strcmp(c->name, "test") != 0)
        return usage_error("rule: the subcommand is 'test': mittari rule test SCRIPT --input FILE");
    if (!c->arg || !c->input)
        return usage_error("rule test SCRIPT --input FILE");
    struct mt_ruletest_opts o = {.script = c->arg, .input = c->input, .tz = c->tz,
                                 .format = c->format, .until = c->until, .site = c->site,
                                 .series = c->series};
    return mt_ruletest_run(&o, stdout, stderr);
}

static int cmd_salvage(const struct cli *c)
{
    struct mt_diags d = {0};
    struct mt_registry reg = {0};
    struct mt_config *conf = NULL;
    struct mt_salvage_report r;
    char err[1200];
    int rc;

    if (mt_config_load(&conf, c->conf, c->plugin_dir, &reg, &d)) {
        mt_diags_print(&d, stderr);
        rc = MT_EXIT_CONFIG;
        goto out;
    }
    rc = mt_salvage(conf->agent.data_dir, &r, stderr, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "mittari: salvage: %s\n", err);
        rc = rc == -EBUSY || rc == -ENOENT || rc == -EINVAL ? MT_EXIT_STORAGE : MT_EXIT_FAILURE;
        goto out;
    }
    mt_salvage_print(&r, stdout);
    printf("the new log is %s/mittari.db; start mittari again\n", conf->agent.data_dir);
out:
    mt_diags_free(&d);
    mt_config_free(conf);
    mt_registry_free(&reg);
    return rc;
}

enum { RUN_TRIM_THRESHOLD = 2 << 20 };

static int cmd_run(const struct cli *c)
{
    struct mt_diags d = {0};
    struct mt_agent *a = NULL;
    struct mt_agent_opts o = {c->conf, c->plugin_dir, NULL};
    /* Keep up to RUN_TRIM_THRESHOLD of freed memory at the top of the heap
     * instead of glibc's 128 KiB. An output draining a backlog frees and
     * allocates megabytes a second (libmosquitto copies every message it
     * publishes; they are freed at PUBACK): handing those pages back and
     * faulting them in again cost more CPU than encoding the readings
     * (docs/performance.md). The price is at most this much more resident
     * memory after a burst; an agent at a few readings a second never
     * grows its heap that far. Set before any thread starts. */
    mallopt(M_TRIM_THRESHOLD, RUN_TRIM_THRESHOLD);
    install_crash_report("mittari exits with status 5; systemd starts it again and holds this "
                         "input back for a while, the other inputs go on; `isolate: true` on this "
                         "input keeps the agent up (docs/operations.md)");
    int rc = mt_agent_init(&a, &o, &d);

    if (d.n) {
        mt_diags_print(&d, stderr);
        fprintf(stderr, "%s: %zu problem%s; not starting\n", c->conf, d.n, d.n == 1 ? "" : "s");
    }
    mt_diags_free(&d);
    if (rc == MT_EXIT_OK)
        rc = mt_agent_run(a);
    mt_agent_free(a);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"plugin-dir", required_argument, NULL, 'P'},
        {"since", required_argument, NULL, 's'},
        {"until", required_argument, NULL, 'u'},
        {"series", required_argument, NULL, 'S'},
        {"format", required_argument, NULL, 'f'},
        {"limit", required_argument, NULL, 'n'},
        {"data-dir", required_argument, NULL, 'D'},
        {"input", required_argument, NULL, 'i'},
        {"tz", required_argument, NULL, 'z'},
        {"site", required_argument, NULL, 't'},
        {"every", required_argument, NULL, 'e'},
        {"agg", required_argument, NULL, 'a'},
        {"tag", required_argument, NULL, 'g'},
        {"markdown", no_argument, NULL, 'm'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {0},
    };
    struct cli c = {.conf = DEFAULT_CONF};
    int opt;

    /* Every file the agent creates (log, -wal, -shm, lock, outputs, data
     * dir) gets at most rw-r----- (rwxr-x--- for directories), whatever
     * umask it was started with: SQLite alone would make the log 0644
     * while the lock and outputs are 0640 (issue 9). A stricter umask is
     * kept. The pseudonym key is 0600 anyway. */
    mode_t mask = umask(0);
    umask(mask | 027);
    mt_diag_init();
    /* the process of an isolated input (isolate.c starts it): not a
     * command for people, so not in the usage text */
    if (argc >= 2 && strcmp(argv[1], "__isolate") == 0)
        return mt_isolate_child_main(argc, argv);
    /* "-": words come back in order as option 1: the command, then a name */
    while ((opt = getopt_long(argc, argv, "-c:P:mhV", longopts, NULL)) != -1) {
        switch (opt) {
        case 1:
            if (!c.cmd)
                c.cmd = optarg;
            else if (!c.name)
                c.name = optarg;
            else if (!c.arg && strcmp(c.cmd, "rule") == 0)
                c.arg = optarg;
            else
                return usage_error("too many arguments");
            break;
        case 'c':
            c.conf = optarg;
            c.conf_given = true;
            break;
        case 'P': c.plugin_dir = optarg; break;
        case 's': c.since = optarg; break;
        case 'u': c.until = optarg; break;
        case 'S': c.series = optarg; break;
        case 'f': c.format = optarg; break;
        case 'n': c.limit = optarg; break;
        case 'D': c.data_dir = optarg; break;
        case 'i': c.input = optarg; break;
        case 'z': c.tz = optarg; break;
        case 't': c.site = optarg; break;
        case 'e': c.every = optarg; break;
        case 'a': c.agg = optarg; break;
        case 'g':
            if (c.ntags == MT_QUERY_MAX_TAGS)
                return usage_error("at most 8 --tag filters");
            c.tags[c.ntags++] = optarg;
            break;
        case 'm': c.markdown = true; break;
        case 'h': fputs(usage_text, stdout); return MT_EXIT_OK;
        case 'V':
            printf("mittari %s (plugin ABI %u.%u)\noutput module interface %s\n",
                   MITTARI_VERSION, MITTARI_ABI_MAJOR, MITTARI_ABI_MINOR, mt_outmod_interface());
            return MT_EXIT_OK;
        default: return usage_error("unknown option");
        }
    }
    if (!c.cmd)
        return usage_error("no command");
    if (c.data_dir && strcmp(c.cmd, "query") != 0)
        return usage_error("--data-dir is an option of query");
    if (strcmp(c.cmd, "run") == 0 && !c.name)
        return cmd_run(&c);
    if (strcmp(c.cmd, "check") == 0 && !c.name)
        return cmd_check(&c);
    if (strcmp(c.cmd, "plugins") == 0)
        return cmd_plugins(&c);
    if (strcmp(c.cmd, "query") == 0 && !c.name)
        return cmd_query(&c);
    if (strcmp(c.cmd, "rule") == 0)
        return cmd_rule(&c);
    if (strcmp(c.cmd, "salvage") == 0 && !c.name)
        return cmd_salvage(&c);
    if (strcmp(c.cmd, "outputs") == 0 && !c.name)
        return mt_cli_outputs(c.conf, c.plugin_dir, stdout);
    if (strcmp(c.cmd, "replay") == 0) {
        if (!c.name)
            return usage_error("replay: which output? mittari replay -c DIR OUTPUT --since T");
        return mt_cli_replay(c.conf, c.plugin_dir, c.name, c.since, c.until, stdout);
    }
    if (strcmp(c.cmd, "status") == 0 && !c.name)
        return cmd_status(&c);
    if (strcmp(c.cmd, "ports") == 0 && !c.name)
        return mt_ports_print(stdout) ? MT_EXIT_FAILURE : MT_EXIT_OK;
    if (c.name)
        return usage_error("unexpected argument");
    return usage_error("unknown command");
}
