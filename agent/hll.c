#include "hll.h"

#include <math.h>
#include <string.h>

static uint64_t rotl(uint64_t x, int r)
{
    return x << r | x >> (64 - r);
}

/* The final avalanche: every input bit flips about half the output bits. */
static uint64_t fmix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

uint64_t mt_hash64(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ ((uint64_t)len * 0x87c37b91114253d5ULL);

    for (; len >= 8; p += 8, len -= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h ^= fmix(w + 0x4cf5ad432745937fULL);
        h = rotl(h, 27) * 5 + 0x52dce729;
    }
    uint64_t t = 0;
    for (size_t i = 0; i < len; i++)
        t |= (uint64_t)p[i] << (8 * i);
    h ^= fmix(t ^ 0x2545f4914f6cdd1dULL);
    return fmix(h);
}

int mt_hll_add(uint8_t *reg, unsigned p, uint64_t hash)
{
    size_t j = (size_t)(hash >> (64 - p));
    uint64_t w = hash << p;
    /* the position of the first 1 bit among the remaining 64 - p bits */
    uint8_t rho = w ? (uint8_t)(__builtin_clzll(w) + 1) : (uint8_t)(64 - p + 1);
    if (rho > 64 - p + 1)
        rho = (uint8_t)(64 - p + 1);
    if (reg[j] >= rho)
        return 0;
    reg[j] = rho;
    return 1;
}

double mt_hll_estimate(const uint8_t *reg, unsigned p)
{
    size_t m = (size_t)1 << p, zeros = 0;
    double sum = 0;

    for (size_t j = 0; j < m; j++) {
        sum += ldexp(1.0, -(int)reg[j]);
        zeros += reg[j] == 0;
    }
    double dm = (double)m;
    double alpha = m == 16 ? 0.673 : m == 32 ? 0.697 : m == 64 ? 0.709 : 0.7213 / (1 + 1.079 / dm);
    double e = alpha * dm * dm / sum;
    /* small sets: count the empty registers instead (linear counting) */
    if (e <= 2.5 * dm && zeros)
        e = dm * log(dm / (double)zeros);
    return e;
}
