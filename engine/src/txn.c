/*
 * txn.c - transactions (kv.h): a registered snapshot, pending writes
 * (pending.c), the fingerprints of the keys read, and commit.
 *
 * Commit builds the newest live write of every key into one batch and
 * writes it through the writer queue, which checks the read fingerprints
 * against the conflict table (conflict.h) when it gives the commit its
 * version - so the check and the ordering are one step.  A transaction
 * whose writes do not fit a memtable batch, or that spilled to disk,
 * commits by ingesting tables instead (ingest.c).  Either way the commit
 * is one WAL record or one MANIFEST record: atomic across crashes.
 */
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "conflict.h"
#include "db.h"
#include "err.h"
#include "hash.h"
#include "ingest.h"
#include "pending.h"

#define TXN_ACTIVE 0
#define TXN_DONE 1

struct kv_txn {
    kv_db *db;
    int update;
    int state;
    kv_status failed;         /* why it was poisoned, KV_OK if it was not */
    uint64_t read_ts;
    int snap_slot;
    kv_pending pend;
    uint64_t *reads;          /* key fingerprints read (update, conflict detection) */
    size_t n_reads, cap_reads;
    kv_read_seg *segs;        /* which read version each read was made at */
    uint32_t n_segs, cap_segs;
    int untracked;            /* kv_txn_track_reads(0) */
    uint64_t *extra;          /* kv_txn_note_write: more fingerprints written */
    size_t n_extra, cap_extra;
};

static kv_status usable(kv_txn *t, kv_err *err)
{
    if (!t) return kv_seterr(err, KV_INVALID, 0, "transaction must not be NULL");
    if (t->state != TXN_ACTIVE)
        return kv_seterr(err, KV_BAD_TXN, 0, "the transaction was already %s",
                         t->failed != KV_OK ? "failed" : "committed or discarded");
    return kv_check_usable(t->db, err);
}

/* A failed call poisons the transaction (LMDB's rule). */
static kv_status poison(kv_txn *t, kv_status st)
{
    if (st != KV_OK && st != KV_NOT_FOUND && t->state == TXN_ACTIVE) t->failed = st;
    return st;
}

kv_status kv_txn_begin(kv_db *db, int update, kv_txn **out, kv_err *err)
{
    kv_txn *t;
    kv_status st;
    if (!db || !out) return kv_seterr(err, KV_INVALID, 0, "kv_txn_begin: db and out are required");
    st = kv_check_usable(db, err);
    if (st != KV_OK) return st;
    if (update && db->opt->read_only)
        return kv_seterr(err, KV_READ_ONLY, 0, "cannot begin an update transaction: ReadOnly");
    t = calloc(1, sizeof *t);
    if (!t) return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory beginning a transaction");
    t->db = db;
    t->update = update;
    st = kv_snap_register(db, 0, &t->snap_slot, &t->read_ts, err);
    if (st != KV_OK) {
        free(t);
        return st;
    }
    kv_pending_init(&t->pend, db, (size_t)db->opt->max_txn_memory, t->snap_slot);
    *out = t;
    return KV_OK;
}

/* Starts a new read segment at the current read version. */
static kv_status new_segment(kv_txn *t, kv_err *err)
{
    if (t->n_segs && t->segs[t->n_segs - 1].end == t->n_reads) { /* empty: reuse */
        t->segs[t->n_segs - 1].read_ts = t->read_ts;
        return KV_OK;
    }
    if (t->n_segs == t->cap_segs) {
        uint32_t cap = t->cap_segs ? t->cap_segs * 2 : 4;
        kv_read_seg *s = realloc(t->segs, cap * sizeof *s);
        if (!s) return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory in a transaction");
        t->segs = s;
        t->cap_segs = cap;
    }
    if (t->n_segs) t->segs[t->n_segs - 1].end = (uint32_t)t->n_reads;
    memset(&t->segs[t->n_segs], 0, sizeof t->segs[0]);
    t->segs[t->n_segs].read_ts = t->read_ts;
    t->n_segs++;
    return KV_OK;
}

kv_status kv_txn_refresh(kv_txn *t, kv_err *err)
{
    int slot;
    uint64_t ts;
    kv_status st = usable(t, err);
    if (st != KV_OK) return st;
    st = kv_snap_register(t->db, 0, &slot, &ts, err);
    if (st != KV_OK) return st;
    kv_pending_set_slot(&t->pend, slot); /* (a spill's pin moves before the old slot goes) */
    kv_snap_unregister(t->db, t->snap_slot);
    t->snap_slot = slot;
    t->read_ts = ts;
    return poison(t, new_segment(t, err));
}

uint64_t kv_txn_read_version(const kv_txn *t)
{
    return t->read_ts;
}

/* Ends the transaction (committed, failed or discarded). */
static void finish(kv_txn *t)
{
    if (t->state == TXN_DONE) return;
    t->state = TXN_DONE;
    kv_pending_free(&t->pend); /* (unpins while the slot is still ours) */
    kv_snap_unregister(t->db, t->snap_slot);
    t->snap_slot = -1;
    free(t->reads);
    t->reads = NULL;
    t->n_reads = t->cap_reads = 0;
    free(t->segs);
    t->segs = NULL;
    t->n_segs = t->cap_segs = 0;
    free(t->extra);
    t->extra = NULL;
    t->n_extra = t->cap_extra = 0;
}

void kv_txn_discard(kv_txn *t)
{
    if (t) finish(t);
}

void kv_txn_free(kv_txn *t)
{
    if (!t) return;
    finish(t);
    free(t);
}

void kv_txn_size(const kv_txn *t, uint64_t *entries, uint64_t *bytes)
{
    if (entries) *entries = t->pend.writes;
    if (bytes) *bytes = t->pend.bytes;
}

static void note_read(kv_txn *t, const void *key, size_t n)
{
    if (!t->update || !t->db->opt->detect_conflicts) return;
    if (!t->n_segs && new_segment(t, NULL) != KV_OK) {
        t->failed = KV_NO_MEMORY;
        return;
    }
    if (t->n_reads == t->cap_reads) {
        size_t cap = t->cap_reads ? t->cap_reads * 2 : 32;
        uint64_t *r = realloc(t->reads, cap * sizeof *r);
        if (!r) { /* cannot remember the read: commit must not succeed blindly */
            t->failed = KV_NO_MEMORY;
            return;
        }
        t->reads = r;
        t->cap_reads = cap;
    }
    t->reads[t->n_reads++] = kv_key_hash(key, n);
}

static kv_status check_key(const void *key, size_t klen, kv_err *err)
{
    if (!key || !klen) return kv_seterr(err, KV_INVALID, 0, "key must not be empty");
    if (klen > KV_MAX_KEY_SIZE)
        return kv_seterr(err, KV_TOO_BIG, 0, "key of %zu bytes exceeds the limit of %d bytes",
                         klen, KV_MAX_KEY_SIZE);
    return KV_OK;
}

static void note_read_cb(void *ctx, const uint8_t *key, size_t n)
{
    if (!((kv_txn *)ctx)->untracked) note_read(ctx, key, n);
}

void kv_txn_track_reads(kv_txn *t, int on)
{
    if (t) t->untracked = !on;
}

kv_status kv_txn_note_read(kv_txn *t, const void *key, size_t klen, kv_err *err)
{
    kv_status st = usable(t, err);
    if (st == KV_OK) st = check_key(key, klen, err);
    if (st != KV_OK) return st;
    note_read(t, key, klen);
    return KV_OK;
}


/* A get at version, over the transaction's own writes up to mark. */
static kv_status get_at(kv_txn *t, uint64_t version, uint64_t mark, const void *key, size_t klen,
                        kv_buf *val, kv_entry_meta *meta, kv_err *err)
{
    kv_vstruct vs;
    kv_read_options ro;
    int r;
    kv_status st = usable(t, err);
    if (st == KV_OK) st = check_key(key, klen, err);
    if (st != KV_OK) return st;
    r = kv_pending_get(&t->pend, key, klen, mark, &vs, err);
    if (r < 0) return poison(t, err ? err->code : KV_IO);
    if (r > 0) { /* read your own write */
        if ((vs.meta & KV_META_DELETE) ||
            (vs.expires_at && vs.expires_at <= t->db->env->unix_seconds(t->db->env)))
            return KV_NOT_FOUND;
        /* (a spilled write's value may be in the value log) */
        if (val && (st = kv_read_value(t->db, &vs, val, err)) != KV_OK) return poison(t, st);
        if (meta) {
            memset(meta, 0, sizeof *meta);
            meta->version = t->read_ts;
            meta->expires_at = vs.expires_at;
            meta->user_meta = vs.user_meta;
        }
        return KV_OK;
    }
    if (!t->untracked) note_read(t, key, klen);
    ro.version = version;
    ro.fill_cache = 1;
    return poison(t, kv_get(t->db, &ro, key, klen, val, meta, err));
}

kv_status kv_txn_get(kv_txn *t, const void *key, size_t klen, kv_buf *val, kv_entry_meta *meta,
                     kv_err *err)
{
    if (!t) return kv_seterr(err, KV_INVALID, 0, "transaction must not be NULL");
    return get_at(t, t->read_ts, t->pend.seq, key, klen, val, meta, err);
}

kv_status kv_txn_point_take(kv_txn *t, kv_txn_point *p, kv_snapshot **snap, kv_err *err)
{
    kv_status st = usable(t, err);
    if (st != KV_OK) return st;
    if (!p || !snap) return kv_seterr(err, KV_INVALID, 0, "kv_txn_point_take: point and snap are required");
    st = kv_snapshot_acquire_at(t->db, t->read_ts, snap, err);
    if (st != KV_OK) return st;
    p->version = t->read_ts;
    p->mark = t->pend.seq;
    return KV_OK;
}

kv_status kv_txn_get_at(kv_txn *t, const kv_txn_point *p, const void *key, size_t klen,
                        kv_buf *val, kv_entry_meta *meta, kv_err *err)
{
    if (!t || !p) return kv_seterr(err, KV_INVALID, 0, "transaction and point are required");
    if (p->mark > t->pend.seq) return kv_seterr(err, KV_INVALID, 0, "read point is in the future");
    return get_at(t, p->version, p->mark, key, klen, val, meta, err);
}

static kv_status write(kv_txn *t, const void *key, size_t klen, uint8_t meta, uint8_t user_meta,
                       uint64_t expires_at, const void *val, size_t vlen, kv_err *err)
{
    kv_status st = usable(t, err);
    if (st == KV_OK && !t->update)
        st = kv_seterr(err, KV_READ_ONLY, 0, "write in a read-only transaction");
    if (st == KV_OK) st = check_key(key, klen, err);
    if (st == KV_OK && (uint64_t)vlen > (uint64_t)KV_MAX_VALUE_SIZE)
        st = kv_seterr(err, KV_TOO_BIG, 0, "value of %zu bytes exceeds the limit of %lld bytes",
                       vlen, (long long)KV_MAX_VALUE_SIZE);
    if (st == KV_OK && vlen && !val) st = kv_seterr(err, KV_INVALID, 0, "value pointer is NULL");
    if (st != KV_OK) return st == KV_BAD_TXN ? st : poison(t, st);
    return poison(t, kv_pending_put(&t->pend, key, klen, meta, user_meta, expires_at, val, vlen,
                                    err));
}

kv_status kv_txn_set(kv_txn *t, const void *key, size_t klen, const void *val, size_t vlen,
                     kv_err *err)
{
    return write(t, key, klen, 0, 0, 0, val, vlen, err);
}

kv_status kv_txn_set_ex(kv_txn *t, const void *key, size_t klen, const void *val, size_t vlen,
                        uint8_t user_meta, uint64_t expires_at, kv_err *err)
{
    return write(t, key, klen, 0, user_meta, expires_at, val, vlen, err);
}

kv_status kv_txn_delete(kv_txn *t, const void *key, size_t klen, kv_err *err)
{
    return write(t, key, klen, KV_META_DELETE, 0, 0, NULL, 0, err);
}

kv_status kv_txn_iter_new(kv_txn *t, const kv_iter_options *io, kv_iter **it, kv_err *err)
{
    kv_status st = usable(t, err);
    if (st != KV_OK) return st;
    return kv_iter_new_txn(t->db, io, t->read_ts, &t->pend, t->pend.seq, note_read_cb, t, it,
                           err);
}

kv_status kv_txn_iter_at(kv_txn *t, const kv_txn_point *p, const kv_iter_options *io,
                         kv_iter **it, kv_err *err)
{
    kv_status st = usable(t, err);
    if (st != KV_OK) return st;
    if (!p) return kv_seterr(err, KV_INVALID, 0, "read point is required");
    if (p->mark > t->pend.seq) return kv_seterr(err, KV_INVALID, 0, "read point is in the future");
    return kv_iter_new_txn(t->db, io, p->version, &t->pend, p->mark, note_read_cb, t, it, err);
}

kv_status kv_txn_note_write(kv_txn *t, const void *key, size_t klen, kv_err *err)
{
    kv_status st = usable(t, err);
    if (st == KV_OK) st = check_key(key, klen, err);
    if (st != KV_OK) return st;
    if (t->n_extra == t->cap_extra) {
        size_t cap = t->cap_extra ? t->cap_extra * 2 : 8;
        uint64_t *w = realloc(t->extra, cap * sizeof *w);
        if (!w) return poison(t, kv_seterr(err, KV_NO_MEMORY, 0, "out of memory"));
        t->extra = w;
        t->cap_extra = cap;
    }
    t->extra[t->n_extra++] = kv_key_hash(key, klen);
    return KV_OK;
}

uint64_t kv_txn_mark(kv_txn *t)
{
    return t->pend.seq;
}

kv_status kv_txn_rollback_to(kv_txn *t, uint64_t mark, kv_err *err)
{
    kv_status st = usable(t, err);
    if (st != KV_OK) return st;
    return poison(t, kv_pending_rollback(&t->pend, mark, err));
}

/* The batch of a small transaction: the newest live write of each key. */
typedef struct batch_build {
    kv_batch *b;
    uint64_t *w;              /* fingerprints of the keys written */
    size_t nw, cap;
} batch_build;

static kv_status add_to_batch(void *ctx, const uint8_t *k, size_t kn, const kv_vstruct *vs,
                              kv_err *err)
{
    batch_build *bb = ctx;
    kv_status st = kv_batch_add(bb->b, k, kn, vs->meta, vs->user_meta, vs->expires_at, vs->value,
                                vs->value_len, err);
    if (st != KV_OK) return st;
    if (bb->nw == bb->cap) {
        size_t c = bb->cap ? bb->cap * 2 : 64;
        uint64_t *q = realloc(bb->w, c * sizeof *q);
        if (!q) return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory committing");
        bb->w = q;
        bb->cap = c;
    }
    bb->w[bb->nw++] = kv_key_hash(k, kn);
    return KV_OK;
}

static kv_status build_batch(kv_txn *t, kv_batch **out, uint64_t **writes, kv_err *err)
{
    batch_build bb;
    kv_status st;
    memset(&bb, 0, sizeof bb);
    bb.b = kv_batch_new_for(t->db);
    st = bb.b ? kv_pending_each(&t->pend, add_to_batch, &bb, err)
              : kv_seterr(err, KV_NO_MEMORY, 0, "out of memory committing");
    for (size_t i = 0; st == KV_OK && i < t->n_extra; i++) { /* kv_txn_note_write */
        if (bb.nw == bb.cap) {
            size_t c = bb.cap ? bb.cap * 2 : 64;
            uint64_t *q = realloc(bb.w, c * sizeof *q);
            if (!q) st = kv_seterr(err, KV_NO_MEMORY, 0, "out of memory committing");
            else {
                bb.w = q;
                bb.cap = c;
            }
        }
        if (st == KV_OK) bb.w[bb.nw++] = t->extra[i];
    }
    if (st != KV_OK) {
        kv_batch_free(bb.b);
        free(bb.w);
        return st;
    }
    bb.b->txn = 1;
    bb.b->txn_writes = bb.w;
    bb.b->n_txn_writes = (uint32_t)bb.nw;
    *writes = bb.w;
    *out = bb.b;
    return KV_OK;
}

/* Small enough for one WAL record in one memtable? */
static int fits_batch(const kv_txn *t)
{
    uint64_t arena = t->db->sh->arena_size;
    return t->pend.n_runs == 0 && t->pend.bytes + t->pend.writes * 64 < arena / 4;
}

kv_status kv_txn_commit(kv_txn *t, const kv_commit_options *co, uint64_t *version_out,
                        kv_err *err)
{
    kv_status st = usable(t, err);
    kv_write_options wo;
    if (st != KV_OK) {
        if (t && st != KV_BAD_TXN) finish(t);
        return st;
    }
    if (t->failed != KV_OK) {
        st = kv_seterr(err, KV_BAD_TXN, 0, "the transaction failed earlier (%s)",
                       kv_status_str(t->failed));
        finish(t);
        return st;
    }
    if (!t->update || kv_pending_empty(&t->pend)) {
        if (version_out) *version_out = t->read_ts;
        finish(t);
        return KV_OK;
    }
    wo.sync = co ? co->sync : 0;
    if (t->n_segs) t->segs[t->n_segs - 1].end = (uint32_t)t->n_reads;
    if (fits_batch(t)) {
        kv_batch *b;
        uint64_t *writes = NULL;
        st = build_batch(t, &b, &writes, err);
        if (st == KV_OK) {
            b->txn_reads = t->reads;
            b->txn_segs = t->segs;
            b->n_txn_segs = t->n_segs;
            if (b->count) st = kv_write(t->db, &wo, b, version_out, err);
            else if (version_out) *version_out = t->read_ts; /* everything was undone */
            kv_batch_free(b);
            free(writes);
        }
    } else {
        /* (always durable: tables and the manifest record are synced) */
        st = kv_ingest_commit(t->db, &t->pend, t->reads, t->segs, t->n_segs,
                              t->extra, t->n_extra, version_out, err);
        if (st == KV_OK && version_out && *version_out == 0) *version_out = t->read_ts;
    }
    finish(t);
    return st;
}
