/*
 * drops.h - DropPrefix / DropAll as versioned range deletions.
 *
 * A drop (prefix P, version D) deletes every entry whose key starts with P
 * and whose version is <= D, for readers at versions >= D; readers at
 * older versions still see them.  D is a commit version like any other
 * (given by the writer queue), so the drop is ordered with every write.
 *
 * The drops in effect belong to the table version (version.h): every
 * version carries a reference to an immutable drop list, so a reader that
 * pinned a view has the drops that match its memtables and tables.  Point
 * reads and iterators treat a covered entry as a tombstone; compaction
 * removes covered entries once no reader can be older than D (the read
 * horizon); tables entirely inside P whose versions are all <= D are
 * simply removed from the version.  A drop is retired (removed from the
 * list) when no memtable or table can still hold an entry it covers.
 * Adding and retiring drops are manifest records (MANIFEST format).
 */
#ifndef KV_DROPS_H
#define KV_DROPS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "kv.h"

#define KV_MAX_DROPS 64         /* retired per edit (more: the next edit) */
#define KV_DROP_PREFIX_MAX 128
#define KV_DROP_LENS 16         /* distinct prefix lengths searched by length */

/* One drop, as the API and the MANIFEST give it. */
typedef struct kv_drop {
    uint64_t version;
    uint32_t len;
    uint32_t pad;
    uint8_t prefix[KV_DROP_PREFIX_MAX];
} kv_drop;

/* The drop list of a version (immutable once built, reference counted,
 * in the shared heap): entries sorted by (prefix, version), their prefix
 * bytes after them, and the distinct prefix lengths, so a key is checked
 * with one binary search per length instead of against every drop. */
typedef struct kv_drop_ent {
    uint64_t version;
    uint32_t off;           /* of the prefix bytes, from the list's start */
    uint32_t len;
} kv_drop_ent;

typedef struct kv_drop_list {
    _Atomic uint32_t refs;
    uint32_t n;
    uint32_t n_lens;        /* > KV_DROP_LENS: too many lengths, scan all */
    uint32_t lens[KV_DROP_LENS];
    kv_drop_ent e[];
} kv_drop_list;

struct kv_db;

/* 1 if an entry of user key k at version ver is deleted by a drop in l
 * for a reader at read_version. */
int kv_drops_cover(const kv_drop_list *l, const uint8_t *k, size_t n, uint64_t ver,
                   uint64_t read_version);

/* A key prefix that no drop of list touches (len 0: none known); zero it
 * whenever the caller's drop list may change. */
typedef struct kv_drops_memo {
    const kv_drop_list *list;
    uint32_t len;
    uint8_t key[KV_DROP_PREFIX_MAX];
} kv_drops_memo;

/* kv_drops_cover for a caller that checks many keys in order (an
 * iterator): once a key is found outside every drop, the longest drop
 * prefix length of its bytes is remembered, and keys that start with them
 * are answered by one comparison. */
int kv_drops_cover_memo(const kv_drop_list *l, kv_drops_memo *m, const uint8_t *k, size_t n,
                        uint64_t ver, uint64_t read_version);

/* A new list (refs 1): base (offset, 0 = none) minus the drops with the
 * versions in retire[], plus add (if non-NULL).  *out = 0 if it is empty. */
kv_status kv_drops_derive(struct kv_db *db, uint64_t base, const kv_drop *add,
                          const uint64_t *retire, uint32_t n_retire, uint64_t *out,
                          kv_err *err);
/* A list of n drops (refs 1; *out = 0 if n is 0). */
kv_status kv_drops_from(struct kv_db *db, const kv_drop *d, size_t n, uint64_t *out, kv_err *err);
/* Drop i of list l as a kv_drop. */
void kv_drops_get(const kv_drop_list *l, uint32_t i, kv_drop *out);
void kv_drops_ref(struct kv_db *db, uint64_t off);
void kv_drops_unref(struct kv_db *db, uint64_t off);

/* Host maintenance (vset.mu held, current version v): fills *e with the
 * deletion of tables entirely covered by drops no reader can be older
 * than, and the retirement of drops that cover nothing any more.
 * Returns 1 if e has anything to do. */
struct kv_version;
struct kv_vedit;
struct kv_table_meta;
/* 1 if table t still holds entries a drop of l with version <= upto
 * removes, and is not wholly inside it (the maintenance deletes those
 * whole): rewriting it takes the entries and their value-log bytes out. */
int kv_drops_pending(const kv_drop_list *l, const struct kv_table_meta *t, uint64_t upto);
int kv_drops_maintenance(struct kv_db *db, const struct kv_version *v, struct kv_vedit *e);
/* Runs the maintenance on the current version and applies it; the
 * value-log bytes of the tables it removes count as discardable.  Host,
 * REQUIRES vset.mu (released while those tables are read). */
void kv_drops_tick(struct kv_db *db);

/* Host: records a drop at version in the version set (manifest). */
kv_status kv_drop_install(struct kv_db *db, const uint8_t *prefix, uint32_t n, uint64_t version,
                          kv_err *err);
/* The writer-queue leader's part of kv_drop_prefix (arg is private). */
kv_status kv_drop_apply(struct kv_db *db, void *arg, uint64_t version, kv_err *err);

#endif
