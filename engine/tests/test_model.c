/*
 * test_model.c - the model (metamorphic) test: random operations under
 * randomized options, checked against a simple oracle.
 *
 * Each round draws options (memtable and table sizes, levels, compression,
 * bloom, checksum mode, compactors...) and a pool of keys, then runs a
 * random mix of puts, deletes, multi-key batches, point reads, iterator
 * scans (random bounds, prefix, direction), snapshots read later at their
 * version, flushes, full compactions and close/reopen.  The oracle is an
 * array of current values per key plus frozen copies for snapshots.
 * Replay a failure with KV_TEST_SEED=<seed printed at start>.
 */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define MAX_SNAPS 4

typedef struct model {
    int nkeys;
    uint8_t **keys;     /* sorted pool */
    size_t *klen;
    char **val;         /* current value per key, NULL = absent */
    size_t *vlen;
    struct {
        kv_snapshot *snap;
        char **val;
        size_t *vlen;
    } snaps[MAX_SNAPS];
} model;

static int key_cmp(const void *a, const void *b, size_t na, size_t nb)
{
    size_t n = na < nb ? na : nb;
    int c = memcmp(a, b, n);
    return c ? c : (na < nb ? -1 : na > nb);
}

static void model_init(model *m, tu_rng *r, int nkeys)
{
    memset(m, 0, sizeof *m);
    m->nkeys = nkeys;
    m->keys = calloc((size_t)nkeys, sizeof *m->keys);
    m->klen = calloc((size_t)nkeys, sizeof *m->klen);
    m->val = calloc((size_t)nkeys, sizeof *m->val);
    m->vlen = calloc((size_t)nkeys, sizeof *m->vlen);
    for (int i = 0; i < nkeys; i++) {
        for (;;) {
            /* short shared prefixes make prefix scans and key compression matter */
            size_t len = 1 + tu_randn(r, 3) + tu_randn(r, tu_randn(r, 8) == 0 ? 300 : 12);
            uint8_t *k = malloc(len);
            int dup = 0;
            tu_randbytes(r, k, len);
            k[0] = (uint8_t)('a' + tu_randn(r, 4));
            if (len > 1) k[1] = (uint8_t)('a' + tu_randn(r, 4));
            for (int j = 0; j < i && !dup; j++) dup = !key_cmp(m->keys[j], k, m->klen[j], len);
            if (dup) {
                free(k);
                continue;
            }
            m->keys[i] = k;
            m->klen[i] = len;
            break;
        }
    }
    /* sort the pool (insertion sort, small n) */
    for (int i = 1; i < nkeys; i++) {
        uint8_t *k = m->keys[i];
        size_t l = m->klen[i];
        int j = i;
        while (j > 0 && key_cmp(m->keys[j - 1], k, m->klen[j - 1], l) > 0) {
            m->keys[j] = m->keys[j - 1];
            m->klen[j] = m->klen[j - 1];
            j--;
        }
        m->keys[j] = k;
        m->klen[j] = l;
    }
}

static void free_vals(char **v, int n)
{
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

static void model_free(model *m)
{
    for (int i = 0; i < m->nkeys; i++) free(m->keys[i]);
    free(m->keys);
    free(m->klen);
    free_vals(m->val, m->nkeys);
    free(m->vlen);
    for (int s = 0; s < MAX_SNAPS; s++)
        if (m->snaps[s].val) {
            kv_snapshot_release(m->snaps[s].snap);
            free_vals(m->snaps[s].val, m->nkeys);
            free(m->snaps[s].vlen);
        }
}

static void random_options(kv_options *o, const char *dir, tu_rng *r)
{
    static const int64_t mt[] = {64 << 10, 128 << 10, 256 << 10, 1 << 20};
    kv_options_default(o, dir);
    o->mem_table_size = mt[tu_randn(r, 4)];
    o->num_memtables = 1 + (int)tu_randn(r, 4);
    o->block_size = 256 << tu_randn(r, 6);
    o->compression = (kv_compression)tu_randn(r, 3);
    o->bloom_false_positive = tu_randn(r, 4) == 0 ? 0.0 : 0.01;
    o->base_table_size = (16 << 10) << tu_randn(r, 4);
    o->base_level_size = o->base_table_size * (1 + (int64_t)tu_randn(r, 4));
    o->level_size_multiplier = 2 + (int)tu_randn(r, 9);
    o->table_size_multiplier = 1 + (int)tu_randn(r, 3);
    o->max_levels = 3 + (int)tu_randn(r, 5);
    o->num_level_zero_tables = 1 + (int)tu_randn(r, 5);
    o->num_level_zero_tables_stall = o->num_level_zero_tables + 1 + (int)tu_randn(r, 6);
    o->num_compactors = (int)tu_randn(r, 4);
    o->checksum_verification_mode = (kv_checksum_mode)tu_randn(r, 4);
    o->num_versions_to_keep = 1 + (int)tu_randn(r, 3);
    o->block_cache_size = tu_randn(r, 2) ? (1 << 20) : 0;
    {
        static const int64_t vt[] = {0, 1, 32, 256, 1024, 1 << 20};
        o->value_threshold = vt[tu_randn(r, 6)];
        if (o->value_threshold > o->mem_table_size / 4) o->value_threshold = 1024;
    }
    o->value_log_file_size = 1 << 20;
    o->value_log_max_entries = 20 + (uint32_t)tu_randn(r, 2000);
    o->verify_value_checksum = (int)tu_randn(r, 2);
    o->auto_vlog_gc = (int)tu_randn(r, 2);
    o->auto_vlog_gc_ratio = 0.2 + 0.6 * (double)tu_randn(r, 100) / 100.0;
    o->compact_l0_on_close = (int)tu_randn(r, 2);
    o->log_level = KV_LOG_ERROR;
    if (getenv("KV_MODEL_NO_BG")) o->num_compactors = 0; /* deterministic replay */
}

static void check_get(kv_db *db, model *m, int i, uint64_t version, char **val, size_t *vlen,
                      kv_buf *buf)
{
    kv_read_options ro = {version, 1};
    kv_err err;
    kv_status st = kv_get(db, &ro, m->keys[i], m->klen[i], buf, NULL, &err);
    if (!val[i]) {
        ck_assert_msg(st == KV_NOT_FOUND, "key #%d at version %llu: want absent, got %s (%s)", i,
                      (unsigned long long)version, kv_status_str(st), err.msg);
    } else {
        ck_assert_msg(st == KV_OK, "key #%d at version %llu: %s (%s)", i,
                      (unsigned long long)version, kv_status_str(st), err.msg);
        ck_assert_msg(buf->len == vlen[i] &&
                          (vlen[i] == 0 || memcmp(buf->data, val[i], vlen[i]) == 0),
                      "key #%d at version %llu: wrong value (%zu bytes, want %zu)", i,
                      (unsigned long long)version, buf->len, vlen[i]);
    }
}

/* A random scan compared with the oracle. */
static void check_scan(kv_db *db, model *m, tu_rng *r, uint64_t version, char **val,
                       size_t *vlen)
{
    kv_iter_options io;
    kv_iter *it;
    kv_err err;
    int lo = -1, hi = -1, pre = -1, prefix_len = 0, steps = 0, max_steps;
    int idx, dir, seek_to = -1;
    memset(&io, 0, sizeof io);
    io.version = version;
    io.reverse = (int)tu_randn(r, 2);
    io.fill_cache = (int)tu_randn(r, 2);
    io.prefetch_values = tu_randn(r, 3) == 0 ? 1 + (int)tu_randn(r, 16) : 0;
    if (tu_randn(r, 3) == 0) {
        lo = (int)tu_randn(r, (uint64_t)m->nkeys);
        io.lower = m->keys[lo];
        io.lower_len = m->klen[lo];
    }
    if (tu_randn(r, 3) == 0) {
        hi = (int)tu_randn(r, (uint64_t)m->nkeys);
        io.upper = m->keys[hi];
        io.upper_len = m->klen[hi];
    }
    if (tu_randn(r, 4) == 0) {
        pre = (int)tu_randn(r, (uint64_t)m->nkeys);
        prefix_len = 1 + (int)tu_randn(r, m->klen[pre] < 3 ? m->klen[pre] : 3);
        io.prefix = m->keys[pre];
        io.prefix_len = (size_t)prefix_len;
    }
    TU_OK(kv_iter_new(db, &io, &it, &err), &err);
    max_steps = 50 + (int)tu_randn(r, (uint64_t)m->nkeys);
    /* optionally start with a seek to a random pool key */
    if (tu_randn(r, 2)) {
        int s = (int)tu_randn(r, (uint64_t)m->nkeys);
        kv_iter_seek(it, m->keys[s], m->klen[s]);
        idx = s;
        seek_to = s;
        if (io.reverse) {
            /* last key <= s */
        } else {
            /* first key >= s */
        }
    } else {
        kv_iter_rewind(it);
        idx = io.reverse ? m->nkeys - 1 : 0;
    }
    dir = io.reverse ? -1 : 1;
    for (;; idx += dir) {
        /* advance the oracle to the next visible key in range */
        while (idx >= 0 && idx < m->nkeys) {
            int ok = val[idx] != NULL;
            if (lo >= 0 && key_cmp(m->keys[idx], m->keys[lo], m->klen[idx], m->klen[lo]) < 0)
                ok = 0;
            if (hi >= 0 && key_cmp(m->keys[idx], m->keys[hi], m->klen[idx], m->klen[hi]) >= 0)
                ok = 0;
            if (pre >= 0 && (m->klen[idx] < (size_t)prefix_len ||
                             memcmp(m->keys[idx], m->keys[pre], (size_t)prefix_len) != 0))
                ok = 0;
            if (ok) break;
            idx += dir;
        }
        if (idx < 0 || idx >= m->nkeys || steps++ >= max_steps) break;
        ck_assert_msg(kv_iter_valid(it), "iterator ended early; oracle has key #%d (status %s)",
                      idx, kv_status_str(kv_iter_status(it, &err)));
        {
            size_t kl, vl;
            const void *k = kv_iter_key(it, &kl), *v;
            if (!(kl == m->klen[idx] && memcmp(k, m->keys[idx], kl) == 0)) {
                int got = -1;
                for (int q = 0; q < m->nkeys; q++)
                    if (kl == m->klen[q] && !memcmp(k, m->keys[q], kl)) got = q;
                ck_abort_msg("iterator at step %d gave key #%d, oracle wants #%d (reverse=%d "
                             "lo=%d hi=%d prefix=#%d/%d version=%llu seek=%d)",
                             steps, got, idx, io.reverse, lo, hi, pre, prefix_len,
                             (unsigned long long)version, seek_to);
            }
            TU_OK(kv_iter_value(it, &v, &vl, &err), &err);
            ck_assert_msg(vl == vlen[idx] && (vl == 0 || memcmp(v, val[idx], vl) == 0),
                          "iterator value of key #%d differs", idx);
        }
        kv_iter_next(it);
    }
    if (steps <= max_steps && kv_iter_valid(it)) {
        size_t kl;
        const void *k = kv_iter_key(it, &kl);
        int got = -1;
        for (int q = 0; q < m->nkeys; q++)
            if (kl == m->klen[q] && !memcmp(k, m->keys[q], kl)) got = q;
        ck_abort_msg("iterator has key #%d (oracle value %s) after the oracle ended at step %d "
                     "(reverse=%d lo=%d hi=%d prefix=#%d/%d version=%llu seek=%d)",
                     got, got >= 0 && val[got] ? "present" : "absent", steps, io.reverse, lo, hi,
                     pre, prefix_len, (unsigned long long)version, seek_to);
    }
    TU_OK(kv_iter_status(it, &err), &err);
    kv_iter_free(it);
}

/* First pool index >= (forward) or <= (reverse) the seek key was handled
 * by starting idx at the seek position: pool keys are the only keys. */

static void run_round(uint64_t seed, long ops)
{
    tu_rng r;
    char *dir = tu_mkdtemp("model");
    kv_options o;
    kv_db *db;
    kv_err err;
    kv_buf buf = {0};
    model m;
    char *vbuf = malloc(70000);
    long i;

    tu_rng_init(&r, seed);
    random_options(&o, dir, &r);
    model_init(&m, &r, 50 + (int)tu_randn(&r, 400));
    TU_OK(kv_open(&o, &db, &err), &err);
    for (i = 0; i < ops; i++) {
        uint64_t op = tu_randn(&r, 1000);
        if (getenv("KV_MODEL_TRACE")) fprintf(stderr, "op %ld: %llu\n", i, (unsigned long long)op);
        if (op < 550) { /* batch of puts/deletes */
            kv_batch *b = kv_batch_new();
            int n = 1 + (int)(tu_randn(&r, 4) == 0 ? tu_randn(&r, 40) : 0);
            kv_write_options wo = {(int)(tu_randn(&r, 50) == 0)};
            int *touched = malloc(sizeof(int) * (size_t)n);
            char **nv = calloc((size_t)n, sizeof *nv);
            size_t *nl = calloc((size_t)n, sizeof *nl);
            int *isdel = calloc((size_t)n, sizeof *isdel);
            for (int j = 0; j < n; j++) {
                int k = (int)tu_randn(&r, (uint64_t)m.nkeys);
                touched[j] = k;
                if (tu_randn(&r, 4) == 0) {
                    isdel[j] = 1;
                    TU_OK(kv_batch_delete(b, m.keys[k], m.klen[k], &err), &err);
                } else {
                    size_t vl = tu_randn(&r, 10) == 0 ? tu_randn(&r, 5000) : tu_randn(&r, 100);
                    tu_randbytes(&r, vbuf, vl);
                    nv[j] = malloc(vl ? vl : 1);
                    memcpy(nv[j], vbuf, vl);
                    nl[j] = vl;
                    TU_OK(kv_batch_put(b, m.keys[k], m.klen[k], vbuf, vl, &err), &err);
                }
            }
            TU_OK(kv_write(db, &wo, b, NULL, &err), &err);
            for (int j = 0; j < n; j++) { /* later entries win, as in the engine */
                int k = touched[j];
                free(m.val[k]);
                m.val[k] = isdel[j] ? NULL : nv[j];
                m.vlen[k] = nl[j];
                if (isdel[j]) free(nv[j]);
            }
            free(touched);
            free(nv);
            free(nl);
            free(isdel);
            kv_batch_free(b);
        } else if (op < 800) {
            check_get(db, &m, (int)tu_randn(&r, (uint64_t)m.nkeys), 0, m.val, m.vlen, &buf);
        } else if (op < 850) {
            check_scan(db, &m, &r, 0, m.val, m.vlen);
        } else if (op < 880) { /* take or check a snapshot */
            int s = (int)tu_randn(&r, MAX_SNAPS);
            if (!m.snaps[s].val) {
                TU_OK(kv_snapshot_acquire(db, &m.snaps[s].snap, &err), &err);
                m.snaps[s].val = calloc((size_t)m.nkeys, sizeof(char *));
                m.snaps[s].vlen = calloc((size_t)m.nkeys, sizeof(size_t));
                for (int k = 0; k < m.nkeys; k++)
                    if (m.val[k]) {
                        m.snaps[s].val[k] = malloc(m.vlen[k] ? m.vlen[k] : 1);
                        memcpy(m.snaps[s].val[k], m.val[k], m.vlen[k]);
                        m.snaps[s].vlen[k] = m.vlen[k];
                    }
            } else {
                uint64_t v = kv_snapshot_version(m.snaps[s].snap);
                for (int q = 0; q < 10; q++)
                    check_get(db, &m, (int)tu_randn(&r, (uint64_t)m.nkeys), v, m.snaps[s].val,
                              m.snaps[s].vlen, &buf);
                check_scan(db, &m, &r, v, m.snaps[s].val, m.snaps[s].vlen);
                if (tu_randn(&r, 2)) {
                    kv_snapshot_release(m.snaps[s].snap);
                    free_vals(m.snaps[s].val, m.nkeys);
                    free(m.snaps[s].vlen);
                    m.snaps[s].val = NULL;
                }
            }
        } else if (op < 900) {
            TU_OK(kv_flush(db, &err), &err);
        } else if (op < 905) {
            TU_OK(kv_compact_all(db, &err), &err);
        } else if (op < 908) { /* value-log GC, any ratio */
            kv_status st = kv_run_value_log_gc(db, 0.05 + 0.9 * (double)tu_randn(&r, 100) / 100.0,
                                               &err);
            ck_assert_msg(st == KV_OK || st == KV_NO_REWRITE || st == KV_BUSY, "gc: %s",
                          err.msg);
        } else if (op < 915) { /* close and reopen: snapshots end */
            for (int s = 0; s < MAX_SNAPS; s++)
                if (m.snaps[s].val) {
                    kv_snapshot_release(m.snaps[s].snap);
                    free_vals(m.snaps[s].val, m.nkeys);
                    free(m.snaps[s].vlen);
                    m.snaps[s].val = NULL;
                }
            TU_OK(kv_close(db, &err), &err);
            TU_OK(kv_open(&o, &db, &err), &err);
        } else {
            /* a full point-read sweep every so often */
            if (tu_randn(&r, 20) == 0)
                for (int k = 0; k < m.nkeys; k++) check_get(db, &m, k, 0, m.val, m.vlen, &buf);
        }
    }
    for (int k = 0; k < m.nkeys; k++) check_get(db, &m, k, 0, m.val, m.vlen, &buf);
    for (int s = 0; s < MAX_SNAPS; s++)
        if (m.snaps[s].val) {
            kv_snapshot_release(m.snaps[s].snap);
            free_vals(m.snaps[s].val, m.nkeys);
            free(m.snaps[s].vlen);
            m.snaps[s].val = NULL;
        }
    TU_OK(kv_close(db, &err), &err);
    /* everything survives a final reopen */
    TU_OK(kv_open(&o, &db, &err), &err);
    for (int k = 0; k < m.nkeys; k++) check_get(db, &m, k, 0, m.val, m.vlen, &buf);
    TU_OK(kv_close(db, &err), &err);
    kv_buf_free(&buf);
    model_free(&m);
    free(vbuf);
    tu_rmdir(dir);
    free(dir);
}

START_TEST(test_model_rounds)
{
    uint64_t seed = tu_seed();
    long rounds = tu_scale(12);
    for (long i = 0; i < rounds; i++) {
        uint64_t s = seed + (uint64_t)i * 1000003u;
        fprintf(stderr, "# model round %ld seed %llu\n", i, (unsigned long long)s);
        run_round(s, tu_scale(3000));
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("model");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_model_rounds);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
