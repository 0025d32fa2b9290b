/*
 * worker.c - the background worker that hosts the engine.
 *
 * Started with the postmaster, it opens the engine into the shared region
 * (directory lock, MANIFEST, WAL replay, value-log check) and so becomes
 * the host: the engine's flush, compaction and value-log GC threads run in
 * this process.  Its main loop writes the engine's log lines to the server
 * log (engine threads never call PostgreSQL), runs admin requests that
 * only the host may run (full compaction, value-log GC), and on SIGTERM or
 * postmaster death closes the engine.  If it fails to open, it records
 * why (backends report it) and exits; the postmaster restarts it.
 */
#include "postgres.h"

#include <pthread.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/timestamp.h"

#include "kvsep_fdw.h"

#define LOOP_MS 100

void
kvsep_register_worker(void)
{
	BackgroundWorker w;

	memset(&w, 0, sizeof w);
	snprintf(w.bgw_name, BGW_MAXLEN, "kvsep_fdw storage engine");
	snprintf(w.bgw_type, BGW_MAXLEN, "kvsep_fdw engine");
	w.bgw_flags = BGWORKER_SHMEM_ACCESS;
	w.bgw_start_time = BgWorkerStart_PostmasterStart;
	w.bgw_restart_time = 2;
	snprintf(w.bgw_library_name, BGW_MAXLEN, "kvsep_fdw");
	snprintf(w.bgw_function_name, BGW_MAXLEN, "kvsep_worker_main");
	RegisterBackgroundWorker(&w);
}

static int
pg_level(int level)
{
	switch (level)
	{
		case KV_LOG_DEBUG:
			return DEBUG1;
		case KV_LOG_INFO:
			return LOG;
		case KV_LOG_WARNING:
			return WARNING;
		default:
			return LOG;			/* errors are reported where they happen */
	}
}

/* Writes the queued engine log lines to the server log. */
static void
drain_log(void)
{
	KvsepShared *s = kvsep_shared;
	KvsepLogMsg m;
	uint64		dropped;

	for (;;)
	{
		pthread_mutex_lock(&s->mu);
		if (s->log_tail == s->log_head)
		{
			dropped = s->log_dropped;
			s->log_dropped = 0;
			pthread_mutex_unlock(&s->mu);
			break;
		}
		m = s->log[s->log_tail];
		s->log_tail = (s->log_tail + 1) % KVSEP_LOG_RING;
		pthread_mutex_unlock(&s->mu);
		ereport(pg_level(m.level),
				(errmsg("kvsep engine: %s", m.msg)));
	}
	if (dropped)
		ereport(LOG, (errmsg("kvsep engine: %llu log lines dropped (too many at once)",
							 (unsigned long long) dropped)));
}

static void
set_state(int state, const char *error)
{
	pthread_mutex_lock(&kvsep_shared->mu);
	kvsep_shared->worker_state = state;
	if (error)
		strlcpy(kvsep_shared->worker_error, error, KVSEP_MSG_MAX);
	pthread_mutex_unlock(&kvsep_shared->mu);
}

/* Runs a queued admin request (host-only engine calls). */
static void
run_admin(kv_db *db)
{
	KvsepShared *s = kvsep_shared;
	int			type;
	double		arg;
	kv_err		err;
	kv_status	st;

	pthread_mutex_lock(&s->mu);
	type = s->admin_state == 1 ? s->admin_type : KVSEP_ADMIN_NONE;
	arg = s->admin_arg;
	pthread_mutex_unlock(&s->mu);
	if (type == KVSEP_ADMIN_NONE)
		return;
	kvsep_err_init(&err);
	if (type == KVSEP_ADMIN_COMPACT)
		st = kv_compact_all(db, &err);
	else if (type == KVSEP_ADMIN_VLOG_GC)
		st = kv_run_value_log_gc(db, arg, &err);
	else
	{
		st = KV_INVALID;
		snprintf(err.msg, sizeof err.msg, "unknown admin request %d", type);
	}
	pthread_mutex_lock(&s->mu);
	s->admin_status = st;
	strlcpy(s->admin_msg, err.msg, KVSEP_MSG_MAX);
	s->admin_state = 2;
	s->admin_done_at = GetCurrentTimestamp();
	pthread_mutex_unlock(&s->mu);
}

void
kvsep_worker_main(Datum arg)
{
	kv_options	o;
	kv_db	   *db = NULL;
	kv_err		err;
	kv_status	st;

	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	pqsignal(SIGHUP, SIG_IGN);
	BackgroundWorkerUnblockSignals();

	kvsep_engine_options(&o);
	pthread_mutex_lock(&kvsep_shared->mu);
	kvsep_shared->worker_pid = MyProcPid;
	kvsep_shared->worker_restarts++;
	pthread_mutex_unlock(&kvsep_shared->mu);
	set_state(KVSEP_WORKER_STARTING, "");
	ereport(LOG, (errmsg("kvsep_fdw: opening the storage engine in \"%s\"", o.dir)));

	kvsep_err_init(&err);
	st = kv_open_region(&o, kvsep_region, kvsep_region_size, &db, &err);
	drain_log();
	if (st != KV_OK)
	{
		set_state(KVSEP_WORKER_FAILED, err.msg);
		ereport(ERROR,
				(errcode(st == KV_CORRUPTION ? ERRCODE_DATA_CORRUPTED : ERRCODE_INTERNAL_ERROR),
				 errmsg("kvsep_fdw: could not open the storage engine in \"%s\"", o.dir),
				 errdetail("%s (%s)", err.msg, kv_status_str(st))));
	}
	kvsep_shared->worker_started = GetCurrentTimestamp();
	kvsep_shared->worker_latch = MyLatch;
	set_state(KVSEP_WORKER_READY, "");
	ereport(LOG, (errmsg("kvsep_fdw: storage engine ready (version %llu)",
						 (unsigned long long) kv_latest_version(db))));

	while (!ShutdownRequestPending)
	{
		int			rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
								   LOOP_MS, PG_WAIT_EXTENSION);

		if (rc & WL_LATCH_SET)
			ResetLatch(MyLatch);
		drain_log();
		run_admin(db);
	}

	kvsep_shared->worker_latch = NULL;
	set_state(KVSEP_WORKER_STOPPED, "");
	st = kv_close(db, &err);
	drain_log();
	if (st != KV_OK)
		ereport(WARNING,
				(errmsg("kvsep_fdw: closing the storage engine failed"),
				 errdetail("%s", err.msg)));
	else
		ereport(LOG, (errmsg("kvsep_fdw: storage engine closed")));
	proc_exit(0);
}
