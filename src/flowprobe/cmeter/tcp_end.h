/* TCP ends by sequence numbers: a connection ends when each side's FIN has
 * been acknowledged by the other (or at a RST), so its records leave at
 * once instead of after the end grace.  The grace stays the fallback for a
 * final ACK never seen (lost before the capture point, state displaced).
 *
 * The state lives in a small table of its own, keyed by the connection
 * alone: both directions, and every capture that sees it (a router's
 * ingress captures see one direction each, `direction both` splits an
 * interface in two), share one state, which lists the flow entries it
 * passed through (TCP_END_VIEWS at most).  It is bounded (about max_flows
 * / 64) and touched only by segments of connections that are closing.
 * After the end the state stays as a tombstone for the grace: late
 * segments without data (a retransmitted FIN, the ACK answering it,
 * another RST) are absorbed and counted (dropped_tcp_after_end) rather
 * than made into tiny flows of their own. */
#ifndef FLOWPROBE_TCP_END_H
#define FLOWPROBE_TCP_END_H

#include <stdint.h>

#include "decode.h"

#define TCP_END_VIEWS 4   /* entries a connection may have: 2 directions x 2 captures */

struct tcp_end_state {
	uint64_t key;            /* the connection; 0: free */
	uint64_t seen_ms;        /* its latest closing segment: the stalest state is displaced first */
	uint64_t ended_until_ms; /* ended: a tombstone until then; 0: still closing */
	uint32_t fin_seq[2];     /* each direction's FIN (its sequence number) */
	/* each direction's latest acknowledgment: captures of the two ways are
	 * read apart, so an ACK may be met before the FIN it acknowledges */
	uint32_t ack[2];
	uint32_t views[TCP_END_VIEWS];  /* flow entries of the connection (UINT32_MAX: none) */
	uint8_t view_side[TCP_END_VIEWS];
	uint8_t fin[2];          /* that FIN seen */
	uint8_t acked[2];        /* and acknowledged by the other side */
	uint8_t has_ack[2];
	uint32_t chain;          /* next state of its bucket */
	uint32_t newer, older;   /* the list by last closing segment (UINT32_MAX: end) */
};

struct tcp_end_table {
	/* Fully associative: a bucket chain per key, and when every state is
	 * taken the stalest makes room.  Which state goes depends only on the
	 * order of the segments, never on the hash: the records are the same
	 * whatever the seed and the byte order (the cross replays check it). */
	struct tcp_end_state *states;
	uint32_t *buckets;       /* capacity heads */
	uint32_t mask;           /* capacity - 1 */
	uint32_t newest, stalest;
	uint64_t seed[2];
	uint64_t ended_by_fin;   /* connections: both FINs acknowledged */
	uint64_t ended_by_rst;
	uint64_t displaced;      /* closing connections whose state made room: the grace ends them */
	uint64_t memory_bytes;
	uint32_t fresh;          /* states from here on never used */
};

enum tcp_end_verdict {
	TCP_END_GOES_ON = 0,
	TCP_END_NOW,             /* FINs both acknowledged, or a RST: end the flow(s) now */
};

/* Entries to end with the segment's own (check they still hold it). */
struct tcp_end_views {
	uint32_t entries[TCP_END_VIEWS];
	int count;
};

int tcp_end_init(struct tcp_end_table *t, uint32_t max_flows, const uint64_t seed[2]);
void tcp_end_free(struct tcp_end_table *t);

/* A segment with FIN or RST, or of an entry that has seen a FIN, accounted
 * to flow entry `entry`.  TCP_END_NOW: end that entry, and the ones in
 * *others: those of the other direction, which has nothing left to send
 * (its FIN passed every capture before the ACK that ends it was sent).  An
 * entry of this direction seen at another capture ends at its own copy of
 * the last segment. */
enum tcp_end_verdict tcp_end_segment(struct tcp_end_table *t, const struct packet *p,
				     uint32_t entry, uint64_t now_ms, uint32_t grace_ms,
				     struct tcp_end_views *others);

/* A segment that would start a new flow: 1 when it is a late one of a
 * connection that ended within the grace (absorbed, not a flow). */
int tcp_end_absorbs(struct tcp_end_table *t, const struct packet *p, uint64_t now_ms);

#endif
