/*
 * env_fault.c - fault-injecting kv_env (see env_fault.h).  It forwards to
 * an inner env and keeps, per path, the size written and the size synced,
 * and the old bytes of unsynced overwrites of synced data.
 */
#include "env_fault.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

/* What an unsynced write replaced in the synced part of a file. */
typedef struct fundo {
    uint64_t off;
    size_t len;
    struct fundo *next; /* older */
    uint8_t old[];
} fundo;

typedef struct ftrack {
    char *path;
    uint64_t size, synced;
    fundo *undo;          /* newest first; cleared by a sync */
    int created_unsynced; /* created and directory not synced since */
    /* renamed here and the directory not synced since: where it came from
     * (and whether that name was durable), and the durable file the rename
     * replaced, kept aside until the directory is synced */
    char *orig;
    int orig_durable;
    char *backup;
    struct ftrack *next;
} ftrack;

typedef struct fault_env {
    kv_env base;
    kv_env *inner;
    pthread_mutex_t mu;
    long after[KV_FAULT_NOPS];
    int err_no[KV_FAULT_NOPS];
    char *substr[KV_FAULT_NOPS];
    long failures[KV_FAULT_NOPS];
    int power_cut;
    ftrack *files;
} fault_env;

typedef struct fault_file {
    kv_file base;
    kv_file *inner;
} fault_file;

static ftrack *track(fault_env *e, const char *path, int create)
{
    ftrack *t;
    for (t = e->files; t; t = t->next)
        if (!strcmp(t->path, path)) return t;
    if (!create) return NULL;
    t = calloc(1, sizeof *t);
    t->path = strdup(path);
    t->next = e->files;
    e->files = t;
    return t;
}

static void undo_free(ftrack *t)
{
    while (t->undo) {
        fundo *u = t->undo;
        t->undo = u->next;
        free(u);
    }
}

/* A file cut to size: undo records past it go, one across it is cut. */
static void undo_cut(ftrack *t, uint64_t size)
{
    for (fundo **pp = &t->undo; *pp;) {
        fundo *u = *pp;
        if (u->off >= size) {
            *pp = u->next;
            free(u);
            continue;
        }
        if (u->off + u->len > size) u->len = (size_t)(size - u->off);
        pp = &u->next;
    }
}

static void ftrack_free(ftrack *t)
{
    undo_free(t);
    free(t->path);
    free(t->orig);
    free(t->backup);
    free(t);
}

static void untrack(fault_env *e, const char *path)
{
    for (ftrack **pp = &e->files; *pp; pp = &(*pp)->next)
        if (!strcmp((*pp)->path, path)) {
            ftrack *t = *pp;
            *pp = t->next;
            ftrack_free(t);
            return;
        }
}

/* Returns the errno to fail with, or 0.  Caller holds e->mu. */
static int should_fail(fault_env *e, kv_fault_op op, const char *path)
{
    if (e->power_cut && op != KV_FAULT_OPEN) return EIO;
    if (e->after[op] < 0) return 0;
    if (e->substr[op] && !strstr(path, e->substr[op])) return 0;
    if (e->after[op] > 0) {
        e->after[op]--;
        return 0;
    }
    e->failures[op]++;
    return e->err_no[op];
}

static int check(fault_env *e, kv_fault_op op, const char *path)
{
    int r;
    pthread_mutex_lock(&e->mu);
    r = should_fail(e, op, path);
    pthread_mutex_unlock(&e->mu);
    return r;
}

static kv_status fe_open(kv_env *env, const char *path, int flags, kv_file **out, kv_err *err)
{
    fault_env *e = (fault_env *)env;
    fault_file *f;
    kv_status st;
    int existed, fail;

    pthread_mutex_lock(&e->mu);
    fail = should_fail(e, KV_FAULT_OPEN, path);
    /* after a power cut nothing can be created or written */
    if (!fail && e->power_cut && (flags & (KV_O_CREATE | KV_O_TRUNC)) &&
        (flags & KV_O_RDWR))
        fail = EIO;
    pthread_mutex_unlock(&e->mu);
    if (fail) return kv_seterr(err, kv_status_from_errno(fail), fail, "could not open file \"%s\" (injected)", path);
    existed = e->inner->exists(e->inner, path);
    f = calloc(1, sizeof *f);
    if (!f) return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory");
    st = e->inner->open(e->inner, path, flags, &f->inner, err);
    if (st != KV_OK) {
        free(f);
        return st;
    }
    f->base.env = env;
    f->base.path = f->inner->path;
    if (flags & KV_O_RDWR) {
        pthread_mutex_lock(&e->mu);
        {
            ftrack *t = track(e, path, 1);
            if (!existed) {
                t->created_unsynced = 1;
                t->size = t->synced = 0;
            } else if (flags & KV_O_TRUNC) {
                t->size = 0;
                if (t->synced > 0) t->synced = 0;
            } else if (!t->size && !t->synced) {
                uint64_t sz = 0;
                e->inner->size(f->inner, &sz, NULL);
                t->size = t->synced = sz;
            }
        }
        pthread_mutex_unlock(&e->mu);
    }
    *out = &f->base;
    return KV_OK;
}

static void fe_close(kv_file *kf)
{
    fault_file *f = (fault_file *)kf;
    if (!f) return;
    ((fault_env *)kf->env)->inner->close(f->inner);
    free(f);
}

static kv_status fe_pread(kv_file *kf, void *buf, size_t n, uint64_t off, size_t *got,
                          kv_err *err)
{
    fault_file *f = (fault_file *)kf;
    return ((fault_env *)kf->env)->inner->pread(f->inner, buf, n, off, got, err);
}

static kv_status fe_pwritev(kv_file *kf, const struct iovec *iov, int iovcnt, uint64_t off,
                            kv_err *err)
{
    fault_file *f = (fault_file *)kf;
    fault_env *e = (fault_env *)kf->env;
    uint64_t total = 0;
    kv_status st;
    int fail = check(e, KV_FAULT_WRITE, kf->path);
    if (fail)
        return kv_seterr(err, kv_status_from_errno(fail), fail,
                         "could not write file \"%s\" at offset %llu (injected)", kf->path,
                         (unsigned long long)off);
    for (int i = 0; i < iovcnt; i++) total += iov[i].iov_len;
    pthread_mutex_lock(&e->mu);
    {
        /* overwriting synced bytes (a preallocated WAL): a power cut
         * before the next sync brings the old ones back */
        ftrack *t = track(e, kf->path, 1);
        if (off < t->synced && total) {
            size_t n = (size_t)(t->synced - off < total ? t->synced - off : total), got = 0;
            fundo *u = malloc(sizeof *u + n);
            kv_status rst = u ? e->inner->pread(f->inner, u->old, n, off, &got, err)
                              : kv_seterr(err, KV_NO_MEMORY, 0, "fault env: out of memory");
            if (rst != KV_OK) {
                free(u);
                pthread_mutex_unlock(&e->mu);
                return rst;
            }
            u->off = off;
            u->len = got;
            u->next = t->undo;
            t->undo = u;
        }
    }
    pthread_mutex_unlock(&e->mu);
    st = e->inner->pwritev(f->inner, iov, iovcnt, off, err);
    if (st != KV_OK) return st;
    pthread_mutex_lock(&e->mu);
    {
        ftrack *t = track(e, kf->path, 1);
        if (off + total > t->size) t->size = off + total;
    }
    pthread_mutex_unlock(&e->mu);
    return KV_OK;
}

static kv_status fe_sync(kv_file *kf, kv_err *err)
{
    fault_file *f = (fault_file *)kf;
    fault_env *e = (fault_env *)kf->env;
    kv_status st;
    int fail = check(e, KV_FAULT_SYNC, kf->path);
    if (fail)
        return kv_seterr(err, kv_status_from_errno(fail), fail,
                         "could not fsync file \"%s\" (injected)", kf->path);
    st = e->inner->sync(f->inner, err);
    if (st != KV_OK) return st;
    pthread_mutex_lock(&e->mu);
    {
        ftrack *t = track(e, kf->path, 1);
        t->synced = t->size;
        undo_free(t);
    }
    pthread_mutex_unlock(&e->mu);
    return KV_OK;
}

static kv_status fe_truncate(kv_file *kf, uint64_t size, kv_err *err)
{
    fault_file *f = (fault_file *)kf;
    fault_env *e = (fault_env *)kf->env;
    kv_status st;
    int fail = check(e, KV_FAULT_WRITE, kf->path);
    if (fail)
        return kv_seterr(err, kv_status_from_errno(fail), fail,
                         "could not truncate file \"%s\" (injected)", kf->path);
    st = e->inner->truncate(f->inner, size, err);
    if (st != KV_OK) return st;
    pthread_mutex_lock(&e->mu);
    {
        ftrack *t = track(e, kf->path, 1);
        t->size = size;
        if (t->synced > size) t->synced = size;
        undo_cut(t, size);
    }
    pthread_mutex_unlock(&e->mu);
    return KV_OK;
}

static kv_status fe_size(kv_file *kf, uint64_t *size, kv_err *err)
{
    return ((fault_env *)kf->env)->inner->size(((fault_file *)kf)->inner, size, err);
}

static kv_status fe_map(kv_file *kf, uint64_t size, const uint8_t **addr, kv_err *err)
{
    return ((fault_env *)kf->env)->inner->map(((fault_file *)kf)->inner, size, addr, err);
}

static void fe_unmap(kv_file *kf, const uint8_t *addr, uint64_t size)
{
    ((fault_env *)kf->env)->inner->unmap(((fault_file *)kf)->inner, addr, size);
}

static kv_status fe_remove(kv_env *env, const char *path, kv_err *err)
{
    fault_env *e = (fault_env *)env;
    kv_status st;
    int fail = check(e, KV_FAULT_REMOVE, path);
    if (fail)
        return kv_seterr(err, kv_status_from_errno(fail), fail,
                         "could not remove file \"%s\" (injected)", path);
    st = e->inner->remove(e->inner, path, err);
    if (st == KV_OK) {
        pthread_mutex_lock(&e->mu);
        untrack(e, path);
        pthread_mutex_unlock(&e->mu);
    }
    return st;
}

static kv_status fe_rename(kv_env *env, const char *from, const char *to, kv_err *err)
{
    fault_env *e = (fault_env *)env;
    kv_status st;
    ftrack *t, *old;
    char *backup = NULL;
    int fail = check(e, KV_FAULT_WRITE, to);
    if (fail)
        return kv_seterr(err, kv_status_from_errno(fail), fail,
                         "could not rename \"%s\" (injected)", from);
    pthread_mutex_lock(&e->mu);
    /* A durable file being replaced must survive a crash before the
     * directory is synced: keep it aside until then. */
    old = track(e, to, 0);
    if (strcmp(from, to) && e->inner->exists(e->inner, to) && !(old && old->created_unsynced)) {
        size_t n = strlen(to) + 32;
        static unsigned long seq;
        backup = malloc(n);
        snprintf(backup, n, "%s.fault-backup-%lu", to, ++seq);
        if (e->inner->rename(e->inner, to, backup, err) != KV_OK) {
            pthread_mutex_unlock(&e->mu);
            free(backup);
            return err ? err->code : KV_IO;
        }
    }
    st = e->inner->rename(e->inner, from, to, err);
    if (st != KV_OK) {
        if (backup) e->inner->rename(e->inner, backup, to, NULL);
        pthread_mutex_unlock(&e->mu);
        free(backup);
        return st;
    }
    if (strcmp(from, to)) {
        char *old_backup = old ? old->backup : NULL;
        if (old) old->backup = NULL;
        untrack(e, to);
        t = track(e, from, 1);
        free(t->path);
        t->path = strdup(to);
        if (!t->orig) {
            t->orig = strdup(from);
            t->orig_durable = !t->created_unsynced;
        }
        t->created_unsynced = 1; /* the new name is durable only after sync_dir */
        if (backup) {
            free(t->backup);
            t->backup = backup;
            if (old_backup) {
                e->inner->remove(e->inner, old_backup, NULL);
                free(old_backup);
            }
        } else
            t->backup = old_backup;
    }
    pthread_mutex_unlock(&e->mu);
    return KV_OK;
}

static kv_status fe_mkdirs(kv_env *env, const char *path, kv_err *err)
{
    fault_env *e = (fault_env *)env;
    return e->inner->mkdirs(e->inner, path, err);
}

static kv_status fe_sync_dir(kv_env *env, const char *path, kv_err *err)
{
    fault_env *e = (fault_env *)env;
    size_t n = strlen(path);
    kv_status st;
    int fail = check(e, KV_FAULT_SYNC, path);
    if (fail)
        return kv_seterr(err, kv_status_from_errno(fail), fail,
                         "could not fsync directory \"%s\" (injected)", path);
    st = e->inner->sync_dir(e->inner, path, err);
    if (st != KV_OK) return st;
    pthread_mutex_lock(&e->mu);
    for (ftrack *t = e->files; t; t = t->next)
        if (!strncmp(t->path, path, n) && t->path[n] == '/' && !strchr(t->path + n + 1, '/')) {
            t->created_unsynced = 0;
            if (t->backup) e->inner->remove(e->inner, t->backup, NULL);
            free(t->backup);
            free(t->orig);
            t->backup = t->orig = NULL;
        }
    pthread_mutex_unlock(&e->mu);
    return KV_OK;
}

static kv_status fe_list_dir(kv_env *env, const char *path, kv_dir_cb cb, void *ctx,
                             kv_err *err)
{
    fault_env *e = (fault_env *)env;
    return e->inner->list_dir(e->inner, path, cb, ctx, err);
}

static int fe_exists(kv_env *env, const char *path)
{
    fault_env *e = (fault_env *)env;
    return e->inner->exists(e->inner, path);
}

static kv_status fe_lock(kv_env *env, const char *path, int exclusive, kv_file **out,
                         pid_t *holder, kv_err *err)
{
    fault_env *e = (fault_env *)env;
    return e->inner->lock(e->inner, path, exclusive, out, holder, err);
}

static void fe_unlock(kv_file *lock)
{
    if (lock) lock->env->unlock(lock);
}

static void fe_advise(const uint8_t *addr, uint64_t size, int sequential)
{
    kv_env_posix()->advise(addr, size, sequential);
}

static int fe_resident(const uint8_t *addr)
{
    return kv_env_posix()->resident(addr);
}

static uint64_t fe_now(kv_env *env)
{
    fault_env *e = (fault_env *)env;
    return e->inner->now_micros(e->inner);
}

static uint64_t fe_unix(kv_env *env)
{
    fault_env *e = (fault_env *)env;
    return e->inner->unix_seconds(e->inner);
}

kv_env *kv_env_fault_new(kv_env *inner)
{
    fault_env *e = calloc(1, sizeof *e);
    static const kv_env proto = {
        "fault",   fe_open,   fe_close,  fe_pread,    fe_pwritev,  fe_sync,   fe_truncate,
        fe_size,   fe_map,    fe_unmap,  fe_advise,   fe_resident, fe_remove,   fe_rename, fe_mkdirs,
        fe_sync_dir, fe_list_dir, fe_exists, fe_lock, fe_unlock, fe_now, fe_unix,
        /* no preallocation or queued writes: every byte passes through
         * fe_pwritev, where faults and crashes are decided */
        NULL, NULL, NULL, NULL, NULL,
    };
    if (!e) return NULL;
    e->base = proto;
    e->inner = inner ? inner : kv_env_posix();
    pthread_mutex_init(&e->mu, NULL);
    for (int i = 0; i < KV_FAULT_NOPS; i++) e->after[i] = -1;
    return &e->base;
}

void kv_env_fault_free(kv_env *env)
{
    fault_env *e = (fault_env *)env;
    ftrack *t, *n;
    if (!e) return;
    for (t = e->files; t; t = n) {
        n = t->next;
        ftrack_free(t);
    }
    for (int i = 0; i < KV_FAULT_NOPS; i++) free(e->substr[i]);
    pthread_mutex_destroy(&e->mu);
    free(e);
}

void kv_env_fault_set(kv_env *env, kv_fault_op op, long after, int err_no, const char *substr)
{
    fault_env *e = (fault_env *)env;
    pthread_mutex_lock(&e->mu);
    e->after[op] = after;
    e->err_no[op] = err_no ? err_no : EIO;
    free(e->substr[op]);
    e->substr[op] = substr ? strdup(substr) : NULL;
    pthread_mutex_unlock(&e->mu);
}

long kv_env_fault_failures(kv_env *env, kv_fault_op op)
{
    fault_env *e = (fault_env *)env;
    long n;
    pthread_mutex_lock(&e->mu);
    n = e->failures[op];
    pthread_mutex_unlock(&e->mu);
    return n;
}

void kv_env_fault_power_cut(kv_env *env)
{
    fault_env *e = (fault_env *)env;
    pthread_mutex_lock(&e->mu);
    e->power_cut = 1;
    pthread_mutex_unlock(&e->mu);
}

kv_status kv_env_fault_drop_unsynced(kv_env *env, kv_err *err)
{
    fault_env *e = (fault_env *)env;
    kv_status st = KV_OK;
    ftrack *t, *next;
    pthread_mutex_lock(&e->mu);
    /* Undo renames whose directory entry never became durable: the file
     * is back under its old name if that name was durable (else it is
     * gone), and a durable file the rename replaced is back under its
     * name.  Untracked files count as fully durable. */
    for (t = e->files; t && st == KV_OK; t = next) {
        char *target;
        next = t->next;
        if (!t->orig) continue;
        target = t->path;
        if (t->orig_durable) {
            st = e->inner->rename(e->inner, target, t->orig, err);
            t->path = t->orig;
            t->created_unsynced = 0;
        } else {
            st = e->inner->remove(e->inner, target, err);
            t->created_unsynced = 0;
            t->size = t->synced = 0;
            t->path = strdup(""); /* target is freed below */
            free(t->orig);
        }
        t->orig = NULL;
        if (st == KV_OK && t->backup) st = e->inner->rename(e->inner, t->backup, target, err);
        free(t->backup);
        t->backup = NULL;
        free(target);
    }
    untrack(e, ""); /* renamed files that never had a durable name */
    for (t = e->files; t && st == KV_OK; t = next) {
        next = t->next;
        if (t->created_unsynced) {
            st = e->inner->remove(e->inner, t->path, err);
            untrack(e, t->path);
        } else if (t->size > t->synced || t->undo) {
            kv_file *f;
            st = e->inner->open(e->inner, t->path, KV_O_RDWR, &f, err);
            if (st == KV_NOT_FOUND) {
                st = KV_OK;
                undo_free(t);
                continue;
            }
            if (st != KV_OK) break;
            for (fundo *u = t->undo; u && st == KV_OK; u = u->next) /* newest first */
                st = kv_env_pwrite(e->inner, f, u->old, u->len, u->off, err);
            undo_free(t);
            if (st == KV_OK) st = e->inner->truncate(f, t->synced, err);
            e->inner->close(f);
            t->size = t->synced;
        }
    }
    e->power_cut = 0;
    for (int i = 0; i < KV_FAULT_NOPS; i++) e->after[i] = -1;
    pthread_mutex_unlock(&e->mu);
    return st;
}
