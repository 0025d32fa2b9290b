/*
 * db.h - the two halves of an open database.
 *
 * kv_shared is the head of the shared region: everything that every
 * attached process must see.  It holds only offsets (from the region base)
 * and process-shared locks.  Region layout, in order: kv_shared, attach
 * slots, snapshot slots, metadata heap, memtable arenas, block cache.
 *
 * kv_db is one process's handle: where the region is mapped in this
 * process, its env and logger, its lazily opened files and mappings, and,
 * in the host process only, the directory locks, the MANIFEST and the
 * background threads.
 *
 * Lock order (never take an earlier one while holding a later one):
 *   wq.mu  ->  vset.mu  ->  db_mu  ->  heap.mu
 * and the per-process mutexes (tcache, wal) are leaves.
 */
#ifndef KV_DB_H
#define KV_DB_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "block_cache.h"
#include "conflict.h"
#include "env.h"
#include "ikey.h"
#include "kv.h"
#include "memtable.h"
#include "shm_heap.h"
#include "snapshot.h"
#include "sync.h"
#include "table_cache.h"
#include "version.h"
#include "view.h"
#include "vlog.h"
#include "writer.h"

#define KV_REGION_MAGIC 0x3147525045535643ULL /* "CVSEPRG1" */
#define KV_REGION_LAYOUT 1u

enum kv_region_state {
    KV_STATE_EMPTY = 0,
    KV_STATE_OPENING = 1,
    KV_STATE_READY = 2,
    KV_STATE_CLOSING = 3,
    KV_STATE_CLOSED = 4,
    KV_STATE_FAILED = 5
};

/* Counters shared by all processes (relaxed atomics). */
typedef struct kv_shared_stats {
    _Atomic uint64_t writes, write_groups, syncs, bytes_written;
    _Atomic uint64_t memtable_flushes, compactions, compaction_bytes_read,
        compaction_bytes_written;
    _Atomic uint64_t write_stalls, write_stall_micros, l0_stalls;
    _Atomic uint64_t gets, bloom_useful;
} kv_shared_stats;

#define KV_STAT_ADD(db, field, n)                                                             \
    atomic_fetch_add_explicit(&(db)->sh->stats.field, (n), memory_order_relaxed)

typedef struct kv_attach_slot {
    _Atomic int32_t pid; /* 0 = free */
} kv_attach_slot;

typedef struct kv_shared {
    /* Attach protocol: state and generation come first and are only ever
     * accessed atomically; the host formats everything after them, then
     * publishes state READY with release, and attachers read nothing else
     * before they have seen READY with acquire. */
    _Atomic uint32_t state;
    _Atomic uint32_t generation;
    uint64_t magic;
    uint32_t layout;
    int32_t host_pid;
    uint64_t size;
    kv_options opt;                      /* process-local fields cleared */
    char value_dir[KV_PATH_MAX];         /* effective ValueDir */

    /* areas (offsets from the region base) */
    uint64_t attach_off;
    uint32_t n_attach;
    uint32_t n_snaps;
    uint64_t snap_off;
    uint64_t heap_off, heap_size;
    uint64_t arena_off, arena_size;
    uint32_t n_arenas;
    uint32_t pad2;
    uint64_t cache_off, cache_size;

    kv_heap heap;

    /* memtables and the current view (db_mu) */
    kv_mutex db_mu;
    kv_cond flush_cv;                    /* flush thread: work to do */
    kv_cond mem_cv;                      /* writers: a memtable slot freed */
    kv_cond flushed_cv;                  /* waiters for flush completion */
    uint64_t view;
    uint64_t mem;                        /* mutable memtable */
    uint32_t n_imm;                      /* immutable memtables, oldest first */
    uint32_t pad3;
    uint64_t imm[KV_MAX_MEMTABLES];
    uint8_t arena_busy[KV_MAX_MEMTABLES];
    uint64_t flushes_done;
    /* every WAL with an id up to this is deleted (replay can no longer
     * meet its value pointers); frozen once a deletion failed */
    _Atomic uint64_t wal_gone;
    _Atomic uint32_t wal_gone_stuck;
    uint32_t pad4;
    uint64_t host_req;                   /* a kv_host_req for the flush thread (host_req.h) */

    kv_vset vset;
    kv_wq wq;
    kv_bcache bcache;
    kv_snapreg snaps;
    kv_vlog_shared vlog;
    kv_conflict conflict;
    kv_cond vlog_cv;                     /* wakes the value-log GC thread */
    uint64_t next_view_id;               /* views: ids and the list of live ones (db_mu) */
    uint64_t views_head, views_tail;

    _Atomic uint64_t visible_version;    /* newest fully applied commit */

    /* sticky background error: first failure wins */
    kv_mutex err_mu;
    _Atomic int32_t bg_status;
    int32_t bg_errno;
    char bg_msg[KV_ERRMSG_MAX];

    _Atomic uint32_t stopping;           /* host threads must exit */
    kv_shared_stats stats;
} kv_shared;

struct kv_db {
    kv_shared *sh;
    char *base;                          /* where the region is mapped here */
    int is_host;
    int own_region;                      /* kv_open allocated it */
    int own_env;                         /* InMemory: the mem env is ours */
    uint32_t generation;
    int attach_slot;                     /* -1 for the host */
    kv_env *env;
    kv_log_fn log_fn;
    void *log_ctx;
    kv_log_level log_level;
    const kv_options *opt;               /* &sh->opt */
    char dir[KV_PATH_MAX];
    char vdir[KV_PATH_MAX];

    kv_tcache tcache;                    /* this process's open tables */
    kv_vcache vcache;                    /* this process's mapped value logs */
    kv_block_cache_ops cache_ops;

    /* this process's handle on the current WAL (used when it leads) */
    pthread_mutex_t wal_mu;
    uint64_t wal_id;
    kv_file *wal_file;

    /* host only */
    kv_file *dir_lock, *vdir_lock;
    kv_file *manifest;
    uint64_t manifest_size, manifest_creations, manifest_deletions;
    pthread_t flush_thread;
    int flush_started;
    pthread_t compactors[64];
    int n_compactors;
    pthread_t gc_thread;
    int gc_started;
    uint64_t discard_persisted;          /* discard_version last written to DISCARD */
    int vlog_recount;                    /* DISCARD was not left by a clean close:
                                          * the GC thread counts again (host) */
    struct kv_compact_state *cstate;
};

static inline void *kv_at(kv_db *db, uint64_t off)
{
    return off ? (void *)(db->base + off) : NULL;
}

static inline uint64_t kv_off_of(kv_db *db, const void *p)
{
    return p ? (uint64_t)((const char *)p - db->base) : 0;
}

static inline kv_table_meta *kv_tm_at(kv_db *db, uint64_t off)
{
    return (kv_table_meta *)kv_at(db, off);
}

static inline kv_version *kv_ver_at(kv_db *db, uint64_t off)
{
    return (kv_version *)kv_at(db, off);
}

static inline kv_memtable *kv_mt_at(kv_db *db, uint64_t off)
{
    return (kv_memtable *)kv_at(db, off);
}

static inline kv_table_meta *kv_ver_table(kv_db *db, const kv_version *v, int level, uint32_t i)
{
    return kv_tm_at(db, v->tables[v->start[level] + i]);
}

static inline uint64_t kv_heap_alloc_db(kv_db *db, size_t n)
{
    return kv_heap_alloc(&db->sh->heap, db->base, n);
}

static inline void kv_heap_free_db(kv_db *db, uint64_t off)
{
    kv_heap_free(&db->sh->heap, db->base, off);
}

/* Logging through the process's callback. */
void kv_log(kv_db *db, kv_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Records the first background error (sticky) and logs it. */
void kv_set_bg_error(kv_db *db, const kv_err *err);
/* KV_OK, or the sticky error copied into err. */
kv_status kv_check_bg_error(kv_db *db, kv_err *err);

/* 0 once a background error is set: after a failed manifest write the
 * file may or may not list a table, so no table file may be deleted until
 * the next open sorts it out (it removes what the manifest does not list). */
static inline int kv_may_delete_tables(kv_db *db)
{
    return atomic_load_explicit(&db->sh->bg_status, memory_order_acquire) == KV_OK;
}

/* Path of file id with suffix ("sst", "mem") in dir. */
void kv_file_path(char *out, size_t cap, const char *dir, uint64_t id, const char *suffix);

/* The newest committed entry of key (tombstones included): its value
 * struct (value bytes not kept; a value pointer copied to ptr) and
 * version.  *found = 0 if the key never existed or was compacted away. */
/* vs's value bytes into out: inline ones copied, a value pointer's read
 * from the value log. */
kv_status kv_read_value(kv_db *db, const kv_vstruct *vs, kv_buf *out, kv_err *err);
kv_status kv_lookup_newest(kv_db *db, const void *key, size_t klen, kv_vstruct *vs, uint8_t *ptr,
                           uint64_t *version, int *found, kv_err *err);
/* 0 with *p set if the iterator's current value is a value pointer. */
int kv_iter_vptr(const kv_iter *it, kv_vptr *p);

/* A snapshot at version (0: the newest), which must be registered already
 * (a transaction's) or not older than the read horizon. */
kv_status kv_snapshot_acquire_at(kv_db *db, uint64_t version, kv_snapshot **snap, kv_err *err);

struct kv_pending;
/* An iterator at `version` (0: latest) that also sees a transaction's
 * pending writes with sequence numbers <= pending_seq (settled first,
 * kv_pending_settle) and reports every key it returns to on_key. */
kv_status kv_iter_new_txn(kv_db *db, const kv_iter_options *io, uint64_t version,
                          struct kv_pending *pending, uint64_t pending_seq,
                          void (*on_key)(void *ctx, const uint8_t *key, size_t n), void *ctx,
                          kv_iter **out, kv_err *err);

/* KV_CLOSED if the region is not usable (host gone, or it was reopened
 * since this process attached). */
kv_status kv_check_usable(kv_db *db, kv_err *err);

#endif
