/*
 * pending.h - a transaction's pending writes.
 *
 * Every write gets the next transaction-local sequence number and goes
 * into a private arena skiplist (skiplist.h) as key ++ be64(~seq), so the
 * newest write of a key comes first.  Nothing is ever overwritten:
 * rolling back to a savepoint marks a range of sequence numbers dead, and
 * readers skip dead writes - so savepoints need no undo log.
 *
 * The arena starts small and doubles up to MaxTxnMemory; past that its
 * contents are spilled to disk as a sorted run (an SSTable in Dir, named
 * txn-<pid>-<n>.spill, removed when the transaction ends and by the next
 * open after a crash) and a fresh arena started.  Lookups check the arena,
 * then the runs newest first.  Past KV_PENDING_MAX_RUNS runs, the runs are
 * merged into one (dropping undone writes).
 *
 * Spilling separates values as a commit would (WiscKey): each live value
 * at or above ValueThreshold is appended to the value log once (to the
 * transaction's own files, vlog_bulk.h, whose writes are queued while the
 * transaction goes on), and the run holds only its pointer - so a large transaction writes its values
 * once, not into the run, a merged run and the value log.  From the first
 * such write the owner's snapshot slot pins the value log (GC must not
 * rewrite files whose values no table points to yet); the values become
 * reachable when the commit ingests the runs, and count as discardable in
 * the value log's statistics if the transaction never commits.
 *
 * Once a transaction has spilled, it is a large one, and a large value is
 * placed early: its value-log entry goes straight into the spill chunk
 * (copied once, from the caller's buffer) and the arena keeps only the
 * value struct with a placeholder pointer (file 0, which no value-log
 * file has).  When the chunk is full, and before anything reads the
 * arena or moves it (a lookup that lands on a placeholder, an iterator,
 * kv_pending_each, a spill, a grow), kv_pending_settle appends the chunk
 * and patches the real pointers into the arena in place.
 *
 * Belongs to one transaction (one thread at a time).
 */
#ifndef KV_PENDING_H
#define KV_PENDING_H

#include <stddef.h>
#include <stdint.h>

#include "ikey.h"
#include "iter.h"
#include "kv.h"
#include "skiplist.h"
#include "sst.h"
#include "vlog.h"

typedef struct kv_spill_run {
    char *path;
    kv_file *file;
    const uint8_t *map;
    uint64_t size;
    kv_sst *sst;
} kv_spill_run;

typedef struct kv_seq_range {
    uint64_t lo, hi; /* dead: lo < seq <= hi */
} kv_seq_range;

typedef struct kv_pending {
    struct kv_db *db;
    kv_sl *sl;              /* current arena (malloc'd), NULL before the first write */
    size_t cap, max_mem;
    uint64_t seq;           /* last sequence number given */
    uint64_t writes, bytes; /* writes made (including undone ones), key + value bytes */
    kv_seq_range *dead;
    size_t n_dead, cap_dead;
    kv_spill_run *runs;     /* oldest first */
    size_t n_runs;
    unsigned long run_id;
    /* Open iterators read the arena and runs they were made over: while
     * any is open, a replaced arena or merged-away run is retired here
     * instead of freed. */
    int iters_open;
    kv_sl **retired_sl;
    size_t n_retired_sl;
    kv_spill_run *retired_runs;
    size_t n_retired_runs;
    /* values spilled to the value log */
    int snap_slot;          /* the owner's snapshot slot, which holds the pin */
    uint32_t vlog_pin;      /* lowest value-log file written to (0 = none) */
    struct kv_vbulk *vbulk;  /* the transaction's own value-log files (vlog_bulk.h) */
    struct kv_batch *chunk; /* the spills' value-log batch, kept for its buffers */
    /* early-placed values in chunk, not yet written: where each one's
     * placeholder pointer is in the arena, in chunk order */
    uint8_t **early;
    size_t n_early, cap_early;
} kv_pending;

void kv_pending_init(kv_pending *p, struct kv_db *db, size_t max_mem, int snap_slot);
/* Frees everything; the value-log files of a transaction that did not
 * commit are left for GC to free (kv_vbulk_free). */
void kv_pending_free(kv_pending *p);
/* Appends the large values of chunk (a batch of this transaction's
 * writes) to the value log, pointers patched into its record, before any
 * table points at them: the first call pins the value log for the owner's
 * slot.  The values go to the transaction's own files (vlog_bulk.h,
 * written while it goes on).  Used by spills and by the commit's ingest. */
kv_status kv_pending_write_values(kv_pending *p, struct kv_batch *chunk, kv_err *err);
/* The commit's ingest, after the last kv_pending_write_values and before
 * its tables are installed: the values written are made durable where
 * the tables can point at them (kv_vbulk_commit). */
kv_status kv_pending_values_commit(kv_pending *p, kv_err *err);
/* The commit failed and its tables were certainly not installed. */
void kv_pending_values_unused(kv_pending *p);
/* Writes the early-placed values to the value log and patches their
 * pointers into the arena; after it, no arena entry has a placeholder.
 * kv_pending_iter's callers (kv_iter_new_txn, kv_pending_each) call it
 * first. */
kv_status kv_pending_settle(kv_pending *p, kv_err *err);
/* The owner moved to snapshot slot `slot` (registered, the old one not
 * yet released): the value-log pin moves with it. */
void kv_pending_set_slot(kv_pending *p, int slot);

kv_status kv_pending_put(kv_pending *p, const void *key, size_t klen, uint8_t meta,
                         uint8_t user_meta, uint64_t expires_at, const void *val, size_t vlen,
                         kv_err *err);

/* The newest live write of key made at or before seq_limit: 1 and *vs
 * (pointing into memory that stays valid until the pending store is
 * freed), 0 if none, -1 on error. */
int kv_pending_get(kv_pending *p, const void *key, size_t klen, uint64_t seq_limit,
                   kv_vstruct *vs, kv_err *err);

int kv_pending_dead(const kv_pending *p, uint64_t seq);
/* Undoes every write after mark. */
kv_status kv_pending_rollback(kv_pending *p, uint64_t mark, kv_err *err);

/* 1 if nothing was ever written (or everything was undone and nothing
 * spilled - the cheap test). */
int kv_pending_empty(const kv_pending *p);

/* An iterator over the newest live write of each key, in one direction,
 * with keys presented as key ++ be64(0) - version UINT64_MAX, which no
 * commit ever has, so it sorts before every committed version of the key
 * and the transaction iterator knows it for a pending write. */
kv_iiter *kv_pending_iter(kv_pending *p, int reverse, uint64_t seq_limit);

/* Calls fn for the newest live write of every key, in key order (user
 * key and its decoded value struct); stops at the first error. */
typedef kv_status (*kv_pending_fn)(void *ctx, const uint8_t *key, size_t klen,
                                   const kv_vstruct *vs, kv_err *err);
kv_status kv_pending_each(kv_pending *p, kv_pending_fn fn, void *ctx, kv_err *err);

#define KV_PENDING_VERSION UINT64_MAX
#define KV_PENDING_MAX_RUNS 16

#endif
