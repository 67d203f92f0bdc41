/* The cross-architecture replay driver: the C core without Python, fed the
 * project's test captures, printing every record (JSON), its export data
 * record (hex, network byte order) and the counters.  Built for x86-64 and
 * for the routers' CPUs and run under qemu-user, its output must be the
 * same everywhere (qemu/cross/README.md).
 *
 *   replay pcap [options] FILE...   capture files, metered as one capture
 *   replay corpus FILE...           inputs in the fuzz harness's format
 *
 * pcap options: --biflow --refuse --max-flows N --max-fragments N
 *   --idle MS --active MS --unanswered MS --grace MS --fragment-timeout MS
 *   --ifindex N --seed N --quiet (records drained, not printed: the
 *   instructions bench counts the core's own work) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "_cmeter.h"
#include "replay_corpus.h"
#include "replay_print.h"

/* small reads: expiry, draining and the dispatch's early stop all happen
 * many times in a capture, as they do live */
#define DISPATCH_PACKETS 1000

static int quiet;

/* Every waiting record out of the meter: printed, or, --quiet, dropped. */
static void drain_all(struct fp_meter *meter, int bidirectional)
{
	static struct fp_record records[1024];

	if (!quiet) {
		print_drain_all(stdout, meter, bidirectional);
		return;
	}
	while (fp_meter_drain(meter, records, 1024) > 0)
		;
}

static int usage(void)
{
	fprintf(stderr, "usage: replay pcap [options] FILE... | replay corpus FILE...\n");
	return 2;
}

static int parse_number(const char *text, uint64_t *value)
{
	char *end;

	*value = strtoull(text, &end, 10);
	return *text && !*end ? 0 : -1;
}

/* Options into settings; returns the index of the first file, or -1. */
static uint32_t *numeric_option(struct fp_settings *s, const char *name)
{
	if (strcmp(name, "--max-flows") == 0)
		return &s->max_flows;
	if (strcmp(name, "--max-fragments") == 0)
		return &s->max_fragments;
	if (strcmp(name, "--idle") == 0)
		return &s->idle_timeout_ms;
	if (strcmp(name, "--active") == 0)
		return &s->active_timeout_ms;
	if (strcmp(name, "--unanswered") == 0)
		return &s->unanswered_timeout_ms;
	if (strcmp(name, "--grace") == 0)
		return &s->tcp_end_grace_ms;
	if (strcmp(name, "--fragment-timeout") == 0)
		return &s->fragment_timeout_ms;
	return NULL;
}

/* Options into settings; returns the index of the first file, or -1. */
static int parse_options(int argc, char **argv, struct fp_settings *s, uint32_t *ifindex)
{
	uint32_t *field;
	uint64_t value;
	int i;

	for (i = 2; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
		if (strcmp(argv[i], "--biflow") == 0) {
			s->bidirectional = 1;
			continue;
		}
		if (strcmp(argv[i], "--quiet") == 0) {
			quiet = 1;
			continue;
		}
		if (strcmp(argv[i], "--refuse") == 0) {
			s->overflow_policy = FP_OVERFLOW_REFUSE_NEW;
			continue;
		}
		if (i + 1 >= argc || parse_number(argv[i + 1], &value) < 0) {
			fprintf(stderr, "replay: %s needs a number\n", argv[i]);
			return -1;
		}
		if (strcmp(argv[i], "--seed") == 0) {
			s->hash_seed = value;
		} else if (strcmp(argv[i], "--ifindex") == 0) {
			*ifindex = (uint32_t)value;
		} else if ((field = numeric_option(s, argv[i]))) {
			*field = (uint32_t)value;
		} else {
			fprintf(stderr, "replay: unknown option %s\n", argv[i]);
			return -1;
		}
		i++;
	}
	return i;
}

/* A snapshot partway: the whole table, then only IPv6 flows within
 * 2001:db8::/32 (the filter's prefix match). */
static void print_snapshots(struct fp_meter *meter, int bidirectional)
{
	struct fp_flow_filter ipv6 = { .ip_version = 6, .prefix_length = 32,
				       .address = { 0x20, 0x01, 0x0d, 0xb8 } };

	print_snapshot(stdout, meter, NULL, bidirectional, 100);
	print_snapshot(stdout, meter, &ipv6, bidirectional, 100);
}

static int replay_pcap(int argc, char **argv)
{
	/* the daemon's defaults (settings.py), with a fixed hash seed */
	struct fp_settings s = {
		.max_flows = 65536, .max_fragments = 4096, .idle_timeout_ms = 15000,
		.active_timeout_ms = 300000, .unanswered_timeout_ms = 5000, .tcp_end_grace_ms = 2000,
		.fragment_timeout_ms = 30000, .overflow_policy = FP_OVERFLOW_EVICT_OLDEST,
		.bidirectional = 0, .hash_seed = 1,
	};
	char error[FP_ERROR_SIZE];
	struct fp_source_stats stats;
	struct fp_meter *meter;
	uint32_t ifindex = 0;
	int first = parse_options(argc, argv, &s, &ifindex), i, source, n, dispatches = 0;

	if (first < 0 || first >= argc)
		return usage();
	meter = fp_meter_new(&s, error);
	if (!meter) {
		fprintf(stderr, "replay: %s\n", error);
		return 1;
	}
	for (i = first; i < argc; i++) {
		source = fp_meter_open_offline(meter, argv[i], ifindex, error);
		if (source < 0) {
			printf("open error: %s\n", error);
			continue;
		}
		for (;;) {
			drain_all(meter, (int)s.bidirectional);
			n = fp_meter_dispatch(meter, source, DISPATCH_PACKETS, error);
			if (n < 0)
				printf("dispatch error: %s\n", error);
			if (n <= 0 && fp_meter_pending(meter) == 0)
				break;
			if (++dispatches == 3 && !quiet)
				print_snapshots(meter, (int)s.bidirectional);
		}
		fp_meter_source_stats(meter, source, &stats);
		printf("source %s packets_read=%llu linktype=%d\n", strrchr(argv[i], '/') ?
		       strrchr(argv[i], '/') + 1 : argv[i], (unsigned long long)stats.packets_read,
		       stats.linktype);
		fp_meter_close_source(meter, source);
	}
	fp_meter_flush(meter);
	printf("flush\n");
	drain_all(meter, (int)s.bidirectional);
	print_counters(stdout, meter);
	fp_meter_free(meter);
	return 0;
}

int main(int argc, char **argv)
{
	int i, status = 0;

	if (argc < 3)
		return usage();
	if (strcmp(argv[1], "pcap") == 0)
		return replay_pcap(argc, argv);
	if (strcmp(argv[1], "corpus") != 0)
		return usage();
	for (i = 2; i < argc; i++) {
		const char *name = strrchr(argv[i], '/');

		printf("== %s\n", name ? name + 1 : argv[i]);
		if (replay_corpus_file(stdout, argv[i]) < 0)
			status = 1;
	}
	return status;
}
