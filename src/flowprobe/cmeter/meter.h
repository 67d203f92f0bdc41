/* The meter's insides, shared by the API face (_cmeter.c), the packet
 * pipeline (pipeline.c) and the capture sources (capture.c).  Not part of
 * the public API. */
#ifndef FLOWPROBE_METER_H
#define FLOWPROBE_METER_H

#include <pcap/pcap.h>

#include "../_cmeter.h"
#include "decode.h"
#include "flow_table.h"
#include "frag_table.h"
#include "sampling.h"
#include "tunnel.h"
#include "l2_flow.h"
#include "checksum.h"
#include "savefile.h"

/* Interface slots: one per capture source, plus ifindexes seen in frames
 * handed in directly.  A flow stores the slot (8 bits), not the ifindex. */
#define METER_INTERFACE_SLOTS (FP_MAX_SOURCES * 2)

#define SCAN_INTERVAL_MS 1000

/* Decoded packets wait in a small batch so that their flow-table lookups
 * can be prefetched: the table is larger than the caches, and a lookup is
 * otherwise two cache misses in a row. */
#define BATCH_SIZE 32

struct capture_source {
	pcap_t *handle;
	int linktype;
	uint8_t interface_slot;
	uint64_t packets_read;
	uint64_t octets_read;
	char *file_buffer;  /* savefiles: a large stdio buffer, freed after pcap_close */
	uint8_t sampler;    /* its interface's, in fp_meter.samplers */
	struct savefile *savefile;  /* classic pcap files, read by savefile.c; else NULL */
};

struct fp_meter {
	struct fp_settings settings;
	struct flow_table flows;
	struct frag_table fragments;
	struct fp_counters counters;
	uint64_t next_scan_ms;
	struct interface_slot interface_slots[METER_INTERFACE_SLOTS];
	uint16_t interface_slots_used;
	struct capture_source sources[FP_MAX_SOURCES];
	pcap_t *dispatching;  /* the handle to break out of when records pile up */
	struct packet batch[BATCH_SIZE + 1];  /* + a tunnel's own view (tunnels both) */
	int batch_count;
	uint8_t batch_checksum_errors;  /* a packet of the batch has checksum_bad set */
	/* one a sampled interface (ifindex), shared by its handles; every
	 * source has one (1 in 1 unless set) */
	struct sampler samplers[METER_INTERFACE_SLOTS];
	uint16_t samplers_used;
	struct sample_ring samples;  /* sampled headers for sFlow; capacity 0: none kept */
	struct icmp_quote quotes[BATCH_SIZE];  /* the batch's ICMP errors' quotes (icmp_error.h) */
	struct icmp_error_wait waiting_errors[ICMP_ERRORS_WAITING];
	int waiting_errors_used;
};

uint8_t meter_interface_slot(struct fp_meter *m, uint32_t ifindex, uint8_t direction);
/* The per-packet pipeline: decode into the batch (drops counted at once);
 * a full batch goes on to fragments, flow table and clock. */
void meter_process(struct fp_meter *m, int linktype, uint8_t interface_slot,
		   uint64_t timestamp_us, const uint8_t *frame,
		   uint32_t captured_length, uint32_t wire_length);
/* Processes what waits in the batch; every entry point calls it first. */
void meter_process_batch(struct fp_meter *m);
/* Records wait to be drained past this point: a dispatch stops (or does
 * not start) well before the export reserve runs out, so nothing is refused
 * (a batch adds at most two records a packet, BATCH_SIZE + 1 packets). */
static inline int meter_backlogged(const struct fp_meter *m)
{
	return flow_table_pending(&m->flows) >= flow_table_reserve(&m->flows) / 2 ||
	       sample_ring_backlogged(&m->samples);
}
/* The sampler of an interface (made, 1 in 1, on first use). */
uint8_t meter_sampler(struct fp_meter *m, uint32_t ifindex);
/* Where every packet from a source enters: its interface's sampler decides
 * before anything is decoded; a sampled packet's header goes to the ring
 * (when one is kept) and the packet on to the pipeline. */
static inline void meter_offer(struct fp_meter *m, uint8_t sampler, int linktype,
			       uint8_t interface_slot, uint64_t timestamp_us, const uint8_t *frame,
			       uint32_t captured_length, uint32_t wire_length)
{
	struct sampler *s = &m->samplers[sampler];

	if (!sampler_take(s)) {
		m->counters.packets_read++;
		m->counters.packets_skipped_by_sampling++;
		return;
	}
	if (m->samples.capacity)
		sample_ring_put(&m->samples, s, linktype, m->interface_slots[interface_slot].direction,
				timestamp_us, frame, captured_length, wire_length);
	meter_process(m, linktype, interface_slot, timestamp_us, frame, captured_length,
		      wire_length);
}
/* The meter's clock moves on to now_ms; expiry scans every SCAN_INTERVAL_MS. */
void meter_advance_clock(struct fp_meter *m, uint64_t now_ms);
/* What became of a tunnel's packet (enum tunnel_outcome), counted. */
void meter_count_tunnel(struct fp_meter *m, uint8_t outcome);
/* An ICMP error accounted to its own flow: counted there and on the flow
 * its quote names (settings.icmp_errors). */
void meter_join_icmp_error(struct fp_meter *m, const struct packet *p, const struct icmp_quote *q);
/* Errors that waited for their flow: joined if it came; past their time
 * (or all, with settle) counted unmatched. */
void meter_join_waiting_errors(struct fp_meter *m, uint64_t now_ms, int settle);
/* verify_checksums: the verdict on a decoded IP packet, counted. */
void meter_check_checksums(struct fp_meter *m, struct packet *p);
/* Fragments held for a first fragment that never came, counted as dropped. */
void meter_count_orphans(struct fp_meter *m, const struct frag_orphans *orphans);

#endif
