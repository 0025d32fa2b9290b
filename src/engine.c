/*
 * engine.c - this backend's handle on the engine, engine errors as
 * PostgreSQL errors, and admin requests to the worker.
 *
 * A backend attaches on first use, waiting up to kvsep.attach_timeout for
 * the worker to have the engine ready, and detaches when it exits.  If
 * the engine was reopened meanwhile (the worker restarted), the stale
 * handle is dropped and the next use attaches again.
 */
#include "postgres.h"

#include <pthread.h>
#include <signal.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/elog.h"
#include "utils/timestamp.h"

#include "kvsep_fdw.h"

static kv_db *backend_db = NULL;
static bool exit_hook_set = false;

static void
detach_at_exit(int code, Datum arg)
{
	if (backend_db)
		kv_detach(backend_db);
	backend_db = NULL;
}

static const char *
worker_state_name(int state)
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

kv_db *
kvsep_db(void)
{
	kv_attach_options ao;
	kv_err		err;
	kv_status	st;
	int			waited = 0;

	if (!kvsep_shared)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("kvsep_fdw is not loaded through shared_preload_libraries"),
				 errhint("Add kvsep_fdw to shared_preload_libraries in postgresql.conf and restart the server.")));
	if (backend_db)
	{
		/* the engine reopened by a restarted worker: attach again */
		if (kv_usable(backend_db, NULL) == KV_OK)
			return backend_db;
		kv_detach(backend_db);
		backend_db = NULL;
	}
	memset(&ao, 0, sizeof ao);
	ao.log_fn = kvsep_log_callback;
	ao.log_level = KV_LOG_WARNING;
	for (;;)
	{
		int			state = kvsep_shared->worker_state;

		if (state == KVSEP_WORKER_FAILED)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the kvsep storage engine failed to start"),
					 errdetail("%s", kvsep_shared->worker_error),
					 errhint("See the server log; the worker retries every few seconds.")));
		kvsep_err_init(&err);
		st = kv_attach(kvsep_region, &ao, &backend_db, &err);
		if (st == KV_OK)
			break;
		if (st != KV_BUSY && st != KV_CLOSED)
			kvsep_raise(st, &err, "attaching to the storage engine");
		if (waited >= kvsep_attach_timeout_ms)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the kvsep storage engine is not ready"),
					 errdetail("The kvsep_fdw worker is %s; waited %d ms (kvsep.attach_timeout).",
							   worker_state_name(state), waited),
					 errhint("See the server log for the kvsep_fdw worker.")));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 50,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		waited += 50;
	}
	if (!exit_hook_set)
	{
		before_shmem_exit(detach_at_exit, 0);
		exit_hook_set = true;
	}
	return backend_db;
}

kv_db *
kvsep_db_try(void)
{
	kv_attach_options ao;

	if (!kvsep_shared || kvsep_shared->worker_state != KVSEP_WORKER_READY)
		return NULL;
	if (backend_db && kv_usable(backend_db, NULL) == KV_OK)
		return backend_db;
	if (backend_db)
	{
		kv_detach(backend_db);
		backend_db = NULL;
	}
	memset(&ao, 0, sizeof ao);
	ao.log_fn = kvsep_log_callback;
	ao.log_level = KV_LOG_WARNING;
	if (kv_attach(kvsep_region, &ao, &backend_db, NULL) != KV_OK)
	{
		backend_db = NULL;
		return NULL;
	}
	if (!exit_hook_set)
	{
		before_shmem_exit(detach_at_exit, 0);
		exit_hook_set = true;
	}
	return backend_db;
}

void
kvsep_raise(kv_status st, const kv_err *err, const char *what)
{
	int			code;
	const char *detail = err && err->msg[0] ? err->msg : kv_status_str(st);

	switch (st)
	{
		case KV_CONFLICT:
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("could not serialize access due to concurrent update of a kvsep_fdw table"),
					 errdetail("%s", detail),
					 errhint("Retry the transaction.")));
			break;
		case KV_CORRUPTION:
			code = ERRCODE_DATA_CORRUPTED;
			break;
		case KV_IO:
			code = ERRCODE_IO_ERROR;
			break;
		case KV_NO_SPACE:
			code = err && err->sys_errno ? ERRCODE_DISK_FULL : ERRCODE_OUT_OF_MEMORY;
			break;
		case KV_NO_MEMORY:
			code = ERRCODE_OUT_OF_MEMORY;
			break;
		case KV_TOO_BIG:
			code = ERRCODE_PROGRAM_LIMIT_EXCEEDED;
			break;
		case KV_INVALID:
			code = ERRCODE_INVALID_PARAMETER_VALUE;
			break;
		case KV_READ_ONLY:
			code = ERRCODE_READ_ONLY_SQL_TRANSACTION;
			break;
		case KV_BUSY:
		case KV_CLOSED:
		case KV_TIMEOUT:
			code = ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE;
			break;
		case KV_BAD_TXN:
			code = ERRCODE_IN_FAILED_SQL_TRANSACTION;
			break;
		default:
			code = ERRCODE_INTERNAL_ERROR;
			break;
	}
	ereport(ERROR,
			(errcode(code),
			 errmsg("kvsep_fdw: %s failed: %s", what, kv_status_str(st)),
			 errdetail("%s", detail)));
	pg_unreachable();
}

kv_status
kvsep_admin_call(int type, double arg, kv_err *err)
{
	KvsepShared *s = kvsep_shared;
	kv_status	st;

	(void) kvsep_db();			/* the engine must be up */
	/* wait for the slot */
	for (;;)
	{
		bool		got = false;

		pthread_mutex_lock(&s->mu);
		/* free, or a result its owner abandoned (died or was cancelled) */
		if (s->admin_state == 0 ||
			(s->admin_state == 2 &&
			 (kill(s->admin_owner, 0) != 0 ||
			  GetCurrentTimestamp() - s->admin_done_at > 5 * USECS_PER_SEC)))
		{
			s->admin_type = type;
			s->admin_arg = arg;
			s->admin_owner = MyProcPid;
			s->admin_state = 1;
			got = true;
		}
		pthread_mutex_unlock(&s->mu);
		if (got)
			break;
		pg_usleep(10000);
		CHECK_FOR_INTERRUPTS();
	}
	if (s->worker_latch)
		SetLatch((Latch *) s->worker_latch);
	/* wait for the worker (a full compaction may take a while) */
	for (;;)
	{
		bool		done;

		pthread_mutex_lock(&s->mu);
		done = s->admin_state == 2 && s->admin_owner == MyProcPid;
		if (done)
		{
			st = (kv_status) s->admin_status;
			if (err)
			{
				memset(err, 0, sizeof *err);
				err->code = st;
				strlcpy(err->msg, s->admin_msg, sizeof err->msg);
			}
			s->admin_state = 0;
		}
		pthread_mutex_unlock(&s->mu);
		if (done)
			return st;
		if (s->worker_state != KVSEP_WORKER_READY)
		{
			pthread_mutex_lock(&s->mu);
			if (s->admin_owner == MyProcPid)
				s->admin_state = 0;
			pthread_mutex_unlock(&s->mu);
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the kvsep storage engine stopped during the request")));
		}
		pg_usleep(10000);
		/* (a cancel leaves the request to the worker, which finishes it) */
		CHECK_FOR_INTERRUPTS();
	}
}
