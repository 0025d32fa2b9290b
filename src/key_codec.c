/*
 * key_codec.c - the order-preserving ("memcomparable") encoding of key
 * column values.
 *
 * A key is the concatenation of the encodings of its columns.  memcmp
 * order of encodings is the btree order of the values, and every encoding
 * is self-delimiting: no value's encoding is a proper prefix of another
 * value's encoding of the same type.  This file owns the encodings, the
 * decoding back to Datums and the type predicates the glue plans with.
 *
 *	int2, int4, int8	as int8: 8 bytes big-endian of (uint64) v ^ 1 << 63
 *	timestamp(tz)		as int8
 *	date				4 bytes big-endian of (uint32) v ^ 1 << 31
 *	bool				1 byte, 0 or 1
 *	float4, float8		as float8, -0 made +0 and every NaN one NaN; the
 *						bits, all inverted if negative, else with the sign
 *						bit set; 8 bytes big-endian
 *	numeric				class byte (1 -Infinity, 2 negative, 3 zero,
 *						4 positive, 5 +Infinity, 6 NaN); a nonzero finite
 *						value 0.d1..dn * 10^E (d1, dn nonzero) goes on with
 *						E as 4 bytes like a date, bytes d + 1 and a 0
 *						terminator, all inverted when negative.  Display
 *						scale is lost (1.0 and 1.00 encode alike).
 *	text, varchar, bytea	the bytes with 0x00 written 0x00 0xff, then
 *						0x00 0x01
 *	uuid				the 16 bytes
 */
#include "postgres.h"

#include <float.h>
#include <math.h>

#include "catalog/pg_collation_d.h"
#include "catalog/pg_type_d.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/fmgrprotos.h"
#include "utils/memutils.h"
#include "utils/pg_locale.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "kvsep_fdw.h"

#define SIGN64		UINT64CONST(0x8000000000000000)
#define SIGN32		((uint32) 0x80000000)
/* The one NaN the float encoding uses (a quiet, positive NaN). */
#define CANONICAL_NAN	UINT64CONST(0x7ff8000000000000)

/* Numeric class bytes. */
#define NUM_NEG_INF		0x01
#define NUM_NEG			0x02
#define NUM_ZERO		0x03
#define NUM_POS			0x04
#define NUM_POS_INF		0x05
#define NUM_NAN			0x06

/*
 * What numeric can hold: 131072 digits before the point, 16383 after.  A
 * decoded key beyond that is damaged (numeric_in would fail on it with an
 * overflow error instead).
 */
#define NUM_INT_DIGITS_MAX	131072
#define NUM_FRAC_DIGITS_MAX	16383
#define NUM_EXP_MAX		NUM_INT_DIGITS_MAX
#define NUM_EXP_MIN		(-NUM_FRAC_DIGITS_MAX)

/* Text-like escape and terminator. */
#define ESC_ZERO		0xff
#define ESC_END			0x01

static void unsupported_type(Oid typid) pg_attribute_noreturn();
static void malformed(Oid typid, const char *what) pg_attribute_noreturn();

static void
unsupported_type(Oid typid)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("kvsep_fdw: type %s is not supported in a key",
					format_type_be(typid))));
}

static void
malformed(Oid typid, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("kvsep_fdw: malformed key (%s %s value)",
					what, format_type_be(typid))));
}

bool
kvsep_key_type_supported(Oid typid)
{
	switch (typid)
	{
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case BOOLOID:
		case FLOAT4OID:
		case FLOAT8OID:
		case NUMERICOID:
		case TEXTOID:
		case VARCHAROID:
		case BYTEAOID:
		case UUIDOID:
		case DATEOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			return true;
		default:
			return false;
	}
}

bool
kvsep_key_type_lossless(Oid typid)
{
	switch (typid)
	{
		case NUMERICOID:		/* display scale */
		case FLOAT4OID:			/* -0 */
		case FLOAT8OID:
			return false;
		default:
			return kvsep_key_type_supported(typid);
	}
}

bool
kvsep_key_type_ordered(Oid typid, Oid collid)
{
	if (!kvsep_key_type_supported(typid))
		return false;
	if (typid == TEXTOID || typid == VARCHAROID)
	{
		if (collid == C_COLLATION_OID || collid == POSIX_COLLATION_OID)
			return true;
		if (!OidIsValid(collid))
			return false;
		return lc_collate_is_c(collid);
	}
	return true;
}

Oid
kvsep_key_encoding_class(Oid typid)
{
	switch (typid)
	{
		case INT2OID:
		case INT4OID:
		case INT8OID:
			return INT8OID;
		case FLOAT4OID:
		case FLOAT8OID:
			return FLOAT8OID;
		case VARCHAROID:
			return TEXTOID;
		default:
			return typid;
	}
}

/* ---- fixed-width helpers ---- */

static void
put_u64(StringInfo buf, uint64 u)
{
	uint8		b[8];
	int			i;

	for (i = 7; i >= 0; i--)
	{
		b[i] = (uint8) (u & 0xff);
		u >>= 8;
	}
	appendBinaryStringInfo(buf, (const char *) b, 8);
}

static void
put_u32(StringInfo buf, uint32 u)
{
	uint8		b[4];

	b[0] = (uint8) (u >> 24);
	b[1] = (uint8) (u >> 16);
	b[2] = (uint8) (u >> 8);
	b[3] = (uint8) u;
	appendBinaryStringInfo(buf, (const char *) b, 4);
}

static uint64
get_u64(const uint8 **p, const uint8 *end, Oid typid)
{
	const uint8 *s = *p;
	uint64		u = 0;
	int			i;

	if (end - s < 8)
		malformed(typid, "truncated");
	for (i = 0; i < 8; i++)
		u = (u << 8) | s[i];
	*p = s + 8;
	return u;
}

static uint32
get_u32(const uint8 **p, const uint8 *end, Oid typid)
{
	const uint8 *s = *p;
	uint32		u;

	if (end - s < 4)
		malformed(typid, "truncated");
	u = ((uint32) s[0] << 24) | ((uint32) s[1] << 16) |
		((uint32) s[2] << 8) | (uint32) s[3];
	*p = s + 4;
	return u;
}

/* ---- floats ---- */

static uint64
float8_key_bits(float8 f)
{
	uint64		u;

	if (isnan(f))
		u = CANONICAL_NAN;
	else
	{
		if (f == 0.0)
			f = 0.0;			/* -0 sorts (and is) equal to +0 */
		memcpy(&u, &f, sizeof(u));
	}
	if (u & SIGN64)
		return ~u;
	return u | SIGN64;
}

static float8
float8_from_key_bits(uint64 u)
{
	float8		f;

	if (u & SIGN64)
		u &= ~SIGN64;
	else
		u = ~u;
	memcpy(&f, &u, sizeof(f));
	return f;
}

/* ---- numeric ---- */

static void
encode_numeric(StringInfo buf, Datum value)
{
	char	   *str = DatumGetCString(DirectFunctionCall1(numeric_out, value));
	const char *s = str;
	bool		neg = false;
	int			intdigits = -1;	/* digits before the point */
	int			first = -1;		/* index of the first nonzero digit */
	int			last = -1;		/* and of the last */
	int			ndigits = 0;	/* all digits seen */
	int64		exponent;
	int			start;
	int			i;

	if (strcmp(s, "NaN") == 0)
	{
		appendStringInfoCharMacro(buf, NUM_NAN);
		pfree(str);
		return;
	}
	if (strcmp(s, "Infinity") == 0)
	{
		appendStringInfoCharMacro(buf, NUM_POS_INF);
		pfree(str);
		return;
	}
	if (strcmp(s, "-Infinity") == 0)
	{
		appendStringInfoCharMacro(buf, NUM_NEG_INF);
		pfree(str);
		return;
	}

	if (*s == '-')
	{
		neg = true;
		s++;
	}
	else if (*s == '+')
		s++;
	start = s - str;

	/*
	 * numeric_out writes plain digits with at most one point.  Find the
	 * first and last nonzero digit (indexes over the digits alone) and how
	 * many digits come before the point.
	 */
	for (; *s; s++)
	{
		if (*s == '.')
		{
			if (intdigits >= 0)
				elog(ERROR, "kvsep_fdw: unexpected numeric text \"%s\"", str);
			intdigits = ndigits;
			continue;
		}
		if (*s < '0' || *s > '9')
			elog(ERROR, "kvsep_fdw: unexpected numeric text \"%s\"", str);
		if (*s != '0')
		{
			if (first < 0)
				first = ndigits;
			last = ndigits;
		}
		ndigits++;
	}
	if (intdigits < 0)
		intdigits = ndigits;

	if (first < 0)
	{
		appendStringInfoCharMacro(buf, NUM_ZERO);
		pfree(str);
		return;
	}

	/* value = 0.d[first]..d[last] * 10^(intdigits - first) */
	exponent = (int64) intdigits - first;

	appendStringInfoCharMacro(buf, neg ? NUM_NEG : NUM_POS);
	put_u32(buf, ((uint32) (int32) exponent ^ SIGN32) ^ (neg ? 0xffffffff : 0));

	i = 0;
	for (s = str + start; *s; s++)
	{
		uint8		b;

		if (*s == '.')
			continue;
		if (i >= first && i <= last)
		{
			b = (uint8) (*s - '0' + 1);
			appendStringInfoCharMacro(buf, (char) (neg ? ~b : b));
		}
		i++;
	}
	appendStringInfoCharMacro(buf, (char) (neg ? 0xff : 0x00));
	pfree(str);
}

static Datum
decode_numeric(const uint8 **p, const uint8 *end)
{
	const uint8 *s = *p;
	uint8		cls;
	uint8		flip;
	int32		exponent;
	const uint8 *digits;
	int			ndigits;
	StringInfoData str;
	Datum		result;
	int			i;

	if (s >= end)
		malformed(NUMERICOID, "truncated");
	cls = *s++;
	switch (cls)
	{
		case NUM_NEG_INF:
			*p = s;
			return DirectFunctionCall3(numeric_in, CStringGetDatum("-Infinity"),
									   ObjectIdGetDatum(InvalidOid),
									   Int32GetDatum(-1));
		case NUM_ZERO:
			*p = s;
			return DirectFunctionCall3(numeric_in, CStringGetDatum("0"),
									   ObjectIdGetDatum(InvalidOid),
									   Int32GetDatum(-1));
		case NUM_POS_INF:
			*p = s;
			return DirectFunctionCall3(numeric_in, CStringGetDatum("Infinity"),
									   ObjectIdGetDatum(InvalidOid),
									   Int32GetDatum(-1));
		case NUM_NAN:
			*p = s;
			return DirectFunctionCall3(numeric_in, CStringGetDatum("NaN"),
									   ObjectIdGetDatum(InvalidOid),
									   Int32GetDatum(-1));
		case NUM_NEG:
			flip = 0xff;
			break;
		case NUM_POS:
			flip = 0x00;
			break;
		default:
			malformed(NUMERICOID, "bad class byte in");
	}

	*p = s;
	exponent = (int32) (get_u32(p, end, NUMERICOID) ^
						(flip ? 0xffffffff : 0) ^ SIGN32);
	s = *p;
	if (exponent > NUM_EXP_MAX || exponent < NUM_EXP_MIN)
		malformed(NUMERICOID, "exponent out of range in");

	/* The digits, up to the terminator. */
	digits = s;
	for (;;)
	{
		uint8		b;

		if (s >= end)
			malformed(NUMERICOID, "truncated");
		b = *s ^ flip;
		if (b == 0)
			break;
		if (b > 10)
			malformed(NUMERICOID, "bad digit in");
		s++;
	}
	ndigits = s - digits;
	if (ndigits == 0 ||
		(digits[0] ^ flip) == 1 || (digits[ndigits - 1] ^ flip) == 1)
		malformed(NUMERICOID, "non-canonical");
	if ((int64) ndigits - exponent > NUM_FRAC_DIGITS_MAX)
		malformed(NUMERICOID, "out-of-range");
	*p = s + 1;

	/* Rebuild the decimal text of 0.d1..dn * 10^exponent. */
	initStringInfo(&str);
	if (flip)
		appendStringInfoChar(&str, '-');
	if (exponent <= 0)
	{
		appendStringInfoString(&str, "0.");
		for (i = 0; i < -exponent; i++)
			appendStringInfoChar(&str, '0');
		for (i = 0; i < ndigits; i++)
			appendStringInfoChar(&str, (char) ('0' + (digits[i] ^ flip) - 1));
	}
	else
	{
		for (i = 0; i < ndigits; i++)
		{
			if (i == exponent)
				appendStringInfoChar(&str, '.');
			appendStringInfoChar(&str, (char) ('0' + (digits[i] ^ flip) - 1));
		}
		for (; i < exponent; i++)
			appendStringInfoChar(&str, '0');
	}

	result = DirectFunctionCall3(numeric_in, CStringGetDatum(str.data),
								 ObjectIdGetDatum(InvalidOid),
								 Int32GetDatum(-1));
	pfree(str.data);
	return result;
}

/* ---- text, varchar, bytea ---- */

static void
encode_bytes(StringInfo buf, Datum value)
{
	struct varlena *v = PG_DETOAST_DATUM_PACKED(value);
	const char *s = VARDATA_ANY(v);
	int			len = VARSIZE_ANY_EXHDR(v);
	int			i;
	int			run = 0;		/* start of the bytes not yet appended */

	enlargeStringInfo(buf, len + 2);
	for (i = 0; i < len; i++)
	{
		if (s[i] == '\0')
		{
			/* through the zero, then its escape */
			appendBinaryStringInfo(buf, s + run, i + 1 - run);
			appendStringInfoCharMacro(buf, (char) ESC_ZERO);
			run = i + 1;
		}
	}
	appendBinaryStringInfo(buf, s + run, len - run);
	appendStringInfoCharMacro(buf, '\0');
	appendStringInfoCharMacro(buf, (char) ESC_END);

	if ((Pointer) v != DatumGetPointer(value))
		pfree(v);
}

static Datum
decode_bytes(const uint8 **p, const uint8 *end, Oid typid)
{
	const uint8 *start = *p;
	const uint8 *s = start;
	size_t		nescapes = 0;
	size_t		len;
	struct varlena *result;
	char	   *d;

	/* Find the terminator, checking the escapes. */
	for (;;)
	{
		const uint8 *z = memchr(s, 0, end - s);

		if (z == NULL || z + 1 >= end)
			malformed(typid, "truncated");
		if (z[1] == ESC_END)
		{
			s = z;
			break;
		}
		if (z[1] != ESC_ZERO)
			malformed(typid, "bad escape in");
		nescapes++;
		s = z + 2;
	}

	len = (s - start) - nescapes;
	if (len > MaxAllocSize - VARHDRSZ)
		malformed(typid, "oversized");
	result = (struct varlena *) palloc(VARHDRSZ + len);
	SET_VARSIZE(result, VARHDRSZ + len);
	d = VARDATA(result);
	while (start < s)
	{
		const uint8 *z = memchr(start, 0, s - start);
		size_t		n = (z ? z + 1 : s) - start;

		memcpy(d, start, n);
		d += n;
		start += n;
		if (z)
			start++;			/* the escape after the zero */
	}

	/* text holds no NUL bytes and is valid in the database encoding */
	if (typid != BYTEAOID &&
		(nescapes > 0 || !pg_verifymbstr(VARDATA(result), (int) len, true)))
		malformed(typid, "invalid characters in");
	*p = s + 2;
	return PointerGetDatum(result);
}

/* ---- entry points ---- */

void
kvsep_encode_datum(StringInfo buf, Oid typid, Datum value)
{
	switch (typid)
	{
		case INT2OID:
			put_u64(buf, (uint64) (int64) DatumGetInt16(value) ^ SIGN64);
			break;
		case INT4OID:
			put_u64(buf, (uint64) (int64) DatumGetInt32(value) ^ SIGN64);
			break;
		case INT8OID:
			put_u64(buf, (uint64) DatumGetInt64(value) ^ SIGN64);
			break;
		case TIMESTAMPOID:
			put_u64(buf, (uint64) DatumGetTimestamp(value) ^ SIGN64);
			break;
		case TIMESTAMPTZOID:
			put_u64(buf, (uint64) DatumGetTimestampTz(value) ^ SIGN64);
			break;
		case DATEOID:
			put_u32(buf, (uint32) DatumGetDateADT(value) ^ SIGN32);
			break;
		case BOOLOID:
			appendStringInfoCharMacro(buf, DatumGetBool(value) ? 1 : 0);
			break;
		case FLOAT4OID:
			put_u64(buf, float8_key_bits((float8) DatumGetFloat4(value)));
			break;
		case FLOAT8OID:
			put_u64(buf, float8_key_bits(DatumGetFloat8(value)));
			break;
		case NUMERICOID:
			encode_numeric(buf, value);
			break;
		case TEXTOID:
		case VARCHAROID:
		case BYTEAOID:
			encode_bytes(buf, value);
			break;
		case UUIDOID:
			appendBinaryStringInfo(buf,
								   (const char *) DatumGetUUIDP(value)->data,
								   UUID_LEN);
			break;
		default:
			unsupported_type(typid);
	}
}

Datum
kvsep_decode_datum(const uint8 **p, const uint8 *end, Oid typid)
{
	switch (typid)
	{
		case INT2OID:
			{
				int64		v = (int64) (get_u64(p, end, typid) ^ SIGN64);

				if (v < PG_INT16_MIN || v > PG_INT16_MAX)
					malformed(typid, "out-of-range");
				return Int16GetDatum((int16) v);
			}
		case INT4OID:
			{
				int64		v = (int64) (get_u64(p, end, typid) ^ SIGN64);

				if (v < PG_INT32_MIN || v > PG_INT32_MAX)
					malformed(typid, "out-of-range");
				return Int32GetDatum((int32) v);
			}
		case INT8OID:
			return Int64GetDatum((int64) (get_u64(p, end, typid) ^ SIGN64));
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			{
				int64		v = (int64) (get_u64(p, end, typid) ^ SIGN64);

				if (!TIMESTAMP_NOT_FINITE(v) && !IS_VALID_TIMESTAMP(v))
					malformed(typid, "out-of-range");
				return Int64GetDatum(v);	/* Timestamp and TimestampTz alike */
			}
		case DATEOID:
			{
				DateADT		v = (DateADT) (get_u32(p, end, typid) ^ SIGN32);

				if (!DATE_NOT_FINITE(v) && !IS_VALID_DATE(v))
					malformed(typid, "out-of-range");
				return DateADTGetDatum(v);
			}
		case BOOLOID:
			{
				uint8		b;

				if (*p >= end)
					malformed(typid, "truncated");
				b = **p;
				if (b > 1)
					malformed(typid, "bad");
				(*p)++;
				return BoolGetDatum(b != 0);
			}
		case FLOAT4OID:
			{
				float8		f = float8_from_key_bits(get_u64(p, end, typid));
				float4		g;

				if (isnan(f))
					return Float4GetDatum((float4) NAN);
				if (!isinf(f) && fabs(f) > FLT_MAX)
					malformed(typid, "out-of-range");
				g = (float4) f;
				if ((float8) g != f)
					malformed(typid, "inexact");
				return Float4GetDatum(g);
			}
		case FLOAT8OID:
			return Float8GetDatum(float8_from_key_bits(get_u64(p, end, typid)));
		case NUMERICOID:
			return decode_numeric(p, end);
		case TEXTOID:
		case VARCHAROID:
		case BYTEAOID:
			return decode_bytes(p, end, typid);
		case UUIDOID:
			{
				pg_uuid_t  *u;

				if (end - *p < UUID_LEN)
					malformed(typid, "truncated");
				u = (pg_uuid_t *) palloc(sizeof(pg_uuid_t));
				memcpy(u->data, *p, UUID_LEN);
				*p += UUID_LEN;
				return UUIDPGetDatum(u);
			}
		default:
			unsupported_type(typid);
	}
	return (Datum) 0;			/* keep compiler quiet */
}

int
kvsep_prefix_successor(uint8 *s, int n)
{
	while (n > 0 && s[n - 1] == 0xff)
		n--;
	if (n == 0)
		return 0;
	s[n - 1]++;
	return n;
}

int
kvsep_key_cmp(const void *a, size_t an, const void *b, size_t bn)
{
	int			c = memcmp(a, b, Min(an, bn));

	return c ? c : (an > bn) - (an < bn);
}
