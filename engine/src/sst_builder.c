/*
 * sst_builder.c - writes one SSTable (see sst.h; bytes in doc/FORMATS.md).
 *
 * Entries are prefix-compressed against the first key of their block into
 * an uncompressed block buffer.  When the next entry would push the block
 * past block_size, the block gets its offsets array and count, is
 * compressed (or kept raw if that does not pay), gets its trailer, and is
 * appended to an output buffer that is written to the file in chunks of
 * SST_WRITE_CHUNK bytes.  The builder remembers each block's first key for
 * the index, one hash per distinct user key for the bloom filter, and the
 * properties.  finish() appends index, bloom, properties and footer, writes,
 * syncs and closes.  The first I/O error closes and removes the file and is
 * returned by every later call.
 */
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "hash.h"
#include "ikey.h"
#include "sst.h"
#include "sst_format.h"

/* A growable byte buffer. */
typedef struct sbuf {
    uint8_t *p;
    size_t len, cap;
} sbuf;

struct kv_sst_builder {
    kv_env *env;
    kv_file *f; /* NULL once finished or abandoned */
    char *path;
    kv_sst_build_opts o;
    int bits_per_key; /* 0 = no bloom filter */
    int finished;
    kv_status failed; /* sticky error */
    kv_err ferr;

    sbuf blk;  /* current block's entries (uncompressed) */
    sbuf offs; /* its u32 entry offsets */
    uint32_t blk_count;
    sbuf cbuf;  /* compression output */
    void *zctx; /* zstd context, reused across blocks */

    sbuf out; /* bytes not yet written; they start at written */
    uint64_t written;

    sbuf index; /* SST_INDEX_ENTRY per finished block */
    sbuf ikeys; /* their first keys */
    uint32_t nblocks;

    uint64_t *hashes; /* one per distinct user key */
    size_t nhash, hash_cap;

    sbuf first, last; /* smallest and latest key added */
    kv_sst_props props;
};

static kv_status sbuf_reserve(sbuf *b, size_t more, kv_err *err)
{
    size_t need = b->len + more, ncap;
    uint8_t *p;

    if (need <= b->cap) return KV_OK;
    ncap = b->cap ? b->cap : 4096;
    while (ncap < need) ncap *= 2;
    p = realloc(b->p, ncap);
    if (!p) return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory building a table");
    b->p = p;
    b->cap = ncap;
    return KV_OK;
}

static void sbuf_free(sbuf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* Records a fatal error: closes and removes the unfinished file. */
static kv_status fail(kv_sst_builder *b, kv_status st, kv_err *err)
{
    if (b->failed != KV_OK) return kv_err_copy(err, &b->ferr);
    b->failed = st;
    if (err)
        b->ferr = *err;
    else
        kv_seterr(&b->ferr, st, 0, "table \"%s\": build failed", b->path);
    b->ferr.code = st;
    if (b->f) {
        b->env->close(b->f);
        b->f = NULL;
        b->env->remove(b->env, b->path, NULL);
    }
    return st;
}

static kv_status write_out(kv_sst_builder *b, kv_err *err)
{
    kv_status st;

    if (b->out.len == 0) return KV_OK;
    st = kv_env_pwrite(b->env, b->f, b->out.p, b->out.len, b->written, err);
    if (st != KV_OK) return fail(b, st, err);
    b->written += b->out.len;
    b->out.len = 0;
    return KV_OK;
}

kv_status kv_sst_builder_new(kv_env *env, const char *path, const kv_sst_build_opts *o,
                             kv_sst_builder **out, kv_err *err)
{
    kv_sst_builder *b;
    kv_status st;

    *out = NULL;
    if (!env) env = kv_env_posix();
    if (o->block_size <= 0 || (size_t)o->block_size > SST_MAX_BLOCK_SIZE)
        return kv_seterr(err, KV_INVALID, 0, "table \"%s\": invalid block size %d", path,
                         o->block_size);
    if (o->compression != KV_COMPRESS_NONE && o->compression != KV_COMPRESS_SNAPPY &&
        o->compression != KV_COMPRESS_ZSTD)
        return kv_seterr(err, KV_INVALID, 0, "table \"%s\": invalid compression %d", path,
                         (int)o->compression);
    if (!(o->bloom_fp >= 0 && o->bloom_fp < 1))
        return kv_seterr(err, KV_INVALID, 0, "table \"%s\": invalid bloom false-positive rate",
                         path);
    b = calloc(1, sizeof *b);
    if (b) b->path = strdup(path);
    if (!b || !b->path) {
        free(b);
        return kv_seterr(err, KV_NO_MEMORY, 0, "table \"%s\": out of memory", path);
    }
    b->env = env;
    b->o = *o;
    b->bits_per_key = o->bloom_fp > 0 ? kv_bloom_bits_per_key(o->bloom_fp) : 0;
    b->props.table_id = o->table_id;
    b->props.compression = (uint32_t)o->compression;
    b->props.min_version = UINT64_MAX;
    st = env->open(env, path, KV_O_RDWR | KV_O_CREATE | KV_O_EXCL, &b->f, err);
    if (st != KV_OK) {
        free(b->path);
        free(b);
        return st;
    }
    *out = b;
    return KV_OK;
}

/* Closes the current block: appends its offsets and count, compresses it,
 * adds the trailer and records its index entry. */
static kv_status finish_block(kv_sst_builder *b, kv_err *err)
{
    kv_compression used = KV_COMPRESS_NONE;
    size_t clen = 0, n, at;
    const uint8_t *src;
    uint32_t base_len;
    uint8_t *ie;
    kv_status st;

    if (b->blk_count == 0) return KV_OK;
    st = sbuf_reserve(&b->blk, b->offs.len + 4, err);
    if (st != KV_OK) return fail(b, st, err);
    memcpy(b->blk.p + b->blk.len, b->offs.p, b->offs.len);
    b->blk.len += b->offs.len;
    kv_put_u32(b->blk.p + b->blk.len, b->blk_count);
    b->blk.len += 4;

    st = kv_compress_ctx(&b->zctx, b->o.compression, b->o.zstd_level, b->blk.p, b->blk.len,
                         &b->cbuf.p, &b->cbuf.cap, &clen, &used, err);
    if (st != KV_OK) return fail(b, st, err);
    src = used == KV_COMPRESS_NONE ? b->blk.p : b->cbuf.p;
    n = used == KV_COMPRESS_NONE ? b->blk.len : clen;
    if (n + SST_BLOCK_TRAILER > UINT32_MAX)
        return fail(b, kv_seterr(err, KV_TOO_BIG, 0, "table \"%s\": block too big", b->path),
                    err);

    st = sbuf_reserve(&b->out, n + SST_BLOCK_TRAILER, err);
    if (st == KV_OK) st = sbuf_reserve(&b->index, SST_INDEX_ENTRY, err);
    sst_block_base(b->blk.p, &base_len);
    if (st == KV_OK) st = sbuf_reserve(&b->ikeys, base_len, err);
    if (st != KV_OK) return fail(b, st, err);
    if (b->ikeys.len + base_len > UINT32_MAX)
        return fail(b, kv_seterr(err, KV_TOO_BIG, 0, "table \"%s\": index too big", b->path),
                    err);

    at = b->out.len;
    memcpy(b->out.p + at, src, n);
    b->out.p[at + n] = (uint8_t)used;
    kv_put_u64(b->out.p + at + n + 1, kv_checksum64(b->out.p + at, n + 1));
    b->out.len += n + SST_BLOCK_TRAILER;

    ie = b->index.p + b->index.len;
    kv_put_u64(ie + SST_IX_OFF, b->written + at);
    kv_put_u32(ie + SST_IX_SIZE, (uint32_t)(n + SST_BLOCK_TRAILER));
    kv_put_u32(ie + SST_IX_KEY_OFF, (uint32_t)b->ikeys.len);
    kv_put_u32(ie + SST_IX_KEY_LEN, base_len);
    kv_put_u32(ie + SST_IX_COUNT, b->blk_count);
    b->index.len += SST_INDEX_ENTRY;
    memcpy(b->ikeys.p + b->ikeys.len, b->blk.p + SST_ENTRY_HEADER, base_len);
    b->ikeys.len += base_len;
    b->nblocks++;

    b->blk.len = 0;
    b->offs.len = 0;
    b->blk_count = 0;
    if (b->out.len >= SST_WRITE_CHUNK) return write_out(b, err);
    return KV_OK;
}

static size_t common_prefix(const uint8_t *a, size_t na, const uint8_t *b, size_t nb)
{
    size_t n = na < nb ? na : nb, i = 0;

    while (i + 8 <= n) {
        uint64_t x, y;
        memcpy(&x, a + i, 8);
        memcpy(&y, b + i, 8);
        if (x != y) return i + (size_t)(__builtin_ctzll(x ^ y) >> 3); /* little-endian */
        i += 8;
    }
    while (i < n && a[i] == b[i]) i++;
    return i;
}

static void count_props(kv_sst_builder *b, const uint8_t *ikey, size_t iklen, const uint8_t *vs,
                        size_t vslen)
{
    kv_sst_props *p = &b->props;
    uint64_t ver = kv_ikey_version(ikey, iklen);
    kv_vstruct v;

    p->num_entries++;
    p->raw_key_bytes += iklen;
    p->raw_value_bytes += vslen;
    if (ver < p->min_version) p->min_version = ver;
    if (ver > p->max_version) p->max_version = ver;
    if (vslen == 0) return;
    if (vs[0] & KV_META_DELETE) p->num_deletes++;
    if (vs[0] & KV_META_VALUE_PTR) {
        p->num_value_ptrs++;
        /* value pointer: u32 fid, u32 len, u64 offset */
        if (kv_vstruct_decode(vs, vslen, &v) == 0 && v.value_len >= 8)
            p->vlog_bytes += kv_get_u32(v.value + 4);
    }
}

kv_status kv_sst_builder_add(kv_sst_builder *b, const uint8_t *ikey, size_t iklen,
                             const uint8_t *vs, size_t vslen, kv_err *err)
{
    uint32_t overlap = 0, base_len;
    size_t esize, bsize;
    kv_status st;
    int new_ukey;

    if (b->failed != KV_OK) return kv_err_copy(err, &b->ferr);
    if (b->finished)
        return kv_seterr(err, KV_INVALID, 0, "table \"%s\": already finished", b->path);
    if (iklen < KV_TS_SIZE || iklen > SST_MAX_IKEY)
        return kv_seterr(err, KV_INVALID, 0, "table \"%s\": internal key of %zu bytes", b->path,
                         iklen);
    if (vslen > SST_MAX_BLOCK - 12 - iklen)
        return kv_seterr(err, KV_TOO_BIG, 0, "table \"%s\": entry of %zu bytes is too big",
                         b->path, iklen + vslen);
    if (b->props.num_entries && kv_ikey_cmp(ikey, iklen, b->last.p, b->last.len) <= 0)
        return kv_seterr(err, KV_INVALID, 0, "table \"%s\": keys added out of order", b->path);

    /* Close the block if this entry would push it past block_size. */
    if (b->blk_count) {
        const uint8_t *base = sst_block_base(b->blk.p, &base_len);
        overlap = (uint32_t)common_prefix(base, base_len, ikey, iklen);
        esize = SST_ENTRY_HEADER + (iklen - overlap) + vslen;
        bsize = b->blk.len + esize + 4 * ((size_t)b->blk_count + 1) + 4;
        if (bsize > (size_t)b->o.block_size) {
            st = finish_block(b, err);
            if (st != KV_OK) return st;
            overlap = 0;
        }
    }
    esize = SST_ENTRY_HEADER + (iklen - overlap) + vslen;
    st = sbuf_reserve(&b->blk, esize, err);
    if (st == KV_OK) st = sbuf_reserve(&b->offs, 4, err);
    if (st != KV_OK) return fail(b, st, err);
    kv_put_u32(b->offs.p + b->offs.len, (uint32_t)b->blk.len);
    b->offs.len += 4;
    {
        uint8_t *e = b->blk.p + b->blk.len;
        kv_put_u16(e, (uint16_t)overlap);
        kv_put_u16(e + 2, (uint16_t)(iklen - overlap));
        memcpy(e + SST_ENTRY_HEADER, ikey + overlap, iklen - overlap);
        if (vslen) memcpy(e + SST_ENTRY_HEADER + iklen - overlap, vs, vslen);
    }
    b->blk.len += esize;
    b->blk_count++;

    /* Bloom filter: one hash per distinct user key. */
    new_ukey = b->bits_per_key &&
               (b->props.num_entries == 0 || kv_ukey_cmp(ikey, kv_ikey_ulen(iklen), b->last.p,
                                                         kv_ikey_ulen(b->last.len)) != 0);
    if (new_ukey) {
        if (b->nhash == b->hash_cap) {
            size_t ncap = b->hash_cap ? b->hash_cap * 2 : 1024;
            uint64_t *h = realloc(b->hashes, ncap * sizeof *h);
            if (!h)
                return fail(
                    b, kv_seterr(err, KV_NO_MEMORY, 0, "out of memory building a table"), err);
            b->hashes = h;
            b->hash_cap = ncap;
        }
        b->hashes[b->nhash++] = kv_key_hash(ikey, kv_ikey_ulen(iklen));
    }

    if (b->props.num_entries == 0) {
        st = sbuf_reserve(&b->first, iklen, err);
        if (st != KV_OK) return fail(b, st, err);
        memcpy(b->first.p, ikey, iklen);
        b->first.len = iklen;
    }
    b->last.len = 0;
    st = sbuf_reserve(&b->last, iklen, err);
    if (st != KV_OK) return fail(b, st, err);
    memcpy(b->last.p, ikey, iklen);
    b->last.len = iklen;

    count_props(b, ikey, iklen, vs, vslen);
    return KV_OK;
}

uint64_t kv_sst_builder_size(const kv_sst_builder *b)
{
    uint64_t n = b->written + b->out.len;

    if (b->blk_count) n += b->blk.len + 4 * (uint64_t)b->blk_count + 4 + SST_BLOCK_TRAILER;
    n += b->index.len + b->ikeys.len + SST_INDEX_ENTRY + b->first.len;
    n += (uint64_t)b->nhash * (uint64_t)b->bits_per_key / 8;
    n += SST_PROPS_FIXED + b->first.len + b->last.len + SST_FOOTER_SIZE + 3 * SST_CKSUM_SIZE;
    return n;
}

uint64_t kv_sst_builder_entries(const kv_sst_builder *b)
{
    return b->props.num_entries;
}

const uint8_t *kv_sst_builder_smallest(const kv_sst_builder *b, size_t *len)
{
    *len = b->first.len;
    return b->first.p;
}

const uint8_t *kv_sst_builder_largest(const kv_sst_builder *b, size_t *len)
{
    *len = b->last.len;
    return b->last.p;
}

/* Appends the index, bloom, properties and footer sections to b->out. */
static kv_status build_tail(kv_sst_builder *b, kv_err *err)
{
    uint64_t index_off, bloom_off, props_off, index_size, props_size, bloom_size = 0;
    uint8_t *filter = NULL, *p;
    size_t filter_len = 0, tail;
    kv_status st;

    if (b->bits_per_key) {
        st = kv_bloom_build(b->hashes, b->nhash, b->bits_per_key, &filter, &filter_len, err);
        if (st != KV_OK) return st;
        bloom_size = filter_len + SST_CKSUM_SIZE;
    }
    index_off = b->written + b->out.len;
    index_size = b->index.len + b->ikeys.len + SST_CKSUM_SIZE;
    bloom_off = index_off + index_size;
    props_off = bloom_off + bloom_size;
    props_size = SST_PROPS_FIXED + b->first.len + b->last.len + SST_CKSUM_SIZE;
    tail = (size_t)(index_size + bloom_size + props_size) + SST_FOOTER_SIZE;
    st = sbuf_reserve(&b->out, tail, err);
    if (st != KV_OK) {
        free(filter);
        return st;
    }

    b->props.num_blocks = b->nblocks;
    b->props.file_size = props_off + props_size + SST_FOOTER_SIZE;
    b->props.created_unix = b->env->unix_seconds(b->env);

    /* index */
    p = b->out.p + b->out.len;
    memcpy(p, b->index.p, b->index.len);
    memcpy(p + b->index.len, b->ikeys.p, b->ikeys.len);
    kv_put_u64(p + index_size - SST_CKSUM_SIZE,
               kv_checksum64(p, (size_t)index_size - SST_CKSUM_SIZE));
    p += index_size;

    /* bloom */
    if (filter) {
        memcpy(p, filter, filter_len);
        kv_put_u64(p + filter_len, kv_checksum64(p, filter_len));
        p += bloom_size;
        free(filter);
    }

    /* properties */
    kv_put_u64(p + SST_PR_TABLE_ID, b->props.table_id);
    kv_put_u64(p + SST_PR_FILE_SIZE, b->props.file_size);
    kv_put_u64(p + SST_PR_NUM_ENTRIES, b->props.num_entries);
    kv_put_u64(p + SST_PR_NUM_DELETES, b->props.num_deletes);
    kv_put_u64(p + SST_PR_NUM_VPTRS, b->props.num_value_ptrs);
    kv_put_u64(p + SST_PR_VLOG_BYTES, b->props.vlog_bytes);
    kv_put_u64(p + SST_PR_RAW_KEY_BYTES, b->props.raw_key_bytes);
    kv_put_u64(p + SST_PR_RAW_VALUE_BYTES, b->props.raw_value_bytes);
    kv_put_u64(p + SST_PR_MIN_VERSION, b->props.min_version);
    kv_put_u64(p + SST_PR_MAX_VERSION, b->props.max_version);
    kv_put_u32(p + SST_PR_NUM_BLOCKS, b->props.num_blocks);
    kv_put_u32(p + SST_PR_COMPRESSION, b->props.compression);
    kv_put_u64(p + SST_PR_CREATED, b->props.created_unix);
    kv_put_u32(p + SST_PR_SMALLEST_LEN, (uint32_t)b->first.len);
    kv_put_u32(p + SST_PR_LARGEST_LEN, (uint32_t)b->last.len);
    memcpy(p + SST_PROPS_FIXED, b->first.p, b->first.len);
    memcpy(p + SST_PROPS_FIXED + b->first.len, b->last.p, b->last.len);
    kv_put_u64(p + props_size - SST_CKSUM_SIZE,
               kv_checksum64(p, (size_t)props_size - SST_CKSUM_SIZE));
    p += props_size;

    /* footer */
    kv_put_u64(p + SST_FT_INDEX_OFF, index_off);
    kv_put_u64(p + SST_FT_INDEX_SIZE, index_size);
    kv_put_u64(p + SST_FT_BLOOM_OFF, bloom_off);
    kv_put_u64(p + SST_FT_BLOOM_SIZE, bloom_size);
    kv_put_u64(p + SST_FT_PROPS_OFF, props_off);
    kv_put_u64(p + SST_FT_PROPS_SIZE, props_size);
    kv_put_u32(p + SST_FT_NUM_BLOCKS, b->nblocks);
    kv_put_u32(p + SST_FT_VERSION, SST_FORMAT_VERSION);
    kv_put_u64(p + SST_FT_MAGIC, SST_MAGIC);
    kv_put_u64(p + SST_FT_CKSUM, kv_checksum64(p, SST_FT_CKSUM));

    b->out.len += tail;
    return KV_OK;
}

kv_status kv_sst_builder_finish(kv_sst_builder *b, kv_sst_props *props, kv_err *err)
{
    kv_status st;

    if (b->failed != KV_OK) return kv_err_copy(err, &b->ferr);
    if (b->finished)
        return kv_seterr(err, KV_INVALID, 0, "table \"%s\": already finished", b->path);
    if (b->props.num_entries == 0)
        return kv_seterr(err, KV_INVALID, 0, "table \"%s\": no entries", b->path);
    st = finish_block(b, err);
    if (st != KV_OK) return st;
    st = build_tail(b, err);
    if (st != KV_OK) return fail(b, st, err);
    st = write_out(b, err);
    if (st != KV_OK) return st;
    if (b->o.sync) {
        st = b->env->sync(b->f, err);
        if (st != KV_OK) return fail(b, st, err);
    }
    b->env->close(b->f);
    b->f = NULL;
    b->finished = 1;
    if (props) *props = b->props;
    return KV_OK;
}

void kv_sst_builder_free(kv_sst_builder *b)
{
    if (!b) return;
    if (b->f) {
        b->env->close(b->f);
        b->env->remove(b->env, b->path, NULL);
    }
    sbuf_free(&b->blk);
    sbuf_free(&b->offs);
    sbuf_free(&b->cbuf);
    kv_compress_ctx_free(b->zctx);
    sbuf_free(&b->out);
    sbuf_free(&b->index);
    sbuf_free(&b->ikeys);
    sbuf_free(&b->first);
    sbuf_free(&b->last);
    free(b->hashes);
    free(b->path);
    free(b);
}
