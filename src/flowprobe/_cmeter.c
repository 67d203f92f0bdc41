/* The cffi face of the meter: its life cycle and settings, and the API
 * over the tables (drain, snapshot, top, expiry, counters).  The per-packet
 * path lives in cmeter/: capture.c reads a source → pipeline.c decodes,
 * batches, settles fragments and accounts → flow_table.c keeps the flows. */
#include "cmeter/meter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define MAX_TABLE_FLOWS (1u << 24)
#define MAX_TABLE_FRAGMENTS (1u << 20)
/* a flow's duration is kept in 32 bits of milliseconds */
#define MAX_TIMEOUT_MS (7u * 24 * 3600 * 1000)

static int settings_invalid(const struct fp_settings *s, char *error)
{
	const char *problem = NULL;

	if (s->max_flows < 1 || s->max_flows > MAX_TABLE_FLOWS)
		problem = "max_flows must be 1..16777216";
	else if (s->max_flows_ipv6 > s->max_flows)
		problem = "max_flows_ipv6 must be at most max_flows";
	else if (s->max_fragments < 1 || s->max_fragments > MAX_TABLE_FRAGMENTS)
		problem = "max_fragments must be 1..1048576";
	else if (s->idle_timeout_ms < 1 || s->idle_timeout_ms > MAX_TIMEOUT_MS)
		problem = "idle_timeout must be 1 ms..7 days";
	else if (s->active_timeout_ms < 1 || s->active_timeout_ms > MAX_TIMEOUT_MS)
		problem = "active_timeout must be 1 ms..7 days";
	else if (s->unanswered_timeout_ms < 1 || s->unanswered_timeout_ms > MAX_TIMEOUT_MS)
		problem = "unanswered_timeout must be 1 ms..7 days";
	else if (s->tcp_end_grace_ms > MAX_TIMEOUT_MS)
		problem = "tcp_end_grace must be 0..7 days";
	else if (s->fragment_timeout_ms < 1 || s->fragment_timeout_ms > MAX_TIMEOUT_MS)
		problem = "fragment_timeout must be 1 ms..7 days";
	else if (s->overflow_policy != FP_OVERFLOW_EVICT_OLDEST && s->overflow_policy != FP_OVERFLOW_REFUSE_NEW)
		problem = "overflow_policy must be evict or refuse";
	else if (s->tunnels > FP_TUNNELS_BOTH)
		problem = "tunnels must be outer, inner or both";
	if (problem && error)
		snprintf(error, FP_ERROR_SIZE, "%s", problem);
	return problem != NULL;
}

/* Never blocks: a router early in boot may have no entropy yet, and a
 * weaker seed is better than a probe that does not start. */
static void random_seed(uint64_t seed[2])
{
	struct timespec now;

	if (getrandom(seed, 2 * sizeof(uint64_t), GRND_NONBLOCK) == 2 * sizeof(uint64_t))
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	seed[0] = (uint64_t)now.tv_nsec * 0x9e3779b97f4a7c15ULL ^ (uint64_t)getpid();
	clock_gettime(CLOCK_REALTIME, &now);
	seed[1] = (uint64_t)now.tv_sec * 0xc2b2ae3d27d4eb4fULL ^ (uint64_t)now.tv_nsec;
}

struct fp_meter *fp_meter_new(const struct fp_settings *settings, char *error)
{
	struct fp_meter *m;
	uint64_t seed[2];

	if (settings_invalid(settings, error))
		return NULL;
	m = calloc(1, sizeof(*m));
	if (!m) {
		snprintf(error, FP_ERROR_SIZE, "out of memory");
		return NULL;
	}
	m->settings = *settings;
	if (settings->hash_seed) {
		seed[0] = settings->hash_seed;
		seed[1] = settings->hash_seed * 0x9e3779b97f4a7c15ULL + 1;
	} else {
		random_seed(seed);
	}
	if (flow_table_init(&m->flows, settings, seed) ||
	    frag_table_init(&m->fragments, settings->max_fragments, settings->fragment_timeout_ms, seed)) {
		snprintf(error, FP_ERROR_SIZE, "cannot allocate the tables (max_flows %u, max_fragments %u)",
			 settings->max_flows, settings->max_fragments);
		fp_meter_free(m);
		return NULL;
	}
	return m;
}

void fp_meter_free(struct fp_meter *m)
{
	int i;

	if (!m)
		return;
	for (i = 0; i < FP_MAX_SOURCES; i++)
		fp_meter_close_source(m, i);
	flow_table_free(&m->flows);
	frag_table_free(&m->fragments);
	sample_ring_free(&m->samples);
	free(m);
}

void fp_meter_process_frame(struct fp_meter *m, int linktype, uint32_t ifindex,
			    uint64_t timestamp_us, const uint8_t *frame,
			    uint32_t captured_length, uint32_t wire_length)
{
	fp_meter_process_frame_from(m, linktype, ifindex, FP_DIRECTION_ANY, timestamp_us, frame,
				    captured_length, wire_length);
}

void fp_meter_process_frame_from(struct fp_meter *m, int linktype, uint32_t ifindex,
				 int direction, uint64_t timestamp_us, const uint8_t *frame,
				 uint32_t captured_length, uint32_t wire_length)
{
	uint8_t slot = meter_interface_slot(m, ifindex, (uint8_t)direction);

	m->interface_slots[slot].tunnels = (uint8_t)m->settings.tunnels;
	m->interface_slots[slot].l2_flows = m->settings.l2_flows != 0;
	meter_offer(m, meter_sampler(m, ifindex), linktype, slot, timestamp_us, frame,
		    captured_length, wire_length);
	meter_process_batch(m);
}

void fp_meter_expire(struct fp_meter *m, uint64_t now_ms)
{
	meter_process_batch(m);
	m->next_scan_ms = 0;  /* scan now, whatever the interval */
	meter_advance_clock(m, now_ms);
	if (m->waiting_errors_used)
		meter_join_waiting_errors(m, now_ms > m->counters.clock_ms ? now_ms : m->counters.clock_ms, 0);
}

void fp_meter_flush(struct fp_meter *m)
{
	struct frag_orphans orphans = {0, 0};

	meter_process_batch(m);
	meter_join_waiting_errors(m, m->counters.clock_ms, 1);
	flow_table_expire_all(&m->flows, FP_END_FORCED);
	frag_table_expire_all(&m->fragments, &orphans);
	meter_count_orphans(m, &orphans);
}

int fp_meter_drain(struct fp_meter *m, struct fp_record *out, int max)
{
	int n;

	meter_process_batch(m);
	n = flow_table_drain(&m->flows, m->interface_slots, out, max);

	m->counters.records_drained += (uint64_t)n;
	return n;
}

int fp_meter_snapshot(struct fp_meter *m, const struct fp_flow_filter *filter,
		      struct fp_record *out, int max, uint32_t *cursor)
{
	meter_process_batch(m);
	return flow_table_snapshot(&m->flows, m->interface_slots, filter, out, max, cursor);
}

int fp_meter_top(struct fp_meter *m, const struct fp_flow_filter *filter, int sort,
		 struct fp_record *out, int limit, uint64_t *matched)
{
	meter_process_batch(m);
	return flow_table_top(&m->flows, m->interface_slots, filter, sort, out, limit, matched);
}

int fp_meter_expire_matching(struct fp_meter *m, const struct fp_flow_filter *filter)
{
	meter_process_batch(m);
	return flow_table_expire_matching(&m->flows, m->interface_slots, filter);
}

int fp_meter_update_settings(struct fp_meter *m, const struct fp_settings *s, char *error)
{
	struct flow_table *t = &m->flows;

	if (settings_invalid(s, error))
		return -1;
	if (s->max_flows != m->settings.max_flows || s->max_flows_ipv6 != m->settings.max_flows_ipv6 ||
	    s->max_fragments != m->settings.max_fragments ||
	    s->bidirectional != m->settings.bidirectional || s->macs != m->settings.macs ||
	    s->tunnels != m->settings.tunnels || s->icmp_errors != m->settings.icmp_errors ||
	    s->l2_flows != m->settings.l2_flows ||
	    s->verify_checksums != m->settings.verify_checksums) {
		snprintf(error, FP_ERROR_SIZE, "table capacities, bidirectional, macs, tunnels, "
			 "icmp_errors, l2_flows or verify_checksums changed: a new meter is needed");
		return -1;
	}
	meter_process_batch(m);
	t->idle_timeout_ms = s->idle_timeout_ms;
	t->active_timeout_ms = s->active_timeout_ms;
	t->unanswered_timeout_ms = s->unanswered_timeout_ms;
	t->tcp_end_grace_ms = s->tcp_end_grace_ms;
	t->overflow_policy = s->overflow_policy;
	m->fragments.timeout_ms = s->fragment_timeout_ms;
	m->settings = *s;
	return 0;
}

uint64_t fp_meter_pending(struct fp_meter *m)
{
	meter_process_batch(m);
	return flow_table_pending(&m->flows);
}

void fp_meter_counters(struct fp_meter *m, struct fp_counters *c)
{
	const struct flow_table *t = &m->flows;

	meter_process_batch(m);
	*c = m->counters;
	c->flows_created = t->created;
	c->flows_expired_idle = t->expired[FP_END_IDLE_TIMEOUT];
	c->flows_expired_active = t->expired[FP_END_ACTIVE_TIMEOUT];
	c->flows_expired_end_of_flow = t->expired[FP_END_OF_FLOW];
	c->flows_expired_forced = t->expired[FP_END_FORCED];
	c->flows_evicted = t->expired[FP_END_LACK_OF_RESOURCES];
	c->flows_active = flow_table_active(t);
	c->flows_pending_export = flow_table_pending(t);
	c->flows_peak = t->peak;
	c->ipv6_flows_max = t->addr6.max_active;
	c->ipv6_flows_refused = t->addr6.refused;
	c->ipv6_flows_evicted = t->addr6.evicted;
	c->fragments_tracked = m->fragments.used;
	c->fragment_datagrams = m->fragments.datagrams;
	c->fragment_entries_evicted = m->fragments.evicted;
	c->fragment_entries_timed_out = m->fragments.timed_out;
	c->tcp_ends_by_fin = t->ends.ended_by_fin;
	c->tcp_ends_by_rst = t->ends.ended_by_rst;
	c->tcp_end_states_displaced = t->ends.displaced;
}

uint64_t fp_meter_memory_bytes(struct fp_meter *m)
{
	return m->flows.memory_bytes + m->fragments.memory_bytes + sizeof(*m) +
	       (uint64_t)m->samples.capacity * sizeof(struct fp_packet_sample);
}

uint64_t fp_meter_resident_bytes(struct fp_meter *m)
{
	return fp_meter_memory_bytes(m) - m->flows.memory_bytes - m->fragments.memory_bytes +
	       flow_table_resident_bytes(&m->flows) + frag_table_resident_bytes(&m->fragments);
}

int fp_linktype_supported(int linktype)
{
	return decode_linktype_supported(linktype);
}
