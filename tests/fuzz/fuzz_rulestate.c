/* Fuzz a rule's saved state (agent/rule.c, agent/ruleagg.c): whatever bytes
 * come back from the log's consumer_state (a damaged file, another
 * version's format) restore or are refused, never crash, and the rule then
 * still takes readings and closes its windows. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mittari/mittari.h>

#include "rule.h"
#include "series.h"
#include "tz.h"

static const char script[] =
    "state.n = state.n or 0\n"
    "local h = window { every = 'hour', metric = 'h', agg = 'sum' }\n"
    "local f = window { every = 'day', metric = 'f', agg = 'distinct', by = {'site'},\n"
    "                   flows = 'also' }\n"
    "local a = window { every = 'week', metric = 'a', agg = 'approx_distinct', precision = 4 }\n"
    "local m = window { every = 'minute', metric = 'm', agg = 'max', lateness = '1d' }\n"
    "function on_reading(r)\n"
    "  state.n = state.n + 1\n"
    "  h:add(r); f:add(r); a:add(r); m:add(r)\n"
    "end\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[64];
    static struct mt_tz *tz;
    char err[512], note[300];
    if (!path[0]) {
        char tmpl[] = "/tmp/fuzz_rulestate-XXXXXX";
        int fd = mkstemp(tmpl);
        if (fd < 0 || write(fd, script, sizeof(script) - 1) != (ssize_t)(sizeof(script) - 1))
            abort();
        close(fd);
        snprintf(path, sizeof(path), "%s", tmpl);
        if (mt_tz_load(&tz, "UTC", err, sizeof(err)))
            abort();
    }
    struct mt_series_reg reg;
    struct mt_rule *r = NULL;
    uint32_t id;
    mt_series_init(&reg);
    struct mt_series_info k = {.site = "s", .device = "d", .metric = "m", .unit = "",
                               .kind = MITTARI_KIND_DELTA, .tags = ""};
    struct mt_rule_conf c = {.name = "fz", .script = path, .site = "s", .tz = tz, .reg = &reg};
    if (mt_series_intern(&reg, &k, &id) || mt_rule_open(&r, &c, err, sizeof(err)))
        abort();
    mt_rule_restore(r, data, size, note, sizeof(note));
    struct mt_row row = {.seq = 1, .ts = 1767225600000000LL, .series = id, .value = 2};
    snprintf(row.subject, sizeof(row.subject), "AAAAAAAAAAAAAAAAAAAAAA");
    while (mt_rule_feed(r, &row, mt_series_get(&reg, id), err, sizeof(err)) == 1)
        mt_rule_out_clear(r);
    mt_rule_finish(r);
    mt_rule_free(r);
    mt_series_free(&reg);
    return 0;
}
