/* Fuzz the status endpoint's request parser (httpd.c) and its query
 * arguments: any bytes from the network give a request or an HTTP status,
 * and a parsed request's fields lie inside the buffer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "httpd.h"

static void inside(const char *p, const char *buf, size_t n)
{
    if (p && (p < buf || p > buf + n))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mt_http_req req;
    char v[32];
    char *buf = malloc(size + 1);

    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = 0;
    int rc = mt_http_parse(buf, size, &req);
    if (rc != 0 && rc != 400 && rc != 405 && rc != 413 && rc != 414 && rc != 505)
        abort();
    if (rc == 0) {
        inside(req.method, buf, size);
        inside(req.path, buf, size);
        inside(req.authorization, buf, size);
        if (req.path[0] != '/')
            abort();
        static const char *const names[] = {"day", "format", "strict", ""};
        for (size_t i = 0; i < 4; i++)
            if (mt_http_arg(&req, names[i], v, sizeof(v)) && strlen(v) >= sizeof(v))
                abort();
    }
    free(buf);
    return 0;
}
