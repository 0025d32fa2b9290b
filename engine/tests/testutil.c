/*
 * testutil.c - helpers for the engine tests (see testutil.h).
 */
#include "testutil.h"

#include <ftw.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The last directories made, kept reachable: a forked child that leaves
 * with _exit() may have dropped its only pointer to the test's directory
 * name, which valgrind would report as a leak of the child. */
char *tu_recent_dirs[16]; /* global: the compiler may not drop the stores */
static unsigned n_recent_dirs;

char *tu_mkdtemp(const char *tag)
{
    const char *root = getenv("TMPDIR");
    char *p = malloc(4096);
    tu_recent_dirs[n_recent_dirs++ % 16] = p;
    snprintf(p, 4096, "%s/kvtest-%s-XXXXXX", root && *root ? root : "/tmp", tag);
    if (!mkdtemp(p)) {
        perror("mkdtemp");
        abort();
    }
    return p;
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void tu_rmdir(const char *path)
{
    if (path && !getenv("KV_TEST_KEEP")) nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static uint64_t the_seed;
static pthread_once_t seed_once = PTHREAD_ONCE_INIT;

static void seed_init(void)
{
    const char *s = getenv("KV_TEST_SEED");
    the_seed = s ? strtoull(s, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
    fprintf(stderr, "# KV_TEST_SEED=%llu\n", (unsigned long long)the_seed);
}

uint64_t tu_seed(void)
{
    pthread_once(&seed_once, seed_init);
    return the_seed;
}

void tu_rng_init(tu_rng *r, uint64_t seed)
{
    r->s = seed * 0x9e3779b97f4a7c15ULL + 0x632be59bd9b4e019ULL;
    if (!r->s) r->s = 1;
}

uint64_t tu_rand(tu_rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545F4914F6CDD1DULL;
}

uint64_t tu_randn(tu_rng *r, uint64_t n)
{
    return n ? tu_rand(r) % n : 0;
}

void tu_randbytes(tu_rng *r, void *buf, size_t n)
{
    uint8_t *p = buf;
    while (n >= 8) {
        uint64_t x = tu_rand(r);
        memcpy(p, &x, 8);
        p += 8;
        n -= 8;
    }
    if (n) {
        uint64_t x = tu_rand(r);
        memcpy(p, &x, n);
    }
}

void tu_small_options(kv_options *o, const char *dir)
{
    kv_options_default(o, dir);
    o->mem_table_size = 1 << 20;
    o->base_table_size = 256 << 10;
    o->base_level_size = 1 << 20;
    o->num_memtables = 3;
    o->block_cache_size = 4 << 20;
    o->num_compactors = 2;
    o->value_log_file_size = 4 << 20;
    o->log_level = KV_LOG_WARNING;
}

int tu_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

long tu_slowdown(void)
{
    const char *s = getenv("KV_TEST_SLOWDOWN");
    if (s && atol(s) > 0) return atol(s);
    return getenv("KV_VALGRIND") ? 30 : 1;
}

long tu_scale(long n)
{
    const char *s = getenv("KV_TEST_SCALE");
    double f = s ? atof(s) : 1.0;
    long r = (long)(n * f);
    return r < 1 ? 1 : r;
}
