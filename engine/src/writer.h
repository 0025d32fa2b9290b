/*
 * writer.h - the group-commit writer queue (LevelDB's writers_ queue,
 * Badger's doWrites), shared by all processes.
 *
 * kv_write() assigns the batch its version under wq.mu.  If nobody is
 * leading and nothing is queued, the caller leads at once with its own
 * batch.  Otherwise it copies its batch image (record and value-log
 * entries) into the shared heap ("staging"), queues it and sleeps; the
 * current leader, in whatever process, takes every staged batch queued
 * behind it (in version order), appends their value-log entries to the
 * vlog head and patches the pointers, writes the records to the WAL with
 * one pwritev, fsyncs once if any asked for sync (vlog first), inserts
 * them into the memtable, publishes the new visible version and wakes
 * their writers, each by its own wake word (sync.h); a leader stepping
 * down wakes the writer then first in the queue, to lead.  A batch too
 * big to stage stays in its owner's memory and only its owner writes it
 * (leaders stop their group in front of it).
 * A conditional batch (batch.h) is always a group of its own, so its
 * conditions are checked against every earlier commit.
 *
 * Invariants:
 *  1. At most one leader at a time (wq.leader_active).
 *  2. Versions are assigned in queue order, and groups apply in that
 *     order, so visible_version only moves forward and every version
 *     <= visible_version is fully in a memtable.
 *  3. A batch's vlog entries are written before its WAL record, and its
 *     WAL record before any of it is in a memtable.
 *  4. A synced group with few value-log bytes (SYNC_INLINE_MAX) writes
 *     its records to the WAL with those values inline and does not sync
 *     the value log: one fsync, not two.  The memtable still gets the
 *     pointers (the vlog entries are written as usual); the flush syncs
 *     the value log before the table is installed (vlog.h rule 3).
 */
#ifndef KV_WRITER_H
#define KV_WRITER_H

#include <stdint.h>

#include "kv.h"
#include "sync.h"
#include "vlog_format.h"

#define KV_WQ_ROTATE_MEM 0x1u  /* kv_flush: rotate the memtable after this */
#define KV_WQ_ROTATE_VLOG 0x2u /* value-log GC: seal the vlog head */
#define KV_WQ_INGEST 0x8u      /* a transaction committed by ingesting tables */
#define KV_WQ_DROP 0x10u       /* a dropped range (drops.h) */

/* A queued write.  A staged item is followed in the same heap allocation
 * by its batch image: record, vlog entries, pointer triples, conditions. */
typedef struct kv_wq_item {
    uint64_t next;            /* next queued item (offset) */
    uint64_t version;
    uint64_t mem_cost;
    uint64_t rec_len, vlen;   /* image parts */
    uint32_t n_ptrs, n_conds;
    uint32_t staged;          /* the image follows; 0 = in its owner's memory */
    uint32_t done;
    int32_t status;           /* set by the leader when done */
    int32_t sys_errno;
    uint8_t sync;
    uint8_t flags;            /* KV_WQ_* */
    uint8_t pad[2];
    _Atomic uint32_t wake;    /* its writer sleeps on this (sync.h) */
    kv_vkeys vkeys;           /* of the image's vlog entries */
} kv_wq_item;

typedef struct kv_wq {
    kv_mutex mu;
    kv_cond cv;               /* kv_close's drain */
    uint64_t head, tail;      /* queued items (offsets) */
    uint32_t leader_active;
    uint32_t last_sync_group; /* items in the last synced group (gathering) */
    uint64_t last_version;    /* last version assigned */
    /* leader only: WAL records written since the value logs were last
     * synced by a leader may point into unsynced vlog bytes, so the next
     * synced group must sync the value logs (1 at open: unknown) */
    uint32_t vlog_unsynced_ptrs;
} kv_wq;

struct kv_db;

/* Creates the WAL file for memtable id and makes it this process's
 * current WAL handle. */
kv_status kv_writer_create_wal(struct kv_db *db, uint64_t id, kv_err *err);

/* Closes this process's WAL handle. */
void kv_writer_close_wal(struct kv_db *db);

/* Makes sure the mutable memtable has room for `cost` arena bytes,
 * rotating (and stalling while NumMemtables are waiting) as needed.
 * REQUIRES: caller is the leader (or the opener before threads run). */
kv_status kv_writer_make_room(struct kv_db *db, uint64_t cost, kv_err *err);

/* Rotates the mutable memtable if it is not empty (kv_flush). */
kv_status kv_writer_rotate(struct kv_db *db, kv_err *err);
/* Queues a memtable rotation behind the writes before it and returns once
 * it is done; the flush thread flushes the old memtable (not waited for). */
kv_status kv_writer_rotate_mem(struct kv_db *db, kv_err *err);

/* Seals the value-log head, through the queue (any process). */
kv_status kv_writer_rotate_vlog(struct kv_db *db, kv_err *err);

struct kv_batch;

/* Commits an ingest (KV_WQ_INGEST, kv_ingest_apply) or a drop
 * (KV_WQ_DROP, kv_drop_apply): queued like a write, conflict-checked and
 * recorded with the transaction fields of txn (a batch with no entries),
 * given a version and, once leader, run alone; then the version is
 * published. */
kv_status kv_writer_special(struct kv_db *db, int flag, void *arg, struct kv_batch *txn,
                            uint64_t *version_out, kv_err *err);

/* Waits until every memtable that is immutable now has been flushed. */
kv_status kv_writer_wait_flushes(struct kv_db *db, kv_err *err);

/* Makes every write so far durable: value logs, every WAL.  Leader only. */
kv_status kv_writer_sync_all(struct kv_db *db, kv_err *err);

#endif
