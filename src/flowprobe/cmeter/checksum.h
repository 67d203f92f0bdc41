/* Checksum verification (settings.verify_checksums): the IPv4 header's and
 * the TCP, UDP, ICMP and ICMPv6 checksums of the metered IP packet.
 *
 * A wrong checksum says nothing about the bytes on the wire, so the packet
 * is metered all the same; the verdict is counted in the meter's totals
 * and, when wrong, on the packet's flow.
 *
 * Checksum offload: Linux hands a packet socket locally generated (and
 * GRO-merged) packets whose TCP/UDP checksum the NIC has still to fill
 * (skb CHECKSUM_PARTIAL; PACKET_AUXDATA's TP_STATUS_CSUMNOTREADY).  libpcap
 * keeps that status to itself (its ring reader reads tp_status for VLAN
 * tags only; pcap_pkthdr has no room for it), so it is recognised by what
 * the kernel leaves in the field: the folded pseudo-header sum, not its
 * complement (__tcp_v4_send_check, udp4_hwcsum, their IPv6 twins).  A wrong
 * checksum equal to that value is "unverifiable", not bad; a corrupt packet
 * hides this way once in 65536. */
#ifndef FLOWPROBE_CHECKSUM_H
#define FLOWPROBE_CHECKSUM_H

#include "decode.h"

enum checksum_verdict {
	CHECKSUM_VERIFIED = 0,  /* every checksum the packet carries is right */
	CHECKSUM_BAD,           /* at least one is wrong */
	CHECKSUM_UNVERIFIABLE,  /* one could not be checked, none wrong */
	CHECKSUM_NONE,          /* it carries none (IPv6 with ESP, GRE, ...) */
};

/* Needs pkt's network_header (decode.c); transport checksums need the
 * whole datagram captured and no fragment. */
enum checksum_verdict checksum_verify(const struct packet *pkt);

#endif
