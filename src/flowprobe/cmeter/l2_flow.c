/* Layer-2 flows: the key of a non-IP Ethernet frame, and the record made of
 * it (the encoding is l2_flow.h's). */
#include "l2_flow.h"
#include "tunnel.h"

#include <string.h>

#define ETHERTYPE_MIN 0x0600   /* below: an IEEE 802.3 length field (LLC follows) */

static inline uint16_t read16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static const uint8_t no_addresses[12];

int layer2_key(struct packet *p)
{
	const uint8_t *dst = p->link_addresses, *src = p->link_addresses + 6;

	if (!memcmp(p->link_addresses, no_addresses, sizeof(no_addresses)))
		return 0;   /* a link type without MACs (cooked captures, loopback) */
	memcpy(p->src, src, 4);
	memcpy(p->dst, dst, 4);
	p->src_port = read16(src + 4);
	p->dst_port = read16(dst + 4);
	p->segment_id = SEGMENT_ID(SEGMENT_LAYER2, p->ethertype < ETHERTYPE_MIN ? 0 : p->ethertype);
	return 1;
}

void layer2_record(struct fp_record *r)
{
	uint8_t src[6], dst[6];

	memcpy(src, r->src_addr, 4);
	src[4] = (uint8_t)(r->src_port >> 8);
	src[5] = (uint8_t)r->src_port;
	memcpy(dst, r->dst_addr, 4);
	dst[4] = (uint8_t)(r->dst_port >> 8);
	dst[5] = (uint8_t)r->dst_port;
	r->ethernet_type = (uint16_t)r->layer2_segment_id;
	r->layer2_segment_id = 0;
	r->ip_version = 0;
	r->protocol = 0;
	r->tos = 0;
	r->src_port = r->dst_port = 0;
	memset(r->src_addr, 0, sizeof(r->src_addr));
	memset(r->dst_addr, 0, sizeof(r->dst_addr));
	memcpy(r->src_mac, src, 6);
	memcpy(r->dst_mac, dst, 6);
	if (r->reverse_packets) {   /* a biflow's reverse: the same two stations, turned round */
		memcpy(r->reverse_src_mac, dst, 6);
		memcpy(r->reverse_dst_mac, src, 6);
	}
}
