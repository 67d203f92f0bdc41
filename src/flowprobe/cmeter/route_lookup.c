/* The enrichment stage's FIB lookups, asked and answered in C: RTM_GETROUTE
 * requests (as `ip route get` sends them) for a batch's unknown keys, many
 * to a datagram, on the caller's non-blocking NETLINK_ROUTE socket, and
 * the answers read (recvmmsg) and parsed straight into the route cache.
 * Python only says when (enrich/routes.py): no per-key Python.
 *
 * The kernel, not a copy of its tables, answers every key: policy rules,
 * IPv6 source-specific routes (netifd installs them), metrics, ECMP's
 * hash, nexthop objects and dead or link-down next hops are its to decide.
 * rtnetlink handles each message of a datagram in turn, in the sending
 * call, so the answers are usually there when sendmsg returns.
 *
 * Requests in flight are bounded (max_in_flight) and kept in an
 * open-addressed table by key (a key already asked is not asked again);
 * a request's sequence number carries its slot, so an answer finds its
 * key without a search.  The same socket carries the dumps of the policy
 * rules and of the IPv6 routes (sequence numbers with the top bit set),
 * parsed here too: only whether some rule selects by more than the
 * destination, and whether some IPv6 route is source-specific, matter. */
#define _GNU_SOURCE   /* recvmmsg */
#include "../_cmeter.h"
#include "hash.h"

#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/fib_rules.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define MAX_SLOTS 8192
/* requests a datagram carries: their answers (~0.5-1 KB of receive buffer
 * each) must fit the socket's buffer before they are read */
#define CHUNK_REQUESTS 64
#define REQUEST_MAX (NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(struct rtmsg)) + RTA_SPACE(16) * 2 + \
		     RTA_SPACE(4) * 2)
/* datagrams a recvmmsg reads; each buffer holds a dump's datagram (at most
 * max(NLMSG_GOODSIZE, our buffer) bytes: a page on 16 KB-page kernels) */
#define READ_DATAGRAMS 16
#define DATAGRAM_BUFFER 16384
/* recvmmsg calls a read makes at most: a dump of a big table is read over
 * several turns of the loop (the socket stays readable), not in one */
#define READ_ROUNDS 32
#define RULES_SEQUENCE_BIT 0x80000000u

enum { SLOT_EMPTY, SLOT_PENDING, SLOT_DONE };

struct pending {
	struct fp_route_key key;
	uint32_t sequence;
};

struct fp_route_lookups {
	int fd;
	uint32_t max_in_flight;
	uint32_t slots;           /* a power of two, twice max_in_flight at least */
	uint32_t slot_bits;
	uint32_t next_sequence;
	struct pending *pending;  /* slots */
	uint8_t *state;           /* slots: SLOT_* */
	uint64_t seed[2];
	uint32_t rules_sequence;  /* of the dump being answered; 0: none */
	int rules_phase;          /* the dump being answered: the rules (1), IPv6 routes (2) */
	int rules_by_source;      /* FP_ROUTES_* of the dumps being answered, so far */
	int rules_result;         /* of the last dump answered, not taken yet; -1: none */
	int rules_again;          /* dump again once the one running ends */
	uint8_t *request;         /* CHUNK_REQUESTS requests */
	size_t request_length;
	int requests;
	uint8_t *datagrams;       /* READ_DATAGRAMS * DATAGRAM_BUFFER */
	struct fp_route_lookups_counters counters;
};

struct fp_route_lookups *fp_route_lookups_new(int fd, uint32_t max_in_flight)
{
	struct fp_route_lookups *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	if (max_in_flight < 1)
		max_in_flight = 1;
	if (max_in_flight > MAX_SLOTS / 2)
		max_in_flight = MAX_SLOTS / 2;
	l->fd = fd;
	l->max_in_flight = max_in_flight;
	l->slots = 2;
	l->slot_bits = 1;
	while (l->slots < 2 * max_in_flight) {
		l->slots <<= 1;
		l->slot_bits++;
	}
	l->pending = calloc(l->slots, sizeof(*l->pending));
	l->state = calloc(l->slots, 1);
	l->request = malloc(CHUNK_REQUESTS * REQUEST_MAX);
	l->datagrams = malloc((size_t)READ_DATAGRAMS * DATAGRAM_BUFFER);
	if (!l->pending || !l->state || !l->request || !l->datagrams) {
		fp_route_lookups_free(l);
		return NULL;
	}
	l->next_sequence = 1;
	l->rules_result = -1;
	l->seed[0] = (uint64_t)(uintptr_t)l ^ 0x9e3779b97f4a7c15ULL;
	l->seed[1] = (uint64_t)(uintptr_t)l->pending;
	return l;
}

void fp_route_lookups_free(struct fp_route_lookups *l)
{
	if (l) {
		free(l->pending);
		free(l->state);
		free(l->request);
		free(l->datagrams);
		free(l);
	}
}

void fp_route_lookups_forget(struct fp_route_lookups *l)
{
	memset(l->state, SLOT_EMPTY, l->slots);
	l->counters.in_flight = 0;
}

/* ---- requests in flight, by key ---- */

static uint32_t slot_of(const struct fp_route_lookups *l, const struct fp_route_key *k)
{
	uint64_t h = hash_endpoint(l->seed, k->destination, k->family, k->family == 6);

	h = hash_mix(h ^ load64(k->source) ^ load64(k->source + 8) ^ k->ingress ^
		     ((uint64_t)k->mark << 32));
	return (uint32_t)h & (l->slots - 1);
}

/* The slot of key if it is in flight; else (*free_slot) where it would go,
 * or slots when there is no room. */
static uint32_t find_pending(const struct fp_route_lookups *l, const struct fp_route_key *key,
			     uint32_t *free_slot)
{
	uint32_t s = slot_of(l, key), n;

	*free_slot = l->slots;
	for (n = 0; n < l->slots; n++, s = (s + 1) & (l->slots - 1)) {
		if (l->state[s] == SLOT_EMPTY) {
			if (*free_slot == l->slots)
				*free_slot = s;
			return l->slots;
		}
		if (l->state[s] == SLOT_DONE) {
			if (*free_slot == l->slots)
				*free_slot = s;
		} else if (memcmp(&l->pending[s].key, key, sizeof(*key)) == 0) {
			return s;
		}
	}
	return l->slots;
}

static void done(struct fp_route_lookups *l, uint32_t s)
{
	l->state[s] = SLOT_DONE;
	/* nothing in flight: the probe chains start over (no tombstones) */
	if (--l->counters.in_flight == 0)
		memset(l->state, SLOT_EMPTY, l->slots);
}

/* ---- requests ---- */

static void put_attribute(uint8_t **at, uint16_t type, const void *value, uint16_t length)
{
	struct rtattr *a = (struct rtattr *)*at;

	a->rta_type = type;
	a->rta_len = RTA_LENGTH(length);
	memcpy(RTA_DATA(a), value, length);
	memset((uint8_t *)RTA_DATA(a) + length, 0, RTA_SPACE(length) - RTA_LENGTH(length));
	*at += RTA_SPACE(length);
}

static int all_zero(const uint8_t *bytes, int length)
{
	while (length--)
		if (*bytes++)
			return 0;
	return 1;
}

/* RTM_GETROUTE for key, as `ip route get` sends it: the route a packet
 * from source (arriving on ingress, else sent from it; with mark) to the
 * destination takes. */
static size_t build_request(uint8_t *out, const struct fp_route_key *key, uint32_t sequence)
{
	struct nlmsghdr *h = (struct nlmsghdr *)out;
	struct rtmsg *r = NLMSG_DATA(h);
	uint8_t *at = (uint8_t *)r + NLMSG_ALIGN(sizeof(*r));
	uint16_t size = key->family == 4 ? 4 : 16;

	memset(h, 0, NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(*r)));
	r->rtm_family = key->family == 4 ? AF_INET : AF_INET6;
	r->rtm_dst_len = (uint8_t)(size * 8);
	put_attribute(&at, RTA_DST, key->destination, size);
	if (key->ingress || !all_zero(key->source, size)) {
		r->rtm_src_len = (uint8_t)(size * 8);
		put_attribute(&at, RTA_SRC, key->source, size);
	}
	if (key->ingress)   /* forwarded: from its source, as it came in */
		put_attribute(&at, RTA_IIF, &key->ingress, 4);
	if (key->mark)
		put_attribute(&at, RTA_MARK, &key->mark, 4);
	h->nlmsg_len = (uint32_t)(at - out);
	h->nlmsg_type = RTM_GETROUTE;
	h->nlmsg_flags = NLM_F_REQUEST;
	h->nlmsg_seq = sequence;
	return h->nlmsg_len;
}

/* Sends the requests built; those the kernel's queue refuses now are no
 * longer in flight (counted; asked again by a later batch).  0, or -errno. */
static int flush(struct fp_route_lookups *l)
{
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
	ssize_t sent;
	size_t offset;

	if (!l->requests)
		return 0;
	do
		sent = sendto(l->fd, l->request, l->request_length, MSG_DONTWAIT,
			      (struct sockaddr *)&kernel, sizeof(kernel));
	while (sent < 0 && errno == EINTR);
	if (sent < 0) {
		int error = errno;

		for (offset = 0; offset < l->request_length;) {
			const struct nlmsghdr *h = (const struct nlmsghdr *)(l->request + offset);
			uint32_t s = h->nlmsg_seq & (l->slots - 1);

			if (l->state[s] == SLOT_PENDING && l->pending[s].sequence == h->nlmsg_seq)
				done(l, s);
			l->counters.refused++;
			offset += NLMSG_ALIGN(h->nlmsg_len);
		}
		l->counters.lookups -= (uint64_t)l->requests;
		l->requests = 0;
		l->request_length = 0;
		return error == EAGAIN || error == ENOBUFS ? 0 : -error;
	}
	l->requests = 0;
	l->request_length = 0;
	return 0;
}

int fp_route_lookups_ask(struct fp_route_lookups *l, struct fp_route_cache *cache,
			 const struct fp_route_key *keys, int count, int read)
{
	uint64_t before = l->counters.lookups;   /* less those a full queue refuses */
	int i, error;

	for (i = 0; i < count; i++) {
		uint32_t s, free_slot, sequence, egress;
		uint8_t next_hop[16];

		if (find_pending(l, &keys[i], &free_slot) != l->slots ||
		    fp_route_cache_get(cache, &keys[i], &egress, next_hop) >= 0)
			continue;   /* asked already (a batch names a key once a record) */
		if (l->counters.in_flight >= l->max_in_flight || free_slot == l->slots) {
			/* the kernel answers as it is asked: room again once read */
			if ((error = flush(l)) < 0)
				return error;
			fp_route_lookups_read(l, cache);
			if (find_pending(l, &keys[i], &free_slot) != l->slots)
				continue;
		}
		if (l->counters.in_flight >= l->max_in_flight || free_slot == l->slots) {
			l->counters.refused += (uint64_t)(count - i);
			break;
		}
		s = free_slot;
		sequence = ((l->next_sequence++ << l->slot_bits) | s) & ~RULES_SEQUENCE_BIT;
		l->pending[s].key = keys[i];
		l->pending[s].sequence = sequence;
		l->state[s] = SLOT_PENDING;
		l->counters.in_flight++;
		l->counters.lookups++;
		l->request_length += build_request(l->request + l->request_length, &keys[i],
						   sequence);
		if (++l->requests == CHUNK_REQUESTS) {
			if ((error = flush(l)) < 0)
				return error;
			if (read)
				fp_route_lookups_read(l, cache);
		}
	}
	if ((error = flush(l)) < 0)
		return error;
	if (read)
		fp_route_lookups_read(l, cache);
	return (int)(l->counters.lookups - before);
}

static int send_dump(struct fp_route_lookups *l, uint16_t type, uint8_t family)
{
	struct {
		struct nlmsghdr header;
		struct rtmsg message;   /* a struct fib_rule_hdr for rules: the same 12 bytes */
	} request;
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
	ssize_t sent;

	memset(&request, 0, sizeof(request));
	request.header.nlmsg_len = sizeof(request);
	request.header.nlmsg_type = type;
	request.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	request.header.nlmsg_seq = RULES_SEQUENCE_BIT | (l->next_sequence++ & 0x7FFFFFFF);
	request.message.rtm_family = family;
	do
		sent = sendto(l->fd, &request, sizeof(request), MSG_DONTWAIT,
			      (struct sockaddr *)&kernel, sizeof(kernel));
	while (sent < 0 && errno == EINTR);
	if (sent < 0) {   /* the queue is full: from the start, at the next read */
		l->rules_again = 1;
		return errno == EAGAIN || errno == ENOBUFS ? 0 : -errno;
	}
	l->rules_sequence = request.header.nlmsg_seq;
	return 0;
}

int fp_route_lookups_ask_rules(struct fp_route_lookups *l)
{
	if (l->rules_sequence) {   /* one dump at a time on a socket (else EBUSY) */
		l->rules_again = 1;
		return 0;
	}
	l->rules_by_source = 0;
	l->rules_phase = 1;
	l->rules_again = 0;
	return send_dump(l, RTM_GETRULE, AF_UNSPEC);
}

uint32_t fp_route_lookups_rules_sequence(const struct fp_route_lookups *l)
{
	return l->rules_sequence ? l->rules_sequence : (l->rules_again ? 1 : 0);
}

int fp_route_lookups_rules(struct fp_route_lookups *l)
{
	int result = l->rules_result;

	l->rules_result = -1;
	return result;
}

/* ---- answers ---- */

static void rules_answer(struct fp_route_lookups *l, const struct nlmsghdr *h)
{
	if (h->nlmsg_type == RTM_NEWRULE && l->rules_phase == 1 &&
	    h->nlmsg_len >= NLMSG_LENGTH(sizeof(struct fib_rule_hdr))) {
		const struct fib_rule_hdr *rule = NLMSG_DATA(h);
		const struct rtattr *a = (const struct rtattr *)((const uint8_t *)rule +
								 NLMSG_ALIGN(sizeof(*rule)));
		int left = (int)h->nlmsg_len - NLMSG_LENGTH(NLMSG_ALIGN(sizeof(*rule)));

		/* what makes a rule select by more than the destination
		 * (FRA_UID_RANGE only matters to the router's own sockets) */
		if (rule->src_len || rule->tos)
			l->rules_by_source |= FP_ROUTES_BY_RULES;
		for (; RTA_OK(a, left); a = RTA_NEXT(a, left)) {
			switch (a->rta_type & NLA_TYPE_MASK) {
			case FRA_IIFNAME:
			case FRA_FWMARK:
			case FRA_OIFNAME:
			case FRA_L3MDEV:
				l->rules_by_source |= FP_ROUTES_BY_RULES;
			}
		}
	} else if (h->nlmsg_type == RTM_NEWROUTE && l->rules_phase == 2 &&
		   h->nlmsg_len >= NLMSG_LENGTH(sizeof(struct rtmsg))) {
		const struct rtmsg *r = NLMSG_DATA(h);

		if (r->rtm_family == AF_INET6 && r->rtm_src_len)   /* `from` a prefix */
			l->rules_by_source |= FP_ROUTES_IPV6_BY_SOURCE;
	} else if (h->nlmsg_type == NLMSG_DONE || h->nlmsg_type == NLMSG_ERROR) {
		const struct nlmsgerr *e = NLMSG_DATA(h);

		l->rules_sequence = 0;
		/* a dump of before (lost to an overrun) still running: once it ends */
		if (h->nlmsg_type == NLMSG_ERROR &&
		    h->nlmsg_len >= NLMSG_LENGTH(sizeof(*e)) && e->error == -EBUSY) {
			l->rules_again = 1;
			return;
		}
		if (l->rules_again) {
			fp_route_lookups_ask_rules(l);
		} else if (l->rules_phase == 1) {
			l->rules_phase = 2;
			send_dump(l, RTM_GETROUTE, AF_INET6);
		} else {
			l->rules_result = l->rules_by_source;
		}
	}
}

static void route_answer(struct fp_route_lookups *l, struct fp_route_cache *cache,
			 const struct nlmsghdr *h, uint32_t s)
{
	uint32_t egress = 0;
	const uint8_t *gateway = NULL;
	int gateway_length = 0;

	if (h->nlmsg_type == RTM_NEWROUTE && h->nlmsg_len >= NLMSG_LENGTH(sizeof(struct rtmsg))) {
		const struct rtmsg *r = NLMSG_DATA(h);
		const struct rtattr *a = RTM_RTA(r);
		int left = (int)RTM_PAYLOAD(h);

		l->counters.answers++;
		/* local, unreachable, prohibit, blackhole: no egress, kept as the answer */
		for (; r->rtm_type == RTN_UNICAST && RTA_OK(a, left); a = RTA_NEXT(a, left)) {
			int length = (int)RTA_PAYLOAD(a);

			switch (a->rta_type & NLA_TYPE_MASK) {
			case RTA_OIF:
				if (length >= 4)
					memcpy(&egress, RTA_DATA(a), 4);
				break;
			case RTA_GATEWAY:
				gateway = RTA_DATA(a);
				gateway_length = length;
				break;
			case RTA_VIA:   /* a next hop of the other family (RFC 5549) */
				if (!gateway && length > 2) {
					gateway = (const uint8_t *)RTA_DATA(a) + 2;
					gateway_length = length - 2;
				}
				break;
			}
		}
		if (r->rtm_type != RTN_UNICAST)
			egress = 0;
	} else {   /* NLMSG_ERROR: no route, or a martian or rp_filter'd source */
		l->counters.failures++;
	}
	if (gateway_length > 16)
		gateway_length = 0;
	fp_route_cache_put(cache, &l->pending[s].key, egress, gateway, gateway_length);
}

static void datagram(struct fp_route_lookups *l, struct fp_route_cache *cache,
		     const uint8_t *data, size_t length, int *answered)
{
	const struct nlmsghdr *h = (const struct nlmsghdr *)data;
	int left = (int)length;

	for (; NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
		uint32_t s;

		if (h->nlmsg_seq & RULES_SEQUENCE_BIT) {
			if (h->nlmsg_seq == l->rules_sequence)
				rules_answer(l, h);
			continue;
		}
		s = h->nlmsg_seq & (l->slots - 1);
		if (l->state[s] != SLOT_PENDING || l->pending[s].sequence != h->nlmsg_seq)
			continue;   /* asked before a change, or answered already */
		route_answer(l, cache, h, s);
		done(l, s);
		(*answered)++;
	}
}

int fp_route_lookups_read(struct fp_route_lookups *l, struct fp_route_cache *cache)
{
	struct mmsghdr messages[READ_DATAGRAMS];
	struct iovec vectors[READ_DATAGRAMS];
	int answered = 0, got, i, rounds = 0;

	while (rounds++ < READ_ROUNDS) {
		for (i = 0; i < READ_DATAGRAMS; i++) {
			vectors[i].iov_base = l->datagrams + (size_t)i * DATAGRAM_BUFFER;
			vectors[i].iov_len = DATAGRAM_BUFFER;
			memset(&messages[i].msg_hdr, 0, sizeof(messages[i].msg_hdr));
			messages[i].msg_hdr.msg_iov = &vectors[i];
			messages[i].msg_hdr.msg_iovlen = 1;
		}
		got = recvmmsg(l->fd, messages, READ_DATAGRAMS, MSG_DONTWAIT, NULL);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			if (errno == ENOBUFS) {   /* answers lost: ask again what is still wanted */
				l->counters.overruns++;
				fp_route_lookups_forget(l);
				if (l->rules_sequence) {
					l->rules_sequence = 0;
					fp_route_lookups_ask_rules(l);
				}
				continue;
			}
			break;   /* EAGAIN: nothing more now */
		}
		for (i = 0; i < got; i++) {
			if (messages[i].msg_hdr.msg_flags & MSG_TRUNC) {
				l->counters.overruns++;   /* cannot happen with our buffers */
				continue;
			}
			datagram(l, cache, vectors[i].iov_base, messages[i].msg_len, &answered);
		}
		if (got < READ_DATAGRAMS)
			break;
	}
	if (l->rules_again && !l->rules_sequence)
		fp_route_lookups_ask_rules(l);
	return answered;
}

void fp_route_lookups_counters(const struct fp_route_lookups *l,
			       struct fp_route_lookups_counters *counters)
{
	*counters = l->counters;
}
