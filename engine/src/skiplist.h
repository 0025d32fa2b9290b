/*
 * skiplist.h - the memtable's ordered index: an arena skiplist in the
 * shared region (as Badger's skl).
 *
 * A kv_sl sits at the start of a fixed-size arena; nodes are
 * bump-allocated upwards after it and keys and value structs downwards
 * from the arena's end, never freed individually (the whole arena is
 * recycled when the memtable is gone).  Every reference is a 32-bit offset
 * from the kv_sl itself, so the list works wherever each process maps the
 * region.
 *
 * Thread safety: ONE writer at a time (the group-commit leader, whatever
 * process it is in; writers are serialised by the write queue, which also
 * provides the happens-before between successive writers).  Any number of
 * readers, in any process, run lock-free concurrently with the writer.
 *
 * Invariants:
 *  1. Nodes are only ever added, never unlinked or moved.
 *  2. A node is fully written (key, value, its own tower) before the
 *     release-store that links it into level 0; upper levels are linked
 *     afterwards, bottom-up.  So a reader that reaches a node sees it whole.
 *  3. A node's value field changes only by an atomic store of a new
 *     (offset, length) pair of an already-written value struct.
 *  4. Keys are internal keys ordered by kv_ikey_cmp; at most one node per
 *     distinct internal key (re-putting a key replaces its value).
 */
#ifndef KV_SKIPLIST_H
#define KV_SKIPLIST_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define KV_SL_MAX_HEIGHT 20

typedef struct kv_sl {
    uint64_t cap;               /* bytes of the arena, this header included */
    _Atomic uint64_t used;      /* bytes allocated (nodes + data), for kv_sl_used */
    uint64_t node_top;          /* writer-only: nodes grow up from here */
    uint64_t data_bottom;       /* writer-only: keys and values grow down to here */
    _Atomic uint32_t height;    /* current list height (1..MAX) */
    uint32_t head;              /* offset of the head node */
    uint64_t rng;               /* writer-only random state */
    _Atomic uint64_t count;     /* nodes inserted */
    _Atomic uint64_t data_bytes;/* key + value bytes inserted */
    uint32_t bloom;             /* offset of the user-key bloom filter */
    uint32_t bloom_bits;        /* its size in bits (a power of two) */
    /* writer-only finger (last insert's predecessors) */
    uint32_t finger[KV_SL_MAX_HEIGHT];
    uint32_t finger_valid;
} kv_sl;

/* Upper bound of arena bytes one put of these sizes consumes. */
size_t kv_sl_put_cost(size_t klen, size_t vlen);

/* Formats an empty list in mem[0..cap).  cap must be >= 4 KiB and < 4 GiB. */
kv_sl *kv_sl_init(void *mem, uint64_t cap, uint64_t seed);

/* Inserts or replaces.  Returns 0, or -1 if the arena has no room (nothing
 * changed).  REQUIRES: caller is the single writer. */
int kv_sl_put(kv_sl *sl, const uint8_t *ikey, size_t klen, const uint8_t *vs, size_t vlen);
/* kv_sl_put that also gives where the value's bytes now are in the arena
 * (*stored), for a writer that patches them in place later. */
int kv_sl_put_ref(kv_sl *sl, const uint8_t *ikey, size_t klen, const uint8_t *vs, size_t vlen,
                  uint8_t **stored);

/* 0 if no entry of this user key was ever inserted (bloom filter over the
 * user keys, set before a node is linked, so a reader that can see an
 * entry also sees its bits).  hash = kv_key_hash(user key). */
int kv_sl_may_contain(const kv_sl *sl, uint64_t hash);

/* Bytes of arena in use. */
static inline uint64_t kv_sl_used(const kv_sl *sl)
{
    return atomic_load_explicit(&((kv_sl *)sl)->used, memory_order_acquire);
}

static inline int kv_sl_empty(const kv_sl *sl)
{
    return atomic_load_explicit(&((kv_sl *)sl)->count, memory_order_acquire) == 0;
}

/* Lock-free iterator.  node == 0 means not positioned. */
typedef struct kv_sl_iter {
    const kv_sl *sl;
    uint32_t node;
} kv_sl_iter;

void kv_sl_iter_init(kv_sl_iter *it, const kv_sl *sl);
static inline int kv_sl_iter_valid(const kv_sl_iter *it)
{
    return it->node != 0;
}
void kv_sl_iter_first(kv_sl_iter *it);
void kv_sl_iter_last(kv_sl_iter *it);
void kv_sl_iter_seek(kv_sl_iter *it, const uint8_t *ikey, size_t n);          /* >= */
void kv_sl_iter_seek_for_prev(kv_sl_iter *it, const uint8_t *ikey, size_t n); /* <= */
void kv_sl_iter_next(kv_sl_iter *it);
void kv_sl_iter_prev(kv_sl_iter *it);
const uint8_t *kv_sl_iter_key(const kv_sl_iter *it, size_t *n);
const uint8_t *kv_sl_iter_value(const kv_sl_iter *it, size_t *n);

#endif
