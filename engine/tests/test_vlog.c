/*
 * test_vlog.c - key-value separation: values at or above ValueThreshold in
 * value logs, rotation, recovery of torn or missing value logs, discard
 * statistics, and value-log GC (space really reclaimed; concurrent writes
 * and deletes never lost or resurrected; snapshots keep reading; the head
 * file rotated when it is the best candidate), and bulk appends with
 * O_DIRECT.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "env_fault.h"
#include "frame.h"
#include "hash.h"
#include "testutil.h"
#include "vlog_format.h"

static void vopts(kv_options *o, const char *dir)
{
    tu_small_options(o, dir);
    o->value_threshold = 100;
    o->value_log_file_size = 1 << 20;
    o->auto_vlog_gc = 0; /* tests run GC themselves */
}

static void value_of(char *v, size_t n, int key, int gen)
{
    for (size_t i = 0; i < n; i++) v[i] = (char)('A' + (key * 7 + gen * 13 + (int)i) % 57);
}

static kv_status put(kv_db *db, int key, int gen, size_t vlen, int sync)
{
    kv_batch *b = kv_batch_new_for(db);
    kv_write_options wo = {sync};
    char k[32], *v = malloc(vlen ? vlen : 1);
    kv_err err;
    kv_status st;
    snprintf(k, sizeof k, "key-%06d", key);
    value_of(v, vlen, key, gen);
    kv_batch_put(b, k, strlen(k), v, vlen, &err);
    st = kv_write(db, &wo, b, NULL, &err);
    free(v);
    kv_batch_free(b);
    return st;
}

static void del(kv_db *db, int key)
{
    kv_batch *b = kv_batch_new_for(db);
    char k[32];
    kv_err err;
    snprintf(k, sizeof k, "key-%06d", key);
    TU_OK(kv_batch_delete(b, k, strlen(k), &err), &err);
    TU_OK(kv_write(db, NULL, b, NULL, &err), &err);
    kv_batch_free(b);
}

/* gen < 0: must be absent */
static void check(kv_db *db, int key, int gen, size_t vlen, int in_vlog)
{
    char k[32], *v = malloc(vlen ? vlen : 1);
    kv_buf buf = {0};
    kv_entry_meta m;
    kv_err err;
    kv_status st;
    snprintf(k, sizeof k, "key-%06d", key);
    st = kv_get(db, NULL, k, strlen(k), &buf, &m, &err);
    if (gen < 0) {
        ck_assert_msg(st == KV_NOT_FOUND, "key %d should be absent: %s %s", key,
                      kv_status_str(st), err.msg);
    } else {
        ck_assert_msg(st == KV_OK, "key %d: %s (%s)", key, kv_status_str(st), err.msg);
        value_of(v, vlen, key, gen);
        ck_assert_msg(buf.len == vlen && !memcmp(buf.data, v, vlen), "key %d: wrong value", key);
        if (in_vlog >= 0) ck_assert_int_eq(m.in_vlog, in_vlog);
    }
    kv_buf_free(&buf);
    free(v);
}

static uint64_t vlog_bytes(kv_db *db, int *nfiles)
{
    kv_stats st;
    kv_get_stats(db, &st);
    if (nfiles) *nfiles = (int)st.vlog_files;
    return st.vlog_bytes;
}

START_TEST(test_values_separated)
{
    char *dir = tu_mkdtemp("vsep");
    kv_options o;
    kv_db *db;
    kv_err err;
    kv_stats s0, s1;
    kv_iter *it;
    kv_iter_options io;
    int n = 0;
    vopts(&o, dir);
    TU_OK(kv_open(&o, &db, &err), &err);
    for (int i = 0; i < 2000; i++) TU_OK(put(db, i, 0, i % 2 ? 500 : 50, 0), NULL);
    for (int i = 0; i < 2000; i += 13) check(db, i, 0, i % 2 ? 500 : 50, i % 2);
    ck_assert(vlog_bytes(db, NULL) > 1000u * 500u);
    TU_OK(kv_flush(db, &err), &err);
    TU_OK(kv_compact_all(db, &err), &err);
    for (int i = 0; i < 2000; i += 7) check(db, i, 0, i % 2 ? 500 : 50, i % 2);
    /* values through an iterator */
    TU_OK(kv_iter_new(db, NULL, &it, &err), &err);
    for (kv_iter_rewind(it); kv_iter_valid(it); kv_iter_next(it), n++) {
        const void *v;
        size_t vl;
        TU_OK(kv_iter_value(it, &v, &vl, &err), &err);
        ck_assert_uint_eq(vl, n % 2 ? 500 : 50);
    }
    kv_iter_free(it);
    ck_assert_int_eq(n, 2000);
    /* a key-only iterator never reads a value log */
    kv_get_stats(db, &s0);
    memset(&io, 0, sizeof io);
    io.key_only = 1;
    io.reverse = 1;
    TU_OK(kv_iter_new(db, &io, &it, &err), &err);
    n = 0;
    for (kv_iter_rewind(it); kv_iter_valid(it); kv_iter_next(it)) {
        kv_entry_meta m;
        const void *v;
        size_t vl;
        kv_iter_meta(it, &m);
        ck_assert_int_eq(m.in_vlog, (1999 - n) % 2);
        TU_ST(KV_INVALID, kv_iter_value(it, &v, &vl, &err), &err);
        n++;
    }
    kv_iter_free(it);
    kv_get_stats(db, &s1);
    ck_assert_int_eq(n, 2000);
    ck_assert_uint_eq(s1.vlog_value_reads, s0.vlog_value_reads);
    TU_OK(kv_close(db, &err), &err);
    TU_OK(kv_open(&o, &db, &err), &err);
    for (int i = 0; i < 2000; i += 3) check(db, i, 0, i % 2 ? 500 : 50, i % 2);
    TU_OK(kv_close(db, &err), &err);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

/* Iterators with value prefetch, values in key order spread over several
 * value logs in another order (each step may switch files): every value
 * read is the right one, forward, reverse and after a seek, whichever way
 * the prefetch cursor runs (kernel readahead at first, CPU-cache prefetch
 * once values prove resident, after 64 entries). */
START_TEST(test_prefetching_iterators)
{
    /* runs of 200 keys alternate between values in the log and inline
     * ones (the cursor rests in the inline runs and restarts after) */
    enum { N = 3000, VLEN = 1400, SMALL = 20 };
    static const int depths[] = {0, 1, 8, 64};
    char *dir = tu_mkdtemp("vpref");
    char *want = malloc(VLEN);
    kv_options o;
    kv_db *db;
    kv_err err;
    int nfiles;
    vopts(&o, dir);
    TU_OK(kv_open(&o, &db, &err), &err);
#define LEN_OF(k) ((k) / 200 % 2 ? SMALL : VLEN)
    for (int i = 0; i < N; i++) {
        int k = (int)((i * 1237L) % N);
        TU_OK(put(db, k, 0, LEN_OF(k), 0), NULL);
    }
    for (int i = 0; i < N; i += 5) TU_OK(put(db, i, 1, LEN_OF(i), 0), NULL);
    vlog_bytes(db, &nfiles);
    ck_assert_int_ge(nfiles, 3);
    for (size_t d = 0; d < sizeof depths / sizeof depths[0]; d++) {
        for (int rev = 0; rev < 2; rev++) {
            kv_iter_options io;
            kv_iter *it;
            int n = 0, key = rev ? N - 1 : 0;
            memset(&io, 0, sizeof io);
            io.prefetch_values = depths[d];
            io.reverse = rev;
            TU_OK(kv_iter_new(db, &io, &it, &err), &err);
            if (d == 2) { /* from the middle */
                char k[32];
                key = N / 2;
                snprintf(k, sizeof k, "key-%06d", key);
                kv_iter_seek(it, k, strlen(k));
            } else {
                kv_iter_rewind(it);
            }
            for (; kv_iter_valid(it); kv_iter_next(it), n++, key += rev ? -1 : 1) {
                const void *v;
                size_t vl;
                TU_OK(kv_iter_value(it, &v, &vl, &err), &err);
                value_of(want, LEN_OF(key), key, key % 5 == 0);
                ck_assert_msg(vl == (size_t)LEN_OF(key) && memcmp(v, want, vl) == 0,
                              "depth %d reverse %d: wrong value for key %d", depths[d], rev,
                              key);
            }
            TU_OK(kv_iter_status(it, &err), &err);
            kv_iter_free(it);
            ck_assert_int_eq(n, d == 2 ? (rev ? N / 2 + 1 : N - N / 2) : N);
        }
    }
    TU_OK(kv_close(db, &err), &err);
    tu_rmdir(dir);
    free(dir);
    free(want);
#undef LEN_OF
}
END_TEST

START_TEST(test_rotation)
{
    char *dir = tu_mkdtemp("vrot");
    kv_options o;
    kv_db *db;
    kv_err err;
    kv_vlog_info vi[64];
    int nf;
    vopts(&o, dir);
    o.value_log_max_entries = 500;
    TU_OK(kv_open(&o, &db, &err), &err);
    /* batches of 10 values of 10 KiB: 100 KiB each, 5 MiB in all */
    for (int b = 0; b < 50; b++) {
        kv_batch *bt = kv_batch_new_for(db);
        char k[32], v[10240];
        for (int i = 0; i < 10; i++) {
            snprintf(k, sizeof k, "key-%06d", b * 10 + i);
            value_of(v, sizeof v, b * 10 + i, 0);
            TU_OK(kv_batch_put(bt, k, strlen(k), v, sizeof v, &err), &err);
        }
        TU_OK(kv_write(db, NULL, bt, NULL, &err), &err);
        kv_batch_free(bt);
    }
    nf = kv_get_vlog_files(db, vi, 64);
    ck_assert_msg(nf >= 5, "only %d value-log files", nf);
    for (int i = 0; i < nf; i++) /* never split a batch: at most one batch past the limit */
        ck_assert_msg(vi[i].size_bytes <= (uint64_t)o.value_log_file_size + 10 * 10300,
                      "file %u has %llu bytes", vi[i].fid, (unsigned long long)vi[i].size_bytes);
    for (int i = 0; i < 500; i += 11) check(db, i, 0, 10240, 1);
    TU_OK(kv_close(db, &err), &err);
    /* entry-count rotation */
    tu_rmdir(dir);
    mkdir(dir, 0700);
    o.value_log_max_entries = 30;
    TU_OK(kv_open(&o, &db, &err), &err);
    for (int i = 0; i < 300; i++) TU_OK(put(db, i, 0, 200, 0), NULL);
    nf = kv_get_vlog_files(db, vi, 64);
    ck_assert_msg(nf >= 10, "entry limit ignored: %d files", nf);
    for (int i = 0; i < nf; i++) ck_assert(vi[i].entries <= 30);
    TU_OK(kv_close(db, &err), &err);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

static char *last_vlog(const char *dir)
{
    char cmd[4200];
    static char line[4200];
    FILE *p;
    snprintf(cmd, sizeof cmd, "ls %s/*.vlog 2>/dev/null | sort | tail -n 1", dir);
    p = popen(cmd, "r");
    line[0] = 0;
    if (p) {
        if (!fgets(line, sizeof line, p)) line[0] = 0;
        pclose(p);
    }
    line[strcspn(line, "\n")] = 0;
    return line[0] ? strdup(line) : NULL;
}

/* The WAL made it to disk but the value log's tail did not: recovery
 * keeps the prefix whose values exist, and nothing dangles. */
START_TEST(test_torn_vlog_tail)
{
    char *dir = tu_mkdtemp("vtorn");
    kv_options o;
    kv_db *db;
    kv_err err;
    pid_t pid;
    int status, present = 0;
    char *vlog;
    struct stat st;
    vopts(&o, dir);
    o.mem_table_size = 8 << 20;
    o.value_log_file_size = 64 << 20;
    pid = fork();
    if (pid == 0) {
        if (kv_open(&o, &db, &err) != KV_OK) _exit(2);
        for (int i = 0; i < 400; i++)
            if (put(db, i, 0, 1000, 0) != KV_OK) _exit(3);
        _exit(0);
    }
    waitpid(pid, &status, 0);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    vlog = last_vlog(dir);
    ck_assert(vlog != NULL);
    ck_assert_int_eq(stat(vlog, &st), 0);
    /* cut the value log in the middle of the entry of key 300 */
    ck_assert_int_eq(truncate(vlog, st.st_size - 100 * 1030 - 500), 0);
    TU_OK(kv_open(&o, &db, &err), &err);
    for (int i = 0; i < 400; i++) {
        char k[32];
        kv_status s2;
        snprintf(k, sizeof k, "key-%06d", i);
        s2 = kv_get(db, NULL, k, strlen(k), NULL, NULL, &err);
        ck_assert_msg(s2 == KV_OK || s2 == KV_NOT_FOUND, "key %d: %s", i, err.msg);
        if (s2 == KV_OK) {
            ck_assert_msg(present == i, "key %d present after a missing one: a hole", i);
            check(db, i, 0, 1000, 1);
            present++;
        }
    }
    ck_assert_msg(present >= 290 && present <= 300, "%d keys survived", present);
    /* new writes go to a fresh file and work */
    TU_OK(put(db, 5000, 1, 1000, 1), NULL);
    check(db, 5000, 1, 1000, 1);
    TU_OK(kv_close(db, &err), &err);
    free(vlog);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

/* A child process makes 50 synced writes of vlen-byte values and exits
 * without closing; then the newest value log loses its last 3000 bytes,
 * as if they had never reached the disk. */
static void synced_writes_then_cut_vlog(const kv_options *o, size_t vlen)
{
    pid_t pid = fork();
    int status;
    char *vlog;
    struct stat st;
    if (pid == 0) {
        kv_db *db;
        kv_err err;
        if (kv_open(o, &db, &err) != KV_OK) _exit(2);
        for (int i = 0; i < 50; i++)
            if (put(db, i, 0, vlen, 1) != KV_OK) _exit(3);
        _exit(0);
    }
    waitpid(pid, &status, 0);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    vlog = last_vlog(o->dir);
    ck_assert(vlog && stat(vlog, &st) == 0);
    ck_assert_int_eq(truncate(vlog, st.st_size - 3000), 0);
    free(vlog);
}

/* A synced write's value log cannot be torn: a damaged one is corruption.
 * (Values of 70,000 bytes: more than a synced group writes inline in the
 * WAL, so the records point into a value log synced before them.) */
START_TEST(test_synced_vlog_damage_is_corruption)
{
    char *dir = tu_mkdtemp("vsync");
    kv_options o;
    kv_db *db;
    kv_err err;
    kv_status s2;
    vopts(&o, dir);
    o.mem_table_size = 8 << 20;
    synced_writes_then_cut_vlog(&o, 70000);
    s2 = kv_open(&o, &db, &err);
    ck_assert_msg(s2 == KV_CORRUPTION, "want corruption, got %s", kv_status_str(s2));
    ck_assert_msg(strstr(err.msg, "value-log") || strstr(err.msg, "value log"), "message: %s",
                  err.msg);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

/* Small synced writes carry their values in the WAL too, so they do not
 * need the value log to survive: a value log cut short (as a power loss
 * leaves it, it was never synced) loses nothing. */
START_TEST(test_synced_small_writes_in_wal)
{
    char *dir = tu_mkdtemp("vinl");
    kv_options o;
    kv_db *db;
    kv_err err;
    vopts(&o, dir);
    o.mem_table_size = 8 << 20;
    synced_writes_then_cut_vlog(&o, 1000);
    TU_OK(kv_open(&o, &db, &err), &err);
    for (int i = 0; i < 50; i++) check(db, i, 0, 1000, i >= 47 ? 0 : -1);
    TU_OK(kv_close(db, &err), &err);
    TU_OK(kv_open(&o, &db, &err), &err);
    for (int i = 0; i < 50; i++) check(db, i, 0, 1000, -1);
    TU_OK(kv_close(db, &err), &err);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

/* ... and such a commit fsyncs the WAL only, unless an earlier record
 * points into value-log bytes not yet synced. */
START_TEST(test_synced_small_writes_sync_only_the_wal)
{
    char *dir = tu_mkdtemp("vwal");
    kv_env *env = kv_env_fault_new(NULL);
    kv_options o;
    kv_db *db;
    kv_err err;
    vopts(&o, dir);
    o.mem_table_size = 8 << 20;
    o.env = env;
    o.log_level = KV_LOG_ERROR;
    TU_OK(kv_open(&o, &db, &err), &err);
    TU_OK(put(db, 0, 0, 1000, 1), NULL); /* what open left behind is synced here */
    kv_env_fault_set(env, KV_FAULT_SYNC, 0, EIO, ".vlog");
    for (int i = 1; i <= 20; i++) TU_OK(put(db, i, 0, 1000, 1), NULL);
    ck_assert_int_eq(kv_env_fault_failures(env, KV_FAULT_SYNC), 0);
    TU_OK(put(db, 100, 0, 1000, 0), NULL); /* its WAL record points into the vlog */
    ck_assert_int_eq(put(db, 101, 0, 1000, 1), KV_IO);
    ck_assert_int_eq(kv_env_fault_failures(env, KV_FAULT_SYNC), 1);
    kv_close(db, &err);
    kv_env_fault_free(env);
    o.env = NULL;
    TU_OK(kv_open(&o, &db, &err), &err);
    for (int i = 0; i <= 20; i++) check(db, i, 0, 1000, -1);
    check(db, 100, 0, 1000, 1);
    check(db, 101, -1, 0, -1);
    TU_OK(kv_close(db, &err), &err);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

START_TEST(test_missing_vlog_file)
{
    char *dir = tu_mkdtemp("vmiss");
    kv_options o;
    kv_db *db;
    kv_err err;
    kv_vlog_info vi[16];
    char path[4200];
    kv_status s2;
    char k[32];
    vopts(&o, dir);
    TU_OK(kv_open(&o, &db, &err), &err);
    for (int i = 0; i < 100; i++) TU_OK(put(db, i, 0, 500, 0), NULL);
    TU_OK(kv_flush(db, &err), &err);
    ck_assert(kv_get_vlog_files(db, vi, 16) >= 1);
    TU_OK(kv_close(db, &err), &err);
    snprintf(path, sizeof path, "%s/%06u.vlog", dir, vi[0].fid);
    ck_assert_int_eq(unlink(path), 0);
    TU_OK(kv_open(&o, &db, &err), &err); /* tables are fine */
    snprintf(k, sizeof k, "key-%06d", 5);
    /* (without a buffer kv_get only checks existence and reads no value) */
    TU_OK(kv_get(db, NULL, k, strlen(k), NULL, NULL, &err), &err);
    {
        kv_buf b = {0};
        s2 = kv_get(db, NULL, k, strlen(k), &b, NULL, &err);
        kv_buf_free(&b);
    }
    ck_assert_msg(s2 == KV_CORRUPTION, "want corruption, got %s", kv_status_str(s2));
    ck_assert_msg(strstr(err.msg, ".vlog") && strstr(err.msg, "missing"), "message: %s",
                  err.msg);
    TU_OK(kv_close(db, &err), &err);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

/* GC until nothing is worth rewriting. */
static void gc_all(kv_db *db, double ratio)
{
    kv_err err;
    for (int round = 0; round < 50; round++) {
        kv_status st = kv_run_value_log_gc(db, ratio, &err);
        if (st == KV_NO_REWRITE) return;
        ck_assert_msg(st == KV_OK, "gc: %s", err.msg);
    }
    ck_abort_msg("value-log GC never settled");
}

START_TEST(test_gc_reclaims_space)
{
    char *dir = tu_mkdtemp("vgc");
    kv_options o;
    kv_db *db;
    kv_err err;
    const int n = 3000, vlen = 1000;
    uint64_t before, after, live = (uint64_t)n / 2 * (vlen + 40);
    int nf;
    kv_stats st;
    vopts(&o, dir);
    o.value_threshold = 256;
    TU_OK(kv_open(&o, &db, &err), &err);
    for (int gen = 0; gen < 3; gen++)
        for (int i = 0; i < n; i++) TU_OK(put(db, i, gen, vlen, 0), NULL);
    for (int i = 0; i < n; i += 2) del(db, i);
    /* compaction drops the dead versions and counts their bytes */
    TU_OK(kv_compact_all(db, &err), &err);
    kv_get_stats(db, &st);
    ck_assert_msg(st.vlog_discard_bytes > (uint64_t)n * vlen, "discard stats: %llu",
                  (unsigned long long)st.vlog_discard_bytes);
    before = vlog_bytes(db, &nf);
    gc_all(db, 0.5);
    TU_OK(kv_compact_all(db, &err), &err); /* drops versions GC superseded */
    gc_all(db, 0.5);
    kv_get_stats(db, &st);
    ck_assert(st.vlog_gc_files_deleted > 0);
    after = vlog_bytes(db, &nf);
    ck_assert_msg(after <= live * 2 + (uint64_t)o.value_log_file_size,
                  "value logs hold %llu bytes for %llu live bytes (before GC: %llu)",
                  (unsigned long long)after, (unsigned long long)live,
                  (unsigned long long)before);
    for (int i = 0; i < n; i++) check(db, i, i % 2 ? 2 : -1, vlen, 1);
    TU_OK(kv_close(db, &err), &err);
    TU_OK(kv_open(&o, &db, &err), &err);
    for (int i = 0; i < n; i++) check(db, i, i % 2 ? 2 : -1, vlen, 1);
    ck_assert(vlog_bytes(db, NULL) <= live * 2 + (uint64_t)o.value_log_file_size * 2);
    TU_OK(kv_close(db, &err), &err);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

/* Flips one value byte of the entry holding key's value generation gen in
 * value-log file path; fails the test if there is no such entry. */
/* Damages the entry (key, gen) in the file at path: a byte of its value,
 * or with header, of its length (a scan cannot go past that). */
static void damage_entry(const char *path, int key, int gen, size_t vlen, int header)
{
    char k[32], *want = malloc(vlen);
    uint8_t *data;
    struct stat sb;
    size_t off = KV_VLOG_HEADER_SIZE;
    int fd = open(path, O_RDWR);
    ck_assert(fd >= 0 && fstat(fd, &sb) == 0);
    data = malloc((size_t)sb.st_size);
    ck_assert(pread(fd, data, (size_t)sb.st_size, 0) == sb.st_size);
    snprintf(k, sizeof k, "key-%06d", key);
    value_of(want, vlen, key, gen);
    for (;;) {
        long plen = kv_frame_peek(data, (size_t)sb.st_size, off);
        kv_vlog_entry e;
        ck_assert_msg(plen >= 0, "no entry for %s generation %d in %s", k, gen, path);
        ck_assert(kv_vlog_entry_decode(data + off, KV_FRAME_HDR + (size_t)plen, 0, &e) == 0);
        if (e.klen == strlen(k) && !memcmp(e.key, k, e.klen) && e.vlen == vlen &&
            !memcmp(e.value, want, vlen)) {
            off_t at = header ? (off_t)off : (off_t)(e.value - data) + (off_t)vlen / 2;
            uint8_t c = (uint8_t)(data[at] ^ 0x5a);
            ck_assert(pwrite(fd, &c, 1, at) == 1);
            break;
        }
        off += KV_FRAME_HDR + (size_t)plen;
    }
    close(fd);
    free(data);
    free(want);
}

/* GC meets damage: a damaged dead entry does not matter (dead entries are
 * not checksummed), a damaged live one stops the rewrite and the file is
 * kept - the live values after it are still read from it - and GC leaves
 * the file alone from then on. */
START_TEST(test_gc_keeps_damaged_file)
{
    char *dir = tu_mkdtemp("vdmg");
    kv_options o;
    kv_db *db;
    kv_err err;
    kv_vlog_info vi[32];
    kv_stats st;
    char path[4200], k[32];
    const int vlen = 1000;
    int nv, found = 0;
    uint32_t fid;
    vopts(&o, dir);
    o.verify_value_checksum = 1; /* so that reading the damaged value says so */
    TU_OK(kv_open(&o, &db, &err), &err);
    for (int i = 0; i < 600; i++) TU_OK(put(db, i, 0, vlen, 0), NULL);
    for (int i = 0; i < 500; i++) TU_OK(put(db, i, 1, vlen, 0), NULL);
    TU_OK(kv_compact_all(db, &err), &err); /* counts generation 0 of keys 0..499 dead */
    nv = kv_get_vlog_files(db, vi, 32);
    ck_assert(nv >= 2);
    fid = vi[0].fid; /* the oldest: all of generation 0 */
    ck_assert_msg(vi[0].discard_ratio > 0.3, "discard ratio %g", vi[0].discard_ratio);
    TU_OK(kv_close(db, &err), &err);
    snprintf(path, sizeof path, "%s/%06u.vlog", dir, fid);
    damage_entry(path, 10, 0, vlen, 0);  /* dead */
    damage_entry(path, 550, 0, vlen, 0); /* live */

    TU_OK(kv_open(&o, &db, &err), &err);
    TU_OK(kv_run_value_log_gc(db, 0.3, &err), &err);
    kv_get_stats(db, &st);
    /* the scan went past the dead damage: keys 500..549 were copied */
    ck_assert_msg(st.vlog_gc_rewritten_entries >= 50, "rewritten %llu",
                  (unsigned long long)st.vlog_gc_rewritten_entries);
    nv = kv_get_vlog_files(db, vi, 32);
    for (int i = 0; i < nv; i++)
        if (vi[i].fid == fid) {
            found = 1;
            ck_assert_int_eq(vi[i].state, 4);
        }
    ck_assert_msg(found, "the damaged file was collected");
    /* never picked again, even at the lowest ratio; the file stays */
    ck_assert_int_eq(kv_run_value_log_gc(db, 0.01, &err), KV_NO_REWRITE);
    ck_assert_int_eq(access(path, F_OK), 0);
    for (int i = 0; i < 600; i++)
        if (i != 550) check(db, i, i < 500 ? 1 : 0, vlen, 1);
    snprintf(k, sizeof k, "key-%06d", 550);
    {
        kv_buf b = {0};
        kv_status s2 = kv_get(db, NULL, k, strlen(k), &b, NULL, &err);
        kv_buf_free(&b);
        ck_assert_msg(s2 == KV_CORRUPTION, "want corruption, got %s", kv_status_str(s2));
    }
    TU_OK(kv_close(db, &err), &err);
    TU_OK(kv_open(&o, &db, &err), &err);
    for (int i = 0; i < 600; i++)
        if (i != 550) check(db, i, i < 500 ? 1 : 0, vlen, 1);
    TU_OK(kv_close(db, &err), &err);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

START_TEST(test_gc_nothing_to_do)
{
    char *dir = tu_mkdtemp("vnone");
    kv_options o;
    kv_db *db;
    kv_err err;
    vopts(&o, dir);
    TU_OK(kv_open(&o, &db, &err), &err);
    TU_ST(KV_NO_REWRITE, kv_run_value_log_gc(db, 0.5, &err), &err);
    for (int i = 0; i < 100; i++) TU_OK(put(db, i, 0, 500, 0), NULL);
    TU_ST(KV_NO_REWRITE, kv_run_value_log_gc(db, 0.5, &err), &err);
    TU_ST(KV_INVALID, kv_run_value_log_gc(db, 1.5, &err), &err);
    TU_ST(KV_INVALID, kv_run_value_log_gc(db, 0.0, &err), &err);
    TU_OK(kv_close(db, &err), &err);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

/* All the garbage is in the head file: GC seals it and rewrites it. */
START_TEST(test_gc_rotates_head)
{
    char *dir = tu_mkdtemp("vhead");
    kv_options o;
    kv_db *db;
    kv_err err;
    kv_vlog_info vi[16];
    int nf;
    uint32_t head;
    vopts(&o, dir);
    o.value_log_file_size = 64 << 20;
    TU_OK(kv_open(&o, &db, &err), &err);
    for (int gen = 0; gen < 4; gen++)
        for (int i = 0; i < 200; i++) TU_OK(put(db, i, gen, 2000, 0), NULL);
    TU_OK(kv_compact_all(db, &err), &err);
    nf = kv_get_vlog_files(db, vi, 16);
    ck_assert_int_eq(nf, 1);
    head = vi[0].fid;
    ck_assert(vi[0].discard_ratio > 0.6);
    TU_OK(kv_run_value_log_gc(db, 0.5, &err), &err);
    nf = kv_get_vlog_files(db, vi, 16);
    for (int i = 0; i < nf; i++)
        if (vi[i].fid == head) ck_assert_int_eq(vi[i].state, 3); /* rewritten */
    for (int i = 0; i < 200; i++) check(db, i, 3, 2000, 1);
    TU_OK(kv_close(db, &err), &err);
    TU_OK(kv_open(&o, &db, &err), &err);
    for (int i = 0; i < 200; i++) check(db, i, 3, 2000, 1);
    TU_OK(kv_close(db, &err), &err);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

/* A snapshot taken before GC keeps reading its values; the rewritten
 * file goes only after the snapshot is released. */
START_TEST(test_gc_and_snapshots)
{
    char *dir = tu_mkdtemp("vsnap");
    kv_options o;
    kv_db *db;
    kv_err err;
    kv_snapshot *snap;
    kv_stats st;
    vopts(&o, dir);
    TU_OK(kv_open(&o, &db, &err), &err);
    for (int i = 0; i < 300; i++) TU_OK(put(db, i, 0, 1500, 0), NULL);
    TU_OK(kv_snapshot_acquire(db, &snap, &err), &err);
    for (int i = 0; i < 300; i += 3) TU_OK(put(db, i, 1, 1500, 0), NULL);
    TU_OK(kv_compact_all(db, &err), &err);
    /* nothing dead yet for the snapshot's sake... but GC of what is may run */
    kv_run_value_log_gc(db, 0.01, &err);
    for (int i = 0; i < 300; i++) {
        char k[32], v[1500];
        kv_buf buf = {0};
        kv_read_options ro = {kv_snapshot_version(snap), 1};
        snprintf(k, sizeof k, "key-%06d", i);
        TU_OK(kv_get(db, &ro, k, strlen(k), &buf, NULL, &err), &err);
        value_of(v, sizeof v, i, 0);
        ck_assert(buf.len == sizeof v && !memcmp(buf.data, v, sizeof v));
        kv_buf_free(&buf);
    }
    kv_snapshot_release(snap);
    TU_OK(kv_compact_all(db, &err), &err);
    gc_all(db, 0.2);
    kv_get_stats(db, &st);
    for (int i = 0; i < 300; i++) check(db, i, i % 3 ? 0 : 1, 1500, 1);
    TU_OK(kv_close(db, &err), &err);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

typedef struct race {
    kv_db *db;
    int n;
    _Atomic int stop;
    _Atomic int gen[400];  /* -1 deleted */
    _Atomic int failed;
    char why[600];
} race;

static void *race_writer(void *p)
{
    race *r = p;
    tu_rng rng;
    tu_rng_init(&rng, tu_seed() + 99);
    while (!atomic_load(&r->stop)) {
        int k = (int)tu_randn(&rng, (uint64_t)r->n), g = atomic_load(&r->gen[k]);
        int ng = (g < 0 ? 0 : g) + 1;
        if (tu_randn(&rng, 5) == 0) {
            del(r->db, k);
            atomic_store(&r->gen[k], -1 - ng); /* remember the generation */
        } else {
            if (put(r->db, k, ng, 700, 0) != KV_OK) {
                atomic_store(&r->failed, 1);
                break;
            }
            atomic_store(&r->gen[k], ng);
        }
    }
    return NULL;
}

/* Writes and deletes race with GC: nothing lost, nothing resurrected. */
START_TEST(test_gc_races_writers)
{
    char *dir = tu_mkdtemp("vrace");
    kv_options o;
    race r;
    kv_err err;
    pthread_t t;
    long rounds = tu_scale(30);
    memset(&r, 0, sizeof r);
    vopts(&o, dir);
    o.value_log_file_size = 1 << 20;
    r.n = 400;
    TU_OK(kv_open(&o, &r.db, &err), &err);
    for (int i = 0; i < r.n; i++) {
        TU_OK(put(r.db, i, 0, 700, 0), NULL);
        atomic_store(&r.gen[i], 0);
    }
    pthread_create(&t, NULL, race_writer, &r);
    for (long i = 0; i < rounds; i++) {
        kv_status st;
        TU_OK(kv_compact_all(r.db, &err), &err);
        st = kv_run_value_log_gc(r.db, 0.3, &err);
        ck_assert_msg(st == KV_OK || st == KV_NO_REWRITE, "gc: %s", err.msg);
    }
    atomic_store(&r.stop, 1);
    pthread_join(t, NULL);
    ck_assert(!atomic_load(&r.failed));
    for (int i = 0; i < r.n; i++) {
        int g = atomic_load(&r.gen[i]);
        check(r.db, i, g < 0 ? -1 : g, 700, 1);
    }
    TU_OK(kv_close(r.db, &err), &err);
    TU_OK(kv_open(&o, &r.db, &err), &err);
    for (int i = 0; i < r.n; i++) {
        int g = atomic_load(&r.gen[i]);
        check(r.db, i, g < 0 ? -1 : g, 700, 1);
    }
    TU_OK(kv_close(r.db, &err), &err);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

START_TEST(test_discard_persisted)
{
    char *dir = tu_mkdtemp("vdisc");
    kv_options o;
    kv_db *db;
    kv_err err;
    kv_stats s1, s2;
    vopts(&o, dir);
    TU_OK(kv_open(&o, &db, &err), &err);
    for (int gen = 0; gen < 2; gen++)
        for (int i = 0; i < 300; i++) TU_OK(put(db, i, gen, 800, 0), NULL);
    TU_OK(kv_compact_all(db, &err), &err);
    kv_get_stats(db, &s1);
    ck_assert(s1.vlog_discard_bytes > 0);
    TU_OK(kv_close(db, &err), &err);
    TU_OK(kv_open(&o, &db, &err), &err);
    kv_get_stats(db, &s2);
    ck_assert_uint_eq(s2.vlog_discard_bytes, s1.vlog_discard_bytes);
    TU_OK(kv_close(db, &err), &err);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

/* A dropped prefix's tables leave the version without compaction reading
 * them (TRUNCATE, DROP TABLE); their values still count as discardable,
 * exactly once, and GC gives the space back. */
START_TEST(test_drop_counts_discard)
{
    char *dir = tu_mkdtemp("vdrop");
    kv_options o;
    kv_db *db;
    kv_err err;
    kv_stats st;
    const int vlen = 1000;
    const uint64_t dropped = 3000u * vlen; /* keys 0..2999 ("key-00..."); 10000..10999 stay */
    uint64_t before;
    vopts(&o, dir);
    o.base_table_size = 16 << 10; /* ~800 pointers a table: most lie inside the prefix */
    TU_OK(kv_open(&o, &db, &err), &err);
    for (int i = 0; i < 3000; i++) TU_OK(put(db, i, 0, vlen, 0), NULL);
    for (int i = 10000; i < 11000; i++) TU_OK(put(db, i, 0, vlen, 0), NULL);
    TU_OK(kv_flush(db, &err), &err);
    TU_OK(kv_compact_all(db, &err), &err);
    kv_get_stats(db, &st);
    ck_assert_uint_eq(st.vlog_discard_bytes, 0);
    TU_OK(kv_drop_prefix(db, "key-00", 6, &err), &err);
    /* the compactor removes the tables inside the prefix once the drop is
     * visible; nothing else is written, so no compaction reads them */
    for (int i = 0; i < 200; i++) {
        kv_get_stats(db, &st);
        if (st.vlog_discard_bytes >= dropped / 2) break;
        usleep(25 * 1000);
    }
    ck_assert_msg(st.vlog_discard_bytes >= dropped / 2 &&
                      st.vlog_discard_bytes <= 3000u * (vlen + 64),
                  "discard %llu for %llu dropped value bytes",
                  (unsigned long long)st.vlog_discard_bytes, (unsigned long long)dropped);
    before = vlog_bytes(db, NULL);
    gc_all(db, 0.5);
    /* a rewritten file goes once no reader and no WAL can reach it; GC
     * flushed the memtable for that, the GC thread deletes it */
    for (int i = 0; i < 200; i++) {
        kv_get_stats(db, &st);
        if (st.vlog_gc_files_deleted > 0) break;
        usleep(25 * 1000);
    }
    ck_assert(st.vlog_gc_files_deleted > 0);
    ck_assert_msg(vlog_bytes(db, NULL) + dropped / 2 < before, "value logs %llu bytes, %llu before GC",
                  (unsigned long long)vlog_bytes(db, NULL), (unsigned long long)before);
    for (int i = 0; i < 11000; i += i == 2999 ? 7001 : 1) check(db, i, i < 3000 ? -1 : 0, vlen, 1);
    TU_OK(kv_close(db, &err), &err);
    TU_OK(kv_open(&o, &db, &err), &err);
    for (int i = 0; i < 11000; i += i == 2996 ? 7004 : 4) check(db, i, i < 3000 ? -1 : 0, vlen, 1);
    TU_OK(kv_close(db, &err), &err);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

/* A dropped prefix whose keys share a table with others: with nothing
 * else to do, the compactor rewrites that table, so the dropped values
 * count as discardable and the drop retires. */
START_TEST(test_drop_rewrites_shared_tables)
{
    char *dir = tu_mkdtemp("vdrops");
    kv_options o;
    kv_db *db;
    kv_err err;
    kv_stats st;
    kv_table_info ti[64];
    const int n = 3000, vlen = 1000;
    const uint64_t dropped = 1000u * vlen; /* keys 1000..1999 */
    vopts(&o, dir);
    TU_OK(kv_open(&o, &db, &err), &err);
    for (int i = 0; i < n; i++) TU_OK(put(db, i, 0, vlen, 0), NULL);
    TU_OK(kv_flush(db, &err), &err);
    TU_OK(kv_compact_all(db, &err), &err);
    ck_assert_int_eq(kv_get_tables(db, ti, 64), 1); /* every key in one table */
    TU_OK(kv_drop_prefix(db, "key-001", 7, &err), &err);
    for (int i = 0; i < 200; i++) {
        kv_get_stats(db, &st);
        if (st.vlog_discard_bytes >= dropped && st.drops_in_effect == 0) break;
        usleep(25 * 1000);
    }
    ck_assert_msg(st.vlog_discard_bytes >= dropped && st.vlog_discard_bytes <= 1000u * (vlen + 64),
                  "discard %llu for %llu dropped value bytes",
                  (unsigned long long)st.vlog_discard_bytes, (unsigned long long)dropped);
    ck_assert_uint_eq(st.drops_in_effect, 0);
    for (int i = 0; i < n; i++) check(db, i, i >= 1000 && i < 2000 ? -1 : 0, vlen, 1);
    TU_OK(kv_close(db, &err), &err);
    TU_OK(kv_open(&o, &db, &err), &err);
    for (int i = 0; i < n; i += 3) check(db, i, i >= 1000 && i < 2000 ? -1 : 0, vlen, 1);
    TU_OK(kv_close(db, &err), &err);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

/* 1 if files in dir can be opened with O_DIRECT (not on tmpfs, say). */
static int direct_io_works(const char *dir)
{
    char path[4200];
    int fd;
    snprintf(path, sizeof path, "%s/direct-probe", dir);
    fd = open(path, O_RDWR | O_CREAT | O_DIRECT, 0600);
    if (fd >= 0) close(fd);
    unlink(path);
    return fd >= 0;
}

static size_t bulk_len(int key)
{
    return 700 + (size_t)(key * 37) % 1301; /* odd sizes: no write ends aligned */
}

/* A spilling transaction's values are appended with O_DIRECT (their
 * block-aligned middle; the unaligned ends through the page cache), between
 * ordinary buffered commits to the same head: every value reads back, also
 * after a reopen (the last file is scanned again), and a later buffered
 * commit continues the file correctly. */
START_TEST(test_bulk_values_direct)
{
    char *dir = tu_mkdtemp("vbulk");
    kv_options o;
    kv_db *db;
    kv_txn *t;
    kv_err err;
    kv_stats s;
    char k[32], v[2100];
    int direct = direct_io_works(dir);
    vopts(&o, dir);
    o.value_log_file_size = 32 << 20;
    o.max_txn_memory = 6 << 20; /* spills, each value-log append over a megabyte */
    TU_OK(kv_open(&o, &db, &err), &err);
    for (int i = 0; i < 5; i++) TU_OK(put(db, i, 0, 333, 0), NULL); /* an unaligned head */
    for (int round = 0; round < 2; round++) {
        TU_OK(kv_txn_begin(db, 1, &t, &err), &err);
        for (int i = 100; i < 9100; i++) {
            snprintf(k, sizeof k, "key-%06d", i);
            value_of(v, bulk_len(i), i, round);
            TU_OK(kv_txn_set(t, k, strlen(k), v, bulk_len(i), &err), &err);
        }
        TU_OK(kv_txn_commit(t, NULL, NULL, &err), &err);
        kv_txn_free(t);
        for (int i = 5; i < 10; i++) TU_OK(put(db, i + round * 5, 0, 333, 0), NULL);
        for (int i = 100; i < 9100; i += 7) check(db, i, round, bulk_len(i), 1);
    }
    kv_get_stats(db, &s);
    if (direct)
        ck_assert_msg(s.vlog_direct_bytes > 8u << 20, "only %llu bytes written directly",
                      (unsigned long long)s.vlog_direct_bytes);
    else
        ck_assert_uint_eq(s.vlog_direct_bytes, 0);
    TU_OK(kv_close(db, &err), &err);
    TU_OK(kv_open(&o, &db, &err), &err);
    for (int i = 0; i < 15; i++) check(db, i, 0, 333, 1);
    for (int i = 100; i < 9100; i++) check(db, i, 1, bulk_len(i), 1);
    TU_OK(kv_close(db, &err), &err);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

/* Key ranges: every key of a set lies under a prefix exactly when both cut
 * ends do; keys longer than the cut, a prefix longer than the cut, and a
 * set whose keys were not all seen. */
START_TEST(test_vkeys_ranges)
{
    kv_vkeys k, u;
    const char *longk = "tab1/0123456789abcdefghij"; /* longer than the cut */
    k.state = KV_VKEYS_NONE;
    ck_assert(!kv_vkeys_under(&k, (const uint8_t *)"", 0));
    kv_vkeys_add(&k, (const uint8_t *)"tab1/k2", 7);
    kv_vkeys_add(&k, (const uint8_t *)"tab1/k1", 7);
    kv_vkeys_add(&k, (const uint8_t *)longk, strlen(longk));
    ck_assert(kv_vkeys_under(&k, (const uint8_t *)"", 0));
    ck_assert(kv_vkeys_under(&k, NULL, 0)); /* (DropAll) */
    ck_assert(kv_vkeys_under(&k, (const uint8_t *)"tab1/", 5));
    ck_assert(!kv_vkeys_under(&k, (const uint8_t *)"tab1/k", 6)); /* "tab1/0..." is not */
    ck_assert(!kv_vkeys_under(&k, (const uint8_t *)"tab2", 4));
    ck_assert(!kv_vkeys_under(&k, (const uint8_t *)longk, 17)); /* longer than the cut */
    kv_vkeys_add(&k, (const uint8_t *)"tab", 3); /* shorter than the prefix */
    ck_assert(!kv_vkeys_under(&k, (const uint8_t *)"tab1", 4));
    ck_assert(kv_vkeys_under(&k, (const uint8_t *)"tab", 3));
    u.state = KV_VKEYS_NONE;
    kv_vkeys_merge(&u, &k);
    ck_assert(kv_vkeys_under(&u, (const uint8_t *)"tab", 3));
    kv_vkeys_add(&u, (const uint8_t *)"tab9", 4);
    ck_assert(kv_vkeys_under(&u, (const uint8_t *)"tab", 3));
    kv_vkeys_add(&u, (const uint8_t *)"taa", 3);
    ck_assert(!kv_vkeys_under(&u, (const uint8_t *)"tab", 3));
    kv_vkeys_merge(&k, NULL); /* keys not seen */
    ck_assert_int_eq(k.state, KV_VKEYS_UNKNOWN);
    ck_assert(!kv_vkeys_under(&k, (const uint8_t *)"", 0));
    kv_vkeys_add(&k, (const uint8_t *)"tab", 3);
    ck_assert(!kv_vkeys_under(&k, (const uint8_t *)"", 0));
}
END_TEST

/* The state of file fid in the file table, 0 if it is not there. */
static int vlog_state(kv_db *db, uint32_t fid)
{
    kv_vlog_info vi[128];
    int n = kv_get_vlog_files(db, vi, 128);
    for (int i = 0; i < n && i < 128; i++)
        if (vi[i].fid == fid) return vi[i].state;
    return 0;
}

/* The number of db's value-log files; *first = the least file id, and
 * *head (if non-NULL) the head's (0 if none). */
static int vlog_ends(kv_db *db, uint32_t *first, uint32_t *head)
{
    kv_vlog_info vi[128];
    int n = kv_get_vlog_files(db, vi, 128);
    *first = UINT32_MAX;
    if (head) *head = 0;
    for (int i = 0; i < n && i < 128; i++) {
        if (vi[i].fid < *first) *first = vi[i].fid;
        if (head && vi[i].state == 1) *head = vi[i].fid;
    }
    return n;
}

/* Waits for file fid to leave the table and the disk. */
static void wait_gone(kv_db *db, const char *dir, uint32_t fid)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%06u.vlog", dir, fid);
    for (int i = 0; i < 400 && (vlog_state(db, fid) || access(path, F_OK) == 0); i++) {
        kv_err err;
        kv_status st = kv_run_value_log_gc(db, 0.99, &err); /* (reaps) */
        ck_assert_msg(st == KV_OK || st == KV_NO_REWRITE, "gc: %s", err.msg);
        usleep(25 * 1000);
    }
    ck_assert_msg(!vlog_state(db, fid) && access(path, F_OK) != 0, "file %u is still there", fid);
}

/* A file holding nothing but keys under a dropped prefix is freed without
 * being read: GC would stop at the damaged entry header in it, and keep
 * the file, if it read it.  A file that also holds other keys is read as
 * usual, a head holding only dropped keys is sealed by the drop, and
 * readers from before the drop keep their values until they finish. */
START_TEST(test_drop_frees_files_unread)
{
    char *dir = tu_mkdtemp("vdropf");
    kv_options o;
    kv_db *db;
    kv_err err;
    kv_txn *snap;
    kv_buf b = {0};
    char path[4200], k[32], want[1000];
    const int vlen = 1000;
    uint32_t first, head;
    vopts(&o, dir);
    TU_OK(kv_open(&o, &db, &err), &err);
    /* key-00...: two files and part of a third; key-01... the rest of it,
     * one more file and a head */
    for (int i = 0; i < 3000; i++) TU_OK(put(db, i, 0, vlen, 0), NULL);
    for (int i = 10000; i < 11500; i++) TU_OK(put(db, i, 0, vlen, 0), NULL);
    ck_assert_int_ge(vlog_ends(db, &first, &head), 5);
    snprintf(path, sizeof path, "%s/%06u.vlog", dir, first);
    damage_entry(path, 100, 0, vlen, 1);
    TU_OK(kv_txn_begin(db, 0, &snap, &err), &err);

    TU_OK(kv_drop_prefix(db, "key-00", 6, &err), &err);
    ck_assert_int_eq(vlog_state(db, head), 1); /* it holds key-01 keys too */
    TU_OK(kv_run_value_log_gc(db, 0.5, &err), &err);
    ck_assert_int_eq(vlog_state(db, first), 3); /* doomed, not found damaged */
    /* the snapshot from before the drop still reads its values */
    snprintf(k, sizeof k, "key-%06d", 5);
    TU_OK(kv_txn_get(snap, k, strlen(k), &b, NULL, &err), &err);
    value_of(want, vlen, 5, 0);
    ck_assert(b.len == (size_t)vlen && !memcmp(b.data, want, vlen));
    kv_buf_free(&b);
    ck_assert_int_eq(access(path, F_OK), 0);
    kv_txn_free(snap);
    wait_gone(db, dir, first);
    for (int i = 0; i < 3000; i += 7) check(db, i, -1, vlen, -1);
    for (int i = 10000; i < 11500; i++) check(db, i, 0, vlen, 1);

    /* the head holds only key-01 keys: the drop seals it, and writes after
     * the drop go to a new head */
    TU_OK(kv_drop_prefix(db, "key-01", 6, &err), &err);
    ck_assert_int_eq(vlog_state(db, head), 2);
    for (int i = 10000; i < 10100; i++) TU_OK(put(db, i, 1, vlen, 0), NULL);
    TU_OK(kv_run_value_log_gc(db, 0.5, &err), &err);
    wait_gone(db, dir, head);
    for (int i = 10000; i < 11500; i++) check(db, i, i < 10100 ? 1 : -1, vlen, 1);
    TU_OK(kv_close(db, &err), &err);
    TU_OK(kv_open(&o, &db, &err), &err);
    for (int i = 0; i < 3000; i += 7) check(db, i, -1, vlen, -1);
    for (int i = 10000; i < 11500; i++) check(db, i, i < 10100 ? 1 : -1, vlen, 1);
    TU_OK(kv_close(db, &err), &err);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

/* Key ranges survive a reopen: a drop after it frees the files written
 * before it without reading them (the damaged entry in the first file
 * would stop GC, which would keep the file).  Sealed files' ranges come
 * from DISCARD, the last file's from the scan at open; with DISCARD gone
 * the first file is not freed unread, the last one still is. */
START_TEST(test_drop_frees_files_unread_after_reopen)
{
    for (int lose = 0; lose < 2; lose++) {
        char *dir = tu_mkdtemp("vdropr");
        kv_options o;
        kv_db *db;
        kv_err err;
        char path[4200];
        const int vlen = 1000;
        uint32_t first, last;
        vopts(&o, dir);
        TU_OK(kv_open(&o, &db, &err), &err);
        /* key-00... fills the first files, key-01... shares a file with
         * both, and key-00... again fills the rest, the head included */
        for (int i = 0; i < 3000; i++) TU_OK(put(db, i, 0, vlen, 0), NULL);
        for (int i = 10000; i < 10500; i++) TU_OK(put(db, i, 0, vlen, 0), NULL);
        for (int i = 3000; i < 5500; i++) TU_OK(put(db, i, 0, vlen, 0), NULL);
        ck_assert_int_ge(vlog_ends(db, &first, &last), 6);
        TU_OK(kv_close(db, &err), &err);
        snprintf(path, sizeof path, "%s/%06u.vlog", dir, first);
        damage_entry(path, 100, 0, vlen, 1);
        if (lose) {
            char dpath[4200];
            snprintf(dpath, sizeof dpath, "%s/DISCARD", dir);
            ck_assert_int_eq(unlink(dpath), 0);
        }
        TU_OK(kv_open(&o, &db, &err), &err);
        ck_assert_int_eq(vlog_state(db, first), 2);
        ck_assert_int_eq(vlog_state(db, last), 2); /* (a fresh head was started) */
        TU_OK(kv_drop_prefix(db, "key-00", 6, &err), &err);
        TU_OK(kv_run_value_log_gc(db, 0.5, &err), &err);
        /* doomed unread (or already deleted); without its range, still
         * there (left to GC's reading, which finds the damage) */
        if (lose) {
            int fs = vlog_state(db, first);
            ck_assert_msg(fs == 2 || fs == 4, "file %u in state %d", first, fs);
            ck_assert_int_eq(access(path, F_OK), 0);
        } else {
            int fs = vlog_state(db, first);
            ck_assert_msg(fs == 0 || fs == 3, "file %u in state %d", first, fs);
            wait_gone(db, dir, first);
        }
        wait_gone(db, dir, last);
        for (int i = 0; i < 5500; i += 7) check(db, i, -1, vlen, -1);
        for (int i = 10000; i < 10500; i++) check(db, i, 0, vlen, 1);
        TU_OK(kv_close(db, &err), &err);
        TU_OK(kv_open(&o, &db, &err), &err);
        for (int i = 10000; i < 10500; i++) check(db, i, 0, vlen, 1);
        TU_OK(kv_close(db, &err), &err);
        tu_rmdir(dir);
        free(dir);
    }
}
END_TEST

/* Entries of dir's DISCARD that carry the dropped flag (-1: none valid). */
static int discard_dropped(const char *dir)
{
    char path[4200];
    uint8_t *buf;
    uint32_t count, version;
    int fd, n = 0;
    struct stat sb;
    snprintf(path, sizeof path, "%s/DISCARD", dir);
    fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    if (fstat(fd, &sb) != 0 || sb.st_size <= 0 || !(buf = malloc((size_t)sb.st_size))) {
        close(fd);
        return -1;
    }
    if (pread(fd, buf, (size_t)sb.st_size, 0) != sb.st_size ||
        kv_discard_check(buf, (size_t)sb.st_size, &count, &version) != 0)
        n = -1;
    for (uint32_t i = 0; n >= 0 && i < count; i++) {
        kv_discard_ent e;
        kv_discard_entry(buf, version, i, &e);
        n += e.dropped != 0;
    }
    free(buf);
    close(fd);
    return n;
}

/* Fills value-log files with key-00... values, then key-01... ones, and
 * drops key-00: the files holding only the dropped keys are marked. */
static void fill_and_drop(kv_db *db)
{
    kv_vlog_info vi[64];
    kv_err err;
    int nv, marked = 0;
    for (int i = 0; i < 3000; i++) TU_OK(put(db, i, 0, 1000, 0), NULL);
    for (int i = 10000; i < 10500; i++) TU_OK(put(db, i, 0, 1000, 0), NULL);
    TU_OK(kv_drop_prefix(db, "key-00", 6, &err), &err);
    nv = kv_get_vlog_files(db, vi, 64);
    for (int i = 0; i < nv; i++) marked += vi[i].state == 2 && vi[i].discard_ratio == 1.0;
    ck_assert_int_ge(marked, 2);
}

/* A file a drop emptied before a close or a crash is still freed unread
 * after the reopen: its mark is kept in DISCARD.  (Reading it, GC would
 * stop at the damaged entry header and keep the file.) */
START_TEST(test_drop_mark_survives_reopen)
{
    for (int crash = 0; crash < 2; crash++) {
        char *dir = tu_mkdtemp("vdropm");
        kv_options o;
        kv_db *db;
        kv_err err;
        char path[4200];
        uint32_t first;
        vopts(&o, dir);
        if (crash) {
            /* the GC thread writes DISCARD at its next tick; the process
             * dies once the marks are in it */
            int status;
            pid_t pid = fork();
            if (pid == 0) {
                if (kv_open(&o, &db, &err) != KV_OK) _exit(2);
                fill_and_drop(db);
                for (int i = 0; i < 400 && discard_dropped(dir) < 2; i++) usleep(25 * 1000);
                _exit(discard_dropped(dir) >= 2 ? 0 : 4);
            }
            waitpid(pid, &status, 0);
            ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        } else {
            TU_OK(kv_open(&o, &db, &err), &err);
            fill_and_drop(db);
            TU_OK(kv_close(db, &err), &err);
        }
        ck_assert_int_ge(discard_dropped(dir), 2);
        TU_OK(kv_open(&o, &db, &err), &err);
        vlog_ends(db, &first, NULL);
        TU_OK(kv_close(db, &err), &err);
        snprintf(path, sizeof path, "%s/%06u.vlog", dir, first);
        damage_entry(path, 100, 0, 1000, 1);
        TU_OK(kv_open(&o, &db, &err), &err);
        ck_assert_int_eq(vlog_state(db, first), 2);
        TU_OK(kv_run_value_log_gc(db, 0.5, &err), &err);
        {
            int fs = vlog_state(db, first);
            ck_assert_msg(fs == 0 || fs == 3, "file %u in state %d", first, fs);
        }
        wait_gone(db, dir, first);
        for (int i = 0; i < 3000; i += 7) check(db, i, -1, 1000, -1);
        for (int i = 10000; i < 10500; i++) check(db, i, 0, 1000, 1);
        TU_OK(kv_close(db, &err), &err);
        TU_OK(kv_open(&o, &db, &err), &err);
        for (int i = 10000; i < 10500; i++) check(db, i, 0, 1000, 1);
        TU_OK(kv_close(db, &err), &err);
        tu_rmdir(dir);
        free(dir);
    }
}
END_TEST

/* DISCARD may name files that are gone (it is written before they are
 * deleted); their ids never come back, so no new file takes on a range
 * recorded for an old one. */
START_TEST(test_discard_ids_not_reused)
{
    char *dir = tu_mkdtemp("vdids");
    kv_options o;
    kv_db *db;
    kv_err err;
    kv_vlog_info vi[64];
    kv_discard_ent e;
    char path[4200];
    uint8_t *buf;
    int nv, fd;
    vopts(&o, dir);
    TU_OK(kv_open(&o, &db, &err), &err);
    for (int i = 0; i < 10; i++) TU_OK(put(db, i, 0, 1000, 0), NULL);
    TU_OK(kv_close(db, &err), &err);
    /* a DISCARD naming file 5000, under key-00, long gone */
    memset(&e, 0, sizeof e);
    e.fid = 5000;
    e.keys.state = KV_VKEYS_NONE;
    kv_vkeys_add(&e.keys, (const uint8_t *)"key-000001", 10);
    buf = calloc(1, kv_discard_size(1));
    kv_discard_encode_header(buf, 1, KV_DISCARD_CLEAN);
    kv_discard_encode_entry(buf, 0, &e);
    kv_discard_seal(buf, 1);
    snprintf(path, sizeof path, "%s/DISCARD", dir);
    fd = open(path, O_WRONLY | O_TRUNC);
    ck_assert(fd >= 0 && write(fd, buf, kv_discard_size(1)) == (ssize_t)kv_discard_size(1));
    close(fd);
    free(buf);
    TU_OK(kv_open(&o, &db, &err), &err);
    for (int i = 100; i < 2500; i++) TU_OK(put(db, i, 0, 1000, 0), NULL);
    nv = kv_get_vlog_files(db, vi, 64);
    for (int i = 0; i < nv; i++)
        if (vi[i].state == 1) ck_assert_uint_gt(vi[i].fid, 5000);
    TU_OK(kv_close(db, &err), &err);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

/* Writes a DISCARD without entries: version 2 with flags, or version 1. */
static void plant_discard(const char *dir, int version, uint32_t flags)
{
    uint8_t buf[24];
    char path[4200];
    int fd;
    kv_discard_encode_header(buf, 0, flags);
    if (version == 1) kv_put_u32(buf + 4, 1);
    kv_discard_seal(buf, 0); /* (no entries: the same size in both versions) */
    snprintf(path, sizeof path, "%s/DISCARD", dir);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ck_assert(fd >= 0 && write(fd, buf, sizeof buf) == (ssize_t)sizeof buf);
    close(fd);
}

/* An open that does not follow a clean close (DISCARD not marked clean,
 * from an older version, or lost) counts the value logs' garbage again:
 * values no newest version points to count as dead though no compaction
 * reported them (here their counts were wiped).  After a clean close
 * nothing is counted again. */
START_TEST(test_discard_recount)
{
    for (int variant = 0; variant < 3; variant++) { /* clean, not clean, version 1 */
        char *dir = tu_mkdtemp("vrecount");
        kv_options o;
        kv_db *db;
        kv_err err;
        kv_stats st;
        const int vlen = 1000;
        const uint64_t dead = 1500u * vlen; /* the first generation of keys 0..1499 */
        vopts(&o, dir);
        TU_OK(kv_open(&o, &db, &err), &err);
        for (int i = 0; i < 2000; i++) TU_OK(put(db, i, 0, vlen, 0), NULL);
        for (int i = 0; i < 1500; i++) TU_OK(put(db, i, 1, vlen, 0), NULL);
        TU_OK(kv_compact_all(db, &err), &err); /* (nothing left to compact after the reopen) */
        TU_OK(kv_close(db, &err), &err);
        plant_discard(dir, variant == 2 ? 1 : 2, variant == 0 ? KV_DISCARD_CLEAN : 0);
        TU_OK(kv_open(&o, &db, &err), &err);
        if (variant == 0) {
            usleep(2500 * 1000); /* two ticks of the GC thread */
            kv_get_stats(db, &st);
            ck_assert_uint_eq(st.vlog_discard_bytes, 0);
        } else {
            for (int i = 0; i < 200; i++) {
                kv_get_stats(db, &st);
                if (st.vlog_discard_bytes >= dead) break;
                usleep(50 * 1000);
            }
            ck_assert_msg(st.vlog_discard_bytes >= dead && st.vlog_discard_bytes <= 1500u * (vlen + 64),
                          "discard %llu for %llu dead value bytes",
                          (unsigned long long)st.vlog_discard_bytes, (unsigned long long)dead);
            TU_OK(kv_run_value_log_gc(db, 0.5, &err), &err);
        }
        for (int i = 0; i < 2000; i++) check(db, i, i < 1500 ? 1 : 0, vlen, 1);
        TU_OK(kv_close(db, &err), &err);
        TU_OK(kv_open(&o, &db, &err), &err);
        for (int i = 0; i < 2000; i += 3) check(db, i, i < 1500 ? 1 : 0, vlen, 1);
        TU_OK(kv_close(db, &err), &err);
        tu_rmdir(dir);
        free(dir);
    }
}
END_TEST

/* The DISCARD codec: entries round-trip, version 1 images still read, and
 * every field outside the format's rules is refused. */
START_TEST(test_discard_format)
{
    kv_discard_ent in[3], out;
    uint8_t buf[16 + 3 * 48 + 8], v1[16 + 2 * 16 + 8];
    uint32_t count, version;
    memset(in, 0, sizeof in);
    in[0].fid = 7;
    in[0].discard = 123456789;
    in[0].keys.state = KV_VKEYS_NONE;
    kv_vkeys_add(&in[0].keys, (const uint8_t *)"tab1-aaaaaaaaaaaaaaaaaaaa", 25);
    kv_vkeys_add(&in[0].keys, (const uint8_t *)"tab1-b", 6);
    in[0].dropped = 1;
    in[1].fid = 8; /* no range recorded */
    in[1].dropped = 1;
    in[2].fid = 9;
    in[2].keys.state = KV_VKEYS_NONE; /* no entry: recorded as no range */
    ck_assert_uint_eq(kv_discard_size(3), sizeof buf);
    kv_discard_encode_header(buf, 3, 0);
    for (uint32_t i = 0; i < 3; i++) kv_discard_encode_entry(buf, i, &in[i]);
    kv_discard_seal(buf, 3);
    ck_assert_int_eq(kv_discard_check(buf, sizeof buf, &count, &version), 0);
    ck_assert_uint_eq(count, 3);
    ck_assert_uint_eq(version, 2);
    ck_assert_uint_eq(kv_discard_flags(buf), 0);
    {
        uint8_t c[sizeof buf];
        memcpy(c, buf, sizeof buf);
        kv_discard_encode_header(c, 3, KV_DISCARD_CLEAN);
        kv_discard_seal(c, 3);
        ck_assert_int_eq(kv_discard_check(c, sizeof c, &count, &version), 0);
        ck_assert_uint_eq(kv_discard_flags(c), KV_DISCARD_CLEAN);
    }
    kv_discard_entry(buf, version, 0, &out);
    ck_assert_uint_eq(out.fid, 7);
    ck_assert_uint_eq(out.discard, 123456789);
    ck_assert_int_eq(out.keys.state, KV_VKEYS_RANGE);
    ck_assert(out.keys.min_len == 16 && !memcmp(out.keys.min, "tab1-aaaaaaaaaaa", 16));
    ck_assert(out.keys.max_len == 6 && !memcmp(out.keys.max, "tab1-b", 6));
    ck_assert(kv_vkeys_under(&out.keys, (const uint8_t *)"tab1-", 5));
    ck_assert_uint_eq(out.dropped, 1);
    for (uint32_t i = 1; i < 3; i++) {
        kv_discard_entry(buf, version, i, &out);
        ck_assert_uint_eq(out.fid, in[i].fid);
        ck_assert_int_eq(out.keys.state, KV_VKEYS_UNKNOWN);
        ck_assert_uint_eq(out.dropped, in[i].dropped);
    }
    /* refused: a cut over 16, bytes past a key, least after greatest, an
     * unknown flag, a count that does not fit, a bad checksum */
    {
        struct {
            size_t off;
            uint8_t val;
        } bad[] = {
            {16 + 5, 17}, {16 + 32 + 6, 1}, {16 + 16, 'z'}, {16 + 4, 2},
            {16 + 48 + 5, 1}, {16 + 48 + 20, 1}, {16 + 7, 2}, {16 + 96 + 7, 3}, {8, 2},
            {12, 2}, {4, 3},
        };
        for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
            uint8_t c[sizeof buf];
            memcpy(c, buf, sizeof buf);
            c[bad[b].off] = bad[b].val;
            kv_discard_seal(c, 3); /* (a correct checksum: the field is what is wrong) */
            ck_assert_msg(kv_discard_check(c, sizeof c, &count, &version) != 0, "case %zu", b);
        }
    }
    buf[20] ^= 1;
    ck_assert_int_ne(kv_discard_check(buf, sizeof buf, &count, &version), 0);
    /* version 1: 16-byte entries, no ranges */
    memset(v1, 0, sizeof v1);
    kv_put_u32(v1, KV_DISCARD_MAGIC);
    kv_put_u32(v1 + 4, 1);
    kv_put_u32(v1 + 8, 2);
    kv_put_u32(v1 + 16, 3);
    kv_put_u64(v1 + 24, 99);
    kv_put_u32(v1 + 32, 4);
    kv_put_u64(v1 + sizeof v1 - 8, kv_checksum64(v1, sizeof v1 - 8));
    ck_assert_int_eq(kv_discard_check(v1, sizeof v1, &count, &version), 0);
    ck_assert(count == 2 && version == 1);
    kv_put_u32(v1 + 12, KV_DISCARD_CLEAN); /* (version 1 has no flags) */
    kv_put_u64(v1 + sizeof v1 - 8, kv_checksum64(v1, sizeof v1 - 8));
    ck_assert_int_ne(kv_discard_check(v1, sizeof v1, &count, &version), 0);
    kv_put_u32(v1 + 12, 0);
    kv_put_u64(v1 + sizeof v1 - 8, kv_checksum64(v1, sizeof v1 - 8));
    kv_discard_entry(v1, version, 0, &out);
    ck_assert(out.fid == 3 && out.discard == 99 && out.keys.state == KV_VKEYS_UNKNOWN);
    kv_discard_entry(v1, version, 1, &out);
    ck_assert(out.fid == 4 && out.discard == 0);
}
END_TEST

/* A transaction that spilled values under a prefix before the prefix was
 * dropped, and commits after the drop: its values are live, though every
 * key in their files lies under the drop.  The drop must not free those
 * files (they are pinned by the transaction). */
START_TEST(test_drop_spares_spilling_txn)
{
    char *dir = tu_mkdtemp("vdrops");
    kv_options o;
    kv_db *db;
    kv_err err;
    kv_txn *t;
    char k[32], *v = malloc(1000);
    const int vlen = 1000, n = 6000; /* 6 MB: past the first spill chunk */
    vopts(&o, dir);
    o.max_txn_memory = 64 << 10;
    TU_OK(kv_open(&o, &db, &err), &err);
    for (int i = 20000; i < 20010; i++) TU_OK(put(db, i, 0, vlen, 0), NULL);
    TU_OK(kv_txn_begin(db, 1, &t, &err), &err);
    for (int i = 20000; i < 20000 + n; i++) {
        snprintf(k, sizeof k, "key-%06d", i);
        value_of(v, vlen, i, 1);
        TU_OK(kv_txn_set(t, k, strlen(k), v, vlen, &err), &err);
    }
    ck_assert_uint_gt(vlog_bytes(db, NULL), (uint64_t)n / 2 * vlen); /* spilled to the log */
    TU_OK(kv_drop_prefix(db, "key-02", 6, &err), &err);
    check(db, 20001, -1, vlen, -1);
    TU_OK(kv_txn_commit(t, NULL, NULL, &err), &err);
    kv_txn_free(t);
    gc_all(db, 0.01);
    usleep(100 * 1000);
    gc_all(db, 0.01);
    for (int i = 20000; i < 20000 + n; i++) check(db, i, 1, vlen, 1);
    TU_OK(kv_close(db, &err), &err);
    TU_OK(kv_open(&o, &db, &err), &err);
    for (int i = 20000; i < 20000 + n; i++) check(db, i, 1, vlen, 1);
    TU_OK(kv_close(db, &err), &err);
    free(v);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

/* The files of a running large transaction (state 5, "being written"),
 * at most max, into fids; returns how many. */
static int own_files(kv_db *db, uint32_t *fids, int max)
{
    kv_vlog_info vi[256];
    int n = kv_get_vlog_files(db, vi, 256), k = 0;
    for (int i = 0; i < n && i < 256 && k < max; i++)
        if (vi[i].state == 5) fids[k++] = vi[i].fid;
    return k;
}

/* Sets keys [from, from + n) to generation gen's 1000-byte values. */
static void txn_fill(kv_txn *t, int from, int n, int gen)
{
    char k[32], v[1000];
    kv_err err;
    for (int i = from; i < from + n; i++) {
        snprintf(k, sizeof k, "key-%06d", i);
        value_of(v, sizeof v, i, gen);
        TU_OK(kv_txn_set(t, k, strlen(k), v, sizeof v, &err), &err);
    }
}

/* The value logs in dir whose header is not valid (zeroed), at most max,
 * into fids; returns how many. */
static int zeroed_vlogs(const char *dir, uint32_t *fids, int max)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int k = 0;
    ck_assert(d != NULL);
    while ((e = readdir(d)) && k < max) {
        char path[4200];
        uint8_t hdr[KV_VLOG_HEADER_SIZE];
        unsigned fid;
        FILE *f;
        if (sscanf(e->d_name, "%u.vlog", &fid) != 1 || !strstr(e->d_name, ".vlog")) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (!(f = fopen(path, "rb"))) continue;
        if (fread(hdr, 1, sizeof hdr, f) != sizeof hdr ||
            kv_vlog_header_check(hdr, sizeof hdr, fid) != 0)
            fids[k++] = fid;
        fclose(f);
    }
    closedir(d);
    return k;
}

/* A spilling transaction writes its values to value-log files of its own
 * (vlog_bulk.h): while it runs they are "being written" (state 5), several
 * of them (a 4 MiB chunk each: ValueLogFileSize is 1 MiB here), and its
 * own values read back mid-way (written out first).  The commit seals
 * them with a real header and they survive a reopen.  A transaction that
 * is discarded, or loses a conflict at commit, leaves its files to GC,
 * which frees them; one whose process dies leaves files with a zeroed
 * header, which the next open removes. */
START_TEST(test_txn_own_files)
{
    char *dir = tu_mkdtemp("vown");
    kv_options o;
    kv_db *db;
    kv_err err;
    kv_txn *t;
    uint32_t fids[64], gone[64];
    int nf, ng, status;
    const int n = 12000; /* 12 MB */
    pid_t pid;
    vopts(&o, dir);
    o.max_txn_memory = 64 << 10;
    TU_OK(kv_open(&o, &db, &err), &err);
    TU_OK(kv_txn_begin(db, 1, &t, &err), &err);
    txn_fill(t, 20000, n, 1);
    nf = own_files(db, fids, 64);
    ck_assert_msg(nf >= 2, "%d files of its own while the transaction runs", nf);
    {
        char k[32], v[1000];
        kv_buf val = {0};
        snprintf(k, sizeof k, "key-%06d", 20000 + n - 1); /* the newest: not written out yet */
        TU_OK(kv_txn_get(t, k, strlen(k), &val, NULL, &err), &err);
        value_of(v, sizeof v, 20000 + n - 1, 1);
        ck_assert_msg(val.len == sizeof v && !memcmp(val.data, v, sizeof v), "own value mid-way");
        kv_buf_free(&val);
    }
    TU_OK(kv_txn_commit(t, NULL, NULL, &err), &err);
    kv_txn_free(t);
    ck_assert_int_eq(own_files(db, gone, 64), 0);
    for (int i = 0; i < nf; i++) {
        char path[4200];
        uint8_t hdr[KV_VLOG_HEADER_SIZE];
        FILE *f;
        ck_assert_int_eq(vlog_state(db, fids[i]), 2); /* sealed */
        snprintf(path, sizeof path, "%s/%06u.vlog", dir, fids[i]);
        ck_assert((f = fopen(path, "rb")) != NULL);
        ck_assert_uint_eq(fread(hdr, 1, sizeof hdr, f), sizeof hdr);
        fclose(f);
        ck_assert_msg(kv_vlog_header_check(hdr, sizeof hdr, fids[i]) == 0, "file %u header",
                      fids[i]);
    }
    for (int i = 20000; i < 20000 + n; i++) check(db, i, 1, 1000, 1);

    /* discarded: freed by GC; the committed values stay */
    TU_OK(kv_txn_begin(db, 1, &t, &err), &err);
    txn_fill(t, 20000, n, 2);
    ng = own_files(db, gone, 64);
    ck_assert_int_ge(ng, 2);
    kv_txn_discard(t);
    kv_txn_free(t);
    for (int i = 0; i < ng; i++) wait_gone(db, dir, gone[i]);
    for (int i = 20000; i < 20000 + n; i += 3) check(db, i, 1, 1000, 1);

    /* a commit that loses a conflict: its files are freed too */
    TU_OK(kv_txn_begin(db, 1, &t, &err), &err);
    {
        kv_buf val = {0};
        TU_OK(kv_txn_get(t, "key-020000", 10, &val, NULL, &err), &err);
        kv_buf_free(&val);
    }
    txn_fill(t, 40000, n, 4);
    ng = own_files(db, gone, 64);
    ck_assert_int_ge(ng, 2);
    {
        kv_txn *w; /* writes a key it read, after its read */
        TU_OK(kv_txn_begin(db, 1, &w, &err), &err);
        txn_fill(w, 20000, 1, 5);
        TU_OK(kv_txn_commit(w, NULL, NULL, &err), &err);
        kv_txn_free(w);
    }
    ck_assert_int_eq(kv_txn_commit(t, NULL, NULL, &err), KV_CONFLICT);
    kv_txn_free(t);
    for (int i = 0; i < ng; i++) wait_gone(db, dir, gone[i]);
    check(db, 20000, 5, 1000, 1);
    check(db, 40000, -1, 0, -1);
    TU_OK(kv_close(db, &err), &err);

    /* the process dies mid-transaction */
    pid = fork();
    if (pid == 0) {
        kv_db *cdb;
        if (kv_open(&o, &cdb, &err) != KV_OK || kv_txn_begin(cdb, 1, &t, &err) != KV_OK) _exit(2);
        txn_fill(t, 20000, n, 3);
        _exit(own_files(cdb, gone, 64) >= 2 ? 0 : 4);
    }
    waitpid(pid, &status, 0);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ng = zeroed_vlogs(dir, gone, 64);
    ck_assert_msg(ng >= 2, "the dead transaction left %d files with a zeroed header", ng);
    TU_OK(kv_open(&o, &db, &err), &err);
    ng = zeroed_vlogs(dir, gone, 64); /* (their ids may be taken again: nothing used them) */
    ck_assert_msg(ng == 0, "%d files with a zeroed header survived the open", ng);
    check(db, 20000, 5, 1000, 1);
    for (int i = 20001; i < 20000 + n; i++) check(db, i, 1, 1000, 1);
    TU_OK(kv_close(db, &err), &err);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

/* Two directories: LSM in Dir, values in ValueDir. */
START_TEST(test_separate_value_dir)
{
    char *dir = tu_mkdtemp("vd1"), *vdir = tu_mkdtemp("vd2");
    kv_options o;
    kv_db *db;
    kv_err err;
    char path[4200];
    vopts(&o, dir);
    snprintf(o.value_dir, sizeof o.value_dir, "%s", vdir);
    TU_OK(kv_open(&o, &db, &err), &err);
    for (int i = 0; i < 100; i++) TU_OK(put(db, i, 0, 400, 0), NULL);
    TU_OK(kv_close(db, &err), &err);
    snprintf(path, sizeof path, "ls %s/*.vlog >/dev/null 2>&1", vdir);
    ck_assert_int_eq(system(path), 0);
    snprintf(path, sizeof path, "ls %s/*.vlog >/dev/null 2>&1", dir);
    ck_assert_int_ne(system(path), 0);
    TU_OK(kv_open(&o, &db, &err), &err);
    for (int i = 0; i < 100; i++) check(db, i, 0, 400, 1);
    TU_OK(kv_close(db, &err), &err);
    tu_rmdir(dir);
    tu_rmdir(vdir);
    free(dir);
    free(vdir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("vlog");
    TCase *tc = tcase_create("vlog");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_values_separated);
    tcase_add_test(tc, test_prefetching_iterators);
    tcase_add_test(tc, test_rotation);
    tcase_add_test(tc, test_torn_vlog_tail);
    tcase_add_test(tc, test_synced_vlog_damage_is_corruption);
    tcase_add_test(tc, test_synced_small_writes_in_wal);
    tcase_add_test(tc, test_synced_small_writes_sync_only_the_wal);
    tcase_add_test(tc, test_gc_keeps_damaged_file);
    tcase_add_test(tc, test_missing_vlog_file);
    tcase_add_test(tc, test_gc_reclaims_space);
    tcase_add_test(tc, test_gc_nothing_to_do);
    tcase_add_test(tc, test_gc_rotates_head);
    tcase_add_test(tc, test_gc_and_snapshots);
    tcase_add_test(tc, test_gc_races_writers);
    tcase_add_test(tc, test_discard_persisted);
    tcase_add_test(tc, test_drop_counts_discard);
    tcase_add_test(tc, test_drop_rewrites_shared_tables);
    tcase_add_test(tc, test_vkeys_ranges);
    tcase_add_test(tc, test_drop_frees_files_unread);
    tcase_add_test(tc, test_drop_frees_files_unread_after_reopen);
    tcase_add_test(tc, test_drop_mark_survives_reopen);
    tcase_add_test(tc, test_discard_ids_not_reused);
    tcase_add_test(tc, test_discard_format);
    tcase_add_test(tc, test_discard_recount);
    tcase_add_test(tc, test_drop_spares_spilling_txn);
    tcase_add_test(tc, test_txn_own_files);
    tcase_add_test(tc, test_separate_value_dir);
    tcase_add_test(tc, test_bulk_values_direct);
    suite_add_tcase(s, tc);
    tu_seed();
    return tu_run(s);
}
