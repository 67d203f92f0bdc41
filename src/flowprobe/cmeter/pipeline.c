/* The per-packet pipeline, top-down:
 *
 *   meter_process        one frame from a source (capture.c, or handed in):
 *                        decoded (decode.c) into the batch; what cannot be
 *                        a flow is counted under its reason at once; with
 *                        l2_flows a non-IP frame is keyed as a layer-2 flow
 *                        (l2_flow.c), with verify_checksums an IP packet's
 *                        checksums are judged here (checksum.c), while the
 *                        frame is still readable
 *   meter_process_batch  a full batch: the clock advances (expiry scans),
 *                        fragments are settled (frag_table.c), every packet
 *                        is accounted to its flow (flow_table.c)
 *
 * and the invariant it keeps: every packet read ends in a flow or under a
 * named dropped_* counter (or, for a while, fragment_packets_held); with
 * tunnels both, a tunnel's packet ends in two flows, its tunnel's and its
 * inner one, and tunnel_packets_counted_twice says how often.  Before
 * all this, meter_offer() (meter.h) samples: a packet passed over is read
 * and counted under packets_skipped_by_sampling, never decoded. */
#include "meter.h"

#include <string.h>

static void process_fragment(struct fp_meter *m, struct packet *p);
static inline void advance_clock(struct fp_meter *m, uint64_t now_ms);
static inline int count_account(struct fp_meter *m, enum account_result result,
				uint64_t packets, uint64_t octets);
static void queue_outer_view(struct fp_meter *m, const struct packet *inner);

void meter_process(struct fp_meter *m, int linktype, uint8_t interface_slot,
		   uint64_t timestamp_us, const uint8_t *frame,
		   uint32_t captured_length, uint32_t wire_length)
{
	struct packet *p = &m->batch[m->batch_count];

	m->counters.packets_read++;
	memset(p, 0, PACKET_CLEARED_BYTES);
	switch (decode_frame(linktype, frame, captured_length, wire_length,
			     m->interface_slots[interface_slot].tunnels, p)) {
	case DECODE_OK:
		if (m->settings.verify_checksums)
			meter_check_checksums(m, p);
		break;
	case DECODE_TRUNCATED:
		m->counters.dropped_truncated++;
		return;
	case DECODE_NON_IP:
		if (!m->interface_slots[interface_slot].l2_flows || !layer2_key(p)) {
			m->counters.dropped_non_ip++;
			return;
		}
		m->counters.layer2_packets++;
		break;
	case DECODE_MALFORMED:
		m->counters.dropped_malformed++;
		return;
	}
	p->timestamp_ms = timestamp_us / 1000;
	p->source = interface_slot;
	if (__builtin_expect(p->icmp_quote_length != 0, 0)) {  /* an ICMP error */
		if (m->flows.icmp_errors && p->icmp_quote_at <= captured_length)
			icmp_quote_read(frame + captured_length - p->icmp_quote_at,
					p->icmp_quote_length, &m->quotes[m->batch_count]);
		else
			p->icmp_quote_length = 0;
	}
	if (!p->is_fragment) {  /* a later fragment's ports come from the fragment table */
		p->bucket = flow_table_bucket(&m->flows, p);
		p->bucket_ready = 1;
		flow_table_prefetch_bucket(&m->flows, p->bucket);
	}
	if (p->tunnel_outcome) {
		meter_count_tunnel(m, p->tunnel_outcome);
		if (p->tunnel_outer_too)
			queue_outer_view(m, p);
	}
	if (++m->batch_count >= BATCH_SIZE)
		meter_process_batch(m);
}

/* with_errors: a packet of the batch has a wrong checksum, to be counted on
 * its flow too; made twice, so batches without pay nothing for it */
static inline __attribute__((always_inline)) void account_batch(struct fp_meter *m, int n,
								  int with_errors)
{
	struct flow_table *t = &m->flows;
	int i;

	for (i = 0; i < n; i++) {
		struct packet *p = &m->batch[i];

		advance_clock(m, p->timestamp_ms);
		if (p->is_fragment)
			process_fragment(m, p);
		else if (count_account(m, flow_table_account(t, p, 1, p->ip_length,
								    p->timestamp_ms, p->timestamp_ms),
					 1, p->ip_length) && with_errors && p->checksum_bad)
			flow_table_count_checksum_error(t, p);
		if (p->icmp_quote_length)
			meter_join_icmp_error(m, p, &m->quotes[i]);
	}
}

void meter_process_batch(struct fp_meter *m)
{
	struct flow_table *t = &m->flows;
	int i, n = m->batch_count;

	/* the buckets were prefetched while the batch was decoded */
	for (i = 0; i < n; i++)
		if (m->batch[i].bucket_ready)
			flow_table_prefetch_entry(t, m->batch[i].bucket);
	if (m->batch_checksum_errors) {
		m->batch_checksum_errors = 0;
		account_batch(m, n, 1);
	} else {
		account_batch(m, n, 0);
	}
	m->batch_count = 0;
	if (__builtin_expect(m->waiting_errors_used != 0, 0))
		meter_join_waiting_errors(m, m->counters.clock_ms, 0);

	if (m->dispatching && meter_backlogged(m))
		pcap_breakloop(m->dispatching);
}

uint8_t meter_interface_slot(struct fp_meter *m, uint32_t ifindex, uint8_t direction)
{
	struct interface_slot *slots = m->interface_slots;
	uint8_t slot;

	for (slot = 0; slot < m->interface_slots_used; slot++)
		if (slots[slot].ifindex == ifindex && slots[slot].direction == direction)
			return slot;
	if (m->interface_slots_used == METER_INTERFACE_SLOTS)
		return METER_INTERFACE_SLOTS - 1;  /* shares the last slot rather than fail */
	slots[m->interface_slots_used] = (struct interface_slot){ ifindex, direction,
								  (uint8_t)m->settings.tunnels,
								  (uint8_t)(m->settings.l2_flows != 0) };
	return (uint8_t)m->interface_slots_used++;
}

static void count_refused(struct fp_meter *m, enum account_result result, uint64_t packets)
{
	switch (result) {
	case ACCOUNT_OK:
		break;
	case ACCOUNT_TABLE_FULL:
		m->counters.dropped_flow_table_full += packets;
		break;
	case ACCOUNT_NO_SLOT:
		m->counters.dropped_export_backlog += packets;
		break;
	case ACCOUNT_AFTER_END:
		m->counters.dropped_tcp_after_end += packets;
		break;
	}
}

/* 1 when the packets are in their flow */
static inline int count_account(struct fp_meter *m, enum account_result result,
				uint64_t packets, uint64_t octets)
{
	if (__builtin_expect(result == ACCOUNT_OK, 1)) {
		m->counters.packets_metered += packets;
		m->counters.octets_metered += octets;
		return 1;
	}
	count_refused(m, result, packets);
	return 0;
}

void meter_count_tunnel(struct fp_meter *m, uint8_t outcome)
{
	switch (outcome) {
	case TUNNEL_INNER:
		m->counters.tunnel_packets_inner++;
		break;
	case TUNNEL_UNDECODED:
		m->counters.tunnel_packets_undecoded++;
		break;
	case TUNNEL_TOO_DEEP:
		m->counters.tunnel_packets_too_deep++;
		break;
	}
}

/* tunnels both: decode_frame wrote the tunnel's own packet into the slot
 * after the inner one (the batch has room for it); it joins the batch as
 * a packet of its own, counted as the same packet read twice.  Kept out of
 * line: plain traffic's path stays as short as before. */
static __attribute__((noinline)) void queue_outer_view(struct fp_meter *m,
						       const struct packet *inner)
{
	struct packet *outer = &m->batch[m->batch_count + 1];

	outer->timestamp_ms = inner->timestamp_ms;
	outer->source = inner->source;
	outer->bucket = flow_table_bucket(&m->flows, outer);  /* never a fragment: opened */
	outer->bucket_ready = 1;
	flow_table_prefetch_bucket(&m->flows, outer->bucket);
	m->counters.tunnel_packets_counted_twice++;
	m->batch_count++;
}

void meter_count_orphans(struct fp_meter *m, const struct frag_orphans *orphans)
{
	m->counters.dropped_fragment_orphaned += orphans->packets;
	m->counters.fragment_packets_held -= orphans->packets;
}

static inline void advance_clock(struct fp_meter *m, uint64_t now_ms)
{
	struct frag_orphans orphans = {0, 0};

	if (!m->counters.clock_first_ms || now_ms < m->counters.clock_first_ms)
		m->counters.clock_first_ms = now_ms;
	if (now_ms > m->counters.clock_ms)
		m->counters.clock_ms = now_ms;
	if (m->counters.clock_ms < m->next_scan_ms)
		return;
	m->next_scan_ms = m->counters.clock_ms + SCAN_INTERVAL_MS;
	flow_table_expire(&m->flows, m->counters.clock_ms);
	frag_table_expire(&m->fragments, m->counters.clock_ms, &orphans);
	meter_count_orphans(m, &orphans);
}

/* A fragment: the first brings the ports (and settles what was held for
 * it); later ones take the ports from the table, or wait as counts. */
static void process_fragment(struct fp_meter *m, struct packet *p)
{
	struct frag_orphans orphans = {0, 0};
	uint32_t i = frag_table_get(&m->fragments, p, &orphans);
	struct frag_entry *f = &m->fragments.entries[i];

	meter_count_orphans(m, &orphans);
	if (p->fragment_offset == 0) {
		f->src_port = p->src_port;
		f->dst_port = p->dst_port;
		f->ipsec_spi = p->ipsec_spi;
		f->have_first = 1;
		if (count_account(m, flow_table_account(&m->flows, p, 1, p->ip_length,
							p->timestamp_ms, p->timestamp_ms),
				  1, p->ip_length) && p->checksum_bad)
			flow_table_count_checksum_error(&m->flows, p);
		if (f->held_packets) {
			struct packet held = *p;

			held.tcp_flags = 0;
			count_account(m, flow_table_account(&m->flows, &held, f->held_packets,
							    f->held_octets, f->held_first_ms,
							    f->held_last_ms),
				      f->held_packets, f->held_octets);
			m->counters.fragment_packets_held -= f->held_packets;
			f->held_packets = 0;
			f->held_octets = 0;
		}
	} else if (f->have_first) {
		p->src_port = f->src_port;
		p->dst_port = f->dst_port;
		p->ipsec_spi = f->ipsec_spi;
		if (count_account(m, flow_table_account(&m->flows, p, 1, p->ip_length,
							p->timestamp_ms, p->timestamp_ms),
				  1, p->ip_length) && p->checksum_bad)
			flow_table_count_checksum_error(&m->flows, p);
	} else {
		if (!f->held_packets || p->timestamp_ms < f->held_first_ms)
			f->held_first_ms = p->timestamp_ms;
		if (p->timestamp_ms > f->held_last_ms)
			f->held_last_ms = p->timestamp_ms;
		f->held_packets++;
		f->held_octets += p->ip_length;
		m->counters.fragment_packets_held++;
	}
	frag_table_seen(&m->fragments, i, p);
}

/* for the API face (an expiry asked from outside); the batch inlines it */
void meter_advance_clock(struct fp_meter *m, uint64_t now_ms)
{
	advance_clock(m, now_ms);
}

void meter_check_checksums(struct fp_meter *m, struct packet *p)
{
	switch (checksum_verify(p)) {
	case CHECKSUM_VERIFIED:
		m->counters.checksum_packets_verified++;
		break;
	case CHECKSUM_BAD:
		m->counters.checksum_packets_bad++;
		p->checksum_bad = 1;
		m->batch_checksum_errors = 1;
		break;
	case CHECKSUM_UNVERIFIABLE:
		m->counters.checksum_packets_unverifiable++;
		break;
	case CHECKSUM_NONE:
		break;
	}
}
