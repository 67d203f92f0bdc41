/* sFlow v5 flow samples, packed in C: at 1:1 every packet is a sample, and
 * the encoder (export/sflow.py) must not touch each in Python.  Layout per
 * "sFlow Version 5" (sflow.org, 2004): flow_sample (format 1) holding a
 * raw packet header record (1) and, for tagged frames, an extended switch
 * record (1001); all XDR, big endian, opaque data padded to 4 bytes. */
#include <pcap/pcap.h>
#include <string.h>

#include "../_cmeter.h"

#define FLOW_SAMPLE 1
#define RAW_PACKET_HEADER 1
#define EXTENDED_SWITCH 1001
#define HEADER_ETHERNET 1
#define HEADER_IPV4 11
#define HEADER_IPV6 12
#define ETHERNET_FCS 4          /* on the wire, not captured: counted as stripped */
#define MAX_SAMPLE_BYTES (8 + 32 + 8 + 16 + FP_SAMPLE_HEADER_BYTES + 8 + 16)
#define FP_DLT_IPV4 228
#define FP_DLT_IPV6 229

static uint8_t *put32(uint8_t *p, uint32_t value)
{
	p[0] = (uint8_t)(value >> 24);
	p[1] = (uint8_t)(value >> 16);
	p[2] = (uint8_t)(value >> 8);
	p[3] = (uint8_t)value;
	return p + 4;
}

/* The header protocol, where the header starts and the frame length on the
 * wire; -1 for a link type sFlow cannot describe.  Pseudo headers libpcap
 * adds (cooked, loopback) were never on the wire: the IP header follows. */
static int header_protocol(const struct fp_packet_sample *s, uint32_t *skip,
			   uint32_t *frame_length, uint32_t *stripped)
{
	uint32_t pseudo = 0;

	*stripped = 0;
	*frame_length = s->frame_length;
	switch (s->linktype) {
	case DLT_EN10MB:
		*skip = 0;
		*frame_length += ETHERNET_FCS;
		*stripped = ETHERNET_FCS;
		return HEADER_ETHERNET;
	case DLT_LINUX_SLL:
		pseudo = 16;
		break;
	case DLT_LINUX_SLL2:
		pseudo = 20;
		break;
	case DLT_NULL:
	case DLT_LOOP:
		pseudo = 4;
		break;
	case DLT_RAW:
	case 14:                /* DLT_RAW as OpenBSD numbers it */
	case FP_DLT_IPV4:
	case FP_DLT_IPV6:
		break;
	default:
		return -1;
	}
	if (s->header_length <= pseudo || s->frame_length < pseudo)
		return -1;
	*skip = pseudo;
	*frame_length -= pseudo;
	switch (s->header[pseudo] >> 4) {
	case 4:
		return HEADER_IPV4;
	case 6:
		return HEADER_IPV6;
	}
	return -1;
}

static struct fp_sflow_source *source_of(struct fp_sflow_source *sources, int *used, int max,
					 uint32_t ifindex)
{
	int i;

	for (i = 0; i < *used; i++)
		if (sources[i].ifindex == ifindex)
			return &sources[i];
	if (*used == max)
		return NULL;
	memset(&sources[*used], 0, sizeof(sources[*used]));
	sources[*used].ifindex = ifindex;
	return &sources[(*used)++];
}

static int pack_one(const struct fp_packet_sample *s, struct fp_sflow_source *source,
		    int protocol, uint32_t skip, uint32_t frame_length, uint32_t stripped,
		    uint8_t *out)
{
	uint32_t length = s->header_length - skip, padded = (length + 3) & ~3u;
	const uint8_t *header = s->header + skip;
	int tagged = protocol == HEADER_ETHERNET && length >= 16 &&
		     ((header[12] == 0x81 && header[13] == 0x00) ||
		      (header[12] == 0x88 && header[13] == 0xa8));
	uint32_t records = 8 + 16 + padded + (tagged ? 8 + 16 : 0);
	int egress = s->direction == FP_DIRECTION_OUT;
	uint8_t *p = out;

	p = put32(p, FLOW_SAMPLE);
	p = put32(p, 32 + records);
	p = put32(p, ++source->sequence);
	p = put32(p, s->ifindex & 0xFFFFFF);             /* data source: type 0, the ifIndex */
	p = put32(p, s->rate);
	p = put32(p, (uint32_t)s->sample_pool);
	p = put32(p, source->drops);
	p = put32(p, egress ? 0 : s->ifindex);           /* input: 0 unknown */
	p = put32(p, egress ? s->ifindex : 0);           /* output */
	p = put32(p, tagged ? 2 : 1);
	p = put32(p, RAW_PACKET_HEADER);
	p = put32(p, 16 + padded);
	p = put32(p, (uint32_t)protocol);
	p = put32(p, frame_length);
	p = put32(p, stripped);
	p = put32(p, length);
	memcpy(p, header, length);
	memset(p + length, 0, padded - length);
	p += padded;
	if (tagged) {   /* a bridge's frame keeps its tag: in and out alike */
		uint32_t tci = (uint32_t)header[14] << 8 | header[15];

		p = put32(p, EXTENDED_SWITCH);
		p = put32(p, 16);
		p = put32(p, tci & 0xFFF);
		p = put32(p, tci >> 13);
		p = put32(p, tci & 0xFFF);
		p = put32(p, tci >> 13);
	}
	return (int)(p - out);
}

int fp_sflow_pack_flow_samples(const struct fp_packet_sample *samples, int count,
			       struct fp_sflow_source *sources, int *used, int max,
			       uint8_t *out, int size, int *consumed, int *packed)
{
	int i, written = 0;

	*packed = 0;
	for (i = 0; i < count; i++) {
		const struct fp_packet_sample *s = &samples[i];
		uint32_t skip = 0, frame_length, stripped;
		int protocol = header_protocol(s, &skip, &frame_length, &stripped);
		struct fp_sflow_source *source;

		if (protocol < 0 || s->header_length > FP_SAMPLE_HEADER_BYTES)
			continue;   /* consumed, not encodable */
		if (size - written < MAX_SAMPLE_BYTES)
			break;
		source = source_of(sources, used, max, s->ifindex);
		if (!source)
			continue;
		written += pack_one(s, source, protocol, skip, frame_length, stripped, out + written);
		(*packed)++;
	}
	*consumed = i;
	return written;
}
