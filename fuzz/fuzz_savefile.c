/* libFuzzer target over the capture-file reader (cmeter/savefile.c): the
 * input is a whole pcap file.  It is opened as fp_meter_open_offline()
 * opens any file (libpcap checks the header, savefile.c reads the records)
 * and every record is dispatched into a meter with small tables; the same
 * bytes are also read by libpcap alone (pcap_next_ex), and both must agree
 * on how many records there were, their wire lengths and the error that
 * ended the file (libpcap's words), or the target traps.  The meter samples
 * every packet of its interface into a ring, so each record's time, wire
 * length and first bytes (FP_SAMPLE_HEADER_BYTES) are compared too.  Every
 * other input that savefile.c reads is read through a BPF filter (FILTER),
 * set on both sides (a file libpcap reads for the meter takes none: filters
 * are swapped in the kernel, for live captures).
 *
 * The file lives in a memfd, opened through /proc/self/fd: a regular file,
 * as savefile.c wants, written once per input.  The fuzz build makes
 * savefile.c's buffer tiny (SAVEFILE_BUFFER_BYTES in the Makefile) so that
 * short inputs cross its refills, moves and growth. */
#define _GNU_SOURCE
#include <pcap/pcap.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "_cmeter.h"
#include "corpus_format.h"

#define CHECK(condition) do { if (!(condition)) __builtin_trap(); } while (0)
#define DRAIN 64
#define COMPARED 1024  /* records compared one by one: more than -max_len holds */
/* on the records' lengths (pcap_offline_filter's) and contents */
#define FILTER "len > 100 or udp or (ether[0] & 1 = 1)"

/* one record as libpcap handed it, as capture.c's on_packet sees it */
struct reference_record {
	uint64_t timestamp_us;
	uint32_t wire, captured;
	uint8_t header[FP_SAMPLE_HEADER_BYTES];
};

static struct reference_record reference_records[COMPARED];

static int memfd = -1;
static char path[64];

static void write_file(const uint8_t *data, size_t size)
{
	size_t done = 0;

	if (memfd < 0) {
		memfd = memfd_create("fuzz_savefile", 0);
		CHECK(memfd >= 0);
		snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
	}
	CHECK(ftruncate(memfd, 0) == 0);
	while (done < size) {
		ssize_t n = pwrite(memfd, data + done, size - done, (off_t)done);

		CHECK(n > 0);
		done += (size_t)n;
	}
}

struct reading {
	int opened;
	uint64_t records;
	uint64_t octets;        /* wire lengths */
	char error[FP_ERROR_SIZE + PCAP_ERRBUF_SIZE];  /* "" when the file just ended */
};

/* savefile.c reads it: classic magic, version 2.4 */
static int read_in_place(const uint8_t *data, size_t size)
{
	uint32_t magic;
	uint16_t version[2];
	int swapped;

	if (size < 24)
		return 0;
	memcpy(&magic, data, 4);
	memcpy(version, data + 4, 4);
	if (magic != 0xa1b2c3d4 && magic != 0xa1b23c4d && magic != 0xd4c3b2a1 &&
	    magic != 0x4d3cb2a1)
		return 0;
	swapped = magic == 0xd4c3b2a1 || magic == 0x4d3cb2a1;
	return (swapped ? __builtin_bswap16(version[0]) : version[0]) == 2 &&
	       (swapped ? __builtin_bswap16(version[1]) : version[1]) == 4;
}

/* libpcap's own reading of the file, the reference */
static void read_with_libpcap(struct reading *r, int *filtered)
{
	char error[PCAP_ERRBUF_SIZE] = "";
	struct pcap_pkthdr *header;
	const u_char *data;
	pcap_t *handle;
	int status;

	handle = pcap_open_offline_with_tstamp_precision(path, PCAP_TSTAMP_PRECISION_MICRO, error);
	if (!handle) {
		snprintf(r->error, sizeof(r->error), "%s", error);
		return;
	}
	r->opened = 1;
	if (*filtered) {  /* a filter that does not compile for the link type: none */
		struct bpf_program program;

		*filtered = pcap_compile(handle, &program, FILTER, 1, PCAP_NETMASK_UNKNOWN) == 0;
		if (*filtered) {
			CHECK(pcap_setfilter(handle, &program) == 0);
			pcap_freecode(&program);
		}
	}
	while ((status = pcap_next_ex(handle, &header, &data)) == 1) {
		if (r->records < COMPARED) {
			struct reference_record *record = &reference_records[r->records];

			record->timestamp_us = (uint64_t)header->ts.tv_sec * 1000000u +
					       (uint64_t)header->ts.tv_usec;
			record->wire = header->len;
			record->captured = header->caplen < FP_SAMPLE_HEADER_BYTES
						   ? header->caplen : FP_SAMPLE_HEADER_BYTES;
			memcpy(record->header, data, record->captured);
		}
		r->records++;
		r->octets += header->len;
	}
	if (status == PCAP_ERROR)
		snprintf(r->error, sizeof(r->error), "%s", pcap_geterr(handle));
	pcap_close(handle);
}

/* every sample in the ring against libpcap's record of the same number */
static uint64_t compare_samples(struct fp_meter *meter, uint64_t compared)
{
	static struct fp_packet_sample samples[DRAIN];
	int i, n;

	while ((n = fp_meter_drain_samples(meter, samples, DRAIN)) > 0) {
		for (i = 0; i < n; i++, compared++) {
			const struct reference_record *record = &reference_records[compared];

			if (compared >= COMPARED)
				continue;
			if (samples[i].timestamp_us != record->timestamp_us ||
			    samples[i].frame_length != record->wire ||
			    samples[i].header_length != record->captured ||
			    memcmp(samples[i].header, record->header, record->captured) != 0) {
				fprintf(stderr, "record %llu: libpcap %llu us, %u wire, %u bytes; "
					"meter %llu us, %u wire, %u bytes\n",
					(unsigned long long)compared,
					(unsigned long long)record->timestamp_us, record->wire,
					record->captured, (unsigned long long)samples[i].timestamp_us,
					samples[i].frame_length, samples[i].header_length);
				abort();
			}
		}
	}
	return compared;
}

/* the meter's reading: max_packets varies the dispatch sizes */
static void read_with_meter(struct reading *r, int max_packets, int filtered)
{
	static const uint8_t settings_bytes[4] = { 0x3D, 0x88, 0x88, 0x41 };  /* biflow, l2 */
	static struct fp_record records[DRAIN];
	struct fp_settings settings;
	struct fp_source_stats stats;
	char error[FP_ERROR_SIZE] = "";
	struct fp_sample_ring_stats ring;
	struct fp_meter *meter;
	int source, status;
	uint64_t compared = 0;

	corpus_settings(settings_bytes, &settings);
	meter = fp_meter_new(&settings, error);
	CHECK(meter != NULL);
	CHECK(fp_meter_set_sampling(meter, 1, 1, FP_SAMPLING_DETERMINISTIC, 0, error) == 0);
	CHECK(fp_meter_keep_samples(meter, COMPARED, error) == 0);
	source = fp_meter_open_offline(meter, path, 1, error);
	if (source < 0) {
		snprintf(r->error, sizeof(r->error), "%s", error);
		fp_meter_free(meter);
		return;
	}
	r->opened = 1;
	if (filtered)
		CHECK(fp_meter_set_filter(meter, source, FILTER, error) == 0);
	do {
		while (fp_meter_drain(meter, records, DRAIN) > 0)
			;
		compared = compare_samples(meter, compared);
		status = fp_meter_dispatch(meter, source, max_packets, error);
	} while (status > 0);
	compared = compare_samples(meter, compared);
	fp_meter_sample_ring_stats(meter, &ring);
	if (status == FP_DISPATCH_ERROR)
		snprintf(r->error, sizeof(r->error), "%s", error);
	CHECK(fp_meter_source_stats(meter, source, &stats) == 0);
	r->records = stats.packets_read;
	/* every record sampled and compared, unless more than the ring holds */
	CHECK(stats.packets_read > COMPARED || (ring.overflows == 0 && compared == r->records));
	r->octets = stats.octets_read;
	fp_meter_close_source(meter, source);
	fp_meter_flush(meter);
	while (fp_meter_drain(meter, records, DRAIN) > 0)
		;
	fp_meter_free(meter);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct reading reference = { 0 }, metered = { 0 };
	int filtered = (size / 7) % 2 && read_in_place(data, size);

	write_file(data, size);
	read_with_libpcap(&reference, &filtered);
	read_with_meter(&metered, (int)(size % 7) - 1, filtered);
	if (reference.opened && !metered.opened) {  /* the meter's choice, not the reader's */
		CHECK(strstr(metered.error, ": unsupported link type ") != NULL);
		return 0;
	}
	CHECK(reference.opened == metered.opened);
	if (!reference.opened) {  /* capture.c names the path unless libpcap did */
		CHECK(strstr(metered.error, reference.error) != NULL);
		return 0;
	}
	if (metered.records != reference.records || metered.octets != reference.octets ||
	    strcmp(metered.error, reference.error) != 0) {
		fprintf(stderr, "libpcap: %llu records, %llu octets, \"%s\"\n"
			"meter:   %llu records, %llu octets, \"%s\"\n",
			(unsigned long long)reference.records, (unsigned long long)reference.octets,
			reference.error, (unsigned long long)metered.records,
			(unsigned long long)metered.octets, metered.error);
		abort();
	}
	return 0;
}
