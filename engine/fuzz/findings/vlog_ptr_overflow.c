/*
 * vlog_ptr_overflow.c - reproducer: a value pointer whose offset is near
 * UINT64_MAX makes kv_vlog_read() (src/vlog.c) read outside the value-log
 * mapping instead of returning KV_CORRUPTION.
 *
 * kv_vlog_read() only checks p->offset >= KV_VLOG_HEADER_SIZE and
 * p->len >= KV_FRAME_HDR, then asks get_handle() for need = p->offset +
 * p->len bytes.  That sum is computed in uint64_t and wraps: with offset =
 * UINT64_MAX - 15 and the entry's length (220 here) it is 204, which is
 * "inside" the file, so kv_vlog_entry_decode() is called on h->map +
 * offset, i.e. 16 bytes before the mapping: SIGSEGV (or a read of whatever
 * is mapped there).  kv_vlog_prefetch() computes the same unchecked sum
 * (vlog.c:232-235: get_handle, then madvise of a bogus range).
 *
 * Backtrace (release build at commit 9ef1230):
 *   #0 kv_vlog_entry_decode (buf=0x7fff67fffff0 <cannot access>, n=220)
 *   #1 kv_vlog_read    src/vlog.c:212
 *   #2 get_found       src/read.c:162
 *   #3 table_get       src/read.c:63
 *   #4 lookup          src/read.c:112
 *   #5 kv_get          src/read.c:196
 *
 * The program writes one large value (into the value log), flushes, then
 * rewrites the pointer's offset in the table and re-seals the block
 * checksum (the table format lets any block be rewritten consistently, so a
 * checksum does not protect against a crafted or mis-written pointer), and
 * reads the key.  Expected: kv_get returns KV_CORRUPTION.  Actual (at the
 * time of writing): crash in kv_vlog_entry_decode.
 *
 *   cc -std=c11 -D_GNU_SOURCE -Iinclude -Isrc -g -o /tmp/vrepro \
 *      fuzz/findings/vlog_ptr_overflow.c build/release/libkvsep.a -lsnappy -lzstd -lm -pthread
 *   /tmp/vrepro /tmp/vlog-repro-db
 *
 * Fix: refuse p->offset > UINT64_MAX - p->len (or, simpler, any offset +
 * len beyond the file size computed without wrapping) in kv_vlog_read and
 * kv_vlog_prefetch.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv.h"

#include "coding.h"
#include "hash.h"
#include "ikey.h"
#include "sst_format.h"

static void check(kv_status st, const kv_err *err, const char *what)
{
    if (st != KV_OK) {
        fprintf(stderr, "%s: %s\n", what, err->msg);
        exit(1);
    }
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "/tmp/vlog-repro-db";
    char path[4096], val[200], cmd[4200];
    kv_options o;
    kv_db *db;
    kv_err err;
    kv_batch *b;
    kv_buf out = {0};
    DIR *d;
    struct dirent *e;
    FILE *f;
    uint8_t *t;
    long n;
    kv_status st;

    setvbuf(stdout, NULL, _IONBF, 0);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) return 1;
    kv_options_default(&o, dir);
    o.value_threshold = 64;
    o.compression = KV_COMPRESS_NONE;
    check(kv_open(&o, &db, &err), &err, "open");
    memset(val, 'v', sizeof val);
    b = kv_batch_new();
    check(kv_batch_put(b, "k1", 2, val, sizeof val, &err), &err, "put");
    check(kv_write(db, NULL, b, NULL, &err), &err, "write");
    kv_batch_free(b);
    check(kv_flush(db, &err), &err, "flush");
    check(kv_close(db, &err), &err, "close");

    /* the one table: block 0, entry 0 = "k1" with a value pointer */
    d = opendir(dir);
    path[0] = '\0';
    while ((e = readdir(d)) != NULL)
        if (strstr(e->d_name, ".sst")) snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    closedir(d);
    f = fopen(path, "r+b");
    if (!f) return 1;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    t = malloc((size_t)n);
    fseek(f, 0, SEEK_SET);
    if (fread(t, 1, (size_t)n, f) != (size_t)n) return 1;
    {
        const uint8_t *ix = t + kv_get_u64(t + n - SST_FOOTER_SIZE + SST_FT_INDEX_OFF);
        uint32_t bsz = kv_get_u32(ix + SST_IX_SIZE);
        size_t plen = bsz - SST_BLOCK_TRAILER, diff = kv_get_u16(t + 2);
        uint8_t *vs = t + SST_ENTRY_HEADER + diff, *vp;
        if (t[plen] != KV_COMPRESS_NONE || !(vs[0] & KV_META_VALUE_PTR)) {
            fprintf(stderr, "unexpected table layout\n");
            return 1;
        }
        vp = vs + 3; /* meta, user meta, expires_at = 0 (one byte) */
        printf("pointer: file %u, length %u, offset %llu -> offset %llu\n", kv_get_u32(vp),
               kv_get_u32(vp + 4), (unsigned long long)kv_get_u64(vp + 8),
               (unsigned long long)(UINT64_MAX - 15));
        kv_put_u64(vp + 8, UINT64_MAX - 15);
        kv_put_u64(t + plen + 1, kv_checksum64(t, plen + 1));
    }
    fseek(f, 0, SEEK_SET);
    fwrite(t, 1, (size_t)n, f);
    fclose(f);
    free(t);

    check(kv_open(&o, &db, &err), &err, "reopen");
    st = kv_get(db, NULL, "k1", 2, &out, NULL, &err);
    printf("kv_get: %s: %s\n", kv_status_str(st), st == KV_OK ? "" : err.msg);
    kv_buf_free(&out);
    kv_close(db, &err);
    return st == KV_CORRUPTION ? 0 : 1;
}
