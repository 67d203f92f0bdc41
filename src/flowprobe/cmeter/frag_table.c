/* The fragment table.  Completion is judged by bytes: once the last
 * fragment has told the datagram's length and that many bytes were seen,
 * the entry goes; duplicates or overlaps only make it wait for the timeout. */
#include "frag_table.h"
#include "hash.h"
#include "table_memory.h"

#include <stdlib.h>
#include <string.h>

static uint32_t frag_bucket(const struct frag_table *t, const uint8_t *src, const uint8_t *dst,
			    uint32_t id, uint8_t protocol, uint16_t vlan_id, uint16_t inner_vlan_id,
			    uint16_t source)
{
	uint64_t h = hash_endpoint(t->seed, src, 0, 1) ^ (hash_endpoint(t->seed, dst, 1, 1) << 1);

	h ^= (uint64_t)id << 24 ^ (uint64_t)protocol << 56 ^ (uint64_t)vlan_id << 8 ^
	     (uint64_t)inner_vlan_id << 40 ^ source;
	return (uint32_t)hash_mix(h) & t->bucket_mask;
}

static uint32_t entry_bucket(const struct frag_table *t, const struct frag_entry *e)
{
	return frag_bucket(t, e->src, e->dst, e->id, e->protocol, e->vlan_id, e->inner_vlan_id, e->source);
}

static void list_unlink(struct frag_table *t, uint32_t i)
{
	struct frag_entry *e = &t->entries[i];

	if (e->list_prev != FRAG_NONE)
		t->entries[e->list_prev].list_next = e->list_next;
	else
		t->head = e->list_next;
	if (e->list_next != FRAG_NONE)
		t->entries[e->list_next].list_prev = e->list_prev;
	else
		t->tail = e->list_prev;
}

static void release(struct frag_table *t, uint32_t i, struct frag_orphans *orphans)
{
	struct frag_entry *e = &t->entries[i];
	uint32_t *link = &t->buckets[entry_bucket(t, e)];

	while (*link != i)
		link = &t->entries[*link].bucket_next;
	*link = e->bucket_next;
	list_unlink(t, i);
	if (!e->have_first && orphans) {
		orphans->packets += e->held_packets;
		orphans->octets += e->held_octets;
	}
	e->bucket_next = t->free_head;
	t->free_head = i;
	t->used--;
}

uint32_t frag_table_get(struct frag_table *t, const struct packet *p, struct frag_orphans *orphans)
{
	uint32_t bucket = frag_bucket(t, p->src, p->dst, p->fragment_id, p->protocol, p->vlan_id,
				      p->inner_vlan_id, p->source);
	uint32_t i;
	struct frag_entry *e;

	for (i = t->buckets[bucket]; i != FRAG_NONE; i = t->entries[i].bucket_next) {
		e = &t->entries[i];
		if (e->id == p->fragment_id && e->protocol == p->protocol &&
		    e->ip_version == p->ip_version && e->source == p->source &&
		    e->vlan_id == p->vlan_id && e->inner_vlan_id == p->inner_vlan_id &&
		    memcmp(e->src, p->src, 16) == 0 && memcmp(e->dst, p->dst, 16) == 0)
			return i;
	}

	if (t->free_head == FRAG_NONE && t->fresh == t->capacity) {
		release(t, t->tail, orphans);
		t->evicted++;
	}
	/* one given back, else one never used (untouched, table_memory.h) */
	if (t->free_head != FRAG_NONE) {
		i = t->free_head;
		t->free_head = t->entries[i].bucket_next;
	} else {
		i = t->fresh++;
	}
	e = &t->entries[i];
	memset(e, 0, sizeof(*e));
	memcpy(e->src, p->src, 16);
	memcpy(e->dst, p->dst, 16);
	e->id = p->fragment_id;
	e->protocol = p->protocol;
	e->ip_version = p->ip_version;
	e->source = p->source;
	e->vlan_id = p->vlan_id;
	e->inner_vlan_id = p->inner_vlan_id;
	e->created_ms = p->timestamp_ms;
	e->bucket_next = t->buckets[bucket];
	t->buckets[bucket] = i;
	e->list_prev = FRAG_NONE;
	e->list_next = t->head;
	if (t->head != FRAG_NONE)
		t->entries[t->head].list_prev = i;
	else
		t->tail = i;
	t->head = i;
	t->used++;
	t->datagrams++;
	return i;
}

void frag_table_seen(struct frag_table *t, uint32_t i, const struct packet *p)
{
	struct frag_entry *e = &t->entries[i];

	e->payload_seen += p->fragment_payload;
	if (!p->more_fragments)
		e->payload_total = p->fragment_offset + p->fragment_payload;
	if (e->have_first && e->payload_total && e->payload_seen >= e->payload_total)
		release(t, i, NULL);
}

void frag_table_expire(struct frag_table *t, uint64_t now_ms, struct frag_orphans *orphans)
{
	while (t->tail != FRAG_NONE && now_ms >= t->entries[t->tail].created_ms + t->timeout_ms) {
		release(t, t->tail, orphans);
		t->timed_out++;
	}
}

void frag_table_expire_all(struct frag_table *t, struct frag_orphans *orphans)
{
	while (t->tail != FRAG_NONE)
		release(t, t->tail, orphans);
}

int frag_table_init(struct frag_table *t, uint32_t capacity, uint32_t timeout_ms, uint64_t seed[2])
{
	uint32_t buckets = 16;

	memset(t, 0, sizeof(*t));
	while (buckets < capacity && buckets < (1u << 30))
		buckets <<= 1;
	t->capacity = capacity;
	t->bucket_mask = buckets - 1;
	t->timeout_ms = timeout_ms;
	t->seed[0] = seed[0] ^ 0x9e3779b97f4a7c15ULL;  /* independent of the flow index */
	t->seed[1] = seed[1];
	t->entries = table_alloc((size_t)capacity * sizeof(*t->entries));
	t->buckets = malloc((size_t)buckets * sizeof(*t->buckets));
	if (!t->entries || !t->buckets) {
		frag_table_free(t);
		return -1;
	}
	memset(t->buckets, 0xff, (size_t)buckets * sizeof(*t->buckets));
	t->free_head = FRAG_NONE;
	t->head = t->tail = FRAG_NONE;
	t->memory_bytes = (uint64_t)capacity * sizeof(*t->entries) + (uint64_t)buckets * sizeof(*t->buckets);
	return 0;
}

uint64_t frag_table_resident_bytes(const struct frag_table *t)
{
	size_t entries = (size_t)t->capacity * sizeof(*t->entries);

	return t->memory_bytes - entries + table_resident(t->entries, entries);
}

void frag_table_free(struct frag_table *t)
{
	table_free(t->entries, (size_t)t->capacity * sizeof(*t->entries));
	free(t->buckets);
	t->entries = NULL;
	t->buckets = NULL;
}
