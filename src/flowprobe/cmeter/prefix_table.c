/* Networks and AS numbers for the enrichment stage: a `prefix asn` table
 * (one prefix a line, as route collectors publish them) loaded into a
 * longest-prefix-match structure: the prefixes flattened into disjoint
 * address ranges, each with its most specific prefix's length and AS,
 * searched by bisection.  Bounded by max_prefixes; built once per load,
 * never changed after (a reload builds a new one and swaps).
 *
 * 128-bit addresses are pairs of 64-bit halves: 32-bit routers have no
 * __int128. */
#include "../_cmeter.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NO_PREFIX 255

struct u128 {
	uint64_t hi, lo;
};

struct prefix {
	struct u128 start, end;
	uint32_t asn;
	uint8_t length;
};

struct range {            /* from start to the next range's start */
	struct u128 start;
	uint32_t asn;
	uint8_t length;       /* NO_PREFIX: no prefix covers it */
};

struct family_table {
	struct range *ranges;
	uint32_t count;
};

struct fp_prefix_table {
	struct family_table family[2];   /* IPv4, IPv6 */
	uint32_t prefixes;
	uint64_t memory_bytes;
};

static int less(struct u128 a, struct u128 b)
{
	return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo);
}

static int equal(struct u128 a, struct u128 b)
{
	return a.hi == b.hi && a.lo == b.lo;
}

static struct u128 plus_one(struct u128 a)
{
	a.lo++;
	if (!a.lo)
		a.hi++;
	return a;
}

static struct u128 from_bytes(const uint8_t *address, int size)
{
	struct u128 v = { 0, 0 };
	int i;

	for (i = 0; i < size; i++) {
		if (size == 16 && i < 8)
			v.hi = v.hi << 8 | address[i];
		else
			v.lo = v.lo << 8 | address[i];
	}
	return v;
}

/* The first and last address of a prefix of `length` bits in a family of `bits`. */
static void prefix_range(struct u128 address, int length, int bits, struct u128 *start,
			 struct u128 *end)
{
	int host = bits - length;   /* bits below the prefix */
	struct u128 mask = { 0, 0 };

	if (host >= 64) {
		mask.lo = ~0ULL;
		mask.hi = host >= 128 ? ~0ULL : (host == 64 ? 0 : (~0ULL >> (128 - host)));
	} else if (host > 0) {
		mask.lo = ~0ULL >> (64 - host);
	}
	start->hi = address.hi & ~mask.hi;
	start->lo = address.lo & ~mask.lo;
	end->hi = start->hi | mask.hi;
	end->lo = start->lo | mask.lo;
}

static int compare_prefixes(const void *a, const void *b)
{
	const struct prefix *x = a, *y = b;

	if (!equal(x->start, y->start))
		return less(x->start, y->start) ? -1 : 1;
	return (int)x->length - (int)y->length;   /* shorter (outer) first */
}

static void emit(struct family_table *t, struct u128 start, const struct prefix *p)
{
	struct range r = { start, p ? p->asn : 0, p ? p->length : NO_PREFIX };

	if (t->count && equal(t->ranges[t->count - 1].start, start)) {
		t->ranges[t->count - 1] = r;   /* a more specific prefix from the same address */
		return;
	}
	if (t->count && t->ranges[t->count - 1].length == r.length &&
	    t->ranges[t->count - 1].asn == r.asn)
		return;   /* goes on as before */
	t->ranges[t->count++] = r;
}

/* Sorted prefixes → disjoint ranges (at most 2n + 1), with a stack of the
 * prefixes that contain the current address (inner on top). */
static int flatten(struct prefix *prefixes, uint32_t n, struct family_table *t)
{
	struct prefix **stack = malloc((n + 1) * sizeof(*stack));
	uint32_t i, depth = 0;
	struct u128 zero = { 0, 0 };

	t->ranges = malloc((2 * (size_t)n + 1) * sizeof(*t->ranges));
	t->count = 0;
	if (!stack || !t->ranges) {
		free(stack);
		return -1;
	}
	qsort(prefixes, n, sizeof(*prefixes), compare_prefixes);
	emit(t, zero, NULL);
	for (i = 0; i < n; i++) {
		struct prefix *p = &prefixes[i];

		while (depth && less(stack[depth - 1]->end, p->start)) {
			struct u128 after = plus_one(stack[--depth]->end);

			emit(t, after, depth ? stack[depth - 1] : NULL);
		}
		stack[depth++] = p;
		emit(t, p->start, p);
	}
	while (depth) {
		struct prefix *top = stack[--depth];

		if (top->end.hi != ~0ULL || top->end.lo != ~0ULL)
			emit(t, plus_one(top->end), depth ? stack[depth - 1] : NULL);
	}
	free(stack);
	return 0;
}

static int parse_line(char *line, struct prefix *p, int *family, char *error, unsigned long number)
{
	char *slash, *words[2], *end;
	uint8_t address[16];
	unsigned long length, asn;
	int bits;

	words[0] = strtok(line, " \t\r\n");
	words[1] = words[0] ? strtok(NULL, " \t\r\n") : NULL;
	if (!words[0] || words[0][0] == '#')
		return 0;   /* blank or a comment */
	slash = strchr(words[0], '/');
	if (!slash || !words[1])
		goto bad;
	*slash = 0;
	if (inet_pton(AF_INET, words[0], address) == 1) {
		*family = 0;
		bits = 32;
	} else if (inet_pton(AF_INET6, words[0], address) == 1) {
		*family = 1;
		bits = 128;
	} else {
		goto bad;
	}
	errno = 0;
	length = strtoul(slash + 1, &end, 10);
	if (*end || errno || end == slash + 1 || length > (unsigned long)bits)
		goto bad;
	if ((words[1][0] == 'A' || words[1][0] == 'a') && (words[1][1] == 'S' || words[1][1] == 's'))
		words[1] += 2;
	asn = strtoul(words[1], &end, 10);
	if (*end || errno || end == words[1] || asn > 0xFFFFFFFFUL)
		goto bad;
	prefix_range(from_bytes(address, bits / 8), (int)length, bits, &p->start, &p->end);
	p->length = (uint8_t)length;
	p->asn = (uint32_t)asn;
	return 1;
bad:
	snprintf(error, FP_ERROR_SIZE, "line %lu: not 'prefix/length asn'", number);
	return -1;
}

struct fp_prefix_table *fp_prefix_table_load(const char *path, uint32_t max_prefixes, char *error)
{
	FILE *file = fopen(path, "re");
	struct fp_prefix_table *t = NULL;
	struct prefix *lists[2] = { NULL, NULL };
	uint32_t counts[2] = { 0, 0 }, total = 0;
	char line[512];
	unsigned long number = 0;
	int family, f;

	if (!file) {
		snprintf(error, FP_ERROR_SIZE, "cannot open it: %s", strerror(errno));
		return NULL;
	}
	lists[0] = malloc((size_t)max_prefixes * sizeof(struct prefix));
	lists[1] = malloc((size_t)max_prefixes * sizeof(struct prefix));
	t = calloc(1, sizeof(*t));
	if (!lists[0] || !lists[1] || !t) {
		snprintf(error, FP_ERROR_SIZE, "no memory for %u prefixes", max_prefixes);
		goto fail;
	}
	while (fgets(line, sizeof(line), file)) {
		struct prefix p;
		int found;

		number++;
		if (!strchr(line, '\n') && !feof(file)) {
			snprintf(error, FP_ERROR_SIZE, "line %lu: longer than %zu bytes", number,
				 sizeof(line) - 1);
			goto fail;
		}
		found = parse_line(line, &p, &family, error, number);
		if (found < 0)
			goto fail;
		if (!found)
			continue;
		if (total == max_prefixes) {
			snprintf(error, FP_ERROR_SIZE, "more than %u prefixes (line %lu)", max_prefixes,
				 number);
			goto fail;
		}
		lists[family][counts[family]++] = p;
		total++;
	}
	if (ferror(file)) {
		snprintf(error, FP_ERROR_SIZE, "cannot read it: %s", strerror(errno));
		goto fail;
	}
	for (f = 0; f < 2; f++) {
		if (flatten(lists[f], counts[f], &t->family[f]) < 0) {
			snprintf(error, FP_ERROR_SIZE, "no memory for %u prefixes", counts[f]);
			goto fail;
		}
		t->memory_bytes += (2 * (uint64_t)counts[f] + 1) * sizeof(struct range);
	}
	t->prefixes = total;
	free(lists[0]);
	free(lists[1]);
	fclose(file);
	return t;
fail:
	free(lists[0]);
	free(lists[1]);
	fp_prefix_table_free(t);
	fclose(file);
	return NULL;
}

void fp_prefix_table_free(struct fp_prefix_table *t)
{
	if (!t)
		return;
	free(t->family[0].ranges);
	free(t->family[1].ranges);
	free(t);
}

uint32_t fp_prefix_table_prefixes(const struct fp_prefix_table *t)
{
	return t->prefixes;
}

uint64_t fp_prefix_table_memory_bytes(const struct fp_prefix_table *t)
{
	return t->memory_bytes;
}

static const struct range *lookup(const struct fp_prefix_table *t, int ip_version,
				  const uint8_t *address)
{
	const struct family_table *f = &t->family[ip_version == 6];
	struct u128 a = from_bytes(address, ip_version == 6 ? 16 : 4);
	uint32_t low = 0, high = f->count;

	if (!f->count)
		return NULL;
	while (high - low > 1) {   /* the last range starting at or before a */
		uint32_t middle = low + (high - low) / 2;

		if (less(a, f->ranges[middle].start))
			high = middle;
		else
			low = middle;
	}
	return f->ranges[low].length == NO_PREFIX ? NULL : &f->ranges[low];
}

int fp_prefix_lookup(const struct fp_prefix_table *t, int ip_version, const uint8_t *address,
		     uint32_t *asn)
{
	const struct range *r = lookup(t, ip_version, address);

	if (!r)
		return -1;
	*asn = r->asn;
	return r->length;
}

void fp_records_prefixes(const struct fp_prefix_table *t, struct fp_record *records, int count)
{
	int i;

	for (i = 0; i < count; i++) {
		struct fp_record *r = &records[i];
		const struct range *s, *d;

		if (!r->ip_version)   /* a layer-2 flow (l2_flows): no address */
			continue;
		s = lookup(t, r->ip_version, r->src_addr);
		d = lookup(t, r->ip_version, r->dst_addr);

		r->src_as = s ? s->asn : 0;
		r->src_prefix_length = s ? s->length : 0;
		r->dst_as = d ? d->asn : 0;
		r->dst_prefix_length = d ? d->length : 0;
	}
}
