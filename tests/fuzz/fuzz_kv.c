/* Fuzz the key=value decoder (plugins/common/kv.c) and the number parser
 * it uses (fields.c): any bytes give fields that obey the grammar, or an
 * error, never a crash; a numeric field's text parses to its value again. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mtd_fields fs;
    struct mtd_num n;
    int rc = mtk_parse(data, size, &fs);

    if (rc < 0) {
        if (rc != -22 && rc != -61 && rc != -7 && rc != -17) /* EINVAL ENODATA E2BIG EEXIST */
            abort();
        return 0;
    }
    if ((size_t)rc != fs.n || fs.n == 0 || fs.n > MTD_MAX_FIELDS)
        abort();
    for (size_t i = 0; i < fs.n; i++) {
        const struct mtd_field *f = &fs.f[i];
        if (!f->name[0] || !f->text[0] || strchr(f->text, '=') || mtd_find(&fs, f->name) != f)
            abort();
        if (f->numeric) {
            if (mtd_number(f->text, strlen(f->text), &n) || !isfinite(n.value) ||
                n.is_uint != f->num.is_uint || (n.is_uint && n.counter != f->num.counter))
                abort();
        }
    }
    /* the number parser alone, on the raw bytes */
    if (size < MTD_TEXT_MAX && mtd_number((const char *)data, size, &n) == 0 && !isfinite(n.value))
        abort();
    return 0;
}
