/*
 * snapshot.h - the registry of active read versions (Badger's readMark).
 *
 * A fixed array of slots in the shared region; a reader that needs a
 * version to stay readable for a while (a kv_snapshot, an iterator, a
 * transaction) claims a slot.  Compaction keeps every version that some
 * registered reader can see: its horizon is the minimum of the registered
 * versions and the visible version, computed under the same mutex that
 * registration takes, so a reader registering concurrently always gets a
 * version >= the horizon.  Slots of dead processes are reclaimed.
 */
#ifndef KV_SNAPSHOT_H
#define KV_SNAPSHOT_H

#include <stdatomic.h>
#include <stdint.h>

#include "kv.h"
#include "sync.h"

typedef struct kv_snap_slot {
    _Atomic uint64_t version; /* registered version + 1; 0 = free */
    _Atomic int32_t pid;
    /* a large transaction writing values for its ingest: value-log files
     * from this id on must not be rewritten by GC (0 = none) */
    _Atomic uint32_t vlog_pin;
} kv_snap_slot;

typedef struct kv_snapreg {
    kv_mutex mu;
    uint32_t hint;            /* where to start looking for a free slot */
    uint32_t in_use;
} kv_snapreg;

struct kv_db;

/* Registers the current visible version (or `version` if non-zero; it
 * must be >= the horizon, e.g. one already registered).  Returns the slot
 * index in *slot and the version in *out.  KV_NO_SPACE if all slots are in
 * use. */
kv_status kv_snap_register(struct kv_db *db, uint64_t version, int *slot, uint64_t *out,
                           kv_err *err);
void kv_snap_unregister(struct kv_db *db, int slot);

/* Oldest version some reader may still read (compaction horizon). */
uint64_t kv_snap_horizon(struct kv_db *db);

/* Value-log pins (ingest.c, vlog_gc.c).  Set with the vlog mutex held,
 * to the head's id, before writing values no table points to yet. */
void kv_snap_set_vlog_pin(struct kv_db *db, int slot, uint32_t fid);
/* The lowest pinned file id of a live process, UINT32_MAX if none. */
uint32_t kv_snap_min_vlog_pin(struct kv_db *db);

#endif
