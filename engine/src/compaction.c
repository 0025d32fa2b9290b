/*
 * compaction.c - picking, claiming, running and installing compactions
 * (see compaction.h).
 */
#include "compaction.h"

#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "err.h"
#include "flush.h"
#include "ikey.h"
#include "iter.h"
#include "manifest.h"
#include "sst.h"
#include "vlog.h"

#define MAX_CLAIMS 128

typedef struct claim {
    int level;
    uint64_t job;
    uint8_t *lo, *hi; /* user keys, inclusive */
    size_t lon, hin;
} claim;

struct kv_compact_state {
    claim claims[MAX_CLAIMS];
    int n;
    uint64_t next_job;
};

typedef struct cjob {
    uint64_t id;
    int from, to;
    uint64_t *in_from, *in_to; /* table meta offsets */
    uint32_t n_from, n_to;
    uint8_t *lo, *hi;          /* user-key range of all inputs */
    size_t lon, hin;
    int trivial;
    int rewrite;               /* never move: rewrite to drop dead versions (flatten) */
    uint64_t file_size;
    kv_version *v;             /* pinned version the job was picked from */
    uint64_t visible;          /* the visible version then: v has every drop up to it */
} cjob;

/* ---- targets ---- */

void kv_level_targets(kv_db *db, const kv_version *v, kv_targets *t)
{
    const kv_options *o = db->opt;
    int last = (int)v->n_levels - 1, i;
    uint64_t dbsize = kv_level_size(db, v, last), tsz;

    memset(t, 0, sizeof *t);
    for (i = last; i > 0; i--) {
        uint64_t target = dbsize < (uint64_t)o->base_level_size ? (uint64_t)o->base_level_size
                                                                 : dbsize;
        t->target[i] = target;
        if (t->base_level == 0 && target <= (uint64_t)o->base_level_size) t->base_level = i;
        dbsize /= (uint64_t)o->level_size_multiplier;
    }
    if (t->base_level == 0) t->base_level = 1;
    tsz = (uint64_t)o->base_table_size;
    for (i = 0; i <= last; i++) {
        if (i == 0) t->file_size[i] = (uint64_t)o->mem_table_size;
        else if (i <= t->base_level) t->file_size[i] = tsz;
        else {
            tsz *= (uint64_t)o->table_size_multiplier;
            t->file_size[i] = tsz;
        }
    }
    /* Compact level 0 straight into the first level below the base that
     * holds data when the levels in between are empty. */
    for (i = t->base_level + 1; i < last; i++) {
        if (kv_level_size(db, v, i) > 0) break;
        t->base_level = i;
    }
    if (t->base_level < last && kv_level_size(db, v, t->base_level) == 0 &&
        kv_level_size(db, v, t->base_level + 1) < t->target[t->base_level + 1])
        t->base_level++;
    /* Never below a level that holds data: for any user key, deeper levels
     * must hold only older versions (point reads stop at the first hit). */
    for (i = 1; i < t->base_level; i++)
        if (v->count[i]) {
            t->base_level = i;
            break;
        }

    t->score[0] = (double)v->count[0] / (double)o->num_level_zero_tables;
    for (i = 1; i < last; i++) {
        uint64_t sz = 0;
        for (uint32_t k = 0; k < v->count[i]; k++) {
            kv_table_meta *tm = kv_ver_table(db, v, i, k);
            if (!atomic_load(&tm->compacting)) sz += tm->size;
        }
        t->score[i] = t->target[i] ? (double)sz / (double)t->target[i] : 0;
    }
}

/* ---- claims ---- */

static int ranges_overlap(const uint8_t *alo, size_t alon, const uint8_t *ahi, size_t ahin,
                          const uint8_t *blo, size_t blon, const uint8_t *bhi, size_t bhin)
{
    return kv_ukey_cmp(alo, alon, bhi, bhin) <= 0 && kv_ukey_cmp(blo, blon, ahi, ahin) <= 0;
}

static int claimed(kv_db *db, int level, const uint8_t *lo, size_t lon, const uint8_t *hi,
                   size_t hin)
{
    struct kv_compact_state *cs = db->cstate;
    for (int i = 0; i < cs->n; i++)
        if (cs->claims[i].level == level &&
            ranges_overlap(cs->claims[i].lo, cs->claims[i].lon, cs->claims[i].hi,
                           cs->claims[i].hin, lo, lon, hi, hin))
            return 1;
    return 0;
}

int kv_compaction_ingest_level(kv_db *db, const kv_version *v, const uint8_t *lo, size_t lon,
                               const uint8_t *hi, size_t hin)
{
    int best = 0;
    for (int level = 0; level < (int)v->n_levels; level++) {
        for (uint32_t i = 0; i < v->count[level]; i++) {
            const kv_table_meta *tm = kv_ver_table(db, v, level, i);
            if (ranges_overlap(kv_tm_smallest(tm), kv_ikey_ulen(tm->smallest_len),
                               kv_tm_largest(tm), kv_ikey_ulen(tm->largest_len), lo, lon, hi, hin))
                return best;
        }
        if (db->cstate && claimed(db, level, lo, lon, hi, hin)) return best;
        best = level;
    }
    return best;
}

static int add_claim(kv_db *db, int level, uint64_t job, const uint8_t *lo, size_t lon,
                     const uint8_t *hi, size_t hin)
{
    struct kv_compact_state *cs = db->cstate;
    claim *c;
    if (cs->n == MAX_CLAIMS) return -1;
    c = &cs->claims[cs->n];
    c->lo = malloc(lon ? lon : 1);
    c->hi = malloc(hin ? hin : 1);
    if (!c->lo || !c->hi) {
        free(c->lo);
        free(c->hi);
        return -1;
    }
    memcpy(c->lo, lo, lon);
    memcpy(c->hi, hi, hin);
    c->lon = lon;
    c->hin = hin;
    c->level = level;
    c->job = job;
    cs->n++;
    return 0;
}

static void drop_claims(kv_db *db, uint64_t job)
{
    struct kv_compact_state *cs = db->cstate;
    for (int i = 0; i < cs->n;) {
        if (cs->claims[i].job == job) {
            free(cs->claims[i].lo);
            free(cs->claims[i].hi);
            cs->claims[i] = cs->claims[--cs->n];
        } else
            i++;
    }
}

void kv_compaction_free(kv_db *db)
{
    struct kv_compact_state *cs = db->cstate;
    if (!cs) return;
    for (int i = 0; i < cs->n; i++) {
        free(cs->claims[i].lo);
        free(cs->claims[i].hi);
    }
    free(cs);
    db->cstate = NULL;
}

/* ---- picking (vset.mu held) ---- */

static void job_free(kv_db *db, cjob *j)
{
    if (!j) return;
    free(j->in_from);
    free(j->in_to);
    free(j->lo);
    free(j->hi);
    if (j->v) kv_version_unref(db, j->v);
    free(j);
}

/* Widens [lo,hi] (owned by j) to cover table tm's user keys. */
static int widen(cjob *j, const kv_table_meta *tm)
{
    const uint8_t *s = kv_tm_smallest(tm), *l = kv_tm_largest(tm);
    size_t sn = kv_ikey_ulen(tm->smallest_len), ln = kv_ikey_ulen(tm->largest_len);
    if (!j->lo || kv_ukey_cmp(s, sn, j->lo, j->lon) < 0) {
        uint8_t *p = realloc(j->lo, sn ? sn : 1);
        if (!p) return -1;
        memcpy(p, s, sn);
        j->lo = p;
        j->lon = sn;
    }
    if (!j->hi || kv_ukey_cmp(l, ln, j->hi, j->hin) > 0) {
        uint8_t *p = realloc(j->hi, ln ? ln : 1);
        if (!p) return -1;
        memcpy(p, l, ln);
        j->hi = p;
        j->hin = ln;
    }
    return 0;
}

static int table_overlaps(const kv_table_meta *tm, const uint8_t *lo, size_t lon,
                          const uint8_t *hi, size_t hin)
{
    return ranges_overlap(kv_tm_smallest(tm), kv_ikey_ulen(tm->smallest_len), kv_tm_largest(tm),
                          kv_ikey_ulen(tm->largest_len), lo, lon, hi, hin);
}

/* Adds the tables of level `to` overlapping j's range to j->in_to; 0 on
 * success, -1 if one is being compacted or on OOM. */
static int fill_to(kv_db *db, cjob *j)
{
    const kv_version *v = j->v;
    uint32_t n = v->count[j->to];
    j->in_to = malloc(sizeof(uint64_t) * (n ? n : 1));
    if (!j->in_to) return -1;
    for (uint32_t i = 0; i < n; i++) {
        kv_table_meta *tm = kv_ver_table(db, v, j->to, i);
        if (!table_overlaps(tm, j->lo, j->lon, j->hi, j->hin)) continue;
        if (atomic_load(&tm->compacting)) return -1;
        j->in_to[j->n_to++] = v->tables[v->start[j->to] + i];
    }
    return 0;
}

/* Claims j: flags its tables and records its ranges.  0 on success. */
static int claim_job(kv_db *db, cjob *j)
{
    size_t lon = j->lon, hin = j->hin;
    const uint8_t *lo = j->lo, *hi = j->hi;
    if (claimed(db, j->from, lo, lon, hi, hin) || claimed(db, j->to, lo, lon, hi, hin)) return -1;
    /* the output range at `to` also covers the overlapped tables there */
    for (uint32_t i = 0; i < j->n_to; i++)
        if (widen(j, kv_tm_at(db, j->in_to[i])) != 0) return -1;
    if (claimed(db, j->to, j->lo, j->lon, j->hi, j->hin)) return -1;
    j->id = ++db->cstate->next_job;
    if (add_claim(db, j->from, j->id, j->lo, j->lon, j->hi, j->hin) != 0 ||
        add_claim(db, j->to, j->id, j->lo, j->lon, j->hi, j->hin) != 0) {
        drop_claims(db, j->id);
        return -1;
    }
    for (uint32_t i = 0; i < j->n_from; i++)
        atomic_store(&kv_tm_at(db, j->in_from[i])->compacting, 1);
    for (uint32_t i = 0; i < j->n_to; i++)
        atomic_store(&kv_tm_at(db, j->in_to[i])->compacting, 1);
    return 0;
}

static void unclaim_job(kv_db *db, cjob *j)
{
    for (uint32_t i = 0; i < j->n_from; i++)
        atomic_store(&kv_tm_at(db, j->in_from[i])->compacting, 0);
    for (uint32_t i = 0; i < j->n_to; i++)
        atomic_store(&kv_tm_at(db, j->in_to[i])->compacting, 0);
    drop_claims(db, j->id);
}

static cjob *job_new(kv_db *db, int from, int to)
{
    cjob *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->from = from;
    j->to = to;
    j->v = kv_ver_at(db, db->sh->vset.current);
    kv_version_ref(j->v);
    j->visible = atomic_load(&db->sh->visible_version);
    return j;
}

/* Level 0 into `to`: the oldest run of level-0 tables nobody compacts. */
static cjob *pick_l0(kv_db *db, int to)
{
    kv_version *v = kv_ver_at(db, db->sh->vset.current);
    uint32_t n = v->count[0];
    cjob *j;
    if (!n) return NULL;
    j = job_new(db, 0, to);
    if (!j) return NULL;
    j->in_from = malloc(sizeof(uint64_t) * n);
    if (!j->in_from) goto fail;
    for (uint32_t i = n; i > 0; i--) { /* oldest first */
        kv_table_meta *tm = kv_ver_table(db, v, 0, i - 1);
        if (atomic_load(&tm->compacting)) break;
        j->in_from[j->n_from++] = v->tables[v->start[0] + i - 1];
        if (widen(j, tm) != 0) goto fail;
    }
    if (!j->n_from || fill_to(db, j) != 0 || claim_job(db, j) != 0) goto fail;
    return j;
fail:
    job_free(db, j);
    return NULL;
}

/* One table of level `from` (>= 1) into from+1: the one holding the oldest
 * data among those that can be claimed. */
static cjob *pick_level(kv_db *db, int from)
{
    kv_version *v = kv_ver_at(db, db->sh->vset.current);
    uint32_t n = v->count[from];
    uint32_t *order;
    cjob *j = NULL;
    if (!n || from + 1 >= (int)v->n_levels) return NULL;
    order = malloc(sizeof *order * n);
    if (!order) return NULL;
    for (uint32_t i = 0; i < n; i++) order[i] = i;
    for (uint32_t i = 1; i < n; i++) { /* by max_version ascending */
        uint32_t x = order[i], k = i;
        uint64_t mx = kv_ver_table(db, v, from, x)->max_version;
        while (k > 0 && kv_ver_table(db, v, from, order[k - 1])->max_version > mx) {
            order[k] = order[k - 1];
            k--;
        }
        order[k] = x;
    }
    for (uint32_t k = 0; k < n; k++) {
        kv_table_meta *tm = kv_ver_table(db, v, from, order[k]);
        if (atomic_load(&tm->compacting)) continue;
        j = job_new(db, from, from + 1);
        if (!j) break;
        j->in_from = malloc(sizeof(uint64_t));
        if (!j->in_from || widen(j, tm) != 0) {
            job_free(db, j);
            j = NULL;
            break;
        }
        j->in_from[j->n_from++] = v->tables[v->start[from] + order[k]];
        if (fill_to(db, j) == 0 && claim_job(db, j) == 0) break;
        job_free(db, j);
        j = NULL;
    }
    free(order);
    return j;
}

/* When nothing is urgent: a table that still holds entries of a drop no
 * reader can see below (TRUNCATE of a table whose keys share LSM tables
 * with others), rewritten in its level so the entries and their value-log
 * bytes go and the drop can retire.  Level 0 is compacted down instead (a
 * rewritten level-0 table would lose its place among the newer ones). */
static cjob *pick_dropped(kv_db *db, const kv_targets *t)
{
    kv_version *v = kv_ver_at(db, db->sh->vset.current);
    const kv_drop_list *l = kv_at(db, v->drops);
    uint64_t upto = kv_snap_horizon(db), vis = atomic_load(&db->sh->visible_version);
    if (!l) return NULL;
    if (vis < upto) upto = vis; /* as run_merge applies them */
    for (int level = 0; level < (int)v->n_levels; level++)
        for (uint32_t k = 0; k < v->count[level]; k++) {
            kv_table_meta *tm = kv_ver_table(db, v, level, k);
            cjob *j;
            if (atomic_load(&tm->compacting) || !kv_drops_pending(l, tm, upto)) continue;
            if (level == 0) return pick_l0(db, t->base_level);
            j = job_new(db, level, level);
            if (!j) return NULL;
            j->rewrite = 1;
            j->in_from = malloc(sizeof(uint64_t));
            if (!j->in_from || widen(j, tm) != 0) {
                job_free(db, j);
                return NULL;
            }
            j->in_from[j->n_from++] = v->tables[v->start[level] + k];
            if (claim_job(db, j) == 0) return j;
            job_free(db, j);
        }
    return NULL;
}

/* Picks the most urgent job (vset.mu held).  prefer_l0: the first
 * compactor always tries level 0 first, as Badger's compactor 0. */
static cjob *pick(kv_db *db, int prefer_l0)
{
    kv_version *v = kv_ver_at(db, db->sh->vset.current);
    kv_targets t;
    int order[KV_MAX_LEVELS], n = 0, last = (int)v->n_levels - 1;
    double adj[KV_MAX_LEVELS];
    cjob *j = NULL;

    kv_level_targets(db, v, &t);
    for (int i = 0; i < last; i++) adj[i] = t.score[i];
    /* A level whose next level is also over its target is less urgent:
     * compacting it would only push the next level further over. */
    for (int i = t.base_level; i < last - 1; i++)
        if (adj[i] >= 1.0 && t.score[i + 1] > 1.0) adj[i] /= t.score[i + 1];
    for (int i = 0; i < last; i++)
        if (t.score[i] >= 1.0) order[n++] = i;
    for (int a = 1; a < n; a++) { /* by adjusted score, descending */
        int x = order[a], b = a;
        while (b > 0 && adj[order[b - 1]] < adj[x]) {
            order[b] = order[b - 1];
            b--;
        }
        order[b] = x;
    }
    if (prefer_l0 && n && t.score[0] >= 1.0 && order[0] != 0) {
        int k = 0;
        while (order[k] != 0) k++;
        memmove(order + 1, order, sizeof order[0] * (size_t)k);
        order[0] = 0;
    }
    for (int k = 0; k < n && !j; k++) {
        int lvl = order[k];
        if (lvl == 0) j = pick_l0(db, t.base_level);
        else j = pick_level(db, lvl);
        if (j) j->file_size = t.file_size[j->to];
    }
    if (!j && (j = pick_dropped(db, &t))) j->file_size = t.file_size[j->to];
    return j;
}

/* ---- running ---- */

typedef struct outputs {
    uint64_t *meta;
    char **paths;
    size_t n, cap;
} outputs;

static void outputs_discard(kv_db *db, outputs *o)
{
    for (size_t i = 0; i < o->n; i++) {
        if (o->meta[i] && atomic_load(&kv_tm_at(db, o->meta[i])->refs) == 0) {
            if (kv_may_delete_tables(db)) db->env->remove(db->env, o->paths[i], NULL);
            kv_tm_discard(db, o->meta[i]);
        }
        free(o->paths[i]);
    }
    free(o->meta);
    free(o->paths);
    memset(o, 0, sizeof *o);
}

static kv_status finish_output(kv_db *db, kv_sst_builder **bp, char *path, outputs *o,
                               uint64_t *written, uint64_t dropped_upto, kv_err *err)
{
    kv_sst_props p;
    const uint8_t *s, *l;
    size_t sn, ln;
    uint64_t meta = 0;
    kv_status st = kv_sst_builder_finish(*bp, &p, err);
    if (st == KV_OK) {
        s = kv_sst_builder_smallest(*bp, &sn);
        l = kv_sst_builder_largest(*bp, &ln);
        st = kv_tm_new(db, &p, s, sn, l, ln, &meta, err);
        if (st == KV_OK) kv_tm_at(db, meta)->dropped_upto = dropped_upto;
    }
    kv_sst_builder_free(*bp);
    *bp = NULL;
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 8;
        uint64_t *m = realloc(o->meta, cap * sizeof *m);
        char **pp = m ? realloc(o->paths, cap * sizeof *pp) : NULL;
        if (m) o->meta = m;
        if (!pp) {
            if (meta) kv_tm_discard(db, meta);
            db->env->remove(db->env, path, NULL);
            free(path);
            return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory in compaction");
        }
        o->paths = pp;
        o->cap = cap;
    }
    o->meta[o->n] = meta;
    o->paths[o->n++] = path;
    if (st == KV_OK) *written += p.file_size;
    return st;
}

/* 1 if any level below `to` has a table overlapping [lo, hi]. */
static int data_below(kv_db *db, const kv_version *v, int to, const cjob *j)
{
    for (int l = to + 1; l < (int)v->n_levels; l++)
        for (uint32_t i = 0; i < v->count[l]; i++)
            if (table_overlaps(kv_ver_table(db, v, l, i), j->lo, j->lon, j->hi, j->hin)) return 1;
    return 0;
}

static kv_status run_merge(kv_db *db, cjob *j, outputs *out, uint64_t *read, uint64_t *written,
                           kv_err *err)
{
    kv_iiter **c;
    kv_merge *m;
    kv_sst_read_opts ro;
    kv_sst_builder *b = NULL;
    kv_sst_build_opts bo;
    char *path = NULL;
    uint64_t horizon = kv_snap_horizon(db), now = db->env->unix_seconds(db->env);
    int bottom = !data_below(db, j->v, j->to, j), keep = db->opt->num_versions_to_keep;
    const kv_drop_list *drops = kv_at(db, j->v->drops);
    /* drops applied: those of j->v no reader can be older than */
    uint64_t drop_h = horizon < j->visible ? horizon : j->visible;
    uint8_t *last = NULL;          /* previous internal key */
    size_t last_n = 0, last_cap = 0;
    int kept_old = 0, done = 0;
    unsigned long steps = 0;
    kv_status st = KV_OK;
    uint32_t n = j->n_from + j->n_to, k = 0;

    memset(&ro, 0, sizeof ro);
    ro.verify = db->opt->checksum_verification_mode >= KV_VERIFY_ON_BLOCK_READ;
    c = malloc(sizeof *c * n);
    if (!c) return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory in compaction");
    /* Equal internal keys carry equal values (one commit), so the order
     * of the sources does not matter; the merge keeps the first. */
    for (uint32_t i = 0; i < j->n_from; i++)
        c[k++] = kv_iiter_table(db, kv_tm_at(db, j->in_from[i]), &ro);
    for (uint32_t i = 0; i < j->n_to; i++) c[k++] = kv_iiter_table(db, kv_tm_at(db, j->in_to[i]), &ro);
    for (uint32_t i = 0; i < n; i++)
        if (!c[i]) {
            for (uint32_t q = 0; q < n; q++)
                if (c[q]) c[q]->vt->destroy(c[q]);
            free(c);
            return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory in compaction");
        }
    m = kv_merge_new(c, (int)n, 0);
    free(c);
    if (!m) return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory in compaction");
    for (uint32_t i = 0; i < j->n_from; i++) *read += kv_tm_at(db, j->in_from[i])->size;
    for (uint32_t i = 0; i < j->n_to; i++) *read += kv_tm_at(db, j->in_to[i])->size;

    for (kv_merge_rewind(m); kv_merge_valid(m); kv_merge_next(m)) {
        size_t kn, vn;
        const uint8_t *key = kv_merge_key(m, &kn), *val = kv_merge_value(m, &vn);
        uint64_t ver = kv_ikey_version(key, kn);
        int same_user, drop = 0;
        kv_vstruct vs;

        if ((++steps & 1023) == 0 && atomic_load(&db->sh->stopping)) {
            st = kv_seterr(err, KV_CLOSED, 0, "compaction interrupted by close");
            break;
        }
        if (last && kn == last_n && memcmp(key, last, kn) == 0) continue; /* duplicate */
        same_user = last && kv_ikey_ulen(kn) == kv_ikey_ulen(last_n) &&
                    memcmp(key, last, kv_ikey_ulen(kn)) == 0;
        if (!same_user) {
            kept_old = 0;
            done = 0;
        }
        if (kv_vstruct_decode(val, vn, &vs) != 0) {
            st = kv_seterr(err, KV_CORRUPTION, 0, "compaction: malformed value struct");
            break;
        }
        if (drops && kv_drops_cover(drops, key, kv_ikey_ulen(kn), ver, drop_h)) {
            drop = 1; /* dropped (DropPrefix) and nobody reads below the drop */
            done = 1;
        } else if (ver <= horizon) {
            int dead = (vs.meta & KV_META_DELETE) || (vs.expires_at && vs.expires_at <= now);
            if (done) drop = 1;
            else if (kept_old == 0) {
                if (dead) {
                    done = 1;
                    drop = bottom;
                } else if (++kept_old >= keep)
                    done = 1;
            } else if (dead) {
                done = 1;
                drop = 1;
            } else if (++kept_old >= keep)
                done = 1;
        }
        if (kn > last_cap) {
            uint8_t *p = realloc(last, kn);
            if (!p) {
                st = kv_seterr(err, KV_NO_MEMORY, 0, "out of memory in compaction");
                break;
            }
            last = p;
            last_cap = kn;
        }
        memcpy(last, key, kn);
        last_n = kn;
        if (drop) {
            if (vs.meta & KV_META_VALUE_PTR) { /* its vlog bytes are dead now */
                kv_vptr p;
                if (kv_vptr_decode(vs.value, vs.value_len, &p) == 0) kv_vlog_discard(db, p.fid, p.len);
            }
            continue;
        }
        /* switch output files only between user keys */
        if (b && !same_user && kv_sst_builder_size(b) >= j->file_size) {
            st = finish_output(db, &b, path, out, written, drop_h, err);
            path = NULL;
            if (st != KV_OK) break;
        }
        if (!b) {
            uint64_t id = atomic_fetch_add(&db->sh->vset.next_file_id, 1);
            path = malloc(KV_PATH_MAX + 32);
            if (!path) {
                st = kv_seterr(err, KV_NO_MEMORY, 0, "out of memory in compaction");
                break;
            }
            kv_file_path(path, KV_PATH_MAX + 32, db->dir, id, "sst");
            kv_table_build_opts(db, id, &bo);
            st = kv_sst_builder_new(db->env, path, &bo, &b, err);
            if (st != KV_OK) {
                free(path);
                path = NULL;
                break;
            }
        }
        st = kv_sst_builder_add(b, key, kn, val, vn, err);
        if (st != KV_OK) break;
    }
    if (st == KV_OK) st = kv_merge_status(m, err);
    if (b) {
        if (st == KV_OK) st = finish_output(db, &b, path, out, written, drop_h, err);
        else {
            kv_sst_builder_free(b);
            free(path);
        }
    }
    kv_merge_free(m);
    free(last);
    return st;
}

static kv_status run_job(kv_db *db, cjob *j, kv_err *err)
{
    kv_vedit e;
    outputs out;
    uint64_t read = 0, written = 0;
    kv_status st = KV_OK;

    kv_vedit_init(&e);
    memset(&out, 0, sizeof out);
    if (j->n_to == 0 && j->n_from == 1 && !j->rewrite) j->trivial = 1; /* nothing to merge: move it */
    for (uint32_t i = 0; i < j->n_from && st == KV_OK; i++)
        st = kv_vedit_delete(&e, j->from, kv_tm_at(db, j->in_from[i])->id, err);
    for (uint32_t i = 0; i < j->n_to && st == KV_OK; i++)
        st = kv_vedit_delete(&e, j->to, kv_tm_at(db, j->in_to[i])->id, err);
    if (st == KV_OK) {
        if (j->trivial) st = kv_vedit_add(&e, j->to, j->in_from[0], err);
        else {
            st = run_merge(db, j, &out, &read, &written, err);
            if (st == KV_OK && out.n && !db->opt->in_memory)
                st = db->env->sync_dir(db->env, db->dir, err);
            for (size_t i = 0; i < out.n && st == KV_OK; i++)
                st = kv_vedit_add(&e, j->to, out.meta[i], err);
        }
    }
    if (st == KV_OK) {
        kv_mutex_lock(&db->sh->vset.mu);
        st = kv_apply_edit(db, &e, err);
        kv_mutex_unlock(&db->sh->vset.mu);
    }
    if (st == KV_OK) {
        /* installed: the version owns the outputs now */
        for (size_t i = 0; i < out.n; i++) free(out.paths[i]);
        free(out.meta);
        free(out.paths);
        KV_STAT_ADD(db, compactions, 1);
        KV_STAT_ADD(db, compaction_bytes_read, read);
        KV_STAT_ADD(db, compaction_bytes_written, written);
        kv_log(db, KV_LOG_DEBUG, "compacted %u+%u tables L%d->L%d%s: %llu -> %llu bytes",
               j->n_from, j->n_to, j->from, j->to, j->trivial ? " (moved)" : "",
               (unsigned long long)read, (unsigned long long)written);
    } else
        outputs_discard(db, &out);
    kv_vedit_free(&e);
    return st;
}

/* Runs j and releases it (claims, version pin).  vset.mu NOT held. */
static kv_status run_and_release(kv_db *db, cjob *j, kv_err *err)
{
    kv_status st = run_job(db, j, err);
    kv_mutex_lock(&db->sh->vset.mu);
    unclaim_job(db, j);
    kv_cond_broadcast(&db->sh->vset.cv);
    job_free(db, j);
    kv_mutex_unlock(&db->sh->vset.mu);
    return st;
}

/* ---- threads ---- */

typedef struct compactor_arg {
    kv_db *db;
    int index;
} compactor_arg;

static void *compactor_main(void *p)
{
    compactor_arg a = *(compactor_arg *)p;
    kv_db *db = a.db;
    kv_shared *sh = db->sh;
    free(p);
    kv_mutex_lock(&sh->vset.mu);
    while (!atomic_load(&sh->stopping)) {
        cjob *j;
        kv_err err;
        kv_status st;
        if (a.index == 0) kv_drops_tick(db); /* dropped ranges: tables to remove, drops done */
        if (atomic_load(&sh->bg_status) != KV_OK) {
            kv_cond_timedwait_ms(&sh->vset.cv, &sh->vset.mu, 1000);
            continue;
        }
        j = pick(db, a.index == 0);
        if (!j) {
            kv_cond_timedwait_ms(&sh->vset.cv, &sh->vset.mu, 1000);
            continue;
        }
        kv_mutex_unlock(&sh->vset.mu);
        st = run_and_release(db, j, &err);
        if (st != KV_OK && st != KV_CLOSED) {
            kv_err_prefix(&err, "compaction failed");
            kv_set_bg_error(db, &err);
        }
        kv_mutex_lock(&sh->vset.mu);
    }
    kv_mutex_unlock(&sh->vset.mu);
    return NULL;
}

kv_status kv_compaction_start(kv_db *db, kv_err *err)
{
    if (!db->cstate && !(db->cstate = calloc(1, sizeof *db->cstate)))
        return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory starting compactors");
    for (int i = 0; i < db->opt->num_compactors; i++) {
        compactor_arg *a = malloc(sizeof *a);
        if (!a) return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory starting compactors");
        a->db = db;
        a->index = i;
        if (pthread_create(&db->compactors[i], NULL, compactor_main, a) != 0) {
            free(a);
            return kv_seterr(err, KV_IO, 0, "could not start compactor thread %d", i);
        }
        db->n_compactors = i + 1;
    }
    return KV_OK;
}

void kv_compaction_stop(kv_db *db)
{
    kv_mutex_lock(&db->sh->vset.mu);
    kv_cond_broadcast(&db->sh->vset.cv);
    kv_mutex_unlock(&db->sh->vset.mu);
    for (int i = 0; i < db->n_compactors; i++) pthread_join(db->compactors[i], NULL);
    db->n_compactors = 0;
}

/* ---- foreground compactions ---- */

/* Waits (vset.mu held) for a claim to become possible; returns the job or
 * NULL when there is nothing left to do. */
typedef cjob *(*picker)(kv_db *db, int *nothing_left);

static kv_status run_forced(kv_db *db, picker pk, kv_err *err)
{
    kv_shared *sh = db->sh;
    kv_status st = KV_OK;
    if (!db->cstate && !(db->cstate = calloc(1, sizeof *db->cstate)))
        return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory");
    kv_mutex_lock(&sh->vset.mu);
    for (;;) {
        int nothing = 0;
        cjob *j;
        if (atomic_load(&sh->bg_status) != KV_OK) break;
        j = pk(db, &nothing);
        if (nothing) break;
        if (!j) { /* blocked by a running background job */
            kv_cond_timedwait_ms(&sh->vset.cv, &sh->vset.mu, 100);
            continue;
        }
        kv_mutex_unlock(&sh->vset.mu);
        st = run_and_release(db, j, err);
        kv_mutex_lock(&sh->vset.mu);
        if (st != KV_OK) break;
    }
    if (st == KV_OK) kv_drops_tick(db);
    kv_mutex_unlock(&sh->vset.mu);
    if (st == KV_OK) st = kv_check_bg_error(db, err);
    return st;
}

static cjob *pick_l0_forced(kv_db *db, int *nothing)
{
    kv_version *v = kv_ver_at(db, db->sh->vset.current);
    kv_targets t;
    cjob *j;
    if (v->count[0] == 0) {
        *nothing = 1;
        return NULL;
    }
    kv_level_targets(db, v, &t);
    j = pick_l0(db, t.base_level);
    if (j) j->file_size = t.file_size[j->to];
    return j;
}

kv_status kv_compact_l0(kv_db *db, kv_err *err)
{
    return run_forced(db, pick_l0_forced, err);
}

/* Flatten: everything above the deepest non-empty level moves into it. */
static cjob *pick_flatten(kv_db *db, int *nothing)
{
    kv_version *v = kv_ver_at(db, db->sh->vset.current);
    kv_targets t;
    int deepest = 0, src = -1;
    cjob *j = NULL;
    kv_level_targets(db, v, &t);
    for (int l = (int)v->n_levels - 1; l >= 1; l--)
        if (v->count[l]) {
            deepest = l;
            break;
        }
    if (!deepest) deepest = t.base_level;
    for (int l = 0; l < deepest; l++)
        if (v->count[l]) {
            src = l;
            break;
        }
    if (src < 0) {
        *nothing = 1;
        return NULL;
    }
    if (src == 0) j = pick_l0(db, t.base_level < deepest ? t.base_level : deepest);
    else j = pick_level(db, src);
    if (j) {
        j->file_size = t.file_size[j->to];
        j->rewrite = 1;
    }
    return j;
}

kv_status kv_compact_all(kv_db *db, kv_err *err)
{
    kv_status st;
    if (!db) return kv_seterr(err, KV_INVALID, 0, "db is required");
    st = kv_check_usable(db, err);
    if (st != KV_OK) return st;
    if (!db->is_host)
        return kv_seterr(err, KV_INVALID, 0, "kv_compact_all must be called in the host process");
    if (db->opt->read_only) return kv_seterr(err, KV_READ_ONLY, 0, "database is read-only");
    st = kv_flush(db, err);
    if (st != KV_OK) return st;
    return run_forced(db, pick_flatten, err);
}
