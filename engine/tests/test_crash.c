/*
 * test_crash.c - kill -9 a writer process mid-stream, many times, and
 * check after each reopen that every acknowledged batch is present, that
 * no batch is present in part, and that the database is not corrupt.
 *
 * The child writes batches of keys "b<batch>-<i>" (batch sizes vary so
 * memtables rotate, flush and compact all the time) and, after each
 * kv_write returns, writes the batch number to a pipe.  The parent kills
 * it at a random moment (counted from the child's open in most rounds,
 * from its start - so during recovery - in every fourth), drains the pipe
 * (every acknowledgement the child got out before dying), reopens and
 * checks.  Both synced and unsynced
 * writes must survive a process crash (the WAL is written before a write
 * returns).
 *
 * The value-log variant puts every value in value logs (small files, so
 * they rotate all the time), deletes earlier batches as it goes, and runs
 * value-log GC in a second thread of the child, so kills land during
 * vlog writes, rotations and GC rewrites: acknowledged batches must be
 * there, acknowledged deletes must stay deleted.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

static int batch_size(uint64_t b)
{
    return 1 + (int)((b * 2654435761u) % 50);
}

static void key_of(char *k, uint64_t b, int i)
{
    sprintf(k, "b%08llu-%03d", (unsigned long long)b, i);
}

static void value_of(char *v, size_t *len, uint64_t b, int i)
{
    size_t n = 20 + (size_t)((b * 31 + (uint64_t)i * 17) % 300);
    for (size_t j = 0; j < n; j++) v[j] = (char)('a' + (b + (uint64_t)i + j) % 26);
    *len = n;
}

/* Batch n of the value-log variant also deletes batch n - 3. */
#define DELETE_LAG 3

static void *gc_loop(void *p)
{
    kv_db *db = p;
    kv_err err;
    for (;;) {
        kv_compact_all(db, &err);
        kv_run_value_log_gc(db, 0.2, &err);
    }
    return NULL;
}

static void child(const kv_options *o, uint64_t first, int fd, int sync, int deletes)
{
    kv_db *db;
    kv_err err;
    kv_batch *b;
    char k[64], v[400];
    size_t vl;
    pthread_t gc;
    uint64_t opened = UINT64_MAX;
    if (kv_open(o, &db, &err) != KV_OK) {
        fprintf(stderr, "child open: %s\n", err.msg);
        _exit(2);
    }
    if (write(fd, &opened, sizeof opened) != sizeof opened) _exit(4);
    b = kv_batch_new_for(db);
    if (deletes) pthread_create(&gc, NULL, gc_loop, db);
    for (uint64_t n = first;; n++) {
        kv_write_options wo = {sync};
        int sz = batch_size(n);
        kv_batch_clear(b);
        for (int i = 0; i < sz; i++) {
            key_of(k, n, i);
            value_of(v, &vl, n, i);
            kv_batch_put(b, k, strlen(k), v, vl, &err);
        }
        if (deletes && n >= DELETE_LAG)
            for (int i = 0; i < batch_size(n - DELETE_LAG); i++) {
                key_of(k, n - DELETE_LAG, i);
                kv_batch_delete(b, k, strlen(k), &err);
            }
        if (kv_write(db, &wo, b, NULL, &err) != KV_OK) {
            fprintf(stderr, "child write: %s\n", err.msg);
            _exit(3);
        }
        if (write(fd, &n, sizeof n) != sizeof n) _exit(4);
    }
}

/* Number of keys of batch n present (checking values). */
static int present(kv_db *db, uint64_t n, kv_buf *buf)
{
    char k[64], v[400];
    size_t vl;
    int count = 0;
    kv_err err;
    for (int i = 0; i < batch_size(n); i++) {
        kv_status st;
        key_of(k, n, i);
        st = kv_get(db, NULL, k, strlen(k), buf, NULL, &err);
        ck_assert_msg(st == KV_OK || st == KV_NOT_FOUND, "get: %s", err.msg);
        if (st == KV_OK) {
            value_of(v, &vl, n, i);
            ck_assert_msg(buf->len == vl && !memcmp(buf->data, v, vl), "batch %llu key %d: bad value",
                          (unsigned long long)n, i);
            count++;
        }
    }
    return count;
}

static void crash_loop(int sync, int vlog)
{
    char *dir = tu_mkdtemp("crash");
    kv_options o;
    tu_rng r;
    uint64_t next = 0; /* first batch the next child writes */
    long rounds = tu_scale(25);
    kv_buf buf = {0};

    tu_rng_init(&r, tu_seed() + (uint64_t)sync);
    tu_small_options(&o, dir);
    o.mem_table_size = 128 << 10;
    o.num_memtables = 2;
    o.base_table_size = 64 << 10;
    o.base_level_size = 256 << 10;
    o.num_level_zero_tables = 2;
    o.num_level_zero_tables_stall = 4;
    if (vlog) {
        o.value_threshold = 16; /* every value in a value log */
        o.value_log_file_size = 1 << 20;
        o.value_log_max_entries = 500;
    }
    for (long round = 0; round < rounds; round++) {
        int fds[2];
        pid_t pid;
        uint64_t acked = UINT64_MAX, n;
        int status;
        kv_db *db;
        kv_err err;
        ck_assert_int_eq(pipe(fds), 0);
        pid = fork();
        if (pid == 0) {
            close(fds[0]);
            child(&o, next, fds[1], sync, vlog);
        }
        close(fds[1]);
        /* The kill comes 20-320 ms after: the child's first acknowledged
         * batch in round 0 (so that some batch is acknowledged however
         * slow the machine, e.g. under valgrind), its open in most rounds,
         * its start in every fourth (killed while it opens and recovers).
         * The child sends UINT64_MAX once it is open. */
        for (int wait = round == 0 ? 2 : round % 4 == 3 ? 0 : 1;
             wait && read(fds[0], &n, sizeof n) == sizeof n;) {
            if (n != UINT64_MAX) {
                acked = n;
                wait = 0;
            } else if (wait == 1) {
                wait = 0;
            }
        }
        usleep((useconds_t)(20000 + tu_randn(&r, 300000)));
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        while (read(fds[0], &n, sizeof n) == sizeof n)
            if (n != UINT64_MAX) acked = n;
        close(fds[0]);
        ck_assert_msg(WIFSIGNALED(status), "child exited on its own (status %d)", status);

        TU_OK(kv_open(&o, &db, &err), &err);
        {
            /* the batch in flight when the child died may or may not have
             * made it (it was written, never acknowledged): all or nothing */
            uint64_t inflight = acked == UINT64_MAX ? next : acked + 1;
            int p = present(db, inflight, &buf), landed;
            ck_assert_msg(p == 0 || p == batch_size(inflight),
                          "round %ld: batch %llu is partly present (%d of %d)", round,
                          (unsigned long long)inflight, p, batch_size(inflight));
            landed = p != 0;
            if (vlog && landed && inflight >= DELETE_LAG)
                ck_assert_msg(present(db, inflight - DELETE_LAG, &buf) == 0,
                              "round %ld: batch %llu landed without its deletes", round,
                              (unsigned long long)inflight);
            ck_assert_int_eq(present(db, inflight + 1, &buf), 0);
            /* every acknowledged batch is there, unless a later batch that
             * landed (acknowledged or in flight) deleted it */
            for (uint64_t b = next; acked != UINT64_MAX && b <= acked; b++) {
                uint64_t last = landed ? inflight : acked;
                int gone = vlog && b + DELETE_LAG <= last;
                ck_assert_msg(present(db, b, &buf) == (gone ? 0 : batch_size(b)),
                              "round %ld: acknowledged batch %llu is %s", round,
                              (unsigned long long)b, gone ? "back from the dead" : "incomplete");
            }
            if (vlog) /* deletes that landed in earlier rounds stay deleted */
                for (uint64_t b = 0; b + DELETE_LAG < next; b += 7)
                    ck_assert_msg(present(db, b, &buf) == 0,
                                  "round %ld: deleted batch %llu reappeared", round,
                                  (unsigned long long)b);
            next = (landed ? inflight : (acked == UINT64_MAX ? next - 1 : acked)) + 1;
        }
        TU_OK(kv_close(db, &err), &err);
    }
    ck_assert_msg(next > 0, "no batch was ever acknowledged");
    kv_buf_free(&buf);
    tu_rmdir(dir);
    free(dir);
}

START_TEST(test_kill9_synced)
{
    crash_loop(1, 0);
}
END_TEST

START_TEST(test_kill9_unsynced)
{
    crash_loop(0, 0);
}
END_TEST

START_TEST(test_kill9_vlog_and_gc)
{
    crash_loop(0, 1);
}
END_TEST

START_TEST(test_kill9_vlog_synced)
{
    crash_loop(1, 1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("crash");
    TCase *tc = tcase_create("crash");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_kill9_synced);
    tcase_add_test(tc, test_kill9_unsynced);
    tcase_add_test(tc, test_kill9_vlog_and_gc);
    tcase_add_test(tc, test_kill9_vlog_synced);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
