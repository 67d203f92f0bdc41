/* Printing for the replay driver (see replay_print.h). */
#include "replay_print.h"

#include <stdlib.h>
#include <string.h>

#define JSON_BYTES_PER_RECORD 800  /* fp_records_format_json's stated need */

static void print_hex(FILE *out, const char *label, const uint8_t *bytes, int length)
{
	static const char digits[] = "0123456789abcdef";
	int i;

	fputs(label, out);
	for (i = 0; i < length; i++) {
		fputc(digits[bytes[i] >> 4], out);
		fputc(digits[bytes[i] & 15], out);
	}
	fputc('\n', out);
}

/* Every field the packer knows (each code it gives a length), in code
 * order: a byte-order slip in any one of them changes this line, and a
 * code added to the core is covered without a change here. */
static void print_packed(FILE *out, const struct fp_record *records, int index, int reverse_view,
			 uint64_t uptime_base_ms)
{
	uint8_t layout[256], packed[4096];
	int code, fields = 0, length;

	for (code = 1; code < 256; code++)
		if (fp_field_length(code) > 0)
			layout[fields++] = (uint8_t)code;
	length = fp_records_pack(records, &index, 1, layout, fields, reverse_view, uptime_base_ms,
				 packed, (int)sizeof(packed));
	if (length < 0) {
		fprintf(out, "pack error\n");
		return;
	}
	print_hex(out, reverse_view ? "pack-reverse " : "pack ", packed, length);
}

/* The encoders' selection: one address family, a collector group's share. */
static void print_selection(FILE *out, const struct fp_record *records, int count)
{
	int indices[REPLAY_BATCH], version, n, i;

	for (version = 4; version <= 6; version += 2) {
		n = fp_records_select(records, count, version, 0, 2, 1, indices);
		fprintf(out, "select v%d stride 2 offset 1:", version);
		for (i = 0; i < n; i++)
			fprintf(out, " %d", indices[i]);
		fputc('\n', out);
	}
}

static void print_records(FILE *out, const char *label, const struct fp_record *records,
			  int count, int bidirectional, uint64_t uptime_base_ms)
{
	static char json[REPLAY_BATCH * JSON_BYTES_PER_RECORD];
	int length = fp_records_format_json(records, count, bidirectional, json, (int)sizeof(json));
	const char *line = json, *end;
	int i;

	if (length < 0) {
		fprintf(out, "json error\n");
		return;
	}
	for (i = 0; i < count; i++) {
		end = memchr(line, '\n', (size_t)(json + length - line));
		if (!end) {
			fprintf(out, "json error: %d lines for %d records\n", i, count);
			return;
		}
		fprintf(out, "%s %.*s\n", label, (int)(end - line), line);
		print_packed(out, records, i, 0, uptime_base_ms);
		if (records[i].reverse_packets)
			print_packed(out, records, i, 1, uptime_base_ms);
		line = end + 1;
	}
	print_selection(out, records, count);
}

static uint64_t uptime_base(struct fp_meter *meter)
{
	struct fp_counters c;

	fp_meter_counters(meter, &c);
	return c.clock_first_ms;  /* NetFlow v9's zero: the capture's first packet */
}

int print_drain(FILE *out, struct fp_meter *meter, int bidirectional, int max)
{
	static struct fp_record records[REPLAY_BATCH];
	int n = fp_meter_drain(meter, records, max < REPLAY_BATCH ? max : REPLAY_BATCH);

	if (n > 0)
		print_records(out, "record", records, n, bidirectional, uptime_base(meter));
	return n;
}

uint64_t print_drain_all(FILE *out, struct fp_meter *meter, int bidirectional)
{
	uint64_t total = 0;
	int n;

	while ((n = print_drain(out, meter, bidirectional, REPLAY_BATCH)) > 0)
		total += (uint64_t)n;
	return total;
}

void print_snapshot(FILE *out, struct fp_meter *meter, const struct fp_flow_filter *filter,
		    int bidirectional, int batch)
{
	static struct fp_record records[REPLAY_BATCH];
	uint32_t cursor = 0;
	int n;

	if (batch > REPLAY_BATCH)
		batch = REPLAY_BATCH;
	fprintf(out, "snapshot\n");
	while ((n = fp_meter_snapshot(meter, filter, records, batch, &cursor)) > 0)
		print_records(out, "flow", records, n, bidirectional, uptime_base(meter));
}

void print_counters(FILE *out, struct fp_meter *meter)
{
	struct fp_counters c;

	fp_meter_counters(meter, &c);
	fprintf(out,
		"counters read=%llu metered=%llu octets=%llu held=%llu truncated=%llu non_ip=%llu "
		"malformed=%llu table_full=%llu backlog=%llu orphaned=%llu created=%llu idle=%llu "
		"active=%llu end=%llu forced=%llu evicted=%llu drained=%llu flows_active=%llu "
		"pending=%llu peak=%llu fragments=%llu datagrams=%llu fragments_evicted=%llu "
		"fragments_timed_out=%llu clock=%llu clock_first=%llu\n",
		(unsigned long long)c.packets_read, (unsigned long long)c.packets_metered,
		(unsigned long long)c.octets_metered, (unsigned long long)c.fragment_packets_held,
		(unsigned long long)c.dropped_truncated, (unsigned long long)c.dropped_non_ip,
		(unsigned long long)c.dropped_malformed, (unsigned long long)c.dropped_flow_table_full,
		(unsigned long long)c.dropped_export_backlog,
		(unsigned long long)c.dropped_fragment_orphaned, (unsigned long long)c.flows_created,
		(unsigned long long)c.flows_expired_idle, (unsigned long long)c.flows_expired_active,
		(unsigned long long)c.flows_expired_end_of_flow,
		(unsigned long long)c.flows_expired_forced, (unsigned long long)c.flows_evicted,
		(unsigned long long)c.records_drained, (unsigned long long)c.flows_active,
		(unsigned long long)c.flows_pending_export, (unsigned long long)c.flows_peak,
		(unsigned long long)c.fragments_tracked, (unsigned long long)c.fragment_datagrams,
		(unsigned long long)c.fragment_entries_evicted,
		(unsigned long long)c.fragment_entries_timed_out, (unsigned long long)c.clock_ms,
		(unsigned long long)c.clock_first_ms);
	fprintf(out, "counters layer2=%llu checksums_verified=%llu checksums_bad=%llu "
		"checksums_unverifiable=%llu\n",
		(unsigned long long)c.layer2_packets, (unsigned long long)c.checksum_packets_verified,
		(unsigned long long)c.checksum_packets_bad,
		(unsigned long long)c.checksum_packets_unverifiable);
}
