/*
 * vlog_format.h - the bytes of a value-log file (NNNNNN.vlog) and of a
 * value pointer.  Pure encoding and decoding, no I/O (fuzzed directly).
 *
 * File:  48-byte header (u32 magic "KVVL", u32 format version, u64 file id,
 *        u64 encryption key id (0 = plain), 16-byte IV, u32 reserved,
 *        u32 checksum of the first 44 bytes), then entries.
 * Entry: a frame (frame.h) whose payload is
 *        u8 meta | u8 user meta | uvarint key length | uvarint value length |
 *        uvarint expires_at | key | value
 * Value pointer (what the LSM stores instead of a large value): 16 bytes,
 *        u32 file id | u32 entry length (whole frame) | u64 entry offset.
 * DISCARD (the value-log statistics file): per file, the bytes known dead
 *        and the range of its keys.
 * Byte-exact description: doc/FORMATS.md.
 */
#ifndef KV_VLOG_FORMAT_H
#define KV_VLOG_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#include "coding.h"

#define KV_VLOG_MAGIC 0x4C56564Bu /* "KVVL" */
#define KV_VLOG_VERSION 1u
#define KV_VLOG_HEADER_SIZE 48u
#define KV_VPTR_SIZE 16u

typedef struct kv_vptr {
    uint32_t fid;
    uint32_t len;     /* bytes of the whole entry frame */
    uint64_t offset;  /* of the entry frame in the file */
} kv_vptr;

static inline void kv_vptr_encode(uint8_t *p, const kv_vptr *v)
{
    kv_put_u32(p, v->fid);
    kv_put_u32(p + 4, v->len);
    kv_put_u64(p + 8, v->offset);
}

/* 0 on success, -1 if n is not a pointer's size. */
static inline int kv_vptr_decode(const uint8_t *p, size_t n, kv_vptr *v)
{
    if (n != KV_VPTR_SIZE) return -1;
    v->fid = kv_get_u32(p);
    v->len = kv_get_u32(p + 4);
    v->offset = kv_get_u64(p + 8);
    return 0;
}

/* A decoded entry; key and value point into the entry's bytes. */
typedef struct kv_vlog_entry {
    uint8_t meta, user_meta;
    uint64_t expires_at;
    const uint8_t *key, *value;
    size_t klen, vlen;
} kv_vlog_entry;

/* The keys of a set of entries (a batch's, a file's), as far as a drop
 * needs them: the least and greatest key cut to KV_VKEY_CUT bytes.
 * Cutting keeps order, so when both cut ends start with a prefix of at
 * most KV_VKEY_CUT bytes, every key in the set does (kv_vkeys_under). */
#define KV_VKEY_CUT 16u
#define KV_VKEYS_UNKNOWN 0u /* e.g. a file found at open: its keys were not seen */
#define KV_VKEYS_NONE 1u    /* no entry yet */
#define KV_VKEYS_RANGE 2u
typedef struct kv_vkeys {
    uint8_t state, min_len, max_len;
    uint8_t min[KV_VKEY_CUT], max[KV_VKEY_CUT];
} kv_vkeys;

/* Widens k by key (an UNKNOWN k stays so). */
void kv_vkeys_add(kv_vkeys *k, const uint8_t *key, size_t klen);
/* Widens into by from; from NULL or UNKNOWN makes into UNKNOWN. */
void kv_vkeys_merge(kv_vkeys *into, const kv_vkeys *from);
/* 1 if every key of k starts with prefix[0..n). */
int kv_vkeys_under(const kv_vkeys *k, const uint8_t *prefix, size_t n);

/* Bytes of the framed entry for these sizes. */
size_t kv_vlog_entry_size(size_t klen, size_t vlen, uint64_t expires_at);

/* Writes the framed entry at out (kv_vlog_entry_size bytes); returns its
 * size. */
size_t kv_vlog_entry_encode(uint8_t *out, uint8_t meta, uint8_t user_meta,
                            uint64_t expires_at, const void *key, size_t klen,
                            const void *value, size_t vlen);

/* Parses the framed entry in buf[0..n) (exactly one frame).  With verify,
 * the payload checksum is checked too; the length check always is.
 * 0 on success, -1 if malformed or (with verify) damaged. */
int kv_vlog_entry_decode(const uint8_t *buf, size_t n, int verify, kv_vlog_entry *e);

void kv_vlog_header_encode(uint8_t *hdr, uint64_t fid, uint64_t key_id, const uint8_t *iv);
/* 0 if hdr[0..n) is a valid header (of file expect_fid unless 0). */
int kv_vlog_header_check(const uint8_t *hdr, size_t n, uint64_t expect_fid);

/* DISCARD: a 16-byte header (u32 magic "KVDS", u32 version, u32 count,
 * u32 flags), count entries, u64 checksum of everything before it.  Flag
 * KV_DISCARD_CLEAN: written by a clean close, so the counts are complete
 * (otherwise the next open counts again, see kv_vlog_recount).
 * Version 1 entries (16 bytes) carry a file id and its dead bytes; version
 * 2 entries (48 bytes) add the file's key range, recorded for sealed files
 * only (a file no longer written to), so that a drop after a reopen can
 * still free a file without reading it, and a flag for a file a drop has
 * already emptied (kv_vlog_mark_dropped), so that it is still freed unread
 * after a reopen.  Written as version 2. */
#define KV_DISCARD_MAGIC 0x5344564Bu /* "KVDS" */
#define KV_DISCARD_VERSION 2u
#define KV_DISCARD_CLEAN 1u

typedef struct kv_discard_ent {
    uint32_t fid;
    uint64_t discard;  /* bytes of entries known dead */
    kv_vkeys keys;     /* KV_VKEYS_RANGE, or KV_VKEYS_UNKNOWN: not recorded */
    uint32_t dropped;  /* 1: every entry lies under a durable drop */
} kv_discard_ent;

/* Bytes of a DISCARD image of n entries (written as KV_DISCARD_VERSION). */
size_t kv_discard_size(uint32_t n);
/* Writes the header at buf (kv_discard_size(n) bytes in all). */
void kv_discard_encode_header(uint8_t *buf, uint32_t n, uint32_t flags);
/* Writes entry i (a range is recorded only when e->keys is a RANGE). */
void kv_discard_encode_entry(uint8_t *buf, uint32_t i, const kv_discard_ent *e);
/* Writes the checksum, after every entry is in place. */
void kv_discard_seal(uint8_t *buf, uint32_t n);
/* Checks a whole image: magic, a known version and flags, the size for
 * its count, the checksum and every entry (lengths at most KV_VKEY_CUT, least key not
 * after the greatest, unused bytes zero).  0 with *count and *version set,
 * -1 if anything is wrong. */
int kv_discard_check(const uint8_t *buf, size_t n, uint32_t *count, uint32_t *version);
/* The flags of an image kv_discard_check accepted (0 for version 1). */
uint32_t kv_discard_flags(const uint8_t *buf);
/* Entry i of an image kv_discard_check accepted. */
void kv_discard_entry(const uint8_t *buf, uint32_t version, uint32_t i, kv_discard_ent *e);

#endif
