/*
 * batch.c - building write batches directly in WAL record form, with
 * large values framed for the value log (batch.h, wal.h, vlog_format.h).
 */
#include "batch.h"

#include <stdlib.h>
#include <string.h>

#include "coding.h"
#include "db.h"
#include "err.h"
#include "ikey.h"
#include "skiplist.h"
#include "vlog_format.h"
#include "wal.h"

#define BATCH_HDR (KV_WAL_REC_HDR + KV_WAL_PAYLOAD_HDR)

static kv_batch *batch_alloc(uint64_t threshold)
{
    kv_batch *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->cap = 256;
    b->buf = malloc(b->cap);
    if (!b->buf) {
        free(b);
        return NULL;
    }
    b->threshold = threshold;
    kv_batch_clear(b);
    return b;
}

kv_batch *kv_batch_new(void)
{
    return batch_alloc(UINT64_MAX);
}

kv_batch *kv_batch_new_for(kv_db *db)
{
    if (!db) return NULL;
    return batch_alloc(db->opt->in_memory ? UINT64_MAX : (uint64_t)db->opt->value_threshold);
}

void kv_batch_free(kv_batch *b)
{
    if (!b) return;
    free(b->buf);
    free(b->vbuf);
    free(b->ptrs);
    free(b->conds);
    free(b);
}

void kv_batch_clear(kv_batch *b)
{
    memset(b->buf, 0, BATCH_HDR);
    b->len = BATCH_HDR;
    b->vlen = 0;
    b->vkeys.state = KV_VKEYS_NONE;
    b->n_ptrs = 0;
    b->n_conds = 0;
    b->max_inline = 0;
    b->txn = 0;
    b->n_txn_segs = b->n_txn_writes = 0;
    b->txn_reads = b->txn_writes = NULL;
    b->txn_segs = NULL;
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
    return b ? b->len + b->vlen : 0;
}

/* Makes room for need more bytes in *p (len used, cap capacity). */
static int grow(uint8_t **p, size_t *cap, size_t len, size_t need)
{
    size_t c = *cap ? *cap : 256;
    uint8_t *q;
    if (need > SIZE_MAX / 4 - len) return -1;
    if (len + need <= *cap) return 0;
    while (c < len + need) c *= 2;
    q = realloc(*p, c);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

kv_status kv_batch_add(kv_batch *b, const void *key, size_t klen, uint8_t meta,
                       uint8_t user_meta, uint64_t expires_at, const void *val, size_t vlen,
                       kv_err *err)
{
    size_t vslen, need, frame = 0;
    int to_vlog;
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
    /* (a value pointer - a spilled transaction's value - stays a pointer) */
    to_vlog = !(meta & (KV_META_DELETE | KV_META_VALUE_PTR)) && (uint64_t)vlen >= b->threshold;
    vslen = kv_vstruct_size(expires_at, to_vlog ? KV_VPTR_SIZE : vlen);
    need = kv_uvarint_len(klen) + klen + kv_uvarint_len(vslen) + vslen;
    if (b->len - KV_WAL_REC_HDR + need > UINT32_MAX)
        return kv_seterr(err, KV_TOO_BIG, 0, "batch record exceeds 4 GiB");
    if (grow(&b->buf, &b->cap, b->len, need) != 0)
        return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory growing batch");
    if (to_vlog) {
        frame = kv_vlog_entry_size(klen, vlen, expires_at);
        if (frame > UINT32_MAX || b->vlen + frame > UINT32_MAX)
            return kv_seterr(err, KV_TOO_BIG, 0, "batch value-log part exceeds 4 GiB");
        if (grow(&b->vbuf, &b->vcap, b->vlen, frame) != 0)
            return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory growing batch");
        if (b->n_ptrs == b->cap_ptrs) {
            uint32_t c = b->cap_ptrs ? b->cap_ptrs * 2 : 16;
            uint32_t *q = realloc(b->ptrs, sizeof *q * 3 * c);
            if (!q) return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory growing batch");
            b->ptrs = q;
            b->cap_ptrs = c;
        }
    }
    p = b->buf + b->len;
    p += kv_put_uvarint(p, klen);
    b->last_key_off = (uint32_t)(p - b->buf);
    b->last_klen = (uint32_t)klen;
    memcpy(p, key, klen);
    p += klen;
    p += kv_put_uvarint(p, vslen);
    if (to_vlog) {
        uint8_t zero[KV_VPTR_SIZE] = {0};
        size_t hdr = kv_vstruct_encode(p, meta | KV_META_VALUE_PTR, user_meta, expires_at, zero,
                                       KV_VPTR_SIZE) -
                     KV_VPTR_SIZE;
        b->ptrs[3 * b->n_ptrs] = (uint32_t)(p + hdr - b->buf);
        b->ptrs[3 * b->n_ptrs + 1] = (uint32_t)b->vlen;
        b->ptrs[3 * b->n_ptrs + 2] = (uint32_t)frame;
        b->n_ptrs++;
        kv_vlog_entry_encode(b->vbuf + b->vlen, meta, user_meta, expires_at, key, klen, val, vlen);
        kv_vkeys_add(&b->vkeys, key, klen);
        b->vlen += frame;
        p += vslen;
    } else {
        p += kv_vstruct_encode(p, meta, user_meta, expires_at, val, vlen);
        if (!(meta & (KV_META_DELETE | KV_META_VALUE_PTR)) && (uint64_t)vlen + 1 > b->max_inline)
            b->max_inline = (uint64_t)vlen + 1;
    }
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

kv_status kv_batch_require_version(kv_batch *b, uint64_t version, kv_err *err)
{
    if (!b->count) return kv_seterr(err, KV_INVALID, 0, "condition without an entry");
    if (b->n_conds == b->cap_conds) {
        uint32_t c = b->cap_conds ? b->cap_conds * 2 : 16;
        kv_batch_cond *q = realloc(b->conds, sizeof *q * c);
        if (!q) return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory growing batch");
        b->conds = q;
        b->cap_conds = c;
    }
    b->conds[b->n_conds].key_off = b->last_key_off;
    b->conds[b->n_conds].klen = b->last_klen;
    b->conds[b->n_conds].version = version;
    b->n_conds++;
    return KV_OK;
}

/* Decodes one WAL entry of the record buf; *next_ptr walks ptrs (the
 * record's placed values, batch.h) in entry order.  A placed value is
 * read from its framed entry in vbuf; a pointer placed before the batch
 * was built (a spilled transaction's value) stays a pointer. */
static int decode_entry(const uint8_t *buf, const uint8_t *vbuf, const uint32_t *ptrs,
                        uint32_t n_ptrs, const kv_wal_entry *we, uint32_t *next_ptr,
                        kv_batch_entry *e)
{
    kv_vstruct vs;
    uint32_t k = *next_ptr;
    if (kv_vstruct_decode(we->vs, we->vslen, &vs) != 0) return -1;
    e->key = we->key;
    e->klen = we->klen;
    e->meta = vs.meta;
    e->user_meta = vs.user_meta;
    e->expires_at = vs.expires_at;
    e->value = vs.value;
    e->vlen = vs.value_len;
    if ((vs.meta & KV_META_VALUE_PTR) && k < n_ptrs && ptrs[3 * k] == (uint32_t)(vs.value - buf)) {
        kv_vlog_entry ve;
        if (kv_vlog_entry_decode(vbuf + ptrs[3 * k + 1], ptrs[3 * k + 2], 0, &ve) != 0) return -1;
        *next_ptr = k + 1;
        e->meta = vs.meta & (uint8_t)~KV_META_VALUE_PTR;
        e->value = ve.value;
        e->vlen = ve.vlen;
    }
    return 0;
}

static int decode_batch_entry(const kv_batch *b, const kv_wal_entry *we, uint32_t *next_ptr,
                              kv_batch_entry *e)
{
    return decode_entry(b->buf, b->vbuf, b->ptrs, b->n_ptrs, we, next_ptr, e);
}

size_t kv_record_inline_bound(size_t rec_len, size_t vlen, uint32_t n_ptrs)
{
    /* a value is shorter than its frame; its vstruct length may need up
     * to 4 more varint bytes */
    return rec_len + vlen + 4u * n_ptrs;
}

size_t kv_record_inline(const uint8_t *rec, size_t rec_len, const uint8_t *vbuf,
                        const uint32_t *ptrs, uint32_t n_ptrs, uint8_t *out)
{
    kv_wal_cursor cur;
    kv_wal_entry we;
    uint64_t version;
    uint32_t count, next_ptr = 0;
    uint8_t flags, *o = out + BATCH_HDR;
    int r;
    if (rec_len < BATCH_HDR ||
        kv_wal_payload_open(rec + KV_WAL_REC_HDR, rec_len - KV_WAL_REC_HDR, &version, &count,
                            &flags, &cur) != 0)
        return 0;
    memcpy(out, rec, BATCH_HDR);
    while ((r = kv_wal_next_entry(&cur, &we)) == 1) {
        kv_batch_entry e;
        if (decode_entry(rec, vbuf, ptrs, n_ptrs, &we, &next_ptr, &e) != 0) return 0;
        o += kv_put_uvarint(o, e.klen);
        memcpy(o, e.key, e.klen);
        o += e.klen;
        o += kv_put_uvarint(o, kv_vstruct_size(e.expires_at, e.vlen));
        o += kv_vstruct_encode(o, e.meta, e.user_meta, e.expires_at, e.value, e.vlen);
    }
    if (r < 0 || next_ptr != n_ptrs) return 0;
    return (size_t)(o - out);
}

static int open_entries(const kv_batch *b, kv_wal_cursor *cur)
{
    uint64_t version;
    uint32_t count;
    uint8_t flags;
    return kv_wal_payload_open(b->buf + KV_WAL_REC_HDR, b->len - KV_WAL_REC_HDR, &version,
                               &count, &flags, cur);
}

int kv_batch_get_entry(const kv_batch *b, uint32_t i, kv_batch_entry *e)
{
    kv_wal_cursor cur;
    kv_wal_entry we;
    uint32_t next_ptr = 0;
    if (i >= b->count || open_entries(b, &cur) != 0) return -1;
    for (uint32_t k = 0; k <= i; k++) {
        if (kv_wal_next_entry(&cur, &we) != 1) return -1;
        if (k < i) { /* keep the pointer walk in step */
            kv_batch_entry skip;
            if (decode_batch_entry(b, &we, &next_ptr, &skip) != 0) return -1;
        }
    }
    return decode_batch_entry(b, &we, &next_ptr, e);
}

static kv_status add_decoded(kv_batch *dst, const kv_batch *src, const kv_batch_entry *e,
                             kv_err *err)
{
    kv_status st = kv_batch_add(dst, e->key, e->klen, e->meta, e->user_meta, e->expires_at,
                                e->value, e->vlen, err);
    /* carry the entry's condition along */
    for (uint32_t k = 0; k < src->n_conds && st == KV_OK; k++)
        if (src->buf + src->conds[k].key_off == e->key)
            st = kv_batch_require_version(dst, src->conds[k].version, err);
    return st;
}

kv_status kv_batch_copy_entry(kv_batch *dst, const kv_batch *src, uint32_t i, kv_err *err)
{
    kv_batch_entry e;
    if (kv_batch_get_entry(src, i, &e) != 0)
        return kv_seterr(err, KV_INVALID, 0, "batch entry %u is malformed", i);
    return add_decoded(dst, src, &e, err);
}

kv_batch *kv_batch_rebuild(const kv_batch *src, uint64_t threshold, kv_err *err)
{
    kv_batch *b = batch_alloc(threshold);
    kv_wal_cursor cur;
    kv_wal_entry we;
    uint32_t next_ptr = 0;
    if (!b) {
        kv_seterr(err, KV_NO_MEMORY, 0, "out of memory copying a batch");
        return NULL;
    }
    if (open_entries(src, &cur) != 0) goto bad;
    for (uint32_t i = 0; i < src->count; i++) {
        kv_batch_entry e;
        if (kv_wal_next_entry(&cur, &we) != 1 || decode_batch_entry(src, &we, &next_ptr, &e) != 0)
            goto bad;
        if (add_decoded(b, src, &e, err) != KV_OK) {
            kv_batch_free(b);
            return NULL;
        }
    }
    b->flags = src->flags;
    b->txn = src->txn;
    b->txn_reads = src->txn_reads;
    b->txn_segs = src->txn_segs;
    b->n_txn_segs = src->n_txn_segs;
    b->txn_writes = src->txn_writes;
    b->n_txn_writes = src->n_txn_writes;
    return b;
bad:
    kv_seterr(err, KV_INVALID, 0, "malformed batch");
    kv_batch_free(b);
    return NULL;
}
