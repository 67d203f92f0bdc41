/* A keyed hash for flow and fragment keys.  The seed comes from the
 * kernel, so remote senders cannot aim packets at one hash chain; the
 * mixing is 64-bit multiply/xorshift only, fast on 32-bit routers too. */
#ifndef FLOWPROBE_HASH_H
#define FLOWPROBE_HASH_H

#include <stdint.h>
#include <string.h>

static inline uint64_t hash_mix(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

static inline uint64_t load64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);  /* no unaligned access on MIPS */
	return v;
}

/* One endpoint (address and port) under the key; an IPv4 address is the
 * first 4 bytes, the rest zero, and takes one round instead of two. */
static inline uint64_t hash_endpoint(const uint64_t seed[2], const uint8_t addr[16], uint16_t port,
				     int ipv6)
{
	uint64_t h = hash_mix(seed[0] ^ port ^ load64(addr));

	if (ipv6)
		h = hash_mix(h ^ load64(addr + 8) ^ seed[1]);
	return h;
}

#endif
