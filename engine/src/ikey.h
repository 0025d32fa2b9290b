/*
 * ikey.h - internal keys and encoded values ("value structs").
 *
 * An internal key is the user key followed by 8 bytes holding
 * (UINT64_MAX - version) big-endian, so that for one user key newer
 * versions sort first (as Badger's KeyWithTs).  Internal keys are ordered
 * by user key (bytewise, shorter first on a tie), then by that suffix.
 *
 * A value struct is what memtables, SST entries and iterators carry for an
 * internal key:
 *     meta u8 | user_meta u8 | expires_at uvarint | value bytes...
 * With KV_META_VALUE_PTR set, the value bytes are an encoded value pointer
 * (vptr.h) into a value-log file; with KV_META_DELETE it is a tombstone and
 * the value is empty.  The byte layout is documented in doc/FORMATS.md.
 */
#ifndef KV_IKEY_H
#define KV_IKEY_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "coding.h"

#define KV_TS_SIZE 8

/* meta bits (on disk: DO NOT CHANGE) */
#define KV_META_DELETE 0x01     /* tombstone */
#define KV_META_VALUE_PTR 0x02  /* value bytes are a value-log pointer */
#define KV_META_TXN 0x40        /* WAL/vlog only: entry belongs to a multi-record txn */
#define KV_META_FIN_TXN 0x80    /* WAL/vlog only: marks the end of a txn */
#define KV_META_PERSISTED 0x03  /* bits kept in memtables and tables */

static inline void kv_ikey_put_ts(uint8_t *p, uint64_t version)
{
    kv_put_be64(p, UINT64_MAX - version);
}

static inline uint64_t kv_ikey_version(const uint8_t *ikey, size_t n)
{
    return UINT64_MAX - kv_get_be64(ikey + n - KV_TS_SIZE);
}

static inline size_t kv_ikey_ulen(size_t n)
{
    return n - KV_TS_SIZE;
}

/* Compares user keys bytewise (a proper prefix sorts first).  The first
 * 8 bytes are compared as one big-endian word, which decides most
 * comparisons of random keys without calling memcmp. */
static inline int kv_ukey_cmp(const void *a, size_t na, const void *b, size_t nb)
{
    size_t n = na < nb ? na : nb;
    int c;
    if (n >= 8) {
        uint64_t x, y;
        memcpy(&x, a, 8);
        memcpy(&y, b, 8);
        if (x != y) {
            x = __builtin_bswap64(x);
            y = __builtin_bswap64(y);
            return x < y ? -1 : 1;
        }
    }
    c = n ? memcmp(a, b, n) : 0;
    if (c) return c;
    return na < nb ? -1 : na > nb;
}

/* Compares internal keys: user key, then version descending. */
static inline int kv_ikey_cmp(const uint8_t *a, size_t na, const uint8_t *b, size_t nb)
{
    int c = kv_ukey_cmp(a, na - KV_TS_SIZE, b, nb - KV_TS_SIZE);
    if (c) return c;
    return memcmp(a + na - KV_TS_SIZE, b + nb - KV_TS_SIZE, KV_TS_SIZE);
}

/* A decoded value struct; value points into the encoded bytes. */
typedef struct kv_vstruct {
    uint8_t meta;
    uint8_t user_meta;
    uint64_t expires_at;
    const uint8_t *value;
    size_t value_len;
} kv_vstruct;

static inline size_t kv_vstruct_size(uint64_t expires_at, size_t value_len)
{
    return 2 + kv_uvarint_len(expires_at) + value_len;
}

/* Encodes into p (kv_vstruct_size bytes); returns bytes written. */
static inline size_t kv_vstruct_encode(uint8_t *p, uint8_t meta, uint8_t user_meta,
                                       uint64_t expires_at, const void *value, size_t n)
{
    size_t o = 2;
    p[0] = meta;
    p[1] = user_meta;
    o += kv_put_uvarint(p + 2, expires_at);
    if (n) memcpy(p + o, value, n);
    return o + n;
}

/* Decodes [p, p+n); returns 0 on success, -1 if malformed. */
static inline int kv_vstruct_decode(const uint8_t *p, size_t n, kv_vstruct *vs)
{
    const uint8_t *q;
    if (n < 3) return -1;
    vs->meta = p[0];
    vs->user_meta = p[1];
    q = kv_get_uvarint(p + 2, p + n, &vs->expires_at);
    if (!q) return -1;
    vs->value = q;
    vs->value_len = (size_t)(p + n - q);
    return 0;
}

#endif
