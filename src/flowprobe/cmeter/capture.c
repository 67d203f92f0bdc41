/* Capture sources: libpcap handles owned by the meter, read with
 * pcap_dispatch() and a C callback, so no packet ever reaches Python.
 * Live handles are non-blocking: the daemon polls their selectable fd. */
#include "meter.h"

#include <errno.h>
#include <linux/filter.h>
#include <stdio.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>

#define LIVE_TIMEOUT_MS FP_LIVE_BLOCK_TIMEOUT_MS  /* the kernel may hold a partly filled block */
#define FILE_BUFFER_BYTES (1 << 20)

struct dispatch_context {
	struct fp_meter *meter;
	struct capture_source *source;
	int count;
};

static void on_packet(u_char *user, const struct pcap_pkthdr *header, const u_char *bytes)
{
	struct dispatch_context *ctx = (struct dispatch_context *)(void *)user;
	uint64_t timestamp_us = (uint64_t)header->ts.tv_sec * 1000000u + (uint64_t)header->ts.tv_usec;

	meter_offer(ctx->meter, ctx->source->sampler, ctx->source->linktype,
		    ctx->source->interface_slot, timestamp_us, bytes, header->caplen, header->len);
	ctx->source->packets_read++;
	ctx->source->octets_read += header->len;
	ctx->count++;
}

static int free_source(struct fp_meter *m, char *error)
{
	int i;

	for (i = 0; i < FP_MAX_SOURCES; i++)
		if (!m->sources[i].handle)
			return i;
	snprintf(error, FP_ERROR_SIZE, "too many capture sources (at most %d)", FP_MAX_SOURCES);
	return -1;
}

static int adopt(struct fp_meter *m, int id, pcap_t *handle, uint32_t ifindex, uint8_t direction,
		 const char *name, char *error)
{
	int linktype = pcap_datalink(handle);
	struct capture_source *s = &m->sources[id];

	if (!decode_linktype_supported(linktype)) {
		const char *link_name = pcap_datalink_val_to_name(linktype);

		snprintf(error, FP_ERROR_SIZE, "%s: unsupported link type %d (%s)", name, linktype,
			 link_name ? link_name : "unknown");
		pcap_close(handle);
		return -1;
	}
	memset(s, 0, sizeof(*s));
	s->handle = handle;
	s->linktype = linktype;
	s->interface_slot = meter_interface_slot(m, ifindex, direction);
	s->sampler = meter_sampler(m, ifindex);
	return id;
}

static int apply_filter(pcap_t *handle, const char *device, const char *bpf_filter, char *error)
{
	struct bpf_program program;
	int status;

	if (pcap_compile(handle, &program, bpf_filter, 1, PCAP_NETMASK_UNKNOWN) < 0) {
		snprintf(error, FP_ERROR_SIZE, "%s: filter \"%s\": %s", device, bpf_filter,
			 pcap_geterr(handle));
		return -1;
	}
	status = pcap_setfilter(handle, &program);
	pcap_freecode(&program);
	if (status < 0) {
		snprintf(error, FP_ERROR_SIZE, "%s: %s", device, pcap_geterr(handle));
		return -1;
	}
	return 0;
}

int fp_check_filter(int linktype, int snaplen, const char *bpf_filter, char *error)
{
	struct bpf_program program;
	pcap_t *dead = pcap_open_dead(linktype, snaplen);

	if (!dead) {
		snprintf(error, FP_ERROR_SIZE, "cannot check filters: out of memory");
		return -1;
	}
	if (pcap_compile(dead, &program, bpf_filter, 1, PCAP_NETMASK_UNKNOWN) < 0) {
		snprintf(error, FP_ERROR_SIZE, "filter \"%s\": %s", bpf_filter, pcap_geterr(dead));
		pcap_close(dead);
		return -1;
	}
	pcap_freecode(&program);
	pcap_close(dead);
	return 0;
}

int fp_meter_open_offline(struct fp_meter *m, const char *path, uint32_t ifindex, char *error)
{
	char pcap_error[PCAP_ERRBUF_SIZE] = "";
	int id = free_source(m, error);
	struct savefile *reader;
	char *buffer;
	pcap_t *handle;
	FILE *file;

	if (id < 0)
		return -1;
	file = fopen(path, "rb");
	if (!file) {
		snprintf(error, FP_ERROR_SIZE, "%s: %s", path, strerror(errno));
		return -1;
	}
	/* libpcap reads a savefile with two freads a packet: a large buffer
	 * turns that into few read() calls; savefile.c reads with its own */
	reader = savefile_open(file);
	buffer = reader ? NULL : malloc(FILE_BUFFER_BYTES);
	if (buffer)
		setvbuf(file, buffer, _IOFBF, FILE_BUFFER_BYTES);
	handle = pcap_fopen_offline_with_tstamp_precision(file, PCAP_TSTAMP_PRECISION_MICRO, pcap_error);
	if (!handle) {
		savefile_close(reader);
		fclose(file);
		free(buffer);
		if (strstr(pcap_error, path))
			snprintf(error, FP_ERROR_SIZE, "%s", pcap_error);
		else
			snprintf(error, FP_ERROR_SIZE, "%s: %s", path, pcap_error);
		return -1;
	}
	id = adopt(m, id, handle, ifindex, FP_DIRECTION_ANY, path, error);
	if (id < 0) {
		free(buffer);
		savefile_close(reader);
		return id;
	}
	m->sources[id].file_buffer = buffer;
	m->sources[id].savefile = reader;
	if (reader)
		savefile_adopt(reader, handle);
	return id;
}

int fp_meter_open_live(struct fp_meter *m, const char *device, uint32_t ifindex,
		       int direction, int snaplen, int promiscuous, int buffer_bytes,
		       const char *bpf_filter, char *error)
{
	char pcap_error[PCAP_ERRBUF_SIZE] = "";
	int id = free_source(m, error), status;
	pcap_t *handle;

	if (id < 0)
		return -1;
	handle = pcap_create(device, pcap_error);
	if (!handle) {
		snprintf(error, FP_ERROR_SIZE, "%s: %s", device, pcap_error);
		return -1;
	}
	pcap_set_snaplen(handle, snaplen);
	pcap_set_promisc(handle, promiscuous);
	pcap_set_timeout(handle, LIVE_TIMEOUT_MS);
	if (buffer_bytes > 0)
		pcap_set_buffer_size(handle, buffer_bytes);
	status = pcap_activate(handle);
	if (status < 0) {
		snprintf(error, FP_ERROR_SIZE, "%s: %s", device,
			 status == PCAP_ERROR ? pcap_geterr(handle) : pcap_statustostr(status));
		pcap_close(handle);
		return -1;
	}
	if (direction != FP_DIRECTION_ANY &&
	    pcap_setdirection(handle, direction == FP_DIRECTION_IN ? PCAP_D_IN : PCAP_D_OUT) < 0) {
		snprintf(error, FP_ERROR_SIZE, "%s: direction: %s", device, pcap_geterr(handle));
		pcap_close(handle);
		return -1;
	}
	if (pcap_setnonblock(handle, 1, pcap_error) < 0) {
		snprintf(error, FP_ERROR_SIZE, "%s: %s", device, pcap_error);
		pcap_close(handle);
		return -1;
	}
	if (bpf_filter && *bpf_filter && apply_filter(handle, device, bpf_filter, error) < 0) {
		pcap_close(handle);
		return -1;
	}
	return adopt(m, id, handle, ifindex, (uint8_t)direction, device, error);
}

static struct capture_source *source_of(struct fp_meter *m, int id)
{
	if (id < 0 || id >= FP_MAX_SOURCES || !m->sources[id].handle)
		return NULL;
	return &m->sources[id];
}

void fp_meter_close_source(struct fp_meter *m, int id)
{
	struct capture_source *s = source_of(m, id);

	if (!s)
		return;
	savefile_close(s->savefile);
	s->savefile = NULL;
	pcap_close(s->handle);
	free(s->file_buffer);
	s->handle = NULL;
	s->file_buffer = NULL;
}

int fp_meter_set_filter(struct fp_meter *m, int id, const char *bpf_filter, char *error)
{
	struct capture_source *s = source_of(m, id);

	if (!s) {
		snprintf(error, FP_ERROR_SIZE, "no capture source %d", id);
		return -1;
	}
	if (s->savefile)
		return savefile_set_filter(s->savefile, s->handle, bpf_filter, error);
	/* libpcap's pcap_setfilter() would also run the new filter over the
	 * ring's blocks already taken, dropping (uncounted) the packets the old
	 * filter accepted and the new one would not.  On Ethernet the compiled
	 * program is the kernel's as is: put it straight into the socket, as
	 * the seal does, and the ring's packets are read as the old filter took
	 * them.  Other link types (cooked captures) need libpcap's rewriting. */
	if (s->linktype == DLT_EN10MB) {
		struct bpf_program compiled;
		struct sock_fprog program;
		int status;

		if (pcap_compile(s->handle, &compiled, bpf_filter, 1, PCAP_NETMASK_UNKNOWN) < 0) {
			snprintf(error, FP_ERROR_SIZE, "capture: filter \"%s\": %s", bpf_filter,
				 pcap_geterr(s->handle));
			return -1;
		}
		program.len = (unsigned short)compiled.bf_len;
		program.filter = (struct sock_filter *)compiled.bf_insns;
		status = setsockopt(pcap_fileno(s->handle), SOL_SOCKET, SO_ATTACH_FILTER, &program,
				    sizeof(program));
		pcap_freecode(&compiled);
		if (status < 0) {
			snprintf(error, FP_ERROR_SIZE, "cannot swap the capture filter: %s",
				 strerror(errno));
			return -1;
		}
		return 0;
	}
	/* an empty filter is one that takes everything */
	return apply_filter(s->handle, "capture", *bpf_filter ? bpf_filter : "", error);
}

int fp_meter_take_sources(struct fp_meter *to, struct fp_meter *from, char *error)
{
	int id;

	for (id = 0; id < FP_MAX_SOURCES; id++)
		if (to->sources[id].handle) {
			snprintf(error, FP_ERROR_SIZE, "the new meter has sources already");
			return -1;
		}
	meter_process_batch(from);
	/* the samplers go on counting (sFlow's pools), sources keep their index */
	memcpy(to->samplers, from->samplers, sizeof(to->samplers));
	to->samplers_used = from->samplers_used;
	for (id = 0; id < FP_MAX_SOURCES; id++) {
		struct capture_source *s = &from->sources[id];

		if (!s->handle)
			continue;
		to->sources[id] = *s;
		to->sources[id].interface_slot = meter_interface_slot(
			to, from->interface_slots[s->interface_slot].ifindex,
			from->interface_slots[s->interface_slot].direction);
		to->interface_slots[to->sources[id].interface_slot].tunnels =
			from->interface_slots[s->interface_slot].tunnels;
		to->interface_slots[to->sources[id].interface_slot].l2_flows =
			from->interface_slots[s->interface_slot].l2_flows && to->settings.l2_flows;
		memset(s, 0, sizeof(*s));
	}
	return 0;
}

int fp_meter_seal_source(struct fp_meter *m, int id, char *error)
{
	/* straight into the socket, not pcap_setfilter(): libpcap would apply
	 * the new filter to the ring's waiting packets too, and drop them */
	static struct sock_filter reject_all[] = { BPF_STMT(BPF_RET | BPF_K, 0) };
	struct sock_fprog program = { 1, reject_all };
	struct capture_source *s = source_of(m, id);

	if (!s) {
		snprintf(error, FP_ERROR_SIZE, "no capture source %d", id);
		return -1;
	}
	if (setsockopt(pcap_fileno(s->handle), SOL_SOCKET, SO_ATTACH_FILTER, &program,
		       sizeof(program)) < 0) {
		snprintf(error, FP_ERROR_SIZE, "cannot seal the capture: %s", strerror(errno));
		return -1;
	}
	return 0;
}

int fp_meter_source_fd(struct fp_meter *m, int id)
{
	struct capture_source *s = source_of(m, id);

	return s ? pcap_get_selectable_fd(s->handle) : -1;
}

int fp_meter_set_source_tunnels(struct fp_meter *m, int id, uint32_t tunnels)
{
	struct capture_source *s = source_of(m, id);

	if (!s || tunnels > FP_TUNNELS_BOTH)
		return -1;
	if (tunnels != FP_TUNNELS_OUTER && m->settings.tunnels == FP_TUNNELS_OUTER)
		return -1;  /* its table has no room for tunnel segments */
	m->interface_slots[s->interface_slot].tunnels = (uint8_t)tunnels;
	return 0;
}

int fp_meter_set_source_l2_flows(struct fp_meter *m, int id, uint32_t l2_flows)
{
	struct capture_source *s = source_of(m, id);

	if (!s || l2_flows > 1 || (l2_flows && !m->settings.l2_flows))
		return -1;  /* without l2_flows its table has no room for the EtherType */
	m->interface_slots[s->interface_slot].l2_flows = (uint8_t)l2_flows;
	return 0;
}

int fp_meter_source_stats(struct fp_meter *m, int id, struct fp_source_stats *stats)
{
	struct capture_source *s = source_of(m, id);
	struct pcap_stat ps;

	if (!s)
		return -1;
	memset(stats, 0, sizeof(*stats));
	stats->packets_read = s->packets_read;
	stats->octets_read = s->octets_read;
	stats->linktype = s->linktype;
	if (pcap_stats(s->handle, &ps) == 0) {  /* fails on savefiles: no kernel counters */
		stats->pcap_received = ps.ps_recv;
		stats->pcap_dropped = ps.ps_drop;
		stats->pcap_if_dropped = ps.ps_ifdrop;
	}
	return 0;
}

int fp_meter_dispatch(struct fp_meter *m, int id, int max_packets, char *error)
{
	struct capture_source *s = source_of(m, id);
	struct dispatch_context ctx = { m, s, 0 };
	int status;

	if (!s) {
		snprintf(error, FP_ERROR_SIZE, "no capture source %d", id);
		return FP_DISPATCH_ERROR;
	}
	if (meter_backlogged(m))  /* the caller drains first */
		return 0;
	if (s->savefile) {
		status = savefile_dispatch(m, s, max_packets, error);
		meter_process_batch(m);
		return status;
	}
	m->dispatching = s->handle;
	status = pcap_dispatch(s->handle, max_packets > 0 ? max_packets : -1, on_packet, (u_char *)&ctx);
	/* a savefile keeps a break requested after its last packet for the
	 * next call, which then reads nothing: read on, or it looks like EOF */
	if (status == PCAP_ERROR_BREAK && ctx.count == 0)
		status = pcap_dispatch(s->handle, max_packets > 0 ? max_packets : -1, on_packet,
				       (u_char *)&ctx);
	meter_process_batch(m);
	m->dispatching = NULL;
	if (status == PCAP_ERROR) {
		snprintf(error, FP_ERROR_SIZE, "%s", pcap_geterr(s->handle));
		return FP_DISPATCH_ERROR;
	}
	return ctx.count;  /* PCAP_ERROR_BREAK too: our own early stop */
}
