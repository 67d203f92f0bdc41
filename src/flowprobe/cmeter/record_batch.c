/* Whole export messages from a drained batch, in one call: the data
 * records (record_pack.c) framed by their protocol's message header and
 * set header, as many messages as the batch fills.  Python then hands the
 * messages to the transport; nothing of it runs per record, and only
 * slicing and sending per message. */
#include "../_cmeter.h"

#include <string.h>

static uint8_t *put16(uint8_t *out, uint32_t value)
{
	out[0] = (uint8_t)(value >> 8);
	out[1] = (uint8_t)value;
	return out + 2;
}

static uint8_t *put32(uint8_t *out, uint32_t value)
{
	out = put16(out, value >> 16);
	return put16(out, value);
}

/* Bytes before a message's data records: message header, set header. */
static int head_length(int version)
{
	switch (version) {
	case FP_MESSAGE_IPFIX: return 16 + 4;     /* RFC 7011 3.1, 3.3.2 */
	case FP_MESSAGE_NETFLOW9: return 20 + 4;  /* RFC 3954 5.1, 5.3 */
	case FP_MESSAGE_NETFLOW5: return 24;      /* no sets */
	default: return -1;
	}
}

/* The head of a message of records data records (data_length bytes), at
 * out; advances the header's sequence as the protocol counts. */
static void write_head(uint8_t *out, struct fp_message_header *h, int records, int data_length,
		       int padding)
{
	switch (h->version) {
	case FP_MESSAGE_IPFIX:
		out = put16(out, FP_MESSAGE_IPFIX);
		out = put16(out, (uint32_t)(20 + data_length));
		out = put32(out, h->export_secs);
		out = put32(out, h->sequence);
		out = put32(out, h->domain);
		out = put16(out, h->set_id);
		put16(out, (uint32_t)(4 + data_length));
		h->sequence += (uint32_t)records;   /* data records sent (RFC 7011 3.1) */
		return;
	case FP_MESSAGE_NETFLOW9:
		out = put16(out, FP_MESSAGE_NETFLOW9);
		out = put16(out, (uint32_t)records);
		out = put32(out, h->uptime_ms);
		out = put32(out, h->export_secs);
		out = put32(out, h->sequence);
		out = put32(out, h->domain);
		out = put16(out, h->set_id);
		put16(out, (uint32_t)(4 + data_length + padding));
		h->sequence += 1;                   /* export packets (RFC 3954 5.1) */
		return;
	default:
		out = put16(out, FP_MESSAGE_NETFLOW5);
		out = put16(out, (uint32_t)records);
		out = put32(out, h->uptime_ms);
		out = put32(out, h->export_secs);
		out = put32(out, 0);                /* unix_nsecs: the seconds are exact */
		out = put32(out, h->sequence);
		*out++ = 0;                         /* engine type */
		*out++ = (uint8_t)h->domain;        /* engine id */
		put16(out, h->sampling);
		h->sequence += (uint32_t)records;   /* flows sent before the next */
	}
}

int fp_records_pack_messages(const struct fp_record *records, const int *indices, int count,
			     const uint8_t *layout, int layout_length, int reverse_view,
			     uint64_t uptime_base_ms, struct fp_message_header *header,
			     uint8_t *out, int size, int *ends, int *counts, int max_messages)
{
	int head = head_length(header->version), position = 0, start, messages = 0;

	if (head < 0 || header->per_message < 1)
		return -1;
	for (start = 0; start < count; start += header->per_message) {
		int n = count - start < header->per_message ? count - start : header->per_message;
		int data, padding;

		if (messages == max_messages || size - position < head)
			return -1;
		data = fp_records_pack(records, indices + start, n, layout, layout_length,
				       reverse_view, uptime_base_ms, out + position + head,
				       size - position - head);
		if (data < 0)
			return -1;
		/* v9 flowsets end on a 32-bit boundary (RFC 3954 5.3) */
		padding = header->version == FP_MESSAGE_NETFLOW9 ? -data & 3 : 0;
		if (size - position - head - data < padding)
			return -1;
		memset(out + position + head + data, 0, (size_t)padding);
		write_head(out + position, header, n, data, padding);
		position += head + data + padding;
		ends[messages] = position;
		counts[messages++] = n;
	}
	return messages;
}

int fp_records_over_32_bits(const struct fp_record *records, const int *indices, int count,
			    int reverse_view)
{
	int i, over = 0;

	for (i = 0; i < count; i++) {
		const struct fp_record *r = &records[indices[i]];
		uint64_t packets = reverse_view ? r->reverse_packets : r->packets;
		uint64_t octets = reverse_view ? r->reverse_octets : r->octets;

		over += packets > UINT32_MAX || octets > UINT32_MAX;
	}
	return over;
}

int fp_sflow_pack_datagrams(const struct fp_packet_sample *samples, int count,
			    struct fp_sflow_source *sources, int *used, int max,
			    const uint8_t *head, int head_length, uint32_t *sequence,
			    uint32_t uptime_ms, int mtu, uint8_t *out, int max_datagrams,
			    int *ends, int *counts, int *consumed, int *not_encodable)
{
	int datagrams = 0, start = 0, position = 0, room = mtu - head_length - 12;

	*not_encodable = 0;
	while (start < count && datagrams < max_datagrams && room > 0) {
		uint8_t *datagram = out + position;
		int taken, packed, length;

		length = fp_sflow_pack_flow_samples(samples + start, count - start, sources, used,
						    max, datagram + head_length + 12, room, &taken,
						    &packed);
		if (taken == 0)
			break;   /* not even one sample fits: the caller's mtu is too small */
		start += taken;
		*not_encodable += taken - packed;
		if (!packed)
			continue;
		memcpy(datagram, head, (size_t)head_length);
		*sequence += 1;   /* the agent's datagrams */
		put32(datagram + head_length, *sequence);
		put32(datagram + head_length + 4, uptime_ms);
		put32(datagram + head_length + 8, (uint32_t)packed);
		position += head_length + 12 + length;
		ends[datagrams] = position;
		counts[datagrams++] = packed;
	}
	*consumed = start;
	return datagrams;
}
