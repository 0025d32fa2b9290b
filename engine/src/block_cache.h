/*
 * block_cache.h - the shared cache of decompressed SSTable blocks.
 *
 * Lives in the shared region so every process benefits from blocks any
 * process decompressed.  Fixed-size slots (blocks larger than a slot are
 * not cached); a hash table from (table id, block offset) to slot; and a
 * segmented LRU for scan resistance: a new block enters the probationary
 * segment and is promoted to the protected segment (80% of the slots) only
 * on a second hit, so one large scan churns probation and cannot flush the
 * hot set.  Readers pin a slot while they use its bytes; pinned slots are
 * never evicted.  One mutex guards the index and lists; data copies into
 * a slot happen under it, reads of pinned data do not take it.
 */
#ifndef KV_BLOCK_CACHE_H
#define KV_BLOCK_CACHE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "sst.h"
#include "sync.h"

typedef struct kv_bcache {
    kv_mutex mu;
    uint64_t meta_off;        /* slot descriptors */
    uint64_t bucket_off;      /* u32 hash heads */
    uint64_t data_off;        /* slot bytes */
    uint32_t n_slots, n_buckets, slot_size;
    uint32_t protected_max;
    uint32_t lru_head[2], lru_tail[2]; /* [0] probation, [1] protected; index+1, 0 = none */
    uint32_t seg_count[2];
    uint32_t free_head;       /* index+1 */
    _Atomic uint64_t hits, misses, inserts, evictions, rejects;
} kv_bcache;

/* Bytes of region a cache of `bytes` capacity with block_size needs. */
uint64_t kv_bcache_region_size(int64_t bytes, int block_size);
/* Formats the cache over [off, off+size) of the region at base. */
void kv_bcache_init(kv_bcache *c, char *base, uint64_t off, uint64_t size, int block_size);

/* The kv_block_cache_ops for this process's mapping (ctx = the kv_db). */
void kv_bcache_ops(struct kv_db *db, kv_block_cache_ops *ops);

#endif
