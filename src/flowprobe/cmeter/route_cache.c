/* The enrichment stage's route table: what the kernel's FIB answered
 * (enrich/routes.py asks it over netlink), kept so that records get their
 * egress and next hop in C, a batch at a time, and only routes not known
 * yet go back to Python to be asked.
 *
 * Set-associative: a key hashes to a bucket of WAYS entries; a full bucket
 * gives up its oldest entry (counted).  A route change starts a new
 * generation: the answers of the one before stay for records of flows
 * that ended before the change (their packets took those routes), older
 * ones are free slots. */
#include "../_cmeter.h"
#include "hash.h"

#include <stdlib.h>
#include <string.h>

#define WAYS 8

struct route_entry {
	struct fp_route_key key;
	uint32_t generation;    /* 0: never used */
	uint32_t egress;
	uint8_t next_hop[16];
	uint8_t next_hop_length;
};

struct fp_route_cache {
	struct route_entry *entries;   /* buckets * WAYS */
	uint8_t *turns;                /* per bucket: the way a full bucket gives up next */
	uint32_t buckets;              /* a power of two */
	uint32_t generation;           /* current; the one before is "previous" */
	uint64_t changed_ms;           /* when the current generation began */
	uint64_t seed[2];
	int ipv6_by_source;            /* source-specific IPv6 routes: IPv6 keys carry the source */
	struct fp_route_cache_counters counters;
};

struct fp_route_cache *fp_route_cache_new(uint32_t capacity)
{
	struct fp_route_cache *c = calloc(1, sizeof(*c));
	uint32_t buckets = 1;

	if (!c)
		return NULL;
	/* twice the slots asked for: keys spread unevenly over buckets, and a
	 * bucket that overflows keeps asking the kernel again */
	while (buckets * WAYS < 2 * (uint64_t)capacity && buckets < (1u << 26))
		buckets <<= 1;
	c->entries = calloc((size_t)buckets * WAYS, sizeof(*c->entries));
	c->turns = calloc(buckets, 1);
	if (!c->entries || !c->turns) {
		fp_route_cache_free(c);
		return NULL;
	}
	c->buckets = buckets;
	c->generation = 2;   /* "previous" (1) never matches an unused entry (0) */
	c->seed[0] = (uint64_t)(uintptr_t)c ^ 0x9e3779b97f4a7c15ULL;
	c->seed[1] = (uint64_t)(uintptr_t)c->entries;
	c->counters.capacity = (uint64_t)buckets * WAYS;
	return c;
}

void fp_route_cache_free(struct fp_route_cache *c)
{
	if (c) {
		free(c->entries);
		free(c->turns);
		free(c);
	}
}

void fp_route_cache_changed(struct fp_route_cache *c, uint64_t changed_ms)
{
	c->generation++;
	c->changed_ms = changed_ms;
	c->counters.changes++;
}

static struct route_entry *bucket_of(const struct fp_route_cache *c, const struct fp_route_key *k)
{
	uint64_t h = hash_endpoint(c->seed, k->destination, k->family, k->family == 6);

	h = hash_mix(h ^ load64(k->source) ^ load64(k->source + 8) ^ k->ingress ^
		     ((uint64_t)k->mark << 32));
	return &c->entries[(h & (c->buckets - 1)) * WAYS];
}

static int same_key(const struct fp_route_key *a, const struct fp_route_key *b)
{
	return memcmp(a, b, sizeof(*a)) == 0;
}

void fp_route_cache_put(struct fp_route_cache *c, const struct fp_route_key *key,
			uint32_t egress, const uint8_t *next_hop, int next_hop_length)
{
	struct route_entry *bucket = bucket_of(c, key), *slot = NULL, *free_slot = NULL,
			   *previous = NULL;
	uint32_t b = (uint32_t)(bucket - c->entries) / WAYS;
	int i;

	for (i = 0; i < WAYS && !slot; i++) {
		struct route_entry *e = &bucket[i];

		if (e->generation == c->generation && same_key(&e->key, key))
			slot = e;   /* asked again: the newer answer */
		else if (e->generation + 1 < c->generation)
			free_slot = free_slot ? free_slot : e;   /* unused, or too old to matter */
		else if (e->generation != c->generation)
			previous = e;
	}
	if (!slot)
		slot = free_slot;
	if (!slot) {   /* full: a previous generation's answer goes first, else one in turn */
		slot = previous ? previous : &bucket[c->turns[b]++ % WAYS];
		c->counters.evictions++;
	}
	slot->key = *key;
	slot->generation = c->generation;
	slot->egress = egress;
	memset(slot->next_hop, 0, sizeof(slot->next_hop));
	slot->next_hop_length = 0;
	if (next_hop_length > 0 && next_hop_length <= 16) {
		memcpy(slot->next_hop, next_hop, (size_t)next_hop_length);
		slot->next_hop_length = (uint8_t)next_hop_length;
	}
}

static const struct route_entry *find(const struct fp_route_cache *c,
				      const struct fp_route_key *key, uint32_t generation)
{
	const struct route_entry *bucket = bucket_of(c, key);
	int i;

	for (i = 0; i < WAYS; i++)
		if (bucket[i].generation == generation && same_key(&bucket[i].key, key))
			return &bucket[i];
	return NULL;
}

int fp_route_cache_get(struct fp_route_cache *c, const struct fp_route_key *key,
		       uint32_t *egress, uint8_t *next_hop)
{
	const struct route_entry *e = find(c, key, c->generation);

	if (!e)
		return -1;
	*egress = e->egress;
	memcpy(next_hop, e->next_hop, 16);
	return e->next_hop_length;
}

void fp_route_cache_ipv6_by_source(struct fp_route_cache *c, int on)
{
	c->ipv6_by_source = on;
}

void fp_route_key_of(const struct fp_record *r, int by_source, int reverse,
		     struct fp_route_key *key)
{
	int size = r->ip_version == 4 ? 4 : 16;

	memset(key, 0, sizeof(*key));
	key->family = r->ip_version;
	/* the reverse direction goes back to the source (de-NATed, for conntrack),
	 * looked up by that destination alone: its packets' ingress is not known,
	 * and policy marks (mwan3, pbr) mark the way out, not replies to the LAN */
	memcpy(key->destination, reverse ? r->src_addr : r->dst_addr, (size_t)size);
	if (!by_source)
		return;
	if (reverse) {
		/* IPv6 routes may be source-specific (netifd's defaults are): the
		 * reply's source is the flow's destination (an output lookup: an
		 * IPv4 one from an address not the router's own is refused) */
		if (r->ip_version == 6)
			memcpy(key->source, r->dst_addr, 16);
		return;
	}
	if (r->direction == FP_DIRECTION_IN) {   /* forwarded, as the packet came */
		memcpy(key->source, r->src_addr, (size_t)size);
		key->ingress = r->ifindex;
	} else {   /* conntrack: the mark that policy rules (mwan3, pbr) route by */
		key->mark = r->conntrack_mark;
		if (r->ip_version == 6)
			memcpy(key->source, r->src_addr, 16);
	}
}

/* The answer for one direction of a record: of before the latest change
 * for a flow that ended before it, when there is one. */
static const struct route_entry *answer(struct fp_route_cache *c, const struct fp_route_key *key,
					uint64_t end_ms)
{
	const struct route_entry *e = find(c, key, c->generation), *before;

	if (end_ms < c->changed_ms) {
		before = find(c, key, c->generation - 1);
		if (before) {
			c->counters.hits_previous++;
			return before;
		}
		if (e)
			c->counters.routed_after_change++;
	}
	return e;
}

static void put_route(const struct route_entry *e, int size, uint32_t *egress, uint8_t *next_hop)
{
	*egress = e->egress;
	memset(next_hop, 0, 16);
	if (e->next_hop_length == size)   /* an IPv6 next hop of an IPv4 route has no field */
		memcpy(next_hop, e->next_hop, (size_t)size);
}

int fp_records_route(struct fp_route_cache *c, struct fp_record *records, const int *indices,
		     int count, int by_source, int *missing, struct fp_route_key *keys,
		     int *key_count)
{
	int i, n = 0, k = 0;

	for (i = 0; i < count; i++) {
		int index = indices ? indices[i] : i;
		struct fp_record *r = &records[index];
		struct fp_route_key key, reverse_key;
		const struct route_entry *e, *reverse = NULL;
		int size = r->ip_version == 4 ? 4 : 16;
		int by = by_source || (r->ip_version == 6 && c->ipv6_by_source);
		/* the way back, where something came back (biflows: capture's, conntrack's) */
		int with_reverse = r->reverse_packets != 0;

		if (!r->ip_version)   /* a layer-2 flow (l2_flows): no address to route */
			continue;
		fp_route_key_of(r, by, 0, &key);
		e = answer(c, &key, r->flow_end_ms);
		if (with_reverse) {
			fp_route_key_of(r, by, 1, &reverse_key);
			reverse = answer(c, &reverse_key, r->reverse_end_ms);
		}
		if (!e || (with_reverse && !reverse)) {
			missing[n++] = index;
			if (!e)
				keys[k++] = key;
			if (with_reverse && !reverse)
				keys[k++] = reverse_key;
			continue;
		}
		c->counters.hits++;
		put_route(e, size, &r->egress_ifindex, r->next_hop);
		/* captured leaving an interface: that interface is the egress */
		if (r->direction == FP_DIRECTION_OUT)
			r->egress_ifindex = r->ifindex;
		if (with_reverse)
			put_route(reverse, size, &r->reverse_egress_ifindex, r->reverse_next_hop);
	}
	*key_count = k;
	return n;
}

void fp_route_cache_counters(struct fp_route_cache *c, struct fp_route_cache_counters *counters)
{
	uint32_t i;

	*counters = c->counters;
	counters->entries = 0;
	for (i = 0; i < c->buckets * WAYS; i++)
		counters->entries += c->entries[i].generation == c->generation;
}
