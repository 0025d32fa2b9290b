/*
 * wal.h - the write-ahead log of a memtable (NNNNNN.mem) and the record
 * format that write batches are encoded in.
 *
 * File:   header (16 bytes: u32 magic "KVWL", u32 format version, u64 file
 *         id), then records.
 * Record: a frame (frame.h: length, length check, payload checksum) whose
 *         payload is one batch.
 * Payload (one batch = one commit version):
 *         u64 version | u32 entry count | u8 flags | entries
 * Entry:  uvarint key length | key | uvarint value-struct length |
 *         value struct (ikey.h: meta, user meta, expires, value)
 *
 * A kv_batch (batch.c) is built directly in this form with the length,
 * checksum and version left blank; the group-commit leader fills them in
 * and writes the bytes as they are.  Byte-exact layout: doc/FORMATS.md.
 */
#ifndef KV_WAL_H
#define KV_WAL_H

#include <stddef.h>
#include <stdint.h>

#include "env.h"
#include "kv.h"

#define KV_WAL_MAGIC 0x4C57564Bu /* "KVWL" little-endian */
#define KV_WAL_VERSION 1u
#define KV_WAL_HEADER_SIZE 16u
#define KV_WAL_REC_HDR 12u                 /* frame header (frame.h) */
#define KV_WAL_PAYLOAD_HDR 13u             /* version + count + flags */
#define KV_WAL_PAGE 4096u                  /* unit of writeback (kv_frame_unwritten) */
#define KV_WAL_MAX_RECORD (1ull << 32) - 1 /* payload length is a u32 */

/* record flags (DO NOT CHANGE) */
#define KV_WAL_F_TXN_PART 0x01 /* part of a multi-record transaction, more follow */
#define KV_WAL_F_TXN_FIN 0x02  /* last record of a multi-record transaction */
#define KV_WAL_F_VLOG_SYNCED 0x04 /* every vlog entry this record points to was synced first */

/* Fills in length, checksum and version of an encoded record. */
void kv_wal_seal(uint8_t *rec, size_t rec_len, uint64_t version);

/* Iterates the entries of a record payload. */
typedef struct kv_wal_entry {
    const uint8_t *key;
    size_t klen;
    const uint8_t *vs;  /* value struct */
    size_t vslen;
} kv_wal_entry;

typedef struct kv_wal_cursor {
    const uint8_t *p, *end;
    uint32_t left;
} kv_wal_cursor;

/* Parses a payload header; -1 if malformed. */
int kv_wal_payload_open(const uint8_t *payload, size_t n, uint64_t *version, uint32_t *count,
                        uint8_t *flags, kv_wal_cursor *cur);
/* Next entry: 1 = got one, 0 = end, -1 = malformed. */
int kv_wal_next_entry(kv_wal_cursor *cur, kv_wal_entry *e);

/* Writes the 16-byte header of a new WAL file. */
void kv_wal_file_header(uint8_t *hdr, uint64_t file_id);

/* Replays a WAL file: calls fn for each valid record payload in order.
 * The log ends at the end of the file, at zeros (space zero-filled ahead
 * of the records, writer.c), or at a torn tail: a write cut short, or
 * space never written in front of later data (frame.h,
 * kv_frame_unwritten); *valid_end is where it ended, and *torn (if not
 * NULL) is 1 when a torn tail ended it.  Other damage followed by more
 * data is KV_CORRUPTION naming the file and offset.  fn may return an
 * error to stop, or KV_NOT_FOUND to declare this record the end of the
 * log (its value-log data never made it): replay then returns
 * KV_NOT_FOUND with *valid_end at that record. */
typedef kv_status (*kv_wal_record_fn)(void *ctx, const uint8_t *payload, size_t n,
                                      uint64_t offset, kv_err *err);
kv_status kv_wal_replay(kv_env *env, const char *path, uint64_t expect_id, kv_wal_record_fn fn,
                        void *ctx, uint64_t *valid_end, int *torn, kv_err *err);

/* Validates one framed record at buf[0..n): returns the payload length or
 * -1 if invalid/truncated (fuzzing, tools).  The payload must also hold a
 * batch header. */
long kv_wal_check_record(const uint8_t *buf, size_t n);

#endif
