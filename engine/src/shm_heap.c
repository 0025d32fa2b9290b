/*
 * shm_heap.c - boundary-tag allocator over a range of the shared region
 * (see shm_heap.h).
 *
 * Chunk layout: u64 header = size | USED bit | PREV_FREE bit, payload.
 * A free chunk also holds u64 next, u64 prev (free-list links) after the
 * header and its size in its last 8 bytes (footer), which is what lets the
 * following chunk find and merge with it.
 */
#include "shm_heap.h"

#include <string.h>

#define HDR 16u /* header rounded to keep payloads 16-aligned */
#define MIN_CHUNK 48u
#define F_USED 1u
#define F_PREV_FREE 2u
#define SIZE_MASK (~(uint64_t)15)

typedef struct chunk {
    uint64_t head;
    uint64_t pad;
    uint64_t next, prev; /* only while free */
} chunk;

static inline chunk *C(char *base, uint64_t off)
{
    return (chunk *)(base + off);
}

static inline uint64_t csize(const chunk *c)
{
    return c->head & SIZE_MASK;
}

static int size_class(uint64_t size)
{
    int c = 0;
    size >>= 5;
    while (size > 1 && c < KV_HEAP_CLASSES - 1) {
        size >>= 1;
        c++;
    }
    return c;
}

static void set_footer(char *base, uint64_t off, uint64_t size)
{
    memcpy(base + off + size - 8, &size, 8);
}

static void list_push(kv_heap *h, char *base, uint64_t off)
{
    chunk *c = C(base, off);
    int k = size_class(csize(c));
    c->prev = 0;
    c->next = h->bins[k];
    if (h->bins[k]) C(base, h->bins[k])->prev = off;
    h->bins[k] = off;
}

static void list_remove(kv_heap *h, char *base, uint64_t off)
{
    chunk *c = C(base, off);
    int k = size_class(csize(c));
    if (c->prev) C(base, c->prev)->next = c->next;
    else h->bins[k] = c->next;
    if (c->next) C(base, c->next)->prev = c->prev;
}

/* Marks the chunk after off (if any) as having a free/used predecessor. */
static void set_next_prev_free(kv_heap *h, char *base, uint64_t off, uint64_t size, int free)
{
    uint64_t n = off + size;
    if (n >= h->end) return;
    if (free) C(base, n)->head |= F_PREV_FREE;
    else C(base, n)->head &= ~(uint64_t)F_PREV_FREE;
}

void kv_heap_init(kv_heap *h, char *base, uint64_t start, uint64_t size)
{
    /* offset 0 means "none" in the free lists: the heap never starts there */
    uint64_t s = ((start < 16 ? 16 : start) + 15) & ~(uint64_t)15;
    uint64_t e = (start + size) & ~(uint64_t)15;
    if (e < s) e = s;
    memset(&h->bins, 0, sizeof h->bins);
    h->start = s;
    h->end = e;
    h->used_bytes = h->peak_bytes = h->allocs = h->frees = h->failures = 0;
    kv_mutex_init(&h->mu);
    if (e - s >= MIN_CHUNK) {
        C(base, s)->head = e - s;
        set_footer(base, s, e - s);
        list_push(h, base, s);
    } else
        h->end = h->start; /* too small for one chunk: an empty heap */
}

uint64_t kv_heap_alloc(kv_heap *h, char *base, size_t n)
{
    uint64_t need, found = 0;
    int k;
    kv_mutex_lock(&h->mu);
    if ((uint64_t)n > h->end - h->start) {
        h->failures++;
        kv_mutex_unlock(&h->mu);
        return 0;
    }
    need = ((uint64_t)n + HDR + 15) & SIZE_MASK;
    if (need < MIN_CHUNK) need = MIN_CHUNK;
    /* a short first-fit scan of the request's own class, then any chunk of
     * a larger class (all fit), then the whole own class as a last resort */
    for (k = size_class(need); k < KV_HEAP_CLASSES && !found; k++) {
        uint64_t off = h->bins[k];
        int scanned = 0;
        for (; off && scanned < 64; off = C(base, off)->next, scanned++)
            if (csize(C(base, off)) >= need) {
                found = off;
                break;
            }
    }
    if (!found)
        for (uint64_t off = h->bins[size_class(need)]; off; off = C(base, off)->next)
            if (csize(C(base, off)) >= need) {
                found = off;
                break;
            }
    if (!found) {
        h->failures++;
        kv_mutex_unlock(&h->mu);
        return 0;
    }
    {
        chunk *c = C(base, found);
        uint64_t size = csize(c), prevflag = c->head & F_PREV_FREE;
        list_remove(h, base, found);
        if (size - need >= MIN_CHUNK) {
            uint64_t rest = found + need;
            C(base, rest)->head = (size - need);
            set_footer(base, rest, size - need);
            list_push(h, base, rest);
            size = need;
        } else {
            set_next_prev_free(h, base, found, size, 0);
        }
        c->head = size | F_USED | prevflag;
        h->used_bytes += size;
        if (h->used_bytes > h->peak_bytes) h->peak_bytes = h->used_bytes;
        h->allocs++;
        kv_mutex_unlock(&h->mu);
        memset(base + found + HDR, 0, size - HDR);
        return found + HDR;
    }
}

void kv_heap_free(kv_heap *h, char *base, uint64_t p)
{
    uint64_t off, size;
    chunk *c;
    if (!p) return;
    off = p - HDR;
    kv_mutex_lock(&h->mu);
    c = C(base, off);
    size = csize(c);
    h->used_bytes -= size;
    h->frees++;
    /* merge with the next chunk if free */
    if (off + size < h->end && !(C(base, off + size)->head & F_USED)) {
        uint64_t nsize = csize(C(base, off + size));
        list_remove(h, base, off + size);
        size += nsize;
    }
    /* merge with the previous chunk if free */
    if (c->head & F_PREV_FREE) {
        uint64_t psize;
        memcpy(&psize, base + off - 8, 8);
        off -= psize;
        list_remove(h, base, off);
        size += psize;
    }
    c = C(base, off);
    c->head = size; /* its predecessor is in use (invariant 2) */
    set_footer(base, off, size);
    list_push(h, base, off);
    set_next_prev_free(h, base, off, size, 1);
    kv_mutex_unlock(&h->mu);
}

int kv_heap_check(kv_heap *h, char *base)
{
    uint64_t off = h->start, used = 0;
    int prev_free = 0, bad = 0;
    kv_mutex_lock(&h->mu);
    while (off < h->end) {
        chunk *c = C(base, off);
        uint64_t size = csize(c);
        int is_free = !(c->head & F_USED);
        if (size < MIN_CHUNK || off + size > h->end) {
            bad = 1;
            break;
        }
        if (!!(c->head & F_PREV_FREE) != prev_free) bad = 2;
        if (is_free && prev_free) bad = 3;
        if (!is_free) used += size;
        prev_free = is_free;
        off += size;
    }
    if (!bad && off != h->end) bad = 4;
    if (!bad && used != h->used_bytes) bad = 5;
    kv_mutex_unlock(&h->mu);
    return bad;
}
