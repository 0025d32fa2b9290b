/*
 * frame.c - record framing and torn-tail classification (see frame.h).
 */
#include "frame.h"

#include "coding.h"
#include "hash.h"

static uint32_t len_check(const uint8_t *len_bytes)
{
    return kv_checksum32(len_bytes, 4) ^ 0x6b767370u; /* "kvsp": never 0 for length 0 */
}

void kv_frame_seal(uint8_t *frame, size_t payload_len)
{
    kv_put_u32(frame, (uint32_t)payload_len);
    kv_put_u32(frame + 4, len_check(frame));
    kv_put_u32(frame + 8, kv_checksum32(frame + KV_FRAME_HDR, payload_len));
}

int kv_frame_len_ok(const uint8_t *hdr)
{
    return kv_get_u32(hdr + 4) == len_check(hdr);
}

long kv_frame_peek(const uint8_t *data, size_t size, size_t off)
{
    uint32_t len;
    if (off >= size || size - off < KV_FRAME_HDR || !kv_frame_len_ok(data + off)) return -1;
    len = kv_get_u32(data + off);
    return (uint64_t)len <= size - off - KV_FRAME_HDR ? (long)len : -1;
}

int kv_frame_payload_ok(const uint8_t *frame, size_t payload_len)
{
    return kv_checksum32(frame + KV_FRAME_HDR, payload_len) == kv_get_u32(frame + 8);
}

static int all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

kv_frame_result kv_frame_next(const uint8_t *data, size_t size, size_t off,
                              size_t *payload_len)
{
    size_t left = size - off;
    uint32_t len;
    if (off >= size) return KV_FRAME_END;
    if (all_zero(data + off, left < KV_FRAME_HDR ? left : KV_FRAME_HDR) &&
        all_zero(data + off, left))
        return KV_FRAME_END;
    if (left < KV_FRAME_HDR) return KV_FRAME_TORN;
    len = kv_get_u32(data + off);
    if (kv_get_u32(data + off + 4) != len_check(data + off)) {
        /* a header torn mid-write leaves zeros (or nothing) behind it */
        return all_zero(data + off + 8, left - 8) ? KV_FRAME_TORN : KV_FRAME_CORRUPT;
    }
    if ((uint64_t)len > left - KV_FRAME_HDR) return KV_FRAME_TORN;
    if (!kv_frame_payload_ok(data + off, len)) {
        size_t end = off + KV_FRAME_HDR + len;
        return all_zero(data + end, size - end) ? KV_FRAME_TORN : KV_FRAME_CORRUPT;
    }
    *payload_len = len;
    return KV_FRAME_OK;
}

int kv_frame_unwritten(const uint8_t *data, size_t size, size_t off, size_t page)
{
    size_t left, end;
    if (off >= size) return 1;
    left = size - off;
    if (all_zero(data + off, left < KV_FRAME_HDR ? left : KV_FRAME_HDR)) return 1;
    end = left < KV_FRAME_HDR ? size : off + KV_FRAME_HDR;
    if (left >= KV_FRAME_HDR && kv_frame_len_ok(data + off)) {
        uint64_t len = kv_get_u32(data + off);
        end = len <= left - KV_FRAME_HDR ? off + KV_FRAME_HDR + (size_t)len : size;
    }
    for (size_t p = off - off % page; p < end; p += page)
        if (all_zero(data + p, size - p < page ? size - p : page)) return 1;
    return 0;
}
