/* libFuzzer target over the capture-file reader (cmeter/savefile.c): the
 * input is a whole pcap file.  It is opened as fp_meter_open_offline()
 * opens any file (libpcap checks the header, savefile.c reads the records)
 * and every record is dispatched into a meter with small tables; the same
 * bytes are also read by libpcap alone (pcap_next_ex), and both must agree
 * on how many records there were, their wire lengths and the error that
 * ended the file (libpcap's words), or the target traps.
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

/* libpcap's own reading of the file, the reference */
static void read_with_libpcap(struct reading *r)
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
	while ((status = pcap_next_ex(handle, &header, &data)) == 1) {
		r->records++;
		r->octets += header->len;
	}
	if (status == PCAP_ERROR)
		snprintf(r->error, sizeof(r->error), "%s", pcap_geterr(handle));
	pcap_close(handle);
}

/* the meter's reading: max_packets varies the dispatch sizes */
static void read_with_meter(struct reading *r, int max_packets)
{
	static const uint8_t settings_bytes[4] = { 0x3D, 0x88, 0x88, 0x41 };  /* biflow, l2 */
	static struct fp_record records[DRAIN];
	struct fp_settings settings;
	struct fp_source_stats stats;
	char error[FP_ERROR_SIZE] = "";
	struct fp_meter *meter;
	int source, status;

	corpus_settings(settings_bytes, &settings);
	meter = fp_meter_new(&settings, error);
	CHECK(meter != NULL);
	source = fp_meter_open_offline(meter, path, 1, error);
	if (source < 0) {
		snprintf(r->error, sizeof(r->error), "%s", error);
		fp_meter_free(meter);
		return;
	}
	r->opened = 1;
	do {
		while (fp_meter_drain(meter, records, DRAIN) > 0)
			;
		status = fp_meter_dispatch(meter, source, max_packets, error);
	} while (status > 0);
	if (status == FP_DISPATCH_ERROR)
		snprintf(r->error, sizeof(r->error), "%s", error);
	CHECK(fp_meter_source_stats(meter, source, &stats) == 0);
	r->records = stats.packets_read;
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

	write_file(data, size);
	read_with_libpcap(&reference);
	read_with_meter(&metered, (int)(size % 7) - 1);
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
