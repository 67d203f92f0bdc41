/* Frame decoding: link layer → IP → transport, into a flat packet view.
 * Reads never go past the captured length; every refusal has a reason. */
#ifndef FLOWPROBE_DECODE_H
#define FLOWPROBE_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "../_cmeter.h"

enum decode_result {
	DECODE_OK = 0,
	DECODE_TRUNCATED,
	DECODE_NON_IP,
	DECODE_MALFORMED,
};

struct packet {
	uint8_t src[16], dst[16];  /* IPv4: first 4 bytes, rest zero */
	uint64_t timestamp_ms;
	uint32_t ip_length;        /* octets to count: IP total length */
	uint32_t ipsec_spi;
	uint32_t fragment_id;
	uint32_t fragment_offset;  /* bytes */
	uint32_t fragment_payload; /* bytes of the datagram this fragment carries */
	uint16_t src_port, dst_port;
	uint16_t vlan_id, inner_vlan_id;
	uint8_t source;            /* meter's interface slot */
	uint8_t ip_version;
	uint8_t protocol;
	uint8_t tos;
	uint8_t tcp_flags;
	uint8_t is_fragment;
	uint8_t more_fragments;
	uint8_t bucket_ready;      /* set by the batch stage: bucket holds the flow hash */
	uint32_t bucket;
	uint8_t link_addresses[12]; /* Ethernet: destination, source MAC (as on the wire); else 0 */
	uint64_t segment_id;       /* inner packets: the tunnel's layer2SegmentId (tunnel.h) */
	uint8_t tunnel_outcome;    /* enum tunnel_outcome */
	/* TCP, for tcp_end.c: the header's data offset byte, the segment's
	 * length (header and data), sequence and acknowledgment numbers as on
	 * the wire (tcp_seq(), tcp_ack(), tcp_payload() read them) */
	uint8_t tcp_offset;
	uint16_t tcp_length;
	uint8_t tcp_seq_ack[8];
	/* ICMP errors (icmp_error.c): the quoted packet is the last quote_at
	 * captured bytes of the frame, quote_length of them its own (0: none);
	 * read while the frame is still there, in meter_process */
	uint16_t icmp_quote_length;
	uint16_t icmp_quote_at;
	uint8_t tunnel_outer_too;  /* tunnels both: the tunnel's own packet is in this[1] */
	uint8_t checksum_bad;      /* verify_checksums found one wrong (checksum.c) */
	uint16_t ethertype;        /* DECODE_NON_IP: the EtherType that is not IP (l2_flow.c),
				    * ip_length the bytes from behind it */
	/* not cleared between packets (PACKET_CLEARED_BYTES): decode_ipv4/6 set
	 * them for every IP packet, and only IP packets' are read */
	uint32_t network_captured; /* bytes captured from network_header on */
	const uint8_t *network_header; /* the metered IP header, for checksum.c */
};

#define PACKET_CLEARED_BYTES offsetof(struct packet, network_captured)

static inline uint32_t tcp_seq(const struct packet *p)
{
	return (uint32_t)p->tcp_seq_ack[0] << 24 | (uint32_t)p->tcp_seq_ack[1] << 16 |
	       (uint32_t)p->tcp_seq_ack[2] << 8 | p->tcp_seq_ack[3];
}

static inline uint32_t tcp_ack(const struct packet *p)
{
	return (uint32_t)p->tcp_seq_ack[4] << 24 | (uint32_t)p->tcp_seq_ack[5] << 16 |
	       (uint32_t)p->tcp_seq_ack[6] << 8 | p->tcp_seq_ack[7];
}

/* Data bytes (0 when the header claims more than the segment has). */
static inline uint32_t tcp_payload(const struct packet *p)
{
	uint32_t header = (uint32_t)(p->tcp_offset >> 4) * 4;

	return p->tcp_length > header ? p->tcp_length - header : 0;
}

#define PROTO_ICMP 1
#define PROTO_TCP 6
#define PROTO_UDP 17
#define PROTO_GRE 47
#define PROTO_ESP 50
#define PROTO_AH 51
#define PROTO_ICMPV6 58
#define PROTO_SCTP 132
#define PROTO_UDPLITE 136

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04

int decode_linktype_supported(int linktype);
/* Fills pkt (except timestamp_ms and source) from one captured frame;
 * tunnels (FP_TUNNELS_*) says whether a tunnel's packets are metered as
 * the tunnel or as what they carry, or both (FP_TUNNELS_BOTH: pkt has room
 * for two; when a tunnel was opened, pkt is what it carries and pkt[1] the
 * tunnel's own packet, from the one decode). */
enum decode_result decode_frame(int linktype, const uint8_t *frame, uint32_t captured_length,
				uint32_t wire_length, int tunnels, struct packet *pkt);

#endif
