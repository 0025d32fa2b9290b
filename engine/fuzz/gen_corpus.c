/*
 * gen_corpus.c - writes the seed corpora of the fuzz targets, made by the
 * engine itself: it creates small databases (no, snappy and zstd
 * compression, the longer values in the value log) through the public API,
 * copies a live WAL, the MANIFEST, a value log and the tables, and wraps them (and pieces of
 * them: record payloads, block contents) in each target's input format (see the header comment
 * of each fuzz/fuzz_*.c).  Built and run by make_corpus.sh:
 *
 *   gen_corpus OUTDIR      writes OUTDIR/<target>/seed-*
 */
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kv.h"

#include "coding.h"
#include "env.h"
#include "frame.h"
#include "ikey.h"
#include "manifest.h"
#include "sst_format.h"
#include "vlog_format.h"
#include "wal.h"

typedef struct blob {
    uint8_t *p;
    size_t n;
} blob;

static void die(const char *what, const kv_err *err)
{
    fprintf(stderr, "gen_corpus: %s%s%s\n", what, err ? ": " : "", err ? err->msg : "");
    exit(1);
}

static void add(blob *b, const void *d, size_t n)
{
    b->p = realloc(b->p, b->n + n + 1);
    if (!b->p) die("out of memory", NULL);
    if (n) memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void add_u8(blob *b, uint8_t v)
{
    add(b, &v, 1);
}

static void add_u16(blob *b, size_t v)
{
    uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    add(b, x, 2);
}

static blob slurp(const char *path)
{
    blob b = {NULL, 0};
    uint8_t *d;
    size_t n;
    kv_err err;

    if (kv_env_read_file(kv_env_posix(), path, &d, &n, &err) != KV_OK) die("read", &err);
    add(&b, d, n);
    free(d);
    return b;
}

static void emit(const char *out, const char *target, const char *name, const blob *b)
{
    char path[4096];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", out, target);
    mkdir(path, 0777);
    snprintf(path, sizeof path, "%s/%s/seed-%s", out, target, name);
    f = fopen(path, "wb");
    if (!f || fwrite(b->p, 1, b->n, f) != b->n || fclose(f) != 0) die(path, NULL);
}

/* mode byte + body */
static void emit_mode(const char *out, const char *target, const char *name, uint8_t mode,
                      const uint8_t *body, size_t n)
{
    blob b = {NULL, 0};
    add_u8(&b, mode);
    add(&b, body, n);
    emit(out, target, name, &b);
    free(b.p);
}

/* ---- a database ---- */

typedef struct db_files {
    blob wal, manifest, vlog, discard, tables[4];
    unsigned wal_id, vlog_id, table_ids[4];
    int ntables;
} db_files;

/* The number in front of the extension of path's last component. */
static unsigned file_id(const char *path)
{
    const char *base = strrchr(path, '/');
    return (unsigned)strtoul(base ? base + 1 : path, NULL, 10);
}

static void put_keys(kv_db *db, int from, int to, int salt)
{
    kv_batch *b = kv_batch_new();
    kv_err err;
    char k[32], v[160];

    for (int i = from; i < to; i++) {
        snprintf(k, sizeof k, "user%05d", i);
        snprintf(
            v, sizeof v, "value-%d-%d-%.*s", i, salt, (i * 37) % 100,
            "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghij"
            "abcdefghijabcdefghij");
        if (i % 11 == 0) {
            if (kv_batch_delete(b, k, strlen(k), &err) != KV_OK) die("delete", &err);
        } else if (kv_batch_put_ex(b, k, strlen(k), v, strlen(v), (uint8_t)i,
                                   i % 5 ? 0 : 4000000000ULL, &err) != KV_OK) {
            die("put", &err);
        }
        if (kv_batch_count(b) == 16 || i + 1 == to) {
            if (kv_write(db, NULL, b, NULL, &err) != KV_OK) die("write", &err);
            kv_batch_clear(b);
        }
    }
    kv_batch_free(b);
}

/* The largest file in dir whose name ends in ext. */
static int largest(const char *dir, const char *ext, char *path, size_t cap)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    off_t best = -1;

    if (!d) die(dir, NULL);
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name), el = strlen(ext);
        char p[4096];
        struct stat sb;
        if (l <= el || strcmp(e->d_name + l - el, ext)) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (stat(p, &sb) == 0 && sb.st_size > best) {
            best = sb.st_size;
            snprintf(path, cap, "%s", p);
        }
    }
    closedir(d);
    return best >= 0;
}

static void make_db(kv_compression comp, db_files *f)
{
    char dir[] = "/tmp/kvsep-corpus-XXXXXX", path[4096], cmd[4200];
    kv_options o;
    kv_db *db;
    kv_err err;
    DIR *d;
    struct dirent *e;

    if (!mkdtemp(dir)) die("mkdtemp", NULL);
    kv_options_default(&o, dir);
    o.compression = comp;
    o.mem_table_size = 1 << 20;
    o.block_size = 1024;
    o.block_cache_size = 1 << 20;
    o.num_compactors = 1;
    o.value_threshold = 96; /* the longer values go to the value log */
    o.log_level = KV_LOG_ERROR;
    if (kv_open(&o, &db, &err) != KV_OK) die("open", &err);
    put_keys(db, 0, 300, 1);
    if (kv_flush(db, &err) != KV_OK) die("flush", &err);
    put_keys(db, 150, 400, 2);
    if (kv_flush(db, &err) != KV_OK) die("flush", &err);
    if (kv_compact_all(db, &err) != KV_OK) die("compact", &err);
    put_keys(db, 0, 60, 3);
    if (!largest(dir, ".mem", path, sizeof path)) die("no WAL", NULL);
    f->wal = slurp(path); /* the live WAL, as it is while the database is open */
    f->wal_id = file_id(path);
    if (kv_close(db, &err) != KV_OK) die("close", &err);
    snprintf(path, sizeof path, "%s/MANIFEST", dir);
    f->manifest = slurp(path);
    snprintf(path, sizeof path, "%s/DISCARD", dir);
    f->discard = slurp(path);
    if (!largest(dir, ".vlog", path, sizeof path)) die("no value log", NULL);
    f->vlog = slurp(path);
    f->vlog_id = file_id(path);
    f->ntables = 0;
    if (!(d = opendir(dir))) die(dir, NULL);
    while ((e = readdir(d)) != NULL && f->ntables < 4) {
        size_t l = strlen(e->d_name);
        if (l < 4 || strcmp(e->d_name + l - 4, ".sst")) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        f->table_ids[f->ntables] = file_id(path);
        f->tables[f->ntables++] = slurp(path);
    }
    closedir(d);
    if (f->ntables == 0) die("no tables", NULL);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) die(cmd, NULL);
}

/* ---- pieces ---- */

/* Record payloads of a WAL or MANIFEST image (from offset start) as
 * u16-prefixed pieces. */
static blob pieces(const blob *img, size_t start)
{
    blob b = {NULL, 0};
    size_t off = start;

    while (off + KV_FRAME_HDR <= img->n) {
        size_t len = kv_get_u32(img->p + off);
        if (len > img->n - off - KV_FRAME_HDR || len > 65535) break;
        add_u16(&b, len);
        add(&b, img->p + off + KV_FRAME_HDR, len);
        off += KV_FRAME_HDR + len;
    }
    return b;
}

/* Payload (as stored) and type of block i of a table image. */
static const uint8_t *block_payload(const blob *t, uint32_t i, size_t *n, uint8_t *type)
{
    const uint8_t *ft = t->p + t->n - SST_FOOTER_SIZE;
    uint64_t io = kv_get_u64(ft + SST_FT_INDEX_OFF);
    uint32_t nb = kv_get_u32(ft + SST_FT_NUM_BLOCKS);
    const uint8_t *e;
    uint64_t off;

    if (i >= nb) i = nb - 1;
    e = t->p + io + (uint64_t)i * SST_INDEX_ENTRY;
    off = kv_get_u64(e + SST_IX_OFF);
    *n = kv_get_u32(e + SST_IX_SIZE) - SST_BLOCK_TRAILER;
    *type = t->p[off + *n];
    return t->p + off;
}

/* Input of fuzz_sst's build mode: parameters, mutations, entries. */
static blob build_seed(uint8_t bsel, uint8_t comp, uint8_t flags, int nmut, int nent)
{
    blob b = {NULL, 0};
    char key[32], val[64];

    add_u8(&b, 1);
    add_u8(&b, bsel);
    add_u8(&b, comp);
    add_u8(&b, flags);
    add_u8(&b, (uint8_t)nmut);
    for (int i = 0; i < nmut; i++) {
        add_u16(&b, (size_t)(i * 977 + 13));
        add_u8(&b, (uint8_t)(1 << (i % 8)));
    }
    for (int i = 0; i < nent; i++) {
        int kl = snprintf(key, sizeof key, "k%04d", i / 2), vl;
        int kind = i % 7 == 0 ? 1 : i % 13 == 0 ? 2 : 0;
        add_u8(&b, (uint8_t)((kl - 1) | kind << 5));
        add(&b, key, (size_t)kl);
        add_u8(&b, (uint8_t)(200 - i % 2));
        vl = kind == 2 ? 16 : snprintf(val, sizeof val, "value number %d", i);
        if (kind == 2) memset(val, 7, 16);
        add_u8(&b, (uint8_t)vl);
        add(&b, val, (size_t)vl);
    }
    return b;
}

int main(int argc, char **argv)
{
    static const kv_compression comps[3] = {KV_COMPRESS_NONE, KV_COMPRESS_SNAPPY,
                                            KV_COMPRESS_ZSTD};
    static const char *cname[3] = {"none", "snappy", "zstd"};
    db_files f[3];
    const char *out;
    char name[64];
    blob b;

    if (argc != 2) {
        fprintf(stderr, "usage: gen_corpus OUTDIR\n");
        return 2;
    }
    out = argv[1];
    mkdir(out, 0777);
    for (int c = 0; c < 3; c++) make_db(comps[c], &f[c]);

    /* fuzz_wal_record */
    emit_mode(out, "fuzz_wal_record", "image", 0x00, f[1].wal.p, f[1].wal.n);
    emit_mode(out, "fuzz_wal_record", "after-header", 0x01, f[1].wal.p + KV_WAL_HEADER_SIZE,
              f[1].wal.n - KV_WAL_HEADER_SIZE);
    b = pieces(&f[1].wal, KV_WAL_HEADER_SIZE);
    emit_mode(out, "fuzz_wal_record", "framed", 0x06, b.p, b.n);
    emit_mode(out, "fuzz_wal_record", "torn", 0x33, b.p, b.n);
    emit_mode(out, "fuzz_wal_record", "zero-tail", 0x2a, b.p, b.n);
    free(b.p);

    /* fuzz_manifest */
    emit_mode(out, "fuzz_manifest", "image", 0x00, f[0].manifest.p, f[0].manifest.n);
    emit_mode(out, "fuzz_manifest", "after-header", 0x01,
              f[0].manifest.p + KV_MANIFEST_HEADER_SIZE,
              f[0].manifest.n - KV_MANIFEST_HEADER_SIZE);
    b = pieces(&f[0].manifest, KV_MANIFEST_HEADER_SIZE);
    emit_mode(out, "fuzz_manifest", "framed", 0x02, b.p, b.n);
    emit_mode(out, "fuzz_manifest", "torn", 0x36, b.p, b.n);
    free(b.p);
    {
        static const uint8_t synth[] = {3, 1, 2,  0x09, 1,    5,    2, 3, 4,    5, 6, 7,
                                        8, 9, 10, 11,   0x19, 2,    6, 1, 1,    1, 1, 1,
                                        1, 1, 1,  1,    9,    9,    9, 9, 9,    9, 9, 9,
                                        9, 9, 1,  0,    0,    0x0a, 1, 0, 0x08, 2, 0};
        emit_mode(out, "fuzz_manifest", "synth", 0x03, synth, sizeof synth);
    }

    /* fuzz_vlog */
    emit_mode(out, "fuzz_vlog", "image", 0x01, f[1].vlog.p, f[1].vlog.n);
    b = pieces(&f[1].vlog, KV_VLOG_HEADER_SIZE);
    emit_mode(out, "fuzz_vlog", "framed", 0x02, b.p, b.n);
    free(b.p);
    if (f[1].vlog.n > KV_VLOG_HEADER_SIZE + KV_FRAME_HDR) {
        size_t len = KV_FRAME_HDR + kv_get_u32(f[1].vlog.p + KV_VLOG_HEADER_SIZE);
        if (len <= f[1].vlog.n - KV_VLOG_HEADER_SIZE)
            emit_mode(out, "fuzz_vlog", "entry", 0x04, f[1].vlog.p + KV_VLOG_HEADER_SIZE, len);
    }
    emit_mode(out, "fuzz_vlog", "discard", 0x08, f[1].discard.p, f[1].discard.n);

    /* fuzz_open: whole databases, files as kind | id - 1 | u16 length | bytes */
    for (int c = 0; c < 3; c++) {
        b.p = NULL;
        b.n = 0;
        for (int with_wal = 0; with_wal < 2; with_wal++) {
            const blob *fs[8] = {&f[c].manifest, &f[c].vlog, &f[c].wal};
            unsigned kinds[8] = {0, 3, 1}, ids[8] = {0, f[c].vlog_id, f[c].wal_id};
            int nf = with_wal ? 3 : 2;
            b.n = 0;
            for (int t = 0; t < f[c].ntables; t++, nf++) {
                fs[nf] = &f[c].tables[t];
                kinds[nf] = 2;
                ids[nf] = f[c].table_ids[t];
            }
            for (int i = 0; i < nf; i++) {
                if (fs[i]->n > 65535 || ids[i] > 256) continue;
                add_u8(&b, (uint8_t)kinds[i]);
                add_u8(&b, (uint8_t)(ids[i] ? ids[i] - 1 : 0));
                add_u16(&b, fs[i]->n);
                add(&b, fs[i]->p, fs[i]->n);
            }
            snprintf(name, sizeof name, "%s%s", cname[c], with_wal ? "-wal" : "");
            emit(out, "fuzz_open", name, &b);
        }
        free(b.p);
    }

    /* fuzz_sst */
    for (int c = 0; c < 3; c++) {
        for (int t = 0; t < f[c].ntables && t < 2; t++) {
            snprintf(name, sizeof name, "%s-%d", cname[c], t);
            emit_mode(out, "fuzz_sst", name, 0x00, f[c].tables[t].p, f[c].tables[t].n);
        }
        snprintf(name, sizeof name, "%s-resealed", cname[c]);
        emit_mode(out, "fuzz_sst", name, 0x02, f[c].tables[0].p, f[c].tables[0].n);
    }
    b = build_seed(0, 0, 1, 0, 60);
    emit(out, "fuzz_sst", "build-raw-bloom", &b);
    free(b.p);
    b = build_seed(3, 1, 0, 0, 120);
    emit(out, "fuzz_sst", "build-snappy", &b);
    free(b.p);
    b = build_seed(1, 2, 3, 0, 80);
    emit(out, "fuzz_sst", "build-zstd", &b);
    free(b.p);
    b = build_seed(0, 0, 2, 3, 50);
    emit(out, "fuzz_sst", "build-mutated-resealed", &b);
    free(b.p);

    /* fuzz_block: contents of real blocks, raw and as stored */
    {
        size_t n0, n1, ns, nz;
        uint8_t t0, t1, ts, tz;
        const uint8_t *b0 = block_payload(&f[0].tables[0], 0, &n0, &t0);
        const uint8_t *b1 = block_payload(&f[0].tables[0], 1, &n1, &t1);
        const uint8_t *bs = block_payload(&f[1].tables[0], 0, &ns, &ts);
        const uint8_t *bz = block_payload(&f[2].tables[0], 0, &nz, &tz);
        emit_mode(out, "fuzz_block", "raw", 0x00, b0, n0);
        emit_mode(out, "fuzz_block", "raw-bloom", 0x20, b0, n0);
        emit_mode(out, "fuzz_block", "compress-snappy", 0x04, b0, n0);
        emit_mode(out, "fuzz_block", "compress-zstd", 0x14, b0, n0);
        if (ts == KV_COMPRESS_SNAPPY) emit_mode(out, "fuzz_block", "snappy", 0x08, bs, ns);
        if (tz == KV_COMPRESS_ZSTD) emit_mode(out, "fuzz_block", "zstd", 0x0c, bz, nz);
        b.p = NULL;
        b.n = 0;
        add_u8(&b, 0x01); /* two raw blocks */
        add_u16(&b, n0);
        add(&b, b0, n0);
        add(&b, b1, n1);
        emit(out, "fuzz_block", "two-blocks", &b);
        free(b.p);
    }
    for (int c = 0; c < 3; c++) {
        free(f[c].wal.p);
        free(f[c].manifest.p);
        free(f[c].vlog.p);
        free(f[c].discard.p);
        for (int t = 0; t < f[c].ntables; t++) free(f[c].tables[t].p);
    }
    return 0;
}
