/*
 * ddl.c - event triggers that keep kvsep tables' definitions and stored
 * data consistent.
 *
 *   ddl_command_start (ALTER [FOREIGN] TABLE): refuses what stored rows
 *     could not survive - changing a column's type, changing which
 *     columns make the key, dropping a key column.
 *   ddl_command_end (CREATE / ALTER FOREIGN TABLE): checks the key
 *     columns (a supported type, a deterministic collation) and gives a
 *     new table its key prefix.
 *   sql_drop: a dropped table's prefix is forgotten and its data dropped
 *     when the transaction commits.
 *
 * The catalog work runs as the bootstrap superuser, so that any user who
 * may create or drop a foreign table can keep kvsep_relations right.
 */
#include "postgres.h"

#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_collation.h"
#include "commands/event_trigger.h"
#include "executor/spi.h"
#include "foreign/foreign.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "kvsep_fdw.h"

static bool
has_key_option(List *options)
{
	ListCell   *lc;

	foreach(lc, options)
		if (strcmp(((DefElem *) lfirst(lc))->defname, "key") == 0)
			return true;
	return false;
}

/* ALTER: refuse changes that stored rows cannot follow. */
static void
check_alter(AlterTableStmt *stmt)
{
	Oid			relid = RangeVarGetRelid(stmt->relation, NoLock, true);
	Relation	rel;
	KvsepTable *t;
	ListCell   *lc;

	if (!OidIsValid(relid) || !kvsep_is_kvsep_table(relid))
		return;
	rel = table_open(relid, AccessShareLock);
	t = kvsep_table_open(rel, false);
	foreach(lc, stmt->cmds)
	{
		AlterTableCmd *cmd = lfirst(lc);
		AttrNumber	attnum = cmd->name ? get_attnum(relid, cmd->name) : InvalidAttrNumber;
		bool		is_key = attnum > 0 && t->is_key[attnum - 1];

		switch (cmd->subtype)
		{
			case AT_AlterColumnType:
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot change the type of column \"%s\" of kvsep_fdw table \"%s\"",
								cmd->name, t->relname),
						 errdetail("Stored rows keep the old type's representation."),
						 errhint("Add a new column, copy the values, and drop the old one.")));
				break;
			case AT_DropColumn:
				if (is_key)
					ereport(ERROR,
							(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
							 errmsg("cannot drop key column \"%s\" of kvsep_fdw table \"%s\"",
									cmd->name, t->relname)));
				break;
			case AT_AlterColumnGenericOptions:
				if (has_key_option((List *) cmd->def))
					ereport(ERROR,
							(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
							 errmsg("cannot change the key of kvsep_fdw table \"%s\"", t->relname),
							 errdetail("Stored rows are found by their key."),
							 errhint("Create a new table with the new key and copy the rows.")));
				break;
			case AT_AddColumn:
				if (IsA(cmd->def, ColumnDef) && has_key_option(((ColumnDef *) cmd->def)->fdwoptions))
					ereport(ERROR,
							(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
							 errmsg("cannot add a key column to kvsep_fdw table \"%s\"", t->relname),
							 errhint("Create a new table with the new key and copy the rows.")));
				break;
			default:
				break;
		}
	}
	table_close(rel, AccessShareLock);
}

/* CREATE / ALTER done: the key columns must be usable; a prefix is given. */
static void
check_table(Oid relid)
{
	Relation	rel = table_open(relid, AccessShareLock);
	KvsepTable *t = kvsep_table_open(rel, false);	/* errors on unsupported types */

	for (int k = 0; k < t->nkeys; k++)
	{
		KvsepKeyCol *c = &t->keys[k];

		if (OidIsValid(c->collid) && !get_collation_isdeterministic(c->collid))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("key column \"%s\" of kvsep_fdw table \"%s\" has a nondeterministic collation",
							get_attname(relid, c->attnum, false), t->relname),
					 errhint("Use a deterministic collation such as \"C\" for key columns.")));
	}
	table_close(rel, AccessShareLock);
	if (!t->has_prefix)
	{
		uint8		p[KVSEP_PREFIX_MAX];
		int			n;

		(void) kvsep_table_prefix(relid, true, p, &n);
	}
}

/* The objids of the current command's objects of a kind. */
static List *
command_objects(const char *fn, const char *kind)
{
	List	   *out = NIL;
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1] = {CStringGetTextDatum(kind)};

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "kvsep_fdw: SPI_connect failed");
	if (SPI_execute_with_args(psprintf("SELECT DISTINCT objid FROM pg_catalog.%s() "
									   "WHERE object_type = $1", fn),
							  1, argtypes, args, NULL, true, 0) < 0)
		elog(ERROR, "kvsep_fdw: could not read %s()", fn);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			out = lappend_oid(out, DatumGetObjectId(d));
	}
	SPI_finish();
	return out;
}

/* Runs fn(arg) as the bootstrap superuser. */
static void
as_superuser(void (*fn) (Oid), Oid arg)
{
	Oid			save_user;
	int			save_sec;

	GetUserIdAndSecContext(&save_user, &save_sec);
	SetUserIdAndSecContext(BOOTSTRAP_SUPERUSERID, save_sec | SECURITY_LOCAL_USERID_CHANGE);
	PG_TRY();
	{
		fn(arg);
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_user, save_sec);
	}
	PG_END_TRY();
}

PG_FUNCTION_INFO_V1(kvsep_ddl_start);
Datum
kvsep_ddl_start(PG_FUNCTION_ARGS)
{
	EventTriggerData *d;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		elog(ERROR, "kvsep_ddl_start: not fired by an event trigger");
	d = (EventTriggerData *) fcinfo->context;
	if (d->parsetree && IsA(d->parsetree, AlterTableStmt))
		check_alter((AlterTableStmt *) d->parsetree);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(kvsep_ddl_end);
Datum
kvsep_ddl_end(PG_FUNCTION_ARGS)
{
	ListCell   *lc;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		elog(ERROR, "kvsep_ddl_end: not fired by an event trigger");
	foreach(lc, command_objects("pg_event_trigger_ddl_commands", "foreign table"))
	{
		Oid			relid = lfirst_oid(lc);

		if (kvsep_is_kvsep_table(relid))
			as_superuser(check_table, relid);
	}
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(kvsep_sql_drop);
Datum
kvsep_sql_drop(PG_FUNCTION_ARGS)
{
	ListCell   *lc;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		elog(ERROR, "kvsep_sql_drop: not fired by an event trigger");
	foreach(lc, command_objects("pg_event_trigger_dropped_objects", "foreign table"))
		as_superuser(kvsep_forget_table, lfirst_oid(lc));
	PG_RETURN_VOID();
}
