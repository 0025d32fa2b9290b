/*
 * sync.c - process-shared, robust locks and wake words (see sync.h).
 */
#include "sync.h"

#include <errno.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int kv_mutex_init(kv_mutex *m)
{
    pthread_mutexattr_t a;
    int r;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
#ifndef KV_NO_ROBUST
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
#endif
    r = pthread_mutex_init(&m->m, &a);
    pthread_mutexattr_destroy(&a);
    atomic_store(&m->owner_died, 0);
    return r;
}

void kv_mutex_destroy(kv_mutex *m)
{
    pthread_mutex_destroy(&m->m);
}

void kv_mutex_lock(kv_mutex *m)
{
    int r = pthread_mutex_lock(&m->m);
    if (r == EOWNERDEAD) {
        atomic_fetch_add(&m->owner_died, 1);
        pthread_mutex_consistent(&m->m);
    }
}

void kv_mutex_unlock(kv_mutex *m)
{
    pthread_mutex_unlock(&m->m);
}

int kv_cond_init(kv_cond *c)
{
    pthread_condattr_t a;
    int r;
    pthread_condattr_init(&a);
    pthread_condattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    r = pthread_cond_init(&c->c, &a);
    pthread_condattr_destroy(&a);
    return r;
}

void kv_cond_destroy(kv_cond *c)
{
    pthread_cond_destroy(&c->c);
}

void kv_cond_wait(kv_cond *c, kv_mutex *m)
{
    int r = pthread_cond_wait(&c->c, &m->m);
    if (r == EOWNERDEAD) {
        atomic_fetch_add(&m->owner_died, 1);
        pthread_mutex_consistent(&m->m);
    }
}

int kv_cond_timedwait_ms(kv_cond *c, kv_mutex *m, long ms)
{
    struct timespec ts;
    int r;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    r = pthread_cond_timedwait(&c->c, &m->m, &ts);
    if (r == EOWNERDEAD) {
        atomic_fetch_add(&m->owner_died, 1);
        pthread_mutex_consistent(&m->m);
    }
    return r == ETIMEDOUT;
}

void kv_cond_signal(kv_cond *c)
{
    pthread_cond_signal(&c->c);
}

void kv_cond_broadcast(kv_cond *c)
{
    pthread_cond_broadcast(&c->c);
}

void kv_wake_wait(_Atomic uint32_t *word, uint32_t seen)
{
    /* EAGAIN (the word changed) and EINTR are returns like a wake-up */
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT, seen, NULL, NULL, 0);
}

void kv_wake_bump(_Atomic uint32_t *word)
{
    atomic_fetch_add_explicit(word, 1, memory_order_release);
}

void kv_wake_post(_Atomic uint32_t *word)
{
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, 1, NULL, NULL, 0);
}
