/*
 * sst_format.h - the byte layout of an SSTable, shared by sst_builder.c and
 * sst_reader.c: magic, format version, the sizes and field offsets of the
 * footer, index entries, block trailer and properties section, the format's
 * hard limits, the decoder of one block entry, and the builder's reusable
 * compression context (compress.c).
 *
 * doc/FORMATS.md ("SSTable") is the prose version of this file; change both
 * together.  All integers are little-endian.
 */
#ifndef KV_SST_FORMAT_H
#define KV_SST_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#include "coding.h"
#include "ikey.h"
#include "kv.h"

/* "kvsepSST" read as a little-endian u64: the last 16 bytes of the footer
 * are this magic and the footer checksum. */
#define SST_MAGIC          0x545353706573766bULL
#define SST_FORMAT_VERSION 1

/* Every checksum is kv_checksum64 (XXH3-64, seed 0), stored as a u64. */
#define SST_CKSUM_SIZE 8

/* Footer: the last SST_FOOTER_SIZE bytes of the file. */
#define SST_FOOTER_SIZE   72
#define SST_FT_INDEX_OFF  0  /* u64 */
#define SST_FT_INDEX_SIZE 8  /* u64, including the index checksum */
#define SST_FT_BLOOM_OFF  16 /* u64 */
#define SST_FT_BLOOM_SIZE 24 /* u64, 0 = no filter, else including checksum */
#define SST_FT_PROPS_OFF  32 /* u64 */
#define SST_FT_PROPS_SIZE 40 /* u64, including the properties checksum */
#define SST_FT_NUM_BLOCKS 48 /* u32 */
#define SST_FT_VERSION    52 /* u32 */
#define SST_FT_MAGIC      56 /* u64 */
#define SST_FT_CKSUM      64 /* u64 over footer bytes [0, 64) */

/* Block trailer after each (possibly compressed) payload: u8 compression
 * type, u64 checksum over payload + type byte. */
#define SST_BLOCK_TRAILER 9

/* Index entry (fixed size; the key area follows the n entries). */
#define SST_INDEX_ENTRY 24
#define SST_IX_OFF      0  /* u64 block offset in the file */
#define SST_IX_SIZE     8  /* u32 on-disk block size incl. trailer */
#define SST_IX_KEY_OFF  12 /* u32 first-key offset in the key area */
#define SST_IX_KEY_LEN  16 /* u32 first-key length */
#define SST_IX_COUNT    20 /* u32 entries in the block */

/* Properties section: fixed part, then smallest and largest internal key,
 * then the checksum. */
#define SST_PR_TABLE_ID        0
#define SST_PR_FILE_SIZE       8
#define SST_PR_NUM_ENTRIES     16
#define SST_PR_NUM_DELETES     24
#define SST_PR_NUM_VPTRS       32
#define SST_PR_VLOG_BYTES      40
#define SST_PR_RAW_KEY_BYTES   48
#define SST_PR_RAW_VALUE_BYTES 56
#define SST_PR_MIN_VERSION     64
#define SST_PR_MAX_VERSION     72
#define SST_PR_NUM_BLOCKS      80 /* u32 */
#define SST_PR_COMPRESSION     84 /* u32 */
#define SST_PR_CREATED         88
#define SST_PR_SMALLEST_LEN    96  /* u32 */
#define SST_PR_LARGEST_LEN     100 /* u32 */
#define SST_PROPS_FIXED        104

/* Limits.  Internal keys are 8..65535 bytes (u16 lengths in entries).  An
 * uncompressed block payload is at most SST_MAX_BLOCK bytes: the builder
 * accepts block_size up to SST_MAX_BLOCK_SIZE and a single entry up to the
 * rest, and readers refuse to decompress more. */
#define SST_MAX_IKEY       65535
#define SST_MAX_BLOCK_SIZE ((size_t)64 << 20)
#define SST_MAX_BLOCK      ((size_t)128 << 20)

/* Entry header: u16 overlap, u16 diff length. */
#define SST_ENTRY_HEADER 4

/* Builder: pending bytes are written once this many have accumulated. */
#define SST_WRITE_CHUNK ((size_t)512 << 10)

/* One decoded entry of a block.  The key is base[0, overlap) ++ diff, where
 * base is the first key of the block (the diff of entry 0). */
typedef struct sst_ent {
    uint32_t overlap;
    uint32_t diff_len;
    const uint8_t *diff;
    const uint8_t *val;
    size_t val_len;
} sst_ent;

/* The first key of a block whose header was checked (entry 0 starts at 0,
 * has overlap 0 and lies inside the entry area). */
static inline const uint8_t *sst_block_base(const uint8_t *blk, uint32_t *len)
{
    *len = kv_get_u16(blk + 2);
    return blk + SST_ENTRY_HEADER;
}

/* Decodes entry i of a block: blk is the payload, offs its offsets array
 * (which ends the entry area), count its entry count, i < count.  The
 * block header must have been checked.  Returns 0, or -1 if the entry does
 * not lie inside the entry area, its overlap is longer than the base key, or
 * its key is shorter than a version suffix. */
static inline int sst_ent_decode(const uint8_t *blk, const uint8_t *offs, uint32_t count,
                                 uint32_t i, sst_ent *e)
{
    size_t end = (size_t)(offs - blk);
    size_t off = kv_get_u32(offs + (size_t)i * 4);
    size_t next = i + 1 < count ? kv_get_u32(offs + (size_t)(i + 1) * 4) : end;
    size_t room;

    if (next > end || off > next || next - off < SST_ENTRY_HEADER) return -1;
    room = next - off - SST_ENTRY_HEADER;
    e->overlap = kv_get_u16(blk + off);
    e->diff_len = kv_get_u16(blk + off + 2);
    if (e->diff_len > room || e->overlap > kv_get_u16(blk + 2) ||
        e->overlap + e->diff_len < KV_TS_SIZE)
        return -1;
    e->diff = blk + off + SST_ENTRY_HEADER;
    e->val = e->diff + e->diff_len;
    e->val_len = room - e->diff_len;
    return 0;
}

/* kv_compress (sst.h) with a zstd compression context kept across calls in
 * *zctx (created on first use; NULL = one-shot, as kv_compress).  A fresh
 * context per block costs more than compressing a 4 KiB block. */
kv_status kv_compress_ctx(void **zctx, kv_compression type, int level, const uint8_t *in,
                          size_t n, uint8_t **out, size_t *cap, size_t *out_len,
                          kv_compression *used, kv_err *err);
void kv_compress_ctx_free(void *zctx);

#endif
