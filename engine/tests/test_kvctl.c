/*
 * test_kvctl.c - runs the kvctl tool as a separate process against real
 * databases built through the public API: info and check on a sound
 * database that still has a WAL (written by a child that exits without
 * closing), the three dump commands, usage errors, a table with a flipped
 * data byte (check exits 1 and names the table) and a MANIFEST cut in the
 * middle of its last record (check reports the torn tail and exits 0).
 *
 * The binary is build/$KV_BUILD_MODE/bin/kvctl (default mode "release"),
 * relative to the engine directory the tests run from.
 */
#include <dirent.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

#include "coding.h"
#include "frame.h"
#include "manifest.h"
#include "sst_format.h"

#define NKEYS 3000
#define NWAL  200

static const char *kvctl_path(void)
{
    static char path[256];
    const char *mode = getenv("KV_BUILD_MODE");

    snprintf(path, sizeof path, "build/%s/bin/kvctl", mode && *mode ? mode : "release");
    ck_assert_msg(access(path, X_OK) == 0, "%s not found (build it, or set KV_BUILD_MODE)",
                  path);
    return path;
}

/* Runs "kvctl <args>" with stderr merged into stdout; returns its exit
 * status and the output in *out (malloc'd, NUL-terminated). */
static int run_kvctl(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int run_kvctl(char **out, const char *fmt, ...)
{
    char args[2048], cmd[4096];
    size_t n = 0, cap = 1 << 16;
    char *buf = malloc(cap);
    va_list ap;
    FILE *p;
    int status;

    ck_assert_ptr_nonnull(buf);
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", kvctl_path(), args);
    p = popen(cmd, "r");
    ck_assert_msg(p != NULL, "popen %s", cmd);
    for (;;) {
        size_t got;
        if (cap - n < 4096) {
            cap *= 2;
            buf = realloc(buf, cap);
            ck_assert_ptr_nonnull(buf);
        }
        got = fread(buf + n, 1, cap - n - 1, p);
        if (got == 0) break;
        n += got;
    }
    buf[n] = '\0';
    status = pclose(p);
    ck_assert_msg(WIFEXITED(status), "%s did not exit normally", cmd);
    *out = buf;
    return WEXITSTATUS(status);
}

static void put_range(kv_db *db, const char *kfmt, const char *vfmt, int from, int to, int sync)
{
    kv_batch *b = kv_batch_new();
    kv_write_options wo = {sync};
    kv_err err;
    char k[32], v[64];

    for (int i = from; i < to; i++) {
        snprintf(k, sizeof k, kfmt, i);
        snprintf(v, sizeof v, vfmt, i);
        TU_OK(kv_batch_put(b, k, strlen(k), v, strlen(v), &err), &err);
        if (kv_batch_count(b) == 100 || i + 1 == to) {
            TU_OK(kv_write(db, &wo, b, NULL, &err), &err);
            kv_batch_clear(b);
        }
    }
    kv_batch_free(b);
}

/* A database with NKEYS keys compacted into tables and, with wal set, NWAL
 * more keys that only a WAL holds. */
static void make_db(const char *dir, int wal)
{
    kv_options o;
    kv_db *db;
    kv_err err;
    kv_batch *b = kv_batch_new();
    pid_t pid;
    int status;

    tu_small_options(&o, dir);
    TU_OK(kv_open(&o, &db, &err), &err);
    put_range(db, "key%08d", "value-%08d-payload-payload", 0, NKEYS, 0);
    for (int i = 0; i < 50; i++) {
        char k[32];
        snprintf(k, sizeof k, "key%08d", i * 7);
        TU_OK(kv_batch_delete(b, k, strlen(k), &err), &err);
    }
    TU_OK(kv_write(db, NULL, b, NULL, &err), &err);
    kv_batch_free(b);
    TU_OK(kv_flush(db, &err), &err);
    TU_OK(kv_compact_all(db, &err), &err);
    TU_OK(kv_close(db, &err), &err);
    if (!wal) return;
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (kv_open(&o, &db, &err) != KV_OK) _exit(2);
        put_range(db, "wal%08d", "wv-%08d", 0, NWAL, 1);
        _exit(0); /* no kv_close: the new keys stay in the WAL */
    }
    waitpid(pid, &status, 0);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "writer child failed");
}

/* Names of the files in dir ending in ext (up to max), sorted; returns the count. */
static int list_ext(const char *dir, const char *ext, char names[][64], int max)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    ck_assert_ptr_nonnull(d);
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name), el = strlen(ext);
        if (l <= el || strcmp(e->d_name + l - el, ext) || l >= 64) continue;
        if (n < max) strcpy(names[n], e->d_name);
        n++;
    }
    closedir(d);
    qsort(names, (size_t)(n < max ? n : max), 64, (int (*)(const void *, const void *))strcmp);
    return n;
}

static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf;
    long len;

    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    len = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)len + 1);
    ck_assert(fread(buf, 1, (size_t)len, f) == (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return buf;
}

START_TEST(test_good_db)
{
    char *dir = tu_mkdtemp("kvctl");
    char ssts[64][64], mems[4][64], want[128], path[4200];
    char *out;
    int nsst, nmem, found = 0;

    make_db(dir, 1);
    nsst = list_ext(dir, ".sst", ssts, 64);
    nmem = list_ext(dir, ".mem", mems, 4);
    ck_assert_int_ge(nsst, 1);
    ck_assert_int_le(nsst, 64);
    ck_assert_int_eq(nmem, 1);

    ck_assert_int_eq(run_kvctl(&out, "info '%s'", dir), 0);
    snprintf(want, sizeof want, "totals: %d tables", nsst);
    ck_assert_msg(strstr(out, want), "info lacks \"%s\":\n%s", want, out);
    ck_assert_msg(strstr(out, mems[0]) && strstr(out, "1 WAL files"), "info: %s", out);
    ck_assert_msg(strstr(out, "level "), "info: %s", out);
    free(out);

    ck_assert_int_eq(run_kvctl(&out, "check '%s'", dir), 0);
    snprintf(want, sizeof want, "check: %d tables, 1 WAL files, 0 errors, 0 warnings", nsst);
    ck_assert_msg(strstr(out, want), "check lacks \"%s\":\n%s", want, out);
    free(out);

    snprintf(path, sizeof path, "%s/MANIFEST", dir);
    ck_assert_int_eq(run_kvctl(&out, "dump manifest '%s'", path), 0);
    ck_assert_msg(strstr(out, "record at offset 16") && strstr(out, "create L"), "%s", out);
    snprintf(want, sizeof want, "replayed: %d live tables", nsst);
    ck_assert_msg(strstr(out, want), "dump manifest lacks \"%s\":\n%s", want, out);
    free(out);

    snprintf(path, sizeof path, "%s/%s", dir, mems[0]);
    ck_assert_int_eq(run_kvctl(&out, "dump wal '%s'", path), 0);
    ck_assert_msg(strstr(out, "key \"wal00000007\" put"), "dump wal: %s", out);
    ck_assert_msg(!strstr(out, "wv-00000007"), "values without -v: %s", out);
    free(out);
    ck_assert_int_eq(run_kvctl(&out, "dump wal -v '%s'", path), 0);
    ck_assert_msg(strstr(out, "\"wv-00000007\""), "dump wal -v: %s", out);
    ck_assert_msg(strstr(out, "records, 200 entries"), "dump wal -v: %s", out);
    free(out);

    for (int i = 0; i < nsst; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, ssts[i]);
        ck_assert_int_eq(run_kvctl(&out, "dump table '%s'", path), 0);
        ck_assert_msg(strstr(out, "properties:") && strstr(out, "blocks:"), "%s", out);
        if (strstr(out, "\"key00000100\" @")) found = 1;
        free(out);
    }
    ck_assert_msg(found, "no table dump shows key00000100");
    snprintf(path, sizeof path, "%s/%s", dir, ssts[0]);
    ck_assert_int_eq(run_kvctl(&out, "dump table -n 3 '%s'", path), 0);
    ck_assert_msg(strstr(out, "more entries"), "dump table -n 3: %s", out);
    free(out);

    ck_assert_int_eq(run_kvctl(&out, "%s", ""), 2);
    free(out);
    ck_assert_int_eq(run_kvctl(&out, "--help"), 2);
    free(out);
    ck_assert_int_eq(run_kvctl(&out, "dump bogus x"), 2);
    free(out);
    ck_assert_int_eq(run_kvctl(&out, "info '%s/nonexistent'", dir), 1);
    ck_assert_msg(strstr(out, "nonexistent"), "error names the file: %s", out);
    free(out);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

START_TEST(test_corrupt_table)
{
    char *dir = tu_mkdtemp("kvctl");
    char ssts[64][64], path[4200];
    uint8_t *d;
    size_t n;
    uint64_t io;
    FILE *f;
    char *out;

    make_db(dir, 0);
    ck_assert_int_ge(list_ext(dir, ".sst", ssts, 64), 1);
    snprintf(path, sizeof path, "%s/%s", dir, ssts[0]);
    d = slurp(path, &n);
    ck_assert_uint_gt(n, SST_FOOTER_SIZE);
    io = kv_get_u64(d + n - SST_FOOTER_SIZE + SST_FT_INDEX_OFF);
    ck_assert_uint_gt(io, 64);
    d[io / 2] ^= 0x5a; /* inside the data area */
    f = fopen(path, "r+b");
    ck_assert_ptr_nonnull(f);
    ck_assert(fwrite(d, 1, n, f) == n);
    fclose(f);
    free(d);

    ck_assert_int_eq(run_kvctl(&out, "check '%s'", dir), 1);
    ck_assert_msg(strstr(out, path), "check does not name %s:\n%s", path, out);
    ck_assert_msg(strstr(out, "error:") && !strstr(out, " 0 errors"), "%s", out);
    free(out);
    /* dump does not verify at open: it shows the bad block */
    ck_assert_int_eq(run_kvctl(&out, "dump table -n 0 '%s'", path), 1);
    ck_assert_msg(strstr(out, "BAD"), "dump table: %s", out);
    free(out);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

/* Offset of the last record of a manifest image. */
static size_t last_record(const uint8_t *d, size_t n)
{
    size_t off = KV_MANIFEST_HEADER_SIZE, last = 0;

    while (off + KV_FRAME_HDR <= n) {
        last = off;
        off += KV_FRAME_HDR + kv_get_u32(d + off);
    }
    ck_assert_uint_eq(off, n);
    return last;
}

START_TEST(test_torn_manifest)
{
    char *dir = tu_mkdtemp("kvctl");
    char path[4200];
    kv_options o;
    kv_db *db;
    kv_err err;
    kv_mf_state full, cut;
    uint8_t *d;
    size_t n, last, keep;
    char *out;

    tu_small_options(&o, dir);
    TU_OK(kv_open(&o, &db, &err), &err);
    put_range(db, "key%08d", "value-%08d", 0, 1000, 0);
    TU_OK(kv_flush(db, &err), &err);
    put_range(db, "key%08d", "value-%08d", 1000, 2000, 0);
    TU_OK(kv_flush(db, &err), &err);
    TU_OK(kv_close(db, &err), &err);

    snprintf(path, sizeof path, "%s/MANIFEST", dir);
    d = slurp(path, &n);
    last = last_record(d, n);
    ck_assert_uint_gt(last, KV_MANIFEST_HEADER_SIZE);
    keep = last + KV_FRAME_HDR + kv_get_u32(d + last) / 2;
    /* Precondition: the last record only adds tables (a flush), so without
     * it every table the MANIFEST lists is still on disk. */
    TU_OK(kv_manifest_parse(d, n, path, &full, &err), &err);
    TU_OK(kv_manifest_parse(d, keep, path, &cut, &err), &err);
    ck_assert_uint_eq(cut.valid_end, last);
    for (size_t i = 0; i < cut.n; i++) {
        int there = 0;
        for (size_t j = 0; j < full.n && !there; j++)
            there = full.tables[j].props.table_id == cut.tables[i].props.table_id;
        ck_assert_msg(there, "the last record deletes a table");
    }
    kv_mf_state_free(&full);
    kv_mf_state_free(&cut);
    ck_assert_int_eq(truncate(path, (off_t)keep), 0);
    free(d);

    ck_assert_int_eq(run_kvctl(&out, "check '%s'", dir), 0);
    ck_assert_msg(strstr(out, "torn tail") && strstr(out, " 0 errors"), "check: %s", out);
    free(out);
    ck_assert_int_eq(run_kvctl(&out, "info '%s'", dir), 0);
    ck_assert_msg(strstr(out, "torn tail"), "info: %s", out);
    free(out);
    ck_assert_int_eq(run_kvctl(&out, "dump manifest '%s'", path), 0);
    ck_assert_msg(strstr(out, "torn tail"), "dump manifest: %s", out);
    free(out);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

static Suite *kvctl_suite(void)
{
    Suite *s = suite_create("kvctl");
    TCase *tc = tcase_create("kvctl");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_good_db);
    tcase_add_test(tc, test_corrupt_table);
    tcase_add_test(tc, test_torn_manifest);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(kvctl_suite());
}
