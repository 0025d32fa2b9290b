/*
 * compaction.h - leveled compaction (Badger v4's dynamic level targets).
 *
 * Level targets are computed from the bottom: the last level's target is
 * its size (at least BaseLevelSize), each level above is the one below
 * divided by LevelSizeMultiplier, and the base level - where level 0
 * compacts into - is the highest level whose target is still
 * <= BaseLevelSize (moved down past empty levels).  Table sizes grow by
 * TableSizeMultiplier per level below the base.  Level 0 is scored by
 * table count / NumLevelZeroTables, the others by size / target.
 *
 * NumCompactors host threads each pick the best-scoring level they can
 * claim: input tables are flagged "compacting" and the user-key ranges a
 * job reads and writes are claimed per level, so concurrent jobs never
 * touch the same tables or produce overlapping tables.  A job merges its
 * inputs, drops versions no registered reader can see (beyond
 * NumVersionsToKeep below the read horizon), drops tombstones when no
 * deeper level holds the key range, never splits one user key across two
 * output tables, and installs the result with one manifest edit.  A table
 * without overlap below moves down without being rewritten.
 */
#ifndef KV_COMPACTION_H
#define KV_COMPACTION_H

#include <stdint.h>

#include "kv.h"
#include "version.h"

typedef struct kv_targets {
    int base_level;
    uint64_t target[KV_MAX_LEVELS];
    uint64_t file_size[KV_MAX_LEVELS];
    double score[KV_MAX_LEVELS];
} kv_targets;

struct kv_db;

void kv_level_targets(struct kv_db *db, const kv_version *v, kv_targets *t);

kv_status kv_compaction_start(struct kv_db *db, kv_err *err);
void kv_compaction_stop(struct kv_db *db);

/* Compacts level 0 into the base level until level 0 is empty. */
kv_status kv_compact_l0(struct kv_db *db, kv_err *err);

/* Where an ingest of tables covering user keys [lo, hi] goes in v: the
 * deepest level such that no table and no compaction claim at it or any
 * level above overlaps the range (level 0, on top, if level 0 overlaps).
 * Host, REQUIRES vset.mu. */
int kv_compaction_ingest_level(struct kv_db *db, const kv_version *v, const uint8_t *lo,
                               size_t lon, const uint8_t *hi, size_t hin);

/* Frees the host's compaction bookkeeping. */
void kv_compaction_free(struct kv_db *db);

#endif
