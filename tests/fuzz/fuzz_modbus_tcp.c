/* libFuzzer: whatever a Modbus TCP device sends back, through the plugin's
 * real TCP link (plugins/modbus/tcp.c: connect, receive, mbap.c's framing)
 * and device engine (link.c: the poll cursor, emit_reg, clears after
 * reading, health), issue 15 item 14. The fuzz device (tests/modbus/
 * fuzzdev.c) uses every function, type, order and kind; its host aborts on
 * any reading, counter or health report that breaks mittari.h's contract.
 *
 * Each input is one poll. The link connects to a listening socket of this
 * process; then for each record of the input, [ctl][len][len bytes], the
 * harness reads the request that came (if one did) and answers with the
 * bytes: ctl bit 0 wraps them as a PDU in an MBAP header with the
 * request's transaction and unit id (so the fuzzer reaches the PDU checks
 * and the decoding), bit 1 also makes their first byte the request's
 * function code; without bit 0 they go as they are (headers, lengths,
 * answers in pieces). What is left at the end times out (the clock moves
 * past response_timeout, not to the next poll). Afterwards the link must
 * hold no descriptor watch. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzzdev.h"
#include "link.h"

static int listener = -1, port;

static void listen_once(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    if (listener >= 0)
        return;
    listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listener < 0 || bind(listener, (struct sockaddr *)&a, sizeof(a)) || listen(listener, 16) ||
        getsockname(listener, (struct sockaddr *)&a, &al))
        abort();
    port = ntohs(a.sin_port);
}

/* The request the link sent, if one came (else req keeps the last). */
static void take_request(int srv, uint8_t req[12])
{
    uint8_t b[12];
    if (recv(srv, b, 12, MSG_DONTWAIT) == 12)
        memcpy(req, b, 12);
}

/* The link's connection, once it is made. */
static int accept_wait(void)
{
    struct pollfd p = {.fd = listener, .events = POLLIN};
    if (poll(&p, 1, 5000) != 1)
        abort(); /* the link did not connect */
    int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        abort();
    return fd;
}

/* Connections the link made that the harness did not take (none, unless
 * it reconnected): let them go. */
static void drain(void)
{
    int fd;
    while ((fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0)
        close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t req[12] = {0}, out[600];

    listen_once();
    if (size < 1)
        return 0;
    fz_now = 1000000;
    struct mb_link *l = fz_build(port, data[0] % 4 ? 0 : 1 + data[0] / 4 % 5);
    data++, size--;
    mb_tcp_plan(&l, 1, fz_now);
    mb_tcp_tick(l, fz_now); /* due: connects */
    int srv = accept_wait();
    fz_deliver(MITTARI_FD_WRITE); /* connected: the first request goes out */
    while (size >= 2 && !mb_tcp_idle(l)) {
        uint8_t ctl = data[0];
        size_t len = data[1] < size - 2 ? data[1] : size - 2, n = 0;
        const uint8_t *b = data + 2;
        data += 2 + len, size -= 2 + len;
        take_request(srv, req);
        if (ctl & 1) {
            memcpy(out, req, 4); /* transaction and protocol id */
            out[4] = (uint8_t)((len + 1) >> 8);
            out[5] = (uint8_t)(len + 1);
            out[6] = req[6];
            n = 7;
        }
        memcpy(out + n, b, len);
        if ((ctl & 3) == 3 && len)
            out[n] = req[7];
        n += len;
        if (n && send(srv, out, n, MSG_NOSIGNAL) < 0)
            break;
        fz_deliver(MITTARI_FD_READ);
    }
    fz_now += 200000; /* past response_timeout (100 ms), before the next poll (1 s) */
    mb_tcp_tick(l, fz_now);
    close(srv);
    drain();
    fz_free(l);
    if (fz_watches())
        abort(); /* a descriptor left watched after its link was freed */
    return 0;
}
