/* The history store's rows (store/rows.py), a batch at a time: records as
 * one blob of fixed-width fields that a single prepared INSERT takes apart
 * in SQLite (substr, and CAST for the numbers).  Bound one parameter at a
 * time through Python's sqlite3, a record cost ~20 000 interpreter
 * instructions (23 parameters, and an adapter lookup that failed with an
 * AttributeError for each of the four address blobs); this way Python
 * binds one blob a batch.  What the fields become (columns, expressions)
 * stays in rows.py: this file writes the fields it is told, in order. */
#include "../_cmeter.h"
#include "digit_pairs.h"

#include <string.h>

/* width characters, zero-padded: SQLite's CAST reads the leading zeros as
 * a decimal number.  Its integers are signed, so a 64-bit value beyond
 * INT64_MAX is written as the negative number of the same 64 bits (what
 * sqlite3_bind_int64 of the uint64 would store), never as a REAL. */
static void put_number(char *out, uint64_t value, int width)
{
	int n = width;
	int negative = value > (uint64_t)INT64_MAX;

	if (negative)
		value = (uint64_t)0 - value;   /* INT64_MIN stays 2^63: 19 digits */
	while (value >= 10) {   /* most fields are small: a few pairs, then zeros */
		unsigned pair = (unsigned)(value % 100);

		value /= 100;
		n -= 2;
		memcpy(out + n, digit_pairs + 2 * pair, 2);
	}
	if (value)
		out[--n] = (char)('0' + value);
	memset(out, '0', (size_t)n);
	if (negative)
		out[0] = '-';
}

static uint64_t read_unsigned(const uint8_t *at, int kind)
{
	uint8_t u8;
	uint16_t u16;
	uint32_t u32;
	uint64_t u64;

	switch (kind) {
	case FP_HISTORY_U8:
		memcpy(&u8, at, 1);
		return u8;
	case FP_HISTORY_U16:
		memcpy(&u16, at, 2);
		return u16;
	case FP_HISTORY_U32:
		memcpy(&u32, at, 4);
		return u32;
	default:
		memcpy(&u64, at, 8);
		return u64;
	}
}

int fp_history_field_width(int kind)
{
	switch (kind) {
	case FP_HISTORY_U8:
		return 3;    /* 255 */
	case FP_HISTORY_U16:
		return 5;    /* 65535 */
	case FP_HISTORY_U32:
		return 10;   /* 4294967295 */
	case FP_HISTORY_U64:
		return 20;   /* -9223372036854775808 */
	default:
		return 16;   /* an address */
	}
}

int fp_history_row_width(const struct fp_history_field *fields, int nfields)
{
	int width = 0;

	for (int f = 0; f < nfields; f++)
		width += fp_history_field_width(fields[f].kind);
	return width;
}

int fp_history_rows(const struct fp_record *records, int count, const struct fp_history_field *fields,
		    int nfields, uint8_t *out, int size)
{
	uint8_t *at = out;

	if (count < 0 || (int64_t)count * fp_history_row_width(fields, nfields) > size)
		return -1;
	for (int r = 0; r < count; r++) {
		const uint8_t *record = (const uint8_t *)&records[r];

		for (int f = 0; f < nfields; f++) {
			int width = fp_history_field_width(fields[f].kind);

			if (fields[f].kind == FP_HISTORY_ADDRESS)
				memcpy(at, record + fields[f].offset, (size_t)width);
			else
				put_number((char *)at, read_unsigned(record + fields[f].offset, fields[f].kind),
					   width);
			at += width;
		}
	}
	return (int)(at - out);
}
