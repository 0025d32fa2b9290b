/*
 * snapshot.c - registry of active read versions (see snapshot.h).
 */
#include "snapshot.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "db.h"
#include "err.h"

static kv_snap_slot *slots(kv_db *db)
{
    return (kv_snap_slot *)kv_at(db, db->sh->snap_off);
}

static int pid_alive(int32_t pid)
{
    return pid == getpid() || kill(pid, 0) == 0 || errno != ESRCH;
}

kv_status kv_snap_register(kv_db *db, uint64_t version, int *slot, uint64_t *out, kv_err *err)
{
    kv_shared *sh = db->sh;
    kv_snap_slot *s = slots(db);
    uint32_t n = sh->n_snaps, i, start;
    int32_t me = (int32_t)getpid();

    kv_mutex_lock(&sh->snaps.mu);
    start = sh->snaps.hint % (n ? n : 1);
    for (i = 0; i < n; i++) {
        uint32_t k = (start + i) % n;
        if (atomic_load_explicit(&s[k].version, memory_order_relaxed) == 0) {
            uint64_t v = version ? version
                                 : atomic_load_explicit(&sh->visible_version, memory_order_acquire);
            atomic_store_explicit(&s[k].pid, me, memory_order_relaxed);
            atomic_store_explicit(&s[k].vlog_pin, 0, memory_order_relaxed);
            atomic_store_explicit(&s[k].version, v + 1, memory_order_release); /* 0 = free */
            sh->snaps.hint = k + 1;
            sh->snaps.in_use++;
            kv_mutex_unlock(&sh->snaps.mu);
            *slot = (int)k;
            *out = v;
            return KV_OK;
        }
    }
    kv_mutex_unlock(&sh->snaps.mu);
    return kv_seterr(err, KV_NO_SPACE, 0, "all %u snapshot slots are in use", n);
}

void kv_snap_unregister(kv_db *db, int slot)
{
    kv_snap_slot *s = slots(db);
    if (slot < 0) return;
    kv_mutex_lock(&db->sh->snaps.mu);
    atomic_store_explicit(&s[slot].vlog_pin, 0, memory_order_relaxed);
    atomic_store_explicit(&s[slot].version, 0, memory_order_release);
    atomic_store_explicit(&s[slot].pid, 0, memory_order_relaxed);
    db->sh->snaps.in_use--;
    kv_mutex_unlock(&db->sh->snaps.mu);
}

uint64_t kv_snap_horizon(kv_db *db)
{
    kv_shared *sh = db->sh;
    kv_snap_slot *s = slots(db);
    uint64_t h;
    kv_mutex_lock(&sh->snaps.mu);
    h = atomic_load_explicit(&sh->visible_version, memory_order_acquire);
    for (uint32_t i = 0; i < sh->n_snaps && sh->snaps.in_use; i++) {
        uint64_t v = atomic_load_explicit(&s[i].version, memory_order_relaxed);
        if (!v) continue;
        v--; /* stored as version + 1 */
        if (!pid_alive(atomic_load_explicit(&s[i].pid, memory_order_relaxed))) {
            /* the process died without releasing it */
            atomic_store_explicit(&s[i].version, 0, memory_order_relaxed);
            sh->snaps.in_use--;
            continue;
        }
        if (v < h) h = v;
    }
    kv_mutex_unlock(&sh->snaps.mu);
    return h;
}

void kv_snap_set_vlog_pin(kv_db *db, int slot, uint32_t fid)
{
    if (slot >= 0) atomic_store(&slots(db)[slot].vlog_pin, fid);
}

uint32_t kv_snap_min_vlog_pin(kv_db *db)
{
    kv_snap_slot *s = slots(db);
    uint32_t m = UINT32_MAX;
    for (uint32_t i = 0; i < db->sh->n_snaps; i++) {
        uint32_t p = atomic_load(&s[i].vlog_pin);
        if (p && p < m && atomic_load(&s[i].version) &&
            pid_alive(atomic_load_explicit(&s[i].pid, memory_order_relaxed)))
            m = p;
    }
    return m;
}
