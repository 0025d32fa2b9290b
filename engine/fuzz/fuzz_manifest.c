/*
 * fuzz_manifest.c - libFuzzer target for MANIFEST replay
 * (kv_manifest_parse in manifest.c): header, record framing and torn
 * tails, edit payloads, table creation and deletion.
 *
 * Input: one mode byte m, then the rest r.
 *   m & 3 == 0  the image is r
 *   m & 3 == 1  a valid 16-byte header, then r
 *   m & 3 == 2  a valid header, then records framed from r: pieces each
 *               prefixed by a u16 length, each in a correct frame
 *               (frame.h), so the payload decoder sees arbitrary bytes
 *   m & 3 == 3  a valid header, then edit records synthesised from r (see
 *               synth()): creations and deletions of a few table ids at
 *               random levels with keys from r, so replay gets deep into
 *               table bookkeeping
 *   m & 4       in modes 2 and 3, cut the last record short by 1 + (m >> 4)
 *               bytes (a torn tail)
 *
 * Promises checked: parsing fails only with KV_CORRUPTION (or
 * KV_NO_MEMORY) naming the file and leaves an empty state; on success the
 * valid end is a record boundary inside the image, every table has a level
 * below KV_MAX_LEVELS, keys longer than the version suffix with smallest <=
 * largest, and a unique id; a cut record is the torn tail.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "frame.h"
#include "ikey.h"
#include "manifest.h"
#include "version.h"

#define PATH "fuzz/MANIFEST"

#define FZ_CHECK(cond)                                                                         \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "fuzz invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct obuf {
    uint8_t *p;
    size_t n, cap;
} obuf;

static void put(obuf *b, const void *d, size_t n)
{
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->n + n) cap *= 2;
        b->p = realloc(b->p, cap);
        FZ_CHECK(b->p != NULL);
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void put_int(obuf *b, uint64_t v, size_t width)
{
    uint8_t x[8];
    kv_put_u64(x, v);
    put(b, x, width);
}

/* Appends payload p[0, n) as a record; returns where it starts. */
static size_t frame(obuf *b, const uint8_t *p, size_t n)
{
    size_t start = b->n;
    uint8_t hdr[KV_FRAME_HDR];

    put(b, hdr, sizeof hdr);
    put(b, p, n);
    kv_frame_seal(b->p + start, n);
    return start;
}

/* Reads one byte of r (0 once it is used up). */
static uint8_t next(const uint8_t *r, size_t rn, size_t *pos)
{
    return *pos < rn ? r[(*pos)++] : 0;
}

/* One edit payload from r: u8 change count, then per change a control
 * byte (bit 0 create/delete, bits 1-2 == 3 an unknown op, level = bits 3-7
 * % 17) and a table id byte (% 8); creations take their counts from one
 * byte and two keys of 9 + (byte % 8) bytes. */
static void synth(obuf *pl, const uint8_t *r, size_t rn, size_t *pos)
{
    uint32_t count = 1 + next(r, rn, pos) % 4;

    put_int(pl, 1, 1);                      /* edit */
    put_int(pl, 100 + next(r, rn, pos), 8); /* next file id */
    put_int(pl, next(r, rn, pos), 8);       /* max version */
    put_int(pl, count, 4);
    for (uint32_t i = 0; i < count; i++) {
        uint8_t c = next(r, rn, pos), id = next(r, rn, pos) % 8, v = next(r, rn, pos);
        uint8_t op = ((c >> 1) & 3) == 3 ? 7 : (c & 1) ? 1 : 2;
        put_int(pl, op, 1);
        put_int(pl, (uint64_t)(c >> 3) % (KV_MAX_LEVELS + 1), 1);
        put_int(pl, id, 8);
        if (op != 1) continue;
        for (int k = 0; k < 7; k++) put_int(pl, (uint64_t)v * (k + 1), 8);
        put_int(pl, v % 3, 4);
        for (int k = 0; k < 2; k++) {
            uint8_t kl = 9 + next(r, rn, pos) % 8;
            put_int(pl, kl, 1); /* uvarint: kl < 128 */
            for (uint8_t j = 0; j < kl; j++) put_int(pl, next(r, rn, pos), 1);
        }
    }
}

static void check_state(const kv_mf_state *s, size_t n)
{
    FZ_CHECK(s->valid_end >= KV_MANIFEST_HEADER_SIZE && s->valid_end <= n);
    FZ_CHECK(s->creations - s->deletions == s->n && s->n <= s->cap);
    for (size_t i = 0; i < s->n; i++) {
        const kv_mf_table *t = &s->tables[i];
        FZ_CHECK(t->level >= 0 && t->level < KV_MAX_LEVELS);
        FZ_CHECK(t->slen > KV_TS_SIZE && t->llen > KV_TS_SIZE);
        FZ_CHECK(kv_ikey_cmp(t->smallest, t->slen, t->largest, t->llen) <= 0);
        for (size_t j = 0; j < i; j++)
            FZ_CHECK(s->tables[j].props.table_id != t->props.table_id);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    obuf img = {0}, pl = {0};
    const uint8_t *r;
    size_t rn, pos = 0, last = 0, cut = 0, records = 0;
    uint8_t m, hdr[KV_MANIFEST_HEADER_SIZE];
    kv_mf_state s;
    kv_err err;
    kv_status st;

    if (size < 1) return 0;
    m = data[0];
    r = data + 1;
    rn = size - 1;
    if ((m & 3) == 0) {
        put(&img, r, rn);
    } else {
        memset(hdr, 0, sizeof hdr);
        kv_put_u32(hdr, KV_MANIFEST_MAGIC);
        kv_put_u32(hdr + 4, KV_MANIFEST_VERSION);
        put(&img, hdr, sizeof hdr);
    }
    if ((m & 3) == 1) put(&img, r, rn);
    while ((m & 3) >= 2 && pos < rn && records < 4096) {
        if ((m & 3) == 2) {
            size_t n = rn - pos;
            if (n >= 2) {
                n = kv_get_u16(r + pos);
                pos += 2;
                if (n > rn - pos) n = rn - pos;
            }
            last = frame(&img, r + pos, n);
            pos += n;
        } else {
            pl.n = 0;
            synth(&pl, r, rn, &pos);
            last = frame(&img, pl.p, pl.n);
        }
        records++;
    }
    if ((m & 4) && records) {
        cut = 1 + (m >> 4);
        if (cut > img.n - last) cut = img.n - last;
        img.n -= cut;
    }
    /* exactly sized, so that ASan sees a read past the end */
    {
        uint8_t *exact = malloc(img.n ? img.n : 1);
        FZ_CHECK(exact != NULL);
        if (img.n) memcpy(exact, img.p, img.n);
        st = kv_manifest_parse(exact, img.n, PATH, &s, &err);
        free(exact);
    }
    FZ_CHECK(st == KV_OK || st == KV_CORRUPTION || st == KV_NO_MEMORY);
    if (st != KV_OK) {
        FZ_CHECK(s.n == 0 && s.tables == NULL);
        if (st == KV_CORRUPTION) FZ_CHECK(strstr(err.msg, PATH) != NULL);
    } else {
        check_state(&s, img.n);
        if (cut) FZ_CHECK(s.valid_end <= last);
    }
    kv_mf_state_free(&s);
    free(img.p);
    free(pl.p);
    return 0;
}
