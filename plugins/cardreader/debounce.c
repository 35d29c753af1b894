#include "debounce.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

struct entry {
    uint64_t fp;
    int64_t last_us;
};

struct cr_debounce {
    unsigned char key[crypto_shorthash_KEYBYTES];
    int64_t window_us;
    size_t n, cap;
    uint64_t evicted;
    struct entry v[];
};

int cr_debounce_create(struct cr_debounce **out, int64_t window_us, size_t cap)
{
    struct cr_debounce *d;

    if (cap == 0 || sodium_init() < 0)
        return -EINVAL;
    d = calloc(1, sizeof(*d) + cap * sizeof(d->v[0]));
    if (!d)
        return -ENOMEM;
    randombytes_buf(d->key, sizeof(d->key));
    d->window_us = window_us;
    d->cap = cap;
    *out = d;
    return 0;
}

void cr_debounce_free(struct cr_debounce *d)
{
    if (!d)
        return;
    sodium_memzero(d, sizeof(*d) + d->cap * sizeof(d->v[0]));
    free(d);
}

/* SipHash over space, a zero byte, then the id: "em4100-dec" "123" and
 * "em4100-de" "c123" differ. */
static uint64_t fingerprint(const struct cr_debounce *d, const char *space, const void *id,
                            size_t len)
{
    size_t sl = strlen(space);
    unsigned char buf[64 + 1 + 64], h[crypto_shorthash_BYTES];
    uint64_t fp;

    if (sl > 64)
        sl = 64;
    if (len > 64)
        len = 64;
    memcpy(buf, space, sl);
    buf[sl] = 0;
    memcpy(buf + sl + 1, id, len);
    crypto_shorthash(h, buf, sl + 1 + len, d->key);
    memcpy(&fp, h, sizeof(fp));
    sodium_memzero(buf, sizeof(buf));
    return fp;
}

static struct entry *find(struct cr_debounce *d, uint64_t fp)
{
    for (size_t i = 0; i < d->n; i++)
        if (d->v[i].fp == fp)
            return &d->v[i];
    return NULL;
}

static void remove_at(struct cr_debounce *d, size_t i)
{
    d->v[i] = d->v[--d->n];
    d->v[d->n] = (struct entry){0};
}

static void add(struct cr_debounce *d, uint64_t fp, int64_t now_us)
{
    if (d->n == d->cap) {
        size_t oldest = 0;
        for (size_t i = 1; i < d->n; i++)
            if (d->v[i].last_us < d->v[oldest].last_us)
                oldest = i;
        remove_at(d, oldest);
        d->evicted++;
    }
    d->v[d->n++] = (struct entry){.fp = fp, .last_us = now_us};
}

bool cr_debounce_repeat(struct cr_debounce *d, const char *space, const void *id, size_t len,
                        int64_t now_us)
{
    if (d->window_us <= 0)
        return false;
    uint64_t fp = fingerprint(d, space, id, len);
    struct entry *e = find(d, fp);
    if (!e) {
        add(d, fp, now_us);
        return false;
    }
    bool repeat = now_us - e->last_us < d->window_us;
    e->last_us = now_us;
    return repeat;
}

void cr_debounce_forget(struct cr_debounce *d, const char *space, const void *id, size_t len)
{
    if (d->window_us <= 0)
        return;
    struct entry *e = find(d, fingerprint(d, space, id, len));
    if (e)
        remove_at(d, (size_t)(e - d->v));
}

void cr_debounce_expire(struct cr_debounce *d, int64_t now_us)
{
    for (size_t i = 0; i < d->n;) {
        if (now_us - d->v[i].last_us >= d->window_us)
            remove_at(d, i);
        else
            i++;
    }
}

size_t cr_debounce_size(const struct cr_debounce *d)
{
    return d->n;
}

uint64_t cr_debounce_take_evicted(struct cr_debounce *d)
{
    uint64_t n = d->evicted;
    d->evicted = 0;
    return n;
}
