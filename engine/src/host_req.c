/*
 * host_req.c - requests to the host (see host_req.h).
 */
#include "host_req.h"

#include <stdio.h>
#include <string.h>

#include "db.h"
#include "drops.h"
#include "err.h"
#include "ingest.h"

kv_host_req *kv_host_req_new(kv_db *db, uint32_t type, uint64_t version, size_t data_bytes)
{
    uint64_t off = kv_heap_alloc_db(db, sizeof(kv_host_req) + data_bytes);
    kv_host_req *r = kv_at(db, off);
    if (!r) return NULL;
    memset(r, 0, sizeof *r);
    r->type = type;
    r->version = version;
    return r;
}

void kv_host_handle(kv_db *db, kv_host_req *r)
{
    kv_err err;
    kv_status st;
    int level = -1, consumed = 0;
    memset(&err, 0, sizeof err);
    if (r->type == KV_HOST_INGEST)
        st = kv_ingest_install(db, r->data, r->n, r->version, &level, &consumed, &err);
    else if (r->type == KV_HOST_DROP)
        st = kv_drop_install(db, (const uint8_t *)r->data, r->n, r->version, &err);
    else
        st = kv_seterr(&err, KV_INVALID, 0, "unknown host request %u", r->type);
    kv_mutex_lock(&db->sh->db_mu);
    r->status = st;
    r->sys_errno = st == KV_OK ? 0 : err.sys_errno;
    if (st != KV_OK) snprintf(r->msg, sizeof r->msg, "%s", err.msg);
    r->level = level;
    r->consumed = consumed;
    r->done = 1;
    if (db->sh->host_req == kv_off_of(db, r)) db->sh->host_req = 0;
    kv_cond_broadcast(&db->sh->flushed_cv);
    kv_mutex_unlock(&db->sh->db_mu);
}

kv_status kv_host_call(kv_db *db, kv_host_req *r, int *consumed, kv_err *err)
{
    kv_shared *sh = db->sh;
    kv_status st;
    if (consumed) *consumed = 1;
    if (db->is_host) {
        kv_host_handle(db, r);
    } else {
        kv_mutex_lock(&sh->db_mu);
        while (sh->host_req && atomic_load(&sh->bg_status) == KV_OK &&
               atomic_load(&sh->state) == KV_STATE_READY) /* (only the leader asks) */
            kv_cond_timedwait_ms(&sh->flushed_cv, &sh->db_mu, 100);
        if (!sh->host_req) {
            sh->host_req = kv_off_of(db, r);
            kv_cond_signal(&sh->flush_cv);
        }
        while (!r->done && sh->host_req == kv_off_of(db, r) &&
               atomic_load(&sh->bg_status) == KV_OK && atomic_load(&sh->state) == KV_STATE_READY)
            kv_cond_timedwait_ms(&sh->flushed_cv, &sh->db_mu, 100);
        if (!r->done) {
            int posted = sh->host_req == kv_off_of(db, r);
            kv_mutex_unlock(&sh->db_mu);
            if (!posted) kv_heap_free_db(db, kv_off_of(db, r));
            st = kv_check_bg_error(db, err);
            return st != KV_OK ? st : kv_seterr(err, KV_CLOSED, 0, "database is closing");
        }
        kv_mutex_unlock(&sh->db_mu);
    }
    st = (kv_status)r->status;
    if (st != KV_OK) kv_seterr(err, st, r->sys_errno, "%s", r->msg);
    if (consumed) *consumed = r->consumed;
    kv_heap_free_db(db, kv_off_of(db, r));
    return st;
}
