/*
 * table_cache.h - this process's open tables.
 *
 * Tables are opened lazily the first time a process reads them: the file
 * is opened, mapped read-only and its footer/index checked (kv_sst_open).
 * Handles are shared by the threads of the process and reference counted;
 * a handle is closed when its table is no longer in the current version
 * and no local reader holds it (swept when the shared deletion epoch
 * moves), or when the process detaches.  A table that is still reachable
 * from any pinned version is never deleted from disk, so a lazy open
 * always finds the file.
 */
#ifndef KV_TABLE_CACHE_H
#define KV_TABLE_CACHE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "env.h"
#include "kv.h"
#include "sst.h"

typedef struct kv_table_handle {
    uint64_t id;
    kv_file *file;
    const uint8_t *map;
    uint64_t size;
    kv_sst *sst;
    _Atomic int32_t refs;          /* local readers + 1 while cached */
    struct kv_table_handle *next;  /* hash chain */
} kv_table_handle;

typedef struct kv_tcache {
    pthread_mutex_t mu;
    kv_table_handle **buckets;
    size_t nbuckets, count;
    _Atomic uint64_t seen_epoch;  /* deletion epoch of the last sweep */
} kv_tcache;

struct kv_db;
struct kv_table_meta;
struct kv_version;

kv_status kv_tcache_init(kv_tcache *tc, kv_err *err);
void kv_tcache_destroy(struct kv_db *db);

/* Returns a referenced handle for the table. */
kv_status kv_tcache_get(struct kv_db *db, const struct kv_table_meta *tm, kv_table_handle **h,
                        kv_err *err);
void kv_tcache_release(struct kv_db *db, kv_table_handle *h);

/* Closes handles of tables not in v that no local reader holds. */
void kv_tcache_sweep(struct kv_db *db, const struct kv_version *v);

#endif
