/*
 * db_iter.c - the public kv_iter: a merge of every source of a pinned
 * view, read at one version, with tombstones, expired entries and older
 * versions hidden, bounds and prefix applied, in one direction.
 *
 * Forward, entries arrive as (user key ascending, version descending): the
 * first visible entry of a user key is its answer and the rest of that key
 * is skipped.  Reverse, they arrive as (user key descending, version
 * ascending): the answer is the last visible entry of the group, so it is
 * copied aside while the group is consumed.
 *
 * Value prefetch (prefetch_values = N): a second merge over the same view
 * runs N entries ahead of the iterator and asks the kernel to start
 * reading the value-log ranges of the values it passes (madvise
 * WILLNEED), so values that are not in memory are read in parallel
 * instead of one page fault at a time.  Asking for values that are
 * already in memory only costs system calls, so the cursor samples every
 * 16th value's residency and, after a run of resident samples, switches
 * to the cheap kind for the rest of the iteration: it stays CACHE_AHEAD
 * entries ahead and pulls each value into the CPU caches.  Values come
 * out of the log in key order, which is not the order they were written
 * in, so without this every value is a cache and TLB miss the hardware
 * prefetcher cannot foresee (1 KiB values: scan 0.57-0.63M -> 0.78-1.0M
 * entries/s).  Forward, the cursor starts (and is built, the first time)
 * only when the iterator itself meets a value in a log, and rests again
 * after IDLE_AFTER inline values in a row: a second merge over small
 * values is pure cost.
 *
 * A long-lived iterator must not keep flushed memtables alive: every few
 * hundred steps it checks whether a memtable of its view was flushed and,
 * if so, re-pins the current view and re-seeks to where it was.  Reading
 * at the same registered version makes the switch invisible.
 */
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "err.h"
#include "ikey.h"
#include "iter.h"
#include "pending.h"
#include "vlog.h"

#define REFRESH_EVERY 256
/* entries the cursor runs ahead once values are known to be in memory */
#define CACHE_AHEAD 8
/* inline values in a row after which the cursor rests (forward) */
#define IDLE_AFTER 64

struct kv_iter {
    kv_db *db;
    kv_iter_options o;
    uint8_t *lower, *upper, *prefix;   /* owned copies of the bounds */
    kv_view *view;
    kv_merge *m;
    kv_merge *ahead;                   /* prefetch cursor, NULL without prefetch */
    long ahead_gap;                    /* entries the cursor is ahead by */
    unsigned pf_seen, pf_resident_run; /* residency sampling */
    int pf_resident;                   /* values proved resident: CPU-cache prefetch only */
    unsigned pf_inline_run;            /* visible entries in a row without a value pointer */
    int ahead_idle;                    /* forward: resting until a value pointer shows up */
    int ahead_failed;                  /* the cursor could not be built: no prefetch */
    kv_sst_read_opts ro;
    int snap_slot;
    uint64_t version;                  /* read version */
    uint64_t now;                      /* unix seconds for expiry */
    unsigned steps;
    int valid;
    /* current entry */
    const uint8_t *key;                /* user key */
    size_t key_len;
    kv_vstruct vs;
    uint64_t entry_version;
    /* skip target (forward) / saved answer (reverse) */
    kv_buf skip, saved_key, saved_val;
    int have_skip;
    kv_vhandle *vpin;                  /* value log mapping of the current value */
    kv_vhandle *pf_pin;                /* value log mapping the cursor last prefetched from */
    /* transaction iterators: pending writes (as of creation) and the
     * callback that records each key returned as read */
    kv_pending *pending;
    uint64_t pending_seq;
    kv_drops_memo drops_memo;          /* for the view's drop list (reset with the view) */
    uint64_t n_keys, n_vlog_reads;     /* kv_iter_counters */
    void (*on_key)(void *ctx, const uint8_t *key, size_t n);
    void *on_key_ctx;
    kv_status status;
    kv_err err;
};

static uint8_t *dup_bytes(const void *p, size_t n)
{
    uint8_t *d = malloc(n ? n : 1);
    if (d && n) memcpy(d, p, n);
    return d;
}

static int buf_set(kv_buf *b, const void *p, size_t n)
{
    if (n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        char *d;
        while (cap < n) cap *= 2;
        d = realloc(b->data, cap);
        if (!d) return -1;
        b->data = d;
        b->cap = cap;
    }
    if (n) memcpy(b->data, p, n);
    b->len = n;
    return 0;
}

/* Builds a merge over it->view into *out. */
static kv_status build_merge_into(kv_iter *it, kv_merge **out)
{
    kv_db *db = it->db;
    kv_view *v = it->view;
    kv_version *ver = kv_ver_at(db, v->version);
    int n = 0, cap = (int)v->n_mem + (ver ? (int)ver->count[0] + (int)ver->n_levels : 0);
    kv_iiter **c = malloc(sizeof *c * (size_t)(cap + 1));
    if (!c) return kv_seterr(&it->err, KV_NO_MEMORY, 0, "out of memory creating an iterator");
    /* pending writes first: for equal keys the first source wins */
    if (it->pending) c[n++] = kv_pending_iter(it->pending, it->o.reverse, it->pending_seq);
    for (uint32_t i = 0; i < v->n_mem; i++) c[n++] = kv_iiter_mem(db, kv_mt_at(db, v->mems[i]));
    if (ver) {
        for (uint32_t i = 0; i < ver->count[0]; i++)
            c[n++] = kv_iiter_table(db, kv_ver_table(db, ver, 0, i), &it->ro);
        for (uint32_t l = 1; l < ver->n_levels; l++)
            if (ver->count[l]) c[n++] = kv_iiter_level(db, ver, (int)l, &it->ro);
    }
    for (int i = 0; i < n; i++)
        if (!c[i]) {
            for (int j = 0; j < n; j++)
                if (c[j]) c[j]->vt->destroy(c[j]);
            free(c);
            return kv_seterr(&it->err, KV_NO_MEMORY, 0, "out of memory creating an iterator");
        }
    *out = kv_merge_new(c, n, it->o.reverse);
    if (!*out) {
        for (int j = 0; j < n; j++) c[j]->vt->destroy(c[j]);
        free(c);
        return kv_seterr(&it->err, KV_NO_MEMORY, 0, "out of memory creating an iterator");
    }
    free(c);
    return KV_OK;
}

static int want_prefetch(const kv_iter *it)
{
    return it->o.prefetch_values > 0 && !it->o.key_only;
}

static kv_status build_merge(kv_iter *it)
{
    kv_status st = build_merge_into(it, &it->m);
    /* (forward, the cursor is built when the first value in a log shows up) */
    if (st == KV_OK && want_prefetch(it) && it->o.reverse) {
        /* prefetching is a hint: without the cursor we just do not prefetch */
        if (build_merge_into(it, &it->ahead) != KV_OK) it->ahead = NULL;
        it->status = KV_OK;
    }
    return st;
}

kv_status kv_iter_new(kv_db *db, const kv_iter_options *io, kv_iter **out, kv_err *err)
{
    return kv_iter_new_txn(db, io, 0, NULL, 0, NULL, NULL, out, err);
}

kv_status kv_iter_new_txn(kv_db *db, const kv_iter_options *io, uint64_t version,
                          kv_pending *pending, uint64_t pending_seq,
                          void (*on_key)(void *, const uint8_t *, size_t),
                          void *ctx, kv_iter **out, kv_err *err)
{
    kv_iter *it;
    kv_status st;
    if (!db || !out) return kv_seterr(err, KV_INVALID, 0, "kv_iter_new: db and out are required");
    st = kv_check_usable(db, err);
    /* early-placed values get their real pointers first (pending.h) */
    if (st == KV_OK && pending) st = kv_pending_settle(pending, err);
    if (st != KV_OK) return st;
    it = calloc(1, sizeof *it);
    if (!it) return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory creating an iterator");
    it->db = db;
    if (io) it->o = *io;
    else it->o.fill_cache = 1;
    if (version) it->o.version = version;
    it->pending = pending;
    it->pending_seq = pending_seq;
    it->on_key = on_key;
    it->on_key_ctx = ctx;
    it->snap_slot = -1;
    if ((it->o.lower && !(it->lower = dup_bytes(it->o.lower, it->o.lower_len))) ||
        (it->o.upper && !(it->upper = dup_bytes(it->o.upper, it->o.upper_len))) ||
        (it->o.prefix && !(it->prefix = dup_bytes(it->o.prefix, it->o.prefix_len)))) {
        kv_iter_free(it);
        return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory creating an iterator");
    }
    st = kv_snap_register(db, it->o.version, &it->snap_slot, &it->version, err);
    if (st != KV_OK) {
        kv_iter_free(it);
        return st;
    }
    it->now = db->env->unix_seconds(db->env);
    it->ro.cache = &db->cache_ops;
    it->ro.fill_cache = it->o.fill_cache;
    it->ro.verify = db->opt->checksum_verification_mode == KV_VERIFY_ON_BLOCK_READ ||
                    db->opt->checksum_verification_mode == KV_VERIFY_ON_TABLE_AND_BLOCK_READ;
    it->view = kv_view_pin(db);
    it->drops_memo.len = 0;
    kv_tcache_sweep(db, kv_ver_at(db, it->view->version));
    st = build_merge(it);
    if (st != KV_OK) {
        kv_err_copy(err, &it->err);
        kv_iter_free(it);
        return st;
    }
    *out = it;
    return KV_OK;
}

static void release_value(kv_iter *it)
{
    if (it->vpin) kv_vlog_release(it->db, it->vpin);
    it->vpin = NULL;
}

void kv_iter_free(kv_iter *it)
{
    if (!it) return;
    release_value(it);
    if (it->pf_pin) kv_vlog_release(it->db, it->pf_pin);
    kv_merge_free(it->ahead);
    kv_merge_free(it->m);
    if (it->view) kv_view_unpin(it->db, it->view);
    if (it->snap_slot >= 0) kv_snap_unregister(it->db, it->snap_slot);
    free(it->lower);
    free(it->upper);
    free(it->prefix);
    free(it->skip.data);
    free(it->saved_key.data);
    free(it->saved_val.data);
    free(it);
}

/* ---- bounds ---- */

static int has_prefix(const kv_iter *it, const uint8_t *k, size_t n)
{
    return n >= it->o.prefix_len && memcmp(k, it->prefix, it->o.prefix_len) == 0;
}

/* 1 if k is past the end in the iteration direction (stop), -1 if it is
 * outside the range but iteration should continue, 0 if inside. */
static int out_of_range(const kv_iter *it, const uint8_t *k, size_t n)
{
    if (!it->o.reverse) {
        if (it->upper && kv_ukey_cmp(k, n, it->upper, it->o.upper_len) >= 0) return 1;
        if (it->prefix && !has_prefix(it, k, n))
            return kv_ukey_cmp(k, n, it->prefix, it->o.prefix_len) > 0 ? 1 : -1;
        if (it->lower && kv_ukey_cmp(k, n, it->lower, it->o.lower_len) < 0) return -1;
    } else {
        if (it->lower && kv_ukey_cmp(k, n, it->lower, it->o.lower_len) < 0) return 1;
        if (it->prefix && !has_prefix(it, k, n))
            return kv_ukey_cmp(k, n, it->prefix, it->o.prefix_len) < 0 ? 1 : -1;
        if (it->upper && kv_ukey_cmp(k, n, it->upper, it->o.upper_len) >= 0) return -1;
    }
    return 0;
}

static int hidden(const kv_iter *it, const kv_vstruct *vs)
{
    return (vs->meta & KV_META_DELETE) || (vs->expires_at && vs->expires_at <= it->now);
}

/* Deleted by a drop (drops.h) in the pinned view's version. */
static int covered(kv_iter *it, const uint8_t *k, size_t un, uint64_t ver)
{
    const kv_version *v = kv_ver_at(it->db, it->view->version);
    return v && v->drops &&
           kv_drops_cover_memo(kv_at(it->db, v->drops), &it->drops_memo, k, un,
                               ver, it->version);
}

static void set_error(kv_iter *it)
{
    if (it->status == KV_OK) it->status = kv_merge_status(it->m, &it->err);
}

/* ---- forward ---- */

static void find_forward(kv_iter *it)
{
    it->valid = 0;
    while (kv_merge_valid(it->m)) {
        size_t kn, vn, un;
        const uint8_t *k = kv_merge_key(it->m, &kn), *v;
        int r;
        uint64_t ver;
        un = kv_ikey_ulen(kn);
        r = out_of_range(it, k, un);
        if (r > 0) return;
        ver = kv_ikey_version(k, kn);
        if (r < 0 || (ver > it->version && ver != KV_PENDING_VERSION) ||
            (it->have_skip && un == it->skip.len && memcmp(k, it->skip.data, un) == 0 &&
             (!it->o.all_versions || ver >= it->entry_version))) {
            kv_merge_next(it->m);
            continue;
        }
        v = kv_merge_value(it->m, &vn);
        if (kv_vstruct_decode(v, vn, &it->vs) != 0) {
            it->status = kv_seterr(&it->err, KV_CORRUPTION, 0,
                                   "malformed value struct for a key of %zu bytes", un);
            return;
        }
        if (buf_set(&it->skip, k, un) != 0) {
            it->status = kv_seterr(&it->err, KV_NO_MEMORY, 0, "out of memory iterating");
            return;
        }
        it->have_skip = 1;
        it->entry_version = ver;
        if ((!it->o.all_versions && hidden(it, &it->vs)) || covered(it, k, un, ver)) {
            kv_merge_next(it->m);
            continue;
        }
        it->key = k;
        it->key_len = un;
        it->valid = 1;
        it->n_keys++;
        if (it->on_key) it->on_key(it->on_key_ctx, k, un);
        return;
    }
    set_error(it);
}

/* ---- reverse ---- */

static void find_reverse(kv_iter *it)
{
    it->valid = 0;
    while (kv_merge_valid(it->m)) {
        size_t kn, un;
        const uint8_t *k = kv_merge_key(it->m, &kn);
        int r, have = 0;
        un = kv_ikey_ulen(kn);
        r = out_of_range(it, k, un);
        if (r > 0) break;
        if (r < 0) {
            kv_merge_next(it->m);
            continue;
        }
        if (buf_set(&it->skip, k, un) != 0) goto oom;
        /* consume the group of this user key, oldest version first */
        while (kv_merge_valid(it->m)) {
            size_t vn;
            const uint8_t *v;
            uint64_t ver;
            k = kv_merge_key(it->m, &kn);
            if (kv_ikey_ulen(kn) != it->skip.len || memcmp(k, it->skip.data, it->skip.len) != 0)
                break;
            ver = kv_ikey_version(k, kn);
            if (ver <= it->version || ver == KV_PENDING_VERSION) {
                v = kv_merge_value(it->m, &vn);
                if (buf_set(&it->saved_val, v, vn) != 0) goto oom;
                it->entry_version = ver;
                have = 1;
                if (it->o.all_versions) break;
            }
            kv_merge_next(it->m);
        }
        if (!have) continue;
        if (kv_vstruct_decode((const uint8_t *)it->saved_val.data, it->saved_val.len, &it->vs) !=
            0) {
            it->status = kv_seterr(&it->err, KV_CORRUPTION, 0,
                                   "malformed value struct for a key of %zu bytes", un);
            return;
        }
        if (covered(it, (const uint8_t *)it->skip.data, it->skip.len, it->entry_version)) {
            if (it->o.all_versions) kv_merge_next(it->m);
            continue;
        }
        if (it->o.all_versions) kv_merge_next(it->m);
        else if (hidden(it, &it->vs))
            continue;
        if (buf_set(&it->saved_key, it->skip.data, it->skip.len) != 0) goto oom;
        it->key = (const uint8_t *)it->saved_key.data;
        it->key_len = it->saved_key.len;
        it->valid = 1;
        it->n_keys++;
        if (it->on_key) it->on_key(it->on_key_ctx, it->key, it->key_len);
        return;
    }
    set_error(it);
    return;
oom:
    it->status = kv_seterr(&it->err, KV_NO_MEMORY, 0, "out of memory iterating");
}

static void find(kv_iter *it)
{
    /* it->vpin stays: the next value is likely in the same file */
    if (it->status != KV_OK) {
        it->valid = 0;
        return;
    }
    if (it->o.reverse) find_reverse(it);
    else find_forward(it);
}

/* ---- value prefetch ---- */

/* Moves the cursor one entry on, prefetching its value if it is in a
 * value log and visible at the read version. */
static void ahead_step(kv_iter *it)
{
    size_t kn, vn;
    const uint8_t *k, *v;
    kv_vstruct vs;
    int is_ptr;
    if (!kv_merge_valid(it->ahead)) return;
    k = kv_merge_key(it->ahead, &kn);
    if (kv_ikey_version(k, kn) <= it->version) {
        v = kv_merge_value(it->ahead, &vn);
        is_ptr = kv_vstruct_decode(v, vn, &vs) == 0 && (vs.meta & KV_META_VALUE_PTR);
        it->pf_inline_run = is_ptr ? 0 : it->pf_inline_run + 1;
        if (is_ptr) {
            kv_vptr p;
            if (kv_vptr_decode(vs.value, vs.value_len, &p) == 0) {
                int sample = (it->pf_seen++ & 15) == 0;
                if (it->pf_resident) {
                    kv_vlog_prefetch_cache(it->db, &p, &it->pf_pin);
                } else if (sample || !it->pf_resident_run) {
                    int r = kv_vlog_prefetch(it->db, &p, 0);
                    if (sample) it->pf_resident_run = r == 1 ? it->pf_resident_run + 1 : 0;
                    if (it->pf_resident_run >= 4) it->pf_resident = 1;
                }
            }
        }
        it->ahead_gap++;
    }
    kv_merge_next(it->ahead);
}

/* How far ahead the cursor runs. */
static long ahead_want(const kv_iter *it)
{
    return it->pf_resident ? CACHE_AHEAD : it->o.prefetch_values;
}

/* Puts the cursor where the iterator's merge is, then N entries on. */
static void ahead_reset(kv_iter *it, const uint8_t *ikey, size_t n)
{
    if (!it->o.reverse) {
        it->ahead_idle = 1; /* ahead_wake starts it */
        return;
    }
    if (!it->ahead) return;
    if (ikey) kv_merge_seek(it->ahead, ikey, n);
    else kv_merge_rewind(it->ahead);
    it->ahead_gap = 0;
    while (it->ahead_gap < ahead_want(it) && kv_merge_valid(it->ahead)) ahead_step(it);
}

/* Forward: a resting cursor starts from the current entry once that
 * entry's value is in a log (built the first time). */
static void ahead_wake(kv_iter *it)
{
    size_t n;
    const uint8_t *k;
    if (it->o.reverse || !it->ahead_idle || !it->valid || !(it->vs.meta & KV_META_VALUE_PTR) ||
        !want_prefetch(it) || it->ahead_failed)
        return;
    if (!it->ahead && build_merge_into(it, &it->ahead) != KV_OK) {
        /* prefetching is a hint: without the cursor we just do not prefetch */
        it->ahead = NULL;
        it->ahead_failed = 1;
        it->status = KV_OK;
        return;
    }
    k = kv_merge_key(it->m, &n);
    kv_merge_seek(it->ahead, k, n);
    it->ahead_idle = 0;
    it->pf_inline_run = 0;
    it->ahead_gap = 0;
    while (it->ahead_gap < ahead_want(it) && kv_merge_valid(it->ahead)) ahead_step(it);
}

/* ---- positioning ---- */

static void seek_internal(kv_iter *it, const uint8_t *ukey, size_t n, uint64_t version)
{
    uint8_t small[256], *ik = small;
    if (n + KV_TS_SIZE > sizeof small && !(ik = malloc(n + KV_TS_SIZE))) {
        it->status = kv_seterr(&it->err, KV_NO_MEMORY, 0, "out of memory seeking");
        it->valid = 0;
        return;
    }
    memcpy(ik, ukey, n);
    kv_ikey_put_ts(ik + n, version);
    kv_merge_seek(it->m, ik, n + KV_TS_SIZE);
    ahead_reset(it, ik, n + KV_TS_SIZE);
    if (ik != small) free(ik);
}

/* Smallest key greater than every key with prefix p: p with its last
 * non-0xff byte incremented and the rest cut; 0 if there is none. */
static size_t prefix_successor(const uint8_t *p, size_t n, uint8_t *out)
{
    while (n > 0 && p[n - 1] == 0xff) n--;
    if (!n) return 0;
    memcpy(out, p, n);
    out[n - 1]++;
    return n;
}

static void position(kv_iter *it, const uint8_t *k, size_t n)
{
    it->have_skip = 0;
    it->steps = 0;
    if (!it->o.reverse) {
        const uint8_t *start = k;
        size_t sn = n;
        if (it->lower && (!start || kv_ukey_cmp(start, sn, it->lower, it->o.lower_len) < 0)) {
            start = it->lower;
            sn = it->o.lower_len;
        }
        if (it->prefix && (!start || kv_ukey_cmp(start, sn, it->prefix, it->o.prefix_len) < 0)) {
            start = it->prefix;
            sn = it->o.prefix_len;
        }
        if (start) seek_internal(it, start, sn, it->version);
        else {
            kv_merge_rewind(it->m);
            ahead_reset(it, NULL, 0);
        }
    } else {
        /* last key <= k, and < upper, and within the prefix */
        uint8_t *succ = NULL;
        const uint8_t *end = k;
        size_t en = n;
        uint64_t ver = 0; /* (k, version 0) is k's last internal key */
        if (it->upper && (!end || kv_ukey_cmp(end, en, it->upper, it->o.upper_len) >= 0)) {
            end = it->upper;
            en = it->o.upper_len;
            ver = UINT64_MAX; /* first internal key of upper: exclusive */
        }
        if (it->prefix) {
            succ = malloc(it->o.prefix_len ? it->o.prefix_len : 1);
            if (succ) {
                size_t sn = prefix_successor(it->prefix, it->o.prefix_len, succ);
                if (sn && (!end || kv_ukey_cmp(end, en, succ, sn) >= 0)) {
                    end = succ;
                    en = sn;
                    ver = UINT64_MAX;
                }
            }
        }
        if (end) seek_internal(it, end, en, ver);
        else {
            kv_merge_rewind(it->m);
            ahead_reset(it, NULL, 0);
        }
        free(succ);
    }
    find(it);
    ahead_wake(it);
}

void kv_iter_rewind(kv_iter *it)
{
    position(it, NULL, 0);
}

void kv_iter_seek(kv_iter *it, const void *key, size_t klen)
{
    position(it, key, klen);
}

/* Re-pins the current view if a memtable of ours was flushed. */
static void maybe_refresh(kv_iter *it)
{
    kv_db *db = it->db;
    kv_view *v = it->view;
    int stale = 0;
    kv_status st;
    for (uint32_t i = 0; i < v->n_mem && !stale; i++)
        stale = (atomic_load_explicit(&kv_mt_at(db, v->mems[i])->flags, memory_order_relaxed) &
                 KV_MT_FLUSHED) != 0;
    if (!stale) return;
    kv_merge_free(it->m);
    kv_merge_free(it->ahead);
    it->m = NULL;
    it->ahead = NULL;
    kv_view_unpin(db, v);
    it->view = kv_view_pin(db);
    it->drops_memo.len = 0;
    kv_tcache_sweep(db, kv_ver_at(db, it->view->version));
    st = build_merge(it);
    if (st != KV_OK) {
        it->status = st;
        return;
    }
    /* continue after the key we are on */
    if (!it->o.reverse) {
        seek_internal(it, (const uint8_t *)it->skip.data, it->skip.len,
                      it->o.all_versions ? it->entry_version : it->version);
        it->have_skip = 1;
    } else {
        seek_internal(it, (const uint8_t *)it->skip.data, it->skip.len,
                      it->o.all_versions ? it->entry_version + 1 : UINT64_MAX);
        /* a pending write of the current key is presented as exactly that
         * target: step past it, the key was already returned */
        while (!it->o.all_versions && kv_merge_valid(it->m)) {
            size_t kn;
            const uint8_t *k = kv_merge_key(it->m, &kn);
            if (kv_ikey_ulen(kn) != it->skip.len || memcmp(k, it->skip.data, it->skip.len) != 0)
                break;
            kv_merge_next(it->m);
        }
    }
}

void kv_iter_next(kv_iter *it)
{
    if (!it->valid) return;
    if (++it->steps % REFRESH_EVERY == 0) {
        maybe_refresh(it);
        if (it->status != KV_OK) {
            it->valid = 0;
            return;
        }
        if (!it->m) return;
    }
    if (!it->o.reverse) kv_merge_next(it->m);
    find(it);
    if (it->ahead_idle) {
        ahead_wake(it); /* (forward) */
    } else if (it->ahead && it->valid) {
        /* keep the cursor N entries ahead */
        it->ahead_gap--;
        while (it->ahead_gap < ahead_want(it) && kv_merge_valid(it->ahead)) ahead_step(it);
        if (!it->o.reverse && it->pf_inline_run >= IDLE_AFTER) it->ahead_idle = 1;
    }
}

int kv_iter_valid(const kv_iter *it)
{
    return it && it->valid;
}

const void *kv_iter_key(const kv_iter *it, size_t *klen)
{
    *klen = it->key_len;
    return it->key;
}

void kv_iter_meta(const kv_iter *it, kv_entry_meta *meta)
{
    meta->version = it->entry_version;
    meta->expires_at = it->vs.expires_at;
    meta->user_meta = it->vs.user_meta;
    meta->deleted = (it->vs.meta & KV_META_DELETE) != 0;
    meta->in_vlog = (it->vs.meta & KV_META_VALUE_PTR) != 0;
}

int kv_iter_vptr(const kv_iter *it, kv_vptr *p)
{
    if (!it->valid || !(it->vs.meta & KV_META_VALUE_PTR)) return -1;
    return kv_vptr_decode(it->vs.value, it->vs.value_len, p);
}

kv_status kv_iter_value(kv_iter *it, const void **val, size_t *vlen, kv_err *err)
{
    if (!it->valid) return kv_seterr(err, KV_INVALID, 0, "iterator is not positioned");
    if (it->o.key_only)
        return kv_seterr(err, KV_INVALID, 0, "iterator was created key-only");
    if (it->vs.meta & KV_META_VALUE_PTR) {
        kv_vptr p;
        kv_vlog_entry e;
        kv_status st;
        if (kv_vptr_decode(it->vs.value, it->vs.value_len, &p) != 0)
            return kv_seterr(err, KV_CORRUPTION, 0, "malformed value pointer");
        st = kv_vlog_read(it->db, &p, 0, &e, &it->vpin, err);
        if (st != KV_OK) return st;
        it->n_vlog_reads++;
        *val = e.value;
        *vlen = e.vlen;
        return KV_OK;
    }
    *val = it->vs.value;
    *vlen = it->vs.value_len;
    return KV_OK;
}

kv_status kv_iter_status(const kv_iter *it, kv_err *err)
{
    if (it->status != KV_OK) return kv_err_copy(err, &it->err);
    return KV_OK;
}

void kv_iter_counters(const kv_iter *it, uint64_t *keys, uint64_t *vlog_reads)
{
    if (keys) *keys = it->n_keys;
    if (vlog_reads) *vlog_reads = it->n_vlog_reads;
}
