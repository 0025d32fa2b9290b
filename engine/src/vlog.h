/*
 * vlog.h - value logs: where values at or above ValueThreshold live
 * (WiscKey / Badger's value log).  The LSM keeps a 16-byte pointer
 * {file id, entry length, offset} in their place.
 *
 * Files NNNNNN.vlog in ValueDir are append-only.  The one "head" file is
 * appended to by the group-commit leader; when it passes ValueLogFileSize
 * or ValueLogMaxEntries it is sealed and a new head started, never
 * splitting one batch across files.  The file table (sizes, entry counts,
 * discard counts, state) is in the shared region; each process maps the
 * files it reads, lazily, read-only.
 *
 * Ordering rules (why a pointer never dangles after a crash):
 *  1. A batch's vlog entries are written before its WAL record.
 *  2. With sync, vlog files are fsynced before the WAL record is written,
 *     and the record says so (KV_WAL_F_VLOG_SYNCED); at replay a pointer
 *     that does not resolve ends the log if the record was not synced and
 *     is corruption if it was.  (A small synced group may write its values
 *     inline in the WAL instead and leave the vlog unsynced: writer.h.)
 *  3. A memtable's table is installed only after every vlog byte it may
 *     point to is synced (kv_vlog_sync).
 *
 * A file rewritten by value-log GC becomes "doomed": it is deleted once no
 * reader in any process can reach it - every view that existed when GC
 * finished is gone, and every registered snapshot is at or past the
 * version of GC's last rewrite.  A file whose every key lies under a
 * dropped prefix is doomed the same way without being read
 * (kv_vlog_mark_dropped): TRUNCATE and DROP TABLE cost no value-log reads.
 */
#ifndef KV_VLOG_H
#define KV_VLOG_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "env.h"
#include "kv.h"
#include "sync.h"
#include "vlog_format.h"

#define KV_VF_ACTIVE 1u  /* the head */
#define KV_VF_SEALED 2u
#define KV_VF_DOOMED 3u  /* rewritten or dropped, waiting to be unreachable */
#define KV_VF_DAMAGED 4u /* sealed; GC found damage in it and leaves it alone */
#define KV_VF_OWNED 5u   /* a large transaction's own, being written (vlog_bulk.h):
                          * GC, drops and syncs leave it alone; sealed at commit */

typedef struct kv_vfile {
    uint32_t fid;
    uint32_t state;
    uint64_t size;          /* bytes written, header included */
    uint64_t synced;        /* bytes known durable */
    uint64_t entries;
    uint64_t discard;       /* bytes of entries known dead */
    uint64_t doom_view;     /* doomed: every view with id <= this must be gone */
    uint64_t doom_version;  /* doomed: the snapshot horizon must reach this */
    uint64_t doom_wal;      /* doomed: WALs up to this id (older records may
                             * point into the file) must be gone; 0 none */
    kv_vkeys keys;          /* of every entry (kept in DISCARD once sealed) */
    uint32_t dropped;       /* every entry lies under a drop (kv_vlog_mark_dropped):
                             * GC frees the file without reading it */
} kv_vfile;

typedef struct kv_vlog_shared {
    kv_mutex mu;            /* the file table; leaf lock */
    uint64_t files;         /* heap offset of kv_vfile[cap] */
    uint32_t n, cap;
    uint32_t head;          /* fid of the head file, 0 before the first */
    uint32_t gc_running;
    _Atomic uint64_t deletion_epoch;
    uint64_t discard_version; /* bumped on every change DISCARD records (counts, seals) */
    _Atomic uint64_t gc_runs, gc_rewritten_entries, gc_rewritten_bytes, gc_files_deleted;
    _Atomic uint64_t value_reads, bytes_appended, direct_bytes;
} kv_vlog_shared;

/* One mapped vlog file in this process.  map, map_len and known_size
 * change under the cache's mutex (a longer mapping when the file grew)
 * while holders of a reference read them without it: map_len is stored
 * after map (release) and loaded before it (acquire), so a reader that saw
 * a length sees a mapping at least that long.  A replaced mapping stays
 * mapped while referenced (until close). */
typedef struct kv_vhandle {
    uint32_t fid;
    kv_file *file;
    const uint8_t *_Atomic map;
    _Atomic uint64_t map_len;    /* bytes mapped (may exceed the file) */
    _Atomic uint64_t known_size; /* file size last seen */
    _Atomic int32_t refs;        /* local users + 1 while cached */
    struct kv_vhandle *next;
} kv_vhandle;

/* The handle's mapping (valid for the length that was checked before). */
static inline const uint8_t *kv_vhandle_map(kv_vhandle *h)
{
    return atomic_load_explicit(&h->map, memory_order_acquire);
}

typedef struct kv_vcache {
    pthread_mutex_t mu;
    kv_vhandle *list;
    _Atomic uint64_t seen_epoch;
    kv_file *head_file;     /* this process's write handle on the head */
    uint32_t head_fid;
    struct kv_vbulk *bulk;  /* this process's large transactions' writers (vlog_bulk.h) */
    _Atomic int n_bulk;
} kv_vcache;

struct kv_db;

/* ---- process handles ---- */
void kv_vcache_init(kv_vcache *c);
void kv_vcache_destroy(struct kv_db *db);

/* ---- open / close (host) ---- */

/* Finds the vlog files, removes empty ones that are not the last, trims
 * the last one's torn tail (unless read-only), loads DISCARD.  Does not
 * start a head: the first write does (kv_vlog_start_head at open). */
kv_status kv_vlog_open(struct kv_db *db, kv_err *err);
/* Starts a fresh head file (always done at open, unless read-only). */
kv_status kv_vlog_start_head(struct kv_db *db, kv_err *err);
/* Persists DISCARD (if changed) and syncs what is unsynced. */
kv_status kv_vlog_close(struct kv_db *db, kv_err *err);

/* ---- writing (group-commit leader) ---- */

/* One batch's worth of vlog entries to place. */
typedef struct kv_vlog_piece {
    uint8_t *vbuf;          /* framed entries */
    size_t vlen;
    uint32_t n_entries;
    uint8_t *rec;           /* the batch's WAL record, pointers get patched */
    const uint32_t *ptrs;   /* triples: record offset of pointer, vbuf offset, frame length */
    uint32_t n_ptrs;
    const kv_vkeys *keys;   /* of the entries in vbuf (NULL: unknown) */
} kv_vlog_piece;

/* Appends every piece to the head (rotating between pieces as needed),
 * patches the pointers in the records, and with sync makes every vlog
 * byte written so far durable.  Commits stay buffered, so values just
 * written are read from memory (a bulk load's values bypass the page
 * cache in files of their own: vlog_bulk.h).  *hw_fid and *hw_end get
 * the furthest position written.
 * REQUIRES: caller is the leader. */
kv_status kv_vlog_write(struct kv_db *db, kv_vlog_piece *pieces, int n, int sync,
                        uint32_t *hw_fid, uint64_t *hw_end, kv_err *err);

/* Seals the head and starts a new one (GC of the head; kv_flush).
 * REQUIRES: caller is the leader. */
kv_status kv_vlog_rotate(struct kv_db *db, kv_err *err);

/* Makes every vlog byte written so far durable (flush thread, before a
 * table that may point to them is installed). */
kv_status kv_vlog_sync(struct kv_db *db, kv_err *err);

/* ---- reading ---- */

/* Resolves a pointer: maps the file if needed, checks bounds and the
 * frame (the whole checksum when VerifyValueChecksum or verify), decodes
 * the entry.  *pin is NULL or a handle from an earlier read, kept when it
 * maps the entry (released and replaced otherwise), so a reader of many
 * entries takes no lock per entry; afterwards, also after an error, it is
 * NULL or a handle the caller releases with kv_vlog_release.  KV_CORRUPTION
 * with detail for a pointer to a missing file or beyond its end. */
kv_status kv_vlog_read(struct kv_db *db, const kv_vptr *p, int verify, kv_vlog_entry *e,
                       kv_vhandle **pin, kv_err *err);
void kv_vlog_release(struct kv_db *db, kv_vhandle *h);

/* A referenced handle on file fid mapped over at least [0, need). */
kv_status kv_vlog_map(struct kv_db *db, uint32_t fid, uint64_t need, kv_vhandle **out,
                      kv_err *err);

/* Tells the kernel the entry will be read soon (iterator prefetch).
 * Returns 1 if its first page was already in memory (nothing to do), 0 if
 * a read was started, -1 if the pointer could not be resolved.  With
 * check_only, only answers whether it is in memory. */
int kv_vlog_prefetch(struct kv_db *db, const kv_vptr *p, int check_only);
/* Pulls a resident entry into the CPU caches.  *pin as for kv_vlog_read. */
void kv_vlog_prefetch_cache(struct kv_db *db, const kv_vptr *p, kv_vhandle **pin);

/* ---- discard statistics and GC (vlog_gc.c) ---- */

/* Marks the sealed files whose every entry lies under the prefix just
 * dropped as wholly dead, first sealing the head if it is one of them;
 * GC then frees them without reading them.  Only files written since open
 * (whose keys were seen) and below every spilling transaction's pin
 * qualify.  Why that is safe: the drop is applied by the leader, alone,
 * so every entry already written belongs to a commit ordered before the
 * drop, to a transaction that was abandoned, or to a spilling transaction
 * still running, and those pin their files.
 * REQUIRES: caller is the leader, applying the drop. */
void kv_vlog_mark_dropped(struct kv_db *db, const uint8_t *prefix, uint32_t n);

/* Counts bytes of file fid as dead (compaction dropped their pointer). */
void kv_vlog_discard(struct kv_db *db, uint32_t fid, uint64_t bytes);
/* Value-log bytes per file, gathered before they (may) count as dead. */
typedef struct kv_fid_tally {
    struct kv_fid_bytes {
        uint32_t fid;
        uint64_t bytes;
    } *e;
    size_t n, cap;
} kv_fid_tally;
/* Adds bytes of file fid; -1 if out of memory. */
int kv_fid_tally_add(kv_fid_tally *t, uint32_t fid, uint64_t bytes);
/* kv_vlog_discard of every file's bytes. */
void kv_fid_tally_discard(struct kv_db *db, const kv_fid_tally *t);
void kv_fid_tally_free(kv_fid_tally *t);
struct kv_table_meta;
/* Counts every value-log entry a table points to as dead: the table left
 * the version without compaction reading it (wholly inside a dropped
 * prefix).  The caller keeps a version that lists the table pinned. */
kv_status kv_vlog_discard_table(struct kv_db *db, const struct kv_table_meta *tm, kv_err *err);
/* Deletes doomed files nobody can reach any more; returns how many. */
int kv_vlog_reap(struct kv_db *db);
/* Loads DISCARD into the file table (open, after kv_vlog_open); asks for
 * a recount unless a clean close wrote it. */
kv_status kv_vlog_load_discard(struct kv_db *db, kv_err *err);
/* Writes DISCARD if the counts changed since it was last written; clean
 * (the close) writes it in any case, marked as complete. */
kv_status kv_vlog_persist_discard(struct kv_db *db, int clean, kv_err *err);
/* Counts again what each sealed file holds that no newest version points
 * to, and raises its discard count to that: after a crash (a large
 * commit's files whose tables never got installed, values whose WAL
 * records replayed inline) or a lost DISCARD, nothing else would. */
kv_status kv_vlog_recount(struct kv_db *db, kv_err *err);
/* Host: the background GC thread. */
kv_status kv_vlog_gc_start(struct kv_db *db, kv_err *err);
void kv_vlog_gc_stop(struct kv_db *db);

/* Internal: the file-table entry of fid (vlog mu held), or NULL. */
kv_vfile *kv_vlog_file(struct kv_db *db, uint32_t fid);
/* The path of value-log file fid. */
void kv_vlog_path(struct kv_db *db, char *out, size_t cap, uint32_t fid);
/* Adds a zeroed entry for fid (NULL and err set if the heap is full). */
kv_vfile *kv_vlog_table_add(struct kv_db *db, uint32_t fid, kv_err *err);

#endif
