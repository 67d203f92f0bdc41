/* Data records for the export encoders: records → fields in network byte
 * order, following a layout (a list of FP_FIELD_* codes) that the Python
 * encoder derived from its template.  Templates, headers and sets stay in
 * Python; this is only the part that runs once per record and field. */
#include "../_cmeter.h"
#include "icmp.h"

#include <string.h>

static inline uint8_t *put8(uint8_t *out, uint64_t value)
{
	*out = (uint8_t)value;
	return out + 1;
}

static inline uint8_t *put16(uint8_t *out, uint64_t value)
{
	out[0] = (uint8_t)(value >> 8);
	out[1] = (uint8_t)value;
	return out + 2;
}

static inline uint8_t *put32(uint8_t *out, uint64_t value)
{
	out[0] = (uint8_t)(value >> 24);
	out[1] = (uint8_t)(value >> 16);
	out[2] = (uint8_t)(value >> 8);
	out[3] = (uint8_t)value;
	return out + 4;
}

static inline uint8_t *put64(uint8_t *out, uint64_t value)
{
	return put32(put32(out, value >> 32), value);
}

static const int8_t field_lengths[FP_FIELD_END] = {
#define FIELD(name, length) [FP_FIELD_##name] = length,
#include "fields.def"
#undef FIELD
};

int fp_field_length(int field)
{
	return field > FP_FIELD_NONE && field < FP_FIELD_END ? field_lengths[field] : -1;
}

/* One direction of a record, as a uniflow record sees it. */
struct view {
	const uint8_t *src, *dst;
	uint16_t src_port, dst_port;
	const uint8_t *post_src, *post_dst;  /* after NAT (conntrack); zeros when unknown */
	uint16_t post_src_port, post_dst_port;
	uint64_t packets, octets, start_ms, end_ms;
	uint8_t tcp_flags;
	uint8_t reverse;   /* the FIB's answer (egress, next hop) is the forward direction's */
};

static const uint8_t no_address[16];

static void view_of(const struct fp_record *r, int reverse, struct view *v)
{
	if (!reverse) {
		*v = (struct view){ r->src_addr, r->dst_addr, r->src_port, r->dst_port,
				    no_address, no_address, 0, 0, r->packets,
				    r->octets, r->flow_start_ms, r->flow_end_ms, r->tcp_flags, 0 };
		if (r->nat) {
			v->post_src = r->post_src_addr;
			v->post_dst = r->post_dst_addr;
			v->post_src_port = r->post_src_port;
			v->post_dst_port = r->post_dst_port;
		}
		return;
	}
	*v = (struct view){ r->dst_addr, r->src_addr, r->dst_port, r->src_port,
			    no_address, no_address, 0, 0, r->reverse_packets,
			    r->reverse_octets, r->reverse_start_ms, r->reverse_end_ms,
			    r->reverse_tcp_flags, 1 };
	if (r->nat) {
		/* replies arrive addressed as the reply tuple (the original
		 * after NAT, turned around) and leave as the original turned around */
		v->src = r->post_dst_addr;
		v->dst = r->post_src_addr;
		v->src_port = r->post_dst_port;
		v->dst_port = r->post_src_port;
		v->post_src = r->dst_addr;
		v->post_dst = r->src_addr;
		v->post_src_port = r->dst_port;
		v->post_dst_port = r->src_port;
	}
	if (r->protocol == 1 || r->protocol == 58) {  /* the reply's type, not the request's */
		int reply = icmp_reply(r->protocol, r->dst_port);

		v->src_port = 0;
		v->dst_port = reply >= 0 ? (uint16_t)reply : r->dst_port;
		if (r->nat) {
			v->post_src_port = 0;
			v->post_dst_port = v->dst_port;
		}
	}
}

/* Where the flow left: the capture's interface for a flow captured going
 * out of it, else the FIB's answer (enrich/; 0 when not asked); the
 * reverse direction's, the FIB's way back to the source. */
static uint32_t egress_of(const struct fp_record *r, const struct view *v)
{
	if (v->reverse)   /* the way back to the source, as the FIB says (0: not asked) */
		return r->reverse_egress_ifindex;
	return r->direction == FP_DIRECTION_OUT ? r->ifindex : r->egress_ifindex;
}

static uint8_t *put_next_hop(uint8_t *out, const struct fp_record *r, const struct view *v,
			     int size)
{
	memcpy(out, v->reverse ? r->reverse_next_hop : r->next_hop, size);
	return out + size;
}

/* A 4-byte AS in a 2-byte field: AS_TRANS (RFC 6793) */
static uint32_t as16(uint32_t as)
{
	return as > 0xFFFF ? 23456 : as;
}

/* NetFlow sysUptime of a time: at least 1 ms, as uptime 0 reads as "no
 * time" to collectors (nfdump shows 1970), and a time before the base
 * (a connection older than the exporter) is not wrapped to 49 days ahead. */
static inline uint64_t uptime_of(uint64_t ms, uint64_t uptime_base_ms)
{
	return ms > uptime_base_ms ? ms - uptime_base_ms : 1;
}

/* A switch on the enum without default: gcc -Wswitch names any field of
 * fields.def that is not packed here (lint builds with -Werror). */
static uint8_t *pack_field(uint8_t *out, enum fp_field field, const struct fp_record *r,
			   const struct view *v, uint64_t uptime_base_ms)
{
	int icmp = r->protocol == 1 || r->protocol == 58;

	switch (field) {
	case FP_FIELD_SRC_ADDR4: memcpy(out, v->src, 4); return out + 4;
	case FP_FIELD_DST_ADDR4: memcpy(out, v->dst, 4); return out + 4;
	case FP_FIELD_SRC_ADDR6: memcpy(out, v->src, 16); return out + 16;
	case FP_FIELD_DST_ADDR6: memcpy(out, v->dst, 16); return out + 16;
	case FP_FIELD_SRC_PORT: return put16(out, v->src_port);
	case FP_FIELD_DST_PORT: return put16(out, v->dst_port);
	case FP_FIELD_ICMP_TYPE_CODE: return put16(out, icmp ? v->dst_port : 0);
	case FP_FIELD_PROTOCOL: return put8(out, r->protocol);
	case FP_FIELD_TOS: return put8(out, r->tos);
	case FP_FIELD_TCP_FLAGS: return put8(out, v->tcp_flags);
	case FP_FIELD_IP_VERSION: return put8(out, r->ip_version);
	case FP_FIELD_END_REASON: return put8(out, r->end_reason);
	case FP_FIELD_PACKETS: return put64(out, v->packets);
	case FP_FIELD_OCTETS: return put64(out, v->octets);
	case FP_FIELD_PACKETS32: return put32(out, v->packets);  /* the caller split bigger ones */
	case FP_FIELD_OCTETS32: return put32(out, v->octets);
	case FP_FIELD_START_MS: return put64(out, v->start_ms);
	case FP_FIELD_END_MS: return put64(out, v->end_ms);
	case FP_FIELD_START_UPTIME: return put32(out, uptime_of(v->start_ms, uptime_base_ms));
	case FP_FIELD_END_UPTIME: return put32(out, uptime_of(v->end_ms, uptime_base_ms));
	/* a flow captured going out of an interface left through it */
	case FP_FIELD_INGRESS: return put32(out, r->direction == FP_DIRECTION_OUT ? 0 : r->ifindex);
	case FP_FIELD_INGRESS16: return put16(out, r->direction == FP_DIRECTION_OUT ? 0 : r->ifindex);
	case FP_FIELD_EGRESS: return put32(out, egress_of(r, v));
	case FP_FIELD_EGRESS16: return put16(out, egress_of(r, v));
	case FP_FIELD_NEXT_HOP4: return put_next_hop(out, r, v, 4);
	case FP_FIELD_NEXT_HOP6: return put_next_hop(out, r, v, 16);
	case FP_FIELD_SRC_AS: return put32(out, v->reverse ? r->dst_as : r->src_as);
	case FP_FIELD_DST_AS: return put32(out, v->reverse ? r->src_as : r->dst_as);
	case FP_FIELD_SRC_AS16: return put16(out, as16(v->reverse ? r->dst_as : r->src_as));
	case FP_FIELD_DST_AS16: return put16(out, as16(v->reverse ? r->src_as : r->dst_as));
	case FP_FIELD_SRC_PREFIX_LENGTH:
		return put8(out, v->reverse ? r->dst_prefix_length : r->src_prefix_length);
	case FP_FIELD_DST_PREFIX_LENGTH:
		return put8(out, v->reverse ? r->src_prefix_length : r->dst_prefix_length);
	case FP_FIELD_SRC_MAC:
		memcpy(out, v->reverse ? r->reverse_src_mac : r->src_mac, 6);
		return out + 6;
	case FP_FIELD_DST_MAC:
		memcpy(out, v->reverse ? r->reverse_dst_mac : r->dst_mac, 6);
		return out + 6;
	case FP_FIELD_DIRECTION: return put8(out, r->direction == FP_DIRECTION_OUT);  /* 1: egress */
	case FP_FIELD_VLAN: return put16(out, r->vlan_id);
	case FP_FIELD_INNER_VLAN: return put16(out, r->inner_vlan_id);
	case FP_FIELD_SPI: return put32(out, r->ipsec_spi);
	case FP_FIELD_REVERSE_PACKETS: return put64(out, r->reverse_packets);
	case FP_FIELD_REVERSE_OCTETS: return put64(out, r->reverse_octets);
	case FP_FIELD_REVERSE_START_MS: return put64(out, r->reverse_start_ms);
	case FP_FIELD_REVERSE_END_MS: return put64(out, r->reverse_end_ms);
	case FP_FIELD_REVERSE_TCP_FLAGS: return put8(out, r->reverse_tcp_flags);
	case FP_FIELD_POST_SRC_ADDR4: memcpy(out, v->post_src, 4); return out + 4;
	case FP_FIELD_POST_DST_ADDR4: memcpy(out, v->post_dst, 4); return out + 4;
	case FP_FIELD_POST_SRC_ADDR6: memcpy(out, v->post_src, 16); return out + 16;
	case FP_FIELD_POST_DST_ADDR6: memcpy(out, v->post_dst, 16); return out + 16;
	case FP_FIELD_POST_SRC_PORT: return put16(out, v->post_src_port);
	case FP_FIELD_POST_DST_PORT: return put16(out, v->post_dst_port);
	case FP_FIELD_FLOW_ID: return put64(out, r->flow_id);
	case FP_FIELD_LAYER2_SEGMENT_ID: return put64(out, r->layer2_segment_id);
	case FP_FIELD_ETHERNET_TYPE: return put16(out, r->ethernet_type);
	case FP_FIELD_ZERO8: return put8(out, 0);
	case FP_FIELD_ZERO16: return put16(out, 0);
	case FP_FIELD_ZERO32: return put32(out, 0);
	case FP_FIELD_NONE: case FP_FIELD_END: break;  /* refused by fp_field_length */
	}
	return out;
}

int fp_records_select(const struct fp_record *records, int count, int ip_version, int with_reverse,
		      int stride, int offset, int *indices)
{
	int i, n = 0;

	for (i = offset; i < count; i += stride)
		if (records[i].ip_version == ip_version && (!with_reverse || records[i].reverse_packets))
			indices[n++] = i;
	return n;
}

int fp_records_pack(const struct fp_record *records, const int *indices, int count,
		    const uint8_t *layout, int layout_length, int reverse_view,
		    uint64_t uptime_base_ms, uint8_t *out, int size)
{
	uint8_t *end = out;
	int i, f, record_length = 0;

	for (f = 0; f < layout_length; f++) {
		int length = fp_field_length(layout[f]);

		if (length < 0)
			return -1;
		record_length += length;
	}
	if ((long)record_length * count > size)
		return -1;
	for (i = 0; i < count; i++) {
		const struct fp_record *r = &records[indices[i]];
		struct view v;

		view_of(r, reverse_view, &v);
		for (f = 0; f < layout_length; f++)
			end = pack_field(end, (enum fp_field)layout[f], r, &v, uptime_base_ms);
	}
	return (int)(end - out);
}
