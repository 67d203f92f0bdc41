/* ICMP errors joined to their flows.  An error (destination unreachable,
 * fragmentation needed / packet too big, time exceeded, parameter problem)
 * quotes the header of the packet that caused it, as that packet was sent:
 * its 5-tuple is the key of the flow the error is about.  That flow, and
 * the error's own ICMP flow, count the error and keep its type and code, in
 * a side array of the flow table allocated only with settings.icmp_errors
 * (the 64-byte entry stays as it is). */
#ifndef FLOWPROBE_ICMP_ERROR_H
#define FLOWPROBE_ICMP_ERROR_H

#include <stdint.h>

#include "decode.h"

struct icmp_error_count {
	uint32_t errors;
	uint16_t last_type_code;  /* type * 256 + code of the latest */
	uint16_t padding;
};

/* The quoted packet's key, read while its frame is still there. */
struct icmp_quote {
	uint8_t src[16], dst[16];
	uint32_t ipsec_spi;
	uint16_t src_port, dst_port;
	uint8_t ip_version;
	uint8_t protocol;
	uint8_t readable;  /* 0: cut short, malformed, or a later fragment (no ports) */
};

/* Reads the quoted IP header and the 8 bytes after it; every read is
 * checked against length (the quote as captured). */
void icmp_quote_read(const uint8_t *quote, uint32_t length, struct icmp_quote *q);

/* The packet to look up: the error's own capture point (interface, VLAN,
 * tunnel segment) with the quoted addresses, protocol and ports. */
void icmp_quote_key(const struct icmp_quote *q, const struct packet *error, struct packet *key);

/* An error read before the packets it quotes.  With a capture handle per
 * direction, a router's error (going out) and the packets it is about
 * (coming in) arrive through different rings, read in either order: an
 * error whose flow is not there yet waits, a few of them briefly, and is
 * joined when the flow comes, or counted unmatched when its time is up. */
#define ICMP_ERRORS_WAITING 32
#define ICMP_ERROR_WAIT_MS 2000

struct icmp_error_wait {
	struct packet key;   /* the quoted packet, at the error's own slot */
	uint64_t until_ms;   /* on the meter's clock */
	uint32_t own;        /* the error's own ICMP flow */
	uint16_t type_code;
	uint8_t opposite;    /* the same interface's other direction */
};

static inline void icmp_error_count(struct icmp_error_count *c, uint16_t type_code)
{
	c->errors++;
	c->last_type_code = type_code;
}

#endif
