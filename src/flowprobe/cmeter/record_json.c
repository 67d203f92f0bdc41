/* Records as JSON lines, a batch at a time: `flowprobe read --json` can
 * print hundreds of thousands of records, and formatting them one by one in
 * Python would cost more than metering the packets. The keys and their
 * order are those of flowprobe/records.py. */
#include "../_cmeter.h"

#include <arpa/inet.h>
#include <string.h>

/* the longest line: every number at 20 digits, two IPv6 addresses */
#define RECORD_JSON_MAX 800

static const char *const end_reasons[] = {
	"unknown", "idle_timeout", "active_timeout", "end_of_flow", "forced_end", "lack_of_resources",
};

static char *put_text(char *out, const char *text)
{
	size_t length = strlen(text);

	memcpy(out, text, length);
	return out + length;
}

static char *put_number(char *out, uint64_t value)
{
	char digits[20];
	int n = 0;

	do {
		digits[n++] = (char)('0' + value % 10);
		value /= 10;
	} while (value);
	while (n)
		*out++ = digits[--n];
	return out;
}

static char *put_field(char *out, const char *key, uint64_t value)
{
	return put_number(put_text(out, key), value);
}

static char *put_address(char *out, const char *key, const uint8_t *address, int ip_version)
{
	char text[INET6_ADDRSTRLEN];
	int i;

	out = put_text(out, key);
	if (ip_version == 4) {  /* glibc's inet_ntop formats IPv4 through sprintf: slow */
		for (i = 0; i < 4; i++) {
			if (i)
				*out++ = '.';
			out = put_number(out, address[i]);
		}
	} else {
		inet_ntop(AF_INET6, address, text, sizeof(text));
		out = put_text(out, text);
	}
	*out++ = '"';
	return out;
}

static char *format_record(char *out, const struct fp_record *r, int bidirectional)
{
	uint8_t reason = r->end_reason <= FP_END_LACK_OF_RESOURCES ? r->end_reason : 0;

	out = put_field(out, "{\"ip_version\": ", r->ip_version);
	out = put_field(out, ", \"protocol\": ", r->protocol);
	out = put_address(out, ", \"src_addr\": \"", r->src_addr, r->ip_version);
	out = put_address(out, ", \"dst_addr\": \"", r->dst_addr, r->ip_version);
	out = put_field(out, ", \"src_port\": ", r->src_port);
	out = put_field(out, ", \"dst_port\": ", r->dst_port);
	out = put_field(out, ", \"packets\": ", r->packets);
	out = put_field(out, ", \"octets\": ", r->octets);
	out = put_field(out, ", \"flow_start_ms\": ", r->flow_start_ms);
	out = put_field(out, ", \"flow_end_ms\": ", r->flow_end_ms);
	out = put_field(out, ", \"tcp_flags\": ", r->tcp_flags);
	out = put_field(out, ", \"tos\": ", r->tos);
	out = put_field(out, ", \"vlan_id\": ", r->vlan_id);
	out = put_field(out, ", \"inner_vlan_id\": ", r->inner_vlan_id);
	out = put_field(out, ", \"ifindex\": ", r->ifindex);
	out = put_text(put_text(out, ", \"end_reason\": \""), end_reasons[reason]);
	*out++ = '"';
	if (r->protocol == 50)
		out = put_field(out, ", \"ipsec_spi\": ", r->ipsec_spi);
	if (bidirectional) {
		out = put_field(out, ", \"reverse_packets\": ", r->reverse_packets);
		out = put_field(out, ", \"reverse_octets\": ", r->reverse_octets);
		out = put_field(out, ", \"reverse_start_ms\": ", r->reverse_start_ms);
		out = put_field(out, ", \"reverse_end_ms\": ", r->reverse_end_ms);
		out = put_field(out, ", \"reverse_tcp_flags\": ", r->reverse_tcp_flags);
	}
	return put_text(out, "}\n");
}

int fp_records_format_json(const struct fp_record *records, int count, int bidirectional,
			   char *out, int size)
{
	char *end = out;
	int i;

	for (i = 0; i < count; i++) {
		if (size - (end - out) < RECORD_JSON_MAX)
			return -1;
		end = format_record(end, &records[i], bidirectional);
	}
	return (int)(end - out);
}
