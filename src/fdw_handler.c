/*
 * fdw_handler.c - the extension's entry points: _PG_init (refuses to load
 * outside shared_preload_libraries; GUCs, shared memory, the worker,
 * transaction callbacks), the FDW handler and the options validator.
 *
 * Options: the column option "key" (boolean) marks key columns; servers
 * and tables take no options.  Nothing names a file path at the SQL level:
 * the engine's directories are server settings (kvsep.data_directory,
 * kvsep.value_directory), which only superusers can set.
 */
#include "postgres.h"

#include "access/reloptions.h"
#include "catalog/pg_foreign_server.h"
#include "catalog/pg_foreign_table.h"
#include "catalog/pg_attribute.h"
#include "catalog/pg_user_mapping.h"
#include "catalog/pg_foreign_data_wrapper.h"
#include "commands/defrem.h"
#include "foreign/fdwapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "kvsep_fdw.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("kvsep_fdw must be loaded via shared_preload_libraries"),
				 errhint("Add kvsep_fdw to shared_preload_libraries in postgresql.conf and restart the server.")));
	kvsep_define_gucs();
	kvsep_shmem_register();
	kvsep_register_worker();
	kvsep_xact_init();
}

PG_FUNCTION_INFO_V1(kvsep_fdw_handler);
Datum
kvsep_fdw_handler(PG_FUNCTION_ARGS)
{
	FdwRoutine *r = makeNode(FdwRoutine);

	kvsep_plan_init_routine(r);
	kvsep_scan_init_routine(r);
	kvsep_modify_init_routine(r);
	PG_RETURN_POINTER(r);
}

PG_FUNCTION_INFO_V1(kvsep_fdw_validator);
Datum
kvsep_fdw_validator(PG_FUNCTION_ARGS)
{
	List	   *options = untransformRelOptions(PG_GETARG_DATUM(0));
	Oid			catalog = PG_GETARG_OID(1);
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *d = lfirst(lc);

		if (catalog == AttributeRelationId && strcmp(d->defname, "key") == 0)
		{
			(void) defGetBoolean(d);	/* errors on a non-boolean */
			continue;
		}
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("invalid option \"%s\"", d->defname),
				 catalog == AttributeRelationId
				 ? errhint("Valid options in this context are: key")
				 : errhint("There are no valid options in this context.")));
	}
	PG_RETURN_VOID();
}
