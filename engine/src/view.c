/*
 * view.c - building, publishing, pinning and releasing views (view.h).
 */
#include "view.h"

#include "db.h"
#include "err.h"

kv_status kv_view_install(kv_db *db, kv_view **old, kv_err *err)
{
    kv_shared *sh = db->sh;
    uint64_t off = kv_heap_alloc_db(db, sizeof(kv_view));
    kv_view *v;
    uint32_t i;

    *old = NULL;
    if (!off)
        return kv_seterr(err, KV_NO_SPACE, 0,
                         "shared heap exhausted allocating a view (SharedHeapSize)");
    v = kv_at(db, off);
    atomic_store(&v->refs, 1);
    v->n_mem = 0;
    if (sh->mem) {
        v->mems[v->n_mem++] = sh->mem;
        kv_mt_ref(kv_mt_at(db, sh->mem));
    }
    for (i = sh->n_imm; i > 0; i--) {
        v->mems[v->n_mem++] = sh->imm[i - 1];
        kv_mt_ref(kv_mt_at(db, sh->imm[i - 1]));
    }
    v->version = sh->vset.current;
    if (v->version) kv_version_ref(kv_ver_at(db, v->version));
    v->id = ++sh->next_view_id;
    v->next = 0;
    v->prev = sh->views_tail;
    if (sh->views_tail) ((kv_view *)kv_at(db, sh->views_tail))->next = off;
    else sh->views_head = off;
    sh->views_tail = off;
    *old = kv_at(db, sh->view);
    sh->view = off;
    return KV_OK;
}

uint64_t kv_view_oldest_id(kv_db *db)
{
    kv_view *v = kv_at(db, db->sh->views_head);
    return v ? v->id : db->sh->next_view_id + 1;
}

uint64_t kv_view_current_id(kv_db *db)
{
    kv_view *v = kv_at(db, db->sh->view);
    return v ? v->id : 0;
}

kv_view *kv_view_pin_read(kv_db *db, uint64_t *visible)
{
    kv_view *v;
    kv_mutex_lock(&db->sh->db_mu);
    v = kv_at(db, db->sh->view);
    if (v) atomic_fetch_add_explicit(&v->refs, 1, memory_order_relaxed);
    if (visible) *visible = atomic_load_explicit(&db->sh->visible_version, memory_order_acquire);
    kv_mutex_unlock(&db->sh->db_mu);
    return v;
}

kv_view *kv_view_pin(kv_db *db)
{
    return kv_view_pin_read(db, NULL);
}

void kv_view_unpin(kv_db *db, kv_view *v)
{
    uint32_t i;
    if (!v || atomic_fetch_sub_explicit(&v->refs, 1, memory_order_acq_rel) != 1) return;
    kv_mutex_lock(&db->sh->db_mu);
    if (v->prev) ((kv_view *)kv_at(db, v->prev))->next = v->next;
    else db->sh->views_head = v->next;
    if (v->next) ((kv_view *)kv_at(db, v->next))->prev = v->prev;
    else db->sh->views_tail = v->prev;
    kv_mutex_unlock(&db->sh->db_mu);
    for (i = 0; i < v->n_mem; i++) kv_mt_unref(db, kv_mt_at(db, v->mems[i]));
    if (v->version) kv_version_unref(db, kv_ver_at(db, v->version));
    kv_heap_free_db(db, kv_off_of(db, v));
}
