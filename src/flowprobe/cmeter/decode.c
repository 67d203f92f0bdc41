/* Frame decoding.  Each layer checks the captured length before it reads,
 * and the IP length against the frame's length on the wire: link-layer
 * padding is never counted, and an IP length larger than the frame is a
 * malformed packet, not a big one. */
#include "decode.h"
#include "icmp.h"
#include "tunnel.h"

#include <string.h>
#include <pcap/dlt.h>

#define ETHERTYPE_IPV4 0x0800
#define ETHERTYPE_IPV6 0x86dd
#define ETHERTYPE_VLAN 0x8100
#define ETHERTYPE_QINQ 0x88a8
#define ETHERTYPE_QINQ_OLD 0x9100
#define ETHERTYPE_PPPOE_SESSION 0x8864
#define ETHERTYPE_MPLS 0x8847
#define ETHERTYPE_MPLS_MULTICAST 0x8848
#define PPP_IPV4 0x0021
#define PPP_IPV6 0x0057

#define MAX_VLAN_TAGS 4          /* deeper stacks are not real traffic */
#define MAX_IPV6_EXTENSIONS 16   /* bounds the header walk against loops */
#define MAX_MPLS_LABELS 8        /* real stacks are 1 to 3 labels deep */

#define DLT_RAW_OPENBSD 14

struct cursor {
	const uint8_t *data;
	uint32_t captured;  /* bytes readable from data */
	uint32_t wire;      /* bytes the frame had from data on */
	uint8_t tunnels;    /* FP_TUNNELS_*: open tunnels, or meter them as they are */
	uint8_t depth;      /* tunnels opened to get here */
};

static enum decode_result decode_ip(struct cursor *c, struct packet *pkt);
static enum decode_result decode_ethertype(struct cursor *c, uint16_t ethertype,
					   struct packet *pkt);
static enum decode_result decapsulate(struct cursor *c, uint32_t remaining, struct packet *pkt);
static enum decode_result decode_mpls(struct cursor *c, struct packet *pkt);

static inline uint16_t read16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t read32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void skip(struct cursor *c, uint32_t n)
{
	c->data += n;
	c->captured -= n;
	c->wire -= n;
}

int decode_linktype_supported(int linktype)
{
	switch (linktype) {
	case DLT_NULL:
	case DLT_EN10MB:
	case DLT_RAW:
	case DLT_RAW_OPENBSD:
	case DLT_LOOP:
	case DLT_LINUX_SLL:
	case DLT_LINUX_SLL2:
	case DLT_IPV4:
	case DLT_IPV6:
		return 1;
	}
	return 0;
}

/* Transport header of an unfragmented datagram or a first fragment. */
static enum decode_result decode_transport(struct cursor *c, uint32_t remaining_ip,
					   struct packet *pkt)
{
	uint32_t need;

	switch (pkt->protocol) {
	case PROTO_TCP:
		need = 14;  /* ports, sequence, ack, offset, flags */
		break;
	case PROTO_UDP:
	case PROTO_UDPLITE:
	case PROTO_SCTP:
	case PROTO_ESP:
		need = 4;
		break;
	case PROTO_ICMP:
	case PROTO_ICMPV6:
		need = 2;
		break;
	default:
		return DECODE_OK;  /* counted by addresses and protocol alone */
	}
	if (remaining_ip < need)
		return DECODE_MALFORMED;
	if (c->captured < need)
		return DECODE_TRUNCATED;

	switch (pkt->protocol) {
	case PROTO_TCP:
		pkt->tcp_flags = c->data[13];
		/* as they are: only closing connections read them (tcp_end.c) */
		memcpy(pkt->tcp_seq_ack, c->data + 4, 8);
		pkt->tcp_offset = c->data[12];
		pkt->tcp_length = (uint16_t)remaining_ip;  /* GSO's bigger ones: the grace ends them */
		/* fall through */
	case PROTO_UDP:
	case PROTO_UDPLITE:
	case PROTO_SCTP:
		pkt->src_port = read16(c->data);
		pkt->dst_port = read16(c->data + 2);
		break;
	case PROTO_ESP:
		pkt->ipsec_spi = read32(c->data);
		break;
	case PROTO_ICMP:
	case PROTO_ICMPV6:
		/* the NetFlow convention: type and code in the destination port */
		pkt->dst_port = (uint16_t)(c->data[0] << 8 | c->data[1]);
		if (icmp_is_error(pkt->protocol, c->data[0]) && c->captured > 8 && remaining_ip > 8 &&
		    c->captured - 8 <= 0xffff) {
			uint32_t own = c->captured < remaining_ip ? c->captured : remaining_ip;

			pkt->icmp_quote_at = c->captured - 8;
			pkt->icmp_quote_length = (uint16_t)(own - 8 < 0xffff ? own - 8 : 0xffff);
		}
		break;
	}
	return DECODE_OK;
}

/* IPv4 AH sits where the transport header would; step over it. */
static enum decode_result skip_ipv4_ah(struct cursor *c, uint32_t *remaining_ip, struct packet *pkt)
{
	uint32_t length;

	if (*remaining_ip < 8)
		return DECODE_MALFORMED;
	if (c->captured < 8)
		return DECODE_TRUNCATED;
	length = ((uint32_t)c->data[1] + 2) * 4;
	if (length > *remaining_ip)
		return DECODE_MALFORMED;
	if (length > c->captured)
		return DECODE_TRUNCATED;
	pkt->protocol = c->data[0];
	pkt->ipsec_spi = read32(c->data + 4);
	skip(c, length);
	*remaining_ip -= length;
	return DECODE_OK;
}

static enum decode_result decode_ipv4(struct cursor *c, struct packet *pkt)
{
	uint32_t header_length, total_length, remaining;
	uint16_t fragment_field;
	const uint8_t *ip = c->data;
	enum decode_result result;

	if (c->captured < 20)
		return DECODE_TRUNCATED;
	if ((ip[0] >> 4) != 4)
		return DECODE_MALFORMED;
	header_length = (uint32_t)(ip[0] & 0x0f) * 4;
	if (header_length < 20)
		return DECODE_MALFORMED;
	total_length = read16(ip + 2);
	if (total_length == 0)
		total_length = c->wire;  /* TSO / BIG TCP leave it zero: the frame is the datagram */
	if (total_length < header_length || total_length > c->wire)
		return DECODE_MALFORMED;
	if (c->captured < header_length)
		return DECODE_TRUNCATED;

	pkt->ip_version = 4;
	pkt->network_header = ip;
	pkt->network_captured = c->captured;
	pkt->tos = ip[1];
	pkt->protocol = ip[9];
	memcpy(pkt->src, ip + 12, 4);
	memcpy(pkt->dst, ip + 16, 4);
	pkt->ip_length = total_length;

	fragment_field = read16(ip + 6);
	pkt->more_fragments = (fragment_field & 0x2000) != 0;
	pkt->fragment_offset = (uint32_t)(fragment_field & 0x1fff) * 8;
	if (pkt->more_fragments || pkt->fragment_offset) {
		pkt->is_fragment = 1;
		pkt->fragment_id = read16(ip + 4);
		pkt->fragment_payload = total_length - header_length;
		if (pkt->fragment_offset + pkt->fragment_payload > 65535)
			return DECODE_MALFORMED;
		if (pkt->fragment_offset)
			return DECODE_OK;  /* no transport header here */
	}

	skip(c, header_length);
	remaining = total_length - header_length;
	if (pkt->protocol == PROTO_AH) {
		result = skip_ipv4_ah(c, &remaining, pkt);
		if (result != DECODE_OK)
			return result;
	}
	result = decode_transport(c, remaining, pkt);
	if (result != DECODE_OK || !c->tunnels || pkt->is_fragment)
		return result;
	return decapsulate(c, remaining, pkt);
}

static enum decode_result decode_ipv6(struct cursor *c, struct packet *pkt)
{
	const uint8_t *ip = c->data;
	uint32_t payload_length, total_length, offset, length, remaining;
	uint8_t next_header;
	int headers;
	enum decode_result result;

	if (c->captured < 40)
		return DECODE_TRUNCATED;
	if ((ip[0] >> 4) != 6)
		return DECODE_MALFORMED;
	payload_length = read16(ip + 4);
	/* zero means a jumbogram (RFC 2675) or a GSO frame: use the frame */
	total_length = payload_length ? 40 + payload_length : c->wire;
	if (total_length > c->wire || total_length < 40)
		return DECODE_MALFORMED;

	pkt->ip_version = 6;
	pkt->network_header = ip;
	pkt->network_captured = c->captured;
	pkt->tos = (uint8_t)((ip[0] & 0x0f) << 4 | ip[1] >> 4);
	memcpy(pkt->src, ip + 8, 16);
	memcpy(pkt->dst, ip + 24, 16);
	pkt->ip_length = total_length;

	next_header = ip[6];
	offset = 40;
	for (headers = 0;; headers++) {
		if (headers > MAX_IPV6_EXTENSIONS)
			return DECODE_MALFORMED;
		switch (next_header) {
		case 0:   /* hop-by-hop */
		case 43:  /* routing */
		case 60:  /* destination options */
		case 135: /* mobility */
		case 139: /* HIP */
		case 140: /* shim6 */
		case PROTO_AH:
			if (offset + 8 > total_length)
				return DECODE_MALFORMED;
			if (offset + 8 > c->captured)
				return DECODE_TRUNCATED;
			if (next_header == PROTO_AH) {
				length = ((uint32_t)ip[offset + 1] + 2) * 4;
				pkt->ipsec_spi = read32(ip + offset + 4);
			} else {
				length = ((uint32_t)ip[offset + 1] + 1) * 8;
			}
			next_header = ip[offset];
			offset += length;
			continue;
		case 44: { /* fragment */
			uint16_t field;

			if (offset + 8 > total_length)
				return DECODE_MALFORMED;
			if (offset + 8 > c->captured)
				return DECODE_TRUNCATED;
			field = read16(ip + offset + 2);
			next_header = ip[offset];
			pkt->fragment_offset = field & 0xfff8;
			pkt->more_fragments = field & 1;
			offset += 8;
			if (!pkt->fragment_offset && !pkt->more_fragments)
				continue;  /* atomic fragment (RFC 6946): a whole datagram */
			pkt->is_fragment = 1;
			pkt->fragment_id = read32(ip + offset - 4);
			pkt->fragment_payload = total_length - offset;
			pkt->protocol = next_header;
			if (pkt->fragment_offset + pkt->fragment_payload > 65535)
				return DECODE_MALFORMED;
			if (pkt->fragment_offset)
				return DECODE_OK;
			continue;
		}
		default:
			break;
		}
		break;
	}
	if (offset > total_length)
		return DECODE_MALFORMED;
	if (offset > c->captured)
		return DECODE_TRUNCATED;
	pkt->protocol = next_header;
	skip(c, offset);
	remaining = total_length - offset;
	result = decode_transport(c, remaining, pkt);
	if (result != DECODE_OK || !c->tunnels || pkt->is_fragment)
		return result;
	return decapsulate(c, remaining, pkt);
}

static enum decode_result decode_ip(struct cursor *c, struct packet *pkt)
{
	if (c->captured < 1)
		return DECODE_TRUNCATED;
	switch (c->data[0] >> 4) {
	case 4:
		return decode_ipv4(c, pkt);
	case 6:
		return decode_ipv6(c, pkt);
	}
	return DECODE_MALFORMED;
}

/* A frame that is not IP: what layer-2 flows (l2_flow.c) key and count it by
 * (the EtherType, and the bytes behind it, header_length of them read). */
static enum decode_result non_ip(const struct cursor *c, uint16_t ethertype,
				 uint32_t header_length, struct packet *pkt)
{
	pkt->ethertype = ethertype;
	pkt->ip_length = c->wire + header_length;
	return DECODE_NON_IP;
}

/* The ethertype chain shared by Ethernet and Linux cooked captures:
 * VLAN tags (802.1Q, 802.1ad), PPPoE session, then IP. */
static enum decode_result decode_ethertype(struct cursor *c, uint16_t ethertype, struct packet *pkt)
{
	int tags = 0;

	for (;;) {
		switch (ethertype) {
		case ETHERTYPE_IPV4:
		case ETHERTYPE_IPV6:
			return decode_ip(c, pkt);
		case ETHERTYPE_VLAN:
		case ETHERTYPE_QINQ:
		case ETHERTYPE_QINQ_OLD:
			if (++tags > MAX_VLAN_TAGS)
				return DECODE_MALFORMED;
			if (c->captured < 4)
				return DECODE_TRUNCATED;
			if (tags == 1)
				pkt->vlan_id = read16(c->data) & 0x0fff;
			else if (tags == 2)
				pkt->inner_vlan_id = read16(c->data) & 0x0fff;
			ethertype = read16(c->data + 2);
			skip(c, 4);
			continue;
		case ETHERTYPE_PPPOE_SESSION: {
			uint16_t ppp_protocol;

			if (c->captured < 8)
				return DECODE_TRUNCATED;
			if (c->data[0] != 0x11 || c->data[1] != 0)  /* version 1, type 1, session data */
				return DECODE_MALFORMED;
			ppp_protocol = read16(c->data + 6);
			skip(c, 8);
			if (ppp_protocol == PPP_IPV4 || ppp_protocol == PPP_IPV6)
				return decode_ip(c, pkt);
			return non_ip(c, ethertype, 8, pkt);  /* LCP, IPCP, ... */
		}
		case ETHERTYPE_MPLS:
		case ETHERTYPE_MPLS_MULTICAST:
			if (!c->tunnels)
				return non_ip(c, ethertype, 0, pkt);  /* as the label stack's outside */
			c->tunnels = FP_TUNNELS_INNER;  /* its outside is no IP flow: once, inside */
			return decode_mpls(c, pkt);
		default:
			return non_ip(c, ethertype, 0, pkt);
		}
	}
}

/* BSD loopback: a 4-byte address family in the capturing host's byte
 * order (DLT_NULL) or in network order (DLT_LOOP); accept both orders and
 * every system's AF_INET6 value. */
static enum decode_result decode_loopback(struct cursor *c, struct packet *pkt)
{
	uint32_t family;

	if (c->captured < 4)
		return DECODE_TRUNCATED;
	family = read32(c->data);
	if (family > 0xffff)
		family = __builtin_bswap32(family);
	skip(c, 4);
	switch (family) {
	case 2:
	case 10: case 24: case 28: case 30:
		return decode_ip(c, pkt);
	}
	return DECODE_NON_IP;
}

enum decode_result decode_frame(int linktype, const uint8_t *frame, uint32_t captured_length,
				uint32_t wire_length, int tunnels, struct packet *pkt)
{
	struct cursor c = {
		.data = frame,
		.captured = captured_length,
		.wire = wire_length > captured_length ? wire_length : captured_length,
		.tunnels = (uint8_t)tunnels,
	};

	switch (linktype) {
	case DLT_EN10MB:
		if (c.captured < 14)
			return DECODE_TRUNCATED;
		skip(&c, 14);
		memcpy(pkt->link_addresses, frame, 12);   /* for the MAC fields, when kept */
		return decode_ethertype(&c, read16(frame + 12), pkt);
	case DLT_LINUX_SLL:
		if (c.captured < 16)
			return DECODE_TRUNCATED;
		skip(&c, 16);
		return decode_ethertype(&c, read16(frame + 14), pkt);
	case DLT_LINUX_SLL2:
		if (c.captured < 20)
			return DECODE_TRUNCATED;
		skip(&c, 20);
		return decode_ethertype(&c, read16(frame), pkt);
	case DLT_NULL:
	case DLT_LOOP:
		return decode_loopback(&c, pkt);
	case DLT_RAW:
	case DLT_RAW_OPENBSD:
		return decode_ip(&c, pkt);
	case DLT_IPV4:
		if (c.captured && (c.data[0] >> 4) != 4)
			return DECODE_MALFORMED;
		return decode_ip(&c, pkt);
	case DLT_IPV6:
		if (c.captured && (c.data[0] >> 4) != 6)
			return DECODE_MALFORMED;
		return decode_ip(&c, pkt);
	}
	return DECODE_NON_IP;
}

/* PPP inside L2TP: address and control (0xff 0x03) may be left out
 * (RFC 1661 ACFC), the protocol may be one byte (PFC: an odd first byte). */
static enum decode_result decode_ppp(struct cursor *c, struct packet *pkt)
{
	uint16_t protocol;

	if (c->captured >= 2 && c->data[0] == 0xff && c->data[1] == 0x03)
		skip(c, 2);
	if (c->captured < 1)
		return DECODE_TRUNCATED;
	if (c->data[0] & 1) {
		protocol = c->data[0];
		skip(c, 1);
	} else {
		if (c->captured < 2)
			return DECODE_TRUNCATED;
		protocol = read16(c->data);
		skip(c, 2);
	}
	if (protocol == PPP_IPV4 || protocol == PPP_IPV6)
		return decode_ip(c, pkt);
	return DECODE_NON_IP;  /* LCP, IPCP, ... inside the tunnel */
}

/* An MPLS label stack (RFC 3032) with IP under it: the packet is metered as
 * that IP packet, its bottom label naming the segment.  Deeper stacks and
 * pseudowires (Ethernet under the labels) stay uncounted as flows, as MPLS
 * is with tunnels outer. */
static enum decode_result decode_mpls(struct cursor *c, struct packet *pkt)
{
	enum decode_result result;
	uint32_t entry = 0;
	int labels;

	for (labels = 0; labels < MAX_MPLS_LABELS && !(entry & 0x100); labels++) {
		if (c->captured < 4)
			return DECODE_TRUNCATED;
		entry = read32(c->data);
		skip(c, 4);
	}
	if (!(entry & 0x100))
		return DECODE_NON_IP;
	if (c->captured < 1)
		return DECODE_TRUNCATED;
	if ((c->data[0] >> 4) != 4 && (c->data[0] >> 4) != 6)
		return DECODE_NON_IP;
	result = decode_ip(c, pkt);
	if (result != DECODE_OK)
		return result;
	if (!(pkt->segment_id & SEGMENT_ID_MASK) && (!pkt->segment_id || (entry >> 12)))
		pkt->segment_id = SEGMENT_ID(SEGMENT_MPLS, entry >> 12);
	if (!pkt->tunnel_outcome)
		pkt->tunnel_outcome = TUNNEL_INNER;
	return DECODE_OK;
}

/* The transport header was a tunnel's: the packet is metered as what it
 * carries, keyed by the tunnel's segment too.  When the inside cannot be
 * read (cut by the snap length, not IP, malformed) or nests too deep, the
 * packet is metered at the level above and the outcome says why: a tunnel
 * never makes a packet vanish. */
static enum decode_result decapsulate(struct cursor *c, uint32_t remaining, struct packet *pkt)
{
	uint32_t captured = c->captured < remaining ? c->captured : remaining;
	struct tunnel_header h = {0, 0, 0};
	enum tunnel_found found;
	enum decode_result result;
	struct packet inner;
	struct cursor in;

	if (pkt->protocol == PROTO_UDP)
		found = tunnel_by_udp_port(pkt->src_port, pkt->dst_port, c->data, captured,
					   remaining, &h);
	else
		found = tunnel_by_protocol(pkt->protocol, c->data, captured, remaining, &h);
	if (found == TUNNEL_NO)
		return DECODE_OK;
	if (found == TUNNEL_CUT) {
		pkt->tunnel_outcome = TUNNEL_UNDECODED;
		return DECODE_OK;
	}
	if (c->depth == TUNNEL_MAX_DEPTH) {
		pkt->tunnel_outcome = TUNNEL_TOO_DEEP;
		return DECODE_OK;
	}
	in = (struct cursor){ c->data + h.length, captured - h.length, remaining - h.length,
			      FP_TUNNELS_INNER, (uint8_t)(c->depth + 1) };  /* one outer view: the outermost */
	memset(&inner, 0, sizeof(inner));
	switch (h.payload) {
	case TUNNEL_PAYLOAD_ETHERNET:
		if (in.captured < 14) {
			result = DECODE_TRUNCATED;
			break;
		}
		skip(&in, 14);
		result = decode_ethertype(&in, read16(in.data - 2), &inner);
		break;
	case TUNNEL_PAYLOAD_PPP:
		result = decode_ppp(&in, &inner);
		break;
	case TUNNEL_PAYLOAD_MPLS:
		result = decode_mpls(&in, &inner);
		break;
	default:
		result = decode_ip(&in, &inner);
		break;
	}
	if (result != DECODE_OK) {
		pkt->tunnel_outcome = TUNNEL_UNDECODED;
		return DECODE_OK;
	}
	/* the innermost tunnel with an identifier names the segment */
	if (!(inner.segment_id & SEGMENT_ID_MASK) &&
	    (!inner.segment_id || (h.segment_id & SEGMENT_ID_MASK)))
		inner.segment_id = h.segment_id;
	if (!inner.tunnel_outcome)
		inner.tunnel_outcome = TUNNEL_INNER;
	/* VLAN tags and MACs are the capture's: where the tunnel was seen */
	inner.vlan_id = pkt->vlan_id;
	inner.inner_vlan_id = pkt->inner_vlan_id;
	memcpy(inner.link_addresses, pkt->link_addresses, sizeof(inner.link_addresses));
	if (c->tunnels == FP_TUNNELS_BOTH) {  /* the tunnel's packet, as outer meters it */
		pkt[1] = *pkt;
		inner.tunnel_outer_too = 1;
	}
	*pkt = inner;
	return DECODE_OK;
}
