/* The flow table: a fixed array of 64-byte entries, a hash index, and
 * lists ordered by last packet that make expiry cost O(expired).
 *
 * Slots = max_flows active entries + a small export reserve: an expired
 * flow waits in its own slot until it is drained, so expiry never copies
 * and never needs memory. */
#ifndef FLOWPROBE_FLOW_TABLE_H
#define FLOWPROBE_FLOW_TABLE_H

#include <stdint.h>
#include "decode.h"
#include "icmp_error.h"
#include "tcp_end.h"
#include "../_cmeter.h"

#define FLOW_NONE UINT32_MAX

enum flow_list {
	LIST_FREE = 0,
	LIST_ANSWERED,    /* traffic seen both ways: idle timeout */
	LIST_UNANSWERED,  /* one way only so far: the shorter timeout */
	LIST_CLOSING,     /* FIN both ways or RST: end grace */
	LIST_PENDING,     /* expired, waiting to be drained */
	LIST_COUNT,
};

struct flow_entry {
	uint64_t octets;
	uint64_t last_ms;
	uint32_t packets;        /* a flow ends (as by active timeout) before it passes 2^32 - 1 */
	uint32_t addr4[2];       /* IPv4 src/dst; IPv6: [0] its slot in the address pool,
				  * [1] a digest of both addresses (mismatches skip the pool) */
	uint32_t duration_ms;    /* first packet = last_ms - duration_ms */
	uint32_t bucket_next;    /* hash chain, or the free list */
	uint32_t bucket_head;    /* not this flow's: the chain of hash bucket <this index>,
				  * so the index costs no array of its own; stored as
				  * its first entry + 1, so 0 (an untouched page) is
				  * an empty chain (chain_head in flow_table.c) */
	uint32_t list_prev;
	uint32_t list_next;
	uint16_t port[2];        /* ESP: the SPI, high and low half */
	uint16_t vlan_id;
	uint16_t inner_vlan_id;
	uint8_t source;          /* index into the meter's interface list */
	uint8_t protocol;
	uint8_t tos;
	uint8_t tcp_flags;
	uint8_t list : 3;        /* enum flow_list */
	uint8_t flags : 5;       /* FLOW_* */
	uint8_t end_reason;
	uint16_t list_second;    /* when it last moved to its list's head (s, wraps) */
};

#define FLOW_IPV6 0x01
#define FLOW_FIN 0x02
#define FLOW_REVERSE_FIN 0x04
#define FLOW_SEGMENT 0x08  /* an inner flow: its tunnel's segment is in segment[] */

/* Reverse direction of a bidirectional entry (allocated only in that mode). */
struct flow_reverse {
	uint64_t packets;
	uint64_t octets;
	uint64_t first_ms;
	uint64_t last_ms;
	uint8_t tcp_flags;
};

struct flow_addr6 {
	uint8_t src[16];
	uint8_t dst[16];
};

struct flow_list_ends {
	uint32_t head;  /* most recent */
	uint32_t tail;  /* oldest */
	uint32_t count;
};

/* IPv6 flows keep their addresses in a pool of their own, so an IPv4 flow
 * slot is the 64-byte entry and nothing else.  The pool holds
 * max_active IPv6 flows plus the export reserve; a free slot's first 4
 * bytes link the free list. */
struct flow_addr6_pool {
	struct flow_addr6 *slots;
	uint32_t *owner;         /* the entry holding each slot, + 1 (0: free) */
	uint32_t hand;           /* where the next eviction by pool order looks */
	uint32_t capacity;
	uint32_t max_active;     /* IPv6 flows active at once; the overflow policy beyond */
	uint32_t active;
	uint32_t free_head;      /* slots given back (their first 4 bytes link them) */
	uint64_t refused;        /* new IPv6 flows counted as dropped: pool full */
	uint64_t evicted;        /* IPv6 flows ended early to make room (evict policy) */
	uint32_t fresh;          /* slots from here on never used: untouched, zero */
};

struct flow_table {
	struct flow_entry *entries;
	struct flow_addr6_pool addr6;
	struct flow_reverse *reverse;  /* NULL unless bidirectional */
	uint8_t *macs;                 /* NULL unless settings.macs: mac_stride bytes a slot,
					* the first frame's link addresses (then the reverse's) */
	uint32_t mac_stride;
	uint64_t *segment;             /* read only for FLOW_SEGMENT entries */
	uint32_t slots;          /* and as many hash buckets (entries[].bucket_head) */
	uint32_t max_flows;
	uint32_t free_head;
	struct flow_list_ends lists[LIST_COUNT];
	uint64_t seed[2];
	uint64_t memory_bytes;

	uint32_t idle_timeout_ms;
	uint32_t active_timeout_ms;
	uint32_t unanswered_timeout_ms;
	uint32_t tcp_end_grace_ms;
	uint32_t overflow_policy;
	int bidirectional;

	uint64_t created;
	uint64_t expired[FP_END_LACK_OF_RESOURCES + 1];  /* by flowEndReason */
	uint64_t peak;

	struct tcp_end_table ends;                 /* TCP ends by sequence numbers */
	struct icmp_error_count *icmp_errors;      /* NULL unless settings.icmp_errors */
	uint32_t *checksum_errors;     /* NULL unless settings.verify_checksums: per slot */
	/* Slots are taken from free_head (drained ones, linked by bucket_next)
	 * first, then from fresh on: the slots never used, untouched and zero
	 * (table_memory.h), in index order.  The order is the one a free list
	 * of all slots would give, so a flow's slot is the same on every arch. */
	uint32_t fresh;
};

enum account_result {
	ACCOUNT_OK = 0,
	ACCOUNT_TABLE_FULL,      /* refuse policy */
	ACCOUNT_NO_SLOT,         /* every spare slot holds an undrained record */
	ACCOUNT_AFTER_END,       /* a late segment of a TCP connection that ended (tcp_end.h) */
};

int flow_table_init(struct flow_table *t, const struct fp_settings *settings, uint64_t seed[2]);
void flow_table_free(struct flow_table *t);
/* Of memory_bytes (reserved at init), the bytes in memory now. */
uint64_t flow_table_resident_bytes(const struct flow_table *t);

/* Counts one packet (or, with packets > 1, fragments held for it) into its
 * flow, creating or expiring entries as needed. */
enum account_result flow_table_account(struct flow_table *t, const struct packet *pkt,
				       uint64_t packets, uint64_t octets,
				       uint64_t first_ms, uint64_t last_ms);

/* For batches: hash a packet's key, and warm the cache for its lookup a few
 * packets ahead (the table is far larger than the caches). */
uint32_t flow_table_bucket(const struct flow_table *t, const struct packet *p);

static inline void flow_table_prefetch_bucket(const struct flow_table *t, uint32_t bucket)
{
	__builtin_prefetch(&t->entries[bucket].bucket_head);
}

static inline void flow_table_prefetch_entry(const struct flow_table *t, uint32_t bucket)
{
	uint32_t i = t->entries[bucket].bucket_head - 1;  /* chain_head() in flow_table.c */

	if (i != FLOW_NONE)
		__builtin_prefetch(&t->entries[i]);
}

/* The active entry with p's key (either_direction: its reverse too), or
 * FLOW_NONE: for lookups that count nothing (ICMP errors' flows). */
uint32_t flow_table_lookup(const struct flow_table *t, const struct packet *p, int either_direction);

void flow_table_expire(struct flow_table *t, uint64_t now_ms);
void flow_table_expire_all(struct flow_table *t, uint8_t end_reason);
/* What a flow's 8-bit interface slot stands for. */
struct interface_slot {
	uint32_t ifindex;
	uint8_t direction;
	uint8_t tunnels;  /* FP_TUNNELS_*: how its frames are decoded */
	uint8_t l2_flows; /* non-IP frames as layer-2 flows (l2_flow.h) */
};

int flow_table_drain(struct flow_table *t, const struct interface_slot *slots,
		     struct fp_record *out, int max);
int flow_table_snapshot(const struct flow_table *t, const struct interface_slot *slots,
			const struct fp_flow_filter *filter, struct fp_record *out, int max,
			uint32_t *cursor);
int flow_table_top(const struct flow_table *t, const struct interface_slot *slots,
		   const struct fp_flow_filter *filter, int sort, struct fp_record *out, int limit,
		   uint64_t *matched);
/* verify_checksums: one more wrong checksum on the packet's flow (just
 * accounted); a second lookup, paid by bad packets only. */
void flow_table_count_checksum_error(struct flow_table *t, const struct packet *p);
int flow_table_expire_matching(struct flow_table *t, const struct interface_slot *slots,
			       const struct fp_flow_filter *filter);

static inline uint32_t flow_table_active(const struct flow_table *t)
{
	return t->lists[LIST_ANSWERED].count + t->lists[LIST_UNANSWERED].count +
	       t->lists[LIST_CLOSING].count;
}

static inline uint32_t flow_table_pending(const struct flow_table *t)
{
	return t->lists[LIST_PENDING].count;
}

/* Spare slots beyond max_flows; half of them full means: drain now. */
static inline uint32_t flow_table_reserve(const struct flow_table *t)
{
	return t->slots - t->max_flows;
}

#endif
