/* Fuzz the readings `mittari rule test` reads (agent/ruleinput.c) and the
 * JSON reader under them (agent/jsonin.c): any bytes as a CSV header, a CSV
 * line and a JSON Lines line give a reading that obeys the documented
 * limits, or an error, never a crash or a read past the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jsonin.h"
#include "ruleinput.h"

static int any_member(void *arg, const char *key, const struct mt_json_val *v)
{
    (void)arg;
    if (!key || (v->type == MT_JSON_STR && strlen(v->s) > v->len))
        abort();
    return 0;
}

static void check(const struct mt_test_reading *r)
{
    if (!r->metric || !r->site || !r->device || strlen(r->metric) > 63 || strlen(r->site) > 63 ||
        strlen(r->device) > 63 || strlen(r->unit) > 31 || (r->subject && strlen(r->subject) > 23) ||
        strlen(r->tags) >= sizeof(r->tags) || (r->tags[0] && r->tags[0] != '{'))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char store[65536];
    char err[400];
    struct mt_test_reading r;
    struct mt_csv_cols cols;
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = 0;

    char *nl = strchr(text, '\n');
    const char *line = nl ? nl + 1 : "";
    if (nl)
        *nl = 0;
    if (mt_csv_header(text, &cols, err, sizeof(err)) == 0 &&
        mt_csv_reading(line, &cols, &r, store, sizeof(store), err, sizeof(err)) == 0)
        check(&r);
    if (nl)
        *nl = '\n';
    if (mt_jsonl_reading(text, size, &r, store, sizeof(store), err, sizeof(err)) == 0)
        check(&r);
    mt_json_object((const char *)data, size, any_member, NULL, err, sizeof(err));
    int64_t us;
    mt_parse_iso8601(text, &us);
    free(text);
    return 0;
}
