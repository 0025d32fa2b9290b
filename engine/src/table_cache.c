/*
 * table_cache.c - this process's open, mapped tables (see table_cache.h).
 */
#include "table_cache.h"

#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "err.h"

#define INITIAL_BUCKETS 256

kv_status kv_tcache_init(kv_tcache *tc, kv_err *err)
{
    memset(tc, 0, sizeof *tc);
    tc->nbuckets = INITIAL_BUCKETS;
    tc->buckets = calloc(tc->nbuckets, sizeof *tc->buckets);
    if (!tc->buckets) return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory (table cache)");
    pthread_mutex_init(&tc->mu, NULL);
    return KV_OK;
}

static void handle_close(kv_db *db, kv_table_handle *h)
{
    kv_sst_close(h->sst);
    if (h->map) db->env->unmap(h->file, h->map, h->size);
    if (h->file) db->env->close(h->file);
    free(h);
}

void kv_tcache_destroy(kv_db *db)
{
    kv_tcache *tc = &db->tcache;
    if (!tc->buckets) return;
    for (size_t i = 0; i < tc->nbuckets; i++) {
        kv_table_handle *h = tc->buckets[i], *next;
        for (; h; h = next) {
            next = h->next;
            handle_close(db, h);
        }
    }
    free(tc->buckets);
    tc->buckets = NULL;
    pthread_mutex_destroy(&tc->mu);
}

static void grow(kv_tcache *tc)
{
    size_t nb = tc->nbuckets * 2;
    kv_table_handle **b = calloc(nb, sizeof *b);
    if (!b) return;
    for (size_t i = 0; i < tc->nbuckets; i++) {
        kv_table_handle *h = tc->buckets[i], *next;
        for (; h; h = next) {
            next = h->next;
            h->next = b[h->id & (nb - 1)];
            b[h->id & (nb - 1)] = h;
        }
    }
    free(tc->buckets);
    tc->buckets = b;
    tc->nbuckets = nb;
}

static kv_status open_table(kv_db *db, const kv_table_meta *tm, kv_table_handle **out,
                            kv_err *err)
{
    char path[KV_PATH_MAX + 32];
    kv_table_handle *h = calloc(1, sizeof *h);
    kv_status st;
    uint64_t size = 0;

    if (!h) return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory opening a table");
    kv_file_path(path, sizeof path, db->dir, tm->id, "sst");
    h->id = tm->id;
    st = db->env->open(db->env, path, KV_O_READ, &h->file, err);
    if (st == KV_NOT_FOUND)
        st = kv_seterr(err, KV_CORRUPTION, err ? err->sys_errno : 0,
                       "table \"%s\" listed in the manifest is missing", path);
    if (st == KV_OK) st = db->env->size(h->file, &size, err);
    if (st == KV_OK && size != tm->size)
        st = kv_seterr(err, KV_CORRUPTION, 0,
                       "table \"%s\" has %llu bytes but the manifest says %llu", path,
                       (unsigned long long)size, (unsigned long long)tm->size);
    if (st == KV_OK) st = db->env->map(h->file, size, &h->map, err);
    if (st == KV_OK) {
        h->size = size;
        st = kv_sst_open(h->map, size, path, tm->id, db->opt->checksum_verification_mode,
                         &h->sst, err);
    }
    if (st != KV_OK) {
        handle_close(db, h);
        return st;
    }
    atomic_store(&h->refs, 1);
    *out = h;
    return KV_OK;
}

kv_status kv_tcache_get(kv_db *db, const kv_table_meta *tm, kv_table_handle **out, kv_err *err)
{
    kv_tcache *tc = &db->tcache;
    kv_table_handle *h, *fresh = NULL;
    kv_status st;

    pthread_mutex_lock(&tc->mu);
    for (h = tc->buckets[tm->id & (tc->nbuckets - 1)]; h; h = h->next)
        if (h->id == tm->id) {
            atomic_fetch_add_explicit(&h->refs, 1, memory_order_relaxed);
            pthread_mutex_unlock(&tc->mu);
            *out = h;
            return KV_OK;
        }
    pthread_mutex_unlock(&tc->mu);

    st = open_table(db, tm, &fresh, err);
    if (st != KV_OK) return st;

    pthread_mutex_lock(&tc->mu);
    for (h = tc->buckets[tm->id & (tc->nbuckets - 1)]; h; h = h->next)
        if (h->id == tm->id) break; /* another thread opened it meanwhile */
    if (!h) {
        h = fresh;
        fresh = NULL;
        if (tc->count + 1 > tc->nbuckets) grow(tc);
        h->next = tc->buckets[h->id & (tc->nbuckets - 1)];
        tc->buckets[h->id & (tc->nbuckets - 1)] = h;
        tc->count++;
    }
    atomic_fetch_add_explicit(&h->refs, 1, memory_order_relaxed);
    pthread_mutex_unlock(&tc->mu);
    if (fresh) handle_close(db, fresh);
    *out = h;
    return KV_OK;
}

void kv_tcache_release(kv_db *db, kv_table_handle *h)
{
    if (h && atomic_fetch_sub_explicit(&h->refs, 1, memory_order_acq_rel) == 1)
        handle_close(db, h); /* was already swept out of the cache */
}

static int in_version(kv_db *db, const kv_version *v, uint64_t id)
{
    for (uint32_t i = 0; i < v->total; i++)
        if (kv_tm_at(db, v->tables[i])->id == id) return 1;
    return 0;
}

void kv_tcache_sweep(kv_db *db, const kv_version *v)
{
    kv_tcache *tc = &db->tcache;
    uint64_t epoch = atomic_load(&db->sh->vset.deletion_epoch);
    kv_table_handle *dead = NULL;

    if (epoch == atomic_load_explicit(&tc->seen_epoch, memory_order_relaxed)) return;
    pthread_mutex_lock(&tc->mu);
    if (epoch != atomic_load_explicit(&tc->seen_epoch, memory_order_relaxed)) {
        atomic_store_explicit(&tc->seen_epoch, epoch, memory_order_relaxed);
        for (size_t i = 0; i < tc->nbuckets; i++) {
            kv_table_handle **pp = &tc->buckets[i];
            while (*pp) {
                kv_table_handle *h = *pp;
                if (!in_version(db, v, h->id)) {
                    *pp = h->next;
                    tc->count--;
                    h->next = dead;
                    dead = h;
                } else
                    pp = &h->next;
            }
        }
    }
    pthread_mutex_unlock(&tc->mu);
    while (dead) {
        kv_table_handle *h = dead;
        dead = h->next;
        kv_tcache_release(db, h); /* drops the cache's reference */
    }
}
