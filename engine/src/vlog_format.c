/*
 * vlog_format.c - value-log entries, headers and pointers (see
 * vlog_format.h).
 */
#include "vlog_format.h"

#include <string.h>

#include "frame.h"
#include "hash.h"

static size_t payload_size(size_t klen, size_t vlen, uint64_t expires_at)
{
    return 2 + kv_uvarint_len(klen) + kv_uvarint_len(vlen) + kv_uvarint_len(expires_at) + klen +
           vlen;
}

size_t kv_vlog_entry_size(size_t klen, size_t vlen, uint64_t expires_at)
{
    return KV_FRAME_HDR + payload_size(klen, vlen, expires_at);
}

size_t kv_vlog_entry_encode(uint8_t *out, uint8_t meta, uint8_t user_meta,
                            uint64_t expires_at, const void *key, size_t klen,
                            const void *value, size_t vlen)
{
    uint8_t *p = out + KV_FRAME_HDR;
    *p++ = meta;
    *p++ = user_meta;
    p += kv_put_uvarint(p, klen);
    p += kv_put_uvarint(p, vlen);
    p += kv_put_uvarint(p, expires_at);
    memcpy(p, key, klen);
    p += klen;
    if (vlen) memcpy(p, value, vlen);
    p += vlen;
    kv_frame_seal(out, (size_t)(p - out) - KV_FRAME_HDR);
    return (size_t)(p - out);
}

int kv_vlog_entry_decode(const uint8_t *buf, size_t n, int verify, kv_vlog_entry *e)
{
    const uint8_t *p, *end;
    uint64_t klen, vlen;
    size_t plen = 0;
    kv_frame_result r;
    if (n < KV_FRAME_HDR) return -1;
    if (verify) {
        r = kv_frame_next(buf, n, 0, &plen);
        if (r != KV_FRAME_OK || plen + KV_FRAME_HDR != n) return -1;
    } else {
        /* the cheap part of the frame check: the length and its check */
        plen = kv_get_u32(buf);
        if (plen + KV_FRAME_HDR != n || !kv_frame_len_ok(buf)) return -1;
    }
    p = buf + KV_FRAME_HDR;
    end = p + plen;
    if (end - p < 2) return -1;
    e->meta = p[0];
    e->user_meta = p[1];
    p += 2;
    p = kv_get_uvarint(p, end, &klen);
    if (!p) return -1;
    p = kv_get_uvarint(p, end, &vlen);
    if (!p) return -1;
    p = kv_get_uvarint(p, end, &e->expires_at);
    if (!p || klen == 0 || klen > (uint64_t)(end - p) || vlen != (uint64_t)(end - p) - klen)
        return -1;
    e->key = p;
    e->klen = (size_t)klen;
    e->value = p + klen;
    e->vlen = (size_t)vlen;
    return 0;
}

void kv_vlog_header_encode(uint8_t *hdr, uint64_t fid, uint64_t key_id, const uint8_t *iv)
{
    memset(hdr, 0, KV_VLOG_HEADER_SIZE);
    kv_put_u32(hdr, KV_VLOG_MAGIC);
    kv_put_u32(hdr + 4, KV_VLOG_VERSION);
    kv_put_u64(hdr + 8, fid);
    kv_put_u64(hdr + 16, key_id);
    if (iv) memcpy(hdr + 24, iv, 16);
    kv_put_u32(hdr + 44, kv_checksum32(hdr, 44));
}

int kv_vlog_header_check(const uint8_t *hdr, size_t n, uint64_t expect_fid)
{
    if (n < KV_VLOG_HEADER_SIZE) return -1;
    if (kv_get_u32(hdr) != KV_VLOG_MAGIC || kv_get_u32(hdr + 4) != KV_VLOG_VERSION) return -1;
    if (kv_get_u32(hdr + 44) != kv_checksum32(hdr, 44)) return -1;
    if (expect_fid && kv_get_u64(hdr + 8) != expect_fid) return -1;
    return 0;
}

/* ---- key ranges ---- */

static int cut_cmp(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    return c ? c : (an > bn) - (an < bn);
}

void kv_vkeys_add(kv_vkeys *k, const uint8_t *key, size_t klen)
{
    size_t n = klen < KV_VKEY_CUT ? klen : KV_VKEY_CUT;
    if (k->state == KV_VKEYS_UNKNOWN) return;
    if (k->state == KV_VKEYS_NONE) {
        memcpy(k->min, key, n);
        memcpy(k->max, key, n);
        k->min_len = k->max_len = (uint8_t)n;
        k->state = KV_VKEYS_RANGE;
    } else if (cut_cmp(key, n, k->min, k->min_len) < 0) {
        memcpy(k->min, key, n);
        k->min_len = (uint8_t)n;
    } else if (cut_cmp(key, n, k->max, k->max_len) > 0) {
        memcpy(k->max, key, n);
        k->max_len = (uint8_t)n;
    }
}

void kv_vkeys_merge(kv_vkeys *into, const kv_vkeys *from)
{
    if (!from || from->state == KV_VKEYS_UNKNOWN) {
        into->state = KV_VKEYS_UNKNOWN;
        return;
    }
    if (from->state != KV_VKEYS_RANGE) return;
    kv_vkeys_add(into, from->min, from->min_len);
    kv_vkeys_add(into, from->max, from->max_len);
}

int kv_vkeys_under(const kv_vkeys *k, const uint8_t *prefix, size_t n)
{
    /* the keys starting with prefix are an interval, and cutting keeps
     * order: both cut ends inside it put every cut key inside it */
    return k->state == KV_VKEYS_RANGE && n <= KV_VKEY_CUT && k->min_len >= n &&
           k->max_len >= n &&
           (n == 0 || (memcmp(k->min, prefix, n) == 0 && memcmp(k->max, prefix, n) == 0));
}
