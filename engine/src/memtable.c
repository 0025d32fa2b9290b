/*
 * memtable.c - memtable descriptors, arena slots, inserts from WAL record
 * payloads and point lookups (see memtable.h).
 */
#include "memtable.h"

#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "err.h"
#include "hash.h"
#include "wal.h"

kv_sl *kv_mt_sl(kv_db *db, const kv_memtable *mt)
{
    return (kv_sl *)(db->base + db->sh->arena_off + (uint64_t)mt->slot * db->sh->arena_size);
}

int kv_mt_slot_available(kv_db *db)
{
    for (uint32_t i = 0; i < db->sh->n_arenas; i++)
        if (!db->sh->arena_busy[i]) return 1;
    return 0;
}

kv_status kv_mt_create(kv_db *db, uint64_t id, kv_memtable **out, kv_err *err)
{
    kv_shared *sh = db->sh;
    uint32_t slot;
    uint64_t off;
    kv_memtable *mt;

    for (slot = 0; slot < sh->n_arenas; slot++)
        if (!sh->arena_busy[slot]) break;
    if (slot == sh->n_arenas)
        return kv_seterr(err, KV_NO_SPACE, 0, "no free memtable arena (%u in use)", sh->n_arenas);
    off = kv_heap_alloc_db(db, sizeof(kv_memtable));
    if (!off)
        return kv_seterr(err, KV_NO_SPACE, 0,
                         "shared heap exhausted allocating a memtable (SharedHeapSize)");
    mt = kv_mt_at(db, off);
    sh->arena_busy[slot] = 1;
    mt->slot = slot;
    mt->id = id;
    mt->wal_size = 0;
    mt->wal_synced = 0;
    mt->wal_zeroed = 0;
    atomic_store(&mt->wal_durable, 0);
    mt->dir_synced = 0;
    mt->has_vptrs = 0;
    atomic_store(&mt->refs, 1);
    atomic_store(&mt->flags, 0);
    atomic_store(&mt->max_version, 0);
    atomic_store(&mt->min_version, UINT64_MAX);
    kv_sl_init(kv_mt_sl(db, mt), sh->arena_size, id * 0x9e3779b97f4a7c15ULL + slot + 1);
    *out = mt;
    return KV_OK;
}

void kv_mt_ref(kv_memtable *mt)
{
    atomic_fetch_add_explicit(&mt->refs, 1, memory_order_relaxed);
}

void kv_mt_unref(kv_db *db, kv_memtable *mt)
{
    if (!mt || atomic_fetch_sub_explicit(&mt->refs, 1, memory_order_acq_rel) != 1) return;
    kv_mutex_lock(&db->sh->db_mu);
    db->sh->arena_busy[mt->slot] = 0;
    kv_cond_broadcast(&db->sh->mem_cv);
    kv_mutex_unlock(&db->sh->db_mu);
    kv_heap_free_db(db, kv_off_of(db, mt));
}

/* One decoded batch entry, for sorting before insertion. */
typedef struct ent {
    const uint8_t *key, *vs;
    uint32_t klen, vslen, idx;
} ent;

static int ent_cmp(const void *pa, const void *pb)
{
    const ent *a = pa, *b = pb;
    int c = kv_ukey_cmp(a->key, a->klen, b->key, b->klen);
    if (c) return c;
    return a->idx < b->idx ? -1 : a->idx > b->idx; /* later write wins: insert it last */
}

/* Inserts one entry as (key, version). */
static int put_entry(kv_sl *sl, uint8_t **ikey, size_t *cap, const uint8_t *key, size_t klen,
                     uint64_t version, const uint8_t *vs, size_t vslen, uint8_t *small)
{
    if (klen + KV_TS_SIZE > *cap) {
        uint8_t *p = malloc(klen + KV_TS_SIZE);
        if (!p) return -2;
        if (*ikey != small) free(*ikey);
        *ikey = p;
        *cap = klen + KV_TS_SIZE;
    }
    memcpy(*ikey, key, klen);
    kv_ikey_put_ts(*ikey + klen, version);
    return kv_sl_put(sl, *ikey, klen + KV_TS_SIZE, vs, vslen);
}

kv_status kv_mt_apply(kv_db *db, kv_memtable *mt, const uint8_t *payload, size_t n,
                      uint64_t version, kv_err *err)
{
    kv_sl *sl = kv_mt_sl(db, mt);
    kv_wal_cursor cur;
    kv_wal_entry e;
    uint64_t rec_version;
    uint32_t count, i = 0;
    uint8_t flags, small[256];
    uint8_t *ikey = small;
    size_t ikey_cap = sizeof small;
    ent *ents = NULL;
    int r = 0;
    kv_status st = KV_OK;

    if (kv_wal_payload_open(payload, n, &rec_version, &count, &flags, &cur) != 0)
        return kv_seterr(err, KV_CORRUPTION, 0, "malformed batch record (%zu bytes)", n);
    /* Inserting a batch in key order lets each search start where the
     * previous insert ended (skiplist finger) and touch cache-hot nodes. */
    if (count > 1 && count <= (n - KV_WAL_PAYLOAD_HDR) / 5) ents = malloc(sizeof *ents * count);
    if (ents) {
        while (i < count && (r = kv_wal_next_entry(&cur, &e)) == 1) {
            ents[i].key = e.key;
            ents[i].klen = (uint32_t)e.klen;
            ents[i].vs = e.vs;
            ents[i].vslen = (uint32_t)e.vslen;
            ents[i].idx = i;
            i++;
        }
        if (r >= 0 && (i != count || kv_wal_next_entry(&cur, &e) != 0)) r = -1;
        if (r >= 0) {
            qsort(ents, count, sizeof *ents, ent_cmp);
            for (i = 0; i < count; i++) {
                int pr = put_entry(sl, &ikey, &ikey_cap, ents[i].key, ents[i].klen, version,
                                   ents[i].vs, ents[i].vslen, small);
                if (pr == -2) {
                    st = kv_seterr(err, KV_NO_MEMORY, 0, "out of memory applying a batch");
                    break;
                }
                if (pr != 0) {
                    st = kv_seterr(err, KV_NO_SPACE, 0, "memtable %llu is full",
                                   (unsigned long long)mt->id);
                    break;
                }
            }
        }
        free(ents);
    } else {
        while ((r = kv_wal_next_entry(&cur, &e)) == 1) {
            int pr = put_entry(sl, &ikey, &ikey_cap, e.key, e.klen, version, e.vs, e.vslen,
                               small);
            if (pr == -2) {
                st = kv_seterr(err, KV_NO_MEMORY, 0, "out of memory applying a batch");
                break;
            }
            if (pr != 0) {
                st = kv_seterr(err, KV_NO_SPACE, 0, "memtable %llu is full",
                               (unsigned long long)mt->id);
                break;
            }
        }
    }
    if (st == KV_OK && r < 0)
        st = kv_seterr(err, KV_CORRUPTION, 0, "malformed entry in batch record of version %llu",
                       (unsigned long long)version);
    if (ikey != small) free(ikey);
    if (st == KV_OK) {
        if (version > atomic_load(&mt->max_version)) atomic_store(&mt->max_version, version);
        if (version < atomic_load(&mt->min_version)) atomic_store(&mt->min_version, version);
    }
    return st;
}

int kv_mt_get(kv_db *db, const kv_memtable *mt, const uint8_t *ukey, size_t n,
              uint64_t read_version, kv_vstruct *vs, uint64_t *version)
{
    kv_sl_iter it;
    uint8_t small[256], *seek = small;
    const uint8_t *k, *v;
    size_t kl, vl;
    int found = 0;

    if (!kv_sl_may_contain(kv_mt_sl(db, mt), kv_key_hash(ukey, n))) return 0;
    if (n + KV_TS_SIZE > sizeof small) {
        seek = malloc(n + KV_TS_SIZE);
        if (!seek) return 0;
    }
    memcpy(seek, ukey, n);
    kv_ikey_put_ts(seek + n, read_version);
    kv_sl_iter_init(&it, kv_mt_sl(db, mt));
    kv_sl_iter_seek(&it, seek, n + KV_TS_SIZE);
    if (kv_sl_iter_valid(&it)) {
        k = kv_sl_iter_key(&it, &kl);
        if (kl == n + KV_TS_SIZE && memcmp(k, ukey, n) == 0 &&
            kv_ikey_version(k, kl) <= read_version) {
            v = kv_sl_iter_value(&it, &vl);
            if (kv_vstruct_decode(v, vl, vs) == 0) {
                *version = kv_ikey_version(k, kl);
                found = 1;
            }
        }
    }
    if (seek != small) free(seek);
    return found;
}

uint64_t kv_mt_used(kv_db *db, const kv_memtable *mt)
{
    return kv_sl_used(kv_mt_sl(db, mt));
}
