/*
 * vlog_format.c - value-log entries, headers and pointers, and the DISCARD
 * statistics file (see vlog_format.h).
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

/* ---- DISCARD ---- */

#define DISCARD_HDR 16u
#define DISCARD_ENT_V1 16u
#define DISCARD_ENT_V2 48u
#define DISCARD_RANGE 1u /* an entry's key-range flag: recorded */
#define DISCARD_DROPPED 1u /* an entry's byte 7: every entry lies under a drop */

static size_t ent_size(uint32_t version)
{
    return version == 1 ? DISCARD_ENT_V1 : DISCARD_ENT_V2;
}

size_t kv_discard_size(uint32_t n)
{
    return DISCARD_HDR + (size_t)n * DISCARD_ENT_V2 + 8;
}

void kv_discard_encode_header(uint8_t *buf, uint32_t n, uint32_t flags)
{
    kv_put_u32(buf, KV_DISCARD_MAGIC);
    kv_put_u32(buf + 4, KV_DISCARD_VERSION);
    kv_put_u32(buf + 8, n);
    kv_put_u32(buf + 12, flags);
}

void kv_discard_encode_entry(uint8_t *buf, uint32_t i, const kv_discard_ent *e)
{
    uint8_t *p = buf + DISCARD_HDR + (size_t)i * DISCARD_ENT_V2;
    memset(p, 0, DISCARD_ENT_V2);
    kv_put_u32(p, e->fid);
    kv_put_u64(p + 8, e->discard);
    if (e->dropped) p[7] = DISCARD_DROPPED;
    if (e->keys.state == KV_VKEYS_RANGE) {
        p[4] = DISCARD_RANGE;
        p[5] = e->keys.min_len;
        p[6] = e->keys.max_len;
        memcpy(p + 16, e->keys.min, e->keys.min_len);
        memcpy(p + 32, e->keys.max, e->keys.max_len);
    }
}

void kv_discard_seal(uint8_t *buf, uint32_t n)
{
    size_t off = kv_discard_size(n) - 8;
    kv_put_u64(buf + off, kv_checksum64(buf, off));
}

static int all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

/* A version 2 entry's range bytes are canonical: lengths within the cut,
 * bytes past them zero, least not after greatest; no range, all zero.
 * Byte 7 is the dropped flag. */
static int ent_v2_ok(const uint8_t *p)
{
    if (p[7] & ~DISCARD_DROPPED) return 0;
    if (p[4] == 0) return all_zero(p + 4, 3) && all_zero(p + 16, 32);
    if (p[4] != DISCARD_RANGE || p[5] > KV_VKEY_CUT || p[6] > KV_VKEY_CUT) return 0;
    if (!all_zero(p + 16 + p[5], KV_VKEY_CUT - p[5]) || !all_zero(p + 32 + p[6], KV_VKEY_CUT - p[6]))
        return 0;
    return cut_cmp(p + 16, p[5], p + 32, p[6]) <= 0;
}

int kv_discard_check(const uint8_t *buf, size_t n, uint32_t *count, uint32_t *version)
{
    uint32_t c, v;
    size_t es;
    if (n < DISCARD_HDR + 8 || kv_get_u32(buf) != KV_DISCARD_MAGIC) return -1;
    v = kv_get_u32(buf + 4);
    if (v != 1 && v != 2) return -1;
    if (kv_get_u32(buf + 12) & ~(v == 2 ? KV_DISCARD_CLEAN : 0u)) return -1;
    c = kv_get_u32(buf + 8);
    es = ent_size(v);
    if ((n - DISCARD_HDR - 8) % es != 0 || (n - DISCARD_HDR - 8) / es != c) return -1;
    if (kv_get_u64(buf + n - 8) != kv_checksum64(buf, n - 8)) return -1;
    for (uint32_t i = 0; i < c; i++) {
        const uint8_t *p = buf + DISCARD_HDR + (size_t)i * es;
        if (kv_get_u32(p + 4) != 0 && v == 1) return -1;
        if (v == 2 && !ent_v2_ok(p)) return -1;
    }
    *count = c;
    *version = v;
    return 0;
}

uint32_t kv_discard_flags(const uint8_t *buf)
{
    return kv_get_u32(buf + 12);
}

void kv_discard_entry(const uint8_t *buf, uint32_t version, uint32_t i, kv_discard_ent *e)
{
    const uint8_t *p = buf + DISCARD_HDR + (size_t)i * ent_size(version);
    memset(e, 0, sizeof *e);
    e->fid = kv_get_u32(p);
    e->discard = kv_get_u64(p + 8);
    e->keys.state = KV_VKEYS_UNKNOWN;
    e->dropped = version == 2 && (p[7] & DISCARD_DROPPED);
    if (version == 2 && p[4] == DISCARD_RANGE) {
        e->keys.state = KV_VKEYS_RANGE;
        e->keys.min_len = p[5];
        e->keys.max_len = p[6];
        memcpy(e->keys.min, p + 16, p[5]);
        memcpy(e->keys.max, p + 32, p[6]);
    }
}
