/* libFuzzer target over the metering core: decoder, fragment table, flow
 * table, expiry, draining, snapshots, filters and the record encoders, on a
 * meter with tiny tables so that eviction, refusal, orphaned fragments and
 * the export reserve are reached by short inputs.
 *
 * Input (fuzz/make_corpus.py writes seeds in this format):
 *   4 bytes of settings (see settings_from), then operations until the end.
 *   op 0x00-0x9f  a frame: low nibble picks the link type (LINK_TYPES),
 *                 op >> 4 the ifindex; then dt, wire, length (2 bytes, big
 *                 endian) and that many bytes of frame
 *   op 0xa0-0xaf  the last frame again, count times, byte pos bumped by the
 *                 repetition number: count, pos, dt
 *   op 0xb0-0xb7  fp_meter_expire at the clock plus a step (EXPIRE_STEPS_MS)
 *   op 0xb8-0xbf  drain up to 1 << (op & 7) records, check and encode them
 *   op 0xc0-0xc7  snapshot the table, (op & 7) + 1 records at a time
 *   op 0xc8-0xcf  fp_meter_expire_matching: 8 bytes of filter
 *   op 0xd0-0xd7  fp_meter_update_settings: 4 bytes, as the header
 *   op 0xd8-0xdf  check the counters' running invariant
 *   op 0xe0-0xef  fp_meter_flush (the meter goes on afterwards)
 *   op 0xf0-0xff  drain everything
 * Interfaces 1 and 2 are sampled (rates from the hash seed) into a ring of
 * 4 headers, drained with the records.
 * Finally flush, drain everything and check that every packet read is in a
 * drained record (two, when tunnels both counted it twice), under a
 * dropped_* counter or skipped by sampling.  A violated invariant is a
 * __builtin_trap(), which libFuzzer reports as a crash with its input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_cmeter.h"
#include "corpus_format.h"

#define MAX_DRAIN 128
#define JSON_RECORD_BYTES 800  /* fp_records_format_json's stated need */

#define CHECK(condition) do { if (!(condition)) __builtin_trap(); } while (0)

struct run {
	struct fp_meter *meter;
	struct fp_settings settings;
	uint64_t now_us;
	uint8_t *last_frame;     /* malloc'd to its exact length: ASan sees overreads */
	uint32_t last_length;
	uint32_t last_wire;
	int last_linktype;
	uint32_t last_ifindex;
	uint64_t drained_packets;
	uint64_t drained_octets;
	uint64_t drained_records;
	struct fp_record records[MAX_DRAIN];
	struct fp_sflow_source sflow_sources[2];   /* fewer than the interfaces: some refused */
	int sflow_sources_used;
};

static void process_last(struct run *r)
{
	fp_meter_process_frame(r->meter, r->last_linktype, r->last_ifindex, r->now_us,
			       r->last_frame, r->last_length, r->last_wire);
}

static void op_frame(struct run *r, uint8_t op, struct corpus_input *in)
{
	struct corpus_frame f;

	corpus_take_frame(in, op, &f);
	free(r->last_frame);
	r->last_frame = malloc(f.length ? f.length : 1);
	if (!r->last_frame)
		abort();
	memcpy(r->last_frame, f.bytes, f.length);
	r->last_length = f.length;
	r->last_wire = f.wire;
	r->last_linktype = f.linktype;
	r->last_ifindex = f.ifindex;
	corpus_advance(&r->now_us, f.dt);
	process_last(r);
}

/* Many flows or fragments from one frame: reaches the export reserve (256
 * slots) and the overflow policies without a long input. */
static void op_repeat(struct run *r, struct corpus_input *in)
{
	uint8_t count = corpus_take(in), pos = corpus_take(in), dt = corpus_take(in);
	unsigned i;

	if (!r->last_frame)
		return;
	for (i = 0; i < count + 1u; i++) {
		if (r->last_length)
			r->last_frame[pos % r->last_length] += 1;
		corpus_advance(&r->now_us, dt);
		process_last(r);
	}
}

static void check_records(struct run *r, const struct fp_record *records, int n)
{
	int i;

	for (i = 0; i < n; i++) {
		const struct fp_record *rec = &records[i];

		CHECK(rec->ip_version == 4 || rec->ip_version == 6 ||
		      (rec->ip_version == 0 && r->settings.l2_flows));
		/* a layer-2 flow: MACs and EtherType only, never a segment */
		CHECK(rec->ip_version || (!rec->protocol && !rec->src_port && !rec->dst_port &&
					  !rec->layer2_segment_id));
		CHECK(!rec->checksum_errors || (r->settings.verify_checksums &&
						rec->checksum_errors <= rec->packets + rec->reverse_packets));
		CHECK(rec->end_reason >= FP_END_IDLE_TIMEOUT &&
		      rec->end_reason <= FP_END_LACK_OF_RESOURCES);
		CHECK(rec->packets >= 1);
		CHECK(rec->flow_start_ms <= rec->flow_end_ms);
		CHECK(r->settings.bidirectional || rec->reverse_packets == 0);
		if (rec->reverse_packets)
			CHECK(rec->reverse_start_ms <= rec->reverse_end_ms);
		r->drained_packets += rec->packets + rec->reverse_packets;
		r->drained_octets += rec->octets + rec->reverse_octets;
	}
	r->drained_records += (uint64_t)n;
}

/* Buffers are allocated to the exact size the API asks for, so an encoder
 * writing one byte too many is an ASan report. */
static void encode_records(struct run *r, const struct fp_record *records, int n)
{
	static const uint8_t bad_layout[2] = { FP_FIELD_PROTOCOL, 0 };
	uint8_t layout[FP_FIELD_LAST];
	int indices[MAX_DRAIN], i, record_length = 0, selected, version;
	size_t json_size = (size_t)n * JSON_RECORD_BYTES;
	char *json = malloc(json_size ? json_size : 1);
	uint8_t *packed;
	int written;

	if (!json)
		abort();
	written = fp_records_format_json(records, n, (int)r->settings.bidirectional, json, (int)json_size);
	CHECK(written >= 0 && (size_t)written <= json_size);
	for (i = 0, selected = 0; i < written; i++)
		selected += json[i] == '\n';
	CHECK(selected == n);
	if (n == 1)  /* the bound is per record: only one record pins it */
		CHECK(fp_records_format_json(records, 1, 0, json, JSON_RECORD_BYTES - 1) == -1);
	free(json);

	for (i = 0; i < FP_FIELD_LAST; i++) {
		layout[i] = (uint8_t)(FP_FIELD_SRC_ADDR4 + i);
		CHECK(fp_field_length(layout[i]) > 0);
		record_length += fp_field_length(layout[i]);
	}
	CHECK(fp_field_length(0) == -1 && fp_field_length(FP_FIELD_LAST + 1) == -1);
	packed = malloc((size_t)record_length * (n ? n : 1));
	if (!packed)
		abort();
	for (version = 4; version <= 6; version += 2) {
		int stride = 1 + (int)(r->drained_records % 3);

		selected = fp_records_select(records, n, version, 0, stride, 0, indices);
		CHECK(selected >= 0 && selected <= n);
		written = fp_records_pack(records, indices, selected, layout, FP_FIELD_LAST, 0,
					  r->now_us / 1000 - 5000, packed, record_length * selected);
		CHECK(written == record_length * selected);
		selected = fp_records_select(records, n, version, 1, 1, 0, indices);
		written = fp_records_pack(records, indices, selected, layout, FP_FIELD_LAST, 1,
					  r->now_us / 1000, packed, record_length * selected);
		CHECK(written == record_length * selected);
		if (selected) {
			CHECK(fp_records_pack(records, indices, selected, layout, FP_FIELD_LAST, 0,
					      0, packed, record_length * selected - 1) == -1);
			CHECK(fp_records_pack(records, indices, selected, bad_layout, 2, 0, 0,
					      packed, record_length * selected) == -1);
		}
	}
	free(packed);
}

static int drain(struct run *r, int max)
{
	int n = fp_meter_drain(r->meter, r->records, max);

	CHECK(n >= 0 && n <= max);
	check_records(r, r->records, n);
	encode_records(r, r->records, n);
	return n;
}

/* sFlow flow samples of a drained batch: every sample dealt with, each
 * datagram's worth within its room (the smallest the encoder uses, 216). */
static void pack_samples(struct run *r, const struct fp_packet_sample *samples, int n)
{
	uint8_t *out = malloc(216);
	int consumed, packed, start = 0, length;

	CHECK(out != NULL);
	while (start < n) {
		length = fp_sflow_pack_flow_samples(samples + start, n - start, r->sflow_sources,
						    &r->sflow_sources_used, 2, out, 216, &consumed,
						    &packed);
		CHECK(length >= 0 && length <= 216 && consumed >= 1 && packed <= consumed);
		CHECK((length == 0) == (packed == 0));
		start += consumed;
	}
	free(out);
}

/* Sampled headers: each within its bounds, and every packet a sampler took
 * either drained from the ring or counted as an overflow. */
static void drain_samples(struct run *r)
{
	struct fp_packet_sample samples[8];
	struct fp_sampling_stats stats[FP_MAX_SOURCES * 2];
	struct fp_sample_ring_stats ring;
	uint64_t sampled = 0;
	int i, n;

	while ((n = fp_meter_drain_samples(r->meter, samples, 8)) > 0) {
		for (i = 0; i < n; i++)
			CHECK(samples[i].header_length <= FP_SAMPLE_HEADER_BYTES &&
			      samples[i].sample_pool >= 1 && samples[i].rate >= 1);
		pack_samples(r, samples, n);
	}
	n = fp_meter_sampling_stats(r->meter, stats, FP_MAX_SOURCES * 2);
	for (i = 0; i < n; i++)
		sampled += stats[i].sampled;
	fp_meter_sample_ring_stats(r->meter, &ring);
	CHECK(ring.queued == 0 && ring.taken + ring.overflows == sampled);
	CHECK(ring.drained == ring.taken);
}

static void drain_all(struct run *r)
{
	while (drain(r, MAX_DRAIN) > 0)
		;
	CHECK(fp_meter_pending(r->meter) == 0);
	drain_samples(r);
}

static uint64_t dropped(const struct fp_counters *c)
{
	return c->dropped_truncated + c->dropped_non_ip + c->dropped_malformed +
	       c->dropped_flow_table_full + c->dropped_export_backlog +
	       c->dropped_fragment_orphaned + c->packets_skipped_by_sampling +
	       c->dropped_tcp_after_end;
}

/* Holds at any time: read + counted twice = metered + held + dropped (a
 * packet counted twice, tunnels both, is one opened tunnel's); the tables
 * stay in their bounds; what was drained was metered. */
static void check_counters(struct run *r, struct fp_counters *c)
{
	fp_meter_counters(r->meter, c);
	CHECK(c->packets_read + c->tunnel_packets_counted_twice ==
	      c->packets_metered + c->fragment_packets_held + dropped(c));
	CHECK(r->settings.tunnels == FP_TUNNELS_BOTH || c->tunnel_packets_counted_twice == 0);
	CHECK(c->tunnel_packets_counted_twice <=
	      c->tunnel_packets_inner + c->tunnel_packets_undecoded + c->tunnel_packets_too_deep);
	CHECK(c->flows_active <= r->settings.max_flows);
	CHECK(c->fragments_tracked <= r->settings.max_fragments);
	CHECK(c->records_drained == r->drained_records);
	CHECK(r->drained_packets <= c->packets_metered);
	CHECK(r->drained_octets <= c->octets_metered);
}

static void op_snapshot(struct run *r, int max)
{
	uint32_t cursor = 0;
	uint64_t active = 0;
	struct fp_counters c;
	int n, i;

	while ((n = fp_meter_snapshot(r->meter, NULL, r->records, max, &cursor)) > 0) {
		CHECK(n <= max);
		for (i = 0; i < n; i++) {
			CHECK(r->records[i].end_reason == 0);
			CHECK(r->records[i].packets >= 1);
			CHECK(r->records[i].flow_start_ms <= r->records[i].flow_end_ms);
		}
		encode_records(r, r->records, n);
		active += (uint64_t)n;
	}
	fp_meter_counters(r->meter, &c);
	CHECK(active == c.flows_active);
}

static void op_expire_matching(struct run *r, struct corpus_input *in)
{
	struct fp_flow_filter filter;

	corpus_take_filter(in, &filter);
	CHECK(fp_meter_expire_matching(r->meter, &filter) >= 0);
}

static void op_update_settings(struct run *r, struct corpus_input *in)
{
	struct fp_settings s;
	char error[FP_ERROR_SIZE];
	int result;

	corpus_take_settings(in, &s);
	result = fp_meter_update_settings(r->meter, &s, error);
	if (s.max_flows != r->settings.max_flows || s.max_fragments != r->settings.max_fragments ||
	    s.bidirectional != r->settings.bidirectional || s.tunnels != r->settings.tunnels ||
	    s.icmp_errors != r->settings.icmp_errors ||
	    s.l2_flows != r->settings.l2_flows || s.verify_checksums != r->settings.verify_checksums) {
		CHECK(result == -1);
	} else {
		CHECK(result == 0);
		r->settings = s;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct corpus_input in = { data, size };
	struct run *r;
	struct fp_counters c;
	char error[FP_ERROR_SIZE];
	uint8_t op;

	r = calloc(1, sizeof(*r));
	if (!r)
		abort();
	corpus_take_settings(&in, &r->settings);
	r->meter = fp_meter_new(&r->settings, error);
	CHECK(r->meter != NULL);
	r->now_us = CORPUS_START_US;
	/* interfaces 1 and 2 sampled, 1 in 1..8, by the seed; a tiny header ring */
	CHECK(fp_meter_set_sampling(r->meter, 1, (uint32_t)(r->settings.hash_seed & 7) + 1,
				    FP_SAMPLING_RANDOM, r->settings.hash_seed, error) == 0);
	CHECK(fp_meter_set_sampling(r->meter, 2, (uint32_t)(r->settings.hash_seed >> 3 & 7) + 1,
				    FP_SAMPLING_DETERMINISTIC, 0, error) == 0);
	CHECK(fp_meter_keep_samples(r->meter, 4, error) == 0);

	while (in.size) {
		op = corpus_take(&in);
		if (op < 0xa0)
			op_frame(r, op, &in);
		else if (op < 0xb0)
			op_repeat(r, &in);
		else if (op < 0xb8) {
			int64_t now_ms = (int64_t)(r->now_us / 1000) + CORPUS_EXPIRE_STEPS_MS[op & 7];

			fp_meter_expire(r->meter, now_ms > 0 ? (uint64_t)now_ms : 0);
		} else if (op < 0xc0)
			drain(r, 1 << (op & 7));
		else if (op < 0xc8)
			op_snapshot(r, (op & 7) + 1);
		else if (op < 0xd0)
			op_expire_matching(r, &in);
		else if (op < 0xd8)
			op_update_settings(r, &in);
		else if (op < 0xe0)
			check_counters(r, &c);
		else if (op < 0xf0)
			fp_meter_flush(r->meter);
		else
			drain_all(r);
	}

	fp_meter_flush(r->meter);
	drain_all(r);
	check_counters(r, &c);
	/* the conservation invariant of _cmeter.h */
	CHECK(c.packets_read + c.tunnel_packets_counted_twice == r->drained_packets + dropped(&c));
	CHECK(c.packets_metered == r->drained_packets);
	CHECK(c.octets_metered == r->drained_octets);
	CHECK(c.fragment_packets_held == 0);
	CHECK(c.flows_active == 0 && c.flows_pending_export == 0);

	fp_meter_free(r->meter);
	free(r->last_frame);
	free(r);
	return 0;
}
