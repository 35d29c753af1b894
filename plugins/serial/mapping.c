/*
 * mapping: decoded fields to readings (mapping.h).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "mapping.h"

const char *const mtm_kind_names[] = {"cumulative", "delta", "gauge", "event", NULL};
const char *const mtm_bits_names[] = {"16", "32", "64", NULL};
static const unsigned bits_of[] = {16, 32, 64};
static const int sdk_kind[] = {MITTARI_KIND_CUMULATIVE, MITTARI_KIND_DELTA, MITTARI_KIND_GAUGE,
                               MITTARI_KIND_EVENT};

const struct mittari_option mtm_value_options[] = {
    {.name = "field",
     .type = MITTARI_OPT_STRING,
     .offset = offsetof(struct mtm_value, field),
     .help = "Decoded field: a key (kv) or a group number or name (pattern); unset: every "
             "frame the decoder accepts."},
    {.name = "value",
     .type = MITTARI_OPT_STRING,
     .offset = offsetof(struct mtm_value, value),
     .help = "A constant to emit (e.g. 1 per frame) instead of the field's value."},
    {.name = "metric",
     .type = MITTARI_OPT_STRING,
     .flags = MITTARI_OPT_REQUIRED,
     .offset = offsetof(struct mtm_value, metric),
     .help = "Metric name of the reading."},
    {.name = "kind",
     .type = MITTARI_OPT_ENUM,
     .flags = MITTARI_OPT_REQUIRED,
     .values = mtm_kind_names,
     .offset = offsetof(struct mtm_value, kind),
     .help = "cumulative (a device counter; the agent makes deltas), delta, gauge or event."},
    {.name = "unit",
     .type = MITTARI_OPT_STRING,
     .offset = offsetof(struct mtm_value, unit),
     .help = "Unit of the reading, e.g. persons."},
    {.name = "bits",
     .type = MITTARI_OPT_ENUM,
     .def = "32",
     .values = mtm_bits_names,
     .offset = offsetof(struct mtm_value, bits),
     .help = "cumulative: where the device's counter wraps."},
    {.name = "scale",
     .type = MITTARI_OPT_DOUBLE,
     .def = "1",
     .min = -1e12,
     .max = 1e12,
     .offset = offsetof(struct mtm_value, scale),
     .help = "Multiplies the value (not for cumulative), e.g. 0.1 for tenths."},
    {.name = "device",
     .type = MITTARI_OPT_STRING,
     .offset = offsetof(struct mtm_value, device),
     .help = "Device of the reading; unset: the input's device."},
    {0},
};

static bool valid_metric(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 63)
        return false;
    for (; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '.' || *s == ':' || *s == '-'))
            return false;
    return true;
}

static bool known_group(const char *field, const char *const *groups, size_t ngroups)
{
    if (!groups)
        return true;
    for (size_t i = 0; i < ngroups; i++)
        if (strcmp(groups[i], field) == 0)
            return true;
    return false;
}

static int check_one(const struct mtm_value *v, const char *const *groups, size_t ngroups,
                     char *err, size_t errlen)
{
    struct mtd_num num;

    if (!valid_metric(v->metric))
        return snprintf(err, errlen, "metric '%s' is not [A-Za-z0-9_.:-]{1,63}", v->metric),
               -EINVAL;
    if (!v->field && !v->value)
        return snprintf(err, errlen, "needs a field, a value, or both"), -EINVAL;
    if (v->field && !known_group(v->field, groups, ngroups))
        return snprintf(err, errlen, "field '%s' is not a group of the pattern", v->field), -EINVAL;
    if (v->value && mtd_number(v->value, strlen(v->value), &num))
        return snprintf(err, errlen, "value '%s' is not a number", v->value), -EINVAL;
    if (v->kind == MTM_CUMULATIVE && v->value)
        return snprintf(err, errlen, "a cumulative counter comes from a field, not a constant"),
               -EINVAL;
    if (v->kind == MTM_CUMULATIVE && v->scale != 1)
        return snprintf(err, errlen, "a cumulative counter cannot be scaled"), -EINVAL;
    if (v->value && !isfinite(num.value * v->scale))
        return snprintf(err, errlen, "value '%s' times scale is not a finite number", v->value),
               -EINVAL;
    if (v->device && !valid_metric(v->device))
        return snprintf(err, errlen, "device '%s' is not [A-Za-z0-9_.:-]{1,63}", v->device),
               -EINVAL;
    return 0;
}

int mtm_check(const struct mittari_list *values, const char *const *groups, size_t ngroups,
              char *err, size_t errlen)
{
    char why[200];

    if (values->n > MTM_MAX_OUT)
        return snprintf(err, errlen, "values: at most %d items", MTM_MAX_OUT), -EINVAL;
    for (size_t i = 0; i < values->n; i++) {
        const struct mtm_value *v = MITTARI_LIST_ITEM(values, struct mtm_value, i);
        if (check_one(v, groups, ngroups, why, sizeof(why))) {
            snprintf(err, errlen, "values[%zu] (%s): %s", i, v->metric, why);
            return -EINVAL;
        }
    }
    return 0;
}

/* One item's reading, or 1 when its field is not in this frame. */
static int one(const struct mtm_value *v, const struct mtd_fields *fs, struct mittari_reading *r,
               char *err, size_t errlen)
{
    const struct mtd_field *f = v->field ? mtd_find(fs, v->field) : NULL;
    struct mtd_num num;

    if (v->field && !f)
        return 1;
    if (f && !v->value && !f->numeric)
        return snprintf(err, errlen, "field %s is not a number", v->field), -EINVAL;
    if (v->value)
        mtd_number(v->value, strlen(v->value), &num); /* checked at create */
    else
        num = f->num;
    r->kind = sdk_kind[v->kind];
    if (v->kind == MTM_CUMULATIVE) {
        unsigned bits = bits_of[v->bits];
        if (!num.is_uint || (bits < 64 && num.counter >> bits))
            return snprintf(err, errlen, "field %s is not a %u-bit counter", v->field, bits),
                   -EINVAL;
        r->counter = num.counter;
        r->counter_bits = bits;
        return 0;
    }
    r->value = num.value * v->scale;
    if (!isfinite(r->value)) /* a constant's was checked at create; a field's cannot be */
        return snprintf(err, errlen, "field %s scaled is not finite", v->field ? v->field : "-"),
               -EINVAL;
    return 0;
}

int mtm_apply(const struct mittari_list *values, const struct mtd_fields *fs, const char *device,
              int64_t ts_us, struct mtm_out *out, char *err, size_t errlen)
{
    out->n = 0;
    for (size_t i = 0; i < values->n && i < MTM_MAX_OUT; i++) {
        const struct mtm_value *v = MITTARI_LIST_ITEM(values, struct mtm_value, i);
        struct mittari_reading r = MITTARI_READING_INIT;
        int rc = one(v, fs, &r, err, errlen);
        if (rc < 0) {
            out->n = 0;
            return rc;
        }
        if (rc > 0)
            continue;
        r.ts_us = ts_us;
        r.device = v->device ? v->device : device;
        r.metric = v->metric;
        r.unit = v->unit;
        out->r[out->n++] = r;
    }
    return (int)out->n;
}
