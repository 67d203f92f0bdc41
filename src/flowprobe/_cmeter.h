/*
 * flowprobe metering core: the public contract.
 *
 * A meter turns packets (from libpcap handles it owns, or frames handed in)
 * into flow records.  Every table is sized once in fp_meter_new() and never
 * grows; every packet read ends in a flow or in a named drop counter.
 *
 * The block between the cffi markers is read verbatim by _build_cmeter.py,
 * so it holds only declarations cffi can parse (no #if, no macros with
 * expressions).
 */
#ifndef FLOWPROBE_CMETER_H
#define FLOWPROBE_CMETER_H

#include <stddef.h>
#include <stdint.h>

/* cffi-begin */

/* flowEndReason values, IANA IPFIX IE 136 */
#define FP_END_IDLE_TIMEOUT 1
#define FP_END_ACTIVE_TIMEOUT 2
#define FP_END_OF_FLOW 3
#define FP_END_FORCED 4
#define FP_END_LACK_OF_RESOURCES 5

#define FP_OVERFLOW_EVICT_OLDEST 0
#define FP_OVERFLOW_REFUSE_NEW 1

/* A capture's direction (pcap_setdirection); records carry it (IPFIX
 * flowDirection: in = ingress, out = egress). */
#define FP_DIRECTION_ANY 0
#define FP_DIRECTION_IN 1
#define FP_DIRECTION_OUT 2

/* What a capture meters of tunnel traffic (GRE, IP in IP, VXLAN, Geneve,
 * L2TPv2, GTP-U): the tunnel's own packets, or the packets inside it, or
 * both (each such packet in two flows: tunnel_packets_counted_twice). */
#define FP_TUNNELS_OUTER 0
#define FP_TUNNELS_INNER 1
#define FP_TUNNELS_BOTH 2

#define FP_MAX_SOURCES 64
#define FP_ERROR_SIZE 256

/* fp_meter_dispatch() results below zero */
#define FP_DISPATCH_ERROR -1

struct fp_settings {
	uint32_t max_flows;             /* active flows; overflow policy beyond */
	uint32_t max_fragments;         /* datagrams tracked in the fragment table */
	uint32_t idle_timeout_ms;
	uint32_t active_timeout_ms;     /* long flows report and go on counting */
	uint32_t unanswered_timeout_ms; /* flows with no reverse traffic (scans, SYN only) */
	uint32_t tcp_end_grace_ms;      /* after FIN both ways or RST */
	uint32_t fragment_timeout_ms;
	uint32_t overflow_policy;       /* FP_OVERFLOW_* */
	uint32_t bidirectional;         /* reverse direction folds into the same entry */
	uint64_t hash_seed;             /* 0: random from the kernel */
	uint32_t macs;                  /* keep each flow's first MACs per direction (a side
					 * table, 12 B a slot, 24 biflow): a collector asks */
	/* FP_TUNNELS_* of frames handed in and of new sources; only a meter
	 * made with INNER or BOTH keys flows by tunnel (8 bytes more per slot) */
	uint32_t tunnels;
	/* count ICMP errors on the flows they quote (cmeter/icmp_error.h): a
	 * side table, 8 bytes a slot */
	uint32_t icmp_errors;
	/* non-IP frames (ARP, LLDP, EAPOL, ...) as layer-2 flows keyed by MACs,
	 * VLANs and EtherType (cmeter/l2_flow.c), for frames handed in and new
	 * sources; needs the 8-byte segment slot that tunnels INNER has too */
	uint32_t l2_flows;
	/* IPv4 header and TCP/UDP/ICMP/ICMPv6 checksums checked (cmeter/checksum.c),
	 * with a count per flow (4 bytes more per flow slot) */
	uint32_t verify_checksums;
	/* IPv6 flows at once (their addresses: a pool of 36 B a flow,
	 * cmeter/flow_addr6.h), at most max_flows; 0: half of max_flows */
	uint32_t max_flows_ipv6;
};

/* One flow record, as drained.  Addresses are in network byte order; an
 * IPv4 address fills the first 4 bytes. */
struct fp_record {
	uint8_t src_addr[16];
	uint8_t dst_addr[16];
	uint64_t packets;
	uint64_t octets;               /* sum of IP total lengths */
	uint64_t flow_start_ms;        /* Unix epoch milliseconds */
	uint64_t flow_end_ms;
	uint64_t reverse_packets;      /* bidirectional mode only */
	uint64_t reverse_octets;
	uint64_t reverse_start_ms;
	uint64_t reverse_end_ms;
	uint32_t ifindex;
	uint32_t ipsec_spi;            /* ESP */
	uint16_t src_port;
	uint16_t dst_port;             /* ICMP: type * 256 + code */
	uint16_t vlan_id;              /* outer tag, 0 if none */
	uint16_t inner_vlan_id;        /* 802.1ad customer tag, 0 if none */
	uint8_t ip_version;
	uint8_t protocol;
	uint8_t tcp_flags;
	uint8_t reverse_tcp_flags;
	uint8_t tos;
	uint8_t end_reason;            /* FP_END_*; 0 in a snapshot of a live flow */
	uint8_t direction;             /* FP_DIRECTION_* of the capture that saw it */
	uint8_t padding;
	/* conntrack source: the original direction after NAT (nat = 1), the
	 * connection's id, mark and zone; all 0 for captured flows */
	uint8_t post_src_addr[16];
	uint8_t post_dst_addr[16];
	uint16_t post_src_port;
	uint16_t post_dst_port;
	uint16_t conntrack_zone;
	uint8_t nat;
	uint8_t padding2;
	uint32_t conntrack_mark;
	uint64_t flow_id;
	/* the enrichment stage (enrich/): where the kernel's FIB sends the flow,
	 * filled after the meter, before the sinks; 0 and zeros when unknown */
	uint32_t egress_ifindex;
	uint8_t next_hop[16];          /* the gateway; zeros: directly connected */
	/* the first frame's MAC addresses, per direction (settings.macs; zeros
	 * without, for link types without them, and for conntrack) */
	uint8_t src_mac[6];
	uint8_t dst_mac[6];
	uint8_t reverse_src_mac[6];
	uint8_t reverse_dst_mac[6];
	/* enrich/ (option prefix_file): the AS and prefix length of each
	 * address's most specific prefix; 0 when none covers it */
	uint32_t src_as;
	uint32_t dst_as;
	uint8_t src_prefix_length;
	uint8_t dst_prefix_length;
	/* enrich/: where the reverse direction left (the way back to the source) */
	uint32_t reverse_egress_ifindex;
	uint8_t reverse_next_hop[16];
	/* inner flows of a tunnel: IPFIX layer2SegmentId, the encapsulation in
	 * the top byte and its VNI, key, session or TEID below (cmeter/tunnel.h) */
	uint64_t layer2_segment_id;
	/* settings.icmp_errors: ICMP errors about this flow (or, on an ICMP
	 * error's own flow, of it) and the latest one's type * 256 + code */
	uint32_t icmp_errors;
	uint16_t icmp_error_type_code;
	/* layer-2 flows (settings.l2_flows): ip_version 0, no addresses or
	 * ports; src_mac/dst_mac and this EtherType (0: an 802.3 length field,
	 * LLC) are the key, octets count whole frames */
	uint16_t ethernet_type;
	uint16_t padding3;
	/* settings.verify_checksums: packets of this flow with a wrong checksum */
	uint32_t checksum_errors;
};

/* Which flows a query or an expiry applies to; zero fields match all. */
struct fp_flow_filter {
	uint8_t ip_version;
	uint8_t prefix_length;         /* the address matches source or destination */
	uint8_t address[16];
	uint8_t protocol;
	uint16_t port;                 /* source or destination */
	uint32_t ifindex;
};

/* Invariant once flushed and drained:
 *   packets_read + tunnel_packets_counted_twice
 *       == packets in records + every dropped_* counter
 *          + packets_skipped_by_sampling.
 * Before that, packets_metered and fragment_packets_held hold the rest.
 * With tunnels both a packet is accounted twice (its tunnel's flow and its
 * inner flow): packets_metered and the flow-table drops count accounts. */
struct fp_counters {
	uint64_t packets_read;
	uint64_t packets_metered;
	uint64_t octets_metered;
	uint64_t fragment_packets_held;   /* gauge: waiting for their first fragment */
	uint64_t dropped_truncated;       /* capture too short for the headers */
	uint64_t dropped_non_ip;          /* ARP, LLDP, other ethertypes (l2_flows: no MACs) */
	uint64_t dropped_malformed;       /* impossible lengths, bad versions, header loops */
	uint64_t dropped_flow_table_full; /* refused by the "refuse" overflow policy */
	uint64_t dropped_export_backlog;  /* no slot: records waiting to be drained */
	uint64_t dropped_fragment_orphaned; /* first fragment never came */
	uint64_t flows_created;
	uint64_t flows_expired_idle;
	uint64_t flows_expired_active;
	uint64_t flows_expired_end_of_flow;
	uint64_t flows_expired_forced;
	uint64_t flows_evicted;           /* lack of resources */
	uint64_t records_drained;
	uint64_t flows_active;            /* gauge */
	uint64_t flows_pending_export;    /* gauge */
	uint64_t flows_peak;
	uint64_t fragments_tracked;       /* gauge */
	uint64_t fragment_datagrams;      /* datagrams seen fragmented */
	uint64_t fragment_entries_evicted;
	uint64_t fragment_entries_timed_out;
	uint64_t clock_ms;                /* the meter's notion of now */
	uint64_t clock_first_ms;          /* the earliest time seen: no record starts before */
	uint64_t packets_skipped_by_sampling; /* read, then passed over by 1-in-N sampling */
	uint64_t tunnel_packets_inner;    /* metered as the packet inside their tunnel(s) */
	uint64_t tunnel_packets_undecoded; /* inside cut short, not IP or malformed: metered outside */
	uint64_t tunnel_packets_too_deep; /* nested too deep: metered at the deepest level allowed */
	/* TCP ends by sequence numbers (cmeter/tcp_end.h) */
	uint64_t tcp_ends_by_fin;         /* connections whose FINs were both acknowledged */
	uint64_t tcp_ends_by_rst;
	uint64_t tcp_end_states_displaced; /* closing when their state made room: the grace ends them */
	uint64_t dropped_tcp_after_end;   /* late segments without data of an ended connection */
	/* ICMP errors (settings.icmp_errors): joined to the flow they quote, or not */
	uint64_t icmp_errors_joined;
	uint64_t icmp_errors_unmatched;   /* no active flow has the quoted key */
	uint64_t icmp_errors_unreadable;  /* quote cut short, malformed, or a later fragment */
	/* the flow table's IPv6 address pool (cmeter/flow_addr6.h) */
	uint64_t ipv6_flows_max;          /* IPv6 flows active at once; the overflow policy beyond */
	uint64_t ipv6_flows_refused;      /* new IPv6 flows refused (in dropped_flow_table_full) */
	uint64_t ipv6_flows_evicted;      /* IPv6 flows ended early for a new one (in flows_evicted) */
	uint64_t tunnel_packets_counted_twice; /* tunnels both: in the tunnel's flow and the inner one */
	uint64_t layer2_packets;          /* non-IP frames metered as layer-2 flows (l2_flows) */
	/* verify_checksums: every IP packet metered ends in one of these, except
	 * IPv6 packets whose protocol carries no checksum (ESP, GRE, ...) */
	uint64_t checksum_packets_verified;     /* every checksum it carries is right */
	uint64_t checksum_packets_bad;          /* at least one checksum is wrong (still metered) */
	uint64_t checksum_packets_unverifiable; /* cut by the snap length, a fragment, left to
						 * the NIC (offload), or UDP without one */
};

struct fp_source_stats {
	uint64_t packets_read;
	uint64_t octets_read;     /* frame lengths on the wire, link header included */
	uint32_t pcap_received;   /* pcap_stats(): kernel counters, live only */
	uint32_t pcap_dropped;
	uint32_t pcap_if_dropped;
	int32_t linktype;
};

struct fp_meter;

/* Returns NULL and writes a reason into error (FP_ERROR_SIZE bytes). */
struct fp_meter *fp_meter_new(const struct fp_settings *settings, char *error);
void fp_meter_free(struct fp_meter *meter);

/* Sources: return a source id >= 0, or -1 with the reason in error. */
int fp_meter_open_offline(struct fp_meter *meter, const char *path, uint32_t ifindex, char *error);
int fp_meter_open_live(struct fp_meter *meter, const char *device, uint32_t ifindex,
		       int direction, int snaplen, int promiscuous, int buffer_bytes,
		       const char *bpf_filter, char *error);
void fp_meter_close_source(struct fp_meter *meter, int source);
/* A new BPF filter on an open live source, swapped in the kernel at once:
 * no packet is lost or seen twice. */
int fp_meter_set_filter(struct fp_meter *meter, int source, const char *bpf_filter, char *error);
/* Compiles a BPF filter for a link type (DLT_*) without a capture: a config
 * is checked before anything switches to it.  0, or -1 with the reason. */
int fp_check_filter(int linktype, int snaplen, const char *bpf_filter, char *error);
/* Moves every capture source of `from` to `to` (which has none), keeping
 * their ids: a meter with new tables goes on reading the same handles. */
int fp_meter_take_sources(struct fp_meter *to, struct fp_meter *from, char *error);
int fp_meter_source_fd(struct fp_meter *meter, int source);  /* for poll(); -1 if none */
/* Before closing a live source: the kernel takes no new packet from now on,
 * while what it took is still delivered (the ring's last, partly filled
 * block after FP_LIVE_BLOCK_TIMEOUT_MS at the latest), so reading on until
 * then loses nothing.  0, or -1 with the reason in error. */
int fp_meter_seal_source(struct fp_meter *meter, int source, char *error);
#define FP_LIVE_BLOCK_TIMEOUT_MS 100
int fp_meter_source_stats(struct fp_meter *meter, int source, struct fp_source_stats *stats);
/* FP_TUNNELS_* for one source's interface (and direction) from now on;
 * -1 for INNER or BOTH on a meter made with tunnels OUTER. */
int fp_meter_set_source_tunnels(struct fp_meter *meter, int source, uint32_t tunnels);
/* Layer-2 flows (1) or not (0) for one source's interface from now on; -1
 * for 1 on a meter not made with l2_flows. */
int fp_meter_set_source_l2_flows(struct fp_meter *meter, int source, uint32_t l2_flows);

/* Reads up to max_packets (<= 0: one buffer) from a source.  Returns the
 * number read; 0 when nothing is waiting (live), at end of file (offline),
 * or while records wait to be drained (drain, then call again);
 * FP_DISPATCH_ERROR with the reason in error.  Returns early, without losing
 * anything, when expired records should be drained first. */
int fp_meter_dispatch(struct fp_meter *meter, int source, int max_packets, char *error);

/* One frame handed in directly (tests, fuzzing, other sources). */
void fp_meter_process_frame(struct fp_meter *meter, int linktype, uint32_t ifindex,
			    uint64_t timestamp_us, const uint8_t *frame,
			    uint32_t captured_length, uint32_t wire_length);
/* The same, as a capture of one direction (FP_DIRECTION_*) would see it. */
void fp_meter_process_frame_from(struct fp_meter *meter, int linktype, uint32_t ifindex,
				 int direction, uint64_t timestamp_us, const uint8_t *frame,
				 uint32_t captured_length, uint32_t wire_length);

/* Moves flows whose time has come to the export queue (idle, unanswered,
 * TCP end grace) and expires stale fragments. */
void fp_meter_expire(struct fp_meter *meter, uint64_t now_ms);
/* Ends every flow (FP_END_FORCED) and settles held fragments: for shutdown. */
void fp_meter_flush(struct fp_meter *meter);
/* Copies up to max queued records out, oldest first, and frees their slots. */
int fp_meter_drain(struct fp_meter *meter, struct fp_record *out, int max);
uint64_t fp_meter_pending(struct fp_meter *meter);

/* The live table without changing it: copies up to max active flows that
 * match filter (NULL: all) from *cursor on (start at 0); returns how many,
 * 0 once the table is done. */
int fp_meter_snapshot(struct fp_meter *meter, const struct fp_flow_filter *filter,
		      struct fp_record *out, int max, uint32_t *cursor);
/* The busiest (or oldest) `limit` active flows that match filter, best
 * first: a bounded selection over the table, never a copy of all of it.
 * *matched gets how many flows matched in all; returns how many are in out. */
#define FP_SORT_OCTETS 0
#define FP_SORT_PACKETS 1
#define FP_SORT_AGE 2
int fp_meter_top(struct fp_meter *meter, const struct fp_flow_filter *filter, int sort,
		 struct fp_record *out, int limit, uint64_t *matched);
/* Ends the matching active flows now (FP_END_FORCED); returns how many. */
int fp_meter_expire_matching(struct fp_meter *meter, const struct fp_flow_filter *filter);
/* New timeouts and overflow policy for a running meter; -1 (and nothing
 * changed) when the settings differ in what needs new tables: capacities,
 * bidirectional. */
int fp_meter_update_settings(struct fp_meter *meter, const struct fp_settings *settings,
			     char *error);

void fp_meter_counters(struct fp_meter *meter, struct fp_counters *counters);
/* Bytes held by the tables, fixed at fp_meter_new(). */
uint64_t fp_meter_memory_bytes(struct fp_meter *meter);
/* Of those, the bytes in memory now: the flow table's pages are written
 * only as flows use them (cmeter/table_memory.h). */
uint64_t fp_meter_resident_bytes(struct fp_meter *meter);
int fp_linktype_supported(int linktype);

/* Export data records: a layout is a list of these codes (cmeter/fields.def);
 * each has a fixed length (fp_field_length) and is written in network byte
 * order.  A length of -1: no such field. */
enum fp_field {
	FP_FIELD_NONE,
#define FIELD(name, length) FP_FIELD_##name,
#include "cmeter/fields.def"
#undef FIELD
	FP_FIELD_END,                     /* one past the highest code */
	FP_FIELD_LAST = FP_FIELD_END - 1
};

int fp_field_length(int field);
/* Indices of the records of one IP version (and, with with_reverse, only
 * those with reverse traffic) among records offset, offset + stride, ...
 * (a collector group's share); returns how many. */
int fp_records_select(const struct fp_record *records, int count, int ip_version, int with_reverse,
		      int stride, int offset, int *indices);
/* Packs records[indices[0..count)] as data records; reverse_view turns a
 * biflow record's reverse direction into a uniflow one; the *_UPTIME fields
 * are milliseconds since uptime_base_ms.  Returns bytes written, or -1 when
 * they do not fit in size or the layout has an unknown code. */
int fp_records_pack(const struct fp_record *records, const int *indices, int count,
		    const uint8_t *layout, int layout_length, int reverse_view,
		    uint64_t uptime_base_ms, uint8_t *out, int size);

/* JSON lines for a batch of records (the keys of flowprobe.records), for
 * `flowprobe read --json`.  Returns the bytes written, or -1 when size is
 * below 800 bytes per record. */
int fp_records_format_json(const struct fp_record *records, int count, int bidirectional,
			   char *out, int size);

/* The process: after opening captures and sockets, become uid/gid with
 * only the capabilities in keep (a mask of 1 << CAP_*) and no_new_privs
 * set.  Returns 0, or -1 with the failed step and errno's text in error. */
int fp_drop_privileges(unsigned int uid, unsigned int gid, uint64_t keep, char *error,
		       size_t error_size);

/* The conntrack metering source (cmeter/conntrack.c): connections from
 * ctnetlink events and dumps, as biflow records with pre- and post-NAT
 * addresses.  Every record carries what the kernel counted since the
 * connection's previous record. */
/* conntrack's timeouts, for flowEnd (the last packet: a connection that
 * timed out was removed this long after it): TCP by state (0 none, 1 SYN
 * sent, 2 SYN received, 3 established, 4 FIN wait, 5 CLOSE wait, 6 last ACK,
 * 7 TIME_WAIT, 8 close, 9 SYN sent 2), then the others. */
#define FP_CT_TCP_STATES 10
#define FP_CT_TIMEOUT_UDP 10
#define FP_CT_TIMEOUT_UDP_STREAM 11
#define FP_CT_TIMEOUT_ICMP 12
#define FP_CT_TIMEOUT_ICMPV6 13
#define FP_CT_TIMEOUT_GENERIC 14
#define FP_CT_TIMEOUTS 16

struct fp_conntrack_settings {
	uint32_t max_connections;      /* tracked at once; beyond: counted, reported at their end */
	uint32_t active_timeout_ms;    /* long connections report deltas (checked at each dump) */
	uint32_t vanish_grace_ms;      /* a connection missing from a dump waits this for DESTROY */
	uint32_t receive_buffer_bytes; /* event socket SO_RCVBUF; 0: the kernel's default */
	uint32_t new_events;           /* NEW events too: start times without the timestamp
					* extension (DESTROY events and dumps carry the rest) */
	uint32_t timeouts_ms[FP_CT_TIMEOUTS];   /* 0: not known (flowEnd is the removal) */
};

struct fp_conntrack_counters {
	uint64_t events_new;
	uint64_t events_destroy;
	uint64_t messages_malformed;
	uint64_t messages_excluded;    /* the probe's own export traffic */
	uint64_t dumps;
	uint64_t dump_entries;
	uint64_t overruns;             /* ENOBUFS: the kernel dropped events for us */
	uint64_t resyncs;              /* dumps after an overrun (the next periodic one) */
	uint64_t overflows;            /* new connections not tracked: table full */
	uint64_t destroys_untracked;   /* ended without being tracked: reported whole */
	uint64_t vanished;             /* gone without DESTROY: last known counters, lackOfResources */
	uint64_t ends_without_traffic; /* ended with nothing since their last record */
	uint64_t ends_before_baseline; /* older than the source, ended before it saw them */
	uint64_t tracked_late;         /* older than the source, first seen by a later dump */
	uint64_t revived;              /* reported vanished, then listed by a dump again */
	uint64_t released_by_resize;   /* a smaller table let them go: reported whole at their end */
	uint64_t listed;               /* gauge: connections the latest dump listed */
	uint64_t open_at_start;        /* listed by the baseline: reported from then on */
	uint64_t open_since_stop;      /* of those, open since before the previous stop */
	uint64_t records_lost;         /* no slot for an ending connection (never while drained) */
	uint64_t records;
	uint64_t records_pending;      /* gauge */
	uint64_t packets;              /* in records, both directions */
	uint64_t octets;
	uint64_t connections;          /* gauge: tracked now */
	uint64_t peak;
	uint64_t capacity;
	uint64_t tombstones;           /* gauge */
	uint64_t memory_bytes;
	uint64_t clock_ms;
	uint64_t destroys_after_vanish; /* a DESTROY with more, after the vanish record: not
					 * reported (a second record would double the connection) */
};

struct fp_conntrack;

/* Opens the event and dump sockets; NULL with the reason in error. */
struct fp_conntrack *fp_conntrack_new(const struct fp_conntrack_settings *settings, char *error);
void fp_conntrack_free(struct fp_conntrack *ct);
int fp_conntrack_fd(struct fp_conntrack *ct);   /* the event socket, for poll() */
/* Reads waiting events (non-blocking); after an overrun, the next dump
 * resyncs.  Returns messages handled, or -1 with the reason in error. */
int fp_conntrack_read(struct fp_conntrack *ct, uint64_t now_ms, char *error);
/* Reads every connection's counters (blocking, a few ms per thousand):
 * active timeouts, missed connections.  0, or -1 with the reason. */
int fp_conntrack_dump(struct fp_conntrack *ct, uint64_t now_ms, char *error);
/* The first dump: connections open now are tracked, and only what they
 * carry from now on is reported.  With stopped_ms (a previous source's
 * stop; 0: unknown), open_since_stop counts those open since before it. */
int fp_conntrack_baseline(struct fp_conntrack *ct, uint64_t now_ms, uint64_t stopped_ms,
			  char *error);
/* Connections missing past the grace leave (lackOfResources). */
void fp_conntrack_expire(struct fp_conntrack *ct, uint64_t now_ms);
/* Ends every tracked connection (forcedEnd): dump first for fresh counters. */
void fp_conntrack_flush(struct fp_conntrack *ct, uint64_t now_ms);
int fp_conntrack_drain(struct fp_conntrack *ct, struct fp_record *out, int max);
uint64_t fp_conntrack_pending(struct fp_conntrack *ct);   /* records waiting to be drained */
/* A one-shot timer (for poll()) the caller uses to read a trickle of events
 * in batches rather than wake for each: hold(ct, ms) clears it and arms it
 * (0: only clears).  0, or -1 with errno. */
int fp_conntrack_timer_fd(struct fp_conntrack *ct);
/* Leaves out connections to address:port (the collectors): 0, or -1 when
 * 32 are already set; protocol -1 clears the list. */
int fp_conntrack_exclude(struct fp_conntrack *ct, int protocol, const uint8_t *address,
			 int address_length, int port);
int fp_conntrack_hold(struct fp_conntrack *ct, uint32_t milliseconds);
void fp_conntrack_counters(struct fp_conntrack *ct, struct fp_conntrack_counters *counters);
/* New settings for an open source: the table is rebuilt for a new capacity
 * with every connection and queued event kept (nothing reported twice or
 * lost).  0, or -1 with the reason (the old settings stay). */
int fp_conntrack_reconfigure(struct fp_conntrack *ct, const struct fp_conntrack_settings *settings,
			     char *error);
/* ctnetlink messages handled as if read from the event socket
 * (FP_CT_REPLAY_EVENTS), or as one whole dump (FP_CT_REPLAY_DUMP), or an
 * overrun (FP_CT_REPLAY_OVERRUN: the kernel dropped events): drives the table
 * through exact sequences, for tests.  Returns messages handled. */
#define FP_CT_REPLAY_EVENTS 0
#define FP_CT_REPLAY_DUMP 1
#define FP_CT_REPLAY_OVERRUN 2
int fp_conntrack_replay(struct fp_conntrack *ct, const uint8_t *messages, int length, int kind,
			uint64_t now_ms);

/* The enrichment stage's route table (cmeter/route_cache.c): the FIB's
 * answers that enrich/routes.py asked over netlink, applied to records in
 * C.  A key: the destination; with by_source (policy rules select by more
 * than the destination) also the source and ingress interface of a
 * captured flow, or the conntrack mark.  Padding zero: keys compare whole. */
struct fp_route_key {
	uint8_t destination[16];
	uint8_t source[16];
	uint32_t ingress;
	uint32_t mark;
	uint8_t family;                /* 4 or 6 */
	uint8_t padding[3];
};

struct fp_route_cache_counters {
	uint64_t entries;              /* gauge: answers of the current generation */
	uint64_t capacity;
	uint64_t evictions;            /* a full bucket gave one up */
	uint64_t changes;              /* route or rule changes: new generations */
	uint64_t hits;                 /* records routed */
	uint64_t hits_previous;        /* of those, ended before a change: the route of then */
	uint64_t routed_after_change;  /* ended before a change, routed by today's answer */
};

struct fp_route_cache;

/* NULL when out of memory.  Capacity: answers kept at least; the table
 * has twice the slots (buckets of 8, a power of two of them), ~72 B each. */
struct fp_route_cache *fp_route_cache_new(uint32_t capacity);
void fp_route_cache_free(struct fp_route_cache *cache);
/* A route or rule changed at changed_ms: new answers from now on; the
 * current ones stay for records of flows that ended before then. */
void fp_route_cache_changed(struct fp_route_cache *cache, uint64_t changed_ms);
/* An answer: the egress ifindex (0: none, local or unroutable) and the
 * gateway (next_hop_length 0: directly connected or none). */
void fp_route_cache_put(struct fp_route_cache *cache, const struct fp_route_key *key,
			uint32_t egress, const uint8_t *next_hop, int next_hop_length);
/* The current answer for key: the next hop's length (0 none), or -1 if unknown. */
int fp_route_cache_get(struct fp_route_cache *cache, const struct fp_route_key *key,
		       uint32_t *egress, uint8_t *next_hop);
/* Source-specific IPv6 routes exist (on: IPv6 keys carry the source, as
 * fp_route_key_of's by_source, whatever fp_records_route is told). */
void fp_route_cache_ipv6_by_source(struct fp_route_cache *cache, int on);
/* The lookup for one direction of a record (reverse: the way back to its
 * source; IPv6 with by_source: from its destination). */
void fp_route_key_of(const struct fp_record *record, int by_source, int reverse,
		     struct fp_route_key *key);
/* Fills egress_ifindex and next_hop (and, for records with reverse
 * traffic, reverse_egress_ifindex and reverse_next_hop) of
 * records[indices[0..count)] (indices NULL: the first count) whose routes
 * are known; the others' indices go to missing, the keys not known to keys
 * (up to 2 a record; *key_count of them).  Returns how many are missing. */
int fp_records_route(struct fp_route_cache *cache, struct fp_record *records, const int *indices,
		     int count, int by_source, int *missing, struct fp_route_key *keys,
		     int *key_count);
void fp_route_cache_counters(struct fp_route_cache *cache,
			     struct fp_route_cache_counters *counters);

/* The FIB's answers asked in C (cmeter/route_lookup.c): RTM_GETROUTE for a
 * batch's unknown keys, many to a datagram, on the caller's non-blocking
 * NETLINK_ROUTE socket (opened, bound and closed by it), answers parsed
 * into a route cache; and the dumps of the policy rules and the IPv6
 * routes (what keys must carry) on the same socket. */
struct fp_route_lookups_counters {
	uint64_t lookups;              /* requests sent */
	uint64_t answers;              /* RTM_NEWROUTE answers */
	uint64_t failures;             /* error answers: no route, martian, rp_filter */
	uint64_t overruns;             /* answers the kernel dropped (ENOBUFS): asked again */
	uint64_t refused;              /* keys not sent: too many in flight, or a full queue */
	uint64_t in_flight;            /* gauge */
};

struct fp_route_lookups;

/* At most max_in_flight (<= 4096) requests unanswered.  NULL when out of memory. */
struct fp_route_lookups *fp_route_lookups_new(int fd, uint32_t max_in_flight);
void fp_route_lookups_free(struct fp_route_lookups *lookups);
/* Asks for the keys that cache does not know and that are not in flight
 * (read: reading the answers into cache after each datagram, as the kernel
 * gives them within the sending call).  Returns how many were sent, or
 * -errno of a socket error. */
int fp_route_lookups_ask(struct fp_route_lookups *lookups, struct fp_route_cache *cache,
			 const struct fp_route_key *keys, int count, int read);
/* The answers waiting now, into cache; returns how many. */
int fp_route_lookups_read(struct fp_route_lookups *lookups, struct fp_route_cache *cache);
/* A route changed: answers to what was asked before are not wanted. */
void fp_route_lookups_forget(struct fp_route_lookups *lookups);
/* Dumps the policy rules, then the IPv6 routes: what lookups must carry
 * (after the dump running, if any).  0, or -errno. */
int fp_route_lookups_ask_rules(struct fp_route_lookups *lookups);
/* Nonzero while a dump is asked and not answered. */
uint32_t fp_route_lookups_rules_sequence(const struct fp_route_lookups *lookups);
/* Once per dump answered: FP_ROUTES_BY_RULES when a rule selects by more
 * than the destination (source, tos, ingress or egress interface, mark,
 * l3mdev), | FP_ROUTES_IPV6_BY_SOURCE when an IPv6 route is
 * source-specific (`from` routes: netifd's); -1 while no new answer. */
#define FP_ROUTES_BY_RULES 1
#define FP_ROUTES_IPV6_BY_SOURCE 2
int fp_route_lookups_rules(struct fp_route_lookups *lookups);
void fp_route_lookups_counters(const struct fp_route_lookups *lookups,
			       struct fp_route_lookups_counters *counters);

/* Networks and AS numbers (cmeter/prefix_table.c): a `prefix asn` file
 * ("192.0.2.0/24 64500", '#' comments, IPv4 and IPv6, "AS64500" too) in a
 * longest-prefix-match table of at most max_prefixes, ~48 B each.  NULL
 * with the reason (a line number) in error: nothing half loaded. */
struct fp_prefix_table;
struct fp_prefix_table *fp_prefix_table_load(const char *path, uint32_t max_prefixes, char *error);
void fp_prefix_table_free(struct fp_prefix_table *table);
uint32_t fp_prefix_table_prefixes(const struct fp_prefix_table *table);
uint64_t fp_prefix_table_memory_bytes(const struct fp_prefix_table *table);
/* The most specific prefix's length (and its AS in asn), or -1. */
int fp_prefix_lookup(const struct fp_prefix_table *table, int ip_version, const uint8_t *address,
		     uint32_t *asn);
/* src_as, dst_as and the prefix lengths of every record. */
void fp_records_prefixes(const struct fp_prefix_table *table, struct fp_record *records,
			 int count);

/* Packet sampling (cmeter/sampling.c), per interface (ifindex): 1 in
 * `rate` packets goes on to decoding, decided before it; the others are
 * only counted (packets_skipped_by_sampling, and the sampler's pool). */
#define FP_SAMPLING_DETERMINISTIC 1   /* every rate-th packet (IPFIX samplingAlgorithm 1) */
#define FP_SAMPLING_RANDOM 2          /* random skips of mean rate, as sFlow asks (2) */
#define FP_SAMPLE_HEADER_BYTES 128

struct fp_sampling_stats {
	uint32_t ifindex;
	uint32_t rate;
	uint32_t algorithm;        /* FP_SAMPLING_* */
	uint32_t padding;
	uint64_t pool;             /* packets seen (sFlow sample_pool) */
	uint64_t sampled;          /* packets taken */
	uint64_t samples_lost;     /* taken, but the header ring was full (sFlow drops) */
};

/* One sampled packet's first bytes, for sFlow's raw packet header record. */
struct fp_packet_sample {
	uint64_t timestamp_us;
	uint64_t sample_pool;      /* the sampler's pool when it took this packet */
	uint32_t ifindex;
	uint32_t frame_length;     /* on the wire */
	uint32_t rate;
	int32_t linktype;          /* DLT_* of the capture */
	uint16_t header_length;    /* bytes in header */
	uint8_t direction;         /* FP_DIRECTION_* of the capture */
	uint8_t padding;
	uint8_t header[FP_SAMPLE_HEADER_BYTES];
};

struct fp_sample_ring_stats {
	uint64_t capacity;
	uint64_t queued;           /* gauge */
	uint64_t taken;            /* samples put in the ring */
	uint64_t overflows;        /* samples lost: the ring was full */
	uint64_t drained;
};

/* 1 in rate (1..16777215) for the interface's packets, from now on; seed
 * (0: random) makes the random algorithm reproducible.  0, or -1 with the
 * reason.  The sampler of frames handed in is the one of their ifindex. */
int fp_meter_set_sampling(struct fp_meter *meter, uint32_t ifindex, uint32_t rate,
			  int algorithm, uint64_t seed, char *error);
/* The samplers in use; returns how many were written (at most max). */
int fp_meter_sampling_stats(struct fp_meter *meter, struct fp_sampling_stats *out, int max);
/* A ring of `capacity` sampled packets' headers (0: none, the default),
 * drained in batches; a full ring counts its overflows.  0, or -1. */
int fp_meter_keep_samples(struct fp_meter *meter, uint32_t capacity, char *error);
int fp_meter_drain_samples(struct fp_meter *meter, struct fp_packet_sample *out, int max);
void fp_meter_sample_ring_stats(struct fp_meter *meter, struct fp_sample_ring_stats *stats);

/* sFlow v5 flow samples (cmeter/sflow_pack.c), XDR, for the sFlow encoder:
 * a raw packet header record each (and the extended switch record when the
 * frame is VLAN tagged).  A data source's state is the encoder's. */
struct fp_sflow_source {
	uint32_t ifindex;
	uint32_t sequence;         /* flow samples sent from it */
	uint32_t drops;            /* packets lost to lack of resources (set by the caller) */
};
/* Packs flow samples of samples[0..count) into out until the next would
 * not fit in size.  sources: the encoder's table (*used of max; a new
 * ifindex is added).  *consumed: samples dealt with (packed, or not
 * encodable: a link type sFlow has no header protocol for, or no room in
 * the table); *packed: samples written.  Returns the bytes written. */
int fp_sflow_pack_flow_samples(const struct fp_packet_sample *samples, int count,
			       struct fp_sflow_source *sources, int *used, int max,
			       uint8_t *out, int size, int *consumed, int *packed);

/* Whole export messages from a batch (cmeter/record_batch.c): the records
 * records[indices[0..count)], per_message at most to a message, packed as
 * fp_records_pack packs them and framed by the protocol's message header
 * and set header (v9: padded to 32 bits), one message after another in
 * out.  Returns how many messages (ends[i]: where message i ends in out,
 * counts[i]: its records; header->sequence is then the next message's),
 * or -1 when out or max_messages is too small or the layout is bad. */
enum { FP_MESSAGE_NETFLOW5 = 5, FP_MESSAGE_NETFLOW9 = 9, FP_MESSAGE_IPFIX = 10 };
struct fp_message_header {
	uint16_t version;          /* FP_MESSAGE_* */
	uint16_t set_id;           /* the template's (IPFIX, v9) */
	uint32_t export_secs;      /* IPFIX export time; v9, v5 unix_secs */
	uint32_t uptime_ms;        /* v9, v5 sysUptime */
	uint32_t domain;           /* IPFIX observation domain, v9 source id, v5 engine id */
	uint32_t sequence;         /* IPFIX, v5: records before; v9: packets before */
	uint16_t sampling;         /* v5's sampling field */
	int per_message;           /* records at most in a message */
};
int fp_records_pack_messages(const struct fp_record *records, const int *indices, int count,
			     const uint8_t *layout, int layout_length, int reverse_view,
			     uint64_t uptime_base_ms, struct fp_message_header *header,
			     uint8_t *out, int size, int *ends, int *counts, int max_messages);
/* How many of records[indices[0..count)] have packets or octets (of the
 * reverse direction, with reverse_view) beyond 32 bits (NetFlow v5). */
int fp_records_over_32_bits(const struct fp_record *records, const int *indices, int count,
			    int reverse_view);

/* sFlow datagrams of flow samples (cmeter/record_batch.c), packed as
 * fp_sflow_pack_flow_samples packs them, each after head (version, agent
 * address, sub-agent id) and the datagram's sequence number (*sequence,
 * advanced), uptime and sample count; max_datagrams of mtu bytes at most in
 * out.  Returns how many datagrams (ends[i], counts[i] as above); *consumed:
 * samples dealt with, *not_encodable: of them, those sFlow cannot carry. */
int fp_sflow_pack_datagrams(const struct fp_packet_sample *samples, int count,
			    struct fp_sflow_source *sources, int *used, int max,
			    const uint8_t *head, int head_length, uint32_t *sequence,
			    uint32_t uptime_ms, int mtu, uint8_t *out, int max_datagrams,
			    int *ends, int *counts, int *consumed, int *not_encodable);

/* The history store's rows (cmeter/history_rows.c): records as one blob of
 * fixed-width fields, those named by fields[] (offset in struct fp_record,
 * kind) in that order: an address as its 16 bytes, an integer as decimal
 * characters, zero-padded to fp_history_field_width(kind) (a uint64 beyond
 * INT64_MAX as the negative number of the same bits).
 * fp_history_row_width: the bytes of a record.  fp_history_rows returns the
 * bytes written, or -1 when size is below count records. */
enum fp_history_kind {
	FP_HISTORY_U8 = 1, FP_HISTORY_U16 = 2, FP_HISTORY_U32 = 4, FP_HISTORY_U64 = 8,
	FP_HISTORY_ADDRESS = 16
};
struct fp_history_field {
	uint16_t offset;
	uint8_t kind;              /* enum fp_history_kind */
};
int fp_history_field_width(int kind);
int fp_history_row_width(const struct fp_history_field *fields, int nfields);
int fp_history_rows(const struct fp_record *records, int count, const struct fp_history_field *fields,
		    int nfields, uint8_t *out, int size);

/* cffi-end */

#endif
