/*
 * test_env.c - unit tests of the kv_env implementations (env.h): the posix
 * env, the mem env and the fault env wrapped around either must behave the
 * same for open/pread/pwritev/truncate/size/map/list_dir/rename/remove/
 * exists/lock (exclusive vs shared, also across processes for posix), and
 * an unlinked file stays readable through an open handle.  The fault env
 * fails the Nth write/sync/open/remove with the chosen errno (KV_IO, or
 * KV_NO_SPACE for ENOSPC/EDQUOT), optionally only on matching paths, and
 * counts failures; kv_env_fault_power_cut + kv_env_fault_drop_unsynced
 * leave files at their last synced size and delete files whose directory
 * was never synced after their creation, as a power loss could.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

#include "env.h"
#include "env_fault.h"

/* ---- envs under test ---- */

enum { ENV_POSIX, ENV_MEM, ENV_FAULT_POSIX, ENV_FAULT_MEM, ENV_KINDS };

static const char *const env_names[ENV_KINDS] = {"posix", "mem", "fault(posix)", "fault(mem)"};

typedef struct tenv {
    int kind;
    kv_env *env, *inner;
    char *dir;
} tenv;

static void tenv_open(tenv *t, int kind)
{
    kv_err err;
    memset(t, 0, sizeof *t);
    t->kind = kind;
    if (kind == ENV_POSIX || kind == ENV_FAULT_POSIX) {
        t->dir = tu_mkdtemp("env");
        t->inner = kv_env_posix();
    } else {
        t->dir = strdup("/memdir");
        t->inner = kv_env_mem_new();
        ck_assert_ptr_nonnull(t->inner);
    }
    t->env = kind >= ENV_FAULT_POSIX ? kv_env_fault_new(t->inner) : t->inner;
    ck_assert_ptr_nonnull(t->env);
    TU_OK(t->env->mkdirs(t->env, t->dir, &err), &err);
}

static void tenv_close(tenv *t)
{
    if (t->env != t->inner) kv_env_fault_free(t->env);
    if (t->kind == ENV_POSIX || t->kind == ENV_FAULT_POSIX) tu_rmdir(t->dir);
    else kv_env_mem_free(t->inner);
    free(t->dir);
}

static char *P(const tenv *t, const char *name)
{
    static char buf[8][4200];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", t->dir, name);
    return buf[k];
}

static kv_file *open_ok(kv_env *env, const char *path, int flags)
{
    kv_file *f = NULL;
    kv_err err;
    TU_OK(env->open(env, path, flags, &f, &err), &err);
    ck_assert_ptr_nonnull(f);
    return f;
}

static void write_ok(kv_env *env, kv_file *f, const void *p, size_t n, uint64_t off)
{
    kv_err err;
    TU_OK(kv_env_pwrite(env, f, p, n, off, &err), &err);
}

static uint64_t size_of(kv_env *env, kv_file *f)
{
    uint64_t sz = UINT64_MAX;
    kv_err err;
    TU_OK(env->size(f, &sz, &err), &err);
    return sz;
}

/* Reads the whole file at path (through a fresh handle). */
static size_t slurp(kv_env *env, const char *path, uint8_t **data)
{
    size_t n = 0;
    kv_err err;
    TU_OK(kv_env_read_file(env, path, data, &n, &err), &err);
    return n;
}

static void expect_content(kv_env *env, const char *path, const void *want, size_t n)
{
    uint8_t *d = NULL;
    size_t got = slurp(env, path, &d);
    ck_assert_msg(got == n, "%s: %zu bytes, want %zu", path, got, n);
    ck_assert_msg(n == 0 || memcmp(d, want, n) == 0, "%s: content differs", path);
    free(d);
}

static void create_file(kv_env *env, const char *path, const void *p, size_t n)
{
    kv_file *f = open_ok(env, path, KV_O_RDWR | KV_O_CREATE | KV_O_TRUNC);
    if (n) write_ok(env, f, p, n, 0);
    env->close(f);
}

typedef struct names {
    char list[32][64];
    int n;
} names;

static void name_cb(void *ctx, const char *name)
{
    names *nm = ctx;
    if (nm->n < 32) snprintf(nm->list[nm->n], sizeof nm->list[0], "%s", name);
    nm->n++;
}

static int has_name(const names *nm, const char *name)
{
    for (int i = 0; i < nm->n && i < 32; i++)
        if (!strcmp(nm->list[i], name)) return 1;
    return 0;
}

/* ---- conformance: every env behaves like POSIX ---- */

START_TEST(test_files)
{
    tenv t;
    kv_env *env;
    kv_file *f;
    kv_err err;
    uint8_t buf[20000], want[20000];
    size_t got;
    tu_rng r;

    tenv_open(&t, _i);
    env = t.env;
    tu_rng_init(&r, tu_seed() ^ (uint64_t)_i);

    /* missing file */
    ck_assert_int_eq(env->exists(env, P(&t, "a")), 0);
    memset(&err, 0, sizeof err);
    f = NULL;
    ck_assert_int_eq(env->open(env, P(&t, "a"), KV_O_READ, &f, &err), KV_NOT_FOUND);
    ck_assert_ptr_null(f);
    ck_assert_msg(strstr(err.msg, P(&t, "a")) != NULL, "%s: message lacks path: %s",
                  env_names[_i], err.msg);
    ck_assert_int_eq(env->open(env, P(&t, "a"), KV_O_RDWR, &f, &err), KV_NOT_FOUND);

    /* create, write, read back, short reads at the end */
    f = open_ok(env, P(&t, "a"), KV_O_RDWR | KV_O_CREATE);
    ck_assert_int_eq(env->exists(env, P(&t, "a")), 1);
    ck_assert_uint_eq(size_of(env, f), 0);
    tu_randbytes(&r, want, sizeof want);
    write_ok(env, f, want, 5000, 0);
    ck_assert_uint_eq(size_of(env, f), 5000);
    TU_OK(env->pread(f, buf, 5000, 0, &got, &err), &err);
    ck_assert_uint_eq(got, 5000);
    ck_assert(memcmp(buf, want, 5000) == 0);
    TU_OK(env->pread(f, buf, 100, 4950, &got, &err), &err);
    ck_assert_uint_eq(got, 50);
    ck_assert(memcmp(buf, want + 4950, 50) == 0);
    TU_OK(env->pread(f, buf, 100, 5000, &got, &err), &err);
    ck_assert_uint_eq(got, 0);
    TU_OK(env->pread(f, buf, 100, 1u << 30, &got, &err), &err);
    ck_assert_uint_eq(got, 0);
    TU_OK(env->sync(f, &err), &err);

    /* pwritev with many iovecs (more than one posix batch of 64), some
     * empty, past the end: the gap reads as zeros */
    {
        struct iovec iov[150];
        size_t off = 0;
        for (int i = 0; i < 150; i++) {
            size_t n = i % 7 == 0 ? 0 : 1 + tu_randn(&r, 60);
            iov[i].iov_base = want + off;
            iov[i].iov_len = n;
            off += n;
        }
        TU_OK(env->pwritev(f, iov, 150, 8000, &err), &err);
        ck_assert_uint_eq(size_of(env, f), 8000 + off);
        TU_OK(env->pread(f, buf, 8000 + off, 0, &got, &err), &err);
        ck_assert_uint_eq(got, 8000 + off);
        ck_assert(memcmp(buf, want, 5000) == 0);
        for (size_t i = 5000; i < 8000; i++)
            if (buf[i]) ck_abort_msg("%s: gap byte %zu is %u", env_names[_i], i, buf[i]);
        ck_assert(memcmp(buf + 8000, want, off) == 0);
        /* overwrite in the middle */
        write_ok(env, f, "XYZ", 3, 100);
        TU_OK(env->pread(f, buf, 5, 99, &got, &err), &err);
        ck_assert(memcmp(buf, (uint8_t[]){want[99], 'X', 'Y', 'Z', want[103]}, 5) == 0);
    }

    /* truncate: shrink, then grow (the regrown range reads as zeros) */
    TU_OK(env->truncate(f, 500, &err), &err);
    ck_assert_uint_eq(size_of(env, f), 500);
    TU_OK(env->truncate(f, 3000, &err), &err);
    ck_assert_uint_eq(size_of(env, f), 3000);
    TU_OK(env->pread(f, buf, 4000, 0, &got, &err), &err);
    ck_assert_uint_eq(got, 3000);
    ck_assert(memcmp(buf + 104, want + 104, 396) == 0);
    for (size_t i = 500; i < 3000; i++)
        if (buf[i]) ck_abort_msg("%s: regrown byte %zu is %u", env_names[_i], i, buf[i]);
    TU_OK(env->truncate(f, 0, &err), &err);
    ck_assert_uint_eq(size_of(env, f), 0);
    write_ok(env, f, want, 10, 0);
    env->close(f);

    /* EXCL, TRUNC, read-only opens */
    memset(&err, 0, sizeof err);
    f = NULL;
    ck_assert_int_ne(env->open(env, P(&t, "a"), KV_O_RDWR | KV_O_CREATE | KV_O_EXCL, &f, &err),
                     KV_OK);
    ck_assert_ptr_null(f);
    ck_assert_int_eq(err.code, KV_IO);
    ck_assert_int_eq(err.sys_errno, EEXIST);
    f = open_ok(env, P(&t, "b"), KV_O_RDWR | KV_O_CREATE | KV_O_EXCL);
    env->close(f);
    f = open_ok(env, P(&t, "a"), KV_O_READ);
    ck_assert_uint_eq(size_of(env, f), 10);
    TU_OK(env->pread(f, buf, 10, 0, &got, &err), &err);
    ck_assert(got == 10 && memcmp(buf, want, 10) == 0);
    env->close(f);
    f = open_ok(env, P(&t, "a"), KV_O_RDWR | KV_O_TRUNC);
    ck_assert_uint_eq(size_of(env, f), 0);
    env->close(f);

    /* read_exact / read_file / write_file_atomic */
    create_file(env, P(&t, "c"), want, 777);
    f = open_ok(env, P(&t, "c"), KV_O_READ);
    TU_OK(kv_env_read_exact(env, f, P(&t, "c"), buf, 777, 0, &err), &err);
    ck_assert_int_eq(kv_env_read_exact(env, f, P(&t, "c"), buf, 10, 770, &err), KV_CORRUPTION);
    ck_assert_msg(strstr(err.msg, "truncated") && strstr(err.msg, P(&t, "c")), "%s", err.msg);
    env->close(f);
    expect_content(env, P(&t, "c"), want, 777);
    TU_OK(kv_env_write_file_atomic(env, t.dir, "atomic", want, 1234, &err), &err);
    expect_content(env, P(&t, "atomic"), want, 1234);
    ck_assert_int_eq(env->exists(env, P(&t, "atomic.tmp")), 0);
    TU_OK(env->sync_dir(env, t.dir, &err), &err);
    tenv_close(&t);
}
END_TEST

/* Zero-length writes are legal no-ops (also on a new, empty file). */
START_TEST(test_zero_length_writes)
{
    tenv t;
    kv_env *env;
    kv_err err;
    kv_file *f;
    struct iovec iov[2];
    uint8_t byte = 7;

    tenv_open(&t, _i);
    env = t.env;
    f = open_ok(env, P(&t, "z"), KV_O_RDWR | KV_O_CREATE);
    write_ok(env, f, &byte, 0, 0);
    ck_assert_uint_eq(size_of(env, f), 0);
    iov[0].iov_base = &byte;
    iov[0].iov_len = 0;
    iov[1] = iov[0];
    TU_OK(env->pwritev(f, iov, 2, 0, &err), &err);
    TU_OK(env->pwritev(f, iov, 0, 0, &err), &err);
    ck_assert_uint_eq(size_of(env, f), 0);
    env->close(f);
    TU_OK(kv_env_write_file_atomic(env, t.dir, "empty", &byte, 0, &err), &err);
    expect_content(env, P(&t, "empty"), "", 0);
    tenv_close(&t);
}
END_TEST

START_TEST(test_dir_ops)
{
    tenv t;
    kv_env *env;
    kv_err err;
    names nm;

    tenv_open(&t, _i);
    env = t.env;
    create_file(env, P(&t, "one"), "1", 1);
    create_file(env, P(&t, "two"), "22", 2);
    create_file(env, P(&t, "three"), "333", 3);
    memset(&nm, 0, sizeof nm);
    TU_OK(env->list_dir(env, t.dir, name_cb, &nm, &err), &err);
    ck_assert_int_eq(nm.n, 3);
    ck_assert(has_name(&nm, "one") && has_name(&nm, "two") && has_name(&nm, "three"));

    /* rename to a new name */
    TU_OK(env->rename(env, P(&t, "one"), P(&t, "four"), &err), &err);
    ck_assert_int_eq(env->exists(env, P(&t, "one")), 0);
    expect_content(env, P(&t, "four"), "1", 1);
    /* rename over an existing file replaces it */
    TU_OK(env->rename(env, P(&t, "four"), P(&t, "two"), &err), &err);
    ck_assert_int_eq(env->exists(env, P(&t, "four")), 0);
    expect_content(env, P(&t, "two"), "1", 1);
    /* rename of a missing file fails */
    memset(&err, 0, sizeof err);
    ck_assert_int_eq(env->rename(env, P(&t, "nope"), P(&t, "x"), &err), KV_IO);
    ck_assert_int_eq(err.sys_errno, ENOENT);
    ck_assert_int_eq(env->exists(env, P(&t, "x")), 0);

    memset(&nm, 0, sizeof nm);
    TU_OK(env->list_dir(env, t.dir, name_cb, &nm, &err), &err);
    ck_assert_int_eq(nm.n, 2);
    ck_assert(has_name(&nm, "two") && has_name(&nm, "three"));

    /* remove; removing a missing file is not an error */
    TU_OK(env->remove(env, P(&t, "three"), &err), &err);
    ck_assert_int_eq(env->exists(env, P(&t, "three")), 0);
    TU_OK(env->remove(env, P(&t, "three"), &err), &err);
    {
        kv_file *f = NULL;
        ck_assert_int_eq(env->open(env, P(&t, "three"), KV_O_READ, &f, &err), KV_NOT_FOUND);
    }
    memset(&nm, 0, sizeof nm);
    TU_OK(env->list_dir(env, t.dir, name_cb, &nm, &err), &err);
    ck_assert_int_eq(nm.n, 1);
    ck_assert(has_name(&nm, "two"));
    /* a re-created name is a new, empty file */
    create_file(env, P(&t, "three"), NULL, 0);
    expect_content(env, P(&t, "three"), "", 0);
    tenv_close(&t);
}
END_TEST

/* rename(a, a) is a successful no-op on POSIX. */
START_TEST(test_rename_to_itself)
{
    tenv t;
    kv_env *env;
    kv_err err;

    tenv_open(&t, _i);
    env = t.env;
    create_file(env, P(&t, "same"), "abc", 3);
    TU_OK(env->rename(env, P(&t, "same"), P(&t, "same"), &err), &err);
    ck_assert_msg(env->exists(env, P(&t, "same")), "%s: rename(a, a) removed a",
                  env_names[_i]);
    expect_content(env, P(&t, "same"), "abc", 3);
    tenv_close(&t);
}
END_TEST

/* An unlinked (or replaced) file stays readable through its open handle
 * and its mapping; the name is free for a new file. */
START_TEST(test_unlinked_open)
{
    tenv t;
    kv_env *env;
    kv_err err;
    kv_file *f, *g = NULL;
    uint8_t data[10000], buf[10000];
    const uint8_t *map = NULL;
    size_t got;
    tu_rng r;

    tenv_open(&t, _i);
    env = t.env;
    tu_rng_init(&r, tu_seed() ^ 0x0b);
    tu_randbytes(&r, data, sizeof data);
    create_file(env, P(&t, "u"), data, sizeof data);
    f = open_ok(env, P(&t, "u"), KV_O_READ);
    TU_OK(env->map(f, sizeof data, &map, &err), &err);
    ck_assert_ptr_nonnull(map);
    ck_assert(memcmp(map, data, sizeof data) == 0);
    env->advise(map, sizeof data, 1);
    TU_OK(env->remove(env, P(&t, "u"), &err), &err);
    ck_assert_int_eq(env->exists(env, P(&t, "u")), 0);
    /* a new file of the same name */
    create_file(env, P(&t, "u"), "new", 3);
    expect_content(env, P(&t, "u"), "new", 3);
    /* the old handle and mapping still see the old bytes */
    ck_assert_uint_eq(size_of(env, f), sizeof data);
    TU_OK(env->pread(f, buf, sizeof buf, 0, &got, &err), &err);
    ck_assert_uint_eq(got, sizeof data);
    ck_assert(memcmp(buf, data, sizeof data) == 0);
    ck_assert(memcmp(map, data, sizeof data) == 0);
    env->unmap(f, map, sizeof data);
    env->close(f);
    /* a handle opened before the remove reads the old file, too */
    f = open_ok(env, P(&t, "u"), KV_O_RDWR);
    TU_OK(env->remove(env, P(&t, "u"), &err), &err);
    write_ok(env, f, "more", 4, 3);
    ck_assert_uint_eq(size_of(env, f), 7);
    TU_OK(env->pread(f, buf, 10, 0, &got, &err), &err);
    ck_assert(got == 7 && memcmp(buf, "newmore", 7) == 0);
    ck_assert_int_eq(env->exists(env, P(&t, "u")), 0);
    env->close(f);
    (void)g;
    tenv_close(&t);
}
END_TEST

/* Locks: exclusive excludes everything, shared excludes exclusive. */
START_TEST(test_locks)
{
    tenv t;
    kv_env *env;
    kv_err err;
    kv_file *x = NULL, *s1 = NULL, *s2 = NULL, *y = NULL;
    pid_t holder;
    const char *lp;

    tenv_open(&t, _i);
    env = t.env;
    lp = P(&t, "LOCK");
    TU_OK(env->lock(env, lp, 1, &x, NULL, &err), &err);
    ck_assert_ptr_nonnull(x);
    holder = -1;
    memset(&err, 0, sizeof err);
    ck_assert_int_eq(env->lock(env, lp, 1, &y, &holder, &err), KV_LOCKED);
    ck_assert_ptr_null(y);
    ck_assert_int_eq(err.code, KV_LOCKED);
    if (_i == ENV_POSIX || _i == ENV_FAULT_POSIX) {
        char pid[32];
        snprintf(pid, sizeof pid, "%ld", (long)getpid());
        ck_assert_int_eq(holder, getpid());
        ck_assert_msg(strstr(err.msg, pid) != NULL, "message lacks the pid: %s", err.msg);
    } else {
        ck_assert(holder == 0 || holder == getpid());
    }
    ck_assert_int_eq(env->lock(env, lp, 0, &y, NULL, &err), KV_LOCKED);
    env->unlock(x);

    TU_OK(env->lock(env, lp, 0, &s1, NULL, &err), &err);
    TU_OK(env->lock(env, lp, 0, &s2, NULL, &err), &err);
    ck_assert_int_eq(env->lock(env, lp, 1, &y, NULL, &err), KV_LOCKED);
    env->unlock(s1);
    ck_assert_int_eq(env->lock(env, lp, 1, &y, NULL, &err), KV_LOCKED);
    env->unlock(s2);
    TU_OK(env->lock(env, lp, 1, &x, NULL, &err), &err);
    env->unlock(x);
    env->unlock(NULL);
    /* other lock files are independent */
    TU_OK(env->lock(env, lp, 1, &x, NULL, &err), &err);
    TU_OK(env->lock(env, P(&t, "LOCK2"), 1, &y, NULL, &err), &err);
    env->unlock(y);
    env->unlock(x);
    tenv_close(&t);
}
END_TEST

/* posix locks across processes, with the holder's pid. */
START_TEST(test_locks_processes)
{
    tenv t;
    kv_env *env;
    kv_err err;
    kv_file *x = NULL;
    pid_t pid;
    int status;
    int up[2], down[2]; /* child -> parent, parent -> child */
    char c;

    tenv_open(&t, ENV_POSIX);
    env = t.env;
    ck_assert_int_eq(pipe(up), 0);
    ck_assert_int_eq(pipe(down), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        /* child: hold the exclusive lock until the parent has looked */
        kv_file *l = NULL;
        if (env->lock(env, P(&t, "LOCK"), 1, &l, NULL, NULL) != KV_OK) _exit(1);
        if (write(up[1], "L", 1) != 1) _exit(2);
        if (read(down[0], &c, 1) != 1) _exit(3);
        env->unlock(l);
        _exit(0);
    }
    ck_assert_int_eq(read(up[0], &c, 1), 1);
    {
        pid_t holder = -1;
        memset(&err, 0, sizeof err);
        ck_assert_int_eq(env->lock(env, P(&t, "LOCK"), 1, &x, &holder, &err), KV_LOCKED);
        ck_assert_int_eq(holder, pid);
        holder = -1;
        ck_assert_int_eq(env->lock(env, P(&t, "LOCK"), 0, &x, &holder, &err), KV_LOCKED);
        ck_assert_int_eq(holder, pid);
    }
    ck_assert_int_eq(write(down[1], "U", 1), 1);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    TU_OK(env->lock(env, P(&t, "LOCK"), 1, &x, NULL, &err), &err);
    env->unlock(x);
    for (int i = 0; i < 2; i++) {
        close(up[i]);
        close(down[i]);
    }
    tenv_close(&t);
}
END_TEST

/* A shared holder records no pid, so a refused exclusive lock must not
 * name the pid of an earlier, long gone exclusive holder. */
START_TEST(test_lock_holder_stale)
{
    tenv t;
    kv_env *env;
    kv_err err;
    kv_file *x = NULL;
    pid_t pid, holder = -1;
    int status, up[2], down[2];
    char c;

    tenv_open(&t, ENV_POSIX);
    env = t.env;
    /* an earlier exclusive holder (this process) records its pid */
    TU_OK(env->lock(env, P(&t, "LOCK"), 1, &x, NULL, &err), &err);
    env->unlock(x);
    x = NULL;
    ck_assert_int_eq(pipe(up), 0);
    ck_assert_int_eq(pipe(down), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        kv_file *l = NULL;
        if (env->lock(env, P(&t, "LOCK"), 0, &l, NULL, NULL) != KV_OK) _exit(1);
        if (write(up[1], "S", 1) != 1) _exit(2);
        if (read(down[0], &c, 1) != 1) _exit(3);
        env->unlock(l);
        _exit(0);
    }
    ck_assert_int_eq(read(up[0], &c, 1), 1);
    memset(&err, 0, sizeof err);
    ck_assert_int_eq(env->lock(env, P(&t, "LOCK"), 1, &x, &holder, &err), KV_LOCKED);
    ck_assert_int_eq(write(down[1], "U", 1), 1);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(holder == 0 || holder == pid,
                  "exclusive lock refused because of a shared holder (pid %ld), but holder = "
                  "%ld, the stale pid of the previous exclusive holder (%s)",
                  (long)pid, (long)holder, err.msg);
    for (int i = 0; i < 2; i++) {
        close(up[i]);
        close(down[i]);
    }
    tenv_close(&t);
}
END_TEST

/* ---- the fault env ---- */

START_TEST(test_fault_writes)
{
    tenv t;
    kv_env *env;
    kv_err err;
    kv_file *f;
    static const struct {
        int e;
        kv_status st;
    } errs[] = {{EIO, KV_IO}, {ENOSPC, KV_NO_SPACE}, {EDQUOT, KV_NO_SPACE}, {EROFS, KV_IO}};

    tenv_open(&t, _i == 0 ? ENV_FAULT_MEM : ENV_FAULT_POSIX);
    env = t.env;
    f = open_ok(env, P(&t, "w"), KV_O_RDWR | KV_O_CREATE);
    for (size_t k = 0; k < sizeof errs / sizeof errs[0]; k++) {
        long base = kv_env_fault_failures(env, KV_FAULT_WRITE);
        kv_env_fault_set(env, KV_FAULT_WRITE, 2, errs[k].e, NULL);
        write_ok(env, f, "a", 1, 0);
        write_ok(env, f, "b", 1, 1);
        for (int j = 0; j < 3; j++) {
            memset(&err, 0, sizeof err);
            ck_assert_int_eq(kv_env_pwrite(env, f, "c", 1, 2, &err), errs[k].st);
            ck_assert_int_eq(err.code, errs[k].st);
            ck_assert_int_eq(err.sys_errno, errs[k].e);
            ck_assert_msg(strstr(err.msg, P(&t, "w")) != NULL, "no path: %s", err.msg);
        }
        /* truncate counts as a write */
        ck_assert_int_eq(env->truncate(f, 0, &err), errs[k].st);
        ck_assert_int_eq(kv_env_fault_failures(env, KV_FAULT_WRITE), base + 4);
        ck_assert_uint_eq(size_of(env, f), 2); /* the failed writes did nothing */
        kv_env_fault_set(env, KV_FAULT_WRITE, -1, 0, NULL);
        write_ok(env, f, "c", 1, 2);
        ck_assert_int_eq(kv_env_fault_failures(env, KV_FAULT_WRITE), base + 4);
        TU_OK(env->truncate(f, 0, &err), &err);
    }
    /* after 0: the very next write fails; errno 0 means EIO */
    kv_env_fault_set(env, KV_FAULT_WRITE, 0, 0, NULL);
    memset(&err, 0, sizeof err);
    ck_assert_int_eq(kv_env_pwrite(env, f, "z", 1, 0, &err), KV_IO);
    ck_assert_int_eq(err.sys_errno, EIO);
    kv_env_fault_set(env, KV_FAULT_WRITE, -1, 0, NULL);
    /* path filter: only matching paths count and fail */
    {
        kv_file *g = open_ok(env, P(&t, "bad-1"), KV_O_RDWR | KV_O_CREATE);
        long base = kv_env_fault_failures(env, KV_FAULT_WRITE);
        kv_env_fault_set(env, KV_FAULT_WRITE, 1, EIO, "bad-");
        for (int j = 0; j < 5; j++) write_ok(env, f, "x", 1, (uint64_t)j);
        write_ok(env, g, "y", 1, 0); /* the one allowed */
        for (int j = 0; j < 5; j++) write_ok(env, f, "x", 1, (uint64_t)j);
        ck_assert_int_eq(kv_env_pwrite(env, g, "y", 1, 1, &err), KV_IO);
        write_ok(env, f, "x", 1, 9);
        ck_assert_int_eq(kv_env_fault_failures(env, KV_FAULT_WRITE), base + 1);
        kv_env_fault_set(env, KV_FAULT_WRITE, -1, 0, NULL);
        env->close(g);
    }
    /* rename fails as a write too */
    kv_env_fault_set(env, KV_FAULT_WRITE, 0, ENOSPC, NULL);
    ck_assert_int_eq(env->rename(env, P(&t, "w"), P(&t, "w2"), &err), KV_NO_SPACE);
    ck_assert_int_eq(env->exists(env, P(&t, "w")), 1);
    ck_assert_int_eq(env->exists(env, P(&t, "w2")), 0);
    kv_env_fault_set(env, KV_FAULT_WRITE, -1, 0, NULL);
    env->close(f);
    tenv_close(&t);
}
END_TEST

START_TEST(test_fault_sync_open_remove)
{
    tenv t;
    kv_env *env;
    kv_err err;
    kv_file *f, *g = NULL;

    tenv_open(&t, _i == 0 ? ENV_FAULT_MEM : ENV_FAULT_POSIX);
    env = t.env;
    f = open_ok(env, P(&t, "s"), KV_O_RDWR | KV_O_CREATE);
    write_ok(env, f, "abc", 3, 0);

    kv_env_fault_set(env, KV_FAULT_SYNC, 1, EIO, NULL);
    TU_OK(env->sync(f, &err), &err);
    memset(&err, 0, sizeof err);
    ck_assert_int_eq(env->sync(f, &err), KV_IO);
    ck_assert_int_eq(err.sys_errno, EIO);
    ck_assert_int_eq(env->sync_dir(env, t.dir, &err), KV_IO); /* a sync too */
    ck_assert_int_eq(kv_env_fault_failures(env, KV_FAULT_SYNC), 2);
    kv_env_fault_set(env, KV_FAULT_SYNC, 0, ENOSPC, NULL);
    ck_assert_int_eq(env->sync(f, &err), KV_NO_SPACE);
    ck_assert_int_eq(kv_env_fault_failures(env, KV_FAULT_SYNC), 3);
    kv_env_fault_set(env, KV_FAULT_SYNC, -1, 0, NULL);
    TU_OK(env->sync(f, &err), &err);
    TU_OK(env->sync_dir(env, t.dir, &err), &err);
    /* other ops are not affected by a sync fault */
    ck_assert_int_eq(kv_env_fault_failures(env, KV_FAULT_WRITE), 0);

    kv_env_fault_set(env, KV_FAULT_OPEN, 1, EMFILE, NULL);
    g = open_ok(env, P(&t, "s"), KV_O_READ);
    env->close(g);
    g = NULL;
    memset(&err, 0, sizeof err);
    ck_assert_int_eq(env->open(env, P(&t, "s"), KV_O_READ, &g, &err), KV_IO);
    ck_assert_ptr_null(g);
    ck_assert_int_eq(err.sys_errno, EMFILE);
    ck_assert_int_eq(env->open(env, P(&t, "new"), KV_O_RDWR | KV_O_CREATE, &g, &err), KV_IO);
    ck_assert_int_eq(env->exists(env, P(&t, "new")), 0);
    ck_assert_int_eq(kv_env_fault_failures(env, KV_FAULT_OPEN), 2);
    kv_env_fault_set(env, KV_FAULT_OPEN, -1, 0, NULL);

    kv_env_fault_set(env, KV_FAULT_REMOVE, 0, EACCES, NULL);
    memset(&err, 0, sizeof err);
    ck_assert_int_eq(env->remove(env, P(&t, "s"), &err), KV_IO);
    ck_assert_int_eq(err.sys_errno, EACCES);
    ck_assert_int_eq(env->exists(env, P(&t, "s")), 1);
    ck_assert_int_eq(kv_env_fault_failures(env, KV_FAULT_REMOVE), 1);
    kv_env_fault_set(env, KV_FAULT_REMOVE, -1, 0, NULL);
    TU_OK(env->remove(env, P(&t, "s"), &err), &err);
    ck_assert_int_eq(env->exists(env, P(&t, "s")), 0);
    env->close(f);
    tenv_close(&t);
}
END_TEST

/* Power cut: mutations fail with EIO, reads work; drop_unsynced rolls
 * every file back to what was durable. */
START_TEST(test_power_cut)
{
    tenv t;
    kv_env *env;
    kv_err err;
    kv_file *a, *b, *c, *d, *e, *x = NULL;
    uint8_t data[3000];
    size_t got;
    tu_rng r;

    tenv_open(&t, _i == 0 ? ENV_FAULT_MEM : ENV_FAULT_POSIX);
    env = t.env;
    tu_rng_init(&r, tu_seed() ^ 0x90);
    tu_randbytes(&r, data, sizeof data);
    /* pre-existing file, made through the inner env: durable as found */
    create_file(t.inner, P(&t, "old"), data, 1000);

    /* a: created, 1000 synced + dir synced, then 500 more unsynced */
    a = open_ok(env, P(&t, "a"), KV_O_RDWR | KV_O_CREATE);
    write_ok(env, a, data, 1000, 0);
    TU_OK(env->sync(a, &err), &err);
    /* b: created after that first directory sync, written and synced;
     * c: created, never synced itself; d: the pre-existing file */
    TU_OK(env->sync_dir(env, t.dir, &err), &err);
    b = open_ok(env, P(&t, "b"), KV_O_RDWR | KV_O_CREATE);
    write_ok(env, b, data, 700, 0);
    TU_OK(env->sync(b, &err), &err);
    c = open_ok(env, P(&t, "c"), KV_O_RDWR | KV_O_CREATE);
    d = open_ok(env, P(&t, "old"), KV_O_RDWR);
    /* the second directory sync makes b and c durable names; e is created
     * and synced after it, so its name is not durable */
    TU_OK(env->sync_dir(env, t.dir, &err), &err);
    e = open_ok(env, P(&t, "e"), KV_O_RDWR | KV_O_CREATE);
    write_ok(env, e, data, 100, 0);
    TU_OK(env->sync(e, &err), &err);
    /* unsynced appends to a, b, c and d */
    write_ok(env, a, data + 1000, 500, 1000);
    /* unsynced overwrites of synced bytes of a (two, overlapping): the
     * power cut brings back what was synced */
    write_ok(env, a, data + 2000, 200, 100);
    write_ok(env, a, data + 2500, 300, 50);
    write_ok(env, b, data + 700, 300, 700);
    write_ok(env, c, data, 30, 0);
    write_ok(env, d, data + 1000, 200, 1000);
    /* unsynced overwrites of b's synced bytes, one inside what the shrink
     * below keeps and one across its cut: the first comes back */
    write_ok(env, b, data + 2000, 100, 100);
    write_ok(env, b, data + 2200, 100, 550);
    /* a shrink after a sync is durable down to the new size */
    TU_OK(env->truncate(b, 600, &err), &err);

    kv_env_fault_power_cut(env);
    memset(&err, 0, sizeof err);
    ck_assert_int_eq(kv_env_pwrite(env, a, "x", 1, 0, &err), KV_IO);
    ck_assert_int_eq(err.sys_errno, EIO);
    ck_assert_int_eq(env->sync(a, &err), KV_IO);
    ck_assert_int_eq(env->truncate(a, 0, &err), KV_IO);
    ck_assert_int_eq(env->sync_dir(env, t.dir, &err), KV_IO);
    ck_assert_int_eq(env->rename(env, P(&t, "a"), P(&t, "z"), &err), KV_IO);
    ck_assert_int_eq(env->remove(env, P(&t, "a"), &err), KV_IO);
    ck_assert_int_eq(env->open(env, P(&t, "f"), KV_O_RDWR | KV_O_CREATE, &x, &err), KV_IO);
    ck_assert_int_eq(env->exists(env, P(&t, "f")), 0);
    /* reads still work, and see the unsynced bytes (the page cache) */
    x = open_ok(env, P(&t, "a"), KV_O_READ);
    ck_assert_uint_eq(size_of(env, x), 1500);
    TU_OK(env->pread(x, data + 2000, 10, 1495, &got, &err), &err);
    ck_assert_uint_eq(got, 5);
    env->close(x);
    env->close(a);
    env->close(b);
    env->close(c);
    env->close(d);
    env->close(e);

    TU_OK(kv_env_fault_drop_unsynced(env, &err), &err);
    expect_content(env, P(&t, "a"), data, 1000);
    expect_content(env, P(&t, "b"), data, 600);
    expect_content(env, P(&t, "c"), data, 0);
    expect_content(env, P(&t, "old"), data, 1000);
    ck_assert_int_eq(env->exists(env, P(&t, "e")), 0);
    /* power is back */
    a = open_ok(env, P(&t, "a"), KV_O_RDWR);
    write_ok(env, a, "!", 1, 1000);
    TU_OK(env->sync(a, &err), &err);
    env->close(a);
    expect_content(env, P(&t, "old"), data, 1000);
    tenv_close(&t);
}
END_TEST

/* A synced file renamed into place (as kv_env_write_file_atomic and the
 * manifest rewrite do), then power is lost before the directory sync.  A
 * real crash leaves the target name with either its old or its new
 * contents, never no file at all. */
START_TEST(test_power_cut_rename)
{
    tenv t;
    kv_env *env;
    kv_err err;
    kv_file *f;
    uint8_t *d = NULL;
    size_t n;

    tenv_open(&t, _i == 0 ? ENV_FAULT_MEM : ENV_FAULT_POSIX);
    env = t.env;
    /* a durable MANIFEST-like file */
    f = open_ok(env, P(&t, "M"), KV_O_RDWR | KV_O_CREATE);
    write_ok(env, f, "old", 3, 0);
    TU_OK(env->sync(f, &err), &err);
    env->close(f);
    TU_OK(env->sync_dir(env, t.dir, &err), &err);
    /* its replacement, synced, renamed over it; then the power goes */
    f = open_ok(env, P(&t, "M.tmp"), KV_O_RDWR | KV_O_CREATE | KV_O_TRUNC);
    write_ok(env, f, "new!", 4, 0);
    TU_OK(env->sync(f, &err), &err);
    env->close(f);
    TU_OK(env->rename(env, P(&t, "M.tmp"), P(&t, "M"), &err), &err);
    kv_env_fault_power_cut(env);
    ck_assert_int_eq(env->sync_dir(env, t.dir, &err), KV_IO);
    TU_OK(kv_env_fault_drop_unsynced(env, &err), &err);
    ck_assert_msg(env->exists(env, P(&t, "M")),
                  "%s: after a crash between rename(M.tmp, M) and the directory sync, M is "
                  "gone (neither the old nor the new file survives)",
                  env_names[_i == 0 ? ENV_FAULT_MEM : ENV_FAULT_POSIX]);
    n = slurp(env, P(&t, "M"), &d);
    ck_assert_msg((n == 3 && !memcmp(d, "old", 3)) || (n == 4 && !memcmp(d, "new!", 4)),
                  "M holds %zu bytes that are neither version", n);
    free(d);
    tenv_close(&t);
}
END_TEST

/* The same rename followed by a directory sync is durable. */
START_TEST(test_power_cut_rename_synced)
{
    tenv t;
    kv_env *env;
    kv_err err;

    tenv_open(&t, _i == 0 ? ENV_FAULT_MEM : ENV_FAULT_POSIX);
    env = t.env;
    TU_OK(kv_env_write_file_atomic(env, t.dir, "CUR", "v1", 2, &err), &err);
    TU_OK(kv_env_write_file_atomic(env, t.dir, "CUR", "v2..", 4, &err), &err);
    kv_env_fault_power_cut(env);
    TU_OK(kv_env_fault_drop_unsynced(env, &err), &err);
    expect_content(env, P(&t, "CUR"), "v2..", 4);
    ck_assert_int_eq(env->exists(env, P(&t, "CUR.tmp")), 0);
    tenv_close(&t);
}
END_TEST

static Suite *env_suite(void)
{
    Suite *s = suite_create("env");
    TCase *tc = tcase_create("conformance");
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, test_files, 0, ENV_KINDS);
    tcase_add_loop_test(tc, test_zero_length_writes, 0, ENV_KINDS);
    tcase_add_loop_test(tc, test_dir_ops, 0, ENV_KINDS);
    tcase_add_loop_test(tc, test_rename_to_itself, 0, ENV_KINDS);
    tcase_add_loop_test(tc, test_unlinked_open, 0, ENV_KINDS);
    tcase_add_loop_test(tc, test_locks, 0, ENV_KINDS);
    tcase_add_test(tc, test_locks_processes);
    tcase_add_test(tc, test_lock_holder_stale);
    suite_add_tcase(s, tc);
    tc = tcase_create("fault");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_fault_writes, 0, 2);
    tcase_add_loop_test(tc, test_fault_sync_open_remove, 0, 2);
    tcase_add_loop_test(tc, test_power_cut, 0, 2);
    tcase_add_loop_test(tc, test_power_cut_rename, 0, 2);
    tcase_add_loop_test(tc, test_power_cut_rename_synced, 0, 2);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    tu_seed();
    return tu_run(env_suite());
}
