/*
 * test_txn.c - transactions: read-your-own-writes, iterators over pending
 * writes, savepoints, poisoning, conflict detection (lost update, write
 * skew, read-only never conflicts), snapshot stability, TTL and user
 * meta, and large transactions (spilled to disk, committed by ingesting
 * tables) - atomic, conflict-checked and surviving reopen.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

static kv_db *open_db(const kv_options *o)
{
    kv_db *db = NULL;
    kv_err err;
    TU_OK(kv_open(o, &db, &err), &err);
    return db;
}

static kv_txn *begin(kv_db *db, int update)
{
    kv_txn *t = NULL;
    kv_err err;
    TU_OK(kv_txn_begin(db, update, &t, &err), &err);
    return t;
}

static void tset(kv_txn *t, const char *k, const char *v)
{
    kv_err err;
    TU_OK(kv_txn_set(t, k, strlen(k), v, strlen(v), &err), &err);
}

static void tdel(kv_txn *t, const char *k)
{
    kv_err err;
    TU_OK(kv_txn_delete(t, k, strlen(k), &err), &err);
}

static void texpect(kv_txn *t, const char *k, const char *v)
{
    kv_buf val = {0};
    kv_err err;
    kv_status st = kv_txn_get(t, k, strlen(k), &val, NULL, &err);
    if (!v)
        ck_assert_msg(st == KV_NOT_FOUND, "key %s: want not found, got %s", k, kv_status_str(st));
    else {
        ck_assert_msg(st == KV_OK, "key %s: %s (%s)", k, kv_status_str(st), err.msg);
        ck_assert_msg(val.len == strlen(v) && memcmp(val.data, v, val.len) == 0,
                      "key %s: got %.*s want %s", k, (int)val.len, val.data, v);
    }
    kv_buf_free(&val);
}

static void expect(kv_db *db, const char *k, const char *v)
{
    kv_txn *t = begin(db, 0);
    texpect(t, k, v);
    kv_txn_free(t);
}

static void commit(kv_txn *t)
{
    kv_err err;
    TU_OK(kv_txn_commit(t, NULL, NULL, &err), &err);
    kv_txn_free(t);
}

static void put(kv_db *db, const char *k, const char *v)
{
    kv_txn *t = begin(db, 1);
    tset(t, k, v);
    commit(t);
}

START_TEST(test_basics)
{
    char *dir = tu_mkdtemp("txn");
    kv_options o;
    kv_db *db;
    kv_txn *t, *ro;
    kv_err err;
    uint64_t v1 = 0, v2 = 0;
    tu_small_options(&o, dir);
    db = open_db(&o);
    put(db, "a", "0");
    ro = begin(db, 0);
    t = begin(db, 1);
    texpect(t, "a", "0");
    tset(t, "a", "1");
    tset(t, "b", "2");
    texpect(t, "a", "1"); /* read your own writes */
    texpect(t, "b", "2");
    tdel(t, "b");
    texpect(t, "b", NULL);
    expect(db, "a", "0"); /* nothing visible outside before commit */
    TU_OK(kv_txn_commit(t, NULL, &v1, &err), &err);
    ck_assert_uint_gt(v1, kv_txn_read_version(ro));
    /* a committed transaction is poisoned */
    TU_ST(KV_BAD_TXN, kv_txn_set(t, "c", 1, "x", 1, &err), &err);
    TU_ST(KV_BAD_TXN, kv_txn_commit(t, NULL, NULL, &err), &err);
    kv_txn_free(t);
    expect(db, "a", "1");
    expect(db, "b", NULL);
    texpect(ro, "a", "0"); /* the older snapshot is stable */
    TU_ST(KV_READ_ONLY, kv_txn_set(ro, "z", 1, "1", 1, &err), &err);
    kv_txn_free(ro);

    /* discard drops everything; the handle is poisoned */
    t = begin(db, 1);
    tset(t, "d", "4");
    kv_txn_discard(t);
    TU_ST(KV_BAD_TXN, kv_txn_get(t, "d", 1, NULL, NULL, &err), &err);
    kv_txn_free(t);
    expect(db, "d", NULL);

    /* an empty or read-only commit returns the read version */
    t = begin(db, 1);
    TU_OK(kv_txn_commit(t, NULL, &v2, &err), &err);
    kv_txn_free(t);
    ck_assert_uint_eq(v2, v1);

    /* bad input */
    t = begin(db, 1);
    TU_ST(KV_INVALID, kv_txn_set(t, "", 0, "x", 1, &err), &err);
    kv_txn_free(t);
    TU_ST(KV_INVALID, kv_txn_begin(NULL, 1, &t, &err), &err);

    /* TTL and user meta */
    t = begin(db, 1);
    TU_OK(kv_txn_set_ex(t, "ttl-past", 8, "x", 1, 7, 1000, &err), &err);
    TU_OK(kv_txn_set_ex(t, "ttl-future", 10, "y", 1, 9, (uint64_t)time(NULL) + 3600, &err),
          &err);
    texpect(t, "ttl-past", NULL);
    commit(t);
    expect(db, "ttl-past", NULL);
    {
        kv_buf val = {0};
        kv_entry_meta m;
        t = begin(db, 0);
        TU_OK(kv_txn_get(t, "ttl-future", 10, &val, &m, &err), &err);
        ck_assert_int_eq(m.user_meta, 9);
        ck_assert_uint_gt(m.expires_at, (uint64_t)time(NULL));
        kv_txn_free(t);
        kv_buf_free(&val);
    }
    TU_OK(kv_close(db, &err), &err);
    db = open_db(&o);
    expect(db, "a", "1");
    expect(db, "ttl-past", NULL);
    TU_OK(kv_close(db, &err), &err);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

/* ---- iterators over pending writes, against a model ---- */

#define NK 64

typedef struct model {
    char val[NK][16]; /* "" = absent */
} model;

static void key_name(char *k, int i)
{
    sprintf(k, "k%03d", i);
}

static void check_iter(kv_txn *t, const model *m, int reverse, int lo, int hi, const char *prefix)
{
    kv_iter_options io;
    kv_iter *it;
    kv_err err;
    char lk[16], hk[16];
    int want[NK], nw = 0, got = 0;
    memset(&io, 0, sizeof io);
    io.reverse = reverse;
    io.fill_cache = 1;
    if (lo >= 0) {
        key_name(lk, lo);
        io.lower = lk;
        io.lower_len = strlen(lk);
    }
    if (hi >= 0) {
        key_name(hk, hi);
        io.upper = hk;
        io.upper_len = strlen(hk);
    }
    if (prefix) {
        io.prefix = prefix;
        io.prefix_len = strlen(prefix);
    }
    for (int i = 0; i < NK; i++) {
        char k[16];
        int idx = reverse ? NK - 1 - i : i;
        key_name(k, idx);
        if (!m->val[idx][0]) continue;
        if (lo >= 0 && idx < lo) continue;
        if (hi >= 0 && idx >= hi) continue;
        if (prefix && strncmp(k, prefix, strlen(prefix)) != 0) continue;
        want[nw++] = idx;
    }
    TU_OK(kv_txn_iter_new(t, &io, &it, &err), &err);
    for (kv_iter_rewind(it); kv_iter_valid(it); kv_iter_next(it)) {
        size_t kn, vn;
        const void *k = kv_iter_key(it, &kn), *v;
        char wk[16];
        ck_assert_int_lt(got, nw);
        key_name(wk, want[got]);
        ck_assert_msg(kn == strlen(wk) && memcmp(k, wk, kn) == 0, "iter (rev %d) key %.*s want %s",
                      reverse, (int)kn, (const char *)k, wk);
        TU_OK(kv_iter_value(it, &v, &vn, &err), &err);
        ck_assert_msg(vn == strlen(m->val[want[got]]) && memcmp(v, m->val[want[got]], vn) == 0,
                      "value of %s", wk);
        got++;
    }
    TU_OK(kv_iter_status(it, &err), &err);
    ck_assert_int_eq(got, nw);
    /* seek lands on the first key >= (forward) / <= (reverse) */
    if (nw > 1) {
        char sk[16];
        key_name(sk, want[nw / 2]);
        kv_iter_seek(it, sk, strlen(sk));
        ck_assert(kv_iter_valid(it));
        {
            size_t kn;
            const void *k = kv_iter_key(it, &kn);
            ck_assert(kn == strlen(sk) && memcmp(k, sk, kn) == 0);
        }
    }
    kv_iter_free(it);
}

START_TEST(test_iterators_with_pending)
{
    char *dir = tu_mkdtemp("txn");
    kv_options o;
    kv_db *db;
    kv_txn *t;
    kv_err err;
    model m;
    tu_rng r;
    tu_small_options(&o, dir);
    o.max_txn_memory = 64 << 10; /* spill early */
    db = open_db(&o);
    tu_rng_init(&r, tu_seed());
    memset(&m, 0, sizeof m);
    t = begin(db, 1);
    for (int i = 0; i < NK; i += 2) {
        char k[16];
        key_name(k, i);
        sprintf(m.val[i], "c%d", i);
        tset(t, k, m.val[i]);
    }
    commit(t);
    for (int round = 0; round < 20; round++) {
        model tm = m;
        t = begin(db, 1);
        for (int op = 0; op < 40; op++) {
            int i = (int)tu_randn(&r, NK);
            char k[16];
            key_name(k, i);
            if (tu_randn(&r, 3) == 0) {
                tdel(t, k);
                tm.val[i][0] = 0;
            } else {
                sprintf(tm.val[i], "r%d-%d", round, op);
                tset(t, k, tm.val[i]);
            }
        }
        for (int rev = 0; rev < 2; rev++) {
            check_iter(t, &tm, rev, -1, -1, NULL);
            check_iter(t, &tm, rev, 10, 40, NULL);
            check_iter(t, &tm, rev, -1, -1, "k02");
        }
        /* writes after an iterator is made are not seen by it */
        {
            kv_iter_options io;
            kv_iter *it;
            int n = 0;
            memset(&io, 0, sizeof io);
            io.prefix = "k06";
            io.prefix_len = 3;
            TU_OK(kv_txn_iter_new(t, &io, &it, &err), &err);
            tset(t, "k069x", "new");
            for (kv_iter_rewind(it); kv_iter_valid(it); kv_iter_next(it)) {
                size_t kn;
                const char *k = kv_iter_key(it, &kn);
                ck_assert(!(kn == 5 && memcmp(k, "k069x", 5) == 0));
                n++;
            }
            kv_iter_free(it);
            tdel(t, "k069x");
            (void)n;
        }
        if (tu_randn(&r, 2)) {
            commit(t);
            m = tm;
        } else
            kv_txn_free(t);
        /* big pending sets spill: keep the model small but the bytes large */
        if (round % 5 == 4) TU_OK(kv_flush(db, &err), &err);
    }
    t = begin(db, 0);
    check_iter(t, &m, 0, -1, -1, NULL);
    check_iter(t, &m, 1, -1, -1, NULL);
    kv_txn_free(t);
    TU_OK(kv_close(db, &err), &err);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

START_TEST(test_savepoints)
{
    char *dir = tu_mkdtemp("txn");
    kv_options o;
    kv_db *db;
    kv_txn *t;
    kv_err err;
    uint64_t m1, m2;
    char big[2000];
    tu_small_options(&o, dir);
    o.max_txn_memory = 64 << 10;
    db = open_db(&o);
    put(db, "a", "0");
    t = begin(db, 1);
    tset(t, "a", "1");
    m1 = kv_txn_mark(t);
    tset(t, "a", "2");
    tset(t, "b", "2");
    m2 = kv_txn_mark(t);
    tdel(t, "a");
    texpect(t, "a", NULL);
    TU_OK(kv_txn_rollback_to(t, m2, &err), &err);
    texpect(t, "a", "2");
    texpect(t, "b", "2");
    TU_OK(kv_txn_rollback_to(t, m1, &err), &err);
    texpect(t, "a", "1");
    texpect(t, "b", NULL);
    TU_ST(KV_INVALID, kv_txn_rollback_to(t, m2 + 100, &err), &err);
    /* after an error the transaction is poisoned */
    TU_ST(KV_BAD_TXN, kv_txn_commit(t, NULL, NULL, &err), &err);
    kv_txn_free(t);
    expect(db, "a", "0");

    /* savepoints across spills */
    memset(big, 'v', sizeof big - 1);
    big[sizeof big - 1] = 0;
    t = begin(db, 1);
    for (int i = 0; i < 100; i++) {
        char k[16];
        sprintf(k, "s%03d", i);
        tset(t, k, big);
    }
    m1 = kv_txn_mark(t);
    for (int i = 0; i < 200; i++) { /* several spills */
        char k[16];
        sprintf(k, "s%03d", i);
        tset(t, k, "after");
    }
    texpect(t, "s005", "after");
    TU_OK(kv_txn_rollback_to(t, m1, &err), &err);
    texpect(t, "s005", big);
    texpect(t, "s150", NULL);
    tset(t, "a", "3");
    commit(t);
    expect(db, "a", "3");
    expect(db, "s005", big);
    expect(db, "s099", big);
    expect(db, "s150", NULL);
    TU_OK(kv_close(db, &err), &err);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

START_TEST(test_conflicts)
{
    char *dir = tu_mkdtemp("txn");
    kv_options o;
    kv_db *db;
    kv_txn *t1, *t2, *r;
    kv_err err;
    tu_small_options(&o, dir);
    db = open_db(&o);
    put(db, "x", "0");
    put(db, "a", "1");
    put(db, "b", "1");

    /* lost update: both read x and write it; the second loses entirely */
    t1 = begin(db, 1);
    t2 = begin(db, 1);
    texpect(t1, "x", "0");
    texpect(t2, "x", "0");
    tset(t1, "x", "1");
    tset(t2, "x", "2");
    tset(t2, "y", "2");
    commit(t1);
    TU_ST(KV_CONFLICT, kv_txn_commit(t2, NULL, NULL, &err), &err);
    kv_txn_free(t2);
    expect(db, "x", "1");
    expect(db, "y", NULL);

    /* write skew: each reads both and writes one */
    t1 = begin(db, 1);
    t2 = begin(db, 1);
    texpect(t1, "a", "1");
    texpect(t1, "b", "1");
    texpect(t2, "a", "1");
    texpect(t2, "b", "1");
    tset(t1, "a", "0");
    tset(t2, "b", "0");
    commit(t1);
    TU_ST(KV_CONFLICT, kv_txn_commit(t2, NULL, NULL, &err), &err);
    kv_txn_free(t2);
    expect(db, "b", "1");

    /* keys read through an iterator count as read */
    t1 = begin(db, 1);
    t2 = begin(db, 1);
    {
        kv_iter *it;
        kv_iter_options io;
        memset(&io, 0, sizeof io);
        TU_OK(kv_txn_iter_new(t1, &io, &it, &err), &err);
        for (kv_iter_rewind(it); kv_iter_valid(it); kv_iter_next(it)) {
        }
        kv_iter_free(it);
    }
    tset(t1, "sum", "x");
    tset(t2, "b", "7");
    commit(t2);
    TU_ST(KV_CONFLICT, kv_txn_commit(t1, NULL, NULL, &err), &err);
    kv_txn_free(t1);

    /* blind writes do not conflict; read-only transactions never do */
    t1 = begin(db, 1);
    t2 = begin(db, 1);
    r = begin(db, 0);
    texpect(r, "x", "1");
    tset(t1, "x", "10");
    tset(t2, "x", "20");
    commit(t1);
    commit(t2);
    expect(db, "x", "20");
    texpect(r, "x", "1");
    TU_OK(kv_txn_commit(r, NULL, NULL, &err), &err);
    kv_txn_free(r);

    /* READ COMMITTED: a refreshed snapshot sees newer commits; reads made
     * under it are checked against it, older reads against theirs */
    t1 = begin(db, 1);
    texpect(t1, "x", "20");
    put(db, "y", "new");
    TU_OK(kv_txn_refresh(t1, &err), &err);
    texpect(t1, "y", "new");
    tset(t1, "z", "1");
    commit(t1); /* y was read after its change: no conflict */
    t1 = begin(db, 1);
    texpect(t1, "x", "20");
    tset(t1, "q", "1");
    put(db, "x", "21");
    TU_OK(kv_txn_refresh(t1, &err), &err);
    texpect(t1, "x", "21");
    texpect(t1, "q", "1"); /* pending writes survive a refresh */
    TU_ST(KV_CONFLICT, kv_txn_commit(t1, NULL, NULL, &err), &err); /* the first read of x */
    kv_txn_free(t1);

    /* a key read in the transaction but written before it began: fine */
    put(db, "w", "1");
    t1 = begin(db, 1);
    texpect(t1, "w", "1");
    tset(t1, "w", "2");
    commit(t1);
    expect(db, "w", "2");
    TU_OK(kv_close(db, &err), &err);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

/* ---- snapshot stability under concurrent writers ---- */

typedef struct writer_arg {
    kv_db *db;
    atomic_int stop;
    int n;
} writer_arg;

static void *writer_main(void *p)
{
    writer_arg *a = p;
    tu_rng r;
    tu_rng_init(&r, 99);
    while (!atomic_load(&a->stop)) {
        kv_txn *t = NULL;
        kv_err err;
        char k[16], v[32];
        if (kv_txn_begin(a->db, 1, &t, &err) != KV_OK) break;
        for (int i = 0; i < 10; i++) {
            sprintf(k, "s%03d", (int)tu_randn(&r, 100));
            sprintf(v, "w%d", a->n);
            kv_txn_set(t, k, strlen(k), v, strlen(v), &err);
        }
        kv_txn_commit(t, NULL, NULL, &err);
        kv_txn_free(t);
        a->n++;
    }
    return NULL;
}

START_TEST(test_snapshot_stable)
{
    char *dir = tu_mkdtemp("txn");
    kv_options o;
    kv_db *db;
    kv_txn *t;
    kv_err err;
    pthread_t th;
    writer_arg a;
    kv_buf first[100], val = {0};
    tu_small_options(&o, dir);
    db = open_db(&o);
    t = begin(db, 1);
    for (int i = 0; i < 100; i++) {
        char k[16];
        sprintf(k, "s%03d", i);
        tset(t, k, "init");
    }
    commit(t);
    memset(&a, 0, sizeof a);
    a.db = db;
    ck_assert_int_eq(pthread_create(&th, NULL, writer_main, &a), 0);
    t = begin(db, 0);
    memset(first, 0, sizeof first);
    for (int pass = 0; pass < 20; pass++) {
        for (int i = 0; i < 100; i++) {
            char k[16];
            sprintf(k, "s%03d", i);
            TU_OK(kv_txn_get(t, k, strlen(k), pass ? &val : &first[i], NULL, &err), &err);
            if (pass)
                ck_assert_msg(val.len == first[i].len && !memcmp(val.data, first[i].data, val.len),
                              "snapshot changed under a writer");
        }
        usleep(2000);
    }
    atomic_store(&a.stop, 1);
    pthread_join(th, NULL);
    ck_assert_int_gt(a.n, 0);
    kv_txn_free(t);
    for (int i = 0; i < 100; i++) kv_buf_free(&first[i]);
    kv_buf_free(&val);
    TU_OK(kv_close(db, &err), &err);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

/* ---- large transactions ---- */

static void big_value(char *v, size_t *len, int i, int gen)
{
    /* every 7th value goes to the value log */
    size_t n = i % 7 == 0 ? 1500 : 40;
    for (size_t j = 0; j < n; j++) v[j] = (char)('a' + (i + j + (size_t)gen) % 26);
    snprintf(v, n, "g%d-i%d-", gen, i);
    v[strlen(v)] = '-';
    *len = n;
}

static void check_big(kv_db *db, uint64_t version, int n, int gen)
{
    kv_read_options ro;
    kv_buf val = {0};
    kv_err err;
    char k[32], v[2000];
    size_t vl;
    ro.version = version;
    ro.fill_cache = 1;
    for (int i = 0; i < n; i++) {
        kv_status st;
        sprintf(k, "big%08d", i);
        st = kv_get(db, version ? &ro : NULL, k, strlen(k), &val, NULL, &err);
        if (gen < 0) {
            ck_assert_msg(st == KV_NOT_FOUND, "%s present", k);
            continue;
        }
        ck_assert_msg(st == KV_OK, "%s: %s %s", k, kv_status_str(st), err.msg);
        big_value(v, &vl, i, gen);
        ck_assert_msg(val.len == vl && memcmp(val.data, v, vl) == 0, "%s: wrong value", k);
    }
    kv_buf_free(&val);
}

static int count_prefix(kv_db *db, const char *prefix, uint64_t version)
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
    for (kv_iter_rewind(it); kv_iter_valid(it); kv_iter_next(it)) n++;
    TU_OK(kv_iter_status(it, &err), &err);
    kv_iter_free(it);
    return n;
}

START_TEST(test_large_txn)
{
    char *dir = tu_mkdtemp("txn");
    kv_options o;
    kv_db *db;
    kv_txn *t, *old, *loser;
    kv_err err;
    uint64_t before, committed = 0, total = 0, entries = 0;
    int n;
    char v[2000];
    size_t vl;
    tu_small_options(&o, dir);
    o.value_threshold = 1024;
    o.max_txn_memory = 2 << 20;
    db = open_db(&o);
    /* existing data in the range, in memtables and tables */
    for (int i = 0; i < 2000; i += 10) {
        char k[32];
        sprintf(k, "big%08d", i);
        put(db, k, "old");
    }
    TU_OK(kv_flush(db, &err), &err);
    put(db, "big00000005", "old-in-memtable");
    before = kv_latest_version(db);
    old = begin(db, 0);
    /* far larger than every memtable together: 10 x NumMemtables x MemTableSize */
    t = begin(db, 1);
    for (n = 0; total < 10ull * (uint64_t)o.num_memtables * (uint64_t)o.mem_table_size; n++) {
        char k[32];
        sprintf(k, "big%08d", n);
        big_value(v, &vl, n, 1);
        TU_OK(kv_txn_set(t, k, strlen(k), v, vl, &err), &err);
        total += vl + strlen(k);
    }
    kv_txn_size(t, &entries, NULL);
    ck_assert_uint_eq(entries, (uint64_t)n);
    /* a loser: reads a key the big transaction writes */
    loser = begin(db, 1);
    texpect(loser, "big00000010", "old");
    tset(loser, "loser", "1");
    TU_OK(kv_txn_commit(t, NULL, &committed, &err), &err);
    kv_txn_free(t);
    ck_assert_uint_gt(committed, before);
    { /* it really was committed by ingesting tables, at its version */
        kv_table_info ti[256];
        int nt = kv_get_tables(db, ti, 256), ing = 0;
        for (int i = 0; i < nt && i < 256; i++)
            if (ti[i].ingested) {
                ck_assert_uint_eq(ti[i].max_version, committed);
                ing++;
            }
        ck_assert_int_gt(ing, 0);
    }
    TU_ST(KV_CONFLICT, kv_txn_commit(loser, NULL, NULL, &err), &err);
    kv_txn_free(loser);
    expect(db, "loser", NULL);
    check_big(db, 0, n, 1);
    ck_assert_int_eq(count_prefix(db, "big", 0), n);
    /* the snapshot taken before sees the old state only */
    texpect(old, "big00000010", "old");
    texpect(old, "big00000005", "old-in-memtable");
    texpect(old, "big00000011", NULL);
    ck_assert_int_eq(count_prefix(db, "big", kv_txn_read_version(old)), 201);
    kv_txn_free(old);
    /* later writes win over the ingested ones */
    put(db, "big00000003", "newer");
    expect(db, "big00000003", "newer");

    /* a second large transaction overwriting the first, while compaction runs */
    t = begin(db, 1);
    for (int i = 0; i < n; i++) {
        char k[32];
        sprintf(k, "big%08d", i);
        if (i == 3) continue;
        big_value(v, &vl, i, 2);
        TU_OK(kv_txn_set(t, k, strlen(k), v, vl, &err), &err);
    }
    commit(t);
    expect(db, "big00000003", "newer");
    TU_OK(kv_close(db, &err), &err);

    db = open_db(&o);
    expect(db, "big00000003", "newer");
    {
        kv_buf val = {0};
        for (int i = 0; i < n; i++) {
            char k[32];
            if (i == 3) continue;
            sprintf(k, "big%08d", i);
            TU_OK(kv_get(db, NULL, k, strlen(k), &val, NULL, &err), &err);
            big_value(v, &vl, i, 2);
            ck_assert_msg(val.len == vl && !memcmp(val.data, v, vl), "%s after reopen", k);
        }
        kv_buf_free(&val);
    }
    ck_assert_int_eq(count_prefix(db, "big", 0), n);
    /* compaction of ingested tables keeps everything */
    TU_OK(kv_compact_all(db, &err), &err);
    ck_assert_int_eq(count_prefix(db, "big", 0), n);
    expect(db, "big00000003", "newer");
    TU_OK(kv_close(db, &err), &err);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

/* A large commit over two key spaces (first bytes 'a' and 'z') that
 * straddle data already at the bottom ('m'): the ingested tables do not
 * span the gap, so each goes to the bottom level next to 'm', instead of
 * a stack of levels above it; and a drop of one key space removes its
 * tables whole. */
START_TEST(test_large_txn_key_spaces)
{
    char *dir = tu_mkdtemp("txn");
    kv_options o;
    kv_db *db;
    kv_txn *t;
    kv_err err;
    kv_table_info ti[256];
    int nt, bottom = -1, ing = 0;
    char v[400];
    tu_small_options(&o, dir);
    o.max_txn_memory = 1 << 20;
    db = open_db(&o);
    for (int i = 0; i < 100; i++) {
        char k[32];
        sprintf(k, "m%08d", i);
        put(db, k, "middle");
    }
    TU_OK(kv_compact_all(db, &err), &err);
    nt = kv_get_tables(db, ti, 256);
    ck_assert_int_eq(nt, 1);
    bottom = ti[0].level;
    ck_assert_int_gt(bottom, 0);
    t = begin(db, 1);
    memset(v, 'x', sizeof v);
    for (int i = 0; i < 6000; i++) {
        char k[32];
        sprintf(k, "%c%08d", i % 2 ? 'z' : 'a', i);
        TU_OK(kv_txn_set(t, k, strlen(k), v, sizeof v, &err), &err);
    }
    commit(t);
    nt = kv_get_tables(db, ti, 256);
    for (int i = 0; i < nt && i < 256; i++) {
        if (!ti[i].ingested) continue;
        ing++;
        ck_assert_msg(ti[i].smallest[0] == ti[i].largest[0], "a table spans %s..%s",
                      ti[i].smallest, ti[i].largest);
        ck_assert_msg(ti[i].level == bottom, "ingested table %s..%s at level %d, not %d",
                      ti[i].smallest, ti[i].largest, ti[i].level, bottom);
    }
    ck_assert_int_ge(ing, 2);
    ck_assert_int_eq(count_prefix(db, "a", 0), 3000);
    ck_assert_int_eq(count_prefix(db, "z", 0), 3000);
    ck_assert_int_eq(count_prefix(db, "m", 0), 100);
    /* the 'a' tables go whole once the drop is visible to the compactor */
    TU_OK(kv_drop_prefix(db, "a", 1, &err), &err);
    for (int round = 0; round < 200; round++) {
        int left = 0;
        nt = kv_get_tables(db, ti, 256);
        for (int i = 0; i < nt && i < 256; i++) left += ti[i].smallest[0] == 'a';
        if (!left) break;
        usleep(25 * 1000);
    }
    nt = kv_get_tables(db, ti, 256);
    for (int i = 0; i < nt && i < 256; i++)
        ck_assert_msg(ti[i].smallest[0] != 'a', "table %s..%s still there", ti[i].smallest,
                      ti[i].largest);
    ck_assert_int_eq(count_prefix(db, "a", 0), 0);
    ck_assert_int_eq(count_prefix(db, "z", 0), 3000);
    TU_OK(kv_close(db, &err), &err);
    db = open_db(&o);
    ck_assert_int_eq(count_prefix(db, "z", 0), 3000);
    ck_assert_int_eq(count_prefix(db, "m", 0), 100);
    TU_OK(kv_close(db, &err), &err);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

START_TEST(test_large_txn_undone)
{
    char *dir = tu_mkdtemp("txn");
    kv_options o;
    kv_db *db;
    kv_txn *t;
    kv_err err;
    char v[2000];
    size_t vl;
    uint64_t mark;
    tu_small_options(&o, dir);
    o.max_txn_memory = 256 << 10;
    db = open_db(&o);
    t = begin(db, 1);
    tset(t, "keep", "1");
    mark = kv_txn_mark(t);
    for (int i = 0; i < 5000; i++) {
        char k[32];
        sprintf(k, "big%08d", i);
        big_value(v, &vl, i, 1);
        TU_OK(kv_txn_set(t, k, strlen(k), v, vl, &err), &err);
    }
    TU_OK(kv_txn_rollback_to(t, mark, &err), &err);
    commit(t);
    expect(db, "keep", "1");
    ck_assert_int_eq(count_prefix(db, "big", 0), 0);
    TU_OK(kv_close(db, &err), &err);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

/* Spilled values go to the value log once: the transaction's runs and
 * its commit carry only pointers.  The value log stays pinned while the
 * transaction is open (a GC run cannot lose its values), and an abandoned
 * transaction's values count as discardable. */
static uint64_t vlog_bytes(kv_db *db)
{
    kv_stats st;
    kv_get_stats(db, &st);
    return st.vlog_bytes;
}

static uint64_t vlog_discard(kv_db *db)
{
    kv_stats st;
    kv_get_stats(db, &st);
    return st.vlog_discard_bytes;
}

#define SPILLED_VLEN 3000

static void spilled_value(char *v, int i, int gen)
{
    memset(v, 'a' + (i + gen) % 26, SPILLED_VLEN);
    sprintf(v, "%d-%d", gen, i);
}

static void spill_values(kv_txn *t, const char *prefix, int n, int gen)
{
    char v[SPILLED_VLEN];
    kv_err err;
    for (int i = 0; i < n; i++) {
        char k[32];
        sprintf(k, "%s%06d", prefix, i);
        spilled_value(v, i, gen);
        TU_OK(kv_txn_set(t, k, strlen(k), v, sizeof v, &err), &err);
    }
}

static void check_spilled(kv_db *db, const char *prefix, int n, int gen)
{
    kv_buf val = {0};
    kv_err err;
    char v[SPILLED_VLEN];
    for (int i = 0; i < n; i++) {
        char k[32];
        sprintf(k, "%s%06d", prefix, i);
        spilled_value(v, i, gen);
        TU_OK(kv_get(db, NULL, k, strlen(k), &val, NULL, &err), &err);
        ck_assert_msg(val.len == sizeof v && memcmp(val.data, v, sizeof v) == 0, "%s", k);
    }
    kv_buf_free(&val);
}

/* The value of key `prefix%06d` i must be generation gen (or absent if
 * gen < 0), read inside transaction t. */
static void check_own(kv_txn *t, const char *prefix, int i, int gen)
{
    char k[32], v[SPILLED_VLEN];
    kv_buf val = {0};
    kv_err err;
    kv_status st;
    sprintf(k, "%s%06d", prefix, i);
    st = kv_txn_get(t, k, strlen(k), &val, NULL, &err);
    if (gen < 0) {
        ck_assert_msg(st == KV_NOT_FOUND, "%s: %s", k, kv_status_str(st));
        return;
    }
    TU_OK(st, &err);
    spilled_value(v, i, gen);
    ck_assert_msg(val.len == sizeof v && memcmp(val.data, v, sizeof v) == 0,
                  "%s: not generation %d", k, gen);
    kv_buf_free(&val);
}

/* Once a transaction has spilled, large values go to the value log at
 * once (pending.h, early placement).  Reads of such a value before its
 * chunk is written, overwrites, savepoints, deletes and iterators all see
 * the transaction's newest live writes; the commit keeps exactly those. */
START_TEST(test_early_placed_values)
{
    char *dir = tu_mkdtemp("txn");
    kv_options o;
    kv_db *db;
    kv_txn *t;
    kv_iter *it;
    kv_iter_options io;
    kv_err err;
    uint64_t mark, before;
    int n = 0;
    tu_small_options(&o, dir);
    o.value_threshold = 1024;
    o.max_txn_memory = 128 << 10;
    o.auto_vlog_gc = 0;
    db = open_db(&o);
    t = begin(db, 1);
    spill_values(t, "a", 200, 0); /* 600 KB: spills, then places early */
    /* a value placed a moment ago, read back before its chunk is written */
    spill_values(t, "b", 10, 0);
    check_own(t, "b", 9, 0);
    check_own(t, "a", 199, 0);
    /* overwritten twice; the newest wins */
    spill_values(t, "b", 10, 1);
    spill_values(t, "b", 5, 2);
    check_own(t, "b", 3, 2);
    check_own(t, "b", 7, 1);
    /* undone: a savepoint's writes, early-placed, vanish */
    mark = kv_txn_mark(t);
    spill_values(t, "b", 10, 3);
    spill_values(t, "c", 10, 3);
    check_own(t, "b", 1, 3);
    TU_OK(kv_txn_rollback_to(t, mark, &err), &err);
    check_own(t, "b", 1, 2);
    check_own(t, "c", 1, -1);
    /* deleted after being placed */
    TU_OK(kv_txn_delete(t, "b000009", 7, &err), &err);
    check_own(t, "b", 9, -1);
    /* more than a chunk's worth (4 MiB), so chunks are written meanwhile */
    before = vlog_bytes(db);
    spill_values(t, "d", 2000, 4);
    ck_assert_msg(vlog_bytes(db) - before >= (4u << 20),
                  "only %llu bytes in the value log before the commit",
                  (unsigned long long)(vlog_bytes(db) - before));
    spill_values(t, "e", 3, 5); /* still in the chunk when the iterator starts */
    memset(&io, 0, sizeof io);
    TU_OK(kv_txn_iter_new(t, &io, &it, &err), &err);
    for (kv_iter_rewind(it); kv_iter_valid(it); kv_iter_next(it)) {
        size_t kl, vl;
        const char *k = kv_iter_key(it, &kl);
        const void *v;
        char want[SPILLED_VLEN], num[16] = {0};
        int i;
        ck_assert_uint_eq(kl, 7);
        memcpy(num, k + 1, 6);
        i = atoi(num);
        TU_OK(kv_iter_value(it, &v, &vl, &err), &err);
        spilled_value(want, i, k[0] == 'a' ? 0 : k[0] == 'b' ? (i < 5 ? 2 : 1) : k[0] == 'd' ? 4 : 5);
        ck_assert_msg(vl == sizeof want && memcmp(v, want, vl) == 0, "%.*s", (int)kl, k);
        n++;
    }
    TU_OK(kv_iter_status(it, &err), &err);
    kv_iter_free(it);
    ck_assert_int_eq(n, 200 + 9 + 2000 + 3);
    commit(t);
    for (int pass = 0; pass < 2; pass++) {
        check_spilled(db, "a", 200, 0);
        check_spilled(db, "d", 2000, 4);
        check_spilled(db, "e", 3, 5);
        ck_assert_int_eq(count_prefix(db, "b", 0), 9);
        ck_assert_int_eq(count_prefix(db, "c", 0), 0);
        t = begin(db, 0);
        for (int i = 0; i < 10; i++) check_own(t, "b", i, i == 9 ? -1 : i < 5 ? 2 : 1);
        kv_txn_free(t);
        if (pass == 0) {
            TU_OK(kv_close(db, &err), &err);
            db = open_db(&o);
        }
    }
    TU_OK(kv_close(db, &err), &err);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

START_TEST(test_spilled_values)
{
    char *dir = tu_mkdtemp("txn");
    kv_options o;
    kv_db *db;
    kv_txn *t;
    kv_err err;
    uint64_t before, during, value_bytes = 3000ull * 2000;
    kv_status st;
    tu_small_options(&o, dir);
    o.value_threshold = 1024;
    o.max_txn_memory = 256 << 10;
    o.value_log_file_size = 64 << 20; /* a spilling transaction's values: one file of its own */
    o.auto_vlog_gc = 0;               /* the GC runs below are the only ones */
    db = open_db(&o);

    before = vlog_bytes(db);
    t = begin(db, 1);
    spill_values(t, "big", 2000, 1);
    during = vlog_bytes(db) - before;
    /* (all but the last arena's values are in the log before the commit) */
    ck_assert_msg(during >= value_bytes / 2, "only %llu bytes in the value log before commit",
                  (unsigned long long)during);
    /* own writes read back from spilled runs, by get and by iterator */
    {
        kv_buf val = {0};
        TU_OK(kv_txn_get(t, "big000007", 9, &val, NULL, &err), &err);
        ck_assert_uint_eq(val.len, 3000);
        ck_assert(memcmp(val.data, "1-7", 3) == 0);
        kv_buf_free(&val);
    }
    /* garbage in the same file, made discardable by compaction once the
     * transaction's read point moves on (as READ COMMITTED statements do;
     * the pin moves with it) */
    for (int gen = 0; gen < 10; gen++) {
        kv_txn *j = begin(db, 1);
        spill_values(j, "junk", 300, gen);
        commit(j);
    }
    TU_OK(kv_txn_refresh(t, &err), &err);
    TU_OK(kv_flush(db, &err), &err);
    TU_OK(kv_compact_all(db, &err), &err);
    ck_assert_msg(vlog_discard(db) > 0, "no discard statistics to drive GC");
    /* GC while t runs: its pin keeps the files made after its first spill
     * (the junk's, all garbage now) from being rewritten */
    st = kv_run_value_log_gc(db, 0.2, &err);
    ck_assert_msg(st == KV_NO_REWRITE, "GC rewrote a pinned file: %s", kv_status_str(st));
    before = vlog_bytes(db);
    commit(t);
    /* written once: the commit added only the last arena's values */
    during += vlog_bytes(db) - before;
    ck_assert_msg(during < value_bytes * 115 / 100, "value log grew by %llu for %llu value bytes",
                  (unsigned long long)during, (unsigned long long)value_bytes);
    check_spilled(db, "big", 2000, 1);
    for (int i = 0; i < 4; i++) {
        st = kv_run_value_log_gc(db, 0.3, &err);
        ck_assert_msg(st == KV_OK || st == KV_NO_REWRITE, "%s", kv_status_str(st));
    }
    check_spilled(db, "big", 2000, 1);

    /* abandoned: the values it wrote to the log become discardable (those
     * still in its chunk were never written), and nothing is visible */
    before = vlog_discard(db);
    during = vlog_bytes(db);
    t = begin(db, 1);
    spill_values(t, "gone", 1000, 2);
    during = vlog_bytes(db) - during;
    kv_txn_free(t);
    ck_assert_msg(during > 0, "the abandoned transaction wrote no values to the log");
    ck_assert_msg(vlog_discard(db) - before >= during, "discard grew by %llu for %llu written",
                  (unsigned long long)(vlog_discard(db) - before), (unsigned long long)during);
    ck_assert_int_eq(count_prefix(db, "gone", 0), 0);
    TU_OK(kv_close(db, &err), &err);

    db = open_db(&o);
    check_spilled(db, "big", 2000, 1);
    ck_assert_int_eq(count_prefix(db, "gone", 0), 0);
    TU_OK(kv_close(db, &err), &err);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("txn");
    TCase *tc = tcase_create("txn");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_basics);
    tcase_add_test(tc, test_iterators_with_pending);
    tcase_add_test(tc, test_savepoints);
    tcase_add_test(tc, test_conflicts);
    tcase_add_test(tc, test_snapshot_stable);
    tcase_add_test(tc, test_large_txn);
    tcase_add_test(tc, test_large_txn_key_spaces);
    tcase_add_test(tc, test_large_txn_undone);
    tcase_add_test(tc, test_spilled_values);
    tcase_add_test(tc, test_early_placed_values);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
