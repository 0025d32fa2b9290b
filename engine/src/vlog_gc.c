/*
 * vlog_gc.c - discard statistics (DISCARD), value-log GC, the files a
 * drop frees whole, and the deferred deletion of collected files (see
 * vlog.h).
 *
 * Discard statistics: compaction reports the vlog bytes of every entry it
 * drops; the counts live in the shared file table and are persisted to
 * DISCARD (advisory: a lost or damaged DISCARD only delays GC).  After an
 * open that did not follow a clean close they are counted again from the
 * newest versions (kv_vlog_recount).
 *
 * GC of a file: every entry whose key's newest committed version still
 * points at that exact entry is live and is written again - to the head,
 * at a new version - through a conditional batch: the leader applies it
 * only if each key's newest version is still the one GC saw, so a
 * concurrent overwrite or delete always wins (no resurrection, no lost
 * update; Badger issues #2286 and #2143).  Batches are small, so GC holds
 * the writer for one batch at a time.  The file is then doomed and deleted
 * once unreachable.
 *
 * Dropped files: a drop marks the files whose keys all lie under its
 * prefix (each file's key range is kept as it is written, vlog.c, and in
 * DISCARD once the file is sealed); GC dooms those without reading them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "coding.h"
#include "db.h"
#include "err.h"
#include "frame.h"
#include "hash.h"
#include "ikey.h"
#include "iter.h"
#include "version.h"
#include "view.h"
#include "vlog.h"
#include "writer.h"

#define DISCARD_NAME "DISCARD"
#define GC_BATCH_BYTES (4u << 20)
#define GC_BATCH_ENTRIES 500
#define GC_MAX_FILES 8

void kv_vlog_discard(kv_db *db, uint32_t fid, uint64_t bytes)
{
    kv_vlog_shared *v = &db->sh->vlog;
    kv_vfile *f;
    kv_mutex_lock(&v->mu);
    f = kv_vlog_file(db, fid);
    if (f && f->state != KV_VF_DOOMED) {
        f->discard += bytes;
        if (f->discard > f->size - KV_VLOG_HEADER_SIZE) f->discard = f->size - KV_VLOG_HEADER_SIZE;
        v->discard_version++;
    }
    kv_mutex_unlock(&v->mu);
}

int kv_fid_tally_add(kv_fid_tally *t, uint32_t fid, uint64_t bytes)
{
    size_t i;
    /* entries of one file mostly come together: look from the end */
    for (i = t->n; i > 0 && t->e[i - 1].fid != fid; i--) {}
    if (i > 0) {
        t->e[i - 1].bytes += bytes;
        return 0;
    }
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        struct kv_fid_bytes *e = realloc(t->e, sizeof *e * cap);
        if (!e) return -1;
        t->e = e;
        t->cap = cap;
    }
    t->e[t->n].fid = fid;
    t->e[t->n++].bytes = bytes;
    return 0;
}

void kv_fid_tally_discard(kv_db *db, const kv_fid_tally *t)
{
    for (size_t i = 0; i < t->n; i++) kv_vlog_discard(db, t->e[i].fid, t->e[i].bytes);
}

void kv_fid_tally_free(kv_fid_tally *t)
{
    free(t->e);
    memset(t, 0, sizeof *t);
}

kv_status kv_vlog_discard_table(kv_db *db, const kv_table_meta *tm, kv_err *err)
{
    kv_sst_read_opts ro;
    kv_iiter *it;
    kv_fid_tally t;
    kv_status st = KV_OK;
    memset(&ro, 0, sizeof ro); /* no block cache: the table is gone */
    ro.verify = db->opt->checksum_verification_mode >= KV_VERIFY_ON_BLOCK_READ;
    it = kv_iiter_table(db, tm, &ro);
    if (!it) return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory counting dropped values");
    memset(&t, 0, sizeof t);
    for (it->vt->first(it); it->vt->valid(it); it->vt->next(it)) {
        size_t vn;
        const uint8_t *val = it->vt->value(it, &vn);
        kv_vstruct vs;
        kv_vptr p;
        if (kv_vstruct_decode(val, vn, &vs) != 0) {
            st = kv_seterr(err, KV_CORRUPTION, 0, "table %llu: malformed value struct",
                           (unsigned long long)tm->id);
            break;
        }
        if (!(vs.meta & KV_META_VALUE_PTR) || kv_vptr_decode(vs.value, vs.value_len, &p) != 0)
            continue;
        if (kv_fid_tally_add(&t, p.fid, p.len) != 0) {
            st = kv_seterr(err, KV_NO_MEMORY, 0, "out of memory counting dropped values");
            break;
        }
    }
    if (st == KV_OK) st = it->vt->status(it, err);
    it->vt->destroy(it);
    if (st == KV_OK) kv_fid_tally_discard(db, &t); /* all or nothing: a partial count is wrong */
    kv_fid_tally_free(&t);
    return st;
}

void kv_vlog_mark_dropped(kv_db *db, const uint8_t *prefix, uint32_t n)
{
    kv_vlog_shared *v = &db->sh->vlog;
    kv_vfile *f;
    uint32_t pin;
    int marked = 0, seal;
    if (db->opt->in_memory || n > KV_VKEY_CUT) return;
    /* the head too, when all of it is dropped: sealed first, so that the
     * writes after the drop go to a new head */
    kv_mutex_lock(&v->mu);
    f = v->head ? kv_vlog_file(db, v->head) : NULL;
    seal = f && v->head < kv_snap_min_vlog_pin(db) && f->size > KV_VLOG_HEADER_SIZE &&
           kv_vkeys_under(&f->keys, prefix, n);
    kv_mutex_unlock(&v->mu);
    if (seal) {
        kv_err err;
        if (kv_vlog_rotate(db, &err) != KV_OK)
            kv_log(db, KV_LOG_WARNING, "could not seal the value-log head after a drop: %s",
                   err.msg);
    }
    kv_mutex_lock(&v->mu); /* (a spill sets its pin under it) */
    pin = kv_snap_min_vlog_pin(db);
    f = kv_at(db, v->files);
    for (uint32_t i = 0; i < v->n; i++)
        if (f[i].state == KV_VF_SEALED && !f[i].dropped && f[i].fid < pin &&
            f[i].size > KV_VLOG_HEADER_SIZE && kv_vkeys_under(&f[i].keys, prefix, n)) {
            f[i].dropped = 1;
            f[i].discard = f[i].size - KV_VLOG_HEADER_SIZE;
            marked++;
        }
    if (marked) {
        v->discard_version++;
        kv_cond_broadcast(&db->sh->vlog_cv); /* the GC thread need not wait for its tick */
    }
    kv_mutex_unlock(&v->mu);
}

/* ---- DISCARD ---- */

kv_status kv_vlog_persist_discard(kv_db *db, int clean, kv_err *err)
{
    kv_vlog_shared *v = &db->sh->vlog;
    uint8_t *buf;
    size_t n;
    uint64_t version;
    kv_status st;
    uint32_t count;
    if (db->opt->in_memory || db->opt->read_only) return KV_OK;
    kv_mutex_lock(&v->mu);
    version = v->discard_version;
    if (version == db->discard_persisted && !clean) {
        kv_mutex_unlock(&v->mu);
        return KV_OK;
    }
    count = v->n;
    n = kv_discard_size(count);
    buf = malloc(n);
    if (!buf) {
        kv_mutex_unlock(&v->mu);
        return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory writing DISCARD");
    }
    kv_discard_encode_header(buf, count, clean ? KV_DISCARD_CLEAN : 0);
    {
        kv_vfile *f = kv_at(db, v->files);
        for (uint32_t i = 0; i < count; i++) {
            kv_discard_ent e;
            e.fid = f[i].fid;
            e.discard = f[i].discard;
            e.keys = f[i].keys;
            /* (the drop that marked it is in the MANIFEST already, synced) */
            e.dropped = f[i].dropped != 0;
            /* a range is final only once nothing appends to the file */
            if (f[i].state != KV_VF_SEALED && f[i].state != KV_VF_DAMAGED)
                e.keys.state = KV_VKEYS_UNKNOWN;
            kv_discard_encode_entry(buf, i, &e);
        }
    }
    kv_mutex_unlock(&v->mu);
    kv_discard_seal(buf, count);
    st = kv_env_write_file_atomic(db->env, db->vdir, DISCARD_NAME, buf, n, err);
    free(buf);
    if (st == KV_OK) db->discard_persisted = version;
    return st;
}

kv_status kv_vlog_load_discard(kv_db *db, kv_err *err)
{
    char path[KV_PATH_MAX + 32];
    uint8_t *buf = NULL;
    size_t n = 0;
    uint32_t count = 0, version = 0, max_fid = 0;
    int clean = 0;
    kv_status st;
    if (db->opt->in_memory) return KV_OK;
    snprintf(path, sizeof path, "%s/%s", db->vdir, DISCARD_NAME);
    if (db->env->exists(db->env, path)) {
        st = kv_env_read_file(db->env, path, &buf, &n, err);
        if (st != KV_OK) return st;
        if (kv_discard_check(buf, n, &count, &version) != 0) {
            kv_log(db, KV_LOG_WARNING,
                   "\"%s\" is damaged; value-log discard statistics are counted again", path);
            count = 0;
        } else {
            clean = version == 2 && (kv_discard_flags(buf) & KV_DISCARD_CLEAN);
        }
    }
    /* (a database without value-log files has nothing to count) */
    db->vlog_recount = !clean && db->sh->vlog.n > 0 && !db->opt->read_only;
    kv_mutex_lock(&db->sh->vlog.mu);
    for (uint32_t i = 0; i < count; i++) {
        kv_discard_ent e;
        kv_vfile *f;
        kv_discard_entry(buf, version, i, &e);
        if (e.fid > max_fid) max_fid = e.fid;
        f = kv_vlog_file(db, e.fid);
        if (!f) continue;
        f->discard = e.discard < f->size - KV_VLOG_HEADER_SIZE ? e.discard
                                                               : f->size - KV_VLOG_HEADER_SIZE;
        /* (the last file's range came from its scan) */
        if (f->keys.state == KV_VKEYS_UNKNOWN) f->keys = e.keys;
        /* emptied by a drop before the close or crash: still freed unread */
        if (e.dropped && f->state == KV_VF_SEALED) {
            f->dropped = 1;
            f->discard = f->size - KV_VLOG_HEADER_SIZE;
        }
    }
    /* written again soon after every open, so that it holds the range of
     * the last file, which only its scan found */
    db->discard_persisted = db->sh->vlog.discard_version - 1;
    kv_mutex_unlock(&db->sh->vlog.mu);
    /* a file DISCARD names may be gone; its id must never come back, or
     * the new file would take on the old one's key range */
    if (max_fid >= atomic_load(&db->sh->vset.next_file_id))
        atomic_store(&db->sh->vset.next_file_id, (uint64_t)max_fid + 1);
    free(buf);
    return KV_OK;
}

/* ---- recount ---- */

typedef struct recount_file {
    uint32_t fid;
    uint64_t data; /* bytes of entries */
    uint64_t live;
} recount_file;

static int recount_cmp(const void *a, const void *b)
{
    uint32_t x = ((const recount_file *)a)->fid, y = ((const recount_file *)b)->fid;
    return x < y ? -1 : x > y;
}

kv_status kv_vlog_recount(kv_db *db, kv_err *err)
{
    kv_vlog_shared *v = &db->sh->vlog;
    recount_file *rf;
    kv_iter_options io;
    kv_iter *it;
    uint32_t n = 0, pin, raised = 0;
    uint64_t dead = 0;
    kv_status st;
    kv_vfile *f;

    /* the sealed files, which nothing appends to (the head is active);
     * files a running large transaction pins hold values no table shows
     * yet */
    kv_mutex_lock(&v->mu);
    rf = malloc(sizeof *rf * (v->n ? v->n : 1));
    if (!rf) {
        kv_mutex_unlock(&v->mu);
        return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory counting value-log garbage");
    }
    pin = kv_snap_min_vlog_pin(db);
    f = kv_at(db, v->files);
    for (uint32_t i = 0; i < v->n; i++)
        if ((f[i].state == KV_VF_SEALED || f[i].state == KV_VF_DAMAGED) && f[i].fid < pin &&
            f[i].size > KV_VLOG_HEADER_SIZE) {
            rf[n].fid = f[i].fid;
            rf[n].data = f[i].size - KV_VLOG_HEADER_SIZE;
            rf[n++].live = 0;
        }
    kv_mutex_unlock(&v->mu);
    if (!n) {
        free(rf);
        return KV_OK;
    }
    qsort(rf, n, sizeof *rf, recount_cmp);
    /* what the newest versions point to, from a snapshot taken after the
     * list: a later write only makes more of it dead, and a count too high
     * only brings GC sooner, which checks every entry itself */
    memset(&io, 0, sizeof io);
    io.key_only = 1;
    st = kv_iter_new(db, &io, &it, err);
    if (st != KV_OK) {
        free(rf);
        return st;
    }
    for (kv_iter_rewind(it); kv_iter_valid(it); kv_iter_next(it)) {
        kv_vptr p;
        recount_file key, *hit;
        if (kv_iter_vptr(it, &p) != 0) continue;
        key.fid = p.fid;
        hit = bsearch(&key, rf, n, sizeof *rf, recount_cmp);
        if (hit) hit->live += p.len;
    }
    st = kv_iter_status(it, err);
    kv_iter_free(it);
    if (st == KV_OK) {
        kv_mutex_lock(&v->mu);
        for (uint32_t i = 0; i < n; i++) {
            uint64_t d = rf[i].live < rf[i].data ? rf[i].data - rf[i].live : 0;
            f = kv_vlog_file(db, rf[i].fid);
            if (!f || (f->state != KV_VF_SEALED && f->state != KV_VF_DAMAGED) || d <= f->discard)
                continue;
            dead += d - f->discard;
            f->discard = d;
            raised++;
        }
        if (raised) {
            v->discard_version++;
            kv_cond_broadcast(&db->sh->vlog_cv);
        }
        kv_mutex_unlock(&v->mu);
        kv_log(db, KV_LOG_INFO,
               "value-log garbage counted again over %u files: %u raised, %llu bytes more "
               "known dead", n, raised, (unsigned long long)dead);
    }
    free(rf);
    return st;
}

/* ---- deletion of doomed files ---- */

int kv_vlog_reap(kv_db *db)
{
    kv_vlog_shared *v = &db->sh->vlog;
    uint64_t oldest_view, horizon = kv_snap_horizon(db), wal_gone = atomic_load(&db->sh->wal_gone);
    uint32_t dead[64];
    int n = 0;
    kv_mutex_lock(&db->sh->db_mu);
    oldest_view = kv_view_oldest_id(db);
    kv_mutex_unlock(&db->sh->db_mu);
    kv_mutex_lock(&v->mu);
    for (uint32_t i = 0; i < v->n && n < 64;) {
        kv_vfile *f = (kv_vfile *)kv_at(db, v->files) + i;
        if (f->state == KV_VF_DOOMED && oldest_view > f->doom_view &&
            horizon >= f->doom_version && wal_gone >= f->doom_wal) {
            dead[n++] = f->fid;
            *f = ((kv_vfile *)kv_at(db, v->files))[--v->n];
            v->discard_version++;
        } else
            i++;
    }
    if (n) atomic_fetch_add(&v->deletion_epoch, 1);
    kv_mutex_unlock(&v->mu);
    for (int i = 0; i < n; i++) {
        char path[KV_PATH_MAX + 32];
        kv_err err;
        kv_vlog_path(db, path, sizeof path, dead[i]);
        if (db->env->remove(db->env, path, &err) != KV_OK)
            kv_log(db, KV_LOG_WARNING, "could not remove collected value log: %s", err.msg);
        else
            kv_log(db, KV_LOG_INFO, "removed collected value log \"%s\"", path);
    }
    atomic_fetch_add(&v->gc_files_deleted, (uint64_t)n);
    return n;
}

/* ---- GC ---- */

/* The id of the newest WAL that may hold records (db_mu held): the newest
 * non-empty memtable's, 0 if every memtable is empty. */
static uint64_t newest_wal(kv_db *db)
{
    kv_shared *sh = db->sh;
    kv_memtable *mt = kv_mt_at(db, sh->mem);
    if (mt && !kv_sl_empty(kv_mt_sl(db, mt))) return mt->id;
    for (uint32_t i = sh->n_imm; i > 0; i--) {
        mt = kv_mt_at(db, sh->imm[i - 1]);
        if (!kv_sl_empty(kv_mt_sl(db, mt))) return mt->id;
    }
    return 0;
}

typedef struct cand {
    uint32_t fid;
    double ratio;
    uint64_t size;
    int head;
    int dropped; /* wholly under a drop: freed unread */
} cand;

/* Dropped files first (they cost nothing), then by discardable share. */
static int cand_cmp(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->dropped != y->dropped) return y->dropped - x->dropped;
    return x->ratio < y->ratio ? 1 : x->ratio > y->ratio ? -1 : 0;
}

/* Writes b; on a conflict (a key changed since GC looked) retries entry by
 * entry so that every entry still live is rewritten. */
static kv_status gc_flush(kv_db *db, kv_batch *b, uint64_t *rewritten, kv_err *err)
{
    kv_status st;
    if (!b->count) return KV_OK;
    st = kv_write(db, NULL, b, NULL, err);
    if (st == KV_OK) *rewritten += b->count;
    else if (st == KV_CONFLICT) {
        kv_batch *one = kv_batch_new_for(db);
        st = one ? KV_OK : kv_seterr(err, KV_NO_MEMORY, 0, "out of memory in value-log GC");
        for (uint32_t i = 0; i < b->count && st == KV_OK; i++) {
            kv_batch_clear(one);
            st = kv_batch_copy_entry(one, b, i, err);
            if (st == KV_OK) st = kv_write(db, NULL, one, NULL, err);
            if (st == KV_OK) (*rewritten)++;
            else if (st == KV_CONFLICT) st = KV_OK; /* that key changed: nothing to keep */
        }
        kv_batch_free(one);
    }
    kv_batch_clear(b);
    return st;
}

/* Rewrites the live entries of file fid.  A dead entry is not checksummed
 * (after a DROP most files are all dead); a live one is, before it is
 * copied.  Damage stops the rewrite and sets *damaged: the file must stay,
 * since entries after the damage may be live. */
static kv_status rewrite_file(kv_db *db, uint32_t fid, uint64_t size, uint64_t *rewritten,
                              uint64_t *bytes, int *damaged, kv_err *err)
{
    kv_vhandle *h;
    kv_batch *b = kv_batch_new_for(db);
    kv_vlog_entry e;
    uint64_t off = KV_VLOG_HEADER_SIZE;
    const uint8_t *map;
    const char *damage = NULL; /* what stopped the rewrite */
    kv_status st;

    *damaged = 0;
    if (!b) return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory in value-log GC");
    st = kv_vlog_map(db, fid, size, &h, err);
    if (st != KV_OK) {
        kv_batch_free(b);
        return st;
    }
    map = kv_vhandle_map(h);
    while (off < size && st == KV_OK) {
        long plen = kv_frame_peek(map, size, off);
        size_t len;
        kv_vstruct vs;
        uint64_t version;
        uint8_t ptrbuf[KV_VPTR_SIZE];
        int found;
        if (plen < 0) {
            kv_frame_result r = kv_frame_next(map, size, off, &len);
            if (r != KV_FRAME_END)
                damage = r == KV_FRAME_TORN ? "an entry cut short" : "a bad entry header";
            break;
        }
        len = (size_t)plen;
        if (kv_vlog_entry_decode(map + off, KV_FRAME_HDR + len, 0, &e) != 0) {
            damage = "a malformed entry";
            break;
        }
        st = kv_lookup_newest(db, e.key, e.klen, &vs, ptrbuf, &version, &found, err);
        if (st != KV_OK) break;
        if (found && (vs.meta & KV_META_VALUE_PTR)) {
            kv_vptr cur;
            kv_vptr_decode(ptrbuf, KV_VPTR_SIZE, &cur);
            if (cur.fid == fid && cur.offset == off && cur.len == KV_FRAME_HDR + len) {
                /* live: the newest version is this very entry */
                if (!kv_frame_payload_ok(map + off, len)) {
                    damage = "a damaged live entry";
                    break;
                }
                st = kv_batch_put_ex(b, e.key, e.klen, e.value, e.vlen, vs.user_meta,
                                     vs.expires_at, err);
                if (st == KV_OK) st = kv_batch_require_version(b, version, err);
                *bytes += KV_FRAME_HDR + len;
            }
        }
        off += KV_FRAME_HDR + len;
        if (st == KV_OK && (b->count >= GC_BATCH_ENTRIES || b->vlen + b->len >= GC_BATCH_BYTES))
            st = gc_flush(db, b, rewritten, err);
    }
    if (damage)
        kv_log(db, KV_LOG_WARNING, "value-log GC: file %u has %s at offset %llu; the file is "
               "kept, and GC leaves it alone while the database is open", fid, damage,
               (unsigned long long)off);
    *damaged = damage != NULL;
    if (st == KV_OK) st = gc_flush(db, b, rewritten, err);
    kv_vlog_release(db, h);
    kv_batch_free(b);
    return st;
}

kv_status kv_run_value_log_gc(kv_db *db, double ratio, kv_err *err)
{
    kv_vlog_shared *v;
    cand c[GC_MAX_FILES * 8];
    int nc = 0;
    kv_status st;
    uint64_t rewritten = 0, bytes = 0;
    int flush_wal = 0, damaged = 0;

    if (!db) return kv_seterr(err, KV_INVALID, 0, "db is required");
    st = kv_check_usable(db, err);
    if (st != KV_OK) return st;
    if (!(ratio > 0.0 && ratio < 1.0))
        return kv_seterr(err, KV_INVALID, 0, "discard ratio must be in (0, 1), got %g", ratio);
    if (db->opt->read_only) return kv_seterr(err, KV_READ_ONLY, 0, "database is read-only");
    if (db->opt->in_memory) return kv_seterr(err, KV_NO_REWRITE, 0, "in-memory: no value log");
    v = &db->sh->vlog;
    kv_mutex_lock(&v->mu);
    if (v->gc_running) {
        kv_mutex_unlock(&v->mu);
        return kv_seterr(err, KV_BUSY, 0, "another value-log GC is running");
    }
    {
        kv_vfile *f = kv_at(db, v->files);
        uint32_t pin = kv_snap_min_vlog_pin(db); /* a large commit's values, not yet in tables */
        /* dropped files first (pass 0): a run takes every one of them */
        for (int pass = 0; pass < 2; pass++) {
            for (uint32_t i = 0; i < v->n && nc < (int)(sizeof c / sizeof c[0]); i++) {
                uint64_t data = f[i].size - KV_VLOG_HEADER_SIZE;
                double r;
                if ((f[i].dropped != 0) != (pass == 0) || f[i].state == KV_VF_DOOMED ||
                    f[i].state == KV_VF_DAMAGED || f[i].state == KV_VF_OWNED || data == 0 ||
                    f[i].fid >= pin)
                    continue;
                r = (double)f[i].discard / (double)data;
                if (r < ratio && !f[i].dropped) continue;
                c[nc].fid = f[i].fid;
                c[nc].ratio = r;
                c[nc].size = f[i].size;
                c[nc].head = f[i].fid == v->head;
                c[nc].dropped = f[i].dropped != 0;
                nc++;
            }
        }
    }
    if (nc) v->gc_running = 1;
    kv_mutex_unlock(&v->mu);
    if (!nc) {
        kv_vlog_reap(db);
        return kv_seterr(err, KV_NO_REWRITE, 0,
                         "no value-log file has at least %.0f%% discardable data", ratio * 100);
    }
    qsort(c, (size_t)nc, sizeof c[0], cand_cmp);
    {
        /* up to GC_MAX_FILES rewrites a run, besides the dropped files */
        int keep = 0, rewrites = 0;
        for (int i = 0; i < nc; i++)
            if (c[i].dropped || rewrites++ < GC_MAX_FILES) c[keep++] = c[i];
        nc = keep;
    }
    st = KV_OK;
    for (int i = 0; i < nc && st == KV_OK; i++) {
        damaged = 0;
        if (c[i].head && !c[i].dropped) {
            /* the best candidate is being appended to: seal it first */
            st = kv_writer_rotate_vlog(db, err);
            if (st != KV_OK) break;
            kv_mutex_lock(&v->mu);
            c[i].size = kv_vlog_file(db, c[i].fid)->size;
            kv_mutex_unlock(&v->mu);
        }
        if (!c[i].dropped) /* (a dropped file has nothing anyone can read) */
            st = rewrite_file(db, c[i].fid, c[i].size, &rewritten, &bytes, &damaged, err);
        if (st == KV_OK && damaged) {
            kv_vfile *f;
            kv_mutex_lock(&v->mu);
            f = kv_vlog_file(db, c[i].fid);
            if (f && f->state == KV_VF_SEALED) f->state = KV_VF_DAMAGED;
            kv_mutex_unlock(&v->mu);
        } else if (st == KV_OK && c[i].fid >= kv_snap_min_vlog_pin(db)) {
            /* a large commit pinned it meanwhile (it was the head): its
             * values there are in no table yet - keep the file */
            kv_log(db, KV_LOG_INFO, "value-log GC keeps file %u: a commit is writing to it",
                   c[i].fid);
        } else if (st == KV_OK) {
            uint64_t view_id, version, wal;
            kv_vfile *f;
            kv_view *old_view;
            kv_err verr;
            kv_mutex_lock(&db->sh->db_mu);
            view_id = kv_view_current_id(db);
            wal = newest_wal(db);
            /* a fresh view, so the file waits only for readers that pinned
             * before the rewrite (on failure the current view's end frees
             * it later) */
            (void)kv_view_install(db, &old_view, &verr);
            kv_mutex_unlock(&db->sh->db_mu);
            if (old_view) kv_view_unpin(db, old_view);
            version = kv_latest_version(db);
            kv_mutex_lock(&v->mu);
            f = kv_vlog_file(db, c[i].fid);
            if (f) {
                f->state = KV_VF_DOOMED;
                f->doom_view = view_id;
                f->doom_version = version;
                f->doom_wal = wal;
                if (wal > atomic_load(&db->sh->wal_gone)) flush_wal = 1;
                v->discard_version++;
            }
            kv_mutex_unlock(&v->mu);
            if (c[i].dropped)
                kv_log(db, KV_LOG_INFO, "value-log GC freed file %u: all of it was dropped",
                       c[i].fid);
            else
                kv_log(db, KV_LOG_INFO, "value-log GC rewrote file %u (%.0f%% discardable)",
                       c[i].fid, c[i].ratio * 100);
        }
    }
    kv_mutex_lock(&v->mu);
    v->gc_running = 0;
    kv_mutex_unlock(&v->mu);
    atomic_fetch_add(&v->gc_runs, 1);
    atomic_fetch_add(&v->gc_rewritten_entries, rewritten);
    atomic_fetch_add(&v->gc_rewritten_bytes, bytes);
    if (flush_wal && st == KV_OK) {
        /* the files wait for the WALs that may point into them: flush the
         * memtables now instead of whenever the next write fills one */
        kv_err ferr;
        kv_status rs = kv_writer_rotate_mem(db, &ferr);
        if (rs != KV_OK && rs != KV_CLOSED)
            kv_log(db, KV_LOG_WARNING, "value-log GC could not rotate the memtable: %s", ferr.msg);
    }
    kv_vlog_reap(db);
    return st;
}

/* ---- the background thread (host) ---- */

static void *gc_main(void *arg)
{
    kv_db *db = arg;
    kv_shared *sh = db->sh;
    kv_mutex_lock(&sh->vlog.mu);
    while (!atomic_load(&sh->stopping)) {
        kv_err err;
        kv_cond_timedwait_ms(&sh->vlog_cv, &sh->vlog.mu, 1000);
        if (atomic_load(&sh->stopping)) break;
        kv_mutex_unlock(&sh->vlog.mu);
        kv_vlog_reap(db);
        if (kv_check_bg_error(db, NULL) == KV_OK) {
            if (db->opt->auto_vlog_gc) {
                kv_status st = kv_run_value_log_gc(db, db->opt->auto_vlog_gc_ratio, &err);
                if (st != KV_OK && st != KV_NO_REWRITE && st != KV_BUSY && st != KV_CLOSED)
                    kv_log(db, KV_LOG_WARNING, "automatic value-log GC failed: %s", err.msg);
            }
            if (db->vlog_recount) {
                db->vlog_recount = 0;
                if (kv_vlog_recount(db, &err) != KV_OK)
                    kv_log(db, KV_LOG_WARNING, "could not count value-log garbage: %s", err.msg);
            }
            if (kv_vlog_persist_discard(db, 0, &err) != KV_OK)
                kv_log(db, KV_LOG_WARNING, "could not write DISCARD: %s", err.msg);
        }
        kv_mutex_lock(&sh->vlog.mu);
    }
    kv_mutex_unlock(&sh->vlog.mu);
    return NULL;
}

kv_status kv_vlog_gc_start(kv_db *db, kv_err *err)
{
    if (db->opt->in_memory || db->opt->read_only) return KV_OK;
    if (pthread_create(&db->gc_thread, NULL, gc_main, db) != 0)
        return kv_seterr(err, KV_IO, 0, "could not start the value-log GC thread");
    db->gc_started = 1;
    return KV_OK;
}

void kv_vlog_gc_stop(kv_db *db)
{
    if (!db->gc_started) return;
    kv_mutex_lock(&db->sh->vlog.mu);
    kv_cond_broadcast(&db->sh->vlog_cv);
    kv_mutex_unlock(&db->sh->vlog.mu);
    pthread_join(db->gc_thread, NULL);
    db->gc_started = 0;
}

kv_status kv_vlog_close(kv_db *db, kv_err *err)
{
    kv_status st;
    if (db->opt->in_memory || db->opt->read_only) return KV_OK;
    kv_vlog_reap(db);
    st = kv_vlog_sync(db, err);
    if (st == KV_OK) st = kv_vlog_persist_discard(db, 1, err);
    return st;
}
