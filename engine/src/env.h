/*
 * env.h - every operating-system call the engine makes goes through a
 * kv_env (LevelDB's Env idea): files, directories, locks, mappings, clock.
 *
 *   env_posix.c  real files (the default)
 *   env_mem.c    files in process memory (InMemory mode, tests)
 *   env_fault.c  wraps another env: fails chosen calls, and can "crash" by
 *                dropping every byte that was never synced
 *
 * An env is process-local: attached processes each use their own.  Paths
 * are full paths.  Every call returns a kv_status and fills err with the
 * path and errno on failure.
 *
 * Thread safety: all functions may be called concurrently; one kv_file may
 * be used by several threads for pread/pwrite at distinct offsets.
 */
#ifndef KV_ENV_H
#define KV_ENV_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "kv.h"

typedef struct kv_env kv_env;
typedef struct kv_aio kv_aio; /* a queue of asynchronous writes (env-defined) */

/* Every env's file struct starts with this. */
typedef struct kv_file {
    kv_env *env;
    char *path; /* for messages */
} kv_file;

/* open flags */
#define KV_O_READ 0x0      /* read only */
#define KV_O_RDWR 0x1      /* read and write */
#define KV_O_CREATE 0x2    /* create if missing */
#define KV_O_EXCL 0x4      /* fail if it exists */
#define KV_O_TRUNC 0x8     /* truncate to 0 */
#define KV_O_APPEND_ONLY 0x10 /* hint: written sequentially */
/* Bypass the page cache (O_DIRECT) where the env and file system allow it;
 * the open fails with KV_INVALID where they do not.  Every write through
 * such a handle must be KV_DIRECT_ALIGN-aligned in offset, length and
 * memory.  Envs without a page cache ignore the flag. */
#define KV_O_DIRECT 0x20
#define KV_DIRECT_ALIGN 4096u

typedef void (*kv_dir_cb)(void *ctx, const char *name);

/* advise() hints */
#define KV_ADVISE_RANDOM 0
#define KV_ADVISE_SEQUENTIAL 1
#define KV_ADVISE_WILLNEED 2

struct kv_env {
    const char *name;

    kv_status (*open)(kv_env *env, const char *path, int flags, kv_file **f, kv_err *err);
    void (*close)(kv_file *f);
    /* Reads up to n bytes at off; *got < n only at end of file. */
    kv_status (*pread)(kv_file *f, void *buf, size_t n, uint64_t off, size_t *got, kv_err *err);
    /* Writes all iovecs at off (short writes are retried or are errors). */
    kv_status (*pwritev)(kv_file *f, const struct iovec *iov, int iovcnt, uint64_t off,
                         kv_err *err);
    kv_status (*sync)(kv_file *f, kv_err *err); /* data (and size) durable */
    kv_status (*truncate)(kv_file *f, uint64_t size, kv_err *err);
    kv_status (*size)(kv_file *f, uint64_t *size, kv_err *err);
    /* Maps the first size bytes read-only; stays valid after unlink. */
    kv_status (*map)(kv_file *f, uint64_t size, const uint8_t **addr, kv_err *err);
    void (*unmap)(kv_file *f, const uint8_t *addr, uint64_t size);
    /* Advises the kernel about a mapping (KV_ADVISE_*); may be a no-op. */
    void (*advise)(const uint8_t *addr, uint64_t size, int how);
    /* 1 if the page holding addr is in memory (mincore); 1 if unknown. */
    int (*resident)(const uint8_t *addr);

    kv_status (*remove)(kv_env *env, const char *path, kv_err *err);
    kv_status (*rename)(kv_env *env, const char *from, const char *to, kv_err *err);
    kv_status (*mkdirs)(kv_env *env, const char *path, kv_err *err);
    kv_status (*sync_dir)(kv_env *env, const char *path, kv_err *err);
    /* Calls cb for each entry name (not "." or ".."). */
    kv_status (*list_dir)(kv_env *env, const char *path, kv_dir_cb cb, void *ctx, kv_err *err);
    /* 1 if path exists, 0 if not. */
    int (*exists)(kv_env *env, const char *path);

    /* Takes an advisory lock on path (created if needed).  exclusive=0 takes
     * a shared lock.  On conflict returns KV_LOCKED and *holder (if
     * non-NULL) gets the pid recorded by the exclusive holder (0 unknown). */
    kv_status (*lock)(kv_env *env, const char *path, int exclusive, kv_file **lock,
                      pid_t *holder, kv_err *err);
    void (*unlock)(kv_file *lock);

    uint64_t (*now_micros)(kv_env *env); /* monotonic */
    uint64_t (*unix_seconds)(kv_env *env);

    /* Optional (NULL where an env has none; callers then write
     * synchronously through pwritev).
     * prealloc reserves blocks up to len, the size becoming at least len,
     * so that writes below it neither allocate nor extend the file (on
     * ext4 an extending direct write completes synchronously even when
     * queued); the caller truncates to the real size afterwards.
     * aio_new makes a queue of up to depth writes; aio_write queues one
     * through a KV_O_DIRECT handle (buffer, length and offset aligned) and
     * returns without waiting - the buffer stays untouched until its
     * completion; aio_wait waits for one completion and gives its tag and
     * outcome; aio_free waits for whatever is still queued. */
    kv_status (*prealloc)(kv_file *f, uint64_t len, kv_err *err);
    kv_status (*aio_new)(kv_env *env, int depth, kv_aio **out, kv_err *err);
    kv_status (*aio_write)(kv_aio *a, kv_file *f, const void *buf, size_t n, uint64_t off,
                           uint64_t tag, kv_err *err);
    kv_status (*aio_wait)(kv_aio *a, uint64_t *tag, kv_err *err);
    void (*aio_free)(kv_aio *a);
};

/* The process-wide POSIX env (stateless, never freed). */
kv_env *kv_env_posix(void);

/* A new in-memory env; free with kv_env_mem_free() after every db using it
 * is closed. */
kv_env *kv_env_mem_new(void);
void kv_env_mem_free(kv_env *env);

/* Convenience wrappers. */
static inline kv_status kv_env_pwrite(kv_env *env, kv_file *f, const void *buf, size_t n,
                                      uint64_t off, kv_err *err)
{
    struct iovec iov;
    iov.iov_base = (void *)buf;
    iov.iov_len = n;
    return env->pwritev(f, &iov, 1, off, err);
}

/* Reads exactly n bytes at off; KV_CORRUPTION ("truncated") if the file is
 * shorter. */
kv_status kv_env_read_exact(kv_env *env, kv_file *f, const char *path, void *buf, size_t n,
                            uint64_t off, kv_err *err);

/* Reads a whole file into a malloc'd buffer. */
kv_status kv_env_read_file(kv_env *env, const char *path, uint8_t **data, size_t *len,
                           kv_err *err);

/* Writes a whole file: to path.tmp, sync, rename over path, sync dir. */
kv_status kv_env_write_file_atomic(kv_env *env, const char *dir, const char *name,
                                   const void *data, size_t len, kv_err *err);

#endif
