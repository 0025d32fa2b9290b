/*
 * batch.h - kv_batch internals.
 *
 * A batch is one WAL record under construction (wal.h): header space,
 * payload header, then entries, plus - for values at or above the batch's
 * value threshold - their value-log entries, already framed, in a second
 * buffer.  Such a value's entry in the record carries a placeholder value
 * pointer that the leader patches once it knows where the vlog entries
 * land.  The writer seals the record and writes both buffers without
 * re-encoding anything.
 *
 * Conditions (kv_batch_require_version) make a batch conditional: it is
 * applied only if, for each condition, the newest committed version of
 * the entry's key is the one given; otherwise nothing is applied and the
 * write returns KV_CONFLICT.  Value-log GC uses them.
 */
#ifndef KV_BATCH_H
#define KV_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "kv.h"
#include "vlog_format.h"

typedef struct kv_batch_cond {
    uint32_t key_off;   /* key bytes in buf */
    uint32_t klen;
    uint64_t version;   /* required newest version */
} kv_batch_cond;

struct kv_batch {
    uint8_t *buf;             /* the WAL record */
    size_t len, cap;
    uint8_t *vbuf;            /* framed value-log entries */
    size_t vlen, vcap;
    kv_vkeys vkeys;           /* of the entries in vbuf (a drop frees files by them) */
    uint32_t *ptrs;           /* triples: record offset of a pointer, vbuf offset, frame length */
    uint32_t n_ptrs, cap_ptrs;
    kv_batch_cond *conds;
    uint32_t n_conds, cap_conds;
    uint32_t count;
    uint32_t last_key_off, last_klen; /* the most recently added entry's key */
    uint64_t mem_cost;        /* upper bound of memtable arena bytes to apply it */
    uint64_t data_bytes;      /* key + value bytes */
    uint64_t threshold;       /* values at least this long go to the value log */
    uint64_t max_inline;      /* longest value kept inline (+1; 0 = none) */
    /* a transaction's commit: conflict-checked when it gets its version
     * (in the committing process, under wq.mu; never staged) */
    const uint64_t *txn_reads, *txn_writes;
    const struct kv_read_seg *txn_segs; /* conflict.h */
    uint32_t n_txn_segs, n_txn_writes;
    int txn;
    uint8_t flags;            /* KV_WAL_F_* */
};

/* Appends an entry. */
kv_status kv_batch_add(kv_batch *b, const void *key, size_t klen, uint8_t meta,
                       uint8_t user_meta, uint64_t expires_at, const void *val, size_t vlen,
                       kv_err *err);

/* Makes the batch conditional on the newest version of the key of the
 * entry added last. */
kv_status kv_batch_require_version(kv_batch *b, uint64_t version, kv_err *err);

/* Decodes entry i of src (its value from the vlog buffer if it is there)
 * and adds it to dst (with dst's threshold). */
kv_status kv_batch_copy_entry(kv_batch *dst, const kv_batch *src, uint32_t i, kv_err *err);

/* A copy of src with values placed by threshold (NULL on OOM). */
kv_batch *kv_batch_rebuild(const kv_batch *src, uint64_t threshold, kv_err *err);

/* The record rec[0..rec_len) with its placed values (ptrs: triples as in
 * kv_batch, their framed entries in vbuf) written back inline: the WAL
 * form of a record that replays without the value log.  Header and flags
 * are copied, not sealed.  out must hold kv_record_inline_bound() bytes;
 * returns the new record's length, 0 if rec is malformed. */
size_t kv_record_inline_bound(size_t rec_len, size_t vlen, uint32_t n_ptrs);
size_t kv_record_inline(const uint8_t *rec, size_t rec_len, const uint8_t *vbuf,
                        const uint32_t *ptrs, uint32_t n_ptrs, uint8_t *out);

/* Iterates the entries of a batch: key, meta, user meta, expires and the
 * value (resolved from the vlog buffer when it was moved there; a value
 * pointer the batch was given stays one, with KV_META_VALUE_PTR). */
typedef struct kv_batch_entry {
    const uint8_t *key;
    size_t klen;
    uint8_t meta, user_meta;
    uint64_t expires_at;
    const uint8_t *value;
    size_t vlen;
} kv_batch_entry;
int kv_batch_get_entry(const kv_batch *b, uint32_t i, kv_batch_entry *e);

#endif
