/*
 * drops.c - drop lists, the coverage test, and the host's maintenance of
 * drops (see drops.h).
 */
#include "drops.h"

#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "db.h"
#include "hash.h"
#include "host_req.h"
#include "writer.h"
#include "err.h"
#include "manifest.h"
#include "version.h"
#include "vlog.h"

static const uint8_t *ent_prefix(const kv_drop_list *l, const kv_drop_ent *e)
{
    return (const uint8_t *)l + e->off;
}

/* Orders (prefix, version): bytes, then shorter first, then version. */
static int cmp_prefix(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    if (c) return c;
    return (an > bn) - (an < bn);
}

static int drop_matches(const kv_drop_list *l, const kv_drop_ent *e, uint64_t ver,
                        uint64_t read_version)
{
    (void)l;
    return e->version <= read_version && ver <= e->version;
}

/* 1 if a drop of l covers the entry (k, ver) for a reader at read_version,
 * or with any_version, if some drop's prefix is a prefix of k at all. */
static int match(const kv_drop_list *l, const uint8_t *k, size_t n, uint64_t ver,
                 uint64_t read_version, int any_version)
{
    if (l->n_lens > KV_DROP_LENS) { /* many lengths: every drop */
        for (uint32_t i = 0; i < l->n; i++) {
            const kv_drop_ent *e = &l->e[i];
            if (e->len <= n && memcmp(k, ent_prefix(l, e), e->len) == 0 &&
                (any_version || drop_matches(l, e, ver, read_version)))
                return 1;
        }
        return 0;
    }
    for (uint32_t j = 0; j < l->n_lens && l->lens[j] <= n; j++) {
        uint32_t len = l->lens[j], lo = 0, hi = l->n;
        while (lo < hi) { /* first entry >= k[0..len) */
            uint32_t mid = lo + (hi - lo) / 2;
            const kv_drop_ent *e = &l->e[mid];
            if (cmp_prefix(ent_prefix(l, e), e->len, k, len) < 0) lo = mid + 1;
            else hi = mid;
        }
        for (; lo < l->n; lo++) {
            const kv_drop_ent *e = &l->e[lo];
            if (e->len != len || memcmp(ent_prefix(l, e), k, len) != 0) break;
            if (any_version || drop_matches(l, e, ver, read_version)) return 1;
        }
    }
    return 0;
}

int kv_drops_cover(const kv_drop_list *l, const uint8_t *k, size_t n, uint64_t ver,
                   uint64_t read_version)
{
    if (!l || !l->n) return 0;
    return match(l, k, n, ver, read_version, 0);
}

int kv_drops_cover_memo(const kv_drop_list *l, kv_drops_memo *m, const uint8_t *k, size_t n,
                        uint64_t ver, uint64_t read_version)
{
    uint32_t span;
    if (!l || !l->n) return 0;
    if (m->list == l && m->len && n >= m->len && memcmp(k, m->key, m->len) == 0) return 0;
    if (match(l, k, n, ver, read_version, 0)) return 1;
    /* no drop touches k's first `span` bytes: neither does one any key
     * that starts with them (every drop prefix is at most span long) */
    span = l->n_lens <= KV_DROP_LENS ? l->lens[l->n_lens - 1] : KV_DROP_PREFIX_MAX + 1;
    if (span <= n && !match(l, k, n, 0, 0, 1)) {
        m->list = l;
        m->len = span;
        memcpy(m->key, k, span);
    }
    return 0;
}

void kv_drops_get(const kv_drop_list *l, uint32_t i, kv_drop *out)
{
    const kv_drop_ent *e = &l->e[i];
    memset(out, 0, sizeof *out);
    out->version = e->version;
    out->len = e->len;
    memcpy(out->prefix, ent_prefix(l, e), e->len);
}

static int cmp_drop(const void *a, const void *b)
{
    const kv_drop *x = a, *y = b;
    int c = cmp_prefix(x->prefix, x->len, y->prefix, y->len);
    if (c) return c;
    return (x->version > y->version) - (x->version < y->version);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Builds a list from d[0..n) (sorted here). */
static kv_status build(kv_db *db, kv_drop *d, size_t n, uint64_t *out, kv_err *err)
{
    size_t bytes = sizeof(kv_drop_list) + n * sizeof(kv_drop_ent), off;
    uint32_t lens[KV_DROP_LENS + 1], n_lens = 0;
    kv_drop_list *l;
    uint64_t at;
    *out = 0;
    if (!n) return KV_OK;
    if (n > UINT32_MAX / 2) return kv_seterr(err, KV_NO_SPACE, 0, "too many drops");
    qsort(d, n, sizeof *d, cmp_drop);
    for (size_t i = 0; i < n; i++) {
        int seen = 0;
        bytes += d[i].len;
        for (uint32_t j = 0; j < n_lens && j < KV_DROP_LENS; j++) seen |= lens[j] == d[i].len;
        if (!seen && n_lens <= KV_DROP_LENS) lens[n_lens++] = d[i].len;
    }
    at = kv_heap_alloc_db(db, bytes);
    if (!at) return kv_seterr(err, KV_NO_SPACE, 0, "shared heap exhausted (%zu dropped ranges)", n);
    l = kv_at(db, at);
    atomic_store(&l->refs, 1);
    l->n = (uint32_t)n;
    l->n_lens = n_lens;
    if (n_lens <= KV_DROP_LENS) {
        qsort(lens, n_lens, sizeof lens[0], cmp_u32);
        memcpy(l->lens, lens, n_lens * sizeof lens[0]);
    }
    off = sizeof(kv_drop_list) + n * sizeof(kv_drop_ent);
    for (size_t i = 0; i < n; i++) {
        l->e[i].version = d[i].version;
        l->e[i].len = d[i].len;
        l->e[i].off = (uint32_t)off;
        memcpy((uint8_t *)l + off, d[i].prefix, d[i].len);
        off += d[i].len;
    }
    *out = at;
    return KV_OK;
}

kv_status kv_drops_from(kv_db *db, const kv_drop *d, size_t n, uint64_t *out, kv_err *err)
{
    kv_drop *copy = n ? malloc(n * sizeof *copy) : NULL;
    kv_status st;
    if (n && !copy) return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory (drops)");
    if (n) memcpy(copy, d, n * sizeof *copy);
    st = build(db, copy, n, out, err);
    free(copy);
    return st;
}

kv_status kv_drops_derive(kv_db *db, uint64_t base, const kv_drop *add, const uint64_t *retire,
                          uint32_t n_retire, uint64_t *out, kv_err *err)
{
    const kv_drop_list *b = kv_at(db, base);
    size_t n = 0, cap = (b ? b->n : 0) + 1;
    kv_drop *d = malloc(cap * sizeof *d);
    kv_status st;
    *out = 0;
    if (!d) return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory (drops)");
    for (uint32_t i = 0; b && i < b->n; i++) {
        int gone = 0;
        for (uint32_t k = 0; k < n_retire && !gone; k++) gone = retire[k] == b->e[i].version;
        if (!gone) kv_drops_get(b, i, &d[n++]);
    }
    if (add) d[n++] = *add;
    st = build(db, d, n, out, err);
    free(d);
    return st;
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

static int has_prefix(const uint8_t *k, size_t n, const kv_drop *d)
{
    return n >= d->len && memcmp(k, d->prefix, d->len) == 0;
}

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

/* The oldest version any memtable may hold (UINT64_MAX if all are empty). */
static uint64_t mem_min_version(kv_db *db)
{
    kv_shared *sh = db->sh;
    uint64_t m = UINT64_MAX;
    kv_mutex_lock(&sh->db_mu);
    for (uint32_t i = 0; i <= sh->n_imm; i++) {
        uint64_t off = i < sh->n_imm ? sh->imm[i] : sh->mem;
        kv_memtable *mt = kv_mt_at(db, off);
        if (mt && !kv_sl_empty(kv_mt_sl(db, mt)) && atomic_load(&mt->min_version) < m)
            m = atomic_load(&mt->min_version);
    }
    kv_mutex_unlock(&sh->db_mu);
    return m;
}

int kv_drops_pending(const kv_drop_list *l, const kv_table_meta *t, uint64_t upto)
{
    for (uint32_t i = 0; l && i < l->n; i++) {
        kv_drop d;
        kv_drops_get(l, i, &d);
        if (d.version > upto || t->min_version > d.version || t->dropped_upto >= d.version ||
            !overlaps(t, &d))
            continue;
        if (t->max_version <= d.version && inside(t, &d)) continue;
        return 1;
    }
    return 0;
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
    uint64_t horizon, mem_min;
    if (!l) return 0;
    horizon = kv_snap_horizon(db);
    mem_min = mem_min_version(db);
    for (uint32_t i = 0; i < l->n && e->n_retire < KV_MAX_DROPS; i++) {
        kv_drop dd;
        const kv_drop *d = &dd;
        int still = 0;
        kv_drops_get(l, i, &dd);
        if (d->version > horizon) continue; /* someone may read below it */
        for (int level = 0; level < (int)v->n_levels; level++)
            for (uint32_t k = 0; k < v->count[level]; k++) {
                const kv_table_meta *t = kv_ver_table(db, v, level, k);
                if (deleting(e, level, t->id)) continue;
                if (!atomic_load(&t->compacting) && t->max_version <= d->version && inside(t, d)) {
                    if (kv_vedit_delete(e, level, t->id, NULL) != KV_OK) return e->n_del || e->n_retire;
                    continue;
                }
                if (t->min_version <= d->version && t->dropped_upto < d->version &&
                    overlaps(t, d))
                    still = 1;
            }
        if (!still && mem_min > d->version) e->drop_retire[e->n_retire++] = d->version;
    }
    return e->n_del || e->n_retire;
}

/* The value-log bytes of the tables e removed from v count as discardable
 * (compaction never read them).  v is pinned by the caller; vset.mu is
 * not held. */
static void discard_removed(kv_db *db, const kv_version *v, const kv_vedit *e)
{
    for (size_t i = 0; i < e->n_del; i++) {
        int level = e->del_levels[i];
        for (uint32_t k = 0; level < (int)v->n_levels && k < v->count[level]; k++) {
            const kv_table_meta *t = kv_ver_table(db, v, level, k);
            kv_err err;
            if (t->id != e->del_ids[i]) continue;
            if (kv_vlog_discard_table(db, t, &err) != KV_OK)
                kv_log(db, KV_LOG_WARNING, "counting the values of dropped table %llu: %s",
                       (unsigned long long)t->id, err.msg);
            break;
        }
    }
}

void kv_drops_tick(kv_db *db)
{
    kv_version *v = kv_ver_at(db, db->sh->vset.current);
    kv_vedit e;
    kv_err err;
    if (!v || !v->drops || atomic_load(&db->sh->bg_status) != KV_OK) return;
    kv_vedit_init(&e);
    if (kv_drops_maintenance(db, v, &e)) {
        kv_version_ref(v); /* keeps the removed tables readable */
        if (kv_apply_edit(db, &e, &err) != KV_OK)
            kv_log(db, KV_LOG_WARNING, "applying dropped ranges failed: %s", err.msg);
        else {
            if (e.n_del || e.n_retire)
                kv_log(db, KV_LOG_INFO, "dropped ranges: %zu tables removed, %u drops done",
                       e.n_del, e.n_retire);
            if (e.n_del && !db->opt->in_memory) {
                kv_mutex_unlock(&db->sh->vset.mu);
                discard_removed(db, v, &e);
                kv_mutex_lock(&db->sh->vset.mu);
            }
        }
        kv_version_unref(db, v);
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
    st = kv_host_call(db, r, NULL, err);
    /* the value-log files holding nothing but the dropped keys can go
     * without GC reading them (here, while this leader is alone) */
    if (st == KV_OK) kv_vlog_mark_dropped(db, a->prefix, a->n);
    return st;
}

kv_status kv_drop_prefix(kv_db *db, const void *prefix, size_t n, kv_err *err)
{
    drop_arg a;
    kv_batch *txn;
    kv_status st;
    uint64_t token;
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
    /* the drop "writes" the prefix's token: a transaction that noted the
     * bare prefix as read (a range read of it) before the drop conflicts */
    token = kv_key_hash(n ? prefix : "", n);
    txn->txn = 1;
    txn->txn_writes = &token;
    txn->n_txn_writes = 1;
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
