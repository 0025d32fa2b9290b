/*
 * read.c - point reads (kv_get): the newest version <= the read version,
 * looked up source by source in view order (memtables, level-0 tables
 * newest first, then one table per deeper level), stopping at the first
 * source that has the key (view.h explains why that is the newest).
 */
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "err.h"
#include "ikey.h"
#include "vlog.h"

static kv_status copy_out(kv_buf *out, const kv_vstruct *vs, kv_err *err)
{
    if (!out) return KV_OK;
    if (vs->value_len > out->cap) {
        size_t cap = out->cap ? out->cap : 64;
        char *p;
        while (cap < vs->value_len) cap *= 2;
        p = realloc(out->data, cap);
        if (!p) return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory reading a value");
        out->data = p;
        out->cap = cap;
    }
    if (vs->value_len) memcpy(out->data, vs->value, vs->value_len);
    out->len = vs->value_len;
    return KV_OK;
}

/* Called with the newest entry found while its bytes are still pinned. */
typedef kv_status (*found_fn)(void *ctx, kv_db *db, const kv_vstruct *vs, uint64_t version,
                              kv_err *err);

/* Looks ikey's user key up in one table.  1 = found (fn called),
 * 0 = not here, -1 = error in *st. */
static int table_get(kv_db *db, const kv_table_meta *tm, const uint8_t *ikey, size_t n,
                     const kv_sst_read_opts *ro, found_fn fn, void *ctx, kv_status *st,
                     kv_err *err)
{
    kv_table_handle *h;
    kv_sst_iter it;
    size_t un = kv_ikey_ulen(n);
    int found = 0;
    uint8_t small[256], *raw = NULL;

    /* an ingested table: one entry per key, at the table's version */
    if (tm->global_version && tm->global_version > kv_ikey_version(ikey, n)) return 0;
    *st = kv_tcache_get(db, tm, &h, err);
    if (*st != KV_OK) return -1;
    if (!kv_sst_may_contain(h->sst, ikey, un)) {
        KV_STAT_ADD(db, bloom_useful, 1);
        kv_tcache_release(db, h);
        return 0;
    }
    kv_sst_iter_init(&it, h->sst, ro);
    if (tm->global_version) { /* its keys carry version 0: the last of each key */
        raw = n <= sizeof small ? small : malloc(n);
        if (!raw) {
            kv_sst_iter_done(&it);
            kv_tcache_release(db, h);
            *st = kv_seterr(err, KV_NO_MEMORY, 0, "out of memory");
            return -1;
        }
        memcpy(raw, ikey, un);
        kv_ikey_put_ts(raw + un, 0);
        kv_sst_iter_seek(&it, raw, n);
        if (raw != small) free(raw);
    } else
        kv_sst_iter_seek(&it, ikey, n);
    if (it.valid && it.key_len == n && memcmp(it.key, ikey, un) == 0) {
        kv_vstruct vs;
        if (kv_vstruct_decode(it.val, it.val_len, &vs) != 0) {
            *st = kv_seterr(err, KV_CORRUPTION, 0, "table %llu: malformed value struct",
                            (unsigned long long)tm->id);
            found = -1;
        } else {
            uint64_t ver = tm->global_version ? tm->global_version
                                              : kv_ikey_version(it.key, it.key_len);
            *st = fn(ctx, db, &vs, ver, err);
            found = *st == KV_OK ? 1 : -1;
        }
    } else if (it.status != KV_OK) {
        *st = kv_err_copy(err, &it.err);
        found = -1;
    }
    kv_sst_iter_done(&it);
    kv_tcache_release(db, h);
    return found;
}

/* Wraps the caller's callback: an entry a drop covers (drops.h) reads as
 * a tombstone at its version. */
typedef struct drop_filter {
    found_fn fn;
    void *ctx;
    const kv_drop_list *drops;
    const uint8_t *key;
    size_t klen;
    uint64_t read_version;
} drop_filter;

static kv_status filtered(void *p, kv_db *db, const kv_vstruct *vs, uint64_t version, kv_err *err)
{
    drop_filter *f = p;
    if (kv_drops_cover(f->drops, f->key, f->klen, version, f->read_version)) {
        kv_vstruct gone;
        memset(&gone, 0, sizeof gone);
        gone.meta = KV_META_DELETE;
        return f->fn(f->ctx, db, &gone, version, err);
    }
    return f->fn(f->ctx, db, vs, version, err);
}

/* The newest entry of key with version <= read_version (0: the newest
 * visible version, read together with the view) - tombstones included -
 * source by source; fn sees it.  *found = 0 if none. */
static kv_status lookup(kv_db *db, uint64_t read_version, const void *key, size_t klen,
                        int fill_cache, found_fn fn, void *ctx, int *found, kv_err *err)
{
    kv_view *v;
    kv_version *ver;
    kv_vstruct vs;
    kv_sst_read_opts sro;
    uint64_t version = 0;
    uint8_t small[256], *ikey = small;
    size_t n = klen + KV_TS_SIZE;
    kv_status st = KV_OK;
    int f = 0;
    drop_filter df;

    if (n > sizeof small && !(ikey = malloc(n)))
        return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory in a lookup");
    /* the view and the newest version together: a drop or compaction
     * newer than the view is never visible at the version read */
    v = kv_view_pin_read(db, read_version ? NULL : &read_version);
    memcpy(ikey, key, klen);
    kv_ikey_put_ts(ikey + klen, read_version);
    ver = kv_ver_at(db, v->version);
    if (ver && ver->drops) {
        df.fn = fn;
        df.ctx = ctx;
        df.drops = kv_at(db, ver->drops);
        df.key = key;
        df.klen = klen;
        df.read_version = read_version;
        fn = filtered;
        ctx = &df;
    }
    for (uint32_t i = 0; i < v->n_mem && !f; i++)
        if (kv_mt_get(db, kv_mt_at(db, v->mems[i]), key, klen, read_version, &vs, &version)) {
            st = fn(ctx, db, &vs, version, err);
            f = st == KV_OK ? 1 : -1;
        }
    sro.cache = &db->cache_ops;
    sro.fill_cache = fill_cache;
    sro.verify = db->opt->checksum_verification_mode >= KV_VERIFY_ON_BLOCK_READ;
    if (!f && ver) {
        kv_tcache_sweep(db, ver);
        for (uint32_t i = 0; i < ver->count[0] && !f; i++) {
            kv_table_meta *tm = kv_ver_table(db, ver, 0, i);
            if (kv_ukey_cmp(key, klen, kv_tm_smallest(tm), kv_ikey_ulen(tm->smallest_len)) < 0 ||
                kv_ukey_cmp(key, klen, kv_tm_largest(tm), kv_ikey_ulen(tm->largest_len)) > 0)
                continue;
            f = table_get(db, tm, ikey, n, &sro, fn, ctx, &st, err);
        }
        for (uint32_t l = 1; l < ver->n_levels && !f; l++) {
            uint32_t idx;
            kv_table_meta *tm;
            if (!ver->count[l]) continue;
            idx = kv_level_find(db, ver, (int)l, key, klen);
            if (idx >= ver->count[l]) continue;
            tm = kv_ver_table(db, ver, (int)l, idx);
            if (kv_ukey_cmp(key, klen, kv_tm_smallest(tm), kv_ikey_ulen(tm->smallest_len)) < 0)
                continue;
            f = table_get(db, tm, ikey, n, &sro, fn, ctx, &st, err);
        }
    }
    kv_view_unpin(db, v);
    if (ikey != small) free(ikey);
    *found = f > 0;
    if (f < 0 && st == KV_OK) st = kv_seterr(err, KV_IO, 0, "lookup failed");
    return st;
}

/* ---- kv_get ---- */

typedef struct get_ctx {
    kv_buf *out;
    kv_entry_meta meta;
    int visible;        /* not deleted, not expired */
    uint64_t now;
} get_ctx;

static kv_status get_found(void *p, kv_db *db, const kv_vstruct *vs, uint64_t version,
                           kv_err *err)
{
    get_ctx *c = p;
    c->meta.version = version;
    c->meta.expires_at = vs->expires_at;
    c->meta.user_meta = vs->user_meta;
    c->meta.deleted = 0;
    c->meta.in_vlog = (vs->meta & KV_META_VALUE_PTR) != 0;
    c->visible = !(vs->meta & KV_META_DELETE) && !(vs->expires_at && vs->expires_at <= c->now);
    if (!c->visible || !c->out) return KV_OK; /* (an existence check reads no value) */
    return kv_read_value(db, vs, c->out, err);
}

kv_status kv_read_value(kv_db *db, const kv_vstruct *vs, kv_buf *out, kv_err *err)
{
    kv_vptr ptr;
    kv_vlog_entry e;
    kv_vhandle *h = NULL;
    kv_vstruct inl;
    kv_status st;
    if (!(vs->meta & KV_META_VALUE_PTR)) return copy_out(out, vs, err);
    if (kv_vptr_decode(vs->value, vs->value_len, &ptr) != 0)
        return kv_seterr(err, KV_CORRUPTION, 0, "malformed value pointer (%zu bytes)",
                         vs->value_len);
    st = kv_vlog_read(db, &ptr, 0, &e, &h, err);
    if (st == KV_OK) {
        inl = *vs;
        inl.value = e.value;
        inl.value_len = e.vlen;
        st = copy_out(out, &inl, err);
    }
    if (h) kv_vlog_release(db, h);
    return st;
}

kv_status kv_get(kv_db *db, const kv_read_options *ro, const void *key, size_t klen,
                 kv_buf *val, kv_entry_meta *meta, kv_err *err)
{
    get_ctx c;
    uint64_t read_version;
    kv_status st;
    int found = 0;

    if (!db || !key || klen == 0)
        return kv_seterr(err, KV_INVALID, 0, "kv_get: db and a non-empty key are required");
    if (klen > KV_MAX_KEY_SIZE)
        return kv_seterr(err, KV_TOO_BIG, 0, "key of %zu bytes exceeds the limit of %d bytes",
                         klen, KV_MAX_KEY_SIZE);
    st = kv_check_usable(db, err);
    if (st != KV_OK) return st;
    KV_STAT_ADD(db, gets, 1);
    read_version = ro && ro->version ? ro->version : 0; /* 0: latest, read with the view */
    memset(&c, 0, sizeof c);
    c.out = val;
    c.now = db->env->unix_seconds(db->env);
    st = lookup(db, read_version, key, klen, ro ? ro->fill_cache : 1, get_found, &c, &found, err);
    if (st != KV_OK) return st;
    if (!found || !c.visible) return KV_NOT_FOUND;
    if (meta) *meta = c.meta;
    return KV_OK;
}

/* ---- the newest committed entry (GC, conditional batches) ---- */

typedef struct newest_ctx {
    kv_vstruct *vs;
    uint8_t *ptr;
    uint64_t *version;
} newest_ctx;

static kv_status newest_found(void *p, kv_db *db, const kv_vstruct *vs, uint64_t version,
                              kv_err *err)
{
    newest_ctx *c = p;
    (void)db;
    (void)err;
    *c->vs = *vs;
    c->vs->value = NULL; /* the bytes are not kept */
    if ((vs->meta & KV_META_VALUE_PTR) && vs->value_len == KV_VPTR_SIZE)
        memcpy(c->ptr, vs->value, KV_VPTR_SIZE);
    *c->version = version;
    return KV_OK;
}

kv_status kv_lookup_newest(kv_db *db, const void *key, size_t klen, kv_vstruct *vs, uint8_t *ptr,
                           uint64_t *version, int *found, kv_err *err)
{
    newest_ctx c = {vs, ptr, version};
    return lookup(db, 0, key, klen, 0, newest_found, &c, found, err);
}
