/*
 * db.c - the region layout and the life of a database: kv_open /
 * kv_open_region (recovery, in Badger's order), kv_attach / kv_detach,
 * kv_close.
 *
 * Open, in order: validate options; format the region; create the
 * directories; lock Dir and ValueDir; open or create MANIFEST and rebuild
 * the version from it; remove tables the manifest does not know and check
 * that every table it knows is present and sound; replay each memtable
 * WAL (NNNNNN.mem, oldest first) into a memtable, flush it to level 0 and
 * delete the WAL (a torn tail ends the replay, empty logs are dropped);
 * start a fresh memtable and WAL; start the flush and compaction threads.
 */
#include "db.h"

#include <errno.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "compaction.h"
#include "err.h"
#include "flush.h"
#include "manifest.h"
#include "wal.h"

#define ALIGN(x, a) (((x) + (a)-1) & ~((uint64_t)(a)-1))
#define SNAP_SLOTS_BASE 1024
#define SNAP_SLOTS_PER_PROCESS 64

/* ---- small shared helpers (db.h) ---- */

void kv_file_path(char *out, size_t cap, const char *dir, uint64_t id, const char *suffix)
{
    snprintf(out, cap, "%s/%06llu.%s", dir, (unsigned long long)id, suffix);
}

void kv_log(kv_db *db, kv_log_level level, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    if (level < db->log_level) return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (db->log_fn) db->log_fn(db->log_ctx, level, msg);
    else if (level >= KV_LOG_WARNING)
        fprintf(stderr, "kvsep %s: %s\n", level == KV_LOG_ERROR ? "ERROR" : "WARNING", msg);
}

void kv_set_bg_error(kv_db *db, const kv_err *err)
{
    kv_shared *sh = db->sh;
    int first = 0;
    kv_mutex_lock(&sh->err_mu);
    if (atomic_load(&sh->bg_status) == KV_OK && err && err->code != KV_OK) {
        sh->bg_errno = err->sys_errno;
        memcpy(sh->bg_msg, err->msg, sizeof sh->bg_msg);
        atomic_store(&sh->bg_status, (int32_t)err->code);
        first = 1;
    }
    kv_mutex_unlock(&sh->err_mu);
    if (first) {
        kv_log(db, KV_LOG_ERROR, "background error, the database is now read-only: %s",
               err->msg);
        /* wake everyone who waits for background progress */
        kv_mutex_lock(&sh->db_mu);
        kv_cond_broadcast(&sh->mem_cv);
        kv_cond_broadcast(&sh->flushed_cv);
        kv_mutex_unlock(&sh->db_mu);
    }
}

kv_status kv_check_bg_error(kv_db *db, kv_err *err)
{
    kv_shared *sh = db->sh;
    kv_status st = (kv_status)atomic_load(&sh->bg_status);
    if (st == KV_OK) return KV_OK;
    kv_mutex_lock(&sh->err_mu);
    kv_seterr(err, st, sh->bg_errno, "database has a background error: %s", sh->bg_msg);
    kv_mutex_unlock(&sh->err_mu);
    return st;
}

kv_status kv_background_error(kv_db *db, kv_err *err)
{
    return kv_check_bg_error(db, err);
}

kv_status kv_check_usable(kv_db *db, kv_err *err)
{
    uint32_t state = atomic_load_explicit(&db->sh->state, memory_order_acquire);
    if (atomic_load_explicit(&db->sh->generation, memory_order_relaxed) != db->generation)
        return kv_seterr(err, KV_CLOSED, 0, "the database was reopened; attach again");
    if (state == KV_STATE_READY) return KV_OK;
    if (state == KV_STATE_CLOSING && db->is_host) return KV_OK;
    return kv_seterr(err, KV_CLOSED, 0, "the database is closed");
}

/* ---- region layout ---- */

typedef struct layout {
    uint64_t attach_off, snap_off, heap_off, heap_size, arena_off, arena_size, cache_off,
        cache_size, conflict_off, conflict_size, total;
    uint32_t n_attach, n_snaps, n_arenas;
} layout;

static void compute_layout(const kv_options *o, layout *l)
{
    uint64_t off = ALIGN(sizeof(kv_shared), 64);
    memset(l, 0, sizeof *l);
    l->n_attach = (uint32_t)o->max_attached_processes;
    l->attach_off = off;
    off = ALIGN(off + (uint64_t)l->n_attach * sizeof(kv_attach_slot), 64);
    l->n_snaps = SNAP_SLOTS_BASE + SNAP_SLOTS_PER_PROCESS * l->n_attach;
    l->snap_off = off;
    off = ALIGN(off + (uint64_t)l->n_snaps * sizeof(kv_snap_slot), 64);
    l->heap_size = o->shared_heap_size ? (uint64_t)o->shared_heap_size
                                       : (uint64_t)(o->mem_table_size / 2 > (16 << 20)
                                                        ? o->mem_table_size / 2
                                                        : (16 << 20));
    l->heap_off = off;
    off = ALIGN(off + l->heap_size, 4096);
    l->arena_size = ALIGN((uint64_t)o->mem_table_size, 4096);
    l->n_arenas = (uint32_t)o->num_memtables + 2;
    if (l->n_arenas > KV_MAX_MEMTABLES) l->n_arenas = KV_MAX_MEMTABLES;
    l->arena_off = off;
    off += (uint64_t)l->n_arenas * l->arena_size;
    l->cache_size = kv_bcache_region_size(o->block_cache_size, o->block_size);
    l->cache_off = off;
    off = ALIGN(off + l->cache_size, 4096);
    l->conflict_size = kv_conflict_region_size(o->conflict_table_size);
    l->conflict_off = off;
    off = ALIGN(off + l->conflict_size, 4096);
    l->total = off;
}

size_t kv_shared_size(const kv_options *opt)
{
    layout l;
    if (!opt || kv_options_validate(opt, NULL) != KV_OK) return 0;
    compute_layout(opt, &l);
    return (size_t)l.total;
}

static void format_region(kv_shared *sh, const kv_options *o, const layout *l, size_t size)
{
    uint32_t state = atomic_load(&sh->state), gen;
    char *base = (char *)sh;
    /* a region this code formatted before keeps counting generations, so
     * handles attached to the previous incarnation notice */
    gen = state <= KV_STATE_FAILED && sh->magic == KV_REGION_MAGIC
              ? atomic_load(&sh->generation) + 1
              : 1;
    atomic_store(&sh->state, KV_STATE_OPENING);
    atomic_store(&sh->generation, gen);
    memset(base + offsetof(kv_shared, magic), 0, sizeof *sh - offsetof(kv_shared, magic));
    sh->magic = KV_REGION_MAGIC;
    sh->layout = KV_REGION_LAYOUT;
    sh->size = size;
    sh->host_pid = (int32_t)getpid();
    sh->opt = *o;
    sh->opt.env = NULL;
    sh->opt.log_fn = NULL;
    sh->opt.log_ctx = NULL;
    snprintf(sh->value_dir, sizeof sh->value_dir, "%s", o->value_dir[0] ? o->value_dir : o->dir);
    sh->attach_off = l->attach_off;
    sh->n_attach = l->n_attach;
    sh->snap_off = l->snap_off;
    sh->n_snaps = l->n_snaps;
    sh->heap_off = l->heap_off;
    sh->heap_size = l->heap_size;
    sh->arena_off = l->arena_off;
    sh->arena_size = l->arena_size;
    sh->n_arenas = l->n_arenas;
    sh->cache_off = l->cache_off;
    sh->cache_size = l->cache_size;
    memset(base + l->attach_off, 0, (size_t)l->n_attach * sizeof(kv_attach_slot));
    memset(base + l->snap_off, 0, (size_t)l->n_snaps * sizeof(kv_snap_slot));
    kv_heap_init(&sh->heap, base, l->heap_off, l->heap_size);
    kv_bcache_init(&sh->bcache, base, l->cache_off, l->cache_size, o->block_size);
    kv_conflict_init(&sh->conflict, base, l->conflict_off, l->conflict_size);
    kv_mutex_init(&sh->db_mu);
    kv_cond_init(&sh->flush_cv);
    kv_cond_init(&sh->mem_cv);
    kv_cond_init(&sh->flushed_cv);
    kv_mutex_init(&sh->vset.mu);
    kv_cond_init(&sh->vset.cv);
    kv_mutex_init(&sh->wq.mu);
    kv_cond_init(&sh->wq.cv);
    kv_mutex_init(&sh->snaps.mu);
    kv_mutex_init(&sh->err_mu);
    kv_mutex_init(&sh->vlog.mu);
    kv_cond_init(&sh->vlog_cv);
}

/* ---- process handles ---- */

static kv_db *handle_new(kv_shared *sh, kv_env *env, kv_log_fn fn, void *ctx,
                         kv_log_level lvl, kv_err *err)
{
    kv_db *db = calloc(1, sizeof *db);
    if (!db) {
        kv_seterr(err, KV_NO_MEMORY, 0, "out of memory opening the database");
        return NULL;
    }
    db->sh = sh;
    db->base = (char *)sh;
    db->generation = atomic_load(&sh->generation);
    db->attach_slot = -1;
    db->env = env ? env : kv_env_posix();
    db->log_fn = fn;
    db->log_ctx = ctx;
    db->log_level = lvl;
    db->opt = &sh->opt;
    snprintf(db->dir, sizeof db->dir, "%s", sh->opt.in_memory ? "/kvsep-in-memory" : sh->opt.dir);
    snprintf(db->vdir, sizeof db->vdir, "%s",
             sh->opt.in_memory ? "/kvsep-in-memory" : sh->value_dir);
    pthread_mutex_init(&db->wal_mu, NULL);
    kv_vcache_init(&db->vcache);
    kv_bcache_ops(db, &db->cache_ops);
    if (kv_tcache_init(&db->tcache, err) != KV_OK) {
        pthread_mutex_destroy(&db->wal_mu);
        free(db);
        return NULL;
    }
    return db;
}

static void handle_free(kv_db *db)
{
    kv_writer_close_wal(db);
    kv_tcache_destroy(db);
    kv_vcache_destroy(db);
    pthread_mutex_destroy(&db->wal_mu);
    free(db);
}

/* ---- recovery ---- */

typedef struct dir_scan {
    uint64_t *ssts, *mems;
    size_t n_sst, n_mem, cap_sst, cap_mem;
    char **spills;                        /* transactions' spilled runs (pending.h) */
    size_t n_spill;
    uint64_t max_id;
    int oom;
} dir_scan;

static void push_id(uint64_t **a, size_t *n, size_t *cap, uint64_t id, int *oom)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 32;
        uint64_t *p = realloc(*a, c * sizeof *p);
        if (!p) {
            *oom = 1;
            return;
        }
        *a = p;
        *cap = c;
    }
    (*a)[(*n)++] = id;
}

static void scan_cb(void *ctx, const char *name)
{
    dir_scan *s = ctx;
    char *end;
    unsigned long long id;
    size_t n = strlen(name);
    if (n > 10 && !strncmp(name, "txn-", 4) && !strcmp(name + n - 6, ".spill")) {
        char **sp = realloc(s->spills, (s->n_spill + 1) * sizeof *sp);
        if (!sp || !(sp[s->n_spill] = strdup(name))) s->oom = 1;
        else s->n_spill++;
        if (sp) s->spills = sp;
        return;
    }
    id = strtoull(name, &end, 10);
    if (end == name) return;
    if (!strcmp(end, ".sst")) push_id(&s->ssts, &s->n_sst, &s->cap_sst, id, &s->oom);
    else if (!strcmp(end, ".mem")) push_id(&s->mems, &s->n_mem, &s->cap_mem, id, &s->oom);
    else return;
    if (id > s->max_id) s->max_id = id;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_mf_order(const void *a, const void *b)
{
    const kv_mf_table *x = a, *y = b;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* Builds the current version from the replayed manifest. */
static kv_status load_version(kv_db *db, kv_mf_state *s, kv_err *err)
{
    kv_vedit e;
    uint64_t empty, v;
    kv_status st;

    if (s->n) qsort(s->tables, s->n, sizeof *s->tables, cmp_mf_order);
    kv_vedit_init(&e);
    st = kv_version_empty(db, db->opt->max_levels, &empty, err);
    for (size_t i = 0; i < s->n && st == KV_OK; i++) {
        uint64_t meta;
        if (s->tables[i].level >= db->opt->max_levels) {
            st = kv_seterr(err, KV_INVALID, 0,
                           "table %llu is at level %d but MaxLevels is %d; open with a larger "
                           "MaxLevels",
                           (unsigned long long)s->tables[i].props.table_id, s->tables[i].level,
                           db->opt->max_levels);
            break;
        }
        st = kv_tm_new(db, &s->tables[i].props, s->tables[i].smallest, s->tables[i].slen,
                       s->tables[i].largest, s->tables[i].llen, &meta, err);
        if (st == KV_OK) {
            kv_tm_at(db, meta)->global_version = s->tables[i].global_version;
            kv_tm_at(db, meta)->dropped_upto = s->tables[i].dropped_upto;
        }
        if (st == KV_OK) st = kv_vedit_add(&e, s->tables[i].level, meta, err);
    }
    /* the drops in effect */
    if (st == KV_OK && s->n_drops)
        st = kv_drops_from(db, s->drops, s->n_drops, &kv_ver_at(db, empty)->drops, err);
    if (st == KV_OK) st = kv_version_apply(db, kv_ver_at(db, empty), &e, &v, err);
    if (empty) kv_version_unref(db, kv_ver_at(db, empty));
    if (st == KV_OK) db->sh->vset.current = v;
    /* on failure the unattached metas leak into a region that is discarded */
    kv_vedit_free(&e);
    return st;
}

/* Opens every table once (checks presence, size, footer, checksums). */
static kv_status check_tables(kv_db *db, kv_err *err)
{
    kv_version *v = kv_ver_at(db, db->sh->vset.current);
    for (uint32_t i = 0; i < v->total; i++) {
        kv_table_handle *h;
        kv_status st = kv_tcache_get(db, kv_tm_at(db, v->tables[i]), &h, err);
        if (st != KV_OK) return st;
        kv_tcache_release(db, h);
    }
    return KV_OK;
}

typedef struct replay_ctx {
    kv_db *db;
    kv_memtable *mt;
    uint64_t max_version;
    uint64_t records;
} replay_ctx;

static kv_status install_imm(kv_db *db, kv_memtable *mt, kv_err *err)
{
    kv_view *old = NULL;
    kv_status st;
    kv_mutex_lock(&db->sh->db_mu);
    db->sh->imm[db->sh->n_imm++] = kv_off_of(db, mt);
    atomic_fetch_or(&mt->flags, KV_MT_IMMUTABLE);
    st = kv_view_install(db, &old, err);
    kv_mutex_unlock(&db->sh->db_mu);
    kv_view_unpin(db, old);
    return st;
}

static kv_status new_replay_memtable(kv_db *db, replay_ctx *rc, uint64_t id, kv_err *err)
{
    kv_status st;
    kv_mutex_lock(&db->sh->db_mu);
    st = kv_mt_create(db, id, &rc->mt, err);
    kv_mutex_unlock(&db->sh->db_mu);
    return st;
}

/* The replayed memtable is full or done: flush it (or keep it read-only). */
static kv_status retire_replay_memtable(kv_db *db, replay_ctx *rc, kv_err *err)
{
    kv_memtable *mt = rc->mt;
    kv_status st;
    rc->mt = NULL;
    if (kv_sl_empty(kv_mt_sl(db, mt)) && !db->opt->read_only) {
        kv_mt_unref(db, mt);
        return KV_OK;
    }
    st = install_imm(db, mt, err);
    if (st != KV_OK || db->opt->read_only) return st;
    return kv_flush_memtable(db, mt, err);
}

/* Every value pointer of a record must resolve: if one does not, the
 * record's vlog entries never reached the disk - the end of the log,
 * unless the record says they were synced (then it is corruption). */
static kv_status check_pointers(kv_db *db, kv_wal_cursor cur, uint8_t flags, uint64_t off,
                                kv_err *err)
{
    kv_wal_entry we;
    kv_vhandle *h = NULL;
    kv_status st = KV_OK;
    int r;
    while ((r = kv_wal_next_entry(&cur, &we)) == 1) {
        kv_vstruct vs;
        kv_vptr ptr;
        kv_vlog_entry e;
        kv_err perr;
        if (kv_vstruct_decode(we.vs, we.vslen, &vs) != 0 || !(vs.meta & KV_META_VALUE_PTR))
            continue;
        if (kv_vptr_decode(vs.value, vs.value_len, &ptr) != 0 ||
            kv_vlog_read(db, &ptr, 1, &e, &h, &perr) != KV_OK) {
            if (flags & KV_WAL_F_VLOG_SYNCED) {
                st = kv_seterr(err, KV_CORRUPTION, 0,
                               "WAL record at offset %llu points to a damaged value-log entry: %s",
                               (unsigned long long)off, perr.msg);
                break;
            }
            kv_log(db, KV_LOG_WARNING,
                   "WAL record at offset %llu points to a value-log entry that never reached "
                   "the disk; the log ends there (%s)",
                   (unsigned long long)off, perr.msg);
            st = KV_NOT_FOUND;
            break;
        }
        if (e.klen != we.klen || memcmp(e.key, we.key, e.klen) != 0) {
            st = kv_seterr(err, KV_CORRUPTION, 0,
                           "WAL record at offset %llu: value-log entry of file %u offset %llu "
                           "belongs to another key",
                           (unsigned long long)off, ptr.fid, (unsigned long long)ptr.offset);
            break;
        }
    }
    if (h) kv_vlog_release(db, h);
    if (st != KV_OK) return st;
    return r < 0 ? kv_seterr(err, KV_CORRUPTION, 0, "malformed WAL record at offset %llu",
                             (unsigned long long)off)
                 : KV_OK;
}

static kv_status replay_record(void *ctx, const uint8_t *payload, size_t n, uint64_t off,
                               kv_err *err)
{
    replay_ctx *rc = ctx;
    kv_db *db = rc->db;
    uint64_t version;
    uint32_t count;
    uint8_t flags;
    kv_wal_cursor cur;
    kv_status st;
    if (kv_wal_payload_open(payload, n, &version, &count, &flags, &cur) != 0)
        return kv_seterr(err, KV_CORRUPTION, 0, "malformed WAL record at offset %llu",
                         (unsigned long long)off);
    st = check_pointers(db, cur, flags, off, err);
    if (st != KV_OK) return st;
    if (kv_mt_used(db, rc->mt) + n * 2 + 4096 > db->sh->arena_size) {
        /* a memtable written with a larger MemTableSize: spill into more */
        uint64_t id = rc->mt->id;
        st = retire_replay_memtable(db, rc, err);
        if (st == KV_OK) st = new_replay_memtable(db, rc, id, err);
        if (st != KV_OK) return st;
        rc->mt->id = 0; /* its WAL is deleted with the first part */
    }
    st = kv_mt_apply(db, rc->mt, payload, n, version, err);
    if (st != KV_OK) return st;
    if (version > rc->max_version) rc->max_version = version;
    rc->records++;
    return KV_OK;
}

static kv_status replay_wals(kv_db *db, dir_scan *ds, uint64_t *max_version, kv_err *err)
{
    int ended = 0; /* a log ended early: later logs hold only unsynced writes */
    if (ds->n_mem) qsort(ds->mems, ds->n_mem, sizeof *ds->mems, cmp_u64);
    for (size_t i = 0; i < ds->n_mem; i++) {
        char path[KV_PATH_MAX + 32];
        replay_ctx rc;
        uint64_t valid_end = 0;
        kv_status st;
        memset(&rc, 0, sizeof rc);
        rc.db = db;
        kv_file_path(path, sizeof path, db->dir, ds->mems[i], "mem");
        if (ended) {
            /* every write in it came after a write that was lost, and none
             * was synced (a synced write syncs all earlier logs): dropping
             * it keeps the recovered history a prefix */
            kv_log(db, KV_LOG_WARNING, "dropping WAL \"%s\": it follows a log that ended early",
                   path);
            if (!db->opt->read_only) {
                st = db->env->remove(db->env, path, err);
                if (st != KV_OK) return st;
            }
            continue;
        }
        st = new_replay_memtable(db, &rc, ds->mems[i], err);
        if (st == KV_OK) {
            int torn = 0;
            st = kv_wal_replay(db->env, path, ds->mems[i], replay_record, &rc, &valid_end, &torn,
                               err);
            if (st == KV_NOT_FOUND) {
                ended = 1;
                st = KV_OK;
            } else if (st == KV_OK && torn) {
                /* writes after the tear were lost with it: later logs too */
                kv_log(db, KV_LOG_WARNING,
                       "WAL \"%s\" ends at offset %llu: the rest was cut short by a crash",
                       path, (unsigned long long)valid_end);
                ended = 1;
            }
        }
        if (st == KV_OK) {
            kv_log(db, KV_LOG_INFO, "replayed %llu records from \"%s\"",
                   (unsigned long long)rc.records, path);
            st = retire_replay_memtable(db, &rc, err);
        }
        if (st != KV_OK) {
            if (rc.mt) kv_mt_unref(db, rc.mt);
            return st;
        }
        if (rc.max_version > *max_version) *max_version = rc.max_version;
        if (!db->opt->read_only) {
            /* flushed (or empty): the log is no longer needed */
            st = db->env->remove(db->env, path, err);
            if (st != KV_OK) return st;
        }
    }
    return KV_OK;
}

static kv_status lock_dirs(kv_db *db, kv_err *err)
{
    char path[KV_PATH_MAX + 32];
    pid_t holder = 0;
    int excl = !db->opt->read_only;
    kv_status st;
    if (db->opt->bypass_lock_guard || db->opt->in_memory) return KV_OK;
    snprintf(path, sizeof path, "%s/LOCK", db->dir);
    st = db->env->lock(db->env, path, excl, &db->dir_lock, &holder, err);
    if (st != KV_OK) return st;
    if (strcmp(db->vdir, db->dir) != 0) {
        snprintf(path, sizeof path, "%s/LOCK", db->vdir);
        st = db->env->lock(db->env, path, excl, &db->vdir_lock, &holder, err);
    }
    return st;
}

static void unlock_dirs(kv_db *db)
{
    if (db->vdir_lock) db->env->unlock(db->vdir_lock);
    if (db->dir_lock) db->env->unlock(db->dir_lock);
    db->vdir_lock = db->dir_lock = NULL;
}

static void stop_threads(kv_db *db)
{
    atomic_store(&db->sh->stopping, 1);
    kv_vlog_gc_stop(db);
    kv_flush_stop(db);
    kv_compaction_stop(db);
}

static kv_status recover(kv_db *db, kv_err *err)
{
    kv_shared *sh = db->sh;
    kv_mf_state mf;
    dir_scan ds;
    uint64_t max_version;
    kv_status st;

    memset(&ds, 0, sizeof ds);
    if (!db->opt->in_memory) {
        st = db->env->mkdirs(db->env, db->dir, err);
        if (st == KV_OK && strcmp(db->vdir, db->dir)) st = db->env->mkdirs(db->env, db->vdir, err);
        if (st != KV_OK) return st;
    }
    st = lock_dirs(db, err);
    if (st != KV_OK) return st;
    if (!db->opt->in_memory) {
        st = kv_manifest_open(db, &mf, err);
        if (st != KV_OK) return st;
    } else {
        memset(&mf, 0, sizeof mf);
        mf.next_file_id = 1;
    }
    st = load_version(db, &mf, err);
    atomic_store(&sh->vset.next_file_id, mf.next_file_id);
    sh->vset.max_version = mf.max_version;
    max_version = mf.max_version;
    if (st == KV_OK && !db->opt->in_memory) {
        st = db->env->list_dir(db->env, db->dir, scan_cb, &ds, err);
        if (st == KV_OK && ds.oom) st = kv_seterr(err, KV_NO_MEMORY, 0, "out of memory");
    }
    if (st == KV_OK) {
        if (ds.max_id >= atomic_load(&sh->vset.next_file_id))
            atomic_store(&sh->vset.next_file_id, ds.max_id + 1);
        /* tables the manifest does not list are leftovers of a crash */
        for (size_t i = 0; i < ds.n_sst && !db->opt->read_only; i++) {
            int known = 0;
            for (size_t k = 0; k < mf.n && !known; k++) known = mf.tables[k].props.table_id == ds.ssts[i];
            if (!known) {
                char path[KV_PATH_MAX + 32];
                kv_file_path(path, sizeof path, db->dir, ds.ssts[i], "sst");
                kv_log(db, KV_LOG_INFO, "removing table \"%s\" not in the manifest", path);
                db->env->remove(db->env, path, NULL);
            }
        }
        /* a crashed process's transactions */
        for (size_t i = 0; i < ds.n_spill && !db->opt->read_only; i++) {
            char path[KV_PATH_MAX + 300];
            snprintf(path, sizeof path, "%s/%s", db->dir, ds.spills[i]);
            db->env->remove(db->env, path, NULL);
        }
        st = check_tables(db, err);
    }
    for (size_t i = 0; i < ds.n_spill; i++) free(ds.spills[i]);
    free(ds.spills);
    kv_mf_state_free(&mf);
    if (st == KV_OK) {
        kv_view *old = NULL;
        kv_mutex_lock(&sh->db_mu);
        st = kv_view_install(db, &old, err);
        kv_mutex_unlock(&sh->db_mu);
        kv_view_unpin(db, old);
    }
    if (st == KV_OK) st = kv_vlog_open(db, err);
    if (st == KV_OK) st = kv_vlog_load_discard(db, err);
    if (st == KV_OK) st = replay_wals(db, &ds, &max_version, err);
    free(ds.ssts);
    free(ds.mems);
    if (st != KV_OK) return st;

    /* Version 1 is the empty database: commits start at 2, so a snapshot
     * version is never 0, which reads take to mean "latest". */
    if (max_version < 1) max_version = 1;
    atomic_store(&sh->visible_version, max_version);
    sh->wq.last_version = max_version;
    sh->wq.vlog_unsynced_ptrs = 1;
    if (!db->opt->read_only) {
        uint64_t id = atomic_fetch_add(&sh->vset.next_file_id, 1);
        kv_memtable *mt;
        kv_view *old = NULL;
        if (!db->opt->in_memory) {
            st = kv_writer_create_wal(db, id, err);
            if (st == KV_OK) st = db->env->sync_dir(db->env, db->dir, err);
            if (st != KV_OK) return st;
        }
        kv_mutex_lock(&sh->db_mu);
        st = kv_mt_create(db, db->opt->in_memory ? 0 : id, &mt, err);
        if (st == KV_OK) {
            mt->dir_synced = 1; /* synced just above */
            sh->mem = kv_off_of(db, mt);
            st = kv_view_install(db, &old, err);
        }
        kv_mutex_unlock(&sh->db_mu);
        kv_view_unpin(db, old);
        if (st == KV_OK && !db->opt->in_memory) st = kv_vlog_start_head(db, err);
        if (st != KV_OK) return st;
        st = kv_flush_start(db, err);
        if (st == KV_OK) st = kv_compaction_start(db, err);
        if (st == KV_OK) st = kv_vlog_gc_start(db, err);
    }
    return st;
}

kv_status kv_open_region(const kv_options *opt, void *region, size_t size, kv_db **out,
                         kv_err *err)
{
    layout l;
    kv_shared *sh = region;
    kv_db *db;
    kv_env *env;
    kv_status st;

    if (!out) return kv_seterr(err, KV_INVALID, 0, "kv_open: out must not be NULL");
    *out = NULL;
    st = kv_options_validate(opt, err);
    if (st != KV_OK) return st;
    compute_layout(opt, &l);
    if (!region || ((uintptr_t)region & 15))
        return kv_seterr(err, KV_INVALID, 0, "shared region must be 16-byte aligned");
    if (size < l.total)
        return kv_seterr(err, KV_INVALID, 0, "shared region of %zu bytes is smaller than the %llu "
                         "bytes these options need (kv_shared_size)",
                         size, (unsigned long long)l.total);
    format_region(sh, opt, &l, size);
    env = opt->env;
    if (opt->in_memory && !env) env = kv_env_mem_new();
    db = handle_new(sh, env, opt->log_fn, opt->log_ctx, opt->log_level, err);
    if (!db) {
        if (opt->in_memory && !opt->env) kv_env_mem_free(env);
        atomic_store(&sh->state, KV_STATE_FAILED);
        return err ? err->code : KV_NO_MEMORY;
    }
    db->is_host = 1;
    db->own_env = opt->in_memory && !opt->env;
    st = recover(db, err);
    if (st != KV_OK) {
        kv_err_prefix(err, "could not open database \"%s\"", opt->in_memory ? "(in memory)" : opt->dir);
        stop_threads(db);
        kv_manifest_close(db);
        unlock_dirs(db);
        kv_compaction_free(db);
        atomic_store(&sh->state, KV_STATE_FAILED);
        env = db->own_env ? db->env : NULL;
        handle_free(db);
        if (env) kv_env_mem_free(env);
        return st;
    }
    atomic_store_explicit(&sh->state, KV_STATE_READY, memory_order_release);
    kv_log(db, KV_LOG_INFO, "opened \"%s\" at version %llu", db->dir,
           (unsigned long long)atomic_load(&sh->visible_version));
    *out = db;
    return KV_OK;
}

kv_status kv_open(const kv_options *opt, kv_db **out, kv_err *err)
{
    size_t size;
    void *region;
    kv_status st;
    if (!out) return kv_seterr(err, KV_INVALID, 0, "kv_open: out must not be NULL");
    st = kv_options_validate(opt, err);
    if (st != KV_OK) return st;
    size = kv_shared_size(opt);
    region = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (region == MAP_FAILED)
        return kv_seterr(err, KV_NO_MEMORY, errno, "could not allocate %zu bytes of region", size);
    st = kv_open_region(opt, region, size, out, err);
    if (st != KV_OK) {
        munmap(region, size);
        return st;
    }
    (*out)->own_region = 1;
    return KV_OK;
}

/* ---- attach ---- */

kv_status kv_attach(void *region, const kv_attach_options *ao, kv_db **out, kv_err *err)
{
    kv_shared *sh = region;
    kv_attach_slot *slots;
    kv_db *db;
    uint32_t state, i;
    int32_t me = (int32_t)getpid();

    if (!out || !region) return kv_seterr(err, KV_INVALID, 0, "kv_attach: region and out are required");
    *out = NULL;
    state = atomic_load_explicit(&sh->state, memory_order_acquire);
    if (state > KV_STATE_FAILED)
        return kv_seterr(err, KV_INVALID, 0, "memory is not a kvsep region");
    if (state == KV_STATE_EMPTY || state == KV_STATE_OPENING)
        return kv_seterr(err, KV_BUSY, 0, "the database is not open yet");
    if (state != KV_STATE_READY)
        return kv_seterr(err, KV_CLOSED, 0, "the database is closed or failed to open");
    /* READY was published with release: the header is complete */
    if (sh->magic != KV_REGION_MAGIC || sh->layout != KV_REGION_LAYOUT)
        return kv_seterr(err, KV_INVALID, 0, "memory is not a kvsep region of this version");
    if (sh->opt.in_memory)
        return kv_seterr(err, KV_INVALID, 0, "an in-memory database cannot be attached");
    slots = (kv_attach_slot *)((char *)region + sh->attach_off);
    for (i = 0; i < sh->n_attach; i++) {
        int32_t expect = 0;
        if (atomic_compare_exchange_strong(&slots[i].pid, &expect, me)) break;
    }
    if (i == sh->n_attach)
        return kv_seterr(err, KV_NO_SPACE, 0, "all %u attach slots are in use (MaxAttachedProcesses)",
                         sh->n_attach);
    db = handle_new(sh, ao ? ao->env : NULL, ao ? ao->log_fn : NULL, ao ? ao->log_ctx : NULL,
                    ao ? ao->log_level : KV_LOG_INFO, err);
    if (!db) {
        atomic_store(&slots[i].pid, 0);
        return err ? err->code : KV_NO_MEMORY;
    }
    db->attach_slot = (int)i;
    *out = db;
    return KV_OK;
}

kv_status kv_attach_wait(void *region, const kv_attach_options *ao, int timeout_ms, kv_db **out,
                         kv_err *err)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        kv_status st = kv_attach(region, ao, out, err);
        long ms;
        if (st != KV_BUSY) return st;
        clock_gettime(CLOCK_MONOTONIC, &t);
        ms = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
        if (ms >= timeout_ms)
            return kv_seterr(err, KV_TIMEOUT, 0, "the database did not become ready within %d ms",
                             timeout_ms);
        usleep(10000);
    }
}

void kv_detach(kv_db *db)
{
    kv_attach_slot *slots;
    if (!db) return;
    if (db->is_host) return; /* the host must kv_close */
    slots = (kv_attach_slot *)kv_at(db, db->sh->attach_off);
    if (db->attach_slot >= 0 && atomic_load(&db->sh->generation) == db->generation)
        atomic_store(&slots[db->attach_slot].pid, 0);
    handle_free(db);
}

/* ---- close ---- */

/* Waits until no writer is leading or queued. */
static void drain_writes(kv_db *db)
{
    kv_wq *q = &db->sh->wq;
    kv_mutex_lock(&q->mu);
    while (q->leader_active || q->head) kv_cond_timedwait_ms(&q->cv, &q->mu, 50);
    kv_mutex_unlock(&q->mu);
}

kv_status kv_close(kv_db *db, kv_err *err)
{
    kv_shared *sh;
    kv_status st = KV_OK;
    kv_env *own_env;
    void *region;
    size_t size;

    if (!db) return KV_OK;
    if (!db->is_host) {
        kv_detach(db);
        return KV_OK;
    }
    sh = db->sh;
    atomic_store_explicit(&sh->state, KV_STATE_CLOSING, memory_order_release);
    drain_writes(db);
    if (!db->opt->read_only && !db->opt->in_memory && kv_check_bg_error(db, NULL) == KV_OK) {
        st = kv_flush(db, err);
        if (st == KV_OK && db->opt->compact_l0_on_close && db->opt->num_compactors > 0)
            st = kv_compact_l0(db, err);
    }
    stop_threads(db);
    if (!db->opt->read_only && kv_check_bg_error(db, NULL) == KV_OK) {
        kv_err verr;
        kv_status vst = kv_vlog_close(db, st == KV_OK ? err : &verr);
        if (st == KV_OK) st = vst;
    }
    kv_compaction_free(db);
    kv_manifest_close(db);
    unlock_dirs(db);
    atomic_store_explicit(&sh->state, KV_STATE_CLOSED, memory_order_release);
    own_env = db->own_env ? db->env : NULL;
    region = db->own_region ? db->base : NULL;
    size = (size_t)sh->size;
    handle_free(db);
    if (own_env) kv_env_mem_free(own_env);
    if (region) munmap(region, size);
    return st;
}

kv_status kv_usable(kv_db *db, kv_err *err)
{
    if (!db) return kv_seterr(err, KV_INVALID, 0, "db is required");
    return kv_check_usable(db, err);
}
