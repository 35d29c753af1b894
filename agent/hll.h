/*
 * hll: HyperLogLog sketches for approximate distinct counts of subjects
 * (Flajolet et al. 2007, with the linear-counting correction for small
 * sets), and the 64-bit hash they and the exact sets use.
 *
 * A sketch is 2^p one-byte registers owned by the caller (the rule
 * engine's windows); p from MT_HLL_PMIN to MT_HLL_PMAX. The standard error
 * of an estimate is about 1.04 / sqrt(2^p). Pure; any thread.
 */
#ifndef MT_HLL_H
#define MT_HLL_H

#include <stddef.h>
#include <stdint.h>

#define MT_HLL_PMIN 4
#define MT_HLL_PMAX 16

/* A 64-bit hash of len bytes with good avalanche (not cryptographic). */
uint64_t mt_hash64(const void *data, size_t len);

static inline size_t mt_hll_bytes(unsigned p)
{
    return (size_t)1 << p;
}
/* Returns 1 when a register grew (the estimate may have changed), else 0. */
int mt_hll_add(uint8_t *reg, unsigned p, uint64_t hash);
double mt_hll_estimate(const uint8_t *reg, unsigned p);

#endif
