/* libFuzzer: whatever a Modbus RTU device sends back, through libmodbus's
 * reply parsing (its RTU framing, CRC and response checks) and the
 * plugin's real RTU transport (plugins/modbus/rtu.c: poll_request, the
 * failure classes, flush or close) and device engine (link.c: emit_reg,
 * clears after reading, health), issue 15 item 14. The fuzz device
 * (tests/modbus/fuzzdev.c) uses every function, type, order and kind; its
 * host aborts on anything that breaks mittari.h's contract.
 *
 * Each input is one run of the link: the "serial line" is one end of a
 * socket pair (libmodbus reads and selects on it as on a tty), the other
 * end holds the device's whole answer stream and is then shut, so a short
 * answer ends at once (end of stream) instead of waiting out a timeout.
 * The stream is the input's records, [ctl][len][len bytes]: ctl bit 0
 * puts the unit id (1) before the bytes, bit 1 appends their CRC (so the
 * fuzzer reaches libmodbus's checks and our decoding). */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <modbus.h>

#include "fuzzdev.h"
#include "linkint.h"

static uint16_t crc16(const uint8_t *p, size_t n)
{
    uint16_t crc = 0xFFFF;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int b = 0; b < 8; b++)
            crc = (crc & 1) ? (uint16_t)((crc >> 1) ^ 0xA001) : (uint16_t)(crc >> 1);
    }
    return crc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t stream[1 << 16];
    size_t len = 0;
    int sv[2];

    if (size < 1 || size > sizeof(stream) / 2)
        return 0;
    fz_now = 1000000;
    unsigned refuse = data[0] % 4 ? 0 : 1 + data[0] / 4 % 5;
    data++, size--;
    while (size >= 2) { /* each record grows by at most 3 bytes: stream has room */
        uint8_t ctl = data[0];
        size_t n = data[1] < size - 2 ? data[1] : size - 2, start = len;
        if (ctl & 1)
            stream[len++] = 1;
        memcpy(stream + len, data + 2, n);
        len += n;
        if (ctl & 2) {
            uint16_t c = crc16(stream + start, len - start);
            stream[len++] = (uint8_t)c;
            stream[len++] = (uint8_t)(c >> 8);
        }
        data += 2 + n, size -= 2 + n;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
        return 0;
    /* one write: what fits the pair's buffer is what the device sends */
    if (fcntl(sv[1], F_SETFL, O_NONBLOCK) || (len && write(sv[1], stream, len) < 0)) {
        close(sv[0]);
        close(sv[1]);
        return 0;
    }
    shutdown(sv[1], SHUT_WR);
    struct mb_link *l = fz_build(0, refuse);
    /* the port is open: the link's libmodbus context on our end of the pair */
    modbus_set_socket(l->mb, sv[0]);
    l->connected = l->ever_connected = true;
    l->frame_delay_us = 0; /* no bus to keep quiet */
    mb_link_run_at(l, fz_now);
    fz_free(l); /* closes sv[0] (libmodbus did if the link closed it) */
    close(sv[1]);
    return 0;
}
