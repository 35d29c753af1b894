#include "em4100.h"
#include "text.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

/* n hex pairs at s into out; false on anything that is not a hex digit. */
static bool hexbytes(const uint8_t *s, size_t n, uint8_t *out)
{
    for (size_t i = 0; i < n; i++) {
        int hi = mtx_hexval(s[2 * i]), lo = mtx_hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

uint8_t cr_em4100_checksum(const uint8_t data[CR_EM4100_LEN])
{
    uint8_t x = 0;
    for (size_t i = 0; i < CR_EM4100_LEN; i++)
        x ^= data[i];
    return x;
}

int cr_em4100_decode(const uint8_t *frame, size_t len, uint8_t out[CR_EM4100_LEN])
{
    uint8_t b[CR_EM4100_LEN + 1];

    /* 12: RDM6300; 14: ID-12LA family, whose last two bytes must be CR LF */
    if (!frame || (len != 12 && len != 14))
        return -EINVAL;
    if (len == 14 && (frame[12] != '\r' || frame[13] != '\n'))
        return -EINVAL;
    int rc = 0;
    if (!hexbytes(frame, sizeof(b), b))
        rc = -EINVAL;
    else if (cr_em4100_checksum(b) != b[CR_EM4100_LEN])
        rc = -EBADMSG;
    else
        memcpy(out, b, CR_EM4100_LEN);
    explicit_bzero(b, sizeof(b)); /* a card number: no copy outlives its use */
    return rc;
}
