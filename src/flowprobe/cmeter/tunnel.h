/* Tunnel headers: which encapsulation an IP payload is, how long its header
 * is, what it carries and which segment (VNI, key, session, TEID) it names.
 * Only the headers themselves; decode.c walks into what they carry. */
#ifndef FLOWPROBE_TUNNEL_H
#define FLOWPROBE_TUNNEL_H

#include <stdint.h>

/* Nesting beyond this is metered at the deepest level allowed (and counted):
 * real stacks go two deep (e.g. IPv6 in GRE in VXLAN is three). */
#define TUNNEL_MAX_DEPTH 4

/* layer2SegmentId (IPFIX IE 351): the top byte names the encapsulation,
 * the rest its identifier.  0x01 VXLAN and 0x02 (NV)GRE are IANA's; the
 * others are flowprobe's own, above what IANA assigns today. */
#define SEGMENT_VXLAN 0x01ULL
#define SEGMENT_GRE 0x02ULL       /* the whole 32-bit key (NVGRE: VSID << 8 | FlowID) */
#define SEGMENT_GENEVE 0x81ULL
#define SEGMENT_L2TP 0x82ULL      /* v2: tunnel id << 16 | session id; v3: session id */
#define SEGMENT_GTPU 0x83ULL      /* TEID */
#define SEGMENT_IP_IN_IP 0x84ULL  /* protocols 4 and 41 (6in4, 6rd): no identifier */
#define SEGMENT_MPLS 0x85ULL      /* the bottom label (a VPN's, under a transport label) */
#define SEGMENT_ID(type, id) ((type) << 56 | (uint64_t)(id))
#define SEGMENT_ID_MASK 0x00ffffffffffffffULL

/* What the IP header says the datagram is; set on struct packet. */
enum tunnel_outcome {
	TUNNEL_NONE = 0,
	TUNNEL_INNER,      /* metered as the innermost packet */
	TUNNEL_UNDECODED,  /* a tunnel whose inside is cut, not IP or malformed: metered outside it */
	TUNNEL_TOO_DEEP,   /* nested beyond TUNNEL_MAX_DEPTH: metered at the deepest level allowed */
};

enum tunnel_payload {
	TUNNEL_PAYLOAD_IP = 1,    /* version from the first nibble */
	TUNNEL_PAYLOAD_ETHERNET,
	TUNNEL_PAYLOAD_PPP,       /* address/control optional, protocol 1 or 2 bytes */
	TUNNEL_PAYLOAD_MPLS,      /* a label stack, then IP */
};

enum tunnel_found {
	TUNNEL_NO = 0,   /* not a tunnel (or one we do not open): meter it as it is */
	TUNNEL_YES,
	TUNNEL_CUT,      /* a tunnel, but its header is not all captured */
};

struct tunnel_header {
	uint32_t length;          /* bytes before the inner packet */
	uint8_t payload;          /* enum tunnel_payload */
	uint64_t segment_id;
};

/* data: the IP payload (transport header on); captured: bytes readable
 * there, within the IP datagram; remaining: the datagram's bytes from there. */
enum tunnel_found tunnel_by_protocol(uint8_t protocol, const uint8_t *data, uint32_t captured,
				     uint32_t remaining, struct tunnel_header *h);
enum tunnel_found tunnel_by_udp_port(uint16_t src_port, uint16_t dst_port, const uint8_t *data,
				     uint32_t captured, uint32_t remaining,
				     struct tunnel_header *h);

#endif
