/*
 * test_skiplist.c - unit tests of the memtable's arena skiplist
 * (skiplist.h): random inserts against a sorted model with forward and
 * backward iteration and seek / seek_for_prev to present and absent keys;
 * value replacement; insertion orders that stress the writer's finger
 * (ascending, descending, sorted runs, sawtooth, duplicates, many versions
 * of one user key, keys that are prefixes of each other); a full arena
 * (-1 and nothing changed) and kv_sl_put_cost as an upper bound of the
 * arena bytes a put consumes, also for the tallest possible node; a
 * white-box walk of every level (bad upper-level links are invisible to
 * the API); one writer racing three lock-free readers, as threads and as
 * processes that map one memfd at different addresses; and a targeted
 * race of seek against inserts just below the sought key.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <pthread.h>
#include <unistd.h>

#include "testutil.h"

#include "coding.h"
#include "hash.h"
#include "ikey.h"
#include "skiplist.h"

/* ck_assert_* writes a checkpoint to Check's log on every call; hot loops
 * use this, which costs nothing unless it fails. */
#define REQUIRE(cond, ...)                                                                    \
    do {                                                                                      \
        if (!(cond)) ck_abort_msg(__VA_ARGS__);                                               \
    } while (0)

#define MAX_IKEY 64

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

/* ---- keys ---- */

static size_t make_ikey(uint8_t *buf, const void *uk, size_t un, uint64_t version)
{
    memcpy(buf, uk, un);
    kv_ikey_put_ts(buf + un, version);
    return un + KV_TS_SIZE;
}

/* A random internal key from a mix of shapes: short keys over a 3-letter
 * alphabet (many prefixes and equal user keys), binary keys, and
 * "key%08u" keys; versions from a small range so user keys repeat. */
static size_t rand_ikey(tu_rng *r, uint8_t *buf)
{
    uint8_t uk[MAX_IKEY];
    size_t un;
    uint64_t ver;
    switch (tu_randn(r, 10)) {
    case 0: case 1: case 2: case 3: case 4:
        un = tu_randn(r, 11);
        for (size_t i = 0; i < un; i++) uk[i] = (uint8_t)('a' + tu_randn(r, 3));
        ver = 1 + tu_randn(r, 4);
        break;
    case 5: case 6: case 7:
        un = 1 + tu_randn(r, 16);
        tu_randbytes(r, uk, un);
        ver = tu_rand(r);
        break;
    default:
        un = (size_t)snprintf((char *)uk, sizeof uk, "key%08u", (unsigned)tu_randn(r, 100000));
        ver = 1 + tu_randn(r, 1000);
        break;
    }
    return make_ikey(buf, uk, un, ver);
}

static uint64_t fnv(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

/* ---- the model: sorted, distinct internal keys ---- */

typedef struct ent {
    uint8_t k[MAX_IKEY];
    size_t kn;
    uint8_t *v;
    size_t vn;
} ent;

typedef struct model {
    ent *e;
    size_t n, cap;
} model;

/* First index with key >= k; *eq set if equal. */
static size_t model_lb(const model *m, const uint8_t *k, size_t kn, int *eq)
{
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (kv_ikey_cmp(m->e[mid].k, m->e[mid].kn, k, kn) < 0) lo = mid + 1;
        else hi = mid;
    }
    *eq = lo < m->n && kv_ikey_cmp(m->e[lo].k, m->e[lo].kn, k, kn) == 0;
    return lo;
}

static void model_put(model *m, const uint8_t *k, size_t kn, const uint8_t *v, size_t vn)
{
    int eq;
    size_t i = model_lb(m, k, kn, &eq);
    if (!eq) {
        if (m->n == m->cap) {
            m->cap = m->cap ? m->cap * 2 : 256;
            m->e = realloc(m->e, m->cap * sizeof *m->e);
            ck_assert_ptr_nonnull(m->e);
        }
        memmove(&m->e[i + 1], &m->e[i], (m->n - i) * sizeof *m->e);
        m->n++;
        memcpy(m->e[i].k, k, kn);
        m->e[i].kn = kn;
        m->e[i].v = NULL;
    }
    free(m->e[i].v);
    m->e[i].v = malloc(vn ? vn : 1);
    if (vn) memcpy(m->e[i].v, v, vn);
    m->e[i].vn = vn;
}

static void model_free(model *m)
{
    for (size_t i = 0; i < m->n; i++) free(m->e[i].v);
    free(m->e);
    memset(m, 0, sizeof *m);
}

static void expect_at(const kv_sl_iter *it, const ent *e, const char *what)
{
    size_t kn, vn;
    const uint8_t *k, *v;
    REQUIRE(kv_sl_iter_valid(it), "%s: iterator invalid, expected a key", what);
    k = kv_sl_iter_key(it, &kn);
    v = kv_sl_iter_value(it, &vn);
    REQUIRE(kn == e->kn && !memcmp(k, e->k, kn), "%s: wrong key", what);
    REQUIRE(vn == e->vn && (!vn || !memcmp(v, e->v, vn)), "%s: wrong value", what);
}

static void expect_index(const kv_sl_iter *it, const model *m, size_t i, const char *what)
{
    if (i >= m->n) REQUIRE(!kv_sl_iter_valid(it), "%s: expected the end", what);
    else expect_at(it, &m->e[i], what);
}

/* seek and seek_for_prev to k, compared with the model's bounds, plus one
 * step next/prev from where they land. */
static void check_seek(const kv_sl *sl, const model *m, const uint8_t *k, size_t kn)
{
    kv_sl_iter it;
    int eq;
    size_t lb = model_lb(m, k, kn, &eq);
    size_t le = eq ? lb : lb - 1; /* SIZE_MAX when nothing <= k */

    kv_sl_iter_init(&it, sl);
    kv_sl_iter_seek(&it, k, kn);
    expect_index(&it, m, lb, "seek");
    if (lb < m->n) {
        kv_sl_iter_next(&it);
        expect_index(&it, m, lb + 1, "seek+next");
    }
    kv_sl_iter_seek(&it, k, kn);
    if (lb < m->n) {
        kv_sl_iter_prev(&it);
        expect_index(&it, m, lb == 0 ? m->n : lb - 1, "seek+prev");
    }
    kv_sl_iter_seek_for_prev(&it, k, kn);
    expect_index(&it, m, le == SIZE_MAX ? m->n : le, "seek_for_prev");
    if (le != SIZE_MAX) {
        kv_sl_iter_prev(&it);
        expect_index(&it, m, le == 0 ? m->n : le - 1, "seek_for_prev+prev");
        kv_sl_iter_seek_for_prev(&it, k, kn);
        kv_sl_iter_next(&it);
        expect_index(&it, m, le + 1, "seek_for_prev+next");
    }
}

/* White-box structural check.  Searches stay correct even when an upper
 * level is mis-linked (they only ever step to nodes < key and finish on
 * level 0), so bad splices above level 0 are invisible to the API and
 * only cost speed; this walks every level using the node layout that
 * skiplist.c documents:
 *   u64 key prefix | u32 data offset | u16 key length | u16 height |
 *   u32 tower[height]; data = u64 value word, then the key bytes */
typedef struct node_view {
    uint64_t prefix;
    uint32_t data;
    uint16_t key_len, height;
    uint32_t tower[KV_SL_MAX_HEIGHT];
} node_view;

static const uint8_t *nv_key(const kv_sl *sl, const node_view *n)
{
    return (const uint8_t *)sl + n->data + 8;
}

/* The prefix must be the first 8 user-key bytes, big-endian, zero padded. */
static uint64_t want_prefix(const uint8_t *k, size_t n)
{
    uint64_t p = 0;
    for (size_t i = 0; i < 8; i++) p = (p << 8) | (i + 8 < n ? k[i] : 0);
    return p;
}

static const node_view *nv(const kv_sl *sl, uint32_t off)
{
    return (const node_view *)((const char *)sl + off);
}

static void check_levels(const kv_sl *sl)
{
    uint32_t height = atomic_load(&((kv_sl *)sl)->height);
    uint64_t at_level[KV_SL_MAX_HEIGHT] = {0}, tall[KV_SL_MAX_HEIGHT] = {0};
    REQUIRE(height >= 1 && height <= KV_SL_MAX_HEIGHT, "bad list height %u", height);
    for (uint32_t l = 0; l < KV_SL_MAX_HEIGHT; l++) {
        uint32_t x = nv(sl, sl->head)->tower[l], prev = 0;
        if (l >= height) {
            REQUIRE(x == 0, "head links level %u above the list height %u", l, height);
            continue;
        }
        for (; x; x = nv(sl, x)->tower[l]) {
            const node_view *n = nv(sl, x);
            REQUIRE(x < sl->node_top && n->height > l && n->height <= KV_SL_MAX_HEIGHT,
                    "level %u: node %u of height %u", l, x, n->height);
            REQUIRE(n->data >= sl->data_bottom && n->data + 8u + n->key_len <= sl->cap,
                    "level %u: node %u data outside the data area", l, x);
            REQUIRE(n->prefix == want_prefix(nv_key(sl, n), n->key_len),
                    "level %u: node %u has a wrong key prefix", l, x);
            if (prev) {
                const node_view *p = nv(sl, prev);
                REQUIRE(kv_ikey_cmp(nv_key(sl, p), p->key_len, nv_key(sl, n), n->key_len) < 0,
                        "level %u is not sorted (node %u before node %u)", l, prev, x);
            }
            if (l == 0)
                for (uint32_t h = 0; h < n->height; h++) tall[h]++;
            at_level[l]++;
            prev = x;
        }
    }
    REQUIRE(at_level[0] == atomic_load(&((kv_sl *)sl)->count),
            "level 0 has %llu nodes, count %llu", (unsigned long long)at_level[0],
            (unsigned long long)atomic_load(&((kv_sl *)sl)->count));
    for (uint32_t l = 1; l < height; l++)
        REQUIRE(at_level[l] == tall[l], "level %u links %llu nodes, %llu nodes are that tall",
                l, (unsigned long long)at_level[l], (unsigned long long)tall[l]);
}

/* The list equals the model: forward, backward and seeks. */
static void check_list(const kv_sl *sl, const model *m, tu_rng *r, int seeks)
{
    kv_sl_iter it;
    size_t i;
    uint8_t probe[MAX_IKEY];

    REQUIRE(kv_sl_empty(sl) == (m->n == 0), "kv_sl_empty wrong");
    check_levels(sl);
    kv_sl_iter_init(&it, sl);
    REQUIRE(!kv_sl_iter_valid(&it), "fresh iterator is positioned");
    kv_sl_iter_first(&it);
    for (i = 0; i < m->n; i++) {
        expect_at(&it, &m->e[i], "forward");
        kv_sl_iter_next(&it);
    }
    REQUIRE(!kv_sl_iter_valid(&it), "forward: list has more than %zu nodes", m->n);
    kv_sl_iter_next(&it); /* no-op at the end */
    REQUIRE(!kv_sl_iter_valid(&it), "next past the end");
    kv_sl_iter_last(&it);
    for (i = m->n; i > 0; i--) {
        expect_at(&it, &m->e[i - 1], "backward");
        kv_sl_iter_prev(&it);
    }
    REQUIRE(!kv_sl_iter_valid(&it), "backward: list has more than %zu nodes", m->n);
    kv_sl_iter_prev(&it);
    REQUIRE(!kv_sl_iter_valid(&it), "prev before the start");

    for (int s = 0; s < seeks; s++) {
        size_t kn;
        if (m->n && tu_randn(r, 2)) {
            const ent *e = &m->e[tu_randn(r, m->n)];
            memcpy(probe, e->k, e->kn);
            kn = e->kn;
            switch (tu_randn(r, 4)) {
            case 0: /* the same user key at a neighbouring version */
                kv_ikey_put_ts(probe + kn - KV_TS_SIZE,
                               kv_ikey_version(probe, kn) + (tu_randn(r, 2) ? 1 : -1));
                break;
            case 1: /* a longer user key: sorts right after */
                if (kn + 1 <= MAX_IKEY) {
                    memmove(probe + kn - KV_TS_SIZE + 1, probe + kn - KV_TS_SIZE, KV_TS_SIZE);
                    probe[kn - KV_TS_SIZE] = (uint8_t)tu_randn(r, 256);
                    kn++;
                }
                break;
            default:
                break;
            }
        } else {
            kn = rand_ikey(r, probe);
        }
        check_seek(sl, m, probe, kn);
    }
    /* the extremes */
    {
        uint8_t lo[KV_TS_SIZE], hi[MAX_IKEY], ff[40];
        make_ikey(lo, "", 0, UINT64_MAX);
        memset(ff, 0xff, sizeof ff);
        make_ikey(hi, ff, sizeof ff, 0);
        check_seek(sl, m, lo, KV_TS_SIZE);
        check_seek(sl, m, hi, 48);
    }
}

static void rand_value(tu_rng *r, uint8_t *v, size_t *vn)
{
    *vn = tu_randn(r, 5) == 0 ? 0 : tu_randn(r, 48);
    tu_randbytes(r, v, *vn);
}

static kv_sl *new_list(size_t cap, uint64_t seed)
{
    void *mem = aligned_alloc(64, (cap + 63) & ~(size_t)63);
    ck_assert_ptr_nonnull(mem);
    memset(mem, 0x5a, cap); /* garbage: the list must not rely on zeroed memory */
    return kv_sl_init(mem, cap, seed);
}

/* Puts and mirrors in the model; checks the cost bound. */
static void put_checked(kv_sl *sl, model *m, const uint8_t *k, size_t kn, const uint8_t *v,
                        size_t vn)
{
    uint64_t u0 = kv_sl_used(sl), u1;
    size_t cost = kv_sl_put_cost(kn, vn);
    int rc = kv_sl_put(sl, k, kn, v, vn);
    REQUIRE(rc == 0, "kv_sl_put failed with %llu of %llu bytes used", (unsigned long long)u0,
            (unsigned long long)sl->cap);
    u1 = kv_sl_used(sl);
    REQUIRE(u1 > u0 && u1 - u0 <= cost, "put(%zu, %zu) consumed %llu bytes, cost says %zu", kn,
            vn, (unsigned long long)(u1 - u0), cost);
    model_put(m, k, kn, v, vn);
}

/* The neighbourhood of a key just inserted: found by seek, with the
 * model's predecessor and successor around it. */
static void check_around(const kv_sl *sl, const model *m, const uint8_t *k, size_t kn)
{
    kv_sl_iter it;
    int eq;
    size_t i = model_lb(m, k, kn, &eq);
    kv_sl_iter_init(&it, sl);
    kv_sl_iter_seek(&it, k, kn);
    expect_index(&it, m, i, "seek to inserted key");
    kv_sl_iter_next(&it);
    expect_index(&it, m, i + 1, "successor of inserted key");
    kv_sl_iter_seek(&it, k, kn);
    kv_sl_iter_prev(&it);
    expect_index(&it, m, i == 0 ? m->n : i - 1, "predecessor of inserted key");
}

/* ---- single-threaded tests ---- */

/* The user-key bloom filter: no false negatives, and at 10 bits per key
 * a false-positive rate near what 6 probes should give (0.8%). */
START_TEST(test_bloom)
{
    kv_sl *sl = new_list(1u << 20, tu_seed());
    long n = (long)sl->bloom_bits / 10, fp = 0, probes = 200000;
    uint8_t k[32];
    for (long i = 0; i < n; i++) {
        int kn = snprintf((char *)k, sizeof k, "key-%08ld", i);
        memset(k + kn, 0, KV_TS_SIZE);
        ck_assert_int_eq(kv_sl_put(sl, k, (size_t)kn + KV_TS_SIZE, (const uint8_t *)"v", 1), 0);
    }
    for (long i = 0; i < n; i++) {
        int kn = snprintf((char *)k, sizeof k, "key-%08ld", i);
        ck_assert_msg(kv_sl_may_contain(sl, kv_key_hash(k, (size_t)kn)), "key %ld missed", i);
    }
    for (long i = 0; i < probes; i++) {
        int kn = snprintf((char *)k, sizeof k, "other-%08ld", i);
        fp += kv_sl_may_contain(sl, kv_key_hash(k, (size_t)kn));
    }
    ck_assert_msg(fp < probes / 50, "false positives: %ld of %ld (%u bits, %ld keys)", fp, probes,
                  sl->bloom_bits, n);
    free(sl);
}
END_TEST

START_TEST(test_random_inserts)
{
    kv_sl *sl = new_list(32u << 20, tu_seed());
    model m = {0};
    tu_rng r;
    long n = steps_for(30000);
    uint8_t k[MAX_IKEY], v[64];
    size_t kn, vn;

    tu_rng_init(&r, tu_seed() ^ 0x51);
    check_list(sl, &m, &r, 20); /* empty list */
    for (long i = 0; i < n; i++) {
        if (m.n && tu_randn(&r, 10) == 0) {
            /* replace the value of a present key */
            const ent *e = &m.e[tu_randn(&r, m.n)];
            kn = e->kn;
            memcpy(k, e->k, kn);
        } else {
            kn = rand_ikey(&r, k);
        }
        rand_value(&r, v, &vn);
        put_checked(sl, &m, k, kn, v, vn);
        if (i % 5000 == 4999) check_list(sl, &m, &r, 500);
    }
    check_list(sl, &m, &r, 3000);
    ck_assert_uint_eq(atomic_load(&sl->count), m.n);
    model_free(&m);
    free(sl);
}
END_TEST

enum {
    ORD_ASC,
    ORD_DESC,
    ORD_RANDOM,
    ORD_RUNS,      /* ascending runs starting anywhere */
    ORD_SAWTOOTH,  /* ascending, then a smaller key, then ascending again */
    ORD_DUPS,      /* ascending with re-puts of the key just put / a recent one */
    ORD_VERSIONS,  /* one user key, many versions, both directions, interleaved */
    ORD_PREFIXES,  /* "a", "aa", "aaa"... in both directions */
    ORD_COUNT
};

static const char *const ord_names[ORD_COUNT] = {
    "ascending", "descending", "random", "runs", "sawtooth", "duplicates", "versions",
    "prefixes",
};

/* Builds the key set of a test: distinct internal keys, sorted. */
static void key_set(tu_rng *r, int ord, model *keys, size_t n)
{
    uint8_t k[MAX_IKEY], uk[MAX_IKEY];
    while (keys->n < n) {
        size_t kn;
        if (ord == ORD_VERSIONS) {
            size_t un = 1 + (keys->n / 700);
            memset(uk, 'v', un);
            kn = make_ikey(k, uk, un, 1 + tu_randn(r, 1u << 20));
        } else if (ord == ORD_PREFIXES) {
            size_t un = tu_randn(r, MAX_IKEY - KV_TS_SIZE + 1);
            memset(uk, tu_randn(r, 3) ? 'a' : 'b', un);
            if (un && tu_randn(r, 4) == 0) uk[un - 1] = (uint8_t)('a' + tu_randn(r, 3));
            kn = make_ikey(k, uk, un, 1 + tu_randn(r, 3));
        } else {
            kn = rand_ikey(r, k);
        }
        model_put(keys, k, kn, NULL, 0);
        if (ord == ORD_PREFIXES && keys->n >= 3 * (MAX_IKEY - KV_TS_SIZE)) break;
    }
}

/* Order of insertion (indices into the sorted key set), with repeats. */
static size_t make_order(tu_rng *r, int ord, size_t n, size_t *out, size_t cap)
{
    size_t w = 0;
    switch (ord) {
    case ORD_ASC:
    case ORD_PREFIXES:
        if (ord == ORD_PREFIXES && tu_randn(r, 2)) {
            for (size_t i = n; i > 0; i--) out[w++] = i - 1;
            break;
        }
        for (size_t i = 0; i < n; i++) out[w++] = i;
        break;
    case ORD_DESC:
        for (size_t i = n; i > 0; i--) out[w++] = i - 1;
        break;
    case ORD_RANDOM:
        for (size_t i = 0; i < n; i++) out[w++] = i;
        for (size_t i = n; i > 1; i--) {
            size_t j = tu_randn(r, i), t = out[i - 1];
            out[i - 1] = out[j];
            out[j] = t;
        }
        break;
    case ORD_RUNS:
    case ORD_SAWTOOTH: {
        /* a permutation made of ascending runs: split 0..n into blocks and
         * shuffle the blocks (runs); sawtooth: next run starts lower */
        size_t nb = 0, *starts = malloc((n + 1) * sizeof *starts);
        ck_assert_ptr_nonnull(starts);
        for (size_t i = 0; i < n; i += 1 + tu_randn(r, ord == ORD_RUNS ? 64 : 200))
            starts[nb++] = i;
        starts[nb] = n;
        if (ord == ORD_RUNS) {
            size_t *perm = malloc(nb * sizeof *perm);
            ck_assert_ptr_nonnull(perm);
            for (size_t i = 0; i < nb; i++) perm[i] = i;
            for (size_t i = nb; i > 1; i--) {
                size_t j = tu_randn(r, i), t = perm[i - 1];
                perm[i - 1] = perm[j];
                perm[j] = t;
            }
            for (size_t b = 0; b < nb; b++)
                for (size_t i = starts[perm[b]]; i < starts[perm[b] + 1]; i++) out[w++] = i;
            free(perm);
        } else {
            /* blocks from the last to the first, each ascending, and
             * between them one stray key smaller than everything so far */
            for (size_t b = nb; b > 0; b--)
                for (size_t i = starts[b - 1]; i < starts[b]; i++) {
                    out[w++] = i;
                    if (i == starts[b - 1] + (starts[b] - starts[b - 1]) / 2 && w < cap)
                        out[w++] = tu_randn(r, starts[b - 1] + 1);
                }
        }
        free(starts);
        break;
    }
    case ORD_DUPS:
        for (size_t i = 0; i < n && w + 3 < cap; i++) {
            out[w++] = i;
            if (tu_randn(r, 3) == 0) out[w++] = i;
            if (tu_randn(r, 5) == 0) out[w++] = i - tu_randn(r, i < 8 ? i + 1 : 8);
        }
        break;
    case ORD_VERSIONS: {
        /* per user key (blocks of 700): versions newest-first or
         * oldest-first, i.e. ikeys ascending or descending */
        for (size_t b = 0; b < n; b += 700) {
            size_t e = b + 700 < n ? b + 700 : n;
            if (tu_randn(r, 2))
                for (size_t i = b; i < e; i++) out[w++] = i;
            else
                for (size_t i = e; i > b; i--) out[w++] = i - 1;
        }
        break;
    }
    }
    return w;
}

START_TEST(test_orders)
{
    int ord = _i;
    kv_sl *sl = new_list(16u << 20, tu_seed() + (uint64_t)ord);
    model keys = {0}, m = {0};
    tu_rng r;
    size_t n = (size_t)steps_for(4000), cap = 3 * n + 16, cnt, *order;
    uint8_t v[64];
    size_t vn;

    tu_rng_init(&r, tu_seed() ^ (0x77 + (uint64_t)ord));
    key_set(&r, ord, &keys, n);
    n = keys.n;
    cap = 3 * n + 16;
    order = malloc(cap * sizeof *order);
    ck_assert_ptr_nonnull(order);
    cnt = make_order(&r, ord, n, order, cap);
    for (size_t i = 0; i < cnt; i++) {
        const ent *e = &keys.e[order[i]];
        rand_value(&r, v, &vn);
        put_checked(sl, &m, e->k, e->kn, v, vn);
        check_around(sl, &m, e->k, e->kn);
        if (i % 256 == 255) check_list(sl, &m, &r, 50);
    }
    check_list(sl, &m, &r, 2000);
    ck_assert_msg(m.n == keys.n, "%s: %zu keys in the list, %zu distinct inserted",
                  ord_names[ord], m.n, keys.n);
    ck_assert_uint_eq(atomic_load(&sl->count), m.n);
    free(order);
    model_free(&keys);
    model_free(&m);
    free(sl);
}
END_TEST

/* Interleaves the finger's favourite pattern (a sorted batch) with random
 * single puts, as the group-commit leader applies many small batches. */
START_TEST(test_sorted_batches)
{
    kv_sl *sl = new_list(32u << 20, tu_seed() ^ 3);
    model m = {0}, batch = {0};
    tu_rng r;
    long rounds = steps_for(600);
    uint8_t v[64];
    size_t vn;

    tu_rng_init(&r, tu_seed() ^ 0x99);
    for (long i = 0; i < rounds; i++) {
        size_t bn = 1 + tu_randn(&r, 40);
        key_set(&r, ORD_RANDOM, &batch, bn);
        /* sometimes include keys already present (replacements) */
        for (size_t j = 0; m.n && j < bn / 4; j++) {
            const ent *e = &m.e[tu_randn(&r, m.n)];
            model_put(&batch, e->k, e->kn, NULL, 0);
        }
        for (size_t j = 0; j < batch.n; j++) {
            rand_value(&r, v, &vn);
            put_checked(sl, &m, batch.e[j].k, batch.e[j].kn, v, vn);
            if (j % 8 == 0) check_around(sl, &m, batch.e[j].k, batch.e[j].kn);
        }
        model_free(&batch);
        if (i % 100 == 99) check_list(sl, &m, &r, 200);
    }
    check_list(sl, &m, &r, 2000);
    model_free(&m);
    free(sl);
}
END_TEST

/* Inverse of the xorshift step in skiplist.c's random_height, so a test
 * can make the next node as tall as possible. */
static uint64_t unshift_left(uint64_t y, int s)
{
    uint64_t x = y;
    for (int i = 0; i < 64 / s + 1; i++) x = y ^ (x << s);
    return x;
}

static uint64_t unshift_right(uint64_t y, int s)
{
    uint64_t x = y;
    for (int i = 0; i < 64 / s + 1; i++) x = y ^ (x >> s);
    return x;
}

static uint64_t xorshift_preimage(uint64_t out)
{
    return unshift_left(unshift_right(unshift_left(out, 17), 7), 13);
}

/* Nodes of the maximum height: the cost bound holds, every level links. */
START_TEST(test_tall_nodes)
{
    kv_sl *sl = new_list(1u << 20, 12345);
    model m = {0};
    tu_rng r;
    uint8_t k[MAX_IKEY], v[64];
    size_t kn, vn;

    tu_rng_init(&r, tu_seed() ^ 0x1234);
    {
        /* self-check of the inversion */
        uint64_t x = 0x123456789abcdefULL, y = x;
        y ^= y << 13;
        y ^= y >> 7;
        y ^= y << 17;
        ck_assert_uint_eq(xorshift_preimage(y), x);
    }
    for (int i = 0; i < 300; i++) {
        if (i % 3 == 0) sl->rng = xorshift_preimage((1 + tu_randn(&r, 4)) << 48);
        kn = rand_ikey(&r, k);
        vn = i % 2 ? 0 : tu_randn(&r, 8);
        tu_randbytes(&r, v, vn);
        put_checked(sl, &m, k, kn, v, vn);
        check_around(sl, &m, k, kn);
    }
    ck_assert_uint_eq(atomic_load(&sl->height), KV_SL_MAX_HEIGHT);
    check_list(sl, &m, &r, 500);
    model_free(&m);
    free(sl);
}
END_TEST

/* Small arenas filled to the brim: a failing put returns -1 and changes
 * nothing; a put whose cost fits must succeed. */
START_TEST(test_arena_full)
{
    tu_rng r;
    long rounds = steps_for(40);
    uint8_t k[MAX_IKEY], v[700];

    tu_rng_init(&r, tu_seed() ^ 0xf011);
    for (long round = 0; round < rounds; round++) {
        size_t cap = 4096 + (size_t)tu_randn(&r, 60000);
        kv_sl *sl = new_list(cap, tu_rand(&r));
        model m = {0};
        int fails = 0;
        ck_assert_uint_le(kv_sl_used(sl), 4096);
        for (int i = 0; fails < 60 && i < 100000; i++) {
            size_t kn, vn = tu_randn(&r, 4) ? tu_randn(&r, 40) : tu_randn(&r, sizeof v);
            uint64_t u0 = kv_sl_used(sl), cnt0 = atomic_load(&sl->count);
            size_t cost;
            int rc, replace = m.n && tu_randn(&r, 4) == 0;
            if (replace) {
                const ent *e = &m.e[tu_randn(&r, m.n)];
                kn = e->kn;
                memcpy(k, e->k, kn);
            } else {
                kn = rand_ikey(&r, k);
            }
            tu_randbytes(&r, v, vn);
            cost = kv_sl_put_cost(kn, vn);
            rc = kv_sl_put(sl, k, kn, v, vn);
            REQUIRE(rc == 0 || rc == -1, "kv_sl_put returned %d", rc);
            if (rc == 0) {
                uint64_t u1 = kv_sl_used(sl);
                REQUIRE(u1 <= cap && u1 - u0 <= cost, "put consumed %llu, cost %zu",
                        (unsigned long long)(u1 - u0), cost);
                model_put(&m, k, kn, v, vn);
            } else {
                fails++;
                REQUIRE(cap - u0 < cost,
                        "put of cost %zu failed with %llu bytes free", cost,
                        (unsigned long long)(cap - u0));
                REQUIRE(kv_sl_used(sl) == u0, "failed put changed used");
                REQUIRE(atomic_load(&sl->count) == cnt0, "failed put changed count");
                if (fails % 10 == 1) check_list(sl, &m, &r, 20);
            }
        }
        ck_assert_int_ge(fails, 1);
        check_list(sl, &m, &r, 200);
        /* after failures the list still takes what fits */
        {
            uint64_t left = cap - kv_sl_used(sl);
            if (left >= kv_sl_put_cost(KV_TS_SIZE + 1, 0)) {
                size_t kn = make_ikey(k, "\xff\xff", 2, 7);
                put_checked(sl, &m, k, kn, v, 0);
                check_list(sl, &m, &r, 20);
            }
        }
        model_free(&m);
        free(sl);
    }
}
END_TEST

/* A replacement that does not fit keeps the old value. */
START_TEST(test_replace_full)
{
    kv_sl *sl = new_list(4096, 99);
    model m = {0};
    tu_rng r;
    uint8_t k[MAX_IKEY], v[4096];
    size_t kn = make_ikey(k, "replace-me", 10, 5);

    tu_rng_init(&r, tu_seed());
    memset(v, 'x', sizeof v);
    put_checked(sl, &m, k, kn, v, 10);
    memset(v, 'y', sizeof v);
    put_checked(sl, &m, k, kn, v, 20);
    ck_assert_int_eq(kv_sl_put(sl, k, kn, v, 4096 - 64), -1);
    check_list(sl, &m, &r, 10);
    /* fill with replacements until it fails; the value stays the last one */
    for (int i = 0; i < 1000; i++) {
        v[0] = (uint8_t)i;
        if (kv_sl_put(sl, k, kn, v, 100) != 0) break;
        model_put(&m, k, kn, v, 100);
    }
    check_list(sl, &m, &r, 10);
    ck_assert_uint_eq(atomic_load(&sl->count), 1);
    model_free(&m);
    free(sl);
}
END_TEST

/* ---- one writer, three readers ---- */

#define RD_KEEP 512

typedef struct shared_ctl {
    _Atomic int done;
    _Atomic uint64_t final_count;
    _Atomic int failed;
    _Atomic long passes_during; /* reader passes that overlapped the writer */
    char msg[256];
} shared_ctl;

/* Concurrent values are self-checking: h ^ seq | seq | filler(seq). */
static size_t conc_value(uint8_t *v, const uint8_t *k, size_t kn, uint64_t seq)
{
    uint64_t h = fnv(k, kn) ^ seq;
    size_t fill = (size_t)(seq % 24);
    memcpy(v, &h, 8);
    memcpy(v + 8, &seq, 8);
    memset(v + 16, (int)(uint8_t)seq, fill);
    return 16 + fill;
}

static int conc_value_ok(const uint8_t *v, size_t vn, const uint8_t *k, size_t kn)
{
    uint64_t h, seq;
    if (vn < 16) return 0;
    memcpy(&h, v, 8);
    memcpy(&seq, v + 8, 8);
    if ((h ^ seq) != fnv(k, kn) || vn != 16 + seq % 24) return 0;
    for (size_t i = 16; i < vn; i++)
        if (v[i] != (uint8_t)seq) return 0;
    return 1;
}

static void ctl_fail(shared_ctl *c, const char *msg)
{
    int zero = 0;
    if (atomic_compare_exchange_strong(&c->failed, &zero, 1))
        snprintf(c->msg, sizeof c->msg, "%s", msg);
}

/* The writer: random keys, some re-puts with a new value. */
static void writer_run(kv_sl *sl, uint64_t seed, long n, shared_ctl *c)
{
    tu_rng r;
    uint8_t (*keys)[MAX_IKEY] = malloc((size_t)n * MAX_IKEY);
    size_t *kns = malloc((size_t)n * sizeof *kns), nk = 0;
    uint8_t k[MAX_IKEY], v[64];
    tu_rng_init(&r, seed);
    if (!keys || !kns) {
        ctl_fail(c, "writer: out of memory");
        goto out;
    }
    for (long i = 0; i < n && !atomic_load(&c->failed); i++) {
        size_t kn, vn;
        if (nk && tu_randn(&r, 5) == 0) {
            size_t j = tu_randn(&r, nk);
            kn = kns[j];
            memcpy(k, keys[j], kn);
        } else {
            kn = rand_ikey(&r, k);
            memcpy(keys[nk], k, kn);
            kns[nk++] = kn;
        }
        vn = conc_value(v, k, kn, (uint64_t)i + 1);
        if (kv_sl_put(sl, k, kn, v, vn) != 0) {
            ctl_fail(c, "writer: arena full");
            break;
        }
    }
out:
    atomic_store(&c->final_count, atomic_load(&sl->count));
    atomic_store(&c->done, 1);
    free(keys);
    free(kns);
}

/* A reader: scans, seeks and backward walks; everything it sees is sorted
 * and self-consistent, and every key it once saw stays visible. */
static void reader_run(const kv_sl *sl, uint64_t seed, shared_ctl *c)
{
    tu_rng r;
    uint8_t (*seen)[MAX_IKEY] = malloc(RD_KEEP * MAX_IKEY);
    size_t seen_n[RD_KEEP], nseen = 0;
    uint8_t prev[MAX_IKEY];
    char msg[200];
    int last_pass = 0;

    tu_rng_init(&r, seed);
    if (!seen) {
        ctl_fail(c, "reader: out of memory");
        return;
    }
    while (!atomic_load(&c->failed)) {
        kv_sl_iter it;
        uint64_t c0, cnt = 0;
        size_t pn = 0;
        int done = atomic_load(&c->done);

        /* 1. a full forward scan */
        c0 = atomic_load(&((kv_sl *)sl)->count);
        kv_sl_iter_init(&it, sl);
        for (kv_sl_iter_first(&it); kv_sl_iter_valid(&it); kv_sl_iter_next(&it)) {
            size_t kn, vn;
            const uint8_t *k = kv_sl_iter_key(&it, &kn), *v = kv_sl_iter_value(&it, &vn);
            if (kn < KV_TS_SIZE || kn > MAX_IKEY) {
                ctl_fail(c, "reader: bad key length");
                goto out;
            }
            if (cnt && kv_ikey_cmp(prev, pn, k, kn) >= 0) {
                ctl_fail(c, "reader: forward scan not strictly ascending");
                goto out;
            }
            if (!conc_value_ok(v, vn, k, kn)) {
                ctl_fail(c, "reader: value does not match its key");
                goto out;
            }
            memcpy(prev, k, kn);
            pn = kn;
            cnt++;
            if (nseen < RD_KEEP || tu_randn(&r, cnt) < RD_KEEP) {
                size_t slot = nseen < RD_KEEP ? nseen++ : tu_randn(&r, RD_KEEP);
                memcpy(seen[slot], k, kn);
                seen_n[slot] = kn;
            }
        }
        if (cnt < c0) {
            snprintf(msg, sizeof msg, "reader: scan saw %llu nodes, count was %llu before",
                     (unsigned long long)cnt, (unsigned long long)c0);
            ctl_fail(c, msg);
            goto out;
        }
        if (last_pass) {
            if (cnt != atomic_load(&c->final_count)) {
                snprintf(msg, sizeof msg, "reader: final scan saw %llu nodes, writer put %llu",
                         (unsigned long long)cnt,
                         (unsigned long long)atomic_load(&c->final_count));
                ctl_fail(c, msg);
            }
            break;
        }
        /* 2. every remembered key is still there, by seek and seek_for_prev */
        for (size_t i = 0; i < nseen; i++) {
            size_t kn;
            const uint8_t *k;
            kv_sl_iter_seek(&it, seen[i], seen_n[i]);
            if (!kv_sl_iter_valid(&it) || (k = kv_sl_iter_key(&it, &kn), kn != seen_n[i]) ||
                memcmp(k, seen[i], kn)) {
                ctl_fail(c, "reader: a key seen before is not found by seek");
                goto out;
            }
            kv_sl_iter_seek_for_prev(&it, seen[i], seen_n[i]);
            if (!kv_sl_iter_valid(&it) || (k = kv_sl_iter_key(&it, &kn), kn != seen_n[i]) ||
                memcmp(k, seen[i], kn)) {
                ctl_fail(c, "reader: a key seen before is not found by seek_for_prev");
                goto out;
            }
        }
        /* 3. random probes: seek lands >= probe, seek_for_prev <= probe */
        for (int i = 0; i < 200; i++) {
            uint8_t p[MAX_IKEY];
            size_t n = rand_ikey(&r, p), kn;
            const uint8_t *k;
            kv_sl_iter_seek(&it, p, n);
            if (kv_sl_iter_valid(&it) && (k = kv_sl_iter_key(&it, &kn), 1) &&
                kv_ikey_cmp(k, kn, p, n) < 0) {
                ctl_fail(c, "reader: seek landed before the probe");
                goto out;
            }
            kv_sl_iter_seek_for_prev(&it, p, n);
            if (kv_sl_iter_valid(&it) && (k = kv_sl_iter_key(&it, &kn), 1) &&
                kv_ikey_cmp(k, kn, p, n) > 0) {
                ctl_fail(c, "reader: seek_for_prev landed after the probe");
                goto out;
            }
        }
        /* 4. a backward walk from the end */
        kv_sl_iter_last(&it);
        pn = 0;
        for (int i = 0; i < 300 && kv_sl_iter_valid(&it); i++) {
            size_t kn;
            const uint8_t *k = kv_sl_iter_key(&it, &kn);
            if (pn && kv_ikey_cmp(k, kn, prev, pn) >= 0) {
                ctl_fail(c, "reader: backward walk not strictly descending");
                goto out;
            }
            memcpy(prev, k, kn);
            pn = kn;
            kv_sl_iter_prev(&it);
        }
        if (done) last_pass = 1;
        else atomic_fetch_add(&c->passes_during, 1);
    }
out:
    free(seen);
}

typedef struct thr_arg {
    kv_sl *sl;
    shared_ctl *c;
    uint64_t seed;
    long n;
} thr_arg;

static void *writer_thr(void *p)
{
    thr_arg *a = p;
    writer_run(a->sl, a->seed, a->n, a->c);
    return NULL;
}

static void *reader_thr(void *p)
{
    thr_arg *a = p;
    reader_run(a->sl, a->seed, a->c);
    return NULL;
}

START_TEST(test_concurrent_threads)
{
    kv_sl *sl = new_list(64u << 20, tu_seed());
    shared_ctl *c = calloc(1, sizeof *c);
    pthread_t w, rd[3];
    thr_arg wa, ra[3];

    ck_assert_ptr_nonnull(c);
    wa.sl = sl;
    wa.c = c;
    wa.seed = tu_seed() ^ 0xabc;
    wa.n = steps_for(250000);
    for (int i = 0; i < 3; i++) {
        ra[i] = wa;
        ra[i].seed = tu_seed() + 17 * (uint64_t)i;
        ck_assert_int_eq(pthread_create(&rd[i], NULL, reader_thr, &ra[i]), 0);
    }
    ck_assert_int_eq(pthread_create(&w, NULL, writer_thr, &wa), 0);
    pthread_join(w, NULL);
    for (int i = 0; i < 3; i++) pthread_join(rd[i], NULL);
    ck_assert_msg(!atomic_load(&c->failed), "%s", c->msg);
    ck_assert_int_ge(atomic_load(&c->passes_during), 1);
    check_levels(sl);
    free(c);
    free(sl);
}
END_TEST

/* A targeted race: the writer keeps inserting a new largest key below
 * the probe P (so each insert lands between the last node < P and the
 * node >= P) while a reader seeks P; a seek must never return a key < P,
 * and seek_for_prev never one > P. */
typedef struct race_arg {
    kv_sl *sl;
    _Atomic int *done;
    _Atomic long bad_seek, bad_prev, seeks;
} race_arg;

static void *race_reader(void *p)
{
    race_arg *a = p;
    uint8_t probe[KV_TS_SIZE + 1];
    size_t pn = make_ikey(probe, "m", 1, 1);
    kv_sl_iter it;
    kv_sl_iter_init(&it, a->sl);
    while (!atomic_load_explicit(a->done, memory_order_relaxed)) {
        size_t kn;
        const uint8_t *k;
        kv_sl_iter_seek(&it, probe, pn);
        if (kv_sl_iter_valid(&it)) {
            k = kv_sl_iter_key(&it, &kn);
            if (kv_ikey_cmp(k, kn, probe, pn) < 0) atomic_fetch_add(&a->bad_seek, 1);
        } else {
            atomic_fetch_add(&a->bad_seek, 1); /* "m" and "z" are always present */
        }
        kv_sl_iter_seek_for_prev(&it, probe, pn);
        if (kv_sl_iter_valid(&it)) {
            k = kv_sl_iter_key(&it, &kn);
            if (kv_ikey_cmp(k, kn, probe, pn) > 0) atomic_fetch_add(&a->bad_prev, 1);
        }
        atomic_fetch_add_explicit(&a->seeks, 1, memory_order_relaxed);
    }
    return NULL;
}

START_TEST(test_seek_race)
{
    kv_sl *sl = new_list(64u << 20, tu_seed());
    _Atomic int done = 0;
    pthread_t t;
    race_arg a;
    uint8_t k[32], v[1] = {0};
    long target = steps_for(1000000), i;

    /* "a" below everything, the probe "m" itself and "z" above it */
    kv_sl_put(sl, k, make_ikey(k, "a", 1, 1), v, 1);
    kv_sl_put(sl, k, make_ikey(k, "m", 1, 1), v, 1);
    kv_sl_put(sl, k, make_ikey(k, "z", 1, 1), v, 1);
    a.sl = sl;
    a.done = &done;
    atomic_init(&a.bad_seek, 0);
    atomic_init(&a.bad_prev, 0);
    atomic_init(&a.seeks, 0);
    ck_assert_int_eq(pthread_create(&t, NULL, race_reader, &a), 0);
    /* insert until the reader has done `target` seeks meanwhile (it may be
     * starved on a busy machine), a bad seek shows up, or the arena is full */
    for (i = 0; atomic_load_explicit(&a.seeks, memory_order_relaxed) < target; i++) {
        /* "l" + big-endian counter: ascending, all between "a" and "m" */
        uint8_t uk[9];
        uk[0] = 'l';
        kv_put_be64(uk + 1, (uint64_t)i);
        if (kv_sl_put(sl, k, make_ikey(k, uk, sizeof uk, 1), v, 1) != 0) break;
        if (i % 1024 == 0 && (atomic_load(&a.bad_seek) || atomic_load(&a.bad_prev))) break;
    }
    atomic_store(&done, 1);
    pthread_join(t, NULL);
    ck_assert_msg(atomic_load(&a.bad_seek) == 0,
                  "%ld of %ld seeks to P returned a key < P (a node inserted just before P "
                  "while the seek ran; %ld inserts)",
                  atomic_load(&a.bad_seek), atomic_load(&a.seeks), i);
    ck_assert_msg(atomic_load(&a.bad_prev) == 0, "%ld seek_for_prev returned a key > P",
                  atomic_load(&a.bad_prev));
    check_levels(sl);
    free(sl);
}
END_TEST

/* The same across processes: the list lives in a memfd that the writer and
 * each reader map afresh, so every process sees it at another address. */
START_TEST(test_concurrent_processes)
{
    const size_t cap = 64u << 20;
    int fd = memfd_create("kv-skiplist-test", 0);
    void *mem;
    shared_ctl *c;
    pid_t pid[4];

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(ftruncate(fd, (off_t)cap), 0);
    mem = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ck_assert_ptr_ne(mem, MAP_FAILED);
    c = mmap(NULL, sizeof *c, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(c, MAP_FAILED);
    memset(c, 0, sizeof *c);
    kv_sl_init(mem, cap, tu_seed());

    for (int p = 0; p < 4; p++) {
        pid[p] = fork();
        ck_assert_int_ge(pid[p], 0);
        if (pid[p] == 0) {
            void *m2 = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            if (m2 == MAP_FAILED || m2 == mem) _exit(3);
            if (p == 0) writer_run(m2, tu_seed() ^ 0xdef, steps_for(200000), c);
            else reader_run(m2, tu_seed() + 31 * (uint64_t)p, c);
            _exit(atomic_load(&c->failed) ? 1 : 0);
        }
    }
    for (int p = 0; p < 4; p++) {
        int status = 0;
        ck_assert_int_eq(waitpid(pid[p], &status, 0), pid[p]);
        ck_assert_msg(WIFEXITED(status), "child %d died (status 0x%x)", p, status);
        ck_assert_msg(WEXITSTATUS(status) != 3, "child %d could not map the memfd", p);
    }
    ck_assert_msg(!atomic_load(&c->failed), "%s", c->msg);
    /* the parent's own mapping sees the whole list too */
    {
        kv_sl_iter it;
        uint64_t n = 0;
        kv_sl_iter_init(&it, mem);
        for (kv_sl_iter_first(&it); kv_sl_iter_valid(&it); kv_sl_iter_next(&it)) n++;
        ck_assert_uint_eq(n, atomic_load(&c->final_count));
        ck_assert_uint_gt(n, 0);
        check_levels(mem);
    }
    munmap(c, sizeof *c);
    munmap(mem, cap);
    close(fd);
}
END_TEST

static Suite *sl_suite(void)
{
    Suite *s = suite_create("skiplist");
    TCase *tc = tcase_create("single");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_bloom);
    tcase_add_test(tc, test_random_inserts);
    tcase_add_loop_test(tc, test_orders, 0, ORD_COUNT);
    tcase_add_test(tc, test_sorted_batches);
    tcase_add_test(tc, test_tall_nodes);
    tcase_add_test(tc, test_arena_full);
    tcase_add_test(tc, test_replace_full);
    suite_add_tcase(s, tc);
    tc = tcase_create("concurrent");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_concurrent_threads);
    tcase_add_test(tc, test_seek_race);
    tcase_add_test(tc, test_concurrent_processes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    tu_seed();
    return tu_run(sl_suite());
}
