/*
 * jsonin: reads one JSON object (RFC 8259) member by member: the tags the
 * agent stores ({"service":"library"}) and the JSON Lines that `mittari
 * query` writes, read back by `mittari rule test`. Strings are decoded
 * (escapes, \u with surrogate pairs, to UTF-8); numbers are parsed as
 * doubles; a nested object or array is handed over as its raw text, to be
 * read with another call.
 *
 * Pure; any thread. Never reads past len; depth of nesting at most 16.
 */
#ifndef MT_JSONIN_H
#define MT_JSONIN_H

#include <stdbool.h>
#include <stddef.h>

enum { MT_JSON_NULL, MT_JSON_BOOL, MT_JSON_NUM, MT_JSON_STR, MT_JSON_OBJ, MT_JSON_ARR };

struct mt_json_val {
    int type;
    bool b;
    double num;
    bool integral;     /* a number written without fraction or exponent */
    const char *s;     /* STR: decoded bytes (NUL-terminated, valid in the callback);
                          OBJ, ARR: the raw text */
    size_t len;
};

/* Calls cb(arg, key, value) for each member in order; stops when cb returns
 * non-zero (and returns that). 0, or -EINVAL with "column N: why" in err. */
int mt_json_object(const char *text, size_t len,
                   int (*cb)(void *arg, const char *key, const struct mt_json_val *v), void *arg,
                   char *err, size_t errlen);

#endif
