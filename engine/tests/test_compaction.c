/*
 * test_compaction.c - what compaction keeps and drops, and the block
 * cache's scan resistance:
 *  - old versions are dropped down to NumVersionsToKeep, but never one a
 *    registered snapshot can still read;
 *  - tombstones and what they hide are gone after a full compaction;
 *  - level targets, scores and L0 stalls are reported;
 *  - a big scan does not flush hot blocks out of the block cache.
 */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static uint64_t table_entries(kv_db *db, int *ntables)
{
    kv_table_info ti[256];
    int n = kv_get_tables(db, ti, 256);
    uint64_t total = 0;
    ck_assert(n <= 256);
    for (int i = 0; i < n; i++) total += ti[i].num_keys;
    if (ntables) *ntables = n;
    return total;
}

static void put1(kv_db *db, const char *k, int i)
{
    kv_batch *b = kv_batch_new();
    char v[32];
    kv_err err;
    snprintf(v, sizeof v, "version-%d", i);
    TU_OK(kv_batch_put(b, k, strlen(k), v, strlen(v), &err), &err);
    TU_OK(kv_write(db, NULL, b, NULL, &err), &err);
    kv_batch_free(b);
}

static void expect(kv_db *db, uint64_t version, const char *k, int i)
{
    kv_read_options ro = {version, 1};
    kv_buf buf = {0};
    kv_err err;
    char v[32];
    snprintf(v, sizeof v, "version-%d", i);
    TU_OK(kv_get(db, &ro, k, strlen(k), &buf, NULL, &err), &err);
    ck_assert_msg(buf.len == strlen(v) && !memcmp(buf.data, v, buf.len), "got %.*s, want %s",
                  (int)buf.len, buf.data, v);
    kv_buf_free(&buf);
}

static void versions_round(int keep)
{
    char *dir = tu_mkdtemp("gc");
    kv_options o;
    kv_db *db;
    kv_err err;
    kv_snapshot *snap;
    uint64_t entries;
    tu_small_options(&o, dir);
    o.num_versions_to_keep = keep;
    o.num_compactors = 0; /* only the explicit compactions below */
    TU_OK(kv_open(&o, &db, &err), &err);
    for (int i = 0; i < 10; i++) put1(db, "key", i);
    TU_OK(kv_snapshot_acquire(db, &snap, &err), &err);
    for (int i = 10; i < 500; i++) put1(db, "key", i);
    TU_OK(kv_compact_all(db, &err), &err);
    /* 490 versions newer than the snapshot + what the snapshot reads + the
     * older ones NumVersionsToKeep allows */
    entries = table_entries(db, NULL);
    ck_assert_msg(entries == 490 + (uint64_t)keep, "keep=%d with a snapshot: %llu entries", keep,
                  (unsigned long long)entries);
    expect(db, kv_snapshot_version(snap), "key", 9);
    expect(db, 0, "key", 499);
    kv_snapshot_release(snap);
    TU_OK(kv_compact_all(db, &err), &err); /* a flatten of one level rewrites nothing... */
    put1(db, "key", 500);                   /* ...so give it something to merge with */
    TU_OK(kv_compact_all(db, &err), &err);
    entries = table_entries(db, NULL);
    ck_assert_msg(entries == (uint64_t)keep, "keep=%d: %llu entries after the snapshot ended",
                  keep, (unsigned long long)entries);
    expect(db, 0, "key", 500);
    TU_OK(kv_close(db, &err), &err);
    tu_rmdir(dir);
    free(dir);
}

START_TEST(test_old_versions_dropped)
{
    versions_round(1);
    versions_round(3);
}
END_TEST

START_TEST(test_tombstones_dropped_at_bottom)
{
    char *dir = tu_mkdtemp("tomb");
    kv_options o;
    kv_db *db;
    kv_err err;
    kv_batch *b = kv_batch_new();
    char k[32];
    int ntables;
    tu_small_options(&o, dir);
    o.num_compactors = 0;
    TU_OK(kv_open(&o, &db, &err), &err);
    for (int i = 0; i < 5000; i++) {
        snprintf(k, sizeof k, "k%06d", i);
        TU_OK(kv_batch_put(b, k, strlen(k), "some value bytes", 16, &err), &err);
        if (i % 100 == 99) {
            TU_OK(kv_write(db, NULL, b, NULL, &err), &err);
            kv_batch_clear(b);
        }
    }
    TU_OK(kv_compact_all(db, &err), &err);
    ck_assert_uint_eq(table_entries(db, NULL), 5000);
    for (int i = 0; i < 5000; i++) {
        snprintf(k, sizeof k, "k%06d", i);
        TU_OK(kv_batch_delete(b, k, strlen(k), &err), &err);
        if (i % 100 == 99) {
            TU_OK(kv_write(db, NULL, b, NULL, &err), &err);
            kv_batch_clear(b);
        }
    }
    TU_OK(kv_compact_all(db, &err), &err);
    ck_assert_msg(table_entries(db, &ntables) == 0, "%llu entries left in %d tables",
                  (unsigned long long)table_entries(db, NULL), ntables);
    TU_ST(KV_NOT_FOUND, kv_get(db, NULL, "k000001", 7, NULL, NULL, &err), &err);
    TU_OK(kv_close(db, &err), &err);
    kv_batch_free(b);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

START_TEST(test_levels_reported)
{
    char *dir = tu_mkdtemp("lv");
    kv_options o;
    kv_db *db;
    kv_err err;
    kv_batch *b = kv_batch_new();
    kv_level_info li[16];
    kv_stats st;
    char k[32], v[200];
    int n, tables = 0;
    tu_small_options(&o, dir);
    o.mem_table_size = 64 << 10;
    o.base_table_size = 32 << 10;
    o.base_level_size = 128 << 10;
    o.num_level_zero_tables = 2;
    o.num_level_zero_tables_stall = 3;
    TU_OK(kv_open(&o, &db, &err), &err);
    memset(v, 'v', sizeof v);
    for (int i = 0; i < 20000; i++) {
        snprintf(k, sizeof k, "k%08d", (int)(((uint64_t)i * 2654435761u) % 1000003u));
        TU_OK(kv_batch_put(b, k, strlen(k), v, sizeof v, &err), &err);
        if (i % 50 == 49) {
            TU_OK(kv_write(db, NULL, b, NULL, &err), &err);
            kv_batch_clear(b);
        }
    }
    TU_OK(kv_flush(db, &err), &err);
    n = kv_get_levels(db, li, 16);
    ck_assert_int_eq(n, o.max_levels);
    for (int l = 0; l < n; l++) {
        tables += li[l].num_tables;
        if (l > 0 && li[l].num_tables) ck_assert(li[l].target_bytes >= (uint64_t)o.base_level_size);
    }
    ck_assert(tables > 1);
    kv_get_stats(db, &st);
    ck_assert(st.memtable_flushes > 10);
    ck_assert(st.compactions > 0);
    ck_assert(st.compaction_bytes_written > 0);
    /* with a stall at 3 level-0 tables, level 0 never grew past it */
    ck_assert_int_le(li[0].num_tables, o.num_level_zero_tables_stall);
    TU_OK(kv_close(db, &err), &err);
    kv_batch_free(b);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

/* Hot blocks read twice sit in the protected segment; one large scan
 * that fills the cache only churns the probationary segment. */
START_TEST(test_block_cache_scan_resistant)
{
    char *dir = tu_mkdtemp("bc");
    kv_options o;
    kv_db *db;
    kv_err err;
    kv_batch *b = kv_batch_new();
    kv_buf buf = {0};
    kv_stats s0, s1;
    kv_iter *it;
    kv_iter_options io;
    char k[32], v[300];
    const int hot = 300, total = 40000;
    tu_small_options(&o, dir);
    o.compression = KV_COMPRESS_SNAPPY; /* only decompressed blocks are cached */
    o.block_size = 4096;
    o.block_cache_size = 1 << 20;       /* 128 slots of 8 KiB: far less than the data */
    o.num_compactors = 0;
    TU_OK(kv_open(&o, &db, &err), &err);
    for (int i = 0; i < total; i++) {
        snprintf(k, sizeof k, "k%08d", i);
        memset(v, 'a' + i % 26, sizeof v); /* compressible */
        TU_OK(kv_batch_put(b, k, strlen(k), v, sizeof v, &err), &err);
        if (i % 200 == 199) {
            TU_OK(kv_write(db, NULL, b, NULL, &err), &err);
            kv_batch_clear(b);
        }
    }
    TU_OK(kv_compact_all(db, &err), &err);
    /* the hot set: keys 0..hot-1 (a few blocks), read twice -> protected */
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < hot; i++) {
            snprintf(k, sizeof k, "k%08d", i);
            TU_OK(kv_get(db, NULL, k, strlen(k), &buf, NULL, &err), &err);
        }
    /* one scan over everything that admits every block it reads */
    memset(&io, 0, sizeof io);
    io.fill_cache = 1;
    TU_OK(kv_iter_new(db, &io, &it, &err), &err);
    for (kv_iter_rewind(it); kv_iter_valid(it); kv_iter_next(it)) {}
    kv_iter_free(it);
    kv_get_stats(db, &s0);
    ck_assert_msg(s0.block_cache_evictions > 100, "the scan did not pressure the cache (%llu)",
                  (unsigned long long)s0.block_cache_evictions);
    for (int i = 0; i < hot; i++) {
        snprintf(k, sizeof k, "k%08d", i);
        TU_OK(kv_get(db, NULL, k, strlen(k), &buf, NULL, &err), &err);
    }
    kv_get_stats(db, &s1);
    ck_assert_msg(s1.block_cache_misses == s0.block_cache_misses,
                  "hot blocks were flushed by the scan: %llu misses",
                  (unsigned long long)(s1.block_cache_misses - s0.block_cache_misses));
    /* a get whose key starts a block also reads the block before it */
    ck_assert_uint_ge(s1.block_cache_hits - s0.block_cache_hits, (uint64_t)hot);
    TU_OK(kv_close(db, &err), &err);
    kv_buf_free(&buf);
    kv_batch_free(b);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("compaction");
    TCase *tc = tcase_create("compaction");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_old_versions_dropped);
    tcase_add_test(tc, test_tombstones_dropped_at_bottom);
    tcase_add_test(tc, test_levels_reported);
    tcase_add_test(tc, test_block_cache_scan_resistant);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
