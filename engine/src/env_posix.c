/*
 * env_posix.c - the real-file kv_env (see env.h): open/pread/pwritev with
 * EINTR and short-write handling, fdatasync, mmap, flock-based directory
 * locks that record the holder's pid, and queued direct writes through
 * the kernel's native AIO (io_submit; no library needed).
 */
#include "env.h"

#include <dirent.h>
#include <linux/aio_abi.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "err.h"

typedef struct posix_file {
    kv_file base;
    int fd;
} posix_file;

static kv_status px_open(kv_env *env, const char *path, int flags, kv_file **out, kv_err *err)
{
    int oflags = (flags & KV_O_RDWR) ? O_RDWR : O_RDONLY;
    posix_file *f;
    int fd;

    if (flags & KV_O_CREATE) oflags |= O_CREAT;
    if (flags & KV_O_EXCL) oflags |= O_EXCL;
    if (flags & KV_O_TRUNC) oflags |= O_TRUNC;
    if (flags & KV_O_DIRECT) oflags |= O_DIRECT;
    oflags |= O_CLOEXEC;
    do {
        fd = open(path, oflags, 0600);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0 && errno == EINVAL && (flags & KV_O_DIRECT))
        return kv_seterr(err, KV_INVALID, errno,
                         "the file system of \"%s\" does not allow direct I/O", path);
    if (fd < 0)
        return kv_seterr(err, errno == ENOENT ? KV_NOT_FOUND : kv_status_from_errno(errno), errno,
                         "could not open file \"%s\"", path);
    f = calloc(1, sizeof *f);
    if (f) f->base.path = strdup(path);
    if (!f || !f->base.path) {
        close(fd);
        if (f) free(f);
        return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory opening \"%s\"", path);
    }
    f->base.env = env;
    f->fd = fd;
    *out = &f->base;
    return KV_OK;
}

static void px_close(kv_file *kf)
{
    posix_file *f = (posix_file *)kf;
    if (!f) return;
    close(f->fd);
    free(f->base.path);
    free(f);
}

static kv_status px_pread(kv_file *kf, void *buf, size_t n, uint64_t off, size_t *got,
                          kv_err *err)
{
    posix_file *f = (posix_file *)kf;
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(f->fd, (char *)buf + done, n - done, (off_t)(off + done));
        if (r < 0) {
            if (errno == EINTR) continue;
            return kv_seterr(err, KV_IO, errno, "could not read file \"%s\" at offset %llu",
                             kf->path, (unsigned long long)(off + done));
        }
        if (r == 0) break;
        done += (size_t)r;
    }
    *got = done;
    return KV_OK;
}

static kv_status px_pwritev(kv_file *kf, const struct iovec *iov_in, int iovcnt, uint64_t off,
                            kv_err *err)
{
    posix_file *f = (posix_file *)kf;
    struct iovec local[64];
    struct iovec *iov = local;
    int cnt = iovcnt, i;
    kv_status st = KV_OK;

    if (iovcnt > 64) {
        /* Split: write the iovecs in chunks of 64. */
        uint64_t o = off;
        for (i = 0; i < iovcnt && st == KV_OK; i += 64) {
            int c = iovcnt - i < 64 ? iovcnt - i : 64, j;
            st = px_pwritev(kf, iov_in + i, c, o, err);
            for (j = 0; j < c; j++) o += iov_in[i + j].iov_len;
        }
        return st;
    }
    memcpy(local, iov_in, sizeof(struct iovec) * (size_t)iovcnt);
    while (cnt > 0) {
        ssize_t w = pwritev(f->fd, iov, cnt, (off_t)off);
        if (w < 0) {
            if (errno == EINTR) continue;
            return kv_seterr(err, kv_status_from_errno(errno), errno,
                             "could not write file \"%s\" at offset %llu", kf->path,
                             (unsigned long long)off);
        }
        off += (uint64_t)w;
        while (cnt > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return KV_OK;
}

static kv_status px_sync(kv_file *kf, kv_err *err)
{
    posix_file *f = (posix_file *)kf;
    if (fdatasync(f->fd) != 0)
        return kv_seterr(err, kv_status_from_errno(errno), errno, "could not fsync file \"%s\"",
                         kf->path);
    return KV_OK;
}

static kv_status px_truncate(kv_file *kf, uint64_t size, kv_err *err)
{
    posix_file *f = (posix_file *)kf;
    if (ftruncate(f->fd, (off_t)size) != 0)
        return kv_seterr(err, kv_status_from_errno(errno), errno,
                         "could not truncate file \"%s\" to %llu bytes", kf->path,
                         (unsigned long long)size);
    return KV_OK;
}

static kv_status px_size(kv_file *kf, uint64_t *size, kv_err *err)
{
    posix_file *f = (posix_file *)kf;
    struct stat st;
    if (fstat(f->fd, &st) != 0)
        return kv_seterr(err, KV_IO, errno, "could not stat file \"%s\"", kf->path);
    *size = (uint64_t)st.st_size;
    return KV_OK;
}

static kv_status px_map(kv_file *kf, uint64_t size, const uint8_t **addr, kv_err *err)
{
    posix_file *f = (posix_file *)kf;
    void *p;
    if (size == 0) {
        *addr = NULL;
        return KV_OK;
    }
    p = mmap(NULL, size, PROT_READ, MAP_SHARED, f->fd, 0);
    if (p == MAP_FAILED)
        return kv_seterr(err, errno == ENOMEM ? KV_NO_MEMORY : KV_IO, errno,
                         "could not map file \"%s\"", kf->path);
    *addr = p;
    return KV_OK;
}

static void px_unmap(kv_file *kf, const uint8_t *addr, uint64_t size)
{
    (void)kf;
    if (addr && size) munmap((void *)addr, size);
}

static void px_advise(const uint8_t *addr, uint64_t size, int how)
{
    int advice = how == KV_ADVISE_WILLNEED     ? MADV_WILLNEED
                 : how == KV_ADVISE_SEQUENTIAL ? MADV_SEQUENTIAL
                                               : MADV_RANDOM;
    /* a mapping may start mid-page only for prefetch ranges, rounded by
     * the caller; madvise needs a page-aligned start */
    if (addr && size) madvise((void *)addr, size, advice);
}

static int px_resident(const uint8_t *addr)
{
    unsigned char v = 1;
    uintptr_t page = (uintptr_t)addr & ~(uintptr_t)4095;
    if (mincore((void *)page, 4096, &v) != 0) return 1;
    return v & 1;
}

static kv_status px_remove(kv_env *env, const char *path, kv_err *err)
{
    (void)env;
    if (unlink(path) != 0 && errno != ENOENT)
        return kv_seterr(err, KV_IO, errno, "could not remove file \"%s\"", path);
    return KV_OK;
}

static kv_status px_rename(kv_env *env, const char *from, const char *to, kv_err *err)
{
    (void)env;
    if (rename(from, to) != 0)
        return kv_seterr(err, KV_IO, errno, "could not rename \"%s\" to \"%s\"", from, to);
    return KV_OK;
}

static kv_status px_mkdirs(kv_env *env, const char *path, kv_err *err)
{
    char buf[KV_PATH_MAX + 1];
    size_t n = strlen(path);
    (void)env;
    if (n == 0 || n > KV_PATH_MAX)
        return kv_seterr(err, KV_INVALID, 0, "invalid directory path \"%s\"", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, 0700) != 0 && errno != EEXIST)
                return kv_seterr(err, KV_IO, errno, "could not create directory \"%s\"", buf);
            buf[i] = c;
        }
    }
    return KV_OK;
}

static kv_status px_sync_dir(kv_env *env, const char *path, kv_err *err)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    (void)env;
    if (fd < 0) return kv_seterr(err, KV_IO, errno, "could not open directory \"%s\"", path);
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        return kv_seterr(err, kv_status_from_errno(e), e, "could not fsync directory \"%s\"",
                         path);
    }
    close(fd);
    return KV_OK;
}

static kv_status px_list_dir(kv_env *env, const char *path, kv_dir_cb cb, void *ctx,
                             kv_err *err)
{
    DIR *d = opendir(path);
    struct dirent *de;
    (void)env;
    if (!d) return kv_seterr(err, KV_IO, errno, "could not open directory \"%s\"", path);
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        cb(ctx, de->d_name);
    }
    closedir(d);
    return KV_OK;
}

static int px_exists(kv_env *env, const char *path)
{
    struct stat st;
    (void)env;
    return stat(path, &st) == 0;
}

static kv_status px_lock(kv_env *env, const char *path, int exclusive, kv_file **out,
                         pid_t *holder, kv_err *err)
{
    posix_file *f;
    kv_status st = px_open(env, path, KV_O_RDWR | KV_O_CREATE, out, err);
    if (st != KV_OK) return st;
    f = (posix_file *)*out;
    if (flock(f->fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) != 0) {
        int e = errno;
        char buf[32] = {0};
        long pid = 0;
        if (pread(f->fd, buf, sizeof buf - 1, 0) > 0) pid = strtol(buf, NULL, 10);
        px_close(*out);
        *out = NULL;
        if (holder) *holder = (pid_t)pid;
        if (e == EWOULDBLOCK)
            return kv_seterr(err, KV_LOCKED, 0,
                             "lock file \"%s\" is held by another process (pid %ld)", path, pid);
        return kv_seterr(err, KV_IO, e, "could not lock \"%s\"", path);
    }
    if (exclusive) {
        char buf[32];
        int n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
        if (ftruncate(f->fd, 0) != 0 || pwrite(f->fd, buf, (size_t)n, 0) != n) {
            int e = errno;
            px_close(*out);
            *out = NULL;
            return kv_seterr(err, KV_IO, e, "could not write pid to \"%s\"", path);
        }
    }
    return KV_OK;
}

static void px_unlock(kv_file *lock)
{
    int fd;
    if (!lock) return;
    fd = ((posix_file *)lock)->fd;
    /* an exclusive holder wrote its pid; take it out so a later conflict
     * does not name a process that is gone (shared holders never wrote) */
    if (flock(fd, LOCK_EX | LOCK_NB) == 0 && ftruncate(fd, 0) != 0) {
        /* best effort: a stale pid only makes a message less precise */
    }
    flock(fd, LOCK_UN);
    px_close(lock);
}

static uint64_t px_now_micros(kv_env *env)
{
    struct timespec ts;
    (void)env;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t px_unix_seconds(kv_env *env)
{
    (void)env;
    return (uint64_t)time(NULL);
}

/* ---- preallocation and queued writes ---- */

static kv_status px_prealloc(kv_file *kf, uint64_t len, kv_err *err)
{
    posix_file *f = (posix_file *)kf;
    int r;
    do {
        r = fallocate(f->fd, 0, 0, (off_t)len);
    } while (r != 0 && errno == EINTR);
    if (r != 0)
        return kv_seterr(err, errno == EOPNOTSUPP ? KV_INVALID : kv_status_from_errno(errno), errno,
                         "could not reserve %llu bytes for file \"%s\"", (unsigned long long)len,
                         kf->path);
    return KV_OK;
}

struct kv_aio {
    aio_context_t ctx;
    int depth, queued;
    struct {
        size_t n;
        char path[256];
    } *slot; /* by tag (tags are < depth): what the completion's message names */
};

static kv_status px_aio_new(kv_env *env, int depth, kv_aio **out, kv_err *err)
{
    kv_aio *a = calloc(1, sizeof *a);
    (void)env;
    if (!a || !(a->slot = calloc((size_t)depth, sizeof *a->slot))) {
        free(a);
        return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory making a write queue");
    }
    if (syscall(SYS_io_setup, depth, &a->ctx) != 0) {
        int e = errno;
        free(a->slot);
        free(a);
        return kv_seterr(err, KV_INVALID, e, "asynchronous writes are not available");
    }
    a->depth = depth;
    *out = a;
    return KV_OK;
}

static kv_status px_aio_write(kv_aio *a, kv_file *kf, const void *buf, size_t n, uint64_t off,
                              uint64_t tag, kv_err *err)
{
    posix_file *f = (posix_file *)kf;
    struct iocb cb, *cbs[1];
    long r;
    if (tag >= (uint64_t)a->depth || a->queued == a->depth)
        return kv_seterr(err, KV_INVALID, 0, "write queue: tag %llu or depth exceeded",
                         (unsigned long long)tag);
    memset(&cb, 0, sizeof cb);
    cb.aio_fildes = (uint32_t)f->fd;
    cb.aio_lio_opcode = IOCB_CMD_PWRITE;
    cb.aio_buf = (uint64_t)(uintptr_t)buf;
    cb.aio_nbytes = n;
    cb.aio_offset = (int64_t)off;
    cb.aio_data = tag;
    cbs[0] = &cb;
    do {
        r = syscall(SYS_io_submit, a->ctx, 1L, cbs);
    } while (r < 0 && (errno == EINTR || errno == EAGAIN));
    if (r != 1)
        return kv_seterr(err, r < 0 ? kv_status_from_errno(errno) : KV_IO, r < 0 ? errno : 0,
                         "could not queue a write of file \"%s\" at offset %llu", kf->path,
                         (unsigned long long)off);
    a->slot[tag].n = n;
    snprintf(a->slot[tag].path, sizeof a->slot[tag].path, "%s", kf->path);
    a->queued++;
    return KV_OK;
}

static kv_status px_aio_wait(kv_aio *a, uint64_t *tag, kv_err *err)
{
    struct io_event ev;
    long r;
    if (!a->queued) return kv_seterr(err, KV_INVALID, 0, "write queue: nothing queued");
    do {
        r = syscall(SYS_io_getevents, a->ctx, 1L, 1L, &ev, NULL);
    } while (r < 0 && errno == EINTR);
    if (r != 1) return kv_seterr(err, KV_IO, errno, "could not wait for a queued write");
    a->queued--;
    *tag = ev.data;
    if (ev.res < 0)
        return kv_seterr(err, kv_status_from_errno((int)-ev.res), (int)-ev.res,
                         "could not write file \"%s\" (queued)", a->slot[ev.data].path);
    if ((uint64_t)ev.res != a->slot[ev.data].n)
        return kv_seterr(err, KV_IO, 0, "short write of file \"%s\" (queued): %lld of %zu bytes",
                         a->slot[ev.data].path, (long long)ev.res, a->slot[ev.data].n);
    return KV_OK;
}

static void px_aio_free(kv_aio *a)
{
    if (!a) return;
    syscall(SYS_io_destroy, a->ctx); /* waits for what is still queued */
    free(a->slot);
    free(a);
}

static kv_env posix_env = {
    "posix",     px_open,   px_close,  px_pread,  px_pwritev,  px_sync,     px_truncate,
    px_size,     px_map,    px_unmap,  px_advise, px_resident, px_remove,   px_rename,   px_mkdirs,
    px_sync_dir, px_list_dir, px_exists, px_lock, px_unlock, px_now_micros, px_unix_seconds,
    px_prealloc, px_aio_new, px_aio_write, px_aio_wait, px_aio_free,
};

kv_env *kv_env_posix(void)
{
    return &posix_env;
}

/* ---- helpers shared by every env (declared in env.h) ---- */

kv_status kv_env_read_exact(kv_env *env, kv_file *f, const char *path, void *buf, size_t n,
                            uint64_t off, kv_err *err)
{
    size_t got = 0;
    kv_status st = env->pread(f, buf, n, off, &got, err);
    if (st != KV_OK) return st;
    if (got != n)
        return kv_seterr(err, KV_CORRUPTION, 0,
                         "file \"%s\" is truncated: wanted %zu bytes at offset %llu, got %zu",
                         path, n, (unsigned long long)off, got);
    return KV_OK;
}

kv_status kv_env_read_file(kv_env *env, const char *path, uint8_t **data, size_t *len,
                           kv_err *err)
{
    kv_file *f;
    uint64_t size;
    uint8_t *buf;
    kv_status st = env->open(env, path, KV_O_READ, &f, err);
    if (st != KV_OK) return st;
    st = env->size(f, &size, err);
    if (st == KV_OK) {
        buf = malloc(size ? size : 1);
        if (!buf) st = kv_seterr(err, KV_NO_MEMORY, 0, "out of memory reading \"%s\"", path);
        else {
            st = kv_env_read_exact(env, f, path, buf, size, 0, err);
            if (st == KV_OK) {
                *data = buf;
                *len = size;
            } else
                free(buf);
        }
    }
    env->close(f);
    return st;
}

kv_status kv_env_write_file_atomic(kv_env *env, const char *dir, const char *name,
                                   const void *data, size_t len, kv_err *err)
{
    char tmp[KV_PATH_MAX + 64], path[KV_PATH_MAX + 64];
    kv_file *f;
    kv_status st;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s/%s.tmp", dir, name);
    st = env->open(env, tmp, KV_O_RDWR | KV_O_CREATE | KV_O_TRUNC, &f, err);
    if (st != KV_OK) return st;
    st = kv_env_pwrite(env, f, data, len, 0, err);
    if (st == KV_OK) st = env->sync(f, err);
    env->close(f);
    if (st == KV_OK) st = env->rename(env, tmp, path, err);
    if (st == KV_OK) st = env->sync_dir(env, dir, err);
    if (st != KV_OK) env->remove(env, tmp, NULL);
    return st;
}
