/*
 * fdw_plan.c - planning scans of kvsep tables: size estimates from the
 * engine, which quals become key bounds or point gets, paths with
 * pathkeys (ORDER BY the key needs no sort) and parameterized paths (a
 * join on the key does one get per outer row), and the plan.
 *
 * A qual "key column OP expr" can be pushed into the access when OP is a
 * btree comparison of the column's type, expr does not read this table
 * and is not volatile, and expr's type encodes like the column (integers
 * of any width, floats of any width, else the same type).  Equalities on
 * leading key columns (one of them may be an IN list) fix a key prefix;
 * <, <=, >, >= on the next column bound it.  Ranges and ordering need the
 * column's byte order to be SQL order (text only with the C collation).
 * Every qual is still checked on the rows returned, so a pushed-down qual
 * only narrows what is read.
 */
#include "postgres.h"

#include <math.h>

#include "access/stratnum.h"
#include "access/table.h"
#include "catalog/pg_am.h"
#include "catalog/pg_opfamily.h"
#include "foreign/fdwapi.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/cost.h"
#include "optimizer/optimizer.h"
#include "optimizer/pathnode.h"
#include "optimizer/paths.h"
#include "optimizer/planmain.h"
#include "optimizer/restrictinfo.h"
#include "parser/parsetree.h"
#include "utils/array.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"
#include "utils/pg_locale.h"
#include "utils/rel.h"
#include "utils/selfuncs.h"

#include "kvsep_fdw.h"

/* What one qual says about one key column. */
typedef struct KeyCond
{
	int			pos;			/* index into t->keys */
	int			strategy;		/* BTEqualStrategyNumber, BTLessStrategyNumber, ... */
	bool		is_array;		/* col = ANY (array) */
	Expr	   *arg;			/* the other side */
	RestrictInfo *ri;
} KeyCond;

/* The access a set of conditions allows. */
typedef struct Access
{
	int			kind;			/* KVSEP_ACCESS_* */
	int			n_eq;
	int			in_pos;
	KeyCond    *eq[INDEX_MAX_KEYS];
	KeyCond    *lower, *upper;
	List	   *used;			/* RestrictInfos that narrowed it */
} Access;

typedef struct RelInfo
{
	KvsepTable *t;
	double		entries;		/* engine entries under the table's prefix */
	double		avg_bytes;
} RelInfo;

/* ---- matching quals to key columns ---- */

static int
key_pos_of(KvsepTable *t, Index relid, Node *n)
{
	Var		   *v;

	if (n && IsA(n, RelabelType))
		n = (Node *) ((RelabelType *) n)->arg;
	if (!n || !IsA(n, Var))
		return -1;
	v = (Var *) n;
	if (v->varno != relid || v->varlevelsup != 0)
		return -1;
	for (int k = 0; k < t->nkeys; k++)
		if (t->keys[k].attnum == v->varattno)
			return k;
	return -1;
}

/* The column's default btree opfamily (from the type cache: looking up
 * the default opclass in pg_opclass for every clause was an index scan per
 * clause at every planning). */
static Oid
btree_family(Oid typid)
{
	return lookup_type_cache(typid, TYPECACHE_BTREE_OPFAMILY)->btree_opf;
}

/* The other side can be evaluated before the scan, and encodes like the column. */
static bool
usable_arg(Index relid, KvsepKeyCol *c, Expr *arg, Oid argtype)
{
	if (bms_is_member(relid, pull_varnos(NULL, (Node *) arg)))
		return false;
	if (contain_volatile_functions((Node *) arg))
		return false;
	return kvsep_key_encoding_class(argtype) == kvsep_key_encoding_class(c->typid);
}

static bool
collation_ok(KvsepKeyCol *c, int strategy, Oid inputcollid)
{
	if (c->typid != TEXTOID && c->typid != VARCHAROID)
		return true;
	if (strategy == BTEqualStrategyNumber)
		return !OidIsValid(inputcollid) || get_collation_isdeterministic(inputcollid);
	return c->ordered && OidIsValid(inputcollid) && lc_collate_is_c(inputcollid);
}

static bool
match_clause(KvsepTable *t, Index relid, RestrictInfo *ri, KeyCond *out)
{
	Expr	   *clause = ri->clause;

	memset(out, 0, sizeof *out);
	out->ri = ri;
	if (IsA(clause, OpExpr) && list_length(((OpExpr *) clause)->args) == 2)
	{
		OpExpr	   *op = (OpExpr *) clause;
		Node	   *l = linitial(op->args), *r = lsecond(op->args);
		Oid			opno = op->opno;
		int			pos = key_pos_of(t, relid, l);
		Expr	   *arg = (Expr *) r;
		KvsepKeyCol *c;
		Oid			family;

		if (pos < 0)
		{
			pos = key_pos_of(t, relid, r);
			arg = (Expr *) l;
			opno = get_commutator(opno);
			if (pos < 0 || !OidIsValid(opno))
				return false;
		}
		c = &t->keys[pos];
		family = btree_family(c->typid);
		if (!OidIsValid(family))
			return false;
		out->strategy = get_op_opfamily_strategy(opno, family);
		if (out->strategy < BTLessStrategyNumber || out->strategy > BTGreaterStrategyNumber)
			return false;
		if (out->strategy != BTEqualStrategyNumber && !c->ordered)
			return false;
		if (!collation_ok(c, out->strategy, op->inputcollid))
			return false;
		if (!usable_arg(relid, c, arg, exprType((Node *) arg)))
			return false;
		out->pos = pos;
		out->arg = arg;
		return true;
	}
	if (IsA(clause, ScalarArrayOpExpr))
	{
		ScalarArrayOpExpr *sa = (ScalarArrayOpExpr *) clause;
		int			pos = key_pos_of(t, relid, linitial(sa->args));
		Expr	   *arr = lsecond(sa->args);
		KvsepKeyCol *c;
		Oid			family, elemtype;

		if (!sa->useOr || pos < 0)
			return false;
		c = &t->keys[pos];
		family = btree_family(c->typid);
		if (!OidIsValid(family) ||
			get_op_opfamily_strategy(sa->opno, family) != BTEqualStrategyNumber)
			return false;
		if (!collation_ok(c, BTEqualStrategyNumber, sa->inputcollid))
			return false;
		elemtype = get_element_type(exprType((Node *) arr));
		if (!OidIsValid(elemtype) || !usable_arg(relid, c, arr, elemtype))
			return false;
		out->pos = pos;
		out->strategy = BTEqualStrategyNumber;
		out->is_array = true;
		out->arg = arr;
		return true;
	}
	return false;
}

/* The best access the clauses allow. */
static void
derive_access(KvsepTable *t, Index relid, List *clauses, Access *a)
{
	KeyCond    *conds;
	int			n = 0;
	ListCell   *lc;

	memset(a, 0, sizeof *a);
	a->in_pos = -1;
	conds = palloc0(sizeof(KeyCond) * Max(list_length(clauses), 1));
	foreach(lc, clauses)
	{
		RestrictInfo *ri = lfirst_node(RestrictInfo, lc);

		if (ri->pseudoconstant)
			continue;
		if (match_clause(t, relid, ri, &conds[n]))
			n++;
	}
	for (int pos = 0; pos < t->nkeys; pos++)
	{
		KeyCond    *found = NULL;

		for (int i = 0; i < n && !found; i++)
			if (conds[i].pos == pos && conds[i].strategy == BTEqualStrategyNumber &&
				!conds[i].is_array)
				found = &conds[i];
		if (!found && a->in_pos < 0)
			for (int i = 0; i < n && !found; i++)
				if (conds[i].pos == pos && conds[i].is_array)
				{
					found = &conds[i];
					a->in_pos = pos;
				}
		if (!found)
			break;
		a->eq[a->n_eq++] = found;
		a->used = lappend(a->used, found->ri);
	}
	if (a->n_eq < t->nkeys && t->keys[a->n_eq].ordered)
		for (int i = 0; i < n; i++)
		{
			KeyCond    *c = &conds[i];

			if (c->pos != a->n_eq || c->is_array)
				continue;
			if (!a->lower && (c->strategy == BTGreaterStrategyNumber ||
							  c->strategy == BTGreaterEqualStrategyNumber))
			{
				a->lower = c;
				a->used = lappend(a->used, c->ri);
			}
			else if (!a->upper && (c->strategy == BTLessStrategyNumber ||
								   c->strategy == BTLessEqualStrategyNumber))
			{
				a->upper = c;
				a->used = lappend(a->used, c->ri);
			}
		}
	if (a->n_eq == t->nkeys)
		a->kind = KVSEP_ACCESS_POINT;
	else if (a->n_eq > 0 || a->lower || a->upper)
		a->kind = KVSEP_ACCESS_RANGE;
	else
		a->kind = KVSEP_ACCESS_FULL;
}

/* ---- estimates and costs ---- */

static void
kvsepGetForeignRelSize(PlannerInfo *root, RelOptInfo *baserel, Oid foreigntableid)
{
	RangeTblEntry *rte = planner_rt_fetch(baserel->relid, root);
	Relation	rel = table_open(rte->relid, NoLock);
	RelInfo    *ri = palloc0(sizeof(RelInfo));
	Selectivity sel;

	ri->t = kvsep_table_open(rel, false);
	table_close(rel, NoLock);
	if (ri->t->has_prefix)
	{
		uint8		hi[KVSEP_PREFIX_MAX];
		int			hin;
		uint64		keys = 0, bytes = 0;
		kv_err		err;
		kv_status	st;

		memcpy(hi, ri->t->prefix, ri->t->prefix_len);
		hin = kvsep_prefix_successor(hi, ri->t->prefix_len);
		kvsep_err_init(&err);
		st = kv_estimate_range(kvsep_db(), ri->t->prefix, ri->t->prefix_len, hi, hin, &keys,
							   &bytes, &err);
		if (st != KV_OK)
			kvsep_raise(st, &err, "estimating the table's size");
		ri->entries = (double) keys;
		ri->avg_bytes = keys ? (double) bytes / (double) keys : 0;
	}
	baserel->fdw_private = ri;
	baserel->tuples = Max(ri->entries, 1);
	sel = clauselist_selectivity(root, baserel->baserestrictinfo, 0, JOIN_INNER, NULL);
	baserel->rows = clamp_row_est(baserel->tuples * sel);
}

/* Rows read and cost of an access (per scan). */
static void
cost_access(PlannerInfo *root, RelOptInfo *baserel, RelInfo *ri, Access *a, double *rows_read,
			Cost *startup, Cost *total)
{
	double		entries = Max(ri->entries, 1);
	double		per_row = cpu_tuple_cost + cpu_operator_cost * ri->t->nkeys;
	double		n_points = 1;
	double		read;

	/* values in the value log cost a random read each */
	if (ri->avg_bytes >= kvsep_value_threshold)
		per_row += random_page_cost * 0.05;
	per_row += cpu_tuple_cost;	/* decoding the row */
	if (a->in_pos >= 0)
	{
		Expr	   *arr = a->eq[a->in_pos]->arg;

		n_points = IsA(arr, Const) && !((Const *) arr)->constisnull
			? ArrayGetNItems(ARR_NDIM(DatumGetArrayTypeP(((Const *) arr)->constvalue)),
							 ARR_DIMS(DatumGetArrayTypeP(((Const *) arr)->constvalue)))
			: 10;
	}
	switch (a->kind)
	{
		case KVSEP_ACCESS_POINT:
			read = n_points;
			break;
		case KVSEP_ACCESS_RANGE:
			read = entries * clauselist_selectivity(root, a->used, baserel->relid, JOIN_INNER,
													NULL);
			read = Max(read, n_points);
			break;
		default:
			read = entries;
			break;
	}
	*rows_read = clamp_row_est(read);
	*startup = 0.5 + (a->kind == KVSEP_ACCESS_FULL ? 0 : n_points * 0.5);
	*total = *startup + *rows_read * per_row;
}

/* ---- paths ---- */

/* Whether pathkey pk sorts by key column pos. */
static bool
pathkey_is_key(RelOptInfo *baserel, KvsepTable *t, PathKey *pk, int pos)
{
	ListCell   *lm;

	if (pk->pk_opfamily != btree_family(t->keys[pos].typid))
		return false;
	foreach(lm, pk->pk_eclass->ec_members)
	{
		EquivalenceMember *em = lfirst(lm);

		if (bms_equal(em->em_relids, baserel->relids) &&
			key_pos_of(t, baserel->relid, (Node *) em->em_expr) == pos)
			return true;
	}
	return false;
}

/* 1 ascending, -1 descending, 0 if the query's ORDER BY is not the key's
 * order in one direction.  Leading key columns fixed by an equality (a)
 * can be left out of the ORDER BY: rows come ordered by the rest. */
static int
pathkeys_direction(PlannerInfo *root, RelOptInfo *baserel, KvsepTable *t, Access *a)
{
	ListCell   *lc;
	int			dir = 0, pos = 0;

	if (!root->query_pathkeys || !t->ordered)
		return 0;
	foreach(lc, root->query_pathkeys)
	{
		PathKey    *pk = lfirst(lc);
		int			d = pk->pk_strategy == BTLessStrategyNumber ? 1 : -1;

		if (pk->pk_eclass->ec_has_volatile || (dir && d != dir))
			return 0;
		dir = d;
		while (pos < t->nkeys && !pathkey_is_key(baserel, t, pk, pos) && pos < a->n_eq &&
			   pos != a->in_pos)
			pos++;				/* a column fixed by equality */
		if (pos >= t->nkeys || !pathkey_is_key(baserel, t, pk, pos))
			return 0;
		pos++;
	}
	return dir;
}

static List *
dir_private(int dir)
{
	return list_make1(makeInteger(dir));
}

typedef struct EcArg
{
	KvsepTable *t;
	Index		relid;
	int			pos;
} EcArg;

static bool
ec_member_is_key(PlannerInfo *root, RelOptInfo *rel, EquivalenceClass *ec,
				 EquivalenceMember *em, void *arg)
{
	EcArg	   *a = arg;

	return key_pos_of(a->t, a->relid, (Node *) em->em_expr) == a->pos;
}

/* Join clauses on the first key column, from joininfo and from
 * equivalence classes. */
static List *
key_join_clauses(PlannerInfo *root, RelOptInfo *baserel, KvsepTable *t)
{
	List	   *out = NIL;
	ListCell   *lc;
	EcArg		arg = {t, baserel->relid, 0};

	foreach(lc, baserel->joininfo)
	{
		RestrictInfo *ri = lfirst(lc);
		KeyCond		c;

		if (match_clause(t, baserel->relid, ri, &c) && c.pos == 0 &&
			c.strategy == BTEqualStrategyNumber)
			out = lappend(out, ri);
	}
	if (baserel->has_eclass_joins)
		out = list_concat(out, generate_implied_equalities_for_column(root, baserel,
																	  ec_member_is_key, &arg,
																	  baserel->lateral_referencers));
	return out;
}

static void
kvsepGetForeignPaths(PlannerInfo *root, RelOptInfo *baserel, Oid foreigntableid)
{
	RelInfo    *ri = baserel->fdw_private;
	Access		a;
	double		read;
	Cost		startup, total;
	int			dir;
	ListCell   *lc;

	derive_access(ri->t, baserel->relid, baserel->baserestrictinfo, &a);
	cost_access(root, baserel, ri, &a, &read, &startup, &total);
	total += baserel->rows * cpu_tuple_cost; /* the local quals */
	add_path(baserel, (Path *) create_foreignscan_path(root, baserel, NULL, baserel->rows,
													   startup, total, NIL, NULL, NULL,
													   dir_private(0)));
	dir = pathkeys_direction(root, baserel, ri->t, &a);
	if (dir != 0)
		add_path(baserel, (Path *) create_foreignscan_path(root, baserel, NULL, baserel->rows,
														   startup, total,
														   root->query_pathkeys, NULL, NULL,
														   dir_private(dir)));

	/* joins on the key: one access per outer row */
	foreach(lc, key_join_clauses(root, baserel, ri->t))
	{
		RestrictInfo *jc = lfirst(lc);
		Relids		outer = bms_difference(jc->clause_relids, baserel->relids);
		ParamPathInfo *ppi;
		List	   *clauses;

		if (bms_is_empty(outer) || bms_overlap(outer, baserel->relids))
			continue;
		if (!join_clause_is_movable_to(jc, baserel))
			continue;
		ppi = get_baserel_parampathinfo(root, baserel, outer);
		clauses = list_concat(list_copy(baserel->baserestrictinfo), ppi->ppi_clauses);
		if (!list_member_ptr(clauses, jc))
			clauses = lappend(clauses, jc);
		derive_access(ri->t, baserel->relid, clauses, &a);
		if (a.kind == KVSEP_ACCESS_FULL)
			continue;
		cost_access(root, baserel, ri, &a, &read, &startup, &total);
		total += ppi->ppi_rows * cpu_tuple_cost;
		add_path(baserel, (Path *) create_foreignscan_path(root, baserel, NULL, ppi->ppi_rows,
														   startup, total, NIL, outer, NULL,
														   dir_private(0)));
	}
}

/* ---- the plan ---- */

/* The rel's columns used by the nodes above (the rel's target, not the
 * scan's possibly physical tlist) and by quals; attribute numbers offset
 * by FirstLowInvalidHeapAttributeNumber. */
static Bitmapset *
used_attrs(RelOptInfo *baserel, List *quals)
{
	Bitmapset  *attrs = NULL;

	pull_varattnos((Node *) baserel->reltarget->exprs, baserel->relid, &attrs);
	pull_varattnos((Node *) quals, baserel->relid, &attrs);
	return attrs;
}

/* Whether only key columns that the key decodes are needed (by the nodes
 * above and by the quals). */
static bool
key_only(KvsepTable *t, RelOptInfo *baserel, List *scan_clauses)
{
	Bitmapset  *attrs = used_attrs(baserel, extract_actual_clauses(scan_clauses, false));
	int			x = -1;

	while ((x = bms_next_member(attrs, x)) >= 0)
	{
		AttrNumber	attno = x + FirstLowInvalidHeapAttributeNumber;

		if (attno == 0)
			return false;		/* the whole row */
		if (attno < 0)
			continue;			/* system columns (tableoid) come from the executor */
		if (attno > t->natts || !t->is_key[attno - 1] || t->in_row[attno - 1])
			return false;
	}
	return true;
}

/* Whether a key column is used by the nodes above or by the quals left
 * to the executor (a whole-row reference, e.g. for EvalPlanQual's row
 * marks, uses them all): if not, the scan does not decode keys.  The
 * quals that became bounds are rechecked only by EvalPlanQual, on its own
 * copy of the row. */
static bool
need_key(KvsepTable *t, RelOptInfo *baserel, List *local_quals)
{
	Bitmapset  *attrs = used_attrs(baserel, local_quals);
	int			x = -1;

	while ((x = bms_next_member(attrs, x)) >= 0)
	{
		AttrNumber	attno = x + FirstLowInvalidHeapAttributeNumber;

		if (attno == 0)
			return true;
		if (attno > 0 && attno <= t->natts && t->is_key[attno - 1])
			return true;
	}
	return false;
}

static ForeignScan *
kvsepGetForeignPlan(PlannerInfo *root, RelOptInfo *baserel, Oid foreigntableid,
					ForeignPath *best_path, List *tlist, List *scan_clauses, Plan *outer_plan)
{
	RelInfo    *ri = baserel->fdw_private;
	Access		a;
	List	   *exprs = NIL;
	List	   *priv;
	int			dir = intVal(linitial(best_path->fdw_private));

	derive_access(ri->t, baserel->relid, scan_clauses, &a);
	for (int i = 0; i < a.n_eq; i++)
		exprs = lappend(exprs, a.eq[i]->arg);
	if (a.lower)
		exprs = lappend(exprs, a.lower->arg);
	if (a.upper)
		exprs = lappend(exprs, a.upper->arg);
	priv = list_make5(makeInteger(a.kind), makeInteger(dir),
					  makeInteger(key_only(ri->t, baserel, scan_clauses)),
					  makeInteger(a.n_eq), makeInteger(a.in_pos));
	priv = lappend(priv, makeInteger(a.lower != NULL));
	priv = lappend(priv, makeInteger(a.lower && a.lower->strategy == BTGreaterEqualStrategyNumber));
	priv = lappend(priv, makeInteger(a.upper != NULL));
	priv = lappend(priv, makeInteger(a.upper && a.upper->strategy == BTLessEqualStrategyNumber));
	/*
	 * The quals that became the scan's keys or bounds hold for every row it
	 * returns (each such comparison orders and equates values exactly as
	 * their encodings do: match_clause), so they are not evaluated again;
	 * EvalPlanQual rechecks them (fdw_recheck_quals).  The rest are.
	 */
	{
		List	   *local = NIL;
		ListCell   *lc;

		foreach(lc, scan_clauses)
			if (!list_member_ptr(a.used, lfirst(lc)))
				local = lappend(local, lfirst(lc));
		local = extract_actual_clauses(local, false);
		priv = lappend(priv, makeInteger(need_key(ri->t, baserel, local)));
		return make_foreignscan(tlist, local, baserel->relid, exprs, priv, NIL,
								extract_actual_clauses(a.used, false), outer_plan);
	}
}

void
kvsep_plan_init_routine(FdwRoutine *r)
{
	r->GetForeignRelSize = kvsepGetForeignRelSize;
	r->GetForeignPaths = kvsepGetForeignPaths;
	r->GetForeignPlan = kvsepGetForeignPlan;
}
