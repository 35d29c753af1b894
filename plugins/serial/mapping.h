/*
 * mapping: the serial plugin's `values` list: which decoded field becomes
 * which reading (metric, kind, unit, counter width, scale, device).
 *
 * Checked once at create (mtm_check: every problem a configuration can
 * have that the option table cannot express), then applied to each frame's
 * fields (mtm_apply) all or nothing: a frame whose mapped field is not a
 * valid value gives no reading at all, so a garbled frame never becomes a
 * half-right reading.
 *
 * Pure: no I/O, no allocation; the loop thread of the instance.
 */
#ifndef MTM_MAPPING_H
#define MTM_MAPPING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mittari/mittari.h>

#include "fields.h"

enum mtm_kind { MTM_CUMULATIVE, MTM_DELTA, MTM_GAUGE, MTM_EVENT };
extern const char *const mtm_kind_names[];
extern const char *const mtm_bits_names[];

/* One item of the `values` list (filled by the option table). */
struct mtm_value {
    const char *field; /* decoded field name; NULL = every decoded frame */
    const char *value; /* a constant instead of the field's value; NULL = the field's */
    const char *metric;
    int kind; /* enum mtm_kind */
    const char *unit;
    int bits; /* index into mtm_bits_names: 16, 32, 64 */
    double scale;
    const char *device; /* NULL = the instance's device */
};

/* The option table of one item, for MITTARI_OPT_LIST. */
extern const struct mittari_option mtm_value_options[];

/* Checks the list; groups: the names a pattern decoder can produce (NULL:
 * any name, kv). 0 or -EINVAL with a message naming the item in err. */
int mtm_check(const struct mittari_list *values, const char *const *groups, size_t ngroups,
              char *err, size_t errlen);

#define MTM_MAX_OUT 32

/* Readings for one frame; strings borrow from the configuration. */
struct mtm_out {
    size_t n;
    struct mittari_reading r[MTM_MAX_OUT];
};

/* Fills out from the fields. The number of readings (0: no mapped field in
 * this frame), or -EINVAL with the reason in err (a mapped field that is
 * not a number, or not a whole counter within its width). */
int mtm_apply(const struct mittari_list *values, const struct mtd_fields *fs, const char *device,
              int64_t ts_us, struct mtm_out *out, char *err, size_t errlen);

#endif
