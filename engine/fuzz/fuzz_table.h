/*
 * fuzz_table.h - helpers shared by the table fuzz targets (fuzz_sst.c and
 * fuzz_block.c): a toy block cache that checks every pin is released,
 * re-sealing every checksum of a (mutated) table image so that damage gets
 * past the checksum checks into the structure checks, and fz_exercise(),
 * which runs every reader entry point over an image and checks the
 * reader's promises:
 *
 *   - opening fails only with KV_CORRUPTION naming the file;
 *   - no iteration yields more entries than the properties count;
 *   - if kv_sst_verify() accepts the table (always, for a table the
 *     builder wrote and nobody touched): every block reads, forward and
 *     backward iteration yield num_entries strictly increasing keys, and
 *     seeks land on the right side of their target.
 *
 * A broken promise calls abort(), so libFuzzer reports it as a crash.
 */
#ifndef KV_FUZZ_TABLE_H
#define KV_FUZZ_TABLE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "hash.h"
#include "ikey.h"
#include "sst.h"
#include "sst_format.h"

#define FZ_PATH "fuzz.sst"

#define FZ_CHECK(cond)                                                                         \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "fuzz invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

/* ---- a toy block cache: a few slots, copies, pin counts ---- */

#define FZ_SLOTS 3

typedef struct fz_slot {
    uint64_t id, off;
    uint8_t *data;
    size_t len;
    int pins, used;
} fz_slot;

typedef struct fz_cache {
    fz_slot s[FZ_SLOTS];
    unsigned next;
} fz_cache;

static inline const uint8_t *fz_lookup(void *ctx, uint64_t id, uint64_t off, size_t *len,
                                       void **pin)
{
    fz_cache *c = ctx;

    for (int i = 0; i < FZ_SLOTS; i++) {
        fz_slot *s = &c->s[i];
        if (s->used && s->id == id && s->off == off) {
            s->pins++;
            *len = s->len;
            *pin = s;
            return s->data;
        }
    }
    return NULL;
}

static inline const uint8_t *fz_insert(void *ctx, uint64_t id, uint64_t off,
                                       const uint8_t *data, size_t len, void **pin)
{
    fz_cache *c = ctx;

    for (int k = 0; k < FZ_SLOTS; k++) {
        fz_slot *s = &c->s[c->next++ % FZ_SLOTS];
        uint8_t *copy;
        if (s->pins) continue;
        if (!(copy = malloc(len ? len : 1))) return NULL;
        if (len) memcpy(copy, data, len);
        free(s->data);
        s->data = copy;
        s->len = len;
        s->id = id;
        s->off = off;
        s->used = 1;
        s->pins = 1;
        *pin = s;
        return s->data;
    }
    return NULL; /* all pinned: the reader keeps its own copy */
}

static inline void fz_release(void *ctx, void *pin)
{
    fz_slot *s = pin;

    (void)ctx;
    FZ_CHECK(s->pins > 0);
    s->pins--;
}

static inline void fz_cache_free(fz_cache *c)
{
    for (int i = 0; i < FZ_SLOTS; i++) {
        FZ_CHECK(c->s[i].pins == 0);
        free(c->s[i].data);
    }
    memset(c, 0, sizeof *c);
}

/* ---- re-sealing checksums ---- */

/* Recomputes every checksum of img[0, n) that the footer, as it now reads,
 * locates inside the file: block trailers, index, bloom, properties,
 * footer. */
static inline void fz_seal(uint8_t *img, size_t n)
{
    uint8_t *ft;
    uint64_t lim, io, is, bo, bs, po, ps;
    uint32_t nb;

    if (n < SST_FOOTER_SIZE) return;
    lim = n - SST_FOOTER_SIZE;
    ft = img + lim;
    io = kv_get_u64(ft + SST_FT_INDEX_OFF);
    is = kv_get_u64(ft + SST_FT_INDEX_SIZE);
    bo = kv_get_u64(ft + SST_FT_BLOOM_OFF);
    bs = kv_get_u64(ft + SST_FT_BLOOM_SIZE);
    po = kv_get_u64(ft + SST_FT_PROPS_OFF);
    ps = kv_get_u64(ft + SST_FT_PROPS_SIZE);
    nb = kv_get_u32(ft + SST_FT_NUM_BLOCKS);
    if (io <= lim && is >= SST_CKSUM_SIZE && is <= lim - io) {
        uint64_t ents = (is - SST_CKSUM_SIZE) / SST_INDEX_ENTRY;
        for (uint64_t i = 0; i < nb && i < ents; i++) {
            const uint8_t *e = img + io + i * SST_INDEX_ENTRY;
            uint64_t off = kv_get_u64(e + SST_IX_OFF);
            uint32_t sz = kv_get_u32(e + SST_IX_SIZE);
            if (sz > SST_BLOCK_TRAILER && off <= io && sz <= io - off)
                kv_put_u64(img + off + sz - SST_CKSUM_SIZE,
                           kv_checksum64(img + off, sz - SST_CKSUM_SIZE));
        }
        kv_put_u64(img + io + is - SST_CKSUM_SIZE,
                   kv_checksum64(img + io, is - SST_CKSUM_SIZE));
    }
    if (bo <= lim && bs >= SST_CKSUM_SIZE && bs <= lim - bo)
        kv_put_u64(img + bo + bs - SST_CKSUM_SIZE,
                   kv_checksum64(img + bo, bs - SST_CKSUM_SIZE));
    if (po <= lim && ps >= SST_CKSUM_SIZE && ps <= lim - po)
        kv_put_u64(img + po + ps - SST_CKSUM_SIZE,
                   kv_checksum64(img + po, ps - SST_CKSUM_SIZE));
    kv_put_u64(ft + SST_FT_CKSUM, kv_checksum64(ft, SST_FT_CKSUM));
}

/* ---- driving the reader ---- */

/* Reads every byte of p[0, n) (so that ASan sees an out-of-bounds span). */
static inline uint64_t fz_touch(const uint8_t *p, size_t n)
{
    return n ? kv_checksum64(p, n) : 0;
}

static inline void fz_read_blocks(const kv_sst *t, const kv_sst_read_opts *ro, int verified)
{
    uint32_t nb = kv_sst_num_blocks(t);
    kv_block_ref r;
    kv_err err;
    volatile uint64_t sink = 0;

    for (uint32_t i = 0; i <= nb; i++) {
        kv_status st = kv_sst_read_block(t, i, ro, &r, &err);
        if (i == nb) {
            FZ_CHECK(st == KV_INVALID);
            break;
        }
        if (verified) FZ_CHECK(st == KV_OK);
        if (st != KV_OK) {
            FZ_CHECK(st == KV_CORRUPTION || st == KV_NO_MEMORY);
            continue;
        }
        FZ_CHECK(r.num_entries >= 1);
        for (uint32_t j = 0; j < r.num_entries; j++) {
            sst_ent e;
            if (sst_ent_decode(r.data, r.offsets, r.num_entries, j, &e) != 0) {
                FZ_CHECK(!verified);
                continue;
            }
            sink += fz_touch(e.diff, e.diff_len) + fz_touch(e.val, e.val_len);
        }
        kv_block_ref_release(&r);
    }
    (void)sink;
}

/* Full iteration in one direction; returns the number of entries seen. */
static inline uint64_t fz_iterate(const kv_sst *t, const kv_sst_read_opts *ro, int backward,
                                  int verified)
{
    uint64_t limit = kv_sst_get_props(t)->num_entries, n = 0;
    uint8_t *prev = NULL;
    size_t prev_len = 0;
    kv_sst_iter it;
    volatile uint64_t sink = 0;

    kv_sst_iter_init(&it, t, ro);
    if (backward)
        kv_sst_iter_last(&it);
    else
        kv_sst_iter_first(&it);
    while (it.valid) {
        kv_vstruct vs;
        FZ_CHECK(it.key_len >= KV_TS_SIZE);
        sink += fz_touch(it.key, it.key_len) + fz_touch(it.val, it.val_len);
        if (kv_vstruct_decode(it.val, it.val_len, &vs) == 0) sink += vs.value_len;
        if (verified && prev) {
            int c = kv_ikey_cmp(prev, prev_len, it.key, it.key_len);
            FZ_CHECK(backward ? c > 0 : c < 0);
        }
        free(prev);
        prev = malloc(it.key_len);
        FZ_CHECK(prev != NULL);
        memcpy(prev, it.key, it.key_len);
        prev_len = it.key_len;
        n++;
        FZ_CHECK(n <= limit);
        if (backward)
            kv_sst_iter_prev(&it);
        else
            kv_sst_iter_next(&it);
    }
    if (verified) FZ_CHECK(it.status == KV_OK && n == limit);
    if (it.status != KV_OK) FZ_CHECK(it.err.code == it.status && it.err.msg[0]);
    free(prev);
    kv_sst_iter_done(&it);
    (void)sink;
    return n;
}

/* Seeks to k[0, n) both ways and steps around. */
static inline void fz_seek(const kv_sst *t, const kv_sst_read_opts *ro, const uint8_t *k,
                           size_t n, int verified)
{
    kv_sst_iter it;

    for (int dir = 0; dir < 2; dir++) {
        kv_sst_iter_init(&it, t, ro);
        if (dir == 0)
            kv_sst_iter_seek(&it, k, n);
        else
            kv_sst_iter_seek_for_prev(&it, k, n);
        if (n < KV_TS_SIZE) FZ_CHECK(!it.valid && it.status == KV_INVALID);
        if (it.valid && verified) {
            int c = kv_ikey_cmp(it.key, it.key_len, k, n);
            FZ_CHECK(dir == 0 ? c >= 0 : c <= 0);
        } else if (verified && n >= KV_TS_SIZE) {
            /* nothing on that side: the whole table is on the other */
            size_t en;
            const uint8_t *e = dir == 0 ? kv_sst_largest(t, &en) : kv_sst_smallest(t, &en);
            int c = kv_ikey_cmp(e, en, k, n);
            FZ_CHECK(dir == 0 ? c < 0 : c > 0);
        }
        if (verified && n >= KV_TS_SIZE) FZ_CHECK(it.status == KV_OK);
        for (int s = 0; s < 3 && it.valid; s++) {
            if ((s ^ dir) & 1)
                kv_sst_iter_prev(&it);
            else
                kv_sst_iter_next(&it);
        }
        kv_sst_iter_done(&it);
    }
    if (n >= KV_TS_SIZE) (void)kv_sst_may_contain(t, k, kv_ikey_ulen(n));
}

/* Seek targets: the table's own keys (and neighbours) and pieces of probe:
 * each a length byte (0..31) followed by that many bytes. */
static inline void fz_seeks(const kv_sst *t, const kv_sst_read_opts *ro, const uint8_t *probe,
                            size_t plen, int verified)
{
    const uint8_t *k;
    size_t kn, pos = 0;
    uint8_t buf[64];

    k = kv_sst_smallest(t, &kn);
    fz_seek(t, ro, k, kn, verified);
    k = kv_sst_largest(t, &kn);
    fz_seek(t, ro, k, kn, verified);
    if (kn <= sizeof buf) {
        memcpy(buf, k, kn);
        buf[kn - 1] ^= 1; /* a neighbouring version */
        fz_seek(t, ro, buf, kn, verified);
    }
    for (int i = 0; i < 8 && pos < plen; i++) {
        size_t len = probe[pos++] % 32;
        if (len > plen - pos) len = plen - pos;
        memcpy(buf, probe + pos, len);
        pos += len;
        fz_seek(t, ro, buf, len, verified);
    }
}

/* Opens img[0, n) (n must be the buffer's exact size) in each checksum mode
 * whose bit is set in modes and exercises it.  strict: the builder wrote
 * the image and nothing changed it, so everything must succeed. */
static inline void fz_exercise(const uint8_t *img, size_t n, const uint8_t *probe, size_t plen,
                               unsigned modes, int strict)
{
    for (int mode = 0; mode < 4; mode++) {
        fz_cache cache;
        kv_block_cache_ops ops = {&cache, fz_lookup, fz_insert, fz_release};
        kv_sst_read_opts ro;
        kv_sst *t;
        kv_err err;
        kv_status st;
        int verified;

        if (!(modes & (1u << mode))) continue;
        memset(&cache, 0, sizeof cache);
        st = kv_sst_open(img, n, FZ_PATH, 0, (kv_checksum_mode)mode, &t, &err);
        if (strict) FZ_CHECK(st == KV_OK);
        if (st != KV_OK) {
#ifdef FZ_DEBUG
            fprintf(stderr, "mode %d: open: %s\n", mode, err.msg);
#endif
            FZ_CHECK(st == KV_CORRUPTION || st == KV_NO_MEMORY);
            FZ_CHECK(strstr(err.msg, FZ_PATH) != NULL);
            continue;
        }
        st = kv_sst_verify(t, &err);
        verified = st == KV_OK;
#ifdef FZ_DEBUG
        fprintf(stderr, "mode %d: opened, verify: %s\n", mode, verified ? "ok" : err.msg);
#endif
        if (mode == KV_VERIFY_ON_TABLE_READ || mode == KV_VERIFY_ON_TABLE_AND_BLOCK_READ ||
            strict)
            FZ_CHECK(verified);
        if (!verified) FZ_CHECK(st == KV_CORRUPTION && strstr(err.msg, FZ_PATH) != NULL);
        ro.cache = (mode & 1) ? &ops : NULL;
        ro.fill_cache = 1;
        ro.verify = mode >= KV_VERIFY_ON_BLOCK_READ;
        fz_read_blocks(t, &ro, verified);
        fz_iterate(t, &ro, 0, verified);
        fz_iterate(t, &ro, 1, verified);
        fz_seeks(t, &ro, probe, plen, verified);
        kv_sst_close(t);
        fz_cache_free(&cache);
    }
}

#endif
