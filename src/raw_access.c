/*
 * raw_access.c - a table's entries as the engine stores them, and the
 * decoders applied to given bytes: kvsep_raw_entries(),
 * kvsep_raw_out_of_line(), kvsep_decode_key() and kvsep_decode_row().
 *
 * For looking at what is on disk when something looks wrong, and for the
 * decoders' randomized test (sql/09_decoders.sql): damaged bytes must end
 * in an error with ERRCODE_DATA_CORRUPTED, never in a crash or a silent
 * wrong answer.  None of these is granted to PUBLIC.
 */
#include "postgres.h"

#include "access/table.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "kvsep_fdw.h"

PG_FUNCTION_INFO_V1(kvsep_raw_entries);
PG_FUNCTION_INFO_V1(kvsep_raw_out_of_line);
PG_FUNCTION_INFO_V1(kvsep_sql_decode_key);
PG_FUNCTION_INFO_V1(kvsep_sql_decode_row);

/* The kvsep_fdw table behind relid, opened for reading its definition. */
static Relation
open_kvsep_table(Oid relid, KvsepTable **t)
{
	Relation	rel = table_open(relid, AccessShareLock);

	if (!kvsep_is_kvsep_table(relid))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a kvsep_fdw foreign table",
						RelationGetRelationName(rel))));
	*t = kvsep_table_open(rel, false);
	return rel;
}

/* The table, and value and null arrays (all null) sized for its columns. */
static Relation
open_for_decoding(Oid relid, KvsepTable **t, Datum **values, bool **isnull)
{
	Relation	rel = open_kvsep_table(relid, t);
	int			natts = Max(RelationGetDescr(rel)->natts, 1);

	*values = palloc0(sizeof(Datum) * natts);
	*isnull = palloc(sizeof(bool) * natts);
	for (int i = 0; i < natts; i++)
		(*isnull)[i] = true;
	return rel;
}

static bytea *
to_bytea(const void *p, size_t n)
{
	bytea	   *b = palloc(VARHDRSZ + n);

	SET_VARSIZE(b, VARHDRSZ + n);
	memcpy(VARDATA(b), p, n);
	return b;
}

/* The (key, value) rows of it, into the function's result. */
static void
emit_entries(FunctionCallInfo fcinfo, kv_iter *it)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	kv_err		err;
	kv_status	st = KV_OK;

	if (!it)
		return;
	kvsep_err_init(&err);
	for (kv_iter_rewind(it); kv_iter_valid(it); kv_iter_next(it))
	{
		size_t		kn, vn;
		const void *k = kv_iter_key(it, &kn), *v;
		Datum		values[2];
		bool		nulls[2] = {false, false};

		CHECK_FOR_INTERRUPTS();
		st = kv_iter_value(it, &v, &vn, &err);
		if (st != KV_OK)
			break;
		values[0] = PointerGetDatum(to_bytea(k, kn));
		values[1] = PointerGetDatum(to_bytea(v, vn));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	if (st == KV_OK)
		st = kv_iter_status(it, &err);
	kvsep_iter_closed(it);
	kv_iter_free(it);
	if (st != KV_OK)
		kvsep_raise(st, &err, "reading raw entries");
}

/* The table's rows' entries, or (ool) their companions, as a result set. */
static Datum
raw_srf(FunctionCallInfo fcinfo, bool ool)
{
	KvsepTable *t;
	Relation	rel;

	InitMaterializedSRF(fcinfo, 0);
	rel = open_kvsep_table(PG_GETARG_OID(0), &t);
	emit_entries(fcinfo, ool ? kvsep_table_iter_ool(t, "reading raw entries")
				 : kvsep_table_iter_all(t, "reading raw entries"));
	table_close(rel, AccessShareLock);
	return (Datum) 0;
}

/* kvsep_raw_entries(tbl regclass) -> (key bytea, value bytea): every entry of
 * the table at the current snapshot, key with the table's prefix. */
Datum
kvsep_raw_entries(PG_FUNCTION_ARGS)
{
	return raw_srf(fcinfo, false);
}

/* kvsep_raw_out_of_line(tbl regclass) -> (key bytea, value bytea): the
 * companion entries of the table's rows (their out-of-line values). */
Datum
kvsep_raw_out_of_line(PG_FUNCTION_ARGS)
{
	return raw_srf(fcinfo, true);
}

/* kvsep_decode_key(tbl regclass, key bytea) -> text: the key columns of a
 * stored key (prefix included), each through its type's output function,
 * as "(v1,v2,...)". */
Datum
kvsep_sql_decode_key(PG_FUNCTION_ARGS)
{
	bytea	   *key = PG_GETARG_BYTEA_PP(1);
	KvsepTable *t;
	Datum	   *values;
	bool	   *isnull;
	Relation	rel = open_for_decoding(PG_GETARG_OID(0), &t, &values, &isnull);
	TupleDesc	desc = RelationGetDescr(rel);
	StringInfoData out;

	kvsep_table_decode_key(t, (const uint8 *) VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key), values,
						   isnull);
	initStringInfo(&out);
	appendStringInfoChar(&out, '(');
	for (int k = 0; k < t->nkeys; k++)
	{
		int			i = t->keys[k].attnum - 1;
		Oid			typout;
		bool		varlena;

		if (k > 0)
			appendStringInfoChar(&out, ',');
		if (isnull[i])
		{
			/* lossy key (not "C" text): the row holds the value */
			appendStringInfoChar(&out, '?');
			continue;
		}
		getTypeOutputInfo(TupleDescAttr(desc, i)->atttypid, &typout, &varlena);
		appendStringInfoString(&out, OidOutputFunctionCall(typout, values[i]));
	}
	appendStringInfoChar(&out, ')');
	table_close(rel, AccessShareLock);
	PG_RETURN_TEXT_P(cstring_to_text(out.data));
}

/* kvsep_decode_row(tbl regclass, value bytea) -> int: checks a stored row
 * value against the table's columns and returns how many columns it holds
 * a value for, out-of-line values included (they are not read).  (Values
 * are not passed to output functions: like a heap tuple's, a stored value
 * of the right length is taken as it is.) */
Datum
kvsep_sql_decode_row(PG_FUNCTION_ARGS)
{
	bytea	   *val = PG_GETARG_BYTEA_PP(1);
	KvsepTable *t;
	Datum	   *values;
	bool	   *isnull;
	Relation	rel = open_for_decoding(PG_GETARG_OID(0), &t, &values, &isnull);
	TupleDesc	desc = RelationGetDescr(rel);
	int			n = 0;

	kvsep_decode_row(t, desc, (const uint8 *) VARDATA_ANY(val), VARSIZE_ANY_EXHDR(val), values,
					 isnull, NULL, NULL, 0);
	for (int i = 0; i < desc->natts; i++)
		if (!isnull[i] && !t->is_key[i])
			n++;
	table_close(rel, AccessShareLock);
	PG_RETURN_INT32(n);
}
