/*
 * version.h - the set of tables per level ("version") and its history.
 *
 * Table descriptors (kv_table_meta) and versions live in the shared heap.
 * A version lists, per level, table descriptors: level 0 newest first (in
 * the order they were installed, which is the order of the data they
 * hold), levels >= 1 sorted by smallest key and non-overlapping, a user
 * key never split across two tables of one level.  Versions are immutable
 * and reference counted (the vset holds the current one, views hold
 * theirs); a table descriptor is counted by the versions that list it, and
 * when that reaches zero nobody can reach the table any more and its file
 * is deleted.
 *
 * Version edits (flush, compaction) run in the host process under vset.mu:
 * the edit is appended to the MANIFEST and synced before the new version
 * becomes current.
 */
#ifndef KV_VERSION_H
#define KV_VERSION_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "drops.h"
#include "kv.h"
#include "sst.h"
#include "sync.h"

#define KV_MAX_LEVELS 16

typedef struct kv_table_meta {
    _Atomic uint32_t refs;       /* versions listing it */
    _Atomic uint32_t compacting; /* claimed by a running compaction (host) */
    uint64_t id;
    uint64_t size;
    uint64_t num_entries, num_deletes, num_value_ptrs, vlog_bytes;
    uint64_t min_version, max_version;
    uint32_t smallest_len, largest_len; /* internal keys stored after the struct */
    uint32_t compression;
    uint32_t pad;
    /* An ingested table (a large transaction) is written before its commit
     * version is known: its keys carry version 0 and every entry's real
     * version is this one.  0 for ordinary tables. */
    uint64_t global_version;
    /* Every drop (drops.h) with a version up to this one is applied: the
     * table holds no entry such a drop covers (compaction output). */
    uint64_t dropped_upto;
    uint8_t keys[];                     /* smallest, then largest */
} kv_table_meta;

static inline const uint8_t *kv_tm_smallest(const kv_table_meta *t)
{
    return t->keys;
}

static inline const uint8_t *kv_tm_largest(const kv_table_meta *t)
{
    return t->keys + t->smallest_len;
}

typedef struct kv_version {
    _Atomic uint32_t refs;
    uint32_t n_levels;
    uint64_t drops;                     /* kv_drop_list offset (drops.h), 0 = none */
    uint32_t total;
    uint32_t count[KV_MAX_LEVELS];
    uint32_t start[KV_MAX_LEVELS];
    uint64_t tables[];                  /* kv_table_meta offsets */
} kv_version;

typedef struct kv_vset {
    kv_mutex mu;                        /* edits, manifest, compaction picking */
    kv_cond cv;                         /* compactors and waiters of edits */
    uint64_t current;                   /* kv_version offset, one ref held */
    _Atomic uint64_t next_file_id;
    uint64_t max_version;               /* newest version stored in any table */
    _Atomic uint64_t deletion_epoch;    /* bumped when a table file is deleted */
    uint64_t edits;                     /* edits installed (waiters compare) */
} kv_vset;

struct kv_db;

/* An edit: tables to remove and tables to add (with their level). */
typedef struct kv_vedit_entry {
    int level;
    uint64_t meta;                      /* kv_table_meta offset (refs 0) */
} kv_vedit_entry;

typedef struct kv_vedit {
    size_t n_del, n_add, cap_del, cap_add;
    uint64_t *del_ids;
    int *del_levels;
    kv_vedit_entry *add;
    uint64_t flushed_mem;  /* memtable this edit's L0 table replaces (offset) */
    const kv_drop *drop_add;            /* a drop to add (drops.h), or NULL */
    uint32_t n_retire;
    uint64_t drop_retire[KV_MAX_DROPS]; /* versions of drops that are done */
} kv_vedit;

void kv_vedit_init(kv_vedit *e);
void kv_vedit_free(kv_vedit *e);
kv_status kv_vedit_delete(kv_vedit *e, int level, uint64_t id, kv_err *err);
kv_status kv_vedit_add(kv_vedit *e, int level, uint64_t meta, kv_err *err);

/* Allocates a table descriptor from builder/table properties and keys. */
kv_status kv_tm_new(struct kv_db *db, const kv_sst_props *p, const uint8_t *smallest,
                    size_t slen, const uint8_t *largest, size_t llen, uint64_t *off,
                    kv_err *err);
/* Frees an unreferenced descriptor that was never installed. */
void kv_tm_discard(struct kv_db *db, uint64_t off);

/* Builds a new version = base + edit.  Does not install it. */
kv_status kv_version_apply(struct kv_db *db, const kv_version *base, const kv_vedit *e,
                           uint64_t *out, kv_err *err);
/* An empty version with n levels. */
kv_status kv_version_empty(struct kv_db *db, int n_levels, uint64_t *out, kv_err *err);

void kv_version_ref(kv_version *v);
/* Drops a reference; the last one unrefs its tables (deleting the files of
 * tables no longer listed anywhere) and frees it. */
void kv_version_unref(struct kv_db *db, kv_version *v);

/* Makes the version at off current: the vset's reference moves to it, the
 * old one is dropped, the view is rebuilt - without e->flushed_mem in the
 * same step, so no view lists a memtable and its table.  REQUIRES vset.mu
 * held. */
kv_status kv_version_install(struct kv_db *db, uint64_t off, const kv_vedit *e, kv_err *err);

/* Pins the current version (takes vset.mu briefly). */
kv_version *kv_version_current(struct kv_db *db);

/* Index of the first table in a level >= 1 whose largest user key >= ukey
 * (count if none). */
uint32_t kv_level_find(struct kv_db *db, const kv_version *v, int level, const uint8_t *ukey,
                       size_t n);

uint64_t kv_level_size(struct kv_db *db, const kv_version *v, int level);

#endif
