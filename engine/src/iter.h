/*
 * iter.h - internal iterators over internal keys, and the k-way merge.
 *
 * Every source (a memtable, one table, one level >= 1 as a concatenation
 * of its tables) is a kv_iiter with both directions; the merge combines
 * sources in one fixed direction.  For equal internal keys the source
 * listed first (the newer one) comes first in either direction, so the
 * layer above can keep the first and drop duplicates.
 *
 * Thread safety: an iterator belongs to one thread.  Sources do not pin
 * anything themselves: the caller keeps the view (memtables, version) that
 * they read pinned for their lifetime.
 */
#ifndef KV_ITER_H
#define KV_ITER_H

#include <stddef.h>
#include <stdint.h>

#include "kv.h"
#include "skiplist.h"
#include "sst.h"

typedef struct kv_iiter kv_iiter;

typedef struct kv_iiter_vt {
    void (*first)(kv_iiter *it);
    void (*last)(kv_iiter *it);
    void (*seek)(kv_iiter *it, const uint8_t *ikey, size_t n);          /* >= */
    void (*seek_for_prev)(kv_iiter *it, const uint8_t *ikey, size_t n); /* <= */
    void (*next)(kv_iiter *it);
    void (*prev)(kv_iiter *it);
    int (*valid)(const kv_iiter *it);
    const uint8_t *(*key)(const kv_iiter *it, size_t *n);
    const uint8_t *(*value)(const kv_iiter *it, size_t *n);
    kv_status (*status)(const kv_iiter *it, kv_err *err);
    void (*destroy)(kv_iiter *it);
} kv_iiter_vt;

struct kv_iiter {
    const kv_iiter_vt *vt;
};

struct kv_db;
struct kv_memtable;
struct kv_version;
struct kv_table_meta;

/* A memtable source. */
kv_iiter *kv_iiter_mem(struct kv_db *db, const struct kv_memtable *mt);

/* Any arena skiplist (a transaction's pending writes). */
kv_iiter *kv_iiter_sl(const kv_sl *sl);

/* An open table outside any version (a transaction's spilled run). */
kv_iiter *kv_iiter_sst(const kv_sst *t);

/* One table; opens it through the table cache (errors surface as status). */
kv_iiter *kv_iiter_table(struct kv_db *db, const struct kv_table_meta *tm,
                         const kv_sst_read_opts *ro);

/* All tables of one level >= 1 of v, opened lazily. */
kv_iiter *kv_iiter_level(struct kv_db *db, const struct kv_version *v, int level,
                         const kv_sst_read_opts *ro);

/* Merge of n sources (takes ownership) in one direction.  Positioning:
 * kv_merge_rewind (first or last), kv_merge_seek (seek or seek_for_prev),
 * kv_merge_next (next in that direction). */
typedef struct kv_merge kv_merge;
kv_merge *kv_merge_new(kv_iiter **children, int n, int reverse);
void kv_merge_free(kv_merge *m);
void kv_merge_rewind(kv_merge *m);
void kv_merge_seek(kv_merge *m, const uint8_t *ikey, size_t n);
void kv_merge_next(kv_merge *m);
int kv_merge_valid(const kv_merge *m);
const uint8_t *kv_merge_key(const kv_merge *m, size_t *n);
const uint8_t *kv_merge_value(const kv_merge *m, size_t *n);
/* The first error of any child. */
kv_status kv_merge_status(const kv_merge *m, kv_err *err);
/* The merge as a source (takes ownership; one direction: first/last both
 * rewind, next/prev both advance). */
kv_iiter *kv_merge_iiter(kv_merge *m);

#endif
