/*
 * slbench.c - the arena skiplist's insert rate, alone (no transaction,
 * no write queue): what a memtable apply or a transaction's pending
 * writes spend per key in kv_sl_put.
 *
 *   slbench [--n N] [--rounds R] [--random] [--arena-mb M]
 *       R rounds of N inserts into a fresh M MiB arena (default 700000
 *       keys, 5 rounds, 64 MiB): keys shaped like a kvsep_fdw row key
 *       (2-byte table prefix, 8-byte big-endian id, 8-byte version), in
 *       id order (a bulk load) or, with --random, in random order; 24-byte
 *       value structs.  Prints ns per insert for each round and the
 *       fastest round (the least disturbed on a noisy machine).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "skiplist.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    long n = 700000, rounds = 5, arena_mb = 64;
    int random_order = 0;
    double best = 0;
    uint8_t key[18], vs[24];
    void *mem;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--n") && next) n = atol(argv[++i]);
        else if (!strcmp(a, "--rounds") && next) rounds = atol(argv[++i]);
        else if (!strcmp(a, "--arena-mb") && next) arena_mb = atol(argv[++i]);
        else if (!strcmp(a, "--random")) random_order = 1;
        else {
            fprintf(stderr, "usage: slbench [--n N] [--rounds R] [--random] [--arena-mb M]\n");
            return 2;
        }
    }
    if (n < 1 || rounds < 1 || arena_mb < 1 || arena_mb > 4000) {
        fprintf(stderr, "slbench: N and R must be positive, M in 1..4000\n");
        return 2;
    }
    mem = malloc((size_t)arena_mb << 20);
    if (!mem) return 1;
    memset(vs, 7, sizeof vs);
    for (long r = 0; r < rounds; r++) {
        kv_sl *sl;
        uint64_t x = 88172645463325252ull;
        long done = 0;
        double t0, ns;
        memset(mem, 0, (size_t)arena_mb << 20); /* pages touched before timing */
        sl = kv_sl_init(mem, (uint64_t)arena_mb << 20, 42);
        t0 = now_s();
        for (; done < n; done++) {
            uint64_t id = (uint64_t)done;
            if (random_order) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                id = x;
            }
            key[0] = 0x80;
            key[1] = 0x01;
            for (int b = 0; b < 8; b++) key[2 + b] = (uint8_t)(id >> (56 - 8 * b));
            memset(key + 10, 0xff, 8);
            if (kv_sl_put(sl, key, sizeof key, vs, sizeof vs) != 0) break; /* arena full */
        }
        ns = (now_s() - t0) * 1e9 / (double)(done ? done : 1);
        printf("round %ld: %ld inserts, %.1f ns per insert\n", r + 1, done, ns);
        if (!r || ns < best) best = ns;
    }
    printf("fastest round: %.1f ns per insert\n", best);
    free(mem);
    return 0;
}
