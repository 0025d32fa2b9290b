/*
 * table.c - a kvsep foreign table as the glue sees it: which columns make
 * the key (the "key" column option, else the first column), how they are
 * encoded, which columns the row value stores, and the table's prefix.
 *
 * An engine key is prefix ++ the key columns' order-preserving encodings
 * (key_codec.c).  Key columns whose encoding decodes back exactly are not
 * repeated in the row value; the others (numeric, floats) are.
 */
#include "postgres.h"

#include "commands/defrem.h"
#include "foreign/foreign.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "kvsep_fdw.h"

static bool
column_is_key(Oid relid, AttrNumber attnum)
{
	ListCell   *lc;

	foreach(lc, GetForeignColumnOptions(relid, attnum))
	{
		DefElem    *d = lfirst(lc);

		if (strcmp(d->defname, "key") == 0)
			return defGetBoolean(d);
	}
	return false;
}

KvsepTable *
kvsep_table_open(Relation rel, bool create_prefix)
{
	TupleDesc	desc = RelationGetDescr(rel);
	KvsepTable *t = palloc0(sizeof(KvsepTable));
	AttrNumber	first = InvalidAttrNumber;

	t->relid = RelationGetRelid(rel);
	t->relname = pstrdup(RelationGetRelationName(rel));
	t->natts = desc->natts;
	t->keys = palloc0(sizeof(KvsepKeyCol) * Max(desc->natts, 1));
	t->is_key = palloc0(sizeof(bool) * Max(desc->natts, 1));
	t->in_row = palloc0(sizeof(bool) * Max(desc->natts, 1));
	t->may_ool = palloc0(sizeof(bool) * Max(desc->natts, 1));
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute a = TupleDescAttr(desc, i);

		if (a->attisdropped)
			continue;
		if (first == InvalidAttrNumber)
			first = a->attnum;
		if (column_is_key(t->relid, a->attnum))
			t->is_key[i] = true;
	}
	if (first == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
				 errmsg("kvsep_fdw table \"%s\" has no columns", t->relname)));
	for (int i = 0; i < desc->natts; i++)
		if (t->is_key[i])
			t->nkeys++;
	if (t->nkeys == 0)
	{
		t->is_key[first - 1] = true;
		t->nkeys = 1;
	}
	t->ordered = true;
	for (int i = 0, k = 0; i < desc->natts; i++)
	{
		Form_pg_attribute a = TupleDescAttr(desc, i);
		KvsepKeyCol *c;

		if (a->attisdropped)
			continue;
		if (!t->is_key[i])
		{
			t->in_row[i] = true;
			t->may_ool[i] = kvsep_ool_type_allowed(a->atttypid);
			if (t->may_ool[i])
				t->has_ool = true;
			continue;
		}
		if (!kvsep_key_type_supported(a->atttypid))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("type %s cannot be used in the key of kvsep_fdw table \"%s\"",
							format_type_be(a->atttypid), t->relname)));
		c = &t->keys[k++];
		c->attnum = a->attnum;
		c->typid = a->atttypid;
		c->collid = a->attcollation;
		c->lossless = kvsep_key_type_lossless(a->atttypid);
		c->ordered = kvsep_key_type_ordered(a->atttypid, a->attcollation);
		t->in_row[i] = !c->lossless;
		if (!c->ordered)
			t->ordered = false;
	}
	t->has_prefix = kvsep_table_prefix(t->relid, create_prefix, t->prefix, &t->prefix_len);
	return t;
}

void
kvsep_table_key(KvsepTable *t, Datum *values, bool *isnull, StringInfo key)
{
	if (!t->has_prefix)
		elog(ERROR, "kvsep_fdw: table \"%s\" has no key prefix", t->relname);
	appendBinaryStringInfo(key, (const char *) t->prefix, t->prefix_len);
	for (int k = 0; k < t->nkeys; k++)
	{
		KvsepKeyCol *c = &t->keys[k];

		if (isnull[c->attnum - 1])
			ereport(ERROR,
					(errcode(ERRCODE_NOT_NULL_VIOLATION),
					 errmsg("null value in key column \"%s\" of kvsep_fdw table \"%s\"",
							get_attname(t->relid, c->attnum, false), t->relname),
					 errdetail("Key columns of kvsep_fdw tables cannot be null.")));
		kvsep_encode_datum(key, c->typid, values[c->attnum - 1]);
	}
	if (key->len > KV_MAX_KEY_SIZE)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("key of %d bytes is too long for kvsep_fdw table \"%s\"", key->len,
						t->relname),
				 errdetail("Keys are limited to %d bytes.", KV_MAX_KEY_SIZE)));
}

void
kvsep_table_decode_key(KvsepTable *t, const uint8 *key, size_t n, Datum *values, bool *isnull)
{
	const uint8 *p = key + t->prefix_len;
	const uint8 *end = key + n;

	if (n < (size_t) t->prefix_len || memcmp(key, t->prefix, t->prefix_len) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("kvsep_fdw: a key of table \"%s\" lacks the table's prefix", t->relname)));
	for (int k = 0; k < t->nkeys; k++)
	{
		KvsepKeyCol *c = &t->keys[k];
		Datum		d = kvsep_decode_datum(&p, end, c->typid);

		if (c->lossless)
		{
			values[c->attnum - 1] = d;
			isnull[c->attnum - 1] = false;
		}
	}
	if (p != end)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("kvsep_fdw: a key of table \"%s\" has %d trailing bytes", t->relname,
						(int) (end - p))));
}

void
kvsep_prefix_bounds(const uint8 *prefix, int len, uint8 *hi, kv_iter_options *io)
{
	memcpy(hi, prefix, len);
	memset(io, 0, sizeof *io);
	io->lower = prefix;
	io->lower_len = len;
	io->upper = hi;
	io->upper_len = kvsep_prefix_successor(hi, len);
}

/* An iterator over every entry under prefix in the current transaction,
 * registered with it; keys only, last first, with reverse_keys. */
static kv_iter *
iter_prefix(const uint8 *prefix, int len, bool reverse_keys, const char *what)
{
	kv_iter_options io;
	kv_iter    *it;
	kv_err		err;
	kv_status	st;
	uint8		hi[KVSEP_PREFIX_MAX];

	kvsep_prefix_bounds(prefix, len, hi, &io);
	io.fill_cache = 0;
	io.reverse = reverse_keys;
	io.key_only = reverse_keys;
	kvsep_err_init(&err);
	st = kv_txn_iter_new(kvsep_txn(), &io, &it, &err);
	if (st != KV_OK)
		kvsep_raise(st, &err, what);
	kvsep_iter_opened(it);
	return it;
}

/*
 * An iterator over every entry of the table in the current transaction
 * (registered with it, so an abort frees it), values not kept in the block
 * cache: whole-table passes (ANALYZE, kvsep_raw_entries).  NULL when the
 * table has never stored anything.
 */
kv_iter *
kvsep_table_iter_all(KvsepTable *t, const char *what)
{
	return t->has_prefix ? iter_prefix(t->prefix, t->prefix_len, false, what) : NULL;
}

kv_iter *
kvsep_table_iter_ool(KvsepTable *t, const char *what)
{
	uint8		p[KVSEP_PREFIX_MAX];

	if (!t->has_prefix)
		return NULL;
	return iter_prefix(p, kvsep_ool_prefix(t->prefix, t->prefix_len, p), false, what);
}

/*
 * The table's largest row key in the current transaction, its own pending
 * writes included, into out (reset first); the bare prefix, which every
 * row key is above, if it has no row.  REQUIRES: t->has_prefix.
 */
void
kvsep_table_last_key(KvsepTable *t, StringInfo out, const char *what)
{
	kv_iter    *it = iter_prefix(t->prefix, t->prefix_len, true, what);
	kv_err		err;
	kv_status	st;

	kv_iter_rewind(it);
	resetStringInfo(out);
	if (kv_iter_valid(it))
	{
		size_t		n;
		const char *k = kv_iter_key(it, &n);

		appendBinaryStringInfo(out, k, (int) n);
	}
	else
		appendBinaryStringInfo(out, (const char *) t->prefix, t->prefix_len);
	kvsep_err_init(&err);
	st = kv_iter_status(it, &err);
	kvsep_iter_closed(it);
	kv_iter_free(it);
	if (st != KV_OK)
		kvsep_raise(st, &err, what);
}
