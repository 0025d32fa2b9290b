/*
 * kv.h - the whole public contract of the kvsep engine.
 *
 * kvsep is an embedded, key-value-separated LSM engine modelled on BadgerDB
 * (the WiscKey design).  Keys and small values live in an LSM tree (memtable
 * + WAL, SSTables, leveled compaction); values at or above ValueThreshold
 * live in append-only value-log files and the LSM holds a pointer to them.
 *
 * Process model.  All state that several processes must see (memtables,
 * level metadata, write queue, counters, block cache) lives in one
 * contiguous "shared region".  kv_open() allocates that region itself for
 * standalone use.  A host (the PostgreSQL extension, or a test) can instead
 * supply the memory: it sizes it with kv_shared_size(), opens the engine into
 * it with kv_open_region() in one process (the "host", which also runs the
 * background threads), and any number of other processes kv_attach() to the
 * same region and read and write in-process.  The region may be mapped at
 * different addresses in different processes: it holds offsets, never
 * pointers.
 *
 * Errors.  Every fallible call returns a kv_status and, when the caller
 * passes a non-NULL kv_err, fills it with the status, the errno (if any) and
 * a message that names the file and offset where that applies.  Filling a
 * kv_err never allocates.  Bad input and bad data are statuses, never a crash.
 *
 * Thread safety.  A kv_db handle may be used by many threads at once.  A
 * kv_batch, kv_iter, kv_txn or kv_buf belongs to one thread at a time.
 */
#ifndef KV_H
#define KV_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status codes (DO NOT CHANGE the numbers: tools print them) ---------- */

typedef enum kv_status {
    KV_OK = 0,
    KV_NOT_FOUND = 1,   /* key absent (or deleted/expired) at the read version */
    KV_CONFLICT = 2,    /* transaction lost a conflict; nothing was applied */
    KV_CORRUPTION = 3,  /* on-disk data failed a check; message has file+offset */
    KV_IO = 4,          /* an I/O call failed; kv_err.sys_errno has errno */
    KV_NO_SPACE = 5,    /* disk full (ENOSPC/EDQUOT) or shared memory exhausted */
    KV_INVALID = 6,     /* bad argument or option; message names it */
    KV_LOCKED = 7,      /* directory locked by another process (pid in message) */
    KV_READ_ONLY = 8,   /* write attempted on a read-only database */
    KV_TOO_BIG = 9,     /* key or value over the engine's limits */
    KV_BUSY = 10,       /* shared region not ready (host still opening) */
    KV_CLOSED = 11,     /* database closed, or the host went away */
    KV_NO_MEMORY = 12,  /* malloc failed */
    KV_BAD_TXN = 13,    /* transaction already committed, discarded or failed */
    KV_NO_REWRITE = 14, /* value-log GC found nothing worth rewriting */
    KV_TIMEOUT = 15     /* a wait ran out of time */
} kv_status;

#define KV_ERRMSG_MAX 480

typedef struct kv_err {
    kv_status code;
    int sys_errno;             /* errno of the failing call, 0 if none */
    char msg[KV_ERRMSG_MAX];   /* NUL-terminated detail (file, offset, option) */
} kv_err;

/* Static English name of a status ("corruption", "i/o error", ...). */
const char *kv_status_str(kv_status st);

/* ---- options --------------------------------------------------------------
 * Field names follow Badger's Options; defaults (kv_options_default) follow
 * Badger v4 DefaultOptions unless noted.  kv_open() refuses an invalid
 * combination with KV_INVALID and a message naming the option.
 */

#define KV_PATH_MAX 1024

typedef enum kv_compression {
    KV_COMPRESS_NONE = 0,
    KV_COMPRESS_SNAPPY = 1,
    KV_COMPRESS_ZSTD = 2
} kv_compression;

typedef enum kv_checksum_mode {
    KV_VERIFY_NONE = 0,            /* never verify SSTable checksums */
    KV_VERIFY_ON_TABLE_READ = 1,   /* verify every block when a table is opened */
    KV_VERIFY_ON_BLOCK_READ = 2,   /* verify each block when it is read */
    KV_VERIFY_ON_TABLE_AND_BLOCK_READ = 3
} kv_checksum_mode;

typedef enum kv_log_level {
    KV_LOG_DEBUG = 0,
    KV_LOG_INFO = 1,
    KV_LOG_WARNING = 2,
    KV_LOG_ERROR = 3
} kv_log_level;

/* Called from any engine thread; must be thread-safe and must not call back
 * into the engine.  msg is only valid during the call. */
typedef void (*kv_log_fn)(void *ctx, kv_log_level level, const char *msg);

struct kv_env; /* see engine/src/env.h; NULL means the POSIX environment */

typedef struct kv_options {
    char dir[KV_PATH_MAX];        /* Dir: LSM files, MANIFEST, LOCK (required) */
    char value_dir[KV_PATH_MAX];  /* ValueDir: value logs; "" = same as dir */
    int sync_writes;              /* SyncWrites (0): every write fsyncs */
    int num_versions_to_keep;     /* NumVersionsToKeep (1) */
    int read_only;                /* ReadOnly (0): shared lock, no writes */
    kv_compression compression;   /* Compression (snappy) */
    int in_memory;                /* InMemory (0): no files at all */
    int64_t mem_table_size;       /* MemTableSize (64 MiB) */
    int64_t base_table_size;      /* BaseTableSize (2 MiB) */
    int64_t base_level_size;      /* BaseLevelSize (10 MiB) */
    int level_size_multiplier;    /* LevelSizeMultiplier (10) */
    int table_size_multiplier;    /* TableSizeMultiplier (2) */
    int max_levels;               /* MaxLevels (7) */
    int64_t value_threshold;      /* ValueThreshold (1 MiB; max 1 MiB) */
    int num_memtables;            /* NumMemtables (5) */
    int block_size;               /* BlockSize (4 KiB) */
    double bloom_false_positive;  /* BloomFalsePositive (0.01); 0 = no bloom */
    int64_t block_cache_size;     /* BlockCacheSize (256 MiB) */
    int64_t index_cache_size;     /* IndexCacheSize (0); see doc/INTERNALS.md */
    int num_level_zero_tables;    /* NumLevelZeroTables (5) */
    int num_level_zero_tables_stall; /* NumLevelZeroTablesStall (15) */
    int64_t value_log_file_size;  /* ValueLogFileSize (1 GiB - 1) */
    uint32_t value_log_max_entries; /* ValueLogMaxEntries (1,000,000) */
    int num_compactors;           /* NumCompactors (4) */
    int compact_l0_on_close;      /* CompactL0OnClose (0) */
    int zstd_compression_level;   /* ZSTDCompressionLevel (1) */
    int verify_value_checksum;    /* VerifyValueChecksum (0) */
    kv_checksum_mode checksum_verification_mode; /* ChecksumVerificationMode (none) */
    int detect_conflicts;         /* DetectConflicts (1) */
    int bypass_lock_guard;        /* BypassLockGuard (0) */
    uint8_t encryption_key[32];   /* EncryptionKey: 0, 16, 24 or 32 bytes */
    int encryption_key_len;
    int64_t encryption_key_rotation_seconds; /* EncryptionKeyRotationDuration (10 days) */

    /* kvsep additions (not in Badger). */
    int64_t shared_heap_size;     /* bytes of the region's metadata heap (0 = derived) */
    int64_t manifest_rewrite_threshold; /* rewrite MANIFEST past this many deletions (10000) */
    int64_t conflict_table_size;  /* bytes of shared conflict-detection table (16 MiB) */
    int64_t max_txn_memory;       /* a transaction's pending writes spill to disk past this (64 MiB) */
    int max_attached_processes;   /* slots for kv_attach()ed processes (64) */
    int auto_vlog_gc;             /* run value-log GC from a background thread (1) */
    double auto_vlog_gc_ratio;    /* discard ratio the automatic GC uses (0.5) */

    /* Process-local, not shared with attached processes. */
    struct kv_env *env;           /* NULL = POSIX files */
    kv_log_fn log_fn;             /* NULL = messages to stderr at WARNING+ */
    void *log_ctx;
    kv_log_level log_level;       /* lowest level passed to log_fn (INFO) */
} kv_options;

/* Fills *opt with the documented defaults for a database in dir. */
void kv_options_default(kv_options *opt, const char *dir);

/* Checks *opt; KV_INVALID with the offending option's name in err->msg. */
kv_status kv_options_validate(const kv_options *opt, kv_err *err);

/* ---- open / close -------------------------------------------------------- */

typedef struct kv_db kv_db;

/* Opens (creating if needed) the database described by opt, in a region it
 * allocates itself, and starts the background threads.  Order of work (as
 * Badger's Open): lock Dir (and ValueDir), open or create MANIFEST, replay
 * memtable WALs and flush them, open and validate tables, open value logs,
 * start flush and compaction threads.
 * Errors: KV_INVALID (options), KV_LOCKED (another process holds the lock;
 * message has its pid), KV_CORRUPTION (manifest or table damage, missing
 * table), KV_IO, KV_NO_MEMORY. */
kv_status kv_open(const kv_options *opt, kv_db **db, kv_err *err);

/* Bytes of shared region that opt needs (including the block cache). */
size_t kv_shared_size(const kv_options *opt);

/* As kv_open(), but the region is the caller's: size bytes at region, at
 * least kv_shared_size(opt), suitably aligned (16 bytes) and shared with the
 * processes that will attach.  The calling process becomes the host.  The
 * region's previous contents are ignored and re-initialised. */
kv_status kv_open_region(const kv_options *opt, void *region, size_t size,
                         kv_db **db, kv_err *err);

/* Per-process settings of an attached process. */
typedef struct kv_attach_options {
    struct kv_env *env;   /* NULL = POSIX; must match the host's files */
    kv_log_fn log_fn;
    void *log_ctx;
    kv_log_level log_level;
} kv_attach_options;

/* Attaches the calling process to a region opened by a host.  KV_BUSY if the
 * host has not finished opening yet (retry), KV_CLOSED if it has closed or
 * failed, KV_INVALID if region is not a kvsep region or the database is
 * in-memory, KV_NO_SPACE if all attach slots are taken. ao may be NULL. */
kv_status kv_attach(void *region, const kv_attach_options *ao, kv_db **db,
                    kv_err *err);

/* Waits up to timeout_ms for a host to make region ready, then attaches. */
kv_status kv_attach_wait(void *region, const kv_attach_options *ao, int timeout_ms,
                         kv_db **db, kv_err *err);

/* Releases an attached process's handle (its files and mappings).  The
 * database stays open for the host and the other processes. */
void kv_detach(kv_db *db);

/* KV_OK if the handle can be used: the database is open, and for an
 * attached handle, it is still the incarnation it attached to (else
 * KV_CLOSED: detach and attach again). */
kv_status kv_usable(kv_db *db, kv_err *err);

/* Host only: flushes memtables unless the database is in-memory or
 * read-only (and compacts L0 first if CompactL0OnClose), stops the
 * background threads, releases the directory locks, frees the handle.  A
 * database with a sticky background error is closed without flushing.
 * Returns the first error met; the handle is freed in every case. */
kv_status kv_close(kv_db *db, kv_err *err);

/* ---- buffers ------------------------------------------------------------- */

/* A growable buffer that reads fill; reuse it across calls, free it once. */
typedef struct kv_buf {
    char *data;
    size_t len;
    size_t cap;
} kv_buf;

void kv_buf_free(kv_buf *buf);

/* ---- versions and snapshots ---------------------------------------------
 * Every committed batch or transaction gets one version (commit timestamp);
 * versions increase by one per commit.  A read at version v sees exactly the
 * commits with version <= v.
 */

/* The newest version whose commit is fully applied (what a read sees). */
uint64_t kv_latest_version(kv_db *db);

/* A registered read version: while held, compaction keeps every version a
 * read at snap->version can see.  Reads at an explicit older version must be
 * made under a snapshot. */
typedef struct kv_snapshot kv_snapshot;
kv_status kv_snapshot_acquire(kv_db *db, kv_snapshot **snap, kv_err *err);
uint64_t kv_snapshot_version(const kv_snapshot *snap);
void kv_snapshot_release(kv_snapshot *snap);

/* ---- entries ------------------------------------------------------------- */

/* Limits (Badger's): keys 1..65000 bytes; values up to 1 GiB + 64 KiB. */
#define KV_MAX_KEY_SIZE 65000
#define KV_MAX_VALUE_SIZE ((int64_t)1 << 30 | 65536)

/* Per-entry metadata visible to readers. */
typedef struct kv_entry_meta {
    uint64_t version;     /* commit version of this entry */
    uint64_t expires_at;  /* unix seconds after which it reads as absent; 0 = never */
    uint8_t user_meta;    /* caller-defined byte */
    uint8_t deleted;      /* tombstone (only seen by all-versions iterators) */
    uint8_t in_vlog;      /* value lives in a value-log file */
} kv_entry_meta;

/* ---- write batches --------------------------------------------------------
 * A batch is applied atomically with one version, through the group-commit
 * writer queue: one leader writes every waiting batch, and fsyncs once if
 * any of them asked for sync.  Within a batch a later write to the same key
 * wins.
 */
typedef struct kv_batch kv_batch;

/* A batch that places values for db: values of at least ValueThreshold
 * bytes are framed for the value log as they are added (no copy later).
 * kv_batch_new() batches work with any database; kv_write re-places their
 * values once, in the caller's thread. */
kv_batch *kv_batch_new(void);
kv_batch *kv_batch_new_for(kv_db *db);
void kv_batch_free(kv_batch *b);
void kv_batch_clear(kv_batch *b);
/* Copy key and value into the batch.  KV_INVALID for an empty key,
 * KV_TOO_BIG for a key or value over the limits, KV_NO_MEMORY. */
kv_status kv_batch_put(kv_batch *b, const void *key, size_t klen, const void *val,
                       size_t vlen, kv_err *err);
kv_status kv_batch_put_ex(kv_batch *b, const void *key, size_t klen, const void *val,
                          size_t vlen, uint8_t user_meta, uint64_t expires_at,
                          kv_err *err);
kv_status kv_batch_delete(kv_batch *b, const void *key, size_t klen, kv_err *err);
size_t kv_batch_count(const kv_batch *b);
size_t kv_batch_bytes(const kv_batch *b);

typedef struct kv_write_options {
    int sync;   /* fsync before returning (also forced by SyncWrites) */
} kv_write_options;

/* Applies b atomically.  *version_out (if non-NULL) gets its version.
 * Errors: KV_READ_ONLY, KV_IO / KV_NO_SPACE (and every later write returns
 * the same sticky error), KV_TOO_BIG (batch larger than a memtable),
 * KV_CLOSED. */
kv_status kv_write(kv_db *db, const kv_write_options *wo, kv_batch *b,
                   uint64_t *version_out, kv_err *err);

/* ---- reads --------------------------------------------------------------- */

typedef struct kv_read_options {
    uint64_t version;     /* read version; 0 = kv_latest_version() */
    int fill_cache;       /* admit blocks read into the block cache (1) */
} kv_read_options;

/* Point get of the newest version <= the read version.  On KV_OK, val holds
 * the value (grown as needed) and *meta (if non-NULL) its metadata.  With
 * val NULL it is an existence check: no value is read, not even from a
 * value log.
 * KV_NOT_FOUND if absent, deleted or expired. */
kv_status kv_get(kv_db *db, const kv_read_options *ro, const void *key, size_t klen,
                 kv_buf *val, kv_entry_meta *meta, kv_err *err);

/* ---- iterators ------------------------------------------------------------
 * An iterator reads one consistent version of the database.  Direction is
 * fixed at creation (as Badger's IteratorOptions.Reverse).  Forward:
 * seek(k) goes to the first key >= k.  Reverse: seek(k) goes to the last
 * key <= k.  Bounds and prefix restrict every positioning call.
 */
typedef struct kv_iter_options {
    uint64_t version;        /* read version; 0 = latest (a snapshot is taken) */
    int reverse;             /* iterate in descending key order */
    const void *lower;       /* inclusive lower bound or NULL */
    size_t lower_len;
    const void *upper;       /* exclusive upper bound or NULL */
    size_t upper_len;
    const void *prefix;      /* only keys with this prefix, or NULL */
    size_t prefix_len;
    int key_only;            /* never read values from the value log */
    int prefetch_values;     /* read values of the next N entries ahead (0) */
    int all_versions;        /* every version and tombstone, newest first */
    int fill_cache;          /* admit blocks read into the block cache (1) */
} kv_iter_options;

typedef struct kv_iter kv_iter;

kv_status kv_iter_new(kv_db *db, const kv_iter_options *io, kv_iter **it, kv_err *err);
void kv_iter_rewind(kv_iter *it);          /* first key in iteration order */
void kv_iter_seek(kv_iter *it, const void *key, size_t klen);
void kv_iter_next(kv_iter *it);
int kv_iter_valid(const kv_iter *it);
const void *kv_iter_key(const kv_iter *it, size_t *klen);
void kv_iter_meta(const kv_iter *it, kv_entry_meta *meta);
/* The current value; valid until the next positioning call.  With key_only
 * it returns KV_INVALID. */
kv_status kv_iter_value(kv_iter *it, const void **val, size_t *vlen, kv_err *err);
/* KV_OK, or the error that ended the iteration early. */
kv_status kv_iter_status(const kv_iter *it, kv_err *err);
void kv_iter_free(kv_iter *it);
/* Keys the iterator has returned and values it read from value logs. */
void kv_iter_counters(const kv_iter *it, uint64_t *keys, uint64_t *vlog_reads);

/* ---- transactions -----------------------------------------------------------
 * Badger's model, across threads and processes: a transaction reads one
 * snapshot (the newest fully applied commit when it began), sees its own
 * pending writes, and commits atomically with one new version.  With
 * DetectConflicts, an update transaction fails to commit (KV_CONFLICT,
 * nothing applied) if a transaction that committed after it began wrote a
 * key it read.  Read-only transactions never conflict.  A transaction
 * that was committed, discarded or failed is poisoned: every later call
 * returns KV_BAD_TXN.  A transaction belongs to one thread at a time.
 *
 * Size: pending writes beyond a memory bound are spilled to disk in sorted
 * runs; a large transaction commits by ingesting tables through one
 * manifest change, atomically, as all-or-nothing across crashes.  There is
 * no transaction size limit besides disk space.
 */
typedef struct kv_txn kv_txn;

kv_status kv_txn_begin(kv_db *db, int update, kv_txn **txn, kv_err *err);
/* The version the transaction reads at. */
uint64_t kv_txn_read_version(const kv_txn *txn);
/* Moves the transaction's snapshot to the newest commit (READ COMMITTED:
 * one per statement); pending writes stay.  Reads made before are still
 * checked for conflicts against their own, older, snapshot. */
kv_status kv_txn_refresh(kv_txn *txn, kv_err *err);

/* As kv_get, at the transaction's snapshot, over its pending writes.  A
 * key read by an update transaction is checked for conflicts at commit. */
kv_status kv_txn_get(kv_txn *txn, const void *key, size_t klen, kv_buf *val,
                     kv_entry_meta *meta, kv_err *err);
kv_status kv_txn_set(kv_txn *txn, const void *key, size_t klen, const void *val, size_t vlen,
                     kv_err *err);
/* With a caller byte and an expiry (unix seconds, 0 = never): TTL. */
kv_status kv_txn_set_ex(kv_txn *txn, const void *key, size_t klen, const void *val,
                        size_t vlen, uint8_t user_meta, uint64_t expires_at, kv_err *err);
kv_status kv_txn_delete(kv_txn *txn, const void *key, size_t klen, kv_err *err);

/* An iterator over the snapshot merged with the pending writes (the
 * options' version is ignored).  Keys it returns count as read. */
kv_status kv_txn_iter_new(kv_txn *txn, const kv_iter_options *io, kv_iter **it, kv_err *err);

/* Whether gets and iterators record the keys they read for conflict
 * detection (on by default).  With it off, only keys passed to
 * kv_txn_note_read count - the keys whose reads decided a write. */
void kv_txn_track_reads(kv_txn *txn, int on);
kv_status kv_txn_note_read(kv_txn *txn, const void *key, size_t klen, kv_err *err);
/* Counts key as written by the transaction for conflict detection, without
 * writing it: a transaction that noted it as read conflicts with this one.
 * (A "token" that stands for a whole range makes range reads safe.) */
kv_status kv_txn_note_write(kv_txn *txn, const void *key, size_t klen, kv_err *err);

/* Statement read points: what one statement reads - the snapshot version
 * and the transaction's own writes up to a mark - taken once and used for
 * every read of the statement, however many writes it makes meanwhile and
 * however the transaction's snapshot moves (kv_txn_refresh).  The
 * snapshot keeps the version readable: release it when done. */
typedef struct kv_txn_point {
    uint64_t version;
    uint64_t mark;
} kv_txn_point;
kv_status kv_txn_point_take(kv_txn *txn, kv_txn_point *p, kv_snapshot **snap, kv_err *err);
kv_status kv_txn_get_at(kv_txn *txn, const kv_txn_point *p, const void *key, size_t klen,
                        kv_buf *val, kv_entry_meta *meta, kv_err *err);
kv_status kv_txn_iter_at(kv_txn *txn, const kv_txn_point *p, const kv_iter_options *io,
                         kv_iter **it, kv_err *err);

/* Savepoints: a mark, and undoing every write made since a mark. */
uint64_t kv_txn_mark(kv_txn *txn);
kv_status kv_txn_rollback_to(kv_txn *txn, uint64_t mark, kv_err *err);

typedef struct kv_commit_options {
    int sync;                 /* durable before returning (group-committed) */
} kv_commit_options;

/* Commits; *version_out gets the commit version.  KV_CONFLICT (retry the
 * whole transaction), KV_READ_ONLY, KV_IO / KV_NO_SPACE.  The transaction
 * is finished afterwards whatever the result; free it. */
kv_status kv_txn_commit(kv_txn *txn, const kv_commit_options *co, uint64_t *version_out,
                        kv_err *err);
/* Drops the pending writes and the snapshot; the transaction is finished. */
void kv_txn_discard(kv_txn *txn);
void kv_txn_free(kv_txn *txn);
/* Number of pending writes and their bytes (keys + values). */
void kv_txn_size(const kv_txn *txn, uint64_t *entries, uint64_t *bytes);

/* ---- bulk loading and dropping ------------------------------------------ */

/* A WriteBatch (Badger's): writes applied in batches as they fill, not
 * atomically as a whole; for bulk loads outside a transaction. */
typedef struct kv_write_batch kv_write_batch;
kv_status kv_write_batch_new(kv_db *db, kv_write_batch **wb, kv_err *err);
kv_status kv_write_batch_set(kv_write_batch *wb, const void *key, size_t klen, const void *val,
                             size_t vlen, kv_err *err);
kv_status kv_write_batch_set_ex(kv_write_batch *wb, const void *key, size_t klen,
                                const void *val, size_t vlen, uint8_t user_meta,
                                uint64_t expires_at, kv_err *err);
kv_status kv_write_batch_delete(kv_write_batch *wb, const void *key, size_t klen, kv_err *err);
/* Writes what is left; returns the first error any batch met. */
kv_status kv_write_batch_flush(kv_write_batch *wb, kv_err *err);
void kv_write_batch_free(kv_write_batch *wb);

/* Deletes every key starting with prefix (DropPrefix), or every key
 * (DropAll): tables entirely inside the range are dropped from the
 * version, the rest is hidden by a range deletion that compaction applies;
 * readers that started before keep their view.  Returns after the drop is
 * durable.  For conflict detection the drop writes the prefix itself: a
 * transaction that noted the bare prefix as read (kv_txn_note_read) before
 * the drop cannot commit after it; reads of single keys do not conflict
 * (callers that need more serialize drops with their own locks). */
kv_status kv_drop_prefix(kv_db *db, const void *prefix, size_t n, kv_err *err);
kv_status kv_drop_all(kv_db *db, kv_err *err);

/* ---- administration ------------------------------------------------------ */

/* Writes the mutable memtable out and waits until every memtable is in L0. */
kv_status kv_flush(kv_db *db, kv_err *err);

/* Compacts everything into the bottom-most level that holds data, waiting
 * for completion (Badger's Flatten). */
kv_status kv_compact_all(kv_db *db, kv_err *err);

/* Value-log GC (Badger's RunValueLogGC): rewrites the live entries of the
 * value-log files with at least `discard_ratio` of dead bytes (up to 8 of
 * them, the best first; the head file is sealed first if it qualifies),
 * at new versions, through conditional writes that lose to any concurrent
 * write of the same key; the files are deleted once no reader in any
 * process can reach them.  KV_NO_REWRITE if no file qualified, KV_BUSY if
 * another GC is running, KV_READ_ONLY, KV_INVALID for a ratio outside
 * (0, 1).  Callable from any attached process. */
kv_status kv_run_value_log_gc(kv_db *db, double discard_ratio, kv_err *err);

typedef struct kv_vlog_info {
    uint32_t fid;
    int state;              /* 1 head, 2 sealed, 3 rewritten (deleted when unreachable),
                             * 4 damaged (found by GC; kept, not collected),
                             * 5 being written by a large transaction (its own) */
    uint64_t size_bytes;
    uint64_t entries;
    uint64_t discard_bytes;
    double discard_ratio;
} kv_vlog_info;

/* Estimates the entries (versions included) and bytes stored for user
 * keys in [lo, hi) (hi NULL: no upper bound) from table metadata and a
 * sample of the memtables - cheap enough for query planning. */
kv_status kv_estimate_range(kv_db *db, const void *lo, size_t lo_len, const void *hi,
                            size_t hi_len, uint64_t *keys, uint64_t *bytes, kv_err *err);

/* Fills up to max entries; returns the number of value-log files. */
int kv_get_vlog_files(kv_db *db, kv_vlog_info *out, int max);

/* Statistics. */
typedef struct kv_level_info {
    int level;
    int num_tables;
    uint64_t size_bytes;
    uint64_t target_bytes;
    uint64_t num_keys;
    double score;
} kv_level_info;

typedef struct kv_table_info {
    uint64_t id;
    int level;
    uint64_t size_bytes;
    uint64_t num_keys;
    uint64_t max_version;
    int ingested;           /* written by a large transaction's commit (every entry at max_version) */
    char smallest[64];      /* printable prefix of the smallest user key */
    char largest[64];
} kv_table_info;

typedef struct kv_stats {
    uint64_t writes;          /* batches applied */
    uint64_t write_groups;    /* leader rounds of the writer queue */
    uint64_t syncs;           /* WAL fsyncs */
    uint64_t bytes_written;   /* WAL bytes */
    uint64_t memtable_flushes;
    uint64_t compactions;
    uint64_t compaction_bytes_read;
    uint64_t compaction_bytes_written;
    uint64_t write_stalls;    /* writes that waited for a flush (memtables full) */
    uint64_t write_stall_micros;
    uint64_t l0_stalls;       /* flushes that waited for L0 to shrink */
    uint64_t gets;
    uint64_t block_cache_hits;
    uint64_t block_cache_misses;
    uint64_t block_cache_inserts;
    uint64_t block_cache_evictions;
    uint64_t bloom_useful;    /* table probes a bloom filter avoided */
    uint64_t vlog_files;
    uint64_t vlog_bytes;      /* bytes in value-log files */
    uint64_t vlog_discard_bytes;
    uint64_t vlog_value_reads;
    uint64_t vlog_gc_runs;
    uint64_t vlog_gc_rewritten_entries;
    uint64_t vlog_gc_rewritten_bytes;
    uint64_t vlog_gc_files_deleted;
    uint64_t vlog_direct_bytes;  /* bulk-load value bytes written with O_DIRECT */
    uint64_t live_memtables;
    uint64_t latest_version;
    uint64_t drops_in_effect;  /* DropPrefix/DropAll ranges still being applied */
    int num_levels;
    int attached_processes;
} kv_stats;

void kv_get_stats(kv_db *db, kv_stats *st);
/* Fills up to max entries; returns the number of levels. */
int kv_get_levels(kv_db *db, kv_level_info *out, int max);
/* Fills up to max entries; returns the total number of tables. */
int kv_get_tables(kv_db *db, kv_table_info *out, int max);

/* The sticky background error (KV_OK if none). */
kv_status kv_background_error(kv_db *db, kv_err *err);

#ifdef __cplusplus
}
#endif
#endif /* KV_H */
