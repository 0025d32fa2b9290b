/*
 * vlog_unmapped_handle.c - reproducer: after one read through a value
 * pointer that runs past the end of its value log (KV_CORRUPTION, as it
 * should be), the next read of a *valid* pointer into the same file
 * dereferences a NULL mapping (src/vlog.c).
 *
 * get_handle() puts a new kv_vhandle on the cache list, then learns the
 * file size into h->known_size and, if the pointer needs more bytes than
 * that, returns KV_CORRUPTION before mapping anything: the handle stays on
 * the list with known_size set and map == NULL.  (The same happens when
 * env->map fails.)  The next get_handle() for that file finds it, sees
 * need <= known_size and returns it at once, so kv_vlog_read() decodes at
 * NULL + offset.  UBSan: "src/vlog.c:212:37: runtime error: applying
 * non-zero offset 1093 to null pointer"; then SEGV in
 * kv_vlog_entry_decode (vlog_format.c) <- kv_vlog_read (vlog.c:212) <-
 * kv_iter_value (db_iter.c:481) / get_found (read.c).
 *
 * Still there at commit 9ef1230.  Found by fuzz/fuzz_open.c within 30
 * executions (a mutated value log); this program is the deterministic
 * version: two values in the value log, the file cut in the middle of the
 * second entry, then a read of the second key (corruption) and of the
 * first (crash).  Expected: the second read returns the value.
 *
 *   cc -std=c11 -D_GNU_SOURCE -Iinclude -Isrc -g -o /tmp/vrepro2 \
 *      fuzz/findings/vlog_unmapped_handle.c build/release/libkvsep.a \
 *      -lsnappy -lzstd -lm -pthread
 *   /tmp/vrepro2 /tmp/vlog-repro-db2
 *
 * Fix: only publish a handle (or only take the early return) once it is
 * mapped - e.g. test h->map in the early-return condition, and on the
 * error paths either unlink the fresh handle or leave known_size at 0.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kv.h"

static void check(kv_status st, const kv_err *err, const char *what)
{
    if (st != KV_OK) {
        fprintf(stderr, "%s: %s\n", what, err->msg);
        exit(1);
    }
}

static kv_status get(kv_db *db, const char *key)
{
    kv_buf out = {0};
    kv_err err;
    kv_status st = kv_get(db, NULL, key, strlen(key), &out, NULL, &err);

    printf("kv_get(%s): %s %s\n", key, kv_status_str(st), st == KV_OK ? "" : err.msg);
    kv_buf_free(&out);
    return st;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "/tmp/vlog-repro-db2";
    char path[4096], val[300], cmd[4200];
    kv_options o;
    kv_db *db;
    kv_err err;
    kv_batch *b;
    DIR *d;
    struct dirent *e;
    struct stat sb;
    kv_status st;

    setvbuf(stdout, NULL, _IONBF, 0);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) return 1;
    kv_options_default(&o, dir);
    o.value_threshold = 64;
    check(kv_open(&o, &db, &err), &err, "open");
    memset(val, 'v', sizeof val);
    b = kv_batch_new();
    check(kv_batch_put(b, "k1", 2, val, sizeof val, &err), &err, "put");
    check(kv_write(db, NULL, b, NULL, &err), &err, "write");
    kv_batch_clear(b);
    check(kv_batch_put(b, "k2", 2, val, sizeof val, &err), &err, "put");
    check(kv_write(db, NULL, b, NULL, &err), &err, "write");
    kv_batch_free(b);
    check(kv_flush(db, &err), &err, "flush");
    check(kv_close(db, &err), &err, "close");

    /* cut the value log in the middle of the second entry */
    d = opendir(dir);
    path[0] = '\0';
    while ((e = readdir(d)) != NULL)
        if (strstr(e->d_name, ".vlog")) snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    closedir(d);
    if (!path[0] || stat(path, &sb) != 0) return 1;
    printf("%s: %lld bytes, cut to %lld\n", path, (long long)sb.st_size,
           (long long)sb.st_size - 100);
    if (truncate(path, sb.st_size - 100) != 0) return 1;

    check(kv_open(&o, &db, &err), &err, "reopen");
    get(db, "k2");      /* past the end of the file: KV_CORRUPTION */
    st = get(db, "k1"); /* a valid pointer: crashes */
    kv_close(db, &err);
    return st == KV_OK ? 0 : 1;
}
