/*
 * xact.c - one engine transaction per PostgreSQL transaction.
 *
 * The engine transaction is begun when the PostgreSQL transaction first
 * touches a kvsep table, committed at pre-commit (synced exactly when
 * synchronous_commit is on; a lost conflict becomes SQLSTATE 40001 and
 * the PostgreSQL transaction aborts), and discarded on abort.  Savepoints
 * are engine marks: ROLLBACK TO undoes the writes made since.  Under READ
 * COMMITTED the engine snapshot moves to the newest commit at the start of
 * each statement (every executor start, so also each statement inside a
 * function); under REPEATABLE READ and SERIALIZABLE one snapshot is taken
 * at the transaction's first statement, whatever it reads, and kept.
 * Each scan reads at a "read point" taken when it starts (fdw_scan.c), so
 * a cursor keeps what it saw at DECLARE and a statement never sees its own
 * writes.  PREPARE TRANSACTION is refused once a kvsep table was written.
 * Drops of truncated or dropped tables' data run after the commit.
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/extension.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "utils/memutils.h"

#include "kvsep_fdw.h"

typedef struct SubMark
{
	SubTransactionId subid;
	uint64		mark;			/* engine mark when the subtransaction began */
	bool		had_txn;		/* the engine transaction existed then */
} SubMark;

typedef struct PendingDrop
{
	SubTransactionId subid;		/* registered in this subtransaction */
	int			len;
	uint8		prefix[KVSEP_PREFIX_MAX];
} PendingDrop;

static kv_txn *cur_txn = NULL;
static bool cur_wrote = false;
static bool cur_broken = false;	/* a savepoint rollback failed: no further use */
static bool new_statement = false;	/* an executor started since the last snapshot */
static int	ext_here = -1;		/* kvsep_fdw installed in this database (cached) */
static ExecutorStart_hook_type prev_executor_start = NULL;
static List *sub_marks = NIL;	/* of SubMark *, innermost last (TopMemoryContext) */
static List *pending_drops = NIL;	/* of PendingDrop * (TopMemoryContext) */
static List *open_iters = NIL;	/* kv_iter * of the transaction (TopMemoryContext) */
static List *open_snaps = NIL;	/* kv_snapshot * of read points (TopMemoryContext) */

static bool
read_committed(void)
{
	return !IsolationUsesXactSnapshot();
}

kv_txn *
kvsep_txn(void)
{
	kv_err		err;
	kv_status	st;

	if (cur_broken)
		ereport(ERROR,
				(errcode(ERRCODE_IN_FAILED_SQL_TRANSACTION),
				 errmsg("the kvsep_fdw part of this transaction failed earlier"),
				 errhint("Roll back the whole transaction.")));
	if (!cur_txn)
	{
		kv_db	   *db = kvsep_db();

		kvsep_err_init(&err);
		st = kv_txn_begin(db, !XactReadOnly, &cur_txn, &err);
		if (st != KV_OK)
		{
			cur_txn = NULL;
			kvsep_raise(st, &err, "beginning a transaction");
		}
		/* conflicts: the keys whose reads decided a write (the modify code
		 * notes them); SERIALIZABLE also every key a scan read */
		kv_txn_track_reads(cur_txn, kvsep_track_scan_reads());
		cur_wrote = false;
		new_statement = false;
		ext_here = 1;
	}
	else if (read_committed() && new_statement)
	{
		/* READ COMMITTED: a statement sees every commit made before it */
		kvsep_err_init(&err);
		st = kv_txn_refresh(cur_txn, &err);
		if (st != KV_OK)
			kvsep_raise(st, &err, "taking a snapshot");
		new_statement = false;
	}
	return cur_txn;
}

/*
 * Every statement (and every statement a function runs) starts an
 * executor: READ COMMITTED takes a new snapshot at the next kvsep read;
 * REPEATABLE READ and SERIALIZABLE take theirs now, at the transaction's
 * first statement, as PostgreSQL does - even if that statement reads only
 * heap tables.
 */
static void
executor_start(QueryDesc *qd, int eflags)
{
	new_statement = true;
	if (!cur_txn && !cur_broken && IsolationUsesXactSnapshot() &&
		!(eflags & EXEC_FLAG_EXPLAIN_ONLY) && IsTransactionState())
	{
		kv_db	   *db;

		if (ext_here < 0)
			ext_here = OidIsValid(get_extension_oid("kvsep_fdw", true));
		/* (a statement on heap tables must not fail because of the engine:
		 * if it is not ready, the snapshot is taken at first use) */
		if (ext_here && (db = kvsep_db_try()) != NULL &&
			kv_txn_begin(db, !XactReadOnly, &cur_txn, NULL) == KV_OK)
		{
			kv_txn_track_reads(cur_txn, kvsep_track_scan_reads());
			cur_wrote = false;
			new_statement = false;
		}
		else
			cur_txn = NULL;
	}
	if (prev_executor_start)
		prev_executor_start(qd, eflags);
	else
		standard_ExecutorStart(qd, eflags);
}

/* Adds p to a list of engine objects the transaction must free on abort
 * (kept in TopMemoryContext: they outlive the query that opened them). */
static void
remember(List **list, void *p)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

	*list = lappend(*list, p);
	MemoryContextSwitchTo(old);
}

void
kvsep_snap_opened(kv_snapshot *s)
{
	remember(&open_snaps, s);
}

void
kvsep_snap_closed(kv_snapshot *s)
{
	open_snaps = list_delete_ptr(open_snaps, s);
	kv_snapshot_release(s);
}

void
kvsep_txn_wrote(void)
{
	cur_wrote = true;
}

bool
kvsep_track_scan_reads(void)
{
	return IsolationIsSerializable();
}

void
kvsep_iter_opened(kv_iter *it)
{
	remember(&open_iters, it);
}

void
kvsep_iter_closed(kv_iter *it)
{
	open_iters = list_delete_ptr(open_iters, it);
}

/* Iterators a query left open (an abort skips EndForeignScan) go before
 * the transaction they read. */
static void
close_open_iters(void)
{
	ListCell   *lc;

	foreach(lc, open_iters)
		kv_iter_free(lfirst(lc));
	list_free(open_iters);
	open_iters = NIL;
	foreach(lc, open_snaps)
		kv_snapshot_release(lfirst(lc));
	list_free(open_snaps);
	open_snaps = NIL;
}

static void
end_txn(void)
{
	close_open_iters();
	if (cur_txn)
		kv_txn_free(cur_txn);
	cur_txn = NULL;
	cur_wrote = false;
	cur_broken = false;
	new_statement = false;
	list_free_deep(sub_marks);
	sub_marks = NIL;
}

void
kvsep_at_commit_drop(const uint8 *prefix, int len)
{
	PendingDrop *d = MemoryContextAllocZero(TopMemoryContext, sizeof(PendingDrop));
	MemoryContext old;

	d->subid = GetCurrentSubTransactionId();
	d->len = len;
	memcpy(d->prefix, prefix, len);
	old = MemoryContextSwitchTo(TopMemoryContext);
	pending_drops = lappend(pending_drops, d);
	MemoryContextSwitchTo(old);
}

/* After the commit: release the data of truncated and dropped tables. */
static void
run_pending_drops(void)
{
	ListCell   *lc;
	List	   *drops = pending_drops;

	pending_drops = NIL;
	foreach(lc, drops)
	{
		PendingDrop *d = lfirst(lc);
		kv_err		err;
		kv_status	st;
		uint8		ool[KVSEP_PREFIX_MAX];

		/* the table's rows, then their out-of-line values */
		kvsep_err_init(&err);
		st = kv_drop_prefix(kvsep_db(), d->prefix, d->len, &err);
		if (st == KV_OK)
			st = kv_drop_prefix(kvsep_db(), ool, kvsep_ool_prefix(d->prefix, d->len, ool), &err);
		if (st != KV_OK)
			ereport(WARNING,
					(errmsg("kvsep_fdw: could not release the data of a truncated or dropped table"),
					 errdetail("%s", err.msg),
					 errhint("The data stays in the engine but is unreachable.")));
	}
	list_free_deep(drops);
}

static void
xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
			close_open_iters();
			if (cur_txn && cur_wrote)
			{
				kv_commit_options co;
				kv_err		err;
				kv_status	st;
				kv_txn	   *t = cur_txn;

				if (cur_broken)
					ereport(ERROR,
							(errcode(ERRCODE_IN_FAILED_SQL_TRANSACTION),
							 errmsg("cannot commit: the kvsep_fdw part of this transaction failed earlier")));
				co.sync = synchronous_commit > SYNCHRONOUS_COMMIT_OFF;
				kvsep_err_init(&err);
				cur_txn = NULL; /* finished whatever the result */
				st = kv_txn_commit(t, &co, NULL, &err);
				kv_txn_free(t);
				if (st != KV_OK)
					kvsep_raise(st, &err, "committing");
			}
			end_txn();
			break;
		case XACT_EVENT_PRE_PREPARE:
			if (cur_txn && cur_wrote)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot PREPARE a transaction that has written to kvsep_fdw foreign tables")));
			end_txn();
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			end_txn();
			if (pending_drops)
				run_pending_drops();
			break;
		case XACT_EVENT_PREPARE:
			end_txn();
			list_free_deep(pending_drops);
			pending_drops = NIL;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			end_txn();
			list_free_deep(pending_drops);
			pending_drops = NIL;
			break;
		default:
			break;
	}
}

static void
subxact_callback(SubXactEvent event, SubTransactionId mySubid, SubTransactionId parentSubid,
				 void *arg)
{
	if (event == SUBXACT_EVENT_START_SUB)
	{
		SubMark    *m = MemoryContextAllocZero(TopMemoryContext, sizeof(SubMark));
		MemoryContext old;

		m->subid = mySubid;
		m->had_txn = cur_txn != NULL;
		m->mark = cur_txn ? kv_txn_mark(cur_txn) : 0;
		old = MemoryContextSwitchTo(TopMemoryContext);
		sub_marks = lappend(sub_marks, m);
		MemoryContextSwitchTo(old);
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB || event == SUBXACT_EVENT_ABORT_SUB)
	{
		SubMark    *m = NULL;

		while (sub_marks != NIL)
		{
			SubMark    *last = llast(sub_marks);

			sub_marks = list_delete_last(sub_marks);
			if (last->subid == mySubid)
			{
				m = last;
				break;
			}
			pfree(last);
		}
		if (event == SUBXACT_EVENT_ABORT_SUB)
		{
			ListCell   *lc;

			/* drops registered inside the aborted subtransaction go too */
			foreach(lc, pending_drops)
			{
				PendingDrop *d = lfirst(lc);

				if (d->subid >= mySubid)
				{
					pending_drops = foreach_delete_current(pending_drops, lc);
					pfree(d);
				}
			}
			if (cur_txn && m)
			{
				kv_err		err;

				kvsep_err_init(&err);
				if (kv_txn_rollback_to(cur_txn, m->had_txn ? m->mark : 0, &err) != KV_OK)
					cur_broken = true;	/* (cannot raise an error while aborting) */
			}
		}
		else
		{
			ListCell   *lc;

			/* a committed subtransaction's drops belong to its parent */
			foreach(lc, pending_drops)
			{
				PendingDrop *d = lfirst(lc);

				if (d->subid == mySubid)
					d->subid = parentSubid;
			}
		}
		if (m)
			pfree(m);
	}
}

void
kvsep_xact_init(void)
{
	RegisterXactCallback(xact_callback, NULL);
	RegisterSubXactCallback(subxact_callback, NULL);
	prev_executor_start = ExecutorStart_hook;
	ExecutorStart_hook = executor_start;
}
