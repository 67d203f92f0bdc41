/* Reading the header an ICMP error quotes (RFC 792: the IP header and the
 * first 8 bytes of its payload; RFC 4443: as much of the packet as fits).
 * Routers cut the quote, and any sender may forge it: every field is read
 * only when the captured quote holds it. */
#include "icmp_error.h"
#include "meter.h"

#include <string.h>

#define MAX_QUOTED_EXTENSIONS 8   /* a quote is short; more is not a real packet */

static inline uint16_t read16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* Ports (or ICMP type and code, or ESP's SPI) as decode.c keys them. */
static int read_transport(const uint8_t *l4, uint32_t length, struct icmp_quote *q)
{
	switch (q->protocol) {
	case PROTO_TCP:
	case PROTO_UDP:
	case PROTO_UDPLITE:
	case PROTO_SCTP:
		if (length < 4)
			return 0;
		q->src_port = read16(l4);
		q->dst_port = read16(l4 + 2);
		return 1;
	case PROTO_ESP:
		if (length < 4)
			return 0;
		q->ipsec_spi = (uint32_t)read16(l4) << 16 | read16(l4 + 2);
		return 1;
	case PROTO_ICMP:
	case PROTO_ICMPV6:
		if (length < 2)
			return 0;
		q->dst_port = read16(l4);
		return 1;
	}
	return 1;  /* keyed by addresses and protocol alone */
}

static int read_ipv4(const uint8_t *ip, uint32_t length, struct icmp_quote *q)
{
	uint32_t header;

	if (length < 20)
		return 0;
	header = (uint32_t)(ip[0] & 0x0f) * 4;
	if (header < 20 || header > length)
		return 0;
	q->ip_version = 4;
	q->protocol = ip[9];
	memcpy(q->src, ip + 12, 4);
	memcpy(q->dst, ip + 16, 4);
	if (read16(ip + 6) & 0x1fff)
		return 0;  /* a later fragment: its ports are in the first */
	return read_transport(ip + header, length - header, q);
}

static int read_ipv6(const uint8_t *ip, uint32_t length, struct icmp_quote *q)
{
	uint32_t offset = 40;
	uint8_t next;
	int headers;

	if (length < 40)
		return 0;
	q->ip_version = 6;
	memcpy(q->src, ip + 8, 16);
	memcpy(q->dst, ip + 24, 16);
	next = ip[6];
	for (headers = 0; headers <= MAX_QUOTED_EXTENSIONS; headers++) {
		switch (next) {
		case 0:   /* hop-by-hop */
		case 43:  /* routing */
		case 60:  /* destination options */
			if (offset + 8 > length)
				return 0;
			next = ip[offset];
			offset += ((uint32_t)ip[offset + 1] + 1) * 8;
			continue;
		case 44:  /* fragment */
			if (offset + 8 > length)
				return 0;
			if (read16(ip + offset + 2) & 0xfff8)
				return 0;
			next = ip[offset];
			offset += 8;
			continue;
		}
		q->protocol = next;
		if (offset > length)
			return 0;
		return read_transport(ip + offset, length - offset, q);
	}
	return 0;
}

void icmp_quote_read(const uint8_t *quote, uint32_t length, struct icmp_quote *q)
{
	memset(q, 0, sizeof(*q));
	if (length < 1)
		return;
	switch (quote[0] >> 4) {
	case 4:
		q->readable = (uint8_t)read_ipv4(quote, length, q);
		break;
	case 6:
		q->readable = (uint8_t)read_ipv6(quote, length, q);
		break;
	}
}

void icmp_quote_key(const struct icmp_quote *q, const struct packet *error, struct packet *key)
{
	memset(key, 0, sizeof(*key));
	memcpy(key->src, q->src, 16);
	memcpy(key->dst, q->dst, 16);
	key->ip_version = q->ip_version;
	key->protocol = q->protocol;
	key->src_port = q->src_port;
	key->dst_port = q->dst_port;
	key->ipsec_spi = q->ipsec_spi;
	key->source = error->source;
	key->vlan_id = error->vlan_id;
	key->inner_vlan_id = error->inner_vlan_id;
	key->segment_id = error->segment_id;
}

/* A capture of one direction: the quoted packet went the other way
 * through the same interface (a router's error back to the sender). */
static int opposite_slot(const struct fp_meter *m, uint8_t slot, uint8_t *opposite)
{
	const struct interface_slot *own = &m->interface_slots[slot];
	uint8_t direction;
	uint16_t i;

	if (own->direction == FP_DIRECTION_ANY)
		return 0;
	direction = own->direction == FP_DIRECTION_IN ? FP_DIRECTION_OUT : FP_DIRECTION_IN;
	for (i = 0; i < m->interface_slots_used; i++)
		if (m->interface_slots[i].ifindex == own->ifindex &&
		    m->interface_slots[i].direction == direction) {
			*opposite = (uint8_t)i;
			return 1;
		}
	return 0;
}

/* The quoted packet's flow: at the error's own slot, else at the same
 * interface's other direction (has_opposite). */
static uint32_t quoted_flow(const struct flow_table *t, struct packet *key, int has_opposite,
			    uint8_t opposite)
{
	uint8_t own_slot = key->source;
	uint32_t i = flow_table_lookup(t, key, t->bidirectional);

	if (i == FLOW_NONE && has_opposite) {
		key->source = opposite;
		i = flow_table_lookup(t, key, t->bidirectional);
		key->source = own_slot;
	}
	return i;
}

void meter_join_icmp_error(struct fp_meter *m, const struct packet *p, const struct icmp_quote *q)
{
	struct flow_table *t = &m->flows;
	struct packet key;
	uint32_t own = flow_table_lookup(t, p, t->bidirectional), quoted;
	uint8_t opposite = 0;
	int has_opposite;

	if (own != FLOW_NONE)   /* none when the table refused it */
		icmp_error_count(&t->icmp_errors[own], p->dst_port);
	if (!q->readable) {
		m->counters.icmp_errors_unreadable++;
		return;
	}
	/* the quoted packet went the way it names: that direction's entry, or
	 * the biflow holding either */
	icmp_quote_key(q, p, &key);
	has_opposite = opposite_slot(m, p->source, &opposite);
	quoted = quoted_flow(t, &key, has_opposite, opposite);
	if (quoted != FLOW_NONE && quoted != own) {
		icmp_error_count(&t->icmp_errors[quoted], p->dst_port);
		m->counters.icmp_errors_joined++;
		return;
	}
	/* the other direction's ring may not have been read this far yet */
	if (quoted == FLOW_NONE && has_opposite && m->waiting_errors_used < ICMP_ERRORS_WAITING) {
		struct icmp_error_wait *w = &m->waiting_errors[m->waiting_errors_used++];

		w->key = key;
		w->until_ms = p->timestamp_ms + ICMP_ERROR_WAIT_MS;
		w->own = own;
		w->type_code = p->dst_port;
		w->opposite = opposite;
		return;
	}
	m->counters.icmp_errors_unmatched++;
}

void meter_join_waiting_errors(struct fp_meter *m, uint64_t now_ms, int settle)
{
	struct flow_table *t = &m->flows;
	int i, kept = 0;

	for (i = 0; i < m->waiting_errors_used; i++) {
		struct icmp_error_wait *w = &m->waiting_errors[i];
		/* a flow that came after the wait is not the one quoted */
		uint32_t quoted = t->icmp_errors && now_ms < w->until_ms ?
					  quoted_flow(t, &w->key, 1, w->opposite) : FLOW_NONE;

		if (quoted != FLOW_NONE && quoted != w->own) {
			icmp_error_count(&t->icmp_errors[quoted], w->type_code);
			m->counters.icmp_errors_joined++;
		} else if (settle || quoted == w->own || !t->icmp_errors || now_ms >= w->until_ms) {
			m->counters.icmp_errors_unmatched++;
		} else {
			m->waiting_errors[kept++] = *w;
		}
	}
	m->waiting_errors_used = kept;
}
