/*
 * row_codec.c - the row value format of kvsep tables.
 *
 *   u8 format (1) | u16 natts (the relation's attribute count when
 *   written, dropped ones included) | null bitmap, ceil(natts / 8) bytes,
 *   bit set = NULL or not stored | the stored columns in attnum order
 *
 * A row with values stored out of line (out_of_line.c) has format 2:
 *
 *   u8 format (2) | u16 natts | null bitmap | out-of-line bitmap, the same
 *   size, bit set = the value is in the row's companion | the stored
 *   columns
 *
 * A stored column is its datum image: fixed-length types their typlen
 * bytes, varlena types a uvarint length and the detoasted, uncompressed
 * bytes (only the length when the value is out of line), cstrings a
 * uvarint length and the bytes.  Key columns that the
 * key decodes exactly and dropped columns are not stored (bit set).  A row
 * written before ADD COLUMN has fewer attributes: the new ones read as
 * NULL.  Column type changes are refused by the DDL hook (ddl.c), so an
 * image is always read with the type it was written with.
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/tupmacs.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "kvsep_fdw.h"

#define ROW_FORMAT 1
#define ROW_FORMAT_OOL 2

static void
put_uvarint(StringInfo out, uint64 v)
{
	while (v >= 0x80)
	{
		appendStringInfoChar(out, (char) ((v & 0x7f) | 0x80));
		v >>= 7;
	}
	appendStringInfoChar(out, (char) v);
}

static bool
get_uvarint(const uint8 **p, const uint8 *end, uint64 *v)
{
	uint64		r = 0;

	for (int shift = 0; shift < 64 && *p < end; shift += 7)
	{
		uint8		b = *(*p)++;

		r |= (uint64) (b & 0x7f) << shift;
		if (!(b & 0x80))
		{
			*v = r;
			return true;
		}
	}
	return false;
}

/* Whether column i of this row goes out of line (its size is known
 * without detoasting). */
static bool
goes_out_of_line(KvsepTable *t, TupleDesc desc, Datum *values, bool *isnull, int i)
{
	Form_pg_attribute a = TupleDescAttr(desc, i);

	return kvsep_out_of_line_size > 0 && t->may_ool[i] && !a->attisdropped && t->in_row[i] &&
		!isnull[i] && toast_raw_datum_size(values[i]) - VARHDRSZ >= (Size) kvsep_out_of_line_size;
}

void
kvsep_encode_row(KvsepTable *t, TupleDesc desc, Datum *values, bool *isnull, StringInfo out,
				 StringInfo companion)
{
	int			natts = desc->natts;
	int			nbitmap = (natts + 7) / 8;
	int			bitmap_at, ool_at = -1;
	bool		any_ool = false;

	resetStringInfo(companion);
	for (int i = 0; i < natts && !any_ool; i++)
		any_ool = goes_out_of_line(t, desc, values, isnull, i);
	appendStringInfoChar(out, any_ool ? ROW_FORMAT_OOL : ROW_FORMAT);
	appendStringInfoChar(out, (char) (natts >> 8));
	appendStringInfoChar(out, (char) (natts & 0xff));
	bitmap_at = out->len;
	for (int i = 0; i < nbitmap; i++)
		appendStringInfoChar(out, 0);
	if (any_ool)
	{
		ool_at = out->len;
		for (int i = 0; i < nbitmap; i++)
			appendStringInfoChar(out, 0);
		kvsep_ool_start(companion);
	}
	for (int i = 0; i < natts; i++)
	{
		Form_pg_attribute a = TupleDescAttr(desc, i);

		if (a->attisdropped || !t->in_row[i] || isnull[i])
		{
			out->data[bitmap_at + i / 8] |= (char) (1 << (i % 8));
			continue;
		}
		if (a->attlen > 0)
		{
			char		buf[sizeof(Datum)];

			if (a->attbyval)
			{
				store_att_byval(buf, values[i], a->attlen);
				appendBinaryStringInfo(out, buf, a->attlen);
			}
			else
				appendBinaryStringInfo(out, DatumGetPointer(values[i]), a->attlen);
		}
		else if (a->attlen == -1)
		{
			struct varlena *v = (struct varlena *) DatumGetPointer(values[i]);
			struct varlena *plain = VARATT_IS_EXTENDED(v) ? detoast_attr(v) : v;
			bool		ool = any_ool && goes_out_of_line(t, desc, values, isnull, i);

			put_uvarint(out, VARSIZE_ANY_EXHDR(plain));
			if (ool)
			{
				out->data[ool_at + i / 8] |= (char) (1 << (i % 8));
				appendBinaryStringInfo(companion, VARDATA_ANY(plain), VARSIZE_ANY_EXHDR(plain));
			}
			else
				appendBinaryStringInfo(out, VARDATA_ANY(plain), VARSIZE_ANY_EXHDR(plain));
			if (plain != v)
				pfree(plain);
		}
		else
		{
			const char *s = DatumGetCString(values[i]);
			size_t		n = strlen(s);

			put_uvarint(out, n);
			appendBinaryStringInfo(out, s, n);
		}
	}
	if ((int64) out->len > KV_MAX_VALUE_SIZE || (int64) companion->len > KV_MAX_VALUE_SIZE)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("row of %d bytes is too large for kvsep_fdw table \"%s\"",
						out->len + companion->len, t->relname)));
}

static void
corrupt(KvsepTable *t, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("kvsep_fdw: malformed row in table \"%s\": %s", t->relname, what)));
}

void
kvsep_decode_row(KvsepTable *t, TupleDesc desc, const uint8 *p, size_t n, Datum *values,
				 bool *isnull, KvsepOolReader *reader, const uint8 *key, size_t klen)
{
	const uint8 *end = p + n;
	const uint8 *bitmap, *ool_bitmap = NULL;
	int			stored;
	void	   *ool_row = NULL;

	if (n < 3 || (p[0] != ROW_FORMAT && p[0] != ROW_FORMAT_OOL))
		corrupt(t, n < 3 ? "too short" : "unknown format");
	stored = (p[1] << 8) | p[2];
	if (stored > desc->natts ||
		(size_t) (end - p - 3) < (size_t) (stored + 7) / 8 * (p[0] == ROW_FORMAT_OOL ? 2 : 1))
		corrupt(t, "bad attribute count");
	if (p[0] == ROW_FORMAT_OOL)
	{
		ool_bitmap = p + 3 + (stored + 7) / 8;
		ool_row = kvsep_ool_row(reader, key, klen);
	}
	p += 3;
	bitmap = p;
	p += (stored + 7) / 8 * (ool_bitmap ? 2 : 1);
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute a = TupleDescAttr(desc, i);
		bool		present = i < stored && !(bitmap[i / 8] & (1 << (i % 8)));
		bool		ool = ool_bitmap && i < stored && (ool_bitmap[i / 8] & (1 << (i % 8)));

		if (ool && (!present || a->attlen != -1 || (!t->in_row[i] && !a->attisdropped)))
			corrupt(t, "an out-of-line value of a column that cannot have one");
		if (ool)
		{
			uint64		len;

			if (!get_uvarint(&p, end, &len) || len > MaxAllocSize - VARHDRSZ)
				corrupt(t, "bad out-of-line length");
			isnull[i] = a->attisdropped;
			if (a->attisdropped)
				kvsep_ool_skip(ool_row, (uint32) len);
			else
				values[i] = kvsep_ool_datum(ool_row, (uint32) len);
			continue;
		}
		if (!t->in_row[i] && !a->attisdropped)
		{
			if (present)
				corrupt(t, "a column that is not stored has a value");
			if (!t->is_key[i])
				isnull[i] = true;
			continue;
		}
		if (!present)
		{
			isnull[i] = true;
			continue;
		}
		if (a->attisdropped)
		{
			/* written before DROP COLUMN: skip it (a dropped column keeps
			 * its length in pg_attribute) */
			uint64		len;

			isnull[i] = true;
			if (a->attlen > 0)
				len = a->attlen;
			else if (!get_uvarint(&p, end, &len))
				corrupt(t, "truncated value");
			if (len > (uint64) (end - p))
				corrupt(t, "truncated value");
			p += len;
			continue;
		}
		isnull[i] = false;
		if (a->attlen > 0)
		{
			if (end - p < a->attlen)
				corrupt(t, "truncated value");
			if (a->attbyval)
			{
				char		buf[sizeof(Datum)];

				memcpy(buf, p, a->attlen);
				values[i] = fetch_att(buf, true, a->attlen);
			}
			else
			{
				char	   *copy = palloc(a->attlen);

				memcpy(copy, p, a->attlen);
				values[i] = PointerGetDatum(copy);
			}
			p += a->attlen;
		}
		else
		{
			uint64		len;

			if (!get_uvarint(&p, end, &len) || len > (uint64) (end - p))
				corrupt(t, "truncated value");
			if (a->attlen == -1)
			{
				struct varlena *v = palloc(VARHDRSZ + len);

				SET_VARSIZE(v, VARHDRSZ + len);
				memcpy(VARDATA(v), p, len);
				values[i] = PointerGetDatum(v);
			}
			else
			{
				char	   *s = palloc(len + 1);

				memcpy(s, p, len);
				s[len] = '\0';
				values[i] = CStringGetDatum(s);
			}
			p += len;
		}
	}
	if (p != end)
		corrupt(t, "trailing bytes");
}
