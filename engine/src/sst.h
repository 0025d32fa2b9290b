/*
 * sst.h - sorted string tables: building one to a file, and reading one
 * straight from its mapped bytes.
 *
 * A table holds internal keys (ikey.h) in strictly increasing order, each
 * with a value struct.  Layout (byte-exact in doc/FORMATS.md):
 *
 *   data block 0 .. data block n-1   prefix-compressed entries + offsets,
 *                                    each optionally snappy/zstd compressed,
 *                                    each followed by a type byte and an
 *                                    xxhash64 checksum
 *   index                            n fixed-size entries (offset, size,
 *                                    first-key location) + key bytes,
 *                                    binary-searchable in place
 *   bloom filter                     on user keys (no version suffix)
 *   properties                       counts, versions, smallest/largest key
 *   footer                           fixed size: section offsets, format
 *                                    version, magic, checksum
 *
 * Readers never decode the index into memory: kv_sst_open() checks the
 * footer and section checksums and keeps pointers into the mapping.  Blocks
 * that are compressed are decompressed into the caller-supplied block cache
 * (kv_block_cache_ops) or a private buffer; raw blocks are used in place.
 *
 * Corruption anywhere (bad magic, checksum, offset, varint, length) is
 * KV_CORRUPTION with the file name and offset in the message; never a crash.
 */
#ifndef KV_SST_H
#define KV_SST_H

#include <stddef.h>
#include <stdint.h>

#include "env.h"
#include "kv.h"


/* ---- properties ---- */

typedef struct kv_sst_props {
    uint64_t table_id;
    uint64_t file_size;
    uint64_t num_entries;      /* internal keys, all versions */
    uint64_t num_deletes;      /* tombstones */
    uint64_t num_value_ptrs;   /* entries whose value is in the value log */
    uint64_t vlog_bytes;       /* sum of the lengths those pointers reference */
    uint64_t raw_key_bytes;    /* sum of internal key lengths */
    uint64_t raw_value_bytes;  /* sum of value struct lengths */
    uint64_t min_version, max_version;
    uint32_t num_blocks;
    uint32_t compression;      /* kv_compression the builder asked for */
    uint64_t created_unix;     /* builder's clock at finish */
} kv_sst_props;

/* ---- building ---- */

typedef struct kv_sst_build_opts {
    uint64_t table_id;
    int block_size;            /* target uncompressed block size */
    double bloom_fp;           /* false-positive rate; 0 = no bloom filter */
    kv_compression compression;
    int zstd_level;
    int sync;                  /* fsync the file at finish (1 except tests) */
} kv_sst_build_opts;

typedef struct kv_sst_builder kv_sst_builder;

/* Creates path (must not exist) and prepares to write a table. */
kv_status kv_sst_builder_new(kv_env *env, const char *path, const kv_sst_build_opts *o,
                             kv_sst_builder **b, kv_err *err);
/* Adds one entry.  REQUIRES: ikey greater than the previous one. */
kv_status kv_sst_builder_add(kv_sst_builder *b, const uint8_t *ikey, size_t iklen,
                             const uint8_t *vs, size_t vslen, kv_err *err);
/* Bytes the table would have if finished now (approximate). */
uint64_t kv_sst_builder_size(const kv_sst_builder *b);
uint64_t kv_sst_builder_entries(const kv_sst_builder *b);
/* Writes index, bloom, properties and footer, syncs and closes the file.
 * REQUIRES: at least one entry. */
kv_status kv_sst_builder_finish(kv_sst_builder *b, kv_sst_props *props, kv_err *err);
/* Smallest / largest internal key added (valid until kv_sst_builder_free). */
const uint8_t *kv_sst_builder_smallest(const kv_sst_builder *b, size_t *len);
const uint8_t *kv_sst_builder_largest(const kv_sst_builder *b, size_t *len);
/* Frees the builder; if it was not finished, closes and removes the file. */
void kv_sst_builder_free(kv_sst_builder *b);

/* ---- block cache hook ---- */

/* The reader asks the cache for decompressed blocks.  A returned pointer
 * stays valid until release(pin).  insert() copies the data; it may refuse
 * (return NULL), and the reader then keeps its private copy. */
typedef struct kv_block_cache_ops {
    void *ctx;
    const uint8_t *(*lookup)(void *ctx, uint64_t table_id, uint64_t block_off, size_t *len,
                             void **pin);
    const uint8_t *(*insert)(void *ctx, uint64_t table_id, uint64_t block_off,
                             const uint8_t *data, size_t len, void **pin);
    void (*release)(void *ctx, void *pin);
} kv_block_cache_ops;

/* ---- reading ---- */

typedef struct kv_sst kv_sst;

/* Opens a table over data[0..size) (normally a read-only mapping of the
 * file); path is used in messages only.  Verifies the footer, index,
 * bloom and properties checksums; with mode ON_TABLE_READ or
 * ON_TABLE_AND_BLOCK_READ also every block.  expect_id (0 = any) must match
 * the table id stored in the properties. */
kv_status kv_sst_open(const uint8_t *data, uint64_t size, const char *path, uint64_t expect_id,
                      kv_checksum_mode mode, kv_sst **t, kv_err *err);
void kv_sst_close(kv_sst *t);

const kv_sst_props *kv_sst_get_props(const kv_sst *t);
const uint8_t *kv_sst_smallest(const kv_sst *t, size_t *len);
const uint8_t *kv_sst_largest(const kv_sst *t, size_t *len);
uint32_t kv_sst_num_blocks(const kv_sst *t);
const char *kv_sst_path(const kv_sst *t);

/* 0 if the bloom filter proves the user key absent, 1 otherwise. */
int kv_sst_may_contain(const kv_sst *t, const uint8_t *ukey, size_t n);

/* Verifies the checksum of every block (kvctl check). */
kv_status kv_sst_verify(const kv_sst *t, kv_err *err);

/* A decoded block in use: data/len are the uncompressed payload. */
typedef struct kv_block_ref {
    const uint8_t *data;
    size_t len;
    uint32_t num_entries;
    const uint8_t *offsets;    /* num_entries u32 entry offsets */
    void *pin;                 /* cache pin, or NULL */
    uint8_t *owned;            /* private decompressed copy, or NULL */
    const kv_block_cache_ops *cache;
} kv_block_ref;

typedef struct kv_sst_read_opts {
    const kv_block_cache_ops *cache; /* NULL = no cache */
    int fill_cache;                  /* insert blocks that were not cached */
    int verify;                      /* check the block checksum */
} kv_sst_read_opts;

/* Reads and (if needed) decompresses block i. */
kv_status kv_sst_read_block(const kv_sst *t, uint32_t i, const kv_sst_read_opts *ro,
                            kv_block_ref *out, kv_err *err);
void kv_block_ref_release(kv_block_ref *ref);

/* An iterator over one table, both directions.  Embeddable: initialise with
 * kv_sst_iter_init and always finish with kv_sst_iter_done. */
typedef struct kv_sst_iter {
    const kv_sst *t;
    kv_sst_read_opts ro;
    int64_t block;             /* current block index, -1 = none */
    kv_block_ref ref;          /* current block */
    int64_t entry;             /* entry index inside the block */
    uint8_t *key;              /* current internal key (reconstructed) */
    size_t key_len, key_cap;
    const uint8_t *val;        /* current value struct (points into block) */
    size_t val_len;
    int valid;
    kv_status status;          /* first error, KV_OK if none */
    kv_err err;
} kv_sst_iter;

void kv_sst_iter_init(kv_sst_iter *it, const kv_sst *t, const kv_sst_read_opts *ro);
void kv_sst_iter_done(kv_sst_iter *it);
void kv_sst_iter_first(kv_sst_iter *it);
void kv_sst_iter_last(kv_sst_iter *it);
/* First entry with key >= ikey. */
void kv_sst_iter_seek(kv_sst_iter *it, const uint8_t *ikey, size_t n);
/* Last entry with key <= ikey. */
void kv_sst_iter_seek_for_prev(kv_sst_iter *it, const uint8_t *ikey, size_t n);
void kv_sst_iter_next(kv_sst_iter *it);
void kv_sst_iter_prev(kv_sst_iter *it);

/* ---- compression (compress.c) ---- */

/* Compresses n bytes of in with type (level for zstd) into *out (malloc'd,
 * grown as needed, capacity in *cap).  If compression does not save at
 * least 1/8 of the bytes, or type is NONE, *used is KV_COMPRESS_NONE and
 * nothing is written. */
kv_status kv_compress(kv_compression type, int level, const uint8_t *in, size_t n,
                      uint8_t **out, size_t *cap, size_t *out_len, kv_compression *used,
                      kv_err *err);
/* Decompresses into a malloc'd buffer of at most max_out bytes;
 * KV_CORRUPTION (with what) if the input is not valid. */
kv_status kv_decompress(kv_compression type, const uint8_t *in, size_t n, size_t max_out,
                        uint8_t **out, size_t *out_len, const char *what, kv_err *err);

/* ---- bloom filter (bloom.c) ---- */

/* Bits per key for a false-positive rate (LevelDB/Badger formula). */
int kv_bloom_bits_per_key(double fp);
/* Builds a filter for n key hashes into *out (malloc'd, *out_len bytes). */
kv_status kv_bloom_build(const uint64_t *hashes, size_t n, int bits_per_key, uint8_t **out,
                         size_t *out_len, kv_err *err);
/* 1 if hash may be in the filter; malformed filters answer 1. */
int kv_bloom_may_contain(const uint8_t *filter, size_t len, uint64_t hash);

#endif
