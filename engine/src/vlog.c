/*
 * vlog.c - value-log files: the shared file table, this process's
 * mappings, the leader's appends, reads through pointers, recovery at open
 * and syncing (see vlog.h for the rules).
 */
#include "vlog.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "err.h"
#include "frame.h"
#include "vlog_bulk.h"

#define MAP_SLACK (64ull << 20) /* map this much beyond the expected size */

/* ---- the shared file table (vlog mu held) ---- */

kv_vfile *kv_vlog_file(kv_db *db, uint32_t fid)
{
    kv_vlog_shared *v = &db->sh->vlog;
    kv_vfile *f = kv_at(db, v->files);
    for (uint32_t i = 0; i < v->n; i++)
        if (f[i].fid == fid) return &f[i];
    return NULL;
}

kv_vfile *kv_vlog_table_add(kv_db *db, uint32_t fid, kv_err *err)
{
    kv_vlog_shared *v = &db->sh->vlog;
    kv_vfile *f;
    if (v->n == v->cap) {
        uint32_t cap = v->cap ? v->cap * 2 : 64;
        uint64_t off = kv_heap_alloc_db(db, sizeof(kv_vfile) * cap);
        if (!off) {
            kv_seterr(err, KV_NO_SPACE, 0, "shared heap exhausted growing the value-log table");
            return NULL;
        }
        if (v->n) memcpy(kv_at(db, off), kv_at(db, v->files), sizeof(kv_vfile) * v->n);
        if (v->files) kv_heap_free_db(db, v->files);
        v->files = off;
        v->cap = cap;
    }
    f = (kv_vfile *)kv_at(db, v->files) + v->n++;
    memset(f, 0, sizeof *f);
    f->fid = fid;
    return f;
}

/* ---- per-process handles ---- */

void kv_vcache_init(kv_vcache *c)
{
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
}

static void handle_close(kv_db *db, kv_vhandle *h)
{
    const uint8_t *map = kv_vhandle_map(h);
    if (map) db->env->unmap(h->file, map, atomic_load(&h->map_len));
    if (h->file) db->env->close(h->file);
    free(h);
}

void kv_vcache_destroy(kv_db *db)
{
    kv_vcache *c = &db->vcache;
    kv_vhandle *h, *next;
    for (h = c->list; h; h = next) {
        next = h->next;
        handle_close(db, h);
    }
    c->list = NULL;
    if (c->head_file) db->env->close(c->head_file);
    c->head_file = NULL;
    pthread_mutex_destroy(&c->mu);
}

void kv_vlog_path(kv_db *db, char *out, size_t cap, uint32_t fid)
{
    kv_file_path(out, cap, db->vdir, fid, "vlog");
}

/* Drops handles of files deleted since the last look (no local user). */
static void sweep(kv_db *db)
{
    kv_vcache *c = &db->vcache;
    uint64_t epoch = atomic_load(&db->sh->vlog.deletion_epoch);
    kv_vhandle *dead = NULL;
    if (epoch == atomic_load_explicit(&c->seen_epoch, memory_order_relaxed)) return;
    kv_mutex_lock(&db->sh->vlog.mu);
    pthread_mutex_lock(&c->mu);
    atomic_store_explicit(&c->seen_epoch, epoch, memory_order_relaxed);
    for (kv_vhandle **pp = &c->list; *pp;) {
        kv_vhandle *h = *pp;
        if (!kv_vlog_file(db, h->fid)) {
            *pp = h->next;
            h->next = dead;
            dead = h;
        } else
            pp = &h->next;
    }
    pthread_mutex_unlock(&c->mu);
    kv_mutex_unlock(&db->sh->vlog.mu);
    while (dead) {
        kv_vhandle *h = dead;
        dead = h->next;
        kv_vlog_release(db, h);
    }
}

void kv_vlog_release(kv_db *db, kv_vhandle *h)
{
    if (h && atomic_fetch_sub_explicit(&h->refs, 1, memory_order_acq_rel) == 1)
        handle_close(db, h);
}

static kv_status get_handle(kv_db *db, uint32_t fid, uint64_t need, kv_vhandle **out,
                            kv_err *err);

kv_status kv_vlog_map(kv_db *db, uint32_t fid, uint64_t need, kv_vhandle **out, kv_err *err)
{
    kv_vbulk_before_read(db, fid, need);
    return get_handle(db, fid, need, out, err);
}

/* A referenced handle on fid whose mapping covers [0, need). */
static kv_status get_handle(kv_db *db, uint32_t fid, uint64_t need, kv_vhandle **out,
                            kv_err *err)
{
    kv_vcache *c = &db->vcache;
    kv_vhandle *h;
    kv_status st = KV_OK;
    char path[KV_PATH_MAX + 32];
    const uint8_t *old_map;
    uint64_t size = 0, old_len;

    sweep(db);
    pthread_mutex_lock(&c->mu);
    for (h = c->list; h; h = h->next)
        if (h->fid == fid) break;
    if (h && kv_vhandle_map(h) && need <= atomic_load(&h->known_size) &&
        need <= atomic_load(&h->map_len)) {
        atomic_fetch_add_explicit(&h->refs, 1, memory_order_relaxed);
        pthread_mutex_unlock(&c->mu);
        *out = h;
        return KV_OK;
    }
    kv_vlog_path(db, path, sizeof path, fid);
    if (!h) {
        h = calloc(1, sizeof *h);
        if (!h) {
            pthread_mutex_unlock(&c->mu);
            return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory mapping a value log");
        }
        h->fid = fid;
        st = db->env->open(db->env, path, KV_O_READ, &h->file, err);
        if (st != KV_OK) {
            free(h);
            pthread_mutex_unlock(&c->mu);
            if (st == KV_NOT_FOUND)
                return kv_seterr(err, KV_CORRUPTION, ENOENT,
                                 "value log \"%s\" referenced by a value pointer is missing", path);
            return st;
        }
        atomic_store(&h->refs, 1);
        h->next = c->list;
        c->list = h;
    }
    /* (re)learn the size; remap when the mapping is too short */
    st = db->env->size(h->file, &size, err);
    if (st == KV_OK) atomic_store_explicit(&h->known_size, size, memory_order_relaxed);
    if (st == KV_OK && need > size) {
        /* the handle stays cached but is never handed out unmapped */
        pthread_mutex_unlock(&c->mu);
        return kv_seterr(err, KV_CORRUPTION, 0,
                         "value pointer past the end of value log \"%s\" (needs %llu bytes, file "
                         "has %llu)",
                         path, (unsigned long long)need, (unsigned long long)size);
    }
    old_map = kv_vhandle_map(h);
    old_len = atomic_load_explicit(&h->map_len, memory_order_relaxed);
    if (st == KV_OK && (!old_map || need > old_len)) {
        uint64_t len = size + MAP_SLACK;
        const uint8_t *m;
        if ((uint64_t)db->opt->value_log_file_size + MAP_SLACK > len)
            len = (uint64_t)db->opt->value_log_file_size + MAP_SLACK;
        st = db->env->map(h->file, len, &m, err);
        if (st != KV_OK && size) { /* envs that cannot map past the end */
            len = size;
            st = db->env->map(h->file, len, &m, err);
        }
        if (st == KV_OK) {
            /* an old, shorter mapping may still be in use by a local reader:
             * it stays mapped (the address space is cheap) until close */
            if (old_map && atomic_load(&h->refs) == 1) db->env->unmap(h->file, old_map, old_len);
            atomic_store_explicit(&h->map, m, memory_order_release);
            atomic_store_explicit(&h->map_len, len, memory_order_release);
        }
    }
    if (st == KV_OK && !kv_vhandle_map(h))
        st = kv_seterr(err, KV_IO, 0, "value log \"%s\" is not mapped", path);
    if (st == KV_OK) atomic_fetch_add_explicit(&h->refs, 1, memory_order_relaxed);
    pthread_mutex_unlock(&c->mu);
    if (st == KV_OK) *out = h;
    return st;
}

/* *pin if it already covers [0, need) of fid, else a fresh handle in its
 * place (the old one released).  Readers walking many entries of one file
 * keep their handle instead of taking the cache's mutex per entry. */
static kv_status repin(kv_db *db, uint32_t fid, uint64_t need, kv_vhandle **pin, kv_err *err)
{
    kv_vhandle *h = *pin;
    if (h && h->fid == fid && need <= atomic_load_explicit(&h->map_len, memory_order_acquire) &&
        need <= atomic_load_explicit(&h->known_size, memory_order_relaxed))
        return KV_OK;
    *pin = NULL;
    if (h) kv_vlog_release(db, h);
    return get_handle(db, fid, need, pin, err);
}

kv_status kv_vlog_read(kv_db *db, const kv_vptr *p, int verify, kv_vlog_entry *e,
                       kv_vhandle **pin, kv_err *err)
{
    kv_vhandle *h;
    kv_status st;
    if (p->len < KV_FRAME_HDR || p->offset < KV_VLOG_HEADER_SIZE ||
        p->offset > UINT64_MAX / 2 - p->len) /* no file is that large; no wrap below */
        return kv_seterr(err, KV_CORRUPTION, 0,
                         "malformed value pointer (file %u, offset %llu, length %u)", p->fid,
                         (unsigned long long)p->offset, p->len);
    kv_vbulk_before_read(db, p->fid, p->offset + p->len); /* (a large transaction's own) */
    st = repin(db, p->fid, p->offset + p->len, pin, err);
    if (st != KV_OK) return st;
    h = *pin;
    if (kv_vlog_entry_decode(kv_vhandle_map(h) + p->offset, p->len,
                             verify || db->opt->verify_value_checksum, e) != 0) {
        char path[KV_PATH_MAX + 32];
        kv_vlog_path(db, path, sizeof path, p->fid);
        return kv_seterr(err, KV_CORRUPTION, 0,
                         "value log \"%s\": bad entry at offset %llu (length %u)", path,
                         (unsigned long long)p->offset, p->len);
    }
    atomic_fetch_add_explicit(&db->sh->vlog.value_reads, 1, memory_order_relaxed);
    return KV_OK;
}

int kv_vlog_prefetch(kv_db *db, const kv_vptr *p, int check_only)
{
    kv_vhandle *h;
    kv_err err;
    int resident;
    if (p->len < KV_FRAME_HDR || p->offset > UINT64_MAX / 2 - p->len) return -1;
    kv_vbulk_before_read(db, p->fid, p->offset + p->len);
    if (get_handle(db, p->fid, p->offset + p->len, &h, &err) != KV_OK) return -1; /* a hint */
    resident = db->env->resident(kv_vhandle_map(h) + p->offset);
    if (!resident && !check_only) {
        uint64_t start = p->offset & ~(uint64_t)4095, end = p->offset + p->len;
        db->env->advise(kv_vhandle_map(h) + start, end - start, KV_ADVISE_WILLNEED);
    }
    kv_vlog_release(db, h);
    return resident;
}

/* Pulls the entry behind p into the CPU caches (the value is resident;
 * a key-ordered scan reads entries in no order of their own, so the
 * hardware prefetcher cannot guess the next one).  The whole entry, up to
 * PREFETCH_CACHE_MAX bytes: the hardware streams the rest of a longer one.
 * With 1 KiB values, prefetching only the first 128-512 bytes was 15-30%
 * slower than the whole entry. */
#define PREFETCH_CACHE_MAX 4096
void kv_vlog_prefetch_cache(kv_db *db, const kv_vptr *p, kv_vhandle **pin)
{
    const uint8_t *map;
    kv_err err;
    uint64_t len = p->len < PREFETCH_CACHE_MAX ? p->len : PREFETCH_CACHE_MAX;
    if (p->len < KV_FRAME_HDR || p->offset > UINT64_MAX / 2 - p->len) return;
    kv_vbulk_before_read(db, p->fid, p->offset + p->len);
    if (repin(db, p->fid, p->offset + p->len, pin, &err) != KV_OK) return;
    map = kv_vhandle_map(*pin) + p->offset;
    for (uint64_t o = 0; o < len; o += 64) __builtin_prefetch(map + o, 0, 3);
}

/* ---- the head (leader) ---- */

static kv_status create_file(kv_db *db, uint32_t fid, kv_file **out, kv_err *err)
{
    char path[KV_PATH_MAX + 32];
    uint8_t hdr[KV_VLOG_HEADER_SIZE];
    kv_status st;
    kv_vlog_path(db, path, sizeof path, fid);
    st = db->env->open(db->env, path, KV_O_RDWR | KV_O_CREATE | KV_O_EXCL, out, err);
    if (st != KV_OK) return st;
    kv_vlog_header_encode(hdr, fid, 0, NULL);
    st = kv_env_pwrite(db->env, *out, hdr, sizeof hdr, 0, err);
    if (st == KV_OK) st = db->env->sync_dir(db->env, db->vdir, err);
    if (st != KV_OK) {
        db->env->close(*out);
        db->env->remove(db->env, path, NULL);
    }
    return st;
}

kv_status kv_vlog_start_head(kv_db *db, kv_err *err)
{
    kv_vlog_shared *v = &db->sh->vlog;
    uint32_t fid = (uint32_t)atomic_fetch_add(&db->sh->vset.next_file_id, 1);
    kv_file *f;
    kv_vfile *vf, *old;
    kv_status st = create_file(db, fid, &f, err);
    if (st != KV_OK) return st;
    kv_mutex_lock(&v->mu);
    old = v->head ? kv_vlog_file(db, v->head) : NULL;
    if (old && old->state == KV_VF_ACTIVE) {
        old->state = KV_VF_SEALED;
        v->discard_version++; /* DISCARD records a sealed file's key range */
    }
    vf = kv_vlog_table_add(db, fid, err);
    if (vf) {
        vf->state = KV_VF_ACTIVE;
        vf->size = vf->synced = KV_VLOG_HEADER_SIZE;
        vf->keys.state = KV_VKEYS_NONE;
        v->head = fid;
    }
    kv_mutex_unlock(&v->mu);
    if (!vf) {
        db->env->close(f);
        return err ? err->code : KV_NO_SPACE;
    }
    pthread_mutex_lock(&db->vcache.mu);
    if (db->vcache.head_file) db->env->close(db->vcache.head_file);
    db->vcache.head_file = f;
    db->vcache.head_fid = fid;
    pthread_mutex_unlock(&db->vcache.mu);
    return KV_OK;
}

kv_status kv_vlog_rotate(kv_db *db, kv_err *err)
{
    return kv_vlog_start_head(db, err);
}

/* This process's write handle on the head. */
static kv_status head_handle(kv_db *db, uint32_t fid, kv_file **out, kv_err *err)
{
    kv_vcache *c = &db->vcache;
    kv_status st = KV_OK;
    pthread_mutex_lock(&c->mu);
    if (c->head_fid != fid || !c->head_file) {
        char path[KV_PATH_MAX + 32];
        kv_file *f;
        kv_vlog_path(db, path, sizeof path, fid);
        st = db->env->open(db->env, path, KV_O_RDWR, &f, err);
        if (st == KV_OK) {
            if (c->head_file) db->env->close(c->head_file);
            c->head_file = f;
            c->head_fid = fid;
        }
    }
    *out = c->head_file;
    pthread_mutex_unlock(&c->mu);
    return st;
}

kv_status kv_vlog_sync(kv_db *db, kv_err *err)
{
    kv_vlog_shared *v = &db->sh->vlog;
    uint32_t todo[64];
    uint64_t upto[64];
    int n = 0;
    kv_status st = KV_OK;
    if (db->opt->in_memory) return KV_OK;
    kv_mutex_lock(&v->mu);
    {
        kv_vfile *f = kv_at(db, v->files);
        for (uint32_t i = 0; i < v->n && n < 64; i++)
            if (f[i].synced < f[i].size && f[i].state != KV_VF_DOOMED) {
                todo[n] = f[i].fid;
                upto[n++] = f[i].size;
            }
    }
    kv_mutex_unlock(&v->mu);
    for (int i = 0; i < n && st == KV_OK; i++) {
        char path[KV_PATH_MAX + 32];
        kv_file *f;
        kv_vlog_path(db, path, sizeof path, todo[i]);
        st = db->env->open(db->env, path, KV_O_RDWR, &f, err);
        if (st == KV_OK) {
            st = db->env->sync(f, err);
            db->env->close(f);
        }
        if (st == KV_OK) {
            kv_vfile *vf;
            kv_mutex_lock(&v->mu);
            vf = kv_vlog_file(db, todo[i]);
            if (vf && vf->synced < upto[i]) vf->synced = upto[i];
            kv_mutex_unlock(&v->mu);
        }
    }
    /* more than a batch of unsynced files (a large commit's): the next
     * batch (those just synced drop out) */
    if (st == KV_OK && n == (int)(sizeof todo / sizeof todo[0])) return kv_vlog_sync(db, err);
    return st;
}

kv_status kv_vlog_write(kv_db *db, kv_vlog_piece *pieces, int n, int sync, uint32_t *hw_fid,
                        uint64_t *hw_end, kv_err *err)
{
    kv_vlog_shared *v = &db->sh->vlog;
    const kv_options *o = db->opt;
    kv_status st = KV_OK;
    int i = 0;

    while (i < n && st == KV_OK) {
        struct iovec iov[64];
        int k = 0;
        uint32_t fid;
        uint64_t start, size, entries, total = 0;
        kv_file *f;
        kv_vfile *vf;
        kv_vkeys keys;

        kv_mutex_lock(&v->mu);
        fid = v->head;
        vf = kv_vlog_file(db, fid);
        size = vf ? vf->size : 0;
        entries = vf ? vf->entries : 0;
        kv_mutex_unlock(&v->mu);
        if (!vf) return kv_seterr(err, KV_IO, 0, "no value-log head file");
        /* a full head is sealed before the next piece (pieces never split) */
        if (size > KV_VLOG_HEADER_SIZE &&
            (size + pieces[i].vlen > (uint64_t)o->value_log_file_size ||
             entries + pieces[i].n_entries > o->value_log_max_entries)) {
            st = kv_vlog_start_head(db, err);
            continue;
        }
        start = size;
        keys.state = KV_VKEYS_NONE;
        /* take as many pieces as fit in this file */
        while (i + k < n && k < 64) {
            kv_vlog_piece *p = &pieces[i + k];
            if (k && (size + p->vlen > (uint64_t)o->value_log_file_size ||
                      entries + p->n_entries > o->value_log_max_entries))
                break;
            for (uint32_t j = 0; j < p->n_ptrs; j++) {
                kv_vptr ptr;
                ptr.fid = fid;
                ptr.len = p->ptrs[3 * j + 2];
                ptr.offset = size + p->ptrs[3 * j + 1];
                kv_vptr_encode(p->rec + p->ptrs[3 * j], &ptr);
            }
            /* entries whose keys were not seen leave the file's unknown */
            kv_vkeys_merge(&keys, p->keys && p->keys->state == KV_VKEYS_RANGE ? p->keys : NULL);
            iov[k].iov_base = p->vbuf;
            iov[k].iov_len = p->vlen;
            size += p->vlen;
            entries += p->n_entries;
            total += p->vlen;
            k++;
        }
        st = head_handle(db, fid, &f, err);
        if (st == KV_OK) st = db->env->pwritev(f, iov, k, start, err);
        if (st != KV_OK) break;
        kv_mutex_lock(&v->mu);
        vf = kv_vlog_file(db, fid);
        vf->size = size;
        vf->entries = entries;
        /* (only a leader reads the keys: kv_vlog_mark_dropped) */
        kv_vkeys_merge(&vf->keys, &keys);
        kv_mutex_unlock(&v->mu);
        atomic_fetch_add_explicit(&v->bytes_appended, total, memory_order_relaxed);
        *hw_fid = fid;
        *hw_end = size;
        i += k;
    }
    if (st == KV_OK && sync) st = kv_vlog_sync(db, err);
    return st;
}

/* ---- open ---- */

typedef struct vscan {
    uint32_t *fids;
    size_t n, cap;
    int oom;
} vscan;

static void scan_cb(void *ctx, const char *name)
{
    vscan *s = ctx;
    char *end;
    unsigned long long id = strtoull(name, &end, 10);
    if (end == name || strcmp(end, ".vlog") || id == 0 || id > UINT32_MAX) return;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 32;
        uint32_t *p = realloc(s->fids, cap * sizeof *p);
        if (!p) {
            s->oom = 1;
            return;
        }
        s->fids = p;
        s->cap = cap;
    }
    s->fids[s->n++] = (uint32_t)id;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Finds where the valid prefix of a file's frames ends (*valid_end), how
 * many entries it holds and the range of their keys, through a read-only
 * mapping.  Frames are walked
 * by their length checks; payload checksums are verified only over the
 * last VERIFY_TAIL bytes, where a write cut short by a crash can be - an
 * older damaged entry is found when it is read (or by kvctl check) and
 * cannot hide the end.  Damage with more data after it is a torn tail in
 * the last file (its unsynced part) and corruption in any other. */
#define VERIFY_TAIL (4u << 20)

static kv_status scan_file(kv_db *db, const char *path, uint32_t fid, int last,
                           uint64_t *valid_end, uint64_t *entries, uint64_t *file_size,
                           kv_vkeys *keys, kv_err *err)
{
    kv_file *f;
    const uint8_t *m = NULL;
    uint64_t n = 0, off = KV_VLOG_HEADER_SIZE, verify_from;
    kv_status st = db->env->open(db->env, path, KV_O_READ, &f, err);
    if (st != KV_OK) return st;
    st = db->env->size(f, &n, err);
    if (st == KV_OK && n) st = db->env->map(f, n, &m, err);
    if (st != KV_OK) {
        db->env->close(f);
        return st;
    }
    *file_size = n;
    *entries = 0;
    *valid_end = 0;
    keys->state = KV_VKEYS_NONE;
    if (n < KV_VLOG_HEADER_SIZE || kv_vlog_header_check(m, (size_t)n, fid) != 0)
        goto done; /* header never completed: an empty file */
    db->env->advise(m, n, 1);
    verify_from = n > VERIFY_TAIL ? n - VERIFY_TAIL : 0;
    for (;;) {
        size_t len = 0;
        long plen;
        kv_frame_result r;
        if (off >= verify_from) {
            r = kv_frame_next(m, (size_t)n, (size_t)off, &len);
        } else if ((plen = kv_frame_peek(m, (size_t)n, (size_t)off)) >= 0) {
            len = (size_t)plen;
            r = KV_FRAME_OK;
        } else {
            r = kv_frame_next(m, (size_t)n, (size_t)off, &len); /* classify it properly */
        }
        if (r == KV_FRAME_END || r == KV_FRAME_TORN) break;
        if (r == KV_FRAME_CORRUPT) {
            if (last) break; /* unsynced garbage after a crash */
            st = kv_seterr(err, KV_CORRUPTION, 0, "value log \"%s\": damaged entry at offset %llu",
                           path, (unsigned long long)off);
            goto done;
        }
        {
            kv_vlog_entry e;
            if (kv_vlog_entry_decode(m + off, KV_FRAME_HDR + len, 0, &e) == 0)
                kv_vkeys_add(keys, e.key, e.klen);
            else
                keys->state = KV_VKEYS_UNKNOWN; /* (GC finds it when it reads the file) */
        }
        off += KV_FRAME_HDR + len;
        (*entries)++;
    }
    *valid_end = off;
done:
    if (m) db->env->unmap(f, m, n);
    db->env->close(f);
    return st;
}

kv_status kv_vlog_open(kv_db *db, kv_err *err)
{
    vscan s;
    kv_status st;
    memset(&s, 0, sizeof s);
    if (db->opt->in_memory) return KV_OK;
    st = db->env->list_dir(db->env, db->vdir, scan_cb, &s, err);
    if (st == KV_OK && s.oom) st = kv_seterr(err, KV_NO_MEMORY, 0, "out of memory");
    if (s.n) qsort(s.fids, s.n, sizeof *s.fids, cmp_u32);
    for (size_t i = 0; i < s.n && st == KV_OK; i++) {
        char path[KV_PATH_MAX + 32];
        uint64_t end = 0, entries = 0, fsize = 0, size;
        int last = i + 1 == s.n;
        kv_vkeys keys = {.state = KV_VKEYS_UNKNOWN}; /* (others': from DISCARD) */
        kv_vfile *vf;
        kv_vlog_path(db, path, sizeof path, s.fids[i]);
        if (last || db->opt->read_only) {
            st = scan_file(db, path, s.fids[i], last, &end, &entries, &fsize, &keys, err);
            if (st != KV_OK) break;
        } else {
            kv_file *f;
            uint8_t hdr[KV_VLOG_HEADER_SIZE];
            size_t got = 0;
            st = db->env->open(db->env, path, KV_O_READ, &f, err);
            if (st != KV_OK) break;
            st = db->env->size(f, &fsize, err);
            if (st == KV_OK) st = db->env->pread(f, hdr, sizeof hdr, 0, &got, err);
            db->env->close(f);
            if (st != KV_OK) break;
            end = got == sizeof hdr && kv_vlog_header_check(hdr, got, s.fids[i]) == 0 ? fsize : 0;
            entries = end > KV_VLOG_HEADER_SIZE ? 1 : 0; /* exact count not needed */
        }
        if (end <= KV_VLOG_HEADER_SIZE && !db->opt->read_only) {
            /* empty (or header never written): nothing can point into it */
            kv_log(db, KV_LOG_INFO, "removing empty value log \"%s\"", path);
            st = db->env->remove(db->env, path, err);
            continue;
        }
        size = end;
        if (last && end < fsize && !db->opt->read_only) {
            kv_file *f;
            kv_log(db, KV_LOG_WARNING, "value log \"%s\": dropping %llu bytes of torn tail", path,
                   (unsigned long long)(fsize - end));
            st = db->env->open(db->env, path, KV_O_RDWR, &f, err);
            if (st == KV_OK) {
                st = db->env->truncate(f, end, err);
                if (st == KV_OK) st = db->env->sync(f, err);
                db->env->close(f);
            }
            if (st != KV_OK) break;
        }
        kv_mutex_lock(&db->sh->vlog.mu);
        vf = kv_vlog_table_add(db, s.fids[i], err);
        if (vf) {
            vf->state = KV_VF_SEALED;
            vf->size = vf->synced = size;
            vf->entries = entries;
            vf->keys = keys;
        }
        kv_mutex_unlock(&db->sh->vlog.mu);
        if (!vf) st = err ? err->code : KV_NO_SPACE;
        if (s.fids[i] >= atomic_load(&db->sh->vset.next_file_id))
            atomic_store(&db->sh->vset.next_file_id, (uint64_t)s.fids[i] + 1);
    }
    free(s.fids);
    return st;
}
