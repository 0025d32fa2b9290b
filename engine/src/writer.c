/*
 * writer.c - group commit: kv_write(), the leader's round, WAL files and
 * memtable rotation (see writer.h for the protocol and invariants).
 */
#include "writer.h"

#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>

#include "batch.h"
#include "db.h"
#include "err.h"
#include "wal.h"

#define GROUP_MAX_BYTES (1u << 20)
#define GROUP_SMALL_FIRST (128u << 10)
#define GROUP_MAX_ITEMS 256

/* One record of a leader's group. */
typedef struct grec {
    uint8_t *rec;
    size_t len;
    uint64_t version;
    uint64_t cost;
    kv_wq_item *item;         /* NULL for the fast-path leader's own record */
    int rotate;
    int sync;
} grec;

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

/* ---- the leader's round ---- */

static kv_status write_group(kv_db *db, grec *g, int n, int any_sync, kv_err *err)
{
    kv_shared *sh = db->sh;
    uint64_t cost = 0, bytes = 0;
    kv_memtable *mt;
    kv_status st = KV_OK;
    struct iovec iov_small[16], *iov = iov_small;
    int i, niov = 0, rotate_after = 0;

    for (i = 0; i < n; i++) {
        cost += g[i].cost;
        if (g[i].rotate) rotate_after = 1;
    }
    st = kv_writer_make_room(db, cost, err);
    if (st != KV_OK) return st;
    mt = kv_mt_at(db, sh->mem);
    if (n > 16) {
        iov = malloc(sizeof *iov * (size_t)n);
        if (!iov) return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory in group commit");
    }
    for (i = 0; i < n; i++) {
        if (!g[i].len) continue;
        kv_wal_seal(g[i].rec, g[i].len, g[i].version);
        iov[niov].iov_base = g[i].rec;
        iov[niov++].iov_len = g[i].len;
        bytes += g[i].len;
    }
    if (niov && !db->opt->in_memory) {
        kv_file *f;
        st = wal_handle(db, mt, &f, err);
        if (st == KV_OK)
            st = db->env->pwritev(f, iov, niov, KV_WAL_HEADER_SIZE + mt->wal_size, err);
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
    if (iov != iov_small) free(iov);
    for (i = 0; i < n && st == KV_OK; i++) {
        if (!g[i].len) continue;
        st = kv_mt_apply(db, mt, g[i].rec + KV_WAL_REC_HDR, g[i].len - KV_WAL_REC_HDR,
                         g[i].version, err);
        if (st != KV_OK) kv_set_bg_error(db, err);
    }
    if (st == KV_OK) {
        atomic_store_explicit(&sh->visible_version, g[n - 1].version, memory_order_release);
        KV_STAT_ADD(db, write_groups, 1);
        KV_STAT_ADD(db, writes, (uint64_t)n);
        if (rotate_after) st = kv_writer_rotate(db, err);
    }
    return st;
}

/* Collects the group behind `first` (queued items, already linked), runs
 * it, marks every item done and hands leadership back.  REQUIRES wq.mu
 * held and leadership taken; returns with wq.mu released. */
static kv_status lead(kv_db *db, grec *own, kv_wq_item *own_item, kv_err *err)
{
    kv_wq *q = &db->sh->wq;
    grec small[32], *g = small;
    int n = 0, cap = 32, any_sync = 0;
    uint64_t bytes = 0, limit, off, last = 0;
    kv_status st;
    kv_err lerr;

    if (own) {
        g[n++] = *own;
        any_sync |= own->sync;
        bytes = own->len;
    }
    limit = bytes <= GROUP_SMALL_FIRST ? bytes + GROUP_SMALL_FIRST : GROUP_MAX_BYTES;
    if (limit > GROUP_MAX_BYTES) limit = bytes > GROUP_MAX_BYTES ? bytes : GROUP_MAX_BYTES;
    off = own_item ? own_item->next : q->head;
    if (own_item) last = kv_off_of(db, own_item);
    for (; off && n < GROUP_MAX_ITEMS; off = item_at(db, off)->next) {
        kv_wq_item *it = item_at(db, off);
        if (!it->rec && !it->rotate) break; /* private: only its owner writes it */
        if (n && bytes + it->rec_len > limit) break;
        if (n == cap) {
            grec *ng = malloc(sizeof *ng * (size_t)cap * 2);
            if (!ng) break;
            memcpy(ng, g, sizeof *ng * (size_t)n);
            if (g != small) free(g);
            g = ng;
            cap *= 2;
        }
        g[n].rec = it->rec ? (uint8_t *)kv_at(db, it->rec) : NULL;
        g[n].len = it->rec_len;
        g[n].version = it->version;
        g[n].cost = it->mem_cost;
        g[n].item = it;
        g[n].rotate = it->rotate;
        g[n].sync = it->sync;
        n++;
        bytes += it->rec_len;
        any_sync |= it->sync;
        last = off;
    }
    kv_mutex_unlock(&q->mu);

    st = kv_check_bg_error(db, &lerr);
    if (st == KV_OK) st = write_group(db, g, n, any_sync, &lerr);

    kv_mutex_lock(&q->mu);
    for (int i = 0; i < n; i++) {
        if (!g[i].item) continue;
        g[i].item->status = st;
        g[i].item->sys_errno = st == KV_OK ? 0 : lerr.sys_errno;
        g[i].item->done = 1;
    }
    if (last) { /* pop the group: it is a prefix of the queue */
        q->head = item_at(db, last)->next;
        if (!q->head) q->tail = 0;
    }
    q->leader_active = 0;
    kv_cond_broadcast(&q->cv);
    kv_mutex_unlock(&q->mu);
    if (g != small) free(g);
    if (st != KV_OK) kv_err_copy(err, &lerr);
    return st;
}

static kv_status enqueue_and_wait(kv_db *db, kv_batch *b, int sync, int rotate_only,
                                  uint64_t *version_out, kv_err *err)
{
    kv_wq *q = &db->sh->wq;
    size_t rec_len = b ? b->len : 0;
    uint64_t off = kv_heap_alloc_db(db, sizeof(kv_wq_item) + rec_len), version;
    kv_wq_item *it;
    kv_status st;
    int staged = 1;

    if (!off) { /* too big to stage: keep it private */
        staged = 0;
        off = kv_heap_alloc_db(db, sizeof(kv_wq_item));
        if (!off)
            return kv_seterr(err, KV_NO_SPACE, 0,
                             "shared heap exhausted queueing a write (SharedHeapSize)");
    }
    it = item_at(db, off);
    if (staged && rec_len) {
        memcpy((uint8_t *)it + sizeof *it, b->buf, rec_len);
        it->rec = off + sizeof *it;
    }
    it->rec_len = rec_len;
    it->mem_cost = b ? b->mem_cost : 0;
    it->sync = (uint8_t)sync;
    it->rotate = (uint8_t)rotate_only;

    kv_mutex_lock(&q->mu);
    version = rotate_only ? q->last_version : ++q->last_version;
    it->version = version;
    if (q->tail) item_at(db, q->tail)->next = off;
    else q->head = off;
    q->tail = off;
    for (;;) {
        if (it->done) {
            st = (kv_status)it->status;
            if (st != KV_OK) {
                kv_status bst = kv_check_bg_error(db, err);
                if (bst == KV_OK) kv_seterr(err, st, it->sys_errno, "write failed: %s", kv_status_str(st));
            }
            kv_mutex_unlock(&q->mu);
            break;
        }
        if (!q->leader_active && q->head == off) {
            grec own;
            q->leader_active = 1;
            own.rec = staged ? (uint8_t *)it + sizeof *it : (b ? b->buf : NULL);
            own.len = rec_len;
            own.version = version;
            own.cost = it->mem_cost;
            own.item = it;
            own.rotate = rotate_only;
            own.sync = sync;
            st = lead(db, &own, it, err); /* releases wq.mu */
            break;
        }
        kv_cond_wait(&q->cv, &q->mu);
    }
    kv_heap_free_db(db, off);
    if (st == KV_OK && version_out) *version_out = version;
    return st;
}

kv_status kv_write(kv_db *db, const kv_write_options *wo, kv_batch *b, uint64_t *version_out,
                   kv_err *err)
{
    kv_wq *q;
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
    if (b->mem_cost + 4096 > db->sh->arena_size)
        return kv_seterr(err, KV_TOO_BIG, 0,
                         "batch of %zu bytes (%u entries) does not fit in a memtable "
                         "(MemTableSize %lld)",
                         b->len, b->count, (long long)db->opt->mem_table_size);
    st = kv_check_bg_error(db, err);
    if (st != KV_OK) return st;
    sync = !db->opt->in_memory && ((wo && wo->sync) || db->opt->sync_writes);
    q = &db->sh->wq;

    kv_mutex_lock(&q->mu);
    if (!q->leader_active && !q->head) {
        grec own;
        q->leader_active = 1;
        own.rec = b->buf;
        own.len = b->len;
        own.version = ++q->last_version;
        own.cost = b->mem_cost;
        own.item = NULL;
        own.rotate = 0;
        own.sync = sync;
        st = lead(db, &own, NULL, err); /* releases wq.mu */
        if (st == KV_OK && version_out) *version_out = own.version;
        return st;
    }
    kv_mutex_unlock(&q->mu);
    return enqueue_and_wait(db, b, sync, 0, version_out, err);
}

kv_status kv_flush(kv_db *db, kv_err *err)
{
    kv_shared *sh;
    kv_status st = kv_check_usable(db, err);
    uint64_t target;
    if (st != KV_OK) return st;
    if (db->opt->read_only) return KV_OK;
    sh = db->sh;
    st = enqueue_and_wait(db, NULL, 0, 1, NULL, err);
    if (st != KV_OK) return st;
    kv_mutex_lock(&sh->db_mu);
    target = sh->flushes_done + sh->n_imm;
    kv_cond_signal(&sh->flush_cv);
    while (sh->flushes_done < target && !atomic_load(&sh->stopping) &&
           atomic_load(&sh->bg_status) == KV_OK)
        kv_cond_timedwait_ms(&sh->flushed_cv, &sh->db_mu, 100);
    kv_mutex_unlock(&sh->db_mu);
    return kv_check_bg_error(db, err);
}
