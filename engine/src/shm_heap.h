/*
 * shm_heap.h - a general-purpose allocator for the shared region's
 * metadata (memtable descriptors, versions, table descriptors, staged
 * write batches, committed-transaction records...).
 *
 * Chunks are addressed by offsets from the region base, so allocations are
 * valid in every attached process.  Boundary-tag chunks with segregated
 * free lists (one per power-of-two size class), first fit within a class,
 * immediate coalescing on free.  One process-shared mutex; allocation is
 * O(number of classes) plus a short in-class scan.
 *
 * Invariants:
 *  1. Chunks tile [start, end) exactly; sizes are multiples of 16.
 *  2. No two free chunks are adjacent (freed chunks coalesce).
 *  3. A free chunk is on exactly the list of its size class.
 */
#ifndef KV_SHM_HEAP_H
#define KV_SHM_HEAP_H

#include <stddef.h>
#include <stdint.h>

#include "sync.h"

#define KV_HEAP_CLASSES 48

typedef struct kv_heap {
    kv_mutex mu;
    uint64_t start, end;               /* region offsets of the chunk area */
    uint64_t bins[KV_HEAP_CLASSES];    /* free-list heads (region offsets) */
    uint64_t used_bytes, peak_bytes;   /* bytes of allocated chunks (headers included) */
    uint64_t allocs, frees, failures;
} kv_heap;

/* Formats [start, start+size) of the region at base as an empty heap. */
void kv_heap_init(kv_heap *h, char *base, uint64_t start, uint64_t size);

/* Returns the region offset of n zeroed bytes (16-aligned), or 0 if the
 * heap is exhausted. */
uint64_t kv_heap_alloc(kv_heap *h, char *base, size_t n);
void kv_heap_free(kv_heap *h, char *base, uint64_t off);

/* Checks the invariants (tests); returns 0 if consistent. */
int kv_heap_check(kv_heap *h, char *base);

#endif
