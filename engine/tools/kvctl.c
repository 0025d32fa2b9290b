/*
 * kvctl - inspect and verify a kvsep database directory from the outside.
 *
 * No command takes the database lock or writes anything, so every command
 * can run while another process has the database open (it then sees the
 * files as they are at that moment: a record being appended shows up as a
 * torn tail, a table compacted away meanwhile is skipped).
 *
 *   kvctl info DIR               MANIFEST summary, per level the number of
 *                                tables, bytes and entries, one line per
 *                                table, the WAL (.mem) and value-log (.vlog)
 *                                files with their sizes, totals
 *   kvctl check DIR              verifies the MANIFEST, every table it lists
 *                                (presence, size, checksums, key order, value
 *                                structs, key range) and every WAL; one line
 *                                per problem on stderr, then the summary
 *                                "check: N tables, M WAL files, E errors,
 *                                W warnings"; exit 0 without errors, else 1
 *   kvctl dump manifest FILE     every record: offset, next file id, max
 *                                version, each table created or deleted
 *   kvctl dump wal [-v] FILE     header, then every record and its entries
 *                                (-v: with their values)
 *   kvctl dump table [-n N] FILE properties, section layout, blocks, then
 *                                the entries (-n: only the first N)
 *
 * Keys and values are printed with bytes outside printable ASCII (and '"'
 * and '\') as \xNN and cut after about 40 (values 60) characters.  Exit
 * status 2 is a usage error; any other failure is reported on stderr with
 * the file it concerns, exit status 1.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "env.h"
#include "err.h"
#include "frame.h"
#include "hash.h"
#include "ikey.h"
#include "manifest.h"
#include "sst.h"
#include "sst_format.h"
#include "version.h"
#include "wal.h"

#define PATH_CAP (KV_PATH_MAX + 64)
#define KEY_SHOW 40
#define VAL_SHOW 60
#define SHOW_CAP 256

/* MANIFEST record layout (manifest.c): u8 type | u64 next file id | u64 max
 * version | u32 change count | changes (u8 op, u8 level, u64 id, ...). */
#define MF_REC_EDIT  1
#define MF_OP_CREATE 1
#define MF_OP_DELETE 2
#define MF_OP_DROP 3
#define MF_OP_UNDROP 4

static const char *compression_name(unsigned c)
{
    return c == KV_COMPRESS_NONE     ? "none"
           : c == KV_COMPRESS_SNAPPY ? "snappy"
           : c == KV_COMPRESS_ZSTD   ? "zstd"
                                     : "unknown";
}

/* Writes p[0, n) to out (SHOW_CAP bytes) as printable text of at most max
 * characters, ending in "..." if cut. */
static const char *show(char *out, const uint8_t *p, size_t n, size_t max)
{
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        size_t w = (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') ? 1 : 4;
        if (o + w > max || o + w + 4 > SHOW_CAP) {
            memcpy(out + o, "...", 4);
            return out;
        }
        if (w == 1)
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, SHOW_CAP - o, "\\x%02x", c);
    }
    out[o] = '\0';
    return out;
}

/* The user key of an internal key, shown. */
static const char *show_ukey(char *out, const uint8_t *ikey, size_t n)
{
    return show(out, ikey, n >= KV_TS_SIZE ? kv_ikey_ulen(n) : n, KEY_SHOW);
}

static int fail_err(const kv_err *err)
{
    fprintf(stderr, "kvctl: %s (%s)\n", err->msg, kv_status_str(err->code));
    return 1;
}

static int read_whole(const char *path, uint8_t **data, size_t *len)
{
    kv_err err;

    if (kv_env_read_file(kv_env_posix(), path, data, len, &err) != KV_OK) return fail_err(&err);
    return 0;
}

/* ---- a mapped file ---- */

typedef struct mapped {
    kv_file *f;
    const uint8_t *p;
    uint64_t size;
} mapped;

static kv_status map_file(const char *path, mapped *m, kv_err *err)
{
    kv_env *env = kv_env_posix();
    kv_status st;

    memset(m, 0, sizeof *m);
    st = env->open(env, path, KV_O_READ, &m->f, err);
    if (st == KV_OK) st = env->size(m->f, &m->size, err);
    if (st == KV_OK && m->size == 0)
        st = kv_seterr(err, KV_CORRUPTION, 0, "table \"%s\": empty file", path);
    if (st == KV_OK) st = env->map(m->f, m->size, &m->p, err);
    if (st != KV_OK && m->f) {
        env->close(m->f);
        m->f = NULL;
    }
    return st;
}

static void unmap_file(mapped *m)
{
    if (!m->f) return;
    if (m->p) kv_env_posix()->unmap(m->f, m->p, m->size);
    kv_env_posix()->close(m->f);
    memset(m, 0, sizeof *m);
}

/* File offset of block i of a table that kv_sst_open accepted. */
static uint64_t block_offset(const uint8_t *data, uint64_t size, uint32_t i)
{
    uint64_t io = kv_get_u64(data + size - SST_FOOTER_SIZE + SST_FT_INDEX_OFF);
    return kv_get_u64(data + io + (uint64_t)i * SST_INDEX_ENTRY + SST_IX_OFF);
}

/* ---- directory listing ---- */

typedef struct dfile {
    char *name;
    uint64_t id, size;
    char ext[8];
} dfile;

typedef struct dlist {
    dfile *v;
    size_t n, cap;
    const char *dir;
    int oom;
} dlist;

static void list_cb(void *ctx, const char *name)
{
    dlist *l = ctx;
    char *end, path[PATH_CAP];
    unsigned long long id = strtoull(name, &end, 10);
    struct stat sb;
    dfile *f;

    if (end == name || *end != '.' || strlen(end) >= sizeof f->ext) return;
    if (strcmp(end, ".sst") && strcmp(end, ".mem") && strcmp(end, ".vlog")) return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        dfile *v = realloc(l->v, cap * sizeof *v);
        if (!v) {
            l->oom = 1;
            return;
        }
        l->v = v;
        l->cap = cap;
    }
    f = &l->v[l->n];
    snprintf(path, sizeof path, "%s/%s", l->dir, name);
    f->size = stat(path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
    f->id = id;
    strcpy(f->ext, end + 1);
    if (!(f->name = strdup(name))) {
        l->oom = 1;
        return;
    }
    l->n++;
}

static int dfile_cmp(const void *a, const void *b)
{
    const dfile *x = a, *y = b;
    int c = strcmp(x->ext, y->ext);
    return c ? c : x->id < y->id ? -1 : x->id > y->id;
}

static int list_dir(const char *dir, dlist *l)
{
    kv_err err;

    memset(l, 0, sizeof *l);
    l->dir = dir;
    if (kv_env_posix()->list_dir(kv_env_posix(), dir, list_cb, l, &err) != KV_OK)
        return fail_err(&err);
    if (l->oom) {
        fprintf(stderr, "kvctl: out of memory listing \"%s\"\n", dir);
        return 1;
    }
    if (l->n) qsort(l->v, l->n, sizeof *l->v, dfile_cmp);
    return 0;
}

static void dlist_free(dlist *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->v[i].name);
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* ---- MANIFEST of a directory ---- */

static int load_manifest(const char *dir, kv_mf_state *s, size_t *file_size, kv_err *err)
{
    char path[PATH_CAP];
    uint8_t *data;
    size_t n;
    kv_status st;

    memset(s, 0, sizeof *s);
    snprintf(path, sizeof path, "%s/%s", dir, KV_MANIFEST_NAME);
    st = kv_env_read_file(kv_env_posix(), path, &data, &n, err);
    if (st != KV_OK) return -1;
    st = kv_manifest_parse(data, n, path, s, err);
    free(data);
    *file_size = n;
    return st == KV_OK ? 0 : -1;
}

/* Level, then level 0 newest first, other levels by smallest key. */
static int mf_table_cmp(const void *a, const void *b)
{
    const kv_mf_table *x = a, *y = b;

    if (x->level != y->level) return x->level < y->level ? -1 : 1;
    if (x->level == 0) return x->order > y->order ? -1 : x->order < y->order;
    return kv_ikey_cmp(x->smallest, x->slen, y->smallest, y->slen);
}

/* ---- info ---- */

static void print_files(const dlist *l, const char *ext, const char *title, uint64_t *count,
                        uint64_t *bytes)
{
    *count = *bytes = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->v[i].ext, ext)) continue;
        if (*count == 0) printf("%s:\n", title);
        printf("  %-14s %12llu bytes\n", l->v[i].name, (unsigned long long)l->v[i].size);
        (*count)++;
        *bytes += l->v[i].size;
    }
    if (*count == 0) printf("%s: none\n", title);
}

static int cmd_info(const char *dir)
{
    kv_mf_state s;
    kv_err err;
    dlist l;
    size_t mf_size;
    uint64_t tbytes = 0, tentries = 0, nwal, wbytes, nvlog, vbytes;
    char a[SHOW_CAP], b[SHOW_CAP];

    if (load_manifest(dir, &s, &mf_size, &err) != 0) return fail_err(&err);
    if (list_dir(dir, &l) != 0) {
        kv_mf_state_free(&s);
        return 1;
    }
    printf("database %s\n", dir);
    printf("MANIFEST: %zu bytes, %llu records, next file id %llu, max version %llu\n", mf_size,
           (unsigned long long)s.records, (unsigned long long)s.next_file_id,
           (unsigned long long)s.max_version);
    if (s.valid_end < mf_size)
        printf("MANIFEST: torn tail at offset %llu (%llu bytes, ignored)\n",
               (unsigned long long)s.valid_end, (unsigned long long)(mf_size - s.valid_end));
    if (s.n) qsort(s.tables, s.n, sizeof *s.tables, mf_table_cmp);
    for (size_t i = 0; i < s.n;) {
        int level = s.tables[i].level;
        size_t j;
        uint64_t bytes = 0, entries = 0;
        for (j = i; j < s.n && s.tables[j].level == level; j++) {
            bytes += s.tables[j].props.file_size;
            entries += s.tables[j].props.num_entries;
        }
        printf("level %d: %zu tables, %llu bytes, %llu entries\n", level, j - i,
               (unsigned long long)bytes, (unsigned long long)entries);
        printf("  %-8s %5s %12s %10s %9s %10s %10s  %s\n", "id", "level", "size", "entries",
               "deletes", "min_ver", "max_ver", "smallest .. largest");
        for (; i < j; i++) {
            const kv_mf_table *t = &s.tables[i];
            printf("  %06llu   %5d %12llu %10llu %9llu %10llu %10llu  \"%s\" .. \"%s\"\n",
                   (unsigned long long)t->props.table_id, t->level,
                   (unsigned long long)t->props.file_size,
                   (unsigned long long)t->props.num_entries,
                   (unsigned long long)t->props.num_deletes,
                   (unsigned long long)t->props.min_version,
                   (unsigned long long)t->props.max_version, show_ukey(a, t->smallest, t->slen),
                   show_ukey(b, t->largest, t->llen));
        }
        tbytes += bytes;
        tentries += entries;
    }
    if (s.n == 0) printf("no tables\n");
    print_files(&l, "mem", "WAL files", &nwal, &wbytes);
    print_files(&l, "vlog", "value-log files", &nvlog, &vbytes);
    printf("totals: %zu tables (%llu bytes, %llu entries), %llu WAL files (%llu bytes), "
           "%llu value-log files (%llu bytes)\n",
           s.n, (unsigned long long)tbytes, (unsigned long long)tentries,
           (unsigned long long)nwal, (unsigned long long)wbytes, (unsigned long long)nvlog,
           (unsigned long long)vbytes);
    dlist_free(&l);
    kv_mf_state_free(&s);
    return 0;
}

/* ---- check ---- */

typedef struct checker {
    const char *dir;
    unsigned long errors, warnings;
} checker;

static void problem(checker *c, int is_error, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void problem(checker *c, int is_error, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s: ", is_error ? "error" : "warning");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (is_error)
        c->errors++;
    else
        c->warnings++;
}

/* 1 if the current MANIFEST still lists table id (a live database may have
 * compacted it away since we read the MANIFEST). */
static int still_listed(const char *dir, uint64_t id)
{
    kv_mf_state s;
    kv_err err;
    size_t n;
    int found = 1;

    if (load_manifest(dir, &s, &n, &err) == 0) {
        found = 0;
        for (size_t i = 0; i < s.n && !found; i++) found = s.tables[i].props.table_id == id;
    }
    kv_mf_state_free(&s);
    return found;
}

/* Iterates a table that opened: key order, value structs, counts. */
static void check_entries(checker *c, const kv_sst *t, const mapped *m, const kv_mf_table *mt)
{
    kv_sst_read_opts ro = {NULL, 0, 1};
    kv_sst_iter it;
    uint8_t *prev = NULL;
    size_t prev_len = 0, prev_cap = 0;
    uint64_t n = 0, deletes = 0;
    const char *path = kv_sst_path(t);
    char a[SHOW_CAP];

    kv_sst_iter_init(&it, t, &ro);
    for (kv_sst_iter_first(&it); it.valid; kv_sst_iter_next(&it), n++) {
        kv_vstruct vs;
        uint64_t off = block_offset(m->p, m->size, (uint32_t)it.block);
        if (prev_len && kv_ikey_cmp(prev, prev_len, it.key, it.key_len) >= 0) {
            problem(c, 1,
                    "table \"%s\": entry %llu (key \"%s\") is not after its predecessor "
                    "in block %lld at offset %llu",
                    path, (unsigned long long)n, show_ukey(a, it.key, it.key_len),
                    (long long)it.block, (unsigned long long)off);
            break;
        }
        if (kv_vstruct_decode(it.val, it.val_len, &vs) != 0) {
            problem(c, 1,
                    "table \"%s\": entry %llu (key \"%s\") has a malformed value struct "
                    "in block %lld at offset %llu",
                    path, (unsigned long long)n, show_ukey(a, it.key, it.key_len),
                    (long long)it.block, (unsigned long long)off);
            break;
        }
        if (vs.meta & KV_META_DELETE) deletes++;
        if (it.key_len > prev_cap) {
            uint8_t *p = realloc(prev, it.key_len);
            if (!p) {
                problem(c, 1, "table \"%s\": out of memory", path);
                break;
            }
            prev = p;
            prev_cap = it.key_len;
        }
        memcpy(prev, it.key, it.key_len);
        prev_len = it.key_len;
    }
    if (it.status != KV_OK)
        problem(c, 1, "%s", it.err.msg);
    else if (!it.valid && n != mt->props.num_entries)
        problem(c, 1, "table \"%s\": %llu entries, the MANIFEST says %llu", path,
                (unsigned long long)n, (unsigned long long)mt->props.num_entries);
    else if (!it.valid && deletes != mt->props.num_deletes)
        problem(c, 1, "table \"%s\": %llu tombstones, the MANIFEST says %llu", path,
                (unsigned long long)deletes, (unsigned long long)mt->props.num_deletes);
    kv_sst_iter_done(&it);
    free(prev);
}

/* Checks one table the MANIFEST lists; returns 1 if it was checked. */
static int check_table(checker *c, const kv_mf_table *mt)
{
    char path[PATH_CAP], a[SHOW_CAP], b[SHOW_CAP];
    const kv_sst_props *p;
    const uint8_t *k;
    size_t klen;
    mapped m;
    kv_sst *t;
    kv_err err;
    struct stat sb;
    size_t cmp_s, cmp_l;
    uint64_t want_min, want_max;

    snprintf(path, sizeof path, "%s/%06llu.sst", c->dir,
             (unsigned long long)mt->props.table_id);
    if (stat(path, &sb) != 0) {
        if (!still_listed(c->dir, mt->props.table_id)) return 0; /* compacted meanwhile */
        problem(c, 1, "table \"%s\" (level %d) is listed in the MANIFEST but missing", path,
                mt->level);
        return 1;
    }
    if ((uint64_t)sb.st_size != mt->props.file_size) {
        problem(c, 1, "table \"%s\" has %llu bytes, the MANIFEST says %llu", path,
                (unsigned long long)sb.st_size, (unsigned long long)mt->props.file_size);
        return 1;
    }
    if (map_file(path, &m, &err) != KV_OK) {
        problem(c, 1, "%s", err.msg);
        return 1;
    }
    if (kv_sst_open(m.p, m.size, path, mt->props.table_id, KV_VERIFY_ON_TABLE_READ, &t, &err) !=
        KV_OK) {
        problem(c, 1, "%s", err.msg);
        unmap_file(&m);
        return 1;
    }
    if (kv_sst_verify(t, &err) != KV_OK) {
        problem(c, 1, "%s", err.msg);
    } else {
        check_entries(c, t, &m, mt);
        /* an ingested table's keys carry version 0; the MANIFEST's bounds
         * and versions are at its global version */
        cmp_s = mt->global_version ? mt->slen - KV_TS_SIZE : mt->slen;
        cmp_l = mt->global_version ? mt->llen - KV_TS_SIZE : mt->llen;
        want_min = mt->global_version ? 0 : mt->props.min_version;
        want_max = mt->global_version ? 0 : mt->props.max_version;
        k = kv_sst_smallest(t, &klen);
        if (klen != mt->slen || memcmp(k, mt->smallest, cmp_s) != 0)
            problem(c, 1,
                    "table \"%s\": smallest key \"%s\" differs from the MANIFEST's \"%s\"",
                    path, show_ukey(a, k, klen), show_ukey(b, mt->smallest, mt->slen));
        k = kv_sst_largest(t, &klen);
        if (klen != mt->llen || memcmp(k, mt->largest, cmp_l) != 0)
            problem(c, 1, "table \"%s\": largest key \"%s\" differs from the MANIFEST's \"%s\"",
                    path, show_ukey(a, k, klen), show_ukey(b, mt->largest, mt->llen));
        p = kv_sst_get_props(t);
        if (p->min_version != want_min || p->max_version != want_max)
            problem(c, 1, "table \"%s\": versions %llu..%llu, the MANIFEST says %llu..%llu",
                    path, (unsigned long long)p->min_version,
                    (unsigned long long)p->max_version,
                    (unsigned long long)mt->props.min_version,
                    (unsigned long long)mt->props.max_version);
    }
    kv_sst_close(t);
    unmap_file(&m);
    return 1;
}

/* Levels >= 1 must hold disjoint user-key ranges (tables sorted). */
static void check_levels(checker *c, const kv_mf_state *s, const char *mpath)
{
    char a[SHOW_CAP];

    for (size_t i = 1; i < s->n; i++) {
        const kv_mf_table *x = &s->tables[i - 1], *y = &s->tables[i];
        if (x->level != y->level || y->level == 0) continue;
        if (kv_ukey_cmp(x->largest, kv_ikey_ulen(x->llen), y->smallest,
                        kv_ikey_ulen(y->slen)) >= 0)
            problem(c, 1,
                    "manifest \"%s\": tables %06llu and %06llu of level %d overlap "
                    "(at key \"%s\")",
                    mpath, (unsigned long long)x->props.table_id,
                    (unsigned long long)y->props.table_id, y->level,
                    show_ukey(a, y->smallest, y->slen));
    }
}

typedef struct wal_ctx {
    const char *path;
    uint64_t records, entries;
} wal_ctx;

static kv_status wal_check_rec(void *ctx, const uint8_t *payload, size_t n, uint64_t off,
                               kv_err *err)
{
    wal_ctx *w = ctx;
    uint64_t version;
    uint32_t count, i = 0;
    uint8_t flags;
    kv_wal_cursor cur;
    kv_wal_entry e;
    kv_vstruct vs;
    int r;

    if (kv_wal_payload_open(payload, n, &version, &count, &flags, &cur) != 0)
        return kv_seterr(err, KV_CORRUPTION, 0,
                         "WAL file \"%s\": malformed record at offset %llu", w->path,
                         (unsigned long long)off);
    while ((r = kv_wal_next_entry(&cur, &e)) == 1) {
        if (kv_vstruct_decode(e.vs, e.vslen, &vs) != 0)
            return kv_seterr(err, KV_CORRUPTION, 0,
                             "WAL file \"%s\": entry %u of the record at offset %llu has a "
                             "malformed value struct",
                             w->path, i, (unsigned long long)off);
        i++;
    }
    if (r < 0)
        return kv_seterr(err, KV_CORRUPTION, 0,
                         "WAL file \"%s\": entry %u of the record at offset %llu is malformed",
                         w->path, i, (unsigned long long)off);
    w->records++;
    w->entries += count;
    return KV_OK;
}

static void check_wal(checker *c, const dfile *f)
{
    char path[PATH_CAP];
    wal_ctx w = {path, 0, 0};
    uint64_t valid_end = 0;
    int torn = 0;
    kv_err err;
    kv_status st;

    snprintf(path, sizeof path, "%s/%s", c->dir, f->name);
    st = kv_wal_replay(kv_env_posix(), path, f->id, wal_check_rec, &w, &valid_end, &torn, &err);
    if (st == KV_NOT_FOUND) return; /* flushed and removed meanwhile */
    if (st != KV_OK) {
        problem(c, 1, "%s", err.msg);
        return;
    }
    if (torn)
        problem(c, 0, "WAL file \"%s\": torn tail at offset %llu (%llu bytes ignored)", path,
                (unsigned long long)valid_end, (unsigned long long)(f->size - valid_end));
}

static int cmd_check(const char *dir)
{
    checker c = {dir, 0, 0};
    char mpath[PATH_CAP];
    kv_mf_state s;
    kv_err err;
    dlist l;
    size_t mf_size, tables = 0, wals = 0;

    snprintf(mpath, sizeof mpath, "%s/%s", dir, KV_MANIFEST_NAME);
    if (list_dir(dir, &l) != 0) return 1;
    if (load_manifest(dir, &s, &mf_size, &err) != 0) {
        problem(&c, 1, "%s", err.msg);
    } else {
        if (s.valid_end < mf_size)
            problem(&c, 0, "manifest \"%s\": torn tail at offset %llu (%llu bytes ignored)",
                    mpath, (unsigned long long)s.valid_end,
                    (unsigned long long)(mf_size - s.valid_end));
        if (s.n) qsort(s.tables, s.n, sizeof *s.tables, mf_table_cmp);
        check_levels(&c, &s, mpath);
        for (size_t i = 0; i < s.n; i++) tables += (size_t)check_table(&c, &s.tables[i]);
        for (size_t i = 0; i < l.n; i++) {
            int known = 0;
            if (strcmp(l.v[i].ext, "sst")) continue;
            for (size_t k = 0; k < s.n && !known; k++)
                known = s.tables[k].props.table_id == l.v[i].id;
            if (!known)
                problem(&c, 0,
                        "table \"%s/%s\" is not in the MANIFEST (left over by an "
                        "interrupted flush or compaction)",
                        dir, l.v[i].name);
        }
    }
    for (size_t i = 0; i < l.n; i++) {
        if (strcmp(l.v[i].ext, "mem")) continue;
        check_wal(&c, &l.v[i]);
        wals++;
    }
    printf("check: %zu tables, %zu WAL files, %lu errors, %lu warnings\n", tables, wals,
           c.errors, c.warnings);
    kv_mf_state_free(&s);
    dlist_free(&l);
    return c.errors ? 1 : 0;
}

/* ---- dump manifest ---- */

typedef struct rdr {
    const uint8_t *p, *end;
    int bad;
} rdr;

static uint64_t rd_fixed(rdr *r, size_t w)
{
    uint64_t v = 0;

    if ((size_t)(r->end - r->p) < w) {
        r->bad = 1;
        return 0;
    }
    for (size_t i = 0; i < w; i++) v |= (uint64_t)r->p[i] << (8 * i);
    r->p += w;
    return v;
}

static const uint8_t *rd_key(rdr *r, size_t *n)
{
    uint64_t len;
    const uint8_t *q = kv_get_uvarint(r->p, r->end, &len);

    if (!q || len > (uint64_t)(r->end - q) || len < KV_TS_SIZE) {
        r->bad = 1;
        return NULL;
    }
    r->p = q + len;
    *n = (size_t)len;
    return q;
}

/* Prints one record payload; -1 if it is malformed. */
static int dump_mf_payload(const uint8_t *pl, size_t n, size_t off)
{
    rdr r = {pl, pl + n, 0};
    uint64_t type = rd_fixed(&r, 1), next_id = rd_fixed(&r, 8), maxv = rd_fixed(&r, 8);
    uint32_t count = (uint32_t)rd_fixed(&r, 4);
    char a[SHOW_CAP], b[SHOW_CAP];

    if (r.bad || type != MF_REC_EDIT) return -1;
    printf("record at offset %zu: %zu bytes, next_file_id %llu, max_version %llu, %u changes\n",
           off, n, (unsigned long long)next_id, (unsigned long long)maxv, count);
    for (uint32_t i = 0; i < count && !r.bad; i++) {
        unsigned op = (unsigned)rd_fixed(&r, 1), level = (unsigned)rd_fixed(&r, 1);
        unsigned long long id = rd_fixed(&r, 8), v[9];
        const uint8_t *sk, *lk;
        size_t sl = 0, ll = 0;
        unsigned comp;
        if (r.bad) break;
        if (op == MF_OP_DELETE) {
            printf("  delete L%u table %06llu\n", level, id);
            continue;
        }
        if (op == MF_OP_DROP) {
            uint64_t plen;
            const uint8_t *q = kv_get_uvarint(r.p, r.end, &plen);
            if (!q || plen > (uint64_t)(r.end - q)) {
                r.bad = 1;
                break;
            }
            r.p = q + plen;
            printf("  drop keys with prefix \"%s\" up to version %llu\n",
                   show(a, q, (size_t)plen, KEY_SHOW), id);
            continue;
        }
        if (op == MF_OP_UNDROP) {
            printf("  drop at version %llu done\n", id);
            continue;
        }
        if (op != MF_OP_CREATE) return -1;
        for (int j = 0; j < 9; j++) v[j] = rd_fixed(&r, 8);
        comp = (unsigned)rd_fixed(&r, 4);
        sk = rd_key(&r, &sl);
        lk = r.bad ? NULL : rd_key(&r, &ll);
        if (r.bad) break;
        printf("  create L%u table %06llu size %llu entries %llu deletes %llu vptrs %llu "
               "vlog_bytes %llu versions %llu..%llu%s compression %s keys \"%s\" .. \"%s\"\n",
               level, id, v[0], v[1], v[2], v[3], v[4], v[5], v[6],
               v[7] ? " (ingested)" : "", compression_name(comp), show_ukey(a, sk, sl),
               show_ukey(b, lk, ll));
    }
    return r.bad || r.p != r.end ? -1 : 0;
}

static int cmd_dump_manifest(const char *path)
{
    uint8_t *d;
    size_t n, off = KV_MANIFEST_HEADER_SIZE, records = 0;
    kv_mf_state s;
    kv_err err;
    int rc = 0;

    if (read_whole(path, &d, &n) != 0) return 1;
    if (n < KV_MANIFEST_HEADER_SIZE || kv_get_u32(d) != KV_MANIFEST_MAGIC) {
        fprintf(stderr, "kvctl: manifest \"%s\": bad magic at offset 0\n", path);
        free(d);
        return 1;
    }
    printf("manifest %s: %zu bytes, magic 0x%08x, format version %u\n", path, n, kv_get_u32(d),
           kv_get_u32(d + 4));
    for (;;) {
        size_t len = 0;
        kv_frame_result r = kv_frame_next(d, n, off, &len);
        if (r == KV_FRAME_END) break;
        if (r == KV_FRAME_TORN) {
            printf("torn tail at offset %zu: %zu bytes ignored\n", off, n - off);
            break;
        }
        if (r == KV_FRAME_CORRUPT) {
            fprintf(stderr, "kvctl: manifest \"%s\": damaged record at offset %zu\n", path,
                    off);
            rc = 1;
            break;
        }
        if (dump_mf_payload(d + off + KV_FRAME_HDR, len, off) != 0) {
            fprintf(stderr, "kvctl: manifest \"%s\": malformed record at offset %zu\n", path,
                    off);
            rc = 1;
            break;
        }
        records++;
        off += KV_FRAME_HDR + len;
    }
    if (rc == 0) {
        if (kv_manifest_parse(d, n, path, &s, &err) != KV_OK) {
            rc = fail_err(&err);
        } else {
            printf("%zu records; replayed: %zu live tables, next file id %llu, max version "
                   "%llu, valid bytes %llu\n",
                   records, s.n, (unsigned long long)s.next_file_id,
                   (unsigned long long)s.max_version, (unsigned long long)s.valid_end);
            kv_mf_state_free(&s);
        }
    }
    free(d);
    return rc;
}

/* ---- dump wal ---- */

typedef struct wal_dump {
    int verbose;
    uint64_t records, entries;
} wal_dump;

static void print_vstruct(const uint8_t *p, size_t n, int verbose)
{
    kv_vstruct vs;
    char a[SHOW_CAP];

    if (kv_vstruct_decode(p, n, &vs) != 0) {
        printf(" malformed value struct (%zu bytes)\n", n);
        return;
    }
    printf(" %s%s%s meta 0x%02x user_meta 0x%02x expires %llu value %zu bytes",
           vs.meta & KV_META_DELETE      ? "delete"
           : vs.meta & KV_META_VALUE_PTR ? "vptr"
                                         : "put",
           vs.meta & KV_META_TXN ? " txn" : "", vs.meta & KV_META_FIN_TXN ? " fin-txn" : "",
           vs.meta, vs.user_meta, (unsigned long long)vs.expires_at, vs.value_len);
    if ((vs.meta & KV_META_VALUE_PTR) && vs.value_len >= 16)
        printf(" -> vlog %u len %u offset %llu", kv_get_u32(vs.value), kv_get_u32(vs.value + 4),
               (unsigned long long)kv_get_u64(vs.value + 8));
    else if (verbose)
        printf(" \"%s\"", show(a, vs.value, vs.value_len, VAL_SHOW));
    putchar('\n');
}

static kv_status wal_dump_rec(void *ctx, const uint8_t *payload, size_t n, uint64_t off,
                              kv_err *err)
{
    wal_dump *w = ctx;
    uint64_t version;
    uint32_t count;
    uint8_t flags;
    kv_wal_cursor cur;
    kv_wal_entry e;
    char a[SHOW_CAP];
    int r;

    if (kv_wal_payload_open(payload, n, &version, &count, &flags, &cur) != 0)
        return kv_seterr(err, KV_CORRUPTION, 0, "malformed WAL record at offset %llu",
                         (unsigned long long)off);
    printf("record at offset %llu: %zu bytes, version %llu, %u entries, flags 0x%02x%s%s%s\n",
           (unsigned long long)off, n, (unsigned long long)version, count, flags,
           flags & KV_WAL_F_TXN_PART ? " txn-part" : "",
           flags & KV_WAL_F_TXN_FIN ? " txn-fin" : "",
           flags & KV_WAL_F_VLOG_SYNCED ? " vlog-synced" : "");
    while ((r = kv_wal_next_entry(&cur, &e)) == 1) {
        printf("  key \"%s\"", show(a, e.key, e.klen, KEY_SHOW));
        print_vstruct(e.vs, e.vslen, w->verbose);
        w->entries++;
    }
    if (r < 0)
        return kv_seterr(err, KV_CORRUPTION, 0,
                         "malformed entry in the WAL record at offset %llu",
                         (unsigned long long)off);
    w->records++;
    return KV_OK;
}

static int cmd_dump_wal(const char *path, int verbose)
{
    wal_dump w = {verbose, 0, 0};
    uint64_t valid_end = 0;
    int torn = 0;
    uint8_t *d;
    size_t n;
    kv_err err;

    if (read_whole(path, &d, &n) != 0) return 1;
    if (n < KV_WAL_HEADER_SIZE) {
        printf("WAL %s: %zu bytes, no header (an empty log)\n", path, n);
        free(d);
        return 0;
    }
    printf("WAL %s: %zu bytes, magic 0x%08x%s, format version %u, file id %llu\n", path, n,
           kv_get_u32(d), kv_get_u32(d) == KV_WAL_MAGIC ? "" : " (BAD)", kv_get_u32(d + 4),
           (unsigned long long)kv_get_u64(d + 8));
    free(d);
    if (kv_wal_replay(kv_env_posix(), path, 0, wal_dump_rec, &w, &valid_end, &torn, &err) !=
        KV_OK) {
        if (strstr(err.msg, path) == NULL) kv_err_prefix(&err, "WAL file \"%s\"", path);
        return fail_err(&err);
    }
    if (torn)
        printf("torn tail at offset %llu: %llu bytes ignored\n", (unsigned long long)valid_end,
               (unsigned long long)(n - valid_end));
    printf("%llu records, %llu entries\n", (unsigned long long)w.records,
           (unsigned long long)w.entries);
    return 0;
}

/* ---- dump table ---- */

static void print_layout(const kv_sst *t, const uint8_t *d, uint64_t size)
{
    const uint8_t *ft = d + size - SST_FOOTER_SIZE;
    uint64_t io = kv_get_u64(ft + SST_FT_INDEX_OFF), bo = kv_get_u64(ft + SST_FT_BLOOM_OFF);
    uint64_t bs = kv_get_u64(ft + SST_FT_BLOOM_SIZE), po = kv_get_u64(ft + SST_FT_PROPS_OFF);
    uint32_t nb = kv_sst_num_blocks(t);

    printf("layout:\n  data blocks  offset %12d size %12llu (%u blocks)\n", 0,
           (unsigned long long)io, nb);
    printf("  index        offset %12llu size %12llu\n", (unsigned long long)io,
           (unsigned long long)kv_get_u64(ft + SST_FT_INDEX_SIZE));
    printf("  bloom        offset %12llu size %12llu", (unsigned long long)bo,
           (unsigned long long)bs);
    if (bs > SST_CKSUM_SIZE)
        printf(" (%llu bits, %u probes)", (unsigned long long)(bs - SST_CKSUM_SIZE - 1) * 8,
               d[bo + bs - SST_CKSUM_SIZE - 1]);
    printf("\n  properties   offset %12llu size %12llu\n", (unsigned long long)po,
           (unsigned long long)kv_get_u64(ft + SST_FT_PROPS_SIZE));
    printf("  footer       offset %12llu size %12d format version %u magic 0x%016llx\n",
           (unsigned long long)(size - SST_FOOTER_SIZE), SST_FOOTER_SIZE,
           kv_get_u32(ft + SST_FT_VERSION), (unsigned long long)kv_get_u64(ft + SST_FT_MAGIC));
    printf("blocks:\n  %6s %12s %10s %8s %8s %10s  %s\n", "block", "offset", "disk_size",
           "entries", "type", "raw_size", "checksum");
    for (uint32_t i = 0; i < nb; i++) {
        const uint8_t *e = d + io + (uint64_t)i * SST_INDEX_ENTRY;
        uint64_t off = kv_get_u64(e + SST_IX_OFF);
        uint32_t sz = kv_get_u32(e + SST_IX_SIZE);
        const uint8_t *p = d + off;
        size_t plen = sz - SST_BLOCK_TRAILER;
        int ok = kv_checksum64(p, plen + 1) == kv_get_u64(p + plen + 1);
        kv_sst_read_opts ro = {NULL, 0, 0};
        kv_block_ref ref;
        kv_err err;
        printf("  %6u %12llu %10u %8u %8s ", i, (unsigned long long)off, sz,
               kv_get_u32(e + SST_IX_COUNT), compression_name(p[plen]));
        if (kv_sst_read_block(t, i, &ro, &ref, &err) == KV_OK) {
            printf("%10zu", ref.len);
            kv_block_ref_release(&ref);
        } else {
            printf("%10s", "-");
        }
        printf("  %s\n", ok ? "ok" : "BAD");
    }
}

static int cmd_dump_table(const char *path, long limit)
{
    kv_sst_read_opts ro = {NULL, 0, 1};
    const kv_sst_props *p;
    const uint8_t *k;
    size_t klen;
    kv_sst_iter it;
    mapped m;
    kv_sst *t;
    kv_err err;
    uint64_t n = 0;
    char a[SHOW_CAP], b[SHOW_CAP];
    int rc = 0;

    if (map_file(path, &m, &err) != KV_OK) return fail_err(&err);
    if (kv_sst_open(m.p, m.size, path, 0, KV_VERIFY_NONE, &t, &err) != KV_OK) {
        unmap_file(&m);
        return fail_err(&err);
    }
    p = kv_sst_get_props(t);
    printf("table %s\nproperties:\n", path);
    printf("  table id %llu, file size %llu, %u blocks, compression %s, created %llu\n",
           (unsigned long long)p->table_id, (unsigned long long)p->file_size, p->num_blocks,
           compression_name(p->compression), (unsigned long long)p->created_unix);
    printf("  entries %llu, deletes %llu, value pointers %llu (%llu vlog bytes)\n",
           (unsigned long long)p->num_entries, (unsigned long long)p->num_deletes,
           (unsigned long long)p->num_value_ptrs, (unsigned long long)p->vlog_bytes);
    printf("  raw key bytes %llu, raw value bytes %llu, versions %llu..%llu\n",
           (unsigned long long)p->raw_key_bytes, (unsigned long long)p->raw_value_bytes,
           (unsigned long long)p->min_version, (unsigned long long)p->max_version);
    k = kv_sst_smallest(t, &klen);
    printf("  smallest \"%s\" @%llu\n", show_ukey(a, k, klen),
           (unsigned long long)kv_ikey_version(k, klen));
    k = kv_sst_largest(t, &klen);
    printf("  largest  \"%s\" @%llu\n", show_ukey(b, k, klen),
           (unsigned long long)kv_ikey_version(k, klen));
    print_layout(t, m.p, m.size);
    printf("entries:\n");
    kv_sst_iter_init(&it, t, &ro);
    for (kv_sst_iter_first(&it); it.valid; kv_sst_iter_next(&it), n++) {
        if (limit >= 0 && n >= (uint64_t)limit) continue;
        printf("  \"%s\" @%llu", show_ukey(a, it.key, it.key_len),
               (unsigned long long)kv_ikey_version(it.key, it.key_len));
        print_vstruct(it.val, it.val_len, 0);
    }
    if (it.status != KV_OK) {
        rc = fail_err(&it.err);
    } else {
        if (limit >= 0 && n > (uint64_t)limit)
            printf("  ... %llu more entries\n", (unsigned long long)(n - (uint64_t)limit));
        printf("%llu entries\n", (unsigned long long)n);
    }
    kv_sst_iter_done(&it);
    kv_sst_close(t);
    unmap_file(&m);
    return rc;
}

/* ---- command line ---- */

static int usage(void)
{
    fprintf(stderr,
            "usage: kvctl info DIR\n"
            "       kvctl check DIR\n"
            "       kvctl dump manifest FILE\n"
            "       kvctl dump wal [-v] FILE\n"
            "       kvctl dump table [-n N] FILE\n"
            "None of the commands takes the database lock.  check exits 0 if no errors\n"
            "were found, 1 if some were; usage errors exit 2.\n");
    return 2;
}

static int cmd_dump(int argc, char **argv)
{
    const char *what = argv[0], *file = NULL;
    int verbose = 0;
    long limit = -1;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-v") && !strcmp(what, "wal")) {
            verbose = 1;
        } else if (!strcmp(argv[i], "-n") && !strcmp(what, "table") && i + 1 < argc) {
            char *end;
            limit = strtol(argv[++i], &end, 10);
            if (*end || limit < 0) return usage();
        } else if (argv[i][0] == '-' || file) {
            return usage();
        } else {
            file = argv[i];
        }
    }
    if (!file) return usage();
    if (!strcmp(what, "manifest")) return cmd_dump_manifest(file);
    if (!strcmp(what, "wal")) return cmd_dump_wal(file, verbose);
    if (!strcmp(what, "table")) return cmd_dump_table(file, limit);
    return usage();
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) return usage();
    if (!strcmp(argv[1], "info") && argc == 3) return cmd_info(argv[2]);
    if (!strcmp(argv[1], "check") && argc == 3) return cmd_check(argv[2]);
    if (!strcmp(argv[1], "dump") && argc >= 4) return cmd_dump(argc - 2, argv + 2);
    return usage();
}
