/*
 * writer.h - the group-commit writer queue (LevelDB's writers_ queue,
 * Badger's doWrites), shared by all processes.
 *
 * kv_write() assigns the batch its version under wq.mu.  If nobody is
 * leading and nothing is queued, the caller leads at once with its own
 * record.  Otherwise it copies its encoded record into the shared heap
 * ("staging"), queues it and sleeps; the current leader, in whatever
 * process, takes every staged record queued behind it (in version order),
 * writes them to the WAL with one pwritev, fsyncs once if any asked for
 * sync, inserts them into the memtable, publishes the new visible version
 * and wakes their writers.  A record too big to stage stays in its owner's
 * memory and only its owner writes it (leaders stop their group in front
 * of it).
 *
 * Invariants:
 *  1. At most one leader at a time (wq.leader_active).
 *  2. Versions are assigned in queue order, and groups apply in that
 *     order, so visible_version only moves forward and every version
 *     <= visible_version is fully in a memtable.
 *  3. A batch's WAL record is written before any of it is in a memtable.
 */
#ifndef KV_WRITER_H
#define KV_WRITER_H

#include <stdint.h>

#include "kv.h"
#include "sync.h"

typedef struct kv_wq_item {
    uint64_t next;            /* next queued item (offset) */
    uint64_t rec;             /* staged record (offset), 0 = owner's private */
    uint64_t rec_len;
    uint64_t mem_cost;
    uint64_t version;
    int32_t status;           /* set by the leader when done */
    int32_t sys_errno;
    uint32_t done;
    uint8_t sync;
    uint8_t rotate;           /* kv_flush: rotate the memtable after this */
    uint8_t pad[2];
} kv_wq_item;

typedef struct kv_wq {
    kv_mutex mu;
    kv_cond cv;
    uint64_t head, tail;      /* queued items (offsets) */
    uint32_t leader_active;
    uint32_t pad;
    uint64_t last_version;    /* last version assigned */
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

#endif
