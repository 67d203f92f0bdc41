/* The flow table.  Lookups hash both endpoints symmetrically, so the
 * reverse of a flow sits in the same chain: biflow folding and the
 * "was this answered?" check cost no second probe of the index.
 *
 * Each packet checks its own entry's deadlines (idle, unanswered, end
 * grace, active), so records come out the same whether the periodic scan
 * ran a moment ago or not; the scan only makes them leave on time. */
#include "flow_table.h"
#include "flow_addr6.h"
#include "table_memory.h"
#include "hash.h"
#include "icmp.h"
#include "l2_flow.h"

#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(struct flow_entry) == 64, "a flow entry is one cache line");

static inline int is_icmp(uint8_t protocol)
{
	return protocol == PROTO_ICMP || protocol == PROTO_ICMPV6;
}

/* Ports as stored in the key: ESP keeps its SPI there (SAs are one-way). */
static inline void key_ports(const struct packet *p, uint16_t port[2])
{
	if (p->protocol == PROTO_ESP) {
		port[0] = (uint16_t)(p->ipsec_spi >> 16);
		port[1] = (uint16_t)p->ipsec_spi;
	} else {
		port[0] = p->src_port;
		port[1] = p->dst_port;
	}
}

static inline __attribute__((always_inline)) uint32_t key_hash(const struct flow_table *t, const uint8_t *src, const uint8_t *dst,
			 const uint16_t port[2], uint8_t protocol, uint16_t vlan_id,
			 uint16_t inner_vlan_id, uint8_t source, int ipv6, uint64_t segment_id)
{
	uint16_t sport = port[0], dport = port[1];
	uint64_t h;

	if (is_icmp(protocol))
		sport = dport = 0;  /* a request and its reply share a chain */
	/* the sum is symmetric: both directions land in one chain */
	h = hash_endpoint(t->seed, src, sport, ipv6) + hash_endpoint(t->seed, dst, dport, ipv6);
	h ^= (uint64_t)protocol << 48 | (uint64_t)vlan_id << 32 |
	     (uint64_t)inner_vlan_id << 16 | source;
	h ^= segment_id;
	return (uint32_t)hash_mix(h ^ t->seed[1]);
}

static void entry_addresses(const struct flow_table *t, uint32_t i, uint8_t src[16], uint8_t dst[16])
{
	const struct flow_entry *e = &t->entries[i];

	if (e->flags & FLOW_IPV6) {
		memcpy(src, t->addr6.slots[e->addr4[0]].src, 16);
		memcpy(dst, t->addr6.slots[e->addr4[0]].dst, 16);
	} else {
		memset(src, 0, 16);
		memset(dst, 0, 16);
		memcpy(src, &e->addr4[0], 4);
		memcpy(dst, &e->addr4[1], 4);
	}
}

/* Buckets: as many as slots, the hash scaled onto them (no power of two). */
static inline uint32_t bucket_of(const struct flow_table *t, uint32_t hash)
{
	return (uint32_t)(((uint64_t)hash * t->slots) >> 32);
}

/* A bucket's chain: its first entry, or FLOW_NONE (stored + 1: zero, as
 * an untouched page reads, is an empty chain). */
static inline uint32_t chain_head(const struct flow_table *t, uint32_t bucket)
{
	return t->entries[bucket].bucket_head - 1;
}

static inline void set_chain_head(struct flow_table *t, uint32_t bucket, uint32_t i)
{
	t->entries[bucket].bucket_head = i + 1;
}

/* Flows outside tunnels never touch the segment array's cache line. */
static inline uint64_t entry_segment(const struct flow_table *t, uint32_t i)
{
	return (t->entries[i].flags & FLOW_SEGMENT) ? t->segment[i] : 0;
}

static uint32_t entry_bucket(const struct flow_table *t, uint32_t i)
{
	const struct flow_entry *e = &t->entries[i];
	uint8_t src[16], dst[16];

	entry_addresses(t, i, src, dst);
	return bucket_of(t, key_hash(t, src, dst, e->port, e->protocol, e->vlan_id,
				     e->inner_vlan_id, e->source, e->flags & FLOW_IPV6,
				     entry_segment(t, i)));
}

uint32_t flow_table_bucket(const struct flow_table *t, const struct packet *p)
{
	uint16_t port[2];

	key_ports(p, port);
	return bucket_of(t, key_hash(t, p->src, p->dst, port, p->protocol, p->vlan_id,
				     p->inner_vlan_id, p->source, p->ip_version == 6,
				     p->segment_id));
}

static inline int same16(const uint8_t *a, const uint8_t *b)
{
	return load64(a) == load64(b) && load64(a + 8) == load64(b + 8);
}

/* Entry i's source is src and its destination dst?  An IPv6 entry reads
 * the pool only when the digest of both addresses agrees. */
static inline int addresses_match(const struct flow_table *t, uint32_t i, const uint8_t *src,
				  const uint8_t *dst)
{
	const struct flow_entry *e = &t->entries[i];

	if (e->flags & FLOW_IPV6) {
		const struct flow_addr6 *a = &t->addr6.slots[e->addr4[0]];

		return e->addr4[1] == addr6_digest(src, dst) && same16(a->src, src) &&
		       same16(a->dst, dst);
	}
	return memcmp(&e->addr4[0], src, 4) == 0 && memcmp(&e->addr4[1], dst, 4) == 0;
}

/* 1: same direction, -1: the reverse direction, 0: another flow. */
static inline __attribute__((always_inline)) int entry_match(const struct flow_table *t, uint32_t i, const struct packet *p,
		       const uint16_t port[2], int reverse_port)
{
	const struct flow_entry *e = &t->entries[i];

	if (e->protocol != p->protocol || e->source != p->source || e->vlan_id != p->vlan_id ||
	    e->inner_vlan_id != p->inner_vlan_id || ((e->flags & FLOW_IPV6) != 0) != (p->ip_version == 6) ||
	    entry_segment(t, i) != p->segment_id)
		return 0;
	if (e->port[0] == port[0] && e->port[1] == port[1] && addresses_match(t, i, p->src, p->dst))
		return 1;
	if (reverse_port >= 0 && e->port[0] == (is_icmp(p->protocol) ? port[0] : port[1]) &&
	    e->port[1] == reverse_port && addresses_match(t, i, p->dst, p->src))
		return -1;
	return 0;
}

/* The entry matching in the wanted direction (0: either).  A reverse
 * match passed on the way is noted in *reverse, which saves new flows a
 * second walk of the chain. */
static uint32_t find(const struct flow_table *t, uint32_t bucket, const struct packet *p,
		     const uint16_t port[2], int want, int reverse_port, uint32_t *reverse)
{
	uint32_t i;

	for (i = chain_head(t, bucket); i != FLOW_NONE; i = t->entries[i].bucket_next) {
		int match = entry_match(t, i, p, port, reverse_port);

		if (match && (want == 0 || match == want))
			return i;
		if (match < 0 && reverse)
			*reverse = i;
	}
	return FLOW_NONE;
}

uint32_t flow_table_lookup(const struct flow_table *t, const struct packet *p, int either_direction)
{
	uint16_t port[2];
	int reverse_port;

	key_ports(p, port);
	if (is_icmp(p->protocol))
		reverse_port = icmp_reply(p->protocol, port[1]);
	else
		reverse_port = p->protocol == PROTO_ESP ? -1 : port[0];
	return find(t, flow_table_bucket(t, p), p, port, either_direction ? 0 : 1, reverse_port, NULL);
}

static inline int is_active(const struct flow_entry *e)
{
	return e->list == LIST_ANSWERED || e->list == LIST_UNANSWERED || e->list == LIST_CLOSING;
}

/* ---- lists ---- */

static inline __attribute__((always_inline)) void list_remove(struct flow_table *t, uint32_t i)
{
	struct flow_entry *e = &t->entries[i];
	struct flow_list_ends *l = &t->lists[e->list];

	if (e->list_prev != FLOW_NONE)
		t->entries[e->list_prev].list_next = e->list_next;
	else
		l->head = e->list_next;
	if (e->list_next != FLOW_NONE)
		t->entries[e->list_next].list_prev = e->list_prev;
	else
		l->tail = e->list_prev;
	l->count--;
}

static inline __attribute__((always_inline)) void list_push(struct flow_table *t, uint32_t i, enum flow_list list)
{
	struct flow_entry *e = &t->entries[i];
	struct flow_list_ends *l = &t->lists[list];

	e->list = (uint8_t)list;
	e->list_prev = FLOW_NONE;
	e->list_next = l->head;
	if (l->head != FLOW_NONE)
		t->entries[l->head].list_prev = i;
	else
		l->tail = i;
	l->head = i;
	l->count++;
}

static inline __attribute__((always_inline)) void list_move(struct flow_table *t, uint32_t i, enum flow_list list)
{
	if (t->entries[i].list == list && t->lists[list].head == i)
		return;
	list_remove(t, i);
	list_push(t, i, list);
}

/* ---- times ---- */

static inline uint64_t entry_first(const struct flow_table *t, uint32_t i)
{
	uint64_t first = t->entries[i].last_ms - t->entries[i].duration_ms;

	if (t->reverse && t->reverse[i].packets && t->reverse[i].first_ms < first)
		first = t->reverse[i].first_ms;
	return first;
}

static inline uint64_t entry_last(const struct flow_table *t, uint32_t i)
{
	uint64_t last = t->entries[i].last_ms;

	if (t->reverse && t->reverse[i].last_ms > last)
		last = t->reverse[i].last_ms;
	return last;
}

/* Unanswered and closing flows end sooner than idle ones, never later: an
 * idle timeout set below them applies to them too. */
static uint32_t list_timeout(const struct flow_table *t, enum flow_list list)
{
	uint32_t idle = t->idle_timeout_ms;

	switch (list) {
	case LIST_UNANSWERED:
		return t->unanswered_timeout_ms < idle ? t->unanswered_timeout_ms : idle;
	case LIST_CLOSING:
		return t->tcp_end_grace_ms < idle ? t->tcp_end_grace_ms : idle;
	default:
		return idle;
	}
}

/* ---- expiry ---- */

/* From its active list to the export queue; out of its hash chain first
 * (bucket: the chain it is in, FLOW_NONE: not known, or no chains left). */
static void expire_in_bucket(struct flow_table *t, uint32_t i, uint8_t reason, uint32_t bucket)
{
	struct flow_entry *e = &t->entries[i];

	if (bucket != FLOW_NONE && chain_head(t, bucket) == i) {
		set_chain_head(t, bucket, e->bucket_next);
	} else if (bucket != FLOW_NONE) {
		uint32_t *link = &t->entries[chain_head(t, bucket)].bucket_next;

		while (*link != i)
			link = &t->entries[*link].bucket_next;
		*link = e->bucket_next;
	}
	e->bucket_next = FLOW_NONE;

	list_remove(t, i);
	if (e->flags & FLOW_IPV6)
		t->addr6.active--;
	e->end_reason = reason;
	t->expired[reason]++;
	list_push(t, i, LIST_PENDING);
}

static void expire_entry(struct flow_table *t, uint32_t i, uint8_t reason)
{
	expire_in_bucket(t, i, reason, entry_bucket(t, i));
}

static uint8_t timeout_reason(enum flow_list list)
{
	return list == LIST_CLOSING ? FP_END_OF_FLOW : FP_END_IDLE_TIMEOUT;
}

void flow_table_expire(struct flow_table *t, uint64_t now_ms)
{
	enum flow_list list;

	for (list = LIST_ANSWERED; list <= LIST_CLOSING; list++) {
		uint64_t timeout = list_timeout(t, list);
		uint32_t i;

		while ((i = t->lists[list].tail) != FLOW_NONE && now_ms >= entry_last(t, i) + timeout)
			expire_entry(t, i, timeout_reason(list));
	}
}

void flow_table_expire_all(struct flow_table *t, uint8_t end_reason)
{
	int chains_emptied = flow_table_active(t) >= t->slots / 8;
	enum flow_list list;
	uint32_t i;

	/* A table fuller than an eighth: one sweep through the slots empties
	 * every chain (only active flows are in chains), cheaper than a hash
	 * and a chain walk, two misses, a flow. */
	if (chains_emptied)
		for (i = 0; i < t->slots; i++)
			if (t->entries[i].bucket_head)  /* pages never written stay untouched */
				t->entries[i].bucket_head = 0;
	for (list = LIST_ANSWERED; list <= LIST_CLOSING; list++)
		while ((i = t->lists[list].tail) != FLOW_NONE)
			expire_in_bucket(t, i, end_reason, chains_emptied ? FLOW_NONE : entry_bucket(t, i));
}

/* Lists are ordered by the second of the last packet (see the end of
 * flow_table_account); within the oldest second, the oldest to the
 * millisecond among the first few. */
#define EVICTION_CANDIDATES 16

static uint32_t evict_oldest(struct flow_table *t)
{
	uint32_t victim = FLOW_NONE;
	uint64_t victim_last = UINT64_MAX;  /* entry_last(victim), kept: each table-full new flow pays this */
	enum flow_list list;

	for (list = LIST_ANSWERED; list <= LIST_CLOSING; list++) {
		uint32_t i = t->lists[list].tail;
		int candidates = EVICTION_CANDIDATES;

		if (i == FLOW_NONE)
			continue;
		for (uint16_t second = t->entries[i].list_second;
		     i != FLOW_NONE && t->entries[i].list_second == second && candidates--;
		     i = t->entries[i].list_prev) {
			uint64_t last = entry_last(t, i);

			if (victim == FLOW_NONE || last < victim_last) {
				victim = i;
				victim_last = last;
			}
		}
	}
	if (victim != FLOW_NONE)
		expire_entry(t, victim, FP_END_LACK_OF_RESOURCES);
	return victim;
}

/* The IPv6 pool's evict policy: the oldest IPv6 flow among the first few
 * of each list's oldest (bounded: IPv4 flows may lie in between), else the
 * next active IPv6 flow in pool order (bounded: the pool is full, and all
 * but the reserve's pending records are active flows). */
#define IPV6_EVICTION_REACH 64

static uint32_t evict_oldest_ipv6(struct flow_table *t)
{
	uint32_t victim = FLOW_NONE;
	enum flow_list list;

	for (list = LIST_ANSWERED; list <= LIST_CLOSING; list++) {
		uint32_t i = t->lists[list].tail;
		int reach = IPV6_EVICTION_REACH;

		while (i != FLOW_NONE && !(t->entries[i].flags & FLOW_IPV6) && --reach)
			i = t->entries[i].list_prev;
		if (i != FLOW_NONE && (t->entries[i].flags & FLOW_IPV6) &&
		    (victim == FLOW_NONE || entry_last(t, i) < entry_last(t, victim)))
			victim = i;
	}
	for (uint32_t step = 0; victim == FLOW_NONE && step < t->addr6.capacity; step++) {
		uint32_t owner = addr6_owner(&t->addr6, t->addr6.hand);

		if (++t->addr6.hand == t->addr6.capacity)
			t->addr6.hand = 0;
		if (owner != FLOW_NONE && is_active(&t->entries[owner]))
			victim = owner;
	}
	if (victim != FLOW_NONE) {
		expire_entry(t, victim, FP_END_LACK_OF_RESOURCES);
		t->addr6.evicted++;
	}
	return victim;
}

/* ---- accounting ---- */

static inline int has_free_slot(const struct flow_table *t)
{
	return t->free_head != FLOW_NONE || t->fresh < t->slots;
}

/* A drained slot, else the next never used (flow_table.h: the order). */
static inline uint32_t take_slot(struct flow_table *t)
{
	uint32_t i = t->free_head;

	if (i == FLOW_NONE) {
		if (t->fresh + 1 < t->slots)
			__builtin_prefetch(&t->entries[t->fresh + 1], 1);
		return t->fresh++;
	}
	t->free_head = t->entries[i].bucket_next;
	if (t->free_head != FLOW_NONE)  /* the next new flow's slot: a miss taken now, not then */
		__builtin_prefetch(&t->entries[t->free_head], 1);
	return i;
}

static uint32_t create_entry(struct flow_table *t, uint32_t bucket, const struct packet *p,
			     const uint16_t port[2], uint64_t first_ms, uint64_t last_ms)
{
	uint32_t i = take_slot(t);
	struct flow_entry *e = &t->entries[i];
	uint32_t bucket_head = e->bucket_head;  /* another chain's, kept */

	memset(e, 0, sizeof(*e));
	e->bucket_head = bucket_head;
	if (p->ip_version == 6) {
		e->flags = FLOW_IPV6;
		e->addr4[0] = addr6_take(&t->addr6, i, p->src, p->dst);
		e->addr4[1] = addr6_digest(p->src, p->dst);
		t->addr6.active++;
	} else {
		memcpy(&e->addr4[0], p->src, 4);
		memcpy(&e->addr4[1], p->dst, 4);
	}
	if (p->segment_id && t->segment) {
		e->flags |= FLOW_SEGMENT;
		t->segment[i] = p->segment_id;
	}
	e->port[0] = port[0];
	e->port[1] = port[1];
	e->protocol = p->protocol;
	e->vlan_id = p->vlan_id;
	e->inner_vlan_id = p->inner_vlan_id;
	e->source = p->source;
	e->tos = p->tos;
	e->last_ms = last_ms;
	e->duration_ms = (uint32_t)(last_ms - first_ms);
	e->list_second = (uint16_t)(last_ms / 1000);
	if (t->reverse)
		memset(&t->reverse[i], 0, sizeof(t->reverse[i]));
	if (t->icmp_errors)
		memset(&t->icmp_errors[i], 0, sizeof(t->icmp_errors[i]));
	if (t->checksum_errors)
		t->checksum_errors[i] = 0;
	if (t->macs) {   /* out of the hot slot: only flows that start touch it */
		memcpy(t->macs + (size_t)i * t->mac_stride, p->link_addresses, 12);
		if (t->mac_stride > 12)
			memset(t->macs + (size_t)i * t->mac_stride + 12, 0, 12);
	}

	e->bucket_next = chain_head(t, bucket);
	set_chain_head(t, bucket, i);
	e->list = LIST_FREE;
	list_push(t, i, LIST_UNANSWERED);
	t->created++;
	if (flow_table_active(t) > t->peak)
		t->peak = flow_table_active(t);
	return i;
}

static void mark_answered(struct flow_table *t, uint32_t i)
{
	if (t->entries[i].list == LIST_UNANSWERED)
		list_move(t, i, LIST_ANSWERED);
}

static void mark_closing(struct flow_table *t, uint32_t i)
{
	if (i != FLOW_NONE)
		list_move(t, i, LIST_CLOSING);
}

/* Is entry i (active) a view of p's TCP connection, either way, at any
 * capture?  Views a tcp_end state lists may have ended and been reused. */
static int same_connection(const struct flow_table *t, uint32_t i, const struct packet *p)
{
	const struct flow_entry *e = &t->entries[i];

	if (e->list == LIST_FREE || e->list == LIST_PENDING || e->protocol != PROTO_TCP ||
	    e->vlan_id != p->vlan_id || e->inner_vlan_id != p->inner_vlan_id ||
	    ((e->flags & FLOW_IPV6) != 0) != (p->ip_version == 6) ||
	    entry_segment(t, i) != p->segment_id)
		return 0;
	if (e->port[0] == p->src_port && e->port[1] == p->dst_port &&
	    addresses_match(t, i, p->src, p->dst))
		return 1;
	return e->port[0] == p->dst_port && e->port[1] == p->src_port &&
	       addresses_match(t, i, p->dst, p->src);
}

/* Both FINs acknowledged, or a RST: entry i (its segment accounted) and
 * the other direction's entries leave now (FP_END_OF_FLOW). */
static int end_by_sequence(struct flow_table *t, uint32_t i, const struct packet *p,
			   uint64_t now_ms, uint32_t reverse)
{
	struct tcp_end_views others;
	int v;

	if (tcp_end_segment(&t->ends, p, i, now_ms, t->tcp_end_grace_ms, &others) != TCP_END_NOW)
		return 0;
	expire_entry(t, i, FP_END_OF_FLOW);
	for (v = 0; v < others.count; v++)
		if (same_connection(t, others.entries[v], p))
			expire_entry(t, others.entries[v], FP_END_OF_FLOW);
	/* a RST's reverse may have sent nothing the state saw */
	if ((p->tcp_flags & TCP_RST) && reverse != FLOW_NONE && same_connection(t, reverse, p))
		expire_entry(t, reverse, FP_END_OF_FLOW);
	return 1;
}

/* A packet for entry i that the entry must not absorb: it is past one of
 * its deadlines, or a new connection reuses a closing one's ports. */
static int entry_is_over(const struct flow_table *t, uint32_t i, const struct packet *p,
			 uint64_t packets, uint64_t first_ms, uint64_t last_ms, uint8_t *reason)
{
	const struct flow_entry *e = &t->entries[i];

	if (e->packets > UINT32_MAX - packets) {  /* the entry's 32-bit count is full */
		*reason = FP_END_ACTIVE_TIMEOUT;
		return 1;
	}
	if (last_ms >= entry_last(t, i) + list_timeout(t, e->list)) {
		*reason = timeout_reason(e->list);
		return 1;
	}
	if (e->list == LIST_CLOSING && p->protocol == PROTO_TCP &&
	    (p->tcp_flags & (TCP_SYN | 0x10)) == TCP_SYN) {
		*reason = FP_END_OF_FLOW;
		return 1;
	}
	if (last_ms >= entry_first(t, i) + t->active_timeout_ms && first_ms >= entry_first(t, i)) {
		*reason = FP_END_ACTIVE_TIMEOUT;
		return 1;
	}
	return 0;
}

enum account_result flow_table_account(struct flow_table *t, const struct packet *p,
				       uint64_t packets, uint64_t octets,
				       uint64_t first_ms, uint64_t last_ms)
{
	uint16_t port[2];
	uint16_t second = (uint16_t)(last_ms / 1000);
	uint32_t bucket, i, reverse = FLOW_NONE;
	int reverse_port, direction = 1, reverse_known;
	uint8_t reason;

	key_ports(p, port);
	if (is_icmp(p->protocol))
		reverse_port = icmp_reply(p->protocol, port[1]);
	else if (p->protocol == PROTO_ESP)
		reverse_port = -1;
	else
		reverse_port = port[0];
	bucket = p->bucket_ready ? p->bucket : flow_table_bucket(t, p);

	i = find(t, bucket, p, port, t->bidirectional ? 0 : 1, reverse_port, &reverse);
	reverse_known = i == FLOW_NONE;  /* the whole chain was walked */
	if (i != FLOW_NONE && entry_is_over(t, i, p, packets, first_ms, last_ms, &reason)) {
		expire_in_bucket(t, i, reason, bucket);
		i = FLOW_NONE;
	}
	if (i != FLOW_NONE && t->bidirectional)
		direction = entry_match(t, i, p, port, reverse_port);

	if (i == FLOW_NONE) {
		if (p->protocol == PROTO_TCP && !(p->tcp_flags & TCP_SYN) &&
		    tcp_end_absorbs(&t->ends, p, last_ms))
			return ACCOUNT_AFTER_END;
		if (flow_table_active(t) >= t->max_flows) {
			if (t->overflow_policy == FP_OVERFLOW_REFUSE_NEW)
				return ACCOUNT_TABLE_FULL;
			/* the reverse flow noted above may be the one evicted: it now
			 * waits for export and must not be touched again */
			if (evict_oldest(t) == reverse)
				reverse = FLOW_NONE;
		}
		if (p->ip_version == 6 && t->addr6.active >= t->addr6.max_active) {
			uint32_t victim = FLOW_NONE;

			if (t->overflow_policy != FP_OVERFLOW_REFUSE_NEW)
				victim = evict_oldest_ipv6(t);
			if (victim == FLOW_NONE) {
				t->addr6.refused++;
				return ACCOUNT_TABLE_FULL;
			}
			if (victim == reverse)
				reverse = FLOW_NONE;
		}
		if (!has_free_slot(t) || (p->ip_version == 6 && !addr6_has_free(&t->addr6)))
			return ACCOUNT_NO_SLOT;
		i = create_entry(t, bucket, p, port, first_ms, last_ms);
		if (!t->bidirectional && reverse_port >= 0) {
			if (!reverse_known)
				reverse = find(t, bucket, p, port, -1, reverse_port, NULL);
			reverse_known = 1;
			if (reverse != FLOW_NONE) {
				mark_answered(t, i);
				mark_answered(t, reverse);
			}
		}
	}

	if (direction > 0) {
		struct flow_entry *e = &t->entries[i];
		uint64_t first = e->last_ms - e->duration_ms;

		if (first_ms < first)
			first = first_ms;
		if (last_ms > e->last_ms)
			e->last_ms = last_ms;
		e->duration_ms = (uint32_t)(e->last_ms - first);
		e->packets += packets;
		e->octets += octets;
		e->tcp_flags |= p->tcp_flags;
	} else {
		struct flow_reverse *r = &t->reverse[i];

		if (!r->packets && t->macs)
			memcpy(t->macs + (size_t)i * t->mac_stride + 12, p->link_addresses, 12);
		if (!r->packets || first_ms < r->first_ms)
			r->first_ms = first_ms;
		if (last_ms > r->last_ms)
			r->last_ms = last_ms;
		r->packets += packets;
		r->octets += octets;
		r->tcp_flags |= p->tcp_flags;
		mark_answered(t, i);
	}

	if (p->protocol == PROTO_TCP && (p->tcp_flags & (TCP_FIN | TCP_RST))) {
		struct flow_entry *e = &t->entries[i];

		if (!t->bidirectional && !reverse_known)
			reverse = find(t, bucket, p, port, -1, reverse_port, NULL);
		if (p->tcp_flags & TCP_RST) {
			mark_closing(t, i);
			mark_closing(t, reverse);
		} else if (t->bidirectional) {
			e->flags |= direction > 0 ? FLOW_FIN : FLOW_REVERSE_FIN;
			if ((e->flags & (FLOW_FIN | FLOW_REVERSE_FIN)) == (FLOW_FIN | FLOW_REVERSE_FIN))
				mark_closing(t, i);
		} else {
			e->flags |= FLOW_FIN;
			if (reverse != FLOW_NONE && (t->entries[reverse].flags & FLOW_FIN)) {
				mark_closing(t, i);
				mark_closing(t, reverse);
			}
		}
	}
	/* the end by sequence numbers (tcp_end.h): segments with FIN or RST,
	 * and every segment of an entry that has seen a FIN (the ACKs) */
	if (p->protocol == PROTO_TCP && ((p->tcp_flags & (TCP_FIN | TCP_RST)) ||
					 (t->entries[i].flags & (FLOW_FIN | FLOW_REVERSE_FIN))) &&
	    end_by_sequence(t, i, p, last_ms, reverse))
		return ACCOUNT_OK;
	/* Moving to the list head on every packet would touch two other
	 * entries (cache misses) each time; once a second keeps the lists in
	 * order to within a second, which only shifts when the scan reports a
	 * flow: each packet checks its own flow's deadlines exactly. */
	if (t->entries[i].list_second != second) {
		list_move(t, i, t->entries[i].list);
		t->entries[i].list_second = second;
	}
	return ACCOUNT_OK;
}

/* ---- draining ---- */

static void fill_record(const struct flow_table *t, uint32_t i, const struct interface_slot *slots,
			struct fp_record *r)
{
	const struct flow_entry *e = &t->entries[i];

	memset(r, 0, sizeof(*r));
	entry_addresses(t, i, r->src_addr, r->dst_addr);
	r->ip_version = (e->flags & FLOW_IPV6) ? 6 : 4;
	r->protocol = e->protocol;
	if (e->protocol == PROTO_ESP) {
		r->ipsec_spi = (uint32_t)e->port[0] << 16 | e->port[1];
	} else {
		r->src_port = e->port[0];
		r->dst_port = e->port[1];
	}
	r->packets = e->packets;
	r->octets = e->octets;
	r->flow_start_ms = e->last_ms - e->duration_ms;
	r->flow_end_ms = e->last_ms;
	r->tcp_flags = e->tcp_flags;
	r->tos = e->tos;
	r->vlan_id = e->vlan_id;
	r->inner_vlan_id = e->inner_vlan_id;
	r->layer2_segment_id = entry_segment(t, i);
	r->ifindex = slots[e->source].ifindex;
	r->direction = slots[e->source].direction;
	if (e->list == LIST_PENDING)
		r->end_reason = e->end_reason;
	if (t->reverse && t->reverse[i].packets) {
		r->reverse_packets = t->reverse[i].packets;
		r->reverse_octets = t->reverse[i].octets;
		r->reverse_start_ms = t->reverse[i].first_ms;
		r->reverse_end_ms = t->reverse[i].last_ms;
		r->reverse_tcp_flags = t->reverse[i].tcp_flags;
	}
	if (t->icmp_errors) {
		r->icmp_errors = t->icmp_errors[i].errors;
		r->icmp_error_type_code = t->icmp_errors[i].last_type_code;
	}
	if (t->macs) {   /* link addresses: destination first, as on the wire */
		const uint8_t *m = t->macs + (size_t)i * t->mac_stride;

		memcpy(r->dst_mac, m, 6);
		memcpy(r->src_mac, m + 6, 6);
		if (t->mac_stride > 12) {
			memcpy(r->reverse_dst_mac, m + 12, 6);
			memcpy(r->reverse_src_mac, m + 18, 6);
		}
	}
	if (t->checksum_errors)
		r->checksum_errors = t->checksum_errors[i];
	if (layer2_is_key(r->layer2_segment_id))
		layer2_record(r);
}

int flow_table_drain(struct flow_table *t, const struct interface_slot *slots,
		     struct fp_record *out, int max)
{
	int n = 0;
	uint32_t i;

	while (n < max && (i = t->lists[LIST_PENDING].tail) != FLOW_NONE) {
		struct flow_entry *e = &t->entries[i];

		fill_record(t, i, slots, &out[n++]);
		list_remove(t, i);
		if (e->flags & FLOW_IPV6)
			addr6_give_back(&t->addr6, e->addr4[0]);
		e->list = LIST_FREE;
		e->bucket_next = t->free_head;
		t->free_head = i;
	}
	return n;
}


static int prefix_matches(const uint8_t *address, const uint8_t *prefix, unsigned bits)
{
	unsigned whole = bits / 8, rest = bits % 8;

	if (memcmp(address, prefix, whole))
		return 0;
	return !rest || ((address[whole] ^ prefix[whole]) & (0xff00 >> rest) & 0xff) == 0;
}

static int filter_matches(const struct fp_record *r, const struct fp_flow_filter *f)
{
	if (f->ip_version && f->ip_version != r->ip_version)
		return 0;
	if (f->protocol && f->protocol != r->protocol)
		return 0;
	if (f->port && f->port != r->src_port && f->port != r->dst_port)
		return 0;
	if (f->ifindex && f->ifindex != r->ifindex)
		return 0;
	if (f->prefix_length && !prefix_matches(r->src_addr, f->address, f->prefix_length) &&
	    !prefix_matches(r->dst_addr, f->address, f->prefix_length))
		return 0;
	return 1;
}

int flow_table_snapshot(const struct flow_table *t, const struct interface_slot *slots,
			const struct fp_flow_filter *filter, struct fp_record *out, int max,
			uint32_t *cursor)
{
	int n = 0;

	for (; *cursor < t->fresh && n < max; (*cursor)++) {
		if (!is_active(&t->entries[*cursor]))
			continue;
		fill_record(t, *cursor, slots, &out[n]);
		if (!filter || filter_matches(&out[n], filter))
			n++;
	}
	return n;
}

/* Does a rank before b?  Biggest first, ties older first; by age, oldest
 * first, ties biggest first (the order `flowprobe flows` shows). */
static int ranks_before(const struct fp_record *a, const struct fp_record *b, int sort)
{
	uint64_t ka = sort == FP_SORT_PACKETS ? a->packets : a->octets;
	uint64_t kb = sort == FP_SORT_PACKETS ? b->packets : b->octets;

	if (sort == FP_SORT_AGE) {
		if (a->flow_start_ms != b->flow_start_ms)
			return a->flow_start_ms < b->flow_start_ms;
		return a->octets > b->octets;
	}
	if (ka != kb)
		return ka > kb;
	return a->flow_start_ms < b->flow_start_ms;
}

/* out[0..n) as a heap whose root ranks last: the one a better flow replaces */
static void heap_sift_down(struct fp_record *heap, int n, int i, int sort)
{
	for (;;) {
		int child = 2 * i + 1, last = i;
		struct fp_record swap;

		if (child < n && ranks_before(&heap[last], &heap[child], sort))
			last = child;
		if (child + 1 < n && ranks_before(&heap[last], &heap[child + 1], sort))
			last = child + 1;
		if (last == i)
			return;
		swap = heap[i];
		heap[i] = heap[last];
		heap[last] = swap;
		i = last;
	}
}

static void heap_sift_up(struct fp_record *heap, int i, int sort)
{
	while (i > 0) {
		int parent = (i - 1) / 2;
		struct fp_record swap;

		if (!ranks_before(&heap[parent], &heap[i], sort))
			return;
		swap = heap[i];
		heap[i] = heap[parent];
		heap[parent] = swap;
		i = parent;
	}
}

int flow_table_top(const struct flow_table *t, const struct interface_slot *slots,
		   const struct fp_flow_filter *filter, int sort, struct fp_record *out, int limit,
		   uint64_t *matched)
{
	struct fp_record r;
	int n = 0, end;
	uint32_t i;

	*matched = 0;
	if (limit <= 0)
		return 0;
	for (i = 0; i < t->fresh; i++) {
		if (!is_active(&t->entries[i]))
			continue;
		fill_record(t, i, slots, &r);
		if (filter && !filter_matches(&r, filter))
			continue;
		(*matched)++;
		if (n < limit) {
			out[n] = r;
			heap_sift_up(out, n++, sort);
		} else if (ranks_before(&r, &out[0], sort)) {
			out[0] = r;
			heap_sift_down(out, n, 0, sort);
		}
	}
	/* heap sort: the last-ranked root goes to the end each time */
	for (end = n - 1; end > 0; end--) {
		struct fp_record swap = out[0];

		out[0] = out[end];
		out[end] = swap;
		heap_sift_down(out, end, 0, sort);
	}
	return n;
}

int flow_table_expire_matching(struct flow_table *t, const struct interface_slot *slots,
			       const struct fp_flow_filter *filter)
{
	struct fp_record r;
	uint32_t i;
	int n = 0;

	for (i = 0; i < t->fresh; i++) {
		if (!is_active(&t->entries[i]))
			continue;
		fill_record(t, i, slots, &r);
		if (filter_matches(&r, filter)) {
			expire_entry(t, i, FP_END_FORCED);
			n++;
		}
	}
	return n;
}

/* ---- life cycle ---- */

static uint32_t export_reserve(uint32_t max_flows)
{
	/* enough for what one dispatch can expire before the caller drains */
	uint32_t reserve = max_flows / 64;

	if (reserve < 256)  /* a batch may add 2 * BATCH_SIZE before the check */
		reserve = 256;
	if (reserve > 1024)
		reserve = 1024;
	return reserve;
}

/* Each array's bytes, as table_alloc and table_free need them. */
static size_t entries_bytes(const struct flow_table *t)
{
	return (size_t)t->slots * sizeof(*t->entries);
}

static size_t segment_bytes(const struct flow_table *t)
{
	return (size_t)t->slots * sizeof(*t->segment);
}

static size_t reverse_bytes(const struct flow_table *t)
{
	return (size_t)t->slots * sizeof(*t->reverse);
}

static size_t macs_bytes(const struct flow_table *t)
{
	return (size_t)t->slots * t->mac_stride;
}

static size_t icmp_errors_bytes(const struct flow_table *t)
{
	return (size_t)t->slots * sizeof(*t->icmp_errors);
}

static size_t checksum_errors_bytes(const struct flow_table *t)
{
	return (size_t)t->slots * sizeof(*t->checksum_errors);
}

int flow_table_init(struct flow_table *t, const struct fp_settings *s, uint64_t seed[2])
{
	enum flow_list list;

	memset(t, 0, sizeof(*t));
	t->max_flows = s->max_flows;
	t->slots = s->max_flows + export_reserve(s->max_flows);
	t->seed[0] = seed[0];
	t->seed[1] = seed[1];
	t->idle_timeout_ms = s->idle_timeout_ms;
	t->active_timeout_ms = s->active_timeout_ms;
	t->unanswered_timeout_ms = s->unanswered_timeout_ms;
	t->tcp_end_grace_ms = s->tcp_end_grace_ms;
	t->overflow_policy = s->overflow_policy;
	t->bidirectional = s->bidirectional != 0;
	t->free_head = FLOW_NONE;
	for (list = 0; list < LIST_COUNT; list++)
		t->lists[list].head = t->lists[list].tail = FLOW_NONE;

	/* The whole capacity is reserved now (a failure refuses to start), but
	 * nothing is written: zero is an empty slot, an empty chain and an
	 * empty optional field, so pages become resident as flows use them
	 * (table_memory.h). */
	t->entries = table_alloc(entries_bytes(t));
	if (addr6_pool_init(&t->addr6, addr6_max_active(t->max_flows, s->max_flows_ipv6),
			    t->slots - t->max_flows)) {
		flow_table_free(t);
		return -1;
	}
	/* inner flows are keyed by their tunnel too; layer-2 flows by EtherType */
	if (s->tunnels != FP_TUNNELS_OUTER || s->l2_flows)
		t->segment = table_alloc(segment_bytes(t));
	if (t->bidirectional)
		t->reverse = table_alloc(reverse_bytes(t));
	if (s->verify_checksums)
		t->checksum_errors = table_alloc(checksum_errors_bytes(t));
	if (s->macs) {
		t->mac_stride = t->bidirectional ? 24 : 12;
		t->macs = table_alloc(macs_bytes(t));
	}
	if (s->icmp_errors)
		t->icmp_errors = table_alloc(icmp_errors_bytes(t));
	if (tcp_end_init(&t->ends, t->max_flows, seed) || (s->icmp_errors && !t->icmp_errors)) {
		flow_table_free(t);
		return -1;
	}
	if (!t->entries || (t->bidirectional && !t->reverse) ||
	    (s->macs && !t->macs) || ((s->tunnels || s->l2_flows) && !t->segment) ||
	    (s->verify_checksums && !t->checksum_errors)) {
		flow_table_free(t);
		return -1;
	}

	t->memory_bytes = entries_bytes(t) + (t->segment ? segment_bytes(t) : 0) +
			  (t->reverse ? reverse_bytes(t) : 0) + macs_bytes(t) +
			  (t->checksum_errors ? checksum_errors_bytes(t) : 0) +
			  addr6_pool_bytes(&t->addr6);
	t->memory_bytes += t->ends.memory_bytes + (t->icmp_errors ? icmp_errors_bytes(t) : 0);
	return 0;
}

/* Of memory_bytes, what is in memory now: the arrays' pages written so far
 * (mincore; a small array counts whole). */
uint64_t flow_table_resident_bytes(const struct flow_table *t)
{
	return table_resident(t->entries, entries_bytes(t)) +
	       table_resident(t->segment, segment_bytes(t)) +
	       table_resident(t->reverse, reverse_bytes(t)) +
	       table_resident(t->macs, macs_bytes(t)) +
	       table_resident(t->checksum_errors, checksum_errors_bytes(t)) +
	       table_resident(t->icmp_errors, icmp_errors_bytes(t)) +
	       addr6_pool_resident(&t->addr6) + t->ends.memory_bytes -
	       ((uint64_t)t->ends.mask + 1) * sizeof(*t->ends.states) +
	       table_resident(t->ends.states, ((size_t)t->ends.mask + 1) * sizeof(*t->ends.states));
}

void flow_table_free(struct flow_table *t)
{
	table_free(t->entries, entries_bytes(t));
	t->entries = NULL;
	addr6_pool_free(&t->addr6);
	table_free(t->reverse, reverse_bytes(t));
	t->reverse = NULL;
	table_free(t->macs, macs_bytes(t));
	t->macs = NULL;
	table_free(t->segment, segment_bytes(t));
	t->segment = NULL;
	table_free(t->icmp_errors, icmp_errors_bytes(t));
	t->icmp_errors = NULL;
	tcp_end_free(&t->ends);
	table_free(t->checksum_errors, checksum_errors_bytes(t));
	t->checksum_errors = NULL;
}

/* ---- checksum errors (verify_checksums) ---- */

void flow_table_count_checksum_error(struct flow_table *t, const struct packet *p)
{
	uint16_t port[2];
	int reverse_port;
	uint32_t i;

	if (!t->checksum_errors)
		return;
	key_ports(p, port);
	if (is_icmp(p->protocol))
		reverse_port = icmp_reply(p->protocol, port[1]);
	else
		reverse_port = p->protocol == PROTO_ESP ? -1 : port[0];
	i = find(t, p->bucket_ready ? p->bucket : flow_table_bucket(t, p), p, port,
		 t->bidirectional ? 0 : 1, reverse_port, NULL);
	if (i != FLOW_NONE)
		t->checksum_errors[i]++;
}
