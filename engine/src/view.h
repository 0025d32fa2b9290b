/*
 * view.h - what a reader pins: the memtables (mutable first, then the
 * immutable ones newest to oldest) and the table version current at one
 * moment (RocksDB calls it a SuperVersion).
 *
 * A view is immutable once published and reference counted in the shared
 * heap; the region always holds one reference on the current view.
 * Pinning takes db_mu briefly; unpinning is lock-free unless it drops the
 * last reference.  For one user key, sources in view order hold newer
 * versions first (invariant kept by rotation, flush and compaction), so a
 * point read can stop at the first source that has the key.
 */
#ifndef KV_VIEW_H
#define KV_VIEW_H

#include <stdatomic.h>
#include <stdint.h>

#include "kv.h"

#define KV_MAX_MEMTABLES 66 /* NumMemtables (<= 64) + mutable + one spare */

typedef struct kv_view {
    _Atomic uint32_t refs;
    uint32_t n_mem;
    uint64_t version;                  /* kv_version offset */
    uint64_t id;                       /* increasing; live views are listed oldest first */
    uint64_t prev, next;               /* the list of live views (db_mu) */
    uint64_t mems[KV_MAX_MEMTABLES];   /* kv_memtable offsets */
} kv_view;

struct kv_db;

/* Builds a view of the current memtables (sh->mem, sh->imm) and version
 * and makes it current.  REQUIRES db_mu held.  Returns the previous view,
 * which the caller must kv_view_unpin() after dropping db_mu (0 if none). */
kv_status kv_view_install(struct kv_db *db, kv_view **old, kv_err *err);

kv_view *kv_view_pin(struct kv_db *db);
/* Pins the current view and, if visible is non-NULL, reads the visible
 * version in the same critical section (see read.c). */
kv_view *kv_view_pin_read(struct kv_db *db, uint64_t *visible);
/* REQUIRES: db_mu not held (the last unpin unlinks the view under it). */
void kv_view_unpin(struct kv_db *db, kv_view *v);

/* Id of the oldest live view (REQUIRES db_mu).  Value-log files doomed
 * while view W was current may go once the oldest live view is newer
 * than W: every reader that could have read an old pointer is done. */
uint64_t kv_view_oldest_id(struct kv_db *db);
/* Id of the current view (REQUIRES db_mu). */
uint64_t kv_view_current_id(struct kv_db *db);

#endif
