/* Tunnel headers.  Each parser reads only what it has checked is captured;
 * a header that claims more than the datagram holds is not a tunnel (the
 * packet is metered as it is), one cut by the snap length is TUNNEL_CUT. */
#include "tunnel.h"

#define PROTO_IPIP 4
#define PROTO_IPV6_IN_IP 41
#define PROTO_GRE 47

#define ETHERTYPE_IPV4 0x0800
#define ETHERTYPE_IPV6 0x86dd
#define ETHERTYPE_TRANSPARENT_ETHERNET 0x6558  /* RFC 1701: Ethernet over GRE, Geneve */
#define ETHERTYPE_MPLS 0x8847                  /* RFC 4023: MPLS in GRE */

#define UDP_HEADER 8
#define PORT_L2TP 1701
#define PORT_GTPU 2152
#define PORT_VXLAN 4789
#define PORT_GENEVE 6081

#define GRE_CHECKSUM 0x8000
#define GRE_ROUTING 0x4000
#define GRE_KEY 0x2000
#define GRE_SEQUENCE 0x1000
#define GRE_VERSION 0x0007

#define GTPU_G_PDU 0xff
#define GTPU_MAX_EXTENSIONS 8  /* bounds the extension header walk */

static inline uint16_t read16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t read32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* What an EtherType-like protocol field carries, 0 for what we do not open. */
static uint8_t payload_of_ethertype(uint16_t type)
{
	switch (type) {
	case ETHERTYPE_IPV4:
	case ETHERTYPE_IPV6:
		return TUNNEL_PAYLOAD_IP;
	case ETHERTYPE_TRANSPARENT_ETHERNET:
		return TUNNEL_PAYLOAD_ETHERNET;
	case ETHERTYPE_MPLS:
		return TUNNEL_PAYLOAD_MPLS;
	}
	return 0;
}

/* GRE, RFC 2784 with RFC 2890's key and sequence number.  Version 1 (PPTP)
 * and source routing (RFC 1701) are left as GRE flows. */
static enum tunnel_found gre(const uint8_t *d, uint32_t captured, uint32_t remaining,
			     struct tunnel_header *h)
{
	uint16_t flags;
	uint32_t length = 4, key_at = 0;

	if (remaining < 4)
		return TUNNEL_NO;
	if (captured < 4)
		return TUNNEL_CUT;
	flags = read16(d);
	if (flags & (GRE_ROUTING | GRE_VERSION))
		return TUNNEL_NO;
	h->payload = payload_of_ethertype(read16(d + 2));
	if (!h->payload)
		return TUNNEL_NO;
	if (flags & GRE_CHECKSUM)
		length += 4;
	if (flags & GRE_KEY) {
		key_at = length;
		length += 4;
	}
	if (flags & GRE_SEQUENCE)
		length += 4;
	if (length > remaining)
		return TUNNEL_NO;
	if (length > captured)
		return TUNNEL_CUT;
	h->length = length;
	h->segment_id = SEGMENT_ID(SEGMENT_GRE, key_at ? read32(d + key_at) : 0);
	return TUNNEL_YES;
}

enum tunnel_found tunnel_by_protocol(uint8_t protocol, const uint8_t *data, uint32_t captured,
				     uint32_t remaining, struct tunnel_header *h)
{
	switch (protocol) {
	case PROTO_IPIP:
	case PROTO_IPV6_IN_IP:  /* 6in4, 6rd, ISATAP; and IPv6 in IPv6 */
		h->length = 0;
		h->payload = TUNNEL_PAYLOAD_IP;
		h->segment_id = SEGMENT_ID(SEGMENT_IP_IN_IP, 0);
		return TUNNEL_YES;
	case PROTO_GRE:
		return gre(data, captured, remaining, h);
	}
	return TUNNEL_NO;
}

/* VXLAN, RFC 7348: the I flag says the VNI is valid. */
static enum tunnel_found vxlan(const uint8_t *d, uint32_t captured, uint32_t remaining,
			       struct tunnel_header *h)
{
	if (remaining < 8)
		return TUNNEL_NO;
	if (captured < 8)
		return TUNNEL_CUT;
	if (!(d[0] & 0x08))
		return TUNNEL_NO;
	h->length = 8;
	h->payload = TUNNEL_PAYLOAD_ETHERNET;
	h->segment_id = SEGMENT_ID(SEGMENT_VXLAN, read32(d + 4) >> 8);
	return TUNNEL_YES;
}

/* Geneve, RFC 8926: version 0, options of opt_len * 4 bytes. */
static enum tunnel_found geneve(const uint8_t *d, uint32_t captured, uint32_t remaining,
				struct tunnel_header *h)
{
	uint32_t length;

	if (remaining < 8)
		return TUNNEL_NO;
	if (captured < 8)
		return TUNNEL_CUT;
	if (d[0] >> 6)
		return TUNNEL_NO;
	h->payload = payload_of_ethertype(read16(d + 2));
	if (!h->payload)
		return TUNNEL_NO;
	length = 8 + (uint32_t)(d[0] & 0x3f) * 4;
	if (length > remaining)
		return TUNNEL_NO;
	if (length > captured)
		return TUNNEL_CUT;
	h->length = length;
	h->segment_id = SEGMENT_ID(SEGMENT_GENEVE, read32(d + 4) >> 8);
	return TUNNEL_YES;
}

/* L2TPv3 data over UDP, RFC 3931 §4.1.2.1: flags and version, 2 reserved
 * bytes, a session id (0 is control's), then what Linux's l2tp_eth sends
 * (iproute2's `ip l2tp`): no cookie, Ethernet, after RFC 4719's default
 * sublayer when that is 4 zero bytes (unsequenced).  A cookie or a
 * sequenced sublayer is not told from the frame: its inside does not
 * decode, and the packet is metered as the tunnel. */
static enum tunnel_found l2tpv3(const uint8_t *d, uint32_t captured, uint32_t remaining,
				struct tunnel_header *h)
{
	uint32_t session;

	if (remaining < 8)
		return TUNNEL_NO;
	if (captured < 8)
		return TUNNEL_CUT;
	session = read32(d + 4);
	if (!session)
		return TUNNEL_NO;
	h->length = 8;
	if (remaining >= 12 && captured >= 12 && !read32(d + 8))
		h->length = 12;
	h->payload = TUNNEL_PAYLOAD_ETHERNET;
	h->segment_id = SEGMENT_ID(SEGMENT_L2TP, session);
	return TUNNEL_YES;
}

/* L2TPv2 data messages, RFC 2661 §3.1: optional length, sequence numbers
 * and offset; control messages (T set) stay UDP flows.  Version 3 above. */
static enum tunnel_found l2tp(const uint8_t *d, uint32_t captured, uint32_t remaining,
			      struct tunnel_header *h)
{
	uint16_t flags;
	uint32_t length = 2, ids;

	if (remaining < 6)
		return TUNNEL_NO;
	if (captured < 2)
		return TUNNEL_CUT;
	flags = read16(d);
	if ((flags & 0x000f) == 3 && !(flags & 0x8000))
		return l2tpv3(d, captured, remaining, h);
	if ((flags & 0x000f) != 2 || (flags & 0x8000))
		return TUNNEL_NO;
	if (flags & 0x4000)  /* L: length */
		length += 2;
	ids = length;
	length += 4;
	if (flags & 0x0800)  /* S: Ns, Nr */
		length += 4;
	if (flags & 0x0200) {  /* O: offset size, then that much padding */
		if (length + 2 > remaining)
			return TUNNEL_NO;
		if (length + 2 > captured)
			return TUNNEL_CUT;
		length += 2 + read16(d + length);
	}
	if (length > remaining)
		return TUNNEL_NO;
	if (length > captured)
		return TUNNEL_CUT;
	h->length = length;
	h->payload = TUNNEL_PAYLOAD_PPP;
	h->segment_id = SEGMENT_ID(SEGMENT_L2TP, read32(d + ids));
	return TUNNEL_YES;
}

/* GTP-U, 3GPP TS 29.281: version 1, G-PDU; the optional fields come as a
 * block when any of E, S, PN is set, then the extension header chain. */
static enum tunnel_found gtpu(const uint8_t *d, uint32_t captured, uint32_t remaining,
			      struct tunnel_header *h)
{
	uint32_t length = 8;
	uint8_t next;
	int extensions;

	if (remaining < 8)
		return TUNNEL_NO;
	if (captured < 8)
		return TUNNEL_CUT;
	if ((d[0] >> 5) != 1 || !(d[0] & 0x10) || d[1] != GTPU_G_PDU)
		return TUNNEL_NO;
	h->segment_id = SEGMENT_ID(SEGMENT_GTPU, read32(d + 4));
	if (d[0] & 0x07) {
		length += 4;
		if (length > remaining)
			return TUNNEL_NO;
		if (length > captured)
			return TUNNEL_CUT;
		next = (d[0] & 0x04) ? d[length - 1] : 0;
		for (extensions = 0; next; extensions++) {
			uint32_t size;

			if (extensions == GTPU_MAX_EXTENSIONS || length + 1 > remaining)
				return TUNNEL_NO;
			if (length + 1 > captured)
				return TUNNEL_CUT;
			size = (uint32_t)d[length] * 4;
			if (!size || length + size > remaining)
				return TUNNEL_NO;
			if (length + size > captured)
				return TUNNEL_CUT;
			next = d[length + size - 1];
			length += size;
		}
	}
	h->length = length;
	h->payload = TUNNEL_PAYLOAD_IP;
	return TUNNEL_YES;
}

enum tunnel_found tunnel_by_udp_port(uint16_t src_port, uint16_t dst_port, const uint8_t *data,
				     uint32_t captured, uint32_t remaining,
				     struct tunnel_header *h)
{
	enum tunnel_found found;

	if (remaining < UDP_HEADER)
		return TUNNEL_NO;
	if (captured < UDP_HEADER)
		return TUNNEL_CUT;
	data += UDP_HEADER;
	captured -= UDP_HEADER;
	remaining -= UDP_HEADER;
	/* VXLAN and Geneve senders pick the source port from a hash */
	if (dst_port == PORT_VXLAN)
		found = vxlan(data, captured, remaining, h);
	else if (dst_port == PORT_GENEVE)
		found = geneve(data, captured, remaining, h);
	else if (dst_port == PORT_GTPU)
		found = gtpu(data, captured, remaining, h);
	else if (dst_port == PORT_L2TP || src_port == PORT_L2TP)  /* an LNS may answer elsewhere */
		found = l2tp(data, captured, remaining, h);
	else
		return TUNNEL_NO;
	if (found == TUNNEL_YES)
		h->length += UDP_HEADER;
	return found;
}
