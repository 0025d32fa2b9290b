/*
 * iter_sources.c - kv_iiter adapters for a memtable, one table, and a
 * level >= 1 read as the concatenation of its tables (see iter.h).
 */
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "err.h"
#include "ikey.h"
#include "iter.h"
#include "skiplist.h"

/* ---- memtable ---- */

typedef struct mem_iter {
    kv_iiter base;
    kv_sl_iter it;
} mem_iter;

static void m_first(kv_iiter *i) { kv_sl_iter_first(&((mem_iter *)i)->it); }
static void m_last(kv_iiter *i) { kv_sl_iter_last(&((mem_iter *)i)->it); }
static void m_seek(kv_iiter *i, const uint8_t *k, size_t n) { kv_sl_iter_seek(&((mem_iter *)i)->it, k, n); }
static void m_seek_prev(kv_iiter *i, const uint8_t *k, size_t n)
{
    kv_sl_iter_seek_for_prev(&((mem_iter *)i)->it, k, n);
}
static void m_next(kv_iiter *i) { kv_sl_iter_next(&((mem_iter *)i)->it); }
static void m_prev(kv_iiter *i) { kv_sl_iter_prev(&((mem_iter *)i)->it); }
static int m_valid(const kv_iiter *i) { return kv_sl_iter_valid(&((const mem_iter *)i)->it); }
static const uint8_t *m_key(const kv_iiter *i, size_t *n) { return kv_sl_iter_key(&((const mem_iter *)i)->it, n); }
static const uint8_t *m_value(const kv_iiter *i, size_t *n)
{
    return kv_sl_iter_value(&((const mem_iter *)i)->it, n);
}
static kv_status m_status(const kv_iiter *i, kv_err *err)
{
    (void)i;
    (void)err;
    return KV_OK;
}
static void m_destroy(kv_iiter *i) { free(i); }

static const kv_iiter_vt mem_vt = {m_first, m_last,  m_seek,  m_seek_prev, m_next,   m_prev,
                                   m_valid, m_key,   m_value, m_status,    m_destroy};

kv_iiter *kv_iiter_mem(kv_db *db, const kv_memtable *mt)
{
    return kv_iiter_sl(kv_mt_sl(db, mt));
}

kv_iiter *kv_iiter_sl(const kv_sl *sl)
{
    mem_iter *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->base.vt = &mem_vt;
    kv_sl_iter_init(&m->it, sl);
    return &m->base;
}

/* ---- one table ---- */

typedef struct table_iter {
    kv_iiter base;
    kv_db *db;
    kv_table_handle *h;
    kv_sst_iter it;
    uint64_t gv;               /* ingested table: every entry's version (keys hold 0) */
    int inited;
    kv_status open_status;
    kv_err open_err;
} table_iter;

#define TI(i) ((table_iter *)(i))

static int t_ok(kv_iiter *i)
{
    return TI(i)->inited;
}

/* An ingested table's entries are presented at its version: the version
 * suffix of the iterator's (reconstructed, private) key is patched after
 * every move.  All entries share the version, so the order is unchanged. */
static void t_patch(table_iter *t)
{
    if (t->gv && t->it.valid && t->it.key_len >= KV_TS_SIZE)
        kv_ikey_put_ts(t->it.key + t->it.key_len - KV_TS_SIZE, t->gv);
}

/* 1 if the current (raw) entry has the user key of the target k[0..n). */
static int t_same_user_key(const table_iter *t, const uint8_t *k, size_t n)
{
    return t->it.valid && t->it.key_len == n &&
           memcmp(t->it.key, k, n - KV_TS_SIZE) == 0;
}

static void t_seek_raw(table_iter *t, const uint8_t *k, size_t n, int prev)
{
    uint8_t small[256], *raw = n <= sizeof small ? small : malloc(n);
    uint64_t x = kv_ikey_version(k, n);
    if (!raw) {
        t->it.valid = 0;
        return;
    }
    memcpy(raw, k, n - KV_TS_SIZE);
    kv_ikey_put_ts(raw + n - KV_TS_SIZE, 0); /* the only entry of that key */
    if (!prev) {
        /* first entry >= (key, x): (key, gv) qualifies only if gv <= x */
        kv_sst_iter_seek(&t->it, raw, n);
        if (t->gv > x && t_same_user_key(t, k, n)) kv_sst_iter_next(&t->it);
    } else {
        /* last entry <= (key, x): (key, gv) qualifies only if gv >= x */
        kv_sst_iter_seek_for_prev(&t->it, raw, n);
        if (t->gv < x && t_same_user_key(t, k, n)) kv_sst_iter_prev(&t->it);
    }
    if (raw != small) free(raw);
}

static void t_first(kv_iiter *i)
{
    if (!t_ok(i)) return;
    kv_sst_iter_first(&TI(i)->it);
    t_patch(TI(i));
}
static void t_last(kv_iiter *i)
{
    if (!t_ok(i)) return;
    kv_sst_iter_last(&TI(i)->it);
    t_patch(TI(i));
}
static void t_seek(kv_iiter *i, const uint8_t *k, size_t n)
{
    if (!t_ok(i)) return;
    if (TI(i)->gv) t_seek_raw(TI(i), k, n, 0);
    else kv_sst_iter_seek(&TI(i)->it, k, n);
    t_patch(TI(i));
}
static void t_seek_prev(kv_iiter *i, const uint8_t *k, size_t n)
{
    if (!t_ok(i)) return;
    if (TI(i)->gv) t_seek_raw(TI(i), k, n, 1);
    else kv_sst_iter_seek_for_prev(&TI(i)->it, k, n);
    t_patch(TI(i));
}
static void t_next(kv_iiter *i)
{
    kv_sst_iter_next(&TI(i)->it);
    t_patch(TI(i));
}
static void t_prev(kv_iiter *i)
{
    kv_sst_iter_prev(&TI(i)->it);
    t_patch(TI(i));
}
static int t_valid(const kv_iiter *i) { return ((const table_iter *)i)->inited && ((const table_iter *)i)->it.valid; }
static const uint8_t *t_key(const kv_iiter *i, size_t *n)
{
    *n = ((const table_iter *)i)->it.key_len;
    return ((const table_iter *)i)->it.key;
}
static const uint8_t *t_value(const kv_iiter *i, size_t *n)
{
    *n = ((const table_iter *)i)->it.val_len;
    return ((const table_iter *)i)->it.val;
}
static kv_status t_status(const kv_iiter *i, kv_err *err)
{
    const table_iter *t = (const table_iter *)i;
    if (t->open_status != KV_OK) return kv_err_copy(err, &t->open_err);
    if (t->it.status != KV_OK) return kv_err_copy(err, &t->it.err);
    return KV_OK;
}
static void t_destroy(kv_iiter *i)
{
    table_iter *t = TI(i);
    if (t->inited) kv_sst_iter_done(&t->it);
    if (t->h) kv_tcache_release(t->db, t->h);
    free(t);
}

static const kv_iiter_vt table_vt = {t_first, t_last,  t_seek,  t_seek_prev, t_next,   t_prev,
                                     t_valid, t_key,   t_value, t_status,    t_destroy};

kv_iiter *kv_iiter_sst(const kv_sst *sst)
{
    table_iter *t = calloc(1, sizeof *t);
    kv_sst_read_opts ro;
    if (!t) return NULL;
    memset(&ro, 0, sizeof ro);
    t->base.vt = &table_vt;
    kv_sst_iter_init(&t->it, sst, &ro);
    t->inited = 1;
    return &t->base;
}

kv_iiter *kv_iiter_table(kv_db *db, const kv_table_meta *tm, const kv_sst_read_opts *ro)
{
    table_iter *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->base.vt = &table_vt;
    t->db = db;
    t->gv = tm->global_version;
    t->open_status = kv_tcache_get(db, tm, &t->h, &t->open_err);
    if (t->open_status == KV_OK) {
        kv_sst_iter_init(&t->it, t->h->sst, ro);
        t->inited = 1;
    }
    return &t->base;
}

/* ---- a level >= 1 ---- */

typedef struct level_iter {
    kv_iiter base;
    kv_db *db;
    const kv_version *v;
    int level;
    kv_sst_read_opts ro;
    int64_t cur;             /* table index, -1 none */
    kv_iiter *t;             /* iterator on table cur */
    kv_status status;
    kv_err err;
} level_iter;

#define LI(i) ((level_iter *)(i))

static int l_open(level_iter *l, int64_t idx)
{
    kv_status st;
    if (l->cur == idx && l->t) return 1;
    if (l->t) {
        kv_status s2 = l->t->vt->status(l->t, &l->err);
        if (s2 != KV_OK && l->status == KV_OK) l->status = s2;
        l->t->vt->destroy(l->t);
        l->t = NULL;
    }
    l->cur = -1;
    if (idx < 0 || idx >= (int64_t)l->v->count[l->level]) return 0;
    l->t = kv_iiter_table(l->db, kv_ver_table(l->db, l->v, l->level, (uint32_t)idx), &l->ro);
    if (!l->t) {
        if (l->status == KV_OK)
            l->status = kv_seterr(&l->err, KV_NO_MEMORY, 0, "out of memory opening a table");
        return 0;
    }
    st = l->t->vt->status(l->t, &l->err);
    if (st != KV_OK) {
        if (l->status == KV_OK) l->status = st;
        l->t->vt->destroy(l->t);
        l->t = NULL;
        return 0;
    }
    l->cur = idx;
    return 1;
}

/* Moves forward from table cur while the current table is exhausted. */
static void l_skip_forward(level_iter *l)
{
    while (l->t && !l->t->vt->valid(l->t) && l->status == KV_OK) {
        if (l->t->vt->status(l->t, NULL) != KV_OK) {
            l->status = l->t->vt->status(l->t, &l->err);
            return;
        }
        if (!l_open(l, l->cur + 1)) return;
        l->t->vt->first(l->t);
    }
}

static void l_skip_backward(level_iter *l)
{
    while (l->t && !l->t->vt->valid(l->t) && l->status == KV_OK) {
        if (l->t->vt->status(l->t, NULL) != KV_OK) {
            l->status = l->t->vt->status(l->t, &l->err);
            return;
        }
        if (!l_open(l, l->cur - 1)) return;
        l->t->vt->last(l->t);
    }
}

static void lv_first(kv_iiter *i)
{
    level_iter *l = LI(i);
    if (!l_open(l, 0)) return;
    l->t->vt->first(l->t);
    l_skip_forward(l);
}

static void lv_last(kv_iiter *i)
{
    level_iter *l = LI(i);
    if (!l_open(l, (int64_t)l->v->count[l->level] - 1)) return;
    l->t->vt->last(l->t);
    l_skip_backward(l);
}

static void lv_seek(kv_iiter *i, const uint8_t *k, size_t n)
{
    level_iter *l = LI(i);
    uint32_t idx = kv_level_find(l->db, l->v, l->level, k, kv_ikey_ulen(n));
    if (!l_open(l, idx)) return;
    l->t->vt->seek(l->t, k, n);
    l_skip_forward(l);
}

static void lv_seek_prev(kv_iiter *i, const uint8_t *k, size_t n)
{
    level_iter *l = LI(i);
    int64_t idx = kv_level_find(l->db, l->v, l->level, k, kv_ikey_ulen(n));
    if (idx >= (int64_t)l->v->count[l->level]) idx = (int64_t)l->v->count[l->level] - 1;
    else {
        kv_table_meta *tm = kv_ver_table(l->db, l->v, l->level, (uint32_t)idx);
        if (kv_ikey_cmp(kv_tm_smallest(tm), tm->smallest_len, k, n) > 0) idx--;
    }
    if (!l_open(l, idx)) return;
    l->t->vt->seek_for_prev(l->t, k, n);
    l_skip_backward(l);
}

static void lv_next(kv_iiter *i)
{
    level_iter *l = LI(i);
    if (!l->t) return;
    l->t->vt->next(l->t);
    l_skip_forward(l);
}

static void lv_prev(kv_iiter *i)
{
    level_iter *l = LI(i);
    if (!l->t) return;
    l->t->vt->prev(l->t);
    l_skip_backward(l);
}

static int lv_valid(const kv_iiter *i)
{
    const level_iter *l = (const level_iter *)i;
    return l->t && l->status == KV_OK && l->t->vt->valid(l->t);
}

static const uint8_t *lv_key(const kv_iiter *i, size_t *n)
{
    const level_iter *l = (const level_iter *)i;
    return l->t->vt->key(l->t, n);
}

static const uint8_t *lv_value(const kv_iiter *i, size_t *n)
{
    const level_iter *l = (const level_iter *)i;
    return l->t->vt->value(l->t, n);
}

static kv_status lv_status(const kv_iiter *i, kv_err *err)
{
    const level_iter *l = (const level_iter *)i;
    if (l->status != KV_OK) return kv_err_copy(err, &l->err);
    if (l->t) return l->t->vt->status(l->t, err);
    return KV_OK;
}

static void lv_destroy(kv_iiter *i)
{
    level_iter *l = LI(i);
    if (l->t) l->t->vt->destroy(l->t);
    free(l);
}

static const kv_iiter_vt level_vt = {lv_first, lv_last,  lv_seek,  lv_seek_prev, lv_next,   lv_prev,
                                     lv_valid, lv_key,   lv_value, lv_status,    lv_destroy};

kv_iiter *kv_iiter_level(kv_db *db, const kv_version *v, int level, const kv_sst_read_opts *ro)
{
    level_iter *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->base.vt = &level_vt;
    l->db = db;
    l->v = v;
    l->level = level;
    l->ro = *ro;
    l->cur = -1;
    return &l->base;
}
