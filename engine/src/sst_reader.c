/*
 * sst_reader.c - reading an SSTable in place from its mapped bytes (see
 * sst.h; bytes in doc/FORMATS.md): opening and validating a table, reading
 * blocks (raw in place, compressed through the block cache hook), and the
 * two-way table iterator.
 *
 * Trust model.  kv_sst_open() checks the footer, every section checksum and
 * every index entry, so afterwards the index and properties can be used
 * without further checks.  Block payloads are checked when a block is read:
 * its header (count, offsets array, first entry) always, every entry only
 * when the caller asked for verification (ro->verify, kv_sst_verify); in
 * the normal read path each entry is checked as it is decoded
 * (sst_ent_decode), so damage gives KV_CORRUPTION, never a read outside the
 * block, without an O(block) pass per point lookup.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "hash.h"
#include "ikey.h"
#include "sst.h"
#include "sst_format.h"

struct kv_sst {
    const uint8_t *data;
    uint64_t size;
    char *path;
    kv_sst_props props;
    const uint8_t *index; /* nblocks fixed-size entries */
    const uint8_t *ikeys; /* key area */
    uint32_t nblocks;
    const uint8_t *bloom; /* filter bytes (without checksum), NULL if none */
    size_t bloom_len;
    const uint8_t *smallest, *largest;
    size_t smallest_len, largest_len;
};

static kv_status bad(kv_err *err, const char *path, uint64_t off, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* KV_CORRUPTION: table "path": <what> at offset <off>. */
static kv_status bad(kv_err *err, const char *path, uint64_t off, const char *fmt, ...)
{
    char what[256];
    va_list ap;

    if (!err) return KV_CORRUPTION;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return kv_seterr(err, KV_CORRUPTION, 0, "table \"%s\": %s at offset %llu", path, what,
                     (unsigned long long)off);
}

static inline const uint8_t *ix_entry(const kv_sst *t, uint32_t i)
{
    return t->index + (size_t)i * SST_INDEX_ENTRY;
}

static inline const uint8_t *ix_key(const kv_sst *t, uint32_t i, size_t *len)
{
    const uint8_t *e = ix_entry(t, i);
    *len = kv_get_u32(e + SST_IX_KEY_LEN);
    return t->ikeys + kv_get_u32(e + SST_IX_KEY_OFF);
}

static inline uint64_t ix_off(const kv_sst *t, uint32_t i)
{
    return kv_get_u64(ix_entry(t, i) + SST_IX_OFF);
}

/* ---- opening ---- */

static void parse_props(const uint8_t *p, kv_sst_props *pr)
{
    pr->table_id = kv_get_u64(p + SST_PR_TABLE_ID);
    pr->file_size = kv_get_u64(p + SST_PR_FILE_SIZE);
    pr->num_entries = kv_get_u64(p + SST_PR_NUM_ENTRIES);
    pr->num_deletes = kv_get_u64(p + SST_PR_NUM_DELETES);
    pr->num_value_ptrs = kv_get_u64(p + SST_PR_NUM_VPTRS);
    pr->vlog_bytes = kv_get_u64(p + SST_PR_VLOG_BYTES);
    pr->raw_key_bytes = kv_get_u64(p + SST_PR_RAW_KEY_BYTES);
    pr->raw_value_bytes = kv_get_u64(p + SST_PR_RAW_VALUE_BYTES);
    pr->min_version = kv_get_u64(p + SST_PR_MIN_VERSION);
    pr->max_version = kv_get_u64(p + SST_PR_MAX_VERSION);
    pr->num_blocks = kv_get_u32(p + SST_PR_NUM_BLOCKS);
    pr->compression = kv_get_u32(p + SST_PR_COMPRESSION);
    pr->created_unix = kv_get_u64(p + SST_PR_CREATED);
}

/* Checks every index entry: blocks tile [0, data_end) in order, keys lie in
 * the key area and increase strictly, counts add up. */
static kv_status check_index(const kv_sst *t, uint64_t index_off, uint64_t data_end,
                             uint64_t key_area, kv_err *err)
{
    uint64_t expect = 0, total = 0;
    const uint8_t *prev = NULL;
    size_t prev_len = 0;

    for (uint32_t i = 0; i < t->nblocks; i++) {
        const uint8_t *e = ix_entry(t, i);
        uint64_t off = kv_get_u64(e + SST_IX_OFF),
                 eoff = index_off + (uint64_t)i * SST_INDEX_ENTRY;
        uint32_t sz = kv_get_u32(e + SST_IX_SIZE), ko = kv_get_u32(e + SST_IX_KEY_OFF);
        uint32_t kl = kv_get_u32(e + SST_IX_KEY_LEN), cnt = kv_get_u32(e + SST_IX_COUNT);
        const uint8_t *key;

        if (off != expect || sz <= SST_BLOCK_TRAILER || sz > data_end - off)
            return bad(err, t->path, eoff,
                       "index entry %u (block at %llu, %u bytes) is outside the data area or "
                       "out of order",
                       i, (unsigned long long)off, sz);
        if (kl < KV_TS_SIZE || kl > SST_MAX_IKEY || ko > key_area || kl > key_area - ko)
            return bad(err, t->path, eoff, "index entry %u has a bad key location", i);
        if (cnt == 0) return bad(err, t->path, eoff, "index entry %u has no entries", i);
        key = t->ikeys + ko;
        if (prev && kv_ikey_cmp(prev, prev_len, key, kl) >= 0)
            return bad(err, t->path, eoff, "index entry %u is not in key order", i);
        prev = key;
        prev_len = kl;
        expect += sz;
        total += cnt;
    }
    if (expect != data_end)
        return bad(err, t->path, expect, "blocks end before the index (at %llu)",
                   (unsigned long long)data_end);
    if (total != t->props.num_entries)
        return bad(err, t->path, index_off, "index counts %llu entries, properties %llu",
                   (unsigned long long)total, (unsigned long long)t->props.num_entries);
    return KV_OK;
}

static kv_status open_checks(kv_sst *t, uint64_t expect_id, kv_err *err)
{
    const uint8_t *d = t->data, *ft, *pp;
    uint64_t size = t->size, ft_off, limit, io, is, bo, bs, po, ps, entries;
    uint32_t version, sl, ll;
    size_t klen;
    const uint8_t *key;

    if (size < SST_FOOTER_SIZE)
        return bad(err, t->path, 0, "file of %llu bytes is too short for a table",
                   (unsigned long long)size);
    ft_off = size - SST_FOOTER_SIZE;
    ft = d + ft_off;
    if (kv_get_u64(ft + SST_FT_MAGIC) != SST_MAGIC)
        return bad(err, t->path, ft_off + SST_FT_MAGIC, "bad magic");
    if (kv_checksum64(ft, SST_FT_CKSUM) != kv_get_u64(ft + SST_FT_CKSUM))
        return bad(err, t->path, ft_off + SST_FT_CKSUM, "bad footer checksum");
    version = kv_get_u32(ft + SST_FT_VERSION);
    if (version != SST_FORMAT_VERSION)
        return bad(err, t->path, ft_off + SST_FT_VERSION, "unsupported format version %u",
                   version);

    io = kv_get_u64(ft + SST_FT_INDEX_OFF);
    is = kv_get_u64(ft + SST_FT_INDEX_SIZE);
    bo = kv_get_u64(ft + SST_FT_BLOOM_OFF);
    bs = kv_get_u64(ft + SST_FT_BLOOM_SIZE);
    po = kv_get_u64(ft + SST_FT_PROPS_OFF);
    ps = kv_get_u64(ft + SST_FT_PROPS_SIZE);
    t->nblocks = kv_get_u32(ft + SST_FT_NUM_BLOCKS);
    limit = ft_off;
    if (io > limit || is > limit - io || bo != io + is || bs > limit - bo || po != bo + bs ||
        po > limit || ps != limit - po)
        return bad(err, t->path, ft_off, "section offsets in the footer are out of bounds");
    if (t->nblocks == 0) return bad(err, t->path, ft_off + SST_FT_NUM_BLOCKS, "no blocks");
    entries = (uint64_t)t->nblocks * SST_INDEX_ENTRY;
    if (is < entries + SST_CKSUM_SIZE)
        return bad(err, t->path, ft_off + SST_FT_INDEX_SIZE,
                   "index of %llu bytes is too small for %u blocks", (unsigned long long)is,
                   t->nblocks);

    /* section checksums */
    if (kv_checksum64(d + io, (size_t)(is - SST_CKSUM_SIZE)) !=
        kv_get_u64(d + io + is - SST_CKSUM_SIZE))
        return bad(err, t->path, io, "bad index checksum");
    if (bs) {
        if (bs < SST_CKSUM_SIZE + 2)
            return bad(err, t->path, bo, "bloom filter section of %llu bytes is too small",
                       (unsigned long long)bs);
        if (kv_checksum64(d + bo, (size_t)(bs - SST_CKSUM_SIZE)) !=
            kv_get_u64(d + bo + bs - SST_CKSUM_SIZE))
            return bad(err, t->path, bo, "bad bloom filter checksum");
        t->bloom = d + bo;
        t->bloom_len = (size_t)(bs - SST_CKSUM_SIZE);
    }
    if (ps < SST_PROPS_FIXED + SST_CKSUM_SIZE)
        return bad(err, t->path, po, "properties section of %llu bytes is too small",
                   (unsigned long long)ps);
    pp = d + po;
    if (kv_checksum64(pp, (size_t)(ps - SST_CKSUM_SIZE)) !=
        kv_get_u64(pp + ps - SST_CKSUM_SIZE))
        return bad(err, t->path, po, "bad properties checksum");

    /* properties */
    parse_props(pp, &t->props);
    sl = kv_get_u32(pp + SST_PR_SMALLEST_LEN);
    ll = kv_get_u32(pp + SST_PR_LARGEST_LEN);
    if (sl < KV_TS_SIZE || sl > SST_MAX_IKEY || ll < KV_TS_SIZE || ll > SST_MAX_IKEY ||
        (uint64_t)SST_PROPS_FIXED + sl + ll + SST_CKSUM_SIZE != ps)
        return bad(err, t->path, po + SST_PR_SMALLEST_LEN, "bad key lengths in properties");
    t->smallest = pp + SST_PROPS_FIXED;
    t->smallest_len = sl;
    t->largest = t->smallest + sl;
    t->largest_len = ll;
    if (t->props.file_size != size)
        return bad(err, t->path, po + SST_PR_FILE_SIZE,
                   "properties say the file has %llu bytes, it has %llu",
                   (unsigned long long)t->props.file_size, (unsigned long long)size);
    if (t->props.num_blocks != t->nblocks)
        return bad(err, t->path, po + SST_PR_NUM_BLOCKS,
                   "properties say %u blocks, the footer %u", t->props.num_blocks, t->nblocks);
    if (t->props.compression > KV_COMPRESS_ZSTD)
        return bad(err, t->path, po + SST_PR_COMPRESSION, "unknown compression %u",
                   t->props.compression);
    if (expect_id && t->props.table_id != expect_id)
        return bad(err, t->path, po + SST_PR_TABLE_ID, "table id %llu, expected %llu",
                   (unsigned long long)t->props.table_id, (unsigned long long)expect_id);

    /* index */
    t->index = d + io;
    t->ikeys = d + io + entries;
    if (check_index(t, io, io, is - SST_CKSUM_SIZE - entries, err) != KV_OK)
        return KV_CORRUPTION;
    key = ix_key(t, 0, &klen);
    if (klen != sl || memcmp(key, t->smallest, sl) != 0)
        return bad(err, t->path, po + SST_PROPS_FIXED,
                   "smallest key differs from the first key of the index");
    key = ix_key(t, t->nblocks - 1, &klen);
    if (kv_ikey_cmp(t->largest, ll, key, klen) < 0)
        return bad(err, t->path, po + SST_PROPS_FIXED + sl,
                   "largest key is before the first key of the last block");
    return KV_OK;
}

kv_status kv_sst_open(const uint8_t *data, uint64_t size, const char *path, uint64_t expect_id,
                      kv_checksum_mode mode, kv_sst **out, kv_err *err)
{
    kv_sst *t;
    kv_status st;

    *out = NULL;
    if (!path) path = "";
    t = calloc(1, sizeof *t);
    if (t) t->path = strdup(path);
    if (!t || !t->path) {
        free(t);
        return kv_seterr(err, KV_NO_MEMORY, 0, "table \"%s\": out of memory", path);
    }
    t->data = data;
    t->size = size;
    st = open_checks(t, expect_id, err);
    if (st == KV_OK &&
        (mode == KV_VERIFY_ON_TABLE_READ || mode == KV_VERIFY_ON_TABLE_AND_BLOCK_READ))
        st = kv_sst_verify(t, err);
    if (st != KV_OK) {
        kv_sst_close(t);
        return st;
    }
    *out = t;
    return KV_OK;
}

void kv_sst_close(kv_sst *t)
{
    if (!t) return;
    free(t->path);
    free(t);
}

const kv_sst_props *kv_sst_get_props(const kv_sst *t)
{
    return &t->props;
}

const uint8_t *kv_sst_smallest(const kv_sst *t, size_t *len)
{
    *len = t->smallest_len;
    return t->smallest;
}

const uint8_t *kv_sst_largest(const kv_sst *t, size_t *len)
{
    *len = t->largest_len;
    return t->largest;
}

uint32_t kv_sst_num_blocks(const kv_sst *t)
{
    return t->nblocks;
}

const char *kv_sst_path(const kv_sst *t)
{
    return t->path;
}

int kv_sst_may_contain(const kv_sst *t, const uint8_t *ukey, size_t n)
{
    if (!t->bloom) return 1;
    return kv_bloom_may_contain(t->bloom, t->bloom_len, kv_key_hash(ukey, n));
}

/* ---- blocks ---- */

/* Checks what every use of a block relies on: the count (matching the
 * index), the offsets array inside the payload, and entry 0 at offset 0
 * with overlap 0.  With all set, also decodes every entry. */
static int block_check(kv_block_ref *r, uint32_t expect_count, int all)
{
    const uint8_t *d = r->data;
    size_t len = r->len, end;
    uint32_t n;
    sst_ent e;

    if (len < 4) return -1;
    n = kv_get_u32(d + len - 4);
    if (n == 0 || n != expect_count || n > (len - 4) / 4) return -1;
    end = len - 4 - (size_t)n * 4;
    if (end < SST_ENTRY_HEADER) return -1;
    r->offsets = d + end;
    r->num_entries = n;
    if (kv_get_u32(r->offsets) != 0 || kv_get_u16(d) != 0) return -1;
    if (sst_ent_decode(d, r->offsets, n, 0, &e) != 0) return -1;
    if (all)
        for (uint32_t i = 1; i < n; i++)
            if (sst_ent_decode(d, r->offsets, n, i, &e) != 0) return -1;
    return 0;
}

/* Rewrites a decompression error as "table ...: ... at offset off". */
static kv_status block_err(const kv_sst *t, uint64_t off, kv_status st, kv_err *err)
{
    char tmp[KV_ERRMSG_MAX];

    if (!err) return st;
    memcpy(tmp, err->msg, sizeof tmp);
    tmp[sizeof tmp - 1] = '\0';
    return kv_seterr(err, st, err->sys_errno, "table \"%s\": %s at offset %llu", t->path, tmp,
                     (unsigned long long)off);
}

kv_status kv_sst_read_block(const kv_sst *t, uint32_t i, const kv_sst_read_opts *ro,
                            kv_block_ref *out, kv_err *err)
{
    static const kv_sst_read_opts defaults;
    const kv_block_cache_ops *cache;
    const uint8_t *p, *e, *d;
    uint64_t off;
    size_t plen, len;
    uint32_t count;
    uint8_t type;
    void *pin = NULL;

    memset(out, 0, sizeof *out);
    if (!ro) ro = &defaults;
    if (i >= t->nblocks)
        return kv_seterr(err, KV_INVALID, 0, "table \"%s\": block %u of %u", t->path, i,
                         t->nblocks);
    e = ix_entry(t, i);
    off = kv_get_u64(e + SST_IX_OFF);
    plen = kv_get_u32(e + SST_IX_SIZE) - SST_BLOCK_TRAILER;
    count = kv_get_u32(e + SST_IX_COUNT);
    p = t->data + off;
    type = p[plen];
    cache = ro->cache;

    if (type != KV_COMPRESS_NONE && cache && cache->lookup) {
        d = cache->lookup(cache->ctx, t->props.table_id, off, &len, &pin);
        if (d) {
            out->data = d;
            out->len = len;
            out->pin = pin;
            out->cache = cache;
            goto check;
        }
    }
    /* The checksum guards the file bytes; a cache hit (above) does not use them. */
    if (ro->verify && kv_checksum64(p, plen + 1) != kv_get_u64(p + plen + 1))
        return bad(err, t->path, off, "bad block checksum");
    if (type == KV_COMPRESS_NONE) {
        out->data = p;
        out->len = plen;
    } else if (type == KV_COMPRESS_SNAPPY || type == KV_COMPRESS_ZSTD) {
        uint8_t *buf;
        kv_status st = kv_decompress((kv_compression)type, p, plen, SST_MAX_BLOCK, &buf, &len,
                                     "block", err);
        if (st != KV_OK) return block_err(t, off, st, err);
        out->data = buf;
        out->len = len;
        out->owned = buf;
        if (ro->fill_cache && cache && cache->insert) {
            d = cache->insert(cache->ctx, t->props.table_id, off, buf, len, &pin);
            if (d) {
                free(buf);
                out->owned = NULL;
                out->data = d;
                out->pin = pin;
                out->cache = cache;
            }
        }
    } else {
        return bad(err, t->path, off + plen, "unknown block compression type %u", type);
    }
check:
    if (block_check(out, count, ro->verify) != 0) {
        kv_block_ref_release(out);
        return bad(err, t->path, off, "malformed block %u", i);
    }
    return KV_OK;
}

void kv_block_ref_release(kv_block_ref *ref)
{
    if (ref->pin && ref->cache && ref->cache->release)
        ref->cache->release(ref->cache->ctx, ref->pin);
    free(ref->owned);
    memset(ref, 0, sizeof *ref);
}

/* Grows *buf to hold n bytes. */
static int grow(uint8_t **buf, size_t *cap, size_t n)
{
    size_t ncap;
    uint8_t *p;

    if (n <= *cap) return 0;
    ncap = *cap ? *cap : 64;
    while (ncap < n) ncap *= 2;
    p = realloc(*buf, ncap);
    if (!p) return -1;
    *buf = p;
    *cap = ncap;
    return 0;
}

/* Writes the key of entry e (of a block with base key base) into *buf. */
static int entry_key(const uint8_t *base, const sst_ent *e, uint8_t **buf, size_t *cap,
                     size_t *len)
{
    size_t n = (size_t)e->overlap + e->diff_len;

    if (grow(buf, cap, n) != 0) return -1;
    memcpy(*buf, base, e->overlap);
    memcpy(*buf + e->overlap, e->diff, e->diff_len);
    *len = n;
    return 0;
}

kv_status kv_sst_verify(const kv_sst *t, kv_err *err)
{
    kv_sst_read_opts ro = {NULL, 0, 1};
    uint8_t *key = NULL, *prev = NULL, *tmp;
    size_t key_cap = 0, prev_cap = 0, key_len = 0, prev_len = 0, ixlen, tcap;
    kv_status st = KV_OK;

    for (uint32_t i = 0; i < t->nblocks && st == KV_OK; i++) {
        kv_block_ref r;
        uint32_t base_len;
        const uint8_t *base, *ixk;

        st = kv_sst_read_block(t, i, &ro, &r, err);
        if (st != KV_OK) break;
        base = sst_block_base(r.data, &base_len);
        ixk = ix_key(t, i, &ixlen);
        if (ixlen != base_len || memcmp(ixk, base, ixlen) != 0)
            st = bad(err, t->path, ix_off(t, i), "first key of block %u differs from the index",
                     i);
        for (uint32_t j = 0; j < r.num_entries && st == KV_OK; j++) {
            sst_ent e;
            if (sst_ent_decode(r.data, r.offsets, r.num_entries, j, &e) != 0) {
                st = bad(err, t->path, ix_off(t, i), "bad entry %u in block %u", j, i);
                break;
            }
            if (entry_key(base, &e, &key, &key_cap, &key_len) != 0) {
                st = kv_seterr(err, KV_NO_MEMORY, 0, "table \"%s\": out of memory", t->path);
                break;
            }
            if (prev_len && kv_ikey_cmp(prev, prev_len, key, key_len) >= 0)
                st = bad(err, t->path, ix_off(t, i), "entry %u of block %u is out of order", j,
                         i);
            tmp = prev, prev = key, key = tmp;
            tcap = prev_cap, prev_cap = key_cap, key_cap = tcap;
            prev_len = key_len;
        }
        kv_block_ref_release(&r);
    }
    if (st == KV_OK && (prev_len != t->largest_len || memcmp(prev, t->largest, prev_len) != 0))
        st = bad(err, t->path, t->largest - t->data, "largest key differs from the last entry");
    free(key);
    free(prev);
    return st;
}

/* ---- iterator ---- */

/* Compares internal key a (n bytes, n >= 8) with the key of entry e, which
 * is base[0, overlap) ++ diff, without building it. */
static int cmp_entry(const uint8_t *a, size_t n, const uint8_t *base, const sst_ent *e)
{
    size_t kn = (size_t)e->overlap + e->diff_len, au = n - KV_TS_SIZE, ku = kn - KV_TS_SIZE;
    size_t m = au < ku ? au : ku, p = m < e->overlap ? m : e->overlap;
    uint8_t suf[KV_TS_SIZE];
    int c;

    if (p) {
        c = memcmp(a, base, p);
        if (c) return c;
    }
    if (m > p) {
        c = memcmp(a + p, e->diff, m - p); /* here p == overlap */
        if (c) return c;
    }
    if (au != ku) return au < ku ? -1 : 1;
    if (ku >= e->overlap) return memcmp(a + au, e->diff + (ku - e->overlap), KV_TS_SIZE);
    for (size_t j = 0; j < KV_TS_SIZE; j++) {
        size_t pos = ku + j;
        suf[j] = pos < e->overlap ? base[pos] : e->diff[pos - e->overlap];
    }
    return memcmp(a + au, suf, KV_TS_SIZE);
}

static void it_fail(kv_sst_iter *it, kv_status st)
{
    it->status = st;
    it->valid = 0;
    kv_block_ref_release(&it->ref);
    it->block = -1;
}

static void it_invalidate(kv_sst_iter *it)
{
    it->valid = 0;
    kv_block_ref_release(&it->ref);
    it->block = -1;
}

static int it_bad_entry(kv_sst_iter *it, uint32_t j)
{
    it_fail(it, bad(&it->err, it->t->path, ix_off(it->t, (uint32_t)it->block),
                    "bad entry %u in block %lld", j, (long long)it->block));
    return -1;
}

/* Makes block b current; -1 (iterator failed) on error. */
static int it_load(kv_sst_iter *it, uint32_t b)
{
    kv_status st;

    if (it->block == (int64_t)b && it->ref.data) return 0;
    kv_block_ref_release(&it->ref);
    it->block = -1;
    st = kv_sst_read_block(it->t, b, &it->ro, &it->ref, &it->err);
    if (st != KV_OK) {
        it_fail(it, st);
        return -1;
    }
    it->block = b;
    return 0;
}

/* Positions on entry j of the current block. */
static void it_set(kv_sst_iter *it, uint32_t j)
{
    uint32_t base_len;
    const uint8_t *base = sst_block_base(it->ref.data, &base_len);
    sst_ent e;

    if (sst_ent_decode(it->ref.data, it->ref.offsets, it->ref.num_entries, j, &e) != 0) {
        it_bad_entry(it, j);
        return;
    }
    if (entry_key(base, &e, &it->key, &it->key_cap, &it->key_len) != 0) {
        it_fail(it, kv_seterr(&it->err, KV_NO_MEMORY, 0, "table \"%s\": out of memory",
                              it->t->path));
        return;
    }
    it->val = e.val;
    it->val_len = e.val_len;
    it->entry = j;
    it->valid = 1;
}

/* In the current block: the first entry whose key is >= a (strict: > a).
 * Returns num_entries if there is none, or -1 (iterator failed). */
static int64_t it_bsearch(kv_sst_iter *it, const uint8_t *a, size_t n, int strict)
{
    const uint8_t *d = it->ref.data, *offs = it->ref.offsets, *base;
    uint32_t lo = 0, hi = it->ref.num_entries, cnt = hi, base_len;
    sst_ent e;

    base = sst_block_base(d, &base_len);
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c;
        if (sst_ent_decode(d, offs, cnt, mid, &e) != 0) return it_bad_entry(it, mid);
        c = cmp_entry(a, n, base, &e);
        if (c > 0 || (strict && c == 0))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The last block whose first key is <= a, or -1 if a is before them all. */
static int64_t ix_find(const kv_sst *t, const uint8_t *a, size_t n)
{
    uint32_t lo = 0, hi = t->nblocks;

    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        size_t kl;
        const uint8_t *k = ix_key(t, mid, &kl);
        if (kv_ikey_cmp(k, kl, a, n) <= 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (int64_t)lo - 1;
}

static int it_usable(kv_sst_iter *it)
{
    if (it->status != KV_OK) {
        it->valid = 0;
        return 0;
    }
    return 1;
}

void kv_sst_iter_init(kv_sst_iter *it, const kv_sst *t, const kv_sst_read_opts *ro)
{
    static const kv_sst_read_opts defaults;

    /* Field by field: it->err (480 bytes) is only read after a failure, and
     * point lookups initialise an iterator per table probed. */
    it->t = t;
    it->ro = ro ? *ro : defaults;
    it->block = -1;
    memset(&it->ref, 0, sizeof it->ref);
    it->entry = 0;
    it->key = NULL;
    it->key_len = it->key_cap = 0;
    it->val = NULL;
    it->val_len = 0;
    it->valid = 0;
    it->status = KV_OK;
    it->err.code = KV_OK;
    it->err.sys_errno = 0;
    it->err.msg[0] = '\0';
}

void kv_sst_iter_done(kv_sst_iter *it)
{
    kv_block_ref_release(&it->ref);
    free(it->key);
    it->key = NULL;
    it->key_len = it->key_cap = 0;
    it->valid = 0;
    it->block = -1;
}

void kv_sst_iter_first(kv_sst_iter *it)
{
    it->valid = 0;
    if (!it_usable(it) || it_load(it, 0) != 0) return;
    it_set(it, 0);
}

void kv_sst_iter_last(kv_sst_iter *it)
{
    it->valid = 0;
    if (!it_usable(it) || it_load(it, it->t->nblocks - 1) != 0) return;
    it_set(it, it->ref.num_entries - 1);
}

static int check_target(kv_sst_iter *it, size_t n)
{
    if (n >= KV_TS_SIZE) return 0;
    it_fail(it, kv_seterr(&it->err, KV_INVALID, 0, "table \"%s\": seek to a %zu-byte key",
                          it->t->path, n));
    return -1;
}

void kv_sst_iter_seek(kv_sst_iter *it, const uint8_t *ikey, size_t n)
{
    int64_t b, j;

    it->valid = 0;
    if (!it_usable(it) || check_target(it, n) != 0) return;
    b = ix_find(it->t, ikey, n);
    if (b < 0) b = 0;
    if (it_load(it, (uint32_t)b) != 0) return;
    j = it_bsearch(it, ikey, n, 0);
    if (j < 0) return;
    if (j < it->ref.num_entries) {
        it_set(it, (uint32_t)j);
        return;
    }
    if ((uint64_t)b + 1 >= it->t->nblocks) {
        it_invalidate(it);
        return;
    }
    if (it_load(it, (uint32_t)b + 1) != 0) return;
    it_set(it, 0);
}

void kv_sst_iter_seek_for_prev(kv_sst_iter *it, const uint8_t *ikey, size_t n)
{
    int64_t b, j;

    it->valid = 0;
    if (!it_usable(it) || check_target(it, n) != 0) return;
    b = ix_find(it->t, ikey, n);
    if (b < 0) {
        it_invalidate(it);
        return;
    }
    if (it_load(it, (uint32_t)b) != 0) return;
    j = it_bsearch(it, ikey, n, 1);
    if (j < 0) return;
    if (j > 0) {
        it_set(it, (uint32_t)j - 1);
        return;
    }
    /* Only if the block's first key disagrees with the index. */
    if (b == 0) {
        it_invalidate(it);
        return;
    }
    if (it_load(it, (uint32_t)b - 1) != 0) return;
    it_set(it, it->ref.num_entries - 1);
}

void kv_sst_iter_next(kv_sst_iter *it)
{
    if (!it->valid) return;
    if ((uint64_t)it->entry + 1 < it->ref.num_entries) {
        it_set(it, (uint32_t)it->entry + 1);
        return;
    }
    if ((uint64_t)it->block + 1 >= it->t->nblocks) {
        it_invalidate(it);
        return;
    }
    if (it_load(it, (uint32_t)it->block + 1) != 0) return;
    it_set(it, 0);
}

void kv_sst_iter_prev(kv_sst_iter *it)
{
    if (!it->valid) return;
    if (it->entry > 0) {
        it_set(it, (uint32_t)it->entry - 1);
        return;
    }
    if (it->block <= 0) {
        it_invalidate(it);
        return;
    }
    if (it_load(it, (uint32_t)it->block - 1) != 0) return;
    it_set(it, it->ref.num_entries - 1);
}
