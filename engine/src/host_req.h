/*
 * host_req.h - asking the host process to change the table version.
 *
 * Only the host writes the MANIFEST.  A process that commits something
 * that must be recorded there - a large transaction's tables (ingest.h),
 * a dropped range (drops.h) - leads the writer queue, then puts a request
 * in the shared heap, hands it to the host's flush thread (sh->host_req,
 * flush_cv) and waits on flushed_cv until it is done.  The host itself
 * handles its own requests in place.  At most one request is outstanding:
 * only the queue's leader makes one.
 */
#ifndef KV_HOST_REQ_H
#define KV_HOST_REQ_H

#include <stdint.h>

#include "kv.h"

#define KV_HOST_INGEST 1
#define KV_HOST_DROP 2

typedef struct kv_host_req {
    uint32_t type, done;
    int32_t status, sys_errno;
    int32_t consumed;         /* ingest: the install was tried (ingest.h) */
    int32_t level;            /* ingest: where the tables went */
    uint64_t version;         /* the commit version */
    uint32_t n;               /* ingest: tables; drop: prefix bytes */
    uint32_t pad;
    char msg[KV_ERRMSG_MAX];
    uint64_t data[];          /* ingest: table metas; drop: the prefix */
} kv_host_req;

struct kv_db;

/* A request with room for data_bytes (shared heap), or NULL. */
kv_host_req *kv_host_req_new(struct kv_db *db, uint32_t type, uint64_t version,
                             size_t data_bytes);
/* Has the host run r and returns its status (err filled on failure), and
 * r->consumed in *consumed (if non-NULL; 1 when unanswered).  Frees r -
 * unless the host failed or is closing before answering, when r is left
 * to the host (which may still read it). */
kv_status kv_host_call(struct kv_db *db, kv_host_req *r, int *consumed, kv_err *err);
/* Host: runs r and marks it done (db_mu NOT held). */
void kv_host_handle(struct kv_db *db, kv_host_req *r);

#endif
