/*
 * env_mem.c - a kv_env whose files live in process memory (InMemory mode
 * and tests).  Files are reference counted, so an unlinked file stays
 * readable through handles that are still open, as on POSIX.  A "mapping"
 * is a pointer to the file's bytes; only files that are no longer written
 * (tables) are mapped.
 */
#include "env.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "err.h"

typedef struct mem_node {
    char *name;
    uint8_t *data;
    uint64_t size, cap;
    int refs;       /* open handles + 1 while linked */
    int linked;
    int lock_mode;  /* 0 none, 1 shared, 2 exclusive */
    int lock_count;
    struct mem_node *next;
} mem_node;

typedef struct mem_env {
    kv_env base;
    pthread_mutex_t mu;
    mem_node *files;
} mem_env;

typedef struct mem_file {
    kv_file base;
    mem_node *node;
    int is_lock, lock_exclusive;
} mem_file;

static mem_node *find(mem_env *e, const char *path)
{
    for (mem_node *n = e->files; n; n = n->next)
        if (n->linked && !strcmp(n->name, path)) return n;
    return NULL;
}

static void node_unref(mem_env *e, mem_node *n)
{
    mem_node **pp;
    if (--n->refs > 0) return;
    for (pp = &e->files; *pp; pp = &(*pp)->next)
        if (*pp == n) {
            *pp = n->next;
            break;
        }
    free(n->name);
    free(n->data);
    free(n);
}

static kv_status me_open(kv_env *env, const char *path, int flags, kv_file **out, kv_err *err)
{
    mem_env *e = (mem_env *)env;
    mem_node *n;
    mem_file *f = calloc(1, sizeof *f);
    if (!f) return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory");
    f->base.path = strdup(path);
    f->base.env = env;
    pthread_mutex_lock(&e->mu);
    n = find(e, path);
    if (n && (flags & KV_O_EXCL)) {
        pthread_mutex_unlock(&e->mu);
        free(f->base.path);
        free(f);
        return kv_seterr(err, KV_IO, EEXIST, "could not create file \"%s\"", path);
    }
    if (!n) {
        if (!(flags & KV_O_CREATE)) {
            pthread_mutex_unlock(&e->mu);
            free(f->base.path);
            free(f);
            return kv_seterr(err, KV_NOT_FOUND, ENOENT, "could not open file \"%s\"", path);
        }
        n = calloc(1, sizeof *n);
        n->name = strdup(path);
        n->refs = 1;
        n->linked = 1;
        n->next = e->files;
        e->files = n;
    }
    if (flags & KV_O_TRUNC) n->size = 0;
    n->refs++;
    f->node = n;
    pthread_mutex_unlock(&e->mu);
    *out = &f->base;
    return KV_OK;
}

static void me_close(kv_file *kf)
{
    mem_file *f = (mem_file *)kf;
    mem_env *e;
    if (!f) return;
    e = (mem_env *)kf->env;
    pthread_mutex_lock(&e->mu);
    node_unref(e, f->node);
    pthread_mutex_unlock(&e->mu);
    free(kf->path);
    free(f);
}

static kv_status me_pread(kv_file *kf, void *buf, size_t n, uint64_t off, size_t *got,
                          kv_err *err)
{
    mem_file *f = (mem_file *)kf;
    mem_env *e = (mem_env *)kf->env;
    (void)err;
    pthread_mutex_lock(&e->mu);
    if (off >= f->node->size) *got = 0;
    else {
        uint64_t avail = f->node->size - off;
        *got = n < avail ? n : (size_t)avail;
        memcpy(buf, f->node->data + off, *got);
    }
    pthread_mutex_unlock(&e->mu);
    return KV_OK;
}

static kv_status me_pwritev(kv_file *kf, const struct iovec *iov, int iovcnt, uint64_t off,
                            kv_err *err)
{
    mem_file *f = (mem_file *)kf;
    mem_env *e = (mem_env *)kf->env;
    mem_node *n = f->node;
    uint64_t total = 0, end;
    for (int i = 0; i < iovcnt; i++) total += iov[i].iov_len;
    if (total == 0) return KV_OK; /* as pwrite: nothing written, size unchanged */
    pthread_mutex_lock(&e->mu);
    end = off + total;
    if (end > n->cap) {
        uint64_t cap = n->cap ? n->cap : 4096;
        uint8_t *d;
        while (cap < end) cap *= 2;
        d = realloc(n->data, cap);
        if (!d) {
            pthread_mutex_unlock(&e->mu);
            return kv_seterr(err, KV_NO_SPACE, ENOMEM, "in-memory file \"%s\" cannot grow",
                             kf->path);
        }
        n->data = d;
        n->cap = cap;
    }
    if (off > n->size) memset(n->data + n->size, 0, off - n->size);
    for (int i = 0; i < iovcnt; i++) {
        memcpy(n->data + off, iov[i].iov_base, iov[i].iov_len);
        off += iov[i].iov_len;
    }
    if (end > n->size) n->size = end;
    pthread_mutex_unlock(&e->mu);
    return KV_OK;
}

static kv_status me_sync(kv_file *kf, kv_err *err)
{
    (void)kf;
    (void)err;
    return KV_OK;
}

static kv_status me_truncate(kv_file *kf, uint64_t size, kv_err *err)
{
    mem_file *f = (mem_file *)kf;
    mem_env *e = (mem_env *)kf->env;
    kv_status st = KV_OK;
    pthread_mutex_lock(&e->mu);
    if (size <= f->node->size) f->node->size = size;
    else {
        pthread_mutex_unlock(&e->mu);
        {
            uint8_t zero = 0;
            st = kv_env_pwrite(kf->env, kf, &zero, 1, size - 1, err);
        }
        return st;
    }
    pthread_mutex_unlock(&e->mu);
    return st;
}

static kv_status me_size(kv_file *kf, uint64_t *size, kv_err *err)
{
    mem_env *e = (mem_env *)kf->env;
    (void)err;
    pthread_mutex_lock(&e->mu);
    *size = ((mem_file *)kf)->node->size;
    pthread_mutex_unlock(&e->mu);
    return KV_OK;
}

static kv_status me_map(kv_file *kf, uint64_t size, const uint8_t **addr, kv_err *err)
{
    mem_file *f = (mem_file *)kf;
    mem_env *e = (mem_env *)kf->env;
    pthread_mutex_lock(&e->mu);
    if (size > f->node->size) {
        pthread_mutex_unlock(&e->mu);
        return kv_seterr(err, KV_IO, EINVAL, "cannot map %llu bytes of \"%s\"",
                         (unsigned long long)size, kf->path);
    }
    f->node->refs++; /* the mapping keeps the bytes alive */
    *addr = f->node->data;
    pthread_mutex_unlock(&e->mu);
    return KV_OK;
}

static void me_unmap(kv_file *kf, const uint8_t *addr, uint64_t size)
{
    mem_env *e = (mem_env *)kf->env;
    (void)addr;
    (void)size;
    pthread_mutex_lock(&e->mu);
    node_unref(e, ((mem_file *)kf)->node);
    pthread_mutex_unlock(&e->mu);
}

static void me_advise(const uint8_t *addr, uint64_t size, int sequential)
{
    (void)addr;
    (void)size;
    (void)sequential;
}

static int me_resident(const uint8_t *addr)
{
    (void)addr;
    return 1;
}

static kv_status me_remove(kv_env *env, const char *path, kv_err *err)
{
    mem_env *e = (mem_env *)env;
    mem_node *n;
    (void)err;
    pthread_mutex_lock(&e->mu);
    n = find(e, path);
    if (n) {
        n->linked = 0;
        node_unref(e, n);
    }
    pthread_mutex_unlock(&e->mu);
    return KV_OK;
}

static kv_status me_rename(kv_env *env, const char *from, const char *to, kv_err *err)
{
    mem_env *e = (mem_env *)env;
    mem_node *n, *old;
    pthread_mutex_lock(&e->mu);
    n = find(e, from);
    if (!n) {
        pthread_mutex_unlock(&e->mu);
        return kv_seterr(err, KV_IO, ENOENT, "could not rename \"%s\"", from);
    }
    old = find(e, to);
    if (old == n) { /* rename(a, a) is a no-op */
        pthread_mutex_unlock(&e->mu);
        return KV_OK;
    }
    if (old) {
        old->linked = 0;
        node_unref(e, old);
    }
    free(n->name);
    n->name = strdup(to);
    pthread_mutex_unlock(&e->mu);
    return KV_OK;
}

static kv_status me_nop_dir(kv_env *env, const char *path, kv_err *err)
{
    (void)env;
    (void)path;
    (void)err;
    return KV_OK;
}

static kv_status me_list_dir(kv_env *env, const char *path, kv_dir_cb cb, void *ctx,
                             kv_err *err)
{
    mem_env *e = (mem_env *)env;
    size_t plen = strlen(path);
    char **names = NULL;
    size_t n = 0, cap = 0;
    (void)err;
    pthread_mutex_lock(&e->mu);
    for (mem_node *f = e->files; f; f = f->next) {
        if (!f->linked || strncmp(f->name, path, plen) || f->name[plen] != '/') continue;
        if (strchr(f->name + plen + 1, '/')) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            names = realloc(names, cap * sizeof *names);
        }
        names[n++] = strdup(f->name + plen + 1);
    }
    pthread_mutex_unlock(&e->mu);
    for (size_t i = 0; i < n; i++) {
        cb(ctx, names[i]);
        free(names[i]);
    }
    free(names);
    return KV_OK;
}

static int me_exists(kv_env *env, const char *path)
{
    mem_env *e = (mem_env *)env;
    int r;
    pthread_mutex_lock(&e->mu);
    r = find(e, path) != NULL;
    pthread_mutex_unlock(&e->mu);
    return r;
}

static kv_status me_lock(kv_env *env, const char *path, int exclusive, kv_file **out,
                         pid_t *holder, kv_err *err)
{
    mem_env *e = (mem_env *)env;
    kv_status st = me_open(env, path, KV_O_RDWR | KV_O_CREATE, out, err);
    mem_node *n;
    if (st != KV_OK) return st;
    n = ((mem_file *)*out)->node;
    pthread_mutex_lock(&e->mu);
    if (n->lock_mode == 2 || (exclusive && n->lock_mode == 1)) {
        pthread_mutex_unlock(&e->mu);
        me_close(*out);
        *out = NULL;
        if (holder) *holder = 0;
        return kv_seterr(err, KV_LOCKED, 0, "lock file \"%s\" is held by another handle",
                         path);
    }
    n->lock_mode = exclusive ? 2 : 1;
    n->lock_count++;
    ((mem_file *)*out)->is_lock = 1;
    pthread_mutex_unlock(&e->mu);
    return KV_OK;
}

static void me_unlock(kv_file *lock)
{
    mem_env *e;
    mem_node *n;
    if (!lock) return;
    e = (mem_env *)lock->env;
    n = ((mem_file *)lock)->node;
    pthread_mutex_lock(&e->mu);
    if (--n->lock_count == 0) n->lock_mode = 0;
    pthread_mutex_unlock(&e->mu);
    me_close(lock);
}

static uint64_t me_now_micros(kv_env *env)
{
    return kv_env_posix()->now_micros(env);
}

static uint64_t me_unix_seconds(kv_env *env)
{
    return kv_env_posix()->unix_seconds(env);
}

kv_env *kv_env_mem_new(void)
{
    mem_env *e = calloc(1, sizeof *e);
    static const kv_env proto = {
        "mem",      me_open,    me_close,   me_pread,   me_pwritev,  me_sync,
        me_truncate, me_size,   me_map,     me_unmap,   me_advise,   me_resident, me_remove,
        me_rename,  me_nop_dir, me_nop_dir, me_list_dir, me_exists,  me_lock,
        me_unlock,  me_now_micros, me_unix_seconds,
        NULL,       NULL,       NULL,       NULL,        NULL, /* writes are synchronous */
    };
    if (!e) return NULL;
    e->base = proto;
    pthread_mutex_init(&e->mu, NULL);
    return &e->base;
}

void kv_env_mem_free(kv_env *env)
{
    mem_env *e = (mem_env *)env;
    mem_node *n, *next;
    if (!e) return;
    for (n = e->files; n; n = next) {
        next = n->next;
        free(n->name);
        free(n->data);
        free(n);
    }
    pthread_mutex_destroy(&e->mu);
    free(e);
}
