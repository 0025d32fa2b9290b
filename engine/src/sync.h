/*
 * sync.h - process-shared mutexes and condition variables.
 *
 * Everything in the shared region is protected by these: they are
 * initialised PTHREAD_PROCESS_SHARED and robust, so they work across the
 * processes attached to one region and a lock whose owner died is
 * recovered (made consistent) instead of deadlocking; the owner_died
 * counter records that it happened.  Condition variables use
 * CLOCK_MONOTONIC for timed waits.  Wake words (shared futexes) wake one
 * named sleeper.
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

/* A wake word: one sleeper woken by name, in any attached process (a
 * shared futex), where a condition variable would wake every waiter.
 * The sleeper reads the word (under the lock that guards its condition),
 * drops the lock and calls kv_wake_wait with what it read; it returns at
 * once if the word has changed since, else when woken (or spuriously).
 * The waker changes the condition and calls kv_wake_bump under the lock,
 * then kv_wake_post, which may come after the lock is dropped (a post to
 * a word whose memory was reused meanwhile only wakes a sleeper
 * spuriously). */
void kv_wake_wait(_Atomic uint32_t *word, uint32_t seen);
void kv_wake_bump(_Atomic uint32_t *word);
void kv_wake_post(_Atomic uint32_t *word);

#endif
