/* ICMP messages that come in request/reply pairs: a reply answers a flow,
 * and a biflow's reverse direction carries the reply's type. */
#ifndef FLOWPROBE_ICMP_H
#define FLOWPROBE_ICMP_H

#include <stdint.h>

/* The type·256+code of the message answering this one, or -1. */
static inline int icmp_reply(uint8_t protocol, uint16_t type_code)
{
	uint8_t type = type_code >> 8, code = type_code & 0xff;

	if (protocol == 1) {
		switch (type) {
		case 0: return 8 << 8 | code;   /* echo */
		case 8: return 0 << 8 | code;
		case 13: return 14 << 8 | code; /* timestamp */
		case 14: return 13 << 8 | code;
		}
	} else if (protocol == 58) {
		switch (type) {
		case 128: return 129 << 8 | code;
		case 129: return 128 << 8 | code;
		}
	}
	return -1;
}

/* Errors that quote the offending packet's header (RFC 792, RFC 4443):
 * destination unreachable (with fragmentation needed), source quench, time
 * exceeded, parameter problem; ICMPv6 packet too big too. */
static inline int icmp_is_error(uint8_t protocol, uint8_t type)
{
	if (protocol == 1)
		return type == 3 || type == 4 || type == 11 || type == 12;
	return type >= 1 && type <= 4;
}

#endif
