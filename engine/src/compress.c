/*
 * compress.c - block compression for SSTables: snappy and zstd behind one
 * pair of calls (see sst.h).
 *
 * kv_compress keeps the result only when it saves at least 1/8 of the
 * input (kv_compress_ctx, for the builder, also reuses a zstd context); otherwise it reports
 * KV_COMPRESS_NONE and the caller stores the bytes raw.  kv_decompress treats its input as
 * untrusted: it checks the size the compressed stream declares against the caller's limit
 * before allocating anything, and every decoder failure is KV_CORRUPTION.
 */
#include <stdlib.h>
#include <string.h>

#include <snappy-c.h>
#include <zstd.h>

#include "err.h"
#include "sst.h"
#include "sst_format.h"

/* Makes *buf hold at least need bytes. */
static kv_status reserve(uint8_t **buf, size_t *cap, size_t need, kv_err *err)
{
    uint8_t *p;
    size_t ncap;

    if (*buf && *cap >= need) return KV_OK;
    ncap = *cap ? *cap : 256;
    while (ncap < need) ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
    p = realloc(*buf, ncap);
    if (!p)
        return kv_seterr(err, KV_NO_MEMORY, 0,
                         "out of memory for a %zu-byte compression buffer", ncap);
    *buf = p;
    *cap = ncap;
    return KV_OK;
}

kv_status kv_compress(kv_compression type, int level, const uint8_t *in, size_t n,
                      uint8_t **out, size_t *cap, size_t *out_len, kv_compression *used,
                      kv_err *err)
{
    return kv_compress_ctx(NULL, type, level, in, n, out, cap, out_len, used, err);
}

kv_status kv_compress_ctx(void **zctx, kv_compression type, int level, const uint8_t *in,
                          size_t n, uint8_t **out, size_t *cap, size_t *out_len,
                          kv_compression *used, kv_err *err)
{
    size_t bound, got;
    kv_status st;

    *used = KV_COMPRESS_NONE;
    *out_len = 0;
    switch (type) {
    case KV_COMPRESS_NONE:
        return KV_OK;
    case KV_COMPRESS_SNAPPY:
        bound = snappy_max_compressed_length(n);
        st = reserve(out, cap, bound, err);
        if (st != KV_OK) return st;
        got = *cap;
        if (snappy_compress((const char *)in, n, (char *)*out, &got) != SNAPPY_OK)
            return kv_seterr(err, KV_INVALID, 0, "snappy could not compress %zu bytes", n);
        break;
    case KV_COMPRESS_ZSTD:
        bound = ZSTD_compressBound(n);
        if (ZSTD_isError(bound))
            return kv_seterr(err, KV_INVALID, 0, "zstd cannot compress %zu bytes", n);
        st = reserve(out, cap, bound, err);
        if (st != KV_OK) return st;
        if (zctx && !*zctx && !(*zctx = ZSTD_createCCtx()))
            return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory for a zstd context");
        if (zctx)
            got = ZSTD_compressCCtx(*zctx, *out, *cap, in, n, level);
        else
            got = ZSTD_compress(*out, *cap, in, n, level);
        if (ZSTD_isError(got))
            return kv_seterr(err, KV_NO_MEMORY, 0, "zstd could not compress %zu bytes: %s", n,
                             ZSTD_getErrorName(got));
        break;
    default:
        return kv_seterr(err, KV_INVALID, 0, "unknown compression type %d", (int)type);
    }
    if (got > n - n / 8) return KV_OK; /* did not pay: store raw */
    *used = type;
    *out_len = got;
    return KV_OK;
}

void kv_compress_ctx_free(void *zctx)
{
    ZSTD_freeCCtx(zctx);
}

kv_status kv_decompress(kv_compression type, const uint8_t *in, size_t n, size_t max_out,
                        uint8_t **out, size_t *out_len, const char *what, kv_err *err)
{
    size_t want = 0;
    uint8_t *buf;

    *out = NULL;
    *out_len = 0;
    switch (type) {
    case KV_COMPRESS_NONE:
        want = n;
        break;
    case KV_COMPRESS_SNAPPY:
        if (snappy_uncompressed_length((const char *)in, n, &want) != SNAPPY_OK)
            return kv_seterr(err, KV_CORRUPTION, 0, "%s: bad snappy length header", what);
        break;
    case KV_COMPRESS_ZSTD: {
        unsigned long long fcs = ZSTD_getFrameContentSize(in, n);
        if (fcs == ZSTD_CONTENTSIZE_ERROR || fcs == ZSTD_CONTENTSIZE_UNKNOWN)
            return kv_seterr(err, KV_CORRUPTION, 0, "%s: bad zstd frame header", what);
        if (fcs > (unsigned long long)max_out)
            return kv_seterr(err, KV_CORRUPTION, 0,
                             "%s: zstd frame declares %llu bytes, more than the limit %zu",
                             what, fcs, max_out);
        want = (size_t)fcs;
        break;
    }
    default:
        return kv_seterr(err, KV_CORRUPTION, 0, "%s: unknown compression type %d", what,
                         (int)type);
    }
    if (want > max_out)
        return kv_seterr(err, KV_CORRUPTION, 0,
                         "%s: uncompressed size %zu is more than the limit %zu", what, want,
                         max_out);
    buf = malloc(want ? want : 1);
    if (!buf)
        return kv_seterr(err, KV_NO_MEMORY, 0, "%s: out of memory for %zu bytes", what, want);
    switch (type) {
    case KV_COMPRESS_NONE:
        if (n) memcpy(buf, in, n);
        break;
    case KV_COMPRESS_SNAPPY: {
        size_t got = want;
        if (snappy_uncompress((const char *)in, n, (char *)buf, &got) != SNAPPY_OK ||
            got != want) {
            free(buf);
            return kv_seterr(err, KV_CORRUPTION, 0, "%s: invalid snappy data", what);
        }
        break;
    }
    default: { /* KV_COMPRESS_ZSTD */
        size_t got = ZSTD_decompress(buf, want, in, n);
        if (ZSTD_isError(got) || got != want) {
            free(buf);
            return kv_seterr(err, KV_CORRUPTION, 0, "%s: invalid zstd data%s%s", what,
                             ZSTD_isError(got) ? ": " : "",
                             ZSTD_isError(got) ? ZSTD_getErrorName(got) : "");
        }
        break;
    }
    }
    *out = buf;
    *out_len = want;
    return KV_OK;
}
