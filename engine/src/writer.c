/*
 * writer.c - group commit: kv_write(), the leader's round, WAL files and
 * memtable rotation (see writer.h for the protocol and invariants).
 */
#include "writer.h"

#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <sched.h>
#include <time.h>

#include "batch.h"
#include "conflict.h"
#include "db.h"
#include "vlog.h"
#include "err.h"
#include "drops.h"
#include "ingest.h"
#include "wal.h"

#define GROUP_MAX_BYTES (1u << 20)
#define GROUP_SMALL_FIRST (128u << 10)
#define GROUP_MAX_ITEMS 256
#define GATHER_MAX_US 60
/* a synced group with at most this many value-log bytes writes them
 * inline in its WAL records too, and syncs only the WAL (writer.h) */
#define SYNC_INLINE_MAX (64u << 10)
/* a synced group zero-fills this much WAL ahead of its records */
#define WAL_PREALLOC (1u << 20)

/* One batch of a leader's group: where its image is in memory. */
typedef struct grec {
    uint8_t *rec;
    size_t len;
    uint8_t *vbuf;
    size_t vlen;
    const uint32_t *ptrs;
    uint32_t n_ptrs;
    const kv_batch_cond *conds;
    uint32_t n_conds;
    const kv_vkeys *vkeys;
    uint64_t version;
    uint64_t cost;
    kv_wq_item *item;         /* NULL for the fast-path leader's own batch */
    void *special;            /* KV_WQ_INGEST / KV_WQ_DROP: the owner's argument */
    int flags;                /* KV_WQ_* */
    int sync;
} grec;

static void grec_from_batch(grec *g, kv_batch *b)
{
    memset(g, 0, sizeof *g);
    if (!b) return;
    g->rec = b->buf;
    g->len = b->len;
    g->vbuf = b->vbuf;
    g->vlen = b->vlen;
    g->vkeys = &b->vkeys;
    g->ptrs = b->ptrs;
    g->n_ptrs = b->n_ptrs;
    g->conds = b->conds;
    g->n_conds = b->n_conds;
    g->cost = b->mem_cost;
}

/* Image layout after the item: record, vlog entries, then the pointer
 * triples (4-aligned) and the conditions (8-aligned). */
#define IMG_ALIGN(x, a) (((x) + (a)-1) & ~(size_t)((a)-1))

static size_t img_ptrs_off(size_t rec_len, size_t vlen)
{
    return IMG_ALIGN(rec_len + vlen, 8);
}

static size_t img_conds_off(size_t rec_len, size_t vlen, uint32_t n_ptrs)
{
    return IMG_ALIGN(img_ptrs_off(rec_len, vlen) + 12u * n_ptrs, 8);
}

/* The image of a staged item lives right after it. */
static void grec_from_item(grec *g, kv_wq_item *it)
{
    uint8_t *p = (uint8_t *)it + sizeof *it;
    memset(g, 0, sizeof *g);
    g->rec = p;
    g->len = it->rec_len;
    g->vbuf = p + it->rec_len;
    g->vlen = it->vlen;
    g->vkeys = &it->vkeys;
    g->ptrs = (const uint32_t *)(p + img_ptrs_off(it->rec_len, it->vlen));
    g->n_ptrs = it->n_ptrs;
    g->conds = (const kv_batch_cond *)(p + img_conds_off(it->rec_len, it->vlen, it->n_ptrs));
    g->n_conds = it->n_conds;
    g->cost = it->mem_cost;
    g->version = it->version;
    g->item = it;
    g->flags = it->flags;
    g->sync = it->sync;
}

static size_t image_size(const kv_batch *b)
{
    if (!b) return 0;
    return img_conds_off(b->len, b->vlen, b->n_ptrs) + sizeof(kv_batch_cond) * b->n_conds;
}

static void image_copy(uint8_t *p, const kv_batch *b)
{
    memcpy(p, b->buf, b->len);
    if (b->vlen) memcpy(p + b->len, b->vbuf, b->vlen);
    if (b->n_ptrs) memcpy(p + img_ptrs_off(b->len, b->vlen), b->ptrs, 12u * b->n_ptrs);
    if (b->n_conds)
        memcpy(p + img_conds_off(b->len, b->vlen, b->n_ptrs), b->conds,
               sizeof(kv_batch_cond) * b->n_conds);
}

static kv_wq_item *item_at(kv_db *db, uint64_t off)
{
    return (kv_wq_item *)kv_at(db, off);
}

/* ---- WAL file handling ---- */

void kv_writer_close_wal(kv_db *db)
{
    pthread_mutex_lock(&db->wal_mu);
    if (db->wal_file) db->env->close(db->wal_file);
    db->wal_file = NULL;
    db->wal_id = 0;
    pthread_mutex_unlock(&db->wal_mu);
}

kv_status kv_writer_create_wal(kv_db *db, uint64_t id, kv_err *err)
{
    char path[KV_PATH_MAX + 32];
    uint8_t hdr[KV_WAL_HEADER_SIZE];
    kv_file *f;
    kv_status st;

    kv_file_path(path, sizeof path, db->dir, id, "mem");
    st = db->env->open(db->env, path, KV_O_RDWR | KV_O_CREATE | KV_O_EXCL, &f, err);
    if (st != KV_OK) return st;
    kv_wal_file_header(hdr, id);
    st = kv_env_pwrite(db->env, f, hdr, sizeof hdr, 0, err);
    if (st != KV_OK) {
        db->env->close(f);
        db->env->remove(db->env, path, NULL);
        return st;
    }
    pthread_mutex_lock(&db->wal_mu);
    if (db->wal_file) db->env->close(db->wal_file);
    db->wal_file = f;
    db->wal_id = id;
    pthread_mutex_unlock(&db->wal_mu);
    return KV_OK;
}

/* This process's handle on memtable mt's WAL, opened on first use. */
static kv_status wal_handle(kv_db *db, const kv_memtable *mt, kv_file **out, kv_err *err)
{
    kv_status st = KV_OK;
    pthread_mutex_lock(&db->wal_mu);
    if (db->wal_id != mt->id || !db->wal_file) {
        char path[KV_PATH_MAX + 32];
        kv_file *f;
        kv_file_path(path, sizeof path, db->dir, mt->id, "mem");
        st = db->env->open(db->env, path, KV_O_RDWR, &f, err);
        if (st == KV_OK) {
            if (db->wal_file) db->env->close(db->wal_file);
            db->wal_file = f;
            db->wal_id = mt->id;
        }
    }
    *out = db->wal_file;
    pthread_mutex_unlock(&db->wal_mu);
    return st;
}

/* Zero-fills the WAL past the records a synced group is about to write
 * (rec_end), unless that is done already.  A later synced group then
 * overwrites zeros on disk: its fdatasync writes data only, with no
 * journal commit for a grown file (PostgreSQL zero-fills its WAL segments
 * for the same reason).  The group's fsync makes the zeros durable;
 * replay takes zeros as the end of the log (wal.h).  Best effort: if it
 * fails (a full disk), the records still append.  Leader only. */
static void wal_prealloc(kv_db *db, kv_memtable *mt, kv_file *f, uint64_t rec_end)
{
    static const uint8_t zeros[64u << 10];
    struct iovec iov[WAL_PREALLOC / sizeof zeros];
    if (rec_end < mt->wal_zeroed) return;
    for (size_t i = 0; i < sizeof iov / sizeof iov[0]; i++) {
        iov[i].iov_base = (void *)zeros;
        iov[i].iov_len = sizeof zeros;
    }
    if (db->env->pwritev(f, iov, (int)(sizeof iov / sizeof iov[0]), KV_WAL_HEADER_SIZE + rec_end,
                         NULL) == KV_OK)
        mt->wal_zeroed = rec_end + WAL_PREALLOC;
}

/* ---- rotation ---- */

static uint64_t now_us(kv_db *db)
{
    return db->env->now_micros(db->env);
}

/* Replaces the mutable memtable with a fresh one (WAL id already
 * created), moving the old one to the immutable list.  Stalls while
 * NumMemtables are waiting for the flush thread. */
static kv_status rotate_to(kv_db *db, uint64_t id, kv_err *err)
{
    kv_shared *sh = db->sh;
    kv_memtable *nmt, *old;
    kv_view *old_view = NULL;
    kv_status st;
    uint64_t t0 = 0;

    kv_mutex_lock(&sh->db_mu);
    while (sh->n_imm >= (uint32_t)db->opt->num_memtables || !kv_mt_slot_available(db)) {
        if (!t0) {
            t0 = now_us(db);
            KV_STAT_ADD(db, write_stalls, 1);
            kv_cond_signal(&sh->flush_cv);
        }
        if (atomic_load(&sh->stopping) || atomic_load(&sh->bg_status) != KV_OK) {
            kv_mutex_unlock(&sh->db_mu);
            st = kv_check_bg_error(db, err);
            return st != KV_OK ? st : kv_seterr(err, KV_CLOSED, 0, "database is closing");
        }
        kv_cond_timedwait_ms(&sh->mem_cv, &sh->db_mu, 100);
    }
    if (t0) KV_STAT_ADD(db, write_stall_micros, now_us(db) - t0);
    st = kv_mt_create(db, id, &nmt, err);
    if (st != KV_OK) {
        kv_mutex_unlock(&sh->db_mu);
        return st;
    }
    old = kv_mt_at(db, sh->mem);
    if (old) {
        if (old->wal_synced == old->wal_size && old->dir_synced)
            atomic_store(&old->wal_durable, 1);
        atomic_fetch_or(&old->flags, KV_MT_IMMUTABLE);
        sh->imm[sh->n_imm++] = sh->mem; /* the list takes over the reference */
    }
    sh->mem = kv_off_of(db, nmt);
    st = kv_view_install(db, &old_view, err);
    kv_cond_signal(&sh->flush_cv);
    kv_mutex_unlock(&sh->db_mu);
    kv_view_unpin(db, old_view);
    return st;
}

static kv_status rotate(kv_db *db, kv_err *err)
{
    uint64_t id = atomic_fetch_add(&db->sh->vset.next_file_id, 1);
    kv_status st;
    if (!db->opt->in_memory) {
        st = kv_writer_create_wal(db, id, err);
        if (st != KV_OK) return st;
    }
    return rotate_to(db, id, err);
}

kv_status kv_writer_make_room(kv_db *db, uint64_t cost, kv_err *err)
{
    kv_memtable *mt = kv_mt_at(db, db->sh->mem);
    if (mt && kv_mt_used(db, mt) + cost <= db->sh->arena_size) return KV_OK;
    return rotate(db, err);
}

kv_status kv_writer_rotate(kv_db *db, kv_err *err)
{
    kv_memtable *mt = kv_mt_at(db, db->sh->mem);
    if (mt && kv_sl_empty(kv_mt_sl(db, mt))) return KV_OK;
    return rotate(db, err);
}

/* A synced write makes every earlier write durable (prefix durability),
 * including those still only in the WALs of immutable memtables that were
 * rotated out without a sync.  Syncs those WALs once.  Leader only. */
static kv_status sync_older_wals(kv_db *db, kv_err *err)
{
    kv_shared *sh = db->sh;
    kv_memtable *todo[KV_MAX_MEMTABLES];
    uint32_t n = 0;
    kv_status st = KV_OK;

    kv_mutex_lock(&sh->db_mu);
    for (uint32_t i = 0; i < sh->n_imm; i++) {
        kv_memtable *mt = kv_mt_at(db, sh->imm[i]);
        if (!atomic_load(&mt->wal_durable) && mt->id) {
            kv_mt_ref(mt);
            todo[n++] = mt;
        }
    }
    kv_mutex_unlock(&sh->db_mu);
    for (uint32_t i = 0; i < n; i++) {
        char path[KV_PATH_MAX + 32];
        kv_file *f;
        kv_status s2;
        kv_file_path(path, sizeof path, db->dir, todo[i]->id, "mem");
        s2 = db->env->open(db->env, path, KV_O_RDWR, &f, st == KV_OK ? err : NULL);
        if (s2 == KV_NOT_FOUND) s2 = KV_OK; /* flushed meanwhile: its table is durable */
        else if (s2 == KV_OK) {
            s2 = db->env->sync(f, st == KV_OK ? err : NULL);
            db->env->close(f);
            if (s2 == KV_OK) atomic_store(&todo[i]->wal_durable, 1);
        }
        if (st == KV_OK) st = s2;
        kv_mt_unref(db, todo[i]);
    }
    if (st == KV_OK && n) st = db->env->sync_dir(db->env, db->dir, err);
    return st;
}

kv_status kv_writer_sync_all(kv_db *db, kv_err *err)
{
    kv_memtable *mt = kv_mt_at(db, db->sh->mem);
    kv_file *f;
    kv_status st;
    if (db->opt->in_memory) return KV_OK;
    st = kv_vlog_sync(db, err);
    if (st == KV_OK) st = sync_older_wals(db, err);
    if (st == KV_OK && mt && mt->id && mt->wal_synced != mt->wal_size) {
        st = wal_handle(db, mt, &f, err);
        if (st == KV_OK) st = db->env->sync(f, err);
        if (st == KV_OK) mt->wal_synced = mt->wal_size;
    }
    if (st == KV_OK && mt && mt->id && !mt->dir_synced) {
        st = db->env->sync_dir(db->env, db->dir, err);
        if (st == KV_OK) mt->dir_synced = 1;
    }
    return st;
}

/* ---- the leader's round ---- */

/* 1 if the newest committed version of every conditioned key is the one
 * required.  REQUIRES: leader (no commit can slip in). */
static int conditions_hold(kv_db *db, const grec *g, kv_err *err, kv_status *st)
{
    for (uint32_t i = 0; i < g->n_conds; i++) {
        kv_vstruct vs;
        uint8_t ptr[KV_VPTR_SIZE];
        uint64_t version = 0;
        int found = 0;
        *st = kv_lookup_newest(db, g->rec + g->conds[i].key_off, g->conds[i].klen, &vs, ptr,
                               &version, &found, err);
        if (*st != KV_OK) return 0;
        if (!found || version != g->conds[i].version) return 0;
    }
    return 1;
}

/* The group's WAL records, sealed, as iov entries: with inl, records
 * with placed values get their inline form (written into inl). */
static kv_status group_records(grec *g, int n, int any_sync, uint8_t *inl, struct iovec *iov,
                               int *niov, uint64_t *bytes, kv_err *err)
{
    size_t used = 0;
    for (int i = 0; i < n; i++) {
        uint8_t *rec = g[i].rec;
        size_t len = g[i].len;
        if (!len) continue;
        if (inl && g[i].n_ptrs) {
            len = kv_record_inline(g[i].rec, g[i].len, g[i].vbuf, g[i].ptrs, g[i].n_ptrs,
                                   inl + used);
            if (!len) return kv_seterr(err, KV_CORRUPTION, 0, "malformed batch record in a group");
            rec = inl + used;
            used += len;
        } else if (any_sync && g[i].vlen) {
            /* the vlog is already durable: say so in the record */
            rec[KV_WAL_REC_HDR + 12] |= KV_WAL_F_VLOG_SYNCED;
        }
        kv_wal_seal(rec, len, g[i].version);
        iov[*niov].iov_base = rec;
        iov[(*niov)++].iov_len = len;
        *bytes += len;
    }
    return KV_OK;
}

static kv_status write_group(kv_db *db, grec *g, int n, int any_sync, kv_err *err)
{
    kv_shared *sh = db->sh;
    kv_wq *q = &sh->wq;
    uint64_t cost = 0, bytes = 0, vrec = 0, inl_size = 0;
    kv_memtable *mt;
    kv_status st = KV_OK;
    struct iovec iov_small[16], *iov = iov_small;
    kv_vlog_piece pieces_small[16], *pieces = pieces_small;
    uint8_t *inl = NULL;
    int i, niov = 0, npieces = 0, rotate_after = 0, rotate_vlog = 0;

    if (n == 1 && g[0].n_conds) { /* a conditional batch: a group of its own */
        if (!conditions_hold(db, &g[0], err, &st)) {
            if (st != KV_OK) return st;
            return kv_seterr(err, KV_CONFLICT, 0, "a key changed since the batch's condition");
        }
    }
    for (i = 0; i < n; i++) {
        vrec += g[i].vlen;
        inl_size += kv_record_inline_bound(g[i].len, g[i].vlen, g[i].n_ptrs);
        cost += g[i].cost;
        if (g[i].flags & KV_WQ_ROTATE_MEM) rotate_after = 1;
        if (g[i].flags & KV_WQ_ROTATE_VLOG) rotate_vlog = 1;
    }
    if (rotate_vlog && !db->opt->in_memory) {
        st = kv_vlog_rotate(db, err);
        if (st != KV_OK) {
            kv_set_bg_error(db, err);
            return st;
        }
    }
    st = kv_writer_make_room(db, cost, err);
    if (st != KV_OK) {
        if (st == KV_IO || (st == KV_NO_SPACE && err && err->sys_errno)) kv_set_bg_error(db, err);
        return st;
    }
    mt = kv_mt_at(db, sh->mem);
    /* one fsync instead of two: a synced group whose few value-log bytes
     * are the only unsynced ones any WAL record may need (writer.h, 4) */
    if (any_sync && !db->opt->in_memory && vrec && vrec <= SYNC_INLINE_MAX &&
        !q->vlog_unsynced_ptrs)
        inl = malloc(inl_size); /* NULL: the usual way */
    if (n > 16) {
        iov = malloc(sizeof *iov * (size_t)n);
        pieces = malloc(sizeof *pieces * (size_t)n);
        if (!iov || !pieces) {
            free(iov == iov_small ? NULL : iov);
            free(pieces == pieces_small ? NULL : pieces);
            free(inl);
            return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory in group commit");
        }
    }
    /* value-log entries first, pointers patched into the records */
    for (i = 0; i < n; i++)
        if (g[i].vlen) {
            pieces[npieces].vbuf = g[i].vbuf;
            pieces[npieces].vlen = g[i].vlen;
            pieces[npieces].n_entries = g[i].n_ptrs;
            pieces[npieces].rec = g[i].rec;
            pieces[npieces].ptrs = g[i].ptrs;
            pieces[npieces].n_ptrs = g[i].n_ptrs;
            pieces[npieces].keys = g[i].vkeys;
            npieces++;
        }
    if (npieces) {
        uint32_t hw_fid = 0;
        uint64_t hw_end = 0;
        st = kv_vlog_write(db, pieces, npieces, 0, &hw_fid, &hw_end, err);
        if (st != KV_OK) kv_set_bg_error(db, err);
        else mt->has_vptrs = 1;
    }
    /* prefix durability: a synced write makes every vlog byte a WAL
     * record may point to durable, before its own WAL records
     * (wal.h: KV_WAL_F_VLOG_SYNCED) */
    if (st == KV_OK && any_sync && !db->opt->in_memory &&
        (q->vlog_unsynced_ptrs || (npieces && !inl))) {
        st = kv_vlog_sync(db, err);
        if (st != KV_OK) kv_set_bg_error(db, err);
        else q->vlog_unsynced_ptrs = 0;
    } else if (st == KV_OK && npieces && !inl)
        q->vlog_unsynced_ptrs = 1;
    if (st == KV_OK) st = group_records(g, n, any_sync, inl, iov, &niov, &bytes, err);
    if (st == KV_OK && niov && !db->opt->in_memory) {
        kv_file *f;
        st = wal_handle(db, mt, &f, err);
        if (st == KV_OK)
            st = db->env->pwritev(f, iov, niov, KV_WAL_HEADER_SIZE + mt->wal_size, err);
        if (st == KV_OK && any_sync) wal_prealloc(db, mt, f, mt->wal_size + bytes);
        if (st == KV_OK) {
            mt->wal_size += bytes;
            KV_STAT_ADD(db, bytes_written, bytes);
            if (any_sync) {
                st = sync_older_wals(db, err);
                if (st == KV_OK) st = db->env->sync(f, err);
                if (st == KV_OK) mt->wal_synced = mt->wal_size;
                KV_STAT_ADD(db, syncs, 1);
                /* a new WAL's name must be durable too before we acknowledge */
                if (st == KV_OK && !mt->dir_synced) {
                    st = db->env->sync_dir(db->env, db->dir, err);
                    if (st == KV_OK) mt->dir_synced = 1;
                }
            }
        }
        if (st != KV_OK) kv_set_bg_error(db, err);
    }
    free(inl);
    if (iov != iov_small) free(iov);
    if (pieces != pieces_small) free(pieces);
    for (i = 0; i < n && st == KV_OK; i++) {
        if (!g[i].len) continue;
        st = kv_mt_apply(db, mt, g[i].rec + KV_WAL_REC_HDR, g[i].len - KV_WAL_REC_HDR,
                         g[i].version, err);
        if (st != KV_OK) kv_set_bg_error(db, err);
    }
    /* inline values make a WAL outgrow its memtable: bound replay's work */
    if (mt->wal_size > 2 * sh->arena_size) rotate_after = 1;
    if (st == KV_OK) {
        atomic_store_explicit(&sh->visible_version, g[n - 1].version, memory_order_release);
        KV_STAT_ADD(db, write_groups, 1);
        KV_STAT_ADD(db, writes, (uint64_t)n);
        if (rotate_after) st = kv_writer_rotate(db, err);
    }
    return st;
}

/* Collects the group behind `own` (queued items, already linked), runs
 * it, marks every item done and hands leadership back.  REQUIRES wq.mu
 * held and leadership taken; returns with wq.mu released. */
static kv_status lead(kv_db *db, grec *own, kv_wq_item *own_item, kv_err *err)
{
    kv_wq *q = &db->sh->wq;
    grec small[32], *g = small;
    int n = 0, cap = 32, any_sync = 0;
    uint64_t bytes = 0, limit, off, last = 0;
    kv_wq_item *head;
    kv_status st;
    kv_err lerr;

    /* Gathering: a synced group pays one fsync however many it carries.
     * When the last synced group had company, commits that were released
     * with it are about to queue again: give them a moment to join, rather
     * than fsync for one and make them wait a whole fsync more. */
    if (own->sync && q->last_sync_group > 1 && !own->n_conds &&
        !(own->flags & (KV_WQ_INGEST | KV_WQ_DROP))) {
        uint64_t t0 = now_us(db);
        for (;;) {
            uint32_t queued = 0;
            for (off = own_item ? own_item->next : q->head; off; off = item_at(db, off)->next)
                queued++;
            if (queued + 1 >= q->last_sync_group || now_us(db) - t0 >= GATHER_MAX_US) break;
            kv_mutex_unlock(&q->mu);
            sched_yield(); /* the released committers are runnable: let them queue */
            kv_mutex_lock(&q->mu);
        }
    }
    g[n++] = *own;
    any_sync |= own->sync;
    bytes = own->len + own->vlen;
    limit = bytes <= GROUP_SMALL_FIRST ? bytes + GROUP_SMALL_FIRST : GROUP_MAX_BYTES;
    if (limit > GROUP_MAX_BYTES) limit = bytes > GROUP_MAX_BYTES ? bytes : GROUP_MAX_BYTES;
    off = own_item ? own_item->next : q->head;
    if (own_item) last = kv_off_of(db, own_item);
    /* conditional batches, ingests and drops lead alone; nobody joins them */
    for (; off && n < GROUP_MAX_ITEMS && !own->n_conds && !(own->flags & (KV_WQ_INGEST | KV_WQ_DROP));
         off = item_at(db, off)->next) {
        kv_wq_item *it = item_at(db, off);
        if (!it->staged) break;     /* private: only its owner writes it */
        if (it->n_conds) break;     /* conditional: its own group */
        if (bytes + it->rec_len + it->vlen > limit) break;
        if (n == cap) {
            grec *ng = malloc(sizeof *ng * (size_t)cap * 2);
            if (!ng) break;
            memcpy(ng, g, sizeof *ng * (size_t)n);
            if (g != small) free(g);
            g = ng;
            cap *= 2;
        }
        grec_from_item(&g[n++], it);
        bytes += it->rec_len + it->vlen;
        any_sync |= it->sync;
        last = off;
    }
    kv_mutex_unlock(&q->mu);

    st = kv_check_bg_error(db, &lerr);
    if (st == KV_OK && (own->flags & (KV_WQ_INGEST | KV_WQ_DROP))) {
        st = (own->flags & KV_WQ_INGEST) ? kv_ingest_apply(db, own->special, own->version, &lerr)
                                         : kv_drop_apply(db, own->special, own->version, &lerr);
        /* published even if it failed: nothing is stored at the version,
         * and readers must move past it (its conflict record names it) */
        atomic_store_explicit(&db->sh->visible_version, own->version, memory_order_release);
    } else if (st == KV_OK)
        st = write_group(db, g, n, any_sync, &lerr);

    kv_mutex_lock(&q->mu);
    if (any_sync) q->last_sync_group = (uint32_t)n;
    for (int i = 0; i < n; i++) {
        if (!g[i].item) continue;
        g[i].item->status = st;
        g[i].item->sys_errno = st == KV_OK ? 0 : lerr.sys_errno;
        g[i].item->done = 1;
        kv_wake_bump(&g[i].item->wake);
    }
    if (last) { /* pop the group: it is a prefix of the queue */
        q->head = item_at(db, last)->next;
        if (!q->head) q->tail = 0;
    }
    q->leader_active = 0;
    /* the writer now first in the queue leads next */
    head = q->head ? item_at(db, q->head) : NULL;
    if (head) kv_wake_bump(&head->wake);
    kv_cond_broadcast(&q->cv);
    kv_mutex_unlock(&q->mu);
    /* posted after the lock: a done writer may free its item meanwhile,
     * and a post to reused memory is only a spurious wake (sync.h) */
    for (int i = 0; i < n; i++)
        if (g[i].item) kv_wake_post(&g[i].item->wake);
    if (head) kv_wake_post(&head->wake);
    if (g != small) free(g);
    if (st != KV_OK) kv_err_copy(err, &lerr);
    return st;
}

/* The serialisation point of a transaction: under wq.mu, before the
 * commit gets its version.  0 = go ahead (writes recorded at version),
 * 1 = conflict (nothing recorded, no version used). */
static int txn_conflicts(kv_db *db, const kv_batch *b, uint64_t version)
{
    if (!b || !b->txn || !db->opt->detect_conflicts) return 0;
    if (b->n_txn_segs && kv_conflict_check(db, b->txn_reads, b->txn_segs, b->n_txn_segs))
        return 1;
    kv_conflict_record(db, b->txn_writes, b->n_txn_writes, version);
    return 0;
}

static kv_status txn_conflict_err(kv_err *err)
{
    return kv_seterr(err, KV_CONFLICT, 0,
                     "transaction conflict: a key it read was written by a transaction that "
                     "committed after it began");
}

/* Writes b (NULL: only flags' work) through the queue: leads at once if
 * the queue is idle, else queues it and waits for a leader, or leads when
 * its turn comes. */
static kv_status enqueue_and_wait(kv_db *db, kv_batch *b, int sync, int flags, void *special,
                                  uint64_t *version_out, kv_err *err)
{
    kv_wq *q = &db->sh->wq;
    uint64_t off, version;
    kv_wq_item *it;
    kv_status st;
    uint32_t seen;
    int staged = 1;

    kv_mutex_lock(&q->mu);
    if (!q->leader_active && !q->head) {
        /* nobody leading or queued: lead at once with the batch where it
         * is, with no copy of it (megabytes for a spill) into the shared
         * heap */
        grec own;
        if (txn_conflicts(db, b, q->last_version + 1)) {
            kv_mutex_unlock(&q->mu);
            return txn_conflict_err(err);
        }
        q->leader_active = 1;
        grec_from_batch(&own, b);
        own.version = b ? ++q->last_version : q->last_version;
        own.flags = flags;
        own.sync = sync;
        own.special = special;
        st = lead(db, &own, NULL, err); /* releases wq.mu */
        if (st == KV_OK && version_out) *version_out = own.version;
        return st;
    }
    kv_mutex_unlock(&q->mu);
    /* an ingest or drop is private: only its owner can run it */
    off = special ? 0 : kv_heap_alloc_db(db, sizeof(kv_wq_item) + image_size(b));
    if (!off) { /* too big to stage: keep it private */
        staged = 0;
        off = kv_heap_alloc_db(db, sizeof(kv_wq_item));
        if (!off)
            return kv_seterr(err, KV_NO_SPACE, 0,
                             "shared heap exhausted queueing a write (SharedHeapSize)");
    }
    it = item_at(db, off);
    if (staged && b) image_copy((uint8_t *)it + sizeof *it, b);
    it->staged = (uint32_t)staged;
    it->rec_len = b ? b->len : 0;
    it->vlen = b ? b->vlen : 0;
    it->n_ptrs = b ? b->n_ptrs : 0;
    it->n_conds = b ? b->n_conds : 0;
    it->vkeys.state = KV_VKEYS_NONE;
    if (b) it->vkeys = b->vkeys;
    it->mem_cost = b ? b->mem_cost : 0;
    it->sync = (uint8_t)sync;
    it->flags = (uint8_t)flags;
    atomic_store(&it->wake, 0);

    kv_mutex_lock(&q->mu);
    if (txn_conflicts(db, b, q->last_version + 1)) {
        kv_mutex_unlock(&q->mu);
        kv_heap_free_db(db, off);
        return txn_conflict_err(err);
    }
    version = b ? ++q->last_version : q->last_version;
    it->version = version;
    if (q->tail) item_at(db, q->tail)->next = off;
    else q->head = off;
    q->tail = off;
    for (;;) {
        if (it->done) {
            st = (kv_status)it->status;
            if (st != KV_OK && st != KV_CONFLICT) {
                kv_status bst = kv_check_bg_error(db, err);
                if (bst == KV_OK)
                    kv_seterr(err, st, it->sys_errno, "write failed: %s", kv_status_str(st));
            } else if (st == KV_CONFLICT)
                kv_seterr(err, st, 0, "a key changed since the batch's condition");
            kv_mutex_unlock(&q->mu);
            break;
        }
        if (!q->leader_active && q->head == off) {
            grec own;
            q->leader_active = 1;
            if (staged) grec_from_item(&own, it);
            else {
                grec_from_batch(&own, b);
                own.version = version;
                own.item = it;
                own.flags = flags;
                own.sync = sync;
                own.special = special;
            }
            st = lead(db, &own, it, err); /* releases wq.mu */
            break;
        }
        seen = atomic_load_explicit(&it->wake, memory_order_acquire);
        kv_mutex_unlock(&q->mu);
        kv_wake_wait(&it->wake, seen);
        kv_mutex_lock(&q->mu);
    }
    kv_heap_free_db(db, off);
    if (st == KV_OK && version_out) *version_out = version;
    return st;
}

kv_status kv_write(kv_db *db, const kv_write_options *wo, kv_batch *b, uint64_t *version_out,
                   kv_err *err)
{
    kv_batch *conv = NULL;
    uint64_t threshold;
    int sync;
    kv_status st;

    if (!db || !b) return kv_seterr(err, KV_INVALID, 0, "kv_write: db and batch are required");
    st = kv_check_usable(db, err);
    if (st != KV_OK) return st;
    if (db->opt->read_only)
        return kv_seterr(err, KV_READ_ONLY, 0, "cannot write: the database was opened ReadOnly");
    if (b->count == 0) {
        if (version_out) *version_out = kv_latest_version(db);
        return KV_OK;
    }
    /* a batch built for other settings (kv_batch_new) is re-placed here,
     * in the caller's thread, not by the leader */
    threshold = db->opt->in_memory ? UINT64_MAX : (uint64_t)db->opt->value_threshold;
    if (b->threshold != threshold &&
        (b->n_ptrs || (b->max_inline && b->max_inline - 1 >= threshold))) {
        conv = kv_batch_rebuild(b, threshold, err);
        if (!conv) return err ? err->code : KV_NO_MEMORY;
        b = conv;
    }
    if (b->mem_cost + 4096 > db->sh->arena_size) {
        kv_batch_free(conv);
        return kv_seterr(err, KV_TOO_BIG, 0,
                         "batch of %zu bytes (%u entries) does not fit in a memtable "
                         "(MemTableSize %lld)",
                         b->len, b->count, (long long)db->opt->mem_table_size);
    }
    st = kv_check_bg_error(db, err);
    if (st != KV_OK) {
        kv_batch_free(conv);
        return st;
    }
    sync = !db->opt->in_memory && ((wo && wo->sync) || db->opt->sync_writes);
    st = enqueue_and_wait(db, b, sync, 0, NULL, version_out, err);
    kv_batch_free(conv);
    return st;
}

kv_status kv_writer_special(kv_db *db, int flag, void *arg, kv_batch *txn,
                            uint64_t *version_out, kv_err *err)
{
    kv_status st = kv_check_bg_error(db, err);
    if (st != KV_OK) return st;
    return enqueue_and_wait(db, txn, 1, flag, arg, version_out, err);
}

kv_status kv_writer_rotate_vlog(kv_db *db, kv_err *err)
{
    return enqueue_and_wait(db, NULL, 0, KV_WQ_ROTATE_VLOG, NULL, NULL, err);
}

kv_status kv_flush(kv_db *db, kv_err *err)
{
    kv_status st = kv_check_usable(db, err);
    if (st != KV_OK) return st;
    if (db->opt->read_only) return KV_OK;
    st = kv_writer_rotate_mem(db, err);
    if (st != KV_OK) return st;
    return kv_writer_wait_flushes(db, err);
}

kv_status kv_writer_rotate_mem(kv_db *db, kv_err *err)
{
    return enqueue_and_wait(db, NULL, 0, KV_WQ_ROTATE_MEM, NULL, NULL, err);
}

kv_status kv_writer_wait_flushes(kv_db *db, kv_err *err)
{
    kv_shared *sh = db->sh;
    uint64_t target;
    kv_mutex_lock(&sh->db_mu);
    target = sh->flushes_done + sh->n_imm;
    kv_cond_signal(&sh->flush_cv);
    while (sh->flushes_done < target && !atomic_load(&sh->stopping) &&
           atomic_load(&sh->bg_status) == KV_OK)
        kv_cond_timedwait_ms(&sh->flushed_cv, &sh->db_mu, 100);
    kv_mutex_unlock(&sh->db_mu);
    if (atomic_load(&sh->stopping)) return kv_seterr(err, KV_CLOSED, 0, "database is closing");
    return kv_check_bg_error(db, err);
}
