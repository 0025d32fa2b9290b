/*
 * db_info.c - read-only facts about an open database: latest version,
 * snapshots, statistics, levels and tables (kvctl info, admin SQL).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compaction.h"
#include "db.h"
#include "err.h"
#include "ikey.h"

struct kv_snapshot {
    kv_db *db;
    int slot;
    uint64_t version;
};

void kv_buf_free(kv_buf *buf)
{
    if (!buf) return;
    free(buf->data);
    buf->data = NULL;
    buf->len = buf->cap = 0;
}

uint64_t kv_latest_version(kv_db *db)
{
    return atomic_load_explicit(&db->sh->visible_version, memory_order_acquire);
}

kv_status kv_snapshot_acquire(kv_db *db, kv_snapshot **snap, kv_err *err)
{
    return kv_snapshot_acquire_at(db, 0, snap, err);
}

kv_status kv_snapshot_acquire_at(kv_db *db, uint64_t version, kv_snapshot **snap, kv_err *err)
{
    kv_snapshot *s;
    kv_status st;
    if (!db || !snap) return kv_seterr(err, KV_INVALID, 0, "db and snap are required");
    st = kv_check_usable(db, err);
    if (st != KV_OK) return st;
    s = calloc(1, sizeof *s);
    if (!s) return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory");
    st = kv_snap_register(db, version, &s->slot, &s->version, err);
    if (st != KV_OK) {
        free(s);
        return st;
    }
    s->db = db;
    *snap = s;
    return KV_OK;
}

uint64_t kv_snapshot_version(const kv_snapshot *snap)
{
    return snap->version;
}

void kv_snapshot_release(kv_snapshot *snap)
{
    if (!snap) return;
    kv_snap_unregister(snap->db, snap->slot);
    free(snap);
}

void kv_get_stats(kv_db *db, kv_stats *st)
{
    kv_shared *sh = db->sh;
    kv_attach_slot *slots = kv_at(db, sh->attach_off);
    memset(st, 0, sizeof *st);
#define LD(f) atomic_load_explicit(&sh->stats.f, memory_order_relaxed)
    st->writes = LD(writes);
    st->write_groups = LD(write_groups);
    st->syncs = LD(syncs);
    st->bytes_written = LD(bytes_written);
    st->memtable_flushes = LD(memtable_flushes);
    st->compactions = LD(compactions);
    st->compaction_bytes_read = LD(compaction_bytes_read);
    st->compaction_bytes_written = LD(compaction_bytes_written);
    st->write_stalls = LD(write_stalls);
    st->write_stall_micros = LD(write_stall_micros);
    st->l0_stalls = LD(l0_stalls);
    st->gets = LD(gets);
    st->bloom_useful = LD(bloom_useful);
#undef LD
    st->block_cache_hits = atomic_load(&sh->bcache.hits);
    st->block_cache_misses = atomic_load(&sh->bcache.misses);
    st->block_cache_inserts = atomic_load(&sh->bcache.inserts);
    st->block_cache_evictions = atomic_load(&sh->bcache.evictions);
    st->vlog_value_reads = atomic_load(&sh->vlog.value_reads);
    st->vlog_gc_runs = atomic_load(&sh->vlog.gc_runs);
    st->vlog_gc_rewritten_entries = atomic_load(&sh->vlog.gc_rewritten_entries);
    st->vlog_gc_rewritten_bytes = atomic_load(&sh->vlog.gc_rewritten_bytes);
    st->vlog_gc_files_deleted = atomic_load(&sh->vlog.gc_files_deleted);
    st->vlog_direct_bytes = atomic_load(&sh->vlog.direct_bytes);
    kv_mutex_lock(&sh->vlog.mu);
    {
        kv_vfile *f = kv_at(db, sh->vlog.files);
        st->vlog_files = sh->vlog.n;
        for (uint32_t i = 0; i < sh->vlog.n; i++) {
            st->vlog_bytes += f[i].size;
            st->vlog_discard_bytes += f[i].discard;
        }
    }
    kv_mutex_unlock(&sh->vlog.mu);
    kv_mutex_lock(&sh->db_mu);
    st->live_memtables = (sh->mem ? 1 : 0) + sh->n_imm;
    {
        const kv_version *v = kv_ver_at(db, sh->vset.current);
        const kv_drop_list *dl = v ? kv_at(db, v->drops) : NULL;
        st->drops_in_effect = dl ? dl->n : 0;
    }
    kv_mutex_unlock(&sh->db_mu);
    st->latest_version = kv_latest_version(db);
    st->num_levels = db->opt->max_levels;
    for (uint32_t i = 0; i < sh->n_attach; i++)
        if (atomic_load(&slots[i].pid)) st->attached_processes++;
}

int kv_get_levels(kv_db *db, kv_level_info *out, int max)
{
    kv_version *v = kv_version_current(db);
    kv_targets t;
    int n;
    if (!v) return 0;
    kv_level_targets(db, v, &t);
    n = (int)v->n_levels;
    for (int l = 0; l < n && l < max; l++) {
        kv_level_info *li = &out[l];
        memset(li, 0, sizeof *li);
        li->level = l;
        li->num_tables = (int)v->count[l];
        li->size_bytes = kv_level_size(db, v, l);
        li->target_bytes = l ? t.target[l] : 0;
        for (uint32_t i = 0; i < v->count[l]; i++)
            li->num_keys += kv_ver_table(db, v, l, i)->num_entries;
        li->score = t.score[l];
    }
    kv_version_unref(db, v);
    return n;
}

static void printable(char *out, size_t cap, const uint8_t *k, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 5 < cap; i++) {
        if (k[i] >= 0x20 && k[i] < 0x7f && k[i] != '\\') out[o++] = (char)k[i];
        else o += (size_t)snprintf(out + o, cap - o, "\\x%02x", k[i]);
    }
    out[o < cap ? o : cap - 1] = 0;
}

int kv_get_tables(kv_db *db, kv_table_info *out, int max)
{
    kv_version *v = kv_version_current(db);
    int k = 0, total;
    if (!v) return 0;
    total = (int)v->total;
    for (uint32_t l = 0; l < v->n_levels; l++)
        for (uint32_t i = 0; i < v->count[l]; i++, k++) {
            kv_table_meta *tm = kv_ver_table(db, v, (int)l, i);
            kv_table_info *ti;
            if (k >= max) continue;
            ti = &out[k];
            ti->id = tm->id;
            ti->level = (int)l;
            ti->size_bytes = tm->size;
            ti->num_keys = tm->num_entries;
            ti->max_version = tm->max_version;
            ti->ingested = tm->global_version != 0;
            printable(ti->smallest, sizeof ti->smallest, kv_tm_smallest(tm),
                      kv_ikey_ulen(tm->smallest_len));
            printable(ti->largest, sizeof ti->largest, kv_tm_largest(tm),
                      kv_ikey_ulen(tm->largest_len));
        }
    kv_version_unref(db, v);
    return total;
}

int kv_get_vlog_files(kv_db *db, kv_vlog_info *out, int max)
{
    kv_vlog_shared *v = &db->sh->vlog;
    int n;
    kv_mutex_lock(&v->mu);
    n = (int)v->n;
    {
        kv_vfile *f = kv_at(db, v->files);
        for (int i = 0; i < n && i < max; i++) {
            uint64_t data = f[i].size > KV_VLOG_HEADER_SIZE ? f[i].size - KV_VLOG_HEADER_SIZE : 0;
            out[i].fid = f[i].fid;
            out[i].state = (int)f[i].state;
            out[i].size_bytes = f[i].size;
            out[i].entries = f[i].entries;
            out[i].discard_bytes = f[i].discard;
            out[i].discard_ratio = data ? (double)f[i].discard / (double)data : 0.0;
        }
    }
    kv_mutex_unlock(&v->mu);
    return n;
}

/* ---- range estimates (query planning) ---- */

/* 1 if user key k is in [lo, hi) (hi NULL: unbounded). */
static int in_range(const uint8_t *k, size_t n, const uint8_t *lo, size_t lon, const uint8_t *hi,
                    size_t hin)
{
    return kv_ukey_cmp(k, n, lo, lon) >= 0 && (!hi || kv_ukey_cmp(k, n, hi, hin) < 0);
}

#define MEM_SAMPLE 4096

kv_status kv_estimate_range(kv_db *db, const void *lo, size_t lon, const void *hi, size_t hin,
                            uint64_t *keys, uint64_t *bytes, kv_err *err)
{
    kv_view *v;
    kv_version *ver;
    double k = 0, b = 0;
    kv_status st = kv_check_usable(db, err);
    if (st != KV_OK) return st;
    if (!lo) lon = 0;
    v = kv_view_pin(db);
    ver = kv_ver_at(db, v->version);
    for (uint32_t l = 0; ver && l < ver->n_levels; l++)
        for (uint32_t i = 0; i < ver->count[l]; i++) {
            kv_table_meta *tm = kv_ver_table(db, ver, (int)l, i);
            const uint8_t *s = kv_tm_smallest(tm), *g = kv_tm_largest(tm);
            size_t sn = kv_ikey_ulen(tm->smallest_len), gn = kv_ikey_ulen(tm->largest_len);
            int s_in = in_range(s, sn, lo, lon, hi, hin), g_in = in_range(g, gn, lo, lon, hi, hin);
            double frac;
            if (s_in && g_in) frac = 1.0;
            else if (s_in || g_in) frac = 0.5;
            else if (kv_ukey_cmp(s, sn, lo, lon) < 0 && (hi && kv_ukey_cmp(g, gn, hi, hin) >= 0))
                frac = 0.25; /* the range lies inside this table */
            else
                continue;
            k += frac * (double)tm->num_entries;
            b += frac * (double)tm->size;
        }
    /* memtables: count the range, sampling at most MEM_SAMPLE entries */
    for (uint32_t m = 0; m < v->n_mem; m++) {
        kv_sl *sl = kv_mt_sl(db, kv_mt_at(db, v->mems[m]));
        kv_sl_iter it;
        uint8_t small[256], *seek = small;
        uint64_t n = 0, nb = 0;
        if (kv_sl_empty(sl)) continue;
        if (lon + KV_TS_SIZE > sizeof small && !(seek = malloc(lon + KV_TS_SIZE))) continue;
        if (lon) memcpy(seek, lo, lon);
        kv_ikey_put_ts(seek + lon, UINT64_MAX);
        kv_sl_iter_init(&it, sl);
        for (kv_sl_iter_seek(&it, seek, lon + KV_TS_SIZE); kv_sl_iter_valid(&it) && n < MEM_SAMPLE;
             kv_sl_iter_next(&it)) {
            size_t kn, vn;
            const uint8_t *key = kv_sl_iter_key(&it, &kn);
            if (hi && kv_ukey_cmp(key, kv_ikey_ulen(kn), hi, hin) >= 0) break;
            kv_sl_iter_value(&it, &vn);
            n++;
            nb += kn + vn;
        }
        if (seek != small) free(seek);
        if (n == MEM_SAMPLE) { /* more: scale by the memtable's share */
            n *= 4;
            nb *= 4;
        }
        k += (double)n;
        b += (double)nb;
    }
    kv_view_unpin(db, v);
    if (keys) *keys = (uint64_t)k;
    if (bytes) *bytes = (uint64_t)b;
    return KV_OK;
}
