/* Records as JSON lines, a batch at a time: `flowprobe read --json` can
 * print hundreds of thousands of records, and formatting them one by one in
 * Python would cost more than metering the packets. The keys and their
 * order are those of flowprobe/records.py; addresses are written as glibc's
 * inet_ntop writes them (RFC 5952, with its IPv4-embedded forms), which is
 * what Python's records use. */
#include "../_cmeter.h"
#include "digit_pairs.h"

#include <string.h>

/* the longest line: every number at 20 digits, two IPv6 addresses */
#define RECORD_JSON_MAX 800

#define PUT_LITERAL(out, text) (memcpy((out), (text), sizeof(text) - 1), (out) + sizeof(text) - 1)

static const char *const end_reasons[] = {
	"unknown", "idle_timeout", "active_timeout", "end_of_flow", "forced_end", "lack_of_resources",
};

static const uint8_t end_reason_lengths[] = { 7, 12, 14, 11, 10, 17 };

/* Digits without a call or a loop for the small numbers most fields hold,
 * 32-bit arithmetic for the rest (cheap on a 32-bit router too), and a
 * 13-digit timestamp as its high part and 8 digits. */
static inline unsigned digits32(uint32_t value)
{
	unsigned n = 1;

	while (value >= 10000) {
		value /= 10000;
		n += 4;
	}
	return n + (value >= 10) + (value >= 100) + (value >= 1000);
}

/* the last 2 * pairs digits of value, ending at end; the digits left */
static inline uint32_t put_pairs(char *end, uint32_t value, int pairs)
{
	while (pairs-- > 0) {
		end -= 2;
		memcpy(end, digit_pairs + 2 * (value % 100), 2);
		value /= 100;
	}
	return value;
}

static __attribute__((noinline)) char *put_digits32(char *out, uint32_t value)
{
	unsigned n = digits32(value);

	value = put_pairs(out + n, value, (int)(n / 2));
	if (n & 1)
		*out = (char)('0' + value);
	return out + n;
}

static char *put_number(char *out, uint64_t value);

/* inline: most numbers of a record are below 1000 */
static inline __attribute__((always_inline)) char *put_small(char *out, uint64_t value)
{
	if (value < 10) {
		*out = (char)('0' + value);
		return out + 1;
	}
	if (value < 100) {
		memcpy(out, digit_pairs + 2 * value, 2);
		return out + 2;
	}
	if (value < 1000) {  /* address bytes */
		*out = (char)('0' + value / 100);
		memcpy(out + 1, digit_pairs + 2 * (value % 100), 2);
		return out + 3;
	}
	return put_number(out, value);
}

static char *put_number(char *out, uint64_t value)
{
	if (value <= UINT32_MAX)
		return put_digits32(out, (uint32_t)value);
	out = put_number(out, value / 100000000);
	put_pairs(out + 8, (uint32_t)(value % 100000000), 4);
	return out + 8;
}

/* A record's times share their high digits with the record before: the
 * digits above the last five, formatted once a batch while they stay. */
struct time_prefix {
	uint64_t high;  /* UINT64_MAX: none yet */
	unsigned length;
	char text[24];
};

static char *put_time(char *out, uint64_t value, struct time_prefix *prefix)
{
	uint64_t high = value / 100000;
	uint32_t low;

	if (!high)
		return put_number(out, value);
	if (high != prefix->high) {
		prefix->high = high;
		prefix->length = (unsigned)(put_number(prefix->text, high) - prefix->text);
	}
	memcpy(out, prefix->text, sizeof(prefix->text) - 4);  /* room: RECORD_JSON_MAX */
	out += prefix->length;
	low = (uint32_t)(value - high * 100000);
	*out = (char)('0' + low / 10000);
	put_pairs(out + 5, low % 10000, 2);
	return out + 5;
}

static char *put_hex16(char *out, unsigned value)
{
	static const char hex[] = "0123456789abcdef";
	int shift = 12;

	while (shift > 0 && !(value >> shift))
		shift -= 4;
	for (; shift >= 0; shift -= 4)
		*out++ = hex[(value >> shift) & 0xf];
	return out;
}

static char *put_ipv4(char *out, const uint8_t *address)
{
	out = put_small(out, address[0]);
	for (int i = 1; i < 4; i++) {
		*out++ = '.';
		out = put_small(out, address[i]);
	}
	return out;
}

/* RFC 5952: the first longest run of two or more zero groups becomes "::" */
static char *put_ipv6(char *out, const uint8_t *address)
{
	unsigned words[8];
	int best = -1, best_length = 0, run = -1, run_length = 0, i;

	for (i = 0; i < 8; i++) {
		words[i] = (unsigned)address[2 * i] << 8 | address[2 * i + 1];
		if (words[i] == 0) {
			if (run < 0)
				run = i, run_length = 0;
			if (++run_length > best_length)
				best = run, best_length = run_length;
		} else {
			run = -1;
		}
	}
	if (best_length < 2)
		best = -1;

	for (i = 0; i < 8; i++) {
		if (best >= 0 && i >= best && i < best + best_length) {
			if (i == best)
				*out++ = ':';
			continue;
		}
		if (i)
			*out++ = ':';
		/* IPv4-compatible and IPv4-mapped addresses end in dotted form */
		if (i == 6 && best == 0 && (best_length == 6 || (best_length == 5 && words[5] == 0xffff)))
			return put_ipv4(out, address + 12);
		out = put_hex16(out, words[i]);
	}
	if (best >= 0 && best + best_length == 8)
		*out++ = ':';
	return out;
}

/* aa:bb:cc:dd:ee:ff */
static char *put_mac(char *out, const uint8_t *mac)
{
	static const char hex[] = "0123456789abcdef";
	int i;

	for (i = 0; i < 6; i++) {
		if (i)
			*out++ = ':';
		*out++ = hex[mac[i] >> 4];
		*out++ = hex[mac[i] & 15];
	}
	return out;
}

static char *put_address(char *out, const struct fp_record *r, const uint8_t *address)
{
	if (r->ip_version == 4)
		return put_ipv4(out, address);
	if (r->ip_version == 6)
		return put_ipv6(out, address);
	return out;   /* a layer-2 flow: none */
}

static char *format_record(char *out, const struct fp_record *r, int bidirectional,
			   struct time_prefix *prefix)
{
	unsigned reason = r->end_reason <= FP_END_LACK_OF_RESOURCES ? r->end_reason : 0;

	out = put_small(PUT_LITERAL(out, "{\"ip_version\": "), r->ip_version);
	out = put_small(PUT_LITERAL(out, ", \"protocol\": "), r->protocol);
	out = PUT_LITERAL(out, ", \"src_addr\": \"");
	out = put_address(out, r, r->src_addr);
	out = PUT_LITERAL(out, "\", \"dst_addr\": \"");
	out = put_address(out, r, r->dst_addr);
	out = put_small(PUT_LITERAL(out, "\", \"src_port\": "), r->src_port);
	out = put_small(PUT_LITERAL(out, ", \"dst_port\": "), r->dst_port);
	out = put_small(PUT_LITERAL(out, ", \"packets\": "), r->packets);
	out = put_small(PUT_LITERAL(out, ", \"octets\": "), r->octets);
	out = put_time(PUT_LITERAL(out, ", \"flow_start_ms\": "), r->flow_start_ms, prefix);
	out = put_time(PUT_LITERAL(out, ", \"flow_end_ms\": "), r->flow_end_ms, prefix);
	out = put_small(PUT_LITERAL(out, ", \"tcp_flags\": "), r->tcp_flags);
	out = put_small(PUT_LITERAL(out, ", \"tos\": "), r->tos);
	out = put_small(PUT_LITERAL(out, ", \"vlan_id\": "), r->vlan_id);
	out = put_small(PUT_LITERAL(out, ", \"inner_vlan_id\": "), r->inner_vlan_id);
	out = put_small(PUT_LITERAL(out, ", \"ifindex\": "), r->ifindex);
	out = PUT_LITERAL(out, ", \"end_reason\": \"");
	memcpy(out, end_reasons[reason], end_reason_lengths[reason]);
	out += end_reason_lengths[reason];
	*out++ = '"';
	if (r->protocol == 50)
		out = put_small(PUT_LITERAL(out, ", \"ipsec_spi\": "), r->ipsec_spi);
	if (r->direction == FP_DIRECTION_IN)
		out = PUT_LITERAL(out, ", \"direction\": \"in\"");
	else if (r->direction == FP_DIRECTION_OUT)
		out = PUT_LITERAL(out, ", \"direction\": \"out\"");
	if (r->layer2_segment_id)
		out = put_small(PUT_LITERAL(out, ", \"layer2_segment_id\": "), r->layer2_segment_id);
	if (r->icmp_errors) {   /* settings.icmp_errors: errors about this flow */
		out = put_small(PUT_LITERAL(out, ", \"icmp_errors\": "), r->icmp_errors);
		out = put_small(PUT_LITERAL(out, ", \"icmp_error_type\": "), r->icmp_error_type_code >> 8);
		out = put_small(PUT_LITERAL(out, ", \"icmp_error_code\": "), r->icmp_error_type_code & 0xff);
	}
	if (!r->ip_version) {   /* a layer-2 flow (l2_flows) */
		out = put_mac(PUT_LITERAL(out, ", \"src_mac\": \""), r->src_mac);
		out = put_mac(PUT_LITERAL(out, "\", \"dst_mac\": \""), r->dst_mac);
		out = put_small(PUT_LITERAL(out, "\", \"ethernet_type\": "), r->ethernet_type);
	}
	if (r->checksum_errors)
		out = put_small(PUT_LITERAL(out, ", \"checksum_errors\": "), r->checksum_errors);
	if (bidirectional) {
		out = put_small(PUT_LITERAL(out, ", \"reverse_packets\": "), r->reverse_packets);
		out = put_small(PUT_LITERAL(out, ", \"reverse_octets\": "), r->reverse_octets);
		out = put_time(PUT_LITERAL(out, ", \"reverse_start_ms\": "), r->reverse_start_ms,
			       prefix);
		out = put_time(PUT_LITERAL(out, ", \"reverse_end_ms\": "), r->reverse_end_ms, prefix);
		out = put_small(PUT_LITERAL(out, ", \"reverse_tcp_flags\": "), r->reverse_tcp_flags);
	}
	return PUT_LITERAL(out, "}\n");
}

int fp_records_format_json(const struct fp_record *records, int count, int bidirectional,
			   char *out, int size)
{
	struct time_prefix prefix = { UINT64_MAX, 0, "" };
	char *end = out;
	int i;

	for (i = 0; i < count; i++) {
		if (size - (end - out) < RECORD_JSON_MAX)
			return -1;
		end = format_record(end, &records[i], bidirectional, &prefix);
	}
	return (int)(end - out);
}
