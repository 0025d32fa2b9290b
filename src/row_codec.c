/*
 * row_codec.c - the row value format of kvsep tables.
 *
 *   u8 format (1) | u16 natts (the relation's attribute count when
 *   written, dropped ones included) | null bitmap, ceil(natts / 8) bytes,
 *   bit set = NULL or not stored | the stored columns in attnum order
 *
 * A stored column is its datum image: fixed-length types their typlen
 * bytes, varlena types a uvarint length and the detoasted, uncompressed
 * bytes, cstrings a uvarint length and the bytes.  Key columns that the
 * key decodes exactly and dropped columns are not stored (bit set).  A row
 * written before ADD COLUMN has fewer attributes: the new ones read as
 * NULL.  Column type changes are refused by the DDL hook (ddl.c), so an
 * image is always read with the type it was written with.
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/tupmacs.h"
#include "utils/rel.h"

#include "kvsep_fdw.h"

#define ROW_FORMAT 1

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

void
kvsep_encode_row(KvsepTable *t, TupleDesc desc, Datum *values, bool *isnull, StringInfo out)
{
	int			natts = desc->natts;
	int			bitmap_at;

	appendStringInfoChar(out, ROW_FORMAT);
	appendStringInfoChar(out, (char) (natts >> 8));
	appendStringInfoChar(out, (char) (natts & 0xff));
	bitmap_at = out->len;
	for (int i = 0; i < (natts + 7) / 8; i++)
		appendStringInfoChar(out, 0);
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

			put_uvarint(out, VARSIZE_ANY_EXHDR(plain));
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
	if ((int64) out->len > KV_MAX_VALUE_SIZE)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("row of %d bytes is too large for kvsep_fdw table \"%s\"", out->len,
						t->relname)));
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
				 bool *isnull)
{
	const uint8 *end = p + n;
	const uint8 *bitmap;
	int			stored;

	if (n < 3 || p[0] != ROW_FORMAT)
		corrupt(t, n < 3 ? "too short" : "unknown format");
	stored = (p[1] << 8) | p[2];
	p += 3;
	if (stored > desc->natts || (size_t) (end - p) < (size_t) (stored + 7) / 8)
		corrupt(t, "bad attribute count");
	bitmap = p;
	p += (stored + 7) / 8;
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute a = TupleDescAttr(desc, i);
		bool		present = i < stored && !(bitmap[i / 8] & (1 << (i % 8)));

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
