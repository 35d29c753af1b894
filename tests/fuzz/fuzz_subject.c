/* Fuzz the canonical forms of raw identifiers (card numbers as readers
 * print them): any bytes in any space give a canonical form or -EINVAL. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "subject.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const spaces[] = {"em4100", "em4100-hex", "em4100-dec", "wiegand26",
                                         "iso14443", "ble", "other"};
    uint8_t out[MT_SUBJECT_MAX];
    const char *cs;
    size_t n;

    if (size < 1)
        return 0;
    const char *space = spaces[data[0] % 7];
    int rc = mt_subject_canonical(space, data + 1, size - 1, &cs, out, &n);
    if (rc == 0 && (n == 0 || n > MT_SUBJECT_MAX))
        abort();
    return 0;
}
