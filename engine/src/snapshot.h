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
    uint32_t pad;
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

#endif
