/*
 * frame.h - checksummed record framing shared by the WAL, the MANIFEST
 * and the value log, and the rule that tells a torn tail from corruption.
 *
 * Frame:  u32 payload length | u32 length check | u32 payload checksum |
 *         payload
 * The length check is kv_checksum32 of the four length bytes, so a damaged
 * length is recognised as damage instead of being mistaken for a record
 * that runs past the end of the file.  The payload checksum is
 * kv_checksum32 of the payload.
 *
 * Reading a file of frames from the start, at each offset:
 *   - end of file, or nothing but zero bytes left (preallocated space):
 *     clean end;
 *   - fewer than 12 bytes left, or a valid length that runs past the end:
 *     torn tail (a write cut short by a crash);
 *   - a bad payload checksum on the last frame (only zeros after it):
 *     torn tail;
 *   - anything else wrong (bad length check, bad checksum followed by more
 *     data): corruption (but see kv_frame_unwritten).
 */
#ifndef KV_FRAME_H
#define KV_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define KV_FRAME_HDR 12u

typedef enum kv_frame_result {
    KV_FRAME_OK = 0,      /* a valid frame: *payload_len set */
    KV_FRAME_END = 1,     /* clean end of the log */
    KV_FRAME_TORN = 2,    /* torn tail starting at off */
    KV_FRAME_CORRUPT = 3  /* damage at off with data after it */
} kv_frame_result;

/* Fills the 12-byte header in front of payload_len payload bytes. */
void kv_frame_seal(uint8_t *frame, size_t payload_len);

/* 1 if the 8 header bytes at hdr hold a length with a valid check. */
int kv_frame_len_ok(const uint8_t *hdr);

/* Classifies the frame at data[off..size). */
kv_frame_result kv_frame_next(const uint8_t *data, size_t size, size_t off,
                              size_t *payload_len);

/* For a log written over zero-filled space (the WAL, writer.c): 1 if the
 * damaged frame at data[off..size) shows space that was never written -
 * its header is zeros, or a whole page-aligned page within its extent
 * is.  Writeback after such an overwrite can reach the disk out of order,
 * so a crash may leave a hole of zeros in front of later data: that is a
 * torn tail, not corruption (as in PostgreSQL, an unreadable record ends
 * the log there). */
int kv_frame_unwritten(const uint8_t *data, size_t size, size_t off, size_t page);

/* The cheap part of kv_frame_next, for a reader that needs the payload of
 * only some frames: the payload length if the frame at data[off..size)
 * has an intact length that fits, else -1 (kv_frame_next then says what is
 * there).  The payload is unchecked until kv_frame_payload_ok. */
long kv_frame_peek(const uint8_t *data, size_t size, size_t off);
/* 1 if the payload of the frame at frame matches its checksum. */
int kv_frame_payload_ok(const uint8_t *frame, size_t payload_len);

#endif
