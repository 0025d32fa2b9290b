/*
 * manifest.c - MANIFEST encoding, replay, append and rewrite (see
 * manifest.h).
 *
 * Record: a frame (frame.h) around the payload
 * Payload: u8 type (1 = edit) | u64 next_file_id | u64 max_version |
 *          u32 change count | changes
 * Change:  u8 op (1 create, 2 delete, 3 drop, 4 drop done) | u8 level |
 *          u64 id, and for create: u64 size, entries, deletes, value
 *          pointers, vlog bytes, min version, max version, global version
 *          (0, or the version of every entry of an ingested table), dropped
 *          up to (every drop up to that version applied) |
 *          u32 compression | uvarint len + smallest key | uvarint len +
 *          largest key.  For a drop (drops.h) the id is its version and a
 *          uvarint len + prefix follows; "drop done" retires the drop with
 *          that version.
 */
#include "manifest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coding.h"
#include "db.h"
#include "err.h"
#include "frame.h"
#include "hash.h"
#include "ikey.h"

#define REC_EDIT 1
#define OP_CREATE 1
#define OP_DELETE 2
#define OP_DROP 3
#define OP_UNDROP 4

/* ---- growable byte buffer ---- */

typedef struct mbuf {
    uint8_t *p;
    size_t n, cap;
    int oom;
} mbuf;

static uint8_t *mb_reserve(mbuf *b, size_t k)
{
    if (b->oom) return NULL;
    if (b->n + k > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        uint8_t *p;
        while (cap < b->n + k) cap *= 2;
        p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return NULL;
        }
        b->p = p;
        b->cap = cap;
    }
    return b->p + b->n;
}

static void mb_u8(mbuf *b, uint8_t v)
{
    uint8_t *p = mb_reserve(b, 1);
    if (p) {
        *p = v;
        b->n++;
    }
}

static void mb_u32(mbuf *b, uint32_t v)
{
    uint8_t *p = mb_reserve(b, 4);
    if (p) {
        kv_put_u32(p, v);
        b->n += 4;
    }
}

static void mb_u64(mbuf *b, uint64_t v)
{
    uint8_t *p = mb_reserve(b, 8);
    if (p) {
        kv_put_u64(p, v);
        b->n += 8;
    }
}

static void mb_bytes(mbuf *b, const uint8_t *d, size_t n)
{
    uint8_t *p = mb_reserve(b, KV_VARINT_MAX + n);
    if (p) {
        size_t k = kv_put_uvarint(p, n);
        memcpy(p + k, d, n);
        b->n += k + n;
    }
}

static void put_create(mbuf *b, int level, const kv_table_meta *t)
{
    mb_u8(b, OP_CREATE);
    mb_u8(b, (uint8_t)level);
    mb_u64(b, t->id);
    mb_u64(b, t->size);
    mb_u64(b, t->num_entries);
    mb_u64(b, t->num_deletes);
    mb_u64(b, t->num_value_ptrs);
    mb_u64(b, t->vlog_bytes);
    mb_u64(b, t->min_version);
    mb_u64(b, t->max_version);
    mb_u64(b, t->global_version);
    mb_u64(b, t->dropped_upto);
    mb_u32(b, t->compression);
    mb_bytes(b, kv_tm_smallest(t), t->smallest_len);
    mb_bytes(b, kv_tm_largest(t), t->largest_len);
}

/* Starts a record: reserves the header, writes the payload head. */
static void put_drop(mbuf *b, const kv_drop *d)
{
    mb_u8(b, OP_DROP);
    mb_u8(b, 0);
    mb_u64(b, d->version);
    mb_bytes(b, d->prefix, d->len);
}

static void put_undrop(mbuf *b, uint64_t version)
{
    mb_u8(b, OP_UNDROP);
    mb_u8(b, 0);
    mb_u64(b, version);
}

static void rec_begin(mbuf *b, uint64_t next_file_id, uint64_t max_version, uint32_t n)
{
    mb_u32(b, 0); /* frame header, sealed by rec_end */
    mb_u32(b, 0);
    mb_u32(b, 0);
    mb_u8(b, REC_EDIT);
    mb_u64(b, next_file_id);
    mb_u64(b, max_version);
    mb_u32(b, n);
}

static void rec_end(mbuf *b, size_t start)
{
    if (b->oom) return;
    kv_frame_seal(b->p + start, b->n - start - KV_FRAME_HDR);
}

/* ---- parsing ---- */

void kv_mf_state_free(kv_mf_state *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->tables[i].smallest);
        free(s->tables[i].largest);
    }
    free(s->tables);
    free(s->drops);
    memset(s, 0, sizeof *s);
}

typedef struct rd {
    const uint8_t *p, *end;
    int bad;
} rd;

static uint64_t rd_u64(rd *r)
{
    uint64_t v;
    if (r->end - r->p < 8) {
        r->bad = 1;
        return 0;
    }
    v = kv_get_u64(r->p);
    r->p += 8;
    return v;
}

static uint32_t rd_u32(rd *r)
{
    uint32_t v;
    if (r->end - r->p < 4) {
        r->bad = 1;
        return 0;
    }
    v = kv_get_u32(r->p);
    r->p += 4;
    return v;
}

static uint8_t rd_u8(rd *r)
{
    if (r->p >= r->end) {
        r->bad = 1;
        return 0;
    }
    return *r->p++;
}

static const uint8_t *rd_bytes(rd *r, size_t *n)
{
    uint64_t len;
    const uint8_t *q = kv_get_uvarint(r->p, r->end, &len);
    if (!q || len > (uint64_t)(r->end - q)) {
        r->bad = 1;
        return NULL;
    }
    r->p = q + len;
    *n = (size_t)len;
    return q;
}

static int find_table(const kv_mf_state *s, uint64_t id)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->tables[i].props.table_id == id) return (int)i;
    return -1;
}

static kv_status apply_payload(const uint8_t *payload, size_t n, uint64_t off, const char *path,
                               kv_mf_state *s, kv_err *err)
{
    rd r = {payload, payload + n, 0};
    uint32_t count;
    if (rd_u8(&r) != REC_EDIT)
        return kv_seterr(err, KV_CORRUPTION, 0, "manifest \"%s\": unknown record type at offset %llu",
                         path, (unsigned long long)off);
    s->next_file_id = rd_u64(&r);
    s->max_version = rd_u64(&r);
    count = rd_u32(&r);
    for (uint32_t i = 0; i < count && !r.bad; i++) {
        uint8_t op = rd_u8(&r), level = rd_u8(&r);
        uint64_t id = rd_u64(&r);
        int at;
        if (r.bad) break;
        if (level >= KV_MAX_LEVELS || op < OP_CREATE || op > OP_UNDROP) {
            r.bad = 1;
            break;
        }
        if (op == OP_DROP) {
            size_t pn;
            const uint8_t *pfx = rd_bytes(&r, &pn);
            kv_drop *d;
            if (r.bad || pn > KV_DROP_PREFIX_MAX) {
                r.bad = 1;
                break;
            }
            d = realloc(s->drops, (s->n_drops + 1) * sizeof *d);
            if (!d) return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory replaying the manifest");
            s->drops = d;
            d += s->n_drops++;
            memset(d, 0, sizeof *d);
            d->version = id;
            d->len = (uint32_t)pn;
            memcpy(d->prefix, pfx, pn);
            if (id > s->max_version) s->max_version = id;
            continue;
        }
        if (op == OP_UNDROP) {
            for (size_t k = 0; k < s->n_drops; k++)
                if (s->drops[k].version == id) {
                    s->drops[k] = s->drops[--s->n_drops];
                    break;
                }
            continue;
        }
        at = find_table(s, id);
        if (op == OP_DELETE) {
            if (at < 0 || s->tables[at].level != level)
                return kv_seterr(err, KV_CORRUPTION, 0,
                                 "manifest \"%s\": record at offset %llu deletes table %llu at "
                                 "level %u, which does not exist there",
                                 path, (unsigned long long)off, (unsigned long long)id, level);
            free(s->tables[at].smallest);
            free(s->tables[at].largest);
            s->tables[at] = s->tables[--s->n];
            s->deletions++;
        } else {
            kv_mf_table t;
            const uint8_t *k;
            memset(&t, 0, sizeof t);
            if (at >= 0)
                return kv_seterr(err, KV_CORRUPTION, 0,
                                 "manifest \"%s\": record at offset %llu creates table %llu twice",
                                 path, (unsigned long long)off, (unsigned long long)id);
            t.level = level;
            t.order = s->creations + s->deletions;
            t.props.table_id = id;
            t.props.file_size = rd_u64(&r);
            t.props.num_entries = rd_u64(&r);
            t.props.num_deletes = rd_u64(&r);
            t.props.num_value_ptrs = rd_u64(&r);
            t.props.vlog_bytes = rd_u64(&r);
            t.props.min_version = rd_u64(&r);
            t.props.max_version = rd_u64(&r);
            t.global_version = rd_u64(&r);
            t.dropped_upto = rd_u64(&r);
            t.props.compression = rd_u32(&r);
            k = rd_bytes(&r, &t.slen);
            if (!r.bad && (t.slen <= KV_TS_SIZE || !(t.smallest = malloc(t.slen)))) r.bad = 1;
            if (!r.bad) memcpy(t.smallest, k, t.slen);
            k = r.bad ? NULL : rd_bytes(&r, &t.llen);
            if (!r.bad && (t.llen <= KV_TS_SIZE || !(t.largest = malloc(t.llen)))) r.bad = 1;
            if (!r.bad) memcpy(t.largest, k, t.llen);
            if (!r.bad && kv_ikey_cmp(t.smallest, t.slen, t.largest, t.llen) > 0) r.bad = 1;
            if (r.bad) {
                free(t.smallest);
                free(t.largest);
                break;
            }
            if (s->n == s->cap) {
                size_t cap = s->cap ? s->cap * 2 : 64;
                kv_mf_table *nt = realloc(s->tables, cap * sizeof *nt);
                if (!nt) {
                    free(t.smallest);
                    free(t.largest);
                    return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory replaying manifest");
                }
                s->tables = nt;
                s->cap = cap;
            }
            s->tables[s->n++] = t;
            s->creations++;
        }
    }
    if (r.bad || r.p != r.end)
        return kv_seterr(err, KV_CORRUPTION, 0, "manifest \"%s\": malformed record at offset %llu",
                         path, (unsigned long long)off);
    s->records++;
    return KV_OK;
}

kv_status kv_manifest_parse(const uint8_t *data, size_t n, const char *path, kv_mf_state *s,
                            kv_err *err)
{
    size_t off = KV_MANIFEST_HEADER_SIZE;
    memset(s, 0, sizeof *s);
    if (n < KV_MANIFEST_HEADER_SIZE || kv_get_u32(data) != KV_MANIFEST_MAGIC)
        return kv_seterr(err, KV_CORRUPTION, 0, "manifest \"%s\": bad magic at offset 0", path);
    if (kv_get_u32(data + 4) != KV_MANIFEST_VERSION)
        return kv_seterr(err, KV_CORRUPTION, 0,
                         "manifest \"%s\": unsupported format version %u at offset 4", path,
                         kv_get_u32(data + 4));
    s->valid_end = off;
    for (;;) {
        size_t len = 0;
        kv_frame_result r = kv_frame_next(data, n, off, &len);
        if (r == KV_FRAME_END || r == KV_FRAME_TORN) break;
        if (r == KV_FRAME_CORRUPT) {
            kv_mf_state_free(s);
            return kv_seterr(err, KV_CORRUPTION, 0,
                             "manifest \"%s\": damaged record at offset %zu", path, off);
        }
        {
            kv_status st = apply_payload(data + off + KV_FRAME_HDR, len, off, path, s, err);
            if (st != KV_OK) {
                kv_mf_state_free(s);
                return st;
            }
        }
        off += KV_FRAME_HDR + len;
        s->valid_end = off;
    }
    return KV_OK;
}

/* ---- file handling (host) ---- */

static void header(uint8_t *h)
{
    memset(h, 0, KV_MANIFEST_HEADER_SIZE);
    kv_put_u32(h, KV_MANIFEST_MAGIC);
    kv_put_u32(h + 4, KV_MANIFEST_VERSION);
}

kv_status kv_manifest_open(kv_db *db, kv_mf_state *s, kv_err *err)
{
    char path[KV_PATH_MAX + 32];
    uint8_t *data = NULL;
    size_t n = 0;
    kv_status st;
    kv_env *env = db->env;

    memset(s, 0, sizeof *s);
    snprintf(path, sizeof path, "%s/%s", db->dir, KV_MANIFEST_NAME);
    if (!env->exists(env, path)) {
        uint8_t h[KV_MANIFEST_HEADER_SIZE];
        if (db->opt->read_only)
            return kv_seterr(err, KV_NOT_FOUND, 0,
                             "no database in \"%s\" (MANIFEST missing) and ReadOnly is on",
                             db->dir);
        header(h);
        st = kv_env_write_file_atomic(env, db->dir, KV_MANIFEST_NAME, h, sizeof h, err);
        if (st != KV_OK) return st;
        s->next_file_id = 1;
        s->valid_end = sizeof h;
    } else {
        st = kv_env_read_file(env, path, &data, &n, err);
        if (st != KV_OK) return st;
        st = kv_manifest_parse(data, n, path, s, err);
        free(data);
        if (st != KV_OK) return st;
        if (s->valid_end < n)
            kv_log(db, KV_LOG_WARNING, "manifest \"%s\": dropping %llu bytes of torn tail",
                   path, (unsigned long long)(n - s->valid_end));
        if (s->next_file_id == 0) s->next_file_id = 1;
    }
    if (db->opt->read_only) return KV_OK;
    st = env->open(env, path, KV_O_RDWR, &db->manifest, err);
    if (st == KV_OK && s->valid_end < n) {
        st = env->truncate(db->manifest, s->valid_end, err);
        if (st == KV_OK) st = env->sync(db->manifest, err);
    }
    if (st != KV_OK) {
        kv_mf_state_free(s);
        if (db->manifest) env->close(db->manifest);
        db->manifest = NULL;
        return st;
    }
    db->manifest_size = s->valid_end;
    db->manifest_creations = s->creations;
    db->manifest_deletions = s->deletions;
    return KV_OK;
}

void kv_manifest_close(kv_db *db)
{
    if (db->manifest) db->env->close(db->manifest);
    db->manifest = NULL;
}

static kv_status append_record(kv_db *db, const mbuf *b, kv_err *err)
{
    kv_status st = kv_env_pwrite(db->env, db->manifest, b->p, b->n, db->manifest_size, err);
    if (st == KV_OK) st = db->env->sync(db->manifest, err);
    if (st == KV_OK) db->manifest_size += b->n;
    return st;
}

kv_status kv_manifest_rewrite(kv_db *db, const kv_version *v, kv_err *err)
{
    char path[KV_PATH_MAX + 32], tmp[KV_PATH_MAX + 32];
    mbuf b = {0};
    kv_file *f = NULL;
    kv_status st;
    int level;

    snprintf(path, sizeof path, "%s/%s", db->dir, KV_MANIFEST_NAME);
    snprintf(tmp, sizeof tmp, "%s/%s", db->dir, KV_MANIFEST_REWRITE_NAME);
    if (mb_reserve(&b, KV_MANIFEST_HEADER_SIZE)) {
        header(b.p);
        b.n = KV_MANIFEST_HEADER_SIZE;
    }
    {
        const kv_drop_list *dl = kv_at(db, v->drops);
        rec_begin(&b, atomic_load(&db->sh->vset.next_file_id), db->sh->vset.max_version,
                  v->total + (dl ? dl->n : 0));
        for (uint32_t i = 0; dl && i < dl->n; i++) {
            kv_drop d;
            kv_drops_get(dl, i, &d);
            put_drop(&b, &d);
        }
    }
    for (level = 0; level < (int)v->n_levels; level++) {
        if (level == 0) /* oldest first, so replay ends with the newest on top */
            for (uint32_t i = v->count[0]; i > 0; i--)
                put_create(&b, 0, kv_ver_table(db, v, 0, i - 1));
        else
            for (uint32_t i = 0; i < v->count[level]; i++)
                put_create(&b, level, kv_ver_table(db, v, level, i));
    }
    rec_end(&b, KV_MANIFEST_HEADER_SIZE);
    if (b.oom) {
        free(b.p);
        return kv_seterr(err, KV_NO_MEMORY, 0, "out of memory rewriting the manifest");
    }
    st = db->env->open(db->env, tmp, KV_O_RDWR | KV_O_CREATE | KV_O_TRUNC, &f, err);
    if (st == KV_OK) st = kv_env_pwrite(db->env, f, b.p, b.n, 0, err);
    if (st == KV_OK) st = db->env->sync(f, err);
    if (f) db->env->close(f);
    if (st == KV_OK) st = db->env->rename(db->env, tmp, path, err);
    if (st == KV_OK) st = db->env->sync_dir(db->env, db->dir, err);
    if (st == KV_OK) {
        kv_file *nf;
        st = db->env->open(db->env, path, KV_O_RDWR, &nf, err);
        if (st == KV_OK) {
            kv_manifest_close(db);
            db->manifest = nf;
            db->manifest_size = b.n;
            db->manifest_creations = v->total;
            db->manifest_deletions = 0;
        }
    } else {
        db->env->remove(db->env, tmp, NULL);
    }
    free(b.p);
    return st;
}

/* Drops a version built from e but not installed.  The tables e adds stay
 * as they came (a new table unreferenced, the caller's to discard): the
 * version's unref must not free them under the caller, which still reads
 * them (flush.c, compaction.c). */
static void drop_built(kv_db *db, const kv_vedit *e, uint64_t nv)
{
    for (size_t i = 0; i < e->n_add; i++)
        atomic_fetch_add(&kv_tm_at(db, e->add[i].meta)->refs, 1);
    kv_version_unref(db, kv_ver_at(db, nv));
    for (size_t i = 0; i < e->n_add; i++)
        atomic_fetch_sub(&kv_tm_at(db, e->add[i].meta)->refs, 1);
}

kv_status kv_apply_edit(kv_db *db, const kv_vedit *e, kv_err *err)
{
    kv_shared *sh = db->sh;
    kv_version *cur = kv_ver_at(db, sh->vset.current);
    uint64_t nv = 0;
    mbuf b = {0};
    kv_status st;
    uint64_t maxv = sh->vset.max_version;

    for (size_t i = 0; i < e->n_add; i++) {
        kv_table_meta *t = kv_tm_at(db, e->add[i].meta);
        if (t->max_version > maxv) maxv = t->max_version;
    }
    if (e->drop_add && e->drop_add->version > maxv) maxv = e->drop_add->version;
    st = kv_version_apply(db, cur, e, &nv, err);
    if (st != KV_OK) return st;
    if (db->manifest) {
        rec_begin(&b, atomic_load(&sh->vset.next_file_id), maxv,
                  (uint32_t)(e->n_del + e->n_add + e->n_retire + (e->drop_add ? 1 : 0)));
        if (e->drop_add) put_drop(&b, e->drop_add);
        for (uint32_t i = 0; i < e->n_retire; i++) put_undrop(&b, e->drop_retire[i]);
        for (size_t i = 0; i < e->n_del; i++) {
            mb_u8(&b, OP_DELETE);
            mb_u8(&b, (uint8_t)e->del_levels[i]);
            mb_u64(&b, e->del_ids[i]);
        }
        for (size_t i = 0; i < e->n_add; i++)
            put_create(&b, e->add[i].level, kv_tm_at(db, e->add[i].meta));
        rec_end(&b, 0);
        st = b.oom ? kv_seterr(err, KV_NO_MEMORY, 0, "out of memory writing the manifest")
                   : append_record(db, &b, err);
        free(b.p);
        if (st != KV_OK) {
            /* The record may be on disk in part or whole: stop all edits
             * (sticky) before dropping the version, so its new tables are
             * kept for the next open to judge. */
            kv_err_prefix(err, "could not write the manifest");
            kv_set_bg_error(db, err);
            drop_built(db, e, nv);
            return st;
        }
        db->manifest_creations += e->n_add;
        db->manifest_deletions += e->n_del;
    }
    sh->vset.max_version = maxv;
    st = kv_version_install(db, nv, e, err);
    if (st != KV_OK) {
        drop_built(db, e, nv);
        return st;
    }
    if (db->manifest &&
        db->manifest_deletions > (uint64_t)db->opt->manifest_rewrite_threshold &&
        db->manifest_deletions >
            KV_MANIFEST_REWRITE_RATIO * (db->manifest_creations - db->manifest_deletions)) {
        kv_err rerr;
        if (kv_manifest_rewrite(db, kv_ver_at(db, sh->vset.current), &rerr) != KV_OK)
            kv_log(db, KV_LOG_WARNING, "manifest rewrite failed (will retry later): %s",
                   rerr.msg);
    }
    return KV_OK;
}
