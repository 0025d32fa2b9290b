/*
 * admin.c - the SQL-callable administration and monitoring functions of
 * kvsep_fdw (see admin.sql for their declarations and the views over them).
 *
 *	kvsep_status()			the worker's state and the engine's health, one row;
 *							never waits for or raises about an engine that is
 *							not ready
 *	kvsep_flush()			memtables to L0 (any backend may flush)
 *	kvsep_compact()			full compaction, run by the worker (the host)
 *	kvsep_vlog_gc(ratio)	one value-log GC round, run by the worker
 *	kvsep_levels_info(), kvsep_tables_info(), kvsep_vlog_files_info(),
 *	kvsep_stats_info()		the engine's statistics as sets of rows
 *
 * Every function but kvsep_status reaches the engine through kvsep_db(),
 * which attaches this backend on first use; engine errors are raised with
 * kvsep_raise().
 */
#include "postgres.h"

#include <pthread.h>

#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "kvsep_fdw.h"

PG_FUNCTION_INFO_V1(kvsep_status);
PG_FUNCTION_INFO_V1(kvsep_flush);
PG_FUNCTION_INFO_V1(kvsep_compact);
PG_FUNCTION_INFO_V1(kvsep_vlog_gc);
PG_FUNCTION_INFO_V1(kvsep_levels_info);
PG_FUNCTION_INFO_V1(kvsep_tables_info);
PG_FUNCTION_INFO_V1(kvsep_vlog_files_info);
PG_FUNCTION_INFO_V1(kvsep_stats_info);

/* Rows of a statistics listing fetched before the count is known. */
#define FIRST_FETCH 16

static const char *
state_name(int state)
{
	switch (state)
	{
		case KVSEP_WORKER_STARTING:
			return "starting";
		case KVSEP_WORKER_READY:
			return "ready";
		case KVSEP_WORKER_FAILED:
			return "failed";
		default:
			return "stopped";
	}
}

/* ---- kvsep_status ---- */

#define STATUS_NATTS 9

Datum
kvsep_status(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[STATUS_NATTS];
	bool		nulls[STATUS_NATTS];
	int			state;
	int			pid;
	TimestampTz started;
	int64		restarts;
	char		error[KVSEP_MSG_MAX];

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("function returning record called in context that cannot accept type record")));
	tupdesc = BlessTupleDesc(tupdesc);
	if (tupdesc->natts != STATUS_NATTS)
		elog(ERROR, "kvsep_status: expected %d result columns, got %d",
			 STATUS_NATTS, tupdesc->natts);

	memset(nulls, true, sizeof nulls);
	memset(values, 0, sizeof values);

	if (!kvsep_shared)
	{
		/* not in shared_preload_libraries: there is no worker at all */
		state = KVSEP_WORKER_STOPPED;
		pid = 0;
		started = 0;
		restarts = 0;
		strlcpy(error, "kvsep_fdw is not loaded through shared_preload_libraries",
				sizeof error);
	}
	else
	{
		pthread_mutex_lock(&kvsep_shared->mu);
		state = kvsep_shared->worker_state;
		pid = kvsep_shared->worker_pid;
		started = (TimestampTz) kvsep_shared->worker_started;
		restarts = kvsep_shared->worker_restarts;
		strlcpy(error, kvsep_shared->worker_error, sizeof error);
		pthread_mutex_unlock(&kvsep_shared->mu);
	}

	/* worker_pid: only while a worker is running (a stale pid misleads) */
	if (pid != 0 && (state == KVSEP_WORKER_STARTING || state == KVSEP_WORKER_READY))
	{
		values[0] = Int32GetDatum(pid);
		nulls[0] = false;
	}
	values[1] = CStringGetTextDatum(state_name(state));
	nulls[1] = false;
	if (state == KVSEP_WORKER_READY && started != 0)
	{
		values[2] = TimestampTzGetDatum(started);
		nulls[2] = false;
		values[3] = DirectFunctionCall2(timestamp_mi,
										TimestampTzGetDatum(GetCurrentTimestamp()),
										TimestampTzGetDatum(started));
		nulls[3] = false;
	}
	values[4] = Int64GetDatum(restarts);
	nulls[4] = false;
	if (error[0])
	{
		values[5] = CStringGetTextDatum(error);
		nulls[5] = false;
	}
	values[7] = Int32GetDatum(kvsep_compactors);
	nulls[7] = false;

	/* engine fields only from a ready engine (kvsep_db() would wait) */
	if (state == KVSEP_WORKER_READY)
	{
		kv_db	   *db = kvsep_db();
		kv_err		err;
		kv_status	st;

		values[6] = Int64GetDatum((int64) kv_latest_version(db));
		nulls[6] = false;
		kvsep_err_init(&err);
		st = kv_background_error(db, &err);
		if (st != KV_OK)
		{
			if (err.msg[0])
				values[8] = CStringGetTextDatum(psprintf("%s: %s", kv_status_str(st),
														 err.msg));
			else
				values[8] = CStringGetTextDatum(kv_status_str(st));
			nulls[8] = false;
		}
	}

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* ---- state-changing requests ---- */

Datum
kvsep_flush(PG_FUNCTION_ARGS)
{
	kv_db	   *db = kvsep_db();
	kv_err		err;
	kv_status	st;

	kvsep_err_init(&err);
	st = kv_flush(db, &err);
	if (st != KV_OK)
		kvsep_raise(st, &err, "flushing");
	PG_RETURN_VOID();
}

Datum
kvsep_compact(PG_FUNCTION_ARGS)
{
	kv_err		err;
	kv_status	st;

	kvsep_err_init(&err);
	st = kvsep_admin_call(KVSEP_ADMIN_COMPACT, 0, &err);
	if (st != KV_OK)
		kvsep_raise(st, &err, "compacting");
	PG_RETURN_VOID();
}

/* true if files were rewritten, false if none had enough dead bytes */
Datum
kvsep_vlog_gc(PG_FUNCTION_ARGS)
{
	float8		ratio = PG_GETARG_FLOAT8(0);
	kv_err		err;
	kv_status	st;

	/* (written so that NaN fails too) */
	if (!(ratio > 0.0 && ratio < 1.0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("discard_ratio must be greater than 0 and less than 1"),
				 errdetail("The value given was %g.", ratio),
				 errhint("A file is rewritten when at least this fraction of its bytes is dead, e.g. 0.5.")));
	kvsep_err_init(&err);
	st = kvsep_admin_call(KVSEP_ADMIN_VLOG_GC, ratio, &err);
	if (st == KV_NO_REWRITE)
		PG_RETURN_BOOL(false);
	if (st != KV_OK)
		kvsep_raise(st, &err, "value-log garbage collection");
	PG_RETURN_BOOL(true);
}

/* ---- statistics as sets of rows ---- */

#define LEVELS_NATTS 6

Datum
kvsep_levels_info(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	kv_db	   *db;
	kv_level_info *levels;
	int			cap = FIRST_FETCH;
	int			n;

	InitMaterializedSRF(fcinfo, 0);
	db = kvsep_db();
	levels = palloc(cap * sizeof(kv_level_info));
	while ((n = kv_get_levels(db, levels, cap)) > cap)
	{
		cap = n;
		levels = repalloc(levels, cap * sizeof(kv_level_info));
	}
	for (int i = 0; i < n; i++)
	{
		kv_level_info *l = &levels[i];
		Datum		values[LEVELS_NATTS];
		bool		nulls[LEVELS_NATTS];

		memset(nulls, false, sizeof nulls);
		values[0] = Int32GetDatum(l->level);
		values[1] = Int32GetDatum(l->num_tables);
		values[2] = Int64GetDatum((int64) l->size_bytes);
		values[3] = Int64GetDatum((int64) l->target_bytes);
		values[4] = Int64GetDatum((int64) l->num_keys);
		values[5] = Float8GetDatum(l->score);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	pfree(levels);
	return (Datum) 0;
}

#define TABLES_NATTS 8

/* A key prefix as text (the engine already escapes it to printable
 * ASCII; bounded in case it is not terminated). */
static Datum
key_text(const char *s, size_t cap)
{
	return PointerGetDatum(cstring_to_text_with_len(s, strnlen(s, cap)));
}

Datum
kvsep_tables_info(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	kv_db	   *db;
	kv_table_info *tables;
	int			cap = FIRST_FETCH;
	int			n;

	InitMaterializedSRF(fcinfo, 0);
	db = kvsep_db();
	tables = palloc(cap * sizeof(kv_table_info));
	/* the count may grow between calls (flushes, compactions): allow some */
	while ((n = kv_get_tables(db, tables, cap)) > cap)
	{
		cap = n + n / 8 + FIRST_FETCH;
		tables = repalloc(tables, cap * sizeof(kv_table_info));
	}
	for (int i = 0; i < n; i++)
	{
		kv_table_info *t = &tables[i];
		Datum		values[TABLES_NATTS];
		bool		nulls[TABLES_NATTS];

		memset(nulls, false, sizeof nulls);
		values[0] = Int64GetDatum((int64) t->id);
		values[1] = Int32GetDatum(t->level);
		values[2] = Int64GetDatum((int64) t->size_bytes);
		values[3] = Int64GetDatum((int64) t->num_keys);
		values[4] = Int64GetDatum((int64) t->max_version);
		values[5] = BoolGetDatum(t->ingested != 0);
		values[6] = key_text(t->smallest, sizeof t->smallest);
		values[7] = key_text(t->largest, sizeof t->largest);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	pfree(tables);
	return (Datum) 0;
}

#define VLOG_NATTS 6

static const char *
vlog_state_name(int state)
{
	switch (state)
	{
		case 1:
			return "head";
		case 2:
			return "sealed";
		case 3:
			return "rewritten";
		case 4:
			return "damaged";
		case 5:
			return "loading";
		default:
			return "unknown";
	}
}

Datum
kvsep_vlog_files_info(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	kv_db	   *db;
	kv_vlog_info *files;
	int			cap = FIRST_FETCH;
	int			n;

	InitMaterializedSRF(fcinfo, 0);
	db = kvsep_db();
	files = palloc(cap * sizeof(kv_vlog_info));
	while ((n = kv_get_vlog_files(db, files, cap)) > cap)
	{
		cap = n + FIRST_FETCH;
		files = repalloc(files, cap * sizeof(kv_vlog_info));
	}
	for (int i = 0; i < n; i++)
	{
		kv_vlog_info *f = &files[i];
		Datum		values[VLOG_NATTS];
		bool		nulls[VLOG_NATTS];

		memset(nulls, false, sizeof nulls);
		values[0] = Int64GetDatum((int64) f->fid);
		values[1] = CStringGetTextDatum(vlog_state_name(f->state));
		values[2] = Int64GetDatum((int64) f->size_bytes);
		values[3] = Int64GetDatum((int64) f->entries);
		values[4] = Int64GetDatum((int64) f->discard_bytes);
		values[5] = Float8GetDatum(f->discard_ratio);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	pfree(files);
	return (Datum) 0;
}

/* One row per kv_stats counter, in the struct's order. */
#define STAT(field) {#field, offsetof(kv_stats, field)}

static const struct
{
	const char *name;
	size_t		offset;			/* of a uint64_t */
}			stat_fields[] =
{
	STAT(writes),
	STAT(write_groups),
	STAT(syncs),
	STAT(bytes_written),
	STAT(memtable_flushes),
	STAT(compactions),
	STAT(compaction_bytes_read),
	STAT(compaction_bytes_written),
	STAT(write_stalls),
	STAT(write_stall_micros),
	STAT(l0_stalls),
	STAT(gets),
	STAT(block_cache_hits),
	STAT(block_cache_misses),
	STAT(block_cache_inserts),
	STAT(block_cache_evictions),
	STAT(bloom_useful),
	STAT(vlog_files),
	STAT(vlog_bytes),
	STAT(vlog_discard_bytes),
	STAT(vlog_value_reads),
	STAT(vlog_gc_runs),
	STAT(vlog_gc_rewritten_entries),
	STAT(vlog_gc_rewritten_bytes),
	STAT(vlog_gc_files_deleted),
	STAT(vlog_direct_bytes),
	STAT(live_memtables),
	STAT(latest_version),
	STAT(drops_in_effect),
};

#undef STAT

/* a uint64_t counter added to kv_stats needs its row above */
StaticAssertDecl(offsetof(kv_stats, num_levels) == lengthof(stat_fields) * sizeof(uint64_t),
				 "stat_fields does not list every uint64_t field of kv_stats");

static void
put_stat(ReturnSetInfo *rsinfo, const char *name, int64 value)
{
	Datum		values[2];
	bool		nulls[2] = {false, false};

	values[0] = CStringGetTextDatum(name);
	values[1] = Int64GetDatum(value);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

Datum
kvsep_stats_info(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	kv_stats	st;

	InitMaterializedSRF(fcinfo, 0);
	memset(&st, 0, sizeof st);
	kv_get_stats(kvsep_db(), &st);
	for (int i = 0; i < lengthof(stat_fields); i++)
	{
		uint64		v;

		memcpy(&v, (const char *) &st + stat_fields[i].offset, sizeof v);
		put_stat(rsinfo, stat_fields[i].name, (int64) v);
	}
	/* the int fields */
	put_stat(rsinfo, "num_levels", st.num_levels);
	put_stat(rsinfo, "attached_processes", st.attached_processes);
	return (Datum) 0;
}
