/*
 * hash.h - the engine's checksum and hash functions, all xxhash (XXH3).
 *
 * kv_checksum64 guards SST blocks, indexes and footers; kv_checksum32 (the
 * low half, seeded with the length) guards WAL, manifest and value-log
 * records; kv_key_hash is the bloom-filter hash of a user key.
 */
#ifndef KV_HASH_H
#define KV_HASH_H

#include <stddef.h>
#include <stdint.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

static inline uint64_t kv_checksum64(const void *p, size_t n)
{
    return XXH3_64bits(p, n);
}

static inline uint32_t kv_checksum32(const void *p, size_t n)
{
    return (uint32_t)XXH3_64bits_withSeed(p, n, (uint64_t)n);
}

static inline uint64_t kv_key_hash(const void *p, size_t n)
{
    return XXH3_64bits(p, n);
}

#endif
