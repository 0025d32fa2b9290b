/*
 * out_of_line.c - column values stored out of line, and the datums that
 * read them only when they are used.
 *
 * A non-key variable-length value of at least kvsep.out_of_line_size
 * bytes is not kept in the row value (row_codec.c writes only its length
 * there) but in the row's companion entry: key = the row's key with the
 * first prefix byte's high bit set (table prefixes start with a length
 * byte 1..8, so companions of all tables sort after every row), value =
 *
 *   u8 format (1) | the row's out-of-line values, in attnum order
 *
 * The row value stays small and inline in the LSM tree; the companion is
 * large and goes to the value log.  A scan hands out such a column as a
 * read-only expanded datum (utils/expandeddatum.h): its size is known
 * without reading anything, so length(), octet_length() and
 * pg_column_size() cost nothing, and the bytes are fetched - through the
 * scan's read point, so from the same version as the row - only when
 * something flattens or detoasts the datum.  Like any datum of a scanned
 * row, it is valid until the scan moves to the next row; whoever keeps a
 * value longer copies it, which flattens it.  So a scan's reader keeps one
 * row object and one datum object per value and reuses them for every
 * row (no allocation per row).  Arrays and composites are
 * never stored out of line: they have expanded forms of their own, and
 * code that meets an expanded datum of those types takes it for one.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/expandeddatum.h"
#include "utils/lsyscache.h"

#include "kvsep_fdw.h"

#define COMPANION_FORMAT 1
/* set in the first byte of a row key (a prefix length, 1..8) */
#define COMPANION_BIT 0x80

struct KvsepOolReader
{
	KvsepTable *t;
	kv_txn	   *txn;
	kv_txn_point point;
	bool		at_point;
	int			direction;		/* of a scan's cursor over the companions: 1, -1; 0 gets */
	kv_iter    *it;				/* that cursor, opened at the second read */
	kv_buf		buf;			/* the companion read last (by a get) */
	const char *bytes;			/* the companion read last, its bytes */
	size_t		nbytes;
	StringInfoData cached_key;	/* its key */
	bool		have_cached;
	uint64		fetches;		/* companions read */
	/* one_row: the objects every row reuses (allocated in cxt) */
	bool		one_row;
	MemoryContext cxt;
	struct OolRow *row;
	int			row_key_cap;
	struct OolDatum **datums;
	int			n_datums;
	int			next_datum;		/* of the current row */
};

/* The out-of-line values of one decoded row. */
typedef struct OolRow
{
	KvsepOolReader *reader;		/* NULL: the bytes cannot be read here */
	char	   *ckey;			/* the companion's key */
	int			cklen;
	uint64		total;			/* bytes of all its out-of-line values */
} OolRow;

/* One out-of-line value: an expanded object that reads itself on demand. */
typedef struct OolDatum
{
	ExpandedObjectHeader hdr;
	OolRow	   *row;
	uint64		off;			/* in the companion, after its format byte */
	uint32		len;
} OolDatum;

static Size ool_get_flat_size(ExpandedObjectHeader *eoh);
static void ool_flatten_into(ExpandedObjectHeader *eoh, void *result, Size allocated_size);

static const ExpandedObjectMethods ool_methods = {
	ool_get_flat_size,
	ool_flatten_into
};

/* Copies a row key (or prefix) of n > 0 bytes to out as its companion's. */
static void
companion_of(const void *key, size_t n, char *out)
{
	Assert(n > 0 && *(const uint8 *) key >= 1 && *(const uint8 *) key <= 8);
	memcpy(out, key, n);
	out[0] = (char) ((uint8) out[0] | COMPANION_BIT);
}

void
kvsep_ool_key(const char *key, int klen, StringInfo out)
{
	resetStringInfo(out);
	enlargeStringInfo(out, klen);
	companion_of(key, klen, out->data);
	out->len = klen;
	out->data[klen] = '\0';
}

int
kvsep_ool_prefix(const uint8 *prefix, int len, uint8 *out)
{
	companion_of(prefix, len, (char *) out);
	return len;
}

void
kvsep_ool_start(StringInfo companion)
{
	resetStringInfo(companion);
	appendStringInfoChar(companion, COMPANION_FORMAT);
}

KvsepOolReader *
kvsep_ool_reader(KvsepTable *t, kv_txn *txn, const kv_txn_point *point, int direction,
				 bool one_row)
{
	KvsepOolReader *r = palloc0(sizeof(KvsepOolReader));

	r->one_row = one_row;
	r->cxt = CurrentMemoryContext;
	r->t = t;
	r->txn = txn;
	if (point)
	{
		r->point = *point;
		r->at_point = true;
		r->direction = direction;
	}
	initStringInfo(&r->cached_key);
	return r;
}

void
kvsep_ool_reader_free(KvsepOolReader *r)
{
	if (!r)
		return;
	if (r->buf.data)
		kv_buf_free(&r->buf);
	r->buf.data = NULL;
	if (r->it)
	{
		kvsep_iter_closed(r->it);
		kv_iter_free(r->it);
		r->it = NULL;
	}
	r->have_cached = false;
}

uint64
kvsep_ool_reads(const KvsepOolReader *r)
{
	return r ? r->fetches : 0;
}

static void
corrupt(KvsepTable *t, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("kvsep_fdw: malformed out-of-line values in table \"%s\": %s",
					t->relname, what)));
}

/* at most this many steps forward before the cursor seeks instead */
#define CURSOR_STEPS 4

/* Where the cursor is against key, in its direction: < 0 before it, 0 on
 * it, > 0 past it (or at the end). */
static int
cursor_cmp(KvsepOolReader *r, const char *key, int klen)
{
	size_t		kn;
	const void *k;
	int			c;

	if (!kv_iter_valid(r->it))
		return 1;
	k = kv_iter_key(r->it, &kn);
	c = kvsep_key_cmp(k, kn, key, klen);
	return r->direction < 0 ? -c : c;
}

/* Puts the scan's cursor over the companions on key (opening it at the
 * first call) and reads its value: companions are in the order of their
 * rows, so the one wanted is usually the cursor's next entry. */
static kv_status
cursor_read(KvsepOolReader *r, const char *key, int klen, kv_err *err)
{
	const void *v;
	size_t		vn;
	kv_status	st;

	if (!r->it)
	{
		kv_iter_options io;
		uint8		lo[KVSEP_PREFIX_MAX], hi[KVSEP_PREFIX_MAX];
		int			n = kvsep_ool_prefix(r->t->prefix, r->t->prefix_len, lo);

		kvsep_prefix_bounds(lo, n, hi, &io);
		io.reverse = r->direction < 0;
		io.fill_cache = 1;
		io.prefetch_values = 16;
		st = kv_txn_iter_at(r->txn, &r->point, &io, &r->it, err);
		if (st != KV_OK)
			return st;
		kvsep_iter_opened(r->it);
		kv_iter_seek(r->it, key, klen);
	}
	else
	{
		int			c = cursor_cmp(r, key, klen);

		for (int i = 0; c < 0 && i < CURSOR_STEPS; i++)
		{
			kv_iter_next(r->it);
			c = cursor_cmp(r, key, klen);
		}
		if (c != 0)
			kv_iter_seek(r->it, key, klen);
	}
	if (cursor_cmp(r, key, klen) != 0)
	{
		st = kv_iter_status(r->it, err);
		return st != KV_OK ? st : KV_NOT_FOUND;
	}
	st = kv_iter_value(r->it, &v, &vn, err);
	r->bytes = v;
	r->nbytes = vn;
	return st;
}

/* The companion of row, read through its reader (the last one read is
 * kept: a row's values are often used together). */
static const char *
companion_bytes(OolRow *row)
{
	KvsepOolReader *r = row->reader;
	kv_err		err;
	kv_status	st;

	if (!r)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("kvsep_fdw: a value stored out of line cannot be read here")));
	if (r->have_cached && r->cached_key.len == row->cklen &&
		memcmp(r->cached_key.data, row->ckey, row->cklen) == 0)
		return r->bytes;
	r->have_cached = false;
	kvsep_err_init(&err);
	r->fetches++;
	/* (the first read is a get: a scan may read just one row's values -
	 * an aggregate keeps a copy of its first input row - and a get costs
	 * less than opening a cursor) */
	if (r->direction != 0 && r->fetches > 1)
		st = cursor_read(r, row->ckey, row->cklen, &err);
	else
	{
		if (r->at_point)
			st = kv_txn_get_at(r->txn, &r->point, row->ckey, row->cklen, &r->buf, NULL, &err);
		else
			st = kv_txn_get(r->txn, row->ckey, row->cklen, &r->buf, NULL, &err);
		r->bytes = r->buf.data;
		r->nbytes = r->buf.len;
	}
	if (st == KV_NOT_FOUND)
		corrupt(r->t, "a row's out-of-line values are missing");
	if (st != KV_OK)
		kvsep_raise(st, &err, "reading a value stored out of line");
	if (r->nbytes < 1 || (uint8) r->bytes[0] != COMPANION_FORMAT)
		corrupt(r->t, r->nbytes < 1 ? "empty" : "unknown format");
	if ((uint64) r->nbytes - 1 != row->total)
		corrupt(r->t, "their size does not match the row");
	resetStringInfo(&r->cached_key);
	appendBinaryStringInfo(&r->cached_key, row->ckey, row->cklen);
	r->have_cached = true;
	return r->bytes;
}

void *
kvsep_ool_row(KvsepOolReader *reader, const uint8 *key, size_t klen)
{
	OolRow	   *row;

	if (reader && reader->one_row)
	{
		if (!reader->row || reader->row_key_cap < (int) klen)
		{
			if (reader->row)
				pfree(reader->row);
			reader->row_key_cap = Max((int) klen, 64);
			reader->row = MemoryContextAlloc(reader->cxt,
											 sizeof(OolRow) + reader->row_key_cap);
		}
		row = reader->row;
		reader->next_datum = 0;
	}
	else
		row = palloc(sizeof(OolRow) + klen);
	row->reader = reader;
	row->ckey = NULL;
	row->cklen = 0;
	if (key && klen > 0)
	{
		row->ckey = (char *) (row + 1);
		companion_of(key, klen, row->ckey);
		row->cklen = (int) klen;
	}
	row->total = 0;
	return row;
}

Datum
kvsep_ool_datum(void *row, uint32 len)
{
	OolRow	   *r = row;
	KvsepOolReader *reader = r->reader;
	OolDatum   *d;

	if (reader && reader->one_row)
	{
		if (reader->next_datum == reader->n_datums)
		{
			int			n = reader->n_datums + 1;

			reader->datums = reader->datums ?
				repalloc(reader->datums, sizeof(OolDatum *) * n) :
				MemoryContextAlloc(reader->cxt, sizeof(OolDatum *) * n);
			d = MemoryContextAlloc(reader->cxt, sizeof(OolDatum));
			EOH_init_header(&d->hdr, &ool_methods, reader->cxt);
			reader->datums[reader->n_datums++] = d;
		}
		d = reader->datums[reader->next_datum++];
	}
	else
	{
		d = palloc(sizeof(OolDatum));
		EOH_init_header(&d->hdr, &ool_methods, CurrentMemoryContext);
	}
	d->row = r;
	d->off = r->total;
	d->len = len;
	r->total += len;
	return EOHPGetRODatum(&d->hdr);
}

void
kvsep_ool_skip(void *row, uint32 len)
{
	((OolRow *) row)->total += len;
}

static Size
ool_get_flat_size(ExpandedObjectHeader *eoh)
{
	return VARHDRSZ + ((OolDatum *) eoh)->len;
}

static void
ool_flatten_into(ExpandedObjectHeader *eoh, void *result, Size allocated_size)
{
	OolDatum   *d = (OolDatum *) eoh;
	const char *bytes = companion_bytes(d->row);

	Assert(allocated_size == VARHDRSZ + d->len);
	SET_VARSIZE(result, VARHDRSZ + d->len);
	memcpy(VARDATA(result), bytes + 1 + d->off, d->len);
}

bool
kvsep_ool_type_allowed(Oid typid)
{
	Oid			base = getBaseType(typid);

	return get_typlen(base) == -1 && !OidIsValid(get_element_type(base)) &&
		get_typtype(base) != TYPTYPE_COMPOSITE && base != RECORDOID;
}
