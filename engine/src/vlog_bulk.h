/*
 * vlog_bulk.h - a large transaction's own value-log files.
 *
 * A transaction that spills (pending.h) writes its values once, before it
 * commits.  Through the shared head that was one synchronous direct write
 * per 4 MiB: the loading backend waited for the disk about a quarter of
 * its time.  Instead the transaction gets value-log files of its own
 * (NNNNNN.vlog, ids from the shared counter) and queues their writes
 * (env aio_*, kernel AIO on posix) while it goes on encoding rows, so the
 * disk works while the CPU does.  Nobody else appends to these files, so a
 * write still in flight leaves no hole under anyone else's data.
 *
 * Lifecycle of a file:
 *  - made with a zeroed header, blocks reserved (env prealloc: a queued
 *    write that extends an ext4 file completes synchronously), registered
 *    in the shared table as KV_VF_OWNED: GC, drops and syncs leave it
 *    alone; the transaction's vlog pin keeps it from drop marking even
 *    after it is sealed, until the commit is applied;
 *  - filled through KV_VLOG_BULK_BUFS aligned buffers of KV_VLOG_BULK_BUF
 *    bytes, each queued when full; a read of the transaction's own values
 *    (only the owner holds pointers into the file) first writes out
 *    everything placed so far (kv_vbulk_before_read);
 *  - full (ValueLogFileSize or ValueLogMaxEntries, never splitting a
 *    chunk): written out, truncated to its entries, the next one made;
 *  - commit (kv_vbulk_commit, before the commit's tables are installed):
 *    the real header is written, each file fsynced, the directory synced,
 *    the files become KV_VF_SEALED - ordinary value logs;
 *  - abort: the files are marked wholly dead (as a drop marks them), so GC
 *    frees them without reading them.
 * A crash before the commit leaves files whose header is zeros, which the
 * next open removes as empty (vlog.c): nothing can point into them.
 *
 * Belongs to one transaction (one thread at a time); the registry of this
 * process's writers (for kv_vbulk_before_read) is in the vcache.
 */
#ifndef KV_VLOG_BULK_H
#define KV_VLOG_BULK_H

#include "batch.h"
#include "kv.h"

#define KV_VLOG_BULK_BUF (4u << 20)     /* bytes per queued write */
#define KV_VLOG_BULK_BUFS 3             /* buffers: one filling, up to two queued */
#define KV_VLOG_BULK_RESERVE (64u << 20) /* blocks reserved at a time */

struct kv_db;
typedef struct kv_vbulk kv_vbulk;

/* Places the chunk's value-log entries (whole) in the transaction's own
 * file, making *vb on first use, and patches their pointers into the
 * chunk's record.  The bytes reach the disk later (queued). */
kv_status kv_vbulk_append(struct kv_db *db, kv_vbulk **vb, kv_batch *chunk, kv_err *err);

/* Before a read of [0, end) of file fid in this process: if fid is one of
 * this process's bulk files with bytes below end not yet on disk, writes
 * out everything placed so far and waits for it.  Only the owner can hold
 * such a pointer, so the caller is the owner's thread. */
void kv_vbulk_before_read(struct kv_db *db, uint32_t fid, uint64_t end);

/* Makes the files ordinary, durable value logs (see above).  After it the
 * writer holds no buffers; kv_vbulk_free still releases it. */
kv_status kv_vbulk_commit(struct kv_db *db, kv_vbulk *vb, kv_err *err);

/* The commit failed before its tables were installed (a conflict, an
 * error): nothing points into the files after all. */
void kv_vbulk_commit_failed(kv_vbulk *vb);

/* Releases the writer (NULL: nothing).  Files of a transaction that did
 * not reach kv_vbulk_commit (or whose commit failed) are left for GC to
 * free unread.  After kv_vbulk_commit they stay: a failed commit whose
 * tables may have been installed must not lose them. */
void kv_vbulk_free(struct kv_db *db, kv_vbulk *vb);

#endif
