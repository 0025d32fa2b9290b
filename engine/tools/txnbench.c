/*
 * txnbench.c - transaction benchmarks.
 *
 *   txnbench latency --dir D [--n N]
 *       one thread, N one-key update transactions (begin, set, commit,
 *       free) with sync off: mean, p50, p99 and p99.9 microseconds.
 *   txnbench group --dir D [--threads T] [--seconds S] [--sync]
 *       T threads commit one-key transactions for S seconds: commits/s,
 *       and the process's CPU time per commit.
 *       Run with --threads 1 --sync and --threads 8 --sync to see what
 *       group commit buys over one fsync per commit.
 *   txnbench ratio --dir D [--threads T] [--seconds S] [--rounds R] [--sync]
 *       the same comparison made robust to a drifting disk: R rounds of
 *       S seconds with 1 thread, S seconds with T threads committing one
 *       at a time (a lock in this program around each commit, so every
 *       commit pays its own fsync, as without group commit) and S seconds
 *       with T threads committing freely, on one database; each round's
 *       ratios and their medians, and each side's CPU time per commit.
 *   txnbench big --dir D [--rows N] [--value V]
 *       one transaction of N rows with V-byte values, committed (it spills
 *       and commits by ingesting tables), then counted by a key-only
 *       iterator: seconds to write, to commit, to count.
 *   txnbench crash --dir D [--rows N] [--value V] [--rounds R]
 *       a large transaction killed in its commit: R times, a child process
 *       writes N rows in one transaction and commits it with sync, and is
 *       killed (SIGKILL) at a random moment of the commit (the first
 *       round is not killed: it times the commit).  After each round the
 *       database is reopened and the round's rows counted and checked:
 *       all N (with the values written) or none, and all N when the child
 *       had reported its commit done.  Each committed round is then
 *       dropped (kv_drop_prefix).  Exit status 3 on any partial or lost
 *       transaction.
 *
 * The directory is created; it must not hold a database already.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kv.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds this process has used, every thread (the engine's too). */
static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void die(const char *what, const kv_err *err)
{
    fprintf(stderr, "txnbench: %s: %s\n", what, err->msg);
    exit(1);
}

static kv_db *open_db(const char *dir)
{
    kv_options o;
    kv_db *db;
    kv_err err;
    kv_options_default(&o, dir);
    o.log_level = KV_LOG_WARNING;
    if (kv_open(&o, &db, &err) != KV_OK) die("open", &err);
    return db;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void one_key_txn(kv_db *db, uint64_t i, int sync)
{
    kv_txn *t;
    kv_err err;
    char k[32], v[64];
    kv_commit_options co = {sync};
    kv_status st;
    snprintf(k, sizeof k, "k%012llu", (unsigned long long)i);
    memset(v, 'v', sizeof v);
    if (kv_txn_begin(db, 1, &t, &err) != KV_OK) die("begin", &err);
    if (kv_txn_set(t, k, strlen(k), v, sizeof v, &err) != KV_OK) die("set", &err);
    st = kv_txn_commit(t, &co, NULL, &err);
    if (st != KV_OK) die("commit", &err);
    kv_txn_free(t);
}

static int latency(const char *dir, long n)
{
    kv_db *db = open_db(dir);
    double *lat = malloc(sizeof *lat * (size_t)n), sum = 0, t0;
    kv_err err;
    if (!lat) return 1;
    for (long i = 0; i < n / 10; i++) one_key_txn(db, (uint64_t)i + (uint64_t)n, 0); /* warm up */
    t0 = now_s();
    for (long i = 0; i < n; i++) {
        double a = now_s();
        one_key_txn(db, (uint64_t)i, 0);
        lat[i] = (now_s() - a) * 1e6;
        sum += lat[i];
    }
    t0 = now_s() - t0;
    qsort(lat, (size_t)n, sizeof *lat, cmp_double);
    printf("latency: %ld one-key transactions, sync off: mean %.2f us, p50 %.2f us, p99 %.2f us, "
           "p99.9 %.2f us (%.0f commits/s)\n",
           n, sum / (double)n, lat[n / 2], lat[n * 99 / 100], lat[n * 999 / 1000],
           (double)n / t0);
    free(lat);
    if (kv_close(db, &err) != KV_OK) die("close", &err);
    return 0;
}

typedef struct gjob {
    kv_db *db;
    int id, sync;
    atomic_int *stop;
    pthread_mutex_t *one_at_a_time; /* NULL: commit freely */
    long commits;
} gjob;

static void *group_thread(void *p)
{
    gjob *j = p;
    uint64_t i = (uint64_t)j->id << 40;
    while (!atomic_load(j->stop)) {
        if (j->one_at_a_time) pthread_mutex_lock(j->one_at_a_time);
        one_key_txn(j->db, i++, j->sync);
        if (j->one_at_a_time) pthread_mutex_unlock(j->one_at_a_time);
        j->commits++;
    }
    return NULL;
}

/* T threads commit one-key transactions for S seconds on db: commits.
 * one_at_a_time: a lock each thread holds around its commit.  *cpu_us:
 * the process's CPU time per commit, in microseconds. */
static long timed_commits(kv_db *db, int threads, double seconds, int sync, uint64_t key_base,
                          pthread_mutex_t *one_at_a_time, double *elapsed, double *cpu_us)
{
    pthread_t th[256];
    gjob jobs[256];
    atomic_int stop = 0;
    long total = 0;
    double c0 = cpu_s(), t0 = now_s();
    for (int i = 0; i < threads; i++) {
        jobs[i] = (gjob){db, (int)key_base + i, sync, &stop, one_at_a_time, 0};
        pthread_create(&th[i], NULL, group_thread, &jobs[i]);
    }
    while (now_s() - t0 < seconds) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        total += jobs[i].commits;
    }
    *elapsed = now_s() - t0;
    *cpu_us = total ? (cpu_s() - c0) * 1e6 / (double)total : 0;
    return total;
}

static int group(const char *dir, int threads, double seconds, int sync)
{
    kv_db *db = open_db(dir);
    kv_stats st;
    kv_err err;
    double t, cpu;
    long total;
    if (threads < 1 || threads > 256) return 1;
    total = timed_commits(db, threads, seconds, sync, 0, NULL, &t, &cpu);
    kv_get_stats(db, &st);
    printf("group: %d threads, sync %s: %ld commits in %.2f s = %.0f commits/s, %llu WAL syncs "
           "(%.1f commits per sync), %.1f us of CPU per commit\n",
           threads, sync ? "on" : "off", total, t, (double)total / t,
           (unsigned long long)st.syncs, st.syncs ? (double)total / (double)st.syncs : 0.0, cpu);
    if (kv_close(db, &err) != KV_OK) die("close", &err);
    return 0;
}

/* Alternates 1 committer, T committers one at a time and T committers
 * freely, S seconds each, R rounds, on one database: each round's ratios
 * compare runs a few seconds apart, so a disk whose fsync latency drifts
 * over minutes still gives a stable answer (the medians).  The free run
 * is compared with both: with one committer (no wait for a CPU between
 * commits) and with the same T threads taking turns (the same threads,
 * one fsync per commit). */
static double median(double *r, int n)
{
    qsort(r, (size_t)n, sizeof r[0], cmp_double);
    return n % 2 ? r[n / 2] : (r[n / 2 - 1] + r[n / 2]) / 2;
}

static int ratio(const char *dir, int threads, double seconds, int rounds, int sync)
{
    kv_db *db;
    double r1[64], rs[64], t1, ts, tn, m1, ms, u1, us, un;
    pthread_mutex_t turns = PTHREAD_MUTEX_INITIALIZER;
    kv_err err;
    if (threads < 1 || threads > 84 || rounds < 1 || rounds > 64) {
        fprintf(stderr, "txnbench ratio: --threads 1..84 and --rounds 1..64\n");
        return 2;
    }
    db = open_db(dir);
    for (int i = 0; i < rounds; i++) {
        uint64_t base = (uint64_t)i * 256;
        long c1 = timed_commits(db, 1, seconds, sync, base, NULL, &t1, &u1);
        long cs = timed_commits(db, threads, seconds, sync, base + 1, &turns, &ts, &us);
        long cn = timed_commits(db, threads, seconds, sync, base + 1 + (uint64_t)threads, NULL, &tn,
                                &un);
        double f1 = (double)c1 / t1, fs = (double)cs / ts, fn = (double)cn / tn;
        r1[i] = fn / f1;
        rs[i] = fn / fs;
        printf("round %d: 1 thread %.0f commits/s, %d threads one at a time %.0f, %d threads "
               "%.0f: ratio %.2f to 1 thread, %.2f to one at a time; CPU per commit %.1f, %.1f, "
               "%.1f us\n",
               i + 1, f1, threads, fs, threads, fn, r1[i], rs[i], u1, us, un);
    }
    m1 = median(r1, rounds); /* (sorts: min and max are at the ends) */
    ms = median(rs, rounds);
    printf("ratio to 1 thread: median %.2f, min %.2f, max %.2f over %d rounds (sync %s)\n", m1,
           r1[0], r1[rounds - 1], rounds, sync ? "on" : "off");
    printf("ratio to %d threads one at a time: median %.2f, min %.2f, max %.2f\n", threads, ms,
           rs[0], rs[rounds - 1]);
    if (kv_close(db, &err) != KV_OK) die("close", &err);
    return 0;
}

static int big(const char *dir, long rows, size_t vlen)
{
    kv_db *db = open_db(dir);
    kv_txn *t;
    kv_err err;
    char k[32], *v = malloc(vlen ? vlen : 1);
    double t0, t_write, t_commit;
    uint64_t version = 0;
    kv_iter *it;
    kv_iter_options io;
    long n = 0;
    if (!v) return 1;
    memset(v, 'x', vlen);
    t0 = now_s();
    if (kv_txn_begin(db, 1, &t, &err) != KV_OK) die("begin", &err);
    for (long i = 0; i < rows; i++) {
        snprintf(k, sizeof k, "row%012ld", i);
        if (vlen >= 8) memcpy(v, &i, 8);
        if (kv_txn_set(t, k, strlen(k), v, vlen, &err) != KV_OK) die("set", &err);
    }
    t_write = now_s() - t0;
    t0 = now_s();
    if (kv_txn_commit(t, NULL, &version, &err) != KV_OK) die("commit", &err);
    kv_txn_free(t);
    t_commit = now_s() - t0;
    t0 = now_s();
    memset(&io, 0, sizeof io);
    io.key_only = 1;
    if (kv_iter_new(db, &io, &it, &err) != KV_OK) die("iter", &err);
    for (kv_iter_rewind(it); kv_iter_valid(it); kv_iter_next(it)) n++;
    if (kv_iter_status(it, &err) != KV_OK) die("iterate", &err);
    kv_iter_free(it);
    printf("big: %ld rows x %zu-byte values in one transaction: writes %.2f s, commit %.2f s "
           "(version %llu), counted %ld rows in %.2f s\n",
           rows, vlen, t_write, t_commit, (unsigned long long)version, n, now_s() - t0);
    free(v);
    if (kv_close(db, &err) != KV_OK) die("close", &err);
    return n == rows ? 0 : 2;
}

/* ---- crash: a large transaction killed in its commit ---- */

/* The child of round r: writes rows rows under the round's prefix in one
 * transaction, says 'C' on fd before committing and 'D' once the commit
 * returned, then waits to be killed (round 0: exits). */
static void crash_child(const char *dir, int r, long rows, size_t vlen, int fd)
{
    kv_db *db = open_db(dir);
    kv_txn *t;
    kv_err err;
    kv_commit_options co = {1};
    char k[32], *v = malloc(vlen);
    if (!v) _exit(1);
    memset(v, 'x', vlen);
    if (kv_txn_begin(db, 1, &t, &err) != KV_OK) die("begin", &err);
    for (long i = 0; i < rows; i++) {
        snprintf(k, sizeof k, "r%03d-%012ld", r, i);
        memcpy(v, &i, 8);
        if (kv_txn_set(t, k, strlen(k), v, vlen, &err) != KV_OK) die("set", &err);
    }
    if (write(fd, "C", 1) != 1) _exit(1);
    if (kv_txn_commit(t, &co, NULL, &err) != KV_OK) die("commit", &err);
    if (write(fd, "D", 1) != 1) _exit(1);
    if (r == 0) {
        kv_txn_free(t);
        if (kv_close(db, &err) != KV_OK) die("close", &err);
        _exit(0);
    }
    for (;;) pause();
}

/* Counts round r's rows in db and checks their values: -1 when a row is
 * missing from the middle or a value is wrong. */
static long crash_count(kv_db *db, int r, size_t vlen)
{
    char prefix[16];
    kv_iter_options io;
    kv_iter *it;
    kv_err err;
    long n = 0;
    snprintf(prefix, sizeof prefix, "r%03d-", r);
    memset(&io, 0, sizeof io);
    io.prefix = prefix;
    io.prefix_len = strlen(prefix);
    if (kv_iter_new(db, &io, &it, &err) != KV_OK) die("iter", &err);
    for (kv_iter_rewind(it); kv_iter_valid(it); kv_iter_next(it), n++) {
        char want[32];
        size_t klen, len;
        const void *k = kv_iter_key(it, &klen), *val;
        long got;
        snprintf(want, sizeof want, "r%03d-%012ld", r, n);
        if (klen != strlen(want) || memcmp(k, want, klen)) break;
        if (kv_iter_value(it, &val, &len, &err) != KV_OK) die("value", &err);
        memcpy(&got, val, 8);
        if (len != vlen || got != n) break;
    }
    if (kv_iter_valid(it)) n = -1; /* stopped early: a gap or a wrong value */
    if (kv_iter_status(it, &err) != KV_OK) die("iterate", &err);
    kv_iter_free(it);
    return n;
}

static int crash(const char *dir, long rows, size_t vlen, int rounds)
{
    kv_db *db;
    kv_err err;
    double commit_s = 0;
    int all = 0, none = 0, bad = 0;
    unsigned seed = (unsigned)time(NULL);
    if (vlen < 8 || rounds < 2) {
        fprintf(stderr,
                "txnbench crash: --value at least 8 (a row number) and --rounds at least 2\n");
        return 2;
    }
    db = open_db(dir); /* creates it, before any child opens it */
    if (kv_close(db, &err) != KV_OK) die("close", &err);
    srand(seed);
    printf("crash: %ld rows x %zu-byte values per transaction, %d rounds, seed %u\n", rows, vlen,
           rounds, seed);
    for (int r = 0; r < rounds; r++) {
        int fd[2], status, acked = 0;
        double t0, delay = 0;
        char c;
        long n;
        pid_t pid;
        if (pipe(fd)) return 1;
        fflush(stdout);
        pid = fork();
        if (pid < 0) return 1;
        if (pid == 0) {
            close(fd[0]);
            crash_child(dir, r, rows, vlen, fd[1]);
        }
        close(fd[1]);
        if (read(fd[0], &c, 1) != 1 || c != 'C') {
            fprintf(stderr, "txnbench: round %d: the child died before its commit\n", r);
            return 1;
        }
        t0 = now_s();
        if (r == 0) { /* times the commit */
            acked = read(fd[0], &c, 1) == 1 && c == 'D';
            commit_s = now_s() - t0;
        } else {
            struct timespec ts;
            delay = commit_s * 1.2 * (double)rand() / RAND_MAX;
            ts.tv_sec = (time_t)delay;
            ts.tv_nsec = (long)((delay - (double)ts.tv_sec) * 1e9);
            nanosleep(&ts, NULL);
            kill(pid, SIGKILL);
            acked = read(fd[0], &c, 1) == 1 && c == 'D';
        }
        close(fd[0]);
        waitpid(pid, &status, 0);
        if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
            fprintf(stderr, "txnbench: round %d: the child failed (exit status %d)\n", r,
                    WEXITSTATUS(status));
            return 1;
        }
        db = open_db(dir);
        n = crash_count(db, r, vlen);
        if (n == rows) {
            all++;
            if (kv_drop_prefix(db, "r", 1, &err) != KV_OK) die("drop", &err);
        } else if (n == 0 && !acked)
            none++;
        else
            bad++;
        printf("round %d: %s at %.3f s of a %.3f s commit, %s: %ld rows%s\n", r,
               r == 0 ? "not killed" : "killed", delay, commit_s,
               acked ? "acknowledged" : "not acknowledged", n,
               n == rows || (n == 0 && !acked) ? "" : "  <-- PARTIAL OR LOST");
        if (kv_close(db, &err) != KV_OK) die("close", &err);
    }
    printf("crash: %d rounds all rows, %d rounds none, %d partial or lost\n", all, none, bad);
    return bad ? 3 : 0;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "", *dir = NULL;
    long n = 200000, rows = 1000000;
    int threads = 8, sync = 0;
    double seconds = 5;
    int rounds = 10;
    size_t vlen = 100;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--dir") && next) dir = argv[++i];
        else if (!strcmp(a, "--n") && next) n = atol(argv[++i]);
        else if (!strcmp(a, "--threads") && next) threads = atoi(argv[++i]);
        else if (!strcmp(a, "--seconds") && next) seconds = atof(argv[++i]);
        else if (!strcmp(a, "--rows") && next) rows = atol(argv[++i]);
        else if (!strcmp(a, "--rounds") && next) rounds = atoi(argv[++i]);
        else if (!strcmp(a, "--value") && next) vlen = (size_t)atol(argv[++i]);
        else if (!strcmp(a, "--sync")) sync = 1;
        else {
            fprintf(stderr, "txnbench: unknown argument \"%s\"\n", a);
            return 2;
        }
    }
    if (!dir || n < 10 || rows < 1) {
        fprintf(stderr, "usage: txnbench latency|group|ratio|big|crash --dir DIR [options]\n");
        return 2;
    }
    if (!strcmp(mode, "latency")) return latency(dir, n);
    if (!strcmp(mode, "group")) return group(dir, threads, seconds, sync);
    if (!strcmp(mode, "ratio")) return ratio(dir, threads, seconds, rounds, sync);
    if (!strcmp(mode, "big")) return big(dir, rows, vlen);
    if (!strcmp(mode, "crash")) return crash(dir, rows, vlen, rounds);
    fprintf(stderr, "txnbench: unknown mode \"%s\"\n", mode);
    return 2;
}
