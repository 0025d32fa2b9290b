/*
 * write_batch.c - kv_write_batch (Badger's WriteBatch): a bulk loader
 * outside transactions.  Writes collect in a batch that is written (one
 * atomic kv_write) whenever it reaches a size bound; the load as a whole
 * is not atomic.  The first error sticks and is returned by every later
 * call.
 */
#include <stdlib.h>

#include "batch.h"
#include "db.h"
#include "err.h"

#define WB_MAX_BYTES (4u << 20)

struct kv_write_batch {
    kv_db *db;
    kv_batch *b;
    uint64_t limit;           /* memtable cost at which to write */
    kv_status failed;
    kv_err err;
};

kv_status kv_write_batch_new(kv_db *db, kv_write_batch **out, kv_err *err)
{
    kv_write_batch *wb;
    kv_status st;
    if (!db || !out) return kv_seterr(err, KV_INVALID, 0, "kv_write_batch_new: db and out are required");
    st = kv_check_usable(db, err);
    if (st != KV_OK) return st;
    if (db->opt->read_only)
        return kv_seterr(err, KV_READ_ONLY, 0, "cannot write: the database was opened ReadOnly");
    wb = calloc(1, sizeof *wb);
    if (!wb || !(wb->b = kv_batch_new_for(db))) {
        free(wb);
        return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory");
    }
    wb->db = db;
    wb->limit = db->sh->arena_size / 8;
    if (wb->limit > WB_MAX_BYTES) wb->limit = WB_MAX_BYTES;
    *out = wb;
    return KV_OK;
}

static kv_status write_out(kv_write_batch *wb)
{
    kv_status st;
    if (wb->failed != KV_OK || !wb->b->count) return wb->failed;
    st = kv_write(wb->db, NULL, wb->b, NULL, &wb->err);
    kv_batch_clear(wb->b);
    if (st != KV_OK) wb->failed = st;
    return st;
}

static kv_status added(kv_write_batch *wb, kv_status st, kv_err *err)
{
    if (st != KV_OK) return st; /* a bad argument does not poison the load */
    if (wb->b->mem_cost + wb->b->vlen >= wb->limit) st = write_out(wb);
    if (st != KV_OK) kv_err_copy(err, &wb->err);
    return st;
}

static kv_status usable(kv_write_batch *wb, kv_err *err)
{
    if (!wb) return kv_seterr(err, KV_INVALID, 0, "write batch must not be NULL");
    if (wb->failed != KV_OK) return kv_err_copy(err, &wb->err);
    return KV_OK;
}

kv_status kv_write_batch_set(kv_write_batch *wb, const void *key, size_t klen, const void *val,
                             size_t vlen, kv_err *err)
{
    kv_status st = usable(wb, err);
    if (st != KV_OK) return st;
    return added(wb, kv_batch_put(wb->b, key, klen, val, vlen, err), err);
}

kv_status kv_write_batch_set_ex(kv_write_batch *wb, const void *key, size_t klen,
                                const void *val, size_t vlen, uint8_t user_meta,
                                uint64_t expires_at, kv_err *err)
{
    kv_status st = usable(wb, err);
    if (st != KV_OK) return st;
    return added(wb, kv_batch_put_ex(wb->b, key, klen, val, vlen, user_meta, expires_at, err),
                 err);
}

kv_status kv_write_batch_delete(kv_write_batch *wb, const void *key, size_t klen, kv_err *err)
{
    kv_status st = usable(wb, err);
    if (st != KV_OK) return st;
    return added(wb, kv_batch_delete(wb->b, key, klen, err), err);
}

kv_status kv_write_batch_flush(kv_write_batch *wb, kv_err *err)
{
    kv_status st = usable(wb, err);
    if (st != KV_OK) return st;
    st = write_out(wb);
    if (st != KV_OK) kv_err_copy(err, &wb->err);
    return st;
}

void kv_write_batch_free(kv_write_batch *wb)
{
    if (!wb) return;
    kv_batch_free(wb->b);
    free(wb);
}
