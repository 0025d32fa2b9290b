/*
 * env_fault.h - a kv_env that wraps another and injects faults, for tests.
 *
 * It can fail the Nth write, sync, open or remove (optionally only on paths
 * containing a substring) with a chosen errno, and it simulates an OS crash:
 * kv_env_fault_power_cut() makes every later mutating call fail, and
 * kv_env_fault_drop_unsynced() then truncates each file to the bytes that
 * were synced (and deletes files created since their directory was last
 * synced), leaving the disk as a power loss could have.
 */
#ifndef KV_ENV_FAULT_H
#define KV_ENV_FAULT_H

#include "env.h"

typedef enum kv_fault_op {
    KV_FAULT_WRITE = 0,
    KV_FAULT_SYNC = 1,
    KV_FAULT_OPEN = 2,
    KV_FAULT_REMOVE = 3,
    KV_FAULT_NOPS = 4
} kv_fault_op;

kv_env *kv_env_fault_new(kv_env *inner);
void kv_env_fault_free(kv_env *env);

/* After `after` more successful calls of op (on paths containing substr, or
 * any path if NULL), every further call fails with errno err_no (EIO,
 * ENOSPC...) until cleared.  after < 0 clears the fault. */
void kv_env_fault_set(kv_env *env, kv_fault_op op, long after, int err_no, const char *substr);

/* How many calls of op have failed so far. */
long kv_env_fault_failures(kv_env *env, kv_fault_op op);

/* From now on every write, sync, truncate, rename, remove and create fails
 * with EIO (the machine lost power). */
void kv_env_fault_power_cut(kv_env *env);

/* Restores power and rolls every file back to its synced state. */
kv_status kv_env_fault_drop_unsynced(kv_env *env, kv_err *err);

#endif
