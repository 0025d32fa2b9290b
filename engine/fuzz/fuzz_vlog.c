/*
 * fuzz_vlog.c - libFuzzer target for the value-log format (vlog_format.c):
 * file headers, framed entries and value pointers, the pure decoding that
 * reads and value-log GC rely on.
 *
 * Input: one mode byte m, then the rest r.
 *   always      r as a file header (kv_vlog_header_check, any id and id 7),
 *               r as one entry (kv_vlog_entry_decode, with and without
 *               verify), its first 16 bytes as a value pointer
 *   m & 1       r as a whole file: entries scanned from offset 48 frame by
 *               frame (kv_frame_next, which kv_frame_peek and
 *               kv_frame_payload_ok must agree with), each decoded both
 *               ways; then walked as GC does (kv_frame_peek only)
 *   m & 2       r cut into u16-prefixed pieces, each put in a correct frame
 *               and decoded both ways (so the payload decoder sees
 *               arbitrary bytes)
 *   m & 4       round trip: an entry encoded from input-derived fields must
 *               decode to the same fields
 *   m & 8       r as a DISCARD image (kv_discard_check / kv_discard_entry),
 *               as it is and with its checksum made right
 *
 * Promises checked: a decoded entry's key and value lie inside the frame
 * and fill the payload after its header; verify only rejects more; a valid
 * frame decodes the same with and without verify.  A DISCARD image that
 * passes the check has key cuts of at most KV_VKEY_CUT bytes, least not
 * after greatest, and encodes back to itself (version 2) or to a version 2
 * image with the same entries (version 1).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "hash.h"
#include "vlog_format.h"

#define FZ_CHECK(cond)                                                                         \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "fuzz invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Decodes buf[0, n) both ways (buf must be exactly n bytes). */
static void decode(const uint8_t *buf, size_t n)
{
    kv_vlog_entry a, b;
    int ra = kv_vlog_entry_decode(buf, n, 0, &a), rb = kv_vlog_entry_decode(buf, n, 1, &b);

    if (rb == 0) {
        size_t plen = 0;
        FZ_CHECK(ra == 0);
        FZ_CHECK(kv_frame_next(buf, n, 0, &plen) == KV_FRAME_OK && plen + KV_FRAME_HDR == n);
        FZ_CHECK(a.key == b.key && a.klen == b.klen && a.value == b.value && a.vlen == b.vlen);
    }
    if (ra == 0) {
        FZ_CHECK(a.klen >= 1 && a.key > buf + KV_FRAME_HDR && a.value == a.key + a.klen);
        FZ_CHECK(a.value + a.vlen == buf + n);
    }
}

/* Copies p[0, n) into an exactly sized buffer and decodes it. */
static void decode_copy(const uint8_t *p, size_t n)
{
    uint8_t *buf = malloc(n ? n : 1);

    FZ_CHECK(buf != NULL);
    if (n) memcpy(buf, p, n);
    decode(buf, n);
    free(buf);
}

static void scan_file(const uint8_t *r, size_t rn)
{
    size_t off = KV_VLOG_HEADER_SIZE, len;
    long plen;
    int n = 0;

    if (rn < KV_VLOG_HEADER_SIZE) return;
    while (n++ < 4096 && kv_frame_next(r, rn, off, &len) == KV_FRAME_OK) {
        FZ_CHECK(len <= rn - off - KV_FRAME_HDR);
        FZ_CHECK(kv_frame_peek(r, rn, off) == (long)len && kv_frame_payload_ok(r + off, len));
        decode_copy(r + off, KV_FRAME_HDR + len);
        off += KV_FRAME_HDR + len;
    }
    /* GC's walk: lengths only, payloads unchecked */
    off = KV_VLOG_HEADER_SIZE;
    n = 0;
    while (n++ < 4096 && (plen = kv_frame_peek(r, rn, off)) >= 0) {
        FZ_CHECK((size_t)plen <= rn - off - KV_FRAME_HDR);
        decode_copy(r + off, KV_FRAME_HDR + (size_t)plen);
        off += KV_FRAME_HDR + (size_t)plen;
    }
}

static void framed(const uint8_t *r, size_t rn)
{
    size_t pos = 0;

    while (pos < rn) {
        size_t n = rn - pos;
        uint8_t *buf;
        if (n >= 2) {
            n = (size_t)r[pos] | (size_t)r[pos + 1] << 8;
            pos += 2;
            if (n > rn - pos) n = rn - pos;
        }
        buf = malloc(KV_FRAME_HDR + n);
        FZ_CHECK(buf != NULL);
        if (n) memcpy(buf + KV_FRAME_HDR, r + pos, n);
        kv_frame_seal(buf, n);
        decode(buf, KV_FRAME_HDR + n);
        free(buf);
        pos += n;
    }
}

static void round_trip(const uint8_t *r, size_t rn)
{
    uint64_t expires = 0;
    size_t klen, vlen, sz;
    uint8_t *buf;
    kv_vlog_entry e;

    if (rn < 4) return;
    for (int i = 0; i < 4 && i < (int)rn; i++) expires = expires << 16 | r[i];
    klen = 1 + r[0] % 64;
    if (klen > rn) klen = rn;
    vlen = rn - klen;
    sz = kv_vlog_entry_size(klen, vlen, expires);
    buf = malloc(sz);
    FZ_CHECK(buf != NULL);
    FZ_CHECK(kv_vlog_entry_encode(buf, r[1], r[2], expires, r, klen, r + klen, vlen) == sz);
    FZ_CHECK(kv_vlog_entry_decode(buf, sz, 1, &e) == 0);
    FZ_CHECK(e.meta == r[1] && e.user_meta == r[2] && e.expires_at == expires);
    FZ_CHECK(e.klen == klen && memcmp(e.key, r, klen) == 0);
    FZ_CHECK(e.vlen == vlen && (vlen == 0 || memcmp(e.value, r + klen, vlen) == 0));
    free(buf);
}

static void discard_checked(const uint8_t *img, size_t n)
{
    uint32_t count, version, c2, v2;
    uint8_t *back;
    if (kv_discard_check(img, n, &count, &version) != 0) return;
    FZ_CHECK(version == 1 || version == 2);
    back = malloc(kv_discard_size(count));
    FZ_CHECK(back != NULL);
    kv_discard_encode_header(back, count, version == 2 ? kv_discard_flags(img) : 0);
    for (uint32_t i = 0; i < count; i++) {
        kv_discard_ent e;
        kv_discard_entry(img, version, i, &e);
        FZ_CHECK(e.keys.state == KV_VKEYS_UNKNOWN || e.keys.state == KV_VKEYS_RANGE);
        FZ_CHECK(e.keys.min_len <= KV_VKEY_CUT && e.keys.max_len <= KV_VKEY_CUT);
        FZ_CHECK(version == 2 || !e.dropped);
        if (e.keys.state == KV_VKEYS_RANGE) {
            size_t m = e.keys.min_len < e.keys.max_len ? e.keys.min_len : e.keys.max_len;
            int c = memcmp(e.keys.min, e.keys.max, m);
            FZ_CHECK(c < 0 || (c == 0 && e.keys.min_len <= e.keys.max_len));
        }
        kv_discard_encode_entry(back, i, &e);
    }
    kv_discard_seal(back, count);
    FZ_CHECK(kv_discard_check(back, kv_discard_size(count), &c2, &v2) == 0 && c2 == count);
    if (version == 2) FZ_CHECK(n == kv_discard_size(count) && memcmp(back, img, n) == 0);
    free(back);
}

static void discard_image(const uint8_t *r, size_t rn)
{
    uint8_t *fixed;
    discard_checked(r, rn);
    if (rn < 24) return;
    fixed = malloc(rn);
    FZ_CHECK(fixed != NULL);
    memcpy(fixed, r, rn);
    kv_put_u64(fixed + rn - 8, kv_checksum64(fixed, rn - 8));
    discard_checked(fixed, rn);
    free(fixed);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *r;
    size_t rn;
    uint8_t *copy;
    kv_vptr v;

    if (size < 1) return 0;
    r = data + 1;
    rn = size - 1;
    copy = malloc(rn ? rn : 1);
    FZ_CHECK(copy != NULL);
    if (rn) memcpy(copy, r, rn);
    if (kv_vlog_header_check(copy, rn, 0) == 0) (void)kv_vlog_header_check(copy, rn, 7);
    decode(copy, rn);
    if (kv_vptr_decode(copy, rn < KV_VPTR_SIZE ? rn : KV_VPTR_SIZE, &v) == 0) {
        uint8_t back[KV_VPTR_SIZE];
        kv_vptr_encode(back, &v);
        FZ_CHECK(memcmp(back, copy, KV_VPTR_SIZE) == 0);
    }
    if (data[0] & 1) scan_file(copy, rn);
    if (data[0] & 2) framed(r, rn);
    if (data[0] & 4) round_trip(r, rn);
    if (data[0] & 8) discard_image(copy, rn);
    free(copy);
    return 0;
}
