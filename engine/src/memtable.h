/*
 * memtable.h - memtables: a skiplist in one of the region's arena slots
 * plus, unless in-memory, its write-ahead log NNNNNN.mem.
 *
 * The descriptor lives in the shared heap and is reference counted: the
 * current view holds one reference per memtable it lists, readers hold
 * views.  When the last reference goes (the memtable was flushed and no
 * reader can reach it) the arena slot is recycled.
 *
 * Lifecycle: mutable (receives the leader's inserts) -> immutable (waiting
 * for the flush thread) -> flushed (its table is in the manifest, its WAL
 * deleted) -> freed.
 */
#ifndef KV_MEMTABLE_H
#define KV_MEMTABLE_H

#include <stdatomic.h>
#include <stdint.h>

#include "ikey.h"
#include "kv.h"
#include "skiplist.h"

#define KV_MT_IMMUTABLE 0x1u
#define KV_MT_FLUSHED 0x2u

typedef struct kv_memtable {
    _Atomic uint32_t refs;
    _Atomic uint32_t flags;
    uint32_t slot;              /* arena slot index */
    uint32_t dir_synced;        /* the WAL's directory entry is durable; leader only */
    uint32_t has_vptrs;         /* holds value pointers: sync the vlog before flushing */
    uint32_t pad3;
    uint64_t id;                /* file id of its WAL (0 if none) */
    uint64_t wal_size;          /* bytes of WAL written; leader only */
    uint64_t wal_synced;        /* bytes of WAL known durable; leader only */
    uint64_t wal_zeroed;        /* WAL bytes zero-filled ahead of the records; leader only */
    _Atomic uint32_t wal_durable; /* immutable and its whole WAL is synced */
    uint32_t pad2;
    _Atomic uint64_t max_version;
    _Atomic uint64_t min_version;
} kv_memtable;

struct kv_db;

/* The skiplist of a memtable. */
kv_sl *kv_mt_sl(struct kv_db *db, const kv_memtable *mt);

/* Allocates a memtable in a free arena slot (caller holds db_mu and has
 * checked that a slot is free).  id is its WAL file id (0 = none). */
kv_status kv_mt_create(struct kv_db *db, uint64_t id, kv_memtable **out, kv_err *err);

/* 1 if an arena slot is free (caller holds db_mu). */
int kv_mt_slot_available(struct kv_db *db);

void kv_mt_ref(kv_memtable *mt);
/* Drops a reference; the last one frees the slot and descriptor.
 * REQUIRES: caller does not hold db_mu. */
void kv_mt_unref(struct kv_db *db, kv_memtable *mt);

/* Inserts every entry of a WAL record payload with the given version.
 * KV_CORRUPTION if the payload is malformed, KV_NO_SPACE if the arena is
 * full.  REQUIRES: the caller is the single writer of mt. */
kv_status kv_mt_apply(struct kv_db *db, kv_memtable *mt, const uint8_t *payload, size_t n,
                      uint64_t version, kv_err *err);

/* Newest entry of ukey with version <= read_version: 1 and *vs, *version
 * filled, or 0. */
int kv_mt_get(struct kv_db *db, const kv_memtable *mt, const uint8_t *ukey, size_t n,
              uint64_t read_version, kv_vstruct *vs, uint64_t *version);

/* Arena bytes in use / capacity. */
uint64_t kv_mt_used(struct kv_db *db, const kv_memtable *mt);

#endif
