/*
 * test_threads.c - many threads of one process on one kv_db: writers with
 * disjoint keys (some syncing, so group commit forms groups), readers doing
 * point reads and full scans, a thread taking snapshots and checking that
 * what a snapshot sees never changes, all while flushes and compactions
 * run.  Mostly here for ThreadSanitizer (make tsan).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define WRITERS 4
#define READERS 2

typedef struct shared {
    kv_db *db;
    long items;
    _Atomic int writers_done;
    _Atomic long progress[WRITERS];
    _Atomic int failed;
    char why[KV_ERRMSG_MAX + 64];
} shared;

static void note_fail(shared *s, const char *what, const kv_err *err)
{
    if (!atomic_exchange(&s->failed, 1))
        snprintf(s->why, sizeof s->why, "%s: %s", what, err ? err->msg : "");
}

static void kv(char *k, char *v, int w, long n)
{
    sprintf(k, "w%d-%08ld", w, n);
    sprintf(v, "value-of-%d-%ld-%s", w, n, "................................");
}

typedef struct warg {
    shared *s;
    int w;
} warg;

static void *writer(void *p)
{
    warg *a = p;
    shared *s = a->s;
    kv_batch *b = kv_batch_new();
    kv_err err;
    char k[64], v[128];
    for (long n = 0; n < s->items && !atomic_load(&s->failed); n++) {
        kv_write_options wo = {(int)(n % 64 == 0)};
        kv_batch_clear(b);
        kv(k, v, a->w, n);
        kv_batch_put(b, k, strlen(k), v, strlen(v), &err);
        if (kv_write(s->db, &wo, b, NULL, &err) != KV_OK) note_fail(s, "write", &err);
        atomic_store(&s->progress[a->w], n + 1);
    }
    kv_batch_free(b);
    atomic_fetch_add(&s->writers_done, 1);
    return NULL;
}

static void *reader(void *p)
{
    shared *s = p;
    kv_buf buf = {0};
    kv_err err;
    tu_rng r;
    char k[64], v[128];
    tu_rng_init(&r, tu_seed() + 77);
    while (atomic_load(&s->writers_done) < WRITERS && !atomic_load(&s->failed)) {
        int w = (int)tu_randn(&r, WRITERS);
        long done = atomic_load(&s->progress[w]);
        if (done > 0) {
            long n = (long)tu_randn(&r, (uint64_t)done);
            kv(k, v, w, n);
            if (kv_get(s->db, NULL, k, strlen(k), &buf, NULL, &err) != KV_OK)
                note_fail(s, "get of a written key", &err);
            else if (buf.len != strlen(v) || memcmp(buf.data, v, buf.len))
                note_fail(s, "wrong value", NULL);
        }
        if (tu_randn(&r, 200) == 0) { /* a full scan */
            kv_iter *it;
            long c = 0;
            if (kv_iter_new(s->db, NULL, &it, &err) != KV_OK) {
                note_fail(s, "iter", &err);
                break;
            }
            for (kv_iter_rewind(it); kv_iter_valid(it); kv_iter_next(it)) c++;
            if (kv_iter_status(it, &err) != KV_OK) note_fail(s, "scan", &err);
            kv_iter_free(it);
        }
    }
    kv_buf_free(&buf);
    return NULL;
}

/* Counts keys of a snapshot twice, some time apart: same answer. */
static void *snapshotter(void *p)
{
    shared *s = p;
    kv_err err;
    while (atomic_load(&s->writers_done) < WRITERS && !atomic_load(&s->failed)) {
        kv_snapshot *snap;
        long c1 = 0, c2 = 0;
        kv_iter_options io;
        kv_iter *it;
        if (kv_snapshot_acquire(s->db, &snap, &err) != KV_OK) {
            note_fail(s, "snapshot", &err);
            break;
        }
        memset(&io, 0, sizeof io);
        io.version = kv_snapshot_version(snap);
        for (int pass = 0; pass < 2; pass++) {
            if (kv_iter_new(s->db, &io, &it, &err) != KV_OK) {
                note_fail(s, "iter", &err);
                break;
            }
            for (kv_iter_rewind(it); kv_iter_valid(it); kv_iter_next(it)) {
                if (pass) c2++;
                else c1++;
            }
            kv_iter_free(it);
        }
        if (c1 != c2) note_fail(s, "snapshot changed between two scans", NULL);
        kv_snapshot_release(snap);
    }
    return NULL;
}

START_TEST(test_threads)
{
    char *dir = tu_mkdtemp("thr");
    kv_options o;
    shared s;
    pthread_t wt[WRITERS], rt[READERS], st;
    warg wa[WRITERS];
    kv_err err;
    kv_buf buf = {0};
    memset(&s, 0, sizeof s);
    tu_small_options(&o, dir);
    o.mem_table_size = 128 << 10;
    o.num_memtables = 2;
    o.base_table_size = 64 << 10;
    o.base_level_size = 256 << 10;
    o.num_level_zero_tables = 2;
    o.num_level_zero_tables_stall = 5;
    s.items = tu_scale(5000);
    TU_OK(kv_open(&o, &s.db, &err), &err);
    for (int i = 0; i < WRITERS; i++) {
        wa[i].s = &s;
        wa[i].w = i;
        pthread_create(&wt[i], NULL, writer, &wa[i]);
    }
    for (int i = 0; i < READERS; i++) pthread_create(&rt[i], NULL, reader, &s);
    pthread_create(&st, NULL, snapshotter, &s);
    for (int i = 0; i < WRITERS; i++) pthread_join(wt[i], NULL);
    for (int i = 0; i < READERS; i++) pthread_join(rt[i], NULL);
    pthread_join(st, NULL);
    ck_assert_msg(!atomic_load(&s.failed), "%s", s.why);
    for (int w = 0; w < WRITERS; w++)
        for (long n = 0; n < s.items; n += 7) {
            char k[64], v[128];
            kv(k, v, w, n);
            TU_OK(kv_get(s.db, NULL, k, strlen(k), &buf, NULL, &err), &err);
        }
    {
        kv_stats stats;
        kv_get_stats(s.db, &stats);
        ck_assert(stats.writes == (uint64_t)(WRITERS * s.items));
        /* concurrent syncing writers must have shared leader rounds */
        ck_assert_msg(stats.write_groups < stats.writes, "no write was ever grouped");
    }
    TU_OK(kv_close(s.db, &err), &err);
    kv_buf_free(&buf);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

int main(void)
{
    Suite *su = suite_create("threads");
    TCase *tc = tcase_create("threads");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_threads);
    suite_add_tcase(su, tc);
    return tu_run(su);
}
