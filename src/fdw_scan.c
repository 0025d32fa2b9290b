/*
 * fdw_scan.c - executing scans of kvsep tables (the access planned by
 * fdw_plan.c), EXPLAIN output, and ANALYZE sampling.
 *
 * At the start of a scan (and at every rescan, with new parameter values)
 * the bound expressions are evaluated and encoded into a list of key
 * ranges: one per IN-list value, each either a single key (a point get)
 * or [lower, upper) over the table's prefix.  Rows are read through the
 * transaction at a read point taken when the scan begins (xact.c): they
 * include the transaction's earlier writes but not writes made after the
 * scan began (an UPDATE does not see its own updates, a cursor keeps what
 * it saw at DECLARE).  A key-only scan never reads row values, so it never
 * touches the value log.  Under SERIALIZABLE a range scan notes the
 * table's range token as read (writers note it as written), so a
 * concurrent insert into the range is a conflict (no phantoms).
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "commands/explain.h"
#include "executor/executor.h"
#include "foreign/fdwapi.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/ruleutils.h"
#include "utils/sampling.h"

#include "kvsep_fdw.h"

typedef struct KeyRange
{
	StringInfoData lo;			/* inclusive */
	StringInfoData hi;			/* exclusive; len 0 = unbounded */
	bool		point;			/* lo is a whole key */
} KeyRange;

typedef struct KvScan
{
	KvsepTable *t;
	int			access, direction, n_eq, in_pos;
	bool		key_only, has_lower, lower_incl, has_upper, upper_incl;
	bool		need_key;		/* decode key columns (KVSEP_PI_NEED_KEY) */
	List	   *exprs;			/* ExprState * of fdw_exprs */
	KeyRange   *ranges;
	int			n_ranges, cur;	/* range being read */
	bool		started;
	kv_iter    *it;
	kv_txn_point point;			/* what the scan reads */
	kv_snapshot *snap;			/* keeps point.version readable */
	KvsepOolReader *ool;		/* reads out-of-line values at the read point */
	MemoryContext row_cxt;		/* decoded values of the current row */
	uint64		keys_read, vlog_reads, gets;
	kv_buf		val;
} KvScan;

static int
plan_int(List *priv, int item)
{
	return intVal(list_nth(priv, item));
}

static void
kvsepBeginForeignScan(ForeignScanState *node, int eflags)
{
	ForeignScan *plan = (ForeignScan *) node->ss.ps.plan;
	KvScan  *s = palloc0(sizeof(KvScan));
	List	   *priv = plan->fdw_private;

	node->fdw_state = s;
	s->access = plan_int(priv, KVSEP_PI_ACCESS);
	s->direction = plan_int(priv, KVSEP_PI_DIRECTION);
	s->key_only = plan_int(priv, KVSEP_PI_KEY_ONLY);
	s->n_eq = plan_int(priv, KVSEP_PI_N_EQ);
	s->in_pos = plan_int(priv, KVSEP_PI_IN_POS);
	s->has_lower = plan_int(priv, KVSEP_PI_HAS_LOWER);
	s->lower_incl = plan_int(priv, KVSEP_PI_LOWER_INCL);
	s->has_upper = plan_int(priv, KVSEP_PI_HAS_UPPER);
	s->upper_incl = plan_int(priv, KVSEP_PI_UPPER_INCL);
	s->need_key = plan_int(priv, KVSEP_PI_NEED_KEY);
	if (eflags & EXEC_FLAG_EXPLAIN_ONLY)
		return;
	s->t = kvsep_table_open(node->ss.ss_currentRelation, false);
	s->exprs = ExecInitExprList(plan->fdw_exprs, (PlanState *) node);
	{
		kv_txn	   *txn = kvsep_txn();
		kv_err		err;
		kv_status	st;

		kvsep_err_init(&err);
		st = kv_txn_point_take(txn, &s->point, &s->snap, &err);
		if (st != KV_OK)
			kvsep_raise(st, &err, "starting a scan");
		kvsep_snap_opened(s->snap);
		s->ool = kvsep_ool_reader(s->t, txn, &s->point,
								  s->access == KVSEP_ACCESS_POINT ? 0 :
								  s->direction < 0 ? -1 : 1, true);
		if (kvsep_track_scan_reads() && s->access != KVSEP_ACCESS_POINT && s->t->has_prefix)
		{
			st = kv_txn_note_read(txn, s->t->prefix, s->t->prefix_len, &err);
			if (st != KV_OK)
				kvsep_raise(st, &err, "starting a scan");
		}
	}
	s->row_cxt = AllocSetContextCreate(node->ss.ps.state->es_query_cxt, "kvsep_fdw row",
									   ALLOCSET_DEFAULT_SIZES);
}

static int
cmp_strings(const void *a, const void *b)
{
	const StringInfoData *x = a, *y = b;

	return kvsep_key_cmp(x->data, x->len, y->data, y->len);
}

/* Evaluates the bounds and builds the ranges; false if no row can match
 * (a NULL or an empty IN list). */
static bool
build_ranges(ForeignScanState *node, KvScan *s)
{
	ExprContext *ec = node->ss.ps.ps_ExprContext;
	KvsepTable *t = s->t;
	StringInfoData *prefixes;
	int			n_prefixes = 1;
	ListCell   *lc = list_head(s->exprs);
	StringInfoData lower, upper;
	MemoryContext old = MemoryContextSwitchTo(ec->ecxt_per_query_memory);

	prefixes = palloc(sizeof(StringInfoData));
	initStringInfo(&prefixes[0]);
	appendBinaryStringInfo(&prefixes[0], (const char *) t->prefix, t->prefix_len);
	for (int i = 0; i < s->n_eq; i++)
	{
		ExprState  *es = lfirst(lc);
		KvsepKeyCol *c = &t->keys[i];
		bool		isnull;
		Datum		d;

		lc = lnext(s->exprs, lc);
		d = ExecEvalExpr(es, ec, &isnull);
		if (isnull)
			goto none;
		if (i == s->in_pos)
		{
			ArrayType  *arr = DatumGetArrayTypeP(d);
			Oid			elemtype = ARR_ELEMTYPE(arr);
			int16		elmlen;
			bool		elmbyval;
			char		elmalign;
			Datum	   *elems;
			bool	   *nulls;
			int			n, m = 0;
			StringInfoData *np;

			get_typlenbyvalalign(elemtype, &elmlen, &elmbyval, &elmalign);
			deconstruct_array(arr, elemtype, elmlen, elmbyval, elmalign, &elems, &nulls, &n);
			np = palloc(sizeof(StringInfoData) * Max(n * n_prefixes, 1));
			for (int p = 0; p < n_prefixes; p++)
				for (int e = 0; e < n; e++)
				{
					if (nulls[e])
						continue;
					initStringInfo(&np[m]);
					appendBinaryStringInfo(&np[m], prefixes[p].data, prefixes[p].len);
					kvsep_encode_datum(&np[m], elemtype, elems[e]);
					m++;
				}
			if (m == 0)
				goto none;
			/* in key order, without duplicates */
			qsort(np, m, sizeof(StringInfoData), cmp_strings);
			n_prefixes = 0;
			for (int e = 0; e < m; e++)
				if (n_prefixes == 0 || cmp_strings(&np[n_prefixes - 1], &np[e]) != 0)
					np[n_prefixes++] = np[e];
			prefixes = np;
		}
		else
		{
			Oid			type = exprType((Node *) es->expr);

			for (int p = 0; p < n_prefixes; p++)
				kvsep_encode_datum(&prefixes[p], type, d);
		}
		(void) c;
	}
	initStringInfo(&lower);
	initStringInfo(&upper);
	if (s->has_lower)
	{
		ExprState  *es = lfirst(lc);
		bool		isnull;
		Datum		d;

		lc = lnext(s->exprs, lc);
		d = ExecEvalExpr(es, ec, &isnull);
		if (isnull)
			goto none;
		kvsep_encode_datum(&lower, exprType((Node *) es->expr), d);
	}
	if (s->has_upper)
	{
		ExprState  *es = lfirst(lc);
		bool		isnull;
		Datum		d;

		d = ExecEvalExpr(es, ec, &isnull);
		if (isnull)
			goto none;
		kvsep_encode_datum(&upper, exprType((Node *) es->expr), d);
	}
	s->ranges = palloc0(sizeof(KeyRange) * n_prefixes);
	s->n_ranges = n_prefixes;
	for (int p = 0; p < n_prefixes; p++)
	{
		KeyRange   *r = &s->ranges[p];

		initStringInfo(&r->lo);
		initStringInfo(&r->hi);
		appendBinaryStringInfo(&r->lo, prefixes[p].data, prefixes[p].len);
		if (s->access == KVSEP_ACCESS_POINT)
		{
			r->point = true;
			continue;
		}
		/* upper: prefix ++ bound (exclusive) or the end of the prefix */
		appendBinaryStringInfo(&r->hi, prefixes[p].data, prefixes[p].len);
		if (s->has_upper)
		{
			appendBinaryStringInfo(&r->hi, upper.data, upper.len);
			if (s->upper_incl)
				r->hi.len = kvsep_prefix_successor((uint8 *) r->hi.data, r->hi.len);
		}
		else
			r->hi.len = kvsep_prefix_successor((uint8 *) r->hi.data, r->hi.len);
		if (s->has_lower)
		{
			appendBinaryStringInfo(&r->lo, lower.data, lower.len);
			if (!s->lower_incl)
				r->lo.len = kvsep_prefix_successor((uint8 *) r->lo.data, r->lo.len);
			if (r->lo.len == 0)
				r->hi.len = 0;	/* (cannot happen: the prefix is never all 0xff) */
		}
	}
	MemoryContextSwitchTo(old);
	return true;
none:
	MemoryContextSwitchTo(old);
	s->n_ranges = 0;
	return false;
}

static void
close_iter(KvScan *s)
{
	if (s->it)
	{
		uint64		k, v;

		kv_iter_counters(s->it, &k, &v);
		s->keys_read += k;
		s->vlog_reads += v;
		kvsep_iter_closed(s->it);
		kv_iter_free(s->it);
		s->it = NULL;
	}
}

static void
open_iter(KvScan *s, KeyRange *r)
{
	kv_iter_options io;
	kv_err		err;
	kv_status	st;

	memset(&io, 0, sizeof io);
	io.lower = r->lo.data;
	io.lower_len = r->lo.len;
	io.upper = r->hi.len ? r->hi.data : NULL;
	io.upper_len = r->hi.len;
	io.reverse = s->direction < 0;
	io.key_only = s->key_only;
	io.fill_cache = 1;
	io.prefetch_values = s->key_only ? 0 : 16;
	kvsep_err_init(&err);
	st = kv_txn_iter_at(kvsep_txn(), &s->point, &io, &s->it, &err);
	if (st != KV_OK)
		kvsep_raise(st, &err, "starting a scan");
	kvsep_iter_opened(s->it);
	kv_iter_rewind(s->it);
}

/* Fills the slot from a key (unless no key column is used) and (unless
 * key-only) its row value. */
static void
store_row(ForeignScanState *node, KvScan *s, const uint8 *key, size_t klen, const uint8 *val,
		  size_t vlen, bool have_val)
{
	TupleTableSlot *slot = node->ss.ss_ScanTupleSlot;
	TupleDesc	desc = slot->tts_tupleDescriptor;
	MemoryContext old;

	ExecClearTuple(slot);
	MemoryContextReset(s->row_cxt);
	old = MemoryContextSwitchTo(s->row_cxt);
	for (int i = 0; i < desc->natts; i++)
		slot->tts_isnull[i] = true;
	if (s->need_key)
		kvsep_table_decode_key(s->t, key, klen, slot->tts_values, slot->tts_isnull);
	if (have_val)
		kvsep_decode_row(s->t, desc, val, vlen, slot->tts_values, slot->tts_isnull, s->ool, key,
						 klen);
	MemoryContextSwitchTo(old);
	ExecStoreVirtualTuple(slot);
}

static TupleTableSlot *
kvsepIterateForeignScan(ForeignScanState *node)
{
	KvScan  *s = node->fdw_state;
	TupleTableSlot *slot = node->ss.ss_ScanTupleSlot;

	if (!s->started)
	{
		s->started = true;
		s->cur = -1;
		if (!s->t->has_prefix || !build_ranges(node, s))
			s->n_ranges = 0;
		if (s->direction < 0)
			s->cur = s->n_ranges;
	}
	for (;;)
	{
		KeyRange   *r;

		CHECK_FOR_INTERRUPTS();
		if (s->it)
		{
			if (kv_iter_valid(s->it))
			{
				size_t		kn, vn = 0;
				const void *k = kv_iter_key(s->it, &kn);
				const void *v = NULL;
				kv_err		err;
				kv_status	st;

				if (!s->key_only)
				{
					kvsep_err_init(&err);
					st = kv_iter_value(s->it, &v, &vn, &err);
					if (st != KV_OK)
						kvsep_raise(st, &err, "reading a row");
				}
				store_row(node, s, k, kn, v, vn, !s->key_only);
				kv_iter_next(s->it);
				return slot;
			}
			else
			{
				kv_err		err;
				kv_status	st;

				kvsep_err_init(&err);
				st = kv_iter_status(s->it, &err);
				if (st != KV_OK)
					kvsep_raise(st, &err, "scanning");
				close_iter(s);
			}
		}
		/* next range, in the scan's direction */
		s->cur += s->direction < 0 ? -1 : 1;
		if (s->cur < 0 || s->cur >= s->n_ranges)
			return ExecClearTuple(slot);
		r = &s->ranges[s->cur];
		if (r->point)
		{
			kv_err		err;
			kv_status	st;

			kvsep_err_init(&err);
			s->gets++;
			st = kv_txn_get_at(kvsep_txn(), &s->point, r->lo.data, r->lo.len,
							   s->key_only ? NULL : &s->val, NULL, &err);
			if (st == KV_NOT_FOUND)
				continue;
			if (st != KV_OK)
				kvsep_raise(st, &err, "reading a row");
			s->keys_read++;
			store_row(node, s, (const uint8 *) r->lo.data, r->lo.len,
					  (const uint8 *) s->val.data, s->val.len, !s->key_only);
			return slot;
		}
		open_iter(s, r);
	}
}

static void
kvsepReScanForeignScan(ForeignScanState *node)
{
	KvScan  *s = node->fdw_state;

	close_iter(s);
	s->started = false;
}

static void
kvsepEndForeignScan(ForeignScanState *node)
{
	KvScan  *s = node->fdw_state;

	if (!s)
		return;
	close_iter(s);
	if (s->snap)
		kvsep_snap_closed(s->snap);
	s->snap = NULL;
	if (s->val.data)
		kv_buf_free(&s->val);
	kvsep_ool_reader_free(s->ool);
}

/* ---- EXPLAIN ---- */

static const char *
access_name(KvScan *s)
{
	switch (s->access)
	{
		case KVSEP_ACCESS_POINT:
			return s->in_pos >= 0 ? "point gets (IN list)" : "point get";
		case KVSEP_ACCESS_RANGE:
			return s->in_pos >= 0 ? "range scans (IN list)" : "range scan";
		default:
			return "full scan";
	}
}

static void
kvsepExplainForeignScan(ForeignScanState *node, ExplainState *es)
{
	KvScan  *s = node->fdw_state;
	ForeignScan *plan = (ForeignScan *) node->ss.ps.plan;
	Relation	rel = node->ss.ss_currentRelation;
	StringInfoData b;
	ListCell   *lc = list_head(plan->fdw_exprs);
	List	   *ctx = set_deparse_context_plan(es->deparse_cxt, (Plan *) plan, NIL);
	KvsepTable *t = s->t ? s->t : kvsep_table_open(rel, false);

	ExplainPropertyText("Kvsep Access", access_name(s), es);
	initStringInfo(&b);
	for (int i = 0; i < s->n_eq; i++)
	{
		char	   *col = get_attname(RelationGetRelid(rel), t->keys[i].attnum, false);
		char	   *e = deparse_expression(lfirst(lc), ctx, false, false);

		lc = lnext(plan->fdw_exprs, lc);
		appendStringInfo(&b, "%s%s %s %s", b.len ? " AND " : "", quote_identifier(col),
						 i == s->in_pos ? "= ANY" : "=", e);
	}
	for (int j = 0; j < 2; j++)
	{
		bool		has = j == 0 ? s->has_lower : s->has_upper;
		const char *op = j == 0 ? (s->lower_incl ? ">=" : ">") : (s->upper_incl ? "<=" : "<");
		char	   *col, *e;

		if (!has)
			continue;
		col = get_attname(RelationGetRelid(rel), t->keys[s->n_eq].attnum, false);
		e = deparse_expression(lfirst(lc), ctx, false, false);
		lc = lnext(plan->fdw_exprs, lc);
		appendStringInfo(&b, "%s%s %s %s", b.len ? " AND " : "", quote_identifier(col), op, e);
	}
	if (b.len)
		ExplainPropertyText("Kvsep Key Bounds", b.data, es);
	if (s->direction != 0 || es->verbose)
		ExplainPropertyText("Kvsep Direction", s->direction < 0 ? "backward" : "forward", es);
	ExplainPropertyBool("Kvsep Key Only", s->key_only, es);
	if (es->analyze)
	{
		uint64		k = s->keys_read, v = s->vlog_reads;

		if (s->it)
		{
			uint64		k2, v2;

			kv_iter_counters(s->it, &k2, &v2);
			k += k2;
			v += v2;
		}
		ExplainPropertyInteger("Kvsep Keys Read", NULL, (int64) k, es);
		ExplainPropertyInteger("Kvsep Value Log Reads", NULL, (int64) v, es);
		if (t->has_ool && !s->key_only)
			ExplainPropertyInteger("Kvsep Out-of-line Reads", NULL,
								   (int64) kvsep_ool_reads(s->ool), es);
	}
}

/* ---- ANALYZE ---- */

static int
acquire_sample(Relation rel, int elevel, HeapTuple *rows, int targrows, double *totalrows,
			   double *totaldeadrows)
{
	KvsepTable *t = kvsep_table_open(rel, false);
	TupleDesc	desc = RelationGetDescr(rel);
	Datum	   *values = palloc(sizeof(Datum) * Max(desc->natts, 1));
	bool	   *isnull = palloc(sizeof(bool) * Max(desc->natts, 1));
	ReservoirStateData rs;
	double		seen = 0;
	int			n = 0;
	kv_iter    *it;
	KvsepOolReader *ool;
	kv_err		err;
	kv_status	st;
	MemoryContext tmp = AllocSetContextCreate(CurrentMemoryContext, "kvsep_fdw analyze",
											  ALLOCSET_DEFAULT_SIZES);

	*totaldeadrows = 0;
	*totalrows = 0;
	it = kvsep_table_iter_all(t, "sampling the table");
	if (!it)
		return 0;
	ool = kvsep_ool_reader(t, kvsep_txn(), NULL, 0, false);
	kvsep_err_init(&err);
	reservoir_init_selection_state(&rs, targrows);
	for (kv_iter_rewind(it); kv_iter_valid(it); kv_iter_next(it))
	{
		int			slot = -1;

		CHECK_FOR_INTERRUPTS();
		if (n < targrows)
			slot = n++;
		else
		{
			double		skip = reservoir_get_next_S(&rs, seen, targrows);

			if (skip < 1)
			{
				slot = (int) (targrows * sampler_random_fract(&rs.randstate));
				heap_freetuple(rows[slot]);
			}
		}
		seen++;
		if (slot >= 0)
		{
			size_t		kn, vn;
			const void *k = kv_iter_key(it, &kn), *v;
			MemoryContext old;

			st = kv_iter_value(it, &v, &vn, &err);
			if (st != KV_OK)
				kvsep_raise(st, &err, "sampling the table");
			old = MemoryContextSwitchTo(tmp);
			for (int i = 0; i < desc->natts; i++)
				isnull[i] = true;
			kvsep_table_decode_key(t, k, kn, values, isnull);
			kvsep_decode_row(t, desc, v, vn, values, isnull, ool, k, kn);
			MemoryContextSwitchTo(old);
			/* (reads the row's out-of-line values) */
			rows[slot] = heap_form_tuple(desc, values, isnull);
			MemoryContextReset(tmp);
		}
	}
	st = kv_iter_status(it, &err);
	kvsep_iter_closed(it);
	kv_iter_free(it);
	if (st != KV_OK)
		kvsep_raise(st, &err, "sampling the table");
	MemoryContextDelete(tmp);
	kvsep_ool_reader_free(ool);
	*totalrows = seen;
	ereport(elevel,
			(errmsg("\"%s\": sampled %d of %.0f rows", RelationGetRelationName(rel), n, seen)));
	return n;
}

static bool
kvsepAnalyzeForeignTable(Relation rel, AcquireSampleRowsFunc *func, BlockNumber *totalpages)
{
	*func = acquire_sample;
	*totalpages = 1;
	return true;
}

void
kvsep_scan_init_routine(FdwRoutine *r)
{
	r->BeginForeignScan = kvsepBeginForeignScan;
	r->IterateForeignScan = kvsepIterateForeignScan;
	r->ReScanForeignScan = kvsepReScanForeignScan;
	r->EndForeignScan = kvsepEndForeignScan;
	r->ExplainForeignScan = kvsepExplainForeignScan;
	r->AnalyzeForeignTable = kvsepAnalyzeForeignTable;
}
