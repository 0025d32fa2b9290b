/*
 * wal.c - WAL record sealing, parsing and file replay (see wal.h).
 */
#include "wal.h"

#include <stdlib.h>
#include <string.h>

#include "coding.h"
#include "err.h"
#include "frame.h"
#include "hash.h"

void kv_wal_seal(uint8_t *rec, size_t rec_len, uint64_t version)
{
    kv_put_u64(rec + KV_WAL_REC_HDR, version);
    kv_frame_seal(rec, rec_len - KV_WAL_REC_HDR);
}

int kv_wal_payload_open(const uint8_t *payload, size_t n, uint64_t *version, uint32_t *count,
                        uint8_t *flags, kv_wal_cursor *cur)
{
    if (n < KV_WAL_PAYLOAD_HDR) return -1;
    *version = kv_get_u64(payload);
    *count = kv_get_u32(payload + 8);
    *flags = payload[12];
    cur->p = payload + KV_WAL_PAYLOAD_HDR;
    cur->end = payload + n;
    cur->left = *count;
    return 0;
}

int kv_wal_next_entry(kv_wal_cursor *cur, kv_wal_entry *e)
{
    uint64_t kl, vl;
    const uint8_t *p;
    if (cur->left == 0) return cur->p == cur->end ? 0 : -1;
    p = kv_get_uvarint(cur->p, cur->end, &kl);
    if (!p || kl == 0 || kl > KV_MAX_KEY_SIZE || kl > (uint64_t)(cur->end - p)) return -1;
    e->key = p;
    e->klen = (size_t)kl;
    p += kl;
    p = kv_get_uvarint(p, cur->end, &vl);
    if (!p || vl < 3 || vl > (uint64_t)(cur->end - p)) return -1;
    e->vs = p;
    e->vslen = (size_t)vl;
    cur->p = p + vl;
    cur->left--;
    return 1;
}

void kv_wal_file_header(uint8_t *hdr, uint64_t file_id)
{
    kv_put_u32(hdr, KV_WAL_MAGIC);
    kv_put_u32(hdr + 4, KV_WAL_VERSION);
    kv_put_u64(hdr + 8, file_id);
}

long kv_wal_check_record(const uint8_t *buf, size_t n)
{
    size_t len;
    if (kv_frame_next(buf, n, 0, &len) != KV_FRAME_OK || len < KV_WAL_PAYLOAD_HDR) return -1;
    return (long)len;
}

kv_status kv_wal_replay(kv_env *env, const char *path, uint64_t expect_id, kv_wal_record_fn fn,
                        void *ctx, uint64_t *valid_end, int *torn, kv_err *err)
{
    uint8_t *data = NULL;
    size_t size = 0, off;
    kv_status st = kv_env_read_file(env, path, &data, &size, err);
    if (st != KV_OK) return st;
    *valid_end = 0;
    if (torn) *torn = 0;
    if (size < KV_WAL_HEADER_SIZE) {
        /* created but the header never made it: an empty log */
        free(data);
        return KV_OK;
    }
    if (kv_get_u32(data) != KV_WAL_MAGIC || kv_get_u32(data + 4) != KV_WAL_VERSION ||
        (expect_id && kv_get_u64(data + 8) != expect_id)) {
        int zero = 1;
        for (size_t i = 0; i < KV_WAL_HEADER_SIZE && zero; i++) zero = data[i] == 0;
        free(data);
        if (zero) return KV_OK; /* header never written (preallocated zeros) */
        return kv_seterr(err, KV_CORRUPTION, 0, "WAL file \"%s\": bad header at offset 0", path);
    }
    off = KV_WAL_HEADER_SIZE;
    *valid_end = off;
    for (;;) {
        size_t len = 0;
        kv_frame_result r = kv_frame_next(data, size, off, &len);
        if (r == KV_FRAME_OK && len < KV_WAL_PAYLOAD_HDR) r = KV_FRAME_CORRUPT;
        if (r == KV_FRAME_CORRUPT && kv_frame_unwritten(data, size, off, KV_WAL_PAGE))
            r = KV_FRAME_TORN;
        if (r == KV_FRAME_TORN && torn) *torn = 1;
        if (r == KV_FRAME_END || r == KV_FRAME_TORN) break;
        if (r == KV_FRAME_CORRUPT) {
            free(data);
            return kv_seterr(err, KV_CORRUPTION, 0,
                             "WAL file \"%s\": damaged record at offset %zu (%zu bytes follow)",
                             path, off, size - off);
        }
        st = fn(ctx, data + off + KV_WAL_REC_HDR, len, off, err);
        if (st != KV_OK) {
            free(data);
            return st; /* KV_NOT_FOUND: the log ends at *valid_end */
        }
        off += KV_WAL_REC_HDR + len;
        *valid_end = off;
    }
    free(data);
    return KV_OK;
}
