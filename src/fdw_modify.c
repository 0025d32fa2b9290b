/*
 * fdw_modify.c - INSERT, UPDATE, DELETE, COPY FROM and TRUNCATE on kvsep
 * tables.
 *
 * The key is the row's identity: UPDATE and DELETE get the old key
 * columns as junk columns of the scan (kvsep_key_<attnum>).  An INSERT
 * whose key exists is a unique_violation unless ON CONFLICT DO NOTHING;
 * an UPDATE that changes the key moves the row (the same check on the new
 * key).  Every key whose read decided a write is noted for conflict
 * detection, so two transactions that update the same row, or insert the
 * same new key, cannot both commit (the second gets SQLSTATE 40001).
 * Writes go to the transaction's pending writes (xact.c) and become
 * visible together at commit.  A row with values stored out of line has a
 * companion entry (out_of_line.c), written and deleted with the row.
 */
#include "postgres.h"

#include "access/table.h"
#include "commands/explain.h"
#include "executor/executor.h"
#include "foreign/fdwapi.h"
#include "nodes/makefuncs.h"
#include "optimizer/appendinfo.h"
#include "optimizer/optimizer.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "kvsep_fdw.h"

typedef struct ModifyState
{
	KvsepTable *t;
	Relation	rel;
	bool		do_nothing;		/* ON CONFLICT DO NOTHING */
	AttrNumber *junk;			/* [nkeys]: old key columns in the plan's output */
	MemoryContext tmp;			/* per row */
	StringInfoData key, old_key, row;
	StringInfoData companion;	/* the row's out-of-line values */
	StringInfoData ckey;		/* a companion's key */
	kv_buf		val;
	KvsepOolReader *ool;		/* DELETE RETURNING's reads */
	bool		token_noted;	/* the table's range token noted as written */
	/* INSERT: no key above top exists (see above_top) */
	StringInfoData top;
	bool		top_known;
	uint64		top_version;	/* the snapshot it was found at */
	uint64		top_mark;		/* the transaction's writes when last checked */
} ModifyState;

static char *
junk_name(AttrNumber attnum)
{
	return psprintf("kvsep_key_%d", attnum);
}

static void
kvsepAddForeignUpdateTargets(PlannerInfo *root, Index rtindex, RangeTblEntry *target_rte,
							 Relation target_relation)
{
	KvsepTable *t = kvsep_table_open(target_relation, false);
	TupleDesc	desc = RelationGetDescr(target_relation);

	for (int k = 0; k < t->nkeys; k++)
	{
		Form_pg_attribute a = TupleDescAttr(desc, t->keys[k].attnum - 1);
		Var		   *v = makeVar(rtindex, a->attnum, a->atttypid, a->atttypmod, a->attcollation,
								0);

		add_row_identity_var(root, v, rtindex, junk_name(a->attnum));
	}
}

static List *
kvsepPlanForeignModify(PlannerInfo *root, ModifyTable *plan, Index resultRelation,
					   int subplan_index)
{
	if (plan->onConflictAction == ONCONFLICT_UPDATE)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("ON CONFLICT DO UPDATE is not supported on kvsep_fdw tables"),
				 errhint("Use ON CONFLICT DO NOTHING, or UPDATE after checking the key.")));
	return list_make1(makeInteger(plan->onConflictAction == ONCONFLICT_NOTHING));
}

static ModifyState *
begin_state(ResultRelInfo *rinfo, EState *estate, bool do_nothing)
{
	ModifyState *s = palloc0(sizeof(ModifyState));

	s->rel = rinfo->ri_RelationDesc;
	s->t = kvsep_table_open(s->rel, true);
	s->do_nothing = do_nothing;
	s->tmp = AllocSetContextCreate(estate ? estate->es_query_cxt : CurrentMemoryContext,
								   "kvsep_fdw modify", ALLOCSET_DEFAULT_SIZES);
	initStringInfo(&s->key);
	initStringInfo(&s->old_key);
	initStringInfo(&s->row);
	initStringInfo(&s->companion);
	initStringInfo(&s->ckey);
	initStringInfo(&s->top);
	return s;
}

static void
kvsepBeginForeignModify(ModifyTableState *mtstate, ResultRelInfo *rinfo, List *fdw_private,
						int subplan_index, int eflags)
{
	ModifyState *s;
	CmdType		op = mtstate->operation;

	if (eflags & EXEC_FLAG_EXPLAIN_ONLY)
		return;
	s = begin_state(rinfo, mtstate->ps.state, intVal(linitial(fdw_private)));
	if (op == CMD_UPDATE || op == CMD_DELETE)
	{
		Plan	   *sub = outerPlanState(mtstate)->plan;

		s->junk = palloc(sizeof(AttrNumber) * s->t->nkeys);
		for (int k = 0; k < s->t->nkeys; k++)
		{
			s->junk[k] = ExecFindJunkAttributeInTlist(sub->targetlist,
													  junk_name(s->t->keys[k].attnum));
			if (!AttributeNumberIsValid(s->junk[k]))
				elog(ERROR, "kvsep_fdw: key column %d missing from the plan", s->t->keys[k].attnum);
		}
	}
	rinfo->ri_FdwState = s;
}

/*
 * For INSERT: 1 if no row of the table can have this key because it is
 * above "top", the table's largest key at the transaction's snapshot over
 * its pending writes.  top is found at the statement's first insert,
 * raised by each key it inserts (raise_top), and found again when the
 * snapshot has moved or the transaction wrote through something else (a
 * trigger) since the statement's last insert.  A load in key order thus
 * makes no lookup.
 */
static bool
above_top(ModifyState *s, kv_txn *txn, StringInfo key)
{
	if (!s->top_known || s->top_version != kv_txn_read_version(txn) ||
		s->top_mark != kv_txn_mark(txn))
	{
		kvsep_table_last_key(s->t, &s->top, "inserting a row");
		s->top_known = true;
		s->top_version = kv_txn_read_version(txn);
		s->top_mark = kv_txn_mark(txn);
	}
	return kvsep_key_cmp(key->data, key->len, s->top.data, s->top.len) > 0;
}

/* After an insert of key (above_top was asked first): top rises to it. */
static void
raise_top(ModifyState *s, kv_txn *txn, StringInfo key)
{
	if (kvsep_key_cmp(key->data, key->len, s->top.data, s->top.len) > 0)
	{
		resetStringInfo(&s->top);
		appendBinaryStringInfo(&s->top, key->data, key->len);
	}
	s->top_mark = kv_txn_mark(txn);
}

/* Does key exist (pending writes included)?  known_absent: it cannot
 * (above_top), no lookup.  The read is noted for conflict detection
 * either way: a concurrent insert of the same key conflicts. */
static bool
key_exists(kv_txn *txn, StringInfo key, bool known_absent)
{
	kv_err		err;
	kv_status	st;

	kvsep_err_init(&err);
	st = kv_txn_note_read(txn, key->data, key->len, &err);
	if (st == KV_OK && known_absent)
		return false;
	if (st == KV_OK)
		st = kv_txn_get(txn, key->data, key->len, NULL, NULL, &err);
	if (st == KV_NOT_FOUND)
		return false;
	if (st != KV_OK)
		kvsep_raise(st, &err, "checking a key");
	return true;
}

static void
duplicate(ModifyState *s, TupleTableSlot *slot)
{
	StringInfoData cols, vals;

	initStringInfo(&cols);
	initStringInfo(&vals);
	for (int k = 0; k < s->t->nkeys; k++)
	{
		AttrNumber	a = s->t->keys[k].attnum;
		Oid			out;
		bool		varlena;

		getTypeOutputInfo(s->t->keys[k].typid, &out, &varlena);
		appendStringInfo(&cols, "%s%s", k ? ", " : "",
						 quote_identifier(get_attname(s->t->relid, a, false)));
		appendStringInfo(&vals, "%s%s", k ? ", " : "",
						 OidOutputFunctionCall(out, slot->tts_values[a - 1]));
	}
	ereport(ERROR,
			(errcode(ERRCODE_UNIQUE_VIOLATION),
			 errmsg("duplicate key value violates the key of kvsep_fdw table \"%s\"",
					s->t->relname),
			 errdetail("Key (%s)=(%s) already exists.", cols.data, vals.data)));
}

/* A write to the table conflicts with SERIALIZABLE range scans of it
 * (they note the bare prefix, which no row key equals, as read). */
static void
note_table_written(ModifyState *s, kv_txn *txn)
{
	kv_err		err;
	kv_status	st;

	if (s->token_noted)
		return;
	kvsep_err_init(&err);
	st = kv_txn_note_write(txn, s->t->prefix, s->t->prefix_len, &err);
	if (st != KV_OK)
		kvsep_raise(st, &err, "writing");
	s->token_noted = true;
}

static void
put(kv_txn *txn, StringInfo key, StringInfo row, const char *what)
{
	kv_err		err;
	kv_status	st;

	kvsep_err_init(&err);
	st = kv_txn_set(txn, key->data, key->len, row->data, row->len, &err);
	if (st != KV_OK)
		kvsep_raise(st, &err, what);
	kvsep_txn_wrote();
}

static void
del(kv_txn *txn, StringInfo key)
{
	kv_err		err;
	kv_status	st;

	kvsep_err_init(&err);
	st = kv_txn_delete(txn, key->data, key->len, &err);
	if (st != KV_OK)
		kvsep_raise(st, &err, "deleting a row");
	kvsep_txn_wrote();
}

/* Writes the row encoded in s->row (and s->companion) under key. */
static void
put_row(ModifyState *s, kv_txn *txn, StringInfo key, const char *what)
{
	put(txn, key, &s->row, what);
	if (s->companion.len > 0)
	{
		kvsep_ool_key(key->data, key->len, &s->ckey);
		put(txn, &s->ckey, &s->companion, what);
	}
}

/* The row under key is gone or has no out-of-line values any more: its
 * companion, if it has one, goes too. */
static void
drop_companion(ModifyState *s, kv_txn *txn, StringInfo key)
{
	kv_err		err;
	kv_status	st;

	if (!s->t->has_ool)
		return;
	kvsep_ool_key(key->data, key->len, &s->ckey);
	kvsep_err_init(&err);
	st = kv_txn_get(txn, s->ckey.data, s->ckey.len, NULL, NULL, &err);
	if (st == KV_NOT_FOUND)
		return;
	if (st != KV_OK)
		kvsep_raise(st, &err, "deleting a row");
	del(txn, &s->ckey);
}

static TupleTableSlot *
insert_one(ModifyState *s, TupleTableSlot *slot)
{
	kv_txn	   *txn = kvsep_txn();
	TupleDesc	desc = RelationGetDescr(s->rel);
	MemoryContext old = MemoryContextSwitchTo(s->tmp);
	bool		skipped = false;

	slot_getallattrs(slot);
	resetStringInfo(&s->key);
	resetStringInfo(&s->row);
	kvsep_table_key(s->t, slot->tts_values, slot->tts_isnull, &s->key);
	if (key_exists(txn, &s->key, above_top(s, txn, &s->key)))
	{
		if (!s->do_nothing)
			duplicate(s, slot);
		skipped = true;
	}
	else
	{
		kvsep_encode_row(s->t, desc, slot->tts_values, slot->tts_isnull, &s->row,
						 &s->companion);
		note_table_written(s, txn);
		put_row(s, txn, &s->key, "inserting a row");
		raise_top(s, txn, &s->key);
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(s->tmp);
	return skipped ? NULL : slot;
}

static TupleTableSlot *
kvsepExecForeignInsert(EState *estate, ResultRelInfo *rinfo, TupleTableSlot *slot,
					   TupleTableSlot *planSlot)
{
	return insert_one(rinfo->ri_FdwState, slot);
}

static TupleTableSlot **
kvsepExecForeignBatchInsert(EState *estate, ResultRelInfo *rinfo, TupleTableSlot **slots,
							TupleTableSlot **planSlots, int *numSlots)
{
	ModifyState *s = rinfo->ri_FdwState;

	for (int i = 0; i < *numSlots; i++)
		(void) insert_one(s, slots[i]);
	return slots;
}

static int
kvsepGetForeignModifyBatchSize(ResultRelInfo *rinfo)
{
	ModifyState *s = rinfo->ri_FdwState;

	/* rows must come back one by one for RETURNING, row triggers and DO NOTHING */
	if (rinfo->ri_projectReturning || (s && s->do_nothing) ||
		(rinfo->ri_TrigDesc && (rinfo->ri_TrigDesc->trig_insert_before_row ||
								rinfo->ri_TrigDesc->trig_insert_after_row)))
		return 1;
	return kvsep_batch_size;
}

/* The old key, from the junk columns of the plan's row. */
static void
old_key(ModifyState *s, TupleTableSlot *planSlot, StringInfo out)
{
	Datum	   *values = palloc0(sizeof(Datum) * Max(s->t->natts, 1));
	bool	   *isnull = palloc(sizeof(bool) * Max(s->t->natts, 1));

	for (int i = 0; i < s->t->natts; i++)
		isnull[i] = true;
	for (int k = 0; k < s->t->nkeys; k++)
	{
		AttrNumber	a = s->t->keys[k].attnum;

		values[a - 1] = ExecGetJunkAttribute(planSlot, s->junk[k], &isnull[a - 1]);
	}
	resetStringInfo(out);
	kvsep_table_key(s->t, values, isnull, out);
}

static TupleTableSlot *
kvsepExecForeignUpdate(EState *estate, ResultRelInfo *rinfo, TupleTableSlot *slot,
					   TupleTableSlot *planSlot)
{
	ModifyState *s = rinfo->ri_FdwState;
	kv_txn	   *txn = kvsep_txn();
	TupleDesc	desc = RelationGetDescr(s->rel);
	MemoryContext old = MemoryContextSwitchTo(s->tmp);
	kv_err		err;
	bool		moved;

	slot_getallattrs(slot);
	old_key(s, planSlot, &s->old_key);
	resetStringInfo(&s->key);
	resetStringInfo(&s->row);
	kvsep_table_key(s->t, slot->tts_values, slot->tts_isnull, &s->key);
	/* the row read decided this write */
	kvsep_err_init(&err);
	if (kv_txn_note_read(txn, s->old_key.data, s->old_key.len, &err) != KV_OK)
		kvsep_raise(err.code, &err, "updating a row");
	moved = s->key.len != s->old_key.len ||
		memcmp(s->key.data, s->old_key.data, s->key.len) != 0;
	if (moved && key_exists(txn, &s->key, false))
		duplicate(s, slot);
	/* (encoded before anything is written: a row that is too large fails
	 * with nothing of the update done) */
	kvsep_encode_row(s->t, desc, slot->tts_values, slot->tts_isnull, &s->row, &s->companion);
	note_table_written(s, txn);
	if (moved)
	{
		/* the key changed: the row moves */
		del(txn, &s->old_key);
		drop_companion(s, txn, &s->old_key);
	}
	else if (s->companion.len == 0)
		drop_companion(s, txn, &s->key);
	put_row(s, txn, &s->key, "updating a row");
	MemoryContextSwitchTo(old);
	MemoryContextReset(s->tmp);
	return slot;
}

static TupleTableSlot *
kvsepExecForeignDelete(EState *estate, ResultRelInfo *rinfo, TupleTableSlot *slot,
					   TupleTableSlot *planSlot)
{
	ModifyState *s = rinfo->ri_FdwState;
	kv_txn	   *txn = kvsep_txn();
	MemoryContext old = MemoryContextSwitchTo(s->tmp);
	kv_err		err;
	kv_status	st;

	old_key(s, planSlot, &s->old_key);
	kvsep_err_init(&err);
	if (kv_txn_note_read(txn, s->old_key.data, s->old_key.len, &err) != KV_OK)
		kvsep_raise(err.code, &err, "deleting a row");
	if (rinfo->ri_projectReturning)
	{
		/* RETURNING needs the row being deleted */
		TupleDesc	desc = RelationGetDescr(s->rel);

		st = kv_txn_get(txn, s->old_key.data, s->old_key.len, &s->val, NULL, &err);
		if (st == KV_NOT_FOUND)
		{
			MemoryContextSwitchTo(old);
			return NULL;
		}
		if (st != KV_OK)
			kvsep_raise(st, &err, "reading a row");
		ExecClearTuple(slot);
		MemoryContextSwitchTo(old);
		for (int i = 0; i < desc->natts; i++)
			slot->tts_isnull[i] = true;
		kvsep_table_decode_key(s->t, (const uint8 *) s->old_key.data, s->old_key.len,
							   slot->tts_values, slot->tts_isnull);
		if (!s->ool)
			s->ool = kvsep_ool_reader(s->t, txn, NULL, 0, false);
		kvsep_decode_row(s->t, desc, (const uint8 *) s->val.data, s->val.len,
						 slot->tts_values, slot->tts_isnull, s->ool,
						 (const uint8 *) s->old_key.data, s->old_key.len);
		ExecStoreVirtualTuple(slot);
		/* the row's out-of-line values are read before they are deleted */
		ExecMaterializeSlot(slot);
		old = MemoryContextSwitchTo(s->tmp);
	}
	note_table_written(s, txn);
	del(txn, &s->old_key);
	drop_companion(s, txn, &s->old_key);
	MemoryContextSwitchTo(old);
	return slot;
}

static void
kvsepEndForeignModify(EState *estate, ResultRelInfo *rinfo)
{
	ModifyState *s = rinfo->ri_FdwState;

	if (s && s->val.data)
		kv_buf_free(&s->val);
	if (s)
		kvsep_ool_reader_free(s->ool);
}

/* COPY FROM and rows routed into a kvsep partition. */
static void
kvsepBeginForeignInsert(ModifyTableState *mtstate, ResultRelInfo *rinfo)
{
	bool		do_nothing = false;

	if (mtstate && mtstate->ps.plan)
		do_nothing = ((ModifyTable *) mtstate->ps.plan)->onConflictAction == ONCONFLICT_NOTHING;
	rinfo->ri_FdwState = begin_state(rinfo, mtstate ? mtstate->ps.state : NULL, do_nothing);
}

static void
kvsepEndForeignInsert(EState *estate, ResultRelInfo *rinfo)
{
	kvsepEndForeignModify(estate, rinfo);
}

static int
kvsepIsForeignRelUpdatable(Relation rel)
{
	return (1 << CMD_INSERT) | (1 << CMD_UPDATE) | (1 << CMD_DELETE);
}

static void
kvsepExplainForeignModify(ModifyTableState *mtstate, ResultRelInfo *rinfo, List *fdw_private,
						  int subplan_index, ExplainState *es)
{
	if (mtstate->operation == CMD_INSERT)
		ExplainPropertyInteger("Kvsep Batch Size", NULL, rinfo->ri_BatchSize, es);
}

/* TRUNCATE: each table gets a fresh prefix; the old data goes at commit. */
static void
kvsepExecForeignTruncate(List *rels, DropBehavior behavior, bool restart_seqs)
{
	ListCell   *lc;

	foreach(lc, rels)
		kvsep_truncate_table(RelationGetRelid((Relation) lfirst(lc)));
}

void
kvsep_modify_init_routine(FdwRoutine *r)
{
	r->AddForeignUpdateTargets = kvsepAddForeignUpdateTargets;
	r->PlanForeignModify = kvsepPlanForeignModify;
	r->BeginForeignModify = kvsepBeginForeignModify;
	r->ExecForeignInsert = kvsepExecForeignInsert;
	r->ExecForeignBatchInsert = kvsepExecForeignBatchInsert;
	r->GetForeignModifyBatchSize = kvsepGetForeignModifyBatchSize;
	r->ExecForeignUpdate = kvsepExecForeignUpdate;
	r->ExecForeignDelete = kvsepExecForeignDelete;
	r->EndForeignModify = kvsepEndForeignModify;
	r->BeginForeignInsert = kvsepBeginForeignInsert;
	r->EndForeignInsert = kvsepEndForeignInsert;
	r->IsForeignRelUpdatable = kvsepIsForeignRelUpdatable;
	r->ExplainForeignModify = kvsepExplainForeignModify;
	r->ExecForeignTruncate = kvsepExecForeignTruncate;
}
