/* Fuzz the agent's reading of what an isolated input's process sends
 * (agent/isowire.c, issue 13): any packet decodes to a reading whose
 * strings and bytes lie inside it and whose encoding decodes the same
 * again, or is refused, never a crash. The option decoder too, against a
 * table with every type and a list. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "isowire.h"

struct item {
    const char *name;
    int64_t unit;
};
struct conf {
    const char *s;
    int64_t i;
    double d;
    bool b;
    int e;
    uint64_t size;
    struct mittari_list items;
};
static const char *const vals[] = {"a", "b", NULL};
static const struct mittari_option item_opts[] = {
    {.name = "name", .type = MITTARI_OPT_STRING, .offset = offsetof(struct item, name)},
    {.name = "unit", .type = MITTARI_OPT_INT, .offset = offsetof(struct item, unit)},
    {0},
};
static const struct mittari_option opts[] = {
    {.name = "s", .type = MITTARI_OPT_STRING, .offset = offsetof(struct conf, s)},
    {.name = "i", .type = MITTARI_OPT_DURATION, .offset = offsetof(struct conf, i)},
    {.name = "d", .type = MITTARI_OPT_DOUBLE, .offset = offsetof(struct conf, d)},
    {.name = "b", .type = MITTARI_OPT_BOOL, .offset = offsetof(struct conf, b)},
    {.name = "e", .type = MITTARI_OPT_ENUM, .values = vals, .offset = offsetof(struct conf, e)},
    {.name = "size", .type = MITTARI_OPT_SIZE, .offset = offsetof(struct conf, size)},
    {.name = "items",
     .type = MITTARI_OPT_LIST,
     .sub = item_opts,
     .sub_size = sizeof(struct item),
     .offset = offsetof(struct conf, items)},
    {0},
};

static bool inside(const void *p, size_t n, const uint8_t *data, size_t size)
{
    return !p || ((const uint8_t *)p >= data && (const uint8_t *)p + n <= data + size);
}

static bool same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void check_reading(const uint8_t *data, size_t size)
{
    struct mt_isowire_rd rd;
    struct mt_isowire_reading r, again;
    struct mt_buf b = {0};

    mt_isowire_rd_init(&rd, data, size);
    if (mt_isowire_get_reading(&rd, &r))
        return;
    const char *strs[] = {r.r.device, r.r.metric, r.r.unit, r.r.source, r.r.subject_space};
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
        if (!inside(strs[i], strs[i] ? strlen(strs[i]) + 1 : 0, data, size))
            abort();
    if (r.r.subject_id && r.r.subject_id_len >= 1 && r.r.subject_id_len <= 64 &&
        !inside(r.r.subject_id, r.r.subject_id_len, data, size))
        abort();
    /* what decoded encodes to what decodes the same */
    if (mt_isowire_put_reading(&b, &r.r))
        abort();
    mt_isowire_rd_init(&rd, b.p, b.len);
    if (mt_isowire_get_reading(&rd, &again))
        abort();
    if (again.r.size != r.r.size || !same_str(again.r.metric, r.r.metric) ||
        !same_str(again.r.device, r.r.device) || again.r.ntags != r.r.ntags ||
        again.r.subject_id_len != r.r.subject_id_len)
        abort();
    mt_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mt_isowire_rd rd;
    struct mt_isowire_init in;
    struct mt_arena arena = {0};
    struct conf c;

    check_reading(data, size);
    mt_isowire_rd_init(&rd, data, size);
    if (mt_isowire_get_init(&rd, &in) == 0 && !inside(in.path, strlen(in.path) + 1, data, size))
        abort();
    memset(&c, 0, sizeof(c));
    mt_isowire_rd_init(&rd, data, size);
    int rc = mt_isowire_get_conf(&rd, opts, &c, &arena);
    if (rc && rc != -74 && rc != -12) /* EBADMSG, ENOMEM */
        abort();
    mt_arena_free(&arena);
    return 0;
}
