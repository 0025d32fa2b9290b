/*
 * sync.h - process-shared mutexes and condition variables.
 *
 * Everything in the shared region is protected by these: they are
 * initialised PTHREAD_PROCESS_SHARED and robust, so they work across the
 * processes attached to one region and a lock whose owner died is
 * recovered (made consistent) instead of deadlocking; the owner_died
 * counter records that it happened.  Condition variables use
 * CLOCK_MONOTONIC for timed waits.
 */
#ifndef KV_SYNC_H
#define KV_SYNC_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

typedef struct kv_mutex {
    pthread_mutex_t m;
    _Atomic uint32_t owner_died;
} kv_mutex;

typedef struct kv_cond {
    pthread_cond_t c;
} kv_cond;

int kv_mutex_init(kv_mutex *m);
void kv_mutex_destroy(kv_mutex *m);
void kv_mutex_lock(kv_mutex *m);
void kv_mutex_unlock(kv_mutex *m);

int kv_cond_init(kv_cond *c);
void kv_cond_destroy(kv_cond *c);
void kv_cond_wait(kv_cond *c, kv_mutex *m);
/* Returns 0 if signalled (or spurious), 1 on timeout. */
int kv_cond_timedwait_ms(kv_cond *c, kv_mutex *m, long ms);
void kv_cond_signal(kv_cond *c);
void kv_cond_broadcast(kv_cond *c);

#endif
