/* TCP ends by sequence numbers (RFC 9293 §3.6): each side's FIN takes one
 * sequence number, and the other side's ACK of FIN + 1 says it arrived.
 * Both acknowledged: nothing more belongs to the connection but
 * retransmissions, which the tombstone absorbs. */
#include "tcp_end.h"
#include "hash.h"
#include "table_memory.h"

#include <stdlib.h>
#include <string.h>

#define TCP_ACK 0x10
#define MIN_STATES 64u
#define MAX_STATES 65536u

/* The same for both directions of a connection, and for every capture
 * that sees it: the flow key's fields but the interface, with the endpoints
 * in a fixed order.  *side: which endpoint sent p (0 for the lower address,
 * or port), the same for every segment.  Only segments of closing
 * connections pay for it. */
static uint64_t connection_key(const struct tcp_end_table *t, const struct packet *p, int *side)
{
	const uint8_t *low = p->src, *high = p->dst;
	uint16_t low_port = p->src_port, high_port = p->dst_port;
	/* any fixed order does: the words as loaded, not the addresses' own */
	uint64_t s0 = load64(p->src), d0 = load64(p->dst), s1 = load64(p->src + 8),
		 d1 = load64(p->dst + 8), h, rest;

	*side = s0 != d0 ? s0 > d0 : s1 != d1 ? s1 > d1 : p->src_port > p->dst_port;
	if (*side) {
		low = p->dst, high = p->src;
		low_port = p->dst_port, high_port = p->src_port;
	}
	rest = (uint64_t)low_port | (uint64_t)high_port << 16 | (uint64_t)p->vlan_id << 32 |
	       (uint64_t)(p->inner_vlan_id & 0xfff) << 44;
	if (p->ip_version == 6) {
		h = hash_mix(t->seed[0] ^ load64(low));
		h = hash_mix(h ^ load64(low + 8));
		h = hash_mix(h ^ load64(high));
		h = hash_mix(h ^ load64(high + 8));
	} else {   /* both addresses in one word */
		uint32_t a, b;

		memcpy(&a, low, 4);
		memcpy(&b, high, 4);
		h = hash_mix(t->seed[0] ^ ((uint64_t)a | (uint64_t)b << 32));
	}
	return hash_mix(h ^ rest ^ p->segment_id ^ t->seed[1]) | 1;  /* never 0, the free mark */
}

#define NONE UINT32_MAX

static struct tcp_end_state *find(struct tcp_end_table *t, uint64_t key)
{
	uint32_t i;

	for (i = t->buckets[key & t->mask]; i != NONE; i = t->states[i].chain)
		if (t->states[i].key == key)
			return &t->states[i];
	return NULL;
}

static void unlink_age(struct tcp_end_table *t, uint32_t i)
{
	struct tcp_end_state *s = &t->states[i];

	if (s->newer != NONE)
		t->states[s->newer].older = s->older;
	else
		t->newest = s->older;
	if (s->older != NONE)
		t->states[s->older].newer = s->newer;
	else
		t->stalest = s->newer;
}

/* the state saw a closing segment now: it becomes the newest */
static void touch(struct tcp_end_table *t, struct tcp_end_state *s, uint64_t now_ms)
{
	uint32_t i = (uint32_t)(s - t->states);

	s->seen_ms = now_ms;
	if (t->newest == i)
		return;
	unlink_age(t, i);
	s->newer = NONE;
	s->older = t->newest;
	if (t->newest != NONE)
		t->states[t->newest].newer = i;
	t->newest = i;
	if (t->stalest == NONE)
		t->stalest = i;
}

static void unchain(struct tcp_end_table *t, uint32_t i)
{
	uint32_t *link = &t->buckets[t->states[i].key & t->mask];

	while (*link != i)
		link = &t->states[*link].chain;
	*link = t->states[i].chain;
}

/* A free state, else the stalest: a tombstone, or a closing connection
 * quiet for longer than every other (displaced: the grace ends it). */
static struct tcp_end_state *insert(struct tcp_end_table *t, uint64_t key, uint64_t now_ms)
{
	uint32_t i;
	struct tcp_end_state *s;

	if (t->fresh <= t->mask) {  /* never used yet (untouched, table_memory.h) */
		i = t->fresh++;
	} else {
		i = t->stalest;
		s = &t->states[i];
		if (!s->ended_until_ms)   /* still closing */
			t->displaced++;
		unchain(t, i);
		unlink_age(t, i);
	}
	s = &t->states[i];
	memset(s, 0, sizeof(*s));
	memset(s->views, 0xff, sizeof(s->views));
	s->key = key;
	s->chain = t->buckets[key & t->mask];
	t->buckets[key & t->mask] = i;
	s->newer = s->older = NONE;
	if (t->stalest == NONE)
		t->stalest = t->newest = i;
	else {
		s->older = t->newest;
		t->states[t->newest].newer = i;
		t->newest = i;
	}
	s->seen_ms = now_ms;
	return s;
}

static void add_view(struct tcp_end_state *s, uint32_t entry, int side)
{
	int v;

	for (v = 0; v < TCP_END_VIEWS; v++) {
		if (s->views[v] == entry)
			return;
		if (s->views[v] == UINT32_MAX) {
			s->views[v] = entry;
			s->view_side[v] = (uint8_t)side;
			return;
		}
	}
}

static enum tcp_end_verdict end_now(struct tcp_end_state *s, uint32_t entry, int side,
				    uint64_t now_ms, uint32_t grace_ms, struct tcp_end_views *others)
{
	int v;

	others->count = 0;
	for (v = 0; v < TCP_END_VIEWS; v++)
		if (s->views[v] != UINT32_MAX && s->views[v] != entry && s->view_side[v] != side)
			others->entries[others->count++] = s->views[v];
	s->ended_until_ms = now_ms + grace_ms + 1;
	return TCP_END_NOW;
}

static inline uint32_t fin_sequence(const struct packet *p)
{
	return tcp_seq(p) + tcp_payload(p) + ((p->tcp_flags & TCP_SYN) != 0);
}

enum tcp_end_verdict tcp_end_segment(struct tcp_end_table *t, const struct packet *p,
				     uint32_t entry, uint64_t now_ms, uint32_t grace_ms,
				     struct tcp_end_views *others)
{
	int side;
	uint64_t key;
	struct tcp_end_state *s;

	others->count = 0;
	if (p->fragment_offset)
		return TCP_END_GOES_ON;  /* a later fragment: no TCP header */
	key = connection_key(t, p, &side);
	s = find(t, key);
	if (s && s->ended_until_ms) {
		/* another view of the ended connection (its copy of the last
		 * segment, a retransmission): it ends too; a FIN at a new
		 * sequence number is the tuple's next connection closing */
		if (!(p->tcp_flags & TCP_FIN) || (s->fin[side] && s->fin_seq[side] == fin_sequence(p)))
			return TCP_END_NOW;
		s = NULL;
	}
	if (!s) {
		if (!(p->tcp_flags & (TCP_FIN | TCP_RST)))
			return TCP_END_GOES_ON;  /* displaced: the grace ends it */
		s = insert(t, key, now_ms);
	}
	touch(t, s, now_ms);
	add_view(s, entry, side);
	if (p->tcp_flags & TCP_RST) {
		t->ended_by_rst++;
		return end_now(s, entry, side, now_ms, grace_ms, others);
	}
	if ((p->tcp_flags & TCP_FIN) && !s->fin[side]) {
		s->fin[side] = 1;
		s->fin_seq[side] = fin_sequence(p);
	}
	if ((p->tcp_flags & TCP_ACK) &&
	    (!s->has_ack[side] || (int32_t)(tcp_ack(p) - s->ack[side]) > 0)) {
		s->ack[side] = tcp_ack(p);
		s->has_ack[side] = 1;
	}
	/* an ACK at or past FIN + 1 (modulo 2^32) acknowledges it, whichever
	 * was met first */
	for (int way = 0; way < 2; way++)
		if (s->fin[way] && s->has_ack[!way] &&
		    (int32_t)(s->ack[!way] - (s->fin_seq[way] + 1)) >= 0)
			s->acked[way] = 1;
	if (s->acked[0] && s->acked[1]) {
		t->ended_by_fin++;
		return end_now(s, entry, side, now_ms, grace_ms, others);
	}
	return TCP_END_GOES_ON;
}

int tcp_end_absorbs(struct tcp_end_table *t, const struct packet *p, uint64_t now_ms)
{
	struct tcp_end_state *s;
	int side;

	if (tcp_payload(p) || p->is_fragment)
		return 0;  /* data is never a leftover: it starts a flow */
	s = find(t, connection_key(t, p, &side));
	return s && s->ended_until_ms && now_ms < s->ended_until_ms;
}

int tcp_end_init(struct tcp_end_table *t, uint32_t max_flows, const uint64_t seed[2])
{
	uint32_t capacity = MIN_STATES;

	memset(t, 0, sizeof(*t));
	while (capacity < max_flows / 64 && capacity < MAX_STATES)
		capacity <<= 1;
	/* keys of its own: a state's place says nothing about a flow's bucket */
	t->seed[0] = hash_mix(seed[0] ^ 0x7463705f656e64ULL);
	t->seed[1] = hash_mix(seed[1] + 0x7463705f656e64ULL);
	t->mask = capacity - 1;
	/* states are reserved, written only when first used (in index order) */
	t->states = table_alloc((size_t)capacity * sizeof(*t->states));
	t->buckets = malloc((size_t)capacity * sizeof(*t->buckets));
	if (!t->states || !t->buckets) {
		tcp_end_free(t);
		return -1;
	}
	memset(t->buckets, 0xff, (size_t)capacity * sizeof(*t->buckets));
	t->newest = t->stalest = NONE;
	t->memory_bytes = (uint64_t)capacity * (sizeof(*t->states) + sizeof(*t->buckets));
	return 0;
}

void tcp_end_free(struct tcp_end_table *t)
{
	table_free(t->states, ((size_t)t->mask + 1) * sizeof(*t->states));
	t->states = NULL;
	free(t->buckets);
	t->buckets = NULL;
}
