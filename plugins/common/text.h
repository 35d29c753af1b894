/*
 * text: the two small helpers the tty plugins' parsers all need. Inline,
 * pure, any thread.
 */
#ifndef MTX_TEXT_H
#define MTX_TEXT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

/* The value of a hex digit (either case), or -1. */
static inline int mtx_hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Formats a one-line message into err (if given) and returns rc. */
__attribute__((format(printf, 4, 5))) static inline int mtx_fail(char *err, size_t errlen, int rc,
                                                                 const char *fmt, ...)
{
    va_list ap;
    if (err && errlen) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

#endif
