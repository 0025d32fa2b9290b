/*
 * conflict.c - the shared conflict table (see conflict.h).
 */
#include "conflict.h"

#include <string.h>

#include "db.h"

#define MAX_KEYED_WRITES 65536 /* more than this: raise the global floor */

uint64_t kv_conflict_region_size(int64_t bytes)
{
    uint64_t want = bytes > 0 ? (uint64_t)bytes : (16u << 20), n = 1024;
    while (n * 2 * sizeof(kv_cbucket) <= want) n *= 2;
    return n * sizeof(kv_cbucket) + 64;
}

void kv_conflict_init(kv_conflict *c, char *base, uint64_t off, uint64_t size)
{
    uint64_t n = 1024;
    memset(c, 0, sizeof *c);
    while ((n * 2) * sizeof(kv_cbucket) + 64 <= size) n *= 2;
    c->buckets = (off + 63) & ~(uint64_t)63;
    c->n = (uint32_t)n;
    memset(base + c->buckets, 0, n * sizeof(kv_cbucket));
}

static kv_cbucket *bucket(kv_db *db, uint64_t h)
{
    kv_conflict *c = &db->sh->conflict;
    return (kv_cbucket *)kv_at(db, c->buckets) + (h & (c->n - 1));
}

static uint32_t fp32(uint64_t h)
{
    uint32_t f = (uint32_t)(h >> 32);
    return f ? f : 1; /* 0 marks an empty slot */
}

int kv_conflict_check(kv_db *db, const uint64_t *reads, const kv_read_seg *segs,
                      uint32_t n_segs)
{
    kv_conflict *c = &db->sh->conflict;
    uint32_t i = 0;
    c->checks++;
    for (uint32_t g = 0; g < n_segs; g++) {
        uint64_t read_ts = segs[g].read_ts;
        if (i < segs[g].end && c->global_floor > read_ts) goto conflict;
        for (; i < segs[g].end; i++) {
            kv_cbucket *b = bucket(db, reads[i]);
            uint32_t f = fp32(reads[i]);
            if (b->floor > read_ts) goto conflict;
            for (int s = 0; s < KV_CONFLICT_SLOTS; s++)
                if (b->fp[s] == f && b->ts[s] > read_ts) goto conflict;
        }
    }
    return 0;
conflict:
    c->conflicts++;
    return 1;
}

void kv_conflict_record(kv_db *db, const uint64_t *writes, uint32_t n, uint64_t ts)
{
    kv_conflict *c = &db->sh->conflict;
    if (n > MAX_KEYED_WRITES) {
        c->global_floor = ts;
        return;
    }
    for (uint32_t i = 0; i < n; i++) {
        kv_cbucket *b = bucket(db, writes[i]);
        uint32_t f = fp32(writes[i]);
        int s, victim = 0;
        for (s = 0; s < KV_CONFLICT_SLOTS; s++)
            if (b->fp[s] == f) break;
        if (s == KV_CONFLICT_SLOTS) {
            /* reuse the oldest slot; what it knew becomes the floor */
            for (s = 1; s < KV_CONFLICT_SLOTS; s++)
                if (b->ts[s] < b->ts[victim]) victim = s;
            s = victim;
            if (b->fp[s] && b->ts[s] > b->floor) b->floor = b->ts[s];
            b->fp[s] = f;
            b->ts[s] = 0;
        }
        if (ts > b->ts[s]) b->ts[s] = ts;
    }
}
