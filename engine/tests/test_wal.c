/*
 * test_wal.c - unit tests of write batches (batch.h) and the WAL record
 * and file format (wal.h): batches of puts, deletes and put_ex entries are
 * sealed and parsed back entry by entry; batch limits (empty, oversized
 * keys and values) fail cleanly and leave the batch as it was; malformed
 * payloads never read out of bounds; and WAL files written through the
 * posix and mem envs replay exactly: every record in order, a torn tail
 * cut at every length ends cleanly at the record boundary, a flipped byte
 * in a middle record is KV_CORRUPTION naming the file and offset, trailing
 * zeros end the log, and headers (all-zero, wrong magic/version/id) are
 * judged as the contract says.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "batch.h"
#include "coding.h"
#include "env.h"
#include "err.h"
#include "hash.h"
#include "ikey.h"
#include "frame.h"
#include "wal.h"

/* ck_assert_* writes a checkpoint to Check's log on every call; hot loops
 * use this, which costs nothing unless it fails. */
#define REQUIRE(cond, ...)                                                                    \
    do {                                                                                      \
        if (!(cond)) ck_abort_msg(__VA_ARGS__);                                               \
    } while (0)

/* ---- model entries ---- */

enum { OP_PUT, OP_DELETE, OP_PUT_EX };

typedef struct went {
    int op;
    uint8_t *key;
    size_t klen;
    uint8_t *val;
    size_t vlen;
    uint8_t user_meta;
    uint64_t expires;
} went;

typedef struct wbatch {
    went *e;
    size_t n;
} wbatch;

static void wbatch_free(wbatch *w)
{
    for (size_t i = 0; i < w->n; i++) {
        free(w->e[i].key);
        free(w->e[i].val);
    }
    free(w->e);
    memset(w, 0, sizeof *w);
}

/* Fills b (cleared first) and the model with n random entries. */
static void fill_batch(tu_rng *r, kv_batch *b, wbatch *w, size_t n, size_t max_val)
{
    kv_err err;
    kv_batch_clear(b);
    wbatch_free(w);
    w->e = calloc(n ? n : 1, sizeof *w->e);
    ck_assert_ptr_nonnull(w->e);
    for (size_t i = 0; i < n; i++) {
        went *e = &w->e[i];
        e->op = (int)tu_randn(r, 3);
        e->klen = 1 + (tu_randn(r, 10) ? tu_randn(r, 24) : tu_randn(r, 400));
        e->key = malloc(e->klen);
        tu_randbytes(r, e->key, e->klen);
        if (e->op != OP_DELETE) {
            e->vlen = tu_randn(r, 4) ? tu_randn(r, 64) : tu_randn(r, max_val + 1);
            e->val = malloc(e->vlen ? e->vlen : 1);
            tu_randbytes(r, e->val, e->vlen);
        }
        if (e->op == OP_PUT_EX) {
            e->user_meta = (uint8_t)tu_rand(r);
            e->expires = tu_randn(r, 2) ? tu_rand(r) >> tu_randn(r, 64) : 0;
        }
        switch (e->op) {
        case OP_PUT:
            TU_OK(kv_batch_put(b, e->key, e->klen, e->val, e->vlen, &err), &err);
            break;
        case OP_DELETE:
            TU_OK(kv_batch_delete(b, e->key, e->klen, &err), &err);
            break;
        default:
            TU_OK(kv_batch_put_ex(b, e->key, e->klen, e->val, e->vlen, e->user_meta, e->expires,
                                  &err),
                  &err);
            break;
        }
    }
    w->n = n;
    ck_assert_uint_eq(kv_batch_count(b), n);
}

/* Parses a payload and compares it with the model. */
static void check_payload(const uint8_t *pl, size_t n, uint64_t version, const wbatch *w)
{
    uint64_t ver;
    uint32_t count;
    uint8_t flags;
    kv_wal_cursor cur;
    kv_wal_entry e;
    REQUIRE(kv_wal_payload_open(pl, n, &ver, &count, &flags, &cur) == 0, "payload_open failed");
    REQUIRE(ver == version, "version %llu, want %llu", (unsigned long long)ver,
            (unsigned long long)version);
    REQUIRE(count == w->n, "count %u, want %zu", count, w->n);
    REQUIRE(flags == 0, "flags %u", flags);
    for (size_t i = 0; i < w->n; i++) {
        const went *m = &w->e[i];
        kv_vstruct vs;
        int r = kv_wal_next_entry(&cur, &e);
        REQUIRE(r == 1, "entry %zu: next_entry = %d", i, r);
        REQUIRE(e.klen == m->klen && !memcmp(e.key, m->key, m->klen), "entry %zu: key differs",
                i);
        REQUIRE(kv_vstruct_decode(e.vs, e.vslen, &vs) == 0, "entry %zu: bad value struct", i);
        REQUIRE(vs.meta == (m->op == OP_DELETE ? KV_META_DELETE : 0), "entry %zu: meta %u", i,
                vs.meta);
        REQUIRE(vs.user_meta == m->user_meta, "entry %zu: user_meta %u", i, vs.user_meta);
        REQUIRE(vs.expires_at == m->expires, "entry %zu: expires %llu", i,
                (unsigned long long)vs.expires_at);
        REQUIRE(vs.value_len == m->vlen && (!m->vlen || !memcmp(vs.value, m->val, m->vlen)),
                "entry %zu: value differs", i);
    }
    REQUIRE(kv_wal_next_entry(&cur, &e) == 0, "entries after the last one");
    REQUIRE(kv_wal_next_entry(&cur, &e) == 0, "end is not sticky");
}

/* Checks a sealed record (framing, checksum) and its payload. */
static void check_record(const uint8_t *rec, size_t len, uint64_t version, const wbatch *w)
{
    uint8_t *copy;
    REQUIRE(len >= KV_WAL_REC_HDR + KV_WAL_PAYLOAD_HDR, "record of %zu bytes", len);
    REQUIRE(kv_get_u32(rec) == len - KV_WAL_REC_HDR, "length field %u, record %zu",
            kv_get_u32(rec), len);
    REQUIRE(kv_get_u32(rec + 8) == kv_checksum32(rec + KV_WAL_REC_HDR, len - KV_WAL_REC_HDR),
            "checksum field wrong");
    REQUIRE(kv_wal_check_record(rec, len) == (long)(len - KV_WAL_REC_HDR),
            "check_record rejects a sealed record");
    /* on an exact-size copy so that ASan sees any over-read */
    copy = malloc(len);
    ck_assert_ptr_nonnull(copy);
    memcpy(copy, rec, len);
    REQUIRE(kv_wal_check_record(copy, len - 1) == -1, "check_record accepts a short buffer");
    check_payload(copy + KV_WAL_REC_HDR, len - KV_WAL_REC_HDR, version, w);
    free(copy);
}

/* ---- batches ---- */

START_TEST(test_batch_roundtrip)
{
    kv_batch *b = kv_batch_new();
    wbatch w = {0};
    tu_rng r;
    long rounds = tu_scale(300);

    tu_rng_init(&r, tu_seed() ^ 0xba7c);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_eq(kv_batch_count(b), 0);
    ck_assert_uint_eq(kv_batch_count(NULL), 0);
    ck_assert_uint_eq(kv_batch_bytes(NULL), 0);
    /* an empty batch is a valid record with no entries */
    ck_assert_uint_eq(kv_batch_bytes(b), KV_WAL_REC_HDR + KV_WAL_PAYLOAD_HDR);
    kv_wal_seal(b->buf, b->len, 7);
    check_record(b->buf, b->len, 7, &w);
    for (long i = 0; i < rounds; i++) {
        size_t n = tu_randn(&r, 8) ? tu_randn(&r, 20) : tu_randn(&r, 2000);
        uint64_t ver = tu_randn(&r, 2) ? 1 + tu_randn(&r, 1000) : tu_rand(&r);
        fill_batch(&r, b, &w, n, tu_randn(&r, 4) ? 100 : 100000);
        ck_assert_uint_eq(kv_batch_bytes(b), b->len);
        ck_assert_uint_ge(b->mem_cost, b->data_bytes);
        kv_wal_seal(b->buf, b->len, ver);
        check_record(b->buf, b->len, ver, &w);
        /* sealing again with another version is fine */
        kv_wal_seal(b->buf, b->len, ver + 1);
        check_record(b->buf, b->len, ver + 1, &w);
    }
    wbatch_free(&w);
    kv_batch_free(b);
    kv_batch_free(NULL);
}
END_TEST

/* The same key twice in one batch: both entries are recorded, in order
 * (the later one wins when applied). */
START_TEST(test_batch_same_key)
{
    kv_batch *b = kv_batch_new();
    kv_err err;
    wbatch w = {0};
    static uint8_t k[] = "dup", v1[] = "first", v2[] = "second";
    went e[3];

    memset(e, 0, sizeof e);
    TU_OK(kv_batch_put(b, k, 3, v1, 5, &err), &err);
    TU_OK(kv_batch_delete(b, k, 3, &err), &err);
    TU_OK(kv_batch_put_ex(b, k, 3, v2, 6, 9, 12345, &err), &err);
    e[0].op = OP_PUT;
    e[0].key = k;
    e[0].klen = 3;
    e[0].val = v1;
    e[0].vlen = 5;
    e[1].op = OP_DELETE;
    e[1].key = k;
    e[1].klen = 3;
    e[2].op = OP_PUT_EX;
    e[2].key = k;
    e[2].klen = 3;
    e[2].val = v2;
    e[2].vlen = 6;
    e[2].user_meta = 9;
    e[2].expires = 12345;
    w.e = e;
    w.n = 3;
    kv_wal_seal(b->buf, b->len, 42);
    check_record(b->buf, b->len, 42, &w);
    kv_batch_free(b);
}
END_TEST

/* Bad keys and values: the right status, a message, the batch unchanged. */
START_TEST(test_batch_limits)
{
    kv_batch *b = kv_batch_new();
    kv_err err;
    uint8_t *big = calloc(1, KV_MAX_KEY_SIZE + 1), small[16] = {1, 2, 3};
    size_t n0, len0;
    static const struct {
        size_t klen, vlen;
        int null_key, null_val;
        kv_status want;
    } cases[] = {
        {0, 3, 0, 0, KV_INVALID},
        {3, 3, 1, 0, KV_INVALID},
        {KV_MAX_KEY_SIZE + 1, 3, 0, 0, KV_TOO_BIG},
        {(size_t)1 << 40, 3, 0, 0, KV_TOO_BIG},
        {3, 5, 0, 1, KV_INVALID},
        {3, (size_t)KV_MAX_VALUE_SIZE + 1, 0, 0, KV_TOO_BIG},
        {3, (size_t)INT64_MAX + 1, 0, 0, KV_TOO_BIG},
        {3, SIZE_MAX - 20, 0, 0, KV_TOO_BIG},
        {3, SIZE_MAX, 0, 0, KV_TOO_BIG},
    };

    ck_assert_ptr_nonnull(big);
    TU_OK(kv_batch_put(b, "k", 1, "v", 1, &err), &err);
    n0 = kv_batch_count(b);
    len0 = kv_batch_bytes(b);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const void *key = cases[i].null_key ? NULL : big;
        const void *val = cases[i].null_val ? NULL : small;
        memset(&err, 0, sizeof err);
        ck_assert_msg(kv_batch_put(b, key, cases[i].klen, val, cases[i].vlen, &err) ==
                          cases[i].want,
                      "case %zu: put(klen %zu, vlen %zu) -> %s, want %s", i, cases[i].klen,
                      cases[i].vlen, kv_status_str(err.code), kv_status_str(cases[i].want));
        ck_assert_int_eq(err.code, cases[i].want);
        ck_assert_msg(err.msg[0] != 0, "case %zu: no message", i);
        ck_assert_uint_eq(kv_batch_count(b), n0);
        ck_assert_uint_eq(kv_batch_bytes(b), len0);
        ck_assert_int_eq(kv_batch_put_ex(b, key, cases[i].klen, val, cases[i].vlen, 1, 2, NULL),
                         cases[i].want);
        if (cases[i].vlen == 3 || cases[i].null_key) {
            /* delete only has a key */
            ck_assert_int_eq(kv_batch_delete(b, key, cases[i].klen, NULL), cases[i].want);
        }
        ck_assert_uint_eq(kv_batch_count(b), n0);
        ck_assert_uint_eq(kv_batch_bytes(b), len0);
    }
    /* the limits themselves are fine; a NULL value of length 0 too */
    TU_OK(kv_batch_put(b, big, KV_MAX_KEY_SIZE, NULL, 0, &err), &err);
    TU_OK(kv_batch_delete(b, big, KV_MAX_KEY_SIZE, &err), &err);
    TU_OK(kv_batch_put(b, big, 1, small, 0, &err), &err);
    ck_assert_int_eq(kv_batch_put(NULL, "k", 1, "v", 1, &err), KV_INVALID);
    ck_assert_uint_eq(kv_batch_count(b), n0 + 3);
    {
        /* and they round-trip */
        went e[4];
        wbatch w;
        memset(e, 0, sizeof e);
        e[0].op = OP_PUT;
        e[0].key = (uint8_t *)"k";
        e[0].klen = 1;
        e[0].val = (uint8_t *)"v";
        e[0].vlen = 1;
        e[1].op = OP_PUT;
        e[1].key = big;
        e[1].klen = KV_MAX_KEY_SIZE;
        e[2].op = OP_DELETE;
        e[2].key = big;
        e[2].klen = KV_MAX_KEY_SIZE;
        e[3].op = OP_PUT;
        e[3].key = big;
        e[3].klen = 1;
        w.e = e;
        w.n = 4;
        kv_wal_seal(b->buf, b->len, 1);
        check_record(b->buf, b->len, 1, &w);
    }
    kv_batch_clear(b);
    ck_assert_uint_eq(kv_batch_count(b), 0);
    ck_assert_uint_eq(kv_batch_bytes(b), KV_WAL_REC_HDR + KV_WAL_PAYLOAD_HDR);
    free(big);
    kv_batch_free(b);
}
END_TEST

/* Malformed payloads: truncated, wrong count, random damage.  The parser
 * reports -1 (or fewer entries) and never reads outside the payload. */
START_TEST(test_payload_malformed)
{
    kv_batch *b = kv_batch_new();
    wbatch w = {0};
    tu_rng r;
    long rounds = tu_scale(60);

    tu_rng_init(&r, tu_seed() ^ 0x3a1f);
    for (long round = 0; round < rounds; round++) {
        size_t plen;
        uint8_t *pl;
        fill_batch(&r, b, &w, 1 + tu_randn(&r, 6), 40);
        kv_wal_seal(b->buf, b->len, 5);
        plen = b->len - KV_WAL_REC_HDR;
        /* every truncation */
        for (size_t t = 0; t < plen; t++) {
            uint64_t ver;
            uint32_t count;
            uint8_t flags;
            kv_wal_cursor cur;
            kv_wal_entry e;
            int rc, got = 0;
            pl = malloc(t ? t : 1);
            memcpy(pl, b->buf + KV_WAL_REC_HDR, t);
            rc = kv_wal_payload_open(pl, t, &ver, &count, &flags, &cur);
            if (t < KV_WAL_PAYLOAD_HDR) {
                REQUIRE(rc == -1, "payload_open accepted %zu bytes", t);
                free(pl);
                continue;
            }
            REQUIRE(rc == 0, "payload_open rejected a %zu-byte header", t);
            while ((rc = kv_wal_next_entry(&cur, &e)) == 1) {
                REQUIRE(e.key >= pl && e.key + e.klen <= pl + t && e.vs >= pl &&
                            e.vs + e.vslen <= pl + t,
                        "entry outside the payload");
                got++;
            }
            REQUIRE(rc == -1 && (size_t)got < w.n,
                    "truncated payload (%zu of %zu bytes) parsed cleanly: rc %d, %d entries", t,
                    plen, rc, got);
            free(pl);
        }
        /* count one too many / one too few */
        for (int d = -1; d <= 1; d += 2) {
            uint64_t ver;
            uint32_t count;
            uint8_t flags;
            kv_wal_cursor cur;
            kv_wal_entry e;
            int rc;
            pl = malloc(plen);
            memcpy(pl, b->buf + KV_WAL_REC_HDR, plen);
            kv_put_u32(pl + 8, (uint32_t)((int64_t)w.n + d));
            ck_assert_int_eq(kv_wal_payload_open(pl, plen, &ver, &count, &flags, &cur), 0);
            while ((rc = kv_wal_next_entry(&cur, &e)) == 1)
                ;
            REQUIRE(rc == -1, "count %+d: parsed cleanly", d);
            free(pl);
        }
        /* random damage: anything goes except reading out of bounds */
        for (int k = 0; k < 50; k++) {
            uint64_t ver;
            uint32_t count;
            uint8_t flags;
            kv_wal_cursor cur;
            kv_wal_entry e;
            pl = malloc(plen);
            memcpy(pl, b->buf + KV_WAL_REC_HDR, plen);
            for (int f = 0; f < 1 + (int)tu_randn(&r, 3); f++)
                pl[tu_randn(&r, plen)] ^= (uint8_t)(1 + tu_randn(&r, 255));
            if (kv_wal_payload_open(pl, plen, &ver, &count, &flags, &cur) == 0)
                while (kv_wal_next_entry(&cur, &e) == 1)
                    REQUIRE(e.klen >= 1 && e.klen <= KV_MAX_KEY_SIZE && e.vslen >= 3 &&
                                e.key + e.klen <= pl + plen && e.vs + e.vslen <= pl + plen,
                            "damaged payload yields an impossible entry");
            free(pl);
        }
    }
    {
        /* kv_wal_check_record on tiny and lying buffers */
        uint8_t rec[64] = {0};
        ck_assert_int_eq(kv_wal_check_record(rec, 0), -1);
        ck_assert_int_eq(kv_wal_check_record(rec, 7), -1);
        ck_assert_int_eq(kv_wal_check_record(rec, sizeof rec), -1); /* length 0 */
        kv_frame_seal(rec, 12); /* a valid frame, but shorter than a payload header */
        ck_assert_int_eq(kv_wal_check_record(rec, sizeof rec), -1);
        kv_frame_seal(rec, 13);
        ck_assert_int_eq(kv_wal_check_record(rec, sizeof rec), 13);
        ck_assert_int_eq(kv_wal_check_record(rec, 20), -1); /* cut short */
        kv_put_u32(rec + 4, kv_get_u32(rec + 4) ^ 1);       /* damaged length check */
        ck_assert_int_eq(kv_wal_check_record(rec, sizeof rec), -1);
        kv_put_u32(rec, 0xffffffffu);
        ck_assert_int_eq(kv_wal_check_record(rec, sizeof rec), -1);
    }
    wbatch_free(&w);
    kv_batch_free(b);
}
END_TEST

/* ---- WAL files ---- */

typedef struct wal_img {
    uint8_t *data;
    size_t len, cap;
    size_t nrec;
    size_t rec_off[64], rec_len[64];
    uint64_t rec_ver[64];
    wbatch rec_model[64];
} wal_img;

static void img_append(wal_img *im, const void *p, size_t n)
{
    if (im->len + n > im->cap) {
        while (im->len + n > im->cap) im->cap = im->cap ? im->cap * 2 : 4096;
        im->data = realloc(im->data, im->cap);
        ck_assert_ptr_nonnull(im->data);
    }
    if (n) memcpy(im->data + im->len, p, n);
    im->len += n;
}

/* A WAL image: header for file_id, then nrec random records. */
static void img_build(wal_img *im, tu_rng *r, uint64_t file_id, size_t nrec, size_t max_entries)
{
    kv_batch *b = kv_batch_new();
    uint8_t hdr[KV_WAL_HEADER_SIZE];
    memset(im, 0, sizeof *im);
    kv_wal_file_header(hdr, file_id);
    img_append(im, hdr, sizeof hdr);
    ck_assert_uint_le(nrec, 64);
    for (size_t i = 0; i < nrec; i++) {
        fill_batch(r, b, &im->rec_model[i], tu_randn(r, max_entries + 1), 300);
        im->rec_ver[i] = 100 + i;
        kv_wal_seal(b->buf, b->len, im->rec_ver[i]);
        im->rec_off[i] = im->len;
        im->rec_len[i] = b->len;
        img_append(im, b->buf, b->len);
    }
    im->nrec = nrec;
    kv_batch_free(b);
}

static void img_free(wal_img *im)
{
    for (size_t i = 0; i < im->nrec; i++) wbatch_free(&im->rec_model[i]);
    free(im->data);
    memset(im, 0, sizeof *im);
}

static void put_file(kv_env *env, const char *path, const void *data, size_t n)
{
    kv_file *f;
    kv_err err;
    TU_OK(env->open(env, path, KV_O_RDWR | KV_O_CREATE | KV_O_TRUNC, &f, &err), &err);
    if (n) TU_OK(kv_env_pwrite(env, f, data, n, 0, &err), &err);
    env->close(f);
}

/* What replay delivered. */
typedef struct collect {
    size_t n;
    uint64_t off[64];
    uint8_t *pl[64];
    size_t len[64];
    size_t stop_at;  /* return stop_st at this record (SIZE_MAX: never) */
    kv_status stop_st;
} collect;

static kv_status collect_fn(void *ctx, const uint8_t *payload, size_t n, uint64_t offset,
                            kv_err *err)
{
    collect *c = ctx;
    if (c->n == c->stop_at) return kv_seterr(err, c->stop_st, 0, "stopped by the test");
    if (c->n < 64) {
        c->off[c->n] = offset;
        c->pl[c->n] = malloc(n ? n : 1);
        memcpy(c->pl[c->n], payload, n);
        c->len[c->n] = n;
    }
    c->n++;
    return KV_OK;
}

static void collect_free(collect *c)
{
    for (size_t i = 0; i < c->n && i < 64; i++) free(c->pl[i]);
    memset(c, 0, sizeof *c);
    c->stop_at = SIZE_MAX;
}

static int last_torn; /* replay_check's last replay ended at a torn tail */

/* Replays path and checks the first `want` records of im came out. */
static kv_status replay_check(kv_env *env, const char *path, uint64_t expect_id,
                              const wal_img *im, size_t want, uint64_t *valid_end, kv_err *err)
{
    collect c;
    kv_status st;
    memset(&c, 0, sizeof c);
    c.stop_at = SIZE_MAX;
    *valid_end = UINT64_MAX;
    memset(err, 0, sizeof *err);
    st = kv_wal_replay(env, path, expect_id, collect_fn, &c, valid_end, &last_torn, err);
    if (st == KV_OK)
        REQUIRE(c.n == want, "%s: replay gave %zu records, want %zu (valid_end %llu)", path,
                c.n, want, (unsigned long long)*valid_end);
    else
        REQUIRE(c.n <= want, "%s: %zu records before the error, want at most %zu", path, c.n,
                want);
    for (size_t i = 0; i < c.n && i < want; i++) {
        REQUIRE(c.off[i] == im->rec_off[i], "record %zu at offset %llu, want %zu", i,
                (unsigned long long)c.off[i], im->rec_off[i]);
        REQUIRE(c.len[i] == im->rec_len[i] - KV_WAL_REC_HDR, "record %zu: length", i);
        check_payload(c.pl[i], c.len[i], im->rec_ver[i], &im->rec_model[i]);
    }
    collect_free(&c);
    return st;
}

/* The envs the file tests run on: 0 posix (a temp dir), 1 mem. */
static kv_env *test_env(int which, char **dir)
{
    if (which == 0) {
        *dir = tu_mkdtemp("wal");
        return kv_env_posix();
    }
    *dir = strdup("/memwal");
    return kv_env_mem_new();
}

static void test_env_done(int which, kv_env *env, char *dir)
{
    if (which == 0) tu_rmdir(dir);
    else kv_env_mem_free(env);
    free(dir);
}

START_TEST(test_replay_all)
{
    char *dir, path[4200];
    kv_env *env = test_env(_i, &dir);
    wal_img im;
    tu_rng r;
    kv_err err;
    uint64_t ve;

    tu_rng_init(&r, tu_seed() ^ 0x1a11);
    snprintf(path, sizeof path, "%s/000007.mem", dir);
    img_build(&im, &r, 7, 40, 30);
    put_file(env, path, im.data, im.len);
    TU_OK(replay_check(env, path, 7, &im, 40, &ve, &err), &err);
    ck_assert_uint_eq(ve, im.len);
    /* expect_id 0 accepts any id */
    TU_OK(replay_check(env, path, 0, &im, 40, &ve, &err), &err);
    ck_assert_uint_eq(ve, im.len);
    /* a header-only log */
    put_file(env, path, im.data, KV_WAL_HEADER_SIZE);
    TU_OK(replay_check(env, path, 7, &im, 0, &ve, &err), &err);
    ck_assert_uint_eq(ve, KV_WAL_HEADER_SIZE);
    img_free(&im);
    test_env_done(_i, env, dir);
}
END_TEST

/* The last record cut at every length: exactly the earlier records, and
 * valid_end at the start of the cut record. */
START_TEST(test_replay_torn_tail)
{
    char *dir, path[4200];
    kv_env *env = test_env(_i, &dir);
    wal_img im;
    tu_rng r;
    kv_err err;
    uint64_t ve;
    size_t last, step;

    tu_rng_init(&r, tu_seed() ^ 0x7042);
    snprintf(path, sizeof path, "%s/000003.mem", dir);
    img_build(&im, &r, 3, 6, 8);
    last = im.rec_off[5];
    step = _i == 0 && im.len - last > 400 ? 3 : 1; /* posix: fewer file rewrites */
    for (size_t cut = last; cut < im.len; cut += step) {
        put_file(env, path, im.data, cut);
        TU_OK(replay_check(env, path, 3, &im, 5, &ve, &err), &err);
        REQUIRE(ve == last, "cut at %zu: valid_end %llu, want %zu", cut,
                (unsigned long long)ve, last);
    }
    /* cut inside the header: an empty log */
    for (size_t cut = 0; cut < KV_WAL_HEADER_SIZE; cut++) {
        put_file(env, path, im.data, cut);
        TU_OK(replay_check(env, path, 3, &im, 0, &ve, &err), &err);
        ck_assert_uint_eq(ve, 0);
    }
    /* every record boundary is a clean end */
    for (size_t k = 0; k <= 6; k++) {
        size_t end = k < 6 ? im.rec_off[k] : im.len;
        put_file(env, path, im.data, end);
        TU_OK(replay_check(env, path, 3, &im, k, &ve, &err), &err);
        ck_assert_uint_eq(ve, end);
    }
    img_free(&im);
    test_env_done(_i, env, dir);
}
END_TEST

/* A flipped byte in the checksum or payload of a middle record is
 * corruption (more records follow), reported with file name and offset. */
START_TEST(test_replay_flip_middle)
{
    char *dir, path[4200];
    kv_env *env = test_env(_i, &dir);
    wal_img im;
    tu_rng r;
    kv_err err;
    uint64_t ve;
    size_t mid;
    static const uint8_t flips[] = {0x01, 0x80, 0xff};

    tu_rng_init(&r, tu_seed() ^ 0xf11b);
    snprintf(path, sizeof path, "%s/000009.mem", dir);
    img_build(&im, &r, 9, 5, 6);
    mid = im.rec_off[2];
    for (size_t pos = mid + 4; pos < mid + im.rec_len[2]; pos++) {
        for (size_t f = 0; f < sizeof flips; f++) {
            kv_status st;
            if (_i == 0 && f && pos % 4) continue; /* posix: fewer file rewrites */
            im.data[pos] ^= flips[f];
            put_file(env, path, im.data, im.len);
            st = replay_check(env, path, 9, &im, 2, &ve, &err);
            im.data[pos] ^= flips[f];
            REQUIRE(st == KV_CORRUPTION, "byte %zu of record 2 ^ 0x%02x: %s (valid_end %llu)",
                    pos - mid, flips[f], kv_status_str(st), (unsigned long long)ve);
            REQUIRE(strstr(err.msg, path) && strstr(err.msg, "offset"),
                    "message lacks file or offset: %s", err.msg);
        }
    }
    img_free(&im);
    test_env_done(_i, env, dir);
}
END_TEST

/* The same for the length field of a middle record: whatever value it
 * takes, later records exist, so the log is corrupt, not torn. */
START_TEST(test_replay_flip_length)
{
    char *dir, path[4200];
    kv_env *env = test_env(1, &dir);
    wal_img im;
    tu_rng r;
    kv_err err;
    uint64_t ve;
    size_t mid, bad = 0;
    char first[200] = "";

    tu_rng_init(&r, tu_seed() ^ 0x1e97);
    snprintf(path, sizeof path, "%s/000009.mem", dir);
    img_build(&im, &r, 9, 5, 6);
    mid = im.rec_off[2];
    for (size_t pos = mid; pos < mid + 4; pos++)
        for (int bit = 0; bit < 8; bit++) {
            kv_status st;
            im.data[pos] ^= (uint8_t)(1u << bit);
            put_file(env, path, im.data, im.len);
            st = replay_check(env, path, 9, &im, 2, &ve, &err);
            im.data[pos] ^= (uint8_t)(1u << bit);
            if (st != KV_CORRUPTION) {
                if (!bad++)
                    snprintf(first, sizeof first,
                             "e.g. length byte %zu bit %d: %s with valid_end %llu", pos - mid,
                             bit, kv_status_str(st), (unsigned long long)ve);
            }
        }
    ck_assert_msg(bad == 0,
                  "%zu of 32 single-bit flips in the length field of record 2 (of 5) silently "
                  "dropped records 2..4 as a torn tail instead of reporting corruption; %s",
                  bad, first);
    img_free(&im);
    test_env_done(1, env, dir);
}
END_TEST

/* Zeros after the last record (preallocated space) end the log cleanly. */
START_TEST(test_replay_trailing_zeros)
{
    char *dir, path[4200];
    kv_env *env = test_env(_i, &dir);
    wal_img im;
    tu_rng r;
    kv_err err;
    uint64_t ve;
    static const size_t zeros[] = {1, 3, 7, 8, 12, 13, 21, 4096, 100000};
    uint8_t *z = calloc(1, 100000);

    tu_rng_init(&r, tu_seed() ^ 0x2e05);
    snprintf(path, sizeof path, "%s/000011.mem", dir);
    img_build(&im, &r, 11, 4, 6);
    for (size_t i = 0; i < sizeof zeros / sizeof zeros[0]; i++) {
        wal_img cp = im;
        size_t len = im.len;
        cp.data = malloc(len + zeros[i]);
        memcpy(cp.data, im.data, len);
        memcpy(cp.data + len, z, zeros[i]);
        put_file(env, path, cp.data, len + zeros[i]);
        TU_OK(replay_check(env, path, 11, &im, 4, &ve, &err), &err);
        ck_assert_msg(ve == len, "%zu zeros: valid_end %llu, want %zu", zeros[i],
                      (unsigned long long)ve, len);
        free(cp.data);
    }
    /* header only, then zeros */
    {
        uint8_t *buf = calloc(1, KV_WAL_HEADER_SIZE + 4096);
        memcpy(buf, im.data, KV_WAL_HEADER_SIZE);
        put_file(env, path, buf, KV_WAL_HEADER_SIZE + 4096);
        TU_OK(replay_check(env, path, 11, &im, 0, &ve, &err), &err);
        ck_assert_uint_eq(ve, KV_WAL_HEADER_SIZE);
        free(buf);
    }
    free(z);
    img_free(&im);
    test_env_done(_i, env, dir);
}
END_TEST

/* A record torn by a crash inside preallocated space: its first bytes
 * made it, the rest of it and everything after are zeros.  That is a torn
 * tail too (nothing valid follows), not corruption. */
START_TEST(test_replay_torn_into_zeros)
{
    char *dir, path[4200];
    kv_env *env = test_env(1, &dir);
    wal_img im;
    tu_rng r;
    kv_err err;
    uint64_t ve;
    size_t last, bad = 0, tried;
    char first[160] = "";

    tu_rng_init(&r, tu_seed() ^ 0x2e06);
    snprintf(path, sizeof path, "%s/000012.mem", dir);
    img_build(&im, &r, 12, 4, 6);
    last = im.rec_off[3];
    tried = im.len - last - 1;
    for (size_t keep = last + 1; keep < im.len; keep++) {
        uint8_t *buf;
        kv_status st;
        size_t nz = 0;
        for (size_t i = keep; i < im.len; i++) nz += im.data[i] != 0;
        if (!nz) {
            tried--; /* the lost bytes were zeros anyway: the record is whole */
            continue;
        }
        buf = calloc(1, im.len + 4096);
        memcpy(buf, im.data, keep);
        put_file(env, path, buf, im.len + 4096);
        st = replay_check(env, path, 12, &im, 3, &ve, &err);
        if (st != KV_OK || ve != last) {
            if (!bad++)
                snprintf(first, sizeof first, "e.g. %zu of %zu bytes kept: %s", keep - last,
                         im.rec_len[3], kv_status_str(st));
        }
        free(buf);
    }
    ck_assert_msg(bad == 0,
                  "%zu of %zu torn-into-zeros tails were not treated as a torn tail; %s", bad,
                  tried, first);
    img_free(&im);
    test_env_done(1, env, dir);
}
END_TEST

/* Records written over zero-filled space (writer.c preallocates the WAL):
 * writeback may reach the disk out of order, so a crash can leave a page
 * of zeros in a record with later records intact after it.  The log ends
 * there, as a torn tail, not as corruption. */
START_TEST(test_replay_unwritten_page)
{
    char *dir, path[4200];
    kv_env *env = test_env(1, &dir);
    wal_img im;
    tu_rng r;
    kv_err err;
    uint64_t ve;
    size_t pages = 0;

    tu_rng_init(&r, tu_seed() ^ 0x2e07);
    snprintf(path, sizeof path, "%s/000013.mem", dir);
    img_build(&im, &r, 13, 64, 8);
    for (size_t p = KV_WAL_PAGE; p < im.len; p += KV_WAL_PAGE) {
        size_t want = 0, n = im.len - p < KV_WAL_PAGE ? im.len - p : KV_WAL_PAGE;
        uint8_t *buf = malloc(im.len);
        int rest_zero = 1;
        memcpy(buf, im.data, im.len);
        memset(buf + p, 0, n);
        /* the first record the zeros changed (its bytes there may have
         * been zeros already) */
        while (want < im.nrec && !memcmp(buf + im.rec_off[want], im.data + im.rec_off[want],
                                         im.rec_len[want]))
            want++;
        if (want == im.nrec) {
            free(buf);
            continue;
        }
        for (size_t i = im.rec_off[want]; i < im.len && rest_zero; i++) rest_zero = buf[i] == 0;
        put_file(env, path, buf, im.len);
        TU_OK(replay_check(env, path, 13, &im, want, &ve, &err), &err);
        ck_assert_msg(ve == im.rec_off[want], "page at %zu: valid_end %llu, want %zu", p,
                      (unsigned long long)ve, im.rec_off[want]);
        ck_assert_int_eq(last_torn, !rest_zero);
        free(buf);
        pages++;
    }
    ck_assert_uint_ge(pages, 4);
    img_free(&im);
    test_env_done(1, env, dir);
}
END_TEST

/* Headers: all zeros = empty log; wrong magic, version or id = corrupt. */
START_TEST(test_replay_headers)
{
    char *dir, path[4200];
    kv_env *env = test_env(_i, &dir);
    wal_img im;
    tu_rng r;
    kv_err err;
    uint64_t ve;
    uint8_t zero[KV_WAL_HEADER_SIZE + 64];

    tu_rng_init(&r, tu_seed() ^ 0x4ead);
    snprintf(path, sizeof path, "%s/000021.mem", dir);
    img_build(&im, &r, 21, 3, 4);

    memset(zero, 0, sizeof zero);
    put_file(env, path, zero, KV_WAL_HEADER_SIZE);
    TU_OK(replay_check(env, path, 21, &im, 0, &ve, &err), &err);
    ck_assert_uint_eq(ve, 0);
    put_file(env, path, zero, sizeof zero);
    TU_OK(replay_check(env, path, 21, &im, 0, &ve, &err), &err);
    ck_assert_uint_eq(ve, 0);
    put_file(env, path, zero, 0);
    TU_OK(replay_check(env, path, 21, &im, 0, &ve, &err), &err);
    ck_assert_uint_eq(ve, 0);

    /* wrong magic, version, id */
    for (int k = 0; k < 4; k++) {
        uint8_t save[KV_WAL_HEADER_SIZE];
        memcpy(save, im.data, sizeof save);
        if (k == 0) im.data[0] ^= 0x20;
        else if (k == 1) kv_put_u32(im.data, 0);
        else if (k == 2) kv_put_u32(im.data + 4, KV_WAL_VERSION + 1);
        else kv_put_u64(im.data + 8, 22);
        put_file(env, path, im.data, im.len);
        memcpy(im.data, save, sizeof save);
        ck_assert_int_eq(replay_check(env, path, 21, &im, 0, &ve, &err), KV_CORRUPTION);
        ck_assert_int_eq(err.code, KV_CORRUPTION);
        ck_assert_msg(strstr(err.msg, path) != NULL, "message lacks the file: %s", err.msg);
        ck_assert_msg(strstr(err.msg, "offset") != NULL, "message lacks offset: %s", err.msg);
        if (k == 3) {
            /* the id only matters when the caller expects one */
            TU_OK(replay_check(env, path, 0, &im, 3, &ve, &err), &err);
            ck_assert_uint_eq(ve, im.len);
        }
    }
    /* a missing file */
    snprintf(path, sizeof path, "%s/000099.mem", dir);
    memset(&err, 0, sizeof err);
    {
        collect c;
        memset(&c, 0, sizeof c);
        c.stop_at = SIZE_MAX;
        ck_assert_int_eq(kv_wal_replay(env, path, 99, collect_fn, &c, &ve, NULL, &err), KV_NOT_FOUND);
        ck_assert_uint_eq(c.n, 0);
    }
    img_free(&im);
    test_env_done(_i, env, dir);
}
END_TEST

/* The callback's error stops the replay and comes back unchanged. */
START_TEST(test_replay_callback_error)
{
    char *dir, path[4200];
    kv_env *env = test_env(1, &dir);
    wal_img im;
    tu_rng r;
    kv_err err;
    uint64_t ve = 0;
    collect c;

    tu_rng_init(&r, tu_seed() ^ 0xcb);
    snprintf(path, sizeof path, "%s/000005.mem", dir);
    img_build(&im, &r, 5, 8, 4);
    put_file(env, path, im.data, im.len);
    memset(&c, 0, sizeof c);
    c.stop_at = 3;
    c.stop_st = KV_NO_SPACE;
    memset(&err, 0, sizeof err);
    ck_assert_int_eq(kv_wal_replay(env, path, 5, collect_fn, &c, &ve, NULL, &err), KV_NO_SPACE);
    ck_assert_int_eq(err.code, KV_NO_SPACE);
    ck_assert_str_eq(err.msg, "stopped by the test");
    ck_assert_uint_eq(c.n, 3);
    ck_assert_uint_eq(ve, im.rec_off[3]);
    collect_free(&c);
    img_free(&im);
    test_env_done(1, env, dir);
}
END_TEST

static Suite *wal_suite(void)
{
    Suite *s = suite_create("wal");
    TCase *tc = tcase_create("batch");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_batch_roundtrip);
    tcase_add_test(tc, test_batch_same_key);
    tcase_add_test(tc, test_batch_limits);
    tcase_add_test(tc, test_payload_malformed);
    suite_add_tcase(s, tc);
    tc = tcase_create("replay");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_replay_all, 0, 2);
    tcase_add_loop_test(tc, test_replay_torn_tail, 0, 2);
    tcase_add_loop_test(tc, test_replay_flip_middle, 0, 2);
    tcase_add_test(tc, test_replay_flip_length);
    tcase_add_loop_test(tc, test_replay_trailing_zeros, 0, 2);
    tcase_add_test(tc, test_replay_torn_into_zeros);
    tcase_add_test(tc, test_replay_unwritten_page);
    tcase_add_loop_test(tc, test_replay_headers, 0, 2);
    tcase_add_test(tc, test_replay_callback_error);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    tu_seed();
    return tu_run(wal_suite());
}
