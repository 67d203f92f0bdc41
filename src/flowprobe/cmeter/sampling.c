/* Packet sampling per interface and the ring of sampled headers (the
 * contract is in sampling.h and _cmeter.h); the decision itself is
 * meter_offer() in meter.h, inlined into every source. */
#include "meter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static uint64_t prng_next(uint64_t *state)
{
	uint64_t x = *state;  /* xorshift64*: a few cycles a sample, good enough to skip by */

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545f4914f6cdd1dULL;
}

static uint64_t random_seed(void)
{
	uint64_t seed = 0;
	struct timespec now;

	/* never blocks: early in boot a weaker seed beats no sampling */
	if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) == sizeof(seed) && seed)
		return seed;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (uint64_t)now.tv_nsec * 0x9e3779b97f4a7c15ULL + (uint64_t)now.tv_sec;
}

void sampler_init(struct sampler *s, uint32_t ifindex, uint32_t rate, int algorithm,
		  uint64_t seed)
{
	s->ifindex = ifindex;
	s->rate = rate;
	s->algorithm = (uint8_t)algorithm;
	/* splitmix64 of the seed: nearby seeds (interface by interface) differ */
	seed = seed ? seed : random_seed();
	seed += 0x9e3779b97f4a7c15ULL;
	seed = (seed ^ (seed >> 30)) * 0xbf58476d1ce4e5b9ULL;
	seed = (seed ^ (seed >> 27)) * 0x94d049bb133111ebULL;
	s->prng = (seed ^ (seed >> 31)) | 1;
	s->skip = sampler_next_skip(s);
}

uint32_t sampler_next_skip(struct sampler *s)
{
	uint64_t span;

	if (s->rate <= 1 || s->algorithm == FP_SAMPLING_DETERMINISTIC)
		return s->rate ? s->rate : 1;
	span = 2 * (uint64_t)s->rate - 1;  /* uniform over 1 .. 2 rate - 1: mean rate */
	return 1 + (uint32_t)(((prng_next(&s->prng) >> 32) * span) >> 32);
}

uint8_t meter_sampler(struct fp_meter *m, uint32_t ifindex)
{
	uint16_t i;

	for (i = 0; i < m->samplers_used; i++)
		if (m->samplers[i].ifindex == ifindex)
			return (uint8_t)i;
	if (m->samplers_used == METER_INTERFACE_SLOTS)
		return METER_INTERFACE_SLOTS - 1;  /* shares the last rather than fail */
	sampler_init(&m->samplers[m->samplers_used], ifindex, 1, FP_SAMPLING_DETERMINISTIC, 1);
	return (uint8_t)m->samplers_used++;
}

int fp_meter_set_sampling(struct fp_meter *m, uint32_t ifindex, uint32_t rate, int algorithm,
			  uint64_t seed, char *error)
{
	struct sampler *s;
	uint64_t pool, sampled, lost;

	if (rate < 1 || rate > SAMPLING_MAX_RATE) {
		snprintf(error, FP_ERROR_SIZE, "sampling rate must be 1..%u", SAMPLING_MAX_RATE);
		return -1;
	}
	if (algorithm != FP_SAMPLING_DETERMINISTIC && algorithm != FP_SAMPLING_RANDOM) {
		snprintf(error, FP_ERROR_SIZE, "unknown sampling algorithm %d", algorithm);
		return -1;
	}
	meter_process_batch(m);
	s = &m->samplers[meter_sampler(m, ifindex)];
	pool = s->pool;  /* sFlow's sample pool only grows */
	sampled = s->sampled;
	lost = s->samples_lost;
	sampler_init(s, ifindex, rate, algorithm, seed);
	s->pool = pool;
	s->sampled = sampled;
	s->samples_lost = lost;
	return 0;
}

int fp_meter_sampling_stats(struct fp_meter *m, struct fp_sampling_stats *out, int max)
{
	int i, n = m->samplers_used < max ? m->samplers_used : max;

	for (i = 0; i < n; i++) {
		const struct sampler *s = &m->samplers[i];

		memset(&out[i], 0, sizeof(out[i]));
		out[i].ifindex = s->ifindex;
		out[i].rate = s->rate;
		out[i].algorithm = s->algorithm;
		out[i].pool = s->pool;
		out[i].sampled = s->sampled;
		out[i].samples_lost = s->samples_lost;
	}
	return n;
}

/* ---- the ring ---- */

void sample_ring_put(struct sample_ring *r, struct sampler *s, int linktype,
		     uint8_t direction, uint64_t timestamp_us, const uint8_t *frame,
		     uint32_t captured_length, uint32_t wire_length)
{
	struct fp_packet_sample *slot;
	uint32_t length = captured_length < FP_SAMPLE_HEADER_BYTES ? captured_length
								   : FP_SAMPLE_HEADER_BYTES;

	if (r->count == r->capacity) {
		r->overflows++;
		s->samples_lost++;
		return;
	}
	slot = &r->slots[(r->head + r->count) % r->capacity];
	slot->timestamp_us = timestamp_us;
	slot->sample_pool = s->pool;
	slot->ifindex = s->ifindex;
	slot->frame_length = wire_length;
	slot->rate = s->rate;
	slot->linktype = linktype;
	slot->header_length = (uint16_t)length;
	slot->direction = direction;
	slot->padding = 0;
	memcpy(slot->header, frame, length);
	r->count++;
	r->taken++;
}

void sample_ring_free(struct sample_ring *r)
{
	free(r->slots);
	memset(r, 0, sizeof(*r));
}

int fp_meter_keep_samples(struct fp_meter *m, uint32_t capacity, char *error)
{
	struct fp_packet_sample *slots = NULL;

	if (capacity == m->samples.capacity)
		return 0;
	if (capacity > (1u << 20)) {
		snprintf(error, FP_ERROR_SIZE, "sample ring capacity must be 0..1048576");
		return -1;
	}
	if (capacity && !(slots = calloc(capacity, sizeof(*slots)))) {
		snprintf(error, FP_ERROR_SIZE, "cannot allocate %u samples", capacity);
		return -1;
	}
	meter_process_batch(m);
	/* what a smaller or no ring cannot hold is counted as overflow */
	m->samples.overflows += m->samples.count;
	free(m->samples.slots);
	m->samples.slots = slots;
	m->samples.capacity = capacity;
	m->samples.head = m->samples.count = 0;
	return 0;
}

int fp_meter_drain_samples(struct fp_meter *m, struct fp_packet_sample *out, int max)
{
	struct sample_ring *r = &m->samples;
	int n = 0;

	while (n < max && r->count) {
		out[n++] = r->slots[r->head];
		r->head = (r->head + 1) % r->capacity;
		r->count--;
	}
	r->drained += (uint64_t)n;
	return n;
}

void fp_meter_sample_ring_stats(struct fp_meter *m, struct fp_sample_ring_stats *stats)
{
	stats->capacity = m->samples.capacity;
	stats->queued = m->samples.count;
	stats->taken = m->samples.taken;
	stats->overflows = m->samples.overflows;
	stats->drained = m->samples.drained;
}
