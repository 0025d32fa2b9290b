/*
 * vlog_bulk.c - a large transaction's own value-log files, written through
 * queued direct writes (see vlog_bulk.h for the lifecycle and why).
 */
#include "vlog_bulk.h"

#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "err.h"
#include "vlog.h"

struct kv_vbulk {
    kv_vbulk *next;          /* in the vcache's registry */
    _Atomic uint32_t fid;    /* the file being filled; 0 none */
    _Atomic uint64_t done;   /* bytes of it on disk: reads below need no wait */
    kv_file *file;           /* its handle (written directly when `direct`) */
    int direct;              /* file was opened KV_O_DIRECT */
    uint64_t size;           /* bytes placed (pointers handed out), header included */
    uint64_t entries;
    uint64_t reserved;       /* blocks reserved up to here */
    kv_vkeys keys;           /* of its entries */
    uint64_t buf_off;        /* file offset of buf[cur]'s first byte (aligned) */
    size_t fill;             /* bytes in buf[cur] */
    uint8_t *buf[KV_VLOG_BULK_BUFS];
    int busy[KV_VLOG_BULK_BUFS]; /* queued, not yet complete */
    int cur;
    kv_aio *aio;             /* NULL: every write is synchronous */
    kv_status failed;        /* a queued write failed: the transaction cannot commit */
    kv_err fail_err;
    uint32_t *fids;          /* every file made, the current one last */
    size_t n_fids, cap_fids;
    int committed;           /* kv_vbulk_commit ran: tables may point in */
};

/* ---- the write queue ---- */

/* Records the first failure of a queued write. */
static kv_status fail(kv_vbulk *vb, kv_status st, const kv_err *e)
{
    if (vb->failed == KV_OK) {
        vb->failed = st;
        vb->fail_err = *e;
    }
    return st;
}

/* Waits until buffer b is free (b < 0: until every buffer is). */
static kv_status reap(kv_vbulk *vb, kv_db *db, int b, kv_err *err)
{
    for (;;) {
        int any = 0;
        uint64_t tag = UINT64_MAX;
        kv_err e;
        kv_status st;
        for (int i = 0; i < KV_VLOG_BULK_BUFS; i++) any |= vb->busy[i];
        if (b >= 0 ? !vb->busy[b] : !any) break;
        st = db->env->aio_wait(vb->aio, &tag, &e);
        if (tag < KV_VLOG_BULK_BUFS) vb->busy[tag] = 0;
        if (st != KV_OK) {
            fail(vb, st, &e);
            if (tag >= KV_VLOG_BULK_BUFS) break; /* nothing completed: do not spin */
        }
    }
    if (vb->failed != KV_OK) {
        if (err) *err = vb->fail_err;
        return vb->failed;
    }
    return KV_OK;
}

/* Writes n bytes of buffer b at off: queued when possible. */
static kv_status submit(kv_vbulk *vb, kv_db *db, int b, size_t n, uint64_t off, kv_err *err)
{
    kv_status st;
    if (vb->direct) atomic_fetch_add_explicit(&db->sh->vlog.direct_bytes, n, memory_order_relaxed);
    if (vb->aio && vb->direct) {
        st = db->env->aio_write(vb->aio, vb->file, vb->buf[b], n, off, (uint64_t)b, err);
        if (st == KV_OK) {
            vb->busy[b] = 1;
            return KV_OK;
        }
        /* the queue refused it: this one and the rest synchronously,
         * once the queued ones are complete (and their outcome known) */
        st = reap(vb, db, -1, err);
        db->env->aio_free(vb->aio);
        vb->aio = NULL;
        if (st != KV_OK) return st;
    }
    return kv_env_pwrite(db->env, vb->file, vb->buf[b], n, off, err);
}

/* Makes sure the file's blocks are reserved up to end. */
static void reserve(kv_vbulk *vb, kv_db *db, uint64_t end)
{
    kv_err e;
    if (!vb->direct || !db->env->prealloc || end <= vb->reserved) return;
    end = (end + KV_VLOG_BULK_RESERVE - 1) / KV_VLOG_BULK_RESERVE * KV_VLOG_BULK_RESERVE;
    if (db->env->prealloc(vb->file, end, &e) == KV_OK)
        vb->reserved = end;
    else
        vb->reserved = UINT64_MAX; /* not offered here: writes extend the file, as before */
}

/* Writes out every byte placed so far (the partial buffer padded to a
 * block; later bytes rewrite that block) and waits for all of it. */
static kv_status drain(kv_vbulk *vb, kv_db *db, kv_err *err)
{
    kv_status st = KV_OK;
    if (!atomic_load_explicit(&vb->fid, memory_order_relaxed)) return KV_OK;
    if (vb->fill) {
        size_t n = vb->direct ? (vb->fill + KV_DIRECT_ALIGN - 1) & ~(size_t)(KV_DIRECT_ALIGN - 1)
                              : vb->fill;
        memset(vb->buf[vb->cur] + vb->fill, 0, n - vb->fill);
        reserve(vb, db, vb->buf_off + n);
        st = submit(vb, db, vb->cur, n, vb->buf_off, err);
    }
    if (st == KV_OK && vb->aio) st = reap(vb, db, -1, err);
    if (st == KV_OK) atomic_store_explicit(&vb->done, vb->size, memory_order_release);
    return st;
}

/* ---- files ---- */

/* Publishes the current file's size and keys in the shared table; while
 * owned it is not synced by anyone else (synced follows size). */
static void publish(kv_vbulk *vb, kv_db *db)
{
    kv_vlog_shared *v = &db->sh->vlog;
    kv_vfile *f;
    kv_mutex_lock(&v->mu);
    f = kv_vlog_file(db, atomic_load_explicit(&vb->fid, memory_order_relaxed));
    if (f) {
        f->size = f->synced = vb->size;
        f->entries = vb->entries;
        f->keys = vb->keys;
    }
    kv_mutex_unlock(&v->mu);
}

/* Writes out, trims and closes the current file. */
static kv_status close_file(kv_vbulk *vb, kv_db *db, kv_err *err)
{
    kv_status st;
    if (!atomic_load_explicit(&vb->fid, memory_order_relaxed)) return KV_OK;
    st = drain(vb, db, err);
    if (st == KV_OK) st = db->env->truncate(vb->file, vb->size, err); /* reserve, padding */
    if (st != KV_OK) return st;
    publish(vb, db);
    db->env->close(vb->file);
    vb->file = NULL;
    atomic_store_explicit(&vb->fid, 0, memory_order_release);
    return KV_OK;
}

static kv_status open_file(kv_vbulk *vb, kv_db *db, kv_err *err)
{
    kv_vlog_shared *v = &db->sh->vlog;
    uint32_t fid = (uint32_t)atomic_fetch_add(&db->sh->vset.next_file_id, 1);
    char path[KV_PATH_MAX + 32];
    kv_vfile *f;
    kv_status st;
    if (vb->n_fids == vb->cap_fids) {
        size_t cap = vb->cap_fids ? vb->cap_fids * 2 : 8;
        uint32_t *p = realloc(vb->fids, cap * sizeof *p);
        if (!p) return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory making a value log");
        vb->fids = p;
        vb->cap_fids = cap;
    }
    kv_vlog_path(db, path, sizeof path, fid);
    vb->direct = 1;
    st = db->env->open(db->env, path, KV_O_RDWR | KV_O_CREATE | KV_O_EXCL | KV_O_DIRECT,
                       &vb->file, err);
    if (st == KV_INVALID) { /* no direct I/O here: through the page cache */
        vb->direct = 0;
        st = db->env->open(db->env, path, KV_O_RDWR | KV_O_CREATE | KV_O_EXCL, &vb->file, err);
    }
    if (st != KV_OK) return st;
    /* registered before any byte is written: the file is the owner's alone */
    kv_mutex_lock(&v->mu);
    f = kv_vlog_table_add(db, fid, err);
    if (f) {
        f->state = KV_VF_OWNED;
        f->size = f->synced = KV_VLOG_HEADER_SIZE;
        f->keys.state = KV_VKEYS_NONE;
    }
    kv_mutex_unlock(&v->mu);
    if (!f) {
        db->env->close(vb->file);
        vb->file = NULL;
        db->env->remove(db->env, path, NULL);
        return err ? err->code : KV_NO_SPACE;
    }
    vb->fids[vb->n_fids++] = fid;
    vb->size = KV_VLOG_HEADER_SIZE;
    vb->entries = 0;
    vb->reserved = 0;
    vb->keys.state = KV_VKEYS_NONE;
    vb->buf_off = 0;
    /* the header stays zeros until the commit: a crash before it leaves a
     * file the next open removes as empty */
    memset(vb->buf[vb->cur], 0, KV_VLOG_HEADER_SIZE);
    vb->fill = KV_VLOG_HEADER_SIZE;
    atomic_store_explicit(&vb->done, 0, memory_order_relaxed);
    atomic_store_explicit(&vb->fid, fid, memory_order_release);
    return KV_OK;
}

static kv_status writer_new(kv_db *db, kv_vbulk **out, kv_err *err)
{
    kv_vcache *c = &db->vcache;
    kv_vbulk *vb = calloc(1, sizeof *vb);
    if (!vb) return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory writing a large transaction");
    for (int i = 0; i < KV_VLOG_BULK_BUFS; i++)
        if (posix_memalign((void **)&vb->buf[i], KV_DIRECT_ALIGN, KV_VLOG_BULK_BUF) != 0) {
            vb->buf[i] = NULL;
            kv_vbulk_free(db, vb);
            return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory writing a large transaction");
        }
    if (db->env->aio_new) {
        kv_err e;
        if (db->env->aio_new(db->env, KV_VLOG_BULK_BUFS, &vb->aio, &e) != KV_OK) vb->aio = NULL;
    }
    pthread_mutex_lock(&c->mu);
    vb->next = c->bulk;
    c->bulk = vb;
    atomic_fetch_add(&c->n_bulk, 1);
    pthread_mutex_unlock(&c->mu);
    *out = vb;
    return KV_OK;
}

/* ---- the interface ---- */

kv_status kv_vbulk_append(kv_db *db, kv_vbulk **vbp, kv_batch *chunk, kv_err *err)
{
    const kv_options *o = db->opt;
    kv_vbulk *vb = *vbp;
    kv_status st = KV_OK;
    uint32_t fid;
    const uint8_t *src;
    size_t left;
    if (!chunk->n_ptrs) return KV_OK;
    if (!vb) {
        st = writer_new(db, vbp, err);
        if (st != KV_OK) return st;
        vb = *vbp;
    }
    if (vb->failed != KV_OK) {
        if (err) *err = vb->fail_err;
        return vb->failed;
    }
    /* a full file is closed before the next chunk (chunks never split) */
    if (atomic_load_explicit(&vb->fid, memory_order_relaxed) && vb->size > KV_VLOG_HEADER_SIZE &&
        (vb->size + chunk->vlen > (uint64_t)o->value_log_file_size ||
         vb->entries + chunk->n_ptrs > o->value_log_max_entries))
        st = close_file(vb, db, err);
    if (st == KV_OK && !atomic_load_explicit(&vb->fid, memory_order_relaxed))
        st = open_file(vb, db, err);
    if (st != KV_OK) return st;
    fid = atomic_load_explicit(&vb->fid, memory_order_relaxed);
    for (uint32_t j = 0; j < chunk->n_ptrs; j++) {
        kv_vptr ptr;
        ptr.fid = fid;
        ptr.len = chunk->ptrs[3 * j + 2];
        ptr.offset = vb->size + chunk->ptrs[3 * j + 1];
        kv_vptr_encode(chunk->buf + chunk->ptrs[3 * j], &ptr);
    }
    kv_vkeys_merge(&vb->keys, chunk->vkeys.state == KV_VKEYS_RANGE ? &chunk->vkeys : NULL);
    vb->size += chunk->vlen;
    vb->entries += chunk->n_ptrs;
    for (src = chunk->vbuf, left = chunk->vlen; left && st == KV_OK;) {
        size_t take = KV_VLOG_BULK_BUF - vb->fill < left ? KV_VLOG_BULK_BUF - vb->fill : left;
        memcpy(vb->buf[vb->cur] + vb->fill, src, take);
        vb->fill += take;
        src += take;
        left -= take;
        if (vb->fill < KV_VLOG_BULK_BUF) break;
        reserve(vb, db, vb->buf_off + KV_VLOG_BULK_BUF);
        st = submit(vb, db, vb->cur, KV_VLOG_BULK_BUF, vb->buf_off, err);
        vb->buf_off += KV_VLOG_BULK_BUF;
        vb->cur = (vb->cur + 1) % KV_VLOG_BULK_BUFS;
        vb->fill = 0;
        publish(vb, db); /* (statistics see the file grow) */
        if (st == KV_OK && vb->aio) st = reap(vb, db, vb->cur, err);
    }
    return st;
}

void kv_vbulk_before_read(kv_db *db, uint32_t fid, uint64_t end)
{
    kv_vcache *c = &db->vcache;
    kv_vbulk *vb, *hit = NULL;
    kv_err err;
    if (!atomic_load_explicit(&c->n_bulk, memory_order_relaxed)) return;
    pthread_mutex_lock(&c->mu);
    for (vb = c->bulk; vb && !hit; vb = vb->next)
        if (atomic_load_explicit(&vb->fid, memory_order_acquire) == fid &&
            end > atomic_load_explicit(&vb->done, memory_order_acquire))
            hit = vb;
    pthread_mutex_unlock(&c->mu);
    /* (the caller is the owner's thread: only it holds such pointers) */
    if (hit && drain(hit, db, &err) != KV_OK)
        kv_log(db, KV_LOG_WARNING, "could not write out a transaction's values: %s", err.msg);
}

kv_status kv_vbulk_commit(kv_db *db, kv_vbulk *vb, kv_err *err)
{
    kv_vlog_shared *v = &db->sh->vlog;
    kv_status st;
    if (!vb || vb->committed) return KV_OK;
    st = close_file(vb, db, err);
    for (size_t i = 0; i < vb->n_fids && st == KV_OK; i++) {
        char path[KV_PATH_MAX + 32];
        uint8_t hdr[KV_VLOG_HEADER_SIZE];
        kv_file *f;
        kv_vlog_path(db, path, sizeof path, vb->fids[i]);
        st = db->env->open(db->env, path, KV_O_RDWR, &f, err);
        if (st != KV_OK) break;
        kv_vlog_header_encode(hdr, vb->fids[i], 0, NULL);
        st = kv_env_pwrite(db->env, f, hdr, sizeof hdr, 0, err);
        if (st == KV_OK) st = db->env->sync(f, err);
        db->env->close(f);
    }
    if (st == KV_OK && vb->n_fids) st = db->env->sync_dir(db->env, db->vdir, err);
    if (st != KV_OK) return st;
    kv_mutex_lock(&v->mu);
    for (size_t i = 0; i < vb->n_fids; i++) {
        kv_vfile *f = kv_vlog_file(db, vb->fids[i]);
        if (f) f->state = KV_VF_SEALED;
    }
    v->discard_version++; /* DISCARD records a sealed file's key range */
    kv_mutex_unlock(&v->mu);
    vb->committed = 1;
    return KV_OK;
}

void kv_vbulk_commit_failed(kv_vbulk *vb)
{
    if (vb) vb->committed = 0;
}

void kv_vbulk_free(kv_db *db, kv_vbulk *vb)
{
    kv_vcache *c = &db->vcache;
    kv_vlog_shared *v = &db->sh->vlog;
    if (!vb) return;
    if (vb->aio) {
        (void)reap(vb, db, -1, NULL); /* the buffers must outlive their writes */
        db->env->aio_free(vb->aio);
    }
    if (vb->file) {
        publish(vb, db);
        db->env->close(vb->file);
    }
    if (!vb->committed && vb->n_fids) {
        /* nothing will point into them: freed by GC without a read */
        kv_mutex_lock(&v->mu);
        for (size_t i = 0; i < vb->n_fids; i++) {
            kv_vfile *f = kv_vlog_file(db, vb->fids[i]);
            if (!f) continue;
            f->state = KV_VF_SEALED; /* (it holds an entry: made for one) */
            f->dropped = 1;
            f->discard = f->size - KV_VLOG_HEADER_SIZE;
        }
        v->discard_version++;
        kv_cond_broadcast(&db->sh->vlog_cv);
        kv_mutex_unlock(&v->mu);
    }
    pthread_mutex_lock(&c->mu);
    for (kv_vbulk **pp = &c->bulk; *pp; pp = &(*pp)->next)
        if (*pp == vb) {
            *pp = vb->next;
            atomic_fetch_sub(&c->n_bulk, 1);
            break;
        }
    pthread_mutex_unlock(&c->mu);
    for (int i = 0; i < KV_VLOG_BULK_BUFS; i++) free(vb->buf[i]);
    free(vb->fids);
    free(vb);
}
