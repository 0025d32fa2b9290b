/*
 * catalog.c - which engine key prefix belongs to which foreign table.
 *
 * Every kvsep foreign table owns a prefix id, kept in the extension's
 * table kvsep_relations (relid -> prefix), so the mapping is transactional:
 * TRUNCATE gives the table a fresh id in the same transaction (the old
 * id's data is dropped once the transaction commits; if it aborts, the
 * old id is simply still the table's), and DROP deletes the mapping and
 * drops the data at commit.  Ids come from a sequence and are never
 * reused, so data a crash left behind is never seen by another table.
 * Lookups are cached per backend; relcache invalidation clears the cache.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_extension.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "foreign/foreign.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "kvsep_fdw.h"

typedef struct PrefixEntry
{
	Oid			relid;			/* hash key */
	int64		prefix;			/* 0: the table has none */
} PrefixEntry;

static HTAB *prefix_cache = NULL;

static void
invalidate(Datum arg, Oid relid)
{
	if (!prefix_cache)
		return;
	if (relid == InvalidOid)
	{
		hash_destroy(prefix_cache);
		prefix_cache = NULL;
	}
	else
		hash_search(prefix_cache, &relid, HASH_REMOVE, NULL);
}

static HTAB *
cache(void)
{
	static bool registered = false;

	if (!prefix_cache)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof ctl);
		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(PrefixEntry);
		ctl.hcxt = CacheMemoryContext;
		prefix_cache = hash_create("kvsep_fdw prefixes", 64, &ctl,
								   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	if (!registered)
	{
		CacheRegisterRelcacheCallback(invalidate, (Datum) 0);
		registered = true;
	}
	return prefix_cache;
}

/* The schema the extension was installed in. */
static Oid
extension_schema(Oid ext)
{
	Relation	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	Oid			nsp = InvalidOid;

	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(ext));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
		nsp = ((Form_pg_extension) GETSTRUCT(tup))->extnamespace;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return nsp;
}

/* "schema".object, in the extension's schema */
static char *
catalog_name(const char *object)
{
	Oid			ext = get_extension_oid("kvsep_fdw", true);
	char	   *schema;

	if (!OidIsValid(ext))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("extension \"kvsep_fdw\" is not installed in this database"),
				 errhint("Run CREATE EXTENSION kvsep_fdw.")));
	schema = get_namespace_name(extension_schema(ext));
	return psprintf("%s.%s", quote_identifier(schema), object);
}

int
kvsep_encode_prefix(int64 id, uint8 *out)
{
	int			n = 1;
	uint64		v = (uint64) id;

	while (n < 8 && (v >> (8 * n)) != 0)
		n++;
	out[0] = (uint8) n;
	for (int i = 0; i < n; i++)
		out[1 + i] = (uint8) (v >> (8 * (n - 1 - i)));
	return 1 + n;
}

/* Runs a one-row, one-int8-column query with relid as $1; 0 if no row.
 * The catalog belongs to the extension: any user who may use a kvsep
 * table may have its mapping read and written, so this runs as the
 * bootstrap superuser.  A read (latest) sees the newest committed mapping,
 * whatever the transaction's snapshot: a table truncated by a commit the
 * snapshot predates has a new prefix, and writes must go there (like a
 * catalog lookup; TRUNCATE is not MVCC-safe in PostgreSQL either). */
static int64
query_prefix_ex(const char *sql, Oid relid, bool latest)
{
	Oid			argtypes[1] = {OIDOID};
	Datum		args[1] = {ObjectIdGetDatum(relid)};
	int64		result = 0;
	Oid			save_user;
	int			save_sec;

	GetUserIdAndSecContext(&save_user, &save_sec);
	SetUserIdAndSecContext(BOOTSTRAP_SUPERUSERID, save_sec | SECURITY_LOCAL_USERID_CHANGE);
	PG_TRY();
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "kvsep_fdw: SPI_connect failed");
		if (latest)
		{
			CommandCounterIncrement();
			PushActiveSnapshot(GetLatestSnapshot());
		}
		if (SPI_execute_with_args(sql, 1, argtypes, args, NULL, latest, 1) < 0)
			elog(ERROR, "kvsep_fdw: catalog query failed: %s", sql);
		if (latest)
			PopActiveSnapshot();
		if (SPI_processed > 0)
		{
			bool		isnull;
			Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
										  &isnull);

			if (!isnull)
				result = DatumGetInt64(d);
		}
		SPI_finish();
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_user, save_sec);
	}
	PG_END_TRY();
	return result;
}

static int64
query_prefix(const char *sql, Oid relid)
{
	return query_prefix_ex(sql, relid, false);
}

static int64
read_prefix(Oid relid)
{
	return query_prefix_ex(psprintf("SELECT prefix FROM %s WHERE relid = $1",
									catalog_name("kvsep_relations")), relid, true);
}

static void
remember(Oid relid, int64 prefix)
{
	PrefixEntry *e = hash_search(cache(), &relid, HASH_ENTER, NULL);

	e->prefix = prefix;
}

bool
kvsep_table_prefix(Oid relid, bool create, uint8 *prefix, int *len)
{
	PrefixEntry *e = hash_search(cache(), &relid, HASH_FIND, NULL);
	int64		id;

	if (e && (e->prefix || !create))
		id = e->prefix;
	else
	{
		char	   *rel = catalog_name("kvsep_relations");

		id = read_prefix(relid);
		if (id == 0 && create)
		{
			if (XactReadOnly)
				ereport(ERROR,
						(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
						 errmsg("cannot write to kvsep_fdw table \"%s\" in a read-only transaction",
								get_rel_name(relid))));
			id = query_prefix(psprintf("INSERT INTO %s (relid, prefix) VALUES ($1, nextval('%s')) "
									   "ON CONFLICT (relid) DO NOTHING RETURNING prefix",
									   rel, catalog_name("kvsep_prefix_seq")), relid);
			if (id == 0)		/* another session assigned one meanwhile */
				id = read_prefix(relid);
			if (id == 0)
				ereport(ERROR,
						(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
						 errmsg("could not assign a key prefix to kvsep_fdw table \"%s\"",
								get_rel_name(relid)),
						 errhint("Retry the transaction.")));
		}
		remember(relid, id);
	}
	if (id == 0)
		return false;
	*len = kvsep_encode_prefix(id, prefix);
	return true;
}

void
kvsep_truncate_table(Oid relid)
{
	uint8		old[KVSEP_PREFIX_MAX];
	int			oldlen;
	int64		id;

	if (!kvsep_table_prefix(relid, false, old, &oldlen))
		return;					/* never written: nothing to release */
	id = query_prefix(psprintf("UPDATE %s SET prefix = nextval('%s') WHERE relid = $1 "
							   "RETURNING prefix",
							   catalog_name("kvsep_relations"),
							   catalog_name("kvsep_prefix_seq")), relid);
	remember(relid, id);
	kvsep_at_commit_drop(old, oldlen);
	CacheInvalidateRelcacheByRelid(relid);
}

void
kvsep_forget_table(Oid relid)
{
	uint8		buf[KVSEP_PREFIX_MAX];
	int64		id;

	id = query_prefix(psprintf("DELETE FROM %s WHERE relid = $1 RETURNING prefix",
							   catalog_name("kvsep_relations")), relid);
	if (prefix_cache)
		hash_search(prefix_cache, &relid, HASH_REMOVE, NULL);
	if (id != 0)
		kvsep_at_commit_drop(buf, kvsep_encode_prefix(id, buf));
}

Oid
kvsep_fdw_oid(void)
{
	ForeignDataWrapper *fdw = GetForeignDataWrapperByName("kvsep_fdw", true);

	return fdw ? fdw->fdwid : InvalidOid;
}

bool
kvsep_is_kvsep_table(Oid relid)
{
	ForeignTable *ft;
	ForeignServer *srv;
	Oid			fdw = kvsep_fdw_oid();

	if (!OidIsValid(fdw) || get_rel_relkind(relid) != RELKIND_FOREIGN_TABLE)
		return false;
	ft = GetForeignTable(relid);
	srv = GetForeignServer(ft->serverid);
	return srv->fdwid == fdw;
}
