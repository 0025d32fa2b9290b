/*
 * testutil.h - small helpers shared by the engine tests: temporary
 * directories, a replayable seed, deterministic random bytes and compact
 * assertions on kv_status.
 */
#ifndef KV_TESTUTIL_H
#define KV_TESTUTIL_H

#include <check.h>
#include <stdint.h>
#include <stdio.h>

#include "kv.h"

/* Creates a fresh directory under $TMPDIR (or /tmp); returns a static-
 * lifetime malloc'd path.  Removed by tu_rmdir(). */
char *tu_mkdtemp(const char *tag);
void tu_rmdir(const char *path);

/* The seed of this run: $KV_TEST_SEED if set, else time-based; printed once
 * so a failure can be replayed. */
uint64_t tu_seed(void);

/* xorshift64* generator. */
typedef struct tu_rng {
    uint64_t s;
} tu_rng;
void tu_rng_init(tu_rng *r, uint64_t seed);
uint64_t tu_rand(tu_rng *r);
uint64_t tu_randn(tu_rng *r, uint64_t n); /* uniform in [0, n) */
void tu_randbytes(tu_rng *r, void *buf, size_t n);

/* Options for small, fast test databases in dir. */
void tu_small_options(kv_options *o, const char *dir);

/* Fails the test with the error message unless st == want. */
#define TU_ST(want, expr, errp)                                                               \
    do {                                                                                      \
        kv_status tu_st_ = (expr);                                                            \
        const kv_err *tu_e_ = (errp);                                                         \
        ck_assert_msg(tu_st_ == (want), "%s -> %s (%d), want %s: %s", #expr,                  \
                      kv_status_str(tu_st_), (int)tu_st_, kv_status_str(want),                \
                      tu_e_ ? tu_e_->msg : "");                                               \
    } while (0)

#define TU_OK(expr, errp) TU_ST(KV_OK, expr, errp)

/* Runs suite s and returns the process exit status. */
int tu_run(Suite *s);

/* Number of iterations scaled by $KV_TEST_SCALE (default 1; valgrind runs
 * lower it). */
long tu_scale(long n);

/* How many times slower than native the tests run: $KV_TEST_SLOWDOWN, or
 * 30 under valgrind ($KV_VALGRIND, set by "make valgrind"), else 1.  Waits
 * that must let a child process get somewhere are multiplied by it. */
long tu_slowdown(void);

#endif
