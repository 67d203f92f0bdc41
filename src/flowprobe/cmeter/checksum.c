/* Internet checksums (RFC 1071): a ones' complement sum of 16-bit words,
 * over the IPv4 header, or over a pseudo header (RFC 793, 768; RFC 8200
 * 8.1 for IPv6) and the transport message.
 *
 * Summed in the host's byte order, 32 bits at a time (RFC 1071 2(B): the
 * sum is byte-order independent, and 2(C): wider words fold the same), so
 * every value here (sums, the fields they are compared with, the pseudo
 * header's numbers) is in host order: htons() of the wire's number. */
#include "checksum.h"

#include <arpa/inet.h>
#include <string.h>

static uint64_t sum_words(const uint8_t *data, uint32_t length, uint64_t sum)
{
	uint32_t word[4];
	uint16_t half = 0;

	while (length >= 16) {
		memcpy(word, data, 16);
		sum += (uint64_t)word[0] + word[1] + word[2] + word[3];
		data += 16;
		length -= 16;
	}
	while (length >= 4) {
		memcpy(word, data, 4);
		sum += word[0];
		data += 4;
		length -= 4;
	}
	if (length >= 2) {
		memcpy(&half, data, 2);
		sum += half;
		data += 2;
		length -= 2;
	}
	if (length) {   /* an odd last byte is the high half of a word padded with zero */
		half = 0;
		memcpy(&half, data, 1);
		sum += half;
	}
	return sum;
}

static inline uint16_t fold(uint64_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)sum;
}

static inline uint16_t field(const uint8_t *p)
{
	uint16_t value;

	memcpy(&value, p, 2);
	return value;
}

static uint64_t pseudo_header(const struct packet *p, uint32_t length)
{
	uint32_t address_length = p->ip_version == 6 ? 16 : 4;
	uint64_t sum = sum_words(p->src, address_length, 0);

	sum = sum_words(p->dst, address_length, sum);
	return sum + htons((uint16_t)(length >> 16)) + htons((uint16_t)length) + htons(p->protocol);
}

/* Where the transport header starts, past IPv6 extension headers (decode.c
 * walked them already; this walk stays within what it accepted). */
static uint32_t transport_offset(const struct packet *p)
{
	const uint8_t *ip = p->network_header;
	uint32_t offset = 40;
	uint8_t next;
	int headers;

	if (p->ip_version == 4) {
		offset = (uint32_t)(ip[0] & 0x0f) * 4;
		if (ip[9] != PROTO_AH)
			return offset;
		if (offset + 8 > p->network_captured)   /* decode.c stepped over it too */
			return 0;
		return offset + ((uint32_t)ip[offset + 1] + 2) * 4;
	}
	next = ip[6];
	for (headers = 0; headers <= 16; headers++) {
		uint32_t length;

		switch (next) {
		case 0: case 43: case 60: case 135: case 139: case 140: case 44: case PROTO_AH:
			if (offset + 8 > p->network_captured)
				return 0;
			if (next == PROTO_AH)
				length = ((uint32_t)ip[offset + 1] + 2) * 4;
			else if (next == 44)
				length = 8;
			else
				length = ((uint32_t)ip[offset + 1] + 1) * 8;
			next = ip[offset];
			offset += length;
			continue;
		default:
			return next == p->protocol ? offset : 0;
		}
	}
	return 0;
}

enum checksum_verdict checksum_verify(const struct packet *p)
{
	const uint8_t *ip = p->network_header;
	enum checksum_verdict verdict = CHECKSUM_NONE;
	uint32_t offset, length, checksum_at;
	uint16_t sent, partial;
	uint64_t sum;

	if (p->ip_version == 4) {
		if (fold(sum_words(ip, (uint32_t)(ip[0] & 0x0f) * 4, 0)) != 0xffff)
			return CHECKSUM_BAD;
		verdict = CHECKSUM_VERIFIED;
	}
	switch (p->protocol) {
	case PROTO_TCP:
		checksum_at = 16;
		break;
	case PROTO_UDP:
		checksum_at = 6;
		break;
	case PROTO_ICMP:
		if (p->ip_version != 4)
			return verdict;
		checksum_at = 2;
		break;
	case PROTO_ICMPV6:
		if (p->ip_version != 6)
			return verdict;
		checksum_at = 2;
		break;
	default:
		return verdict;
	}
	/* whole datagrams only: a fragment or a cut packet cannot be summed;
	 * length 0 (IPv4 TSO, IPv6 BIG TCP or jumbogram) is a segment yet to be
	 * made or one whose length is elsewhere */
	if (p->is_fragment || p->network_captured < p->ip_length ||
	    field(ip + (p->ip_version == 4 ? 2 : 4)) == 0)
		return CHECKSUM_UNVERIFIABLE;
	offset = transport_offset(p);
	if (!offset || offset + checksum_at + 2 > p->ip_length)
		return CHECKSUM_UNVERIFIABLE;
	length = p->ip_length - offset;
	sent = field(ip + offset + checksum_at);
	if (p->protocol == PROTO_UDP && p->ip_version == 4 && sent == 0)
		return CHECKSUM_UNVERIFIABLE;   /* the sender computed none (RFC 768) */
	sum = p->protocol == PROTO_ICMP ? 0 : pseudo_header(p, length);
	if (fold(sum_words(ip + offset, length, sum)) == 0xffff)
		return verdict == CHECKSUM_NONE ? CHECKSUM_VERIFIED : verdict;
	if (p->protocol == PROTO_TCP || p->protocol == PROTO_UDP) {
		partial = fold(pseudo_header(p, length));
		if (sent == partial)
			return CHECKSUM_UNVERIFIABLE;   /* left for the NIC: see checksum.h */
	}
	return CHECKSUM_BAD;
}
