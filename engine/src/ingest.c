/*
 * ingest.c - committing a large transaction by ingesting tables (see
 * ingest.h): building the tables, the leader's step and the host's
 * placement and install.
 */
#include "ingest.h"

#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "compaction.h"
#include "db.h"
#include "err.h"
#include "flush.h"
#include "hash.h"
#include "host_req.h"
#include "manifest.h"
#include "pending.h"
#include "sst.h"
#include "wal.h"
#include "writer.h"

#define CHUNK_BYTES (4u << 20)  /* entries staged per value-log append */
#define MAX_KEYED_WRITES 65536  /* conflict.c: more raise the global floor */

struct kv_ingest {
    uint64_t *metas;            /* table metas (shared heap), in key order */
    uint64_t *ids;
    size_t n, cap;
    int installed;              /* the install was tried: metas and files are not ours */
};

/* ---- building ---- */

typedef struct builder {
    kv_db *db;
    struct kv_ingest *in;
    kv_sst_builder *b;
    char path[KV_PATH_MAX + 32];
    uint64_t id;
    uint64_t target;            /* table size to aim for */
    int last_first;             /* first byte of the last key added (-1: none yet) */
    uint64_t *writes;           /* fingerprints of the keys written (first MAX_KEYED_WRITES+1) */
    size_t n_writes, cap_writes;
    uint64_t entries;
} builder;

static kv_status ing_push(struct kv_ingest *in, uint64_t meta, uint64_t id, kv_err *err)
{
    if (in->n == in->cap) {
        size_t cap = in->cap ? in->cap * 2 : 16;
        uint64_t *m = realloc(in->metas, cap * sizeof *m), *d;
        if (!m) return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory committing");
        in->metas = m;
        d = realloc(in->ids, cap * sizeof *d);
        if (!d) return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory committing");
        in->ids = d;
        in->cap = cap;
    }
    in->metas[in->n] = meta;
    in->ids[in->n++] = id;
    return KV_OK;
}

static kv_status finish_table(builder *bd, kv_err *err)
{
    kv_sst_props props;
    const uint8_t *s, *l;
    size_t sn, ln;
    uint64_t meta = 0;
    kv_status st;
    if (!bd->b) return KV_OK;
    st = kv_sst_builder_finish(bd->b, &props, err);
    if (st == KV_OK) {
        s = kv_sst_builder_smallest(bd->b, &sn);
        l = kv_sst_builder_largest(bd->b, &ln);
        st = kv_tm_new(bd->db, &props, s, sn, l, ln, &meta, err);
    }
    if (st == KV_OK) {
        st = ing_push(bd->in, meta, bd->id, err);
        if (st != KV_OK) kv_tm_discard(bd->db, meta);
    }
    kv_sst_builder_free(bd->b); /* removes the file unless finished */
    bd->b = NULL;
    if (st != KV_OK) bd->db->env->remove(bd->db->env, bd->path, NULL);
    return st;
}

/* Remembers a written key's fingerprint (past MAX_KEYED_WRITES only the
 * count matters: the commit raises the global conflict floor). */
static kv_status note_write(builder *bd, uint64_t h, kv_err *err)
{
    if (bd->n_writes > MAX_KEYED_WRITES) return KV_OK;
    if (bd->n_writes == bd->cap_writes) {
        size_t cap = bd->cap_writes ? bd->cap_writes * 2 : 1024;
        uint64_t *w = realloc(bd->writes, cap * sizeof *w);
        if (!w) return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory committing");
        bd->writes = w;
        bd->cap_writes = cap;
    }
    bd->writes[bd->n_writes++] = h;
    return KV_OK;
}

static kv_status add_entry(builder *bd, const uint8_t *key, size_t klen, const uint8_t *vs,
                           size_t vslen, kv_err *err)
{
    uint8_t small[512], *ik = small;
    kv_status st = KV_OK;
    /* a table ends at its size, and where the keys' first byte changes:
     * key spaces told apart by their first byte (a PostgreSQL table's
     * rows and their out-of-line companions) get tables of their own, so
     * each lands as deep as its own range allows and a drop of one
     * removes its tables whole */
    if (bd->b && (kv_sst_builder_size(bd->b) >= bd->target ||
                  (klen ? key[0] : -1) != bd->last_first)) {
        st = finish_table(bd, err);
        if (st != KV_OK) return st;
    }
    bd->last_first = klen ? key[0] : -1;
    if (!bd->b) {
        kv_sst_build_opts bo;
        bd->id = atomic_fetch_add(&bd->db->sh->vset.next_file_id, 1);
        kv_file_path(bd->path, sizeof bd->path, bd->db->dir, bd->id, "sst");
        kv_table_build_opts(bd->db, bd->id, &bo);
        st = kv_sst_builder_new(bd->db->env, bd->path, &bo, &bd->b, err);
        if (st != KV_OK) return st;
    }
    if (klen + KV_TS_SIZE > sizeof small && !(ik = malloc(klen + KV_TS_SIZE)))
        return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory committing");
    memcpy(ik, key, klen);
    kv_ikey_put_ts(ik + klen, 0); /* the real version comes with the commit */
    st = kv_sst_builder_add(bd->b, ik, klen + KV_TS_SIZE, vs, vslen, err);
    if (ik != small) free(ik);
    if (st != KV_OK) return st;
    bd->entries++;
    return note_write(bd, kv_key_hash(key, klen), err);
}

/* Writes the chunk's large values to the value log (pointers patched into
 * its record; the pending store pins the log until the transaction ends),
 * then its entries to the tables. */
static kv_status flush_chunk(builder *bd, kv_pending *p, kv_batch *chunk, kv_err *err)
{
    kv_wal_cursor cur;
    kv_wal_entry e;
    uint64_t rv;
    uint32_t count;
    uint8_t flags;
    kv_status st;
    int r;
    if (!chunk->count) return KV_OK;
    st = kv_pending_write_values(p, chunk, err);
    if (st != KV_OK) return st;
    if (kv_wal_payload_open(chunk->buf + KV_WAL_REC_HDR, chunk->len - KV_WAL_REC_HDR, &rv, &count,
                            &flags, &cur) != 0)
        return kv_seterr(err, KV_CORRUPTION, 0, "malformed commit chunk");
    while (st == KV_OK && (r = kv_wal_next_entry(&cur, &e)) == 1)
        st = add_entry(bd, e.key, e.klen, e.vs, e.vslen, err);
    if (st == KV_OK && r < 0) st = kv_seterr(err, KV_CORRUPTION, 0, "malformed commit chunk");
    kv_batch_clear(chunk);
    return st;
}

typedef struct build_ctx {
    builder *bd;
    kv_pending *p;
    kv_batch *chunk;
} build_ctx;

static kv_status add_pending(void *ctx, const uint8_t *k, size_t kn, const kv_vstruct *vs,
                             kv_err *err)
{
    build_ctx *c = ctx;
    kv_status st = kv_batch_add(c->chunk, k, kn, vs->meta, vs->user_meta, vs->expires_at,
                                vs->value, vs->value_len, err);
    if (st == KV_OK && c->chunk->len + c->chunk->vlen >= CHUNK_BYTES)
        st = flush_chunk(c->bd, c->p, c->chunk, err);
    return st;
}

static kv_status build_tables(builder *bd, kv_pending *p, kv_err *err)
{
    build_ctx c = {bd, p, kv_batch_new_for(bd->db)};
    kv_status st = c.chunk ? kv_pending_each(p, add_pending, &c, err)
                           : kv_seterr(err, KV_NO_MEMORY, 0, "out of memory committing");
    if (st == KV_OK) st = flush_chunk(bd, p, c.chunk, err);
    if (st == KV_OK) st = finish_table(bd, err);
    kv_batch_free(c.chunk);
    return st;
}

static void drop_tables(kv_db *db, struct kv_ingest *in)
{
    for (size_t i = 0; i < in->n; i++) {
        char path[KV_PATH_MAX + 32];
        kv_file_path(path, sizeof path, db->dir, in->ids[i], "sst");
        if (kv_may_delete_tables(db)) db->env->remove(db->env, path, NULL);
        kv_tm_discard(db, in->metas[i]);
    }
    in->n = 0;
}

kv_status kv_ingest_commit(kv_db *db, kv_pending *p, const uint64_t *reads,
                           const kv_read_seg *segs, uint32_t n_segs, const uint64_t *extra_writes,
                           size_t n_extra, uint64_t *version_out, kv_err *err)
{
    struct kv_ingest in;
    builder bd;
    kv_batch *txn = NULL;
    kv_status st;

    memset(&in, 0, sizeof in);
    memset(&bd, 0, sizeof bd);
    bd.db = db;
    bd.in = &in;
    bd.last_first = -1;
    bd.target = (uint64_t)db->opt->base_table_size;
    if (bd.target < (8u << 20)) bd.target = 8u << 20;

    st = build_tables(&bd, p, err);
    for (size_t i = 0; st == KV_OK && i < n_extra; i++) /* fingerprints noted as written */
        st = note_write(&bd, extra_writes[i], err);
    if (st == KV_OK && !db->opt->in_memory) st = db->env->sync_dir(db->env, db->dir, err);
    if (st == KV_OK && in.n == 0) { /* everything was undone */
        if (version_out) *version_out = 0; /* (the caller reports its read version) */
        goto out;
    }
    if (st == KV_OK) st = kv_pending_values_commit(p, err);
    if (st == KV_OK && !(txn = kv_batch_new()))
        st = kv_seterr(err, KV_NO_MEMORY, 0, "out of memory committing");
    if (st == KV_OK) {
        txn->txn = 1;
        txn->txn_reads = reads;
        txn->txn_segs = segs;
        txn->n_txn_segs = n_segs;
        txn->txn_writes = bd.writes;
        txn->n_txn_writes = (uint32_t)bd.n_writes; /* > MAX_KEYED_WRITES: global floor */
        st = kv_writer_special(db, KV_WQ_INGEST, &in, txn, version_out, err);
    }
out:
    if (st != KV_OK && !in.installed) {
        drop_tables(db, &in);
        kv_pending_values_unused(p); /* (their values: freed with the transaction) */
    }
    kv_batch_free(txn);
    free(bd.writes);
    free(in.metas);
    free(in.ids);
    return st;
}

/* ---- the leader's step ---- */

/* 1 if memtable mt holds a key in [lo, hi]. */
static int mem_overlaps(kv_db *db, const kv_memtable *mt, const uint8_t *lo, size_t lon,
                        const uint8_t *hi, size_t hin)
{
    kv_sl_iter it;
    uint8_t small[512], *seek = small;
    size_t kn;
    const uint8_t *k;
    int r;
    if (lon + KV_TS_SIZE > sizeof small && !(seek = malloc(lon + KV_TS_SIZE))) return 1;
    memcpy(seek, lo, lon);
    kv_ikey_put_ts(seek + lon, UINT64_MAX);
    kv_sl_iter_init(&it, kv_mt_sl(db, mt));
    kv_sl_iter_seek(&it, seek, lon + KV_TS_SIZE);
    if (seek != small) free(seek);
    if (!kv_sl_iter_valid(&it)) return 0;
    k = kv_sl_iter_key(&it, &kn);
    r = kv_ukey_cmp(k, kv_ikey_ulen(kn), hi, hin) <= 0;
    return r;
}

/* Flushes every memtable if any holds a key in the range. */
static kv_status flush_overlapping(kv_db *db, const uint8_t *lo, size_t lon, const uint8_t *hi,
                                   size_t hin, kv_err *err)
{
    kv_shared *sh = db->sh;
    int overlap = 0;
    kv_status st;
    kv_mutex_lock(&sh->db_mu);
    if (sh->mem) overlap = mem_overlaps(db, kv_mt_at(db, sh->mem), lo, lon, hi, hin);
    for (uint32_t i = 0; i < sh->n_imm && !overlap; i++)
        overlap = mem_overlaps(db, kv_mt_at(db, sh->imm[i]), lo, lon, hi, hin);
    kv_mutex_unlock(&sh->db_mu);
    if (!overlap) return KV_OK;
    st = kv_writer_rotate(db, err); /* we lead: nothing else writes meanwhile */
    if (st != KV_OK) return st;
    return kv_writer_wait_flushes(db, err);
}

/* Has the host install the tables. */
static kv_status ask_host(kv_db *db, struct kv_ingest *in, uint64_t version, kv_err *err)
{
    kv_host_req *r = kv_host_req_new(db, KV_HOST_INGEST, version, in->n * sizeof(uint64_t));
    kv_status st;
    if (!r)
        return kv_seterr(err, KV_NO_SPACE, 0,
                         "shared heap exhausted committing %zu tables (SharedHeapSize)", in->n);
    r->n = (uint32_t)in->n;
    memcpy(r->data, in->metas, in->n * sizeof(uint64_t));
    /* consumed (or unanswered): the host may have installed them */
    st = kv_host_call(db, r, &in->installed, err);
    return st;
}

kv_status kv_ingest_apply(kv_db *db, struct kv_ingest *in, uint64_t version, kv_err *err)
{
    const kv_table_meta *first = kv_tm_at(db, in->metas[0]);
    const kv_table_meta *last = kv_tm_at(db, in->metas[in->n - 1]);
    kv_status st;
    st = flush_overlapping(db, kv_tm_smallest(first), kv_ikey_ulen(first->smallest_len),
                           kv_tm_largest(last), kv_ikey_ulen(last->largest_len), err);
    /* every earlier commit durable before this one is (prefix durability) */
    if (st == KV_OK) st = kv_writer_sync_all(db, err);
    if (st != KV_OK) return st;
    return ask_host(db, in, version, err);
}

/* ---- the host's part ---- */

kv_status kv_ingest_install(kv_db *db, const uint64_t *metas, uint32_t n, uint64_t version,
                            int *level, int *consumed, kv_err *err)
{
    kv_shared *sh = db->sh;
    kv_vedit e;
    kv_status st = KV_OK;
    int L = -1;

    kv_vedit_init(&e);
    kv_mutex_lock(&sh->vset.mu);
    for (uint32_t i = 0; i < n && st == KV_OK; i++) {
        kv_table_meta *tm = kv_tm_at(db, metas[i]);
        /* each table as deep as nothing above overlaps it (the tables of
         * one ingest do not overlap one another) */
        int l = kv_compaction_ingest_level(db, kv_ver_at(db, sh->vset.current), kv_tm_smallest(tm),
                                           kv_ikey_ulen(tm->smallest_len), kv_tm_largest(tm),
                                           kv_ikey_ulen(tm->largest_len));
        if (L < 0 || l < L) L = l;
        tm->global_version = version;
        tm->min_version = tm->max_version = version;
        /* bounds as readers see them: at the table's version */
        kv_ikey_put_ts(tm->keys + tm->smallest_len - KV_TS_SIZE, version);
        kv_ikey_put_ts(tm->keys + tm->smallest_len + tm->largest_len - KV_TS_SIZE, version);
        st = kv_vedit_add(&e, l, metas[i], err);
    }
    if (st == KV_OK) {
        *consumed = 1;
        st = kv_apply_edit(db, &e, err);
    }
    kv_cond_broadcast(&sh->vset.cv);
    kv_mutex_unlock(&sh->vset.mu);
    kv_vedit_free(&e);
    if (st == KV_OK) {
        *level = L;
        kv_log(db, KV_LOG_INFO, "committed version %llu by ingesting %u tables at level %d%s",
               (unsigned long long)version, n, L, n > 1 ? " and below" : "");
    }
    return st;
}
