/*
 * skiplist.c - arena skiplist (see skiplist.h for the contract and
 * invariants).  Node layout inside the arena:
 *
 *   u64 value   (value offset << 32 | value length), atomic
 *   u32 key offset, u32 key length, u16 height, u16 pad
 *   u32 tower[height]  next-node offsets per level, atomic
 *
 * Nodes are allocated with only the tower levels they use.
 */
#include "skiplist.h"

#include <string.h>

#include "ikey.h"

typedef struct sl_node {
    _Atomic uint64_t value;
    uint32_t key_off;
    uint32_t key_len;
    uint16_t height;
    uint16_t pad;
    _Atomic uint32_t tower[KV_SL_MAX_HEIGHT];
} sl_node;

#define NODE_HDR offsetof(sl_node, tower)

static inline sl_node *node_at(const kv_sl *sl, uint32_t off)
{
    return (sl_node *)((char *)sl + off);
}

static inline const uint8_t *bytes_at(const kv_sl *sl, uint32_t off)
{
    return (const uint8_t *)sl + off;
}

static inline uint32_t next_of(const kv_sl *sl, uint32_t node, int level)
{
    return atomic_load_explicit(&node_at(sl, node)->tower[level], memory_order_acquire);
}

size_t kv_sl_put_cost(size_t klen, size_t vlen)
{
    return NODE_HDR + 4 * KV_SL_MAX_HEIGHT + 8 + klen + vlen;
}

/* Bump-allocates n bytes aligned to align; 0 if full.  Writer only. */
static uint32_t arena_alloc(kv_sl *sl, size_t n, size_t align)
{
    uint64_t used = atomic_load_explicit(&sl->used, memory_order_relaxed);
    uint64_t off = (used + align - 1) & ~(uint64_t)(align - 1);
    if (off + n > sl->cap) return 0;
    atomic_store_explicit(&sl->used, off + n, memory_order_release);
    return (uint32_t)off;
}

kv_sl *kv_sl_init(void *mem, uint64_t cap, uint64_t seed)
{
    kv_sl *sl = mem;
    sl_node *head;
    memset(sl, 0, sizeof *sl);
    sl->cap = cap;
    atomic_store(&sl->used, sizeof *sl);
    sl->rng = seed | 1;
    sl->head = arena_alloc(sl, NODE_HDR + 4 * KV_SL_MAX_HEIGHT, 8);
    head = node_at(sl, sl->head);
    memset(head, 0, NODE_HDR + 4 * KV_SL_MAX_HEIGHT);
    head->height = KV_SL_MAX_HEIGHT;
    atomic_store(&sl->height, 1);
    atomic_store(&sl->count, 0);
    atomic_store(&sl->data_bytes, 0);
    sl->finger_valid = 0;
    return sl;
}

static int random_height(kv_sl *sl)
{
    int h = 1;
    uint64_t x = sl->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    sl->rng = x;
    /* p = 1/4 per level, as LevelDB */
    while (h < KV_SL_MAX_HEIGHT && (x & 3) == 0) {
        h++;
        x >>= 2;
    }
    return h;
}

static inline int cmp_node(const kv_sl *sl, uint32_t node, const uint8_t *key, size_t n)
{
    const sl_node *x = node_at(sl, node);
    return kv_ikey_cmp(bytes_at(sl, x->key_off), x->key_len, key, n);
}

/* Finds, per level, the last node < key (prev) and its successor (next).
 * Returns 1 if a node equal to key exists (its offset in *found).
 *
 * Finger search: when the last inserted key is smaller than key (batches
 * are inserted in key order), climb from the last insert's predecessors
 * to the lowest level whose successor is already >= key, and descend from
 * there.  That costs O(log distance) node visits instead of O(log n), and
 * the nodes visited were touched by the previous insert. */
static int find_splice(kv_sl *sl, const uint8_t *key, size_t n, uint32_t *prev, uint32_t *next,
                       uint32_t *found)
{
    int height = (int)atomic_load_explicit(&sl->height, memory_order_relaxed);
    uint32_t x = sl->head;
    int level, start = height - 1;
    *found = 0;
    if (sl->finger_valid && cmp_node(sl, sl->finger[0], key, n) < 0) {
        int l;
        for (l = 0; l < (int)sl->finger_valid; l++) {
            uint32_t nx = next_of(sl, sl->finger[l], l);
            if (!nx || cmp_node(sl, nx, key, n) >= 0) break;
        }
        if (l < (int)sl->finger_valid) {
            /* the splice brackets key from level l up */
            for (level = height - 1; level > l; level--) {
                prev[level] = level < (int)sl->finger_valid ? sl->finger[level] : sl->head;
                next[level] = next_of(sl, prev[level], level);
            }
            x = sl->finger[l];
            start = l;
        }
    }
    for (level = start; level >= 0; level--) {
        uint32_t nx;
        for (;;) {
            int c;
            nx = next_of(sl, x, level);
            if (!nx) break;
            c = cmp_node(sl, nx, key, n);
            if (c < 0) {
                x = nx;
                continue;
            }
            if (c == 0) *found = nx;
            break;
        }
        prev[level] = x;
        next[level] = nx;
    }
    /* every node is on level 0, so an equal key was met there */
    return *found != 0;
}

int kv_sl_put(kv_sl *sl, const uint8_t *key, size_t klen, const uint8_t *vs, size_t vlen)
{
    uint32_t prev[KV_SL_MAX_HEIGHT], next[KV_SL_MAX_HEIGHT], found, voff, koff, noff;
    int h, height, i;
    sl_node *node;
    uint64_t used0 = atomic_load_explicit(&sl->used, memory_order_relaxed);

    if (find_splice(sl, key, klen, prev, next, &found)) {
        voff = arena_alloc(sl, vlen ? vlen : 1, 1);
        if (!voff) return -1;
        memcpy((uint8_t *)sl + voff, vs, vlen);
        atomic_store_explicit(&node_at(sl, found)->value, ((uint64_t)voff << 32) | vlen,
                              memory_order_release);
        atomic_fetch_add_explicit(&sl->data_bytes, vlen, memory_order_relaxed);
        return 0;
    }
    h = random_height(sl);
    noff = arena_alloc(sl, NODE_HDR + 4 * (size_t)h, 8);
    koff = noff ? arena_alloc(sl, klen, 1) : 0;
    voff = koff ? arena_alloc(sl, vlen ? vlen : 1, 1) : 0;
    if (!voff) {
        atomic_store_explicit(&sl->used, used0, memory_order_release);
        return -1;
    }
    memcpy((uint8_t *)sl + koff, key, klen);
    memcpy((uint8_t *)sl + voff, vs, vlen);
    node = node_at(sl, noff);
    node->key_off = koff;
    node->key_len = (uint32_t)klen;
    node->height = (uint16_t)h;
    node->pad = 0;
    atomic_store_explicit(&node->value, ((uint64_t)voff << 32) | vlen, memory_order_relaxed);
    height = (int)atomic_load_explicit(&sl->height, memory_order_relaxed);
    for (i = height; i < h; i++) {
        prev[i] = sl->head;
        next[i] = 0;
    }
    for (i = 0; i < h; i++)
        atomic_store_explicit(&node->tower[i], next[i], memory_order_relaxed);
    /* Publish bottom-up; release makes the node's contents visible first. */
    for (i = 0; i < h; i++)
        atomic_store_explicit(&node_at(sl, prev[i])->tower[i], noff, memory_order_release);
    if (h > height) atomic_store_explicit(&sl->height, (uint32_t)h, memory_order_release);
    /* Finger: predecessors of this key are predecessors of any larger key. */
    for (i = 0; i < KV_SL_MAX_HEIGHT; i++)
        sl->finger[i] = i < h ? noff : (i < (h > height ? h : height) ? prev[i] : sl->head);
    sl->finger_valid = (uint32_t)(h > height ? h : height);
    atomic_fetch_add_explicit(&sl->count, 1, memory_order_release);
    atomic_fetch_add_explicit(&sl->data_bytes, klen + vlen, memory_order_relaxed);
    return 0;
}

/* ---- readers ---- */

void kv_sl_iter_init(kv_sl_iter *it, const kv_sl *sl)
{
    it->sl = sl;
    it->node = 0;
}

/* Last node < key (<= key with or_equal), or the head.  *succ (if not
 * NULL) gets the level-0 successor observed during the walk: the first node
 * beyond that, as of the moment it was compared.  It must not be re-read
 * from the node afterwards, since the writer may have linked a smaller
 * node behind it meanwhile. */
static uint32_t find_less(const kv_sl *sl, const uint8_t *key, size_t n, int or_equal,
                          uint32_t *succ)
{
    uint32_t x = sl->head, nx = 0;
    int level = (int)atomic_load_explicit(&((kv_sl *)sl)->height, memory_order_acquire) - 1;
    for (; level >= 0; level--) {
        for (;;) {
            int c;
            nx = next_of(sl, x, level);
            if (!nx) break;
            c = cmp_node(sl, nx, key, n);
            if (c < 0 || (or_equal && c == 0)) x = nx;
            else break;
        }
    }
    if (succ) *succ = nx;
    return x;
}

void kv_sl_iter_first(kv_sl_iter *it)
{
    it->node = next_of(it->sl, it->sl->head, 0);
}

void kv_sl_iter_last(kv_sl_iter *it)
{
    const kv_sl *sl = it->sl;
    uint32_t x = sl->head;
    int level = (int)atomic_load_explicit(&((kv_sl *)sl)->height, memory_order_acquire) - 1;
    for (; level >= 0; level--) {
        uint32_t nx;
        while ((nx = next_of(sl, x, level)) != 0) x = nx;
    }
    it->node = x == sl->head ? 0 : x;
}

void kv_sl_iter_seek(kv_sl_iter *it, const uint8_t *key, size_t n)
{
    find_less(it->sl, key, n, 0, &it->node);
}

void kv_sl_iter_seek_for_prev(kv_sl_iter *it, const uint8_t *key, size_t n)
{
    uint32_t x = find_less(it->sl, key, n, 1, NULL);
    it->node = x == it->sl->head ? 0 : x;
}

void kv_sl_iter_next(kv_sl_iter *it)
{
    if (it->node) it->node = next_of(it->sl, it->node, 0);
}

void kv_sl_iter_prev(kv_sl_iter *it)
{
    const sl_node *x;
    uint32_t p;
    if (!it->node) return;
    x = node_at(it->sl, it->node);
    p = find_less(it->sl, bytes_at(it->sl, x->key_off), x->key_len, 0, NULL);
    it->node = p == it->sl->head ? 0 : p;
}

const uint8_t *kv_sl_iter_key(const kv_sl_iter *it, size_t *n)
{
    const sl_node *x = node_at(it->sl, it->node);
    *n = x->key_len;
    return bytes_at(it->sl, x->key_off);
}

const uint8_t *kv_sl_iter_value(const kv_sl_iter *it, size_t *n)
{
    uint64_t v = atomic_load_explicit(&node_at(it->sl, it->node)->value, memory_order_acquire);
    *n = (size_t)(uint32_t)v;
    return bytes_at(it->sl, (uint32_t)(v >> 32));
}
