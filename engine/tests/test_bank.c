/*
 * test_bank.c - Badger's "bank" test across processes, with kill -9.
 *
 * ACCOUNTS accounts start with BALANCE each.  A "cluster" process maps a
 * shared region, forks worker processes (as PostgreSQL forks backends),
 * then opens the engine as host.  Each worker attaches and runs threads
 * that move money between random accounts in transactions (retrying on
 * conflict, some commits synced) and threads that sum every balance in a
 * read-only transaction - by point reads and by iterating - and record a
 * violation if the total is ever different.  The parent kills the whole
 * cluster with SIGKILL at a random moment, reopens the directory, checks
 * the total, and starts the next round on the same data.  The last round
 * runs to completion.
 *
 * The second test kills a process while it commits large transactions
 * (spilled to disk, committed by ingesting tables) and checks that each
 * is present entirely or not at all.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#define ACCOUNTS 100
#define BALANCE 1000
#define WORKERS 3
#define MOVERS 2 /* threads per worker */

#if defined(__SANITIZE_THREAD__)
#define WORKERS_AS_THREADS 1 /* TSan cannot follow process-shared locks */
#else
#define WORKERS_AS_THREADS 0
#endif

static void opts(kv_options *o, const char *dir)
{
    tu_small_options(o, dir);
    o->mem_table_size = 256 << 10;
    o->base_table_size = 64 << 10;
    o->base_level_size = 256 << 10;
    o->num_memtables = 2;
    o->value_threshold = 64; /* some balances' padding goes to the value log */
    o->value_log_file_size = 1 << 20;
}

static void acct_key(char *k, int i)
{
    sprintf(k, "acct%03d", i);
}

/* A balance, padded so that some values go to the value log. */
static size_t enc(char *v, long bal, int i)
{
    int pad = i % 3 == 0 ? 100 : 0;
    int n = sprintf(v, "%ld;", bal);
    memset(v + n, 'p', (size_t)pad);
    return (size_t)n + (size_t)pad;
}

static long dec(const kv_buf *b)
{
    char s[32];
    size_t n = b->len < 31 ? b->len : 31;
    memcpy(s, b->data, n);
    s[n] = 0;
    return atol(s);
}

static void violation(const char *dir, const char *what, long total)
{
    char path[4096];
    FILE *f;
    snprintf(path, sizeof path, "%s/violation", dir);
    f = fopen(path, "a");
    if (f) {
        fprintf(f, "%s: total %ld\n", what, total);
        fclose(f);
    }
}

typedef struct wctx {
    kv_db *db;
    const char *dir;
    int id;
    atomic_int *stop;
    long transfers, reads, conflicts;
    int failed;
} wctx;

static int transfer(wctx *c, tu_rng *r)
{
    int a = (int)tu_randn(r, ACCOUNTS), b = (int)tu_randn(r, ACCOUNTS);
    long amt = (long)tu_randn(r, 50), ba, bb;
    char ka[16], kb[16], v[256];
    kv_buf buf = {0};
    kv_txn *t;
    kv_err err;
    kv_commit_options co = {tu_randn(r, 10) == 0};
    kv_status st;
    if (a == b) return 0;
    acct_key(ka, a);
    acct_key(kb, b);
    if (kv_txn_begin(c->db, 1, &t, &err) != KV_OK) return -1;
    st = kv_txn_get(t, ka, strlen(ka), &buf, NULL, &err);
    ba = dec(&buf);
    if (st == KV_OK) st = kv_txn_get(t, kb, strlen(kb), &buf, NULL, &err);
    bb = dec(&buf);
    if (st == KV_OK) st = kv_txn_set(t, ka, strlen(ka), v, enc(v, ba - amt, a), &err);
    if (st == KV_OK) st = kv_txn_set(t, kb, strlen(kb), v, enc(v, bb + amt, b), &err);
    if (st == KV_OK) st = kv_txn_commit(t, &co, NULL, &err);
    kv_txn_free(t);
    kv_buf_free(&buf);
    if (st == KV_CONFLICT) c->conflicts++;
    else if (st != KV_OK) {
        fprintf(stderr, "transfer: %s\n", err.msg);
        return -1;
    } else
        c->transfers++;
    return 0;
}

static int audit(wctx *c, int by_iter)
{
    kv_txn *t;
    kv_err err;
    long total = 0;
    int n = 0;
    if (kv_txn_begin(c->db, 0, &t, &err) != KV_OK) return -1;
    if (by_iter) {
        kv_iter *it;
        kv_iter_options io;
        memset(&io, 0, sizeof io);
        io.prefix = "acct";
        io.prefix_len = 4;
        if (kv_txn_iter_new(t, &io, &it, &err) != KV_OK) return -1;
        for (kv_iter_rewind(it); kv_iter_valid(it); kv_iter_next(it)) {
            const void *v;
            size_t vn;
            kv_buf b;
            if (kv_iter_value(it, &v, &vn, &err) != KV_OK) break;
            b.data = (char *)v;
            b.len = vn;
            total += dec(&b);
            n++;
        }
        if (kv_iter_status(it, &err) != KV_OK) n = -1;
        kv_iter_free(it);
    } else {
        kv_buf buf = {0};
        for (int i = 0; i < ACCOUNTS; i++) {
            char k[16];
            acct_key(k, i);
            if (kv_txn_get(t, k, strlen(k), &buf, NULL, &err) != KV_OK) break;
            total += dec(&buf);
            n++;
        }
        kv_buf_free(&buf);
    }
    kv_txn_free(t);
    c->reads++;
    if (n != ACCOUNTS || total != (long)ACCOUNTS * BALANCE) {
        violation(c->dir, by_iter ? "iterator audit" : "point audit", total);
        fprintf(stderr, "bank audit: %d accounts, total %ld\n", n, total);
        return -1;
    }
    return 0;
}

static void *mover(void *p)
{
    wctx *c = p;
    tu_rng r;
    tu_rng_init(&r, tu_seed() * 31 + (uint64_t)c->id);
    while (!atomic_load(c->stop))
        if (transfer(c, &r) != 0) {
            c->failed = 1;
            break;
        }
    return NULL;
}

static void *auditor(void *p)
{
    wctx *c = p;
    int i = 0;
    while (!atomic_load(c->stop))
        if (audit(c, i++ & 1) != 0) {
            c->failed = 1;
            break;
        }
    return NULL;
}

/* One worker: attaches, runs movers and an auditor for `ms` (or until
 * killed). */
static int worker(void *region, const char *dir, int id, int ms)
{
    kv_db *db;
    kv_err err;
    pthread_t th[MOVERS + 1];
    wctx c[MOVERS + 1];
    atomic_int stop = 0;
    int failed = 0;
    if (kv_attach_wait(region, NULL, 60000, &db, &err) != KV_OK) {
        fprintf(stderr, "attach: %s\n", err.msg);
        return 1;
    }
    for (int i = 0; i <= MOVERS; i++) {
        memset(&c[i], 0, sizeof c[i]);
        c[i].db = db;
        c[i].dir = dir;
        c[i].id = id * 16 + i;
        c[i].stop = &stop;
        pthread_create(&th[i], NULL, i < MOVERS ? mover : auditor, &c[i]);
    }
    usleep((useconds_t)ms * 1000);
    atomic_store(&stop, 1);
    for (int i = 0; i <= MOVERS; i++) {
        pthread_join(th[i], NULL);
        failed |= c[i].failed;
    }
    if (!failed && (c[0].transfers == 0 || c[MOVERS].reads == 0)) {
        fprintf(stderr, "worker %d did nothing\n", id);
        failed = 1;
    }
    kv_detach(db);
    return failed;
}

typedef struct wjob {
    void *region;
    const char *dir;
    int id, ms, rc;
} wjob;

static void *worker_thread(void *p)
{
    wjob *j = p;
    j->rc = worker(j->region, j->dir, j->id, j->ms);
    return NULL;
}

/* The cluster: forks workers, hosts the engine, and returns when they are
 * done (the parent may kill it long before). */
static int cluster(const char *dir, int ms)
{
    kv_options o;
    size_t size;
    void *region;
    kv_db *host;
    kv_err err;
    pid_t pids[WORKERS];
    pthread_t tids[WORKERS];
    wjob jobs[WORKERS];
    int rc = 0;
    opts(&o, dir);
    size = kv_shared_size(&o);
    region = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (region == MAP_FAILED) return 1;
    for (int w = 0; w < WORKERS; w++) {
        jobs[w] = (wjob){region, dir, w, ms, -1};
        if (WORKERS_AS_THREADS)
            pthread_create(&tids[w], NULL, worker_thread, &jobs[w]);
        else if ((pids[w] = fork()) == 0)
            _exit(worker(region, dir, w, ms));
    }
    if (kv_open_region(&o, region, size, &host, &err) != KV_OK) {
        fprintf(stderr, "host open: %s\n", err.msg);
        return 1;
    }
    for (int w = 0; w < WORKERS; w++) {
        if (WORKERS_AS_THREADS) {
            pthread_join(tids[w], NULL);
            rc |= jobs[w].rc;
        } else {
            int status;
            waitpid(pids[w], &status, 0);
            rc |= !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        }
    }
    if (kv_close(host, &err) != KV_OK) rc = 1;
    munmap(region, size);
    return rc;
}

static long total_of(const char *dir)
{
    kv_options o;
    kv_db *db;
    kv_err err;
    kv_buf buf = {0};
    long total = 0;
    opts(&o, dir);
    TU_OK(kv_open(&o, &db, &err), &err);
    for (int i = 0; i < ACCOUNTS; i++) {
        char k[16];
        acct_key(k, i);
        TU_OK(kv_get(db, NULL, k, strlen(k), &buf, NULL, &err), &err);
        total += dec(&buf);
    }
    kv_buf_free(&buf);
    TU_OK(kv_close(db, &err), &err);
    return total;
}

static int has_violation(const char *dir)
{
    char path[4096];
    struct stat sb;
    snprintf(path, sizeof path, "%s/violation", dir);
    return stat(path, &sb) == 0;
}

START_TEST(test_bank_kill9)
{
    char *dir = tu_mkdtemp("bank");
    kv_options o;
    kv_db *db;
    kv_err err;
    kv_txn *t;
    tu_rng r;
    int rounds = (int)tu_scale(6);
    opts(&o, dir);
    TU_OK(kv_open(&o, &db, &err), &err);
    TU_OK(kv_txn_begin(db, 1, &t, &err), &err);
    for (int i = 0; i < ACCOUNTS; i++) {
        char k[16], v[256];
        acct_key(k, i);
        TU_OK(kv_txn_set(t, k, strlen(k), v, enc(v, BALANCE, i), &err), &err);
    }
    TU_OK(kv_txn_commit(t, NULL, NULL, &err), &err);
    kv_txn_free(t);
    TU_OK(kv_close(db, &err), &err);
    tu_rng_init(&r, tu_seed());
    for (int round = 0; round <= rounds; round++) {
        int last = round == rounds, status;
        pid_t pid = fork();
        if (pid == 0) {
            setpgid(0, 0); /* a process group: the cluster dies as a whole */
            _exit(cluster(dir, last ? 1500 : 60000));
        }
        setpgid(pid, pid);
        if (!last) {
            usleep((useconds_t)(300 + tu_randn(&r, 1200)) * 1000);
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
        }
        waitpid(pid, &status, 0);
        while (waitpid(-pid, NULL, 0) > 0) {}
        if (last) ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "last round failed");
        ck_assert_msg(!has_violation(dir), "an audit saw a wrong total (round %d)", round);
        ck_assert_int_eq(total_of(dir), (long)ACCOUNTS * BALANCE);
    }
    tu_rmdir(dir);
    free(dir);
}
END_TEST

/* ---- large transactions killed mid-commit ---- */

#define BIG_ROWS 6000

static void big_child(const char *dir)
{
    kv_options o;
    kv_db *db;
    kv_err err;
    opts(&o, dir);
    o.max_txn_memory = 256 << 10;
    if (kv_open(&o, &db, &err) != KV_OK) _exit(2);
    for (int gen = 1;; gen++) {
        kv_txn *t;
        char k[32], v[400];
        if (kv_txn_begin(db, 1, &t, &err) != KV_OK) _exit(3);
        for (int i = 0; i < BIG_ROWS; i++) {
            size_t n = 20 + (size_t)(i % 5) * 60;
            sprintf(k, "big%06d", i);
            memset(v, 'a' + gen % 26, n);
            sprintf(v, "%d;", gen);
            v[strlen(v)] = 'x';
            if (kv_txn_set(t, k, strlen(k), v, n, &err) != KV_OK) _exit(4);
        }
        sprintf(k, "%d", gen);
        if (kv_txn_set(t, "gen", 3, k, strlen(k), &err) != KV_OK) _exit(5);
        if (kv_txn_commit(t, NULL, NULL, &err) != KV_OK) _exit(6);
        kv_txn_free(t);
    }
}

START_TEST(test_large_txn_kill9)
{
    char *dir = tu_mkdtemp("bigkill");
    kv_options o;
    tu_rng r;
    int rounds = (int)tu_scale(8), committed_rounds = 0;
    opts(&o, dir);
    tu_rng_init(&r, tu_seed());
    for (int round = 0; round < rounds; round++) {
        kv_db *db;
        kv_err err;
        kv_buf buf = {0};
        int gen = 0, status;
        pid_t pid = fork();
        if (pid == 0) big_child(dir);
        usleep((useconds_t)((200 + tu_randn(&r, 1500)) * 1000 * tu_slowdown()));
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        TU_OK(kv_open(&o, &db, &err), &err);
        if (kv_get(db, NULL, "gen", 3, &buf, NULL, &err) == KV_OK) gen = (int)dec(&buf);
        if (gen) committed_rounds++;
        /* every row belongs to the same, last committed generation */
        for (int i = 0; i < BIG_ROWS && gen; i++) {
            char k[32];
            sprintf(k, "big%06d", i);
            TU_OK(kv_get(db, NULL, k, strlen(k), &buf, NULL, &err), &err);
            ck_assert_msg(dec(&buf) == gen, "row %d has generation %ld, the commit was %d", i,
                          dec(&buf), gen);
        }
        if (!gen) { /* nothing committed yet: nothing at all */
            kv_status st = kv_get(db, NULL, "big000000", 9, &buf, NULL, &err);
            ck_assert_int_eq(st, KV_NOT_FOUND);
        }
        kv_buf_free(&buf);
        TU_OK(kv_close(db, &err), &err);
    }
    ck_assert_msg(committed_rounds > 0, "no large transaction ever committed");
    tu_rmdir(dir);
    free(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("bank");
    TCase *tc = tcase_create("bank");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_bank_kill9);
    tcase_add_test(tc, test_large_txn_kill9);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
