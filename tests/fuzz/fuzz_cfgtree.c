/* Fuzz the configuration loader: any bytes as a YAML file must give a tree
 * or problems with positions, never a crash, a leak or undefined behaviour. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cfgtree.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mt_cfgdoc doc;
    struct mt_diags d = {0};
    char *text = malloc(size + 1);

    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = 0; /* the loader reads text; NUL bytes are refused by the file reader */
    mt_cfgdoc_init(&doc);
    mt_cfg_load_file(&doc, "fuzz.yaml", text, &d);
    for (size_t i = 0; i < d.n; i++)
        if (d.v[i].pos.file && d.v[i].pos.line < 0)
            abort(); /* a problem must have a sane position */
    mt_diags_free(&d);
    mt_cfgdoc_free(&doc);
    free(text);
    return 0;
}
