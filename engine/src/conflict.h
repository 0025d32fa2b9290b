/*
 * conflict.h - conflict detection for transactions, in the shared region.
 *
 * For each recently written key the table remembers the newest commit
 * version that wrote it, by fingerprint (the key's 64-bit hash): a bucket
 * per hash value with four (fingerprint, version) slots.  A transaction
 * that read keys at read version R conflicts if any of them was written by
 * a commit newer than R.  When a slot must be reused its version becomes
 * the bucket's floor, and a reader older than a floor conflicts on any key
 * of that bucket - so forgetting is conservative (a spurious conflict,
 * never a missed one).  A transaction too large to remember key by key
 * raises the global floor instead.
 *
 * Check and record happen together, under the writer queue's mutex, at
 * the moment the commit gets its version: the serialisation point.
 */
#ifndef KV_CONFLICT_H
#define KV_CONFLICT_H

#include <stdint.h>

#define KV_CONFLICT_SLOTS 4

typedef struct kv_cbucket {
    uint32_t fp[KV_CONFLICT_SLOTS];
    uint64_t ts[KV_CONFLICT_SLOTS];
    uint64_t floor;
    uint64_t pad;
} kv_cbucket;

typedef struct kv_conflict {
    uint64_t buckets;       /* region offset of kv_cbucket[n] */
    uint32_t n;             /* power of two */
    uint32_t pad;
    uint64_t global_floor;  /* conflicts for every reader older than this */
    uint64_t checks, conflicts;
} kv_conflict;

struct kv_db;

/* Bytes of region for a table of about `bytes` (0 = default). */
uint64_t kv_conflict_region_size(int64_t bytes);
void kv_conflict_init(kv_conflict *c, char *base, uint64_t off, uint64_t size);

/* The keys a transaction read, in segments: reads [previous end, end)
 * were read at read_ts (a READ COMMITTED transaction takes a newer
 * snapshot per statement). */
typedef struct kv_read_seg {
    uint32_t end;
    uint32_t pad;
    uint64_t read_ts;
} kv_read_seg;

/* 1 if a key with one of the read hashes was written after the read
 * version of its segment.  REQUIRES wq.mu. */
int kv_conflict_check(struct kv_db *db, const uint64_t *reads, const kv_read_seg *segs,
                      uint32_t n_segs);
/* Records that a commit at version ts wrote keys with these hashes.
 * REQUIRES wq.mu. */
void kv_conflict_record(struct kv_db *db, const uint64_t *writes, uint32_t n, uint64_t ts);

#endif
