/*
 * kvbench - the kvsep engine on the common key-value workload of
 * ../shared/anchors (kvbench_common.h there is the spec): same command
 * line, same generated keys and values, same output lines, so that
 * run_engines.sh (KVSEP_BENCH=engine/bin/kvbench) compares kvsep with
 * RocksDB, LevelDB and Badger in one run.
 *
 *   kvbench --dir D [--num N] [--value-size V] [--key-size 16] [--seed S]
 *           [--sync 0|1] [--benchmarks fillrandom,readrandom,scan]
 *           [--batch 1000] [--reads N/10] [--bloom-bits 10]
 *           [--value-threshold 1024] [--compression none|snappy|zstd]
 *           [--memtable-mb 64] [--compactors 4] [--block-cache-mb 256]
 *           [--prefetch 64]                      (scan: values read ahead)
 *           [--blob 0|1] [--blob-min 512]       (accepted, ignored)
 *
 * Workload: key i = first K bytes (big-endian words) of splitmix64 outputs
 * 8i+1.. of a generator seeded with --seed; value i = V bytes at a
 * pseudo-random offset of a 32 MiB random buffer; fillrandom = N puts in
 * batches of --batch; readrandom = N/10 gets of random existing keys, each
 * value checked; scan = one forward pass summing every value byte.
 * Output: "name ops/s MB/s micros/op" per benchmark, then, after close,
 * close_seconds, disk_write_bytes, cancelled_write_bytes,
 * syscall_write_bytes, dir_size_bytes, dir_alloc_bytes, write_amp,
 * write_amp_syscall, cpu_user_s, cpu_sys_s, max_rss_kb.
 */
#include <ftw.h>
#include <getopt.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include "kv.h"

typedef struct bopts {
    const char *dir, *benchmarks, *compression;
    long num, reads;
    int key_size, value_size, sync, batch, bloom_bits, compactors, prefetch;
    long value_threshold, memtable_mb, block_cache_mb;
    uint64_t seed;
} bopts;

#define GOLDEN 0x9e3779b97f4a7c15ULL
#define VALBUF_SIZE (32u << 20)
#define SALT_VALBUF 0x76616c7565627566ULL /* "valuebuf" */
#define SALT_VALOFF 0x76616c75656f6666ULL /* "valueoff" */
#define SALT_READ 0x72656164726e6421ULL   /* "readrnd!" */

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t next64(uint64_t *s)
{
    *s += GOLDEN;
    return mix64(*s);
}

static void make_key(const bopts *o, uint64_t i, char *k)
{
    for (int w = 0; w * 8 < o->key_size; w++) {
        uint64_t x = mix64(o->seed + (8 * i + (uint64_t)w + 1) * GOLDEN);
        for (int b = 0; b < 8 && w * 8 + b < o->key_size; b++) k[w * 8 + b] = (char)(x >> (56 - 8 * b));
    }
}

static char *make_valbuf(const bopts *o)
{
    char *buf = malloc(VALBUF_SIZE);
    uint64_t s = o->seed ^ SALT_VALBUF;
    if (!buf) {
        perror("malloc");
        exit(1);
    }
    for (size_t off = 0; off < VALBUF_SIZE; off += 8) {
        uint64_t x = next64(&s);
        memcpy(buf + off, &x, 8);
    }
    return buf;
}

static const char *value_of(const bopts *o, const char *buf, uint64_t i)
{
    uint64_t span = VALBUF_SIZE - (uint64_t)o->value_size + 1;
    return buf + mix64((o->seed ^ SALT_VALOFF) + (i + 1) * GOLDEN) % span;
}

static uint64_t touch(const char *v, size_t n)
{
    uint64_t sum = 0, w;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        memcpy(&w, v + i, 8);
        sum += w;
    }
    for (; i < n; i++) sum += (unsigned char)v[i];
    return sum;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct pio {
    unsigned long long write_bytes, cancelled, wchar;
} pio;

static pio proc_io(void)
{
    char line[128];
    pio io = {0, 0, 0};
    FILE *f = fopen("/proc/self/io", "r");
    if (!f) return io;
    while (fgets(line, sizeof line, f)) {
        sscanf(line, "write_bytes: %llu", &io.write_bytes);
        sscanf(line, "cancelled_write_bytes: %llu", &io.cancelled);
        sscanf(line, "wchar: %llu", &io.wchar);
    }
    fclose(f);
    return io;
}

static unsigned long long du_size, du_alloc;
static int du_cb(const char *p, const struct stat *st, int type, struct FTW *ftw)
{
    (void)p;
    (void)ftw;
    if (type == FTW_F) {
        du_size += (unsigned long long)st->st_size;
        du_alloc += (unsigned long long)st->st_blocks * 512;
    }
    return 0;
}

static void report(const char *name, long ops, double secs, double bytes)
{
    printf("%s %.1f %.2f %.3f\n", name, ops / secs, bytes / 1048576.0 / secs,
           secs * 1e6 / (double)(ops ? ops : 1));
    fflush(stdout);
}

static void die(const char *what, kv_status st, const kv_err *err)
{
    fprintf(stderr, "kvbench: %s: %s: %s\n", what, kv_status_str(st), err ? err->msg : "");
    exit(1);
}

static long errors;

static void fillrandom(kv_db *db, const bopts *o, const char *vb)
{
    char k[64];
    kv_batch *b = kv_batch_new_for(db);
    kv_write_options wo = {o->sync};
    kv_err err;
    kv_status st;
    double t0 = now_s();
    for (long i = 0; i < o->num; i++) {
        make_key(o, (uint64_t)i, k);
        st = kv_batch_put(b, k, (size_t)o->key_size, value_of(o, vb, (uint64_t)i),
                          (size_t)o->value_size, &err);
        if (st != KV_OK) die("put", st, &err);
        if ((i + 1) % o->batch == 0 || i + 1 == o->num) {
            st = kv_write(db, &wo, b, NULL, &err);
            if (st != KV_OK) die("write", st, &err);
            kv_batch_clear(b);
        }
    }
    report("fillrandom", o->num, now_s() - t0, (double)o->num * (o->key_size + o->value_size));
    kv_batch_free(b);
}

static void readrandom(kv_db *db, const bopts *o, const char *vb)
{
    char k[64];
    long n = o->reads > 0 ? o->reads : (o->num / 10 > 0 ? o->num / 10 : 1);
    long missing = 0, bad = 0;
    uint64_t s = o->seed ^ SALT_READ;
    kv_buf val = {0};
    kv_err err;
    double t0 = now_s();
    for (long j = 0; j < n; j++) {
        uint64_t i = next64(&s) % (uint64_t)o->num;
        kv_status st;
        make_key(o, i, k);
        st = kv_get(db, NULL, k, (size_t)o->key_size, &val, NULL, &err);
        if (st == KV_NOT_FOUND) {
            missing++;
            continue;
        }
        if (st != KV_OK) die("get", st, &err);
        if (val.len != (size_t)o->value_size || memcmp(val.data, value_of(o, vb, i), val.len) != 0)
            bad++;
    }
    report("readrandom", n, now_s() - t0, (double)n * (o->key_size + o->value_size));
    kv_buf_free(&val);
    if (missing || bad) {
        printf("# readrandom ERRORS missing=%ld bad_value=%ld\n", missing, bad);
        errors += missing + bad;
    }
}

static void scan(kv_db *db, const bopts *o)
{
    long count = 0;
    double bytes = 0, t0 = now_s();
    uint64_t sum = 0;
    kv_iter_options io;
    kv_iter *it;
    kv_err err;
    kv_status st;
    memset(&io, 0, sizeof io);
    io.prefetch_values = o->prefetch;
    io.fill_cache = 0;
    st = kv_iter_new(db, &io, &it, &err);
    if (st != KV_OK) die("iterator", st, &err);
    for (kv_iter_rewind(it); kv_iter_valid(it); kv_iter_next(it)) {
        size_t kl, vl;
        const void *v;
        kv_iter_key(it, &kl);
        st = kv_iter_value(it, &v, &vl, &err);
        if (st != KV_OK) die("iterator value", st, &err);
        sum += touch(v, vl);
        bytes += (double)(kl + vl);
        count++;
    }
    st = kv_iter_status(it, &err);
    if (st != KV_OK) die("iterator", st, &err);
    kv_iter_free(it);
    report("scan", count, now_s() - t0, bytes);
    printf("# scan entries=%ld value_checksum=%016llx\n", count, (unsigned long long)sum);
    if (count != o->num) printf("# scan NOTE: %ld entries, expected %ld\n", count, o->num);
}

static void usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s --dir D [--num N] [--value-size V] [--key-size 16] [--seed S]\n"
            "          [--sync 0|1] [--benchmarks fillrandom,readrandom,scan]\n"
            "          [--batch 1000] [--reads N/10] [--bloom-bits 10]\n"
            "          [--value-threshold 1024] [--compression none|snappy|zstd]\n"
            "          [--memtable-mb 64] [--compactors 4] [--block-cache-mb 256] [--prefetch 64]\n"
            "          [--blob 0|1] [--blob-min 512]   (accepted, ignored)\n",
            prog);
    exit(2);
}

int main(int argc, char **argv)
{
    bopts o = {NULL, "fillrandom,readrandom,scan", "snappy", 1000000, 0, 16, 128, 0, 1000, 10,
               4, 64, 1024, 64, 256, 1};
    static const struct option lo[] = {
        {"dir", 1, 0, 'd'},       {"num", 1, 0, 'n'},        {"value-size", 1, 0, 'v'},
        {"key-size", 1, 0, 'k'},  {"seed", 1, 0, 's'},       {"sync", 1, 0, 'y'},
        {"benchmarks", 1, 0, 'b'}, {"batch", 1, 0, 'B'},     {"reads", 1, 0, 'r'},
        {"blob", 1, 0, 'l'},      {"blob-min", 1, 0, 'm'},   {"bloom-bits", 1, 0, 'f'},
        {"value-threshold", 1, 0, 't'}, {"compression", 1, 0, 'c'}, {"memtable-mb", 1, 0, 'M'},
        {"compactors", 1, 0, 'C'}, {"block-cache-mb", 1, 0, 'K'}, {"prefetch", 1, 0, 'P'},
        {0, 0, 0, 0}};
    kv_options ko;
    kv_db *db;
    kv_err err;
    kv_status st;
    char *vb, *list, *save = NULL;
    int filled = 0, c;
    pio io0, io1;
    double t0, close_s, logical;
    struct rusage ru;

    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'd': o.dir = optarg; break;
        case 'n': o.num = atol(optarg); break;
        case 'v': o.value_size = atoi(optarg); break;
        case 'k': o.key_size = atoi(optarg); break;
        case 's': o.seed = strtoull(optarg, NULL, 0); break;
        case 'y': o.sync = atoi(optarg); break;
        case 'b': o.benchmarks = optarg; break;
        case 'B': o.batch = atoi(optarg); break;
        case 'r': o.reads = atol(optarg); break;
        case 'l': case 'm': break;
        case 'f': o.bloom_bits = atoi(optarg); break;
        case 't': o.value_threshold = atol(optarg); break;
        case 'c': o.compression = optarg; break;
        case 'M': o.memtable_mb = atol(optarg); break;
        case 'C': o.compactors = atoi(optarg); break;
        case 'K': o.block_cache_mb = atol(optarg); break;
        case 'P': o.prefetch = atoi(optarg); break;
        default: usage(argv[0]);
        }
    }
    if (!o.dir || o.num < 1 || o.key_size < 8 || o.key_size > 64 || o.value_size < 0 ||
        o.value_size > (int)VALBUF_SIZE || o.batch < 1)
        usage(argv[0]);

    kv_options_default(&ko, o.dir);
    ko.sync_writes = 0;
    ko.mem_table_size = o.memtable_mb << 20;
    ko.value_threshold = o.value_threshold;
    ko.num_compactors = o.compactors;
    ko.block_cache_size = o.block_cache_mb << 20;
    ko.bloom_false_positive = o.bloom_bits > 0 ? pow(0.6185, o.bloom_bits) : 0.0;
    if (!strcmp(o.compression, "none")) ko.compression = KV_COMPRESS_NONE;
    else if (!strcmp(o.compression, "zstd")) ko.compression = KV_COMPRESS_ZSTD;
    else if (!strcmp(o.compression, "snappy")) ko.compression = KV_COMPRESS_SNAPPY;
    else usage(argv[0]);
    ko.log_level = KV_LOG_WARNING;

    printf("# kvbench engine=kvsep num=%ld key_size=%d value_size=%d seed=%llu sync=%d batch=%d",
           o.num, o.key_size, o.value_size, (unsigned long long)o.seed, o.sync, o.batch);
    printf(" memtable=%ldMiB compression=%s bloom_fp=%.4f value_threshold=%ld compactors=%d "
           "block_cache=%ldMiB prefetch=%d",
           o.memtable_mb, o.compression, ko.bloom_false_positive, o.value_threshold,
           o.compactors, o.block_cache_mb, o.prefetch);
    printf("\n# name ops/s MB/s micros/op\n");
    fflush(stdout);

    vb = make_valbuf(&o);
    io0 = proc_io();
    st = kv_open(&ko, &db, &err);
    if (st != KV_OK) die("open", st, &err);

    list = strdup(o.benchmarks);
    for (char *b = strtok_r(list, ",", &save); b; b = strtok_r(NULL, ",", &save)) {
        if (!strcmp(b, "fillrandom")) {
            fillrandom(db, &o, vb);
            filled = 1;
        } else if (!strcmp(b, "readrandom")) readrandom(db, &o, vb);
        else if (!strcmp(b, "scan")) scan(db, &o);
        else {
            fprintf(stderr, "unknown benchmark %s\n", b);
            exit(2);
        }
    }
    free(list);

    t0 = now_s();
    st = kv_close(db, &err);
    if (st != KV_OK) die("close", st, &err);
    close_s = now_s() - t0;
    io1 = proc_io();
    du_size = du_alloc = 0;
    nftw(o.dir, du_cb, 32, FTW_PHYS);
    getrusage(RUSAGE_SELF, &ru);
    logical = (double)o.num * (o.key_size + o.value_size);
    printf("close_seconds %.3f\n", close_s);
    printf("disk_write_bytes %llu\n", io1.write_bytes - io0.write_bytes);
    printf("cancelled_write_bytes %llu\n", io1.cancelled - io0.cancelled);
    printf("syscall_write_bytes %llu\n", io1.wchar - io0.wchar);
    printf("dir_size_bytes %llu\n", du_size);
    printf("dir_alloc_bytes %llu\n", du_alloc);
    if (filled)
        printf("write_amp %.3f\nwrite_amp_syscall %.3f\n",
               (double)(io1.write_bytes - io0.write_bytes) / logical,
               (double)(io1.wchar - io0.wchar) / logical);
    else
        printf("write_amp na\nwrite_amp_syscall na\n");
    printf("cpu_user_s %.2f\ncpu_sys_s %.2f\nmax_rss_kb %ld\n",
           ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6,
           ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6, ru.ru_maxrss);
    free(vb);
    return errors ? 3 : 0;
}
