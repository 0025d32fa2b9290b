/*
 * shmem.c - the shared memory of kvsep_fdw: the glue's control block
 * (KvsepShared: worker state, the engine log ring, the admin request slot)
 * followed by the engine's region, requested at postmaster start and
 * mapped at the same address in every backend.
 *
 * After a crash the postmaster creates shared memory anew, so the engine
 * region starts empty again and the worker reopens the engine from disk.
 */
#include "postgres.h"

#include <pthread.h>

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"

#include "kvsep_fdw.h"

KvsepShared *kvsep_shared = NULL;
void	   *kvsep_region = NULL;
Size		kvsep_region_size = 0;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

#define REGION_ALIGN 4096

static Size
total_size(void)
{
	kv_options	o;

	kvsep_engine_options(&o);
	kvsep_region_size = kv_shared_size(&o);
	return MAXALIGN(sizeof(KvsepShared)) + REGION_ALIGN + kvsep_region_size;
}

static void
request(void)
{
	kv_options	o;
	kv_err		err;

	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	/* settings the engine would refuse stop the server here, not later */
	kvsep_engine_options(&o);
	kvsep_err_init(&err);
	if (kv_options_validate(&o, &err) != KV_OK)
		ereport(FATAL,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("kvsep_fdw: invalid engine settings: %s", err.msg),
				 errhint("Check the kvsep.* settings in postgresql.conf.")));
	RequestAddinShmemSpace(total_size());
}

static void
startup(void)
{
	bool		found;
	char	   *base;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	base = ShmemInitStruct("kvsep_fdw", total_size(), &found);
	kvsep_shared = (KvsepShared *) base;
	kvsep_region = (void *) TYPEALIGN(REGION_ALIGN, base + MAXALIGN(sizeof(KvsepShared)));
	if (!found)
	{
		pthread_mutexattr_t attr;

		memset(kvsep_shared, 0, sizeof(KvsepShared));
		pthread_mutexattr_init(&attr);
		pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
		pthread_mutex_init(&kvsep_shared->mu, &attr);
		pthread_mutexattr_destroy(&attr);
		kvsep_shared->worker_state = KVSEP_WORKER_STARTING;
		/* the engine reads its region's state word first: an empty region */
		memset(kvsep_region, 0, REGION_ALIGN);
	}
	LWLockRelease(AddinShmemInitLock);
}

void
kvsep_shmem_register(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = startup;
}

/*
 * The engine's log callback, in any process and any engine thread: it must
 * not call into PostgreSQL.  Lines go to a ring the worker empties into
 * the server log.
 */
void
kvsep_log_callback(void *ctx, kv_log_level level, const char *msg)
{
	KvsepShared *s = kvsep_shared;
	uint32		next;

	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	next = (s->log_head + 1) % KVSEP_LOG_RING;
	if (next == s->log_tail)
		s->log_dropped++;
	else
	{
		s->log[s->log_head].level = level;
		strlcpy(s->log[s->log_head].msg, msg, KVSEP_MSG_MAX);
		s->log_head = next;
	}
	pthread_mutex_unlock(&s->mu);
	/* (no SetLatch: engine threads must not touch PostgreSQL's signal
	 * machinery; the worker looks at the ring every 100 ms) */
}
