/*
 * test_shm_heap.c - unit tests of the shared-memory allocator (shm_heap.h):
 * random alloc/free sequences of 16 B .. 1 MiB against a model, with
 * kv_heap_check after every step; returned memory zeroed, 16-byte aligned,
 * inside the heap and never overlapping another live allocation (checked
 * both on offsets and by writing and re-reading patterns); exhaustion
 * returns 0 and frees make room again; coalescing back to one chunk;
 * absurd sizes; and concurrent use by 4 threads and by 2 processes that
 * share an anonymous MAP_SHARED mapping.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <pthread.h>
#include <unistd.h>

#include "testutil.h"

#include "shm_heap.h"

#define HDR 16u          /* chunk header in front of every payload (shm_heap.c) */
#define MIN_CHUNK 48u    /* smallest chunk (shm_heap.c) */
#define MAX_ALLOC (1u << 20)

/* ck_assert_* records a checkpoint (a write to Check's log) on every call;
 * hot loops use this instead, which only costs something on failure. */
#define REQUIRE(cond, ...)                                                                    \
    do {                                                                                      \
        if (!(cond)) ck_abort_msg(__VA_ARGS__);                                               \
    } while (0)

/* ---- helpers ---- */

typedef struct live {
    uint64_t off;  /* payload offset */
    size_t n;      /* bytes requested */
    uint8_t pat;   /* fill byte */
} live;

typedef struct model {
    live *a;
    size_t n, cap;
} model;

static void model_add(model *m, uint64_t off, size_t n, uint8_t pat)
{
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 64;
        m->a = realloc(m->a, m->cap * sizeof *m->a);
        ck_assert_ptr_nonnull(m->a);
    }
    m->a[m->n].off = off;
    m->a[m->n].n = n;
    m->a[m->n].pat = pat;
    m->n++;
}

static void model_del(model *m, size_t i)
{
    m->a[i] = m->a[--m->n];
}

/* Random size, log-uniform in [16, 1 MiB] so small sizes dominate. */
static size_t rand_size(tu_rng *r, size_t max)
{
    int bits = 4 + (int)tu_randn(r, 17);
    size_t lo = (size_t)1 << bits, n = lo + tu_randn(r, lo);
    if (tu_randn(r, 8) == 0) n = 16 + tu_randn(r, 48);
    return n > max ? max : n;
}

static uint64_t chunk_size_at(char *base, uint64_t payload)
{
    uint64_t head;
    memcpy(&head, base + payload - HDR, 8);
    return head & ~(uint64_t)15;
}

/* 1 if p[0..n) are all v (memcmp against a pattern block: sanitizers
 * check a memcmp range once instead of every byte). */
static int all_bytes(const uint8_t *p, size_t n, uint8_t v)
{
    uint8_t blk[4096];
    memset(blk, v, n < sizeof blk ? n : sizeof blk);
    while (n) {
        size_t c = n < sizeof blk ? n : sizeof blk;
        if (memcmp(p, blk, c)) return 0;
        p += c;
        n -= c;
    }
    return 1;
}

/* Sanitizer builds run fewer iterations (they are several times slower;
 * ThreadSanitizer most). */
static long steps_for(long n)
{
#if defined(__SANITIZE_THREAD__)
    n /= 10;
#elif defined(KV_SANITIZE)
    n /= 4;
#endif
    return tu_scale(n);
}

/* White-box check of what kv_heap_check does not look at: the free lists
 * and footers.  Layout (shm_heap.c): u64 header = size | USED 1 |
 * PREV_FREE 2, u64 pad, then for a free chunk u64 next, u64 prev, and its
 * size in its last 8 bytes; bins[k] holds sizes [32 << k, 64 << k). */
static int class_of(uint64_t size)
{
    int c = 0;
    size >>= 5;
    while (size > 1 && c < KV_HEAP_CLASSES - 1) {
        size >>= 1;
        c++;
    }
    return c;
}

static uint64_t rd64(const char *base, uint64_t off)
{
    uint64_t v;
    memcpy(&v, base + off, 8);
    return v;
}

static void check_lists(kv_heap *h, char *base)
{
    uint64_t nfree = 0, listed = 0;
    for (uint64_t off = h->start; off < h->end;) {
        uint64_t head = rd64(base, off), size = head & ~(uint64_t)15;
        REQUIRE(size >= MIN_CHUNK && off + size <= h->end, "bad chunk at %llu",
                (unsigned long long)off);
        if (!(head & 1)) {
            nfree++;
            REQUIRE(rd64(base, off + size - 8) == size, "free chunk at %llu: footer %llu",
                    (unsigned long long)off, (unsigned long long)rd64(base, off + size - 8));
        }
        off += size;
    }
    for (int k = 0; k < KV_HEAP_CLASSES; k++) {
        uint64_t prev = 0;
        for (uint64_t off = h->bins[k]; off; off = rd64(base, off + 16)) {
            uint64_t head = rd64(base, off);
            REQUIRE(off >= h->start && off < h->end && off % 16 == 0,
                    "bin %d links offset %llu", k, (unsigned long long)off);
            REQUIRE(!(head & 1), "bin %d links a used chunk", k);
            REQUIRE(class_of(head & ~(uint64_t)15) == k, "chunk of %llu bytes in bin %d",
                    (unsigned long long)(head & ~(uint64_t)15), k);
            REQUIRE(rd64(base, off + 24) == prev, "bin %d: broken prev link", k);
            REQUIRE(++listed <= nfree, "free lists hold more entries than free chunks");
            prev = off;
        }
    }
    REQUIRE(listed == nfree, "%llu free chunks, %llu on free lists",
            (unsigned long long)nfree, (unsigned long long)listed);
}

/* Checks a fresh allocation: aligned, in range, zeroed, no overlap. */
static void check_new(kv_heap *h, char *base, const model *m, uint64_t off, size_t n)
{
    uint64_t lo = off - HDR, hi = off + n;
    REQUIRE(off % 16 == 0, "offset %llu not 16-aligned", (unsigned long long)off);
    REQUIRE(((uintptr_t)(base + off)) % 16 == 0, "pointer not 16-aligned");
    REQUIRE(lo >= h->start && hi <= h->end, "allocation [%llu,%llu) outside [%llu,%llu)",
                  (unsigned long long)lo, (unsigned long long)hi,
                  (unsigned long long)h->start, (unsigned long long)h->end);
    REQUIRE(chunk_size_at(base, off) >= n + HDR, "chunk smaller than the request");
    REQUIRE(all_bytes((uint8_t *)base + off, n, 0), "allocation of %zu bytes not zeroed",
                  n);
    for (size_t i = 0; i < m->n; i++) {
        uint64_t a = m->a[i].off - HDR, b = m->a[i].off + m->a[i].n;
        REQUIRE(hi <= a || lo >= b,
                      "new [%llu,%llu) overlaps live [%llu,%llu)", (unsigned long long)lo,
                      (unsigned long long)hi, (unsigned long long)a, (unsigned long long)b);
    }
}

static void verify_pattern(char *base, const live *l)
{
    REQUIRE(all_bytes((uint8_t *)base + l->off, l->n, l->pat),
                  "allocation at %llu (%zu bytes) was overwritten", (unsigned long long)l->off,
                  l->n);
}

/* Largest free gap between live chunks (the model knows every live chunk,
 * so the gaps are exactly the free chunks). */
static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t largest_gap(kv_heap *h, char *base, const model *m)
{
    uint64_t *offs = malloc((m->n + 1) * sizeof *offs), pos = h->start, best = 0;
    ck_assert_ptr_nonnull(offs);
    for (size_t i = 0; i < m->n; i++) offs[i] = m->a[i].off - HDR;
    qsort(offs, m->n, sizeof *offs, cmp_u64);
    for (size_t i = 0; i < m->n; i++) {
        if (offs[i] - pos > best) best = offs[i] - pos;
        pos = offs[i] + chunk_size_at(base, offs[i] + HDR);
    }
    if (h->end - pos > best) best = h->end - pos;
    free(offs);
    return best;
}

static char *new_region(size_t size)
{
    char *p = aligned_alloc(4096, size);
    ck_assert_ptr_nonnull(p);
    memset(p, 0xA5, size); /* garbage: the heap must not rely on zeroed memory */
    return p;
}

/* ---- tests ---- */

/* Random alloc/free against the model; kv_heap_check after every step. */
START_TEST(test_random_model)
{
    const size_t region = 24u << 20;
    char *base = new_region(region);
    kv_heap h;
    model m = {0};
    tu_rng r;
    long steps = steps_for(60000);
    uint64_t allocs = 0, frees = 0, fails = 0, sum_req;

    tu_rng_init(&r, tu_seed() ^ 0x101);
    kv_heap_init(&h, base, 4096 + 8, region - 4096 - 8); /* unaligned start */
    ck_assert_int_eq(h.start % 16, 0);
    ck_assert_uint_ge(h.start, 4096 + 8);
    ck_assert_uint_le(h.end, region);
    ck_assert_int_eq(kv_heap_check(&h, base), 0);

    for (long i = 0; i < steps; i++) {
        int do_alloc = m.n == 0 || tu_randn(&r, 100) < (i % 2000 < 1200 ? 65 : 35);
        if (do_alloc) {
            size_t n = rand_size(&r, MAX_ALLOC);
            uint64_t off = kv_heap_alloc(&h, base, n);
            if (!off) {
                uint64_t need = ((uint64_t)n + HDR + 15) & ~(uint64_t)15;
                fails++;
                REQUIRE(largest_gap(&h, base, &m) < need,
                              "alloc(%zu) failed with a free chunk of %llu bytes", n,
                              (unsigned long long)largest_gap(&h, base, &m));
            } else {
                uint8_t pat = (uint8_t)(1 + tu_randn(&r, 255));
                allocs++;
                check_new(&h, base, &m, off, n);
                memset(base + off, pat, n);
                model_add(&m, off, n, pat);
            }
        } else {
            size_t k = tu_randn(&r, m.n);
            verify_pattern(base, &m.a[k]);
            kv_heap_free(&h, base, m.a[k].off);
            model_del(&m, k);
            frees++;
        }
        REQUIRE(kv_heap_check(&h, base) == 0, "kv_heap_check = %d after step %ld",
                      kv_heap_check(&h, base), i);
        check_lists(&h, base);
    }
    if (steps >= 15000) ck_assert_uint_gt(fails, 0); /* exhaustion was exercised */
    ck_assert_uint_eq(h.allocs, allocs);
    ck_assert_uint_eq(h.frees, frees);
    ck_assert_uint_eq(h.failures, fails);
    sum_req = 0;
    for (size_t i = 0; i < m.n; i++) {
        verify_pattern(base, &m.a[i]);
        sum_req += m.a[i].n;
    }
    ck_assert_uint_ge(h.used_bytes, sum_req);
    ck_assert_uint_ge(h.peak_bytes, h.used_bytes);
    /* free everything in random order: back to one chunk */
    while (m.n) {
        size_t k = tu_randn(&r, m.n);
        kv_heap_free(&h, base, m.a[k].off);
        model_del(&m, k);
        REQUIRE(kv_heap_check(&h, base) == 0, "kv_heap_check failed while freeing all");
    }
    ck_assert_uint_eq(h.used_bytes, 0);
    {
        uint64_t all = kv_heap_alloc(&h, base, h.end - h.start - HDR);
        REQUIRE(all == h.start + HDR, "whole-heap allocation failed after freeing all");
        ck_assert_int_eq(kv_heap_check(&h, base), 0);
        kv_heap_free(&h, base, all);
    }
    free(m.a);
    free(base);
}
END_TEST

/* Small sizes only (many chunks, many coalesces), alloc(0), free(0). */
START_TEST(test_small_churn)
{
    const size_t region = 1u << 20;
    char *base = new_region(region);
    kv_heap h;
    model m = {0};
    tu_rng r;
    long steps = steps_for(100000);
    uint64_t z;

    tu_rng_init(&r, tu_seed() ^ 0x202);
    kv_heap_init(&h, base, 16, region - 16);
    z = kv_heap_alloc(&h, base, 0);
    ck_assert_uint_ne(z, 0);
    ck_assert_int_eq(z % 16, 0);
    ck_assert_uint_eq(chunk_size_at(base, z), MIN_CHUNK);
    kv_heap_free(&h, base, z);
    kv_heap_free(&h, base, 0); /* no-op */
    ck_assert_int_eq(kv_heap_check(&h, base), 0);
    ck_assert_uint_eq(h.used_bytes, 0);

    for (long i = 0; i < steps; i++) {
        if (m.n == 0 || tu_randn(&r, 100) < 55) {
            size_t n = tu_randn(&r, 200);
            uint64_t off = kv_heap_alloc(&h, base, n);
            if (!off) continue;
            check_new(&h, base, &m, off, n);
            memset(base + off, (int)(1 + i % 255), n);
            model_add(&m, off, n, (uint8_t)(1 + i % 255));
        } else {
            size_t k = tu_randn(&r, m.n);
            verify_pattern(base, &m.a[k]);
            kv_heap_free(&h, base, m.a[k].off);
            model_del(&m, k);
        }
        if (i % 16 == 0) {
            REQUIRE(kv_heap_check(&h, base) == 0, "kv_heap_check failed at step %ld", i);
            check_lists(&h, base);
        }
    }
    while (m.n) {
        verify_pattern(base, &m.a[m.n - 1]);
        kv_heap_free(&h, base, m.a[m.n - 1].off);
        m.n--;
    }
    ck_assert_int_eq(kv_heap_check(&h, base), 0);
    ck_assert_uint_eq(h.used_bytes, 0);
    free(m.a);
    free(base);
}
END_TEST

/* Fill the heap until alloc returns 0; frees make room again. */
START_TEST(test_exhaustion)
{
    const size_t region = 4u << 20;
    char *base = new_region(region);
    kv_heap h;
    model m = {0};
    tu_rng r;
    uint64_t off, fails0;
    size_t big = 256u << 10;

    tu_rng_init(&r, tu_seed() ^ 0x303);
    kv_heap_init(&h, base, 64, region - 64);
    /* fill with 256 KiB blocks, then with ever smaller ones */
    for (size_t n = big; n >= 16; n /= 2) {
        while ((off = kv_heap_alloc(&h, base, n)) != 0) {
            check_new(&h, base, &m, off, n);
            memset(base + off, 0x11, n);
            model_add(&m, off, n, 0x11);
        }
        ck_assert_int_eq(kv_heap_check(&h, base), 0);
    }
    /* now nothing fits except maybe a zero-byte request in a leftover */
    fails0 = h.failures;
    ck_assert_uint_eq(kv_heap_alloc(&h, base, big), 0);
    ck_assert_uint_eq(kv_heap_alloc(&h, base, 16), 0);
    ck_assert_uint_eq(h.failures, fails0 + 2);
    ck_assert_uint_lt(largest_gap(&h, base, &m), MIN_CHUNK + 16);
    ck_assert_int_eq(kv_heap_check(&h, base), 0);

    /* free one big block: the same size fits again, at the same place */
    {
        size_t k;
        for (k = 0; k < m.n && m.a[k].n != big; k++)
            ;
        ck_assert_uint_lt(k, m.n);
        off = m.a[k].off;
        kv_heap_free(&h, base, off);
        model_del(&m, k);
        ck_assert_uint_eq(kv_heap_alloc(&h, base, big), off);
        ck_assert(all_bytes((uint8_t *)base + off, big, 0));
        model_add(&m, off, big, 0);
    }
    /* free two adjacent small blocks: together they fit a bigger request */
    {
        size_t a = m.n, b = m.n;
        for (size_t i = 0; i < m.n && b == m.n; i++)
            for (size_t j = 0; j < m.n; j++)
                if (m.a[i].n <= 1024 && m.a[j].n <= 1024 &&
                    m.a[j].off == m.a[i].off + chunk_size_at(base, m.a[i].off)) {
                    a = i;
                    b = j;
                    break;
                }
        if (b < m.n) {
            uint64_t lo = m.a[a].off;
            uint64_t total = chunk_size_at(base, m.a[a].off) + chunk_size_at(base, m.a[b].off);
            kv_heap_free(&h, base, m.a[a].off);
            kv_heap_free(&h, base, m.a[b].off);
            ck_assert_int_eq(kv_heap_check(&h, base), 0);
            off = kv_heap_alloc(&h, base, total - HDR);
            REQUIRE(off == lo, "coalesced neighbours not reused (%llu vs %llu)",
                          (unsigned long long)off, (unsigned long long)lo);
            kv_heap_free(&h, base, off);
            if (a > b) {
                model_del(&m, a);
                model_del(&m, b);
            } else {
                model_del(&m, b);
                model_del(&m, a);
            }
        }
    }
    for (size_t i = 0; i < m.n; i++) verify_pattern(base, &m.a[i]);
    /* free everything in random order: one allocation of the whole heap */
    while (m.n) {
        size_t k = tu_randn(&r, m.n);
        kv_heap_free(&h, base, m.a[k].off);
        model_del(&m, k);
    }
    ck_assert_int_eq(kv_heap_check(&h, base), 0);
    ck_assert_uint_eq(h.used_bytes, 0);
    off = kv_heap_alloc(&h, base, h.end - h.start - HDR);
    ck_assert_uint_eq(off, h.start + HDR);
    ck_assert_uint_eq(kv_heap_alloc(&h, base, 0), 0);
    kv_heap_free(&h, base, off);
    ck_assert_int_eq(kv_heap_check(&h, base), 0);
    free(m.a);
    free(base);
}
END_TEST

/* Coalescing in every order: free a run of neighbours forwards, backwards
 * and middle-out; each time the run must merge into one chunk. */
START_TEST(test_coalesce_orders)
{
    const size_t region = 1u << 20;
    char *base = new_region(region);
    kv_heap h;
    uint64_t offs[9];
    static const int orders[4][9] = {
        {0, 1, 2, 3, 4, 5, 6, 7, 8},
        {8, 7, 6, 5, 4, 3, 2, 1, 0},
        {4, 3, 5, 2, 6, 1, 7, 0, 8},
        {1, 3, 5, 7, 0, 2, 4, 6, 8},
    };

    kv_heap_init(&h, base, 16, region - 16);
    for (int o = 0; o < 4; o++) {
        uint64_t total = 0, off;
        for (int i = 0; i < 9; i++) {
            offs[i] = kv_heap_alloc(&h, base, 100 + 50 * (size_t)i);
            ck_assert_uint_ne(offs[i], 0);
            total += chunk_size_at(base, offs[i]);
        }
        for (int i = 1; i < 9; i++)
            ck_assert_uint_eq(offs[i], offs[i - 1] + chunk_size_at(base, offs[i - 1]));
        /* a guard keeps the run from merging with the tail chunk */
        off = kv_heap_alloc(&h, base, 16);
        ck_assert_uint_eq(off, offs[8] + chunk_size_at(base, offs[8]));
        for (int i = 0; i < 9; i++) {
            kv_heap_free(&h, base, offs[orders[o][i]]);
            ck_assert_int_eq(kv_heap_check(&h, base), 0);
            check_lists(&h, base);
        }
        /* the merged run is the first fit for its exact size */
        ck_assert_uint_eq(kv_heap_alloc(&h, base, total - HDR), offs[0]);
        kv_heap_free(&h, base, offs[0]);
        kv_heap_free(&h, base, off);
        ck_assert_int_eq(kv_heap_check(&h, base), 0);
        ck_assert_uint_eq(h.used_bytes, 0);
    }
    free(base);
}
END_TEST

/* Requests that cannot be satisfied must return 0, including sizes whose
 * rounding would overflow 64 bits. */
START_TEST(test_absurd_sizes)
{
    const size_t region = 1u << 20;
    char *base = new_region(region);
    kv_heap h;
    static const size_t sizes[] = {
        (size_t)1 << 20, ((size_t)1 << 20) - 15, (size_t)1 << 40, (size_t)1 << 63,
        SIZE_MAX - 30, SIZE_MAX - 15, SIZE_MAX - 8, SIZE_MAX,
    };

    kv_heap_init(&h, base, 16, region - 16);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        uint64_t off = kv_heap_alloc(&h, base, sizes[i]);
        REQUIRE(off == 0, "alloc(%zu) on a 1 MiB heap returned offset %llu", sizes[i],
                      (unsigned long long)off);
        ck_assert_int_eq(kv_heap_check(&h, base), 0);
    }
    ck_assert_uint_eq(h.used_bytes, 0);
    free(base);
}
END_TEST

/* A request must not fail while a free chunk that fits exists, however
 * many too-small chunks of the same size class sit in front of it. */
START_TEST(test_no_false_exhaustion)
{
    const size_t region = 2u << 20;
    char *base = new_region(region);
    kv_heap h;
    uint64_t small[100], big, fill, off;
    /* class of 1024..2047-byte chunks: 100 chunks of 1040, one of 2032 */
    kv_heap_init(&h, base, 16, region - 16);
    big = kv_heap_alloc(&h, base, 2032 - HDR);
    ck_assert_uint_ne(kv_heap_alloc(&h, base, 16), 0); /* guard */
    for (int i = 0; i < 100; i++) {
        small[i] = kv_heap_alloc(&h, base, 1040 - HDR);
        ck_assert_uint_ne(small[i], 0);
        ck_assert_uint_ne(kv_heap_alloc(&h, base, 16), 0); /* guard */
    }
    /* use up the rest of the heap */
    while ((fill = kv_heap_alloc(&h, base, 4096)) != 0)
        ;
    while ((fill = kv_heap_alloc(&h, base, 16)) != 0)
        ;
    /* free the big one first, so it ends deepest in its list */
    kv_heap_free(&h, base, big);
    for (int i = 0; i < 100; i++) kv_heap_free(&h, base, small[i]);
    ck_assert_int_eq(kv_heap_check(&h, base), 0);
    off = kv_heap_alloc(&h, base, 2032 - HDR);
    REQUIRE(off == big,
                  "alloc(%u) returned %llu although the free chunk at %llu fits (it sits "
                  "behind 100 smaller chunks of its size class)",
                  2032 - HDR, (unsigned long long)off, (unsigned long long)big);
    free(base);
}
END_TEST

/* A heap may start at offset 0 of its base (nothing in the contract says
 * otherwise); its first payload is then at offset 16, never 0. */
START_TEST(test_heap_at_offset_zero)
{
    const size_t region = 64u << 10;
    char *base = new_region(region);
    kv_heap h;
    uint64_t a, b;
    kv_heap_init(&h, base, 0, region);
    a = kv_heap_alloc(&h, base, 100);
    REQUIRE(a != 0, "a heap formatted at offset 0 never allocates");
    b = kv_heap_alloc(&h, base, 100);
    ck_assert_uint_ne(b, 0);
    kv_heap_free(&h, base, a);
    kv_heap_free(&h, base, b);
    ck_assert_int_eq(kv_heap_check(&h, base), 0);
    /* the heap starts at 16, so everything but two headers is usable */
    ck_assert_uint_eq(kv_heap_alloc(&h, base, region - 2 * HDR), 2 * HDR);
    free(base);
}
END_TEST

/* ---- threads ---- */

typedef struct thr_arg {
    kv_heap *h;
    char *base;
    uint64_t seed;
    int id;
    long steps;
    int bad; /* first failure: 1 overlap, 2 not zeroed, 3 misaligned */
} thr_arg;

/* Random alloc/free by one thread; patterns carry the thread id so that
 * overlapping allocations of two threads are caught. */
static void heap_worker(kv_heap *h, char *base, uint64_t seed, int id, long steps, int *bad)
{
    model m = {0};
    tu_rng r;
    tu_rng_init(&r, seed);
    for (long i = 0; i < steps && !*bad; i++) {
        if (m.n == 0 || (tu_randn(&r, 100) < 55 && m.n < 200)) {
            size_t n = tu_randn(&r, 4) == 0 ? rand_size(&r, 64u << 10) : tu_randn(&r, 512);
            uint64_t off = kv_heap_alloc(h, base, n);
            uint8_t pat = (uint8_t)(id * 50 + 1 + tu_randn(&r, 49));
            if (!off) continue;
            if (off % 16) *bad = 3;
            else if (!all_bytes((uint8_t *)base + off, n, 0)) *bad = 2;
            memset(base + off, pat, n);
            model_add(&m, off, n, pat);
        } else {
            size_t k = tu_randn(&r, m.n);
            if (!all_bytes((uint8_t *)base + m.a[k].off, m.a[k].n, m.a[k].pat)) *bad = 1;
            kv_heap_free(h, base, m.a[k].off);
            model_del(&m, k);
        }
    }
    for (size_t k = 0; k < m.n; k++) {
        if (!all_bytes((uint8_t *)base + m.a[k].off, m.a[k].n, m.a[k].pat)) *bad = 1;
        kv_heap_free(h, base, m.a[k].off);
    }
    free(m.a);
}

static void *thr_main(void *p)
{
    thr_arg *a = p;
    heap_worker(a->h, a->base, a->seed, a->id, a->steps, &a->bad);
    return NULL;
}

START_TEST(test_threads)
{
    const size_t region = 16u << 20;
    char *base = new_region(region);
    kv_heap h;
    pthread_t t[4];
    thr_arg a[4];
    long steps = steps_for(250000);

    kv_heap_init(&h, base, 4096, region - 4096);
    for (int i = 0; i < 4; i++) {
        a[i].h = &h;
        a[i].base = base;
        a[i].seed = tu_seed() * 31 + (uint64_t)i;
        a[i].id = i;
        a[i].steps = steps;
        a[i].bad = 0;
        ck_assert_int_eq(pthread_create(&t[i], NULL, thr_main, &a[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        REQUIRE(a[i].bad == 0, "thread %d saw failure %d", i, a[i].bad);
    }
    ck_assert_int_eq(kv_heap_check(&h, base), 0);
    check_lists(&h, base);
    ck_assert_uint_eq(h.used_bytes, 0);
    ck_assert_uint_eq(h.allocs, h.frees);
    ck_assert_uint_eq(kv_heap_alloc(&h, base, h.end - h.start - HDR), h.start + HDR);
    free(base);
}
END_TEST

/* ---- processes ---- */

/* Two processes (and two threads in each) share one heap in an anonymous
 * MAP_SHARED mapping; the heap struct lives inside the mapping. */
START_TEST(test_processes)
{
    const size_t region = 16u << 20;
    char *base = mmap(NULL, region, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    kv_heap *h;
    pid_t pid[2];
    long steps = steps_for(200000);

    ck_assert_ptr_ne(base, MAP_FAILED);
    h = (kv_heap *)base;
    kv_heap_init(h, base, 4096, region - 4096);
    for (int p = 0; p < 2; p++) {
        pid[p] = fork();
        ck_assert_int_ge(pid[p], 0);
        if (pid[p] == 0) {
            pthread_t t;
            thr_arg a;
            int bad = 0;
            a.h = h;
            a.base = base;
            a.seed = tu_seed() * 77 + (uint64_t)p;
            a.id = 2 + p;
            a.steps = steps;
            a.bad = 0;
            if (pthread_create(&t, NULL, thr_main, &a) != 0) _exit(10);
            heap_worker(h, base, tu_seed() * 91 + (uint64_t)p, p, steps, &bad);
            pthread_join(t, NULL);
            _exit(bad ? 20 + bad : a.bad ? 30 + a.bad : 0);
        }
    }
    for (int p = 0; p < 2; p++) {
        int status = 0;
        ck_assert_int_eq(waitpid(pid[p], &status, 0), pid[p]);
        REQUIRE(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                      "child %d failed (status 0x%x)", p, status);
    }
    ck_assert_int_eq(kv_heap_check(h, base), 0);
    check_lists(h, base);
    ck_assert_uint_eq(h->used_bytes, 0);
    ck_assert_uint_eq(h->allocs, h->frees);
    ck_assert_uint_eq(kv_heap_alloc(h, base, h->end - h->start - HDR), h->start + HDR);
    munmap(base, region);
}
END_TEST

static Suite *heap_suite(void)
{
    Suite *s = suite_create("shm_heap");
    TCase *tc = tcase_create("single");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_random_model);
    tcase_add_test(tc, test_small_churn);
    tcase_add_test(tc, test_exhaustion);
    tcase_add_test(tc, test_coalesce_orders);
    tcase_add_test(tc, test_absurd_sizes);
    tcase_add_test(tc, test_no_false_exhaustion);
    tcase_add_test(tc, test_heap_at_offset_zero);
    suite_add_tcase(s, tc);
    tc = tcase_create("concurrent");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_threads);
    tcase_add_test(tc, test_processes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    tu_seed();
    return tu_run(heap_suite());
}
