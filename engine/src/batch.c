/*
 * batch.c - building write batches directly in WAL record form (batch.h,
 * wal.h).
 */
#include "batch.h"

#include <stdlib.h>
#include <string.h>

#include "coding.h"
#include "err.h"
#include "ikey.h"
#include "skiplist.h"
#include "wal.h"

#define BATCH_HDR (KV_WAL_REC_HDR + KV_WAL_PAYLOAD_HDR)

kv_batch *kv_batch_new(void)
{
    kv_batch *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->cap = 256;
    b->buf = malloc(b->cap);
    if (!b->buf) {
        free(b);
        return NULL;
    }
    kv_batch_clear(b);
    return b;
}

void kv_batch_free(kv_batch *b)
{
    if (!b) return;
    free(b->buf);
    free(b);
}

void kv_batch_clear(kv_batch *b)
{
    memset(b->buf, 0, BATCH_HDR);
    b->len = BATCH_HDR;
    b->count = 0;
    b->mem_cost = 0;
    b->data_bytes = 0;
    b->flags = 0;
}

size_t kv_batch_count(const kv_batch *b)
{
    return b ? b->count : 0;
}

size_t kv_batch_bytes(const kv_batch *b)
{
    return b ? b->len : 0;
}

static int grow(kv_batch *b, size_t need)
{
    size_t cap = b->cap;
    uint8_t *p;
    if (need > SIZE_MAX / 4 - b->len) return -1;
    if (b->len + need <= cap) return 0;
    while (cap < b->len + need) cap = cap * 2;
    p = realloc(b->buf, cap);
    if (!p) return -1;
    b->buf = p;
    b->cap = cap;
    return 0;
}

kv_status kv_batch_add(kv_batch *b, const void *key, size_t klen, uint8_t meta,
                       uint8_t user_meta, uint64_t expires_at, const void *val, size_t vlen,
                       kv_err *err)
{
    size_t vslen, need;
    uint8_t *p;
    if (!b) return kv_seterr(err, KV_INVALID, 0, "batch must not be NULL");
    if (!key || klen == 0) return kv_seterr(err, KV_INVALID, 0, "key must not be empty");
    if (klen > KV_MAX_KEY_SIZE)
        return kv_seterr(err, KV_TOO_BIG, 0, "key of %zu bytes exceeds the limit of %d bytes",
                         klen, KV_MAX_KEY_SIZE);
    if ((uint64_t)vlen > (uint64_t)KV_MAX_VALUE_SIZE)
        return kv_seterr(err, KV_TOO_BIG, 0, "value of %zu bytes exceeds the limit of %lld bytes",
                         vlen, (long long)KV_MAX_VALUE_SIZE);
    if (vlen && !val) return kv_seterr(err, KV_INVALID, 0, "value pointer is NULL");
    if (b->count == UINT32_MAX) return kv_seterr(err, KV_TOO_BIG, 0, "batch has too many entries");
    vslen = kv_vstruct_size(expires_at, vlen);
    need = kv_uvarint_len(klen) + klen + kv_uvarint_len(vslen) + vslen;
    if (b->len - KV_WAL_REC_HDR + need > UINT32_MAX)
        return kv_seterr(err, KV_TOO_BIG, 0, "batch exceeds 4 GiB");
    if (grow(b, need) != 0) return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory growing batch");
    p = b->buf + b->len;
    p += kv_put_uvarint(p, klen);
    memcpy(p, key, klen);
    p += klen;
    p += kv_put_uvarint(p, vslen);
    p += kv_vstruct_encode(p, meta, user_meta, expires_at, val, vlen);
    b->len = (size_t)(p - b->buf);
    b->count++;
    kv_put_u32(b->buf + KV_WAL_REC_HDR + 8, b->count);
    b->buf[KV_WAL_REC_HDR + 12] = b->flags;
    b->mem_cost += kv_sl_put_cost(klen + KV_TS_SIZE, vslen);
    b->data_bytes += klen + vlen;
    return KV_OK;
}

kv_status kv_batch_put(kv_batch *b, const void *key, size_t klen, const void *val, size_t vlen,
                       kv_err *err)
{
    return kv_batch_add(b, key, klen, 0, 0, 0, val, vlen, err);
}

kv_status kv_batch_put_ex(kv_batch *b, const void *key, size_t klen, const void *val,
                          size_t vlen, uint8_t user_meta, uint64_t expires_at, kv_err *err)
{
    return kv_batch_add(b, key, klen, 0, user_meta, expires_at, val, vlen, err);
}

kv_status kv_batch_delete(kv_batch *b, const void *key, size_t klen, kv_err *err)
{
    return kv_batch_add(b, key, klen, KV_META_DELETE, 0, 0, NULL, 0, err);
}

uint64_t kv_batch_record_cost(const kv_batch *b)
{
    return b->mem_cost;
}
