/*
 * fuzz_wal_record.c - libFuzzer target for WAL parsing (wal.c): file replay
 * with its torn-tail rules, record framing, payload and entry decoding, and
 * the value structs the entries carry (ikey.h).
 *
 * Input: one mode byte m, then the rest r.
 *   m & 3 == 0  the file image is r
 *   m & 3 == 1  a valid 16-byte header (file id 7), then r
 *   m & 3 >= 2  a valid header, then records framed from r: pieces each
 *               prefixed by a u16 length (short ones padded with zeros to
 *               the 13-byte payload header), each in a correct frame
 *               (frame.h), so the payload decoder sees arbitrary bytes;
 *               with m & 3 == 3 the last record is cut short by m >> 4
 *               bytes (a torn tail)
 *   m & 4       replay expecting file id 7 (else any id)
 *   m & 8       append 1 + (m >> 4) zero bytes (preallocated space),
 *               unless a record was cut
 *
 * The image is written to a file of the in-memory env and replayed with
 * kv_wal_replay; the callback walks every entry of each payload
 * (kv_wal_payload_open, kv_wal_next_entry, kv_vstruct_decode).
 * kv_wal_check_record also runs on r itself.  Promises checked: replay
 * fails only with KV_CORRUPTION; records arrive in order, inside the file;
 * the valid end is inside the file; framed records all replay (all but
 * the last when it was cut).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "env.h"
#include "err.h"
#include "frame.h"
#include "hash.h"
#include "ikey.h"
#include "wal.h"

#define PATH        "/fuzz/000007.mem"
#define FILE_ID     7
#define MAX_RECORDS 4096

#define FZ_CHECK(cond)                                                                         \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "fuzz invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct replay_ctx {
    uint64_t records, last_off, size;
    volatile uint64_t sink;
} replay_ctx;

/* Walks every entry of a payload; returns the number of entries that
 * decoded. */
static uint32_t walk_payload(const uint8_t *p, size_t n, volatile uint64_t *sink)
{
    uint64_t version;
    uint32_t count, got = 0;
    uint8_t flags;
    kv_wal_cursor cur;
    kv_wal_entry e;
    int r;

    if (kv_wal_payload_open(p, n, &version, &count, &flags, &cur) != 0) {
        FZ_CHECK(n < KV_WAL_PAYLOAD_HDR);
        return 0;
    }
    while ((r = kv_wal_next_entry(&cur, &e)) == 1) {
        kv_vstruct vs;
        FZ_CHECK(e.klen >= 1 && e.klen <= KV_MAX_KEY_SIZE && e.vslen >= 3);
        FZ_CHECK(e.key >= p && e.key + e.klen <= p + n && e.vs >= p && e.vs + e.vslen <= p + n);
        *sink += kv_checksum32(e.key, e.klen);
        if (kv_vstruct_decode(e.vs, e.vslen, &vs) == 0) {
            FZ_CHECK(vs.value >= e.vs && vs.value + vs.value_len == e.vs + e.vslen);
            *sink += kv_checksum32(vs.value, vs.value_len) + vs.meta + vs.expires_at;
        }
        got++;
        FZ_CHECK(got <= count);
    }
    if (r == 0) FZ_CHECK(got == count);
    return got;
}

static kv_status on_record(void *ctx, const uint8_t *payload, size_t n, uint64_t off,
                           kv_err *err)
{
    replay_ctx *rc = ctx;

    (void)err;
    FZ_CHECK(off >= KV_WAL_HEADER_SIZE && off + KV_WAL_REC_HDR + n <= rc->size);
    FZ_CHECK(rc->records == 0 || off > rc->last_off);
    rc->last_off = off;
    rc->records++;
    walk_payload(payload, n, &rc->sink);
    return KV_OK;
}

/* Appends a record with payload p[0, n) (zero-padded to the payload
 * header) at img + *len. */
static void frame(uint8_t *img, size_t *len, const uint8_t *p, size_t n)
{
    uint8_t *rec = img + *len;
    size_t pn = n < KV_WAL_PAYLOAD_HDR ? KV_WAL_PAYLOAD_HDR : n;

    memset(rec + KV_WAL_REC_HDR, 0, pn);
    if (n) memcpy(rec + KV_WAL_REC_HDR, p, n);
    kv_frame_seal(rec, pn);
    *len += KV_WAL_REC_HDR + pn;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *r;
    size_t rn, len = 0, pos = 0, framed = 0, last_start = 0, cut = 0, pad = 0;
    uint8_t *img;
    uint8_t m;
    kv_env *env;
    kv_file *f;
    kv_err err;
    kv_status st;
    uint64_t valid_end = 0;
    int torn = 0;
    replay_ctx rc;
    long l;

    if (size < 1) return 0;
    m = data[0];
    r = data + 1;
    rn = size - 1;

    /* a lone framed record */
    l = kv_wal_check_record(r, rn);
    if (l >= 0) {
        volatile uint64_t sink = 0;
        FZ_CHECK((size_t)l >= KV_WAL_PAYLOAD_HDR && (size_t)l <= rn - KV_WAL_REC_HDR);
        walk_payload(r + KV_WAL_REC_HDR, (size_t)l, &sink);
    }

    /* worst case: every piece is a 2-byte prefix padded to a 25-byte record */
    img = malloc(KV_WAL_HEADER_SIZE + rn * 13 + 64 + 16);
    if (!img) return 0;
    if ((m & 3) == 0) {
        if (rn) memcpy(img, r, rn);
        len = rn;
    } else {
        kv_wal_file_header(img, FILE_ID);
        len = KV_WAL_HEADER_SIZE;
        if ((m & 3) == 1) {
            if (rn) memcpy(img + len, r, rn);
            len += rn;
        } else {
            while (pos < rn && framed < MAX_RECORDS) {
                size_t n = rn - pos;
                if (n >= 2) {
                    n = kv_get_u16(r + pos);
                    pos += 2;
                    if (n > rn - pos) n = rn - pos;
                }
                last_start = len;
                frame(img, &len, r + pos, n);
                pos += n;
                framed++;
            }
            if ((m & 3) == 3 && framed) {
                cut = m >> 4;
                len -= cut;
            }
        }
    }
    if ((m & 8) && !cut) {
        pad = 1 + (m >> 4);
        memset(img + len, 0, pad);
        len += pad;
    }

    env = kv_env_mem_new();
    FZ_CHECK(env != NULL);
    FZ_CHECK(env->open(env, PATH, KV_O_RDWR | KV_O_CREATE, &f, &err) == KV_OK);
    FZ_CHECK(kv_env_pwrite(env, f, img, len, 0, &err) == KV_OK);
    env->close(f);
    memset(&rc, 0, sizeof rc);
    rc.size = len;
    st = kv_wal_replay(env, PATH, (m & 4) ? FILE_ID : 0, on_record, &rc, &valid_end, &torn,
                       &err);
    FZ_CHECK(st == KV_OK || st == KV_CORRUPTION);
    if (st == KV_OK && valid_end) { /* torn exactly when data is left after the end */
        int rest_zero = 1;
        for (size_t i = valid_end; i < len && rest_zero; i++) rest_zero = img[i] == 0;
        FZ_CHECK(torn == !rest_zero);
    }
    if (st == KV_CORRUPTION) FZ_CHECK(strstr(err.msg, PATH) != NULL);
    FZ_CHECK(valid_end <= len);
    if (st == KV_OK && rc.records) FZ_CHECK(valid_end > rc.last_off);
    if ((m & 3) >= 2) {
        FZ_CHECK(st == KV_OK);
        if (cut) {
            FZ_CHECK(rc.records == framed - 1 && valid_end == last_start);
        } else {
            FZ_CHECK(rc.records == framed && valid_end == len - pad);
        }
    }
    kv_env_mem_free(env);
    free(img);
    return 0;
}
