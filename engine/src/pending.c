/*
 * pending.c - a transaction's pending writes: arena, dead sequence
 * ranges, spilled runs and the newest-live-write iterator (pending.h).
 */
#include "pending.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "batch.h"
#include "db.h"
#include "err.h"
#include "flush.h"
#include "hash.h"
#include "snapshot.h"
#include "vlog.h"
#include "vlog_bulk.h"
#include "vlog_format.h"

#define FIRST_ARENA (64u << 10)
#define VLOG_CHUNK (4u << 20) /* spilled value bytes per value-log append */

/* Frees sl now, or retires it while iterators may read it. */
static void drop_arena(kv_pending *p, kv_sl *sl)
{
    kv_sl **r;
    if (!sl) return;
    if (p->iters_open == 0 || !(r = realloc(p->retired_sl, (p->n_retired_sl + 1) * sizeof *r))) {
        /* (out of memory retiring: cannot happen safely, so keep it leaked
         * in the arena pointer rather than free under a reader) */
        if (p->iters_open == 0) free(sl);
        return;
    }
    r[p->n_retired_sl++] = sl;
    p->retired_sl = r;
}

static void free_arena(kv_pending *p)
{
    drop_arena(p, p->sl);
    p->sl = NULL;
    p->cap = 0;
}

void kv_pending_init(kv_pending *p, kv_db *db, size_t max_mem, int snap_slot)
{
    memset(p, 0, sizeof *p);
    p->db = db;
    p->max_mem = max_mem < FIRST_ARENA ? FIRST_ARENA : max_mem;
    p->snap_slot = snap_slot;
}

void kv_pending_set_slot(kv_pending *p, int slot)
{
    if (p->vlog_pin) kv_snap_set_vlog_pin(p->db, slot, p->vlog_pin);
    p->snap_slot = slot;
}

static void run_close(kv_pending *p, kv_spill_run *r)
{
    kv_env *env = p->db->env;
    kv_sst_close(r->sst);
    if (r->map) env->unmap(r->file, r->map, r->size);
    if (r->file) env->close(r->file);
    if (r->path) env->remove(env, r->path, NULL);
    free(r->path);
}

static void free_retired(kv_pending *p)
{
    for (size_t i = 0; i < p->n_retired_sl; i++) free(p->retired_sl[i]);
    free(p->retired_sl);
    p->retired_sl = NULL;
    p->n_retired_sl = 0;
    for (size_t i = 0; i < p->n_retired_runs; i++) run_close(p, &p->retired_runs[i]);
    free(p->retired_runs);
    p->retired_runs = NULL;
    p->n_retired_runs = 0;
}

void kv_pending_free(kv_pending *p)
{
    kv_vbulk_free(p->db, p->vbulk); /* (before the pin goes) */
    if (p->vlog_pin && p->snap_slot >= 0) kv_snap_set_vlog_pin(p->db, p->snap_slot, 0);
    for (size_t i = 0; i < p->n_runs; i++) run_close(p, &p->runs[i]);
    free_retired(p);
    free(p->runs);
    free(p->dead);
    free_arena(p);
    kv_batch_free(p->chunk);
    free(p->early);
    memset(p, 0, sizeof *p);
}

int kv_pending_empty(const kv_pending *p)
{
    return p->writes == 0;
}

int kv_pending_dead(const kv_pending *p, uint64_t seq)
{
    for (size_t i = p->n_dead; i > 0; i--)
        if (seq > p->dead[i - 1].lo && seq <= p->dead[i - 1].hi) return 1;
    return 0;
}

kv_status kv_pending_rollback(kv_pending *p, uint64_t mark, kv_err *err)
{
    if (mark > p->seq) return kv_seterr(err, KV_INVALID, 0, "savepoint mark %llu is in the future",
                                        (unsigned long long)mark);
    if (mark == p->seq) return KV_OK;
    if (p->n_dead == p->cap_dead) {
        size_t cap = p->cap_dead ? p->cap_dead * 2 : 8;
        kv_seq_range *d = realloc(p->dead, cap * sizeof *d);
        if (!d) return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory rolling back");
        p->dead = d;
        p->cap_dead = cap;
    }
    p->dead[p->n_dead].lo = mark;
    p->dead[p->n_dead++].hi = p->seq;
    return KV_OK;
}

/* ---- spilling ---- */

/* 1 if the arena entry (internal key k, decoded vs) is a live value the
 * spill moves to the value log. */
static int separates(const kv_pending *p, const uint8_t *k, size_t kl, const kv_vstruct *vs,
                     uint64_t threshold)
{
    return !(vs->meta & (KV_META_DELETE | KV_META_VALUE_PTR)) && vs->value_len >= threshold &&
           !kv_pending_dead(p, kv_ikey_version(k, kl));
}

kv_status kv_pending_write_values(kv_pending *p, kv_batch *chunk, kv_err *err)
{
    kv_db *db = p->db;
    if (!chunk->n_ptrs) return KV_OK; /* (always so in memory: no value log) */
    if (!p->vlog_pin) { /* before the first value lands: no GC rewrite may miss it */
        kv_mutex_lock(&db->sh->vlog.mu);
        p->vlog_pin = db->sh->vlog.head ? db->sh->vlog.head : 1;
        kv_snap_set_vlog_pin(db, p->snap_slot, p->vlog_pin);
        kv_mutex_unlock(&db->sh->vlog.mu);
    }
    return kv_vbulk_append(db, &p->vbulk, chunk, err);
}

kv_status kv_pending_values_commit(kv_pending *p, kv_err *err)
{
    return kv_vbulk_commit(p->db, p->vbulk, err);
}

void kv_pending_values_unused(kv_pending *p)
{
    kv_vbulk_commit_failed(p->vbulk);
}

/* Writes the chunk's values to the value log and appends their pointers
 * to *ptrs (KV_VPTR_SIZE bytes each, in chunk order). */
static kv_status flush_values(kv_pending *p, kv_batch *chunk, uint8_t **ptrs, size_t *n,
                              size_t *cap, kv_err *err)
{
    kv_status st;
    if (*n + chunk->n_ptrs > *cap) {
        size_t c = (*n + chunk->n_ptrs) * 2;
        uint8_t *q = realloc(*ptrs, c * KV_VPTR_SIZE);
        if (!q) return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory spilling a transaction");
        *ptrs = q;
        *cap = c;
    }
    st = kv_pending_write_values(p, chunk, err);
    for (uint32_t i = 0; st == KV_OK && i < chunk->n_ptrs; i++)
        memcpy(*ptrs + (*n)++ * KV_VPTR_SIZE, chunk->buf + chunk->ptrs[3 * i], KV_VPTR_SIZE);
    kv_batch_clear(chunk);
    return st;
}

/* ---- early placement (pending.h) ---- */

/* 1 if a write of this kind goes to the value log at once. */
static int places_early(const kv_pending *p, uint8_t meta, size_t vlen)
{
    const kv_options *o = p->db->opt;
    return p->n_runs && !o->in_memory && !(meta & (KV_META_DELETE | KV_META_VALUE_PTR)) &&
           (uint64_t)vlen >= (uint64_t)o->value_threshold;
}

/* 1 if vs holds a placeholder pointer (not yet settled). */
static int placeholder(const kv_vstruct *vs)
{
    kv_vptr vp;
    return (vs->meta & KV_META_VALUE_PTR) &&
           kv_vptr_decode(vs->value, vs->value_len, &vp) == 0 && vp.fid == 0;
}

kv_status kv_pending_settle(kv_pending *p, kv_err *err)
{
    kv_batch *chunk = p->chunk;
    kv_status st;
    if (!p->n_early) return KV_OK;
    if (chunk->n_ptrs != p->n_early)
        return kv_seterr(err, KV_CORRUPTION, 0, "early-placed values and their chunk disagree");
    st = kv_pending_write_values(p, chunk, err);
    if (st != KV_OK) return st;
    for (size_t i = 0; i < p->n_early; i++)
        memcpy(p->early[i], chunk->buf + chunk->ptrs[3 * i], KV_VPTR_SIZE);
    kv_batch_clear(chunk);
    p->n_early = 0;
    return KV_OK;
}

/* Writes the arena's separable values to the value log; *ptrs gets their
 * pointers in arena order. */
static kv_status spill_values(kv_pending *p, uint64_t threshold, uint8_t **ptrs, size_t *n,
                              kv_err *err)
{
    kv_batch *chunk = p->chunk ? p->chunk : (p->chunk = kv_batch_new_for(p->db));
    kv_sl_iter it;
    size_t cap = 0;
    kv_status st = KV_OK;
    *ptrs = NULL;
    *n = 0;
    if (!chunk) return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory spilling a transaction");
    kv_sl_iter_init(&it, p->sl);
    for (kv_sl_iter_first(&it); st == KV_OK && kv_sl_iter_valid(&it); kv_sl_iter_next(&it)) {
        size_t kl, vl;
        const uint8_t *k = kv_sl_iter_key(&it, &kl), *v = kv_sl_iter_value(&it, &vl);
        kv_vstruct vs;
        if (kv_vstruct_decode(v, vl, &vs) != 0) {
            st = kv_seterr(err, KV_CORRUPTION, 0, "malformed pending write");
            break;
        }
        if (!separates(p, k, kl, &vs, threshold)) continue;
        st = kv_batch_add(chunk, k, kv_ikey_ulen(kl), vs.meta, vs.user_meta, vs.expires_at,
                          vs.value, vs.value_len, err);
        if (st == KV_OK && chunk->vlen >= VLOG_CHUNK)
            st = flush_values(p, chunk, ptrs, n, &cap, err);
    }
    if (st == KV_OK) st = flush_values(p, chunk, ptrs, n, &cap, err);
    kv_batch_clear(chunk); /* kept, with its buffers, for the next spill */
    return st;
}

/* Pointers that replace separable values while a run is written. */
typedef struct sep_ptrs {
    uint64_t threshold;
    const uint8_t *ptrs;
    size_t n, next;
} sep_ptrs;

/* Writes the entries of src (internal-key order) as a new run.  With
 * drop_dead, undone writes are left out; with sep, separable values are
 * replaced by sep's pointers, in order (src is the arena spill_values
 * walked). */
static kv_status write_run(kv_pending *p, kv_iiter *src, int drop_dead, sep_ptrs *sep,
                           kv_spill_run *out, kv_err *err)
{
    kv_db *db = p->db;
    kv_sst_build_opts bo;
    kv_sst_builder *b = NULL;
    kv_sst_props props;
    kv_spill_run r;
    char path[KV_PATH_MAX + 64];
    kv_status st;
    uint64_t size = 0;

    memset(&r, 0, sizeof r);
    snprintf(path, sizeof path, "%s/txn-%ld-%lx-%lu.spill", db->dir, (long)getpid(),
             (unsigned long)(uintptr_t)p & 0xffffffu, p->run_id++);
    kv_table_build_opts(db, 0, &bo);
    bo.compression = KV_COMPRESS_NONE; /* read back once, soon */
    bo.sync = 0;                       /* a crash loses the transaction anyway */
    st = kv_sst_builder_new(db->env, path, &bo, &b, err);
    for (src->vt->first(src); st == KV_OK && src->vt->valid(src); src->vt->next(src)) {
        size_t kl, vl;
        const uint8_t *k = src->vt->key(src, &kl), *v = src->vt->value(src, &vl);
        kv_vstruct vs;
        uint8_t pv[64];
        if (drop_dead && kv_pending_dead(p, kv_ikey_version(k, kl))) continue;
        if (sep && kv_vstruct_decode(v, vl, &vs) == 0 && separates(p, k, kl, &vs, sep->threshold)) {
            if (sep->next == sep->n) {
                st = kv_seterr(err, KV_CORRUPTION, 0, "spilled values and run disagree");
                break;
            }
            vl = kv_vstruct_encode(pv, vs.meta | KV_META_VALUE_PTR, vs.user_meta, vs.expires_at,
                                   sep->ptrs + sep->next++ * KV_VPTR_SIZE, KV_VPTR_SIZE);
            v = pv;
        }
        st = kv_sst_builder_add(b, k, kl, v, vl, err);
    }
    if (st == KV_OK) st = src->vt->status(src, err);
    if (st == KV_OK) st = kv_sst_builder_finish(b, &props, err);
    kv_sst_builder_free(b);
    if (st == KV_OK) st = db->env->open(db->env, path, KV_O_READ, &r.file, err);
    if (st == KV_OK) st = db->env->size(r.file, &size, err);
    if (st == KV_OK) st = db->env->map(r.file, size, &r.map, err);
    if (st == KV_OK) {
        r.size = size;
        st = kv_sst_open(r.map, size, path, 0, KV_VERIFY_NONE, &r.sst, err);
    }
    if (st == KV_OK && !(r.path = strdup(path)))
        st = kv_seterr(err, KV_NO_MEMORY, 0, "out of memory spilling a transaction");
    if (st != KV_OK) {
        run_close(p, &r);
        db->env->remove(db->env, path, NULL);
        return st;
    }
    *out = r;
    return KV_OK;
}

static kv_status add_run(kv_pending *p, const kv_spill_run *r, kv_err *err)
{
    kv_spill_run *runs = realloc(p->runs, (p->n_runs + 1) * sizeof *runs);
    if (!runs) return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory spilling a transaction");
    runs[p->n_runs++] = *r;
    p->runs = runs;
    return KV_OK;
}

/* Closes run r now, or retires it while iterators may read it. */
static kv_status drop_run(kv_pending *p, kv_spill_run *r, kv_err *err)
{
    kv_spill_run *rr;
    if (p->iters_open == 0) {
        run_close(p, r);
        return KV_OK;
    }
    rr = realloc(p->retired_runs, (p->n_retired_runs + 1) * sizeof *rr);
    if (!rr) return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory merging spilled runs");
    rr[p->n_retired_runs++] = *r;
    p->retired_runs = rr;
    return KV_OK;
}

/* Merges every run into one (undone writes dropped). */
static kv_status merge_runs(kv_pending *p, kv_err *err)
{
    kv_iiter **c = malloc(sizeof *c * p->n_runs);
    kv_merge *m;
    kv_iiter *mi;
    kv_spill_run r;
    kv_status st;
    size_t n = 0;
    if (!c) return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory merging spilled runs");
    for (size_t i = 0; i < p->n_runs; i++) {
        if (!(c[n] = kv_iiter_sst(p->runs[i].sst))) break;
        n++;
    }
    if (n < p->n_runs || !(m = kv_merge_new(c, (int)n, 0))) {
        for (size_t i = 0; i < n; i++) c[i]->vt->destroy(c[i]);
        free(c);
        return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory merging spilled runs");
    }
    free(c);
    mi = kv_merge_iiter(m);
    st = mi ? write_run(p, mi, 1, NULL, &r, err)
            : kv_seterr(err, KV_NO_MEMORY, 0, "out of memory merging spilled runs");
    if (mi) mi->vt->destroy(mi);
    else kv_merge_free(m);
    if (st != KV_OK) return st;
    for (size_t i = 0; i < p->n_runs; i++) {
        kv_status dst = drop_run(p, &p->runs[i], err);
        if (dst != KV_OK) { /* keep the rest readable: leak rather than close under a reader */
            st = dst;
            break;
        }
    }
    p->n_runs = 0;
    if (st == KV_OK) st = add_run(p, &r, err);
    if (st != KV_OK) run_close(p, &r);
    return st;
}

static kv_status spill(kv_pending *p, kv_err *err)
{
    kv_db *db = p->db;
    sep_ptrs sep = {db->opt->in_memory ? UINT64_MAX : (uint64_t)db->opt->value_threshold, NULL, 0, 0};
    uint8_t *ptrs = NULL;
    kv_iiter *src;
    kv_spill_run r;
    kv_status st = kv_pending_settle(p, err); /* (the chunk is spill_values' too) */
    if (st == KV_OK && sep.threshold != UINT64_MAX)
        st = spill_values(p, sep.threshold, &ptrs, &sep.n, err);
    sep.ptrs = ptrs;
    if (st != KV_OK) {
        free(ptrs);
        return st;
    }
    if (!(src = kv_iiter_sl(p->sl))) {
        free(ptrs);
        return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory spilling a transaction");
    }
    st = write_run(p, src, 0, sep.n ? &sep : NULL, &r, err);
    src->vt->destroy(src);
    free(ptrs);
    if (st == KV_OK) {
        st = add_run(p, &r, err);
        if (st != KV_OK) run_close(p, &r);
    }
    if (st != KV_OK) return st;
    /* empty the arena for the next writes; at full size already, it is
     * reused in place (growing a fresh one from FIRST_ARENA would copy its
     * entries at every doubling) unless an iterator still reads it */
    if (p->iters_open == 0) kv_sl_init(p->sl, p->cap, 0x7478u);
    else free_arena(p);
    if (p->n_runs >= KV_PENDING_MAX_RUNS && p->iters_open == 0) st = merge_runs(p, err);
    return st;
}

/* Moves the arena's entries into a new arena of cap bytes. */
static kv_status grow(kv_pending *p, size_t cap, kv_err *err)
{
    kv_sl *nsl, *old = p->sl;
    kv_sl_iter it;
    kv_status st = kv_pending_settle(p, err); /* placeholders must not move */
    if (st != KV_OK) return st;
    nsl = malloc(cap);
    if (!nsl) return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory for transaction writes");
    kv_sl_init(nsl, cap, 0x7478u);
    if (old) {
        kv_sl_iter_init(&it, old);
        for (kv_sl_iter_first(&it); kv_sl_iter_valid(&it); kv_sl_iter_next(&it)) {
            size_t kl, vl;
            const uint8_t *k = kv_sl_iter_key(&it, &kl), *v = kv_sl_iter_value(&it, &vl);
            if (kv_sl_put(nsl, k, kl, v, vl) != 0) { /* cannot happen: cap grew */
                free(nsl);
                return kv_seterr(err, KV_NO_MEMORY, 0, "transaction arena overflow");
            }
        }
    }
    drop_arena(p, old);
    p->sl = nsl;
    p->cap = cap;
    return KV_OK;
}

/* Inserts buf (internal key of klen + KV_TS_SIZE bytes, then a value
 * struct of vslen) into the arena, spilling or growing it as needed;
 * *stored (if not NULL) gets where the value struct landed. */
static kv_status arena_put(kv_pending *p, const uint8_t *buf, size_t klen, size_t vslen,
                           size_t need, uint8_t **stored, kv_err *err)
{
    kv_status st = KV_OK;
    for (;;) {
        size_t cost = kv_sl_put_cost(klen + KV_TS_SIZE, vslen);
        if (p->sl && kv_sl_put_ref(p->sl, buf, klen + KV_TS_SIZE, buf + klen + KV_TS_SIZE, vslen,
                                   stored) == 0)
            break;
        if (p->sl && p->cap >= p->max_mem && !kv_sl_empty(p->sl)) st = spill(p, err);
        else {
            size_t cap = p->cap ? p->cap * 2 : FIRST_ARENA;
            while (cap < cost * 4 + 8192) cap *= 2; /* one big value needs room */
            if (cap > p->max_mem && cost * 4 + 8192 <= p->max_mem) cap = p->max_mem;
            if (cap > UINT32_MAX) cap = (size_t)1 << 31;
            if (cost + 8192 > cap) {
                st = kv_seterr(err, KV_TOO_BIG, 0, "transaction write of %zu bytes is too big",
                               need);
                break;
            }
            st = grow(p, cap, err);
        }
        if (st != KV_OK) break;
    }
    return st;
}

/* A value placed early: the arena gets a placeholder pointer, the chunk
 * the value-log entry. */
static kv_status put_early(kv_pending *p, uint8_t *buf, size_t klen, uint8_t meta,
                           uint8_t user_meta, uint64_t expires_at, const void *val, size_t vlen,
                           kv_err *err)
{
    static const uint8_t zero[KV_VPTR_SIZE];
    size_t vslen = kv_vstruct_encode(buf + klen + KV_TS_SIZE, meta | KV_META_VALUE_PTR, user_meta,
                                     expires_at, zero, KV_VPTR_SIZE);
    uint8_t *stored = NULL;
    kv_status st;
    if (!p->chunk && !(p->chunk = kv_batch_new_for(p->db)))
        return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory for a transaction write");
    if (p->n_early == p->cap_early) {
        size_t cap = p->cap_early ? p->cap_early * 2 : 1024;
        uint8_t **e = realloc(p->early, cap * sizeof *e);
        if (!e) return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory for a transaction write");
        p->early = e;
        p->cap_early = cap;
    }
    /* the arena first: making room may spill, which settles the chunk */
    st = arena_put(p, buf, klen, vslen, klen + KV_TS_SIZE + vslen, &stored, err);
    if (st == KV_OK) st = kv_batch_add(p->chunk, buf, klen, meta, user_meta, expires_at,
                                       val, vlen, err);
    if (st != KV_OK) return st; /* (the caller poisons the transaction) */
    p->early[p->n_early++] = stored + (vslen - KV_VPTR_SIZE);
    if (p->chunk->n_ptrs != p->n_early)
        return kv_seterr(err, KV_CORRUPTION, 0, "early-placed value was not separated");
    if (p->chunk->vlen >= VLOG_CHUNK) st = kv_pending_settle(p, err);
    return st;
}

kv_status kv_pending_put(kv_pending *p, const void *key, size_t klen, uint8_t meta,
                         uint8_t user_meta, uint64_t expires_at, const void *val, size_t vlen,
                         kv_err *err)
{
    uint8_t small[512], *buf = small;
    int early = places_early(p, meta, vlen);
    size_t vslen = kv_vstruct_size(expires_at, early ? KV_VPTR_SIZE : vlen);
    size_t need = klen + KV_TS_SIZE + vslen;
    kv_status st;
    if (need > sizeof small && !(buf = malloc(need)))
        return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory for a transaction write");
    memcpy(buf, key, klen);
    kv_ikey_put_ts(buf + klen, p->seq + 1);
    if (early)
        st = put_early(p, buf, klen, meta, user_meta, expires_at, val, vlen, err);
    else {
        kv_vstruct_encode(buf + klen + KV_TS_SIZE, meta, user_meta, expires_at, val, vlen);
        st = arena_put(p, buf, klen, vslen, need, NULL, err);
    }
    if (buf != small) free(buf);
    if (st == KV_OK) {
        p->seq++;
        p->writes++;
        p->bytes += klen + vlen;
    }
    return st;
}

/* ---- lookups ---- */

static int newest_live_sl(kv_pending *p, const kv_sl *sl, const uint8_t *seek, size_t n,
                          uint64_t seq_limit, kv_vstruct *vs)
{
    kv_sl_iter it;
    size_t un = n - KV_TS_SIZE;
    kv_sl_iter_init(&it, sl);
    for (kv_sl_iter_seek(&it, seek, n); kv_sl_iter_valid(&it); kv_sl_iter_next(&it)) {
        size_t kl, vl;
        const uint8_t *k = kv_sl_iter_key(&it, &kl), *v;
        if (kl != n || memcmp(k, seek, un) != 0) return 0;
        if (kv_ikey_version(k, kl) > seq_limit || kv_pending_dead(p, kv_ikey_version(k, kl)))
            continue;
        v = kv_sl_iter_value(&it, &vl);
        return kv_vstruct_decode(v, vl, vs) == 0 ? 1 : -1;
    }
    return 0;
}

static int newest_live_run(kv_pending *p, const kv_spill_run *r, const uint8_t *seek, size_t n,
                           uint64_t seq_limit, kv_vstruct *vs, kv_err *err)
{
    kv_sst_iter it;
    kv_sst_read_opts ro;
    size_t un = n - KV_TS_SIZE;
    int found = 0;
    const uint8_t *lo, *hi;
    size_t lon, hin;
    memset(&ro, 0, sizeof ro);
    /* a key outside the run's range needs no bloom probe (in a load in
     * key order, each new key is past every run) */
    lo = kv_sst_smallest(r->sst, &lon);
    hi = kv_sst_largest(r->sst, &hin);
    if (lo && hi &&
        (kv_ukey_cmp(seek, un, lo, kv_ikey_ulen(lon)) < 0 ||
         kv_ukey_cmp(seek, un, hi, kv_ikey_ulen(hin)) > 0))
        return 0;
    if (!kv_sst_may_contain(r->sst, seek, un)) return 0;
    kv_sst_iter_init(&it, r->sst, &ro);
    for (kv_sst_iter_seek(&it, seek, n); it.valid; kv_sst_iter_next(&it)) {
        if (it.key_len != n || memcmp(it.key, seek, un) != 0) break;
        if (kv_ikey_version(it.key, it.key_len) > seq_limit ||
            kv_pending_dead(p, kv_ikey_version(it.key, it.key_len)))
            continue;
        found = kv_vstruct_decode(it.val, it.val_len, vs) == 0 ? 1 : -1;
        break;
    }
    if (it.status != KV_OK) {
        kv_err_copy(err, &it.err);
        found = -1;
    }
    kv_sst_iter_done(&it);
    return found;
}

int kv_pending_get(kv_pending *p, const void *key, size_t klen, uint64_t seq_limit,
                   kv_vstruct *vs, kv_err *err)
{
    uint8_t small[256], *seek = small;
    size_t n = klen + KV_TS_SIZE;
    int found = 0;
    if (!p->writes) return 0;
    if (n > sizeof small && !(seek = malloc(n))) {
        kv_seterr(err, KV_NO_MEMORY, 0, "out of memory");
        return -1;
    }
    memcpy(seek, key, klen);
    kv_ikey_put_ts(seek + klen, KV_PENDING_VERSION); /* before every write of the key */
    if (p->sl && kv_sl_may_contain(p->sl, kv_key_hash(key, klen)))
        found = newest_live_sl(p, p->sl, seek, n, seq_limit, vs);
    if (found == 1 && placeholder(vs)) {
        /* an early-placed value not written yet: write it (the struct is
         * patched in place, so vs then holds the real pointer) */
        if (kv_pending_settle(p, err) != KV_OK) found = -1;
        else if (placeholder(vs)) {
            kv_seterr(err, KV_CORRUPTION, 0, "a pending write has no value-log entry");
            found = -1;
        }
    }
    for (size_t i = p->n_runs; i > 0 && !found; i--)
        found = newest_live_run(p, &p->runs[i - 1], seek, n, seq_limit, vs, err);
    if (seek != small) free(seek);
    return found;
}

/* ---- iterator ---- */

typedef struct piter {
    kv_iiter base;
    kv_pending *p;
    kv_merge *m;
    int reverse;
    uint64_t seq_limit;     /* writes made after the iterator was created are not seen */
    uint8_t *key;           /* presented key: user key ++ be64(0) */
    size_t klen, kcap;
    const uint8_t *val;
    size_t vlen;
    int valid;
    kv_status status;
    kv_err err;
} piter;

static int set_key(piter *pi, const uint8_t *k, size_t un)
{
    if (un + KV_TS_SIZE > pi->kcap) {
        size_t cap = (un + KV_TS_SIZE) * 2;
        uint8_t *q = realloc(pi->key, cap);
        if (!q) {
            pi->status = kv_seterr(&pi->err, KV_NO_MEMORY, 0, "out of memory");
            return -1;
        }
        pi->key = q;
        pi->kcap = cap;
    }
    memcpy(pi->key, k, un);
    kv_ikey_put_ts(pi->key + un, KV_PENDING_VERSION);
    pi->klen = un + KV_TS_SIZE;
    return 0;
}

static int usable(const piter *pi, uint64_t seq)
{
    return seq <= pi->seq_limit && !kv_pending_dead(pi->p, seq);
}

/* Forward: at the start of a key's group (newest write first), present
 * its newest usable write, or skip groups that have none. */
static void settle_forward(piter *pi)
{
    pi->valid = 0;
    while (kv_merge_valid(pi->m)) {
        size_t kn, vn;
        const uint8_t *k = kv_merge_key(pi->m, &kn);
        if (usable(pi, kv_ikey_version(k, kn))) {
            if (set_key(pi, k, kn - KV_TS_SIZE) != 0) return;
            pi->val = kv_merge_value(pi->m, &vn);
            pi->vlen = vn;
            pi->valid = 1;
            return;
        }
        kv_merge_next(pi->m);
    }
}

/* Forward: moves past the rest of the presented key's group. */
static void skip_group(piter *pi)
{
    size_t un = pi->klen - KV_TS_SIZE;
    while (kv_merge_valid(pi->m)) {
        size_t kn;
        const uint8_t *k = kv_merge_key(pi->m, &kn);
        if (kn != pi->klen || memcmp(k, pi->key, un) != 0) break;
        kv_merge_next(pi->m);
    }
}

/* Reverse: groups come oldest write first; the newest usable one is the
 * last usable one of the group.  Consumes the group. */
static void settle_reverse(piter *pi)
{
    pi->valid = 0;
    while (kv_merge_valid(pi->m) && !pi->valid) {
        size_t kn, vn, un;
        const uint8_t *k = kv_merge_key(pi->m, &kn);
        uint8_t *group;
        un = kn - KV_TS_SIZE;
        group = malloc(un ? un : 1);
        if (!group) {
            pi->status = kv_seterr(&pi->err, KV_NO_MEMORY, 0, "out of memory");
            return;
        }
        memcpy(group, k, un);
        while (kv_merge_valid(pi->m)) {
            k = kv_merge_key(pi->m, &kn);
            if (kn != un + KV_TS_SIZE || memcmp(k, group, un) != 0) break;
            if (usable(pi, kv_ikey_version(k, kn))) {
                pi->val = kv_merge_value(pi->m, &vn);
                pi->vlen = vn;
                pi->valid = 1;
            }
            kv_merge_next(pi->m);
        }
        if (pi->valid && set_key(pi, group, un) != 0) pi->valid = 0;
        free(group);
    }
}

static void pi_first(kv_iiter *i)
{
    piter *pi = (piter *)i;
    kv_merge_rewind(pi->m);
    if (pi->reverse) settle_reverse(pi);
    else settle_forward(pi);
}

static void pi_seek(kv_iiter *i, const uint8_t *k, size_t n)
{
    piter *pi = (piter *)i;
    uint8_t small[256], *t = small;
    size_t un = n - KV_TS_SIZE;
    if (n > sizeof small && !(t = malloc(n))) {
        pi->valid = 0;
        pi->status = kv_seterr(&pi->err, KV_NO_MEMORY, 0, "out of memory");
        return;
    }
    memcpy(t, k, un);
    /* presented keys are the first internal key of their user key: forward,
     * the answer is at or after the group's start; reverse, at or before
     * the group's end */
    kv_ikey_put_ts(t + un, pi->reverse ? 0 : KV_PENDING_VERSION);
    kv_merge_seek(pi->m, t, n);
    if (t != small) free(t);
    if (pi->reverse) settle_reverse(pi);
    else settle_forward(pi);
}

static void pi_next(kv_iiter *i)
{
    piter *pi = (piter *)i;
    if (!pi->valid) return;
    if (pi->reverse) settle_reverse(pi);
    else {
        skip_group(pi);
        settle_forward(pi);
    }
}

static int pi_valid(const kv_iiter *i)
{
    return ((const piter *)i)->valid;
}

static const uint8_t *pi_key(const kv_iiter *i, size_t *n)
{
    *n = ((const piter *)i)->klen;
    return ((const piter *)i)->key;
}

static const uint8_t *pi_value(const kv_iiter *i, size_t *n)
{
    *n = ((const piter *)i)->vlen;
    return ((const piter *)i)->val;
}

static kv_status pi_status(const kv_iiter *i, kv_err *err)
{
    const piter *pi = (const piter *)i;
    if (pi->status != KV_OK) return kv_err_copy(err, &pi->err);
    return kv_merge_status(pi->m, err);
}

static void pi_destroy(kv_iiter *i)
{
    piter *pi = (piter *)i;
    kv_merge_free(pi->m);
    free(pi->key);
    if (--pi->p->iters_open == 0) free_retired(pi->p);
    free(pi);
}

/* One direction only: first/last both rewind, seek and seek_for_prev both
 * seek, next and prev both advance - in the direction it was made for. */
static const kv_iiter_vt piter_vt = {pi_first, pi_first, pi_seek,  pi_seek,   pi_next, pi_next,
                                     pi_valid, pi_key,   pi_value, pi_status, pi_destroy};

kv_iiter *kv_pending_iter(kv_pending *p, int reverse, uint64_t seq_limit)
{
    piter *pi = calloc(1, sizeof *pi);
    kv_iiter **c = malloc(sizeof *c * (p->n_runs + 1));
    int n = 0, ok = pi && c;
    if (ok && p->sl) ok = (c[n++] = kv_iiter_sl(p->sl)) != NULL;
    for (size_t i = p->n_runs; ok && i > 0; i--) ok = (c[n++] = kv_iiter_sst(p->runs[i - 1].sst)) != NULL;
    if (ok) ok = (pi->m = kv_merge_new(c, n, reverse)) != NULL;
    if (!ok) {
        for (int j = 0; j < n; j++)
            if (c[j]) c[j]->vt->destroy(c[j]);
        free(c);
        free(pi);
        return NULL;
    }
    free(c);
    pi->base.vt = &piter_vt;
    pi->p = p;
    pi->reverse = reverse;
    pi->seq_limit = seq_limit;
    p->iters_open++;
    return &pi->base;
}

kv_status kv_pending_each(kv_pending *p, kv_pending_fn fn, void *ctx, kv_err *err)
{
    kv_iiter *pi;
    kv_status st = kv_pending_settle(p, err);
    if (st != KV_OK) return st;
    pi = kv_pending_iter(p, 0, p->seq);
    if (!pi) return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory reading pending writes");
    for (pi->vt->first(pi); st == KV_OK && pi->vt->valid(pi); pi->vt->next(pi)) {
        size_t kn, vn;
        const uint8_t *k = pi->vt->key(pi, &kn), *v = pi->vt->value(pi, &vn);
        kv_vstruct vs;
        if (kv_vstruct_decode(v, vn, &vs) != 0)
            st = kv_seterr(err, KV_CORRUPTION, 0, "malformed pending write");
        else
            st = fn(ctx, k, kv_ikey_ulen(kn), &vs, err);
    }
    if (st == KV_OK) st = pi->vt->status(pi, err);
    pi->vt->destroy(pi);
    return st;
}
