/*
 * iter_merge.c - k-way merge of internal iterators in one direction, with
 * a binary heap of the children that are positioned (see iter.h).  Each
 * positioned child's current key is kept here, so ordering the heap makes
 * no call into the children.
 */
#include <stdlib.h>

#include "err.h"
#include "ikey.h"
#include "iter.h"

struct kv_merge {
    kv_iiter **c;
    int n;
    int reverse;
    int *heap;       /* child indexes, best at heap[0] */
    int hn;
    const uint8_t **key; /* each positioned child's current key */
    size_t *klen;
};

/* Remembers child i's key (it is positioned). */
static void load_key(kv_merge *m, int i)
{
    m->key[i] = m->c[i]->vt->key(m->c[i], &m->klen[i]);
}

/* 1 if child a should come before child b. */
static int before(const kv_merge *m, int a, int b)
{
    int c = kv_ikey_cmp(m->key[a], m->klen[a], m->key[b], m->klen[b]);
    if (c == 0) return a < b;
    return m->reverse ? c > 0 : c < 0;
}

static void sift_down(kv_merge *m, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, best = i, t;
        if (l < m->hn && before(m, m->heap[l], m->heap[best])) best = l;
        if (r < m->hn && before(m, m->heap[r], m->heap[best])) best = r;
        if (best == i) return;
        t = m->heap[i];
        m->heap[i] = m->heap[best];
        m->heap[best] = t;
        i = best;
    }
}

static void rebuild(kv_merge *m)
{
    m->hn = 0;
    for (int i = 0; i < m->n; i++)
        if (m->c[i]->vt->valid(m->c[i])) {
            load_key(m, i);
            m->heap[m->hn++] = i;
        }
    for (int i = m->hn / 2 - 1; i >= 0; i--) sift_down(m, i);
}

kv_merge *kv_merge_new(kv_iiter **children, int n, int reverse)
{
    kv_merge *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->c = malloc(sizeof *m->c * (size_t)(n ? n : 1));
    m->heap = malloc(sizeof *m->heap * (size_t)(n ? n : 1));
    m->key = malloc(sizeof *m->key * (size_t)(n ? n : 1));
    m->klen = malloc(sizeof *m->klen * (size_t)(n ? n : 1));
    if (!m->c || !m->heap || !m->key || !m->klen) {
        free(m->c);
        free(m->heap);
        free(m->key);
        free(m->klen);
        free(m);
        return NULL;
    }
    for (int i = 0; i < n; i++) m->c[i] = children[i];
    m->n = n;
    m->reverse = reverse;
    return m;
}

void kv_merge_free(kv_merge *m)
{
    if (!m) return;
    for (int i = 0; i < m->n; i++) m->c[i]->vt->destroy(m->c[i]);
    free(m->c);
    free(m->heap);
    free(m->key);
    free(m->klen);
    free(m);
}

void kv_merge_rewind(kv_merge *m)
{
    for (int i = 0; i < m->n; i++) {
        if (m->reverse) m->c[i]->vt->last(m->c[i]);
        else m->c[i]->vt->first(m->c[i]);
    }
    rebuild(m);
}

void kv_merge_seek(kv_merge *m, const uint8_t *k, size_t n)
{
    for (int i = 0; i < m->n; i++) {
        if (m->reverse) m->c[i]->vt->seek_for_prev(m->c[i], k, n);
        else m->c[i]->vt->seek(m->c[i], k, n);
    }
    rebuild(m);
}

void kv_merge_next(kv_merge *m)
{
    kv_iiter *top;
    if (!m->hn) return;
    top = m->c[m->heap[0]];
    if (m->reverse) top->vt->prev(top);
    else top->vt->next(top);
    if (!top->vt->valid(top)) m->heap[0] = m->heap[--m->hn];
    else load_key(m, m->heap[0]);
    if (m->hn) sift_down(m, 0);
}

int kv_merge_valid(const kv_merge *m)
{
    return m->hn > 0;
}

const uint8_t *kv_merge_key(const kv_merge *m, size_t *n)
{
    *n = m->klen[m->heap[0]];
    return m->key[m->heap[0]];
}

const uint8_t *kv_merge_value(const kv_merge *m, size_t *n)
{
    return m->c[m->heap[0]]->vt->value(m->c[m->heap[0]], n);
}

kv_status kv_merge_status(const kv_merge *m, kv_err *err)
{
    for (int i = 0; i < m->n; i++) {
        kv_status st = m->c[i]->vt->status(m->c[i], err);
        if (st != KV_OK) return st;
    }
    return KV_OK;
}

/* ---- a merge as a source: one direction, like the pending iterator ---- */

typedef struct merge_iiter {
    kv_iiter base;
    kv_merge *m;
} merge_iiter;

#define MI(i) (((merge_iiter *)(i))->m)
#define CMI(i) (((const merge_iiter *)(i))->m)

static void mi_rewind(kv_iiter *i) { kv_merge_rewind(MI(i)); }
static void mi_seek(kv_iiter *i, const uint8_t *k, size_t n) { kv_merge_seek(MI(i), k, n); }
static void mi_next(kv_iiter *i) { kv_merge_next(MI(i)); }
static int mi_valid(const kv_iiter *i) { return kv_merge_valid(CMI(i)); }
static const uint8_t *mi_key(const kv_iiter *i, size_t *n) { return kv_merge_key(CMI(i), n); }
static const uint8_t *mi_value(const kv_iiter *i, size_t *n) { return kv_merge_value(CMI(i), n); }
static kv_status mi_status(const kv_iiter *i, kv_err *err) { return kv_merge_status(CMI(i), err); }
static void mi_destroy(kv_iiter *i)
{
    kv_merge_free(MI(i));
    free(i);
}

static const kv_iiter_vt merge_iiter_vt = {mi_rewind, mi_rewind, mi_seek,  mi_seek,   mi_next, mi_next,
                                           mi_valid,  mi_key,    mi_value, mi_status, mi_destroy};

kv_iiter *kv_merge_iiter(kv_merge *m)
{
    merge_iiter *mi = calloc(1, sizeof *mi);
    if (!mi) return NULL;
    mi->base.vt = &merge_iiter_vt;
    mi->m = m;
    return &mi->base;
}
