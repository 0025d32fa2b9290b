/*
 * skiplist.c - arena skiplist (see skiplist.h for the contract and
 * invariants).
 *
 * Layout.  Nodes are bump-allocated upwards from the start of the arena,
 * key/value data downwards from its end, so the nodes - all a search
 * touches, as long as key prefixes differ - sit densely together:
 *
 *   node: u64 key prefix (first 8 user-key bytes, big-endian, zero
 *         padded), u32 data offset, u16 key length, u16 height,
 *         u32 tower[height] (next-node offsets per level, atomic)
 *   data: u64 value (value offset << 32 | value length, atomic), key bytes
 *
 * Comparing prefixes first decides almost every comparison of random keys
 * without touching the key bytes; equal prefixes fall back to the full
 * internal-key comparison.  With pointer-sized values a 64 MiB memtable
 * holds ~850k entries, and this keeps a search's working set inside the
 * CPU caches instead of one cache miss per visited node.
 */
#include "skiplist.h"

#include <string.h>

#include "hash.h"
#include "ikey.h"

typedef struct sl_node {
    uint64_t prefix;
    uint32_t data;
    uint16_t key_len;
    uint16_t height;
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

static inline _Atomic uint64_t *value_word(const kv_sl *sl, const sl_node *x)
{
    return (_Atomic uint64_t *)((char *)sl + x->data);
}

static inline const uint8_t *node_key(const kv_sl *sl, const sl_node *x)
{
    return bytes_at(sl, x->data + 8);
}

static inline uint32_t next_of(const kv_sl *sl, uint32_t node, int level)
{
    return atomic_load_explicit(&node_at(sl, node)->tower[level], memory_order_acquire);
}

/* The first 8 bytes of the user key as a big-endian number (zero padded):
 * unequal prefixes order keys exactly as kv_ikey_cmp does. */
static inline uint64_t key_prefix(const uint8_t *ikey, size_t n)
{
    size_t un = n - KV_TS_SIZE;
    uint64_t p = 0;
    if (un >= 8) {
        memcpy(&p, ikey, 8);
        return __builtin_bswap64(p);
    }
    for (size_t i = 0; i < 8; i++) p = (p << 8) | (i < un ? ikey[i] : 0);
    return p;
}

size_t kv_sl_put_cost(size_t klen, size_t vlen)
{
    return NODE_HDR + 4 * KV_SL_MAX_HEIGHT + 8 + 8 + klen + 8 + vlen;
}

/* Bump allocators: nodes up from node_top, data down from data_bottom.
 * Writer only; `used` is published for kv_sl_used. */
static uint32_t alloc_node(kv_sl *sl, size_t n)
{
    uint64_t off = (sl->node_top + 7) & ~(uint64_t)7;
    if (off + n > sl->data_bottom) return 0;
    sl->node_top = off + n;
    return (uint32_t)off;
}

static uint32_t alloc_data(kv_sl *sl, size_t n, size_t align)
{
    uint64_t off;
    if (n > sl->data_bottom) return 0;
    off = (sl->data_bottom - n) & ~(uint64_t)(align - 1);
    if (off < sl->node_top) return 0;
    sl->data_bottom = off;
    return (uint32_t)off;
}

static void publish_used(kv_sl *sl)
{
    atomic_store_explicit(&sl->used, sl->node_top + (sl->cap - sl->data_bottom),
                          memory_order_release);
}

kv_sl *kv_sl_init(void *mem, uint64_t cap, uint64_t seed)
{
    kv_sl *sl = mem;
    sl_node *head;
    memset(sl, 0, sizeof *sl);
    sl->cap = cap;
    sl->node_top = sizeof *sl;
    sl->data_bottom = cap;
    sl->rng = seed | 1;
    sl->head = alloc_node(sl, NODE_HDR + 4 * KV_SL_MAX_HEIGHT);
    head = node_at(sl, sl->head);
    memset(head, 0, NODE_HDR + 4 * KV_SL_MAX_HEIGHT);
    head->height = KV_SL_MAX_HEIGHT;
    /* bloom filter: 1/64 of the arena (8 bits per byte of arena / 8),
     * e.g. 8 Mi bits for 64 MiB - about 10 bits per key when values are
     * pointers, more when they are inline */
    sl->bloom_bits = 1u << 12; /* the largest power of two <= cap / 8 */
    while ((uint64_t)sl->bloom_bits * 16 <= cap && sl->bloom_bits < (1u << 30)) sl->bloom_bits <<= 1;
    sl->bloom = alloc_node(sl, sl->bloom_bits / 8);
    if (sl->bloom) memset((uint8_t *)sl + sl->bloom, 0, sl->bloom_bits / 8);
    else sl->bloom_bits = 0;
    publish_used(sl);
    atomic_store(&sl->height, 1);
    atomic_store(&sl->count, 0);
    atomic_store(&sl->data_bytes, 0);
    sl->finger_valid = 0;
    return sl;
}

#define BLOOM_PROBES 6

static void bloom_add(kv_sl *sl, uint64_t h)
{
    _Atomic uint8_t *bits = (_Atomic uint8_t *)((uint8_t *)sl + sl->bloom);
    uint64_t delta = (h >> 17) | (h << 47) | 1;
    uint32_t mask = sl->bloom_bits - 1;
    if (!sl->bloom_bits) return;
    for (int i = 0; i < BLOOM_PROBES; i++, h += delta) {
        uint32_t b = (uint32_t)h & mask;
        atomic_fetch_or_explicit(&bits[b >> 3], (uint8_t)(1u << (b & 7)), memory_order_relaxed);
    }
}

int kv_sl_may_contain(const kv_sl *sl, uint64_t h)
{
    const _Atomic uint8_t *bits = (const _Atomic uint8_t *)((const uint8_t *)sl + sl->bloom);
    uint64_t delta = (h >> 17) | (h << 47) | 1;
    uint32_t mask = sl->bloom_bits - 1;
    if (!sl->bloom_bits) return 1;
    for (int i = 0; i < BLOOM_PROBES; i++, h += delta) {
        uint32_t b = (uint32_t)h & mask;
        if (!(atomic_load_explicit(&bits[b >> 3], memory_order_relaxed) & (1u << (b & 7))))
            return 0;
    }
    return 1;
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

/* Compares node with (key, its prefix kp). */
static inline int cmp_node_p(const kv_sl *sl, uint32_t node, const uint8_t *key, size_t n,
                             uint64_t kp)
{
    const sl_node *x = node_at(sl, node);
    if (x->prefix != kp) return x->prefix < kp ? -1 : 1;
    return kv_ikey_cmp(node_key(sl, x), x->key_len, key, n);
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
    uint64_t kp = key_prefix(key, n);
    *found = 0;
    if (sl->finger_valid && cmp_node_p(sl, sl->finger[0], key, n, kp) < 0) {
        int l;
        for (l = 0; l < (int)sl->finger_valid; l++) {
            uint32_t nx = next_of(sl, sl->finger[l], l);
            if (!nx || cmp_node_p(sl, nx, key, n, kp) >= 0) break;
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
            c = cmp_node_p(sl, nx, key, n, kp);
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
    return kv_sl_put_ref(sl, key, klen, vs, vlen, NULL);
}

int kv_sl_put_ref(kv_sl *sl, const uint8_t *key, size_t klen, const uint8_t *vs, size_t vlen,
                  uint8_t **stored)
{
    uint32_t prev[KV_SL_MAX_HEIGHT], next[KV_SL_MAX_HEIGHT], found, voff, doff, noff;
    uint64_t top0 = sl->node_top, bottom0 = sl->data_bottom;
    int h, height, i;
    sl_node *node;

    if (klen > UINT16_MAX) return -1;
    if (find_splice(sl, key, klen, prev, next, &found)) {
        voff = alloc_data(sl, vlen ? vlen : 1, 1);
        if (!voff) return -1;
        memcpy((uint8_t *)sl + voff, vs, vlen);
        if (stored) *stored = (uint8_t *)sl + voff;
        atomic_store_explicit(value_word(sl, node_at(sl, found)), ((uint64_t)voff << 32) | vlen,
                              memory_order_release);
        atomic_fetch_add_explicit(&sl->data_bytes, vlen, memory_order_relaxed);
        publish_used(sl);
        return 0;
    }
    h = random_height(sl);
    noff = alloc_node(sl, NODE_HDR + 4 * (size_t)h);
    doff = noff ? alloc_data(sl, 8 + klen, 8) : 0;
    voff = doff ? alloc_data(sl, vlen ? vlen : 1, 1) : 0;
    if (!voff) {
        sl->node_top = top0;
        sl->data_bottom = bottom0;
        return -1;
    }
    memcpy((uint8_t *)sl + doff + 8, key, klen);
    memcpy((uint8_t *)sl + voff, vs, vlen);
    if (stored) *stored = (uint8_t *)sl + voff;
    bloom_add(sl, kv_key_hash(key, klen - KV_TS_SIZE));
    node = node_at(sl, noff);
    node->prefix = key_prefix(key, klen);
    node->data = doff;
    node->key_len = (uint16_t)klen;
    node->height = (uint16_t)h;
    atomic_store_explicit(value_word(sl, node), ((uint64_t)voff << 32) | vlen,
                          memory_order_relaxed);
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
    publish_used(sl);
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
    uint64_t kp = key_prefix(key, n);
    for (; level >= 0; level--) {
        for (;;) {
            int c;
            nx = next_of(sl, x, level);
            if (!nx) break;
            c = cmp_node_p(sl, nx, key, n, kp);
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
    p = find_less(it->sl, node_key(it->sl, x), x->key_len, 0, NULL);
    it->node = p == it->sl->head ? 0 : p;
}

const uint8_t *kv_sl_iter_key(const kv_sl_iter *it, size_t *n)
{
    const sl_node *x = node_at(it->sl, it->node);
    *n = x->key_len;
    return node_key(it->sl, x);
}

const uint8_t *kv_sl_iter_value(const kv_sl_iter *it, size_t *n)
{
    uint64_t v = atomic_load_explicit(value_word(it->sl, node_at(it->sl, it->node)),
                                      memory_order_acquire);
    *n = (size_t)(uint32_t)v;
    return bytes_at(it->sl, (uint32_t)(v >> 32));
}
