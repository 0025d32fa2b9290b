/*
 * batch.h - kv_batch internals.  A batch is one WAL record under
 * construction (wal.h): header space, payload header, then entries.  The
 * writer seals it and writes it without re-encoding.
 */
#ifndef KV_BATCH_H
#define KV_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "kv.h"

struct kv_batch {
    uint8_t *buf;
    size_t len, cap;
    uint32_t count;
    uint64_t mem_cost;   /* upper bound of memtable arena bytes to apply it */
    uint64_t data_bytes; /* key + value bytes */
    uint8_t flags;       /* KV_WAL_F_* */
};

/* Appends an entry with an already-built value struct header. */
kv_status kv_batch_add(kv_batch *b, const void *key, size_t klen, uint8_t meta,
                       uint8_t user_meta, uint64_t expires_at, const void *val, size_t vlen,
                       kv_err *err);

/* Arena cost of applying a record of this payload (for memtable sizing). */
uint64_t kv_batch_record_cost(const kv_batch *b);

#endif
