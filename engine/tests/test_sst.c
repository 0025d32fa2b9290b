/*
 * test_sst.c - unit tests of the SSTable module: compression, bloom filter,
 * builder and reader (round trips of random tables with every compression,
 * seeks against a brute-force model, properties, block cache hook), and
 * robustness: flipped bytes, truncation, malformed blocks and I/O faults
 * must give KV_CORRUPTION / KV_IO and never a crash.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#include "env.h"
#include "env_fault.h"
#include "err.h"
#include "hash.h"
#include "ikey.h"
#include "sst.h"
#include "sst_format.h"

/* ---- a model table: sorted (ikey, value struct) pairs ---- */

typedef struct ent {
    uint8_t *k;
    size_t kn;
    uint8_t *v;
    size_t vn;
} ent;

typedef struct model {
    ent *e;
    size_t n, cap;
} model;

static void model_add(model *m, const uint8_t *k, size_t kn, const uint8_t *v, size_t vn)
{
    ent *e;
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 256;
        m->e = realloc(m->e, m->cap * sizeof *m->e);
        ck_assert_ptr_nonnull(m->e);
    }
    e = &m->e[m->n++];
    e->k = malloc(kn);
    e->v = malloc(vn ? vn : 1);
    memcpy(e->k, k, kn);
    if (vn) memcpy(e->v, v, vn);
    e->kn = kn;
    e->vn = vn;
}

static void model_free(model *m)
{
    for (size_t i = 0; i < m->n; i++) {
        free(m->e[i].k);
        free(m->e[i].v);
    }
    free(m->e);
    memset(m, 0, sizeof *m);
}

static int ent_cmp(const void *a, const void *b)
{
    const ent *x = a, *y = b;
    return kv_ikey_cmp(x->k, x->kn, y->k, y->kn);
}

/* Sorts and drops duplicate internal keys. */
static void model_sort(model *m)
{
    size_t w = 0;
    qsort(m->e, m->n, sizeof *m->e, ent_cmp);
    for (size_t i = 0; i < m->n; i++) {
        if (w && ent_cmp(&m->e[w - 1], &m->e[i]) == 0) {
            free(m->e[i].k);
            free(m->e[i].v);
            continue;
        }
        m->e[w++] = m->e[i];
    }
    m->n = w;
}

/* Index of the first entry >= k (strict: > k); brute force. */
static size_t model_lower(const model *m, const uint8_t *k, size_t kn, int strict)
{
    for (size_t i = 0; i < m->n; i++) {
        int c = kv_ikey_cmp(m->e[i].k, m->e[i].kn, k, kn);
        if (c > 0 || (!strict && c == 0)) return i;
    }
    return m->n;
}

static size_t make_ikey(uint8_t *buf, const uint8_t *uk, size_t un, uint64_t version)
{
    memmove(buf, uk, un);
    kv_ikey_put_ts(buf + un, version);
    return un + KV_TS_SIZE;
}

/* Fills v with n value bytes: compressible text or random bytes. */
static void fill_value(tu_rng *r, uint8_t *v, size_t n, int compressible)
{
    static const char words[] = "the quick brown fox jumps over the lazy dog 0123456789 ";
    if (!compressible) {
        tu_randbytes(r, v, n);
        return;
    }
    for (size_t i = 0; i < n; i++) v[i] = (uint8_t)words[(i + (i / 97)) % (sizeof words - 1)];
    if (n) v[tu_randn(r, n)] = (uint8_t)tu_rand(r);
}

/* A random value struct into vs (big enough); returns its length. */
static size_t make_vstruct(tu_rng *r, uint8_t *vs, size_t max_val, int compressible)
{
    uint8_t val[1 << 16], ptr[16];
    uint64_t kind = tu_randn(r, 20);
    size_t n;

    if (kind == 0) return 0; /* an empty value struct (stored verbatim) */
    if (kind <= 2) return kv_vstruct_encode(vs, KV_META_DELETE, 0, 0, NULL, 0);
    if (kind <= 4) {
        kv_put_u32(ptr, (uint32_t)tu_randn(r, 100));
        kv_put_u32(ptr + 4, (uint32_t)tu_randn(r, 1 << 20));
        kv_put_u64(ptr + 8, tu_rand(r) >> 20);
        return kv_vstruct_encode(vs, KV_META_VALUE_PTR, (uint8_t)tu_rand(r), 0, ptr, 16);
    }
    if (kind == 5) return kv_vstruct_encode(vs, 0, 7, tu_rand(r) >> 30, NULL, 0);
    n = (size_t)tu_randn(r, max_val + 1);
    if (n > sizeof val) n = sizeof val;
    fill_value(r, val, n, compressible);
    return kv_vstruct_encode(vs, 0, (uint8_t)tu_rand(r), tu_randn(r, 3) ? 0 : tu_rand(r) >> 30,
                             val, n);
}

enum { SHAPE_SMALL, SHAPE_MEDIUM, SHAPE_BIG, SHAPE_VERSIONS, SHAPE_ONE, SHAPE_BLOOMTEST };

/* Random tables of several shapes. */
static void gen_model(tu_rng *r, int shape, int compressible, model *m)
{
    uint8_t *uk = malloc(KV_MAX_KEY_SIZE), *ik = malloc(KV_MAX_KEY_SIZE + KV_TS_SIZE);
    uint8_t *vs = malloc((1 << 16) + 32);
    size_t nkeys, max_val, un;
    int max_versions;

    switch (shape) {
    case SHAPE_SMALL:
        nkeys = 2000 + tu_randn(r, 2000), max_val = 100, max_versions = 3;
        break;
    case SHAPE_MEDIUM:
        nkeys = 300, max_val = 100, max_versions = 3;
        break;
    case SHAPE_BIG:
        nkeys = 150, max_val = 20000, max_versions = 2;
        break;
    case SHAPE_VERSIONS:
        nkeys = 4, max_val = 50, max_versions = 800;
        break;
    case SHAPE_ONE:
        nkeys = 1, max_val = 10, max_versions = 1;
        break;
    default:
        nkeys = 20000, max_val = 8, max_versions = 1;
        break;
    }
    for (size_t i = 0; i < nkeys; i++) {
        int nv = 1 + (int)tu_randn(r, (uint64_t)max_versions);
        uint64_t kind = tu_randn(r, 10);
        if (shape == SHAPE_BIG && kind < 2) {
            un = kind == 0 ? KV_MAX_KEY_SIZE : 1000 + tu_randn(r, 60000);
            fill_value(r, uk, un, 1);
            uk[un - 1] = (uint8_t)i;
        } else if (kind < 7) {
            /* shared prefixes: "user:%08u" plus a random tail */
            un = (size_t)snprintf(
                (char *)uk, 64, "user:%08u",
                (unsigned)tu_randn(r, shape == SHAPE_BLOOMTEST ? 1u << 30 : 100000));
            if (tu_randn(r, 2)) {
                size_t extra = tu_randn(r, 12);
                tu_randbytes(r, uk + un, extra);
                un += extra;
            }
        } else {
            un = 1 + tu_randn(r, 24);
            tu_randbytes(r, uk, un);
        }
        for (int v = 0; v < nv; v++) {
            uint64_t ver = 1 + tu_randn(r, 1000000);
            size_t kn = make_ikey(ik, uk, un, ver), vn;
            vn = make_vstruct(r, vs, max_val, compressible);
            model_add(m, ik, kn, vs, vn);
        }
    }
    model_sort(m);
    free(uk);
    free(ik);
    free(vs);
}

/* ---- building and mapping ---- */

typedef struct mapped {
    kv_env *env;
    kv_file *f;
    const uint8_t *p;
    uint64_t n;
} mapped;

static kv_sst_build_opts build_opts(uint64_t id, int block_size, kv_compression c, double fp)
{
    kv_sst_build_opts o;
    memset(&o, 0, sizeof o);
    o.table_id = id;
    o.block_size = block_size;
    o.bloom_fp = fp;
    o.compression = c;
    o.zstd_level = 1;
    o.sync = 0;
    return o;
}

static void build(kv_env *env, const char *path, const kv_sst_build_opts *o, const model *m,
                  kv_sst_props *props)
{
    kv_sst_builder *b;
    kv_err err;
    size_t sl, ll;
    const uint8_t *s, *l;

    TU_OK(kv_sst_builder_new(env, path, o, &b, &err), &err);
    for (size_t i = 0; i < m->n; i++)
        TU_OK(kv_sst_builder_add(b, m->e[i].k, m->e[i].kn, m->e[i].v, m->e[i].vn, &err), &err);
    ck_assert_uint_eq(kv_sst_builder_entries(b), m->n);
    ck_assert_uint_gt(kv_sst_builder_size(b), 0);
    s = kv_sst_builder_smallest(b, &sl);
    l = kv_sst_builder_largest(b, &ll);
    ck_assert(sl == m->e[0].kn && !memcmp(s, m->e[0].k, sl));
    ck_assert(ll == m->e[m->n - 1].kn && !memcmp(l, m->e[m->n - 1].k, ll));
    TU_OK(kv_sst_builder_finish(b, props, &err), &err);
    kv_sst_builder_free(b);
}

static void map_file(kv_env *env, const char *path, mapped *mp)
{
    kv_err err;
    mp->env = env;
    TU_OK(env->open(env, path, KV_O_READ, &mp->f, &err), &err);
    TU_OK(env->size(mp->f, &mp->n, &err), &err);
    TU_OK(env->map(mp->f, mp->n, &mp->p, &err), &err);
}

static void unmap_file(mapped *mp)
{
    mp->env->unmap(mp->f, mp->p, mp->n);
    mp->env->close(mp->f);
}

/* An exact-size heap copy (so ASan sees reads past the end). */
static uint8_t *copy_bytes(const uint8_t *p, size_t n)
{
    uint8_t *c = malloc(n ? n : 1);
    ck_assert_ptr_nonnull(c);
    if (n) memcpy(c, p, n);
    return c;
}

/* ---- checks against the model ---- */

static void expect_at(const kv_sst_iter *it, const model *m, size_t i, const char *what)
{
    ck_assert_msg(it->status == KV_OK, "%s: status %d: %s", what, it->status, it->err.msg);
    if (i >= m->n) {
        ck_assert_msg(!it->valid, "%s: valid, expected end", what);
        return;
    }
    ck_assert_msg(it->valid, "%s: invalid, expected entry %zu of %zu", what, i, m->n);
    ck_assert_msg(it->key_len == m->e[i].kn && !memcmp(it->key, m->e[i].k, it->key_len),
                  "%s: key mismatch at %zu", what, i);
    ck_assert_msg(it->val_len == m->e[i].vn &&
                      (!it->val_len || !memcmp(it->val, m->e[i].v, it->val_len)),
                  "%s: value mismatch at %zu", what, i);
}

/* A target key near entry i: the key itself, another version, a longer or
 * shorter user key, or random bytes. */
static size_t seek_target(tu_rng *r, const model *m, uint8_t *buf)
{
    const ent *e = &m->e[tu_randn(r, m->n)];
    size_t un = kv_ikey_ulen(e->kn);
    switch (tu_randn(r, 6)) {
    case 0:
    case 1:
        memcpy(buf, e->k, e->kn);
        return e->kn;
    case 2:
        return make_ikey(buf, e->k, un, tu_randn(r, 1100000));
    case 3:
        memcpy(buf, e->k, un);
        buf[un] = (uint8_t)tu_rand(r);
        return make_ikey(buf, buf, un + 1, tu_rand(r));
    case 4:
        return make_ikey(buf, e->k, un ? un - 1 : 0, tu_rand(r));
    default: {
        size_t n = tu_randn(r, 20);
        tu_randbytes(r, buf, n);
        return make_ikey(buf, buf, n, tu_rand(r));
    }
    }
}

static void check_table(tu_rng *r, const kv_sst *t, const model *m, const kv_sst_read_opts *ro)
{
    kv_sst_iter it;
    uint8_t *target = malloc(KV_MAX_KEY_SIZE + 16);
    size_t i;
    long seeks = tu_scale(m->n < 200 ? 200 : 400);

    kv_sst_iter_init(&it, t, ro);
    /* forward */
    kv_sst_iter_first(&it);
    for (i = 0; i < m->n; i++) {
        expect_at(&it, m, i, "forward");
        kv_sst_iter_next(&it);
    }
    expect_at(&it, m, m->n, "forward end");
    /* backward */
    kv_sst_iter_last(&it);
    for (i = m->n; i-- > 0;) {
        expect_at(&it, m, i, "backward");
        kv_sst_iter_prev(&it);
    }
    ck_assert(!it.valid && it.status == KV_OK);

    for (long s = 0; s < seeks; s++) {
        size_t tn = seek_target(r, m, target), want;
        int steps = (int)tu_randn(r, 4);

        want = model_lower(m, target, tn, 0);
        kv_sst_iter_seek(&it, target, tn);
        expect_at(&it, m, want, "seek");
        for (int k = 0; k < steps && it.valid; k++) {
            kv_sst_iter_next(&it);
            expect_at(&it, m, ++want, "seek+next");
        }
        want = model_lower(m, target, tn, 0);
        kv_sst_iter_seek(&it, target, tn);
        if (it.valid) {
            kv_sst_iter_prev(&it);
            expect_at(&it, m, want == 0 ? m->n : want - 1, "seek+prev");
        }

        /* seek_for_prev: last entry <= target */
        want = model_lower(m, target, tn, 1);
        kv_sst_iter_seek_for_prev(&it, target, tn);
        if (want == 0) {
            ck_assert_msg(!it.valid && it.status == KV_OK, "seek_for_prev: expected invalid");
        } else {
            expect_at(&it, m, want - 1, "seek_for_prev");
            if (want < m->n) {
                kv_sst_iter_next(&it);
                expect_at(&it, m, want, "seek_for_prev+next");
            }
        }
    }
    /* below the first and above the last key */
    kv_sst_iter_seek(&it, m->e[0].k, m->e[0].kn);
    expect_at(&it, m, 0, "seek first");
    kv_sst_iter_seek_for_prev(&it, m->e[m->n - 1].k, m->e[m->n - 1].kn);
    expect_at(&it, m, m->n - 1, "seek_for_prev last");
    kv_sst_iter_done(&it);
    free(target);
}

static void expected_props(const model *m, kv_sst_props *p)
{
    memset(p, 0, sizeof *p);
    p->min_version = UINT64_MAX;
    for (size_t i = 0; i < m->n; i++) {
        const ent *e = &m->e[i];
        uint64_t v = kv_ikey_version(e->k, e->kn);
        kv_vstruct vs;
        p->num_entries++;
        p->raw_key_bytes += e->kn;
        p->raw_value_bytes += e->vn;
        if (v < p->min_version) p->min_version = v;
        if (v > p->max_version) p->max_version = v;
        if (!e->vn) continue;
        if (e->v[0] & KV_META_DELETE) p->num_deletes++;
        if (e->v[0] & KV_META_VALUE_PTR) {
            p->num_value_ptrs++;
            ck_assert_int_eq(kv_vstruct_decode(e->v, e->vn, &vs), 0);
            p->vlog_bytes += kv_get_u32(vs.value + 4);
        }
    }
}

static void check_props(const kv_sst *t, const model *m, const kv_sst_props *built, uint64_t id,
                        kv_compression c, uint64_t size)
{
    const kv_sst_props *p = kv_sst_get_props(t);
    kv_sst_props want;
    size_t n;
    const uint8_t *k;

    expected_props(m, &want);
    ck_assert_uint_eq(p->table_id, id);
    ck_assert_uint_eq(p->file_size, size);
    ck_assert_uint_eq(p->num_entries, want.num_entries);
    ck_assert_uint_eq(p->num_deletes, want.num_deletes);
    ck_assert_uint_eq(p->num_value_ptrs, want.num_value_ptrs);
    ck_assert_uint_eq(p->vlog_bytes, want.vlog_bytes);
    ck_assert_uint_eq(p->raw_key_bytes, want.raw_key_bytes);
    ck_assert_uint_eq(p->raw_value_bytes, want.raw_value_bytes);
    ck_assert_uint_eq(p->min_version, want.min_version);
    ck_assert_uint_eq(p->max_version, want.max_version);
    ck_assert_uint_eq(p->num_blocks, kv_sst_num_blocks(t));
    ck_assert_uint_eq(p->compression, (uint32_t)c);
    ck_assert_uint_gt(p->created_unix, 1500000000u);
    ck_assert(memcmp(p, built, sizeof *p) == 0);
    k = kv_sst_smallest(t, &n);
    ck_assert(n == m->e[0].kn && !memcmp(k, m->e[0].k, n));
    k = kv_sst_largest(t, &n);
    ck_assert(n == m->e[m->n - 1].kn && !memcmp(k, m->e[m->n - 1].k, n));
}

/* ---- compression ---- */

START_TEST(test_compress)
{
    tu_rng r;
    size_t n = 64 << 10, cap = 0, clen, dlen;
    uint8_t *in = malloc(n), *c = NULL, *d;
    kv_compression types[] = {KV_COMPRESS_SNAPPY, KV_COMPRESS_ZSTD}, used;
    kv_err err;

    tu_rng_init(&r, tu_seed());
    for (int ti = 0; ti < 2; ti++) {
        kv_compression ty = types[ti];
        /* compressible: compressed, round trips */
        fill_value(&r, in, n, 1);
        TU_OK(kv_compress(ty, 1, in, n, &c, &cap, &clen, &used, &err), &err);
        ck_assert_int_eq(used, ty);
        ck_assert_uint_le(clen, n - n / 8);
        TU_OK(kv_decompress(ty, c, clen, n, &d, &dlen, "t", &err), &err);
        ck_assert(dlen == n && !memcmp(d, in, n));
        free(d);
        /* a limit below the real size */
        TU_ST(KV_CORRUPTION, kv_decompress(ty, c, clen, n - 1, &d, &dlen, "t", &err), &err);
        /* truncated input */
        TU_ST(KV_CORRUPTION, kv_decompress(ty, c, clen / 2, n, &d, &dlen, "t", &err), &err);
        TU_ST(KV_CORRUPTION, kv_decompress(ty, c, 0, n, &d, &dlen, "t", &err), &err);
        /* flipped bytes: ok or corruption, never a crash */
        for (int k = 0; k < tu_scale(300); k++) {
            uint8_t *x = copy_bytes(c, clen);
            kv_status st;
            x[tu_randn(&r, clen)] ^= (uint8_t)(1 + tu_randn(&r, 255));
            st = kv_decompress(ty, x, clen, n, &d, &dlen, "t", &err);
            ck_assert(st == KV_OK || st == KV_CORRUPTION);
            if (st == KV_OK) free(d);
            free(x);
        }
        /* random garbage */
        for (int k = 0; k < tu_scale(300); k++) {
            size_t gn = 1 + tu_randn(&r, 64);
            uint8_t *x = malloc(gn);
            kv_status st;
            tu_randbytes(&r, x, gn);
            st = kv_decompress(ty, x, gn, 4096, &d, &dlen, "t", &err);
            ck_assert(st == KV_OK || st == KV_CORRUPTION);
            if (st == KV_OK) free(d);
            free(x);
        }
        /* incompressible: stored raw */
        tu_randbytes(&r, in, n);
        TU_OK(kv_compress(ty, 1, in, n, &c, &cap, &clen, &used, &err), &err);
        ck_assert_int_eq(used, KV_COMPRESS_NONE);
        /* tiny input */
        TU_OK(kv_compress(ty, 1, in, 3, &c, &cap, &clen, &used, &err), &err);
        ck_assert_int_eq(used, KV_COMPRESS_NONE);
    }
    TU_OK(kv_compress(KV_COMPRESS_NONE, 0, in, n, &c, &cap, &clen, &used, &err), &err);
    ck_assert_int_eq(used, KV_COMPRESS_NONE);
    TU_ST(KV_CORRUPTION, kv_decompress((kv_compression)7, in, 10, 100, &d, &dlen, "t", &err),
          &err);
    TU_OK(kv_decompress(KV_COMPRESS_NONE, in, 10, 100, &d, &dlen, "t", &err), &err);
    ck_assert(dlen == 10 && !memcmp(d, in, 10));
    free(d);
    free(c);
    free(in);
}
END_TEST

/* ---- bloom filter ---- */

START_TEST(test_bloom)
{
    tu_rng r;
    size_t n = 20000, len;
    uint64_t *h = malloc(n * sizeof *h);
    uint8_t *f, bad[3] = {0xff, 0xff, 0};
    double fps[] = {0.01, 0.05, 0.001};
    kv_err err;

    ck_assert_int_eq(kv_bloom_bits_per_key(0.01), 10);
    ck_assert_int_eq(kv_bloom_bits_per_key(0.1), 5);
    ck_assert_int_eq(kv_bloom_bits_per_key(0.001), 15);
    ck_assert_int_eq(kv_bloom_bits_per_key(1e-30), 30);
    ck_assert_int_eq(kv_bloom_bits_per_key(0.99), 1);
    tu_rng_init(&r, tu_seed() + 1);
    for (int fi = 0; fi < 3; fi++) {
        long fp = 0, probes = 100000;
        for (size_t i = 0; i < n; i++) h[i] = tu_rand(&r);
        TU_OK(kv_bloom_build(h, n, kv_bloom_bits_per_key(fps[fi]), &f, &len, &err), &err);
        for (size_t i = 0; i < n; i++) ck_assert(kv_bloom_may_contain(f, len, h[i]));
        for (long i = 0; i < probes; i++) fp += kv_bloom_may_contain(f, len, tu_rand(&r));
        ck_assert_msg((double)fp / probes < fps[fi] * 1.6 + 0.0005, "fp rate %f for target %f",
                      (double)fp / probes, fps[fi]);
        free(f);
    }
    /* tiny and empty filters */
    TU_OK(kv_bloom_build(h, 1, 10, &f, &len, &err), &err);
    ck_assert(kv_bloom_may_contain(f, len, h[0]));
    free(f);
    TU_OK(kv_bloom_build(h, 0, 10, &f, &len, &err), &err);
    ck_assert_uint_gt(len, 1);
    free(f);
    /* malformed filters answer "maybe" */
    ck_assert(kv_bloom_may_contain(NULL, 0, 1));
    ck_assert(kv_bloom_may_contain(bad, 1, 1));
    ck_assert(kv_bloom_may_contain(bad, 3, 1)); /* k = 0 */
    bad[2] = 31;
    ck_assert(kv_bloom_may_contain(bad, 3, 1)); /* k too big */
    free(h);
}
END_TEST

/* ---- round trips ---- */

static void roundtrip(int shape, kv_compression c, int block_size, double fp, int compressible)
{
    tu_rng r;
    model m = {0};
    char *dir = tu_mkdtemp("sst");
    char path[4200];
    kv_env *env = kv_env_posix();
    kv_sst_build_opts o = build_opts(12, block_size, c, fp);
    kv_sst_props props;
    kv_sst_read_opts ro = {NULL, 0, 1};
    mapped mp;
    kv_sst *t;
    kv_err err;

    tu_rng_init(&r, tu_seed() * 31 + (uint64_t)shape * 7 + (uint64_t)c);
    gen_model(&r, shape, compressible, &m);
    snprintf(path, sizeof path, "%s/000012.sst", dir);
    build(env, path, &o, &m, &props);
    map_file(env, path, &mp);
    TU_OK(kv_sst_open(mp.p, mp.n, path, 12, KV_VERIFY_ON_TABLE_READ, &t, &err), &err);
    ck_assert_str_eq(kv_sst_path(t), path);
    check_props(t, &m, &props, 12, c, mp.n);
    TU_OK(kv_sst_verify(t, &err), &err);
    check_table(&r, t, &m, &ro);
    ro.verify = 0;
    check_table(&r, t, &m, &ro);

    /* bloom: no false negatives */
    for (size_t i = 0; i < m.n; i++)
        ck_assert(kv_sst_may_contain(t, m.e[i].k, kv_ikey_ulen(m.e[i].kn)));
    if (fp == 0) ck_assert(kv_sst_may_contain(t, (const uint8_t *)"zz-absent", 9));
    kv_sst_close(t);

    /* wrong table id */
    TU_ST(KV_CORRUPTION, kv_sst_open(mp.p, mp.n, path, 13, KV_VERIFY_NONE, &t, &err), &err);
    ck_assert_ptr_nonnull(strstr(err.msg, path));
    unmap_file(&mp);
    model_free(&m);
    tu_rmdir(dir);
    free(dir);
}

START_TEST(test_roundtrip)
{
    static const kv_compression cs[] = {KV_COMPRESS_NONE, KV_COMPRESS_SNAPPY, KV_COMPRESS_ZSTD};
    kv_compression c = cs[_i];

    roundtrip(SHAPE_SMALL, c, 4096, 0.01, 1);
    roundtrip(SHAPE_SMALL, c, 512, 0, 0);
    roundtrip(SHAPE_SMALL, c, 1, 0.01, 1); /* one entry per block */
    roundtrip(SHAPE_BIG, c, 4096, 0.01, 1);
    roundtrip(SHAPE_BIG, c, 64 << 10, 0.01, 0);
    roundtrip(SHAPE_VERSIONS, c, 1024, 0.01, 1);
    roundtrip(SHAPE_ONE, c, 4096, 0.01, 1);
    roundtrip(SHAPE_ONE, c, 4096, 0, 0);
}
END_TEST

START_TEST(test_bloom_table)
{
    tu_rng r;
    model m = {0};
    char *dir = tu_mkdtemp("sstbloom");
    char path[4200];
    uint8_t uk[64];
    kv_env *env = kv_env_posix();
    kv_sst_build_opts o = build_opts(3, 4096, KV_COMPRESS_SNAPPY, 0.01);
    kv_sst_props props;
    mapped mp;
    kv_sst *t;
    kv_err err;
    long fp = 0, probes = 50000;

    tu_rng_init(&r, tu_seed() + 5);
    gen_model(&r, SHAPE_BLOOMTEST, 1, &m);
    snprintf(path, sizeof path, "%s/000003.sst", dir);
    build(env, path, &o, &m, &props);
    map_file(env, path, &mp);
    TU_OK(kv_sst_open(mp.p, mp.n, path, 0, KV_VERIFY_NONE, &t, &err), &err);
    for (size_t i = 0; i < m.n; i++)
        ck_assert(kv_sst_may_contain(t, m.e[i].k, kv_ikey_ulen(m.e[i].kn)));
    for (long i = 0; i < probes; i++) {
        /* keys the generator never makes: a different prefix */
        int n = snprintf((char *)uk, sizeof uk, "absent:%08u", (unsigned)tu_rand(&r));
        fp += kv_sst_may_contain(t, uk, (size_t)n);
    }
    ck_assert_msg((double)fp / probes < 0.02, "false-positive rate %f", (double)fp / probes);
    kv_sst_close(t);
    unmap_file(&mp);
    model_free(&m);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

/* Compressible data is compressed; incompressible blocks are stored raw and
 * read in place. */
START_TEST(test_compression_pays)
{
    tu_rng r;
    model m = {0}, rnd = {0};
    char *dir = tu_mkdtemp("sstcomp");
    char path[4200];
    kv_env *env = kv_env_posix();
    uint64_t sizes[3];
    kv_sst_props props;
    kv_sst_read_opts ro = {NULL, 1, 1};
    mapped mp;
    kv_sst *t;
    kv_err err;

    tu_rng_init(&r, tu_seed() + 9);
    gen_model(&r, SHAPE_SMALL, 1, &m);
    for (int c = 0; c < 3; c++) {
        kv_sst_build_opts o = build_opts(1, 4096, (kv_compression)c, 0.01);
        snprintf(path, sizeof path, "%s/c%d.sst", dir, c);
        build(env, path, &o, &m, &props);
        sizes[c] = props.file_size;
    }
    ck_assert_uint_lt(sizes[1], sizes[0] * 9 / 10);
    ck_assert_uint_lt(sizes[2], sizes[0] * 9 / 10);

    /* incompressible: random values big enough to dominate blocks */
    for (int i = 0; i < 300; i++) {
        uint8_t k[32], v[1200], raw[1000];
        size_t kn, vn;
        snprintf((char *)k, sizeof k, "k%06d", i);
        kn = make_ikey(k, k, 7, 5);
        tu_randbytes(&r, raw, sizeof raw);
        vn = kv_vstruct_encode(v, 0, 0, 0, raw, sizeof raw);
        model_add(&rnd, k, kn, v, vn);
    }
    for (int c = 1; c < 3; c++) {
        kv_sst_build_opts o = build_opts(2, 4096, (kv_compression)c, 0.01);
        snprintf(path, sizeof path, "%s/r%d.sst", dir, c);
        build(env, path, &o, &rnd, &props);
        map_file(env, path, &mp);
        TU_OK(kv_sst_open(mp.p, mp.n, path, 2, KV_VERIFY_NONE, &t, &err), &err);
        for (uint32_t b = 0; b < kv_sst_num_blocks(t); b++) {
            kv_block_ref ref;
            TU_OK(kv_sst_read_block(t, b, &ro, &ref, &err), &err);
            ck_assert_ptr_null(ref.owned);
            ck_assert_ptr_null(ref.pin);
            ck_assert(ref.data >= mp.p && ref.data + ref.len <= mp.p + mp.n);
            kv_block_ref_release(&ref);
        }
        check_table(&r, t, &rnd, &ro);
        kv_sst_close(t);
        unmap_file(&mp);
    }
    model_free(&m);
    model_free(&rnd);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

/* ---- block cache hook ---- */

typedef struct tcache_ent {
    uint64_t id, off;
    uint8_t *data;
    size_t len;
    int refs;
} tcache_ent;

typedef struct tcache {
    tcache_ent e[512];
    int n;
    int accept;
    int garbage; /* lookups return a malformed block */
    long lookups, hits, inserts, releases;
    uint8_t junk[3];
} tcache;

static const uint8_t *tc_lookup(void *ctx, uint64_t id, uint64_t off, size_t *len, void **pin)
{
    tcache *c = ctx;
    c->lookups++;
    if (c->garbage) {
        *len = sizeof c->junk;
        *pin = NULL;
        return c->junk;
    }
    for (int i = 0; i < c->n; i++)
        if (c->e[i].id == id && c->e[i].off == off) {
            c->hits++;
            c->e[i].refs++;
            *len = c->e[i].len;
            *pin = &c->e[i];
            return c->e[i].data;
        }
    return NULL;
}

static const uint8_t *tc_insert(void *ctx, uint64_t id, uint64_t off, const uint8_t *data,
                                size_t len, void **pin)
{
    tcache *c = ctx;
    tcache_ent *e;
    if (!c->accept || c->n == 512) return NULL;
    c->inserts++;
    e = &c->e[c->n++];
    e->id = id;
    e->off = off;
    e->data = copy_bytes(data, len);
    e->len = len;
    e->refs = 1; /* the pin returned */
    *pin = e;
    return e->data;
}

static void tc_release(void *ctx, void *pin)
{
    tcache *c = ctx;
    tcache_ent *e = pin;
    c->releases++;
    ck_assert_int_gt(e->refs, 0);
    e->refs--;
}

START_TEST(test_block_cache)
{
    tu_rng r;
    model m = {0};
    char *dir = tu_mkdtemp("sstcache");
    char path[4200];
    kv_env *env = kv_env_posix();
    kv_sst_build_opts o = build_opts(44, 2048, KV_COMPRESS_SNAPPY, 0.01);
    kv_sst_props props;
    tcache *c = calloc(1, sizeof *c);
    kv_block_cache_ops ops = {c, tc_lookup, tc_insert, tc_release};
    kv_sst_read_opts ro = {&ops, 1, 0};
    kv_block_ref ref;
    kv_sst_iter it;
    mapped mp;
    kv_sst *t;
    kv_err err;
    int compressed[512] = {0}, ncomp = 0;
    uint32_t nb;

    tu_rng_init(&r, tu_seed() + 17);
    /* text keys and values: every block compresses */
    for (int i = 0; i < 3000; i++) {
        uint8_t k[40], v[200], vs[220];
        int kn = snprintf((char *)k, 30, "cache:%08d", i * 3);
        size_t vn = 40 + tu_randn(&r, 80);
        fill_value(&r, v, vn, 1);
        vn = kv_vstruct_encode(vs, 0, 0, 0, v, vn);
        model_add(&m, k, make_ikey(k, k, (size_t)kn, 1 + tu_randn(&r, 100)), vs, vn);
    }
    snprintf(path, sizeof path, "%s/000044.sst", dir);
    build(env, path, &o, &m, &props);
    map_file(env, path, &mp);
    TU_OK(kv_sst_open(mp.p, mp.n, path, 44, KV_VERIFY_NONE, &t, &err), &err);
    nb = kv_sst_num_blocks(t);
    ck_assert_uint_gt(nb, 3);
    ck_assert_uint_lt(nb, 512);

    /* no fill: lookups only, private copies */
    ro.fill_cache = 0;
    c->accept = 1;
    TU_OK(kv_sst_read_block(t, 0, &ro, &ref, &err), &err);
    ck_assert_ptr_nonnull(ref.owned);
    ck_assert_ptr_null(ref.pin);
    kv_block_ref_release(&ref);
    ck_assert_int_eq(c->inserts, 0);
    ck_assert_int_eq(c->lookups, 1);

    /* refused inserts: private copies */
    ro.fill_cache = 1;
    c->accept = 0;
    TU_OK(kv_sst_read_block(t, 1, &ro, &ref, &err), &err);
    ck_assert_ptr_nonnull(ref.owned);
    kv_block_ref_release(&ref);
    ck_assert_int_eq(c->inserts, 0);

    /* which blocks are compressed (read into a private copy): only those
     * are cached; a block that compression did not shrink enough (the
     * last, short one can be such, depending on the seed) is read in
     * place */
    ro.fill_cache = 0;
    for (uint32_t b = 0; b < nb; b++) {
        TU_OK(kv_sst_read_block(t, b, &ro, &ref, &err), &err);
        compressed[b] = ref.owned != NULL;
        ncomp += compressed[b];
        kv_block_ref_release(&ref);
    }
    ck_assert_int_ge(ncomp, (int)nb - 1);
    ro.fill_cache = 1;

    /* fill: every compressed block inserted once, then served from the cache */
    c->accept = 1;
    c->lookups = 0;
    check_table(&r, t, &m, &ro);
    ck_assert_int_eq(c->inserts, ncomp);
    ck_assert_int_gt(c->hits, 0);
    for (uint32_t b = 0; b < nb; b++) {
        long hits = c->hits;
        if (!compressed[b]) continue;
        TU_OK(kv_sst_read_block(t, b, &ro, &ref, &err), &err);
        ck_assert_int_eq(c->hits, hits + 1);
        ck_assert_ptr_null(ref.owned);
        ck_assert_ptr_nonnull(ref.pin);
        ck_assert_ptr_eq(ref.data, ((tcache_ent *)ref.pin)->data);
        ck_assert_int_eq(((tcache_ent *)ref.pin)->refs, 1);
        kv_block_ref_release(&ref);
    }
    ck_assert_int_eq(c->inserts, ncomp);
    /* every pin released */
    for (int i = 0; i < c->n; i++) ck_assert_int_eq(c->e[i].refs, 0);

    /* an iterator holds at most one pin, and releases it when done */
    kv_sst_iter_init(&it, t, &ro);
    kv_sst_iter_seek(&it, m.e[m.n / 2].k, m.e[m.n / 2].kn);
    expect_at(&it, &m, m.n / 2, "cached seek");
    ck_assert_int_eq(c->e[((tcache_ent *)it.ref.pin) - c->e].refs, 1);
    kv_sst_iter_done(&it);
    for (int i = 0; i < c->n; i++) ck_assert_int_eq(c->e[i].refs, 0);

    /* a cache that returns a malformed block: corruption, no crash */
    c->garbage = 1;
    TU_ST(KV_CORRUPTION, kv_sst_read_block(t, 0, &ro, &ref, &err), &err);
    kv_sst_iter_init(&it, t, &ro);
    kv_sst_iter_first(&it);
    ck_assert(!it.valid);
    ck_assert_int_eq(it.status, KV_CORRUPTION);
    kv_sst_iter_next(&it);
    kv_sst_iter_seek(&it, m.e[0].k, m.e[0].kn);
    ck_assert(!it.valid);
    kv_sst_iter_done(&it);

    kv_sst_close(t);
    unmap_file(&mp);
    for (int i = 0; i < c->n; i++) free(c->e[i].data);
    free(c);
    model_free(&m);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

/* ---- corruption ---- */

typedef struct table_bytes {
    uint8_t *p;
    size_t n;
    model m;
    uint64_t io, is, bo, bs, po, ps;
} table_bytes;

static void make_table_bytes(tu_rng *r, kv_compression c, int shape, table_bytes *tb)
{
    char *dir = tu_mkdtemp("sstcorrupt");
    char path[4200];
    kv_env *env = kv_env_posix();
    kv_sst_build_opts o = build_opts(7, 1024, c, 0.01);
    kv_sst_props props;
    kv_err err;
    const uint8_t *ft;

    memset(tb, 0, sizeof *tb);
    gen_model(r, shape, 1, &tb->m);
    snprintf(path, sizeof path, "%s/000007.sst", dir);
    build(env, path, &o, &tb->m, &props);
    TU_OK(kv_env_read_file(env, path, &tb->p, &tb->n, &err), &err);
    ft = tb->p + tb->n - SST_FOOTER_SIZE;
    tb->io = kv_get_u64(ft + SST_FT_INDEX_OFF);
    tb->is = kv_get_u64(ft + SST_FT_INDEX_SIZE);
    tb->bo = kv_get_u64(ft + SST_FT_BLOOM_OFF);
    tb->bs = kv_get_u64(ft + SST_FT_BLOOM_SIZE);
    tb->po = kv_get_u64(ft + SST_FT_PROPS_OFF);
    tb->ps = kv_get_u64(ft + SST_FT_PROPS_SIZE);
    ck_assert_uint_gt(tb->bs, 0);
    tu_rmdir(dir);
    free(dir);
}

static void free_table_bytes(table_bytes *tb)
{
    free(tb->p);
    model_free(&tb->m);
}

/* Exercises a table that opened: full scans both ways and seeks, with and
 * without block verification.  Returns the first non-OK status seen. */
static kv_status exercise(tu_rng *r, const kv_sst *t, const model *m, int verify)
{
    kv_sst_read_opts ro = {NULL, 0, verify};
    kv_sst_iter it;
    kv_status st = KV_OK;
    uint8_t target[256];
    long n = 0;

    kv_sst_iter_init(&it, t, &ro);
    for (kv_sst_iter_first(&it); it.valid && n < 100000; kv_sst_iter_next(&it)) n++;
    if (it.status != KV_OK) st = it.status;
    ck_assert(it.status == KV_OK || it.status == KV_CORRUPTION);
    kv_sst_iter_done(&it);
    kv_sst_iter_init(&it, t, &ro);
    for (kv_sst_iter_last(&it); it.valid && n < 200000; kv_sst_iter_prev(&it)) n++;
    if (st == KV_OK) st = it.status;
    ck_assert(it.status == KV_OK || it.status == KV_CORRUPTION);
    kv_sst_iter_done(&it);
    for (int i = 0; i < 20; i++) {
        const ent *e = &m->e[tu_randn(r, m->n)];
        size_t tn = e->kn < sizeof target ? e->kn : 0;
        if (!tn) continue;
        memcpy(target, e->k, tn);
        kv_sst_iter_init(&it, t, &ro);
        if (i & 1)
            kv_sst_iter_seek(&it, target, tn);
        else
            kv_sst_iter_seek_for_prev(&it, target, tn);
        if (it.valid) kv_sst_iter_next(&it);
        if (it.valid) kv_sst_iter_prev(&it);
        if (st == KV_OK) st = it.status;
        ck_assert(it.status == KV_OK || it.status == KV_CORRUPTION);
        kv_sst_iter_done(&it);
    }
    return st;
}

/* The number of damage trials.  They run in one thread, where
 * ThreadSanitizer has nothing to find and makes them some 50 times slower
 * (over a minute for one loop, near the test timeout): a tenth of them
 * there; release and ASan builds run them all. */
static long damage_trials(long n)
{
#if defined(__SANITIZE_THREAD__)
    n /= 10;
#endif
    return tu_scale(n);
}

START_TEST(test_flipped_bytes)
{
    static const kv_compression cs[] = {KV_COMPRESS_NONE, KV_COMPRESS_SNAPPY, KV_COMPRESS_ZSTD};
    tu_rng r;
    table_bytes tb;
    long trials = damage_trials(300);

    tu_rng_init(&r, tu_seed() + 23 + (uint64_t)_i);
    make_table_bytes(&r, cs[_i], SHAPE_MEDIUM, &tb);
    for (int region = 0; region < 5; region++) {
        uint64_t lo, hi;
        switch (region) {
        case 0:
            lo = 0, hi = tb.io;
            break; /* data blocks */
        case 1:
            lo = tb.io, hi = tb.io + tb.is;
            break; /* index */
        case 2:
            lo = tb.bo, hi = tb.bo + tb.bs;
            break; /* bloom */
        case 3:
            lo = tb.po, hi = tb.po + tb.ps;
            break; /* properties */
        default:
            lo = tb.n - SST_FOOTER_SIZE, hi = tb.n;
            break;
        }
        for (long k = 0; k < trials; k++) {
            uint8_t *x = copy_bytes(tb.p, tb.n);
            uint64_t at = lo + tu_randn(&r, hi - lo);
            kv_sst *t;
            kv_err err;
            kv_status st;

            x[at] ^= (uint8_t)(1 + tu_randn(&r, 255));
            st = kv_sst_open(x, tb.n, "/x/000007.sst", 7, KV_VERIFY_NONE, &t, &err);
            if (st != KV_OK) {
                TU_ST(KV_CORRUPTION, st, &err);
                ck_assert_ptr_nonnull(strstr(err.msg, "table \"/x/000007.sst\""));
                ck_assert_ptr_nonnull(strstr(err.msg, "at offset"));
                free(x);
                continue;
            }
            /* every byte outside the data blocks is covered at open */
            ck_assert_msg(region == 0, "flip at %llu (region %d) not detected at open",
                          (unsigned long long)at, region);
            exercise(&r, t, &tb.m, 0);
            memset(&err, 0, sizeof err);
            TU_ST(KV_CORRUPTION, exercise(&r, t, &tb.m, 1), &err);
            TU_ST(KV_CORRUPTION, kv_sst_verify(t, &err), &err);
            ck_assert_ptr_nonnull(strstr(err.msg, "at offset"));
            kv_sst_close(t);
            TU_ST(KV_CORRUPTION,
                  kv_sst_open(x, tb.n, "/x/000007.sst", 7, KV_VERIFY_ON_TABLE_READ, &t, &err),
                  &err);
            free(x);
        }
    }
    free_table_bytes(&tb);
}
END_TEST

/* Random damage with the checksums recomputed, so that only the structure
 * checks stand between the bytes and the reader. */
START_TEST(test_damage_past_checksums)
{
    static const kv_compression cs[] = {KV_COMPRESS_NONE, KV_COMPRESS_SNAPPY, KV_COMPRESS_ZSTD};
    tu_rng r;
    table_bytes tb;
    long trials = damage_trials(400);

    tu_rng_init(&r, tu_seed() + 29 + (uint64_t)_i);
    make_table_bytes(&r, cs[_i], _i == 0 ? SHAPE_BIG : SHAPE_MEDIUM, &tb);
    for (long k = 0; k < trials; k++) {
        uint8_t *x = copy_bytes(tb.p, tb.n);
        kv_sst *t;
        kv_err err;
        kv_status st;
        int nflips = 1 + (int)tu_randn(&r, 4);

        if (k % 4 == 3) {
            /* the index, with its checksum fixed */
            for (int f = 0; f < nflips; f++)
                x[tb.io + tu_randn(&r, tb.is - SST_CKSUM_SIZE)] = (uint8_t)tu_rand(&r);
            kv_put_u64(x + tb.io + tb.is - SST_CKSUM_SIZE,
                       kv_checksum64(x + tb.io, tb.is - SST_CKSUM_SIZE));
        } else {
            /* one block, with its checksum fixed */
            const uint8_t *ie = tb.p + tb.io;
            uint32_t nb = kv_get_u32(tb.p + tb.n - SST_FOOTER_SIZE + SST_FT_NUM_BLOCKS);
            uint32_t b = (uint32_t)tu_randn(&r, nb);
            uint64_t off = kv_get_u64(ie + (size_t)b * SST_INDEX_ENTRY + SST_IX_OFF);
            uint32_t sz = kv_get_u32(ie + (size_t)b * SST_INDEX_ENTRY + SST_IX_SIZE);
            size_t plen = sz - SST_BLOCK_TRAILER;
            for (int f = 0; f < nflips; f++) {
                /* bias towards the structure: the tail (offsets, count) and the start */
                uint64_t where = tu_randn(&r, 3);
                size_t at = where == 0   ? plen - 1 - tu_randn(&r, plen < 64 ? plen : 64)
                            : where == 1 ? tu_randn(&r, plen < 16 ? plen : 16)
                                         : tu_randn(&r, plen + 1);
                x[off + at] = (uint8_t)tu_rand(&r);
            }
            kv_put_u64(x + off + plen + 1, kv_checksum64(x + off, plen + 1));
        }
        st = kv_sst_open(x, tb.n, "t.sst", 7, KV_VERIFY_NONE, &t, &err);
        if (st == KV_OK) {
            exercise(&r, t, &tb.m, 0);
            exercise(&r, t, &tb.m, 1);
            st = kv_sst_verify(t, &err);
            ck_assert(st == KV_OK || st == KV_CORRUPTION);
            kv_sst_close(t);
        } else {
            TU_ST(KV_CORRUPTION, st, &err);
        }
        free(x);
    }
    free_table_bytes(&tb);
}
END_TEST

/* Specific malformed blocks, checksums fixed: each one must be reported. */
START_TEST(test_malformed_blocks)
{
    tu_rng r;
    table_bytes tb;
    const uint8_t *ie;
    uint64_t off;
    size_t plen;

    tu_rng_init(&r, tu_seed() + 31);
    make_table_bytes(&r, KV_COMPRESS_NONE, SHAPE_MEDIUM, &tb);
    ie = tb.p + tb.io + SST_INDEX_ENTRY; /* block 1 */
    off = kv_get_u64(ie + SST_IX_OFF);
    plen = kv_get_u32(ie + SST_IX_SIZE) - SST_BLOCK_TRAILER;
    for (int kind = 0; kind < 9; kind++) {
        uint8_t *x = copy_bytes(tb.p, tb.n), *blk = x + off;
        uint32_t count = kv_get_u32(blk + plen - 4);
        uint8_t *offs = blk + plen - 4 - (size_t)count * 4;
        uint32_t o1 = kv_get_u32(offs + 4);
        int lazy = 0; /* only found when the entry is decoded */
        kv_sst *t;
        kv_err err;
        kv_block_ref ref;
        kv_sst_read_opts ro = {NULL, 0, 0};

        ck_assert_uint_ge(count, 3);

        switch (kind) {
        case 0:
            kv_put_u32(blk + plen - 4, 0xffffffffu);
            break; /* huge count */
        case 1:
            kv_put_u32(blk + plen - 4, 0);
            break; /* no entries */
        case 2:
            kv_put_u32(blk + plen - 4, count + 1);
            break; /* count != index */
        case 3:
            kv_put_u32(offs, 1);
            break; /* first offset */
        case 4:
            kv_put_u16(blk, 1);
            break; /* first overlap */
        case 5:
            kv_put_u16(blk + 2, 0xffff);
            break; /* first diff_len */
        case 6:
            kv_put_u16(blk + o1, 0xffff), lazy = 1;
            break; /* overlap > base */
        case 7:
            kv_put_u32(offs + 8, (uint32_t)plen), lazy = 1;
            break; /* offset past end */
        default:
            kv_put_u16(blk + o1 + 2, 0xfff0), lazy = 1;
            break; /* diff too long */
        }
        kv_put_u64(blk + plen + 1, kv_checksum64(blk, plen + 1));
        TU_OK(kv_sst_open(x, tb.n, "m.sst", 7, KV_VERIFY_NONE, &t, &err), &err);
        if (!lazy) {
            TU_ST(KV_CORRUPTION, kv_sst_read_block(t, 1, &ro, &ref, &err), &err);
        } else {
            kv_sst_iter it;
            TU_OK(kv_sst_read_block(t, 1, &ro, &ref, &err), &err);
            kv_block_ref_release(&ref);
            /* walking into entry 1 of block 1 fails */
            kv_sst_iter_init(&it, t, &ro);
            for (kv_sst_iter_first(&it); it.valid; kv_sst_iter_next(&it)) {
            }
            ck_assert_int_eq(it.status, KV_CORRUPTION);
            ck_assert_ptr_nonnull(strstr(it.err.msg, "bad entry"));
            kv_sst_iter_done(&it);
            ro.verify = 1;
            TU_ST(KV_CORRUPTION, kv_sst_read_block(t, 1, &ro, &ref, &err), &err);
        }
        TU_ST(KV_CORRUPTION, kv_sst_verify(t, &err), &err);
        kv_sst_close(t);
        free(x);
    }
    free_table_bytes(&tb);
}
END_TEST

START_TEST(test_truncated)
{
    tu_rng r;
    table_bytes tb;
    size_t lens = 0;
    uint8_t *x;
    kv_sst *t;
    kv_err err;

    tu_rng_init(&r, tu_seed() + 37);
    make_table_bytes(&r, KV_COMPRESS_SNAPPY, SHAPE_MEDIUM, &tb);
    for (size_t len = 0; len < tb.n; len++) {
        /* every length near the end and at the start, a sample elsewhere */
        if (len > 300 && len + 400 < tb.n && tu_randn(&r, 50) != 0) continue;
        x = copy_bytes(tb.p, len);
        TU_ST(KV_CORRUPTION, kv_sst_open(x, len, "tr.sst", 0, KV_VERIFY_NONE, &t, &err), &err);
        free(x);
        lens++;
    }
    ck_assert_uint_gt(lens, 700);
    /* trailing garbage */
    x = malloc(tb.n + 100);
    memcpy(x, tb.p, tb.n);
    memset(x + tb.n, 0, 100);
    TU_ST(KV_CORRUPTION, kv_sst_open(x, tb.n + 100, "tr.sst", 0, KV_VERIFY_NONE, &t, &err),
          &err);
    /* the intact table still opens */
    TU_OK(kv_sst_open(x, tb.n, "tr.sst", 0, KV_VERIFY_ON_TABLE_READ, &t, &err), &err);
    kv_sst_close(t);
    free(x);
    free_table_bytes(&tb);
}
END_TEST

/* ---- builder errors ---- */

static size_t fill_builder(kv_sst_builder *b, size_t n, kv_status *st, kv_err *err)
{
    uint8_t k[32], v[600];
    size_t i;

    *st = KV_OK;
    memset(v, 'v', sizeof v);
    for (i = 0; i < n && *st == KV_OK; i++) {
        size_t kn;
        snprintf((char *)k, sizeof k, "key%08zu", i);
        kn = make_ikey(k, k, 11, 9);
        *st = kv_sst_builder_add(b, k, kn, v, sizeof v, err);
    }
    return i;
}

START_TEST(test_builder_errors)
{
    char *dir = tu_mkdtemp("sstfault");
    char path[4200];
    kv_env *fenv = kv_env_fault_new(NULL), *penv = kv_env_posix();
    kv_sst_build_opts o = build_opts(5, 4096, KV_COMPRESS_NONE, 0.01);
    kv_sst_builder *b;
    kv_status st;
    kv_err err;
    uint8_t k[32];

    snprintf(path, sizeof path, "%s/000005.sst", dir);

    /* write fails while adding (past the first chunk) */
    kv_env_fault_set(fenv, KV_FAULT_WRITE, 0, EIO, NULL);
    TU_OK(kv_sst_builder_new(fenv, path, &o, &b, &err), &err);
    fill_builder(b, 5000, &st, &err);
    TU_ST(KV_IO, st, &err);
    ck_assert_int_eq(err.sys_errno, EIO);
    ck_assert(!penv->exists(penv, path));
    TU_ST(KV_IO, kv_sst_builder_finish(b, NULL, &err), &err);
    kv_sst_builder_free(b);
    ck_assert(!penv->exists(penv, path));

    /* write fails at finish */
    TU_OK(kv_sst_builder_new(fenv, path, &o, &b, &err), &err);
    fill_builder(b, 10, &st, &err);
    TU_OK(st, &err);
    TU_ST(KV_IO, kv_sst_builder_finish(b, NULL, &err), &err);
    kv_sst_builder_free(b);
    ck_assert(!penv->exists(penv, path));

    /* a later chunk fails */
    kv_env_fault_set(fenv, KV_FAULT_WRITE, 1, ENOSPC, NULL);
    TU_OK(kv_sst_builder_new(fenv, path, &o, &b, &err), &err);
    fill_builder(b, 5000, &st, &err);
    if (st == KV_OK) st = kv_sst_builder_finish(b, NULL, &err);
    TU_ST(KV_NO_SPACE, st, &err);
    kv_sst_builder_free(b);
    ck_assert(!penv->exists(penv, path));
    kv_env_fault_set(fenv, KV_FAULT_WRITE, -1, 0, NULL);

    /* sync fails */
    o.sync = 1;
    kv_env_fault_set(fenv, KV_FAULT_SYNC, 0, EIO, NULL);
    TU_OK(kv_sst_builder_new(fenv, path, &o, &b, &err), &err);
    fill_builder(b, 10, &st, &err);
    TU_ST(KV_IO, kv_sst_builder_finish(b, NULL, &err), &err);
    kv_sst_builder_free(b);
    ck_assert(!penv->exists(penv, path));
    kv_env_fault_set(fenv, KV_FAULT_SYNC, -1, 0, NULL);

    /* an unfinished builder removes its file */
    TU_OK(kv_sst_builder_new(fenv, path, &o, &b, &err), &err);
    fill_builder(b, 10, &st, &err);
    ck_assert(penv->exists(penv, path));
    kv_sst_builder_free(b);
    ck_assert(!penv->exists(penv, path));

    /* bad input */
    TU_OK(kv_sst_builder_new(penv, path, &o, &b, &err), &err);
    TU_ST(KV_INVALID, kv_sst_builder_finish(b, NULL, &err), &err); /* no entries */
    fill_builder(b, 10, &st, &err);
    make_ikey(k, (const uint8_t *)"aaa", 3, 1);
    TU_ST(KV_INVALID, kv_sst_builder_add(b, k, 11, k, 1, &err), &err); /* out of order */
    TU_ST(KV_INVALID, kv_sst_builder_add(b, k, 5, k, 1, &err), &err);  /* too short */
    /* the same key again */
    snprintf((char *)k, sizeof k, "key%08zu", (size_t)9);
    make_ikey(k, k, 11, 9);
    TU_ST(KV_INVALID, kv_sst_builder_add(b, k, 19, k, 1, &err), &err);
    TU_OK(kv_sst_builder_finish(b, NULL, &err), &err);
    TU_ST(KV_INVALID, kv_sst_builder_finish(b, NULL, &err), &err);
    kv_sst_builder_free(b);
    ck_assert(penv->exists(penv, path));
    /* the file exists: a second builder must not clobber it */
    ck_assert_int_ne(kv_sst_builder_new(penv, path, &o, &b, &err), KV_OK);
    ck_assert(penv->exists(penv, path));
    o.block_size = 0;
    TU_ST(KV_INVALID, kv_sst_builder_new(penv, path, &o, &b, &err), &err);
    o.block_size = 4096;
    o.compression = (kv_compression)9;
    TU_ST(KV_INVALID, kv_sst_builder_new(penv, path, &o, &b, &err), &err);

    kv_env_fault_free(fenv);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

static TCase *tcase(Suite *s, const char *name)
{
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    return tc;
}

static Suite *sst_suite(void)
{
    Suite *s = suite_create("sst");
    TCase *tc;

    tc = tcase(s, "codecs");
    tcase_add_test(tc, test_compress);
    tcase_add_test(tc, test_bloom);
    tc = tcase(s, "roundtrip");
    tcase_add_loop_test(tc, test_roundtrip, 0, 3);
    tcase_add_test(tc, test_bloom_table);
    tcase_add_test(tc, test_compression_pays);
    tcase_add_test(tc, test_block_cache);
    tc = tcase(s, "corruption");
    tcase_add_loop_test(tc, test_flipped_bytes, 0, 3);
    tcase_add_loop_test(tc, test_damage_past_checksums, 0, 3);
    tcase_add_test(tc, test_malformed_blocks);
    tcase_add_test(tc, test_truncated);
    tc = tcase(s, "builder");
    tcase_add_test(tc, test_builder_errors);
    return s;
}

int main(void)
{
    return tu_run(sst_suite());
}
