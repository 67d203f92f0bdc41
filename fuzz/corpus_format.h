/* The fuzz input format's shared meanings (fuzz/fuzz_meter.c documents the
 * whole format): the harness and qemu/cross's replay driver both include
 * this, so a seed means the same scenario in both. */
#ifndef FLOWPROBE_CORPUS_FORMAT_H
#define FLOWPROBE_CORPUS_FORMAT_H

#include <stdint.h>
#include <string.h>

#include "_cmeter.h"

#define CORPUS_START_US 1700000000000000ULL

/* DLT values as libpcap hands them out (LINKTYPE_RAW 101 reads as DLT_RAW
 * 12), plus values the decoder must refuse as non-IP; Ethernet is repeated
 * because most traffic is Ethernet. */
static const int CORPUS_LINK_TYPES[16] = {
	0, 1, 12, 14, 108, 113, 276, 228, 229, 1, 1, 113, 101, 105, -1, 0x7fffffff,
};

static const int64_t CORPUS_EXPIRE_STEPS_MS[8] = {
	0, 1, 10, 100, 1000, 10000, 3600000, -1000,
};

static inline void corpus_settings(const uint8_t b[4], struct fp_settings *s)
{
	static const uint32_t flows[4] = { 1, 2, 4, 8 };

	memset(s, 0, sizeof(*s));
	s->bidirectional = b[0] & 1;
	s->overflow_policy = (b[0] >> 1) & 1 ? FP_OVERFLOW_REFUSE_NEW : FP_OVERFLOW_EVICT_OLDEST;
	s->max_flows = flows[(b[0] >> 2) & 3];
	s->max_fragments = 1 + ((b[0] >> 4) & 3);
	s->tcp_end_grace_ms = (b[0] >> 6) & 1 ? 0 : 20;
	/* tunnels opened (bit 7), then inner or both by b[3]'s bit 5 */
	s->tunnels = !(b[0] >> 7) ? FP_TUNNELS_OUTER : (b[3] >> 5) & 1 ? FP_TUNNELS_BOTH : FP_TUNNELS_INNER;
	s->idle_timeout_ms = 1 + (b[1] & 15) * 40u;
	s->active_timeout_ms = 1 + (b[1] >> 4) * 150u;
	s->unanswered_timeout_ms = 1 + (b[2] & 15) * 30u;
	s->fragment_timeout_ms = 1 + (b[2] >> 4) * 50u;
	s->hash_seed = 1 + b[3];
	s->icmp_errors = b[3] & 1;
	s->l2_flows = (b[3] >> 6) & 1;
	s->verify_checksums = b[3] >> 7;
}

/* dt: 0x00-0x7f milliseconds on, 0x80-0xef seconds on, 0xf0-0xfe seconds
 * back (several capture files out of order), 0xff 60 days on. */
static inline void corpus_advance(uint64_t *now_us, uint8_t dt)
{
	uint64_t step;

	if (dt < 0x80) {
		step = dt * 1000ULL;
	} else if (dt < 0xf0) {
		step = (dt - 0x7fULL) * 1000000ULL;
	} else if (dt < 0xff) {
		step = (dt - 0xefULL) * 1000000ULL;
		*now_us = *now_us > step ? *now_us - step : 0;
		return;
	} else {
		step = 60ULL * 86400 * 1000000;
	}
	*now_us += step;
}

/* wire: 0 the captured length, 0x01-0x7f that much more (snapped),
 * 0x80-0xfe less (a lying capture), 0xff UINT32_MAX. */
static inline uint32_t corpus_wire_length(uint32_t captured, uint8_t wire)
{
	if (wire < 0x80)
		return captured + wire;
	if (wire < 0xff)
		return captured > (wire & 0x7fu) ? captured - (wire & 0x7fu) : 0;
	return UINT32_MAX;
}

/* The input, read a byte at a time; past its end every byte reads as 0. */
struct corpus_input {
	const uint8_t *data;
	size_t size;
};

static inline uint8_t corpus_take(struct corpus_input *in)
{
	if (!in->size)
		return 0;
	in->size--;
	return *in->data++;
}

/* A frame operation (op 0x00-0x9f): its bytes stay in the input, which
 * moves past them; the caller copies them where it wants them. */
struct corpus_frame {
	const uint8_t *bytes;
	uint32_t length, wire, ifindex;
	int linktype;
	uint8_t dt;
};

static inline void corpus_take_frame(struct corpus_input *in, uint8_t op, struct corpus_frame *f)
{
	uint8_t wire;

	f->dt = corpus_take(in);
	wire = corpus_take(in);
	f->length = (uint32_t)corpus_take(in) << 8;
	f->length |= corpus_take(in);
	if (f->length > in->size)
		f->length = (uint32_t)in->size;
	f->bytes = in->data;
	in->data += f->length;
	in->size -= f->length;
	f->wire = corpus_wire_length(f->length, wire);
	f->linktype = CORPUS_LINK_TYPES[op & 15];
	f->ifindex = op >> 4;
}

/* op 0xc8-0xcf: 8 bytes of flow filter */
static inline void corpus_take_filter(struct corpus_input *in, struct fp_flow_filter *filter)
{
	uint8_t b[8];
	int i;

	for (i = 0; i < 8; i++)
		b[i] = corpus_take(in);
	memset(filter, 0, sizeof(*filter));
	filter->ip_version = (uint8_t[]){ 0, 4, 6, 5 }[b[0] & 3];
	filter->prefix_length = b[1] % 129;
	/* a short address pattern, repeated: matches are still reachable */
	for (i = 0; i < 16; i++)
		filter->address[i] = b[2 + (i & 1)];
	if (b[0] & 4)
		memset(filter->address + 4, 0, 12);  /* an IPv4 prefix */
	filter->protocol = b[4];
	filter->port = (uint16_t)(b[5] << 8 | b[6]);
	filter->ifindex = b[7] & 15;
}

/* the 4-byte header, and op 0xd0-0xd7: settings */
static inline void corpus_take_settings(struct corpus_input *in, struct fp_settings *s)
{
	uint8_t b[4];
	int i;

	for (i = 0; i < 4; i++)
		b[i] = corpus_take(in);
	corpus_settings(b, s);
}

#endif
