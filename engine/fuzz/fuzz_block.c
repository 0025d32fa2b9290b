/*
 * fuzz_block.c - libFuzzer target for the decoding of data blocks
 * (block_check, sst_ent_decode, the iterator's binary searches and key
 * reconstruction in sst_reader.c, and the snappy/zstd decompression path).
 *
 * The input supplies the block contents; the target wraps them in an
 * otherwise valid table (index whose first keys and counts are taken from
 * the blocks, properties, no or a real bloom filter, footer, all checksums
 * right), so every input reaches the block decoder instead of stopping at a
 * checksum.
 *
 * Input: one byte m, then the rest r.
 *   blocks   1 + (m & 3) % 3; with more than one, r is cut into pieces each
 *            prefixed by a u16 length (the last takes what is left)
 *   (m >> 2) & 3 how a piece becomes a block: 0 stored raw, 1 compressed
 *            (m & 16: zstd, else snappy; raw if that does not pay), 2 the
 *            piece is stored as a snappy payload, 3 as a zstd payload (so
 *            the decompressors see arbitrary bytes)
 *   m & 32   add a bloom filter built from the blocks' first user keys
 *   m >> 6   the checksum modes to open with (0 = all four)
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_table.h"

#define MAX_BLOCKS 3

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct gbuf {
    uint8_t *p;
    size_t n, cap;
} gbuf;

static void put(gbuf *b, const void *d, size_t n)
{
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->n + n) cap *= 2;
        b->p = realloc(b->p, cap);
        FZ_CHECK(b->p != NULL);
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void put_u32(gbuf *b, uint32_t v)
{
    uint8_t x[4];
    kv_put_u32(x, v);
    put(b, x, 4);
}

static void put_u64(gbuf *b, uint64_t v)
{
    uint8_t x[8];
    kv_put_u64(x, v);
    put(b, x, 8);
}

/* The key of entry i of block contents c[0, n) if it decodes, into key
 * (SST_MAX_IKEY + 1 bytes); 0 on success. */
static int entry_key(const uint8_t *c, size_t n, uint32_t i, uint8_t *key, size_t *klen)
{
    uint32_t cnt, blen;
    const uint8_t *offs, *base;
    sst_ent e;

    if (n < 4) return -1;
    cnt = kv_get_u32(c + n - 4);
    if (cnt == 0 || cnt > (n - 4) / 4 || i >= cnt) return -1;
    offs = c + n - 4 - (size_t)cnt * 4;
    if ((size_t)(offs - c) < SST_ENTRY_HEADER) return -1;
    if (kv_get_u32(offs) != 0 || kv_get_u16(c) != 0) return -1;
    base = sst_block_base(c, &blen);
    if ((size_t)blen > (size_t)(offs - c) - SST_ENTRY_HEADER) return -1;
    if (sst_ent_decode(c, offs, cnt, i, &e) != 0) return -1;
    if ((size_t)e.overlap + e.diff_len > SST_MAX_IKEY) return -1;
    memcpy(key, base, e.overlap);
    memcpy(key + e.overlap, e.diff, e.diff_len);
    *klen = (size_t)e.overlap + e.diff_len;
    return 0;
}

typedef struct blk {
    const uint8_t *piece; /* input bytes */
    size_t plen;
    uint8_t *payload; /* what is stored (malloc'd) */
    size_t len;
    uint8_t type;
    uint8_t *owned;     /* decompressed piece, if it was stored as a payload */
    const uint8_t *dec; /* what the block decodes to (NULL: not decodable) */
    size_t declen;
    uint32_t count;
    uint8_t key[SST_MAX_IKEY + 1];
    size_t klen;
} blk;

static void make_block(blk *b, int how, int zstd, uint32_t i)
{
    kv_err err;
    kv_compression used = KV_COMPRESS_NONE;
    size_t cap = 0;

    b->payload = b->owned = NULL;
    b->type = KV_COMPRESS_NONE;
    b->dec = b->piece;
    b->declen = b->plen;
    if (how == 1) {
        if (b->plen &&
            kv_compress(zstd ? KV_COMPRESS_ZSTD : KV_COMPRESS_SNAPPY, 1, b->piece, b->plen,
                        &b->payload, &cap, &b->len, &used, &err) == KV_OK &&
            used != KV_COMPRESS_NONE) {
            b->type = (uint8_t)used;
        } else {
            free(b->payload);
            b->payload = NULL;
        }
    } else if (how >= 2) {
        b->type = how == 2 ? KV_COMPRESS_SNAPPY : KV_COMPRESS_ZSTD;
        if (kv_decompress((kv_compression)b->type, b->piece, b->plen, 1 << 20, &b->owned,
                          &b->declen, "block", &err) != KV_OK)
            b->owned = NULL;
        b->dec = b->owned;
        if (!b->dec) b->declen = 0;
    }
    if (!b->payload) {
        b->payload = malloc(b->plen ? b->plen : 1);
        FZ_CHECK(b->payload != NULL);
        if (b->plen) memcpy(b->payload, b->piece, b->plen);
        b->len = b->plen;
    }
    b->count = b->declen >= 4 ? kv_get_u32(b->dec + b->declen - 4) : 1;
    if (b->count == 0) b->count = 1;
    if (entry_key(b->dec, b->declen, 0, b->key, &b->klen) != 0) {
        memset(b->key, 0, 12); /* a made-up first key */
        kv_put_u32(b->key + 8, i);
        b->klen = 12;
    }
}

/* The last key of the last block, if it decodes; else its first key. */
static void last_key(const blk *b, uint8_t *key, size_t *klen)
{
    if (entry_key(b->dec, b->declen, b->count - 1, key, klen) == 0 &&
        kv_ikey_cmp(key, *klen, b->key, b->klen) >= 0)
        return;
    memcpy(key, b->key, b->klen);
    *klen = b->klen;
}

/* Assembles the table; returns the image (malloc'd, exactly *n bytes). */
static uint8_t *assemble(blk *bs, uint32_t nb, int bloom, size_t *n)
{
    static uint8_t lk[SST_MAX_IKEY + 1];
    gbuf g = {0};
    uint64_t io, bo, po, entries = 0, off = 0;
    uint32_t ko = 0;
    size_t lkn;
    uint8_t pr[SST_PROPS_FIXED], ft[SST_FOOTER_SIZE];

    for (uint32_t i = 0; i < nb; i++) {
        uint8_t t[SST_BLOCK_TRAILER];
        size_t start = g.n;
        put(&g, bs[i].payload, bs[i].len);
        t[0] = bs[i].type;
        put(&g, t, 1);
        kv_put_u64(t + 1, kv_checksum64(g.p + start, bs[i].len + 1));
        put(&g, t + 1, SST_CKSUM_SIZE);
        entries += bs[i].count;
    }
    io = g.n;
    for (uint32_t i = 0; i < nb; i++) {
        put_u64(&g, off);
        put_u32(&g, (uint32_t)(bs[i].len + SST_BLOCK_TRAILER));
        put_u32(&g, ko);
        put_u32(&g, (uint32_t)bs[i].klen);
        put_u32(&g, bs[i].count);
        off += bs[i].len + SST_BLOCK_TRAILER;
        ko += (uint32_t)bs[i].klen;
    }
    for (uint32_t i = 0; i < nb; i++) put(&g, bs[i].key, bs[i].klen);
    put_u64(&g, kv_checksum64(g.p + io, g.n - io));
    bo = g.n;
    if (bloom) {
        uint64_t h[MAX_BLOCKS];
        uint8_t *f;
        size_t flen;
        kv_err err;
        for (uint32_t i = 0; i < nb; i++)
            h[i] = kv_key_hash(bs[i].key, bs[i].klen - KV_TS_SIZE);
        FZ_CHECK(kv_bloom_build(h, nb, 10, &f, &flen, &err) == KV_OK);
        put(&g, f, flen);
        free(f);
        put_u64(&g, kv_checksum64(g.p + bo, g.n - bo));
    }
    po = g.n;
    last_key(&bs[nb - 1], lk, &lkn);
    memset(pr, 0, sizeof pr);
    kv_put_u64(pr + SST_PR_TABLE_ID, 9);
    kv_put_u64(pr + SST_PR_NUM_ENTRIES, entries);
    kv_put_u64(pr + SST_PR_MIN_VERSION, 1);
    kv_put_u64(pr + SST_PR_MAX_VERSION, 1);
    kv_put_u32(pr + SST_PR_NUM_BLOCKS, nb);
    kv_put_u32(pr + SST_PR_SMALLEST_LEN, (uint32_t)bs[0].klen);
    kv_put_u32(pr + SST_PR_LARGEST_LEN, (uint32_t)lkn);
    kv_put_u64(pr + SST_PR_FILE_SIZE,
               po + SST_PROPS_FIXED + bs[0].klen + lkn + SST_CKSUM_SIZE + SST_FOOTER_SIZE);
    put(&g, pr, sizeof pr);
    put(&g, bs[0].key, bs[0].klen);
    put(&g, lk, lkn);
    put_u64(&g, kv_checksum64(g.p + po, g.n - po));
    memset(ft, 0, sizeof ft);
    kv_put_u64(ft + SST_FT_INDEX_OFF, io);
    kv_put_u64(ft + SST_FT_INDEX_SIZE, bo - io);
    kv_put_u64(ft + SST_FT_BLOOM_OFF, bo);
    kv_put_u64(ft + SST_FT_BLOOM_SIZE, po - bo);
    kv_put_u64(ft + SST_FT_PROPS_OFF, po);
    kv_put_u64(ft + SST_FT_PROPS_SIZE, g.n - po);
    kv_put_u32(ft + SST_FT_NUM_BLOCKS, nb);
    kv_put_u32(ft + SST_FT_VERSION, SST_FORMAT_VERSION);
    kv_put_u64(ft + SST_FT_MAGIC, SST_MAGIC);
    kv_put_u64(ft + SST_FT_CKSUM, kv_checksum64(ft, SST_FT_CKSUM));
    put(&g, ft, sizeof ft);
    /* exactly sized, so that ASan sees a read past the end */
    {
        uint8_t *img = malloc(g.n);
        FZ_CHECK(img != NULL);
        memcpy(img, g.p, g.n);
        free(g.p);
        *n = g.n;
        return img;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static blk bs[MAX_BLOCKS];
    uint32_t nb;
    const uint8_t *r;
    size_t rn, n;
    uint8_t *img;
    unsigned modes;

    if (size < 1) return 0;
    nb = 1 + (data[0] & 3) % 3;
    modes = data[0] >> 6;
    modes = modes ? (modes == 3 ? 15 : 1u << (modes - 1)) : 15;
    r = data + 1;
    rn = size - 1;
    for (uint32_t i = 0; i < nb; i++) {
        size_t len = rn;
        if (i + 1 < nb && rn >= 2) {
            len = kv_get_u16(r);
            r += 2;
            rn -= 2;
            if (len > rn) len = rn;
        }
        bs[i].piece = r;
        bs[i].plen = len;
        r += len;
        rn -= len;
        make_block(&bs[i], (data[0] >> 2) & 3, data[0] & 16, i);
    }
    img = assemble(bs, nb, data[0] & 32, &n);
    fz_exercise(img, n, data + 1, size - 1, modes, 0);
    free(img);
    for (uint32_t i = 0; i < nb; i++) {
        free(bs[i].payload);
        free(bs[i].owned);
    }
    return 0;
}
