/*
 * test_fault.c - failed writes and fsyncs, full disks and power loss,
 * through the fault-injecting env (env_fault.h).
 *
 * The contract: the first failure becomes a sticky background error that
 * every later write returns (LevelDB's rule: never retry an fsync), the
 * failing write is not acknowledged, nothing already acknowledged is lost,
 * and reopening with a healthy disk gives a consistent database.  A power
 * cut keeps exactly what was synced: every write acknowledged with sync
 * survives.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "env_fault.h"
#include "testutil.h"

static kv_status put_batch(kv_db *db, int batch, int sync, kv_err *err)
{
    kv_batch *b = kv_batch_new();
    kv_write_options wo = {sync};
    char k[32], v[128];
    kv_status st;
    for (int i = 0; i < 10; i++) {
        snprintf(k, sizeof k, "b%06d-%d", batch, i);
        snprintf(v, sizeof v, "value-%06d-%d-%s", batch, i, "abcdefghijklmnopqrstuvwxyz0123456789");
        kv_batch_put(b, k, strlen(k), v, strlen(v), NULL);
    }
    st = kv_write(db, &wo, b, NULL, err);
    kv_batch_free(b);
    return st;
}

/* 10 = whole batch present, 0 = absent; anything else fails the test. */
static int batch_present(kv_db *db, int batch)
{
    kv_buf buf = {0};
    char k[32], v[128];
    int n = 0;
    kv_err err;
    for (int i = 0; i < 10; i++) {
        kv_status st;
        snprintf(k, sizeof k, "b%06d-%d", batch, i);
        snprintf(v, sizeof v, "value-%06d-%d-%s", batch, i, "abcdefghijklmnopqrstuvwxyz0123456789");
        st = kv_get(db, NULL, k, strlen(k), &buf, NULL, &err);
        ck_assert_msg(st == KV_OK || st == KV_NOT_FOUND, "get: %s", err.msg);
        if (st == KV_OK) {
            ck_assert(buf.len == strlen(v) && !memcmp(buf.data, v, buf.len));
            n++;
        }
    }
    kv_buf_free(&buf);
    ck_assert_msg(n == 0 || n == 10, "batch %d partly present (%d keys)", batch, n);
    return n == 10;
}

static void small(kv_options *o, const char *dir, kv_env *env)
{
    tu_small_options(o, dir);
    o->mem_table_size = 64 << 10;
    o->num_memtables = 2;
    o->base_table_size = 32 << 10;
    o->base_level_size = 128 << 10;
    o->num_level_zero_tables = 2;
    o->num_level_zero_tables_stall = 4;
    o->env = env;
    o->log_level = KV_LOG_ERROR;
}

/* Writes until the injected fault hits; returns the number of acked
 * batches (all before the failing one). */
static int write_until_failure(kv_db *db, int sync, int max, kv_status *fail, kv_err *err)
{
    for (int i = 0; i < max; i++) {
        kv_status st = put_batch(db, i, sync, err);
        if (st != KV_OK) {
            *fail = st;
            return i;
        }
    }
    *fail = KV_OK;
    return max;
}

static void check_reopen(const char *dir, int acked, int failed_batch)
{
    kv_options o;
    kv_db *db;
    kv_err err;
    small(&o, dir, NULL);
    TU_OK(kv_open(&o, &db, &err), &err);
    for (int i = 0; i < acked; i++) ck_assert_msg(batch_present(db, i), "acked batch %d lost", i);
    if (failed_batch >= 0) batch_present(db, failed_batch); /* all or nothing */
    TU_OK(kv_close(db, &err), &err);
}

static void run_fault(kv_fault_op op, const char *substr, int err_no, long after, int sync,
                      kv_status want)
{
    char *dir = tu_mkdtemp("fault");
    kv_env *env = kv_env_fault_new(NULL);
    kv_options o;
    kv_db *db;
    kv_err err;
    kv_status fail;
    int acked;
    small(&o, dir, env);
    TU_OK(kv_open(&o, &db, &err), &err);
    kv_env_fault_set(env, op, after, err_no, substr);
    acked = write_until_failure(db, sync, 3000, &fail, &err);
    if (fail == KV_OK) { /* background failure (flush/compaction): make it show */
        kv_status st = kv_flush(db, &err);
        ck_assert_msg(st != KV_OK, "fault on %s never surfaced", substr ? substr : "*");
        fail = st;
    }
    ck_assert_msg(fail == want, "failure status %s, want %s (%s)", kv_status_str(fail),
                  kv_status_str(want), err.msg);
    ck_assert(kv_env_fault_failures(env, op) > 0);
    /* sticky: the disk is healthy again but writes keep failing */
    kv_env_fault_set(env, op, -1, 0, NULL);
    ck_assert_msg(put_batch(db, 99999, 0, &err) == want, "error was not sticky: %s", err.msg);
    TU_ST(want, kv_background_error(db, &err), &err);
    kv_close(db, &err);
    kv_env_fault_free(env);
    check_reopen(dir, acked, acked);
    tu_rmdir(dir);
    free(dir);
}

START_TEST(test_wal_write_fails)
{
    run_fault(KV_FAULT_WRITE, ".mem", EIO, 200, 0, KV_IO);
}
END_TEST

START_TEST(test_wal_sync_fails)
{
    run_fault(KV_FAULT_SYNC, ".mem", EIO, 30, 1, KV_IO);
}
END_TEST

START_TEST(test_disk_full)
{
    run_fault(KV_FAULT_WRITE, ".mem", ENOSPC, 150, 0, KV_NO_SPACE);
}
END_TEST

START_TEST(test_flush_fails)
{
    run_fault(KV_FAULT_WRITE, ".sst", EIO, 0, 0, KV_IO);
}
END_TEST

START_TEST(test_compaction_fails)
{
    /* the first few tables (flushes) succeed; a later one fails, which
     * with these sizes is soon a compaction output */
    run_fault(KV_FAULT_WRITE, ".sst", EIO, 40, 0, KV_IO);
}
END_TEST

START_TEST(test_manifest_append_fails)
{
    run_fault(KV_FAULT_SYNC, "MANIFEST", EIO, 0, 0, KV_IO);
}
END_TEST

/* Power loss: only synced data survives, and all synced data survives.
 * threshold: values at least this long go to the value log; one write in
 * sync_one_in asks for sync. */
static void run_power_cut(size_t threshold, int sync_one_in)
{
    long rounds = tu_scale(8);
    tu_rng r;
    tu_rng_init(&r, tu_seed());
    for (long round = 0; round < rounds; round++) {
        char *dir = tu_mkdtemp("power");
        kv_env *env = kv_env_fault_new(NULL);
        kv_options o;
        kv_db *db;
        kv_err err;
        int n = 200 + (int)tu_randn(&r, 1500), last_synced = -1;
        small(&o, dir, env);
        o.value_threshold = threshold;
        TU_OK(kv_open(&o, &db, &err), &err);
        for (int i = 0; i < n; i++) {
            int sync = tu_randn(&r, (uint64_t)sync_one_in) == 0;
            TU_OK(put_batch(db, i, sync, &err), &err);
            if (sync) last_synced = i;
            if (tu_randn(&r, 300) == 0) TU_OK(kv_flush(db, &err), &err);
        }
        kv_env_fault_power_cut(env);
        kv_close(db, &err); /* fails: the machine is off */
        TU_OK(kv_env_fault_drop_unsynced(env, &err), &err);
        kv_env_fault_free(env);
        /* a synced write makes every earlier write durable too (one log) */
        check_reopen(dir, last_synced + 1, -1);
        tu_rmdir(dir);
        free(dir);
    }
}

START_TEST(test_power_cut)
{
    run_power_cut(1 << 20, 10);
}
END_TEST

/* Values in the value log: synced groups that carry them inline in the
 * WAL (no vlog fsync), synced groups that sync the vlog first because an
 * unsynced record points into it, and flushes that sync it. */
START_TEST(test_power_cut_vlog)
{
    run_power_cut(16, 10);
    run_power_cut(16, 2);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("fault");
    TCase *tc = tcase_create("fault");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_wal_write_fails);
    tcase_add_test(tc, test_wal_sync_fails);
    tcase_add_test(tc, test_disk_full);
    tcase_add_test(tc, test_flush_fails);
    tcase_add_test(tc, test_compaction_fails);
    tcase_add_test(tc, test_manifest_append_fails);
    tcase_add_test(tc, test_power_cut);
    tcase_add_test(tc, test_power_cut_vlog);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
