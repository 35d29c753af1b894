/*
 * ruleconf: the `rules:` section of the configuration: each named rule's
 * options (the table mt_rule_options: script, limits, pause_after,
 * close_delay) and the keys series, where, from, tags, enabled, into a
 * struct mt_rule_spec (rules.h). Scripts are compiled and their top level
 * run here, so `mittari check` refuses what a rule would fail to load.
 *
 * Any thread; never logs (problems go to the diagnostics).
 */
#ifndef MT_RULECONF_H
#define MT_RULECONF_H

#include <mittari/mittari.h>

#include "cfgtree.h"
#include "rules.h"

extern const struct mittari_option mt_rule_options[];

/* sec: the rules mapping (NULL: no rules). *out gets an array of *nout
 * specs (free with mt_ruleconf_free) even when there were problems. Returns
 * 0 when there was none. tz: agent.timezone. */
int mt_ruleconf_load(const struct mt_node *sec, const char *tz, struct mt_rule_spec ***out,
                     size_t *nout, struct mt_diags *d);
void mt_ruleconf_free(struct mt_rule_spec **v, size_t n);

#endif
