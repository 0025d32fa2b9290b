/*
 * fuzz_sst.c - libFuzzer target for the SSTable reader (sst_reader.c) and,
 * through round trips, the builder (sst_builder.c).
 *
 * Input: one mode byte m, then the rest r.
 *
 *   m & 1 == 0   r is a whole table image (copied to a buffer of exactly
 *                its size); with m & 2, every checksum is re-sealed first
 *                (fuzz_table.h), so damage reaches the structure checks.
 *   m & 1 == 1   build: r = block-size byte, compression byte, flags byte
 *                (1 bloom filter, 2 re-seal after mutating), mutation count
 *                c, then c mutations (u16 position, u8 xor mask), then
 *                entries, each: u8 h (user key length 1 + h % 32, kind
 *                (h >> 5) % 3: put, tombstone, value pointer), the key,
 *                u8 version, u8 value length, the value.  The entries are
 *                sorted and built into a table with kv_sst_builder in the
 *                in-memory env.  Without mutations the table must read
 *                back exactly (entries, properties, bloom filter, seeks);
 *                with them, the mutated image is exercised like any other.
 *
 * Each image is opened in the checksum modes whose bits (1 << mode) are set
 * in (m >> 2) & 15 (0: KV_VERIFY_NONE and KV_VERIFY_ON_TABLE_AND_BLOCK_READ,
 * which between them take every path of the other two at half the cost),
 * then verified, read block by block (with the toy block cache in the odd
 * modes), iterated both ways and probed with seeks and bloom lookups
 * (fz_exercise in fuzz_table.h).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "env.h"
#include "fuzz_table.h"

#define MAX_ENTRIES 2000
#define TABLE_ID    5
#define MEM_PATH    "/fuzz/000005.sst"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct fent {
    uint8_t k[40];
    size_t kn;
    uint8_t v[300];
    size_t vn;
} fent;

static int fent_cmp(const void *a, const void *b)
{
    const fent *x = a, *y = b;
    return kv_ikey_cmp(x->k, x->kn, y->k, y->kn);
}

/* Parses entries from p[0, n) into a sorted array without duplicate
 * internal keys; returns the count. */
static size_t parse_entries(const uint8_t *p, size_t n, fent *out)
{
    size_t pos = 0, cnt = 0, w = 0;

    while (pos < n && cnt < MAX_ENTRIES) {
        uint8_t h = p[pos++], kind = (uint8_t)((h >> 5) % 3), ver, vlen;
        size_t kl = 1 + h % 32;
        uint8_t val[256];
        fent *e = &out[cnt];
        if (n - pos < kl + 2) break;
        memcpy(e->k, p + pos, kl);
        pos += kl;
        ver = p[pos++];
        vlen = p[pos++];
        if (vlen > n - pos) vlen = (uint8_t)(n - pos);
        memcpy(val, p + pos, vlen);
        pos += vlen;
        kv_ikey_put_ts(e->k + kl, 1 + (uint64_t)ver * 3);
        e->kn = kl + KV_TS_SIZE;
        if (kind == 1)
            e->vn = kv_vstruct_encode(e->v, KV_META_DELETE, ver, 0, NULL, 0);
        else
            e->vn = kv_vstruct_encode(e->v, kind == 2 ? KV_META_VALUE_PTR : 0, ver, vlen, val,
                                      vlen);
        cnt++;
    }
    if (cnt == 0) return 0;
    qsort(out, cnt, sizeof *out, fent_cmp);
    for (size_t i = 0; i < cnt; i++)
        if (w == 0 || fent_cmp(&out[w - 1], &out[i]) != 0) out[w++] = out[i];
    return w;
}

/* Index of the first entry >= k (cnt if none). */
static size_t model_lower(const fent *ents, size_t cnt, const uint8_t *k, size_t kn)
{
    size_t lo = 0, hi = cnt;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (kv_ikey_cmp(ents[mid].k, ents[mid].kn, k, kn) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Seeks both ways to k and compares with the model. */
static void model_seek(const kv_sst *t, const fent *ents, size_t cnt, const uint8_t *k,
                       size_t kn)
{
    size_t lo = model_lower(ents, cnt, k, kn);
    int exact = lo < cnt && kv_ikey_cmp(ents[lo].k, ents[lo].kn, k, kn) == 0;
    size_t le = exact ? lo + 1 : lo; /* entries [0, le) are <= k */
    kv_sst_iter it;

    kv_sst_iter_init(&it, t, NULL);
    kv_sst_iter_seek(&it, k, kn);
    FZ_CHECK(it.status == KV_OK);
    if (lo == cnt) {
        FZ_CHECK(!it.valid);
    } else {
        FZ_CHECK(it.valid && it.key_len == ents[lo].kn &&
                 memcmp(it.key, ents[lo].k, it.key_len) == 0);
    }
    kv_sst_iter_seek_for_prev(&it, k, kn);
    FZ_CHECK(it.status == KV_OK);
    if (le == 0) {
        FZ_CHECK(!it.valid);
    } else {
        const fent *e = &ents[le - 1];
        FZ_CHECK(it.valid && it.key_len == e->kn && memcmp(it.key, e->k, it.key_len) == 0);
    }
    kv_sst_iter_done(&it);
}

/* Seek targets around entry e: other versions, a prefix of the user key,
 * the user key extended by a byte. */
static void model_seeks(const kv_sst *t, const fent *ents, size_t cnt, const fent *e)
{
    uint8_t k[64];
    size_t ul = kv_ikey_ulen(e->kn);
    uint64_t v = kv_ikey_version(e->k, e->kn);
    const uint64_t vers[4] = {v + 1, v - 1, 0, UINT64_MAX};

    for (int i = 0; i < 4; i++) {
        memcpy(k, e->k, ul);
        kv_ikey_put_ts(k + ul, vers[i]);
        model_seek(t, ents, cnt, k, ul + KV_TS_SIZE);
    }
    for (size_t cut = ul > 3 ? ul - 3 : 1; cut < ul; cut++) {
        kv_ikey_put_ts(k + cut, v);
        memcpy(k, e->k, cut);
        model_seek(t, ents, cnt, k, cut + KV_TS_SIZE);
    }
    for (int x = 0; x < 2; x++) {
        memcpy(k, e->k, ul);
        k[ul] = x ? 0xff : 0x00;
        kv_ikey_put_ts(k + ul + 1, v);
        model_seek(t, ents, cnt, k, ul + 1 + KV_TS_SIZE);
    }
}

/* A table built from unmodified entries reads back exactly. */
static void check_round_trip(const uint8_t *img, size_t n, const fent *ents, size_t cnt,
                             int bloom)
{
    kv_sst *t;
    kv_sst_iter it;
    kv_err err;
    size_t i = 0, kn;
    const uint8_t *k;
    const kv_sst_props *pr;

    FZ_CHECK(kv_sst_open(img, n, FZ_PATH, TABLE_ID, KV_VERIFY_ON_TABLE_READ, &t, &err) ==
             KV_OK);
    kv_sst_close(t);
    FZ_CHECK(kv_sst_open(img, n, FZ_PATH, TABLE_ID + 1, KV_VERIFY_NONE, &t, &err) ==
             KV_CORRUPTION);
    FZ_CHECK(kv_sst_open(img, n, FZ_PATH, TABLE_ID, KV_VERIFY_NONE, &t, &err) == KV_OK);
    pr = kv_sst_get_props(t);
    FZ_CHECK(pr->table_id == TABLE_ID && pr->file_size == n && pr->num_entries == cnt);
    k = kv_sst_smallest(t, &kn);
    FZ_CHECK(kn == ents[0].kn && memcmp(k, ents[0].k, kn) == 0);
    k = kv_sst_largest(t, &kn);
    FZ_CHECK(kn == ents[cnt - 1].kn && memcmp(k, ents[cnt - 1].k, kn) == 0);
    kv_sst_iter_init(&it, t, NULL);
    for (kv_sst_iter_first(&it); it.valid; kv_sst_iter_next(&it), i++) {
        FZ_CHECK(i < cnt);
        FZ_CHECK(it.key_len == ents[i].kn && memcmp(it.key, ents[i].k, it.key_len) == 0);
        FZ_CHECK(it.val_len == ents[i].vn && memcmp(it.val, ents[i].v, it.val_len) == 0);
    }
    FZ_CHECK(it.status == KV_OK && i == cnt);
    for (i = 0; i < cnt; i++) {
        kv_sst_iter_seek(&it, ents[i].k, ents[i].kn);
        FZ_CHECK(it.valid && it.key_len == ents[i].kn &&
                 memcmp(it.key, ents[i].k, it.key_len) == 0);
        kv_sst_iter_seek_for_prev(&it, ents[i].k, ents[i].kn);
        FZ_CHECK(it.valid && it.key_len == ents[i].kn &&
                 memcmp(it.key, ents[i].k, it.key_len) == 0);
        if (bloom) FZ_CHECK(kv_sst_may_contain(t, ents[i].k, kv_ikey_ulen(ents[i].kn)));
        if (i < 64 || i % 16 == 0) model_seeks(t, ents, cnt, &ents[i]);
    }
    kv_sst_iter_done(&it);
    kv_sst_close(t);
}

/* Builds a table from the entries in the in-memory env; returns its image
 * (malloc'd, exactly *n bytes) or NULL. */
static uint8_t *build(const fent *ents, size_t cnt, int block_size, kv_compression comp,
                      int bloom, size_t *n)
{
    kv_env *env = kv_env_mem_new();
    kv_sst_build_opts o = {TABLE_ID, block_size, bloom ? 0.01 : 0, comp, 1, 0};
    kv_sst_builder *b;
    kv_sst_props props;
    kv_err err;
    uint8_t *img = NULL;

    FZ_CHECK(env != NULL);
    FZ_CHECK(kv_sst_builder_new(env, MEM_PATH, &o, &b, &err) == KV_OK);
    for (size_t i = 0; i < cnt; i++)
        FZ_CHECK(kv_sst_builder_add(b, ents[i].k, ents[i].kn, ents[i].v, ents[i].vn, &err) ==
                 KV_OK);
    FZ_CHECK(kv_sst_builder_entries(b) == cnt);
    FZ_CHECK(kv_sst_builder_finish(b, &props, &err) == KV_OK);
    kv_sst_builder_free(b);
    FZ_CHECK(props.num_entries == cnt);
    FZ_CHECK(kv_env_read_file(env, MEM_PATH, &img, n, &err) == KV_OK);
    FZ_CHECK(*n == props.file_size);
    kv_env_mem_free(env);
    return img;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static fent ents[MAX_ENTRIES];
    unsigned modes;
    const uint8_t *r;
    size_t rn, n, cnt, nmut;
    uint8_t *img;
    int bloom, reseal;

    if (size < 1) return 0;
    modes = (data[0] >> 2) & 15;
    if (modes == 0) modes = 1u << KV_VERIFY_NONE | 1u << KV_VERIFY_ON_TABLE_AND_BLOCK_READ;
    r = data + 1;
    rn = size - 1;
    if (!(data[0] & 1)) {
        img = malloc(rn ? rn : 1);
        if (!img) return 0;
        if (rn) memcpy(img, r, rn);
        if (data[0] & 2) fz_seal(img, rn);
        fz_exercise(img, rn, r, rn, modes, 0);
        free(img);
        return 0;
    }
    if (rn < 4) return 0;
    bloom = r[2] & 1;
    reseal = r[2] & 2;
    nmut = r[3];
    if (rn < 4 + nmut * 3) return 0;
    cnt = parse_entries(r + 4 + nmut * 3, rn - 4 - nmut * 3, ents);
    if (cnt == 0) return 0;
    img = build(ents, cnt, 64 + r[0] * 32, (kv_compression)(r[1] % 3), bloom, &n);
    if (nmut == 0) {
        check_round_trip(img, n, ents, cnt, bloom);
        fz_exercise(img, n, r, rn, modes, 1);
    } else {
        for (size_t i = 0; i < nmut; i++) {
            const uint8_t *m = r + 4 + i * 3;
            img[(m[0] | (size_t)m[1] << 8) % n] ^= m[2];
        }
        if (reseal) fz_seal(img, n);
        fz_exercise(img, n, r + 4, nmut * 3, modes, 0);
    }
    free(img);
    return 0;
}
