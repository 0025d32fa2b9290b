/*
 * test_recovery.c - what open does with what it finds on disk: WAL replay
 * after a process dies without closing, torn WAL tails, empty WALs,
 * corrupt or missing tables and manifests (KV_CORRUPTION with file and
 * offset, never a crash), leftover tables, manifest rewrite, directory
 * locks (KV_LOCKED with the holder's pid, shared locks for ReadOnly), and
 * option validation.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

static void put_n(kv_db *db, int from, int to, int sync)
{
    kv_batch *b = kv_batch_new();
    kv_write_options wo = {sync};
    kv_err err;
    char k[32], v[64];
    for (int i = from; i < to; i++) {
        snprintf(k, sizeof k, "k%07d", i);
        snprintf(v, sizeof v, "v%07d-%s", i, "payload-payload-payload");
        TU_OK(kv_batch_put(b, k, strlen(k), v, strlen(v), &err), &err);
        TU_OK(kv_write(db, &wo, b, NULL, &err), &err);
        kv_batch_clear(b);
    }
    kv_batch_free(b);
}

static int has(kv_db *db, int i)
{
    char k[32], v[64];
    kv_buf val = {0};
    kv_err err;
    kv_status st;
    int ok;
    snprintf(k, sizeof k, "k%07d", i);
    snprintf(v, sizeof v, "v%07d-%s", i, "payload-payload-payload");
    st = kv_get(db, NULL, k, strlen(k), &val, NULL, &err);
    ck_assert_msg(st == KV_OK || st == KV_NOT_FOUND, "get: %s", err.msg);
    ok = st == KV_OK;
    if (ok) ck_assert(val.len == strlen(v) && !memcmp(val.data, v, val.len));
    kv_buf_free(&val);
    return ok;
}

/* A child writes and exits without kv_close; the parent replays. */
START_TEST(test_replay_after_exit)
{
    char *dir = tu_mkdtemp("rec");
    kv_options o;
    kv_db *db;
    kv_err err;
    pid_t pid;
    int status;
    tu_small_options(&o, dir);
    pid = fork();
    if (pid == 0) {
        if (kv_open(&o, &db, &err) != KV_OK) _exit(2);
        put_n(db, 0, 3000, 0);
        _exit(0); /* no close: memtables only in WALs */
    }
    waitpid(pid, &status, 0);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    TU_OK(kv_open(&o, &db, &err), &err);
    for (int i = 0; i < 3000; i++) ck_assert_msg(has(db, i), "key %d lost", i);
    TU_OK(kv_close(db, &err), &err);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

static char *find_file(const char *dir, const char *suffix)
{
    char cmd[4200];
    static char line[4200];
    FILE *p;
    snprintf(cmd, sizeof cmd, "ls %s/*%s 2>/dev/null | sort | tail -n 1", dir, suffix);
    p = popen(cmd, "r");
    line[0] = 0;
    if (p) {
        if (!fgets(line, sizeof line, p)) line[0] = 0;
        pclose(p);
    }
    line[strcspn(line, "\n")] = 0;
    return line[0] ? line : NULL;
}

static off_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

/* A WAL cut in the middle of a record keeps every record before the cut. */
START_TEST(test_torn_wal_tail)
{
    char *dir = tu_mkdtemp("torn");
    kv_options o;
    kv_db *db;
    kv_err err;
    pid_t pid;
    int status, present = 0;
    char *wal;
    off_t sz;
    tu_small_options(&o, dir);
    o.mem_table_size = 8 << 20; /* everything stays in one WAL */
    pid = fork();
    if (pid == 0) {
        if (kv_open(&o, &db, &err) != KV_OK) _exit(2);
        put_n(db, 0, 500, 0);
        _exit(0);
    }
    waitpid(pid, &status, 0);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    wal = find_file(dir, ".mem");
    ck_assert_msg(wal != NULL, "no WAL left behind");
    sz = file_size(wal);
    ck_assert(sz > 1000);
    ck_assert_int_eq(truncate(wal, sz - 7), 0); /* tear the last record */
    TU_OK(kv_open(&o, &db, &err), &err);
    for (int i = 0; i < 500; i++) present += has(db, i);
    ck_assert_int_eq(present, 499); /* exactly the torn one is gone */
    ck_assert(!has(db, 499));
    TU_OK(kv_close(db, &err), &err);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

/* Synced writes zero-fill the WAL ahead of their records; later writes
 * overwrite the zeros.  A crash can then lose a page of them while later
 * pages made it: the log ends at the hole (a prefix survives), it is not
 * corruption. */
START_TEST(test_wal_hole_ends_log)
{
    char *dir = tu_mkdtemp("walh");
    kv_options o;
    kv_db *db;
    kv_err err;
    pid_t pid;
    int status, fd, present = 0;
    char *wal, zeros[4096] = {0};
    off_t sz;
    tu_small_options(&o, dir);
    o.mem_table_size = 8 << 20;
    pid = fork();
    if (pid == 0) {
        if (kv_open(&o, &db, &err) != KV_OK) _exit(2);
        put_n(db, 0, 100, 1);
        put_n(db, 100, 500, 0);
        _exit(0);
    }
    waitpid(pid, &status, 0);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    wal = find_file(dir, ".mem");
    ck_assert(wal != NULL);
    sz = file_size(wal);
    ck_assert_msg(sz >= (1 << 20), "WAL of %lld bytes: not zero-filled ahead", (long long)sz);
    fd = open(wal, O_RDWR);
    ck_assert(pwrite(fd, zeros, sizeof zeros, 4 * 4096) == (ssize_t)sizeof zeros);
    close(fd);
    TU_OK(kv_open(&o, &db, &err), &err);
    for (int i = 0; i < 500; i++) {
        if (!has(db, i)) break;
        present++;
    }
    for (int i = present; i < 500; i++) ck_assert_msg(!has(db, i), "key %d after a hole", i);
    ck_assert_msg(present >= 100 && present < 500, "%d keys survived", present);
    TU_OK(kv_close(db, &err), &err);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

/* Garbage in the middle of a WAL (not a torn tail) is corruption. */
START_TEST(test_corrupt_wal_middle)
{
    char *dir = tu_mkdtemp("walc");
    kv_options o;
    kv_db *db;
    kv_err err;
    pid_t pid;
    int status, fd;
    char *wal;
    kv_status st;
    tu_small_options(&o, dir);
    o.mem_table_size = 8 << 20;
    pid = fork();
    if (pid == 0) {
        if (kv_open(&o, &db, &err) != KV_OK) _exit(2);
        put_n(db, 0, 200, 0);
        _exit(0);
    }
    waitpid(pid, &status, 0);
    wal = find_file(dir, ".mem");
    ck_assert(wal != NULL);
    fd = open(wal, O_RDWR);
    ck_assert(pwrite(fd, "\xde\xad\xbe\xef", 4, 400) == 4);
    close(fd);
    st = kv_open(&o, &db, &err);
    ck_assert_msg(st == KV_CORRUPTION, "want corruption, got %s", kv_status_str(st));
    ck_assert_msg(strstr(err.msg, ".mem") && strstr(err.msg, "offset"), "message: %s", err.msg);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

static void make_tables(const kv_options *o, int n)
{
    kv_db *db;
    kv_err err;
    TU_OK(kv_open(o, &db, &err), &err);
    put_n(db, 0, n, 0);
    TU_OK(kv_flush(db, &err), &err);
    TU_OK(kv_close(db, &err), &err);
}

START_TEST(test_missing_table)
{
    char *dir = tu_mkdtemp("miss");
    kv_options o;
    kv_db *db;
    kv_err err;
    char *sst;
    kv_status st;
    tu_small_options(&o, dir);
    make_tables(&o, 2000);
    sst = find_file(dir, ".sst");
    ck_assert(sst != NULL);
    ck_assert_int_eq(unlink(sst), 0);
    st = kv_open(&o, &db, &err);
    ck_assert_msg(st == KV_CORRUPTION, "want corruption, got %s: %s", kv_status_str(st), err.msg);
    ck_assert_msg(strstr(err.msg, "missing"), "message: %s", err.msg);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

START_TEST(test_corrupt_table_and_manifest)
{
    char *dir = tu_mkdtemp("corr");
    kv_options o;
    kv_db *db;
    kv_err err;
    char path[4200], *sst;
    kv_status st;
    int fd;
    off_t sz;
    tu_small_options(&o, dir);
    make_tables(&o, 2000);
    /* a table whose footer is damaged */
    sst = find_file(dir, ".sst");
    ck_assert(sst != NULL);
    sz = file_size(sst);
    fd = open(sst, O_RDWR);
    ck_assert(pwrite(fd, "XXXXXXXX", 8, sz - 12) == 8);
    close(fd);
    st = kv_open(&o, &db, &err);
    ck_assert_msg(st == KV_CORRUPTION, "want corruption, got %s", kv_status_str(st));
    ck_assert_msg(strstr(err.msg, ".sst"), "message names the table: %s", err.msg);

    /* a manifest with garbage in a record that is not the last one */
    tu_rmdir(dir);
    mkdir(dir, 0700);
    make_tables(&o, 2000);
    {
        kv_db *d2;
        TU_OK(kv_open(&o, &d2, &err), &err); /* one more record */
        put_n(d2, 2000, 2100, 0);
        TU_OK(kv_flush(d2, &err), &err);
        TU_OK(kv_close(d2, &err), &err);
    }
    snprintf(path, sizeof path, "%s/MANIFEST", dir);
    fd = open(path, O_RDWR);
    ck_assert(pwrite(fd, "\x01\x02\x03\x04\x05\x06", 6, 40) == 6);
    close(fd);
    st = kv_open(&o, &db, &err);
    ck_assert_msg(st == KV_CORRUPTION, "want corruption, got %s", kv_status_str(st));
    ck_assert_msg(strstr(err.msg, "MANIFEST") && strstr(err.msg, "offset"), "message: %s",
                  err.msg);

    /* a manifest that is not one at all */
    fd = open(path, O_RDWR | O_TRUNC);
    ck_assert(write(fd, "hello world, not a manifest", 27) == 27);
    close(fd);
    st = kv_open(&o, &db, &err);
    ck_assert_msg(st == KV_CORRUPTION, "want corruption, got %s", kv_status_str(st));
    tu_rmdir(dir);
    free(dir);
}
END_TEST

START_TEST(test_leftover_table_removed)
{
    char *dir = tu_mkdtemp("left");
    kv_options o;
    kv_db *db;
    kv_err err;
    char path[4200];
    int fd;
    tu_small_options(&o, dir);
    make_tables(&o, 500);
    snprintf(path, sizeof path, "%s/999999.sst", dir);
    fd = open(path, O_CREAT | O_WRONLY, 0600);
    ck_assert(write(fd, "junk", 4) == 4);
    close(fd);
    TU_OK(kv_open(&o, &db, &err), &err);
    ck_assert_msg(access(path, F_OK) != 0, "unreferenced table was not removed");
    for (int i = 0; i < 500; i++) ck_assert(has(db, i));
    TU_OK(kv_close(db, &err), &err);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

/* Many compactions push deletions past the threshold: the manifest is
 * rewritten (it shrinks) and the database still opens with all data. */
START_TEST(test_manifest_rewrite)
{
    char *dir = tu_mkdtemp("mfrw");
    kv_options o;
    kv_db *db;
    kv_err err;
    char path[4200];
    off_t before, after;
    tu_small_options(&o, dir);
    o.manifest_rewrite_threshold = 20;
    o.mem_table_size = 64 << 10;
    TU_OK(kv_open(&o, &db, &err), &err);
    for (int round = 0; round < 30; round++) {
        put_n(db, 0, 100 + round * 10, 0); /* overlapping: each flatten rewrites the table */
        TU_OK(kv_flush(db, &err), &err);
        TU_OK(kv_compact_all(db, &err), &err);
    }
    TU_OK(kv_close(db, &err), &err);
    snprintf(path, sizeof path, "%s/MANIFEST", dir);
    before = file_size(path);
    TU_OK(kv_open(&o, &db, &err), &err);
    for (int i = 0; i < 390; i++) ck_assert_msg(has(db, i), "key %d lost", i);
    TU_OK(kv_close(db, &err), &err);
    after = file_size(path);
    /* 30 rounds of flush + flatten append about 9 KB of records; with a
     * rewrite after every 20 deletions far less remains */
    ck_assert_msg(before < 4096, "manifest is %lld bytes: never rewritten?", (long long)before);
    ck_assert(after > 0);
    snprintf(path, sizeof path, "%s/MANIFEST-REWRITE", dir);
    ck_assert(access(path, F_OK) != 0);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

START_TEST(test_locks)
{
    char *dir = tu_mkdtemp("lock");
    char *vdir = tu_mkdtemp("lockv");
    kv_options o, ro;
    kv_db *db, *db2, *r1, *r2;
    kv_err err;
    char pidstr[32];
    kv_status st;
    tu_small_options(&o, dir);
    snprintf(o.value_dir, sizeof o.value_dir, "%s", vdir);
    TU_OK(kv_open(&o, &db, &err), &err);
    st = kv_open(&o, &db2, &err);
    ck_assert_msg(st == KV_LOCKED, "second open: %s", kv_status_str(st));
    snprintf(pidstr, sizeof pidstr, "pid %ld", (long)getpid());
    ck_assert_msg(strstr(err.msg, pidstr), "holder pid not in message: %s", err.msg);
    /* the value directory is locked too */
    {
        kv_options o2 = o;
        char *other = tu_mkdtemp("lock2");
        snprintf(o2.dir, sizeof o2.dir, "%s", other);
        st = kv_open(&o2, &db2, &err);
        ck_assert_msg(st == KV_LOCKED, "open with a locked ValueDir: %s", kv_status_str(st));
        tu_rmdir(other);
        free(other);
    }
    TU_OK(kv_close(db, &err), &err);
    /* read-only opens share the lock and exclude a writer */
    ro = o;
    ro.read_only = 1;
    TU_OK(kv_open(&ro, &r1, &err), &err);
    TU_OK(kv_open(&ro, &r2, &err), &err);
    st = kv_open(&o, &db2, &err);
    ck_assert_msg(st == KV_LOCKED, "writer beside readers: %s", kv_status_str(st));
    {
        kv_batch *b = kv_batch_new();
        TU_OK(kv_batch_put(b, "x", 1, "y", 1, &err), &err);
        TU_ST(KV_READ_ONLY, kv_write(r1, NULL, b, NULL, &err), &err);
        kv_batch_free(b);
    }
    TU_OK(kv_close(r1, &err), &err);
    TU_OK(kv_close(r2, &err), &err);
    TU_OK(kv_open(&o, &db, &err), &err);
    TU_OK(kv_close(db, &err), &err);
    tu_rmdir(dir);
    tu_rmdir(vdir);
    free(dir);
    free(vdir);
}
END_TEST

/* Read-only open of a database with unflushed WALs sees their data. */
START_TEST(test_read_only_replay)
{
    char *dir = tu_mkdtemp("rorep");
    kv_options o, ro;
    kv_db *db;
    kv_err err;
    pid_t pid;
    int status;
    tu_small_options(&o, dir);
    pid = fork();
    if (pid == 0) {
        if (kv_open(&o, &db, &err) != KV_OK) _exit(2);
        put_n(db, 0, 300, 0);
        _exit(0);
    }
    waitpid(pid, &status, 0);
    ro = o;
    ro.read_only = 1;
    TU_OK(kv_open(&ro, &db, &err), &err);
    for (int i = 0; i < 300; i++) ck_assert(has(db, i));
    TU_OK(kv_close(db, &err), &err);
    ck_assert_msg(find_file(dir, ".mem") != NULL, "read-only open must not consume WALs");
    tu_rmdir(dir);
    free(dir);
}
END_TEST

#define EXPECT_BAD(field, value, name)                                                        \
    do {                                                                                      \
        kv_options o_;                                                                        \
        kv_db *d_;                                                                            \
        kv_err e_;                                                                            \
        kv_options_default(&o_, "/tmp/kvtest-never-created");                                \
        o_.field = value;                                                                     \
        TU_ST(KV_INVALID, kv_open(&o_, &d_, &e_), &e_);                                       \
        ck_assert_msg(strstr(e_.msg, name), "message for %s lacks \"%s\": %s", #field, name,  \
                      e_.msg);                                                                \
    } while (0)

START_TEST(test_option_validation)
{
    kv_options o;

    kv_options_default(&o, "/tmp/x");
    TU_OK(kv_options_validate(&o, NULL), NULL);
    EXPECT_BAD(num_versions_to_keep, 0, "NumVersionsToKeep");
    EXPECT_BAD(compression, (kv_compression)7, "Compression");
    EXPECT_BAD(mem_table_size, 1000, "MemTableSize");
    EXPECT_BAD(base_table_size, 10, "BaseTableSize");
    EXPECT_BAD(base_level_size, 1024, "BaseLevelSize");
    EXPECT_BAD(level_size_multiplier, 1, "LevelSizeMultiplier");
    EXPECT_BAD(table_size_multiplier, 0, "TableSizeMultiplier");
    EXPECT_BAD(max_levels, 1, "MaxLevels");
    EXPECT_BAD(value_threshold, 2 << 20, "ValueThreshold");
    EXPECT_BAD(num_memtables, 0, "NumMemtables");
    EXPECT_BAD(block_size, 10, "BlockSize");
    EXPECT_BAD(bloom_false_positive, 1.5, "BloomFalsePositive");
    EXPECT_BAD(block_cache_size, -1, "BlockCacheSize");
    EXPECT_BAD(index_cache_size, -1, "IndexCacheSize");
    EXPECT_BAD(num_level_zero_tables, 0, "NumLevelZeroTables");
    EXPECT_BAD(num_level_zero_tables_stall, 3, "NumLevelZeroTablesStall");
    EXPECT_BAD(value_log_file_size, 100, "ValueLogFileSize");
    EXPECT_BAD(value_log_max_entries, 0, "ValueLogMaxEntries");
    EXPECT_BAD(num_compactors, -1, "NumCompactors");
    EXPECT_BAD(zstd_compression_level, 0, "ZSTDCompressionLevel");
    EXPECT_BAD(checksum_verification_mode, (kv_checksum_mode)9, "ChecksumVerificationMode");
    EXPECT_BAD(encryption_key_len, 7, "EncryptionKey");
    EXPECT_BAD(in_memory, 1, "InMemory"); /* with a Dir set */
    {
        kv_options b;
        kv_db *d;
        kv_err e;
        kv_options_default(&b, "");
        TU_ST(KV_INVALID, kv_open(&b, &d, &e), &e);
        ck_assert(strstr(e.msg, "Dir"));
        kv_options_default(&b, "/tmp/x");
        b.encryption_key_len = 16;
        b.encryption_key_rotation_seconds = 0;
        TU_ST(KV_INVALID, kv_open(&b, &d, &e), &e);
        ck_assert(strstr(e.msg, "EncryptionKeyRotationDuration"));
    }
    ck_assert_msg(access("/tmp/kvtest-never-created", F_OK) != 0,
                  "a refused open must not create the directory");
}
END_TEST

START_TEST(test_in_memory)
{
    kv_options o;
    kv_db *db;
    kv_err err;
    kv_options_default(&o, NULL);
    o.in_memory = 1;
    o.mem_table_size = 64 << 10;
    o.num_compactors = 2;
    TU_OK(kv_open(&o, &db, &err), &err);
    put_n(db, 0, 3000, 1);
    TU_OK(kv_flush(db, &err), &err);
    TU_OK(kv_compact_all(db, &err), &err);
    for (int i = 0; i < 3000; i++) ck_assert(has(db, i));
    TU_OK(kv_close(db, &err), &err);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("recovery");
    TCase *tc = tcase_create("recovery");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_replay_after_exit);
    tcase_add_test(tc, test_torn_wal_tail);
    tcase_add_test(tc, test_corrupt_wal_middle);
    tcase_add_test(tc, test_wal_hole_ends_log);
    tcase_add_test(tc, test_missing_table);
    tcase_add_test(tc, test_corrupt_table_and_manifest);
    tcase_add_test(tc, test_leftover_table_removed);
    tcase_add_test(tc, test_manifest_rewrite);
    tcase_add_test(tc, test_locks);
    tcase_add_test(tc, test_read_only_replay);
    tcase_add_test(tc, test_option_validation);
    tcase_add_test(tc, test_in_memory);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
