/*
 * sync.c - process-shared, robust locks (see sync.h).
 */
#include "sync.h"

#include <errno.h>
#include <time.h>

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
