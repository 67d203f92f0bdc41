/* The conntrack metering source: flows from the kernel's connection
 * tracker (ctnetlink) instead of from packets.
 *
 * Two NETLINK_NETFILTER sockets: one subscribed to DESTROY events
 * (non-blocking, the daemon polls it), one for dumps (periodic: counters for
 * the active timeout, and the connections open now).  Connections live in a
 * fixed table keyed by conntrack id and original tuple; each keeps the
 * counters last read from the kernel ("known") and those last exported
 * ("reported"), so every record carries known - reported and nothing is
 * counted twice whatever order events and dumps arrive in.
 *
 * NEW events are not needed: a DESTROY carries the whole connection (its
 * counters, and its start with the timestamp extension), so a connection
 * that begins and ends between two dumps is reported whole at its end, and
 * a longer one is in the table from the first dump that lists it.  They
 * were half of the source's cost under churn (a router full of short
 * connections); the source subscribes to them only without the timestamp
 * extension (new_events), for start times.
 *
 * Lost events (ENOBUFS): the event socket asks for NETLINK_BROADCAST_ERROR,
 * so the kernel keeps a connection whose DESTROY it could not deliver and
 * delivers it again later; the next periodic dump is counted as a resync.
 * Overruns come in bursts (the kernel's garbage collector reaps thousands of
 * expired connections at once): a dump for each cost more than all the
 * events, and a dump reaps expired connections itself, so the collector's
 * work became the daemon's.  A
 * connection missing from a dump waits vanish_grace_ms for its DESTROY,
 * then leaves with its last known counters (flowEndReason
 * lackOfResources) and stays as a tombstone for a while.
 *
 * Its DESTROY may still be on the way: unread in the event socket (the
 * loop was late, or stopped reading while the reserve was low), or held by
 * the kernel after an overrun (it is unhashed then, so dumps miss it, and is
 * delivered again once the socket has room).  So the grace runs from the
 * last overrun too, and a connection vanishes only while the socket is
 * empty and no held DESTROY came (one stopped before the last overrun: the
 * kernel works through those for a while, a socket's worth at a time): its
 * record leaves once, with the DESTROY's counters.  A DESTROY
 * that still comes to a tombstone with more (the kernel held it past the
 * grace) is counted (destroys_after_vanish), not reported a second time.
 */
#define _GNU_SOURCE   /* recvmmsg */
#include "../_cmeter.h"
#include "icmp.h"

#include <errno.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

#define RECEIVE_BUFFER 65536
#define EVENT_BATCH 16
#define EVENT_SIZE (RECEIVE_BUFFER / EVENT_BATCH)
#define DUMP_TIMEOUT_MS 5000
#define TOMBSTONE_MS 120000   /* a DESTROY later than this after a vanish is not expected */
#define NONE UINT32_MAX
#define MAX_EXCLUDED 32

enum entry_state { FREE, LIVE, MISSING, ENDED, TOMBSTONE };

/* counters: orig packets, orig bytes, reply packets, reply bytes */
enum { ORIG_PACKETS, ORIG_BYTES, REPLY_PACKETS, REPLY_BYTES, COUNTERS };

struct tuple {
	uint8_t src[16], dst[16];
	uint16_t src_port, dst_port;   /* ICMP: 0 and type * 256 + code */
	uint16_t icmp_id;
};

/* What one ctnetlink message says about a connection. */
struct ct_message {
	uint32_t id, mark, status;
	uint16_t zone;
	uint8_t family, protocol, tcp_state;
	uint8_t has_counters, has_orig, has_reply, has_id;
	struct tuple orig, reply;
	uint64_t counters[COUNTERS];
	uint64_t start_ns, stop_ns;
};

struct entry {
	uint32_t id, mark;
	uint32_t hash_next, due_next;
	uint8_t state, ip_version, protocol, end_reason;
	uint8_t due, vanished;         /* vanished: becomes a tombstone once drained */
	uint8_t hashed;                /* findable; an untracked end is only drained */
	uint16_t zone;
	uint32_t seen_dump;            /* dump generation that last listed it */
	struct tuple orig, reply;
	uint64_t known[COUNTERS], reported[COUNTERS];
	uint64_t start_ms;             /* of the connection, or of the first sight */
	uint64_t period_start_ms;      /* start of what the next record covers */
	uint64_t known_ms;             /* when known[] was read */
	uint64_t inserted_ms, missing_since_ms;
};

struct fp_conntrack {
	struct fp_conntrack_settings settings;
	int event_fd, dump_fd, timer_fd;
	uint32_t capacity;             /* connections; plus a reserve for ended ones */
	uint32_t slots, bucket_count, free_head, due_head, due_tail;
	uint32_t tracked;              /* LIVE and MISSING entries */
	uint32_t free_count, tombstones, missing;
	uint32_t *buckets;
	struct entry *entries;
	uint8_t *buffer;
	uint32_t dump_generation, dump_sequence;
	uint64_t dump_started_ms;
	int resync_pending;            /* events were lost since the last dump */
	uint64_t lost_ms;              /* when events were last lost: DESTROYs may still come */
	uint64_t held_ms;              /* when one came that the kernel had held back */
	int baseline;                  /* this dump only sets where reporting starts */
	uint64_t baseline_stopped_ms;  /* the previous source's stop, if known: counted against */
	uint64_t started_ms;           /* the first baseline: what started before is not all ours */
	int excluded_count;
	struct { uint8_t protocol, address[16]; uint16_t port; } excluded[MAX_EXCLUDED];
	struct fp_conntrack_counters counters;
};

/* Time since a wall-clock stamp; 0 when the clock was stepped back past it
 * (an unsigned difference would wrap and fire every timer at once). */
static uint64_t elapsed(uint64_t now_ms, uint64_t since_ms)
{
	return now_ms > since_ms ? now_ms - since_ms : 0;
}

static uint32_t mix(uint32_t h, uint32_t v)
{
	h ^= v;
	h *= 0x9e3779b1u;
	return h ^ (h >> 15);
}

static uint32_t bucket_of(const struct fp_conntrack *ct, uint32_t id)
{
	return mix(0x2545f491u, id) & (ct->bucket_count - 1);
}

static int same_connection(const struct entry *e, const struct ct_message *m)
{
	return e->id == m->id && e->protocol == m->protocol &&
	       memcmp(&e->orig, &m->orig, sizeof e->orig) == 0;
}

static struct entry *lookup(struct fp_conntrack *ct, const struct ct_message *m)
{
	uint32_t i;

	for (i = ct->buckets[bucket_of(ct, m->id)]; i != NONE; i = ct->entries[i].hash_next)
		if (ct->entries[i].state != FREE && same_connection(&ct->entries[i], m))
			return &ct->entries[i];
	return NULL;
}

static void unlink_hash(struct fp_conntrack *ct, struct entry *e)
{
	uint32_t index = (uint32_t)(e - ct->entries), *link = &ct->buckets[bucket_of(ct, e->id)];

	while (*link != NONE && *link != index)
		link = &ct->entries[*link].hash_next;
	if (*link == index)
		*link = e->hash_next;
}

static void release(struct fp_conntrack *ct, struct entry *e)
{
	if (e->hashed)
		unlink_hash(ct, e);
	e->state = FREE;
	e->hash_next = ct->free_head;
	ct->free_head = (uint32_t)(e - ct->entries);
	ct->free_count++;
}

/* A new entry; live ones may use only `capacity` slots, the rest is kept
 * for records of connections that end untracked. */
static struct entry *insert(struct fp_conntrack *ct, const struct ct_message *m, int live,
			    uint64_t now_ms)
{
	struct entry *e;
	uint32_t index, bucket;

	if (ct->free_head == NONE || (live && ct->tracked >= ct->capacity))
		return NULL;
	index = ct->free_head;
	e = &ct->entries[index];
	ct->free_head = e->hash_next;
	ct->free_count--;
	memset(e, 0, sizeof *e);
	e->id = m->id;
	e->mark = m->mark;
	e->zone = m->zone;
	e->protocol = m->protocol;
	e->ip_version = m->family == AF_INET6 ? 6 : 4;
	e->orig = m->orig;
	e->reply = m->reply;
	e->state = LIVE;
	e->due_next = NONE;
	e->start_ms = m->start_ns ? m->start_ns / 1000000 : now_ms;
	e->period_start_ms = e->start_ms;
	e->known_ms = now_ms;
	e->inserted_ms = now_ms;
	e->hash_next = NONE;
	if (live) {
		/* a connection that ends untracked is reported and freed, never looked
		 * up: under churn that is most of them, and the hash costs cache misses */
		bucket = bucket_of(ct, m->id);
		e->hash_next = ct->buckets[bucket];
		ct->buckets[bucket] = index;
		e->hashed = 1;
		ct->tracked++;
		if (ct->tracked > ct->counters.peak)
			ct->counters.peak = ct->tracked;
	}
	return e;
}

static void make_due(struct fp_conntrack *ct, struct entry *e)
{
	uint32_t index = (uint32_t)(e - ct->entries);

	if (e->due)
		return;
	e->due = 1;
	e->due_next = NONE;
	if (ct->due_head == NONE)
		ct->due_head = index;
	else
		ct->entries[ct->due_tail].due_next = index;
	ct->due_tail = index;
	ct->counters.records_pending++;
}

/* The kernel dropped events for us (or one did not fit): the next dump
 * resyncs, and the DESTROYs it holds come later. */
static void lost_events(struct fp_conntrack *ct, uint64_t now_ms)
{
	ct->resync_pending = 1;
	ct->lost_ms = now_ms;
}

/* Counters only grow for one connection; a smaller value is not news. */
static void learn(struct entry *e, const struct ct_message *m, uint64_t now_ms)
{
	int i;

	/* only DESTROY events and dumps carry the start: the first record's
	 * start is the connection's when the kernel timestamps them */
	if (m->start_ns && e->period_start_ms == e->start_ms && !e->reported[ORIG_PACKETS] &&
	    !e->reported[REPLY_PACKETS] && m->start_ns / 1000000 < e->start_ms)
		e->start_ms = e->period_start_ms = m->start_ns / 1000000;
	if (!m->has_counters)
		return;
	for (i = 0; i < COUNTERS; i++)
		if (m->counters[i] > e->known[i])
			e->known[i] = m->counters[i];
	e->known_ms = now_ms;
}

static int reported_less(const struct entry *e)
{
	int i;

	for (i = 0; i < COUNTERS; i++)
		if (e->known[i] != e->reported[i])
			return 1;
	return 0;
}

static void end_entry(struct fp_conntrack *ct, struct entry *e, uint8_t reason)
{
	if (e->state == MISSING)
		ct->missing--;
	if (e->state == LIVE || e->state == MISSING)
		ct->tracked--;
	e->state = ENDED;
	e->end_reason = reason;
	make_due(ct, e);
}

/* conntrack does not say why a connection went: a TCP one past FIN or RST
 * ended, anything else timed out. */
static uint8_t end_reason_of(const struct ct_message *m)
{
	if (m->protocol == IPPROTO_TCP && m->tcp_state >= 4 /* FIN_WAIT and later */ &&
	    m->tcp_state <= 8 /* CLOSE */)
		return FP_END_OF_FLOW;
	return FP_END_IDLE_TIMEOUT;
}

/* ---- ctnetlink parsing ---- */

static const struct nlattr *attr_next(const struct nlattr *a, int *left)
{
	int length = NLA_ALIGN(a->nla_len);

	*left -= length;
	return (const struct nlattr *)((const uint8_t *)a + length);
}

static int attr_ok(const struct nlattr *a, int left)
{
	return left >= (int)sizeof *a && a->nla_len >= sizeof *a && a->nla_len <= left;
}

#define FOR_EACH_ATTR(a, start, length, left) \
	for (a = (start), left = (length); attr_ok(a, left); a = attr_next(a, &left))

static const void *attr_data(const struct nlattr *a)
{
	return (const uint8_t *)a + NLA_HDRLEN;
}

static int attr_length(const struct nlattr *a)
{
	return a->nla_len - NLA_HDRLEN;
}

static int attr_type(const struct nlattr *a)
{
	return a->nla_type & NLA_TYPE_MASK;
}

static uint64_t be(const struct nlattr *a)
{
	const uint8_t *p = attr_data(a);
	uint64_t value = 0;
	int i, n = attr_length(a);

	for (i = 0; i < n && i < 8; i++)
		value = value << 8 | p[i];
	return value;
}

static int parse_tuple(const struct nlattr *nest, struct tuple *t, uint8_t *protocol)
{
	const struct nlattr *a, *b;
	int left, inner;
	uint8_t type = 0, code = 0;

	FOR_EACH_ATTR(a, attr_data(nest), attr_length(nest), left) {
		if (attr_type(a) == CTA_TUPLE_IP) {
			FOR_EACH_ATTR(b, attr_data(a), attr_length(a), inner) {
				int n = attr_length(b);

				switch (attr_type(b)) {
				case CTA_IP_V4_SRC: if (n == 4) memcpy(t->src, attr_data(b), 4); break;
				case CTA_IP_V4_DST: if (n == 4) memcpy(t->dst, attr_data(b), 4); break;
				case CTA_IP_V6_SRC: if (n == 16) memcpy(t->src, attr_data(b), 16); break;
				case CTA_IP_V6_DST: if (n == 16) memcpy(t->dst, attr_data(b), 16); break;
				}
			}
		} else if (attr_type(a) == CTA_TUPLE_PROTO) {
			FOR_EACH_ATTR(b, attr_data(a), attr_length(a), inner) {
				switch (attr_type(b)) {
				case CTA_PROTO_NUM: *protocol = (uint8_t)be(b); break;
				case CTA_PROTO_SRC_PORT: t->src_port = (uint16_t)be(b); break;
				case CTA_PROTO_DST_PORT: t->dst_port = (uint16_t)be(b); break;
				case CTA_PROTO_ICMP_ID: case CTA_PROTO_ICMPV6_ID:
					t->icmp_id = (uint16_t)be(b); break;
				case CTA_PROTO_ICMP_TYPE: case CTA_PROTO_ICMPV6_TYPE:
					type = (uint8_t)be(b); break;
				case CTA_PROTO_ICMP_CODE: case CTA_PROTO_ICMPV6_CODE:
					code = (uint8_t)be(b); break;
				}
			}
		}
	}
	if (*protocol == IPPROTO_ICMP || *protocol == IPPROTO_ICMPV6) {
		t->src_port = 0;  /* the NetFlow convention, as the packet meter writes it */
		t->dst_port = (uint16_t)(type << 8 | code);
	}
	return 0;
}

static void parse_counters(const struct nlattr *nest, uint64_t *packets, uint64_t *bytes)
{
	const struct nlattr *a;
	int left;

	FOR_EACH_ATTR(a, attr_data(nest), attr_length(nest), left) {
		switch (attr_type(a)) {
		case CTA_COUNTERS_PACKETS: case CTA_COUNTERS32_PACKETS: *packets = be(a); break;
		case CTA_COUNTERS_BYTES: case CTA_COUNTERS32_BYTES: *bytes = be(a); break;
		}
	}
}

/* Returns 0, or -1 for a message that is not a usable conntrack message. */
static int parse_message(const struct nlmsghdr *h, struct ct_message *m)
{
	const struct nfgenmsg *g = NLMSG_DATA(h);
	const struct nlattr *a, *b;
	int left, inner;
	int length = (int)h->nlmsg_len - NLMSG_SPACE(sizeof *g);
	uint8_t reply_protocol = 0;

	if (length < 0)
		return -1;
	memset(m, 0, sizeof *m);
	m->family = g->nfgen_family;
	FOR_EACH_ATTR(a, (const struct nlattr *)((const uint8_t *)g + NLMSG_ALIGN(sizeof *g)),
		      length, left) {
		switch (attr_type(a)) {
		case CTA_TUPLE_ORIG: parse_tuple(a, &m->orig, &m->protocol); m->has_orig = 1; break;
		case CTA_TUPLE_REPLY:
			parse_tuple(a, &m->reply, &reply_protocol);
			m->has_reply = 1;
			break;
		case CTA_ID: m->id = (uint32_t)be(a); m->has_id = 1; break;
		case CTA_MARK: m->mark = (uint32_t)be(a); break;
		case CTA_ZONE: m->zone = (uint16_t)be(a); break;
		case CTA_STATUS: m->status = (uint32_t)be(a); break;
		case CTA_COUNTERS_ORIG:
			parse_counters(a, &m->counters[ORIG_PACKETS], &m->counters[ORIG_BYTES]);
			m->has_counters = 1;
			break;
		case CTA_COUNTERS_REPLY:
			parse_counters(a, &m->counters[REPLY_PACKETS], &m->counters[REPLY_BYTES]);
			m->has_counters = 1;
			break;
		case CTA_TIMESTAMP:
			FOR_EACH_ATTR(b, attr_data(a), attr_length(a), inner) {
				if (attr_type(b) == CTA_TIMESTAMP_START)
					m->start_ns = be(b);
				else if (attr_type(b) == CTA_TIMESTAMP_STOP)
					m->stop_ns = be(b);
			}
			break;
		case CTA_PROTOINFO:
			FOR_EACH_ATTR(b, attr_data(a), attr_length(a), inner) {
				const struct nlattr *c;
				int deepest;

				if (attr_type(b) != CTA_PROTOINFO_TCP)
					continue;
				FOR_EACH_ATTR(c, attr_data(b), attr_length(b), deepest)
					if (attr_type(c) == CTA_PROTOINFO_TCP_STATE)
						m->tcp_state = (uint8_t)be(c);
			}
			break;
		}
	}
	if (!m->has_orig || !m->has_id || (m->family != AF_INET && m->family != AF_INET6))
		return -1;
	return 0;
}

/* ---- events and dumps ---- */

static void on_new(struct fp_conntrack *ct, const struct ct_message *m, uint64_t now_ms)
{
	struct entry *e = lookup(ct, m);

	ct->counters.events_new++;
	if (e) {
		learn(e, m, now_ms);
		return;
	}
	e = insert(ct, m, 1, now_ms);
	if (!e) {
		ct->counters.overflows++;  /* its DESTROY still brings its counters */
		return;
	}
	learn(e, m, now_ms);
}

/* The timeout conntrack gave the connection in its final state (the
 * namespace's sysctls, as the daemon read them); 0: not known. */
static uint32_t final_timeout_ms(const struct fp_conntrack *ct, const struct ct_message *m)
{
	const uint32_t *t = ct->settings.timeouts_ms;

	switch (m->protocol) {
	case IPPROTO_TCP:
		return m->tcp_state < FP_CT_TCP_STATES ? t[m->tcp_state] : 0;
	case IPPROTO_UDP: case IPPROTO_UDPLITE:
		return t[m->status & IPS_ASSURED ? FP_CT_TIMEOUT_UDP_STREAM : FP_CT_TIMEOUT_UDP];
	case IPPROTO_ICMP:
		return t[FP_CT_TIMEOUT_ICMP];
	case IPPROTO_ICMPV6:
		return t[FP_CT_TIMEOUT_ICMPV6];
	default:
		return t[FP_CT_TIMEOUT_GENERIC];
	}
}

/* flowEnd: when the last packet passed.  conntrack stamps a connection's
 * stop when it removes it: after the timeout of its final state (TCP's
 * TIME_WAIT 2 minutes, UDP's 30 s or more), which every packet set anew, and
 * after its garbage collector came by.  So the last packet is the stop less
 * that timeout, for a connection that timed out; for one removed early
 * (conntrack -F, early drop) that is too early: never before what was last
 * seen of it (the previous reading, when the counters grew since), never
 * after its stop, nor after a reading that already had its final counters. */
static uint64_t last_packet_ms(const struct fp_conntrack *ct, const struct entry *e,
			       const struct ct_message *m, uint64_t stop_ms, int tracked)
{
	uint64_t timeout = final_timeout_ms(ct, m), end = stop_ms > timeout ? stop_ms - timeout : 0;
	int i, grew = !tracked;

	for (i = 0; i < COUNTERS && !grew; i++)
		grew = m->has_counters && m->counters[i] > e->known[i];
	if (!timeout)
		end = stop_ms;
	if (tracked && !grew && end > e->known_ms)
		end = e->known_ms;   /* nothing came since that reading */
	if (grew && tracked && end < e->known_ms)
		end = e->known_ms;   /* something came since that reading */
	if (end < e->period_start_ms)
		end = e->period_start_ms;
	return end;
}

static void on_destroy(struct fp_conntrack *ct, const struct ct_message *m, uint64_t now_ms)
{
	struct entry *e = lookup(ct, m);
	uint64_t stop_ms = m->stop_ns ? m->stop_ns / 1000000 : now_ms, end_ms;
	int tracked = e != NULL;

	ct->counters.events_destroy++;
	if (ct->lost_ms && stop_ms <= ct->lost_ms)
		ct->held_ms = now_ms;  /* the kernel is delivering what it held: more may come */
	if (!e && m->start_ns && m->start_ns / 1000000 < ct->started_ms) {
		/* older than the source and gone before its baseline saw it: what it
		 * carried before belongs to whoever metered then (a source before a
		 * reload or restart); reporting it all would count that twice */
		ct->counters.ends_before_baseline++;
		return;
	}
	if (!e) {
		/* never tracked (table full): all of it */
		e = insert(ct, m, 0, now_ms);
		if (!e) {
			ct->counters.records_lost++;  /* reserve exhausted: cannot happen while drained */
			return;
		}
		ct->counters.destroys_untracked++;
		e->state = ENDED;
	}
	end_ms = last_packet_ms(ct, e, m, stop_ms, tracked && e->state != TOMBSTONE);
	learn(e, m, now_ms);
	e->known_ms = end_ms;
	e->vanished = 0;  /* its DESTROY came after all: no tombstone needed */
	if (e->state == TOMBSTONE) {
		/* its record left when it vanished: what came since would make a
		 * second record of one connection, so it is counted instead */
		ct->tombstones--;
		if (reported_less(e))
			ct->counters.destroys_after_vanish++;
		else
			ct->counters.ends_without_traffic++;
		release(ct, e);
		return;
	}
	end_entry(ct, e, end_reason_of(m));
}

static void on_dumped(struct fp_conntrack *ct, const struct ct_message *m, uint64_t now_ms)
{
	struct entry *e = lookup(ct, m);
	int late = 0;

	ct->counters.dump_entries++;
	ct->counters.listed++;
	if (ct->baseline) {
		ct->counters.open_at_start++;
		if (m->start_ns && m->start_ns / 1000000 < ct->baseline_stopped_ms)
			ct->counters.open_since_stop++;
	}
	if (!e) {
		e = insert(ct, m, 1, now_ms);  /* begun since the last dump, or the first dump */
		if (!e)
			return;  /* its DESTROY still brings its counters */
		/* older than the source, yet not in its baseline (the table was
		 * full then): what it carried before belongs to whoever metered then */
		late = !ct->baseline && m->start_ns && m->start_ns / 1000000 < ct->started_ms;
	}
	if (e->state == MISSING) {
		e->state = LIVE;  /* it was only created during the dump that missed it */
		ct->missing--;
	}
	if (e->state == TOMBSTONE && ct->tracked < ct->capacity) {
		/* reported as vanished, yet the kernel still has it: alive again,
		 * reporting on from what was reported (never from zero) */
		ct->tombstones--;
		ct->tracked++;
		e->state = LIVE;
		e->vanished = 0;
		e->period_start_ms = e->known_ms;
		ct->counters.revived++;
	}
	if (e->state == LIVE)
		learn(e, m, now_ms);
	if (ct->baseline || late) {
		/* counted before the source started: not ours to report (a restarted
		 * source would report it twice); a late one's count since is lost */
		memcpy(e->reported, e->known, sizeof e->reported);
		e->period_start_ms = now_ms;
		ct->counters.tracked_late += late;
	}
	e->seen_dump = ct->dump_generation;
}

/* After a dump: active timeouts, and connections the kernel no longer has. */
static void after_dump(struct fp_conntrack *ct, uint64_t now_ms)
{
	uint32_t i;

	for (i = 0; i < ct->slots; i++) {
		struct entry *e = &ct->entries[i];

		if (e->state == LIVE && e->seen_dump != ct->dump_generation &&
		    e->inserted_ms < ct->dump_started_ms) {
			e->state = MISSING;  /* its DESTROY may still come: wait */
			ct->missing++;
			e->missing_since_ms = now_ms;
		}
		if (e->state == LIVE && !e->due &&
		    elapsed(now_ms, e->period_start_ms) >= ct->settings.active_timeout_ms && reported_less(e)) {
			e->end_reason = FP_END_ACTIVE_TIMEOUT;
			make_due(ct, e);
		}
	}
}

/* Whether events wait in the socket (or it overran): a DESTROY among them
 * may be for a connection about to vanish. */
static int events_waiting(struct fp_conntrack *ct, uint64_t now_ms)
{
	uint8_t byte;

	if (recv(ct->event_fd, &byte, sizeof byte, MSG_PEEK | MSG_DONTWAIT) >= 0)
		return 1;
	if (errno == ENOBUFS) {
		ct->counters.overruns++;  /* read() will not see this one */
		lost_events(ct, now_ms);
	}
	return errno != EAGAIN && errno != EWOULDBLOCK;
}

/* Since when a missing connection's DESTROY is overdue: the dump that
 * missed it, the last overrun, the last DESTROY the kernel had held back. */
static uint64_t overdue_since(const struct fp_conntrack *ct, const struct entry *e)
{
	uint64_t since = e->missing_since_ms;

	if (ct->lost_ms > since)
		since = ct->lost_ms;
	if (ct->held_ms > since)
		since = ct->held_ms;
	return since;
}

/* Connections missing too long leave with what was last known, while no
 * event waits; tombstones that no DESTROY came for are freed. */
static void settle_missing(struct fp_conntrack *ct, uint64_t now_ms)
{
	uint32_t i;
	int waiting = -1;  /* not asked yet */

	if (!ct->missing && !ct->tombstones)
		return;  /* the usual case: no walk over the table each tick */
	for (i = 0; i < ct->slots; i++) {
		struct entry *e = &ct->entries[i];
		uint64_t since = overdue_since(ct, e);
		int overdue = e->state == MISSING && now_ms >= since &&
			      now_ms - since >= ct->settings.vanish_grace_ms;

		if (overdue && waiting < 0)
			waiting = events_waiting(ct, now_ms);
		if (overdue && !waiting) {
			ct->counters.vanished++;
			end_entry(ct, e, FP_END_LACK_OF_RESOURCES);
			e->vanished = 1;
		} else if (e->state == TOMBSTONE && elapsed(now_ms, e->known_ms) >= TOMBSTONE_MS) {
			ct->tombstones--;
			release(ct, e);
		}
	}
}

/* The probe's own export traffic, which it must never meter. */
static int is_excluded(const struct fp_conntrack *ct, const struct ct_message *m)
{
	int i;

	for (i = 0; i < ct->excluded_count; i++)
		if (ct->excluded[i].protocol == m->protocol && ct->excluded[i].port == m->orig.dst_port &&
		    memcmp(ct->excluded[i].address, m->orig.dst, 16) == 0)
			return 1;
	return 0;
}

int fp_conntrack_exclude(struct fp_conntrack *ct, int protocol, const uint8_t *address,
			 int address_length, int port)
{
	if (protocol < 0) {
		ct->excluded_count = 0;
		return 0;
	}
	if (ct->excluded_count >= MAX_EXCLUDED || address_length < 0 || address_length > 16)
		return -1;
	memset(ct->excluded[ct->excluded_count].address, 0, 16);
	memcpy(ct->excluded[ct->excluded_count].address, address, (size_t)address_length);
	ct->excluded[ct->excluded_count].protocol = (uint8_t)protocol;
	ct->excluded[ct->excluded_count].port = (uint16_t)port;
	ct->excluded_count++;
	return 0;
}

static void handle(struct fp_conntrack *ct, const struct nlmsghdr *h, int from_dump,
		   uint64_t now_ms)
{
	struct ct_message m;
	int type = h->nlmsg_type & 0xff;

	if ((h->nlmsg_type >> 8) != NFNL_SUBSYS_CTNETLINK)
		return;
	if (parse_message(h, &m) < 0) {
		ct->counters.messages_malformed++;
		return;
	}
	if (ct->excluded_count && is_excluded(ct, &m)) {
		ct->counters.messages_excluded++;
		return;
	}
	if (from_dump)
		on_dumped(ct, &m, now_ms);
	else if (type == IPCTNL_MSG_CT_DELETE)
		on_destroy(ct, &m, now_ms);
	else if (type == IPCTNL_MSG_CT_NEW)
		on_new(ct, &m, now_ms);
}

/* Slots for connections that end untracked: reading stops before they run
 * out while records wait, and goes on once those are drained (the events
 * wait in the socket meanwhile). */
static int reserve_low(const struct fp_conntrack *ct)
{
	return ct->free_count < 64 && ct->counters.records_pending > 0;
}

/* Each event is a datagram of its own: EVENT_BATCH of them a system call
 * (recvmmsg), where one each was half of the source's cost under churn. */
int fp_conntrack_read(struct fp_conntrack *ct, uint64_t now_ms, char *error)
{
	struct mmsghdr batch[EVENT_BATCH];
	struct iovec parts[EVENT_BATCH];
	int messages = 0, i;

	ct->counters.clock_ms = now_ms;
	memset(batch, 0, sizeof batch);
	for (i = 0; i < EVENT_BATCH; i++) {
		parts[i].iov_base = ct->buffer + i * EVENT_SIZE;
		parts[i].iov_len = EVENT_SIZE;
		batch[i].msg_hdr.msg_iov = &parts[i];
		batch[i].msg_hdr.msg_iovlen = 1;
	}
	while (!reserve_low(ct)) {
		int n = recvmmsg(ct->event_fd, batch, EVENT_BATCH, MSG_DONTWAIT, NULL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == ENOBUFS) {
				/* the kernel dropped events: read on; the next dump resyncs */
				ct->counters.overruns++;
				lost_events(ct, now_ms);
				continue;
			}
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			snprintf(error, FP_ERROR_SIZE, "conntrack events: %s", strerror(errno));
			return -1;
		}
		for (i = 0; i < n; i++) {
			struct nlmsghdr *h = parts[i].iov_base;
			int left = (int)batch[i].msg_len;

			if (batch[i].msg_hdr.msg_flags & MSG_TRUNC) {
				ct->counters.messages_malformed++;  /* cannot happen: events are < 1 KB */
				lost_events(ct, now_ms);
				continue;
			}
			for (; NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
				if (h->nlmsg_type == NLMSG_ERROR || h->nlmsg_type == NLMSG_DONE ||
				    h->nlmsg_type == NLMSG_NOOP)
					continue;
				handle(ct, h, 0, now_ms);
				messages++;
			}
			batch[i].msg_hdr.msg_flags = 0;
		}
		if (n < EVENT_BATCH)
			break;  /* drained: no EAGAIN call needed */
	}
	return messages;
}

static void dump_begin(struct fp_conntrack *ct, uint64_t now_ms)
{
	if (ct->resync_pending)
		ct->counters.resyncs++;  /* this dump, whatever asked for it, resyncs */
	ct->resync_pending = 0;
	ct->counters.listed = 0;
	ct->dump_generation++;
	ct->dump_started_ms = now_ms;
	ct->counters.clock_ms = now_ms;
}

static void dump_end(struct fp_conntrack *ct, uint64_t now_ms)
{
	ct->counters.dumps++;
	after_dump(ct, now_ms);
	settle_missing(ct, now_ms);
}

int fp_conntrack_dump(struct fp_conntrack *ct, uint64_t now_ms, char *error)
{
	struct {
		struct nlmsghdr h;
		struct nfgenmsg g;
	} request;
	int done = 0;

	memset(&request, 0, sizeof request);
	request.h.nlmsg_len = sizeof request;
	request.h.nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET;
	request.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	request.h.nlmsg_seq = ++ct->dump_sequence;
	request.g.nfgen_family = AF_UNSPEC;
	request.g.version = NFNETLINK_V0;
	dump_begin(ct, now_ms);
	if (send(ct->dump_fd, &request, sizeof request, 0) < 0) {
		snprintf(error, FP_ERROR_SIZE, "conntrack dump: %s", strerror(errno));
		return -1;
	}
	while (!done) {
		struct pollfd p = { .fd = ct->dump_fd, .events = POLLIN };
		struct nlmsghdr *h;
		ssize_t n;
		int left;

		if (poll(&p, 1, DUMP_TIMEOUT_MS) <= 0) {
			snprintf(error, FP_ERROR_SIZE, "conntrack dump: no answer within %d ms",
				 DUMP_TIMEOUT_MS);
			return -1;
		}
		n = recv(ct->dump_fd, ct->buffer, RECEIVE_BUFFER, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			snprintf(error, FP_ERROR_SIZE, "conntrack dump: %s", strerror(errno));
			return -1;
		}
		left = (int)n;
		for (h = (struct nlmsghdr *)ct->buffer; NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
			if (h->nlmsg_seq != ct->dump_sequence)
				continue;  /* the tail of an earlier dump that timed out */
			if (h->nlmsg_type == NLMSG_DONE) {
				done = 1;
				break;
			}
			if (h->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *e = NLMSG_DATA(h);

				if (e->error == 0)
					continue;
				snprintf(error, FP_ERROR_SIZE, "conntrack dump: %s", strerror(-e->error));
				return -1;
			}
			handle(ct, h, 1, now_ms);
		}
	}
	dump_end(ct, now_ms);
	return 0;
}

int fp_conntrack_replay(struct fp_conntrack *ct, const uint8_t *messages, int length, int kind,
			uint64_t now_ms)
{
	struct nlmsghdr *h = (struct nlmsghdr *)ct->buffer;  /* aligned, as the kernel's */
	int left = length, n = 0;

	if (length < 0 || length > RECEIVE_BUFFER)
		return -1;
	ct->counters.clock_ms = now_ms;
	if (kind == FP_CT_REPLAY_OVERRUN) {
		ct->counters.overruns++;
		lost_events(ct, now_ms);
		return 0;
	}
	memcpy(ct->buffer, messages, (size_t)length);
	if (kind == FP_CT_REPLAY_DUMP)
		dump_begin(ct, now_ms);
	for (; NLMSG_OK(h, left); h = NLMSG_NEXT(h, left), n++)
		handle(ct, h, kind == FP_CT_REPLAY_DUMP, now_ms);
	if (kind == FP_CT_REPLAY_DUMP)
		dump_end(ct, now_ms);
	return n;
}

static int reported_nothing(const struct entry *e)
{
	int i;

	for (i = 0; i < COUNTERS; i++)
		if (e->reported[i])
			return 0;
	return 1;
}

static uint32_t reserve_for(uint32_t capacity)
{
	uint32_t reserve = capacity / 16;

	return reserve < 512 ? 512 : reserve > 8192 ? 8192 : reserve;
}

/* The table rebuilt for a new capacity around the entries it holds: the
 * event socket with what it has queued, every connection's reported
 * counters, the records waiting, all go on.  (A new source instead would
 * lose the events between the old socket's last read and the new one's
 * bind, and its baseline would take connections the old table never held
 * for reported.)  Below what is tracked, connections that reported nothing
 * and began after the source are let go: untracked, their DESTROY reports
 * them whole, as an overflow's.  The others stay until they end, over the
 * new capacity. */
static int resize(struct fp_conntrack *ct, uint32_t capacity, char *error)
{
	uint32_t i, n = 0, in_use, slots, bucket_count, *buckets, *moved;
	uint32_t excess = ct->tracked > capacity ? ct->tracked - capacity : 0;
	struct entry *entries;

	for (i = 0; excess && i < ct->slots; i++) {
		struct entry *e = &ct->entries[i];

		if (e->state == LIVE && !e->due && reported_nothing(e) && e->start_ms > ct->started_ms) {
			release(ct, e);
			ct->tracked--;
			ct->counters.released_by_resize++;
			excess--;
		}
	}
	in_use = ct->slots - ct->free_count;
	slots = (in_use > capacity ? in_use : capacity) + reserve_for(capacity);
	for (bucket_count = 1; bucket_count < slots; bucket_count <<= 1)
		;
	entries = calloc(slots, sizeof *entries);
	buckets = malloc(bucket_count * sizeof *buckets);
	moved = malloc(ct->slots * sizeof *moved);
	if (!entries || !buckets || !moved) {
		free(entries);
		free(buckets);
		free(moved);
		snprintf(error, FP_ERROR_SIZE, "out of memory for %u connections", capacity);
		return -1;
	}
	memset(buckets, 0xff, bucket_count * sizeof *buckets);
	for (i = 0; i < ct->slots; i++) {
		moved[i] = NONE;
		if (ct->entries[i].state == FREE)
			continue;
		entries[n] = ct->entries[i];
		moved[i] = n++;
	}
	for (i = 0; i < n; i++)
		if (entries[i].due && entries[i].due_next != NONE)
			entries[i].due_next = moved[entries[i].due_next];
	if (ct->due_head != NONE) {
		ct->due_head = moved[ct->due_head];
		ct->due_tail = moved[ct->due_tail];
	}
	free(moved);
	free(ct->entries);
	free(ct->buckets);
	ct->entries = entries;
	ct->buckets = buckets;
	ct->slots = slots;
	ct->bucket_count = bucket_count;
	ct->capacity = capacity;
	for (i = 0; i < n; i++) {
		uint32_t bucket = bucket_of(ct, entries[i].id);

		entries[i].hash_next = NONE;
		if (!entries[i].hashed)
			continue;
		entries[i].hash_next = buckets[bucket];
		buckets[bucket] = i;
	}
	for (i = n; i < slots; i++)
		entries[i].hash_next = i + 1 < slots ? i + 1 : NONE;
	ct->free_head = n < slots ? n : NONE;
	ct->free_count = slots - n;
	return 0;
}

int fp_conntrack_reconfigure(struct fp_conntrack *ct, const struct fp_conntrack_settings *settings,
			     char *error)
{
	int buffer = (int)settings->receive_buffer_bytes;
	uint32_t new_events = ct->settings.new_events;

	if (settings->max_connections < 1 || settings->max_connections > (1u << 24)) {
		snprintf(error, FP_ERROR_SIZE, "max_connections %u out of range (1 to %u)",
			 settings->max_connections, 1u << 24);
		return -1;
	}
	if (settings->max_connections != ct->capacity &&
	    resize(ct, settings->max_connections, error) < 0)
		return -1;
	if (settings->receive_buffer_bytes != ct->settings.receive_buffer_bytes && buffer > 0 &&
	    setsockopt(ct->event_fd, SOL_SOCKET, SO_RCVBUFFORCE, &buffer, sizeof buffer) < 0)
		setsockopt(ct->event_fd, SOL_SOCKET, SO_RCVBUF, &buffer, sizeof buffer);
	ct->settings = *settings;
	ct->settings.new_events = new_events;  /* the subscription is made at the start */
	return 0;
}

int fp_conntrack_baseline(struct fp_conntrack *ct, uint64_t now_ms, uint64_t stopped_ms,
			  char *error)
{
	int result;

	if (!ct->started_ms)
		ct->started_ms = now_ms;
	ct->baseline = 1;
	ct->baseline_stopped_ms = stopped_ms;
	ct->counters.open_at_start = ct->counters.open_since_stop = 0;
	result = fp_conntrack_dump(ct, now_ms, error);
	ct->baseline = 0;
	return result;
}

void fp_conntrack_expire(struct fp_conntrack *ct, uint64_t now_ms)
{
	ct->counters.clock_ms = now_ms;
	settle_missing(ct, now_ms);
}

void fp_conntrack_flush(struct fp_conntrack *ct, uint64_t now_ms)
{
	uint32_t i;

	for (i = 0; i < ct->slots; i++) {
		struct entry *e = &ct->entries[i];

		if (e->state == LIVE || e->state == MISSING) {
			e->known_ms = now_ms;
			end_entry(ct, e, FP_END_FORCED);
		}
	}
}

static void to_record(const struct entry *e, struct fp_record *r)
{
	uint64_t end_ms = e->known_ms > e->period_start_ms ? e->known_ms : e->period_start_ms;
	int size = e->ip_version == 6 ? 16 : 4;

	memset(r, 0, sizeof *r);
	memcpy(r->src_addr, e->orig.src, size);
	memcpy(r->dst_addr, e->orig.dst, size);
	r->src_port = e->orig.src_port;
	r->dst_port = e->orig.dst_port;
	/* the original direction after NAT is the reply tuple turned around */
	memcpy(r->post_src_addr, e->reply.dst, size);
	memcpy(r->post_dst_addr, e->reply.src, size);
	r->post_src_port = e->reply.dst_port;
	r->post_dst_port = e->reply.src_port;
	if (e->protocol == IPPROTO_ICMP || e->protocol == IPPROTO_ICMPV6) {
		r->post_src_port = 0;
		r->post_dst_port = e->orig.dst_port;
	}
	r->nat = 1;
	r->ip_version = e->ip_version;
	r->protocol = e->protocol;
	r->packets = e->known[ORIG_PACKETS] - e->reported[ORIG_PACKETS];
	r->octets = e->known[ORIG_BYTES] - e->reported[ORIG_BYTES];
	r->reverse_packets = e->known[REPLY_PACKETS] - e->reported[REPLY_PACKETS];
	r->reverse_octets = e->known[REPLY_BYTES] - e->reported[REPLY_BYTES];
	r->flow_start_ms = e->period_start_ms;
	r->flow_end_ms = end_ms;
	if (r->reverse_packets) {
		r->reverse_start_ms = e->period_start_ms;
		r->reverse_end_ms = end_ms;
	}
	r->end_reason = e->end_reason;
	r->flow_id = e->id;
	r->conntrack_mark = e->mark;
	r->conntrack_zone = e->zone;
}

int fp_conntrack_drain(struct fp_conntrack *ct, struct fp_record *out, int max)
{
	int n = 0;

	while (n < max && ct->due_head != NONE) {
		struct entry *e = &ct->entries[ct->due_head];
		int i;

		ct->due_head = e->due_next;
		e->due = 0;
		ct->counters.records_pending--;
		if (reported_less(e)) {
			to_record(e, &out[n]);
			ct->counters.records++;
			ct->counters.packets += out[n].packets + out[n].reverse_packets;
			ct->counters.octets += out[n].octets + out[n].reverse_octets;
			n++;
		} else if (e->state != ENDED) {
			continue;
		} else {
			ct->counters.ends_without_traffic++;
		}
		for (i = 0; i < COUNTERS; i++)
			e->reported[i] = e->known[i];
		e->period_start_ms = e->known_ms;
		if (e->state == ENDED) {
			if (e->vanished) {
				e->state = TOMBSTONE;  /* a late DESTROY adds only the rest */
				ct->tombstones++;
			} else {
				release(ct, e);
			}
		}
	}
	return n;
}

void fp_conntrack_counters(struct fp_conntrack *ct, struct fp_conntrack_counters *counters)
{
	*counters = ct->counters;
	counters->connections = ct->tracked;
	counters->capacity = ct->capacity;
	counters->tombstones = ct->tombstones;
	counters->memory_bytes = (uint64_t)ct->slots * sizeof(struct entry) +
				 (uint64_t)ct->bucket_count * sizeof(uint32_t) + RECEIVE_BUFFER;
}

int fp_conntrack_timer_fd(struct fp_conntrack *ct)
{
	return ct->timer_fd;
}

int fp_conntrack_hold(struct fp_conntrack *ct, uint32_t milliseconds)
{
	struct itimerspec when = { .it_value = { .tv_sec = milliseconds / 1000,
						  .tv_nsec = (long)(milliseconds % 1000) * 1000000 } };
	uint64_t expirations;

	if (read(ct->timer_fd, &expirations, sizeof expirations) < 0 && errno != EAGAIN)
		return -1;
	return milliseconds ? timerfd_settime(ct->timer_fd, 0, &when, NULL) : 0;
}

uint64_t fp_conntrack_pending(struct fp_conntrack *ct)
{
	return ct->counters.records_pending;
}

int fp_conntrack_fd(struct fp_conntrack *ct)
{
	return ct->event_fd;
}

static int open_socket(unsigned int groups, int receive_buffer, char *error)
{
	struct sockaddr_nl address = { .nl_family = AF_NETLINK, .nl_groups = groups };
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | (groups ? SOCK_NONBLOCK : 0),
			NETLINK_NETFILTER);
	int on = 1;

	if (fd < 0) {
		snprintf(error, FP_ERROR_SIZE, "netlink socket: %s", strerror(errno));
		return -1;
	}
	if (receive_buffer > 0 &&
	    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &receive_buffer, sizeof receive_buffer) < 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
	/* the kernel then keeps and redelivers DESTROY events we could not take */
	if (groups)
		setsockopt(fd, SOL_NETLINK, NETLINK_BROADCAST_ERROR, &on, sizeof on);
	if (bind(fd, (struct sockaddr *)&address, sizeof address) < 0) {
		snprintf(error, FP_ERROR_SIZE, "netlink bind (conntrack events): %s%s",
			 strerror(errno), errno == EPERM ? " (needs CAP_NET_ADMIN)" : "");
		close(fd);
		return -1;
	}
	return fd;
}

struct fp_conntrack *fp_conntrack_new(const struct fp_conntrack_settings *settings, char *error)
{
	struct fp_conntrack *ct;
	uint32_t i, reserve;

	if (settings->max_connections < 1 || settings->max_connections > (1u << 24)) {
		snprintf(error, FP_ERROR_SIZE, "max_connections %u out of range (1 to %u)",
			 settings->max_connections, 1u << 24);
		return NULL;
	}
	ct = calloc(1, sizeof *ct);
	if (!ct) {
		snprintf(error, FP_ERROR_SIZE, "out of memory");
		return NULL;
	}
	ct->event_fd = ct->dump_fd = ct->timer_fd = -1;
	ct->settings = *settings;
	ct->capacity = settings->max_connections;
	/* records of connections ending untracked, and ended ones not drained yet */
	reserve = reserve_for(ct->capacity);
	ct->slots = ct->capacity + reserve;
	for (ct->bucket_count = 1; ct->bucket_count < ct->slots; ct->bucket_count <<= 1)
		;
	ct->entries = calloc(ct->slots, sizeof *ct->entries);
	ct->buckets = malloc(ct->bucket_count * sizeof *ct->buckets);
	ct->buffer = malloc(RECEIVE_BUFFER);
	ct->event_fd = ct->dump_fd = -1;
	ct->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (!ct->entries || !ct->buckets || !ct->buffer || ct->timer_fd < 0) {
		snprintf(error, FP_ERROR_SIZE, "out of memory for %u connections", ct->capacity);
		fp_conntrack_free(ct);
		return NULL;
	}
	memset(ct->buckets, 0xff, ct->bucket_count * sizeof *ct->buckets);
	for (i = 0; i < ct->slots; i++)
		ct->entries[i].hash_next = i + 1 < ct->slots ? i + 1 : NONE;
	ct->free_head = 0;
	ct->free_count = ct->slots;
	ct->due_head = ct->due_tail = NONE;
	ct->event_fd = open_socket((settings->new_events ? NF_NETLINK_CONNTRACK_NEW : 0) |
				   NF_NETLINK_CONNTRACK_DESTROY,
				   (int)settings->receive_buffer_bytes, error);
	if (ct->event_fd >= 0)
		ct->dump_fd = open_socket(0, 4 << 20, error);
	if (ct->dump_fd < 0) {
		fp_conntrack_free(ct);
		return NULL;
	}
	return ct;
}

void fp_conntrack_free(struct fp_conntrack *ct)
{
	if (!ct)
		return;
	if (ct->event_fd >= 0)
		close(ct->event_fd);
	if (ct->dump_fd >= 0)
		close(ct->dump_fd);
	if (ct->timer_fd >= 0)
		close(ct->timer_fd);
	free(ct->entries);
	free(ct->buckets);
	free(ct->buffer);
	free(ct);
}
