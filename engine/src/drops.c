/*
 * drops.c - drop lists, the coverage test, and the host's maintenance of
 * drops (see drops.h).
 */
#include "drops.h"

#include <string.h>

#include "batch.h"
#include "db.h"
#include "host_req.h"
#include "writer.h"
#include "err.h"
#include "manifest.h"

static int has_prefix(const uint8_t *k, size_t n, const kv_drop *d)
{
    return n >= d->len && memcmp(k, d->prefix, d->len) == 0;
}

int kv_drops_cover(const kv_drop_list *l, const uint8_t *k, size_t n, uint64_t ver,
                   uint64_t read_version)
{
    if (!l) return 0;
    for (uint32_t i = 0; i < l->n; i++) {
        const kv_drop *d = &l->d[i];
        if (d->version <= read_version && ver <= d->version && has_prefix(k, n, d)) return 1;
    }
    return 0;
}

kv_status kv_drops_derive(kv_db *db, uint64_t base, const kv_drop *add, const uint64_t *retire,
                          uint32_t n_retire, uint64_t *out, kv_err *err)
{
    const kv_drop_list *b = kv_at(db, base);
    kv_drop_list *l;
    uint64_t off;
    uint32_t n = 0;
    *out = 0;
    off = kv_heap_alloc_db(db, sizeof *l);
    if (!off) return kv_seterr(err, KV_NO_SPACE, 0, "shared heap exhausted (drop list)");
    l = kv_at(db, off);
    for (uint32_t i = 0; b && i < b->n; i++) {
        int gone = 0;
        for (uint32_t k = 0; k < n_retire && !gone; k++) gone = retire[k] == b->d[i].version;
        if (!gone) l->d[n++] = b->d[i];
    }
    if (add) {
        if (n == KV_MAX_DROPS) {
            kv_heap_free_db(db, off);
            return kv_seterr(err, KV_NO_SPACE, 0,
                             "%d drops are still being applied; retry after compaction",
                             KV_MAX_DROPS);
        }
        l->d[n++] = *add;
    }
    if (!n) {
        kv_heap_free_db(db, off);
        return KV_OK;
    }
    atomic_store(&l->refs, 1);
    l->n = n;
    *out = off;
    return KV_OK;
}

void kv_drops_ref(kv_db *db, uint64_t off)
{
    kv_drop_list *l = kv_at(db, off);
    if (l) atomic_fetch_add_explicit(&l->refs, 1, memory_order_relaxed);
}

void kv_drops_unref(kv_db *db, uint64_t off)
{
    kv_drop_list *l = kv_at(db, off);
    if (l && atomic_fetch_sub_explicit(&l->refs, 1, memory_order_acq_rel) == 1)
        kv_heap_free_db(db, off);
}

/* ---- maintenance ---- */

static int inside(const kv_table_meta *t, const kv_drop *d)
{
    return has_prefix(kv_tm_smallest(t), kv_ikey_ulen(t->smallest_len), d) &&
           has_prefix(kv_tm_largest(t), kv_ikey_ulen(t->largest_len), d);
}

/* 1 if [smallest, largest] of t may hold a key with d's prefix. */
static int overlaps(const kv_table_meta *t, const kv_drop *d)
{
    const uint8_t *s = kv_tm_smallest(t), *l = kv_tm_largest(t);
    size_t sn = kv_ikey_ulen(t->smallest_len), ln = kv_ikey_ulen(t->largest_len);
    if (kv_ukey_cmp(l, ln, d->prefix, d->len) < 0) return 0; /* wholly before */
    return has_prefix(s, sn, d) || kv_ukey_cmp(s, sn, d->prefix, d->len) < 0;
}

/* 1 if some memtable may hold an entry at or below version. */
static int mem_holds(kv_db *db, uint64_t version)
{
    kv_shared *sh = db->sh;
    int r = 0;
    kv_mutex_lock(&sh->db_mu);
    if (sh->mem) {
        kv_memtable *mt = kv_mt_at(db, sh->mem);
        r = !kv_sl_empty(kv_mt_sl(db, mt)) && atomic_load(&mt->min_version) <= version;
    }
    for (uint32_t i = 0; i < sh->n_imm && !r; i++) {
        kv_memtable *mt = kv_mt_at(db, sh->imm[i]);
        r = !kv_sl_empty(kv_mt_sl(db, mt)) && atomic_load(&mt->min_version) <= version;
    }
    kv_mutex_unlock(&sh->db_mu);
    return r;
}

static int deleting(const kv_vedit *e, int level, uint64_t id)
{
    for (size_t i = 0; i < e->n_del; i++)
        if (e->del_ids[i] == id && e->del_levels[i] == level) return 1;
    return 0;
}

int kv_drops_maintenance(kv_db *db, const kv_version *v, kv_vedit *e)
{
    const kv_drop_list *l = kv_at(db, v->drops);
    uint64_t horizon;
    if (!l) return 0;
    horizon = kv_snap_horizon(db);
    for (uint32_t i = 0; i < l->n; i++) {
        const kv_drop *d = &l->d[i];
        int still = 0;
        if (d->version > horizon) continue; /* someone may read below it */
        for (int level = 0; level < (int)v->n_levels; level++)
            for (uint32_t k = 0; k < v->count[level]; k++) {
                const kv_table_meta *t = kv_ver_table(db, v, level, k);
                if (deleting(e, level, t->id)) continue;
                if (!atomic_load(&t->compacting) && t->max_version <= d->version && inside(t, d)) {
                    if (kv_vedit_delete(e, level, t->id, NULL) != KV_OK) return e->n_del || e->n_retire;
                    continue;
                }
                if (t->min_version <= d->version && overlaps(t, d)) still = 1;
            }
        if (!still && !mem_holds(db, d->version) && e->n_retire < KV_MAX_DROPS)
            e->drop_retire[e->n_retire++] = d->version;
    }
    return e->n_del || e->n_retire;
}

void kv_drops_tick(kv_db *db)
{
    kv_version *v = kv_ver_at(db, db->sh->vset.current);
    kv_vedit e;
    kv_err err;
    if (!v || !v->drops || atomic_load(&db->sh->bg_status) != KV_OK) return;
    kv_vedit_init(&e);
    if (kv_drops_maintenance(db, v, &e)) {
        if (kv_apply_edit(db, &e, &err) != KV_OK)
            kv_log(db, KV_LOG_WARNING, "applying dropped ranges failed: %s", err.msg);
        else if (e.n_del || e.n_retire)
            kv_log(db, KV_LOG_INFO, "dropped ranges: %zu tables removed, %u drops done",
                   e.n_del, e.n_retire);
    }
    kv_vedit_free(&e);
}

/* ---- dropping ---- */

kv_status kv_drop_install(kv_db *db, const uint8_t *prefix, uint32_t n, uint64_t version,
                          kv_err *err)
{
    kv_drop d;
    kv_vedit e;
    kv_status st;
    memset(&d, 0, sizeof d);
    d.version = version;
    d.len = n;
    memcpy(d.prefix, prefix, n);
    kv_vedit_init(&e);
    e.drop_add = &d;
    kv_mutex_lock(&db->sh->vset.mu);
    st = kv_apply_edit(db, &e, err);
    kv_mutex_unlock(&db->sh->vset.mu);
    kv_vedit_free(&e);
    if (st == KV_OK)
        kv_log(db, KV_LOG_INFO, "dropped %u-byte prefix at version %llu", n,
               (unsigned long long)version);
    return st;
}

typedef struct drop_arg {
    const uint8_t *prefix;
    uint32_t n;
} drop_arg;

kv_status kv_drop_apply(kv_db *db, void *arg, uint64_t version, kv_err *err)
{
    drop_arg *a = arg;
    kv_host_req *r;
    /* every earlier commit durable before the drop is (prefix durability) */
    kv_status st = kv_writer_sync_all(db, err);
    if (st != KV_OK) return st;
    r = kv_host_req_new(db, KV_HOST_DROP, version, a->n ? a->n : 1);
    if (!r) return kv_seterr(err, KV_NO_SPACE, 0, "shared heap exhausted (drop)");
    r->n = a->n;
    memcpy(r->data, a->prefix, a->n);
    return kv_host_call(db, r, NULL, err);
}

kv_status kv_drop_prefix(kv_db *db, const void *prefix, size_t n, kv_err *err)
{
    drop_arg a;
    kv_batch *txn;
    kv_status st;
    if (!db || (n && !prefix)) return kv_seterr(err, KV_INVALID, 0, "kv_drop_prefix: db and prefix are required");
    st = kv_check_usable(db, err);
    if (st != KV_OK) return st;
    if (db->opt->read_only)
        return kv_seterr(err, KV_READ_ONLY, 0, "cannot drop: the database was opened ReadOnly");
    if (n > KV_DROP_PREFIX_MAX)
        return kv_seterr(err, KV_INVALID, 0, "drop prefix of %zu bytes exceeds the limit of %d",
                         n, KV_DROP_PREFIX_MAX);
    txn = kv_batch_new();
    if (!txn) return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory");
    /* every transaction that read anything before the drop conflicts */
    txn->txn = 1;
    txn->n_txn_writes = UINT32_MAX;
    a.prefix = prefix;
    a.n = (uint32_t)n;
    st = kv_writer_special(db, KV_WQ_DROP, &a, txn, NULL, err);
    kv_batch_free(txn);
    return st;
}

kv_status kv_drop_all(kv_db *db, kv_err *err)
{
    return kv_drop_prefix(db, "", 0, err);
}
