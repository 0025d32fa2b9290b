/*
 * flush.c - the flush thread and memtable-to-table conversion (flush.h).
 */
#include "flush.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "err.h"
#include "host_req.h"
#include "manifest.h"
#include "sst.h"
#include "vlog.h"

void kv_table_build_opts(kv_db *db, uint64_t id, kv_sst_build_opts *o)
{
    memset(o, 0, sizeof *o);
    o->table_id = id;
    o->block_size = db->opt->block_size;
    o->bloom_fp = db->opt->bloom_false_positive;
    o->compression = db->opt->compression;
    o->zstd_level = db->opt->zstd_compression_level;
    o->sync = !db->opt->in_memory;
}

kv_status kv_flush_memtable(kv_db *db, kv_memtable *mt, kv_err *err)
{
    kv_sl *sl = kv_mt_sl(db, mt);
    kv_sl_iter it;
    kv_sst_build_opts bo;
    kv_sst_builder *b = NULL;
    kv_sst_props props;
    kv_vedit e;
    uint64_t id, meta = 0;
    char path[KV_PATH_MAX + 32];
    const uint8_t *s, *l;
    size_t sl_len, ll_len;
    kv_status st = KV_OK;

    kv_vedit_init(&e);
    e.flushed_mem = kv_off_of(db, mt);
    /* the table will point into the value log: those bytes must be
     * durable before the table (and the WAL's deletion) is */
    if (mt->has_vptrs && !db->opt->in_memory) {
        st = kv_vlog_sync(db, err);
        if (st != KV_OK) return st;
    }
    if (!kv_sl_empty(sl)) {
        id = atomic_fetch_add(&db->sh->vset.next_file_id, 1);
        kv_file_path(path, sizeof path, db->dir, id, "sst");
        kv_table_build_opts(db, id, &bo);
        st = kv_sst_builder_new(db->env, path, &bo, &b, err);
        kv_sl_iter_init(&it, sl);
        for (kv_sl_iter_first(&it); st == KV_OK && kv_sl_iter_valid(&it); kv_sl_iter_next(&it)) {
            size_t kl, vl;
            const uint8_t *k = kv_sl_iter_key(&it, &kl), *v = kv_sl_iter_value(&it, &vl);
            st = kv_sst_builder_add(b, k, kl, v, vl, err);
        }
        if (st == KV_OK) st = kv_sst_builder_finish(b, &props, err);
        if (st == KV_OK) {
            s = kv_sst_builder_smallest(b, &sl_len);
            l = kv_sst_builder_largest(b, &ll_len);
            st = kv_tm_new(db, &props, s, sl_len, l, ll_len, &meta, err);
        }
        if (st == KV_OK) st = kv_vedit_add(&e, 0, meta, err);
        if (st == KV_OK && !db->opt->in_memory) st = db->env->sync_dir(db->env, db->dir, err);
        kv_sst_builder_free(b); /* removes the file unless finished */
        if (st != KV_OK) {
            if (meta) kv_tm_discard(db, meta);
            db->env->remove(db->env, path, NULL);
            kv_vedit_free(&e);
            return st;
        }
    }
    kv_mutex_lock(&db->sh->vset.mu);
    st = kv_apply_edit(db, &e, err);
    kv_mutex_unlock(&db->sh->vset.mu);
    if (st != KV_OK) {
        /* not installed: the table file is useless, the WAL still has it all */
        if (meta && atomic_load(&kv_tm_at(db, meta)->refs) == 0) {
            if (kv_may_delete_tables(db)) db->env->remove(db->env, path, NULL);
            kv_tm_discard(db, meta);
        }
        kv_vedit_free(&e);
        return st;
    }
    kv_vedit_free(&e);
    KV_STAT_ADD(db, memtable_flushes, 1);
    if (mt->id && !db->opt->in_memory) {
        kv_err rerr;
        kv_file_path(path, sizeof path, db->dir, mt->id, "mem");
        if (db->env->remove(db->env, path, &rerr) != KV_OK) {
            kv_log(db, KV_LOG_WARNING, "could not remove flushed WAL: %s", rerr.msg);
            atomic_store(&db->sh->wal_gone_stuck, 1);
        } else if (!atomic_load(&db->sh->wal_gone_stuck) && mt->id > atomic_load(&db->sh->wal_gone))
            atomic_store(&db->sh->wal_gone, mt->id); /* flushes run in WAL order */
    }
    return KV_OK;
}

static uint32_t l0_count(kv_db *db)
{
    kv_version *v = kv_ver_at(db, db->sh->vset.current);
    return v ? v->count[0] : 0;
}

static void *flush_main(void *arg)
{
    kv_db *db = arg;
    kv_shared *sh = db->sh;
    kv_err err;

    kv_mutex_lock(&sh->db_mu);
    for (;;) {
        kv_memtable *mt;
        kv_status st;
        while (sh->n_imm == 0 && !sh->host_req && !atomic_load(&sh->stopping))
            kv_cond_timedwait_ms(&sh->flush_cv, &sh->db_mu, 1000);
        if (atomic_load(&sh->bg_status) != KV_OK) break;
        if (sh->host_req) { /* another process's ingest or drop (host_req.h) */
            kv_host_req *r = kv_at(db, sh->host_req);
            kv_mutex_unlock(&sh->db_mu);
            kv_host_handle(db, r);
            kv_mutex_lock(&sh->db_mu);
            continue;
        }
        if (sh->n_imm == 0) break;
        mt = kv_mt_at(db, sh->imm[0]);
        kv_mt_ref(mt);
        kv_mutex_unlock(&sh->db_mu);

        /* Stall while level 0 is at its limit (compaction will drain it). */
        kv_mutex_lock(&sh->vset.mu);
        if (l0_count(db) >= (uint32_t)db->opt->num_level_zero_tables_stall &&
            db->opt->num_compactors > 0) {
            KV_STAT_ADD(db, l0_stalls, 1);
            while (l0_count(db) >= (uint32_t)db->opt->num_level_zero_tables_stall &&
                   !atomic_load(&sh->stopping))
                kv_cond_timedwait_ms(&sh->vset.cv, &sh->vset.mu, 100);
        }
        kv_mutex_unlock(&sh->vset.mu);

        st = kv_flush_memtable(db, mt, &err);
        kv_mt_unref(db, mt);
        kv_mutex_lock(&sh->db_mu);
        if (st != KV_OK) {
            kv_mutex_unlock(&sh->db_mu);
            kv_err_prefix(&err, "memtable flush failed");
            kv_set_bg_error(db, &err);
            kv_mutex_lock(&sh->db_mu);
            kv_cond_broadcast(&sh->flushed_cv);
            kv_cond_broadcast(&sh->mem_cv);
            break;
        }
    }
    kv_mutex_unlock(&sh->db_mu);
    return NULL;
}

kv_status kv_flush_start(kv_db *db, kv_err *err)
{
    if (pthread_create(&db->flush_thread, NULL, flush_main, db) != 0)
        return kv_seterr(err, KV_IO, 0, "could not start the flush thread");
    db->flush_started = 1;
    return KV_OK;
}

void kv_flush_stop(kv_db *db)
{
    if (!db->flush_started) return;
    kv_mutex_lock(&db->sh->db_mu);
    kv_cond_broadcast(&db->sh->flush_cv);
    kv_mutex_unlock(&db->sh->db_mu);
    pthread_join(db->flush_thread, NULL);
    db->flush_started = 0;
}
