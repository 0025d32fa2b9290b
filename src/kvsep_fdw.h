/*
 * kvsep_fdw.h - what the PostgreSQL glue's files share.
 *
 * The glue (src/) talks to the engine only through engine/include/kv.h.
 * One engine per cluster: its shared region lives in PostgreSQL shared
 * memory (shmem.c), a background worker hosts it (worker.c), and every
 * backend attaches and reads and commits in-process (engine.c, xact.c).
 */
#ifndef KVSEP_FDW_H
#define KVSEP_FDW_H

#include "postgres.h"

#include "access/tupdesc.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "utils/relcache.h"

#include "kv.h"

/* ---- guc.c ---- */

extern char *kvsep_data_directory;
extern char *kvsep_value_directory;
extern int kvsep_memtable_size_mb;
extern int kvsep_num_memtables;
extern int kvsep_value_threshold;
extern int kvsep_block_cache_size_mb;
extern int kvsep_compression;
extern int kvsep_compactors;
extern int kvsep_value_log_file_size_mb;
extern int kvsep_max_txn_memory_mb;
extern bool kvsep_auto_vlog_gc;
extern double kvsep_vlog_gc_ratio;
extern int kvsep_attach_timeout_ms;
extern int kvsep_batch_size;
extern int kvsep_out_of_line_size;

void kvsep_define_gucs(void);
/* The engine options from the GUCs (dir resolved under DataDir). */
void kvsep_engine_options(kv_options *o);

/* ---- shmem.c ---- */

#define KVSEP_LOG_RING 64
#define KVSEP_MSG_MAX 480

/* Worker states, as kvsep_status() reports them. */
#define KVSEP_WORKER_STARTING 0
#define KVSEP_WORKER_READY 1
#define KVSEP_WORKER_FAILED 2
#define KVSEP_WORKER_STOPPED 3

/* Admin requests a backend hands to the worker (the engine host). */
#define KVSEP_ADMIN_NONE 0
#define KVSEP_ADMIN_COMPACT 1
#define KVSEP_ADMIN_VLOG_GC 2

typedef struct KvsepLogMsg
{
	int			level;			/* kv_log_level */
	char		msg[KVSEP_MSG_MAX];
} KvsepLogMsg;

/* The glue's own control block in shared memory (the engine's region
 * follows it). */
typedef struct KvsepShared
{
	pthread_mutex_t mu;			/* process-shared: log ring and admin slot */
	int			worker_state;	/* KVSEP_WORKER_* */
	int			worker_pid;
	int64		worker_started; /* TimestampTz */
	int64		worker_restarts;
	char		worker_error[KVSEP_MSG_MAX];
	void	   *worker_latch;	/* Latch * of the worker (same address in every process) */

	/* engine log lines from any process, written to the server log by the worker */
	uint32		log_head, log_tail;
	uint64		log_dropped;
	KvsepLogMsg log[KVSEP_LOG_RING];

	/* one admin request at a time */
	int			admin_type;		/* KVSEP_ADMIN_* */
	int			admin_state;	/* 0 free, 1 queued, 2 done */
	double		admin_arg;
	int			admin_status;	/* kv_status */
	int			admin_owner;	/* pid */
	int64		admin_done_at;	/* when the worker finished it (TimestampTz) */
	char		admin_msg[KVSEP_MSG_MAX];
} KvsepShared;

extern KvsepShared *kvsep_shared;
extern void *kvsep_region;
extern Size kvsep_region_size;

void		kvsep_shmem_register(void);
/* Engine log callback: queues the line for the worker (any thread). */
void		kvsep_log_callback(void *ctx, kv_log_level level, const char *msg);

/* ---- worker.c ---- */

void		kvsep_register_worker(void);
PGDLLEXPORT void kvsep_worker_main(Datum arg);

/* ---- engine.c: this backend's handle, errors ---- */

/* The engine, attached on first use (waits for the worker up to
 * kvsep.attach_timeout); ereports if it is not available. */
kv_db	   *kvsep_db(void);
/* The engine if it is ready now (attaching if needed), else NULL: never
 * waits, never raises. */
kv_db	   *kvsep_db_try(void);
/* Readies an engine error for a call: cheaper than zeroing it, which
 * showed in per-row profiles (the message buffer is large). */
static inline void
kvsep_err_init(kv_err *err)
{
	err->code = KV_OK;
	err->sys_errno = 0;
	err->msg[0] = '\0';
}
/* Raises ERROR for a failed engine call: an errcode per status, the
 * engine's message as detail.  what: "reading", "committing", ... */
void		kvsep_raise(kv_status st, const kv_err *err, const char *what) pg_attribute_noreturn();
/* Runs an admin request in the worker and waits for it. */
kv_status	kvsep_admin_call(int type, double arg, kv_err *err);

/* ---- xact.c: one engine transaction per PostgreSQL transaction ---- */

/* The engine transaction of the current PostgreSQL transaction, begun on
 * first use; under READ COMMITTED its snapshot moves to the newest commit
 * once per statement. */
kv_txn	   *kvsep_txn(void);
/* Marks that the transaction wrote (commit needed). */
void		kvsep_txn_wrote(void);
/* Iterators of the transaction: registered so that an abort (which skips
 * EndForeignScan) frees them before the transaction. */
void		kvsep_iter_opened(kv_iter *it);
void		kvsep_iter_closed(kv_iter *it);
/* Snapshots of scans' read points, likewise (closed = released). */
void		kvsep_snap_opened(kv_snapshot *s);
void		kvsep_snap_closed(kv_snapshot *s);
/* 1 when key reads must be recorded for conflict detection by scans
 * (SERIALIZABLE); modified keys are always recorded by the modify code. */
bool		kvsep_track_scan_reads(void);
void		kvsep_xact_init(void);
/* Runs fn(prefix) when the top transaction commits (drops of truncated or
 * dropped tables), or forgets it if the (sub)transaction aborts. */
void		kvsep_at_commit_drop(const uint8 *prefix, int len);

/* ---- catalog.c: per-table key prefixes ---- */

#define KVSEP_PREFIX_MAX 9

/* The engine key prefix of a foreign table (kvsep_fdw.relations).  With
 * create, assigns one if the table has none yet; without, returns false
 * for a table that never had one (it holds no data). */
bool		kvsep_table_prefix(Oid relid, bool create, uint8 *prefix, int *len);
/* TRUNCATE: gives the table a fresh prefix; the old one is dropped at
 * commit. */
void		kvsep_truncate_table(Oid relid);
/* DROP: forgets the table's prefix and drops its data at commit. */
void		kvsep_forget_table(Oid relid);
/* Encodes a prefix id (order-preserving, self-delimiting). */
int			kvsep_encode_prefix(int64 id, uint8 *out);
/* Oid of the kvsep_fdw foreign-data wrapper (InvalidOid if absent). */
Oid			kvsep_fdw_oid(void);
bool		kvsep_is_kvsep_table(Oid relid);

/* ---- key_codec.c: order-preserving key encoding ---- */

/* Whether values of a type can be key columns. */
bool		kvsep_key_type_supported(Oid typid);
/* Whether the encoding of a type decodes back to the same value (else the
 * column is also stored in the row; numeric display scale, float -0). */
bool		kvsep_key_type_lossless(Oid typid);
/* Whether byte order of the encoding is SQL order for this column (text
 * and varchar only with the C collation). */
bool		kvsep_key_type_ordered(Oid typid, Oid collid);
/* The type a key of typid is encoded as (integers as int8, floats as
 * float8): two values compare by their encodings when these match. */
Oid			kvsep_key_encoding_class(Oid typid);
/* Appends the encoding of a non-null value of type typid. */
void		kvsep_encode_datum(StringInfo buf, Oid typid, Datum value);
/* Decodes one value of type typid at *p (advanced); ereports on malformed
 * input (data corruption). */
Datum		kvsep_decode_datum(const uint8 **p, const uint8 *end, Oid typid);
/* The smallest byte string greater than every string starting with s[0..n)
 * (in place; returns the new length, 0 if none: all bytes 0xff). */
int			kvsep_prefix_successor(uint8 *s, int n);
/* Orders two encoded keys as the engine does: bytes, then the shorter
 * first (< 0, 0, > 0). */
int			kvsep_key_cmp(const void *a, size_t an, const void *b, size_t bn);

/* ---- table.c: a foreign table as the glue sees it ---- */

typedef struct KvsepKeyCol
{
	AttrNumber	attnum;			/* 1-based */
	Oid			typid;
	Oid			collid;
	bool		lossless;		/* decoded from the key alone */
	bool		ordered;		/* byte order = SQL order */
} KvsepKeyCol;

typedef struct KvsepTable
{
	Oid			relid;
	char	   *relname;
	int			natts;			/* of the relation, dropped included */
	int			nkeys;
	KvsepKeyCol *keys;
	bool	   *is_key;			/* [natts], by attnum - 1 */
	bool	   *in_row;			/* [natts]: stored in the row value */
	bool	   *may_ool;		/* [natts]: may be stored out of line */
	bool		has_ool;		/* some column may */
	bool		ordered;		/* every key column ordered: ranges, ORDER BY */
	bool		has_prefix;
	uint8		prefix[KVSEP_PREFIX_MAX];
	int			prefix_len;
} KvsepTable;

/* Describes rel (key columns from the "key" column option, else the first
 * column).  create_prefix: assign a prefix if the table has none. */
KvsepTable *kvsep_table_open(Relation rel, bool create_prefix);
/* Iterator options (the rest zeroed) whose bounds are every key starting
 * with prefix; hi (KVSEP_PREFIX_MAX bytes) holds the upper bound. */
void		kvsep_prefix_bounds(const uint8 *prefix, int len, uint8 *hi, kv_iter_options *io);
kv_iter    *kvsep_table_iter_all(KvsepTable *t, const char *what);
/* The same over the table's companions (out-of-line values). */
kv_iter    *kvsep_table_iter_ool(KvsepTable *t, const char *what);
/* The table's largest key in the current transaction (its pending writes
 * included), or its bare prefix if it is empty. */
void		kvsep_table_last_key(KvsepTable *t, StringInfo out, const char *what);
/* key = prefix ++ encoded key columns of values[]; a NULL key column is a
 * not_null_violation. */
void		kvsep_table_key(KvsepTable *t, Datum *values, bool *isnull, StringInfo key);
/* Decodes the key columns of key into values/isnull (lossless ones). */
void		kvsep_table_decode_key(KvsepTable *t, const uint8 *key, size_t n, Datum *values,
								   bool *isnull);

/* ---- out_of_line.c: large column values in the row's companion entry ---- */

/* Reads companions for the datums of decoded rows: at a scan's read point,
 * or (point NULL) at the transaction's current view. */
typedef struct KvsepOolReader KvsepOolReader;

/* direction: a scan in key order (1, or -1 descending) reads companions
 * with a cursor that follows it; 0 reads each with a get.  one_row: the
 * datums of a row need to live only until the next row is decoded (a
 * scan's slot), so each row reuses the reader's objects instead of
 * allocating its own. */
KvsepOolReader *kvsep_ool_reader(KvsepTable *t, kv_txn *txn, const kv_txn_point *point,
								 int direction, bool one_row);
void		kvsep_ool_reader_free(KvsepOolReader *r);
/* Companions the reader has read (EXPLAIN ANALYZE). */
uint64		kvsep_ool_reads(const KvsepOolReader *r);
/* The companion key of a row key (out reset first). */
void		kvsep_ool_key(const char *key, int klen, StringInfo out);
/* The prefix of a table's companions (same length as its prefix). */
int			kvsep_ool_prefix(const uint8 *prefix, int len, uint8 *out);
/* Starts a companion value (its format byte); values are appended. */
void		kvsep_ool_start(StringInfo companion);
/* For the decoder: the out-of-line values of the row with this key, read
 * through reader (NULL: their sizes are known, reading them is an error),
 * and each value in turn, in attnum order. */
void	   *kvsep_ool_row(KvsepOolReader *reader, const uint8 *key, size_t klen);
Datum		kvsep_ool_datum(void *row, uint32 len);
/* A value of a dropped column: its bytes are passed over. */
void		kvsep_ool_skip(void *row, uint32 len);
/* Whether values of a type may be stored out of line. */
bool		kvsep_ool_type_allowed(Oid typid);

/* ---- row_codec.c: the row format ---- */

/* Appends the row image of the columns stored in the row (t->in_row).
 * Values of out-of-line-capable columns of at least kvsep.out_of_line_size
 * bytes go to companion instead (reset first; left empty if none). */
void		kvsep_encode_row(KvsepTable *t, TupleDesc desc, Datum *values, bool *isnull,
							 StringInfo out, StringInfo companion);
/* Decodes a row image into values/isnull for the columns in_row; columns
 * the image does not have (added later) are NULL; out-of-line values
 * become datums read through reader from the companion of key.  Memory
 * for by-reference values is palloc'd in CurrentMemoryContext. */
void		kvsep_decode_row(KvsepTable *t, TupleDesc desc, const uint8 *p, size_t n,
							 Datum *values, bool *isnull, KvsepOolReader *reader,
							 const uint8 *key, size_t klen);

/* ---- fdw_plan.c / fdw_scan.c: the access a scan plan makes ---- */

#define KVSEP_ACCESS_FULL 0		/* every key of the table */
#define KVSEP_ACCESS_RANGE 1	/* keys from an equal prefix and/or bounds */
#define KVSEP_ACCESS_POINT 2	/* every key column given: point gets */

/*
 * ForeignScan.fdw_private: a list of Integers in this order; fdw_exprs
 * holds n_eq expressions (the one at in_pos, if any, is an array: IN /
 * = ANY), then the lower bound if any, then the upper bound if any.
 */
enum KvsepPlanItem
{
	KVSEP_PI_ACCESS,			/* KVSEP_ACCESS_* */
	KVSEP_PI_DIRECTION,			/* 0 no order needed, 1 ascending, -1 descending */
	KVSEP_PI_KEY_ONLY,			/* no non-key column needed: no row values read */
	KVSEP_PI_N_EQ,				/* leading key columns fixed by equality */
	KVSEP_PI_IN_POS,			/* which of them is an IN list (-1 none) */
	KVSEP_PI_HAS_LOWER,
	KVSEP_PI_LOWER_INCL,
	KVSEP_PI_HAS_UPPER,
	KVSEP_PI_UPPER_INCL,
	KVSEP_PI_NEED_KEY,			/* a key column is used above the scan (decode keys) */
	KVSEP_PI_COUNT
};

/* ---- fdw_*.c ---- */

struct FdwRoutine;

void		kvsep_plan_init_routine(struct FdwRoutine *r);
void		kvsep_scan_init_routine(struct FdwRoutine *r);
void		kvsep_modify_init_routine(struct FdwRoutine *r);

#endif
