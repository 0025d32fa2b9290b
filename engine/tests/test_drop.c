/*
 * test_drop.c - DropPrefix / DropAll and WriteBatch: dropped keys vanish
 * for new readers at once (memtables, tables, value log) while older
 * snapshots keep seeing them; drops survive reopen, conflict with
 * transactions that read before them, are not undone by value-log GC,
 * and end with the tables gone once compaction has run.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

static kv_db *open_db(const kv_options *o)
{
    kv_db *db = NULL;
    kv_err err;
    TU_OK(kv_open(o, &db, &err), &err);
    return db;
}

static void value_of(char *v, size_t *n, const char *k, int big)
{
    size_t len = big ? 3000 : 20;
    for (size_t i = 0; i < len; i++) v[i] = (char)('a' + (i * 7 + strlen(k)) % 26);
    memcpy(v, k, strlen(k));
    *n = len;
}

static void load(kv_db *db, const char *prefix, int n, int big)
{
    kv_write_batch *wb;
    kv_err err;
    char k[64], v[4000];
    size_t vn;
    TU_OK(kv_write_batch_new(db, &wb, &err), &err);
    for (int i = 0; i < n; i++) {
        snprintf(k, sizeof k, "%s%06d", prefix, i);
        value_of(v, &vn, k, big && i % 2 == 0);
        TU_OK(kv_write_batch_set(wb, k, strlen(k), v, vn, &err), &err);
    }
    TU_OK(kv_write_batch_flush(wb, &err), &err);
    kv_write_batch_free(wb);
}

static int count(kv_db *db, const char *prefix, uint64_t version, int check_values)
{
    kv_iter_options io;
    kv_iter *it;
    kv_err err;
    int n = 0;
    memset(&io, 0, sizeof io);
    io.prefix = prefix;
    io.prefix_len = strlen(prefix);
    io.version = version;
    TU_OK(kv_iter_new(db, &io, &it, &err), &err);
    for (kv_iter_rewind(it); kv_iter_valid(it); kv_iter_next(it)) {
        if (check_values) {
            size_t kn, vn, wn;
            const void *k = kv_iter_key(it, &kn), *v;
            char ks[64], w[4000];
            TU_OK(kv_iter_value(it, &v, &vn, &err), &err);
            memcpy(ks, k, kn);
            ks[kn] = 0;
            value_of(w, &wn, ks, vn > 100);
            ck_assert_msg(vn == wn && memcmp(v, w, vn) == 0, "value of %s", ks);
        }
        n++;
    }
    TU_OK(kv_iter_status(it, &err), &err);
    kv_iter_free(it);
    return n;
}

static int tables_with(kv_db *db, const char *prefix)
{
    kv_table_info ti[512];
    int n = kv_get_tables(db, ti, 512), c = 0;
    for (int i = 0; i < n && i < 512; i++)
        if (!strncmp(ti[i].smallest, prefix, strlen(prefix)) &&
            !strncmp(ti[i].largest, prefix, strlen(prefix)))
            c++;
    return c;
}

static kv_status get(kv_db *db, uint64_t version, const char *k)
{
    kv_read_options ro = {version, 1};
    kv_err err;
    kv_buf b = {0};
    kv_status st = kv_get(db, version ? &ro : NULL, k, strlen(k), &b, NULL, &err);
    kv_buf_free(&b);
    return st;
}

START_TEST(test_drop_prefix)
{
    char *dir = tu_mkdtemp("drop");
    kv_options o;
    kv_db *db;
    kv_err err;
    kv_txn *snap, *reader;
    uint64_t sv;
    tu_small_options(&o, dir);
    o.value_threshold = 1024;
    /* the GC below is run by hand: the automatic one would rewrite a/
     * values at any time, and their new versions would be counted below */
    o.auto_vlog_gc = 0;
    db = open_db(&o);
    load(db, "a/", 3000, 1);
    load(db, "b/", 3000, 1);
    load(db, "c/", 3000, 1);
    TU_OK(kv_flush(db, &err), &err);
    load(db, "b/x", 100, 0); /* some in the memtable */
    ck_assert_int_eq(count(db, "b/", 0, 1), 3100);
    TU_OK(kv_txn_begin(db, 0, &snap, &err), &err);
    sv = kv_txn_read_version(snap);
    TU_OK(kv_txn_begin(db, 1, &reader, &err), &err);
    ck_assert_int_eq(kv_txn_get(reader, "b/000001", 8, NULL, NULL, &err), KV_OK);
    TU_OK(kv_txn_note_read(reader, "b/", 2, &err), &err); /* it read the whole range */
    TU_OK(kv_txn_set(reader, "z", 1, "1", 1, &err), &err);

    TU_OK(kv_drop_prefix(db, "b/", 2, &err), &err);
    ck_assert_int_eq(count(db, "b/", 0, 0), 0);
    ck_assert_int_eq(get(db, 0, "b/000002"), KV_NOT_FOUND);
    ck_assert_int_eq(get(db, 0, "b/x000002"), KV_NOT_FOUND);
    ck_assert_int_eq(count(db, "a/", 0, 1), 3000);
    ck_assert_int_eq(count(db, "c/", 0, 1), 3000);
    /* the older snapshot still sees everything */
    ck_assert_int_eq(count(db, "b/", sv, 1), 3100);
    ck_assert_int_eq(get(db, sv, "b/000002"), KV_OK);
    ck_assert_int_eq(kv_txn_get(snap, "b/x000003", 9, NULL, NULL, &err), KV_OK);
    /* a transaction that read the range before the drop cannot commit after it */
    TU_ST(KV_CONFLICT, kv_txn_commit(reader, NULL, NULL, &err), &err);
    kv_txn_free(reader);
    /* new writes under the prefix are visible */
    {
        kv_batch *b = kv_batch_new();
        TU_OK(kv_batch_put(b, "b/new", 5, "n", 1, &err), &err);
        TU_OK(kv_write(db, NULL, b, NULL, &err), &err);
        kv_batch_free(b);
    }
    ck_assert_int_eq(count(db, "b/", 0, 0), 1);
    /* value-log GC does not bring dropped values back */
    kv_run_value_log_gc(db, 0.01, &err);
    ck_assert_int_eq(count(db, "b/", 0, 0), 1);
    kv_txn_free(snap);

    TU_OK(kv_close(db, &err), &err);
    db = open_db(&o);
    ck_assert_int_eq(count(db, "b/", 0, 0), 1);
    ck_assert_int_eq(get(db, 0, "b/new"), KV_OK);
    ck_assert_int_eq(count(db, "a/", 0, 1), 3000);
    /* once nobody can read below the drop, compaction removes the data */
    TU_OK(kv_flush(db, &err), &err);
    TU_OK(kv_compact_all(db, &err), &err);
    ck_assert_int_eq(count(db, "b/", 0, 0), 1);
    ck_assert_int_eq(count(db, "c/", 0, 1), 3000);
    {
        /* a table the flatten did not rewrite (moved whole, or already at
         * the bottom) is rewritten by an idle compactor soon after */
        uint64_t keys = UINT64_MAX;
        for (int round = 0; round < 400 && keys > 6000 + 1 + 10; round++) {
            kv_table_info ti[512];
            int n = kv_get_tables(db, ti, 512);
            if (round) usleep(25 * 1000);
            keys = 0;
            for (int i = 0; i < n && i < 512; i++) keys += ti[i].num_keys;
        }
        ck_assert_uint_le(keys, 6000 + 1 + 10); /* a/ and c/ and b/new, nothing dropped */
    }
    TU_OK(kv_close(db, &err), &err);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

START_TEST(test_drop_all_and_tables)
{
    char *dir = tu_mkdtemp("drop");
    kv_options o;
    kv_db *db;
    kv_err err;
    tu_small_options(&o, dir);
    db = open_db(&o);
    load(db, "p/", 20000, 0);
    TU_OK(kv_flush(db, &err), &err);
    TU_OK(kv_compact_all(db, &err), &err);
    ck_assert_int_gt(tables_with(db, "p/"), 0);
    TU_OK(kv_drop_prefix(db, "p/", 2, &err), &err);
    ck_assert_int_eq(count(db, "p/", 0, 0), 0);
    /* the tables entirely inside the prefix leave the version (the
     * compactor's maintenance does it once the drop is visible) */
    for (int i = 0; i < 100 && tables_with(db, "p/") > 0; i++) usleep(50 * 1000);
    ck_assert_int_eq(tables_with(db, "p/"), 0);

    load(db, "q/", 1000, 0);
    load(db, "r/", 1000, 0);
    TU_OK(kv_drop_all(db, &err), &err);
    ck_assert_int_eq(count(db, "", 0, 0), 0);
    load(db, "s/", 10, 0);
    ck_assert_int_eq(count(db, "", 0, 0), 10);
    TU_OK(kv_close(db, &err), &err);
    db = open_db(&o);
    ck_assert_int_eq(count(db, "", 0, 0), 10);
    /* bad input */
    {
        char big[200];
        memset(big, 'x', sizeof big);
        TU_ST(KV_INVALID, kv_drop_prefix(db, big, sizeof big, &err), &err);
        TU_ST(KV_INVALID, kv_drop_prefix(db, NULL, 3, &err), &err);
    }
    TU_OK(kv_close(db, &err), &err);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

/* Many drops (PostgreSQL truncates and drops tables all the time): every
 * one is in effect at once, reads stay right, they survive reopen, and they
 * retire once their data is gone. */
START_TEST(test_many_drops)
{
    char *dir = tu_mkdtemp("drop");
    kv_options o;
    kv_db *db;
    kv_err err;
    int n = (int)tu_scale(2000);
    tu_small_options(&o, dir);
    db = open_db(&o);
    for (int i = 0; i < n; i++) {
        char p[16];
        snprintf(p, sizeof p, "t%05d/", i);
        load(db, p, 3, 0);
        if (i % 2 == 0) TU_OK(kv_drop_prefix(db, p, strlen(p), &err), &err);
        if (i % 500 == 499) TU_OK(kv_flush(db, &err), &err);
    }
    TU_OK(kv_drop_prefix(db, "t0000", 5, &err), &err); /* nested prefixes of another length */
    ck_assert_int_eq(count(db, "t0000", 0, 0), 0);
    ck_assert_int_eq(count(db, "t", 0, 1), 3 * (n / 2) - 3 * 5);
    ck_assert_int_eq(count(db, "t00001/", 0, 0), 0);
    ck_assert_int_eq(count(db, "t00011/", 0, 0), 3);
    ck_assert_int_eq(get(db, 0, "t00012/000001"), KV_NOT_FOUND);
    ck_assert_int_eq(get(db, 0, "t00013/000001"), KV_OK);
    TU_OK(kv_close(db, &err), &err);
    db = open_db(&o);
    ck_assert_int_eq(count(db, "t", 0, 1), 3 * (n / 2) - 3 * 5);
    ck_assert_int_eq(get(db, 0, "t00013/000001"), KV_OK);
    TU_OK(kv_flush(db, &err), &err);
    TU_OK(kv_compact_all(db, &err), &err);
    for (int i = 0; i < 200; i++) { /* retired 64 per maintenance round */
        kv_stats st;
        kv_get_stats(db, &st);
        if (st.drops_in_effect == 0) break;
        TU_OK(kv_compact_all(db, &err), &err);
    }
    {
        kv_stats st;
        kv_get_stats(db, &st);
        ck_assert_uint_eq(st.drops_in_effect, 0);
    }
    ck_assert_int_eq(count(db, "t", 0, 1), 3 * (n / 2) - 3 * 5);
    TU_OK(kv_close(db, &err), &err);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

/* Keys before, inside and after drops of three prefix lengths, some keys
 * shorter than the longest prefix: forward, reverse and after a seek, an
 * iterator returns exactly the keys no drop covers (it remembers regions
 * that no drop touches, so a wrong region would show here). */
START_TEST(test_iterate_around_drops)
{
    static const char *keys[] = {"a1", "a2",  "b",   "b0",  "bb",  "bb1", "bc", "bcc",
                                 "c",  "cc",  "ccc", "ccc1", "ccd", "d",   "da"};
    static const char *live[] = {"b", "b0", "bc", "bcc", "c", "cc", "ccd", "d", "da"};
    const int nk = (int)(sizeof keys / sizeof keys[0]), nl = (int)(sizeof live / sizeof live[0]);
    char *dir = tu_mkdtemp("drop");
    kv_options o;
    kv_db *db;
    kv_batch *b;
    kv_iter *it;
    kv_iter_options io;
    kv_err err;
    int n;
    tu_small_options(&o, dir);
    db = open_db(&o);
    b = kv_batch_new_for(db);
    for (int i = 0; i < nk; i++) TU_OK(kv_batch_put(b, keys[i], strlen(keys[i]), "v", 1, &err), &err);
    TU_OK(kv_write(db, NULL, b, NULL, &err), &err);
    kv_batch_free(b);
    TU_OK(kv_drop_prefix(db, "a", 1, &err), &err);
    TU_OK(kv_drop_prefix(db, "bb", 2, &err), &err);
    TU_OK(kv_drop_prefix(db, "ccc", 3, &err), &err);
    for (int pass = 0; pass < 2; pass++) { /* memtable, then tables */
        for (int rev = 0; rev < 2; rev++) {
            memset(&io, 0, sizeof io);
            io.reverse = rev;
            TU_OK(kv_iter_new(db, &io, &it, &err), &err);
            n = 0;
            for (kv_iter_rewind(it); kv_iter_valid(it); kv_iter_next(it), n++) {
                size_t kn;
                const char *k = kv_iter_key(it, &kn), *want = live[rev ? nl - 1 - n : n];
                ck_assert_msg(n < nl && kn == strlen(want) && !memcmp(k, want, kn),
                              "pass %d rev %d: entry %d is %.*s", pass, rev, n, (int)kn, k);
            }
            TU_OK(kv_iter_status(it, &err), &err);
            ck_assert_int_eq(n, nl);
            kv_iter_seek(it, "bb", 2); /* lands after the dropped region */
            ck_assert(kv_iter_valid(it));
            {
                size_t kn;
                const char *k = kv_iter_key(it, &kn);
                ck_assert_msg(rev ? kn == 2 && !memcmp(k, "b0", 2) : kn == 2 && !memcmp(k, "bc", 2),
                              "seek: %.*s", (int)kn, k);
            }
            kv_iter_free(it);
        }
        TU_OK(kv_flush(db, &err), &err);
    }
    TU_OK(kv_close(db, &err), &err);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

START_TEST(test_write_batch)
{
    char *dir = tu_mkdtemp("drop");
    kv_options o;
    kv_db *db;
    kv_err err;
    kv_write_batch *wb;
    tu_small_options(&o, dir);
    o.value_threshold = 1024;
    db = open_db(&o);
    load(db, "w/", 50000, 1);
    ck_assert_int_eq(count(db, "w/", 0, 1), 50000);
    { /* planner estimates and iterator counters */
        uint64_t keys = 0, bytes = 0, nk = 0, nv = 0;
        kv_iter *it;
        kv_iter_options io;
        TU_OK(kv_estimate_range(db, "w/", 2, "w0", 2, &keys, &bytes, &err), &err);
        ck_assert_msg(keys >= 25000 && keys <= 100000, "estimate %llu for 50000 keys",
                      (unsigned long long)keys);
        TU_OK(kv_estimate_range(db, "x/", 2, NULL, 0, &keys, &bytes, &err), &err);
        ck_assert_uint_le(keys, 1000);
        memset(&io, 0, sizeof io);
        io.prefix = "w/00";
        io.prefix_len = 4;
        TU_OK(kv_iter_new(db, &io, &it, &err), &err);
        for (kv_iter_rewind(it); kv_iter_valid(it); kv_iter_next(it)) {
            const void *v;
            size_t vn;
            TU_OK(kv_iter_value(it, &v, &vn, &err), &err);
        }
        kv_iter_counters(it, &nk, &nv);
        kv_iter_free(it);
        ck_assert_uint_eq(nk, 10000);
        ck_assert_uint_eq(nv, 5000); /* every second value is in the value log */
    }
    TU_OK(kv_write_batch_new(db, &wb, &err), &err);
    TU_ST(KV_INVALID, kv_write_batch_set(wb, "", 0, "x", 1, &err), &err);
    TU_OK(kv_write_batch_delete(wb, "w/000007", 8, &err), &err);
    TU_OK(kv_write_batch_set_ex(wb, "w/ttl", 5, "x", 1, 3, 1000, &err), &err);
    TU_OK(kv_write_batch_flush(wb, &err), &err);
    kv_write_batch_free(wb);
    ck_assert_int_eq(count(db, "w/", 0, 0), 49999);
    TU_OK(kv_close(db, &err), &err);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("drop");
    TCase *tc = tcase_create("drop");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_drop_prefix);
    tcase_add_test(tc, test_drop_all_and_tables);
    tcase_add_test(tc, test_write_batch);
    tcase_add_test(tc, test_many_drops);
    tcase_add_test(tc, test_iterate_around_drops);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
