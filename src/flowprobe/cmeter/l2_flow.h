/* Layer-2 flows (settings.l2_flows): frames that are not IP (ARP, LLDP,
 * EAPOL, PPPoE discovery, STP, ...) metered as flows keyed by source and
 * destination MAC, VLAN tags and EtherType, instead of only counted.
 *
 * They share the flow table with IP flows without growing its 64-byte
 * entry; the key rides in the fields an IPv4 flow uses:
 *   addresses (addr4[0], addr4[1])  the first 4 bytes of the source and
 *                                   destination MAC
 *   ports (port[0], port[1])        their last 2 bytes
 *   protocol                        0
 *   segment id                      SEGMENT_ID(SEGMENT_LAYER2, EtherType):
 *                                   a type byte no IP flow has (tunnel.h's
 *                                   are 0x01-0x85)
 * so entry_match tells a layer-2 flow from every IP flow with the segment
 * compare it already makes (IP flows outside tunnels never read the
 * segment array), and a reply (destination and source swapped) is the
 * reverse direction as for IP.  The segment slot is why a meter made with
 * l2_flows allocates the segment array (8 bytes a flow slot). */
#ifndef FLOWPROBE_L2_FLOW_H
#define FLOWPROBE_L2_FLOW_H

#include <stdint.h>

#include "decode.h"

#define SEGMENT_LAYER2 0xf0ULL

/* A frame decode_frame() found not IP → a layer-2 packet, keyed as above;
 * its octets (ip_length, set by decode.c) are the bytes behind the
 * EtherType and VLAN tags, padding included: as an IP flow's count from
 * the IP header on.  0 for frames without MACs (only Ethernet has both:
 * Linux cooked captures carry no destination, loopback none). */
int layer2_key(struct packet *pkt);

static inline int layer2_is_key(uint64_t segment_id)
{
	return segment_id >> 56 == SEGMENT_LAYER2;
}

/* A record filled from a layer-2 entry's key → the record users see:
 * ip_version 0, MACs and EtherType, no addresses, ports or segment. */
void layer2_record(struct fp_record *r);

#endif
