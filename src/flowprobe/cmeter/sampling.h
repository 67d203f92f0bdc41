/* Packet sampling, decided before a packet is decoded, and the ring of
 * sampled packets' headers that the sFlow agent drains.
 *
 * A sampler counts down the packets to skip before its next sample; an
 * unsampled packet costs a decrement.  Skips are every `rate` packets
 * (deterministic) or drawn uniformly from 1 .. 2 * rate - 1 (random, mean
 * rate), as the sFlow reference agent does: cheaper than a draw per packet,
 * and the sample count varies less than a binomial's. */
#ifndef FLOWPROBE_SAMPLING_H
#define FLOWPROBE_SAMPLING_H

#include <stdint.h>

#include "../_cmeter.h"

#define SAMPLING_MAX_RATE ((1u << 24) - 1)

struct sampler {
	uint32_t ifindex;
	uint32_t rate;       /* 1: every packet */
	uint32_t skip;       /* packets left until the next sample, this one included */
	uint8_t algorithm;   /* FP_SAMPLING_* */
	uint64_t prng;       /* xorshift64* state, never 0 */
	uint64_t pool;       /* packets seen */
	uint64_t sampled;
	uint64_t samples_lost;  /* no room in the header ring */
};

void sampler_init(struct sampler *s, uint32_t ifindex, uint32_t rate, int algorithm,
		  uint64_t seed);
uint32_t sampler_next_skip(struct sampler *s);

/* 1 when this packet is to be sampled */
static inline int sampler_take(struct sampler *s)
{
	s->pool++;
	if (--s->skip)
		return 0;
	/* 1 in 1 (every unsampled interface): no call, the skip stays 1 */
	s->skip = s->rate == 1 ? 1 : sampler_next_skip(s);
	s->sampled++;
	return 1;
}

/* Sampled headers, oldest first; a full ring refuses (and counts) new ones,
 * so what it holds stays in order with no gap but the counted one. */
struct sample_ring {
	struct fp_packet_sample *slots;
	uint32_t capacity;
	uint32_t head;       /* the oldest */
	uint32_t count;
	uint64_t taken;
	uint64_t overflows;
	uint64_t drained;
};

void sample_ring_put(struct sample_ring *r, struct sampler *s, int linktype,
		     uint8_t direction, uint64_t timestamp_us, const uint8_t *frame,
		     uint32_t captured_length, uint32_t wire_length);
void sample_ring_free(struct sample_ring *r);

/* Half full: a dispatch stops so the caller drains before it overflows. */
static inline int sample_ring_backlogged(const struct sample_ring *r)
{
	return r->capacity && r->count >= r->capacity / 2;
}

#endif
