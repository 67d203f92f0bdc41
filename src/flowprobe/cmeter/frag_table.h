/* The fragment table: which flow a non-first fragment belongs to.
 *
 * Keyed by (source, VLANs, src, dst, protocol, IP id).  The first fragment
 * brings the ports; fragments that arrive before it are held here as
 * counts only (never as packet copies), and join the flow when it comes.
 * Entries live at most fragment_timeout from their first fragment. */
#ifndef FLOWPROBE_FRAG_TABLE_H
#define FLOWPROBE_FRAG_TABLE_H

#include <stdint.h>
#include "decode.h"

#define FRAG_NONE UINT32_MAX

struct frag_entry {
	uint8_t src[16];
	uint8_t dst[16];
	uint64_t created_ms;
	uint64_t held_octets;
	uint64_t held_first_ms;
	uint64_t held_last_ms;
	uint32_t held_packets;
	uint32_t id;
	uint32_t payload_seen;   /* bytes of the datagram seen so far */
	uint32_t payload_total;  /* known once the last fragment came; 0 before */
	uint32_t bucket_next;
	uint32_t list_prev;
	uint32_t list_next;
	uint16_t src_port;
	uint16_t dst_port;
	uint32_t ipsec_spi;
	uint16_t vlan_id;
	uint16_t inner_vlan_id;
	uint16_t source;
	uint8_t protocol;
	uint8_t ip_version;
	uint8_t have_first;
};

struct frag_table {
	struct frag_entry *entries;
	uint32_t *buckets;
	uint32_t bucket_mask;
	uint32_t capacity;
	uint32_t used;
	uint32_t free_head;
	uint32_t head, tail;  /* by creation: the tail times out first */
	uint32_t timeout_ms;
	uint64_t seed[2];
	uint64_t memory_bytes;
	uint64_t datagrams;
	uint64_t evicted;
	uint64_t timed_out;
	uint32_t fresh;       /* entries from here on never used */
};

/* What became of fragments held in an entry that went away without its
 * first fragment. */
struct frag_orphans {
	uint64_t packets;
	uint64_t octets;
};

int frag_table_init(struct frag_table *t, uint32_t capacity, uint32_t timeout_ms, uint64_t seed[2]);
void frag_table_free(struct frag_table *t);
/* Of memory_bytes, the bytes in memory now (entries are written when first used). */
uint64_t frag_table_resident_bytes(const struct frag_table *t);

/* The entry for this fragment's datagram, created if new (evicting the
 * oldest when full; its held counts go to orphans). */
uint32_t frag_table_get(struct frag_table *t, const struct packet *p, struct frag_orphans *orphans);
/* Notes this fragment's bytes; frees the entry once the datagram is whole. */
void frag_table_seen(struct frag_table *t, uint32_t i, const struct packet *p);
void frag_table_expire(struct frag_table *t, uint64_t now_ms, struct frag_orphans *orphans);
void frag_table_expire_all(struct frag_table *t, struct frag_orphans *orphans);

#endif
