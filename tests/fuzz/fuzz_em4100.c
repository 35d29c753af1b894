/* Fuzz the cardreader plugin's device parsers: any bytes as an EM4100
 * frame body, as a typed or serial text card number of every id_format,
 * and as a stream of input_event records for the keyboard-wedge decoder.
 * Never a crash, a leak or undefined behaviour; and what they accept must
 * hold what the headers promise (a checksum that matches, a subject no
 * longer than its buffer, text only of accepted characters). */
#include <linux/input.h>
#include <stdlib.h>
#include <string.h>

#include "cardid.h"
#include "em4100.h"
#include "hidkeys.h"

static void em4100(const uint8_t *data, size_t size)
{
    uint8_t out[CR_EM4100_LEN];

    if (cr_em4100_decode(data, size, out) == 0) {
        /* accepted: 12 or 14 bytes whose last hex pair is the XOR */
        if (size != 12 && size != 14)
            abort();
        uint8_t sum[1];
        char hex[3] = {(char)data[10], (char)data[11], 0};
        sum[0] = (uint8_t)strtoul(hex, NULL, 16);
        if (cr_em4100_checksum(out) != sum[0])
            abort();
    }
}

static void cardid(const uint8_t *data, size_t size)
{
    struct cr_subject s;

    for (int fmt = CR_ID_EM4100_DEC; fmt <= CR_ID_TEXT; fmt++) {
        if (cr_cardid_parse(fmt, (const char *)data, size, &s) != 0) {
            if (s.len || s.space)
                abort(); /* a refusal leaves nothing behind */
            continue;
        }
        if (s.len == 0 || s.len > CR_SUBJECT_MAX || !s.space)
            abort();
        cr_subject_wipe(&s);
    }
}

static void keys(const uint8_t *data, size_t size)
{
    struct cr_keys k;
    struct input_event ev;

    cr_keys_init(&k, 500000);
    for (size_t off = 0; off + sizeof(ev) <= size; off += sizeof(ev)) {
        memcpy(&ev, data + off, sizeof(ev));
        /* the real conversion: the harness's own product overflowed (issue 15) */
        int64_t ts = cr_keys_event_us(ev.input_event_sec, ev.input_event_usec);
        int r = cr_keys_feed(&k, ev.type, ev.code, ev.value, ts);
        if (k.len > CR_KEYS_MAX)
            abort();
        if (r == CR_KEYS_CARD) {
            if (k.len == 0 || strlen(k.text) != k.len)
                abort();
            cr_keys_clear(&k);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    em4100(data, size);
    cardid(data, size);
    keys(data, size);
    return 0;
}
