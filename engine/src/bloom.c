/*
 * bloom.c - the SSTable bloom filter over user-key hashes (see sst.h).
 *
 * LevelDB's design with a 64-bit hash: a bit array probed k times by double
 * hashing (h, h + delta, h + 2*delta, ... mod the number of bits, delta =
 * h rotated right by 17), followed by one byte holding k.  The byte layout
 * is in doc/FORMATS.md.  A filter that does not parse answers "maybe".
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "sst.h"

#define BLOOM_MIN_BITS 64
#define BLOOM_MAX_K    30

int kv_bloom_bits_per_key(double fp)
{
    double b;

    if (!(fp > 0)) return BLOOM_MAX_K; /* also NaN */
    if (fp >= 1) return 1;
    b = ceil(-1.44 * log2(fp));
    if (b < 1) return 1;
    if (b > 30) return 30;
    return (int)b;
}

static int bloom_k(int bits_per_key)
{
    int k = (int)lround(bits_per_key * 0.69);
    if (k < 1) k = 1;
    if (k > BLOOM_MAX_K) k = BLOOM_MAX_K;
    return k;
}

static inline uint64_t bloom_delta(uint64_t h)
{
    return (h >> 17) | (h << 47);
}

kv_status kv_bloom_build(const uint64_t *hashes, size_t n, int bits_per_key, uint8_t **out,
                         size_t *out_len, kv_err *err)
{
    uint64_t nbits, nbytes;
    uint8_t *f;
    int k;

    if (bits_per_key < 1) bits_per_key = 1;
    if (bits_per_key > 30) bits_per_key = 30;
    k = bloom_k(bits_per_key);
    if ((uint64_t)n > UINT64_MAX / 64)
        return kv_seterr(err, KV_TOO_BIG, 0, "bloom filter for %zu keys is too big", n);
    nbits = (uint64_t)n * (uint64_t)bits_per_key;
    if (nbits < BLOOM_MIN_BITS) nbits = BLOOM_MIN_BITS;
    nbytes = (nbits + 7) / 8;
    nbits = nbytes * 8;
    f = calloc(1, (size_t)nbytes + 1);
    if (!f)
        return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory for a %llu-byte bloom filter",
                         (unsigned long long)nbytes);
    for (size_t i = 0; i < n; i++) {
        uint64_t h = hashes[i], delta = bloom_delta(h);
        for (int j = 0; j < k; j++) {
            uint64_t pos = h % nbits;
            f[pos >> 3] |= (uint8_t)(1u << (pos & 7));
            h += delta;
        }
    }
    f[nbytes] = (uint8_t)k;
    *out = f;
    *out_len = (size_t)nbytes + 1;
    return KV_OK;
}

int kv_bloom_may_contain(const uint8_t *filter, size_t len, uint64_t hash)
{
    uint64_t nbits, h = hash, delta = bloom_delta(hash);
    int k;

    if (!filter || len < 2) return 1;
    k = filter[len - 1];
    if (k < 1 || k > BLOOM_MAX_K) return 1; /* unknown encoding: maybe */
    nbits = (uint64_t)(len - 1) * 8;
    for (int j = 0; j < k; j++) {
        uint64_t pos = h % nbits;
        if (!(filter[pos >> 3] & (1u << (pos & 7)))) return 0;
        h += delta;
    }
    return 1;
}
