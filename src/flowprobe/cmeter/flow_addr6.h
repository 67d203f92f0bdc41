/* The IPv6 address pool of the flow table (struct flow_addr6_pool in
 * flow_table.h): 32 bytes per IPv6 flow, taken when the flow is created and
 * given back when its record is drained, so IPv4 flows pay nothing for it.
 *
 * Capacity: max_active IPv6 flows at once (settings.max_flows_ipv6; by
 * default half of max_flows, at least min(max_flows, 4096)) plus the table's export reserve, so an
 * IPv6 flow waiting to be drained keeps its addresses exactly as its entry
 * waits in its slot.  Beyond max_active, the table's overflow policy
 * applies to IPv6 flows alone: refuse (counted as dropped_flow_table_full
 * and in `refused`), or evict an IPv6 flow (counted in `evicted`): the
 * oldest of those near the lists' oldest ends, or else the next active one
 * in pool order after the previous eviction (a clock hand: at most the
 * reserve's pending records lie in between), so evict never refuses. */
#ifndef FLOWPROBE_FLOW_ADDR6_H
#define FLOWPROBE_FLOW_ADDR6_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "flow_table.h"
#include "hash.h"
#include "table_memory.h"

#define ADDR6_SMALL_TABLE 4096

/* Half: a dual-stack network's flows are often half IPv6 or more, and a
 * slot of the pool (36 B) costs about half an entry. */
static inline uint32_t addr6_max_active(uint32_t max_flows, uint32_t max_flows_ipv6)
{
	uint32_t half = max_flows / 2;

	if (max_flows_ipv6)
		return max_flows_ipv6 < max_flows ? max_flows_ipv6 : max_flows;
	if (half < ADDR6_SMALL_TABLE)
		half = max_flows < ADDR6_SMALL_TABLE ? max_flows : ADDR6_SMALL_TABLE;
	return half;
}

static inline size_t addr6_slots_bytes(const struct flow_addr6_pool *pool)
{
	return (size_t)pool->capacity * sizeof(*pool->slots);
}

static inline size_t addr6_owner_bytes(const struct flow_addr6_pool *pool)
{
	return (size_t)pool->capacity * sizeof(*pool->owner);
}

static inline uint64_t addr6_pool_bytes(const struct flow_addr6_pool *pool)
{
	return addr6_slots_bytes(pool) + addr6_owner_bytes(pool);
}

static inline uint64_t addr6_pool_resident(const struct flow_addr6_pool *pool)
{
	return table_resident(pool->slots, addr6_slots_bytes(pool)) +
	       table_resident(pool->owner, addr6_owner_bytes(pool));
}

/* Reserved, not written (table_memory.h): a zero owner is a free slot, and
 * slots are taken from those given back first, then from `fresh` on. */
static inline int addr6_pool_init(struct flow_addr6_pool *pool, uint32_t max_active,
				  uint32_t reserve)
{
	memset(pool, 0, sizeof(*pool));
	pool->max_active = max_active;
	pool->capacity = max_active + reserve;
	pool->free_head = FLOW_NONE;
	pool->slots = table_alloc(addr6_slots_bytes(pool));
	pool->owner = table_alloc(addr6_owner_bytes(pool));
	return pool->slots && pool->owner ? 0 : -1;
}

static inline void addr6_pool_free(struct flow_addr6_pool *pool)
{
	table_free(pool->slots, addr6_slots_bytes(pool));
	table_free(pool->owner, addr6_owner_bytes(pool));
	pool->slots = NULL;
	pool->owner = NULL;
}

static inline int addr6_has_free(const struct flow_addr6_pool *pool)
{
	return pool->free_head != FLOW_NONE || pool->fresh < pool->capacity;
}

/* The entry holding slot i, or FLOW_NONE */
static inline uint32_t addr6_owner(const struct flow_addr6_pool *pool, uint32_t i)
{
	return pool->owner[i] - 1;
}

/* FLOW_NONE when every slot holds a flow or a record waiting to be drained */
static inline uint32_t addr6_take(struct flow_addr6_pool *pool, uint32_t owner,
				  const uint8_t src[16], const uint8_t dst[16])
{
	uint32_t i = pool->free_head;

	if (i != FLOW_NONE)
		memcpy(&pool->free_head, pool->slots[i].src, 4);
	else if (pool->fresh < pool->capacity)
		i = pool->fresh++;
	else
		return FLOW_NONE;
	pool->owner[i] = owner + 1;
	memcpy(pool->slots[i].src, src, 16);
	memcpy(pool->slots[i].dst, dst, 16);
	return i;
}

static inline void addr6_give_back(struct flow_addr6_pool *pool, uint32_t i)
{
	memcpy(pool->slots[i].src, &pool->free_head, 4);
	pool->free_head = i;
	pool->owner[i] = 0;
}

/* Symmetric in its two addresses: a flow and its reverse share it. */
static inline uint32_t addr6_digest(const uint8_t src[16], const uint8_t dst[16])
{
	uint64_t a = load64(src) ^ load64(src + 8), b = load64(dst) ^ load64(dst + 8);

	a ^= a >> 32;
	b ^= b >> 32;
	return (uint32_t)a + (uint32_t)b;
}

#endif
