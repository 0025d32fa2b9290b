/*
 * version.c - table descriptors, versions, edits and their installation
 * (see version.h).
 */
#include "version.h"

#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "err.h"
#include "ikey.h"

void kv_vedit_init(kv_vedit *e)
{
    memset(e, 0, sizeof *e);
}

void kv_vedit_free(kv_vedit *e)
{
    free(e->del_ids);
    free(e->del_levels);
    free(e->add);
    memset(e, 0, sizeof *e);
}

kv_status kv_vedit_delete(kv_vedit *e, int level, uint64_t id, kv_err *err)
{
    if (e->n_del == e->cap_del) {
        size_t cap = e->cap_del ? e->cap_del * 2 : 16;
        uint64_t *ids = realloc(e->del_ids, cap * sizeof *ids);
        int *lv;
        if (!ids) return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory building an edit");
        e->del_ids = ids;
        lv = realloc(e->del_levels, cap * sizeof *lv);
        if (!lv) return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory building an edit");
        e->del_levels = lv;
        e->cap_del = cap;
    }
    e->del_ids[e->n_del] = id;
    e->del_levels[e->n_del++] = level;
    return KV_OK;
}

kv_status kv_vedit_add(kv_vedit *e, int level, uint64_t meta, kv_err *err)
{
    if (e->n_add == e->cap_add) {
        size_t cap = e->cap_add ? e->cap_add * 2 : 16;
        kv_vedit_entry *a = realloc(e->add, cap * sizeof *a);
        if (!a) return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory building an edit");
        e->add = a;
        e->cap_add = cap;
    }
    e->add[e->n_add].level = level;
    e->add[e->n_add++].meta = meta;
    return KV_OK;
}

kv_status kv_tm_new(kv_db *db, const kv_sst_props *p, const uint8_t *smallest, size_t slen,
                    const uint8_t *largest, size_t llen, uint64_t *off, kv_err *err)
{
    kv_table_meta *t;
    *off = kv_heap_alloc_db(db, sizeof(kv_table_meta) + slen + llen);
    if (!*off)
        return kv_seterr(err, KV_NO_SPACE, 0,
                         "shared heap exhausted allocating a table descriptor (SharedHeapSize)");
    t = kv_tm_at(db, *off);
    atomic_store(&t->refs, 0);
    atomic_store(&t->compacting, 0);
    t->id = p->table_id;
    t->size = p->file_size;
    t->num_entries = p->num_entries;
    t->num_deletes = p->num_deletes;
    t->num_value_ptrs = p->num_value_ptrs;
    t->vlog_bytes = p->vlog_bytes;
    t->min_version = p->min_version;
    t->max_version = p->max_version;
    t->compression = p->compression;
    t->global_version = 0;
    t->dropped_upto = 0;
    t->smallest_len = (uint32_t)slen;
    t->largest_len = (uint32_t)llen;
    memcpy(t->keys, smallest, slen);
    memcpy(t->keys + slen, largest, llen);
    return KV_OK;
}

void kv_tm_discard(kv_db *db, uint64_t off)
{
    kv_heap_free_db(db, off);
}

static int tm_cmp_smallest(kv_db *db, uint64_t a, uint64_t b)
{
    kv_table_meta *x = kv_tm_at(db, a), *y = kv_tm_at(db, b);
    return kv_ikey_cmp(kv_tm_smallest(x), x->smallest_len, kv_tm_smallest(y), y->smallest_len);
}

static void sort_level(kv_db *db, uint64_t *t, uint32_t n)
{
    /* insertion sort: levels arrive nearly sorted (base order + a few adds) */
    for (uint32_t i = 1; i < n; i++) {
        uint64_t x = t[i];
        uint32_t j = i;
        while (j > 0 && tm_cmp_smallest(db, t[j - 1], x) > 0) {
            t[j] = t[j - 1];
            j--;
        }
        t[j] = x;
    }
}

kv_status kv_version_empty(kv_db *db, int n_levels, uint64_t *out, kv_err *err)
{
    kv_version *v;
    *out = kv_heap_alloc_db(db, sizeof(kv_version));
    if (!*out)
        return kv_seterr(err, KV_NO_SPACE, 0, "shared heap exhausted allocating a version");
    v = kv_ver_at(db, *out);
    atomic_store(&v->refs, 1);
    v->n_levels = (uint32_t)n_levels;
    v->total = 0;
    v->drops = 0;
    return KV_OK;
}

static int edit_deletes(const kv_vedit *e, int level, uint64_t id)
{
    for (size_t i = 0; i < e->n_del; i++)
        if (e->del_ids[i] == id && e->del_levels[i] == level) return 1;
    return 0;
}

kv_status kv_version_apply(kv_db *db, const kv_version *base, const kv_vedit *e, uint64_t *out,
                           kv_err *err)
{
    uint32_t total = base->total + (uint32_t)e->n_add, n = 0, found_del = 0;
    kv_version *v;
    int level;

    *out = kv_heap_alloc_db(db, sizeof(kv_version) + (size_t)total * sizeof(uint64_t));
    if (!*out)
        return kv_seterr(err, KV_NO_SPACE, 0, "shared heap exhausted allocating a version");
    v = kv_ver_at(db, *out);
    atomic_store(&v->refs, 1);
    v->n_levels = base->n_levels;
    for (level = 0; level < (int)base->n_levels; level++) {
        uint32_t start = n;
        v->start[level] = n;
        if (level == 0) /* newest first: this edit's L0 tables lead */
            for (size_t i = e->n_add; i > 0; i--)
                if (e->add[i - 1].level == 0) v->tables[n++] = e->add[i - 1].meta;
        for (uint32_t i = 0; i < base->count[level]; i++) {
            uint64_t t = base->tables[base->start[level] + i];
            if (e->n_del && edit_deletes(e, level, kv_tm_at(db, t)->id)) {
                found_del++;
                continue;
            }
            v->tables[n++] = t;
        }
        if (level > 0) {
            for (size_t i = 0; i < e->n_add; i++)
                if (e->add[i].level == level) v->tables[n++] = e->add[i].meta;
            sort_level(db, v->tables + start, n - start);
        }
        v->count[level] = n - start;
    }
    v->total = n;
    if (found_del != e->n_del) {
        kv_heap_free_db(db, *out);
        *out = 0;
        return kv_seterr(err, KV_CORRUPTION, 0,
                         "version edit deletes %zu tables but only %u are in the version",
                         e->n_del, found_del);
    }
    if (e->drop_add || e->n_retire) {
        kv_status st = kv_drops_derive(db, base->drops, e->drop_add, e->drop_retire,
                                       e->n_retire, &v->drops, err);
        if (st != KV_OK) {
            kv_heap_free_db(db, *out);
            *out = 0;
            return st;
        }
    } else {
        v->drops = base->drops;
        kv_drops_ref(db, v->drops);
    }
    for (uint32_t i = 0; i < n; i++)
        atomic_fetch_add_explicit(&kv_tm_at(db, v->tables[i])->refs, 1, memory_order_relaxed);
    return KV_OK;
}

void kv_version_ref(kv_version *v)
{
    atomic_fetch_add_explicit(&v->refs, 1, memory_order_relaxed);
}

static void table_unref(kv_db *db, uint64_t off)
{
    kv_table_meta *t = kv_tm_at(db, off);
    char path[KV_PATH_MAX + 32];
    kv_err err;
    if (atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) != 1) return;
    /* No version lists it: no reader in any process can reach it. */
    kv_file_path(path, sizeof path, db->dir, t->id, "sst");
    if (kv_may_delete_tables(db) && db->env->remove(db->env, path, &err) != KV_OK)
        kv_log(db, KV_LOG_WARNING, "could not remove obsolete table: %s", err.msg);
    atomic_fetch_add(&db->sh->vset.deletion_epoch, 1);
    kv_heap_free_db(db, off);
}

void kv_version_unref(kv_db *db, kv_version *v)
{
    if (!v || atomic_fetch_sub_explicit(&v->refs, 1, memory_order_acq_rel) != 1) return;
    for (uint32_t i = 0; i < v->total; i++) table_unref(db, v->tables[i]);
    kv_drops_unref(db, v->drops);
    kv_heap_free_db(db, kv_off_of(db, v));
}

kv_status kv_version_install(kv_db *db, uint64_t off, const kv_vedit *e, kv_err *err)
{
    kv_shared *sh = db->sh;
    uint64_t old = sh->vset.current, flushed = e ? e->flushed_mem : 0;
    kv_view *old_view = NULL;
    kv_status st;
    uint32_t i;

    /* current is written under both vset.mu and db_mu, so readers may hold
     * either (views are built under db_mu) */
    kv_mutex_lock(&sh->db_mu);
    sh->vset.current = off;
    if (flushed) { /* take it off the immutable list (it is the oldest) */
        for (i = 0; i < sh->n_imm && sh->imm[i] != flushed; i++) {}
        if (i < sh->n_imm) {
            memmove(&sh->imm[i], &sh->imm[i + 1], (sh->n_imm - i - 1) * sizeof sh->imm[0]);
            sh->n_imm--;
        } else
            flushed = 0;
    }
    st = kv_view_install(db, &old_view, err);
    if (st == KV_OK && flushed) {
        atomic_fetch_or(&kv_mt_at(db, flushed)->flags, KV_MT_FLUSHED);
        sh->flushes_done++;
        kv_cond_broadcast(&sh->flushed_cv);
        kv_cond_broadcast(&sh->mem_cv);
    }
    if (st != KV_OK) sh->vset.current = old;
    kv_mutex_unlock(&sh->db_mu);
    if (st != KV_OK) return st;
    kv_view_unpin(db, old_view);
    if (flushed) kv_mt_unref(db, kv_mt_at(db, flushed)); /* the list's reference */
    if (old) kv_version_unref(db, kv_ver_at(db, old));
    sh->vset.edits++;
    kv_cond_broadcast(&sh->vset.cv);
    return KV_OK;
}

kv_version *kv_version_current(kv_db *db)
{
    kv_version *v;
    kv_mutex_lock(&db->sh->vset.mu);
    v = kv_ver_at(db, db->sh->vset.current);
    if (v) kv_version_ref(v);
    kv_mutex_unlock(&db->sh->vset.mu);
    return v;
}

uint32_t kv_level_find(kv_db *db, const kv_version *v, int level, const uint8_t *ukey, size_t n)
{
    uint32_t lo = 0, hi = v->count[level];
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        kv_table_meta *t = kv_ver_table(db, v, level, mid);
        if (kv_ukey_cmp(kv_tm_largest(t), kv_ikey_ulen(t->largest_len), ukey, n) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

uint64_t kv_level_size(kv_db *db, const kv_version *v, int level)
{
    uint64_t s = 0;
    for (uint32_t i = 0; i < v->count[level]; i++) s += kv_ver_table(db, v, level, i)->size;
    return s;
}
