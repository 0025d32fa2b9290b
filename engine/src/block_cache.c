/*
 * block_cache.c - shared, scan-resistant cache of decompressed blocks
 * (see block_cache.h).
 *
 * Slot descriptor: key (table id, block offset), length, pin count,
 * segment, LRU links and hash chain, all as slot indexes + 1 (0 = none).
 */
#include "block_cache.h"

#include <string.h>

#include "db.h"
#include "hash.h"

#define SEG_PROBATION 0
#define SEG_PROTECTED 1
#define SEG_FREE 2

typedef struct bslot {
    uint64_t table_id, block_off;
    uint32_t len;
    _Atomic uint32_t pins;
    uint32_t seg;
    uint32_t prev, next;  /* LRU (or free list via next) */
    uint32_t hnext;       /* hash chain */
} bslot;

uint64_t kv_bcache_region_size(int64_t bytes, int block_size)
{
    uint64_t slot = (uint64_t)block_size * 2;
    uint64_t n;
    if (bytes <= 0) return 0;
    n = (uint64_t)bytes / slot;
    if (n < 16) return 0; /* too small to be useful */
    return n * (slot + sizeof(bslot) + 2 * sizeof(uint32_t)) + 64;
}

static bslot *S(kv_db *db, uint32_t i1)
{
    return (bslot *)kv_at(db, db->sh->bcache.meta_off) + (i1 - 1);
}

static uint32_t *B(kv_db *db)
{
    return (uint32_t *)kv_at(db, db->sh->bcache.bucket_off);
}

static uint8_t *D(kv_db *db, uint32_t i1)
{
    kv_bcache *c = &db->sh->bcache;
    return (uint8_t *)kv_at(db, c->data_off) + (uint64_t)(i1 - 1) * c->slot_size;
}

void kv_bcache_init(kv_bcache *c, char *base, uint64_t off, uint64_t size, int block_size)
{
    uint64_t slot = (uint64_t)block_size * 2, per = slot + sizeof(bslot) + 2 * sizeof(uint32_t);
    uint32_t n = size ? (uint32_t)((size - 64) / per) : 0, nb = 1;
    bslot *meta;
    memset(c, 0, offsetof(kv_bcache, hits));
    atomic_store(&c->hits, 0);
    atomic_store(&c->misses, 0);
    atomic_store(&c->inserts, 0);
    atomic_store(&c->evictions, 0);
    atomic_store(&c->rejects, 0);
    kv_mutex_init(&c->mu);
    if (n == 0) return;
    while (nb < n) nb <<= 1;
    c->n_slots = n;
    c->n_buckets = nb;
    c->slot_size = (uint32_t)slot;
    c->protected_max = n - n / 5;
    c->meta_off = (off + 15) & ~(uint64_t)15;
    c->bucket_off = c->meta_off + (uint64_t)n * sizeof(bslot);
    c->data_off = (c->bucket_off + (uint64_t)nb * 4 + 15) & ~(uint64_t)15;
    meta = (bslot *)(base + c->meta_off);
    memset(base + c->bucket_off, 0, (size_t)nb * 4);
    for (uint32_t i = 0; i < n; i++) {
        memset(&meta[i], 0, sizeof meta[i]);
        meta[i].seg = SEG_FREE;
        meta[i].next = i + 2 <= n ? i + 2 : 0;
    }
    c->free_head = 1;
}

static uint32_t bucket_of(kv_bcache *c, uint64_t table_id, uint64_t off)
{
    uint64_t k[2] = {table_id, off};
    return (uint32_t)kv_key_hash(k, sizeof k) & (c->n_buckets - 1);
}

static void lru_unlink(kv_db *db, uint32_t i)
{
    kv_bcache *c = &db->sh->bcache;
    bslot *s = S(db, i);
    if (s->prev) S(db, s->prev)->next = s->next;
    else c->lru_head[s->seg] = s->next;
    if (s->next) S(db, s->next)->prev = s->prev;
    else c->lru_tail[s->seg] = s->prev;
    c->seg_count[s->seg]--;
}

static void lru_push_head(kv_db *db, uint32_t i, uint32_t seg)
{
    kv_bcache *c = &db->sh->bcache;
    bslot *s = S(db, i);
    s->seg = seg;
    s->prev = 0;
    s->next = c->lru_head[seg];
    if (s->next) S(db, s->next)->prev = i;
    else c->lru_tail[seg] = i;
    c->lru_head[seg] = i;
    c->seg_count[seg]++;
}

static uint32_t find(kv_db *db, uint64_t table_id, uint64_t off, uint32_t **link)
{
    kv_bcache *c = &db->sh->bcache;
    uint32_t *pp = &B(db)[bucket_of(c, table_id, off)];
    while (*pp) {
        bslot *s = S(db, *pp);
        if (s->table_id == table_id && s->block_off == off) break;
        pp = &s->hnext;
    }
    if (link) *link = pp;
    return *pp;
}

/* A hit: probation -> protected; protected -> its head. Demotes the
 * protected tail when protected is over its share. */
static void touch(kv_db *db, uint32_t i)
{
    kv_bcache *c = &db->sh->bcache;
    lru_unlink(db, i);
    lru_push_head(db, i, SEG_PROTECTED);
    while (c->seg_count[SEG_PROTECTED] > c->protected_max) {
        uint32_t t = c->lru_tail[SEG_PROTECTED];
        lru_unlink(db, t);
        lru_push_head(db, t, SEG_PROBATION);
    }
}

static const uint8_t *bc_lookup(void *ctx, uint64_t table_id, uint64_t off, size_t *len,
                                void **pin)
{
    kv_db *db = ctx;
    kv_bcache *c = &db->sh->bcache;
    uint32_t i;
    if (!c->n_slots) return NULL;
    kv_mutex_lock(&c->mu);
    i = find(db, table_id, off, NULL);
    if (!i) {
        kv_mutex_unlock(&c->mu);
        atomic_fetch_add_explicit(&c->misses, 1, memory_order_relaxed);
        return NULL;
    }
    atomic_fetch_add_explicit(&S(db, i)->pins, 1, memory_order_relaxed);
    touch(db, i);
    *len = S(db, i)->len;
    kv_mutex_unlock(&c->mu);
    atomic_fetch_add_explicit(&c->hits, 1, memory_order_relaxed);
    *pin = (void *)(uintptr_t)i;
    return D(db, i);
}

/* Takes a slot for a new block: a free one, else the least recently used
 * unpinned one of probation, else of protected.  0 if all are pinned. */
static uint32_t victim(kv_db *db)
{
    kv_bcache *c = &db->sh->bcache;
    uint32_t i;
    int seg;
    if (c->free_head) {
        i = c->free_head;
        c->free_head = S(db, i)->next;
        return i;
    }
    for (seg = SEG_PROBATION; seg <= SEG_PROTECTED; seg++) {
        int scanned = 0;
        for (i = c->lru_tail[seg]; i && scanned < 64; i = S(db, i)->prev, scanned++) {
            bslot *s = S(db, i);
            uint32_t *link;
            if (atomic_load_explicit(&s->pins, memory_order_acquire)) continue;
            find(db, s->table_id, s->block_off, &link);
            *link = s->hnext;
            lru_unlink(db, i);
            atomic_fetch_add_explicit(&c->evictions, 1, memory_order_relaxed);
            return i;
        }
    }
    return 0;
}

static const uint8_t *bc_insert(void *ctx, uint64_t table_id, uint64_t off,
                                const uint8_t *data, size_t len, void **pin)
{
    kv_db *db = ctx;
    kv_bcache *c = &db->sh->bcache;
    uint32_t i, *link;
    bslot *s;
    if (!c->n_slots || len > c->slot_size) {
        atomic_fetch_add_explicit(&c->rejects, 1, memory_order_relaxed);
        return NULL;
    }
    kv_mutex_lock(&c->mu);
    i = find(db, table_id, off, &link);
    if (i) { /* someone inserted it meanwhile */
        atomic_fetch_add_explicit(&S(db, i)->pins, 1, memory_order_relaxed);
        kv_mutex_unlock(&c->mu);
        *pin = (void *)(uintptr_t)i;
        return D(db, i);
    }
    i = victim(db);
    if (!i) {
        kv_mutex_unlock(&c->mu);
        atomic_fetch_add_explicit(&c->rejects, 1, memory_order_relaxed);
        return NULL;
    }
    s = S(db, i);
    s->table_id = table_id;
    s->block_off = off;
    s->len = (uint32_t)len;
    atomic_store_explicit(&s->pins, 1, memory_order_relaxed);
    memcpy(D(db, i), data, len);
    find(db, table_id, off, &link);
    s->hnext = 0;
    *link = i;
    lru_push_head(db, i, SEG_PROBATION);
    kv_mutex_unlock(&c->mu);
    atomic_fetch_add_explicit(&c->inserts, 1, memory_order_relaxed);
    *pin = (void *)(uintptr_t)i;
    return D(db, i);
}

static void bc_release(void *ctx, void *pin)
{
    kv_db *db = ctx;
    uint32_t i = (uint32_t)(uintptr_t)pin;
    if (i) atomic_fetch_sub_explicit(&S(db, i)->pins, 1, memory_order_release);
}

void kv_bcache_ops(kv_db *db, kv_block_cache_ops *ops)
{
    ops->ctx = db;
    ops->lookup = bc_lookup;
    ops->insert = bc_insert;
    ops->release = bc_release;
}
