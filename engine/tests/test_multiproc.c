/*
 * test_multiproc.c - several processes on one shared region.
 *
 * The parent maps an anonymous MAP_SHARED region, opens the engine into it
 * (it becomes the host and runs flush and compaction threads), then forks
 * writer/reader processes that kv_attach() and work concurrently while
 * compaction runs.  Each worker commits batches that hold its counter key
 * "c<w>" = n together with its data key "p<w>-<n>", so in any consistent
 * view: counter n => data keys 0..n all present with the right values.
 * Every worker checks that on snapshots (iterators) of the whole database
 * and with point reads, of its own and the others' keys.  Also: attach
 * states (busy, ready, closed, restarted).
 */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

#define WORKERS 3

static void opts(kv_options *o, const char *dir)
{
    tu_small_options(o, dir);
    o->mem_table_size = 128 << 10;
    o->base_table_size = 64 << 10;
    o->base_level_size = 256 << 10;
    o->num_level_zero_tables = 2;
    o->num_level_zero_tables_stall = 6;
    o->num_memtables = 2;
    o->compression = KV_COMPRESS_SNAPPY;
    o->block_cache_size = 1 << 20;
}

static void data_value(char *v, int w, long n)
{
    sprintf(v, "worker-%d-item-%08ld-%s", w, n, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
}

#define FAIL(...)                                                                             \
    do {                                                                                      \
        fprintf(stderr, __VA_ARGS__);                                                         \
        fprintf(stderr, "\n");                                                                \
        return 1;                                                                             \
    } while (0)

/* ThreadSanitizer cannot see the happens-before that process-shared locks
 * establish between processes, so under TSan the workers run as threads of
 * this process, each with its own attached handle: the same code paths,
 * and TSan checks them. */
#if defined(__SANITIZE_THREAD__)
#define WORKERS_AS_THREADS 1
#else
#define WORKERS_AS_THREADS 0
#endif

/* Checks the invariant over a whole-database iterator: for each worker,
 * all data keys up to its counter are present (and valid). */
static int check_snapshot(kv_db *db)
{
    kv_iter *it;
    kv_err err;
    long counter[WORKERS], seen[WORKERS];
    for (int w = 0; w < WORKERS; w++) counter[w] = -1, seen[w] = 0;
    if (kv_iter_new(db, NULL, &it, &err) != KV_OK) FAIL("iter: %s", err.msg);
    for (kv_iter_rewind(it); kv_iter_valid(it); kv_iter_next(it)) {
        size_t kl, vl;
        const char *k = kv_iter_key(it, &kl);
        const void *v;
        char want[128], key[64];
        if (kv_iter_value(it, &v, &vl, &err) != KV_OK) FAIL("value: %s", err.msg);
        if (kl >= sizeof key) FAIL("key too long");
        memcpy(key, k, kl);
        key[kl] = 0;
        if (key[0] == 'c') {
            int w = atoi(key + 1);
            char num[32];
            memcpy(num, v, vl < 31 ? vl : 31);
            num[vl < 31 ? vl : 31] = 0;
            counter[w] = atol(num);
        } else if (key[0] == 'p') {
            int w = atoi(key + 1);
            long n = atol(strchr(key, '-') + 1);
            data_value(want, w, n);
            if (vl != strlen(want) || memcmp(v, want, vl)) FAIL("bad value for %s", key);
            seen[w]++;
        }
    }
    if (kv_iter_status(it, &err) != KV_OK) FAIL("iteration: %s", err.msg);
    kv_iter_free(it);
    /* keys "c*" sort before "p*", so counter was read first: the data keys
     * seen must cover at least counter+1 items (more may have arrived) */
    for (int w = 0; w < WORKERS; w++)
        if (seen[w] < counter[w] + 1)
            FAIL("snapshot inconsistent: worker %d counter %ld but %ld data keys", w, counter[w],
                 seen[w]);
    return 0;
}

static int worker(void *region, int w, long items)
{
    kv_db *db;
    kv_err err;
    kv_batch *b = kv_batch_new();
    kv_buf buf = {0};
    tu_rng r;
    char k[64], v[128];
    /* forked before the host opened (as PostgreSQL backends are forked by
     * the postmaster): wait for the host to become ready */
    if (kv_attach_wait(region, NULL, 60000, &db, &err) != KV_OK) FAIL("attach: %s", err.msg);
    tu_rng_init(&r, tu_seed() + (uint64_t)w);
    for (long n = 0; n < items; n++) {
        kv_write_options wo = {(int)(n % 50 == 0)};
        kv_batch_clear(b);
        sprintf(k, "c%d", w);
        sprintf(v, "%ld", n);
        kv_batch_put(b, k, strlen(k), v, strlen(v), &err);
        sprintf(k, "p%d-%08ld", w, n);
        data_value(v, w, n);
        kv_batch_put(b, k, strlen(k), v, strlen(v), &err);
        if (kv_write(db, &wo, b, NULL, &err) != KV_OK) FAIL("write: %s", err.msg);
        /* read back a random item of a random worker */
        {
            int ow = (int)tu_randn(&r, WORKERS);
            long m = (long)tu_randn(&r, (uint64_t)n + 1);
            kv_status st;
            sprintf(k, "p%d-%08ld", ow, m);
            st = kv_get(db, NULL, k, strlen(k), &buf, NULL, &err);
            if (ow == w && st != KV_OK) FAIL("own key %s: %s", k, kv_status_str(st));
            if (st == KV_OK) {
                data_value(v, ow, m);
                if (buf.len != strlen(v) || memcmp(buf.data, v, buf.len)) FAIL("bad value %s", k);
            } else if (st != KV_NOT_FOUND)
                FAIL("get %s: %s", k, err.msg);
        }
        if (n % 500 == 0 && check_snapshot(db)) return 1;
        if (n % 1500 == 1499 && kv_flush(db, &err) != KV_OK) FAIL("flush: %s", err.msg);
    }
    if (check_snapshot(db)) return 1;
    kv_buf_free(&buf);
    kv_batch_free(b);
    kv_detach(db);
    return 0;
}

typedef struct wjob {
    void *region;
    int w;
    long items;
    int rc;
} wjob;

static void *worker_thread(void *p)
{
    wjob *j = p;
    j->rc = worker(j->region, j->w, j->items);
    return NULL;
}

START_TEST(test_processes_share_one_region)
{
    char *dir = tu_mkdtemp("mp");
    kv_options o;
    size_t size;
    void *region;
    kv_db *host;
    kv_err err;
    pid_t pids[WORKERS];
    pthread_t tids[WORKERS];
    wjob jobs[WORKERS];
    long items = 4000; /* not scaled: fewer would not make compaction run */
    kv_buf buf = {0};
    kv_stats st;
    opts(&o, dir);
    size = kv_shared_size(&o);
    ck_assert(size > 0);
    region = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ck_assert(region != MAP_FAILED);
    /* fork first: forking a process whose engine threads may hold
     * allocator locks is not safe, and it is not how hosts work */
    for (int w = 0; w < WORKERS; w++) {
        jobs[w].region = region;
        jobs[w].w = w;
        jobs[w].items = items;
        jobs[w].rc = -1;
        if (WORKERS_AS_THREADS) {
            pthread_create(&tids[w], NULL, worker_thread, &jobs[w]);
        } else {
            pids[w] = fork();
            if (pids[w] == 0) _exit(worker(region, w, items));
        }
    }
    TU_OK(kv_open_region(&o, region, size, &host, &err), &err);
    /* the host reads too, while the workers write */
    for (int i = 0; i < 20; i++) {
        kv_iter *it;
        long n = 0;
        TU_OK(kv_iter_new(host, NULL, &it, &err), &err);
        for (kv_iter_rewind(it); kv_iter_valid(it); kv_iter_next(it)) n++;
        TU_OK(kv_iter_status(it, &err), &err);
        kv_iter_free(it);
        usleep(20000);
    }
    for (int w = 0; w < WORKERS; w++) {
        if (WORKERS_AS_THREADS) {
            pthread_join(tids[w], NULL);
            ck_assert_msg(jobs[w].rc == 0, "worker %d failed", w);
        } else {
            int status;
            waitpid(pids[w], &status, 0);
            ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "worker %d failed", w);
        }
    }
    kv_get_stats(host, &st);
    ck_assert_msg(st.compactions > 0, "compaction never ran during the test");
    ck_assert_int_eq(st.attached_processes, 0);
    for (int w = 0; w < WORKERS; w++)
        for (long n = 0; n < items; n++) {
            char k[64], v[128];
            sprintf(k, "p%d-%08ld", w, n);
            TU_OK(kv_get(host, NULL, k, strlen(k), &buf, NULL, &err), &err);
            data_value(v, w, n);
            ck_assert(buf.len == strlen(v) && !memcmp(buf.data, v, buf.len));
        }
    TU_OK(kv_close(host, &err), &err);
    /* and after a reopen from disk */
    TU_OK(kv_open(&o, &host, &err), &err);
    for (int w = 0; w < WORKERS; w++) {
        char k[64], v[128];
        sprintf(k, "p%d-%08ld", w, items - 1);
        TU_OK(kv_get(host, NULL, k, strlen(k), &buf, NULL, &err), &err);
        data_value(v, w, items - 1);
        ck_assert(buf.len == strlen(v) && !memcmp(buf.data, v, buf.len));
    }
    TU_OK(kv_close(host, &err), &err);
    kv_buf_free(&buf);
    munmap(region, size);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

START_TEST(test_attach_states)
{
    char *dir = tu_mkdtemp("att");
    kv_options o;
    size_t size;
    void *region;
    kv_db *host, *a, *a2;
    kv_err err;
    kv_batch *b = kv_batch_new();
    opts(&o, dir);
    size = kv_shared_size(&o);
    region = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ck_assert(region != MAP_FAILED);
    TU_ST(KV_BUSY, kv_attach(region, NULL, &a, &err), &err); /* nothing there yet */
    TU_ST(KV_TIMEOUT, kv_attach_wait(region, NULL, 50, &a, &err), &err);
    {
        char junk[4096];
        memset(junk, 0x5a, sizeof junk);
        TU_ST(KV_INVALID, kv_attach(junk, NULL, &a, &err), &err);
    }
    TU_ST(KV_INVALID, kv_open_region(&o, region, 4096, &host, &err), &err);
    TU_OK(kv_open_region(&o, region, size, &host, &err), &err);
    TU_OK(kv_attach(region, NULL, &a, &err), &err);
    TU_OK(kv_batch_put(b, "k", 1, "v", 1, &err), &err);
    TU_OK(kv_write(a, NULL, b, NULL, &err), &err);
    TU_OK(kv_close(host, &err), &err);
    /* the host is gone: the attached handle refuses politely */
    TU_ST(KV_CLOSED, kv_write(a, NULL, b, NULL, &err), &err);
    TU_ST(KV_CLOSED, kv_attach(region, NULL, &a2, &err), &err);
    /* reopened into the same region: old handles must re-attach */
    TU_OK(kv_open_region(&o, region, size, &host, &err), &err);
    TU_ST(KV_CLOSED, kv_get(a, NULL, "k", 1, NULL, NULL, &err), &err);
    kv_detach(a);
    TU_OK(kv_attach_wait(region, NULL, 1000, &a, &err), &err);
    TU_OK(kv_get(a, NULL, "k", 1, NULL, NULL, &err), &err);
    kv_detach(a);
    TU_OK(kv_close(host, &err), &err);
    kv_batch_free(b);
    munmap(region, size);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("multiproc");
    TCase *tc = tcase_create("multiproc");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_processes_share_one_region);
    tcase_add_test(tc, test_attach_states);
    suite_add_tcase(s, tc);
    tu_seed();
    return tu_run(s);
}
